//! Service VIPs survive a restart. With `--vip-state`, an edge that gave a
//! new service an address at run time gives every service the same address
//! after a restart, where a fresh start (service-id order) would move them;
//! a damaged state file is reported with the file and the position, and the
//! edge starts with addresses given afresh.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tests::{World, ip};

/// Echo through `vip` (retrying, bounded, while its listener comes up).
async fn assert_echoes(vip: SocketAddr, log: impl Fn() -> String) {
    let mut last = String::new();
    for _ in 0..50 {
        match echo_through(vip, vip.to_string().as_bytes()).await {
            Ok(back) if back == vip.to_string().as_bytes() => return,
            Ok(back) => last = format!("echoed {:?}", String::from_utf8_lossy(&back)),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no echo through {vip}: {last}\n{}", log());
}

/// Nothing listens at `addr` (the service is not at this VIP).
async fn assert_refused(addr: SocketAddr) {
    let r = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect answered in time");
    assert!(r.is_err(), "{addr} accepted a connection");
}

/// The state file's address of `service`.
fn kept(path: &std::path::Path, service: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["hosts"][service].as_str().map(str::to_owned)
}

fn away_args(w: &World, state: &std::path::Path) -> Vec<String> {
    let mut args = away_ingress(w);
    args.extend(["--vip-state".to_string(), state.display().to_string()]);
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_every_vip() {
    let w = World::new();
    tests::echo_origin(addr(&w, 11, 7007)).await;
    tests::echo_origin(addr(&w, 14, 7013)).await;
    let state = w.path("away.vips");
    let v1 = document(&w, &Options::default());
    let state_flag = vec!["--vip-state".to_string(), state.display().to_string()];
    let mut pair = start_pair_with(&w, &v1, &v1, &[], &state_flag);
    // VIPs from the prefix's first host (.129) in service-id order of the
    // services this edge's staff may reach: blob, echo.
    assert_echoes(addr(&w, 130, 7007), || pair.away.log_text()).await;
    assert_eq!(
        kept(&state, "home/echo"),
        Some(ip(w.net, 130).to_string()),
        "the table is on disk from the start"
    );

    // Version 2 adds home/aaa, which sorts first: it takes the first
    // address never given (.131) and moves no other service.
    let v2 = document(
        &w,
        &Options {
            extra_services: format!(
                "  - {{org: home, name: aaa, dns: [aaa.home.example], address: {}, ports: [7013], protocol: tcp}}\n",
                ip(w.net, 14)
            ),
            extra_policies: "  - {id: roaming-to-aaa, description: A new service, from: {networks: [away/roaming-staff]}, to: {services: [home/aaa]}, action: allow, agreement: ISA-T}\n",
            ..Options::default()
        },
    );
    w.snapshot_version(&v2, "home/edge", "home.snapshot.json", 2);
    w.snapshot_version(&v2, "away/edge", "away.snapshot.json", 2);
    pair.home
        .wait_for("snapshot applied", Duration::from_secs(10));
    pair.away
        .wait_for("snapshot applied", Duration::from_secs(10));
    assert_echoes(addr(&w, 131, 7013), || pair.away.log_text()).await;
    assert_echoes(addr(&w, 130, 7007), || pair.away.log_text()).await;
    assert_eq!(kept(&state, "home/aaa"), Some(ip(w.net, 131).to_string()));

    // A restart from version 2: every service at the address it had. A fresh
    // start would give aaa .129, blob .130 and echo .131.
    assert!(
        pair.away.terminate(Duration::from_secs(20)).is_some(),
        "away/edge stops on SIGTERM"
    );
    let (ac, ak, _) = w.edge_cert("away", "edge", "away-edge", None, None);
    let snap = w.path("away.snapshot.json");
    let mut away = start_edge(
        &w,
        "away2",
        "away/edge",
        &snap,
        &ac,
        &ak,
        &away_args(&w, &state),
    );
    away.wait_for("VIP state restored", Duration::from_secs(5));
    assert_echoes(addr(&w, 130, 7007), || away.log_text()).await;
    assert_echoes(addr(&w, 131, 7013), || away.log_text()).await;
    assert_refused(addr(&w, 131, 7007)).await;
    assert_refused(addr(&w, 129, 7013)).await;

    // A damaged state file: reported with where and why; the edge starts
    // with addresses given afresh and writes them.
    assert!(away.terminate(Duration::from_secs(20)).is_some());
    std::fs::write(
        &state,
        "{\"format\": 1, \"hosts\": {\"home/echo\": \"nope\"}}\n",
    )
    .expect("write");
    let mut away = start_edge(
        &w,
        "away3",
        "away/edge",
        &snap,
        &ac,
        &ak,
        &away_args(&w, &state),
    );
    away.wait_for("VIP state refused", Duration::from_secs(5));
    let log = away.log_text();
    assert!(
        log.contains(&state.display().to_string()) && log.contains("line 1 column"),
        "the file and the position are named:\n{log}"
    );
    assert_echoes(addr(&w, 131, 7007), || away.log_text()).await;
    assert_eq!(kept(&state, "home/aaa"), Some(ip(w.net, 129).to_string()));
    assert!(away.terminate(Duration::from_secs(20)).is_some());
}
