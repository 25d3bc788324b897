//! 4× oversampling for non-linear processing (the saturation), built from linear-phase FIR
//! stages so that the round trip is a pure, exact, integer delay of [`LATENCY`] base-rate
//! samples, whatever the sample rate. The engine aligns its dry paths with that number.
//!
//! ```text
//! x (fs) ─► up 1: half-band, 43 taps ─► up 2: half-band, 11 taps ─► f(·) at 4·fs
//!        ◄─ down 1: low-pass, 69 taps ◄─ down 2: half-band, 11 taps ◄─┘
//! ```
//!
//! The filters are equiripple designs (Parks–McClellan for the half-bands, a linear programme
//! for the last decimator) made by the script next to the coefficient tables below. At 48 kHz
//! (everything scales with the sample rate):
//!
//! * **Up 1** (fs → 2·fs), half-band of `4K − 1 = 43` taps (`K = 11`), flat to 20 kHz: rejects
//!   the images of 0–20 kHz (28–48 kHz at 2·fs) by ≥ 64 dB.
//! * **Up 2 / down 2** (2·fs ↔ 4·fs), the same half-band of 11 taps (`K = 3`), flat to 20 kHz:
//!   rejects 76–96 kHz by ≥ 66 dB.
//! * **Down 1** (2·fs → fs), low-pass of 69 taps: ≥ 65 dB from 25 kHz up, so whatever the
//!   curve makes between 25 and 48 kHz (at 2·fs) folds back ≥ 65 dB down. Its pass band is
//!   `1/(H₁·H₂²)` within ±10⁻³, i.e. it also cancels the ripple of the three half-bands: the
//!   whole round trip is flat within ±0.009 dB (±10⁻³) from DC to 20 kHz, DC gain 1.
//!
//! Everything made at 4·fs that would fold below 20 kHz comes back ≥ 65 dB down; what folds
//! into 20–24 kHz (made at 24–25 kHz or 72–76 kHz, the transition bands) ≥ 24 dB, resp. ≥ 53 dB
//! down. A half-band only is −6 dB at its Nyquist, which is why the last decimator is a full
//! low-pass: a 5 kHz tone's 5th harmonic (25 kHz) would otherwise alias to 23 kHz almost
//! unattenuated.
//!
//! Half-bands (`N = 4K − 1` taps, centre `c = 2K − 1`) have `h[c] = ½` and `h[c ± 2i] = 0`, so
//! only the `2K` taps `h[0], h[2], …, h[4K − 2]` multiply.
//!
//! **Polyphase form.** No signal is ever interleaved: the 2·fs signal is kept as its even and
//! odd base-rate streams (`v[2m] = vₑ[m]`, `v[2m + 1] = vₒ[m]`), the 4·fs one as four
//! (`w[4m + p] = w_p[m]`), and every filter is written as short FIRs over those streams. With
//! `a_j = h₁[2j]` (`j < 22`), `b_j = h₂[2j]` (`j < 6`) and `d_i` (`i < 69`):
//!
//! ```text
//! up 1:   vₑ[m] = 2·Σ_{j<22} a_j·x[m − j]                   vₒ[m] = x[m − 10]
//! up 2:   w₀[m] = 2·(Σ_{i<3} b_{2i}·vₑ[m − i] + Σ_{i<3} b_{2i+1}·vₒ[m − 1 − i])
//!         w₂[m] = 2·(Σ_{i<3} b_{2i}·vₒ[m − i] + Σ_{i<3} b_{2i+1}·vₑ[m − i])
//!         w₁[m] = vₑ[m − 1]                                   w₃[m] = vₒ[m − 1]
//! f:      s_p[m] = f(w_p[m])                                  (p = 0..3, at 4·fs)
//! down 2: uₑ[m] = Σ_{i<3} b_{2i}·s₀[m − i] + Σ_{i<3} b_{2i+1}·s₂[m − 1 − i] + ½·s₃[m − 2]
//!         uₒ[m] = Σ_{i<3} b_{2i}·s₂[m − i] + Σ_{i<3} b_{2i+1}·s₀[m − i] + ½·s₁[m − 1]
//! down 1: y[m] = Σ_{j<35} d_{2j}·uₑ[m − j] + Σ_{j<34} d_{2j+1}·uₒ[m − 1 − j]
//! ```
//!
//! (the zero-stuffing forms `v[n] = 2·Σ_i h₁[i]·x↑[n − i]`, `u[n] = Σ_i h₂[i]·s[2n − i]`, …
//! split by the parity of the indices).
//!
//! **Latency.** Group delays: 21 (up 1, at 2·fs), 5 + 5 (up 2 and down 2, at 4·fs = 5 at
//! 2·fs) and 34 (down 1, at 2·fs): 60 samples at 2·fs = 30 base samples (checked by a test:
//! the impulse response is symmetric about sample 30).
//!
//! **Cost** per base sample and channel: 22 + 12 + 14 + 69 = 117 taps and four calls of the
//! non-linearity (the previous 4× chain, designed for ≥ 79 dB, took 253). Every filter is
//! linear-phase, so its taps come in equal pairs: the two inputs of a pair are added first
//! and multiplied once (11 + 6 + 8 + 35 = 60 multiply-adds and 57 additions, which run on
//! other pipes). The work is done on tiles of [`MAX_BLOCK`] base samples, pass by pass (up 1,
//! up 2, the non-linearity, down 2, down 1), in vectors of eight consecutive frames of one
//! stream (`F32x8`: plain arrays, or one AVX register when the caller runs
//! `Oversampler4x::process_tile` inside a function compiled for AVX2 and FMA, after
//! [`avx2_fma_available`](crate::util::avx2_fma_available), as the saturation does). The long
//! FIRs (up 1, down 1) keep four vectors of outputs in registers and load each input vector
//! once for several pairs (see `sym_run`). The input is kept ([`HISTORY`] samples) so that
//! the caller gets it back delayed by [`LATENCY`], aligned with the output (the dry path),
//! and can rebuild the state from it.
//!
//! Measured (session 4, AMD Zen 3, AVX2 build, 8 stems × stereo at drive 6 dB in 128-frame
//! chunks, old and new build alternating in one process, best of 15): the pairs ≈ 1.07× on
//! the whole saturation, the output mixed straight from the registers of the last filter (no
//! copies of the wet and dry tiles) ≈ 1.02×, tiles of 128 frames instead of 64 (half the
//! per-tile line shifts and set-up) ≈ 1.06×; with the curve's drive folded into its clamp
//! (`crate::saturation`) ≈ 1.2× in all (9.5 → 8.0 ns per stereo frame). What did not pay:
//! eight accumulators per filter with pairs (more registers than there are: spills), a
//! reciprocal estimate with a Newton step instead of the curve's division (the curve is bound
//! by its multiply-adds, not the divider), and the two channels' passes interleaved (the
//! compiler then lost the constant-size copies).
//!
//! Session 6 (same machine, 8 stems at drive 12 dB, mix 0.7, in the engine's 128-frame
//! chunks, best of 4000 timed 2048-frame runs, old and new binaries alternating): where the
//! time goes, by taking passes out: up 1 ≈ 13 %, up 2 + down 2 ≈ 16 %, the curve ≈ 30 %,
//! down 1 ≈ 37 %, the rest (sanitising, controls, mix, line shifts) ≈ 13 %. The line
//! shifts now copy at most 256 bytes at once (the input line's history was a `memcpy` call
//! per tile and channel). What did not pay (all bit-identical unless said): up 2, the curve
//! and down 2 fused into one pass per vector, straight or with down 2 two vectors behind
//! (≈ 1.05–1.10× slower: each iteration's chain, loads → up 2 → curve, is longer than the
//! core's window covers); one channel's down 1 interleaved group by group with the other's
//! curve (≈ 1.06× slower); down 1 with two accumulator chains per output (even and odd
//! branch, or alternating runs; not bit-identical) or two groups interleaved run by run
//! (spills; no gain or slower); coefficients pre-broadcast in memory as operands of the
//! multiply-adds (no change); groups of 2 or 8 vectors (slower); the clamp as `min(|v|, L)`
//! with the sign put back by a bit operation (slower). Probes with wrong results: half the
//! window loads of up 1 and down 1 gone (same arithmetic) ≈ 2.5 % faster, the coefficient
//! broadcasts gone no faster: the filters are not bound by loads, broadcasts or one
//! accumulator chain alone.
//! Allocation-free after `new`.

