//! For the tests that run `fedctl` against a real control plane: a small
//! federation on this test's own loopback /24, the real `fedgate-control`
//! and, where a test needs them, real `fedgate-edge` processes following it.
//!
//! ```text
//!   client --CONNECT--> away/edge 127.A.B.1:3128 == overlay == home/edge 127.A.B.2 --> echo   127.A.B.11:7007
//!                                                                                 --> secret 127.A.B.13:7011
//!   fedctl --mTLS--> fedgate-control 127.A.B.5:7443
//! ```
#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use tests::{Proc, World, ip};

pub(crate) const FEDCTL: &str = env!("CARGO_BIN_EXE_fedctl");
pub(crate) const CONTROL: &str = env!("CARGO_BIN_EXE_fedgate-control");

/// `fedgate-edge`, built beside `fedctl` by `cargo build`/`cargo test --workspace`.
pub(crate) fn edge_bin() -> PathBuf {
    let p = Path::new(FEDCTL).with_file_name("fedgate-edge");
    assert!(
        p.exists(),
        "{} is missing: this test runs real edges; build them first with `cargo build -p proxy` (or run `cargo test --workspace`)",
        p.display()
    );
    p
}

pub(crate) fn addr(w: &World, host: u8, port: u16) -> SocketAddr {
    SocketAddr::new(ip(w.net, host), port)
}

pub(crate) fn control_addr(w: &World) -> SocketAddr {
    addr(w, 5, 7443)
}

/// Away's roaming staff may reach home/echo; `extra` adds policies (YAML
/// list items); `third` adds a member whose edge never runs.
pub(crate) fn document(w: &World, extra: &str, third: bool) -> String {
    let n = |h: u8| ip(w.net, h).to_string();
    let (third_org, third_edge) = if third {
        (
            "  - {id: third, name: Third Practice, kind: gp-practice, membership: {agreement: FCA-T, expires: 2035-01-01}, dns: {zones: [third.example]}}\n".to_owned(),
            format!(
                "  - {{org: third, name: edge, overlay: {{quic: \"{t}:4433\", tcp: \"{t}:4443\"}}}}\n",
                t = n(3)
            ),
        )
    } else {
        (String::new(), String::new())
    };
    format!(
        r#"federation: {{name: test, trust_domain: test.fedgate.example}}
organisations:
  - {{id: away, name: Away Council, kind: local-authority, membership: {{agreement: FCA-A, expires: 2035-01-01}}, dns: {{zones: [away.example]}}}}
  - {{id: home, name: Home Trust, kind: nhs-trust, membership: {{agreement: FCA-H, expires: 2035-01-01}}, dns: {{zones: [home.example]}}}}
{third_org}networks:
  - {{org: away, label: roaming-staff, purpose: roaming-staff, cidrs: [127.0.0.0/8]}}
  - {{org: home, label: corporate, purpose: corporate, cidrs: [10.99.0.0/16]}}
edges:
  - {{org: away, name: edge, overlay: {{quic: "{a}:4433", tcp: "{a}:4443"}}, ingress: {{addresses: ["{a}"], vip_prefix: {vip}/25}}}}
  - {{org: home, name: edge, overlay: {{quic: "{h}:4433", tcp: "{h}:4443"}}}}
{third_edge}services:
  - {{org: home, name: echo, dns: [echo.home.example], address: {echo}, ports: [7007], protocol: tcp}}
  - {{org: home, name: secret, dns: [secret.home.example], address: {secret}, ports: [7011], protocol: tcp}}
agreements:
  - {{id: ISA-T, title: Test sharing, parties: [away, home], purpose: tests, legal_basis: test, owner: {{name: T, role: Caldicott Guardian, org: home}}, start: 2025-01-01, expires: 2035-01-01}}
policies:
  - {{id: roaming-to-home, description: Away roaming staff reach home echo, from: {{networks: [away/roaming-staff]}}, to: {{services: [home/echo]}}, action: allow, agreement: ISA-T}}
{extra}"#,
        a = n(1),
        h = n(2),
        vip = n(128),
        echo = n(11),
        secret = n(13),
    )
}

