//! `stembus render`: files in, masters out.

use std::io::Write;
use std::path::{Path, PathBuf};

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use stembus_dsp::MAX_STEMS;
use stembus_dsp::engine::SAMPLE_RATE_RANGE;
use stembus_dsp::settings::EngineSettings;

use crate::error::{CliError, Result};
use crate::inputs::{StemInput, check_same_rate, collect, load_all, open_stems};
use crate::measure::{Measurement, Measurer, measure, round3};
use crate::plot::{PlotData, write_plot};
use crate::render::{
    Encode, FileSink, Master, Objective, RenderInput, Slot, SlotAudio, render_master,
};
use crate::settings_file::{self, LoadedSettings};
use crate::targets::{self, Target};
use crate::wav::{
    Encoder, OutputFormat, TempOutput, check_writable, read_wav, wav_header, write_error,
};

/// Everything `stembus render` is asked to do.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// Stem files and/or folders.
    pub inputs: Vec<PathBuf>,
    /// Reference mix.
    pub mix: Option<PathBuf>,
    /// Settings file (plugin state or `EngineSettings` JSON).
    pub settings: Option<PathBuf>,
    /// Loudness target, LUFS (single master).
    pub target_lufs: Option<f32>,
    /// Limiter ceiling, dBTP (single master).
    pub ceiling_dbtp: Option<f32>,
    /// Delivery targets by name (one master each).
    pub deliver: Vec<String>,
    /// User targets file.
    pub targets_file: Option<PathBuf>,
    /// Output file (or folder); with several targets the target name is appended.
    pub output: PathBuf,
    /// Output encoding.
    pub format: OutputFormat,
    /// Output sample rate, Hz (the stems are resampled before the engine).
    pub sample_rate: Option<u32>,
    /// Plot file (PNG); with several targets the target name is appended.
    pub plot: Option<PathBuf>,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
}

/// The report of one master (`--json` prints these).
#[derive(Debug, Clone, Serialize)]
pub struct MasterReport {
    /// Target name ("master" without `--deliver`).
    pub target: String,
    /// Written file.
    pub file: String,
    /// Written plot, if any.
    pub plot: Option<String>,
    /// "16", "24" or "f32".
    pub format: &'static str,
    /// Sample rate, Hz.
    pub sample_rate: u32,
    /// Length, seconds.
    pub duration_s: f64,
    /// Loudness target, LUFS.
    pub target_lufs: Option<f64>,
    /// Limiter ceiling, dBTP.
    pub ceiling_dbtp: f64,
    /// Integrated loudness of the written file, LUFS.
    pub integrated_lufs: Option<f64>,
    /// Loudness range, LU.
    pub lra_lu: Option<f64>,
    /// True peak, dBTP.
    pub true_peak_dbtp: Option<f64>,
    /// Sample peak, dBFS.
    pub sample_peak_dbfs: Option<f64>,
    /// Peak-to-loudness ratio, dB.
    pub plr_db: Option<f64>,
    /// Largest momentary loudness, LUFS.
    pub max_momentary_lufs: Option<f64>,
    /// Largest short-term loudness, LUFS.
    pub max_short_term_lufs: Option<f64>,
    /// Largest limiter gain reduction, dB.
    pub limiter_gr_max_db: f64,
    /// Mean limiter gain reduction, dB.
    pub limiter_gr_mean_db: f64,
    /// Master drive used, dB.
    pub drive_db: f64,
    /// Engine passes run.
    pub passes: usize,
    /// Integrated loudness of the reference mix, LUFS (with `--mix`).
    pub reference_mix_lufs: Option<f64>,
}

/// What a render run produced.
#[derive(Debug, Clone, Default)]
pub struct RenderOutcome {
    /// One report per written master.
    pub reports: Vec<MasterReport>,
    /// Targets that could not be met (nothing written for them).
    pub failures: Vec<CliError>,
    /// Notes for the user (printed on stderr).
    pub notes: Vec<String>,
}

/// One master to make.
struct Job {
    name: String,
    settings: EngineSettings,
    objective: Objective,
    target_lufs: Option<f32>,
    output: PathBuf,
    plot: Option<PathBuf>,
}

