//! Denials are quick and clear: CONNECT answers 403 with the reason, SOCKS5
//! its rule-set code, and the denial is audited with the rule id — at the
//! visited edge for its pre-check, and at both edges when the home edge
//! decides otherwise (here its policy changed before the visited edge's did).

mod common;

use std::time::Duration;

use common::*;
use tests::World;

const SECRET_AND_BLOCK_ECHO: &str = "  - {id: secret-open, description: Away may reach secret, from: {orgs: [away]}, to: {services: [home/secret]}, action: allow, agreement: ISA-T}\n  - {id: secret-deny, description: But not from loopback, from: {orgs: [away], cidrs: [127.0.0.0/8]}, to: {services: [home/secret]}, action: deny}\n  - {id: block-echo, description: Home closes echo to away, from: {orgs: [away]}, to: {services: [home/echo]}, action: deny}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_flows_are_refused_clearly_and_audited() {
    let w = World::new();
    tests::echo_origin(addr(&w, 11, 7007)).await;
    tests::echo_origin(addr(&w, 13, 7011)).await;
    let away_doc = document(
        &w,
        &Options {
            extra_policies: SECRET_DENIED,
            ..Options::default()
        },
    );
    let home_doc = document(
        &w,
        &Options {
            extra_policies: SECRET_AND_BLOCK_ECHO,
            ..Options::default()
        },
    );
    let pair = start_pair(&w, &away_doc, &home_doc, &[]);
    let proxy = format!("http://{}", addr(&w, 1, 3128));

    // A deny covers home/secret from here: the visited edge refuses before any overlay.
    let started = std::time::SystemTime::now();
    let (ok, body, err) = curl(vec![
        "--proxy".into(),
        proxy.clone(),
        "--proxytunnel".into(),
        "--write-out".into(),
        "%{http_connect}".into(),
        "telnet://secret.home.example:7011".into(),
    ])
    .await;
    assert!(!ok, "a denied CONNECT must fail: {body} {err}");
    assert!(
        body.ends_with("403"),
        "expected 403 from the proxy, got `{body}` ({err})"
    );
    assert!(
        started.elapsed().unwrap() < Duration::from_secs(2),
        "denial was not quick"
    );
    let r = audit_record(&w, "away", |r| r["service"] == "home/secret").await;
    assert_eq!(r["result"], "denied");
    assert_eq!(r["reason"], "denied-by-rule");
    assert_eq!(r["rules"][0], "secret-deny");
    assert!(
        audit(&w, "home")
            .iter()
            .all(|r| r["service"] != "home/secret"),
        "the home edge never saw the pre-checked denial"
    );

    // The reason is in the 403's body for people and scripts alike.
    let raw = tokio::task::spawn_blocking({
        let a = addr(&w, 1, 3128);
        move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(a).unwrap();
            s.write_all(b"CONNECT secret.home.example:7011 HTTP/1.1\r\nHost: secret.home.example:7011\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        }
    })
    .await
    .unwrap();
    assert!(raw.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{raw}");
    assert!(
        raw.contains("denied: denied-by-rule by rule secret-deny"),
        "{raw}"
    );

    // A name this edge does not know (no policy opens it from here) is refused too.
    let (ok, body, _) = curl(vec![
        "--proxy".into(),
        proxy.clone(),
        "--proxytunnel".into(),
        "--write-out".into(),
        "%{http_connect}".into(),
        "telnet://nothing.home.example:7011".into(),
    ])
    .await;
    assert!(!ok && body.ends_with("403"), "unknown name: `{body}`");

    // SOCKS5: rule-set failure (code 2).
    let (ok, _, err) = curl(vec![
        "--socks5-hostname".into(),
        addr(&w, 1, 1080).to_string(),
        "telnet://secret.home.example:7011".into(),
    ])
    .await;
    assert!(
        !ok && err.contains("SOCKS5") && err.trim_end().ends_with("(2)"),
        "SOCKS5 denial must be reply 2, connection not allowed by ruleset: {err}"
    );

    // The visited edge allows echo, the home edge's newer policy denies it:
    // 403 naming the home decision and rule, audited at both edges.
    let (ok, body, err) = curl(vec![
        "--proxy".into(),
        proxy.clone(),
        "--proxytunnel".into(),
        "--write-out".into(),
        "%{http_connect}".into(),
        "telnet://echo.home.example:7007".into(),
    ])
    .await;
    assert!(
        !ok && body.ends_with("403"),
        "home denial: `{body}` {err}\n{}",
        pair.home.log_text()
    );
    let home = audit_record(&w, "home", |r| r["service"] == "home/echo").await;
    assert_eq!(home["result"], "denied");
    assert_eq!(home["reason"], "denied-by-rule");
    assert_eq!(home["rules"][0], "block-echo");
    let visited = audit_record(&w, "away", |r| r["service"] == "home/echo").await;
    assert_eq!(visited["result"], "denied");
    assert_eq!(visited["reason"], "home:denied-by-rule");
    assert_eq!(visited["rules"][0], "block-echo");
    assert_eq!(visited["flow_id"], home["flow_id"]);
    assert!(
        pair.home.log_text().contains("flow denied"),
        "home log:\n{}",
        pair.home.log_text()
    );

    // The same through echo's VIP, with the client's bytes sent at once: the
    // visited edge forwards them with the flow's opening, before the home
    // edge's answer; the home edge refuses and they never reach the echo
    // service (it would send them back): the client reads end of stream.
    let vip = addr(&w, 130, 7007);
    let echoed = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(vip).expect("connect to the VIP");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"early bytes for a denied flow").unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).map(|_| out)
    })
    .await
    .unwrap();
    assert_eq!(
        echoed.as_deref().ok(),
        Some(&b""[..]),
        "a refused flow is closed, nothing echoed: {echoed:?}"
    );
    let vip_home = audit_record(&w, "home", |r| {
        r["service"] == "home/echo" && r["flow_id"] != home["flow_id"]
    })
    .await;
    assert_eq!(vip_home["result"], "denied");
    assert_eq!(vip_home["rules"][0], "block-echo");
    assert_eq!(vip_home["bytes_up"], 0, "{vip_home}");
    // The visited edge records the home edge's reason, not a failure to reach it.
    let vip_visited = audit_record(&w, "away", |r| r["flow_id"] == vip_home["flow_id"]).await;
    assert_eq!(vip_visited["result"], "denied", "{vip_visited}");
    assert_eq!(
        vip_visited["reason"], "home:denied-by-rule",
        "{vip_visited}"
    );
    assert_eq!(vip_visited["ingress"], "vip", "{vip_visited}");
}
