//! The UDP fast path against the hickory path: for every kind of query, the
//! fast path either leaves it alone or sends the very bytes hickory sends.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

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
use crate::{Ctx, Limits};

/// Any edge's credentials: the DNS answers do not use them.
fn credentials() -> Arc<crate::tls::Credentials> {
    let w = tests::World::new();
    let (cert, key, _) = w.edge_cert("here", "edge", "here-edge", None, None);
    let m = crate::tls::load_material(&cert, &key, &w.ca_pem()).expect("material");
    crate::tls::Credentials::new(&m).expect("credentials")
}

fn handler() -> Handler {
    let node = super::sample::node();
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

/// A small deterministic generator (xorshift64*), so that a failure
/// reproduces from the printed case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One to four random edits of `q`: a bit flipped, a byte set, a byte
/// inserted or removed, a 16-bit field set, the end cut off or extended.
fn mutate(rng: &mut Rng, mut q: Vec<u8>) -> Vec<u8> {
    for _ in 0..=rng.below(4) {
        let at = rng.below(q.len().max(1));
        match rng.below(7) {
            0 if !q.is_empty() => q[at] ^= 1 << rng.below(8),
            1 if !q.is_empty() => q[at] = rng.next() as u8,
            2 => q.insert(at.min(q.len()), rng.next() as u8),
            3 if !q.is_empty() => {
                q.remove(at);
            }
            4 if at + 1 < q.len() => {
                let v = [0u16, 1, 2, 8, 10, 12, 41, 255, 512, 0xffff][rng.below(10)];
                q[at..at + 2].copy_from_slice(&v.to_be_bytes());
            }
            5 => q.truncate(at),
            _ => q.extend((0..rng.below(8)).map(|_| rng.next() as u8)),
        }
    }
    q
}

/// A query of the kind the fast path answers, with every field it reads
/// drawn at random: flags, name (indexed or not, any case), type, class,
/// an OPT record with any payload, version, flags and options, the option
/// lengths right or wrong.
fn generate(rng: &mut Rng) -> Vec<u8> {
    const NAMES: [&str; 7] = [
        "s1.there.example",
        "s0.there.example",
        "deep.there.example",
        "x.deep.there.example",
        "wiki.here.example",
        "S1.there.example",
        "nope.there.example",
    ];
    let name = NAMES[rng.below(NAMES.len())];
    let qtype = [A, AAAA, A, AAAA, 15, 255, 0][rng.below(7)];
    // QR and the opcode usually 0 (a query); the other bits at random.
    let mut flags = (rng.next() as u16).to_be_bytes();
    if rng.below(8) != 0 {
        flags[0] &= 0x07;
    }
    let opt = match rng.below(3) {
        0 => None,
        _ => {
            let mut options: Vec<(u16, Vec<u8>)> = Vec::new();
            for _ in 0..rng.below(3) {
                let code = [3u16, 8, 10, 12, 15, 0xfde9][rng.below(6)];
                let len = [0usize, 2, 4, 8, 16, 40][rng.below(6)];
                options.push((code, (0..len).map(|_| rng.next() as u8).collect()));
            }
            let borrowed: Vec<(u16, &[u8])> =
                options.iter().map(|(c, d)| (*c, d.as_slice())).collect();
            let payload = [0u16, 100, 512, 1232, 1400, 4096, 0xffff][rng.below(7)];
            let mut o = opt(payload, rng.below(2) == 0, &borrowed);
            // Extended rcode and version, usually 0; the flags' low bits.
            if rng.below(4) == 0 {
                o[5] = rng.next() as u8;
            }
            if rng.below(4) == 0 {
                o[6] = rng.next() as u8;
            }
            if rng.below(4) == 0 {
                o[8] = rng.next() as u8;
            }
            Some(o)
        }
    };
    let mut q = query(rng.next() as u16, flags, name, qtype, opt.as_deref());
    if rng.below(8) == 0 {
        q[14] = q[14].to_ascii_uppercase(); // a letter of the name
    }
    if rng.below(8) == 0 {
        let class = 12 + wire(name).len() + 2;
        q[class + 1] = [1u8, 3, 4, 254, 255][rng.below(5)];
    }
    q
}

/// Whatever bytes arrive, the fast path either leaves them to hickory or
/// sends exactly what hickory sends: queries of the kind it answers with
/// their fields drawn at random, half of them then edited at random (a
/// bounded run from a fixed seed, so a failure names its round). About one
/// in twelve is one the fast path answers.
#[tokio::test]
async fn fast_answers_are_the_hickory_answers_for_random_queries() {
    let h = handler();
    let sources = [
        SocketAddr::from(([127, 0, 0, 5], 40000)),
        SocketAddr::from(([192, 0, 2, 7], 40000)),
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut answered, tried) = (0, 100_000);
    for round in 0..tried {
        let mut q = generate(&mut rng);
        if rng.below(2) == 0 {
            q = mutate(&mut rng, q);
        }
        let src = sources[rng.below(sources.len())];
        let Some((fast, _)) = fast(&h, &q, src) else {
            continue;
        };
        answered += 1;
        let slow = slow(&h, &q, src).await;
        assert_eq!(Some(fast), slow, "round {round}: query {q:02x?} from {src}");
    }
    // Enough of them answerable for the check to mean something.
    assert!(answered > tried / 20, "{answered} of {tried} answered");
}
