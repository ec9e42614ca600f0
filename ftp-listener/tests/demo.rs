//! `ftp-listener demo` (issue 10, item 5) end to end: the embedded FTP server, three member
//! processes, a kill -9 and a SIGSTOP of the leader; the verdict must say nothing was lost or
//! handled twice, and both failovers must have happened. The slowest test of the crate
//! (about 10 s; it prints its own duration).

#![cfg(feature = "demo")]

use std::process::{Command, Stdio};
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_ftp-listener");

#[test]
fn the_demo_survives_a_crash_and_a_pause_and_says_so() {
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(["demo", "--files", "40"])
        .stdin(Stdio::null())
        .env_remove("RUST_LOG")
        // A stray variable of the caller must not leak into the members' configuration.
        .env("FTPL_HTTP__BIND", "256.0.0.1:1")
        .output()
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!(
        "{stdout}\n(demo took {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    assert!(out.status.success(), "{:?}\n{stdout}\n{stderr}", out.status);

    let verdict = stdout.lines().last().unwrap_or_default();
    assert!(
        verdict.starts_with("verdict: PASS files 40, lost 0, handled twice 0"),
        "{stdout}"
    );
    let failover = verdict
        .split_once("failover ")
        .map(|(_, f)| f)
        .unwrap_or_default();
    for event in ["kill -9 ", "SIGSTOP "] {
        let took = failover
            .split(", ")
            .find_map(|part| part.strip_prefix(event))
            .and_then(|t| t.strip_suffix(" s"))
            .and_then(|t| t.parse::<f64>().ok());
        // A number of seconds; "none" would mean no takeover at all. (No lower bound: the
        // liveness timeout runs from the leader's last renewal, which a loaded machine may
        // have delayed, not from the event.)
        assert!(took.is_some_and(|t| t > 0.0), "{event}: {verdict}");
    }
    for step in [
        "kill -9 node-",
        "took over (term",
        "SIGSTOP node-",
        "SIGCONT node-",
        "is a standby again",
    ] {
        assert!(
            stdout.contains(step),
            "no `{step}` in the timeline:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("member logs: 0 lines that are not JSON, 0 lines with the FTP password"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("(kept "),
        "a passing run removes its folder: {stdout}"
    );
}

#[test]
fn bad_demo_options_are_refused() {
    let out = Command::new(BIN)
        .args(["demo", "--files", "0"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--files"), "{stderr}");

    let out = Command::new(BIN)
        .args(["--config", "listener.toml", "demo"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("drop --config"), "{stderr}");
}
