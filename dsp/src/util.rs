//! Small numeric helpers shared by every processor: decibel conversion and the sanitising of
//! input samples (NaN, ±Inf and denormals) that keeps every filter state finite.

/// Smallest magnitude kept as is; anything below is flushed to zero. Far below the 24-bit
/// noise floor (−144 dBFS) and far above the denormal range (< 1.2e−38), so flushing it is
/// inaudible and keeps recursive filters out of the slow denormal path.
pub const DENORMAL_FLUSH: f32 = 1.0e-20;

/// Largest magnitude an input sample may have after sanitising (+120 dBFS). Finite input
/// above this is clamped so that squares and filter states stay finite in `f32`.
pub const MAX_INPUT: f32 = 1.0e6;

/// Decibels to linear gain: `10^(db/20)`. `-inf` dB gives 0.
#[inline]
pub fn db_to_gain(db: f32) -> f32 {
    10f32.powf(db * 0.05)
}

/// Linear gain (magnitude) to decibels: `20·log10(gain)`; 0 gives `-inf`.
#[inline]
pub fn gain_to_db(gain: f32) -> f32 {
    20.0 * gain.abs().log10()
}

/// `f64` version of [`db_to_gain`].
#[inline]
pub fn db_to_gain_f64(db: f64) -> f64 {
    10f64.powf(db * 0.05)
}

/// Power (mean square) to decibels: `10·log10(power)`.
#[inline]
pub fn power_to_db(power: f64) -> f64 {
    10.0 * power.log10()
}

/// Makes an input sample safe for the engine: NaN and ±Inf become 0, finite values are clamped
/// to ±[`MAX_INPUT`], and magnitudes below [`DENORMAL_FLUSH`] become 0.
///
/// Treating ±Inf as silence (rather than as full scale) follows from what such a value means in
/// practice: a broken upstream process, not a loud signal.
#[inline]
pub fn sanitize(x: f32) -> f32 {
    // Branch-free so that loops over buffers vectorise: both comparisons are false for NaN,
    // the second also for ±Inf.
    let keep = (DENORMAL_FLUSH..=f32::MAX).contains(&x.abs());
    if keep {
        x.clamp(-MAX_INPUT, MAX_INPUT)
    } else {
        0.0
    }
}

/// Sanitises a buffer in place (see [`sanitize`]).
#[inline]
pub fn sanitize_slice(buf: &mut [f32]) {
    for x in buf {
        *x = sanitize(*x);
    }
}

/// Flushes a filter state variable: denormals and tiny values become 0.
#[inline]
pub fn flush(x: f32) -> f32 {
    if x.abs() < DENORMAL_FLUSH { 0.0 } else { x }
}

/// One-pole smoothing coefficient for a time constant: after `time_ms` the output has covered
/// `1 − 1/e` (63 %) of a step. Returns the per-sample pole `a` for `y += (1 − a)·(x − y)`.
#[inline]
pub fn one_pole_coeff(time_ms: f32, sample_rate: f32) -> f32 {
    if time_ms <= 0.0 {
        0.0
    } else {
        (-1.0 / (time_ms * 0.001 * sample_rate)).exp()
    }
}

/// True when the CPU runs AVX2 and FMA code (x86-64 only). Processors call this once at
/// construction and keep the answer, then pick their `#[target_feature]` build.
pub fn avx2_fma_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `sin(πt)/(πt)` (filter design, not for the audio thread).
pub fn sinc(t: f64) -> f64 {
    if t.abs() < 1e-12 {
        1.0
    } else {
        let x = std::f64::consts::PI * t;
        x.sin() / x
    }
}

/// Kaiser window at normalised position `u` in −1..1: `I0(β√(1−u²)) / I0(β)`.
pub fn kaiser(u: f64, beta: f64) -> f64 {
    if u.abs() >= 1.0 {
        return 0.0;
    }
    bessel_i0(beta * (1.0 - u * u).sqrt()) / bessel_i0(beta)
}

/// Modified Bessel function of the first kind, order 0: `Σ_k ((x/2)^k / k!)²`.
pub fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let q = x * x / 4.0;
    for k in 1..200 {
        term *= q / (k * k) as f64;
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_round_trip() {
        for db in [-60.0f32, -6.0, 0.0, 6.0, 24.0] {
            assert!((gain_to_db(db_to_gain(db)) - db).abs() < 1e-4);
        }
        assert_eq!(gain_to_db(0.0), f32::NEG_INFINITY);
    }

    #[test]
    fn sanitize_bad_values() {
        assert_eq!(sanitize(f32::NAN), 0.0);
        assert_eq!(sanitize(f32::INFINITY), 0.0);
        assert_eq!(sanitize(f32::NEG_INFINITY), 0.0);
        assert_eq!(sanitize(1.0e-30), 0.0);
        assert_eq!(sanitize(f32::MIN_POSITIVE / 2.0), 0.0);
        assert_eq!(sanitize(1.0e9), MAX_INPUT);
        assert_eq!(sanitize(-0.5), -0.5);
    }
}
