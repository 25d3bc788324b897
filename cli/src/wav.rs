//! WAV files in and out.
//!
//! Reading parses the RIFF chunks directly and decodes the `data` chunk in bulk, streamed from
//! the file through one small buffer ([`read_wav`]; a per-sample reader, or a file-sized buffer
//! to fault in, would cost a good part of a render), or a stretch at a time as a caller asks
//! for it ([`WavStream`], how `stembus render` reads its stems). Accepted: PCM 8/16/24/32-bit integer and IEEE float 32/64-bit, plain or
//! `WAVE_FORMAT_EXTENSIBLE`, mono or stereo. Everything is converted to `f32` in −1..1
//! (integer full scale is 2^(bits−1)).
//!
//! Writing encodes 16-bit PCM with TPDF dither, 24-bit PCM (`WAVE_FORMAT_EXTENSIBLE`) or 32-bit
//! float ([`Encoder`], block by block, also giving the values a reader will decode), into a
//! temporary file in the destination folder that is renamed over the destination
//! only when complete, so a failed run never leaves a half-written file.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{CliError, Result, io_reason};

/// `WAVE_FORMAT_PCM`.
const TAG_PCM: u16 = 1;
/// `WAVE_FORMAT_IEEE_FLOAT`.
const TAG_FLOAT: u16 = 3;
/// `WAVE_FORMAT_EXTENSIBLE`: the real tag is the first two bytes of the sub-format GUID.
const TAG_EXTENSIBLE: u16 = 0xFFFE;
/// The fixed tail of the KSDATAFORMAT_SUBTYPE GUIDs (after the 2-byte format tag + 2 zero bytes).
const GUID_TAIL: [u8; 12] = [
    0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
];

/// Sample encoding of a WAV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleFormat {
    /// Integer PCM with this many valid bits (8, 16, 24 or 32).
    Int(u16),
    /// IEEE float with this many bits (32 or 64).
    Float(u16),
}

impl SampleFormat {
    /// Valid bits per sample.
    pub fn bits(self) -> u16 {
        match self {
            Self::Int(b) | Self::Float(b) => b,
        }
    }

    /// Short description, e.g. "24-bit int" or "32-bit float".
    pub fn describe(self) -> String {
        match self {
            Self::Int(b) => format!("{b}-bit int"),
            Self::Float(b) => format!("{b}-bit float"),
        }
    }

    /// Largest magnitude the format can hold, as a linear value after conversion: 1 for float
    /// (anything at or above is clipped on conversion), (2^(b−1) − 1) / 2^(b−1) for integers.
    pub fn full_scale(self) -> f32 {
        match self {
            Self::Int(b) => 1.0 - 1.0 / (1u64 << (b - 1)) as f32,
            Self::Float(_) => 1.0,
        }
    }
}

/// A decoded WAV file.
#[derive(Debug, Clone)]
pub struct Audio {
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Encoding in the file.
    pub format: SampleFormat,
    /// One (mono) or two (left, right) channels of equal length, linear −1..1.
    pub channels: Vec<Vec<f32>>,
}

impl Audio {
    /// Frames per channel.
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }

    /// Duration in seconds.
    pub fn duration_s(&self) -> f64 {
        self.frames() as f64 / f64::from(self.sample_rate)
    }

    /// Left and right; a mono file gives its channel twice (dual mono).
    pub fn stereo(&self) -> [&[f32]; 2] {
        let l = &self.channels[0];
        let r = self.channels.get(1).unwrap_or(l);
        [l, r]
    }
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Header facts from the `fmt ` chunk.
struct Fmt {
    format: SampleFormat,
    channels: u16,
    sample_rate: u32,
    /// Bytes per sample in the container (may exceed valid bits / 8).
    container_bytes: usize,
}

fn parse_fmt(name: &str, b: &[u8]) -> Result<Fmt> {
    let bad = |why: &str| CliError::input(format!("{name}: malformed WAV: {why}"));
    if b.len() < 16 {
        return Err(bad("fmt chunk shorter than 16 bytes"));
    }
    let mut tag = u16_at(b, 0);
    let channels = u16_at(b, 2);
    let sample_rate = u32_at(b, 4);
    let block_align = u16_at(b, 12) as usize;
    let mut bits = u16_at(b, 14);
    if tag == TAG_EXTENSIBLE {
        if b.len() < 40 {
            return Err(bad(
                "WAVE_FORMAT_EXTENSIBLE fmt chunk shorter than 40 bytes",
            ));
        }
        let valid = u16_at(b, 18);
        if valid > 0 && valid <= bits {
            bits = valid;
        }
        if b[26..28] != [0, 0] || b[28..40] != GUID_TAIL {
            return Err(CliError::input(format!(
                "{name}: unsupported WAV sub-format (only PCM and IEEE float are read)"
            )));
        }
        tag = u16_at(b, 24);
    }
    if channels == 0 {
        return Err(bad("zero channels"));
    }
    if channels > 2 {
        return Err(CliError::input(format!(
            "{name}: {channels} channels; only mono and stereo files are supported"
        )));
    }
    if sample_rate == 0 {
        return Err(bad("sample rate 0"));
    }
    if block_align == 0 || !block_align.is_multiple_of(channels as usize) {
        return Err(bad("block align does not match the channel count"));
    }
    let container_bytes = block_align / channels as usize;
    if usize::from(bits) > container_bytes * 8 || bits == 0 {
        return Err(bad("bits per sample do not fit the block align"));
    }
    let format = match (tag, container_bytes) {
        (TAG_PCM, 1..=4) if bits >= 8 => SampleFormat::Int(bits),
        (TAG_FLOAT, 4) if bits == 32 => SampleFormat::Float(32),
        (TAG_FLOAT, 8) if bits == 64 => SampleFormat::Float(64),
        (TAG_PCM | TAG_FLOAT, _) => {
            return Err(CliError::input(format!(
                "{name}: unsupported sample format ({bits} bits in {container_bytes}-byte \
                 samples)"
            )));
        }
        _ => {
            return Err(CliError::input(format!(
                "{name}: unsupported WAV encoding (format tag {tag:#06x}; only PCM and IEEE \
                 float are read)"
            )));
        }
    };
    Ok(Fmt {
        format,
        channels,
        sample_rate,
        container_bytes,
    })
}

