//! Loudness per ITU-R BS.1770-4 in EBU Mode (EBU Tech 3341) and Loudness Range (EBU Tech 3342),
//! for one stereo signal, on the audio thread without allocation.
//!
//! # Measure
//! Each channel is K-weighted (a high-shelf "pre-filter" followed by the RLB high-pass, see
//! [`KWeighting`]); the loudness of an interval is
//!
//! ```text
//! L = −0.691 + 10·log10( Σ_c G_c · z_c )  LUFS,  z_c = mean square of channel c over the interval
//! ```
//!
//! with the channel weights `G_L = G_R = 1` (BS.1770-4 eq. 2). Silence gives `−∞` (returned as
//! `f64::NEG_INFINITY`; the meters publish it as `f32::NEG_INFINITY`, which a display shows as
//! "no value").
//!
//! # Time structure: 5 ms ticks
//! Squares are accumulated per *tick* of 5 ms (tick `k` spans samples
//! `⌊k·fs/200⌋ .. ⌊(k+1)·fs/200⌋`, so any run of `N` ticks is `N·5 ms` to within one sample and
//! exactly so for even `N` at 44.1 kHz). Every tick the windows are formed from a ring of tick
//! energies by additions of stored values only (`TickRing`: no running sums that are added
//! to and subtracted from, so no drift):
//!
//! - momentary: last 80 ticks = 400 ms (Tech 3341 §2.2, sliding rectangular window);
//! - short-term: last 600 ticks = 3 s;
//! - max momentary / max short-term: maxima of those values at every tick since the last
//!   programme reset (windows reaching back before the reset count that audio as silence).
//!   A 5 ms update keeps the maxima of short tone bursts (Tech 3341 cases 10, 11, 13, 14)
//!   within 0.06 dB of the exact sliding maximum for any alignment;
//! - integrated (Tech 3341 §2.3, BS.1770-4 §2.8): a gating block (400 ms, the momentary window)
//!   every 20 ticks = 100 ms (75 % overlap) counted from the programme reset, absolute gate
//!   `−70 LUFS`, relative gate `−10 LU` below the loudness of the absolute-gated blocks;
//! - loudness range (Tech 3342): a short-term value every 100 ms (10 Hz) once 3 s have passed
//!   since the reset, absolute gate `−70 LUFS`, relative gate `−20 LU` below the power mean of
//!   the absolute-gated values, `LRA = P95 − P10` of the remaining values, percentiles taken as
//!   in the Tech 3342 MATLAB code (`sorted(round((n − 1)·p) + 1)`).
//!
//! # Histograms
//! Gating needs every block since the reset. They are kept in fixed-size histograms of
//! [`HISTOGRAM_BIN_LU`] = 0.05 LU bins from −70 to +40 LUFS (values above +40 LUFS land in the
//! top bin), each bin holding the *sum of the mean squares* and the *count* of its blocks. Sums
//! over whole bins are exact; only the one bin that contains a relative gate threshold is
//! approximated (for the integrated loudness, the part above the threshold is counted as if
//! its values spread evenly over the bin; for LRA, the bin counts whole if its mean lies above
//! the threshold), and a percentile is read as the mean loudness of the bin that holds it. So
//! integrated loudness and LRA work for any programme length, in constant memory, within a
//! few hundredths of a LU of the exact values.
//!
//! # Cost
//! Per sample: two biquads per channel (`KLanes`: direct form I, written so that the
//! recurrence path is one multiply-add per stage; both channels side by side in one register,
//! with FMA where the CPU has AVX2 and FMA) and one square: ≈ 4 cycles per stereo frame, the
//! latency of the recursion. The stem bank runs eight channels per register in `f32`
//! (`KLanes8`). Per tick: a few additions for the windows (`TickRing`) and two divisions.
//! Per 100 ms: a few logarithms and a walk over ≈ 100 histogram entries (bins are summed in
//! groups of 50 as well).

use crate::util::avx2_fma_available;

/// Loudness offset of BS.1770-4 eq. 2, in dB.
pub const LOUDNESS_OFFSET_DB: f64 = -0.691;

/// Ticks per second (5 ms ticks).
pub const TICKS_PER_SECOND: u64 = 200;

/// Momentary window: 80 ticks = 400 ms.
pub const MOMENTARY_TICKS: usize = 80;

/// Short-term window: 600 ticks = 3 s.
pub const SHORT_TERM_TICKS: usize = 600;

/// Hop between gating blocks and between LRA short-term values: 20 ticks = 100 ms.
pub const BLOCK_STEP_TICKS: u64 = 20;

/// Absolute gate for integrated loudness and LRA, LUFS.
pub const ABSOLUTE_GATE_LUFS: f64 = -70.0;

/// Relative gate of integrated loudness, LU below the absolute-gated loudness.
pub const RELATIVE_GATE_LU: f64 = -10.0;

/// Relative gate of the loudness range, LU below the absolute-gated power mean.
pub const LRA_RELATIVE_GATE_LU: f64 = -20.0;

/// Lower LRA percentile (fraction).
pub const LRA_LOW_PERCENTILE: f64 = 0.10;

/// Upper LRA percentile (fraction).
pub const LRA_HIGH_PERCENTILE: f64 = 0.95;

/// Width of a histogram bin, LU.
pub const HISTOGRAM_BIN_LU: f64 = 0.05;

/// Lower edge of the histograms, LUFS (the absolute gate).
pub const HISTOGRAM_MIN_LUFS: f64 = ABSOLUTE_GATE_LUFS;

/// Upper edge of the histograms, LUFS; louder values are counted in the top bin.
pub const HISTOGRAM_MAX_LUFS: f64 = 40.0;

/// Offset of the tick index in [`LoudnessMeter::span`]: a whole number of seconds of ticks,
/// at least the longest window.
const TICK_TABLE_OFFSET: usize = 3 * TICKS_PER_SECOND as usize;

/// Number of histogram bins: (40 − (−70)) / 0.05.
const HISTOGRAM_BINS: usize = 2200;

/// Filter states smaller than this are flushed to zero at the end of each tick (keeps the
/// recursions out of the denormal range; 10⁻³⁰ is −600 dBFS).
const STATE_FLUSH: f64 = 1.0e-30;

/// Loudness of a K-weighted mean square (summed over channels): `−0.691 + 10·log10(z)` LUFS.
/// Zero gives `−∞`.
#[inline]
pub fn energy_to_lufs(mean_square: f64) -> f64 {
    LOUDNESS_OFFSET_DB + 10.0 * mean_square.log10()
}

/// Inverse of [`energy_to_lufs`]: `10^((L + 0.691)/10)`.
#[inline]
pub fn lufs_to_energy(lufs: f64) -> f64 {
    10f64.powf((lufs - LOUDNESS_OFFSET_DB) * 0.1)
}

/// Coefficients of one normalised biquad
/// `H(z) = (b0 + b1·z⁻¹ + b2·z⁻²) / (1 + a1·z⁻¹ + a2·z⁻²)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KBiquad {
    /// Numerator `[b0, b1, b2]`.
    pub b: [f64; 3],
    /// Denominator `[a1, a2]` (`a0 = 1`).
    pub a: [f64; 2],
}

impl KBiquad {
    /// Magnitude response at `freq_hz` for `sample_rate`: `|H(e^{jω})|`, `ω = 2π·f/fs`.
    pub fn magnitude(&self, freq_hz: f64, sample_rate: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * freq_hz / sample_rate;
        let (c1, s1, c2, s2) = (w.cos(), w.sin(), (2.0 * w).cos(), (2.0 * w).sin());
        let num_re = self.b[0] + self.b[1] * c1 + self.b[2] * c2;
        let num_im = -self.b[1] * s1 - self.b[2] * s2;
        let den_re = 1.0 + self.a[0] * c1 + self.a[1] * c2;
        let den_im = -self.a[0] * s1 - self.a[1] * s2;
        ((num_re * num_re + num_im * num_im) / (den_re * den_re + den_im * den_im)).sqrt()
    }
}

/// The BS.1770-4 K-weighting filter for any sample rate: a high shelf (the "pre-filter",
/// modelling the acoustic effect of the head, ≈ +4 dB above 2 kHz) followed by the RLB
/// weighting high-pass (≈ 38 Hz, second order).
///
/// BS.1770-4 tabulates the coefficients for 48 kHz only. Here they are derived for any rate
/// from analog prototypes fitted to that table, as in libebur128 (Jan Kokemüller) and its Rust
/// port, the `ebur128` crate (`src/filter.rs`): with `K = tan(π·f0/fs)`,
///
/// ```text
/// shelf (f0 = 1681.974450955533 Hz, G = 3.999843853973347 dB, Q = 0.7071752369554196):
///   Vh = 10^(G/20),  Vb = Vh^0.4996667741545416,  a0 = 1 + K/Q + K²
///   b = [(Vh + Vb·K/Q + K²), 2(K² − Vh), (Vh − Vb·K/Q + K²)] / a0
///   a = [2(K² − 1), (1 − K/Q + K²)] / a0
/// high-pass (f0 = 38.13547087602444 Hz, Q = 0.5003270373238773):
///   a0 = 1 + K/Q + K²
///   b = [1, −2, 1] · g,   g = a0(48 kHz) / a0(fs)
///   a = [2(K² − 1), (1 − K/Q + K²)] / a0
/// ```
///
/// At 48 kHz (`g = 1`) this reproduces the BS.1770-4 coefficients to better than 10⁻⁸ (unit
/// test). The factor `g` is our one departure from libebur128: BS.1770's high-pass numerator
/// `[1, −2, 1]` is not normalised, so its passband gain is `a0(fs)` (+0.043 dB at 48 kHz,
/// which the −0.691 dB offset absorbs). libebur128 keeps `[1, −2, 1]` at every rate, so its
/// passband gain drifts with the rate (+0.047 dB at 44.1 kHz, +0.011 dB at 192 kHz) and a
/// 1 kHz tone reads 0.03 dB lower at 192 kHz than at 48 kHz. With `g` the gain stays that of
/// the 48 kHz table at every rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KWeighting {
    /// Stage 1: high shelf.
    pub shelf: KBiquad,
    /// Stage 2: RLB high-pass.
    pub high_pass: KBiquad,
    /// Sample rate the coefficients are for, Hz.
    pub sample_rate: f64,
}

