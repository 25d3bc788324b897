//! Meters for one stereo signal ([`MeterSet`], audio thread) and their lock-free publication
//! ([`PublishedMeters`], any thread).
//!
//! # What is measured
//! - **Sample peak** per channel: largest `|x|`, both "since the previous read" and held since
//!   the last reset (the hold; timed holds and fall-back are GUI ballistics).
//! - **True peak** (ITU-R BS.1770-4 Annex 2): 4× polyphase interpolation, 16 taps per phase
//!   (the filter of [`TruePeakDetector`](crate::true_peak::TruePeakDetector), run block-wise,
//!   see `TruePeakFir`), max of both channels, since the previous read and since the reset.
//! - **RMS** per channel: `√(mean x²)` over a sliding rectangular window of
//!   [`RMS_WINDOW_MS`] = 300 ms, updated every 5 ms; no AES-17 +3 dB offset, so a sine of peak
//!   `A` reads `A/√2` (−3.01 dB for a full-scale sine).
//! - **Loudness** (momentary, short-term, integrated, their maxima, LRA): see
//!   [`crate::loudness`]. No value (silence, or before the first gated block) is `−∞`
//!   (`f32::NEG_INFINITY`), which a display shows as "—" and JSON as `null`.
//! - **PLR** = true-peak max (dBTP) − integrated loudness (LUFS); `−∞` while either is `−∞`.
//! - **Correlation** `ρ = Σ L·R / √(Σ L² · Σ R²)` in −1..+1 over the same sliding rectangular
//!   300 ms window as the RMS ([`CORRELATION_WINDOW_MS`], updated every 5 ms). A rectangular
//!   window forgets exactly: 300 ms after a burst (even a +120 dBFS one) it has no trace of it,
//!   where a 300 ms one-pole average would need seconds. While either channel's mean power in
//!   the window is below −120 dBFS (silence, or one channel silent) the correlation is 0: no
//!   evidence either way, needle at centre.
//!
//! # Publication
//! The audio thread calls [`MeterSet::process`] for each block and [`MeterSet::publish`] after
//! it. Values that must not be missed between two reads (sample and true peaks) are kept as
//! "maximum since the previous read": `process` keeps the maxima of the blocks since the last
//! `publish`, `publish` does `fetch_max` of them into the shared atomics and restarts them,
//! [`PublishedMeters::read`] `swap`s the atomics back to 0. `fetch_max` and `swap` are
//! read-modify-writes of the same atomic, so every published maximum lands in exactly one
//! read: none is lost, none is shown twice. Everything else is a plain `store` of the latest
//! value. A reset is requested by [`PublishedMeters::request_reset`] (atomic flag) and carried
//! out by the audio thread at its next `publish`.
//!
//! # How a block is metered
//! In pieces of at most `PIECE` = 128 frames (the engine's chunk), read in place; each
//! channel keeps the last 16 samples of the previous piece. One pass per channel takes, per
//! sub-block of 16 frames, `max|x|`, `max|Δx|` and `max|Δ²x|` and checks that every sample is
//! finite with `|x| ≤ 10⁶` (a piece that is not is replaced by a copy sanitised with
//! [`crate::util::sanitize`]). From these:
//! - the sample peaks;
//! - the true peak, whose FIR runs only for the sub-blocks where an exact bound on the
//!   interpolated values (see `TruePeakFir`) exceeds the maximum held so far, which starts
//!   at the piece's sample peak and the maximum since the last publish;
//! - in segments that end on the 5 ms ticks: the raw `Σl², Σr², Σl·r` and the K-weighting
//!   (`KLanes`, both channels side by side in `f64`).
//!
//! On x86_64 CPUs with AVX2 and FMA (detected once, in `new`) the inner loops run as AVX2 +
//! FMA code; elsewhere the portable code runs. The two agree to float rounding (unit tests).
//! [`crate::meter_bank::StemMeterBank`] does the same for up to eight stems at once.
//!
//! # Cost
//! `benches/meters.rs` (48 kHz, 128-frame pieces, publish every 512 frames, AMD EPYC with
//! AVX2, shared machine): ≈ 4.5–6.5 ns per stereo frame depending on the material (the
//! K-weighting recursion, bound by its latency, is about half of it; the true-peak FIR runs
//! for most sub-blocks of dense, limited material and few of tonal or bass-heavy material),
//! against ≈ 11–13 ns before the per-sub-block bounds and the AVX2 code. Nothing allocates
//! after `new`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use atomic_float::{AtomicF32, AtomicF64};

use crate::loudness::{
    KLanes, KWeighting, LoudnessMeter, TICKS_PER_SECOND, TickRing, energy_to_lufs,
};
use crate::true_peak::Interpolator;
use crate::util::{MAX_INPUT, avx2_fma_available, gain_to_db, sanitize};

/// RMS window length in milliseconds (sliding, rectangular).
pub const RMS_WINDOW_MS: f32 = 300.0;

/// Correlation window length in milliseconds (sliding, rectangular; the RMS window).
pub const CORRELATION_WINDOW_MS: f32 = RMS_WINDOW_MS;

/// RMS window in 5 ms ticks.
const RMS_TICKS: usize = (RMS_WINDOW_MS as u64 * TICKS_PER_SECOND / 1000) as usize;

/// Ticks per stored group sum of the RMS window ring.
const RMS_GROUP_TICKS: usize = 10;

/// Below this mean power (−120 dBFS) in either channel the correlation reads 0.
const CORRELATION_FLOOR: f64 = 1.0e-12;

/// Taps per phase of the true-peak interpolator (that of
/// [`TruePeakDetector`](crate::true_peak::TruePeakDetector)).
const TP_TAPS: usize = 16;

/// Most frames metered at once (the size of the per-channel work buffers).
pub(crate) const PIECE: usize = 128;

/// Frames per sub-block: one set of bound statistics and one true-peak test per sub-block.
pub(crate) const SUB: usize = 16;

/// Sub-blocks per piece.
pub(crate) const SUBS: usize = PIECE / SUB;

/// Samples of a channel kept from the previous piece (≥ `TP_TAPS − 1`, and one whole
/// sub-block for the bound statistics).
pub(crate) const HIST: usize = SUB;

/// Lanes of the vectorised loops (8 × `f32` = one AVX register).
const LANES: usize = 8;

/// Everything a reader gets from one [`PublishedMeters::read`] (or [`MeterSet::reading`]).
/// "No value" is `f32::NEG_INFINITY` in every dB / LUFS / LU field.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MeterReading {
    /// Largest sample magnitude per channel since the previous read, dBFS.
    pub sample_peak_db: [f32; 2],
    /// Largest sample magnitude per channel since the last reset (peak hold), dBFS.
    pub sample_peak_max_db: [f32; 2],
    /// True peak (max of both channels) since the previous read, dBTP.
    pub true_peak_dbtp: f32,
    /// Largest true peak since the last reset, dBTP.
    pub true_peak_max_dbtp: f32,
    /// RMS per channel over the last 300 ms (rectangular), dBFS (sine: peak − 3.01 dB).
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
    /// Stereo correlation, −1..+1 (0 for silence).
    pub correlation: f32,
}

/// Audio-thread side of the meters for one stereo signal. See the module doc.
pub struct MeterSet {
    /// Everything measured (peaks, RMS, correlation, loudness) and its publication.
    state: MeterState,
    /// Work buffers of the left and right channel.
    channels: Box<[Channel; 2]>,
    /// K-weighting of both channels.
    lanes: KLanes<2>,
    /// True-peak filter and bound constants.
    fir: TruePeakFir,
    /// Whether the CPU runs the AVX2 + FMA build.
    use_fma: bool,
    /// Sanitised copy of a piece that held bad samples, left and right.
    scratch: Box<[[f32; PIECE]; 2]>,
}

impl MeterSet {
    /// Allocates the meters for `sample_rate` (Hz).
    pub fn new(sample_rate: f32) -> Self {
        Self {
            state: MeterState::new(sample_rate),
            channels: Box::new([Channel::new(), Channel::new()]),
            lanes: KLanes::new(),
            fir: TruePeakFir::new(),
            use_fma: avx2_fma_available(),
            scratch: Box::new([[0.0; PIECE]; 2]),
        }
    }

    /// Clears everything (integrated, LRA, maxima, histories, filter states).
    pub fn reset(&mut self) {
        self.state.reset();
        for c in self.channels.iter_mut() {
            c.reset();
        }
        self.lanes = KLanes::new();
    }

    /// Restarts the programme measurement: integrated loudness, LRA, the loudness maxima and
    /// the peak holds (what [`PublishedMeters::request_reset`] asks for).
    pub fn reset_programme(&mut self) {
        self.state.reset_programme();
    }

    /// The loudness meter (for loudness matching and offline analysis).
    pub fn loudness(&self) -> &LoudnessMeter {
        &self.state.loudness
    }

