//! Tape-like saturation: a smooth, symmetric soft clipper run at 4× the sample rate.
//!
//! Transfer curve, with `g = 10^(drive_db/20)` (drive 0..24 dB):
//!
//! ```text
//! y = tanh(g·x) / g
//! ```
//!
//! Its slope at 0 is exactly 1, so low levels pass at unity gain whatever the drive (the output
//! is compensated by the drive); the output never exceeds `1/g` in magnitude; the curve is odd,
//! so it adds odd harmonics only (no DC, no even-order asymmetry). Being analytic (its nearest
//! singularities are at `g·x = ±iπ/2`), its harmonics fall off exponentially: for a 0 dBFS
//! sine driven by 12 dB, by ≈ 6.7 dB per odd harmonic (3rd −11 dB, 5th −19 dB, 15th −53 dB,
//! 35th −120 dB re the fundamental). That is what lets a finite oversampling factor keep
//! aliases down, and why 2× is not enough without further tricks: at 2× a 5 kHz tone's 15th
//! and 17th harmonics (75, 85 kHz) fold to 21 and 11 kHz only 53 and 59 dB down. At 4× the
//! first harmonic that folds into the audio band is the 35th; what the curve makes between the
//! base Nyquist and 2·fs is removed by the decimator (≥ 65 dB, see [`crate::oversampling`]);
//! measured worst alias of the driven 5 kHz sine: ≈ −84 dB (test below).
//!
//! `tanh` is computed with the rational minimax approximation used by Eigen (`ptanh_float`,
//! odd 13th-order numerator over even 6th-order denominator, input clamped to ±7.905):
//! absolute error ≤ 4·10⁻⁷, relative error ≤ 3·10⁻⁷ near 0 (checked by a test).
//!
//! Oversampling: [`crate::oversampling::Oversampler4x`] (linear phase, [`LATENCY`] samples).
//! The dry path is delayed by the same amount, so the dry/wet mix never combs, and the delay
//! stays when the module is bypassed: [`Saturation::latency_samples`] is constant.
//!
//! Controls: drive (linear gain `g`), mix and the bypass crossfade are each smoothed on a
//! linear ramp ([`Smoother`]); the output is `(1 − m)·dry + m·wet` with `m = mix·enabled`, so
//! `m = 0` (bypassed, or mix 0) gives the delayed input bit for bit. While `m` sits at 0 the
//! oversampler is not run at all (the module is then a plain delay: a ring of the last
//! `RING` inputs, filled and read in bulk); when it is needed again it is restarted *warm*:
//! the last [`PREROLL`] input samples (kept in that ring) are run through it first, which
//! rebuilds exactly the state it would have had, so re-enabling never clicks. While it runs,
//! the oversampler keeps the input itself (and gives it back delayed: the dry path); when it
//! stops, it hands its last [`PREROLL`] inputs to the ring.
//!
//! Cost (48 kHz, one core): both channels run tile by tile ([`MAX_BLOCK`] frames) through
//! passes over eight-lane vectors (`F32x8`): controls, the 4× round trip (input sanitised on
//! its way in) with the curve applied to its four phases in place (four evaluations side by
//! side, see `tanh_ratio_vec`), then the mix, straight from the registers of the last filter (see
//! `mix`). The wet path and the bypass are also compiled for AVX2 + FMA, chosen at run time
//! where the CPU has it (as `crate::limiter` does; SSE2/NEON otherwise). On the development
//! machine (release, AVX2 build; `benches/stem_modules.rs` and an A/B of the two builds on
//! the same workload): session 2 ≈ 1.6× (≈ 16 → 10 ns per stereo frame enabled, the bypass
//! ≈ 0.8 → 0.55 ns); session 4 (paired symmetric taps, fused mix, 128-frame tiles, see
//! [`crate::oversampling`]; the drive folded into the curve's clamp, see `saturate`) ≈ 1.2×
//! more (8 stems at drive 6 dB, mix 1: ≈ 9.5 → 8.0 ns per stereo frame); session 6 (the
//! controls kept between calls and refilled only when they change, no `memcpy` call in the
//! line shifts, `−limit` by a sign flip) ≈ 1.06× more at the engine's 128-frame chunks
//! (drive 12 dB, mix 0.7: ≈ 8.1 → 7.6 ns per stereo frame), bit for bit the same output.

#[cfg(target_arch = "x86_64")]
use crate::oversampling::Avx2Fma;
use crate::oversampling::{
    F32x8, HISTORY, LANES, LATENCY, MAX_BLOCK, Oversampler4x, Portable, Tile, VECTORS, lanes,
    lanes_mut,
};
use crate::settings::SaturationSettings;
use crate::smoother::Smoother;
use crate::util::{avx2_fma_available, db_to_gain, sanitize};

/// Ramp length for drive and mix changes, in milliseconds.
pub const CONTROL_RAMP_MS: f32 = 20.0;

/// Bypass crossfade length, in milliseconds.
pub const BYPASS_FADE_MS: f32 = 15.0;

/// Largest drive in dB.
pub const MAX_DRIVE_DB: f32 = 24.0;

/// Input samples replayed through the oversampler on a warm restart: at least the span of
/// input its delay lines depend on (`2·LATENCY + 2`, the impulse response and the one sample
/// of history the last decimator keeps beyond it), so that every line is refilled from real
/// input. It is also what the oversampler keeps of its input ([`HISTORY`]), which is handed
/// over to the bypass's ring when the wet path stops.
pub const PREROLL: usize = HISTORY;

