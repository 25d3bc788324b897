//! Offline rendering of whole songs in two stages, bit-identical to [`Engine::process`] with
//! the processed path monitored.
//!
//! The stems do not depend on anything the master does, so an offline tool that renders a
//! song several times (a loudness search changes only the master drive) can run the stem stage
//! once and the master stage once per pass. The stem stage runs the stems segment by segment
//! on as many threads as the machine has, each stem's segments in order, whichever thread is
//! free taking the stem that is furthest behind; the sum is then made as the engine makes it
//! (each group of [`STEM_GROUP`] stems from zero in stem order, then group 0 + group 1), so the
//! result is the same to the bit as the real-time engine's.
//!
//! [`Engine::process`]: crate::engine::Engine::process

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::MAX_STEMS;
use crate::engine::{
    CHUNK, MasterStage, SAMPLE_RATE_RANGE, STEM_GROUP, StemGroup, StereoIn, is_keyed,
};
use crate::settings::{EngineSettings, MainInputRole, StemSettings};
use crate::util::sanitize;

/// The stem stage's result over a whole song.
pub struct StemMix {
    /// Processed stem sum, plus the main input when its role is [`MainInputRole::AddToSum`]:
    /// what enters the master chain, delayed by the stem latency like in the engine.
    pub sum: [Vec<f32>; 2],
    /// The unprocessed sum of all stems (the mix key), aligned with the stem inputs; `None`
    /// when no compressor listens to it.
    pub key: Option<[Vec<f32>; 2]>,
}

/// Frames of the stem sum handed to the consumer of [`render_stems`] at a time (a
/// whole number of engine chunks).
pub const SEGMENT: usize = 64 * CHUNK;

/// What [`render_stems`] hands each finished piece of the stem sum to: the frame it starts
/// at, the sum (left, right) and the mix key over the same frames (if there is one).
pub type SumSink<'a> = dyn FnMut(usize, [&[f32]; 2], Option<[&[f32]; 2]>) + 'a;

/// Finished segments of each stem that may wait for the sum: how far the stem workers may
/// run ahead of the consumer of [`render_stems`].
pub const SLOTS: usize = 8;

/// The key of a stem keyed from nothing (no mix key in these settings).
static SILENCE: [f32; BLOCK] = [0.0; BLOCK];

/// Frames a stem's chain processes at a time in the stem stage: eight engine chunks. The
/// modules' output does not depend on how a signal is cut (the engine's tests check it), but
/// their cost does: every call pays for its set-up and for filling and draining the skewed
/// filter pipelines, and a stem's six modules take turns over the data, so longer blocks keep
/// each module's code and state hot for longer. Measured (session 7, by hand, eight stems of
/// music × 60 s, every module on, old and new binaries alternating in 12 pairs): 1024 frames
/// instead of [`CHUNK`] (128) ≈ 1.1× less CPU for the whole render; 512–8192 were alike.
///
/// The one thing the block length changes: if a chain's state ever went non-finite (which
/// sanitised input is not meant to cause), the stem is silenced from the start of the block
/// in which it happened, up to 1024 frames, where the engine silences up to [`CHUNK`].
pub const BLOCK: usize = 8 * CHUNK;

/// Where the stem stage reads the stems: the whole song in memory ([`InMemory`]), or a
/// reader that fetches each stretch when it is needed (the offline tool decodes its files
/// this way, so that a long stem set never has to be held in memory whole).
pub trait StemSource: Sync {
    /// Fills `out` (left, right; equal lengths) with frames `start..start + out[0].len()` of
    /// the stem in `slot`: silence past its end, and for a slot that has no stem. Any value
    /// is allowed (the stem stage sanitises it). The stem stage calls this from its threads,
    /// every slot from one thread at a time and in order (the mix key, when a compressor
    /// listens to it, reads every slot once more beforehand).
    fn read(&self, slot: usize, start: usize, out: [&mut [f32]; 2]);
}

