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
//! (hold, then smoothing that fits in the lookahead), with the long two-stage detector and the
//! exact integer smoothing added here.
//!
//! **Speed.** The detector's filters run 32 frames at a time in independent lanes (stage 1 in
//! a strided layout that reuses its loads, see `stage1_block`); on x86-64 CPUs with AVX2 and
//! FMA a build of the whole chunk processing for those is chosen at run time. The detector
//! skips what the result cannot depend on: a peak at or below the ceiling gives a required gain
//! of exactly 1 whatever its value, so a channel's chunk (or 32-frame block) whose peaks a
//! bound keeps below the ceiling is not computed — `Σ|h|` of the filters times the largest
//! input magnitude, see `DetectorCoeffs::stage2_bound`. The output is the same to the bit as
//! with every peak computed (tested). Release, box smoothing and gain run fused in one loop
//! (see `Limiter::release_and_smooth`).

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

/// Frames per detector vector (eight `f32`: one AVX register).
const LANES: usize = 8;

/// Vectors per detector block: stage 1 holds the frames `j, j + STRIDE, …` of a block in
/// vector `j` (see [`stage1_block`]).
const STRIDE: usize = BLOCK / LANES;

/// Length of each phase of the stage-1 input: `2K − 1 + CHUNK` samples split `STRIDE` ways.
const PHASE_LEN: usize = (2 * DETECTOR_HALF_TAPS + CHUNK) / STRIDE;

/// Relative allowance for rounding in the detector's skip bounds (the floating-point error of
/// the filters is below 10⁻⁵ of the bound).
const BOUND_MARGIN: f64 = 1e-4;

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
    /// Bound of stage 1's gain, `2·Σ|stage1[k]|` raised by [`BOUND_MARGIN`] (≥ 1): no
    /// half-sample point exceeds it times the largest `|x|` it reads.
    stage1_gain: f32,
    /// Bound from the 2× points to the refined peak, see [`DetectorCoeffs::stage2_bound`].
    stage2_gain: f32,
}

