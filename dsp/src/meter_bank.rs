//! Meters of up to eight stereo stems at once ([`StemMeterBank`]): the same measurements and
//! publication as one [`MeterSet`](crate::meters::MeterSet) per stem, at a fraction of the
//! cost.
//!
//! # What is shared, what is batched
//! Per stem the bank keeps exactly what a `MeterSet` keeps (peaks since the last publish and
//! since the reset, the 5 ms ticks of the RMS / correlation window, the loudness windows and
//! histograms: the crate-private `MeterState`) and publishes it the same way, so every
//! [`MeterReading`] field and the [`PublishedMeters`] protocol ("maximum since the previous
//! read", reset requests, `−∞` for no value) are unchanged. The per-sample work runs for all
//! stems together, on the frames transposed to lane-major order (8 × 8 blocks): one 8-lane
//! `f32` vector holds left and right of four stems, so eight stems take two vectors per frame
//! and nothing needs a horizontal reduction:
//!
//! - in the pass that transposes (and copies each channel after its history, for the FIR):
//!   sample peaks, the input check (finite, `|x| ≤ 10⁶`) and the true-peak bound statistics
//!   (`max|x|`, `max|Δx|`, `max|Δ²x|` per sub-block of 16 frames, as integer maxima of the
//!   magnitudes' bit patterns, so that NaN is kept and one compare per sub-block does the
//!   check) and the bounds themselves (see `TruePeakFir` in [`crate::meters`]);
//! - K-weighting (BS.1770-4) in `f32` (`KLanes8`: within 0.003 dB of the `f64` filter of a
//!   `MeterSet`, see its doc) and, per tick segment, the raw `Σl², Σr², Σl·r` (the products
//!   `l·r` from the vector times itself with neighbouring lanes swapped).
//!
//! The true-peak FIR runs per channel, on windows read in place from the channel copies, for
//! the sub-blocks whose bound exceeds the maximum held so far (the candidates of all lanes of
//! a group found by one compare per sub-block). All stems share the sample rate and the start, so
//! their 5 ms ticks fall on the same frames and a block is cut into the same segments for all
//! of them.
//!
//! On x86_64 with AVX2 and FMA (detected once, in `new`) the inner loops run as AVX2 + FMA
//! code; elsewhere the portable code runs, with the same
//! results to float rounding. Nothing allocates after `new`; any block size gives the same
//! readings but for the rounding of the RMS / correlation sums (the K-weighted squares are
//! summed per tick in the filter state).
//!
//! # Cost
//! `benches/meters.rs`, eight stems at 48 kHz in 128-frame chunks (AMD EPYC, AVX2, shared
//! machine): ≈ 18 ns per frame for music-like stems, ≈ 27 ns for stems carrying −12 dB of
//! white noise and ≈ 37 ns for dense limited noise (where the true-peak FIR runs almost
//! everywhere), against ≈ 90–100 ns for eight `MeterSet`s before this bank. Roughly a third is
//! the true-peak FIR (material-dependent), a fifth the K-weighting, the rest the statistics,
//! the transposition and the 5 ms / 100 ms bookkeeping of each stem. Session 3 (fused
//! transpose + statistics, a spill-free K-weighting loop with the raw sums apart, windows in
//! place, grouped skip tests) took ≈ 13 % of the instructions off (callgrind, engine
//! material: 237 → 206 per frame for eight stems, 94 → 81 for the bus bank of three).

use crate::MAX_STEMS;
use crate::loudness::{KLanes8, KWeighting, LoudnessMeter};
use crate::meters::{
    HIST, MeterReading, MeterState, PIECE, PublishedMeters, SUB, SUBS, TruePeakFir, WINDOW,
    window_max,
};
use crate::util::{MAX_INPUT, avx2_fma_available, sanitize};

/// Stems per vector (eight `f32` lanes: left and right of four stems).
const STEMS_PER_GROUP: usize = 4;

/// Vectors (groups of stems) for [`MAX_STEMS`] stems.
const GROUPS: usize = MAX_STEMS.div_ceil(STEMS_PER_GROUP);

/// Lanes per vector: the channels of a group.
const LANES: usize = 2 * STEMS_PER_GROUP;

/// One frame of a group: its channels side by side.
type Frame = [f32; LANES];

/// One channel's samples: the last [`HIST`] before the piece, then the piece.
type Chan = [f32; HIST + PIECE];

/// Silence, for the stems a block does not give.
static SILENCE: [f32; PIECE] = [0.0; PIECE];

/// Audio-thread meters of up to [`MAX_STEMS`] stereo stems. See the module doc.
pub struct StemMeterBank {
    /// Number of stems metered, 1..=[`MAX_STEMS`].
    num_stems: usize,
    /// Per stem: everything measured and its publication, `[num_stems]`.
    stems: Box<[MeterState]>,
    /// Per channel (stem `s` left at `2s`, right at `2s + 1`): its last [`HIST`] samples
    /// before the piece, then the piece (copied by [`Group::load`]), so that every
    /// sub-block's true-peak window is one contiguous slice.
    chans: Box<[Chan; 2 * MAX_STEMS]>,
    /// Per group of four stems: the lane-major piece and what is taken from it.
    groups: Box<[Group; GROUPS]>,
    /// Sanitised copies of the channels of a piece that held bad samples.
    scratch: Box<[[f32; PIECE]; 2 * MAX_STEMS]>,
    /// K-weighting coefficients (those of every stem's loudness meter).
    k: KWeighting,
    /// True-peak filter and bound constants.
    fir: TruePeakFir,
    /// Whether the CPU runs the AVX2 + FMA build.
    use_fma: bool,
}

