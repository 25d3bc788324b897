//! Second-order IIR sections: coefficient design (a value type), frequency response for drawing
//! curves, transposed-direct-form-II states, click-free coefficient ramps, and the stereo
//! kernels the EQ, dynamic EQ and stereo processors run on.
//!
//! # Coefficient design
//!
//! Robert Bristow-Johnson, *Cookbook formulae for audio EQ biquad filter coefficients*
//! (the "Audio EQ Cookbook"). Every design is the bilinear transform of an analog prototype
//! `H(s)` (s normalised to the corner frequency), pre-warped so that the digital response at
//! `freq_hz` equals the analog response at the corner:
//!
//! ```text
//! w0 = 2π·f0/fs,   α = sin(w0)/(2Q),   A = 10^(gain_db/40)
//! lowpass    H(s) = 1 / (s² + s/Q + 1)
//! highpass   H(s) = s² / (s² + s/Q + 1)
//! bandpass   H(s) = (s/Q) / (s² + s/Q + 1)                       (0 dB peak)
//! allpass    H(s) = (s² − s/Q + 1) / (s² + s/Q + 1)
//! peaking    H(s) = (s² + s·A/Q + 1) / (s² + s/(A·Q) + 1)
//! low shelf  H(s) = A·(s² + (√A/Q)·s + A) / (A·s² + (√A/Q)·s + 1)
//! high shelf H(s) = A·(A·s² + (√A/Q)·s + 1) / (s² + (√A/Q)·s + A)
//! ```
//!
//! Bilinear (RBJ) designs rather than matched ones (Vicanek, Orfanidis): they are exact
//! identities where the engine relies on them — a 0 dB bell or shelf has bit-identical numerator
//! and denominator (so an idle band is an exact identity), and the Linkwitz–Riley low-pass plus
//! high-pass sums to exactly the all-pass of the same corner — they are well conditioned for every
//! Q in range (matched designs lose accuracy for Q outside ≈ 0.5..5), and they are stable by
//! construction. Their cost is "cramping": a bell above ≈ fs/4 is narrower and lopsided compared
//! with its analog prototype, and a response is forced to its Nyquist value. The GUI draws
//! [`Coefficients::response`] of the filter actually running, so what is drawn is what is heard.
//!
//! # Numeric format
//!
//! Coefficients are designed **and** applied in `f64`; samples enter and leave as `f32`. A 10 Hz
//! high-pass at 192 kHz has its poles within 3·10⁻⁴ of z = 1: in `f32` the coefficient `a1 ≈ −2`
//! can only be represented to ±1.2·10⁻⁷, which moves the corner by tens of percent, and the state
//! recursion adds noise amplified by 1/(1 − |p|)². In `f64` both errors are ≈ 10⁻¹⁶, far below
//! audibility. Left and right run together as the two lanes of one 128-bit vector ([`Lanes`]:
//! SSE2 on x86-64, NEON on aarch64), so a stereo `f64` section costs one mono section.
//!
//! # State and time variation
//!
//! [`Biquad`] is transposed direct form II (two state variables per channel, which is the
//! numerically best of the direct forms in floating point); [`LaneState`] is the same state on
//! two lanes, updated without waiting for the output (see there). Coefficient changes are
//! linear interpolation, sample by sample, between two stable designs ([`CoefficientRamp`],
//! [`Section::ramp_to`]). The set of stable denominators `1 + a1·z⁻¹ + a2·z⁻²` is the triangle
//! `|a2| < 1, |a1| < 1 + a2`, which is convex, so every interpolated denominator is stable as
//! well.
//!
//! # Processing
//!
//! A processor keeps its filters as [`Section`]s (lane coefficients, ramp, state) and runs the
//! ones in use as one [`SectionChain`]: per sample through every section, with all states and
//! coefficients in local variables, over runs in which no ramp starts or ends. Where AVX2 and
//! FMA run, the chain is skewed by one sample per section so that two sections of both
//! channels share one 256-bit register (`skewed`, about twice the throughput of the portable
//! loop). Blocks are
//! converted (sanitised) into an `f64` stack buffer cell by cell of a sample-counted grid
//! (`process_in_grid`, or `process_settled_in_grid` while nothing moves); housekeeping
//! (flushing tiny states, healing non-finite ones, retiring idle bands) happens at cell ends.
//! A chain of one or two registers (the stereo crossover) does its `f32` conversions inside
//! the kernel's frame loop instead (`skewed::Io`). Nothing depends on where blocks start or
//! end, so any block size gives bit-identical output.

use std::mem::MaybeUninit;

use crate::util::{DENORMAL_FLUSH, MAX_INPUT};

/// State magnitudes below this are flushed to zero (−600 dB: inaudible, and it keeps the `f64`
/// recursion out of the subnormal range after long silences).
const STATE_FLUSH: f64 = 1.0e-30;

/// Lowest corner frequency a design accepts, as a fraction of the sample rate.
const MIN_FREQ_RATIO: f64 = 1.0e-6;

/// Highest corner frequency a design accepts, as a fraction of the sample rate (just below
/// Nyquist; the processors clamp tighter).
const MAX_FREQ_RATIO: f64 = 0.499;

/// Q range a design accepts (the processors clamp tighter).
const MIN_Q: f64 = 0.01;
/// See [`MIN_Q`].
const MAX_Q: f64 = 100.0;

/// Largest gain a design accepts, in dB (either sign).
const MAX_GAIN_DB: f64 = 48.0;

/// Butterworth section Q values of a 2nd-order (12 dB/oct) filter.
pub const BUTTERWORTH_Q2: [f64; 1] = [std::f64::consts::FRAC_1_SQRT_2];

/// Butterworth section Q values of a 4th-order (24 dB/oct) cascade, `Q_k = 1/(2·cos θ_k)` with
/// `θ_k = (2k + 1)·π/(2N)`, N = 4, k = 0, 1 (see [`butterworth_q`]).
pub const BUTTERWORTH_Q4: [f64; 2] = [0.541_196_100_146_197, 1.306_562_964_876_376_5];

/// Butterworth section Q values of an 8th-order (48 dB/oct) cascade, N = 8, k = 0..3 (see
/// [`butterworth_q`]).
pub const BUTTERWORTH_Q8: [f64; 4] = [
    0.509_795_579_104_159_2,
    0.601_344_886_935_045_3,
    0.899_976_223_136_415_6,
    2.562_915_447_741_506,
];

/// Q of section `k` (0-based, `k < order/2`) of an even-order Butterworth filter:
/// `Q_k = 1 / (2·cos((2k + 1)·π / (2·order)))`. The poles of an order-N Butterworth filter lie
/// on the unit circle at angles `θ_k` from the negative real axis; each conjugate pair is one
/// second-order section with damping `cos θ_k = 1/(2Q_k)`.
pub fn butterworth_q(order: usize, k: usize) -> f64 {
    let theta = (2 * k + 1) as f64 * std::f64::consts::PI / (2 * order) as f64;
    0.5 / theta.cos()
}

/// A complex number, just enough for frequency responses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Complex {
    /// Real part.
    pub re: f64,
    /// Imaginary part.
    pub im: f64,
}

impl Complex {
    /// The complex number `re + j·im`.
    pub const fn new(re: f64, im: f64) -> Self {
        Self { re, im }
    }

    /// `e^{jφ}`.
    pub fn from_angle(phi: f64) -> Self {
        Self::new(phi.cos(), phi.sin())
    }

    /// Magnitude `|z|`.
    pub fn abs(self) -> f64 {
        self.re.hypot(self.im)
    }

    /// Phase in radians.
    pub fn arg(self) -> f64 {
        self.im.atan2(self.re)
    }
}

impl std::ops::Add for Complex {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self::new(self.re + o.re, self.im + o.im)
    }
}

impl std::ops::Mul for Complex {
    type Output = Self;
    fn mul(self, o: Self) -> Self {
        Self::new(
            self.re * o.re - self.im * o.im,
            self.re * o.im + self.im * o.re,
        )
    }
}

impl std::ops::Div for Complex {
    type Output = Self;
    /// Quotient (`o` must not be zero).
    fn div(self, o: Self) -> Self {
        let d = o.re * o.re + o.im * o.im;
        Self::new(
            (self.re * o.re + self.im * o.im) / d,
            (self.im * o.re - self.re * o.im) / d,
        )
    }
}

/// Normalised biquad coefficients (`a0 = 1`):
/// `H(z) = (b0 + b1·z⁻¹ + b2·z⁻²) / (1 + a1·z⁻¹ + a2·z⁻²)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coefficients {
    /// Feed-forward coefficient of `x[n]`.
    pub b0: f64,
    /// Feed-forward coefficient of `x[n−1]`.
    pub b1: f64,
    /// Feed-forward coefficient of `x[n−2]`.
    pub b2: f64,
    /// Feedback coefficient of y[n−1] (sign as in the denominator above).
    pub a1: f64,
    /// Feedback coefficient of `y[n−2]`.
    pub a2: f64,
}

/// Shared RBJ intermediate values for a corner `freq_hz` and `q`, clamped to a designable range.
/// Kept by a processor whose band gain moves while its frequency and Q stay put (the dynamic
/// EQ), so that a redesign costs no trigonometry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Warp {
    /// `cos(w0)`.
    cos_w0: f64,
    /// `1 − cos(w0)`, computed as `2·sin²(w0/2)` (no cancellation at low frequencies).
    one_minus_cos: f64,
    /// `α = sin(w0)/(2Q)`.
    alpha: f64,
}

/// Replaces a non-finite value by `fallback` and clamps to `lo..=hi`.
fn sane(x: f64, lo: f64, hi: f64, fallback: f64) -> f64 {
    if x.is_finite() {
        x.clamp(lo, hi)
    } else {
        fallback
    }
}

impl Warp {
    /// `w0 = 2π·freq_hz/sample_rate` and `α = sin(w0)/(2Q)` of a corner (clamped).
    pub fn new(sample_rate: f64, freq_hz: f64, q: f64) -> Self {
        let fs = sane(sample_rate, 1000.0, 1.0e7, 48_000.0);
        let ratio = sane(freq_hz / fs, MIN_FREQ_RATIO, MAX_FREQ_RATIO, 0.25);
        let q = sane(q, MIN_Q, MAX_Q, std::f64::consts::FRAC_1_SQRT_2);
        // One sincos of w0/2: sin w0 = 2·sin(w0/2)·cos(w0/2), 1 − cos w0 = 2·sin²(w0/2)
        // (no cancellation at low frequencies), cos w0 = 1 − 2·sin²(w0/2).
        let (half_sin, half_cos) = (std::f64::consts::PI * ratio).sin_cos();
        let one_minus_cos = 2.0 * half_sin * half_sin;
        Self {
            cos_w0: 1.0 - one_minus_cos,
            one_minus_cos,
            alpha: half_sin * half_cos / q,
        }
    }
}

impl Warp {
    /// [`Coefficients::peaking`] for this corner and `A = 10^(gain_db/40)` (positive, finite),
    /// directly in the lane form, with one division instead of seven (for a bell redesigned
    /// every few samples):
    ///
    /// ```text
    /// d = 1/(A + α),  1/a0 = A·d
    /// b0 = (1 + α·A)·A·d,  a1 = −2·cos(w0)·A·d,  b2 = (1 − α·A)·A·d,  a2 = (A − α)·d
    /// c1 = b1 − a1·b0 = a1·(1 − b0)   (b1 = a1),   c2 = b2 − a2·b0
    /// ```
    ///
    /// Within rounding of [`Coefficients::peaking`]; `A = 1` gives that design exactly (an
    /// exact identity).
    pub fn peaking_lanes(&self, a: f64) -> LaneCoefficients {
        if a == 1.0 {
            return LaneCoefficients::splat(&Coefficients::peaking_warped(self, 1.0));
        }
        let d = 1.0 / (a + self.alpha);
        let r = a * d;
        let b0 = (1.0 + self.alpha * a) * r;
        let a1 = -2.0 * self.cos_w0 * r;
        let b2 = (1.0 - self.alpha * a) * r;
        let a2 = (a - self.alpha) * d;
        LaneCoefficients {
            b0: [b0; 2],
            c1: [a1 * (1.0 - b0); 2],
            c2: [b2 - a2 * b0; 2],
            a1: [a1; 2],
            a2: [a2; 2],
        }
    }
}

/// `A = 10^(gain_db/40)` (square root of the linear gain), clamped to ±[`MAX_GAIN_DB`].
fn shelf_amplitude(gain_db: f64) -> f64 {
    // 10^(g/40) = 2^(g·log2(10)/40): `exp2` is cheaper than `powf`, and exact (1) at 0 dB.
    (sane(gain_db, -MAX_GAIN_DB, MAX_GAIN_DB, 0.0) * (std::f64::consts::LOG2_10 / 40.0)).exp2()
}

impl Coefficients {
    /// `H(z) = 1`.
    pub const IDENTITY: Self = Self {
        b0: 1.0,
        b1: 0.0,
        b2: 0.0,
        a1: 0.0,
        a2: 0.0,
    };

    /// Normalises raw `b0 b1 b2 / a0 a1 a2`.
    fn normalized(b0: f64, b1: f64, b2: f64, a0: f64, a1: f64, a2: f64) -> Self {
        // Division, not multiplication by 1/a0: equal raw coefficients stay bit-equal.
        Self {
            b0: b0 / a0,
            b1: b1 / a0,
            b2: b2 / a0,
            a1: a1 / a0,
            a2: a2 / a0,
        }
    }

    /// RBJ low-pass, `H(s) = 1/(s² + s/Q + 1)`; Q = 1/√2 is Butterworth (−3 dB at `freq_hz`).
    pub fn lowpass(sample_rate: f64, freq_hz: f64, q: f64) -> Self {
        let w = Warp::new(sample_rate, freq_hz, q);
        let b = 0.5 * w.one_minus_cos;
        Self::normalized(
            b,
            w.one_minus_cos,
            b,
            1.0 + w.alpha,
            -2.0 * w.cos_w0,
            1.0 - w.alpha,
        )
    }

