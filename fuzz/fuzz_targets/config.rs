//! A federation document from untrusted bytes: parse, merge, validate,
//! compile, route and decide must never panic, whatever the input.
#![no_main]

use federation::{Flow, PolicySet, RoutingTable, Sources};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut sources = Sources::new();
    sources.add("fuzz.yaml", text);
    let now = jiff::Timestamp::from_second(1_780_000_000).expect("valid time");
    let loaded = federation::load(&sources, now);
    for d in &loaded.diagnostics {
        let _ = d.to_string();
    }
    if let Some(fed) = loaded.federation {
        let policies = PolicySet::compile(&fed);
        let routing = RoutingTable::new(&fed);
        for org in &fed.orgs {
            for s in &fed.services {
                let _ = routing.resolve(s.id.as_str());
                for port in &s.ports {
                    let flow = Flow {
                        src_org: org.id.as_str(),
                        src_network: None,
                        src_addr: None,
                        service: s.id.as_str(),
                        port: *port,
                    };
                    let _ = policies.decide(&flow, now);
                }
            }
        }
        for e in &fed.edges {
            if let Ok(snap) = federation::EdgeSnapshot::build(&loaded.spec, &fed, e.id.as_str(), 1)
            {
                let _ = snap.load(Some(e.id.as_str()), now);
            }
        }
    }
});