/// Per-lane bound statistics (see `SubStats` in [`crate::meters`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct LaneStats {
    /// `max |x|` per lane.
    peak: Frame,
    /// `max |Δx|` per lane.
    d1: Frame,
    /// `max |Δ²x|` per lane.
    d2: Frame,
}

impl LaneStats {
    fn max(self, o: Self) -> Self {
        let m = |a: Frame, b: Frame| std::array::from_fn(|l| a[l].max(b[l]));
        Self {
            peak: m(self.peak, o.peak),
            d1: m(self.d1, o.d1),
            d2: m(self.d2, o.d2),
        }
    }
}

/// Four stems (eight channels) side by side. Lane `2i` / `2i + 1` is the left / right
/// channel of stem `4g + i`.
#[derive(Clone)]
struct Group {
    /// K-weighting state and tick sums.
    lanes: KLanes8,
    /// The current piece, lane-major, `[PIECE]` frames.
    frames: [Frame; PIECE],
    /// The two frames before the piece (older first).
    prev: [Frame; 2],
    /// Statistics covering the 15 samples before the piece (per lane).
    hist_stats: LaneStats,
    /// Statistics of the last and the last-but-one sub-block of the piece.
    last_stats: [LaneStats; 2],
    /// True-peak bound of each sub-block of the piece, per lane.
    bounds: [Frame; SUBS],
    /// Largest `|x|` of the piece, per lane.
    peaks: Frame,
}

impl Group {
    fn new() -> Self {
        Self {
            lanes: KLanes8::new(),
            frames: [[0.0; LANES]; PIECE],
            prev: [[0.0; LANES]; 2],
            hist_stats: LaneStats::default(),
            last_stats: [LaneStats::default(); 2],
            bounds: [[0.0; LANES]; SUBS],
            peaks: [0.0; LANES],
        }
    }

    /// Copies `len` (1..=[`PIECE`]) frames of the channels `src` into `frames` lane-major
    /// and into the pieces of `bufs` (after their histories), and takes their statistics
    /// (after `prev` and `hist_stats`): `peaks`, `bounds`, `last_stats`. False if a sample
    /// is NaN, ±Inf or beyond ±`MAX_INPUT`. Changes nothing that outlives the piece (it may
    /// run twice).
    ///
    /// # Safety
    /// With `FMA`, the CPU must support AVX2 and FMA.
    #[inline(always)]
    unsafe fn load<const FMA: bool>(
        &mut self,
        fir: &TruePeakFir,
        src: &[&[f32]; LANES],
        bufs: &mut [Chan; LANES],
        len: usize,
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        if FMA {
            // SAFETY: the caller guarantees AVX2 and FMA.
            return unsafe { simd::load(self, fir, src, bufs, len) };
        }
        for (buf, x) in bufs.iter_mut().zip(src) {
            buf[HIST..HIST + len].copy_from_slice(&x[..len]);
        }
        for (n, f) in self.frames[..len].iter_mut().enumerate() {
            for (c, v) in f.iter_mut().enumerate() {
                *v = bufs[c][HIST + n];
            }
        }
        self.measure(fir, len)
    }

    /// Bit `8k + l` set: the true-peak bound of sub-block `k` (< `subs`) in lane `l`
    /// exceeds `held[l]`.
    ///
    /// # Safety
    /// With `FMA`, the CPU must support AVX2 and FMA.
    #[inline(always)]
    unsafe fn above<const FMA: bool>(&self, subs: usize, held: &Frame) -> u64 {
        #[cfg(target_arch = "x86_64")]
        if FMA {
            // SAFETY: the caller guarantees AVX2 and FMA.
            return unsafe { simd::above(&self.bounds[..subs], held) };
        }
        let mut bits = 0u64;
        for (k, b) in self.bounds[..subs].iter().enumerate() {
            for l in 0..LANES {
                bits |= u64::from(b[l] > held[l]) << (LANES * k + l);
            }
        }
        bits
    }

