//! `stembus check FOLDER [--mix mix.wav]`: is this stem delivery usable?
//!
//! Checks, per file: sample rate (all equal), bit depth (16-bit stems are a warning), length
//! (all equal), clipped samples, DC offset, and the stem peak against the usual −12..−6 dBFS
//! delivery guidance (a warning). With the reference mix:
//!
//! - **Alignment**: each stem is located in the mix by cross-correlation (FFT, `realfft`) of the
//!   mono sums `x = L + R` of stem and mix: `r[k] = Σ_n x[n] · y[n + k]` for |k| up to
//!   [`MAX_OFFSET_S`]. At the true offset `r[k] ≈ Σ x²` (the stem is in the mix at unity
//!   gain and the other stems are uncorrelated with it), so `gain = r[k] / Σ x²` says whether
//!   the stem was found at all ([`GAIN_TOLERANCE`]) and `k` how far it is shifted.
//! - **Null test**: the residual `mix − Σ stems` as delivered (no shift), its peak and RMS in
//!   dBFS. It passes when the residual peak is at most [`NULL_THRESHOLD_DBFS`] (−80 dBFS), or,
//!   when a file is stored as integers, at most the quantisation bound
//!   `1.5 · (stems + 1) · 2^−(bits − 1)` of the coarsest file (rounding plus ±1 LSB dither per file),
//!   whichever is higher.
//!
//! Problems (exit status 1): mismatched sample rates, unequal lengths, clipping, DC offset above
//! [`DC_THRESHOLD_DBFS`], a stem shifted against or missing from the mix, a failed null test.
//! Warnings (exit status 0): 16-bit (or lower) stems, peaks outside the guidance, silent stems.

use std::path::Path;

use realfft::RealFftPlanner;
use serde::Serialize;
use stembus_dsp::util::gain_to_db;

use crate::error::{CliError, Result};
use crate::inputs::{Track, collect, load_all};
use crate::measure::round3;
use crate::wav::SampleFormat;

/// Null-test pass threshold for the residual peak, dBFS.
pub const NULL_THRESHOLD_DBFS: f32 = -80.0;

/// A channel mean above this is a DC-offset problem, dBFS.
pub const DC_THRESHOLD_DBFS: f32 = -60.0;

/// Stem peak guidance, dBFS (low, high).
pub const PEAK_GUIDANCE_DBFS: (f32, f32) = (-12.0, -6.0);

/// Largest offset searched by the alignment check, seconds.
pub const MAX_OFFSET_S: f64 = 10.0;

/// A stem whose best-match gain in the mix is within 1 ± this is "found in the mix".
pub const GAIN_TOLERANCE: f64 = 0.2;

/// Below this level a stem counts as silent, dBFS.
const SILENT_DBFS: f32 = -100.0;

/// Findings about one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileCheck {
    /// File path.
    pub file: String,
    /// "stem" or "mix".
    pub role: &'static str,
    /// Sample rate, Hz.
    pub sample_rate: u32,
    /// Encoding, e.g. "24-bit int".
    pub format: String,
    /// Valid bits per sample.
    pub bits: u16,
    /// 1 or 2.
    pub channels: usize,
    /// Length in frames.
    pub frames: usize,
    /// Sample peak, dBFS (`null` for silence).
    pub peak_dbfs: Option<f64>,
    /// Samples at or beyond full scale in runs of two or more (or beyond full scale in a float
    /// file).
    pub clipped_samples: usize,
    /// Mean of each channel, dBFS (`null` for exactly zero).
    pub dc_offset_dbfs: Vec<Option<f64>>,
    /// Time of the first sample above −60 dBFS, seconds (`null` if none).
    pub first_sound_s: Option<f64>,
    /// Offset of the stem against the mix in samples (positive: the stem is late), if found.
    pub offset_samples: Option<i64>,
    /// The stem's gain in the mix at that offset (1 when the stem is in the mix unchanged).
    pub gain_in_mix: Option<f64>,
}

