//! Feed-forward, stereo-linked compressor with a log-domain gain computer and detector, after
//! D. Giannoulis, M. Massberg, J. D. Reiss, "Digital Dynamic Range Compressor Design — A
//! Tutorial and Analysis", JAES 60(6), 2012.
//!
//! Per sample, with `x` the detector level (`max(|L|, |R|)` of the input or of the key):
//!
//! ```text
//! x_G = 20·log10(x)                                       level in dBFS
//! y_G = x_G                                    2(x_G − T) < −W     (below the knee)
//! y_G = x_G + (1/R − 1)·(x_G − T + W/2)² / (2W)  2|x_G − T| ≤ W     (in the knee)
//! y_G = T + (x_G − T)/R                        2(x_G − T) > W      (above the knee)
//! x_L = x_G − y_G ≥ 0                                     gain-computer overshoot, dB
//! y_L[n] = α_A·y_L[n−1] + (1 − α_A)·x_L[n]   if x_L[n] > y_L[n−1]   (attack)
//! y_L[n] = α_R·y_L[n−1] + (1 − α_R)·x_L[n]   otherwise              (release)
//! gain = 10^((M − y_L)/20)                               M = makeup
//! out = in · ((1 − m) + m·gain)                          m = mix (parallel compression)
//! ```
//!
//! (`T` threshold, `R` ratio, `W` knee width, all in dB; the paper's eq. 4 for the curve and its
//! "smooth branching" peak detector, eq. 17, run in the log domain on `x_L`: the paper's
//! recommended log-domain design, which is VCA-like and artefact-free.)
//!
//! **Time constants.** `α = exp(−1/(τ·fs))`: after a step of the gain-computer output `x_L`
//! (in dB), the gain reduction covers `1 − 1/e` (63 %) of the step in `τ = attack_ms` (rising)
//! or `τ = release_ms` (falling), the sample of the step counting as the first.
//!
//! **Characters.**
//! * `Clean`: exactly the above.
//! * `Opto` (program-dependent release, modelled on the memory of an electro-optical cell): a
//!   memory `μ ∈ [0, 1]` charges towards `min(x_L / 10 dB, 1)` (the demanded reduction) with a
//!   1 s time constant and discharges with 3 s; the release time constant becomes
//!   `τ_R·(1 + 4μ)`, i.e. up to 5× slower after long or deep reduction, while short and shallow
//!   reduction releases at about `τ_R`. The release coefficient is
//!   `α_R' = 1 − (1 − α_R)/(1 + 4μ)`, the first-order (in `1/(τ·fs)`) form of
//!   `exp(−1/((1 + 4μ)·τ·fs))`; the two differ by < 0.2 % of the time constant for release
//!   times ≥ 10 ms at 44.1 kHz and up.
//! * `auto_release` (either character; `release_ms` is then unused): a dual time-constant
//!   detector. A fast branch (attack `τ_A`, release 50 ms) and a slow branch (attack 300 ms,
//!   release 1.5 s) both follow `x_L`; the gain reduction is the larger of the two. A transient
//!   barely charges the slow branch and releases in ~50 ms; sustained reduction charges it and
//!   releases slowly. Both branches converge to `x_L`, so the static curve is unchanged. With
//!   `Opto`, the opto memory slows the fast branch's release too.
//!
//! **Controls.** Threshold, knee, the slope `1 − 1/R` (the ratio enters the curve through it),
//! makeup (as linear gain), mix and the bypass crossfade are each smoothed on a linear ramp
//! ([`Smoother`], 20 ms; bypass 15 ms). Attack and release changes act on the detector
//! coefficients and cannot click. `mix = 0` or bypass give `out = in` bit for bit; a settled
//! bypass costs nothing (the buffers stay untouched and the detector sleeps), and switching the
//! compressor back in primes the detector with the steady-state reduction of the first block's
//! peak, so that the wet path fades in from the right gain reduction instead of an
//! uncompressed overshoot.
//!
//! **Cost.** Per chunk of 64 frames, in passes: sanitising and levels, the gain computer
//! (`log2` by a division-free polynomial, [`fast_exp2`]'s polynomial for the gain; errors
//! below 2·10⁻⁶ dB) and gain and mix are vectorised (and compiled for AVX2 + FMA, chosen at
//! run time where the CPU has it, as `crate::limiter` does); only the detector recursion is
//! serial, and it advances two samples per step (see `Branch`): one multiply-add and two
//! maxima per two samples on its loop-carried path. A chunk whose level stays under the knee
//! while no gain reduction is pending (a quiet stem) skips all of it. At 48 kHz on the
//! development machine (AVX2 build, release, shared): ≈ 3.5 ns per stereo frame while
//! compressing (Clean), ≈ 8 ns (Opto + auto release, keyed), ≈ 1.3 ns under the knee,
//! nothing when bypassed (`benches/stem_modules.rs`).

use crate::settings::{CompCharacter, CompKey, CompressorSettings};
use crate::smoother::Smoother;
use crate::util::{avx2_fma_available, db_to_gain, one_pole_coeff, sanitize};

/// Ramp length for threshold, ratio, knee, makeup and mix changes, in milliseconds.
pub const CONTROL_RAMP_MS: f32 = 20.0;
/// Bypass crossfade length, in milliseconds.
pub const BYPASS_FADE_MS: f32 = 15.0;
/// Release of the fast branch of the automatic release, in milliseconds.
pub const AUTO_FAST_RELEASE_MS: f32 = 50.0;
/// Attack (charge) of the slow branch of the automatic release, in milliseconds.
pub const AUTO_SLOW_ATTACK_MS: f32 = 300.0;
/// Release of the slow branch of the automatic release, in milliseconds.
pub const AUTO_SLOW_RELEASE_MS: f32 = 1500.0;
/// Gain reduction (dB) at which the opto memory charges fully.
pub const OPTO_DEPTH_REF_DB: f32 = 10.0;
/// Opto memory charge time constant, in milliseconds.
pub const OPTO_CHARGE_MS: f32 = 1000.0;
/// Opto memory discharge time constant, in milliseconds.
pub const OPTO_DISCHARGE_MS: f32 = 3000.0;
/// Opto release slow-down: the release time is multiplied by `1 + OPTO_SLOWDOWN·μ`.
pub const OPTO_SLOWDOWN: f32 = 4.0;

/// Flush level (dB; also used for the opto memory): a detector branch subtracts
/// `GR_FLUSH_DB·(1 − α²)` per two samples and clamps at 0, so that a decaying reduction
/// reaches exactly 0 (gain exactly 1) once it is about this small (see `Branch`).
const GR_FLUSH_DB: f32 = 1.0e-6;
/// Lowest detector level considered (−400 dBFS), keeps the logarithm finite.
const MIN_LEVEL: f32 = 1.0e-20;
/// `20·log10(2)`: dB per octave of amplitude.
const DB_PER_LOG2: f32 = 6.020_6;
/// `1 / (20·log10(2))`.
const LOG2_PER_DB: f32 = 1.0 / DB_PER_LOG2;

/// `x = m·2^e` with `m` in `[√½, √2)` (positive, normal, finite `x`), from the bits alone:
/// the mantissa with exponent 0, or −1 (`m/2`, exact) when it exceeds `√2`. Integer operations
/// only, so that a scalar caller gets no branch (a mispredicted one costs more than the rest).
#[inline(always)]
fn split_mantissa(x: f32) -> (f32, i32) {
    /// Mantissa bits of `√2` as an f32 (`0x3fb5_04f3`).
    const SQRT_2_MANTISSA: u32 = 0x0035_04f3;
    let bits = x.to_bits();
    let mantissa = bits & 0x007f_ffff;
    let fold = (mantissa > SQRT_2_MANTISSA) as u32;
    let m = f32::from_bits(mantissa | (0x3f80_0000 - (fold << 23)));
    let e = (((bits >> 23) & 0xff) as i32).wrapping_sub(127 - fold as i32);
    (m, e)
}

/// Fast `log2(x)` for positive, normal, finite `x`: exponent from the bits, mantissa `m`
/// folded into `[√½, √2)` and `log2(m) = (2/ln 2)·atanh(t)`, `t = (m − 1)/(m + 1)`,
/// `|t| ≤ 0.1716`, by its series to `t⁷`. Truncation error ≤ 5·10⁻⁸ (3·10⁻⁷ dB), below f32
/// rounding of the result.
#[inline(always)]
pub fn fast_log2(x: f32) -> f32 {
    const C1: f32 = 2.885_39; // 2/ln 2
    const C3: f32 = 0.961_796_7; // 2/(3 ln 2)
    const C5: f32 = 0.577_078; // 2/(5 ln 2)
    const C7: f32 = 0.412_198_6; // 2/(7 ln 2)
    let (m, e) = split_mantissa(x);
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    e as f32 + t * (C1 + t2 * (C3 + t2 * (C5 + t2 * C7)))
}

/// Fast `2^y`, `y` clamped to ±126: `2^y = 2^i · e^(f·ln 2)` with `i = round(y)` put into the
/// exponent bits and `|f| ≤ ½`, `e^u` by its Taylor series to `u⁶` (`|u| ≤ 0.347`): relative
/// error ≤ 2·10⁻⁷ (2·10⁻⁶ dB).
#[inline(always)]
pub fn fast_exp2(y: f32) -> f32 {
    exp2_poly::<false>(y)
}

/// [`fast_exp2`], its polynomial in fused multiply-adds when `FMA` (only inside functions
/// compiled with the FMA target feature).
#[inline(always)]
pub(crate) fn exp2_poly<const FMA: bool>(y: f32) -> f32 {
    // Adding 1.5·2²³ rounds to an integer, which lands in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let y = if y >= -126.0 { y.min(126.0) } else { -126.0 }; // NaN → −126
    let t = y + MAGIC;
    let i = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let u = (y - (t - MAGIC)) * std::f32::consts::LN_2;
    let mut p = 1.0 / 720.0;
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = madd::<FMA>(p, u, c);
    }
    f32::from_bits((i.wrapping_add(127) as u32) << 23) * p
}

