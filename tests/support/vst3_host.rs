//! A minimal VST3 host on the `vst3` crate's COM bindings: loads the bundle's shared library,
//! creates the audio component through `GetPluginFactory`, sets bus arrangements, (de)activates
//! buses, renders whole signals in host-chosen blocks, reads the latency, saves and loads
//! state through an in-memory `IBStream`.
//!
//! Inactive input buses are handed over the way a host chooses ([`InactiveBus`]); trailing
//! inactive buses may be left out of `ProcessData::numInputs`, as the VST3 documentation of
//! `IComponent::activateBus` allows.

use std::cell::{Cell, RefCell};
use std::ffi::{CStr, c_char, c_void};
use std::path::Path;
use std::ptr::null_mut;

use vst3::Steinberg::IBStream_::IStreamSeekMode_::{kIBSeekCur, kIBSeekEnd, kIBSeekSet};
use vst3::Steinberg::Vst::BusDirections_::{kInput, kOutput};
use vst3::Steinberg::Vst::MediaTypes_::kAudio;
use vst3::Steinberg::Vst::ProcessModes_::kRealtime;
use vst3::Steinberg::Vst::SymbolicSampleSizes_::kSample32;
use vst3::Steinberg::Vst::{
    AudioBusBuffers, AudioBusBuffers__type0, BusInfo, IAudioProcessor, IAudioProcessorTrait,
    IComponent, IComponentTrait, ProcessData, ProcessSetup, SpeakerArrangement,
};
use vst3::Steinberg::{
    IBStream, IBStreamTrait, IPluginBaseTrait, IPluginFactory, IPluginFactoryTrait, PClassInfo,
    int32, int64, kInvalidArgument, kResultFalse, kResultOk, tresult,
};
use vst3::{Class, ComPtr, ComWrapper, Interface};

use crate::signal::{POISON_TONE_HZ, sine};

/// What the host hands over for an input bus it has deactivated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InactiveBus {
    /// `numChannels` as arranged, channel-pointer array present, every sample pointer null
    /// (allowed by the `AudioBusBuffers` documentation for inactive buses).
    NullChannels,
    /// Valid buffers filled with zeros.
    Zeroed,
    /// Valid buffers still holding the bus's input signal (what a host reusing buffers may
    /// leave there); the plugin must not process a deactivated bus.
    StaleSignal,
}

/// An audio bus as the plugin declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct BusDesc {
    /// Display name.
    pub name: String,
    /// Channel count.
    pub channel_count: i32,
    /// `kMain` (0) or `kAux` (1).
    pub bus_type: i32,
}

/// A loaded VST3 audio component.
pub struct Vst3Plugin {
    /// The component's processor interface (released before the library is unloaded).
    processor: Option<ComPtr<IAudioProcessor>>,
    /// The component (released before the library is unloaded).
    component: Option<ComPtr<IComponent>>,
    /// Input bus activation as set by the host.
    input_active: Vec<bool>,
    /// `setActive(true)` done.
    active: bool,
    /// Sample rate of the current setup in Hz.
    sample_rate: f64,
    /// Largest block of the current setup in frames.
    max_block: usize,
    /// Class name, for messages.
    name: String,
    /// The shared library (kept loaded while the component lives).
    library: Option<libloading::Library>,
}

fn check(result: tresult, what: &str) {
    assert_eq!(result, kResultOk, "{what} returned {result}");
}

fn utf16_to_string(chars: &[u16]) -> String {
    let end = chars.iter().position(|&c| c == 0).unwrap_or(chars.len());
    String::from_utf16_lossy(&chars[..end])
}

impl Vst3Plugin {
    /// Loads `stembus.vst3` (see [`crate::bundle::vst3_library`]) and creates its audio
    /// component.
    pub fn load() -> Self {
        Self::load_from(&crate::bundle::vst3_library())
    }

