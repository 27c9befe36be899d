//! When UDP to the home edge is blocked (here: the home edge does not listen
//! on QUIC), flows go over TLS on TCP at once, and keep working; the home
//! edge logs the peer's certificate once, not once per flow.

mod common;

use common::*;
use tests::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_fall_back_to_tls_over_tcp() {
    let w = World::new();
    let origin_cert = w.path("origin.pem");
    tests::https_origin(
        addr(&w, 10, 8443),
        "web.home.example",
        &origin_cert,
        "over tcp\n",
    )
    .await;
    let doc = document(&w, &Options::default());
    let mut pair = start_pair(&w, &doc, &doc, &["--no-quic".to_string()]);
    for round in 0..3 {
        let (ok, body, err) = curl(vec![
            "--proxy".into(),
            format!("http://{}", addr(&w, 1, 3128)),
            "--cacert".into(),
            origin_cert.display().to_string(),
            "https://web.home.example:8443/".into(),
        ])
        .await;
        assert!(
            ok && body == "over tcp\n",
            "round {round}: {body} {err}\n{}",
            pair.away.log_text()
        );
    }
    // A flow's record is written when the edge sees it close, which may be
    // just after curl has exited: wait (bounded) for all three.
    let allowed = || -> Vec<_> {
        audit(&w, "away")
            .into_iter()
            .filter(|r| r["result"] == "allowed")
            .collect()
    };
    let mut records = allowed();
    for _ in 0..200 {
        if records.len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        records = allowed();
    }
    assert_eq!(records.len(), 3, "{records:#?}");
    assert!(
        records.iter().all(|r| r["transport"] == "tcp"),
        "{records:#?}"
    );
    // QUIC's handshake gives up after 2 s (the flows did not wait for it).
    pair.away
        .wait_for("using TLS over TCP", std::time::Duration::from_secs(10));
    let home = audit_record(&w, "home", |r| r["result"] == "allowed").await;
    assert_eq!(home["transport"], "tcp");
    // Three flows, three TLS connections from one peer certificate: the
    // home edge logs the peer's certificate once, not once per flow.
    let log = pair.home.log_text();
    let connected: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("peer connected"))
        .collect();
    assert_eq!(connected.len(), 1, "{log}");
    assert!(
        connected[0].contains("peer=away/edge")
            && connected[0].contains("transport=\"tcp\"")
            && connected[0].contains("fingerprint="),
        "{log}"
    );
}
