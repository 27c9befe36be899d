//! Visiting staff reach a home service through each ingress: HTTP CONNECT,
//! TLS SNI (also with the ClientHello in pieces, from Python's OpenSSL), a
//! service VIP and SOCKS5, with real curl; the PAC file; metrics;
//! audit records at both edges whose hash chains verify.

mod common;

use std::time::Duration;

use common::*;
use tests::World;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ingress_reaches_the_home_service() {
    let w = World::new();
    let origin_cert = w.path("origin.pem");
    tests::https_origin(
        addr(&w, 10, 8443),
        "web.home.example",
        &origin_cert,
        "hello from home/web\n",
    )
    .await;
    tests::echo_origin(addr(&w, 11, 7007)).await;
    let doc = document(&w, &Options::default());
    let pair = start_pair(&w, &doc, &doc, &[]);
    let cacert = origin_cert.display().to_string();

    // HTTP CONNECT, as a browser with the PAC file would.
    let (ok, body, err) = curl(vec![
        "--proxy".into(),
        format!("http://{}", addr(&w, 1, 3128)),
        "--cacert".into(),
        cacert.clone(),
        "https://web.home.example:8443/".into(),
    ])
    .await;
    assert!(
        ok && body == "hello from home/web\n",
        "CONNECT: {body} {err}\naway:\n{}\nhome:\n{}",
        pair.away.log_text(),
        pair.home.log_text()
    );

    // TLS SNI: the name resolves to the edge (as split-horizon DNS will answer).
    let (ok, body, err) = curl(vec![
        "--resolve".into(),
        format!("web.home.example:8443:{}", tests::ip(w.net, 1)),
        "--cacert".into(),
        cacert.clone(),
        "https://web.home.example:8443/".into(),
    ])
    .await;
    assert!(
        ok && body == "hello from home/web\n",
        "SNI: {body} {err}\n{}",
        pair.away.log_text()
    );

    // TLS SNI with the ClientHello in pieces of 100 bytes, 10 ms apart, as
    // a large one (post-quantum key shares) arrives in several segments:
    // the edge reads on until it holds the whole, then routes it.
    let script = r#"
import socket, ssl, sys, time
host, port, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=cafile)
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(inc, out, server_hostname="web.home.example")
s = socket.create_connection((host, port), timeout=10)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
try:
    tls.do_handshake()
except ssl.SSLWantReadError:
    pass
hello = out.read()
for i in range(0, len(hello), 100):
    s.sendall(hello[i:i + 100])
    time.sleep(0.01)
def pump():
    data = s.recv(65536)
    if not data:
        raise EOFError
    inc.write(data)
for _ in range(100):
    try:
        tls.do_handshake()
        break
    except ssl.SSLWantReadError:
        s.sendall(out.read())
        pump()
tls.write(b"GET / HTTP/1.1\r\nHost: web.home.example\r\nConnection: close\r\n\r\n")
s.sendall(out.read())
body = b""
for _ in range(1000):
    try:
        body += tls.read(65536)
    except ssl.SSLWantReadError:
        try:
            pump()
        except EOFError:
            break
    except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
        break
