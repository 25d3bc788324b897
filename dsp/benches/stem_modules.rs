//! Per-stem module cost: the saturation and the compressor alone, 48 kHz stereo in blocks of
//! 128 frames (the engine's internal chunk). Each reported "time" is **per stereo frame**
//! (every iteration processes [`FRAMES`] frames and the measured time is divided by it), and
//! the throughput is in frames per second, so "× realtime" = throughput ÷ 48 000.
//!
//! - `saturation/enabled`: drive 12 dB, mix 0.7 (oversampling and the curve working).
//! - `saturation/full_wet`: drive 24 dB, mix 1.
//! - `saturation/bypassed`: disabled (a pure delay: the oversampler rests).
//! - `compressor/clean`: −30 dB threshold, 4:1, mix 0.7, compressing most of the time.
//! - `compressor/opto_auto_keyed`: opto character, automatic release, keyed from a mix.
//! - `compressor/below_threshold`: a quiet stem that never reaches the knee.
//! - `compressor/bypassed`: disabled.

use std::f32::consts::TAU;
use std::time::{Duration, Instant};

use criterion::{Bencher, Criterion, Throughput, criterion_group, criterion_main};
use stembus_dsp::compressor::Compressor;
use stembus_dsp::saturation::Saturation;
use stembus_dsp::settings::{CompCharacter, CompKey, CompressorSettings, SaturationSettings};

const SAMPLE_RATE: f32 = 48_000.0;
const BLOCK: usize = 128;
/// A quarter of a second of audio per iteration.
const FRAMES: usize = 12_000;

/// A stem-like signal: a bass note with a tremolo, a chord and a little noise, ≈ 0.6 peak,
/// times `gain`; the right channel is a slightly different mix.
fn stem(gain: f32) -> [Vec<f32>; 2] {
    let mut seed = 0x2468_ace1u32;
    let mut ch = |c: usize| -> Vec<f32> {
        (0..FRAMES)
            .map(|n| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let noise = (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                let t = n as f32 / SAMPLE_RATE;
                let bass = 0.3 * (TAU * 55.0 * t).sin() * (0.6 + 0.4 * (TAU * 3.0 * t).sin());
                let chord: f32 = [220.0, 277.2, 329.6]
                    .iter()
                    .map(|f| 0.08 * (TAU * f * t + c as f32).sin())
                    .sum();
                gain * (bass + chord + 0.05 * noise)
            })
            .collect()
    };
    [ch(0), ch(1)]
}

/// Times `process` (all [`FRAMES`] frames of `input`, fresh copies each time) and reports the
/// time per frame.
fn per_frame(
    b: &mut Bencher,
    input: &[Vec<f32>; 2],
    mut process: impl FnMut(&mut [f32], &mut [f32]),
) {
    let (mut left, mut right) = (input[0].clone(), input[1].clone());
    b.iter_custom(|iters| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            left.copy_from_slice(&input[0]);
            right.copy_from_slice(&input[1]);
            let start = Instant::now();
            process(&mut left, &mut right);
            total += start.elapsed();
            std::hint::black_box((&left, &right));
        }
        total / FRAMES as u32
    });
}

fn saturation(c: &mut Criterion) {
    let input = stem(1.0);
    let mut group = c.benchmark_group("saturation");
    group.throughput(Throughput::Elements(1));
    let cases = [
        (
            "enabled",
            SaturationSettings {
                enabled: true,
                drive_db: 12.0,
                mix: 0.7,
            },
        ),
        (
            "full_wet",
            SaturationSettings {
                enabled: true,
                drive_db: 24.0,
                mix: 1.0,
            },
        ),
        (
            "bypassed",
            SaturationSettings {
                enabled: false,
                ..SaturationSettings::default()
            },
        ),
    ];
    for (name, settings) in cases {
        let mut sat = Saturation::new(SAMPLE_RATE);
        sat.set_settings(&settings);
        group.bench_function(name, |b| {
            per_frame(b, &input, |left, right| {
                for (l, r) in left.chunks_mut(BLOCK).zip(right.chunks_mut(BLOCK)) {
                    sat.process(l, r);
                }
            })
        });
    }
    group.finish();
}

fn compressor(c: &mut Criterion) {
    let loud = stem(1.0);
    let quiet = stem(0.01);
    let key = stem(1.5);
    let clean = CompressorSettings {
        enabled: true,
        threshold_db: -30.0,
        ratio: 4.0,
        mix: 0.7,
        ..CompressorSettings::default()
    };
    let cases = [
        ("clean", clean, &loud, false),
        (
            "opto_auto_keyed",
            CompressorSettings {
                character: CompCharacter::Opto,
                auto_release: true,
                key: CompKey::Mix,
                ..clean
            },
            &loud,
            true,
        ),
        ("below_threshold", clean, &quiet, false),
        (
            "bypassed",
            CompressorSettings {
                enabled: false,
                ..clean
            },
            &loud,
            false,
        ),
    ];
    let mut group = c.benchmark_group("compressor");
    group.throughput(Throughput::Elements(1));
    for (name, settings, input, keyed) in cases {
        let mut comp = Compressor::new(SAMPLE_RATE);
        comp.set_settings(&settings);
        group.bench_function(name, |b| {
            per_frame(b, input, |left, right| {
                let mut start = 0;
                while start < FRAMES {
                    let end = (start + BLOCK).min(FRAMES);
                    let k = keyed.then(|| (&key[0][start..end], &key[1][start..end]));
                    comp.process(&mut left[start..end], &mut right[start..end], k);
                    start = end;
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, saturation, compressor);
criterion_main!(benches);
