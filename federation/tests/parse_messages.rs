//! Parse-level messages (FG001-FG005) for mistakes a reviewer made in copies
//! of the example region: each test parses a small document with one mistake
//! and asserts the code, the line and column, and the words of the message
//! and hint an admin acts on. None of them may show the parser's own terms
//! ("sequence start", "i64", "variant", Rust structures).

mod common;

use common::pos_of;
use federation::source::parse;
use federation::{Code, Diagnostic, FileId};

const FILE: FileId = FileId(0);

/// A small document, each item as the examples write it.
const DOC: &str = r#"networks:
  - org: alpha
    label: corporate
    purpose: corporate
    cidrs: [10.1.0.0/16]

services:
  - org: alpha
    name: ehr
    dns: [ehr.alpha.example]
    address: 10.1.0.10
    ports: [443]
    protocol: tls

policies:
  - id: beta-to-ehr
    description: Beta reaches the record.
    from:
      orgs: [beta]
    to:
      services: [alpha/ehr]
    ports: [443]
    action: allow
"#;

/// `DOC` with `from` replaced by `to` (which must occur once).
fn broken(from: &str, to: &str) -> String {
    assert_eq!(DOC.matches(from).count(), 1, "`{from}` must occur once");
    DOC.replace(from, to)
}

/// The diagnostic `text` fails to parse with.
fn error_of(text: &str) -> Diagnostic {
    parse(FILE, text).map_or_else(|d| *d, |_| panic!("parsed:\n{text}"))
}

/// Asserts the diagnostic's code, that it is at `(line, column)`, that the
/// message and hint contain the words given, and that no parser jargon shows.
fn assert_diag(d: &Diagnostic, code: Code, at: (u32, u32), message: &[&str], hint: &[&str]) {
    assert_eq!(d.code, code, "{d}");
    let pos = d.pos.unwrap_or_else(|| panic!("no position: {d}"));
    assert_eq!((pos.line, pos.column), at, "{d}");
    for words in message {
        assert!(d.message.contains(words), "message lacks `{words}`: {d}");
    }
    let h = d.hint.as_deref().unwrap_or_default();
    for words in hint {
        assert!(h.contains(words), "hint lacks `{words}`: {d}");
    }
    for jargon in [
        "sequence start",
        "mapping start",
        "i64",
        "variant",
        "budget",
        "{ ",
    ] {
        assert!(!d.message.contains(jargon), "jargon `{jargon}`: {d}");
    }
}

#[test]
fn the_document_parses() {
    parse(FILE, DOC).unwrap();
}

// 1. Well-formed YAML of the wrong shape is FG003, naming the key.

#[test]
fn scalar_ports_must_be_a_list() {
    let text = broken(
        "    ports: [443]\n    protocol",
        "    ports: 443\n    protocol",
    );
    let d = error_of(&text);
    assert_diag(
        &d,
        Code::InvalidValue,
        pos_of(&text, "443\n    protocol"),
        &["`ports` must be a list"],
        &["`ports: [443]`"],
    );
}

#[test]
fn scalar_cidrs_must_be_a_list() {
    let text = broken("cidrs: [10.1.0.0/16]", "cidrs: 10.1.0.0/16");
    let d = error_of(&text);
    assert_diag(
        &d,
        Code::InvalidValue,
        pos_of(&text, "10.1.0.0/16"),
        &["`cidrs` must be a list"],
        &["`cidrs: [10.1.0.0/16]`"],
    );
}

#[test]
fn empty_ports_must_be_a_list() {
    let text = broken("    ports: [443]\n    protocol", "    ports:\n    protocol");
    let d = error_of(&text);
    let (line, _) = pos_of(&text, "    ports:\n");
    assert_diag(
        &d,
        Code::InvalidValue,
        (line, 10),
        &["`ports` has no value", "must be a list"],
        &["`ports: [443]`"],
    );
}

#[test]
fn list_for_from_must_be_a_mapping() {
    let text = broken("    from:\n      orgs: [beta]", "    from: [hcht]");
    let d = error_of(&text);
    assert_diag(
        &d,
        Code::InvalidValue,
        pos_of(&text, "[hcht]"),
        &["`from` must be a mapping"],
        &["`from: {orgs: [hcht]}`"],
    );
}

#[test]
fn scalar_list_item_must_be_a_mapping() {
    let text = broken("networks:\n", "networks:\n  - corporate\n");
    let d = error_of(&text);
    assert_diag(
        &d,
        Code::InvalidValue,
        pos_of(&text, "corporate\n"),
        &["each item of `networks` must be a mapping"],
        &["docs/config.md"],
    );
}

#[test]
fn wrong_shape_without_a_key_found_still_says_what_is_wanted() {
    // An anchor between key and value hides the key from the search.
    let text = broken(
        "    ports: [443]\n    protocol",
        "    ports: &p 443\n    protocol",
    );
    let d = error_of(&text);
    assert_eq!(d.code, Code::InvalidValue, "{d}");
    assert_eq!(d.message, "a list is expected here", "{d}");
}

// 2. A tab is reported where it is.

#[test]
fn tab_in_indentation_is_reported_at_the_tab() {
    let text = broken(
        "    label: corporate\n    purpose",
        "    label: corporate\n\tpurpose",
    );
    let d = error_of(&text);
    assert_diag(
        &d,
        Code::Syntax,
        pos_of(&text, "\tpurpose"),
        &["tab character", "spaces only"],
        &["replace it with spaces"],
    );
}