    /// RBJ high-pass, `H(s) = s²/(s² + s/Q + 1)`.
    pub fn highpass(sample_rate: f64, freq_hz: f64, q: f64) -> Self {
        let w = Warp::new(sample_rate, freq_hz, q);
        let one_plus_cos = 2.0 - w.one_minus_cos;
        let b = 0.5 * one_plus_cos;
        Self::normalized(
            b,
            -one_plus_cos,
            b,
            1.0 + w.alpha,
            -2.0 * w.cos_w0,
            1.0 - w.alpha,
        )
    }

    /// RBJ band-pass with 0 dB peak gain, `H(s) = (s/Q)/(s² + s/Q + 1)`; used as a band
    /// detector.
    pub fn bandpass(sample_rate: f64, freq_hz: f64, q: f64) -> Self {
        Self::bandpass_warped(&Warp::new(sample_rate, freq_hz, q))
    }

    /// [`Coefficients::bandpass`] from a precomputed [`Warp`].
    pub fn bandpass_warped(w: &Warp) -> Self {
        Self::normalized(
            w.alpha,
            0.0,
            -w.alpha,
            1.0 + w.alpha,
            -2.0 * w.cos_w0,
            1.0 - w.alpha,
        )
    }

    /// RBJ all-pass, `H(s) = (s² − s/Q + 1)/(s² + s/Q + 1)`.
    pub fn allpass(sample_rate: f64, freq_hz: f64, q: f64) -> Self {
        let w = Warp::new(sample_rate, freq_hz, q);
        Self::normalized(
            1.0 - w.alpha,
            -2.0 * w.cos_w0,
            1.0 + w.alpha,
            1.0 + w.alpha,
            -2.0 * w.cos_w0,
            1.0 - w.alpha,
        )
    }

    /// RBJ peaking EQ (bell), `H(s) = (s² + s·A/Q + 1)/(s² + s/(A·Q) + 1)`: `gain_db` at
    /// `freq_hz`, Q as in the cookbook (bandwidth between the half-gain-in-dB points). 0 dB gives
    /// numerator == denominator exactly.
    pub fn peaking(sample_rate: f64, freq_hz: f64, q: f64, gain_db: f64) -> Self {
        Self::peaking_warped(
            &Warp::new(sample_rate, freq_hz, q),
            shelf_amplitude(gain_db),
        )
    }

    /// [`Coefficients::peaking`] from a precomputed [`Warp`] and `A = 10^(gain_db/40)` (must be
    /// positive and finite; `A = 1` gives numerator == denominator exactly).
    pub fn peaking_warped(w: &Warp, a: f64) -> Self {
        let a1 = -2.0 * w.cos_w0;
        Self::normalized(
            1.0 + w.alpha * a,
            a1,
            1.0 - w.alpha * a,
            1.0 + w.alpha / a,
            a1,
            1.0 - w.alpha / a,
        )
    }

    /// RBJ low shelf, `H(s) = A·(s² + (√A/Q)·s + A)/(A·s² + (√A/Q)·s + 1)`: `gain_db` below,
    /// 0 dB above, `gain_db/2` at `freq_hz`. Q = 1/√2 is the steepest slope without overshoot
    /// (cookbook shelf slope S = 1).
    pub fn low_shelf(sample_rate: f64, freq_hz: f64, q: f64, gain_db: f64) -> Self {
        let w = Warp::new(sample_rate, freq_hz, q);
        let a = shelf_amplitude(gain_db);
        let (ap1, am1) = (a + 1.0, a - 1.0);
        let two_sqrt_a_alpha = 2.0 * a.sqrt() * w.alpha;
        let c = w.cos_w0;
        Self::normalized(
            a * (ap1 - am1 * c + two_sqrt_a_alpha),
            2.0 * a * (am1 - ap1 * c),
            a * (ap1 - am1 * c - two_sqrt_a_alpha),
            ap1 + am1 * c + two_sqrt_a_alpha,
            -2.0 * (am1 + ap1 * c),
            ap1 + am1 * c - two_sqrt_a_alpha,
        )
    }

    /// RBJ high shelf, `H(s) = A·(A·s² + (√A/Q)·s + 1)/(s² + (√A/Q)·s + A)`: 0 dB below,
    /// `gain_db` above, `gain_db/2` at `freq_hz`.
    pub fn high_shelf(sample_rate: f64, freq_hz: f64, q: f64, gain_db: f64) -> Self {
        let w = Warp::new(sample_rate, freq_hz, q);
        let a = shelf_amplitude(gain_db);
        let (ap1, am1) = (a + 1.0, a - 1.0);
        let two_sqrt_a_alpha = 2.0 * a.sqrt() * w.alpha;
        let c = w.cos_w0;
        Self::normalized(
            a * (ap1 + am1 * c + two_sqrt_a_alpha),
            -2.0 * a * (am1 + ap1 * c),
            a * (ap1 + am1 * c - two_sqrt_a_alpha),
            ap1 - am1 * c + two_sqrt_a_alpha,
            2.0 * (am1 - ap1 * c),
            ap1 - am1 * c - two_sqrt_a_alpha,
        )
    }

    /// First-order tilt around a pivot: `−tilt_db/2` at DC, `+tilt_db/2` at high frequencies,
    /// exactly 0 dB at `pivot_hz` (and its magnitude in dB is odd-symmetric about the pivot on a
    /// log-frequency axis in the analog prototype):
    ///
    /// ```text
    /// H(s) = (g·s + 1)/(s + g),   g = 10^(tilt_db/40),   s normalised to 2π·pivot_hz
    /// ```
    ///
    /// Bilinear transform pre-warped at the pivot, `s = (1/t)·(1 − z⁻¹)/(1 + z⁻¹)`,
    /// `t = tan(w0/2)`:
    /// `b0 = (g + t)/a0, b1 = (t − g)/a0, a1 = (g·t − 1)/a0, a0 = 1 + g·t` (b2 = a2 = 0).
    /// One first-order section is the classic broad mastering tilt (6 dB/oct at most, no
    /// overshoot); a pair of second-order shelves would bunch the change around the pivot.
    pub fn tilt(sample_rate: f64, pivot_hz: f64, tilt_db: f64) -> Self {
        let fs = sane(sample_rate, 1000.0, 1.0e7, 48_000.0);
        let ratio = sane(pivot_hz / fs, MIN_FREQ_RATIO, MAX_FREQ_RATIO, 0.02);
        let t = (std::f64::consts::PI * ratio).tan();
        let g = shelf_amplitude(tilt_db);
        let a0 = 1.0 + g * t;
        Self::normalized(g + t, t - g, 0.0, a0, g * t - 1.0, 0.0)
    }

    /// One of the two identical Butterworth (Q = 1/√2) low-pass sections whose cascade is the
    /// 4th-order Linkwitz–Riley low-pass `LR4_LP(s) = 1/(s² + √2·s + 1)²` (−6 dB at the corner).
    pub fn linkwitz_riley_lowpass(sample_rate: f64, freq_hz: f64) -> Self {
        Self::lowpass(sample_rate, freq_hz, std::f64::consts::FRAC_1_SQRT_2)
    }

    /// One of the two identical Butterworth high-pass sections of the LR4 high-pass
    /// `LR4_HP(s) = s⁴/(s² + √2·s + 1)²`.
    pub fn linkwitz_riley_highpass(sample_rate: f64, freq_hz: f64) -> Self {
        Self::highpass(sample_rate, freq_hz, std::f64::consts::FRAC_1_SQRT_2)
    }

    /// The all-pass an LR4 crossover sums to:
    /// `LR4_LP + LR4_HP = (s⁴ + 1)/(s² + √2·s + 1)² = (s² − √2·s + 1)/(s² + √2·s + 1)`
    /// (because `s⁴ + 1 = (s² + √2·s + 1)(s² − √2·s + 1)`). The bilinear transform is a
    /// substitution, so the identity holds exactly for the digital sections too. Applying this
    /// to a path that is not split keeps it in phase with a split one.
    pub fn linkwitz_riley_allpass(sample_rate: f64, freq_hz: f64) -> Self {
        Self::allpass(sample_rate, freq_hz, std::f64::consts::FRAC_1_SQRT_2)
    }

    /// Linear interpolation `self + t·(other − self)`, `t` in 0..1. Stable if both are.
    pub fn lerp(&self, other: &Self, t: f64) -> Self {
        Self {
            b0: self.b0 + t * (other.b0 - self.b0),
            b1: self.b1 + t * (other.b1 - self.b1),
            b2: self.b2 + t * (other.b2 - self.b2),
            a1: self.a1 + t * (other.a1 - self.a1),
            a2: self.a2 + t * (other.a2 - self.a2),
        }
    }

    /// True if both poles are strictly inside the unit circle (the stability triangle
    /// `|a2| < 1`, `|a1| < 1 + a2`) and every coefficient is finite.
    pub fn is_stable(&self) -> bool {
        [self.b0, self.b1, self.b2, self.a1, self.a2]
            .iter()
            .all(|c| c.is_finite())
            && self.a2.abs() < 1.0
            && self.a1.abs() < 1.0 + self.a2
    }

    /// Complex frequency response `H(e^{jω})` at `freq_hz`, `ω = 2π·freq_hz/sample_rate`.
    pub fn response(&self, freq_hz: f64, sample_rate: f64) -> Complex {
        let w = std::f64::consts::TAU * freq_hz / sample_rate;
        let z1 = Complex::from_angle(-w);
        let z2 = Complex::from_angle(-2.0 * w);
        let re = |x: f64| Complex::new(x, 0.0);
        let num = re(self.b0) + z1 * re(self.b1) + z2 * re(self.b2);
        let den = re(1.0) + z1 * re(self.a1) + z2 * re(self.a2);
        num / den
    }

    /// `20·log10|H(e^{jω})|` at `freq_hz`.
    pub fn magnitude_db(&self, freq_hz: f64, sample_rate: f64) -> f64 {
        20.0 * self.response(freq_hz, sample_rate).abs().log10()
    }
}

/// Filter state of one channel, transposed direct form II:
///
/// ```text
/// y  = b0·x + s1
/// s1 = b1·x − a1·y + s2
/// s2 = b2·x − a2·y
/// ```
///
/// States are flushed to zero below 10⁻³⁰ every sample. The coefficients are passed in, so one
/// coefficient set can drive several channels (or a ramp can change it every sample).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Biquad {
    /// First state variable.
    s1: f64,
    /// Second state variable.
    s2: f64,
}

impl Biquad {
    /// A cleared state.
    pub const fn new() -> Self {
        Self { s1: 0.0, s2: 0.0 }
    }

    /// Clears the state.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// True if both state variables are finite.
    pub fn is_finite(&self) -> bool {
        self.s1.is_finite() && self.s2.is_finite()
    }

    /// True if the state is exactly zero.
    pub fn is_zero(&self) -> bool {
        self.s1 == 0.0 && self.s2 == 0.0
    }

    /// Largest state magnitude (how far the filter is from rest).
    pub fn max_abs_state(&self) -> f64 {
        self.s1.abs().max(self.s2.abs())
    }

    /// Processes one sample.
    #[inline]
    pub fn process(&mut self, c: &Coefficients, x: f64) -> f64 {
        let y = c.b0 * x + self.s1;
        let s1 = c.b1 * x - c.a1 * y + self.s2;
        let s2 = c.b2 * x - c.a2 * y;
        self.s1 = if s1.abs() < STATE_FLUSH { 0.0 } else { s1 };
        self.s2 = if s2.abs() < STATE_FLUSH { 0.0 } else { s2 };
        y
    }

    /// Resets the state if it is not finite; returns true if it did.
    pub fn heal(&mut self) -> bool {
        if self.is_finite() {
            false
        } else {
            self.reset();
            true
        }
    }
}

/// Coefficients that move linearly, sample by sample, to a target over a given number of
/// samples and then stay exactly on it.
#[derive(Debug, Clone, Copy)]
pub struct CoefficientRamp {
    /// Coefficients of the current sample.
    current: Coefficients,
    /// Coefficients the ramp ends on.
    target: Coefficients,
    /// Per-sample increment of each coefficient while ramping.
    step: Coefficients,
    /// Samples left in the ramp; 0 when settled.
    remaining: u32,
}

impl CoefficientRamp {
    /// A settled ramp at `c`.
    pub const fn new(c: Coefficients) -> Self {
        Self {
            current: c,
            target: c,
            step: Coefficients::IDENTITY,
            remaining: 0,
        }
    }

    /// Jumps to `c` (on reset, or when the filter state is zero anyway).
    pub fn jump(&mut self, c: Coefficients) {
        *self = Self::new(c);
    }

    /// Starts a ramp from the current coefficients to `target` over `samples` samples (at least
    /// 1).
    pub fn ramp_to(&mut self, target: Coefficients, samples: u32) {
        let n = samples.max(1);
        let inv = 1.0 / n as f64;
        let c = &self.current;
        self.step = Coefficients {
            b0: (target.b0 - c.b0) * inv,
            b1: (target.b1 - c.b1) * inv,
            b2: (target.b2 - c.b2) * inv,
            a1: (target.a1 - c.a1) * inv,
            a2: (target.a2 - c.a2) * inv,
        };
        self.target = target;
        self.remaining = n;
    }

    /// Advances one sample and returns the coefficients to use for it.
    #[inline]
    pub fn tick(&mut self) -> Coefficients {
        if self.remaining > 0 {
            self.remaining -= 1;
            if self.remaining == 0 {
                self.current = self.target;
            } else {
                let (c, s) = (&mut self.current, &self.step);
                c.b0 += s.b0;
                c.b1 += s.b1;
                c.b2 += s.b2;
                c.a1 += s.a1;
                c.a2 += s.a2;
            }
        }
        self.current
    }

    /// Coefficients of the last sample.
    pub fn current(&self) -> &Coefficients {
        &self.current
    }

    /// Coefficients the ramp ends on.
    pub fn target(&self) -> &Coefficients {
        &self.target
    }

    /// True while ramping.
    pub fn is_ramping(&self) -> bool {
        self.remaining > 0
    }
}

/// Two `f64` lanes processed together: left and right, or two signals of one processor (the
/// mono-bass side high-pass and mid all-pass). Every operation on them is written lane-wise on
/// the array, which the compiler turns into one packed SSE2 (x86-64) or NEON (aarch64)
/// instruction, so a stereo section costs what a mono one does.
pub type Lanes = [f64; 2];

