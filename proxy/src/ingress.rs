//! Listeners for visiting staff: TLS SNI (routed by name, never
//! terminated), service VIPs (one address per remote non-TLS service), an
//! HTTP CONNECT proxy with a PAC file at `/proxy.pac`, and SOCKS5.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use federation::model::{Protocol, ServiceId};
use federation::socks5::{self, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::overlay::Overlay;
use crate::visit::{self, Refused};
use crate::{Ctx, Listen};

const MAX_HEAD: usize = 16 * 1024;
/// At most this much of what a VIP client sent before its flow opened goes
/// with the opening (an HTTP request, say); the rest follows in the relay.
const FIRST_READ: usize = 4 * 1024;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Sni,
    Connect,
    Socks,
    Vip,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Sni => "sni",
            Self::Connect => "connect",
            Self::Socks => "socks",
            Self::Vip => "vip",
        }
    }
}

/// Bind the configured listeners and spawn their accept loops into `tasks`.
pub async fn start(
    ctx: &Arc<Ctx>,
    overlay: &Arc<Overlay>,
    listen: &Listen,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let mut binds: Vec<(Kind, SocketAddr)> = Vec::new();
    binds.extend(listen.sni.map(|a| (Kind::Sni, a)));
    binds.extend(listen.connect.map(|a| (Kind::Connect, a)));
    binds.extend(listen.socks.map(|a| (Kind::Socks, a)));
    if listen.vips {
        let vips: Vec<SocketAddr> = ctx.node().vips.keys().copied().collect();
        let mut running = std::collections::BTreeMap::new();
        for addr in vips {
            let listener =
                bind_vip(addr).with_context(|| format!("cannot listen for vip on {addr}"))?;
            tracing::info!(kind = "vip", %addr, "listening");
            running.insert(addr, Listening::vip(ctx, overlay, listener, addr));
        }
        tasks.spawn(follow_vips(ctx.clone(), overlay.clone(), running));
    }
    for (kind, addr) in binds {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for {} on {addr}", kind.as_str()))?;
        let local = listener.local_addr()?;
        tracing::info!(kind = kind.as_str(), addr = %local, "listening");
        let ctx = ctx.clone();
        let overlay = overlay.clone();
        tasks.spawn(accept_loop(ctx, overlay, listener, kind, local));
    }
    Ok(())
}

