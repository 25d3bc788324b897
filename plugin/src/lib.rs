//! # stembus (plugin)
//!
//! CLAP and VST3 wrapper of the Stembus engine ([`stembus_dsp::engine::Engine`]): a stereo main
//! input and eight stereo stem inputs on auxiliary buses ("Stem 1" … "Stem 8") in, a stereo
//! mastered output out.
//!
//! - Parameters ([`params`]) mirror every field of [`EngineSettings`] through the table in
//!   [`stembus_dsp::state`]; they are copied into a preallocated `EngineSettings` at the start of
//!   each block (the engine smooths every continuous value itself).
//! - Missing stems (bus not connected, deactivated, too few buffers) are silence: nice-plug hands
//!   the plugin zeroed aux buffers for them (see `vendor/nice-plug/VENDORED.md` for the fixes
//!   this needs).
//! - The latency (limiter lookahead + detector + oversampling) depends only on the sample rate
//!   and is reported in `activate`. Bypass keeps it: the output becomes the latency-aligned
//!   unprocessed stem sum through the engine's click-free monitor crossfade.
//! - The audio thread never allocates, locks or logs. Meters are published by the engine in an
//!   `Arc<EngineMeters>` (atomics) for the GUI.

use std::num::NonZeroU32;
use std::sync::Arc;

use nice_plug::plugin::ParamValue;
use nice_plug::prelude::*;
use stembus_dsp::MAX_STEMS;
use stembus_dsp::engine::{Engine, EngineMeters, StereoIn};
use stembus_dsp::settings::{EngineSettings, MonitorSource};
use stembus_dsp::state;

pub mod params;

use params::{Bindings, StembusParams};

/// Stereo.
const STEREO: Option<NonZeroU32> = NonZeroU32::new(2);

/// Channel counts of the stem buses.
const STEM_PORTS: [NonZeroU32; MAX_STEMS] = [new_nonzero_u32(2); MAX_STEMS];

/// Names of the stem buses.
const STEM_PORT_NAMES: [&str; MAX_STEMS] = [
    "Stem 1", "Stem 2", "Stem 3", "Stem 4", "Stem 5", "Stem 6", "Stem 7", "Stem 8",
];

/// The layout with a stereo main input/output and `num_stems` stereo stem buses.
const fn layout(num_stems: usize, name: &'static str) -> AudioIOLayout {
    AudioIOLayout {
        main_input_channels: STEREO,
        main_output_channels: STEREO,
        aux_input_ports: STEM_PORTS.split_at(num_stems).0,
        aux_output_ports: &[],
        names: PortNames {
            layout: Some(name),
            main_input: Some("Main Input"),
            main_output: Some("Output"),
            aux_inputs: STEM_PORT_NAMES.split_at(num_stems).0,
            aux_outputs: &[],
        },
    }
}

/// The Stembus plugin.
pub struct Stembus {
    /// Host parameters and persisted fields, shared with the wrapper (and later the editor).
    params: Arc<StembusParams>,
    /// Parameter → settings-field bindings, built once from `params`.
    bindings: Bindings,
    /// Settings handed to the engine each block; updated in place (no allocation).
    settings: EngineSettings,
    /// The engine; created in `activate` (sample rate, block size and stem count known).
    engine: Option<Engine>,
    /// The meters every engine this instance builds publishes into (for the GUI): one holder
    /// for the plugin's lifetime, so a reader keeps its `Arc` across re-activations.
    meters: Arc<EngineMeters>,
    /// Copy of the main input: the engine reads it while writing the (in-place) main buffer.
    main_copy: [Vec<f32>; 2],
}

impl Default for Stembus {
    fn default() -> Self {
        let params = Arc::new(StembusParams::default());
        let bindings = Bindings::new(&params);
        Self {
            params,
            bindings,
            settings: EngineSettings::default(),
            engine: None,
            meters: Arc::new(EngineMeters::default()),
            main_copy: [Vec::new(), Vec::new()],
        }
    }
}

impl Stembus {
    /// The meters published by the current engine (atomics; read from any thread); the same
    /// holder before, between and after activations.
    pub fn meters(&self) -> &Arc<EngineMeters> {
        &self.meters
    }

