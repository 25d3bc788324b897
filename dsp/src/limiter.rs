//! True-peak lookahead limiter for the master bus: stereo-linked, constant latency, and built so
//! that its gain never exceeds the gain each sample requires.
//!
//! Per input frame (both channels):
//!
//! 1. **Detector** (ITU-R BS.1770-4 Annex 2 asks for ≥ 4× oversampling; this one reads 8×), two
//!    Kaiser-windowed-sinc stages, each normalised to unit DC gain:
//!    - 1× → 2×: the half-sample point of a long half-band interpolator,
//!      `y(m + ½) = Σ_{k<K} c_k·(x[m − k] + x[m + 1 + k])`, `c_k ∝ sinc(k + ½)·w_K((k + ½)/K; β₁)`
//!      with `K` = [`DETECTOR_HALF_TAPS`] = 96 and β₁ = 5.5. A long kernel is what it takes to
//!      read full-band content (white noise) the way an accurate meter does: with 32 taps in
//!      all, the error on full-scale white noise exceeds 1 dB; with these 192 it stays within
//!      ≈ 0.015 dB of the 16× reference meter.
//!    - 2× → 8×: the 2× signal holds nothing above a quarter of its rate, so 16 taps (at 2×,
//!      Kaiser β₂ = 8, cutoff 0.4 of the 2× rate) give the ¼, ½ and ¾ points of every 2× step.
//!
//!    Each local maximum `b` of `|y|` among the 8× points (neighbours `a`, `c`) is raised to
//!    `b + |c − a|/8`, an upper bound of the vertex of the parabola through the three points
//!    (`b + (c − a)²/(8·(2b − a − c))`, vertex within half a step). The true peak `p[m]` of the
//!    interval `[m, m+1)` is the largest of these over both channels (stereo link), and the
//!    required gain is `r[m] = min(1, ceiling / p[m])`.
//! 2. **Hold**: running minimum of `r` over `W` samples = [`LOOKAHEAD_MS`] (by doubling spans).
//! 3. **Release**: `env = min(hold, env + (1.001 − env)·k)`: instant down, one pole up towards
//!    just above 1, so that the gain lands on exactly 1.0 (`hold ≤ 1`) after ≈ 7 release times.
//!    With automatic release `k` moves between a fast (`release_ms / 10`, at least 1 ms) and
//!    the slow (`release_ms`) coefficient according to how long and how deep the recent
//!    reduction was: `w = min(1, avg(1 − env) / 0.1)` with a one-pole average over
//!    [`AUTO_AVERAGE_MS`], and `k = k_fast + (k_slow − k_fast)·w`. A lone transient releases
//!    fast; a passage held down by a dB or more releases slowly (no pumping).
//! 4. **Smoothing**: three cascaded moving averages (box filters) of total support
//!    `S = W − 2·NEIGHBOURS − 1`, run on integers (gain × 2³⁰), so they are exact: an idle
//!    limiter has a gain of exactly 1.0 for ever and the smoothing never drifts.
//! 5. The audio is delayed by [`Limiter::latency_samples`] (`K + 4 + W − NEIGHBOURS − 2`) so
//!    that each output sample `x[s]` meets a gain that is a weighted mean of `env` values which
//!    all lie at or below the required gain of every interval from
//!    `[s − 1 − NEIGHBOURS, s − NEIGHBOURS)` to `[s + NEIGHBOURS, s + NEIGHBOURS + 1)`: the
//!    inter-sample peaks on both sides of a sample and of its neighbours bound its gain.
//!
//! The limiter aims [`SAFETY_MARGIN_DB`] (0.03 dB) below the ceiling. A moving gain spreads the
//! signal's content near Nyquist, which a band-limited reading of the output sees; with full-band
//! noise and a fast release that is worth a few hundredths of a dB. `dsp/tests/limiter_stress.rs`
//! checks the output against the ceiling itself with the 16× reference meter
//! ([`crate::reference`]).
//!
//! Design after Fons Adriaensen's zita-dpl1 (and Robin Gareus' x42-dpl port) lookahead limiter
//! (hold, then smoothing that fits in the lookahead), with the long two-stage detector and the exact integer smoothing
//! added here. The detector's filters run 32 frames at a time in independent lanes so that they
//! vectorise; on x86-64 CPUs with AVX2 and FMA a build of them for those is chosen at run time.

use crate::settings::LimiterSettings;
use crate::smoother::{DEFAULT_RAMP_MS, Smoother};
use crate::util::{
    avx2_fma_available, db_to_gain, flush, gain_to_db, kaiser, one_pole_coeff, sanitize,
};

/// Lookahead (hold window) of the limiter in milliseconds (fixed, so the reported latency
/// never changes). The total latency adds the detector's delay.
pub const LOOKAHEAD_MS: f32 = 1.5;

/// Coefficient pairs of the detector's 1× → 2× half-band stage (`K`).
pub const DETECTOR_HALF_TAPS: usize = 96;

/// Kaiser β of the 1× → 2× stage.
const STAGE1_BETA: f64 = 5.5;

/// Taps of the 2× → 8× stage (at the 2× rate).
const STAGE2_TAPS: usize = 16;

/// Kaiser β of the 2× → 8× stage.
const STAGE2_BETA: f64 = 8.0;

/// Cutoff of the 2× → 8× stage as a fraction of the 2× Nyquist frequency.
const STAGE2_CUTOFF: f64 = 0.8;

/// Delay of the detector in samples: the peak of interval `[m, m+1)` is known when sample
/// `m + DETECTOR_LATENCY` arrives (`K` for the half-band stage, 4 for the second stage).
const DETECTOR_LATENCY: usize = DETECTOR_HALF_TAPS + 4;

/// History of half-sample points kept before the chunk (the 2× → 8× stage reads 8 back).
const HALF_HISTORY: usize = 8;

/// Internal safety margin in dB: the limiter aims this far below the ceiling. It covers the
/// inter-sample effect of the gain's own movement (a time-varying gain spreads content near
/// Nyquist, which a band-limited reading of the output sees) and the detector's residual
/// error on full-band signals; see `dsp/tests/limiter_stress.rs` for what it buys.
pub const SAFETY_MARGIN_DB: f32 = 0.03;

/// Intervals on each side of a sample's own two intervals whose required gain also bounds
/// the sample's gain (see module doc, step 5).
const NEIGHBOURS: usize = 2;

/// Frames the detector computes per vector block.
const BLOCK: usize = 32;

/// Frames processed per internal chunk (a multiple of [`BLOCK`]).
const CHUNK: usize = 256;

/// Fixed-point scale of the smoothed gain (gain 1.0 = 2³⁰).
const GAIN_SCALE: f64 = (1u64 << 30) as f64;