    /// Meters a block (the shorter slice sets its length).
    pub fn process(&mut self, left: &[f32], right: &[f32]) {
        let n = left.len().min(right.len());
        let (left, right) = (&left[..n], &right[..n]);
        if self.use_fma {
            // SAFETY: `use_fma` is only set when the CPU has AVX2 and FMA.
            unsafe { self.process_fma(left, right) };
        } else {
            // SAFETY: no requirement without FMA.
            unsafe { self.process_impl::<false>(left, right) };
        }
    }

    /// [`Self::process_impl`] compiled for AVX2 and FMA.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
    unsafe fn process_fma(&mut self, left: &[f32], right: &[f32]) {
        // SAFETY: forwarded.
        unsafe { self.process_impl::<true>(left, right) };
    }

    /// Meters equal-length `left`, `right` in pieces (see the module doc).
    ///
    /// # Safety
    /// With `FMA`, the CPU must support AVX2 and FMA.
    #[inline(always)]
    unsafe fn process_impl<const FMA: bool>(&mut self, left: &[f32], right: &[f32]) {
        for (l, r) in left.chunks(PIECE).zip(right.chunks(PIECE)) {
            let [cl, cr] = &mut *self.channels;
            // SAFETY (here and below): forwarded.
            let ok = unsafe { cl.measure::<FMA>(l) & cr.measure::<FMA>(r) };
            let (l, r) = if ok {
                (l, r)
            } else {
                let [sl, sr] = &mut *self.scratch;
                sanitise_into(l, sl, cl);
                sanitise_into(r, sr, cr);
                (&sl[..l.len()], &sr[..r.len()])
            };
            let peaks = [cl.peak(), cr.peak()];
            self.state.add_sample_peaks(peaks);
            let held = self.state.true_peak.max(peaks[0]).max(peaks[1]);
            let fir = &self.fir;
            let held = unsafe { true_peak_of::<FMA>(fir, &cl.hist, l, |k| cl.bound(fir, k), held) };
            let held = unsafe { true_peak_of::<FMA>(fir, &cr.hist, r, |k| cr.bound(fir, k), held) };
            self.state.add_true_peak(held);

            let k = *self.state.loudness.k_weighting();
            let n = l.len();
            let mut pos = 0;
            while pos < n {
                let len = (n - pos).min(self.state.loudness.samples_to_tick());
                let (sl, sr) = (&l[pos..pos + len], &r[pos..pos + len]);
                self.state
                    .add_raw_sums(unsafe { raw_sums::<FMA>(sl, sr) }, len);
                unsafe { self.lanes.process_stereo::<FMA>(&k, sl, sr) };
                if self.state.loudness.advance(len) {
                    let [el, er] = self.lanes.take_tick(&k);
                    self.state.close_tick(el + er);
                }
                pos += len;
            }
            cl.end_piece(l);
            cr.end_piece(r);
        }
    }

    /// Current stereo correlation, −1..+1 (0 when either channel is below −120 dBFS).
    pub fn correlation(&self) -> f32 {
        self.state.correlation()
    }

    /// The current values, read directly (offline analysis, tests). Peaks "since the previous
    /// read" are those since the last `publish` (or since the start).
    pub fn reading(&self) -> MeterReading {
        self.state.reading()
    }

    /// Writes the current values to `out` (after each block). Also performs a reset that a
    /// reader requested through [`PublishedMeters::request_reset`].
    pub fn publish(&mut self, out: &PublishedMeters) {
        self.state.publish(out);
    }
}

/// What is measured of one stereo signal, apart from the per-sample work: peaks held since
/// the last publish and since the reset, the 5 ms ticks of the RMS / correlation window, the
/// loudness windows and histograms, and their publication. Fed by [`MeterSet`] and by
/// [`crate::meter_bank::StemMeterBank`].
pub(crate) struct MeterState {
    /// BS.1770 / EBU loudness (momentary, short-term, integrated, LRA, maxima); its tick
    /// count sets the segments (its own filter is unused: the caller K-weights).
    pub(crate) loudness: LoudnessMeter,
    /// Largest `|x|` per channel since the last `publish` (or since the start).
    sample_peak: [f32; 2],
    /// Largest `|x|` per channel since the last reset.
    sample_peak_max: [f32; 2],
    /// Largest true peak (linear) since the last `publish` (or since the start).
    pub(crate) true_peak: f32,
    /// Largest true peak (linear) since the last reset.
    true_peak_max: f32,
    /// `[Σl², Σr², Σl·r]` of the current tick so far (raw signal).
    tick_sums: [f64; 3],
    /// Samples in the current tick so far.
    tick_frames: usize,
    /// `[Σl², Σr², Σl·r, frames]` of the last [`RMS_TICKS`] ticks.
    window: TickRing<4, RMS_TICKS, RMS_GROUP_TICKS>,
    /// Means `[l², r², l·r]` over the 300 ms window at the last tick.
    window_means: [f64; 3],
}

impl MeterState {
    /// Allocates the state for `sample_rate` (Hz).
    pub(crate) fn new(sample_rate: f32) -> Self {
        Self {
            loudness: LoudnessMeter::new(sample_rate),
            sample_peak: [0.0; 2],
            sample_peak_max: [0.0; 2],
            true_peak: 0.0,
            true_peak_max: 0.0,
            tick_sums: [0.0; 3],
            tick_frames: 0,
            window: TickRing::new(),
            window_means: [0.0; 3],
        }
    }

    /// Clears everything.
    pub(crate) fn reset(&mut self) {
        self.loudness.reset();
        self.sample_peak = [0.0; 2];
        self.true_peak = 0.0;
        self.tick_sums = [0.0; 3];
        self.tick_frames = 0;
        self.window.clear();
        self.window_means = [0.0; 3];
        self.reset_programme();
    }

    /// Restarts the programme measurement (see [`MeterSet::reset_programme`]).
    pub(crate) fn reset_programme(&mut self) {
        self.loudness.reset_programme();
        self.sample_peak_max = [0.0; 2];
        self.true_peak_max = 0.0;
    }

    /// Adds the sample peaks (linear) of a piece.
    #[inline]
    pub(crate) fn add_sample_peaks(&mut self, peaks: [f32; 2]) {
        for ((held, max), peak) in self
            .sample_peak
            .iter_mut()
            .zip(&mut self.sample_peak_max)
            .zip(peaks)
        {
            *held = held.max(peak);
            *max = max.max(peak);
        }
    }

    /// Sets the true peak since the last publish to `held` (linear; at least its old value).
    #[inline]
    pub(crate) fn add_true_peak(&mut self, held: f32) {
        self.true_peak = self.true_peak.max(held);
        self.true_peak_max = self.true_peak_max.max(held);
    }

    /// Adds the raw `[Σl², Σr², Σl·r]` of a segment of `frames` frames within the current
    /// tick.
    #[inline]
    pub(crate) fn add_raw_sums(&mut self, sums: [f64; 3], frames: usize) {
        for (acc, s) in self.tick_sums.iter_mut().zip(sums) {
            *acc += s;
        }
        self.tick_frames += frames;
    }

    /// Closes a 5 ms tick (after [`LoudnessMeter::advance`] said it is complete) whose
    /// K-weighted energy is `k_energy`: loudness, and the 300 ms RMS / correlation window
    /// (re-summed from the ring, so nothing drifts and a burst leaves no trace once it is out
    /// of the window).
    pub(crate) fn close_tick(&mut self, k_energy: f64) {
        self.loudness.close_tick(k_energy);
        let [ll, rr, lr] = self.tick_sums;
        let frames = self.tick_frames.max(1) as f64;
        self.tick_sums = [0.0; 3];
        self.tick_frames = 0;

        self.window.push([ll, rr, lr, frames]);
        let sum = self.window.sum_last(RMS_TICKS);
        // The window counts as full from the start (initial silence), like the loudness ones.
        let window = sum[3].max(frames * RMS_TICKS as f64);
        self.window_means = [sum[0] / window, sum[1] / window, sum[2] / window];
    }

    /// See [`MeterSet::correlation`].
    pub(crate) fn correlation(&self) -> f32 {
        let [ll, rr, lr] = self.window_means;
        if ll < CORRELATION_FLOOR || rr < CORRELATION_FLOOR {
            0.0
        } else {
            (lr / (ll * rr).sqrt()).clamp(-1.0, 1.0) as f32
        }
    }

    /// See [`MeterSet::reading`].
    pub(crate) fn reading(&self) -> MeterReading {
        let lm = &self.loudness;
        let integrated = lm.integrated_lufs() as f32;
        let true_peak_max_dbtp = gain_to_db(self.true_peak_max);
        MeterReading {
            sample_peak_db: self.sample_peak.map(gain_to_db),
            sample_peak_max_db: self.sample_peak_max.map(gain_to_db),
            true_peak_dbtp: gain_to_db(self.true_peak),
            true_peak_max_dbtp,
            rms_db: [0, 1].map(|c| (10.0 * self.window_means[c].log10()) as f32),
            momentary_lufs: lm.momentary_lufs() as f32,
            short_term_lufs: lm.short_term_lufs() as f32,
            integrated_lufs: integrated,
            max_momentary_lufs: lm.max_momentary_lufs() as f32,
            max_short_term_lufs: lm.max_short_term_lufs() as f32,
            lra_lu: lm.loudness_range_lu() as f32,
            plr_db: plr_db(true_peak_max_dbtp, integrated),
            correlation: self.correlation(),
        }
    }

