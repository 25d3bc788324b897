//! Build tasks (run from anywhere in the workspace):
//!
//! - `cargo xtask bundle stembus --release`: builds the CLAP and VST3 bundles into
//!   `target/bundled/stembus.clap` and `target/bundled/stembus.vst3` (names from `bundler.toml`;
//!   handled by `nice_plug_xtask`, like every command not listed here).
//! - `cargo xtask bundle-checked [stembus]`: the same bundles, optimised but with debug
//!   assertions and nice-plug's `assert_process_allocs` (the process fails loudly when the
//!   audio thread allocates), built in their own target directory so they never replace the
//!   release bundles: `target/checked/bundled/stembus.{clap,vst3}`. The host tests use these.
//! - `cargo xtask install [stembus] [--checked]`: copies the built bundles (from cargo's target
//!   directory, so also with `CARGO_TARGET_DIR` set, or `target/checked`) into the user's
//!   plugin folders: `~/.clap` and `~/.vst3` on Linux, `~/Library/Audio/Plug-Ins/{CLAP,VST3}` on
//!   macOS, `%COMMONPROGRAMFILES%\{CLAP,VST3}` on Windows.

use std::env;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The only plugin package in this workspace.
const PACKAGE: &str = "stembus";

/// Target directory of the checked bundles, relative to the workspace root.
const CHECKED_TARGET_DIR: &str = "target/checked";

fn main() -> nice_plug_xtask::Result<()> {
    let args: Vec<String> = env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("install") => install(&args[1..]),
        Some("bundle-checked") => bundle_checked(&args[1..]),
        _ => nice_plug_xtask::main(),
    }
}

/// An error with a message.
fn error(message: String) -> io::Error {
    io::Error::other(message)
}

/// The package named on the command line (default `stembus`), and the remaining flags.
fn package_and_flags(args: &[String]) -> io::Result<(String, Vec<String>)> {
    let mut package = PACKAGE.to_owned();
    let mut flags = Vec::new();
    for arg in args {
        if arg.starts_with('-') {
            flags.push(arg.clone());
        } else if arg == PACKAGE {
            package = arg.clone();
        } else {
            return Err(error(format!(
                "unknown package '{arg}' (only '{PACKAGE}' is bundled)"
            )));
        }
    }
    Ok((package, flags))
}

/// `bundle-checked`: release bundles with debug assertions and allocation checks on the audio
/// thread, in `target/checked/`.
fn bundle_checked(args: &[String]) -> nice_plug_xtask::Result<()> {
    let (package, flags) = package_and_flags(args)?;
    if let Some(flag) = flags.first() {
        return Err(error(format!("bundle-checked takes no options (got '{flag}')")).into());
    }
    nice_plug_xtask::chdir_workspace_root()?;
    let target_dir = env::current_dir()?.join(CHECKED_TARGET_DIR);
    // SAFETY: single-threaded at this point; the variables are read by the cargo child processes
    // that nice_plug_xtask spawns (and by its `cargo metadata` call, which picks the target
    // directory up).
    unsafe {
        env::set_var("CARGO_TARGET_DIR", &target_dir);
        env::set_var("CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS", "true");
    }
    let bundle_args = [
        "bundle",
        &package,
        "--release",
        "--features",
        "assert_process_allocs",
    ];
    nice_plug_xtask::main_with_args("cargo xtask", bundle_args.map(String::from))
}

/// `install`: copies the built bundles into the user's CLAP and VST3 folders.
fn install(args: &[String]) -> nice_plug_xtask::Result<()> {
    let (package, flags) = package_and_flags(args)?;
    let mut checked = false;
    for flag in &flags {
        match flag.as_str() {
            "--checked" => checked = true,
            _ => return Err(error(format!("unknown install option '{flag}'")).into()),
        }
    }
    nice_plug_xtask::chdir_workspace_root()?;
    let target_dir = if checked {
        env::current_dir()?.join(CHECKED_TARGET_DIR)
    } else {
        // Where `cargo xtask bundle` put them: cargo's target directory (which follows
        // `CARGO_TARGET_DIR` and the cargo configuration), as nice_plug_xtask resolves it.
        cargo_target_dir()?
    };
    let bundled = target_dir.join("bundled");
    let (clap_dir, vst3_dir) = plugin_dirs()?;
    for (extension, dest_dir) in [("clap", clap_dir), ("vst3", vst3_dir)] {
        let source = bundled.join(format!("{package}.{extension}"));
        if !source.exists() {
            let how = if checked {
                "cargo xtask bundle-checked".to_owned()
            } else {
                format!("cargo xtask bundle {package} --release")
            };
            return Err(error(format!("{} not found; run `{how}` first", source.display())).into());
        }
        fs::create_dir_all(&dest_dir)?;
        let dest = dest_dir.join(source.file_name().expect("bundle has a file name"));
        copy_replacing(&source, &dest)?;
        eprintln!("Installed {} -> {}", source.display(), dest.display());
    }
    Ok(())
}

/// Cargo's target directory for this workspace, from `cargo metadata`.
fn cargo_target_dir() -> io::Result<PathBuf> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()?;
    if !out.status.success() {
        return Err(error(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| error(format!("cargo metadata gave no JSON: {e}")))?;
    metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| error("cargo metadata gave no target directory".to_owned()))
}

/// The user's CLAP and VST3 plugin folders for this operating system.
fn plugin_dirs() -> io::Result<(PathBuf, PathBuf)> {
    let var = |name: &str| {
        env::var_os(name)
            .map(PathBuf::from)
            .ok_or_else(|| error(format!("${name} is not set")))
    };
    if cfg!(target_os = "windows") {
        let common = var("COMMONPROGRAMFILES")?;
        Ok((common.join("CLAP"), common.join("VST3")))
    } else if cfg!(target_os = "macos") {
        let plug_ins = var("HOME")?.join("Library/Audio/Plug-Ins");
        Ok((plug_ins.join("CLAP"), plug_ins.join("VST3")))
    } else {
        let home = var("HOME")?;
        Ok((home.join(".clap"), home.join(".vst3")))
    }
}

/// Copies the file or directory `source` to `dest`, replacing whatever `dest` was.
fn copy_replacing(source: &Path, dest: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dest) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(dest)?,
        Ok(_) => fs::remove_file(dest)?,
        Err(_) => {}
    }
    copy_recursive(source, dest)
}

/// Copies a file, or a directory tree, from `source` to `dest`.
fn copy_recursive(source: &Path, dest: &Path) -> io::Result<()> {
    if source.is_dir() {
        fs::create_dir_all(dest)?;
        for entry in fs::read_dir(source)? {
            let entry = entry?;
            copy_recursive(&entry.path(), &dest.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        fs::copy(source, dest).map(|_| ())
    }
}
