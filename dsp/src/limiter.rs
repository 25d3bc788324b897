//! True-peak lookahead limiter (master). STUB: interface fixed, implementation in progress.

use crate::settings::LimiterSettings;

/// Lookahead of the limiter in milliseconds (fixed, so the reported latency never changes).
pub const LOOKAHEAD_MS: f32 = 1.5;

/// Stereo-linked true-peak lookahead limiter.
pub struct Limiter {
    sample_rate: f32,
}

impl Limiter {
    /// Prepares the limiter for `sample_rate` (44.1–192 kHz); allocates all buffers.
    pub fn new(sample_rate: f32) -> Self {
        Self { sample_rate }
    }

    /// Applies settings (real-time safe; ceiling and release are smoothed).
    pub fn set_settings(&mut self, _settings: &LimiterSettings) {}

    /// Clears all state.
    pub fn reset(&mut self) {}

    /// Delay in samples from input to output; constant for a given sample rate, whether the
    /// limiter is enabled or not.
    pub fn latency_samples(&self) -> usize {
        let _ = self.sample_rate;
        0
    }

    /// Processes a block in place. Inputs must be finite.
    pub fn process(&mut self, _left: &mut [f32], _right: &mut [f32]) {}

    /// Current gain reduction in dB (≥ 0).
    pub fn gain_reduction_db(&self) -> f32 {
        0.0
    }

    /// Largest gain reduction in dB since the last call (≥ 0); resets the maximum.
    pub fn take_max_gain_reduction_db(&mut self) -> f32 {
        0.0
    }
}