/// `log2(x)` for positive, normal, finite `x` without a division, for the compressor's
/// per-sample gain computer: exponent from the bits, mantissa `m` folded into `[√½, √2)`,
/// `log2(m) = u·q(u)` with `u = m − 1` and `q` of degree 7, a Chebyshev fit of `log2(1 + u)/u`
/// on `[√½ − 1, √2 − 1]` (numpy: `Chebyshev.fit(u, log2(1 + u)/u, 7)` converted to the power
/// basis). Error ≤ 2.5·10⁻⁷ (1.5·10⁻⁶ dB) including f32 evaluation; exact (0) at `m = 1`.
/// (The atanh series of [`fast_log2`] needs a division per sample, the slowest vector
/// instruction in the gain computer.)
#[inline(always)]
pub(crate) fn log2_poly<const FMA: bool>(x: f32) -> f32 {
    const Q: [f32; 8] = [
        std::f32::consts::LOG2_E,
        -0.721_351_5,
        0.480_915_03,
        -0.360_308_8,
        0.287_395_45,
        -0.248_265_49,
        0.231_315_5,
        -0.144_368_98,
    ];
    let (m, e) = split_mantissa(x);
    let u = m - 1.0;
    // Estrin's scheme (pairs, then powers u², u⁴): a third of Horner's dependency chain.
    let u2 = u * u;
    let u4 = u2 * u2;
    let p01 = madd::<FMA>(Q[1], u, Q[0]);
    let p23 = madd::<FMA>(Q[3], u, Q[2]);
    let p45 = madd::<FMA>(Q[5], u, Q[4]);
    let p67 = madd::<FMA>(Q[7], u, Q[6]);
    let p03 = madd::<FMA>(p23, u2, p01);
    let p47 = madd::<FMA>(p67, u2, p45);
    let q = madd::<FMA>(p47, u4, p03);
    madd::<FMA>(u, q, e as f32)
}

/// `1/(2W)` of a knee width `W` (dB), as the knee piece of [`overshoot_db`] uses it.
#[inline(always)]
fn inv_double_knee(knee_db: f32) -> f32 {
    1.0 / (2.0 * knee_db).max(1.0e-6)
}

/// Gain-computer overshoot `x_L = x_G − y_G` (dB, ≥ 0) of a level `level_db`, for threshold
/// `threshold_db`, knee width `knee_db` (with `inv_knee` = [`inv_double_knee`] of it) and
/// slope `1 − 1/R` (see the module equations). Branch-free (all three pieces computed, one
/// selected) so that it vectorises.
#[inline(always)]
fn overshoot_db(level_db: f32, threshold_db: f32, knee_db: f32, inv_knee: f32, slope: f32) -> f32 {
    let over = level_db - threshold_db;
    let d = over + 0.5 * knee_db;
    let in_knee = slope * d * d * inv_knee;
    let above = slope * over;
    let y = if 2.0 * over < knee_db { in_knee } else { above };
    if 2.0 * over <= -knee_db { 0.0 } else { y }
}

/// Overshoot (dB) of a linear detector level: 0 at or under `floor` (the bottom of the knee
/// as a linear level, when known), else [`overshoot_db`] of `20·log10(level)`.
#[inline(always)]
fn overshoot<const FMA: bool>(
    level: f32,
    floor: f32,
    threshold_db: f32,
    knee_db: f32,
    inv_knee: f32,
    slope: f32,
) -> f32 {
    let level_db = DB_PER_LOG2 * log2_poly::<FMA>(level.max(MIN_LEVEL));
    let over = overshoot_db(level_db, threshold_db, knee_db, inv_knee, slope);
    if level <= floor { 0.0 } else { over }
}

/// Total gain of the parallel mix `(1 − m) + m·10^(−gr/20)·makeup` (exactly 1 for `m = 0`).
#[inline(always)]
fn mix_gain<const FMA: bool>(gr_db: f32, makeup_gain: f32, m: f32) -> f32 {
    let reduction = exp2_poly::<FMA>(-gr_db * LOG2_PER_DB);
    let reduction = if gr_db > 0.0 { reduction } else { 1.0 };
    madd::<FMA>(m, reduction * makeup_gain, 1.0 - m)
}

/// Frames per chunk of the vectorised path.
const CHUNK: usize = 64;

/// One branch of the smooth-branching detector (Giannoulis et al. eq. 17), advanced **two
/// samples per step** so that its loop-carried path is half as long.
///
/// One sample is `y ← f(y) = OP(α_A·y + (1 − α_A)·x, α_R·y + (1 − α_R)·x)` with `OP = max`
/// when `α_A ≤ α_R` and `min` otherwise (see [`branch`]). `f` is non-decreasing in `y`
/// (`α ≥ 0`), and a non-decreasing map commutes with `max` and `min`:
/// `g(max(u, v)) = max(g(u), g(v))`. So two samples, `y₂ = f₂(f₁(y₀))`, are the `OP` of four
/// lines in `y₀`, whose slopes and offsets depend on the inputs only:
///
/// ```text
/// y₂ = OP₁( OP₂(α_A²·y₀ + o_AA, α_A·α_R₂·y₀ + o_AR),  OP₂(α_R₁·α_A·y₀ + o_RA, α_R₁·α_R₂·y₀ + o_RR) )
/// o_AA = α_A·k_A·x₁ + k_A·x₂        o_AR = α_R₂·k_A·x₁ + k_R₂·x₂      (k = 1 − α)
/// o_RA = α_A·k_R₁·x₁ + k_A·x₂       o_RR = α_R₂·k_R₁·x₁ + k_R₂·x₂
/// ```
///
/// With constant poles the two middle lines have the same slope `α_A·α_R` and merge into one
/// (`OP` of their offsets), leaving three. The recursion `y₀ → y₂` is then one multiply-add
/// and two `max` (≈ 6 cycles per two samples instead of ≈ 6 per sample); the odd sample's
/// output `y₁ = f₁(y₀)` is computed beside it, off the loop-carried path. The result is the
/// per-sample recursion up to rounding (a few ulp).
///
/// **Flush.** Instead of setting values under a threshold to 0 every sample (a compare and a
/// select on the loop-carried path), each two-sample step subtracts a tiny `δ` and clamps at 0:
/// `y₂ ← max(y₂ − δ, 0)`, which folds into the offsets and the same `max` tree. `max(· − δ, 0)`
/// is non-decreasing too, so the algebra above holds. With `δ = ε·(1 − max(α_A, α_R)²)` the
/// steady state is lowered by at most `ε` ([`GR_FLUSH_DB`], 10⁻⁶ dB), and a decaying state
/// reaches exactly 0 once it is of the order of `ε`: the gain becomes exactly 1 and the state
/// never becomes subnormal.
///
/// Pairs count samples from the last reset, whatever the block boundaries: a block that ends
/// after the first sample of a pair keeps that sample (`pending`) and the next block finishes
/// the pair, so the output does not depend on the block size.
#[derive(Debug, Clone, Copy, Default)]
struct Branch {
    /// Output of the last processed sample (dB of gain reduction, ≥ 0; or the opto memory).
    y: f32,
    /// State at the start of the current pair: the last output when no pair is pending, the
    /// state before the pending sample otherwise.
    s: f32,
    /// Input `x₁` of the pending sample (only meaningful while `pending`).
    px: f32,
    /// Release pole `α_R₁` of the pending sample (variable-release branch only).
    pr: f32,
    /// `1 − α_R₁` of the pending sample as it was computed (variable-release branch only).
    pk: f32,
    /// True after an odd number of samples since the reset: the next sample ends a pair.
    pending: bool,
}

/// Constant poles of a [`Branch`], with the products the two-sample step needs.
#[derive(Debug, Clone, Copy)]
struct Poles {
    /// Attack pole `α_A`, 0..1.
    a: f32,
    /// Release pole `α_R`, 0..1.
    r: f32,
    /// `1 − α_A`.
    ka: f32,
    /// `1 − α_R`.
    kr: f32,
    /// `α_A²`.
    aa: f32,
    /// `α_A·α_R`.
    ar: f32,
    /// `α_R²`.
    rr: f32,
    /// Flush step `δ = ε·(1 − max(α_A, α_R)²)` (see [`Branch`]).
    delta: f32,
    /// `α_A ≤ α_R`: the step takes the maximum of its candidates (else the minimum).
    max: bool,
}

impl Poles {
    fn new(attack: f32, release: f32) -> Self {
        let slow = attack.max(release);
        Self {
            a: attack,
            r: release,
            ka: 1.0 - attack,
            kr: 1.0 - release,
            aa: attack * attack,
            ar: attack * release,
            rr: release * release,
            delta: GR_FLUSH_DB * (1.0 - slow * slow),
            max: attack <= release,
        }
    }

    /// One sample from state `s`: the per-sample rule (no flush; used for the odd sample).
    #[inline(always)]
    fn single<const FMA: bool, const MAX: bool>(&self, s: f32, x: f32) -> f32 {
        let ya = madd::<FMA>(self.a, s, self.ka * x);
        let yr = madd::<FMA>(self.r, s, self.kr * x);
        if MAX {
            max_serial(ya, yr)
        } else {
            min_serial(ya, yr)
        }
    }

    /// [`Poles::single`] in a loop meant to vectorise (the same arithmetic).
    #[inline(always)]
    fn single_vec<const FMA: bool, const MAX: bool>(&self, s: f32, x: f32) -> f32 {
        let ya = madd::<FMA>(self.a, s, self.ka * x);
        let yr = madd::<FMA>(self.r, s, self.kr * x);
        if MAX {
            max_fast(ya, yr)
        } else {
            min_fast(ya, yr)
        }
    }

    /// The end of a two-sample step from state `s`, given the pair's offsets (see [`Branch`];
    /// `δ` already subtracted), flushed: the detector's whole loop-carried path.
    #[inline(always)]
    fn lines<const FMA: bool, const MAX: bool>(
        &self,
        s: f32,
        o_aa: f32,
        o_mid: f32,
        o_rr: f32,
    ) -> f32 {
        let l_aa = madd::<FMA>(self.aa, s, o_aa);
        let l_mid = madd::<FMA>(self.ar, s, o_mid);
        let l_rr = madd::<FMA>(self.rr, s, o_rr);
        if MAX {
            max_serial(max_serial(l_aa, l_mid), max_serial(l_rr, 0.0))
        } else {
            max_serial(min_serial(min_serial(l_aa, l_mid), l_rr), 0.0)
        }
    }

