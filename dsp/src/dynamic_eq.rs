//! Dynamic EQ band: a bell whose cut follows the level in its own band (feed-forward).
//!
//! ```text
//! band signal   b = BP(x)                  RBJ band-pass, 0 dB peak, same freq/Q as the bell
//! power         p = (b_L² + b_R²)/2        stereo-linked (mean of the channels), per sample
//! mean square   m += (1 − c_rms)·(p − m)   one pole per sample, τ_rms = 2 periods of f0,
//!                                          1..20 ms; evaluated once per segment of N = 16:
//!                                          m_N = c^N·m_0 + Σ_k (1 − c)·c^(N−1−k)·p_k
//! level         L = 10·log10(2·m)          dB re a full-scale sine (AES17: a sine of peak A
//!                                          reads 20·log10 A), once per segment
//! static cut    g = min(range, max(0, L − threshold)·(1 − 1/ratio))
//! envelope      c = g + a^N·(c − g),       a = attack pole if g > c, else release pole
//! bell          peaking(f0, Q, −c)         RBJ, redesigned every segment
//! ```
//!
//! The level's logarithm and the bell's `A = 10^(gain/40)` use the compressor's
//! [`fast_log2`]/[`fast_exp2`] (errors below 10⁻⁵ dB; 0 dB still gives exactly `A = 1`).
//!
//! The gain computer and smoothing follow Giannoulis, Massberg & Reiss, *Digital Dynamic Range
//! Compressor Design — A Tutorial and Analysis* (JAES 2012): static curve in dB, then the
//! branching attack/release smoother on the gain ("smooth branching, log domain"), so the steady
//! state is exactly the static curve and release is not slowed by the attack. The attack and
//! release times are one-pole time constants (63 % of a step, [`one_pole_coeff`]).
//!
//! **Segment rate.** The bell can only follow the cut once per segment (16 samples, its
//! coefficients interpolated per sample), so the level, the gain computer and the envelope run
//! once per segment too, at the end of it, with the per-sample poles raised to the 16th power:
//! for a level that is constant over a segment this is exactly the per-sample envelope. The
//! mean square still integrates every sample (the closed form above, a dot product with
//! precomputed weights, instead of a serial recursion), and its time constant (≥ 1 ms = 48
//! samples) makes it smooth at the segment rate. Per sample there is no logarithm and no
//! branch: two stereo sections (detector and bell) and a square.
//!
//! Below threshold the cut is exactly 0 dB, and a 0 dB RBJ bell is an exact identity, so the
//! signal passes bit for bit. The bell's coefficients follow the envelope once per segment,
//! i.e. with ≤ 16 samples of delay.
//!
//! Frequency and Q ramp in octaves, threshold/ratio/range ramp linearly ([`RAMP_MS`], at the
//! segment rate); switching the band on or off fades the cut in or out over [`RAMP_MS`]; once
//! off and settled the band is skipped entirely. Segments count samples from the moment the
//! band starts, so the block size never changes the output.

use crate::biquad::{
    Coefficients, GridProcessor, LaneCoefficients, Lanes, Section, Warp, process_in_grid,
};
use crate::compressor::{fast_exp2, fast_log2};
use crate::eq::{RAMP_MS, SEGMENT, clamp_or};
use crate::settings::DynEqSettings;
use crate::smoother::Smoother;
use crate::util::one_pole_coeff;

/// Band state below this (≈ −240 dBFS) counts as silent.
const IDLE_STATE: f64 = 1.0e-12;

/// Cuts smaller than this (dB) are flushed to exactly 0 dB.
const MIN_CUT_DB: f64 = 1.0e-6;

/// Smallest change of the bell's gain (dB) worth a redesign: the bell follows the cut in steps
/// of at least this much (each ramped over a segment), except that it always lands exactly on
/// 0 dB. A 0.05 dB step of a band's gain, spread over 16 samples, is far below audibility
/// (gain steps of ~0.2 dB are the smallest heard on steady tones, and only as level
/// differences); it spares the redesign (and the coefficient ramp) of most segments while the
/// cut releases slowly or hovers.
const BELL_STEP_DB: f64 = 0.05;

/// Samples per segment.
const SEG: usize = SEGMENT as usize;

/// Frames per block-processing cell (see [`crate::biquad::process_in_grid`]); a multiple of
/// the segment.
const GRID: usize = 8 * SEG;

/// `log2(10)/40`: `A = 10^(gain_db/40) = 2^(gain_db·log2(10)/40)`.
const LOG2_AMPLITUDE_PER_DB: f64 = std::f64::consts::LOG2_10 / 40.0;

/// `10·log10(2)`: dB of power per octave.
const DB_PER_LOG2_POWER: f64 = 10.0 * std::f64::consts::LOG10_2;