/// Number of cascaded box filters.
const BOXES: usize = 3;

/// Time constant in ms of the average gain reduction that drives the automatic release.
pub const AUTO_AVERAGE_MS: f32 = 500.0;

/// Average linear gain reduction (`1 − gain`) at which the automatic release is fully slow.
const AUTO_FULL_DEPTH: f32 = 0.1;

/// Value the release heads for: just above 1, so that the gain arrives at exactly 1.0 (held
/// gains are ≤ 1) after about `ln(1/0.001) ≈ 7` release times instead of creeping towards it.
const RELEASE_TARGET: f32 = 1.001;

/// Samples between updates of the automatic release coefficient.
const AUTO_STEP: u32 = 32;

/// Detector filter coefficients.
struct DetectorCoeffs {
    /// Half-band pairs: `stage1[k]` multiplies `x[m − k] + x[m + 1 + k]`.
    stage1: [f32; DETECTOR_HALF_TAPS],
    /// Second stage, even part of the ¼ kernel: `(h¼[j] + h¼[15 − j]) / 2`.
    quarter_even: [f32; STAGE2_TAPS / 2],
    /// Second stage, odd part of the ¼ kernel: `(h¼[j] − h¼[15 − j]) / 2` (the ¾ kernel is
    /// the mirror image, so `y¼ = Σ e·S + o·D`, `y¾ = Σ e·S − o·D`).
    quarter_odd: [f32; STAGE2_TAPS / 2],
    /// Second stage, ½ kernel (symmetric): `half[j]` multiplies `z[j] + z[15 − j]`.
    half: [f32; STAGE2_TAPS / 2],
}

/// One channel's detector state.
struct ChannelDetector {
    /// Sanitised input: `x_history` past samples, then the chunk, then spare room for the
    /// vector tail.
    x: Box<[f32]>,
    /// Half-sample points `y(m + ½)`: [`HALF_HISTORY`] past values, then the chunk's.
    half: Box<[f32]>,
    /// 8× points of the chunk's intervals: `eighth[q][i]` is `y(m + q'/8)` for
    /// `q' = [1, 2, 3, 5, 6, 7][q]`, except that `q' = 7` is stored one slot later
    /// (`eighth[5][i + 1]`, slot 0 holding the previous chunk's last value).
    eighth: Box<[[f32; CHUNK + BLOCK + 1]; 6]>,
}

/// Stereo-linked true-peak lookahead limiter.
pub struct Limiter {
    /// Sample rate in Hz (44.1k–192k).
    sample_rate: f32,
    /// Detector filters.
    coeffs: DetectorCoeffs,
    /// Per-channel detector state and input history.
    channels: [ChannelDetector; 2],
    /// Samples of input history kept before the chunk: `max(2K − 1, delay)`.
    x_history: usize,
    /// Use the AVX2 + FMA build of the detector (set when the CPU has both).
    use_avx2: bool,
    /// Linked refined peak per frame of the current chunk (linear, ≥ 0).
    peaks: Box<[f32; CHUNK + BLOCK]>,
    /// Required gains: the last `hold_len − 1` values before the chunk, then the chunk's
    /// (0..1).
    required: Box<[f32]>,
    /// Scratch for the running minimum (two levels, same length as `required`).
    min_levels: [Box<[f32]>; 2],
    /// Held (running-minimum) required gain per frame of the current chunk, 0..1.
    held: Box<[f32; CHUNK]>,
    /// Smoothed gain sums per frame of the current chunk (fixed point, see [`GAIN_SCALE`]).
    sums: Box<[i64; CHUNK]>,
    /// Applied gain per frame of the current chunk, 0..1.
    gains: Box<[f32; CHUNK]>,
    /// Hold window in samples (`W`).
    hold_len: usize,
    /// Released gain, 0..1.
    env: f32,
    /// Box filter inputs (fixed point): box `b` reads `box_inputs[b]`, which holds its last
    /// `box_lens[b]` inputs before the chunk, then the chunk's. Box 0 reads the quantised
    /// released gain, box `b` the running sums of box `b − 1`.
    box_inputs: [Box<[i64]>; BOXES],
    /// Box filter lengths in samples.
    box_lens: [usize; BOXES],
    /// Box running sums.
    box_sums: [i64; BOXES],
    /// `1 / (GAIN_SCALE · Π box_lens)`: converts the last sum to a gain.
    sum_to_gain: f64,
    /// Audio delay in samples.
    delay: usize,
    /// Ceiling as a linear gain, smoothed (0.1..1).
    ceiling: Smoother,
    /// Bypass amount: 0 = limiting, 1 = pure delay; ramps for a click-free switch.
    bypass: Smoother,
    /// Slow release coefficient per sample (`1 − pole` for `release_ms`).
    release_slow: f32,
    /// Fast release coefficient per sample (for `release_ms / 10`).
    release_fast: f32,
    /// Program-dependent release on.
    auto_release: bool,
    /// Release coefficient in use.
    release_coeff: f32,
    /// Average gain reduction `avg(1 − env)`, 0..1, for the automatic release.
    auto_average: f32,
    /// One-pole coefficient of `auto_average` per [`AUTO_STEP`] samples.
    auto_average_coeff: f32,
    /// Sum of `1 − env` since the last automatic release update.
    auto_accum: f32,
    /// Samples since the last automatic release update.
    auto_count: u32,
    /// Applied gain of the last frame, 0..1 (for the meter).
    last_gain: f32,
    /// Smallest applied gain since the last [`Limiter::take_max_gain_reduction_db`], 0..1.
    min_gain: f32,
}