/// `base` with `_{target}` before the extension; a folder gets `master_{target}.{ext}`.
fn output_path(base: &Path, target: Option<&str>, ext: &str) -> PathBuf {
    let (dir, stem) = if base.is_dir() {
        (base.to_path_buf(), "master".to_string())
    } else {
        (
            base.parent().map(Path::to_path_buf).unwrap_or_default(),
            base.file_stem()
                .map_or("master".into(), |s| s.to_string_lossy().into_owned()),
        )
    };
    let ext = if base.is_dir() {
        ext.to_string()
    } else {
        base.extension()
            .map_or(ext.to_string(), |e| e.to_string_lossy().into_owned())
    };
    let name = match target {
        Some(t) => format!("{stem}_{t}.{ext}"),
        None => format!("{stem}.{ext}"),
    };
    dir.join(name)
}

/// Matches the files to engine slots. With a plugin state whose stem names match every file
/// name (case-insensitive), each file goes to its named slot; otherwise files take slots 1, 2, …
/// in order.
fn assign_slots(
    stems: &[&str],
    state_names: Option<&[String]>,
    notes: &mut Vec<String>,
) -> Vec<Option<usize>> {
    let in_order = || (0..stems.len()).map(Some).collect::<Vec<_>>();
    let Some(names) = state_names else {
        return in_order();
    };
    let lower: Vec<String> = names.iter().map(|n| n.to_lowercase()).collect();
    let found: Vec<Option<usize>> = stems
        .iter()
        .map(|s| lower.iter().position(|n| *n == s.to_lowercase()))
        .collect();
    if found.iter().all(Option::is_some) {
        let slots = found.iter().flatten().max().map_or(0, |m| m + 1);
        let mut map = vec![None; slots];
        for (file, slot) in found.iter().enumerate() {
            if let Some(slot) = slot {
                map[*slot] = Some(file);
            }
        }
        map
    } else {
        let named: Vec<&String> = names.iter().filter(|n| !n.starts_with("Stem ")).collect();
        if !named.is_empty() {
            notes.push(format!(
                "the stem names in the settings ({}) do not all match the file names; stems \
                 take slots in file order",
                named
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        in_order()
    }
}

fn check_output_format(path: &Path, what: &str, ext: &str) -> Result<()> {
    match path.extension() {
        Some(e) if e.eq_ignore_ascii_case(ext) => Ok(()),
        _ if path.is_dir() => Ok(()),
        _ => Err(CliError::input(format!(
            "{what} {} must end in .{ext}",
            path.display()
        ))),
    }
}

/// Runs `stembus render`. Per-target failures (an unreachable loudness) are collected in the
/// outcome; input errors return early, before anything is written.
pub fn run_render(opts: &RenderOptions) -> Result<RenderOutcome> {
    let mut outcome = RenderOutcome::default();
    if let Some(rate) = opts.sample_rate {
        check_engine_rate(rate, "--sample-rate")?;
    }
    check_output_format(&opts.output, "output", "wav")?;
    if let Some(p) = &opts.plot {
        check_output_format(p, "plot", "png")?;
    }
    if let Some(l) = opts.target_lufs
        && !(-30.0..=-5.0).contains(&l)
    {
        return Err(CliError::input(format!(
            "--target-lufs {l} is outside -30..-5 LUFS"
        )));
    }
    if let Some(c) = opts.ceiling_dbtp
        && !(-20.0..=0.0).contains(&c)
    {
        return Err(CliError::input(format!(
            "--ceiling-dbtp {c} is outside -20..0 dBTP"
        )));
    }

    // Settings and targets first: cheap, and their errors are the user's to fix.
    let loaded = match &opts.settings {
        Some(p) => settings_file::load(p)?,
        None => LoadedSettings {
            settings: EngineSettings::default(),
            stem_names: None,
            notes: Vec::new(),
        },
    };
    outcome.notes.extend(loaded.notes.iter().cloned());
    let selected: Vec<(String, Target)> = if opts.deliver.is_empty() {
        Vec::new()
    } else {
        let all = targets::load(opts.targets_file.as_deref())?;
        targets::select(&all, &opts.deliver)?
            .into_iter()
            .map(|(n, t)| (n, t.clone()))
            .collect()
    };

    // Output paths, checked before the (long) work.
    let several = selected.len() > 1;
    let names: Vec<Option<String>> = if selected.is_empty() {
        vec![None]
    } else {
        selected
            .iter()
            .map(|(n, _)| (several || opts.output.is_dir()).then(|| n.clone()))
            .collect()
    };
    let outputs: Vec<(PathBuf, Option<PathBuf>)> = names
        .iter()
        .map(|n| {
            (
                output_path(&opts.output, n.as_deref(), "wav"),
                opts.plot
                    .as_ref()
                    .map(|p| output_path(p, n.as_deref().filter(|_| several), "png")),
            )
        })
        .collect();
    for (wav, png) in &outputs {
        check_writable(wav)?;
        if let Some(png) = png {
            check_writable(png)?;
        }
    }

    // Inputs.
    let paths = collect(&opts.inputs, opts.mix.as_deref())?;
    if paths.mix_found_in_folder
        && let Some(m) = &paths.mix
    {
        outcome.notes.push(format!(
            "{} is taken as the reference mix, not as a stem",
            m.display()
        ));
    }
    let mut stems = open_stems(&paths.stems)?;
    let mut mix = match &paths.mix {
        Some(p) => Some(load_all(std::slice::from_ref(p))?.remove(0)),
        None => None,
    };
    let rates: Vec<(String, u32)> = stems
        .iter()
        .map(|s| (s.file_name(), s.sample_rate))
        .chain(mix.iter().map(|m| (m.file_name(), m.audio.sample_rate)))
        .collect();
    let in_rate = check_same_rate(&rates)?;
    let rate = opts.sample_rate.unwrap_or(in_rate);
    if opts.sample_rate.is_none() {
        check_engine_rate(in_rate, "the stems' sample rate")?;
    }
    if rate != in_rate {
        outcome.notes.push(format!(
            "resampling the inputs from {in_rate} Hz to {rate} Hz"
        ));
        for s in &mut stems {
            let channels = match &s.audio {
                SlotAudio::Memory(ch) => crate::resample::resample(ch, in_rate, rate)?,
                SlotAudio::File(_) => {
                    let audio = read_wav(&s.path)?;
                    crate::resample::resample(&audio.channels, in_rate, rate)?
                }
            };
            s.audio = SlotAudio::Memory(channels);
            s.sample_rate = rate;
        }
        for t in mix.iter_mut() {
            t.audio.channels = crate::resample::resample(&t.audio.channels, in_rate, rate)?;
            t.audio.sample_rate = rate;
        }
    }
    let frames = stems.iter().map(StemInput::frames).max().unwrap_or(0);
    if stems.iter().any(|s| s.frames() != frames) {
        outcome.notes.push(format!(
            "the stems differ in length; shorter ones are padded with silence to {frames} samples"
        ));
    }
    if frames == 0 {
        return Err(CliError::input("the stems hold no audio (zero length)"));
    }
    let names: Vec<&str> = stems.iter().map(|s| s.name.as_str()).collect();
    let slot_map = assign_slots(&names, loaded.stem_names.as_deref(), &mut outcome.notes);
    let slot_names: Vec<String> = slot_map
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let state = loaded
                .stem_names
                .as_ref()
                .and_then(|n| n.get(i))
                .cloned()
                .unwrap_or_default();
            match f {
                Some(f) => format!("{} {state}", stems[*f].name),
                None => state,
            }
        })
        .collect();
    let reference_mix_lufs = mix.as_ref().and_then(|m| {
        let ch = &m.audio.channels;
        measure(&ch[0], ch.get(1).map(Vec::as_slice), rate).integrated_lufs
    });
    let mut stem_slots: Vec<Option<StemInput>> = stems.into_iter().map(Some).collect();
    let input = RenderInput {
        sample_rate: rate,
        frames,
        slots: slot_map
            .iter()
            .enumerate()
            .map(|(i, f)| {
                f.and_then(|f| stem_slots[f].take()).map(|t| Slot {
                    name: slot_names[i].clone(),
                    audio: t.audio,
                })
            })
            .collect(),
        main: mix.map(|m| Slot {
            name: m.name,
            audio: SlotAudio::Memory(m.audio.channels),
        }),
    };
    debug_assert!(input.slots.len() <= MAX_STEMS);

    // The masters to make.
    let mut jobs = Vec::new();
    if selected.is_empty() {
        let mut s = loaded.settings.clone();
        if let Some(c) = opts.ceiling_dbtp {
            s.master.limiter.ceiling_dbtp = c;
            s.master.limiter.enabled = true;
        }
        if let Some(l) = opts.target_lufs {
            // Loudness targeting promises the ceiling too: the limiter is on.
            s.master.target_lufs = l;
            s.master.limiter.enabled = true;
        }
        jobs.push(Job {
            name: "master".into(),
            settings: s,
            objective: opts
                .target_lufs
                .map_or(Objective::AsIs, Objective::Loudness),
            target_lufs: opts.target_lufs,
            output: outputs[0].0.clone(),
            plot: outputs[0].1.clone(),
        });
    } else {
        for ((name, target), (wav, png)) in selected.iter().zip(&outputs) {
            let settings = target.apply(&loaded.settings, &slot_names)?;
            let objective = match (target.target_lufs, target.max_limiter_gr_db) {
                (Some(l), _) => Objective::Loudness(l),
                (None, Some(g)) => Objective::LimiterReduction(g),
                (None, None) => Objective::AsIs,
            };
            jobs.push(Job {
                name: name.clone(),
                settings,
                objective,
                target_lufs: target.target_lufs,
                output: wav.clone(),
                plot: png.clone(),
            });
        }
    }

    // The masters are independent: render them side by side, one thread per core.
    let multi = if opts.progress {
        MultiProgress::with_draw_target(ProgressDrawTarget::stderr())
    } else {
        MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
    };
    let style = ProgressStyle::with_template("{msg:40} [{bar:30}] {percent:>3}% {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let bars: Vec<ProgressBar> = jobs
        .iter()
        .map(|j| {
            let bar = multi.add(ProgressBar::new(frames as u64));
            bar.set_style(style.clone());
            bar.set_message(format!("{}: waiting", j.name));
            bar
        })
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(jobs.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<Result<MasterReport>>> = (0..jobs.len()).map(|_| None).collect();
    let slots: Vec<Mutex<&mut Option<Result<MasterReport>>>> =
        results.iter_mut().map(Mutex::new).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    // The limiter holds its ceiling to within LIMITER_ALLOWANCE_DB on a 16×
                    // meter, and rounding and dither add up to 1.5 LSB to any sample: aim that
                    // much lower, so that the written file is at or under the ceiling on any
                    // meter.
                    let mut settings = job.settings.clone();
                    settings.master.limiter.ceiling_dbtp +=
                        quantisation_margin_db(opts.format, &settings) - LIMITER_ALLOWANCE_DB;
                    // The master's file is written into a temporary file next to it while the
                    // pass runs (see `render_master`), renamed into place once complete.
                    let result = TempOutput::new(&job.output, ".tmp").and_then(|mut tmp| {
                        let mut sink = FileSink::new(tmp.as_file_mut());
                        let master = render_master(
                            &input,
                            &settings,
                            job.objective,
                            job.settings
                                .master
                                .limiter
                                .enabled
                                .then_some(job.settings.master.limiter.ceiling_dbtp),
                            Some(Encode {
                                format: opts.format,
                                sink: &mut sink,
                            }),
                            &job.name,
                            &bars[i],
                        )?;
                        sink.finish().map_err(|e| write_error(&job.output, &e))?;
                        write_master(job, &master, tmp, opts.format, rate, reference_mix_lufs)
                    });
                    bars[i].finish_and_clear();
                    if let Ok(mut slot) = slots[i].lock() {
                        **slot = Some(result);
                    }
                }
            });
        }
    });
    drop(slots);
    for result in results {
        match result.unwrap_or_else(|| {
            Err(CliError::failed(
                "internal error: a master was not rendered",
            ))
        }) {
            Ok(report) => outcome.reports.push(report),
            Err(e) if e.kind == crate::error::ErrorKind::Failed => outcome.failures.push(e),
            Err(e) => return Err(e),
        }
    }
    Ok(outcome)
}

