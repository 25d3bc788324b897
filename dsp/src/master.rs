//! The master chain: drive → glue compressor → EQ → width → true-peak limiter → output gain.

use crate::compressor::Compressor;
use crate::eq::MasterEq;
use crate::limiter::Limiter;
use crate::settings::MasterSettings;
use crate::smoother::{DEFAULT_RAMP_MS, Smoother};
use crate::stereo::StereoProcessor;
use crate::util::db_to_gain;

/// Range of the drive in dB.
pub const DRIVE_RANGE_DB: f32 = 24.0;

/// The master chain.
pub struct MasterChain {
    /// Drive into the chain (linear), smoothed.
    drive: Smoother,
    /// Glue compressor (keyed from the unprocessed sum by default).
    pub(crate) glue: Compressor,
    /// Master EQ (shelves, bell, tilt).
    eq: MasterEq,
    /// Width, mono bass, balance.
    stereo: StereoProcessor,
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
            glue: Compressor::new(sample_rate),
            eq: MasterEq::new(sample_rate),
            stereo: StereoProcessor::new(sample_rate),
            limiter: Limiter::new(sample_rate),
            output_gain: Smoother::new(1.0, DEFAULT_RAMP_MS, sample_rate),
        }
    }

    /// Latency in samples (constant, whatever is bypassed).
    pub fn latency_samples(&self) -> usize {
        self.glue.latency_samples()
            + self.eq.latency_samples()
            + self.stereo.latency_samples()
            + self.limiter.latency_samples()
    }

    /// Applies settings (real-time safe).
    pub fn set_settings(&mut self, s: &MasterSettings) {
        self.drive.set_target(db_to_gain(
            s.drive_db.clamp(-DRIVE_RANGE_DB, DRIVE_RANGE_DB),
        ));
        self.glue.set_settings(&s.glue);
        self.eq.set_settings(&s.eq);
        self.stereo.set_settings(&s.stereo);
        self.limiter.set_settings(&s.limiter);
        self.output_gain
            .set_target(db_to_gain(s.output_db.clamp(-DRIVE_RANGE_DB, 0.0)));
    }

    /// Clears all state.
    pub fn reset(&mut self) {
        self.drive.reset(self.drive.target());
        self.glue.reset();
        self.eq.reset();
        self.stereo.reset();
        self.limiter.reset();
        self.output_gain.reset(self.output_gain.target());
    }

    /// Processes one chunk in place. `mix_key` is the unprocessed stem sum, aligned with this
    /// chunk: the glue compressor's detector listens to it (after the same drive) when its key
    /// is `Mix`, so the master can compress the way the raw mix moves; with key `Own` it
    /// listens to its input, the processed sum. `mix_key` is overwritten.
    pub fn process(
        &mut self,
        left: &mut [f32],
        right: &mut [f32],
        mix_key: (&mut [f32], &mut [f32]),
    ) {
        let mut key_drive = self.drive;
        key_drive.apply_gain(mix_key.0, mix_key.1);
        self.drive.apply_gain(left, right);
        self.glue
            .process(left, right, Some((&*mix_key.0, &*mix_key.1)));
        self.eq.process(left, right);
        self.stereo.process(left, right);
        self.limiter.process(left, right);
        self.output_gain.apply_gain(left, right);
    }
}
