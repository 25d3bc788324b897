//! 4× oversampling for non-linear processing (the saturation), built from linear-phase FIR
//! stages so that the round trip is a pure, exact, integer delay of [`LATENCY`] base-rate
//! samples, whatever the sample rate. The engine aligns its dry paths with that number.
//!
//! ```text
//! x (fs) ─► up 1: half-band, 79 taps ─► up 2: half-band, 23 taps ─► f(·) at 4·fs
//!        ◄─ down 1: low-pass, 165 taps ◄─ down 2: half-band, 23 taps ◄─┘
//! ```
//!
//! All four filters are Kaiser-windowed sincs (β = 7.86 for stage 1, 8.5 for stage 2):
//!
//! ```text
//! h[i] = 2·fc·sinc(2·fc·(i − c)) · I0(β·√(1 − ((i − c)/(c + 1))²)) / I0(β),   c = (N − 1)/2
//! ```
//!
//! with `fc` the cut-off as a fraction of the filter's own rate, normalised to unit DC gain.
//!
//! * Half-bands (`fc = 1/4`, `N = 4K − 1`) have every other tap zero except the centre (exactly
//!   ½), so the interpolating branch costs `2K` multiplies and the other branch is a pure delay.
//!   Stage 1 up (K = 20) is flat within ±0.001 dB to 0.4375·fs (21 kHz at 48 kHz) and rejects
//!   the images of that band (≥ 0.5625·fs) by ≥ 79 dB. Stage 2 (K = 6, at 2·fs ↔ 4·fs) is flat
//!   within ±0.001 dB to 0.5·fs and rejects ≥ 1.5·fs by ≥ 83 dB, which is everything that could
//!   fold back into the band stage 1 keeps.
//! * The last decimator cannot be a half-band: a half-band is only −6 dB at the base Nyquist,
//!   so a harmonic just above it (a 5 kHz tone's 5th harmonic at 25 kHz, at 48 kHz) would
//!   alias almost unattenuated. It is a full low-pass (N = 165, fc = 0.46875·fs) with a
//!   pass band flat within ±0.001 dB to 0.4375·fs (21 kHz at 48 kHz) and ≥ 79.8 dB attenuation
//!   from the base Nyquist up: anything generated above fs/2 folds back ≥ 80 dB down.
//!
//! Latency: group delays are 39 (stage 1 up, at 2·fs), 11 + 11 (stage 2, at 4·fs = 11 at
//! 2·fs) and 82 (stage 1 down, at 2·fs): 132 samples at 2·fs = 66 base samples. The decimators
//! keep the phase that makes this exact (checked by a test: the impulse response is symmetric
//! about sample 66).
//!
//! Cost per base sample and channel: 40 + 2·12 + 2·12 + 165 = 253 multiply-adds plus four
//! calls of the non-linearity. The filters run on blocks of up to [`MAX_BLOCK`] base samples
//! in "outer product" form (see `fir`), which the compiler vectorises with baseline SSE2;
//! measured ≈ 30–35 ns per base sample and channel. Allocation-free after `new`.

/// Oversampling factor.
pub const FACTOR: usize = 4;

/// Round-trip delay in base-rate samples (exact, integer, independent of the sample rate).
pub const LATENCY: usize = 66;

/// Kaiser window β of stage 1, up and down (≈ 80 dB stop band).
const STAGE1_BETA: f64 = 7.86;
/// Kaiser window β of stage 2 (≈ 84 dB stop band: its transition band folds back onto the
/// edge of stage 1's pass band, so it gets a little more).
const STAGE2_BETA: f64 = 8.5;