    /// The statistics part of [`Self::load`] (portable), on the frames already in `frames`.
    fn measure(&mut self, fir: &TruePeakFir, len: usize) -> bool {
        let [mut x1, mut x2] = [self.prev[1], self.prev[0]];
        let mut ok = true;
        let mut before = self.hist_stats;
        self.peaks = [0.0; LANES];
        for k in 0..len.div_ceil(SUB) {
            let mut st = LaneStats::default();
            for x in &self.frames[k * SUB..((k + 1) * SUB).min(len)] {
                for l in 0..LANES {
                    let v = x[l].abs();
                    ok &= v <= MAX_INPUT;
                    st.peak[l] = st.peak[l].max(v);
                    let e1 = x[l] - x1[l];
                    st.d1[l] = st.d1[l].max(e1.abs());
                    st.d2[l] = st.d2[l].max((e1 - (x1[l] - x2[l])).abs());
                }
                (x2, x1) = (x1, *x);
            }
            let w = before.max(st);
            self.bounds[k] = std::array::from_fn(|l| fir.bound_of(w.peak[l], w.d1[l], w.d2[l]));
            self.peaks = std::array::from_fn(|l| self.peaks[l].max(st.peak[l]));
            self.last_stats = [st, before];
            before = st;
        }
        ok
    }

    /// Ends the piece of `len` (≥ 1) frames: the frames and statistics the next one needs.
    fn end_piece(&mut self, len: usize) {
        self.prev = if len >= 2 {
            [self.frames[len - 2], self.frames[len - 1]]
        } else {
            [self.prev[1], self.frames[0]]
        };
        // The 15 samples before the next piece: the last sub-block if whole, else the last
        // (partial) one and the one before it (or the history before this piece).
        let [last, before] = self.last_stats;
        self.hist_stats = if len.is_multiple_of(SUB) {
            last
        } else {
            last.max(before)
        };
    }
}

impl StemMeterBank {
    /// Allocates meters for `num_stems` stems (clamped to 1..=[`MAX_STEMS`]) at
    /// `sample_rate` (Hz).
    pub fn new(sample_rate: f32, num_stems: usize) -> Self {
        let num_stems = num_stems.clamp(1, MAX_STEMS);
        let stems: Box<[MeterState]> = (0..num_stems)
            .map(|_| MeterState::new(sample_rate))
            .collect();
        let k = stems[0].k_weighting();
        Self {
            num_stems,
            stems,
            chans: Box::new([[0.0; HIST + PIECE]; 2 * MAX_STEMS]),
            groups: Box::new(std::array::from_fn(|_| Group::new())),
            scratch: Box::new([[0.0; PIECE]; 2 * MAX_STEMS]),
            k,
            fir: TruePeakFir::new(),
            use_fma: avx2_fma_available(),
        }
    }

    /// Number of stems metered.
    pub fn num_stems(&self) -> usize {
        self.num_stems
    }

    /// Clears everything (integrated, LRA, maxima, histories, filter states) of every stem.
    pub fn reset(&mut self) {
        for s in self.stems.iter_mut() {
            s.reset();
        }
        *self.chans = [[0.0; HIST + PIECE]; 2 * MAX_STEMS];
        for g in self.groups.iter_mut() {
            *g = Group::new();
        }
    }

    /// Restarts the programme measurement (integrated loudness, LRA, maxima, peak holds) of
    /// every stem.
    pub fn reset_programme(&mut self) {
        for s in self.stems.iter_mut() {
            s.reset_programme();
        }
    }

    /// Meters a block of every stem: `stems[i]` is stem `i`'s `[left, right]`. The shortest
    /// slice sets the block length; stems from `stems.len()` to [`Self::num_stems`] are
    /// metered as silence, extra entries are ignored.
    pub fn process(&mut self, stems: &[[&[f32]; 2]]) {
        let given = stems.len().min(self.num_stems);
        let n = stems[..given]
            .iter()
            .flatten()
            .map(|c| c.len())
            .min()
            .unwrap_or(0);
        if self.use_fma {
            // SAFETY: `use_fma` is only set when the CPU has AVX2 and FMA.
            unsafe { self.process_fma(&stems[..given], n) };
        } else {
            // SAFETY: no requirement without FMA.
            unsafe { self.process_impl::<false>(&stems[..given], n) };
        }
    }

    /// [`Self::process_impl`] compiled for AVX2 and FMA.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
    unsafe fn process_fma(&mut self, stems: &[[&[f32]; 2]], n: usize) {
        // SAFETY: forwarded.
        unsafe { self.process_impl::<true>(stems, n) };
    }

