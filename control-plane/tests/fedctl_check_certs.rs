//! `fedctl check --certs DIR`: development certificates of the example
//! federation pass; one expiring within 30 days is a warning; a certificate
//! under another holder's name, with another's key, or for an edge the
//! federation does not have, is reported; errors exit 1.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_owned()
}

fn fedctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fedctl"))
        .args(args)
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .output()
        .expect("run fedctl")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn certificates_are_checked_against_the_federation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_str().expect("utf-8 path");
    let dev = fedctl(&[
        "certs",
        "dev",
        "--config",
        "configs/south-east",
        "--out",
        out,
    ]);
    assert!(dev.status.success(), "{}", text(&dev));

    let clean = fedctl(&["check", "configs/south-east", "--certs", out]);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
    assert!(
        text(&clean).contains("0 error(s), 0 warning(s)"),
        "{}",
        text(&clean)
    );

    // Expiring in 10 days: a warning, still exit 0.
    let edges = format!("{out}/edges");
    let short = fedctl(&[
        "certs",
        "issue",
        "--ca",
        out,
        "--edge",
        "dpft/core",
        "--out",
        &edges,
        "--days",
        "10",
    ]);
    assert!(short.status.success(), "{}", text(&short));
    let warned = fedctl(&["check", "configs/south-east", "--certs", out]);
    assert_eq!(warned.status.code(), Some(0), "{}", text(&warned));
    assert!(
        text(&warned).contains("edges/dpft-core.pem: edge dpft/core: expires on"),
        "{}",
        text(&warned)
    );

    // kvh's certificate under hcht's name (hcht's key beside it); an edge the
    // federation does not have.
    std::fs::copy(
        dir.path().join("edges/kvh-core.pem"),
        dir.path().join("edges/hcht-core.pem"),
    )
    .expect("copy");
    let ghost = fedctl(&[
        "certs",
        "issue",
        "--ca",
        out,
        "--edge",
        "dpft/ghost",
        "--out",
        &edges,
    ]);
    assert!(ghost.status.success(), "{}", text(&ghost));
    let bad = fedctl(&["check", "configs/south-east", "--certs", out]);
    let t = text(&bad);
    assert_eq!(bad.status.code(), Some(1), "{t}");
    assert!(t.contains("edges/hcht-core.pem: holds the identity of edge kvh/core, whose file would be kvh-core.pem"), "{t}");
    assert!(
        t.contains("hcht-core.key is not this certificate's key"),
        "{t}"
    );
    assert!(
        t.contains("edges/dpft-ghost.pem: edge dpft/ghost is not in the federation"),
        "{t}"
    );

    // Without the federation, --certs alone checks expiry and placement.
    let alone = fedctl(&["check", "--certs", out, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&alone.stdout).expect("json");
    assert!(
        v["certificates"]["checked"].as_u64().unwrap_or(0) > 10,
        "{v}"
    );
    assert_eq!(alone.status.code(), Some(1), "{}", text(&alone));
}
