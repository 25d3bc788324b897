//! Whole-engine behaviour: latency, block-size independence, transparency, routing, bad input.

use stembus_dsp::MAX_STEMS;
use stembus_dsp::engine::{Engine, StereoIn};
use stembus_dsp::settings::{EngineSettings, MainInputRole};

/// Deterministic pseudo-random generator (xorshift32) so tests need no extra state.
struct Rng(u32);

impl Rng {
    fn next_u32(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
    /// Uniform in −1..1.
    fn bipolar(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 / (1u32 << 23) as f32 - 1.0
    }
    fn below(&mut self, n: usize) -> usize {
        self.next_u32() as usize % n
    }
}

/// `stems[s][ch]` of `frames` samples: a different quiet sine per stem and channel plus noise.
fn make_stems(num: usize, frames: usize, level: f32, seed: u32) -> Vec<[Vec<f32>; 2]> {
    let mut rng = Rng(seed);
    (0..num)
        .map(|s| {
            let chan = |ch: usize, rng: &mut Rng| -> Vec<f32> {
                let f = 0.003 + 0.0071 * (s * 2 + ch) as f32;
                (0..frames)
                    .map(|n| level * (0.7 * (f * n as f32).sin() + 0.3 * rng.bipolar()))
                    .collect()
            };
            [chan(0, &mut rng), chan(1, &mut rng)]
        })
        .collect()
}

/// Runs the engine over whole signals with the given block sizes (cycled).
fn run(
    engine: &mut Engine,
    stems: &[[Vec<f32>; 2]],
    main: Option<&[Vec<f32>; 2]>,
    blocks: &mut dyn FnMut() -> usize,
) -> [Vec<f32>; 2] {
    let frames = stems[0][0].len();
    let mut out = [vec![0.0; frames], vec![0.0; frames]];
    let mut start = 0;
    while start < frames {
        let len = blocks().clamp(1, frames - start);
        let ins: Vec<Option<StereoIn>> = stems
            .iter()
            .map(|s| Some([&s[0][start..start + len], &s[1][start..start + len]]))
            .collect();
        let m = main.map(|m| [&m[0][start..start + len], &m[1][start..start + len]]);
        let [ol, or] = &mut out;
        engine.process(
            &ins,
            m,
            &mut ol[start..start + len],
            &mut or[start..start + len],
        );
        start += len;
    }
    out
}

fn sum(stems: &[[Vec<f32>; 2]]) -> [Vec<f32>; 2] {
    let frames = stems[0][0].len();
    let mut out = [vec![0.0f32; frames], vec![0.0f32; frames]];
    for s in stems {
        for ch in 0..2 {
            for (o, x) in out[ch].iter_mut().zip(&s[ch]) {
                *o += x;
            }
        }
    }
    out
}

/// Largest |a[n] − b[n − delay]| in dBFS over both channels.
fn residual_db(out: &[Vec<f32>; 2], reference: &[Vec<f32>; 2], delay: usize) -> f32 {
    let mut worst = 0.0f32;
    for ch in 0..2 {
        for n in delay..out[ch].len() {
            worst = worst.max((out[ch][n] - reference[ch][n - delay]).abs());
        }
    }
    20.0 * worst.log10()
}

#[test]
fn impulse_lands_exactly_at_reported_latency() {
    for sr in [44_100.0, 48_000.0, 96_000.0, 192_000.0] {
        let mut engine = Engine::new(sr, 512, 3);
        let latency = engine.latency_samples();
        let frames = latency + 600;
        let mut stems = make_stems(3, frames, 0.0, 1);
        stems[1][0][10] = 0.5;
        stems[1][1][10] = -0.25;
        let out = run(&mut engine, &stems, None, &mut || 64);
        let peak = |ch: usize| {
            out[ch]
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                .unwrap()
        };
        assert_eq!(peak(0).0, 10 + latency, "sr {sr}");
        assert_eq!(*peak(0).1, 0.5);
        assert_eq!(peak(1).0, 10 + latency);
        assert_eq!(*peak(1).1, -0.25);
    }
}

#[test]
fn latency_depends_only_on_sample_rate() {
    let base = Engine::new(48_000.0, 512, 8).latency_samples();
    let mut settings = EngineSettings::default();
    settings.master.limiter.enabled = false;
    let mut engine = Engine::new(48_000.0, 64, 1);
    engine.set_settings(&settings);
    assert_eq!(engine.latency_samples(), base);
    let ms = base as f32 / 48.0;
    // Limiter lookahead (1.5 ms) + its true-peak detector + the saturation's oversampling.
    assert!(ms <= 5.0, "latency {ms} ms");
    // Switching every module on changes nothing.
    let mut all_on = EngineSettings::default();
    for s in &mut all_on.stems {
        s.eq.bell1.enabled = true;
        s.dyn_eq.enabled = true;
        s.comp.enabled = true;
        s.sat.enabled = true;
        s.stereo.mono_bass = true;
    }
    all_on.master.glue.enabled = true;
    engine.set_settings(&all_on);
    assert_eq!(engine.latency_samples(), base);
}

#[test]
fn bypassing_modules_keeps_the_impulse_at_the_latency() {
    // Modules switched on and then off again (click-free ramps settle): the path is a pure
    // delay of exactly the reported latency.
    let mut engine = Engine::new(48_000.0, 512, 2);
    let latency = engine.latency_samples();
    let mut on = EngineSettings::default();
    on.stems[0].comp.enabled = true;
    on.stems[0].sat.enabled = true;
    on.stems[0].dyn_eq.enabled = true;
    on.stems[0].stereo.mono_bass = true;
    on.master.glue.enabled = true;
    on.master.limiter.enabled = false;
    engine.set_settings(&on);
    let warm = make_stems(2, 9_600, 0.05, 8);
    run(&mut engine, &warm, None, &mut || 480);
    engine.set_settings(&EngineSettings::default());
    let frames = 48_000;
    let mut stems = make_stems(2, frames, 0.0, 1);
    stems[0][0][30_000] = 0.5;
    let out = run(&mut engine, &stems, None, &mut || 480);
    let peak = out[0]
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .unwrap();
    assert_eq!(peak.0, 30_000 + latency);
    assert!((peak.1 - 0.5).abs() < 1e-6, "{}", peak.1);
}

#[test]
fn loudness_matched_ab_and_null_test() {
    use stembus_dsp::settings::MonitorSource;
    let frames = 48_000 * 6;
    let stems = make_stems(2, frames, 0.1, 41);
    let mix = sum(&stems);

    // Processed path 9 dB hotter (drive into the limiter); A/B to the unprocessed sum with
    // loudness match: the output's loudness follows the processed loudness.
    let mut settings = EngineSettings::default();
    settings.master.drive_db = 9.0;
    settings.main_input = MainInputRole::ReferenceMix;
    let mut engine = Engine::new(48_000.0, 512, 2);
    engine.set_settings(&settings);
    run(&mut engine, &stems, Some(&mix), &mut || 512);
    let meters = engine.meters().clone();
    let processed = meters.master.read().integrated_lufs;
    let unprocessed = meters.unprocessed.read().integrated_lufs;
    assert!(
        processed - unprocessed > 5.0,
        "{processed} vs {unprocessed}"
    );
    // The reference mix is the exact stem sum: the null test reads (near) silence.
    let null_peak = meters
        .null_peak
        .swap(0.0, std::sync::atomic::Ordering::Relaxed);
    assert!(null_peak < 1e-6, "null residual peak {null_peak}");

    settings.monitor.source = MonitorSource::Unprocessed;
    engine.set_settings(&settings);
    let out = run(&mut engine, &stems, Some(&mix), &mut || 512);
    let gain_db = meters
        .match_gain_db
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        (gain_db - (processed - unprocessed)).abs() < 0.5,
        "{gain_db}"
    );
    // The heard unprocessed path is the delayed sum times the match gain.
    let g = 10f32.powf(gain_db / 20.0);
    let lat = engine.latency_samples();
    let n = frames - 1000;
    let expected = mix[0][n - lat] * g;
    assert!(
        (out[0][n] - expected).abs() < 1e-3 * g.max(1.0),
        "{} vs {expected}",
        out[0][n]
    );

