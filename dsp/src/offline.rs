//! Offline rendering of whole songs in two stages, bit-identical to [`Engine::process`] with
//! the processed path monitored.
//!
//! The stems do not depend on anything the master does, so an offline tool that renders a
//! song several times (a loudness search changes only the master drive) can run the stem stage
//! once and the master stage once per pass. The stem stage runs each stem group of the engine
//! ([`STEM_GROUP`] stems) on its own thread over the whole song; because the engine sums the
//! groups in the same way (each group from zero, then group 0 + group 1), the result is the
//! same to the bit as the real-time engine's.
//!
//! [`Engine::process`]: crate::engine::Engine::process

use crate::MAX_STEMS;
use crate::engine::{
    CHUNK, MasterStage, SAMPLE_RATE_RANGE, STEM_GROUP, StemGroup, StereoIn, copy_sanitized,
    is_keyed,
};
use crate::settings::{EngineSettings, MainInputRole};
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

/// Stem-group segments that may wait for the consumer before a group thread blocks.
const SEGMENT_QUEUE: usize = 8;

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
/// With `parallel`, both stem groups run on threads of their own and `sink` on the calling
/// thread as soon as both groups have finished a segment, so whatever the caller does with the
/// sum (the master stage of a first pass) overlaps the stem stage instead of following it.
/// The sum is the same to the bit either way.
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

    // One stem group over the whole song, its sum handed to `emit` segment by segment.
    let render_group = |g: usize, emit: &mut dyn FnMut(usize, [Vec<f32>; 2])| {
        let first = g * STEM_GROUP;
        let count = (num_stems - first).min(STEM_GROUP);
        let mut group = StemGroup::new(sample_rate, count);
        group.set_settings(&stem_settings[first..first + count], any_solo);
        group.reset();
        let mut audio = vec![[[0.0f32; CHUNK]; 2]; count];
        let mut chunk_sum = [[0.0f32; CHUNK]; 2];
        let silence = [0.0f32; CHUNK];
        // The group's stems over one segment, as the source gives them.
        let mut read = vec![[vec![0.0f32; SEGMENT], vec![0.0f32; SEGMENT]]; count];
        for seg_start in (0..frames).step_by(SEGMENT) {
            let seg_len = (frames - seg_start).min(SEGMENT);
            for (i, [l, r]) in read.iter_mut().enumerate() {
                stems.read(first + i, seg_start, [&mut l[..seg_len], &mut r[..seg_len]]);
            }
            let mut out = [Vec::with_capacity(seg_len), Vec::with_capacity(seg_len)];
            for start in (seg_start..seg_start + seg_len).step_by(CHUNK) {
                let len = (seg_start + seg_len - start).min(CHUNK);
                for (stem, r) in audio.iter_mut().zip(&read) {
                    for (buf, r) in stem.iter_mut().zip(r) {
                        let r = &r[..seg_len];
                        copy_sanitized(Some(r), start - seg_start, &mut buf[..len]);
                    }
                }
                let key_chunk = match &key {
                    Some([kl, kr]) => [&kl[start..start + len], &kr[start..start + len]],
                    None => [&silence[..len], &silence[..len]],
                };
                group.process(&mut audio, key_chunk, len, &mut chunk_sum, None);
                for (o, s) in out.iter_mut().zip(&chunk_sum) {
                    o.extend_from_slice(&s[..len]);
                }
            }
            emit(seg_start, out);
        }
    };

    // The main input delayed by the stem latency (zeros first, as the engine's delay line
    // gives them), sanitised, added to the processed sum when its role says so.
    let add_main = settings.main_input == MainInputRole::AddToSum;
    let main_latency = StemGroup::new(sample_rate, 1).latency_samples();
    let mut sum = [vec![0.0f32; frames], vec![0.0f32; frames]];
    // Group 0's segment plus group 1's (if any), then the main input, then to the sink.
    let mut finish = |start: usize, a: &[Vec<f32>; 2], b: Option<&[Vec<f32>; 2]>| {
        for (ch, s) in sum.iter_mut().enumerate() {
            let out = &mut s[start..start + a[ch].len()];
            match b {
                Some(b) => {
                    for ((o, x), y) in out.iter_mut().zip(&a[ch]).zip(&b[ch]) {
                        *o = x + y;
                    }
                }
                None => out.copy_from_slice(&a[ch]),
            }
            if add_main {
                let src = main.map(|m| m[ch]).unwrap_or(&[]);
                for (k, x) in out.iter_mut().enumerate() {
                    let delayed = (start + k)
                        .checked_sub(main_latency)
                        .and_then(|k| src.get(k))
                        .map_or(0.0, |&v| sanitize(v));
                    *x += delayed;
                }
            }
        }
        let end = start + a[0].len();
        sink(
            start,
            [&sum[0][start..end], &sum[1][start..end]],
            key.as_ref().map(|[l, r]| [&l[start..end], &r[start..end]]),
        );
    };

    let groups = num_stems.div_ceil(STEM_GROUP);
    if parallel {
        std::thread::scope(|scope| {
            let spawn = |g: usize| {
                let (tx, rx) = std::sync::mpsc::sync_channel(SEGMENT_QUEUE);
                let render_group = &render_group;
                let handle = scope.spawn(move || {
                    // The receiver only goes away when the caller panics.
                    render_group(g, &mut |start, seg| {
                        let _ = tx.send((start, seg));
                    });
                });
                (rx, handle)
            };
            let (rx0, first) = spawn(0);
            let second = (groups > 1).then(|| spawn(1));
            for (start, a) in rx0.iter() {
                let b = second.as_ref().map(|(rx1, _)| rx1.recv());
                match b {
                    Some(Ok((start1, b))) => {
                        debug_assert_eq!(start, start1);
                        finish(start, &a, Some(&b));
                    }
                    // Group 1 stopped early: its panic is reported by `join` below.
                    Some(Err(_)) => break,
                    None => finish(start, &a, None),
                }
            }
            for handle in std::iter::once(first).chain(second.map(|(_, h)| h)) {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            }
        });
    } else {
        let mut segments: [Vec<(usize, [Vec<f32>; 2])>; 2] = [Vec::new(), Vec::new()];
        for (g, segs) in segments.iter_mut().enumerate().take(groups) {
            render_group(g, &mut |start, seg| segs.push((start, seg)));
        }
        let [a, b] = segments;
        for (i, (start, a)) in a.iter().enumerate() {
            finish(*start, a, b.get(i).map(|(_, b)| b));
        }
    }
    StemMix { sum, key }
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
