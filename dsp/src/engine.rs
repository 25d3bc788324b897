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
use crate::meters::PublishedMeters;
use crate::settings::{
    CompKey, CompressorSettings, EngineSettings, MainInputRole, MasterSettings, MonitorSource,
    StemSettings,
};
use crate::smoother::Smoother;
use crate::stem::StemChain;
use crate::util::{avx2_fma_available, db_to_gain, gain_to_db, power_to_db, sanitize};

/// Largest number of frames processed in one internal pass.
pub const CHUNK: usize = 128;

/// Stems per summing group. The engine sums the processed stems group by group — each group
/// into its own accumulator starting from zero, then group 0 + group 1. The offline renderer
/// ([`crate::offline`]) runs the stems on its own threads and adds them up in this same order,
/// so its output is bit-identical (float addition is not associative).
pub const STEM_GROUP: usize = 4;

/// Bus indices in the engine's bus meter bank.
const BUS_MASTER: usize = 0;
const BUS_UNPROCESSED: usize = 1;
const BUS_MAIN: usize = 2;

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
    /// The main input, delayed by the engine latency (silence while its role is `Ignore`).
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
    /// Processed sum of each stem group.
    group_sums: [[[f32; CHUNK]; 2]; 2],
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
    /// The stems, in groups of [`STEM_GROUP`] (one group for up to four stems, else two).
    groups: Vec<StemGroup>,
    /// Whether the key sum is computed: some enabled compressor listens to the mix key, or
    /// one was just disabled and is still fading out (see `key_hold`).
    keyed: bool,
    /// Frames the key is still computed after its last listener was disabled, so the
    /// compressor keeps hearing the mix during its bypass crossfade; `None` when not counting.
    key_hold: Option<usize>,
    /// Master chain and the key's alignment delay.
    master: MasterStage,
    /// Delays the raw stem sum by the engine latency.
    raw_delay: DelayLine,
    /// Delays the main input by the stem-chain latency (aligned with the processed stems, for
    /// "add to sum").
    main_stem_delay: DelayLine,
    /// Delays the main input further by the master-chain latency (aligned with the output).
    main_delay: DelayLine,
    /// Per-stem meters (all stems at once).
    stem_meters: StemMeterBank,
    /// Meters of the three buses, one bank: [`BUS_MASTER`] (processed), [`BUS_UNPROCESSED`]
    /// (the unprocessed sum) and [`BUS_MAIN`] (the main input, silence while it is ignored).
    bus_meters: StemMeterBank,
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
    /// The CPU runs AVX2: the chunk's buffer loops (copies, sums, checks) use the AVX2 build.
    avx2: bool,
}

impl Engine {
    /// Prepares an engine: `sample_rate` 44.1–192 kHz (clamped), `max_block_size` ≥ 1,
    /// `num_stems` 1–8 (clamped). Allocates everything `process` will ever need.
    pub fn new(sample_rate: f32, max_block_size: usize, num_stems: usize) -> Self {
        Self::with_meters(
            sample_rate,
            max_block_size,
            num_stems,
            Arc::new(EngineMeters::default()),
        )
    }

