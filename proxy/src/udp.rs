//! The overlay's UDP socket: quinn-udp's system calls (GSO, GRO, ECN,
//! `IP_PKTINFO`) on tokio's reactor, as quinn's own socket for tokio, but
//! with larger kernel buffers, every batch cut to what one `sendmsg` may
//! carry, and no watch for room to send while there is room.
//!
//! quinn hands the socket batches of up to ten datagrams of the path MTU to
//! send with one GSO `sendmsg`. The kernel takes at most 64 KiB in one call
//! and quinn-udp drops a batch refused with `EMSGSIZE` without a word (it
//! expects that only of MTU probes), so once MTU discovery finds a path MTU
//! above 6.5 KB (loopback, jumbo frames) every full batch would be lost.
//! [`Socket`] sends such a batch as several calls instead.
//!
//! A UDP socket that the poller watches for room to send reports room each
//! time the kernel frees a datagram it sent: with tokio's `UdpSocket`
//! (registered for both directions) every datagram an edge sent came back
//! as a readiness event, and made its runtime look at its sockets again.
//! [`Socket`] is registered for reading only, and watches for room (on a
//! second descriptor of the same socket) only between a send that would
//! have blocked and the next that does not.
//!
//! [`Coalescing`] is the runtime quinn's tasks run on: tokio's, with each
//! driver run after the flows' tasks ready beside it, so that what many
//! flows write in one turn leaves in one datagram.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit, UdpSocketState};
use quinn::{AsyncUdpSocket, Runtime, UdpPoller};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Most UDP payload bytes one GSO `sendmsg` may carry (an IPv4 or IPv6
/// datagram's length field, less the headers).
pub const MAX_GSO_BYTES: usize = 65_000;

/// The largest UDP payload an edge accepts (and MTU discovery searches up
/// to): IPv6's, 65,527 bytes.
pub const MAX_UDP_PAYLOAD: u16 = 65_527;

/// Kernel socket buffer sizes asked for (the kernel caps them at
/// `net.core.rmem_max` / `wmem_max`).
pub const SOCKET_BUFFER: usize = 8 * 1024 * 1024;

/// The overlay's QUIC socket, for quinn (see the module's note).
pub struct Socket {
    /// Registered with tokio's reactor for reading only.
    io: AsyncFd<std::net::UdpSocket>,
    state: UdpSocketState,
    /// The last send would have blocked: [`RoomToSend`] waits for room.
    blocked: AtomicBool,
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("io", &self.io)
            .field("blocked", &self.blocked)
            .finish()
    }
}

impl Socket {
    /// Wrap a bound socket, after asking for larger buffers; must be called
    /// on a tokio runtime.
    pub fn wrap(socket: std::net::UdpSocket) -> io::Result<Arc<Self>> {
        let sock = socket2::SockRef::from(&socket);
        // Best effort: a smaller buffer only costs throughput.
        if let Err(e) = sock.set_recv_buffer_size(SOCKET_BUFFER) {
            tracing::debug!(cause = %e, "cannot set SO_RCVBUF on the QUIC socket");
        }
        if let Err(e) = sock.set_send_buffer_size(SOCKET_BUFFER) {
            tracing::debug!(cause = %e, "cannot set SO_SNDBUF on the QUIC socket");
        }
        let state = UdpSocketState::new((&socket).into())?;
        socket.set_nonblocking(true)?;
        Ok(Arc::new(Self {
            io: register(socket, Interest::READABLE)?,
            state,
            blocked: AtomicBool::new(false),
        }))
    }

    fn send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        let sent = self.state.send(self.io.get_ref().into(), transmit);
        self.blocked.store(
            matches!(&sent, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            Ordering::Relaxed,
        );
        sent
    }
}

/// Register `socket` with the current runtime's reactor for `interest`
/// only. tokio deprecates the safe form of this call because the type it
/// takes could hand it a descriptor it does not own (the `unsafe` form's
/// contract is that the descriptor stays open and the same while
/// registered); a `std::net::UdpSocket` owns its descriptor, so it does.
#[allow(deprecated)]
fn register(
    socket: std::net::UdpSocket,
    interest: Interest,
) -> io::Result<AsyncFd<std::net::UdpSocket>> {
    AsyncFd::with_interest(socket, interest)
}

/// Room to send, for one of quinn's connections: at once while sends go
/// through; after a send that would have blocked, when the kernel reports
/// room, watched on a second descriptor of the socket registered for
/// writing until a send goes through again.
struct RoomToSend {
    socket: Arc<Socket>,
    watch: Option<AsyncFd<std::net::UdpSocket>>,
}

impl fmt::Debug for RoomToSend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomToSend")
            .field("watching", &self.watch.is_some())
            .finish()
    }
}

impl UdpPoller for RoomToSend {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.socket.blocked.load(Ordering::Relaxed) {
            this.watch = None;
            return Poll::Ready(Ok(()));
        }
        let watch = match &mut this.watch {
            Some(watch) => watch,
            // Registering reports room at once if there is some already.
            none => none.insert(register(
                this.socket.io.get_ref().try_clone()?,
                Interest::WRITABLE,
            )?),
        };
        // Cleared, so that a send that would block again waits for the
        // kernel's next report of room.
        std::task::ready!(watch.poll_write_ready(cx))?.clear_ready();
        Poll::Ready(Ok(()))
    }
}

