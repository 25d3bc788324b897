//! A minimal CLAP host on `clack-host`: loads `stembus.clap`, lists ports and parameters,
//! activates, renders whole signals in host-chosen blocks with parameter events, reads the
//! latency, saves and loads state.
//!
//! Input and output port buffers are built as raw `clap_audio_buffer`s rather than through
//! `clack_host::AudioPorts` so that a test controls exactly what the plugin sees (ports left
//! out, null channel arrays, fewer channels) and so that clack-host 0.2.0's `AudioPorts`
//! pitfalls (pointer fix-up after a reallocation, the constant-mask bit) stay out of the way.
//! One extra "guard" port carrying [`POISON_TONE_HZ`] sits in
//! memory right after the ports handed over: a plugin that reads past `audio_inputs_count`
//! puts that tone in its output.

use std::ffi::CString;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use clack_extensions::audio_ports::{AudioPortFlags, AudioPortInfoBuffer, PluginAudioPorts};
use clack_extensions::latency::PluginLatency;
use clack_extensions::params::{ParamInfoBuffer, ParamInfoFlags, PluginParams};
use clack_extensions::state::PluginState;
use clack_host::events::event_types::ParamValueEvent;
use clack_host::prelude::*;
use clap_sys::audio_buffer::clap_audio_buffer;

use crate::signal::{POISON_TONE_HZ, sine};

/// Host callback handlers: records the plugin's requests; the test loop honours them.
pub struct TestHost;

/// Thread-safe host state: flags raised by the plugin's requests.
#[derive(Default)]
pub struct TestHostShared {
    /// The plugin asked for `on_main_thread` (`request_callback`).
    callback_requested: AtomicBool,
    /// The plugin asked to be restarted (`request_restart`), e.g. after a latency change.
    restart_requested: AtomicBool,
}

impl SharedHandler<'_> for TestHostShared {
    fn request_restart(&self) {
        self.restart_requested.store(true, Ordering::SeqCst);
    }

    fn request_process(&self) {}

    fn request_callback(&self) {
        self.callback_requested.store(true, Ordering::SeqCst);
    }
}

impl HostHandlers for TestHost {
    type Shared<'a> = TestHostShared;
    type MainThread<'a> = ();
    type AudioProcessor<'a> = ();
}

/// An audio port as the plugin declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct PortDesc {
    /// Display name.
    pub name: String,
    /// Channel count.
    pub channel_count: u32,
    /// Flagged as the main port.
    pub is_main: bool,
}

/// A parameter as the plugin declares it (plain values).
#[derive(Debug, Clone, PartialEq)]
pub struct ParamDesc {
    /// Stable CLAP id.
    pub id: u32,
    /// Display name, e.g. "Stem 2 Mute" or "Mute".
    pub name: String,
    /// Module path, e.g. "Stem 2" (may be empty).
    pub module: String,
    /// Smallest plain value.
    pub min: f64,
    /// Largest plain value.
    pub max: f64,
    /// Default plain value.
    pub default: f64,
    /// Stepped (integer, bool or enum) parameter.
    pub stepped: bool,
}

impl ParamDesc {
    /// "module name" (or just the name when the module is empty), for messages.
    pub fn full_name(&self) -> String {
        if self.module.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.module, self.name)
        }
    }
}

/// A parameter change sent as a `CLAP_EVENT_PARAM_VALUE` at an absolute sample position of a
/// render.
#[derive(Debug, Clone, Copy)]
pub struct ParamChange {
    /// Sample index from the start of the render.
    pub at_sample: usize,
    /// Parameter id.
    pub id: u32,
    /// New plain value.
    pub value: f64,
}

/// One input port as the host hands it to the plugin in a render.
#[derive(Debug, Clone, Copy)]
pub enum PortInput<'a> {
    /// Channels of audio, each at least as long as the render (the count may differ from the
    /// declared one: 0, 1 or 2 channels).
    Audio(&'a [Vec<f32>]),
    /// A port whose channel-pointer array is null, with the given channel count.
    NullBuffers {
        /// `channel_count` reported for the port.
        channel_count: u32,
    },
}

/// A loaded and instantiated plugin. Dropping it stops, deactivates and destroys the instance.
pub struct ClapPlugin {
    /// The instance (declared before `entry` so that it is dropped first).
    instance: PluginInstance<TestHost>,
    /// Audio processor while activated.
    processor: Option<PluginAudioProcessor<TestHost>>,
    /// Sample rate of the current activation in Hz.
    sample_rate: f64,
    /// Largest block of the current activation in frames.
    max_block: usize,
    /// Steady sample counter handed to `process`.
    steady_time: u64,
    /// Plugin id, for messages.
    id: String,
    /// The loaded entry (kept alive as long as the instance).
    _entry: PluginEntry,
}

