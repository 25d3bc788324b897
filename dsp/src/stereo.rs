//! Stereo width (mid/side), mono bass and balance.
//!
//! ```text
//! M = (L + R)/2,   S = (L − R)/2
//! mono bass:  S ← LR4_HP(S),  M ← AP(M)       (Linkwitz–Riley 24 dB/oct at the crossover)
//! width:      S ← width·S                      (0 = mono, 1 = unchanged, 2 = double side)
//! L' = M + S,  R' = M − S
//! balance:    L'' = √2·cos θ·L',  R'' = √2·sin θ·R',   θ = (balance + 1)·π/4
//! ```
//!
//! **Mono bass.** The side signal goes through the LR4 high-pass (two Butterworth sections,
//! [`Coefficients::linkwitz_riley_highpass`]) and its low part is dropped. Because
//! `LR4_LP + LR4_HP = AP` (the 2nd-order all-pass, [`Coefficients::linkwitz_riley_allpass`]),
//! the mid signal goes through that all-pass: above the crossover M and S then carry the same
//! phase (a left-only signal stays left-only), and a mono signal (S = 0) comes out with a flat
//! magnitude. Below the crossover the side is attenuated by the LR4 high-pass,
//! `|LR4_HP(f)| = 1/(1 + (fc/f)⁴)`: −48 dB at fc/4, −72 dB at fc/8.
//!
//! Switching mono bass on or off without a click or a bass dip: a plain crossfade between the
//! dry and the all-passed mid would cancel around the crossover (the all-pass is −180° there).
//! So the filters are engaged at a parked crossover of [`PARK_HZ`] (5 Hz, where the crossfade's
//! dip is below the audio band), faded in over [`RAMP_MS`], and the crossover is then swept to
//! its setting over [`XOVER_RAMP_MS`]; switching off runs the same steps backwards. Frequency
//! changes are swept in octaves, with coefficients redesigned every [`SEGMENT`] samples and
//! interpolated per sample (see [`crate::eq`]). The crossfade is `w·filtered + (1 − w)·dry`.
//!
//! **Balance** is a constant-power law normalised to unity at the centre: at 0 both gains are
//! exactly 1 (bit-transparent), `gL² + gR² = 2` everywhere, and at ±1 the remaining side is at
//! √2 (+3.01 dB), so a mono source keeps its power when panned hard. Width and balance ramp
//! linearly over [`RAMP_MS`].
//!
//! `enabled = false` moves every control to neutral (width 1, balance 0, mono bass off) through
//! the same ramps; neutral and settled, the processor is skipped and bit-transparent. No
//! correlation or other metering is done here (that lives in the meters).
//!
//! **Processing.** Frames are processed in `f64` in segments of [`SEGMENT`] samples counted
//! from the first active sample. The first high-pass section of the side and the mid all-pass
//! run side by side as the two lanes of one vector section ([`LaneCoefficients::pair`]), then
//! the second side section beside an identity that carries the mid along (exact: `1·x + 0`);
//! the two run as one [`SectionChain`] (AVX2 + FMA: both in one register, see
//! [`crate::biquad`]) between a mid/side pass and a pass back to left/right. Once nothing moves
//! (the usual state), a block takes a fused path: sanitising, mid/side, the crossover, width,
//! balance and the `f64 → f32` rounding in one loop over the frames (the crossover kernel's,
//! four frames at a time: see `biquad::skewed::Io`), the same arithmetic as the general path
//! (so which path a block takes never shows in the output). Tiny filter states are flushed (and a non-finite
//! state cleared) every `GRID` (128) samples.

#[cfg(target_arch = "x86_64")]
use crate::biquad::skewed::F32Io;
use crate::biquad::{
    Coefficients, GridProcessor, LaneCoefficients, Lanes, Section, SectionChain, process_in_grid,
};
use crate::eq::{RAMP_MS, SEGMENT, clamp_or};
use crate::settings::StereoSettings;
use crate::smoother::Smoother;

/// Crossover frequency (Hz) at which the mono-bass filters are engaged and released.
pub const PARK_HZ: f32 = 5.0;

/// Sweep time of the mono-bass crossover frequency, in ms (longer than [`RAMP_MS`]: sweeping
/// an all-pass moves the phase of the bass, and a slower sweep keeps that inaudible).
pub const XOVER_RAMP_MS: f32 = 50.0;

/// Samples per segment.
const SEG: usize = SEGMENT as usize;

/// Frames per block-processing cell (flushing and healing happen at its end).
const GRID: usize = 128;

/// Clamped [`StereoSettings`].
fn clamp_settings(s: &StereoSettings) -> StereoSettings {
    let d = StereoSettings::default();
    StereoSettings {
        enabled: s.enabled,
        width: clamp_or(s.width, 0.0, 2.0, d.width),
        mono_bass: s.mono_bass,
        mono_bass_hz: clamp_or(s.mono_bass_hz, 40.0, 300.0, d.mono_bass_hz),
        balance: clamp_or(s.balance, -1.0, 1.0, d.balance),
    }
}

