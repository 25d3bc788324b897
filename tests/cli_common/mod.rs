//! Helpers for the `stembus` end-to-end tests (`tests/cli_*.rs`): build and run the binary,
//! write stems, read masters, measure them with the engine's meters.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use stembus_dsp::meters::{MeterSet, PublishedMeters};

/// Path of the `stembus` binary: `$STEMBUS_BIN` if set, else asked of cargo once per test
/// process, in the profile this test was built with (the path comes from cargo's JSON
/// messages, so any target directory works): `cargo test --workspace --no-run` for a test
/// build, which finds the binary `cargo test --workspace` has just built for
/// `cli/tests/usage.rs` fresh (a plain `cargo build -p stembus-cli` resolves other features
/// for shared dependencies than the test run and would recompile the engine);
/// `cargo build --release -p stembus-cli` for a release build.
pub fn stembus_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("STEMBUS_BIN") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile dir>/deps/<test>: "release" for release/bench builds, else "debug".
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let profile = if profile_dir == "release" {
            "release"
        } else {
            "test"
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let args: &[&str] = if profile == "release" {
            &[
                "build",
                "--release",
                "-p",
                "stembus-cli",
                "--bin",
                "stembus",
            ]
        } else {
            &["test", "--workspace", "--no-run"]
        };
        let out = Command::new(cargo)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .args(["--message-format", "json-render-diagnostics"])
            .output()
            .expect("run cargo build");
        assert!(
            out.status.success(),
            "cargo {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            // The binary itself: not the plugin library (also named `stembus`) nor the
            // binary's unit-test harness.
            .filter(|v| {
                v["reason"] == "compiler-artifact"
                    && v["target"]["name"] == "stembus"
                    && v["target"]["kind"] == serde_json::json!(["bin"])
                    && v["profile"]["test"] == false
            })
            .find_map(|v| v["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported the stembus executable")
    })
}

/// Runs `stembus` with `args`.
pub fn run(args: &[&str]) -> Output {
    Command::new(stembus_bin())
        .args(args)
        .output()
        .expect("run stembus")
}