use crate::util::sanitize;

/// Oversampling factor.
pub const FACTOR: usize = 4;

/// Round-trip delay in base-rate samples (exact, integer, independent of the sample rate).
pub const LATENCY: usize = 30;

/// Base-rate frames per tile (the filters always compute whole tiles).
pub const MAX_BLOCK: usize = 128;

/// One value per base-rate frame of a tile.
pub type Tile = [f32; MAX_BLOCK];

/// Stage 1 half-band: `K`, so `N = 4K − 1 = 43` taps, `2K = 22` non-zero side taps.
const UP1_K: usize = 11;
/// Stage 2 half-band: `K`, so `N = 11` taps, 6 non-zero side taps.
const HB2_K: usize = 3;
/// Length of the stage 1 decimating low-pass (`≡ 1 mod 4`, so its group delay, 34, is even
/// and the total delay lands on a base-rate sample).
const DOWN1_LEN: usize = 69;

/// Input samples the oversampler keeps ([`Oversampler4x::input_history`]): the span of input
/// its state depends on (`2·LATENCY + 2`: the impulse response and the one sample of history
/// the last decimator keeps beyond it) and a little more, so that a caller can rebuild the
/// exact state from them (a warm restart), and at least [`LATENCY`] for the dry path.
pub const HISTORY: usize = 2 * LATENCY + 8;

/// History of the input line: up 1 reads back to `x[m − 21]`, the dry path to
/// `x[m − LATENCY]`, and [`HISTORY`] samples are kept for a warm restart.
const X_HIST: usize = HISTORY;

const _: () = assert!(X_HIST >= 2 * UP1_K - 1 && X_HIST >= LATENCY && HISTORY >= 2 * LATENCY + 2);
/// History of the `vₑ` line (up 2 reads back to `vₑ[m − 2]`).
const V_HIST: usize = HB2_K - 1;
/// `vₒ[m] = x[m − VO_DELAY]`: the odd 2·fs samples are the input, delayed by up 1's centre.
const VO_DELAY: usize = UP1_K - 1;
/// History of the `s_p` lines (down 2 reads back to `s₂[m − 3]`).
const S_HIST: usize = HB2_K;
/// History of the `uₑ`, `uₒ` lines (down 1 reads back to `uₑ[m − 34]`, `uₒ[m − 34]`).
const U_HIST: usize = DOWN1_LEN / 2;

const _: () =
    assert!(DOWN1_LEN % 4 == 1 && (2 * UP1_K - 1 + 2 * HB2_K - 1 + DOWN1_LEN / 2) == 2 * LATENCY);
const _: () = assert!(
    HB2_K == 3,
    "the stage 2 polyphase formulas are written out for K = 3"
);