impl ClapPlugin {
    /// Loads `stembus.clap` (see [`crate::bundle::clap_bundle`]) and instantiates its first
    /// plugin.
    pub fn load() -> Self {
        Self::load_from(&crate::bundle::clap_bundle())
    }

    /// Loads the CLAP bundle at `path` and instantiates its first plugin.
    pub fn load_from(path: &Path) -> Self {
        // SAFETY: loading a plugin runs its code; the bundle is the project's own build.
        let entry = unsafe { PluginEntry::load(path) }
            .unwrap_or_else(|e| panic!("loading CLAP entry {}: {e:?}", path.display()));
        let factory = entry
            .get_plugin_factory()
            .expect("the CLAP entry has a plugin factory");
        let id: CString = factory
            .plugin_descriptors()
            .next()
            .expect("the plugin factory lists a plugin")
            .id()
            .expect("the plugin descriptor has an id")
            .to_owned();
        let host_info = HostInfo::new(
            "stembus-e2e",
            "stembus",
            "https://example.invalid/stembus",
            "0.1.0",
        )
        .expect("host info");
        let instance = PluginInstance::<TestHost>::new(
            |_| TestHostShared::default(),
            |_| (),
            &entry,
            &id,
            &host_info,
        )
        .unwrap_or_else(|e| panic!("instantiating {id:?}: {e:?}"));
        Self {
            instance,
            processor: None,
            sample_rate: 0.0,
            max_block: 0,
            steady_time: 0,
            id: id.to_string_lossy().into_owned(),
            _entry: entry,
        }
    }

    /// The plugin's CLAP id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Audio ports in one direction, in order.
    pub fn audio_ports(&mut self, is_input: bool) -> Vec<PortDesc> {
        let ext = self
            .instance
            .plugin_shared_handle()
            .get_extension::<PluginAudioPorts>()
            .expect("the plugin implements the audio-ports extension");
        let handle = self.instance.plugin_handle();
        let mut buffer = AudioPortInfoBuffer::new();
        (0..ext.count(&handle, is_input))
            .map(|index| {
                let info = ext
                    .get(&handle, index, is_input, &mut buffer)
                    .unwrap_or_else(|| panic!("audio port info {index}"));
                PortDesc {
                    name: String::from_utf8_lossy(info.name).into_owned(),
                    channel_count: info.channel_count,
                    is_main: info.flags.contains(AudioPortFlags::IS_MAIN),
                }
            })
            .collect()
    }

    /// All parameters, in the plugin's order.
    pub fn params(&mut self) -> Vec<ParamDesc> {
        let ext = self.params_ext();
        let handle = self.instance.plugin_handle();
        let mut buffer = ParamInfoBuffer::new();
        (0..ext.count(&handle))
            .map(|index| {
                let info = ext
                    .get_info(&handle, index, &mut buffer)
                    .unwrap_or_else(|| panic!("param info {index}"));
                ParamDesc {
                    id: info.id.get(),
                    name: String::from_utf8_lossy(info.name).into_owned(),
                    module: String::from_utf8_lossy(info.module).into_owned(),
                    min: info.min_value,
                    max: info.max_value,
                    default: info.default_value,
                    stepped: info.flags.contains(ParamInfoFlags::IS_STEPPED),
                }
            })
            .collect()
    }

    /// The parameter called `name` (case-insensitive), either as its display name
    /// ("Stem 2 Mute") or as its module's last segment followed by the name ("Stem 2" +
    /// "Mute"). Panics listing the parameters if there is none.
    pub fn find_param(&mut self, name: &str) -> ParamDesc {
        let params = self.params();
        let wanted = name.to_lowercase();
        let found = params
            .iter()
            .find(|p| p.name.to_lowercase() == wanted)
            .or_else(|| {
                params.iter().find(|p| {
                    let module = p.module.rsplit('/').next().unwrap_or("");
                    format!("{module} {}", p.name).trim().to_lowercase() == wanted
                })
            });
        match found {
            Some(p) => p.clone(),
            None => {
                let names: Vec<String> = params.iter().take(60).map(ParamDesc::full_name).collect();
                panic!(
                    "no parameter named {name:?} among {} parameters; first ones: {names:?}",
                    params.len()
                )
            }
        }
    }

    /// Current plain value of parameter `id`.
    pub fn param_value(&mut self, id: u32) -> f64 {
        let ext = self.params_ext();
        let handle = self.instance.plugin_handle();
        ext.get_value(&handle, ClapId::new(id))
            .unwrap_or_else(|| panic!("value of param {id}"))
    }

