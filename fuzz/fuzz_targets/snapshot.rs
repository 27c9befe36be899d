//! A snapshot from untrusted bytes (an edge's on-disk cache, or what the
//! control plane sends): reading and loading it must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(snap) = federation::EdgeSnapshot::from_json(data) {
        let now = jiff::Timestamp::from_second(1_780_000_000).expect("valid time");
        let _ = snap.load(None, now);
    }
});
