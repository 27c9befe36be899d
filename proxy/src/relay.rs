//! Relaying a flow's bytes both ways, with half-close, counting every byte
//! (also when the flow ends in an error) and closing a flow on which nothing
//! has moved for the flow idle timeout — which also frees a flow whose QUIC
//! stream writer was never woken after the peer stopped reading.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Bytes buffered each way while relaying.
pub const BUFFER: usize = 64 * 1024;

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
    activity: Arc<AtomicU64>,
    epoch: Instant,
}

impl<S> Counted<S> {
    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.activity.store(ms, Ordering::Relaxed);
    }
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
            self.touch();
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
            self.touch();
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

/// Relay between `client` and `service` until both close, one fails,
/// nothing moves for `idle`, or `stop` yields a reason. Returns bytes
/// client-to-service ("up"), service-to-client ("down"), and how it ended.
pub async fn relay<A, B, F>(client: A, service: B, idle: Duration, stop: F) -> (u64, u64, Ended)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = String>,
{
    let epoch = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let mut a = Counted {
        inner: client,
        read: 0,
        activity: activity.clone(),
        epoch,
    };
    let mut b = Counted {
        inner: service,
        read: 0,
        activity: activity.clone(),
        epoch,
    };
    let check = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    let ended = {
        let copy = tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, BUFFER, BUFFER);
        tokio::pin!(copy);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                result = &mut copy => break if result.is_ok() { Ended::Closed } else { Ended::Failed },
                reason = &mut stop => break Ended::Stopped(reason),
                () = tokio::time::sleep(check) => {
                    let last = Duration::from_millis(activity.load(Ordering::Relaxed));
                    if epoch.elapsed().saturating_sub(last) >= idle {
                        break Ended::Idle;
                    }
                }
            }
        }
    };
    (a.read, b.read, ended)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

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
}
