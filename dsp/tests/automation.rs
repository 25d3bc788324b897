//! Automating any continuous control with a step, at any block size (1 and 512 here), never
//! makes a sample-to-sample jump larger than the signal has with the control already at its
//! start or end value: every control is smoothed. One test per control family, each stepping
//! every control of that family through the whole engine.

use stembus_dsp::engine::Engine;
use stembus_dsp::settings::EngineSettings;

const SAMPLE_RATE: f32 = 48_000.0;
/// Test tone (Hz).
const TONE_HZ: f32 = 440.0;
const FRAMES: usize = 14_400;
const STEP_AT: usize = 7_200;

type Set = fn(&mut EngineSettings, bool);

/// A stem-0 sine pair (L/R at different phases so width and balance matter) at −12 dBFS.
fn input() -> [Vec<f32>; 2] {
    let w = std::f32::consts::TAU * TONE_HZ / SAMPLE_RATE;
    [
        (0..FRAMES).map(|n| 0.25 * (w * n as f32).sin()).collect(),
        (0..FRAMES)
            .map(|n| 0.25 * (w * n as f32 + 1.0).sin())
            .collect(),
    ]
}

/// Only the module under test is switched on (by the control's setter): dynamics elsewhere in
/// the chain would answer a level change with their own attack transient, which is not a click.
fn base() -> EngineSettings {
    EngineSettings::default()
}

/// Runs the engine with `set(settings, false)` and, from `STEP_AT` on, `set(settings, after)`.
fn run(set: Set, block: usize, step: Option<bool>) -> Vec<f32> {
    let x = input();
    let mut settings = base();
    set(&mut settings, step == Some(true));
    let mut engine = Engine::new(SAMPLE_RATE, 512, 1);
    engine.set_settings(&settings);
    engine.reset();
    let mut out = [vec![0.0; FRAMES], vec![0.0; FRAMES]];
    let mut start = 0;
    while start < FRAMES {
        if start == STEP_AT && step == Some(false) {
            set(&mut settings, true);
            engine.set_settings(&settings);
        }
        let len = block.min(FRAMES - start);
        let [ol, or] = &mut out;
        engine.process(
            &[Some([&x[0][start..start + len], &x[1][start..start + len]])],
            None,
            &mut ol[start..start + len],
            &mut or[start..start + len],
        );
        start += len;
    }
    let [l, r] = out;
    l.into_iter().chain(r).collect()
}

/// Largest |y[n] − y[n−1]| in the 100 ms after the step (per channel). A ramp of a control adds
/// its own slope to the signal's (a gain ramp g'·x), so 10 % above the steady states is allowed.
fn max_jump(y: &[f32]) -> f32 {
    let mut worst = 0.0f32;
    for ch in y.chunks(FRAMES) {
        for n in STEP_AT..STEP_AT + 4_800 {
            worst = worst.max((ch[n] - ch[n - 1]).abs());
        }
    }
    worst
}

fn check(name: &str, set: Set) {
    for block in [1, 512] {
        let stepped = max_jump(&run(set, block, Some(false)));
        let before = max_jump(&run(set, block, None));
        let after = max_jump(&run(set, block, Some(true)));
        let allowed = 1.1 * before.max(after) + 1e-5;
        assert!(
            stepped <= allowed,
            "{name} (block {block}): jump {stepped} > {allowed} (steady {before} / {after})"
        );
    }
}

macro_rules! controls {
    ($( $name:literal => |$s:ident, $on:ident| $body:expr ),+ $(,)?) => {
        &[$( ($name, { fn f($s: &mut EngineSettings, $on: bool) { $body; } f as Set }) ),+]
    };
}

fn check_all(list: &[(&str, Set)]) {
    for (name, set) in list {
        check(name, *set);
    }
}

