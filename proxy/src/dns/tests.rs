//! The UDP fast path against the hickory path: for every kind of query, the
//! fast path either leaves it alone or sends the very bytes hickory sends.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

use federation::{EdgeSnapshot, Sources};
use hickory_net::NetError;
use hickory_net::runtime::TokioTime;
use hickory_net::xfer::Protocol;
use hickory_proto::op::MessageType;
use hickory_proto::rr::Record;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use tokio::sync::{Semaphore, watch};

use super::{DnsConfig, DnsView, Handler, Kind, RateLimiter, Shared, Stats, fast, udp};
use crate::audit::AuditLog;
use crate::metrics::Metrics;
use crate::node::Node;
use crate::{Ctx, Limits};

/// `here/edge` answers for `there`'s services: s0 (TCP: its VIP), s1 (TLS:
/// the ingress addresses, IPv4 and IPv6), deep/x (TLS, below an empty
/// non-terminal); and its own `wiki` (internal, own networks only).
const DOC: &str = r#"federation: {name: t, trust_domain: t.fedgate.example}
organisations:
  - {id: here, name: Here Council, kind: local-authority, membership: {agreement: FCA-A, expires: 2035-01-01}, dns: {zones: [here.example], upstreams: ["127.0.0.1:9"]}}
  - {id: there, name: There Trust, kind: nhs-trust, membership: {agreement: FCA-H, expires: 2035-01-01}, dns: {zones: [there.example]}}
networks:
  - {org: here, label: staff, purpose: roaming-staff, cidrs: [127.0.0.0/8]}
  - {org: there, label: corporate, purpose: corporate, cidrs: [10.99.0.0/16]}
edges:
  - {org: here, name: edge, overlay: {quic: "127.56.0.1:4433", tcp: "127.56.0.1:4443"}, ingress: {addresses: ["127.56.0.1", "fd00::1"], vip_prefix: 127.57.0.0/20}}
  - {org: there, name: edge, overlay: {quic: "127.56.0.2:4433", tcp: "127.56.0.2:4443"}}
agreements:
  - {id: ISA-B, title: Sharing, parties: [here, there], purpose: tests, legal_basis: test, owner: {name: B, role: Caldicott Guardian, org: there}, start: 2025-01-01, expires: 2035-01-01}
policies:
  - {id: here-to-there, description: Here staff reach there, from: {networks: [here/staff]}, to: {tags: [there/t]}, action: allow, agreement: ISA-B}
services:
  - {org: there, name: s0, dns: [s0.there.example], address: 10.99.0.1, ports: [2575], protocol: tcp, tags: [t]}
  - {org: there, name: s1, dns: [s1.there.example], address: 10.99.0.2, ports: [443], protocol: tls, tags: [t]}
  - {org: there, name: x, dns: [x.deep.there.example], address: 10.99.0.3, ports: [443], protocol: tls, tags: [t]}
  - {org: here, name: wiki, dns: [wiki.here.example], address: 127.60.0.20, ports: [443], protocol: tls, dns_internal: true}
"#;

/// Any edge's credentials: the DNS answers do not use them.
fn credentials() -> Arc<crate::tls::Credentials> {
    let w = tests::World::new();
    let (cert, key, _) = w.edge_cert("here", "edge", "here-edge", None, None);
    let m = crate::tls::load_material(&cert, &key, &w.ca_pem()).expect("material");
    crate::tls::Credentials::new(&m).expect("credentials")
}

fn handler() -> Handler {
    let mut sources = Sources::new();
    sources.add("test.yaml", DOC);
    let now: jiff::Timestamp = "2026-06-01T00:00:00Z".parse().expect("time");
    let loaded = federation::load(&sources, now);
    let fed = loaded
        .federation
        .clone()
        .unwrap_or_else(|| panic!("{:#?}", loaded.diagnostics));
    let snap = EdgeSnapshot::build(&loaded.spec, &fed, "here/edge", 7).expect("snapshot");
    let node = Arc::new(Node::from_snapshot(&snap, "here/edge", now).expect("node"));
    let ctx = Arc::new(Ctx {
        node: watch::channel(node.clone()).0,
        audit: AuditLog::open(None).expect("audit"),
        metrics: Metrics::default(),
        limits: Limits::default(),
        flows: Arc::new(Semaphore::new(1)),
        per_peer: Mutex::new(HashMap::new()),
        rates: Mutex::new(HashMap::new()),
        shutdown: watch::channel(false).1,
        vip_state: None,
        credentials: credentials(),
        trust: watch::channel(0).0,
    });
    let config = DnsConfig::default();
    let view = DnsView::build(&node, &config, None, &ctx.metrics);
    Handler {
        shared: Arc::new(Shared {
            view: RwLock::new(Arc::new(view)),
            generation: AtomicU64::new(0),
            limiter: RateLimiter::new(0),
            stats: Stats::new(ctx),
            config,
        }),
    }
}

/// Keeps the bytes the hickory path would send over UDP.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Option<Vec<u8>>>>);

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let (bytes, info) = udp::encode(response)?;
        *self.0.lock().expect("capture") = Some(bytes);
        Ok(info)
    }
}

/// What the UDP loop's hickory path sends for `packet` from `src`.
async fn slow(h: &Handler, packet: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
    let request = Request::from_bytes(packet.to_vec(), src, Protocol::Udp).ok()?;
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let capture = Capture::default();
    h.handle_request::<_, TokioTime>(&request, capture.clone())
        .await;
    capture.0.lock().expect("capture").take()
}

fn fast(h: &Handler, packet: &[u8], src: SocketAddr) -> Option<(Vec<u8>, Kind)> {
    let view = h.shared.view();
    let mut out = Vec::new();
    let answered = fast::answer(
        &view.fast,
        packet,
        || view.is_local_client(src.ip()),
        &mut out,
    )?;
    Some((out, answered.kind))
}

