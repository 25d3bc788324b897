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

/// Runs the stem stage of an engine with `num_stems` slots (1–8, clamped) over `frames` frames
/// (inputs shorter than that are padded with silence, so `frames` may include the engine's
/// latency tail). `stems[i]` is slot `i` (`None` or missing: silence); `main` is the main input,
/// used only when the settings add it to the sum. With `parallel`, each stem group runs on its
/// own thread. Allocates the whole result.
pub fn render_stems(
    sample_rate: f32,
    num_stems: usize,
    stems: &[Option<StereoIn<'_>>],
    main: Option<StereoIn<'_>>,
    settings: &EngineSettings,
    frames: usize,
    parallel: bool,
) -> StemMix {
    let sample_rate = sample_rate.clamp(SAMPLE_RATE_RANGE.0, SAMPLE_RATE_RANGE.1);
    let num_stems = num_stems.clamp(1, MAX_STEMS);
    let stem_settings = &settings.stems[..num_stems];
    let any_solo = stem_settings.iter().any(|s| s.solo);
    let input = |i: usize| stems.get(i).copied().flatten();

    // The mix key: the sanitised inputs added in stem order from zero, as the engine does.
    let key = is_keyed(stem_settings, &settings.master).then(|| {
        let mut key = [vec![0.0f32; frames], vec![0.0f32; frames]];
        let mut chunk = [0.0f32; CHUNK];
        for i in 0..num_stems {
            for (ch, k) in key.iter_mut().enumerate() {
                for start in (0..frames).step_by(CHUNK) {
                    let len = (frames - start).min(CHUNK);
                    copy_sanitized(input(i).map(|s| s[ch]), start, &mut chunk[..len]);
                    for (k, x) in k[start..start + len].iter_mut().zip(&chunk[..len]) {
                        *k += x;
                    }
                }
            }
        }
        key
    });

    let render_group = |g: usize| -> [Vec<f32>; 2] {
        let first = g * STEM_GROUP;
        let count = (num_stems - first).min(STEM_GROUP);
        let mut group = StemGroup::new(sample_rate, count);
        group.set_settings(&stem_settings[first..first + count], any_solo);
        group.reset();
        let mut audio = vec![[[0.0f32; CHUNK]; 2]; count];
        let mut chunk_sum = [[0.0f32; CHUNK]; 2];
        let silence = [0.0f32; CHUNK];
        let mut out = [vec![0.0f32; frames], vec![0.0f32; frames]];
        for start in (0..frames).step_by(CHUNK) {
            let len = (frames - start).min(CHUNK);
            for (i, stem) in audio.iter_mut().enumerate() {
                for (ch, buf) in stem.iter_mut().enumerate() {
                    copy_sanitized(input(first + i).map(|s| s[ch]), start, &mut buf[..len]);
                }
            }
            let key_chunk = match &key {
                Some([kl, kr]) => [&kl[start..start + len], &kr[start..start + len]],
                None => [&silence[..len], &silence[..len]],
            };
            group.process(&mut audio, key_chunk, len, &mut chunk_sum, None);
            for (o, s) in out.iter_mut().zip(&chunk_sum) {
                o[start..start + len].copy_from_slice(&s[..len]);
            }
        }
        out
    };

    let groups = num_stems.div_ceil(STEM_GROUP);
    let mut sum = if groups == 1 {
        render_group(0)
    } else {
        let (mut a, b) = if parallel {
            std::thread::scope(|scope| {
                let second = scope.spawn(|| render_group(1));
                let first = render_group(0);
                (first, second.join().expect("stem group thread panicked"))
            })
        } else {
            (render_group(0), render_group(1))
        };
        for (a, b) in a.iter_mut().zip(&b) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
        a
    };

    if settings.main_input == MainInputRole::AddToSum {
        // The main input delayed by the stem latency (zeros first, as the engine's delay line
        // gives them), sanitised, added to the processed sum.
        let latency = StemGroup::new(sample_rate, 1).latency_samples();
        for (ch, s) in sum.iter_mut().enumerate() {
            let src = main.map(|m| m[ch]).unwrap_or(&[]);
            for (n, x) in s.iter_mut().enumerate() {
                let delayed = n
                    .checked_sub(latency)
                    .and_then(|k| src.get(k))
                    .map_or(0.0, |&v| sanitize(v));
                *x += delayed;
            }
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
