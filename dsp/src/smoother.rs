//! Parameter smoothing: every continuous control moves on a short linear ramp so that automation
//! never clicks. Linear (rather than exponential) ramps end *exactly* on the target after a fixed
//! time, so a neutral setting is bit-transparent once the ramp is over.
//!
//! Model: Firewheel's `SmoothedParam`; the ramp is recomputed only when the target changes.

/// Default ramp length for gain-like controls, in milliseconds.
pub const DEFAULT_RAMP_MS: f32 = 20.0;

/// A linear ramp towards a target value.
#[derive(Debug, Clone, Copy)]
pub struct Smoother {
    /// Value output by the last call to [`Smoother::tick`]; same unit as the target.
    current: f32,
    /// Value the ramp ends on.
    target: f32,
    /// Increment per sample while ramping.
    step: f32,
    /// Samples left in the current ramp; 0 when settled.
    remaining: u32,
    /// Ramp length in samples, set by [`Smoother::set_sample_rate`].
    ramp_samples: u32,
}

impl Smoother {
    /// A settled smoother at `value` with a ramp of `ramp_ms` at `sample_rate`.
    pub fn new(value: f32, ramp_ms: f32, sample_rate: f32) -> Self {
        Self {
            current: value,
            target: value,
            step: 0.0,
            remaining: 0,
            ramp_samples: ((ramp_ms * 0.001 * sample_rate).round() as u32).max(1),
        }
    }

    /// Changes the ramp length; a ramp in progress keeps its old speed.
    pub fn set_ramp(&mut self, ramp_ms: f32, sample_rate: f32) {
        self.ramp_samples = ((ramp_ms * 0.001 * sample_rate).round() as u32).max(1);
    }

    /// Starts a ramp to `target` (no-op if it is already the target). Non-finite targets are
    /// ignored.
    #[inline]
    pub fn set_target(&mut self, target: f32) {
        if !target.is_finite() || target == self.target {
            return;
        }
        self.target = target;
        self.remaining = self.ramp_samples;
        self.step = (target - self.current) / self.ramp_samples as f32;
    }

    /// Jumps to `value` without a ramp (on reset or when processing starts).
    pub fn reset(&mut self, value: f32) {
        self.current = value;
        self.target = value;
        self.remaining = 0;
        self.step = 0.0;
    }

    /// Advances one sample and returns the new value.
    #[inline]
    pub fn tick(&mut self) -> f32 {
        if self.remaining > 0 {
            self.remaining -= 1;
            self.current = if self.remaining == 0 {
                self.target
            } else {
                self.current + self.step
            };
        }
        self.current
    }

    /// Current value without advancing.
    #[inline]
    pub fn value(&self) -> f32 {
        self.current
    }

    /// Target value.
    #[inline]
    pub fn target(&self) -> f32 {
        self.target
    }

    /// Multiplies both channels by the smoothed value (a linear gain), advancing one step per
    /// sample. Settled at exactly 1.0 it leaves the audio untouched (bit-transparent); settled at
    /// another value it multiplies by a constant, which the compiler vectorises.
    #[inline]
    pub fn apply_gain(&mut self, left: &mut [f32], right: &mut [f32]) {
        let n = left.len().min(right.len());
        let mut i = 0;
        while i < n && self.remaining > 0 {
            let g = self.tick();
            left[i] *= g;
            right[i] *= g;
            i += 1;
        }
        let g = self.current;
        if g != 1.0 {
            for (l, r) in left[i..n].iter_mut().zip(right[i..n].iter_mut()) {
                *l *= g;
                *r *= g;
            }
        }
    }

    /// True while a ramp is in progress.
    #[inline]
    pub fn is_smoothing(&self) -> bool {
        self.remaining > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_ends_exactly_on_target() {
        let mut s = Smoother::new(1.0, 10.0, 48_000.0);
        s.set_target(0.3);
        let mut last = 1.0;
        for _ in 0..480 {
            let v = s.tick();
            assert!(v <= last);
            last = v;
        }
        assert_eq!(s.value(), 0.3);
        assert!(!s.is_smoothing());
    }

    #[test]
    fn ignores_non_finite_targets() {
        let mut s = Smoother::new(0.5, 10.0, 48_000.0);
        s.set_target(f32::NAN);
        assert_eq!(s.tick(), 0.5);
    }
}