/// `max(a, b)` for non-NaN inputs without a branch (`maxsd` on x86-64: the second operand
/// unless the first is larger).
#[inline(always)]
fn max_f64(a: f64, b: f64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_cvtsd_f64, _mm_max_sd, _mm_set_sd};
        // SAFETY: SSE2 is part of the x86-64 baseline, always available.
        unsafe { _mm_cvtsd_f64(_mm_max_sd(_mm_set_sd(a), _mm_set_sd(b))) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    if a > b { a } else { b }
}

/// `min(a, b)` for non-NaN inputs without a branch (see [`max_f64`]).
#[inline(always)]
fn min_f64(a: f64, b: f64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_cvtsd_f64, _mm_min_sd, _mm_set_sd};
        // SAFETY: SSE2 is part of the x86-64 baseline, always available.
        unsafe { _mm_cvtsd_f64(_mm_min_sd(_mm_set_sd(a), _mm_set_sd(b))) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    if a < b { a } else { b }
}

/// Clamped [`DynEqSettings`].
fn clamp_settings(s: &DynEqSettings, sample_rate: f32) -> DynEqSettings {
    let d = DynEqSettings::default();
    DynEqSettings {
        enabled: s.enabled,
        freq_hz: clamp_or(
            s.freq_hz,
            20.0,
            20_000.0f32.min(0.45 * sample_rate),
            d.freq_hz,
        ),
        q: clamp_or(s.q, 0.1, 10.0, d.q),
        threshold_db: clamp_or(s.threshold_db, -60.0, 0.0, d.threshold_db),
        ratio: clamp_or(s.ratio, 1.0, 20.0, d.ratio),
        range_db: clamp_or(s.range_db, 0.0, 24.0, d.range_db),
        attack_ms: clamp_or(s.attack_ms, 0.1, 100.0, d.attack_ms),
        release_ms: clamp_or(s.release_ms, 10.0, 2000.0, d.release_ms),
    }
}

/// RMS time constant for a band at `freq_hz`: two periods, 1..20 ms.
fn rms_ms(freq_hz: f32) -> f32 {
    (2000.0 / freq_hz).clamp(1.0, 20.0)
}

/// Per-segment pole of a one-pole smoother with time constant `time_ms`: `a^N` for the
/// per-sample pole `a` of [`one_pole_coeff`].
fn segment_pole(time_ms: f32, sample_rate: f32) -> f64 {
    one_pole_coeff(time_ms, sample_rate / SEGMENT as f32) as f64
}

/// One dynamic EQ band on a stereo signal.
#[derive(Debug, Clone)]
pub struct DynamicEq {
    /// Sample rate in Hz.
    sample_rate: f32,
    /// Settings as last set (clamped).
    settings: DynEqSettings,
    /// Centre frequency in octaves (`log2 Hz`), ramped at the segment rate.
    log2_freq: Smoother,
    /// Q in `log2 Q`, ramped at the segment rate.
    log2_q: Smoother,
    /// Threshold in dB, −60..0, ramped at the segment rate.
    threshold_db: Smoother,
    /// Cut per dB over the threshold, `1 − 1/ratio` (0..0.95), ramped at the segment rate.
    slope: Smoother,
    /// Largest cut in dB, 0..24, ramped at the segment rate.
    range_db: Smoother,
    /// Band on (1) / off (0) fade, multiplies the cut; ramped at the segment rate.
    enable: Smoother,
    /// Attack pole of the cut envelope, per segment.
    attack_pole: f64,
    /// Release pole of the cut envelope, per segment.
    release_pole: f64,
    /// Weights `(1 − c)·c^(N−1−k)/2` of the segment's band powers in the mean square (`c`: the
    /// per-sample pole of the RMS detector; the ½ makes the power the mean of the channels).
    rms_weights: [f64; SEG],
    /// `c^N`: decay of the mean square over one segment.
    rms_decay: f64,
    /// Corner values of the current frequency and Q, shared by the detector and the bell.
    warp: Warp,
    /// Detector band-pass (coefficients and left/right state).
    detector: Section,
    /// Bell (coefficients and left/right state).
    bell: Section,
    /// Bell gain in dB the bell coefficients were last designed for (−cut·fade).
    bell_gain_db: f64,
    /// `b_L² + b_R²` of each sample from the start of the current segment.
    power: [f64; SEG + GRID],
    /// Mean square of the band signal (linear power), at the last segment end.
    mean_square: f64,
    /// Smoothed cut in dB (positive), before the enable fade.
    cut_db: f64,
    /// Position in the current segment, 0..16.
    seg_pos: usize,
    /// Position in the current [`GRID`] cell (block processing; segments run on their own).
    grid_pos: usize,
    /// False while the band is off and settled (skipped).
    active: bool,
    /// Current gain reduction in dB (positive).
    gr_db: f32,
    /// Largest gain reduction since the last [`DynamicEq::take_max_gain_reduction_db`].
    gr_max_db: f32,
}