impl KWeighting {
    /// Coefficients for `sample_rate` (Hz).
    #[allow(non_snake_case)]
    pub fn new(sample_rate: f64) -> Self {
        let pi = std::f64::consts::PI;

        let f0 = 1681.974450955533;
        let G = 3.999843853973347;
        let Q = 0.7071752369554196;
        let K = (pi * f0 / sample_rate).tan();
        let Vh = 10f64.powf(G / 20.0);
        let Vb = Vh.powf(0.4996667741545416);
        let a0 = 1.0 + K / Q + K * K;
        let shelf = KBiquad {
            b: [
                (Vh + Vb * K / Q + K * K) / a0,
                2.0 * (K * K - Vh) / a0,
                (Vh - Vb * K / Q + K * K) / a0,
            ],
            a: [2.0 * (K * K - 1.0) / a0, (1.0 - K / Q + K * K) / a0],
        };

        let f0 = 38.13547087602444;
        let Q = 0.5003270373238773;
        let a0_at = |fs: f64| {
            let K = (pi * f0 / fs).tan();
            1.0 + K / Q + K * K
        };
        let K = (pi * f0 / sample_rate).tan();
        let a0 = a0_at(sample_rate);
        // Passband gain of BS.1770's [1, −2, 1] numerator is a0(fs); hold it at a0(48 kHz).
        let g = a0_at(48_000.0) / a0;
        let high_pass = KBiquad {
            b: [g, -2.0 * g, g],
            a: [2.0 * (K * K - 1.0) / a0, (1.0 - K / Q + K * K) / a0],
        };

        Self {
            shelf,
            high_pass,
            sample_rate,
        }
    }

    /// Power gain of the whole filter at `freq_hz`, in dB.
    pub fn response_db(&self, freq_hz: f64) -> f64 {
        let m = self.shelf.magnitude(freq_hz, self.sample_rate)
            * self.high_pass.magnitude(freq_hz, self.sample_rate);
        20.0 * m.log10()
    }
}

/// K-weighting state of `N` channels run side by side ("lanes": the same operation on every
/// lane), with each lane's sum of K-weighted squares over the current tick.
///
/// Per lane, direct form I with the recursive term last, so that the loop-carried path is one
/// multiply-add per stage:
///
/// ```text
/// y[n] = (b0·x[n] + b1·x[n−1] + b2·x[n−2] − a2·y[n−2]) − a1·y[n−1]          (shelf)
/// z[n] = ((y[n] − y[n−1]) − (y[n−1] − y[n−2]) − c2·z[n−2]) − c1·z[n−1]      (high-pass)
/// acc += z[n]²
/// ```
///
/// The high-pass runs with the numerator `[1, −2, 1]`; its gain `g` (see [`KWeighting`]) is
/// applied to the tick's sum (`g²`, [`Self::take_tick`]). The squares are summed per tick in
/// the state, so the result does not depend on how the signal is cut into blocks.
///
/// A stereo signal (two lanes, one 128-bit register) is bound by the latency of the
/// recursion: one multiply-add, ≈ 4 cycles per frame. On x86_64 with AVX2 and FMA the stereo
/// case runs as intrinsics ([`KLanes::process_stereo`]); the generic lane loop is the portable
/// version. The stem bank runs eight channels per register in `f32` instead ([`KLanes8`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct KLanes<const N: usize> {
    /// Inputs `x[n−1]`.
    x1: [f64; N],
    /// Inputs `x[n−2]`.
    x2: [f64; N],
    /// Shelf outputs `y[n−1]`.
    y1: [f64; N],
    /// Shelf outputs `y[n−2]`.
    y2: [f64; N],
    /// High-pass outputs `z[n−1]` (K-weighted signal, before the gain `g`).
    z1: [f64; N],
    /// High-pass outputs `z[n−2]`.
    z2: [f64; N],
    /// `Σ z²` over the current tick so far.
    acc: [f64; N],
}

/// Where [`KLanes::process`] reads frame `n`'s `N` samples from.
pub(crate) trait LaneSource<const N: usize> {
    /// The `N` samples of frame `n`.
    fn frame(&self, n: usize) -> [f32; N];
}

/// `N` planar channel slices (each at least as long as the frames read).
impl<const N: usize> LaneSource<N> for [&[f32]; N] {
    #[inline(always)]
    fn frame(&self, n: usize) -> [f32; N] {
        std::array::from_fn(|c| self[c][n])
    }
}

/// Frames already interleaved lane by lane.
impl<const N: usize> LaneSource<N> for &[[f32; N]] {
    #[inline(always)]
    fn frame(&self, n: usize) -> [f32; N] {
        self[n]
    }
}

/// `a·b + c`, fused when `FMA` (only in code compiled with the FMA target feature, where it
/// is one instruction; elsewhere `mul_add` would be a slow library call).
#[inline(always)]
fn madd<const FMA: bool>(a: f64, b: f64, c: f64) -> f64 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

impl<const N: usize> KLanes<N> {
    /// Zero state.
    pub(crate) const fn new() -> Self {
        Self {
            x1: [0.0; N],
            x2: [0.0; N],
            y1: [0.0; N],
            y2: [0.0; N],
            z1: [0.0; N],
            z2: [0.0; N],
            acc: [0.0; N],
        }
    }

    /// Filters `frames` frames from `x` and adds the squares to the tick sums. Inlined into
    /// its caller, so that the caller's target features (AVX2, FMA) apply.
    #[inline(always)]
    pub(crate) fn process<const FMA: bool>(
        &mut self,
        k: &KWeighting,
        frames: usize,
        x: &impl LaneSource<N>,
    ) {
        let [b0, b1, b2] = k.shelf.b;
        let [a1, a2] = k.shelf.a;
        let [c1, c2] = k.high_pass.a;
        let Self {
            mut x1,
            mut x2,
            mut y1,
            mut y2,
            mut z1,
            mut z2,
            mut acc,
        } = *self;
        for n in 0..frames {
            let xn = x.frame(n);
            let mut y = [0.0f64; N];
            let mut z = [0.0f64; N];
            for l in 0..N {
                let x0 = xn[l] as f64;
                let ff = madd::<FMA>(b2, x2[l], madd::<FMA>(b1, x1[l], b0 * x0));
                y[l] = madd::<FMA>(-a1, y1[l], madd::<FMA>(-a2, y2[l], ff));
                let d = (y[l] - y1[l]) - (y1[l] - y2[l]);
                z[l] = madd::<FMA>(-c1, z1[l], madd::<FMA>(-c2, z2[l], d));
                acc[l] = madd::<FMA>(z[l], z[l], acc[l]);
                x2[l] = x1[l];
                x1[l] = x0;
            }
            (y2, y1, z2, z1) = (y1, y, z1, z);
        }
        *self = Self {
            x1,
            x2,
            y1,
            y2,
            z1,
            z2,
            acc,
        };
    }

    /// Ends a tick: returns each lane's K-weighted energy `g²·Σz²` and restarts the sums.
    /// Flushes tiny state values to zero (keeps the recursions out of the denormal range);
    /// a lane whose state went non-finite is restarted and reports NaN for this tick.
    pub(crate) fn take_tick(&mut self, k: &KWeighting) -> [f64; N] {
        let g2 = k.high_pass.b[0] * k.high_pass.b[0];
        let mut out = [0.0f64; N];
        for (l, e) in out.iter_mut().enumerate() {
            let mut v = [
                &mut self.x1[l],
                &mut self.x2[l],
                &mut self.y1[l],
                &mut self.y2[l],
                &mut self.z1[l],
                &mut self.z2[l],
            ];
            let finite = v.iter().all(|s| s.is_finite()) && self.acc[l].is_finite();
            for s in v.iter_mut() {
                if !finite || s.abs() < STATE_FLUSH {
                    **s = 0.0;
                }
            }
            *e = if finite { self.acc[l] * g2 } else { f64::NAN };
            self.acc[l] = 0.0;
        }
        out
    }
}