/// The null test.
#[derive(Debug, Clone, Serialize)]
pub struct NullTest {
    /// Peak of `mix − Σ stems`, dBFS (`null`: the residual is exactly zero).
    pub residual_peak_dbfs: Option<f64>,
    /// RMS of the residual, dBFS.
    pub residual_rms_dbfs: Option<f64>,
    /// RMS of the mix, dBFS.
    pub mix_rms_dbfs: Option<f64>,
    /// Pass threshold for the residual peak, dBFS.
    pub threshold_dbfs: f64,
    /// Residual peak at or below the threshold.
    pub pass: bool,
}

/// The whole report (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// Per-file findings (stems, then the mix).
    pub files: Vec<FileCheck>,
    /// Null test, with a mix.
    pub null_test: Option<NullTest>,
    /// Problems found (exit status 1 if any).
    pub problems: Vec<String>,
    /// Warnings.
    pub warnings: Vec<String>,
    /// No problems.
    pub pass: bool,
}

fn db(x: f64) -> Option<f64> {
    (x > 0.0).then(|| round3(gain_to_db(x as f32)))
}

fn file_check(t: &Track, role: &'static str) -> FileCheck {
    let a = &t.audio;
    let full_scale = a.format.full_scale();
    let is_float = matches!(a.format, SampleFormat::Float(_));
    let mut peak = 0.0f32;
    let mut clipped = 0usize;
    let mut dc = Vec::new();
    let mut first_sound: Option<usize> = None;
    let threshold = 0.001f32; // −60 dBFS
    for ch in &a.channels {
        let mut sum = 0.0f64;
        let mut run = 0usize;
        for (n, &x) in ch.iter().enumerate() {
            let m = x.abs();
            peak = peak.max(m);
            sum += f64::from(x);
            if m >= threshold && first_sound.is_none_or(|f| n < f) {
                first_sound = Some(n);
            }
            let at_fs = m >= full_scale;
            if is_float && m > 1.0 {
                clipped += 1;
            } else if at_fs {
                run += 1;
                if run == 2 {
                    clipped += 2;
                } else if run > 2 {
                    clipped += 1;
                }
            }
            if !at_fs {
                run = 0;
            }
        }
        let mean = sum / ch.len().max(1) as f64;
        dc.push(db(mean.abs()));
    }
    FileCheck {
        file: t.path.display().to_string(),
        role,
        sample_rate: a.sample_rate,
        format: a.format.describe(),
        bits: a.format.bits(),
        channels: a.channels.len(),
        frames: a.frames(),
        peak_dbfs: db(f64::from(peak)),
        clipped_samples: clipped,
        dc_offset_dbfs: dc,
        first_sound_s: first_sound.map(|n| round3((n as f64 / f64::from(a.sample_rate)) as f32)),
        offset_samples: None,
        gain_in_mix: None,
    }
}

/// `L + R` (or the mono channel) in f64.
fn mono_sum(t: &Track) -> Vec<f64> {
    let [l, r] = t.audio.stereo();
    l.iter()
        .zip(r)
        .map(|(a, b)| f64::from(*a) + f64::from(*b))
        .collect()
}

