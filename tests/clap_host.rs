//! End-to-end tests of the CLAP bundle (`stembus.clap`) in a minimal host built on
//! `clack-host`. Build the bundles first: `cargo xtask bundle-checked` (preferred: debug
//! assertions and allocation checks on the audio thread) or
//! `cargo xtask bundle stembus --release`; see `stembus_e2e::bundle`.
//!
//! Each test body runs in its own child process (see `stembus_e2e::isolate`), so a crash inside
//! the plugin fails that test with the signal's name instead of killing the run.

use stembus_e2e::check::{
    Expect, MAX_BLOCK, SAMPLE_RATES, STEMS, assert_finite, assert_no_poison, check_tones, settle,
};
use stembus_e2e::clap_host::{ClapPlugin, ParamChange, PortInput};
use stembus_e2e::isolated_tests;
use stembus_e2e::signal::{
    MAIN_TONE_HZ, Rng, STEM_TONE_AMPLITUDE, analysis_len, fixed_block_sizes, gain_to_db, peak,
    random_block_sizes, sine, stem_tones,
};

isolated_tests!(
    declares_ports_and_stem_params,
    every_stem_reaches_output_at_every_rate_with_random_blocks,
    block_partition_does_not_change_output,
    reported_latency_matches_impulse_position,
    non_finite_and_huge_inputs_leave_output_finite,
    state_roundtrip_is_byte_identical,
    host_param_event_mutes_and_unmutes_stem_2,
    fewer_ports_and_channels_than_declared,
);

/// The standard input set: main input carrying `MAIN_TONE_HZ`, stems carrying their tones.
struct Inputs {
    main: Vec<Vec<f32>>,
    stems: Vec<Vec<Vec<f32>>>,
}

impl Inputs {
    fn tones(sample_rate: f64, len: usize) -> Self {
        let main_tone = sine(MAIN_TONE_HZ, sample_rate, len, STEM_TONE_AMPLITUDE);
        Self {
            main: vec![main_tone.clone(), main_tone],
            stems: stem_tones(sample_rate, len)
                .into_iter()
                .map(|[l, r]| vec![l, r])
                .collect(),
        }
    }

    /// All nine ports: main, then stems 1..8.
    fn ports(&self) -> Vec<PortInput<'_>> {
        std::iter::once(PortInput::Audio(&self.main))
            .chain(self.stems.iter().map(|s| PortInput::Audio(s)))
            .collect()
    }
}

/// The plugin declares a stereo main input, eight stereo stem inputs named "Stem 1".."Stem
/// 8", one stereo main output, and per-stem mute parameters.
fn declares_ports_and_stem_params() {
    let mut plugin = ClapPlugin::load();
    let inputs = plugin.audio_ports(true);
    let outputs = plugin.audio_ports(false);
    println!(
        "plugin {}\ninputs {inputs:#?}\noutputs {outputs:#?}",
        plugin.id()
    );
    assert_eq!(inputs.len(), 1 + STEMS, "input ports: {inputs:?}");
    assert!(inputs[0].is_main, "first input port is the main one");
    for (i, port) in inputs.iter().enumerate() {
        assert_eq!(port.channel_count, 2, "input port {i} is stereo");
    }
    for (stem, port) in inputs.iter().enumerate().skip(1) {
        assert!(
            port.name.contains(&format!("Stem {stem}")),
            "input port {stem} is named {:?}, expected \"Stem {stem}\"",
            port.name
        );
    }
    assert_eq!(outputs.len(), 1, "output ports: {outputs:?}");
    assert!(outputs[0].is_main && outputs[0].channel_count == 2);
    let params = plugin.params();
    println!("{} parameters", params.len());
    for stem in 1..=STEMS {
        let mute = plugin.find_param(&format!("Stem {stem} Mute"));
        assert!(
            mute.stepped && mute.min == 0.0 && mute.max == 1.0,
            "{mute:?}"
        );
        assert_eq!(mute.default, 0.0, "stems start unmuted: {mute:?}");
    }
    let mut ids: Vec<u32> = params.iter().map(|p| p.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), params.len(), "parameter ids are unique");
}