impl Limiter {
    /// Prepares the limiter for `sample_rate` (44.1–192 kHz); allocates all buffers.
    pub fn new(sample_rate: f32) -> Self {
        let sample_rate = if sample_rate.is_finite() {
            sample_rate.clamp(8_000.0, 768_000.0)
        } else {
            48_000.0
        };
        let hold_len = ((LOOKAHEAD_MS * 0.001 * sample_rate).round() as usize).max(2 * BOXES + 8);
        let support = hold_len - 2 * NEIGHBOURS - 1;
        // Box lengths L_i with Σ L_i − (BOXES − 1) = support.
        let total = support + BOXES - 1;
        let mut box_lens = [total / BOXES; BOXES];
        for len in box_lens.iter_mut().take(total % BOXES) {
            *len += 1;
        }
        // Output sample s is centred in the protected intervals (module doc): interval m is
        // known at t = m + DETECTOR_LATENCY, the gain at t covers the intervals
        // [t − L − W + 1, t − L − S + 1], whose centre is s − ½ for
        // delay = L + (W + S)/2 − 3/2 = L + W − NEIGHBOURS − 2.
        let delay = DETECTOR_LATENCY + hold_len - NEIGHBOURS - 2;
        let x_history = delay.max(2 * DETECTOR_HALF_TAPS - 1);
        let product: f64 = box_lens.iter().map(|&l| l as f64).product();
        let channel = || ChannelDetector {
            x: vec![0.0; x_history + CHUNK + BLOCK + 8].into_boxed_slice(),
            half: vec![0.0; HALF_HISTORY + CHUNK + BLOCK].into_boxed_slice(),
            eighth: Box::new([[0.0; CHUNK + BLOCK + 1]; 6]),
        };
        let mut limiter = Self {
            sample_rate,
            coeffs: DetectorCoeffs::design(),
            channels: [channel(), channel()],
            x_history,
            use_avx2: avx2_fma_available(),
            peaks: Box::new([0.0; CHUNK + BLOCK]),
            required: vec![1.0; hold_len - 1 + CHUNK].into_boxed_slice(),
            min_levels: [
                vec![1.0; hold_len - 1 + CHUNK].into_boxed_slice(),
                vec![1.0; hold_len - 1 + CHUNK].into_boxed_slice(),
            ],
            held: Box::new([1.0; CHUNK]),
            sums: Box::new([0; CHUNK]),
            gains: Box::new([1.0; CHUNK]),
            hold_len,
            env: 1.0,
            box_inputs: box_lens.map(|l| vec![0i64; l + CHUNK].into_boxed_slice()),
            box_lens,
            box_sums: [0; BOXES],
            sum_to_gain: 1.0 / (GAIN_SCALE * product),
            delay,
            ceiling: Smoother::new(1.0, DEFAULT_RAMP_MS, sample_rate),
            bypass: Smoother::new(0.0, DEFAULT_RAMP_MS, sample_rate),
            release_slow: 0.0,
            release_fast: 0.0,
            auto_release: true,
            release_coeff: 0.0,
            auto_average: 0.0,
            auto_average_coeff: 1.0
                - one_pole_coeff(AUTO_AVERAGE_MS, sample_rate / AUTO_STEP as f32),
            auto_accum: 0.0,
            auto_count: 0,
            last_gain: 1.0,
            min_gain: 1.0,
        };
        limiter.set_settings(&LimiterSettings::default());
        limiter.reset();
        limiter
    }

    /// Applies settings (real-time safe). The ceiling and the bypass switch move on short
    /// linear ramps; a new release time takes effect at once (it only changes a rate).
    pub fn set_settings(&mut self, settings: &LimiterSettings) {
        let ceiling_db = if settings.ceiling_dbtp.is_finite() {
            settings.ceiling_dbtp.clamp(-20.0, 0.0)
        } else {
            -1.0
        };
        self.ceiling
            .set_target(db_to_gain(ceiling_db - SAFETY_MARGIN_DB));
        self.bypass
            .set_target(if settings.enabled { 0.0 } else { 1.0 });
        let release_ms = if settings.release_ms.is_finite() {
            settings.release_ms.clamp(1.0, 1000.0)
        } else {
            100.0
        };
        self.release_slow = 1.0 - one_pole_coeff(release_ms, self.sample_rate);
        self.release_fast = 1.0 - one_pole_coeff((release_ms * 0.1).max(1.0), self.sample_rate);
        self.auto_release = settings.auto_release;
        self.update_release_coeff();
    }

    /// Clears all state (signal history, gain reduction); settings ramps jump to their targets.
    pub fn reset(&mut self) {
        for ch in &mut self.channels {
            ch.x.fill(0.0);
            ch.half.fill(0.0);
            for phase in ch.eighth.iter_mut() {
                phase.fill(0.0);
            }
        }
        self.required.fill(1.0);
        self.env = 1.0;
        let mut level = GAIN_SCALE as i64;
        for b in 0..BOXES {
            self.box_inputs[b].fill(level);
            level *= self.box_lens[b] as i64;
            self.box_sums[b] = level;
        }
        self.ceiling.reset(self.ceiling.target());
        self.bypass.reset(self.bypass.target());
        self.auto_average = 0.0;
        self.auto_accum = 0.0;
        self.auto_count = 0;
        self.update_release_coeff();
        self.last_gain = 1.0;
        self.min_gain = 1.0;
    }

    /// Delay in samples from input to output; constant for a given sample rate, whether the
    /// limiter is enabled or not.
    pub fn latency_samples(&self) -> usize {
        self.delay
    }

    /// Processes a block in place (any length; both slices should have the same length, extra
    /// samples of the longer one are left untouched). Non-finite input is treated as silence.
    pub fn process(&mut self, left: &mut [f32], right: &mut [f32]) {
        let frames = left.len().min(right.len());
        let mut start = 0;
        while start < frames {
            let n = (frames - start).min(CHUNK);
            self.process_chunk(&mut left[start..start + n], &mut right[start..start + n]);
            start += n;
        }
    }

    /// Current gain reduction in dB (≥ 0).
    pub fn gain_reduction_db(&self) -> f32 {
        -gain_to_db(self.last_gain).min(0.0)
    }

    /// Largest gain reduction in dB since the last call (≥ 0); resets the maximum.
    pub fn take_max_gain_reduction_db(&mut self) -> f32 {
        let gain = self.min_gain;
        self.min_gain = self.last_gain;
        -gain_to_db(gain).min(0.0)
    }

    fn update_release_coeff(&mut self) {
        self.release_coeff = if self.auto_release {
            let w = (self.auto_average / AUTO_FULL_DEPTH).min(1.0);
            self.release_fast + (self.release_slow - self.release_fast) * w
        } else {
            self.release_slow
        };
    }