/// A listener on a service VIP. The VIP prefix is routed to the edge host
/// as local (`ip route add local PREFIX dev lo`); Linux lets a socket bind
/// an IPv4 address of such a route as it is, an IPv6 one only with
/// `IPV6_FREEBIND`.
fn bind_vip(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv6() {
        let socket = tokio::net::TcpSocket::new_v6()?;
        socket2::SockRef::from(&socket).set_freebind_v6(true)?;
        socket
    } else {
        tokio::net::TcpSocket::new_v4()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Keep one listener per service VIP of the node in force: a new snapshot's
/// VIPs are bound, those it no longer has are closed.
async fn follow_vips(
    ctx: Arc<Ctx>,
    overlay: Arc<Overlay>,
    mut running: std::collections::BTreeMap<SocketAddr, Listening>,
) {
    let mut nodes = ctx.nodes();
    nodes.borrow_and_update();
    while nodes.changed().await.is_ok() {
        let wanted: Vec<SocketAddr> = nodes.borrow_and_update().vips.keys().copied().collect();
        running.retain(|addr, _| {
            let keep = wanted.contains(addr);
            if !keep {
                tracing::info!(kind = "vip", %addr, "listener closed: not in the new snapshot");
            }
            keep
        });
        for addr in wanted {
            if running.contains_key(&addr) {
                continue;
            }
            match bind_vip(addr) {
                Ok(listener) => {
                    tracing::info!(kind = "vip", %addr, "listening");
                    running.insert(addr, Listening::vip(&ctx, &overlay, listener, addr));
                }
                Err(e) => {
                    tracing::error!(kind = "vip", %addr, cause = %e, "cannot listen on a new VIP")
                }
            }
        }
    }
}

/// A VIP's accept loop, stopped when dropped (a VIP gone from the snapshot,
/// or the edge draining).
struct Listening(tokio::task::JoinHandle<()>);

impl Listening {
    fn vip(
        ctx: &Arc<Ctx>,
        overlay: &Arc<Overlay>,
        listener: TcpListener,
        addr: SocketAddr,
    ) -> Self {
        Self(tokio::spawn(accept_loop(
            ctx.clone(),
            overlay.clone(),
            listener,
            Kind::Vip,
            addr,
        )))
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn accept_loop(
    ctx: Arc<Ctx>,
    overlay: Arc<Overlay>,
    listener: TcpListener,
    kind: Kind,
    local: SocketAddr,
) {
    loop {
        let (client, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(cause = %e, kind = kind.as_str(), "failed to accept");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let remote = crate::canonical(remote);
        if let crate::Rate::Over { first } = ctx.within_rate(remote.ip()) {
            ctx.metrics.add(
                "fedgate_denials_total",
                &[("role", "visited"), ("reason", "rate-limited")],
                1,
            );
            if first {
                tracing::warn!(%remote, limit = ctx.limits.conn_rate_per_source, "connection rate limit exceeded; closing its connections for the rest of the second");
            }
            continue;
        }
        let _ = client.set_nodelay(true);
        let ctx = ctx.clone();
        let overlay = overlay.clone();
        let span = tracing::info_span!("ingress", kind = kind.as_str(), %remote);
        tokio::spawn(
            async move {
                let result = match kind {
                    Kind::Sni => sni(&ctx, &overlay, client, remote, local).await,
                    Kind::Connect => connect(&ctx, &overlay, client, remote, local).await,
                    Kind::Socks => socks(&ctx, &overlay, client, remote).await,
                    Kind::Vip => vip(&ctx, &overlay, client, remote, local).await,
                };
                // A client that does not speak its listener's protocol (no
                // ClientHello in time, not TLS, a malformed CONNECT or
                // SOCKS request) or drops the connection: one line per
                // connection, as for the refusals above, so that an ICT
                // team sees why a client got nowhere.
                if let Err(e) = result {
                    tracing::info!(cause = %format!("{e:#}"), "client connection closed on an error");
                }
            }
            .instrument(span),
        );
    }
}

/// The port a name-routed flow goes to: the listener's own port if the
/// service serves it, else the service's only port.
fn port_for(ports: &[u16], local: SocketAddr) -> Option<u16> {
    if ports.contains(&local.port()) {
        Some(local.port())
    } else if let [only] = ports {
        Some(*only)
    } else {
        None
    }
}

async fn sni(
    ctx: &Arc<Ctx>,
    overlay: &Arc<Overlay>,
    mut client: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
) -> anyhow::Result<()> {
    let mut buf = Vec::with_capacity(2048);
    let mut acceptor = rustls::server::Acceptor::default();
    let name = tokio::time::timeout(ctx.limits.client_hello_timeout, async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = client.read(&mut chunk).await?;
            anyhow::ensure!(n > 0, "client closed before its ClientHello");
            buf.extend_from_slice(&chunk[..n]);
            anyhow::ensure!(
                buf.len() <= MAX_HEAD,
                "ClientHello larger than {MAX_HEAD} bytes"
            );
            acceptor.read_tls(&mut &chunk[..n])?;
            match acceptor.accept() {
                Ok(Some(accepted)) => {
                    return Ok(accepted.client_hello().server_name().map(str::to_owned));
                }
                Ok(None) => {}
                Err((e, _)) => anyhow::bail!("not a TLS ClientHello: {e}"),
            }
        }
    })
    .await
    .context("no ClientHello in time")??;
    let Some(name) = name else {
        tracing::info!(%remote, "TLS without SNI; closing");
        return Ok(());
    };
    let node = ctx.node();
    let Some(route) = node
        .routing
        .resolve(&name)
        .filter(|r| r.protocol == Protocol::Tls)
    else {
        tracing::info!(%remote, name, "SNI names no federation TLS service; closing");
        ctx.metrics.add(
            "fedgate_denials_total",
            &[("role", "visited"), ("reason", "unknown-service")],
            1,
        );
        return Ok(());
    };
    let Some(port) = port_for(&route.ports, local) else {
        tracing::info!(%remote, name, "service serves several ports, none of them this listener's; closing");
        return Ok(());
    };
    let service = route.service.clone();
    drop(node);
    // On refusal, closing is the answer; the refusal is logged and audited.
    if let Ok(opened) = visit::open(ctx, overlay, remote, &service, port, "sni", &buf, None).await {
        visit::relay(ctx, opened, client).await;
    }
    Ok(())
}

async fn vip(
    ctx: &Arc<Ctx>,
    overlay: &Arc<Overlay>,
    client: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
) -> anyhow::Result<()> {
    let service = ctx
        .node()
        .vips
        .get(&local)
        .cloned()
        .context("no service at this VIP")?;
    // Whatever the client sent already (a request right after connecting)
    // goes with the flow's opening.
    let mut first = vec![0u8; FIRST_READ];
    let n = match client.try_read(&mut first) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e.into()),
    };
    first.truncate(n);
    let opened = visit::open(
        ctx,
        overlay,
        remote,
        &service,
        local.port(),
        "vip",
        &first,
        Some(&client),
    )
    .await;
    drop(first);
    if let Ok(opened) = opened {
        visit::relay(ctx, opened, client).await;
    }
    Ok(())
}

/// Read an HTTP request head (up to the blank line).
async fn read_head(ctx: &Ctx, client: &mut TcpStream) -> anyhow::Result<(Vec<u8>, usize)> {
    let mut buf = Vec::with_capacity(1024);
    tokio::time::timeout(ctx.limits.client_hello_timeout, async {
        let mut chunk = [0u8; 2048];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok((buf, end + 4));
            }
            anyhow::ensure!(
                buf.len() <= MAX_HEAD,
                "request head larger than {MAX_HEAD} bytes"
            );
            let n = client.read(&mut chunk).await?;
            anyhow::ensure!(n > 0, "client closed before a whole request");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .context("no request in time")?
}

async fn respond(
    client: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    client.write_all(head.as_bytes()).await?;
    client.write_all(body.as_bytes()).await?;
    client.shutdown().await
}

/// The PAC file: the federation's zones (other members') through this
/// edge's CONNECT listener, everything else direct.
/// The PAC file for a client of the CONNECT listener on `local`, that
/// reached it at `reached`: a listener on every address (`0.0.0.0`, `[::]`)
/// names the address the client reached, of the client's own family, or
/// else the edge's first ingress address.
fn pac(ctx: &Ctx, local: SocketAddr, reached: Option<SocketAddr>) -> String {
    let node = ctx.node();
    let proxy = if local.ip().is_unspecified() {
        reached
            .map(crate::canonical)
            .or_else(|| {
                node.edge
                    .ingress_addresses
                    .first()
                    .map(|ip| SocketAddr::new(*ip, local.port()))
            })
            .unwrap_or(local)
    } else {
        local
    };
    let mut zones: Vec<&str> = node
        .fed
        .orgs
        .iter()
        .filter(|o| o.id != *node.org())
        .flat_map(|o| o.zones.iter().map(String::as_str))
        .collect();
    zones.sort_unstable();
    let conditions: Vec<String> = zones
        .iter()
        .map(|z| format!("    host == \"{z}\" || dnsDomainIs(host, \".{z}\")"))
        .collect();
    let condition = if conditions.is_empty() {
        "    false".to_owned()
    } else {
        conditions.join(" ||\n")
    };
    format!(
        "// Fedgate edge {edge}: the federation's names go through this edge.\nfunction FindProxyForURL(url, host) {{\n  host = host.toLowerCase();\n  if (\n{condition}\n  ) {{\n    return \"PROXY {proxy}\";\n  }}\n  return \"DIRECT\";\n}}\n",
        edge = node.edge.id
    )
}

async fn connect(
    ctx: &Arc<Ctx>,
    overlay: &Arc<Overlay>,
    mut client: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
) -> anyhow::Result<()> {
    let (buf, head_len) = read_head(ctx, &mut client).await?;
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(
        req.parse(&buf[..head_len]),
        Ok(httparse::Status::Complete(_))
    ) {
        respond(
            &mut client,
            "400 Bad Request",
            "text/plain",
            "malformed request\n",
        )
        .await?;
        return Ok(());
    }
    let method = req.method.unwrap_or_default();
    let target = req.path.unwrap_or_default().to_owned();
    if method == "GET" && (target == "/proxy.pac" || target.ends_with("/proxy.pac")) {
        let body = pac(ctx, local, client.local_addr().ok());
        respond(
            &mut client,
            "200 OK",
            "application/x-ns-proxy-autoconfig",
            &body,
        )
        .await?;
        return Ok(());
    }
    if method != "CONNECT" {
        respond(
            &mut client,
            "405 Method Not Allowed",
            "text/plain",
            "this proxy accepts CONNECT, and GET /proxy.pac\n",
        )
        .await?;
        return Ok(());
    }
    let Some((host, port)) = target
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
    else {
        respond(
            &mut client,
            "400 Bad Request",
            "text/plain",
            "CONNECT needs host:port\n",
        )
        .await?;
        return Ok(());
    };
    let service = resolve_target(ctx, host, port);
    let Some(service) = service else {
        respond(
            &mut client,
            "403 Forbidden",
            "text/plain",
            &format!("{host} is not a federation service reachable from here\n"),
        )
        .await?;
        ctx.metrics.add(
            "fedgate_denials_total",
            &[("role", "visited"), ("reason", "unknown-service")],
            1,
        );
        return Ok(());
    };
    match visit::open(
        ctx,
        overlay,
        remote,
        &service,
        port,
        "connect",
        &buf[head_len..],
        None,
    )
    .await
    {
        Ok(opened) => {
            client
                .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                .await?;
            visit::relay(ctx, opened, client).await;
        }
        Err(refused) => {
            let (status, why) = if refused.denied {
                ("403 Forbidden", "denied")
            } else if refused.try_later() {
                ("503 Service Unavailable", "busy, try again")
            } else {
                ("502 Bad Gateway", "failed")
            };
            let Refused { reason, rule, .. } = refused;
            let rule = rule.map(|r| format!(" by rule {r}")).unwrap_or_default();
            respond(
                &mut client,
                status,
                "text/plain",
                &format!("fedgate: {service}:{port} {why}: {reason}{rule}\n"),
            )
            .await?;
        }
    }
    Ok(())
}

/// A service by DNS name, or by the address of one of this edge's VIPs.
fn resolve_target(ctx: &Ctx, host: &str, port: u16) -> Option<ServiceId> {
    let node = ctx.node();
    if let Ok(ip) = host.parse::<IpAddr>() {
        return node.vips.get(&SocketAddr::new(ip, port)).cloned();
    }
    node.routing.resolve(host).map(|r| r.service.clone())
}

/// Read from `client` into `buf` until `decode` finds a whole message at its
/// start; that message, and `buf` keeps what came after it. A malformed one
/// is answered as SOCKS5 says (if at all) and ends the connection.
async fn read_socks<T>(
    client: &mut TcpStream,
    buf: &mut Vec<u8>,
    decode: impl Fn(&[u8]) -> Result<Option<(T, usize)>, socks5::Malformed>,
) -> anyhow::Result<T> {
    let mut chunk = [0u8; 1024];
    loop {
        match decode(buf) {
            Ok(Some((message, used))) => {
                buf.drain(..used);
                return Ok(message);
            }
            Ok(None) => {
                let n = client.read(&mut chunk).await?;
                anyhow::ensure!(n > 0, "client closed before a whole SOCKS message");
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(malformed) => {
                if let Some(answer) = malformed.answer() {
                    client.write_all(&answer).await?;
                }
                return Err(malformed.into());
            }
        }
    }
}

async fn socks(
    ctx: &Arc<Ctx>,
    overlay: &Arc<Overlay>,
    mut client: TcpStream,
    remote: SocketAddr,
) -> anyhow::Result<()> {
    // A client may send its request, and even its first bytes, without
    // waiting for the answer to its greeting: what follows each message
    // stays in `buf`, and the rest goes with the flow's opening.
    let mut buf = Vec::with_capacity(256);
    let request = tokio::time::timeout(ctx.limits.client_hello_timeout, async {
        read_socks(&mut client, &mut buf, |b| {
            Ok(socks5::decode_greeting(b)?.map(|used| ((), used)))
        })
        .await?;
        client
            .write_all(&[socks5::VERSION, socks5::NO_AUTHENTICATION])
            .await?;
        let request = read_socks(&mut client, &mut buf, socks5::Request::decode).await?;
        if request.command != socks5::CONNECT {
            client
                .write_all(&Reply::CommandNotSupported.encode())
                .await?;
            anyhow::bail!("SOCKS command {} is not CONNECT", request.command);
        }
        Ok(request)
    })
    .await
    .context("no SOCKS request in time")??;
    let socks5::Request { host, port, .. } = request;
    let Some(service) = resolve_target(ctx, &host.to_string(), port) else {
        ctx.metrics.add(
            "fedgate_denials_total",
            &[("role", "visited"), ("reason", "unknown-service")],
            1,
        );
        client.write_all(&Reply::HostUnreachable.encode()).await?;
        return Ok(());
    };
    match visit::open(ctx, overlay, remote, &service, port, "socks", &buf, None).await {
        Ok(opened) => {
            client.write_all(&Reply::Succeeded.encode()).await?;
            visit::relay(ctx, opened, client).await;
        }
        Err(refused) => {
            let reply = if refused.denied {
                Reply::NotAllowed
            } else {
                Reply::GeneralFailure
            };
            client.write_all(&reply.encode()).await?;
        }
    }
    Ok(())
}