/// `a + b` per lane.
#[inline(always)]
pub fn add2(a: Lanes, b: Lanes) -> Lanes {
    [a[0] + b[0], a[1] + b[1]]
}

/// `a − b` per lane.
#[inline(always)]
pub fn sub2(a: Lanes, b: Lanes) -> Lanes {
    [a[0] - b[0], a[1] - b[1]]
}

/// `a·b` per lane.
#[inline(always)]
pub fn mul2(a: Lanes, b: Lanes) -> Lanes {
    [a[0] * b[0], a[1] * b[1]]
}

/// Biquad coefficients for two lanes: the same section on both (a stereo filter, see
/// [`LaneCoefficients::splat`]) or two different sections side by side
/// ([`LaneCoefficients::pair`]), in the form [`LaneState::process`] uses: `b0`, `a1`, `a2` and
/// `c1 = b1 − a1·b0`, `c2 = b2 − a2·b0`.
///
/// A 0 dB bell or shelf (numerator == denominator, `b0 = 1`) has `c1 = c2 = 0` exactly, so it
/// stays an exact identity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LaneCoefficients {
    /// `b0` of each lane.
    pub b0: Lanes,
    /// `c1 = b1 − a1·b0` of each lane.
    pub c1: Lanes,
    /// `c2 = b2 − a2·b0` of each lane.
    pub c2: Lanes,
    /// `a1` of each lane.
    pub a1: Lanes,
    /// `a2` of each lane.
    pub a2: Lanes,
}

impl LaneCoefficients {
    /// `H(z) = 1` on both lanes.
    pub const IDENTITY: Self = Self::splat(&Coefficients::IDENTITY);

    /// Zero increments (a settled ramp).
    pub(crate) const ZERO: Self = Self {
        b0: [0.0; 2],
        c1: [0.0; 2],
        c2: [0.0; 2],
        a1: [0.0; 2],
        a2: [0.0; 2],
    };

    /// Per-sample increments that take these coefficients to `target` in `samples` (≥ 1)
    /// linear steps.
    #[inline(always)]
    pub(crate) fn ramp_step(&self, target: &Self, samples: u32) -> Self {
        let inv = 1.0 / samples as f64;
        let d = |t: Lanes, c: Lanes| [(t[0] - c[0]) * inv, (t[1] - c[1]) * inv];
        Self {
            b0: d(target.b0, self.b0),
            c1: d(target.c1, self.c1),
            c2: d(target.c2, self.c2),
            a1: d(target.a1, self.a1),
            a2: d(target.a2, self.a2),
        }
    }

    /// The same coefficients on both lanes.
    pub const fn splat(c: &Coefficients) -> Self {
        Self::pair(c, c)
    }

    /// `lane0` on lane 0, `lane1` on lane 1.
    pub const fn pair(lane0: &Coefficients, lane1: &Coefficients) -> Self {
        Self {
            b0: [lane0.b0, lane1.b0],
            c1: [
                lane0.b1 - lane0.a1 * lane0.b0,
                lane1.b1 - lane1.a1 * lane1.b0,
            ],
            c2: [
                lane0.b2 - lane0.a2 * lane0.b0,
                lane1.b2 - lane1.a2 * lane1.b0,
            ],
            a1: [lane0.a1, lane1.a1],
            a2: [lane0.a2, lane1.a2],
        }
    }

    /// The coefficients of lane `k` (0 or 1), `b1 = c1 + a1·b0`, `b2 = c2 + a2·b0` (within
    /// rounding).
    pub fn lane(&self, k: usize) -> Coefficients {
        let k = k.min(1);
        Coefficients {
            b0: self.b0[k],
            b1: self.c1[k] + self.a1[k] * self.b0[k],
            b2: self.c2[k] + self.a2[k] * self.b0[k],
            a1: self.a1[k],
            a2: self.a2[k],
        }
    }

    /// `self += step`, coefficient by coefficient.
    #[inline(always)]
    fn advance(&mut self, step: &Self) {
        self.b0 = add2(self.b0, step.b0);
        self.c1 = add2(self.c1, step.c1);
        self.c2 = add2(self.c2, step.c2);
        self.a1 = add2(self.a1, step.a1);
        self.a2 = add2(self.a2, step.a2);
    }
}

/// The transposed-direct-form-II state of two lanes (the state of [`Biquad`], lane-wise),
/// updated from the state itself rather than through the output:
///
/// ```text
/// TDF-II:     y = b0·x + s1,   s1' = b1·x − a1·y + s2,   s2' = b2·x − a2·y
/// substitute y:               s1' = c1·x − a1·s1 + s2,   s2' = c2·x − a2·s1
///             c1 = b1 − a1·b0,  c2 = b2 − a2·b0
/// ```
///
/// The same state variables and operation count, but the recursion no longer waits for the
/// output: one multiply and one add per sample (6 cycles on current x86 cores instead of 9),
/// which is what bounds a lone section or two, and the output is computed beside it.
///
/// Unlike [`Biquad::process`], [`LaneState::process`] does not flush tiny states every sample;
/// its owner calls [`LaneState::flush`] at fixed sample positions (every few dozen samples,
/// counted in samples so that the block size never matters). Between two flushes a state that
/// was above 10⁻³⁰ cannot decay into the subnormal range (below 2.2·10⁻³⁰⁸) unless its poles
/// are within 10⁻¹⁷ of the origin, and then it reaches exact zero a few samples later: the
/// recursion never lingers on slow subnormal arithmetic.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LaneState {
    /// First state variable of each lane.
    s1: Lanes,
    /// Second state variable of each lane.
    s2: Lanes,
}

impl LaneState {
    /// A cleared state.
    pub const fn new() -> Self {
        Self {
            s1: [0.0; 2],
            s2: [0.0; 2],
        }
    }

    /// Processes one sample of both lanes:
    /// `y = b0·x + s1,  s1 = c1·x + s2 − a1·s1,  s2 = c2·x − a2·s1`.
    #[inline(always)]
    pub fn process(&mut self, c: &LaneCoefficients, x: Lanes) -> Lanes {
        let y = add2(mul2(c.b0, x), self.s1);
        let s1 = sub2(add2(mul2(c.c1, x), self.s2), mul2(c.a1, self.s1));
        self.s2 = sub2(mul2(c.c2, x), mul2(c.a2, self.s1));
        self.s1 = s1;
        y
    }

    /// Sets state magnitudes below 10⁻³⁰ (−600 dB) to exactly zero.
    #[inline]
    pub fn flush(&mut self) {
        // Selects on the four values (no loop over a chained iterator, no branches): this runs
        // for every section at every cell end.
        let f = |v: f64| if v.abs() < STATE_FLUSH { 0.0 } else { v };
        self.s1 = [f(self.s1[0]), f(self.s1[1])];
        self.s2 = [f(self.s2[0]), f(self.s2[1])];
    }

    /// True if every state variable is finite.
    #[inline]
    pub fn is_finite(&self) -> bool {
        // Non-short-circuit `&`: four comparisons, one branch.
        self.s1[0].is_finite()
            & self.s1[1].is_finite()
            & self.s2[0].is_finite()
            & self.s2[1].is_finite()
    }

    /// Largest state magnitude (how far the filter is from rest; NaN counts as infinite).
    pub fn max_abs(&self) -> f64 {
        self.s1.iter().chain(&self.s2).fold(0.0, |m, v| {
            if v.abs() > m || v.is_nan() {
                v.abs()
            } else {
                m
            }
        })
    }
}

/// One second-order section of a cascade: a two-lane state plus coefficients that move
/// linearly, sample by sample, to a target (see [`CoefficientRamp`]; every interpolated design
/// is stable because the stability triangle is convex).
///
/// A ramp of `n` samples uses `c + step`, `c + 2·step`, …, `c + n·step` (≈ the target, within
/// rounding) on its samples and then lands exactly on the target.
#[derive(Debug, Clone, Copy)]
pub struct Section {
    /// Coefficients of the last processed sample.
    coeffs: LaneCoefficients,
    /// Per-sample increment while ramping (zero when settled).
    step: LaneCoefficients,
    /// Coefficients the ramp ends on.
    target: LaneCoefficients,
    /// Samples left in the ramp; 0 when settled.
    remaining: u32,
    /// Filter state.
    state: LaneState,
}

impl Section {
    /// A settled section with coefficients `c` and a cleared state.
    pub const fn new(c: LaneCoefficients) -> Self {
        Self {
            coeffs: c,
            step: LaneCoefficients::ZERO,
            target: c,
            remaining: 0,
            state: LaneState::new(),
        }
    }

    /// Jumps to `c` without a ramp (the state is kept).
    pub fn jump(&mut self, c: LaneCoefficients) {
        self.coeffs = c;
        self.target = c;
        self.step = LaneCoefficients::ZERO;
        self.remaining = 0;
    }

    /// Starts a ramp from the current coefficients to `target` over `samples` samples (at
    /// least 1).
    pub fn ramp_to(&mut self, target: LaneCoefficients, samples: u32) {
        let n = samples.max(1);
        self.step = self.coeffs.ramp_step(&target, n);
        self.target = target;
        self.remaining = n;
    }

    /// Coefficients of the last processed sample (the target once settled).
    pub fn coefficients(&self) -> &LaneCoefficients {
        &self.coeffs
    }

    /// Coefficients the ramp ends on.
    pub fn target(&self) -> &LaneCoefficients {
        &self.target
    }

    /// True while ramping.
    pub fn is_ramping(&self) -> bool {
        self.remaining > 0
    }

    /// Samples left in the current ramp (0 when settled).
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// The filter state.
    pub fn state(&self) -> &LaneState {
        &self.state
    }

    /// The filter state, mutable.
    pub fn state_mut(&mut self) -> &mut LaneState {
        &mut self.state
    }

    /// Clears the filter state.
    pub fn clear(&mut self) {
        self.state = LaneState::new();
    }

    /// Accounts for `n` processed samples: the ramp advances and lands on its target when it
    /// ends.
    #[inline]
    fn finish(&mut self, n: u32) {
        if self.remaining > 0 {
            self.remaining = self.remaining.saturating_sub(n);
            if self.remaining == 0 {
                self.jump(self.target);
            }
        }
    }

    /// A local copy of the coefficients, ramp increment and state for a processor's own
    /// per-sample loop; hand it back with [`Section::end_run`].
    #[inline]
    pub fn begin_run(&self) -> SectionRun {
        SectionRun {
            coeffs: self.coeffs,
            step: self.step,
            state: self.state,
        }
    }

    /// Takes back a [`SectionRun`] after `n` samples (at most [`Section::remaining`] while
    /// ramping).
    #[inline]
    pub fn end_run(&mut self, run: &SectionRun, n: usize) {
        self.coeffs = run.coeffs;
        self.state = run.state;
        self.finish(n.min(u32::MAX as usize) as u32);
    }

    /// Processes `buf` with this section alone (see [`SectionChain::process`]).
    pub fn process(&mut self, buf: &mut [Lanes]) {
        let mut chain = SectionChain::new();
        chain.push(self);
        chain.process(buf);
    }
}

/// A [`Section`] taken into local variables for a per-sample loop ([`Section::begin_run`]).
#[derive(Debug, Clone, Copy)]
pub struct SectionRun {
    /// Coefficients of the last processed sample.
    coeffs: LaneCoefficients,
    /// Per-sample increment.
    step: LaneCoefficients,
    /// Filter state.
    state: LaneState,
}

impl SectionRun {
    /// Processes one sample; `RAMP` first advances the coefficients by one increment (use it
    /// exactly when the section was ramping at [`Section::begin_run`]).
    #[inline(always)]
    pub fn process<const RAMP: bool>(&mut self, x: Lanes) -> Lanes {
        if RAMP {
            self.coeffs.advance(&self.step);
        }
        self.state.process(&self.coeffs, x)
    }
}

/// Most sections one [`SectionChain`] holds.
pub const MAX_CHAIN: usize = 10;

/// Sections borrowed from wherever they live (the bands of an EQ, the stages of a cascade),
/// run as one cascade: each sample goes through every section before the next sample starts,
/// with all coefficients and states held in local variables. The sections' recursions are
/// independent across a sample, so the processor overlaps them (one section's recursion is
/// about 10 cycles of latency; a cascade processed section by section over a block would pay
/// that once per section and sample).
pub struct SectionChain<'a> {
    /// The sections in signal order; `None` past `len`.
    sections: [Option<&'a mut Section>; MAX_CHAIN],
    /// Number of sections.
    len: usize,
    /// Run the AVX2 + FMA kernel ([`skewed`]); false: the portable loop. Set from
    /// [`crate::util::avx2_fma_available`] (the answer is cached by the standard library).
    simd: bool,
}

impl Default for SectionChain<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> SectionChain<'a> {
    /// An empty chain (an identity).
    pub fn new() -> Self {
        Self {
            sections: [const { None }; MAX_CHAIN],
            len: 0,
            simd: crate::util::avx2_fma_available(),
        }
    }

    /// Chooses the portable loop (`false`) even where the AVX2 + FMA kernel could run (for
    /// comparing the two); `true` is ignored where that kernel is not available.
    pub fn set_simd(&mut self, on: bool) {
        self.simd = on && crate::util::avx2_fma_available();
    }

    /// Appends a section (ignored beyond [`MAX_CHAIN`] sections).
    pub fn push(&mut self, s: &'a mut Section) {
        if self.len < MAX_CHAIN {
            self.sections[self.len] = Some(s);
            self.len += 1;
        }
    }

    /// Number of sections.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the chain holds no section.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Longest run, at most `max` samples, that ends no later than the first end of a ramp.
    pub fn run_length(&self, max: usize) -> usize {
        self.sections[..self.len]
            .iter()
            .flatten()
            .filter(|s| s.remaining > 0)
            .fold(max, |m, s| m.min(s.remaining as usize))
    }

    /// Filters `buf` through every section in order. `buf` must not be longer than
    /// [`SectionChain::run_length`] (a longer run holds the last ramp increment until its
    /// end, which is still stable, just not the documented ramp).
    pub fn process(&mut self, buf: &mut [Lanes]) {
        if buf.is_empty() {
            return;
        }
        let ramp = self.sections[..self.len]
            .iter()
            .flatten()
            .any(|s| s.remaining > 0);
        #[cfg(target_arch = "x86_64")]
        let done = if self.simd {
            // SAFETY: `simd` is only true where AVX2 and FMA are available.
            unsafe {
                skewed::process(
                    &mut self.sections,
                    self.len,
                    ramp,
                    &mut skewed::LaneIo::new(buf),
                    buf.len(),
                )
            };
            true
        } else {
            false
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = false;
        macro_rules! dispatch {
            ($($n:literal)*) => {
                match (self.len, ramp) {
                    $(
                        ($n, false) => run_chain::<$n, false>(&mut self.sections, buf),
                        ($n, true) => run_chain::<$n, true>(&mut self.sections, buf),
                    )*
                    _ => {}
                }
            };
        }
        if !done {
            dispatch!(1 2 3 4 5 6 7 8 9 10);
        }
        let n = buf.len().min(u32::MAX as usize) as u32;
        for s in self.sections[..self.len].iter_mut().flatten() {
            s.finish(n);
        }
    }
}