#[test]
fn tab_after_spaces_is_reported_at_the_tab() {
    let text = broken("    address: 10.1.0.10", "  \taddress: 10.1.0.10");
    let d = error_of(&text);
    assert_diag(
        &d,
        Code::Syntax,
        pos_of(&text, "\taddress"),
        &["tab character"],
        &["spaces"],
    );
}

// 3. Budget breaches in words, at a real line.

#[test]
fn second_document_is_named_at_its_marker() {
    let text = format!("{DOC}---\nnetworks: []\n");
    let d = error_of(&text);
    let (line, column) = pos_of(&text, "---");
    assert_diag(
        &d,
        Code::TooComplex,
        (line, column),
        &[&format!(
            "a second YAML document (after `---`) at line {line}"
        )],
        &["file of its own"],
    );
}

#[test]
fn alias_bomb_names_the_anchor_and_its_uses() {
    let aliases = vec!["*b"; 120].join(", ");
    let text = broken("orgs: [beta]", &format!("orgs: [&b beta, {aliases}]"));
    let d = error_of(&text);
    assert_diag(
        &d,
        Code::TooComplex,
        pos_of(&text, "&b"),
        &["the anchor `&b` is used 120 times", "10 uses per anchor"],
        &["write the value out or use more anchors"],
    );
}

// 4. Values in words, not type names.

#[test]
fn word_for_a_service_port_is_not_a_port_number() {
    let text = broken(
        "    ports: [443]\n    protocol",
        "    ports: [https]\n    protocol",
    );
    let d = error_of(&text);
    assert_diag(
        &d,
        Code::InvalidValue,
        pos_of(&text, "https"),
        &["`https` is not a port number"],
        &["443"],
    );
}

#[test]
fn huge_port_is_too_large() {
    let big = "99999999999999999999";
    let text = broken(
        "    ports: [443]\n    protocol",
        &format!("    ports: [{big}]\n    protocol"),
    );
    let d = error_of(&text);
    assert_diag(
        &d,
        Code::InvalidValue,
        pos_of(&text, big),
        &[&format!("`{big}` is too large")],
        &["65535"],
    );
}

#[test]
fn word_for_a_policy_port_is_not_a_port_number() {
    let text = broken(
        "    ports: [443]\n    action",
        "    ports: [https]\n    action",
    );
    let d = error_of(&text);
    assert_diag(
        &d,
        Code::InvalidValue,
        pos_of(&text, "https"),
        &["`https` is not a port number or range"],
        &["443", "8000-8100"],
    );
}

#[test]
fn huge_policy_port_is_too_large() {
    let big = "99999999999999999999";
    let text = broken(
        "    ports: [443]\n    action",
        &format!("    ports: [{big}]\n    action"),
    );
    let d = error_of(&text);
    assert_diag(
        &d,
        Code::InvalidValue,
        pos_of(&text, big),
        &[&format!("`{big}` is too large")],
        &[],
    );
}

#[test]
fn unknown_action_lists_the_allowed_values() {
    let text = broken("action: allow", "action: permit");
    let d = error_of(&text);
    assert_diag(
        &d,
        Code::InvalidValue,
        pos_of(&text, "permit"),
        &["`permit` is not one of: allow, deny"],
        &[],
    );
}

#[test]
fn non_boolean_is_not_true_or_false() {
    let text = broken(
        "    protocol: tls\n",
        "    protocol: tls\n    dns_internal: maybe\n",
    );
    let d = error_of(&text);
    assert_diag(
        &d,
        Code::InvalidValue,
        pos_of(&text, "maybe"),
        &["`maybe` is not true or false"],
        &["true or false"],
    );
}

// 5. A missing field is reported at the object's first key, and a
// mis-indented line that ended the object early is named.

#[test]
fn missing_field_points_at_the_objects_first_key() {
    let text = broken("    purpose: corporate\n", "");
    let d = error_of(&text);
    assert_diag(
        &d,
        Code::MissingField,
        pos_of(&text, "org: alpha\n    label"),
        &["missing field `purpose`"],
        &["add the field"],
    );
}

#[test]
fn missing_field_names_the_mis_indented_line() {
    let text = broken(
        "    address: 10.1.0.10\n",
        "    address: 10.1.0.10\n   tags: [clinical]\n",
    );
    let d = error_of(&text);
    let (tags, _) = pos_of(&text, "   tags:");
    let (ports, _) = pos_of(&text, "    ports: [443]\n    protocol");
    assert_diag(
        &d,
        Code::MissingField,
        pos_of(&text, "org: alpha\n    name"),
        &["missing field `ports`"],
        &[
            &format!("`ports:` is written at line {ports}"),
            &format!("line {tags} is indented 3 spaces"),
            "use 4",
        ],
    );
}

#[test]
fn mis_indented_last_key_is_named_in_the_hint() {
    let text = broken(
        "    protocol: tls\n",
        "    protocol: tls\n   tags: [clinical]\n",
    );
    let d = error_of(&text);
    let (tags, _) = pos_of(&text, "   tags:");
    let (protocol, _) = pos_of(&text, "    protocol: tls");
    assert_eq!(d.code, Code::Syntax, "{d}");
    assert_eq!(d.pos.map(|p| p.line), Some(tags), "{d}");
    let hint = d.hint.as_deref().unwrap_or_default();
    assert!(
        hint.contains(&format!(
            "line {tags} is indented 3 spaces but the key on line {protocol} uses 4"
        )),
        "{d}"
    );
}