/// Reads a WAV file completely. Errors are one line and name the file.
///
/// The file is not read into memory as a whole: the chunk headers are read where they lie, and
/// the `data` chunk is streamed through one `READ_BLOCK_BYTES` buffer straight into the
/// channels (no file-sized buffer to allocate, fault in and free, and each block is decoded
/// while it is still in the cache). The result and the errors are those of [`decode_wav`] on
/// the file's bytes (tested).
pub fn read_wav(path: &Path) -> Result<Audio> {
    match open(path)? {
        Opened::Bytes(name, bytes) => decode_wav(&name, &bytes),
        Opened::File(name, mut source, fmt, body, len) => source
            .decode_data(&fmt, body, len)
            .map_err(|e| cannot_read(&name, &e)),
    }
}

/// A file opened and its header checked.
enum Opened {
    /// Not a regular file (a pipe or device, with no length to parse against): read whole.
    Bytes(String, Vec<u8>),
    /// A regular file, its format, the offset of its `data` chunk and the chunk's length.
    File(String, FileSource, Fmt, usize, usize),
}

fn cannot_read(name: &str, e: &std::io::Error) -> CliError {
    CliError::input(format!("cannot read {name}: {}", io_reason(e)))
}

fn open(path: &Path) -> Result<Opened> {
    let name = path.display().to_string();
    if path.is_dir() {
        return Err(CliError::input(format!(
            "{name}: is a directory, not a WAV file"
        )));
    }
    let file = fs::File::open(path).map_err(|e| cannot_read(&name, &e))?;
    let meta = file.metadata().map_err(|e| cannot_read(&name, &e))?;
    if !meta.is_file() {
        let mut bytes = Vec::new();
        (&file)
            .read_to_end(&mut bytes)
            .map_err(|e| cannot_read(&name, &e))?;
        return Ok(Opened::Bytes(name, bytes));
    }
    let len = usize::try_from(meta.len()).unwrap_or(usize::MAX);
    let mut source = FileSource {
        file,
        len,
        buf: Vec::new(),
        buf_start: 0,
    };
    match parse_header(&name, &mut source) {
        Ok((fmt, body, data_len)) => Ok(Opened::File(name, source, fmt, body, data_len)),
        Err(HeaderError::Io(e)) => Err(cannot_read(&name, &e)),
        Err(HeaderError::Wav(e)) => Err(e),
    }
}

/// A WAV file read a stretch at a time: the header is read and checked by [`WavStream::open`],
/// the samples only when [`WavStream::read`] asks for them. `stembus render` feeds the engine
/// this way, so that a stem set is never held in memory whole (eight stereo stems of an hour
/// would take 11 GB as `f32`, and faulting in even a minute's 184 MB costs more CPU time than
/// decoding it).
pub struct WavStream {
    /// The path, for messages.
    name: String,
    /// Format of the `data` chunk.
    fmt: Fmt,
    /// File offset of the first frame.
    body: usize,
    /// Whole frames in the `data` chunk.
    frames: usize,
    /// The open file and its byte buffer (one reader at a time), and the first read error.
    state: Mutex<StreamState>,
}

/// The mutable part of a [`WavStream`].
struct StreamState {
    /// The open file.
    file: fs::File,
    /// Raw bytes of the stretch being read.
    buf: Vec<u8>,
    /// Why a read failed (the first time), if one did.
    error: Option<String>,
}

impl std::fmt::Debug for WavStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavStream")
            .field("name", &self.name)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl WavStream {
    /// Opens `path` and checks its header, with the same errors as [`read_wav`]. `Ok(None)`
    /// when it is not a regular file (a pipe cannot be read twice: use [`read_wav`]).
    pub fn open(path: &Path) -> Result<Option<Self>> {
        match open(path)? {
            Opened::Bytes(..) => Ok(None),
            Opened::File(name, source, fmt, body, len) => {
                let frame_bytes = fmt.container_bytes * fmt.channels as usize;
                Ok(Some(Self {
                    name,
                    frames: len / frame_bytes,
                    fmt,
                    body,
                    state: Mutex::new(StreamState {
                        file: source.file,
                        buf: Vec::new(),
                        error: None,
                    }),
                }))
            }
        }
    }

    /// Sample rate, Hz.
    pub fn sample_rate(&self) -> u32 {
        self.fmt.sample_rate
    }

    /// Encoding in the file.
    pub fn format(&self) -> SampleFormat {
        self.fmt.format
    }

    /// Frames per channel.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Fills `out` (left, right; equal lengths) with frames `start..` of the file's first two
    /// channels (a mono file gives its channel twice), as [`read_wav`] decodes them; silence
    /// past the end. A read that fails gives silence and is remembered: see [`Self::error`].
    pub fn read(&self, start: usize, out: [&mut [f32]; 2]) {
        let [left, right] = out;
        let n = left.len().min(right.len());
        let have = self.frames.saturating_sub(start).min(n);
        left[have..].fill(0.0);
        right[have..].fill(0.0);
        if have == 0 {
            return;
        }
        let Ok(mut guard) = self.state.lock() else {
            left[..have].fill(0.0);
            right[..have].fill(0.0);
            return;
        };
        let state = &mut *guard;
        let frame_bytes = self.fmt.container_bytes * self.fmt.channels as usize;
        state.buf.resize(have * frame_bytes, 0);
        let read = state
            .file
            .seek(SeekFrom::Start((self.body + start * frame_bytes) as u64))
            .and_then(|_| state.file.read_exact(&mut state.buf));
        if let Err(e) = read {
            state
                .error
                .get_or_insert_with(|| format!("cannot read {}: {}", self.name, io_reason(&e)));
            left[..have].fill(0.0);
            right[..have].fill(0.0);
            return;
        }
        decode_channel(&self.fmt, &state.buf, 0, &mut left[..have]);
        if self.fmt.channels > 1 {
            decode_channel(&self.fmt, &state.buf, 1, &mut right[..have]);
        } else {
            right[..have].copy_from_slice(&left[..have]);
        }
    }

    /// The first failed read, as a message naming the file.
    pub fn error(&self) -> Option<String> {
        self.state.lock().ok().and_then(|s| s.error.clone())
    }
}

/// Bytes read from a file per block while decoding its `data` chunk (fits in L2 with room to
/// spare; a whole number of frames is decoded per block).
const READ_BLOCK_BYTES: usize = 1 << 18;