/// Stage 1 half-band: `K`, so `N = 4K − 1 = 79` taps, `2K = 40` non-zero side taps.
const UP1_K: usize = 20;
/// Non-zero side taps of stage 1 up.
const UP1_SIDE: usize = 2 * UP1_K;
/// Stage 2 half-band: `K`, so `N = 23` taps, 12 non-zero side taps.
const HB2_K: usize = 6;
/// Non-zero side taps of stage 2.
const HB2_SIDE: usize = 2 * HB2_K;
/// Length of the stage 1 decimating low-pass (`≡ 1 mod 4`, so its group delay, 82, is even
/// and the total delay lands on a base-rate sample).
const DOWN1_TAPS: usize = 165;
/// Taps of its even polyphase branch (`h[0], h[2], …, h[164]`).
const DOWN1_EVEN: usize = DOWN1_TAPS.div_ceil(2);
/// Taps of its odd polyphase branch (`h[1], h[3], …, h[163]`).
const DOWN1_ODD: usize = DOWN1_TAPS / 2;
/// Cut-off of the stage 1 decimator as a fraction of 2·fs (22.5 kHz at 96 kHz).
const DOWN1_FC: f64 = 0.234_375;

/// Base-rate frames processed per internal chunk (sizes the scratch buffers).
pub const MAX_BLOCK: usize = 64;

/// Block FIR in "outer product" form: `y[k] = Σ_j c[j]·x[k + j]` for `k < y.len()`, with
/// `x.len() ≥ y.len() + c.len() − 1`. Tiles of up to 64 outputs are accumulated tap by tap
/// (`acc[k] += c[j]·x[k + j]`), an element-wise loop the compiler vectorises reliably at any
/// optimisation level (a dot product per output would need a horizontal reduction, which it
/// does not vectorise without fast-math). Every output sums its taps in the same order, so
/// the result does not depend on how a signal is cut into blocks.
#[inline]
fn fir(c: &[f32], x: &[f32], y: &mut [f32]) {
    const TILE: usize = 64;
    for (tile, yk) in y.chunks_mut(TILE).enumerate() {
        let base = tile * TILE;
        let n = yk.len();
        let mut acc = [0.0f32; TILE];
        let acc = &mut acc[..n];
        for (j, &cj) in c.iter().enumerate() {
            for (a, &v) in acc.iter_mut().zip(&x[base + j..base + j + n]) {
                *a += cj * v;
            }
        }
        yk.copy_from_slice(acc);
    }
}

/// A filter input line: `hist` samples of history followed by room for a block.
#[derive(Clone)]
struct Line {
    /// `[history | block]`.
    buf: Box<[f32]>,
    /// History length (taps − 1 of the filter reading it).
    hist: usize,
}

impl Line {
    fn new(hist: usize, max_block: usize) -> Self {
        Self {
            buf: vec![0.0; hist + max_block].into_boxed_slice(),
            hist,
        }
    }

    fn reset(&mut self) {
        self.buf.fill(0.0);
    }

    /// Room for the next block, after the history.
    #[inline]
    fn block_mut(&mut self, len: usize) -> &mut [f32] {
        &mut self.buf[self.hist..self.hist + len]
    }

    /// History plus the block of `len` samples.
    #[inline]
    fn window(&self, len: usize) -> &[f32] {
        &self.buf[..self.hist + len]
    }

    /// After a block of `len`: its last `hist` samples become the history.
    #[inline]
    fn advance(&mut self, len: usize) {
        self.buf.copy_within(len..len + self.hist, 0);
    }
}

/// Kaiser-windowed sinc low-pass of `n` taps, cut-off `fc` (fraction of its sample rate),
/// normalised to unit DC gain (`f64`, design time only).
fn kaiser_lowpass(n: usize, fc: f64, beta: f64) -> Vec<f64> {
    let c = (n - 1) as f64 / 2.0;
    let mut h: Vec<f64> = (0..n)
        .map(|i| {
            let m = i as f64 - c;
            let u = m / (c + 1.0);
            2.0 * fc * sinc(2.0 * fc * m) * bessel_i0(beta * (1.0 - u * u).sqrt()) / bessel_i0(beta)
        })
        .collect();
    let sum: f64 = h.iter().sum();
    h.iter_mut().for_each(|v| *v /= sum);
    h
}

