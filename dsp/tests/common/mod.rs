//! Shared test-signal generators for the `dsp` integration tests: sines with given frequency,
//! level and phase, EBU Tech 3341/3342 tone sequences, the Tech 3341 true-peak bursts, pink-ish
//! noise, a programme-like stereo signal, and random block splitting.
//!
//! Add functions freely; do not remove or change existing ones (other test files use them).
#![allow(dead_code)]

use std::f64::consts::PI;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// Decibels to linear amplitude.
pub fn db_to_amp(db: f64) -> f64 {
    10f64.powf(db / 20.0)
}

/// A seeded random generator (deterministic tests; fast, not cryptographic).
pub fn rng(seed: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed)
}

/// `amplitude · sin(2π·freq·n/fs + phase)` for `len` samples (computed in f64).
pub fn sine(
    sample_rate: f64,
    freq_hz: f64,
    amplitude: f64,
    phase_rad: f64,
    len: usize,
) -> Vec<f32> {
    let w = 2.0 * PI * freq_hz / sample_rate;
    (0..len)
        .map(|n| (amplitude * (w * n as f64 + phase_rad).sin()) as f32)
        .collect()
}

/// Applies raised-cosine fades of `fade_len` samples at both ends, in place.
pub fn fade_in_out(x: &mut [f32], fade_len: usize) {
    let len = x.len();
    let fade_len = fade_len.min(len / 2);
    for i in 0..fade_len {
        let g = (0.5 - 0.5 * (PI * i as f64 / fade_len as f64).cos()) as f32;
        x[i] *= g;
        x[len - 1 - i] *= g;
    }
}

/// A sine with `fade_ms` raised-cosine fades, `seconds` long (EBU Tech 3341 cases 15–19 use
/// 10 ms fades).
pub fn faded_sine(
    sample_rate: f64,
    freq_hz: f64,
    amplitude: f64,
    phase_rad: f64,
    seconds: f64,
    fade_ms: f64,
) -> Vec<f32> {
    let mut x = sine(
        sample_rate,
        freq_hz,
        amplitude,
        phase_rad,
        (seconds * sample_rate).round() as usize,
    );
    fade_in_out(&mut x, (fade_ms * 1e-3 * sample_rate).round() as usize);
    x
}

/// A phase-continuous tone sequence (one channel; the EBU cases apply it in phase to both
/// channels), generated on the fly so that long sequences need no memory. Segment `i` lasts
/// `segments[i].0` seconds (rounded to whole samples) at a peak level of `segments[i].1` dBFS,
/// `None` being silence.
pub struct ToneSequence {
    /// `(samples, amplitude)` per segment.
    segments: Vec<(usize, f64)>,
    /// Current segment.
    index: usize,
    /// Samples already produced in the current segment.
    done: usize,
    /// Oscillator as a unit phasor `(cos, sin)` rotated by `step` every sample.
    phasor: (f64, f64),
    /// Per-sample rotation `(cos w, sin w)`.
    step: (f64, f64),
    /// Samples produced so far (for renormalising the phasor).
    produced: u64,
}

impl ToneSequence {
    /// A sequence of `freq_hz` tones; see the type doc.
    pub fn new(sample_rate: f64, freq_hz: f64, segments: &[(f64, Option<f64>)]) -> Self {
        let w = 2.0 * PI * freq_hz / sample_rate;
        Self {
            segments: segments
                .iter()
                .map(|&(s, db)| {
                    (
                        (s * sample_rate).round() as usize,
                        db.map_or(0.0, db_to_amp),
                    )
                })
                .collect(),
            index: 0,
            done: 0,
            phasor: (1.0, 0.0),
            step: (w.cos(), w.sin()),
            produced: 0,
        }
    }

    /// The EBU 1 kHz tone sequence (Tech 3341 / 3342 "tones similar to #1").
    pub fn ebu(sample_rate: f64, segments: &[(f64, Option<f64>)]) -> Self {
        Self::new(sample_rate, 1000.0, segments)
    }

    /// Total length in samples.
    pub fn len(&self) -> usize {
        self.segments.iter().map(|s| s.0).sum()
    }