/// Samples of (sanitised) input history kept per channel, in a ring: the dry delay and the
/// preroll. A power of two comfortably above `LATENCY + PREROLL`, so that the bypass moves a
/// whole engine chunk (128 frames) in one piece: [`History::push`] then [`History::read`].
const RING: usize = 256;

/// Frames per piece of the bypass: a piece is pushed before its delayed copy is read back,
/// so it must leave the `LATENCY` samples before it in the ring.
const BYPASS_PIECE: usize = RING - LATENCY;

const _: () = assert!(RING >= PREROLL && RING >= LATENCY + MAX_BLOCK && PREROLL >= 2 * LATENCY + 2);

/// Coefficients of the numerator `P(x²)` of [`tanh_approx`], highest power first.
const TANH_P: [f32; 7] = [
    -2.760_768_5e-16,
    2.000_188e-13,
    -8.604_672e-11,
    5.122_297e-8,
    1.485_722_4e-5,
    6.372_619_3e-4,
    4.893_524_6e-3,
];

/// Coefficients of the denominator `Q(x²)` of [`tanh_approx`], highest power first.
const TANH_Q: [f32; 4] = [1.198_258_4e-6, 1.185_347_1e-4, 2.268_434_6e-3, 4.893_525e-3];

/// Where [`tanh_approx`] clamps its input (`tanh` is 1 there to within `f32` precision).
const TANH_CLAMP: f32 = 7.905_311;

/// `tanh(x)` by Eigen's rational approximation (`ptanh_float`): `x·P(x²)/Q(x²)` on the clamped
/// input, `|x| ≤ 7.905311` (where `tanh` is 1 to within f32 precision). Absolute error
/// ≤ 4·10⁻⁷. Branch-free, so it vectorises.
#[inline]
pub fn tanh_approx(x: f32) -> f32 {
    let x = x.clamp(-TANH_CLAMP, TANH_CLAMP);
    let x2 = x * x;
    let p = TANH_P[1..].iter().fold(TANH_P[0], |p, &c| x2 * p + c);
    let q = TANH_Q[1..].iter().fold(TANH_Q[0], |q, &c| x2 * q + c);
    x * p / q
}

/// [`tanh_approx`] on `K` vectors of eight lanes, the same operations in the same order (the
/// multiply-adds fused in the AVX2 + FMA build). The `K` evaluations go step by step side by
/// side: each is a chain of ≈ 14 dependent operations ending in a division (≈ 50 cycles of
/// latency), which the core only overlaps as far as its scheduler reaches; interleaved, they
/// run `K` times as many operations per cycle, and each coefficient is broadcast once for all.
#[cfg(test)]
#[inline(always)]
fn tanh_vec<V: F32x8, const K: usize>(x: [V; K]) -> [V; K] {
    let (lo, hi) = (V::splat(-TANH_CLAMP), V::splat(TANH_CLAMP));
    let mut x = x;
    for x in &mut x {
        *x = x.clamp(lo, hi);
    }
    tanh_ratio_vec(x, x)
}

/// `s·P(x²)/Q(x²)` on `K` vectors (`x` already clamped to ±[`TANH_CLAMP`]): with `s = x`,
/// [`tanh_approx`]`(x)`; with `x = g·s`, the curve `tanh(g·s)/g` without a multiplication by
/// `1/g` (see [`saturate`]).
#[inline(always)]
fn tanh_ratio_vec<V: F32x8, const K: usize>(x: [V; K], s: [V; K]) -> [V; K] {
    let mut x2 = x;
    for k in 0..K {
        x2[k] = x[k].mul(x[k]);
    }
    let mut p = [V::splat(TANH_P[0]); K];
    for &c in &TANH_P[1..] {
        let c = V::splat(c);
        for k in 0..K {
            p[k] = x2[k].mul_add(p[k], c);
        }
    }
    let mut q = [V::splat(TANH_Q[0]); K];
    for &c in &TANH_Q[1..] {
        let c = V::splat(c);
        for k in 0..K {
            q[k] = x2[k].mul_add(q[k], c);
        }
    }
    let mut y = s;
    for k in 0..K {
        y[k] = s[k].mul(p[k]).div(q[k]);
    }
    y
}

/// The static transfer curve `y = tanh(g·x)/g` for a drive of `drive_db` (for drawing; no
/// oversampling, no smoothing).
pub fn transfer(x: f32, drive_db: f32) -> f32 {
    let g = db_to_gain(drive_db.clamp(0.0, MAX_DRIVE_DB));
    tanh_approx(g * x) / g
}

/// Per-frame controls of one tile.
struct Controls {
    /// Drive `g` (linear).
    gain: Tile,
    /// `TANH_CLAMP/g`: where the curve's input is clamped, before the drive.
    limit: Tile,
    /// `m = mix·enabled`, 0..1.
    wet: Tile,
    /// `1 − m`, 0..1 (the dry gain).
    dry: Tile,
    /// `Some((g, m))` (as bits) while every frame of the tile holds the settled drive `g`
    /// and mix `m`: the next settled tile with the same values needs no refill.
    settled: Option<(u32, u32)>,
}

impl Controls {
    /// Harmless values (finite, drive 1) for every frame.
    const INITIAL: Self = Self {
        gain: [1.0; MAX_BLOCK],
        limit: [TANH_CLAMP; MAX_BLOCK],
        wet: [0.0; MAX_BLOCK],
        dry: [1.0; MAX_BLOCK],
        settled: None,
    };
}

