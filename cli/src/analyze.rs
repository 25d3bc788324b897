//! `stembus analyze FILE...`: loudness and peak figures of finished files.

use std::path::Path;

use serde::Serialize;

use crate::error::Result;
use crate::inputs::load;
use crate::measure::{Measurement, SeriesPoint, measure, round3};

/// The JSON object printed per file (field names are part of the interface).
#[derive(Debug, Clone, Serialize)]
pub struct FileAnalysis {
    /// The path as given.
    pub file: String,
    /// Sample rate, Hz.
    pub sample_rate: u32,
    /// 1 or 2.
    pub channels: usize,
    /// Length, seconds.
    pub duration_s: f64,
    /// Integrated loudness, LUFS.
    pub integrated_lufs: Option<f64>,
    /// Loudness range, LU.
    pub lra_lu: Option<f64>,
    /// Sample peak, dBFS.
    pub sample_peak_dbfs: Option<f64>,
    /// True peak, dBTP.
    pub true_peak_dbtp: Option<f64>,
    /// Largest momentary loudness, LUFS.
    pub max_momentary_lufs: Option<f64>,
    /// Largest short-term loudness, LUFS.
    pub max_short_term_lufs: Option<f64>,
    /// Peak-to-loudness ratio, dB.
    pub plr_db: Option<f64>,
    /// Whole-file stereo correlation (`null` for mono).
    pub correlation: Option<f64>,
    /// Momentary and short-term loudness at 10 Hz.
    pub series: Vec<SeriesPoint>,
}

impl FileAnalysis {
    /// Builds the record from a measurement.
    pub fn new(
        file: String,
        sample_rate: u32,
        channels: usize,
        duration_s: f64,
        m: Measurement,
    ) -> Self {
        let r = |x: Option<f32>| x.map(round3);
        Self {
            file,
            sample_rate,
            channels,
            duration_s: (duration_s * 1e6).round() / 1e6,
            integrated_lufs: r(m.integrated_lufs),
            lra_lu: r(m.lra_lu),
            sample_peak_dbfs: r(m.sample_peak_dbfs),
            true_peak_dbtp: r(m.true_peak_dbtp),
            max_momentary_lufs: r(m.max_momentary_lufs),
            max_short_term_lufs: r(m.max_short_term_lufs),
            plr_db: r(m.plr_db),
            correlation: r(m.correlation),
            series: m.series,
        }
    }
}

/// Analyses one file.
pub fn analyze_file(path: &Path) -> Result<FileAnalysis> {
    let track = load(path)?;
    let a = &track.audio;
    let right = a.channels.get(1).map(Vec::as_slice);
    let m = measure(&a.channels[0], right, a.sample_rate);
    Ok(FileAnalysis::new(
        path.display().to_string(),
        a.sample_rate,
        a.channels.len(),
        a.duration_s(),
        m,
    ))
}

/// Formats a value, or "—" when there is none.
pub fn fmt_opt(x: Option<f64>) -> String {
    x.map_or("—".to_string(), |v| format!("{v:.1}"))
}

/// Human-readable report of one file.
pub fn text_report(a: &FileAnalysis) -> String {
    let rows = [
        ("integrated", fmt_opt(a.integrated_lufs), "LUFS"),
        ("loudness range", fmt_opt(a.lra_lu), "LU"),
        ("sample peak", fmt_opt(a.sample_peak_dbfs), "dBFS"),
        ("true peak", fmt_opt(a.true_peak_dbtp), "dBTP"),
        ("max momentary", fmt_opt(a.max_momentary_lufs), "LUFS"),
        ("max short-term", fmt_opt(a.max_short_term_lufs), "LUFS"),
        ("PLR", fmt_opt(a.plr_db), "dB"),
        (
            "correlation",
            a.correlation.map_or("—".into(), |c| format!("{c:+.2}")),
            "",
        ),
    ];
    let mut s = format!(
        "{}: {} Hz, {}, {:.2} s\n",
        a.file,
        a.sample_rate,
        if a.channels == 1 { "mono" } else { "stereo" },
        a.duration_s
    );
    for (k, v, unit) in rows {
        s.push_str(&format!("  {k:<16}{v:>7} {unit}\n"));
    }
    s
}
