//! Shared support for the end-to-end tests in `tests/`: signal generators and level
//! measurement, the location of the built bundles, minimal CLAP and VST3 hosts, and a runner
//! that isolates each plugin test in its own process. Everything runs without any file from
//! outside the repository (the bundles are built from it).

pub mod bundle;
pub mod check;
pub mod clap_host;
pub mod isolate;
pub mod signal;
pub mod vst3_host;