// Coefficients: the first half of each symmetric filter (the rest mirrors it), printed by this
// script (Python 3, numpy, scipy; frequencies in Hz at fs = 48 kHz):
//
// ```python
// import numpy as np
// from scipy.signal import remez
// from scipy.optimize import linprog
//
// def halfband_side_taps(k, pass_hz, rate_hz):
//     # Half-band of 4k − 1 taps, flat to pass_hz: h[2j] = g[j]/2 (centre ½), with g the 2k-tap
//     # equiripple (Parks–McClellan) type II filter approximating 1 on [0, 2·pass_hz/rate_hz].
//     g = remez(2 * k, [0.0, 2.0 * pass_hz / rate_hz], [1.0], fs=1.0)
//     return 0.5 * g
//
// def zero_phase(side, f_hz, rate_hz):
//     # Amplitude of the half-band about its centre: ½ + Σ_j side[j]·cos(2π f (2j − 2k + 1)/rate).
//     offsets = 2 * np.arange(len(side)) - (len(side) - 1)  # 2j − (2k − 1)
//     return 0.5 + np.cos(2 * np.pi * np.outer(f_hz, offsets) / rate_hz) @ side
//
// def decimator(taps, h1, h2, pass_hz, stop_hz, ripple):
//     # Linear-phase low-pass at 96 kHz, minimax stop band from stop_hz (linear programme), with
//     # the pass band equal to 1/(H1·H2²) within ±ripple (compensating the half-bands) and the
//     # round trip's DC gain exactly 1.
//     m = (taps - 1) // 2
//     fp = np.linspace(0.0, pass_hz, 500)
//     fs = np.linspace(stop_hz, 48_000.0, 800)
//     comp = zero_phase(h1, fp, 96_000.0) * zero_phase(h2, fp, 192_000.0) ** 2
//     basis = lambda f: np.cos(2 * np.pi * np.outer(f, np.arange(m + 1)) / 96_000.0) * np.r_[1.0, 2.0 * np.ones(m)]
//     bp = basis(fp) * comp[:, None]
//     bs = basis(fs)
//     a_ub = np.vstack([np.c_[bp, np.zeros(len(fp))], np.c_[-bp, np.zeros(len(fp))],
//                       np.c_[bs, -np.ones(len(fs))], np.c_[-bs, -np.ones(len(fs))]])
//     b_ub = np.r_[np.full(len(fp), 1 + ripple), np.full(len(fp), -(1 - ripple)), np.zeros(2 * len(fs))]
//     a_eq = np.r_[bp[0], 0.0][None, :]
//     cost = np.r_[np.zeros(m + 1), 1.0]
//     x = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=[1.0],
//                 bounds=[(None, None)] * (m + 2), method="highs").x
//     return np.r_[x[m:0:-1], x[:m + 1]]
//
// h1 = halfband_side_taps(11, 20_000.0, 96_000.0)
// h2 = halfband_side_taps(3, 20_000.0, 192_000.0)
// d = decimator(69, h1, h2, 20_000.0, 25_000.0, 1.0e-3)
// for name, v in [("UP1_HALF", h1[:11]), ("HB2_HALF", h2[:3]), ("DOWN1_HALF", d[:35])]:
//     print(f"const {name}: [f64; {len(v)}] = [")
//     for i in range(0, len(v), 3):
//         print("    " + " ".join(f"{float(x)!r}," for x in v[i:i + 3]))
//     print("];")
// ```

/// `h₁[0], h₁[2], …, h₁[20]`: the first half of the 22 side taps of up 1.
#[rustfmt::skip]
const UP1_HALF: [f64; 11] = [
    0.0008386115316423077, -0.001704014635655486, 0.0033207070665699197,
    -0.005834806157665963, 0.009574651193731583, -0.015022586876556346,
    0.02299861426623935, -0.03518378539261404, 0.05592923577022578,
    -0.10130298871208995, 0.31668231801787616,
];
/// `h₂[0], h₂[2], h₂[4]`: the first half of the 6 side taps of stage 2.
#[rustfmt::skip]
const HB2_HALF: [f64; 3] = [
    0.010152367786878015, -0.05897116805835896, 0.2990582012434373,
];
/// `d[0] … d[34]`: the first half of down 1, up to and including its centre tap.
#[rustfmt::skip]
const DOWN1_HALF: [f64; 35] = [
    -0.00021861326209238609, -0.0007116076939038276, 0.00016499130675459505,
    0.0009482907713555467, 0.0001047622788852836, -0.0014511100753668118,
    -0.0005197785564034944, 0.002054051998264428, 0.001345946620377794,
    -0.002530414302010782, -0.0024970223684981654, 0.002838423881062313,
    0.0039704372213066365, -0.0030459370723015236, -0.006148222521391071,
    0.002579209598023535, 0.008741062510513401, -0.001331255359745305,
    -0.01170977343555928, -0.000934507900541861, 0.015046250272058756,
    0.004702659342490018, -0.01847656171027938, -0.010368271155868278,
    0.021908601495460523, 0.01885955143086718, -0.024999299624904617,
    -0.031693943834820174, 0.027619527452278688, 0.05306886092149644,
    -0.029982182028263436, -0.09963579727683033, 0.031238211445402855,
    0.3161238984384055, 0.4683312098996241,
];

/// The symmetric filter of `N` taps whose first half is `half` (`N = 2·len − 1` with a centre
/// tap, `2·len` without), times `scale`, in `f32`.
const fn mirrored<const N: usize>(half: &[f64], scale: f64) -> [f32; N] {
    let mut out = [0.0f32; N];
    let mut i = 0;
    while i < N {
        let j = if i < half.len() { i } else { N - 1 - i };
        out[i] = (half[j] * scale) as f32;
        i += 1;
    }
    out
}

/// Every other element of `taps` from `first` (a polyphase branch).
const fn branch<const N: usize, const M: usize>(taps: &[f32; N], first: usize) -> [f32; M] {
    let mut out = [0.0f32; M];
    let mut i = 0;
    while i < M {
        out[i] = taps[first + 2 * i];
        i += 1;
    }
    out
}

/// Up 1: `2·a_j`, `j < 22` (the factor 2 restores the gain lost to zero stuffing).
const UP1: [f32; 2 * UP1_K] = mirrored(&UP1_HALF, 2.0);
/// Stage 2 side taps `b_j`, `j < 6`.
const HB2: [f32; 2 * HB2_K] = mirrored(&HB2_HALF, 1.0);
/// Stage 2 side taps doubled, for the interpolator.
const HB2_X2: [f32; 2 * HB2_K] = mirrored(&HB2_HALF, 2.0);
/// `2·b_{2i}`: up 2, taps on the stream of the same parity. (The taps on the other stream,
/// `b_{2i+1} = b_{4−2i}`, are the same in reverse order: `HB2` is symmetric by construction.)
const UP2_SAME: [f32; HB2_K] = branch(&HB2_X2, 0);
/// `b_{2i}`: down 2, taps on the stream of the same parity.
const DOWN2_SAME: [f32; HB2_K] = branch(&HB2, 0);
/// Down 1, all taps.
const DOWN1: [f32; DOWN1_LEN] = mirrored(&DOWN1_HALF, 1.0);
/// `d_{2j}`, `j < 35`: down 1 on `uₑ`.
const DOWN1_EVEN: [f32; DOWN1_LEN.div_ceil(2)] = branch(&DOWN1, 0);
/// `d_{2j+1}`, `j < 34`: down 1 on `uₒ`.
const DOWN1_ODD: [f32; DOWN1_LEN / 2] = branch(&DOWN1, 1);

/// Lanes per vector: the filters work on eight consecutive base-rate frames at a time.
pub(crate) const LANES: usize = 8;

/// Vectors per tile.
pub(crate) const VECTORS: usize = MAX_BLOCK / LANES;

const _: () = assert!(MAX_BLOCK.is_multiple_of(LANES));