    /// Like [`Engine::new`], publishing into `meters` (e.g. a plugin's holder that outlives
    /// the engines it builds on each activation, so an open editor keeps reading the same
    /// atomics). Values the previous engine left there stay until this one publishes, except
    /// that a pending reset request is honoured by this engine.
    pub fn with_meters(
        sample_rate: f32,
        max_block_size: usize,
        num_stems: usize,
        meters: Arc<EngineMeters>,
    ) -> Self {
        let sample_rate = sample_rate.clamp(SAMPLE_RATE_RANGE.0, SAMPLE_RATE_RANGE.1);
        let num_stems = num_stems.clamp(1, MAX_STEMS);
        let groups: Vec<StemGroup> = (0..num_stems.div_ceil(STEM_GROUP))
            .map(|g| StemGroup::new(sample_rate, (num_stems - g * STEM_GROUP).min(STEM_GROUP)))
            .collect();
        let stem_latency = groups[0].latency_samples();
        let master = MasterStage::new(sample_rate, stem_latency);
        let latency = stem_latency + master.chain.latency_samples();
        let ramp = |v: f32, ms: f32| Smoother::new(v, ms, sample_rate);
        let mut engine = Self {
            sample_rate,
            num_stems,
            max_block_size: max_block_size.max(1),
            settings: EngineSettings::default(),
            groups,
            keyed: false,
            key_hold: None,
            master,
            raw_delay: DelayLine::new(latency),
            main_stem_delay: DelayLine::new(stem_latency),
            main_delay: DelayLine::new(latency - stem_latency),
            stem_meters: StemMeterBank::new(sample_rate, num_stems),
            bus_meters: StemMeterBank::new(sample_rate, 3),
            monitor_gain: [
                ramp(1.0, MONITOR_RAMP_MS),
                ramp(0.0, MONITOR_RAMP_MS),
                ramp(0.0, MONITOR_RAMP_MS),
            ],
            match_gain: ramp(1.0, MONITOR_RAMP_MS),
            published: meters,
            latency,
            null_peak: 0.0,
            null_energy: 0.0,
            null_frames: 0,
            scratch: Scratch {
                stems: Box::new([[[0.0; CHUNK]; 2]; MAX_STEMS]),
                group_sums: [[[0.0; CHUNK]; 2]; 2],
                raw: [[0.0; CHUNK]; 2],
                key: [[0.0; CHUNK]; 2],
                master: [[0.0; CHUNK]; 2],
                main: [[0.0; CHUNK]; 2],
            },
            avx2: avx2_fma_available(),
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
        if settings.main_input != self.settings.main_input {
            // The main-input delays hold nothing while the input is ignored, and a change of
            // role starts the path afresh.
            self.main_stem_delay.reset();
            self.main_delay.reset();
        }
        self.settings.clone_from(settings);
        let stems = &settings.stems[..self.num_stems];
        let any_solo = stems.iter().any(|s| s.solo);
        for (group, stems) in self.groups.iter_mut().zip(stems.chunks(STEM_GROUP)) {
            group.set_settings(stems, any_solo);
        }
        if is_keyed(stems, &settings.master) {
            self.keyed = true;
            self.key_hold = None;
        } else if self.keyed && self.key_hold.is_none() {
            // The compressors' bypass fade, plus one chunk for the fade's start.
            let fade = (crate::compressor::BYPASS_FADE_MS * 1.0e-3 * self.sample_rate).ceil();
            self.key_hold = Some(fade as usize + CHUNK);
        }
        self.master.set_settings(&settings.master, self.keyed);
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
        if self.key_hold.is_some() {
            // Smoothers jump to their targets: nothing fades out any more.
            self.stop_key();
        }
        for group in &mut self.groups {
            group.reset();
        }
        for g in &mut self.monitor_gain {
            g.reset(g.target());
        }
        self.match_gain.reset(self.match_gain.target());
        self.master.reset();
        self.raw_delay.reset();
        self.main_stem_delay.reset();
        self.main_delay.reset();
        self.reset_meters();
    }

    /// Stops computing the mix key (its last listener has faded out).
    fn stop_key(&mut self) {
        self.key_hold = None;
        self.keyed = false;
        self.master.set_keyed(false);
    }

    fn reset_meters(&mut self) {
        self.stem_meters.reset();
        self.bus_meters.reset();
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
            if let Some(left) = self.key_hold {
                if left <= len {
                    self.stop_key();
                } else {
                    self.key_hold = Some(left - len);
                }
            }
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
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: the CPU runs AVX2 (checked at construction).
            return unsafe { self.process_chunk_avx2(stems, main, offset, len) };
        }
        self.process_chunk_impl(stems, main, offset, len);
    }

    /// [`Self::process_chunk`] compiled for AVX2: the same operations in the same order (the
    /// loops here are element-wise, so wider vectors give the same values to the bit), about
    /// half the instructions for the buffer passes of the neutral engine.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn process_chunk_avx2(
        &mut self,
        stems: &[Option<StereoIn<'_>>],
        main: Option<StereoIn<'_>>,
        offset: usize,
        len: usize,
    ) {
        self.process_chunk_impl(stems, main, offset, len);
    }