/// One channel's input history: the last [`RING`] sanitised inputs, circularly.
struct History {
    /// The samples; `buf[pos]` is the oldest, `buf[pos − 1]` the newest.
    buf: [f32; RING],
    /// Where the next input goes, 0..[`RING`].
    pos: usize,
}

impl History {
    const ZERO: Self = Self {
        buf: [0.0; RING],
        pos: 0,
    };

    /// Appends `input` (at most [`RING`] samples), sanitised: at most two bulk passes.
    #[inline(always)]
    fn push(&mut self, input: &[f32]) {
        let n = input.len().min(RING);
        let first = n.min(RING - self.pos);
        let (head, tail) = input[..n].split_at(first);
        for (h, &v) in self.buf[self.pos..self.pos + first].iter_mut().zip(head) {
            *h = sanitize(v);
        }
        for (h, &v) in self.buf.iter_mut().zip(tail) {
            *h = sanitize(v);
        }
        self.pos = (self.pos + n) % RING;
    }

    /// Copies out `out.len()` consecutive samples, the first of them pushed `back` pushes ago
    /// (`back ≤ RING`): two bulk copies at most.
    #[inline(always)]
    fn read(&self, back: usize, out: &mut [f32]) {
        let start = (self.pos + RING - back.min(RING)) % RING;
        let n = out.len().min(RING);
        let first = n.min(RING - start);
        let (head, tail) = out[..n].split_at_mut(first);
        head.copy_from_slice(&self.buf[start..start + first]);
        tail.copy_from_slice(&self.buf[..n - first]);
    }
}

/// Stereo tape-like saturation (per stem), 4× oversampled.
pub struct Saturation {
    /// Sample rate in Hz (sets the ramp lengths only: the filters scale with it).
    sample_rate: f32,
    /// One oversampler per channel (left, right).
    oversamplers: [Oversampler4x; 2],
    /// Drive as linear gain `g`, 1..15.85, smoothed.
    drive_gain: Smoother,
    /// Dry/wet mix 0..1, smoothed.
    mix: Smoother,
    /// Bypass crossfade: 1 = enabled, 0 = bypassed.
    enable: Smoother,
    /// Per channel (left, right), the sanitised input history while the wet path rests: the
    /// dry delay line and the warm-restart preroll. (While it runs, the oversamplers keep the
    /// input: [`Oversampler4x::input_history`].)
    history: Box<[History; 2]>,
    /// True while the oversamplers hold the state of continuous processing.
    wet_active: bool,
    /// The controls of the current tile (kept between calls: a settled tile is filled once).
    controls: Box<Controls>,
    /// False until the first `set_settings` after `new`, which then jumps (no ramp); `reset`
    /// jumps to the current targets, later changes ramp.
    settled_once: bool,
    /// Run the AVX2 + FMA build of the wet path (set once in `new` from the CPU's features).
    use_avx2: bool,
}

impl Saturation {
    /// Allocates a bypassed saturation at default settings.
    pub fn new(sample_rate: f32) -> Self {
        let defaults = SaturationSettings::default();
        let sr = sanitize_rate(sample_rate);
        Self {
            sample_rate: sr,
            oversamplers: [Oversampler4x::new(), Oversampler4x::new()],
            drive_gain: Smoother::new(db_to_gain(defaults.drive_db), CONTROL_RAMP_MS, sr),
            mix: Smoother::new(defaults.mix, CONTROL_RAMP_MS, sr),
            enable: Smoother::new(0.0, BYPASS_FADE_MS, sr),
            history: Box::new([History::ZERO, History::ZERO]),
            wet_active: false,
            controls: Box::new(Controls::INITIAL),
            settled_once: false,
            use_avx2: avx2_fma_available(),
        }
    }

    /// Changes the sample rate (ramp lengths); the latency in samples does not change.
    pub fn set_sample_rate(&mut self, sample_rate: f32) {
        self.sample_rate = sanitize_rate(sample_rate);
        self.drive_gain.set_ramp(CONTROL_RAMP_MS, self.sample_rate);
        self.mix.set_ramp(CONTROL_RAMP_MS, self.sample_rate);
        self.enable.set_ramp(BYPASS_FADE_MS, self.sample_rate);
        self.reset();
    }

    /// Takes new settings (real-time safe): drive clamped to 0..24 dB, mix to 0..1, both
    /// ramped; enabling/bypassing crossfades over [`BYPASS_FADE_MS`]. Non-finite values keep
    /// the previous target.
    pub fn set_settings(&mut self, settings: &SaturationSettings) {
        let drive_db = settings.drive_db.clamp(0.0, MAX_DRIVE_DB);
        if drive_db.is_finite() {
            self.drive_gain.set_target(db_to_gain(drive_db));
        }
        let mix = settings.mix.clamp(0.0, 1.0);
        if mix.is_finite() {
            self.mix.set_target(mix);
        }
        self.enable
            .set_target(if settings.enabled { 1.0 } else { 0.0 });
        if !self.settled_once {
            self.snap();
            self.settled_once = true;
        }
    }

    /// Clears the delay lines and jumps every control to its target; the next
    /// `set_settings` jumps too.
    pub fn reset(&mut self) {
        for os in &mut self.oversamplers {
            os.reset();
        }
        *self.history = [History::ZERO, History::ZERO];
        self.wet_active = false;
        self.snap();
    }

    /// Delay of the output relative to the input, in samples: [`LATENCY`], bypassed or not.
    pub fn latency_samples(&self) -> usize {
        LATENCY
    }