/// Locates every stem in the mix; returns (offset in samples, positive = late; gain) per stem,
/// `None` for a silent stem.
///
/// Stem `i` is correlated with `y_i = mix − Σ_{j≠i} (stem j at its current offset)`, computed in
/// the frequency domain: `R_i = conj(X_i) · (Y − Σ_{j≠i} X_j · e^{iω d_j})`, `ω = 2π b / n`.
/// Removing the other stems first matters: correlated stems (a bass and a kick drum at nearby
/// low frequencies) otherwise bend the broad correlation peak of low-frequency material by
/// several samples. Two rounds: offsets 0 for the others, then their estimated offsets.
fn align(stems: &[Track], mix: &Track) -> Vec<Option<(i64, f64)>> {
    let y = mono_sum(mix);
    let longest = stems
        .iter()
        .map(|s| s.audio.frames())
        .chain([y.len()])
        .max()
        .unwrap_or(0);
    let max_lag = ((MAX_OFFSET_S * f64::from(mix.audio.sample_rate)) as usize).min(longest);
    // Circular correlation of length n equals the linear one for |k| ≤ max_lag when
    // n ≥ longest + max_lag.
    let n = (longest + max_lag + 1).next_power_of_two();
    let mut planner = RealFftPlanner::<f64>::new();
    let fwd = planner.plan_fft_forward(n);
    let inv = planner.plan_fft_inverse(n);
    let mut buf = fwd.make_input_vec();
    let mut spectrum = |x: &[f64]| {
        buf.fill(0.0);
        buf[..x.len()].copy_from_slice(x);
        let mut out = fwd.make_output_vec();
        fwd.process(&mut buf, &mut out).ok().map(|()| out)
    };
    let Some(y_spec) = spectrum(&y) else {
        return vec![None; stems.len()];
    };
    let mut energies = Vec::with_capacity(stems.len());
    let mut specs = Vec::with_capacity(stems.len());
    for stem in stems {
        let x = mono_sum(stem);
        energies.push(x.iter().map(|v| v * v).sum::<f64>());
        specs.push(spectrum(&x));
    }
    let bins = y_spec.len();
    let rotation = |b: usize, d: i64| {
        let w = std::f64::consts::TAU * b as f64 / n as f64 * d as f64;
        realfft::num_complex::Complex::new(w.cos(), w.sin())
    };
    let mut offsets = vec![0i64; stems.len()];
    let mut result = vec![None; stems.len()];
    let mut r_spec = inv.make_input_vec();
    let mut r = inv.make_output_vec();
    for _round in 0..2 {
        // Σ_j X_j · e^{iω d_j}: the stems as they sit in the mix.
        let mut placed = vec![realfft::num_complex::Complex::new(0.0, 0.0); bins];
        for (spec, d) in specs.iter().zip(&offsets) {
            if let Some(spec) = spec {
                for (b, (p, x)) in placed.iter_mut().zip(spec).enumerate() {
                    *p += x * rotation(b, *d);
                }
            }
        }
        let mut next = offsets.clone();
        for (i, spec) in specs.iter().enumerate() {
            let Some(spec) = spec else { continue };
            if energies[i] <= 0.0 {
                continue;
            }
            for (b, out) in r_spec.iter_mut().enumerate() {
                let own = spec[b] * rotation(b, offsets[i]);
                let y_i = y_spec[b] - (placed[b] - own);
                *out = spec[b].conj() * y_i;
            }
            r_spec[0].im = 0.0;
            if let Some(last) = r_spec.last_mut() {
                last.im = 0.0;
            }
            if inv.process(&mut r_spec, &mut r).is_err() {
                continue;
            }
            // r[k] (k ≥ 0) at index k, r[−k] at n − k; times n (unnormalised inverse).
            let mut best = (0i64, f64::NEG_INFINITY);
            for k in 0..=max_lag {
                for (lag, idx) in [(k as i64, k), (-(k as i64), (n - k) % n)] {
                    if r[idx] > best.1 {
                        best = (lag, r[idx]);
                    }
                }
            }
            // r peaks where y_i[m + k] matches x[m]: the stem is late by −k samples.
            let offset = -best.0;
            let gain = best.1 / n as f64 / energies[i];
            next[i] = if (gain - 1.0).abs() <= GAIN_TOLERANCE {
                offset
            } else {
                0
            };
            result[i] = Some((offset, gain));
        }
        offsets = next;
    }
    result
}

fn null_test(stems: &[Track], mix: &Track) -> NullTest {
    let frames = stems
        .iter()
        .map(|s| s.audio.frames())
        .chain([mix.audio.frames()])
        .max()
        .unwrap_or(0);
    let (mut peak, mut sum_sq, mut mix_sq) = (0.0f64, 0.0f64, 0.0f64);
    let mix_ch = mix.audio.stereo();
    let stem_ch: Vec<[&[f32]; 2]> = stems.iter().map(|s| s.audio.stereo()).collect();
    for ch in 0..2 {
        for n in 0..frames {
            let m = f64::from(mix_ch[ch].get(n).copied().unwrap_or(0.0));
            let s: f64 = stem_ch
                .iter()
                .map(|c| f64::from(c[ch].get(n).copied().unwrap_or(0.0)))
                .sum();
            let r = m - s;
            peak = peak.max(r.abs());
            sum_sq += r * r;
            mix_sq += m * m;
        }
    }
    let count = (2 * frames).max(1) as f64;
    let coarsest = stems
        .iter()
        .chain([mix])
        .filter_map(|t| match t.audio.format {
            SampleFormat::Int(b) => Some(b),
            SampleFormat::Float(_) => None,
        })
        .min();
    let threshold = coarsest.map_or(NULL_THRESHOLD_DBFS, |bits| {
        let lsb = 1.0 / (1u64 << (bits - 1)) as f32;
        gain_to_db(1.5 * (stems.len() + 1) as f32 * lsb).max(NULL_THRESHOLD_DBFS)
    });
    let peak_db = db(peak);
    NullTest {
        residual_peak_dbfs: peak_db,
        residual_rms_dbfs: db((sum_sq / count).sqrt()),
        mix_rms_dbfs: db((mix_sq / count).sqrt()),
        threshold_dbfs: round3(threshold),
        pass: peak_db.is_none_or(|p| p <= f64::from(threshold)),
    }
}

