//! Relaying a flow's bytes both ways, with half-close, counting every byte
//! (also when the flow ends in an error), ending a QUIC flow as soon as the
//! peer edge stops reading it, and closing a flow on which nothing has moved
//! for the flow idle timeout.
//!
//! A QUIC stream is relayed as owned chunks ([`relay_quic`]): bytes read from
//! TCP are handed to quinn without a copy, and bytes quinn decrypted are
//! written to TCP without a copy, where `AsyncRead`/`AsyncWrite` would copy
//! each byte once more on each edge.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

use crate::overlay::{FlowStream, QuicStream};

/// The most a flow's relay reads at once, each way (reads start smaller:
/// [`FIRST_BUFFER`]).
pub const BUFFER: usize = 64 * 1024;

/// The first read's buffer of a flow's relay, from its TCP side to its QUIC
/// stream, and each way over TLS on TCP: what an idle flow holds. Each read
/// that fills its buffer makes the next four times larger, up to [`BUFFER`].
pub const FIRST_BUFFER: usize = 4 * 1024;

/// How a relay ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Both sides closed.
    Closed,
    /// A side failed (reset, stream stopped).
    Failed,
    /// Nothing moved for the flow idle timeout.
    Idle,
    /// Closed by the edge, for the reason given (the peer's certificate was
    /// revoked, or a new snapshot no longer allows the flow).
    Stopped(String),
}

struct Counted<S> {
    inner: S,
    read: u64,
    activity: Activity,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.read += n as u64;
            self.activity.touch();
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// When a relay last moved a byte, for its idle timeout.
#[derive(Clone)]
struct Activity {
    last_ms: Arc<AtomicU64>,
    epoch: Instant,
}

impl Activity {
    fn new() -> Self {
        Self {
            last_ms: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }
}

/// Drive `copy` until it ends, `stop` yields a reason, or nothing moves for
/// `idle`.
async fn supervise<C, F>(copy: C, activity: &Activity, idle: Duration, stop: F) -> Ended
where
    C: Future<Output = std::io::Result<()>>,
    F: Future<Output = String>,
{
    let check = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    tokio::pin!(copy);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            result = &mut copy => break if result.is_ok() { Ended::Closed } else { Ended::Failed },
            reason = &mut stop => break Ended::Stopped(reason),
            () = tokio::time::sleep(check) => {
                if activity.idle_for() >= idle {
                    break Ended::Idle;
                }
            }
        }
    }
}

/// Relay between `client` and `service` until both close, one fails,
/// nothing moves for `idle`, or `stop` yields a reason. Returns bytes
/// client-to-service ("up"), service-to-client ("down"), and how it ended.
pub async fn relay<A, B, F>(client: A, service: B, idle: Duration, stop: F) -> (u64, u64, Ended)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = String>,
{
    let activity = Activity::new();
    let mut a = Counted {
        inner: client,
        read: 0,
        activity: activity.clone(),
    };
    let mut b = Counted {
        inner: service,
        read: 0,
        activity: activity.clone(),
    };
    let ended = {
        let (mut a_read, mut a_write) = tokio::io::split(&mut a);
        let (mut b_read, mut b_write) = tokio::io::split(&mut b);
        let copy = async {
            tokio::try_join!(
                copy_growing(&mut a_read, &mut b_write),
                copy_growing(&mut b_read, &mut a_write),
            )
            .map(drop)
        };
        supervise(copy, &activity, idle, stop).await
    };
    (a.read, b.read, ended)
}

/// Copy `from` into `to` until `from` ends, then shut `to` down (the other
/// side sees the half-close). Reads start at [`FIRST_BUFFER`] and grow as
/// [`relay_quic`]'s do, so that an idle flow holds a small buffer each way.
async fn copy_growing<R, W>(from: &mut R, to: &mut W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; FIRST_BUFFER];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        to.write_all(&buf[..n]).await?;
        // A TLS stream may hold the end of a record until flushed.
        to.flush().await?;
        if n == buf.len() && buf.len() < BUFFER {
            buf.resize((buf.len() * 4).min(BUFFER), 0);
        }
    }
}