impl KLanes<2> {
    /// K-weights a stereo segment (the shorter slice sets its length).
    ///
    /// # Safety
    /// With `FMA`, the CPU must support AVX2 and FMA ([`avx2_fma_available`](crate::util::avx2_fma_available)).
    #[inline(always)]
    pub(crate) unsafe fn process_stereo<const FMA: bool>(
        &mut self,
        k: &KWeighting,
        left: &[f32],
        right: &[f32],
    ) {
        let n = left.len().min(right.len());
        #[cfg(target_arch = "x86_64")]
        if FMA {
            // SAFETY: the caller guarantees AVX2 and FMA.
            unsafe { simd::k_weight_2(self, k, &left[..n], &right[..n]) };
            return;
        }
        self.process::<false>(k, n, &[left, right]);
    }
}

/// K-weighting of eight channels in `f32` ("lanes", one AVX register), with each lane's sum
/// of K-weighted squares over the current tick: [`KLanes`] with the same recursion in single
/// precision, for the stem bank ([`crate::meter_bank`]), where eight lanes in one register
/// halve the work of four `f64` lanes per register.
///
/// Single precision is ample for loudness: against the `f64` filter, the K-weighted energy of
/// 1 s of low or mid sines, noise, a square wave or a sine on a large DC offset differs by less
/// than 0.0003 dB at 48 kHz and 0.003 dB at 192 kHz (where the rounded high-pass coefficients
/// move the 38 Hz corner most), against the standard's 0.1 dB tolerance: the recursion's
/// rounding errors stay ~80 dB below the signal. Checked in the unit tests against [`KLanes`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct KLanes8 {
    /// Inputs `x[n−1]`.
    x1: [f32; 8],
    /// Inputs `x[n−2]`.
    x2: [f32; 8],
    /// Shelf outputs `y[n−1]`.
    y1: [f32; 8],
    /// Shelf outputs `y[n−2]`.
    y2: [f32; 8],
    /// High-pass outputs `z[n−1]` (before the gain `g`).
    z1: [f32; 8],
    /// High-pass outputs `z[n−2]`.
    z2: [f32; 8],
    /// `Σ z²` over the current tick so far.
    acc: [f32; 8],
}

/// The K-weighting coefficients in single precision: `[b0, b1, b2, a1, a2, c1, c2]`.
fn coeffs_f32(k: &KWeighting) -> [f32; 7] {
    [
        k.shelf.b[0] as f32,
        k.shelf.b[1] as f32,
        k.shelf.b[2] as f32,
        k.shelf.a[0] as f32,
        k.shelf.a[1] as f32,
        k.high_pass.a[0] as f32,
        k.high_pass.a[1] as f32,
    ]
}

impl KLanes8 {
    /// Zero state.
    pub(crate) const fn new() -> Self {
        Self {
            x1: [0.0; 8],
            x2: [0.0; 8],
            y1: [0.0; 8],
            y2: [0.0; 8],
            z1: [0.0; 8],
            z2: [0.0; 8],
            acc: [0.0; 8],
        }
    }

    /// Filters the frames `x` (eight lanes each) and adds the squares to the tick sums.
    ///
    /// # Safety
    /// With `FMA`, the CPU must support AVX2 and FMA ([`avx2_fma_available`](crate::util::avx2_fma_available)).
    #[inline(always)]
    pub(crate) unsafe fn process<const FMA: bool>(&mut self, k: &KWeighting, x: &[[f32; 8]]) {
        #[cfg(target_arch = "x86_64")]
        if FMA {
            // SAFETY: the caller guarantees AVX2 and FMA.
            unsafe { simd::k_weight_8(self, k, x) };
            return;
        }
        let [b0, b1, b2, a1, a2, c1, c2] = coeffs_f32(k);
        let Self {
            mut x1,
            mut x2,
            mut y1,
            mut y2,
            mut z1,
            mut z2,
            mut acc,
        } = *self;
        for xn in x {
            let mut y = [0.0f32; 8];
            let mut z = [0.0f32; 8];
            for l in 0..8 {
                let ff = b2 * x2[l] + (b1 * x1[l] + b0 * xn[l]);
                y[l] = -a1 * y1[l] + (-a2 * y2[l] + ff);
                let d = (y[l] - y1[l]) - (y1[l] - y2[l]);
                z[l] = -c1 * z1[l] + (-c2 * z2[l] + d);
                acc[l] += z[l] * z[l];
            }
            (x2, x1, y2, y1, z2, z1) = (x1, *xn, y1, y, z1, z);
        }
        *self = Self {
            x1,
            x2,
            y1,
            y2,
            z1,
            z2,
            acc,
        };
    }

    /// [`Self::process`], also returning each lane's `Σx²` and `Σ x·x'` over `x`, where `x'`
    /// is the neighbouring lane (lanes `2i` and `2i + 1` swapped): for a stereo pair in lanes
    /// `2i`, `2i + 1`, `Σl²`, `Σr²` and (in both lanes) `Σl·r`. Summed in `f32`, one segment
    /// (at most a 5 ms tick) at a time.
    ///
    /// # Safety
    /// With `FMA`, the CPU must support AVX2 and FMA ([`avx2_fma_available`](crate::util::avx2_fma_available)).
    #[inline(always)]
    pub(crate) unsafe fn process_with_sums<const FMA: bool>(
        &mut self,
        k: &KWeighting,
        x: &[[f32; 8]],
    ) -> ([f32; 8], [f32; 8]) {
        #[cfg(target_arch = "x86_64")]
        if FMA {
            // SAFETY: the caller guarantees AVX2 and FMA.
            unsafe {
                simd::k_weight_8(self, k, x);
                return simd::raw_sums_8(x);
            }
        }
        let (mut sq, mut cross) = ([0.0f32; 8], [0.0f32; 8]);
        for xn in x {
            for l in 0..8 {
                sq[l] += xn[l] * xn[l];
                cross[l] += xn[l] * xn[l ^ 1];
            }
        }
        // SAFETY: no requirement without FMA.
        unsafe { self.process::<false>(k, x) };
        (sq, cross)
    }

    /// Ends a tick: each lane's K-weighted energy `g²·Σz²` (see [`KLanes::take_tick`]; NaN
    /// for a lane that went non-finite and was restarted). Written lane-parallel (masks, no
    /// per-lane branches) so that it compiles to a few vector operations where inlined
    /// into the AVX2 build.
    #[inline]
    pub(crate) fn take_tick(&mut self, k: &KWeighting) -> [f64; 8] {
        let g2 = k.high_pass.b[0] * k.high_pass.b[0];
        let mut finite = [true; 8];
        for v in [
            &self.x1, &self.x2, &self.y1, &self.y2, &self.z1, &self.z2, &self.acc,
        ] {
            for (f, s) in finite.iter_mut().zip(v) {
                *f &= s.is_finite();
            }
        }
        for v in [
            &mut self.x1,
            &mut self.x2,
            &mut self.y1,
            &mut self.y2,
            &mut self.z1,
            &mut self.z2,
        ] {
            for (s, &f) in v.iter_mut().zip(&finite) {
                // `f64::from(|s|) < 10⁻³⁰` and `|s| < 10⁻³⁰` rounded to f32 agree: no f32
                // lies between the two.
                if !f || s.abs() < STATE_FLUSH as f32 {
                    *s = 0.0;
                }
            }
        }
        let out = std::array::from_fn(|l| {
            if finite[l] {
                f64::from(self.acc[l]) * g2
            } else {
                f64::NAN
            }
        });
        self.acc = [0.0; 8];
        out
    }
}

