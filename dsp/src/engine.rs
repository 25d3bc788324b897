//! The engine: up to eight stereo stems and the main input in, one stereo output.
//!
//! `Engine::new` allocates everything; `process` never allocates, locks or panics. The host
//! block is cut into chunks of at most [`CHUNK`] frames so that scratch buffers are fixed-size
//! and every module sees the same per-sample processing whatever the host block size (block and
//! per-sample processing give identical output).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use atomic_float::AtomicF32;

use crate::MAX_STEMS;
use crate::delay::DelayLine;
use crate::master::MasterChain;
use crate::meter_bank::StemMeterBank;
use crate::meters::{MeterSet, PublishedMeters};
use crate::settings::{EngineSettings, MainInputRole, MonitorSource};
use crate::smoother::Smoother;
use crate::stem::StemChain;
use crate::util::{db_to_gain, gain_to_db, power_to_db, sanitize_slice};

/// Largest number of frames processed in one internal pass.
pub const CHUNK: usize = 128;

/// Length of the mute/solo ramps in milliseconds.
pub const MUTE_RAMP_MS: f32 = 10.0;

/// Length of the monitor (A/B) crossfade and loudness-match ramp in milliseconds.
pub const MONITOR_RAMP_MS: f32 = 30.0;

/// Largest loudness-match gain in dB, either way.
pub const MAX_MATCH_DB: f32 = 24.0;

/// Lowest and highest sample rates the engine is specified for.
pub const SAMPLE_RATE_RANGE: (f32, f32) = (44_100.0, 192_000.0);

/// One stereo input: left and right channel slices.
pub type StereoIn<'a> = [&'a [f32]; 2];

/// A gain-reduction meter published to other threads: the current value and the maximum since
/// the reader's last [`take`](Self::take) (so no peak of reduction is missed between reads).
#[derive(Default)]
pub struct PublishedGain {
    /// Gain reduction at the end of the last block, dB (≥ 0). Written by the audio thread.
    current_db: AtomicF32,
    /// Largest gain reduction since the last `take`, dB (≥ 0). `fetch_max` by the audio thread,
    /// `swap(0)` by the reader.
    max_db: AtomicF32,
}

impl PublishedGain {
    /// Audio thread: publishes the current and the block's maximum reduction.
    #[inline]
    pub fn publish(&self, current_db: f32, block_max_db: f32) {
        self.current_db.store(current_db, Ordering::Relaxed);
        self.max_db.fetch_max(block_max_db, Ordering::Relaxed);
    }

    /// Reader: the current reduction, in dB.
    pub fn current(&self) -> f32 {
        self.current_db.load(Ordering::Relaxed)
    }

    /// Reader: the largest reduction since the previous `take`, in dB; restarts the maximum.
    pub fn take(&self) -> f32 {
        self.max_db.swap(0.0, Ordering::Relaxed)
    }
}

/// Everything the engine publishes for other threads (the GUI, the offline tool).
#[derive(Default)]
pub struct EngineMeters {
    /// Per stem, after its chain and mute/solo.
    pub stems: [PublishedMeters; MAX_STEMS],
    /// The processed master (before the monitor switch).
    pub master: PublishedMeters,
    /// The unprocessed stem sum, delayed by the engine latency.
    pub unprocessed: PublishedMeters,
    /// The main input (in any role but `Ignore`), delayed by the engine latency.
    pub main_input: PublishedMeters,
    /// Master limiter gain reduction.
    pub limiter_gr: PublishedGain,
    /// Master glue compressor gain reduction.
    pub glue_gr: PublishedGain,
    /// Per-stem compressor gain reduction.
    pub stem_comp_gr: [PublishedGain; MAX_STEMS],
    /// Per-stem dynamic EQ gain reduction (the band's cut).
    pub stem_dyn_eq_gr: [PublishedGain; MAX_STEMS],
    /// Loudness-match gain applied to the monitored non-processed path, dB.
    pub match_gain_db: AtomicF32,
    /// Loudness-target helper: the drive (dB) that would bring the integrated loudness of the
    /// processed output (measured since the last meter reset) to the master's `target_lufs`,
    /// assuming the chain is linear around the current setting: `drive + target − integrated`.
    /// NaN until there is a measurement. A "learn" is: reset the meters, play the material, read
    /// this; with heavy limiting a second learn refines it (the offline tool iterates exactly).
    pub proposed_drive_db: AtomicF32,
    /// Null test (main input role `ReferenceMix`): largest |unprocessed sum − reference mix|
    /// since the last read, linear (read with `swap(0)`).
    pub null_peak: AtomicF32,
    /// Null test: RMS of the residual over the last block, dBFS.
    pub null_rms_db: AtomicF32,
    /// Set by a reader to reset every meter's integrated loudness, LRA and maxima.
    reset_all: AtomicBool,
}

