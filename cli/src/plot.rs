//! `--plot out.png`: short-term loudness (top) and limiter gain reduction (bottom) over time.
//!
//! Drawn with `plotters`' bitmap backend; text uses the Hack font embedded in the binary (from
//! the `epaint_default_fonts` crate, MIT / Bitstream Vera licence) through plotters' `ab_glyph`
//! feature, so nothing depends on system fonts, fontconfig or freetype.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::{CliError, Result};
use crate::measure::SeriesPoint;
use crate::wav::TempOutput;

/// Image size in pixels.
pub const SIZE: (u32, u32) = (1200, 700);

/// Font family name the embedded font is registered under.
const FONT: &str = "sans-serif";

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is a valid TTF; should it ever fail to load, text is simply not drawn.
        let _ = plotters::style::register_font(
            FONT,
            FontStyle::Normal,
            epaint_default_fonts::HACK_REGULAR,
        );
    });
}

/// What one plot shows.
pub struct PlotData<'a> {
    /// Title line (master name, target).
    pub title: String,
    /// Short-term loudness at 10 Hz.
    pub loudness: &'a [SeriesPoint],
    /// Limiter gain reduction per 0.1 s, dB.
    pub gain_reduction_db: &'a [f32],
    /// Target loudness, drawn as a line, LUFS.
    pub target_lufs: Option<f32>,
    /// Integrated loudness, drawn as a dashed line, LUFS.
    pub integrated_lufs: Option<f32>,
    /// Duration, seconds.
    pub duration_s: f64,
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn draw(data: &PlotData<'_>, path: &Path) -> DrawResult {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(&data.title, (FONT, 22))?;
    let (top, bottom) = root.split_vertically(SIZE.1 * 6 / 10 - 20);
    let t_max = data.duration_s.max(0.1);

    // Short-term loudness.
    let points: Vec<(f64, f64)> = data
        .loudness
        .iter()
        .filter_map(|p| p.short_term_lufs.map(|l| (p.t, l)))
        .collect();
    let l_max = points
        .iter()
        .map(|p| p.1)
        .chain(data.target_lufs.map(f64::from))
        .fold(-60.0f64, f64::max);
    let y_top = (l_max / 3.0).ceil() * 3.0 + 3.0;
    let y_bottom = (y_top - 36.0).min(-30.0);
    let mut chart = ChartBuilder::on(&top)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, y_bottom..y_top)?;
    chart
        .configure_mesh()
        .y_desc("short-term loudness (LUFS)")
        .label_style((FONT, 14))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    // A gap in the series (silence) breaks the line.
    let mut run: Vec<(f64, f64)> = Vec::new();
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut last_t = f64::NEG_INFINITY;
    for &(t, l) in &points {
        if t - last_t > 0.15 && !run.is_empty() {
            runs.push(std::mem::take(&mut run));
        }
        run.push((t, l.max(y_bottom)));
        last_t = t;
    }
    runs.push(run);
    for (i, r) in runs.into_iter().enumerate() {
        let series = chart.draw_series(LineSeries::new(r, BLUE.stroke_width(2)))?;
        if i == 0 {
            series
                .label("short-term")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
        }
    }
    if let Some(target) = data.target_lufs {
        let target = f64::from(target);
        chart
            .draw_series(LineSeries::new(
                [(0.0, target), (t_max, target)],
                RED.stroke_width(1),
            ))?
            .label(format!("target {target:.1} LUFS"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    }
    if let Some(integrated) = data.integrated_lufs {
        let integrated = f64::from(integrated);
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, integrated), (t_max, integrated)],
                6,
                4,
                BLACK.stroke_width(1),
            ))?
            .label(format!("integrated {integrated:.1} LUFS"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;

    // Limiter gain reduction, drawn downwards.
    let gr_max = data
        .gain_reduction_db
        .iter()
        .copied()
        .fold(1.0f32, f32::max);
    let gr_floor = -f64::from((gr_max * 1.2).ceil());
    let mut chart = ChartBuilder::on(&bottom)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, gr_floor..0.5)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("limiter gain reduction (dB)")
        .label_style((FONT, 14))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    let step = 1.0 / f64::from(crate::render::GR_SERIES_RATE_HZ);
    chart.draw_series(
        AreaSeries::new(
            data.gain_reduction_db
                .iter()
                .enumerate()
                .map(|(i, g)| ((i as f64 + 1.0) * step, -f64::from(*g))),
            0.0,
            RED.mix(0.3),
        )
        .border_style(RED),
    )?;
    root.present()?;
    Ok(())
}

/// Draws the plot and writes it to `path` (a PNG), through a temporary file in the same folder
/// renamed over `path` once complete.
pub fn write_plot(path: &Path, data: &PlotData<'_>) -> Result<()> {
    register_font();
    let name = path.display();
    // The suffix tells the PNG encoder the format.
    let tmp = TempOutput::new(path, ".png")?;
    draw(data, tmp.path())
        .map_err(|e| CliError::failed(format!("cannot draw the plot {name}: {e}")))?;
    tmp.persist(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png() {
        let loudness: Vec<SeriesPoint> = (1..=100)
            .map(|k| SeriesPoint {
                t: k as f64 / 10.0,
                momentary_lufs: Some(-14.0),
                short_term_lufs: (k > 30).then_some(-14.0 + (k as f64 / 10.0).sin()),
            })
            .collect();
        let gr: Vec<f32> = (0..100).map(|k| (k % 7) as f32 * 0.3).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.png");
        write_plot(
            &path,
            &PlotData {
                title: "test".into(),
                loudness: &loudness,
                gain_reduction_db: &gr,
                target_lufs: Some(-14.0),
                integrated_lufs: Some(-14.1),
                duration_s: 10.0,
            },
        )
        .unwrap();
        let png = std::fs::read(&path).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        assert!(png.len() > 5000);
    }
}
