//! The master chain: drive → (glue compressor → EQ → width) → true-peak limiter → output gain.

use crate::limiter::Limiter;
use crate::settings::MasterSettings;
use crate::smoother::{DEFAULT_RAMP_MS, Smoother};
use crate::util::db_to_gain;

/// Range of the drive in dB.
pub const DRIVE_RANGE_DB: f32 = 24.0;

/// The master chain.
pub struct MasterChain {
    /// Drive into the chain (linear), smoothed.
    drive: Smoother,
    /// True-peak limiter.
    pub(crate) limiter: Limiter,
    /// Output gain after the limiter (linear, ≤ 1), smoothed.
    output_gain: Smoother,
}

impl MasterChain {
    /// Allocates the chain for `sample_rate`.
    pub fn new(sample_rate: f32) -> Self {
        Self {
            drive: Smoother::new(1.0, DEFAULT_RAMP_MS, sample_rate),
            limiter: Limiter::new(sample_rate),
            output_gain: Smoother::new(1.0, DEFAULT_RAMP_MS, sample_rate),
        }
    }

    /// Latency in samples (constant, whatever is bypassed).
    pub fn latency_samples(&self) -> usize {
        self.limiter.latency_samples()
    }

    /// Applies settings (real-time safe).
    pub fn set_settings(&mut self, s: &MasterSettings) {
        self.drive
            .set_target(db_to_gain(s.drive_db.clamp(-DRIVE_RANGE_DB, DRIVE_RANGE_DB)));
        self.limiter.set_settings(&s.limiter);
        self.output_gain
            .set_target(db_to_gain(s.output_db.clamp(-DRIVE_RANGE_DB, 0.0)));
    }

    /// Clears all state.
    pub fn reset(&mut self) {
        self.drive.reset(self.drive.target());
        self.limiter.reset();
        self.output_gain.reset(self.output_gain.target());
    }

    /// Processes one chunk in place. `mix_key` is the unprocessed stem sum.
    pub fn process(&mut self, left: &mut [f32], right: &mut [f32], _mix_key: (&[f32], &[f32])) {
        self.drive.apply_gain(left, right);
        self.limiter.process(left, right);
        self.output_gain.apply_gain(left, right);
    }
}
