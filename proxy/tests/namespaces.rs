//! Two members' networks as separate network namespaces, as they are
//! deployed: each member's LAN behind its edge, the edges joined by a WAN
//! link, and nothing else between them.
//!
//! ```text
//!  ns b (away's LAN)          ns be (away's edge)                 ns ae (home's edge)           ns a (home's LAN)
//!  staff 198.18.10.50 --lan-- 198.18.10.1  198.19.0.2 ---wan--- 198.19.0.1  198.18.10.1 --lan-- 198.18.10.20
//!                             DNS :53, SNI :8443,                                                  web   :8443 (openssl s_server)
//!                             VIPs 198.18.11.0/24                                                  files :8080 (python http.server)
//! ```
//!
//! Both members number their LAN 198.18.10.0/24 (overlapping ranges, each
//! edge at .1), and neither LAN routes to the other. Each edge host is
//! locked down by the nftables ruleset `fedctl firewall` writes for its
//! member (everything else dropped). A member of staff in away's LAN finds
//! home's systems by name through away's edge (split-horizon DNS) and
//! reaches them with curl, over QUIC, then, once home's perimeter drops
//! UDP, over TLS on TCP. All addresses are in 198.18.0.0/15, inside
//! namespaces this test makes and deletes.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{EDGE, audit, audit_record};
use tests::run;
use tests::{Namespaces, Proc, World};

const DOC: &str = r#"federation: {name: test, trust_domain: test.fedgate.example}
organisations:
  - {id: away, name: Away Council, kind: local-authority, membership: {agreement: FCA-A, expires: 2035-01-01}, dns: {zones: [away.example]}}
  - {id: home, name: Home Trust, kind: nhs-trust, membership: {agreement: FCA-H, expires: 2035-01-01}, dns: {zones: [home.example]}}
networks:
  - {org: away, label: staff, purpose: roaming-staff, cidrs: [198.18.10.0/24]}
  - {org: home, label: corporate, purpose: corporate, cidrs: [198.18.10.0/24]}
edges:
  - {org: away, name: edge, overlay: {quic: "198.19.0.2:4433", tcp: "198.19.0.2:4443"}, ingress: {addresses: ["198.18.10.1"], vip_prefix: 198.18.11.0/24}, dns: "198.18.10.1:53"}
  - {org: home, name: edge, overlay: {quic: "198.19.0.1:4433", tcp: "198.19.0.1:4443"}}
services:
  - {org: home, name: web, dns: [web.home.example], address: 198.18.10.20, ports: [8443], protocol: tls}
  - {org: home, name: files, dns: [files.home.example], address: 198.18.10.20, ports: [8080], protocol: tcp}
agreements:
  - {id: ISA-T, title: Test sharing, parties: [away, home], purpose: tests, legal_basis: test, owner: {name: T, role: Caldicott Guardian, org: home}, start: 2025-01-01, expires: 2035-01-01}
policies:
  - {id: staff-to-home, description: Away staff reach home systems, from: {networks: [away/staff]}, to: {services: [home/web, home/files]}, action: allow, agreement: ISA-T}
"#;

