//! Where the built plugin bundles are, and a clear failure when they are missing or older than
//! the sources.
//!
//! The host tests prefer the checked bundles from `cargo xtask bundle-checked` (optimised, with
//! debug assertions and nice-plug's `assert_process_allocs`, in `target/checked/bundled/`) and
//! fall back to the release bundles from `cargo xtask bundle stembus --release`
//! (`target/bundled/`). Environment:
//! - `STEMBUS_BUNDLE_DIR`: directory holding `stembus.clap` and `stembus.vst3` (overrides both);
//! - `STEMBUS_ALLOW_STALE_BUNDLE=1`: test a bundle older than `plugin/` or `dsp/` sources.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The command that builds the checked bundles the tests prefer.
pub const BUILD_COMMAND: &str = "cargo xtask bundle-checked";

/// The command that builds the release bundles (used when no checked ones exist).
pub const RELEASE_BUILD_COMMAND: &str = "cargo xtask bundle stembus --release";

/// Workspace root (the root package `stembus-e2e` lives there).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Directories that may hold the bundles, in order of preference.
pub fn bundle_dirs() -> Vec<PathBuf> {
    if let Some(dir) = std::env::var_os("STEMBUS_BUNDLE_DIR") {
        return vec![PathBuf::from(dir)];
    }
    let root = workspace_root();
    let release_target = match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(target) if target.is_absolute() => target,
        Some(target) => root.join(target),
        None => root.join("target"),
    };
    vec![
        root.join("target").join("checked").join("bundled"),
        release_target.join("bundled"),
    ]
}

/// The first bundle directory holding `name`, or a panic naming the build commands.
fn find(name: &str) -> PathBuf {
    let dirs = bundle_dirs();
    match dirs.iter().find(|dir| dir.join(name).exists()) {
        Some(dir) => dir.join(name),
        None => panic!(
            "plugin bundle {name} not found in {}.\n\
             Build the bundles first:  {BUILD_COMMAND}   (or {RELEASE_BUILD_COMMAND})\n\
             (or point STEMBUS_BUNDLE_DIR at a directory holding stembus.clap and stembus.vst3)",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    }
}

/// Path of the CLAP bundle (a shared library named `stembus.clap` on Linux). Panics with the
/// build command if it is missing or stale.
pub fn clap_bundle() -> PathBuf {
    let path = find("stembus.clap");
    check(&path, &path);
    println!("CLAP bundle: {}", path.display());
    path
}

/// Path of the shared library inside the VST3 bundle
/// (`stembus.vst3/Contents/x86_64-linux/stembus.so`). Panics with the build command if it is
/// missing or stale.
pub fn vst3_library() -> PathBuf {
    let bundle = find("stembus.vst3");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x86_64-linux",
        "aarch64" => "aarch64-linux",
        other => panic!("no VST3 bundle layout known for architecture {other}"),
    };
    let path = bundle.join("Contents").join(arch).join("stembus.so");
    check(&bundle, &path);
    println!("VST3 bundle: {}", bundle.display());
    path
}

fn check(bundle: &Path, library: &Path) {
    let built = match std::fs::metadata(library).and_then(|m| m.modified()) {
        Ok(time) => time,
        Err(_) => panic!(
            "plugin bundle {} is incomplete: {} not found.\n\
             Rebuild the bundles:  {BUILD_COMMAND}   (or {RELEASE_BUILD_COMMAND})",
            bundle.display(),
            library.display()
        ),
    };
    if std::env::var_os("STEMBUS_ALLOW_STALE_BUNDLE").is_some() {
        return;
    }
    let root = workspace_root();
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for source in [
        "plugin/src",
        "plugin/Cargo.toml",
        "dsp/src",
        "dsp/Cargo.toml",
    ] {
        newest_file(&root.join(source), &mut newest);
    }
    if let Some((time, source)) = newest
        && time > built
    {
        panic!(
            "plugin bundle {} is older than {}.\n\
             Rebuild the bundles:  {BUILD_COMMAND}   (or {RELEASE_BUILD_COMMAND})\n\
             (or set STEMBUS_ALLOW_STALE_BUNDLE=1 to test the old bundle anyway)",
            bundle.display(),
            source.display()
        );
    }
}

/// Newest modification time of the files under `path` (a file or a directory).
fn newest_file(path: &Path, newest: &mut Option<(SystemTime, PathBuf)>) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.is_dir() {
        if let Ok(entries) = std::fs::read_dir(path) {
            for entry in entries.flatten() {
                newest_file(&entry.path(), newest);
            }
        }
    } else if let Ok(time) = meta.modified()
        && newest.as_ref().is_none_or(|(t, _)| time > *t)
    {
        *newest = Some((time, path.to_path_buf()));
    }
}