impl DynamicEq {
    /// A switched-off band at `sample_rate`.
    pub fn new(sample_rate: f32) -> Self {
        let d = clamp_settings(&DynEqSettings::default(), sample_rate);
        let seg_rate = sample_rate / SEGMENT as f32;
        let mut eq = Self {
            sample_rate,
            settings: d,
            log2_freq: Smoother::new(d.freq_hz.log2(), RAMP_MS, seg_rate),
            log2_q: Smoother::new(d.q.log2(), RAMP_MS, seg_rate),
            threshold_db: Smoother::new(d.threshold_db, RAMP_MS, seg_rate),
            slope: Smoother::new(1.0 - 1.0 / d.ratio, RAMP_MS, seg_rate),
            range_db: Smoother::new(d.range_db, RAMP_MS, seg_rate),
            enable: Smoother::new(0.0, RAMP_MS, seg_rate),
            attack_pole: 0.0,
            release_pole: 0.0,
            rms_weights: [0.0; SEG],
            rms_decay: 0.0,
            warp: Warp::new(sample_rate as f64, d.freq_hz as f64, d.q as f64),
            detector: Section::new(LaneCoefficients::IDENTITY),
            bell: Section::new(LaneCoefficients::IDENTITY),
            bell_gain_db: 0.0,
            power: [0.0; SEG + GRID],
            mean_square: 0.0,
            cut_db: 0.0,
            seg_pos: 0,
            grid_pos: 0,
            active: false,
            gr_db: 0.0,
            gr_max_db: 0.0,
        };
        eq.set_settings(&d);
        eq.reset();
        eq
    }

    /// Changes the sample rate (not real-time safe): rebuilt with the current settings.
    pub fn set_sample_rate(&mut self, sample_rate: f32) {
        let s = self.settings;
        *self = Self::new(sample_rate);
        self.set_settings(&s);
        self.reset();
    }

    /// Sets new targets (clamped, continuous values ramped). Real-time safe.
    pub fn set_settings(&mut self, settings: &DynEqSettings) {
        let s = clamp_settings(settings, self.sample_rate);
        self.settings = s;
        self.log2_freq.set_target(s.freq_hz.log2());
        self.log2_q.set_target(s.q.log2());
        self.threshold_db.set_target(s.threshold_db);
        self.slope.set_target(1.0 - 1.0 / s.ratio);
        self.range_db.set_target(s.range_db);
        self.enable.set_target(if s.enabled { 1.0 } else { 0.0 });
        self.attack_pole = segment_pole(s.attack_ms, self.sample_rate);
        self.release_pole = segment_pole(s.release_ms, self.sample_rate);
        if !self.active {
            self.snap_smoothers();
        }
    }

    /// Jumps every smoother except the enable fade to its target.
    fn snap_smoothers(&mut self) {
        for s in [
            &mut self.log2_freq,
            &mut self.log2_q,
            &mut self.threshold_db,
            &mut self.slope,
            &mut self.range_db,
        ] {
            s.reset(s.target());
        }
    }

    /// Clears all state (envelope, detector, bell) and jumps every ramp to its target.
    pub fn reset(&mut self) {
        self.snap_smoothers();
        self.enable.reset(self.enable.target());
        self.restart();
        self.active = self.enable.target() > 0.0;
        self.gr_db = 0.0;
        self.gr_max_db = 0.0;
    }

    /// Clears the signal state, designs the filters for the current smoothed values and starts
    /// a new segment.
    fn restart(&mut self) {
        self.mean_square = 0.0;
        self.cut_db = 0.0;
        self.bell_gain_db = 0.0;
        self.seg_pos = 0;
        self.grid_pos = 0;
        self.update_warp();
        self.detector = Section::new(self.design_detector());
        self.bell = Section::new(self.design_bell());
    }

    /// Recomputes the corner values and the RMS detector weights for the current frequency and
    /// Q.
    fn update_warp(&mut self) {
        let f = self.log2_freq.value().exp2();
        self.warp = Warp::new(
            self.sample_rate as f64,
            f as f64,
            self.log2_q.value().exp2() as f64,
        );
        let c = one_pole_coeff(rms_ms(f), self.sample_rate) as f64;
        let mut g = 0.5 * (1.0 - c);
        for w in self.rms_weights.iter_mut().rev() {
            *w = g;
            g *= c;
        }
        self.rms_decay = c.powi(SEG as i32);
    }

    fn design_detector(&self) -> LaneCoefficients {
        LaneCoefficients::splat(&Coefficients::bandpass_warped(&self.warp))
    }

    fn design_bell(&self) -> LaneCoefficients {
        // 0 dB gives exactly A = 1 (an exact identity).
        let a = fast_exp2((self.bell_gain_db.clamp(-48.0, 48.0) * LOG2_AMPLITUDE_PER_DB) as f32);
        self.warp.peaking_lanes(a as f64)
    }