    /// Two samples from state `s` (see [`Branch`]), flushed.
    #[inline(always)]
    fn pair<const FMA: bool, const MAX: bool>(&self, s: f32, x1: f32, x2: f32) -> f32 {
        let (ka1, kr1) = (self.ka * x1, self.kr * x1);
        let (ka2, kr2) = (self.ka * x2 - self.delta, self.kr * x2 - self.delta);
        let o_aa = madd::<FMA>(self.a, ka1, ka2);
        let o_ar = madd::<FMA>(self.r, ka1, kr2);
        let o_ra = madd::<FMA>(self.a, kr1, ka2);
        let o_mid = if MAX {
            max_serial(o_ar, o_ra)
        } else {
            min_serial(o_ar, o_ra)
        };
        let o_rr = madd::<FMA>(self.r, kr1, kr2);
        self.lines::<FMA, MAX>(s, o_aa, o_mid, o_rr)
    }
}

impl Branch {
    /// Runs the branch with constant poles over the inputs `x`, writing each sample's output
    /// to `y` (the same length, at most [`CHUNK`]).
    ///
    /// The pairs are done in three passes: their offsets (`o_AA`, merged `o_AR`/`o_RA`, `o_RR`,
    /// which depend on the inputs only; vectorised), the serial recursion `y₀ → y₂` (three
    /// multiply-adds and three `max` per pair, nothing else), then the odd samples' outputs
    /// `y₁ = f₁(y₀)` (vectorised).
    #[inline(always)]
    fn run<const FMA: bool, const MAX: bool>(&mut self, p: &Poles, x: &[f32], y: &mut [f32]) {
        const HALF: usize = CHUNK / 2;
        let n = x.len().min(y.len()).min(CHUNK);
        if n == 0 {
            return;
        }
        let (x, y) = (&x[..n], &mut y[..n]);
        let mut s = self.s;
        let mut i = 0;
        if self.pending {
            s = p.pair::<FMA, MAX>(s, self.px, x[0]);
            y[0] = s;
            i = 1;
        }
        let pairs = (n - i) / 2;
        let (xb, yb) = (&x[i..i + 2 * pairs], &mut y[i..i + 2 * pairs]);
        let mut o_aa = [0.0f32; HALF];
        let mut o_mid = [0.0f32; HALF];
        let mut o_rr = [0.0f32; HALF];
        let (o_aa, o_mid, o_rr) = (&mut o_aa[..pairs], &mut o_mid[..pairs], &mut o_rr[..pairs]);
        for k in 0..pairs {
            let (x1, x2) = (xb[2 * k], xb[2 * k + 1]);
            let (ka1, kr1) = (p.ka * x1, p.kr * x1);
            let (ka2, kr2) = (p.ka * x2 - p.delta, p.kr * x2 - p.delta);
            o_aa[k] = madd::<FMA>(p.a, ka1, ka2);
            let o_ar = madd::<FMA>(p.r, ka1, kr2);
            let o_ra = madd::<FMA>(p.a, kr1, ka2);
            o_mid[k] = if MAX {
                max_fast(o_ar, o_ra)
            } else {
                min_fast(o_ar, o_ra)
            };
            o_rr[k] = madd::<FMA>(p.r, kr1, kr2);
        }
        // The recursion; `yb[2k]` holds the state before pair k for the pass below.
        for k in 0..pairs {
            yb[2 * k] = s;
            s = p.lines::<FMA, MAX>(s, o_aa[k], o_mid[k], o_rr[k]);
            yb[2 * k + 1] = s;
        }
        for k in 0..pairs {
            yb[2 * k] = p.single_vec::<FMA, MAX>(yb[2 * k], xb[2 * k]);
        }
        i += 2 * pairs;
        self.pending = i < n;
        if self.pending {
            self.px = x[i];
            y[i] = p.single::<FMA, MAX>(s, x[i]);
        }
        self.s = s;
        self.y = y[n - 1];
    }

    /// Runs the branch with attack pole `attack` and a release pole per sample (`release`,
    /// with `k_release = 1 − release` computed beside it), writing each output to `y`. `ALL_MAX`:
    /// the attack is no slower than every release (the usual case), else the rule is chosen per
    /// sample.
    #[inline(always)]
    fn run_var<const FMA: bool, const ALL_MAX: bool>(
        &mut self,
        attack: f32,
        delta: f32,
        x: &[f32],
        release: &[f32],
        k_release: &[f32],
        y: &mut [f32],
    ) {
        let n = x.len().min(y.len()).min(release.len()).min(k_release.len());
        if n == 0 {
            return;
        }
        let (x, y, release, k_release) = (&x[..n], &mut y[..n], &release[..n], &k_release[..n]);
        let a = attack;
        let ka = 1.0 - a;
        let op = |is_max: bool, u: f32, v: f32| {
            if ALL_MAX || is_max {
                max_serial(u, v)
            } else {
                min_serial(u, v)
            }
        };
        let single = |s: f32, x1: f32, r1: f32, kr1: f32| {
            op(
                a <= r1,
                madd::<FMA>(a, s, ka * x1),
                madd::<FMA>(r1, s, kr1 * x1),
            )
        };
        let pair = |s: f32, x1: f32, r1: f32, kr1: f32, x2: f32, r2: f32, kr2: f32| {
            let (ka1, kr1) = (ka * x1, kr1 * x1);
            let (ka2, kr2) = (ka * x2 - delta, kr2 * x2 - delta);
            let l_aa = madd::<FMA>(a * a, s, madd::<FMA>(a, ka1, ka2));
            let l_ar = madd::<FMA>(a * r2, s, madd::<FMA>(r2, ka1, kr2));
            let l_ra = madd::<FMA>(r1 * a, s, madd::<FMA>(a, kr1, ka2));
            let l_rr = madd::<FMA>(r1 * r2, s, madd::<FMA>(r2, kr1, kr2));
            let m2 = a <= r2;
            max_serial(op(a <= r1, op(m2, l_aa, l_ar), op(m2, l_ra, l_rr)), 0.0)
        };
        let mut s = self.s;
        let mut i = 0;
        if self.pending {
            s = pair(s, self.px, self.pr, self.pk, x[0], release[0], k_release[0]);
            y[0] = s;
            i = 1;
        }
        while i + 2 <= n {
            let (x1, r1, kr1) = (x[i], release[i], k_release[i]);
            y[i] = single(s, x1, r1, kr1);
            s = pair(s, x1, r1, kr1, x[i + 1], release[i + 1], k_release[i + 1]);
            y[i + 1] = s;
            i += 2;
        }
        self.pending = i < n;
        if self.pending {
            self.px = x[i];
            self.pr = release[i];
            self.pk = k_release[i];
            y[i] = single(s, x[i], release[i], k_release[i]);
        }
        self.s = s;
        self.y = y[n - 1];
    }

    /// At rest: `x = 0` leaves it exactly at 0.
    #[inline]
    fn at_rest(&self) -> bool {
        self.s == 0.0 && self.y == 0.0 && (!self.pending || self.px == 0.0)
    }

    /// Accounts for `n` samples of `x = 0` on a branch at rest (`release`: the release pole
    /// and `1 −` it that a pending sample would carry).
    #[inline]
    fn skip_at_rest(&mut self, n: usize, release: (f32, f32)) {
        if n % 2 == 1 {
            self.pending = !self.pending;
            self.px = 0.0;
            (self.pr, self.pk) = release;
        }
    }

    /// Sets the branch to a steady state `level` (no pair pending).
    fn prime(&mut self, level: f32) {
        *self = Self {
            y: level,
            s: level,
            ..Self::default()
        };
    }

    fn is_finite(&self) -> bool {
        self.y.is_finite() && self.s.is_finite() && self.px.is_finite()
    }
}

/// State of the level detector (all in the log domain).
#[derive(Debug, Clone, Copy, Default)]
struct DetectorState {
    /// Detector output `y_L` (dB of gain reduction, ≥ 0); the fast branch with auto release.
    fast: Branch,
    /// Slow branch of the automatic release (dB, ≥ 0).
    slow: Branch,
    /// Opto memory `μ`, 0..1.
    memory: Branch,
}

impl DetectorState {
    /// No gain reduction pending: an input under the knee leaves the state exactly as it is
    /// (but for the pair phase, see [`Branch::skip_at_rest`]).
    #[inline]
    fn at_rest(&self) -> bool {
        self.fast.at_rest() && self.slow.at_rest() && self.memory.at_rest()
    }

    fn is_finite(&self) -> bool {
        self.fast.is_finite() && self.slow.is_finite() && self.memory.is_finite()
    }
}

/// Release pole and `1 − pole` of the opto character for memory `μ` and base release pole
/// `α_R`: `k = (1 − α_R)/(1 + 4μ)`, pole `1 − k` (see the module documentation).
#[inline(always)]
fn opto_release(base: f32, memory: f32) -> (f32, f32) {
    let k = (1.0 - base) / (1.0 + OPTO_SLOWDOWN * memory);
    (1.0 - k, k)
}

/// The static curve of `settings` (clamped to their ranges): steady-state output level in dB
/// for a steady input level `input_db` (peak, dBFS), makeup included, mix not. For drawing.
pub fn static_curve_db(settings: &CompressorSettings, input_db: f32) -> f32 {
    let s = Clamped::from(settings);
    let inv_knee = inv_double_knee(s.knee_db);
    input_db - overshoot_db(input_db, s.threshold_db, s.knee_db, inv_knee, s.slope) + s.makeup_db
}

/// Settings clamped to their documented ranges (NaN falls back to the default, ±∞ to the
/// nearer end of the range).
#[derive(Debug, Clone, Copy)]
struct Clamped {
    /// Threshold `T` in dBFS, −60..0.
    threshold_db: f32,
    /// Knee width `W` in dB, 0..24.
    knee_db: f32,
    /// `1 − 1/ratio`, 0..0.95 (ratio 1..20).
    slope: f32,
    /// Attack time constant in ms, 0.1..100.
    attack_ms: f32,
    /// Release time constant in ms, 10..2000.
    release_ms: f32,
    /// Makeup gain in dB, 0..24.
    makeup_db: f32,
    /// Dry/wet mix, 0..1.
    mix: f32,
}

