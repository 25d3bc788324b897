//! `stembus`: the offline Stembus tool. See the crate documentation of `stembus_cli`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use stembus_cli::analyze::{analyze_file, text_report};
use stembus_cli::check::check_folder;
use stembus_cli::error::{CliError, EXIT_INPUT, EXIT_PROBLEMS, Result};
use stembus_cli::render_cmd::{RenderOptions, run_render, text_table};
use stembus_cli::wav::OutputFormat;

/// Exit status of a run interrupted by a signal (`128 + SIGINT`, the shell convention).
const EXIT_INTERRUPTED: i32 = 130;

/// Stembus offline tool: master stems with the Stembus engine, analyse loudness, check stems.
#[derive(Parser)]
#[command(name = "stembus", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render stems through the engine to one master per delivery target.
    Render(RenderArgs),
    /// Measure loudness and peaks of audio files.
    Analyze(AnalyzeArgs),
    /// Check a stem folder: formats, lengths, levels, alignment and the null test.
    Check(CheckArgs),
}

/// Output encoding.
#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    /// 16-bit PCM with TPDF dither.
    #[value(name = "16", alias = "pcm16")]
    Pcm16,
    /// 24-bit PCM.
    #[value(name = "24", alias = "pcm24")]
    Pcm24,
    /// 32-bit float.
    #[value(name = "f32", aliases = ["float", "32f", "float32"])]
    Float32,
}

#[derive(Args)]
struct RenderArgs {
    /// Stem WAV files, or a folder of them (at most 8 stems; in a folder, mix.wav is taken as
    /// the reference mix).
    #[arg(required = true, value_name = "STEMS")]
    inputs: Vec<PathBuf>,
    /// Reference mix (the unprocessed stem sum as exported).
    #[arg(long, value_name = "WAV")]
    mix: Option<PathBuf>,
    /// Settings: the plugin's saved state JSON, or EngineSettings JSON.
    #[arg(long, value_name = "JSON")]
    settings: Option<PathBuf>,
    /// Integrated loudness to hit (±0.1 LU), LUFS.
    #[arg(
        long,
        value_name = "LUFS",
        allow_negative_numbers = true,
        conflicts_with = "deliver"
    )]
    target_lufs: Option<f32>,
    /// Limiter ceiling, dBTP.
    #[arg(
        long,
        value_name = "DBTP",
        allow_negative_numbers = true,
        conflicts_with = "deliver"
    )]
    ceiling_dbtp: Option<f32>,
    /// Delivery targets, comma-separated (built in: streaming, club, vinyl); one master each.
    #[arg(long, value_name = "TARGETS", value_delimiter = ',')]
    deliver: Vec<String>,
    /// JSON file with more delivery targets (same shape as the built-in presets).
    #[arg(long, value_name = "JSON", requires = "deliver")]
    targets_file: Option<PathBuf>,
    /// Output WAV (with several targets, `_<target>` is added to the name), or a folder.
    #[arg(short, long, value_name = "PATH", default_value = "master.wav")]
    output: PathBuf,
    /// Output encoding.
    #[arg(long, value_enum, default_value = "24")]
    format: FormatArg,
    /// Output sample rate in Hz (the inputs are resampled before the engine).
    #[arg(long, value_name = "HZ")]
    sample_rate: Option<u32>,
    /// Write a PNG of short-term loudness and limiter gain reduction over time.
    #[arg(long, value_name = "PNG")]
    plot: Option<PathBuf>,
    /// Print the results as JSON (one object, or an array for several masters).
    #[arg(long)]
    json: bool,
    /// Never show the progress bar.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Args)]
struct AnalyzeArgs {
    /// Audio files (WAV).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Print JSON: one object per file (an array for several files).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CheckArgs {
    /// Folder of stems.
    folder: PathBuf,
    /// Reference mix (default: mix.wav in the folder, if present).
    #[arg(long, value_name = "WAV")]
    mix: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Writes to stdout; a closed pipe (`stembus analyze … | head`) ends the program quietly
/// instead of panicking like `print!` would.
fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("stembus: error: cannot write to standard output: {e}");
        std::process::exit(EXIT_INPUT);
    }
}