    /// Processing delay in samples (none).
    pub fn latency_samples(&self) -> usize {
        0
    }

    /// Current gain reduction of the band in dB (positive: 6.0 means the bell cuts 6 dB).
    pub fn gain_reduction_db(&self) -> f32 {
        self.gr_db
    }

    /// Largest gain reduction (dB, positive) since the previous call; the next period starts
    /// from the current value.
    pub fn take_max_gain_reduction_db(&mut self) -> f32 {
        let m = self.gr_max_db;
        self.gr_max_db = self.gr_db;
        m
    }

    /// Starts a segment: moves frequency/Q one segment (ramping the detector to the new
    /// design) and returns the bell design for the current cut when it changed.
    fn begin_segment(&mut self) -> Option<LaneCoefficients> {
        let moved = self.log2_freq.is_smoothing() || self.log2_q.is_smoothing();
        if moved {
            self.log2_freq.tick();
            self.log2_q.tick();
            self.update_warp();
            self.detector.ramp_to(self.design_detector(), SEGMENT);
        }
        let gain_db = -self.cut_db * self.enable.value() as f64;
        let changed = if gain_db == 0.0 {
            self.bell_gain_db != 0.0
        } else {
            (gain_db - self.bell_gain_db).abs() >= BELL_STEP_DB
        };
        if moved || changed {
            self.bell_gain_db = gain_db;
            Some(self.design_bell())
        } else {
            None
        }
    }

    /// End of a segment whose band powers are `power[start..start + 16]`: mean square, level,
    /// gain computer, envelope, meters.
    fn end_segment(&mut self, start: usize) {
        let start = start.min(GRID);
        let mut power = [0.0f64; SEG];
        power.copy_from_slice(&self.power[start..start + SEG]);
        // Four interleaved partial sums (a fixed order, so the result is deterministic).
        let mut acc = [0.0f64; 4];
        for k in (0..SEG).step_by(4) {
            for (j, a) in acc.iter_mut().enumerate() {
                *a += self.rms_weights[k + j] * power[k + j];
            }
        }
        let dot = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        self.mean_square = self.rms_decay * self.mean_square + dot;
        let level_db =
            DB_PER_LOG2_POWER * fast_log2((2.0 * self.mean_square + 1.0e-30) as f32) as f64;

        let threshold = self.threshold_db.tick() as f64;
        let slope = self.slope.tick() as f64;
        let range = self.range_db.tick() as f64;
        let fade = self.enable.tick();
        let target = ((level_db - threshold) * slope).clamp(0.0, range);
        // The attack pole if `target > cut`, else the release pole: both candidates, and the
        // rule picks the larger when the attack is the faster pole (it moves further up, the
        // release stays higher), the smaller otherwise (as in the compressor's detector). No
        // branch: a mispredicted one per segment cost more than the rest of this function.
        let cut = self.cut_db;
        let by_attack = target + self.attack_pole * (cut - target);
        let by_release = target + self.release_pole * (cut - target);
        self.cut_db = if self.attack_pole <= self.release_pole {
            max_f64(by_attack, by_release)
        } else {
            min_f64(by_attack, by_release)
        };
        if self.cut_db < MIN_CUT_DB {
            self.cut_db = 0.0;
        }
        self.gr_db = (self.cut_db * fade as f64) as f32;
        self.gr_max_db = self.gr_max_db.max(self.gr_db);
    }

    /// After a segment of a band that is switched off: retires it once the fade is over and
    /// the bell has rung out.
    fn retire_if_idle(&mut self) {
        if self.enable.target() == 0.0
            && !self.enable.is_smoothing()
            && !self.bell.is_ramping()
            && self.bell.state().max_abs() < IDLE_STATE
        {
            self.active = false;
            self.gr_db = 0.0;
            self.restart();
        }
    }

    /// Per segment: begin (bell design), detector and bell sample by sample, end (envelope),
    /// idle check. Used while the detector moves or the band is switched off.
    fn process_interleaved(&mut self, buf: &mut [Lanes]) {
        let mut i = 0;
        while i < buf.len() && self.active {
            if self.seg_pos == 0
                && let Some(c) = self.begin_segment()
            {
                self.bell.ramp_to(c, SEGMENT);
            }
            let pos = self.seg_pos.min(SEG);
            let n = (buf.len() - i).min(SEG - pos);
            let part = &mut buf[i..i + n];
            let power = &mut self.power[pos..pos + n];
            let (det, bell) = (&mut self.detector, &mut self.bell);
            match (det.is_ramping(), bell.is_ramping()) {
                (false, false) => detect_and_cut::<false, false>(det, bell, part, power),
                (false, true) => detect_and_cut::<false, true>(det, bell, part, power),
                (true, false) => detect_and_cut::<true, false>(det, bell, part, power),
                (true, true) => detect_and_cut::<true, true>(det, bell, part, power),
            }
            self.seg_pos += n;
            if self.seg_pos >= SEG {
                self.seg_pos = 0;
                self.end_segment(0);
                self.retire_if_idle();
            }
            i += n;
        }
    }