/// One channel's detector state.
struct ChannelDetector {
    /// Sanitised input: `x_history` past samples, then the chunk, then spare room for the
    /// vector tail.
    x: Box<[f32]>,
    /// Stage-1 input of the chunk split into phases (scratch, see [`deinterleave`]).
    phases: Box<[[f32; PHASE_LEN]; STRIDE]>,
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
    /// Use the AVX2 + FMA build of the chunk processing (set when the CPU has both).
    use_avx2: bool,
    /// Let the detector skip work its result cannot depend on (always on; tests that read
    /// the detector's peaks themselves switch it off).
    skip_enabled: bool,
    /// Channel-chunks and channel-blocks whose detection was skipped (tests only).
    #[cfg(test)]
    skipped: [usize; 2],
    /// Linked refined peak per frame of the current chunk (linear, ≥ 0).
    peaks: Box<[f32; CHUNK + BLOCK]>,
    /// Required gains: the last `hold_len − 1` values before the chunk, then the chunk's
    /// (0..1).
    required: Box<[f32]>,
    /// Scratch for the running minimum (two levels, same length as `required`).
    min_levels: [Box<[f32]>; 2],
    /// Held (running-minimum) required gain per frame of the current chunk, 0..1.
    held: Box<[f32; CHUNK]>,
    /// Applied gain per frame of the current chunk, 0..1 (first the limited gain, then mixed
    /// with the bypass ramp).
    gains: Box<[f32; CHUNK]>,
    /// Hold window in samples (`W`).
    hold_len: usize,
    /// Released gain, 0..1 (`f64`, see [`Limiter::release_and_smooth`]).
    env: f64,
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
            phases: Box::new([[0.0; PHASE_LEN]; STRIDE]),
            half: vec![0.0; HALF_HISTORY + CHUNK + BLOCK].into_boxed_slice(),
            eighth: Box::new([[0.0; CHUNK + BLOCK + 1]; 6]),
        };
        let mut limiter = Self {
            sample_rate,
            coeffs: DetectorCoeffs::design(),
            channels: [channel(), channel()],
            x_history,
            use_avx2: avx2_fma_available(),
            skip_enabled: true,
            #[cfg(test)]
            skipped: [0; 2],
            peaks: Box::new([0.0; CHUNK + BLOCK]),
            required: vec![1.0; hold_len - 1 + CHUNK].into_boxed_slice(),
            min_levels: [
                vec![1.0; hold_len - 1 + CHUNK].into_boxed_slice(),
                vec![1.0; hold_len - 1 + CHUNK].into_boxed_slice(),
            ],
            held: Box::new([1.0; CHUNK]),
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
        self.release_coeff = release_coeff(
            self.auto_release,
            self.release_fast,
            self.release_slow,
            self.auto_average,
        );
    }

    /// Processes one chunk of at most [`CHUNK`] frames.
    fn process_chunk(&mut self, left: &mut [f32], right: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if self.use_avx2 {
            // SAFETY: `use_avx2` is only set when the CPU reports AVX2 and FMA
            // (`avx2_fma_available`), which is all `process_chunk_avx2_fma` requires.
            unsafe { process_chunk_avx2_fma(self, left, right) };
            return;
        }
        self.process_chunk_impl::<Portable>(left, right);
    }

    /// [`Limiter::process_chunk`] with the detector on vectors `V` (whose multiply-adds are
    /// fused in the AVX2 + FMA build; the rest is the same arithmetic in either build).
    #[inline(always)]
    fn process_chunk_impl<V: F32x8>(&mut self, left: &mut [f32], right: &mut [f32]) {
        let n = left.len();
        let h = self.x_history;
        // 1. Sanitised input after the history.
        for (ch, input) in self.channels.iter_mut().zip([&*left, &*right]) {
            for (dst, src) in ch.x[h..h + n].iter_mut().zip(input) {
                *dst = sanitize(*src);
            }
        }

        // 2. Detector: linked refined true peak per frame.
        detect_impl::<V>(self, n);

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
            min_gain = self.gains[..n].iter().fold(min_gain, |m, &g| m.min(g));
        } else if bypass_settled {
            self.gains[..n].fill(1.0);
        } else {
            for g in &mut self.gains[..n] {
                let b = self.bypass.tick();
                *g = 1.0 - (1.0 - *g) * (1.0 - b);
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

    /// Hold, release and the box cascade for the `n` new required gains, writing the limited
    /// gain (before the bypass mix) to `self.gains[..n]`.
    #[inline(always)]
    fn gain_track(&mut self, n: usize) {
        self.hold(n);
        self.release_and_smooth(n);
        if !self.env.is_finite() || !self.auto_average.is_finite() {
            // Unreachable with sanitised input; never let a broken state stick.
            self.reset();
            let gain = sum_gain(self.box_sums[BOXES - 1], self.sum_to_gain);
            self.gains[..n].fill(gain);
        }
    }

    /// Running minimum of the required gain over the last `hold_len` samples, by doubling:
    /// level `2s` is `min(level_s[j], level_s[j − s])` (a minimum over `2s` samples, needed
    /// and computed only for `j ≥ 2s − 1`), and the window is covered by two overlapping
    /// power-of-two spans. Branch-free and vectorised.
    #[inline(always)]
    fn hold(&mut self, n: usize) {
        let w = self.hold_len;
        let past = w - 1;
        let len = past + n;
        let [a, b] = &mut self.min_levels;
        let required = &self.required[..len];
        min_into(&mut a[1..len], &required[1..], &required[..len - 1]);
        let (mut cur, mut next) = (a, b);
        let mut span = 2;
        while 2 * span <= w {
            let first = 2 * span - 1;
            min_into(
                &mut next[first..len],
                &cur[first..len],
                &cur[first - span..len - span],
            );
            std::mem::swap(&mut cur, &mut next);
            span *= 2;
        }
        let shift = w - span;
        min_into(
            &mut self.held[..n],
            &cur[past..len],
            &cur[past - shift..len - shift],
        );
        self.required.copy_within(n..len, 0);
    }

    /// Release (`env = min(held, env + (1.001 − env)·k)`), the automatic release update every
    /// [`AUTO_STEP`] samples, the exact box cascade
    /// (`sum_b[t] = sum_b[t − 1] + in_b[t] − in_b[t − L_b]` in integers, box `b + 1` reading
    /// the sums of box `b`) and the limited gain, for the `n` held gains, into
    /// `self.gains[..n]`.
    ///
    /// The release runs on the distance to the target, `d = 1.001 − env`:
    /// `d = max(1.001 − held, d·(1 − k))`, in `f64`. Its recursion is then a multiply and a
    /// `max` (about four cycles a sample, against ten for the `f32` form
    /// `env + (1.001 − env)·k`, a subtract, a multiply, an add and a `min`), and `f64` keeps
    /// it exact where it matters: `1.001 − held` and `1.001 − (1.001 − held)` are exact for
    /// any held gain above 10⁻⁸ (the smallest a clamped input allows is 10⁻⁷), so a held gain
    /// comes out unchanged — unity included, so that an idle limiter is exactly a delay.
    ///
    /// Why one loop: the release recursion's latency sets the pace; the boxes' integer sums
    /// and the gain's conversion, as separate passes, cost about as much again, but mostly
    /// fit in that latency's shadow when they run in the same loop.
    #[inline(always)]
    fn release_and_smooth(&mut self, n: usize) {
        let [l0, l1, l2] = self.box_lens;
        let [in0, in1, in2] = &mut self.box_inputs;
        let [mut s0, mut s1, mut s2] = self.box_sums;
        let sum_to_gain = self.sum_to_gain;
        let mut env = self.env;
        let mut i = 0;
        while i < n {
            // Runs of at most the shortest box: within a run, the inputs a box drops
            // (`in_b[t]`) and the ones it takes (`in_b[L_b + t]`) are different samples, so the
            // run works on disjoint slices of equal length (no bounds checks in the loop).
            let count = (n - i)
                .min((AUTO_STEP - self.auto_count) as usize)
                .min(l0.min(l1).min(l2));
            let (old0, new0) = in0.split_at_mut(l0 + i);
            let (old1, new1) = in1.split_at_mut(l1 + i);
            let (old2, new2) = in2.split_at_mut(l2 + i);
            let (old0, new0) = (&old0[i..i + count], &mut new0[..count]);
            let (old1, new1) = (&old1[i..i + count], &mut new1[..count]);
            let (old2, new2) = (&old2[i..i + count], &mut new2[..count]);
            let held = &self.held[i..i + count];
            let gains = &mut self.gains[i..i + count];
            let target = RELEASE_TARGET as f64;
            let decay = 1.0 - self.release_coeff as f64;
            let mut distance = target - env;
            let mut accum = self.auto_accum;
            for t in 0..count {
                // `max` without the NaN case (one instruction on the recursion's path):
                // neither operand is ever NaN.
                let released = distance * decay;
                let floor = target - held[t] as f64;
                distance = if released > floor { released } else { floor };
                env = target - distance;
                accum += (1.0 - env) as f32;
                let q = quantize(env);
                s0 += q - old0[t];
                new0[t] = q;
                s1 += s0 - old1[t];
                new1[t] = s0;
                s2 += s1 - old2[t];
                new2[t] = s1;
                gains[t] = sum_gain(s2, sum_to_gain);
            }
            self.auto_accum = accum;
            self.auto_count += count as u32;
            if self.auto_count == AUTO_STEP {
                let mean = self.auto_accum / AUTO_STEP as f32;
                self.auto_average =
                    flush(self.auto_average + (mean - self.auto_average) * self.auto_average_coeff);
                self.auto_accum = 0.0;
                self.auto_count = 0;
                self.release_coeff = release_coeff(
                    self.auto_release,
                    self.release_fast,
                    self.release_slow,
                    self.auto_average,
                );
            }
            i += count;
        }
        self.env = env;
        self.box_sums = [s0, s1, s2];
        for (input, len) in [in0, in1, in2].into_iter().zip([l0, l1, l2]) {
            input.copy_within(n..n + len, 0);
        }
    }
}

/// `out[i] = min(a[i], b[i])` for required gains (never NaN, so a plain comparison gives
/// `f32::min`, in one instruction).
#[inline(always)]
fn min_into(out: &mut [f32], a: &[f32], b: &[f32]) {
    for (o, (&x, &y)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o = if x < y { x } else { y };
    }
}

/// Release coefficient per sample: with `auto_release`, between `fast` and `slow` according
/// to the average gain reduction `average` (module doc, step 3); else `slow`.
#[inline(always)]
fn release_coeff(auto_release: bool, fast: f32, slow: f32, average: f32) -> f32 {
    if auto_release {
        let w = (average / AUTO_FULL_DEPTH).min(1.0);
        fast + (slow - fast) * w
    } else {
        slow
    }
}

/// The limited gain (0..=1) from the last box's sum `s`; `sum_to_gain` is
/// [`Limiter::sum_to_gain`].
#[inline(always)]
fn sum_gain(s: i64, sum_to_gain: f64) -> f32 {
    ((s as f64 * sum_to_gain) as f32).min(1.0)
}

/// `floor`-like fixed-point value of a gain in 0..=1: `g·GAIN_SCALE` rounded down (or, at
/// exact integers, possibly to the next lower one; 1.0 maps to exactly `GAIN_SCALE`). Uses
/// the magic-number trick (adding `M = 1.5·2⁵²` to an `f64` of magnitude below `2⁵¹` rounds
/// it to an integer, which then sits in the low mantissa bits of the sum) instead of a
/// saturating float-to-int cast, which costs a range check per sample.
#[inline(always)]
fn quantize(gain: f64) -> i64 {
    const MAGIC: f64 = (3u64 << 51) as f64;
    // Branch-free clamp to 0..=1; a NaN (never produced, but) falls to 0.
    let gain = if gain > 0.0 { gain } else { 0.0 };
    let gain = if gain < 1.0 { gain } else { 1.0 };
    let v = gain * GAIN_SCALE - 0.5;
    ((v + MAGIC).to_bits() as i64).wrapping_sub(MAGIC.to_bits() as i64)
}

/// [`Limiter::process_chunk_impl`] compiled for AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn process_chunk_avx2_fma(limiter: &mut Limiter, left: &mut [f32], right: &mut [f32]) {
    limiter.process_chunk_impl::<simd::Avx>(left, right);
}