/// Eight `f32` lanes, the unit every filter and the curve are written in: eight consecutive
/// base-rate frames of one stream. Two implementations: [`Portable`] (plain arrays, which the
/// compiler maps to SSE2/NEON) and, on x86-64, [`Avx2Fma`] (one AVX register, fused
/// multiply-adds), used only inside functions compiled with those features after the run-time
/// check ([`avx2_fma_available`](crate::util::avx2_fma_available)).
///
/// Why a hand-written vector type: the filters keep several vectors of outputs in registers
/// while they run over their taps, each input vector loaded once for several taps (see
/// `sym_run`), nothing stored until the end. Written as element-wise loops over a
/// tile, the compiler instead reloads and stores the accumulators every few taps, and loads,
/// not arithmetic, then bound the loop.
pub(crate) trait F32x8: Copy {
    /// Every lane `v`.
    fn splat(v: f32) -> Self;
    /// `s[0..8]`.
    fn load(s: &[f32; LANES]) -> Self;
    /// Writes the lanes to `s[0..8]`.
    fn store(self, s: &mut [f32; LANES]);
    /// `self·b + c` (fused in [`Avx2Fma`]).
    fn mul_add(self, b: Self, c: Self) -> Self;
    /// `self + b`.
    fn add(self, b: Self) -> Self;
    /// `self·b`.
    fn mul(self, b: Self) -> Self;
    /// `self / b`.
    fn div(self, b: Self) -> Self;
    /// `self` clamped to `[lo, hi]` (finite lanes).
    fn clamp(self, lo: Self, hi: Self) -> Self;
    /// `−self` (the sign bit flipped: no multiplication).
    fn neg(self) -> Self;
}

/// [`F32x8`] as a plain array (any target; multiply-adds not fused).
#[derive(Clone, Copy)]
pub(crate) struct Portable([f32; LANES]);

impl Portable {
    #[inline(always)]
    fn zip(self, b: Self, f: impl Fn(f32, f32) -> f32) -> Self {
        let mut out = [0.0; LANES];
        for ((o, &x), &y) in out.iter_mut().zip(&self.0).zip(&b.0) {
            *o = f(x, y);
        }
        Self(out)
    }
}

