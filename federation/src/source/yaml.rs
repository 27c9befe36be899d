//! YAML parser errors as diagnostics an admin can act on.
//!
//! serde-saphyr reports what its deserializer expected ("expected sequence
//! start", "invalid i64", a budget breach as a Rust structure). Here each
//! error is mapped to a code and told in terms of the config: the key at
//! fault (found in the source text near the error, since the parser does not
//! name it), the value written, and how to write it instead. Where the key or
//! value cannot be found, the message still says what kind of value is wanted.

use serde_saphyr::Error;
use serde_saphyr::budget::BudgetBreach;

use super::{MAX_ALIASES, MAX_DEPTH, MAX_EVENTS, MAX_NODES};
use crate::diag::{Code, Diagnostic, FileId, Pos};

/// How many uses of one anchor the parser allows (serde-saphyr's default
/// alias-to-anchor ratio, applied from 100 aliases on).
const USES_PER_ANCHOR: usize = 10;

/// How many lines below an object's end a misplaced key is looked for.
const MISINDENT_LOOKAHEAD: usize = 6;

pub(super) fn yaml_diagnostic(file: FileId, text: &str, err: &Error) -> Diagnostic {
    let pos = err.location().and_then(|loc| Pos::at(file, loc));
    let src = Text { file, text };
    let mapped = match innermost(err) {
        Error::Unexpected { expected, .. } => pos.and_then(|p| src.wrong_shape(p, expected)),
        Error::Budget { breach, .. } => Some(src.too_complex(pos, breach)),
        Error::MultipleDocuments { .. } => {
            Some(src.too_complex(pos, &BudgetBreach::Documents { documents: 2 }))
        }
        Error::InvalidScalar { ty, .. } => pos.map(|p| src.invalid_scalar(p, ty)),
        Error::SerdeUnknownVariant {
            variant, expected, ..
        } => Some(
            Diagnostic::new(
                Code::InvalidValue,
                pos,
                format!("`{variant}` is not one of: {}", expected.join(", ")),
            )
            .hint("write one of the values listed, in lower case as shown"),
        ),
        Error::SerdeInvalidValue { expected, .. } | Error::SerdeInvalidType { expected, .. }
            if expected.starts_with("a port number") =>
        {
            pos.map(|p| src.invalid_port_range(p))
        }
        Error::SerdeMissingField { field, .. } => pos.map(|p| src.missing_field(p, field)),
        _ => None,
    };
    if let Some(diag) = mapped {
        return diag;
    }
    let message = plain_message(err);
    if let Some(tab) = pos.and_then(|p| src.tab_near(p, message.contains("tab"))) {
        return Diagnostic::new(
            Code::Syntax,
            Some(tab),
            "tab character: YAML indents with spaces only",
        )
        .hint("replace it with spaces");
    }
    let (code, hint) = if message.contains("unknown field") {
        (
            Code::UnknownField,
            "remove the field or correct its spelling; docs/config.md lists every field",
        )
    } else if message.contains("missing field") {
        (
            Code::MissingField,
            "add the field; docs/config.md says what it holds",
        )
    } else if message.contains("budget") || message.contains("recursion limit") {
        (
            Code::TooComplex,
            "write the document out plainly: deep nesting and alias expansion are limited",
        )
    } else if message.contains("duplicate mapping key") {
        (
            Code::Syntax,
            "a key may appear once in each mapping; merge the two entries or remove one",
        )
    } else if is_value_error(&message) {
        (Code::InvalidValue, "check the value against docs/config.md")
    } else {
        if let Some(hint) = pos.and_then(|p| src.off_by_a_space(p)) {
            return Diagnostic::new(Code::Syntax, pos, message).hint(hint);
        }
        (
            Code::Syntax,
            "check indentation, quoting and that every `key: value` pair is on its own line",
        )
    };
    Diagnostic::new(code, pos, message).hint(hint)
}

/// The error itself, without the wrappers that add a snippet or the place
/// an alias was used.
fn innermost(mut err: &Error) -> &Error {
    loop {
        match err {
            Error::WithSnippet { error, .. } | Error::AliasError { error, .. } => err = error,
            other => return other,
        }
    }
}

/// Well-formed YAML whose value does not fit the schema (as opposed to YAML
/// that is not well-formed).
fn is_value_error(message: &str) -> bool {
    [
        "unknown variant",
        "invalid type",
        "invalid value",
        "invalid length",
    ]
    .iter()
    .any(|m| message.contains(m))
        || message.strip_prefix("invalid ").is_some_and(|rest| {
            ["u8", "u16", "u32", "u64", "i64", "i32", "f64", "bool"]
                .iter()
                .any(|t| rest.starts_with(t))
        })
}