#[test]
fn stem_gain_and_eq_controls_never_click() {
    check_all(controls![
        "trim" => |s, on| s.stems[0].trim_db = if on { 9.0 } else { -12.0 },
        "output" => |s, on| s.stems[0].output_db = if on { 9.0 } else { -12.0 },
        "hpf hz" => |s, on| { s.stems[0].eq.hpf_enabled = true; s.stems[0].eq.hpf_hz = if on { 400.0 } else { 20.0 } },
        "low shelf gain" => |s, on| { s.stems[0].eq.low_shelf.enabled = true; s.stems[0].eq.low_shelf.gain_db = if on { 12.0 } else { -12.0 } },
        "low shelf hz" => |s, on| { s.stems[0].eq.low_shelf.enabled = true; s.stems[0].eq.low_shelf.gain_db = 12.0; s.stems[0].eq.low_shelf.freq_hz = if on { 500.0 } else { 50.0 } },
        "bell gain" => |s, on| { s.stems[0].eq.bell1.enabled = true; s.stems[0].eq.bell1.freq_hz = 440.0; s.stems[0].eq.bell1.gain_db = if on { 18.0 } else { -18.0 } },
        "bell hz" => |s, on| { s.stems[0].eq.bell1.enabled = true; s.stems[0].eq.bell1.gain_db = 12.0; s.stems[0].eq.bell1.freq_hz = if on { 440.0 } else { 4000.0 } },
        "bell q" => |s, on| { s.stems[0].eq.bell2.enabled = true; s.stems[0].eq.bell2.gain_db = 12.0; s.stems[0].eq.bell2.freq_hz = 440.0; s.stems[0].eq.bell2.q = if on { 10.0 } else { 0.1 } },
        "high shelf gain" => |s, on| { s.stems[0].eq.high_shelf.enabled = true; s.stems[0].eq.high_shelf.freq_hz = 400.0; s.stems[0].eq.high_shelf.gain_db = if on { 12.0 } else { -12.0 } },
        "lpf hz" => |s, on| { s.stems[0].eq.lpf_enabled = true; s.stems[0].eq.lpf_hz = if on { 1000.0 } else { 20000.0 } },
    ]);
}

#[test]
fn stem_dynamics_and_saturation_controls_never_click() {
    check_all(controls![
        "dyn eq threshold" => |s, on| { s.stems[0].dyn_eq.enabled = true; s.stems[0].dyn_eq.freq_hz = 440.0; s.stems[0].dyn_eq.threshold_db = if on { -50.0 } else { -10.0 } },
        "dyn eq range" => |s, on| { s.stems[0].dyn_eq.enabled = true; s.stems[0].dyn_eq.freq_hz = 440.0; s.stems[0].dyn_eq.threshold_db = -30.0; s.stems[0].dyn_eq.range_db = if on { 24.0 } else { 0.0 } },
        "dyn eq hz" => |s, on| { s.stems[0].dyn_eq.enabled = true; s.stems[0].dyn_eq.threshold_db = -30.0; s.stems[0].dyn_eq.freq_hz = if on { 440.0 } else { 5000.0 } },
        "comp threshold" => |s, on| { s.stems[0].comp.enabled = true; s.stems[0].comp.threshold_db = if on { -50.0 } else { 0.0 } },
        "comp ratio" => |s, on| { s.stems[0].comp.enabled = true; s.stems[0].comp.threshold_db = -30.0; s.stems[0].comp.ratio = if on { 20.0 } else { 1.0 } },
        "comp knee" => |s, on| { s.stems[0].comp.enabled = true; s.stems[0].comp.threshold_db = -30.0; s.stems[0].comp.knee_db = if on { 24.0 } else { 0.0 } },
        "comp makeup" => |s, on| { s.stems[0].comp.enabled = true; s.stems[0].comp.threshold_db = -30.0; s.stems[0].comp.makeup_db = if on { 24.0 } else { 0.0 } },
        "comp mix" => |s, on| { s.stems[0].comp.enabled = true; s.stems[0].comp.threshold_db = -30.0; s.stems[0].comp.mix = if on { 1.0 } else { 0.0 } },
        "comp attack" => |s, on| { s.stems[0].comp.enabled = true; s.stems[0].comp.threshold_db = -30.0; s.stems[0].comp.attack_ms = if on { 0.1 } else { 100.0 } },
        "comp release" => |s, on| { s.stems[0].comp.enabled = true; s.stems[0].comp.threshold_db = -30.0; s.stems[0].comp.release_ms = if on { 10.0 } else { 2000.0 } },
        "sat drive" => |s, on| { s.stems[0].sat.enabled = true; s.stems[0].sat.drive_db = if on { 24.0 } else { 0.0 } },
        "sat mix" => |s, on| { s.stems[0].sat.enabled = true; s.stems[0].sat.mix = if on { 1.0 } else { 0.0 } },
    ]);
}

