//! A SOCKS5 greeting and request from a visiting client, as the edge's
//! SOCKS listener reads them: decoding must never panic, a request uses no
//! more bytes than it was given, and it encodes back to the bytes it came
//! from (the reserved byte aside). A requested name, as the edge looks it
//! up (`normalise_dns_name`, also for SNI and CONNECT names), normalises to
//! a lower-case name of at most 253 bytes that normalises to itself.
#![no_main]

use federation::socks5::{Host, Request, decode_greeting};
use federation::validate::normalise_dns_name;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The greeting, then the request in what follows it, as the listener
    // reads a client that sends both at once.
    let rest = match decode_greeting(data) {
        Ok(Some(used)) => {
            assert!(used <= data.len());
            &data[used..]
        }
        _ => data,
    };
    if let Ok(Some((req, used))) = Request::decode(rest) {
        assert!(used <= rest.len());
        let mut again = Vec::new();
        req.encode(&mut again).expect("decoded fields fit");
        let mut given = rest[..used].to_vec();
        given[2] = 0;
        assert_eq!(again, given);
        assert_eq!(Request::decode(&again), Ok(Some((req.clone(), used))));
        if let Host::Name(name) = &req.host
            && let Some(n) = normalise_dns_name(name)
        {
            assert!(n.len() <= 253 && !n.bytes().any(|b| b.is_ascii_uppercase()));
            assert_eq!(normalise_dns_name(&n).as_deref(), Some(n.as_str()));
        }
    }
});