    // The drive proposal points at the target: drive + target − integrated.
    let proposal = meters
        .proposed_drive_db
        .load(std::sync::atomic::Ordering::Relaxed);
    let integrated = meters.master.read().integrated_lufs;
    assert!((proposal - (9.0 + settings.master.target_lufs - integrated)).abs() < 0.2);

    // A reference mix one sample late fails the null test clearly.
    let mut late = mix.clone();
    for ch in &mut late {
        ch.rotate_right(1);
        ch[0] = 0.0;
    }
    let mut engine = Engine::new(48_000.0, 512, 2);
    settings.monitor.source = MonitorSource::Processed;
    engine.set_settings(&settings);
    run(&mut engine, &stems, Some(&late), &mut || 512);
    let peak = engine
        .meters()
        .null_peak
        .swap(0.0, std::sync::atomic::Ordering::Relaxed);
    assert!(20.0 * peak.log10() > -40.0, "offset not detected: {peak}");
}

#[test]
fn neutral_engine_is_transparent() {
    // Quiet enough that the limiter (ceiling −1 dBTP) never engages.
    for num in [1, 5, MAX_STEMS] {
        let mut engine = Engine::new(48_000.0, 1024, num);
        let stems = make_stems(num, 48_000, 0.5 / MAX_STEMS as f32, 7);
        let out = run(&mut engine, &stems, None, &mut || 333);
        let res = residual_db(&out, &sum(&stems), engine.latency_samples());
        assert!(res <= -120.0, "{num} stems: residual {res} dBFS");
    }
}

