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
//! bell          peaking(f0, Q, −c)         RBJ, redesigned when −c moved ≥ 0.05 dB
//! ```
//!
//! The level's logarithm and the bell's `A = 10^(gain/40)` use the compressor's polynomial
//! `log2`/`exp2` (errors below 10⁻⁵ dB; 0 dB still gives exactly `A = 1`).
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
//! **Cost: passes per cell.** A segment's bell depends on the envelope at the end of the
//! segment before it, and the envelope is a long chain of dependent operations (dot product,
//! logarithm, gain computer, `exp2`, a division for the design: ≈ 130 cycles). Run once per
//! segment between the per-sample loops (as an earlier version did), that chain, not the
//! filters, set the pace. So while the detector is settled (frequency and Q still) the frames
//! of a block's part of a `GRID` cell go through passes: the detector over all of them
//! (band powers), then the envelope of every segment they complete — the dot products,
//! logarithms and designs of the segments are independent of each other, only the mean square
//! and the cut (one multiply-add and one maximum each) carry from segment to segment — and
//! the bell's designs, then the bell over all of them. A segment whose bell gain stays put
//! (the `BELL_STEP_DB` hysteresis: > 99 % of the segments on the engine bench) needs no
//! design and no ramp: the bell runs with constant coefficients, several such segments in one
//! loop (the same values as a ramp with zero increments). So the bell runs speculatively in
//! the detector's loop with the coefficients it has (`detector_bell_pass`: two independent
//! latency-bound recursions in one loop cost little more than one); only from a segment that
//! turns out to need a new design does it run again, from the state and input kept at that
//! segment's start.
//! The sections run in fused multiply-adds where the CPU has AVX2 and FMA (chosen at run time,
//! as in `crate::compressor`). While the frequency or Q moves, or the band is switched off,
//! the same steps run segment by segment; both give the same output bit for bit.
//!
//! Frequency and Q ramp in octaves, threshold/ratio/range ramp linearly ([`RAMP_MS`], at the
//! segment rate); switching the band on or off fades the cut in or out over [`RAMP_MS`]; once
//! off and settled the band is skipped entirely. Segments count samples from the moment the
//! band starts, so the block size never changes the output.

use crate::biquad::{Coefficients, GridProcessor, LaneCoefficients, Lanes, Warp, process_in_grid};
use crate::compressor::{exp2_poly, log2_poly};
use crate::eq::{RAMP_MS, SEGMENT, clamp_or};
use crate::settings::DynEqSettings;
use crate::smoother::Smoother;
use crate::util::{avx2_fma_available, one_pole_coeff};

/// Band state below this (≈ −240 dBFS) counts as silent.
const IDLE_STATE: f64 = 1.0e-12;

/// Filter states below this (−600 dB) are flushed to exactly zero at every cell end (as
/// `biquad::LaneState::flush` does).
const STATE_FLUSH: f64 = 1.0e-30;

/// Cuts smaller than this (dB) are flushed to exactly 0 dB.
const MIN_CUT_DB: f64 = 1.0e-6;

/// Smallest change of the bell's gain (dB) worth a redesign: the bell follows the cut in steps
/// of at least this much (each ramped over a segment), except that it always lands exactly on
/// 0 dB. A 0.05 dB step of a band's gain, spread over 16 samples, is far below audibility
/// (gain steps of ~0.2 dB are the smallest heard on steady tones, and only as level
/// differences); it keeps the bell's coefficients still while the cut releases slowly or
/// hovers.
const BELL_STEP_DB: f64 = 0.05;

/// Samples per segment.
const SEG: usize = SEGMENT as usize;

/// Frames per block-processing cell (see [`crate::biquad::process_in_grid`]); a multiple of
/// the segment.
const GRID: usize = 8 * SEG;

/// Most segments one part of a cell touches (a part starts anywhere in a segment).
const MAX_SEGS: usize = GRID / SEG + 1;

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