impl SectionChain<'_> {
    /// True if [`SectionChain::process_io`] runs its I/O inside the frame loop, four frames at
    /// a time: the AVX2 + FMA kernel runs and the chain is short enough
    /// (`skewed::BATCH_MAX_J`).
    pub(crate) fn fuses_io(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        return self.simd && self.len > 0 && self.len <= 2 * skewed::BATCH_MAX_J;
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// [`SectionChain::process`] on the `m` frames of `io` (see `skewed::Io`).
    ///
    /// # Safety
    /// AVX2 and FMA must be available (true when [`SectionChain::fuses_io`] is); `io` must
    /// hold `m` frames.
    #[cfg(target_arch = "x86_64")]
    pub(crate) unsafe fn process_io<IO: skewed::Io>(&mut self, io: &mut IO, m: usize) {
        let ramp = self.sections[..self.len]
            .iter()
            .flatten()
            .any(|s| s.remaining > 0);
        // SAFETY: as the caller promises.
        unsafe { skewed::process(&mut self.sections, self.len, ramp, io, m) };
        let n = m.min(u32::MAX as usize) as u32;
        for s in self.sections[..self.len].iter_mut().flatten() {
            s.finish(n);
        }
    }

    /// Filters a stereo `f32` block in place through every section in order: the same values
    /// as [`load_sanitized`], [`SectionChain::process`] and [`store_lanes`] give (input
    /// sanitised, `f64` throughout, rounded once at the end). A short chain
    /// (`SectionChain::fuses_io`) converts inside the kernel's frame loop, where the
    /// conversions hide behind the recursion's latency; a longer one is bound by its
    /// arithmetic, keeps every state in a register, and converts in two passes over a stack
    /// buffer instead. Same length rule as [`SectionChain::process`].
    pub fn process_f32(&mut self, left: &mut [f32], right: &mut [f32]) {
        let n = left.len().min(right.len());
        let (left, right) = (&mut left[..n], &mut right[..n]);
        #[cfg(target_arch = "x86_64")]
        if self.fuses_io() {
            let mut io = skewed::F32Io::<false>::new(left, right, 1.0, [1.0; 2]);
            // SAFETY: `fuses_io` implies AVX2 and FMA; `io` holds `n` frames.
            unsafe { self.process_io(&mut io, n) };
            return;
        }
        // A longer chain (or no AVX2): conversion passes around the buffered kernel.
        const PIECE: usize = 128;
        let mut storage = [const { MaybeUninit::<Lanes>::uninit() }; PIECE];
        for (l, r) in left.chunks_mut(PIECE).zip(right.chunks_mut(PIECE)) {
            let b = load_into(l, r, &mut storage[..l.len()]);
            self.process(b);
            store_lanes_fast(b, l, r);
        }
    }
}

/// The body of [`SectionChain::process`] for `N` sections; `RAMP` adds the per-sample
/// coefficient increments.
#[inline(always)]
fn run_chain<const N: usize, const RAMP: bool>(
    sections: &mut [Option<&mut Section>; MAX_CHAIN],
    buf: &mut [Lanes],
) {
    let mut c = [LaneCoefficients::IDENTITY; N];
    let mut step = [LaneCoefficients::ZERO; N];
    let mut ramping = [false; N];
    let mut st = [LaneState::new(); N];
    for (k, s) in sections.iter().take(N).enumerate() {
        if let Some(s) = s {
            c[k] = s.coeffs;
            if RAMP {
                step[k] = s.step;
                ramping[k] = s.remaining > 0;
            }
            st[k] = s.state;
        }
    }
    for x in buf.iter_mut() {
        let mut v = *x;
        for k in 0..N {
            // Only the sections that ramp advance (the branch is the same for the whole run).
            if RAMP && ramping[k] {
                c[k].advance(&step[k]);
            }
            v = st[k].process(&c[k], v);
        }
        *x = v;
    }
    for (k, s) in sections.iter_mut().take(N).enumerate() {
        if let Some(s) = s {
            s.state = st[k];
            if RAMP {
                s.coeffs = c[k];
            }
        }
    }
}

/// The AVX2 + FMA kernel of [`SectionChain::process`]: the cascade **skewed** by one sample per
/// section, so that every section of a sample step works at once.
///
/// Why: a cascade of `N` sections processed sample by sample is `N` recursions that the core
/// overlaps, but on 128-bit lanes (left, right) each section costs five multiplies and four adds
/// of its own; the work, not the latency, bounds it (≈ 30 cycles per frame for the stem EQ's
/// seven sections). 256-bit registers hold four `f64`, so two sections of both channels fit in
/// one, **if** both can run in the same step. In a skewed schedule they can: at step `t` section
/// `k` processes sample `t − k`, and its input, section `k − 1`'s output for sample `t − k`, was
/// computed one step earlier. So no section waits for another within a step, and one step is
/// `⌈N/2⌉` register updates of four FMAs and one multiply each (plus one in-lane shuffle that
/// moves the outputs one section along): two to three times less work per frame, and the
/// recursion latency of one section (one FMA on `s1`, ≈ 4 cycles) still hides behind it.
///
/// Register `j` holds sections `2j` and `2j + 1` as `[left₂ⱼ, left₂ⱼ₊₁, right₂ⱼ, right₂ⱼ₊₁]`
/// (lane 0 = "left", lane 1 = "right" of [`Lanes`]); the input of register `j` is then
/// `[left₂ⱼ₋₁, left₂ⱼ, right₂ⱼ₋₁, right₂ⱼ]` of the previous step's outputs, one `vshufpd`.
/// Each section computes, per sample, exactly what [`LaneState::process`] does with its
/// products fused:
///
/// ```text
/// y = fma(b0, x, s1),   s1' = fnma(a1, s1, fma(c1, x, s2)),   s2' = fnma(a2, s1, c2·x)
/// ```
///
/// (`fnma(a, b, c) = c − a·b`, each rounded once.)
///
/// A run of `m` samples through `N` sections takes `m + N − 1` steps: during the first `N − 1`
/// steps the later sections have no sample yet, during the last `N − 1` the earlier ones are
/// done. In those steps a register whose sections have no sample is skipped, and one with a
/// single busy section keeps the other's state and coefficients (a blend), so every section
/// performs, for every sample, the same operations on the same values as in one uninterrupted
/// run: cutting a signal into runs anywhere gives bit-identical output. A chain of odd length
/// is padded with an identity section whose output is never used.
#[cfg(target_arch = "x86_64")]
pub(crate) mod skewed {
    use super::{LaneCoefficients, Lanes, MAX_CHAIN, Section};
    use std::arch::x86_64::*;

    /// Coefficients of one register, each as `[lane0 of 2j, lane0 of 2j+1, lane1 of 2j,
    /// lane1 of 2j+1]`.
    #[derive(Clone, Copy)]
    struct Quad {
        /// `b0`.
        b0: __m256d,
        /// `c1 = b1 − a1·b0`.
        c1: __m256d,
        /// `c2 = b2 − a2·b0`.
        c2: __m256d,
        /// `a1`.
        a1: __m256d,
        /// `a2`.
        a2: __m256d,
    }

    /// The chain in registers: coefficients, ramp increments and states of `J` registers, and
    /// the outputs of the last step.
    struct Regs<const J: usize> {
        /// Coefficients of the current sample, per register.
        c: [Quad; J],
        /// Per-sample increments (zero for a settled section), per register.
        step: [Quad; J],
        /// First state variables.
        s1: [__m256d; J],
        /// Second state variables.
        s2: [__m256d; J],
        /// Outputs of the last step.
        y: [__m256d; J],
    }