/// Stems held in memory, as [`Engine::process`] takes them: `None` (or a missing slot) is a
/// silent slot; channels shorter than the song end in silence.
///
/// [`Engine::process`]: crate::engine::Engine::process
pub struct InMemory<'a>(pub &'a [Option<StereoIn<'a>>]);

impl StemSource for InMemory<'_> {
    fn read(&self, slot: usize, start: usize, out: [&mut [f32]; 2]) {
        let stem = self.0.get(slot).copied().flatten();
        for (ch, out) in out.into_iter().enumerate() {
            copy_or_silence(stem.map_or(&[], |s| s[ch]), start, out);
        }
    }
}

/// Runs the stem stage of an engine with `num_stems` slots (1–8, clamped) over `frames` frames
/// (inputs shorter than that are padded with silence, so `frames` may include the engine's
/// latency tail). `stems` gives slot `i`'s audio as [`StemSource::read`] says; `main` is the
/// main input, used only when the settings add it to the sum. Allocates the whole result.
///
/// The sum is handed to `sink` as it grows: `sink(start, [left, right], key)` gets frames
/// `start..start + left.len()` of [`StemMix::sum`] (and of [`StemMix::key`], if any), in
/// order, in pieces of [`SEGMENT`] frames (the last one shorter), every frame once.
///
/// With `parallel`, the stems run on worker threads (one per CPU the machine offers, at most
/// one per stem; see `Pool`) and `sink` on the calling thread as soon as every stem has
/// finished a segment, so whatever the caller does with the sum (the master stage of a first
/// pass) overlaps the stem stage instead of following it; while it waits for a segment the
/// calling thread runs that segment's stems itself. Without, the calling thread runs every
/// stem. The sum is the same to the bit either way.
#[allow(clippy::too_many_arguments)]
pub fn render_stems(
    sample_rate: f32,
    num_stems: usize,
    stems: &dyn StemSource,
    main: Option<StereoIn<'_>>,
    settings: &EngineSettings,
    frames: usize,
    parallel: bool,
    sink: &mut SumSink<'_>,
) -> StemMix {
    let sample_rate = sample_rate.clamp(SAMPLE_RATE_RANGE.0, SAMPLE_RATE_RANGE.1);
    let num_stems = num_stems.clamp(1, MAX_STEMS);
    let stem_settings = &settings.stems[..num_stems];
    let any_solo = stem_settings.iter().any(|s| s.solo);

    // The mix key: the sanitised inputs added in stem order from zero, as the engine does.
    let key = is_keyed(stem_settings, &settings.master).then(|| {
        let mut key = [vec![0.0f32; frames], vec![0.0f32; frames]];
        let mut read = [vec![0.0f32; SEGMENT], vec![0.0f32; SEGMENT]];
        for i in 0..num_stems {
            for seg_start in (0..frames).step_by(SEGMENT) {
                let seg_len = (frames - seg_start).min(SEGMENT);
                let [rl, rr] = &mut read;
                stems.read(i, seg_start, [&mut rl[..seg_len], &mut rr[..seg_len]]);
                for (k, r) in key.iter_mut().zip(&read) {
                    let k = &mut k[seg_start..seg_start + seg_len];
                    for (k, &x) in k.iter_mut().zip(&r[..seg_len]) {
                        *k += sanitize(x);
                    }
                }
            }
        }
        key
    });

    // The main input delayed by the stem latency (zeros first, as the engine's delay line
    // gives them), sanitised, added to the processed sum when its role says so.
    let add_main = settings.main_input == MainInputRole::AddToSum;
    let main_latency = StemGroup::new(sample_rate, 1).latency_samples();
    let mut sum = [vec![0.0f32; frames], vec![0.0f32; frames]];

    let pool = Pool::new(
        sample_rate,
        stem_settings,
        any_solo,
        stems,
        key.as_ref(),
        frames,
    );
    let workers = if parallel {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        0
    }
    .min(num_stems);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers).map(|_| scope.spawn(|| pool.work())).collect();
        // Stops the workers if the sink panics (else the scope would wait for them forever).
        let _stop = StopOnPanic(&pool);
        let mut group = vec![0.0f32; SEGMENT.min(frames)];
        for k in 0..pool.segments {
            // Returns false when a worker panicked: `join` below reports it.
            if !pool.wait_for(k) {
                break;
            }
            let start = k * SEGMENT;
            let len = (frames - start).min(SEGMENT);
            for (ch, s) in sum.iter_mut().enumerate() {
                let out = &mut s[start..start + len];
                pool.add_segment(k, ch, out, &mut group[..len]);
                if add_main {
                    let src = main.map(|m| m[ch]).unwrap_or(&[]);
                    for (i, x) in out.iter_mut().enumerate() {
                        let delayed = (start + i)
                            .checked_sub(main_latency)
                            .and_then(|i| src.get(i))
                            .map_or(0.0, |&v| sanitize(v));
                        *x += delayed;
                    }
                }
            }
            pool.release(k);
            let end = start + len;
            sink(
                start,
                [&sum[0][start..end], &sum[1][start..end]],
                key.as_ref().map(|[l, r]| [&l[start..end], &r[start..end]]),
            );
        }
        for handle in handles {
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        }
    });
    StemMix { sum, key }
}

