//! Every metric the binaries export is documented where an ICT team looks
//! for it, and the documents name no metric that does not exist: the edge's
//! (proxy/src) in docs/edge.md, the control plane's (control-plane/src) in
//! docs/control-plane.md, each edge metric with its `# HELP` line.

use std::collections::BTreeSet;
use std::path::Path;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Every `fedgate_...` name in `text` (a histogram's `_bucket`, `_sum`
/// and `_count` series named by their family).
fn names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("fedgate_") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        rest = &tail[end..];
        // `fedgate_control` the crate, `proxy::fedgate_...` paths: not metrics.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
            || !name.ends_with(|c: char| c.is_ascii_lowercase())
            || name.matches('_').count() < 2
        {
            continue;
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.insert(family.to_owned());
    }
    out
}

fn source_names(dir: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for path in tests::rust_sources(&Path::new(ROOT).join(dir)) {
        let text = std::fs::read_to_string(&path).expect("source");
        // Metric names are string literals.
        for quoted in text.split('"').skip(1).step_by(2) {
            if quoted.starts_with("fedgate_") {
                out.extend(names(quoted));
            }
        }
    }
    out
}

fn doc(name: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join("docs").join(name)).expect("doc")
}

#[test]
fn every_metric_is_documented_and_every_documented_one_exists() {
    let edge = source_names("proxy/src");
    let control = source_names("control-plane/src");
    assert!(
        edge.len() > 20 && control.len() > 10,
        "{edge:?} {control:?}"
    );
    let all: BTreeSet<String> = edge.union(&control).cloned().collect();
    for (binary, exported, file) in [
        ("fedgate-edge", &edge, "edge.md"),
        ("fedgate-control", &control, "control-plane.md"),
    ] {
        let documented = names(&doc(file));
        let missing: Vec<_> = exported.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "{binary} exports {missing:?}, which docs/{file} does not name"
        );
        let unknown: Vec<_> = documented.difference(&all).collect();
        assert!(
            unknown.is_empty(),
            "docs/{file} names {unknown:?}, which no binary exports"
        );
    }
    // The edge's metrics each have their `# HELP` text.
    let help =
        std::fs::read_to_string(Path::new(ROOT).join("proxy/src/metrics.rs")).expect("metrics.rs");
    let table = help
        .split_once("const HELP")
        .and_then(|(_, rest)| rest.split_once("];"))
        .map(|(table, _)| table)
        .expect("the HELP table");
    let helped: BTreeSet<String> = table
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with("fedgate_"))
        .map(str::to_owned)
        .collect();
    let without: Vec<_> = edge.difference(&helped).collect();
    assert!(without.is_empty(), "no # HELP for {without:?}");
}
