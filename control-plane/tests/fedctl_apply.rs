//! `fedctl apply` against a real control plane with two real edges following
//! it: the local check, the diff by object, the rollout followed to every
//! edge, and the change taking effect through the edges; then `diff`, `get`,
//! `status` and the live `explain` agree with what the edges do.

mod kit;

use kit::*;
use tests::World;

#[test]
fn apply_shows_the_diff_follows_the_rollout_and_takes_effect() {
    let w = World::new();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(tests::echo_origin(addr(&w, 11, 7007)));
    rt.block_on(tests::echo_origin(addr(&w, 13, 7011)));
    let _control = start_control(&w, &document(&w, "", false));
    let _edges = start_edges(&w);
    let home = w.admin(Some("home"));

    // Version 1: echo is open to away's roaming staff, secret is not.
    tunnel(&w, "echo.home.example:7007").expect("echo open in version 1");
    assert!(tunnel(&w, "secret.home.example:7011").is_err());
    let explained = fedctl(
        &w,
        &home,
        &[
            "explain",
            "--from",
            "away/127.0.0.1",
            "--to",
            "secret.home.example",
        ],
    );
    assert_eq!(explained.code, 1, "denied: {explained:?}");
    assert!(explained.stdout.starts_with("DENY"), "{explained:?}");

    // No difference yet: diff exits 0.
    let same = fedctl(&w, &home, &["diff", "-f", "fed"]);
    assert_eq!(same.code, 0, "{same:?}");
    assert!(
        same.stdout.contains("no differences from version 1"),
        "{same:?}"
    );

    // Home opens secret.
    edit(&w, &document(&w, OPEN_SECRET, false));
    let diff = fedctl(&w, &home, &["diff", "-f", "fed"]);
    assert_eq!(diff.code, 1, "differences exit 1: {diff:?}");
    assert!(
        diff.stdout.contains("+ policy home-opens-secret"),
        "{diff:?}"
    );
    let json = fedctl(&w, &home, &["diff", "-f", "fed", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(v["head"], 1);
    assert_eq!(v["changes"][0]["id"], "home-opens-secret");

    let dry = fedctl(&w, &home, &["apply", "-f", "fed", "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(dry.stdout.contains("dry run"), "{dry:?}");
    assert!(tunnel(&w, "secret.home.example:7011").is_err());

    let applied = fedctl(
        &w,
        &home,
        &[
            "apply",
            "-f",
            "fed",
            "-m",
            "open secret to away",
            "--timeout",
            "20",
        ],
    );
    assert_eq!(applied.code, 0, "{applied:?}");
    assert!(
        applied.stdout.contains("+ policy home-opens-secret"),
        "{applied:?}"
    );
    assert!(
        applied
            .stdout
            .contains("1 added, 0 changed, 0 removed against version 1"),
        "{applied:?}"
    );
    assert!(
        applied.stdout.contains("applied as version 2"),
        "{applied:?}"
    );
    assert!(
        applied.stderr.contains("rollout of version 2"),
        "{applied:?}"
    );
    assert!(
        applied
            .stdout
            .contains("rollout complete: 2/2 edges run version 2"),
        "{applied:?}"
    );
    // It takes effect: the flow is open through the edges, and explain agrees.
    tunnel(&w, "secret.home.example:7011").expect("secret open in version 2");
    let explained = fedctl(
        &w,
        &home,
        &[
            "explain",
            "--from",
            "away/127.0.0.1",
            "--to",
            "secret.home.example",
        ],
    );
    assert_eq!(explained.code, 0, "allowed: {explained:?}");
    assert!(explained.stdout.starts_with("ALLOW"), "{explained:?}");
    assert!(
        explained.stdout.contains("home-opens-secret"),
        "{explained:?}"
    );
    assert!(explained.stderr.contains("version 2"), "{explained:?}");

    // Applying the same files again changes nothing.
    let again = fedctl(&w, &home, &["apply", "-f", "fed"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("no changes"), "{again:?}");

    // A changed object shows its changed fields.
    edit(
        &w,
        &document(
            &w,
            &OPEN_SECRET.replace("allow, agreement", "allow, ports: [7011], agreement"),
            false,
        ),
    );
    let changed = fedctl(&w, &home, &["apply", "-f", "fed", "--no-wait"]);
    assert_eq!(changed.code, 0, "{changed:?}");
    assert!(
        changed.stdout.contains("~ policy home-opens-secret"),
        "{changed:?}"
    );
    assert!(
        changed.stdout.contains("ports: (none) -> [7011]"),
        "{changed:?}"
    );
    assert!(changed.stdout.contains("not waiting"), "{changed:?}");

    // get, status
    let policies = fedctl(&w, &home, &["get", "policies"]);
    assert_eq!(policies.code, 0, "{policies:?}");
    assert!(
        policies.stdout.contains("home-opens-secret"),
        "{policies:?}"
    );
    assert!(policies.stdout.contains("roaming-to-home"), "{policies:?}");
    let one = fedctl(&w, &home, &["get", "services", "home/secret", "-o", "yaml"]);
    assert_eq!(one.code, 0, "{one:?}");
    assert!(one.stdout.contains("secret.home.example"), "{one:?}");
    assert!(!one.stdout.contains("echo.home.example"), "{one:?}");
    let missing = fedctl(&w, &home, &["get", "services", "home/nothing"]);
    assert_eq!(missing.code, 3, "{missing:?}");
    let edges = fedctl(&w, &home, &["get", "edges"]);
    assert!(edges.stdout.contains("away/edge"), "{edges:?}");

    let mut status = fedctl(&w, &home, &["status"]);
    for _ in 0..100 {
        if status.stdout.matches("current").count() == 2 && status.stdout.contains("quic") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        status = fedctl(&w, &home, &["status"]);
    }
    assert_eq!(status.code, 0, "{status:?}");
    assert!(status.stdout.contains("head version 3"), "{status:?}");
    assert!(status.stdout.contains("store embedded"), "{status:?}");
    assert_eq!(status.stdout.matches("current").count(), 2, "{status:?}");
    assert!(status.stdout.contains("quic "), "link matrix: {status:?}");
    let json = fedctl(&w, &home, &["status", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(v["head"], 3);
    // Both edges run the head (above): `get edges` says so for scripts too.
    let edges = fedctl(&w, &home, &["get", "edges", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&edges.stdout).expect("json");
    let running: Vec<_> = v
        .as_array()
        .expect("list")
        .iter()
        .map(|e| e["running_version"].clone())
        .collect();
    assert_eq!(running, [3, 3], "{edges:?}");
}