    /// See [`MeterSet::publish`].
    pub(crate) fn publish(&mut self, out: &PublishedMeters) {
        if out.reset_requested.swap(false, Relaxed) {
            self.reset_programme();
        }
        // Maxima of the blocks since the last publish go to the reader's current interval.
        for c in 0..2 {
            out.sample_peak[c].fetch_max(self.sample_peak[c], Relaxed);
        }
        out.true_peak.fetch_max(self.true_peak, Relaxed);
        self.sample_peak = [0.0; 2];
        self.true_peak = 0.0;

        let lm = &self.loudness;
        for c in 0..2 {
            out.sample_peak_max[c].store(self.sample_peak_max[c], Relaxed);
            out.rms_ms[c].store(self.window_means[c] as f32, Relaxed);
        }
        out.true_peak_max.store(self.true_peak_max, Relaxed);
        // Loudness as mean squares: the logarithms are the reader's work.
        out.momentary_ms.store(lm.momentary_energy(), Relaxed);
        out.short_term_ms.store(lm.short_term_energy(), Relaxed);
        out.integrated_lufs
            .store(lm.integrated_lufs() as f32, Relaxed);
        out.max_momentary_ms
            .store(lm.max_momentary_energy(), Relaxed);
        out.max_short_term_ms
            .store(lm.max_short_term_energy(), Relaxed);
        out.lra_lu.store(lm.loudness_range_lu() as f32, Relaxed);
        out.correlation.store(self.correlation(), Relaxed);
    }

    /// The K-weighting coefficients in use.
    #[inline]
    pub(crate) fn k_weighting(&self) -> KWeighting {
        *self.loudness.k_weighting()
    }
}

/// Bound statistics of one sub-block: maxima over its samples `x[i]` of `|x[i]|`,
/// `|x[i] − x[i−1]|` and `|x[i] − 2·x[i−1] + x[i−2]|`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct SubStats {
    /// `max |x|`.
    peak: f32,
    /// `max |Δx|`.
    d1: f32,
    /// `max |Δ²x|`.
    d2: f32,
}

impl SubStats {
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        Self {
            peak: self.peak.max(o.peak),
            d1: self.d1.max(o.d1),
            d2: self.d2.max(o.d2),
        }
    }
}

/// Per-channel state of a [`MeterSet`] between pieces and within one: the last [`HIST`]
/// samples before the piece and the bound statistics of the piece's sub-blocks.
#[derive(Clone)]
pub(crate) struct Channel {
    /// The last `HIST` samples before the current piece (oldest first).
    hist: [f32; HIST],
    /// `stats[0]`: the history (covering `hist[1..]` and the differences within it);
    /// `stats[k + 1]`: sub-block `k` of the piece.
    stats: [SubStats; SUBS + 1],
    /// Frames in the current piece.
    len: usize,
}

impl Channel {
    /// A silent channel.
    pub(crate) fn new() -> Self {
        Self {
            hist: [0.0; HIST],
            stats: [SubStats::default(); SUBS + 1],
            len: 0,
        }
    }

    /// Forgets the history.
    pub(crate) fn reset(&mut self) {
        *self = Self::new();
    }

    /// Takes the statistics of a piece (`src.len()` ≤ [`PIECE`]) that follows the history;
    /// false if a sample is NaN, ±Inf or beyond ±[`MAX_INPUT`] (the caller then sanitises the
    /// piece and measures it again).
    ///
    /// # Safety
    /// With `FMA`, the CPU must support AVX2 and FMA.
    #[inline(always)]
    pub(crate) unsafe fn measure<const FMA: bool>(&mut self, src: &[f32]) -> bool {
        let n = src.len().min(PIECE);
        self.len = n;
        #[cfg(target_arch = "x86_64")]
        if FMA {
            // SAFETY: the caller guarantees AVX2.
            return unsafe { simd::measure(self, &src[..n]) };
        }
        self.measure_from(&src[..n], 0)
    }

    /// Portable statistics of the sub-blocks from `first` on.
    fn measure_from(&mut self, src: &[f32], first: usize) -> bool {
        let mut ok = true;
        for k in first..src.len().div_ceil(SUB) {
            let (st, good) = sub_stats(&self.hist, src, k * SUB, ((k + 1) * SUB).min(src.len()));
            self.stats[k + 1] = st;
            ok &= good;
        }
        ok
    }

    /// Largest `|x|` of the piece.
    #[inline(always)]
    pub(crate) fn peak(&self) -> f32 {
        self.stats[1..=self.len.div_ceil(SUB)]
            .iter()
            .fold(0.0f32, |m, s| m.max(s.peak))
    }

    /// Bound on the interpolated values of sub-block `k`: its window is the 15 samples before
    /// it (covered by the statistics of the sub-block before, or of the history) and its own.
    #[inline(always)]
    pub(crate) fn bound(&self, fir: &TruePeakFir, k: usize) -> f32 {
        fir.bound(self.stats[k].max(self.stats[k + 1]))
    }

    /// Ends the piece `src` (the one measured): keeps its last samples as the history.
    #[inline(always)]
    pub(crate) fn end_piece(&mut self, src: &[f32]) {
        let n = src.len().min(self.len);
        update_history(&mut self.hist, &src[..n]);
        self.stats[0] = if n > 0 && n.is_multiple_of(SUB) {
            // The last sub-block: the same samples (its differences reach further back,
            // which only widens the bound).
            self.stats[n / SUB]
        } else {
            history_stats(&self.hist)
        };
    }
}

/// Slow path for a piece with non-finite or huge samples: copies `src` sanitised into `dst`
/// and measures the copy.
#[cold]
#[inline(never)]
pub(crate) fn sanitise_into(src: &[f32], dst: &mut [f32; PIECE], ch: &mut Channel) {
    let n = src.len().min(PIECE);
    for (d, &x) in dst.iter_mut().zip(&src[..n]) {
        *d = sanitize(x);
    }
    ch.len = n;
    ch.measure_from(&dst[..n], 0);
}

/// Statistics of a history (`x[1..]`, with the differences inside it): what the window of the
/// next piece's first sub-block holds before that sub-block.
#[inline]
pub(crate) fn history_stats(x: &[f32; HIST]) -> SubStats {
    let mut st = SubStats::default();
    for i in 1..HIST {
        st.peak = st.peak.max(x[i].abs());
        if i >= 2 {
            st.d1 = st.d1.max((x[i] - x[i - 1]).abs());
        }
        if i >= 3 {
            st.d2 = st.d2.max((x[i] - 2.0 * x[i - 1] + x[i - 2]).abs());
        }
    }
    st
}

/// Makes `hist` the last [`HIST`] samples of `hist` followed by `src`.
#[inline(always)]
pub(crate) fn update_history(hist: &mut [f32; HIST], src: &[f32]) {
    let n = src.len();
    if let Some(last) = src.last_chunk::<HIST>() {
        // Fixed size: copied inline rather than by a library call.
        *hist = *last;
    } else {
        hist.copy_within(n.., 0);
        hist[HIST - n..].copy_from_slice(src);
    }
}

/// Statistics of `src[start..end]` (`end − start` ≤ [`SUB`]) preceded by `hist`, and whether
/// every sample is finite with `|x| ≤ MAX_INPUT`.
#[inline]
fn sub_stats(hist: &[f32; HIST], src: &[f32], start: usize, end: usize) -> (SubStats, bool) {
    // Sample `i` of the piece; negative indices reach into the history.
    let at = |i: usize, back: usize| {
        if i >= back {
            src[i - back]
        } else {
            hist[HIST + i - back]
        }
    };
    let mut st = SubStats::default();
    let mut ok = true;
    for (i, &x0) in src.iter().enumerate().take(end).skip(start) {
        let (x1, x2) = (at(i, 1), at(i, 2));
        let v = x0.abs();
        // `≤` is false for NaN, so NaN and ±Inf both fail the check.
        ok &= v <= MAX_INPUT;
        st.peak = if v > st.peak { v } else { st.peak };
        let e1 = x0 - x1;
        let e2 = (e1 - (x1 - x2)).abs();
        let e1 = e1.abs();
        st.d1 = if e1 > st.d1 { e1 } else { st.d1 };
        st.d2 = if e2 > st.d2 { e2 } else { st.d2 };
    }
    (st, ok)
}

/// Samples in a sub-block's true-peak window: 15 before it and its 16.
pub(crate) const WINDOW: usize = SUB + TP_TAPS - 1;

