//! # stembus-dsp
//!
//! The Stembus engine: per-stem processing, summing, the master chain with a true-peak
//! lookahead limiter, and EBU-compliant meters. Pure Rust, no plugin or GUI imports; the
//! plugin (`plugin/`) and the offline tool (`cli/`) both drive this crate.
//!
//! Real-time contract: after construction (`new` / `prepare`), nothing in `process` allocates,
//! locks, logs or panics, whatever the input (NaN, ±Inf and denormals included).

pub mod biquad;
pub mod compressor;
pub mod delay;
pub mod dynamic_eq;
pub mod engine;
pub mod eq;
pub mod limiter;
pub mod loudness;
pub mod master;
pub mod meter_bank;
pub mod meters;
pub mod offline;
pub mod oversampling;
pub mod reference;
pub mod saturation;
pub mod settings;
pub mod smoother;
pub mod state;
pub mod stem;
pub mod stereo;
pub mod true_peak;
pub mod util;

/// Most stems the engine takes.
pub const MAX_STEMS: usize = 8;