#[test]
fn random_block_sizes_match_per_sample_processing() {
    let mut settings = EngineSettings::default();
    settings.master.drive_db = 12.0; // the limiter works hard
    let stems = make_stems(4, 30_000, 0.4, 3);
    let mut a = Engine::new(48_000.0, 4096, 4);
    a.set_settings(&settings);
    let per_sample = run(&mut a, &stems, None, &mut || 1);
    let mut b = Engine::new(48_000.0, 4096, 4);
    b.set_settings(&settings);
    let mut rng = Rng(99);
    let blocks = run(&mut b, &stems, None, &mut || 1 + rng.below(4096));
    assert_eq!(per_sample, blocks);
}

#[test]
fn missing_and_short_stems_are_silence() {
    let frames = 4_000;
    let stems = make_stems(3, frames, 0.05, 5);
    let mut engine = Engine::new(48_000.0, 512, 3);
    let lat = engine.latency_samples();
    let mut out = [vec![0.0; frames], vec![0.0; frames]];
    for start in (0..frames).step_by(500) {
        let s0 = [
            &stems[0][0][start..start + 500],
            &stems[0][1][start..start + 500],
        ];
        // Stem 1 missing; stem 2 passes a slice shorter than the block (first 100 only).
        let s2 = [
            &stems[2][0][start..start + 100],
            &stems[2][1][start..start + 100],
        ];
        let [ol, or] = &mut out;
        engine.process(
            &[Some(s0), None, Some(s2)],
            None,
            &mut ol[start..start + 500],
            &mut or[start..start + 500],
        );
    }
    let mut expected = [stems[0][0].clone(), stems[0][1].clone()];
    for ch in 0..2 {
        for n in 0..frames {
            if n % 500 < 100 {
                expected[ch][n] += stems[2][ch][n];
            }
        }
    }
    assert!(residual_db(&out, &expected, lat) <= -120.0);
    // Fewer inputs than prepared stems, and an empty list, work too.
    let mut l = [0.0; 64];
    let mut r = [0.0; 64];
    engine.process(&[], None, &mut l, &mut r);
}