/// Relay between a TCP-like `tcp` and a flow stream to or from a peer edge,
/// as [`relay`] does. Returns bytes read from `tcp`, bytes read from `flow`,
/// and how it ended.
pub async fn relay_flow<T, F>(
    tcp: T,
    flow: &mut FlowStream,
    idle: Duration,
    stop: F,
) -> (u64, u64, Ended)
where
    T: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = String>,
{
    match flow {
        FlowStream::Quic(quic) => relay_quic(tcp, quic, idle, stop).await,
        FlowStream::Io(io) => relay(tcp, io, idle, stop).await,
    }
}

/// [`relay_flow`] for a QUIC stream: owned chunks both ways, no copy in
/// this process beyond quinn's own packetisation.
pub async fn relay_quic<T, F>(
    tcp: T,
    quic: &mut QuicStream,
    idle: Duration,
    stop: F,
) -> (u64, u64, Ended)
where
    T: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = String>,
{
    let activity = Activity::new();
    let (mut tcp_read, mut tcp_write) = tokio::io::split(tcp);
    let mut from_tcp = 0u64;
    let mut from_quic = 0u64;
    let send = &mut quic.send;
    let recv = &mut quic.recv;
    // The peer stopping the stream (STOP_SENDING) ends the flow at once, like
    // a TCP reset. A write blocked on the connection's flow control would not
    // see it: quinn 0.11 answers such a write `Blocked` before it looks at
    // the stop and does not wake it for the stop again.
    let ended = {
        let stopped = std::pin::pin!(send.stopped());
        // Both halves are built in place and polled through pins: a future
        // moved into a combinator (`select!`, `try_join!`) is stored twice
        // in the flow's task. Pinned, this future is 1,104 bytes; with both
        // halves moved into `try_join!` it was 2,272, and 3,904 with the
        // sending half also moved into a `select!` on the stop.
        let copy_up = std::pin::pin!(async {
            let mut buf = BytesMut::new();
            let mut size = FIRST_BUFFER;
            loop {
                // After a short read the rest of the allocation takes the next
                // read; quinn holds each chunk until the peer acknowledges it.
                if buf.capacity() < size / 4 {
                    buf.reserve(size);
                }
                let room = buf.capacity();
                let n = tcp_read.read_buf(&mut buf).await?;
                if n == room {
                    // A read that filled the room: a flow that moves more
                    // than requests and answers reads more at a time.
                    size = (size * 4).min(BUFFER);
                }
                if n == 0 {
                    // Half-close: the peer sees the end of the stream.
                    return send.finish().map_err(std::io::Error::other);
                }
                from_tcp += n as u64;
                activity.touch();
                send.write_chunk(buf.split().freeze()).await?;
                activity.touch();
            }
        });
        let up = until_peer_stops(copy_up, stopped);
        let down = std::pin::pin!(async {
            loop {
                match recv.read_chunk(BUFFER, true).await? {
                    Some(chunk) => {
                        from_quic += chunk.bytes.len() as u64;
                        activity.touch();
                        tcp_write.write_all(&chunk.bytes).await?;
                        activity.touch();
                    }
                    None => return tcp_write.shutdown().await,
                }
            }
        });
        let copy = async { tokio::try_join!(up, down).map(drop) };
        supervise(copy, &activity, idle, stop).await
    };
    (from_tcp, from_quic, ended)
}

