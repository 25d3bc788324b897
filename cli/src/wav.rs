//! WAV files in and out.
//!
//! Reading parses the RIFF chunks directly and decodes the whole `data` chunk in one pass (the
//! offline tool reads up to eight one-minute stems per run; a per-sample reader would take longer
//! than the render). Accepted: PCM 8/16/24/32-bit integer and IEEE float 32/64-bit, plain or
//! `WAVE_FORMAT_EXTENSIBLE`, mono or stereo. Everything is converted to `f32` in −1..1
//! (integer full scale is 2^(bits−1)).
//!
//! Writing encodes 16-bit PCM with TPDF dither, 24-bit PCM (`WAVE_FORMAT_EXTENSIBLE`) or 32-bit
//! float, into a temporary file in the destination folder that is renamed over the destination
//! only when complete, so a failed run never leaves a half-written file.

use std::fs;
use std::io::Write;
use std::path::Path;

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
pub fn read_wav(path: &Path) -> Result<Audio> {
    let name = path.display().to_string();
    if path.is_dir() {
        return Err(CliError::input(format!(
            "{name}: is a directory, not a WAV file"
        )));
    }
    let bytes = fs::read(path)
        .map_err(|e| CliError::input(format!("cannot read {name}: {}", io_reason(&e))))?;
    decode_wav(&name, &bytes)
}

/// Decodes a WAV file held in memory; `name` is used in error messages.
pub fn decode_wav(name: &str, bytes: &[u8]) -> Result<Audio> {
    if bytes.is_empty() {
        return Err(CliError::input(format!(
            "{name}: empty file, not a WAV file"
        )));
    }
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        let what = if bytes.len() >= 4 && &bytes[0..4] == b"RF64" {
            "RF64 (64-bit WAV) is not supported"
        } else {
            "not a WAV file (no RIFF/WAVE header)"
        };
        return Err(CliError::input(format!("{name}: {what}")));
    }
    let mut pos = 12;
    let mut fmt: Option<Fmt> = None;
    loop {
        if pos + 8 > bytes.len() {
            return Err(CliError::input(format!(
                "{name}: malformed or truncated WAV: no data chunk"
            )));
        }
        let id = &bytes[pos..pos + 4];
        let size = u32_at(bytes, pos + 4) as usize;
        let body = pos + 8;
        let available = bytes.len() - body;
        if id == b"data" {
            let Some(fmt) = fmt else {
                return Err(CliError::input(format!(
                    "{name}: malformed WAV: data chunk before fmt chunk"
                )));
            };
            // Streaming writers leave 0 or 0xFFFFFFFF when they could not seek back.
            let len = if size == 0xFFFF_FFFF || (size == 0 && available > 0) {
                available
            } else if size > available {
                return Err(CliError::input(format!(
                    "{name}: truncated WAV: the data chunk declares {size} bytes but the file \
                     holds {available}"
                )));
            } else {
                size
            };
            return Ok(decode_data(&fmt, &bytes[body..body + len]));
        }
        if size > available {
            return Err(CliError::input(format!(
                "{name}: malformed or truncated WAV: the '{}' chunk runs past the end of the file",
                String::from_utf8_lossy(id)
            )));
        }
        if id == b"fmt " {
            fmt = Some(parse_fmt(name, &bytes[body..body + size])?);
        }
        pos = body + size + (size & 1);
    }
}

/// Converts the interleaved `data` bytes to per-channel `f32`.
fn decode_data(fmt: &Fmt, data: &[u8]) -> Audio {
    let ch = fmt.channels as usize;
    let cb = fmt.container_bytes;
    let frame_bytes = cb * ch;
    let frames = data.len() / frame_bytes;
    let data = &data[..frames * frame_bytes];
    // One monomorphised loop per container, so the per-sample work is a load and a convert.
    let channels = match (fmt.format, cb) {
        (SampleFormat::Float(32), 4) => deinterleave::<4>(data, ch, frames, |s| {
            f32::from_le_bytes([s[0], s[1], s[2], s[3]])
        }),
        (SampleFormat::Int(_), 2) => deinterleave::<2>(data, ch, frames, |s| {
            f32::from(i16::from_le_bytes([s[0], s[1]])) / 32_768.0
        }),
        (SampleFormat::Int(_), 3) => deinterleave::<3>(data, ch, frames, |s| {
            (i32::from_le_bytes([0, s[0], s[1], s[2]]) >> 8) as f32 / 8_388_608.0
        }),
        (format, _) => {
            let mut channels: Vec<Vec<f32>> = (0..ch).map(|_| Vec::with_capacity(frames)).collect();
            for frame in data.chunks_exact(frame_bytes) {
                for (c, s) in frame.chunks_exact(cb).enumerate() {
                    channels[c].push(decode_sample(format, s));
                }
            }
            channels
        }
    };
    Audio {
        sample_rate: fmt.sample_rate,
        format: fmt.format,
        channels,
    }
}

