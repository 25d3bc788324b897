//! End-to-end tests of the VST3 bundle (`stembus.vst3`) in a minimal host built on the `vst3`
//! crate's COM bindings. Build the bundles first: `cargo xtask bundle-checked` (preferred:
//! debug assertions and allocation checks on the audio thread) or
//! `cargo xtask bundle stembus --release`; see `stembus_e2e::bundle`.
//!
//! Each test body runs in its own child process (see `stembus_e2e::isolate`), so a crash inside
//! the plugin fails that test with the signal's name instead of killing the run.

use stembus_e2e::check::{
    Expect, MAX_BLOCK, SAMPLE_RATES, STEMS, assert_finite, assert_no_poison, check_tones, settle,
};
use stembus_e2e::isolated_tests;
use stembus_e2e::signal::{
    MAIN_TONE_HZ, Rng, STEM_TONE_AMPLITUDE, analysis_len, random_block_sizes, sine, stem_tones,
};
use stembus_e2e::vst3_host::{InactiveBus, Vst3Plugin};

isolated_tests!(
    vst3_declares_buses_latency_and_state,
    vst3_every_stem_reaches_output,
    vst3_deactivated_buses_zeroed,
    vst3_deactivated_buses_with_stale_data_are_ignored,
    vst3_deactivated_buses_with_null_pointers,
    vst3_trailing_deactivated_buses_left_out,
);

/// Main input (carrying `MAIN_TONE_HZ`, ignored by default) followed by the eight stem tones.
fn bus_inputs(sample_rate: f64, len: usize) -> Vec<[Vec<f32>; 2]> {
    let main = sine(MAIN_TONE_HZ, sample_rate, len, STEM_TONE_AMPLITUDE);
    std::iter::once([main.clone(), main])
        .chain(stem_tones(sample_rate, len))
        .collect()
}

/// A plugin with stereo arrangements and every bus active.
fn load_all_active() -> Vst3Plugin {
    let mut plugin = Vst3Plugin::load();
    plugin.set_stereo_arrangements();
    plugin.activate_all_buses();
    plugin
}

/// Deactivates the given stems (1-based), starts at 48 kHz, renders the tones with random
/// blocks, and checks that the active stems are heard at their level and the inactive ones
/// not at all.
fn deactivated_stems_are_silent(stems_off: &[usize], inactive: InactiveBus, omit_trailing: bool) {
    let sample_rate = 48_000.0;
    let mut plugin = load_all_active();
    for &stem in stems_off {
        plugin.activate_input_bus(stem, false);
    }
    plugin.start(sample_rate, MAX_BLOCK);
    let latency = plugin.latency() as usize;
    let window = analysis_len(sample_rate);
    let len = latency + settle(sample_rate) + window;
    let inputs = bus_inputs(sample_rate, len);
    let mut rng = Rng::new(stems_off.iter().sum::<usize>() as u64);
    let blocks = random_block_sizes(&mut rng, len, MAX_BLOCK);
    let output = plugin.render(&inputs, &blocks, inactive, omit_trailing);
    let what = format!(
        "stems {stems_off:?} deactivated ({inactive:?}{})",
        if omit_trailing {
            ", trailing inactive buses left out of numInputs"
        } else {
            ""
        }
    );
    assert_finite(&output, &what);
    check_tones(&output, len - window..len, sample_rate, &what, |stem, _| {
        if stems_off.contains(&(stem + 1)) {
            Expect::Absent
        } else {
            Expect::Present
        }
    });
    let handed_over = if omit_trailing {
        (0..=STEMS)
            .rev()
            .find(|bus| !stems_off.contains(bus))
            .map_or(0, |last| last + 1)
    } else {
        1 + STEMS
    };
    assert_no_poison(&output, len - window..len, sample_rate, handed_over);
}