    /// The engine's latency in samples (0 before `activate`).
    pub fn latency_samples(&self) -> usize {
        self.engine.as_ref().map_or(0, Engine::latency_samples)
    }

    /// Reads the parameters into `self.settings`; in bypass the engine is switched to the
    /// latency-aligned unprocessed sum of every stem (no loudness match, no mute/solo) so the
    /// switch is a crossfade and the latency stays. Real-time safe.
    fn update_settings(&mut self) {
        self.bindings.apply(&mut self.settings);
        if self.params.global.bypass.value() {
            bypass_settings(&mut self.settings);
        }
    }
}

/// Settings for bypass: the engine's monitor plays the unprocessed stem sum (delayed by the
/// engine latency, so the host's latency compensation still holds) at unity gain, with every
/// stem audible. The engine ramps the monitor and mute/solo gains, so entering and leaving
/// bypass is click-free.
pub fn bypass_settings(settings: &mut EngineSettings) {
    settings.monitor.source = MonitorSource::Unprocessed;
    settings.monitor.loudness_match = false;
    for stem in &mut settings.stems {
        stem.mute = false;
        stem.solo = false;
    }
}

/// Checks a state before nice-plug loads it: a state that is not a valid Stembus state (no or
/// unknown `state_version`, values of the wrong type) is emptied so nothing is loaded and the
/// plugin keeps its current settings; a valid one is normalised to the full, sanitised
/// parameter set (missing parameters get their defaults, out-of-range values are clamped) and
/// the current layout version, exactly as the offline tool reads it.
fn filter_plugin_state(state: &mut PluginState) {
    let parsed = serde_json::to_string(&*state)
        .map_err(|e| state::StateError::Json(e.to_string()))
        .and_then(|json| state::parse_state_json(&json));
    match parsed {
        Ok(parsed) => {
            if !parsed.unknown_ids.is_empty() {
                nice_warn!(
                    "Stembus: ignoring unknown parameters {:?}",
                    parsed.unknown_ids
                );
            }
            let saved = state::settings_to_state(&parsed.settings, &parsed.stem_names);
            state.params = saved
                .params
                .into_iter()
                .map(|(id, value)| (id, param_value(value)))
                .collect();
            state
                .params
                .insert(state::BYPASS_ID.to_owned(), ParamValue::Bool(parsed.bypass));
            state.fields = saved.fields;
        }
        Err(err) => {
            nice_error!("Stembus: rejecting saved state ({err}); keeping the current settings");
            state.params.clear();
            state.fields.clear();
        }
    }
}

/// nice-plug's value type for a state-table value.
fn param_value(value: state::StateValue) -> ParamValue {
    match value {
        state::StateValue::F32(v) => ParamValue::F32(v),
        state::StateValue::I32(v) => ParamValue::I32(v),
        state::StateValue::Bool(v) => ParamValue::Bool(v),
        state::StateValue::String(v) => ParamValue::String(v),
    }
}

