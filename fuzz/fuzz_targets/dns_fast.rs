//! A DNS query from any client, as the edge's UDP fast path reads it
//! straight from the datagram (`proxy/src/dns/fast.rs`): it must never
//! panic, and where it answers, hickory must read the query as the fast
//! path did (one question, which the answer repeats), and the answer as a
//! response to it: same ID, at most 512 bytes, records of the asked type
//! only, or none and the zone's SOA. (The unit tests check the answers byte for byte against hickory's
//! own; this checks what any input does.)
#![no_main]

use std::sync::OnceLock;

use hickory_proto::op::{Message, MessageType, OpCode};
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::BinDecodable;
use libfuzzer_sys::fuzz_target;
use proxy::dns::fuzzing::FastPath;

static FAST: OnceLock<FastPath> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let fast = FAST.get_or_init(FastPath::new);
    for local in [false, true] {
        let Some(answer) = fast.answer(data, local) else {
            continue;
        };
        let query = Message::from_bytes(data).expect("a query the fast path answers reads");
        assert_eq!(query.metadata.message_type, MessageType::Query);
        assert_eq!(query.metadata.op_code, OpCode::Query);
        assert_eq!(query.queries.len(), 1);
        assert!(answer.len() <= 512);
        let response = Message::from_bytes(&answer).expect("the answer reads");
        assert_eq!(response.metadata.message_type, MessageType::Response);
        assert_eq!(response.metadata.id, query.metadata.id);
        assert_eq!(response.queries, query.queries);
        let asked = query.queries[0].query_type();
        assert!(response.answers.iter().all(|r| r.record_type() == asked));
        // None of that type (a TCP service's VIP has no IPv6 address, say):
        // the zone's SOA says so.
        if response.answers.is_empty() {
            assert!(
                response
                    .authorities
                    .iter()
                    .any(|r| r.record_type() == RecordType::SOA)
            );
        }
    }
});
