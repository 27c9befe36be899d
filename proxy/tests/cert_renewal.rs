//! An edge's certificate renewed in place, without a restart: once the new
//! pair is on disk, new handshakes present it (openssl s_client sees its
//! serial); the old serial can then be revoked, and the link to the peer
//! comes back with the new certificate. A pair naming another identity is
//! refused, and the certificate in use stays.

mod common;

use std::time::Duration;

use common::*;
use tests::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_presented_without_a_restart() {
    let w = World::new();
    tests::echo_origin(addr(&w, 11, 7007)).await;
    let doc = document(&w, &Options::default());
    let mut pair = start_pair(&w, &doc, &doc, &[]);
    // The files start_pair issued and gave each edge.
    let (ac, ak) = (w.path("away-edge.pem"), w.path("away-edge.key"));
    let home_pair = (w.path("home-edge.pem"), w.path("home-edge.key"));
    // (The serial as s_client shows it: checked against an issued one below.)
    let old = presented_serial(&w, &home_pair);
    assert_eq!(echo_record(&w, "one").await["transport"], "quic");

    // Renewed: same identity, new key and serial.
    let (nc, nk, new_serial) = w.edge_cert("away", "edge", "away-edge-renewed", None, None);
    let new = new_serial
        .to_lowercase()
        .trim_start_matches('0')
        .to_string();
    assert_ne!(new, old);
    install(&(nc, nk), &ac, &ak);
    pair.away
        .wait_for("certificate renewed", Duration::from_secs(10));
    assert_eq!(presented_serial(&w, &home_pair), new);
    let away_metrics = metrics(addr(&w, 1, 9100)).await;
    assert!(
        away_metrics.contains("fedgate_certificate_reloads_total{result=\"applied\"} 1"),
        "{away_metrics}"
    );
    assert!(away_metrics.contains("fedgate_certificate_expiry_timestamp_seconds "));

    // The old serial revoked at home: the link made with it is closed, and
    // the next flow brings it back with the renewed certificate.
    let revoked = document(
        &w,
        &Options {
            revoked: vec![old.clone()],
            ..Options::default()
        },
    );
    w.snapshot_version(&revoked, "home/edge", "home.snapshot.json", 2);
    wait_version(addr(&w, 2, 9100), 2).await;
    assert!(
        echo_comes_back(&w, 10).await,
        "no flow through home after revoking the old serial\n{}",
        pair.away.log_text()
    );
    let r = audit_record(&w, "home", |r| {
        r["result"] == "allowed" && r["bytes_up"].as_u64().is_some_and(|b| b >= 10)
    })
    .await;
    assert_eq!(r["peer_edge"], "away/edge");

    // A pair that names another identity (third's edge) is refused; the
    // renewed certificate stays in use.
    let (tc, tk, _) = w.edge_cert("third", "edge", "third-edge", None, None);
    install(&(tc, tk), &ac, &ak);
    pair.away
        .wait_for("new TLS material refused", Duration::from_secs(10));
    assert!(
        pair.away
            .log_text()
            .contains("it names edge third/edge, not edge away/edge"),
        "{}",
        pair.away.log_text()
    );
    assert_eq!(presented_serial(&w, &home_pair), new);
}