    /// Which sections of a register have a sample in a step.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Busy {
        /// Both.
        Both,
        /// Only section `2j` (lanes 0 and 2).
        Even,
        /// Only section `2j + 1` (lanes 1 and 3).
        Odd,
        /// Neither: the register is left alone.
        Idle,
    }

    /// Where a skewed run reads its input frames and writes its output frames: a buffer of
    /// [`Lanes`] ([`LaneIo`]), or `f32` channels sanitised and converted on the way in and
    /// rounded on the way out ([`F32Io`], and the stereo processor's mid/side version), so that
    /// no separate conversion pass runs over the frames. Frames are indexed from 0 to the run
    /// length `m`; loads and stores of the same frame index refer to the same frame (a store to
    /// frame `t` happens after the load of frame `t`, so in-place I/O is fine).
    pub(crate) trait Io {
        /// Run the busy steps four at a time through [`Io::load4`] and [`Io::store4`]. Only
        /// worth it (and only used) for chains of at most [`BATCH_MAX_J`] registers: a longer
        /// chain's states fill the sixteen `ymm` registers, and four frames in flight would
        /// push states onto the stack, into the recursion's critical path.
        const BATCH: bool;
        /// Frame `t` (`t < m`) as `[lane0, lane1, lane0, lane1]`.
        ///
        /// # Safety
        /// AVX2 and FMA must be available (inlined into such a function).
        unsafe fn load(&mut self, t: usize) -> __m256d;
        /// Frames `t..t + 4` (all `< m`), each as [`Io::load`] gives it.
        ///
        /// # Safety
        /// As [`Io::load`].
        unsafe fn load4(&mut self, t: usize) -> [__m256d; 4];
        /// Stores frame `t` from `v = [lane0, lane1]`.
        ///
        /// # Safety
        /// As [`Io::load`].
        unsafe fn store(&mut self, t: usize, v: __m128d);
        /// Stores frames `t..t + 4` from `lane0 = [f0, f1, f2, f3]` and `lane1` likewise.
        ///
        /// # Safety
        /// As [`Io::load`].
        unsafe fn store4(&mut self, t: usize, lane0: __m256d, lane1: __m256d);
    }

    /// [`Io`] on a buffer of [`Lanes`], in place.
    pub(super) struct LaneIo {
        /// First `f64` of the buffer (frame `t` is `p[2t..2t + 2]`).
        p: *mut f64,
    }

    impl LaneIo {
        /// I/O on `buf` (its length is the run length).
        pub(super) fn new(buf: &mut [Lanes]) -> Self {
            Self {
                p: buf.as_mut_ptr() as *mut f64,
            }
        }
    }

    impl Io for LaneIo {
        const BATCH: bool = false;

        #[inline(always)]
        unsafe fn load(&mut self, t: usize) -> __m256d {
            // SAFETY: frame `t < m` is in the buffer.
            unsafe {
                let v = _mm_loadu_pd(self.p.add(2 * t));
                _mm256_set_m128d(v, v)
            }
        }

        #[inline(always)]
        unsafe fn load4(&mut self, t: usize) -> [__m256d; 4] {
            // SAFETY: as in `load`.
            unsafe {
                [
                    self.load(t),
                    self.load(t + 1),
                    self.load(t + 2),
                    self.load(t + 3),
                ]
            }
        }

        #[inline(always)]
        unsafe fn store(&mut self, t: usize, v: __m128d) {
            // SAFETY: as in `load`.
            unsafe { _mm_storeu_pd(self.p.add(2 * t), v) }
        }

        #[inline(always)]
        unsafe fn store4(&mut self, t: usize, lane0: __m256d, lane1: __m256d) {
            // SAFETY: as in `load`.
            unsafe {
                let (u, v) = (
                    _mm256_unpacklo_pd(lane0, lane1),
                    _mm256_unpackhi_pd(lane0, lane1),
                );
                _mm256_storeu_pd(self.p.add(2 * t), _mm256_permute2f128_pd::<0x20>(u, v));
                _mm256_storeu_pd(self.p.add(2 * t + 4), _mm256_permute2f128_pd::<0x31>(u, v));
            }
        }
    }

    /// [`Io`] on stereo `f32` channels, in place: frames are sanitised
    /// ([`super::sanitize_branchless`]) and widened to `f64` on loading, rounded to `f32` on
    /// storing, exactly as [`super::load_sanitized`] and [`super::store_lanes`] do it. With
    /// `MID_SIDE` the loaded frame is `[(l − r)/2, (l + r)/2]` (side, mid) and the stored one
    /// `[(mid + width·side)·gains[0], (mid − width·side)·gains[1]]` (the stereo processor's
    /// steady path; same operations as its portable passes).
    pub(crate) struct F32Io<const MID_SIDE: bool> {
        /// Left channel (lane 0).
        left: *mut f32,
        /// Right channel (lane 1).
        right: *mut f32,
        /// Side gain applied on storing (`MID_SIDE` only).
        width: f64,
        /// Left and right output gains (`MID_SIDE` only).
        gains: [f64; 2],
    }

    impl<const MID_SIDE: bool> F32Io<MID_SIDE> {
        /// I/O on `left`, `right`; the run length must not exceed either length.
        pub(crate) fn new(
            left: &mut [f32],
            right: &mut [f32],
            width: f64,
            gains: [f64; 2],
        ) -> Self {
            Self {
                left: left.as_mut_ptr(),
                right: right.as_mut_ptr(),
                width,
                gains,
            }
        }

        /// `[l, r]` → the loaded pair (`[l, r]` or `[side, mid]`), four frames per register.
        #[inline(always)]
        unsafe fn input(l: __m256d, r: __m256d) -> (__m256d, __m256d) {
            // SAFETY: AVX2 is enabled in the caller.
            unsafe {
                if MID_SIDE {
                    let half = _mm256_set1_pd(0.5);
                    (
                        _mm256_mul_pd(half, _mm256_sub_pd(l, r)),
                        _mm256_mul_pd(half, _mm256_add_pd(l, r)),
                    )
                } else {
                    (l, r)
                }
            }
        }

        /// The stored pair → `[l, r]` as `f64`, four frames per register.
        #[inline(always)]
        unsafe fn output(&self, a: __m256d, b: __m256d) -> (__m256d, __m256d) {
            // SAFETY: AVX2 is enabled in the caller.
            unsafe {
                if MID_SIDE {
                    let side = _mm256_mul_pd(a, _mm256_set1_pd(self.width));
                    (
                        _mm256_mul_pd(_mm256_add_pd(b, side), _mm256_set1_pd(self.gains[0])),
                        _mm256_mul_pd(_mm256_sub_pd(b, side), _mm256_set1_pd(self.gains[1])),
                    )
                } else {
                    (a, b)
                }
            }
        }
    }

    impl<const MID_SIDE: bool> Io for F32Io<MID_SIDE> {
        const BATCH: bool = true;

        #[inline(always)]
        unsafe fn load(&mut self, t: usize) -> __m256d {
            // SAFETY: frame `t < m` is in both channels.
            unsafe {
                let l = super::sanitize_branchless(*self.left.add(t)) as f64;
                let r = super::sanitize_branchless(*self.right.add(t)) as f64;
                let v = if MID_SIDE {
                    _mm_setr_pd(0.5 * (l - r), 0.5 * (l + r))
                } else {
                    _mm_setr_pd(l, r)
                };
                _mm256_set_m128d(v, v)
            }
        }

        #[inline(always)]
        unsafe fn load4(&mut self, t: usize) -> [__m256d; 4] {
            // SAFETY: frames t..t + 4 are in both channels.
            unsafe {
                let l = _mm256_cvtps_pd(super::convert::sanitize4(_mm_loadu_ps(self.left.add(t))));
                let r = _mm256_cvtps_pd(super::convert::sanitize4(_mm_loadu_ps(self.right.add(t))));
                let (a, b) = Self::input(l, r);
                // [a0 b0 a2 b2], [a1 b1 a3 b3]
                let (u, v) = (_mm256_unpacklo_pd(a, b), _mm256_unpackhi_pd(a, b));
                [
                    _mm256_permute2f128_pd::<0x00>(u, u),
                    _mm256_permute2f128_pd::<0x00>(v, v),
                    _mm256_permute2f128_pd::<0x11>(u, u),
                    _mm256_permute2f128_pd::<0x11>(v, v),
                ]
            }
        }

        #[inline(always)]
        unsafe fn store(&mut self, t: usize, v: __m128d) {
            // SAFETY: frame `t < m` is in both channels.
            unsafe {
                let (a, b) = (_mm_cvtsd_f64(v), _mm_cvtsd_f64(_mm_unpackhi_pd(v, v)));
                let (l, r) = if MID_SIDE {
                    let side = a * self.width;
                    ((b + side) * self.gains[0], (b - side) * self.gains[1])
                } else {
                    (a, b)
                };
                *self.left.add(t) = l as f32;
                *self.right.add(t) = r as f32;
            }
        }

        #[inline(always)]
        unsafe fn store4(&mut self, t: usize, lane0: __m256d, lane1: __m256d) {
            // SAFETY: frames t..t + 4 are in both channels.
            unsafe {
                let (l, r) = self.output(lane0, lane1);
                _mm_storeu_ps(self.left.add(t), _mm256_cvtpd_ps(l));
                _mm_storeu_ps(self.right.add(t), _mm256_cvtpd_ps(r));
            }
        }
    }

    /// Longest chain, in registers (two sections each), that runs [`Io::BATCH`] I/O four frames
    /// at a time.
    pub(crate) const BATCH_MAX_J: usize = 2;

    /// Runs `m` frames of `io` through the `len` sections (1..=[`MAX_CHAIN`]); `ramp`: some
    /// section is ramping.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; `io` must hold `m` frames.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn process<IO: Io>(
        sections: &mut [Option<&mut Section>; MAX_CHAIN],
        len: usize,
        ramp: bool,
        io: &mut IO,
        m: usize,
    ) {
        macro_rules! dispatch {
            ($($j:literal)*) => {
                match (len.div_ceil(2), len % 2 == 1, ramp) {
                    $(
                        ($j, false, false) => run::<$j, false, false, IO>(sections, io, m),
                        ($j, false, true) => run::<$j, false, true, IO>(sections, io, m),
                        ($j, true, false) => run::<$j, true, false, IO>(sections, io, m),
                        ($j, true, true) => run::<$j, true, true, IO>(sections, io, m),
                    )*
                    _ => {}
                }
            };
        }
        const _: () = assert!(MAX_CHAIN.div_ceil(2) == 5);
        dispatch!(1 2 3 4 5);
    }

    /// `[a[0], b[0], a[1], b[1]]`.
    #[inline(always)]
    unsafe fn pack(a: &Lanes, b: &Lanes) -> __m256d {
        // SAFETY: AVX2 is enabled in every caller; each pointer is to two f64.
        unsafe {
            let v = _mm256_set_m128d(_mm_loadu_pd(b.as_ptr()), _mm_loadu_pd(a.as_ptr()));
            _mm256_permute4x64_pd::<0b11_01_10_00>(v)
        }
    }

    /// The inverse of [`pack`].
    #[inline(always)]
    unsafe fn unpack(v: __m256d, a: &mut Lanes, b: &mut Lanes) {
        // SAFETY: as in `pack`.
        unsafe {
            let v = _mm256_permute4x64_pd::<0b11_01_10_00>(v);
            _mm_storeu_pd(a.as_mut_ptr(), _mm256_castpd256_pd128(v));
            _mm_storeu_pd(b.as_mut_ptr(), _mm256_extractf128_pd::<1>(v));
        }
    }

    /// The chain of `2J − ODD` sections over `buf` (see the module notes).
    #[target_feature(enable = "avx2,fma")]
    fn run<const J: usize, const ODD: bool, const RAMP: bool, IO: Io>(
        sections: &mut [Option<&mut Section>; MAX_CHAIN],
        io: &mut IO,
        m: usize,
    ) {
        let len = 2 * J - ODD as usize;
        let mut identity = Section::new(LaneCoefficients::IDENTITY);
        let zero = _mm256_setzero_pd();
        let zq = Quad {
            b0: zero,
            c1: zero,
            c2: zero,
            a1: zero,
            a2: zero,
        };
        let mut r = Regs::<J> {
            c: [zq; J],
            step: [zq; J],
            s1: [zero; J],
            s2: [zero; J],
            y: [zero; J],
        };
        // SAFETY (pack, unpack, step): AVX2 and FMA are enabled here.
        for j in 0..J {
            let a = sections[2 * j].as_deref().unwrap_or(&identity);
            let b = match sections.get(2 * j + 1) {
                Some(Some(s)) if 2 * j + 1 < len => s,
                _ => &identity,
            };
            let quad = |a: &LaneCoefficients, b: &LaneCoefficients| unsafe {
                Quad {
                    b0: pack(&a.b0, &b.b0),
                    c1: pack(&a.c1, &b.c1),
                    c2: pack(&a.c2, &b.c2),
                    a1: pack(&a.a1, &b.a1),
                    a2: pack(&a.a2, &b.a2),
                }
            };
            r.c[j] = quad(&a.coeffs, &b.coeffs);
            if RAMP {
                r.step[j] = quad(&a.step, &b.step);
            }
            r.s1[j] = unsafe { pack(&a.state.s1, &b.state.s1) };
            r.s2[j] = unsafe { pack(&a.state.s2, &b.state.s2) };
        }

        let delay = len - 1;
        // The output section is the last of register J − 1: lanes 0, 2 (odd length) or 1, 3.
        let pick = |y: __m256d| {
            if ODD {
                _mm256_permute4x64_pd::<0b00_00_10_00>(y)
            } else {
                _mm256_permute4x64_pd::<0b00_00_11_01>(y)
            }
        };
        let (load, store) = (
            // SAFETY (both): `t < m`, AVX2 and FMA are enabled here.
            |io: &mut IO, t: usize| unsafe { io.load(t) },
            |io: &mut IO, t: usize, y: __m256d| unsafe {
                io.store(t, _mm256_castpd256_pd128(pick(y)))
            },
        );
        // Which sections of register j have a sample at step t: section k processes sample
        // t − k, if 0 ≤ t − k < m.
        let busy = |j: usize, t: usize| {
            let has = |k: usize| k <= t && t < k + m;
            match (has(2 * j), has(2 * j + 1)) {
                (true, true) => Busy::Both,
                (true, false) => Busy::Even,
                (false, true) => Busy::Odd,
                (false, false) => Busy::Idle,
            }
        };
        let total = m + delay;
        // Filling: the later sections have no sample yet.
        for t in 0..delay {
            let x = if t < m { load(io, t) } else { zero };
            unsafe { step::<J, RAMP, true>(&mut r, x, |j| busy(j, t)) };
        }
        // Every section busy, four steps at a time (inputs `t..t + 4`, outputs
        // `t − delay..t − delay + 4`), then one at a time.
        let mut t = delay;
        while IO::BATCH && J <= BATCH_MAX_J && t + 4 <= m {
            // SAFETY: frames t..t + 4 are below m.
            let xs = unsafe { io.load4(t) };
            let mut ys = [zero; 4];
            for (y, x) in ys.iter_mut().zip(xs) {
                *y = unsafe { step::<J, RAMP, false>(&mut r, x, |_| Busy::Both) };
            }
            // The output section's `[lane0 f0, lane0 f1, lane1 f0, lane1 f1]` and the same of
            // frames 2, 3.
            let (f01, f23) = if ODD {
                (
                    _mm256_unpacklo_pd(ys[0], ys[1]),
                    _mm256_unpacklo_pd(ys[2], ys[3]),
                )
            } else {
                (
                    _mm256_unpackhi_pd(ys[0], ys[1]),
                    _mm256_unpackhi_pd(ys[2], ys[3]),
                )
            };
            // Per lane [f0 f1 f2 f3].
            unsafe {
                io.store4(
                    t - delay,
                    _mm256_permute2f128_pd::<0x20>(f01, f23),
                    _mm256_permute2f128_pd::<0x31>(f01, f23),
                )
            };
            t += 4;
        }
        for t in t..m {
            let y = unsafe { step::<J, RAMP, false>(&mut r, load(io, t), |_| Busy::Both) };
            store(io, t - delay, y);
        }
        // Draining: the earlier sections are done.
        for t in delay.max(m)..total {
            let x = if t < m { load(io, t) } else { zero };
            let y = unsafe { step::<J, RAMP, true>(&mut r, x, |j| busy(j, t)) };
            store(io, t - delay, y);
        }

        for j in 0..J {
            let (lo, hi) = sections.split_at_mut(2 * j + 1);
            let a = lo[2 * j].as_deref_mut().unwrap_or(&mut identity);
            let mut spare = Section::new(LaneCoefficients::IDENTITY);
            let b = match hi.first_mut() {
                Some(Some(s)) if 2 * j + 1 < len => &mut **s,
                _ => &mut spare,
            };
            unsafe {
                unpack(r.s1[j], &mut a.state.s1, &mut b.state.s1);
                unpack(r.s2[j], &mut a.state.s2, &mut b.state.s2);
                if RAMP {
                    let q = &r.c[j];
                    unpack(q.b0, &mut a.coeffs.b0, &mut b.coeffs.b0);
                    unpack(q.c1, &mut a.coeffs.c1, &mut b.coeffs.c1);
                    unpack(q.c2, &mut a.coeffs.c2, &mut b.coeffs.c2);
                    unpack(q.a1, &mut a.coeffs.a1, &mut b.coeffs.a1);
                    unpack(q.a2, &mut a.coeffs.a2, &mut b.coeffs.a2);
                }
            }
        }
    }

    /// One step of the skewed chain with input frame `x` (as `[l, r, l, r]`); returns the
    /// outputs of the last register. `PARTIAL`: `busy(j)` says which sections of register `j`
    /// have a sample; a register with none is skipped and one with a single busy section
    /// keeps the other's state and coefficients (a blend). Without `PARTIAL` every section is
    /// busy.
    ///
    /// With `RAMP` the coefficients of every section advance by their increment before the
    /// sample (zero for a section that does not ramp).
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA (inlined into such a function).
    #[inline(always)]
    unsafe fn step<const J: usize, const RAMP: bool, const PARTIAL: bool>(
        r: &mut Regs<J>,
        x: __m256d,
        busy: impl Fn(usize) -> Busy,
    ) -> __m256d {
        unsafe {
            // Inputs: the previous step's outputs moved one section along.
            let mut xs = [x; J];
            xs[0] = _mm256_shuffle_pd::<0b0100>(x, r.y[0]);
            for (xj, y) in xs[1..].iter_mut().zip(r.y.windows(2)) {
                *xj = _mm256_shuffle_pd::<0b0101>(y[0], y[1]);
            }
            for (j, &x) in xs.iter().enumerate() {
                let b = if PARTIAL { busy(j) } else { Busy::Both };
                if b == Busy::Idle {
                    continue;
                }
                // Lanes whose section is busy: every lane, or 0 and 2, or 1 and 3.
                let keep = |old: __m256d, new: __m256d| match b {
                    Busy::Even => _mm256_blend_pd::<0b0101>(old, new),
                    Busy::Odd => _mm256_blend_pd::<0b1010>(old, new),
                    _ => new,
                };
                if RAMP {
                    let (c, d) = (r.c[j], r.step[j]);
                    r.c[j] = Quad {
                        b0: keep(c.b0, _mm256_add_pd(c.b0, d.b0)),
                        c1: keep(c.c1, _mm256_add_pd(c.c1, d.c1)),
                        c2: keep(c.c2, _mm256_add_pd(c.c2, d.c2)),
                        a1: keep(c.a1, _mm256_add_pd(c.a1, d.a1)),
                        a2: keep(c.a2, _mm256_add_pd(c.a2, d.a2)),
                    };
                }
                let c = &r.c[j];
                let (s1, s2) = (r.s1[j], r.s2[j]);
                r.y[j] = _mm256_fmadd_pd(c.b0, x, s1);
                let n1 = _mm256_fnmadd_pd(c.a1, s1, _mm256_fmadd_pd(c.c1, x, s2));
                let n2 = _mm256_fnmadd_pd(c.a2, s1, _mm256_mul_pd(c.c2, x));
                r.s1[j] = keep(s1, n1);
                r.s2[j] = keep(s2, n2);
            }
            r.y[J - 1]
        }
    }
}

