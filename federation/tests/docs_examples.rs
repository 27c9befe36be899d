//! Every YAML example in README.md and docs/config.md parses as a federation
//! document, so the documentation cannot drift from the schema unnoticed.

use std::path::Path;

use federation::FileId;
use federation::source::parse;

fn yaml_blocks(text: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```yaml") => current = Some((i + 2, String::new())),
            (Some(_), l) if l.starts_with("```") => blocks.extend(current.take()),
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn documented_yaml_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root");
    let mut checked = 0;
    for doc in ["README.md", "docs/config.md"] {
        let text = std::fs::read_to_string(root.join(doc)).expect(doc);
        for (line, block) in yaml_blocks(&text) {
            if let Err(d) = parse(FileId(0), &block) {
                panic!("{doc}: the YAML example starting at line {line} does not parse: {d}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 5, "found only {checked} YAML examples");
}
