//! `fedctl`'s online commands when something is wrong, against a real
//! control plane: each failure exits with its documented status and a
//! message that says what to do next.

mod kit;

use kit::*;
use tests::World;

#[test]
fn exit_statuses_are_documented_in_help() {
    let w = World::new();
    let help = fedctl_bare(&w, &["--help"]);
    assert_eq!(help.code, 0);
    for line in [
        "0  success",
        "1  `check` found errors; `diff` found differences",
        "2  the command line was wrong",
        "3  input could not be used",
        "4  the control plane could not be reached",
        "5  refused",
        "6  conflict",
        "7  applied, but not every edge",
    ] {
        assert!(
            help.stdout.contains(line),
            "`{line}` missing from:\n{}",
            help.stdout
        );
    }
    for cmd in ["apply", "diff", "get", "history", "rollback", "status"] {
        let h = fedctl_bare(&w, &[cmd, "--help"]);
        assert!(
            h.stdout.contains("Example"),
            "{cmd} --help has no example: {h:?}"
        );
        assert!(h.stdout.contains("FEDCTL_CONTROL"), "{cmd} --help: {h:?}");
    }
}

#[test]
fn no_control_plane_configured_is_a_usage_error() {
    let w = World::new();
    let run = fedctl_bare(&w, &["status"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("no control-plane address: give --control, set FEDCTL_CONTROL"),
        "{run:?}"
    );
}

#[test]
fn unreachable_control_plane() {
    let w = World::new();
    let admin = w.admin(Some("home"));
    // Nothing listens on the control plane's address.
    let run = fedctl(&w, &admin, &["status"]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(
        run.stderr
            .contains("cannot talk to the control plane: nothing answers at"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains("is the control plane running"),
        "{run:?}"
    );
}

#[test]
fn refusals_and_invalid_documents() {
    let w = World::new();
    let _control = start_control(&w, &document(&w, "", false));
    let home = w.admin(Some("home"));
    let away = w.admin(Some("away"));

    // The config file works as well as the environment.
    std::fs::write(
        w.path("fedctl.yaml"),
        format!(
            "control: {}\ncert: home-admin.pem\nkey: home-admin.key\nca: ca.pem\n",
            control_addr(&w)
        ),
    )
    .expect("config file");
    let via_file = fedctl_bare(&w, &["--help"]);
    assert_eq!(via_file.code, 0);
    let via_file = {
        let out = std::process::Command::new(FEDCTL)
            .args(["history"])
            .env("FEDCTL_CONFIG", w.path("fedctl.yaml"))
            .env_remove("FEDCTL_CONTROL")
            .env_remove("FEDCTL_CERT")
            .env_remove("FEDCTL_KEY")
            .env_remove("FEDCTL_CA")
            .output()
            .expect("fedctl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(via_file.contains("initial version (--init)"), "{via_file}");

    // Several replicas: the first does not answer, the next does; status
    // shows each.
    let down = addr(&w, 9, 7443).to_string();
    let both = format!("{down},{}", control_addr(&w));
    let status = fedctl(&w, &home, &["status", "--control", &both]);
    assert_eq!(status.code, 0, "{status:?}");
    assert!(
        status.stderr.contains("trying the next replica"),
        "{status:?}"
    );
    assert!(
        status
            .stdout
            .contains(&format!("{down}  -        unreachable")),
        "{status:?}"
    );
    assert!(status.stdout.contains("c1       up"), "{status:?}");

    // An edge's certificate is not an admin's.
    let (ec, ek, _) = w.edge_cert("home", "edge", "home-edge", None, None);
    let run = fedctl(&w, &(ec, ek), &["history"]);
    assert_eq!(run.code, 5, "{run:?}");
    assert!(
        run.stderr
            .contains("is the certificate of edge home/edge, not of an admin"),
        "{run:?}"
    );

    // A certificate from another CA is refused by the control plane.
    let other = World::new();
    let (oc, ok) = other.admin(Some("home"));
    let run = fedctl(&w, &(oc, ok), &["history"]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(
        run.stderr.contains("it refused this certificate"),
        "{run:?}"
    );

    // Our CA is not the control plane's.
    let out = std::process::Command::new(FEDCTL)
        .args(["history", "--ca"])
        .arg(other.ca_pem())
        .env("FEDCTL_CONTROL", control_addr(&w).to_string())
        .env("FEDCTL_CERT", &home.0)
        .env("FEDCTL_KEY", &home.1)
        .env_remove("FEDCTL_CONFIG")
        .env("HOME", w.dir.path())
        .output()
        .expect("fedctl");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("its certificate is not from the CA in"),
        "{err}"
    );

    // Away's admin may not open home's service: 403 names the object and right.
    edit(&w, &document(&w, OPEN_SECRET, false));
    let run = fedctl(&w, &away, &["apply", "-f", "fed"]);
    assert_eq!(run.code, 5, "{run:?}");
    assert!(
        run.stdout
            .contains("refused: added policy `home-opens-secret` needs admin of home"),
        "{run:?}"
    );
    assert!(run.stderr.contains("you are admin away/admin"), "{run:?}");

    // A stale expected version is a conflict.
    let run = fedctl(
        &w,
        &home,
        &["apply", "-f", "fed", "--expected-version", "7"],
    );
    assert_eq!(run.code, 6, "{run:?}");
    assert!(
        run.stderr
            .contains("the head is version 1, not 7: version 7 does not exist yet"),
        "{run:?}"
    );
    assert!(run.stderr.contains("fedctl history"), "{run:?}");

    // An invalid document is refused before anything is sent, with its place.
    // Only the errors are shown, not the warnings beside them (an expired
    // policy here), which `fedctl check` shows.
    let expired = "  - {id: old-pilot, description: An ended pilot, from: {networks: [away/roaming-staff]}, to: {services: [home/secret]}, action: allow, agreement: ISA-T, expires: \"2020-01-31\"}\n";
    edit(
        &w,
        &document(&w, &format!("{OPEN_SECRET}{expired}"), false).replacen(
            "services: [home/secret]",
            "services: [home/nothing]",
            1,
        ),
    );
    let run = fedctl(&w, &home, &["apply", "-f", "fed"]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stdout.contains("fed/test.yaml:"),
        "file:line:column: {run:?}"
    );
    assert!(run.stdout.contains("error[FG102]"), "{run:?}");
    assert!(!run.stdout.contains("warning["), "{run:?}");
    assert!(
        run.stderr.contains("1 error(s) (above, with file:line:column) and 1 warning(s), not shown; nothing was sent"),
        "{run:?}"
    );
    let check = fedctl_bare(&w, &["check", "fed"]);
    assert!(check.stdout.contains("warning[FG154]"), "{check:?}");
    let history = fedctl(&w, &home, &["history", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&history.stdout).expect("json");
    assert_eq!(
        v.as_array().map(Vec::len),
        Some(1),
        "nothing was applied: {v}"
    );

    // A rollout that cannot finish: no edge of this federation runs.
    edit(&w, &document(&w, OPEN_SECRET, false));
    let run = fedctl(&w, &home, &["apply", "-f", "fed", "--timeout", "1"]);
    assert_eq!(run.code, 7, "{run:?}");
    assert!(run.stdout.contains("applied as version 2"), "{run:?}");
    assert!(run.stderr.contains("only 0 of 2 edges run it"), "{run:?}");
    assert!(run.stderr.contains("home/edge (no report yet)"), "{run:?}");
}