/// One stereo section of the band (the detector or the bell), transposed direct form II,
///
/// ```text
/// y[n] = b0·x[n] + s1[n]
/// s1[n+1] = c1·x[n] − a1·s1[n] + s2[n],   s2[n] = c2·x[n−1] − a2·s1[n−1]
/// ```
///
/// (the form of `biquad::LaneState`, `c1 = b1 − a1·b0`, `c2 = b2 − a2·b0`), evaluated as
/// `s1[n+1] = (c1·x[n] + c2·x[n−1] − a2·s1[n−1]) − a1·s1[n]`: the state kept is `s1[n]`,
/// `s1[n−1]` and `c2·x[n−1]` (with the `a2` of sample `n − 1`), so that the loop-carried path
/// is a single (fused) multiply-add per sample — through `s2` it would be three per two
/// samples, ≈ 50 % longer, and a lone section is bound by that latency. Coefficients move
/// linearly, sample by sample, over one segment to a new design ([`Stage::ramp_to`] at a
/// segment start, [`Stage::land`] at its end; every interpolated design is stable, the
/// stability triangle being convex). Kept here rather than as a `biquad::Section` so that its
/// loops can be specialised for this module.
#[derive(Debug, Clone, Copy)]
struct Stage {
    /// Coefficients of the last processed sample.
    coeffs: LaneCoefficients,
    /// Per-sample increment during the current segment (zero when not ramping).
    step: LaneCoefficients,
    /// Coefficients the current segment ends on.
    target: LaneCoefficients,
    /// True from [`Stage::ramp_to`] to the [`Stage::land`] at the segment's end.
    ramping: bool,
    /// `s1[n]` of each lane (the next sample's).
    s1: Lanes,
    /// `s1[n−1]` of each lane.
    s1_prev: Lanes,
    /// `c2·x[n−1]` of each lane.
    c2x_prev: Lanes,
    /// `a2` of sample `n − 1` of each lane.
    a2_prev: Lanes,
}

/// A [`Stage`]'s state between two samples: `[s1, s1_prev, c2x_prev, a2_prev]`.
type StageState = [Lanes; 4];

/// The segments a part of a [`GRID`] cell touches: `n` (≤ [`GRID`]) frames starting `pos0`
/// (< [`SEG`]) frames into a segment. Segment `k` (0: the one `pos0` is in) covers frames
/// `start(k)..end(k)` of the part.
#[derive(Clone, Copy)]
struct Segments {
    /// Position of the part's first frame in its segment.
    pos0: usize,
    /// Frames in the part.
    n: usize,
}

impl Segments {
    /// First frame of segment `k`.
    fn start(self, k: usize) -> usize {
        (SEG * k).saturating_sub(self.pos0)
    }

    /// One past the last frame of segment `k`.
    fn end(self, k: usize) -> usize {
        (SEG * (k + 1) - self.pos0).min(self.n)
    }

    /// Segments touched (at most [`MAX_SEGS`]).
    fn touched(self) -> usize {
        (self.pos0 + self.n).div_ceil(SEG)
    }
}

impl Stage {
    /// Settled at `c`, with a cleared state.
    fn new(c: LaneCoefficients) -> Self {
        Self {
            coeffs: c,
            step: LaneCoefficients::ZERO,
            target: c,
            ramping: false,
            s1: [0.0; 2],
            s1_prev: [0.0; 2],
            c2x_prev: [0.0; 2],
            a2_prev: c.a2,
        }
    }

    /// Starts a ramp over one segment to `target` (increments of zero when it equals the
    /// current coefficients, which then stay exactly as they are).
    #[inline(always)]
    fn ramp_to(&mut self, target: LaneCoefficients) {
        self.step = self.coeffs.ramp_step(&target, SEG as u32);
        self.target = target;
        self.ramping = true;
    }

    /// At a segment's end: lands exactly on the target.
    #[inline(always)]
    fn land(&mut self) {
        self.coeffs = self.target;
        self.step = LaneCoefficients::ZERO;
        self.ramping = false;
    }

    /// The state variables as a [`StageState`].
    #[inline(always)]
    fn snapshot(&self) -> StageState {
        [self.s1, self.s1_prev, self.c2x_prev, self.a2_prev]
    }

    /// Puts back a [`Stage::snapshot`] (the coefficients are left as they are).
    #[inline(always)]
    fn restore(&mut self, s: &StageState) {
        [self.s1, self.s1_prev, self.c2x_prev, self.a2_prev] = *s;
    }

    /// The state variables.
    fn state(&self) -> [f64; 6] {
        let (a, b, c) = (self.s1, self.s1_prev, self.c2x_prev);
        [a[0], a[1], b[0], b[1], c[0], c[1]]
    }

    /// Sets state magnitudes below [`STATE_FLUSH`] to exactly zero.
    fn flush(&mut self) {
        for v in self
            .s1
            .iter_mut()
            .chain(self.s1_prev.iter_mut())
            .chain(self.c2x_prev.iter_mut())
        {
            if v.abs() < STATE_FLUSH {
                *v = 0.0;
            }
        }
    }

