//! A burst of queries, as a busy resolver or many staff devices send them:
//! the edge takes queued queries in batches and sends batched answers, and
//! every answer must still reach the client that asked, carry that query's
//! ID and hold that name's answer.
//!
//! dig asks one query at a time, so it gives the expected answers; the burst
//! itself is four client sockets on four addresses, each sending 64 queries
//! without waiting (three names answered from the snapshot's bytes, one
//! name that does not exist, answered by the hickory path), then reading
//! every answer.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::*;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tests::{World, dig, dig_addresses, ip};
use tokio::time::Instant;

const CLIENTS: u8 = 4;
const PER_CLIENT: u16 = 64;

#[test]
fn every_answer_in_a_burst_reaches_its_client_with_its_own_id() {
    if !tests::require_tool("dig") {
        return;
    }
    let w = World::new();
    let doc = document(&w, &Options::default());
    let dns = dns_addr(&w);
    let extra = vec![
        "--dns".to_string(),
        dns.to_string(),
        "--dns-rate".into(),
        "0".into(),
    ];
    let pair = start_pair_with(&w, &doc, &doc, &[], &extra);

    // What dig is told, one query at a time.
    let names = ["web.home.example", "echo.home.example", "blob.home.example"];
    let expected: HashMap<&str, Vec<IpAddr>> = names
        .iter()
        .map(|name| {
            let (ok, out) = dig(dns, &[name, "A"]);
            assert!(ok, "{out}\n{}", pair.away.log_text());
            let addrs: Vec<IpAddr> = dig_addresses(&out)
                .iter()
                .map(|a| a.parse().expect("an address"))
                .collect();
            assert_eq!(addrs.len(), 1, "{name}: {out}");
            (*name, addrs)
        })
        .collect();
    let missing = "nope.home.example";

    // The burst: every query sent before any answer is read.
    let sockets: Vec<UdpSocket> = (0..CLIENTS)
        .map(|i| {
            let s = UdpSocket::bind(SocketAddr::new(ip(w.net, 70 + i), 0)).expect("client socket");
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .expect("timeout");
            s
        })
        .collect();
    let mut asked: HashMap<(usize, u16), &str> = HashMap::new();
    for id in 0..PER_CLIENT {
        for (c, socket) in sockets.iter().enumerate() {
            // Distinct IDs per client, so a misdelivered answer shows.
            let id = id + 1000 * c as u16;
            let name = if id % 8 == 7 {
                missing
            } else {
                names[usize::from(id) % names.len()]
            };
            socket.send_to(&query(id, name), dns).expect("send a query");
            asked.insert((c, id), name);
        }
    }

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 1500];
    for (c, socket) in sockets.iter().enumerate() {
        let mut answered = 0;
        while answered < PER_CLIENT && Instant::now() < deadline {
            let Ok(n) = socket.recv(&mut buf) else {
                continue;
            };
            let msg = Message::from_vec(&buf[..n]).expect("a DNS message");
            let id = msg.metadata.id;
            let name = asked
                .remove(&(c, id))
                .unwrap_or_else(|| panic!("client {c} got an answer to id {id} it did not ask"));
            let question = msg.queries.first().expect("the question").name().to_ascii();
            assert_eq!(question, format!("{name}."), "id {id}");
            if name == missing {
                assert_eq!(
                    msg.metadata.response_code,
                    ResponseCode::NXDomain,
                    "{msg:?}"
                );
            } else {
                assert_eq!(msg.metadata.response_code, ResponseCode::NoError, "{msg:?}");
                let got: Vec<IpAddr> = msg
                    .answers
                    .iter()
                    .filter_map(|r| match r.data {
                        RData::A(a) => Some(IpAddr::V4(a.0)),
                        _ => None,
                    })
                    .collect();
                assert_eq!(got, expected[name], "{name}, id {id}");
            }
            answered += 1;
        }
    }
    assert!(
        asked.is_empty(),
        "{} of {} queries unanswered: {:?}\n{}",
        asked.len(),
        u16::from(CLIENTS) * PER_CLIENT,
        asked.keys().take(10).collect::<Vec<_>>(),
        pair.away.log_text()
    );
    drop(pair);
}

/// An A query for `name` with `id`, EDNS like dig's.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut msg = Message::query();
    msg.metadata.id = id;
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(
        Name::from_ascii(name).expect("a name"),
        RecordType::A,
    ));
    msg.to_vec().expect("encode a query")
}
