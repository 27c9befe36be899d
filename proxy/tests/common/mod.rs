//! A two-member federation on this test's own loopback /24:
//!
//! ```text
//!   curl ---> away/edge 127.A.B.1 ==== overlay (QUIC :4433 | TLS/TCP :4443) ==== home/edge 127.A.B.2
//!             connect :3128, sni :8443,                                          |
//!             socks :1080, VIPs 127.A.B.129+                                     +--> web    127.A.B.10:8443 (HTTPS)
//!                                                                                +--> echo   127.A.B.11:7007
//!                                                                                +--> blob   127.A.B.12:7009
//!                                                                                +--> secret 127.A.B.13:7011 (no policy)
//! ```
//! `away`'s roaming-staff network is 127.0.0.0/8, so local clients count as
//! visiting staff; `third` is a member with no network and no policy.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tests::{Proc, World, ip};

pub(crate) const EDGE: &str = env!("CARGO_BIN_EXE_fedgate-edge");

#[derive(Default)]
pub(crate) struct Options {
    /// Extra policies for the document (YAML list items).
    pub(crate) extra_policies: &'static str,
    /// Revoked serials (hex).
    pub(crate) revoked: Vec<String>,
    /// More keys of `away`'s `dns:` block, e.g. `, upstreams: ["127.1.2.3:5353"]`.
    pub(crate) away_dns: String,
    /// More keys of `away/edge`, e.g. `, dns: "127.1.2.1:5300"`.
    pub(crate) away_edge: String,
    /// `away/roaming-staff`'s range instead of 127.0.0.0/8.
    pub(crate) away_cidr: Option<String>,
    /// Extra services (YAML list items).
    pub(crate) extra_services: String,
}

pub(crate) fn document(w: &World, opts: &Options) -> String {
    let n = |h: u8| ip(w.net, h).to_string();
    let revoked = if opts.revoked.is_empty() {
        String::new()
    } else {
        let items: Vec<String> = opts
            .revoked
            .iter()
            .map(|s| format!("  - {{serial: \"{s}\", reason: test}}"))
            .collect();
        format!("revoked_certificates:\n{}\n", items.join("\n"))
    };
    format!(
        r#"federation: {{name: test, trust_domain: test.fedgate.example}}
organisations:
  - {{id: away, name: Away Council, kind: local-authority, membership: {{agreement: FCA-A, expires: 2035-01-01}}, dns: {{zones: [away.example]{away_dns}}}}}
  - {{id: home, name: Home Trust, kind: nhs-trust, membership: {{agreement: FCA-H, expires: 2035-01-01}}, dns: {{zones: [home.example]}}}}
  - {{id: third, name: Third Practice, kind: gp-practice, membership: {{agreement: FCA-T, expires: 2035-01-01}}, dns: {{zones: [third.example]}}}}
networks:
  - {{org: away, label: roaming-staff, purpose: roaming-staff, cidrs: [{away_cidr}]}}
  - {{org: home, label: corporate, purpose: corporate, cidrs: [10.99.0.0/16]}}
edges:
  - {{org: away, name: edge, overlay: {{quic: "{a}:4433", tcp: "{a}:4443"}}, ingress: {{addresses: ["{a}"], vip_prefix: {vip}/25}}{away_edge}}}
  - {{org: home, name: edge, overlay: {{quic: "{h}:4433", tcp: "{h}:4443"}}}}
  - {{org: third, name: edge, overlay: {{quic: "{t}:4433", tcp: "{t}:4443"}}}}
services:
  - {{org: home, name: web, dns: [web.home.example], address: {web}, ports: [8443], protocol: tls}}
  - {{org: home, name: echo, dns: [echo.home.example], address: {echo}, ports: [7007], protocol: tcp}}
  - {{org: home, name: blob, dns: [blob.home.example], address: {blob}, ports: [7009], protocol: tcp}}
  - {{org: home, name: secret, dns: [secret.home.example], address: {secret}, ports: [7011], protocol: tcp}}
{extra_services}agreements:
  - {{id: ISA-T, title: Test sharing, parties: [away, home, third], purpose: tests, legal_basis: test, owner: {{name: T, role: Caldicott Guardian, org: home}}, start: 2025-01-01, expires: 2035-01-01}}
policies:
  - {{id: roaming-to-home, description: Away roaming staff reach home systems, from: {{networks: [away/roaming-staff]}}, to: {{services: [home/web, home/echo, home/blob]}}, action: allow, agreement: ISA-T}}
{extra}{revoked}"#,
        a = n(1),
        h = n(2),
        t = n(3),
        vip = n(128),
        web = n(10),
        echo = n(11),
        blob = n(12),
        secret = n(13),
        extra = opts.extra_policies,
        away_dns = opts.away_dns,
        away_edge = opts.away_edge,
        away_cidr = opts.away_cidr.as_deref().unwrap_or("127.0.0.0/8"),
        extra_services = opts.extra_services,
    )
}