impl Plugin for Stembus {
    const NAME: &'static str = "Stembus";
    const VENDOR: &'static str = "Stembus";
    const URL: &'static str = env!("CARGO_PKG_REPOSITORY");
    const EMAIL: &'static str = "stembus@example.invalid";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = &[
        layout(8, "8 Stems"),
        layout(4, "4 Stems"),
        layout(2, "2 Stems"),
        layout(1, "1 Stem"),
    ];

    const SAMPLE_ACCURATE_AUTOMATION: bool = false;

    type SysExMessage = ();
    type BackgroundTask = ();
    type Editor = ();

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn filter_state(state: &mut PluginState) {
        filter_plugin_state(state);
    }

    fn activate(
        &mut self,
        audio_io_layout: &AudioIOLayout,
        buffer_config: &BufferConfig,
        context: &mut impl ActivateContext<Self>,
    ) -> bool {
        let max_block = buffer_config.max_buffer_size.max(1) as usize;
        let num_stems = audio_io_layout.aux_input_ports.len().clamp(1, MAX_STEMS);
        let engine = Engine::with_meters(
            buffer_config.sample_rate,
            max_block,
            num_stems,
            self.meters.clone(),
        );
        context.set_latency_samples(engine.latency_samples() as u32);
        self.engine = Some(engine);
        for ch in &mut self.main_copy {
            *ch = vec![0.0; max_block];
        }
        true
    }

    fn reset(&mut self) {
        self.update_settings();
        if let Some(engine) = &mut self.engine {
            engine.set_settings(&self.settings);
            engine.reset();
        }
    }

    fn process(
        &mut self,
        buffer: &mut Buffer,
        aux: &mut AuxiliaryBuffers,
        _context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        self.update_settings();
        let Some(engine) = &mut self.engine else {
            for ch in buffer.as_slice() {
                ch.fill(0.0);
            }
            return ProcessStatus::Normal;
        };
        engine.set_settings(&self.settings);

        let channels = buffer.as_slice();
        if channels.len() < 2 || channels[1].len() != channels[0].len() {
            // Every layout is stereo; anything else is a host error: output silence.
            for ch in channels.iter_mut() {
                ch.fill(0.0);
            }
            return ProcessStatus::Normal;
        }
        let (left, right) = channels.split_at_mut(1);
        let (out_l, out_r): (&mut [f32], &mut [f32]) = (&mut *left[0], &mut *right[0]);
        let frames = out_l.len();
        let chunk = self.main_copy[0].len().max(1);
        let mut start = 0;
        while start < frames {
            let end = (start + chunk).min(frames);
            let n = end - start;
            // The main input is in the output buffer (nice-plug processes in place).
            let [main_l, main_r] = &mut self.main_copy;
            main_l[..n].copy_from_slice(&out_l[start..end]);
            main_r[..n].copy_from_slice(&out_r[start..end]);
            let mut stems: [Option<StereoIn<'_>>; MAX_STEMS] = [None; MAX_STEMS];
            for (slot, bus) in stems.iter_mut().zip(aux.inputs.iter()) {
                *slot = match bus.as_slice_immutable() {
                    [l, r, ..] => Some([tail(l, start), tail(r, start)]),
                    [mono] => Some([tail(mono, start); 2]),
                    [] => None,
                };
            }
            engine.process(
                &stems,
                Some([&main_l[..n], &main_r[..n]]),
                &mut out_l[start..end],
                &mut out_r[start..end],
            );
            start = end;
        }
        ProcessStatus::Normal
    }
}

impl ClapPlugin for Stembus {
    const CLAP_ID: &'static str = "org.stembus.stembus";
    const CLAP_DESCRIPTION: Option<&'static str> =
        Some("Stem mastering: per-stem chains, master chain and true-peak limiter");
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] = &[
        ClapFeature::AudioEffect,
        ClapFeature::Stereo,
        ClapFeature::Mastering,
        ClapFeature::Mixing,
        ClapFeature::Limiter,
    ];

    fn remote_controls(&self, context: &mut impl RemoteControlsContext) {
        let p = &self.params;
        context.add_section("Stems", |section| {
            for (i, s) in p.stems.iter().enumerate() {
                section.add_page(format!("Stem {}", i + 1), |page| {
                    page.add_param(&s.trim);
                    page.add_param(&s.low_shelf_gain);
                    page.add_param(&s.high_shelf_gain);
                    page.add_param(&s.comp_threshold);
                    page.add_param(&s.comp_ratio);
                    page.add_param(&s.width);
                    page.add_param(&s.output);
                    page.add_param(&s.mute);
                });
            }
        });
        context.add_section("Master", |section| {
            section.add_page("Master", |page| {
                page.add_param(&p.master.drive);
                page.add_param(&p.master.glue_threshold);
                page.add_param(&p.master.glue_ratio);
                page.add_param(&p.master.tilt);
                page.add_param(&p.master.width);
                page.add_param(&p.master.ceiling);
                page.add_param(&p.master.target);
                page.add_param(&p.master.output);
            });
        });
    }
}

impl Vst3Plugin for Stembus {
    const VST3_CLASS_ID: [u8; 16] = *b"StembusStemMastr";
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] = &[
        Vst3SubCategory::Fx,
        Vst3SubCategory::Mastering,
        Vst3SubCategory::Stereo,
    ];
}

