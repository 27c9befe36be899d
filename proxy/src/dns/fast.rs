//! The fast path for the commonest query: A or AAAA of an indexed name,
//! over UDP, answered from bytes encoded once per snapshot.
//!
//! [`FastIndex::build`] asks the hickory path ([`super::lookup`] and
//! hickory's message encoder) once for each indexed name and type, and keeps
//! the encoded answer to a plain EDNS query as a template. [`answer`] then
//! reads a query straight from the datagram (no allocation), and if it is a
//! query it can answer exactly as the hickory path would, copies the template
//! and patches what depends on the query: the ID, the RD and CD bits, the
//! OPT record's payload size (or no OPT at all).
//!
//! Anything else falls through to the hickory path, which decides: other
//! types and classes, names not spelled in lower case (the answer's owner
//! names would not be compressed the same way), NXDOMAIN, other sections
//! or EDNS options hickory checks, EDNS versions above 0, answers over 512
//! bytes (truncation), malformed datagrams. The unit tests in
//! `super::tests` check, case by case, that both paths send the same bytes.

use std::collections::HashMap;

use hickory_proto::rr::RecordType;

use super::Kind;

/// Header (12) .. question name; the name starts at offset 12.
const HEADER: usize = 12;
/// The OPT record the hickory path appends to an answer to an EDNS query:
/// root name, type, class (the payload size), TTL (extended rcode, version,
/// flags), empty RDATA.
const OPT_LEN: usize = 11;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
/// EDNS options hickory parses (and may reject): NSID, client subnet.
const CHECKED_OPTIONS: [u16; 2] = [3, 8];
/// The smallest buffer a client may have: a longer answer may need the TC
/// bit, which the hickory path sets.
const MIN_UDP: usize = 512;
/// The largest answer the fast path sends.
pub(super) const MAX_ANSWER: usize = MIN_UDP;
/// Advertised payload size bounds (see `super::MAX_UDP_PAYLOAD`).
const MIN_PAYLOAD: u16 = 512;

/// The fast path's answers for one snapshot.
#[derive(Default)]
pub(super) struct FastIndex {
    /// By the name in wire format, lower case.
    names: HashMap<Box<[u8]>, FastName>,
    max_payload: u16,
}

struct FastName {
    /// Answered only to this member's own networks.
    internal: bool,
    a: Option<Box<[u8]>>,
    aaaa: Option<Box<[u8]>>,
}

/// One fast answer: what to count. The bytes are in the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Answered {
    pub(super) kind: Kind,
}

impl FastIndex {
    /// `encode(name, qtype)` gives the hickory path's answer to an EDNS
    /// query (ID 0, no flags, payload `max_payload`) for `name` (wire format)
    /// and `qtype` as asked from this member's own networks, or `None`.
    pub(super) fn build<'n>(
        names: impl Iterator<Item = (Vec<u8>, bool)> + 'n,
        max_payload: u16,
        mut encode: impl FnMut(&[u8], RecordType) -> Option<Vec<u8>>,
    ) -> Self {
        let mut out = HashMap::new();
        for (wire, internal) in names {
            let mut template = |qtype| {
                encode(&wire, qtype)
                    .filter(|t| is_template(t, max_payload))
                    .map(Vec::into_boxed_slice)
            };
            let entry = FastName {
                internal,
                a: template(RecordType::A),
                aaaa: template(RecordType::AAAA),
            };
            out.insert(wire.into_boxed_slice(), entry);
        }
        Self {
            names: out,
            max_payload,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.names.len()
    }
}

/// Whether `t` has the shape [`answer`] patches: a response with one
/// question and, last, our OPT record with no options.
fn is_template(t: &[u8], max_payload: u16) -> bool {
    let Some(opt) = t.len().checked_sub(OPT_LEN) else {
        return false;
    };
    opt >= HEADER
        && u16_at(t, 4) == Some(1)
        && u16_at(t, 10) == Some(1)
        && t[opt] == 0
        && u16_at(t, opt + 1) == Some(TYPE_OPT)
        && u16_at(t, opt + 3) == Some(max_payload)
        && t[opt + 5..] == [0, 0, 0, 0, 0, 0]
        && t.len() <= MIN_UDP
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// A query the fast path may answer, read from a datagram.
struct Query<'a> {
    name: &'a [u8],
    qtype: RecordType,
    /// The client's EDNS payload size, when it sent an OPT record.
    edns: Option<u16>,
}

