//! Limiter stress set: hard signals driven far over the ceiling, judged by the independent 16×
//! reference meter (`stembus_dsp::reference`). The output's true peak must not pass the ceiling
//! by more than [`ALLOWANCE_DB`]; each test prints its worst overshoot.
//!
//! Signals: +40 dB steps, fs/4 sines at 45°, square waves, full-scale white noise, single-sample
//! impulses, EBU Tech 3341 true-peak cases 20–23 (+12 dB) and two programme-like mixes driven
//! 12 dB into the limiter; ceilings −0.1, −1 and −6 dBTP at 44.1, 48 and 96 kHz, with the
//! default release, and with fast fixed releases (5 ms, 1 ms) at −1 and −6 dBTP.

mod common;

use std::f64::consts::PI;

use stembus_dsp::limiter::Limiter;
use stembus_dsp::reference;
use stembus_dsp::settings::LimiterSettings;

/// Largest tolerated overshoot of the output's true peak over the ceiling, dB.
const ALLOWANCE_DB: f32 = 0.05;

const RATES: [f32; 3] = [44_100.0, 48_000.0, 96_000.0];
const CEILINGS_DB: [f32; 3] = [-0.1, -1.0, -6.0];

/// Deterministic pseudo-random generator (xorshift32).
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
}

type Stereo = [Vec<f32>; 2];

fn db(x: f64) -> f64 {
    10f64.powf(x / 20.0)
}

fn sine(len: usize, freq_ratio: f64, phase: f64, amp: f64) -> Vec<f32> {
    (0..len)
        .map(|n| (amp * (2.0 * PI * freq_ratio * n as f64 + phase).sin()) as f32)
        .collect()
}

/// Runs `input` through a fresh limiter in blocks of `block` frames, followed by enough silence
/// to flush the delay, and returns the whole output.
fn limit(input: &Stereo, fs: f32, settings: &LimiterSettings, block: usize) -> Stereo {
    let mut limiter = Limiter::new(fs);
    limiter.set_settings(settings);
    limiter.reset();
    let tail = limiter.latency_samples() + 64;
    let mut out = [input[0].clone(), input[1].clone()];
    for ch in &mut out {
        ch.extend(std::iter::repeat_n(0.0, tail));
    }
    let [l, r] = &mut out;
    for (lb, rb) in l.chunks_mut(block).zip(r.chunks_mut(block)) {
        limiter.process(lb, rb);
    }
    out
}

fn settings(ceiling_dbtp: f32) -> LimiterSettings {
    LimiterSettings {
        enabled: true,
        ceiling_dbtp,
        release_ms: 100.0,
        auto_release: true,
    }
}

/// Release settings every signal is tried with: the default at every ceiling, and the fast
/// ones (hardest for the limiter: the gain moves most) at [`FAST_RELEASE_CEILINGS_DB`].
const DEFAULT_RELEASE: (&str, f32, bool) = ("auto 100 ms", 100.0, true);
const FAST_RELEASES: [(&str, f32, bool); 2] =
    [("fixed 5 ms", 5.0, false), ("fixed 1 ms", 1.0, false)];
const FAST_RELEASE_CEILINGS_DB: [f32; 2] = [-1.0, -6.0];

/// Overshoot in dB of the limited `input` over `ceiling_db` (16× reference meter, worst
/// channel) and where it happened.
fn overshoot_db(
    input: &Stereo,
    fs: f32,
    ceiling_db: f32,
    release_ms: f32,
    auto: bool,
) -> (f32, f64) {
    let s = LimiterSettings {
        release_ms,
        auto_release: auto,
        ..settings(ceiling_db)
    };
    let out = limit(input, fs, &s, 512);
    out.iter()
        .map(|ch| {
            let (peak, at) = reference::true_peak_16x_at(ch);
            (20.0 * peak.log10() - ceiling_db, at)
        })
        .fold(
            (f32::NEG_INFINITY, 0.0),
            |a, b| if b.0 > a.0 { b } else { a },
        )
}

/// Checks `make(fs)` at every rate, ceiling and release; prints every result and the worst
/// overshoot, and fails above [`ALLOWANCE_DB`].
fn stress(name: &str, make: impl Fn(f32) -> Stereo) -> f32 {
    let mut worst = f32::NEG_INFINITY;
    for fs in RATES {
        let input = make(fs);
        let runs = CEILINGS_DB.iter().map(|&c| (c, DEFAULT_RELEASE)).chain(
            FAST_RELEASE_CEILINGS_DB
                .iter()
                .flat_map(|&c| FAST_RELEASES.iter().map(move |&r| (c, r))),
        );
        for (ceiling, (label, release_ms, auto)) in runs {
            let (over, at) = overshoot_db(&input, fs, ceiling, release_ms, auto);
            println!(
                "{name}: {fs} Hz, ceiling {ceiling} dBTP, release {label}: {over:+.4} dB at sample {at:.2}"
            );
            worst = worst.max(over);
        }
    }
    println!("{name}: worst overshoot {worst:+.4} dB");
    assert!(
        worst <= ALLOWANCE_DB,
        "{name}: overshoot {worst:+.4} dB > {ALLOWANCE_DB} dB"
    );
    worst
}

#[test]
fn steps_of_40_db() {
    stress("+40 dB steps", |fs| {
        let len = (0.3 * fs) as usize;
        let mut rng = Rng(7);
        let f = 997.0 / fs as f64;
        let l: Vec<f32> = (0..len)
            .map(|n| {
                let loud = (n / (len / 6)) % 2 == 1;
                let level = if loud { db(10.0) } else { db(-30.0) };
                (level * (2.0 * PI * f * n as f64).sin()) as f32
            })
            .collect();
        let r: Vec<f32> = (0..len)
            .map(|n| {
                let loud = ((n + len / 12) / (len / 6)) % 2 == 1;
                let level = if loud { db(14.0) } else { db(-26.0) };
                (level as f32) * rng.bipolar()
            })
            .collect();
        [l, r]
    });
}