    /// Loads the VST3 shared library at `path`, calls `ModuleEntry`, and creates the first
    /// "Audio Module Class" of its factory, initialised without a host context.
    pub fn load_from(path: &Path) -> Self {
        // SAFETY: loading a plugin runs its code; the bundle is the project's own build.
        let library = unsafe { libloading::Library::new(path) }
            .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
        // SAFETY: the symbol types are those of the VST3 Linux module entry points.
        let (component, name) = unsafe {
            if let Ok(entry) =
                library.get::<unsafe extern "C" fn(*mut c_void) -> bool>(b"ModuleEntry")
            {
                assert!(entry(null_mut()), "ModuleEntry failed");
            }
            let get_factory = library
                .get::<unsafe extern "system" fn() -> *mut IPluginFactory>(b"GetPluginFactory")
                .expect("GetPluginFactory is exported");
            let factory = ComPtr::from_raw(get_factory()).expect("GetPluginFactory returned null");
            let mut found = None;
            for index in 0..factory.countClasses() {
                let mut info: PClassInfo = std::mem::zeroed();
                check(factory.getClassInfo(index, &mut info), "getClassInfo");
                let category = CStr::from_ptr(info.category.as_ptr()).to_string_lossy();
                if category == "Audio Module Class" {
                    let name = CStr::from_ptr(info.name.as_ptr())
                        .to_string_lossy()
                        .into_owned();
                    found = Some((info.cid, name));
                    break;
                }
            }
            let (cid, name) = found.expect("the factory has an Audio Module Class");
            let mut obj: *mut c_void = null_mut();
            check(
                factory.createInstance(
                    cid.as_ptr(),
                    IComponent::IID.as_ptr() as *const c_char,
                    &mut obj,
                ),
                "createInstance(IComponent)",
            );
            let component =
                ComPtr::from_raw(obj as *mut IComponent).expect("createInstance gave null");
            check(component.initialize(null_mut()), "IComponent::initialize");
            (component, name)
        };
        let processor = component
            .cast::<IAudioProcessor>()
            .expect("the component implements IAudioProcessor");
        // SAFETY: plain COM call on a live component.
        let inputs = unsafe { component.getBusCount(kAudio as i32, kInput as i32) };
        Self {
            processor: Some(processor),
            component: Some(component),
            input_active: vec![false; usize::try_from(inputs).unwrap_or(0)],
            active: false,
            sample_rate: 0.0,
            max_block: 0,
            name,
            library: Some(library),
        }
    }