    /// Sample index at which segment `i` starts.
    pub fn segment_start(&self, i: usize) -> usize {
        self.segments[..i].iter().map(|s| s.0).sum()
    }

    /// Fills `out` with the next samples; returns how many were written (0 at the end).
    pub fn fill(&mut self, out: &mut [f32]) -> usize {
        let mut written = 0;
        while written < out.len() && self.index < self.segments.len() {
            let (len, amp) = self.segments[self.index];
            let n = (len - self.done).min(out.len() - written);
            for o in &mut out[written..written + n] {
                *o = (amp * self.phasor.1) as f32;
                let (c, s) = self.phasor;
                self.phasor = (
                    c * self.step.0 - s * self.step.1,
                    s * self.step.0 + c * self.step.1,
                );
                self.produced += 1;
                if self.produced.is_multiple_of(4096) {
                    let norm =
                        (self.phasor.0 * self.phasor.0 + self.phasor.1 * self.phasor.1).sqrt();
                    self.phasor = (self.phasor.0 / norm, self.phasor.1 / norm);
                }
            }
            written += n;
            self.done += n;
            if self.done == len {
                self.index += 1;
                self.done = 0;
            }
        }
        written
    }

    /// The whole sequence as one vector.
    pub fn collect(mut self) -> Vec<f32> {
        let mut v = vec![0.0; self.len()];
        let n = self.fill(&mut v);
        v.truncate(n);
        v
    }
}

/// EBU Tech 3341 (2016) true-peak cases 20–23: a stereo sine at fs/6, amplitude 0.5, holding
/// one period of an fs/4 sine of amplitude 1.0, "continuous in phase at both sides of the single
/// period", synthesised at 4·fs, low-pass (anti-alias) filtered and downsampled to fs with an
/// offset of `offset` (0..=3) samples at the 4·fs rate. Expected: 0.0 dBTP (+0.2/−0.4).
///
/// The EBU distributes these as files only and does not specify its low-pass filter. Here it
/// is a 255-tap Kaiser-windowed sinc (β = 10, cutoff fs/2, unit DC gain) at 4·fs. Checked
/// off-line against the files of the EBU loudness test set v05 (`seq-3341-20..23-24bit.wav`):
/// the nine samples around the burst agree to within 0.0015 (e.g. case 20: file 0.9851 /
/// −0.4513 / 0.1118 vs synthesised 0.9852 / −0.4502 / 0.1118; case 22: 0.7493 / 0.6526 vs
/// 0.7492 / 0.6528). The length is `seconds` with 10 ms raised-cosine fades; the burst sits in
/// the middle.
pub fn ebu_true_peak_burst(sample_rate: f64, offset: usize, seconds: f64) -> Vec<f32> {
    const HALF: isize = 127;
    const BETA: f64 = 10.0;
    let len = (seconds * sample_rate).round() as usize;
    // Burst start on the 4× grid, a multiple of 24 (one fs/6 period) and of 4.
    let centre = (4 * len / 2 / 24 * 24) as isize;
    let x4 = |n: isize| -> f64 {
        let t = (n - centre) as f64;
        if n < centre {
            0.5 * (2.0 * PI * t / 24.0).sin()
        } else if n < centre + 16 {
            (2.0 * PI * t / 16.0).sin()
        } else {
            0.5 * (2.0 * PI * (t - 16.0) / 24.0).sin()
        }
    };
    let i0 = |x: f64| {
        let (mut sum, mut term) = (1.0f64, 1.0f64);
        for k in 1..60 {
            term *= (x / 2.0) * (x / 2.0) / (k * k) as f64;
            sum += term;
        }
        sum
    };
    let mut h: Vec<f64> = (-HALF..=HALF)
        .map(|k| {
            let t = k as f64;
            let sinc = if k == 0 {
                0.25
            } else {
                (PI * t / 4.0).sin() / (PI * t)
            };
            let u = t / HALF as f64;
            sinc * i0(BETA * (1.0 - u * u).max(0.0).sqrt()) / i0(BETA)
        })
        .collect();
    let dc: f64 = h.iter().sum();
    h.iter_mut().for_each(|v| *v /= dc);
    // The 4× signal over every index the filter reaches: x4(n) at xs[n + HALF].
    let xs: Vec<f64> = (-HALF..(4 * len) as isize + HALF).map(x4).collect();
    let mut out: Vec<f32> = (0..len)
        .map(|m| {
            // y(n) = Σ_k h[k]·x4(n + HALF − k), n = 4m + offset.
            let window = &xs[4 * m + offset..4 * m + offset + h.len()];
            h.iter()
                .zip(window.iter().rev())
                .map(|(c, x)| c * x)
                .sum::<f64>() as f32
        })
        .collect();
    fade_in_out(&mut out, (0.01 * sample_rate).round() as usize);
    out
}