/// How far the limiter's output may pass its ceiling on the 16× reference meter, dB: the
/// allowance of the limiter stress tests (`dsp/tests/limiter_stress.rs`). The offline render
/// sets the limiter this much below the requested ceiling.
pub const LIMITER_ALLOWANCE_DB: f32 = 0.05;

/// How far below the ceiling the limiter must stay so that quantising to `format` cannot pass
/// the ceiling: `20·log10(1 − 3·LSB / ceiling)`, dB (≤ 0). Twice the largest sample error of
/// rounding plus ±1 LSB dither (1.5 LSB), for the error's own inter-sample peaks.
pub fn quantisation_margin_db(format: OutputFormat, settings: &EngineSettings) -> f32 {
    let lsb = match format {
        OutputFormat::Pcm16 => 1.0 / 32_768.0,
        OutputFormat::Pcm24 => 1.0 / 8_388_608.0,
        OutputFormat::Float32 => return 0.0,
    };
    let ceiling = stembus_dsp::util::db_to_gain(settings.master.limiter.ceiling_dbtp);
    stembus_dsp::util::gain_to_db((1.0 - 3.0 * lsb / ceiling).max(0.5))
}

fn check_engine_rate(rate: u32, what: &str) -> Result<()> {
    let (lo, hi) = SAMPLE_RATE_RANGE;
    if (rate as f32) < lo || (rate as f32) > hi {
        return Err(CliError::input(format!(
            "{what} {rate} Hz is outside the engine's {lo}–{hi} Hz range (resample with \
             --sample-rate 48000)"
        )));
    }
    Ok(())
}