    /// Meters `n` frames of `stems` (each at least `n` long; missing stems are silent), in
    /// pieces of at most [`PIECE`] frames.
    ///
    /// # Safety
    /// With `FMA`, the CPU must support AVX2 and FMA.
    #[inline(always)]
    unsafe fn process_impl<const FMA: bool>(&mut self, stems: &[[&[f32]; 2]], n: usize) {
        let Self {
            num_stems,
            stems: states,
            chans,
            groups,
            scratch,
            k,
            fir,
            ..
        } = self;
        let num_stems = *num_stems;
        let used_groups = num_stems.div_ceil(STEMS_PER_GROUP);
        let (chan_groups, _) = chans.as_chunks_mut::<LANES>();
        let mut pos = 0;
        while pos < n {
            let len = (n - pos).min(PIECE);
            let mut src: [&[f32]; 2 * MAX_STEMS] = [&SILENCE[..len]; 2 * MAX_STEMS];
            for (s, [l, r]) in stems.iter().enumerate() {
                src[2 * s] = &l[pos..pos + len];
                src[2 * s + 1] = &r[pos..pos + len];
            }

            // Copy, transpose, check, statistics and bounds, per group.
            let mut bad = [false; GROUPS];
            for (g, (group, bufs)) in groups.iter_mut().zip(chan_groups.iter_mut()).enumerate() {
                if g < used_groups {
                    let x: &[&[f32]; LANES] = src[g * LANES..(g + 1) * LANES]
                        .try_into()
                        .expect("LANES channels");
                    // SAFETY (here and below): forwarded.
                    bad[g] = !unsafe { group.load::<FMA>(fir, x, bufs, len) };
                }
            }
            if bad.iter().any(|&b| b) {
                // Slow path: sanitised copies of the bad groups' channels.
                let (scratch_groups, _) = scratch.as_chunks_mut::<LANES>();
                let all = groups.iter_mut().zip(chan_groups.iter_mut());
                for (g, ((group, bufs), copies)) in all.zip(scratch_groups).enumerate() {
                    if !bad[g] {
                        continue;
                    }
                    for (c, copy) in copies.iter_mut().enumerate() {
                        for (d, &x) in copy.iter_mut().zip(src[g * LANES + c]) {
                            *d = sanitize(x);
                        }
                        src[g * LANES + c] = &copy[..len];
                    }
                    let x: &[&[f32]; LANES] = src[g * LANES..(g + 1) * LANES]
                        .try_into()
                        .expect("LANES channels");
                    unsafe { group.load::<FMA>(fir, x, bufs, len) };
                }
            }

            // Sample and true peaks, per stem. The FIR runs for the sub-blocks whose bound
            // exceeds the maximum held so far (the exact skip test of `TruePeakFir`); the
            // candidates of a whole group are found at once, against the maxima held before
            // the piece's FIR, and each is tested again against the maximum as it rises.
            let subs = len.div_ceil(SUB);
            let all = groups.iter().zip(chan_groups.iter()).take(used_groups);
            for ((group, bufs), states) in all.zip(states.chunks_mut(STEMS_PER_GROUP)) {
                let mut held = [0.0f32; LANES];
                for (i, state) in states.iter_mut().enumerate() {
                    let peaks = [group.peaks[2 * i], group.peaks[2 * i + 1]];
                    state.add_sample_peaks(peaks);
                    let h = state.true_peak.max(peaks[0]).max(peaks[1]);
                    held[2 * i..2 * i + 2].fill(h);
                }
                let above = unsafe { group.above::<FMA>(subs, &held) };
                for (i, state) in states.iter_mut().enumerate() {
                    let mut h = held[2 * i];
                    // This stem's lanes (2i, 2i + 1) of every sub-block.
                    let mut bits = above & (0x0303_0303_0303_0303u64 << (2 * i));
                    while bits != 0 {
                        let b = bits.trailing_zeros() as usize;
                        bits &= bits - 1;
                        let (sub, lane) = (b / LANES, b % LANES);
                        if group.bounds[sub][lane] > h {
                            let start = HIST + sub * SUB + SUB - WINDOW;
                            let w: &[f32; WINDOW] = bufs[lane][start..start + WINDOW]
                                .try_into()
                                .expect("WINDOW samples");
                            let m =
                                unsafe { window_max::<FMA>(fir, w, (len - sub * SUB).min(SUB)) };
                            h = if m > h { m } else { h };
                        }
                    }
                    state.add_true_peak(h);
                }
            }

            // K-weighting and raw sums in segments that end on the (common) tick boundaries.
            let mut p = 0;
            while p < len {
                let seg = (len - p).min(states[0].loudness.samples_to_tick());
                let mut sums = [([0.0f32; LANES], [0.0f32; LANES]); GROUPS];
                for (group, sums) in groups[..used_groups].iter_mut().zip(&mut sums) {
                    let x = &group.frames[p..p + seg];
                    *sums = unsafe { group.lanes.process_with_sums::<FMA>(k, x) };
                }
                for (g, (sq, cross)) in sums[..used_groups].iter().enumerate() {
                    for i in 0..STEMS_PER_GROUP {
                        if let Some(state) = states.get_mut(g * STEMS_PER_GROUP + i) {
                            let sums = [sq[2 * i], sq[2 * i + 1], cross[2 * i]].map(f64::from);
                            state.add_raw_sums(sums, seg);
                        }
                    }
                }
                let mut tick = false;
                for state in states.iter_mut() {
                    tick = state.loudness.advance(seg);
                }
                if tick {
                    for (g, group) in groups[..used_groups].iter_mut().enumerate() {
                        let e = group.lanes.take_tick(k);
                        for i in 0..STEMS_PER_GROUP {
                            if let Some(state) = states.get_mut(g * STEMS_PER_GROUP + i) {
                                state.close_tick(e[2 * i] + e[2 * i + 1]);
                            }
                        }
                    }
                }
                p += seg;
            }

            for buf in chan_groups.iter_mut().flatten().take(2 * num_stems) {
                buf.copy_within(len..len + HIST, 0);
            }
            for group in &mut groups[..used_groups] {
                group.end_piece(len);
            }
            pos += len;
        }
    }

