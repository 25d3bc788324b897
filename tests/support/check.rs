//! Checks shared by the host tests: which tones must be present at which level, the guard
//! port's poison tone, finiteness, and the common test constants.

use crate::signal::{
    MAIN_TONE_HZ, POISON_TONE_HZ, STEM_TONE_AMPLITUDE, STEM_TONE_HZ, first_non_finite, gain_to_db,
    tone_db,
};

/// Sample rates the plugin must support.
pub const SAMPLE_RATES: [f64; 4] = [44_100.0, 48_000.0, 96_000.0, 192_000.0];

/// Largest block the host announces (and uses).
pub const MAX_BLOCK: usize = 4096;

/// Number of stem input ports.
pub const STEMS: usize = 8;

/// Time after the start (beyond the latency) before levels are measured, in seconds: covers
/// parameter smoothing and filter settling at neutral settings.
pub const SETTLE_SECONDS: f64 = 0.1;

/// Largest deviation of a tone's level from its input level at neutral settings, in dB.
pub const LEVEL_TOLERANCE_DB: f64 = 0.1;

/// A tone that must be absent lies at least this far below full scale, in dBFS.
pub const ABSENT_DB: f64 = -90.0;

/// Expected level of every stem tone at neutral settings, in dBFS.
pub fn expected_db() -> f64 {
    gain_to_db(f64::from(STEM_TONE_AMPLITUDE))
}

/// Which stems (and channels) must be heard in an analysis window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// At the input level (± `LEVEL_TOLERANCE_DB`).
    Present,
    /// Below `ABSENT_DB`.
    Absent,
    /// Either at the input level or silent (a channel-count edge case), but not leaking into
    /// the other channel.
    Any,
}

/// Checks the tone of every stem channel (`expect(stem index, channel)`) in `output[..][range]`,
/// the absence of every stem tone from the opposite channel and of the main-input tone (the
/// default main-input role ignores it). Prints the measured levels under the heading `what`
/// and panics with them and every failure.
pub fn check_tones(
    output: &[Vec<f32>; 2],
    range: std::ops::Range<usize>,
    sample_rate: f64,
    what: &str,
    expect: impl Fn(usize, usize) -> Expect,
) {
    let mut failures = Vec::new();
    let mut table = String::new();
    for (stem, tones) in STEM_TONE_HZ.iter().enumerate() {
        for (ch, &freq) in tones.iter().enumerate() {
            let level = tone_db(&output[ch][range.clone()], freq, sample_rate);
            let other = tone_db(&output[1 - ch][range.clone()], freq, sample_rate);
            table.push_str(&format!(
                "  stem {} {} {freq} Hz: {level:.3} dBFS (other channel {other:.1})\n",
                stem + 1,
                ["L", "R"][ch]
            ));
            match expect(stem, ch) {
                Expect::Present if (level - expected_db()).abs() > LEVEL_TOLERANCE_DB => failures
                    .push(format!(
                        "stem {} {}: {level:.3} dBFS, expected {:.3} ± {LEVEL_TOLERANCE_DB}",
                        stem + 1,
                        ["L", "R"][ch],
                        expected_db()
                    )),
                Expect::Absent if level > ABSENT_DB => failures.push(format!(
                    "stem {} {}: {level:.1} dBFS, expected silence (< {ABSENT_DB})",
                    stem + 1,
                    ["L", "R"][ch]
                )),
                Expect::Any
                    if level > ABSENT_DB && (level - expected_db()).abs() > LEVEL_TOLERANCE_DB =>
                {
                    failures.push(format!(
                        "stem {} {}: {level:.3} dBFS, expected {:.3} ± {LEVEL_TOLERANCE_DB} or silence",
                        stem + 1,
                        ["L", "R"][ch],
                        expected_db()
                    ))
                }
                _ => {}
            }
            if other > ABSENT_DB {
                failures.push(format!(
                    "stem {} {} tone leaks into the other channel at {other:.1} dBFS",
                    stem + 1,
                    ["L", "R"][ch]
                ));
            }
        }
    }
    for (name, freq) in [("main input", MAIN_TONE_HZ)] {
        for (ch, channel) in output.iter().enumerate() {
            let level = tone_db(&channel[range.clone()], freq, sample_rate);
            table.push_str(&format!(
                "  {name} {} {freq} Hz: {level:.1} dBFS\n",
                ["L", "R"][ch]
            ));
            if level > ABSENT_DB {
                failures.push(format!(
                    "{name} tone ({freq} Hz) present in output {} at {level:.1} dBFS",
                    ["L", "R"][ch]
                ));
            }
        }
    }
    println!("{what}:\n{table}");
    assert!(
        failures.is_empty(),
        "{what}:\n{}\nmeasured:\n{table}",
        failures.join("\n")
    );
}

/// Checks that the plugin did not read the guard port placed after the ports handed over
/// (its tone would be in the output).
pub fn assert_no_poison(
    output: &[Vec<f32>; 2],
    range: std::ops::Range<usize>,
    sample_rate: f64,
    ports: usize,
) {
    for (ch, channel) in output.iter().enumerate() {
        let level = tone_db(&channel[range.clone()], POISON_TONE_HZ, sample_rate);
        assert!(
            level <= ABSENT_DB,
            "the plugin read input port/bus index {ports} although the host handed over only \
             {ports} (CLAP audio_inputs_count / VST3 numInputs): the guard buffer's \
             {POISON_TONE_HZ} Hz tone is in output channel {ch} at {level:.1} dBFS. A real host \
             has no buffer there: an out-of-bounds read of the host's input buffer array."
        );
    }
}

/// Panics naming the first non-finite output sample, if any.
pub fn assert_finite(output: &[Vec<f32>; 2], what: &str) {
    for (ch, channel) in output.iter().enumerate() {
        if let Some(i) = first_non_finite(channel) {
            panic!(
                "{what}: output channel {ch} has non-finite sample {} at index {i} (of {})",
                channel[i],
                channel.len()
            );
        }
    }
}

/// Frames of `SETTLE_SECONDS` at `sample_rate`.
pub fn settle(sample_rate: f64) -> usize {
    (SETTLE_SECONDS * sample_rate) as usize
}