/// The true-peak window of sub-block `k` of the piece `src` (preceded by `hist`) and the
/// number of points in it: a slice of `src` when it lies inside, else assembled in `tmp`
/// (zeros past the piece).
#[inline(always)]
fn window<'a>(
    hist: &[f32; HIST],
    src: &'a [f32],
    k: usize,
    tmp: &'a mut [f32; WINDOW],
) -> (&'a [f32; WINDOW], usize) {
    let start = k * SUB;
    let len = (src.len() - start).min(SUB);
    if start >= TP_TAPS - 1 && len == SUB {
        let w = src[start + 1 - TP_TAPS..start + SUB]
            .try_into()
            .expect("WINDOW samples");
        return (w, len);
    }
    if start == 0 && len == SUB {
        // The first sub-block: the history's last 15 samples, then the sub-block.
        let (before, now) = tmp.split_at_mut(TP_TAPS - 1);
        let hist_tail: &[f32; TP_TAPS - 1] = hist.last_chunk().expect("15 samples");
        let first: &[f32; SUB] = src.first_chunk().expect("SUB samples");
        before.copy_from_slice(hist_tail);
        now.copy_from_slice(first);
        return (tmp, len);
    }
    for (i, t) in tmp.iter_mut().enumerate() {
        // Piece index of window sample i: start − 15 + i.
        let j = start + i;
        *t = if j < TP_TAPS - 1 {
            hist[HIST + j + 1 - TP_TAPS]
        } else if j + 1 - TP_TAPS < src.len() {
            src[j + 1 - TP_TAPS]
        } else {
            0.0
        };
    }
    (tmp, len)
}

/// Returns `held.max(largest interpolated magnitude of the piece src)` (phases 1..3; phase 0,
/// the samples, is the caller's sample peak), running the FIR only for the sub-blocks `k`
/// whose `bound(k)` exceeds the maximum so far.
///
/// # Safety
/// With `FMA`, the CPU must support AVX2 and FMA.
#[inline(always)]
pub(crate) unsafe fn true_peak_of<const FMA: bool>(
    fir: &TruePeakFir,
    hist: &[f32; HIST],
    src: &[f32],
    bound: impl Fn(usize) -> f32,
    mut held: f32,
) -> f32 {
    let mut tmp = [0.0f32; WINDOW];
    for k in 0..src.len().div_ceil(SUB) {
        if bound(k) > held {
            let (w, len) = window(hist, src, k, &mut tmp);
            #[cfg(target_arch = "x86_64")]
            let m = if FMA {
                // SAFETY: the caller guarantees AVX2 and FMA.
                unsafe { simd::fir_max_abs(fir, w, len) }
            } else {
                fir.max_abs(w, len)
            };
            #[cfg(not(target_arch = "x86_64"))]
            let m = fir.max_abs(w, len);
            held = if m > held { m } else { held };
        }
    }
    held
}

/// Largest interpolated magnitude (phases 1..3) of the first `len` (≤ [`SUB`]) points of
/// the window `w` (15 samples before a sub-block, then the sub-block): the FIR of one
/// sub-block, for callers that keep their windows contiguous.
///
/// # Safety
/// With `FMA`, the CPU must support AVX2 and FMA.
#[inline(always)]
pub(crate) unsafe fn window_max<const FMA: bool>(
    fir: &TruePeakFir,
    w: &[f32; WINDOW],
    len: usize,
) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: the caller guarantees AVX2 and FMA.
        return unsafe { simd::fir_max_abs(fir, w, len) };
    }
    fir.max_abs(w, len)
}

/// BS.1770-4 Annex 2 true-peak filter, block-wise, with an exact skip test.
///
/// The filter is exactly that of [`TruePeakDetector`](crate::true_peak::TruePeakDetector)
/// (4× polyphase, 16 taps per phase): its coefficients are read from an
/// [`Interpolator<16>`] by pushing a unit impulse through it. For the window
/// `w = (15 samples before, sub-block)` the phases are the 16-tap FIRs
/// `y_p[n] = Σ_{j=0}^{15} c_p[j]·w[n + j]`, `n` being the point between `w[n+7]` and `w[n+8]`
/// at `t = p/4` (the detector's latency of 8 samples). The Kaiser-sinc design is
/// mirror-symmetric: `c_3[j] = c_1[15 − j]`, `c_2[j] = c_2[15 − j]` (checked at construction).
/// With `u_j = w[n+j] + w[n+15−j]`, `v_j = w[n+j] − w[n+15−j]` (j < 8):
///
/// ```text
/// y_2 = Σ_j c_2[j]·u_j
/// S   = Σ_j ½(c_1[j] + c_1[15−j])·u_j,   D = Σ_j ½(c_1[j] − c_1[15−j])·v_j
/// y_1 = S + D,   y_3 = S − D,   so   max(|y_1|, |y_3|) = |S| + |D|
/// ```
///
/// which is 24 multiply-adds per point instead of 48, in 8-lane vectors (the two halves of a
/// sub-block side by side).
///
/// **Skip test.** The FIR runs only for a sub-block whose bound can exceed the maximum held
/// so far (which starts at the piece's sample peak, phase 0, and the maximum since the last
/// publish). With `M = max|w|`,
/// `A = max|Δw|`, `B = max|Δ²w|` over the window (from [`SubStats`]), every phase obeys
///
/// ```text
/// |y_p| ≤ Σ_j |c_p[j]|·M                              = M + (G − 1)·M      (G = max_p Σ|c_p|)
/// y_p = L_p + Σ_i s_{p,i}·Δw_i                     ⇒  |y_p| ≤ M + D'·A     (D' = max_p Σ|s_p|)
/// y_p = L_p + Σ_i e_{p,i}·Δ²w_i + m_p·Δw_14        ⇒  |y_p| ≤ M + E·B + m·A
/// ```
///
/// where `L_p = (1 − t)·w[n+7] + t·w[n+8]` is the linear interpolation (`|L_p| ≤ M`) and `s`,
/// `e` are the running sums of the kernel of `y_p − L_p` (summation by parts, once and twice;
/// `m_p = Σ_i s_{p,i}` is ≈ 0.001); the constants are derived from the coefficients in
/// [`TruePeakFir::new`]. For this filter `G ≈ 1.99`, `D' ≈ 0.50`, `E ≈ 0.34`: a smooth (low-frequency)
/// sub-block is skipped unless its samples come within `0.34·B` of the held maximum, where
/// `G·M` alone would need them 6 dB below it. The bound is the smallest of the three, raised
/// by 10⁻⁵ to cover the FIR's float rounding, so the result is exactly that of running the
/// FIR everywhere.
#[derive(Clone)]
pub(crate) struct TruePeakFir {
    /// `½(c_1[j] + c_1[15−j])`, j < 8.
    sym: [f32; TP_TAPS / 2],
    /// `½(c_1[j] − c_1[15−j])`, j < 8.
    anti: [f32; TP_TAPS / 2],
    /// `c_2[j]`, j < 8.
    half: [f32; TP_TAPS / 2],
    /// `G − 1` (see the type doc).
    gain_over_one: f32,
    /// `D'`.
    d1_gain: f32,
    /// `E`.
    d2_gain: f32,
    /// `m = max_p |m_p|`.
    d2_d1_gain: f32,
}

/// Relative margin of the skip bound over the exact one (covers the FIR's rounding).
const BOUND_MARGIN: f32 = 1.0e-5;

impl TruePeakFir {
    /// Reads the coefficients from the detector's interpolator and derives the bound
    /// constants (not real-time safe).
    pub(crate) fn new() -> Self {
        const HALF: usize = TP_TAPS / 2;
        let mut interp = Interpolator::<TP_TAPS>::new();
        let mut coeffs = [[0.0f32; TP_TAPS]; 3];
        // After the impulse has been pushed t times ago it sits at window index 15 − t.
        for t in 0..TP_TAPS {
            let y = interp.push(if t == 0 { 1.0 } else { 0.0 });
            for p in 0..3 {
                coeffs[p][TP_TAPS - 1 - t] = y[p + 1];
            }
        }
        for j in 0..TP_TAPS {
            assert!(
                coeffs[2][j] == coeffs[0][TP_TAPS - 1 - j]
                    && coeffs[1][j] == coeffs[1][TP_TAPS - 1 - j],
                "true-peak filter is not mirror-symmetric"
            );
        }
        let (mut d1_gain, mut d2_gain, mut d2_d1_gain) = (0.0f64, 0.0f64, 0.0f64);
        for (p, c) in coeffs.iter().enumerate() {
            let t = (p + 1) as f64 / 4.0;
            // Kernel of y_p − L_p, then its running sums (summation by parts, twice).
            let mut r: [f64; TP_TAPS] = std::array::from_fn(|j| c[j] as f64);
            r[HALF - 1] -= 1.0 - t;
            r[HALF] -= t;
            let mut s = [0.0f64; TP_TAPS - 1];
            let mut acc = 0.0;
            for i in 0..TP_TAPS - 1 {
                acc -= r[i];
                s[i] = acc;
            }
            let mut e = [0.0f64; TP_TAPS - 2];
            let mut acc = 0.0;
            for i in 0..TP_TAPS - 2 {
                acc -= s[i];
                e[i] = acc;
            }
            d1_gain = d1_gain.max(s.iter().map(|v| v.abs()).sum());
            d2_gain = d2_gain.max(e.iter().map(|v| v.abs()).sum());
            d2_d1_gain = d2_d1_gain.max(s.iter().sum::<f64>().abs());
        }
        let c1 = coeffs[0];
        Self {
            sym: std::array::from_fn(|j| 0.5 * (c1[j] + c1[TP_TAPS - 1 - j])),
            anti: std::array::from_fn(|j| 0.5 * (c1[j] - c1[TP_TAPS - 1 - j])),
            half: std::array::from_fn::<f32, HALF, _>(|j| coeffs[1][j]),
            gain_over_one: interp.gain_bound() - 1.0,
            d1_gain: d1_gain as f32,
            d2_gain: d2_gain as f32,
            d2_d1_gain: d2_d1_gain as f32,
        }
    }

