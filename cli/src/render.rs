//! Offline rendering through the real engine, in memory, and the loudness targeting around it.
//!
//! One *pass* runs [`stembus_dsp::engine::Engine`] over the whole song, split as
//! [`stembus_dsp::offline`] allows with output identical to the bit: the stem stage (every stem
//! chain, mute/solo, the sum) runs once per master, its stems on every core, and each
//! pass runs the master stage over that sum in 10 ms blocks (the engine chunks internally, so
//! the block size does not change the sound). The first pass runs alongside the stem stage,
//! each piece of the sum as soon as every stem has made it ([`first_pass`]); later passes
//! run over the stored sum. A pass feeds the engine's latency worth of
//! silence at the end and drops the same amount at the start, so the master is sample-aligned
//! with the stems and exactly as long. The limiter's gain reduction is read after every block.
//!
//! Loudness targeting changes only the master drive (the gain into the master chain, so into the
//! glue compressor and the limiter) and searches it: the integrated loudness `L(d)` of the
//! limited master is a continuous, non-decreasing function of the drive `d` (slope 1 while the
//! limiter is idle, less than 1 once it works). The first pass runs at the settings' drive, the
//! second at `d + (T − L)`, the following ones by the secant method on the two latest passes,
//! falling back to bisection whenever the secant step leaves the interval known to hold the
//! target. The search stops within ±[`LOUDNESS_TOLERANCE_LU`] of the target (the promise is
//! ±0.1 LU; the margin covers the final quantisation). The limiter keeps the true peak at or
//! below the ceiling in every pass.

use indicatif::ProgressBar;
use stembus_dsp::MAX_STEMS;
use stembus_dsp::offline::{InMemory, MasterRender, StemMix, StemSource, SumSink, render_stems};
use stembus_dsp::settings::{EngineSettings, MonitorSource};

use crate::error::{CliError, Result};
use crate::measure::{Measurement, Measurer};
use crate::wav::{Encoder, OutputFormat, WavStream, wav_header};

/// Master blocks (10 ms each) handed to the meter thread at a time, at most.
const MEASURE_BATCH_BLOCKS: usize = 16;

/// Batches of finished master blocks that may wait for the meter thread.
const MEASURE_QUEUE_BATCHES: usize = 32;

/// The search stops when the integrated loudness is this close to the target, LU.
pub const LOUDNESS_TOLERANCE_LU: f32 = 0.05;

/// The limiter-reduction search stops this close to the wanted maximum, dB.
pub const GR_TOLERANCE_DB: f32 = 0.1;

/// Most engine passes per master.
pub const MAX_PASSES: usize = 10;

/// The drive range of the engine, dB.
pub const DRIVE_RANGE_DB: (f32, f32) = (-24.0, 24.0);

/// Rate of the gain-reduction series, Hz (matches the loudness series).
pub const GR_SERIES_RATE_HZ: u32 = 10;

/// One input slot of the engine.
#[derive(Debug)]
pub struct Slot {
    /// Name used to recognise the stem (file name, and the plugin's stem name if known).
    pub name: String,
    /// Its audio.
    pub audio: SlotAudio,
}

/// Where a slot's audio is.
#[derive(Debug)]
pub enum SlotAudio {
    /// Decoded: one (mono, played as dual mono) or two channels.
    Memory(Vec<Vec<f32>>),
    /// In its file, decoded a stretch at a time as the stem stage reads it.
    File(WavStream),
}

impl SlotAudio {
    /// Frames of audio.
    pub fn frames(&self) -> usize {
        match self {
            Self::Memory(ch) => ch.first().map_or(0, Vec::len),
            Self::File(f) => f.frames(),
        }
    }
}

impl Slot {
    /// Left and right of a decoded slot (a mono one twice); `None` for one read from its file.
    fn stereo(&self) -> Option<[&[f32]; 2]> {
        match &self.audio {
            SlotAudio::Memory(ch) => {
                let l = ch.first().map_or(&[][..], Vec::as_slice);
                Some([l, ch.get(1).map_or(l, Vec::as_slice)])
            }
            SlotAudio::File(_) => None,
        }
    }
}

/// The slots of a [`RenderInput`] as the engine's stem stage reads them.
struct SlotSource<'a>(&'a [Option<Slot>]);

impl StemSource for SlotSource<'_> {
    fn read(&self, slot: usize, start: usize, out: [&mut [f32]; 2]) {
        let slot = self.0.get(slot).and_then(Option::as_ref);
        match slot.map(|s| &s.audio) {
            Some(SlotAudio::File(f)) => f.read(start, out),
            // Decoded, or no stem: as the engine's own in-memory source reads it.
            _ => InMemory(&[slot.and_then(Slot::stereo)]).read(0, start, out),
        }
    }
}