    #[inline(always)]
    fn process_chunk_impl(
        &mut self,
        stems: &[Option<StereoIn<'_>>],
        main: Option<StereoIn<'_>>,
        offset: usize,
        len: usize,
    ) {
        let sc = &mut self.scratch;
        // 1. Inputs, sanitised; the raw key sum of all stems when a compressor listens to it.
        for ch in 0..2 {
            sc.key[ch][..len].fill(0.0);
            sc.raw[ch][..len].fill(0.0);
        }
        for i in 0..self.num_stems {
            let input = stems.get(i).copied().flatten();
            for ch in 0..2 {
                copy_sanitized(input.map(|s| s[ch]), offset, &mut sc.stems[i][ch][..len]);
                if self.keyed {
                    for (k, x) in sc.key[ch][..len].iter_mut().zip(&sc.stems[i][ch][..len]) {
                        *k += x;
                    }
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

        // 2. Stems: chains and mute/solo, group by group; processed and raw sums.
        for (g, group) in self.groups.iter_mut().enumerate() {
            let first = g * STEM_GROUP;
            group.process(
                &mut sc.stems[first..first + group.len()],
                [&sc.key[0][..len], &sc.key[1][..len]],
                len,
                &mut sc.group_sums[g],
                Some(&mut sc.raw),
            );
        }
        {
            let [ml, mr] = &mut sc.master;
            let [[al, ar], [bl, br]] = &sc.group_sums;
            if self.groups.len() > 1 {
                for n in 0..len {
                    ml[n] = al[n] + bl[n];
                    mr[n] = ar[n] + br[n];
                }
            } else {
                ml[..len].copy_from_slice(&al[..len]);
                mr[..len].copy_from_slice(&ar[..len]);
            }
        }
        let metered: [[&[f32]; 2]; MAX_STEMS] =
            std::array::from_fn(|i| [&sc.stems[i][0][..len], &sc.stems[i][1][..len]]);
        self.stem_meters.process(&metered[..self.num_stems]);
        if role != MainInputRole::Ignore {
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
            self.master.process(
                &mut ml[..len],
                &mut mr[..len],
                &mut key_l[..len],
                &mut key_r[..len],
            );
        }

        // 4. Latency-aligned unprocessed and main paths, metered.
        {
            let [rl, rr] = &mut sc.raw;
            self.raw_delay.process(&mut rl[..len], &mut rr[..len]);
            let [nl, nr] = &mut sc.main;
            if role != MainInputRole::Ignore {
                self.main_delay.process(&mut nl[..len], &mut nr[..len]);
            }
            if role == MainInputRole::AddToSum {
                for n in 0..len {
                    rl[n] += nl[n];
                    rr[n] += nr[n];
                }
            }
            let [ml, mr] = &sc.master;
            self.bus_meters.process(&[
                [&ml[..len], &mr[..len]],
                [&rl[..len], &rr[..len]],
                [&nl[..len], &nr[..len]],
            ]);
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
        let processed = self.bus_meters.loudness(BUS_MASTER).integrated_lufs();
        let other = match self.settings.monitor.source {
            MonitorSource::Processed => f64::NAN,
            MonitorSource::Unprocessed => {
                self.bus_meters.loudness(BUS_UNPROCESSED).integrated_lufs()
            }
            MonitorSource::Reference => self.bus_meters.loudness(BUS_MAIN).integrated_lufs(),
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
        let integrated = self.bus_meters.loudness(BUS_MASTER).integrated_lufs();
        let proposal = if integrated.is_finite() {
            (master.drive_db as f64 + master.target_lufs as f64 - integrated) as f32
        } else {
            f32::NAN
        };
        let p = &self.published;
        self.stem_meters.publish(&p.stems);
        self.bus_meters.publish_one(BUS_MASTER, &p.master);
        self.bus_meters.publish_one(BUS_UNPROCESSED, &p.unprocessed);
        self.bus_meters.publish_one(BUS_MAIN, &p.main_input);
        let chains = self.groups.iter_mut().flat_map(|g| g.chains.iter_mut());
        for (i, chain) in chains.enumerate() {
            p.stem_comp_gr[i].publish(
                chain.comp.gain_reduction_db(),
                chain.comp.take_max_gain_reduction_db(),
            );
            p.stem_dyn_eq_gr[i].publish(
                chain.dyn_eq.gain_reduction_db(),
                chain.dyn_eq.take_max_gain_reduction_db(),
            );
        }
        let glue = &mut self.master.chain.glue;
        p.glue_gr
            .publish(glue.gain_reduction_db(), glue.take_max_gain_reduction_db());
        let limiter = &mut self.master.chain.limiter;
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

/// Whether any enabled compressor of the first stems or the enabled master glue listens to the
/// mix key.
pub(crate) fn is_keyed(stems: &[StemSettings], master: &MasterSettings) -> bool {
    let listens = |c: &CompressorSettings| c.enabled && c.key == CompKey::Mix;
    stems.iter().any(|s| listens(&s.comp)) || listens(&master.glue)
}

/// Up to [`STEM_GROUP`] consecutive stems: their chains and mute/solo gains.
pub(crate) struct StemGroup {
    /// The chains, one per stem of the group.
    pub(crate) chains: Vec<StemChain>,
    /// Mute/solo gain per stem (0 or 1, ramped over [`MUTE_RAMP_MS`]).
    audible: Vec<Smoother>,
    /// The CPU runs AVX2 (see [`Engine::process_chunk`]).
    avx2: bool,
}

impl StemGroup {
    /// Allocates `stems` (1..=[`STEM_GROUP`]) chains.
    pub(crate) fn new(sample_rate: f32, stems: usize) -> Self {
        Self {
            chains: (0..stems).map(|_| StemChain::new(sample_rate)).collect(),
            audible: (0..stems)
                .map(|_| Smoother::new(1.0, MUTE_RAMP_MS, sample_rate))
                .collect(),
            avx2: avx2_fma_available(),
        }
    }

    /// Stems in the group.
    pub(crate) fn len(&self) -> usize {
        self.chains.len()
    }

    /// Chain latency in samples.
    pub(crate) fn latency_samples(&self) -> usize {
        self.chains[0].latency_samples()
    }

    /// Applies the group's stem settings (`stems[i]` for chain `i`); `any_solo` tells whether
    /// any stem of the whole engine is soloed.
    pub(crate) fn set_settings(&mut self, stems: &[StemSettings], any_solo: bool) {
        for ((chain, audible), s) in self.chains.iter_mut().zip(&mut self.audible).zip(stems) {
            chain.set_settings(s);
            let on = !s.mute && (!any_solo || s.solo);
            audible.set_target(if on { 1.0 } else { 0.0 });
        }
    }

    /// Clears all state; mute/solo gains jump to their targets.
    pub(crate) fn reset(&mut self) {
        for chain in &mut self.chains {
            chain.reset();
        }
        for g in &mut self.audible {
            g.reset(g.target());
        }
    }

    /// Processes `len` frames: `audio[i]` holds the sanitised input of the group's stem `i` and
    /// is replaced by its processed, muted/soloed output; `sum` gets the sum of those (from
    /// zero, in stem order); `raw`, when given, gets the inputs added with the same mute/solo
    /// gains (the A/B "unprocessed" path, so A/B of a soloed stem compares that stem). `key` is
    /// the mix key for compressors keyed from the mix.
    pub(crate) fn process(
        &mut self,
        audio: &mut [[[f32; CHUNK]; 2]],
        key: [&[f32]; 2],
        len: usize,
        sum: &mut [[f32; CHUNK]; 2],
        raw: Option<&mut [[f32; CHUNK]; 2]>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: the CPU runs AVX2 (checked at construction).
            return unsafe { self.process_avx2(audio, key, len, sum, raw) };
        }
        self.process_impl(audio, key, len, sum, raw);
    }

    /// [`Self::process`] compiled for AVX2 (element-wise loops: the same values to the bit).
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn process_avx2(
        &mut self,
        audio: &mut [[[f32; CHUNK]; 2]],
        key: [&[f32]; 2],
        len: usize,
        sum: &mut [[f32; CHUNK]; 2],
        raw: Option<&mut [[f32; CHUNK]; 2]>,
    ) {
        self.process_impl(audio, key, len, sum, raw);
    }

    /// Processes the group's stem `i` on its own: `left`/`right` hold its sanitised input
    /// (equal lengths, any number of frames: the chain's output does not depend on how the
    /// signal is cut) and get its processed, muted/soloed output — the values
    /// [`Self::process`] adds into its sum. The offline renderer runs the stems one by one this
    /// way, on whichever thread is free, in longer blocks, and sums them itself in the same
    /// order.
    pub(crate) fn process_stem(
        &mut self,
        i: usize,
        left: &mut [f32],
        right: &mut [f32],
        key: [&[f32]; 2],
    ) {
        let (chain, audible) = (&mut self.chains[i], &mut self.audible[i]);
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: the CPU runs AVX2 (checked at construction).
            return unsafe { process_stem_avx2(chain, audible, left, right, key) };
        }
        process_stem(chain, audible, left, right, key);
    }

    #[inline(always)]
    fn process_impl(
        &mut self,
        audio: &mut [[[f32; CHUNK]; 2]],
        key: [&[f32]; 2],
        len: usize,
        sum: &mut [[f32; CHUNK]; 2],
        mut raw: Option<&mut [[f32; CHUNK]; 2]>,
    ) {
        let [acc_l, acc_r] = sum;
        acc_l[..len].fill(0.0);
        acc_r[..len].fill(0.0);
        for ((chain, audible), [sl, sr]) in self.chains.iter_mut().zip(&mut self.audible).zip(audio)
        {
            let (sl, sr) = (&mut sl[..len], &mut sr[..len]);
            if let Some([rl, rr]) = raw.as_deref_mut() {
                // A copy of the smoother, so the processed path below gets the same gains.
                let mut audible_raw = *audible;
                accumulate(&mut audible_raw, [&mut rl[..len], &mut rr[..len]], [sl, sr]);
            }
            process_stem(chain, audible, sl, sr, key);
            for (a, x) in acc_l[..len].iter_mut().zip(&*sl) {
                *a += x;
            }
            for (a, x) in acc_r[..len].iter_mut().zip(&*sr) {
                *a += x;
            }
        }
    }
}

/// One stem of a [`StemGroup`]: its chain over the sanitised input in place, a chunk that went
/// non-finite silenced (and the chain reset), then the mute/solo gain.
#[inline(always)]
fn process_stem(
    chain: &mut StemChain,
    audible: &mut Smoother,
    left: &mut [f32],
    right: &mut [f32],
    key: [&[f32]; 2],
) {
    chain.process(left, right, (key[0], key[1]));
    if !all_finite(left) || !all_finite(right) {
        // The chain's state went bad despite sanitised input: silence this chunk of the stem
        // and start its modules afresh, so it recovers within one block.
        left.fill(0.0);
        right.fill(0.0);
        chain.reset();
    }
    audible.apply_gain(left, right);
}

/// [`process_stem`] compiled for AVX2 (element-wise loops: the same values to the bit).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn process_stem_avx2(
    chain: &mut StemChain,
    audible: &mut Smoother,
    left: &mut [f32],
    right: &mut [f32],
    key: [&[f32]; 2],
) {
    process_stem(chain, audible, left, right, key);
}

/// The master chain with the mix key's alignment delay and non-finite recovery.
pub(crate) struct MasterStage {
    /// Drive, glue, EQ, width, limiter, output.
    pub(crate) chain: MasterChain,
    /// Delays the mix key by the stem-chain latency, to align it with the master input.
    key_delay: DelayLine,
    /// Whether the glue (or any stem) listens to the mix key; else the key is silence.
    keyed: bool,
}

impl MasterStage {
    /// Allocates the stage; the key is delayed by `stem_latency` samples.
    pub(crate) fn new(sample_rate: f32, stem_latency: usize) -> Self {
        Self {
            chain: MasterChain::new(sample_rate),
            key_delay: DelayLine::new(stem_latency),
            keyed: false,
        }
    }

    /// Applies settings; `keyed` says whether the key will carry the mix.
    pub(crate) fn set_settings(&mut self, settings: &MasterSettings, keyed: bool) {
        self.set_keyed(keyed);
        self.chain.set_settings(settings);
    }

    /// Says whether the key will carry the mix from the next chunk on.
    pub(crate) fn set_keyed(&mut self, keyed: bool) {
        if keyed && !self.keyed {
            // The delay holds nothing of the mix while unkeyed.
            self.key_delay.reset();
        }
        self.keyed = keyed;
    }

    /// Clears all state.
    pub(crate) fn reset(&mut self) {
        self.chain.reset();
        self.key_delay.reset();
    }

    /// Processes the processed stem sum in place. `key_l`/`key_r` is the unprocessed sum of all
    /// stems aligned with the stems' *input* (it is delayed here) and is overwritten; when not
    /// keyed the callers pass silence (the engine's key buffer is zeroed every chunk, the
    /// offline renderer has no key then), so the delay is skipped.
    pub(crate) fn process(
        &mut self,
        left: &mut [f32],
        right: &mut [f32],
        key_l: &mut [f32],
        key_r: &mut [f32],
    ) {
        if self.keyed {
            self.key_delay.process(key_l, key_r);
        }
        self.chain.process(left, right, (key_l, key_r));
        if !all_finite(left) || !all_finite(right) {
            // A module's state went bad despite finite input: silence this chunk and start
            // afresh, so the engine recovers within one block.
            left.fill(0.0);
            right.fill(0.0);
            self.chain.reset();
        }
    }
}

/// Copies `input[offset..offset + out.len()]` into `out`, sanitised; missing samples are 0.
#[inline(always)]
pub(crate) fn copy_sanitized(input: Option<&[f32]>, offset: usize, out: &mut [f32]) {
    let src = input
        .and_then(|s| s.get(offset.min(s.len())..))
        .unwrap_or(&[]);
    let n = src.len().min(out.len());
    for (o, &x) in out[..n].iter_mut().zip(&src[..n]) {
        *o = sanitize(x);
    }
    out[n..].fill(0.0);
}

/// `acc += gain·x` over a chunk with a (mute/solo) gain ramp; settled gains take the fast,
/// vectorised paths (1: plain add, 0: nothing). Advances `gain` exactly as per-sample ticks do.
#[inline(always)]
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

/// Whether every sample is finite: `v·0` is 0 for finite `v` and NaN for NaN/±Inf. Eight
/// independent partial sums, so the loop vectorises (one running sum would be a chain of
/// dependent additions, about 8 cycles per stereo frame per stem).
#[inline(always)]
fn all_finite(x: &[f32]) -> bool {
    let (chunks, tail) = x.as_chunks::<8>();
    let mut acc = [0.0f32; 8];
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v * 0.0;
        }
    }
    let tail = tail.iter().fold(0.0f32, |a, &v| a + v * 0.0);
    acc.iter().sum::<f32>() + tail == 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs an engine over a busy programme (every role and path in use, mute and solo ramps,
    /// a monitor crossfade), with the AVX2 build of the buffer loops or without.
    fn busy_run(avx2: bool) -> Vec<f32> {
        let mut engine = Engine::new(48_000.0, 300, 6);
        engine.avx2 = avx2;
        for g in &mut engine.groups {
            g.avx2 = avx2;
        }
        let mut settings = EngineSettings {
            main_input: MainInputRole::ReferenceMix,
            ..Default::default()
        };
        settings.stems[1].comp.enabled = true;
        settings.stems[1].comp.key = CompKey::Mix;
        settings.stems[2].trim_db = -4.0;
        settings.master.drive_db = 6.0;
        engine.set_settings(&settings);
        let frames = 9_000;
        let mut seed = 7u32;
        let mut noise = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        };
        let stems: Vec<[Vec<f32>; 2]> = (0..6)
            .map(|_| [(); 2].map(|_| (0..frames).map(|_| 0.3 * noise()).collect()))
            .collect();
        let main: [Vec<f32>; 2] = [(); 2].map(|_| (0..frames).map(|_| 0.5 * noise()).collect());
        let mut out = Vec::new();
        let (mut ol, mut or) = (vec![0.0; 300], vec![0.0; 300]);
        let mut start = 0;
        for (b, len) in [300, 17, 128, 1, 255, 300].iter().cycle().enumerate() {
            if start >= frames {
                break;
            }
            let len = (*len).min(frames - start);
            match b {
                5 => settings.stems[0].mute = true,
                9 => settings.stems[3].solo = true,
                14 => settings.monitor.source = MonitorSource::Unprocessed,
                20 => settings.main_input = MainInputRole::AddToSum,
                _ => {}
            }
            engine.set_settings(&settings);
            let ins: Vec<Option<StereoIn>> = stems
                .iter()
                .map(|[l, r]| Some([&l[start..start + len], &r[start..start + len]]))
                .collect();
            let m = [&main[0][start..start + len], &main[1][start..start + len]];
            engine.process(&ins, Some(m), &mut ol[..len], &mut or[..len]);
            out.extend_from_slice(&ol[..len]);
            out.extend_from_slice(&or[..len]);
            start += len;
        }
        out
    }

    #[test]
    fn avx2_build_of_the_buffer_loops_gives_the_same_output() {
        if !avx2_fma_available() {
            return;
        }
        let (plain, wide) = (busy_run(false), busy_run(true));
        assert!(plain.iter().any(|&x| x != 0.0));
        let differ = plain
            .iter()
            .zip(&wide)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(differ, 0, "{differ} samples differ");
    }

    #[test]
    fn all_finite_finds_a_bad_sample_anywhere() {
        for len in [0, 1, 7, 8, 9, 64, 67] {
            let mut x: Vec<f32> = (0..len).map(|n| (n as f32 - 30.0) * 1.0e30).collect();
            assert!(all_finite(&x), "len {len}");
            for pos in 0..len {
                for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                    let keep = x[pos];
                    x[pos] = bad;
                    assert!(!all_finite(&x), "len {len}, {bad} at {pos}");
                    x[pos] = keep;
                }
            }
        }
    }
}