    /// Processes a stereo block in place (`min(left.len(), right.len())` frames).
    pub fn process(&mut self, left: &mut [f32], right: &mut [f32]) {
        let n = left.len().min(right.len());
        let (left, right) = (&mut left[..n], &mut right[..n]);
        let silent_wet = (!self.enable.is_smoothing() && self.enable.target() == 0.0)
            || (!self.mix.is_smoothing() && self.mix.target() == 0.0);
        if silent_wet {
            self.drive_gain.reset(self.drive_gain.target());
            advance(&mut self.enable, n);
            advance(&mut self.mix, n);
            #[cfg(target_arch = "x86_64")]
            if self.use_avx2 {
                // SAFETY: as for `process_wet_avx2_fma` below.
                unsafe { self.bypass_avx2(left, right) };
                return;
            }
            self.bypass(left, right);
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if self.use_avx2 {
            // SAFETY: `use_avx2` is only set when the CPU reports AVX2 and FMA
            // (`avx2_fma_available`), which is all `process_wet_avx2_fma` requires.
            unsafe { self.process_wet_avx2_fma(left, right) };
            return;
        }
        self.process_wet::<Portable>(left, right);
    }

    /// The module at rest (wet path silent): the output is the input delayed by [`LATENCY`],
    /// exactly. Per piece, the (sanitised) input goes into the ring and its delayed copy comes
    /// back out: two bulk copies each way, nothing per sample but the sanitising.
    #[inline(always)]
    fn bypass(&mut self, left: &mut [f32], right: &mut [f32]) {
        let channels = self.oversamplers.iter().zip(self.history.iter_mut());
        for (x, (os, history)) in [left, right].into_iter().zip(channels) {
            if self.wet_active {
                // The wet path kept the input in the oversampler: hand it over.
                history.push(os.input_history());
            }
            for piece in x.chunks_mut(BYPASS_PIECE) {
                history.push(piece);
                history.read(piece.len() + LATENCY, piece);
            }
        }
        self.wet_active = false;
    }

    /// [`Self::bypass`] compiled for AVX2 (the sanitising pass eight samples at a time).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn bypass_avx2(&mut self, left: &mut [f32], right: &mut [f32]) {
        self.bypass(left, right);
    }

    /// [`Self::process_wet`] compiled for AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn process_wet_avx2_fma(&mut self, left: &mut [f32], right: &mut [f32]) {
        self.process_wet::<Avx2Fma>(left, right);
    }

    /// The wet path (oversampler running) for a block, tile by tile.
    #[inline(always)]
    fn process_wet<V: F32x8>(&mut self, left: &mut [f32], right: &mut [f32]) {
        if !self.wet_active {
            self.warm_start::<V>();
        }
        for (l, r) in left.chunks_mut(MAX_BLOCK).zip(right.chunks_mut(MAX_BLOCK)) {
            self.update_controls(l.len());
            let controls = &*self.controls;
            for (x, os) in [l, r].into_iter().zip(self.oversamplers.iter_mut()) {
                os.process_tile::<V>(
                    x,
                    |phases| saturate::<V>(phases, &controls.gain, &controls.limit),
                    |wet, dry, io| mix::<V>(wet, dry, controls, io),
                );
            }
        }
    }

    /// Writes the controls for the next `len` frames (≤ [`MAX_BLOCK`]) to `self.controls`;
    /// frames past `len` keep harmless values (finite, drive ≥ 1). Settled controls are
    /// written to the whole tile, and only when they change (the refill, four tiles of
    /// stores, was ≈ 3 % of the wet path at the engine's 128-frame chunks).
    #[inline(always)]
    fn update_controls(&mut self, len: usize) {
        let c = &mut *self.controls;
        if self.drive_gain.is_smoothing() || self.mix.is_smoothing() || self.enable.is_smoothing() {
            c.settled = None;
            for i in 0..len {
                c.gain[i] = self.drive_gain.tick();
                c.limit[i] = TANH_CLAMP / c.gain[i];
                c.wet[i] = self.mix.tick() * self.enable.tick();
                c.dry[i] = 1.0 - c.wet[i];
            }
        } else {
            // The same values the per-frame ticks would give.
            let g = self.drive_gain.value();
            let m = self.mix.value() * self.enable.value();
            let key = Some((g.to_bits(), m.to_bits()));
            if c.settled != key {
                c.gain = [g; MAX_BLOCK];
                c.limit = [TANH_CLAMP / g; MAX_BLOCK];
                c.wet = [m; MAX_BLOCK];
                c.dry = [1.0 - m; MAX_BLOCK];
                c.settled = key;
            }
        }
    }

    /// Rebuilds the oversamplers' state from the last [`PREROLL`] inputs (at the current
    /// drive), as if they had been running all along.
    #[inline(always)]
    fn warm_start<V: F32x8>(&mut self) {
        let gain = [self.drive_gain.value(); MAX_BLOCK];
        let limit = [TANH_CLAMP / self.drive_gain.value(); MAX_BLOCK];
        for (os, history) in self.oversamplers.iter_mut().zip(self.history.iter()) {
            os.reset();
            let mut preroll = [0.0f32; PREROLL];
            history.read(PREROLL, &mut preroll);
            for input in preroll.chunks_mut(MAX_BLOCK) {
                os.process_tile::<V>(
                    input,
                    |phases| saturate::<V>(phases, &gain, &limit),
                    |_, _, _| {},
                );
            }
        }
        self.wet_active = true;
    }

    /// Jumps every smoother to its target.
    fn snap(&mut self) {
        self.drive_gain.reset(self.drive_gain.target());
        self.mix.reset(self.mix.target());
        self.enable.reset(self.enable.target());
    }
}