    fn process_chunk(&mut self, left: &mut [f32], right: &mut [f32]) {
        let n = left.len();
        let h = self.x_history;
        // 1. Sanitised input after the history.
        for (ch, input) in self.channels.iter_mut().zip([&*left, &*right]) {
            for (dst, src) in ch.x[h..h + n].iter_mut().zip(input) {
                *dst = sanitize(*src);
            }
        }

        // 2. Detector: linked refined true peak per frame.
        self.detect(n);

        // 3. Required gain per frame.
        let past = self.hold_len - 1;
        let required = &mut self.required[past..past + n];
        if self.ceiling.is_smoothing() {
            for (r, &p) in required.iter_mut().zip(&self.peaks[..n]) {
                let c = self.ceiling.tick();
                *r = (c / p).min(1.0);
            }
        } else {
            let c = self.ceiling.value();
            for (r, &p) in required.iter_mut().zip(&self.peaks[..n]) {
                *r = (c / p).min(1.0);
            }
        }

        // 4. Hold, release and box smoothing (sequential).
        self.gain_track(n);

        // 5. Gains (with the bypass ramp) and the delayed audio.
        let mut min_gain = self.min_gain;
        let bypass_settled = !self.bypass.is_smoothing();
        if bypass_settled && self.bypass.value() == 0.0 {
            for (g, &s) in self.gains[..n].iter_mut().zip(&self.sums[..n]) {
                *g = ((s as f64 * self.sum_to_gain) as f32).min(1.0);
                min_gain = min_gain.min(*g);
            }
        } else if bypass_settled {
            self.gains[..n].fill(1.0);
        } else {
            for (g, &s) in self.gains[..n].iter_mut().zip(&self.sums[..n]) {
                let limited = ((s as f64 * self.sum_to_gain) as f32).min(1.0);
                let b = self.bypass.tick();
                *g = 1.0 - (1.0 - limited) * (1.0 - b);
                min_gain = min_gain.min(*g);
            }
        }
        self.min_gain = min_gain;
        self.last_gain = self.gains[n - 1];
        let d = self.delay;
        for (out, ch) in [&mut *left, &mut *right].into_iter().zip(&self.channels) {
            let delayed = &ch.x[h - d..h - d + n];
            for ((o, &x), &g) in out.iter_mut().zip(delayed).zip(&self.gains[..n]) {
                *o = x * g;
            }
        }

        // 6. Keep the newest history.
        for ch in &mut self.channels {
            ch.x.copy_within(n..n + h, 0);
            ch.half.copy_within(n..n + HALF_HISTORY, 0);
            ch.eighth[5][0] = ch.eighth[5][n];
        }
    }

    /// Runs the detector over `n` new frames, writing `self.peaks[..n]`.
    fn detect(&mut self, n: usize) {
        #[cfg(target_arch = "x86_64")]
        if self.use_avx2 {
            // SAFETY: `use_avx2` is only set when the CPU reports AVX2 and FMA
            // (`avx2_fma_available`), which is all `detect_avx2_fma` requires.
            unsafe { detect_avx2_fma(self, n) };
            return;
        }
        detect_impl::<false>(self, n);
    }

    /// Hold, release and the box cascade for the `n` new required gains, writing
    /// `self.sums[..n]`.
    fn gain_track(&mut self, n: usize) {
        self.hold(n);
        self.release(n);
        self.smooth(n);
        if !self.env.is_finite() || !self.auto_average.is_finite() {
            // Unreachable with sanitised input; never let a broken state stick.
            self.reset();
            self.sums[..n].fill(self.box_sums[BOXES - 1]);
        }
    }

    /// Running minimum of the required gain over the last `hold_len` samples, by doubling:
    /// level `2s` is `min(level_s[j], level_s[j − s])` (a minimum over `2s` samples), and the
    /// window is covered by two overlapping power-of-two spans. Branch-free and vectorised.
    fn hold(&mut self, n: usize) {
        let w = self.hold_len;
        let past = w - 1;
        let len = past + n;
        let [a, b] = &mut self.min_levels;
        a[..len].copy_from_slice(&self.required[..len]);
        let (mut cur, mut next) = (a, b);
        let mut span = 1;
        while 2 * span <= w {
            next[..span].copy_from_slice(&cur[..span]);
            for (dst, (&x, &y)) in next[span..len]
                .iter_mut()
                .zip(cur[span..len].iter().zip(&cur[..len - span]))
            {
                *dst = x.min(y);
            }
            std::mem::swap(&mut cur, &mut next);
            span *= 2;
        }
        let shift = w - span;
        for (h, (&x, &y)) in self.held[..n]
            .iter_mut()
            .zip(cur[past..len].iter().zip(&cur[past - shift..len - shift]))
        {
            *h = x.min(y);
        }
        self.required.copy_within(n..len, 0);
    }

    /// Release (`env = min(held, env + (1.001 − env)·k)`) and the automatic release update every
    /// [`AUTO_STEP`] samples; writes the quantised gain into the first box's input.
    fn release(&mut self, n: usize) {
        let mut env = self.env;
        let past = self.box_lens[0];
        let mut i = 0;
        while i < n {
            let count = (n - i).min((AUTO_STEP - self.auto_count) as usize);
            let k = self.release_coeff;
            let mut accum = self.auto_accum;
            let out = &mut self.box_inputs[0][past + i..past + i + count];
            for (q, &held) in out.iter_mut().zip(&self.held[i..i + count]) {
                env = (env + (RELEASE_TARGET - env) * k).min(held);
                accum += 1.0 - env;
                *q = quantize(env);
            }
            self.auto_accum = accum;
            self.auto_count += count as u32;
            if self.auto_count == AUTO_STEP {
                let mean = self.auto_accum / AUTO_STEP as f32;
                self.auto_average =
                    flush(self.auto_average + (mean - self.auto_average) * self.auto_average_coeff);
                self.auto_accum = 0.0;
                self.auto_count = 0;
                self.update_release_coeff();
            }
            i += count;
        }
        self.env = env;
    }

    /// The exact box cascade: `sum_b[t] = sum_b[t − 1] + in_b[t] − in_b[t − L_b]` in integers.
    fn smooth(&mut self, n: usize) {
        for b in 0..BOXES {
            let len = self.box_lens[b];
            let (head, tail) = self.box_inputs.split_at_mut(b + 1);
            let input = &head[b];
            let mut sum = self.box_sums[b];
            let out: &mut [i64] = match tail.first_mut() {
                Some(next) => {
                    let next_len = self.box_lens[b + 1];
                    &mut next[next_len..next_len + n]
                }
                None => &mut self.sums[..n],
            };
            for (o, (&new, &old)) in out
                .iter_mut()
                .zip(input[len..len + n].iter().zip(&input[..n]))
            {
                sum += new - old;
                *o = sum;
            }
            self.box_sums[b] = sum;
        }
        for (input, &len) in self.box_inputs.iter_mut().zip(&self.box_lens) {
            input.copy_within(n..n + len, 0);
        }
    }
}

/// `floor`-like fixed-point value of a gain in 0..=1: `g·GAIN_SCALE` rounded down (or, at
/// exact integers, possibly to the next lower one; 1.0 maps to exactly `GAIN_SCALE`). Uses
/// the magic-number trick (adding `M = 1.5·2⁵²` to an `f64` of magnitude below `2⁵¹` rounds
/// it to an integer, which then sits in the low mantissa bits of the sum) instead of a
/// saturating float-to-int cast, which costs a range check per sample.
#[inline(always)]
fn quantize(gain: f32) -> i64 {
    const MAGIC: f64 = (3u64 << 51) as f64;
    // A NaN (never produced, but) falls to 0 rather than through a clamp.
    let gain = if gain >= 0.0 { gain.min(1.0) } else { 0.0 };
    let v = gain as f64 * GAIN_SCALE - 0.5;
    ((v + MAGIC).to_bits() as i64).wrapping_sub(MAGIC.to_bits() as i64)
}