    /// Sets parameters outside of `process` through `clap_plugin_params.flush`, as a host
    /// does for an inactive plugin.
    pub fn flush_params(&mut self, changes: &[(u32, f64)]) {
        let ext = self.params_ext();
        let mut events = EventBuffer::new();
        for &(id, value) in changes {
            events.push(&ParamValueEvent::new(
                0,
                ClapId::new(id),
                Pckn::match_all(),
                value,
            ));
        }
        match self.processor.as_mut() {
            Some(processor) => ext.flush_active(
                &mut processor.plugin_handle(),
                &events.as_input(),
                &mut OutputEvents::void(),
            ),
            None => {
                let mut handle = self
                    .instance
                    .inactive_plugin_handle()
                    .expect("inactive plugin handle");
                ext.flush(&mut handle, &events.as_input(), &mut OutputEvents::void());
            }
        }
        self.run_main_thread_callbacks();
    }

    fn params_ext(&self) -> PluginParams {
        self.instance
            .plugin_shared_handle()
            .get_extension::<PluginParams>()
            .expect("the plugin implements the params extension")
    }

    /// Activates at `sample_rate` for blocks of 1..=`max_block` frames and starts processing.
    pub fn activate(&mut self, sample_rate: f64, max_block: usize) {
        assert!(self.processor.is_none(), "already active");
        let config = PluginAudioConfiguration {
            sample_rate,
            min_frames_count: 1,
            max_frames_count: u32::try_from(max_block).expect("block size fits u32"),
        };
        let stopped = self
            .instance
            .activate(|_, _| (), config)
            .unwrap_or_else(|e| panic!("activate at {sample_rate} Hz: {e:?}"));
        let mut processor: PluginAudioProcessor<TestHost> = stopped.into();
        processor
            .start_processing()
            .unwrap_or_else(|e| panic!("start_processing: {e:?}"));
        self.processor = Some(processor);
        self.sample_rate = sample_rate;
        self.max_block = max_block;
        self.steady_time = 0;
        self.run_main_thread_callbacks();
    }

    /// Stops processing and deactivates (no-op when inactive).
    pub fn deactivate(&mut self) {
        if let Some(mut processor) = self.processor.take() {
            let _ = processor.stop_processing();
            self.instance.deactivate(processor.into_stopped());
        }
        self.run_main_thread_callbacks();
    }

    /// Whether the plugin asked the host to restart it since the last call.
    pub fn take_restart_request(&self) -> bool {
        self.instance
            .access_shared_handler(|s| s.restart_requested.swap(false, Ordering::SeqCst))
    }

    /// Latency in samples as the plugin reports it through the latency extension.
    pub fn latency(&mut self) -> u32 {
        let ext = self
            .instance
            .plugin_shared_handle()
            .get_extension::<PluginLatency>()
            .expect("the plugin implements the latency extension");
        ext.get(&self.instance.plugin_handle())
    }

    /// The plugin's state as saved through the state extension.
    pub fn save_state(&mut self) -> Vec<u8> {
        let ext = self.state_ext();
        let mut bytes = Vec::new();
        ext.save(&self.instance.plugin_handle(), &mut bytes)
            .unwrap_or_else(|e| panic!("state save: {e:?}"));
        bytes
    }

    /// Loads a state saved by [`save_state`](Self::save_state).
    pub fn load_state(&mut self, bytes: &[u8]) {
        let ext = self.state_ext();
        let mut reader = bytes;
        ext.load(&self.instance.plugin_handle(), &mut reader)
            .unwrap_or_else(|e| panic!("state load: {e:?}"));
        self.run_main_thread_callbacks();
    }

    fn state_ext(&self) -> PluginState {
        self.instance
            .plugin_shared_handle()
            .get_extension::<PluginState>()
            .expect("the plugin implements the state extension")
    }

    fn run_main_thread_callbacks(&mut self) {
        for _ in 0..4 {
            let requested = self
                .instance
                .access_shared_handler(|s| s.callback_requested.swap(false, Ordering::SeqCst));
            if !requested {
                break;
            }
            self.instance.call_on_main_thread_callback();
        }
    }