/// An edge in namespace `tag`, ready.
fn edge(w: &World, ns: &Namespaces, tag: &str, org: &str, extra: &[&str]) -> Proc {
    let snap = w.snapshot(DOC, &format!("{org}/edge"), &format!("{org}.snapshot.json"));
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

/// Lock the edge host of `org` (namespace `tag`) down to the openings
/// `fedctl firewall` lists for it.
fn lock_down(w: &World, ns: &Namespaces, tag: &str, org: &str) {
    let fedctl = Path::new(EDGE).with_file_name("fedctl");
    let (ok, rules, err) = run(
        &fedctl.display().to_string(),
        &[
            "firewall",
            "--config",
            &w.path("federation.yaml").display().to_string(),
            "--org",
            org,
            "--format",
            "nftables",
        ],
    );
    assert!(ok, "fedctl firewall --org {org}: {err}");
    let file = w.path(&format!("{org}.nft"));
    std::fs::write(&file, &rules).expect("ruleset");
    let (ok, _, err) = ns.run(tag, "nft", &["-f", &file.display().to_string()]);
    assert!(ok, "nft -f for {org}: {err}\n{rules}");
}

/// One answer of away's edge's DNS, asked from away's LAN.
fn resolve(ns: &Namespaces, name: &str) -> String {
    let (ok, out, err) = ns.run(
        "b",
        "dig",
        &["@198.18.10.1", name, "A", "+short", "+time=2", "+tries=1"],
    );
    assert!(ok, "dig {name}: {err}");
    out.trim().to_owned()
}

/// curl from away's LAN; (success, body, stderr).
fn curl_in_b(ns: &Namespaces, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["--silent", "--show-error", "--max-time", "15"];
    all.extend_from_slice(args);
    ns.run("b", "curl", &all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_reach_home_systems_across_separate_networks_and_a_perimeter() {
    if !Namespaces::available()
        || !tests::require_tool("python3")
        || !tests::require_tool("dig")
        || !tests::require_tool("openssl")
        || !tests::require_tool("nft")
    {
        return;
    }
    let w = World::new();
    // Declared before every process in it: they are stopped first.
    let ns = Namespaces::new(&["a", "ae", "be", "b"]);
    ns.link(
        ("a", "lan", "198.18.10.20/24"),
        ("ae", "lan", "198.18.10.1/24"),
    );
    ns.link(
        ("ae", "wan", "198.19.0.1/30"),
        ("be", "wan", "198.19.0.2/30"),
    );
    ns.link(
        ("be", "lan", "198.18.10.1/24"),
        ("b", "lan", "198.18.10.50/24"),
    );
    // away's VIPs: the whole prefix is local to its edge, and routed there
    // from away's LAN.
    ns.ip(
        "be",
        &["route", "add", "local", "198.18.11.0/24", "dev", "lo"],
    );
    ns.ip(
        "b",
        &["route", "add", "198.18.11.0/24", "via", "198.18.10.1"],
    );
    std::fs::write(w.path("federation.yaml"), DOC).expect("document");
    lock_down(&w, &ns, "ae", "home");
    lock_down(&w, &ns, "be", "away");

    // Home's systems: a web server with a certificate for its name, and a
    // plain HTTP file server.
    let www = w.path("www");
    std::fs::create_dir_all(&www).expect("www");
    std::fs::write(www.join("page.txt"), "web page of home, via the overlay\n").expect("page");
    std::fs::write(www.join("files.txt"), "a file of home, via a VIP\n").expect("file");
    let (web_cert, web_key) = (w.path("web.pem"), w.path("web.key"));
    let (ok, _, err) = run(
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
            "/CN=web.home.example",
            "-addext",
            "subjectAltName=DNS:web.home.example",
            "-keyout",
            &web_key.display().to_string(),
            "-out",
            &web_cert.display().to_string(),
        ],
    );
    assert!(ok, "openssl req: {err}");
    let _web = ns.start(
        "a",
        "web",
        Path::new("sh"),
        &[
            "-c".into(),
            format!(
                "cd {} && exec openssl s_server -quiet -accept 198.18.10.20:8443 -cert {} -key {} -WWW",
                www.display(),
                web_cert.display(),
                web_key.display()
            ),
        ],
        w.path("web.log"),
    );
    let _files = ns.start(
        "a",
        "files",
        Path::new("python3"),
        &[
            "-m".into(),
            "http.server".into(),
            "8080".into(),
            "--bind".into(),
            "198.18.10.20".into(),
            "--directory".into(),
            www.display().to_string(),
        ],
        w.path("files.log"),
    );
    ns.wait_tcp("a", "198.18.10.20:8443".parse().expect("addr"));
    ns.wait_tcp("a", "198.18.10.20:8080".parse().expect("addr"));

    let home = edge(&w, &ns, "ae", "home", &[]);
    let mut away = edge(
        &w,
        &ns,
        "be",
        "away",
        &["--sni", "198.18.10.1:8443", "--vips", "--idle-secs", "10"],
    );

    // Home's file server is not reachable from away's LAN: its address
    // there is away's own range, and nothing routes between the LANs.
    let (ok, _, _) = curl_in_b(
        &ns,
        &["--max-time", "3", "http://198.18.10.20:8080/files.txt"],
    );
    assert!(
        !ok,
        "home's LAN reachable from away's LAN without the edges"
    );

    // Split-horizon DNS: home's names answered with away's edge.
    assert_eq!(resolve(&ns, "web.home.example"), "198.18.10.1");
    let vip = resolve(&ns, "files.home.example");
    assert!(vip.starts_with("198.18.11."), "files' VIP: {vip}");

    let web = |ns: &Namespaces| {
        curl_in_b(
            ns,
            &[
                "--cacert",
                &web_cert.display().to_string(),
                "--resolve",
                "web.home.example:8443:198.18.10.1",
                "https://web.home.example:8443/page.txt",
            ],
        )
    };
    let resolve_vip = format!("files.home.example:8080:{vip}");
    let files = |ns: &Namespaces| {
        curl_in_b(
            ns,
            &[
                "--resolve",
                &resolve_vip,
                "http://files.home.example:8080/files.txt",
            ],
        )
    };

    // Over QUIC: TLS end to end through the SNI listener, HTTP through a VIP.
    let (ok, body, err) = web(&ns);
    assert!(
        ok,
        "web through away's SNI listener: {err}\n{}",
        away.log_text()
    );
    assert_eq!(body, "web page of home, via the overlay\n");
    let (ok, body, err) = files(&ns);
    assert!(ok, "files through the VIP: {err}\n{}", away.log_text());
    assert_eq!(body, "a file of home, via a VIP\n");
    let r = audit_record(&w, "away", |r| {
        r["service"] == "home/files" && r["result"] == "allowed"
    })
    .await;
    assert_eq!(r["transport"], "quic");
    assert_eq!(r["src_network"], "staff");
    assert_eq!(r["src_addr"], "198.18.10.50");
    // Home decides on the organisation and network away vouches for; the
    // address is away's, in a range home also uses.
    let r = audit_record(&w, "home", |r| {
        r["service"] == "home/web" && r["result"] == "allowed"
    })
    .await;
    assert_eq!(r["peer_edge"], "away/edge");
    assert_eq!(r["src_org"], "away");
    assert_eq!(r["src_addr"], "198.18.10.50");

    // Home's perimeter now drops UDP to the overlay's QUIC port: the link
    // is lost and flows go over TLS on TCP, port 4443, which it lets in.
    let (ok, _, err) = ns.run(
        "ae",
        "nft",
        &[
            "insert",
            "rule",
            "inet",
            "fedgate_edge",
            "input",
            "udp",
            "dport",
            "4433",
            "drop",
        ],
    );
    assert!(ok, "nft insert: {err}");
    let before = audit(&w, "away").len();
    // A flow whose bytes were already out on the lost path is refused
    // rather than sent twice; staff retry, as a browser does.
    let mut fetched = None;
    for _ in 0..10 {
        let (ok, body, _) = files(&ns);
        if ok {
            fetched = Some(body);
            break;
        }
    }
    assert_eq!(
        fetched.as_deref(),
        Some("a file of home, via a VIP\n"),
        "no file over TCP with UDP dropped\n{}",
        away.log_text()
    );
    let (ok, body, err) = web(&ns);
    assert!(ok, "web over TCP: {err}\n{}", away.log_text());
    assert_eq!(body, "web page of home, via the overlay\n");
    for service in ["home/files", "home/web"] {
        let r = audit_record(&w, "away", |r| {
            r["service"] == service && r["result"] == "allowed" && r["transport"] == "tcp"
        })
        .await;
        assert_eq!(r["peer_edge"], "home/edge");
    }
    assert!(
        audit(&w, "away").len() > before,
        "no flow audited after the perimeter closed"
    );
    away.wait_for("QUIC path to peer lost", Duration::from_secs(5));
    drop(home);
}
