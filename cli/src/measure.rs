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
use stembus_dsp::meters::{MeterReading, MeterSet, PublishedMeters};
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
    let mut m = Measurer::new(sample_rate, right.is_some(), frames);
    m.push(&left[..frames], right.map(|r| &r[..frames]));
    m.finish()
}

/// [`measure`] fed block by block: the same meter, fed in the same 0.1 s blocks, so the
/// result is the same to the bit however the signal is cut into [`Measurer::push`] calls.
/// The sample peak and the correlation sums are taken block by block too, in signal order,
/// while the block is still in the cache.
pub struct Measurer {
    /// The plugin's meters.
    meters: MeterSet,
    /// Where the meters publish after every block, read back for the series.
    published: PublishedMeters,
    /// Hz.
    sample_rate: u32,
    /// Two channels (else the right channel is silence and no correlation is given).
    stereo: bool,
    /// Index of the block being filled (block `k` ends at frame `k · sample_rate / 10`), ≥ 1.
    k: u64,
    /// Frames metered so far (in whole blocks).
    metered: usize,
    /// Frames of the current block received but not metered yet (left, right).
    pending: [Vec<f32>; 2],
    /// Silence for the right channel of a mono signal, one block long.
    zeros: Vec<f32>,
    /// The series so far.
    series: Vec<SeriesPoint>,
    /// The reading after the last metered block.
    last: MeterReading,
    /// Largest `|x|` of both channels so far (NaN ignored).
    sample_peak: f32,
    /// `Σ l·r`, `Σ l²`, `Σ r²` so far, in signal order.
    sums: [f64; 3],
}

impl Measurer {
    /// A measurement of a signal at `sample_rate` (Hz); `frames` is its expected length (for
    /// the series' capacity only).
    pub fn new(sample_rate: u32, stereo: bool, frames: usize) -> Self {
        let mut meters = MeterSet::new(sample_rate as f32);
        let published = PublishedMeters::default();
        // An empty signal reads as the fresh meter (no values), not as zeros.
        meters.publish(&published);
        let last = published.read();
        let block_max = (sample_rate / SERIES_RATE_HZ + 1) as usize;
        Self {
            meters,
            published,
            sample_rate,
            stereo,
            k: 1,
            metered: 0,
            pending: [Vec::with_capacity(block_max), Vec::with_capacity(block_max)],
            zeros: vec![0.0; block_max],
            series: Vec::with_capacity(
                frames * SERIES_RATE_HZ as usize / sample_rate.max(1) as usize + 1,
            ),
            last,
            sample_peak: 0.0,
            sums: [0.0; 3],
        }
    }

    /// End of block `k`, frames.
    fn block_end(&self) -> usize {
        ((self.k * u64::from(self.sample_rate)) / u64::from(SERIES_RATE_HZ)) as usize
    }

    /// Feeds the next frames: `left` and `right` of equal length (`right = None` for mono).
    pub fn push(&mut self, mut left: &[f32], mut right: Option<&[f32]>) {
        if let Some(r) = right {
            debug_assert_eq!(r.len(), left.len());
            let n = r.len().min(left.len());
            left = &left[..n];
            right = Some(&r[..n]);
        }
        while !left.is_empty() {
            let need = self.block_end() - self.metered - self.pending[0].len();
            let n = need.min(left.len());
            let (l, r) = (&left[..n], right.map(|r| &r[..n]));
            if self.pending[0].is_empty() && n == need {
                // A whole block in place.
                self.meter_block(l, r, true);
            } else {
                self.pending[0].extend_from_slice(l);
                if let Some(r) = r {
                    self.pending[1].extend_from_slice(r);
                }
                if n == need {
                    self.meter_pending(true);
                }
            }
            left = &left[n..];
            right = right.map(|r| &r[n..]);
        }
    }

    /// Meters the frames received for the current block (a whole block, or with `whole =
    /// false` the partial last one).
    fn meter_pending(&mut self, whole: bool) {
        let [l, r] = std::mem::take(&mut self.pending);
        self.meter_block(&l, self.stereo.then_some(&r[..]), whole);
        self.pending = [l, r];
        self.pending[0].clear();
        self.pending[1].clear();
    }