/// Runs `stembus` and returns (exit code, stdout, stderr).
pub fn run_text(args: &[&str]) -> (i32, String, String) {
    let out = run(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts a failed run: the exit code, and one error line on stderr that contains every one of
/// `needles` (case-insensitive), and no panic.
pub fn assert_error(args: &[&str], code: i32, needles: &[&str]) -> String {
    let (c, _out, err) = run_text(args);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(c, code, "exit code for {args:?}; stderr: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("internal error"),
        "{err}"
    );
    let error_lines: Vec<&&str> = lines.iter().filter(|l| l.contains("error")).collect();
    assert_eq!(error_lines.len(), 1, "one error line expected, got: {err}");
    let line = error_lines[0].to_lowercase();
    for n in needles {
        assert!(
            line.contains(&n.to_lowercase()),
            "'{n}' not in error: {line}"
        );
    }
    error_lines[0].to_string()
}

/// Path as &str.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Names of the entries of folder `dir` (hidden ones included), sorted.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read folder")
        .map(|e| {
            e.expect("folder entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// `frames` samples of a sine of `freq` Hz and peak `amp` at `sr`, starting at phase 0.
pub fn sine(amp: f32, freq: f32, sr: u32, frames: usize) -> Vec<f32> {
    (0..frames)
        .map(|n| amp * (std::f32::consts::TAU * freq * n as f32 / sr as f32).sin())
        .collect()
}

/// Deterministic xorshift noise in −1..1.
pub struct Noise(pub u32);

impl Noise {
    pub fn next(&mut self) -> f32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        (x >> 8) as f32 / (1u32 << 23) as f32 - 1.0
    }
}

/// A small song at `sr`: (name, [left, right]) for bass, drums and keys, `secs` long.
/// - bass: 40 Hz and 80 Hz, a note every half second (much energy below 60 Hz);
///   bass notes and kicks alternate in polarity, so the stems have no DC offset;
/// - drums: a 55 Hz kick and a noise snare, alternating every quarter second;
/// - keys: a 440/554/659 Hz chord with a slow tremolo, slightly wide.
pub fn song(sr: u32, secs: f64) -> Vec<(&'static str, [Vec<f32>; 2])> {
    let n = (secs * f64::from(sr)) as usize;
    let tau = std::f64::consts::TAU;
    let t = |i: usize| i as f64 / f64::from(sr);
    let bass: Vec<f32> = (0..n)
        .map(|i| {
            let tt = t(i);
            // Alternate polarity per note, so that the song has no DC.
            let sign = if ((tt / 0.5) as usize).is_multiple_of(2) {
                1.0
            } else {
                -1.0
            };
            let env = sign * (-4.0 * (tt % 0.5)).exp();
            (env * (0.25 * (tau * 40.0 * tt).sin() + 0.1 * (tau * 80.0 * tt).sin())) as f32
        })
        .collect();
    let mut noise = Noise(0x2545_F491);
    let drums: Vec<f32> = (0..n)
        .map(|i| {
            let tt = t(i);
            let beat = (tt / 0.25) as usize;
            let since = tt % 0.25;
            let v = if beat.is_multiple_of(2) {
                let sign = if beat.is_multiple_of(4) { 1.0 } else { -1.0 };
                sign * 0.45 * (-25.0 * since).exp() * (tau * 55.0 * since).sin()
            } else {
                0.2 * (-30.0 * since).exp() * f64::from(noise.next())
            };
            v as f32
        })
        .collect();
    let keys = |phase: f64| -> Vec<f32> {
        (0..n)
            .map(|i| {
                let tt = t(i);
                let trem = 0.8 + 0.2 * (tau * 0.5 * tt).sin();
                let v = [440.0, 554.37, 659.25]
                    .iter()
                    .map(|f| (tau * f * tt + phase).sin())
                    .sum::<f64>();
                (0.04 * trem * v) as f32
            })
            .collect()
    };
    vec![
        ("bass", [bass.clone(), bass]),
        ("drums", [drums.clone(), drums]),
        ("keys", [keys(0.0), keys(0.3)]),
    ]
}

/// Writes a 32-bit float WAV.
pub fn write_f32(path: &Path, channels: &[Vec<f32>], sr: u32) {
    let spec = hound::WavSpec {
        channels: channels.len() as u16,
        sample_rate: sr,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for i in 0..channels[0].len() {
        for ch in channels {
            w.write_sample(ch[i]).expect("write sample");
        }
    }
    w.finalize().expect("finalize wav");
}

/// Writes an integer WAV (16, 24 or 32 bits), rounding.
pub fn write_int(path: &Path, channels: &[Vec<f32>], sr: u32, bits: u16) {
    let spec = hound::WavSpec {
        channels: channels.len() as u16,
        sample_rate: sr,
        bits_per_sample: bits,
        sample_format: hound::SampleFormat::Int,
    };
    let scale = (1u64 << (bits - 1)) as f64;
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for i in 0..channels[0].len() {
        for ch in channels {
            let v = (f64::from(ch[i]) * scale)
                .round()
                .clamp(-scale, scale - 1.0) as i32;
            w.write_sample(v).expect("write sample");
        }
    }
    w.finalize().expect("finalize wav");
}

/// Reads any WAV with hound: (sample rate, channels).
pub fn read(path: &Path) -> (u32, Vec<Vec<f32>>) {
    let mut r = hound::WavReader::open(path).expect("open wav");
    let spec = r.spec();
    let ch = spec.channels as usize;
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().map(|s| s.expect("sample")).collect(),
        hound::SampleFormat::Int => {
            let scale = (1u64 << (spec.bits_per_sample - 1)) as f32;
            r.samples::<i32>()
                .map(|s| s.expect("sample") as f32 / scale)
                .collect()
        }
    };
    let mut out = vec![Vec::with_capacity(samples.len() / ch); ch];
    for (i, v) in samples.into_iter().enumerate() {
        out[i % ch].push(v);
    }
    (spec.sample_rate, out)
}

/// Integrated loudness with the engine's meters (`MeterSet`), LUFS.
pub fn integrated_lufs(left: &[f32], right: &[f32], sr: u32) -> f32 {
    let mut m = MeterSet::new(sr as f32);
    let published = PublishedMeters::default();
    for (l, r) in left.chunks(4800).zip(right.chunks(4800)) {
        m.process(l, r);
    }
    m.publish(&published);
    published.read().integrated_lufs
}

/// True peak of a stereo file at 16× oversampling (the offline reference meter), dBTP.
pub fn true_peak_16x(channels: &[Vec<f32>]) -> f32 {
    let refs: Vec<&[f32]> = channels.iter().map(Vec::as_slice).collect();
    stembus_dsp::reference::true_peak_dbtp(&refs)
}

/// Amplitude of the `freq` component (Goertzel over the whole signal), linear.
pub fn tone_level(x: &[f32], freq: f64, sr: u32) -> f64 {
    let w = std::f64::consts::TAU * freq / f64::from(sr);
    let (c, mut s1, mut s2) = (2.0 * w.cos(), 0.0f64, 0.0f64);
    for &v in x {
        let s0 = f64::from(v) + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - c * s1 * s2;
    2.0 * power.max(0.0).sqrt() / x.len() as f64
}

/// Writes the song's stems into `dir` as float WAVs; returns their paths.
pub fn write_song(dir: &Path, sr: u32, secs: f64) -> Vec<PathBuf> {
    song(sr, secs)
        .into_iter()
        .map(|(name, [l, r])| {
            let p = dir.join(format!("{name}.wav"));
            write_f32(&p, &[l, r], sr);
            p
        })
        .collect()
}
