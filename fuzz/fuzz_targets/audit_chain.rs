//! A hash-chained log (an edge's flow audit, the control plane's admin
//! audit) and its anchors, as `audit verify` reads them from a host that
//! may have been tampered with: checking must never panic, and a log that
//! verifies must verify again from its own first record.
#![no_main]

use federation::chain::{Anchor, AnchorCheck, Verifier, link};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    // Lines that read as anchors anchor the log; every line is a record.
    let (lines, tail) = match text.rfind('\n') {
        Some(end) => (&text[..end], &text[end + 1..]),
        None => ("", text),
    };
    let anchors: Vec<Anchor> = lines
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut check = AnchorCheck::new(anchors);
    let mut chain = if mode & 1 == 1 {
        Verifier::continuing()
    } else {
        Verifier::default()
    };
    let mut whole = true;
    for line in lines.lines() {
        if chain.handle_line(line).is_err() {
            whole = false;
            break;
        }
        if check.record(chain.records, &link(line)).is_err() {
            whole = false;
            break;
        }
    }
    let _ = check.finish();
    let _ = chain.cut_short(tail.as_bytes());
    let _ = chain.next_opening();
    if whole && let Some((seq, prev)) = chain.start.clone() {
        // Proved from its first record on, as a file after a rotation is.
        let mut again = Verifier::after(seq - 1, &prev);
        for line in lines.lines() {
            again.handle_line(line).expect("verifies again");
        }
        assert_eq!((again.records, &again.prev), (chain.records, &chain.prev));
    }
});
