//! Peers are refused with a logged reason: a certificate of another
//! organisation claiming this one's network, an expired certificate, and a
//! revoked one. The client gets a clear failure, never the service.

mod common;

use common::*;
use jiff::SignedDuration;
use tests::World;

async fn connect_status(w: &World) -> String {
    let (_, body, _) = curl(vec![
        "--proxy".into(),
        format!("http://{}", addr(w, 1, 3128)),
        "--proxytunnel".into(),
        "--write-out".into(),
        "%{http_connect}".into(),
        "telnet://echo.home.example:7007".into(),
    ])
    .await;
    body
}

const THIRD_TO_WEB: &str = "  - {id: third-to-web, description: Third reaches web, from: {orgs: [third]}, to: {services: [home/web]}, action: allow, agreement: ISA-T}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organisations_certificate_cannot_claim_our_network() {
    let w = World::new();
    tests::echo_origin(addr(&w, 11, 7007)).await;
    // The away edge runs with third's certificate.
    let (tc, tk, _) = w.edge_cert("third", "edge", "third-edge", None, None);
    let (hc, hk, _) = w.edge_cert("home", "edge", "home-edge", None, None);

    // Third is no peer of home (no policy between them): its edge is unknown
    // to home's snapshot and refused at the handshake.
    let doc = document(&w, &Options::default());
    let home_snap = w.snapshot(&doc, "home/edge", "home.snapshot.json");
    let away_snap = w.snapshot(&doc, "away/edge", "away.snapshot.json");
    {
        let mut home = start_edge(&w, "home", "home/edge", &home_snap, &hc, &hk, &[]);
        let away = start_edge(
            &w,
            "away",
            "away/edge",
            &away_snap,
            &tc,
            &tk,
            &away_ingress(&w),
        );
        let status = connect_status(&w).await;
        assert!(
            status.ends_with("502"),
            "got `{status}`\naway:\n{}",
            away.log_text()
        );
        home.wait_for(
            "peer third/edge is not an edge of this federation",
            std::time::Duration::from_secs(10),
        );
    }

    // Third is a peer of home: the handshake passes, but the flow claims
    // away's roaming-staff network, which third does not own.
    let doc = document(
        &w,
        &Options {
            extra_policies: THIRD_TO_WEB,
            ..Options::default()
        },
    );
    let home_snap = w.snapshot(&doc, "home/edge", "home2.snapshot.json");
    let away_snap = w.snapshot(&doc, "away/edge", "away2.snapshot.json");
    let home = start_edge(&w, "home2", "home/edge", &home_snap, &hc, &hk, &[]);
    let away = start_edge(
        &w,
        "away2",
        "away/edge",
        &away_snap,
        &tc,
        &tk,
        &away_ingress(&w),
    );
    let status = connect_status(&w).await;
    assert!(
        status.ends_with("403"),
        "got `{status}`\naway:\n{}\nhome:\n{}",
        away.log_text(),
        home.log_text()
    );
    let r = audit_record(&w, "home2", |r| r["service"] == "home/echo").await;
    assert_eq!(
        r["src_org"], "third",
        "the home edge takes the org from the certificate"
    );
    assert_eq!(r["reason"], "foreign-network");
    assert_eq!(r["result"], "denied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_revoked_certificates_are_refused() {
    let w = World::new();
    tests::echo_origin(addr(&w, 11, 7007)).await;
    let now = tests::now();
    let (ec, ek, _) = w.edge_cert(
        "away",
        "edge",
        "away-expired",
        Some((
            now - SignedDuration::from_hours(48),
            now - SignedDuration::from_hours(24),
        )),
        None,
    );
    let (rc, rk, revoked_serial) = w.edge_cert(
        "away",
        "edge",
        "away-revoked",
        None,
        Some(&[0x0f, 0xed, 0x6a, 0x7e]),
    );
    let doc = document(
        &w,
        &Options {
            revoked: vec![revoked_serial.clone()],
            ..Options::default()
        },
    );
    let home_snap = w.snapshot(&doc, "home/edge", "home.snapshot.json");
    let away_snap = w.snapshot(&doc, "away/edge", "away.snapshot.json");
    let (hc, hk, _) = w.edge_cert("home", "edge", "home-edge", None, None);
    let mut home = start_edge(&w, "home", "home/edge", &home_snap, &hc, &hk, &[]);

    {
        let _away = start_edge(
            &w,
            "away",
            "away/edge",
            &away_snap,
            &ec,
            &ek,
            &away_ingress(&w),
        );
        let status = connect_status(&w).await;
        assert!(
            status.ends_with("502"),
            "expired certificate: got `{status}`"
        );
        home.wait_for("handshake failed", std::time::Duration::from_secs(10));
        assert!(
            home.log_text().contains("certificate expired"),
            "home log:\n{}",
            home.log_text()
        );
        assert!(
            audit(&w, "home").is_empty(),
            "no flow may reach the home edge"
        );
    }
    {
        let _away = start_edge(
            &w,
            "away2",
            "away/edge",
            &away_snap,
            &rc,
            &rk,
            &away_ingress(&w),
        );
        let status = connect_status(&w).await;
        assert!(
            status.ends_with("502"),
            "revoked certificate: got `{status}`"
        );
        home.wait_for(
            "revoked certificate serial",
            std::time::Duration::from_secs(10),
        );
        assert!(
            home.log_text().contains(&revoked_serial),
            "home log:\n{}",
            home.log_text()
        );
        assert!(
            audit(&w, "home").is_empty(),
            "no flow may reach the home edge"
        );
    }
}