/// White noise in −1..1 (uniform).
pub fn white_noise(len: usize, seed: u64) -> Vec<f32> {
    let mut r = rng(seed);
    (0..len).map(|_| r.random_range(-1.0f32..1.0)).collect()
}

/// Pink-ish noise (−3 dB/octave from ≈ 10 Hz to ≈ 15 kHz at 48 kHz; Paul Kellet's "refined"
/// three-pole filter on white noise), scaled to an RMS of `rms_dbfs`.
pub fn pink_noise(len: usize, rms_dbfs: f64, seed: u64) -> Vec<f32> {
    let mut r = rng(seed);
    let mut b = [0.0f64; 3];
    let mut x: Vec<f64> = (0..len)
        .map(|_| {
            let w: f64 = r.random_range(-1.0..1.0);
            b[0] = 0.99765 * b[0] + w * 0.0990460;
            b[1] = 0.96300 * b[1] + w * 0.2965164;
            b[2] = 0.57000 * b[2] + w * 1.0526913;
            b[0] + b[1] + b[2] + w * 0.1848
        })
        .collect();
    let rms = (x.iter().map(|v| v * v).sum::<f64>() / len.max(1) as f64).sqrt();
    let g = db_to_amp(rms_dbfs) / rms.max(1e-30);
    x.iter_mut().for_each(|v| *v *= g);
    x.into_iter().map(|v| v as f32).collect()
}

/// Shape of a [`programme_with`] signal.
#[derive(Debug, Clone, Copy)]
pub struct ProgrammeStyle {
    /// Section length range, seconds.
    pub section_s: (f64, f64),
    /// Section level range, dB relative to the base signal (pink-ish noise at −24 dBFS RMS).
    pub level_db: (f64, f64),
    /// Probability that a section is silent.
    pub silence: f64,
    /// Gain of the 1 ms transients repeated every 0.5 s.
    pub transient_gain: f64,
}

impl ProgrammeStyle {
    /// Music-like: 2–6 s sections within a 10 dB range, rare silences, +6 dB transients
    /// (measured: integrated ≈ −23 LUFS, LRA 8–13 LU, true peak ≈ −6 to −8 dBTP).
    pub const MUSIC: Self = Self {
        section_s: (2.0, 6.0),
        level_db: (-10.0, 0.0),
        silence: 0.03,
        transient_gain: 2.0,
    };
    /// Film-like, wide loudness range: 0.5–4 s sections within a 36 dB range, 10 % silences,
    /// +12 dB transients (measured: integrated ≈ −21 LUFS, LRA 19–20 LU, true peak up to
    /// ≈ +4 dBTP).
    pub const WIDE: Self = Self {
        section_s: (0.5, 4.0),
        level_db: (-32.0, 4.0),
        silence: 0.1,
        transient_gain: 4.0,
    };
}

/// A music-like programme: [`programme_with`] in [`ProgrammeStyle::MUSIC`].
pub fn programme(sample_rate: f64, seconds: f64, seed: u64) -> [Vec<f32>; 2] {
    programme_with(sample_rate, seconds, seed, ProgrammeStyle::MUSIC)
}