impl AsyncUdpSocket for Socket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(RoomToSend {
            socket: self,
            watch: None,
        })
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        let Some(segment) = transmit.segment_size.filter(|s| *s > 0) else {
            return self.send(transmit);
        };
        if transmit.contents.len() <= MAX_GSO_BYTES {
            return self.send(transmit);
        }
        // Whole segments per call; at least one, which the kernel takes
        // whatever its size up to the datagram limit.
        let per_call = (MAX_GSO_BYTES / segment).max(1) * segment;
        // A send that would block after some calls went out is retried whole
        // by quinn: the peer drops the repeated packets as duplicates.
        for chunk in transmit.contents.chunks(per_call) {
            self.send(&Transmit {
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
        loop {
            let mut guard = std::task::ready!(self.io.poll_read_ready(cx))?;
            if let Ok(received) =
                guard.try_io(|io| self.state.recv(io.get_ref().into(), bufs, meta))
            {
                return Poll::Ready(received);
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    fn max_receive_segments(&self) -> usize {
        // quinn sizes each receive buffer as the largest payload times this;
        // a GRO batch never exceeds 64 KiB in all, which one payload of
        // MAX_UDP_PAYLOAD already holds.
        1
    }

    fn may_fragment(&self) -> bool {
        self.state.may_fragment()
    }
}

/// quinn's tokio runtime, with each of quinn's driver tasks (the endpoint's
/// and each connection's) run after the tasks already ready on its worker
/// thread whenever it is woken.
///
/// Woken from a flow's task on the same thread, tokio would run the driver
/// next (its LIFO slot), so every flow's write left as a datagram of its
/// own. Run after the other ready flows, the driver finds all their writes
/// and packs them into as few datagrams (and one GSO `sendmsg`) as they fit;
/// likewise it reads all datagrams that arrived meanwhile with one
/// `recvmmsg`.
#[derive(Debug)]
pub struct Coalescing;

impl Runtime for Coalescing {
    // quinn's trait names std's Instant; the timer is tokio's.
    #[allow(clippy::disallowed_types)]
    fn new_timer(&self, i: std::time::Instant) -> Pin<Box<dyn quinn::AsyncTimer>> {
        quinn::TokioRuntime.new_timer(i)
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        tokio::spawn(AfterReadyTasks {
            inner: future,
            deferred: false,
        });
    }

    fn wrap_udp_socket(&self, t: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        Ok(Socket::wrap(t)?)
    }
}

/// A task that, each time it is woken, first lets the tasks already ready on
/// its thread run ([`tokio::task::yield_now`]), then polls `inner`.
struct AfterReadyTasks {
    inner: Pin<Box<dyn Future<Output = ()> + Send>>,
    deferred: bool,
}

impl Future for AfterReadyTasks {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if !self.deferred {
            // yield_now's first poll hands the waker to the worker, which
            // wakes it once its ready tasks have run, and is Pending.
            let yielded = std::pin::pin!(tokio::task::yield_now());
            if yielded.poll(cx).is_pending() {
                self.deferred = true;
                return Poll::Pending;
            }
        }
        self.deferred = false;
        self.inner.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{quic_conns, quic_stream};

    /// Datagrams the near end sends when 16 flows' tasks, woken together,
    /// each write one byte (every byte checked at the far end), and the
    /// STREAM frames it sent meanwhile: more than 16 when a probe timeout
    /// sent some again (the far end's acknowledgement late, as when a busy
    /// machine leaves the test's threads waiting for a core).
    async fn datagrams_for_16_writes(runtime: Arc<dyn Runtime>) -> (u64, u64) {
        let w = ::tests::World::new();
        let (near, far, _endpoint) =
            quic_conns(&w, Default::default(), Default::default(), runtime).await;
        let mut streams = Vec::new();
        for _ in 0..16 {
            streams.push(quic_stream(&near, &far).await);
        }
        // Let the openings' acknowledgements settle.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let go = Arc::new(tokio::sync::Barrier::new(17));
        let before = near.stats();
        let mut tasks = Vec::new();
        for (mut ours, theirs) in streams {
            let go = go.clone();
            tasks.push(tokio::spawn(async move {
                go.wait().await;
                ours.send.write_all(b"x").await.unwrap();
                (ours, theirs)
            }));
        }
        go.wait().await;
        for task in tasks {
            let (_ours, mut theirs) = task.await.unwrap();
            let mut byte = [0u8; 1];
            theirs.recv.read_exact(&mut byte).await.unwrap();
            assert_eq!(&byte, b"x");
        }
        let after = near.stats();
        (
            after.udp_tx.datagrams - before.udp_tx.datagrams,
            after.frame_tx.stream - before.frame_tx.stream,
        )
    }

    /// [`datagrams_for_16_writes`] on `runtime` in a run where nothing was
    /// sent again (at most 5 runs): what coalescing does, not what a probe
    /// timeout adds.
    async fn datagrams_for_16_first_sends(runtime: Arc<dyn Runtime>) -> u64 {
        let mut frames = Vec::new();
        for _ in 0..5 {
            let (datagrams, stream_frames) = datagrams_for_16_writes(runtime.clone()).await;
            if stream_frames == 16 {
                return datagrams;
            }
            frames.push(stream_frames);
        }
        panic!(
            "every run sent STREAM frames again (frames per run: {frames:?}): the machine is too busy to measure"
        );
    }

    /// Flows that write in the same turn of the runtime share datagrams:
    /// quinn's driver runs after their tasks, not between them (with quinn's
    /// own tokio runtime, one datagram per flow).
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn writes_of_flows_woken_together_share_datagrams() {
        let coalesced = datagrams_for_16_first_sends(Arc::new(Coalescing)).await;
        let plain = datagrams_for_16_first_sends(Arc::new(quinn::TokioRuntime)).await;
        assert!(
            coalesced <= 4,
            "{coalesced} datagrams for 16 writes (quinn's runtime: {plain})"
        );
    }

    /// The same on the single-threaded runtime an edge runs with
    /// `--threads 1`.
    #[tokio::test(flavor = "current_thread")]
    async fn writes_of_flows_woken_together_share_datagrams_on_one_thread() {
        let coalesced = datagrams_for_16_first_sends(Arc::new(Coalescing)).await;
        assert!(coalesced <= 4, "{coalesced} datagrams for 16 writes");
    }

    /// The events `fd` is registered for with any of this process's epoll
    /// instances (tokio's reactor), as the kernel lists them.
    fn epoll_events(fd: std::os::fd::RawFd) -> Option<u32> {
        for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            let target = std::fs::read_link(entry.path()).unwrap_or_default();
            if target.to_str() != Some("anon_inode:[eventpoll]") {
                continue;
            }
            let info = std::path::Path::new("/proc/self/fdinfo").join(entry.file_name());
            for line in std::fs::read_to_string(info).unwrap_or_default().lines() {
                // tfd:        9 events:  8002001 data: ...
                let words: Vec<&str> = line.split_whitespace().collect();
                if let ["tfd:", tfd, "events:", events, ..] = words[..]
                    && tfd.parse() == Ok(fd)
                {
                    return Some(u32::from_str_radix(events, 16).unwrap());
                }
            }
        }
        None
    }

    /// The socket is registered for reading only, and watched for room to
    /// send only from a send that would have blocked to the next that does
    /// not.
    #[tokio::test(flavor = "current_thread")]
    async fn the_socket_is_watched_for_room_only_after_a_send_would_block() {
        use std::os::fd::AsRawFd;
        const EPOLLIN: u32 = 0x1;
        const EPOLLOUT: u32 = 0x4;
        let socket = Socket::wrap(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
        let fd = socket.io.get_ref().as_raw_fd();
        let events = epoll_events(fd).expect("the socket is registered");
        assert_eq!(events & (EPOLLIN | EPOLLOUT), EPOLLIN, "events {events:#x}");

        let mut room = RoomToSend {
            socket: socket.clone(),
            watch: None,
        };
        let poll = |room: &mut RoomToSend| {
            let waker = std::task::Waker::noop();
            Pin::new(room).poll_writable(&mut Context::from_waker(waker))
        };
        // Sends go through: room at once, nothing watched.
        assert!(matches!(poll(&mut room), Poll::Ready(Ok(()))));
        assert!(room.watch.is_none());

        // A send would have blocked (as the kernel says when the socket's
        // send buffer is full): the room is watched on a second
        // descriptor, registered for writing, which reports it.
        socket.blocked.store(true, Ordering::Relaxed);
        let mut ready = false;
        for _ in 0..100 {
            if matches!(poll(&mut room), Poll::Ready(Ok(()))) {
                ready = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(ready, "an empty send buffer was not reported as room");
        let watch = room.watch.as_ref().expect("watched").get_ref().as_raw_fd();
        assert_ne!(watch, fd);
        let events = epoll_events(watch).expect("the watch is registered");
        assert_eq!(events & EPOLLOUT, EPOLLOUT, "events {events:#x}");
        assert_eq!(epoll_events(fd).unwrap() & EPOLLOUT, 0);

        // The next send goes through: the watch is dropped.
        let to = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .try_send(&Transmit {
                destination: to.local_addr().unwrap(),
                ecn: None,
                contents: b"x",
                segment_size: None,
                src_ip: None,
            })
            .unwrap();
        assert!(matches!(poll(&mut room), Poll::Ready(Ok(()))));
        // Dropped, the watch's descriptor is closed, which takes it out of
        // the reactor (its number could be reused at once by another test).
        assert!(room.watch.is_none());
    }

    /// A batch of ten 9,000-byte datagrams (90 KB, more than one GSO send
    /// may carry) arrives whole, as ten datagrams.
    #[tokio::test]
    async fn a_batch_above_64_kib_is_sent_in_parts() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let tx = Socket::wrap(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
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