/// Frames encoded and written at a time.
const WRITE_BLOCK_FRAMES: usize = 1 << 14;

/// Quantises, writes and measures one master (and its plot), and puts its file (`tmp`, the
/// master's temporary file) in place. When the master's pass encoded and wrote it already
/// ([`crate::render::PassOutput::encoded`]), `tmp` is complete; otherwise it is written here.
fn write_master(
    job: &Job,
    master: &Master,
    mut tmp: TempOutput,
    format: OutputFormat,
    rate: u32,
    reference_mix_lufs: Option<f32>,
) -> Result<MasterReport> {
    let measured = if master.pass.encoded {
        // Encoded, written and measured by the pass already.
        master.measurement.clone()
    } else {
        encode_and_write(tmp.as_file_mut(), master, format, rate)
            .map_err(|e| write_error(&job.output, &e))?
    };
    tmp.persist(&job.output)?;
    let duration_s = master.pass.left().len() as f64 / f64::from(rate);
    if let Some(plot) = &job.plot {
        write_plot(
            plot,
            &PlotData {
                title: format!(
                    "{} — {} ({})",
                    job.name,
                    job.output
                        .file_name()
                        .map_or(String::new(), |f| f.to_string_lossy().into_owned()),
                    measured
                        .integrated_lufs
                        .map_or("silent".into(), |l| format!("{l:.1} LUFS"))
                ),
                loudness: &measured.series,
                gain_reduction_db: &master.pass.gr_series_db,
                target_lufs: job.target_lufs,
                integrated_lufs: measured.integrated_lufs,
                duration_s,
            },
        )?;
    }
    let r = |x: Option<f32>| x.map(round3);
    Ok(MasterReport {
        target: job.name.clone(),
        file: job.output.display().to_string(),
        plot: job.plot.as_ref().map(|p| p.display().to_string()),
        format: format.name(),
        sample_rate: rate,
        duration_s: (duration_s * 1e6).round() / 1e6,
        target_lufs: r(job.target_lufs),
        ceiling_dbtp: round3(job.settings.master.limiter.ceiling_dbtp),
        integrated_lufs: r(measured.integrated_lufs),
        lra_lu: r(measured.lra_lu),
        true_peak_dbtp: r(measured.true_peak_dbtp),
        sample_peak_dbfs: r(measured.sample_peak_dbfs),
        plr_db: r(measured.plr_db),
        max_momentary_lufs: r(measured.max_momentary_lufs),
        max_short_term_lufs: r(measured.max_short_term_lufs),
        limiter_gr_max_db: round3(master.pass.gr_max_db),
        limiter_gr_mean_db: round3(master.pass.gr_mean_db),
        drive_db: round3(master.settings.master.drive_db),
        passes: master.passes,
        reference_mix_lufs: r(reference_mix_lufs),
    })
}