/// Everything a render needs.
#[derive(Debug)]
pub struct RenderInput {
    /// Sample rate of every slot, Hz.
    pub sample_rate: u32,
    /// Length of the master in frames (the longest stem).
    pub frames: usize,
    /// Engine stem slots, 1..=8; `None` is a silent slot.
    pub slots: Vec<Option<Slot>>,
    /// The plugin's main input (the reference mix), used only when the settings add it to
    /// the sum; decoded.
    pub main: Option<Slot>,
}

impl RenderInput {
    /// The first failed read of a stem file, as an error naming the file.
    pub fn read_error(&self) -> Option<CliError> {
        self.slots.iter().flatten().find_map(|s| match &s.audio {
            SlotAudio::File(f) => f.error().map(CliError::input),
            SlotAudio::Memory(_) => None,
        })
    }
}

/// What the drive search aims at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Objective {
    /// Render at the settings' drive.
    AsIs,
    /// Integrated loudness, LUFS.
    Loudness(f32),
    /// Largest limiter gain reduction, dB.
    LimiterReduction(f32),
}

/// The output of one engine pass.
#[derive(Debug, Clone, Default)]
pub struct PassOutput {
    /// Master left channel as the engine gave it: its start-up delay (`skip` frames), then
    /// the song ([`PassOutput::left`]). Kept whole rather than shifted: dropping the delay
    /// would move the whole song in memory once more, after the pass, on one core.
    raw_left: Vec<f32>,
    /// Master right channel, likewise.
    raw_right: Vec<f32>,
    /// Frames of start-up delay at the start of the raw channels.
    skip: usize,
    /// Largest limiter gain reduction, dB (≥ 0).
    pub gr_max_db: f32,
    /// Mean limiter gain reduction over the song (sampled every 10 ms), dB.
    pub gr_mean_db: f32,
    /// Largest limiter gain reduction per 0.1 s, dB.
    pub gr_series_db: Vec<f32>,
    /// The pass encoded its output into the [`Encode`] sink as it went (see
    /// [`render_master`]): the sink holds this pass's file, and the pass's measurement is of
    /// the encoded values.
    pub encoded: bool,
}

impl PassOutput {
    /// Master left channel, aligned with the stems.
    pub fn left(&self) -> &[f32] {
        self.raw_left.get(self.skip..).unwrap_or(&[])
    }

    /// Master right channel, aligned with the stems.
    pub fn right(&self) -> &[f32] {
        self.raw_right.get(self.skip..).unwrap_or(&[])
    }
}

/// Where a pass that encodes its output puts the file as it goes: the WAV header first, then
/// the `data` chunk a batch of blocks at a time.
pub trait EncodeSink: Send {
    /// Empties the file (a repeated pass replaces what the one before it wrote).
    fn restart(&mut self);
    /// Appends `bytes`.
    fn append(&mut self, bytes: &[u8]);
}

impl EncodeSink for Vec<u8> {
    fn restart(&mut self) {
        self.clear();
    }

    fn append(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// An [`EncodeSink`] writing into a file (the temporary file of a master, renamed into place
/// once complete). Write errors do not stop the pass: the first is kept, later writes are
/// skipped, and [`FileSink::finish`] reports it.
pub struct FileSink<'a> {
    /// The file, written from its start.
    file: &'a mut std::fs::File,
    /// The first write error.
    error: Option<std::io::Error>,
}

impl<'a> FileSink<'a> {
    /// A sink writing into `file` (from its start).
    pub fn new(file: &'a mut std::fs::File) -> Self {
        Self { file, error: None }
    }

    /// The first write error, if any; otherwise the data is flushed to the file.
    pub fn finish(self) -> std::io::Result<()> {
        use std::io::Write;
        match self.error {
            Some(e) => Err(e),
            None => self.file.flush(),
        }
    }

    /// Runs `f` on the file unless an earlier write failed; keeps its error.
    fn attempt(&mut self, f: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>) {
        if self.error.is_none()
            && let Err(e) = f(self.file)
        {
            self.error = Some(e);
        }
    }
}

impl EncodeSink for FileSink<'_> {
    fn restart(&mut self) {
        use std::io::Seek;
        self.attempt(|f| {
            f.set_len(0)?;
            f.rewind()
        });
    }

