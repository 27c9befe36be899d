//! Two control-plane replicas on one etcd, and an edge given both addresses:
//! a version applied through one replica reaches the edge through the other
//! (replicas learn new versions through the etcd watch); when the replica
//! the edge was following is killed, the edge fails over to the other and
//! keeps getting new versions. Real etcd, real `fedgate-control` and
//! `fedgate-edge` processes, curl as the admin's client.
#![cfg(feature = "etcd")] // needs `--features etcd` (protoc); CI builds with --all-features

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use control_plane::certs::{Ca, write_ca, write_issued, write_signing_key};
use federation::identity::Identity;
use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use support::etcd::{Cluster, etcd_installed};

const FEDCTL: &str = env!("CARGO_BIN_EXE_fedctl");
const CONTROL: &str = env!("CARGO_BIN_EXE_fedgate-control");
const TD: &str = "replicas.fedgate.example";

/// A child process, killed (by its PID) on drop.
struct Proc(Child, PathBuf);

impl Proc {
    fn start(program: &Path, args: &[String], log: PathBuf) -> Self {
        let err = std::fs::File::create(&log).expect("log");
        let child = Command::new(program)
            .args(args)
            .env("FEDGATE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Self(child, log)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }

    fn wait_for(&mut self, needle: &str) {
        for _ in 0..1500 {
            if self.log().contains(needle) {
                return;
            }
            if let Ok(Some(s)) = self.0.try_wait() {
                panic!("exited ({s}) before `{needle}`:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no `{needle}` within 30 s:\n{}", self.log());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn edge_bin() -> PathBuf {
    let p = Path::new(FEDCTL).with_file_name("fedgate-edge");
    assert!(
        p.exists(),
        "{} is missing: run `cargo test --workspace --all-features` (it builds the edge too)",
        p.display()
    );
    p
}

fn document(net: [u8; 3]) -> String {
    let h = Ipv4Addr::new(net[0], net[1], net[2], 2);
    format!(
        r#"federation: {{name: replicas, trust_domain: {TD}}}
organisations:
  - {{id: home, name: Home Trust, kind: nhs-trust, membership: {{agreement: FCA-H, expires: 2035-01-01}}}}
  - {{id: away, name: Away Council, kind: local-authority, membership: {{agreement: FCA-A, expires: 2035-01-01}}}}
networks:
  - {{org: away, label: staff, purpose: roaming-staff, cidrs: [10.1.0.0/16]}}
edges:
  - {{org: home, name: edge, overlay: {{quic: "{h}:4433", tcp: "{h}:4443"}}}}
services:
  - {{org: home, name: web, address: 10.9.0.1, ports: [443], protocol: tls}}
policies:
  - {{id: away-web, description: Away staff reach web, from: {{orgs: [away]}}, to: {{services: [home/web]}}, action: allow}}
"#
    )
}

fn curl(args: &[String]) -> String {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn apply(dir: &Path, replica: &str, port: u16, expected: u64, doc: &str) -> serde_json::Value {
    let host = format!("{replica}.control.{TD}");
    let body = json!({"expected_version": expected, "files": {"fed.yaml": doc}});
    let out = curl(&[
        "--cacert".into(),
        dir.join("ca.pem").display().to_string(),
        "--cert".into(),
        dir.join("home-admin.pem").display().to_string(),
        "--key".into(),
        dir.join("home-admin.key").display().to_string(),
        "--resolve".into(),
        format!("{host}:{port}:127.0.0.1"),
        "-H".into(),
        "content-type: application/json".into(),
        "--data-binary".into(),
        body.to_string(),
        format!("https://{host}:{port}/v1/apply"),
    ]);
    serde_json::from_str(&out).unwrap_or_else(|_| panic!("apply answered: {out}"))
}

fn wait_version(admin: SocketAddr, version: u64, within: Duration) -> Duration {
    let started = std::time::SystemTime::now();
    for _ in 0..(within.as_millis() / 20) {
        let m = curl(&[format!("http://{admin}/metrics")]);
        if m.lines()
            .any(|l| l == format!("fedgate_snapshot_version {version}"))
        {
            return started.elapsed().unwrap_or_default();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the edge did not reach version {version} within {within:?}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_follows_either_replica_and_fails_over() {
    if !etcd_installed() {
        return;
    }
    let etcd = Cluster::start(1).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    #[allow(clippy::disallowed_methods)] // minting certificates for the test
    let now = Timestamp::now();
    let validity = (
        now - SignedDuration::from_hours(1),
        now + SignedDuration::from_hours(24),
    );
    let ca = Ca::new(TD, "test CA", validity).expect("CA");
    write_ca(d, &ca).expect("write CA");
    for (id, stem) in [
        (Identity::control("c1").expect("id"), "c1"),
        (Identity::control("c2").expect("id"), "c2"),
        (Identity::edge("home", "edge").expect("id"), "home-edge"),
        (Identity::admin("home", "admin").expect("id"), "home-admin"),
    ] {
        let issued = ca.issue(&id, validity, None).expect("issue");
        write_issued(d, stem, &issued).expect("write");
    }
    write_signing_key(d).expect("signing key");
    let net = [127, 90 + (std::process::id() % 100) as u8, 7];
    let doc = document(net);
    std::fs::create_dir_all(d.join("fed")).expect("fed");
    std::fs::write(d.join("fed/fed.yaml"), &doc).expect("doc");

    let ports = [free_port(), free_port()];
    let replica = |name: &str, port: u16| {
        let args: Vec<String> = [
            "run",
            "--data",
            &d.join(format!("{name}-data")).display().to_string(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--cert",
            &d.join(format!("{name}.pem")).display().to_string(),
            "--key",
            &d.join(format!("{name}.key")).display().to_string(),
            "--ca",
            &d.join("ca.pem").display().to_string(),
            "--signing-key",
            &d.join("signing.key").display().to_string(),
            "--etcd",
            &etcd.endpoints().join(","),
            "--etcd-prefix",
            "/fedgate/replicas-test/",
            "--long-poll-secs",
            "5",
            "--init",
            &d.join("fed").display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut p = Proc::start(Path::new(CONTROL), &args, d.join(format!("{name}.log")));
        p.wait_for("version published");
        p
    };
    let mut c1 = replica("c1", ports[0]);
    let _c2 = replica("c2", ports[1]);

    let admin = SocketAddr::from((Ipv4Addr::new(net[0], net[1], net[2], 2), 9100));
    let edge_args: Vec<String> = [
        "run",
        "--edge",
        "home/edge",
        "--control",
        &format!("127.0.0.1:{},127.0.0.1:{}", ports[0], ports[1]),
        "--control-key",
        &d.join("signing.pub").display().to_string(),
        "--cache",
        &d.join("edge.cache.json").display().to_string(),
        "--poll-secs",
        "5",
        "--cert",
        &d.join("home-edge.pem").display().to_string(),
        "--key",
        &d.join("home-edge.key").display().to_string(),
        "--ca",
        &d.join("ca.pem").display().to_string(),
        "--admin",
        &admin.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut edge = Proc::start(&edge_bin(), &edge_args, d.join("edge.log"));
    edge.wait_for("ready");
    wait_version(admin, 1, Duration::from_secs(10));

    // Applied through c2; the edge follows c1, which learns it from etcd.
    let v2 = doc.replace(
        "from: {orgs: [away]}",
        "from: {orgs: [away], networks: [away/staff]}",
    );
    let r = apply(d, "c2", ports[1], 1, &v2);
    assert_eq!(r["version"], 2, "{r}");
    let took = wait_version(admin, 2, Duration::from_secs(10));
    assert!(
        took < Duration::from_secs(2),
        "version 2 took {took:?} to reach the edge through the other replica"
    );

    // c1 dies; the next version, through c2, still reaches the edge.
    let _ = c1.0.kill();
    let _ = c1.0.wait();
    let v3 = v2.replace("Away staff reach web", "Away staff reach the web portal");
    let r = apply(d, "c2", ports[1], 2, &v3);
    assert_eq!(r["version"], 3, "{r}");
    wait_version(admin, 3, Duration::from_secs(60));
    assert!(
        edge.log()
            .contains("control plane unreachable; trying the next replica"),
        "{}",
        edge.log()
    );
}
