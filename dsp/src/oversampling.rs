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
//! **Cost** per base sample and channel: 22 + 12 + 14 + 69 = 117 multiply-adds and four calls
//! of the non-linearity (the previous 4× chain, designed for ≥ 79 dB, took 253). The filters
//! run on tiles of [`MAX_BLOCK`] base samples in "outer product" form (see `fir_acc`) over
//! fixed-size arrays, which the compiler vectorises (SSE2 on baseline x86-64, NEON on
//! aarch64); the caller may run [`Oversampler4x::process_tile`] inside a function compiled for
//! AVX2 and FMA (see [`avx2_fma_available`](crate::util::avx2_fma_available)), as the saturation does: then ≈ 8 ns per stereo
//! frame for the filters of both channels on the development machine (release build).
//! Allocation-free after `new`.

/// Oversampling factor.
pub const FACTOR: usize = 4;

/// Round-trip delay in base-rate samples (exact, integer, independent of the sample rate).
pub const LATENCY: usize = 30;

/// Base-rate frames per tile (the filters always compute whole tiles).
pub const MAX_BLOCK: usize = 64;

/// One value per base-rate frame of a tile.
pub type Tile = [f32; MAX_BLOCK];

/// Stage 1 half-band: `K`, so `N = 4K − 1 = 43` taps, `2K = 22` non-zero side taps.
const UP1_K: usize = 11;
/// Stage 2 half-band: `K`, so `N = 11` taps, 6 non-zero side taps.
const HB2_K: usize = 3;
/// Length of the stage 1 decimating low-pass (`≡ 1 mod 4`, so its group delay, 34, is even
/// and the total delay lands on a base-rate sample).
const DOWN1_LEN: usize = 69;

/// History of the input line: `x[m − 21]` is the oldest sample up 1 reads.
const X_HIST: usize = 2 * UP1_K - 1;
/// History of the `vₑ`, `vₒ` lines (up 2 reads back to `vₒ[m − 3]`).
const V_HIST: usize = HB2_K;
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
/// `2·b_{2i}`: up 2, taps on the stream of the same parity.
const UP2_SAME: [f32; HB2_K] = branch(&HB2_X2, 0);
/// `2·b_{2i+1}`: up 2, taps on the other stream.
const UP2_OTHER: [f32; HB2_K] = branch(&HB2_X2, 1);
/// `b_{2i}`: down 2, taps on the stream of the same parity.
const DOWN2_SAME: [f32; HB2_K] = branch(&HB2, 0);
/// `b_{2i+1}`: down 2, taps on the other stream.
const DOWN2_OTHER: [f32; HB2_K] = branch(&HB2, 1);
/// Down 1, all taps.
const DOWN1: [f32; DOWN1_LEN] = mirrored(&DOWN1_HALF, 1.0);
/// `d_{2j}`, `j < 35`: down 1 on `uₑ`.
const DOWN1_EVEN: [f32; DOWN1_LEN.div_ceil(2)] = branch(&DOWN1, 0);
/// `d_{2j+1}`, `j < 34`: down 1 on `uₒ`.
const DOWN1_ODD: [f32; DOWN1_LEN / 2] = branch(&DOWN1, 1);