/// With neutral settings each stem's left and right tones reach the same output channel at
/// their input level, at every supported sample rate, with random block sizes of 1..4096
/// frames; the main input (role "ignore") is not heard.
fn every_stem_reaches_output_at_every_rate_with_random_blocks() {
    let mut plugin = ClapPlugin::load();
    let mut rng = Rng::new(0x5EED);
    for sample_rate in SAMPLE_RATES {
        plugin.activate(sample_rate, MAX_BLOCK);
        let latency = plugin.latency() as usize;
        let window = analysis_len(sample_rate);
        let len = latency + settle(sample_rate) + window;
        let inputs = Inputs::tones(sample_rate, len);
        let blocks = random_block_sizes(&mut rng, len, MAX_BLOCK);
        let output = plugin.render(&inputs.ports(), &blocks, &[]);
        let what = format!(
            "{sample_rate} Hz, latency {latency}, {} blocks",
            blocks.len()
        );
        assert_finite(&output, &what);
        check_tones(&output, len - window..len, sample_rate, &what, |_, _| {
            Expect::Present
        });
        assert_no_poison(&output, len - window..len, sample_rate, 1 + STEMS);
        plugin.deactivate();
    }
}

/// How the host cuts the stream into blocks does not change the output.
fn block_partition_does_not_change_output() {
    let sample_rate = 48_000.0;
    let len = 3 * MAX_BLOCK + 1234;
    let inputs = Inputs::tones(sample_rate, len);
    let mut outputs = Vec::new();
    let mut rng = Rng::new(42);
    for blocks in [
        fixed_block_sizes(len, MAX_BLOCK),
        random_block_sizes(&mut rng, len, MAX_BLOCK),
        fixed_block_sizes(len, 1)
            .into_iter()
            .take(300)
            .chain(fixed_block_sizes(len - 300, 77))
            .collect(),
    ] {
        let mut plugin = ClapPlugin::load();
        plugin.activate(sample_rate, MAX_BLOCK);
        let output = plugin.render(&inputs.ports(), &blocks, &[]);
        assert_finite(&output, "partition");
        outputs.push(output);
    }
    for (k, other) in outputs.iter().enumerate().skip(1) {
        for ch in 0..2 {
            let (i, diff) = outputs[0][ch]
                .iter()
                .zip(&other[ch])
                .map(|(a, b)| (a - b).abs())
                .enumerate()
                .fold((0, 0.0f32), |m, (i, d)| if d > m.1 { (i, d) } else { m });
            println!("partition {k} channel {ch}: max difference {diff:e} at {i}");
            assert!(
                diff <= 1e-6,
                "partition {k} channel {ch}: output differs by {diff:e} at sample {i}"
            );
        }
    }
}