/// [`detect_impl`] compiled for AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn detect_avx2_fma(limiter: &mut Limiter, n: usize) {
    detect_impl::<true>(limiter, n);
}

/// One quantity for the `BLOCK` frames of a detector block.
type Lanes = [f32; BLOCK];

/// `a·b + c`, fused when `FMA` (only in the build with the FMA target feature).
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// `BLOCK` consecutive values of `s` from `start`.
#[inline(always)]
fn lanes(s: &[f32], start: usize) -> &Lanes {
    s[start..start + BLOCK].try_into().expect("BLOCK values")
}

/// The detector for `n` frames of both channels (see module doc, step 1), in blocks of
/// [`BLOCK`] frames; writes `limiter.peaks[..n]` (frames past `n` are computed and ignored).
#[inline(always)]
fn detect_impl<const FMA: bool>(limiter: &mut Limiter, n: usize) {
    let coeffs = &limiter.coeffs;
    let xh = limiter.x_history;
    let peaks = &mut limiter.peaks;
    peaks[..n].fill(0.0);
    for ch in limiter.channels.iter_mut() {
        let ChannelDetector { x, half, eighth } = ch;
        let mut base = 0;
        while base < n {
            // Stage 1: half-sample points of m = t − K for the block's frames t. The window
            // holds x[m − K + 1 ..= m + K] for the block's first m, and BLOCK − 1 more.
            {
                let start = xh + base + 1 - 2 * DETECTOR_HALF_TAPS;
                let window: &[f32; 2 * DETECTOR_HALF_TAPS + BLOCK] = x
                    [start..start + 2 * DETECTOR_HALF_TAPS + BLOCK]
                    .try_into()
                    .expect("stage-1 window");
                let mut acc0 = [0.0f32; BLOCK];
                let mut acc1 = [0.0f32; BLOCK];
                for pair in 0..DETECTOR_HALF_TAPS / 2 {
                    let k = 2 * pair;
                    let (c0, c1) = (coeffs.stage1[k], coeffs.stage1[k + 1]);
                    // x[m − k] and x[m + 1 + k] are window[K − 1 − k] and window[K + k].
                    let l0 = lanes(window, DETECTOR_HALF_TAPS - 1 - k);
                    let r0 = lanes(window, DETECTOR_HALF_TAPS + k);
                    let l1 = lanes(window, DETECTOR_HALF_TAPS - 2 - k);
                    let r1 = lanes(window, DETECTOR_HALF_TAPS + 1 + k);
                    for l in 0..BLOCK {
                        acc0[l] = madd::<FMA>(c0, l0[l] + r0[l], acc0[l]);
                        acc1[l] = madd::<FMA>(c1, l1[l] + r1[l], acc1[l]);
                    }
                }
                let out: &mut Lanes = (&mut half[HALF_HISTORY + base..HALF_HISTORY + base + BLOCK])
                    .try_into()
                    .expect("BLOCK values");
                for l in 0..BLOCK {
                    out[l] = acc0[l] + acc1[l];
                }
            }

            // Stage 2: the ¼, ½, ¾ points of both 2× steps of interval m' = t − K − 4.
            // `xi` indexes x[m'], `hi` indexes y(m' + ½) for the block's first frame.
            let xi = xh + base - DETECTOR_LATENCY;
            let hi = HALF_HISTORY + base - 4;
            for step in 0..2 {
                let mut even = [0.0f32; BLOCK];
                let mut odd = [0.0f32; BLOCK];
                let mut mid = [0.0f32; BLOCK];
                for j in 0..STAGE2_TAPS / 2 {
                    // Pair (z[j], z[15 − j]) of the 2× window; z alternates between x and the
                    // half-sample points (offsets from the module doc's index map).
                    let (za, zb) = stage2_pair(x, half, xi, hi, step, j);
                    let (e, o, m) = (
                        coeffs.quarter_even[j],
                        coeffs.quarter_odd[j],
                        coeffs.half[j],
                    );
                    for l in 0..BLOCK {
                        let s = za[l] + zb[l];
                        let d = za[l] - zb[l];
                        even[l] = madd::<FMA>(e, s, even[l]);
                        odd[l] = madd::<FMA>(o, d, odd[l]);
                        mid[l] = madd::<FMA>(m, s, mid[l]);
                    }
                }
                let (mut quarter, mut three_quarters) = ([0.0f32; BLOCK], [0.0f32; BLOCK]);
                for l in 0..BLOCK {
                    quarter[l] = even[l] + odd[l];
                    three_quarters[l] = even[l] - odd[l];
                }
                let q = 3 * step;
                // The ¾ point of the second step (7/8) goes one slot later.
                let slot = if step == 0 { base } else { base + 1 };
                eighth[q][base..base + BLOCK].copy_from_slice(&quarter);
                eighth[q + 1][base..base + BLOCK].copy_from_slice(&mid);
                eighth[q + 2][slot..slot + BLOCK].copy_from_slice(&three_quarters);
            }

            // Refinement and the per-interval peak (this channel), then the stereo link.
            let x0 = lanes(x, xi);
            let x8 = lanes(x, xi + 1);
            let h4 = lanes(half, hi);
            let [p1, p2, p3, p5, p6, p7] = &**eighth;
            let prev = lanes(p7, base);
            let (p1, p2, p3) = (lanes(p1, base), lanes(p2, base), lanes(p3, base));
            let (p5, p6, p7) = (lanes(p5, base), lanes(p6, base), lanes(p7, base + 1));
            let out = &mut peaks[base..base + BLOCK];
            for l in 0..BLOCK {
                let v = [
                    prev[l].abs(),
                    x0[l].abs(),
                    p1[l].abs(),
                    p2[l].abs(),
                    p3[l].abs(),
                    h4[l].abs(),
                    p5[l].abs(),
                    p6[l].abs(),
                    p7[l].abs(),
                    x8[l].abs(),
                ];
                let mut peak = out[l];
                for q in 1..9 {
                    peak = peak.max(refine(v[q - 1], v[q], v[q + 1]));
                }
                out[l] = peak;
            }
            base += BLOCK;
        }
    }
}

