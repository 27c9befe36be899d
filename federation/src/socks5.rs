//! SOCKS5 (RFC 1928) as the edge's SOCKS listener speaks it, sans-IO: the
//! client's greeting and its request, decoded from a buffer, and the
//! server's replies.
//!
//! ```text
//! greeting = version u8 (5) | count u8 | methods [u8; count]
//! request  = version u8 (5) | command u8 | reserved u8 | address | port u16 (big endian)
//! address  = 1 | IPv4 [u8; 4]  /  3 | length u8 | name [u8; length]  /  4 | IPv6 [u8; 16]
//! reply    = version u8 (5) | code u8 | 0 | 1 | 0.0.0.0 | port 0
//! ```
//!
//! The edge offers one method, no authentication (0): the source of a flow
//! is the client's address, and the policy decides on it. It serves one
//! command, CONNECT (1). The reserved byte is not checked (clients in the
//! field send other values). Decoding works on a buffer and says when it
//! needs more bytes ([`None`]) and how many it used, so a client that sends
//! its greeting, request and first bytes at once (optimistic data) loses
//! none of them; it never panics on any input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The protocol version, the first byte of every message.
pub const VERSION: u8 = 5;
/// The one method the edge accepts: no authentication.
pub const NO_AUTHENTICATION: u8 = 0;
/// The method byte that refuses every method the client offered.
pub const NO_ACCEPTABLE_METHOD: u8 = 0xff;
/// The one command the edge serves.
pub const CONNECT: u8 = 1;

const ATYP_IPV4: u8 = 1;
const ATYP_NAME: u8 = 3;
const ATYP_IPV6: u8 = 4;

/// The reply codes the edge sends (RFC 1928, section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reply {
    Succeeded = 0,
    /// The flow failed for another reason than policy: no edge of the
    /// service's organisation answered, limits, a timeout.
    GeneralFailure = 1,
    /// Policy refused the flow (at this edge or at the home edge).
    NotAllowed = 2,
    /// The name or address is no federation service reachable from here.
    HostUnreachable = 4,
    CommandNotSupported = 7,
    AddressTypeNotSupported = 8,
}

impl Reply {
    /// The reply's bytes; the bound address is all zeros (the edge does
    /// not say which address it connects from).
    pub fn encode(self) -> [u8; 10] {
        [VERSION, self as u8, 0, ATYP_IPV4, 0, 0, 0, 0, 0, 0]
    }
}

/// The host of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    /// A name, as sent (a client resolving nothing itself, `socks5h`).
    Name(String),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ip(ip) => ip.fmt(f),
            Self::Name(name) => f.write_str(name),
        }
    }
}

/// A client's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// [`CONNECT`], or a command the edge answers
    /// [`Reply::CommandNotSupported`].
    pub command: u8,
    pub host: Host,
    pub port: u16,
}

/// Why a greeting or request is refused, and what to answer before
/// closing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("not SOCKS5 (version {0})")]
    Version(u8),
    #[error("the client offers no method without authentication")]
    NoAcceptableMethod,
    #[error("bad request version {0}")]
    RequestVersion(u8),
    #[error("unsupported address type {0}")]
    AddressType(u8),
    #[error("the host name is not UTF-8")]
    Name,
}

impl Malformed {
    /// The bytes to send the client before closing, if any: a client that
    /// speaks another protocol gets nothing.
    pub fn answer(&self) -> Option<Vec<u8>> {
        match self {
            Self::Version(_) | Self::RequestVersion(_) => None,
            Self::NoAcceptableMethod => Some(vec![VERSION, NO_ACCEPTABLE_METHOD]),
            Self::AddressType(_) => Some(Reply::AddressTypeNotSupported.encode().to_vec()),
            Self::Name => Some(Reply::HostUnreachable.encode().to_vec()),
        }
    }
}

