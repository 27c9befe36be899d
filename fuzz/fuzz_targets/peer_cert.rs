//! A peer's certificate (DER) and its URI identity: parsing must never
//! panic, whatever the bytes.
#![no_main]

use federation::identity::{Identity, peer_cert};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = peer_cert(data, "test.fedgate.example");
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Identity::from_uri(text, "test.fedgate.example");
    }
});