/// Encodes the master into `file` (from its start) and measures what the file holds (after
/// dither and rounding), as `analyze` would: the quantised values go block by block, as they
/// are written, to a meter on a second thread (a float file holds the master as it is,
/// measured already).
fn encode_and_write(
    file: &mut std::fs::File,
    master: &Master,
    format: OutputFormat,
    rate: u32,
) -> std::io::Result<Measurement> {
    let (left, right) = (master.pass.left(), master.pass.right());
    let frames = left.len().min(right.len());
    let quantised = format != OutputFormat::Float32;
    std::thread::scope(|scope| -> std::io::Result<Measurement> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<[Vec<f32>; 2]>(4);
        let meter = quantised.then(|| {
            scope.spawn(move || {
                let mut m = Measurer::new(rate, true, frames);
                for [l, r] in rx {
                    m.push(&l, Some(&r));
                }
                m.finish()
            })
        });
        let mut write = || -> std::io::Result<()> {
            file.write_all(&wav_header(frames, rate, format))?;
            let mut encoder = Encoder::new(format);
            let mut bytes = Vec::with_capacity(WRITE_BLOCK_FRAMES * 8);
            for (l, r) in left[..frames]
                .chunks(WRITE_BLOCK_FRAMES)
                .zip(right[..frames].chunks(WRITE_BLOCK_FRAMES))
            {
                bytes.clear();
                let mut decoded =
                    quantised.then(|| [Vec::with_capacity(l.len()), Vec::with_capacity(r.len())]);
                encoder.encode(l, r, &mut bytes, decoded.as_mut());
                file.write_all(&bytes)?;
                if let Some(decoded) = decoded {
                    // The meter only stops early by panicking, which `join` reports below.
                    let _ = tx.send(decoded);
                }
            }
            Ok(())
        };
        let written = write();
        drop(tx);
        let measured = match meter {
            Some(m) => m
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            None => master.measurement.clone(),
        };
        written.map(|()| measured)
    })
}

