//! Sample-rate conversion of whole clips (`--sample-rate`), with `rubato`'s synchronous FFT
//! resampler: a fixed-ratio converter whose anti-aliasing low-pass sits just below the lower
//! Nyquist frequency; `process_all` trims the converter's delay, so the output starts with the
//! input and lasts `ceil(len · out / in)` frames.

use rubato::audioadapter::Adapter;
use rubato::audioadapter_buffers::direct::SequentialSliceOfVecs;
use rubato::{Fft, FixedSync, Resampler};

use crate::error::{CliError, Result};

/// Resamples every channel of a clip from `rate_in` to `rate_out` Hz.
pub fn resample(channels: &[Vec<f32>], rate_in: u32, rate_out: u32) -> Result<Vec<Vec<f32>>> {
    if rate_in == rate_out || channels.is_empty() {
        return Ok(channels.to_vec());
    }
    let frames = channels[0].len();
    let fail = |e: &dyn std::fmt::Display| {
        CliError::input(format!(
            "cannot resample {rate_in} Hz to {rate_out} Hz: {e}"
        ))
    };
    let mut resampler = Fft::<f32>::new(
        rate_in as usize,
        rate_out as usize,
        1024,
        channels.len(),
        FixedSync::Input,
    )
    .map_err(|e| fail(&e))?;
    let input =
        SequentialSliceOfVecs::new(channels, channels.len(), frames).map_err(|e| fail(&e))?;
    let out = resampler
        .process_all(&input, frames, None)
        .map_err(|e| fail(&e))?;
    // Exactly ceil(frames · out / in) frames (the float ratio can round one frame up).
    let out_frames = out
        .frames()
        .min((frames as u64 * u64::from(rate_out)).div_ceil(u64::from(rate_in)) as usize);
    Ok((0..channels.len())
        .map(|c| {
            (0..out_frames)
                .map(|n| out.read_sample(c, n).unwrap_or(0.0))
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sine_keeps_its_frequency_and_level() {
        let (fin, fout, f) = (44_100u32, 48_000u32, 1000.0f64);
        let x: Vec<f32> = (0..44_100)
            .map(|n| (0.5 * (std::f64::consts::TAU * f * n as f64 / f64::from(fin)).sin()) as f32)
            .collect();
        let y = resample(&[x], fin, fout).unwrap();
        assert_eq!(y[0].len(), 48_000);
        // Away from the edges the output is the same sine sampled at 48 kHz.
        let mut err = 0.0f64;
        for (n, y) in y[0].iter().enumerate().take(46_000).skip(2000) {
            let want = 0.5 * (std::f64::consts::TAU * f * n as f64 / f64::from(fout)).sin();
            err = err.max((f64::from(*y) - want).abs());
        }
        assert!(err < 1e-3, "max error {err}");
    }
}