/// Applies the curve to the four phases of an oversampled tile: `tanh(g·v)/g` with the drive
/// `g = gain[i]` of base frame `i`, as `v_c·P(x²)/Q(x²)` with `v_c = v` clamped to
/// `±limit[i]` (`limit = TANH_CLAMP/g`) and `x = g·v_c` (`tanh(x)/g = (x/g)·P/Q`), which
/// saves the multiplication by `1/g`.
#[inline(always)]
fn saturate<V: F32x8>(phases: [&mut Tile; 4], gain: &Tile, limit: &Tile) {
    let [p0, p1, p2, p3] = phases;
    for i in (0..MAX_BLOCK).step_by(LANES) {
        let g = V::load(lanes(gain, i));
        let hi = V::load(lanes(limit, i));
        let lo = hi.neg();
        let mut v = [
            lanes_mut(p0, i),
            lanes_mut(p1, i),
            lanes_mut(p2, i),
            lanes_mut(p3, i),
        ];
        let (mut x, mut vc) = ([V::splat(0.0); 4], [V::splat(0.0); 4]);
        for ((x, vc), v) in x.iter_mut().zip(&mut vc).zip(&v) {
            *vc = V::load(v).clamp(lo, hi);
            *x = g.mul(*vc);
        }
        for (v, y) in v.iter_mut().zip(tanh_ratio_vec(x, vc)) {
            y.store(v);
        }
    }
}

/// The output of a tile, `y = m·w + (1 − m)·d` (wet `w`, dry `d`, `m = mix·enabled`), into
/// `io` (at most [`MAX_BLOCK`] frames). A part tile goes through a whole one, so that every
/// frame is computed by the same vector operations whatever the block size.
#[inline(always)]
fn mix<V: F32x8>(wet: &[V; VECTORS], dry: &Tile, c: &Controls, io: &mut [f32]) {
    let frame = |k: usize| {
        let i = LANES * k;
        let d = V::load(lanes(&c.dry, i)).mul(V::load(lanes(dry, i)));
        V::load(lanes(&c.wet, i)).mul_add(wet[k], d)
    };
    if io.len() == MAX_BLOCK {
        for k in 0..VECTORS {
            frame(k).store(lanes_mut(io, LANES * k));
        }
    } else {
        let mut out = [0.0f32; MAX_BLOCK];
        for k in 0..VECTORS {
            frame(k).store(lanes_mut(&mut out, LANES * k));
        }
        let n = io.len();
        io.copy_from_slice(&out[..n]);
    }
}