    /// The same computation, software-pipelined over the segments of the frames: the detector
    /// runs one segment ahead of the bell, in the same loop (two independent recursions the
    /// processor overlaps), and a segment's envelope and the next bell design are computed as
    /// soon as its band powers are known, while the loop works on the segment before it. Used
    /// while the detector is settled and the band is on.
    fn process_pipelined(&mut self, buf: &mut [Lanes]) {
        let pos0 = self.seg_pos.min(SEG - 1);
        let n = buf.len().min(GRID);
        let buf = &mut buf[..n];
        // Part q: the frames of the q-th segment touched, `buf[a..b]`.
        let bounds = |q: usize| {
            (
                (SEG * q).saturating_sub(pos0),
                (SEG * (q + 1) - pos0).min(n),
            )
        };
        let parts = (pos0 + n).div_ceil(SEG);
        let (a0, b0) = bounds(0);
        detect(
            &mut self.detector,
            &buf[a0..b0],
            &mut self.power[pos0..pos0 + b0],
        );
        if pos0 == 0
            && let Some(c) = self.begin_segment()
        {
            self.bell.ramp_to(c, SEGMENT);
        }
        for q in 0..parts {
            let (a, b) = bounds(q);
            if pos0 + b == SEG * (q + 1) {
                self.end_segment(SEG * q);
            }
            let more = q + 1 < parts;
            let (head, tail) = buf.split_at_mut(b);
            let (_, b_next) = if more { bounds(q + 1) } else { (b, b) };
            let ahead = &tail[..b_next - b];
            let power = &mut self.power[pos0 + b..pos0 + b_next];
            let (bell, det) = (&mut self.bell, &mut self.detector);
            if bell.is_ramping() {
                cut_and_detect::<true>(bell, &mut head[a..], det, ahead, power);
            } else {
                cut_and_detect::<false>(bell, &mut head[a..], det, ahead, power);
            }
            // The next segment's bell, decided only now: the envelope above is a long chain
            // of dependent operations that the processor overlaps with the loop just issued,
            // and a mispredicted branch on its result would have thrown that loop's work away
            // had it come first. (Nothing in the loop reads or writes what this reads.)
            if more && let Some(c) = self.begin_segment() {
                self.bell.ramp_to(c, SEGMENT);
            }
        }
        // Keep the powers of an unfinished segment at the start of the buffer.
        let done = pos0 + n - (pos0 + n) % SEG;
        self.power.copy_within(done..pos0 + n, 0);
        self.seg_pos = (pos0 + n) % SEG;
    }

    /// Processes a stereo block in place (the shorter length of the two).
    pub fn process(&mut self, left: &mut [f32], right: &mut [f32]) {
        if !self.active {
            if self.enable.target() == 0.0 {
                return;
            }
            self.snap_smoothers();
            self.restart();
            self.active = true;
        }
        process_in_grid::<GRID, _>(self, left, right);
    }
}

/// Detector and bell over frames within one segment; `D`/`B`: the detector/bell coefficients
/// are ramping. Writes each frame's band power `b_L² + b_R²`.
#[inline(always)]
fn detect_and_cut<const D: bool, const B: bool>(
    detector: &mut Section,
    bell: &mut Section,
    buf: &mut [Lanes],
    power: &mut [f64],
) {
    let n = buf.len().min(power.len());
    let (mut det, mut cut) = (detector.begin_run(), bell.begin_run());
    for (x, p) in buf[..n].iter_mut().zip(power.iter_mut()) {
        let b = det.process::<D>(*x);
        *p = b[0] * b[0] + b[1] * b[1];
        *x = cut.process::<B>(*x);
    }
    detector.end_run(&det, n);
    bell.end_run(&cut, n);
}

/// The settled detector over `buf`, writing each frame's band power `b_L² + b_R²`.
#[inline(always)]
fn detect(detector: &mut Section, buf: &[Lanes], power: &mut [f64]) {
    let mut det = detector.begin_run();
    for (x, p) in buf.iter().zip(power.iter_mut()) {
        let b = det.process::<false>(*x);
        *p = b[0] * b[0] + b[1] * b[1];
    }
    detector.end_run(&det, buf.len().min(power.len()));
}

