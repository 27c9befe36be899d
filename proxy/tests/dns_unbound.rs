//! End to end: a member's real resolver (unbound) conditionally forwards the
//! federation's zones to its edge, with the configuration `fedctl
//! dns-forwarders --format unbound` prints; a client resolves the remote
//! service through unbound, then opens it through the edge with curl.
//!
//! ```text
//!   dig/curl --> unbound 127.A.B.54:5301 --forward-zone home.example--> away/edge DNS 127.A.B.1:5300
//!   curl https://web.home.example:8443 --> (answer: 127.A.B.1) away/edge SNI ==overlay==> home/edge --> web
//! ```

mod common;

use common::*;
use tests::{Format, World, dig, dig_addresses, ip};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resolves_through_unbound_and_reaches_the_service() {
    if !tests::require_tool("dig") || !tests::require_tool("unbound") {
        return;
    }
    let w = World::new();
    let origin_cert = w.path("origin.pem");
    tests::https_origin(
        addr(&w, 10, 8443),
        "web.home.example",
        &origin_cert,
        "hello from home/web\n",
    )
    .await;
    let dns = dns_addr(&w);
    let doc = document(
        &w,
        &Options {
            away_edge: format!(", dns: \"{dns}\""),
            ..Options::default()
        },
    );
    // The edge's DNS listener comes from the snapshot (`edges[].dns`).
    let pair = start_pair_with(&w, &doc, &doc, &[], &[]);

    let forwarders = w.dns_forwarders(&doc, "away", Format::Unbound);
    assert!(
        forwarders.contains("forward-zone:\n    name: \"home.example.\"\n")
            && forwarders.contains(&format!("    forward-addr: {}@{}\n", dns.ip(), dns.port())),
        "{forwarders}"
    );
    assert!(!forwarders.contains("away.example"), "{forwarders}");
    // Anything else goes nowhere (a closed loopback port): the test never
    // leaves the machine.
    let conf =
        format!("{forwarders}forward-zone:\n    name: \".\"\n    forward-addr: 127.0.0.1@9\n");
    let resolver = addr(&w, 54, 5301);
    let _unbound = tests::start_unbound(w.dir.path(), "resolver", resolver, &conf);

    let (_, out) = dig(resolver, &["web.home.example", "A"]);
    let answer = dig_addresses(&out);
    assert_eq!(
        answer,
        vec![ip(w.net, 1).to_string()],
        "{out}\n{}",
        pair.away.log_text()
    );

    let (ok, body, err) = curl(vec![
        "--resolve".into(),
        format!("web.home.example:8443:{}", answer[0]),
        "--cacert".into(),
        origin_cert.display().to_string(),
        "https://web.home.example:8443/".into(),
    ])
    .await;
    assert!(
        ok && body == "hello from home/web\n",
        "{body} {err}\n{}",
        pair.away.log_text()
    );
    let visited = audit_record(&w, "away", |r| {
        r["ingress"] == "sni" && r["result"] == "allowed"
    })
    .await;
    assert_eq!(visited["service"], "home/web");
}
