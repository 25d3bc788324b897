//! Finding and loading the input files: stems given one by one or as a folder, and the
//! reference mix.
//!
//! In a folder every `.wav` file is a stem, in name order, except the reference mix: the file
//! given with `--mix`, or else a file named `mix.wav` (any case), which is taken as the mix.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use stembus_dsp::MAX_STEMS;

use crate::error::{CliError, Result};
use crate::render::SlotAudio;
use crate::wav::{Audio, WavStream, read_wav};

/// One loaded input file.
#[derive(Debug, Clone)]
pub struct Track {
    /// Display name: the file name without extension (used to recognise stems, e.g. "bass").
    pub name: String,
    /// Where it came from.
    pub path: PathBuf,
    /// The decoded audio.
    pub audio: Audio,
}

impl Track {
    /// File name for messages.
    pub fn file_name(&self) -> String {
        file_name(&self.path)
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |f| f.to_string_lossy().into(),
    )
}

fn stem_name(path: &Path) -> String {
    path.file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
}

/// The stem and mix paths of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputPaths {
    /// Stem files, in order (stem 1 first).
    pub stems: Vec<PathBuf>,
    /// Reference mix, if any.
    pub mix: Option<PathBuf>,
    /// The mix was found by its name in a folder rather than given with `--mix`.
    pub mix_found_in_folder: bool,
}

fn is_wav(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("wav") || e.eq_ignore_ascii_case("wave"))
}

fn is_named_mix(path: &Path) -> bool {
    path.file_stem()
        .is_some_and(|s| s.eq_ignore_ascii_case("mix"))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Expands the command-line inputs (files and folders) into stem and mix paths. Checks that
/// everything exists and that there are 1..=8 stems.
pub fn collect(inputs: &[PathBuf], mix: Option<&Path>) -> Result<InputPaths> {
    if inputs.is_empty() {
        return Err(CliError::input(
            "no stems given: pass stem WAV files or a folder of them",
        ));
    }
    if let Some(m) = mix
        && !m.exists()
    {
        return Err(CliError::input(format!(
            "cannot read {}: no such file or directory",
            m.display()
        )));
    }
    let mut stems = Vec::new();
    let mut found_mix: Option<PathBuf> = None;
    for input in inputs {
        if input.is_dir() {
            let entries = std::fs::read_dir(input).map_err(|e| {
                CliError::input(format!(
                    "cannot read folder {}: {}",
                    input.display(),
                    crate::error::io_reason(&e)
                ))
            })?;
            let files: BTreeSet<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_wav(p))
                .collect();
            let before = stems.len();
            for f in files {
                if mix.is_some_and(|m| same_file(m, &f)) {
                    continue;
                }
                if mix.is_none() && is_named_mix(&f) && found_mix.is_none() {
                    found_mix = Some(f);
                    continue;
                }
                stems.push(f);
            }
            if stems.len() == before {
                return Err(CliError::input(format!(
                    "no stems found: folder {} holds no .wav stem files",
                    input.display()
                )));
            }
        } else if input.exists() {
            stems.push(input.clone());
        } else {
            return Err(CliError::input(format!(
                "cannot read {}: no such file or directory",
                input.display()
            )));
        }
    }
    if stems.len() > MAX_STEMS {
        return Err(CliError::input(format!(
            "{} stems given; at most {MAX_STEMS} are supported",
            stems.len()
        )));
    }
    let mix_found_in_folder = found_mix.is_some();
    Ok(InputPaths {
        stems,
        mix: mix.map(Path::to_path_buf).or(found_mix),
        mix_found_in_folder,
    })
}

/// Loads one file as a [`Track`].
pub fn load(path: &Path) -> Result<Track> {
    let audio = read_wav(path)?;
    Ok(Track {
        name: stem_name(path),
        path: path.to_path_buf(),
        audio,
    })
}

/// Loads several files, one thread per core (at most four): each thread takes the next file
/// not taken yet, so the threads stay busy whatever the files' lengths.
pub fn load_all(paths: &[PathBuf]) -> Result<Vec<Track>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 4)
        .min(paths.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<Track>>>> =
        paths.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(p) = paths.get(i) else { break };
                    let loaded = load(p);
                    if let Ok(mut slot) = results[i].lock() {
                        *slot = Some(loaded);
                    }
                }
            });
        }
    });
    results
        .into_iter()
        .map(|r| {
            r.into_inner()
                .ok()
                .flatten()
                .unwrap_or_else(|| Err(CliError::input("internal error: file not loaded")))
        })
        .collect()
}

/// Checks that every file (name, sample rate) has the sample rate of the first; the error
/// names both files.
pub fn check_same_rate(files: &[(String, u32)]) -> Result<u32> {
    let Some((first, rate)) = files.first() else {
        return Err(CliError::input("no input files"));
    };
    for (name, r) in &files[1..] {
        if r != rate {
            return Err(CliError::input(format!(
                "sample rates differ: {first} is {rate} Hz but {name} is {r} Hz"
            )));
        }
    }
    Ok(*rate)
}

/// A stem as `stembus render` takes it: its file opened and its header checked, the audio
/// read as the engine needs it (decoded whole only when the file is not a regular file).
#[derive(Debug)]
pub struct StemInput {
    /// Display name: the file name without extension (used to recognise stems, e.g. "bass").
    pub name: String,
    /// Where it came from.
    pub path: PathBuf,
    /// Sample rate, Hz.
    pub sample_rate: u32,
    /// The audio.
    pub audio: SlotAudio,
}

impl StemInput {
    /// File name for messages.
    pub fn file_name(&self) -> String {
        file_name(&self.path)
    }

    /// Frames of audio.
    pub fn frames(&self) -> usize {
        self.audio.frames()
    }
}

/// Opens every stem file and checks its header (the samples are read later, as the engine
/// goes); the first bad file is the error.
pub fn open_stems(paths: &[PathBuf]) -> Result<Vec<StemInput>> {
    paths
        .iter()
        .map(|path| {
            let (sample_rate, audio) = match WavStream::open(path)? {
                Some(stream) => (stream.sample_rate(), SlotAudio::File(stream)),
                None => {
                    let audio = read_wav(path)?;
                    (audio.sample_rate, SlotAudio::Memory(audio.channels))
                }
            };
            Ok(StemInput {
                name: stem_name(path),
                path: path.clone(),
                sample_rate,
                audio,
            })
        })
        .collect()
}
