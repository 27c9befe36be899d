//! The SOCKS5 listener as RFC 1928 says, against a real edge pair: a client
//! that sends its greeting, its request and its first bytes in one write
//! (optimistic data) loses none of them, by name and by VIP address; a
//! client offering only authentication, another address type, another
//! command, a service a rule denies it, or a name that is no service each
//! gets the reply RFC 1928 gives for it, and nothing is relayed.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tests::World;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Write `bytes` to the SOCKS listener in one write, half-close, and read
/// everything the edge sends back until it closes.
async fn exchange(socks: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(socks))
        .await
        .expect("connect in time")
        .expect("connect to the SOCKS listener");
    s.write_all(bytes).await.expect("write");
    s.shutdown().await.expect("half-close");
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut back))
        .await
        .expect("the edge answers and closes in time")
        .expect("read");
    back
}

fn greeting(methods: &[u8]) -> Vec<u8> {
    let mut out = vec![5, u8::try_from(methods.len()).expect("few methods")];
    out.extend_from_slice(methods);
    out
}

fn by_name(command: u8, name: &str, port: u16) -> Vec<u8> {
    let mut out = vec![
        5,
        command,
        0,
        3,
        u8::try_from(name.len()).expect("short name"),
    ];
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&port.to_be_bytes());
    out
}

fn by_address(addr: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(v4) = addr else {
        panic!("the test VIPs are IPv4")
    };
    let mut out = vec![5, 1, 0, 1];
    out.extend_from_slice(&v4.ip().octets());
    out.extend_from_slice(&v4.port().to_be_bytes());
    out
}

/// What a client sends in one write: its greeting offering `methods`, its
/// request, and its first bytes (optimistic data; may be empty).
fn opening(methods: &[u8], request: Vec<u8>, first: &[u8]) -> Vec<u8> {
    let mut out = greeting(methods);
    out.extend(request);
    out.extend_from_slice(first);
    out
}

/// What the edge answers an `opening` with: method 0 (no authentication),
/// the reply `code` (with an empty IPv4 bound address), then what came back
/// from the service.
fn answered(code: u8, echoed: &[u8]) -> Vec<u8> {
    let mut out = vec![5, 0, 5, code, 0, 1, 0, 0, 0, 0, 0, 0];
    out.extend_from_slice(echoed);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_clients_get_rfc_1928_answers_and_lose_no_optimistic_bytes() {
    let w = World::new();
    tests::echo_origin(addr(&w, 11, 7007)).await;
    tests::echo_origin(addr(&w, 13, 7011)).await;
    let doc = document(
        &w,
        &Options {
            extra_policies: SECRET_DENIED,
            ..Options::default()
        },
    );
    let pair = start_pair(&w, &doc, &doc, &[]);
    let socks = addr(&w, 1, 1080);
    let logs = || {
        format!(
            "away:\n{}\nhome:\n{}",
            pair.away.log_text(),
            pair.home.log_text()
        )
    };

    // Greeting, request by name and first bytes in one write: the method,
    // success, and the bytes echoed by home/echo.
    let bytes = opening(
        &[2, 0],
        by_name(1, "echo.home.example", 7007),
        b"optimistic bytes",
    );
    let expected = answered(0, b"optimistic bytes");
    assert_eq!(
        exchange(socks, &bytes).await,
        expected,
        "by name\n{}",
        logs()
    );

    // The same by the VIP's address (home/echo: the second remote TCP
    // service by id, so the prefix's second address).
    let bytes = opening(&[0], by_address(addr(&w, 130, 7007)), b"by address");
    let expected = answered(0, b"by address");
    assert_eq!(
        exchange(socks, &bytes).await,
        expected,
        "by VIP address\n{}",
        logs()
    );

    // Only username/password offered: no acceptable method.
    assert_eq!(exchange(socks, &greeting(&[2])).await, vec![5, 0xff]);

    // Address type 2 does not exist: address type not supported (8).
    let bytes = opening(&[0], vec![5, 1, 0, 2, 198, 18, 0, 1, 0, 80], b"");
    assert_eq!(
        exchange(socks, &bytes).await,
        answered(8, b""),
        "address type 2"
    );

    // BIND (2): command not supported (7).
    let bytes = opening(&[0], by_name(2, "echo.home.example", 7007), b"");
    assert_eq!(exchange(socks, &bytes).await, answered(7, b""), "BIND");

    // A name that is no federation service: host unreachable (4).
    let bytes = opening(&[0], by_name(1, "nowhere.home.example", 7007), b"");
    assert_eq!(
        exchange(socks, &bytes).await,
        answered(4, b""),
        "unknown name"
    );

    // home/secret, which a deny closes to this client: not allowed by the
    // rule set (2), and its first bytes never reach it.
    let bytes = opening(
        &[0],
        by_name(1, "secret.home.example", 7011),
        b"must not arrive",
    );
    assert_eq!(
        exchange(socks, &bytes).await,
        answered(2, b""),
        "denied\n{}",
        logs()
    );

    // Not SOCKS at all: closed without an answer, the reason logged.
    assert_eq!(exchange(socks, b"GET / HTTP/1.1\r\n\r\n").await, b"");
    let logged = eventually(200, Duration::from_millis(25), || {
        let text = pair.away.log_text();
        async move { text.contains("not SOCKS5 (version 71)") }
    })
    .await;
    assert!(logged, "{}", logs());

    // Two flows allowed and audited at the visited edge, both by SOCKS;
    // the denial audited with its reason.
    let allowed = || {
        audit(&w, "away")
            .into_iter()
            .filter(|r| r["ingress"] == "socks" && r["result"] == "allowed")
            .count()
    };
    let both = eventually(200, Duration::from_millis(25), || {
        let n = allowed();
        async move { n >= 2 }
    })
    .await;
    assert!(both && allowed() == 2, "{} allowed\n{}", allowed(), logs());
    let denied = audit_record(&w, "away", |r| {
        r["ingress"] == "socks" && r["result"] == "denied" && r["service"] == "home/secret"
    })
    .await;
    assert_eq!(denied["rules"][0], "secret-deny");
}
