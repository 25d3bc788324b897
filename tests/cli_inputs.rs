//! `stembus analyze`, `stembus check` and the input errors of every command, end to end.

mod cli_common;

use cli_common::*;
use serde_json::Value;

const SR: u32 = 48_000;

/// Writes the song's stems and their exact sum (`mix.wav`) into `dir` as 24-bit or float
/// files; `shift` delays stem `i` by `n` samples *after* the mix was summed.
fn stem_folder(dir: &std::path::Path, bits: Option<u16>, shift: Option<(usize, usize)>) {
    let song = song(SR, 4.0);
    let n = song[0].1[0].len();
    // Quantise the stems first, then sum what was written, so the mix is their exact sum
    // (up to the mix's own rounding).
    let q = |x: f32| match bits {
        Some(b) => {
            let scale = (1u64 << (b - 1)) as f64;
            ((f64::from(x) * scale).round() / scale) as f32
        }
        None => x,
    };
    let mut mix = [vec![0.0f32; n], vec![0.0f32; n]];
    for (i, (name, chans)) in song.into_iter().enumerate() {
        let mut chans: Vec<Vec<f32>> = chans
            .into_iter()
            .map(|c| c.into_iter().map(q).collect())
            .collect();
        for (m, c) in mix.iter_mut().zip(&chans) {
            for (a, b) in m.iter_mut().zip(c) {
                *a += b;
            }
        }
        if let Some((stem, by)) = shift
            && stem == i
        {
            for c in &mut chans {
                c.rotate_right(by);
                c[..by].fill(0.0);
            }
        }
        let path = dir.join(format!("{name}.wav"));
        match bits {
            Some(b) => write_int(&path, &chans, SR, b),
            None => write_f32(&path, &chans, SR),
        }
    }
    let path = dir.join("mix.wav");
    match bits {
        Some(b) => write_int(&path, &mix, SR, b),
        None => write_f32(&path, &mix, SR),
    }
}

fn check_json(dir: &std::path::Path) -> (i32, Value) {
    let (code, out, err) = run_text(&["check", s(dir), "--json"]);
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    (code, v)
}

fn file<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["file"].as_str().unwrap().ends_with(name))
        .unwrap()
}