impl F32x8 for Portable {
    #[inline(always)]
    fn splat(v: f32) -> Self {
        Self([v; LANES])
    }
    #[inline(always)]
    fn load(s: &[f32; LANES]) -> Self {
        Self(*s)
    }
    #[inline(always)]
    fn store(self, s: &mut [f32; LANES]) {
        *s = self.0;
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        self.mul(b).add(c)
    }
    #[inline(always)]
    fn add(self, b: Self) -> Self {
        self.zip(b, |x, y| x + y)
    }
    #[inline(always)]
    fn mul(self, b: Self) -> Self {
        self.zip(b, |x, y| x * y)
    }
    #[inline(always)]
    fn div(self, b: Self) -> Self {
        self.zip(b, |x, y| x / y)
    }
    #[inline(always)]
    fn clamp(self, lo: Self, hi: Self) -> Self {
        self.zip(lo, |x, l| if x < l { l } else { x })
            .zip(hi, |x, h| if x > h { h } else { x })
    }
    #[inline(always)]
    fn neg(self) -> Self {
        self.zip(self, |x, _| -x)
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use avx2::Avx2Fma;

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{F32x8, LANES};
    use std::arch::x86_64::*;

    /// [`F32x8`] in one AVX register, multiply-adds fused. Only ever used inside a function
    /// compiled with `#[target_feature(enable = "avx2,fma")]` that runs after
    /// [`avx2_fma_available`](crate::util::avx2_fma_available) said yes: every method is
    /// inlined there, which is what makes its intrinsics sound.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2Fma(__m256);

    // SAFETY (every `unsafe` below): the intrinsics need AVX (and FMA for `mul_add`), which
    // the only callers, compiled for AVX2 + FMA and run after the CPU check, have; loads and
    // stores go through references to exactly eight `f32`.
    impl F32x8 for Avx2Fma {
        #[inline(always)]
        fn splat(v: f32) -> Self {
            Self(unsafe { _mm256_set1_ps(v) })
        }
        #[inline(always)]
        fn load(s: &[f32; LANES]) -> Self {
            Self(unsafe { _mm256_loadu_ps(s.as_ptr()) })
        }
        #[inline(always)]
        fn store(self, s: &mut [f32; LANES]) {
            unsafe { _mm256_storeu_ps(s.as_mut_ptr(), self.0) }
        }
        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            Self(unsafe { _mm256_fmadd_ps(self.0, b.0, c.0) })
        }
        #[inline(always)]
        fn add(self, b: Self) -> Self {
            Self(unsafe { _mm256_add_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn mul(self, b: Self) -> Self {
            Self(unsafe { _mm256_mul_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn div(self, b: Self) -> Self {
            Self(unsafe { _mm256_div_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn clamp(self, lo: Self, hi: Self) -> Self {
            Self(unsafe { _mm256_min_ps(_mm256_max_ps(self.0, lo.0), hi.0) })
        }
        #[inline(always)]
        fn neg(self) -> Self {
            Self(unsafe { _mm256_xor_ps(self.0, _mm256_set1_ps(-0.0)) })
        }
    }
}

/// The eight samples `line[i..i + 8]`.
#[inline(always)]
pub(crate) fn lanes(line: &[f32], i: usize) -> &[f32; LANES] {
    line[i..i + LANES].try_into().expect("eight samples")
}

/// The eight samples `line[i..i + 8]`, mutably.
#[inline(always)]
pub(crate) fn lanes_mut(line: &mut [f32], i: usize) -> &mut [f32; LANES] {
    (&mut line[i..i + LANES]).try_into().expect("eight samples")
}

/// A run of tap pairs of a symmetric FIR for [`sym_run`]: `(I, P)`, the taps `I + 8t`
/// (`t < P`), each with its mirror `N − 1 − I − 8t`.
type Run = (usize, usize);

/// Vectors per group: the symmetric FIRs work on four vectors (32 frames) of a tile at a
/// time (four accumulators, four `low` and four `high` inputs in registers: with more, the
/// compiler spills).
const GROUP: usize = 4;

/// One run `(I, P)` of tap pairs of a symmetric FIR of `N` taps `c` (`c[i] = c[N − 1 − i]`),
/// added to the four vectors of group `h` of the tile: `acc[k] += Σ_t c[I + 8t]·(x[m − I − 8t] +
/// x[m − (N − 1 − I − 8t)])`, with `window[N − 1 + j]` holding `x[m]` of the tile's `j`-th
/// frame (as for every FIR here).
///
/// Why: a linear-phase FIR has `c[i] = c[N − 1 − i]`, so adding the two inputs of a pair
/// first halves the multiply-adds (two per cycle on the development machine, AMD Zen 3) and
/// moves the other half to additions, which run on other pipes (Zen 3: two FP add pipes
/// beside the two multiply-add pipes). Measured: ≈ 1.07× on the whole saturation (the
/// filters were then no longer bound by their multiply-adds alone).
///
/// Loads: tap `i` of vector `k` reads the eight samples at `window[N − 1 + 8k − i]`, the
/// mirror those at `window[8k + i]`. Tap `i + 8` of vector `k + 1` reads where tap `i` of
/// vector `k` does, and the mirror of tap `i + 8` of vector `k` where that of tap `i` of
/// vector `k + 1` does: so going from one pair of the run to the next, the inputs of the
/// group shift by one vector and only two new ones are loaded (`8 + 2(P − 1)` loads for
/// `4P` pairs). Every output adds its pairs in one fixed order (run by run, `t` ascending),
/// whatever its place in the tile, so the result does not depend on how a signal is cut into
/// blocks.
#[inline(always)]
fn sym_run<V: F32x8, const N: usize, const I: usize, const P: usize>(
    acc: &mut [V; GROUP],
    c: &[f32; N],
    window: &[f32],
    h: usize,
) {
    const { assert!(P >= 1 && I + LANES * (P - 1) < N) };
    // Loads cannot move across this point (see `pass_barrier`): each run loads its inputs
    // where it uses them, instead of the compiler hoisting them all and spilling.
    std::hint::black_box(window.as_ptr());
    let base = LANES * GROUP * h;
    let window = &window[base..base + N - 1 + LANES * GROUP];
    let at = |i: usize| V::load(lanes(window, i));
    // `low[k]`: tap `I + 8t` of vector `k`; `high[k]`: its mirror.
    let mut low = [V::splat(0.0); GROUP];
    let mut high = [V::splat(0.0); GROUP];
    for k in 0..GROUP {
        low[k] = at(N - 1 + LANES * k - I);
        high[k] = at(LANES * k + I);
    }
    for t in 0..P {
        let ct = V::splat(c[I + LANES * t]);
        for k in 0..GROUP {
            acc[k] = ct.mul_add(low[k].add(high[k]), acc[k]);
        }
        if t + 1 < P {
            let i = I + LANES * (t + 1);
            low = [at(N - 1 - i), low[0], low[1], low[2]];
            high = [high[1], high[2], high[3], at(LANES * (GROUP - 1) + i)];
        }
    }
}

/// The centre tap `c[I]` (`I = (N − 1)/2`, odd `N`) of a symmetric FIR on group `h`
/// (see [`sym_run`]).
#[inline(always)]
fn centre_tap<V: F32x8, const N: usize, const I: usize>(
    acc: &mut [V; GROUP],
    c: &[f32; N],
    window: &[f32],
    h: usize,
) {
    const { assert!(2 * I + 1 == N) };
    let base = LANES * GROUP * h;
    let ci = V::splat(c[I]);
    for (k, a) in acc.iter_mut().enumerate() {
        *a = ci.mul_add(V::load(lanes(window, base + LANES * k + I)), *a);
    }
}

/// True if `runs` (see [`Run`]) visit every tap pair of a symmetric FIR of `n` taps exactly
/// once (and never the centre tap of an odd `n`).
const fn runs_cover_pairs(n: usize, runs: &[Run]) -> bool {
    let mut hits = [0u32; 64];
    let mut r = 0;
    while r < runs.len() {
        let (first, pairs) = runs[r];
        let mut t = 0;
        while t < pairs {
            let i = first + LANES * t;
            if i >= n || i == n - 1 - i {
                return false;
            }
            hits[i] += 1;
            hits[n - 1 - i] += 1;
            t += 1;
        }
        r += 1;
    }
    let mut i = 0;
    while i < n {
        let expected = if 2 * i + 1 == n { 0 } else { 1 };
        if hits[i] != expected {
            return false;
        }
        i += 1;
    }
    true
}

/// Up 1 (`N = 22`): the mirror of tap `i` is `21 − i`, so residue `r` (mod 8) pairs with
/// `(5 − r) mod 8`; the runs start at taps 0, 1, 2 (three pairs each) and 6 (two).
const UP1_RUNS: [Run; 4] = [(0, 3), (1, 3), (2, 3), (6, 2)];
/// Down 1 on `uₑ` (`N = 35`, centre tap 17): residues pair as `r ↔ (2 − r) mod 8`; runs
/// from 0 (five pairs), 1 (two), 3, 4 (four) and 5 (two).
const DOWN1_EVEN_RUNS: [Run; 5] = [(0, 5), (1, 2), (3, 4), (4, 4), (5, 2)];
/// Down 1 on `uₒ` (`N = 34`): residues pair as `r ↔ (1 − r) mod 8`; runs from 0 (five
/// pairs), 2, 3 and 4 (four).
const DOWN1_ODD_RUNS: [Run; 4] = [(0, 5), (2, 4), (3, 4), (4, 4)];

const _: () = assert!(
    runs_cover_pairs(2 * UP1_K, &UP1_RUNS)
        && runs_cover_pairs(DOWN1_LEN.div_ceil(2), &DOWN1_EVEN_RUNS)
        && runs_cover_pairs(DOWN1_LEN / 2, &DOWN1_ODD_RUNS)
);

/// Up 1 on the tile: `vₑ[m] = Σ_{j<22} 2a_j·x[m − j]`, written to the `vₑ` line.
#[inline(always)]
fn up1<V: F32x8>(x: &[f32], ve: &mut [f32]) {
    const N: usize = 2 * UP1_K;
    const R: [Run; 4] = UP1_RUNS;
    let window = &x[X_HIST + 1 - N..X_HIST + MAX_BLOCK];
    for h in 0..VECTORS / GROUP {
        let mut acc = [V::splat(0.0); GROUP];
        sym_run::<V, N, { R[0].0 }, { R[0].1 }>(&mut acc, &UP1, window, h);
        sym_run::<V, N, { R[1].0 }, { R[1].1 }>(&mut acc, &UP1, window, h);
        sym_run::<V, N, { R[2].0 }, { R[2].1 }>(&mut acc, &UP1, window, h);
        sym_run::<V, N, { R[3].0 }, { R[3].1 }>(&mut acc, &UP1, window, h);
        for (k, a) in acc.into_iter().enumerate() {
            a.store(lanes_mut(ve, V_HIST + LANES * (GROUP * h + k)));
        }
    }
}

/// Down 1 on the tile: `y[m] = Σ_{j<35} d_{2j}·uₑ[m − j] + Σ_{j<34} d_{2j+1}·uₒ[m − 1 − j]`
/// (both branches are symmetric themselves).
#[inline(always)]
fn down1<V: F32x8>(ue: &[f32], uo: &[f32]) -> [V; VECTORS] {
    const E: usize = DOWN1_LEN.div_ceil(2);
    const O: usize = DOWN1_LEN / 2;
    const RE: [Run; 5] = DOWN1_EVEN_RUNS;
    const RO: [Run; 4] = DOWN1_ODD_RUNS;
    let we = &ue[U_HIST + 1 - E..U_HIST + MAX_BLOCK];
    let wo = &uo[U_HIST - O..U_HIST - 1 + MAX_BLOCK];
    let mut out = [V::splat(0.0); VECTORS];
    for h in 0..VECTORS / GROUP {
        let mut acc = [V::splat(0.0); GROUP];
        sym_run::<V, E, { RE[0].0 }, { RE[0].1 }>(&mut acc, &DOWN1_EVEN, we, h);
        sym_run::<V, E, { RE[1].0 }, { RE[1].1 }>(&mut acc, &DOWN1_EVEN, we, h);
        sym_run::<V, E, { RE[2].0 }, { RE[2].1 }>(&mut acc, &DOWN1_EVEN, we, h);
        sym_run::<V, E, { RE[3].0 }, { RE[3].1 }>(&mut acc, &DOWN1_EVEN, we, h);
        sym_run::<V, E, { RE[4].0 }, { RE[4].1 }>(&mut acc, &DOWN1_EVEN, we, h);
        centre_tap::<V, E, { E / 2 }>(&mut acc, &DOWN1_EVEN, we, h);
        sym_run::<V, O, { RO[0].0 }, { RO[0].1 }>(&mut acc, &DOWN1_ODD, wo, h);
        sym_run::<V, O, { RO[1].0 }, { RO[1].1 }>(&mut acc, &DOWN1_ODD, wo, h);
        sym_run::<V, O, { RO[2].0 }, { RO[2].1 }>(&mut acc, &DOWN1_ODD, wo, h);
        sym_run::<V, O, { RO[3].0 }, { RO[3].1 }>(&mut acc, &DOWN1_ODD, wo, h);
        out[GROUP * h..GROUP * (h + 1)].copy_from_slice(&acc);
    }
    out
}

/// Keeps the compiler from moving the loads of one pass (a filter over a whole tile) into
/// an earlier one. The passes are straight-line code after inlining; left alone, the
/// compiler may hoist a later filter's loads of a line's *history* (which the passes in
/// between do not write) to the top, then spill them to the stack and reload them, which
/// costs more than the loads themselves. An opaque use of the lines' address between passes
/// (no instructions) makes every pass load what it reads where it reads it.
#[inline(always)]
fn pass_barrier(lines: *mut Lines) {
    std::hint::black_box(lines);
}

/// Three coefficients, each in all lanes. (Plain code rather than `array::map` or
/// `array::from_fn` with a closure: those are not always inlined, and a vector operation in
/// a function that is not compiled for AVX becomes a call.)
#[inline(always)]
fn splat3<V: F32x8>(c: &[f32; 3]) -> [V; 3] {
    [V::splat(c[0]), V::splat(c[1]), V::splat(c[2])]
}

/// Writes eight vectors to the tile part (after `hist` samples of history) of a line.
#[inline(always)]
fn store_tile<V: F32x8>(line: &mut [f32], hist: usize, v: [V; VECTORS]) {
    for (k, v) in v.into_iter().enumerate() {
        v.store(lanes_mut(line, hist + LANES * k));
    }
}

/// The tile of a line read `back` samples before its block: `x[m − back]` for the block's `m`.
#[inline(always)]
fn delayed(line: &[f32], hist: usize, back: usize) -> &Tile {
    line[hist - back..hist - back + MAX_BLOCK]
        .try_into()
        .expect("a tile")
}

/// The tile part (after `hist` samples of history) of a line, as a fixed-size array.
#[inline(always)]
fn block_mut(line: &mut [f32], hist: usize) -> &mut Tile {
    (&mut line[hist..hist + MAX_BLOCK])
        .try_into()
        .expect("a tile")
}

/// The longest copy [`advance`] makes at once: 256 bytes, the longest constant-size copy the
/// compiler writes out as vector moves (eight of 32 bytes) on x86-64 rather than calling
/// `memcpy` (the input line's 68 samples of history were one such call per tile and channel,
/// with a `vzeroupper` before it).
const COPY_CHUNK: usize = 64;

/// After a tile of `len` samples, the last `hist` samples of a `[history | tile]` line up to
/// `hist + len` become its history. For a whole tile (the usual case) the copies have
/// constant sizes and do not overlap (at most [`COPY_CHUNK`] samples each, oldest first), so
/// they compile to a few vector moves.
#[inline(always)]
fn advance(line: &mut [f32], hist: usize, len: usize) {
    if len == MAX_BLOCK {
        let mut done = 0;
        while done < hist {
            let n = (hist - done).min(COPY_CHUNK);
            let (head, tail) = line.split_at_mut(done + MAX_BLOCK);
            head[done..done + n].copy_from_slice(&tail[..n]);
            done += n;
        }
    } else {
        line.copy_within(len..len + hist, 0);
    }
}

/// The delay lines of one channel: each is `[history | tile]`, oldest first. (`vₒ[m] =
/// x[m − 10]` needs no line of its own: it is read from `x`.)
#[derive(Clone)]
struct Lines {
    /// Input `x` (base rate).
    x: [f32; X_HIST + MAX_BLOCK],
    /// Even samples `vₑ[m] = v[2m]` of the 2·fs signal (interpolated by up 1).
    ve: [f32; V_HIST + MAX_BLOCK],
    /// The four phases `s_p[m] = f(w[4m + p])` of the 4·fs signal.
    s: [[f32; S_HIST + MAX_BLOCK]; 4],
    /// Even samples `uₑ[m] = u[2m]` of the decimated 2·fs signal.
    ue: [f32; U_HIST + MAX_BLOCK],
    /// Odd samples `uₒ[m] = u[2m + 1]`.
    uo: [f32; U_HIST + MAX_BLOCK],
}

impl Lines {
    const ZERO: Self = Self {
        x: [0.0; X_HIST + MAX_BLOCK],
        ve: [0.0; V_HIST + MAX_BLOCK],
        s: [[0.0; S_HIST + MAX_BLOCK]; 4],
        ue: [0.0; U_HIST + MAX_BLOCK],
        uo: [0.0; U_HIST + MAX_BLOCK],
    };
}

/// One channel of 4× oversampling (see the module documentation), processing tiles of up to
/// [`MAX_BLOCK`] base-rate samples.
#[derive(Clone)]
pub struct Oversampler4x {
    /// Delay lines (boxed: ≈ 2 kB).
    lines: Box<Lines>,
}

impl Oversampler4x {
    /// Allocates the delay lines (not real-time safe).
    pub fn new() -> Self {
        Self {
            lines: Box::new(Lines::ZERO),
        }
    }

    /// Clears every delay line.
    pub fn reset(&mut self) {
        *self.lines = Lines::ZERO;
    }

    /// Round-trip delay in base-rate samples ([`LATENCY`]).
    pub fn latency_samples(&self) -> usize {
        LATENCY
    }

    /// Upsamples `input` 4×, lets `f` work on the oversampled signal and decimates the result
    /// into `output` (same length as `input`; extra samples of the longer one are ignored):
    /// `output = ↓4(f(↑4 input))`, delayed by [`LATENCY`], the input sanitised
    /// ([`sanitize`]). Portable build (no FMA).
    ///
    /// `f(offset, phases)` is called once per tile of at most [`MAX_BLOCK`] base samples with
    /// the four phases of the oversampled signal: `phases[p][i]` is the sample at base time
    /// `offset + i + p/4` (only the first `len` of each tile belong to `input`; the rest are
    /// scratch, and `f` may do anything with them).
    pub fn process(
        &mut self,
        input: &[f32],
        output: &mut [f32],
        mut f: impl FnMut(usize, [&mut Tile; 4]),
    ) {
        let n = input.len().min(output.len());
        let mut offset = 0;
        while offset < n {
            let len = (n - offset).min(MAX_BLOCK);
            let io = &mut output[offset..offset + len];
            io.copy_from_slice(&input[offset..offset + len]);
            self.process_tile::<Portable>(
                io,
                |phases| f(offset, phases),
                |wet, _, io| {
                    let mut tile = [0.0; MAX_BLOCK];
                    store_tile(&mut tile, 0, *wet);
                    io.copy_from_slice(&tile[..io.len()]);
                },
            );
            offset += len;
        }
    }

    /// The last [`HISTORY`] input samples, oldest first.
    pub fn input_history(&self) -> &[f32; HISTORY] {
        self.lines.x[X_HIST - HISTORY..X_HIST]
            .try_into()
            .expect("the history")
    }

    /// One tile (`len = min(io.len(), MAX_BLOCK)` samples) of [`Self::process`] in the
    /// vector type `V` (only use [`Avx2Fma`] from a function compiled for AVX2 and FMA, after
    /// the run-time check): the input `io[..len]` goes in (sanitised), `f(phases)` works on the
    /// oversampled tile, then `finish(wet, dry, io)` gets the result as whole tiles, of which
    /// the first `len` frames are valid: `wet[k]` holds frames `8k..8k + 8` of
    /// `↓4(f(↑4 x))`, `dry` the input delayed by [`LATENCY`] (both aligned), and may write
    /// `io[..len]`. (The result goes to a closure rather than being returned, so that it
    /// stays in registers and the dry tile is read where it lies.)
    #[inline(always)]
    pub(crate) fn process_tile<V: F32x8>(
        &mut self,
        io: &mut [f32],
        f: impl FnOnce([&mut Tile; 4]),
        finish: impl FnOnce(&[V; VECTORS], &Tile, &mut [f32]),
    ) {
        let len = io.len().min(MAX_BLOCK);
        let lines = std::ptr::from_mut::<Lines>(&mut self.lines);
        let Lines { x, ve, s, ue, uo } = &mut *self.lines;
        // Samples past `len` in a line's block are stale (finite leftovers); they only feed
        // outputs past `len` (every output reads its own and older positions), which are
        // dropped.
        if len == MAX_BLOCK {
            let block = block_mut(x, X_HIST);
            for (v, &u) in block.iter_mut().zip(&io[..MAX_BLOCK]) {
                *v = sanitize(u);
            }
        } else {
            for (v, &u) in x[X_HIST..X_HIST + len].iter_mut().zip(&io[..len]) {
                *v = sanitize(u);
            }
        }

        // Up 1: fs → 2·fs.
        up1::<V>(x, ve);

        pass_barrier(lines);
        // Up 2: 2·fs → 4·fs, straight into the phases the non-linearity works on.
        let [s0, s1, s2, s3] = s;
        // The half-band's side taps are symmetric (`b_j = b_{5−j}`, so `b_{2i+1} = b_{4−2i}`):
        // the two inputs sharing a coefficient are added first (see `sym_run`).
        let c = splat3::<V>(&UP2_SAME);
        for k in 0..VECTORS {
            let m = LANES * k;
            // `vₑ[m − back]` and `vₒ[m − back] = x[m − 10 − back]` for the vector's frames.
            let e = |back: usize| V::load(lanes(ve, V_HIST + m - back));
            let o = |back: usize| V::load(lanes(x, X_HIST + m - VO_DELAY - back));
            let w0 = c[0].mul(e(0).add(o(3)));
            let w0 = c[1].mul_add(e(1).add(o(2)), w0);
            let w0 = c[2].mul_add(e(2).add(o(1)), w0);
            let w2 = c[0].mul(o(0).add(e(2)));
            let w2 = c[1].mul_add(o(1).add(e(1)), w2);
            let w2 = c[2].mul_add(o(2).add(e(0)), w2);
            w0.store(lanes_mut(s0, S_HIST + m));
            e(1).store(lanes_mut(s1, S_HIST + m));
            w2.store(lanes_mut(s2, S_HIST + m));
            o(1).store(lanes_mut(s3, S_HIST + m));
        }

        f([
            block_mut(s0, S_HIST),
            block_mut(s1, S_HIST),
            block_mut(s2, S_HIST),
            block_mut(s3, S_HIST),
        ]);

        pass_barrier(lines);
        // Down 2: 4·fs → 2·fs.
        // Symmetric taps, inputs added first as in up 2.
        let (c, half) = (splat3::<V>(&DOWN2_SAME), V::splat(0.5));
        for k in 0..VECTORS {
            let m = S_HIST + LANES * k;
            let p = |line: &[f32], back: usize| V::load(lanes(line, m - back));
            let even = c[0].mul(p(s0, 0).add(p(s2, 3)));
            let even = c[1].mul_add(p(s0, 1).add(p(s2, 2)), even);
            let even = c[2].mul_add(p(s0, 2).add(p(s2, 1)), even);
            let even = half.mul_add(p(s3, 2), even);
            let odd = c[0].mul(p(s2, 0).add(p(s0, 2)));
            let odd = c[1].mul_add(p(s2, 1).add(p(s0, 1)), odd);
            let odd = c[2].mul_add(p(s2, 2).add(p(s0, 0)), odd);
            let odd = half.mul_add(p(s1, 1), odd);
            even.store(lanes_mut(ue, U_HIST + LANES * k));
            odd.store(lanes_mut(uo, U_HIST + LANES * k));
        }

        pass_barrier(lines);
        // Down 1: 2·fs → fs.
        let wet = down1::<V>(ue, uo);
        finish(&wet, delayed(x, X_HIST, LATENCY), &mut io[..len]);

        // The newest history of every line.
        advance(x, X_HIST, len);
        advance(ve, V_HIST, len);
        for line in [s0, s1, s2, s3] {
            advance(line, S_HIST, len);
        }
        advance(ue, U_HIST, len);
        advance(uo, U_HIST, len);
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
        assert!((h.iter().sum::<f32>() - 1.0).abs() < 1e-5, "DC gain");
    }

    #[test]
    fn pass_band_is_flat_to_20_khz_at_48_khz() {
        let h = impulse_response(4 * LATENCY);
        let mut worst = 0.0f64;
        let mut f = 0.0;
        while f <= 20.0 / 48.0 {
            worst = worst.max(response_db(&h, f).abs());
            f += 0.0025;
        }
        eprintln!("round trip: pass band ripple ±{worst:.4} dB to 20 kHz");
        assert!(worst < 0.01, "ripple {worst} dB");
    }

    /// Amplitude at the output of a unit tone made at 4·fs (`f` in units of fs), once settled.
    fn decimated_tone_db(f: f64) -> f64 {
        let mut os = Oversampler4x::new();
        let input = vec![0.0f32; 640];
        let mut out = vec![0.0f32; 640];
        os.process(&input, &mut out, |offset, phases| {
            for (p, phase) in phases.into_iter().enumerate() {
                for (i, s) in phase.iter_mut().enumerate() {
                    let t = (offset + i) as f64 + p as f64 / 4.0;
                    *s = (2.0 * PI * f * t).sin() as f32;
                }
            }
        });
        // Whatever folds back lands somewhere; take the largest sample once settled.
        let peak = out[200..].iter().fold(0.0f32, |m, v| m.max(v.abs()));
        20.0 * (peak as f64).log10()
    }

    /// Where a tone at `f` (units of fs, 4·fs domain) lands at fs.
    fn folded(f: f64) -> f64 {
        let f = f.rem_euclid(1.0);
        if f > 0.5 { 1.0 - f } else { f }
    }

    #[test]
    fn decimator_rejects_what_would_alias() {
        // Tones made at 4·fs between 25 kHz and 2·fs (96 kHz at 48 kHz): ≥ 64 dB down where
        // they would land in the audio band (≤ 20 kHz), ≥ 53 dB where they would land in
        // 20–24 kHz (from the transition band of stage 2, 72–76 kHz).
        let (mut audio, mut edge) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
        for i in 0..=150 {
            let f = 25.0 / 48.0 + (2.0 - 25.0 / 48.0) * i as f64 / 150.0;
            let db = decimated_tone_db(f);
            if folded(f) <= 20.0 / 48.0 {
                audio = audio.max(db);
            } else {
                edge = edge.max(db);
            }
        }
        eprintln!("decimator leakage: {audio:.1} dB into 0–20 kHz, {edge:.1} dB into 20–24 kHz");
        assert!(audio < -64.0, "leakage into the audio band {audio:.1} dB");
        assert!(edge < -53.0, "leakage into 20–24 kHz {edge:.1} dB");
    }

    #[test]
    fn interpolator_images_are_rejected() {
        // A tone in the pass band must not leave images at fs ± f, 2·fs − f (4·fs domain).
        // Whole numbers of cycles in the analysed 2048 base samples, so that the single-bin
        // DFT sees no leakage from the tone itself.
        const SEGMENT: usize = 32 * MAX_BLOCK;
        for cycles in [205, 614, 853] {
            let f = cycles as f64 / SEGMENT as f64; // ≈ 0.1, 0.3, 0.4165 (20 kHz at 48 kHz)
            let mut os = Oversampler4x::new();
            let w = 2.0 * PI * f;
            let x: Vec<f32> = (0..SEGMENT + 4 * MAX_BLOCK)
                .map(|m| (w * m as f64).sin() as f32)
                .collect();
            let mut v = Vec::with_capacity(4 * x.len());
            os.process(&x, &mut vec![0.0; x.len()], |_, [p0, p1, p2, p3]| {
                for i in 0..MAX_BLOCK {
                    v.extend_from_slice(&[p0[i], p1[i], p2[i], p3[i]]);
                }
            });
            let v = &v[4 * 4 * MAX_BLOCK..];
            let fundamental = tone_amplitude(v, f / 4.0);
            assert!((fundamental - 1.0).abs() < 2e-3, "gain {fundamental}");
            for image in [1.0 - f, 1.0 + f, 2.0 - f] {
                let a = 20.0 * tone_amplitude(v, image / 4.0).log10();
                assert!(a < -64.0, "image of {f}·fs at {image}·fs: {a:.1} dB");
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
        // The pass band is flat within ±10⁻³.
        assert!(err < 1.1e-3 * 0.5, "error {err}");
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