#[test]
fn main_input_roles() {
    let frames = 20_000;
    let stems = make_stems(2, frames, 0.05, 11);
    let main = make_stems(1, frames, 0.05, 12).remove(0);
    let expect = |role: MainInputRole| {
        let mut s = sum(&stems);
        if role == MainInputRole::AddToSum {
            for ch in 0..2 {
                for (o, x) in s[ch].iter_mut().zip(&main[ch]) {
                    *o += x;
                }
            }
        }
        s
    };
    for role in [
        MainInputRole::Ignore,
        MainInputRole::AddToSum,
        MainInputRole::ReferenceMix,
        MainInputRole::ReferenceTrack,
    ] {
        let settings = EngineSettings {
            main_input: role,
            ..Default::default()
        };
        let mut engine = Engine::new(48_000.0, 512, 2);
        engine.set_settings(&settings);
        engine.reset();
        let out = run(&mut engine, &stems, Some(&main), &mut || 256);
        let res = residual_db(&out, &expect(role), engine.latency_samples());
        assert!(res <= -120.0, "{role:?}: {res}");
    }
}

#[test]
fn mute_and_solo() {
    let frames = 48_000;
    let stems = make_stems(3, frames, 0.05, 21);
    let tail = |out: &[Vec<f32>; 2], lat: usize, reference: &[Vec<f32>; 2]| {
        // Compare only the second half, after the ramps.
        let half = [out[0][24_000..].to_vec(), out[1][24_000..].to_vec()];
        let r = [
            reference[0][24_000 - lat..frames - lat].to_vec(),
            reference[1][24_000 - lat..frames - lat].to_vec(),
        ];
        residual_db(&half, &r, 0)
    };
    let mut settings = EngineSettings::default();
    settings.stems[1].mute = true;
    let mut engine = Engine::new(48_000.0, 512, 3);
    engine.set_settings(&settings);
    let out = run(&mut engine, &stems, None, &mut || 512);
    let lat = engine.latency_samples();
    assert!(tail(&out, lat, &sum(&[stems[0].clone(), stems[2].clone()])) <= -120.0);

    // Two solos at once: only those two are heard.
    let mut settings = EngineSettings::default();
    settings.stems[0].solo = true;
    settings.stems[2].solo = true;
    let mut engine = Engine::new(48_000.0, 512, 3);
    engine.set_settings(&settings);
    let out = run(&mut engine, &stems, None, &mut || 512);
    assert!(tail(&out, lat, &sum(&[stems[0].clone(), stems[2].clone()])) <= -120.0);
}

#[test]
fn mute_is_click_free() {
    // A full-scale-ish DC-free sine on one stem; muting mid-way must ramp, not jump.
    let frames = 9_600;
    let sine: Vec<f32> = (0..frames)
        .map(|n| 0.5 * (2.0 * std::f32::consts::PI * 100.0 * n as f32 / 48_000.0).sin())
        .collect();
    let stems = [[sine.clone(), sine.clone()]];
    let mut engine = Engine::new(48_000.0, 512, 1);
    let mut out = vec![0.0; frames];
    let mut right = vec![0.0; frames];
    let mut settings = EngineSettings::default();
    for start in (0..frames).step_by(32) {
        if start == 4_800 {
            settings.stems[0].mute = true;
            engine.set_settings(&settings);
        }
        let s = [
            &stems[0][0][start..start + 32],
            &stems[0][1][start..start + 32],
        ];
        engine.process(
            &[Some(s)],
            None,
            &mut out[start..start + 32],
            &mut right[start..start + 32],
        );
    }
    let max_step = |x: &[f32]| {
        x.windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0, f32::max)
    };
    let natural = max_step(&sine);
    assert!(
        max_step(&out) <= natural * 1.01,
        "{} vs {natural}",
        max_step(&out)
    );
    assert!(out[frames - 1].abs() < 1e-6);
}