    fn append(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.attempt(|f| f.write_all(bytes));
    }
}

/// What a pass that is meant to be kept encodes its output into, as it goes.
pub struct Encode<'a> {
    /// The output encoding.
    pub format: OutputFormat,
    /// Where the file goes.
    pub sink: &'a mut dyn EncodeSink,
}

impl Encode<'_> {
    /// The same sink, for one pass.
    fn reborrow(&mut self) -> Encode<'_> {
        Encode {
            format: self.format,
            sink: &mut *self.sink,
        }
    }
}

/// A finished master before quantisation.
#[derive(Debug, Clone)]
pub struct Master {
    /// The engine output of the accepted pass.
    pub pass: PassOutput,
    /// Measurement of that output.
    pub measurement: Measurement,
    /// The settings it was rendered with (drive included).
    pub settings: EngineSettings,
    /// Engine passes run.
    pub passes: usize,
}

/// Settings as the offline render uses them: the processed path is what is rendered, whatever
/// the plugin was monitoring when its state was saved.
pub fn offline_settings(settings: &EngineSettings) -> EngineSettings {
    let mut s = settings.clone();
    s.monitor.source = MonitorSource::Processed;
    s
}

fn sub(x: &[f32], start: usize, end: usize) -> &[f32] {
    &x[start.min(x.len())..end.min(x.len())]
}

/// Runs the stem stage of the engine once over the whole input (and the engine's latency
/// worth of silence after it), the stems on every core: what every pass of a master
/// starts from, since only the master chain changes between passes.
pub fn render_stem_mix(input: &RenderInput, settings: &EngineSettings) -> StemMix {
    render_stem_mix_with(input, settings, &mut |_, _, _| {})
}

/// [`render_stem_mix`], handing the sum (and the mix key) to `sink` in order as the stems
/// finish it (see [`render_stems`]).
fn render_stem_mix_with(
    input: &RenderInput,
    settings: &EngineSettings,
    sink: &mut SumSink<'_>,
) -> StemMix {
    let num_slots = input.slots.len().clamp(1, MAX_STEMS);
    let settings = offline_settings(settings);
    let latency =
        MasterRender::new(input.sample_rate as f32, num_slots, &settings).latency_samples();
    let main = input.main.as_ref().and_then(Slot::stereo);
    render_stems(
        input.sample_rate as f32,
        num_slots,
        &SlotSource(&input.slots),
        main,
        &settings,
        input.frames + latency,
        true,
        sink,
    )
}

/// Runs the master stage over `mix` (from [`render_stem_mix`] with the same stem settings),
/// which gives to the bit what [`Engine::process`](stembus_dsp::engine::Engine::process)
/// gives for the whole song, and measures the result. The measurement runs on a second
/// thread, block by block as the master is rendered (it is the same to the bit however the
/// signal is cut, see [`Measurer`]), so a pass takes about as long as the slower of the two.
pub fn run_pass(
    input: &RenderInput,
    mix: &StemMix,
    settings: &EngineSettings,
    encode: Option<Encode<'_>>,
    bar: &ProgressBar,
) -> (PassOutput, Measurement) {
    let key = Key::Whole(&mix.key);
    let (pass, measurement, ()) = master_pass(input, settings, encode, bar, key, |feed| {
        feed([&mix.sum[0], &mix.sum[1]], None)
    });
    (pass, measurement)
}

/// The first pass of a master: the stem stage and the master stage together, the master
/// working on each piece of the stem sum as soon as every stem has finished it (so the master
/// and its meter mostly run in the stem stage's time). The same to the
/// bit as [`render_stem_mix`] followed by [`run_pass`].
pub fn first_pass(
    input: &RenderInput,
    settings: &EngineSettings,
    encode: Option<Encode<'_>>,
    bar: &ProgressBar,
) -> (StemMix, PassOutput, Measurement) {
    let key = Key::Streamed;
    let (pass, measurement, mix) = master_pass(input, settings, encode, bar, key, |feed| {
        render_stem_mix_with(input, settings, &mut |_, sum, key| feed(sum, key))
    });
    (mix, pass, measurement)
}