fn wire(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// A query: `flags` are header bytes 2 and 3; `opt` the OPT record, if any.
fn query(id: u16, flags: [u8; 2], name: &str, qtype: u16, opt: Option<&[u8]>) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&flags);
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(opt.is_some())]);
    q.extend_from_slice(&wire(name));
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    if let Some(opt) = opt {
        q.extend_from_slice(opt);
    }
    q
}

/// An OPT record: payload size, DO bit, options (code, data).
fn opt(payload: u16, dnssec_ok: bool, options: &[(u16, &[u8])]) -> Vec<u8> {
    let mut rdata = Vec::new();
    for (code, data) in options {
        rdata.extend_from_slice(&code.to_be_bytes());
        rdata.extend_from_slice(&(data.len() as u16).to_be_bytes());
        rdata.extend_from_slice(data);
    }
    let mut o = vec![0, 0, 41];
    o.extend_from_slice(&payload.to_be_bytes());
    o.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0]);
    o.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    o.extend_from_slice(&rdata);
    o
}

const A: u16 = 1;
const AAAA: u16 = 28;

#[tokio::test]
async fn fast_answers_are_the_hickory_answers() {
    let h = handler();
    let local = SocketAddr::from(([127, 0, 0, 5], 40000));
    let outside = SocketAddr::from(([192, 0, 2, 7], 40000));
    let cookie: &[u8] = &[1, 2, 3, 4, 5, 6, 7, 8];
    let opts: Vec<Option<Vec<u8>>> = vec![
        None,
        Some(opt(1232, false, &[])),
        Some(opt(512, false, &[])),
        Some(opt(100, false, &[])),
        Some(opt(4096, true, &[])),
        Some(opt(1400, false, &[(10, cookie)])),
        Some(opt(1232, false, &[(12, &[0, 0, 0]), (10, cookie)])),
    ];
    // RD and CD are copied; AA, TC, AD and Z in a query are not.
    let flags = [
        [0x00, 0x00],
        [0x01, 0x00],
        [0x01, 0x20],
        [0x00, 0x10],
        [0x07, 0x70],
    ];
    // (name, type, client, the fast path's kind: None where it leaves the
    // query to hickory)
    let cases: &[(&str, u16, SocketAddr, Option<Kind>)] = &[
        ("s1.there.example", A, local, Some(Kind::Federation)),
        ("s1.there.example", AAAA, local, Some(Kind::Federation)),
        ("s1.there.example", A, outside, Some(Kind::Federation)),
        ("s0.there.example", A, local, Some(Kind::Federation)),
        ("s0.there.example", AAAA, local, Some(Kind::Federation)), // NODATA
        ("x.deep.there.example", AAAA, local, Some(Kind::Federation)),
        ("deep.there.example", A, local, Some(Kind::Federation)), // empty non-terminal
        ("wiki.here.example", A, local, Some(Kind::Internal)),
        ("wiki.here.example", AAAA, local, Some(Kind::Internal)), // NODATA
        ("wiki.here.example", A, outside, None),                  // REFUSED
        ("S1.there.example", A, local, None),                     // not lower case
        ("nope.there.example", A, local, None),                   // NXDOMAIN
        ("there.example", A, local, None),                        // the apex
        ("s1.there.example", 15, local, None),                    // MX
        ("s1.there.example", 255, local, None),                   // ANY
        ("web.here.example", A, local, None),                     // forwarded
    ];
    let mut id = 1u16;
    for (name, qtype, src, kind) in cases {
        for flags in flags {
            for o in &opts {
                id = id.wrapping_mul(31).wrapping_add(7);
                let q = query(id, flags, name, *qtype, o.as_deref());
                let what = format!("{name} {qtype} from {src}, flags {flags:02x?}, opt {o:?}");
                let fast = fast(&h, &q, *src);
                assert_eq!(fast.as_ref().map(|f| f.1), *kind, "{what}");
                let Some((fast, _)) = fast else { continue };
                let slow = slow(&h, &q, *src).await;
                assert_eq!(Some(fast), slow, "{what}");
            }
        }
    }
}

#[tokio::test]
async fn fast_path_leaves_odd_queries_to_hickory() {
    let h = handler();
    let src = SocketAddr::from(([127, 0, 0, 5], 40000));
    let name = "s1.there.example";
    let odd: Vec<(&str, Vec<u8>)> = vec![
        ("EDNS version 1", {
            let mut o = opt(1232, false, &[]);
            o[6] = 1;
            query(1, [1, 0], name, A, Some(&o))
        }),
        (
            "client subnet",
            query(
                1,
                [1, 0],
                name,
                A,
                Some(&opt(1232, false, &[(8, &[0, 1, 0, 0])])),
            ),
        ),
        ("NOTIFY", query(1, [0x20, 0], name, A, None)),
        ("a response", query(1, [0x80, 0], name, A, None)),
        ("truncated", query(1, [1, 0], name, A, None)[..20].to_vec()),
    ];
    for (what, q) in odd {
        assert!(fast(&h, &q, src).is_none(), "{what}");
    }
}

#[tokio::test]
async fn templates_are_indexed_for_every_name() {
    let h = handler();
    let view = h.shared.view();
    // s0, s1, x.deep, deep (empty non-terminal), wiki.
    assert_eq!(view.fast.len(), view.names.len());
    assert_eq!(view.fast.len(), 5);
}

#[tokio::test]
async fn clients_count_as_local_by_their_network() {
    let h = handler();
    let view = h.shared.view();
    assert!(view.is_local_client(IpAddr::from([127, 9, 9, 9])));
    assert!(!view.is_local_client(IpAddr::from([10, 99, 0, 1])));
}
