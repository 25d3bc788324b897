//! # stembus-cli
//!
//! The offline tool `stembus`: the Stembus engine ([`stembus_dsp`]) run over WAV files.
//!
//! - `stembus render`: stems (and optionally the reference mix) through the engine with a
//!   settings file (the plugin's saved state or `EngineSettings` JSON), one master per delivery
//!   target, loudness targeted exactly by searching the master drive ([`render`]).
//! - `stembus analyze`: loudness and peak figures of finished files, with the plugin's meters
//!   ([`measure`]).
//! - `stembus check`: a stem folder's formats, lengths, levels, alignment against the mix and
//!   the null test ([`check`]).
//!
//! Everything the binary does is reachable from here, so benchmarks and tests can drive it.

pub mod analyze;
pub mod check;
pub mod error;
pub mod inputs;
pub mod measure;
pub mod plot;
pub mod render;
pub mod render_cmd;
pub mod resample;
pub mod settings_file;
pub mod targets;
pub mod wav;