/// A piece of the stem sum (left, right) and of the mix key over the same frames.
type Piece<'a> = ([&'a [f32]; 2], Option<[&'a [f32]; 2]>);

/// Where a pass finds the mix key.
#[derive(Clone, Copy)]
enum Key<'a> {
    /// The whole key is at hand (or there is none).
    Whole(&'a Option<[Vec<f32>; 2]>),
    /// It comes with the sum, piece by piece.
    Streamed,
}

/// The master stage of one pass: `source` calls its argument with consecutive pieces of the
/// stem sum (and of the mix key with [`Key::Streamed`]) from the start of the song; frames it
/// does not deliver are silence. The master runs in 10 ms blocks as soon as a block's frames
/// are there, and the finished blocks go to the meter on a second thread (a batch at a time).
fn master_pass<R>(
    input: &RenderInput,
    settings: &EngineSettings,
    encode: Option<Encode<'_>>,
    bar: &ProgressBar,
    key: Key<'_>,
    source: impl FnOnce(&mut dyn FnMut([&[f32]; 2], Option<[&[f32]; 2]>)) -> R,
) -> (PassOutput, Measurement, R) {
    let sr = input.sample_rate;
    let block = (sr / 100).max(1) as usize;
    let num_slots = input.slots.len().clamp(1, MAX_STEMS);
    let settings = offline_settings(settings);
    let mut master = MasterRender::new(sr as f32, num_slots, &settings);
    let latency = master.latency_samples();
    let total = input.frames + latency;
    bar.set_length(total as u64);
    bar.set_position(0);
    let mut left = vec![0.0f32; total];
    let mut right = vec![0.0f32; total];
    // A streamed key is gathered here (it is needed a block at a time, across pieces).
    let mut key_buf = match key {
        Key::Streamed => Some([Vec::with_capacity(total), Vec::with_capacity(total)]),
        Key::Whole(_) => None,
    };
    let series_len = (sr / GR_SERIES_RATE_HZ).max(1) as usize;
    let mut gr_series = Vec::with_capacity(input.frames / series_len + 1);
    let (mut gr_max, mut gr_sum, mut gr_count, mut series_max) = (0.0f32, 0.0f64, 0u64, 0.0f32);
    let mut next_boundary = series_len;
    // The unprocessed rest of the buffers; each finished block is handed to the meter.
    let (mut rest_l, mut rest_r) = (&mut left[..], &mut right[..]);
    let ((measurement, encoded), result) = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(&[f32], &[f32])>(MEASURE_QUEUE_BATCHES);
        let meter = scope.spawn(move || {
            let mut m = Measurer::new(sr, true, input.frames);
            let Some(Encode { format, sink }) = encode else {
                for (l, r) in rx {
                    m.push(l, Some(r));
                }
                return (m.finish(), false);
            };
            // Encoded as the file will hold it and written as it goes (on this thread, beside
            // the stem stage, rather than after the pass), and what a reader of the file will
            // decode is measured (a float file holds the master as it is).
            sink.restart();
            sink.append(&wav_header(input.frames, sr, format));
            let mut encoder = Encoder::new(format);
            let mut bytes = Vec::new();
            let mut decoded = [Vec::new(), Vec::new()];
            for (l, r) in rx {
                bytes.clear();
                if format == OutputFormat::Float32 {
                    encoder.encode(l, r, &mut bytes, None);
                    m.push(l, Some(r));
                } else {
                    decoded.iter_mut().for_each(Vec::clear);
                    encoder.encode(l, r, &mut bytes, Some(&mut decoded));
                    m.push(&decoded[0], Some(&decoded[1]));
                }
                sink.append(&bytes);
            }
            (m.finish(), true)
        });
        // Frames processed, and frames of the sum delivered so far.
        let (mut start, mut filled) = (0, 0);
        // Takes the next piece (`None`: the end of the input) and runs every block it
        // completes.
        let mut step = |piece: Option<Piece<'_>>| {
            match piece {
                Some(([l, r], k)) => {
                    let n = l.len().min(r.len()).min(total - filled);
                    rest_l[filled - start..][..n].copy_from_slice(&l[..n]);
                    rest_r[filled - start..][..n].copy_from_slice(&r[..n]);
                    if let (Some(buf), Some(k)) = (&mut key_buf, k) {
                        for (b, k) in buf.iter_mut().zip(k) {
                            b.extend_from_slice(&k[..n.min(k.len())]);
                        }
                    }
                    filled += n;
                }
                None => filled = total,
            }
            while start < total && (start + block <= filled || filled == total) {
                // The blocks that can run now (at most a batch), split off together and
                // handed to the meter together: fewer hand-overs, fewer thread wake-ups.
                let ready = if filled == total {
                    total
                } else {
                    start + (filled - start) / block * block
                };
                let batch_end = ready.min(start + MEASURE_BATCH_BLOCKS * block);
                let (batch_l, tl) = std::mem::take(&mut rest_l).split_at_mut(batch_end - start);
                let (batch_r, tr) = std::mem::take(&mut rest_r).split_at_mut(batch_end - start);
                (rest_l, rest_r) = (tl, tr);
                let mut block_start = start;
                for (bl, br) in batch_l.chunks_mut(block).zip(batch_r.chunks_mut(block)) {
                    let end = block_start + bl.len();
                    let key = match key {
                        Key::Whole(k) => k.as_ref(),
                        Key::Streamed => key_buf.as_ref(),
                    }
                    .map(|[l, r]| [sub(l, block_start, end), sub(r, block_start, end)]);
                    master.process(bl, br, key);
                    let block_max = master.take_max_limiter_gain_reduction_db().max(0.0);
                    if end > latency {
                        // Gain reduction of audio that ends up in the master (the first
                        // `latency` frames out of the engine are its start-up delay).
                        let current = master.limiter_gain_reduction_db().max(0.0);
                        gr_max = gr_max.max(block_max);
                        gr_sum += f64::from(current);
                        gr_count += 1;
                        series_max = series_max.max(block_max);
                        let out_end = end - latency;
                        while out_end >= next_boundary && next_boundary <= input.frames {
                            gr_series.push(series_max);
                            series_max = 0.0;
                            next_boundary += series_len;
                        }
                    }
                    block_start = end;
                }
                if batch_end > latency {
                    let skip = latency.saturating_sub(start);
                    let (bl, br): (&[f32], &[f32]) = (batch_l, batch_r);
                    // The meter only stops early by panicking, which `join` reports below.
                    let _ = tx.send((&bl[skip..], &br[skip..]));
                }
                bar.inc((batch_end - start) as u64);
                start = batch_end;
            }
        };
        let result = source(&mut |sum, key| step(Some((sum, key))));
        step(None);
        drop(tx);
        let measured = meter
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (measured, result)
    });
    let pass = PassOutput {
        raw_left: left,
        raw_right: right,
        skip: latency,
        gr_max_db: gr_max,
        gr_mean_db: if gr_count > 0 {
            (gr_sum / gr_count as f64) as f32
        } else {
            0.0
        },
        gr_series_db: gr_series,
        encoded,
    };
    (pass, measurement, result)
}

