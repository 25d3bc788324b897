//! Per-module throughput of the filter modules of a stem chain: 48 kHz stereo, processed in
//! chunks of 128 frames (the engine's internal `CHUNK`), one second of audio per iteration.
//! Throughput is in frames: **ns per stereo frame = 1000 ÷ (Melem/s)**, and
//! "× realtime" = frames per second ÷ 48 000.
//!
//! Every case copies each chunk of the input into a small work buffer first; `copy_only`
//! measures that copy alone, to subtract.
//!
//! The machine these run on is shared, so each criterion sample reports the **fastest** of its
//! iterations (times the iteration count) rather than their sum: the minimum is what the code
//! costs when it has the core, and it is stable under load from other processes.
//!
//! - `stem_eq/all_bands`: HPF 24 dB/oct, low shelf, two bells, high shelf, LPF (the settings of
//!   the engine bench's `all_modules`).
//! - `stem_eq/all_bands_hpf48`: the same with a 48 dB/oct HPF.
//! - `stem_eq/automated`: all bands, bell 1 frequency and gain automated every chunk (the
//!   coefficient-ramp path).
//! - `master_eq/all_bands`: low shelf, bell, high shelf, tilt.
//! - `dynamic_eq/active`: 6.5 kHz band, threshold −40 dB (working all the time).
//! - `stereo/mono_bass`: width 1.2 and mono bass at 120 Hz.
//! - `stereo/width`: width 1.2 only.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stembus_dsp::dynamic_eq::DynamicEq;
use stembus_dsp::eq::{MasterEq, StemEq};
use stembus_dsp::settings::{
    DynEqSettings, EqSettings, FilterSlope, MasterEqSettings, StereoSettings,
};
use stembus_dsp::stereo::StereoProcessor;

const SAMPLE_RATE: f32 = 48_000.0;
/// The engine's internal chunk size.
const CHUNK: usize = 128;
/// One second of audio per iteration.
const FRAMES: usize = 48_000;

/// A sine plus noise with a slow on/off envelope, as in the engine bench.
fn input() -> [Vec<f32>; 2] {
    let mut seed = 0x1234_5678u32;
    let mut ch = |c: usize| -> Vec<f32> {
        (0..FRAMES)
            .map(|n| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let noise = (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                let f = 120.0 + 3.0 * c as f32;
                let env = if (n / 6000) % 2 == 0 { 1.0 } else { 0.3 };
                env * (0.2 * (std::f32::consts::TAU * f * n as f32 / SAMPLE_RATE).sin()
                    + 0.05 * noise)
            })
            .collect()
    };
    [ch(0), ch(1)]
}

/// EQ with every band on, as in the engine bench.
fn busy_eq() -> EqSettings {
    let mut s = EqSettings {
        hpf_enabled: true,
        lpf_enabled: true,
        ..EqSettings::default()
    };
    for (b, g) in [
        (&mut s.low_shelf, 2.0),
        (&mut s.bell1, -3.0),
        (&mut s.bell2, 2.0),
        (&mut s.high_shelf, 1.5),
    ] {
        b.enabled = true;
        b.gain_db = g;
    }
    s
}

/// Runs `process(chunk_index, left, right)` over one second in chunks.
fn bench(
    c: &mut Criterion,
    name: &str,
    input: &[Vec<f32>; 2],
    mut process: impl FnMut(usize, &mut [f32], &mut [f32]),
) {
    let mut group = c.benchmark_group("filters");
    group.throughput(Throughput::Elements(FRAMES as u64));
    group.sample_size(30);
    let (mut l, mut r) = ([0.0f32; CHUNK], [0.0f32; CHUNK]);
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut best = Duration::MAX;
            for _ in 0..iters {
                let start = Instant::now();
                for (k, (il, ir)) in input[0]
                    .chunks(CHUNK)
                    .zip(input[1].chunks(CHUNK))
                    .enumerate()
                {
                    let n = il.len();
                    l[..n].copy_from_slice(il);
                    r[..n].copy_from_slice(ir);
                    process(k, &mut l[..n], &mut r[..n]);
                    std::hint::black_box((&l, &r));
                }
                best = best.min(start.elapsed());
            }
            best * iters as u32
        })
    });
    group.finish();
}

fn bench_filters(c: &mut Criterion) {
    let x = input();
    bench(c, "copy_only", &x, |_, _, _| {});

    for (name, slope) in [
        ("stem_eq/all_bands", FilterSlope::Db24),
        ("stem_eq/all_bands_hpf48", FilterSlope::Db48),
    ] {
        let mut eq = StemEq::new(SAMPLE_RATE);
        eq.set_settings(&EqSettings {
            hpf_slope: slope,
            ..busy_eq()
        });
        eq.reset();
        bench(c, name, &x, |_, l, r| eq.process(l, r));
    }

    let mut eq = StemEq::new(SAMPLE_RATE);
    eq.set_settings(&busy_eq());
    eq.reset();
    bench(c, "stem_eq/automated", &x, |k, l, r| {
        let mut s = busy_eq();
        let t = (k % 64) as f32 / 64.0;
        s.bell1.freq_hz = 200.0 * 8.0f32.powf(t);
        s.bell1.gain_db = -6.0 + 12.0 * t;
        eq.set_settings(&s);
        eq.process(l, r);
    });

    let mut meq = MasterEq::new(SAMPLE_RATE);
    let mut ms = MasterEqSettings::default();
    for (b, g) in [
        (&mut ms.low_shelf, 1.0),
        (&mut ms.bell, -1.0),
        (&mut ms.high_shelf, 1.0),
    ] {
        b.enabled = true;
        b.gain_db = g;
    }
    ms.tilt_db = 0.5;
    meq.set_settings(&ms);
    meq.reset();
    bench(c, "master_eq/all_bands", &x, |_, l, r| meq.process(l, r));

    let mut deq = DynamicEq::new(SAMPLE_RATE);
    deq.set_settings(&DynEqSettings {
        enabled: true,
        threshold_db: -40.0,
        ..DynEqSettings::default()
    });
    deq.reset();
    bench(c, "dynamic_eq/active", &x, |_, l, r| deq.process(l, r));

    for (name, mono_bass) in [("stereo/mono_bass", true), ("stereo/width", false)] {
        let mut st = StereoProcessor::new(SAMPLE_RATE);
        st.set_settings(&StereoSettings {
            mono_bass,
            width: 1.2,
            ..StereoSettings::default()
        });
        st.reset();
        bench(c, name, &x, |_, l, r| st.process(l, r));
    }
}

criterion_group!(benches, bench_filters);
criterion_main!(benches);