pub(crate) fn addr(w: &World, host: u8, port: u16) -> SocketAddr {
    SocketAddr::new(ip(w.net, host), port)
}

/// Start an edge process and wait until it is ready.
pub(crate) fn start_edge(
    w: &World,
    name: &str,
    edge: &str,
    snapshot: &Path,
    cert: &Path,
    key: &Path,
    extra: &[String],
) -> Proc {
    let mut p = spawn_edge(w, name, edge, snapshot, cert, key, extra);
    p.wait_for("ready", Duration::from_secs(20));
    p
}

/// Start an edge process (audit log `NAME.audit.jsonl`, log `NAME.log`)
/// without waiting: for edges expected to refuse to start.
pub(crate) fn spawn_edge(
    w: &World,
    name: &str,
    edge: &str,
    snapshot: &Path,
    cert: &Path,
    key: &Path,
    extra: &[String],
) -> Proc {
    let mut args: Vec<String> = vec![
        "run".into(),
        "--edge".into(),
        edge.into(),
        "--snapshot".into(),
        snapshot.display().to_string(),
        "--cert".into(),
        cert.display().to_string(),
        "--key".into(),
        key.display().to_string(),
        "--ca".into(),
        w.ca_pem().display().to_string(),
        "--audit".into(),
        w.path(&format!("{name}.audit.jsonl")).display().to_string(),
    ];
    args.extend(extra.iter().cloned());
    tests::with_test_head_start(&mut args);
    Proc::start(name, Path::new(EDGE), &args, w.path(&format!("{name}.log")))
}

/// The standard pair: `away/edge` with every ingress listener, `home/edge`.
pub(crate) struct Pair {
    pub(crate) away: Proc,
    pub(crate) home: Proc,
}

pub(crate) fn away_ingress(w: &World) -> Vec<String> {
    vec![
        "--connect".into(),
        addr(w, 1, 3128).to_string(),
        "--sni".into(),
        addr(w, 1, 8443).to_string(),
        "--socks".into(),
        addr(w, 1, 1080).to_string(),
        "--vips".into(),
        "--admin".into(),
        addr(w, 1, 9100).to_string(),
        "--idle-secs".into(),
        "10".into(),
    ]
}

pub(crate) fn start_pair(w: &World, away_doc: &str, home_doc: &str, home_extra: &[String]) -> Pair {
    start_pair_with(w, away_doc, home_doc, home_extra, &[])
}

/// As [`start_pair`], with more flags for `away/edge`.
pub(crate) fn start_pair_with(
    w: &World,
    away_doc: &str,
    home_doc: &str,
    home_extra: &[String],
    away_extra: &[String],
) -> Pair {
    w.snapshot(away_doc, "away/edge", "away.snapshot.json");
    w.snapshot(home_doc, "home/edge", "home.snapshot.json");
    let mut home = spawn_pair_edge(w, "home", home_extra);
    home.wait_for("ready", Duration::from_secs(20));
    let mut away = spawn_pair_edge(w, "away", away_extra);
    away.wait_for("ready", Duration::from_secs(20));
    Pair { away, home }
}

/// One edge of the standard pair, `away` or `home`, on its snapshot
/// (`NAME.snapshot.json`) and with its flags as [`start_pair_with`] gives
/// them, plus `extra`: to start it again; not waited for.
pub(crate) fn spawn_pair_edge(w: &World, name: &str, extra: &[String]) -> Proc {
    let (cert, key, _) = w.edge_cert(name, "edge", &format!("{name}-edge"), None, None);
    let mut args = if name == "away" {
        away_ingress(w)
    } else {
        vec!["--admin".to_string(), addr(w, 2, 9100).to_string()]
    };
    args.extend(extra.iter().cloned());
    let snapshot = w.path(&format!("{name}.snapshot.json"));
    spawn_edge(
        w,
        name,
        &format!("{name}/edge"),
        &snapshot,
        &cert,
        &key,
        &args,
    )
}

