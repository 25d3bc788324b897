//! One stem's processing chain, in this order:
//! trim/polarity → EQ → dynamic EQ → compressor (key: own or mix) → saturation → stereo
//! (width, mono bass, balance) → output gain. Mute/solo is applied by the engine (it depends on
//! all stems). Every module is bypassable click-free and keeps its latency when bypassed, so the
//! chain's latency depends only on the sample rate.

use crate::compressor::Compressor;
use crate::dynamic_eq::DynamicEq;
use crate::eq::StemEq;
use crate::saturation::Saturation;
use crate::settings::StemSettings;
use crate::smoother::{DEFAULT_RAMP_MS, Smoother};
use crate::stereo::StereoProcessor;
use crate::util::db_to_gain;

/// Range of the input trim and output gain in dB.
pub const STEM_GAIN_RANGE_DB: f32 = 24.0;

/// The per-stem chain.
pub struct StemChain {
    /// Input trim times polarity (±linear gain), smoothed; a polarity flip ramps through zero.
    input_gain: Smoother,
    /// HPF, shelves, bells, LPF.
    pub(crate) eq: StemEq,
    /// Dynamic EQ band.
    pub(crate) dyn_eq: DynamicEq,
    /// Compressor.
    pub(crate) comp: Compressor,
    /// Oversampled saturation (the only module with latency).
    saturation: Saturation,
    /// Width, mono bass, balance.
    stereo: StereoProcessor,
    /// Output gain (linear), smoothed.
    output_gain: Smoother,
}

impl StemChain {
    /// Allocates the chain for `sample_rate`.
    pub fn new(sample_rate: f32) -> Self {
        Self {
            input_gain: Smoother::new(1.0, DEFAULT_RAMP_MS, sample_rate),
            eq: StemEq::new(sample_rate),
            dyn_eq: DynamicEq::new(sample_rate),
            comp: Compressor::new(sample_rate),
            saturation: Saturation::new(sample_rate),
            stereo: StereoProcessor::new(sample_rate),
            output_gain: Smoother::new(1.0, DEFAULT_RAMP_MS, sample_rate),
        }
    }

    /// Latency in samples (constant, whatever is bypassed).
    pub fn latency_samples(&self) -> usize {
        self.eq.latency_samples()
            + self.dyn_eq.latency_samples()
            + self.comp.latency_samples()
            + self.saturation.latency_samples()
            + self.stereo.latency_samples()
    }

    /// Applies settings (real-time safe).
    pub fn set_settings(&mut self, s: &StemSettings) {
        let trim = db_to_gain(s.trim_db.clamp(-STEM_GAIN_RANGE_DB, STEM_GAIN_RANGE_DB));
        self.input_gain
            .set_target(if s.invert { -trim } else { trim });
        self.eq.set_settings(&s.eq);
        self.dyn_eq.set_settings(&s.dyn_eq);
        self.comp.set_settings(&s.comp);
        self.saturation.set_settings(&s.sat);
        self.stereo.set_settings(&s.stereo);
        self.output_gain.set_target(db_to_gain(
            s.output_db.clamp(-STEM_GAIN_RANGE_DB, STEM_GAIN_RANGE_DB),
        ));
    }

    /// Clears all state; smoothers jump to their targets.
    pub fn reset(&mut self) {
        self.input_gain.reset(self.input_gain.target());
        self.eq.reset();
        self.dyn_eq.reset();
        self.comp.reset();
        self.saturation.reset();
        self.stereo.reset();
        self.output_gain.reset(self.output_gain.target());
    }

    /// Processes a block in place (any length: the output does not depend on how the signal
    /// is cut). `mix_key` is the unprocessed sum of all stems (for a compressor keyed from the
    /// mix), aligned with this block. Inputs are finite.
    pub fn process(&mut self, left: &mut [f32], right: &mut [f32], mix_key: (&[f32], &[f32])) {
        self.input_gain.apply_gain(left, right);
        self.eq.process(left, right);
        self.dyn_eq.process(left, right);
        self.comp.process(left, right, Some(mix_key));
        self.saturation.process(left, right);
        self.stereo.process(left, right);
        self.output_gain.apply_gain(left, right);
    }
}