nice_export_clap!(Stembus);
nice_export_vst3!(Stembus);

/// `samples[start..]`, or an empty slice when the host's buffer is shorter (silence).
fn tail(samples: &[f32], start: usize) -> &[f32] {
    samples.get(start..).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    use nice_plug::context::process::SendEventError;
    use nice_plug::params::InternalParamMut;
    use nice_plug::prelude::{NoteEvent, PluginApi, Transport};

    /// Counts allocations made on the current thread while armed (test-binary allocator).
    struct CountingAlloc;

    thread_local! {
        static ARMED: Cell<bool> = const { Cell::new(false) };
        static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    }

    // SAFETY: forwards to the system allocator; the bookkeeping uses const thread-locals only.
    unsafe impl GlobalAlloc for CountingAlloc {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if ARMED.with(Cell::get) {
                ALLOCATIONS.with(|n| n.set(n.get() + 1));
            }
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            if ARMED.with(Cell::get) {
                ALLOCATIONS.with(|n| n.set(n.get() + 1));
            }
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static ALLOC: CountingAlloc = CountingAlloc;

    /// Allocations (and frees) made by `f` on this thread.
    fn allocations_in(f: impl FnOnce()) -> usize {
        ALLOCATIONS.with(|n| n.set(0));
        ARMED.with(|a| a.set(true));
        f();
        ARMED.with(|a| a.set(false));
        ALLOCATIONS.with(Cell::get)
    }

    /// A host context that records the reported latency.
    struct Host {
        latency: Cell<Option<u32>>,
        transport: Transport,
    }

    impl Host {
        fn new() -> Self {
            Self {
                latency: Cell::new(None),
                transport: Transport::new(48_000.0),
            }
        }
    }

    impl ActivateContext<Stembus> for Host {
        fn plugin_api(&self) -> PluginApi {
            PluginApi::Clap
        }
        fn execute(&self, _task: ()) {}
        fn set_latency_samples(&self, samples: u32) {
            self.latency.set(Some(samples));
        }
        fn set_current_voice_capacity(&self, _capacity: u32) {}
    }

    impl ProcessContext<Stembus> for Host {
        fn plugin_api(&self) -> PluginApi {
            PluginApi::Clap
        }
        fn execute_background(&self, _task: ()) {}
        fn execute_gui(&self, _task: ()) {}
        fn transport(&self) -> &Transport {
            &self.transport
        }
        fn next_event(&mut self) -> Option<NoteEvent<()>> {
            None
        }
        fn try_send_event(
            &mut self,
            _event: NoteEvent<()>,
        ) -> Result<(), (NoteEvent<()>, SendEventError)> {
            Ok(())
        }
        fn set_latency_samples(&self, samples: u32) {
            self.latency.set(Some(samples));
        }
        fn request_restart(&self) {}
        fn set_current_voice_capacity(&self, _capacity: u32) {}
    }

    const RATE: f32 = 48_000.0;
    const MAX_BLOCK: usize = 256;

    /// An activated plugin with `layout` (index into the layouts) and the host that saw it.
    fn activated(layout: usize) -> (Stembus, Host) {
        let mut plugin = Stembus::default();
        let mut host = Host::new();
        activate_at(&mut plugin, &mut host, layout, RATE);
        (plugin, host)
    }

    /// (Re-)activates `plugin` with audio layout `layout` at `sample_rate`, then resets it.
    fn activate_at(plugin: &mut Stembus, host: &mut Host, layout: usize, sample_rate: f32) {
        let config = BufferConfig {
            sample_rate,
            min_buffer_size: None,
            max_buffer_size: MAX_BLOCK as u32,
            process_mode: nice_plug::prelude::ProcessMode::Realtime,
        };
        assert!(plugin.activate(&Stembus::AUDIO_IO_LAYOUTS[layout], &config, host));
        plugin.reset();
    }

    /// Runs the plugin over whole signals in blocks of `block` frames. `main` is the main input;
    /// `stems[i]` is bus `i` (any channel count, possibly fewer buses than the layout has).
    /// Returns the stereo output.
    fn run(
        plugin: &mut Stembus,
        host: &mut Host,
        main: [&[f32]; 2],
        stems: &[Vec<Vec<f32>>],
        block: usize,
    ) -> [Vec<f32>; 2] {
        let len = main[0].len();
        let mut out = [main[0].to_vec(), main[1].to_vec()];
        let mut stems = stems.to_vec();
        let mut start = 0;
        while start < len {
            let end = (start + block).min(len);
            let n = end - start;
            let [out_l, out_r] = &mut out;
            let mut buffer = Buffer::default();
            // SAFETY: the slices live until `process` returns.
            unsafe {
                buffer.set_slices(n, |s| {
                    s.clear();
                    s.push(&mut out_l[start..end]);
                    s.push(&mut out_r[start..end]);
                });
            }
            let mut aux_buffers: Vec<Buffer> = stems
                .iter_mut()
                .map(|bus| {
                    let mut b = Buffer::default();
                    // SAFETY: as above.
                    unsafe {
                        b.set_slices(n, |s| {
                            s.clear();
                            s.extend(bus.iter_mut().map(|ch| &mut ch[start..end]));
                        });
                    }
                    b
                })
                .collect();
            let mut aux = AuxiliaryBuffers {
                inputs: &mut aux_buffers,
                outputs: &mut [],
            };
            let allocations = allocations_in(|| {
                plugin.process(&mut buffer, &mut aux, host);
            });
            assert_eq!(allocations, 0, "process allocated");
            start = end;
        }
        out
    }

    /// A stereo impulse of `amplitude` at frame `at` in a signal of `len` frames.
    fn impulse(len: usize, at: usize, amplitude: f32) -> Vec<Vec<f32>> {
        let mut ch = vec![0.0; len];
        ch[at] = amplitude;
        vec![ch.clone(), ch]
    }

    /// Index and value of the largest absolute sample.
    fn peak(x: &[f32]) -> (usize, f32) {
        x.iter()
            .copied()
            .enumerate()
            .fold(
                (0, 0.0),
                |(i, m), (j, v)| if v.abs() > m { (j, v.abs()) } else { (i, m) },
            )
    }

    fn set(param: &FloatParam, plain: f32) {
        // SAFETY: the parameter lives in the plugin's `Arc<StembusParams>`.
        unsafe { param._internal_set_plain_value(plain) };
    }

    fn set_bool(param: &BoolParam, on: bool) {
        // SAFETY: as above.
        unsafe { param._internal_set_plain_value(on) };
    }

    #[test]
    fn allocation_counter_sees_allocations() {
        assert!(allocations_in(|| drop(std::hint::black_box(vec![1u8; 64]))) >= 2);
    }

    #[test]
    fn activate_reports_the_engine_latency() {
        let (plugin, host) = activated(0);
        let latency = host.latency.get().expect("latency reported in activate");
        assert_eq!(latency as usize, plugin.latency_samples());
        assert!(latency > 0, "the limiter has lookahead");
    }

    #[test]
    fn every_stem_bus_reaches_the_output_at_the_latency() {
        let len = 4 * MAX_BLOCK;
        for stem in 0..MAX_STEMS {
            let (mut plugin, mut host) = activated(0);
            let latency = plugin.latency_samples();
            let mut stems = vec![vec![vec![0.0; len]; 2]; MAX_STEMS];
            stems[stem] = impulse(len, 10, 0.25);
            let silence = vec![0.0; len];
            let out = run(&mut plugin, &mut host, [&silence, &silence], &stems, 100);
            for ch in &out {
                let (at, value) = peak(ch);
                assert_eq!(at, 10 + latency, "stem {}", stem + 1);
                assert!((value - 0.25).abs() < 0.01, "stem {}: {value}", stem + 1);
            }
        }
    }

    #[test]
    fn the_meters_holder_survives_reactivation() {
        let len = 4 * MAX_BLOCK;
        let (mut plugin, mut host) = activated(0);
        let holder = plugin.meters().clone();
        let stems = vec![impulse(len, 5, 0.25)];
        let silence = vec![0.0; len];
        run(
            &mut plugin,
            &mut host,
            [&silence, &silence],
            &stems,
            MAX_BLOCK,
        );
        let first = holder.master.read().sample_peak_db[0];
        assert!((first + 12.04).abs() < 0.1, "first engine: {first} dBFS");
        // The host re-activates (e.g. a new sample rate): the new engine publishes into the
        // holder a reader already has.
        activate_at(&mut plugin, &mut host, 0, 2.0 * RATE);
        assert!(Arc::ptr_eq(&holder, plugin.meters()));
        let stems = vec![impulse(len, 5, 0.5)];
        run(
            &mut plugin,
            &mut host,
            [&silence, &silence],
            &stems,
            MAX_BLOCK,
        );
        let second = holder.master.read().sample_peak_db[0];
        assert!((second + 6.02).abs() < 0.1, "second engine: {second} dBFS");
    }

    #[test]
    fn missing_buses_and_channels_are_silence() {
        let len = 2 * MAX_BLOCK;
        let (mut plugin, mut host) = activated(0);
        let latency = plugin.latency_samples();
        // Only three buses arrive: a stereo one, a mono one and one without channels.
        let stems = vec![impulse(len, 5, 0.25), vec![vec![0.0; len]], vec![]];
        let noise: Vec<f32> = (0..len).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
        // The main input carries a loud signal that is ignored by default.
        let out = run(&mut plugin, &mut host, [&noise, &noise], &stems, MAX_BLOCK);
        for ch in &out {
            assert!(ch.iter().all(|x| x.is_finite()));
            let (at, value) = peak(ch);
            assert_eq!(at, 5 + latency);
            assert!((value - 0.25).abs() < 0.01);
        }
    }

    #[test]
    fn blocks_longer_than_announced_are_processed_in_pieces() {
        let len = 5 * MAX_BLOCK;
        let (mut plugin, mut host) = activated(1);
        let latency = plugin.latency_samples();
        let stems = vec![impulse(len, 3 * MAX_BLOCK + 7, 0.25)];
        let silence = vec![0.0; len];
        let out = run(&mut plugin, &mut host, [&silence, &silence], &stems, len);
        assert_eq!(peak(&out[0]).0, 3 * MAX_BLOCK + 7 + latency);
    }

    #[test]
    fn bypass_gives_the_delayed_unprocessed_sum_and_keeps_the_latency() {
        let len = 16 * MAX_BLOCK;
        let (mut plugin, mut host) = activated(0);
        let latency = plugin.latency_samples();
        // Heavy processing on stem 1 and a muted stem 2: bypass must undo both.
        let p = plugin.params.clone();
        set(&p.stems[0].trim, 12.0);
        set_bool(&p.stems[1].mute, true);
        set_bool(&p.global.bypass, true);
        plugin.reset();
        let at = 2 * MAX_BLOCK;
        let stems = vec![impulse(len, at, 0.2), impulse(len, at + 1000, 0.3)];
        let silence = vec![0.0; len];
        let out = run(&mut plugin, &mut host, [&silence, &silence], &stems, 128);
        for ch in &out {
            assert!(
                (ch[at + latency] - 0.2).abs() < 1e-6,
                "{}",
                ch[at + latency]
            );
            assert!((ch[at + 1000 + latency] - 0.3).abs() < 1e-6);
            let others = ch
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != at + latency && *i != at + 1000 + latency)
                .map(|(_, x)| x.abs())
                .fold(0.0, f32::max);
            assert!(others < 1e-6, "{others}");
        }
        // Leaving bypass brings the processing back (stem 1 trimmed by +12 dB).
        set_bool(&p.global.bypass, false);
        let stems = vec![impulse(len, len / 2, 0.01)];
        let out = run(&mut plugin, &mut host, [&silence, &silence], &stems, 128);
        let gain = out[0][len / 2 + latency] / 0.01;
        assert!((gain - 10f32.powf(12.0 / 20.0)).abs() < 0.05, "{gain}");
    }

    #[test]
    fn filter_state_rejects_foreign_state_and_normalises_own_state() {
        let json = |s: &str| serde_json::from_str::<PluginState>(s).unwrap();
        let mut foreign = json(r#"{"version":"1","params":{"gain":{"f32":1.0}},"fields":{}}"#);
        Stembus::filter_state(&mut foreign);
        assert!(foreign.params.is_empty() && foreign.fields.is_empty());

        let mut wrong_type =
            json(r#"{"params":{"trim_1":{"bool":true}},"fields":{"state_version":"1"}}"#);
        Stembus::filter_state(&mut wrong_type);
        assert!(wrong_type.params.is_empty());

        let mut own = json(
            r#"{"params":{"trim_1":{"f32":99.0},"bypass":{"bool":true}},
                "fields":{"state_version":"1","stem_names":"[\"Drums\"]"}}"#,
        );
        Stembus::filter_state(&mut own);
        assert_eq!(own.params.len(), state::PARAM_COUNT);
        assert!(matches!(own.params["trim_1"], ParamValue::F32(v) if v == 24.0));
        assert!(matches!(own.params["bypass"], ParamValue::Bool(true)));
        assert!(matches!(&own.params["hpf_slope_1"], ParamValue::String(s) if s == "db24"));
        let names: Vec<String> = serde_json::from_str(&own.fields["stem_names"]).unwrap();
        assert_eq!(names.len(), MAX_STEMS);
        assert_eq!(names[0], "Drums");
    }

    #[test]
    fn saved_state_restores_identical_parameters_and_names() {
        // Serialise the way nice-plug does (param values + persisted fields), restore into a
        // fresh instance through `filter_state` and the same setters nice-plug uses.
        let a = Stembus::default();
        set(&a.params.stems[2].comp_threshold, -33.5);
        set(&a.params.master.ceiling, -0.3);
        set_bool(&a.params.stems[7].solo, true);
        a.params.set_stem_name(4, "Vox");
        let saved = nice_state(&a.params);

        let b = Stembus::default();
        let mut restored = saved.clone();
        Stembus::filter_state(&mut restored);
        load_nice_state(&b.params, &restored);
        assert_eq!(nice_state(&b.params).params.len(), saved.params.len());
        assert_eq!(
            format!("{:?}", nice_state(&b.params).params),
            format!("{:?}", saved.params)
        );
        assert_eq!(b.params.stem_name(4), "Vox");
        assert_eq!(b.params.stems[2].comp_threshold.value(), -33.5);
    }

    /// The state nice-plug would save for `params` (see nice-plug's `serialize_object`).
    fn nice_state(params: &StembusParams) -> PluginState {
        let values = params
            .param_map()
            .into_iter()
            .map(|(id, ptr, _)| {
                // SAFETY: `params` is alive.
                let value = unsafe {
                    match ptr {
                        ParamPtr::FloatParam(p) => ParamValue::F32((*p).unmodulated_plain_value()),
                        ParamPtr::BoolParam(p) => ParamValue::Bool((*p).unmodulated_plain_value()),
                        ParamPtr::EnumParam(p) => match (*p).unmodulated_plain_id() {
                            Some(id) => ParamValue::String(id.to_owned()),
                            None => ParamValue::I32((*p).unmodulated_plain_value()),
                        },
                        ParamPtr::IntParam(p) => ParamValue::I32((*p).unmodulated_plain_value()),
                    }
                };
                (id, value)
            })
            .collect();
        PluginState {
            version: Stembus::VERSION.to_owned(),
            params: values,
            fields: params.serialize_fields(),
        }
    }

    /// Loads a state the way nice-plug's `deserialize_object` does (after `filter_state`).
    fn load_nice_state(params: &StembusParams, state: &PluginState) {
        let map = params.param_map();
        for (id, value) in &state.params {
            let (_, ptr, _) = map.iter().find(|(i, ..)| i == id).expect("known id");
            // SAFETY: `params` is alive.
            unsafe {
                match (ptr, value) {
                    (ParamPtr::FloatParam(p), ParamValue::F32(v)) => {
                        (**p)._internal_set_plain_value(*v);
                    }
                    (ParamPtr::BoolParam(p), ParamValue::Bool(v)) => {
                        (**p)._internal_set_plain_value(*v);
                    }
                    (ParamPtr::EnumParam(p), ParamValue::String(s)) => {
                        assert!((**p).set_from_id(s))
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        params.deserialize_fields(&state.fields);
    }
}