/// AVX2 + FMA versions of [`KLanes::process`]: the same operations in the same order
/// (`FMA` = true), written with intrinsics because the compiler does not reliably turn the
/// lane loops into vector code.
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{KLanes, KLanes8, KWeighting};
    use std::arch::x86_64::*;

    /// Two lanes in one 128-bit register; `left`, `right` of equal length.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn k_weight_2(lanes: &mut KLanes<2>, k: &KWeighting, left: &[f32], right: &[f32]) {
        let s = _mm_set1_pd;
        let (b0, b1, b2) = (s(k.shelf.b[0]), s(k.shelf.b[1]), s(k.shelf.b[2]));
        let (na1, na2) = (s(-k.shelf.a[0]), s(-k.shelf.a[1]));
        let (nc1, nc2) = (s(-k.high_pass.a[0]), s(-k.high_pass.a[1]));
        let ld = |v: [f64; 2]| _mm_set_pd(v[1], v[0]);
        let (mut x1, mut x2) = (ld(lanes.x1), ld(lanes.x2));
        let (mut y1, mut y2) = (ld(lanes.y1), ld(lanes.y2));
        let (mut z1, mut z2) = (ld(lanes.z1), ld(lanes.z2));
        let mut acc = ld(lanes.acc);
        for (&l, &r) in left.iter().zip(right) {
            let x = _mm_set_pd(r as f64, l as f64);
            let ff = _mm_fmadd_pd(b2, x2, _mm_fmadd_pd(b1, x1, _mm_mul_pd(b0, x)));
            let y = _mm_fmadd_pd(na1, y1, _mm_fmadd_pd(na2, y2, ff));
            let d = _mm_sub_pd(_mm_sub_pd(y, y1), _mm_sub_pd(y1, y2));
            let z = _mm_fmadd_pd(nc1, z1, _mm_fmadd_pd(nc2, z2, d));
            acc = _mm_fmadd_pd(z, z, acc);
            (x2, x1, y2, y1, z2, z1) = (x1, x, y1, y, z1, z);
        }
        let st = |v: __m128d| [_mm_cvtsd_f64(v), _mm_cvtsd_f64(_mm_unpackhi_pd(v, v))];
        *lanes = KLanes {
            x1: st(x1),
            x2: st(x2),
            y1: st(y1),
            y2: st(y2),
            z1: st(z1),
            z2: st(z2),
            acc: st(acc),
        };
    }

    /// [`KLanes8::process`]: eight `f32` lanes in one 256-bit register.
    ///
    /// Written so that the loop keeps only the recursion state (5 vectors) and the seven
    /// coefficients in registers: the inputs `x[n−1]`, `x[n−2]` are read again from the
    /// frames (memory operands of the multiply-adds), the raw sums are a loop of their own
    /// ([`raw_sums_8`]; with them inside, the state spilled to the stack every frame), and
    /// the loop is unrolled by two frames so that the outputs change roles (`y[n−1]` ↔
    /// `y[n−2]`) without register moves. Same operations in the same order as the portable
    /// loop (with fused multiply-adds).
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn k_weight_8(lanes: &mut KLanes8, k: &KWeighting, x: &[[f32; 8]]) {
        let c = super::coeffs_f32(k);
        let s = _mm256_set1_ps;
        let c = Coeffs8 {
            b0: s(c[0]),
            b1: s(c[1]),
            b2: s(c[2]),
            na1: s(-c[3]),
            na2: s(-c[4]),
            nc1: s(-c[5]),
            nc2: s(-c[6]),
        };
        let n = x.len();
        let (mut y1, mut y2) = (ld(&lanes.y1), ld(&lanes.y2));
        let (mut z1, mut z2) = (ld(&lanes.z1), ld(&lanes.z2));
        let mut acc = ld(&lanes.acc);
        // The first two frames take their predecessors from the state.
        let head = n.min(2);
        for i in 0..head {
            let x0 = ld(&x[i]);
            let (x1, x2) = if i == 0 {
                (ld(&lanes.x1), ld(&lanes.x2))
            } else {
                (ld(&x[0]), ld(&lanes.x1))
            };
            let (y, z) = step(&c, [x0, x1, x2], y1, y2, z1, z2, &mut acc);
            (y2, y1, z2, z1) = (y1, y, z1, z);
        }
        // Then two frames per step, every input read from the frames: windows of four
        // frames `x[i−2 ..= i+1]` starting at even offsets.
        let body = &x[head.min(n).saturating_sub(2)..];
        let mut chunks = body.windows(4).step_by(2);
        let mut done = head;
        if n >= 2 {
            for w in &mut chunks {
                let [xd, xc, xb, xa] = [&w[0], &w[1], &w[2], &w[3]].map(ld);
                let (ya, za) = step(&c, [xb, xc, xd], y1, y2, z1, z2, &mut acc);
                let (yb, zb) = step(&c, [xa, xb, xc], ya, y1, za, z1, &mut acc);
                (y2, y1, z2, z1) = (ya, yb, za, zb);
                done += 2;
            }
        }
        if done < n {
            let [x0, x1, x2] = [done, done - 1, done - 2].map(|j| ld(&x[j]));
            let (y, z) = step(&c, [x0, x1, x2], y1, y2, z1, z2, &mut acc);
            (y2, y1, z2, z1) = (y1, y, z1, z);
        }
        let (x1, x2) = match n {
            0 => (lanes.x1, lanes.x2),
            1 => (x[0], lanes.x1),
            _ => (x[n - 1], x[n - 2]),
        };
        *lanes = KLanes8 {
            x1,
            x2,
            y1: st(y1),
            y2: st(y2),
            z1: st(z1),
            z2: st(z2),
            acc: st(acc),
        };
    }

    /// `Σx²` and `Σ x·x'` per lane over the frames `x` (see
    /// [`KLanes8::process_with_sums`]), even and odd frames in separate accumulators (two
    /// independent chains of multiply-adds per sum).
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn raw_sums_8(x: &[[f32; 8]]) -> ([f32; 8], [f32; 8]) {
        let z = _mm256_setzero_ps();
        let (mut sq, mut cross) = ([z; 2], [z; 2]);
        let pairs = x.chunks_exact(2);
        let rest = pairs.remainder();
        for p in pairs {
            for (h, f) in p.iter().enumerate() {
                let v = ld(f);
                sq[h] = _mm256_fmadd_ps(v, v, sq[h]);
                cross[h] = _mm256_fmadd_ps(v, _mm256_permute_ps::<0b1011_0001>(v), cross[h]);
            }
        }
        for f in rest {
            let v = ld(f);
            sq[0] = _mm256_fmadd_ps(v, v, sq[0]);
            cross[0] = _mm256_fmadd_ps(v, _mm256_permute_ps::<0b1011_0001>(v), cross[0]);
        }
        (
            st(_mm256_add_ps(sq[0], sq[1])),
            st(_mm256_add_ps(cross[0], cross[1])),
        )
    }

    /// The K-weighting coefficients broadcast to eight lanes: `b0, b1, b2, −a1, −a2, −c1,
    /// −c2`.
    struct Coeffs8 {
        b0: __m256,
        b1: __m256,
        b2: __m256,
        na1: __m256,
        na2: __m256,
        nc1: __m256,
        nc2: __m256,
    }

    /// Eight lanes from a frame.
    #[inline(always)]
    fn ld(v: &[f32; 8]) -> __m256 {
        // SAFETY: eight floats; only called from AVX2 code.
        unsafe { _mm256_loadu_ps(v.as_ptr()) }
    }

    /// A frame from eight lanes.
    #[inline(always)]
    fn st(v: __m256) -> [f32; 8] {
        let mut out = [0.0f32; 8];
        // SAFETY: eight floats; only called from AVX2 code.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
        out
    }

    /// One frame: the shelf output `y` and high-pass output `z` from the input `x0` and its
    /// two predecessors, the outputs before (`y1, y2, z1, z2`); adds `z²` to `acc`. The
    /// operations and their order are those of [`KLanes8::process`].
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn step(
        c: &Coeffs8,
        [x0, x1, x2]: [__m256; 3],
        y1: __m256,
        y2: __m256,
        z1: __m256,
        z2: __m256,
        acc: &mut __m256,
    ) -> (__m256, __m256) {
        // SAFETY (all intrinsics here): only called from AVX2 + FMA code.
        unsafe {
            let ff = _mm256_fmadd_ps(c.b2, x2, _mm256_fmadd_ps(c.b1, x1, _mm256_mul_ps(c.b0, x0)));
            let y = _mm256_fmadd_ps(c.na1, y1, _mm256_fmadd_ps(c.na2, y2, ff));
            let d = _mm256_sub_ps(_mm256_sub_ps(y, y1), _mm256_sub_ps(y1, y2));
            let z = _mm256_fmadd_ps(c.nc1, z1, _mm256_fmadd_ps(c.nc2, z2, d));
            *acc = _mm256_fmadd_ps(z, z, *acc);
            (y, z)
        }
    }
}

/// [`KLanes::process_stereo`] with FMA, in a function compiled for AVX2 and FMA (so that the
/// kernel is inlined).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
unsafe fn fma_stereo(lanes: &mut KLanes<2>, k: &KWeighting, left: &[f32], right: &[f32]) {
    // SAFETY: forwarded.
    unsafe { lanes.process_stereo::<true>(k, left, right) };
}

/// Energies of the last ticks in a ring of `LEN` ticks of `K` values each (e.g. `[Σl², Σr²,
/// Σl·r, frames]`), so that the sum over the last `t` ticks costs two additions.
///
/// The ring is cut into aligned groups of `GROUP` ticks. When a group completes, its suffix
/// sums `S[i] = Σ_{j ≥ i} v[j]` (within the group) are stored, and so are the sums `B[m]` of
/// the `m` most recently completed groups (`m` = 0 ..= `LEN/GROUP`); the group being filled
/// keeps a running sum of its values. The last `t` ticks are then the open group's running
/// sum, the `F` whole groups before it and one suffix sum of the oldest, partly expired
/// group:
///
/// ```text
/// Σ last t = open + B[F] + S_{g−F−1}[GROUP − rest],   F = ⌊(t − k)/GROUP⌋,  rest = (t − k) mod GROUP
/// ```
///
/// (`k` ticks in the open group `g`; the oldest group's suffix sums were stored before any of
/// its values was overwritten). Every sum is formed by adding stored values, never by adding
/// and subtracting a running total, so nothing drifts: a burst leaves no trace once it is
/// out of the window. Per tick: one addition, plus `GROUP + LEN/GROUP` when a group completes.
#[derive(Clone)]
pub(crate) struct TickRing<const K: usize, const LEN: usize, const GROUP: usize> {
    /// Values per tick, `[LEN]` (oldest at `pos`).
    ring: Box<[[f64; K]]>,
    /// Suffix sums within each completed group, `[LEN]`.
    suffix: Box<[[f64; K]]>,
    /// `back[m]`: sum of the `m` most recently completed groups, `[LEN / GROUP + 1]`.
    back: Box<[[f64; K]]>,
    /// Sum of the values of the open group (positions `pos − pos % GROUP .. pos`).
    open: [f64; K],
    /// Next write position in `0..LEN`.
    pos: usize,
}