impl EngineMeters {
    /// Asks the audio thread to reset integrated loudness, LRA and maxima of every meter
    /// (the loudness match restarts too).
    pub fn request_reset(&self) {
        self.reset_all.store(true, Ordering::Relaxed);
    }
}

/// Scratch buffers for one chunk.
struct Scratch {
    /// Per-stem audio, `[stem][channel][frame]`.
    stems: Box<[[[f32; CHUNK]; 2]; MAX_STEMS]>,
    /// Raw (unprocessed) sum of the stems, after mute/solo: the A/B "unprocessed" path.
    raw: [[f32; CHUNK]; 2],
    /// Raw sum of all stems regardless of mute/solo: the key for mix-keyed compressors.
    key: [[f32; CHUNK]; 2],
    /// Processed sum → master chain.
    master: [[f32; CHUNK]; 2],
    /// Main input, sanitised.
    main: [[f32; CHUNK]; 2],
}

/// The Stembus engine.
pub struct Engine {
    /// Sample rate in Hz.
    sample_rate: f32,
    /// Number of stems prepared (1..=8).
    num_stems: usize,
    /// Largest host block the engine was prepared for (informational: any block is chunked).
    max_block_size: usize,
    /// Settings applied by the last `set_settings`.
    settings: EngineSettings,
    /// Per-stem chains (`num_stems` of them).
    stems: Vec<StemChain>,
    /// Per-stem mute/solo gain (0 or 1, ramped).
    stem_audible: Vec<Smoother>,
    /// Master chain.
    master: MasterChain,
    /// Delays the raw stem sum by the engine latency.
    raw_delay: DelayLine,
    /// Delays the mix key by the stem-chain latency, to align it with the master input.
    key_delay: DelayLine,
    /// Delays the main input by the stem-chain latency (aligned with the processed stems, for
    /// "add to sum").
    main_stem_delay: DelayLine,
    /// Delays the main input further by the master-chain latency (aligned with the output).
    main_delay: DelayLine,
    /// Per-stem meters (all stems at once).
    stem_meters: StemMeterBank,
    /// Master (processed) meters.
    master_meter: MeterSet,
    /// Unprocessed-sum meters.
    raw_meter: MeterSet,
    /// Main-input meters.
    main_meter: MeterSet,
    /// Crossfade gains of the three monitor paths (processed, unprocessed, reference).
    monitor_gain: [Smoother; 3],
    /// Loudness-match gain (linear) for the non-processed paths.
    match_gain: Smoother,
    /// Published meters.
    published: Arc<EngineMeters>,
    /// Total latency in samples.
    latency: usize,
    /// Null test accumulators over the current host block: peak (linear), energy, frames.
    null_peak: f32,
    null_energy: f64,
    null_frames: usize,
    /// Scratch buffers.
    scratch: Scratch,
}