impl From<&CompressorSettings> for Clamped {
    fn from(s: &CompressorSettings) -> Self {
        let d = CompressorSettings::default();
        let clamp = |v: f32, fallback: f32, lo: f32, hi: f32| {
            if v.is_nan() {
                fallback
            } else {
                v.clamp(lo, hi)
            }
        };
        Self {
            threshold_db: clamp(s.threshold_db, d.threshold_db, -60.0, 0.0),
            knee_db: clamp(s.knee_db, d.knee_db, 0.0, 24.0),
            slope: 1.0 - 1.0 / clamp(s.ratio, d.ratio, 1.0, 20.0),
            attack_ms: clamp(s.attack_ms, d.attack_ms, 0.1, 100.0),
            release_ms: clamp(s.release_ms, d.release_ms, 10.0, 2000.0),
            makeup_db: clamp(s.makeup_db, d.makeup_db, 0.0, 24.0),
            mix: clamp(s.mix, d.mix, 0.0, 1.0),
        }
    }
}

/// Detector coefficients derived from the time constants and the sample rate.
#[derive(Debug, Clone, Copy)]
struct Coeffs {
    /// `α_A`, 0..1.
    attack: f32,
    /// Fast-branch release pole of the automatic release, 0..1.
    auto_fast_release: f32,
    /// `α_R` from `release_ms`, 0..1.
    release: f32,
    /// Poles of the `Clean` detector: `α_A`, `α_R`.
    clean: Poles,
    /// Poles of the fast branch of the automatic release (`Clean`): `α_A` and 50 ms.
    auto_fast: Poles,
    /// Poles of the slow branch of the automatic release: 300 ms (never faster than the
    /// attack) and 1.5 s.
    slow: Poles,
    /// Poles of the opto memory: charge 1 s, discharge 3 s.
    memory: Poles,
    /// Flush step of the opto fast branch (its release pole varies; `δ` of its slowest pole).
    opto_delta: f32,
}

impl Coeffs {
    fn new(attack_ms: f32, release_ms: f32, sample_rate: f32) -> Self {
        let attack = one_pole_coeff(attack_ms, sample_rate);
        let release = one_pole_coeff(release_ms, sample_rate);
        let auto_fast_release = one_pole_coeff(AUTO_FAST_RELEASE_MS, sample_rate);
        let slowest = opto_release(release.max(auto_fast_release), 1.0).0;
        Self {
            attack,
            auto_fast_release,
            release,
            clean: Poles::new(attack, release),
            auto_fast: Poles::new(attack, auto_fast_release),
            slow: Poles::new(
                one_pole_coeff(AUTO_SLOW_ATTACK_MS.max(attack_ms), sample_rate),
                one_pole_coeff(AUTO_SLOW_RELEASE_MS, sample_rate),
            ),
            memory: Poles::new(
                one_pole_coeff(OPTO_CHARGE_MS, sample_rate),
                one_pole_coeff(OPTO_DISCHARGE_MS, sample_rate),
            ),
            opto_delta: Poles::new(attack, slowest).delta,
        }
    }
}

/// One step of the smooth branching peak detector: `y ← c·y + (1 − c)·x` with `c` the attack
/// coefficient when `x > y`, the release coefficient otherwise.
///
/// Written without the comparison on the loop-carried path (which made the serial detector
/// the compressor's bottleneck): both candidates `y_A = α_A·y + (1 − α_A)·x` and
/// `y_R = α_R·y + (1 − α_R)·x` are computed, and the one the rule picks is the larger when
/// `α_A ≤ α_R` (attack faster than release): for `x > y` the attack moves further towards `x`,
/// for `x ≤ y` the release stays higher (they are equal for `x = y`); the smaller one when
/// `α_A > α_R`, by the same argument. `α_A ≤ α_R` does not depend on `y`, so the choice is off
/// the critical path, and the maximum is a single instruction. (The reference for the
/// two-sample step of [`Branch`].)
#[cfg(test)]
fn branch<const FMA: bool>(x: f32, y: f32, attack: f32, release: f32) -> f32 {
    let ya = madd::<FMA>(attack, y, (1.0 - attack) * x);
    let yr = madd::<FMA>(release, y, (1.0 - release) * x);
    if attack <= release {
        max_fast(ya, yr)
    } else {
        min_fast(ya, yr)
    }
}

/// `a·b + c`, fused when `FMA` (only inside functions compiled with the FMA target feature:
/// elsewhere `mul_add` would be a slow library call).
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// `max(a, b)` for non-NaN inputs, as one instruction (`f32::max` adds NaN handling).
#[inline(always)]
fn max_fast(a: f32, b: f32) -> f32 {
    if a > b { a } else { b }
}

/// `min(a, b)` for non-NaN inputs, as one instruction.
#[inline(always)]
fn min_fast(a: f32, b: f32) -> f32 {
    if a < b { a } else { b }
}

/// [`max_fast`] for the serial detector loops, where the compiler would otherwise turn the
/// comparison into a branch (mispredicted whenever the detector switches between attack and
/// release): `maxss` on x86-64 (SSE, always present), which returns its second operand unless
/// the first is larger, exactly as [`max_fast`]. Not for loops meant to vectorise.
#[inline(always)]
fn max_serial(a: f32, b: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_cvtss_f32, _mm_max_ss, _mm_set_ss};
        // SAFETY: SSE is part of the x86-64 baseline, always available.
        unsafe { _mm_cvtss_f32(_mm_max_ss(_mm_set_ss(a), _mm_set_ss(b))) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    max_fast(a, b)
}

/// [`min_fast`] for the serial detector loops (see [`max_serial`]).
#[inline(always)]
fn min_serial(a: f32, b: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_cvtss_f32, _mm_min_ss, _mm_set_ss};
        // SAFETY: SSE is part of the x86-64 baseline, always available.
        unsafe { _mm_cvtss_f32(_mm_min_ss(_mm_set_ss(a), _mm_set_ss(b))) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    min_fast(a, b)
}

/// Stereo-linked feed-forward compressor (per stem, and the master glue).
pub struct Compressor {
    /// Sample rate in Hz.
    sample_rate: f32,
    /// Last settings taken (clamped), to detect changes.
    clamped: Clamped,
    /// `auto_release` of the last settings.
    auto_release: bool,
    /// Character of the last settings.
    character: CompCharacter,
    /// Detector key of the last settings.
    key: CompKey,
    /// Detector coefficients for `clamped` at `sample_rate`.
    coeffs: Coeffs,
    /// Threshold `T` in dBFS, smoothed.
    threshold_db: Smoother,
    /// Knee width `W` in dB, smoothed.
    knee_db: Smoother,
    /// Slope `1 − 1/R`, smoothed.
    slope: Smoother,
    /// Makeup as linear gain, smoothed.
    makeup_gain: Smoother,
    /// Dry/wet mix 0..1, smoothed.
    mix: Smoother,
    /// Bypass crossfade, 1 = enabled, 0 = bypassed.
    enable: Smoother,
    /// Linear level at the bottom of the knee, `10^((T − W/2)/20)` for the target threshold and
    /// knee: at or below it (with the curve settled) the overshoot is exactly 0.
    knee_floor_level: f32,
    /// Detector state.
    detector: DetectorState,
    /// Largest gain reduction (dB) since the last [`Compressor::take_max_gain_reduction_db`],
    /// not counting settled bypass.
    max_gr_db: f32,
    /// True while the bypass is settled (nothing runs, the audio is untouched).
    bypassed: bool,
    /// Set during a settled bypass: the detector is primed from the first active block.
    needs_priming: bool,
    /// False until the first `set_settings` after `new`, which then jumps (no ramp); `reset`
    /// jumps to the current targets, later changes ramp.
    settled_once: bool,
    /// Run the AVX2 + FMA build of the processing loop (set once in `new` from the CPU's
    /// features).
    use_avx2: bool,
}

impl Compressor {
    /// A bypassed compressor at default settings.
    pub fn new(sample_rate: f32) -> Self {
        let sr = sanitize_rate(sample_rate);
        let defaults = CompressorSettings::default();
        let c = Clamped::from(&defaults);
        let smoother = |v| Smoother::new(v, CONTROL_RAMP_MS, sr);
        Self {
            sample_rate: sr,
            clamped: c,
            auto_release: defaults.auto_release,
            character: defaults.character,
            key: defaults.key,
            coeffs: Coeffs::new(c.attack_ms, c.release_ms, sr),
            threshold_db: smoother(c.threshold_db),
            knee_db: smoother(c.knee_db),
            slope: smoother(c.slope),
            makeup_gain: smoother(db_to_gain(c.makeup_db)),
            mix: smoother(c.mix),
            enable: Smoother::new(0.0, BYPASS_FADE_MS, sr),
            knee_floor_level: knee_floor_level(c.threshold_db, c.knee_db),
            detector: DetectorState::default(),
            max_gr_db: 0.0,
            bypassed: true,
            needs_priming: false,
            settled_once: false,
            use_avx2: avx2_fma_available(),
        }
    }

    /// Changes the sample rate (coefficients and ramp lengths) and resets.
    pub fn set_sample_rate(&mut self, sample_rate: f32) {
        self.sample_rate = sanitize_rate(sample_rate);
        let sr = self.sample_rate;
        for s in [
            &mut self.threshold_db,
            &mut self.knee_db,
            &mut self.slope,
            &mut self.makeup_gain,
            &mut self.mix,
        ] {
            s.set_ramp(CONTROL_RAMP_MS, sr);
        }
        self.enable.set_ramp(BYPASS_FADE_MS, sr);
        self.coeffs = Coeffs::new(self.clamped.attack_ms, self.clamped.release_ms, sr);
        self.reset();
    }