/// The parser's message without its own snippet, position and advice meant
/// for programmers using the library.
fn plain_message(err: &Error) -> String {
    let text = err.without_snippet().to_string();
    let first = text.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // "line 5 column 5: unknown field ..." -> "unknown field ..."
    let mut msg = match first.strip_prefix("line ") {
        Some(rest) => rest.split_once(": ").map_or(first, |(_, m)| m),
        None => first,
    };
    // "... at line 61, column 39" repeats the position we report anyway.
    if let Some(i) = msg.rfind(" at line ") {
        msg = &msg[..i];
    }
    // "...; set DuplicateKeyPolicy in Options if acceptable" speaks to programmers.
    if let Some(i) = msg.find(" in Options") {
        msg = msg[..i]
            .rsplit_once([';', ',', '('])
            .map_or(msg, |(head, _)| head);
    }
    msg.trim_end_matches([' ', ',', ';', '.', '(']).to_owned()
}

/// What holds the value at an error position, as found in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    /// The value of `key:`.
    Key(String),
    /// An item of the list under `key:`.
    ItemOf(String),
}

/// A file's text, for finding what the parser does not say.
struct Text<'a> {
    file: FileId,
    text: &'a str,
}

impl Text<'_> {
    /// Line `n` (1-based), without its line break.
    fn line(&self, n: u32) -> Option<&str> {
        let n = usize::try_from(n).ok()?.checked_sub(1)?;
        self.text
            .split('\n')
            .nth(n)
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
    }

    fn line_count(&self) -> u32 {
        u32::try_from(self.text.split('\n').count()).unwrap_or(u32::MAX)
    }

    /// The position of 1-based `line` and character `column`, with the byte
    /// offset and length `len` for underlining.
    fn pos(&self, line: u32, column: u32, len: usize) -> Pos {
        let start = self
            .text
            .split_inclusive('\n')
            .take(line.saturating_sub(1) as usize)
            .map(str::len)
            .sum::<usize>();
        let within = self.line(line).map_or(0, |l| {
            l.chars()
                .take(column.saturating_sub(1) as usize)
                .map(char::len_utf8)
                .sum()
        });
        Pos {
            file: self.file,
            line,
            column,
            offset: Some((start + within, len)),
        }
    }

    /// The text of line `pos.line` before `pos.column`.
    fn before(&self, pos: Pos) -> Option<&str> {
        let line = self.line(pos.line)?;
        let end = line
            .char_indices()
            .nth(pos.column.saturating_sub(1) as usize)
            .map_or(line.len(), |(i, _)| i);
        Some(&line[..end])
    }

    /// The plain scalar written at `pos`, up to a flow indicator, comment
    /// or the end of the line; quotes removed.
    fn scalar_at(&self, pos: Pos) -> Option<String> {
        let line = self.line(pos.line)?;
        let rest = &line[self.before(pos)?.len()..];
        let end = rest.find([',', ']', '}', '#']).unwrap_or(rest.len());
        let value = rest[..end].trim().trim_matches(['"', '\'']);
        (!value.is_empty()).then(|| value.to_owned())
    }

    /// The value written at `pos`: a flow list or mapping on that line
    /// whole (`[a, b]`), else the scalar.
    fn written_at(&self, pos: Pos) -> Option<String> {
        let line = self.line(pos.line)?;
        let rest = &line[self.before(pos)?.len()..];
        if !rest.starts_with(['[', '{']) {
            return self.scalar_at(pos);
        }
        let mut depth = 0usize;
        for (i, c) in rest.char_indices() {
            match c {
                '[' | '{' => depth += 1,
                ']' | '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return Some(rest[..=i].to_owned());
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// The key whose value (or list item) starts at `pos`: the `key:` just
    /// before it on its line, or for a value on a line of its own, the
    /// nearest `key:` above it that is indented less.
    fn owner_at(&self, pos: Pos) -> Option<Owner> {
        let before = self.before(pos)?.trim_end();
        // For `key:` with nothing after it, the parser points at the colon.
        let at_colon = self.line(pos.line)?[self.before(pos)?.len()..].starts_with(':');
        if at_colon {
            return key_before(before).map(Owner::Key);
        }
        if let Some(head) = before.strip_suffix(':') {
            return key_before(head).map(Owner::Key);
        }
        // An item of a flow list: `key: [a, b, here`.
        if let Some(open) = before.rfind('[')
            && !before[open..].contains([']', '{', '}'])
        {
            let head = before[..open].trim_end();
            return head
                .strip_suffix(':')
                .and_then(key_before)
                .map(Owner::ItemOf);
        }
        let item = before.trim_start().strip_prefix('-').map(str::trim);
        if !(before.trim().is_empty() || item == Some("")) {
            return None;
        }
        let column = indent(self.line(pos.line)?);
        let key = (1..pos.line).rev().find_map(|n| {
            let line = self.line(n)?;
            let content = line.trim_start();
            if content.is_empty() || content.starts_with('#') || indent(line) >= column {
                return None;
            }
            Some(content.trim_end().strip_suffix(':').and_then(key_before))
        })??;
        Some(if item.is_some() {
            Owner::ItemOf(key)
        } else {
            Owner::Key(key)
        })
    }

    /// A list or mapping where the other was wanted, or a scalar where a
    /// list or mapping was wanted: well-formed YAML of the wrong kind.
    fn wrong_shape(&self, pos: Pos, expected: &str) -> Option<Diagnostic> {
        let kind = match expected {
            "sequence start" => "a list",
            "mapping start" => "a mapping",
            "string scalar" | "scalar" => "a single value",
            _ => return None,
        };
        let written = self.written_at(pos).filter(|w| !w.starts_with(':'));
        let written = written.as_deref();
        let (message, hint) = match self.owner_at(pos) {
            Some(Owner::Key(key)) if written.is_none() => (
                format!("`{key}` has no value: it must be {kind}"),
                example(&key, kind, written),
            ),
            Some(Owner::Key(key)) => (
                format!("`{key}` must be {kind}"),
                example(&key, kind, written),
            ),
            Some(Owner::ItemOf(key)) => (
                format!("each item of `{key}` must be {kind}"),
                "docs/config.md shows what each item holds".to_owned(),
            ),
            None => (
                format!("{kind} is expected here"),
                "docs/config.md shows what this field holds".to_owned(),
            ),
        };
        Some(Diagnostic::new(Code::InvalidValue, Some(pos), message).hint(hint))
    }

    /// A scalar that does not parse as the type wanted (`invalid i64`).
    fn invalid_scalar(&self, pos: Pos, ty: &str) -> Diagnostic {
        let value = self.scalar_at(pos);
        let shown = value.as_deref().unwrap_or("the value");
        let (message, hint) = if ty.starts_with(['i', 'u']) && ty[1..].parse::<u8>().is_ok() {
            let numeric = value.as_deref().is_some_and(is_whole_number);
            let is_port = matches!(
                self.owner_at(pos),
                Some(Owner::ItemOf(ref k) | Owner::Key(ref k)) if k == "ports"
            );
            if numeric && value.as_deref().is_some_and(|v| v.starts_with('-')) {
                (
                    format!("`{shown}` is too small"),
                    "write a smaller negative number",
                )
            } else if numeric {
                let hint = if is_port {
                    "a port is at most 65535"
                } else {
                    "write a smaller number"
                };
                (format!("`{shown}` is too large"), hint)
            } else if is_port {
                (
                    format!("`{shown}` is not a port number"),
                    "write the number, e.g. 443",
                )
            } else {
                (
                    format!("`{shown}` is not a whole number"),
                    "write digits only, without quotes or units",
                )
            }
        } else if ty == "bool" || ty == "boolean" {
            (
                format!("`{shown}` is not true or false"),
                "write true or false",
            )
        } else if ty.starts_with('f') {
            (format!("`{shown}` is not a number"), "write a number")
        } else {
            (
                format!("`{shown}` is not a valid {ty}"),
                "check the value against docs/config.md",
            )
        };
        Diagnostic::new(Code::InvalidValue, Some(pos), message).hint(hint)
    }

    /// A policy's port or port range that does not parse.
    fn invalid_port_range(&self, pos: Pos) -> Diagnostic {
        let value = self.scalar_at(pos);
        let shown = value.as_deref().unwrap_or("the value");
        let (message, hint) = if value.as_deref().is_some_and(is_whole_number) {
            (format!("`{shown}` is too large"), "a port is at most 65535")
        } else {
            (
                format!("`{shown}` is not a port number or range"),
                "write the number, e.g. 443, or a range such as 8000-8100",
            )
        };
        Diagnostic::new(Code::InvalidValue, Some(pos), message).hint(hint)
    }

    /// A budget breach in words, at the place that caused it.
    fn too_complex(&self, pos: Option<Pos>, breach: &BudgetBreach) -> Diagnostic {
        let plain = "write the document out plainly";
        let (pos, message, hint) = match breach {
            BudgetBreach::Documents { .. } => match self.second_document() {
                Some(line) => (
                    Some(self.pos(line, 1, 3)),
                    format!("a second YAML document (after `---`) at line {line}"),
                    "put it in a file of its own".to_owned(),
                ),
                None => (
                    pos,
                    "a second YAML document (after `---`)".to_owned(),
                    "put it in a file of its own".to_owned(),
                ),
            },
            BudgetBreach::AliasAnchorRatio { aliases, anchors } => {
                let anchor = self.most_used_anchor();
                let message = match &anchor {
                    Some((name, _, uses)) if *anchors == 1 => format!(
                        "the anchor `&{name}` is used {uses} times (at most about \
                         {USES_PER_ANCHOR} uses per anchor)"
                    ),
                    _ => format!(
                        "{aliases} aliases (`*name`) for {anchors} anchor(s) (`&name`): at \
                         most about {USES_PER_ANCHOR} uses per anchor"
                    ),
                };
                (
                    anchor.map(|(_, at, _)| at).or_else(|| self.real_line(pos)),
                    message,
                    "write the value out or use more anchors".to_owned(),
                )
            }
            BudgetBreach::Aliases { .. } => (
                self.real_line(pos),
                format!("more than {MAX_ALIASES} aliases (`*name`)"),
                format!("{plain}, without mass aliasing"),
            ),
            BudgetBreach::Anchors { anchors } => (
                self.real_line(pos),
                format!("too many anchors (`&name`): {anchors}"),
                format!("{plain}, with fewer anchors"),
            ),
            BudgetBreach::Depth { .. } => (
                self.real_line(pos),
                format!("lists and mappings nested more than {MAX_DEPTH} deep"),
                format!("{plain}: no federation item nests that deep"),
            ),
            BudgetBreach::Events { .. } => (
                self.real_line(pos),
                format!("the file is too large (over {MAX_EVENTS} parser events)"),
                "split the federation into more files".to_owned(),
            ),
            BudgetBreach::Nodes { .. } => (
                self.real_line(pos),
                format!("the file is too large (over {MAX_NODES} values)"),
                "split the federation into more files".to_owned(),
            ),
            BudgetBreach::ScalarBytes { .. } | BudgetBreach::InputBytes { .. } => (
                self.real_line(pos),
                "the file is too large".to_owned(),
                "split the federation into more files".to_owned(),
            ),
            BudgetBreach::MergeKeys { merge_keys } => (
                self.real_line(pos),
                format!("too many merge keys (`<<`): {merge_keys}"),
                format!("{plain}, without merge keys"),
            ),
            BudgetBreach::RecordedAnchorEvents { .. }
            | BudgetBreach::RecordedAnchorBytes { .. } => (
                self.real_line(pos),
                "the values under anchors (`&name`) are too large to repeat".to_owned(),
                format!("{plain}, without anchoring large values"),
            ),
            BudgetBreach::SequenceUnbalanced => (
                self.real_line(pos),
                "a list or mapping is closed that was never opened".to_owned(),
                "check the `]` and `}` brackets".to_owned(),
            ),
            // Includes and properties are not enabled, so their budgets
            // cannot be breached; any later variant is told generically.
            _ => (
                self.real_line(pos),
                "the document is over the parser's limits".to_owned(),
                format!("{plain}: deep nesting and alias expansion are limited"),
            ),
        };
        Diagnostic::new(Code::TooComplex, pos, message).hint(hint)
    }

    /// The line of the `---` that starts a second document: a `---` after
    /// some content (a first `---` before any content starts the first).
    fn second_document(&self) -> Option<u32> {
        let mut content = false;
        for (n, line) in (1..).zip(self.text.split('\n')) {
            let line = line.trim_end();
            let marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
            if marker && content {
                return Some(n);
            }
            let body = line.trim_start();
            if !marker && !body.is_empty() && !body.starts_with('#') {
                content = true;
            }
        }
        None
    }

    /// The anchor with the most aliases: its name, where it is defined and
    /// how many times it is used.
    fn most_used_anchor(&self) -> Option<(String, Pos, usize)> {
        let name_at = |s: &str| -> String {
            s.chars()
                .take_while(|c| !c.is_whitespace() && !matches!(c, ',' | '[' | ']' | '{' | '}'))
                .collect()
        };
        // Every alias's uses, counted in one pass over the text (a count
        // per anchor, each a pass, would be quadratic in a file of many).
        let mut uses_of: std::collections::HashMap<String, usize> =
            std::collections::HashMap::new();
        for (j, _) in self.text.match_indices('*') {
            let name = name_at(&self.text[j + 1..]);
            if !name.is_empty() {
                *uses_of.entry(name).or_default() += 1;
            }
        }
        let mut best: Option<(String, Pos, usize)> = None;
        for (n, line) in (1..).zip(self.text.split('\n')) {
            for (i, _) in line.match_indices('&') {
                let name = name_at(&line[i + 1..]);
                let preceded = line[..i]
                    .chars()
                    .next_back()
                    .is_none_or(|c| c.is_whitespace() || matches!(c, '[' | '{' | ','));
                if name.is_empty() || !preceded {
                    continue;
                }
                let uses = uses_of.get(&name).copied().unwrap_or(0);
                if best.as_ref().is_none_or(|(_, _, most)| uses > *most) {
                    let column = u32::try_from(line[..i].chars().count() + 1).unwrap_or(u32::MAX);
                    best = Some((name.clone(), self.pos(n, column, name.len() + 1), uses));
                }
            }
        }
        best.filter(|(_, _, uses)| *uses > 0)
    }

    /// `pos`, or if it is past the last line with content (the parser
    /// reports some breaches at the end of input), that line.
    fn real_line(&self, pos: Option<Pos>) -> Option<Pos> {
        let pos = pos?;
        let blank = |n: u32| self.line(n).is_none_or(|l| l.trim().is_empty());
        if !blank(pos.line) {
            return Some(pos);
        }
        let last = (1..=pos.line.min(self.line_count()))
            .rev()
            .find(|&n| !blank(n))?;
        let line = self.line(last)?;
        let column = u32::try_from(indent(line) + 1).unwrap_or(1);
        Some(self.pos(last, column, line.trim().len()))
    }

    /// A tab near a syntax error: on its line or the next (or, when the
    /// parser's message speaks of a tab, the line before). Only tabs in the
    /// indentation count, unless the parser named a tab.
    fn tab_near(&self, pos: Pos, named: bool) -> Option<Pos> {
        let mut lines = vec![pos.line, pos.line + 1];
        if named {
            lines.push(pos.line.saturating_sub(1));
        }
        lines.into_iter().find_map(|n| {
            let line = self.line(n)?;
            let (i, _) = line.char_indices().find(|&(_, c)| c == '\t')?;
            let leading = line[..i].trim_start_matches([' ', '-']).is_empty();
            (named || leading).then(|| {
                let column = u32::try_from(line[..i].chars().count() + 1).unwrap_or(u32::MAX);
                self.pos(n, column, 1)
            })
        })
    }

    /// A syntax error at a `key:` line indented one or two spaces off the
    /// key on the line above: say so.
    fn off_by_a_space(&self, pos: Pos) -> Option<String> {
        let line = self.line(pos.line)?;
        let width = indent(line);
        let body = line.trim_start();
        if width == 0 || body.starts_with(['-', '#']) || !body.contains(':') {
            return None;
        }
        let above = (1..pos.line).rev().find_map(|n| {
            let l = self.line(n)?;
            let b = l.trim_start();
            (!b.is_empty() && !b.starts_with('#')).then_some((n, l))
        })?;
        let (n, text) = above;
        let body_above = text.trim_start();
        // The key's column, after any `- ` that opens a list item.
        let key_above = text.len() - body_above.trim_start_matches(['-', ' ']).len();
        let is_key = body_above.trim_start_matches(['-', ' ']).contains(':');
        if !is_key || key_above == width || key_above.abs_diff(width) > 2 {
            return None;
        }
        Some(format!(
            "line {} is indented {width} space{s} but the key on line {n} uses {key_above}: \
             indent it by {key_above} spaces if it belongs with that key",
            pos.line,
            s = if width == 1 { "" } else { "s" },
        ))
    }

    /// A required field left out. The parser reports the object's last key;
    /// point at its first, and if the field is written just below at another
    /// indentation, say which line broke the object off.
    fn missing_field(&self, pos: Pos, field: &str) -> Diagnostic {
        let message = format!("missing field `{field}`");
        let mut hint = "add the field; docs/config.md says what it holds".to_owned();
        let key_line = self
            .before(pos)
            .is_some_and(|b| b.trim_start().trim_start_matches('-').trim().is_empty());
        if !key_line {
            return Diagnostic::new(Code::MissingField, Some(pos), message).hint(hint);
        }
        let column = pos.column.saturating_sub(1) as usize;
        let start = self.object_start(pos.line, column).unwrap_or(pos);
        if let Some((found, off)) = self.misindented(pos.line, column, field) {
            let width = self.line(off).map_or(0, indent);
            hint = format!(
                "`{field}:` is written at line {found}, but line {off} is indented {width} \
                 space{s} where the keys above use {column}, which ends the object before it: \
                 indent line {off} by {column} spaces",
                s = if width == 1 { "" } else { "s" },
            );
        }
        Diagnostic::new(Code::MissingField, Some(start), message).hint(hint)
    }

    /// The first key of the block mapping whose key on `line` starts at
    /// `column` (0-based): up through its siblings to the `- ` that opens a
    /// list item, or to the line above indented less.
    fn object_start(&self, line: u32, column: usize) -> Option<Pos> {
        let mut first = line;
        let opens_item = self.line(line)?.trim_start().starts_with('-');
        for n in (1..line).rev().take_while(|_| !opens_item) {
            let text = self.line(n)?;
            let body = text.trim_start();
            if body.is_empty() || body.starts_with('#') {
                continue;
            }
            let width = indent(text);
            if width > column {
                continue;
            }
            if width == column {
                first = n;
                continue;
            }
            // `  - org: x`: the item's first key, at the siblings' column.
            if let Some(rest) = body.strip_prefix('-')
                && text.len() - rest.trim_start().len() == column
                && !rest.trim().is_empty()
            {
                first = n;
            }
            break;
        }
        let width = u32::try_from(column + 1).unwrap_or(u32::MAX);
        let key_len = self
            .line(first)
            .map_or(0, |l| l[column.min(l.len())..].find(':').unwrap_or(0));
        Some(self.pos(first, width, key_len))
    }

    /// `field:` within a few lines after `line`, with a line before it (or
    /// itself) at another indentation than `column`: the line that ended the
    /// object early.
    fn misindented(&self, line: u32, column: usize, field: &str) -> Option<(u32, u32)> {
        let mut off = None;
        for n in line + 1..=line + MISINDENT_LOOKAHEAD as u32 {
            let text = self.line(n)?;
            let body = text.trim_start();
            if body.is_empty() || body.starts_with('#') {
                continue;
            }
            if body.starts_with('-') {
                return None;
            }
            let width = indent(text);
            if off.is_none() && width != column {
                off = Some(n);
            }
            let is_field = body
                .strip_prefix(field)
                .is_some_and(|r| r.trim_start().starts_with(':'));
            if is_field {
                return off.map(|o| (n, o));
            }
            if width == 0 {
                // Another section.
                return None;
            }
        }
        None
    }
}

/// Digits, with an optional sign.
fn is_whole_number(v: &str) -> bool {
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Spaces before a line's content.
fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// The key that ends `head` (text up to a `:`): `    ports` -> `ports`,
/// `  - {org: alpha, ports` -> `ports`.
fn key_before(head: &str) -> Option<String> {
    let key: String = head
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '-'))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let key = key.trim_start_matches('-');
    (!key.is_empty()).then(|| key.to_owned())
}

/// How to write `key` as `kind`, using the value written when there is one.
fn example(key: &str, kind: &str, written: Option<&str>) -> String {
    match kind {
        "a list" => {
            let item = written.unwrap_or(match key {
                "ports" => "443",
                "cidrs" => "10.1.0.0/16",
                _ => "...",
            });
            format!("write `{key}: [{item}]`, or one `- item` per line below it")
        }
        "a mapping" => {
            let inner = match key {
                "from" => Some("orgs"),
                "to" => Some("services"),
                _ => None,
            };
            match (inner, written) {
                (Some(inner), Some(v)) if v.starts_with('[') => {
                    format!("write `{key}: {{{inner}: {v}}}`")
                }
                (Some(inner), _) => format!("write `{key}: {{{inner}: [...]}}`"),
                _ => format!(
                    "write its fields as `name: value` pairs, one per line indented below \
                     `{key}:`, or `{key}: {{name: value}}`"
                ),
            }
        }
        _ => format!("write one value after `{key}:`, not a list or mapping"),
    }
}