/// The stem stage's work, shared by its threads: every stem is a task list (its segments, in
/// order), and a free thread takes the next segment of the stem that is furthest behind. The
/// stems' loads differ and change along a song (a stem that is silent for a while costs less),
/// so fixed shares per thread (as a group of four per thread did) leave one thread idle while
/// the other catches up; with the tasks taken as threads come free, the stems move on
/// together and every thread the machine has is used. Each stem's segments run in order and
/// one at a time (its chain carries state), so whichever thread runs one, the output is the
/// same to the bit.
///
/// This is the offline tool's scheduler, not the audio thread's: it locks (uncontended, once
/// per segment of a stem) and waits.
struct Pool<'a> {
    /// Where the tasks stand.
    state: Mutex<Progress>,
    /// Worker threads wait here for a task.
    work: Condvar,
    /// The consumer waits here for a segment to be finished.
    done: Condvar,
    /// Per stem: its chain and mute/solo gain (a group of one stem), locked by the thread
    /// running its current task.
    stems: Vec<Mutex<StemGroup>>,
    /// Per stem: [`SLOTS`] segment buffers (left, right, [`SEGMENT`] frames each); segment `k`
    /// goes to slot `k % SLOTS`, where it is read, processed in place and summed.
    slots: Vec<Vec<Mutex<[Vec<f32>; 2]>>>,
    /// Segments in the song.
    segments: usize,
    /// Frames in the song.
    frames: usize,
    /// The stems' audio.
    source: &'a dyn StemSource,
    /// The mix key over the whole song, if any compressor listens to it.
    key: Option<&'a [Vec<f32>; 2]>,
}

/// Where the stem stage's tasks stand (behind [`Pool::state`]).
struct Progress {
    /// Per stem: the next segment to process (all before it are finished).
    next: Vec<usize>,
    /// Per stem: a thread is processing its segment `next` now.
    busy: Vec<bool>,
    /// Segments the consumer has summed; their slots can take new segments.
    consumed: usize,
    /// Worker threads waiting on [`Pool::work`].
    idle_workers: usize,
    /// The consumer waits on [`Pool::done`].
    consumer_waits: bool,
    /// A thread panicked: every thread stops.
    stop: bool,
}

impl Progress {
    /// The stem whose next segment is to run now, up to segment `up_to` (a segment of the
    /// song): of the stems not busy and with a free slot, the one furthest behind (the lowest
    /// index of those).
    fn pick(&self, up_to: usize) -> Option<usize> {
        let limit = up_to.min(self.consumed + SLOTS - 1);
        (0..self.next.len())
            .filter(|&i| !self.busy[i] && self.next[i] <= limit)
            .min_by_key(|&i| self.next[i])
    }
}