/// The bell over frames of one segment (`B`: its coefficients are ramping) and, in the same
/// loop, the settled detector over the frames `ahead` of the next segment (see [`detect`]).
#[inline(always)]
fn cut_and_detect<const B: bool>(
    bell: &mut Section,
    buf: &mut [Lanes],
    detector: &mut Section,
    ahead: &[Lanes],
    power: &mut [f64],
) {
    let both = buf.len().min(ahead.len()).min(power.len());
    let (mut cut, mut det) = (bell.begin_run(), detector.begin_run());
    for ((x, a), p) in buf[..both]
        .iter_mut()
        .zip(&ahead[..both])
        .zip(&mut power[..both])
    {
        *x = cut.process::<B>(*x);
        let b = det.process::<false>(*a);
        *p = b[0] * b[0] + b[1] * b[1];
    }
    for x in buf[both..].iter_mut() {
        *x = cut.process::<B>(*x);
    }
    bell.end_run(&cut, buf.len());
    detector.end_run(&det, both);
    detect(detector, &ahead[both..], &mut power[both..]);
}

impl GridProcessor for DynamicEq {
    fn is_active(&self) -> bool {
        self.active
    }

    fn grid_pos(&mut self) -> &mut usize {
        &mut self.grid_pos
    }

    fn process_frames(&mut self, buf: &mut [Lanes]) {
        let settled = !self.log2_freq.is_smoothing()
            && !self.log2_q.is_smoothing()
            && !self.detector.is_ramping();
        #[cfg(test)]
        let settled = settled && !tests::INTERLEAVED_ONLY.with(|f| f.get());
        if settled && self.enable.target() != 0.0 {
            self.process_pipelined(buf);
        } else {
            self.process_interleaved(buf);
        }
    }