/// Bytes of a file that [`parse_header`] walks through: a slice in memory, or a file read on
/// demand.
trait Source {
    /// Total length, bytes.
    fn len(&self) -> usize;
    /// Bytes `start..end` (within `len`).
    fn bytes(&mut self, start: usize, end: usize) -> std::io::Result<&[u8]>;
}

impl Source for &[u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }

    fn bytes(&mut self, start: usize, end: usize) -> std::io::Result<&[u8]> {
        Ok(&self[start..end])
    }
}

/// A regular file read through one buffer that holds `buf_start..buf_start + buf.len()`.
struct FileSource {
    /// The open file.
    file: fs::File,
    /// Its length, bytes.
    len: usize,
    /// The bytes read last.
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_start: usize,
}

impl Source for FileSource {
    fn len(&self) -> usize {
        self.len
    }

    fn bytes(&mut self, start: usize, end: usize) -> std::io::Result<&[u8]> {
        if start < self.buf_start || end > self.buf_start + self.buf.len() {
            // Header reads are small: read ahead (a chunk header and the fmt chunk usually
            // share one read).
            let read_end = end.max(start + 4096).min(self.len);
            self.file.seek(SeekFrom::Start(start as u64))?;
            self.buf.resize(read_end - start, 0);
            self.file.read_exact(&mut self.buf)?;
            self.buf_start = start;
        }
        Ok(&self.buf[start - self.buf_start..end - self.buf_start])
    }
}

impl FileSource {
    /// Decodes the `data` chunk at `body..body + len`, one block at a time.
    fn decode_data(&mut self, fmt: &Fmt, body: usize, len: usize) -> std::io::Result<Audio> {
        let frame_bytes = fmt.container_bytes * fmt.channels as usize;
        let frames = len / frame_bytes;
        let mut channels: Vec<Vec<f32>> = (0..fmt.channels)
            .map(|_| Vec::with_capacity(frames))
            .collect();
        let block = (READ_BLOCK_BYTES / frame_bytes).max(1) * frame_bytes;
        self.file.seek(SeekFrom::Start(body as u64))?;
        self.buf.resize(block, 0);
        let mut left = frames * frame_bytes;
        while left > 0 {
            let n = left.min(block);
            self.file.read_exact(&mut self.buf[..n])?;
            decode_into(fmt, &self.buf[..n], &mut channels);
            left -= n;
        }
        Ok(Audio {
            sample_rate: fmt.sample_rate,
            format: fmt.format,
            channels,
        })
    }
}

/// Why [`parse_header`] stopped.
enum HeaderError {
    /// The bytes are not a readable WAV file.
    Wav(CliError),
    /// Reading them failed.
    Io(std::io::Error),
}

impl From<CliError> for HeaderError {
    fn from(e: CliError) -> Self {
        Self::Wav(e)
    }
}

impl From<std::io::Error> for HeaderError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// Walks the RIFF chunks up to the `data` chunk: its format, the offset of its body and its
/// length in bytes (within the file).
fn parse_header(
    name: &str,
    src: &mut impl Source,
) -> std::result::Result<(Fmt, usize, usize), HeaderError> {
    let total = src.len();
    if total == 0 {
        return Err(CliError::input(format!("{name}: empty file, not a WAV file")).into());
    }
    let head = src.bytes(0, total.min(12))?;
    if head.len() < 12 || &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        let what = if head.len() >= 4 && &head[0..4] == b"RF64" {
            "RF64 (64-bit WAV) is not supported"
        } else {
            "not a WAV file (no RIFF/WAVE header)"
        };
        return Err(CliError::input(format!("{name}: {what}")).into());
    }
    let mut pos = 12;
    let mut fmt: Option<Fmt> = None;
    loop {
        if pos + 8 > total {
            return Err(CliError::input(format!(
                "{name}: malformed or truncated WAV: no data chunk"
            ))
            .into());
        }
        let header = src.bytes(pos, pos + 8)?;
        let id: [u8; 4] = [header[0], header[1], header[2], header[3]];
        let size = u32_at(header, 4) as usize;
        let body = pos + 8;
        let available = total - body;
        if &id == b"data" {
            let Some(fmt) = fmt else {
                return Err(CliError::input(format!(
                    "{name}: malformed WAV: data chunk before fmt chunk"
                ))
                .into());
            };
            // Streaming writers leave 0 or 0xFFFFFFFF when they could not seek back.
            let len = if size == 0xFFFF_FFFF || (size == 0 && available > 0) {
                available
            } else if size > available {
                return Err(CliError::input(format!(
                    "{name}: truncated WAV: the data chunk declares {size} bytes but the file \
                     holds {available}"
                ))
                .into());
            } else {
                size
            };
            return Ok((fmt, body, len));
        }
        if size > available {
            return Err(CliError::input(format!(
                "{name}: malformed or truncated WAV: the '{}' chunk runs past the end of the file",
                String::from_utf8_lossy(&id)
            ))
            .into());
        }
        if &id == b"fmt " {
            fmt = Some(parse_fmt(name, src.bytes(body, body + size)?)?);
        }
        pos = body + size + (size & 1);
    }
}

/// Decodes a WAV file held in memory; `name` is used in error messages.
pub fn decode_wav(name: &str, bytes: &[u8]) -> Result<Audio> {
    let (fmt, body, len) = match parse_header(name, &mut &bytes[..]) {
        Ok(found) => found,
        Err(HeaderError::Wav(e)) => return Err(e),
        Err(HeaderError::Io(e)) => {
            return Err(CliError::input(format!(
                "cannot read {name}: {}",
                io_reason(&e)
            )));
        }
    };
    let data = &bytes[body..body + len];
    let frame_bytes = fmt.container_bytes * fmt.channels as usize;
    let frames = data.len() / frame_bytes;
    let mut channels: Vec<Vec<f32>> = (0..fmt.channels)
        .map(|_| Vec::with_capacity(frames))
        .collect();
    decode_into(&fmt, &data[..frames * frame_bytes], &mut channels);
    Ok(Audio {
        sample_rate: fmt.sample_rate,
        format: fmt.format,
        channels,
    })
}

/// Appends the whole frames of the interleaved `data` bytes to `channels` as `f32`.
fn decode_into(fmt: &Fmt, data: &[u8], channels: &mut [Vec<f32>]) {
    let frames = data.len() / (fmt.container_bytes * channels.len());
    for (c, out) in channels.iter_mut().enumerate() {
        let old = out.len();
        out.resize(old + frames, 0.0);
        decode_channel(fmt, data, c, &mut out[old..]);
    }
}