#[test]
fn stem_stereo_controls_never_click() {
    check_all(controls![
        "width" => |s, on| s.stems[0].stereo.width = if on { 2.0 } else { 0.0 },
        "balance" => |s, on| s.stems[0].stereo.balance = if on { 1.0 } else { -1.0 },
        "mono bass hz" => |s, on| { s.stems[0].stereo.mono_bass = true; s.stems[0].stereo.mono_bass_hz = if on { 300.0 } else { 40.0 } },
    ]);
}

#[test]
fn master_controls_never_click() {
    check_all(controls![
        "drive" => |s, on| s.master.drive_db = if on { 12.0 } else { -12.0 },
        "glue threshold" => |s, on| { s.master.glue.enabled = true; s.master.glue.threshold_db = if on { -50.0 } else { 0.0 } },
        "glue makeup" => |s, on| { s.master.glue.enabled = true; s.master.glue.threshold_db = -30.0; s.master.glue.makeup_db = if on { 12.0 } else { 0.0 } },
        "master bell" => |s, on| { s.master.eq.bell.enabled = true; s.master.eq.bell.freq_hz = 440.0; s.master.eq.bell.gain_db = if on { 12.0 } else { -12.0 } },
        "master shelves" => |s, on| { s.master.eq.low_shelf.enabled = true; s.master.eq.high_shelf.enabled = true; let g = if on { 8.0 } else { -8.0 }; s.master.eq.low_shelf.gain_db = g; s.master.eq.high_shelf.gain_db = -g },
        "tilt" => |s, on| s.master.eq.tilt_db = if on { 6.0 } else { -6.0 },
        "master width" => |s, on| s.master.stereo.width = if on { 2.0 } else { 0.0 },
        "ceiling" => |s, on| { s.master.drive_db = 12.0; s.master.limiter.ceiling_dbtp = if on { -12.0 } else { 0.0 } },
        "master output" => |s, on| s.master.output_db = if on { 0.0 } else { -24.0 },
    ]);
}

#[test]
fn bypass_switches_never_click() {
    check_all(controls![
        "eq bypass" => |s, on| { s.stems[0].eq.bell1.enabled = true; s.stems[0].eq.bell1.freq_hz = 440.0; s.stems[0].eq.bell1.gain_db = 12.0; s.stems[0].eq.enabled = on },
        "dyn eq bypass" => |s, on| { s.stems[0].dyn_eq.enabled = true; s.stems[0].dyn_eq.freq_hz = 440.0; s.stems[0].dyn_eq.threshold_db = -30.0; s.stems[0].dyn_eq.enabled = on },
        "comp bypass" => |s, on| { s.stems[0].comp.threshold_db = -30.0; s.stems[0].comp.makeup_db = 12.0; s.stems[0].comp.enabled = on },
        "sat bypass" => |s, on| { s.stems[0].sat.drive_db = 18.0; s.stems[0].sat.enabled = on },
        "mono bass bypass" => |s, on| s.stems[0].stereo.mono_bass = on,
        "polarity" => |s, on| s.stems[0].invert = on,
        "mute" => |s, on| s.stems[0].mute = on,
        "limiter bypass" => |s, on| { s.master.drive_db = 12.0; s.master.limiter.enabled = on },
        "glue bypass" => |s, on| { s.master.glue.threshold_db = -30.0; s.master.glue.makeup_db = 12.0; s.master.glue.enabled = on },
    ]);
}