/// The pair `(z[j], z[15 − j])` of the 2× window of `step` (0: points m' + 1/8..3/8, 1:
/// m' + 5/8..7/8) as lanes; `xi` indexes `x[m']`, `hi` indexes `y(m' + ½)`.
///
/// The 2× sequence is `z[2m] = x[m]`, `z[2m + 1] = y(m + ½)`; step 0 reads `z[2m' − 7 + j]`,
/// step 1 reads `z[2m' − 6 + j]`, which gives the offsets below (j even / odd).
#[inline(always)]
fn stage2_pair<'a>(
    x: &'a [f32],
    half: &'a [f32],
    xi: usize,
    hi: usize,
    step: usize,
    j: usize,
) -> (&'a Lanes, &'a Lanes) {
    let (xi, hi, j) = (xi as isize, hi as isize, j as isize);
    let at = |s: &'a [f32], i: isize| lanes(s, i as usize);
    match (step, j % 2) {
        (0, 0) => (at(half, hi + (j - 8) / 2), at(x, xi + (8 - j) / 2)),
        (0, _) => (at(x, xi + (j - 7) / 2), at(half, hi + (7 - j) / 2)),
        (_, 0) => (at(x, xi + (j - 6) / 2), at(half, hi + (8 - j) / 2)),
        (_, _) => (at(half, hi + (j - 7) / 2), at(x, xi + (9 - j) / 2)),
    }
}

/// Upper bound of the peak near the 8× point `b` with neighbours `a`, `c` (magnitudes): at a
/// local maximum `b + |c − a|/8` (the parabola's vertex is at most that), else `b`.
#[inline(always)]
fn refine(a: f32, b: f32, c: f32) -> f32 {
    if b >= a && b >= c {
        b + (c - a).abs() * 0.125
    } else {
        b
    }
}

impl DetectorCoeffs {
    /// Designs both stages (see module doc).
    fn design() -> Self {
        let k = DETECTOR_HALF_TAPS;
        let taps1 = windowed_sinc(k, STAGE1_BETA, 0.5, 1.0);
        let mut stage1 = [0.0f32; DETECTOR_HALF_TAPS];
        for (i, c) in stage1.iter_mut().enumerate() {
            // taps1[j] multiplies x[m − (K − 1) + j]; x[m − i] is j = K − 1 − i.
            *c = taps1[k - 1 - i] as f32;
        }
        let half2 = STAGE2_TAPS / 2;
        let quarter = windowed_sinc(half2, STAGE2_BETA, 0.25, STAGE2_CUTOFF);
        let mid = windowed_sinc(half2, STAGE2_BETA, 0.5, STAGE2_CUTOFF);
        let mut coeffs = Self {
            stage1,
            quarter_even: [0.0; STAGE2_TAPS / 2],
            quarter_odd: [0.0; STAGE2_TAPS / 2],
            half: [0.0; STAGE2_TAPS / 2],
        };
        for j in 0..half2 {
            let (a, b) = (quarter[j], quarter[STAGE2_TAPS - 1 - j]);
            coeffs.quarter_even[j] = (0.5 * (a + b)) as f32;
            coeffs.quarter_odd[j] = (0.5 * (a - b)) as f32;
            coeffs.half[j] = mid[j] as f32;
        }
        coeffs
    }
}