/// Run curl off the async runtime; returns (success, stdout, stderr).
pub(crate) async fn curl(args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let mut all = vec![
            "--silent".to_string(),
            "--show-error".into(),
            "--max-time".into(),
            "20".into(),
        ];
        all.extend(args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        tests::run("curl", &refs)
    })
    .await
    .expect("curl task")
}

/// Send `msg` to `addr` (a VIP, say), half-close, and read to the end:
/// what came back, or why not (5 s to connect, 10 s to answer).
pub(crate) async fn echo_through(addr: SocketAddr, msg: &[u8]) -> Result<Vec<u8>, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect to {addr} timed out"))?
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    s.write_all(msg).await.map_err(|e| e.to_string())?;
    s.shutdown().await.map_err(|e| e.to_string())?;
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut back))
        .await
        .map_err(|_| format!("echo through {addr} timed out"))?
        .map_err(|e| e.to_string())?;
    Ok(back)
}

/// curl's CONNECT through away's proxy to echo.home.example: the status the
/// proxy answered the CONNECT with.
pub(crate) async fn connect_status(w: &World) -> String {
    let (_, out, _) = curl(vec![
        "--proxytunnel".into(),
        "--proxy".into(),
        format!("http://{}", addr(w, 1, 3128)),
        "--write-out".into(),
        "%{http_connect}".into(),
        "http://echo.home.example:7007/".into(),
    ])
    .await;
    out.trim().to_string()
}