impl<const K: usize, const LEN: usize, const GROUP: usize> TickRing<K, LEN, GROUP> {
    /// Number of groups.
    const GROUPS: usize = LEN / GROUP;

    /// Allocates a zeroed ring.
    pub(crate) fn new() -> Self {
        const { assert!(GROUP > 0 && LEN.is_multiple_of(GROUP)) };
        Self {
            ring: vec![[0.0; K]; LEN].into_boxed_slice(),
            suffix: vec![[0.0; K]; LEN].into_boxed_slice(),
            back: vec![[0.0; K]; LEN / GROUP + 1].into_boxed_slice(),
            open: [0.0; K],
            pos: 0,
        }
    }

    /// Zeroes every value.
    pub(crate) fn clear(&mut self) {
        self.ring.fill([0.0; K]);
        self.suffix.fill([0.0; K]);
        self.back.fill([0.0; K]);
        self.open = [0.0; K];
        self.pos = 0;
    }

    /// Stores the values of a new tick (overwriting the oldest).
    pub(crate) fn push(&mut self, v: [f64; K]) {
        self.ring[self.pos] = v;
        add(&mut self.open, v);
        self.pos += 1;
        if self.pos.is_multiple_of(GROUP) {
            let start = self.pos - GROUP;
            let mut acc = [0.0f64; K];
            for i in (start..self.pos).rev() {
                add(&mut acc, self.ring[i]);
                self.suffix[i] = acc;
            }
            // Sums of the most recent groups, newest (this one) first.
            let newest = start / GROUP;
            let mut acc = [0.0f64; K];
            for m in 1..=Self::GROUPS {
                let g = (newest + Self::GROUPS + 1 - m) % Self::GROUPS;
                add(&mut acc, self.suffix[g * GROUP]);
                self.back[m] = acc;
            }
            self.open = [0.0; K];
        }
        if self.pos == LEN {
            self.pos = 0;
        }
    }

    /// Sum over the last `ticks` ticks (at most `LEN`).
    pub(crate) fn sum_last(&self, ticks: usize) -> [f64; K] {
        let ticks = ticks.min(LEN);
        let k = self.pos % GROUP;
        if ticks <= k {
            // Within the open group (only for short windows just after a reset).
            let mut s = [0.0f64; K];
            for v in &self.ring[self.pos - ticks..self.pos] {
                add(&mut s, *v);
            }
            return s;
        }
        let full = (ticks - k) / GROUP;
        let rest = (ticks - k) % GROUP;
        let mut s = self.open;
        add(&mut s, self.back[full]);
        if rest > 0 {
            let g = (self.pos / GROUP + 2 * Self::GROUPS - full - 1) % Self::GROUPS;
            add(&mut s, self.suffix[g * GROUP + GROUP - rest]);
        }
        s
    }
}

/// `acc += v` lane by lane.
#[inline(always)]
fn add<const K: usize>(acc: &mut [f64; K], v: [f64; K]) {
    for (a, b) in acc.iter_mut().zip(v) {
        *a += b;
    }
}

/// Fixed-size loudness histogram: per bin the sum of the mean squares and the count of the
/// values (gating blocks or short-term values) that fell in it, plus the same sums per group
/// of [`GROUP_BINS`] bins so that a query touches at most ≈ 100 entries. See the module doc.
#[derive(Clone)]
struct LoudnessHistogram {
    /// Σ of the mean squares per bin, `[HISTOGRAM_BINS]`.
    energy: Box<[f64]>,
    /// Number of values per bin, `[HISTOGRAM_BINS]`.
    count: Box<[u32]>,
    /// Σ of the mean squares per group of `GROUP_BINS` bins.
    group_energy: Box<[f64]>,
    /// Number of values per group.
    group_count: Box<[u64]>,
    /// Σ of all mean squares in the histogram.
    total_energy: f64,
    /// Number of values in the histogram.
    total_count: u64,
}

/// The part of a histogram above a gate threshold (see [`LoudnessHistogram::above`]).
struct Above {
    /// Bin holding the threshold (the first bin counted).
    first: usize,
    /// Fraction of `first` counted, 0..1.
    first_weight: f64,
    /// Σ of the mean squares counted.
    energy: f64,
    /// Number of values counted (fractional through `first_weight`).
    count: f64,
}

/// Bins per group (2200 = 44 · 50).
const GROUP_BINS: usize = 50;

/// Number of groups.
const GROUPS: usize = HISTOGRAM_BINS / GROUP_BINS;

impl LoudnessHistogram {
    fn new() -> Self {
        Self {
            energy: vec![0.0; HISTOGRAM_BINS].into_boxed_slice(),
            count: vec![0; HISTOGRAM_BINS].into_boxed_slice(),
            group_energy: vec![0.0; GROUPS].into_boxed_slice(),
            group_count: vec![0; GROUPS].into_boxed_slice(),
            total_energy: 0.0,
            total_count: 0,
        }
    }

    fn clear(&mut self) {
        self.energy.fill(0.0);
        self.count.fill(0);
        self.group_energy.fill(0.0);
        self.group_count.fill(0);
        self.total_energy = 0.0;
        self.total_count = 0;
    }

    /// Bin of a loudness value (values outside the range land in the end bins).
    #[inline]
    fn bin(lufs: f64) -> usize {
        // `as usize` saturates (and maps NaN to 0).
        (((lufs - HISTOGRAM_MIN_LUFS) / HISTOGRAM_BIN_LU).floor() as usize).min(HISTOGRAM_BINS - 1)
    }

    /// Adds one value (mean square `energy` with loudness `lufs`).
    fn add(&mut self, energy: f64, lufs: f64) {
        let b = Self::bin(lufs);
        self.energy[b] += energy;
        self.count[b] = self.count[b].saturating_add(1);
        self.group_energy[b / GROUP_BINS] += energy;
        self.group_count[b / GROUP_BINS] += 1;
        self.total_energy += energy;
        self.total_count += 1;
    }

    /// Loudness of the power mean of all values, LUFS (−∞ when empty).
    fn mean_lufs(&self) -> f64 {
        if self.total_count == 0 {
            f64::NEG_INFINITY
        } else {
            energy_to_lufs(self.total_energy / self.total_count as f64)
        }
    }

    /// Mean loudness of bin `b`, LUFS (−∞ when empty).
    #[inline]
    fn bin_lufs(&self, b: usize) -> f64 {
        if self.count[b] == 0 {
            f64::NEG_INFINITY
        } else {
            energy_to_lufs(self.energy[b] / self.count[b] as f64)
        }
    }

    /// The values above `threshold_lufs`: every bin above the threshold's bin, plus part of
    /// that bin. With `split`, the part above the threshold assuming its values spread evenly
    /// over the bin (the fraction `(bin top − threshold) / bin width` of its count and energy;
    /// smooth, for the integrated loudness); without, the whole bin if its mean lies above the
    /// threshold, else none (whole counts, so that percentile ranks stay those of the exact
    /// algorithm). The open-ended top bin is always taken by its mean.
    fn above(&self, threshold_lufs: f64, split: bool) -> Above {
        if threshold_lufs < HISTOGRAM_MIN_LUFS {
            return Above {
                first: 0,
                first_weight: 1.0,
                energy: self.total_energy,
                count: self.total_count as f64,
            };
        }
        let tb = Self::bin(threshold_lufs);
        let first_weight = if tb == HISTOGRAM_BINS - 1 || !split {
            if self.bin_lufs(tb) > threshold_lufs {
                1.0
            } else {
                0.0
            }
        } else {
            let top = HISTOGRAM_MIN_LUFS + (tb + 1) as f64 * HISTOGRAM_BIN_LU;
            ((top - threshold_lufs) / HISTOGRAM_BIN_LU).clamp(0.0, 1.0)
        };
        // The threshold bin (weighted), the rest of its group, then whole groups.
        let group_end = (tb / GROUP_BINS + 1) * GROUP_BINS;
        let mut energy = first_weight * self.energy[tb];
        let mut count = first_weight * self.count[tb] as f64;
        energy += self.energy[tb + 1..group_end].iter().sum::<f64>();
        count += self.count[tb + 1..group_end]
            .iter()
            .map(|&c| c as f64)
            .sum::<f64>();
        energy += self.group_energy[tb / GROUP_BINS + 1..].iter().sum::<f64>();
        count += self.group_count[tb / GROUP_BINS + 1..].iter().sum::<u64>() as f64;
        Above {
            first: tb,
            first_weight,
            energy,
            count,
        }
    }

    /// Loudness of the value of rank `k` (0-based, counts weighted as in [`Self::above`])
    /// among the values from `above` on: the mean loudness of the bin that holds it.
    fn kth_lufs(&self, above: &Above, k: f64) -> f64 {
        let mut seen = above.first_weight * self.count[above.first] as f64;
        if seen > k {
            return self.bin_lufs(above.first);
        }
        let mut b = above.first + 1;
        while b < HISTOGRAM_BINS {
            let group = self.group_count[b / GROUP_BINS] as f64;
            if b.is_multiple_of(GROUP_BINS) && seen + group <= k {
                // The whole group lies below the rank: skip it.
                seen += group;
                b += GROUP_BINS;
                continue;
            }
            seen += self.count[b] as f64;
            if seen > k {
                return self.bin_lufs(b);
            }
            b += 1;
        }
        f64::NEG_INFINITY
    }

