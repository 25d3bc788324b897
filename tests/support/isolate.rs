//! Runs a test body in a child process (the test binary itself, filtered to that one test), so
//! a plugin that crashes or aborts the host fails only that test, with a message naming the
//! signal, instead of killing the whole test binary.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Environment variable carrying, in the child, the name of the test it must run.
const CHILD_ENV: &str = "STEMBUS_E2E_CHILD";

/// Longest time one isolated test may take before it is killed and reported as hung.
const TIMEOUT: Duration = Duration::from_secs(300);

/// Registers plain `fn name()` test bodies of the invoking test crate: for each, a
/// `#[test] fn isolated::name` runs the body in a child process (see [`run_isolated`]).
/// Invoke it once, at the crate root, with every test body's name:
/// `isolated_tests!(first_test, second_test);`
#[macro_export]
macro_rules! isolated_tests {
    ($($name:ident),+ $(,)?) => {
        mod isolated {
            $(
                #[test]
                fn $name() {
                    let module = module_path!();
                    let module = module.split_once("::").map_or(module, |(_, m)| m);
                    let name = format!("{module}::{}", stringify!($name));
                    $crate::isolate::run_isolated(&name, super::$name);
                }
            )+
        }
    };
}

/// In the child (`STEMBUS_E2E_CHILD` = `test_name`) runs `body`; in the parent re-runs the
/// current test binary with `test_name --exact` and turns its outcome into a pass or a panic
/// carrying the child's output.
pub fn run_isolated(test_name: &str, body: impl FnOnce()) {
    if std::env::var(CHILD_ENV).is_ok_and(|name| name == test_name) {
        body();
        return;
    }
    let exe = std::env::current_exe().expect("path of the test binary");
    let dir = std::env::temp_dir();
    let tag = format!(
        "stembus-e2e-{}-{}",
        std::process::id(),
        test_name.replace("::", "-")
    );
    let out_path = dir.join(format!("{tag}.out"));
    let err_path = dir.join(format!("{tag}.err"));
    let stdout = std::fs::File::create(&out_path).expect("child stdout file");
    let stderr = std::fs::File::create(&err_path).expect("child stderr file");
    let mut child = Command::new(exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, test_name)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("spawn the test binary");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break Some(status);
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    // Pass the child's own report through, so `--nocapture` runs show the measurements.
    print!("{out}");
    eprint!("{err}");
    // With `--nocapture` the test's own output sits between "test NAME ..." and "ok", so
    // look at the summary line.
    let ran = out.contains(&format!("test {test_name} ...")) && out.contains(" 1 passed; 0 failed");
    match status {
        Some(status) if status.success() && ran => {}
        Some(status) if status.success() => {
            panic!("child process did not run test `{test_name}` (name filter mismatch?)")
        }
        Some(status) => match status.signal() {
            Some(signal) => panic!(
                "the plugin crashed the host process in `{test_name}`: killed by signal {signal} \
                 ({}); see the child's output above",
                signal_name(signal)
            ),
            None => panic!("`{test_name}` failed in its child process (status {status})"),
        },
        None => panic!(
            "`{test_name}` hung: killed after {} s (plugin deadlock or endless loop?)",
            TIMEOUT.as_secs()
        ),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        4 => "SIGILL: illegal instruction, e.g. a Rust abort on panic across the FFI boundary",
        6 => "SIGABRT: abort, e.g. a panic in a function that cannot unwind",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV: invalid memory access",
        _ => "other signal",
    }
}
