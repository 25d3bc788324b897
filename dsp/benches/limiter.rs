//! Limiter throughput: 48 kHz stereo in 512-frame blocks. Throughput is in frames, so
//! "× realtime" = frames per second ÷ 48 000.
//!
//! - `limiter/programme_plus_12db`: a programme-like mix driven 12 dB into a −1 dBTP ceiling
//!   (limiting most of the time: the work that matters).
//! - `limiter/white_noise`: full-scale white noise into −6 dBTP (limiting all the time).
//! - `limiter/idle`: a quiet signal that never reaches the ceiling.
//! - `limiter/bypassed`: the limiter disabled (pure delay, the detector keeps running).

use std::f32::consts::TAU;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stembus_dsp::limiter::Limiter;
use stembus_dsp::settings::LimiterSettings;

const SAMPLE_RATE: f32 = 48_000.0;
const BLOCK: usize = 512;
/// One second of audio per iteration.
const FRAMES: usize = 48_000;

/// Deterministic uniform noise in −1..1 (xorshift32).
fn noise(seed: u32) -> Vec<f32> {
    let mut s = seed;
    (0..FRAMES)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

/// Kick, noise hats, bass and a harmonic chord at about 0 dBFS peak, times `gain`.
fn programme(gain: f32) -> [Vec<f32>; 2] {
    let hats = noise(7);
    let beat = (0.25 * SAMPLE_RATE) as usize;
    let ch = |c: usize| -> Vec<f32> {
        (0..FRAMES)
            .map(|n| {
                let t = n as f32 / SAMPLE_RATE;
                let tb = (n % beat) as f32 / SAMPLE_RATE;
                let kick = 0.6 * (-tb * 18.0).exp() * (TAU * 55.0 * tb).sin();
                let hat = 0.15 * (-tb * 60.0).exp() * hats[(n + 97 * c) % FRAMES];
                let bass = 0.25 * (TAU * 55.0 * t).sin();
                let chord: f32 = [220.0, 277.2, 329.6]
                    .iter()
                    .map(|f| 0.08 * (TAU * f * t + c as f32).sin())
                    .sum();
                gain * (kick + hat + bass + chord)
            })
            .collect()
    };
    [ch(0), ch(1)]
}

fn run(c: &mut Criterion, name: &str, input: &[Vec<f32>; 2], settings: LimiterSettings) {
    let mut limiter = Limiter::new(SAMPLE_RATE);
    limiter.set_settings(&settings);
    limiter.reset();
    let mut left = input[0].clone();
    let mut right = input[1].clone();
    let mut group = c.benchmark_group("limiter");
    group.throughput(Throughput::Elements(FRAMES as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            left.copy_from_slice(&input[0]);
            right.copy_from_slice(&input[1]);
            for (l, r) in left.chunks_mut(BLOCK).zip(right.chunks_mut(BLOCK)) {
                limiter.process(l, r);
            }
            std::hint::black_box((&left, &right));
        })
    });
    group.finish();
}

fn limiter(c: &mut Criterion) {
    let limiting = LimiterSettings {
        ceiling_dbtp: -1.0,
        ..LimiterSettings::default()
    };
    run(c, "programme_plus_12db", &programme(4.0), limiting);
    run(
        c,
        "white_noise",
        &[noise(1), noise(2)],
        LimiterSettings {
            ceiling_dbtp: -6.0,
            ..limiting
        },
    );
    run(c, "idle", &programme(0.1), limiting);
    run(
        c,
        "bypassed",
        &programme(4.0),
        LimiterSettings {
            enabled: false,
            ..limiting
        },
    );
}

criterion_group!(benches, limiter);
criterion_main!(benches);