/// Decodes channel `c` of the first `out.len()` interleaved frames of `data` into `out`.
fn decode_channel(fmt: &Fmt, data: &[u8], c: usize, out: &mut [f32]) {
    let cb = fmt.container_bytes;
    let ch = fmt.channels as usize;
    // One monomorphised loop per common container, so the per-sample work is a load and a
    // convert (and the loops vectorise).
    match (fmt.format, cb) {
        (SampleFormat::Float(32), 4) => deinterleave::<4>(data, ch, c, out, |s| {
            f32::from_le_bytes([s[0], s[1], s[2], s[3]])
        }),
        (SampleFormat::Int(_), 2) => deinterleave::<2>(data, ch, c, out, |s| {
            f32::from(i16::from_le_bytes([s[0], s[1]])) / 32_768.0
        }),
        (SampleFormat::Int(_), 3) => deinterleave::<3>(data, ch, c, out, |s| {
            (i32::from_le_bytes([0, s[0], s[1], s[2]]) >> 8) as f32 / 8_388_608.0
        }),
        (format, _) => {
            for (o, frame) in out.iter_mut().zip(data.chunks_exact(cb * ch)) {
                *o = decode_sample(format, &frame[c * cb..(c + 1) * cb]);
            }
        }
    }
}

/// Writes channel `c` of interleaved `B`-byte samples (`ch` channels) to `out`, converted
/// with `convert`.
fn deinterleave<const B: usize>(
    data: &[u8],
    ch: usize,
    c: usize,
    out: &mut [f32],
    convert: impl Fn(&[u8; B]) -> f32,
) {
    for (o, frame) in out.iter_mut().zip(data.chunks_exact(B * ch)) {
        let s: &[u8; B] = frame[c * B..(c + 1) * B].try_into().expect("B bytes");
        *o = convert(s);
    }
}

/// One sample from its little-endian container bytes.
#[inline]
fn decode_sample(format: SampleFormat, s: &[u8]) -> f32 {
    match format {
        SampleFormat::Float(32) => f32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        SampleFormat::Float(_) => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&s[..8]);
            f64::from_le_bytes(b) as f32
        }
        SampleFormat::Int(_) if s.len() == 1 => (f32::from(s[0]) - 128.0) / 128.0,
        SampleFormat::Int(_) => {
            // Left-align the container in an i32 so its sign bit is bit 31, then scale.
            let mut v: u32 = 0;
            for (i, &byte) in s.iter().enumerate() {
                v |= u32::from(byte) << (8 * (4 - s.len() + i));
            }
            (v as i32) as f32 / 2_147_483_648.0
        }
    }
}

/// Output sample encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// 16-bit PCM with TPDF dither (±1 LSB triangular).
    Pcm16,
    /// 24-bit PCM, rounded (no dither: its noise floor is below any converter's).
    Pcm24,
    /// 32-bit IEEE float, unchanged.
    Float32,
}

impl OutputFormat {
    /// Bits per sample.
    pub fn bits(self) -> u16 {
        match self {
            Self::Pcm16 => 16,
            Self::Pcm24 => 24,
            Self::Float32 => 32,
        }
    }

    /// Name as given on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pcm16 => "16",
            Self::Pcm24 => "24",
            Self::Float32 => "f32",
        }
    }
}

/// xorshift32 generator for dither: deterministic, so a render is reproducible bit for bit.
struct Xorshift(u32);

impl Xorshift {
    /// Uniform in [0, 1).
    #[inline]
    fn next_unit(&mut self) -> f32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        (x >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
    }
}

/// Quantises `left`/`right` to `format` the way [`encode_wav`] writes them, returning the
/// decoded values (what a reader of the file will see).
pub fn quantize(left: &[f32], right: &[f32], format: OutputFormat) -> [Vec<f32>; 2] {
    let frames = left.len().min(right.len());
    let mut decoded = [Vec::with_capacity(frames), Vec::with_capacity(frames)];
    let mut bytes = Vec::new();
    Encoder::new(format).encode(left, right, &mut bytes, Some(&mut decoded));
    decoded
}

/// The header of a stereo WAV file of `frames` frames, up to and including the `data` chunk's
/// size: what [`encode_wav`] writes before the samples.
pub fn wav_header(frames: usize, sample_rate: u32, format: OutputFormat) -> Vec<u8> {
    let bytes_per_sample = usize::from(format.bits() / 8);
    let data_len = frames * 2 * bytes_per_sample;
    let block_align = (2 * bytes_per_sample) as u16;
    let mut fmt = Vec::with_capacity(40);
    let tag = match format {
        OutputFormat::Pcm16 => TAG_PCM,
        OutputFormat::Pcm24 => TAG_EXTENSIBLE,
        OutputFormat::Float32 => TAG_FLOAT,
    };
    fmt.extend_from_slice(&tag.to_le_bytes());
    fmt.extend_from_slice(&2u16.to_le_bytes());
    fmt.extend_from_slice(&sample_rate.to_le_bytes());
    fmt.extend_from_slice(&(sample_rate * u32::from(block_align)).to_le_bytes());
    fmt.extend_from_slice(&block_align.to_le_bytes());
    fmt.extend_from_slice(&format.bits().to_le_bytes());
    match format {
        OutputFormat::Pcm16 => {}
        OutputFormat::Float32 => fmt.extend_from_slice(&0u16.to_le_bytes()),
        OutputFormat::Pcm24 => {
            fmt.extend_from_slice(&22u16.to_le_bytes());
            fmt.extend_from_slice(&24u16.to_le_bytes());
            fmt.extend_from_slice(&3u32.to_le_bytes()); // front left | front right
            fmt.extend_from_slice(&TAG_PCM.to_le_bytes());
            fmt.extend_from_slice(&[0, 0]);
            fmt.extend_from_slice(&GUID_TAIL);
        }
    }
    let fact = format == OutputFormat::Float32;
    let riff_len = 4 + (8 + fmt.len()) + if fact { 12 } else { 0 } + 8 + data_len;
    let mut out = Vec::with_capacity(80);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(riff_len as u32).to_le_bytes());
    out.extend_from_slice(b"WAVE");
    out.extend_from_slice(b"fmt ");
    out.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
    out.extend_from_slice(&fmt);
    if fact {
        out.extend_from_slice(b"fact");
        out.extend_from_slice(&4u32.to_le_bytes());
        out.extend_from_slice(&(frames as u32).to_le_bytes());
    }
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data_len as u32).to_le_bytes());
    out
}