    /// Upper bound on every interpolated magnitude of a window with statistics `st`.
    #[inline(always)]
    fn bound(&self, st: SubStats) -> f32 {
        self.bound_of(st.peak, st.d1, st.d2)
    }

    /// Upper bound on every interpolated magnitude of a window with `max|x|` = `peak`,
    /// `max|Δx|` = `d1`, `max|Δ²x|` = `d2`.
    #[inline(always)]
    pub(crate) fn bound_of(&self, peak: f32, d1: f32, d2: f32) -> f32 {
        let by_peak = self.gain_over_one * peak;
        let by_d1 = self.d1_gain * d1;
        let by_d2 = self.d2_gain * d2 + self.d2_d1_gain * d1;
        (peak + by_peak.min(by_d1).min(by_d2)) * (1.0 + BOUND_MARGIN)
    }

    /// The constants of [`Self::bound_of`]: `[G − 1, D', E, m, 1 + margin]`.
    pub(crate) fn bound_constants(&self) -> [f32; 5] {
        [
            self.gain_over_one,
            self.d1_gain,
            self.d2_gain,
            self.d2_d1_gain,
            1.0 + BOUND_MARGIN,
        ]
    }

    /// Largest `|y_p[n]|`, p = 1..3, n < `len` (≤ [`SUB`]), for the window `w` (see the
    /// type doc).
    #[inline(always)]
    fn max_abs(&self, w: &[f32; WINDOW], len: usize) -> f32 {
        let mut m = 0.0f32;
        for n in 0..len {
            let (mut s, mut d, mut h) = (0.0f32, 0.0f32, 0.0f32);
            for j in 0..TP_TAPS / 2 {
                let (a, b) = (w[n + j], w[n + TP_TAPS - 1 - j]);
                let (u, v) = (a + b, a - b);
                s += self.sym[j] * u;
                d += self.anti[j] * v;
                h += self.half[j] * u;
            }
            m = m.max((s.abs() + d.abs()).max(h.abs()));
        }
        m
    }
}

/// AVX2 + FMA versions of the per-sub-block loops (the compiler does not reliably vectorise
/// the portable lane loops).
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{Channel, HIST, MAX_INPUT, PIECE, SUB, SubStats, TP_TAPS, TruePeakFir, WINDOW};
    use std::arch::x86_64::*;

    /// Largest lane of each of three vectors, as `[a, b, c]`.
    #[target_feature(enable = "avx2,fma")]
    fn hmax3(a: __m256, b: __m256, c: __m256) -> [f32; 3] {
        let h = |v: __m256| _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let (a, b, c) = (h(a), h(b), h(c));
        // Transpose the three 4-lane vectors (and a zero one): lane-wise maxima of the rows.
        let z = _mm_setzero_ps();
        let ab_lo = _mm_unpacklo_ps(a, b);
        let ab_hi = _mm_unpackhi_ps(a, b);
        let cz_lo = _mm_unpacklo_ps(c, z);
        let cz_hi = _mm_unpackhi_ps(c, z);
        let m = _mm_max_ps(
            _mm_max_ps(_mm_movelh_ps(ab_lo, cz_lo), _mm_movehl_ps(cz_lo, ab_lo)),
            _mm_max_ps(_mm_movelh_ps(ab_hi, cz_hi), _mm_movehl_ps(cz_hi, ab_hi)),
        );
        let mut out = [0.0f32; 4];
        // SAFETY: `out` holds four f32.
        unsafe { _mm_storeu_ps(out.as_mut_ptr(), m) };
        [out[0], out[1], out[2]]
    }

    /// [`Channel::measure`]: the statistics of the whole sub-blocks of `src` (≤ `PIECE`
    /// samples, after the history) in 8-lane vectors (the differences of each vector come
    /// from the vector itself and the previous one, shifted across); the last partial
    /// sub-block, if any, by the portable code. Returns false if a sample is NaN, ±Inf or
    /// beyond ±`MAX_INPUT`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn measure(ch: &mut Channel, src: &[f32]) -> bool {
        let n = src.len().min(PIECE);
        let whole = n / SUB;
        let abs = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX));
        let limit = _mm256_set1_ps(MAX_INPUT);
        let mut ok = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
        let history: &[f32; 8] = ch.hist[HIST - 8..].try_into().expect("eight samples");
        // SAFETY: eight floats.
        let mut prev = unsafe { _mm256_loadu_ps(history.as_ptr()) };
        for k in 0..whole {
            let mut peak = _mm256_setzero_ps();
            let mut d1 = _mm256_setzero_ps();
            let mut d2 = _mm256_setzero_ps();
            for i in [k * SUB, k * SUB + 8] {
                let from: &[f32; 8] = src[i..i + 8].try_into().expect("eight samples");
                // SAFETY: eight floats.
                let a = unsafe { _mm256_loadu_ps(from.as_ptr()) };
                // x[i−1 ..] and x[i−2 ..]: `a` shifted right by one and two samples, with
                // the last samples of `prev` shifted in.
                let t = _mm256_castps_si256(_mm256_permute2f128_ps::<0x21>(prev, a));
                let ai = _mm256_castps_si256(a);
                let b = _mm256_castsi256_ps(_mm256_alignr_epi8::<12>(ai, t));
                let c = _mm256_castsi256_ps(_mm256_alignr_epi8::<8>(ai, t));
                let v = _mm256_and_ps(a, abs);
                // Ordered `≤`: false for NaN, so NaN and ±Inf both fail the check.
                ok = _mm256_and_ps(ok, _mm256_cmp_ps::<_CMP_LE_OQ>(v, limit));
                peak = _mm256_max_ps(peak, v);
                let e1 = _mm256_sub_ps(a, b);
                let e2 = _mm256_sub_ps(e1, _mm256_sub_ps(b, c));
                d1 = _mm256_max_ps(d1, _mm256_and_ps(e1, abs));
                d2 = _mm256_max_ps(d2, _mm256_and_ps(e2, abs));
                prev = a;
            }
            let [peak, d1, d2] = hmax3(peak, d1, d2);
            ch.stats[k + 1] = SubStats { peak, d1, d2 };
        }
        let tail_ok = ch.measure_from(&src[..n], whole);
        tail_ok && _mm256_movemask_ps(ok) == 0xff
    }

    /// [`super::raw_sums`] with fused multiply-adds, 16 frames per step.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn raw_sums(l: &[f32], r: &[f32]) -> [f64; 3] {
        let n = l.len().min(r.len());
        let z = _mm256_setzero_ps();
        let mut acc = [z; 6];
        let steps = n / 16;
        for k in 0..steps {
            for h in 0..2 {
                let i = 16 * k + 8 * h;
                let a: &[f32; 8] = l[i..i + 8].try_into().expect("eight samples");
                let b: &[f32; 8] = r[i..i + 8].try_into().expect("eight samples");
                // SAFETY: eight floats each.
                let (a, b) = unsafe { (_mm256_loadu_ps(a.as_ptr()), _mm256_loadu_ps(b.as_ptr())) };
                acc[3 * h] = _mm256_fmadd_ps(a, a, acc[3 * h]);
                acc[3 * h + 1] = _mm256_fmadd_ps(b, b, acc[3 * h + 1]);
                acc[3 * h + 2] = _mm256_fmadd_ps(a, b, acc[3 * h + 2]);
            }
        }
        let mut out = [0.0f64; 3];
        for (q, o) in out.iter_mut().enumerate() {
            let v = _mm256_add_ps(acc[q], acc[q + 3]);
            let mut lanes = [0.0f32; 8];
            // SAFETY: eight floats.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
            *o = lanes.iter().map(|&x| x as f64).sum();
        }
        for (&a, &b) in l[16 * steps..n].iter().zip(&r[16 * steps..n]) {
            let (a, b) = (a as f64, b as f64);
            out[0] += a * a;
            out[1] += b * b;
            out[2] += a * b;
        }
        out
    }

    /// [`TruePeakFir::max_abs`] in 8-lane registers with fused multiply-adds: the two
    /// 8-point halves of the sub-block side by side, so that each coefficient is broadcast
    /// once.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn fir_max_abs(fir: &TruePeakFir, w: &[f32; WINDOW], len: usize) -> f32 {
        let p = w.as_ptr();
        let z = _mm256_setzero_ps();
        let (mut s0, mut d0, mut h0, mut s1, mut d1, mut h1) = (z, z, z, z, z, z);
        for j in 0..TP_TAPS / 2 {
            // SAFETY: the highest index read is 8 + 15 − j + 7 ≤ 30 < WINDOW, and
            // 8 + j + 7 ≤ 22.
            let (a0, b0, a1, b1) = unsafe {
                (
                    _mm256_loadu_ps(p.add(j)),
                    _mm256_loadu_ps(p.add(TP_TAPS - 1 - j)),
                    _mm256_loadu_ps(p.add(8 + j)),
                    _mm256_loadu_ps(p.add(8 + TP_TAPS - 1 - j)),
                )
            };
            let (sym, anti, half) = (
                _mm256_set1_ps(fir.sym[j]),
                _mm256_set1_ps(fir.anti[j]),
                _mm256_set1_ps(fir.half[j]),
            );
            let (u0, v0) = (_mm256_add_ps(a0, b0), _mm256_sub_ps(a0, b0));
            let (u1, v1) = (_mm256_add_ps(a1, b1), _mm256_sub_ps(a1, b1));
            s0 = _mm256_fmadd_ps(sym, u0, s0);
            d0 = _mm256_fmadd_ps(anti, v0, d0);
            h0 = _mm256_fmadd_ps(half, u0, h0);
            s1 = _mm256_fmadd_ps(sym, u1, s1);
            d1 = _mm256_fmadd_ps(anti, v1, d1);
            h1 = _mm256_fmadd_ps(half, u1, h1);
        }
        let abs = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX));
        let mag = |s: __m256, d: __m256, h: __m256| {
            let sd = _mm256_add_ps(_mm256_and_ps(s, abs), _mm256_and_ps(d, abs));
            _mm256_max_ps(sd, _mm256_and_ps(h, abs))
        };
        let (m0, m1) = (mag(s0, d0, h0), mag(s1, d1, h1));
        let m = if len >= SUB {
            _mm256_max_ps(m0, m1)
        } else {
            // Points at and beyond `len` are not points of this sub-block.
            let lane = _mm256_setr_ps(0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0);
            let len_v = _mm256_set1_ps(len as f32);
            let in0 = _mm256_cmp_ps::<_CMP_LT_OQ>(lane, len_v);
            let in1 = _mm256_cmp_ps::<_CMP_LT_OQ>(_mm256_add_ps(lane, _mm256_set1_ps(8.0)), len_v);
            _mm256_max_ps(_mm256_and_ps(m0, in0), _mm256_and_ps(m1, in1))
        };
        let q = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let q = _mm_max_ps(q, _mm_movehl_ps(q, q));
        let q = _mm_max_ss(q, _mm_shuffle_ps::<0b01>(q, q));
        _mm_cvtss_f32(q)
    }
}

