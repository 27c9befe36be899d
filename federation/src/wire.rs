//! The overlay's stream header, sans-IO.
//!
//! Every flow between two edges is one bidirectional stream (QUIC) or one TLS
//! connection (TCP fallback), negotiated with ALPN [`ALPN`]. The visited edge
//! opens it with a [`FlowRequest`]; the home edge answers with a
//! [`FlowAnswer`]; then the stream carries the client's bytes unchanged.
//!
//! ```text
//! frame  = magic "FG" | version u8 (1) | kind u8 | length u16 (big endian) | body
//! request body (kind 1):
//!   flow id u128 | port u16 | service str8 | source network str8 | source address addr
//! answer body (kind 2):
//!   code u8 (0 accepted, 1 denied) | rule str8 | reason str8
//! str8 = length u8 | UTF-8 bytes      addr = family u8 (0 none, 4, 6) | 0, 4 or 16 bytes
//! ```
//!
//! The source organisation is not in the header: the home edge takes it from
//! the peer's certificate, and refuses a source network that organisation
//! does not own. Decoding works on a buffer and says when it needs more
//! bytes; it never panics on any input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// ALPN protocol id of the overlay, version 1.
pub const ALPN: &[u8] = b"fedgate/1";
/// The header version this build speaks.
pub const VERSION: u8 = 1;
const MAGIC: [u8; 2] = *b"FG";
const KIND_REQUEST: u8 = 1;
const KIND_ANSWER: u8 = 2;
/// Largest body accepted; a header is tiny, anything larger is an attack.
pub const MAX_BODY: usize = 1024;
const PREFIX: usize = 6;

/// What the visited edge asks of the home edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRequest {
    /// Correlates the audit records of the two edges.
    pub flow_id: u128,
    /// `ORG/NAME` of the destination service.
    pub service: String,
    pub port: u16,
    /// The client's network at the visited edge (a label of the peer's org).
    pub src_network: Option<String>,
    /// The client's original address (informational, and for CIDR rules).
    pub src_addr: Option<IpAddr>,
}

/// The home edge's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowAnswer {
    Accepted,
    Denied {
        /// The deciding rule, if a rule decided.
        rule: Option<String>,
        /// A short reason label (see `policy::Reason::label`).
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidFrame {
    #[error("not a Fedgate frame (bad magic)")]
    BadMagic,
    #[error("unsupported header version {0} (this edge speaks {VERSION})")]
    UnsupportedVersion(u8),
    #[error("unexpected frame kind {0}")]
    UnexpectedKind(u8),
    #[error("frame body of {0} bytes exceeds the limit of {MAX_BODY}")]
    TooLong(usize),
    #[error("frame body ends inside a field")]
    Truncated,
    #[error("frame body has {0} bytes after its last field")]
    TrailingBytes(usize),
    #[error("a text field is not UTF-8")]
    InvalidUtf8,
    #[error("address family {0} is neither 0, 4 nor 6")]
    InvalidAddressFamily(u8),
    #[error("answer code {0} is neither 0 nor 1")]
    InvalidAnswerCode(u8),
    #[error("a text field is longer than 255 bytes")]
    FieldTooLong,
}

/// Result of decoding: the value and how many bytes it used, or `None` when
/// the buffer does not yet hold a whole frame.
pub type Decoded<T> = Result<Option<(T, usize)>, InvalidFrame>;

fn frame(kind: u8, body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind);
    // Bodies are built by this module from bounded fields (< MAX_BODY).
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
}

fn put_str(body: &mut Vec<u8>, s: &str) -> Result<(), InvalidFrame> {
    let len = u8::try_from(s.len()).map_err(|_| InvalidFrame::FieldTooLong)?;
    body.push(len);
    body.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Split a frame of `kind` off the front of `buf`.
fn body(buf: &[u8], kind: u8) -> Result<Option<(&[u8], usize)>, InvalidFrame> {
    if buf.len() >= 2 && buf[..2] != MAGIC {
        return Err(InvalidFrame::BadMagic);
    }
    if buf.len() >= 3 && buf[2] != VERSION {
        return Err(InvalidFrame::UnsupportedVersion(buf[2]));
    }
    if buf.len() >= 4 && buf[3] != kind {
        return Err(InvalidFrame::UnexpectedKind(buf[3]));
    }
    if buf.len() < PREFIX {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([buf[4], buf[5]]));
    if len > MAX_BODY {
        return Err(InvalidFrame::TooLong(len));
    }
    Ok(buf.get(PREFIX..PREFIX + len).map(|b| (b, PREFIX + len)))
}

/// A cursor over a body; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], InvalidFrame> {
        if self.0.len() < n {
            return Err(InvalidFrame::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, InvalidFrame> {
        Ok(self.take(1)?[0])
    }

    fn str(&mut self) -> Result<&'a str, InvalidFrame> {
        let len = usize::from(self.u8()?);
        std::str::from_utf8(self.take(len)?).map_err(|_| InvalidFrame::InvalidUtf8)
    }

    fn finish(self) -> Result<(), InvalidFrame> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(InvalidFrame::TrailingBytes(self.0.len()))
        }
    }
}