impl Engine {
    /// Prepares an engine: `sample_rate` 44.1–192 kHz (clamped), `max_block_size` ≥ 1,
    /// `num_stems` 1–8 (clamped). Allocates everything `process` will ever need.
    pub fn new(sample_rate: f32, max_block_size: usize, num_stems: usize) -> Self {
        let sample_rate = sample_rate.clamp(SAMPLE_RATE_RANGE.0, SAMPLE_RATE_RANGE.1);
        let num_stems = num_stems.clamp(1, MAX_STEMS);
        let stems: Vec<StemChain> = (0..num_stems)
            .map(|_| StemChain::new(sample_rate))
            .collect();
        let master = MasterChain::new(sample_rate);
        let stem_latency = stems[0].latency_samples();
        let latency = stem_latency + master.latency_samples();
        let ramp = |v: f32, ms: f32| Smoother::new(v, ms, sample_rate);
        let mut engine = Self {
            sample_rate,
            num_stems,
            max_block_size: max_block_size.max(1),
            settings: EngineSettings::default(),
            stems,
            stem_audible: (0..num_stems).map(|_| ramp(1.0, MUTE_RAMP_MS)).collect(),
            master,
            raw_delay: DelayLine::new(latency),
            key_delay: DelayLine::new(stem_latency),
            main_stem_delay: DelayLine::new(stem_latency),
            main_delay: DelayLine::new(latency - stem_latency),
            stem_meters: StemMeterBank::new(sample_rate, num_stems),
            master_meter: MeterSet::new(sample_rate),
            raw_meter: MeterSet::new(sample_rate),
            main_meter: MeterSet::new(sample_rate),
            monitor_gain: [
                ramp(1.0, MONITOR_RAMP_MS),
                ramp(0.0, MONITOR_RAMP_MS),
                ramp(0.0, MONITOR_RAMP_MS),
            ],
            match_gain: ramp(1.0, MONITOR_RAMP_MS),
            published: Arc::new(EngineMeters::default()),
            latency,
            null_peak: 0.0,
            null_energy: 0.0,
            null_frames: 0,
            scratch: Scratch {
                stems: Box::new([[[0.0; CHUNK]; 2]; MAX_STEMS]),
                raw: [[0.0; CHUNK]; 2],
                key: [[0.0; CHUNK]; 2],
                master: [[0.0; CHUNK]; 2],
                main: [[0.0; CHUNK]; 2],
            },
        };
        let settings = engine.settings.clone();
        engine.set_settings(&settings);
        engine.reset();
        engine
    }

    /// Sample rate in Hz.
    pub fn sample_rate(&self) -> f32 {
        self.sample_rate
    }

    /// Number of stems prepared.
    pub fn num_stems(&self) -> usize {
        self.num_stems
    }

    /// Largest block size given at preparation.
    pub fn max_block_size(&self) -> usize {
        self.max_block_size
    }

    /// Total latency in samples; depends only on the sample rate.
    pub fn latency_samples(&self) -> usize {
        self.latency
    }

    /// The published meters (clone the `Arc` for the GUI thread).
    pub fn meters(&self) -> &Arc<EngineMeters> {
        &self.published
    }

    /// Settings last applied.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Applies new settings. Real-time safe; continuous controls ramp.
    pub fn set_settings(&mut self, settings: &EngineSettings) {
        self.settings.clone_from(settings);
        let any_solo = settings.stems[..self.num_stems].iter().any(|s| s.solo);
        for (i, chain) in self.stems.iter_mut().enumerate() {
            let s = &settings.stems[i];
            chain.set_settings(s);
            let audible = !s.mute && (!any_solo || s.solo);
            self.stem_audible[i].set_target(if audible { 1.0 } else { 0.0 });
        }
        self.master.set_settings(&settings.master);
        let source = match (settings.monitor.source, settings.main_input) {
            (MonitorSource::Reference, MainInputRole::Ignore | MainInputRole::AddToSum) => {
                MonitorSource::Processed
            }
            (source, _) => source,
        };
        for (i, g) in self.monitor_gain.iter_mut().enumerate() {
            let on = matches!(
                (i, source),
                (0, MonitorSource::Processed)
                    | (1, MonitorSource::Unprocessed)
                    | (2, MonitorSource::Reference)
            );
            g.set_target(if on { 1.0 } else { 0.0 });
        }
    }