    /// Meters one block; a whole block ends with a series point.
    fn meter_block(&mut self, l: &[f32], r: Option<&[f32]>, whole: bool) {
        let r = r.unwrap_or(&self.zeros[..l.len()]);
        self.meters.process(l, r);
        self.meters.publish(&self.published);
        let reading = self.published.read();
        // A partial last block is metered but gives no series point.
        if whole {
            self.series.push(SeriesPoint {
                t: self.k as f64 / f64::from(SERIES_RATE_HZ),
                momentary_lufs: level(reading.momentary_lufs).map(round3),
                short_term_lufs: level(reading.short_term_lufs).map(round3),
            });
        }
        self.last = reading;
        self.sample_peak = self.sample_peak.max(peak_abs(l));
        if self.stereo {
            self.sample_peak = self.sample_peak.max(peak_abs(r));
            let [lr, ll, rr] = &mut self.sums;
            for (&l, &r) in l.iter().zip(r) {
                let (l, r) = (f64::from(l), f64::from(r));
                *lr += l * r;
                *ll += l * l;
                *rr += r * r;
            }
        }
        self.metered += l.len();
        self.k += 1;
    }

    /// The measurement of everything pushed.
    pub fn finish(mut self) -> Measurement {
        if !self.pending[0].is_empty() {
            self.meter_pending(false);
        }
        let last = self.last;
        let sample_peak = self.sample_peak;
        let integrated = level(last.integrated_lufs);
        let true_peak = if sample_peak > 0.0 {
            level(last.true_peak_max_dbtp)
        } else {
            None
        };
        let [lr, ll, rr] = self.sums;
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
            correlation: if self.stereo {
                correlation_of_sums(lr, ll, rr)
            } else {
                None
            },
            series: self.series,
        }
    }
}

/// Largest `|x|` (0 for an empty slice; NaN ignored, as `f32::max` does), in eight
/// independent lanes so that it vectorises (the maximum does not depend on the order).
fn peak_abs(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (m, v) in lanes.iter_mut().zip(c) {
            let a = v.abs();
            // Not `f32::max`: this form compiles to `maxps`; a NaN compares false and is
            // skipped, like `max` skips it.
            *m = if a > *m { a } else { *m };
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()));
    lanes.iter().fold(tail, |m, &v| m.max(v))
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
    correlation_of_sums(lr, ll, rr)
}

/// `Σ l·r / √(Σ l² · Σ r²)` from the sums, `None` if either channel is silent.
fn correlation_of_sums(lr: f64, ll: f64, rr: f64) -> Option<f32> {
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

    /// A song-like test signal: tones, noise bursts, silence and a NaN, `secs` long.
    fn signal(sample_rate: u32, secs: f64) -> (Vec<f32>, Vec<f32>) {
        let n = (secs * f64::from(sample_rate)) as usize;
        let mut seed = 0x2545_F491u32;
        let (mut l, mut r) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let noise = (seed >> 8) as f32 / (1u32 << 23) as f32 - 1.0;
            let t = i as f32 / sample_rate as f32;
            let env = if (t % 2.0) < 1.5 {
                (-3.0 * (t % 0.5)).exp()
            } else {
                0.0
            };
            let tone = (std::f32::consts::TAU * 220.0 * t).sin();
            l.push(env * (0.5 * tone + 0.1 * noise));
            r.push(env * (0.4 * tone - 0.2 * noise));
        }
        l[n / 3] = f32::NAN;
        r[n / 2] = -1.7;
        (l, r)
    }

    #[test]
    fn measurer_in_any_blocks_equals_the_whole_measurement() {
        for (sr, secs) in [(48_000, 7.37), (44_100, 3.05)] {
            let (l, r) = signal(sr, secs);
            let whole = measure(&l, Some(&r), sr);
            let mono = measure(&l, None, sr);
            assert!(whole.integrated_lufs.is_some() && whole.true_peak_dbtp.is_some());
            assert_eq!(whole.sample_peak_dbfs, Some(gain_to_db(1.7)));
            for sizes in [&[1usize, 4799, 4801, 17][..], &[16_384], &[100_000, 3]] {
                let mut m = Measurer::new(sr, true, l.len());
                let mut mm = Measurer::new(sr, false, l.len());
                let mut start = 0;
                for len in sizes.iter().cycle() {
                    let end = (start + len).min(l.len());
                    m.push(&l[start..end], Some(&r[start..end]));
                    mm.push(&l[start..end], None);
                    start = end;
                    if start == l.len() {
                        break;
                    }
                }
                assert_eq!(m.finish(), whole, "{sizes:?}");
                assert_eq!(mm.finish(), mono, "{sizes:?}");
            }
        }
    }

    #[test]
    fn peak_ignores_nan_and_takes_the_largest_magnitude() {
        let mut x: Vec<f32> = (0..37).map(|i| (i as f32 * 0.3).sin() * 0.5).collect();
        x[20] = -0.75;
        x[3] = f32::NAN;
        let reference = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert_eq!(peak_abs(&x), reference);
        assert_eq!(peak_abs(&x), 0.75);
        for n in 0..x.len() {
            let r = x[..n].iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert_eq!(peak_abs(&x[..n]), r, "{n}");
        }
        assert_eq!(peak_abs(&[f32::NAN; 9]), 0.0);
    }
}