    fn is_finite(&self) -> bool {
        self.state().iter().all(|v| v.is_finite())
    }

    /// Largest state magnitude (NaN counts as infinite).
    fn max_abs(&self) -> f64 {
        self.state().iter().fold(0.0, |m, v| {
            if v.abs() > m || v.is_nan() {
                v.abs()
            } else {
                m
            }
        })
    }
}

/// `c += step`, coefficient by coefficient.
#[inline(always)]
fn advance(c: &mut LaneCoefficients, step: &LaneCoefficients) {
    let add = |a: &mut Lanes, b: Lanes| *a = [a[0] + b[0], a[1] + b[1]];
    add(&mut c.b0, step.b0);
    add(&mut c.c1, step.c1);
    add(&mut c.c2, step.c2);
    add(&mut c.a1, step.a1);
    add(&mut c.a2, step.a2);
}

/// One sample of a [`Stage`] (portable build): returns `y`.
#[inline(always)]
fn section_tick(c: &LaneCoefficients, st: &mut Stage, x: Lanes) -> Lanes {
    let mut y = [0.0; 2];
    for k in 0..2 {
        y[k] = c.b0[k] * x[k] + st.s1[k];
        let t = (c.c1[k] * x[k] + st.c2x_prev[k]) - st.a2_prev[k] * st.s1_prev[k];
        let s1 = t - c.a1[k] * st.s1[k];
        st.s1_prev[k] = st.s1[k];
        st.c2x_prev[k] = c.c2[k] * x[k];
        st.s1[k] = s1;
    }
    st.a2_prev = c.a2;
    y
}

/// The bell over `buf` in place (`RAMP`: within one segment, its coefficients advancing by
/// their increment every sample; otherwise constant).
#[inline(always)]
fn bell_pass<const FMA: bool, const RAMP: bool>(st: &mut Stage, buf: &mut [Lanes]) {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: `FMA` is only true inside functions compiled for AVX2 and FMA.
        unsafe { fused::bell_pass::<RAMP>(st, buf) };
        return;
    }
    let mut c = st.coeffs;
    for x in buf.iter_mut() {
        if RAMP {
            advance(&mut c, &st.step);
        }
        *x = section_tick(&c, st, *x);
    }
    st.coeffs = c;
}

/// The detector over `input` (`RAMP`: within one segment, its coefficients advancing),
/// writing each frame's squared band signal `[b_L², b_R²]` to `power`.
#[inline(always)]
fn detector_pass<const FMA: bool, const RAMP: bool>(
    st: &mut Stage,
    input: &[Lanes],
    power: &mut [Lanes],
) {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: `FMA` is only true inside functions compiled for AVX2 and FMA.
        unsafe { fused::detector_pass::<RAMP>(st, input, power) };
        return;
    }
    let mut c = st.coeffs;
    for (x, p) in input.iter().zip(power.iter_mut()) {
        if RAMP {
            advance(&mut c, &st.step);
        }
        let b = section_tick(&c, st, *x);
        *p = [b[0] * b[0], b[1] * b[1]];
    }
    st.coeffs = c;
}

/// The detector and the bell (constant coefficients) in one loop over `buf`: the detector's
/// squared band signal goes to `power`, the bell's output back to `buf`, and each input frame
/// is kept in `saved` (all three hold the frames of `segs`). The bell's state at the start of
/// every segment after the first goes to `snaps[1..]`.
///
/// Why: the two sections are independent recursions, each bound by the latency of its one
/// multiply-add per sample, so one loop runs both in about the time of one (and loads each
/// frame once). The bell's coefficients of a segment are only known after the detector has
/// run through the segment before it, so this loop runs the bell speculatively with the
/// coefficients it has; where a segment turns out to need a new design (< 1 % of the segments
/// on the engine bench) [`DynamicEq::process_passes`] puts back the snapshot and the saved
/// input of that segment and runs the bell again from there. The operations per sample are
/// those of [`detector_pass`] and [`bell_pass`], so the output is the same bit for bit.
#[inline(always)]
fn detector_bell_pass<const FMA: bool>(
    det: &mut Stage,
    bell: &mut Stage,
    buf: &mut [Lanes],
    power: &mut [Lanes],
    saved: &mut [Lanes],
    segs: Segments,
    snaps: &mut [StageState; MAX_SEGS],
) {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: `FMA` is only true inside functions compiled for AVX2 and FMA.
        unsafe { fused::detector_bell_pass(det, bell, buf, power, saved, segs, snaps) };
        return;
    }
    let (dc, bc) = (det.coeffs, bell.coeffs);
    for (k, snap) in snaps.iter_mut().enumerate().take(segs.touched()) {
        if k > 0 {
            *snap = bell.snapshot();
        }
        let r = segs.start(k)..segs.end(k);
        let frames = buf[r.clone()].iter_mut().zip(&mut power[r.clone()]);
        for ((x, p), keep) in frames.zip(&mut saved[r]) {
            *keep = *x;
            let b = section_tick(&dc, det, *x);
            *p = [b[0] * b[0], b[1] * b[1]];
            *x = section_tick(&bc, bell, *x);
        }
    }
}

