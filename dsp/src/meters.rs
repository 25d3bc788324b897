//! Meters for one stereo signal, and their lock-free publication. STUB: interface fixed,
//! implementation in progress.

use std::sync::Arc;

/// Everything a reader gets from one [`PublishedMeters::read`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MeterReading {
    /// Largest sample magnitude per channel since the previous read, dBFS.
    pub sample_peak_db: [f32; 2],
    /// True peak (max of both channels) since the previous read, dBTP.
    pub true_peak_dbtp: f32,
    /// Largest true peak since the last reset, dBTP.
    pub true_peak_max_dbtp: f32,
    /// RMS per channel over the last 300 ms, dBFS.
    pub rms_db: [f32; 2],
    /// Momentary loudness (400 ms), LUFS.
    pub momentary_lufs: f32,
    /// Short-term loudness (3 s), LUFS.
    pub short_term_lufs: f32,
    /// Integrated (gated) loudness since the last reset, LUFS.
    pub integrated_lufs: f32,
    /// Largest momentary loudness since the last reset, LUFS.
    pub max_momentary_lufs: f32,
    /// Largest short-term loudness since the last reset, LUFS.
    pub max_short_term_lufs: f32,
    /// Loudness range (EBU Tech 3342) since the last reset, LU.
    pub lra_lu: f32,
    /// Peak-to-loudness ratio: true-peak max − integrated, dB.
    pub plr_db: f32,
    /// Stereo correlation, −1..+1.
    pub correlation: f32,
}

/// Audio-thread side of the meters for one stereo signal.
pub struct MeterSet {}

impl MeterSet {
    /// Allocates the meters for `sample_rate`.
    pub fn new(_sample_rate: f32) -> Self {
        Self {}
    }

    /// Clears everything (integrated, LRA, maxima, histories).
    pub fn reset(&mut self) {}

    /// Meters a block of finite samples.
    pub fn process(&mut self, _left: &[f32], _right: &[f32]) {}

    /// Writes the current values to `out` (after each block). Also performs a reset that a
    /// reader requested through [`PublishedMeters::request_reset`].
    pub fn publish(&mut self, _out: &PublishedMeters) {}
}

/// Reader side: atomics written by the audio thread, read by any other thread.
#[derive(Default)]
pub struct PublishedMeters {}

impl PublishedMeters {
    /// A new shared set.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Reads the meters; the "since the previous read" maxima restart from here.
    pub fn read(&self) -> MeterReading {
        MeterReading::default()
    }

    /// Asks the audio thread to reset integrated loudness, LRA and maxima.
    pub fn request_reset(&self) {}
}