/// `a·b + c`, fused when `FMA` (only inside functions compiled with the FMA target feature:
/// elsewhere `mul_add` would be a slow library call).
#[inline(always)]
pub(crate) fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// Block FIR in "outer product" form: `acc[k] += Σ_i c[i]·line[start + k − i]` for every `k`
/// of the tile, i.e. `Σ_i c[i]·x[m − i]` with `line[start + k]` holding `x[m]`. Each tap is
/// a multiply-add over the whole tile, an element-wise loop over fixed-size arrays that the
/// compiler vectorises at any optimisation level (a dot product per output would need a
/// horizontal reduction, which it does not vectorise without fast-math). Every output sums its
/// taps in the same order, so the result does not depend on how a signal is cut into blocks.
///
/// Taps go four at a time, so that the accumulators are loaded and stored once per four taps.
/// In each block of 32 taps they are grouped with a stride of 8 (`i, i + 8, i + 16, i + 24`):
/// the four shifted inputs then differ by whole vectors of 8 lanes, and the compiler loads
/// each vector once for several taps (≈ 40 % faster with AVX2, where loads bound the loop).
#[inline(always)]
fn fir_acc<const FMA: bool>(acc: &mut Tile, c: &[f32], line: &[f32], start: usize) {
    let strided = c.len() / 32 * 32;
    for block in (0..strided).step_by(32) {
        for column in 0..8 {
            let i = block + column;
            let w: &[f32; MAX_BLOCK + 24] = line[start - i - 24..start - i + MAX_BLOCK]
                .try_into()
                .expect("a tile and 24 samples");
            let q = [c[i], c[i + 8], c[i + 16], c[i + 24]];
            for k in 0..MAX_BLOCK {
                let a = madd::<FMA>(q[0], w[24 + k], acc[k]);
                let a = madd::<FMA>(q[1], w[16 + k], a);
                let a = madd::<FMA>(q[2], w[8 + k], a);
                acc[k] = madd::<FMA>(q[3], w[k], a);
            }
        }
    }
    let (c, start) = (&c[strided..], start - strided);
    let tile = |i: usize| -> &Tile {
        line[start - i..start - i + MAX_BLOCK]
            .try_into()
            .expect("a tile")
    };
    let mut quads = c.chunks_exact(4);
    let mut i = 0;
    for q in quads.by_ref() {
        let (x0, x1, x2, x3) = (tile(i), tile(i + 1), tile(i + 2), tile(i + 3));
        for k in 0..MAX_BLOCK {
            let a = madd::<FMA>(q[0], x0[k], acc[k]);
            let a = madd::<FMA>(q[1], x1[k], a);
            let a = madd::<FMA>(q[2], x2[k], a);
            acc[k] = madd::<FMA>(q[3], x3[k], a);
        }
        i += 4;
    }
    for &ci in quads.remainder() {
        let x = tile(i);
        for k in 0..MAX_BLOCK {
            acc[k] = madd::<FMA>(ci, x[k], acc[k]);
        }
        i += 1;
    }
}

/// The window `x[m − 2] … x[m + MAX_BLOCK − 1]` of a line for the tile's `m`, with
/// `line[start + k]` holding `x[m]` (what a 3-tap FIR reads).
#[inline(always)]
fn short_window(line: &[f32], start: usize) -> &[f32; MAX_BLOCK + HB2_K - 1] {
    line[start + 1 - HB2_K..start + MAX_BLOCK]
        .try_into()
        .expect("a tile and 2 samples")
}

/// The stage 2 filters, two 3-tap branches (and the centre tap) in one pass:
/// `Σ_{i<3} a[i]·xa[m − i] + Σ_{i<3} b[i]·xb[m − i] (+ ½·centre[m])` for the tile's `m`,
/// from the windows of [`short_window`].
#[inline(always)]
fn two_branches<const FMA: bool>(
    (a, xa): (&[f32; HB2_K], &[f32; MAX_BLOCK + HB2_K - 1]),
    (b, xb): (&[f32; HB2_K], &[f32; MAX_BLOCK + HB2_K - 1]),
    centre: Option<&Tile>,
) -> Tile {
    let mut out = [0.0f32; MAX_BLOCK];
    for k in 0..MAX_BLOCK {
        let mut acc = 0.0f32;
        for i in 0..HB2_K {
            acc = madd::<FMA>(a[i], xa[k + HB2_K - 1 - i], acc);
        }
        for i in 0..HB2_K {
            acc = madd::<FMA>(b[i], xb[k + HB2_K - 1 - i], acc);
        }
        if let Some(c) = centre {
            acc = madd::<FMA>(0.5, c[k], acc);
        }
        out[k] = acc;
    }
    out
}

/// The tile part (after `hist` samples of history) of a line, as a fixed-size array.
#[inline(always)]
fn block_mut(line: &mut [f32], hist: usize) -> &mut Tile {
    (&mut line[hist..hist + MAX_BLOCK])
        .try_into()
        .expect("a tile")
}

/// The tile of a line read `back` samples before its block: `x[m − back]` for the block's `m`.
#[inline(always)]
fn delayed(line: &[f32], hist: usize, back: usize) -> &Tile {
    line[hist - back..hist - back + MAX_BLOCK]
        .try_into()
        .expect("a tile")
}

/// After a tile of `len` samples, the last `hist` samples of a `[history | tile]` line up to
/// `hist + len` become its history. For a whole tile (the usual case) the copy has a constant
/// size and does not overlap (`hist < MAX_BLOCK`), so it compiles to a few vector moves.
#[inline(always)]
fn advance(line: &mut [f32], hist: usize, len: usize) {
    if len == MAX_BLOCK {
        let (head, tail) = line.split_at_mut(MAX_BLOCK);
        head[..hist].copy_from_slice(&tail[..hist]);
    } else {
        line.copy_within(len..len + hist, 0);
    }
}