/// Advances a smoother by `n` samples (a settled one stays where it is).
fn advance(smoother: &mut Smoother, n: usize) {
    for _ in 0..n {
        if !smoother.is_smoothing() {
            break;
        }
        smoother.tick();
    }
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

    fn settings(enabled: bool, drive_db: f32, mix: f32) -> SaturationSettings {
        SaturationSettings {
            enabled,
            drive_db,
            mix,
        }
    }

    fn sine(freq_hz: f64, amplitude: f64, len: usize) -> Vec<f32> {
        (0..len)
            .map(|n| (amplitude * (2.0 * PI * freq_hz * n as f64 / SR as f64).sin()) as f32)
            .collect()
    }

    /// Runs `input` (same on both channels) through a fresh saturation in blocks of `block`,
    /// with `first` settings before sample `change_at` and `second` from then on (set at the
    /// start of every block, as the engine does). Returns the left output.
    fn run(
        input: &[f32],
        first: SaturationSettings,
        second: SaturationSettings,
        change_at: usize,
        block: usize,
    ) -> Vec<f32> {
        run_build(input, first, second, change_at, block, true)
    }

    /// [`run`] in the AVX2 + FMA build (`fused`, where the CPU has it) or the portable one.
    fn run_build(
        input: &[f32],
        first: SaturationSettings,
        second: SaturationSettings,
        change_at: usize,
        block: usize,
        fused: bool,
    ) -> Vec<f32> {
        let mut sat = Saturation::new(SR);
        sat.use_avx2 = fused && avx2_fma_available();
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
            sat.set_settings(if start < change_at { &first } else { &second });
            sat.process(&mut left[start..end], &mut right[start..end]);
            assert_eq!(left[start..end], right[start..end]);
            start = end;
        }
        left
    }

    /// Amplitude of the component of `x` at `freq_hz` (single-bin DFT).
    fn amplitude(x: &[f32], freq_hz: f64) -> f64 {
        let (mut re, mut im) = (0.0f64, 0.0f64);
        for (n, &v) in x.iter().enumerate() {
            let p = 2.0 * PI * freq_hz * n as f64 / SR as f64;
            re += v as f64 * p.cos();
            im += v as f64 * p.sin();
        }
        2.0 * (re * re + im * im).sqrt() / x.len() as f64
    }

    fn max_jump(y: &[f32]) -> f32 {
        y.windows(2).fold(0.0f32, |m, w| m.max((w[1] - w[0]).abs()))
    }

    /// [`tanh_vec`] in the portable build, lane 0.
    fn tanh_portable(x: f32) -> f32 {
        let mut out = [0.0; LANES];
        tanh_vec([Portable::splat(x)])[0].store(&mut out);
        out[0]
    }

    /// [`tanh_vec`] in the AVX2 + FMA build, lane 0 (only called where the CPU has them).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn tanh_avx2(x: f32) -> f32 {
        let mut out = [0.0; LANES];
        tanh_vec([Avx2Fma::splat(x)])[0].store(&mut out);
        out[0]
    }

    #[test]
    fn tanh_approximation_error() {
        // The scalar form, the portable vector form and, where the CPU has it, the fused one.
        let mut forms: Vec<fn(f32) -> f32> = vec![tanh_approx, tanh_portable];
        #[cfg(target_arch = "x86_64")]
        if avx2_fma_available() {
            // SAFETY: the CPU has AVX2 and FMA.
            forms.push(|x| unsafe { tanh_avx2(x) });
        }
        for tanh in forms {
            let mut x = -12.0f64;
            while x < 12.0 {
                let err = (tanh(x as f32) as f64 - x.tanh()).abs();
                assert!(err < 5e-7, "abs error {err} at {x}");
                x += 1.0e-3;
            }
            let mut x = 1.0e-6f64;
            while x < 1.0 {
                let rel = ((tanh(x as f32) as f64 - x.tanh()) / x.tanh()).abs();
                assert!(rel < 5e-7, "rel error {rel} at {x}");
                x *= 1.01;
            }
        }
        // The portable vector form is the scalar one, bit for bit.
        let mut x = -9.0f32;
        while x < 9.0 {
            assert_eq!(
                tanh_portable(x).to_bits(),
                tanh_approx(x).to_bits(),
                "at {x}"
            );
            x += 1.0e-3;
        }
    }

    /// The curve as the wet path applies it ([`saturate`]) on a tile of `v` at drive `g`, in
    /// the portable build and, where the CPU has it, the fused one.
    fn curve_tiles(v: &Tile, g: f32) -> Vec<Tile> {
        let (gain, limit) = ([g; MAX_BLOCK], [TANH_CLAMP / g; MAX_BLOCK]);
        let run = |saturate: &dyn Fn([&mut Tile; 4])| {
            let mut phases = [*v; 4];
            let [a, b, c, d] = &mut phases;
            saturate([a, b, c, d]);
            assert!(phases.iter().all(|p| p == &phases[0]));
            phases[0]
        };
        let mut out = vec![run(&|p| saturate::<Portable>(p, &gain, &limit))];
        #[cfg(target_arch = "x86_64")]
        if avx2_fma_available() {
            out.push(run(&|p| {
                // SAFETY: the CPU has AVX2 and FMA.
                unsafe { saturate_avx2(p, &gain, &limit) }
            }));
        }
        out
    }

    /// [`saturate`] in the AVX2 + FMA build (only called where the CPU has them).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn saturate_avx2(phases: [&mut Tile; 4], gain: &Tile, limit: &Tile) {
        saturate::<Avx2Fma>(phases, gain, limit);
    }

    #[test]
    fn curve_is_tanh_of_the_driven_input_over_the_drive() {
        // `v·P/Q` with the drive folded in: within 6·10⁻⁷ of `tanh(g·v)/g` relative to the
        // ceiling `1/g`, as `tanh_approx` is of `tanh` (≤ 5·10⁻⁷), plus a rounding.
        let mut worst = 0.0f64;
        for drive_db in [0.0f32, 6.0, 12.0, 24.0] {
            let g = db_to_gain(drive_db);
            for start in 0..400 {
                let v: Tile = std::array::from_fn(|i| {
                    -2.0 + 4.0 * (start * MAX_BLOCK + i) as f32 / (400 * MAX_BLOCK) as f32
                });
                for y in curve_tiles(&v, g) {
                    for (&v, &y) in v.iter().zip(&y) {
                        let exact = (g as f64 * v as f64).tanh() / g as f64;
                        worst = worst.max((y as f64 - exact).abs() * g as f64);
                    }
                }
            }
        }
        eprintln!("curve: worst error {worst:.2e} of the ceiling");
        assert!(worst < 6e-7, "error {worst:.2e} of the ceiling");
    }

    #[test]
    fn fused_build_matches_the_portable_one() {
        // Only meaningful where the CPU has AVX2 and FMA (the other build is then compared
        // with it); elsewhere both runs take the portable path.
        let x = sine(3000.0, 0.9, 3000);
        let s = settings(true, 18.0, 0.8);
        let outputs: Vec<Vec<f32>> = [false, true]
            .iter()
            .map(|&fused| {
                let mut sat = Saturation::new(SR);
                sat.use_avx2 = fused && avx2_fma_available();
                sat.set_settings(&s);
                let (mut l, mut r) = (x.clone(), x.clone());
                for (cl, cr) in l.chunks_mut(500).zip(r.chunks_mut(500)) {
                    sat.process(cl, cr);
                }
                l
            })
            .collect();
        let err = outputs[0]
            .iter()
            .zip(&outputs[1])
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err < 1e-5, "fused vs portable: {err}");
    }

    /// Worst non-harmonic component (dB re the fundamental) of a 5 kHz sine of `amplitude`
    /// driven by 12 dB at 48 kHz. Components land on multiples of 1 kHz; 5 and 15 kHz are the
    /// true harmonics, every other one is an alias (25 k → 23 k, 35 k → 13 k, 45 k → 3 k …).
    fn worst_alias_db(peak: f64) -> (f64, usize) {
        let x = sine(5000.0, peak, 4800 * 2);
        let y = run(
            &x,
            settings(true, 12.0, 1.0),
            settings(true, 12.0, 1.0),
            0,
            512,
        );
        worst_component_db(&y[4800..])
    }

    /// Largest component at a multiple of 1 kHz other than 5 and 15 kHz, in dB re 5 kHz.
    fn worst_component_db(seg: &[f32]) -> (f64, usize) {
        let fundamental = amplitude(seg, 5000.0);
        let mut worst = (f64::NEG_INFINITY, 0);
        for khz in (0..=23).filter(|k| *k != 5 && *k != 15) {
            let db = 20.0 * (amplitude(seg, khz as f64 * 1000.0) / fundamental).log10();
            if db > worst.0 {
                worst = (db, khz);
            }
        }
        worst
    }

    #[test]
    fn aliases_of_a_driven_5k_sine_are_60_db_down() {
        for amp in [1.0, 0.5] {
            let (db, khz) = worst_alias_db(amp);
            eprintln!("5 kHz at {amp}, +12 dB drive: worst alias {db:.1} dB at {khz} kHz");
            assert!(
                db < -60.0,
                "alias {db:.1} dB at {khz} kHz (amplitude {amp})"
            );
        }
        // The measurement sees aliasing when there is some: the same curve without
        // oversampling.
        let naive: Vec<f32> = sine(5000.0, 1.0, 4800)
            .iter()
            .map(|&v| transfer(v, 12.0))
            .collect();
        assert!(worst_component_db(&naive).0 > -40.0);
    }

    #[test]
    fn latency_is_constant_and_bypass_is_an_exact_delay() {
        let x = sine(997.0, 0.8, 3000);
        let mut sat = Saturation::new(SR);
        assert_eq!(sat.latency_samples(), LATENCY);
        sat.set_settings(&settings(true, 24.0, 1.0));
        assert_eq!(sat.latency_samples(), LATENCY);
        for s in [
            SaturationSettings::default(),
            settings(false, 24.0, 1.0),
            settings(true, 24.0, 0.0),
        ] {
            let y = run(&x, s, s, 0, 256);
            for n in 0..x.len() {
                let expected = if n >= LATENCY { x[n - LATENCY] } else { 0.0 };
                assert_eq!(y[n].to_bits(), expected.to_bits(), "{s:?} at {n}");
            }
        }
    }

    #[test]
    fn low_levels_pass_at_unity_gain_and_mix_does_not_comb() {
        for (drive_db, mix, freq) in [
            (24.0, 1.0, 1000.0),
            (24.0, 0.5, 10_000.0),
            (12.0, 0.5, 19_000.0),
        ] {
            let x = sine(freq, 0.001, 4800);
            let y = run(
                &x,
                settings(true, drive_db, mix),
                settings(true, drive_db, mix),
                0,
                512,
            );
            let err = (1000..x.len())
                .map(|n| (y[n] - x[n - LATENCY]).abs())
                .fold(0.0f32, f32::max);
            assert!(
                err < 2e-6,
                "drive {drive_db} mix {mix} at {freq} Hz: error {err}"
            );
        }
    }

    #[test]
    fn output_is_bounded_by_the_compensated_ceiling() {
        let x = sine(100.0, 1.0, 4800);
        let y = run(
            &x,
            settings(true, 12.0, 1.0),
            settings(true, 12.0, 1.0),
            0,
            512,
        );
        let peak = y.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let ceiling = 1.0 / db_to_gain(12.0);
        assert!(
            peak < ceiling * 1.02 && peak > ceiling * 0.95,
            "peak {peak}"
        );
    }

    #[test]
    fn block_size_does_not_change_the_output() {
        let x = sine(440.0, 0.9, 6000);
        let a = settings(true, 6.0, 1.0);
        let b = settings(true, 18.0, 0.7);
        let reference = run(&x, a, b, 2048, 1);
        for block in [7, 64, 512] {
            assert_eq!(run(&x, a, b, 2048, block), reference, "block {block}");
        }
    }

    #[test]
    fn portable_build_is_block_size_independent_too() {
        let x = sine(440.0, 0.9, 5000);
        let a = settings(true, 6.0, 1.0);
        let b = settings(true, 18.0, 0.7);
        let reference = run_build(&x, a, b, 2048, 1, false);
        for block in [7, 64, 300] {
            assert_eq!(
                run_build(&x, a, b, 2048, block, false),
                reference,
                "block {block}"
            );
        }
    }

    #[test]
    fn short_rest_hands_the_input_over_exactly() {
        // On, off for the fade and 30 samples more (the oversampler rests and hands its input
        // history to the bypass ring), on again: once the fade back in is over, the output is
        // the always-on output exactly, whatever the block size.
        let x = sine(1234.0, 0.9, 8000);
        let (on, off) = (settings(true, 12.0, 1.0), settings(false, 12.0, 1.0));
        let fade = (BYPASS_FADE_MS * 0.001 * SR) as usize;
        let (stop, restart) = (3000, 3000 + fade + 30);
        for block in [1, 7, 64, 500] {
            let always = run(&x, on, on, 0, block);
            let mut sat = Saturation::new(SR);
            let (mut l, mut r) = (x.clone(), x.clone());
            let mut start = 0;
            while start < x.len() {
                let mut end = (start + block).min(x.len());
                for edge in [stop, restart] {
                    if start < edge {
                        end = end.min(edge);
                    }
                }
                let on_now = !(stop..restart).contains(&start);
                sat.set_settings(if on_now { &on } else { &off });
                sat.process(&mut l[start..end], &mut r[start..end]);
                start = end;
            }
            let settled = restart + fade + 1;
            assert_eq!(always[settled..], l[settled..], "block {block}");
        }
    }

    #[test]
    fn controls_follow_a_jump_between_settled_values() {
        // Settled controls are kept between calls and refilled only when they change: after
        // a jump (`reset` snaps every control to its new target, no ramp), the output must be
        // that of a fresh instance at the new settings, not one made with the old controls.
        let x = sine(700.0, 0.9, 2000);
        let (a, b) = (settings(true, 3.0, 0.4), settings(true, 21.0, 0.9));
        for fused in [false, true] {
            let mut sat = Saturation::new(SR);
            sat.use_avx2 = fused && avx2_fma_available();
            sat.set_settings(&a);
            let (mut l, mut r) = (x.clone(), x.clone());
            sat.process(&mut l, &mut r);
            sat.set_settings(&b);
            sat.reset();
            let (mut l, mut r) = (x.clone(), x.clone());
            for (cl, cr) in l.chunks_mut(128).zip(r.chunks_mut(128)) {
                sat.process(cl, cr);
            }
            assert_eq!(l, run_build(&x, b, b, 0, 128, fused), "fused {fused}");
        }
    }

    #[test]
    fn warm_restart_rebuilds_the_exact_state() {
        let x = sine(1234.0, 0.9, 8000);
        let on = settings(true, 12.0, 1.0);
        let always = run(&x, on, on, 0, 100);
        let restarted = run(&x, settings(false, 12.0, 1.0), on, 3000, 100);
        let settled = 3000 + (BYPASS_FADE_MS * 0.001 * SR) as usize + 1;
        assert_eq!(always[settled..], restarted[settled..]);
    }

    /// A step of a control during a 1 kHz sine never makes a larger sample-to-sample jump than
    /// the runs that had the first or second setting all along (within 5 %).
    fn assert_click_free(first: SaturationSettings, second: SaturationSettings) {
        let change_at = 24 * 512;
        // A cosine, so that the control steps at a peak of the signal, where a jump shows most.
        let x: Vec<f32> = (0..change_at + 9600)
            .map(|n| (0.5 * (2.0 * PI * 1000.0 * n as f64 / SR as f64).cos()) as f32)
            .collect();
        let window = change_at - 480..change_at + 4800;
        for block in [1, 512] {
            let step = max_jump(&run(&x, first, second, change_at, block)[window.clone()]);
            let before = max_jump(&run(&x, first, first, 0, block)[window.clone()]);
            let after = max_jump(&run(&x, second, second, 0, block)[window.clone()]);
            assert!(
                step <= 1.05 * before.max(after),
                "{first:?} → {second:?}, block {block}: {step} vs {before} / {after}"
            );
        }
    }

    #[test]
    fn drive_automation_is_click_free() {
        assert_click_free(settings(true, 0.0, 1.0), settings(true, 24.0, 1.0));
        assert_click_free(settings(true, 24.0, 1.0), settings(true, 0.0, 1.0));
    }

    #[test]
    fn mix_automation_is_click_free() {
        assert_click_free(settings(true, 24.0, 0.0), settings(true, 24.0, 1.0));
        assert_click_free(settings(true, 24.0, 1.0), settings(true, 24.0, 0.0));
    }

    #[test]
    fn bypass_is_click_free() {
        assert_click_free(settings(false, 24.0, 1.0), settings(true, 24.0, 1.0));
        assert_click_free(settings(true, 24.0, 1.0), settings(false, 24.0, 1.0));
    }

    #[test]
    fn recovers_from_nan_and_inf() {
        let mut x = sine(500.0, 0.7, 4000);
        let mut clean = x.clone();
        for n in 1000..1010 {
            x[n] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.0e-40][n % 4];
            clean[n] = 0.0;
        }
        let s = settings(true, 18.0, 0.8);
        let y = run(&x, s, s, 0, 64);
        assert!(y.iter().all(|v| v.is_finite()));
        assert_eq!(y, run(&clean, s, s, 0, 64));
        let mut sat = Saturation::new(SR);
        sat.set_settings(&SaturationSettings {
            enabled: true,
            drive_db: f32::NAN,
            mix: f32::INFINITY,
        });
        let (mut l, mut r) = (vec![0.5f32; 256], vec![-0.5f32; 256]);
        sat.process(&mut l, &mut r);
        assert!(l.iter().chain(&r).all(|v| v.is_finite()));
    }

    /// Timing, run by hand: `cargo test -p stembus-dsp --lib saturation::tests::speed --
    /// --ignored --nocapture`.
    #[test]
    #[ignore]
    fn speed() {
        let len = 4800;
        let x = sine(110.0, 0.8, len);
        for (name, s, fused) in [
            ("enabled", settings(true, 12.0, 0.7), true),
            ("enabled, portable build", settings(true, 12.0, 0.7), false),
            ("bypassed", settings(false, 12.0, 1.0), true),
        ] {
            let mut sat = Saturation::new(SR);
            sat.use_avx2 = fused && avx2_fma_available();
            sat.set_settings(&s);
            let (mut l, mut r) = (x.clone(), x.clone());
            let mut best = f64::INFINITY;
            for _ in 0..40 {
                let start = std::time::Instant::now();
                for (cl, cr) in l.chunks_mut(512).zip(r.chunks_mut(512)) {
                    sat.process(cl, cr);
                }
                best = best.min(start.elapsed().as_nanos() as f64 / len as f64);
                l.copy_from_slice(&x);
                r.copy_from_slice(&x);
            }
            eprintln!("saturation {name}: {best:.1} ns per stereo frame");
        }
    }
}