    /// The class name from the factory.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn component(&self) -> &ComPtr<IComponent> {
        self.component.as_ref().expect("component alive")
    }

    fn processor(&self) -> &ComPtr<IAudioProcessor> {
        self.processor.as_ref().expect("processor alive")
    }

    /// Audio buses in one direction (`is_input`), in order.
    pub fn audio_buses(&self, is_input: bool) -> Vec<BusDesc> {
        let dir = if is_input { kInput } else { kOutput } as i32;
        // SAFETY: plain COM calls with a zeroed out-struct.
        unsafe {
            let count = self.component().getBusCount(kAudio as i32, dir);
            (0..count)
                .map(|index| {
                    let mut info: BusInfo = std::mem::zeroed();
                    check(
                        self.component()
                            .getBusInfo(kAudio as i32, dir, index, &mut info),
                        "getBusInfo",
                    );
                    BusDesc {
                        name: utf16_to_string(&info.name),
                        channel_count: info.channelCount,
                        bus_type: info.busType,
                    }
                })
                .collect()
        }
    }

    /// Sets every input and output bus to stereo.
    pub fn set_stereo_arrangements(&mut self) {
        let stereo: SpeakerArrangement = vst3::Steinberg::Vst::SpeakerArr::kStereo;
        let mut inputs = vec![stereo; self.input_active.len()];
        let mut outputs = vec![stereo; self.audio_buses(false).len()];
        // SAFETY: arrays of the advertised bus counts.
        let result = unsafe {
            self.processor().setBusArrangements(
                inputs.as_mut_ptr(),
                inputs.len() as int32,
                outputs.as_mut_ptr(),
                outputs.len() as int32,
            )
        };
        check(result, "setBusArrangements(all stereo)");
    }

    /// Activates or deactivates input audio bus `index` (only while inactive).
    pub fn activate_input_bus(&mut self, index: usize, state: bool) {
        assert!(
            !self.active,
            "buses are (de)activated while the component is inactive"
        );
        // SAFETY: plain COM call.
        let result = unsafe {
            self.component().activateBus(
                kAudio as i32,
                kInput as i32,
                index as int32,
                u8::from(state),
            )
        };
        check(
            result,
            &format!("activateBus(audio, input, {index}, {state})"),
        );
        self.input_active[index] = state;
    }

    /// Activates every input bus and the output bus.
    pub fn activate_all_buses(&mut self) {
        for index in 0..self.input_active.len() {
            self.activate_input_bus(index, true);
        }
        for index in 0..self.audio_buses(false).len() {
            // SAFETY: plain COM call.
            let result = unsafe {
                self.component()
                    .activateBus(kAudio as i32, kOutput as i32, index as int32, 1)
            };
            check(result, "activateBus(audio, output)");
        }
    }

    /// `setupProcessing` (realtime, 32-bit), `setActive(true)`, `setProcessing(true)`.
    pub fn start(&mut self, sample_rate: f64, max_block: usize) {
        let mut setup = ProcessSetup {
            processMode: kRealtime as int32,
            symbolicSampleSize: kSample32 as int32,
            maxSamplesPerBlock: max_block as int32,
            sampleRate: sample_rate,
        };
        // SAFETY: plain COM calls.
        unsafe {
            assert_eq!(
                self.processor().canProcessSampleSize(kSample32 as int32),
                kResultOk,
                "32-bit processing supported"
            );
            check(
                self.processor().setupProcessing(&mut setup),
                "setupProcessing",
            );
            check(self.component().setActive(1), "setActive(true)");
            self.active = true;
            // Some plugins return kNotImplemented here; nice-plug returns kResultOk.
            check(self.processor().setProcessing(1), "setProcessing(true)");
        }
        self.sample_rate = sample_rate;
        self.max_block = max_block;
    }

    /// `setProcessing(false)`, `setActive(false)` (no-op when inactive).
    pub fn stop(&mut self) {
        if self.active {
            // SAFETY: plain COM calls.
            unsafe {
                self.processor().setProcessing(0);
                check(self.component().setActive(0), "setActive(false)");
            }
            self.active = false;
        }
    }

    /// Latency in samples as reported by `IAudioProcessor::getLatencySamples`.
    pub fn latency(&self) -> u32 {
        // SAFETY: plain COM call.
        unsafe { self.processor().getLatencySamples() }
    }

    /// The component state written by `IComponent::getState`.
    pub fn save_state(&self) -> Vec<u8> {
        let stream = ComWrapper::new(MemoryStream::new(Vec::new()));
        let ptr = stream.to_com_ptr::<IBStream>().expect("IBStream");
        // SAFETY: the stream outlives the call.
        check(
            unsafe { self.component().getState(ptr.as_ptr()) },
            "IComponent::getState",
        );
        stream.data.borrow().clone()
    }

    /// Loads a state through `IComponent::setState`.
    pub fn load_state(&self, bytes: &[u8]) {
        let stream = ComWrapper::new(MemoryStream::new(bytes.to_vec()));
        let ptr = stream.to_com_ptr::<IBStream>().expect("IBStream");
        // SAFETY: the stream outlives the call.
        check(
            unsafe { self.component().setState(ptr.as_ptr()) },
            "IComponent::setState",
        );
    }

    /// Renders `inputs` (one entry per input bus, index 0 = main: stereo channels at least as
    /// long as the render) in blocks of the given sizes and returns the main output's channels.
    ///
    /// Active buses get their signal; inactive ones what `inactive` says. With
    /// `omit_trailing_inactive`, inactive buses at the end are left out of `numInputs`. Behind
    /// the buses handed over, a guard bus with the poison tone sits in memory. Output buffers
    /// start filled with NaN, so samples the plugin fails to write show up as non-finite.
    pub fn render(
        &mut self,
        inputs: &[[Vec<f32>; 2]],
        blocks: &[usize],
        inactive: InactiveBus,
        omit_trailing_inactive: bool,
    ) -> [Vec<f32>; 2] {
        assert!(self.active, "render needs start()");
        assert_eq!(inputs.len(), self.input_active.len(), "one input per bus");
        let total: usize = blocks.iter().sum();
        let mut bus_count = inputs.len();
        if omit_trailing_inactive {
            while bus_count > 0 && !self.input_active[bus_count - 1] {
                bus_count -= 1;
            }
        }
        let poison = sine(POISON_TONE_HZ, self.sample_rate, total, 0.1);
        let mut output = [Vec::with_capacity(total), Vec::with_capacity(total)];
        let mut start = 0;
        for &len in blocks {
            assert!((1..=self.max_block).contains(&len), "block of {len} frames");
            let mut data: Vec<[Vec<f32>; 2]> = (0..bus_count)
                .map(|bus| {
                    if !self.input_active[bus] && inactive == InactiveBus::Zeroed {
                        [vec![0.0; len], vec![0.0; len]]
                    } else {
                        [
                            inputs[bus][0][start..start + len].to_vec(),
                            inputs[bus][1][start..start + len].to_vec(),
                        ]
                    }
                })
                .collect();
            let guard = &poison[start..start + len];
            data.push([guard.to_vec(), guard.to_vec()]);
            let mut pointers: Vec<[*mut f32; 2]> = data
                .iter_mut()
                .enumerate()
                .map(|(bus, [l, r])| {
                    let null = bus < bus_count
                        && !self.input_active[bus]
                        && inactive == InactiveBus::NullChannels;
                    if null {
                        [null_mut(), null_mut()]
                    } else {
                        [l.as_mut_ptr(), r.as_mut_ptr()]
                    }
                })
                .collect();
            let mut buses: Vec<AudioBusBuffers> = pointers
                .iter_mut()
                .map(|ptrs| AudioBusBuffers {
                    numChannels: 2,
                    silenceFlags: 0,
                    __field0: AudioBusBuffers__type0 {
                        channelBuffers32: ptrs.as_mut_ptr(),
                    },
                })
                .collect();
            let mut out = [vec![f32::NAN; len], vec![f32::NAN; len]];
            let mut out_ptrs = [out[0].as_mut_ptr(), out[1].as_mut_ptr()];
            let mut out_bus = AudioBusBuffers {
                numChannels: 2,
                silenceFlags: 0,
                __field0: AudioBusBuffers__type0 {
                    channelBuffers32: out_ptrs.as_mut_ptr(),
                },
            };
            let mut process_data = ProcessData {
                processMode: kRealtime as int32,
                symbolicSampleSize: kSample32 as int32,
                numSamples: len as int32,
                numInputs: bus_count as int32,
                numOutputs: 1,
                inputs: buses.as_mut_ptr(),
                outputs: &mut out_bus,
                inputParameterChanges: null_mut(),
                outputParameterChanges: null_mut(),
                inputEvents: null_mut(),
                outputEvents: null_mut(),
                processContext: null_mut(),
            };
            // SAFETY: every pointer in `process_data` refers to live buffers of `len` frames
            // (or is null where `InactiveBus::NullChannels` says so) until after the call.
            let result = unsafe { self.processor().process(&mut process_data) };
            assert_eq!(
                result, kResultOk,
                "process() returned {result} for a block of {len} frames at sample {start}"
            );
            for (dst, src) in output.iter_mut().zip(&out) {
                dst.extend_from_slice(src);
            }
            start += len;
        }
        output
    }
}