/// Home opens secret to away's roaming staff.
pub(crate) const OPEN_SECRET: &str = "  - {id: home-opens-secret, description: Home opens secret to away, from: {networks: [away/roaming-staff]}, to: {services: [home/secret]}, action: allow, agreement: ISA-T}\n";

/// A control plane holding `doc` as version 1.
pub(crate) fn start_control(w: &World, doc: &str) -> Proc {
    w.start_control(Path::new(CONTROL), doc, control_addr(w))
}

/// Both edges following the control plane, ready; away with a CONNECT
/// listener on :3128.
pub(crate) fn start_edges(w: &World) -> Vec<Proc> {
    let bin = edge_bin();
    let mut out = Vec::new();
    for (name, host, extra) in [
        ("home", 2, vec![]),
        (
            "away",
            1,
            vec!["--connect".to_string(), addr(w, 1, 3128).to_string()],
        ),
    ] {
        let (c, k, _) = w.edge_cert(name, "edge", &format!("{name}-edge"), None, None);
        let mut extra = extra;
        extra.extend(["--admin".to_string(), addr(w, host, 9100).to_string()]);
        let mut p = w.spawn_edge_following(
            &bin,
            name,
            &format!("{name}/edge"),
            control_addr(w),
            &c,
            &k,
            &extra,
        );
        p.wait_for("ready", Duration::from_secs(20));
        out.push(p);
    }
    out
}

/// Rewrite the document the control plane was seeded from (`fed/test.yaml`),
/// as an admin edits their files before `fedctl apply -f fed`.
pub(crate) fn edit(w: &World, doc: &str) {
    std::fs::write(w.path("fed").join("test.yaml"), doc).expect("write doc");
}

/// The result of one `fedctl` run.
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn finish(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `fedctl ARGS` in the test's directory, with nothing from the caller's
/// environment: no FEDCTL_* variables, HOME in the test directory.
pub(crate) fn fedctl_bare(w: &World, args: &[&str]) -> Run {
    let out = Command::new(FEDCTL)
        .args(args)
        .current_dir(w.dir.path())
        .env_remove("FEDCTL_CONTROL")
        .env_remove("FEDCTL_CERT")
        .env_remove("FEDCTL_KEY")
        .env_remove("FEDCTL_CA")
        .env_remove("FEDCTL_CONFIG")
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", w.dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("run fedctl");
    finish(out)
}

/// `fedctl ARGS` as `who` (certificate, key), the control plane and CA in
/// FEDCTL_* variables.
pub(crate) fn fedctl(w: &World, who: &(PathBuf, PathBuf), args: &[&str]) -> Run {
    fedctl_trusting(w, who, &w.ca_pem(), args)
}

/// As [`fedctl`], trusting the CA certificates in `ca` for the control
/// plane's certificate.
pub(crate) fn fedctl_trusting(
    w: &World,
    who: &(PathBuf, PathBuf),
    ca: &Path,
    args: &[&str],
) -> Run {
    let out = Command::new(FEDCTL)
        .args(args)
        .current_dir(w.dir.path())
        .env("FEDCTL_CONTROL", control_addr(w).to_string())
        .env("FEDCTL_CERT", &who.0)
        .env("FEDCTL_KEY", &who.1)
        .env("FEDCTL_CA", ca)
        .env_remove("FEDCTL_CONFIG")
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", w.dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("run fedctl");
    finish(out)
}

/// A CONNECT tunnel through away's edge to `target`, proven with an echo.
pub(crate) fn tunnel(w: &World, target: &str) -> Result<(), String> {
    let mut s = TcpStream::connect_timeout(&addr(w, 1, 3128), Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        if s.read(&mut byte).map_err(|e| e.to_string())? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head);
    }
    s.write_all(b"ping").map_err(|e| e.to_string())?;
    let mut back = [0u8; 4];
    s.read_exact(&mut back).map_err(|e| e.to_string())?;
    if &back != b"ping" {
        return Err(format!("echo sent back {back:?}"));
    }
    Ok(())
}