/// One quantity for `N` frames.
type Lanes<const N: usize> = [f32; N];

/// `a·b + c`, fused when `fma`.
#[inline(always)]
fn madd(fma: bool, a: f32, b: f32, c: f32) -> f32 {
    if fma { a.mul_add(b, c) } else { a * b + c }
}

/// `N` consecutive values of `s` from `start`.
#[inline(always)]
fn lanes<const N: usize>(s: &[f32], start: usize) -> &Lanes<N> {
    s[start..start + N].try_into().expect("N values")
}

/// Largest `|v|` of `s` (0 for an empty slice).
#[inline(always)]
fn max_abs(s: &[f32]) -> f32 {
    // Eight independent maxima, so that the loop vectorises (max is exact in any order).
    let mut m = [0.0f32; LANES];
    let mut chunks = s.chunks_exact(LANES);
    for c in &mut chunks {
        for (m, v) in m.iter_mut().zip(c) {
            *m = m.max(v.abs());
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(0.0f32, |a, v| a.max(v.abs()));
    m.iter().fold(tail, |a, &b| a.max(b))
}

/// Eight `f32` lanes, the detector's vector: [`simd::Avx`] in the AVX2 + FMA build,
/// [`Portable`] elsewhere. Both compute the same IEEE operations lane by lane (`mul_add` is
/// fused exactly when [`F32x8::FMA`]), so each matches the scalar code of the same build to
/// the bit.
///
/// Why explicit vectors: left to the auto-vectoriser, the detector's loops over `[f32; 8]`
/// arrays came out as 128-bit operations with spilled accumulators.
trait F32x8: Copy {
    /// Whether [`F32x8::mul_add`] is fused (one rounding).
    const FMA: bool;
    /// All lanes `v`.
    fn splat(v: f32) -> Self;
    /// `s[..8]`.
    fn load(s: &[f32]) -> Self;
    /// Into `s[..8]`.
    fn store(self, s: &mut [f32]);
    /// `self + b`.
    fn add(self, b: Self) -> Self;
    /// `self − b`.
    fn sub(self, b: Self) -> Self;
    /// `self·b + c`.
    fn mul_add(self, b: Self, c: Self) -> Self;
    /// Lane-wise maximum (no NaN ever reaches it).
    fn max(self, b: Self) -> Self;
    /// Lane-wise `|self|`.
    fn abs(self) -> Self;
    /// [`refine`] lane by lane.
    fn refine(a: Self, b: Self, c: Self) -> Self;
    /// `out[j + STRIDE·e] = v[j][e]`: strided vectors back to frame order.
    fn interleave(v: [Self; STRIDE], out: &mut [f32; BLOCK]);
    /// `[x[p], x[p + STRIDE], …]` for each phase `p`: frame order to strided vectors.
    fn deinterleave(x: &[f32; BLOCK]) -> [Self; STRIDE];
}

/// [`F32x8`] as a plain array (no fused multiply-add).
#[derive(Clone, Copy)]
struct Portable([f32; LANES]);

impl Portable {
    #[inline(always)]
    fn map2(self, b: Self, f: impl Fn(f32, f32) -> f32) -> Self {
        Self(std::array::from_fn(|l| f(self.0[l], b.0[l])))
    }
}

impl F32x8 for Portable {
    const FMA: bool = false;
    #[inline(always)]
    fn splat(v: f32) -> Self {
        Self([v; LANES])
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        Self(*lanes(s, 0))
    }
    #[inline(always)]
    fn store(self, s: &mut [f32]) {
        s[..LANES].copy_from_slice(&self.0);
    }
    #[inline(always)]
    fn add(self, b: Self) -> Self {
        self.map2(b, |a, b| a + b)
    }
    #[inline(always)]
    fn sub(self, b: Self) -> Self {
        self.map2(b, |a, b| a - b)
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        Self(std::array::from_fn(|l| self.0[l] * b.0[l] + c.0[l]))
    }
    #[inline(always)]
    fn max(self, b: Self) -> Self {
        self.map2(b, f32::max)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        Self(self.0.map(f32::abs))
    }
    #[inline(always)]
    fn refine(a: Self, b: Self, c: Self) -> Self {
        Self(std::array::from_fn(|l| refine(a.0[l], b.0[l], c.0[l])))
    }
    #[inline(always)]
    fn interleave(v: [Self; STRIDE], out: &mut [f32; BLOCK]) {
        for (j, v) in v.iter().enumerate() {
            for (e, &y) in v.0.iter().enumerate() {
                out[j + STRIDE * e] = y;
            }
        }
    }
    #[inline(always)]
    fn deinterleave(x: &[f32; BLOCK]) -> [Self; STRIDE] {
        std::array::from_fn(|p| Self(std::array::from_fn(|e| x[p + STRIDE * e])))
    }
}

/// AVX2 + FMA implementation of [`F32x8`].
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{BLOCK, F32x8, LANES, STRIDE};
    use std::arch::x86_64::*;

    /// Eight lanes in an AVX register. Only ever created inside
    /// [`super::process_chunk_avx2_fma`], which runs only on CPUs with AVX2 and FMA: that is
    /// what makes the intrinsics below sound.
    #[derive(Clone, Copy)]
    pub(super) struct Avx(__m256);

    impl F32x8 for Avx {
        const FMA: bool = true;
        #[inline(always)]
        fn splat(v: f32) -> Self {
            // SAFETY (all methods): AVX2 + FMA present, see the type's doc.
            Self(unsafe { _mm256_set1_ps(v) })
        }
        #[inline(always)]
        fn load(s: &[f32]) -> Self {
            let s = &s[..LANES];
            // SAFETY: eight floats.
            Self(unsafe { _mm256_loadu_ps(s.as_ptr()) })
        }
        #[inline(always)]
        fn store(self, s: &mut [f32]) {
            let s = &mut s[..LANES];
            // SAFETY: eight floats.
            unsafe { _mm256_storeu_ps(s.as_mut_ptr(), self.0) }
        }
        #[inline(always)]
        fn add(self, b: Self) -> Self {
            Self(unsafe { _mm256_add_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn sub(self, b: Self) -> Self {
            Self(unsafe { _mm256_sub_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            Self(unsafe { _mm256_fmadd_ps(self.0, b.0, c.0) })
        }
        #[inline(always)]
        fn max(self, b: Self) -> Self {
            Self(unsafe { _mm256_max_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn abs(self) -> Self {
            unsafe {
                let mask = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX));
                Self(_mm256_and_ps(self.0, mask))
            }
        }
        #[inline(always)]
        fn refine(a: Self, b: Self, c: Self) -> Self {
            // b + (b ≥ a ∧ b ≥ c ? |c − a|/8 : 0); adding +0 leaves b (≥ 0) unchanged, so
            // this is `refine` exactly.
            unsafe {
                let local_max = _mm256_and_ps(
                    _mm256_cmp_ps::<_CMP_GE_OQ>(b.0, a.0),
                    _mm256_cmp_ps::<_CMP_GE_OQ>(b.0, c.0),
                );
                let rise = _mm256_mul_ps(c.sub(a).abs().0, _mm256_set1_ps(0.125));
                Self(_mm256_add_ps(b.0, _mm256_and_ps(local_max, rise)))
            }
        }
        #[inline(always)]
        fn interleave(v: [Self; STRIDE], out: &mut [f32; BLOCK]) {
            // v[j] holds frames j, j + 4, …, j + 28: a 4 × 8 transpose.
            unsafe {
                let t0 = _mm256_unpacklo_ps(v[0].0, v[1].0); // 0 1 4 5 | 16 17 20 21
                let t1 = _mm256_unpackhi_ps(v[0].0, v[1].0); // 8 9 12 13 | 24 25 28 29
                let t2 = _mm256_unpacklo_ps(v[2].0, v[3].0); // 2 3 6 7 | 18 19 22 23
                let t3 = _mm256_unpackhi_ps(v[2].0, v[3].0); // 10 11 14 15 | 26 27 30 31
                let u0 = _mm256_shuffle_ps::<0x44>(t0, t2); // 0..4 | 16..20
                let u1 = _mm256_shuffle_ps::<0xee>(t0, t2); // 4..8 | 20..24
                let u2 = _mm256_shuffle_ps::<0x44>(t1, t3); // 8..12 | 24..28
                let u3 = _mm256_shuffle_ps::<0xee>(t1, t3); // 12..16 | 28..32
                Self(_mm256_permute2f128_ps::<0x20>(u0, u1)).store(&mut out[0..]);
                Self(_mm256_permute2f128_ps::<0x20>(u2, u3)).store(&mut out[8..]);
                Self(_mm256_permute2f128_ps::<0x31>(u0, u1)).store(&mut out[16..]);
                Self(_mm256_permute2f128_ps::<0x31>(u2, u3)).store(&mut out[24..]);
            }
        }
        #[inline(always)]
        fn deinterleave(x: &[f32; BLOCK]) -> [Self; STRIDE] {
            unsafe {
                let r: [__m256; 4] = std::array::from_fn(|i| Self::load(&x[8 * i..]).0);
                let t0 = _mm256_unpacklo_ps(r[0], r[1]); // 0 8 1 9 | 4 12 5 13
                let t1 = _mm256_unpackhi_ps(r[0], r[1]); // 2 10 3 11 | 6 14 7 15
                let t2 = _mm256_unpacklo_ps(r[2], r[3]); // 16 24 17 25 | 20 28 21 29
                let t3 = _mm256_unpackhi_ps(r[2], r[3]); // 18 26 19 27 | 22 30 23 31
                let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
                let fix = |v: __m256| Self(_mm256_permutevar8x32_ps(v, order));
                [
                    fix(_mm256_shuffle_ps::<0x44>(t0, t2)), // 0 8 16 24 | 4 12 20 28
                    fix(_mm256_shuffle_ps::<0xee>(t0, t2)),
                    fix(_mm256_shuffle_ps::<0x44>(t1, t3)),
                    fix(_mm256_shuffle_ps::<0xee>(t1, t3)),
                ]
            }
        }
    }
}

/// The detector for `n` frames of both channels (see module doc, step 1), in blocks of
/// [`BLOCK`] frames; writes `limiter.peaks[..n]` (frames past `n` are computed and ignored).
///
/// Work the result cannot depend on is skipped, so that `peaks` gives exactly the required
/// gains a full computation would (see [`DetectorCoeffs::stage2_bound`]): a channel's
/// contribution to a frame's linked peak only matters when it can exceed the ceiling `c`
/// (`min(1, c/p) = 1` for every `p ≤ c`, and a linked maximum above `c` comes from the other
/// channel), so it is left at 0 wherever a bound shows it cannot. What later frames read
/// (the half-sample history and the last ⅞ point) is always computed exactly.
#[inline(always)]
fn detect_impl<V: F32x8>(limiter: &mut Limiter, n: usize) {
    let coeffs = &limiter.coeffs;
    let xh = limiter.x_history;
    let blocks = n.div_ceil(BLOCK);
    // The bounds may skip only with a settled ceiling (one value for the whole chunk).
    let ceiling = if limiter.skip_enabled && !limiter.ceiling.is_smoothing() {
        limiter.ceiling.value()
    } else {
        0.0
    };
    let peaks = &mut limiter.peaks;
    peaks[..blocks * BLOCK].fill(0.0);
    for ch in limiter.channels.iter_mut() {
        let ChannelDetector {
            x,
            half,
            eighth,
            phases,
        } = ch;

        // Whole chunk: every half-sample point of frames 0..n reads x[xh − 2K + 1 .. xh + n);
        // the 2× → 8× stage also reads the exact half-sample history.
        let chunk_x = max_abs(&x[xh + 1 - 2 * DETECTOR_HALF_TAPS..xh + n]);
        let chunk_z = (chunk_x * coeffs.stage1_gain).max(max_abs(&half[..HALF_HISTORY]));
        if chunk_z * coeffs.stage2_gain < ceiling {
            // Nothing of this channel can reach the ceiling: compute only what the next
            // chunk reads, the half-sample points of frames n − 8..n and the ⅞ point of
            // frame n − 1 (frames below 0 are the history, already exact).
            let first = n.max(LANES) - LANES;
            let out: &mut Lanes<LANES> = (&mut half
                [HALF_HISTORY + first..HALF_HISTORY + first + LANES])
                .try_into()
                .expect("LANES values");
            stage1_consecutive::<LANES>(V::FMA, &coeffs.stage1, x, xh + first, out);
            stage2_single(V::FMA, coeffs, x, half, eighth, xh, n - 1);
            #[cfg(test)]
            {
                limiter.skipped[0] += 1;
            }
            continue;
        }

        // Stage 1 for all blocks, from the input split into its STRIDE phases.
        let rows = (2 * DETECTOR_HALF_TAPS + blocks * BLOCK) / STRIDE;
        deinterleave::<V>(&x[xh + 1 - 2 * DETECTOR_HALF_TAPS..], phases, rows);
        for b in 0..blocks {
            let base = b * BLOCK;
            let out: &mut Lanes<BLOCK> = (&mut half
                [HALF_HISTORY + base..HALF_HISTORY + base + BLOCK])
                .try_into()
                .expect("BLOCK values");
            stage1_block::<V>(&coeffs.stage1, phases, base / STRIDE, out);
        }

        // Stage 2 and the refinement, block by block, unless the block's 2× points show
        // that none of its 8× points can reach the ceiling.
        for b in 0..blocks {
            let base = b * BLOCK;
            let xi = xh + base - DETECTOR_LATENCY;
            let block_z = max_abs(&x[xi - 3..xi + BLOCK + 4]).max(max_abs(
                &half[HALF_HISTORY + base - 8..HALF_HISTORY + base + BLOCK],
            ));
            if block_z * coeffs.stage2_gain < ceiling {
                // The next block (or chunk) reads this block's last ⅞ point.
                let last = (base + BLOCK).min(n) - 1;
                stage2_single(V::FMA, coeffs, x, half, eighth, xh, last);
                #[cfg(test)]
                {
                    limiter.skipped[1] += 1;
                }
                continue;
            }
            for g in (base..base + BLOCK).step_by(2 * LANES) {
                stage2::<V, 2>(coeffs, x, half, eighth, xh, g);
            }
            for g in (base..base + BLOCK).step_by(LANES) {
                refine_peaks::<V>(x, half, eighth, xh, g, &mut peaks[g..g + LANES]);
            }
        }
    }
}

/// Splits `x[..STRIDE·rows]` into its `STRIDE` phases: `phases[p][i] = x[STRIDE·i + p]`.
#[inline(always)]
fn deinterleave<V: F32x8>(x: &[f32], phases: &mut [[f32; PHASE_LEN]; STRIDE], rows: usize) {
    // `rows` is a multiple of LANES (2K and BLOCK are multiples of BLOCK / … = 32).
    for i in (0..rows).step_by(LANES) {
        let v = V::deinterleave(x[STRIDE * i..STRIDE * i + BLOCK].try_into().expect("BLOCK"));
        for (phase, v) in phases.iter_mut().zip(v) {
            v.store(&mut phase[i..]);
        }
    }
}

/// Stage 1 (half-sample points) for the [`BLOCK`] frames from `STRIDE·row0`, written to
/// `out` in frame order; `phases` holds the input from `x[m − K + 1]` of the chunk's first
/// frame on (see [`deinterleave`]).
///
/// Why this layout: computed directly (lane = consecutive frame), each tap needs two
/// unaligned loads per vector, and the loads, not the arithmetic, limit the speed. Here
/// vector `j` holds the frames `j, j + STRIDE, …, j + STRIDE·(LANES − 1)` of the block, so
/// the left operand `x[m − k]` of vector `j` at tap `k + 2` is the one of vector `j − 2` at
/// tap `k` (and the right operand `x[m + 1 + k]` that of vector `j + 2`): two new contiguous
/// loads per side and tap instead of `STRIDE`. The even and the odd taps run as two passes
/// (four accumulators and eight operands fit in the sixteen AVX registers). Each lane still
/// computes `Σ_{k even} c_k·(x[m−k] + x[m+1+k]) + Σ_{k odd} …` in the same order, so the
/// result is the same to the bit as [`stage1_consecutive`].
#[inline(always)]
fn stage1_block<V: F32x8>(
    c: &[f32; DETECTOR_HALF_TAPS],
    phases: &[[f32; PHASE_LEN]; STRIDE],
    row0: usize,
    out: &mut Lanes<BLOCK>,
) {
    const K: usize = DETECTOR_HALF_TAPS;
    // The rows the block reads from each phase (fixed-size, so that no load needs a check).
    const ROWS: usize = (2 * DETECTOR_HALF_TAPS + BLOCK) / STRIDE;
    let window: [&[f32; ROWS]; STRIDE] =
        std::array::from_fn(|p| phases[p][row0..row0 + ROWS].try_into().expect("ROWS"));
    // The vector at offset `STRIDE·row0 + o ∓ STRIDE·i` from the phases' origin.
    let load_minus = |o: usize, i: usize| V::load(&window[o % STRIDE][o / STRIDE - i..]);
    let load_plus = |o: usize, i: usize| V::load(&window[o % STRIDE][o / STRIDE + i..]);
    // Offsets of the operands: left(k, j) = j − k + K − 1, right(k, j) = j + k + K.
    let mut sums = [[V::splat(0.0); STRIDE]; 2];
    for (parity, acc) in sums.iter_mut().enumerate() {
        // Start at "tap parity − 2", so that the first shift gives tap `parity`; only the
        // operands that are shifted on are loaded.
        let zero = V::splat(0.0);
        let mut left = [
            load_plus(K + 1 - parity, 0),
            load_plus(K + 2 - parity, 0),
            zero,
            zero,
        ];
        let mut right = [
            zero,
            zero,
            load_plus(K + parity, 0),
            load_plus(K + 1 + parity, 0),
        ];
        // Taps k = STRIDE·i + 2u + parity.
        for i in 0..K / STRIDE {
            for u in 0..STRIDE / 2 {
                let k = STRIDE * i + 2 * u + parity;
                let o = 2 * u + parity;
                left = [
                    load_minus(K - 1 - o, i),
                    load_minus(K - o, i),
                    left[0],
                    left[1],
                ];
                right = [
                    right[2],
                    right[3],
                    load_plus(K + 2 + o, i),
                    load_plus(K + 3 + o, i),
                ];
                let ck = V::splat(c[k]);
                for j in 0..STRIDE {
                    acc[j] = ck.mul_add(left[j].add(right[j]), acc[j]);
                }
            }
        }
    }
    let [even, odd] = sums;
    V::interleave(std::array::from_fn(|j| even[j].add(odd[j])), out);
}

/// Stage 1 for the `N` consecutive frames whose newest input is `x[newest]` onwards, written
/// to `out` (the direct form: lane = frame). Gives the same values as [`stage1_block`].
#[inline(always)]
fn stage1_consecutive<const N: usize>(
    fma: bool,
    c: &[f32; DETECTOR_HALF_TAPS],
    x: &[f32],
    newest: usize,
    out: &mut Lanes<N>,
) {
    const K: usize = DETECTOR_HALF_TAPS;
    // x[m − k] and x[m + 1 + k] with m = newest − K are x[newest − K − k], x[newest − K + 1 + k].
    let mut acc0 = [0.0f32; N];
    let mut acc1 = [0.0f32; N];
    for pair in 0..K / 2 {
        let k = 2 * pair;
        let (c0, c1) = (c[k], c[k + 1]);
        let l0 = lanes::<N>(x, newest - K - k);
        let r0 = lanes::<N>(x, newest - K + 1 + k);
        let l1 = lanes::<N>(x, newest - K - k - 1);
        let r1 = lanes::<N>(x, newest - K + 2 + k);
        for l in 0..N {
            acc0[l] = madd(fma, c0, l0[l] + r0[l], acc0[l]);
            acc1[l] = madd(fma, c1, l1[l] + r1[l], acc1[l]);
        }
    }
    for l in 0..N {
        out[l] = acc0[l] + acc1[l];
    }
}

/// Stage 2 for the `G·LANES` frames from `f`: the ¼, ½, ¾ points of both 2× steps of each
/// frame's interval `m' = t − K − 4`, written to `eighth[..][f..f + G·LANES]` (the ⅞ point
/// one slot later). `G` groups of [`LANES`] frames at a time share the coefficients' loads.
#[inline(always)]
fn stage2<V: F32x8, const G: usize>(
    coeffs: &DetectorCoeffs,
    x: &[f32],
    half: &[f32],
    eighth: &mut [[f32; CHUNK + BLOCK + 1]; 6],
    xh: usize,
    f: usize,
) {
    // `xi` indexes x[m'], `hi` indexes y(m' + ½) for frame f; the windows hold the 2× points
    // the frames read (offsets −4..=4 around them, fixed-size: no load needs a check).
    let (xi, hi) = (xh + f - DETECTOR_LATENCY, HALF_HISTORY + f - 4);
    const WINDOW: usize = 2 * LANES + 8;
    const { assert!(G * LANES + 8 <= WINDOW) };
    let xw: &[f32; WINDOW] = x[xi - 4..xi - 4 + WINDOW].try_into().expect("window");
    let hw: &[f32; WINDOW] = half[hi - 4..hi - 4 + WINDOW].try_into().expect("window");
    for step in 0..2 {
        let mut even = [V::splat(0.0); G];
        let mut odd = [V::splat(0.0); G];
        let mut mid = [V::splat(0.0); G];
        for j in 0..STAGE2_TAPS / 2 {
            // Pair (z[j], z[15 − j]) of the 2× window; z alternates between x and the
            // half-sample points (offsets from the module doc's index map).
            let ((sa, a), (sb, b)) = stage2_pair(4, 4, step, j);
            let (e, o, m) = (
                V::splat(coeffs.quarter_even[j]),
                V::splat(coeffs.quarter_odd[j]),
                V::splat(coeffs.half[j]),
            );
            for g in 0..G {
                let za = V::load(&[xw, hw][sa][a + g * LANES..]);
                let zb = V::load(&[xw, hw][sb][b + g * LANES..]);
                let (s, d) = (za.add(zb), za.sub(zb));
                even[g] = e.mul_add(s, even[g]);
                odd[g] = o.mul_add(d, odd[g]);
                mid[g] = m.mul_add(s, mid[g]);
            }
        }
        let q = 3 * step;
        // The ¾ point of the second step (⅞) goes one slot later.
        let slot = if step == 0 { f } else { f + 1 };
        for g in 0..G {
            let at = g * LANES;
            even[g].add(odd[g]).store(&mut eighth[q][f + at..]);
            mid[g].store(&mut eighth[q + 1][f + at..]);
            even[g].sub(odd[g]).store(&mut eighth[q + 2][slot + at..]);
        }
    }
}

/// [`stage2`] for the single frame `f` (the same arithmetic, scalar).
#[inline(always)]
fn stage2_single(
    fma: bool,
    coeffs: &DetectorCoeffs,
    x: &[f32],
    half: &[f32],
    eighth: &mut [[f32; CHUNK + BLOCK + 1]; 6],
    xh: usize,
    f: usize,
) {
    let (xi, hi) = (xh + f - DETECTOR_LATENCY, HALF_HISTORY + f - 4);
    for step in 0..2 {
        let (mut even, mut odd, mut mid) = (0.0f32, 0.0f32, 0.0f32);
        for j in 0..STAGE2_TAPS / 2 {
            let ((sa, a), (sb, b)) = stage2_pair(xi, hi, step, j);
            let (za, zb) = ([x, half][sa][a], [x, half][sb][b]);
            let (s, d) = (za + zb, za - zb);
            even = madd(fma, coeffs.quarter_even[j], s, even);
            odd = madd(fma, coeffs.quarter_odd[j], d, odd);
            mid = madd(fma, coeffs.half[j], s, mid);
        }
        let q = 3 * step;
        let slot = if step == 0 { f } else { f + 1 };
        eighth[q][f] = even + odd;
        eighth[q + 1][f] = mid;
        eighth[q + 2][slot] = even - odd;
    }
}

/// Refinement and the per-interval peak of the [`LANES`] frames from `f` (this channel),
/// raised into `peaks` (the stereo link).
#[inline(always)]
fn refine_peaks<V: F32x8>(
    x: &[f32],
    half: &[f32],
    eighth: &[[f32; CHUNK + BLOCK + 1]; 6],
    xh: usize,
    f: usize,
    peaks: &mut [f32],
) {
    let (xi, hi) = (xh + f - DETECTOR_LATENCY, HALF_HISTORY + f - 4);
    let [p1, p2, p3, p5, p6, p7] = eighth;
    let v = [
        V::load(&p7[f..]),
        V::load(&x[xi..]),
        V::load(&p1[f..]),
        V::load(&p2[f..]),
        V::load(&p3[f..]),
        V::load(&half[hi..]),
        V::load(&p5[f..]),
        V::load(&p6[f..]),
        V::load(&p7[f + 1..]),
        V::load(&x[xi + 1..]),
    ]
    .map(V::abs);
    let mut peak = V::load(peaks);
    for q in 1..9 {
        peak = peak.max(V::refine(v[q - 1], v[q], v[q + 1]));
    }
    peak.store(peaks);
}

/// Where the pair `(z[j], z[15 − j])` of the 2× window of `step` (0: points m' + 1/8..3/8,
/// 1: m' + 5/8..7/8) is: `(source, index)` each, source 0 = `x`, 1 = the half-sample points;
/// `xi` indexes `x[m']`, `hi` indexes `y(m' + ½)`.
///
/// The 2× sequence is `z[2m] = x[m]`, `z[2m + 1] = y(m + ½)`; step 0 reads `z[2m' − 7 + j]`,
/// step 1 reads `z[2m' − 6 + j]`, which gives the offsets below (j even / odd).
#[inline(always)]
fn stage2_pair(xi: usize, hi: usize, step: usize, j: usize) -> ((usize, usize), (usize, usize)) {
    let (xi, hi, j) = (xi as isize, hi as isize, j as isize);
    let x = |i: isize| (0, i as usize);
    let h = |i: isize| (1, i as usize);
    match (step, j % 2) {
        (0, 0) => (h(hi + (j - 8) / 2), x(xi + (8 - j) / 2)),
        (0, _) => (x(xi + (j - 7) / 2), h(hi + (7 - j) / 2)),
        (_, 0) => (x(xi + (j - 6) / 2), h(hi + (8 - j) / 2)),
        (_, _) => (h(hi + (j - 7) / 2), x(xi + (9 - j) / 2)),
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
            stage1_gain: 0.0,
            stage2_gain: 0.0,
        };
        for j in 0..half2 {
            let (a, b) = (quarter[j], quarter[STAGE2_TAPS - 1 - j]);
            coeffs.quarter_even[j] = (0.5 * (a + b)) as f32;
            coeffs.quarter_odd[j] = (0.5 * (a - b)) as f32;
            coeffs.half[j] = mid[j] as f32;
        }
        let stage1_sum: f64 = coeffs.stage1.iter().map(|&c| 2.0 * (c as f64).abs()).sum();
        coeffs.stage1_gain = (stage1_sum.max(1.0) * (1.0 + BOUND_MARGIN)) as f32;
        coeffs.stage2_gain = coeffs.stage2_bound() as f32;
        coeffs
    }

    /// Factor `B` such that no refined peak of a frame exceeds `B·Z`, where `Z` is the
    /// largest magnitude among the 2× points (`x` and half-sample points) its stage-2 windows
    /// read: every 8× point is a filter output, at most `Z·Σ|h|` for its kernel `h` (the ¼
    /// and ¾ kernels are `e ± o`; the input samples themselves count with 1), and
    /// [`refine`] raises a local maximum `b ≥ a, c ≥ 0` by `|c − a|/8 ≤ b/8`, so
    /// `B = 9/8 · max(Σ|h¼|, Σ|h½|, 1)`, raised by [`BOUND_MARGIN`] for rounding.
    fn stage2_bound(&self) -> f64 {
        let (mut quarter, mut mid) = (0.0f64, 0.0f64);
        for j in 0..STAGE2_TAPS / 2 {
            let (e, o) = (self.quarter_even[j] as f64, self.quarter_odd[j] as f64);
            quarter += (e + o).abs() + (e - o).abs();
            mid += 2.0 * (self.half[j] as f64).abs();
        }
        1.125 * quarter.max(mid).max(1.0) * (1.0 + BOUND_MARGIN)
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
        lim.skip_enabled = false;
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

    /// Skipping detector work under the bounds changes nothing: the same output, to the bit,
    /// as computing every peak, in both builds of the detector, for a signal that moves
    /// between silence, quiet, near-ceiling and limited passages, through a ceiling change.
    #[test]
    fn skipped_detector_work_changes_nothing() {
        for avx2 in [false, true] {
            for fs in [44_100.0, 96_000.0] {
                let len = 40_000;
                let (nl, nr) = (noise(len, 21), noise(len, 22));
                let level = |i: usize| 3.0 * (i as f32 / 5000.0).sin().powi(6);
                let l: Vec<f32> = (0..len)
                    .map(|i| level(i) * (0.7 * (i as f32 * 0.03).sin() + 0.3 * nl[i]))
                    .collect();
                let r: Vec<f32> = (0..len)
                    .map(|i| level(i + 900) * (0.6 * (i as f32 * 0.011).sin() + 0.4 * nr[i]))
                    .collect();
                let mut outs = Vec::new();
                let mut skipped = [0; 2];
                for skip in [true, false] {
                    let mut lim = limiter(fs, &settings(-1.0));
                    lim.use_avx2 = avx2 && avx2_fma_available();
                    lim.skip_enabled = skip;
                    let (mut l, mut r) = (l.clone(), r.clone());
                    for (i, (lb, rb)) in l.chunks_mut(100).zip(r.chunks_mut(100)).enumerate() {
                        if i == 210 {
                            lim.set_settings(&settings(-4.0));
                        }
                        lim.process(lb, rb);
                    }
                    outs.push((l, r));
                    if skip {
                        skipped = lim.skipped;
                    }
                }
                // Both kinds of skip happened, and changed nothing.
                assert!(skipped[0] > 20 && skipped[1] > 20, "{skipped:?}");
                assert!(outs[0] == outs[1], "avx2 {avx2}, {fs} Hz");
            }
        }
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
            let q = quantize(g as f64);
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