    /// The current values of stem `stem` (< [`Self::num_stems`]), read directly (offline
    /// analysis, tests); see [`MeterSet::reading`](crate::meters::MeterSet::reading).
    pub fn reading(&self, stem: usize) -> MeterReading {
        self.stems[stem].reading()
    }

    /// The loudness meter of stem `stem` (< [`Self::num_stems`]).
    pub fn loudness(&self, stem: usize) -> &LoudnessMeter {
        &self.stems[stem].loudness
    }

    /// Current stereo correlation of stem `stem` (< [`Self::num_stems`]), −1..+1.
    pub fn correlation(&self, stem: usize) -> f32 {
        self.stems[stem].correlation()
    }

    /// Writes the current values of stem `i` to `out[i]` (after each block), performing the
    /// resets readers requested; see [`MeterSet::publish`](crate::meters::MeterSet::publish).
    /// Stems without an `out` entry are not published.
    pub fn publish(&mut self, out: &[PublishedMeters]) {
        for (state, out) in self.stems.iter_mut().zip(out) {
            state.publish(out);
        }
    }

    /// Writes the current values of stem `stem` only to `out` (see [`Self::publish`]); an
    /// index past [`Self::num_stems`] publishes nothing.
    pub fn publish_one(&mut self, stem: usize, out: &PublishedMeters) {
        if let Some(state) = self.stems.get_mut(stem) {
            state.publish(out);
        }
    }
}