/// Balance gains `(√2·cos θ, √2·sin θ)`, `θ = (balance + 1)·π/4`; exactly `(1, 1)` at 0.
pub fn balance_gains(balance: f32) -> (f32, f32) {
    if balance == 0.0 {
        return (1.0, 1.0);
    }
    let theta = (balance.clamp(-1.0, 1.0) as f64 + 1.0) * std::f64::consts::FRAC_PI_4;
    let g = std::f64::consts::SQRT_2;
    ((g * theta.cos()) as f32, (g * theta.sin()) as f32)
}

/// Width, mono bass and balance on a stereo signal.
#[derive(Debug, Clone)]
pub struct StereoProcessor {
    /// Sample rate in Hz.
    sample_rate: f32,
    /// Settings as last set (clamped).
    settings: StereoSettings,
    /// Side gain, 0..2, ramped per sample.
    width: Smoother,
    /// Balance, −1..1, ramped per sample.
    balance: Smoother,
    /// Balance gains `(left, right)` of the current balance value.
    balance_gains: (f32, f32),
    /// Mono bass requested.
    mono_bass: bool,
    /// Crossover in octaves (`log2 Hz`), ramped at the segment rate.
    log2_xover: Smoother,
    /// `log2` of the crossover setting (Hz), the sweep's destination while mono bass is on.
    log2_xover_setting: f32,
    /// Mono-bass filters running.
    engaged: bool,
    /// Weight of the filtered (mono-bass) path, 0..1, ramped per sample.
    fade: Smoother,
    /// First LR4 high-pass section on the side (lane 0) beside the LR4 all-pass on the mid
    /// (lane 1).
    xover: Section,
    /// Second LR4 high-pass section on the side (lane 0) beside an identity that passes the
    /// all-passed mid through (lane 1).
    side_hp2: Section,
    /// Position in the current segment, 0..16.
    seg_pos: usize,
    /// Position in the current [`GRID`] cell.
    grid_pos: usize,
}

impl StereoProcessor {
    /// A neutral processor at `sample_rate`.
    pub fn new(sample_rate: f32) -> Self {
        let d = StereoSettings::default();
        let seg_rate = sample_rate / SEGMENT as f32;
        let mut p = Self {
            sample_rate,
            settings: d,
            width: Smoother::new(1.0, RAMP_MS, sample_rate),
            balance: Smoother::new(0.0, RAMP_MS, sample_rate),
            balance_gains: (1.0, 1.0),
            mono_bass: false,
            log2_xover: Smoother::new(PARK_HZ.log2(), XOVER_RAMP_MS, seg_rate),
            log2_xover_setting: d.mono_bass_hz.log2(),
            engaged: false,
            fade: Smoother::new(0.0, RAMP_MS, sample_rate),
            xover: Section::new(LaneCoefficients::IDENTITY),
            side_hp2: Section::new(LaneCoefficients::IDENTITY),
            seg_pos: 0,
            grid_pos: 0,
        };
        p.set_settings(&d);
        p.reset();
        p
    }

    /// Changes the sample rate (not real-time safe): rebuilt with the current settings.
    pub fn set_sample_rate(&mut self, sample_rate: f32) {
        let s = self.settings;
        *self = Self::new(sample_rate);
        self.set_settings(&s);
        self.reset();
    }

    /// Sets new targets (clamped, ramped). Real-time safe.
    pub fn set_settings(&mut self, settings: &StereoSettings) {
        let s = clamp_settings(settings);
        self.settings = s;
        self.log2_xover_setting = s.mono_bass_hz.log2();
        let on = s.enabled;
        self.width.set_target(if on { s.width } else { 1.0 });
        self.balance.set_target(if on { s.balance } else { 0.0 });
        self.mono_bass = on && s.mono_bass;
    }

    /// Processing delay in samples (none).
    pub fn latency_samples(&self) -> usize {
        0
    }

    /// Clears the filter state and jumps every ramp to its target (mono bass fully engaged at
    /// its crossover, or off).
    pub fn reset(&mut self) {
        self.width.reset(self.width.target());
        self.balance.reset(self.balance.target());
        self.balance_gains = balance_gains(self.balance.value());
        self.engaged = self.mono_bass;
        let hz = if self.mono_bass {
            self.settings.mono_bass_hz
        } else {
            PARK_HZ
        };
        self.log2_xover.reset(hz.log2());
        self.fade.reset(if self.mono_bass { 1.0 } else { 0.0 });
        self.clear();
        self.design(0);
        self.seg_pos = 0;
        self.grid_pos = 0;
    }

    /// Clears the filter states.
    fn clear(&mut self) {
        self.xover.clear();
        self.side_hp2.clear();
    }

    /// True if `process` currently changes the signal.
    pub fn is_active(&self) -> bool {
        self.engaged
            || self.mono_bass
            || self.width.is_smoothing()
            || self.width.value() != 1.0
            || self.balance.is_smoothing()
            || self.balance.value() != 0.0
    }

