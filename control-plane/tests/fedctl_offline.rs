//! `fedctl`'s offline commands, run as the real binary on the example
//! federation: check, explain and snapshot, and their failures.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use federation::{EdgeSnapshot, Sources};

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

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

#[test]
fn south_east_checks_clean() {
    let out = fedctl(&["check", "-o", "json", "configs/south-east"]);
    let report = json(&out);
    assert_eq!(
        report["errors"], 0,
        "errors in configs/south-east: {report:#}"
    );
    assert!(out.status.success(), "{}", text(&out));
    let human = fedctl(&["check", "configs/south-east"]);
    assert!(human.status.success());
    assert!(text(&human).contains("ok: 7 file(s)"), "{}", text(&human));
}

/// Every example config parses, and fails with FG002 at the right file once
/// an unknown key is added to it.
#[test]
fn every_config_rejects_an_unknown_key() {
    let dir = repo().join("configs/south-east");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("configs/south-east")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 7,
        "expected one file per member plus shared files"
    );
    for victim in &files {
        let tmp = tempfile::tempdir().expect("tempdir");
        for f in &files {
            let mut body = fs::read_to_string(f).expect("read");
            if f == victim {
                body.push_str("\nsurprise_key: 1\n");
            }
            fs::write(tmp.path().join(f.file_name().expect("name")), body).expect("write");
        }
        let out = fedctl(&["check", "-o", "json", tmp.path().to_str().expect("utf8")]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}: {}",
            victim.display(),
            text(&out)
        );
        let report = json(&out);
        let diags = report["diagnostics"].as_array().expect("diagnostics");
        assert_eq!(diags.len(), 1, "{}: {report:#}", victim.display());
        assert_eq!(diags[0]["code"], "FG002");
        let file = diags[0]["file"].as_str().expect("file");
        assert!(
            file.ends_with(victim.file_name().unwrap().to_str().unwrap()),
            "wrong file {file}"
        );
        assert!(
            diags[0]["message"]
                .as_str()
                .unwrap()
                .contains("surprise_key"),
            "{report:#}"
        );
    }
}

#[test]
fn explain_allows_with_rule_and_agreement() {
    let out = fedctl(&[
        "explain",
        "--config",
        "configs/south-east",
        "--from",
        "wmcc/10.40.0.7",
        "--to",
        "epr.dpft.example",
        "--at",
        "2026-06-01",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let e = json(&out);
    assert_eq!(e["decision"]["verdict"], "allow", "{e:#}");
    assert_eq!(e["from_network"], "roaming-staff");
    assert_eq!(e["service"], "dpft/ehr");
    assert_eq!(e["port"], 443);
    assert_eq!(e["decision"]["rules"][0], "dpft-staff-roaming");
    assert_eq!(e["decision"]["agreement"], "ISA-2025-004");
    let human = fedctl(&[
        "explain",
        "-c",
        "configs/south-east",
        "--from",
        "wmcc/roaming-staff",
        "--to",
        "dpft/ehr:443",
        "--at",
        "2026-06-01",
    ]);
    let t = text(&human);
    assert_eq!(human.status.code(), Some(0), "{t}");
    assert!(
        t.starts_with("ALLOW: wmcc network roaming-staff -> dpft/ehr:443"),
        "{t}"
    );
    // Its dates as the document writes them: `expires: 2030-03-31` is
    // its last day, not the midnight after.
    assert!(
        t.contains("agreement: ISA-2025-004")
            && t.contains("in force 2025-04-01 to 2030-03-31 (its last day, UTC)"),
        "{t}"
    );
}

#[test]
fn explain_denies_with_reason() {
    let out = fedctl(&[
        "explain",
        "-c",
        "configs/south-east",
        "--from",
        "wmcc/guest",
        "--to",
        "dpft/ehr:443",
        "--at",
        "2026-06-01",
    ]);
    // Denied: status 1, for scripts.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.starts_with("DENY: wmcc network guest -> dpft/ehr:443"),
        "{t}"
    );
    assert!(t.contains("rule: baseline-deny-guest (deny)"), "{t}");
    // After the member's terms lapse, everything to it is denied.
    let later = fedctl(&[
        "explain",
        "-c",
        "configs/south-east",
        "--from",
        "wmcc/roaming-staff",
        "--to",
        "dpft/ehr:443",
        "--at",
        "2031-01-01",
        "-o",
        "json",
    ]);
    assert_eq!(later.status.code(), Some(1), "{}", text(&later));
    let e = json(&later);
    assert_eq!(e["decision"]["verdict"], "deny");
    assert_eq!(e["decision"]["reason"]["kind"], "member-suspended", "{e:#}");
}

#[test]
fn explain_and_snapshot_refuse_bad_input_clearly() {
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "explain",
                "-c",
                "configs/south-east",
                "--from",
                "wmxx",
                "--to",
                "dpft/ehr",
            ],
            "the members are: bmc, dpft",
        ),
        (
            &[
                "explain",
                "-c",
                "configs/south-east",
                "--from",
                "wmcc/nowhere",
                "--to",
                "dpft/ehr",
            ],
            "its networks are",
        ),
        (
            &[
                "explain",
                "-c",
                "configs/south-east",
                "--from",
                "wmcc",
                "--to",
                "nothing.example",
            ],
            "no service `nothing.example`",
        ),
        (
            &[
                "explain",
                "-c",
                "configs/south-east",
                "--from",
                "wmcc",
                "--to",
                "kvh/hl7",
            ],
            "add `:PORT`",
        ),
        (
            &[
                "explain",
                "-c",
                "configs/south-east",
                "--from",
                "wmcc",
                "--to",
                "dpft/ehr",
                "--at",
                "soon",
            ],
            "not a date or time",
        ),
        (
            &[
                "snapshot",
                "--edge",
                "dpft/nope",
                "configs/south-east",
                "--out",
                "-",
            ],
            "the edges are:",
        ),
        (&["check", "no/such/dir"], "cannot read no/such/dir"),
        (
            &[
                "explain",
                "-c",
                "configs/examples/broken/FG101-duplicate-id.yaml",
                "--from",
                "a",
                "--to",
                "b",
            ],
            "fix them first",
        ),
    ];
    for (args, expect) in cases {
        let out = fedctl(args);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains(expect),
            "{args:?}: expected `{expect}` in:\n{}",
            text(&out)
        );
    }
}