    /// Gated loudness: power mean of the values above `mean + relative_gate_lu` (BS.1770-4
    /// §2.8 with −10 LU). −∞ when empty.
    fn gated_mean_lufs(&self, relative_gate_lu: f64) -> f64 {
        if self.total_count == 0 {
            return f64::NEG_INFINITY;
        }
        let above = self.above(self.mean_lufs() + relative_gate_lu, true);
        if above.count <= 0.0 {
            f64::NEG_INFINITY
        } else {
            energy_to_lufs(above.energy / above.count)
        }
    }

    /// Loudness range (Tech 3342): `P95 − P10` of the values above `mean − 20 LU`, in LU.
    /// −∞ when empty.
    fn loudness_range_lu(&self) -> f64 {
        if self.total_count == 0 {
            return f64::NEG_INFINITY;
        }
        let above = self.above(self.mean_lufs() + LRA_RELATIVE_GATE_LU, false);
        if above.count <= 0.0 {
            return f64::NEG_INFINITY;
        }
        // MATLAB `round` (half away from zero) of a non-negative value.
        let rank = |p: f64| ((above.count - 1.0).max(0.0) * p + 0.5).floor();
        let low = self.kth_lufs(&above, rank(LRA_LOW_PERCENTILE));
        let high = self.kth_lufs(&above, rank(LRA_HIGH_PERCENTILE));
        (high - low).max(0.0)
    }
}

/// BS.1770-4 / EBU Mode loudness meter for one stereo signal. See the module doc.
///
/// `new` allocates (two histograms and the tick ring, ≈ 60 kB); `process`, `reset` and the
/// getters never allocate.
#[derive(Clone)]
pub struct LoudnessMeter {
    /// Sample rate in whole Hz (tick boundaries are counted in samples).
    sample_rate_hz: u64,
    /// K-weighting coefficients for the sample rate.
    k: KWeighting,
    /// K-weighting state and tick sums, left and right (unused when the filtering is done
    /// outside, see [`Self::advance`]).
    lanes: KLanes<2>,
    /// Whether the CPU runs the AVX2 + FMA build of the filter.
    use_fma: bool,
    /// Samples still missing to complete the current tick (≥ 1).
    tick_remaining: usize,
    /// Ticks completed since construction or [`Self::reset`].
    tick_count: u64,
    /// `⌊k·fs/200⌋` for `k` in `0..=TICK_TABLE_OFFSET + 200`: where tick `k` starts, in
    /// samples (tick lengths and window spans without divisions).
    tick_starts: Box<[u64]>,
    /// K-weighted energies of the last [`SHORT_TERM_TICKS`] ticks.
    ring: TickRing<1, SHORT_TERM_TICKS, { BLOCK_STEP_TICKS as usize }>,
    /// Momentary mean square (400 ms) at the last tick, K-weighted, summed over channels.
    momentary_ms: f64,
    /// Short-term mean square (3 s) at the last tick.
    short_term_ms: f64,
    /// Largest momentary mean square since the programme reset.
    max_momentary_ms: f64,
    /// Largest short-term mean square since the programme reset.
    max_short_term_ms: f64,
    /// Ticks since the programme reset (gating blocks and LRA values are counted from it).
    ticks_since_reset: u64,
    /// Gating blocks above the absolute gate since the programme reset.
    blocks: LoudnessHistogram,
    /// Short-term values (10 Hz) above the absolute gate since the programme reset.
    short_terms: LoudnessHistogram,
    /// Integrated loudness at the last gating block, LUFS (−∞ when no block passed the gates).
    integrated_lufs: f64,
    /// Loudness range at the last short-term value, LU (−∞ when no value passed the gates).
    lra_lu: f64,
}

impl LoudnessMeter {
    /// Allocates a meter for `sample_rate` (Hz, rounded to whole Hz; 8–768 kHz).
    pub fn new(sample_rate: f32) -> Self {
        let sample_rate_hz = (sample_rate.round() as u64).clamp(8_000, 768_000);
        let mut meter = Self {
            sample_rate_hz,
            k: KWeighting::new(sample_rate_hz as f64),
            lanes: KLanes::new(),
            use_fma: avx2_fma_available(),
            tick_remaining: 1,
            tick_count: 0,
            tick_starts: (0..=(TICK_TABLE_OFFSET as u64 + TICKS_PER_SECOND))
                .map(|k| k * sample_rate_hz / TICKS_PER_SECOND)
                .collect(),
            ring: TickRing::new(),
            momentary_ms: 0.0,
            short_term_ms: 0.0,
            max_momentary_ms: 0.0,
            max_short_term_ms: 0.0,
            ticks_since_reset: 0,
            blocks: LoudnessHistogram::new(),
            short_terms: LoudnessHistogram::new(),
            integrated_lufs: f64::NEG_INFINITY,
            lra_lu: f64::NEG_INFINITY,
        };
        meter.reset();
        meter
    }

    /// Sample rate in Hz the meter runs at.
    pub fn sample_rate(&self) -> f64 {
        self.sample_rate_hz as f64
    }

    /// The K-weighting coefficients in use.
    pub fn k_weighting(&self) -> &KWeighting {
        &self.k
    }

    /// Clears everything: filter states, windows, and the programme measurement.
    pub fn reset(&mut self) {
        self.lanes = KLanes::new();
        self.tick_count = 0;
        self.tick_remaining = self.tick_len(0);
        self.ring.clear();
        self.momentary_ms = 0.0;
        self.short_term_ms = 0.0;
        self.reset_programme();
    }

    /// Restarts the programme measurement: integrated loudness, LRA and the maxima, as for a
    /// new meter: the first gating block ends 400 ms and the first LRA value 3 s after this
    /// call, and the maxima count audio from before it as silence. The momentary and
    /// short-term display values keep their windows (no gap in the display).
    pub fn reset_programme(&mut self) {
        self.ticks_since_reset = 0;
        self.max_momentary_ms = 0.0;
        self.max_short_term_ms = 0.0;
        self.blocks.clear();
        self.short_terms.clear();
        self.integrated_lufs = f64::NEG_INFINITY;
        self.lra_lu = f64::NEG_INFINITY;
    }

    /// Meters a block (any length; the shorter slice sets it). Samples should be finite (the
    /// engine sanitises them); a non-finite value costs at most one tick of measurement, never
    /// the meter.
    pub fn process(&mut self, left: &[f32], right: &[f32]) {
        let n = left.len().min(right.len());
        let (mut l, mut r) = (&left[..n], &right[..n]);
        while !l.is_empty() {
            let len = l.len().min(self.tick_remaining);
            self.process_segment(&l[..len], &r[..len]);
            l = &l[len..];
            r = &r[len..];
        }
    }

    /// Samples left before the current 5 ms tick completes (≥ 1).
    #[inline]
    pub fn samples_to_tick(&self) -> usize {
        self.tick_remaining
    }

    /// Meters a segment that does not cross a tick boundary (`left.len()` ≤
    /// [`Self::samples_to_tick`], longer input is cut there). Returns true when the segment
    /// completed a tick (the windows and the programme measurement were just updated).
    pub fn process_segment(&mut self, left: &[f32], right: &[f32]) -> bool {
        let n = left.len().min(right.len()).min(self.tick_remaining);
        let (left, right) = (&left[..n], &right[..n]);
        if self.use_fma {
            // SAFETY: `use_fma` is only set when the CPU has AVX2 and FMA.
            unsafe { fma_stereo(&mut self.lanes, &self.k, left, right) };
        } else {
            // SAFETY: no requirement without FMA.
            unsafe { self.lanes.process_stereo::<false>(&self.k, left, right) };
        }
        if self.advance(n) {
            let [el, er] = self.lanes.take_tick(&self.k);
            self.close_tick(el + er);
            true
        } else {
            false
        }
    }

    /// Counts `frames` samples (at most [`Self::samples_to_tick`]) that were K-weighted
    /// outside this meter (the meters' own filter lanes; coefficients from
    /// [`Self::k_weighting`]). Returns true when they complete the current tick, which the
    /// caller must then close with [`Self::close_tick`].
    #[inline]
    pub(crate) fn advance(&mut self, frames: usize) -> bool {
        self.tick_remaining -= frames.min(self.tick_remaining);
        self.tick_remaining == 0
    }

    /// Length in samples of tick `k`: `⌊(k+1)·fs/200⌋ − ⌊k·fs/200⌋` (periodic in `k` with
    /// period 200 since `fs` is whole).
    fn tick_len(&self, k: u64) -> usize {
        let k = (k % TICKS_PER_SECOND) as usize;
        (self.tick_starts[k + 1] - self.tick_starts[k]) as usize
    }

    /// Samples in the `ticks` ticks (≤ [`SHORT_TERM_TICKS`]) that end at tick boundary `end`
    /// (zero-padded before the start, like a window over an initially silent signal).
    fn span(&self, end: u64, ticks: usize) -> f64 {
        let end = (end % TICKS_PER_SECOND) as usize + TICK_TABLE_OFFSET;
        (self.tick_starts[end] - self.tick_starts[end - ticks.min(SHORT_TERM_TICKS)]) as f64
    }