    /// Designs the crossover for the current smoothed frequency, jumping (0) or ramping.
    fn design(&mut self, ramp_samples: u32) {
        let (fs, f) = (
            self.sample_rate as f64,
            self.log2_xover.value().exp2() as f64,
        );
        let hp = Coefficients::linkwitz_riley_highpass(fs, f);
        let ap = Coefficients::linkwitz_riley_allpass(fs, f);
        let (xover, hp2) = (
            LaneCoefficients::pair(&hp, &ap),
            LaneCoefficients::pair(&hp, &Coefficients::IDENTITY),
        );
        if ramp_samples == 0 {
            self.xover.jump(xover);
            self.side_hp2.jump(hp2);
        } else {
            self.xover.ramp_to(xover, ramp_samples);
            self.side_hp2.ramp_to(hp2, ramp_samples);
        }
    }

    /// Segment start: the mono-bass engage/sweep/release sequence and the crossover ramp.
    fn begin_segment(&mut self) {
        let park = PARK_HZ.log2();
        if self.mono_bass {
            if !self.engaged {
                self.engaged = true;
                self.clear();
                self.log2_xover.reset(park);
                self.design(0);
                self.fade.reset(0.0);
            }
            self.fade.set_target(1.0);
            if !self.fade.is_smoothing() {
                self.log2_xover.set_target(self.log2_xover_setting);
            }
        } else if self.engaged {
            self.log2_xover.set_target(park);
            if !self.log2_xover.is_smoothing() {
                self.fade.set_target(0.0);
                if !self.fade.is_smoothing() && self.fade.value() == 0.0 {
                    self.engaged = false;
                }
            }
        }
        if self.engaged && self.log2_xover.is_smoothing() {
            self.log2_xover.tick();
            self.design(SEGMENT);
        }
    }

    /// True if a segment start would change nothing: mono bass fully engaged at its crossover,
    /// or fully disengaged.
    fn is_stable(&self) -> bool {
        if self.mono_bass {
            self.engaged
                && self.fade.target() == 1.0
                && !self.fade.is_smoothing()
                && !self.log2_xover.is_smoothing()
                && self.log2_xover.target() == self.log2_xover_setting
        } else {
            !self.engaged
        }
    }

    /// Processes a stereo block in place (the shorter length of the two). Input is sanitised
    /// while active; neutral and settled, the buffers are left untouched.
    pub fn process(&mut self, left: &mut [f32], right: &mut [f32]) {
        if !self.is_active() {
            self.seg_pos = 0;
            self.grid_pos = 0;
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if self.is_steady() && crate::util::avx2_fma_available() {
            // SAFETY: AVX2 and FMA are available.
            unsafe { self.process_steady(left, right) };
            return;
        }
        process_in_grid::<GRID, _>(self, left, right);
    }

    /// True if nothing moves until the next settings change: no ramp, no smoothing, mono
    /// bass fully engaged at its crossover (fade exactly 1) or fully off.
    fn is_steady(&self) -> bool {
        !self.fade.is_smoothing()
            && !self.width.is_smoothing()
            && !self.balance.is_smoothing()
            && !self.xover.is_ramping()
            && self.is_stable()
            && (!self.engaged || self.fade.value() == 1.0)
    }

    /// [`StereoProcessor::process`] while [`StereoProcessor::is_steady`], with the mid/side
    /// conversions fused into the loading and storing of the `f32` samples (no other pass over
    /// the frames). The same arithmetic as the general path, so the output is bit-identical to
    /// it (the choice of path depends on where blocks start).
    ///
    /// # Safety
    /// AVX2 and FMA must be available.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn process_steady(&mut self, left: &mut [f32], right: &mut [f32]) {
        let n = left.len().min(right.len());
        let width = self.width.value() as f64;
        let gains = [self.balance_gains.0 as f64, self.balance_gains.1 as f64];
        let mut i = 0;
        while i < n {
            let pos = self.grid_pos.min(GRID - 1);
            let len = (n - i).min(GRID - pos);
            let (l, r) = (&mut left[i..i + len], &mut right[i..i + len]);
            // SAFETY: AVX2 and FMA are available.
            unsafe {
                if self.engaged {
                    // Sanitising, mid/side, the crossover, width/balance and rounding in one
                    // loop over the frames: the crossover alone is bound by its recursion's
                    // latency, so the conversions run in its shadow.
                    let mut io = F32Io::<true>::new(l, r, width, gains);
                    let mut chain = SectionChain::new();
                    chain.push(&mut self.xover);
                    chain.push(&mut self.side_hp2);
                    chain.process_io(&mut io, len);
                } else {
                    simd::width_balance_f32(l, r, width, gains);
                }
            }
            self.seg_pos = (self.seg_pos + len) % SEG;
            i += len;
            if pos + len == GRID {
                self.grid_pos = 0;
                self.end_cell();
            } else {
                self.grid_pos = pos + len;
            }
        }
    }

    /// Frames with the mono-bass filters running: mid/side, the crossover sections as one
    /// [`SectionChain`] (side high-pass beside mid all-pass, then side high-pass beside an
    /// identity), then the mix back to left/right. `fading`: the filtered path is mixed with
    /// the dry one (otherwise it replaces it: the fade is exactly 1); `smooth`: the fade, width
    /// or balance is moving (ticked per sample).
    fn run_engaged(&mut self, buf: &mut [Lanes], fading: bool, smooth: bool) {
        // Side on lane 0 (the high-pass lane), mid on lane 1 (the all-pass lane).
        to_side_mid(buf);
        if fading {
            let mut dry = [[0.0f64; 2]; GRID];
            let dry = &mut dry[..buf.len().min(GRID)];
            dry.copy_from_slice(&buf[..dry.len()]);
            self.crossover(buf);
            self.mix_out::<true, true>(buf, dry);
        } else {
            self.crossover(buf);
            if smooth {
                self.mix_out::<false, true>(buf, &[]);
            } else {
                let (gl, gr) = self.balance_gains;
                from_side_mid(buf, self.width.value() as f64, [gl as f64, gr as f64]);
            }
        }
    }