/// NaN, ±Inf and denormals in three stems for 300 samples (and, in `huge`, one 3e38 sample,
/// clamped to +120 dBFS): the output stays finite. With `strict`, the output after the bad
/// stretch (plus latency and one block) equals a clean run; otherwise (dynamics with long
/// memory) its level in the following 100 ms is within 1 dB of the clean run's, i.e. nothing is
/// stuck or silent. A +120 dBFS sample is finite audio: compressors react to it and release at
/// their own speed, so with them on only finiteness is checked for it.
fn check_recovery(settings: &EngineSettings, huge: bool, strict: bool) {
    let frames = 24_000;
    let clean = make_stems(3, frames, 0.1, 31);
    let mut stems = clean.clone();
    let bad = 5_000..5_300;
    stems[0][0][bad.clone()].fill(f32::NAN);
    for (n, x) in stems[1][1][bad.clone()].iter_mut().enumerate() {
        *x = if n % 2 == 0 {
            f32::INFINITY
        } else {
            f32::NEG_INFINITY
        };
    }
    stems[2][0][bad].fill(f32::MIN_POSITIVE / 3.0);
    if huge {
        stems[2][1][7_000] = 3.0e38;
    }
    let mut engine = Engine::new(48_000.0, 512, 3);
    engine.set_settings(settings);
    let out = run(&mut engine, &stems, None, &mut || 512);
    assert!(out.iter().flatten().all(|x| x.is_finite()));
    let mut engine2 = Engine::new(48_000.0, 512, 3);
    engine2.set_settings(settings);
    let reference = run(&mut engine2, &clean, None, &mut || 512);
    let from = if huge {
        18_000
    } else {
        5_300 + engine.latency_samples() + 512
    };
    if huge && !strict {
        // Compressors release from the +120 dB spike at their own (seconds-long) pace.
    } else if strict {
        let diff = (from..frames)
            .map(|n| {
                (out[0][n] - reference[0][n])
                    .abs()
                    .max((out[1][n] - reference[1][n]).abs())
            })
            .fold(0.0, f32::max);
        assert!(diff < 1e-3, "still disturbed: {diff}");
    } else {
        let rms = |x: &[f32]| (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt();
        for ch in 0..2 {
            let got = rms(&out[ch][from..from + 4_800]);
            let want = rms(&reference[ch][from..from + 4_800]);
            let db = 20.0 * (got / want).log10();
            assert!(db.abs() < 1.0, "channel {ch}: {db} dB from the clean run");
        }
    }
    // The meters are not stalled: they still read finite loudness.
    let m = engine.meters().master.read();
    assert!(m.momentary_lufs.is_finite());
}

#[test]
fn bad_input_never_makes_bad_output_and_recovers_within_a_block() {
    let mut plain = EngineSettings::default();
    plain.master.drive_db = 6.0;
    check_recovery(&plain, false, true);
    check_recovery(&plain, true, true);
    let mut all_on = plain.clone();
    for s in &mut all_on.stems {
        s.eq.hpf_enabled = true;
        s.eq.bell1.enabled = true;
        s.eq.bell1.gain_db = 6.0;
        s.dyn_eq.enabled = true;
        s.comp.enabled = true;
        s.sat.enabled = true;
        s.stereo.mono_bass = true;
    }
    all_on.master.glue.enabled = true;
    all_on.master.eq.tilt_db = 2.0;
    check_recovery(&all_on, false, false);
    check_recovery(&all_on, true, false);
}

#[test]
fn gain_reduction_meters_are_published() {
    let stems = make_stems(2, 48_000, 0.4, 51);
    let mut settings = EngineSettings::default();
    settings.stems[1].comp.enabled = true;
    settings.stems[1].comp.threshold_db = -40.0;
    settings.master.glue.enabled = true;
    settings.master.glue.threshold_db = -40.0;
    settings.master.drive_db = 12.0;
    let mut engine = Engine::new(48_000.0, 512, 2);
    engine.set_settings(&settings);
    run(&mut engine, &stems, None, &mut || 512);
    let m = engine.meters();
    assert!(m.stem_comp_gr[1].take() > 3.0);
    assert!(m.stem_comp_gr[1].current() > 1.0);
    assert_eq!(m.stem_comp_gr[0].take(), 0.0, "stem 1's compressor is off");
    assert!(m.glue_gr.take() > 1.0);
    assert!(m.limiter_gr.take() > 1.0);
    // A take restarts the maximum.
    assert_eq!(m.limiter_gr.take(), 0.0);
}

/// Every module on every stem and on the master; with `keyed`, two stem compressors and the
/// glue listen to the mix; stem 2 muted and, with `solo`, stems 0 and 4 soloed; the main input
/// is added to the sum.
fn busy_settings(keyed: bool, solo: bool) -> EngineSettings {
    use stembus_dsp::settings::CompKey;
    let mut settings = EngineSettings::default();
    for (i, s) in settings.stems.iter_mut().enumerate() {
        s.eq.hpf_enabled = true;
        s.eq.low_shelf.enabled = true;
        s.eq.low_shelf.gain_db = 2.0;
        s.eq.bell1.enabled = true;
        s.eq.bell1.gain_db = -3.0;
        s.eq.lpf_enabled = true;
        s.dyn_eq.enabled = true;
        s.dyn_eq.threshold_db = -40.0;
        s.comp.enabled = true;
        s.comp.threshold_db = -30.0;
        s.comp.mix = 0.7;
        s.sat.enabled = i % 2 == 0;
        s.stereo.mono_bass = true;
        s.stereo.width = 1.2;
        if keyed && (i == 1 || i == 5) {
            s.comp.key = CompKey::Mix;
        }
        s.mute = i == 2;
        s.solo = solo && (i == 0 || i == 4);
    }
    settings.master.glue.enabled = true;
    if keyed {
        settings.master.glue.key = CompKey::Mix;
    }
    settings.master.eq.bell.enabled = true;
    settings.master.eq.bell.gain_db = -1.0;
    settings.master.drive_db = 9.0;
    settings.main_input = MainInputRole::AddToSum;
    settings
}

#[test]
fn offline_stages_match_the_engine_bit_for_bit() {
    use stembus_dsp::offline::{InMemory, MasterRender, SEGMENT, SLOTS, render_stems};
    for (num, keyed, solo, parallel) in [
        (6, true, false, true),
        (3, false, false, false),
        (8, false, true, true),
        (5, true, true, false),
    ] {
        // More segments than the stem stage has slots for (so every slot is used again), the
        // last one shorter.
        let frames = (2 * SLOTS + 3) * SEGMENT + 1234;
        let stems = make_stems(num, frames, 0.5, 7 + num as u32);
        let main = make_stems(1, frames, 0.2, 99).remove(0);
        let settings = busy_settings(keyed, solo);
        let mut engine = Engine::new(48_000.0, 4096, num);
        engine.set_settings(&settings);
        engine.reset();
        let mut rng = Rng(5);
        let want = run(&mut engine, &stems, Some(&main), &mut || 1 + rng.below(700));

        let ins: Vec<Option<StereoIn>> =
            stems.iter().map(|s| Some([&s[0][..], &s[1][..]])).collect();
        // What the sink is handed, in order, piece by piece.
        let mut streamed: [Vec<f32>; 2] = [Vec::new(), Vec::new()];
        let mut pieces = 0;
        let mix = render_stems(
            48_000.0,
            num,
            &InMemory(&ins),
            Some([&main[0][..], &main[1][..]]),
            &settings,
            frames,
            parallel,
            &mut |start, [l, r], key| {
                assert_eq!(start, streamed[0].len(), "pieces in order, none left out");
                assert_eq!(l.len(), r.len());
                assert_eq!(key.is_some(), keyed);
                if let Some([kl, kr]) = key {
                    assert_eq!((kl.len(), kr.len()), (l.len(), r.len()));
                }
                streamed[0].extend_from_slice(l);
                streamed[1].extend_from_slice(r);
                pieces += 1;
            },
        );
        assert_eq!(mix.key.is_some(), keyed);
        assert_eq!(pieces, frames.div_ceil(SEGMENT));
        assert!(streamed == mix.sum, "the streamed sum is the returned sum");
        let mut master = MasterRender::new(48_000.0, num, &settings);
        assert_eq!(master.latency_samples(), engine.latency_samples());
        let [mut left, mut right] = mix.sum;
        let mut start = 0;
        let mut rng = Rng(11);
        while start < frames {
            let end = (start + 1 + rng.below(900)).min(frames);
            let key = mix
                .key
                .as_ref()
                .map(|[l, r]| [&l[start..end], &r[start..end]]);
            master.process(&mut left[start..end], &mut right[start..end], key);
            start = end;
        }
        let peak = want[0].iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(peak > 0.05, "the test signal reaches the output ({peak})");
        for n in 0..frames {
            assert!(
                want[0][n] == left[n] && want[1][n] == right[n],
                "{num} stems, keyed {keyed}, solo {solo}: frame {n}: engine ({}, {}), \
                 offline ({}, {})",
                want[0][n],
                want[1][n],
                left[n],
                right[n]
            );
        }
    }
}

#[test]
fn a_compressor_keyed_from_the_mix_follows_the_other_stems() {
    use stembus_dsp::settings::CompKey;
    // Stem 0 is quiet and steady, stem 1 loud: keyed from the mix, stem 0's compressor reduces
    // it; keyed from itself, it stays below threshold.
    let frames = 24_000;
    let mut stems = make_stems(2, frames, 0.02, 3);
    stems[1] = make_stems(1, frames, 0.9, 4).remove(0);
    let gr = |key: CompKey| {
        let mut settings = EngineSettings::default();
        settings.stems[0].comp.enabled = true;
        settings.stems[0].comp.threshold_db = -20.0;
        settings.stems[0].comp.key = key;
        let mut engine = Engine::new(48_000.0, 512, 2);
        engine.set_settings(&settings);
        engine.reset();
        run(&mut engine, &stems, None, &mut || 512);
        engine.meters().stem_comp_gr[0].take()
    };
    let (own, mix) = (gr(CompKey::Own), gr(CompKey::Mix));
    assert!(own < 0.01, "own key: {own} dB of reduction");
    assert!(mix > 3.0, "mix key: {mix} dB of reduction");
}

#[test]
fn a_mix_keyed_compressor_hears_the_mix_while_it_fades_out() {
    use stembus_dsp::settings::CompKey;
    // One stem: its mix key is its own input, so keyed from the mix or from itself the
    // compressor must give the same output, also during the bypass fade after it is switched
    // off (the engine stops summing the key only once the fade is over).
    let frames = 24_064;
    let stems = make_stems(1, frames, 0.9, 5);
    let render = |key: CompKey| {
        let mut settings = EngineSettings::default();
        settings.stems[0].comp.enabled = true;
        settings.stems[0].comp.threshold_db = -30.0;
        settings.stems[0].comp.ratio = 8.0;
        settings.stems[0].comp.key = key;
        let mut engine = Engine::new(48_000.0, 256, 1);
        engine.set_settings(&settings);
        engine.reset();
        let mut out = [vec![0.0f32; frames], vec![0.0f32; frames]];
        for start in (0..frames).step_by(256) {
            if start == 12_032 {
                settings.stems[0].comp.enabled = false;
                engine.set_settings(&settings);
            }
            let [l, r] = &stems[0];
            let ins = [Some([&l[start..start + 256], &r[start..start + 256]])];
            let [ol, or] = &mut out;
            engine.process(
                &ins,
                None,
                &mut ol[start..start + 256],
                &mut or[start..start + 256],
            );
        }
        out
    };
    let (own, mix) = (render(CompKey::Own), render(CompKey::Mix));
    let worst = (0..2)
        .flat_map(|c| own[c].iter().zip(&mix[c]).map(|(a, b)| (a - b).abs()))
        .fold(0.0f32, f32::max);
    assert!(worst <= 1.0e-6, "own and mix key differ by {worst}");
    // And the compressor was working before the switch.
    let level = |x: &[f32]| x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    assert!(level(&own[0][8_000..12_000]) < 0.5 * level(&stems[0][0][8_000..12_000]));
}