#[test]
fn quarter_rate_sines_at_45_degrees() {
    stress("fs/4 sine at 45°", |fs| {
        let len = (0.1 * fs) as usize;
        // +6 dBTP: every sample at ±1.41, the waveform peaks at 2.0.
        let x = sine(len, 0.25, PI / 4.0, 2.0);
        [x.clone(), x]
    });
}

#[test]
fn square_waves() {
    stress("square waves", |fs| {
        let len = (0.2 * fs) as usize;
        let square = |freq: f64, amp: f32| -> Vec<f32> {
            (0..len)
                .map(|n| {
                    let phase = (freq * n as f64 / fs as f64).fract();
                    if phase < 0.5 { amp } else { -amp }
                })
                .collect()
        };
        [square(1000.0, 1.0), square(5513.0, 2.0)]
    });
}

#[test]
fn full_scale_white_noise() {
    stress("white noise", |fs| {
        let len = (0.3 * fs) as usize;
        let mut rng = Rng(99);
        let l: Vec<f32> = (0..len).map(|_| rng.bipolar()).collect();
        let r: Vec<f32> = (0..len).map(|_| rng.bipolar()).collect();
        [l, r]
    });
}

#[test]
fn single_sample_impulses() {
    stress("impulses", |fs| {
        let len = (0.15 * fs) as usize;
        let mut l = vec![0.0f32; len];
        let mut r = vec![0.0f32; len];
        let spacing = 1500;
        for (k, n) in (500..len - 10).step_by(spacing).enumerate() {
            match k % 4 {
                0 => l[n] = 1.0,
                1 => {
                    l[n] = 4.0;
                    r[n + 1] = -4.0;
                }
                2 => {
                    // Two equal samples: the waveform peaks between them.
                    l[n] = 2.0;
                    l[n + 1] = 2.0;
                }
                _ => {
                    r[n] = 3.0;
                    r[n + 1] = -3.0;
                    r[n + 2] = 3.0;
                }
            }
        }
        [l, r]
    });
}

#[test]
fn ebu_true_peak_cases_20_to_23_plus_12_db() {
    for offset in 0..4 {
        stress(&format!("EBU 3341 case {} +12 dB", 20 + offset), |fs| {
            let x: Vec<f32> = common::ebu_true_peak_burst(fs as f64, offset, 0.1)
                .iter()
                .map(|v| v * db(12.0) as f32)
                .collect();
            [x.clone(), x]
        });
    }
}

/// A programme-like stereo mix: kick (pitch-swept sine bursts), snare and hi-hat (noise
/// bursts), bass, a chord of harmonic tones (unnormalised; see [`drive`]).
fn programme(fs: f32, len: usize, seed: u32) -> Stereo {
    let mut rng = Rng(seed);
    let beat = (0.25 * fs) as usize;
    let t = |n: usize| n as f64 / fs as f64;
    let mut l = vec![0.0f32; len];
    let mut r = vec![0.0f32; len];
    for n in 0..len {
        let in_beat = n % beat;
        let tb = in_beat as f64 / fs as f64;
        let beat_no = n / beat;
        let kick = if beat_no.is_multiple_of(2) {
            0.9 * (-tb * 18.0).exp()
                * (2.0 * PI * (50.0 * tb + 60.0 * (1.0 - (-tb * 30.0).exp()))).sin()
        } else {
            0.0
        };
        let snare_env = if beat_no % 2 == 1 {
            0.5 * (-tb * 25.0).exp()
        } else {
            0.0
        };
        let hat_env = 0.15 * (-(((n + beat / 2) % (beat / 2)) as f64 / fs as f64) * 60.0).exp();
        let noise_l = rng.bipolar() as f64;
        let noise_r = rng.bipolar() as f64;
        let bass = 0.35 * (2.0 * PI * 55.0 * t(n)).sin() + 0.1 * (2.0 * PI * 110.0 * t(n)).sin();
        let mut chord = 0.0;
        for (f0, a) in [(220.0, 0.1), (277.18, 0.08), (329.63, 0.08)] {
            for h in 1..12 {
                chord += a / h as f64 * (2.0 * PI * f0 * h as f64 * t(n) + h as f64).sin();
            }
        }
        let centre = kick + bass + snare_env * (noise_l + noise_r) * 0.5;
        l[n] = (centre + hat_env * noise_l + chord * 0.9) as f32;
        r[n] = (centre + hat_env * noise_r * 0.7 + chord * 1.1) as f32;
    }
    [l, r]
}

/// `x` scaled so that its sample peak is −1 dBFS, then driven `drive_db` into the limiter.
fn drive(x: Stereo, drive_db: f64) -> Stereo {
    let peak = x[0].iter().chain(&x[1]).fold(0.0f32, |m, v| m.max(v.abs()));
    let gain = (db(-1.0 + drive_db) as f32) / peak;
    x.map(|ch| ch.iter().map(|v| v * gain).collect())
}

#[test]
fn programme_driven_12_db_into_the_limiter() {
    stress("programme +12 dB", |fs| {
        drive(programme(fs, (0.5 * fs) as usize, 5), 12.0)
    });
    stress("noise programme +12 dB", |fs| {
        drive(common::programme(fs as f64, 0.5, 3), 12.0)
    });
}
