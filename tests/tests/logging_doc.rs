//! docs/LOGGING.md lists every log event the two binaries emit at info,
//! warn and error (the ones a SIEM's rules match on), and nothing else:
//! each `info!`, `warn!` and `error!` in proxy/src (fedgate-edge) and
//! control-plane/src (fedgate-control) has a row with its message and
//! level under its binary, and each row names an event in the code. A
//! message must be a fixed string, so that rules can match it.

use std::collections::BTreeSet;
use std::path::Path;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// (binary, level, message)
type Event = (&'static str, String, String);

/// The top-level arguments of a macro call whose text starts right after
/// its opening parenthesis, and where the call ends.
fn arguments(text: &str) -> (Vec<String>, usize) {
    let bytes = text.as_bytes();
    let (mut depth, mut args, mut current) = (1usize, Vec::new(), String::new());
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        match c {
            '"' => {
                // A string literal, escapes and all.
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                current.push_str(&text[start..=i.min(bytes.len() - 1)]);
            }
            '(' | '[' | '{' => {
                depth += 1;
                current.push(c);
            }
            ')' | ']' | '}' => {
                depth -= 1;
                if depth == 0 {
                    args.push(current.trim().to_owned());
                    return (args, i);
                }
                current.push(c);
            }
            ',' if depth == 1 => args.push(std::mem::take(&mut current).trim().to_owned()),
            _ => current.push(c),
        }
        i += 1;
    }
    panic!("unterminated macro call: {}", &text[..text.len().min(80)]);
}

fn events_in_code() -> BTreeSet<Event> {
    let mut out = BTreeSet::new();
    let mut problems = Vec::new();
    for (dir, binary) in [
        ("proxy/src", "fedgate-edge"),
        ("control-plane/src", "fedgate-control"),
    ] {
        for file in tests::rust_sources(&Path::new(ROOT).join(dir)) {
            let text = std::fs::read_to_string(&file).expect("source");
            for level in ["info", "warn", "error"] {
                let call = format!("{level}!(");
                let mut from = 0;
                while let Some(at) = text[from..].find(&call).map(|a| a + from) {
                    from = at + call.len();
                    let before = &text[..at];
                    let line_start = before.rfind('\n').map_or(0, |n| n + 1);
                    let line = &text[line_start..at];
                    // A word of its own (`tracing::info!`, `info!`), not in a
                    // comment.
                    if line.contains("//")
                        || before
                            .chars()
                            .next_back()
                            .is_some_and(|c| c.is_alphanumeric() || c == '_')
                    {
                        continue;
                    }
                    let (args, _) = arguments(&text[from..]);
                    let last = args.last().cloned().unwrap_or_default();
                    let where_ = format!(
                        "{}:{}",
                        file.strip_prefix(ROOT).unwrap_or(&file).display(),
                        before.matches('\n').count() + 1
                    );
                    let Some(message) = last.strip_prefix('"').and_then(|m| m.strip_suffix('"'))
                    else {
                        problems.push(format!("{where_}: {level}! without a fixed message"));
                        continue;
                    };
                    out.insert((binary, level.to_owned(), message.replace("\\\"", "\"")));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    out
}

fn events_in_doc() -> BTreeSet<Event> {
    let doc =
        std::fs::read_to_string(Path::new(ROOT).join("docs/LOGGING.md")).expect("docs/LOGGING.md");
    let mut out = BTreeSet::new();
    let mut binary = None;
    for line in doc.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            binary = match heading.trim() {
                "fedgate-edge" => Some("fedgate-edge"),
                "fedgate-control" => Some("fedgate-control"),
                _ => None,
            };
            continue;
        }
        let Some(binary) = binary else { continue };
        let cells: Vec<&str> = line.split(" | ").map(str::trim).collect();
        let Some(message) = cells
            .first()
            .and_then(|c| c.strip_prefix("| `"))
            .and_then(|c| c.strip_suffix('`'))
        else {
            continue;
        };
        let level = cells.get(1).copied().unwrap_or_default();
        out.insert((binary, level.to_owned(), message.to_owned()));
    }
    out
}

#[test]
fn every_log_event_is_in_the_catalogue_and_no_other() {
    let code = events_in_code();
    let doc = events_in_doc();
    assert!(
        code.len() > 80,
        "only {} events found in the code",
        code.len()
    );
    let missing: Vec<_> = code.difference(&doc).collect();
    let stale: Vec<_> = doc.difference(&code).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/LOGGING.md is out of step with the code:\n  events with no row (binary, level, message): {missing:#?}\n  rows with no event: {stale:#?}"
    );
}