/// Runs every check on a folder (and the mix).
pub fn check_folder(folder: &Path, mix: Option<&Path>) -> Result<CheckReport> {
    if !folder.is_dir() {
        return Err(CliError::input(if folder.exists() {
            format!("{} is not a folder", folder.display())
        } else {
            format!(
                "cannot read {}: no such file or directory",
                folder.display()
            )
        }));
    }
    let paths = collect(&[folder.to_path_buf()], mix)?;
    let stems = load_all(&paths.stems)?;
    let mix = match &paths.mix {
        Some(p) => Some(load_all(std::slice::from_ref(p))?.remove(0)),
        None => None,
    };
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    if paths.mix_found_in_folder
        && let Some(m) = &mix
    {
        warnings.push(format!("using {} as the reference mix", m.file_name()));
    }
    let mut files: Vec<FileCheck> = stems.iter().map(|s| file_check(s, "stem")).collect();
    if let Some(m) = &mix {
        files.push(file_check(m, "mix"));
    }
    let all: Vec<&Track> = stems.iter().chain(mix.as_ref()).collect();

    // Sample rates, bit depths, lengths.
    let rate = all[0].audio.sample_rate;
    let same_rate = all.iter().all(|t| t.audio.sample_rate == rate);
    if !same_rate {
        let list: Vec<String> = all
            .iter()
            .map(|t| format!("{} {} Hz", t.file_name(), t.audio.sample_rate))
            .collect();
        problems.push(format!("sample rates differ: {}", list.join(", ")));
    }
    for t in &stems {
        if let SampleFormat::Int(b) = t.audio.format
            && b <= 16
        {
            warnings.push(format!(
                "{} is {b}-bit: deliver stems as 24-bit or 32-bit float",
                t.file_name()
            ));
        }
    }
    let len0 = all[0].audio.frames();
    if all.iter().any(|t| t.audio.frames() != len0) {
        let list: Vec<String> = all
            .iter()
            .map(|t| format!("{} {}", t.file_name(), t.audio.frames()))
            .collect();
        problems.push(format!("lengths differ (samples): {}", list.join(", ")));
    }

    // Per-file level checks.
    for (t, f) in all.iter().zip(&files) {
        let name = t.file_name();
        if f.clipped_samples > 0 {
            problems.push(format!("{name}: {} clipped samples", f.clipped_samples));
        }
        for (c, dc) in f.dc_offset_dbfs.iter().enumerate() {
            if let Some(dc) = dc
                && *dc > f64::from(DC_THRESHOLD_DBFS)
            {
                problems.push(format!(
                    "{name}: DC offset {dc:.1} dBFS on channel {} (limit {DC_THRESHOLD_DBFS} dBFS)",
                    c + 1
                ));
            }
        }
        if f.role == "stem" {
            match f.peak_dbfs {
                None => warnings.push(format!("{name} is silent")),
                Some(p) if p < f64::from(SILENT_DBFS) => {
                    warnings.push(format!("{name} is silent (peak {p:.1} dBFS)"));
                }
                Some(p) if p > f64::from(PEAK_GUIDANCE_DBFS.1) => warnings.push(format!(
                    "{name}: peak {p:.1} dBFS is above the {}..{} dBFS guidance (little headroom)",
                    PEAK_GUIDANCE_DBFS.0, PEAK_GUIDANCE_DBFS.1
                )),
                Some(p) if p < f64::from(PEAK_GUIDANCE_DBFS.0) => warnings.push(format!(
                    "{name}: peak {p:.1} dBFS is below the {}..{} dBFS guidance",
                    PEAK_GUIDANCE_DBFS.0, PEAK_GUIDANCE_DBFS.1
                )),
                Some(_) => {}
            }
        }
    }

    // Alignment and null test against the mix.
    let null = match &mix {
        Some(m) if same_rate => {
            for ((stem, f), found) in stems.iter().zip(files.iter_mut()).zip(align(&stems, m)) {
                let name = stem.file_name();
                let Some((offset, gain)) = found else {
                    continue;
                };
                f.gain_in_mix = Some(round3(gain as f32));
                if (gain - 1.0).abs() <= GAIN_TOLERANCE {
                    f.offset_samples = Some(offset);
                    if offset != 0 {
                        let ms = offset as f64 * 1000.0 / f64::from(rate);
                        problems.push(format!(
                            "{name} is {} by {} sample{} ({:.2} ms) against the mix",
                            if offset > 0 { "late" } else { "early" },
                            offset.abs(),
                            if offset.abs() == 1 { "" } else { "s" },
                            ms.abs()
                        ));
                    }
                } else {
                    problems.push(format!(
                        "{name} is not in the mix at unity gain (best match: gain {gain:.2} at \
                         offset {offset} samples)"
                    ));
                }
            }
            let null = null_test(&stems, m);
            if !null.pass {
                problems.push(format!(
                    "null test failed: residual of mix - stem sum peaks at {} dBFS (threshold \
                     {:.1} dBFS)",
                    null.residual_peak_dbfs
                        .map_or("-∞".into(), |p| format!("{p:.1}")),
                    null.threshold_dbfs
                ));
            }
            Some(null)
        }
        _ => None,
    };
    let pass = problems.is_empty();
    Ok(CheckReport {
        files,
        null_test: null,
        problems,
        warnings,
        pass,
    })
}