/// Kaiser-windowed sinc interpolator with `2·half` taps for the point `m + frac`: tap `j`
/// multiplies `x[m − (half − 1) + j]`,
/// `c[j] = cut·sinc(cut·t)·I0(β√(1 − (t/half)²))/I0(β)` with `t = frac − (j − (half − 1))`,
/// normalised to unit DC gain. `cut` is the cutoff as a fraction of Nyquist.
fn windowed_sinc(half: usize, beta: f64, frac: f64, cut: f64) -> Vec<f64> {
    let h = half as f64;
    let mut taps: Vec<f64> = (0..2 * half)
        .map(|j| {
            let t = frac - (j as f64 - (h - 1.0));
            let u = t / h;
            let window = if u.abs() >= 1.0 { 0.0 } else { kaiser(u, beta) };
            let a = std::f64::consts::PI * cut * t;
            let sinc = if a.abs() < 1e-12 { 1.0 } else { a.sin() / a };
            cut * sinc * window
        })
        .collect();
    let sum: f64 = taps.iter().sum();
    for c in &mut taps {
        *c /= sum;
    }
    taps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;

    const RATES: [f32; 4] = [44_100.0, 48_000.0, 96_000.0, 192_000.0];

    /// Deterministic uniform noise in −1..1 (xorshift32).
    fn noise(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn sine(len: usize, freq_ratio: f64, phase: f64, amp: f64) -> Vec<f32> {
        (0..len)
            .map(|n| (amp * (std::f64::consts::TAU * freq_ratio * n as f64 + phase).sin()) as f32)
            .collect()
    }

    /// True peak (dBTP, 16× reference points) of `x` between samples `from` and `to`, read in
    /// the context of the whole signal (a slice would add ringing at its cut ends).
    fn peak_db_between(x: &[f32], from: usize, to: usize) -> f32 {
        let points = reference::oversample_16x(x);
        let peak = points[16 * from..16 * to]
            .iter()
            .fold(0.0f32, |a, v| a.max(v.abs()));
        20.0 * peak.log10()
    }

    fn settings(ceiling_dbtp: f32) -> LimiterSettings {
        LimiterSettings {
            ceiling_dbtp,
            ..LimiterSettings::default()
        }
    }

    /// Runs `l`, `r` through `lim` in blocks of `block` frames.
    fn run(lim: &mut Limiter, l: &[f32], r: &[f32], block: usize) -> (Vec<f32>, Vec<f32>) {
        let (mut l, mut r) = (l.to_vec(), r.to_vec());
        for (lb, rb) in l.chunks_mut(block).zip(r.chunks_mut(block)) {
            lim.process(lb, rb);
        }
        (l, r)
    }

    fn limiter(fs: f32, s: &LimiterSettings) -> Limiter {
        let mut lim = Limiter::new(fs);
        lim.set_settings(s);
        lim.reset();
        lim
    }

    /// The detector's peak per interval `[m, m+1)` of `x` (left channel; right silent).
    fn detector_peaks(x: &[f32], avx2: bool) -> Vec<f32> {
        let mut lim = Limiter::new(48_000.0);
        lim.use_avx2 = avx2 && avx2_fma_available();
        let mut l = x.to_vec();
        l.extend(std::iter::repeat_n(0.0, DETECTOR_LATENCY));
        let mut r = vec![0.0; l.len()];
        let mut out = Vec::new();
        for (lb, rb) in l.chunks_mut(100).zip(r.chunks_mut(100)) {
            lim.process(lb, rb);
            out.extend_from_slice(&lim.peaks[..lb.len()]);
        }
        out.drain(..DETECTOR_LATENCY);
        out
    }

    /// Peak of the reference reconstruction per interval `[m, m+1)` (16× points, parabola).
    fn reference_peaks(x: &[f32]) -> Vec<f32> {
        let y = reference::oversample_16x(x);
        (0..x.len())
            .map(|m| {
                (16 * m..16 * m + 16)
                    .filter(|&i| i > 0 && i + 1 < y.len())
                    .map(|i| {
                        let (a, b, c) = (y[i - 1].abs(), y[i].abs(), y[i + 1].abs());
                        let curvature = 2.0 * b - a - c;
                        if b >= a && b >= c && curvature > 0.0 {
                            b + (a - c) * (a - c) / (8.0 * curvature)
                        } else {
                            b
                        }
                    })
                    .fold(0.0, f32::max)
            })
            .collect()
    }

    /// Worst under-read and over-read (dB) of the detector against the reference over the
    /// intervals whose true peak is at least half the largest, comparing with the detector's
    /// largest value over the interval and its neighbours (the limiter protects those too).
    fn detector_error_db(x: &[f32], avx2: bool) -> (f64, f64) {
        let det = detector_peaks(x, avx2);
        let truth = reference_peaks(x);
        let top = truth.iter().fold(0.0f32, |a, &b| a.max(b));
        let errors = (1..x.len() - 1)
            .filter(|&m| truth[m] >= 0.5 * top)
            .map(|m| {
                let d = det[m - 1].max(det[m]).max(det[m + 1]);
                20.0 * (truth[m] as f64 / d as f64).log10()
            });
        errors.fold((f64::NEG_INFINITY, f64::NEG_INFINITY), |(u, o), e| {
            (u.max(e), o.max(-e))
        })
    }

    #[test]
    fn detector_reads_white_noise_like_the_reference() {
        for avx2 in [false, true] {
            let mut worst = f64::NEG_INFINITY;
            for seed in [99, 5, 1234] {
                worst = worst.max(detector_error_db(&noise(12_000, seed), avx2).0);
            }
            println!("avx2 {avx2}: worst under-read on white noise {worst:.4} dB");
            assert!(worst < 0.025, "{worst} dB");
        }
    }

    #[test]
    fn detector_reads_sines_at_any_frequency_and_phase() {
        let (mut under, mut over) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
        for f in [0.01, 0.1, 0.2, 0.25, 0.3, 0.4, 0.45] {
            for k in 0..4 {
                let x = sine(1500, f, 0.4 * k as f64, 0.9);
                let det = detector_peaks(&x, true);
                let peak = det[300..1200].iter().fold(0.0f32, |a, &b| a.max(b));
                let err = 20.0 * (0.9 / peak as f64).log10();
                under = under.max(err);
                over = over.max(-err);
            }
        }
        println!("sines: worst under-read {under:.4} dB, over-read {over:.4} dB");
        assert!(under < 0.005 && over < 0.05, "{under} {over}");
    }

    #[test]
    fn impulse_lands_exactly_at_the_latency() {
        for fs in RATES {
            let mut lim = limiter(fs, &settings(-1.0));
            let latency = lim.latency_samples();
            assert!(
                latency as f32 <= 0.0046 * fs,
                "{latency} samples at {fs} Hz"
            );
            let mut l = vec![0.0f32; latency + 200];
            l[17] = 0.5;
            let r: Vec<f32> = l.iter().map(|v| -v).collect();
            let (out_l, out_r) = run(&mut lim, &l, &r, 64);
            for (n, (&a, &b)) in out_l.iter().zip(&out_r).enumerate() {
                let expected = if n == 17 + latency { 0.5 } else { 0.0 };
                assert_eq!((a, b), (expected, -expected), "sample {n} at {fs} Hz");
            }
        }
    }

    #[test]
    fn latency_at_48_khz() {
        // K + 4 + W − NEIGHBOURS − 2 with W = 72 (1.5 ms).
        assert_eq!(Limiter::new(48_000.0).latency_samples(), 168);
    }

    #[test]
    fn per_sample_and_block_processing_agree() {
        let fs = 44_100.0;
        let s = LimiterSettings {
            ceiling_dbtp: -3.0,
            release_ms: 30.0,
            auto_release: true,
            ..LimiterSettings::default()
        };
        let len = 6000;
        let l: Vec<f32> = noise(len, 3).iter().map(|v| v * 3.0).collect();
        let r = sine(len, 0.013, 0.0, 2.5);
        let reference = run(&mut limiter(fs, &s), &l, &r, 512);
        for block in [1, 7, 32, 300, 4096] {
            let out = run(&mut limiter(fs, &s), &l, &r, block);
            assert!(out == reference, "block size {block}");
        }
    }

    #[test]
    fn idle_limiter_is_exactly_a_delay() {
        for fs in [44_100.0, 96_000.0] {
            let mut lim = limiter(fs, &settings(-1.0));
            let d = lim.latency_samples();
            // Peaks at −7 dBTP at most (loud enough to keep the detector busy): no reduction.
            let len = 20_000;
            let l: Vec<f32> = noise(len, 11).iter().map(|v| v * 0.3).collect();
            let r = sine(len, 0.21, 1.0, 0.4);
            let (out_l, out_r) = run(&mut lim, &l, &r, 256);
            for n in d..len {
                assert_eq!(out_l[n], l[n - d], "left sample {n}");
                assert_eq!(out_r[n], r[n - d], "right sample {n}");
            }
            assert_eq!(lim.take_max_gain_reduction_db(), 0.0);
        }
    }

    #[test]
    fn limits_a_loud_sine_to_the_ceiling_and_not_much_lower() {
        for fs in [44_100.0, 48_000.0] {
            let mut lim = limiter(fs, &settings(-6.0));
            let len = (0.5 * fs) as usize;
            let x = sine(len, 997.0 / fs as f64, 0.3, 1.0);
            let (out, _) = run(&mut lim, &x, &x, 512);
            let peak_db = peak_db_between(&out, len / 2, len - 300);
            assert!(
                peak_db <= -6.0 && peak_db > -6.1,
                "{peak_db} dBTP at {fs} Hz"
            );
            let gr = lim.gain_reduction_db();
            assert!((gr - 6.03).abs() < 0.1, "gain reduction {gr} dB");
            assert!(lim.take_max_gain_reduction_db() >= gr);
        }
    }

    #[test]
    fn gain_returns_to_unity_after_the_release() {
        for auto_release in [false, true] {
            let fs = 48_000.0;
            let s = LimiterSettings {
                ceiling_dbtp: -1.0,
                release_ms: 50.0,
                auto_release,
                ..LimiterSettings::default()
            };
            let mut lim = limiter(fs, &s);
            let d = lim.latency_samples();
            // 100 ms at +12 dB over the ceiling, then a quiet tone.
            let loud = (0.1 * fs) as usize;
            let len = loud + (0.6 * fs) as usize;
            let x: Vec<f32> = (0..len)
                .map(|n| {
                    let amp = if n < loud { 4.0 } else { 0.1 };
                    amp * (n as f32 * 0.05).sin()
                })
                .collect();
            let mut out = Vec::new();
            let mut gr_after = Vec::new();
            for block in x.chunks(480) {
                let (mut l, mut r) = (block.to_vec(), block.to_vec());
                lim.process(&mut l, &mut r);
                out.extend_from_slice(&l);
                gr_after.push(lim.gain_reduction_db());
            }
            // 10 ms blocks: limiting during the burst, recovered 10 release times later.
            assert!(gr_after[5] > 10.0, "{:?}", &gr_after[..12]);
            let recovered = (loud + d) / 480 + 10 * 50 / 10;
            assert!(
                gr_after[recovered] < 0.001,
                "{:?}",
                &gr_after[recovered - 3..]
            );
            // ... and then exactly transparent again.
            let end = len - 480;
            for n in end..len {
                assert_eq!(out[n], x[n - d], "sample {n}");
            }
        }
    }

    #[test]
    fn auto_release_is_faster_after_a_lone_transient() {
        let fs = 48_000.0;
        let recovery_ms = |auto_release: bool| -> f32 {
            let s = LimiterSettings {
                ceiling_dbtp: -1.0,
                release_ms: 200.0,
                auto_release,
                ..LimiterSettings::default()
            };
            let mut lim = limiter(fs, &s);
            let mut x = vec![0.05f32; (1.0 * fs) as usize];
            x[1000] = 4.0;
            let mut blocks = 0;
            for (i, block) in x.chunks(48).enumerate() {
                let (mut l, mut r) = (block.to_vec(), block.to_vec());
                lim.process(&mut l, &mut r);
                if i > 30 && lim.gain_reduction_db() < 1.0 && blocks == 0 {
                    blocks = i;
                }
            }
            blocks as f32
        };
        let (fixed, auto) = (recovery_ms(false), recovery_ms(true));
        assert!(auto < 0.3 * fixed, "auto {auto} ms, fixed {fixed} ms");
    }

    #[test]
    fn bypass_keeps_the_latency_and_switches_without_a_click() {
        let fs = 48_000.0;
        let mut lim = limiter(fs, &settings(-6.0));
        let d = lim.latency_samples();
        let len = 48_000;
        let x = sine(len, 0.01, 0.0, 1.0);
        let mut out = Vec::new();
        for (i, block) in x.chunks(480).enumerate() {
            if i == 30 {
                lim.set_settings(&LimiterSettings {
                    enabled: false,
                    ..settings(-6.0)
                });
            }
            let (mut l, mut r) = (block.to_vec(), block.to_vec());
            lim.process(&mut l, &mut r);
            assert_eq!(lim.latency_samples(), d);
            out.extend_from_slice(&l);
        }
        // Bypassed: exactly the delayed input.
        for n in 40 * 480..len {
            assert_eq!(out[n], x[n - d], "sample {n}");
        }
        // The gain (output / input) moves smoothly through the switch.
        let gain = |n: usize| out[n] / x[n - d];
        let mut worst_step = 0.0f32;
        for n in 29 * 480..40 * 480 {
            if x[n - d].abs() > 0.1 && x[n - 1 - d].abs() > 0.1 {
                worst_step = worst_step.max((gain(n) - gain(n - 1)).abs());
            }
        }
        assert!(worst_step < 0.002, "gain step {worst_step}");
    }

    #[test]
    fn a_new_ceiling_is_reached_smoothly() {
        let fs = 48_000.0;
        let mut lim = limiter(fs, &settings(-1.0));
        let d = lim.latency_samples();
        let x = sine(24_000, 0.01, 0.0, 1.0);
        let mut out = Vec::new();
        for (i, block) in x.chunks(240).enumerate() {
            if i == 40 {
                lim.set_settings(&settings(-9.0));
            }
            let (mut l, mut r) = (block.to_vec(), block.to_vec());
            lim.process(&mut l, &mut r);
            out.extend_from_slice(&l);
        }
        let tail_db = peak_db_between(&out, 18_000, 23_000);
        assert!(tail_db <= -9.0 && tail_db > -9.1, "{tail_db}");
        let gain = |n: usize| out[n] / x[n - d];
        let mut worst_step = 0.0f32;
        for n in d + 1..24_000 {
            if x[n - d].abs() > 0.2 && x[n - 1 - d].abs() > 0.2 {
                worst_step = worst_step.max((gain(n) - gain(n - 1)).abs());
            }
        }
        assert!(worst_step < 0.002, "gain step {worst_step}");
    }

    #[test]
    fn quantize_rounds_down_and_keeps_unity_exact() {
        assert_eq!(quantize(1.0), GAIN_SCALE as i64);
        assert_eq!(quantize(0.0), 0);
        for g in [0.999_999_9f32, 0.5, 0.123_456_7, 1e-6, 0.7] {
            let q = quantize(g);
            let exact = g as f64 * GAIN_SCALE;
            assert!(
                (q as f64) <= exact && (q as f64) > exact - 1.000_001,
                "{g}: {q}"
            );
        }
    }

    #[test]
    fn bad_input_never_gives_bad_output_or_a_stuck_gain() {
        let fs = 48_000.0;
        let mut lim = limiter(fs, &settings(-1.0));
        let d = lim.latency_samples();
        let mut l = sine(4000, 0.01, 0.0, 0.5);
        let mut r = l.clone();
        for (i, v) in [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            -f32::MAX,
            f32::MIN_POSITIVE / 4.0,
            1.0e30,
        ]
        .into_iter()
        .enumerate()
        {
            l[500 + 37 * i] = v;
            r[900 + 11 * i] = v;
        }
        let (out_l, out_r) = run(&mut lim, &l, &r, 128);
        assert!(out_l.iter().chain(&out_r).all(|v| v.is_finite()));
        // Huge values are clamped and limited, not passed through.
        assert!(out_l.iter().chain(&out_r).all(|v| v.abs() < 1.0));
        // After the bad samples and the release, a quiet signal passes untouched again.
        let quiet = sine(48_000, 0.02, 0.0, 0.3);
        let (out, _) = run(&mut lim, &quiet, &quiet, 512);
        for n in 40_000..48_000 {
            assert_eq!(out[n], quiet[n - d], "sample {n}");
        }
    }
}
