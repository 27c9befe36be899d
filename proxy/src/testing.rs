//! Helpers shared by the unit tests of several modules.

use std::sync::Arc;

use crate::overlay::QuicStream;

/// Two QUIC endpoints on loopback with mutual TLS as the edges use it,
/// and one connection from the first to the second; the first (the near
/// end) runs with `near`'s transport settings, the second (the far end)
/// with `far`'s; both endpoints run on `runtime`. The dialing endpoint is
/// returned to be kept alive.
pub(crate) async fn quic_conns(
    w: &::tests::World,
    near: quinn::TransportConfig,
    far: quinn::TransportConfig,
    runtime: Arc<dyn quinn::Runtime>,
) -> (quinn::Connection, quinn::Connection, quinn::Endpoint) {
    use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

    let socket = || std::net::UdpSocket::bind("127.0.0.1:0").unwrap();

    let material = |org: &str| {
        let (cert, key, _) = w.edge_cert(org, "edge", org, None, None);
        crate::tls::load_material(&cert, &key, &w.ca_pem()).unwrap()
    };
    let own = |org: &str| crate::tls::Credentials::new(&material(org)).unwrap();
    let server = crate::tls::server_config(&own("home")).unwrap();
    let client = crate::tls::client_config(&own("away")).unwrap();
    let mut server =
        quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(server).unwrap()));
    server.transport_config(Arc::new(far));
    let config = quinn::EndpointConfig::default;
    let listener = quinn::Endpoint::new(config(), Some(server), socket(), runtime.clone()).unwrap();
    let mut dialer = quinn::Endpoint::new(config(), None, socket(), runtime).unwrap();
    let mut client =
        quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(client).unwrap()));
    client.transport_config(Arc::new(near));
    dialer.set_default_client_config(client);
    let to = listener.local_addr().unwrap();
    let accept = tokio::spawn(async move { listener.accept().await.unwrap().await.unwrap() });
    let near = dialer
        .connect(to, "edge.fedgate.invalid")
        .unwrap()
        .await
        .unwrap();
    (near, accept.await.unwrap(), dialer)
}

/// A stream opened from `near` and accepted at `far`.
pub(crate) async fn quic_stream(
    near: &quinn::Connection,
    far: &quinn::Connection,
) -> (QuicStream, QuicStream) {
    let (mut send, recv) = near.open_bi().await.unwrap();
    // A stream reaches the peer with its first byte.
    send.write_all(b"<").await.unwrap();
    let (far_send, mut far_recv) = far.accept_bi().await.unwrap();
    let mut first = [0u8; 1];
    far_recv.read_exact(&mut first).await.unwrap();
    (
        QuicStream { send, recv },
        QuicStream {
            send: far_send,
            recv: far_recv,
        },
    )
}