/// `[Σl², Σr², Σl·r]` over a segment (`f32` lanes, `f64` result; segments are ≤ one 5 ms
/// tick).
///
/// # Safety
/// With `FMA`, the CPU must support AVX2 and FMA.
#[inline(always)]
pub(crate) unsafe fn raw_sums<const FMA: bool>(l: &[f32], r: &[f32]) -> [f64; 3] {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: the caller guarantees AVX2 and FMA.
        return unsafe { simd::raw_sums(l, r) };
    }
    let mut acc = [[0.0f32; LANES]; 3];
    let cl = l.chunks_exact(LANES);
    let cr = r.chunks_exact(LANES);
    let (rest_l, rest_r) = (cl.remainder(), cr.remainder());
    for (a, b) in cl.zip(cr) {
        for i in 0..LANES {
            acc[0][i] += a[i] * a[i];
            acc[1][i] += b[i] * b[i];
            acc[2][i] += a[i] * b[i];
        }
    }
    let mut out = acc.map(|lanes| lanes.iter().map(|&v| v as f64).sum::<f64>());
    for (&a, &b) in rest_l.iter().zip(rest_r) {
        let (a, b) = (a as f64, b as f64);
        out[0] += a * a;
        out[1] += b * b;
        out[2] += a * b;
    }
    out
}

/// PLR in dB from true-peak max (dBTP) and integrated loudness (LUFS); −∞ when either is −∞.
fn plr_db(true_peak_max_dbtp: f32, integrated_lufs: f32) -> f32 {
    if true_peak_max_dbtp.is_finite() && integrated_lufs.is_finite() {
        true_peak_max_dbtp - integrated_lufs
    } else {
        f32::NEG_INFINITY
    }
}

/// Reader side: atomics written by the audio thread, read by any other thread.
pub struct PublishedMeters {
    /// Largest `|x|` per channel since the previous read (linear; `fetch_max` / `swap`).
    sample_peak: [AtomicF32; 2],
    /// Largest `|x|` per channel since the last reset (linear).
    sample_peak_max: [AtomicF32; 2],
    /// Largest true peak since the previous read (linear; `fetch_max` / `swap`).
    true_peak: AtomicF32,
    /// Largest true peak since the last reset (linear).
    true_peak_max: AtomicF32,
    /// Mean squares over the RMS window, per channel (linear).
    rms_ms: [AtomicF32; 2],
    /// Momentary mean square (K-weighted, both channels), linear; read as LUFS.
    momentary_ms: AtomicF64,
    /// Short-term mean square, linear; read as LUFS.
    short_term_ms: AtomicF64,
    /// Integrated loudness, LUFS.
    integrated_lufs: AtomicF32,
    /// Largest momentary mean square since the reset, linear; read as LUFS.
    max_momentary_ms: AtomicF64,
    /// Largest short-term mean square since the reset, linear; read as LUFS.
    max_short_term_ms: AtomicF64,
    /// Loudness range, LU.
    lra_lu: AtomicF32,
    /// Correlation, −1..+1.
    correlation: AtomicF32,
    /// Set by a reader, cleared by the audio thread when it has reset the programme values.
    reset_requested: AtomicBool,
}

impl Default for PublishedMeters {
    fn default() -> Self {
        let ninf = || AtomicF32::new(f32::NEG_INFINITY);
        Self {
            sample_peak: [AtomicF32::new(0.0), AtomicF32::new(0.0)],
            sample_peak_max: [AtomicF32::new(0.0), AtomicF32::new(0.0)],
            true_peak: AtomicF32::new(0.0),
            true_peak_max: AtomicF32::new(0.0),
            rms_ms: [AtomicF32::new(0.0), AtomicF32::new(0.0)],
            momentary_ms: AtomicF64::new(0.0),
            short_term_ms: AtomicF64::new(0.0),
            integrated_lufs: ninf(),
            max_momentary_ms: AtomicF64::new(0.0),
            max_short_term_ms: AtomicF64::new(0.0),
            lra_lu: ninf(),
            correlation: AtomicF32::new(0.0),
            reset_requested: AtomicBool::new(false),
        }
    }
}

impl PublishedMeters {
    /// A new shared set.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Reads the meters; the "since the previous read" maxima restart from here.
    pub fn read(&self) -> MeterReading {
        let sample_peak = [
            self.sample_peak[0].swap(0.0, Relaxed),
            self.sample_peak[1].swap(0.0, Relaxed),
        ];
        let true_peak = self.true_peak.swap(0.0, Relaxed);
        let true_peak_max_dbtp = gain_to_db(self.true_peak_max.load(Relaxed));
        let integrated_lufs = self.integrated_lufs.load(Relaxed);
        MeterReading {
            sample_peak_db: sample_peak.map(gain_to_db),
            sample_peak_max_db: [
                gain_to_db(self.sample_peak_max[0].load(Relaxed)),
                gain_to_db(self.sample_peak_max[1].load(Relaxed)),
            ],
            true_peak_dbtp: gain_to_db(true_peak),
            true_peak_max_dbtp,
            rms_db: [
                10.0 * self.rms_ms[0].load(Relaxed).log10(),
                10.0 * self.rms_ms[1].load(Relaxed).log10(),
            ],
            momentary_lufs: energy_to_lufs(self.momentary_ms.load(Relaxed)) as f32,
            short_term_lufs: energy_to_lufs(self.short_term_ms.load(Relaxed)) as f32,
            integrated_lufs,
            max_momentary_lufs: energy_to_lufs(self.max_momentary_ms.load(Relaxed)) as f32,
            max_short_term_lufs: energy_to_lufs(self.max_short_term_ms.load(Relaxed)) as f32,
            lra_lu: self.lra_lu.load(Relaxed),
            plr_db: plr_db(true_peak_max_dbtp, integrated_lufs),
            correlation: self.correlation.load(Relaxed),
        }
    }