print(len(hello))
sys.stdout.write(body.decode())
"#;
    let (host, port) = (tests::ip(w.net, 1).to_string(), "8443".to_owned());
    let ca = cacert.clone();
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        tests::run("python3", &["-c", script, &host, &port, &ca])
    })
    .await
    .expect("python3");
    let pieces = out
        .lines()
        .next()
        .and_then(|l| l.parse::<usize>().ok())
        .map_or(0, |n| n.div_ceil(100));
    assert!(
        ok && pieces >= 3 && out.ends_with("hello from home/web\n"),
        "SNI, ClientHello in {pieces} pieces: {out} {err}\n{}",
        pair.away.log_text()
    );

    // SOCKS5 with the name resolved by the proxy.
    let (ok, body, err) = curl(vec![
        "--socks5-hostname".into(),
        addr(&w, 1, 1080).to_string(),
        "--cacert".into(),
        cacert.clone(),
        "https://web.home.example:8443/".into(),
    ])
    .await;
    assert!(
        ok && body == "hello from home/web\n",
        "SOCKS5: {body} {err}"
    );

    // A service VIP: home/echo is the second remote TCP service by id
    // (blob, echo, secret), so it has the prefix's second address.
    let vip = addr(&w, 130, 7007);
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(vip))
        .await
        .expect("connect in time")
        .expect("connect to VIP");
    s.write_all(b"ping through the overlay").await.unwrap();
    s.shutdown().await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut back))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(
        back, b"ping through the overlay",
        "VIP echo (half-close carried through)"
    );

    // The PAC file sends the federation's other zones through this edge.
    let (ok, pac, _) = curl(vec![format!("http://{}/proxy.pac", addr(&w, 1, 3128))]).await;
    assert!(ok, "PAC not served");
    assert!(
        pac.contains("FindProxyForURL") && pac.contains("dnsDomainIs(host, \".home.example\")"),
        "{pac}"
    );
    assert!(
        pac.contains(&format!("PROXY {}", addr(&w, 1, 3128))) && !pac.contains("away.example"),
        "{pac}"
    );

    // Audit at both ends, over QUIC, with matching flow ids and bytes.
    let visited = audit_record(&w, "away", |r| {
        r["ingress"] == "connect" && r["result"] == "allowed"
    })
    .await;
    let home = audit_record(&w, "home", |r| r["flow_id"] == visited["flow_id"]).await;
    assert_eq!(visited["transport"], "quic");
    assert_eq!(home["src_org"], "away");
    assert_eq!(home["src_network"], "roaming-staff");
    assert_eq!(home["rules"][0], "roaming-to-home");
    assert_eq!(home["agreement"], "ISA-T");
    assert_eq!(home["bytes_down"], visited["bytes_down"]);
    for ingress in ["connect", "sni", "socks", "vip"] {
        audit_record(&w, "away", |r| {
            r["ingress"] == ingress && r["result"] == "allowed"
        })
        .await;
    }
    let (ok, metrics, _) = curl(vec![format!("http://{}/metrics", addr(&w, 1, 9100))]).await;
    assert!(
        ok && metrics.contains("fedgate_flows_total{role=\"visited\",result=\"allowed\"} 5\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fedgate_peer_link{peer=\"home/edge\",transport=\"quic\"} 1"),
        "{metrics}"
    );
    // How long each of the five flows waited for the home edge's answer.
    for line in [
        "fedgate_flow_setup_seconds_bucket{peer=\"home/edge\",transport=\"quic\",le=\"+Inf\"} 5\n",
        "fedgate_flow_setup_seconds_count{peer=\"home/edge\",transport=\"quic\"} 5\n",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    let setup_sum: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("fedgate_flow_setup_seconds_sum{peer=\"home/edge\",transport=\"quic\"} ")
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no setup sum:\n{metrics}"));
    assert!(setup_sum > 0.0 && setup_sum < 20.0, "{setup_sum}");
    let (ok, _, _) = curl(vec![format!("http://{}/readyz", addr(&w, 2, 9100))]).await;
    assert!(ok, "home not ready");
    // The home edge's connects to its services: web four times (CONNECT,
    // SNI twice, SOCKS5), echo once (the VIP).
    let (ok, home_metrics, _) = curl(vec![format!("http://{}/metrics", addr(&w, 2, 9100))]).await;
    assert!(ok, "home metrics");
    for line in [
        "fedgate_service_connect_seconds_count{service=\"home/web\"} 4\n",
        "fedgate_service_connect_seconds_count{service=\"home/echo\"} 1\n",
        "fedgate_service_connect_seconds_bucket{service=\"home/echo\",le=\"+Inf\"} 1\n",
    ] {
        assert!(
            home_metrics.contains(line),
            "{line} missing:\n{home_metrics}"
        );
    }

    // Plain HTTP to the SNI listener: closed, and the reason logged (one
    // line per connection) for the ICT team.
    let (ok, _, err) = curl(vec![
        "--resolve".into(),
        format!("web.home.example:8443:{}", tests::ip(w.net, 1)),
        "http://web.home.example:8443/".into(),
    ])
    .await;
    assert!(!ok, "plain HTTP through the SNI listener: {err}");
    let away = &pair.away;
    let logged = eventually(200, Duration::from_millis(25), || {
        let logged = away.log_text().lines().any(|l| {
            l.contains("client connection closed on an error")
                && l.contains("not a TLS ClientHello")
                && l.contains("kind=\"sni\"")
        });
        async move { logged }
    })
    .await;
    assert!(
        logged,
        "no line for the plain HTTP client:\n{}",
        away.log_text()
    );

    drop(pair);
    for name in ["away", "home"] {
        let log = w.path(&format!("{name}.audit.jsonl")).display().to_string();
        let (ok, out, err) = tests::run(EDGE, &["audit", "verify", &log]);
        assert!(ok && out.starts_with("ok: "), "{name}: {out} {err}");
    }
}