impl Drop for Vst3Plugin {
    fn drop(&mut self) {
        self.stop();
        if let Some(component) = self.component.as_ref() {
            // SAFETY: plain COM call on a live component.
            unsafe {
                component.terminate();
            }
        }
        self.processor = None;
        self.component = None;
        if let Some(library) = self.library.take() {
            // SAFETY: symbol type of the VST3 Linux module exit point; every COM object of the
            // library has been released above.
            unsafe {
                if let Ok(exit) = library.get::<unsafe extern "C" fn() -> bool>(b"ModuleExit") {
                    exit();
                }
            }
            // Leave the library loaded: unloading a Rust cdylib with thread-locals can crash
            // at process exit, and each test runs in its own process anyway.
            std::mem::forget(library);
        }
    }
}

/// An in-memory `IBStream` (read, write, seek, tell) for state save and load.
struct MemoryStream {
    /// The bytes.
    data: RefCell<Vec<u8>>,
    /// Read/write position in bytes.
    pos: Cell<usize>,
}

impl MemoryStream {
    fn new(data: Vec<u8>) -> Self {
        Self {
            data: RefCell::new(data),
            pos: Cell::new(0),
        }
    }
}

impl Class for MemoryStream {
    type Interfaces = (IBStream,);
}

impl IBStreamTrait for MemoryStream {
    unsafe fn read(&self, buffer: *mut c_void, num_bytes: int32, num_read: *mut int32) -> tresult {
        if buffer.is_null() || num_bytes < 0 {
            return kInvalidArgument;
        }
        let data = self.data.borrow();
        let pos = self.pos.get().min(data.len());
        let n = (num_bytes as usize).min(data.len() - pos);
        // SAFETY: the caller provides `num_bytes` writable bytes at `buffer`.
        unsafe { std::ptr::copy_nonoverlapping(data[pos..].as_ptr(), buffer as *mut u8, n) };
        self.pos.set(pos + n);
        if !num_read.is_null() {
            // SAFETY: non-null out-pointer from the caller.
            unsafe { *num_read = n as int32 };
        }
        if n == num_bytes as usize {
            kResultOk
        } else {
            kResultFalse
        }
    }