/// Renders one master, searching the drive for `objective`. `label` names the master in the
/// progress bar and in errors. With `ceiling_dbtp`, a pass whose measured true peak (the
/// plugin's meter) is above it does not count: the limiter is set lower by the excess and the
/// pass repeated, so the reported true peak never passes the ceiling either.
///
/// With `encode`, a pass that is meant to be the last (every pass [`Objective::AsIs`] runs)
/// also encodes its output as it goes, on its meter thread, into the sink (the WAV file,
/// header and data; a repeated pass starts it again), and measures what the file will hold
/// ([`PassOutput::encoded`]): the file is then written when the pass ends instead of being
/// encoded, written and measured after it. Passes of a search are not encoded (most are not
/// kept), and the sink is left alone.
pub fn render_master(
    input: &RenderInput,
    settings: &EngineSettings,
    objective: Objective,
    ceiling_dbtp: Option<f32>,
    encode: Option<Encode<'_>>,
    label: &str,
    bar: &ProgressBar,
) -> Result<Master> {
    let mut encode = encode.filter(|_| objective == Objective::AsIs);
    let mut settings = settings.clone();
    let mut drive = settings
        .master
        .drive_db
        .clamp(DRIVE_RANGE_DB.0, DRIVE_RANGE_DB.1);
    // (drive, value) of every pass at the current limiter setting, and the best pass so far.
    let mut history: Vec<(f32, f32)> = Vec::new();
    let mut best: Option<(f32, Master)> = None;
    let mut passes = 0;
    settings.master.drive_db = drive;
    bar.set_message(format!("{label}: stems, pass 1, drive {drive:+.2} dB"));
    let (mix, pass, measurement) =
        first_pass(input, &settings, encode.as_mut().map(Encode::reborrow), bar);
    if let Some(e) = input.read_error() {
        return Err(e);
    }
    let mut first = Some((pass, measurement));
    while passes < MAX_PASSES {
        passes += 1;
        settings.master.drive_db = drive;
        let (pass, measurement) = match first.take() {
            Some(first) => first,
            None => {
                bar.set_message(format!("{label}: pass {passes}, drive {drive:+.2} dB"));
                run_pass(
                    input,
                    &mix,
                    &settings,
                    encode.as_mut().map(Encode::reborrow),
                    bar,
                )
            }
        };
        if let (Some(ceiling), Some(tp)) = (ceiling_dbtp, measurement.true_peak_dbtp)
            && tp > ceiling
        {
            settings.master.limiter.ceiling_dbtp -= tp - ceiling + 0.01;
            history.clear();
            continue;
        }
        let (value, goal, tolerance) = match objective {
            Objective::AsIs => (0.0, 0.0, 0.0),
            Objective::Loudness(target) => {
                let Some(l) = measurement.integrated_lufs else {
                    return Err(CliError::failed(format!(
                        "{label}: the master is silent (below the -70 LUFS gate); there is no \
                         loudness to bring to {target} LUFS"
                    )));
                };
                (l, target, LOUDNESS_TOLERANCE_LU)
            }
            Objective::LimiterReduction(max_gr) => (pass.gr_max_db, max_gr, GR_TOLERANCE_DB),
        };
        let error = (value - goal).abs();
        let true_peak = measurement.true_peak_dbtp;
        if best.as_ref().is_none_or(|(e, _)| error < *e) {
            best = Some((
                error,
                Master {
                    pass,
                    measurement,
                    settings: settings.clone(),
                    passes,
                },
            ));
        }
        if error <= tolerance {
            break;
        }
        history.push((drive, value));
        let next = next_drive(
            &history,
            goal,
            objective,
            true_peak,
            settings.master.limiter.ceiling_dbtp,
        );
        let next = next.clamp(DRIVE_RANGE_DB.0, DRIVE_RANGE_DB.1);
        if (next - drive).abs() < 1e-4 {
            // Stuck at the end of the drive range.
            break;
        }
        drive = next;
    }
    let Some((error, mut master)) = best else {
        return Err(CliError::failed(format!(
            "{label}: the limiter could not keep the true peak under {} dBTP in {MAX_PASSES} \
             passes",
            ceiling_dbtp.unwrap_or(0.0)
        )));
    };
    master.passes = passes;
    match objective {
        Objective::Loudness(target) if error > 0.1 => {
            let reached = master
                .measurement
                .integrated_lufs
                .unwrap_or(f32::NEG_INFINITY);
            Err(CliError::failed(format!(
                "{label}: cannot reach {target} LUFS: the closest master is {reached:.2} LUFS at \
                 {:+.1} dB drive (the drive range is {:+} to {:+} dB; raise the stem levels \
                 or use a less extreme target)",
                master.settings.master.drive_db, DRIVE_RANGE_DB.0, DRIVE_RANGE_DB.1
            )))
        }
        _ => Ok(master),
    }
}