/// Human-readable report.
pub fn text_report(r: &CheckReport) -> String {
    let o = |x: Option<f64>| x.map_or("—".to_string(), |v| format!("{v:.1}"));
    let mut s = format!(
        "{:<24} {:>5} {:>8} {:>12} {:>3} {:>10} {:>8} {:>7} {:>9} {:>7}\n",
        "file", "role", "rate", "format", "ch", "length", "peak", "clipped", "offset", "gain"
    );
    for f in &r.files {
        let name = Path::new(&f.file)
            .file_name()
            .map_or(f.file.clone(), |n| n.to_string_lossy().into_owned());
        s.push_str(&format!(
            "{:<24} {:>5} {:>8} {:>12} {:>3} {:>10} {:>8} {:>7} {:>9} {:>7}\n",
            name,
            f.role,
            f.sample_rate,
            f.format,
            f.channels,
            f.frames,
            o(f.peak_dbfs),
            f.clipped_samples,
            f.offset_samples.map_or("—".into(), |v| v.to_string()),
            f.gain_in_mix.map_or("—".into(), |g| format!("{g:.2}")),
        ));
    }
    if let Some(n) = &r.null_test {
        let residual = match (n.residual_peak_dbfs, n.residual_rms_dbfs) {
            (Some(p), Some(r)) => format!("residual peak {p:.1} dBFS, RMS {r:.1} dBFS"),
            _ => "exact null (the residual is zero)".to_string(),
        };
        s.push_str(&format!(
            "null test: {residual} (mix RMS {} dBFS), threshold {:.1} dBFS: {}\n",
            o(n.mix_rms_dbfs),
            n.threshold_dbfs,
            if n.pass { "pass" } else { "FAIL" }
        ));
    } else {
        s.push_str("null test: no reference mix (use --mix)\n");
    }
    for w in &r.warnings {
        s.push_str(&format!("warning: {w}\n"));
    }
    for p in &r.problems {
        s.push_str(&format!("problem: {p}\n"));
    }
    s.push_str(if r.pass { "PASS\n" } else { "PROBLEMS FOUND\n" });
    s
}