/// Splits interleaved `B`-byte samples into `ch` channels with `convert`.
fn deinterleave<const B: usize>(
    data: &[u8],
    ch: usize,
    frames: usize,
    convert: impl Fn(&[u8; B]) -> f32,
) -> Vec<Vec<f32>> {
    let mut channels: Vec<Vec<f32>> = (0..ch).map(|_| vec![0.0f32; frames]).collect();
    for (c, out) in channels.iter_mut().enumerate() {
        for (o, frame) in out.iter_mut().zip(data.chunks_exact(B * ch)) {
            let s: &[u8; B] = frame[c * B..(c + 1) * B].try_into().expect("B bytes");
            *o = convert(s);
        }
    }
    channels
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
    let bytes = encode_wav(left, right, 48_000, format);
    let audio = decode_wav("", &bytes).expect("own encoding decodes");
    let mut ch = audio.channels.into_iter();
    let l = ch.next().unwrap_or_default();
    let r = ch.next().unwrap_or_else(|| l.clone());
    [l, r]
}

/// Encodes a stereo WAV file in memory.
pub fn encode_wav(left: &[f32], right: &[f32], sample_rate: u32, format: OutputFormat) -> Vec<u8> {
    let frames = left.len().min(right.len());
    let bytes_per_sample = usize::from(format.bits() / 8);
    let data_len = frames * 2 * bytes_per_sample;
    let mut out = Vec::with_capacity(data_len + 80);
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
    match format {
        OutputFormat::Float32 => {
            for (l, r) in left[..frames].iter().zip(&right[..frames]) {
                out.extend_from_slice(&l.to_le_bytes());
                out.extend_from_slice(&r.to_le_bytes());
            }
        }
        OutputFormat::Pcm24 => {
            const SCALE: f32 = 8_388_608.0;
            let q = |x: f32| -> [u8; 3] {
                let v = (x * SCALE).round().clamp(-SCALE, SCALE - 1.0) as i32;
                let b = v.to_le_bytes();
                [b[0], b[1], b[2]]
            };
            for (l, r) in left[..frames].iter().zip(&right[..frames]) {
                out.extend_from_slice(&q(*l));
                out.extend_from_slice(&q(*r));
            }
        }
        OutputFormat::Pcm16 => {
            const SCALE: f32 = 32_768.0;
            let mut rng = Xorshift(0x5EED_D17E);
            let mut q = |x: f32| -> [u8; 2] {
                // TPDF: the difference of two uniform variables, ±1 LSB peak.
                let d = rng.next_unit() - rng.next_unit();
                let v = (x * SCALE + d).round().clamp(-SCALE, SCALE - 1.0) as i16;
                v.to_le_bytes()
            };
            for (l, r) in left[..frames].iter().zip(&right[..frames]) {
                out.extend_from_slice(&q(*l));
                out.extend_from_slice(&q(*r));
            }
        }
    }
    out
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

/// Writes `bytes` to `path` through a temporary file in the same folder, renamed over `path`
/// only once everything is written and flushed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.display();
    let fail =
        |e: std::io::Error| CliError::input(format!("cannot write {name}: {}", io_reason(&e)));
    let mut tmp = tempfile::Builder::new()
        .prefix(".stembus-")
        .suffix(".tmp")
        .tempfile_in(parent_dir(path))
        .map_err(fail)?;
    tmp.write_all(bytes).map_err(fail)?;
    set_readable(tmp.path());
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
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
}
