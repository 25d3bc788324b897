//! End-to-end offline render: 8 stereo stems × 60 s at 48 kHz (32-bit float WAVs written once
//! in setup), every module enabled on every stem and on the master, read → engine → meters →
//! 24-bit WAV out. Throughput is in frames of the song, so "× realtime" = frames per second ÷
//! 48 000.
//!
//! - `render/neutral_as_is`: default settings (the engine's limiter and meters, no module
//!   work): what the tool itself costs around the engine.
//! - `render/all_modules_as_is`: every module on, one engine pass at the settings' drive.
//! - Before sampling, the `--target-lufs -14` render (several passes) of each is timed once and
//!   printed.

use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stembus_cli::render_cmd::{RenderOptions, run_render};
use stembus_cli::wav::{OutputFormat, encode_wav};
use stembus_dsp::MAX_STEMS;
use stembus_dsp::settings::EngineSettings;

const SAMPLE_RATE: u32 = 48_000;
const SECONDS: usize = 60;
const FRAMES: usize = SAMPLE_RATE as usize * SECONDS;

/// Every module enabled and doing work.
fn all_modules() -> EngineSettings {
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
    settings.master.stereo.mono_bass = true;
    settings.master.stereo.width = 1.1;
    settings.master.drive_db = 6.0;
    settings
}

/// Writes the stems and the settings; returns (stem folder, settings file).
fn setup(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let stems = dir.join("stems");
    std::fs::create_dir_all(&stems).unwrap();
    let mut seed = 0x1234_5678u32;
    for s in 0..MAX_STEMS {
        let f = 45.0 * (s + 1) as f32;
        let mut ch = |c: usize| -> Vec<f32> {
            (0..FRAMES)
                .map(|n| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    let noise = (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                    let t = n as f32 / SAMPLE_RATE as f32;
                    // A beat: one note per half second with a decaying envelope.
                    let env = (-6.0 * (t % 0.5)).exp();
                    let fc = f * (1.0 + 0.01 * c as f32);
                    env * (0.15 * (std::f32::consts::TAU * fc * t).sin() + 0.03 * noise)
                })
                .collect()
        };
        let (l, r) = (ch(0), ch(1));
        let bytes = encode_wav(&l, &r, SAMPLE_RATE, OutputFormat::Float32);
        std::fs::write(stems.join(format!("stem{s}.wav")), bytes).unwrap();
    }
    let settings = dir.join("settings.json");
    std::fs::write(&settings, serde_json::to_string(&all_modules()).unwrap()).unwrap();
    (stems, settings)
}

fn options(
    dir: &std::path::Path,
    stems: &std::path::Path,
    settings: Option<PathBuf>,
    target: Option<f32>,
    name: &str,
) -> RenderOptions {
    RenderOptions {
        inputs: vec![stems.to_path_buf()],
        mix: None,
        settings,
        target_lufs: target,
        ceiling_dbtp: Some(-1.0),
        deliver: Vec::new(),
        targets_file: None,
        output: dir.join(format!("{name}.wav")),
        format: OutputFormat::Pcm24,
        sample_rate: None,
        plot: None,
        progress: false,
    }
}

fn bench_render(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (stems, settings) = setup(dir.path());
    // The loudness-targeted render takes several engine passes: timed once here, not sampled.
    for (name, s) in [("neutral", None), ("all_modules", Some(settings.clone()))] {
        let opts = options(
            dir.path(),
            &stems,
            s,
            Some(-14.0),
            &format!("{name}_target"),
        );
        let start = std::time::Instant::now();
        let outcome = run_render(&opts).unwrap();
        let secs = start.elapsed().as_secs_f64();
        let r = &outcome.reports[0];
        eprintln!(
            "render/{name}_target_-14 (once): {secs:.2} s = {:.1}× realtime, {} passes, \
             {:?} LUFS, {:?} dBTP",
            SECONDS as f64 / secs,
            r.passes,
            r.integrated_lufs,
            r.true_peak_dbtp
        );
    }
    let mut group = c.benchmark_group("render");
    group.throughput(Throughput::Elements(FRAMES as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    for (name, s) in [
        ("neutral_as_is", None),
        ("all_modules_as_is", Some(settings.clone())),
    ] {
        let opts = options(dir.path(), &stems, s, None, name);
        group.bench_function(name, |b| {
            b.iter(|| std::hint::black_box(run_render(&opts).unwrap()));
        });
    }
    group.finish();
}

criterion_group!(benches, bench_render);
criterion_main!(benches);