    /// The crossover sections over `[side, mid]` frames.
    fn crossover(&mut self, buf: &mut [Lanes]) {
        let mut chain = SectionChain::new();
        chain.push(&mut self.xover);
        chain.push(&mut self.side_hp2);
        chain.process(buf);
    }

    /// `[side, mid]` frames back to left/right with width and balance; `FADING`: the filtered
    /// `buf` is crossfaded with `dry` by the fade (per sample), `SMOOTH`: the fade, width and
    /// balance tick per sample.
    #[inline(always)]
    fn mix_out<const FADING: bool, const SMOOTH: bool>(
        &mut self,
        buf: &mut [Lanes],
        dry: &[Lanes],
    ) {
        let mut fade = self.fade.value() as f64;
        let mut width = self.width.value() as f64;
        let (mut gl, mut gr) = (self.balance_gains.0 as f64, self.balance_gains.1 as f64);
        for (k, x) in buf.iter_mut().enumerate() {
            let [mut side, mut mid] = *x;
            if FADING {
                if SMOOTH {
                    fade = self.fade.tick() as f64;
                }
                let [side_dry, mid_dry] = dry[k.min(dry.len() - 1)];
                mid = fade * mid + (1.0 - fade) * mid_dry;
                side = fade * side + (1.0 - fade) * side_dry;
            }
            if SMOOTH {
                width = self.width.tick() as f64;
                if self.balance.is_smoothing() {
                    self.balance_gains = balance_gains(self.balance.tick());
                    (gl, gr) = (self.balance_gains.0 as f64, self.balance_gains.1 as f64);
                }
            }
            side *= width;
            *x = [(mid + side) * gl, (mid - side) * gr];
        }
    }

    /// Frames without the mono-bass filters while width or balance move (ticked per sample;
    /// settled, [`width_balance`] does the same with constants).
    fn run_dry_smooth(&mut self, buf: &mut [Lanes]) {
        let (mut gl, mut gr) = (self.balance_gains.0 as f64, self.balance_gains.1 as f64);
        for x in buf.iter_mut() {
            let mid = 0.5 * (x[0] + x[1]);
            let mut side = 0.5 * (x[0] - x[1]);
            let width = self.width.tick() as f64;
            if self.balance.is_smoothing() {
                self.balance_gains = balance_gains(self.balance.tick());
                (gl, gr) = (self.balance_gains.0 as f64, self.balance_gains.1 as f64);
            }
            side *= width;
            *x = [(mid + side) * gl, (mid - side) * gr];
        }
    }
}

impl GridProcessor for StereoProcessor {
    fn is_active(&self) -> bool {
        StereoProcessor::is_active(self)
    }

    fn grid_pos(&mut self) -> &mut usize {
        &mut self.grid_pos
    }

    fn process_frames(&mut self, buf: &mut [Lanes]) {
        let mut i = 0;
        while i < buf.len() {
            if self.seg_pos == 0 {
                self.begin_segment();
            }
            let smooth = self.fade.is_smoothing()
                || self.width.is_smoothing()
                || self.balance.is_smoothing();
            let ramp = self.xover.is_ramping();
            // Settled: the following segment starts would change nothing, so one run goes to
            // the end of the frames.
            let n = if !smooth && !ramp && self.is_stable() {
                buf.len() - i
            } else {
                (buf.len() - i).min(SEG - self.seg_pos)
            };
            let part = &mut buf[i..i + n];
            // Engaged and settled, the fade is exactly 1 (or 0 for one segment on the way out,
            // which takes the general path).
            let fading = smooth || self.fade.value() != 1.0;
            match (self.engaged, smooth) {
                (true, _) => self.run_engaged(part, fading, smooth),
                (false, false) => {
                    let (gl, gr) = self.balance_gains;
                    width_balance(part, self.width.value() as f64, [gl as f64, gr as f64]);
                }
                (false, true) => self.run_dry_smooth(part),
            }
            self.seg_pos = (self.seg_pos + n) % SEG;
            i += n;
        }
    }

    /// Flushes tiny filter states; clears them if one is not finite.
    fn end_cell(&mut self) {
        for s in [&mut self.xover, &mut self.side_hp2] {
            s.state_mut().flush();
        }
        if !self.xover.state().is_finite() || !self.side_hp2.state().is_finite() {
            self.clear();
        }
    }
}

/// `[l, r]` frames to `[side, mid] = [(l − r)/2, (l + r)/2]`.
fn to_side_mid(buf: &mut [Lanes]) {
    #[cfg(target_arch = "x86_64")]
    if crate::util::avx2_fma_available() {
        // SAFETY: AVX2 is available.
        unsafe { simd::to_side_mid(buf) };
        return;
    }
    for x in buf.iter_mut() {
        *x = [0.5 * (x[0] - x[1]), 0.5 * (x[0] + x[1])];
    }
}

