//! The control plane hands each edge its signed snapshot and every change
//! reaches the edges at once, whole and only when acknowledged:
//! - a member's admin opens one of its services with `POST /v1/apply`
//!   (curl, mutual TLS); both edges run the new version within a second and
//!   the flow it allows works through the edges;
//! - refused whole, leaving every edge on its version: another member's
//!   admin changing that policy (403, naming the right), a stale expected
//!   version (409), an invalid document (422 with file:line:column);
//! - an established flow the new policy no longer allows is closed after the
//!   grace, and audited as closed by the snapshot;
//! - history lists every version with its author and changes; rollback is a
//!   new version; edges report the version they run (`/v1/status`);
//! - every change, accepted or refused, is in the admin audit log.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tests::World;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A CONNECT tunnel through the away edge to `target`, proven with a round trip.
async fn tunnel(w: &World, target: &str) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(addr(w, 1, 3128))
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        if s.read(&mut byte).await.map_err(|e| e.to_string())? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head);
    }
    s.write_all(b"ping").await.map_err(|e| e.to_string())?;
    let mut back = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
        .await
        .map_err(|_| "no echo".to_string())?
        .map_err(|e| e.to_string())?;
    assert_eq!(&back, b"ping");
    Ok(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_every_edge_at_once_and_only_when_accepted() {
    let w = World::new();
    tests::echo_origin(addr(&w, 11, 7007)).await;
    tests::echo_origin(addr(&w, 13, 7011)).await;
    let v1 = document(&w, &Options::default());
    let _fed = start_followed(&w, &v1, &["--deny-grace-secs".into(), "1".into()]).await;
    let home_admin_addr = home_admin(&w);
    let away_admin_addr = addr(&w, 1, 9100);

    let home_admin = admin(&w, Some("home"));
    let away_admin = admin(&w, Some("away"));

    // Version 1: secret is closed to away.
    assert!(tunnel(&w, "secret.home.example:7011").await.is_err());
    let mut echo_flow = tunnel(&w, "echo.home.example:7007")
        .await
        .expect("echo open");

    // Home opens secret: acknowledged as version 2, on both edges within a second.
    let v2 = document(
        &w,
        &Options {
            extra_policies: OPEN_SECRET,
            ..Options::default()
        },
    );
    let (status, body) = api(
        &w,
        &home_admin,
        "POST",
        "/v1/apply",
        Some(json!({"expected_version": 1, "message": "open secret to away", "files": files(&w, &v2)})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 2);
    assert_eq!(
        body["changes"],
        json!([{"op": "added", "kind": "policy", "id": "home-opens-secret"}])
    );
    let took_home = wait_version(home_admin_addr, 2).await;
    let took_away = wait_version(away_admin_addr, 2).await;
    assert!(
        took_home.max(took_away) < Duration::from_secs(1),
        "edges took {took_home:?} and {took_away:?} to run version 2"
    );
    tunnel(&w, "secret.home.example:7011")
        .await
        .expect("secret is open in version 2");
    // ... and has a VIP of its own now (blob .129, echo .130, secret .131),
    // bound without a restart.
    let mut vip = TcpStream::connect(addr(&w, 131, 7011))
        .await
        .expect("new VIP listens");
    vip.write_all(b"vip!").await.expect("write");
    let mut back = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), vip.read_exact(&mut back))
        .await
        .expect("echo in time")
        .expect("echo");
    assert_eq!(&back, b"vip!");

    // Refused whole, the edges untouched: another member's admin...
    let meddled = v2.replace(
        "from: {orgs: [away]}, to: {services: [home/secret]}",
        "from: {orgs: [away, third]}, to: {services: [home/secret]}",
    );
    let (status, body) = api(
        &w,
        &away_admin,
        "POST",
        "/v1/apply",
        Some(json!({"expected_version": 2, "files": files(&w, &meddled)})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("policy `home-opens-secret`") && message.contains("needs admin of home"),
        "the refusal names the object and the missing right: {message}"
    );
    // ... a stale expected version ...
    let (status, body) = api(
        &w,
        &home_admin,
        "POST",
        "/v1/apply",
        Some(json!({"expected_version": 1, "files": files(&w, &v1)})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["head"], 2);
    // ... an invalid document, with the place of the error.
    let broken = v2.replace("protocol: tcp}", "protocol: tcpp}");
    let (status, body) = api(
        &w,
        &home_admin,
        "POST",
        "/v1/apply",
        Some(json!({"expected_version": 2, "files": files(&w, &broken)})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let d = &body["diagnostics"]["diagnostics"][0];
    assert!(
        d["line"].as_u64().is_some() && d["column"].as_u64().is_some(),
        "{body}"
    );
    let (_, doc) = api(&w, &home_admin, "GET", "/v1/document", None).await;
    assert_eq!(
        doc["meta"]["version"].as_u64().or(doc["version"].as_u64()),
        Some(2)
    );

    // Home closes echo: the established flow ends after the 1 s grace.
    let v3 = v2.replace("home/web, home/echo, home/blob", "home/web, home/blob");
    let (status, body) = api(
        &w,
        &home_admin,
        "POST",
        "/v1/apply",
        Some(json!({"expected_version": 2, "message": "close echo", "files": files(&w, &v3)})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    wait_version(home_admin_addr, 3).await;
    let mut buf = [0u8; 16];
    let ended = tokio::time::timeout(Duration::from_secs(5), echo_flow.read(&mut buf)).await;
    assert!(
        matches!(ended, Ok(Ok(0)) | Ok(Err(_))),
        "the echo flow must be closed after the grace: {ended:?}"
    );
    let r = audit_record(&w, "home", |r| {
        r["service"] == "home/echo" && r["closed"].as_str().is_some()
    })
    .await;
    assert!(r["closed"].as_str().unwrap().starts_with("policy:"), "{r}");

    // Rollback to version 2 is version 4; echo opens again.
    let (status, body) = api(
        &w,
        &home_admin,
        "POST",
        "/v1/rollback",
        Some(json!({"to": 2, "expected_version": 3})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 4);
    wait_version(away_admin_addr, 4).await;
    wait_version(home_admin_addr, 4).await;
    tunnel(&w, "echo.home.example:7007")
        .await
        .expect("echo open again after the rollback");

    // History and status.
    let (_, history) = api(&w, &away_admin, "GET", "/v1/history", None).await;
    let versions = history["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 4, "{history}");
    assert_eq!(versions[1]["author"], "admin home/admin");
    assert_eq!(versions[1]["message"], "open secret to away");
    assert_eq!(versions[3]["rollback_of"], 2);
    let mut reported = false;
    for _ in 0..100 {
        let (_, status) = api(&w, &away_admin, "GET", "/v1/status", None).await;
        let edges = status["edges"].as_array().cloned().unwrap_or_default();
        reported = ["away/edge", "home/edge"]
            .iter()
            .all(|e| edges.iter().any(|x| x["edge"] == *e && x["version"] == 4));
        if reported {
            assert_eq!(status["head"], 4);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reported, "both edges report version 4 in /v1/status");

    // Edges are not admins.
    let edge_id = (w.path("away-edge.pem"), w.path("away-edge.key"));
    let (status, _) = api(&w, &edge_id, "GET", "/v1/history", None).await;
    assert_eq!(status, 403);

    // The admin audit log: every change asked, accepted or refused, chained.
    let log = std::fs::read_to_string(w.path("control-data/admin-audit.jsonl")).expect("audit");
    let results: Vec<String> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["result"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        results,
        [
            "accepted",
            "forbidden",
            "conflict",
            "invalid",
            "accepted",
            "accepted"
        ]
    );
    let mut chain = federation::chain::Verifier::default();
    for line in log.lines() {
        chain.handle_line(line).expect("admin audit chain");
    }

    // Home adds a service no one else may reach: away's document stays as
    // it is, so away gets version 5 as a signed header alone, completes it
    // with the document it holds, and runs it (and caches it).
    let v5 = document(
        &w,
        &Options {
            extra_policies: OPEN_SECRET,
            extra_services: format!(
                "  - {{org: home, name: archive, dns: [archive.home.example], address: {}, ports: [7013], protocol: tcp}}\n",
                tests::ip(w.net, 30)
            ),
            ..Options::default()
        },
    );
    let (status, body) = api(
        &w,
        &home_admin,
        "POST",
        "/v1/apply",
        Some(json!({"expected_version": 4, "message": "archive, home only", "files": files(&w, &v5)})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 5);
    wait_version(home_admin_addr, 5).await;
    wait_version(away_admin_addr, 5).await;
    let away_log = _fed.away.log_text();
    assert!(
        away_log.contains("same document: signed header only") && away_log.contains("version=5"),
        "{away_log}"
    );
    assert!(
        !_fed
            .home
            .log_text()
            .contains("same document: signed header only"),
        "home's document changed with every version"
    );
    tunnel(&w, "secret.home.example:7011")
        .await
        .expect("secret still open to away at version 5");
}

/// `NAME` (a counter without labels) from the edge's metrics at `admin_addr`.
async fn counter(admin_addr: std::net::SocketAddr, name: &str) -> u64 {
    let (ok, out, err) = curl(vec![format!("http://{admin_addr}/metrics")]).await;
    assert!(ok, "metrics of {admin_addr}: {err}");
    out.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {out}"))
}

/// An edge polls and reports over one kept-alive mutual-TLS connection,
/// version after version, and makes a new one when the control plane
/// restarts (its connection closed under a long poll).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_keeps_one_connection_to_the_control_plane() {
    let w = World::new();
    let v1 = document(&w, &Options::default());
    let open = document(
        &w,
        &Options {
            extra_policies: OPEN_SECRET,
            ..Options::default()
        },
    );
    let fed = start_followed(&w, &v1, &[]).await;
    let edges = [home_admin(&w), addr(&w, 1, 9100)];
    let home_admin = admin(&w, Some("home"));
    let apply = |version: u64, doc: &String| {
        let body = json!({"expected_version": version - 1, "message": format!("version {version}"), "files": files(&w, doc)});
        let home_admin = &home_admin;
        let w = &w;
        async move {
            let (status, body) = api(w, home_admin, "POST", "/v1/apply", Some(body)).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["version"], version);
        }
    };

    // Versions 2 to 4, each answered to a long poll and reported after.
    for (version, doc) in [(2, &open), (3, &v1), (4, &open)] {
        apply(version, doc).await;
        for e in edges {
            wait_version(e, version).await;
        }
    }
    for e in edges {
        let requests = counter(e, "fedgate_control_requests_total").await;
        // The first fetch and report, then a poll and a report per version.
        assert!(requests >= 8, "{e}: {requests} requests");
        assert_eq!(
            counter(e, "fedgate_control_connections_total").await,
            1,
            "{e}: every request on one connection"
        );
    }

    // The control plane restarts: each edge's kept connection is closed
    // under its long poll; the edge connects again and goes on.
    let Followed {
        control,
        home,
        away,
        ..
    } = fed;
    drop(control);
    let _control = start_control(&w, &v1);
    apply(5, &v1).await;
    for e in edges {
        wait_version(e, 5).await;
        assert_eq!(
            counter(e, "fedgate_control_connections_total").await,
            2,
            "{e}: one new connection after the restart"
        );
    }
    for edge in [&home, &away] {
        let log = edge.log_text();
        assert!(log.contains("control plane unreachable"), "{log}");
    }
}