/// The next drive to try from the passes so far (`history`: drive, measured value).
fn next_drive(
    history: &[(f32, f32)],
    goal: f32,
    objective: Objective,
    true_peak_dbtp: Option<f32>,
    ceiling_dbtp: f32,
) -> f32 {
    let &(d1, v1) = history.last().expect("one pass");
    // The interval known to hold the goal, from every pass (value is non-decreasing in drive).
    let lo = history
        .iter()
        .filter(|(_, v)| *v < goal)
        .map(|(d, _)| *d)
        .fold(f32::NEG_INFINITY, f32::max);
    let hi = history
        .iter()
        .filter(|(_, v)| *v > goal)
        .map(|(d, _)| *d)
        .fold(f32::INFINITY, f32::min);
    let mut next = if history.len() >= 2 {
        let &(d0, v0) = &history[history.len() - 2];
        let slope = (v1 - v0) / (d1 - d0);
        if slope.is_finite() && slope > 0.02 {
            d1 + (goal - v1) / slope
        } else {
            d1 + (goal - v1)
        }
    } else {
        d1 + (goal - v1)
    };
    if let Objective::LimiterReduction(_) = objective
        && v1 <= 0.0
    {
        // The limiter did nothing: the peaks are `ceiling − true peak` below it.
        let headroom = true_peak_dbtp.map_or(6.0, |tp| (ceiling_dbtp - tp).max(0.0));
        next = next.max(d1 + headroom + goal);
    }
    if lo.is_finite() && hi.is_finite() && !(next > lo && next < hi) {
        next = 0.5 * (lo + hi);
    } else if lo.is_finite() && next <= lo {
        next = lo + (goal - v1).abs().max(0.1);
    } else if hi.is_finite() && next >= hi {
        next = hi - (goal - v1).abs().max(0.1);
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small song: `stems` stereo stems of pseudo-random notes, 1.3 s at 48 kHz.
    fn song(stems: usize) -> RenderInput {
        let frames = 62_400;
        let mut seed = 0x2545_f491u32;
        let slots = (0..stems)
            .map(|s| {
                let channels = (0..2)
                    .map(|c| {
                        (0..frames)
                            .map(|n| {
                                seed ^= seed << 13;
                                seed ^= seed >> 17;
                                seed ^= seed << 5;
                                let noise = (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                                let t = n as f32 / 48_000.0;
                                let f = 55.0 * (s + 1) as f32 + c as f32;
                                let env = (-5.0 * (t % 0.4)).exp();
                                env * (0.4 * (std::f32::consts::TAU * f * t).sin() + 0.1 * noise)
                            })
                            .collect()
                    })
                    .collect();
                Some(Slot {
                    name: format!("stem{s}"),
                    audio: SlotAudio::Memory(channels),
                })
            })
            .collect();
        RenderInput {
            sample_rate: 48_000,
            frames,
            slots,
            main: None,
        }
    }

    #[test]
    fn stems_read_from_their_files_render_like_stems_in_memory() {
        use crate::wav::{OutputFormat, encode_wav};
        let dir = tempfile::tempdir().unwrap();
        for (stems, keyed) in [(3, true), (7, false)] {
            let in_memory = song(stems);
            // The same stems as float WAV files (exact), one of them shorter than the rest.
            let slots = in_memory
                .slots
                .iter()
                .enumerate()
                .map(|(i, slot)| {
                    let slot = slot.as_ref()?;
                    let SlotAudio::Memory(ch) = &slot.audio else {
                        unreachable!("song() decodes")
                    };
                    let len = if i == 1 { ch[0].len() / 2 } else { ch[0].len() };
                    let path = dir.path().join(format!("{stems}-{i}.wav"));
                    let bytes =
                        encode_wav(&ch[0][..len], &ch[1][..len], 48_000, OutputFormat::Float32);
                    std::fs::write(&path, bytes).unwrap();
                    Some(Slot {
                        name: slot.name.clone(),
                        audio: SlotAudio::File(WavStream::open(&path).unwrap().unwrap()),
                    })
                })
                .collect();
            let from_files = RenderInput {
                slots,
                ..song(stems)
            };
            let mut in_memory = in_memory;
            if let Some(Some(Slot {
                audio: SlotAudio::Memory(ch),
                ..
            })) = in_memory.slots.get_mut(1)
            {
                let half = ch[0].len() / 2;
                ch.iter_mut().for_each(|c| c.truncate(half));
            }
            let mut settings = EngineSettings::default();
            for s in &mut settings.stems {
                s.comp.enabled = true;
                s.comp.threshold_db = -30.0;
                if keyed {
                    s.comp.key = stembus_dsp::settings::CompKey::Mix;
                }
            }
            let want = render_stem_mix(&in_memory, &settings);
            let got = render_stem_mix(&from_files, &settings);
            assert_eq!(want.key.is_some(), keyed);
            assert!(want.sum == got.sum, "{stems} stems: same sum to the bit");
            assert!(want.key == got.key, "{stems} stems: same key to the bit");
            assert!(from_files.read_error().is_none());
        }
    }

    #[test]
    fn an_as_is_master_is_encoded_and_measured_as_its_file_by_the_pass() {
        use crate::measure::measure;
        use crate::wav::{decode_wav, encode_wav};
        let input = song(3);
        let mut settings = EngineSettings::default();
        settings.master.drive_db = 6.0;
        let bar = ProgressBar::hidden();
        for format in [
            OutputFormat::Pcm16,
            OutputFormat::Pcm24,
            OutputFormat::Float32,
        ] {
            // Something already in the sink is replaced.
            let mut bytes = b"stale".to_vec();
            let encode = Some(Encode {
                format,
                sink: &mut bytes,
            });
            let master =
                render_master(&input, &settings, Objective::AsIs, None, encode, "t", &bar).unwrap();
            assert!(master.pass.encoded, "an as-is pass encodes");
            let (left, right) = (master.pass.left(), master.pass.right());
            let file = encode_wav(left, right, 48_000, format);
            assert!(file == bytes, "{format:?}: the file, header and data");
            let decoded = decode_wav("master", &file).unwrap();
            let [l, r] = decoded.stereo();
            assert_eq!(
                master.measurement,
                measure(l, Some(r), 48_000),
                "{format:?}"
            );
            // A search does not encode the passes it may throw away, nor touch the sink.
            let target = Objective::Loudness(-20.0);
            let mut untouched = b"stale".to_vec();
            let encode = Some(Encode {
                format,
                sink: &mut untouched,
            });
            let searched = render_master(&input, &settings, target, None, encode, "t", &bar);
            assert!(!searched.unwrap().pass.encoded);
            assert_eq!(untouched, b"stale");
        }
    }

    #[test]
    fn a_repeated_as_is_pass_rewrites_the_file() {
        use crate::wav::encode_wav;
        let input = song(3);
        let mut settings = EngineSettings::default();
        settings.master.drive_db = 6.0;
        settings.master.limiter.ceiling_dbtp = -1.0;
        let bar = ProgressBar::hidden();
        let mut bytes = Vec::new();
        let format = OutputFormat::Pcm24;
        let encode = Some(Encode {
            format,
            sink: &mut bytes,
        });
        // A ceiling under the limiter's: the first pass does not count, the next one runs
        // with the limiter lowered and must replace what the first one wrote.
        let master = render_master(
            &input,
            &settings,
            Objective::AsIs,
            Some(-3.0),
            encode,
            "t",
            &bar,
        )
        .unwrap();
        assert!(master.passes >= 2, "{} passes", master.passes);
        let (left, right) = (master.pass.left(), master.pass.right());
        assert!(bytes == encode_wav(left, right, 48_000, format));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_sink_keeps_the_first_write_error() {
        // Every write to /dev/full fails (no space left on the device).
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let mut sink = FileSink::new(&mut file);
        sink.append(&[0; 4096]);
        sink.append(&[0; 16]);
        let e = sink.finish().unwrap_err();
        assert!(e.raw_os_error().is_some(), "{e}");
        // A file that takes the writes reports none.
        let mut ok = tempfile::tempfile().unwrap();
        let mut sink = FileSink::new(&mut ok);
        sink.append(b"abc");
        sink.restart();
        sink.append(b"de");
        sink.finish().unwrap();
        use std::io::{Read, Seek};
        let mut content = String::new();
        ok.rewind().unwrap();
        ok.read_to_string(&mut content).unwrap();
        assert_eq!(content, "de");
    }

    #[test]
    fn the_first_pass_alongside_the_stems_equals_stems_then_pass() {
        use stembus_dsp::settings::CompKey;
        // One and two stem groups; mix-keyed compressors make the key travel with the sum to the
        // master's glue.
        for (stems, keyed) in [(3, true), (7, false), (6, true)] {
            let input = song(stems);
            let mut settings = EngineSettings::default();
            for s in &mut settings.stems {
                s.comp.enabled = true;
                s.comp.threshold_db = -30.0;
                s.sat.enabled = true;
            }
            if keyed {
                settings.stems[1].comp.key = CompKey::Mix;
                settings.master.glue.key = CompKey::Mix;
            }
            settings.master.glue.enabled = true;
            settings.master.drive_db = 12.0;
            let bar = ProgressBar::hidden();
            let (mix, pass, measurement) = first_pass(&input, &settings, None, &bar);
            let want_mix = render_stem_mix(&input, &settings);
            assert!(mix.sum == want_mix.sum && mix.key == want_mix.key);
            assert_eq!(mix.key.is_some(), keyed);
            let (want, want_measurement) = run_pass(&input, &want_mix, &settings, None, &bar);
            assert_eq!(pass.left().len(), input.frames);
            assert!(
                pass.left() == want.left() && pass.right() == want.right(),
                "{stems} stems"
            );
            assert!(
                pass.gr_max_db > 1.0,
                "the limiter works ({})",
                pass.gr_max_db
            );
            assert_eq!(pass.gr_max_db, want.gr_max_db);
            assert_eq!(pass.gr_mean_db, want.gr_mean_db);
            assert_eq!(pass.gr_series_db, want.gr_series_db);
            assert_eq!(measurement, want_measurement);
        }
    }

    #[test]
    fn secant_on_a_straight_line_lands_in_one_step() {
        // L(d) = −20 + 0.5·d.
        let h = [(0.0, -20.0), (6.0, -17.0)];
        let next = next_drive(&h, -14.0, Objective::Loudness(-14.0), None, -1.0);
        assert!((next - 12.0).abs() < 1e-4, "{next}");
    }

    #[test]
    fn bisects_when_the_secant_leaves_the_bracket() {
        let h = [(0.0, -20.0), (10.0, -10.0), (9.9, -10.0)];
        let next = next_drive(&h, -14.0, Objective::Loudness(-14.0), None, -1.0);
        assert!(next > 0.0 && next < 9.9, "{next}");
    }
}
