//! The overlay's UDP socket: quinn's own (GSO, GRO, ECN, `IP_PKTINFO`),
//! with larger kernel buffers and every batch cut to what one `sendmsg` may
//! carry.
//!
//! quinn hands the socket batches of up to ten datagrams of the path MTU to
//! send with one GSO `sendmsg`. The kernel takes at most 64 KiB in one call
//! and quinn-udp drops a batch refused with `EMSGSIZE` without a word (it
//! expects that only of MTU probes), so once MTU discovery finds a path MTU
//! above 6.5 KB (loopback, jumbo frames) every full batch would be lost.
//! [`CappedGso`] sends such a batch as several calls instead.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, Runtime, UdpPoller};

/// Most UDP payload bytes one GSO `sendmsg` may carry (an IPv4 or IPv6
/// datagram's length field, less the headers).
pub const MAX_GSO_BYTES: usize = 65_000;

/// The largest UDP payload an edge accepts (and MTU discovery searches up
/// to): IPv6's, 65,527 bytes.
pub const MAX_UDP_PAYLOAD: u16 = 65_527;

/// Kernel socket buffer sizes asked for (the kernel caps them at
/// `net.core.rmem_max` / `wmem_max`).
pub const SOCKET_BUFFER: usize = 8 * 1024 * 1024;

/// quinn's socket for `std`, with [`MAX_GSO_BYTES`] kept per send.
pub struct CappedGso {
    inner: Arc<dyn AsyncUdpSocket>,
}

impl fmt::Debug for CappedGso {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CappedGso")
            .field("inner", &self.inner)
            .finish()
    }
}

impl CappedGso {
    /// Wrap a bound socket for `runtime`, after asking for larger buffers.
    pub fn wrap(socket: std::net::UdpSocket, runtime: &dyn Runtime) -> io::Result<Arc<Self>> {
        let sock = socket2::SockRef::from(&socket);
        // Best effort: a smaller buffer only costs throughput.
        if let Err(e) = sock.set_recv_buffer_size(SOCKET_BUFFER) {
            tracing::debug!(cause = %e, "cannot set SO_RCVBUF on the QUIC socket");
        }
        if let Err(e) = sock.set_send_buffer_size(SOCKET_BUFFER) {
            tracing::debug!(cause = %e, "cannot set SO_SNDBUF on the QUIC socket");
        }
        Ok(Arc::new(Self {
            inner: runtime.wrap_udp_socket(socket)?,
        }))
    }
}

impl AsyncUdpSocket for CappedGso {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        let Some(segment) = transmit.segment_size.filter(|s| *s > 0) else {
            return self.inner.try_send(transmit);
        };
        if transmit.contents.len() <= MAX_GSO_BYTES {
            return self.inner.try_send(transmit);
        }
        // Whole segments per call; at least one, which the kernel takes
        // whatever its size up to the datagram limit.
        let per_call = (MAX_GSO_BYTES / segment).max(1) * segment;
        // A send that would block after some calls went out is retried whole
        // by quinn: the peer drops the repeated packets as duplicates.
        for chunk in transmit.contents.chunks(per_call) {
            self.inner.try_send(&Transmit {
                destination: transmit.destination,
                ecn: transmit.ecn,
                contents: chunk,
                segment_size: (chunk.len() > segment).then_some(segment),
                src_ip: transmit.src_ip,
            })?;
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [io::IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        // quinn sizes each receive buffer as the largest payload times this;
        // a GRO batch never exceeds 64 KiB in all, which one payload of
        // MAX_UDP_PAYLOAD already holds.
        1
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch of ten 9,000-byte datagrams (90 KB, more than one GSO send
    /// may carry) arrives whole, as ten datagrams.
    #[tokio::test]
    async fn a_batch_above_64_kib_is_sent_in_parts() {
        let runtime = quinn::TokioRuntime;
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let tx =
            CappedGso::wrap(std::net::UdpSocket::bind("127.0.0.1:0").unwrap(), &runtime).unwrap();
        let segment = 9_000;
        let contents: Vec<u8> = (0..10 * segment).map(|i| (i / segment) as u8).collect();
        let transmit = Transmit {
            destination: rx.local_addr().unwrap(),
            ecn: None,
            contents: &contents,
            segment_size: Some(segment),
            src_ip: None,
        };
        // As quinn does: wait until writable, then send (the buffer is
        // large enough for the whole batch).
        let mut writable = tx.clone().create_io_poller();
        std::future::poll_fn(|cx| writable.as_mut().poll_writable(cx))
            .await
            .unwrap();
        tx.try_send(&transmit).unwrap();
        let mut buf = vec![0u8; 65_536];
        for i in 0..10u8 {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(n, segment);
            assert!(
                buf[..n].iter().all(|b| *b == i),
                "datagram {i} out of order or torn"
            );
        }
    }
}