    /// Clears all audio state (filters, delays, meters); smoothers jump to their targets.
    pub fn reset(&mut self) {
        for chain in &mut self.stems {
            chain.reset();
        }
        for g in self
            .stem_audible
            .iter_mut()
            .chain(self.monitor_gain.iter_mut())
        {
            g.reset(g.target());
        }
        self.match_gain.reset(self.match_gain.target());
        self.master.reset();
        self.raw_delay.reset();
        self.key_delay.reset();
        self.main_stem_delay.reset();
        self.main_delay.reset();
        self.reset_meters();
    }

    fn reset_meters(&mut self) {
        self.stem_meters.reset();
        for m in [
            &mut self.master_meter,
            &mut self.raw_meter,
            &mut self.main_meter,
        ] {
            m.reset();
        }
    }

    /// Processes one host block. `stems[i]` is stem `i`'s input (`None`, a missing index or a
    /// short slice means silence); `main` is the main input. The output has `out_left.len()`
    /// frames (`out_right` is cut to the same length). Any block size works.
    pub fn process(
        &mut self,
        stems: &[Option<StereoIn<'_>>],
        main: Option<StereoIn<'_>>,
        out_left: &mut [f32],
        out_right: &mut [f32],
    ) {
        if self.published.reset_all.swap(false, Ordering::Relaxed) {
            self.reset_meters();
            self.match_gain.reset(1.0);
        }
        let frames = out_left.len().min(out_right.len());
        let mut start = 0;
        while start < frames {
            let len = (frames - start).min(CHUNK);
            self.process_chunk(stems, main, start, len);
            let [pl, pr] = &self.scratch.master;
            out_left[start..start + len].copy_from_slice(&pl[..len]);
            out_right[start..start + len].copy_from_slice(&pr[..len]);
            start += len;
        }
        self.publish();
    }

    /// Processes `len` frames starting at `offset` of the host buffers; the result is left in
    /// `scratch.master`.
    fn process_chunk(
        &mut self,
        stems: &[Option<StereoIn<'_>>],
        main: Option<StereoIn<'_>>,
        offset: usize,
        len: usize,
    ) {
        let sc = &mut self.scratch;
        // 1. Inputs, sanitised; the raw key sum of all stems.
        for ch in 0..2 {
            sc.key[ch][..len].fill(0.0);
            sc.raw[ch][..len].fill(0.0);
            sc.master[ch][..len].fill(0.0);
        }
        for i in 0..self.num_stems {
            let input = stems.get(i).copied().flatten();
            for ch in 0..2 {
                copy_sanitized(input.map(|s| s[ch]), offset, &mut sc.stems[i][ch][..len]);
                for (k, x) in sc.key[ch][..len].iter_mut().zip(&sc.stems[i][ch][..len]) {
                    *k += x;
                }
            }
        }
        let role = self.settings.main_input;
        for ch in 0..2 {
            let input = if role == MainInputRole::Ignore {
                None
            } else {
                main.map(|m| m[ch])
            };
            copy_sanitized(input, offset, &mut sc.main[ch][..len]);
        }

        // 2. Stems: chain, mute/solo, meters; processed and raw sums.
        for i in 0..self.num_stems {
            let [key_l, key_r] = &sc.key;
            let [sl, sr] = &mut sc.stems[i];
            // The raw path gets the same mute/solo gain as the processed one, so A/B of a
            // soloed stem compares that stem. Mute/solo ramps are applied to the raw input
            // first, then to the processed output with the same gains (a copy of the smoother).
            let mut audible_raw = self.stem_audible[i];
            let [rl, rr] = &mut sc.raw;
            accumulate(
                &mut audible_raw,
                [&mut rl[..len], &mut rr[..len]],
                [&sl[..len], &sr[..len]],
            );
            self.stems[i].process(
                &mut sl[..len],
                &mut sr[..len],
                (&key_l[..len], &key_r[..len]),
            );
            self.stem_audible[i].apply_gain(&mut sl[..len], &mut sr[..len]);
            let [ml, mr] = &mut sc.master;
            for n in 0..len {
                ml[n] += sl[n];
                mr[n] += sr[n];
            }
        }
        let metered: [[&[f32]; 2]; MAX_STEMS] =
            std::array::from_fn(|i| [&sc.stems[i][0][..len], &sc.stems[i][1][..len]]);
        self.stem_meters.process(&metered[..self.num_stems]);
        {
            let [nl, nr] = &mut sc.main;
            self.main_stem_delay.process(&mut nl[..len], &mut nr[..len]);
        }
        if role == MainInputRole::AddToSum {
            for ch in 0..2 {
                for (m, x) in sc.master[ch][..len].iter_mut().zip(&sc.main[ch][..len]) {
                    *m += x;
                }
            }
        }

        // 3. Master chain, with the mix key aligned to the processed sum.
        {
            let [ml, mr] = &mut sc.master;
            let [key_l, key_r] = &mut sc.key;
            self.key_delay.process(&mut key_l[..len], &mut key_r[..len]);
            self.master.process(
                &mut ml[..len],
                &mut mr[..len],
                (&mut key_l[..len], &mut key_r[..len]),
            );
        }
        if !all_finite(&sc.master[0][..len]) || !all_finite(&sc.master[1][..len]) {
            // A module's state went bad despite sanitised input: silence this chunk and start
            // every module afresh, so the engine recovers within one block.
            sc.master[0][..len].fill(0.0);
            sc.master[1][..len].fill(0.0);
            for chain in &mut self.stems {
                chain.reset();
            }
            self.master.reset();
        }
        self.master_meter
            .process(&sc.master[0][..len], &sc.master[1][..len]);

        // 4. Latency-aligned unprocessed and main paths, metered.
        {
            let [rl, rr] = &mut sc.raw;
            self.raw_delay.process(&mut rl[..len], &mut rr[..len]);
            let [nl, nr] = &mut sc.main;
            self.main_delay.process(&mut nl[..len], &mut nr[..len]);
            if role == MainInputRole::AddToSum {
                for n in 0..len {
                    rl[n] += nl[n];
                    rr[n] += nr[n];
                }
            }
            self.raw_meter.process(&rl[..len], &rr[..len]);
            if role != MainInputRole::Ignore {
                self.main_meter.process(&nl[..len], &nr[..len]);
            }
            if role == MainInputRole::ReferenceMix {
                let mut peak = 0.0f32;
                let mut energy = 0.0f32;
                for n in 0..len {
                    let (dl, dr) = (rl[n] - nl[n], rr[n] - nr[n]);
                    peak = peak.max(dl.abs()).max(dr.abs());
                    energy += dl * dl + dr * dr;
                }
                self.null_peak = self.null_peak.max(peak);
                self.null_energy += f64::from(energy);
                self.null_frames += len;
            }
        }

        // 5. Monitor: crossfade between processed, unprocessed and reference.
        let settled_processed = !self.monitor_gain.iter().any(Smoother::is_smoothing)
            && self.monitor_gain[0].value() == 1.0;
        if !settled_processed {
            let [g_p, g_u, g_r] = &mut self.monitor_gain;
            let [ml, mr] = &mut sc.master;
            let [rl, rr] = &sc.raw;
            let [nl, nr] = &sc.main;
            for n in 0..len {
                let (p, u, r, m) = (g_p.tick(), g_u.tick(), g_r.tick(), self.match_gain.tick());
                ml[n] = p * ml[n] + m * (u * rl[n] + r * nl[n]);
                mr[n] = p * mr[n] + m * (u * rr[n] + r * nr[n]);
            }
        }
    }

    /// Sets the loudness-match gain target from the measured integrated loudness of the
    /// processed path and of the monitored other path; 0 dB while either is unmeasured.
    fn update_loudness_match(&mut self) {
        let processed = self.master_meter.loudness().integrated_lufs();
        let other = match self.settings.monitor.source {
            MonitorSource::Processed => f64::NAN,
            MonitorSource::Unprocessed => self.raw_meter.loudness().integrated_lufs(),
            MonitorSource::Reference => self.main_meter.loudness().integrated_lufs(),
        };
        let match_db = processed - other;
        let gain = if self.settings.monitor.loudness_match && match_db.is_finite() {
            db_to_gain(match_db.clamp(-MAX_MATCH_DB as f64, MAX_MATCH_DB as f64) as f32)
        } else {
            1.0
        };
        self.match_gain.set_target(gain);
    }

    /// Publishes meter values after a block.
    fn publish(&mut self) {
        self.update_loudness_match();
        let master = &self.settings.master;
        let integrated = self.master_meter.loudness().integrated_lufs();
        let proposal = if integrated.is_finite() {
            (master.drive_db as f64 + master.target_lufs as f64 - integrated) as f32
        } else {
            f32::NAN
        };
        let p = &self.published;
        self.stem_meters.publish(&p.stems);
        self.master_meter.publish(&p.master);
        self.raw_meter.publish(&p.unprocessed);
        self.main_meter.publish(&p.main_input);
        for (i, chain) in self.stems.iter_mut().enumerate() {
            p.stem_comp_gr[i].publish(
                chain.comp.gain_reduction_db(),
                chain.comp.take_max_gain_reduction_db(),
            );
            p.stem_dyn_eq_gr[i].publish(
                chain.dyn_eq.gain_reduction_db(),
                chain.dyn_eq.take_max_gain_reduction_db(),
            );
        }
        let glue = &mut self.master.glue;
        p.glue_gr
            .publish(glue.gain_reduction_db(), glue.take_max_gain_reduction_db());
        let limiter = &mut self.master.limiter;
        p.limiter_gr.publish(
            limiter.gain_reduction_db(),
            limiter.take_max_gain_reduction_db(),
        );
        p.match_gain_db
            .store(gain_to_db(self.match_gain.value()), Ordering::Relaxed);
        p.proposed_drive_db.store(proposal, Ordering::Relaxed);
        if self.null_frames > 0 {
            p.null_peak.fetch_max(self.null_peak, Ordering::Relaxed);
            let mean_square = self.null_energy / (2 * self.null_frames) as f64;
            p.null_rms_db
                .store(power_to_db(mean_square) as f32, Ordering::Relaxed);
            self.null_peak = 0.0;
            self.null_energy = 0.0;
            self.null_frames = 0;
        }
    }
}

/// Copies `input[offset..offset + out.len()]` into `out`, sanitised; missing samples are 0.
#[inline]
fn copy_sanitized(input: Option<&[f32]>, offset: usize, out: &mut [f32]) {
    let src = input
        .and_then(|s| s.get(offset.min(s.len())..))
        .unwrap_or(&[]);
    let n = src.len().min(out.len());
    out[..n].copy_from_slice(&src[..n]);
    sanitize_slice(&mut out[..n]);
    out[n..].fill(0.0);
}

/// `acc += gain·x` over a chunk with a (mute/solo) gain ramp; settled gains take the fast,
/// vectorised paths (1: plain add, 0: nothing). Advances `gain` exactly as per-sample ticks do.
#[inline]
fn accumulate(gain: &mut Smoother, acc: [&mut [f32]; 2], x: [&[f32]; 2]) {
    let [al, ar] = acc;
    let [xl, xr] = x;
    let n = al.len();
    let mut i = 0;
    while i < n && gain.is_smoothing() {
        let g = gain.tick();
        al[i] += g * xl[i];
        ar[i] += g * xr[i];
        i += 1;
    }
    let g = gain.value();
    if g == 1.0 {
        for (a, x) in al[i..].iter_mut().zip(&xl[i..n]) {
            *a += x;
        }
        for (a, x) in ar[i..].iter_mut().zip(&xr[i..n]) {
            *a += x;
        }
    } else if g != 0.0 {
        for (a, x) in al[i..].iter_mut().zip(&xl[i..n]) {
            *a += g * x;
        }
        for (a, x) in ar[i..].iter_mut().zip(&xr[i..n]) {
            *a += g * x;
        }
    }
}

#[inline]
fn all_finite(x: &[f32]) -> bool {
    x.iter().fold(0.0f32, |acc, &v| acc + v * 0.0) == 0.0
}
