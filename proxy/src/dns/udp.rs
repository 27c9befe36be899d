//! DNS over UDP: one socket per core on the same port, each served by a
//! loop that takes queries in batches and sends the fast path's answers in
//! batches.
//!
//! A loop waits until its socket is readable, then takes every queued query
//! (up to [`BATCH`]) with one `recvmmsg` (quinn-udp's batched receive), and
//! sends the answers it made itself with one `sendmmsg` (rustix). Under load
//! that is two system calls for a whole batch instead of two per query;
//! with one query waiting it is the same two calls as before. A query the
//! fast path does not answer goes through hickory's request handling, which
//! sends its own answer (inline when authoritative, in a task of its own when
//! forwarded).

use std::io::{IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;

use hickory_net::NetError;
use hickory_net::runtime::TokioTime;
use hickory_net::xfer::Protocol;
use hickory_proto::op::{Edns, MessageType, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use quinn::udp::{RecvMeta, UdpSocketState};
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::{Handler, fast};

/// Queries taken with one receive, and most answers sent with one send.
const BATCH: usize = quinn::udp::BATCH_SIZE;
/// Room for one datagram; a longer query is cut short and fails to parse.
const DATAGRAM: usize = 4096;

/// `count` UDP sockets on `listen`, sharing its port (`SO_REUSEPORT`): the
/// kernel spreads clients over them by address and port. A plain bind
/// comes first, so that an address in use (by another edge, say) is still
/// an error, as it was with one socket.
pub(super) fn bind(listen: SocketAddr, count: usize) -> std::io::Result<Vec<UdpSocket>> {
    let addr = std::net::UdpSocket::bind(listen)?.local_addr()?;
    (0..count.max(1))
        .map(|_| {
            let socket = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::DGRAM,
                Some(socket2::Protocol::UDP),
            )?;
            socket.set_reuse_port(true)?;
            socket.set_nonblocking(true)?;
            socket.bind(&addr.into())?;
            UdpSocket::from_std(socket.into())
        })
        .collect()
}

/// Receive queries on `socket` and answer them; runs until aborted.
pub(super) async fn serve(socket: Arc<UdpSocket>, handler: Arc<Handler>) {
    let state = match UdpSocketState::new((&*socket).into()) {
        Ok(state) => state,
        Err(e) => {
            tracing::error!(cause = %e, "cannot set up the dns socket; udp not served on it");
            return;
        }
    };
    let shared = &handler.shared;
    let mut bufs = Box::new([[0u8; DATAGRAM]; BATCH]);
    let mut meta = [RecvMeta::default(); BATCH];
    let mut replies = Replies::default();
    let mut generation = shared.generation.load(Ordering::Acquire);
    let mut view = shared.view();
    loop {
        let received = socket
            .async_io(Interest::READABLE, || {
                let mut slices = bufs.each_mut().map(|b| IoSliceMut::new(b));
                state.recv((&*socket).into(), &mut slices, &mut meta)
            })
            .await;
        let received = match received {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(cause = %e, "dns receive failed");
                continue;
            }
        };
        let now = shared.generation.load(Ordering::Acquire);
        if now != generation {
            generation = now;
            view = shared.view();
        }
        for (buf, meta) in bufs.iter().zip(&meta).take(received) {
            let src = meta.addr;
            if src.port() == 0 {
                continue;
            }
            // Several datagrams from one client may arrive as one (GRO).
            for packet in buf[..meta.len].chunks(meta.stride.max(1)) {
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
                    if replies.is_full() {
                        replies.send(&socket).await;
                    }
                } else {
                    slow(&socket, &handler, packet, src).await;
                }
            }
        }
        replies.send(&socket).await;
    }
}

/// A query for hickory's request handling: answered inline when
/// authoritative, in a task of its own when forwarded upstream.
async fn slow(socket: &Arc<UdpSocket>, handler: &Arc<Handler>, packet: &[u8], src: SocketAddr) {
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
    let h = handler.clone();
    let mut answer = Box::pin(async move {
        h.handle_request::<_, TokioTime>(&request, responder).await;
    });
    // Authoritative answers complete on the first poll; a forwarded query
    // waits for its upstream in a task of its own.
    let done = std::future::poll_fn(|cx| Poll::Ready(answer.as_mut().poll(cx).is_ready())).await;
    if !done {
        tokio::spawn(answer);
    }
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

    fn is_full(&self) -> bool {
        self.to.len() >= BATCH
    }

    /// Send every kept answer: one `sendmmsg` when the socket takes them
    /// all, as it does unless its send buffer is full. An answer that
    /// cannot be sent is logged and dropped (the client asks again), so
    /// each call makes progress and the loop ends.
    async fn send(&mut self, socket: &UdpSocket) {
        let total = self.to.len();
        let mut sent = 0;
        while sent < total {
            let result = socket
                .async_io(Interest::WRITABLE, || {
                    send_batch(socket, &self.answers[sent..total], &self.to[sent..total])
                })
                .await;
            match result {
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
        self.socket.send_to(&bytes, self.dst).await?;
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