/// The `2K` non-zero side taps `h[0], h[2], …, h[4K − 2]` of a half-band of `4K − 1` taps,
/// scaled so that they sum to exactly ½ (the centre tap being ½, the DC gain is 1 and each
/// polyphase branch of the interpolator has unit DC gain).
fn halfband_side_taps(k: usize, beta: f64) -> Vec<f64> {
    let h = kaiser_lowpass(4 * k - 1, 0.25, beta);
    let side: Vec<f64> = h.iter().step_by(2).copied().collect();
    let sum: f64 = side.iter().sum();
    side.iter().map(|v| v * 0.5 / sum).collect()
}

fn sinc(t: f64) -> f64 {
    if t.abs() < 1e-12 {
        1.0
    } else {
        let x = std::f64::consts::PI * t;
        x.sin() / x
    }
}

/// Modified Bessel function of the first kind, order 0 (power series).
fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let q = x * x / 4.0;
    for k in 1..100 {
        term *= q / (k * k) as f64;
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

/// The taps of a FIR reversed (so that `fir` with an oldest-first window computes
/// `Σ_j taps[j]·x[m − j]`), scaled and converted to `f32`.
fn reversed(taps: &[f64], scale: f64) -> Box<[f32]> {
    taps.iter().rev().map(|&t| (t * scale) as f32).collect()
}

/// One channel of 4× oversampling (see the module documentation for the filters), processing
/// blocks of base-rate samples.
///
/// Per base sample `x[m]` (polyphase forms of the filters of the module documentation):
///
/// ```text
/// stage 1 up:   v[2m] = 2·Σ_{j<40} h1[2j]·x[m − j],     v[2m + 1] = x[m − 19]
/// stage 2 up:   w[2k] = 2·Σ_{j<12} h2[2j]·v[k − j],     w[2k + 1] = v[k − 5]
/// f:            s = f(w)                                 (at 4·fs)
/// stage 2 down: u[k] = Σ_{j<12} h2[2j]·s[2k − 2j] + ½·s[2k − 11]
/// stage 1 down: y[m] = Σ_{j<83} hd[2j]·u[2m − 2j] + Σ_{j<82} hd[2j + 1]·u[2m − 2j − 1]
/// ```
#[derive(Clone)]
pub struct Oversampler4x {
    /// Stage 1 up, `2·h1[2j]` reversed (40 taps).
    up1_coeffs: Box<[f32]>,
    /// Stage 2 up, `2·h2[2j]` reversed (12 taps).
    up2_coeffs: Box<[f32]>,
    /// Stage 2 down, `h2[2j]` reversed (12 taps).
    down2_coeffs: Box<[f32]>,
    /// Stage 1 down, even branch `hd[2j]` reversed (83 taps).
    down1_even_coeffs: Box<[f32]>,
    /// Stage 1 down, odd branch `hd[2j + 1]` reversed (82 taps).
    down1_odd_coeffs: Box<[f32]>,
    /// Input of stage 1 up (base rate).
    up1_in: Line,
    /// Input of stage 2 up (2·fs).
    up2_in: Line,
    /// Even samples `s[2k]` of the 4·fs signal, input of stage 2 down.
    down2_even: Line,
    /// Odd samples `s[2k + 1]`: only the centre tap reads them.
    down2_odd: Line,
    /// Even samples `u[2m]` of the 2·fs signal, input of stage 1 down.
    down1_even: Line,
    /// Odd samples `u[2m + 1]`.
    down1_odd: Line,
    /// Scratch at 2·fs (stage 1 up output, stage 2 down output).
    rate2: Box<[f32]>,
    /// Scratch at 4·fs (the signal `f` works on).
    rate4: Box<[f32]>,
    /// Scratch for interpolated phases and branch sums.
    scratch: Box<[f32]>,
}

impl Oversampler4x {
    /// Designs the filters and allocates the buffers (not real-time safe).
    pub fn new() -> Self {
        let hd = kaiser_lowpass(DOWN1_TAPS, DOWN1_FC, STAGE1_BETA);
        let hd_even: Vec<f64> = hd.iter().step_by(2).copied().collect();
        let hd_odd: Vec<f64> = hd.iter().skip(1).step_by(2).copied().collect();
        debug_assert_eq!((hd_even.len(), hd_odd.len()), (DOWN1_EVEN, DOWN1_ODD));
        let h1 = halfband_side_taps(UP1_K, STAGE1_BETA);
        let h2 = halfband_side_taps(HB2_K, STAGE2_BETA);
        Self {
            up1_coeffs: reversed(&h1, 2.0),
            up2_coeffs: reversed(&h2, 2.0),
            down2_coeffs: reversed(&h2, 1.0),
            down1_even_coeffs: reversed(&hd_even, 1.0),
            down1_odd_coeffs: reversed(&hd_odd, 1.0),
            up1_in: Line::new(UP1_SIDE - 1, MAX_BLOCK),
            up2_in: Line::new(HB2_SIDE - 1, 2 * MAX_BLOCK),
            down2_even: Line::new(HB2_SIDE - 1, 2 * MAX_BLOCK),
            down2_odd: Line::new(HB2_K, 2 * MAX_BLOCK),
            down1_even: Line::new(DOWN1_EVEN - 1, MAX_BLOCK),
            down1_odd: Line::new(DOWN1_ODD, MAX_BLOCK),
            rate2: vec![0.0; 2 * MAX_BLOCK].into_boxed_slice(),
            rate4: vec![0.0; 4 * MAX_BLOCK].into_boxed_slice(),
            scratch: vec![0.0; 2 * MAX_BLOCK].into_boxed_slice(),
        }
    }

    /// Clears every delay line.
    pub fn reset(&mut self) {
        for line in [
            &mut self.up1_in,
            &mut self.up2_in,
            &mut self.down2_even,
            &mut self.down2_odd,
            &mut self.down1_even,
            &mut self.down1_odd,
        ] {
            line.reset();
        }
    }

    /// Round-trip delay in base-rate samples ([`LATENCY`]).
    pub fn latency_samples(&self) -> usize {
        LATENCY
    }

    /// Upsamples `input` 4×, lets `f` work on the oversampled signal and decimates the result
    /// into `output` (same length as `input`; extra samples of the longer one are ignored):
    /// `output = ↓4(f(↑4 input))`, delayed by [`LATENCY`].
    ///
    /// `f(offset, oversampled)` is called once per chunk of at most [`MAX_BLOCK`] base
    /// samples: `oversampled[4i..4i + 4]` (in time order) belong to `input[offset + i]`.
    pub fn process(
        &mut self,
        input: &[f32],
        output: &mut [f32],
        mut f: impl FnMut(usize, &mut [f32]),
    ) {
        let n = input.len().min(output.len());
        let mut offset = 0;
        while offset < n {
            let len = (n - offset).min(MAX_BLOCK);
            self.process_chunk(
                &input[offset..offset + len],
                &mut output[offset..offset + len],
                offset,
                &mut f,
            );
            offset += len;
        }
    }

    fn process_chunk(
        &mut self,
        input: &[f32],
        output: &mut [f32],
        offset: usize,
        f: &mut impl FnMut(usize, &mut [f32]),
    ) {
        let len = input.len();
        let (len2, len4) = (2 * len, 4 * len);

        // Stage 1 up: fs → 2·fs.
        self.up1_in.block_mut(len).copy_from_slice(input);
        let interp = &mut self.scratch[..len];
        fir(&self.up1_coeffs, self.up1_in.window(len), interp);
        let centre = &self.up1_in.buf[UP1_K..UP1_K + len]; // x[m − (K − 1)]
        for ((pair, &a), &b) in self.rate2[..len2]
            .chunks_exact_mut(2)
            .zip(&*interp)
            .zip(centre)
        {
            pair[0] = a;
            pair[1] = b;
        }
        self.up1_in.advance(len);

        // Stage 2 up: 2·fs → 4·fs.
        self.up2_in
            .block_mut(len2)
            .copy_from_slice(&self.rate2[..len2]);
        let interp = &mut self.scratch[..len2];
        fir(&self.up2_coeffs, self.up2_in.window(len2), interp);
        let centre = &self.up2_in.buf[HB2_K..HB2_K + len2];
        for ((pair, &a), &b) in self.rate4[..len4]
            .chunks_exact_mut(2)
            .zip(&*interp)
            .zip(centre)
        {
            pair[0] = a;
            pair[1] = b;
        }
        self.up2_in.advance(len2);

        f(offset, &mut self.rate4[..len4]);

        // Stage 2 down: 4·fs → 2·fs.
        {
            let even = self.down2_even.block_mut(len2);
            for (e, pair) in even.iter_mut().zip(self.rate4[..len4].chunks_exact(2)) {
                *e = pair[0];
            }
            let odd = self.down2_odd.block_mut(len2);
            for (o, pair) in odd.iter_mut().zip(self.rate4[..len4].chunks_exact(2)) {
                *o = pair[1];
            }
        }
        let sums = &mut self.rate2[..len2];
        fir(&self.down2_coeffs, self.down2_even.window(len2), sums);
        for (u, &o) in sums.iter_mut().zip(&self.down2_odd.buf[..len2]) {
            *u += 0.5 * o; // s[2k − 2K + 1] = odd[k − K]
        }
        self.down2_even.advance(len2);
        self.down2_odd.advance(len2);

        // Stage 1 down: 2·fs → fs.
        {
            let even = self.down1_even.block_mut(len);
            for (e, pair) in even.iter_mut().zip(self.rate2[..len2].chunks_exact(2)) {
                *e = pair[0];
            }
            let odd = self.down1_odd.block_mut(len);
            for (o, pair) in odd.iter_mut().zip(self.rate2[..len2].chunks_exact(2)) {
                *o = pair[1];
            }
        }
        fir(&self.down1_even_coeffs, self.down1_even.window(len), output);
        // The odd branch reads u[2m − 1] … u[2m − 163]: the odd samples before this pair.
        let odd_sums = &mut self.scratch[..len];
        fir(
            &self.down1_odd_coeffs,
            &self.down1_odd.buf[..DOWN1_ODD - 1 + len],
            odd_sums,
        );
        for (y, &o) in output.iter_mut().zip(&*odd_sums) {
            *y += o;
        }
        self.down1_even.advance(len);
        self.down1_odd.advance(len);
    }
}

impl Default for Oversampler4x {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    /// Runs `input` through the linear round trip (identity at 4·fs) in blocks of `block`.
    fn round_trip(input: &[f32], block: usize) -> Vec<f32> {
        let mut os = Oversampler4x::new();
        let mut out = vec![0.0; input.len()];
        for (i, o) in input.chunks(block).zip(out.chunks_mut(block)) {
            os.process(i, o, |_, _| {});
        }
        out
    }

    fn impulse_response(len: usize) -> Vec<f32> {
        let mut x = vec![0.0; len];
        x[0] = 1.0;
        round_trip(&x, 64)
    }

    /// Magnitude response in dB of a real impulse response at `freq` (fraction of fs).
    fn response_db(h: &[f32], freq: f64) -> f64 {
        let (mut re, mut im) = (0.0f64, 0.0f64);
        for (n, &v) in h.iter().enumerate() {
            let p = 2.0 * PI * freq * n as f64;
            re += v as f64 * p.cos();
            im += v as f64 * p.sin();
        }
        10.0 * (re * re + im * im).log10()
    }

    /// Amplitude of the component at `freq` (cycles per sample) of `x` (single-bin DFT).
    fn tone_amplitude(x: &[f32], freq: f64) -> f64 {
        let (mut re, mut im) = (0.0f64, 0.0f64);
        for (n, &v) in x.iter().enumerate() {
            let p = 2.0 * PI * freq * n as f64;
            re += v as f64 * p.cos();
            im += v as f64 * p.sin();
        }
        2.0 * (re * re + im * im).sqrt() / x.len() as f64
    }

    #[test]
    fn impulse_is_symmetric_about_the_latency() {
        let h = impulse_response(4 * LATENCY);
        let peak = (0..h.len())
            .max_by(|&a, &b| h[a].abs().total_cmp(&h[b].abs()))
            .unwrap();
        assert_eq!(peak, LATENCY);
        for k in 1..=LATENCY {
            assert!(
                (h[LATENCY - k] - h[LATENCY + k]).abs() < 1e-6,
                "asymmetric at ±{k}: {} vs {}",
                h[LATENCY - k],
                h[LATENCY + k]
            );
        }
        // Linear phase and finite: nothing beyond twice the latency.
        assert!(h[2 * LATENCY + 1..].iter().all(|v| v.abs() < 1e-7));
        assert!((h.iter().sum::<f32>() - 1.0).abs() < 1e-4, "DC gain");
    }

    #[test]
    fn pass_band_is_flat_and_nyquist_band_rejected() {
        let h = impulse_response(4 * LATENCY);
        let mut f = 0.0;
        while f <= 0.4375 {
            let db = response_db(&h, f);
            assert!(db.abs() < 0.005, "ripple {db} dB at {f}·fs");
            f += 0.005;
        }
        assert!(response_db(&h, 0.5) < -70.0);
    }

    #[test]
    fn decimator_rejects_everything_above_base_nyquist() {
        // Tones made at 4·fs anywhere in fs/2 .. 2·fs must come out ≥ 79 dB down at fs.
        let mut worst = f64::NEG_INFINITY;
        for i in 0..=60 {
            let f = 0.5 + 1.499 * i as f64 / 60.0; // in units of fs
            let mut os = Oversampler4x::new();
            let input = vec![0.0f32; 600];
            let mut out = vec![0.0f32; 600];
            os.process(&input, &mut out, |offset, v| {
                for (q, s) in v.iter_mut().enumerate() {
                    let t = (4 * offset + q) as f64 / 4.0;
                    *s = (2.0 * PI * f * t).sin() as f32;
                }
            });
            // Whatever folds back lands somewhere; take the largest sample once settled.
            let peak = out[200..].iter().fold(0.0f32, |m, v| m.max(v.abs()));
            worst = worst.max(20.0 * (peak as f64).log10());
        }
        assert!(worst < -79.0, "worst leakage {worst:.1} dB");
    }

    #[test]
    fn interpolator_images_are_rejected() {
        // A tone in the pass band must not leave images at fs ± f, 2·fs ± f … (4·fs domain).
        for f in [0.1f64, 0.3, 0.4375] {
            let mut os = Oversampler4x::new();
            let w = 2.0 * PI * f;
            let x: Vec<f32> = (0..2400).map(|m| (w * m as f64).sin() as f32).collect();
            let mut v = Vec::with_capacity(4 * x.len());
            os.process(&x, &mut vec![0.0; x.len()], |_, s| v.extend_from_slice(s));
            let v = &v[4 * 400..];
            let fundamental = tone_amplitude(v, f / 4.0);
            assert!((fundamental - 1.0).abs() < 1e-3, "gain {fundamental}");
            for image in [1.0 - f, 1.0 + f, 2.0 - f] {
                let a = 20.0 * tone_amplitude(v, image / 4.0).log10();
                assert!(a < -78.0, "image of {f}·fs at {image}·fs: {a:.1} dB");
            }
        }
    }

    #[test]
    fn sine_comes_back_delayed_by_the_latency() {
        let w = 2.0 * std::f32::consts::PI * 3000.0 / 48_000.0;
        let x: Vec<f32> = (0..2000).map(|n| 0.5 * (w * n as f32).sin()).collect();
        let y = round_trip(&x, 64);
        let err = (500..2000)
            .map(|n| (y[n] - x[n - LATENCY]).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 1e-3 * 0.5, "error {err}");
    }

    #[test]
    fn block_size_does_not_change_the_output() {
        let x: Vec<f32> = (0..1500).map(|n| ((n * n) as f32 * 1e-4).sin()).collect();
        let reference = round_trip(&x, 1);
        for block in [7, 16, 64, 100, 1500] {
            assert_eq!(round_trip(&x, block), reference, "block {block}");
        }
    }

    #[test]
    fn reset_clears_state() {
        let mut os = Oversampler4x::new();
        let mut out = vec![0.0; 300];
        os.process(&[1.0; 100], &mut out, |_, _| {});
        os.reset();
        os.process(&[0.0; 300], &mut out, |_, _| {});
        assert!(out.iter().all(|&v| v == 0.0));
    }
}
