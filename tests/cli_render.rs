//! `stembus render` end to end: generated stems in a temporary folder, the built binary, and the
//! masters checked with the engine's meters and the 16× reference true-peak meter.

mod cli_common;

use cli_common::*;
use serde_json::Value;

const SR: u32 = 48_000;

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {stdout}"))
}

#[test]
fn target_lufs_is_hit_within_0_1_lu_with_true_peak_under_the_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    write_song(dir.path(), SR, 8.0);
    let out = dir.path().join("master.wav");
    let (code, stdout, stderr) = run_text(&[
        "render",
        s(dir.path()),
        "--target-lufs",
        "-14",
        "--ceiling-dbtp",
        "-1",
        "--format",
        "f32",
        "--json",
        "-o",
        s(&out),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let report = json(&stdout);
    let (rate, ch) = read(&out);
    assert_eq!(rate, SR);
    assert_eq!(
        ch[0].len(),
        8 * SR as usize,
        "the master is as long as the stems"
    );
    let lufs = integrated_lufs(&ch[0], &ch[1], SR);
    assert!((lufs + 14.0).abs() <= 0.1, "integrated {lufs} LUFS");
    let tp = true_peak_16x(&ch);
    assert!(tp <= -1.0, "16× true peak {tp} dBTP");
    // The report tells the same.
    let reported = report["integrated_lufs"].as_f64().unwrap();
    assert!((reported - f64::from(lufs)).abs() < 0.01, "{report}");
    assert!(report["true_peak_dbtp"].as_f64().unwrap() <= -1.0);
    assert!(report["limiter_gr_max_db"].as_f64().unwrap() >= 0.0);
    assert!(report["passes"].as_u64().unwrap() >= 2);
}

#[test]
fn deliver_writes_one_master_per_target() {
    let dir = tempfile::tempdir().unwrap();
    let stems = dir.path().join("stems");
    std::fs::create_dir(&stems).unwrap();
    write_song(&stems, SR, 8.0);
    let out = dir.path().join("song.wav");
    let plot = dir.path().join("song.png");
    let (code, stdout, stderr) = run_text(&[
        "render",
        s(&stems),
        "--deliver",
        "streaming,club,vinyl",
        "--format",
        "16",
        "--json",
        "--plot",
        s(&plot),
        "-o",
        s(&out),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let reports = json(&stdout);
    assert_eq!(reports.as_array().map(Vec::len), Some(3), "{reports}");
    let mut masters = Vec::new();
    for (target, lufs, ceiling) in [
        ("streaming", Some(-14.0), -1.0),
        ("club", Some(-8.0), -1.0),
        ("vinyl", None, -3.0),
    ] {
        let path = dir.path().join(format!("song_{target}.wav"));
        let (rate, ch) = read(&path);
        assert_eq!(rate, SR);
        let measured = integrated_lufs(&ch[0], &ch[1], SR);
        if let Some(l) = lufs {
            assert!((measured - l).abs() <= 0.1, "{target}: {measured} LUFS");
        }
        let tp = true_peak_16x(&ch);
        assert!(
            tp <= ceiling,
            "{target}: 16× true peak {tp} dBTP > {ceiling}"
        );
        let png = std::fs::read(dir.path().join(format!("song_{target}.png"))).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        masters.push((measured, ch));
    }
    // Club is louder and denser than streaming; vinyl keeps the most dynamics.
    let gr = |i: usize| reports[i]["limiter_gr_max_db"].as_f64().unwrap();
    assert!(gr(1) > gr(0), "club limits harder than streaming");
    assert!(gr(2) <= 1.2, "vinyl limiter reduction {}", gr(2));
    let plr = |i: usize| reports[i]["plr_db"].as_f64().unwrap();
    assert!(
        plr(2) > plr(1),
        "vinyl keeps more peak-to-loudness than club"
    );
    // Vinyl reduces the sub (40 Hz on the bass) relative to the keys (440 Hz).
    let sub_ratio = |ch: &[Vec<f32>]| tone_level(&ch[0], 40.0, SR) / tone_level(&ch[0], 440.0, SR);
    let streaming = sub_ratio(&masters[0].1);
    let vinyl = sub_ratio(&masters[2].1);
    let drop_db = 20.0 * (streaming / vinyl).log10();
    assert!(
        drop_db > 4.0,
        "sub below 60 Hz reduced by only {drop_db:.1} dB"
    );
}

#[test]
fn plugin_state_settings_are_applied() {
    let dir = tempfile::tempdir().unwrap();
    let stems = dir.path().join("stems");
    std::fs::create_dir(&stems).unwrap();
    write_song(&stems, SR, 4.0);
    // The plugin's saved state: the keys stem ("Keys", slot 3) is muted.
    let mut settings = stembus_dsp::settings::EngineSettings::default();
    settings.stems[2].mute = true;
    let names: Vec<String> = ["Bass", "Drums", "Keys"].map(String::from).to_vec();
    let state = dir.path().join("state.json");
    std::fs::write(
        &state,
        stembus_dsp::state::settings_to_state_json(&settings, &names),
    )
    .unwrap();
    let out = dir.path().join("m.wav");
    let (code, _, stderr) =
        run_text(&["render", s(&stems), "--settings", s(&state), "-o", s(&out)]);
    assert_eq!(code, 0, "{stderr}");
    let (_, muted) = read(&out);
    let out2 = dir.path().join("open.wav");
    let (code, _, stderr) = run_text(&["render", s(&stems), "-o", s(&out2)]);
    assert_eq!(code, 0, "{stderr}");
    let (_, open) = read(&out2);
    let keys_muted = tone_level(&muted[0], 440.0, SR);
    let keys_open = tone_level(&open[0], 440.0, SR);
    assert!(
        keys_open > 0.01,
        "keys audible without the state: {keys_open}"
    );
    // What is left at 440 Hz is the other stems' leakage into that bin, 40 dB down.
    assert!(
        keys_muted < keys_open * 1e-2,
        "keys muted by the state: {keys_muted} (open: {keys_open})"
    );
}

#[test]
fn mono_stems_play_as_dual_mono_and_resampling_works() {
    let dir = tempfile::tempdir().unwrap();
    let sr_in = 44_100;
    let tone = sine(0.25, 1000.0, sr_in, sr_in as usize * 2);
    let stem = dir.path().join("mono.wav");
    write_int(&stem, &[tone], sr_in, 24);
    let out = dir.path().join("m.wav");
    let (code, _, stderr) = run_text(&[
        "render",
        s(&stem),
        "--sample-rate",
        "48000",
        "--format",
        "f32",
        "-o",
        s(&out),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let (rate, ch) = read(&out);
    assert_eq!(rate, 48_000);
    assert_eq!(ch.len(), 2);
    assert_eq!(ch[0].len(), 96_000, "2 s at 48 kHz");
    assert_eq!(ch[0], ch[1], "dual mono");
    let level = tone_level(&ch[0][4800..91_200], 1000.0, 48_000);
    assert!((level - 0.25).abs() < 0.01, "1 kHz at {level} (0.25 in)");
}

#[test]
fn an_unreachable_target_fails_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    // A stem at −60 dBFS: +24 dB of drive cannot bring it to −5 LUFS.
    let quiet = sine(1e-3, 500.0, SR, SR as usize * 2);
    let stem = dir.path().join("quiet.wav");
    write_f32(&stem, &[quiet.clone(), quiet], SR);
    let out = dir.path().join("never.wav");
    assert_error(
        &["render", s(&stem), "--target-lufs", "-5", "-o", s(&out)],
        1,
        &["cannot reach", "-5"],
    );
    assert_eq!(
        file_names(dir.path()),
        ["quiet.wav"],
        "no master and no temporary file left"
    );
}

#[test]
fn a_user_targets_file_adds_and_replaces_targets() {
    let dir = tempfile::tempdir().unwrap();
    let stems = dir.path().join("stems");
    std::fs::create_dir(&stems).unwrap();
    write_song(&stems, SR, 4.0);
    let targets = dir.path().join("targets.json");
    std::fs::write(
        &targets,
        r#"{ "podcast": { "description": "spoken word", "target_lufs": -16.0, "ceiling_dbtp": -2.0 },
             "streaming": { "target_lufs": -15.0, "ceiling_dbtp": -1.5 } }"#,
    )
    .unwrap();
    let out = dir.path().join("ep.wav");
    let (code, stdout, stderr) = run_text(&[
        "render",
        s(&stems),
        "--deliver",
        "podcast,streaming",
        "--targets-file",
        s(&targets),
        "--format",
        "24",
        "--json",
        "-o",
        s(&out),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json(&stdout).as_array().map(Vec::len), Some(2));
    for (target, lufs, ceiling) in [("podcast", -16.0, -2.0), ("streaming", -15.0, -1.5)] {
        let (_, ch) = read(&dir.path().join(format!("ep_{target}.wav")));
        let measured = integrated_lufs(&ch[0], &ch[1], SR);
        assert!((measured - lufs).abs() <= 0.1, "{target}: {measured} LUFS");
        let tp = true_peak_16x(&ch);
        assert!(tp <= ceiling, "{target}: {tp} dBTP");
    }
}

#[cfg(unix)]
#[test]
fn an_interrupted_render_leaves_no_file_behind() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    // Five minutes of a mono stem, and a loudness search: a render long enough to be caught
    // while its master is being written.
    let tone = sine(0.3, 220.0, SR, SR as usize * 300);
    let stem = dir.path().join("long.wav");
    write_int(&stem, &[tone], SR, 16);
    let out = dir.path().join("master.wav");
    let mut child = Command::new(stembus_bin())
        .args(["render", s(&stem), "--target-lufs", "-14", "-o", s(&out)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the master's temporary file, then interrupt the render (Ctrl-C).
    let start = Instant::now();
    loop {
        if file_names(dir.path())
            .iter()
            .any(|n| n.starts_with(".stembus-"))
        {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the render ended before it could be interrupted"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no temporary file"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let kill = Command::new("sh")
        .args(["-c", &format!("kill -INT {}", child.id())])
        .status()
        .unwrap();
    assert!(kill.success());
    let result = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(
        file_names(dir.path()),
        ["long.wav"],
        "no master and no temporary file left"
    );
}