/// The client's greeting at the start of `buf`: the bytes it takes once it
/// is whole and offers no authentication, `None` while more are needed.
pub fn decode_greeting(buf: &[u8]) -> Result<Option<usize>, Malformed> {
    let Some(&version) = buf.first() else {
        return Ok(None);
    };
    if version != VERSION {
        return Err(Malformed::Version(version));
    }
    let Some(&count) = buf.get(1) else {
        return Ok(None);
    };
    let len = 2 + usize::from(count);
    let Some(methods) = buf.get(2..len) else {
        return Ok(None);
    };
    if methods.contains(&NO_AUTHENTICATION) {
        Ok(Some(len))
    } else {
        Err(Malformed::NoAcceptableMethod)
    }
}

/// A greeting offering `methods`.
pub fn encode_greeting(methods: &[u8], out: &mut Vec<u8>) -> Result<(), TooLong> {
    let count = u8::try_from(methods.len()).map_err(|_| TooLong)?;
    out.extend_from_slice(&[VERSION, count]);
    out.extend_from_slice(methods);
    Ok(())
}

/// A field too long for its length byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("longer than 255 bytes")]
pub struct TooLong;

impl Request {
    /// The request at the start of `buf` and the bytes it takes, `None`
    /// while more are needed.
    pub fn decode(buf: &[u8]) -> Result<Option<(Self, usize)>, Malformed> {
        let Some(&version) = buf.first() else {
            return Ok(None);
        };
        if version != VERSION {
            return Err(Malformed::RequestVersion(version));
        }
        let Some(&[_, command, _reserved, atyp]) = buf.get(..4) else {
            return Ok(None);
        };
        let (host, at) = match atyp {
            ATYP_IPV4 => {
                let Some(&a) = buf.get(4..8).and_then(|b| <&[u8; 4]>::try_from(b).ok()) else {
                    return Ok(None);
                };
                (Host::Ip(IpAddr::V4(Ipv4Addr::from(a))), 8)
            }
            ATYP_IPV6 => {
                let Some(&a) = buf.get(4..20).and_then(|b| <&[u8; 16]>::try_from(b).ok()) else {
                    return Ok(None);
                };
                (Host::Ip(IpAddr::V6(Ipv6Addr::from(a))), 20)
            }
            ATYP_NAME => {
                let Some(&len) = buf.get(4) else {
                    return Ok(None);
                };
                let end = 5 + usize::from(len);
                let Some(name) = buf.get(5..end) else {
                    return Ok(None);
                };
                let name = std::str::from_utf8(name).map_err(|_| Malformed::Name)?;
                (Host::Name(name.to_owned()), end)
            }
            other => return Err(Malformed::AddressType(other)),
        };
        let Some(&[hi, lo]) = buf.get(at..at + 2) else {
            return Ok(None);
        };
        let port = u16::from_be_bytes([hi, lo]);
        Ok(Some((
            Self {
                command,
                host,
                port,
            },
            at + 2,
        )))
    }