fn print_json<T: serde::Serialize>(items: &[T]) -> Result<()> {
    let text = if items.len() == 1 {
        serde_json::to_string_pretty(&items[0])
    } else {
        serde_json::to_string_pretty(items)
    }
    .map_err(|e| CliError::failed(format!("cannot format JSON: {e}")))?;
    emit(&format!("{text}\n"));
    Ok(())
}

fn render(args: RenderArgs) -> Result<i32> {
    let opts = RenderOptions {
        inputs: args.inputs,
        mix: args.mix,
        settings: args.settings,
        target_lufs: args.target_lufs,
        ceiling_dbtp: args.ceiling_dbtp,
        deliver: args.deliver,
        targets_file: args.targets_file,
        output: args.output,
        format: match args.format {
            FormatArg::Pcm16 => OutputFormat::Pcm16,
            FormatArg::Pcm24 => OutputFormat::Pcm24,
            FormatArg::Float32 => OutputFormat::Float32,
        },
        sample_rate: args.sample_rate,
        plot: args.plot,
        progress: !args.no_progress && std::io::stderr().is_terminal(),
    };
    let outcome = run_render(&opts)?;
    for note in &outcome.notes {
        eprintln!("note: {note}");
    }
    if args.json {
        if !outcome.reports.is_empty() {
            print_json(&outcome.reports)?;
        }
    } else if !outcome.reports.is_empty() {
        emit(&text_table(&outcome.reports));
    }
    for f in &outcome.failures {
        eprintln!("stembus: error: {f}");
    }
    Ok(if outcome.failures.is_empty() {
        0
    } else {
        EXIT_PROBLEMS
    })
}

fn analyze(args: AnalyzeArgs) -> Result<i32> {
    let results = args
        .files
        .iter()
        .map(|f| analyze_file(f))
        .collect::<Result<Vec<_>>>()?;
    if args.json {
        print_json(&results)?;
    } else {
        for (i, r) in results.iter().enumerate() {
            if i > 0 {
                emit("\n");
            }
            emit(&text_report(r));
        }
    }
    Ok(0)
}

fn check(args: CheckArgs) -> Result<i32> {
    let report = check_folder(&args.folder, args.mix.as_deref())?;
    if args.json {
        print_json(std::slice::from_ref(&report))?;
    } else {
        emit(&stembus_cli::check::text_report(&report));
    }
    Ok(if report.pass { 0 } else { EXIT_PROBLEMS })
}

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()));
        eprintln!("stembus: internal error: {msg}{}", at.unwrap_or_default());
    }));
    // An interrupted run (Ctrl-C, SIGTERM, SIGHUP) exits without running destructors:
    // delete the temporary files of the outputs still being written first, so that nothing
    // half-written is left beside them. (If the handler cannot be installed the run goes on;
    // only an interruption would then leave a hidden temporary file.)
    let _ = ctrlc::set_handler(|| {
        stembus_cli::wav::remove_unfinished_outputs();
        eprintln!("stembus: interrupted; no output was left half-written");
        std::process::exit(EXIT_INTERRUPTED);
    });
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind as K;
            if matches!(e.kind(), K::DisplayHelp | K::DisplayVersion)
                || matches!(e.kind(), K::DisplayHelpOnMissingArgumentOrSubcommand)
            {
                let _ = e.print();
                return ExitCode::from(
                    if e.kind() == K::DisplayHelpOnMissingArgumentOrSubcommand {
                        EXIT_INPUT as u8
                    } else {
                        0
                    },
                );
            }
            // clap's message, on one line: the first line, plus the indented lines that
            // complete it ("the following required arguments were not provided:\n  <STEMS>").
            let rendered = e.render().to_string();
            let mut lines = rendered.lines();
            let mut message = lines.next().unwrap_or("invalid arguments").to_string();
            if message.ends_with(':') {
                for l in lines.take_while(|l| l.starts_with("  ")) {
                    message.push(' ');
                    message.push_str(l.trim());
                }
            }
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            eprintln!("stembus: error: {message} (see stembus --help)");
            return ExitCode::from(EXIT_INPUT as u8);
        }
    };
    let result = match cli.command {
        Command::Render(a) => render(a),
        Command::Analyze(a) => analyze(a),
        Command::Check(a) => check(a),
    };
    let _ = std::io::stdout().flush();
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("stembus: error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