    /// Flushes tiny filter states; restarts after a non-finite state or envelope.
    fn end_cell(&mut self) {
        for s in [&mut self.detector, &mut self.bell] {
            s.state_mut().flush();
        }
        if !self.detector.state().is_finite()
            || !self.bell.state().is_finite()
            || !self.mean_square.is_finite()
            || !self.cut_db.is_finite()
        {
            self.restart();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::biquad::test_support::*;

    thread_local! {
        /// Forces the interleaved processing path (to compare it with the pipelined one).
        pub(super) static INTERLEAVED_ONLY: std::cell::Cell<bool> = const {
            std::cell::Cell::new(false)
        };
    }

    impl TestProcessor for DynamicEq {
        type Settings = DynEqSettings;
        fn create(fs: f32) -> Self {
            Self::new(fs)
        }
        fn apply(&mut self, s: &DynEqSettings) {
            self.set_settings(s);
        }
        fn settle(&mut self) {
            self.reset();
        }
        fn run(&mut self, l: &mut [f32], r: &mut [f32]) {
            self.process(l, r);
        }
    }

    fn on() -> DynEqSettings {
        DynEqSettings {
            enabled: true,
            range_db: 24.0,
            ..DynEqSettings::default()
        }
    }

    /// Output amplitude (dB re input) of a steady `freq_hz` sine of peak `amp` in both channels,
    /// and the processor's gain-reduction reading at the end.
    fn steady(fs: f32, s: &DynEqSettings, freq_hz: f64, amp: f64) -> (f64, f32, Vec<f32>) {
        let len = (0.6 * fs) as usize;
        let start = (0.4 * fs) as usize;
        let x = sine(freq_hz, fs as f64, amp, 0, len);
        let mut p = DynamicEq::new(fs);
        p.set_settings(s);
        p.reset();
        let (mut l, mut r) = (x.clone(), x.clone());
        for (cl, cr) in l.chunks_mut(256).zip(r.chunks_mut(256)) {
            p.process(cl, cr);
        }
        let a = sine_amplitude(&l[start..], freq_hz, fs as f64, start);
        (20.0 * (a / amp).log10(), p.gain_reduction_db(), l)
    }

    /// In band, above threshold: cut by `min(range, (L − T)·(1 − 1/ratio))` within 0.25 dB
    /// (RMS ripple of the detector), at every rate, and the meter agrees.
    #[test]
    fn in_band_sine_is_cut_by_the_static_curve() {
        let mut worst = 0.0f64;
        for fs in [44_100.0, 48_000.0, 96_000.0, 192_000.0] {
            for (s, amp) in [
                (on(), 0.5),
                (
                    DynEqSettings {
                        range_db: 6.0,
                        ..on()
                    },
                    0.5,
                ),
                (
                    DynEqSettings {
                        freq_hz: 100.0,
                        q: 1.0,
                        threshold_db: -20.0,
                        ratio: 2.0,
                        attack_ms: 10.0,
                        release_ms: 300.0,
                        ..on()
                    },
                    0.3,
                ),
            ] {
                let level = 20.0 * f64::log10(amp);
                let expect = ((level - s.threshold_db as f64) * (1.0 - 1.0 / s.ratio as f64))
                    .clamp(0.0, s.range_db as f64);
                let (db, gr, _) = steady(fs, &s, s.freq_hz as f64, amp);
                worst = worst.max((db + expect).abs());
                assert!(
                    (db + expect).abs() < 0.25,
                    "fs {fs} {s:?}: gain {db:.3} dB, expected {:.3}",
                    -expect
                );
                assert!((gr as f64 - expect).abs() < 0.25, "meter {gr} vs {expect}");
            }
        }
        eprintln!("worst in-band error {worst:.3} dB");
    }

    /// Below threshold: bit-exact. Loud but out of band: untouched within 0.1 dB.
    #[test]
    fn below_threshold_or_out_of_band_is_untouched() {
        let fs = 48_000.0;
        let s = on();
        // −40 dB in band, threshold −30.
        let (_, gr, y) = steady(fs, &s, 6500.0, 0.01);
        assert_eq!(y, sine(6500.0, fs as f64, 0.01, 0, y.len()));
        assert_eq!(gr, 0.0);
        // A full-scale 500 Hz sine: the band-pass (Q 2 at 6.5 kHz) sees it 28 dB down, just over
        // the −30 dB threshold, and the bell at 6.5 kHz does not reach 500 Hz.
        let (db, gr, _) = steady(fs, &s, 500.0, 0.9);
        assert!(db.abs() < 0.1, "out of band gain {db}");
        eprintln!("out-of-band: gain {db:.4} dB with {gr:.2} dB of band reduction");
        // Same for a loud 60 Hz sine against a de-esser setting.
        let (db, _, _) = steady(fs, &s, 60.0, 1.0);
        assert!(db.abs() < 0.1, "out of band gain {db}");
    }

    #[test]
    fn meter_keeps_the_maximum_until_read() {
        let fs = 48_000.0;
        let mut p = DynamicEq::new(fs);
        p.set_settings(&on());
        p.reset();
        let mut burst = sine(6500.0, fs as f64, 0.5, 0, 9600);
        burst.extend(vec![0.0; 48_000]);
        let mut r = burst.clone();
        p.process(&mut burst, &mut r);
        let now = p.gain_reduction_db();
        assert!(now < 1.0, "released after a second of silence: {now}");
        let max = p.take_max_gain_reduction_db();
        assert!((max - 18.0).abs() < 0.5, "max {max}");
        assert!(p.take_max_gain_reduction_db() <= now + 1e-6);
    }

    /// Steps on every control with an in-band sine, at block sizes 1 and 512.
    #[test]
    fn automation_never_clicks() {
        let fs = 48_000.0;
        let at = 24_576;
        let len = at + 9600;
        type Case = (&'static str, fn(&mut DynEqSettings), f64);
        let cases: [Case; 8] = [
            ("threshold", |s| s.threshold_db = -10.0, 6500.0),
            ("ratio", |s| s.ratio = 20.0, 6500.0),
            ("range", |s| s.range_db = 3.0, 6500.0),
            ("freq", |s| s.freq_hz = 3000.0, 6500.0),
            ("q", |s| s.q = 0.5, 6500.0),
            ("off", |s| s.enabled = false, 6500.0),
            ("attack", |s| s.attack_ms = 0.1, 6500.0),
            ("release", |s| s.release_ms = 10.0, 6500.0),
        ];
        let mut worst = 0.0f32;
        for (name, to_fn, f) in cases {
            let l = sine(f, fs as f64, 0.5, 0, len);
            let r = sine(f, fs as f64, 0.4, 5, len);
            let from = on();
            let mut to = from;
            to_fn(&mut to);
            for block in [1, 512] {
                let rep = click_report::<DynamicEq>(fs, (&l, &r), block, &from, &to, at, 4800);
                worst = worst.max(rep.ratio());
                assert!(rep.ratio() <= 1.05, "{name} block {block}: {rep:?}");
            }
        }
        // Switching on (from below the cut to the cut).
        let l = sine(6500.0, fs as f64, 0.5, 0, len);
        let off = DynEqSettings {
            enabled: false,
            ..on()
        };
        let rep = click_report::<DynamicEq>(fs, (&l, &l), 512, &off, &on(), at, 4800);
        assert!(rep.ratio() <= 1.05, "on: {rep:?}");
        eprintln!("worst click ratio {worst:.4}");
    }

    /// A sudden loud in-band burst with the fastest attack: the cut follows without overshoot
    /// or instability.
    #[test]
    fn fast_attack_on_a_burst_stays_bounded() {
        let fs = 48_000.0;
        let s = DynEqSettings {
            attack_ms: 0.1,
            release_ms: 10.0,
            q: 10.0,
            ..on()
        };
        let mut x = vec![0.0f32; 4800];
        x.extend(sine(6500.0, fs as f64, 1.0, 4800, 9600));
        x.extend(vec![0.0f32; 4800]);
        let (l, _) = render::<DynamicEq>(fs, (&x, &x), 64, &s, |_| s);
        let peak = l.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(peak <= 1.0 + 1e-3, "peak {peak}");
    }

    /// Random settings every 64 samples at every rate: finite, bounded output (the band only
    /// cuts, so the output stays near the input level).
    #[test]
    fn stable_under_random_automation() {
        let mut rng = Rng(77);
        for fs in [44_100.0f32, 48_000.0, 96_000.0, 192_000.0] {
            let x = rng.noise(0.5, fs as usize / 4);
            let list: Vec<DynEqSettings> = (0..x.len() / 64 + 1)
                .map(|_| DynEqSettings {
                    enabled: rng.next_f64() < 0.9,
                    freq_hz: rng.log_range(20.0, 20_000.0) as f32,
                    q: rng.log_range(0.1, 10.0) as f32,
                    threshold_db: rng.range(-60.0, 0.0) as f32,
                    ratio: rng.range(1.0, 20.0) as f32,
                    range_db: rng.range(0.0, 24.0) as f32,
                    attack_ms: rng.log_range(0.1, 100.0) as f32,
                    release_ms: rng.log_range(10.0, 2000.0) as f32,
                })
                .collect();
            let (l, r) = render::<DynamicEq>(fs, (&x, &x), 64, &list[0], |n| list[n / 64]);
            let peak = l.iter().chain(&r).fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(peak.is_finite() && peak < 2.0, "fs {fs}: peak {peak}");
        }
    }

    /// Random automation every 640 samples (band switched on and off, the detector moving)
    /// gives bit-identical output at every block size, and the pipelined and interleaved
    /// processing give the same output.
    #[test]
    fn output_is_bit_identical_for_any_block_size_and_path() {
        let blocks = [640, 1, 5, 16, 64, 128, 320];
        let mut rng = Rng(0xD1E9);
        let fs = 48_000.0;
        let x = rng.noise(0.5, 12_800);
        let y: Vec<f32> = x.iter().map(|v| 0.7 * v).collect();
        let list: Vec<DynEqSettings> = (0..20)
            .map(|_| DynEqSettings {
                enabled: rng.next_f64() < 0.8,
                freq_hz: rng.log_range(200.0, 12_000.0) as f32,
                q: rng.log_range(0.5, 4.0) as f32,
                threshold_db: rng.range(-40.0, -10.0) as f32,
                ratio: rng.range(1.5, 10.0) as f32,
                range_db: rng.range(3.0, 24.0) as f32,
                attack_ms: rng.log_range(0.1, 20.0) as f32,
                release_ms: rng.log_range(10.0, 300.0) as f32,
            })
            .collect();
        assert_block_size_independent::<DynamicEq>(fs, (&x, &y), &blocks, &list[0], |n| {
            list[n / 640]
        });
        let pipelined = render::<DynamicEq>(fs, (&x, &y), 128, &list[0], |n| list[n / 640]);
        INTERLEAVED_ONLY.with(|f| f.set(true));
        let interleaved = render::<DynamicEq>(fs, (&x, &y), 128, &list[0], |n| list[n / 640]);
        INTERLEAVED_ONLY.with(|f| f.set(false));
        assert!(pipelined == interleaved);
    }

    /// NaN and ±Inf: finite output, identical to feeding silence instead.
    #[test]
    fn nan_and_inf_act_as_silence() {
        let fs = 48_000.0;
        let clean = sine(6500.0, fs as f64, 0.5, 0, 16_384);
        let (mut bad, mut silent) = (clean.clone(), clean.clone());
        for (i, v) in bad[8192..8492].iter_mut().enumerate() {
            *v = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][i % 3];
        }
        silent[8192..8492].fill(0.0);
        let s = on();
        let out = render::<DynamicEq>(fs, (&bad, &bad), 512, &s, |_| s);
        let reference = render::<DynamicEq>(fs, (&silent, &silent), 512, &s, |_| s);
        assert!(out.0.iter().all(|v| v.is_finite()));
        assert!(out == reference);
    }

    #[test]
    fn disabled_is_bit_transparent() {
        let mut rng = Rng(3);
        let x = rng.noise(1.0, 10_000);
        let s = DynEqSettings::default();
        let out = render::<DynamicEq>(48_000.0, (&x, &x), 100, &s, |_| s);
        assert!(out.0 == x && out.1 == x);
        // Switched off after working: transparent again once the fade and the bell's ring
        // are over.
        let at = 4096;
        let off = DynEqSettings::default();
        let out = render::<DynamicEq>(48_000.0, (&x, &x), 64, &on(), |n| {
            if n < at { on() } else { off }
        });
        assert!(out.0[at + 4800..] == x[at + 4800..]);
        assert!(out.0[..at] != x[..at]);
        assert_eq!(DynamicEq::new(48_000.0).latency_samples(), 0);
    }
}
