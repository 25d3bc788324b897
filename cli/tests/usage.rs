//! Usage errors and help of the `stembus` binary (the end-to-end tests of rendering, analysis
//! and checking are in the workspace's `tests/`). Being an integration test of this package,
//! it also makes `cargo test` build the binary with the test run's features, which those
//! end-to-end tests then reuse instead of building it again.

use std::process::Command;

fn stembus(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stembus"))
        .args(args)
        .output()
        .expect("run stembus");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_the_three_commands() {
    let (code, out, _) = stembus(&["--help"]);
    assert_eq!(code, 0);
    for command in ["render", "analyze", "check"] {
        assert!(out.contains(command), "--help lacks {command}:\n{out}");
    }
}

#[test]
fn an_unknown_command_is_one_line_and_a_usage_error() {
    let (code, out, err) = stembus(&["master-it"]);
    assert_ne!(code, 0);
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("stembus: error: "), "{err}");
    assert!(err.contains("master-it"), "{err}");
}
