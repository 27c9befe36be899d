//! The overlay's stream header from a peer: decoding must never panic, and
//! what decodes must encode back to the same bytes.
#![no_main]

use federation::wire::{FlowAnswer, FlowRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((req, used))) = FlowRequest::decode(data) {
        let mut again = Vec::new();
        req.encode(&mut again).expect("decoded fields fit");
        assert_eq!(FlowRequest::decode(&again), Ok(Some((req, used))));
    }
    if let Ok(Some((answer, _))) = FlowAnswer::decode(data) {
        let mut again = Vec::new();
        answer.encode(&mut again).expect("decoded fields fit");
        assert_eq!(
            FlowAnswer::decode(&again).map(|d| d.map(|(a, _)| a)),
            Ok(Some(answer))
        );
    }
});
