//! Whole-engine throughput: 8 stereo stems at 48 kHz in 512-frame blocks, all meters on.
//! Throughput is in frames, so "× realtime" = frames per second ÷ 48 000.
//!
//! - `engine/neutral`: stems summed, master limiter and every meter working.
//! - `engine/all_modules`: every module enabled on every stem (EQ bands, dynamic EQ,
//!   compressor, oversampled saturation, mono bass) and on the master (glue, EQ, width, limiter).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stembus_dsp::MAX_STEMS;
use stembus_dsp::engine::{Engine, StereoIn};
use stembus_dsp::settings::EngineSettings;

const SAMPLE_RATE: f32 = 48_000.0;
const BLOCK: usize = 512;
/// One second of audio per iteration.
const FRAMES: usize = 48_000;

fn stems() -> Vec<[Vec<f32>; 2]> {
    let mut seed = 0x1234_5678u32;
    (0..MAX_STEMS)
        .map(|s| {
            let mut ch = |c: usize| -> Vec<f32> {
                (0..FRAMES)
                    .map(|n| {
                        seed ^= seed << 13;
                        seed ^= seed >> 17;
                        seed ^= seed << 5;
                        let noise = (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                        let f = 40.0 * (s + 1) as f32 + 3.0 * c as f32;
                        let env = if (n / 6000) % 2 == 0 { 1.0 } else { 0.3 };
                        env * (0.2 * (std::f32::consts::TAU * f * n as f32 / SAMPLE_RATE).sin()
                            + 0.05 * noise)
                    })
                    .collect()
            };
            [ch(0), ch(1)]
        })
        .collect()
}

/// Every module enabled and doing work.
pub fn all_modules() -> EngineSettings {
    let mut settings = EngineSettings::default();
    for s in &mut settings.stems {
        s.eq.hpf_enabled = true;
        s.eq.low_shelf.enabled = true;
        s.eq.low_shelf.gain_db = 2.0;
        s.eq.bell1.enabled = true;
        s.eq.bell1.gain_db = -3.0;
        s.eq.bell2.enabled = true;
        s.eq.bell2.gain_db = 2.0;
        s.eq.high_shelf.enabled = true;
        s.eq.high_shelf.gain_db = 1.5;
        s.eq.lpf_enabled = true;
        s.dyn_eq.enabled = true;
        s.dyn_eq.threshold_db = -40.0;
        s.comp.enabled = true;
        s.comp.threshold_db = -30.0;
        s.comp.mix = 0.7;
        s.sat.enabled = true;
        s.stereo.mono_bass = true;
        s.stereo.width = 1.2;
    }
    settings.master.glue.enabled = true;
    settings.master.eq.low_shelf.enabled = true;
    settings.master.eq.low_shelf.gain_db = 1.0;
    settings.master.eq.bell.enabled = true;
    settings.master.eq.bell.gain_db = -1.0;
    settings.master.eq.high_shelf.enabled = true;
    settings.master.eq.high_shelf.gain_db = 1.0;
    settings.master.eq.tilt_db = 0.5;
    settings.master.stereo.width = 1.1;
    settings.master.drive_db = 8.0;
    settings
}

fn bench_engine(c: &mut Criterion) {
    let stems = stems();
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(FRAMES as u64));
    group.sample_size(20);
    let mut neutral = EngineSettings::default();
    neutral.master.drive_db = 8.0;
    for (name, settings) in [("neutral", neutral), ("all_modules", all_modules())] {
        let mut engine = Engine::new(SAMPLE_RATE, BLOCK, MAX_STEMS);
        engine.set_settings(&settings);
        let mut out = [vec![0.0f32; BLOCK], vec![0.0f32; BLOCK]];
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut start = 0;
                while start < FRAMES {
                    let len = BLOCK.min(FRAMES - start);
                    let ins: [Option<StereoIn>; MAX_STEMS] = std::array::from_fn(|i| {
                        Some([
                            &stems[i][0][start..start + len],
                            &stems[i][1][start..start + len],
                        ])
                    });
                    let [ol, or] = &mut out;
                    engine.process(&ins, None, &mut ol[..len], &mut or[..len]);
                    start += len;
                }
                std::hint::black_box(&out);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_engine);
criterion_main!(benches);