    /// Asks the audio thread to reset integrated loudness, LRA and maxima (done at its next
    /// `publish`).
    pub fn request_reset(&self) {
        self.reset_requested.store(true, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::true_peak::TruePeakDetector;
    use std::cell::Cell;

    fn noise(seed: &mut u32) -> f32 {
        *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (*seed >> 8) as f32 / (1u32 << 23) as f32 - 1.0
    }

    /// Runs `x` through a [`Channel`] in pieces of varying size; per piece calls
    /// `check(samples, held_before, result)` with the true peak of phases 1..3 held from
    /// `start(piece peak)`. With `FMA`, the CPU must support AVX2 and FMA.
    fn pieces<const FMA: bool>(
        x: &[f32],
        fir: &TruePeakFir,
        mut start: impl FnMut(f32) -> f32,
        mut check: impl FnMut(&[f32], f32, f32),
    ) {
        let mut ch = Channel::new();
        let (mut pos, mut step) = (0, 1);
        while pos < x.len() {
            let end = (pos + step).min(x.len());
            assert!(!FMA || avx2_fma_available());
            let piece = &x[pos..end];
            // SAFETY: checked just above.
            unsafe { ch.measure::<FMA>(piece) };
            let held = start(ch.peak());
            // SAFETY: as above.
            let got =
                unsafe { true_peak_of::<FMA>(fir, &ch.hist, piece, |k| ch.bound(fir, k), held) };
            check(piece, held, got);
            ch.end_piece(piece);
            pos = end;
            step = (step * 13 + 7) % PIECE + 1;
        }
    }

    fn bursty(len: usize, seed: u32) -> Vec<f32> {
        let mut seed = seed;
        (0..len)
            .map(|n| {
                let burst = if n % 5000 < 300 { 1.0 } else { 0.1 };
                burst * (0.5 * noise(&mut seed) + 0.4 * (n as f32 * 1.3).sin())
            })
            .collect()
    }

    #[test]
    fn block_true_peak_matches_the_per_sample_detector() {
        let x = bursty(40_000, 3);
        let fir = TruePeakFir::new();
        // Held value 0 for every piece: no skipping; every piece's interpolated maximum must
        // agree with the interpolator's phases 1..3 for the same samples.
        let mut interp = Interpolator::<TP_TAPS>::new();
        pieces::<false>(
            &x,
            &fir,
            |_| 0.0,
            |piece, _, got| {
                let want = piece.iter().fold(0.0f32, |h, &v| {
                    let y = interp.push(v);
                    h.max(y[1].abs()).max(y[2].abs()).max(y[3].abs())
                });
                assert!(
                    (got - want).abs() <= 2e-6 * want.max(1e-3),
                    "{got} vs {want}"
                );
            },
        );
        // Held across pieces and starting at the sample peak (skipping): the running maximum
        // is the detector's.
        let mut det = TruePeakDetector::new();
        let all = Cell::new(0.0f32);
        let (mut all_det, mut pos) = (0.0f32, 0);
        pieces::<false>(
            &x,
            &fir,
            |peak| all.get().max(peak),
            |piece, _, got| {
                all.set(got);
                all_det = piece.iter().fold(all_det, |h, &v| det.process_max(v, h));
                pos += piece.len();
            },
        );
        assert_eq!(pos, x.len());
        let all = all.get();
        assert!(
            (all - all_det).abs() <= 2e-6 * all_det,
            "{all} vs {all_det}"
        );
    }

    #[test]
    fn skipping_gives_exactly_the_full_result() {
        // Smooth, tonal, noisy and near-Nyquist material, at levels that make the bound
        // tests pass and fail.
        let mut seed = 11u32;
        let x: Vec<f32> = (0..60_000)
            .map(|n| {
                let t = n as f32;
                match (n / 6000) % 5 {
                    0 => 0.8 * (t * 0.01).sin(),
                    1 => 0.5 * (t * 0.3).sin() * (1.0 + 0.5 * (t * 0.001).sin()),
                    2 => 0.3 * noise(&mut seed),
                    3 => 0.7 * (t * 3.1).sin() + 0.01 * noise(&mut seed),
                    _ => {
                        if n % 700 < 3 {
                            0.9
                        } else {
                            0.05 * (t * 0.05).sin()
                        }
                    }
                }
            })
            .collect();
        let fir = TruePeakFir::new();
        let mut full = Vec::new();
        pieces::<false>(&x, &fir, |_| 0.0, |_, _, got| full.push(got));
        let (k, held) = (Cell::new(0), Cell::new(0.0f32));
        let mut skipped = 0;
        pieces::<false>(
            &x,
            &fir,
            |peak| {
                // Restart now and then, as a publish does.
                let h = if k.get() % 4 == 0 {
                    peak
                } else {
                    held.get().max(peak)
                };
                held.set(h);
                h
            },
            |_, before, got| {
                assert_eq!(got, before.max(full[k.get()]), "piece {}", k.get());
                skipped += usize::from(got == before);
                held.set(got);
                k.set(k.get() + 1);
            },
        );
        let k = k.get();
        assert!(
            skipped > k / 4,
            "the bound should skip often: {skipped} of {k}"
        );
    }

    #[test]
    fn bound_covers_every_window() {
        let fir = TruePeakFir::new();
        let mut interp = Interpolator::<TP_TAPS>::new();
        let mut coeffs = [[0.0f32; TP_TAPS]; 3];
        for t in 0..TP_TAPS {
            let y = interp.push(if t == 0 { 1.0 } else { 0.0 });
            for p in 0..3 {
                coeffs[p][TP_TAPS - 1 - t] = y[p + 1];
            }
        }
        let mut seed = 5u32;
        let mut ch = Channel::new();
        for round in 0..3000usize {
            let mut w = [0.0f32; 2 * SUB];
            let amp = 10f32.powi((round % 7) as i32 - 3);
            for (i, v) in w.iter_mut().enumerate() {
                *v = amp
                    * match round % 5 {
                        0 => noise(&mut seed),
                        1 => (i as f32 * 0.02 * (round % 50) as f32 + round as f32).sin(),
                        // The worst case of the plain bound: signs matching a phase's taps.
                        2 => {
                            let c = coeffs[(round / 5) % 3][(i + 1) % TP_TAPS];
                            c.signum()
                        }
                        3 => (i as f32 * 3.0).cos() * (1.0 + 0.1 * noise(&mut seed)),
                        _ => {
                            if i % 9 == 0 {
                                1.0
                            } else {
                                0.01 * noise(&mut seed)
                            }
                        }
                    };
            }
            ch.reset();
            // SAFETY: no requirement without FMA.
            let exact = unsafe {
                ch.measure::<false>(&w[..SUB]);
                ch.end_piece(&w[..SUB]);
                ch.measure::<false>(&w[SUB..]);
                true_peak_of::<false>(&fir, &ch.hist, &w[SUB..], |_| f32::INFINITY, 0.0)
            };
            let bound = ch.bound(&fir, 0);
            assert!(bound >= exact, "round {round}: bound {bound} < {exact}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn fma_and_plain_builds_agree() {
        if !avx2_fma_available() {
            return;
        }
        #[target_feature(enable = "avx2,fma")]
        fn fma_peaks(x: &[f32], fir: &TruePeakFir) -> Vec<f32> {
            let mut out = Vec::new();
            pieces::<true>(x, fir, |_| 0.0, |_, _, got| out.push(got));
            out
        }
        let x = bursty(20_000, 9);
        let fir = TruePeakFir::new();
        let mut plain = Vec::new();
        pieces::<false>(&x, &fir, |_| 0.0, |_, _, got| plain.push(got));
        // SAFETY: AVX2 and FMA were just detected.
        let fused = unsafe { fma_peaks(&x, &fir) };
        for (a, b) in plain.iter().zip(&fused) {
            assert!((a - b).abs() <= 1e-6 * a.max(1e-3), "{a} vs {b}");
        }
        // Whole meter sets, one forced to the plain build.
        let fs = 48_000.0;
        let y: Vec<f32> = x.iter().rev().map(|v| 0.7 * v).collect();
        let mut a = MeterSet::new(fs);
        let mut b = MeterSet::new(fs);
        b.use_fma = false;
        for (l, r) in x.chunks(300).zip(y.chunks(300)) {
            a.process(l, r);
            b.process(l, r);
        }
        let (ra, rb) = (a.reading(), b.reading());
        assert!(
            (ra.momentary_lufs - rb.momentary_lufs).abs() < 1e-4,
            "{ra:?} {rb:?}"
        );
        assert!((ra.true_peak_dbtp - rb.true_peak_dbtp).abs() < 1e-4);
        assert_eq!(ra.sample_peak_db, rb.sample_peak_db);
        assert!((ra.correlation - rb.correlation).abs() < 1e-5);
    }

    fn sine(fs: f32, freq: f32, amp: f32, phase: f32, len: usize) -> Vec<f32> {
        (0..len)
            .map(|n| amp * (2.0 * std::f32::consts::PI * freq * n as f32 / fs + phase).sin())
            .collect()
    }

    fn feed(m: &mut MeterSet, l: &[f32], r: &[f32], out: &PublishedMeters) {
        for (bl, br) in l.chunks(517).zip(r.chunks(517)) {
            m.process(bl, br);
            m.publish(out);
        }
    }

    #[test]
    fn readings_of_a_stereo_sine() {
        let fs = 48_000.0;
        let x = sine(fs, 1000.0, 0.5, 0.3, 48_000 * 4);
        let y: Vec<f32> = x.iter().map(|v| -v).collect();
        let mut m = MeterSet::new(fs);
        let out = PublishedMeters::new();
        feed(&mut m, &x, &y, &out);
        let r = out.read();
        for c in 0..2 {
            assert!((r.sample_peak_db[c] + 6.02).abs() < 0.01, "{r:?}");
            assert!((r.sample_peak_max_db[c] + 6.02).abs() < 0.01);
            // RMS of a sine: peak − 3.01 dB.
            assert!((r.rms_db[c] + 9.03).abs() < 0.01, "{r:?}");
        }
        assert!((r.true_peak_max_dbtp + 6.02).abs() < 0.05);
        // Anti-phase: correlation −1. Loudness of a −6 dBFS 1 kHz stereo sine ≈ −6 LUFS.
        assert!((r.correlation + 1.0).abs() < 1e-3, "{}", r.correlation);
        assert!((r.momentary_lufs + 6.0).abs() < 0.1 && (r.integrated_lufs + 6.0).abs() < 0.1);
        assert!((r.plr_db - (r.true_peak_max_dbtp - r.integrated_lufs)).abs() < 1e-6);
        assert!(
            (r.plr_db - 0.0).abs() < 0.15,
            "PLR of a sine ≈ 0: {}",
            r.plr_db
        );
        assert_eq!(r.lra_lu, 0.0);
        // The direct reading agrees, but for the maxima since the last publish (restarted).
        let direct = m.reading();
        assert_eq!(direct.true_peak_dbtp, f32::NEG_INFINITY);
        let direct = MeterReading {
            sample_peak_db: r.sample_peak_db,
            true_peak_dbtp: r.true_peak_dbtp,
            ..direct
        };
        assert_eq!(r, direct);
    }

    #[test]
    fn correlation_of_identical_and_independent_signals() {
        let fs = 48_000.0;
        let mut seed = 5u32;
        let a: Vec<f32> = (0..48_000).map(|_| 0.3 * noise(&mut seed)).collect();
        let b: Vec<f32> = (0..48_000).map(|_| 0.3 * noise(&mut seed)).collect();
        let mut m = MeterSet::new(fs);
        m.process(&a, &a);
        assert!((m.correlation() - 1.0).abs() < 1e-4);
        m.process(&a, &b);
        assert!(m.correlation().abs() < 0.1, "{}", m.correlation());
        // One channel silent: no evidence, 0 (the window holds only the last 300 ms).
        m.process(&a, &vec![0.0; a.len()]);
        assert_eq!(m.correlation(), 0.0);
        m.process(&a[..14_400], &b[..14_400]);
        assert!(m.correlation().abs() < 0.1, "{}", m.correlation());
    }

    #[test]
    fn silence_reads_no_value() {
        let mut m = MeterSet::new(44_100.0);
        let out = PublishedMeters::new();
        let before = out.read();
        feed(&mut m, &[0.0; 44_100 * 4], &[0.0; 44_100 * 4], &out);
        for r in [before, out.read(), m.reading()] {
            let ninf = f32::NEG_INFINITY;
            assert_eq!(r.sample_peak_db, [ninf; 2]);
            assert_eq!(r.sample_peak_max_db, [ninf; 2]);
            assert_eq!(r.rms_db, [ninf; 2]);
            for v in [
                r.true_peak_dbtp,
                r.true_peak_max_dbtp,
                r.momentary_lufs,
                r.short_term_lufs,
                r.integrated_lufs,
                r.max_momentary_lufs,
                r.max_short_term_lufs,
                r.lra_lu,
                r.plr_db,
            ] {
                assert_eq!(v, ninf, "{r:?}");
            }
            assert_eq!(r.correlation, 0.0);
        }
    }

    #[test]
    fn a_peak_between_two_reads_is_never_missed() {
        let fs = 48_000.0;
        let mut m = MeterSet::new(fs);
        let out = PublishedMeters::new();
        let quiet = vec![0.01f32; 256];
        let mut click = quiet.clone();
        click[100] = 0.9;
        // Several blocks between reads; the click in the first must show in the next read.
        for round in 0..5 {
            for k in 0..4 {
                let l = if k == 0 && round % 2 == 0 {
                    &click
                } else {
                    &quiet
                };
                m.process(l, &quiet);
                m.publish(&out);
            }
            let r = out.read();
            let expect = if round % 2 == 0 { 0.9f32 } else { 0.01 };
            assert!(
                (r.sample_peak_db[0] - gain_to_db(expect)).abs() < 0.01,
                "{round}: {r:?}"
            );
            assert!(
                r.true_peak_dbtp >= gain_to_db(expect) - 0.01,
                "{round}: {r:?}"
            );
            assert!((r.sample_peak_max_db[0] - gain_to_db(0.9)).abs() < 0.01);
        }
        // A read with no publish in between restarts from zero.
        assert_eq!(out.read().sample_peak_db, [f32::NEG_INFINITY; 2]);
    }

    #[test]
    fn requested_reset_clears_programme_values() {
        let fs = 48_000.0;
        let loud = sine(fs, 1000.0, 0.5, 0.0, 48_000 * 4);
        let soft = sine(fs, 1000.0, 0.05, 0.0, 48_000 * 4);
        let mut m = MeterSet::new(fs);
        let out = PublishedMeters::new();
        feed(&mut m, &loud, &loud, &out);
        let before = out.read();
        assert!(before.integrated_lufs > -7.0 && before.true_peak_max_dbtp > -6.1);
        out.request_reset();
        m.process(&soft[..512], &soft[..512]);
        m.publish(&out);
        let r = out.read();
        // Reset done at this publish: maxima restart, integrated awaits its first 400 ms block,
        // while the momentary display keeps its window (no gap).
        assert_eq!(r.integrated_lufs, f32::NEG_INFINITY, "{r:?}");
        assert!(r.momentary_lufs > -7.0, "{r:?}");
        assert_eq!(r.lra_lu, f32::NEG_INFINITY);
        assert!(
            r.true_peak_max_dbtp < -25.0 && r.sample_peak_max_db[0] < -25.0,
            "{r:?}"
        );
        feed(&mut m, &soft, &soft, &out);
        let r = out.read();
        assert!((r.integrated_lufs + 26.0).abs() < 0.1, "{r:?}");
        assert!((r.max_short_term_lufs + 26.0).abs() < 0.1, "{r:?}");
        assert!((r.max_momentary_lufs + 26.0).abs() < 0.1, "{r:?}");
        assert!(!out.reset_requested.load(Relaxed));
    }

    #[test]
    fn extreme_input_never_gives_nan() {
        let fs = 96_000.0;
        let mut m = MeterSet::new(fs);
        let out = PublishedMeters::new();
        let mut seed = 1u32;
        let evil = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            -f32::MAX,
            1.0e-40,
            -1.0e-45,
            1.0e30,
            0.0,
        ];
        for round in 0..400 {
            let len = 1 + (round * 37) % 700;
            let l: Vec<f32> = (0..len)
                .map(|i| {
                    if (i + round) % 5 == 0 {
                        evil[(i + round) % evil.len()]
                    } else {
                        noise(&mut seed)
                    }
                })
                .collect();
            let r: Vec<f32> = l.iter().rev().map(|v| v * 0.5).collect();
            m.process(&l, &r);
            m.publish(&out);
            for reading in [out.read(), m.reading()] {
                let values = [
                    reading.sample_peak_db[0],
                    reading.sample_peak_db[1],
                    reading.sample_peak_max_db[0],
                    reading.true_peak_dbtp,
                    reading.true_peak_max_dbtp,
                    reading.rms_db[0],
                    reading.rms_db[1],
                    reading.momentary_lufs,
                    reading.short_term_lufs,
                    reading.integrated_lufs,
                    reading.max_momentary_lufs,
                    reading.max_short_term_lufs,
                    reading.lra_lu,
                    reading.plr_db,
                    reading.correlation,
                ];
                assert!(values.iter().all(|v| !v.is_nan()), "{reading:?}");
                assert!(reading.true_peak_max_dbtp < 200.0 && reading.momentary_lufs < 300.0);
            }
        }
        // After the storm a plain signal is metered normally again.
        let x = sine(fs, 1000.0, 0.1, 0.0, 96_000 * 4);
        feed(&mut m, &x, &x, &out);
        let r = out.read();
        assert!((r.momentary_lufs + 20.0).abs() < 0.1, "{r:?}");
        assert!((r.rms_db[0] + 23.01).abs() < 0.05, "{r:?}");
        assert!((r.correlation - 1.0).abs() < 1e-3);
        assert!((r.sample_peak_db[0] + 20.0).abs() < 0.01);
    }
}
