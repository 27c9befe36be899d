//! DNS over UDP: one socket, read by a thread per core, each taking queries
//! in batches and sending the fast path's answers in batches.
//!
//! A thread blocks in `recvmmsg` until a query arrives, taking with it every
//! query already queued (up to [`BATCH`]; nix), and sends the answers it made
//! itself with one `sendmmsg` (rustix). Under load that is two system calls
//! for a whole batch instead of two per query; with one query waiting, it is
//! the same two calls, and the kernel wakes a thread waiting on the socket
//! directly, with no event loop between.
//! The queries of a batch that the fast path does not answer go to
//! hickory's request handling on the runtime, in one task, which sends
//! their answers.
//!
//! The threads stop within [`POLL`] of the [`Stop`] guard being dropped (the
//! DNS tasks are aborted), and their sockets close with them.

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use hickory_net::NetError;
use hickory_net::runtime::TokioTime;
use hickory_net::xfer::Protocol;
use hickory_proto::op::{Edns, MessageType, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};
use tokio::runtime::Handle;

use super::{Handler, fast};

/// Queries taken with one receive, and most answers sent with one send.
const BATCH: usize = 32;
/// Room for one datagram; a longer query is cut short and dropped.
const DATAGRAM: usize = 4096;
/// How often a waiting thread looks whether it is to stop.
const POLL: Duration = Duration::from_millis(200);

/// One UDP socket on `listen`, as `count` handles (one per serving
/// thread), blocking with a receive timeout of [`POLL`].
///
/// Every thread reads the one socket, so whichever thread is free takes the
/// next queries (the kernel wakes one waiter per datagram). Sockets of their
/// own sharing the port (`SO_REUSEPORT`) would instead tie each client
/// address to one thread by hash: a few busy clients (a member's resolvers,
/// a load generator) can then land on one thread and queue there while the
/// other idles.
pub(super) fn bind(listen: SocketAddr, count: usize) -> std::io::Result<Vec<UdpSocket>> {
    let socket = UdpSocket::bind(listen)?;
    socket.set_read_timeout(Some(POLL))?;
    let mut handles = (1..count.max(1))
        .map(|_| socket.try_clone())
        .collect::<std::io::Result<Vec<_>>>()?;
    handles.push(socket);
    Ok(handles)
}

/// Stops the serving threads when dropped.
pub(super) struct Stop(Arc<AtomicBool>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Serve each socket handle on a thread of its own; the threads run until
/// the returned guard is dropped.
pub(super) fn spawn(
    sockets: Vec<UdpSocket>,
    handler: &Arc<Handler>,
    runtime: &Handle,
) -> std::io::Result<Stop> {
    let stop = Arc::new(AtomicBool::new(false));
    let guard = Stop(stop.clone());
    for (i, socket) in sockets.into_iter().enumerate() {
        let (handler, runtime, stop) = (handler.clone(), runtime.clone(), stop.clone());
        std::thread::Builder::new()
            .name(format!("dns-udp-{i}"))
            .spawn(move || serve(&Arc::new(socket), &handler, &runtime, &stop))?;
    }
    Ok(guard)
}

/// Receive queries on `socket` and answer them, until `stop`.
fn serve(socket: &Arc<UdpSocket>, handler: &Arc<Handler>, runtime: &Handle, stop: &AtomicBool) {
    let shared = &handler.shared;
    let mut bufs = vec![[0u8; DATAGRAM]; BATCH];
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut received = Vec::with_capacity(BATCH);
    let mut replies = Replies::default();
    let mut queries = Slow::new();
    let mut generation = shared.generation.load(Ordering::Acquire);
    let mut view = shared.view();
    while !stop.load(Ordering::Acquire) {
        if let Err(e) = receive(socket, &mut headers, &mut bufs, &mut received) {
            if !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::Interrupted
            ) {
                tracing::debug!(cause = %e, "dns receive failed");
            }
            continue;
        }
        let now = shared.generation.load(Ordering::Acquire);
        if now != generation {
            generation = now;
            view = shared.view();
        }
        for (buf, got) in bufs.iter().zip(&received) {
            let Some((len, src)) = *got else { continue };
            let packet = &buf[..len];
            // A/AAAA of an indexed name: answered from the snapshot's bytes.
            let out = replies.next_buffer();
            if let Some(answered) =
                fast::answer(&view.fast, packet, || view.is_local_client(src.ip()), out)
            {
                if !shared.limiter.allow(src.ip()) {
                    shared.stats.limited.inc();
                    tracing::debug!(client = %src, "dns rate limit exceeded; dropped");
                    continue;
                }
                shared.stats.count(answered.kind, ResponseCode::NoError);
                replies.push(src);
            } else {
                slow(socket, packet, src, &mut queries);
            }
        }
        replies.send(socket);
        hand_over(&mut queries, handler, runtime);
    }
}