/// The delay lines of one channel: each is `[history | tile]`, oldest first.
#[derive(Clone)]
struct Lines {
    /// Input `x` (base rate).
    x: [f32; X_HIST + MAX_BLOCK],
    /// Even samples `vₑ[m] = v[2m]` of the 2·fs signal (interpolated by up 1).
    ve: [f32; V_HIST + MAX_BLOCK],
    /// Odd samples `vₒ[m] = v[2m + 1]` (= `x[m − 10]`).
    vo: [f32; V_HIST + MAX_BLOCK],
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
        vo: [0.0; V_HIST + MAX_BLOCK],
        s: [[0.0; S_HIST + MAX_BLOCK]; 4],
        ue: [0.0; U_HIST + MAX_BLOCK],
        uo: [0.0; U_HIST + MAX_BLOCK],
    };
}

/// One channel of 4× oversampling (see the module documentation), processing tiles of up to
/// [`MAX_BLOCK`] base-rate samples.
#[derive(Clone)]
pub struct Oversampler4x {
    /// Delay lines (boxed: ≈ 2.7 kB).
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
    /// `output = ↓4(f(↑4 input))`, delayed by [`LATENCY`]. Portable build (no FMA).
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
            self.process_tile::<false>(
                &input[offset..offset + len],
                &mut output[offset..offset + len],
                |phases| f(offset, phases),
            );
            offset += len;
        }
    }

    /// One tile (`min(input.len(), output.len(), MAX_BLOCK)` samples) of [`Self::process`],
    /// with `f(phases)`. `FMA = true` fuses the multiply-adds: only call it from a function
    /// compiled with the `fma` target feature (after [`avx2_fma_available`](crate::util::avx2_fma_available)).
    #[inline(always)]
    pub fn process_tile<const FMA: bool>(
        &mut self,
        input: &[f32],
        output: &mut [f32],
        f: impl FnOnce([&mut Tile; 4]),
    ) {
        let len = input.len().min(output.len()).min(MAX_BLOCK);
        let Lines {
            x,
            ve,
            vo,
            s,
            ue,
            uo,
        } = &mut *self.lines;
        // Samples past `len` in a line's block are stale; they only feed outputs past `len`
        // (every output reads its own and older positions), which are dropped.
        x[X_HIST..X_HIST + len].copy_from_slice(&input[..len]);

        // Up 1: fs → 2·fs.
        let mut acc = [0.0f32; MAX_BLOCK];
        fir_acc::<FMA>(&mut acc, &UP1, x, X_HIST);
        *block_mut(ve, V_HIST) = acc;
        *block_mut(vo, V_HIST) = *delayed(x, X_HIST, UP1_K - 1);

        // Up 2: 2·fs → 4·fs, straight into the phases the non-linearity works on.
        let [s0, s1, s2, s3] = s;
        *block_mut(s0, S_HIST) = two_branches::<FMA>(
            (&UP2_SAME, short_window(ve, V_HIST)),
            (&UP2_OTHER, short_window(vo, V_HIST - 1)),
            None,
        );
        *block_mut(s1, S_HIST) = *delayed(ve, V_HIST, 1);
        *block_mut(s2, S_HIST) = two_branches::<FMA>(
            (&UP2_SAME, short_window(vo, V_HIST)),
            (&UP2_OTHER, short_window(ve, V_HIST)),
            None,
        );
        *block_mut(s3, S_HIST) = *delayed(vo, V_HIST, 1);

        f([
            block_mut(s0, S_HIST),
            block_mut(s1, S_HIST),
            block_mut(s2, S_HIST),
            block_mut(s3, S_HIST),
        ]);

        // Down 2: 4·fs → 2·fs.
        *block_mut(ue, U_HIST) = two_branches::<FMA>(
            (&DOWN2_SAME, short_window(s0, S_HIST)),
            (&DOWN2_OTHER, short_window(s2, S_HIST - 1)),
            Some(delayed(s3, S_HIST, 2)),
        );
        *block_mut(uo, U_HIST) = two_branches::<FMA>(
            (&DOWN2_SAME, short_window(s2, S_HIST)),
            (&DOWN2_OTHER, short_window(s0, S_HIST)),
            Some(delayed(s1, S_HIST, 1)),
        );

        // Down 1: 2·fs → fs.
        let mut y = [0.0f32; MAX_BLOCK];
        fir_acc::<FMA>(&mut y, &DOWN1_EVEN, ue, U_HIST);
        fir_acc::<FMA>(&mut y, &DOWN1_ODD, uo, U_HIST - 1);
        output[..len].copy_from_slice(&y[..len]);

        // The newest history of every line.
        advance(x, X_HIST, len);
        advance(ve, V_HIST, len);
        advance(vo, V_HIST, len);
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