    /// Σ of the last `ticks` tick energies.
    fn ring_sum(&self, ticks: usize) -> f64 {
        self.ring.sum_last(ticks)[0]
    }

    /// Closes a tick whose K-weighted energy (`Σ` over both channels of the K-weighted
    /// squares) is `energy`: windows, maxima, gating blocks, LRA values. A non-finite energy
    /// (non-finite input reached the filter, which has restarted itself) drops the tick.
    pub(crate) fn close_tick(&mut self, energy: f64) {
        let energy = if energy.is_finite() { energy } else { 0.0 };
        self.ring.push([energy]);
        self.tick_count += 1;
        self.ticks_since_reset += 1;
        self.tick_remaining = self.tick_len(self.tick_count);

        self.momentary_ms =
            self.ring_sum(MOMENTARY_TICKS) / self.span(self.tick_count, MOMENTARY_TICKS);
        self.short_term_ms =
            self.ring_sum(SHORT_TERM_TICKS) / self.span(self.tick_count, SHORT_TERM_TICKS);
        // The maxima belong to the measurement since the reset: windows reaching back before
        // it count that audio as silence (the display values above keep their full windows).
        let t = self.ticks_since_reset;
        let since_reset = |ticks: usize, full: f64| {
            if t >= ticks as u64 {
                full
            } else {
                self.ring_sum(t as usize) / self.span(self.tick_count, ticks)
            }
        };
        let m = since_reset(MOMENTARY_TICKS, self.momentary_ms);
        let s = since_reset(SHORT_TERM_TICKS, self.short_term_ms);
        self.max_momentary_ms = self.max_momentary_ms.max(m);
        self.max_short_term_ms = self.max_short_term_ms.max(s);

        let momentary = MOMENTARY_TICKS as u64;
        if t >= momentary && (t - momentary).is_multiple_of(BLOCK_STEP_TICKS) {
            let lufs = energy_to_lufs(self.momentary_ms);
            if lufs > ABSOLUTE_GATE_LUFS {
                self.blocks.add(self.momentary_ms, lufs);
                self.integrated_lufs = self.blocks.gated_mean_lufs(RELATIVE_GATE_LU);
            }
        }
        let short = SHORT_TERM_TICKS as u64;
        if t >= short && (t - short).is_multiple_of(BLOCK_STEP_TICKS) {
            let lufs = energy_to_lufs(self.short_term_ms);
            if lufs >= ABSOLUTE_GATE_LUFS {
                self.short_terms.add(self.short_term_ms, lufs);
                self.lra_lu = self.short_terms.loudness_range_lu();
            }
        }
    }

    /// Momentary loudness (last 400 ms, updated every 5 ms), LUFS; −∞ for silence.
    pub fn momentary_lufs(&self) -> f64 {
        energy_to_lufs(self.momentary_ms)
    }

    /// Short-term loudness (last 3 s, updated every 5 ms), LUFS; −∞ for silence.
    pub fn short_term_lufs(&self) -> f64 {
        energy_to_lufs(self.short_term_ms)
    }

    /// Integrated (gated) loudness since the programme reset, LUFS, updated every 100 ms;
    /// −∞ until a gating block passes the absolute gate.
    pub fn integrated_lufs(&self) -> f64 {
        self.integrated_lufs
    }

    /// Loudness range (EBU Tech 3342) since the programme reset, LU, updated every 100 ms;
    /// −∞ until a short-term value passes the absolute gate (3 s at the earliest).
    pub fn loudness_range_lu(&self) -> f64 {
        self.lra_lu
    }

    /// Largest momentary loudness since the programme reset, LUFS; −∞ for silence.
    pub fn max_momentary_lufs(&self) -> f64 {
        energy_to_lufs(self.max_momentary_ms)
    }

    /// Largest short-term loudness since the programme reset, LUFS; −∞ for silence.
    pub fn max_short_term_lufs(&self) -> f64 {
        energy_to_lufs(self.max_short_term_ms)
    }

    /// Momentary mean square (K-weighted, summed over both channels), linear.
    pub fn momentary_energy(&self) -> f64 {
        self.momentary_ms
    }

    /// Short-term mean square (K-weighted, summed over both channels), linear.
    pub fn short_term_energy(&self) -> f64 {
        self.short_term_ms
    }

    /// Largest momentary mean square since the programme reset, linear.
    pub fn max_momentary_energy(&self) -> f64 {
        self.max_momentary_ms
    }