/// `[side, mid]` frames back to `[(mid + width·side)·gains[0], (mid − width·side)·gains[1]]`.
fn from_side_mid(buf: &mut [Lanes], width: f64, gains: [f64; 2]) {
    #[cfg(target_arch = "x86_64")]
    if crate::util::avx2_fma_available() {
        // SAFETY: AVX2 is available.
        unsafe { simd::from_side_mid(buf, width, gains) };
        return;
    }
    for x in buf.iter_mut() {
        let [side, mid] = *x;
        let side = side * width;
        *x = [(mid + side) * gains[0], (mid - side) * gains[1]];
    }
}

/// Width and balance on `[l, r]` frames: `side = width·(l − r)/2`, `mid = (l + r)/2`, then
/// `[(mid + side)·gains[0], (mid − side)·gains[1]]`.
fn width_balance(buf: &mut [Lanes], width: f64, gains: [f64; 2]) {
    #[cfg(target_arch = "x86_64")]
    if crate::util::avx2_fma_available() {
        // SAFETY: AVX2 is available.
        unsafe { simd::width_balance(buf, width, gains) };
        return;
    }
    for x in buf.iter_mut() {
        let mid = 0.5 * (x[0] + x[1]);
        let side = 0.5 * (x[0] - x[1]) * width;
        *x = [(mid + side) * gains[0], (mid - side) * gains[1]];
    }
}