/// The final table: one row per master.
pub fn text_table(reports: &[MasterReport]) -> String {
    let o = |x: Option<f64>| x.map_or("—".to_string(), |v| format!("{v:.1}"));
    let mut s = format!(
        "{:<10} {:>10} {:>6} {:>9} {:>6} {:>9} {:>7} {:>8} {:>7} {:>6}  {}\n",
        "master",
        "integrated",
        "LRA",
        "true peak",
        "PLR",
        "max S-T",
        "GR max",
        "GR mean",
        "drive",
        "passes",
        "file"
    );
    s.push_str(&format!(
        "{:<10} {:>10} {:>6} {:>9} {:>6} {:>9} {:>7} {:>8} {:>7} {:>6}\n",
        "", "LUFS", "LU", "dBTP", "dB", "LUFS", "dB", "dB", "dB", ""
    ));
    for r in reports {
        s.push_str(&format!(
            "{:<10} {:>10} {:>6} {:>9} {:>6} {:>9} {:>7.1} {:>8.1} {:>+7.1} {:>6}  {}\n",
            r.target,
            o(r.integrated_lufs),
            o(r.lra_lu),
            r.true_peak_dbtp.map_or("—".into(), |v| format!("{v:.2}")),
            o(r.plr_db),
            o(r.max_short_term_lufs),
            r.limiter_gr_max_db,
            r.limiter_gr_mean_db,
            r.drive_db,
            r.passes,
            r.file
        ));
    }
    if let Some(m) = reports.first().and_then(|r| r.reference_mix_lufs) {
        s.push_str(&format!("reference mix: {m:.1} LUFS integrated\n"));
    }
    s
}