/// One `recvmmsg`: waits for the first query (at most [`POLL`]), then takes
/// every one already queued, up to [`BATCH`]. Fills `received` with each
/// query's length and sender, in the order of `bufs`: `None` for a query
/// that cannot be answered (cut short, longer than [`DATAGRAM`]; from port
/// 0 or no address).
fn receive(
    socket: &UdpSocket,
    headers: &mut MultiHeaders<SockaddrStorage>,
    bufs: &mut [[u8; DATAGRAM]],
    received: &mut Vec<Option<(usize, SocketAddr)>>,
) -> std::io::Result<()> {
    received.clear();
    let mut slices: Vec<[IoSliceMut<'_>; 1]> =
        bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
    let results = recvmmsg(
        socket.as_raw_fd(),
        headers,
        slices.iter_mut(),
        MsgFlags::MSG_WAITFORONE,
        None,
    )?;
    for msg in results {
        let src = msg.address.as_ref().and_then(socket_addr);
        let whole = !msg.flags.contains(MsgFlags::MSG_TRUNC);
        received.push(
            src.filter(|a| a.port() != 0 && whole)
                .map(|src| (msg.bytes, src)),
        );
    }
    Ok(())
}

fn socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

/// A query for hickory's request handling, kept for [`hand_over`].
fn slow(socket: &Arc<UdpSocket>, packet: &[u8], src: SocketAddr, slow: &mut Slow) {
    let Ok(request) = Request::from_bytes(packet.to_vec(), src, Protocol::Udp) else {
        tracing::debug!(client = %src, "malformed dns query dropped");
        return;
    };
    if request.metadata.message_type != MessageType::Query {
        return;
    }
    let responder = UdpResponder {
        socket: socket.clone(),
        dst: src,
    };
    slow.push((request, responder));
}

/// A batch's queries for hickory's request handling.
type Slow = Vec<(Request, UdpResponder)>;

/// Hand a batch's slow queries to the runtime in one task (one wake of the
/// runtime per batch, not per query), which answers each: at once when
/// authoritative, in a task of its own when forwarded upstream.
fn hand_over(queries: &mut Slow, handler: &Arc<Handler>, runtime: &Handle) {
    if queries.is_empty() {
        return;
    }
    let queries = std::mem::take(queries);
    let handler = handler.clone();
    runtime.spawn(async move {
        for (request, responder) in queries {
            let h = handler.clone();
            let mut answer = Box::pin(async move {
                h.handle_request::<_, TokioTime>(&request, responder).await;
            });
            let done =
                std::future::poll_fn(|cx| Poll::Ready(answer.as_mut().poll(cx).is_ready())).await;
            if !done {
                tokio::spawn(answer);
            }
        }
    });
}

/// Fast-path answers waiting to be sent, in buffers kept from batch to
/// batch.
#[derive(Default)]
struct Replies {
    answers: Vec<Vec<u8>>,
    to: Vec<SocketAddrAny>,
}

impl Replies {
    /// The buffer for the next answer (cleared by the fast path).
    fn next_buffer(&mut self) -> &mut Vec<u8> {
        let i = self.to.len();
        if self.answers.len() == i {
            self.answers.push(Vec::with_capacity(fast::MAX_ANSWER));
        }
        &mut self.answers[i]
    }

    /// Keep the answer just written to [`Self::next_buffer`], for `dst`.
    fn push(&mut self, dst: SocketAddr) {
        self.to.push(dst.into());
    }

    /// Send every kept answer: one `sendmmsg` when the socket takes them
    /// all, as it does unless its send buffer is full. An answer that
    /// cannot be sent is logged and dropped (the client asks again), so
    /// each round makes progress and the loop ends.
    fn send(&mut self, socket: &UdpSocket) {
        let total = self.to.len();
        let mut sent = 0;
        while sent < total {
            match send_batch(socket, &self.answers[sent..total], &self.to[sent..total]) {
                Ok(n) => sent += n.max(1),
                Err(e) => {
                    tracing::debug!(cause = %e, client = ?self.to[sent], "cannot send dns answer");
                    sent += 1;
                }
            }
        }
        self.to.clear();
    }
}

/// One `sendmmsg` of `answers[i]` to `to[i]`: how many the kernel took.
fn send_batch(
    socket: &UdpSocket,
    answers: &[Vec<u8>],
    to: &[SocketAddrAny],
) -> std::io::Result<usize> {
    let iovs: Vec<[IoSlice<'_>; 1]> = answers.iter().map(|a| [IoSlice::new(a)]).collect();
    let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> =
        to.iter().map(|_| SendAncillaryBuffer::default()).collect();
    let mut msgs: Vec<MMsgHdr<'_>> = to
        .iter()
        .zip(&iovs)
        .zip(&mut controls)
        .map(|((addr, iov), control)| MMsgHdr::new_with_addr(addr, iov, control))
        .collect();
    Ok(rustix::net::sendmmsg(
        socket,
        &mut msgs,
        SendFlags::empty(),
    )?)
}

/// Sends one answer of the hickory path, truncated to the client's buffer.
#[derive(Clone)]
struct UdpResponder {
    /// The serving thread's socket: blocking, so sent to without waiting
    /// (an answer the send buffer has no room for is dropped, as the
    /// network may drop it; the client asks again).
    socket: Arc<UdpSocket>,
    dst: SocketAddr,
}

#[async_trait::async_trait]
impl ResponseHandler for UdpResponder {
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
        let (bytes, info) = encode(response)?;
        rustix::net::sendto(&*self.socket, &bytes, SendFlags::DONTWAIT, &self.dst)
            .map_err(std::io::Error::from)?;
        Ok(info)
    }
}

/// A UDP answer's bytes, truncated to the client's buffer.
pub(super) fn encode<'a>(
    response: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> Result<(Vec<u8>, ResponseInfo), NetError> {
    let max = response.edns().map_or(512, Edns::max_payload);
    let mut bytes = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(max);
    let info = response.destructive_emit(&mut encoder)?;
    Ok((bytes, info))
}
