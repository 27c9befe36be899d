//! `fedctl dns-forwarders`, run as the real binary on the example federation:
//! each format names exactly the zones of the members whose services the
//! member's staff reach, sent to the member's edges' DNS listeners; a real
//! `unbound-checkconf` accepts the unbound output; bad input is refused
//! clearly.

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
        .output()
        .expect("run fedctl")
}

fn forwarders(org: &str, format: &str) -> String {
    let out = fedctl(&[
        "dns-forwarders",
        "--config",
        "configs/south-east",
        "--org",
        org,
        "--format",
        format,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The zones wmcc's staff reach (every other member's), never its own.
const ZONES: [&str; 5] = [
    "brackenmoor.example",
    "dpft.example",
    "hcht.example",
    "kvh.example",
    "portbridge.example",
];

#[test]
fn bind_zones_forward_only_to_the_members_edges() {
    let text = forwarders("wmcc", "bind");
    for z in ZONES {
        assert!(
            text.contains(&format!(
                "zone \"{z}\" {{\n    type forward;\n    forward only;\n    forwarders {{ 127.0.4.1 port 53; 127.0.7.1 port 53; }};\n}};\n"
            )),
            "{z}:\n{text}"
        );
    }
    assert_eq!(text.matches("zone \"").count(), ZONES.len(), "{text}");
    assert!(!text.contains("westmere.example"), "own zone: {text}");
}

#[test]
fn unbound_forward_zones_pass_unbound_checkconf() {
    let text = forwarders("wmcc", "unbound");
    for z in ZONES {
        assert!(
            text.contains(&format!(
                "forward-zone:\n    name: \"{z}.\"\n    forward-addr: 127.0.4.1@53\n    forward-addr: 127.0.7.1@53\n"
            )),
            "{z}:\n{text}"
        );
        assert!(
            text.contains(&format!("    domain-insecure: \"{z}\"\n")),
            "{text}"
        );
    }
    assert!(text.contains("    do-not-query-localhost: no\n"), "{text}");
    if std::env::var("CI").as_deref() != Ok("true")
        && Command::new("unbound-checkconf")
            .arg("-h")
            .output()
            .is_err()
    {
        eprintln!("SKIPPED: unbound-checkconf is not installed (CI=true would fail here)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("forwarders.conf");
    std::fs::write(&conf, &text).expect("write");
    let out = Command::new("unbound-checkconf")
        .arg(&conf)
        .output()
        .expect("unbound-checkconf (CI installs it in .ci/run)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}\n{text}");
    assert!(!said.contains("warning"), "{said}");
}

#[test]
fn dnsmasq_and_windows_lines() {
    let text = forwarders("wmcc", "dnsmasq");
    for z in ZONES {
        for ip in ["127.0.4.1", "127.0.7.1"] {
            assert!(
                text.contains(&format!("server=/{z}/{ip}#53\n")),
                "{z}:\n{text}"
            );
        }
    }
    assert_eq!(text.matches("server=/").count(), 2 * ZONES.len(), "{text}");
    let text = forwarders("wmcc", "windows");
    for z in ZONES {
        assert!(
            text.contains(&format!(
                "Add-DnsServerConditionalForwarderZone -Name \"{z}\" -MasterServers @(\"127.0.4.1\", \"127.0.7.1\")\n"
            )),
            "{z}:\n{text}"
        );
    }
    assert!(!text.contains("WARNING"), "every edge on port 53: {text}");
}

#[test]
fn bad_input_is_refused_clearly() {
    let out = fedctl(&[
        "dns-forwarders",
        "--config",
        "configs/south-east",
        "--org",
        "nope",
        "--format",
        "bind",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown organisation `nope`; the members are: bmc, dpft"),
        "{err}"
    );
    let out = fedctl(&[
        "dns-forwarders",
        "--config",
        "configs/south-east",
        "--org",
        "wmcc",
        "--format",
        "named",
    ]);
    assert_eq!(out.status.code(), Some(2), "clap refuses an unknown format");
}