/// Read `packet` as a plain query: one question, class IN, type A or AAAA,
/// an uncompressed name, nothing else but an optional EDNS(0) OPT record
/// whose options hickory does not check. `None` for anything else.
fn parse(packet: &[u8]) -> Option<Query<'_>> {
    let header = packet.get(..HEADER)?;
    // QR = 0 (a query), opcode 0 (QUERY); one question and no records but
    // at most one additional.
    if header[2] & 0xF8 != 0
        || u16_at(header, 4)? != 1
        || u16_at(header, 6)? != 0
        || u16_at(header, 8)? != 0
    {
        return None;
    }
    let additionals = u16_at(header, 10)?;
    let mut at = HEADER;
    loop {
        let len = usize::from(*packet.get(at)?);
        if len & 0xC0 != 0 {
            return None; // a pointer, or an extended label type
        }
        at += 1 + len;
        if len == 0 {
            break;
        }
        if at - HEADER > 255 {
            return None;
        }
    }
    let name = &packet[HEADER..at];
    let qtype = match u16_at(packet, at)? {
        1 => RecordType::A,
        28 => RecordType::AAAA,
        _ => return None,
    };
    if u16_at(packet, at + 2)? != CLASS_IN {
        return None;
    }
    at += 4;
    let edns = match additionals {
        0 => None,
        1 => {
            // Root name, type OPT, class = payload, extended rcode 0,
            // version 0, flags (DO and zeros) as they are.
            if *packet.get(at)? != 0
                || u16_at(packet, at + 1)? != TYPE_OPT
                || *packet.get(at + 5)? != 0
                || *packet.get(at + 6)? != 0
            {
                return None;
            }
            let payload = u16_at(packet, at + 3)?;
            let rdlen = usize::from(u16_at(packet, at + 9)?);
            at += OPT_LEN;
            let end = at + rdlen;
            if end > packet.len() {
                return None;
            }
            while at < end {
                let code = u16_at(packet, at)?;
                let len = usize::from(u16_at(packet, at + 2)?);
                if CHECKED_OPTIONS.contains(&code) {
                    return None;
                }
                at += 4 + len;
            }
            if at != end {
                return None;
            }
            Some(payload)
        }
        _ => return None,
    };
    if at != packet.len() {
        return None;
    }
    Some(Query { name, qtype, edns })
}

/// Answer `packet` into `out` if the fast path can; `is_local` tells
/// whether the client is on this member's own networks (asked only for an
/// internal name). `None`: leave the query to the hickory path.
pub(super) fn answer(
    index: &FastIndex,
    packet: &[u8],
    is_local: impl FnOnce() -> bool,
    out: &mut Vec<u8>,
) -> Option<Answered> {
    let query = parse(packet)?;
    let entry = index.names.get(query.name)?;
    let kind = if entry.internal {
        if !is_local() {
            return None; // REFUSED, by the hickory path
        }
        Kind::Internal
    } else {
        Kind::Federation
    };
    let template = match query.qtype {
        RecordType::A => entry.a.as_deref()?,
        _ => entry.aaaa.as_deref()?,
    };
    out.clear();
    match query.edns {
        Some(payload) => {
            out.extend_from_slice(template);
            let opt = out.len() - OPT_LEN;
            let payload = payload.clamp(MIN_PAYLOAD, index.max_payload);
            out[opt + 3..opt + 5].copy_from_slice(&payload.to_be_bytes());
        }
        None => {
            // The same answer without the OPT record.
            out.extend_from_slice(&template[..template.len() - OPT_LEN]);
            out[10..12].copy_from_slice(&0u16.to_be_bytes());
        }
    }
    // ID; RD and CD as asked (the template has neither).
    out[..2].copy_from_slice(&packet[..2]);
    out[2] |= packet[2] & 0x01;
    out[3] |= packet[3] & 0x10;
    Some(Answered { kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[u8], qtype: u16, tail: &[u8], additionals: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0];
        q.extend_from_slice(&additionals.to_be_bytes());
        q.extend_from_slice(name);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&CLASS_IN.to_be_bytes());
        q.extend_from_slice(tail);
        q
    }

    const NAME: &[u8] = b"\x01a\x07example\x00";

    #[test]
    fn parses_plain_and_edns_queries() {
        let q = query(NAME, 1, &[], 0);
        let p = parse(&q).expect("plain");
        assert_eq!((p.name, p.qtype, p.edns), (NAME, RecordType::A, None));
        let opt = [0, 0, 41, 4, 0xd0, 0, 0, 0x80, 0, 0, 0];
        let q = query(NAME, 28, &opt, 1);
        let p = parse(&q).expect("edns");
        assert_eq!((p.qtype, p.edns), (RecordType::AAAA, Some(1232)));
        // A cookie option is carried over untouched.
        let cookie = [
            0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 12, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        assert!(parse(&query(NAME, 1, &cookie, 1)).is_some());
    }

    #[test]
    fn leaves_everything_else_to_hickory() {
        let opt = |version: u8, rdlen: u8, rest: &[u8]| {
            let mut o = vec![0, 0, 41, 4, 0xd0, 0, version, 0, 0, 0, rdlen];
            o.extend_from_slice(rest);
            o
        };
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("short", vec![0; 11]),
            ("MX", query(NAME, 15, &[], 0)),
            ("ANY", query(NAME, 255, &[], 0)),
            ("EDNS version 1", query(NAME, 1, &opt(1, 0, &[]), 1)),
            (
                "client subnet",
                query(NAME, 1, &opt(0, 4, &[0, 8, 0, 0]), 1),
            ),
            (
                "option overruns",
                query(NAME, 1, &opt(0, 4, &[0, 10, 0, 8]), 1),
            ),
            ("trailing bytes", query(NAME, 1, &[0], 0)),
            ("missing OPT", query(NAME, 1, &[], 1)),
            ("pointer", query(b"\x01a\xc0\x0c", 1, &[], 0)),
        ];
        for (what, q) in cases {
            assert!(parse(&q).is_none(), "{what}");
        }
        let mut response = query(NAME, 1, &[], 0);
        response[2] |= 0x80;
        assert!(parse(&response).is_none(), "a response");
        let mut notify = query(NAME, 1, &[], 0);
        notify[2] = 4 << 3;
        assert!(parse(&notify).is_none(), "NOTIFY");
        let mut two = query(NAME, 1, &[], 0);
        two[5] = 2;
        assert!(parse(&two).is_none(), "two questions");
        let mut chaos = query(NAME, 1, &[], 0);
        let n = chaos.len();
        chaos[n - 1] = 3;
        assert!(parse(&chaos).is_none(), "class CH");
    }
}
