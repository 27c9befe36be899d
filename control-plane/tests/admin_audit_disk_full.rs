//! The control plane's admin audit log on a disk that fills: a real
//! `fedgate-control`, its admin audit log on a small tmpfs of the test's
//! own (root, as in CI), and `fedctl apply`:
//! - a record the disk cannot take is kept, its part-written bytes cut off
//!   again, so the log stays whole;
//! - from then on a change is refused (503, fedctl exit 4) with the reason
//!   and nothing applied, and `fedctl status` says why;
//! - once there is room the kept records reach the file in order, the next
//!   change is applied, and the log's chain verifies with every change asked.

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

#[test]
fn a_full_disk_under_the_admin_audit_log_refuses_changes_until_it_takes_the_records() {
    let w = World::new();
    let Some(disk) = SmallDisk::mount(&w.path("audit-disk"), "64k") else {
        return;
    };
    std::fs::create_dir_all(w.path("control-data")).expect("data dir");
    let log = w.path("control-data/admin-audit.jsonl");
    std::os::unix::fs::symlink(disk.path("admin-audit.jsonl"), &log)
        .expect("admin audit log on the small disk");
    let _control = start_control(&w, &document(&w, "", false));
    let home = w.admin(Some("home"));
    edit(&w, &change(&w, 0));
    let run = fedctl(&w, &home, &["apply", "-f", "fed", "--no-wait"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(results(&log), ["accepted"]);

    let filler = disk.fill("filler");
    // The next records fill what is left of the log's last page; the
    // first the disk cannot take is kept, and the change after it refused.
    let mut accepted = 1;
    let mut refused = None;
    for n in 1..40 {
        edit(&w, &change(&w, n));
        let run = fedctl(&w, &home, &["apply", "-f", "fed", "--no-wait"]);
        if run.code == 0 {
            accepted += 1;
        } else {
            refused = Some(run);
            break;
        }
    }
    let run = refused.expect("a change refused within 40");
    assert_eq!(run.code, 4, "{run:?}");
    assert!(
        run.stderr.contains("answered 503")
            && run
                .stderr
                .contains("cannot be written (No space left on device")
            && run.stderr.contains("nothing was applied"),
        "{run:?}"
    );
    assert_eq!(versions(&w, &home), 1 + accepted, "nothing applied");
    let on_file = results(&log);
    assert!(
        on_file.len() < accepted && on_file.iter().all(|r| r == "accepted"),
        "{on_file:?} of {accepted} accepted: the last is kept, not cut short on file"
    );
    let status = fedctl(&w, &home, &["status"]);
    assert!(
        status.stdout.contains("admin audit log")
            && status
                .stdout
                .contains("changes are refused until it can be written"),
        "{status:?}"
    );

    // Room again: the records kept go first, then the change goes through.
    std::fs::remove_file(&filler).expect("free the disk");
    let run = fedctl(&w, &home, &["apply", "-f", "fed", "--no-wait"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(versions(&w, &home), 2 + accepted);
    let mut expected = vec!["accepted"; accepted];
    expected.extend(["audit-unavailable", "accepted"]);
    assert_eq!(results(&log), expected);
    let status = fedctl(&w, &home, &["status"]);
    assert!(!status.stdout.contains("admin audit log"), "{status:?}");
}