/// An impulse entering stem 1 and, later, stem 8 leaves the plugin exactly the reported
/// latency later, at every supported sample rate; the latency stays put while processing.
fn reported_latency_matches_impulse_position() {
    let mut plugin = ClapPlugin::load();
    let mut rng = Rng::new(7);
    for sample_rate in SAMPLE_RATES {
        plugin.activate(sample_rate, MAX_BLOCK);
        let latency = plugin.latency() as usize;
        let (first, second) = (1000, 1000 + sample_rate as usize / 10);
        let len = second + latency + sample_rate as usize / 10;
        let mut stems = vec![vec![vec![0.0f32; len]; 2]; STEMS];
        for channel in &mut stems[0] {
            channel[first] = 0.5;
        }
        for channel in &mut stems[STEMS - 1] {
            channel[second] = 0.5;
        }
        let main = vec![vec![0.0f32; len]; 2];
        let ports: Vec<PortInput> = std::iter::once(PortInput::Audio(&main))
            .chain(stems.iter().map(|s| PortInput::Audio(s)))
            .collect();
        let blocks = random_block_sizes(&mut rng, len, MAX_BLOCK);
        let output = plugin.render(&ports, &blocks, &[]);
        assert_finite(&output, "impulse");
        let split = (first + second) / 2 + latency;
        for (ch, channel) in output.iter().enumerate() {
            let argmax = |range: std::ops::Range<usize>| {
                range
                    .max_by(|&a, &b| channel[a].abs().total_cmp(&channel[b].abs()))
                    .expect("non-empty range")
            };
            let p1 = argmax(0..split);
            let p2 = argmax(split..len);
            println!(
                "{sample_rate} Hz ch {ch}: latency {latency}, impulses at {} ({:.3}) and {} ({:.3})",
                p1 as isize - first as isize,
                channel[p1],
                p2 as isize - second as isize,
                channel[p2]
            );
            assert_eq!(
                p1,
                first + latency,
                "{sample_rate} Hz: stem 1 impulse vs latency {latency}"
            );
            assert_eq!(
                p2,
                second + latency,
                "{sample_rate} Hz: stem 8 impulse vs latency {latency}"
            );
            assert!(channel[p1].abs() > 0.1 && channel[p2].abs() > 0.1);
        }
        assert_eq!(
            plugin.latency() as usize,
            latency,
            "latency changed while processing"
        );
        assert!(
            !plugin.take_restart_request(),
            "plugin asked for a restart at {sample_rate} Hz"
        );
        plugin.deactivate();
    }
}

/// NaN and ±Inf in stem inputs never make the output non-finite, the other stems keep
/// their level, and the poisoned stems recover; huge finite values stay under the
/// limiter's −1 dBTP ceiling.
fn non_finite_and_huge_inputs_leave_output_finite() {
    let sample_rate = 48_000.0;
    let mut plugin = ClapPlugin::load();
    plugin.activate(sample_rate, MAX_BLOCK);
    let latency = plugin.latency() as usize;
    let window = analysis_len(sample_rate);
    let len = latency + 3 * settle(sample_rate) + window;
    let mut inputs = Inputs::tones(sample_rate, len);
    let burst = 2000..2600;
    for i in burst.clone() {
        inputs.stems[2][0][i] = f32::NAN;
        inputs.stems[4][1][i] = if i % 2 == 0 {
            f32::INFINITY
        } else {
            f32::NEG_INFINITY
        };
        inputs.stems[5][0][i] = f32::from_bits(1); // denormal
    }
    inputs.main[0][burst.start] = f32::NAN;
    let mut rng = Rng::new(99);
    let blocks = random_block_sizes(&mut rng, len, MAX_BLOCK);
    let output = plugin.render(&inputs.ports(), &blocks, &[]);
    assert_finite(&output, "NaN/Inf in stems 3 and 5");
    check_tones(
        &output,
        len - window..len,
        sample_rate,
        "after NaN/Inf burst",
        |_, _| Expect::Present,
    );

    // Huge finite input: the limiter must hold its ceiling (sample peak ≤ true peak).
    let huge = 1.0e30f32;
    let loud: Vec<Vec<f32>> = (0..2)
        .map(|_| {
            (0..len)
                .map(|i| if i % 100 < 50 { huge } else { -huge })
                .collect()
        })
        .collect();
    let mut ports = inputs.ports();
    ports[4] = PortInput::Audio(&loud);
    let output = plugin.render(&ports, &random_block_sizes(&mut rng, len, MAX_BLOCK), &[]);
    assert_finite(&output, "1e30 square wave in stem 4");
    let ceiling = 10f32.powf(-1.0 / 20.0);
    for (ch, channel) in output.iter().enumerate() {
        let p = peak(channel);
        println!(
            "huge input: channel {ch} peak {p} ({:.2} dBFS)",
            gain_to_db(f64::from(p))
        );
        assert!(
            p <= ceiling * 1.001,
            "channel {ch} peak {p} above the −1 dBTP ceiling {ceiling}"
        );
    }
}