/// `work` (a flow's sending half), ended with an error as soon as `stopped`
/// ([`quinn::SendStream::stopped`]) says the peer stopped the stream or the
/// connection was lost. A stream finished and acknowledged leaves `work`
/// to run on.
fn until_peer_stops<'a, W, S>(
    mut work: Pin<&'a mut W>,
    mut stopped: Pin<&'a mut S>,
) -> impl Future<Output = std::io::Result<()>> + 'a
where
    W: Future<Output = std::io::Result<()>>,
    S: Future<Output = Result<Option<quinn::VarInt>, quinn::StoppedError>>,
{
    let mut watching = true;
    std::future::poll_fn(move |cx| {
        if watching && let Poll::Ready(result) = stopped.as_mut().poll(cx) {
            match result {
                Ok(Some(code)) => {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        format!("the peer edge stopped reading the flow (code {code})"),
                    )));
                }
                Ok(None) => watching = false,
                Err(e) => return Poll::Ready(Err(std::io::Error::other(e))),
            }
        }
        work.as_mut().poll(cx)
    })
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::testing::{quic_conns, quic_stream};

    #[tokio::test]
    async fn counts_bytes_both_ways_and_carries_half_close() {
        let (client, mut client_far) = tokio::io::duplex(1024);
        let (service, mut service_far) = tokio::io::duplex(1024);
        let task = tokio::spawn(relay(
            client,
            service,
            Duration::from_secs(10),
            std::future::pending(),
        ));
        client_far.write_all(b"hello").await.unwrap();
        client_far.shutdown().await.unwrap();
        let mut got = Vec::new();
        service_far.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        service_far.write_all(b"back at you").await.unwrap();
        drop(service_far);
        let mut back = Vec::new();
        client_far.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"back at you");
        assert_eq!(task.await.unwrap(), (5, 11, Ended::Closed));
    }

    /// Megabytes each way at once, through reads that grow from
    /// [`FIRST_BUFFER`] to [`BUFFER`], arrive whole and in order.
    #[tokio::test]
    async fn a_large_transfer_each_way_arrives_whole_as_the_reads_grow() {
        const LEN: usize = 3 * 1024 * 1024 + 17;
        let data = |seed: u8| -> Vec<u8> { (0..LEN).map(|i| (i % 251) as u8 ^ seed).collect() };
        let (client, client_far) = tokio::io::duplex(BUFFER);
        let (service, service_far) = tokio::io::duplex(BUFFER);
        let task = tokio::spawn(relay(
            client,
            service,
            Duration::from_secs(10),
            std::future::pending(),
        ));
        let across = |mut far: tokio::io::DuplexStream, seed: u8| async move {
            let (mut read, mut write) = tokio::io::split(&mut far);
            let send = async {
                write.write_all(&data(seed)).await.unwrap();
                write.shutdown().await.unwrap();
            };
            let mut got = Vec::new();
            let receive = read.read_to_end(&mut got);
            let ((), n) = tokio::join!(send, receive);
            n.unwrap();
            got
        };
        // Each far end sends its own bytes and returns what it received.
        let (at_client, at_service) = tokio::join!(across(client_far, 1), across(service_far, 2));
        assert!(at_service == data(1), "client-to-service bytes differ");
        assert!(at_client == data(2), "service-to-client bytes differ");
        assert_eq!(task.await.unwrap(), (LEN as u64, LEN as u64, Ended::Closed));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_flow_is_closed_with_its_counts() {
        let (client, mut client_far) = tokio::io::duplex(1024);
        let (service, mut service_far) = tokio::io::duplex(1024);
        let task = tokio::spawn(relay(
            client,
            service,
            Duration::from_secs(60),
            std::future::pending(),
        ));
        client_far.write_all(b"abc").await.unwrap();
        let mut got = [0u8; 3];
        service_far.read_exact(&mut got).await.unwrap();
        // Nothing more moves: after the idle timeout the relay ends.
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(task.await.unwrap(), (3, 0, Ended::Idle));
    }

    #[tokio::test]
    async fn a_stopped_flow_ends_with_the_reason() {
        let (client, mut client_far) = tokio::io::duplex(1024);
        let (service, _service_far) = tokio::io::duplex(1024);
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        let task = tokio::spawn(relay(client, service, Duration::from_secs(60), async {
            rx.await.unwrap_or_default()
        }));
        client_far.write_all(b"abcd").await.unwrap();
        tx.send("revoked".into()).unwrap();
        let (up, _, ended) = task.await.unwrap();
        assert_eq!(ended, Ended::Stopped("revoked".into()));
        assert!(up <= 4);
    }

    #[tokio::test]
    async fn a_quic_flow_counts_bytes_both_ways_and_carries_half_close() {
        let w = ::tests::World::new();
        let (near_conn, far_conn, _endpoint) = quic_conns(
            &w,
            quinn::TransportConfig::default(),
            quinn::TransportConfig::default(),
            Arc::new(quinn::TokioRuntime),
        )
        .await;
        let (mut near, mut far) = quic_stream(&near_conn, &far_conn).await;
        let (tcp, mut tcp_far) = tokio::io::duplex(1024);
        let task = tokio::spawn(async move {
            relay_quic(
                tcp,
                &mut near,
                Duration::from_secs(10),
                std::future::pending(),
            )
            .await
        });
        // More than one read and one chunk each way.
        let up: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let down: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
        let writer = {
            let up = up.clone();
            tokio::spawn(async move {
                tcp_far.write_all(&up).await.unwrap();
                tcp_far.shutdown().await.unwrap();
                tcp_far
            })
        };
        let got = far.recv.read_to_end(1 << 20).await.unwrap();
        assert_eq!(got, up, "bytes up, then the end of the stream");
        far.send.write_all(&down).await.unwrap();
        far.send.finish().unwrap();
        let mut tcp_far = writer.await.unwrap();
        let mut back = Vec::new();
        tcp_far.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, down, "bytes down, then EOF");
        assert_eq!(
            task.await.unwrap(),
            (up.len() as u64, down.len() as u64, Ended::Closed)
        );
    }

    /// Two flows share a connection and fill its flow-control window; then
    /// the far end stops reading one of them (STOP_SENDING, as a home edge
    /// does when its service has gone). That flow's relay must end then, not
    /// at the idle timeout: quinn 0.11 answers a write blocked on the
    /// connection's limit with `Blocked` before it looks at the stop, and the
    /// credit the stop frees goes to the other flow's writer.
    #[tokio::test]
    async fn a_quic_flow_ends_when_the_peer_stops_reading_a_blocked_write() {
        let w = ::tests::World::new();
        let mut far_transport = quinn::TransportConfig::default();
        far_transport.stream_receive_window(quinn::VarInt::from_u32(256 * 1024));
        far_transport.receive_window(quinn::VarInt::from_u32(128 * 1024));
        let (near_conn, far_conn, _endpoint) = quic_conns(
            &w,
            quinn::TransportConfig::default(),
            far_transport,
            Arc::new(quinn::TokioRuntime),
        )
        .await;
        let mut relays = Vec::new();
        let mut fars = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..2 {
            let (mut near, far) = quic_stream(&near_conn, &far_conn).await;
            fars.push(far);
            let (tcp, mut tcp_far) = tokio::io::duplex(64 * 1024);
            relays.push(tokio::spawn(async move {
                relay_quic(
                    tcp,
                    &mut near,
                    Duration::from_secs(600),
                    std::future::pending(),
                )
                .await
            }));
            // Each client sends far more than the windows take (bounded:
            // 64 MiB) and reads whatever comes back.
            clients.push(tokio::spawn(async move {
                let chunk = vec![7u8; 64 * 1024];
                for _ in 0..1024 {
                    if tcp_far.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
                let mut rest = Vec::new();
                let _ = tcp_far.read_to_end(&mut rest).await;
            }));
        }
        // Let the writes block on flow control, with nothing read far away.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            relays.iter().all(|r| !r.is_finished()),
            "the relays wait on flow control"
        );
        let stopped = relays.remove(0);
        let mut far = fars.remove(0);
        far.send.finish().unwrap();
        far.recv.stop(quinn::VarInt::from_u32(0)).unwrap();
        let (up, down, ended) = tokio::time::timeout(Duration::from_secs(10), stopped)
            .await
            .expect("the relay ends once the peer stops reading, not at the idle timeout")
            .unwrap();
        assert_eq!(ended, Ended::Failed);
        assert_eq!(down, 0);
        assert!(up > 0);
        assert!(!relays[0].is_finished(), "the other flow goes on");
        relays.iter().for_each(|task| task.abort());
        clients.iter().for_each(|task| task.abort());
    }
}