    unsafe fn write(
        &self,
        buffer: *mut c_void,
        num_bytes: int32,
        num_written: *mut int32,
    ) -> tresult {
        if buffer.is_null() || num_bytes < 0 {
            return kInvalidArgument;
        }
        // SAFETY: the caller provides `num_bytes` readable bytes at `buffer`.
        let bytes = unsafe { std::slice::from_raw_parts(buffer as *const u8, num_bytes as usize) };
        let mut data = self.data.borrow_mut();
        let pos = self.pos.get();
        if data.len() < pos + bytes.len() {
            data.resize(pos + bytes.len(), 0);
        }
        data[pos..pos + bytes.len()].copy_from_slice(bytes);
        self.pos.set(pos + bytes.len());
        if !num_written.is_null() {
            // SAFETY: non-null out-pointer from the caller.
            unsafe { *num_written = num_bytes };
        }
        kResultOk
    }

    unsafe fn seek(&self, pos: int64, mode: int32, result: *mut int64) -> tresult {
        let len = self.data.borrow().len() as int64;
        let base = match i64::from(mode) {
            m if m == i64::from(kIBSeekSet) => 0,
            m if m == i64::from(kIBSeekCur) => self.pos.get() as int64,
            m if m == i64::from(kIBSeekEnd) => len,
            _ => return kInvalidArgument,
        };
        let new = base + pos;
        if new < 0 {
            return kInvalidArgument;
        }
        self.pos.set(new as usize);
        if !result.is_null() {
            // SAFETY: non-null out-pointer from the caller.
            unsafe { *result = new };
        }
        kResultOk
    }

    unsafe fn tell(&self, pos: *mut int64) -> tresult {
        if pos.is_null() {
            return kInvalidArgument;
        }
        // SAFETY: non-null out-pointer from the caller.
        unsafe { *pos = self.pos.get() as int64 };
        kResultOk
    }
}