/// Saving the state, loading it into a fresh instance and saving again gives the same
/// bytes; parameter values survive, and the restored instance sounds like the original
/// (stem 2 muted).
fn state_roundtrip_is_byte_identical() {
    let mut original = ClapPlugin::load();
    let mute = original.find_param("Stem 2 Mute");
    let params = original.params();
    let float_param = params
        .iter()
        .find(|p| !p.stepped && p.max > p.min)
        .expect("a continuous parameter")
        .clone();
    let float_value = float_param.min + 0.25 * (float_param.max - float_param.min);
    original.flush_params(&[(mute.id, 1.0), (float_param.id, float_value)]);
    assert_eq!(original.param_value(mute.id), 1.0, "flush set Stem 2 Mute");
    let saved = original.save_state();
    println!(
        "state: {} bytes; changed {} to {float_value}",
        saved.len(),
        float_param.full_name()
    );

    let mut restored = ClapPlugin::load();
    restored.load_state(&saved);
    let saved_again = restored.save_state();
    if saved != saved_again {
        let first = saved.iter().zip(&saved_again).position(|(a, b)| a != b);
        panic!(
            "state differs after a roundtrip ({} vs {} bytes, first difference at {first:?}):\n\
             first:  {}\nsecond: {}",
            saved.len(),
            saved_again.len(),
            String::from_utf8_lossy(&saved),
            String::from_utf8_lossy(&saved_again)
        );
    }
    for p in &params {
        let (a, b) = (original.param_value(p.id), restored.param_value(p.id));
        assert_eq!(
            a,
            b,
            "parameter {} differs after the roundtrip",
            p.full_name()
        );
    }

    // The restored instance plays stem 2 muted (the continuous parameter set above may
    // change levels, so only presence and absence are checked).
    let sample_rate = 48_000.0;
    restored.flush_params(&[(float_param.id, float_param.default)]);
    restored.activate(sample_rate, MAX_BLOCK);
    let latency = restored.latency() as usize;
    let window = analysis_len(sample_rate);
    let len = latency + settle(sample_rate) + window;
    let inputs = Inputs::tones(sample_rate, len);
    let output = restored.render(&inputs.ports(), &fixed_block_sizes(len, 1024), &[]);
    assert_finite(&output, "restored");
    check_tones(
        &output,
        len - window..len,
        sample_rate,
        "restored state, stem 2 muted",
        |stem, _| {
            if stem == 1 {
                Expect::Absent
            } else {
                Expect::Present
            }
        },
    );
}

/// "Stem 2 Mute", set by the host with a parameter event inside a block, silences stem 2
/// (only) within the mute ramp; clearing it brings stem 2 back.
fn host_param_event_mutes_and_unmutes_stem_2() {
    let sample_rate = 48_000.0;
    let mut plugin = ClapPlugin::load();
    let mute = plugin.find_param("Stem 2 Mute");
    plugin.activate(sample_rate, MAX_BLOCK);
    let latency = plugin.latency() as usize;
    let window = analysis_len(sample_rate);
    let margin = (0.05 * sample_rate) as usize; // mute ramp and parameter smoothing
    // Without sample-accurate automation a change may take effect from the start of the
    // block holding its event, up to MAX_BLOCK - 1 frames early: keep windows clear of it.
    let mute_at = settle(sample_rate) + window + MAX_BLOCK + 17;
    let unmute_at = mute_at + margin + window + MAX_BLOCK;
    let len = unmute_at + margin + window + latency;
    let inputs = Inputs::tones(sample_rate, len);
    let changes = [
        ParamChange {
            at_sample: mute_at,
            id: mute.id,
            value: 1.0,
        },
        ParamChange {
            at_sample: unmute_at,
            id: mute.id,
            value: 0.0,
        },
    ];
    let mut rng = Rng::new(1234);
    let blocks = random_block_sizes(&mut rng, len, MAX_BLOCK);
    let output = plugin.render(&inputs.ports(), &blocks, &changes);
    assert_finite(&output, "mute events");
    // Align the output with the input.
    let aligned = [output[0][latency..].to_vec(), output[1][latency..].to_vec()];
    let before = mute_at - MAX_BLOCK;
    check_tones(
        &aligned,
        before - window..before,
        sample_rate,
        "before mute",
        |_, _| Expect::Present,
    );
    check_tones(
        &aligned,
        mute_at + margin..mute_at + margin + window,
        sample_rate,
        "Stem 2 Mute on",
        |stem, _| {
            if stem == 1 {
                Expect::Absent
            } else {
                Expect::Present
            }
        },
    );
    check_tones(
        &aligned,
        unmute_at + margin..unmute_at + margin + window,
        sample_rate,
        "Stem 2 Mute off again",
        |_, _| Expect::Present,
    );
    assert_eq!(plugin.param_value(mute.id), 0.0);
}