impl FlowRequest {
    /// Append the encoded frame to `out`. Fails only if a text field is over
    /// 255 bytes (service ids and labels never are).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), InvalidFrame> {
        let mut body = Vec::with_capacity(64);
        body.extend_from_slice(&self.flow_id.to_be_bytes());
        body.extend_from_slice(&self.port.to_be_bytes());
        put_str(&mut body, &self.service)?;
        put_str(&mut body, self.src_network.as_deref().unwrap_or(""))?;
        match self.src_addr {
            None => body.push(0),
            Some(IpAddr::V4(a)) => {
                body.push(4);
                body.extend_from_slice(&a.octets());
            }
            Some(IpAddr::V6(a)) => {
                body.push(6);
                body.extend_from_slice(&a.octets());
            }
        }
        frame(KIND_REQUEST, &body, out);
        Ok(())
    }

    pub fn decode(buf: &[u8]) -> Decoded<Self> {
        let Some((body, used)) = body(buf, KIND_REQUEST)? else {
            return Ok(None);
        };
        let mut r = Reader(body);
        let flow_id = u128::from_be_bytes(
            r.take(16)?
                .try_into()
                .map_err(|_| InvalidFrame::Truncated)?,
        );
        let port = u16::from_be_bytes(r.take(2)?.try_into().map_err(|_| InvalidFrame::Truncated)?);
        let service = r.str()?.to_owned();
        let network = r.str()?;
        let src_network = (!network.is_empty()).then(|| network.to_owned());
        let src_addr = match r.u8()? {
            0 => None,
            4 => {
                let b: [u8; 4] = r.take(4)?.try_into().map_err(|_| InvalidFrame::Truncated)?;
                Some(IpAddr::V4(Ipv4Addr::from(b)))
            }
            6 => {
                let b: [u8; 16] = r
                    .take(16)?
                    .try_into()
                    .map_err(|_| InvalidFrame::Truncated)?;
                Some(IpAddr::V6(Ipv6Addr::from(b)))
            }
            other => return Err(InvalidFrame::InvalidAddressFamily(other)),
        };
        r.finish()?;
        Ok(Some((
            Self {
                flow_id,
                service,
                port,
                src_network,
                src_addr,
            },
            used,
        )))
    }
}

impl FlowAnswer {
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), InvalidFrame> {
        let mut body = Vec::with_capacity(32);
        match self {
            Self::Accepted => {
                body.push(0);
                put_str(&mut body, "")?;
                put_str(&mut body, "")?;
            }
            Self::Denied { rule, reason } => {
                body.push(1);
                put_str(&mut body, rule.as_deref().unwrap_or(""))?;
                put_str(&mut body, reason)?;
            }
        }
        frame(KIND_ANSWER, &body, out);
        Ok(())
    }

    pub fn decode(buf: &[u8]) -> Decoded<Self> {
        let Some((body, used)) = body(buf, KIND_ANSWER)? else {
            return Ok(None);
        };
        let mut r = Reader(body);
        let code = r.u8()?;
        let rule = r.str()?;
        let reason = r.str()?;
        r.finish()?;
        let answer = match code {
            0 => Self::Accepted,
            1 => Self::Denied {
                rule: (!rule.is_empty()).then(|| rule.to_owned()),
                reason: reason.to_owned(),
            },
            other => return Err(InvalidFrame::InvalidAnswerCode(other)),
        };
        Ok(Some((answer, used)))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn request() -> impl Strategy<Value = FlowRequest> {
        (
            any::<u128>(),
            "[a-z0-9-]{1,63}/[a-z0-9-]{1,63}",
            any::<u16>(),
            proptest::option::of("[a-z0-9-]{1,63}"),
            proptest::option::of(any::<IpAddr>()),
        )
            .prop_map(
                |(flow_id, service, port, src_network, src_addr)| FlowRequest {
                    flow_id,
                    service,
                    port,
                    src_network,
                    src_addr,
                },
            )
    }

    proptest! {
        #[test]
        fn requests_round_trip_and_need_every_byte(req in request(), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
            let mut buf = Vec::new();
            req.encode(&mut buf).unwrap();
            let len = buf.len();
            for cut in 0..len {
                prop_assert_eq!(FlowRequest::decode(&buf[..cut]), Ok(None));
            }
            buf.extend_from_slice(&tail);
            prop_assert_eq!(FlowRequest::decode(&buf), Ok(Some((req, len))));
        }

        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = FlowRequest::decode(&bytes);
            let _ = FlowAnswer::decode(&bytes);
        }
    }

    #[test]
    fn answers_round_trip() {
        for a in [
            FlowAnswer::Accepted,
            FlowAnswer::Denied {
                rule: Some("no-guest".into()),
                reason: "denied-by-rule".into(),
            },
            FlowAnswer::Denied {
                rule: None,
                reason: "no-policy".into(),
            },
        ] {
            let mut buf = Vec::new();
            a.encode(&mut buf).unwrap();
            assert_eq!(FlowAnswer::decode(&buf), Ok(Some((a, buf.len()))));
        }
    }

    #[test]
    fn bad_frames_are_refused_with_a_reason() {
        assert_eq!(
            FlowRequest::decode(b"GET / HTTP/1.1"),
            Err(InvalidFrame::BadMagic)
        );
        assert_eq!(
            FlowRequest::decode(b"FG\x02"),
            Err(InvalidFrame::UnsupportedVersion(2))
        );
        assert_eq!(
            FlowRequest::decode(b"FG\x01\x02"),
            Err(InvalidFrame::UnexpectedKind(2))
        );
        assert_eq!(
            FlowRequest::decode(b"FG\x01\x01\xff\xff"),
            Err(InvalidFrame::TooLong(65535))
        );
        assert_eq!(
            FlowRequest::decode(b"FG\x01\x01\x00\x01\x00"),
            Err(InvalidFrame::Truncated)
        );
        let mut buf = Vec::new();
        FlowAnswer::Accepted.encode(&mut buf).unwrap();
        buf[6] = 9;
        assert_eq!(
            FlowAnswer::decode(&buf),
            Err(InvalidFrame::InvalidAnswerCode(9))
        );
    }
}
