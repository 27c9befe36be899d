//! Static stability: an edge keeps its last-known-good signed snapshot on
//! disk and starts from it while the control plane is down; a cache that was
//! tampered with, or that belongs to another edge, is refused with a clear
//! error; the control plane restarts without losing a version and the edges
//! pick up where they left off.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tests::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_restarts_from_its_cache_and_refuses_a_bad_one() {
    let w = World::new();
    let v1 = document(&w, &Options::default());
    let Followed {
        mut control,
        mut home,
        away,
        home_cert: (hc, hk),
        ..
    } = start_followed(&w, &v1, &[]).await;
    let home_admin_addr = home_admin(&w);
    let home_args = vec!["--admin".to_string(), home_admin_addr.to_string()];

    // Version 2, acknowledged, then the control plane stops.
    let v2 = document(
        &w,
        &Options {
            extra_policies: OPEN_SECRET,
            ..Options::default()
        },
    );
    let (status, body) = api(
        &w,
        &admin(&w, Some("home")),
        "POST",
        "/v1/apply",
        Some(json!({"expected_version": 1, "files": files(&w, &v2)})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    wait_version(home_admin_addr, 2).await;
    wait_version(addr(&w, 1, 9100), 2).await;
    // Beside the cache, the VIPs given out (`--vip-state` by default).
    let vips: serde_json::Value = serde_json::from_slice(
        &std::fs::read(w.path("away.cache.json.vips")).expect("VIP state beside the cache"),
    )
    .expect("VIP state is JSON");
    assert_eq!(
        vips["hosts"]["home/secret"],
        json!(tests::ip(w.net, 131).to_string()),
        "{vips}"
    );
    drop(away);
    assert!(control.terminate(Duration::from_secs(10)).is_some());

    // Restarted with the control plane away: from the cache, at version 2.
    assert!(home.terminate(Duration::from_secs(15)).is_some());
    let home = start_edge_followed(&w, "home", "home/edge", &hc, &hk, &home_args);
    assert!(
        home.log_text()
            .contains("starting from the cached snapshot")
    );
    wait_version(home_admin_addr, 2).await;
    drop(home);

    // A tampered cache is refused, and with no control plane the edge does
    // not start: exit status and a clear reason.
    let cache = w.path("home.cache.json");
    let good = std::fs::read_to_string(&cache).expect("cache");
    std::fs::write(
        &cache,
        good.replacen("home-opens-secret", "home-opens-sekret", 1),
    )
    .expect("tamper");
    std::fs::copy(&cache, w.path("home-tampered.cache.json")).expect("copy");
    let mut refused = spawn_edge_followed(&w, "home-tampered", "home/edge", &hc, &hk, &[]);
    let status = refused.wait_exit(Duration::from_secs(30)).expect("exits");
    assert!(!status.success());
    let log = refused.log_text();
    assert!(
        log.contains("snapshot cache")
            && log.contains("refused")
            && log.contains("signature does not verify"),
        "{log}"
    );

    // Another edge's snapshot is refused as such.
    std::fs::copy(w.path("away.cache.json"), w.path("home-foreign.cache.json")).expect("copy");
    let mut foreign = spawn_edge_followed(&w, "home-foreign", "home/edge", &hc, &hk, &[]);
    let status = foreign.wait_exit(Duration::from_secs(30)).expect("exits");
    assert!(!status.success());
    let log = foreign.log_text();
    assert!(
        log.contains("snapshot is for edge `away/edge`, not this edge `home/edge`"),
        "{log}"
    );

    // The control plane restarts from its data directory: nothing lost.
    let _control = start_control(&w, &v1);
    let (_, history) = api(&w, &admin(&w, Some("home")), "GET", "/v1/history", None).await;
    assert_eq!(
        history["versions"].as_array().map(Vec::len),
        Some(2),
        "{history}"
    );
    // The edge with the tampered cache now starts, fetching version 2 afresh.
    let fresh = start_edge_followed(&w, "home-tampered", "home/edge", &hc, &hk, &home_args);
    wait_version(home_admin_addr, 2).await;
    assert!(fresh.log_text().contains("snapshot cache refused"));
}