impl<'a> Pool<'a> {
    fn new(
        sample_rate: f32,
        stem_settings: &[StemSettings],
        any_solo: bool,
        source: &'a dyn StemSource,
        key: Option<&'a [Vec<f32>; 2]>,
        frames: usize,
    ) -> Self {
        let segments = frames.div_ceil(SEGMENT);
        let num_stems = stem_settings.len();
        let stems = stem_settings
            .iter()
            .map(|s| {
                let mut stem = StemGroup::new(sample_rate, 1);
                stem.set_settings(std::slice::from_ref(s), any_solo);
                stem.reset();
                Mutex::new(stem)
            })
            .collect();
        let slot_len = SEGMENT.min(frames);
        let slots = (0..num_stems)
            .map(|_| {
                (0..SLOTS.min(segments))
                    .map(|_| Mutex::new([vec![0.0f32; slot_len], vec![0.0f32; slot_len]]))
                    .collect()
            })
            .collect();
        Self {
            state: Mutex::new(Progress {
                next: vec![0; num_stems],
                busy: vec![false; num_stems],
                consumed: 0,
                idle_workers: 0,
                consumer_waits: false,
                stop: false,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            stems,
            slots,
            segments,
            frames,
            source,
            key,
        }
    }

    /// The progress, whatever a panicking thread left it as (every change to it is complete
    /// before anything that can panic runs).
    fn lock(&self) -> MutexGuard<'_, Progress> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A worker thread: runs tasks until every stem is finished (or a thread panicked).
    fn work(&self) {
        let _stop = StopOnPanic(self);
        let mut state = self.lock();
        loop {
            if state.stop || state.next.iter().all(|&n| n >= self.segments) {
                return;
            }
            // Not every stem is finished, so there is a last segment.
            match state.pick(self.segments - 1) {
                Some(i) => state = self.run(state, i),
                None => {
                    state.idle_workers += 1;
                    state = self
                        .work
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                    state.idle_workers -= 1;
                }
            }
        }
    }

    /// The consumer: returns when segment `k` of every stem is finished, running those of its
    /// tasks no other thread has taken meanwhile (all of them when there are no workers);
    /// false if a thread panicked.
    fn wait_for(&self, k: usize) -> bool {
        let mut state = self.lock();
        loop {
            if state.stop {
                return false;
            }
            if state.next.iter().all(|&n| n > k) {
                return true;
            }
            match state.pick(k) {
                Some(i) => state = self.run(state, i),
                None => {
                    state.consumer_waits = true;
                    state = self
                        .done
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                    state.consumer_waits = false;
                }
            }
        }
    }

    /// Runs stem `i`'s next segment (unlocked meanwhile) and wakes whoever may wait for it.
    fn run<'g>(
        &'g self,
        mut state: MutexGuard<'g, Progress>,
        i: usize,
    ) -> MutexGuard<'g, Progress> {
        let k = state.next[i];
        state.busy[i] = true;
        drop(state);
        self.process(i, k);
        let mut state = self.lock();
        state.busy[i] = false;
        state.next[i] = k + 1;
        if state.consumer_waits {
            self.done.notify_one();
        }
        if state.idle_workers > 0 {
            // The stem is free for its next segment.
            self.work.notify_all();
        }
        state
    }

    /// Segment `k` of stem `i`: read into its slot, sanitised, processed in place block by
    /// block ([`BLOCK`]) as the engine processes it chunk by chunk.
    fn process(&self, i: usize, k: usize) {
        let mut stem = self.stems[i].lock().unwrap_or_else(PoisonError::into_inner);
        let mut slot = self.slots[i][k % SLOTS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let start = k * SEGMENT;
        let len = (self.frames - start).min(SEGMENT);
        let [l, r] = &mut *slot;
        let (l, r) = (&mut l[..len], &mut r[..len]);
        self.source.read(i, start, [&mut *l, &mut *r]);
        for x in l.iter_mut() {
            *x = sanitize(*x);
        }
        for x in r.iter_mut() {
            *x = sanitize(*x);
        }
        for c in (0..len).step_by(BLOCK) {
            let n = (len - c).min(BLOCK);
            let at = start + c;
            let key = match self.key {
                Some([kl, kr]) => [&kl[at..at + n], &kr[at..at + n]],
                None => [&SILENCE[..n], &SILENCE[..n]],
            };
            stem.process_stem(0, &mut l[c..c + n], &mut r[c..c + n], key);
        }
    }

    /// Channel `ch` of segment `k`'s processed sum into `out`, added as the engine adds it:
    /// each group of [`STEM_GROUP`] stems from zero in stem order (group 0 in `out`, a later
    /// one in `group`), then the groups in order.
    fn add_segment(&self, k: usize, ch: usize, out: &mut [f32], group: &mut [f32]) {
        let len = out.len();
        for (g, first) in (0..self.stems.len()).step_by(STEM_GROUP).enumerate() {
            let acc = if g == 0 { &mut *out } else { &mut *group };
            acc.fill(0.0);
            for slots in &self.slots[first..(first + STEM_GROUP).min(self.stems.len())] {
                let slot = slots[k % SLOTS]
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                for (a, x) in acc.iter_mut().zip(&slot[ch][..len]) {
                    *a += x;
                }
            }
            if g > 0 {
                for (o, x) in out.iter_mut().zip(&*group) {
                    *o += x;
                }
            }
        }
    }

    /// The consumer has summed segment `k`: its slots can take new segments.
    fn release(&self, k: usize) {
        let mut state = self.lock();
        state.consumed = k + 1;
        if state.idle_workers > 0 {
            self.work.notify_all();
        }
    }
}

/// Stops every thread of a [`Pool`] when the thread holding it unwinds from a panic.
struct StopOnPanic<'p, 'a>(&'p Pool<'a>);

impl Drop for StopOnPanic<'_, '_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut state = self.0.lock();
            state.stop = true;
            self.0.work.notify_all();
            self.0.done.notify_all();
        }
    }
}

