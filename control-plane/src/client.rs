//! A small HTTPS client over mutual TLS for the control plane's API, as
//! `fedctl` speaks it: one connection per request, the server's chain
//! checked against the federation CA and its identity required to be a
//! control-plane replica (`spiffe://TD/control/NAME`), as the edges do.
//!
//! Every failure says which step failed ([`CallError`]), so that the caller
//! can tell an unreachable control plane from a refused certificate.

use std::sync::Arc;
use std::time::Duration;

use federation::identity::{Identity, peer_cert, trust_domain_of};
use federation::mtls::Material;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use jiff::Timestamp;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    #[error("nothing answers at {addr} ({reason})")]
    Connect { addr: String, reason: String },
    #[error("the TLS handshake with {addr} failed: {reason}")]
    Handshake { addr: String, reason: String },
    #[error("{addr} is not a control-plane replica of this federation: {reason}")]
    NotControl { addr: String, reason: String },
    #[error("{addr} closed the connection without answering ({reason})")]
    Closed { addr: String, reason: String },
    #[error("no answer from {addr} within {secs} s")]
    Timeout { addr: String, secs: u64 },
    #[error("cannot build the request: {0}")]
    Request(String),
}

/// Talks to one control-plane replica.
pub struct ControlClient {
    addr: String,
    connector: TlsConnector,
    trust_domain: String,
}

/// Bounds of one exchange.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl ControlClient {
    /// A client presenting `material`'s certificate, whose leaf is
    /// `own_cert` (DER; it names the trust domain).
    pub fn new(addr: &str, material: &Material, own_cert: &[u8]) -> Result<Self, SetupError> {
        let trust_domain = trust_domain_of(own_cert).map_err(|e| SetupError(e.to_string()))?;
        let tls = federation::mtls::client_config(material, b"http/1.1")
            .map_err(|e| SetupError(e.to_string()))?;
        Ok(Self {
            addr: addr.to_owned(),
            connector: TlsConnector::from(Arc::new(tls)),
            trust_domain,
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// Send one request and read the whole answer, within `timeout` once
    /// connected. `now` checks the server certificate's validity.
    pub async fn send(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
        now: Timestamp,
    ) -> Result<(hyper::StatusCode, Bytes), CallError> {
        let addr = self.addr.clone();
        let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                return Err(CallError::Connect {
                    addr,
                    reason: e.to_string(),
                });
            }
            Err(_) => {
                return Err(CallError::Connect {
                    addr,
                    reason: format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
                });
            }
        };
        let _ = tcp.set_nodelay(true);
        let handshake = tokio::time::timeout(
            CONNECT_TIMEOUT,
            self.connector.connect(federation::mtls::server_name(), tcp),
        )
        .await;
        let tls = match handshake {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                return Err(CallError::Handshake {
                    addr,
                    reason: e.to_string(),
                });
            }
            Err(_) => {
                return Err(CallError::Handshake {
                    addr,
                    reason: "timed out".into(),
                });
            }
        };
        let not_control = |reason: String| CallError::NotControl {
            addr: addr.clone(),
            reason,
        };
        let leaf = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or_else(|| not_control("it presented no certificate".into()))?;
        let server =
            peer_cert(leaf.as_ref(), &self.trust_domain).map_err(|e| not_control(e.to_string()))?;
        server
            .check_validity(now)
            .map_err(|e| not_control(e.to_string()))?;
        if !matches!(server.identity, Identity::Control { .. }) {
            return Err(not_control(format!("it is {}", server.identity)));
        }
        let closed = |reason: String| CallError::Closed {
            addr: addr.clone(),
            reason,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| closed(e.to_string()))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "control.fedgate.invalid");
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        let req = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| CallError::Request(e.to_string()))?;
        let exchange = tokio::time::timeout(timeout, async {
            let resp = sender.send_request(req).await?;
            let status = resp.status();
            let bytes = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, bytes))
        })
        .await;
        driver.abort();
        match exchange {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(closed(full_cause(&e))),
            Err(_) => Err(CallError::Timeout {
                addr,
                secs: timeout.as_secs(),
            }),
        }
    }
}

/// The client's own material could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(String);

/// An error and its sources on one line (hyper hides the TLS alert that
/// says why a server closed the connection in a source).
fn full_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    for _ in 0..8 {
        let Some(c) = cur else { break };
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