/// [`crate::util::sanitize`] written without branches (NaN fails every comparison), so that a
/// loop of it vectorises: NaN/±Inf → 0, magnitudes below [`DENORMAL_FLUSH`] → 0, clamped to
/// ±[`MAX_INPUT`].
#[inline(always)]
pub fn sanitize_branchless(x: f32) -> f32 {
    let a = x.abs();
    let c = if x < MAX_INPUT { x } else { MAX_INPUT };
    let c = if c > -MAX_INPUT { c } else { -MAX_INPUT };
    // Non-short-circuit `&` keeps both comparisons (a select, not a branch).
    #[allow(clippy::manual_range_contains)]
    let keep = (a >= DENORMAL_FLUSH) & (a < f32::INFINITY);
    if keep { c } else { 0.0 }
}

/// Sanitises a stereo `f32` block in place ([`sanitize_branchless`]) and loads it into lanes.
/// (Two passes: the sanitising loops over one channel at a time vectorise fully.)
#[inline]
pub fn load_lanes(left: &mut [f32], right: &mut [f32], buf: &mut [Lanes]) {
    let n = buf.len().min(left.len()).min(right.len());
    let (left, right, buf) = (&mut left[..n], &mut right[..n], &mut buf[..n]);
    for v in left.iter_mut() {
        *v = sanitize_branchless(*v);
    }
    for v in right.iter_mut() {
        *v = sanitize_branchless(*v);
    }
    for i in 0..n {
        buf[i] = [left[i] as f64, right[i] as f64];
    }
}

/// Stores lanes into a stereo `f32` block.
#[inline]
pub fn store_lanes(buf: &[Lanes], left: &mut [f32], right: &mut [f32]) {
    for ((b, l), r) in buf.iter().zip(left.iter_mut()).zip(right.iter_mut()) {
        *l = b[0] as f32;
        *r = b[1] as f32;
    }
}

/// Sanitises a stereo `f32` block ([`sanitize_branchless`]) into lanes, leaving the block as
/// it is ([`load_lanes`] without writing the sanitised samples back).
#[inline]
pub fn load_sanitized(left: &[f32], right: &[f32], buf: &mut [Lanes]) {
    let n = buf.len().min(left.len()).min(right.len());
    // SAFETY: `Lanes` and `MaybeUninit<Lanes>` have the same layout, and only initialised
    // values are written.
    let buf =
        unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr() as *mut MaybeUninit<Lanes>, n) };
    load_into(left, right, buf);
}

/// [`load_sanitized`] into uninitialised storage (no need to clear a buffer first); returns
/// the `min(left.len(), right.len(), buf.len())` frames written.
#[inline]
fn load_into<'a>(
    left: &[f32],
    right: &[f32],
    buf: &'a mut [MaybeUninit<Lanes>],
) -> &'a mut [Lanes] {
    let n = buf.len().min(left.len()).min(right.len());
    let (left, right, buf) = (&left[..n], &right[..n], &mut buf[..n]);
    let mut done = false;
    #[cfg(target_arch = "x86_64")]
    if crate::util::avx2_fma_available() {
        // SAFETY: AVX2 is available; `buf` has room for `n` frames.
        unsafe { convert::load(left, right, buf.as_mut_ptr() as *mut f64) };
        done = true;
    }
    if !done {
        for ((b, &l), &r) in buf.iter_mut().zip(left).zip(right) {
            b.write([sanitize_branchless(l) as f64, sanitize_branchless(r) as f64]);
        }
    }
    // SAFETY: all `n` frames are initialised now.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr() as *mut Lanes, n) }
}

/// Stores lanes into a stereo `f32` block ([`store_lanes`], four frames at a time where AVX2
/// runs).
#[inline]
pub fn store_lanes_fast(buf: &[Lanes], left: &mut [f32], right: &mut [f32]) {
    let n = buf.len().min(left.len()).min(right.len());
    #[cfg(target_arch = "x86_64")]
    if crate::util::avx2_fma_available() {
        // SAFETY: AVX2 is available.
        unsafe { convert::store(&buf[..n], &mut left[..n], &mut right[..n]) };
        return;
    }
    store_lanes(&buf[..n], &mut left[..n], &mut right[..n]);
}

/// AVX2 versions of [`load_sanitized`] and [`store_lanes`], four frames at a time. Why: the
/// compiler vectorises neither the sanitise-and-interleave nor the de-interleave of `f64`
/// pairs well (scalar conversions, about a dozen instructions per frame; this is about three).
/// The results are the same values: the sanitiser's comparisons, min/max and the `f32 ↔ f64`
/// conversions are exact or rounded as the scalar code rounds them.
#[cfg(target_arch = "x86_64")]
pub(crate) mod convert {
    use super::{Lanes, sanitize_branchless};
    use crate::util::{DENORMAL_FLUSH, MAX_INPUT};
    use std::arch::x86_64::*;

    /// [`sanitize_branchless`] on four samples.
    ///
    /// # Safety
    /// AVX2 must be available (inlined into such a function).
    #[inline(always)]
    pub(crate) unsafe fn sanitize4(x: __m128) -> __m128 {
        // SAFETY: AVX2 is enabled in the caller.
        unsafe {
            let a = _mm_andnot_ps(_mm_set1_ps(-0.0), x);
            // min/max return their second operand when one is NaN; NaN is masked below.
            let c = _mm_max_ps(
                _mm_min_ps(x, _mm_set1_ps(MAX_INPUT)),
                _mm_set1_ps(-MAX_INPUT),
            );
            let keep = _mm_and_ps(
                _mm_cmp_ps::<_CMP_GE_OQ>(a, _mm_set1_ps(DENORMAL_FLUSH)),
                _mm_cmp_ps::<_CMP_LT_OQ>(a, _mm_set1_ps(f32::INFINITY)),
            );
            _mm_and_ps(keep, c)
        }
    }

    /// Sanitised `left`, `right` (equal lengths `n`) into the `2n` f64 at `out`.
    ///
    /// # Safety
    /// AVX2 must be available and `out` valid for `2n` writes.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn load(left: &[f32], right: &[f32], out: *mut f64) {
        let n = left.len().min(right.len());
        let quads = n / 4;
        for q in 0..quads {
            let i = 4 * q;
            // SAFETY: frames i..i + 4 are in bounds of all three slices.
            unsafe {
                let l = _mm256_cvtps_pd(sanitize4(_mm_loadu_ps(left.as_ptr().add(i))));
                let r = _mm256_cvtps_pd(sanitize4(_mm_loadu_ps(right.as_ptr().add(i))));
                let (u, v) = (_mm256_unpacklo_pd(l, r), _mm256_unpackhi_pd(l, r));
                _mm256_storeu_pd(out.add(2 * i), _mm256_permute2f128_pd::<0x20>(u, v));
                _mm256_storeu_pd(out.add(2 * i + 4), _mm256_permute2f128_pd::<0x31>(u, v));
            }
        }
        for i in 4 * quads..n {
            // SAFETY: frame i is in bounds.
            unsafe {
                *out.add(2 * i) = sanitize_branchless(left[i]) as f64;
                *out.add(2 * i + 1) = sanitize_branchless(right[i]) as f64;
            }
        }
    }

    /// `buf` (as long as `left`, `right`) rounded into `left`, `right`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn store(buf: &[Lanes], left: &mut [f32], right: &mut [f32]) {
        let n = buf.len().min(left.len()).min(right.len());
        let quads = n / 4;
        let src = buf.as_ptr() as *const f64;
        for q in 0..quads {
            let i = 4 * q;
            // SAFETY: frames i..i + 4 are in bounds of all three slices.
            unsafe {
                let (p0, p1) = (
                    _mm256_loadu_pd(src.add(2 * i)),
                    _mm256_loadu_pd(src.add(2 * i + 4)),
                );
                let u = _mm256_permute2f128_pd::<0x20>(p0, p1);
                let v = _mm256_permute2f128_pd::<0x31>(p0, p1);
                _mm_storeu_ps(
                    left.as_mut_ptr().add(i),
                    _mm256_cvtpd_ps(_mm256_unpacklo_pd(u, v)),
                );
                _mm_storeu_ps(
                    right.as_mut_ptr().add(i),
                    _mm256_cvtpd_ps(_mm256_unpackhi_pd(u, v)),
                );
            }
        }
        for i in 4 * quads..n {
            left[i] = buf[i][0] as f32;
            right[i] = buf[i][1] as f32;
        }
    }
}

/// A stereo processor that works on [`Lanes`] in cells of a fixed sample grid, driven by
/// [`process_in_grid`].
pub(crate) trait GridProcessor {
    /// True if the processor changes the signal; checked at every cell start and after every
    /// part of a cell: a processor that is not active leaves the rest of the block untouched
    /// and restarts its grid.
    fn is_active(&self) -> bool;
    /// Position within the current cell, `0..GRID`.
    fn grid_pos(&mut self) -> &mut usize;
    /// Processes sanitised frames that lie within one cell, starting at `grid_pos`.
    fn process_frames(&mut self, buf: &mut [Lanes]);
    /// Called when a cell is complete (flushing, healing, idle checks).
    fn end_cell(&mut self);
}

/// Runs a stereo block through `p` in cells of `GRID` frames: each part of the block within
/// one cell is sanitised into an `f64` stack buffer, processed and stored back. Cells count
/// samples, so the output does not depend on how the signal is cut into blocks.
pub(crate) fn process_in_grid<const GRID: usize, P: GridProcessor>(
    p: &mut P,
    left: &mut [f32],
    right: &mut [f32],
) {
    // Not cleared: every frame is written before it is read (`load_into`).
    let mut storage = [const { MaybeUninit::<Lanes>::uninit() }; GRID];
    process_settled_in_grid::<GRID, P>(p, left, right, |p, l, r| {
        let b = load_into(l, r, &mut storage[..l.len()]);
        p.process_frames(b);
        store_lanes_fast(b, l, r);
    });
}

/// The cell bookkeeping of [`process_in_grid`], with each part of a cell handed to `run` as
/// `f32`: `process_in_grid` runs the part through an `f64` buffer; a processor whose sections
/// stay put over the whole block (no ramp, no crossfade; only [`GridProcessor::end_cell`] may
/// retire a section) can filter it directly with [`SectionChain::process_f32`] (the same values
/// as the buffered path), so its output is bit-identical either way.
pub(crate) fn process_settled_in_grid<const GRID: usize, P: GridProcessor>(
    p: &mut P,
    left: &mut [f32],
    right: &mut [f32],
    mut run: impl FnMut(&mut P, &mut [f32], &mut [f32]),
) {
    let n = left.len().min(right.len());
    let mut i = 0;
    while i < n {
        let pos = (*p.grid_pos()).min(GRID - 1);
        if pos == 0 && !p.is_active() {
            return;
        }
        let len = (n - i).min(GRID - pos);
        run(p, &mut left[i..i + len], &mut right[i..i + len]);
        i += len;
        if pos + len == GRID {
            *p.grid_pos() = 0;
            p.end_cell();
        } else {
            *p.grid_pos() = pos + len;
        }
        if !p.is_active() {
            // Retired within the cell: the rest of the block passes untouched.
            *p.grid_pos() = 0;
            return;
        }
    }
}

/// Signal generators and measurements shared by the filter tests of this crate.
#[cfg(test)]
pub(crate) mod test_support {
    /// `amplitude·sin(2π·freq_hz·n/fs + phase)` for n in `start..start + len`.
    pub fn sine(freq_hz: f64, fs: f64, amplitude: f64, start: usize, len: usize) -> Vec<f32> {
        (start..start + len)
            .map(|n| (amplitude * (std::f64::consts::TAU * freq_hz * n as f64 / fs).sin()) as f32)
            .collect()
    }

    /// Least-squares amplitude of the `freq_hz` sinusoid in `y` (fits `a·sin + b·cos + c`, so
    /// any window length works). `start` is the sample index of `y[0]`.
    pub fn sine_amplitude(y: &[f32], freq_hz: f64, fs: f64, start: usize) -> f64 {
        // Normal equations of the 3-parameter fit.
        let mut m = [[0.0f64; 3]; 3];
        let mut v = [0.0f64; 3];
        for (i, &yi) in y.iter().enumerate() {
            let ph = std::f64::consts::TAU * freq_hz * (start + i) as f64 / fs;
            let basis = [ph.sin(), ph.cos(), 1.0];
            for r in 0..3 {
                for c in 0..3 {
                    m[r][c] += basis[r] * basis[c];
                }
                v[r] += basis[r] * yi as f64;
            }
        }
        let sol = solve3(m, v);
        sol[0].hypot(sol[1])
    }