/// The master stage over a song's [`StemMix`], in order, any block size.
pub struct MasterRender {
    /// Master chain and key delay, exactly as in the engine.
    stage: MasterStage,
    /// Total latency of the engine these settings describe, samples.
    latency: usize,
    /// Scratch copy of the key (the stage overwrites it).
    key: [[f32; CHUNK]; 2],
}

impl MasterRender {
    /// Prepares the master stage for `settings` at `sample_rate`, starting from the settings
    /// themselves (no ramp from the defaults).
    pub fn new(sample_rate: f32, num_stems: usize, settings: &EngineSettings) -> Self {
        let sample_rate = sample_rate.clamp(SAMPLE_RATE_RANGE.0, SAMPLE_RATE_RANGE.1);
        let num_stems = num_stems.clamp(1, MAX_STEMS);
        let stem_latency = StemGroup::new(sample_rate, 1).latency_samples();
        let mut stage = MasterStage::new(sample_rate, stem_latency);
        stage.set_settings(
            &settings.master,
            is_keyed(&settings.stems[..num_stems], &settings.master),
        );
        stage.reset();
        let latency = stem_latency + stage.chain.latency_samples();
        Self {
            stage,
            latency,
            key: [[0.0; CHUNK]; 2],
        }
    }

    /// Latency of the whole engine (stem stage + master stage), samples.
    pub fn latency_samples(&self) -> usize {
        self.latency
    }

    /// Processes the next frames of [`StemMix::sum`] in place; `key` is the same frames of
    /// [`StemMix::key`] (or `None` when it has none).
    pub fn process(&mut self, left: &mut [f32], right: &mut [f32], key: Option<StereoIn<'_>>) {
        let frames = left.len().min(right.len());
        let mut start = 0;
        while start < frames {
            let len = (frames - start).min(CHUNK);
            let [kl, kr] = &mut self.key;
            match key {
                Some([l, r]) => {
                    // Copied as it is: the key is a sum of sanitised inputs already.
                    copy_or_silence(l, start, &mut kl[..len]);
                    copy_or_silence(r, start, &mut kr[..len]);
                }
                None => {
                    kl[..len].fill(0.0);
                    kr[..len].fill(0.0);
                }
            }
            self.stage.process(
                &mut left[start..start + len],
                &mut right[start..start + len],
                &mut kl[..len],
                &mut kr[..len],
            );
            start += len;
        }
    }

    /// The limiter's current gain reduction, dB (≥ 0).
    pub fn limiter_gain_reduction_db(&self) -> f32 {
        self.stage.chain.limiter.gain_reduction_db()
    }

    /// The limiter's largest gain reduction since the previous call, dB (≥ 0).
    pub fn take_max_limiter_gain_reduction_db(&mut self) -> f32 {
        self.stage.chain.limiter.take_max_gain_reduction_db()
    }
}