#[test]
fn analyze_json_has_the_exact_fields_and_null_for_silence() {
    let dir = tempfile::tempdir().unwrap();
    let song = song(SR, 5.0);
    let keys = dir.path().join("keys.wav");
    write_int(&keys, &[song[2].1[0].clone(), song[2].1[1].clone()], SR, 24);
    let silence = dir.path().join("silence.wav");
    write_f32(&silence, &[vec![0.0; SR as usize]], SR);

    let (code, out, err) = run_text(&["analyze", "--json", s(&keys)]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let mut keys_found: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys_found.sort_unstable();
    let mut expected = vec![
        "file",
        "sample_rate",
        "channels",
        "duration_s",
        "integrated_lufs",
        "lra_lu",
        "sample_peak_dbfs",
        "true_peak_dbtp",
        "max_momentary_lufs",
        "max_short_term_lufs",
        "plr_db",
        "correlation",
        "series",
    ];
    expected.sort_unstable();
    assert_eq!(keys_found, expected);
    assert_eq!(v["sample_rate"], 48_000);
    assert_eq!(v["channels"], 2);
    assert!((v["duration_s"].as_f64().unwrap() - 5.0).abs() < 1e-6);
    // The same meters as the plugin.
    let (_, ch) = read(&keys);
    let lufs = integrated_lufs(&ch[0], &ch[1], SR);
    assert!((v["integrated_lufs"].as_f64().unwrap() - f64::from(lufs)).abs() < 0.01);
    let tp = v["true_peak_dbtp"].as_f64().unwrap();
    let sp = v["sample_peak_dbfs"].as_f64().unwrap();
    assert!(
        tp >= sp - 0.01 && tp < sp + 1.0,
        "true peak {tp}, sample peak {sp}"
    );
    let plr = v["plr_db"].as_f64().unwrap();
    assert!((plr - (tp - v["integrated_lufs"].as_f64().unwrap())).abs() < 0.01);
    let corr = v["correlation"].as_f64().unwrap();
    assert!(corr > 0.5 && corr < 1.0, "slightly wide keys: {corr}");
    let series = v["series"].as_array().unwrap();
    assert_eq!(series.len(), 50, "10 Hz over 5 s");
    assert!((series[9]["t"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    for p in series {
        let mut k: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort_unstable();
        assert_eq!(k, ["momentary_lufs", "short_term_lufs", "t"]);
    }

    // Two files: an array; silence is null, never a number.
    let (code, out, err) = run_text(&["analyze", "--json", s(&keys), s(&silence)]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    let quiet = &arr[1];
    assert_eq!(quiet["channels"], 1);
    for field in [
        "integrated_lufs",
        "lra_lu",
        "sample_peak_dbfs",
        "true_peak_dbtp",
        "max_momentary_lufs",
        "max_short_term_lufs",
        "plr_db",
        "correlation",
    ] {
        assert!(
            quiet[field].is_null(),
            "{field} of silence: {}",
            quiet[field]
        );
    }
    assert!(
        quiet["series"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["momentary_lufs"].is_null())
    );
}

#[test]
fn check_passes_a_clean_delivery() {
    let dir = tempfile::tempdir().unwrap();
    stem_folder(dir.path(), None, None);
    let (code, v) = check_json(dir.path());
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["pass"], true);
    let null = &v["null_test"];
    assert_eq!(null["pass"], true);
    for stem in ["bass.wav", "drums.wav", "keys.wav"] {
        let f = file(&v, stem);
        assert_eq!(f["offset_samples"], 0, "{f}");
        assert!(
            (f["gain_in_mix"].as_f64().unwrap() - 1.0).abs() < 0.2,
            "{f}"
        );
    }
    // The text report says so too.
    let (code, out, _) = run_text(&["check", s(dir.path())]);
    assert_eq!(code, 0);
    assert!(out.contains("PASS"), "{out}");
}

#[test]
fn check_finds_a_one_sample_offset() {
    let dir = tempfile::tempdir().unwrap();
    stem_folder(dir.path(), Some(24), Some((2, 1)));
    let (code, v) = check_json(dir.path());
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(file(&v, "keys.wav")["offset_samples"], 1);
    assert_eq!(file(&v, "bass.wav")["offset_samples"], 0);
    assert_eq!(v["null_test"]["pass"], false, "the null test fails too");
    let problems = v["problems"].to_string();
    assert!(
        problems.contains("keys.wav is late by 1 sample"),
        "{problems}"
    );
}

#[test]
fn check_finds_a_missing_stem() {
    let dir = tempfile::tempdir().unwrap();
    stem_folder(dir.path(), Some(24), None);
    std::fs::remove_file(dir.path().join("drums.wav")).unwrap();
    let (code, v) = check_json(dir.path());
    assert_eq!(code, 1, "{v:#}");
    let null = &v["null_test"];
    assert_eq!(null["pass"], false);
    assert!(
        null["residual_peak_dbfs"].as_f64().unwrap() > -20.0,
        "{null}"
    );
    assert!(null["residual_rms_dbfs"].as_f64().is_some());
}

#[test]
fn check_warns_on_16_bit_and_flags_clipping_and_dc() {
    let dir = tempfile::tempdir().unwrap();
    stem_folder(dir.path(), Some(16), None);
    let (code, v) = check_json(dir.path());
    assert_eq!(code, 0, "16-bit is a warning, not a problem: {v:#}");
    assert!(v["warnings"].to_string().contains("16-bit"), "{v:#}");
    assert_eq!(
        v["null_test"]["pass"], true,
        "quantisation stays within the 16-bit bound"
    );

    // A clipped stem with a DC offset.
    let mut x: Vec<f32> = sine(1.4, 100.0, SR, SR as usize)
        .into_iter()
        .map(|v| (v + 0.01).clamp(-1.0, 1.0))
        .collect();
    x[0] = 0.0;
    let dir2 = tempfile::tempdir().unwrap();
    write_int(&dir2.path().join("hot.wav"), &[x], SR, 24);
    let (code, v) = check_json(dir2.path());
    assert_eq!(code, 1, "{v:#}");
    let f = file(&v, "hot.wav");
    assert!(f["clipped_samples"].as_u64().unwrap() > 100, "{f}");
    let problems = v["problems"].to_string();
    assert!(
        problems.contains("clipped") && problems.contains("DC offset"),
        "{problems}"
    );
}

#[test]
fn bad_inputs_get_one_line_errors_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let song = song(SR, 1.0);
    let good = d.join("good.wav");
    write_f32(&good, &[song[2].1[0].clone(), song[2].1[1].clone()], SR);
    let out = d.join("out.wav");

    // Missing file.
    let missing = d.join("nope.wav");
    assert_error(
        &["render", s(&missing), "-o", s(&out)],
        2,
        &["nope.wav", "no such file"],
    );
    assert_error(&["analyze", s(&missing)], 2, &["nope.wav"]);
    assert_error(&["check", s(&missing)], 2, &["nope.wav"]);

    // Not a WAV at all.
    let text = d.join("text.wav");
    std::fs::write(&text, "just some text, not audio").unwrap();
    assert_error(&["analyze", s(&text)], 2, &["text.wav", "not a wav"]);

    // Truncated: the data chunk is cut short.
    let bytes = std::fs::read(&good).unwrap();
    let cut = d.join("cut.wav");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert_error(
        &["render", s(&cut), "-o", s(&out)],
        2,
        &["cut.wav", "truncated"],
    );

    // Mismatched sample rates: both files and both rates named.
    let other = d.join("other.wav");
    write_f32(&other, &[vec![0.1; 44_100]], 44_100);
    assert_error(
        &["render", s(&good), s(&other), "-o", s(&out)],
        2,
        &[
            "sample rates differ",
            "good.wav",
            "48000",
            "other.wav",
            "44100",
        ],
    );

    // More than eight stems.
    let many = d.join("many");
    std::fs::create_dir(&many).unwrap();
    for i in 0..9 {
        write_f32(&many.join(format!("s{i}.wav")), &[vec![0.0; 100]], SR);
    }
    assert_error(
        &["render", s(&many), "-o", s(&out)],
        2,
        &["9 stems", "at most 8"],
    );

    // Unwritable output path.
    let bad_out = d.join("no_such_folder").join("out.wav");
    assert_error(
        &["render", s(&good), "-o", s(&bad_out)],
        2,
        &["cannot write", "out.wav"],
    );
    let under_file = good.join("out.wav");
    assert_error(
        &["render", s(&good), "-o", s(&under_file)],
        2,
        &["cannot write"],
    );

    // Usage errors: an unknown flag, a bad format, an unknown target.
    assert_error(&["render", s(&good), "--loud"], 2, &["--loud"]);
    assert_error(&["render", s(&good), "--format", "8"], 2, &["8"]);
    assert_error(
        &["render", s(&good), "--deliver", "radio", "-o", s(&out)],
        2,
        &["radio", "streaming"],
    );
    // A settings file with a typo.
    let settings = d.join("settings.json");
    std::fs::write(&settings, r#"{"master": {"drive": 3}}"#).unwrap();
    assert_error(
        &[
            "render",
            s(&good),
            "--settings",
            s(&settings),
            "-o",
            s(&out),
        ],
        2,
        &["settings.json", "master.drive"],
    );
    assert!(!out.exists(), "no master after failed runs");
}