    /// Takes new settings (real-time safe): clamps them to their ranges (threshold −60..0 dB,
    /// ratio 1..20, knee 0..24 dB, attack 0.1..100 ms, release 10..2000 ms, makeup 0..24 dB,
    /// mix 0..1; NaN falls back to the default) and starts the ramps.
    pub fn set_settings(&mut self, settings: &CompressorSettings) {
        let c = Clamped::from(settings);
        if c.attack_ms != self.clamped.attack_ms || c.release_ms != self.clamped.release_ms {
            self.coeffs = Coeffs::new(c.attack_ms, c.release_ms, self.sample_rate);
        }
        if c.threshold_db != self.clamped.threshold_db || c.knee_db != self.clamped.knee_db {
            self.knee_floor_level = knee_floor_level(c.threshold_db, c.knee_db);
        }
        if c.makeup_db != self.clamped.makeup_db {
            self.makeup_gain.set_target(db_to_gain(c.makeup_db));
        }
        self.threshold_db.set_target(c.threshold_db);
        self.knee_db.set_target(c.knee_db);
        self.slope.set_target(c.slope);
        self.mix.set_target(c.mix);
        self.enable
            .set_target(if settings.enabled { 1.0 } else { 0.0 });
        self.clamped = c;
        // A branch that is not used keeps no state (it would read on the meter and keep the
        // detector from resting).
        if !settings.auto_release {
            self.detector.slow = Branch::default();
        }
        if settings.character != CompCharacter::Opto {
            self.detector.memory = Branch::default();
        }
        self.auto_release = settings.auto_release;
        self.character = settings.character;
        self.key = settings.key;
        if !self.settled_once {
            self.snap();
            self.settled_once = true;
        }
    }

    /// Clears the detector and the meters and jumps every control to its target; the next
    /// `set_settings` jumps too.
    pub fn reset(&mut self) {
        self.clear_detector();
        self.max_gr_db = 0.0;
        self.snap();
    }

    /// The compressor adds no delay.
    pub fn latency_samples(&self) -> usize {
        0
    }

    /// Current gain reduction of the detector in dB (≥ 0; 0 = none), before mix and makeup;
    /// 0 while bypassed.
    pub fn gain_reduction_db(&self) -> f32 {
        if self.bypassed {
            0.0
        } else {
            self.detector.fast.y.max(self.detector.slow.y)
        }
    }

    /// Largest gain reduction in dB (≥ 0) since the previous call; resets the maximum.
    pub fn take_max_gain_reduction_db(&mut self) -> f32 {
        std::mem::take(&mut self.max_gr_db)
    }

    /// Static curve of the current (target) settings: see [`static_curve_db`].
    pub fn static_curve_db(&self, input_db: f32) -> f32 {
        let c = &self.clamped;
        let inv_knee = inv_double_knee(c.knee_db);
        input_db - overshoot_db(input_db, c.threshold_db, c.knee_db, inv_knee, c.slope)
            + c.makeup_db
    }

    /// Processes a stereo block in place (`min(left.len(), right.len())` frames). The detector
    /// listens to `key` (e.g. the sum of all stems) when the settings say [`CompKey::Mix`] and
    /// `key` is given with at least as many frames; otherwise to the input itself.
    pub fn process(&mut self, left: &mut [f32], right: &mut [f32], key: Option<(&[f32], &[f32])>) {
        let n = left.len().min(right.len());
        let (left, right) = (&mut left[..n], &mut right[..n]);
        let key = match key {
            Some((kl, kr)) if self.key == CompKey::Mix && kl.len() >= n && kr.len() >= n => {
                Some((&kl[..n], &kr[..n]))
            }
            _ => None,
        };
        self.bypassed = !self.enable.is_smoothing() && self.enable.target() == 0.0;
        if self.bypassed {
            // Settled bypass costs nothing: the buffers stay untouched and the detector sleeps.
            // Re-enabling primes it (see below) so the wet path fades in without overshoot.
            self.snap();
            self.detector = DetectorState::default();
            self.needs_priming = true;
        } else {
            if self.needs_priming {
                self.prime_detector(left, right, key);
            }
            #[cfg(target_arch = "x86_64")]
            if self.use_avx2 {
                // SAFETY: `use_avx2` is only set when the CPU reports AVX2 and FMA
                // (`avx2_fma_available`), which is all `dispatch_avx2_fma` requires.
                unsafe { self.dispatch_avx2_fma(left, right, key) };
            } else {
                self.dispatch::<false>(left, right, key);
            }
            #[cfg(not(target_arch = "x86_64"))]
            self.dispatch::<false>(left, right, key);
        }
        if !self.detector.is_finite() {
            self.clear_detector();
        }
    }

    /// After a bypass: sets the detector to the steady-state reduction of the block's peak
    /// level, as if it had been listening all along to a signal like this block.
    fn prime_detector(&mut self, left: &[f32], right: &[f32], key: Option<(&[f32], &[f32])>) {
        self.needs_priming = false;
        let peak = |a: &[f32], b: &[f32]| {
            a.iter()
                .chain(b)
                .fold(0.0f32, |m, &x| m.max(sanitize(x).abs()))
        };
        let level = match key {
            Some((kl, kr)) => peak(kl, kr),
            None => peak(left, right),
        };
        let c = &self.clamped;
        let inv_knee = inv_double_knee(c.knee_db);
        let over = overshoot::<false>(level, -1.0, c.threshold_db, c.knee_db, inv_knee, c.slope);
        self.detector.fast.prime(over);
        if self.auto_release {
            self.detector.slow.prime(over);
        }
    }

    /// [`Self::dispatch`] compiled for AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn dispatch_avx2_fma(
        &mut self,
        left: &mut [f32],
        right: &mut [f32],
        key: Option<(&[f32], &[f32])>,
    ) {
        self.dispatch::<true>(left, right, key);
    }

    /// Selects the specialised loop for the detector variant and key source (`FMA`: the
    /// multiply-adds of the detector are fused, only in the AVX2 + FMA build).
    #[inline(always)]
    fn dispatch<const FMA: bool>(
        &mut self,
        left: &mut [f32],
        right: &mut [f32],
        key: Option<(&[f32], &[f32])>,
    ) {
        let opto = self.character == CompCharacter::Opto;
        match (self.auto_release, opto, key) {
            (false, false, None) => self.run::<FMA, false, false, false>(left, right, &[], &[]),
            (false, true, None) => self.run::<FMA, false, true, false>(left, right, &[], &[]),
            (true, false, None) => self.run::<FMA, true, false, false>(left, right, &[], &[]),
            (true, true, None) => self.run::<FMA, true, true, false>(left, right, &[], &[]),
            (false, false, Some((kl, kr))) => {
                self.run::<FMA, false, false, true>(left, right, kl, kr)
            }
            (false, true, Some((kl, kr))) => {
                self.run::<FMA, false, true, true>(left, right, kl, kr)
            }
            (true, false, Some((kl, kr))) => {
                self.run::<FMA, true, false, true>(left, right, kl, kr)
            }
            (true, true, Some((kl, kr))) => self.run::<FMA, true, true, true>(left, right, kl, kr),
        }
    }

    /// The processing loop, specialised on the detector variant and the key source.
    ///
    /// The block is cut into chunks of [`CHUNK`] frames processed in passes: sanitising,
    /// levels and the gain computer (vectorised while the controls are settled, sample by
    /// sample with the smoothers ticking while one ramps — the same arithmetic either way),
    /// then the detector branches (serial, two samples per step, see [`Branch`]), then gain
    /// and mix. Nothing depends on where a block or chunk starts, so the output does not depend
    /// on the block size. A settled chunk whose level stays under the knee while the detector
    /// is at rest skips all but the gain.
    #[inline(always)]
    fn run<const FMA: bool, const AUTO: bool, const OPTO: bool, const KEYED: bool>(
        &mut self,
        left: &mut [f32],
        right: &mut [f32],
        key_left: &[f32],
        key_right: &[f32],
    ) {
        let co = self.coeffs;
        let mut det = self.detector;
        let mut max_gr = self.max_gr_db;
        let n = left.len();
        let level_of = |l: f32, r: f32, i: usize| {
            if KEYED {
                sanitize(key_left[i])
                    .abs()
                    .max(sanitize(key_right[i]).abs())
            } else {
                l.abs().max(r.abs())
            }
        };
        // Work buffers, reused by every chunk.
        let mut sl = [0.0f32; CHUNK];
        let mut sr = [0.0f32; CHUNK];
        let mut over = [0.0f32; CHUNK];
        let mut gr = [0.0f32; CHUNK];
        let mut aux = [0.0f32; CHUNK];
        let mut rel = [0.0f32; CHUNK];
        let mut krel = [0.0f32; CHUNK];
        let mut makeups = [0.0f32; CHUNK];
        let mut mixes = [0.0f32; CHUNK];
        // The release pole of the fast branch at rest (no opto memory).
        let base_release = if AUTO {
            co.auto_fast_release
        } else {
            co.release
        };
        let rest_release = opto_release(base_release, 0.0);

        let mut i = 0;
        while i < n {
            let len = (n - i).min(CHUNK);
            let lc = &mut left[i..i + len];
            let rc = &mut right[i..i + len];
            let (sl, sr) = (&mut sl[..len], &mut sr[..len]);
            let (over, gr) = (&mut over[..len], &mut gr[..len]);
            let moving = self.controls_moving();
            if moving {
                // A control ramps: the gain computer sample by sample, the smoothers ticking.
                for j in 0..len {
                    sl[j] = sanitize(lc[j]);
                    sr[j] = sanitize(rc[j]);
                    let level = level_of(sl[j], sr[j], i + j);
                    let curve_settled =
                        !(self.threshold_db.is_smoothing() || self.knee_db.is_smoothing());
                    let threshold_db = self.threshold_db.tick();
                    let knee_db = self.knee_db.tick();
                    let slope = self.slope.tick();
                    // The knee floor is only valid for the settled curve; −1 never skips.
                    let floor = if curve_settled {
                        self.knee_floor_level
                    } else {
                        -1.0
                    };
                    let inv_knee = inv_double_knee(knee_db);
                    over[j] =
                        overshoot::<FMA>(level, floor, threshold_db, knee_db, inv_knee, slope);
                    makeups[j] = self.makeup_gain.tick();
                    mixes[j] = self.mix.tick() * self.enable.tick();
                }
            } else {
                let floor = self.knee_floor_level;
                for j in 0..len {
                    sl[j] = sanitize(lc[j]);
                    sr[j] = sanitize(rc[j]);
                    over[j] = level_of(sl[j], sr[j], i + j);
                }
                let below_knee = over.iter().fold(true, |b, &level| b & (level <= floor));
                if below_knee && det.at_rest() {
                    // The gain reduction stays exactly 0.
                    det.fast.skip_at_rest(len, rest_release);
                    if AUTO {
                        det.slow.skip_at_rest(len, (0.0, 0.0));
                    }
                    if OPTO {
                        det.memory.skip_at_rest(len, (0.0, 0.0));
                    }
                    let unity = mix_gain::<FMA>(0.0, self.makeup_gain.value(), self.mix_value());
                    for j in 0..len {
                        lc[j] = sl[j] * unity;
                        rc[j] = sr[j] * unity;
                    }
                    i += len;
                    continue;
                }
                let (threshold_db, knee_db, slope) = (
                    self.threshold_db.value(),
                    self.knee_db.value(),
                    self.slope.value(),
                );
                let inv_knee = inv_double_knee(knee_db);
                for v in over.iter_mut() {
                    *v = overshoot::<FMA>(*v, floor, threshold_db, knee_db, inv_knee, slope);
                }
            }

            // Detector branches.
            if OPTO {
                let (target, memory) = (&mut aux[..len], &mut rel[..len]);
                for (t, &o) in target.iter_mut().zip(over.iter()) {
                    *t = min_fast(o * (1.0 / OPTO_DEPTH_REF_DB), 1.0);
                }
                det.memory.run::<FMA, true>(&co.memory, target, memory);
                let krel = &mut krel[..len];
                for (m, k) in memory.iter_mut().zip(krel.iter_mut()) {
                    (*m, *k) = opto_release(base_release, *m);
                }
                if co.attack <= base_release {
                    det.fast
                        .run_var::<FMA, true>(co.attack, co.opto_delta, over, memory, krel, gr);
                } else {
                    det.fast.run_var::<FMA, false>(
                        co.attack,
                        co.opto_delta,
                        over,
                        memory,
                        krel,
                        gr,
                    );
                }
            } else {
                let p = if AUTO { &co.auto_fast } else { &co.clean };
                if p.max {
                    det.fast.run::<FMA, true>(p, over, gr);
                } else {
                    det.fast.run::<FMA, false>(p, over, gr);
                }
            }
            if AUTO {
                let slow = &mut aux[..len];
                if co.slow.max {
                    det.slow.run::<FMA, true>(&co.slow, over, slow);
                } else {
                    det.slow.run::<FMA, false>(&co.slow, over, slow);
                }
                for (g, &s) in gr.iter_mut().zip(slow.iter()) {
                    *g = max_fast(*g, s);
                }
            }
            max_gr = gr.iter().fold(max_gr, |a, &b| a.max(b));

            // Gain and mix.
            if moving {
                for j in 0..len {
                    let g = mix_gain::<FMA>(gr[j], makeups[j], mixes[j]);
                    lc[j] = sl[j] * g;
                    rc[j] = sr[j] * g;
                }
            } else {
                let (makeup, m) = (self.makeup_gain.value(), self.mix_value());
                for j in 0..len {
                    let g = mix_gain::<FMA>(gr[j], makeup, m);
                    lc[j] = sl[j] * g;
                    rc[j] = sr[j] * g;
                }
            }
            i += len;
        }
        self.detector = det;
        self.max_gr_db = max_gr;
    }

    /// The settled wet share: mix times the bypass fade.
    #[inline]
    fn mix_value(&self) -> f32 {
        self.mix.value() * self.enable.value()
    }

    /// True while a control that the loop reads is ramping.
    #[inline]
    fn controls_moving(&self) -> bool {
        self.threshold_db.is_smoothing()
            || self.knee_db.is_smoothing()
            || self.slope.is_smoothing()
            || self.makeup_gain.is_smoothing()
            || self.mix.is_smoothing()
            || self.enable.is_smoothing()
    }

    /// Zeroes the detector state (not the meter maximum).
    fn clear_detector(&mut self) {
        self.detector = DetectorState::default();
    }

    /// Jumps every smoother to its target.
    fn snap(&mut self) {
        for s in [
            &mut self.threshold_db,
            &mut self.knee_db,
            &mut self.slope,
            &mut self.makeup_gain,
            &mut self.mix,
            &mut self.enable,
        ] {
            s.reset(s.target());
        }
    }
}