/// The value of `series` (its exact name and labels) on a metrics page.
pub(crate) fn metric(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// The metrics page of the edge whose admin listener is `admin`.
pub(crate) async fn metrics(admin: SocketAddr) -> String {
    let (ok, out, err) = curl(vec![format!("http://{admin}/metrics")]).await;
    assert!(ok, "metrics from {admin}: {err}");
    out
}

/// Ask `check` up to `tries` times, `every` apart, until it says yes;
/// whether it did.
#[must_use = "assert the result: false means the check never held"]
pub(crate) async fn eventually<F, Fut>(tries: u32, every: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..tries {
        if check().await {
            return true;
        }
        tokio::time::sleep(every).await;
    }
    false
}

/// Echo `msg` through the echo service's VIP at `away` and return away's
/// audit record of the flow. The record is found by the message's length:
/// give each flow of a test a length of its own.
pub(crate) async fn echo_record(w: &World, msg: &str) -> serde_json::Value {
    let back = echo_through(addr(w, 130, 7007), msg.as_bytes()).await;
    assert_eq!(back.as_deref(), Ok(msg.as_bytes()), "echo of {msg}");
    audit_record(w, "away", |r| {
        r["result"] == "allowed" && r["bytes_up"] == msg.len()
    })
    .await
}

/// Whether a flow through the echo VIP at `away` comes back whole within
/// 10 s (tried every 250 ms), as after a link is closed and made again.
/// Each attempt is `min_len` bytes or more, a length of its own (one more
/// than away's audit records so far), to find its record.
pub(crate) async fn echo_comes_back(w: &World, min_len: usize) -> bool {
    eventually(40, Duration::from_millis(250), || async move {
        let msg = "x".repeat(min_len + audit(w, "away").len());
        echo_through(addr(w, 130, 7007), msg.as_bytes())
            .await
            .is_ok_and(|b| b == msg.as_bytes())
    })
    .await
}

/// Every audit record of an edge, as JSON.
pub(crate) fn audit(w: &World, name: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(w.path(&format!("{name}.audit.jsonl")))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

/// Wait (bounded) until `name`'s audit log has a record matching `pred`.
pub(crate) async fn audit_record(
    w: &World,
    name: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    for _ in 0..200 {
        if let Some(r) = audit(w, name).into_iter().find(|r| pred(r)) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no matching audit record at {name}: {:#?}", audit(w, name));
}

// --- the control plane -------------------------------------------------------

/// `fedgate-control`, built beside `fedgate-edge` by `cargo test --workspace`.
pub(crate) fn control_bin() -> std::path::PathBuf {
    let p = Path::new(EDGE).with_file_name("fedgate-control");
    assert!(
        p.exists(),
        "{} is missing: build it first (`cargo build -p control-plane`, or run `cargo test --workspace`)",
        p.display()
    );
    p
}

pub(crate) use tests::CONTROL_NAME;

/// A control plane on 127.A.B.5:7443 holding `doc` as version 1.
pub(crate) fn start_control(w: &World, doc: &str) -> Proc {
    w.start_control(&control_bin(), doc, addr(w, 5, 7443))
}

/// An edge following the control plane (cache `NAME.cache.json`), ready.
pub(crate) fn start_edge_followed(
    w: &World,
    name: &str,
    edge: &str,
    cert: &Path,
    key: &Path,
    extra: &[String],
) -> Proc {
    let mut p = spawn_edge_followed(w, name, edge, cert, key, extra);
    p.wait_for("ready", Duration::from_secs(20));
    p
}

/// The same, without waiting: for edges expected to refuse to start.
pub(crate) fn spawn_edge_followed(
    w: &World,
    name: &str,
    edge: &str,
    cert: &Path,
    key: &Path,
    extra: &[String],
) -> Proc {
    w.spawn_edge_following(
        Path::new(EDGE),
        name,
        edge,
        addr(w, 5, 7443),
        cert,
        key,
        extra,
    )
}

/// Certificate and key of an admin: `Some(org)` for an organisation's,
/// `None` for a federation admin.
pub(crate) fn admin(w: &World, org: Option<&str>) -> (std::path::PathBuf, std::path::PathBuf) {
    w.admin(org)
}

/// Call the control plane's API with curl as `who`; returns the status and
/// the JSON body (`null` when empty).
pub(crate) async fn api(
    w: &World,
    who: &(std::path::PathBuf, std::path::PathBuf),
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let host = format!("{CONTROL_NAME}.control.test.fedgate.example");
    let mut args = vec![
        "--cacert".into(),
        w.ca_pem().display().to_string(),
        "--cert".into(),
        who.0.display().to_string(),
        "--key".into(),
        who.1.display().to_string(),
        "--resolve".into(),
        format!("{host}:7443:{}", ip(w.net, 5)),
        "-X".into(),
        method.into(),
        "--write-out".into(),
        "\n%{http_code}".into(),
    ];
    if let Some(b) = body {
        args.push("-H".into());
        args.push("content-type: application/json".into());
        args.push("--data-binary".into());
        args.push(b.to_string());
    }
    args.push(format!("https://{host}:7443{path}"));
    let (_, out, err) = curl(args).await;
    let (text, code) = out.rsplit_once('\n').unwrap_or(("", out.as_str()));
    let status: u16 = code
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no status from curl: {out} {err}"));
    let json = if text.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.into()))
    };
    (status, json)
}

/// The document's files as the API takes them, with `doc` as test.yaml.
pub(crate) fn files(w: &World, doc: &str) -> serde_json::Value {
    serde_json::json!({ w.path("fed").join("test.yaml").display().to_string(): doc })
}

/// Wait (bounded) until the edge with admin listener `admin_addr` runs
/// snapshot `version`; returns how long it took.
pub(crate) async fn wait_version(admin_addr: SocketAddr, version: u64) -> Duration {
    let started = tokio::time::Instant::now();
    for _ in 0..400 {
        let (_, out, _) = curl(vec![format!("http://{admin_addr}/metrics")]).await;
        let running = out
            .lines()
            .find_map(|l| l.strip_prefix("fedgate_snapshot_version "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if running == Some(version as f64) {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("edge at {admin_addr} did not reach version {version}");
}

/// Where `away/edge` serves DNS in the DNS tests.
pub(crate) fn dns_addr(w: &World) -> SocketAddr {
    addr(w, 1, 5300)
}

/// `away`'s own resolver, a real unbound on 127.A.B.53:5353: authoritative
/// for `away.example` (as a member's resolver is for its own zone) and for a
/// stand-in outside zone `elsewhere.test`, with `big.elsewhere.test` too large
/// for a UDP answer; everything else refused, so nothing leaves loopback.
pub(crate) fn start_upstream(w: &World) -> (Proc, SocketAddr) {
    let listen = addr(w, 53, 5353);
    let mut zones = String::from(
        "    local-zone: \".\" refuse\n    local-zone: \"elsewhere.test.\" static\n    local-data: \"www.elsewhere.test. 300 IN A 127.0.0.99\"\n    local-zone: \"away.example.\" static\n    local-data: \"intranet.away.example. 300 IN A 127.0.0.78\"\n    local-data: \"wiki.away.example. 300 IN A 127.0.0.79\"\n",
    );
    for i in 1..=100 {
        zones.push_str(&format!(
            "    local-data: \"big.elsewhere.test. 300 IN A 127.0.{}.{}\"\n",
            i / 50,
            i % 50 + 1
        ));
    }
    let extra = format!("server:\n{zones}");
    let p = tests::start_unbound(w.dir.path(), "upstream", listen, &extra);
    (p, listen)
}

/// home/secret is opened to away, but a deny for away's addresses (rule
/// `secret-deny`) wins: every local client is refused it by rule.
pub(crate) const SECRET_DENIED: &str = "  - {id: secret-open, description: Away may reach secret, from: {orgs: [away]}, to: {services: [home/secret]}, action: allow, agreement: ISA-T}\n  - {id: secret-deny, description: But not from loopback, from: {orgs: [away], cidrs: [127.0.0.0/8]}, to: {services: [home/secret]}, action: deny}\n";

/// A policy by which home opens `secret` to away (for documents' `extra_policies`).
pub(crate) const OPEN_SECRET: &str = "  - {id: home-opens-secret, description: Home opens secret to away, from: {orgs: [away]}, to: {services: [home/secret]}, action: allow, agreement: ISA-T}\n";

/// A control plane holding `v1`, and both edges following it at version 1:
/// `home/edge` (admin on .2:9100, plus `home_extra`) and `away/edge` with
/// every ingress listener (admin on .1:9100).
pub(crate) struct Followed {
    pub(crate) control: Proc,
    pub(crate) home: Proc,
    pub(crate) away: Proc,
    /// Certificate and key of each edge, and away's serial.
    pub(crate) home_cert: (std::path::PathBuf, std::path::PathBuf),
    pub(crate) away_cert: (std::path::PathBuf, std::path::PathBuf),
    pub(crate) away_serial: String,
}

pub(crate) fn home_admin(w: &World) -> SocketAddr {
    addr(w, 2, 9100)
}

pub(crate) async fn start_followed(w: &World, v1: &str, home_extra: &[String]) -> Followed {
    let control = start_control(w, v1);
    let (hc, hk, _) = w.edge_cert("home", "edge", "home-edge", None, None);
    let (ac, ak, away_serial) = w.edge_cert("away", "edge", "away-edge", None, None);
    let mut home_args = vec!["--admin".to_string(), home_admin(w).to_string()];
    home_args.extend(home_extra.iter().cloned());
    let home = start_edge_followed(w, "home", "home/edge", &hc, &hk, &home_args);
    let away = start_edge_followed(w, "away", "away/edge", &ac, &ak, &away_ingress(w));
    wait_version(home_admin(w), 1).await;
    wait_version(addr(w, 1, 9100), 1).await;
    Followed {
        control,
        home,
        away,
        home_cert: (hc, hk),
        away_cert: (ac, ak),
        away_serial,
    }
}

/// The serial of the certificate away's overlay TLS listener presents, as
/// openssl s_client (authenticating as home) sees it: lower-case hex
/// without leading zeros, as the edges write serials.
pub(crate) fn presented_serial(
    w: &World,
    home: &(std::path::PathBuf, std::path::PathBuf),
) -> String {
    let at = addr(w, 1, 4443).to_string();
    let (_, out, err) = tests::run(
        "openssl",
        &[
            "s_client",
            "-connect",
            &at,
            "-cert",
            &home.0.display().to_string(),
            "-key",
            &home.1.display().to_string(),
            "-CAfile",
            &w.ca_pem().display().to_string(),
        ],
    );
    let start = out
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap_or_else(|| panic!("no certificate from s_client: {out} {err}"));
    let end = out[start..]
        .find("-----END CERTIFICATE-----")
        .expect("PEM end")
        + start
        + 25;
    let pem = w.path("presented.pem");
    std::fs::write(&pem, &out[start..end]).expect("write PEM");
    let (ok, serial, err) = tests::run(
        "openssl",
        &[
            "x509",
            "-in",
            &pem.display().to_string(),
            "-noout",
            "-serial",
        ],
    );
    assert!(ok, "openssl x509: {err}");
    serial
        .trim()
        .trim_start_matches("serial=")
        .to_lowercase()
        .trim_start_matches('0')
        .to_string()
}

/// Put a certificate and key in place of `cert` and `key`, each written
/// whole under a temporary name and renamed, the key first.
pub(crate) fn install(from: &(std::path::PathBuf, std::path::PathBuf), cert: &Path, key: &Path) {
    for (src, dst) in [(&from.1, key), (&from.0, cert)] {
        let tmp = dst.with_extension("new");
        std::fs::copy(src, &tmp).expect("copy");
        std::fs::rename(&tmp, dst).expect("rename");
    }
}

/// An edge of `doc` in network namespace `tag` (`org`'s only edge, `edge`),
/// audit log `ORG.audit.jsonl`, ready.
pub(crate) fn ns_edge(
    w: &World,
    ns: &tests::Namespaces,
    doc: &str,
    tag: &str,
    org: &str,
    extra: &[&str],
) -> Proc {
    let snap = w.snapshot(doc, &format!("{org}/edge"), &format!("{org}.snapshot.json"));
    let (cert, key, _) = w.edge_cert(org, "edge", &format!("{org}-edge"), None, None);
    let mut args: Vec<String> = [
        "run",
        "--edge",
        &format!("{org}/edge"),
        "--snapshot",
        &snap.display().to_string(),
        "--cert",
        &cert.display().to_string(),
        "--key",
        &key.display().to_string(),
        "--ca",
        &w.ca_pem().display().to_string(),
        "--audit",
        &w.path(&format!("{org}.audit.jsonl")).display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    tests::with_test_head_start(&mut args);
    let mut p = ns.start(
        tag,
        org,
        Path::new(EDGE),
        &args,
        w.path(&format!("{org}.log")),
    );
    p.wait_for("ready", Duration::from_secs(20));
    p
}

/// How an edge host is locked down: `fedctl firewall`'s nftables ruleset,
/// or its iptables and ip6tables rulesets (one per family) as a host
/// without nftables' own tools loads them.
#[derive(Clone, Copy)]
pub(crate) enum Ruleset {
    Nftables,
    Xtables,
}

/// Lock the edge host of `org` (namespace `tag`) down to the openings
/// `fedctl firewall` lists for it in `doc`.
pub(crate) fn ns_lock_down(
    w: &World,
    ns: &tests::Namespaces,
    doc: &str,
    tag: &str,
    org: &str,
    how: Ruleset,
) {
    let config = w.path("federation.yaml");
    std::fs::write(&config, doc).expect("document");
    let fedctl = Path::new(EDGE).with_file_name("fedctl");
    let loads: &[(&str, &str)] = match how {
        Ruleset::Nftables => &[("nftables", "nft -f")],
        Ruleset::Xtables => &[
            ("iptables", "iptables-restore"),
            ("ip6tables", "ip6tables-restore"),
        ],
    };
    for (format, load) in loads {
        let (ok, rules, err) = tests::run(
            &fedctl.display().to_string(),
            &[
                "firewall",
                "--config",
                &config.display().to_string(),
                "--org",
                org,
                "--format",
                format,
            ],
        );
        assert!(ok, "fedctl firewall --org {org} --format {format}: {err}");
        let file = w.path(&format!("{org}.{format}"));
        std::fs::write(&file, &rules).expect("ruleset");
        let mut argv: Vec<String> = load.split(' ').map(str::to_owned).collect();
        argv.push(file.display().to_string());
        let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
        let (ok, _, err) = ns.run(tag, &argv[0], &args);
        assert!(ok, "{load} for {org}: {err}\n{rules}");
    }
}

/// A self-signed certificate and key for `name` (`openssl req`), for a
/// member's own HTTPS server: (certificate, key).
pub(crate) fn self_signed(w: &World, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (
        w.path(&format!("{name}.pem")),
        w.path(&format!("{name}.key")),
    );
    let (ok, _, err) = tests::run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            &format!("subjectAltName=DNS:{name}"),
            "-keyout",
            &key.display().to_string(),
            "-out",
            &cert.display().to_string(),
        ],
    );
    assert!(ok, "openssl req: {err}");
    (cert, key)
}

/// Home's systems in network namespace `tag`, on `ip`: a web server
/// (`openssl s_server -WWW`, :8443) with a certificate for
/// `web.home.example`, and a plain HTTP file server (python, :8080), both
/// serving `page.txt` and `files.txt` with the texts given; ready.
pub(crate) struct NsOrigins {
    pub(crate) web: Proc,
    pub(crate) files: Proc,
    /// The web server's certificate, for curl's `--cacert`.
    pub(crate) cert: std::path::PathBuf,
}

impl NsOrigins {
    pub(crate) fn start(
        w: &World,
        ns: &tests::Namespaces,
        tag: &str,
        ip: std::net::IpAddr,
        page: &str,
        file: &str,
    ) -> Self {
        let www = w.path("www");
        std::fs::create_dir_all(&www).expect("www");
        std::fs::write(www.join("page.txt"), page).expect("page");
        std::fs::write(www.join("files.txt"), file).expect("file");
        let (cert, key) = self_signed(w, "web.home.example");
        let web_at = SocketAddr::new(ip, 8443);
        let web = ns.start(
            tag,
            "web",
            Path::new("sh"),
            &[
                "-c".into(),
                format!(
                    "cd {} && exec openssl s_server -quiet -accept '{web_at}' -cert {} -key {} -WWW",
                    www.display(),
                    cert.display(),
                    key.display()
                ),
            ],
            w.path("web.log"),
        );
        let files = ns.start(
            tag,
            "files",
            Path::new("python3"),
            &[
                "-m".into(),
                "http.server".into(),
                "8080".into(),
                "--bind".into(),
                ip.to_string(),
                "--directory".into(),
                www.display().to_string(),
            ],
            w.path("files.log"),
        );
        ns.wait_tcp(tag, web_at);
        ns.wait_tcp(tag, SocketAddr::new(ip, 8080));
        Self { web, files, cert }
    }
}

/// Whether the two-member namespace tests can run here: namespaces (root)
/// and the tools they use. Without, they fail under `CI=true`.
pub(crate) fn ns_tools() -> bool {
    tests::Namespaces::available()
        && [
            "python3",
            "dig",
            "openssl",
            "nft",
            "iptables-restore",
            "ip6tables-restore",
            "curl",
        ]
        .iter()
        .all(|tool| tests::require_tool(tool))
}

/// curl in namespace `tag`, 15 s at most; (success, body, stderr).
pub(crate) fn ns_curl(ns: &tests::Namespaces, tag: &str, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["--silent", "--show-error", "--max-time", "15"];
    all.extend_from_slice(args);
    ns.run(tag, "curl", &all)
}

/// `fedgate-edge run` as `home/edge` of the standard document with `extra`
/// flags, expected to refuse them and exit at once: its status and stderr.
pub(crate) fn home_edge_refusing(w: &World, extra: &[&str]) -> (Option<i32>, String) {
    let doc = document(w, &Options::default());
    let snap = w.snapshot(&doc, "home/edge", "home.snapshot.json");
    let (cert, key, _) = w.edge_cert("home", "edge", "home-edge", None, None);
    let out = std::process::Command::new(EDGE)
        .args(["run", "--edge", "home/edge", "--snapshot"])
        .arg(&snap)
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .arg("--ca")
        .arg(w.ca_pem())
        .args(extra)
        .output()
        .expect("run fedgate-edge");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Drop UDP to the overlay's QUIC port (4433) on the edge host in
/// namespace `tag`, ahead of the `fedctl firewall` ruleset's openings: a
/// perimeter that blocks QUIC.
pub(crate) fn ns_drop_quic(ns: &tests::Namespaces, tag: &str) {
    let rule = [
        "insert",
        "rule",
        "inet",
        "fedgate_edge",
        "input",
        "udp",
        "dport",
        "4433",
        "drop",
    ];
    let (ok, _, err) = ns.run(tag, "nft", &rule);
    assert!(ok, "nft insert in {tag}: {err}");
}

/// The body of the first of at most `tries` fetches that succeeds: a flow
/// whose bytes were already out on a path just lost is refused rather than
/// sent twice, and staff retry, as a browser does.
pub(crate) fn first_fetched(
    tries: usize,
    mut fetch: impl FnMut() -> (bool, String, String),
) -> Option<String> {
    (0..tries).find_map(|_| {
        let (ok, body, _) = fetch();
        ok.then_some(body)
    })
}