#[test]
fn snapshot_holds_no_other_members_internal_addresses() {
    let mut sources = Sources::new();
    for f in ["federation", "dpft", "kvh", "hcht", "wmcc", "pbcc", "bmc"] {
        let path = repo().join(format!("configs/south-east/{f}.yaml"));
        sources.add(
            path.display().to_string(),
            fs::read_to_string(&path).expect("read"),
        );
    }
    let now = federation::validate::parse_time("2026-06-01", false).unwrap();
    let fed = federation::load(&sources, now).federation.expect("valid");
    let tmp = tempfile::tempdir().expect("tempdir");
    for edge in &fed.edges {
        let out_path = tmp.path().join("snap.json");
        let out = fedctl(&[
            "snapshot",
            "--edge",
            edge.id.as_str(),
            "configs/south-east",
            "--out",
            out_path.to_str().unwrap(),
            "--snapshot-version",
            "42",
        ]);
        assert!(out.status.success(), "{}", text(&out));
        let bytes = fs::read(&out_path).expect("snapshot written");
        let body = String::from_utf8_lossy(&bytes);
        // Members reuse ranges (kvh and wmcc both have a service at 10.0.10.30),
        // so an address the edge's own organisation also uses proves nothing.
        let own: Vec<String> = fed
            .services_of(&edge.org)
            .filter_map(|s| s.address)
            .map(|a| a.to_string())
            .collect();
        let own_ranges: Vec<String> = fed
            .networks_of(&edge.org)
            .flat_map(|n| n.cidrs.iter().map(|c| c.to_string()))
            .collect();
        let parsed: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        for s in parsed["document"]["services"].as_array().expect("services") {
            if s["org"] != edge.org.as_str() {
                assert!(
                    s.get("address").is_none(),
                    "snapshot of {} gives an address for {s}",
                    edge.id
                );
            }
        }
        for s in fed.services.iter().filter(|s| s.org != edge.org) {
            let addr = s.address.unwrap().to_string();
            if own.contains(&addr) {
                continue;
            }
            assert!(
                !body.contains(&format!("\"{addr}\"")),
                "snapshot of {} holds {addr} of {}",
                edge.id,
                s.id
            );
        }
        for n in fed.networks.iter().filter(|n| n.org != edge.org) {
            for c in n
                .cidrs
                .iter()
                .filter(|c| !own_ranges.contains(&c.to_string()))
            {
                assert!(
                    !body.contains(&format!("\"{c}\"")),
                    "snapshot of {} holds range {c} of {}",
                    edge.id,
                    n.id
                );
            }
        }
        let snap = EdgeSnapshot::from_json(&bytes).expect("reads back");
        assert_eq!(snap.version, 42);
        let local = snap
            .load(Some(edge.id.as_str()), now)
            .expect("loads as an edge");
        assert!(
            local
                .services
                .iter()
                .any(|s| s.org == edge.org && s.address.is_some())
                || fed.services_of(&edge.org).next().is_none()
        );
    }
}

/// `fedctl ... | head -1`: a reader that stops early ends fedctl at once,
/// with status 0 and nothing on stderr (`print!` would panic, status 101).
#[test]
fn a_reader_that_stops_early_ends_fedctl_quietly() {
    let runs: [&[&str]; 3] = [
        &["check", "-o", "json", "configs/south-east"],
        // Its warnings, through the diagnostics' renderer.
        &["check", "configs/south-east"],
        &[
            "firewall",
            "--config",
            "configs/south-east",
            "--org",
            "dpft",
            "--format",
            "nftables",
        ],
    ];
    for args in runs {
        let (reader, writer) = std::io::pipe().expect("pipe");
        // The reader is gone before fedctl writes its first byte.
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_fedctl"))
            .args(args)
            .current_dir(repo())
            .env("NO_COLOR", "1")
            .stdout(writer)
            .output()
            .expect("run fedctl");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?}: {stderr}", out.status);
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

/// A file saved in another encoding is refused with the place of its first
/// byte that is not UTF-8 and what to do; a `.YAML` file in a directory is
/// read like a `.yaml` one.
#[test]
fn a_file_not_in_utf8_is_refused_with_its_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fed = dir.path().join("fed");
    fs::create_dir(&fed).expect("dir");
    // `£` in Windows-1252 is the single byte 0xA3, on line 2, column 22.
    fs::write(
        fed.join("KVH.YAML"),
        b"organisations:\n  - {id: kvh, name: \"\xA3 Hospital\"}\n",
    )
    .expect("write");
    let out = fedctl(&["check", fed.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("KVH.YAML:2:22: byte 0xA3 is not UTF-8") && t.contains("save it as UTF-8"),
        "{t}"
    );
    fs::write(fed.join("KVH.YAML"), b"\xFF\xFEo\0r\0").expect("write");
    let t = text(&fedctl(&["check", fed.to_str().expect("utf-8 path")]));
    assert!(t.contains("the file is UTF-16"), "{t}");
}