/// The loops of [`bell_pass`] and [`detector_pass`] in fused multiply-adds on 128-bit
/// registers (one register per coefficient or state variable, both channels), written with
/// intrinsics: left to itself the compiler packs the two independent state updates into one
/// 256-bit operation, which puts lane shuffles on the loop-carried path.
#[cfg(target_arch = "x86_64")]
mod fused {
    use super::{Lanes, MAX_SEGS, Segments, Stage, StageState};
    use std::arch::x86_64::*;

    /// Coefficients in registers.
    #[derive(Clone, Copy)]
    struct Regs {
        b0: __m128d,
        c1: __m128d,
        c2: __m128d,
        a1: __m128d,
        a2: __m128d,
    }

    #[inline(always)]
    unsafe fn load(v: &Lanes) -> __m128d {
        // SAFETY: reads the two f64 of `v`.
        unsafe { _mm_loadu_pd(v.as_ptr()) }
    }

    #[inline(always)]
    unsafe fn store(v: &mut Lanes, r: __m128d) {
        // SAFETY: writes the two f64 of `v`.
        unsafe { _mm_storeu_pd(v.as_mut_ptr(), r) }
    }

    /// A section's coefficients, increments and state in registers, for one loop.
    struct Run {
        c: Regs,
        step: Regs,
        s1: __m128d,
        s1_prev: __m128d,
        c2x_prev: __m128d,
        a2_prev: __m128d,
    }

    impl Run {
        #[inline(always)]
        unsafe fn begin(st: &Stage) -> Self {
            let regs = |c: &super::LaneCoefficients| {
                // SAFETY: plain loads.
                unsafe {
                    Regs {
                        b0: load(&c.b0),
                        c1: load(&c.c1),
                        c2: load(&c.c2),
                        a1: load(&c.a1),
                        a2: load(&c.a2),
                    }
                }
            };
            // SAFETY: plain loads.
            unsafe {
                Self {
                    c: regs(&st.coeffs),
                    step: regs(&st.step),
                    s1: load(&st.s1),
                    s1_prev: load(&st.s1_prev),
                    c2x_prev: load(&st.c2x_prev),
                    a2_prev: load(&st.a2_prev),
                }
            }
        }

        #[inline(always)]
        unsafe fn end(&self, st: &mut Stage) {
            // SAFETY: plain stores.
            unsafe {
                store(&mut st.coeffs.b0, self.c.b0);
                store(&mut st.coeffs.c1, self.c.c1);
                store(&mut st.coeffs.c2, self.c.c2);
                store(&mut st.coeffs.a1, self.c.a1);
                store(&mut st.coeffs.a2, self.c.a2);
                store(&mut st.s1, self.s1);
                store(&mut st.s1_prev, self.s1_prev);
                store(&mut st.c2x_prev, self.c2x_prev);
                store(&mut st.a2_prev, self.a2_prev);
            }
        }

        /// One sample (after advancing the coefficients when `RAMP`); returns `y`.
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        fn tick<const RAMP: bool>(&mut self, x: __m128d) -> __m128d {
            let c = &mut self.c;
            if RAMP {
                c.b0 = _mm_add_pd(c.b0, self.step.b0);
                c.c1 = _mm_add_pd(c.c1, self.step.c1);
                c.c2 = _mm_add_pd(c.c2, self.step.c2);
                c.a1 = _mm_add_pd(c.a1, self.step.a1);
                c.a2 = _mm_add_pd(c.a2, self.step.a2);
            }
            let y = _mm_fmadd_pd(c.b0, x, self.s1);
            let t = _mm_fnmadd_pd(
                self.a2_prev,
                self.s1_prev,
                _mm_fmadd_pd(c.c1, x, self.c2x_prev),
            );
            let s1 = _mm_fnmadd_pd(c.a1, self.s1, t);
            self.s1_prev = self.s1;
            self.c2x_prev = _mm_mul_pd(c.c2, x);
            self.a2_prev = c.a2;
            self.s1 = s1;
            y
        }
    }