/// A programme-like stereo signal: pink-ish noise through a state-variable filter with a
/// random centre per section, plus a tone in half of the sections, in sections whose length,
/// level and silences follow `style`, with short transients every 0.5 s; the channels are
/// partly correlated (a common part plus independent parts, random width and balance per
/// section).
pub fn programme_with(
    sample_rate: f64,
    seconds: f64,
    seed: u64,
    style: ProgrammeStyle,
) -> [Vec<f32>; 2] {
    let len = (seconds * sample_rate).round() as usize;
    let mut r = rng(seed);
    let common = pink_noise(len, -24.0, seed ^ 0x5a5a);
    let side = [
        pink_noise(len, -24.0, seed ^ 0x1111),
        pink_noise(len, -24.0, seed ^ 0x2222),
    ];
    let mut out = [vec![0.0f32; len], vec![0.0f32; len]];
    let mut pos = 0;
    // Chamberlin state-variable filter per channel: [low-pass, band-pass].
    let mut svf = [[0.0f64; 2]; 2];
    let half_second = (sample_rate / 2.0) as usize;
    let transient_len = (sample_rate / 1000.0) as usize;
    while pos < len {
        let sec = ((r.random_range(style.section_s.0..style.section_s.1) * sample_rate) as usize)
            .clamp(1, len - pos);
        let silent = r.random_range(0.0..1.0) < style.silence;
        let level = db_to_amp(r.random_range(style.level_db.0..style.level_db.1));
        let width: f64 = r.random_range(0.0..1.0);
        let balance: f64 = r.random_range(-0.3..0.3);
        let tone_hz: f64 = r.random_range(60.0..5000.0);
        let tone_amp = if r.random_range(0.0..1.0) < 0.5 {
            0.05
        } else {
            0.0
        };
        let f0: f64 = r.random_range(200.0..6000.0);
        let q = 2.0 * (PI * f0 / sample_rate).sin();
        // Tone as a rotating phasor (renormalised per section; sections are short).
        let (step_c, step_s) = (
            (2.0 * PI * tone_hz / sample_rate).cos(),
            (2.0 * PI * tone_hz / sample_rate).sin(),
        );
        let mut phasor = (1.0f64, 0.0f64);
        if !silent {
            for n in pos..pos + sec {
                let tone = tone_amp * phasor.1;
                phasor = (
                    phasor.0 * step_c - phasor.1 * step_s,
                    phasor.1 * step_c + phasor.0 * step_s,
                );
                let transient = if n % half_second < transient_len {
                    style.transient_gain
                } else {
                    1.0
                };
                for c in 0..2 {
                    let x = (1.0 - width) * common[n] as f64 + width * side[c][n] as f64;
                    let [lp, bp] = &mut svf[c];
                    *lp += q * *bp;
                    let hp = x - *lp - 0.7 * *bp;
                    *bp += q * hp;
                    let y = x + 0.5 * *bp + tone;
                    let pan = if c == 0 { 1.0 - balance } else { 1.0 + balance };
                    out[c][n] = (y * level * transient * pan) as f32;
                }
            }
        }
        pos += sec;
    }
    out
}

/// Splits `0..len` into consecutive blocks of random length 1..=`max_block` and calls `f` with
/// each range.
pub fn random_blocks(
    len: usize,
    max_block: usize,
    seed: u64,
    mut f: impl FnMut(std::ops::Range<usize>),
) {
    let mut r = rng(seed);
    let mut pos = 0;
    while pos < len {
        let n = r.random_range(1..=max_block).min(len - pos);
        f(pos..pos + n);
        pos += n;
    }
}

/// Like [`random_blocks`], but every block also ends at the multiples of `boundary` (so a
/// reading after a block can be taken exactly at those times).
pub fn random_blocks_with_boundaries(
    len: usize,
    max_block: usize,
    boundary: usize,
    seed: u64,
    mut f: impl FnMut(std::ops::Range<usize>),
) {
    let mut r = rng(seed);
    let mut pos = 0;
    while pos < len {
        let next_boundary = (pos / boundary + 1) * boundary;
        let n = r
            .random_range(1..=max_block)
            .min(len - pos)
            .min(next_boundary - pos);
        f(pos..pos + n);
        pos += n;
    }
}