/// Copies `src[offset..offset + out.len()]` into `out`; missing samples are 0.
fn copy_or_silence(src: &[f32], offset: usize, out: &mut [f32]) {
    let src = src.get(offset.min(src.len())..).unwrap_or(&[]);
    let n = src.len().min(out.len());
    out[..n].copy_from_slice(&src[..n]);
    out[n..].fill(0.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    /// Stereo noise per stem (a different sequence each), `frames` long.
    fn noise_stems(num: usize, frames: usize) -> Vec<[Vec<f32>; 2]> {
        let mut seed = 0x1234_5678u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        (0..num)
            .map(|_| [0, 1].map(|_| (0..frames).map(|_| next()).collect()))
            .collect()
    }

    /// Settings whose every stem carries state from segment to segment (EQ, compressor), so
    /// that a segment run out of order or summed from the wrong slot changes the sum.
    fn stateful_settings() -> EngineSettings {
        let mut settings = EngineSettings::default();
        for s in &mut settings.stems {
            s.eq.enabled = true;
            s.eq.hpf_enabled = true;
            s.eq.bell1.enabled = true;
            s.eq.bell1.gain_db = 4.0;
            s.comp.enabled = true;
            s.comp.threshold_db = -30.0;
        }
        settings
    }

    /// Renders the stem stage, calling `on_segment` from the sink with each segment's index.
    fn render(
        stems: &[[Vec<f32>; 2]],
        settings: &EngineSettings,
        parallel: bool,
        on_segment: &mut dyn FnMut(usize),
    ) -> StemMix {
        let ins: Vec<Option<StereoIn>> =
            stems.iter().map(|s| Some([&s[0][..], &s[1][..]])).collect();
        let frames = stems[0][0].len();
        render_stems(
            48_000.0,
            stems.len(),
            &InMemory(&ins),
            None,
            settings,
            frames,
            parallel,
            &mut |start, _, _| on_segment(start / SEGMENT),
        )
    }

    #[test]
    fn a_slow_consumer_gets_every_segment_intact() {
        // The workers run ahead until every slot holds a segment waiting for the sum; none
        // may be overwritten before it is summed.
        let stems = noise_stems(5, (2 * SLOTS + 3) * SEGMENT + 99);
        let settings = stateful_settings();
        let want = render(&stems, &settings, false, &mut |_| ());
        let mut seen = Vec::new();
        let got = render(&stems, &settings, true, &mut |k| {
            seen.push(k);
            std::thread::sleep(std::time::Duration::from_millis(3));
        });
        assert_eq!(seen, (0..2 * SLOTS + 4).collect::<Vec<_>>());
        assert!(got.sum == want.sum, "parallel and sequential sums differ");
        let peak = want.sum[0].iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(peak > 0.1, "the sum carries the stems ({peak})");
    }

    /// A source that panics when segment `bad` of slot 2 is read.
    struct PanicAt(usize);

    impl StemSource for PanicAt {
        fn read(&self, slot: usize, start: usize, out: [&mut [f32]; 2]) {
            assert!(!(slot == 2 && start / SEGMENT == self.0), "unreadable stem");
            for o in out {
                o.fill(0.1);
            }
        }
    }

    #[test]
    fn a_panic_in_any_thread_ends_the_stage_instead_of_hanging_it() {
        let settings = EngineSettings::default();
        let frames = 12 * SEGMENT;
        for parallel in [true, false] {
            for bad in [0, 5, 11] {
                let result = catch_unwind(AssertUnwindSafe(|| {
                    render_stems(
                        48_000.0,
                        4,
                        &PanicAt(bad),
                        None,
                        &settings,
                        frames,
                        parallel,
                        &mut |_, _, _| (),
                    )
                }));
                assert!(result.is_err(), "parallel {parallel}, segment {bad}");
            }
            // The sink (the consumer's side) panicking stops the workers too.
            let result = catch_unwind(AssertUnwindSafe(|| {
                render_stems(
                    48_000.0,
                    4,
                    &PanicAt(usize::MAX),
                    None,
                    &settings,
                    frames,
                    parallel,
                    &mut |start, _, _| assert!(start < 3 * SEGMENT, "sink gives up"),
                )
            }));
            assert!(result.is_err(), "parallel {parallel}, sink");
        }
    }
}