    /// Largest short-term mean square since the programme reset, linear.
    pub fn max_short_term_energy(&self) -> f64 {
        self.max_short_term_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    #[test]
    fn coefficients_match_bs1770_table_at_48k() {
        // ITU-R BS.1770-4, Annex 1, tables 1 and 2.
        let k = KWeighting::new(48_000.0);
        let shelf_b = [1.53512485958697, -2.69169618940638, 1.19839281085285];
        let shelf_a = [-1.69065929318241, 0.73248077421585];
        let hp_a = [-1.99004745483398, 0.99007225036621];
        for (x, y) in k.shelf.b.iter().zip(shelf_b) {
            assert!((x - y).abs() < 1e-8, "{x} vs {y}");
        }
        for (x, y) in k.shelf.a.iter().zip(shelf_a) {
            assert!((x - y).abs() < 1e-8, "{x} vs {y}");
        }
        for (x, y) in k.high_pass.a.iter().zip(hp_a) {
            assert!((x - y).abs() < 1e-8, "{x} vs {y}");
        }
        assert_eq!(k.high_pass.b, [1.0, -2.0, 1.0]);
        // The ebur128 crate (libebur128) derivation at 48 kHz agrees to ~1e-9 as well; at
        // other rates only the high-pass passband gain differs (see `KWeighting`).
    }

    #[test]
    fn response_is_the_same_curve_at_every_rate() {
        // Well below Nyquist the analog-derived filters agree across rates.
        let reference = KWeighting::new(192_000.0);
        for fs in [44_100.0, 48_000.0, 88_200.0, 96_000.0] {
            let k = KWeighting::new(fs);
            for f in [20.0, 38.0, 100.0, 1000.0, 1681.0, 5000.0, 10_000.0] {
                let d = k.response_db(f) - reference.response_db(f);
                // Bilinear warping grows towards Nyquist: 0.006 dB at 1 kHz, < 0.1 dB at 10 kHz
                // (44.1 kHz vs 192 kHz).
                let tol = if f > 4000.0 {
                    0.1
                } else if f > 500.0 {
                    0.02
                } else {
                    0.002
                };
                assert!(d.abs() < tol, "fs {fs}, f {f}: {d} dB");
            }
        }
        // Shape: −∞ at DC, ≈ +0.69 dB at 1 kHz (which the −0.691 offset cancels), ≈ +4 dB above.
        let k = KWeighting::new(48_000.0);
        assert!((k.response_db(997.0) - 0.69).abs() < 0.02);
        assert!((k.response_db(8000.0) - 4.0).abs() < 0.3);
        assert!(k.response_db(10.0) < -10.0);
    }

    fn sine(fs: f64, freq: f64, amp: f64, len: usize) -> Vec<f32> {
        (0..len)
            .map(|n| (amp * (2.0 * PI * freq * n as f64 / fs).sin()) as f32)
            .collect()
    }

    #[test]
    fn full_scale_997_hz_reads_minus_3_lufs_per_channel() {
        // BS.1770-4: a 0 dBFS 997 Hz sine in one channel reads −3.01 LKFS.
        let fs = 48_000.0;
        let x = sine(fs, 997.0, 1.0, 48_000 * 4);
        let silence = vec![0.0f32; x.len()];
        let mut m = LoudnessMeter::new(fs as f32);
        m.process(&x, &silence);
        assert!(
            (m.momentary_lufs() + 3.01).abs() < 0.02,
            "{}",
            m.momentary_lufs()
        );
        assert!((m.short_term_lufs() + 3.01).abs() < 0.02);
        assert!((m.integrated_lufs() + 3.01).abs() < 0.02);
    }

    #[test]
    fn ticks_cover_exact_windows_at_44_1k() {
        let m = LoudnessMeter::new(44_100.0);
        let total: usize = (0..200).map(|k| m.tick_len(k)).sum();
        assert_eq!(total, 44_100);
        for end in 0..400 {
            assert_eq!(m.span(end, MOMENTARY_TICKS), 17_640.0);
            assert_eq!(m.span(end, SHORT_TERM_TICKS), 132_300.0);
        }
    }

    #[test]
    fn block_splitting_does_not_change_results() {
        let fs = 44_100.0;
        let x: Vec<f32> = (0..fs as usize * 5)
            .map(|n| ((n as f64 * 0.05).sin() * (n as f64 * 0.0003).cos()) as f32 * 0.3)
            .collect();
        let y: Vec<f32> = x.iter().rev().copied().collect();
        let mut a = LoudnessMeter::new(fs as f32);
        a.process(&x, &y);
        let mut b = LoudnessMeter::new(fs as f32);
        let mut pos = 0;
        let mut step = 1;
        while pos < x.len() {
            let end = (pos + step).min(x.len());
            b.process(&x[pos..end], &y[pos..end]);
            pos = end;
            step = (step * 7 + 3) % 1000 + 1;
        }
        assert_eq!(a.momentary_lufs(), b.momentary_lufs());
        assert_eq!(a.short_term_lufs(), b.short_term_lufs());
        assert_eq!(a.integrated_lufs(), b.integrated_lufs());
        assert_eq!(a.loudness_range_lu(), b.loudness_range_lu());
    }

    /// Reference K-weighting: the two biquads of [`KWeighting`] in plain direct form I, one
    /// channel, returning `Σ z²` (with the high-pass gain `g` in its numerator).
    fn reference_energy(k: &KWeighting, x: &[f32]) -> f64 {
        let mut e = 0.0;
        let mut s = [[0.0f64; 4]; 2];
        for &v in x {
            let mut v = v as f64;
            for (q, st) in [k.shelf, k.high_pass].iter().zip(&mut s) {
                let y =
                    q.b[0] * v + q.b[1] * st[0] + q.b[2] * st[1] - q.a[0] * st[2] - q.a[1] * st[3];
                *st = [v, st[0], y, st[2]];
                v = y;
            }
            e += v * v;
        }
        e
    }

    #[test]
    fn lanes_match_the_reference_filter_with_and_without_fma() {
        let k = KWeighting::new(44_100.0);
        let x: Vec<f32> = (0..5000)
            .map(|n| ((n * 7919) % 201) as f32 / 100.0 - 1.0)
            .collect();
        let y: Vec<f32> = x.iter().map(|v| v * -0.5 + 0.1).collect();
        let want = [reference_energy(&k, &x), reference_energy(&k, &y)];
        let mut plain = KLanes::<2>::new();
        plain.process::<false>(&k, x.len(), &[&x[..], &y[..]]);
        let mut results = vec![plain.take_tick(&k)];
        if avx2_fma_available() {
            let mut fused = KLanes::<2>::new();
            // SAFETY: AVX2 and FMA were just detected.
            unsafe { fma_stereo(&mut fused, &k, &x, &y) };
            results.push(fused.take_tick(&k));
        }
        // Four lanes, frames interleaved: the same per-lane results.
        let frames: Vec<[f32; 4]> = x.iter().zip(&y).map(|(&a, &b)| [a, b, b, a]).collect();
        let mut four = KLanes::<4>::new();
        four.process::<false>(&k, frames.len(), &&frames[..]);
        let e4 = four.take_tick(&k);
        results.push([e4[0], e4[1]]);
        results.push([e4[3], e4[2]]);
        for got in results {
            for c in 0..2 {
                assert!(
                    (got[c] - want[c]).abs() <= 1e-9 * want[c],
                    "{got:?} vs {want:?}"
                );
            }
        }
    }

    #[test]
    fn single_precision_lanes_match_double_precision() {
        // Eight signals that stress the f32 recursion: low and mid sines, noise, a sine on a
        // large DC offset, a near-silent signal, a full-scale square wave.
        for fs in [44_100.0, 48_000.0, 192_000.0] {
            let k = KWeighting::new(fs);
            let mut seed = 1u32;
            let mut noise = move || {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            };
            let len = fs as usize;
            let signals: Vec<Vec<f32>> = (0..8)
                .map(|c| {
                    (0..len)
                        .map(|n| {
                            let t = n as f64 / fs;
                            let sin = |f: f64| (2.0 * PI * f * t).sin() as f32;
                            match c {
                                0 => 0.5 * sin(40.0),
                                1 => 0.5 * sin(997.0),
                                2 => 0.3 * noise(),
                                3 => 0.5 + 0.01 * sin(200.0),
                                4 => 1.0e-6 * sin(100.0),
                                5 => sin(50.0).signum(),
                                6 => 0.2 * noise() + 0.3 * sin(20.0),
                                _ => 0.8 * sin(15_000.0),
                            }
                        })
                        .collect()
                })
                .collect();
            let frames: Vec<[f32; 8]> = (0..len)
                .map(|n| std::array::from_fn(|c| signals[c][n]))
                .collect();
            let mut builds = Vec::new();
            let mut plain = KLanes8::new();
            // SAFETY: no requirement without FMA.
            unsafe { plain.process::<false>(&k, &frames) };
            builds.push(plain.take_tick(&k));
            if avx2_fma_available() {
                #[target_feature(enable = "avx2,fma")]
                fn fused(lanes: &mut KLanes8, k: &KWeighting, x: &[[f32; 8]]) {
                    // SAFETY: compiled for AVX2 and FMA.
                    unsafe { lanes.process::<true>(k, x) };
                }
                let mut lanes = KLanes8::new();
                // SAFETY: AVX2 and FMA were just detected.
                unsafe { fused(&mut lanes, &k, &frames) };
                builds.push(lanes.take_tick(&k));
            }
            for (c, x) in signals.iter().enumerate() {
                let mut double = KLanes::<1>::new();
                double.process::<false>(&k, len, &[&x[..]]);
                let want = double.take_tick(&k)[0];
                for got in &builds {
                    let db = 10.0 * (got[c] / want).log10();
                    assert!(db.abs() < 0.005, "fs {fs}, signal {c}: {db} dB");
                }
            }
        }
    }

    #[test]
    fn tick_ring_sums_match_direct_sums() {
        let mut ring = TickRing::<2, 60, 20>::new();
        let mut all: Vec<[f64; 2]> = Vec::new();
        for t in 0..500usize {
            // A burst of 1e12 among small values: the sums must forget it exactly.
            let v = if t == 100 {
                1.0e12
            } else {
                (t % 7) as f64 * 0.25
            };
            ring.push([v, -v]);
            all.push([v, -v]);
            for ticks in [1, 7, 19, 20, 21, 40, 59, 60] {
                let want: f64 = all.iter().rev().take(ticks).map(|e| e[0]).sum();
                let got = ring.sum_last(ticks);
                assert_eq!(got[0], want, "tick {t}, window {ticks}");
                assert_eq!(got[1], -want);
            }
        }
    }

    #[test]
    fn silence_is_minus_infinity() {
        let mut m = LoudnessMeter::new(48_000.0);
        m.process(&[0.0; 48_000 * 4], &[0.0; 48_000 * 4]);
        assert_eq!(m.momentary_lufs(), f64::NEG_INFINITY);
        assert_eq!(m.short_term_lufs(), f64::NEG_INFINITY);
        assert_eq!(m.integrated_lufs(), f64::NEG_INFINITY);
        assert_eq!(m.loudness_range_lu(), f64::NEG_INFINITY);
        assert_eq!(m.max_momentary_lufs(), f64::NEG_INFINITY);
    }

    #[test]
    fn non_finite_input_never_sticks() {
        let fs = 48_000.0;
        let x = sine(fs, 1000.0, 0.1, 48_000 * 4);
        let mut m = LoudnessMeter::new(fs as f32);
        m.process(&x[..1000], &x[..1000]);
        m.process(
            &[f32::NAN, f32::INFINITY, 1.0e30],
            &[f32::NEG_INFINITY, 0.0, -1.0e38],
        );
        m.process(&x, &x);
        for v in [m.momentary_lufs(), m.short_term_lufs(), m.integrated_lufs()] {
            assert!(v.is_finite(), "{v}");
        }
        // −20 dBFS sine on both channels: ≈ −20 LUFS, unaffected once the bad tick has left.
        assert!(
            (m.momentary_lufs() + 20.0).abs() < 0.05,
            "{}",
            m.momentary_lufs()
        );
    }

    #[test]
    fn histogram_gating_matches_exact_gating() {
        // Values with a continuous spread: the histogram result equals the exact one within
        // a bin width.
        let mut h = LoudnessHistogram::new();
        let mut exact = Vec::new();
        let mut seed = 7u32;
        for _ in 0..5000 {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let lufs = -60.0 + 50.0 * (seed >> 8) as f64 / (1u32 << 24) as f64;
            let e = lufs_to_energy(lufs);
            h.add(e, lufs);
            exact.push(e);
        }
        let mean = exact.iter().sum::<f64>() / exact.len() as f64;
        let gate = energy_to_lufs(mean) - 10.0;
        let kept: Vec<f64> = exact
            .iter()
            .copied()
            .filter(|&e| energy_to_lufs(e) > gate)
            .collect();
        let want = energy_to_lufs(kept.iter().sum::<f64>() / kept.len() as f64);
        let got = h.gated_mean_lufs(RELATIVE_GATE_LU);
        assert!((want - got).abs() < 0.01, "{want} vs {got}");

        let gate = energy_to_lufs(mean) - 20.0;
        let mut kept: Vec<f64> = exact
            .iter()
            .map(|&e| energy_to_lufs(e))
            .filter(|&l| l >= gate)
            .collect();
        kept.sort_by(|a, b| a.total_cmp(b));
        let n = kept.len();
        let want = kept[((n - 1) as f64 * 0.95).round() as usize]
            - kept[((n - 1) as f64 * 0.10).round() as usize];
        let got = h.loudness_range_lu();
        assert!(
            (want - got).abs() < 2.0 * HISTOGRAM_BIN_LU,
            "{want} vs {got}"
        );
    }
}