/// Encodes a stereo WAV file in memory.
pub fn encode_wav(left: &[f32], right: &[f32], sample_rate: u32, format: OutputFormat) -> Vec<u8> {
    let frames = left.len().min(right.len());
    let mut out = wav_header(frames, sample_rate, format);
    out.reserve(frames * 2 * usize::from(format.bits() / 8));
    Encoder::new(format).encode(left, right, &mut out, None);
    out
}

/// `y.round().clamp(lo, hi) as i32` for integer bounds `lo`, `hi` with |lo|, |hi| ≤ 2^23,
/// without a call to `roundf` (x86-64 has no rounding instruction before SSE4.1): clamping
/// first gives the same result (rounding keeps a value inside integer bounds), the truncation
/// `t` and the remainder `y − t` are exact for |y| ≤ 2^23, and a remainder of ±½ or more rounds
/// away from zero as `f32::round` does. NaN gives 0, as the saturating cast does.
#[inline(always)]
fn round_clamped(y: f32, lo: f32, hi: f32) -> i32 {
    let y = y.clamp(lo, hi);
    let t = y as i32;
    let frac = y - t as f32;
    t + i32::from(frac >= 0.5) - i32::from(frac <= -0.5)
}

/// The sample encoder of one output stream: quantisation (with the dither generator's state,
/// so that a file encoded block by block is the file [`encode_wav`] writes at once) and the
/// little-endian bytes.
pub struct Encoder {
    /// Encoding written.
    format: OutputFormat,
    /// Dither generator (16-bit only), continued from block to block.
    rng: Xorshift,
}

impl Encoder {
    /// A fresh stream (the dither sequence starts from its seed).
    pub fn new(format: OutputFormat) -> Self {
        Self {
            format,
            rng: Xorshift(0x5EED_D17E),
        }
    }

    /// Appends the next frames (the shorter of `left`, `right`) to `out` as interleaved
    /// samples; with `decoded`, also appends to it the values a reader of the file will see.
    pub fn encode(
        &mut self,
        left: &[f32],
        right: &[f32],
        out: &mut Vec<u8>,
        decoded: Option<&mut [Vec<f32>; 2]>,
    ) {
        let frames = left.len().min(right.len());
        let (left, right) = (&left[..frames], &right[..frames]);
        match self.format {
            OutputFormat::Float32 => {
                let start = out.len();
                out.resize(start + frames * 8, 0);
                for ((o, l), r) in out[start..].chunks_exact_mut(8).zip(left).zip(right) {
                    o[..4].copy_from_slice(&l.to_le_bytes());
                    o[4..].copy_from_slice(&r.to_le_bytes());
                }
                if let Some([dl, dr]) = decoded {
                    dl.extend_from_slice(left);
                    dr.extend_from_slice(right);
                }
            }
            OutputFormat::Pcm24 => {
                // Rounded, no dither. In tiles: the quantisation (and the values a reader will
                // decode) as plain loops over arrays, which vectorise, then the byte packing.
                const SCALE: f32 = 8_388_608.0;
                const TILE: usize = 256;
                let q = |x: f32| round_clamped(x * SCALE, -SCALE, SCALE - 1.0);
                let start = out.len();
                out.resize(start + frames * 6, 0);
                let mut decoded = decoded;
                let tiles = out[start..]
                    .chunks_mut(6 * TILE)
                    .zip(left.chunks(TILE))
                    .zip(right.chunks(TILE));
                for ((bytes, l), r) in tiles {
                    let (mut ql, mut qr) = ([0i32; TILE], [0i32; TILE]);
                    let (ql, qr) = (&mut ql[..l.len()], &mut qr[..r.len()]);
                    for (o, &x) in ql.iter_mut().zip(l) {
                        *o = q(x);
                    }
                    for (o, &x) in qr.iter_mut().zip(r) {
                        *o = q(x);
                    }
                    for ((o, a), b) in bytes.chunks_exact_mut(6).zip(&*ql).zip(&*qr) {
                        o[..3].copy_from_slice(&a.to_le_bytes()[..3]);
                        o[3..].copy_from_slice(&b.to_le_bytes()[..3]);
                    }
                    if let Some([dl, dr]) = decoded.as_deref_mut() {
                        // As `decode_wav` reads it: an exact power-of-two scale.
                        dl.extend(ql.iter().map(|&a| a as f32 / SCALE));
                        dr.extend(qr.iter().map(|&b| b as f32 / SCALE));
                    }
                }
            }
            OutputFormat::Pcm16 => {
                const SCALE: f32 = 32_768.0;
                let rng = &mut self.rng;
                let mut q = |x: f32| -> i16 {
                    // TPDF: the difference of two uniform variables, ±1 LSB peak.
                    let d = rng.next_unit() - rng.next_unit();
                    round_clamped(x * SCALE + d, -SCALE, SCALE - 1.0) as i16
                };
                let start = out.len();
                out.resize(start + frames * 4, 0);
                let mut decoded = decoded;
                for ((o, &l), &r) in out[start..].chunks_exact_mut(4).zip(left).zip(right) {
                    let (a, b) = (q(l), q(r));
                    o[..2].copy_from_slice(&a.to_le_bytes());
                    o[2..].copy_from_slice(&b.to_le_bytes());
                    if let Some([dl, dr]) = decoded.as_deref_mut() {
                        dl.push(f32::from(a) / SCALE);
                        dr.push(f32::from(b) / SCALE);
                    }
                }
            }
        }
    }
}

/// Checks that `path` can be written: its folder exists and accepts a new file. Run before a
/// long render so that a bad output path fails at once.
pub fn check_writable(path: &Path) -> Result<()> {
    let name = path.display();
    if path.is_dir() {
        return Err(CliError::input(format!(
            "cannot write {name}: is a directory"
        )));
    }
    let dir = parent_dir(path);
    if !dir.is_dir() {
        let why = if dir.exists() {
            "is not a folder"
        } else {
            "does not exist"
        };
        return Err(CliError::input(format!(
            "cannot write {name}: {} {why}",
            dir.display()
        )));
    }
    tempfile::Builder::new()
        .prefix(".stembus-check-")
        .tempfile_in(dir)
        .map(drop)
        .map_err(|e| CliError::input(format!("cannot write {name}: {}", io_reason(&e))))
}