    /// Renders `inputs` (index 0 = first input port, i.e. the main input) in blocks of the
    /// given sizes, sending `changes` as parameter events in the blocks they fall in, and
    /// returns the main output's channels (`blocks.iter().sum()` samples each).
    ///
    /// Only `inputs.len()` input ports are handed over (`audio_inputs_count`), followed in
    /// memory by a guard port carrying the poison tone. Output buffers start filled with NaN,
    /// so samples the plugin fails to write show up as non-finite.
    pub fn render(
        &mut self,
        inputs: &[PortInput<'_>],
        blocks: &[usize],
        changes: &[ParamChange],
    ) -> [Vec<f32>; 2] {
        let total: usize = blocks.iter().sum();
        for (port, input) in inputs.iter().enumerate() {
            if let PortInput::Audio(channels) = input {
                for (ch, samples) in channels.iter().enumerate() {
                    assert!(
                        samples.len() >= total,
                        "input port {port} channel {ch}: {} samples < render length {total}",
                        samples.len()
                    );
                }
            }
        }
        let poison = sine(POISON_TONE_HZ, self.sample_rate, total, 0.1);
        let mut output = [Vec::with_capacity(total), Vec::with_capacity(total)];
        let mut start = 0;
        for &len in blocks {
            assert!(
                (1..=self.max_block).contains(&len),
                "block of {len} frames outside 1..={}",
                self.max_block
            );
            let block_changes: Vec<ParamChange> = changes
                .iter()
                .filter(|c| (start..start + len).contains(&c.at_sample))
                .copied()
                .collect();
            let out = self.process_block(inputs, &poison, start, len, &block_changes);
            for (dst, src) in output.iter_mut().zip(out) {
                dst.extend_from_slice(&src);
            }
            start += len;
        }
        output
    }

    /// One `process` call for frames `start..start + len` of the render.
    fn process_block(
        &mut self,
        inputs: &[PortInput<'_>],
        poison: &[f32],
        start: usize,
        len: usize,
        changes: &[ParamChange],
    ) -> [Vec<f32>; 2] {
        // Host-owned copies of this block's input samples: exactly `len` frames per channel.
        let mut input_data: Vec<Vec<Vec<f32>>> = inputs
            .iter()
            .map(|input| match input {
                PortInput::Audio(channels) => channels
                    .iter()
                    .map(|c| c[start..start + len].to_vec())
                    .collect(),
                PortInput::NullBuffers { .. } => Vec::new(),
            })
            .collect();
        let guard = &poison[start..start + len];
        input_data.push(vec![guard.to_vec(), guard.to_vec()]);
        let mut input_ptrs: Vec<Vec<*mut f32>> = input_data
            .iter_mut()
            .map(|channels| channels.iter_mut().map(|c| c.as_mut_ptr()).collect())
            .collect();
        let input_configs: Vec<clap_audio_buffer> = input_ptrs
            .iter_mut()
            .enumerate()
            .map(|(port, ptrs)| {
                let null = matches!(inputs.get(port), Some(PortInput::NullBuffers { .. }));
                let channel_count = match inputs.get(port) {
                    Some(PortInput::NullBuffers { channel_count }) => *channel_count,
                    _ => u32::try_from(ptrs.len()).expect("channel count"),
                };
                clap_audio_buffer {
                    data32: if null {
                        std::ptr::null_mut()
                    } else {
                        ptrs.as_mut_ptr()
                    },
                    data64: std::ptr::null_mut(),
                    channel_count,
                    latency: 0,
                    constant_mask: 0,
                }
            })
            .collect();

        let mut output_data = [vec![f32::NAN; len], vec![f32::NAN; len]];
        let mut output_ptrs: Vec<*mut f32> =
            output_data.iter_mut().map(|c| c.as_mut_ptr()).collect();
        let mut output_configs = [clap_audio_buffer {
            data32: output_ptrs.as_mut_ptr(),
            data64: std::ptr::null_mut(),
            channel_count: 2,
            latency: 0,
            constant_mask: 0,
        }];

        let mut events = EventBuffer::new();
        for change in changes {
            events.push(&ParamValueEvent::new(
                u32::try_from(change.at_sample - start).expect("event time"),
                ClapId::new(change.id),
                Pckn::match_all(),
                change.value,
            ));
        }

        let frames = u32::try_from(len).expect("block length");
        let port_count = inputs.len();
        // SAFETY: every config points to `channel_count` channel pointers of `len` valid frames
        // (or is null), all of which outlive the call; the guard entry after `port_count` is
        // valid memory as well.
        let input_buffers =
            unsafe { InputAudioBuffers::from_raw_buffers(&input_configs[..port_count], frames) };
        // SAFETY: as above, two output channels of `len` frames.
        let mut output_buffers =
            unsafe { OutputAudioBuffers::from_raw_buffers(&mut output_configs, frames) };
        let processor = self
            .processor
            .as_mut()
            .expect("render needs an activated plugin")
            .as_started_mut()
            .expect("processing started");
        let status = processor.process(
            &input_buffers,
            &mut output_buffers,
            &events.as_input(),
            &mut OutputEvents::void(),
            Some(self.steady_time),
            None,
        );
        if let Err(e) = status {
            panic!("process() failed for a block of {len} frames at sample {start}: {e:?}");
        }
        self.steady_time += len as u64;
        self.run_main_thread_callbacks();
        output_data
    }
}

impl Drop for ClapPlugin {
    fn drop(&mut self) {
        self.deactivate();
    }
}