    /// Gaussian elimination for a 3×3 system.
    fn solve3(mut m: [[f64; 3]; 3], mut v: [f64; 3]) -> [f64; 3] {
        for col in 0..3 {
            let piv = (col..3)
                .max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))
                .unwrap();
            m.swap(col, piv);
            v.swap(col, piv);
            let (pivot_row, pivot_v) = (m[col], v[col]);
            for (row, vr) in m.iter_mut().zip(v.iter_mut()).skip(col + 1) {
                let f = row[col] / pivot_row[col];
                for (a, p) in row.iter_mut().zip(pivot_row).skip(col) {
                    *a -= f * p;
                }
                *vr -= f * pivot_v;
            }
        }
        let mut x = [0.0; 3];
        for row in (0..3).rev() {
            let s: f64 = (row + 1..3).map(|k| m[row][k] * x[k]).sum();
            x[row] = (v[row] - s) / m[row][row];
        }
        x
    }

    /// Largest sample-to-sample step `max |y[n] − y[n−1]|` within `y[from..to]`.
    pub fn max_step(y: &[f32], from: usize, to: usize) -> f32 {
        y[from.max(1)..to]
            .iter()
            .zip(&y[from.max(1) - 1..to - 1])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }

    /// A stereo processor under test, driven through one harness.
    pub trait TestProcessor: Sized {
        /// Its settings type.
        type Settings: Copy;
        /// `new(sample_rate)`.
        fn create(fs: f32) -> Self;
        /// `set_settings`.
        fn apply(&mut self, s: &Self::Settings);
        /// `reset` (settles every ramp).
        fn settle(&mut self);
        /// `process`.
        fn run(&mut self, l: &mut [f32], r: &mut [f32]);
    }

    /// Renders `(l, r)` through a processor created with `first` and settled, in blocks of
    /// `block`, calling `apply(settings_at(n))` at the start of every block (n = first sample).
    pub fn render<P: TestProcessor>(
        fs: f32,
        input: (&[f32], &[f32]),
        block: usize,
        first: &P::Settings,
        settings_at: impl Fn(usize) -> P::Settings,
    ) -> (Vec<f32>, Vec<f32>) {
        let mut p = P::create(fs);
        p.apply(first);
        p.settle();
        let (mut l, mut r) = (input.0.to_vec(), input.1.to_vec());
        let mut n = 0;
        while n < l.len() {
            let end = (n + block).min(l.len());
            p.apply(&settings_at(n));
            p.run(&mut l[n..end], &mut r[n..end]);
            n = end;
        }
        (l, r)
    }

    /// Asserts that [`render`] gives bit-identical output (`==`) for every block size in
    /// `blocks`. `settings_at` must change only at multiples of every block size, so that each
    /// run sees the changes at the same samples.
    pub fn assert_block_size_independent<P: TestProcessor>(
        fs: f32,
        input: (&[f32], &[f32]),
        blocks: &[usize],
        first: &P::Settings,
        settings_at: impl Fn(usize) -> P::Settings,
    ) {
        let reference = render::<P>(fs, input, blocks[0], first, &settings_at);
        for &b in &blocks[1..] {
            let out = render::<P>(fs, input, b, first, &settings_at);
            let first_diff = (0..out.0.len())
                .find(|&i| out.0[i] != reference.0[i] || out.1[i] != reference.1[i]);
            assert!(
                first_diff.is_none(),
                "block {b} differs from block {} from sample {first_diff:?}",
                blocks[0]
            );
        }
    }

    /// Result of an automation click measurement.
    #[derive(Debug, Clone, Copy)]
    pub struct ClickReport {
        /// Largest sample-to-sample step around the change.
        pub step: f32,
        /// Same measure for a run with the old setting throughout.
        pub before: f32,
        /// Same measure for a run with the new setting throughout.
        pub after: f32,
    }

    impl ClickReport {
        /// `step / max(before, after)`.
        pub fn ratio(&self) -> f32 {
            self.step / self.before.max(self.after)
        }
    }

    /// Changes the settings from `from` to `to` at sample `at` and compares the largest
    /// sample-to-sample step in `at − 256 .. at + window` with the same window of two runs that
    /// had `from` or `to` all along.
    pub fn click_report<P: TestProcessor>(
        fs: f32,
        input: (&[f32], &[f32]),
        block: usize,
        from: &P::Settings,
        to: &P::Settings,
        at: usize,
        window: usize,
    ) -> ClickReport {
        let (f, t) = (*from, *to);
        let a = render::<P>(fs, input, block, &f, |n| if n < at { f } else { t });
        let b = render::<P>(fs, input, block, &f, |_| f);
        let c = render::<P>(fs, input, block, &t, |_| t);
        let (lo, hi) = (at - 256, (at + window).min(input.0.len()));
        let m = |y: &(Vec<f32>, Vec<f32>)| max_step(&y.0, lo, hi).max(max_step(&y.1, lo, hi));
        ClickReport {
            step: m(&a),
            before: m(&b),
            after: m(&c),
        }
    }

    /// A small deterministic generator (xorshift64*), so tests need no dependency.
    pub struct Rng(pub u64);

    impl Rng {
        /// Uniform in `0..1`.
        pub fn next_f64(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Uniform in `lo..hi`.
        pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
            lo + (hi - lo) * self.next_f64()
        }

        /// Log-uniform in `lo..hi` (both > 0).
        pub fn log_range(&mut self, lo: f64, hi: f64) -> f64 {
            (lo.ln() + (hi.ln() - lo.ln()) * self.next_f64()).exp()
        }

        /// White noise in −a..a.
        pub fn noise(&mut self, a: f64, len: usize) -> Vec<f32> {
            (0..len).map(|_| self.range(-a, a) as f32).collect()
        }
    }

    /// The magnitude of the analog prototype `H(s) = N(s)/D(s)` with quadratics given by
    /// `[c2, c1, c0]` at `s = j·f/f0`, in dB.
    pub fn analog_db(num: [f64; 3], den: [f64; 3], f_over_f0: f64) -> f64 {
        let w = f_over_f0;
        let eval = |p: [f64; 3]| {
            // p2·(jw)² + p1·(jw) + p0 = (p0 − p2·w²) + j·p1·w
            (p[2] - p[0] * w * w).hypot(p[1] * w)
        };
        20.0 * (eval(num) / eval(den)).log10()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    const RATES: [f64; 4] = [44_100.0, 48_000.0, 96_000.0, 192_000.0];

    #[test]
    fn butterworth_tables_match_formula() {
        assert!((BUTTERWORTH_Q2[0] - butterworth_q(2, 0)).abs() < 1e-15);
        for (k, q) in BUTTERWORTH_Q4.iter().enumerate() {
            assert!((q - butterworth_q(4, k)).abs() < 1e-14, "Q4[{k}]");
        }
        for (k, q) in BUTTERWORTH_Q8.iter().enumerate() {
            assert!((q - butterworth_q(8, k)).abs() < 1e-14, "Q8[{k}]");
        }
    }

    /// Cascades of the tabulated sections are Butterworth: −3.01 dB at the corner (bilinear
    /// pre-warping makes that exact) and `−10·log10(1 + (fc/f)^2N)` below it.
    #[test]
    fn butterworth_cascades_have_butterworth_magnitude() {
        let fs = 48_000.0;
        let fc = 200.0;
        for qs in [&BUTTERWORTH_Q4[..], &BUTTERWORTH_Q8[..]] {
            let order = 2 * qs.len() as i32;
            let db = |f: f64| -> f64 {
                qs.iter()
                    .map(|&q| Coefficients::highpass(fs, fc, q).magnitude_db(f, fs))
                    .sum()
            };
            assert!((db(fc) + 3.0103).abs() < 1e-3, "order {order}: {}", db(fc));
            for f in [50.0, 100.0, 150.0, 400.0, 1000.0] {
                let expect = -10.0 * (1.0 + (fc / f).powi(2 * order)).log10();
                assert!(
                    (db(f) - expect).abs() < 0.1,
                    "order {order} at {f} Hz: {} vs {expect}",
                    db(f)
                );
            }
        }
    }

    /// At low frequencies (f ≪ fs) each digital design matches its analog prototype.
    #[test]
    fn designs_match_analog_prototypes_at_low_frequency() {
        let fs = 192_000.0;
        for &f0 in &[100.0, 1000.0] {
            for &q in &[0.3, 0.707, 2.0, 8.0] {
                for &g in &[-18.0, -6.0, 6.0, 18.0] {
                    let a = 10f64.powf(g / 40.0);
                    let cases: [(Coefficients, [f64; 3], [f64; 3]); 6] = [
                        (
                            Coefficients::peaking(fs, f0, q, g),
                            [1.0, a / q, 1.0],
                            [1.0, 1.0 / (a * q), 1.0],
                        ),
                        (
                            Coefficients::low_shelf(fs, f0, q, g),
                            [a, a * a.sqrt() / q, a * a],
                            [a, a.sqrt() / q, 1.0],
                        ),
                        (
                            Coefficients::high_shelf(fs, f0, q, g),
                            [a * a, a * a.sqrt() / q, a],
                            [1.0, a.sqrt() / q, a],
                        ),
                        (
                            Coefficients::lowpass(fs, f0, q),
                            [0.0, 0.0, 1.0],
                            [1.0, 1.0 / q, 1.0],
                        ),
                        (
                            Coefficients::highpass(fs, f0, q),
                            [1.0, 0.0, 0.0],
                            [1.0, 1.0 / q, 1.0],
                        ),
                        (
                            Coefficients::bandpass(fs, f0, q),
                            [0.0, 1.0 / q, 0.0],
                            [1.0, 1.0 / q, 1.0],
                        ),
                    ];
                    for (i, (c, num, den)) in cases.iter().enumerate() {
                        for &f in &[20.0, 0.5 * f0, f0, 2.0 * f0, 4.0 * f0] {
                            let d = c.magnitude_db(f, fs);
                            let an = analog_db(*num, *den, f / f0);
                            if an < -60.0 {
                                continue;
                            }
                            assert!(
                                (d - an).abs() < 0.1,
                                "case {i} f0 {f0} q {q} g {g} at {f}: {d} vs {an}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn tilt_is_zero_at_pivot_and_half_tilt_at_the_ends() {
        for &fs in &RATES {
            for &t in &[-6.0, -2.5, 3.0, 6.0] {
                let c = Coefficients::tilt(fs, 1000.0, t);
                assert!(c.magnitude_db(1000.0, fs).abs() < 1e-9);
                assert!((c.magnitude_db(0.01, fs) + t / 2.0).abs() < 1e-3);
                assert!((c.magnitude_db(fs / 2.0, fs) - t / 2.0).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn zero_db_bells_and_shelves_are_exact_identities() {
        for &fs in &RATES {
            for c in [
                Coefficients::peaking(fs, 1234.0, 3.3, 0.0),
                Coefficients::low_shelf(fs, 80.0, 0.5, 0.0),
                Coefficients::high_shelf(fs, 9000.0, 1.5, 0.0),
                Coefficients::tilt(fs, 700.0, 0.0),
            ] {
                assert_eq!(c.b0, 1.0);
                assert_eq!(c.b1, c.a1);
                assert_eq!(c.b2, c.a2);
                let mut s = Biquad::new();
                let mut rng = Rng(7);
                for _ in 0..1000 {
                    let x = rng.range(-1.0, 1.0) as f32 as f64;
                    assert_eq!(s.process(&c, x), x);
                }
            }
        }
    }

    /// `LR4_LP + LR4_HP` equals the LR4 all-pass, exactly (as complex responses).
    #[test]
    fn linkwitz_riley_sum_is_the_allpass() {
        for &fs in &RATES {
            for &fc in &[40.0, 120.0, 300.0] {
                let lp = Coefficients::linkwitz_riley_lowpass(fs, fc);
                let hp = Coefficients::linkwitz_riley_highpass(fs, fc);
                let ap = Coefficients::linkwitz_riley_allpass(fs, fc);
                let mut f = 10.0;
                while f < 0.49 * fs {
                    let l = lp.response(f, fs);
                    let h = hp.response(f, fs);
                    let sum = l * l + h * h;
                    let a = ap.response(f, fs);
                    assert!((sum.re - a.re).abs() < 1e-9 && (sum.im - a.im).abs() < 1e-9);
                    assert!((a.abs() - 1.0).abs() < 1e-9);
                    f *= 1.1;
                }
            }
        }
    }

    /// Every design over the whole parameter range is stable, at every supported rate.
    #[test]
    fn designs_are_stable_everywhere() {
        let mut rng = Rng(0x1234_5678);
        for &fs in &RATES {
            for _ in 0..20_000 {
                let f = rng.log_range(10.0, 0.499 * fs);
                let q = rng.log_range(0.1, 10.0);
                let g = rng.range(-24.0, 24.0);
                for c in [
                    Coefficients::lowpass(fs, f, q),
                    Coefficients::highpass(fs, f, q),
                    Coefficients::bandpass(fs, f, q),
                    Coefficients::allpass(fs, f, q),
                    Coefficients::peaking(fs, f, q, g),
                    Coefficients::low_shelf(fs, f, q, g),
                    Coefficients::high_shelf(fs, f, q, g),
                    Coefficients::tilt(fs, f, g),
                ] {
                    assert!(c.is_stable(), "{c:?} at f {f} q {q} g {g} fs {fs}");
                }
            }
        }
        // Garbage in: still a stable design.
        for c in [
            Coefficients::peaking(f64::NAN, f64::INFINITY, -1.0, f64::NAN),
            Coefficients::highpass(48_000.0, 1.0e9, 0.0),
            Coefficients::low_shelf(48_000.0, -5.0, 1e9, 1e9),
        ] {
            assert!(c.is_stable(), "{c:?}");
        }
    }

    /// Runs full-scale noise through a +18 dB bell whose frequency and Q get a new target
    /// every 16 samples from `next_params`, interpolated per sample; returns the output peak.
    fn sweep_peak(fs: f64, mut next_params: impl FnMut(usize, &mut Rng) -> (f64, f64)) -> f64 {
        let mut rng = Rng(99);
        let mut ramp = CoefficientRamp::new(Coefficients::IDENTITY);
        let mut st = Biquad::new();
        let mut peak = 0.0f64;
        for n in 0..(fs as usize / 2) {
            if n % 16 == 0 {
                let (f, q) = next_params(n, &mut rng);
                ramp.ramp_to(Coefficients::peaking(fs, f, q, 18.0), 16);
            }
            let c = ramp.tick();
            assert!(c.is_stable());
            let y = st.process(&c, rng.range(-1.0, 1.0));
            peak = peak.max(y.abs());
        }
        peak
    }

    /// Sweeps stay bounded. A realistic fast sweep (20 Hz ↔ 20 kHz and Q 0.1 ↔ 10 in 25 ms
    /// each way, faster than any smoothed automation) stays within a small factor of the
    /// static +18 dB peak gain (×7.9); even random jumps anywhere in range every 16 samples
    /// (far beyond what the smoothers allow) stay finite and bounded — transients of a few
    /// hundred at 192 kHz, where TDF-II states of low bells are large, but no growth: an
    /// unstable recursion would overflow to ±Inf within the 0.5 s run.
    #[test]
    fn fast_sweep_stays_bounded() {
        for &fs in &RATES {
            let top = 20_000.0_f64.min(0.45 * fs);
            let period = (0.05 * fs) as usize;
            let tri = |n: usize| {
                let p = (n % period) as f64 / period as f64;
                if p < 0.5 { 2.0 * p } else { 2.0 - 2.0 * p }
            };
            let smooth = sweep_peak(fs, |n, _| {
                let t = tri(n);
                let f = 20.0 * (top / 20.0).powf(t);
                let q = 0.1 * 100f64.powf(tri(n + period / 3));
                (f, q)
            });
            let jumps = sweep_peak(fs, |_, rng| {
                (rng.log_range(20.0, top), rng.log_range(0.1, 10.0))
            });
            eprintln!("fs {fs}: smooth sweep peak {smooth:.2}, random jumps peak {jumps:.2}");
            assert!(
                smooth.is_finite() && smooth < 40.0,
                "fs {fs}: smooth {smooth}"
            );
            assert!(jumps.is_finite() && jumps < 1.0e4, "fs {fs}: jumps {jumps}");
        }
    }

    #[test]
    fn ramp_ends_exactly_on_target_and_stays_stable() {
        let a = Coefficients::highpass(48_000.0, 10.0, 2.56);
        let b = Coefficients::peaking(48_000.0, 15_000.0, 10.0, -18.0);
        let mut r = CoefficientRamp::new(a);
        r.ramp_to(b, 100);
        for _ in 0..100 {
            assert!(r.tick().is_stable());
        }
        assert_eq!(*r.current(), b);
        assert!(!r.is_ramping());
        assert_eq!(r.tick(), b);
    }

    #[test]
    fn state_flushes_to_exact_zero_and_heals() {
        let c = Coefficients::highpass(192_000.0, 10.0, BUTTERWORTH_Q8[3]);
        let mut s = Biquad::new();
        s.process(&c, 1.0);
        let mut n = 0;
        while !s.is_zero() {
            s.process(&c, 0.0);
            n += 1;
            assert!(n < 50_000_000, "never flushed");
        }
        s.process(&c, f64::NAN);
        assert!(!s.is_finite());
        assert!(s.heal());
        assert!(s.is_zero());
    }

    /// A measured sine through a section matches `magnitude_db` (checks the TDF-II update
    /// against the response formula).
    #[test]
    fn measured_sine_gain_matches_response() {
        let fs = 44_100.0;
        let c = Coefficients::peaking(fs, 3000.0, 2.0, 9.0);
        for &f in &[500.0, 2500.0, 3000.0, 12_000.0] {
            let x = sine(f, fs, 0.5, 0, 8820);
            let mut s = Biquad::new();
            let y: Vec<f32> = x.iter().map(|&v| s.process(&c, v as f64) as f32).collect();
            let a = sine_amplitude(&y[4410..], f, fs, 4410);
            let db = 20.0 * (a / 0.5).log10();
            assert!((db - c.magnitude_db(f, fs)).abs() < 0.01, "{f}: {db}");
        }
    }
    /// The one-division lane-form bell matches the cookbook design within rounding, and is the
    /// exact identity design at 0 dB.
    #[test]
    fn peaking_lanes_match_peaking() {
        let mut rng = Rng(0xB311);
        for _ in 0..2000 {
            let fs = [44_100.0, 96_000.0, 192_000.0][(rng.next_f64() * 3.0) as usize % 3];
            let f = rng.log_range(20.0, 0.45 * fs);
            let q = rng.log_range(0.1, 10.0);
            let g = rng.range(-24.0, 24.0);
            let w = Warp::new(fs, f, q);
            let fast = w.peaking_lanes(10f64.powf(g / 40.0));
            let exact = LaneCoefficients::splat(&Coefficients::peaking(fs, f, q, g));
            for (a, b) in [
                (fast.b0, exact.b0),
                (fast.c1, exact.c1),
                (fast.c2, exact.c2),
                (fast.a1, exact.a1),
                (fast.a2, exact.a2),
            ] {
                assert!(
                    (a[0] - b[0]).abs() <= 1e-12 * b[0].abs().max(1e-3),
                    "{a:?} {b:?}"
                );
                assert_eq!(a[0], a[1]);
            }
        }
        let w = Warp::new(48_000.0, 6500.0, 2.0);
        let unity = w.peaking_lanes(1.0);
        assert_eq!(unity.b0, [1.0; 2]);
        assert_eq!((unity.c1, unity.c2), ([0.0; 2], [0.0; 2]));
    }
    /// The branch-free sanitiser is `util::sanitize`, value for value.
    #[test]
    fn branchless_sanitize_matches_util() {
        let mut specials = vec![
            0.0f32,
            -0.0,
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            1.0e-45,
            -1.0e-45,
            0.999e-20,
            1.0e-20,
            -1.0e-20,
            1.0e6,
            -1.0e6,
            1.0000001e6,
            3.0e7,
            -3.0e7,
            0.5,
        ];
        let mut rng = Rng(42);
        specials.extend((0..10_000).map(|_| f32::from_bits(rng.next_f64().to_bits() as u32)));
        for x in specials {
            let (a, b) = (sanitize_branchless(x), crate::util::sanitize(x));
            assert!(
                a.to_bits() == b.to_bits() || (a == 0.0 && b == 0.0),
                "{x:e}: {a} {b}"
            );
        }
    }

    /// The AVX2 + FMA skewed kernel agrees with the portable loop (every chain length, settled
    /// and ramping, mixed lane designs, including the stem EQ's low HPF at 192 kHz): outputs
    /// within 10⁻¹¹ of the signal's scale (both are `f64`; they differ only by FMA rounding),
    /// same ramp ends; and its output does not depend on how the signal is cut into runs, bit
    /// for bit.
    #[test]
    fn simd_kernel_matches_portable_and_ignores_cuts() {
        if !crate::util::avx2_fma_available() {
            eprintln!("no AVX2/FMA: nothing to compare");
            return;
        }
        let mut rng = Rng(0x5EED);
        let fs = 192_000.0;
        let designs: Vec<LaneCoefficients> = (0..MAX_CHAIN)
            .map(|k| match k % 5 {
                0 => LaneCoefficients::splat(&Coefficients::highpass(fs, 10.0, BUTTERWORTH_Q8[3])),
                1 => LaneCoefficients::pair(
                    &Coefficients::peaking(fs, 300.0 * (k + 1) as f64, 2.0, 9.0),
                    &Coefficients::low_shelf(fs, 80.0, 0.7, -6.0),
                ),
                2 => LaneCoefficients::splat(&Coefficients::lowpass(fs, 15_000.0, 0.707)),
                3 => LaneCoefficients::pair(
                    &Coefficients::linkwitz_riley_highpass(fs, 120.0),
                    &Coefficients::linkwitz_riley_allpass(fs, 120.0),
                ),
                _ => LaneCoefficients::splat(&Coefficients::high_shelf(fs, 8000.0, 0.7, 4.0)),
            })
            .collect();
        let target = LaneCoefficients::splat(&Coefficients::peaking(fs, 2000.0, 1.0, -12.0));
        let x: Vec<Lanes> = (0..3000)
            .map(|_| [rng.range(-1.0, 1.0), rng.range(-1.0, 1.0)])
            .collect();
        for len in 1..=MAX_CHAIN {
            for ramp in [false, true] {
                // Runs as a processor cuts them: never across a ramp end.
                let run = |simd: bool, cuts: &[usize]| {
                    let mut secs: Vec<Section> =
                        designs[..len].iter().map(|&c| Section::new(c)).collect();
                    if ramp {
                        secs[len / 2].ramp_to(target, 700);
                    }
                    let mut y = x.clone();
                    let mut start = 0;
                    for &end in cuts.iter().chain(&[x.len()]) {
                        let mut chain = SectionChain::new();
                        chain.set_simd(simd);
                        for s in secs.iter_mut() {
                            chain.push(s);
                        }
                        assert_eq!(chain.run_length(end - start), end - start);
                        chain.process(&mut y[start..end]);
                        start = end;
                    }
                    (y, *secs[len / 2].coefficients())
                };
                let (fast, c_fast) = run(true, &[700]);
                let (slow, c_slow) = run(false, &[700]);
                assert_eq!(c_fast, c_slow);
                let scale = slow
                    .iter()
                    .fold(1.0f64, |m, v| m.max(v[0].abs()).max(v[1].abs()));
                for (i, (a, b)) in fast.iter().zip(&slow).enumerate() {
                    for k in 0..2 {
                        assert!(
                            (a[k] - b[k]).abs() <= 1e-11 * scale,
                            "len {len} ramp {ramp} sample {i}: {} vs {}",
                            a[k],
                            b[k]
                        );
                    }
                }
                assert_eq!(run(true, &[1, 2, 3, 5, 11, 700, 701, 1500]).0, fast);
            }
        }
    }

    /// `process_f32` (conversions inside the kernel's frame loop for short chains) gives the
    /// bits of the buffered path (sanitise, `process`, round), for every chain length, with and
    /// without a ramp, on input with NaN, ±Inf, denormals and huge values, cut into runs of
    /// every remainder modulo four; the stereo processor's mid/side I/O gives the bits of its
    /// portable passes.
    #[test]
    fn fused_io_matches_buffered_path() {
        let mut rng = Rng(0xF00D);
        let fs = 96_000.0;
        let designs = [
            LaneCoefficients::splat(&Coefficients::highpass(fs, 30.0, BUTTERWORTH_Q4[0])),
            LaneCoefficients::pair(
                &Coefficients::linkwitz_riley_highpass(fs, 120.0),
                &Coefficients::linkwitz_riley_allpass(fs, 120.0),
            ),
            LaneCoefficients::splat(&Coefficients::peaking(fs, 900.0, 2.0, 6.0)),
        ];
        let target = LaneCoefficients::splat(&Coefficients::peaking(fs, 2000.0, 1.0, -12.0));
        let mut x: Vec<[f32; 2]> = (0..1000)
            .map(|_| [rng.range(-1.0, 1.0) as f32, rng.range(-1.0, 1.0) as f32])
            .collect();
        for (i, v) in [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1.0e-40,
            3.0e7,
            -3.0e7,
        ]
        .into_iter()
        .enumerate()
        {
            x[37 + 101 * i][i % 2] = v;
        }
        let cuts = [1, 2, 7, 10, 100, 111, 300, 303, 1000];
        for len in 1..=MAX_CHAIN {
            for ramp in [false, true] {
                let run = |fused: bool| {
                    let mut secs: Vec<Section> = (0..len)
                        .map(|k| Section::new(designs[k % designs.len()]))
                        .collect();
                    if ramp {
                        secs[len / 2].ramp_to(target, 2000);
                    }
                    let mut l: Vec<f32> = x.iter().map(|v| v[0]).collect();
                    let mut r: Vec<f32> = x.iter().map(|v| v[1]).collect();
                    let mut start = 0;
                    for &end in &cuts {
                        let mut chain = SectionChain::new();
                        for s in secs.iter_mut() {
                            chain.push(s);
                        }
                        let (cl, cr) = (&mut l[start..end], &mut r[start..end]);
                        if fused {
                            chain.process_f32(cl, cr);
                        } else {
                            let mut b = vec![[0.0; 2]; end - start];
                            load_sanitized(cl, cr, &mut b);
                            chain.process(&mut b);
                            store_lanes(&b, cl, cr);
                        }
                        start = end;
                    }
                    (l, r)
                };
                assert_eq!(run(true), run(false), "len {len} ramp {ramp}");
            }
        }
        #[cfg(target_arch = "x86_64")]
        if crate::util::avx2_fma_available() {
            let (width, gains) = (1.3, [0.8, 1.15]);
            let run = |fused: bool| {
                let mut secs = [Section::new(designs[1]), Section::new(designs[1])];
                let mut l: Vec<f32> = x.iter().map(|v| v[0]).collect();
                let mut r: Vec<f32> = x.iter().map(|v| v[1]).collect();
                let mut start = 0;
                for &end in &cuts {
                    let (a, b) = secs.split_at_mut(1);
                    let mut chain = SectionChain::new();
                    chain.push(&mut a[0]);
                    chain.push(&mut b[0]);
                    let (cl, cr) = (&mut l[start..end], &mut r[start..end]);
                    if fused {
                        assert!(chain.fuses_io());
                        let mut io = skewed::F32Io::<true>::new(cl, cr, width, gains);
                        // SAFETY: AVX2 and FMA are available; `io` holds `end − start` frames.
                        unsafe { chain.process_io(&mut io, end - start) };
                    } else {
                        for (l, r) in cl.iter_mut().zip(cr.iter_mut()) {
                            let (a, b) = (
                                sanitize_branchless(*l) as f64,
                                sanitize_branchless(*r) as f64,
                            );
                            let mut f = [[0.5 * (a - b), 0.5 * (a + b)]];
                            chain.process(&mut f);
                            let [side, mid] = f[0];
                            let side = side * width;
                            *l = ((mid + side) * gains[0]) as f32;
                            *r = ((mid - side) * gains[1]) as f32;
                        }
                    }
                    start = end;
                }
                (l, r)
            };
            assert_eq!(run(true), run(false));
        }
    }

    /// A chain ramp lands exactly on its target however the ramp is cut into runs, and the
    /// samples inside it do not depend on the cut.
    #[test]
    fn chain_ramps_land_on_target_whatever_the_runs() {
        let fs = 48_000.0;
        let a = LaneCoefficients::splat(&Coefficients::peaking(fs, 300.0, 1.0, 6.0));
        let b = LaneCoefficients::splat(&Coefficients::peaking(fs, 900.0, 3.0, -9.0));
        let mut rng = Rng(9);
        let x: Vec<Lanes> = (0..40).map(|_| [rng.range(-1.0, 1.0), 0.0]).collect();
        let run = |cuts: &[usize]| {
            let mut s = Section::new(a);
            s.ramp_to(b, 16);
            let mut y = x.clone();
            let mut start = 0;
            for &end in cuts.iter().chain(&[x.len()]) {
                let mut chain = SectionChain::new();
                chain.push(&mut s);
                let m = chain.run_length(end - start);
                assert_eq!(m, end - start, "runs must not cross the ramp end");
                chain.process(&mut y[start..end]);
                start = end;
            }
            assert!(!s.is_ramping());
            assert_eq!(*s.coefficients(), b);
            y
        };
        let whole = run(&[16]);
        assert_eq!(run(&[1, 2, 3, 10, 16, 17]), whole);
        assert_eq!(run(&[5, 16, 39]), whole);
    }
}