/// AVX2 versions of the three mid/side passes, two frames per register. Why: the compiler
/// keeps the frame-wise shuffles of these loops scalar (about 4 cycles per frame, as much as
/// the crossover itself). Each lane computes exactly what the portable loop does (addition is
/// commutative and negation exact in IEEE arithmetic: `r + l = l + r`, `w·(−s) = −(w·s)`,
/// `m + (−a) = m − a`), so both give the same bits.
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::Lanes;
    use crate::biquad::convert::sanitize4;
    use crate::biquad::sanitize_branchless;
    use std::arch::x86_64::*;

    /// Sanitise, width and balance on `f32` samples in place, as [`crate::biquad::load_sanitized`],
    /// [`super::width_balance`] and [`crate::biquad::store_lanes`] give them, four frames at a
    /// time.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn width_balance_f32(
        left: &mut [f32],
        right: &mut [f32],
        width: f64,
        gains: [f64; 2],
    ) {
        let n = left.len().min(right.len());
        let quads = n / 4;
        let (half, w) = (_mm256_set1_pd(0.5), _mm256_set1_pd(width));
        let (gl, gr) = (_mm256_set1_pd(gains[0]), _mm256_set1_pd(gains[1]));
        for q in 0..quads {
            let i = 4 * q;
            // SAFETY: frames i..i + 4 are in bounds of both slices.
            unsafe {
                let l = _mm256_cvtps_pd(sanitize4(_mm_loadu_ps(left.as_ptr().add(i))));
                let r = _mm256_cvtps_pd(sanitize4(_mm_loadu_ps(right.as_ptr().add(i))));
                let mid = _mm256_mul_pd(half, _mm256_add_pd(l, r));
                let side = _mm256_mul_pd(_mm256_mul_pd(half, _mm256_sub_pd(l, r)), w);
                let l = _mm256_mul_pd(_mm256_add_pd(mid, side), gl);
                let r = _mm256_mul_pd(_mm256_sub_pd(mid, side), gr);
                _mm_storeu_ps(left.as_mut_ptr().add(i), _mm256_cvtpd_ps(l));
                _mm_storeu_ps(right.as_mut_ptr().add(i), _mm256_cvtpd_ps(r));
            }
        }
        for i in 4 * quads..n {
            let (l, r) = (
                sanitize_branchless(left[i]) as f64,
                sanitize_branchless(right[i]) as f64,
            );
            let mid = 0.5 * (l + r);
            let side = 0.5 * (l - r) * width;
            left[i] = ((mid + side) * gains[0]) as f32;
            right[i] = ((mid - side) * gains[1]) as f32;
        }
    }

    /// See [`super::to_side_mid`].
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn to_side_mid(buf: &mut [Lanes]) {
        let pairs = buf.len() / 2;
        let p = buf.as_mut_ptr() as *mut f64;
        let half = _mm256_set1_pd(0.5);
        for k in 0..pairs {
            // SAFETY: frames 2k, 2k + 1 are in bounds.
            unsafe {
                let x = _mm256_loadu_pd(p.add(4 * k));
                let t = _mm256_permute_pd::<0b0101>(x);
                // [l − r, r + l] per frame.
                let v = _mm256_blend_pd::<0b1010>(_mm256_sub_pd(x, t), _mm256_add_pd(x, t));
                _mm256_storeu_pd(p.add(4 * k), _mm256_mul_pd(half, v));
            }
        }
        for x in buf[2 * pairs..].iter_mut() {
            *x = [0.5 * (x[0] - x[1]), 0.5 * (x[0] + x[1])];
        }
    }

    /// See [`super::from_side_mid`].
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn from_side_mid(buf: &mut [Lanes], width: f64, gains: [f64; 2]) {
        let pairs = buf.len() / 2;
        let p = buf.as_mut_ptr() as *mut f64;
        let w = _mm256_setr_pd(width, -width, width, -width);
        let g = _mm256_setr_pd(gains[0], gains[1], gains[0], gains[1]);
        for k in 0..pairs {
            // SAFETY: frames 2k, 2k + 1 are in bounds.
            unsafe {
                let x = _mm256_loadu_pd(p.add(4 * k));
                // [w·s, −w·s] + [m, m].
                let side = _mm256_mul_pd(_mm256_movedup_pd(x), w);
                let mid = _mm256_permute_pd::<0b1111>(x);
                _mm256_storeu_pd(p.add(4 * k), _mm256_mul_pd(_mm256_add_pd(mid, side), g));
            }
        }
        for x in buf[2 * pairs..].iter_mut() {
            let [side, mid] = *x;
            let side = side * width;
            *x = [(mid + side) * gains[0], (mid - side) * gains[1]];
        }
    }

    /// See [`super::width_balance`].
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn width_balance(buf: &mut [Lanes], width: f64, gains: [f64; 2]) {
        let pairs = buf.len() / 2;
        let p = buf.as_mut_ptr() as *mut f64;
        let (half, w) = (_mm256_set1_pd(0.5), _mm256_set1_pd(width));
        let g = _mm256_setr_pd(gains[0], gains[1], gains[0], gains[1]);
        for k in 0..pairs {
            // SAFETY: frames 2k, 2k + 1 are in bounds.
            unsafe {
                let x = _mm256_loadu_pd(p.add(4 * k));
                let t = _mm256_permute_pd::<0b0101>(x);
                // mid = (l + r)/2 on both lanes; side = w·(l − r)/2 on lane 0, its negative on
                // lane 1.
                let mid = _mm256_mul_pd(half, _mm256_add_pd(x, t));
                let side = _mm256_mul_pd(_mm256_mul_pd(half, _mm256_sub_pd(x, t)), w);
                _mm256_storeu_pd(p.add(4 * k), _mm256_mul_pd(_mm256_add_pd(mid, side), g));
            }
        }
        for x in buf[2 * pairs..].iter_mut() {
            let mid = 0.5 * (x[0] + x[1]);
            let side = 0.5 * (x[0] - x[1]) * width;
            *x = [(mid + side) * gains[0], (mid - side) * gains[1]];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::biquad::test_support::*;

    impl TestProcessor for StereoProcessor {
        type Settings = StereoSettings;
        fn create(fs: f32) -> Self {
            Self::new(fs)
        }
        fn apply(&mut self, s: &StereoSettings) {
            self.set_settings(s);
        }
        fn settle(&mut self) {
            self.reset();
        }
        fn run(&mut self, l: &mut [f32], r: &mut [f32]) {
            self.process(l, r);
        }
    }

    fn mono_bass(hz: f32) -> StereoSettings {
        StereoSettings {
            mono_bass: true,
            mono_bass_hz: hz,
            ..StereoSettings::default()
        }
    }

    /// Steady-state amplitudes `(left, right)` of a sine through a settled processor.
    fn steady(fs: f32, s: &StereoSettings, f: f64, amp_l: f64, amp_r: f64) -> (f64, f64) {
        // Long enough for the LR4 at 40 Hz to settle at 20 Hz.
        let settle = (0.5 * fs) as usize;
        let len = settle + (0.1 * fs) as usize;
        let l = sine(f, fs as f64, amp_l, 0, len);
        let r = sine(f, fs as f64, amp_r, 0, len);
        let (yl, yr) = render::<StereoProcessor>(fs, (&l, &r), 512, s, |_| *s);
        (
            sine_amplitude(&yl[settle..], f, fs as f64, settle),
            sine_amplitude(&yr[settle..], f, fs as f64, settle),
        )
    }

    #[test]
    fn neutral_is_bit_transparent() {
        let mut rng = Rng(21);
        let x = rng.noise(1.0, 8000);
        let y = rng.noise(1.0, 8000);
        let disabled = StereoSettings {
            enabled: false,
            width: 1.7,
            mono_bass: true,
            balance: -0.4,
            ..StereoSettings::default()
        };
        for s in [StereoSettings::default(), disabled] {
            for block in [1, 100, 8000] {
                let out = render::<StereoProcessor>(48_000.0, (&x, &y), block, &s, |_| s);
                assert!(out.0 == x && out.1 == y);
            }
        }
        assert_eq!(StereoProcessor::new(48_000.0).latency_samples(), 0);
    }

    /// L' = M + w·S, R' = M − w·S sample by sample.
    #[test]
    fn width_scales_the_side() {
        let mut rng = Rng(8);
        let x = rng.noise(0.5, 4000);
        let y = rng.noise(0.5, 4000);
        for w in [0.0f32, 0.5, 1.5, 2.0] {
            let s = StereoSettings {
                width: w,
                ..StereoSettings::default()
            };
            let (l, r) = render::<StereoProcessor>(48_000.0, (&x, &y), 256, &s, |_| s);
            for i in 0..x.len() {
                let (m, sd) = (0.5 * (x[i] + y[i]), 0.5 * (x[i] - y[i]));
                assert!((l[i] - (m + w * sd)).abs() < 1e-6);
                assert!((r[i] - (m - w * sd)).abs() < 1e-6);
            }
        }
    }

    /// With mono bass on, a mono signal is passed flat (±0.1 dB) from 20 Hz to 20 kHz.
    #[test]
    fn mono_bass_sums_flat_for_mono_signals() {
        let mut worst = 0.0f64;
        for fs in [44_100.0, 192_000.0] {
            for hz in [40.0, 120.0, 300.0] {
                for f in [20.0, 50.0, 100.0, 120.0, 200.0, 300.0, 1000.0, 20_000.0] {
                    let (l, r) = steady(fs, &mono_bass(hz), f, 0.5, 0.5);
                    for a in [l, r] {
                        let db = 20.0 * (a / 0.5).log10();
                        worst = worst.max(db.abs());
                        assert!(db.abs() < 0.1, "fs {fs} xover {hz} f {f}: {db}");
                    }
                }
            }
        }
        eprintln!("mono sum worst deviation {worst:.5} dB");
    }

    /// A pure side signal well below the crossover is removed: at fc/8 the LR4 high-pass gives
    /// −20·log10(1 + 8⁴) = −72 dB (at fc/4 only −48 dB, hence the lower test frequency);
    /// require ≤ −60 dB and agreement with the analytic response.
    #[test]
    fn side_below_crossover_is_removed() {
        let fs = 48_000.0;
        for hz in [40.0, 120.0, 300.0] {
            let f = hz as f64 / 8.0;
            let (l, r) = steady(fs, &mono_bass(hz), f, 0.5, -0.5);
            let db = 20.0 * (l.max(r) / 0.5).log10();
            let hp = Coefficients::linkwitz_riley_highpass(fs as f64, hz as f64);
            let expect = 2.0 * hp.magnitude_db(f, fs as f64);
            eprintln!("xover {hz}: side at fc/8 {db:.1} dB (analytic {expect:.1})");
            assert!(db <= -60.0, "{hz}: {db}");
            assert!((db - expect).abs() < 1.0, "{db} vs {expect}");
        }
    }

    /// Above the crossover a left-only signal stays left-only (the mid all-pass matches the
    /// side high-pass's phase): right leakage ≤ −60 dB at 8·fc (analytically −72 dB). Without the
    /// all-pass it would be `|1 − AP(8·fc)| / |1 + AP(8·fc)|` ≈ −13 dB.
    #[test]
    fn left_only_stays_left_above_crossover() {
        let fs = 48_000.0;
        for hz in [40.0, 120.0, 300.0] {
            let f = 8.0 * hz as f64;
            let (l, r) = steady(fs, &mono_bass(hz), f, 0.5, 0.0);
            let leak = 20.0 * (r / l).log10();
            assert!(leak <= -60.0, "{hz}: right leakage {leak} dB");
            assert!((20.0 * (l / 0.5).log10()).abs() < 0.01);
        }
    }

    #[test]
    fn balance_is_unity_at_centre_and_constant_power() {
        assert_eq!(balance_gains(0.0), (1.0, 1.0));
        for b in [-1.0f32, -0.7, -0.2, 0.3, 0.9, 1.0] {
            let (gl, gr) = balance_gains(b);
            assert!((gl * gl + gr * gr - 2.0).abs() < 1e-5, "{b}");
            assert!((b > 0.0 && gl < 1.0 && gr > 1.0) || (b < 0.0 && gl > 1.0 && gr < 1.0));
        }
        let (gl, gr) = balance_gains(1.0);
        assert!(gl.abs() < 1e-7 && (gr - std::f32::consts::SQRT_2).abs() < 1e-6);
        // Measured through the processor.
        let s = StereoSettings {
            balance: 0.5,
            ..StereoSettings::default()
        };
        let (l, r) = steady(48_000.0, &s, 1000.0, 0.5, 0.5);
        let (gl, gr) = balance_gains(0.5);
        assert!((l / 0.5 - gl as f64).abs() < 1e-4 && (r / 0.5 - gr as f64).abs() < 1e-4);
    }

    /// Steps on width, balance, crossover, mono bass and bypass, at block sizes 1 and 512.
    #[test]
    fn automation_never_clicks() {
        let fs = 48_000.0;
        let at = 24_576;
        let len = at + 14_400;
        let base = StereoSettings {
            width: 1.4,
            balance: -0.2,
            ..mono_bass(120.0)
        };
        type Case = (
            &'static str,
            fn(&mut StereoSettings),
            fn(&mut StereoSettings),
            f64,
        );
        let cases: [Case; 8] = [
            ("width", |_| {}, |s| s.width = 0.0, 1000.0),
            ("width up", |s| s.width = 0.0, |s| s.width = 2.0, 1000.0),
            ("balance", |_| {}, |s| s.balance = 1.0, 1000.0),
            ("xover", |_| {}, |s| s.mono_bass_hz = 300.0, 200.0),
            (
                "xover down",
                |s| s.mono_bass_hz = 300.0,
                |s| s.mono_bass_hz = 40.0,
                200.0,
            ),
            ("mono bass off", |_| {}, |s| s.mono_bass = false, 60.0),
            (
                "mono bass on",
                |s| s.mono_bass = false,
                |s| s.mono_bass = true,
                60.0,
            ),
            ("bypass", |_| {}, |s| s.enabled = false, 60.0),
        ];
        let mut worst = 0.0f32;
        for (name, from_fn, to_fn, f) in cases {
            // Mostly left, some right, out of phase in part: mid and side both present.
            let l = sine(f, fs as f64, 0.5, 0, len);
            let r = sine(f, fs as f64, 0.2, (fs as f64 / f / 3.0) as usize, len);
            let (mut from, mut to) = (base, base);
            from_fn(&mut from);
            from_fn(&mut to);
            to_fn(&mut to);
            for block in [1, 512] {
                let rep =
                    click_report::<StereoProcessor>(fs, (&l, &r), block, &from, &to, at, 9600);
                worst = worst.max(rep.ratio());
                assert!(rep.ratio() <= 1.05, "{name} block {block}: {rep:?}");
            }
        }
        eprintln!("worst click ratio {worst:.4}");
    }

    /// Switching mono bass off settles back to bit-transparent.
    #[test]
    fn mono_bass_off_settles_bit_transparent() {
        let mut rng = Rng(4);
        let x = rng.noise(0.5, 20_000);
        let y = rng.noise(0.5, 20_000);
        let on = mono_bass(120.0);
        let off = StereoSettings::default();
        let at = 4096;
        let (l, r) =
            render::<StereoProcessor>(
                48_000.0,
                (&x, &y),
                64,
                &on,
                |n| if n < at { on } else { off },
            );
        // 50 ms sweep down + 20 ms fade (+ a segment): settled well within 100 ms.
        let settled = at + 4800;
        assert!(l[settled..] == x[settled..] && r[settled..] == y[settled..]);
        assert!(l[..at] != x[..at]);
    }

    /// Random settings every 64 samples at every rate: finite, bounded output (width ≤ 2 and
    /// balance ≤ √2 bound the gain to about 3 on top of the crossover's small overshoot).
    #[test]
    fn stable_under_random_automation() {
        let mut rng = Rng(78);
        for fs in [44_100.0f32, 48_000.0, 96_000.0, 192_000.0] {
            let x = rng.noise(0.5, fs as usize / 4);
            let y = rng.noise(0.5, fs as usize / 4);
            let list: Vec<StereoSettings> = (0..x.len() / 64 + 1)
                .map(|_| StereoSettings {
                    enabled: rng.next_f64() < 0.9,
                    width: rng.range(0.0, 2.0) as f32,
                    mono_bass: rng.next_f64() < 0.6,
                    mono_bass_hz: rng.log_range(40.0, 300.0) as f32,
                    balance: rng.range(-1.0, 1.0) as f32,
                })
                .collect();
            let (l, r) = render::<StereoProcessor>(fs, (&x, &y), 64, &list[0], |n| list[n / 64]);
            let peak = l.iter().chain(&r).fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(peak.is_finite() && peak < 3.0, "fs {fs}: peak {peak}");
        }
    }

    /// Random automation every 640 samples (mono bass engaging and releasing, sweeps, width
    /// and balance ramps) gives bit-identical output at every block size.
    #[test]
    fn output_is_bit_identical_for_any_block_size() {
        let blocks = [640, 1, 5, 16, 64, 128, 320];
        let mut rng = Rng(0x5733);
        let fs = 48_000.0;
        let x = rng.noise(0.5, 25_600);
        let y = rng.noise(0.5, 25_600);
        let list: Vec<StereoSettings> = (0..40)
            .map(|_| StereoSettings {
                enabled: rng.next_f64() < 0.9,
                width: if rng.next_f64() < 0.5 {
                    1.0
                } else {
                    rng.range(0.0, 2.0) as f32
                },
                mono_bass: rng.next_f64() < 0.6,
                mono_bass_hz: rng.log_range(40.0, 300.0) as f32,
                balance: if rng.next_f64() < 0.5 {
                    0.0
                } else {
                    rng.range(-1.0, 1.0) as f32
                },
            })
            .collect();
        assert_block_size_independent::<StereoProcessor>(fs, (&x, &y), &blocks, &list[0], |n| {
            list[n / 640]
        });
    }

    /// NaN and ±Inf: finite output, identical to feeding silence.
    #[test]
    fn nan_and_inf_act_as_silence() {
        let fs = 48_000.0;
        let clean = sine(80.0, fs as f64, 0.5, 0, 16_384);
        let other = sine(80.0, fs as f64, 0.3, 100, 16_384);
        let (mut bad, mut silent) = (clean.clone(), clean.clone());
        for (i, v) in bad[8192..8492].iter_mut().enumerate() {
            *v = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][i % 3];
        }
        silent[8192..8492].fill(0.0);
        let s = StereoSettings {
            width: 1.5,
            balance: 0.3,
            ..mono_bass(120.0)
        };
        let out = render::<StereoProcessor>(fs, (&bad, &other), 512, &s, |_| s);
        let reference = render::<StereoProcessor>(fs, (&silent, &other), 512, &s, |_| s);
        assert!(out.0.iter().chain(&out.1).all(|v| v.is_finite()));
        assert!(out == reference);
    }
}