/// `10^((T − W/2)/20)`, slightly lowered so that rounding can never skip a level whose
/// overshoot would be positive.
fn knee_floor_level(threshold_db: f32, knee_db: f32) -> f32 {
    db_to_gain(threshold_db - 0.5 * knee_db) * (1.0 - 1.0e-5)
}

/// Keeps the sample rate in a sane range (the engine supports 44.1–192 kHz).
fn sanitize_rate(sample_rate: f32) -> f32 {
    if sample_rate.is_finite() {
        sample_rate.clamp(8_000.0, 768_000.0)
    } else {
        48_000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    const SR: f32 = 48_000.0;

    /// Enabled, hard knee, −20 dB threshold, 4:1, 5 ms / 100 ms, no makeup, full mix.
    fn base() -> CompressorSettings {
        CompressorSettings {
            enabled: true,
            threshold_db: -20.0,
            ratio: 4.0,
            knee_db: 0.0,
            attack_ms: 5.0,
            release_ms: 100.0,
            auto_release: false,
            makeup_db: 0.0,
            mix: 1.0,
            character: CompCharacter::Clean,
            key: CompKey::Own,
        }
    }

    fn db(x: f32) -> f32 {
        20.0 * x.abs().log10()
    }

    /// Runs `input` (both channels) through a fresh compressor in blocks of `block`, with
    /// `first` settings before `change_at` and `second` after (set at every block start), and
    /// the optional key. Returns the left output.
    fn run(
        input: &[f32],
        key: Option<&[f32]>,
        first: CompressorSettings,
        second: CompressorSettings,
        change_at: usize,
        block: usize,
    ) -> Vec<f32> {
        let mut comp = Compressor::new(SR);
        let mut left = input.to_vec();
        let mut right = input.to_vec();
        let mut start = 0;
        while start < input.len() {
            let end = (start + block).min(input.len());
            let end = if start < change_at {
                end.min(change_at)
            } else {
                end
            };
            comp.set_settings(if start < change_at { &first } else { &second });
            let k = key.map(|k| (&k[start..end], &k[start..end]));
            comp.process(&mut left[start..end], &mut right[start..end], k);
            assert_eq!(left[start..end], right[start..end]);
            start = end;
        }
        left
    }

    fn cosine(freq_hz: f64, amplitude: f64, len: usize) -> Vec<f32> {
        (0..len)
            .map(|n| (amplitude * (2.0 * PI * freq_hz * n as f64 / SR as f64).cos()) as f32)
            .collect()
    }

    /// Gain reduction (dB, ≥ 0) per sample of a positive constant-level input.
    fn gr_trace(input: &[f32], s: CompressorSettings) -> Vec<f32> {
        let out = run(input, None, s, s, 0, 512);
        out.iter().zip(input).map(|(o, i)| -db(o / i)).collect()
    }

    /// Giannoulis et al. eq. 4, written out independently of the implementation.
    fn reference_curve_db(x: f32, t: f32, r: f32, w: f32, makeup: f32) -> f32 {
        let y = if 2.0 * (x - t) < -w {
            x
        } else if w > 0.0 && 2.0 * (x - t).abs() <= w {
            x + (1.0 / r - 1.0) * (x - t + w / 2.0).powi(2) / (2.0 * w)
        } else {
            t + (x - t) / r
        };
        y + makeup
    }

    #[test]
    fn branch_picks_attack_when_rising_and_release_otherwise() {
        // The max/min form against the rule as written (Giannoulis et al. eq. 17), for attack
        // faster and slower than release, rising and falling inputs, both builds.
        let mut seed = 0x9e37_79b9u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed >> 8) as f32 / (1u32 << 24) as f32
        };
        for _ in 0..100_000 {
            let (x, y) = (40.0 * next(), 40.0 * next());
            let (attack, release) = (next(), next());
            let c = if x > y { attack } else { release };
            let expected = c * y + (1.0 - c) * x;
            for got in [
                branch::<false>(x, y, attack, release),
                branch::<true>(x, y, attack, release),
            ] {
                assert!(
                    (got - expected).abs() <= 1e-5 * (1.0 + x.abs().max(y.abs())),
                    "x {x} y {y} α_A {attack} α_R {release}: {got} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn two_sample_steps_match_the_per_sample_rule() {
        // Constant poles (both orders) and per-sample release poles, from random states and
        // inputs: the two-sample step against two steps of the rule (minus its flush `δ`).
        let mut seed = 0x1234_5678u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed >> 8) as f32 / (1u32 << 24) as f32
        };
        for _ in 0..100_000 {
            let (s, x1, x2) = (40.0 * next(), 40.0 * next(), 40.0 * next());
            let (a, r) = (next(), next());
            let two = branch::<false>(x2, branch::<false>(x1, s, a, r), a, r);
            let tol = 1e-5 * (1.0 + s.max(x1).max(x2));
            let p = Poles::new(a, r);
            let got = if p.max {
                p.pair::<false, true>(s, x1, x2)
            } else {
                p.pair::<false, false>(s, x1, x2)
            };
            assert!(
                (got - two).abs() <= tol,
                "{s} {x1} {x2} {a} {r}: {got} vs {two}"
            );
            // Variable release: a different pole on each sample.
            let (r1, r2) = (next(), next());
            let two = branch::<false>(x2, branch::<false>(x1, s, a, r1), a, r2);
            let mut b = Branch {
                s,
                ..Branch::default()
            };
            let mut y = [0.0f32; 2];
            b.run_var::<false, false>(a, 0.0, &[x1, x2], &[r1, r2], &[1.0 - r1, 1.0 - r2], &mut y);
            assert!((y[1] - two).abs() <= tol, "var: {} vs {two}", y[1]);
            assert!((y[0] - branch::<false>(x1, s, a, r1)).abs() <= tol);
        }
    }

    #[test]
    fn division_free_log_is_accurate() {
        let mut x = 1.0e-20f32;
        while x < 1.0e6 {
            let exact = (x as f64).log2();
            for got in [log2_poly::<false>(x), log2_poly::<true>(x)] {
                let err = (got as f64 - exact).abs();
                // Fit error 2.5·10⁻⁷ plus the rounding of the f32 result.
                assert!(
                    err < 2.5e-7 + 1.2e-7 * exact.abs(),
                    "log2 error {err} at {x}"
                );
            }
            x *= 1.0007;
        }
        assert_eq!(log2_poly::<false>(1.0), 0.0);
        assert_eq!(log2_poly::<false>(0.25), -2.0);
    }

    #[test]
    fn fused_build_matches_the_portable_one() {
        // Only meaningful where the CPU has AVX2 and FMA; elsewhere both runs are portable.
        let x = cosine(220.0, 0.9, 9600);
        let key = cosine(50.0, 1.0, 9600);
        for s in [
            base(),
            CompressorSettings {
                character: CompCharacter::Opto,
                auto_release: true,
                key: CompKey::Mix,
                knee_db: 6.0,
                mix: 0.6,
                ..base()
            },
        ] {
            let outputs: Vec<Vec<f32>> = [false, true]
                .iter()
                .map(|&fused| {
                    let mut comp = Compressor::new(SR);
                    comp.use_avx2 = fused && avx2_fma_available();
                    comp.set_settings(&s);
                    let (mut l, mut r) = (x.clone(), x.clone());
                    comp.process(&mut l, &mut r, Some((&key, &key)));
                    l
                })
                .collect();
            let err = outputs[0]
                .iter()
                .zip(&outputs[1])
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(err < 1e-5, "{s:?}: fused vs portable {err}");
        }
    }

    #[test]
    fn fast_log_and_exp_are_accurate() {
        let mut x = 1.0e-20f32;
        while x < 1.0e6 {
            let exact = (x as f64).log2();
            let err = (fast_log2(x) as f64 - exact).abs();
            // Truncation error plus the rounding of the f32 result.
            assert!(
                err < 1.0e-7 + 1.2e-7 * exact.abs(),
                "log2 error {err} at {x}"
            );
            x *= 1.0007;
        }
        let mut y = -60.0f32;
        while y < 20.0 {
            let exact = 2f64.powf(y as f64);
            let rel = ((fast_exp2(y) as f64 - exact) / exact).abs();
            assert!(rel < 4.0e-7, "exp2 error {rel} at {y}");
            y += 0.001;
        }
        assert!(fast_exp2(f32::NEG_INFINITY).is_finite() && fast_exp2(1.0e9).is_finite());
    }

    #[test]
    fn static_curve_matches_the_formula_in_steady_state() {
        let mut worst = 0.0f32;
        for (t, r, w, makeup, character, auto) in [
            (-30.0, 4.0, 12.0, 3.0, CompCharacter::Clean, false),
            (-20.0, 20.0, 0.0, 0.0, CompCharacter::Clean, false),
            (-40.0, 2.0, 24.0, 6.0, CompCharacter::Opto, false),
            (-25.0, 3.0, 6.0, 0.0, CompCharacter::Clean, true),
        ] {
            let s = CompressorSettings {
                threshold_db: t,
                ratio: r,
                knee_db: w,
                makeup_db: makeup,
                attack_ms: 1.0,
                character,
                auto_release: auto,
                ..base()
            };
            let mut level_db = -60.0f32;
            while level_db <= 0.0 {
                let formula = reference_curve_db(level_db, t, r, w, makeup);
                assert!((static_curve_db(&s, level_db) - formula).abs() < 1e-4);
                let x = vec![db_to_gain(level_db); 4800];
                let out = run(&x, None, s, s, 0, 512);
                let measured = db(*out.last().unwrap());
                worst = worst.max((measured - formula).abs());
                assert!(
                    (measured - formula).abs() <= 0.25,
                    "T {t} R {r} W {w}: in {level_db} dB, out {measured} dB, curve {formula} dB"
                );
                level_db += 0.5;
            }
        }
        eprintln!("static curve: worst steady-state deviation {worst:.2e} dB");
    }

    #[test]
    fn static_curve_on_a_steady_sine() {
        // A sine's peak level drives the (peak) detector; with a slow release the ripple is
        // small and the output peak follows the curve.
        let s = CompressorSettings {
            threshold_db: -24.0,
            ratio: 3.0,
            knee_db: 6.0,
            release_ms: 1000.0,
            ..base()
        };
        for level_db in [-30.0, -24.0, -12.0, -3.0] {
            let x = cosine(1000.0, db_to_gain(level_db) as f64, 24_000);
            let out = run(&x, None, s, s, 0, 512);
            let peak = out[19_200..].iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let expected = reference_curve_db(level_db, -24.0, 3.0, 6.0, 0.0);
            assert!(
                (db(peak) - expected).abs() < 0.25,
                "{level_db}: {} vs {expected}",
                db(peak)
            );
        }
    }

    #[test]
    fn attack_and_release_time_constants() {
        for (attack_ms, release_ms) in [(1.0f32, 20.0f32), (10.0, 200.0), (50.0, 1000.0)] {
            let s = CompressorSettings {
                ratio: 20.0,
                attack_ms,
                release_ms,
                ..base()
            };
            // −40 dBFS → 0 dBFS → −40 dBFS: the overshoot steps 0 → 19 dB → 0.
            let tau_a = attack_ms * 0.001 * SR;
            let tau_r = release_ms * 0.001 * SR;
            let (lead, high, low) = (100, (12.0 * tau_a) as usize, (6.0 * tau_r) as usize);
            let mut x = vec![0.01f32; lead + high + low];
            x[lead..lead + high].fill(1.0);
            let gr = gr_trace(&x, s);
            let step = 19.0;
            let attack_n = gr[lead..]
                .iter()
                .position(|&g| g >= step * (1.0 - (-1.0f32).exp()));
            let attack_n = attack_n.unwrap() as f32 + 1.0;
            let gr0 = gr[lead + high - 1];
            assert!((gr0 - step).abs() < 0.01, "{gr0}");
            let release_n = gr[lead + high..]
                .iter()
                .position(|&g| g <= gr0 / std::f32::consts::E);
            let release_n = release_n.unwrap() as f32 + 1.0;
            assert!(
                (attack_n - tau_a).abs() <= 1.0 + 0.01 * tau_a,
                "attack {attack_n} vs {tau_a}"
            );
            assert!(
                (release_n - tau_r).abs() <= 1.0 + 0.01 * tau_r,
                "release {release_n} vs {tau_r}"
            );
        }
    }

    #[test]
    fn mix_zero_and_bypass_are_bit_transparent() {
        let x: Vec<f32> = (0..9600)
            .map(|n| (0.9 * (n as f32 * 0.05).sin() * (n as f32 * 0.0013).cos()) + 1e-3)
            .collect();
        let key = cosine(60.0, 1.0, x.len());
        let heavy = CompressorSettings {
            threshold_db: -50.0,
            ratio: 20.0,
            makeup_db: 24.0,
            attack_ms: 0.1,
            mix: 0.0,
            key: CompKey::Mix,
            ..base()
        };
        for s in [
            heavy,
            CompressorSettings::default(),
            CompressorSettings::glue(),
            CompressorSettings {
                enabled: false,
                mix: 1.0,
                ..heavy
            },
        ] {
            for key in [None, Some(&key[..])] {
                let y = run(&x, key, s, s, 0, 333);
                assert!(
                    y.iter().zip(&x).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{s:?}"
                );
            }
        }
    }

    #[test]
    fn external_key_compresses_a_quiet_stem() {
        let stem = cosine(1000.0, 0.0316, 24_000); // −30 dBFS: below the −20 dB threshold
        let key = cosine(300.0, 1.0, 24_000); // 0 dBFS
        let keyed = CompressorSettings {
            attack_ms: 1.0,
            release_ms: 500.0,
            key: CompKey::Mix,
            ..base()
        };
        let own = CompressorSettings {
            key: CompKey::Own,
            ..keyed
        };
        // Own key (or no key given): untouched.
        assert_eq!(run(&stem, Some(&key), own, own, 0, 512), stem);
        assert_eq!(run(&stem, None, keyed, keyed, 0, 512), stem);
        // Mix key: reduced by the key's overshoot, (0 − (−20))·(1 − 1/4) = 15 dB.
        let y = run(&stem, Some(&key), keyed, keyed, 0, 512);
        let peak = |v: &[f32]| v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let gr = db(peak(&stem[12_000..])) - db(peak(&y[12_000..]));
        assert!((gr - 15.0).abs() < 0.5, "keyed reduction {gr} dB");
    }

    /// Samples from the end of a full-scale burst of `burst_ms` (−40 dBFS before and after)
    /// until the gain reduction has fallen to 1/e of its value at the end of the burst.
    fn release_time_ms(s: CompressorSettings, burst_ms: f32) -> f32 {
        let burst = (burst_ms * 0.001 * SR) as usize;
        let mut x = vec![0.01f32; 100 + burst + 4 * SR as usize];
        x[100..100 + burst].fill(1.0);
        let gr = gr_trace(&x, s);
        let gr0 = gr[100 + burst - 1];
        let n = gr[100 + burst..]
            .iter()
            .position(|&g| g <= gr0 / std::f32::consts::E);
        (n.expect("released") as f32 + 1.0) / SR * 1000.0
    }

    #[test]
    fn opto_releases_slower_after_long_reduction() {
        let opto = CompressorSettings {
            character: CompCharacter::Opto,
            attack_ms: 1.0,
            release_ms: 100.0,
            ..base()
        };
        let short = release_time_ms(opto, 50.0);
        let long = release_time_ms(opto, 4000.0);
        eprintln!("opto release: {short:.0} ms after 50 ms, {long:.0} ms after 4 s");
        assert!((100.0..150.0).contains(&short), "{short}");
        assert!(long > 3.0 * short, "{long} vs {short}");
        // Clean releases the same way whatever came before.
        let clean = CompressorSettings {
            character: CompCharacter::Clean,
            ..opto
        };
        let (a, b) = (release_time_ms(clean, 50.0), release_time_ms(clean, 4000.0));
        assert!(
            (a - 100.0).abs() < 1.0 && (b - 100.0).abs() < 1.0,
            "{a} {b}"
        );
    }

    #[test]
    fn auto_release_is_fast_after_transients_and_slow_after_sustained_reduction() {
        let auto = CompressorSettings {
            auto_release: true,
            attack_ms: 1.0,
            release_ms: 2000.0, // unused with auto release
            ..base()
        };
        let transient = release_time_ms(auto, 20.0);
        let sustained = release_time_ms(auto, 3000.0);
        eprintln!("auto release: {transient:.0} ms after 20 ms, {sustained:.0} ms after 3 s");
        assert!(transient < 80.0, "{transient}");
        assert!(sustained > 10.0 * transient, "{sustained}");
    }

    #[test]
    fn gain_reduction_meter() {
        let mut comp = Compressor::new(SR);
        comp.set_settings(&CompressorSettings {
            attack_ms: 0.1,
            ..base()
        });
        let (mut l, mut r) = (vec![1.0f32; 4800], vec![0.5f32; 4800]);
        comp.process(&mut l, &mut r, None);
        assert!((comp.gain_reduction_db() - 15.0).abs() < 0.01);
        assert!((comp.take_max_gain_reduction_db() - 15.0).abs() < 0.01);
        let (mut l, mut r) = (vec![0.0f32; 48_000], vec![0.0f32; 48_000]);
        comp.process(&mut l, &mut r, None);
        assert!(comp.gain_reduction_db() < 0.01);
        assert!(comp.take_max_gain_reduction_db() < 15.0);
        assert_eq!(comp.take_max_gain_reduction_db(), 0.0);
        // Bypassed: the meter reads 0 (the detector keeps listening).
        comp.set_settings(&CompressorSettings {
            enabled: false,
            ..base()
        });
        let (mut l, mut r) = (vec![1.0f32; 4800], vec![0.5f32; 4800]);
        comp.process(&mut l, &mut r, None);
        comp.process(&mut l, &mut r, None);
        assert_eq!(comp.gain_reduction_db(), 0.0);
        comp.take_max_gain_reduction_db();
        comp.process(&mut l, &mut r, None);
        assert_eq!(comp.take_max_gain_reduction_db(), 0.0);
    }

    #[test]
    fn block_size_does_not_change_the_output() {
        let x = cosine(220.0, 0.9, 12_000);
        let key = cosine(50.0, 1.0, 12_000);
        let a = CompressorSettings {
            character: CompCharacter::Opto,
            auto_release: true,
            key: CompKey::Mix,
            ..base()
        };
        let b = CompressorSettings {
            threshold_db: -35.0,
            ratio: 8.0,
            knee_db: 10.0,
            makeup_db: 6.0,
            mix: 0.6,
            ..a
        };
        let reference = run(&x, Some(&key), a, b, 4096, 1);
        for block in [37, 512] {
            assert_eq!(
                run(&x, Some(&key), a, b, 4096, block),
                reference,
                "block {block}"
            );
        }
    }

    #[test]
    fn recovers_from_nan_and_inf() {
        let mut x = cosine(500.0, 0.7, 9600);
        let mut clean = x.clone();
        for n in 1000..1012 {
            x[n] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.0e-40][n % 4];
            clean[n] = 0.0;
        }
        for s in [
            base(),
            CompressorSettings {
                character: CompCharacter::Opto,
                auto_release: true,
                key: CompKey::Mix,
                ..base()
            },
        ] {
            let y = run(&x, Some(&x), s, s, 0, 64);
            assert!(y.iter().all(|v| v.is_finite()));
            assert_eq!(y[1012..], run(&clean, Some(&clean), s, s, 0, 64)[1012..]);
        }
        let mut comp = Compressor::new(SR);
        comp.set_settings(&CompressorSettings {
            threshold_db: f32::NAN,
            ratio: f32::INFINITY,
            knee_db: f32::NAN,
            attack_ms: f32::NEG_INFINITY,
            release_ms: f32::NAN,
            makeup_db: f32::INFINITY,
            mix: f32::NAN,
            ..base()
        });
        let (mut l, mut r) = (vec![0.5f32; 256], vec![f32::NAN; 256]);
        comp.process(
            &mut l,
            &mut r,
            Some((&[f32::INFINITY; 256], &[f32::NAN; 256])),
        );
        assert!(l.iter().chain(&r).all(|v| v.is_finite()));
        assert!(comp.gain_reduction_db().is_finite());
    }

    fn max_jump(y: &[f32]) -> f32 {
        y.windows(2).fold(0.0f32, |m, w| m.max((w[1] - w[0]).abs()))
    }

    /// A step of a control during a 250 Hz cosine (stepping at a peak, where a gain jump
    /// stands out most against the signal's own slope) never makes a larger
    /// sample-to-sample jump than the runs that had the first or second setting all along
    /// (within 5 %), at block sizes 1 and 512.
    fn assert_click_free(first: CompressorSettings, second: CompressorSettings) {
        let change_at = 24 * 512;
        let x = cosine(250.0, 0.5, change_at + 24_000);
        let window = change_at - 480..x.len();
        for block in [1, 512] {
            let step = max_jump(&run(&x, None, first, second, change_at, block)[window.clone()]);
            let before = max_jump(&run(&x, None, first, first, 0, block)[window.clone()]);
            let after = max_jump(&run(&x, None, second, second, 0, block)[window.clone()]);
            assert!(
                step <= 1.05 * before.max(after),
                "{first:?} → {second:?}, block {block}: {step} vs {before} / {after}"
            );
        }
    }

    fn assert_click_free_both_ways(first: CompressorSettings, second: CompressorSettings) {
        assert_click_free(first, second);
        assert_click_free(second, first);
    }

    #[test]
    fn threshold_automation_is_click_free() {
        let s = CompressorSettings {
            attack_ms: 0.1, // the fastest: the detector hides nothing
            ..base()
        };
        assert_click_free_both_ways(
            CompressorSettings {
                threshold_db: -10.0,
                ..s
            },
            CompressorSettings {
                threshold_db: -40.0,
                ..s
            },
        );
    }

    #[test]
    fn ratio_automation_is_click_free() {
        let s = CompressorSettings {
            attack_ms: 0.1, // the fastest: the detector hides nothing
            threshold_db: -30.0,
            ..base()
        };
        assert_click_free_both_ways(
            CompressorSettings { ratio: 1.0, ..s },
            CompressorSettings { ratio: 20.0, ..s },
        );
    }

    #[test]
    fn knee_automation_is_click_free() {
        let s = CompressorSettings {
            attack_ms: 0.1,     // the fastest: the detector hides nothing
            threshold_db: -6.0, // at the signal peak: the knee decides alone
            ratio: 20.0,
            ..base()
        };
        assert_click_free_both_ways(
            CompressorSettings { knee_db: 0.0, ..s },
            CompressorSettings { knee_db: 24.0, ..s },
        );
    }

    #[test]
    fn makeup_automation_is_click_free() {
        assert_click_free_both_ways(
            CompressorSettings {
                makeup_db: 0.0,
                ..base()
            },
            CompressorSettings {
                makeup_db: 24.0,
                ..base()
            },
        );
    }

    #[test]
    fn mix_and_bypass_automation_are_click_free() {
        let s = CompressorSettings {
            threshold_db: -40.0,
            ratio: 10.0,
            makeup_db: 12.0,
            ..base()
        };
        assert_click_free_both_ways(
            CompressorSettings { mix: 0.0, ..s },
            CompressorSettings { mix: 1.0, ..s },
        );
        assert_click_free_both_ways(
            CompressorSettings {
                enabled: false,
                ..s
            },
            s,
        );
    }

    /// Timing, run by hand: `cargo test -p stembus-dsp --lib compressor::tests::speed --
    /// --ignored --nocapture`.
    #[test]
    #[ignore]
    fn speed() {
        let len = 4800;
        let music: Vec<f32> = (0..len)
            .map(|n| {
                let t = n as f32 / SR;
                0.5 * (2.0 * std::f32::consts::PI * 110.0 * t).sin()
                    * (0.6 + 0.4 * (2.0 * std::f32::consts::PI * 3.0 * t).sin())
            })
            .collect();
        let quiet: Vec<f32> = music.iter().map(|v| v * 0.01).collect();
        let cases = [
            ("clean, compressing", base(), &music, false),
            ("clean, below threshold", base(), &quiet, false),
            (
                "opto + auto, keyed",
                CompressorSettings {
                    character: CompCharacter::Opto,
                    auto_release: true,
                    key: CompKey::Mix,
                    knee_db: 6.0,
                    mix: 0.7,
                    ..base()
                },
                &music,
                true,
            ),
            (
                "bypassed",
                CompressorSettings {
                    enabled: false,
                    ..base()
                },
                &music,
                false,
            ),
        ];
        for ((name, s, x, keyed), fused) in cases
            .into_iter()
            .flat_map(|case| [(case, true), (case, false)])
        {
            let mut comp = Compressor::new(SR);
            comp.use_avx2 = fused && avx2_fma_available();
            comp.set_settings(&s);
            let name = if fused {
                name.to_string()
            } else {
                format!("{name} (portable build)")
            };
            let (mut l, mut r) = (x.clone(), x.clone());
            // Best of several runs: the machine may be shared.
            let mut best = f64::INFINITY;
            for _ in 0..40 {
                let start = std::time::Instant::now();
                for (cl, cr) in l.chunks_mut(512).zip(r.chunks_mut(512)) {
                    let k = keyed.then(|| (&music[..cl.len()], &music[..cl.len()]));
                    comp.process(cl, cr, k);
                }
                best = best.min(start.elapsed().as_nanos() as f64 / len as f64);
                l.copy_from_slice(x);
                r.copy_from_slice(x);
            }
            eprintln!("compressor {name}: {best:.2} ns per stereo frame");
            std::hint::black_box(&l);
        }
    }
}
