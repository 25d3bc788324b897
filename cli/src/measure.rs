//! Whole-file measurements with the plugin's own meters ([`stembus_dsp::meters::MeterSet`]):
//! BS.1770-4 integrated / momentary / short-term loudness with EBU Tech 3341 gating, EBU Tech
//! 3342 loudness range and BS.1770-4 Annex 2 true peak. The file is fed through one `MeterSet`
//! in blocks of 0.1 s, and the meter is read after each block, which gives the 10 Hz series.
//!
//! Sample peak and the stereo correlation are computed over the whole file here:
//! `correlation = Σ l·r / √(Σ l² · Σ r²)` (the correlation meter's formula, with the whole file
//! as its window).
//!
//! Anything that does not exist for the signal (the loudness of silence, the correlation of a
//! mono or silent file) is `None`, never a made-up number.

use serde::Serialize;
use stembus_dsp::meters::{MeterSet, PublishedMeters};
use stembus_dsp::util::gain_to_db;

/// Series rate in Hz.
pub const SERIES_RATE_HZ: u32 = 10;

/// One point of the loudness series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// Time at the end of the block, seconds.
    pub t: f64,
    /// Momentary loudness (400 ms window ending at `t`), LUFS; `None` for silence.
    pub momentary_lufs: Option<f64>,
    /// Short-term loudness (3 s window ending at `t`), LUFS; `None` for silence.
    pub short_term_lufs: Option<f64>,
}

/// Everything measured on one stereo (or mono) signal.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Measurement {
    /// Integrated (gated) loudness, LUFS.
    pub integrated_lufs: Option<f32>,
    /// Loudness range, LU.
    pub lra_lu: Option<f32>,
    /// Largest sample magnitude of either channel, dBFS.
    pub sample_peak_dbfs: Option<f32>,
    /// Largest true peak of either channel, dBTP.
    pub true_peak_dbtp: Option<f32>,
    /// Largest momentary loudness, LUFS.
    pub max_momentary_lufs: Option<f32>,
    /// Largest short-term loudness, LUFS.
    pub max_short_term_lufs: Option<f32>,
    /// Peak-to-loudness ratio, true peak − integrated, dB.
    pub plr_db: Option<f32>,
    /// Whole-file stereo correlation, −1..+1 (`None` for mono or silence).
    pub correlation: Option<f32>,
    /// Momentary and short-term loudness at [`SERIES_RATE_HZ`].
    pub series: Vec<SeriesPoint>,
}

/// A meter value, or `None` where the meter has none (it reports "no value", e.g. the loudness
/// of silence, as −∞).
pub fn level(x: f32) -> Option<f32> {
    x.is_finite().then_some(x)
}

/// Rounds to 0.001 for printing (f32 noise digits are not information).
pub fn round3(x: f32) -> f64 {
    (f64::from(x) * 1000.0).round() / 1000.0
}

/// Measures `left`/`right` at `sample_rate`. For a mono signal pass `right = None`: it is
/// measured as one channel (BS.1770 mono), not as dual mono.
pub fn measure(left: &[f32], right: Option<&[f32]>, sample_rate: u32) -> Measurement {
    let frames = right.map_or(left.len(), |r| r.len().min(left.len()));
    let mut meters = MeterSet::new(sample_rate as f32);
    let published = PublishedMeters::default();
    let block_max = (sample_rate / SERIES_RATE_HZ + 1) as usize;
    let zeros = vec![0.0f32; block_max];
    let mut series =
        Vec::with_capacity(frames * SERIES_RATE_HZ as usize / sample_rate as usize + 1);
    // An empty signal reads as the fresh meter (no values), not as zeros.
    meters.publish(&published);
    let mut last = published.read();
    let mut start = 0usize;
    let mut k = 1u64;
    while start < frames {
        let nominal_end = ((k * u64::from(sample_rate)) / u64::from(SERIES_RATE_HZ)) as usize;
        let end = nominal_end.min(frames);
        let l = &left[start..end];
        let r = right.map_or(&zeros[..end - start], |r| &r[start..end]);
        meters.process(l, r);
        meters.publish(&published);
        let reading = published.read();
        // A partial last block is metered but gives no series point.
        if end == nominal_end {
            series.push(SeriesPoint {
                t: k as f64 / f64::from(SERIES_RATE_HZ),
                momentary_lufs: level(reading.momentary_lufs).map(round3),
                short_term_lufs: level(reading.short_term_lufs).map(round3),
            });
        }
        last = reading;
        start = end;
        k += 1;
    }
    let sample_peak = left[..frames]
        .iter()
        .chain(right.map_or(&[][..], |r| &r[..frames]))
        .fold(0.0f32, |m, x| m.max(x.abs()));
    let integrated = level(last.integrated_lufs);
    let true_peak = if sample_peak > 0.0 {
        level(last.true_peak_max_dbtp)
    } else {
        None
    };
    Measurement {
        integrated_lufs: integrated,
        lra_lu: integrated.and(level(last.lra_lu)),
        sample_peak_dbfs: (sample_peak > 0.0).then(|| gain_to_db(sample_peak)),
        true_peak_dbtp: true_peak,
        max_momentary_lufs: level(last.max_momentary_lufs),
        max_short_term_lufs: level(last.max_short_term_lufs),
        plr_db: match (true_peak, integrated) {
            (Some(tp), Some(i)) => Some(tp - i),
            _ => None,
        },
        correlation: right.and_then(|r| correlation(&left[..frames], &r[..frames])),
        series,
    }
}

/// Whole-signal correlation `Σ l·r / √(Σ l² · Σ r²)`, `None` if either channel is silent.
pub fn correlation(left: &[f32], right: &[f32]) -> Option<f32> {
    let (mut lr, mut ll, mut rr) = (0.0f64, 0.0f64, 0.0f64);
    for (&l, &r) in left.iter().zip(right) {
        let (l, r) = (f64::from(l), f64::from(r));
        lr += l * r;
        ll += l * l;
        rr += r * r;
    }
    (ll > 0.0 && rr > 0.0).then(|| (lr / (ll * rr).sqrt()).clamp(-1.0, 1.0) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_none() {
        let z = vec![0.0f32; 48_000];
        let m = measure(&z, Some(&z), 48_000);
        assert_eq!(m.integrated_lufs, None);
        assert_eq!(m.true_peak_dbtp, None);
        assert_eq!(m.sample_peak_dbfs, None);
        assert_eq!(m.correlation, None);
        assert_eq!(m.plr_db, None);
        assert_eq!(m.series.len(), 10);
        assert!(m.series.iter().all(|p| p.momentary_lufs.is_none()));
    }

    #[test]
    fn correlation_of_simple_signals() {
        let x: Vec<f32> = (0..1000).map(|n| (n as f32 * 0.1).sin()).collect();
        let neg: Vec<f32> = x.iter().map(|v| -v).collect();
        assert!((correlation(&x, &x).unwrap() - 1.0).abs() < 1e-6);
        assert!((correlation(&x, &neg).unwrap() + 1.0).abs() < 1e-6);
    }

    #[test]
    fn empty_signal_has_no_values() {
        let m = measure(&[], Some(&[]), 48_000);
        assert_eq!(m.integrated_lufs, None);
        assert_eq!(m.max_momentary_lufs, None);
        assert!(m.series.is_empty());
    }

    #[test]
    fn series_has_ten_points_per_second() {
        let x = vec![0.1f32; 44_100 * 2 + 100];
        let m = measure(&x, None, 44_100);
        assert_eq!(m.series.len(), 20);
        assert!((m.series[19].t - 2.0).abs() < 1e-9);
    }
}
