//! The control plane's admin audit log when writing it fails: a real
//! `fedgate-control`, its admin audit log on a small tmpfs of the test's
//! own (root, as in CI), and `fedctl apply`.
//!
//! On a disk that fills:
//! - a record the disk cannot take is kept, its part-written bytes cut off
//!   again, so the log stays whole;
//! - from then on a change is refused (503, fedctl exit 4) with the reason
//!   and nothing applied, and `fedctl status` says why;
//! - once there is room the kept records reach the file in order, the next
//!   change is applied, and the log's chain verifies with every change asked;
//! - a control plane stopped while it keeps records logs each whole and
//!   exits 1; appended to the file in order they continue the chain.
//!
//! After a crash in the middle of a record, the next start sets the part
//! written aside and the chain goes on.

mod kit;

use federation::chain::Verifier;
use kit::*;
use tests::{SmallDisk, World};

/// The `result` of every record of the admin audit log, its chain checked.
fn results(log: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).expect("admin audit log");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "a line cut short:\n{text}"
    );
    let mut chain = Verifier::default();
    text.lines()
        .map(|l| {
            chain.handle_line(l).expect("the chain verifies");
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON");
            v["result"].as_str().unwrap_or_default().to_owned()
        })
        .collect()
}

/// A change `home`'s admin may make: its policy opening secret to away,
/// described as change `n`.
fn change(w: &World, n: u32) -> String {
    document(
        w,
        &OPEN_SECRET.replace(
            "description: Home opens secret to away",
            &format!("description: Home opens secret to away (change {n})"),
        ),
        false,
    )
}