/// Folder of `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Gives a finished temporary file the usual `rw-r--r--` mode (temporary files are created
/// private).
pub fn set_readable(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o644));
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Temporary files of outputs being written (see [`TempOutput`]).
static UNFINISHED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The list of [`UNFINISHED`] files (a panic elsewhere while it was held leaves it usable).
fn unfinished() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    UNFINISHED.lock().unwrap_or_else(|e| e.into_inner())
}

/// A temporary file next to an output, for content that [`TempOutput::persist`] renames over
/// the output once it is complete; dropped instead (a failed run), it is deleted. While it
/// exists it is listed, so that a run the user interrupts removes it too
/// ([`remove_unfinished_outputs`]): no half-written file is ever left behind, in place or
/// beside it.
pub struct TempOutput {
    /// The file (taken by [`TempOutput::persist`]).
    tmp: Option<tempfile::NamedTempFile>,
    /// Its path, as listed in [`UNFINISHED`].
    path: PathBuf,
}

impl TempOutput {
    /// A new, empty temporary file in `output`'s folder, its name ending in `suffix` (some
    /// writers pick the format from it).
    pub fn new(output: &Path, suffix: &str) -> Result<Self> {
        let tmp = tempfile::Builder::new()
            .prefix(".stembus-")
            .suffix(suffix)
            .tempfile_in(parent_dir(output))
            .map_err(|e| write_error(output, &e))?;
        let path = tmp.path().to_path_buf();
        unfinished().push(path.clone());
        Ok(Self {
            tmp: Some(tmp),
            path,
        })
    }

    /// The temporary file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file, open for writing.
    pub fn as_file_mut(&mut self) -> &mut fs::File {
        match &mut self.tmp {
            Some(tmp) => tmp.as_file_mut(),
            None => unreachable!("the file is only taken by `persist`, which consumes self"),
        }
    }

    /// Puts the finished file in place at `output` (readable like any file the user writes).
    pub fn persist(mut self, output: &Path) -> Result<()> {
        let Some(tmp) = self.tmp.take() else {
            return Ok(());
        };
        set_readable(tmp.path());
        tmp.persist(output)
            .map_err(|e| write_error(output, &e.error))?;
        Ok(())
    }
}

impl Drop for TempOutput {
    fn drop(&mut self) {
        let mut list = unfinished();
        if let Some(i) = list.iter().position(|p| *p == self.path) {
            list.swap_remove(i);
        }
        // `tmp`, if still there, deletes the file when it drops after this.
    }
}

/// Deletes the temporary files of every output still being written (for an interrupted run:
/// the process then exits without running destructors).
pub fn remove_unfinished_outputs() {
    for path in unfinished().drain(..) {
        let _ = fs::remove_file(path);
    }
}