    /// The request's bytes, appended to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), TooLong> {
        out.extend_from_slice(&[VERSION, self.command, 0]);
        match &self.host {
            Host::Ip(IpAddr::V4(a)) => {
                out.push(ATYP_IPV4);
                out.extend_from_slice(&a.octets());
            }
            Host::Ip(IpAddr::V6(a)) => {
                out.push(ATYP_IPV6);
                out.extend_from_slice(&a.octets());
            }
            Host::Name(name) => {
                let len = u8::try_from(name.len()).map_err(|_| TooLong)?;
                out.extend_from_slice(&[ATYP_NAME, len]);
                out.extend_from_slice(name.as_bytes());
            }
        }
        out.extend_from_slice(&self.port.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(host: Host, port: u16) -> Vec<u8> {
        let mut out = Vec::new();
        Request {
            command: CONNECT,
            host,
            port,
        }
        .encode(&mut out)
        .expect("fits");
        out
    }

    #[test]
    fn greetings() {
        assert_eq!(decode_greeting(&[]), Ok(None));
        assert_eq!(decode_greeting(&[5]), Ok(None));
        assert_eq!(decode_greeting(&[5, 2, 0]), Ok(None));
        assert_eq!(decode_greeting(&[5, 2, 2, 0, 9]), Ok(Some(4)));
        assert_eq!(
            decode_greeting(&[5, 1, 2]),
            Err(Malformed::NoAcceptableMethod)
        );
        assert_eq!(decode_greeting(&[5, 0]), Err(Malformed::NoAcceptableMethod));
        assert_eq!(
            decode_greeting(b"GET / HTTP/1.1"),
            Err(Malformed::Version(b'G'))
        );
        assert_eq!(
            Malformed::NoAcceptableMethod.answer(),
            Some(vec![5, NO_ACCEPTABLE_METHOD])
        );
        assert_eq!(Malformed::Version(4).answer(), None);
    }

    #[test]
    fn requests_of_every_address_type() {
        let cases = [
            (Host::Ip("198.18.0.1".parse().expect("ip")), 2575, 10),
            (Host::Ip("2001:db8::1".parse().expect("ip")), 443, 22),
            (Host::Name("epr.dpft.example".into()), 8443, 23),
        ];
        for (host, port, len) in cases {
            let mut bytes = request(host.clone(), port);
            assert_eq!(bytes.len(), len, "{host}");
            bytes.extend_from_slice(b"first bytes");
            let expected = Request {
                command: CONNECT,
                host: host.clone(),
                port,
            };
            assert_eq!(Request::decode(&bytes), Ok(Some((expected, len))), "{host}");
            // Any shorter prefix asks for more.
            for cut in 0..len {
                assert_eq!(
                    Request::decode(&bytes[..cut]),
                    Ok(None),
                    "{host} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn refused_requests() {
        assert_eq!(
            Request::decode(&[4, 1, 0, 1, 1, 2, 3, 4, 0, 80]),
            Err(Malformed::RequestVersion(4))
        );
        assert_eq!(
            Request::decode(&[5, 1, 0, 2, 1, 2, 3, 4, 0, 80]),
            Err(Malformed::AddressType(2))
        );
        assert_eq!(
            Request::decode(&[5, 1, 0, 3, 2, 0xff, 0xfe, 0, 80]),
            Err(Malformed::Name)
        );
        assert_eq!(
            Malformed::AddressType(2).answer(),
            Some(Reply::AddressTypeNotSupported.encode().to_vec())
        );
        // Another command decodes; the edge answers it.
        let bind = [5, 2, 0, 1, 1, 2, 3, 4, 0, 80];
        assert!(matches!(
            Request::decode(&bind),
            Ok(Some((Request { command: 2, .. }, 10)))
        ));
        assert_eq!(Reply::NotAllowed.encode(), [5, 2, 0, 1, 0, 0, 0, 0, 0, 0]);
    }

    /// Every input, whole or cut anywhere: no panic, a decoded request uses
    /// no more than it was given, and it encodes back to the bytes it came
    /// from (but the reserved byte).
    #[test]
    fn random_inputs_decode_without_panic_and_round_trip() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200_000 {
            let len = (next() % 40) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Mostly well-formed heads, so the bodies are reached.
            if let Some(b) = bytes.first_mut() {
                *b = if next() % 8 == 0 { *b } else { VERSION };
            }
            if bytes.len() > 3 && next() % 4 != 0 {
                bytes[3] = [ATYP_IPV4, ATYP_NAME, ATYP_IPV6][(next() % 3) as usize];
            }
            if bytes.len() > 4 && bytes[3] == ATYP_NAME && next() % 2 == 0 {
                bytes[4] %= 20;
            }
            let _ = decode_greeting(&bytes);
            if let Ok(Some((req, used))) = Request::decode(&bytes) {
                assert!(used <= bytes.len());
                let mut again = Vec::new();
                req.encode(&mut again).expect("decoded fields fit");
                let mut given = bytes[..used].to_vec();
                given[2] = 0;
                assert_eq!(again, given);
            }
        }
    }
}