/// AVX2 + FMA versions of the lane-major loops.
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{Chan, Frame, Group, HIST, LANES, LaneStats, PIECE, SUB};
    use crate::meters::TruePeakFir;
    use crate::util::MAX_INPUT;
    use std::arch::x86_64::*;

    /// Eight lanes from a frame.
    #[inline(always)]
    fn ld(f: &Frame) -> __m256 {
        // SAFETY: eight floats; only called from AVX2 code.
        unsafe { _mm256_loadu_ps(f.as_ptr()) }
    }

    /// A frame from eight lanes.
    #[inline(always)]
    fn st(v: __m256) -> Frame {
        let mut f = [0.0f32; LANES];
        // SAFETY: eight floats; only called from AVX2 code.
        unsafe { _mm256_storeu_ps(f.as_mut_ptr(), v) };
        f
    }

    /// Transposes eight rows (eight samples of eight channels) into eight frames (the
    /// eight channels of one sample), in registers.
    #[inline(always)]
    fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        // SAFETY (all intrinsics here): only called from AVX2 code.
        unsafe {
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xee>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xee>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xee>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xee>(t5, t7);
            [
                _mm256_permute2f128_ps::<0x20>(u0, u4),
                _mm256_permute2f128_ps::<0x20>(u1, u5),
                _mm256_permute2f128_ps::<0x20>(u2, u6),
                _mm256_permute2f128_ps::<0x20>(u3, u7),
                _mm256_permute2f128_ps::<0x31>(u0, u4),
                _mm256_permute2f128_ps::<0x31>(u1, u5),
                _mm256_permute2f128_ps::<0x31>(u2, u6),
                _mm256_permute2f128_ps::<0x31>(u3, u7),
            ]
        }
    }

    /// Running statistics of one sub-block in registers. The maxima of magnitudes are taken
    /// on the bit patterns as integers: for non-negative floats (sign bit cleared) integer
    /// order is float order, and NaN (above +∞ as an integer) is kept rather than dropped
    /// as `max_ps` would, so one compare of the peak per sub-block replaces the per-sample
    /// check.
    struct Stats {
        /// `max |x|` (bits).
        peak: __m256i,
        /// `max |Δx|` (bits).
        d1: __m256i,
        /// `max |Δ²x|` (bits).
        d2: __m256i,
        /// The previous frame `x[n−1]`.
        x1: __m256,
        /// The previous difference `x[n−1] − x[n−2]`.
        e0: __m256,
    }

    impl Stats {
        /// Adds frame `x`.
        #[inline(always)]
        fn add(&mut self, x: __m256, abs: __m256) {
            // SAFETY (all intrinsics here): only called from AVX2 code.
            unsafe {
                let bits = |v: __m256| _mm256_castps_si256(_mm256_and_ps(v, abs));
                self.peak = _mm256_max_epi32(self.peak, bits(x));
                let e1 = _mm256_sub_ps(x, self.x1);
                self.d1 = _mm256_max_epi32(self.d1, bits(e1));
                self.d2 = _mm256_max_epi32(self.d2, bits(_mm256_sub_ps(e1, self.e0)));
                (self.x1, self.e0) = (x, e1);
            }
        }
    }

    /// [`Group::above`]: one compare and one mask per sub-block.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn above(bounds: &[Frame], held: &Frame) -> u64 {
        let h = ld(held);
        let mut bits = 0u64;
        for (k, b) in bounds.iter().enumerate() {
            let m = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(ld(b), h));
            bits |= u64::from(m as u8) << (LANES * k);
        }
        bits
    }

    /// [`Group::load`] in 8-lane vectors: whole blocks of eight frames are transposed in
    /// registers, stored and measured from the registers (the last partial block, if any,
    /// is copied lane by lane and measured from memory). Returns false if a sample is NaN,
    /// ±Inf or beyond ±`MAX_INPUT`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn load(
        group: &mut Group,
        fir: &TruePeakFir,
        src: &[&[f32]; LANES],
        bufs: &mut [Chan; LANES],
        len: usize,
    ) -> bool {
        let len = len.min(PIECE);
        let chans: [&[f32]; LANES] = std::array::from_fn(|c| &src[c][..len]);
        let abs = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX));
        let limit = _mm256_set1_epi32(MAX_INPUT.to_bits() as i32);
        let [g1, dg1, dg2, dg21, margin] = fir.bound_constants();
        let (g1, dg1, dg2, dg21, margin) = (
            _mm256_set1_ps(g1),
            _mm256_set1_ps(dg1),
            _mm256_set1_ps(dg2),
            _mm256_set1_ps(dg21),
            _mm256_set1_ps(margin),
        );
        let zero = _mm256_setzero_si256();
        let mut bad = zero;
        let x1 = ld(&group.prev[1]);
        let mut sub = Stats {
            peak: zero,
            d1: zero,
            d2: zero,
            x1,
            e0: _mm256_sub_ps(x1, ld(&group.prev[0])),
        };
        let bits = |f: &Frame| _mm256_castps_si256(ld(f));
        let hs = group.hist_stats;
        let mut before = [bits(&hs.peak), bits(&hs.d1), bits(&hs.d2)];
        let mut last = before;
        let mut peaks = zero;
        for k in 0..len.div_ceil(SUB) {
            (sub.peak, sub.d1, sub.d2) = (zero, zero, zero);
            let end = ((k + 1) * SUB).min(len);
            let mut n0 = k * SUB;
            while n0 + 8 <= end {
                let rows: [__m256; 8] = std::array::from_fn(|c| {
                    let x: &[f32; 8] = chans[c][n0..n0 + 8].try_into().expect("eight samples");
                    let to: &mut [f32; 8] = (&mut bufs[c][HIST + n0..HIST + n0 + 8])
                        .try_into()
                        .expect("eight samples");
                    // SAFETY: eight floats each.
                    unsafe {
                        let v = _mm256_loadu_ps(x.as_ptr());
                        _mm256_storeu_ps(to.as_mut_ptr(), v);
                        v
                    }
                });
                let frames: &mut [Frame; 8] = (&mut group.frames[n0..n0 + 8])
                    .try_into()
                    .expect("eight frames");
                for (f, x) in frames.iter_mut().zip(transpose8(rows)) {
                    // SAFETY: `f` holds eight floats.
                    unsafe { _mm256_storeu_ps(f.as_mut_ptr(), x) };
                    sub.add(x, abs);
                }
                n0 += 8;
            }
            for n in n0..end {
                let f = &mut group.frames[n];
                for (c, v) in f.iter_mut().enumerate() {
                    *v = chans[c][n];
                    bufs[c][HIST + n] = *v;
                }
                sub.add(ld(f), abs);
            }
            bad = _mm256_or_si256(bad, _mm256_cmpgt_epi32(sub.peak, limit));
            // Window: this sub-block and the one before (or the history).
            let [bp, b1, b2] = before;
            let f = _mm256_castsi256_ps;
            let (wp, w1, w2) = (
                f(_mm256_max_epi32(bp, sub.peak)),
                f(_mm256_max_epi32(b1, sub.d1)),
                f(_mm256_max_epi32(b2, sub.d2)),
            );
            let by_d2 = _mm256_fmadd_ps(dg2, w2, _mm256_mul_ps(dg21, w1));
            let slack = _mm256_min_ps(
                _mm256_min_ps(_mm256_mul_ps(g1, wp), _mm256_mul_ps(dg1, w1)),
                by_d2,
            );
            group.bounds[k] = st(_mm256_mul_ps(_mm256_add_ps(wp, slack), margin));
            peaks = _mm256_max_epi32(peaks, sub.peak);
            last = before;
            before = [sub.peak, sub.d1, sub.d2];
        }
        let stats = |[p, d1, d2]: [__m256i; 3]| LaneStats {
            peak: st(_mm256_castsi256_ps(p)),
            d1: st(_mm256_castsi256_ps(d1)),
            d2: st(_mm256_castsi256_ps(d2)),
        };
        group.last_stats = [stats(before), stats(last)];
        group.peaks = st(_mm256_castsi256_ps(peaks));
        _mm256_testz_si256(bad, bad) == 1
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::meters::MeterSet;

    fn noise(seed: &mut u32) -> f32 {
        *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (*seed >> 8) as f32 / (1u32 << 23) as f32 - 1.0
    }

    /// Eight different stems (tones, noise, bursts, silence, anti-phase, a hot limited one,
    /// one with NaN / Inf / huge / denormal samples), `len` frames at `fs`.
    fn stems(fs: f32, len: usize) -> Vec<[Vec<f32>; 2]> {
        let mut seed = 7u32;
        (0..MAX_STEMS)
            .map(|s| {
                let mut ch = |c: usize| -> Vec<f32> {
                    (0..len)
                        .map(|n| {
                            let t = n as f32 / fs;
                            let sin = |f: f32| (std::f32::consts::TAU * f * t).sin();
                            match s {
                                0 => 0.5 * sin(60.0 + c as f32),
                                1 => 0.2 * noise(&mut seed),
                                2 if (n / 4800) % 3 == 0 => 0.9 * sin(3000.0),
                                2 => 0.0,
                                3 => 0.0,
                                4 => (if c == 0 { 0.3 } else { -0.3 }) * sin(440.0),
                                5 => (1.5 * noise(&mut seed)).clamp(-0.9, 0.9),
                                6 => match n % 1009 {
                                    0 => f32::NAN,
                                    1 => f32::INFINITY,
                                    2 => 3.0e9,
                                    3 => 1.0e-40,
                                    _ => 0.1 * sin(1000.0) + 0.01 * noise(&mut seed),
                                },
                                _ => 0.25 * sin(11_000.0) * (1.0 + sin(2.0)),
                            }
                        })
                        .collect()
                };
                [ch(0), ch(1)]
            })
            .collect()
    }

    /// Feeds the stems to a bank and to one `MeterSet` per stem in the same varying blocks,
    /// publishing after each; returns both sides' published readings.
    fn run(fs: f32, len: usize, mut block: impl FnMut(usize) -> usize) -> Vec<[MeterReading; 2]> {
        let x = stems(fs, len);
        let mut bank = StemMeterBank::new(fs, MAX_STEMS);
        let mut sets: Vec<MeterSet> = (0..MAX_STEMS).map(|_| MeterSet::new(fs)).collect();
        let out_bank: Vec<PublishedMeters> = (0..MAX_STEMS).map(|_| Default::default()).collect();
        let out_sets: Vec<PublishedMeters> = (0..MAX_STEMS).map(|_| Default::default()).collect();
        let (mut pos, mut k) = (0, 0);
        while pos < len {
            let end = (pos + block(k)).min(len);
            let ins: Vec<[&[f32]; 2]> = x
                .iter()
                .map(|[l, r]| [&l[pos..end], &r[pos..end]])
                .collect();
            bank.process(&ins);
            bank.publish(&out_bank);
            for ((m, [l, r]), o) in sets.iter_mut().zip(&ins).zip(&out_sets) {
                m.process(l, r);
                m.publish(o);
            }
            pos = end;
            k += 1;
        }
        (0..MAX_STEMS)
            .map(|s| [out_bank[s].read(), out_sets[s].read()])
            .collect()
    }

    fn close(a: f32, b: f32, tol: f32) -> bool {
        a == b || (a - b).abs() <= tol
    }

    #[test]
    fn bank_reads_what_one_meter_set_per_stem_reads() {
        let mut step = 1;
        let readings = run(48_000.0, 48_000 * 5, |_| {
            step = (step * 13 + 7) % 700 + 1;
            step
        });
        for (s, [b, m]) in readings.iter().enumerate() {
            // Peaks and true peaks: the same values (the same FIR on the same windows; the
            // skip test is exact).
            assert_eq!(b.sample_peak_db, m.sample_peak_db, "stem {s}");
            assert_eq!(b.sample_peak_max_db, m.sample_peak_max_db, "stem {s}");
            assert_eq!(b.true_peak_dbtp, m.true_peak_dbtp, "stem {s}");
            assert_eq!(b.true_peak_max_dbtp, m.true_peak_max_dbtp, "stem {s}");
            // RMS and correlation: the same sums, added in another order.
            for c in 0..2 {
                assert!(
                    close(b.rms_db[c], m.rms_db[c], 1e-4),
                    "stem {s}: {b:?} vs {m:?}"
                );
            }
            assert!(
                close(b.correlation, m.correlation, 1e-5),
                "stem {s}: {b:?} vs {m:?}"
            );
            // K-weighting in f32 against f64: within a few thousandths of a dB.
            for (x, y) in [
                (b.momentary_lufs, m.momentary_lufs),
                (b.short_term_lufs, m.short_term_lufs),
                (b.integrated_lufs, m.integrated_lufs),
                (b.max_momentary_lufs, m.max_momentary_lufs),
                (b.max_short_term_lufs, m.max_short_term_lufs),
                (b.plr_db, m.plr_db),
            ] {
                assert!(close(x, y, 0.005), "stem {s}: {b:?} vs {m:?}");
            }
            assert!(close(b.lra_lu, m.lra_lu, 0.06), "stem {s}: {b:?} vs {m:?}");
        }
        // The silent stem reads no value; the others do.
        assert_eq!(readings[3][0].momentary_lufs, f32::NEG_INFINITY);
        assert!(readings[0][0].integrated_lufs > -10.0);
    }

    #[test]
    fn block_size_does_not_change_the_readings() {
        let chunked = run(44_100.0, 44_100 * 4, |_| 128);
        let mut step = 3;
        let varied = run(44_100.0, 44_100 * 4, |_| {
            step = (step * 7 + 5) % 1500 + 1;
            step
        });
        for (s, ([a, _], [b, _])) in chunked.iter().zip(&varied).enumerate() {
            let (mut a, b) = (*a, *b);
            // RMS / correlation sums are taken per segment in f32 lanes: rounding only.
            assert!(close(a.rms_db[0], b.rms_db[0], 1e-4) && close(a.rms_db[1], b.rms_db[1], 1e-4));
            assert!(close(a.correlation, b.correlation, 1e-5));
            a.rms_db = b.rms_db;
            a.correlation = b.correlation;
            // Everything else exactly (per-tick sums in the filter state, exact skip test).
            assert_eq!(a, b, "stem {s}");
        }
    }

    #[test]
    fn missing_stems_are_silent_and_extra_ones_ignored() {
        let fs = 48_000.0;
        let x = stems(fs, 48_000);
        let mut bank = StemMeterBank::new(fs, 3);
        assert_eq!(bank.num_stems(), 3);
        let ins: Vec<[&[f32]; 2]> = x.iter().map(|[l, r]| [&l[..], &r[..]]).collect();
        bank.process(&ins[..2]);
        assert!(bank.reading(0).momentary_lufs > -20.0);
        assert!(bank.reading(1).momentary_lufs > -30.0);
        assert_eq!(bank.reading(2).momentary_lufs, f32::NEG_INFINITY);
        assert_eq!(bank.reading(2).sample_peak_db, [f32::NEG_INFINITY; 2]);
        // Eight given to a bank of three: the first three are metered.
        bank.process(&ins);
        assert!(bank.reading(2).sample_peak_db[0] > -1.0);
        // An empty call, and a publish with fewer outputs than stems, do nothing harmful.
        bank.process(&[]);
        let out: Vec<PublishedMeters> = (0..2).map(|_| Default::default()).collect();
        bank.publish(&out);
        assert!(out[1].read().sample_peak_db[0] > -20.0);
    }

    #[test]
    fn publication_keeps_peaks_between_reads_and_resets_per_stem() {
        let fs = 48_000.0;
        let mut bank = StemMeterBank::new(fs, 2);
        let out: Vec<PublishedMeters> = (0..2).map(|_| Default::default()).collect();
        let quiet = vec![0.01f32; 256];
        let mut click = quiet.clone();
        click[100] = 0.9;
        for k in 0..4 {
            let l = if k == 0 { &click } else { &quiet };
            bank.process(&[[l, &quiet], [&quiet, &quiet]]);
            bank.publish(&out);
        }
        let r = out[0].read();
        assert!((r.sample_peak_db[0] - crate::util::gain_to_db(0.9)).abs() < 1e-4);
        assert!(r.true_peak_dbtp >= r.sample_peak_db[0]);
        assert!(out[1].read().sample_peak_db[0] < -39.0);
        // Restarted by the read.
        assert_eq!(out[0].read().sample_peak_db, [f32::NEG_INFINITY; 2]);
        // A reset request for stem 0 only.
        out[0].request_reset();
        bank.process(&[[&quiet, &quiet], [&quiet, &quiet]]);
        bank.publish(&out);
        assert!(out[0].read().sample_peak_max_db[0] < -39.0);
        assert!(out[1].read().sample_peak_max_db[0] > -41.0);
        assert!(out[1].read().sample_peak_max_db[0] < -39.0);
    }

    #[test]
    fn fma_and_plain_builds_agree() {
        let fs = 96_000.0;
        let x = stems(fs, 96_000 * 2);
        let ins: Vec<[&[f32]; 2]> = x.iter().map(|[l, r]| [&l[..], &r[..]]).collect();
        let mut a = StemMeterBank::new(fs, MAX_STEMS);
        let mut b = StemMeterBank::new(fs, MAX_STEMS);
        b.use_fma = false;
        for k in 0..ins[0][0].len().div_ceil(500) {
            let r = k * 500..((k + 1) * 500).min(ins[0][0].len());
            let part: Vec<[&[f32]; 2]> = ins
                .iter()
                .map(|[l, rr]| [&l[r.clone()], &rr[r.clone()]])
                .collect();
            a.process(&part);
            b.process(&part);
        }
        for s in 0..MAX_STEMS {
            let (ra, rb) = (a.reading(s), b.reading(s));
            assert!(
                close(ra.momentary_lufs, rb.momentary_lufs, 1e-3),
                "{ra:?} {rb:?}"
            );
            assert!(
                close(ra.true_peak_max_dbtp, rb.true_peak_max_dbtp, 1e-4),
                "{ra:?} {rb:?}"
            );
            assert_eq!(ra.sample_peak_max_db, rb.sample_peak_max_db);
            for v in [
                ra.momentary_lufs,
                ra.true_peak_dbtp,
                ra.rms_db[0],
                ra.correlation,
            ] {
                assert!(!v.is_nan(), "{ra:?}");
            }
        }
    }
}