/// The error for a failed write of `path`.
pub fn write_error(path: &Path, e: &std::io::Error) -> CliError {
    CliError::input(format!("cannot write {}: {}", path.display(), io_reason(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize) -> Vec<f32> {
        (0..n).map(|i| (i as f32 / n as f32) * 1.8 - 0.9).collect()
    }

    #[test]
    fn float_round_trip_is_exact() {
        let l = ramp(1000);
        let r: Vec<f32> = l.iter().map(|x| -x).collect();
        let bytes = encode_wav(&l, &r, 44_100, OutputFormat::Float32);
        let a = decode_wav("t", &bytes).unwrap();
        assert_eq!(a.sample_rate, 44_100);
        assert_eq!(a.format, SampleFormat::Float(32));
        assert_eq!(a.channels[0], l);
        assert_eq!(a.channels[1], r);
    }

    #[test]
    fn int_round_trips_within_one_lsb() {
        let l = ramp(1000);
        for (format, lsb) in [
            (OutputFormat::Pcm24, 1.0 / 8_388_608.0),
            (OutputFormat::Pcm16, 1.0 / 32_768.0),
        ] {
            let [ql, qr] = quantize(&l, &l, format);
            for (a, b) in ql.iter().zip(&l).chain(qr.iter().zip(&l)) {
                assert!((a - b).abs() <= 1.5 * lsb + 1e-9, "{format:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn truncated_data_is_an_error() {
        let l = ramp(100);
        let bytes = encode_wav(&l, &l, 48_000, OutputFormat::Pcm24);
        let err = decode_wav("x.wav", &bytes[..bytes.len() - 10]).unwrap_err();
        assert!(err.message.contains("truncated"), "{}", err.message);
        let err = decode_wav("x.wav", b"RIFF\0\0\0\0WAVEjunk").unwrap_err();
        assert!(err.message.contains("x.wav"), "{}", err.message);
        assert!(decode_wav("x.wav", b"hello world, not a wav").is_err());
    }

    #[test]
    fn integer_containers_decode_to_full_scale() {
        let i32_min = i32::MIN.to_le_bytes();
        let half_24 = [0x00, 0x00, 0x40]; // 0x400000 = half of 2^23
        assert_eq!(decode_sample(SampleFormat::Int(32), &i32_min), -1.0);
        assert_eq!(decode_sample(SampleFormat::Int(24), &half_24), 0.5);
        assert_eq!(
            decode_sample(SampleFormat::Int(16), &[0xFF, 0x7F]),
            32_767.0 / 32_768.0
        );
        assert_eq!(decode_sample(SampleFormat::Int(8), &[0]), -1.0);
        assert_eq!(decode_sample(SampleFormat::Int(8), &[128]), 0.0);
        // 24 valid bits in a 32-bit container: left-aligned, same scale.
        assert_eq!(decode_sample(SampleFormat::Int(24), &[0, 0, 0, 0x40]), 0.5);
    }

    #[test]
    fn sixteen_bit_full_scale_clamps() {
        let [l, _] = quantize(&[1.5, -1.5, 0.0], &[0.0; 3], OutputFormat::Pcm16);
        assert!(l[0] <= 1.0 && l[0] > 0.9999);
        assert_eq!(l[1], -1.0);
    }

    /// The encoder before the block encoder (per-sample `extend_from_slice`, `f32::round`):
    /// the reference the new one must match byte for byte.
    fn encode_reference(left: &[f32], right: &[f32], format: OutputFormat) -> Vec<u8> {
        let mut out = wav_header(left.len().min(right.len()), 48_000, format);
        let mut rng = Xorshift(0x5EED_D17E);
        for (&l, &r) in left.iter().zip(right) {
            for x in [l, r] {
                match format {
                    OutputFormat::Float32 => out.extend_from_slice(&x.to_le_bytes()),
                    OutputFormat::Pcm24 => {
                        const SCALE: f32 = 8_388_608.0;
                        let v = (x * SCALE).round().clamp(-SCALE, SCALE - 1.0) as i32;
                        out.extend_from_slice(&v.to_le_bytes()[..3]);
                    }
                    OutputFormat::Pcm16 => {
                        const SCALE: f32 = 32_768.0;
                        let d = rng.next_unit() - rng.next_unit();
                        let v = (x * SCALE + d).round().clamp(-SCALE, SCALE - 1.0) as i16;
                        out.extend_from_slice(&v.to_le_bytes());
                    }
                }
            }
        }
        out
    }

    /// Values that hit every branch of the quantisers: ties at ±½ LSB, the clip points,
    /// non-finite values, denormals, and noise at several levels.
    fn tricky() -> Vec<f32> {
        let mut x = vec![
            0.0,
            -0.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1.0,
            -1.0,
            1.5,
            -1.5,
            1e30,
            -1e30,
            f32::MIN_POSITIVE / 4.0,
            0.999_999_9,
            -0.999_999_9,
        ];
        for k in -40..40 {
            // Exact ties for both scales, and their neighbours.
            for scale in [8_388_608.0f32, 32_768.0] {
                let tie = (k as f32 + 0.5) / scale;
                x.extend([tie, -tie, tie.next_up(), tie.next_down()]);
            }
        }
        let mut seed = 0x1234_5678u32;
        for level in [1e-6f32, 1e-3, 0.3, 1.2] {
            for _ in 0..2000 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                x.push(level * ((seed >> 8) as f32 / (1u32 << 23) as f32 - 1.0));
            }
        }
        x
    }

    #[test]
    fn block_encoder_matches_the_reference_to_the_byte() {
        let l = tricky();
        let r: Vec<f32> = l.iter().rev().copied().collect();
        for format in [
            OutputFormat::Pcm16,
            OutputFormat::Pcm24,
            OutputFormat::Float32,
        ] {
            let whole = encode_wav(&l, &r, 48_000, format);
            assert_eq!(whole, encode_reference(&l, &r, format), "{format:?}");
            // In uneven blocks, continuing the dither: the same file.
            let mut blocks = wav_header(l.len(), 48_000, format);
            let mut enc = Encoder::new(format);
            let mut decoded = [Vec::new(), Vec::new()];
            let mut start = 0;
            for len in [1, 7, 100, 3, 5000].iter().cycle() {
                let end = (start + len).min(l.len());
                enc.encode(
                    &l[start..end],
                    &r[start..end],
                    &mut blocks,
                    Some(&mut decoded),
                );
                start = end;
                if start == l.len() {
                    break;
                }
            }
            assert_eq!(blocks, whole, "{format:?} in blocks");
            // The decoded values are what a reader of the file sees, to the bit.
            let read = decode_wav("t", &whole).unwrap();
            for (a, b) in decoded.iter().zip(&read.channels) {
                assert_eq!(a.len(), b.len());
                assert!(
                    a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{format:?}"
                );
            }
            let [ql, qr] = quantize(&l, &r, format);
            assert!(
                ql.iter()
                    .zip(&decoded[0])
                    .all(|(x, y)| x.to_bits() == y.to_bits())
            );
            assert!(
                qr.iter()
                    .zip(&decoded[1])
                    .all(|(x, y)| x.to_bits() == y.to_bits())
            );
        }
    }

    /// A RIFF/WAVE file from its chunks (id, body); odd bodies are padded.
    fn riff(chunks: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
        let mut body = b"WAVE".to_vec();
        for (id, data) in chunks {
            body.extend_from_slice(*id);
            body.extend_from_slice(&(data.len() as u32).to_le_bytes());
            body.extend_from_slice(data);
            if data.len() % 2 == 1 {
                body.push(0);
            }
        }
        let mut out = b"RIFF".to_vec();
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend(body);
        out
    }

    fn fmt_chunk(tag: u16, channels: u16, rate: u32, container: u16, bits: u16) -> Vec<u8> {
        let align = channels * container;
        let mut f = Vec::new();
        for v in [tag, channels] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        f.extend_from_slice(&rate.to_le_bytes());
        f.extend_from_slice(&(rate * u32::from(align)).to_le_bytes());
        f.extend_from_slice(&align.to_le_bytes());
        f.extend_from_slice(&bits.to_le_bytes());
        f
    }

    fn noise_bytes(n: usize, seed: u32) -> Vec<u8> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn streamed_file_reading_matches_decoding_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let l: Vec<f32> = (0..70_001)
            .map(|i| ((i as f32) * 0.01).sin() * 0.9)
            .collect();
        let r: Vec<f32> = l.iter().map(|x| -0.5 * x).collect();
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        for (name, format) in [
            ("f32", OutputFormat::Float32),
            ("pcm24", OutputFormat::Pcm24),
            ("pcm16", OutputFormat::Pcm16),
        ] {
            // Larger than one read block: several blocks and a partial one.
            cases.push((name, encode_wav(&l, &r, 44_100, format)));
        }
        let f32_file = cases[0].1.clone();
        let mut extensible_fmt = fmt_chunk(TAG_EXTENSIBLE, 1, 48_000, 4, 32);
        extensible_fmt.extend_from_slice(&22u16.to_le_bytes());
        extensible_fmt.extend_from_slice(&24u16.to_le_bytes());
        extensible_fmt.extend_from_slice(&4u32.to_le_bytes());
        extensible_fmt.extend_from_slice(&TAG_PCM.to_le_bytes());
        extensible_fmt.extend_from_slice(&[0, 0]);
        extensible_fmt.extend_from_slice(&GUID_TAIL);
        let data = noise_bytes(300_003, 7);
        cases.extend([
            ("empty", Vec::new()),
            ("short", b"RIFF".to_vec()),
            ("text", b"just some text, not audio".to_vec()),
            ("rf64", b"RF64\0\0\0\0WAVE".to_vec()),
            ("truncated", f32_file[..f32_file.len() / 2].to_vec()),
            ("header only", f32_file[..40].to_vec()),
            (
                "odd chunk first, 8-bit mono",
                riff(&[
                    (b"LIST", vec![1, 2, 3]),
                    (b"fmt ", fmt_chunk(TAG_PCM, 1, 22_050, 1, 8)),
                    (b"data", data[..1001].to_vec()),
                ]),
            ),
            (
                "24 bits in 32, extensible",
                riff(&[
                    (b"fmt ", extensible_fmt),
                    (b"data", data[..40_000].to_vec()),
                ]),
            ),
            (
                "f64 stereo, partial last frame",
                riff(&[
                    (b"fmt ", fmt_chunk(TAG_FLOAT, 2, 96_000, 8, 64)),
                    (b"data", data[..16 * 1000 + 5].to_vec()),
                ]),
            ),
            (
                "32-bit int stereo",
                riff(&[
                    (b"fmt ", fmt_chunk(TAG_PCM, 2, 48_000, 4, 32)),
                    (b"data", data.clone()),
                ]),
            ),
            (
                "data before fmt",
                riff(&[
                    (b"data", data[..100].to_vec()),
                    (b"fmt ", fmt_chunk(TAG_PCM, 1, 48_000, 2, 16)),
                ]),
            ),
            (
                "no data",
                riff(&[(b"fmt ", fmt_chunk(TAG_PCM, 1, 48_000, 2, 16))]),
            ),
            (
                "unsupported tag",
                riff(&[
                    (b"fmt ", fmt_chunk(2, 1, 48_000, 2, 16)),
                    (b"data", data[..100].to_vec()),
                ]),
            ),
            (
                "three channels",
                riff(&[
                    (b"fmt ", fmt_chunk(TAG_PCM, 3, 48_000, 2, 16)),
                    (b"data", data[..120].to_vec()),
                ]),
            ),
        ]);
        // A chunk that runs past the end; a streamed data chunk of size 0 and 0xFFFFFFFF.
        let mut past = riff(&[(b"fmt ", fmt_chunk(TAG_PCM, 1, 48_000, 2, 16))]);
        past.extend_from_slice(b"JUNK\xff\xff\0\0abc");
        cases.push(("chunk past the end", past));
        for size in [0u32, 0xFFFF_FFFF] {
            let mut streamed = riff(&[
                (b"fmt ", fmt_chunk(TAG_PCM, 2, 48_000, 3, 24)),
                (b"data", data[..6000].to_vec()),
            ]);
            let at = streamed.len() - 6000 - 4;
            streamed[at..at + 4].copy_from_slice(&size.to_le_bytes());
            cases.push(("streamed data size", streamed));
        }
        for (i, (what, bytes)) in cases.iter().enumerate() {
            let path = dir.path().join(format!("case{i}.wav"));
            fs::write(&path, bytes).unwrap();
            let name = path.display().to_string();
            match (read_wav(&path), decode_wav(&name, bytes)) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a.sample_rate, b.sample_rate, "{what}");
                    assert_eq!(a.format, b.format, "{what}");
                    assert_eq!(a.channels.len(), b.channels.len(), "{what}");
                    for (x, y) in a.channels.iter().zip(&b.channels) {
                        assert!(!x.is_empty(), "{what}");
                        assert_eq!(x.len(), y.len(), "{what}");
                        assert!(
                            x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()),
                            "{what}"
                        );
                    }
                }
                (Err(a), Err(b)) => assert_eq!(a.message, b.message, "{what}"),
                (a, b) => panic!("{what}: read {:?} vs decode {:?}", a.err(), b.err()),
            }
            // The same file read a stretch at a time, as the render reads its stems.
            match (WavStream::open(&path), decode_wav(&name, bytes)) {
                (Ok(Some(s)), Ok(b)) => {
                    assert_eq!(s.sample_rate(), b.sample_rate, "{what}");
                    assert_eq!(s.format(), b.format, "{what}");
                    assert_eq!(s.frames(), b.frames(), "{what}");
                    let want = b.stereo();
                    // Stretches of odd lengths running past the end, then one from the
                    // middle after them (reads need not be in order).
                    let n = s.frames();
                    let mut start = 0;
                    let mut stretches = Vec::new();
                    for len in [1, 777, 4096, 3].into_iter().cycle() {
                        if start > n + 10 {
                            break;
                        }
                        stretches.push((start, len));
                        start += len;
                    }
                    stretches.push((n / 2, n / 3 + 1));
                    for (start, len) in stretches {
                        let mut got = [vec![f32::NAN; len], vec![f32::NAN; len]];
                        let [l, r] = &mut got;
                        s.read(start, [l, r]);
                        for (ch, got) in got.iter().enumerate() {
                            for (k, x) in got.iter().enumerate() {
                                let y = want[ch].get(start + k).copied().unwrap_or(0.0);
                                assert_eq!(x.to_bits(), y.to_bits(), "{what}: {start}+{k}");
                            }
                        }
                    }
                    assert!(s.error().is_none(), "{what}");
                }
                (Err(a), Err(b)) => assert_eq!(a.message, b.message, "{what}"),
                (a, b) => panic!("{what}: stream {:?} vs decode {:?}", a.err(), b.err()),
            }
        }
    }

    #[test]
    fn a_stem_file_cut_short_while_streaming_reads_as_silence_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drums.wav");
        let l: Vec<f32> = (0..10_000).map(|i| ((i as f32) * 0.01).sin()).collect();
        fs::write(&path, encode_wav(&l, &l, 48_000, OutputFormat::Float32)).unwrap();
        let stream = WavStream::open(&path).unwrap().expect("a regular file");
        let mut out = [vec![1.0f32; 100], vec![1.0f32; 100]];
        let [a, b] = &mut out;
        stream.read(0, [a, b]);
        assert_eq!(out[0][..], l[..100]);
        assert!(stream.error().is_none());
        // Another program truncates the file after it was opened.
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(1000)
            .unwrap();
        let [a, b] = &mut out;
        stream.read(5000, [a, b]);
        assert!(
            out.iter().flatten().all(|&x| x == 0.0),
            "silence, not stale data"
        );
        let error = stream.error().expect("the failed read is kept");
        assert!(error.contains("drums.wav"), "{error}");
    }
}