/// The component declares a stereo main input, eight stereo aux inputs named "Stem 1" to
/// "Stem 8", one stereo main output, accepts an all-stereo arrangement and reports a
/// latency once active; state saved and loaded into a fresh instance saves back
/// byte-identical.
fn vst3_declares_buses_latency_and_state() {
    let mut plugin = load_all_active();
    let inputs = plugin.audio_buses(true);
    let outputs = plugin.audio_buses(false);
    println!(
        "{}\ninputs {inputs:#?}\noutputs {outputs:#?}",
        plugin.name()
    );
    assert_eq!(inputs.len(), 1 + STEMS, "input buses: {inputs:?}");
    assert_eq!(inputs[0].bus_type, 0, "first input bus is kMain");
    for (i, bus) in inputs.iter().enumerate() {
        assert_eq!(bus.channel_count, 2, "input bus {i} is stereo");
    }
    for (stem, bus) in inputs.iter().enumerate().skip(1) {
        assert_eq!(bus.bus_type, 1, "stem bus {stem} is kAux");
        assert!(
            bus.name.contains(&format!("Stem {stem}")),
            "input bus {stem} is named {:?}",
            bus.name
        );
    }
    assert_eq!(outputs.len(), 1, "output buses: {outputs:?}");
    assert_eq!(outputs[0].channel_count, 2);
    plugin.start(48_000.0, MAX_BLOCK);
    println!("latency at 48 kHz: {} samples", plugin.latency());
    plugin.stop();

    let saved = plugin.save_state();
    assert!(!saved.is_empty(), "getState wrote nothing");
    let fresh = Vst3Plugin::load();
    fresh.load_state(&saved);
    let again = fresh.save_state();
    assert!(
        saved == again,
        "VST3 state differs after a roundtrip:\nfirst:  {}\nsecond: {}",
        String::from_utf8_lossy(&saved),
        String::from_utf8_lossy(&again)
    );
}

/// With every bus active, each stem's tones reach the output at their input level at every
/// supported sample rate with random block sizes; the main input is not heard.
fn vst3_every_stem_reaches_output() {
    let mut plugin = load_all_active();
    let mut rng = Rng::new(0xB05);
    for sample_rate in SAMPLE_RATES {
        plugin.start(sample_rate, MAX_BLOCK);
        let latency = plugin.latency() as usize;
        let window = analysis_len(sample_rate);
        let len = latency + settle(sample_rate) + window;
        let inputs = bus_inputs(sample_rate, len);
        let blocks = random_block_sizes(&mut rng, len, MAX_BLOCK);
        let output = plugin.render(&inputs, &blocks, InactiveBus::Zeroed, false);
        let what = format!("VST3 {sample_rate} Hz, latency {latency}, all buses active");
        assert_finite(&output, &what);
        check_tones(&output, len - window..len, sample_rate, &what, |_, _| {
            Expect::Present
        });
        assert_no_poison(&output, len - window..len, sample_rate, 1 + STEMS);
        plugin.stop();
    }
}

/// Stems 2 and 5 deactivated, their buffers zero-filled by the host.
fn vst3_deactivated_buses_zeroed() {
    deactivated_stems_are_silent(&[2, 5], InactiveBus::Zeroed, false);
}

/// Stems 2 and 5 deactivated, their buffers still holding their tones: a deactivated bus
/// must not be processed (`IComponent::activateBus`: "The plug-in should only process an
/// activated bus").
fn vst3_deactivated_buses_with_stale_data_are_ignored() {
    deactivated_stems_are_silent(&[2, 5], InactiveBus::StaleSignal, false);
}

/// Stems 1 and 5 deactivated with null sample pointers, which `AudioBusBuffers` allows for
/// inactive buses.
fn vst3_deactivated_buses_with_null_pointers() {
    deactivated_stems_are_silent(&[1, 5], InactiveBus::NullChannels, false);
}

/// Stems 7 and 8 deactivated and left out of `ProcessData::numInputs` (the host "could
/// provide less AudioBusBuffers … if last buses are not activated").
fn vst3_trailing_deactivated_buses_left_out() {
    deactivated_stems_are_silent(&[7, 8], InactiveBus::Zeroed, true);
}