    /// [`super::bell_pass`], fused.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn bell_pass<const RAMP: bool>(st: &mut Stage, buf: &mut [Lanes]) {
        // SAFETY: AVX2 and FMA are enabled; every access is in bounds of `buf`.
        unsafe {
            let mut run = Run::begin(st);
            for x in buf.iter_mut() {
                let y = run.tick::<RAMP>(load(x));
                store(x, y);
            }
            run.end(st);
        }
    }

    /// [`super::detector_bell_pass`], fused.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn detector_bell_pass(
        det: &mut Stage,
        bell: &mut Stage,
        buf: &mut [Lanes],
        power: &mut [Lanes],
        saved: &mut [Lanes],
        segs: Segments,
        snaps: &mut [StageState; MAX_SEGS],
    ) {
        // SAFETY: AVX2 and FMA are enabled; every access is in bounds of the slices.
        unsafe {
            let mut d = Run::begin(det);
            let mut b = Run::begin(bell);
            for (k, s) in snaps.iter_mut().enumerate().take(segs.touched()) {
                if k > 0 {
                    store(&mut s[0], b.s1);
                    store(&mut s[1], b.s1_prev);
                    store(&mut s[2], b.c2x_prev);
                    store(&mut s[3], b.a2_prev);
                }
                let r = segs.start(k)..segs.end(k);
                let (xs, ps, ks) = (&mut buf[r.clone()], &mut power[r.clone()], &mut saved[r]);
                let mut frame = |x: &mut Lanes, p: &mut Lanes, keep: &mut Lanes| {
                    let v = load(x);
                    store(keep, v);
                    let y = d.tick::<false>(v);
                    store(p, _mm_mul_pd(y, y));
                    store(x, b.tick::<false>(v));
                };
                // Two frames per iteration: the state variables trade places without moves.
                let pairs = xs.chunks_exact_mut(2).zip(ps.chunks_exact_mut(2));
                for ((x, p), keep) in pairs.zip(ks.chunks_exact_mut(2)) {
                    frame(&mut x[0], &mut p[0], &mut keep[0]);
                    frame(&mut x[1], &mut p[1], &mut keep[1]);
                }
                if xs.len() % 2 == 1 {
                    let t = xs.len() - 1;
                    frame(&mut xs[t], &mut ps[t], &mut ks[t]);
                }
            }
            d.end(det);
            b.end(bell);
        }
    }

    /// [`super::detector_pass`], fused.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn detector_pass<const RAMP: bool>(
        st: &mut Stage,
        input: &[Lanes],
        power: &mut [Lanes],
    ) {
        // SAFETY: AVX2 and FMA are enabled; every access is in bounds of the slices.
        unsafe {
            let mut run = Run::begin(st);
            for (x, p) in input.iter().zip(power.iter_mut()) {
                let y = run.tick::<RAMP>(load(x));
                store(p, _mm_mul_pd(y, y));
            }
            run.end(st);
        }
    }
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
    detector: Stage,
    /// Bell (coefficients and left/right state).
    bell: Stage,
    /// Bell gain in dB the bell coefficients were last designed for (−cut·fade).
    bell_gain_db: f64,
    /// `[b_L², b_R²]` of each sample from the start of the current segment.
    power: [Lanes; SEG + GRID],
    /// The input frames of the current part of a cell, kept by [`detector_bell_pass`] for a
    /// bell that has to run again.
    saved: [Lanes; GRID],
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
    /// Run the loops compiled for AVX2 + FMA (set in `new` from the CPU's features).
    use_fma: bool,
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
            detector: Stage::new(LaneCoefficients::IDENTITY),
            bell: Stage::new(LaneCoefficients::IDENTITY),
            bell_gain_db: 0.0,
            power: [[0.0; 2]; SEG + GRID],
            saved: [[0.0; 2]; GRID],
            mean_square: 0.0,
            cut_db: 0.0,
            seg_pos: 0,
            grid_pos: 0,
            active: false,
            gr_db: 0.0,
            gr_max_db: 0.0,
            use_fma: avx2_fma_available(),
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
        self.detector = Stage::new(self.design_detector());
        // 0 dB: exactly `A = 1`, an exact identity.
        self.bell = Stage::new(self.warp.peaking_lanes(1.0));
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

    /// The bell for a gain of `gain_db` (0 dB gives exactly `A = 1`, an exact identity).
    #[inline(always)]
    fn design_bell<const FMA: bool>(&self, gain_db: f64) -> LaneCoefficients {
        let a = exp2_poly::<FMA>((gain_db.clamp(-48.0, 48.0) * LOG2_AMPLITUDE_PER_DB) as f32);
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

    /// The bell gain (dB) a segment starting now asks for: the cut times the enable fade.
    #[inline(always)]
    fn start_gain_db(&self) -> f64 {
        -self.cut_db * self.enable.value() as f64
    }

    /// Chooses the gain the bell is designed for in a segment whose start asks for `gain_db`:
    /// the previous one ([`Self::bell_gain_db`], returns false: the bell keeps its
    /// coefficients) unless it moved by [`BELL_STEP_DB`] or more, or lands on 0 dB, or `force`
    /// (returns true: the bell needs a new design for the new `bell_gain_db`).
    ///
    /// The bell's coefficients are always the design for `bell_gain_db` (and the current
    /// corner), so an unchanged gain needs no design at all — the hysteresis keeps the gain
    /// still most of the time (on the engine bench, for > 99 % of the segments) — and no
    /// ramp (a ramp to the same design would add increments of exactly zero).
    #[inline(always)]
    fn choose_bell_gain(&mut self, gain_db: f64, force: bool) -> bool {
        let changed = if gain_db == 0.0 {
            self.bell_gain_db != 0.0
        } else {
            (gain_db - self.bell_gain_db).abs() >= BELL_STEP_DB
        };
        let take = changed | force;
        if take {
            self.bell_gain_db = gain_db;
        }
        take
    }

    /// Starts a segment (segment by segment processing): moves frequency/Q one segment
    /// (ramping the detector to the new design) and ramps the bell to its design for the
    /// current cut.
    #[inline(always)]
    fn begin_segment<const FMA: bool>(&mut self) {
        let moved = self.log2_freq.is_smoothing() || self.log2_q.is_smoothing();
        if moved {
            self.log2_freq.tick();
            self.log2_q.tick();
            self.update_warp();
            let d = self.design_detector();
            self.detector.ramp_to(d);
        }
        if self.choose_bell_gain(self.start_gain_db(), moved) {
            let design = self.design_bell::<FMA>(self.bell_gain_db);
            self.bell.ramp_to(design);
        }
    }

    /// Ends `segments` consecutive segments whose band powers are
    /// `power[16·k..16·(k + 1)]`: mean square, level, gain computer, envelope, meters. Writes
    /// the bell gain a segment starting after segment `k` asks for to `gains[k]`.
    ///
    /// The dot products and logarithms of all segments are independent (vectorised); only the
    /// mean square and the cut carry from one segment to the next.
    #[inline(always)]
    fn end_segments<const FMA: bool>(&mut self, segments: usize, gains: &mut [f64]) {
        const MAX: usize = GRID / SEG;
        let segments = segments.min(MAX).min(gains.len());
        let mut mean_squares = [0.0f64; MAX];
        let mut m = self.mean_square;
        for (k, ms) in mean_squares.iter_mut().enumerate().take(segments) {
            let p = &self.power[SEG * k..SEG * (k + 1)];
            // Four interleaved partial sums (a fixed order, so the result is deterministic).
            let mut acc = [0.0f64; 4];
            for (j, (w, p)) in self.rms_weights.iter().zip(p).enumerate() {
                acc[j % 4] += w * (p[0] + p[1]);
            }
            m = self.rms_decay * m + ((acc[0] + acc[1]) + (acc[2] + acc[3]));
            *ms = m;
        }
        self.mean_square = m;
        let mut log2_power = [0.0f32; MAX];
        for (l, ms) in log2_power.iter_mut().zip(&mean_squares) {
            *l = log2_poly::<FMA>((2.0 * ms + 1.0e-30) as f32);
        }
        for (&l, gain) in log2_power.iter().zip(gains.iter_mut()).take(segments) {
            let level_db = DB_PER_LOG2_POWER * l as f64;
            let threshold = self.threshold_db.tick() as f64;
            let slope = self.slope.tick() as f64;
            let range = self.range_db.tick() as f64;
            let fade = self.enable.tick();
            let target = ((level_db - threshold) * slope).clamp(0.0, range);
            // The attack pole if `target > cut`, else the release pole: both candidates, and
            // the rule picks the larger when the attack is the faster pole (it moves further
            // up, the release stays higher), the smaller otherwise (as in the compressor's
            // detector). No branch.
            let cut = self.cut_db;
            let by_attack = target + self.attack_pole * (cut - target);
            let by_release = target + self.release_pole * (cut - target);
            let cut = if self.attack_pole <= self.release_pole {
                max_f64(by_attack, by_release)
            } else {
                min_f64(by_attack, by_release)
            };
            self.cut_db = if cut < MIN_CUT_DB { 0.0 } else { cut };
            self.gr_db = (self.cut_db * fade as f64) as f32;
            self.gr_max_db = self.gr_max_db.max(self.gr_db);
            *gain = -self.cut_db * fade as f64;
        }
    }

    /// After a segment of a band that is switched off: retires it once the fade is over and
    /// the bell has rung out.
    fn retire_if_idle(&mut self) {
        if self.enable.target() == 0.0
            && !self.enable.is_smoothing()
            && !self.bell.ramping
            && self.bell.max_abs() < IDLE_STATE
        {
            self.active = false;
            self.gr_db = 0.0;
            self.restart();
        }
    }

    /// Segment by segment: begin (designs), detector, bell, end (envelope), idle check. Used
    /// while the detector moves or the band is switched off.
    #[inline(always)]
    fn process_segments<const FMA: bool>(&mut self, buf: &mut [Lanes]) {
        let mut i = 0;
        while i < buf.len() && self.active {
            if self.seg_pos == 0 {
                self.begin_segment::<FMA>();
            }
            let pos = self.seg_pos.min(SEG - 1);
            let n = (buf.len() - i).min(SEG - pos);
            let part = &mut buf[i..i + n];
            let power = &mut self.power[pos..pos + n];
            if self.detector.ramping {
                detector_pass::<FMA, true>(&mut self.detector, part, power);
            } else {
                detector_pass::<FMA, false>(&mut self.detector, part, power);
            }
            if self.bell.ramping {
                bell_pass::<FMA, true>(&mut self.bell, part);
            } else {
                bell_pass::<FMA, false>(&mut self.bell, part);
            }
            self.seg_pos = pos + n;
            if self.seg_pos >= SEG {
                self.seg_pos = 0;
                self.detector.land();
                self.bell.land();
                self.end_segments::<FMA>(1, &mut [0.0]);
                self.retire_if_idle();
            }
            i += n;
        }
    }

    /// The same computation in passes over a part of a cell (see the module documentation):
    /// the detector over every frame (with the bell, speculatively: [`detector_bell_pass`]),
    /// the envelope of every segment completed and the bell designs of every segment started,
    /// the bell over the frames from the first segment that needs a new design (all of them
    /// when the bell did not run with the detector). Used while the detector is settled and
    /// the band is on.
    #[inline(always)]
    fn process_passes<const FMA: bool>(&mut self, buf: &mut [Lanes]) {
        let pos0 = self.seg_pos.min(SEG - 1);
        let n = buf.len().min(GRID);
        let buf = &mut buf[..n];
        let total = pos0 + n;
        let segs = Segments { pos0, n };
        let touched = segs.touched();
        let completed = total / SEG;
        // `gains[k]`: what the start of segment k asks for (k = 0: from the state before this
        // part, only used if it starts here).
        let mut gains = [0.0f64; MAX_SEGS];
        gains[0] = self.start_gain_db();
        // New designs only where the gain changes (`ramps[k]`: segment k ramps to
        // `designs[k]`; never for k = 0 when that segment started before this part).
        let mut designs = [LaneCoefficients::ZERO; MAX_SEGS];
        let mut ramps = [false; MAX_SEGS];
        if pos0 == 0 && self.choose_bell_gain(gains[0], false) {
            designs[0] = self.design_bell::<FMA>(self.bell_gain_db);
            ramps[0] = true;
        }
        // The bell runs with the detector while its first segment keeps its coefficients.
        let speculate = !ramps[0] && !self.bell.ramping;
        let mut snaps = [[[0.0; 2]; 4]; MAX_SEGS];
        let power = &mut self.power[pos0..total];
        if speculate {
            let saved = &mut self.saved[..n];
            let (det, bell) = (&mut self.detector, &mut self.bell);
            detector_bell_pass::<FMA>(det, bell, buf, power, saved, segs, &mut snaps);
        } else {
            detector_pass::<FMA, false>(&mut self.detector, buf, power);
        }
        self.end_segments::<FMA>(completed, &mut gains[1..]);
        for k in 1..touched {
            if self.choose_bell_gain(gains[k], false) {
                designs[k] = self.design_bell::<FMA>(self.bell_gain_db);
                ramps[k] = true;
            }
        }
        // Where the bell starts (again): segment 0, or the first segment the speculative
        // bell got wrong (its state and input put back), or none.
        let mut k = if speculate {
            match (1..touched).find(|&k| ramps[k]) {
                Some(k) => {
                    self.bell.restore(&snaps[k]);
                    buf[segs.start(k)..].copy_from_slice(&self.saved[segs.start(k)..n]);
                    k
                }
                None => touched,
            }
        } else {
            0
        };
        // The bell: a ramping segment on its own, a run of segments with constant
        // coefficients in one loop. (The detector is settled: nothing to land.)
        while k < touched {
            if ramps[k] {
                self.bell.ramp_to(designs[k]);
            }
            if self.bell.ramping {
                bell_pass::<FMA, true>(&mut self.bell, &mut buf[segs.start(k)..segs.end(k)]);
                if k < completed {
                    self.bell.land();
                }
                k += 1;
            } else {
                let mut j = k + 1;
                while j < touched && !ramps[j] {
                    j += 1;
                }
                bell_pass::<FMA, false>(&mut self.bell, &mut buf[segs.start(k)..segs.end(j - 1)]);
                k = j;
            }
        }
        // Keep the powers of an unfinished segment at the start of the buffer.
        let done = SEG * completed;
        self.power.copy_within(done..total, 0);
        self.seg_pos = total % SEG;
    }

    /// [`GridProcessor::process_frames`]' body, fused where `FMA`.
    #[inline(always)]
    fn process_frames_with<const FMA: bool>(&mut self, buf: &mut [Lanes]) {
        let settled =
            !self.log2_freq.is_smoothing() && !self.log2_q.is_smoothing() && !self.detector.ramping;
        #[cfg(test)]
        let settled = settled && !tests::INTERLEAVED_ONLY.with(|f| f.get());
        if settled && self.enable.target() != 0.0 {
            self.process_passes::<FMA>(buf);
        } else {
            self.process_segments::<FMA>(buf);
        }
    }

    /// [`Self::process_frames_with`] compiled for AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn process_frames_fma(&mut self, buf: &mut [Lanes]) {
        self.process_frames_with::<true>(buf);
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

impl GridProcessor for DynamicEq {
    fn is_active(&self) -> bool {
        self.active
    }

    fn grid_pos(&mut self) -> &mut usize {
        &mut self.grid_pos
    }

    fn process_frames(&mut self, buf: &mut [Lanes]) {
        #[cfg(target_arch = "x86_64")]
        if self.use_fma {
            // SAFETY: `use_fma` is only set when the CPU reports AVX2 and FMA
            // (`avx2_fma_available`), which is all `process_frames_fma` requires.
            unsafe { self.process_frames_fma(buf) };
            return;
        }
        self.process_frames_with::<false>(buf);
    }

    /// Flushes tiny filter states; restarts after a non-finite state or envelope.
    fn end_cell(&mut self) {
        self.detector.flush();
        self.bell.flush();
        if !self.detector.is_finite()
            || !self.bell.is_finite()
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

    /// The portable build (no FMA) and the fused one agree within rounding, band moving,
    /// cutting and releasing, on both processing paths.
    #[test]
    fn portable_build_matches_the_fused_one() {
        let fs = 48_000.0f32;
        let mut rng = Rng(0xFACE);
        let mut x = rng.noise(0.3, 9600);
        for (n, v) in x.iter_mut().enumerate() {
            *v += (0.5 * (std::f64::consts::TAU * 6500.0 * n as f64 / fs as f64).sin()) as f32;
        }
        let moved = DynEqSettings {
            freq_hz: 4000.0,
            threshold_db: -45.0,
            ..on()
        };
        let run = |fma: bool| {
            let mut p = DynamicEq::new(fs);
            p.use_fma = fma && avx2_fma_available();
            p.set_settings(&on());
            p.reset();
            let (mut l, mut r) = (x.clone(), x.clone());
            for (k, (cl, cr)) in l.chunks_mut(100).zip(r.chunks_mut(100)).enumerate() {
                p.set_settings(&if k < 40 { on() } else { moved });
                p.process(cl, cr);
            }
            l
        };
        let (portable, fused) = (run(false), run(true));
        let err = portable
            .iter()
            .zip(&fused)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err < 1.0e-5, "portable vs fused: {err}");
        assert!(portable.iter().zip(&x).any(|(a, b)| a != b));
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