/// A host handing over fewer input ports or channels than declared: missing stems are
/// silent, present ones unchanged, nothing is read past the ports handed over, and nothing
/// turns non-finite — also when a port goes missing after blocks of another size.
fn fewer_ports_and_channels_than_declared() {
    let sample_rate = 48_000.0;
    let mut rng = Rng::new(31337);
    let mut plugin = ClapPlugin::load();
    plugin.activate(sample_rate, MAX_BLOCK);
    let latency = plugin.latency() as usize;
    let window = analysis_len(sample_rate);
    let len = latency + settle(sample_rate) + window;
    let inputs = Inputs::tones(sample_rate, len);
    let all = inputs.ports();

    // Main + stems 1..4 only (the guard port read check comes last, see below).
    let five_ports = plugin.render(
        &all[..5],
        &random_block_sizes(&mut rng, len, MAX_BLOCK),
        &[],
    );
    assert_finite(&five_ports, "5 of 9 input ports");
    check_tones(
        &five_ports,
        len - window..len,
        sample_rate,
        "main + stems 1-4 handed over",
        |stem, _| {
            if stem < 4 {
                Expect::Present
            } else {
                Expect::Absent
            }
        },
    );

    // No input port at all.
    let output = plugin.render(&[], &random_block_sizes(&mut rng, len, MAX_BLOCK), &[]);
    assert_finite(&output, "no input ports");
    let tail_end = latency + settle(sample_rate);
    let p = peak(&output[0][tail_end..]).max(peak(&output[1][tail_end..]));
    assert!(
        p < 1e-4,
        "no input ports: output peak {p} after the previous render's tail, expected silence"
    );

    // Stem 3 with a null channel array, stem 4 with its left channel only, stem 5 with
    // zero channels; everything after a render whose last block was 3 frames long.
    plugin.render(&all, &[MAX_BLOCK, 3], &[]);
    let left_only = vec![inputs.stems[3][0].clone()];
    let mut ports = all.clone();
    ports[3] = PortInput::NullBuffers { channel_count: 2 };
    ports[4] = PortInput::Audio(&left_only);
    ports[5] = PortInput::Audio(&[]);
    let output = plugin.render(&ports, &fixed_block_sizes(len, MAX_BLOCK), &[]);
    assert_finite(&output, "null/short channel arrays");
    check_tones(
        &output,
        len - window..len,
        sample_rate,
        "stem 3 null, stem 4 left only, stem 5 no channels",
        |stem, ch| match (stem, ch) {
            (3, 0) => Expect::Any,
            (2, _) | (3, 1) | (4, _) => Expect::Absent,
            _ => Expect::Present,
        },
    );
    assert_no_poison(&output, len - window..len, sample_rate, 1 + STEMS);
    assert_no_poison(&five_ports, len - window..len, sample_rate, 5);
}