fn versions(w: &World, who: &(std::path::PathBuf, std::path::PathBuf)) -> usize {
    let history = fedctl(w, who, &["history", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&history.stdout).expect("json");
    v.as_array().map_or(0, Vec::len)
}

/// A control plane whose admin audit log is on a small tmpfs of the
/// test's own, one change of `home`'s admin applied and on file.
struct OnSmallDisk {
    w: World,
    disk: SmallDisk,
    log: std::path::PathBuf,
    control: tests::Proc,
    home: (std::path::PathBuf, std::path::PathBuf),
}

impl OnSmallDisk {
    fn start() -> Option<Self> {
        let w = World::new();
        let disk = SmallDisk::mount(&w.path("audit-disk"), "64k")?;
        std::fs::create_dir_all(w.path("control-data")).expect("data dir");
        let log = w.path("control-data/admin-audit.jsonl");
        std::os::unix::fs::symlink(disk.path("admin-audit.jsonl"), &log)
            .expect("admin audit log on the small disk");
        let control = start_control(&w, &document(&w, "", false));
        let home = w.admin(Some("home"));
        edit(&w, &change(&w, 0));
        let run = fedctl(&w, &home, &["apply", "-f", "fed", "--no-wait"]);
        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(results(&log), ["accepted"]);
        Some(Self {
            w,
            disk,
            log,
            control,
            home,
        })
    }
}

/// Changes applied one after another on a full disk: the next records
/// fill what is left of the log's last page; the first the disk cannot
/// take is kept, and the change after it refused. The changes accepted
/// (counting the one before the disk filled) and the refusal.
fn apply_until_refused(w: &World, home: &(std::path::PathBuf, std::path::PathBuf)) -> (usize, Run) {
    for n in 1..40 {
        edit(w, &change(w, n));
        let run = fedctl(w, home, &["apply", "-f", "fed", "--no-wait"]);
        if run.code != 0 {
            // Changes 0 to n - 1 were accepted.
            return (n as usize, run);
        }
    }
    panic!("no change refused within 40 on a full disk");
}

#[test]
fn a_full_disk_under_the_admin_audit_log_refuses_changes_until_it_takes_the_records() {
    let Some(s) = OnSmallDisk::start() else {
        return;
    };
    let (w, disk, log, home) = (&s.w, &s.disk, &s.log, &s.home);

    let filler = disk.fill("filler");
    let (accepted, run) = apply_until_refused(w, home);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(
        run.stderr.contains("answered 503")
            && run
                .stderr
                .contains("cannot be written (No space left on device")
            && run.stderr.contains("nothing was applied"),
        "{run:?}"
    );
    assert_eq!(versions(w, home), 1 + accepted, "nothing applied");
    let on_file = results(log);
    assert!(
        on_file.len() < accepted && on_file.iter().all(|r| r == "accepted"),
        "{on_file:?} of {accepted} accepted: the last is kept, not cut short on file"
    );
    let status = fedctl(w, home, &["status"]);
    assert!(
        status.stdout.contains("admin audit log")
            && status
                .stdout
                .contains("changes are refused until it can be written"),
        "{status:?}"
    );

    // Room again: the records kept go first, then the change goes through.
    std::fs::remove_file(&filler).expect("free the disk");
    let run = fedctl(w, home, &["apply", "-f", "fed", "--no-wait"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(versions(w, home), 2 + accepted);
    let mut expected = vec!["accepted"; accepted];
    expected.extend(["audit-unavailable", "accepted"]);
    assert_eq!(results(log), expected);
    let status = fedctl(w, home, &["status"]);
    assert!(!status.stdout.contains("admin audit log"), "{status:?}");
}

/// The records a stopped control plane logged as not written, each as it
/// was (its exact bytes: the next record's `prev` is their hash).
fn logged_records(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("stopping with an admin audit record not written"))
        .map(|l| {
            let at = l.find("record=").expect("record field") + "record=".len();
            let mut values =
                serde_json::Deserializer::from_str(&l[at..]).into_iter::<serde_json::Value>();
            values.next().expect("a record").expect("JSON");
            l[at..at + values.byte_offset()].to_owned()
        })
        .collect()
}

#[test]
fn a_control_plane_stopped_with_records_kept_logs_them_whole_and_exits_1() {
    let Some(mut s) = OnSmallDisk::start() else {
        return;
    };
    let (w, disk, log, home) = (&s.w, &s.disk, s.log.clone(), s.home.clone());
    let filler = disk.fill("filler");
    let (accepted, run) = apply_until_refused(w, &home);
    assert_eq!(run.code, 4, "{run:?}");
    let on_file = results(&log).len();

    // Stopped with the disk still full: it tries, then logs what it kept.
    let status = s
        .control
        .terminate(std::time::Duration::from_secs(15))
        .expect("the control plane stops");
    let text = s.control.log_text();
    assert_eq!(status.code(), Some(1), "{text}");
    let kept = logged_records(&text);
    assert_eq!(kept.len(), accepted + 1 - on_file, "{text}");
    assert!(
        text.contains(&format!(
            "stopped with {} admin audit record(s) not written",
            kept.len()
        )),
        "{text}"
    );

    // Put back in order once there is room, they continue the chain: the
    // control plane starts on the log and the next change goes on from it.
    std::fs::remove_file(&filler).expect("free the disk");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("admin audit log");
    for record in &kept {
        std::io::Write::write_all(&mut file, format!("{record}\n").as_bytes()).expect("append");
    }
    drop(file);
    let mut expected = vec!["accepted"; accepted];
    expected.push("audit-unavailable");
    assert_eq!(results(&log), expected);
    let _control = start_control(w, &document(w, "", false));
    edit(w, &change(w, 99));
    let run = fedctl(w, &home, &["apply", "-f", "fed", "--no-wait"]);
    assert_eq!(run.code, 0, "{run:?}");
    expected.push("accepted");
    assert_eq!(results(&log), expected);
}

/// A control plane that stopped in the middle of writing a record (a
/// crash, a power cut) left the start of it with no newline: the next
/// start moves those bytes to a file beside the log, says so, and goes on
/// from the last whole record. Bytes that are not a record's start still
/// refuse to start.
#[test]
fn a_record_cut_short_by_a_crash_is_set_aside_at_the_next_start() {
    let w = World::new();
    let mut control = start_control(&w, &document(&w, "", false));
    let home = w.admin(Some("home"));
    edit(&w, &change(&w, 0));
    assert_eq!(
        fedctl(&w, &home, &["apply", "-f", "fed", "--no-wait"]).code,
        0
    );
    control.terminate(std::time::Duration::from_secs(15));
    let log = w.path("control-data/admin-audit.jsonl");
    assert_eq!(results(&log), ["accepted"]);

    // What a write cut short leaves: the next record's opening and part of
    // its fields.
    let mut chain = Verifier::default();
    for line in std::fs::read_to_string(&log).expect("log").lines() {
        chain.handle_line(line).expect("verifies");
    }
    let torn = format!(
        r#"{}"action":"apply","caller":"spiffe://"#,
        chain.next_opening()
    );
    let whole = std::fs::read(&log).expect("log");
    std::fs::write(&log, [whole.as_slice(), torn.as_bytes()].concat()).expect("tear");

    let control = start_control(&w, &document(&w, "", false));
    let text = control.log_text();
    assert!(
        text.contains(
            "admin audit log ended in a record cut short; set it aside and continued the chain"
        ),
        "{text}"
    );
    let aside: Vec<_> = std::fs::read_dir(w.path("control-data"))
        .expect("data dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().contains("admin-audit.jsonl.cut-short-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).expect("aside"), torn.as_bytes());
    edit(&w, &change(&w, 1));
    assert_eq!(
        fedctl(&w, &home, &["apply", "-f", "fed", "--no-wait"]).code,
        0
    );
    assert_eq!(results(&log), ["accepted", "accepted"]);
    // The information-governance team's check: the edge's verifier proves
    // the admin audit log as it does a flow audit log (one chain format).
    let (ok, out, err) = tests::run(
        &edge_bin().display().to_string(),
        &["audit", "verify", log.to_str().expect("path")],
    );
    assert!(ok && out.starts_with("ok: 2 records"), "{out} {err}");
    drop(control);

    // Not the next record's start: refused, the log as it was.
    let altered = format!(
        "{}{{\"seq\":1,",
        std::fs::read_to_string(&log).expect("log")
    );
    std::fs::write(&log, &altered).expect("alter");
    let mut control = tests::Proc::start(
        "control",
        std::path::Path::new(CONTROL),
        &w.control_args(&document(&w, "", false), control_addr(&w)),
        w.path("control-2.log"),
    );
    let status = control
        .wait_exit(std::time::Duration::from_secs(15))
        .expect("refuses to start");
    let text = control.log_text();
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "line 3 has no newline and is not the start of record 3: not a record cut short"
        ) && text.contains("move it aside and investigate"),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(&log).expect("log"), altered);
}
