//! `fedctl demo up` from the repository's top directory, as README's first
//! command runs it: the printed curl line works exactly as printed (through
//! a visited member's edge to a stand-in of the visitor's home system), the
//! demo's status lists every process, and `fedctl demo down` stops every
//! recorded PID.
//!
//! The demo listens on fixed loopback addresses (127.80.0.0/16 and others
//! by default); this test moves them (`--base-octet`) so that it runs beside
//! a user's demo and beside the same test of another checkout.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const FEDCTL: &str = env!("CARGO_BIN_EXE_fedctl");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_owned()
}

fn fedctl(args: &[&str]) -> Output {
    Command::new(FEDCTL)
        .args(args)
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .env_remove("FEDCTL_CONFIG")
        .output()
        .expect("run fedctl")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Stops the demo even when an assertion fails.
struct Down(String);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = fedctl(&["demo", "down", "--state", &self.0]);
    }
}

/// Whether PID still runs (a zombie waiting for init to reap it does not).
fn running(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.split_whitespace().next())
        .unwrap_or("X");
    !matches!(state, "Z" | "X")
}

#[test]
fn demo_up_then_the_printed_curl_line_works_and_down_stops_everything() {
    if !Path::new(FEDCTL).with_file_name("fedgate-edge").exists() {
        panic!(
            "fedgate-edge is missing beside {FEDCTL}: the demo runs real edges; build them first with `cargo build -p proxy` (or run `cargo test --workspace`)"
        );
    }
    if !tests::require_tool("curl") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("demo");
    let state_s = state.display().to_string();
    let _down = Down(state_s.clone());

    let base = (120 + (std::process::id() % 4) * 20).to_string();
    let up = fedctl(&["demo", "up", "--state", &state_s, "--base-octet", &base]);
    assert!(up.status.success(), "{}", text(&up));
    let out = String::from_utf8_lossy(&up.stdout).into_owned();
    let curl = out
        .lines()
        .find(|l| l.trim_start().starts_with("curl "))
        .unwrap_or_else(|| panic!("no curl line: {out}"))
        .trim()
        .to_owned();
    assert!(out.contains(&format!("dig @127.{base}.")), "{out}");
    assert!(out.contains("if you have dig"), "{out}");

    // The line works as printed, from where `demo up` ran.
    let mut body = String::new();
    for _ in 0..50 {
        let o = Command::new("sh")
            .args(["-c", &format!("{curl} --silent --show-error --max-time 10")])
            .current_dir(repo())
            .output()
            .expect("sh");
        body = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        if o.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        body.contains("Hello from dpft/ehr"),
        "`{curl}` gave: {body}"
    );

    // A second `up` finds it running.
    let again = fedctl(&["demo", "up", "--state", &state_s, "--base-octet", &base]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("already runs"),
        "{}",
        text(&again)
    );

    let status = fedctl(&["demo", "status", "--state", &state_s]);
    assert!(status.status.success(), "{}", text(&status));
    let st = String::from_utf8_lossy(&status.stdout).into_owned();
    for name in ["control", "origins", "edge-dpft-core", "edge-wmcc-core"] {
        assert!(st.contains(name), "{name} missing: {st}");
    }
    assert!(st.contains("head version 1"), "{st}");

    let pids: Vec<u32> = std::fs::read_to_string(state.join("pids"))
        .expect("pids file")
        .lines()
        .filter_map(|l| l.split(' ').nth(1)?.parse().ok())
        .collect();
    assert!(pids.len() >= 8, "{pids:?}");
    assert!(pids.iter().all(|p| running(*p)));

    let down = fedctl(&["demo", "down", "--state", &state_s]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(
        String::from_utf8_lossy(&down.stdout)
            .contains(&format!("stopped {} demo process(es)", pids.len())),
        "{}",
        text(&down)
    );
    for pid in &pids {
        assert!(!running(*pid), "PID {pid} still runs after `demo down`");
    }
    let gone = fedctl(&["demo", "status", "--state", &state_s]);
    assert_eq!(gone.status.code(), Some(3), "{}", text(&gone));
}
