//! Golden tests of policy decisions: `testdata/policy/<case>/federation.yaml`
//! and `queries.txt` in, `expected.txt` out. Run with `UPDATE_GOLDEN=1` to
//! rewrite the expected files after a deliberate change, then review the diff.

use std::fs;
use std::net::IpAddr;
use std::path::Path;

use federation::validate::parse_time;
use federation::{Flow, PolicySet, Sources};

fn answer(policies: &PolicySet, line: &str) -> String {
    let mut from = None;
    let mut network = None;
    let mut addr = None;
    let mut to = None;
    let mut port = None;
    let mut at = None;
    for field in line.split_whitespace() {
        let (k, v) = field
            .split_once('=')
            .unwrap_or_else(|| panic!("bad field `{field}` in `{line}`"));
        match k {
            "from" => from = Some(v),
            "network" => network = Some(v),
            "addr" => addr = Some(v.parse::<IpAddr>().expect("addr")),
            "to" => to = Some(v),
            "port" => port = Some(v.parse::<u16>().expect("port")),
            "at" => at = Some(parse_time(v, false).expect("at")),
            _ => panic!("unknown key `{k}` in `{line}`"),
        }
    }
    let flow = Flow {
        src_org: from.expect("from"),
        src_network: network,
        src_addr: addr,
        service: to.expect("to"),
        port: port.expect("port"),
    };
    let d = policies.decide(&flow, at.expect("at"));
    let rules: Vec<&str> = d.rules.iter().map(|r| r.as_str()).collect();
    format!(
        "{line} => {} reason={} rules=[{}] agreement={}",
        if d.is_allowed() { "allow" } else { "deny" },
        d.reason.label(),
        rules.join(","),
        d.agreement.as_ref().map_or("-", |a| a.as_str()),
    )
}

#[test]
fn policy_golden_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/policy");
    let mut cases: Vec<_> = fs::read_dir(&root)
        .expect("testdata/policy")
        .map(|e| e.expect("entry").path())
        .collect();
    cases.sort();
    assert!(
        !cases.is_empty(),
        "no golden cases under {}",
        root.display()
    );
    let mut failures = Vec::new();
    for case in cases {
        let yaml = fs::read_to_string(case.join("federation.yaml")).expect("federation.yaml");
        let mut sources = Sources::new();
        sources.add(case.join("federation.yaml").display().to_string(), yaml);
        let now = parse_time("2026-01-15", false).unwrap();
        let loaded = federation::load(&sources, now);
        let fed = loaded
            .federation
            .unwrap_or_else(|| panic!("{}: {:#?}", case.display(), loaded.diagnostics));
        let policies = PolicySet::compile(&fed);
        let queries = fs::read_to_string(case.join("queries.txt")).expect("queries.txt");
        let got: String = queries
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| answer(&policies, l) + "\n")
            .collect();
        let expected_path = case.join("expected.txt");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            fs::write(&expected_path, &got).expect("write expected");
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != got {
            failures.push(format!(
                "{}:\n--- expected\n{expected}--- got\n{got}",
                case.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatch (UPDATE_GOLDEN=1 rewrites after review):\n{}",
        failures.join("\n")
    );
}
