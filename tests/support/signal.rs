//! Test signals and their measurement: sines on exact analysis bins, a Goertzel level meter,
//! a small deterministic random generator and random block-size plans.

use std::f64::consts::TAU;

/// Length of the analysis window in seconds. Every test tone is a multiple of
/// `1 / ANALYSIS_SECONDS` = 10 Hz, so it sits exactly on a bin of a window of this length at
/// 44.1, 48, 96 and 192 kHz and a rectangular window measures it without leakage.
pub const ANALYSIS_SECONDS: f64 = 0.1;

/// Bin spacing of the analysis window in Hz (`1 / ANALYSIS_SECONDS`).
pub const BIN_HZ: f64 = 10.0;

/// Tone frequencies in Hz for each stem (index 0 = "Stem 1") and channel (0 = left, 1 = right).
/// Prime multiples of 10 Hz between 230 Hz and 6.1 kHz: no tone is a harmonic of another, so
/// a mild nonlinearity cannot fake a missing tone.
pub const STEM_TONE_HZ: [[f64; 2]; 8] = [
    [230.0, 290.0],
    [470.0, 530.0],
    [970.0, 1010.0],
    [1970.0, 2110.0],
    [3070.0, 3110.0],
    [4010.0, 4090.0],
    [5030.0, 5090.0],
    [6010.0, 6070.0],
];

/// Tone on the main (non-stem) input, both channels; the default main-input role ignores it.
pub const MAIN_TONE_HZ: f64 = 1310.0;

/// Tone in buffers placed just past the ports a host hands over, to catch a plugin reading
/// more ports than it was given.
pub const POISON_TONE_HZ: f64 = 1130.0;

/// Peak amplitude of every stem tone: 16 tones per stereo pair, 8 per channel, sum at most
/// 8 × 0.05 = 0.4 (−8 dBFS), so the −1 dBTP limiter stays idle.
pub const STEM_TONE_AMPLITUDE: f32 = 0.05;

/// Linear amplitude to dB (`20·log10(a)`), with −400 dB for zero.
pub fn gain_to_db(amplitude: f64) -> f64 {
    if amplitude > 0.0 {
        20.0 * amplitude.log10()
    } else {
        -400.0
    }
}

/// `len` samples of `amplitude · sin(2π·freq_hz·n/sample_rate)`, computed in f64.
pub fn sine(freq_hz: f64, sample_rate: f64, len: usize, amplitude: f32) -> Vec<f32> {
    let w = TAU * freq_hz / sample_rate;
    (0..len)
        .map(|n| (f64::from(amplitude) * (w * n as f64).sin()) as f32)
        .collect()
}

/// Adds `b` into `a` sample by sample (`a` and `b` of equal length).
pub fn mix_into(a: &mut [f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter_mut().zip(b) {
        *x += *y;
    }
}

/// Peak amplitude of the sinusoid at `freq_hz` in `signal` (Goertzel algorithm, rectangular
/// window). With `s[n] = x[n] + 2cos(ω)·s[n−1] − s[n−2]`, the DFT term at ω is
/// `|X|² = s[N−1]² + s[N−2]² − 2cos(ω)·s[N−1]·s[N−2]`, and a sine of amplitude A on an exact
/// bin gives `|X| = A·N/2`, so the amplitude is `2|X|/N`. (Goertzel, "An algorithm for the
/// evaluation of finite trigonometric series", 1958.)
pub fn tone_amplitude(signal: &[f32], freq_hz: f64, sample_rate: f64) -> f64 {
    if signal.is_empty() {
        return 0.0;
    }
    let coeff = 2.0 * (TAU * freq_hz / sample_rate).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in signal {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0);
    2.0 * power.sqrt() / signal.len() as f64
}

/// Level in dBFS (re. a full-scale sine's peak) of the tone at `freq_hz` in `signal`.
pub fn tone_db(signal: &[f32], freq_hz: f64, sample_rate: f64) -> f64 {
    gain_to_db(tone_amplitude(signal, freq_hz, sample_rate))
}

/// Largest absolute sample value, or `f32::NAN`/`INFINITY` if any sample is not finite.
pub fn peak(signal: &[f32]) -> f32 {
    let mut max = 0.0f32;
    for &x in signal {
        if !x.is_finite() {
            return x.abs();
        }
        max = max.max(x.abs());
    }
    max
}

/// Index of the first non-finite sample, if any.
pub fn first_non_finite(signal: &[f32]) -> Option<usize> {
    signal.iter().position(|x| !x.is_finite())
}

/// Number of samples in the analysis window at `sample_rate` (exact for the supported rates).
pub fn analysis_len(sample_rate: f64) -> usize {
    (sample_rate * ANALYSIS_SECONDS).round() as usize
}

/// xorshift64* generator (Vigna, "An experimental exploration of Marsaglia's xorshift
/// generators, scrambled", 2016): deterministic, seedable, no dependency.
#[derive(Debug, Clone)]
pub struct Rng {
    /// Current state, never zero.
    state: u64,
}

impl Rng {
    /// A generator from `seed` (any value; zero is replaced).
    pub fn new(seed: u64) -> Self {
        Self {
            state: seed.max(1) ^ 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform integer in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        assert!(lo <= hi);
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
}

/// Block sizes in `1..=max_block` that add up to `total`: a third tiny (1–16), a third medium
/// (17–512), a third large (513–`max_block`), in random order, so odd sizes, sizes around the
/// engine's internal chunk, and the host maximum all occur.
pub fn random_block_sizes(rng: &mut Rng, total: usize, max_block: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut left = total;
    while left > 0 {
        let size = match rng.range(0, 2) {
            0 => rng.range(1, 16),
            1 => rng.range(17, 512),
            _ => rng.range(513, max_block.max(513)),
        }
        .min(max_block)
        .min(left);
        sizes.push(size);
        left -= size;
    }
    sizes
}

/// Block sizes of `block` frames (the last one shorter) adding up to `total`.
pub fn fixed_block_sizes(total: usize, block: usize) -> Vec<usize> {
    let mut sizes = vec![block; total / block];
    if !total.is_multiple_of(block) {
        sizes.push(total % block);
    }
    sizes
}

/// The stereo stem inputs of the standard tone test: stem `s` carries
/// `STEM_TONE_HZ[s]` (left, right) at `STEM_TONE_AMPLITUDE`.
pub fn stem_tones(sample_rate: f64, len: usize) -> Vec<[Vec<f32>; 2]> {
    STEM_TONE_HZ
        .iter()
        .map(|[l, r]| {
            [
                sine(*l, sample_rate, len, STEM_TONE_AMPLITUDE),
                sine(*r, sample_rate, len, STEM_TONE_AMPLITUDE),
            ]
        })
        .collect()
}
