//! Diagnostics for people (compiler-style, with codespan-reporting) and for
//! machines (JSON).

use std::io::{self, IsTerminal, Write};

use codespan_reporting::diagnostic::{Diagnostic as Report, Label};
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term::termcolor::{ColorChoice, StandardStream};
use codespan_reporting::term::{self, Config};
use federation::{Diagnostic, Pos, Severity, Sources};
use serde::Serialize;

/// Byte range of a position in `text`: from its line and (character) column
/// to the end of the value where the parser gave a length.
fn range(text: &str, starts: &[usize], pos: &Pos) -> std::ops::Range<usize> {
    let line_start = starts
        .get(pos.line.saturating_sub(1) as usize)
        .copied()
        .unwrap_or(text.len());
    let line = &text[line_start.min(text.len())..];
    let col = line
        .char_indices()
        .nth(pos.column.saturating_sub(1) as usize)
        .map_or(line.len(), |(i, _)| i);
    let start = (line_start + col).min(text.len());
    let len = match pos.offset {
        Some((o, l)) if o == start && l > 0 => l,
        _ => text[start..]
            .find(['\n', ',', ']', '}'])
            .filter(|n| *n > 0)
            .unwrap_or(1),
    };
    start..(start + len).min(text.len()).max(start)
}

/// Print diagnostics to stdout like a compiler, in colour on a terminal.
pub fn human(sources: &Sources, diags: &[Diagnostic]) -> io::Result<()> {
    let mut files = SimpleFiles::new();
    let ids: Vec<usize> = sources
        .iter()
        .map(|(_, f)| files.add(f.name.clone(), f.text.clone()))
        .collect();
    let choice = if io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        ColorChoice::Auto
    } else {
        ColorChoice::Never
    };
    let starts: Vec<Vec<usize>> = sources
        .iter()
        .map(|(_, f)| {
            std::iter::once(0)
                .chain(f.text.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        })
        .collect();
    let mut out = StandardStream::stdout(choice);
    let config = Config::default();
    for d in diags {
        let mut report = match d.severity {
            Severity::Error => Report::error(),
            Severity::Warning => Report::warning(),
        }
        .with_code(d.code.as_str())
        .with_message(&d.message);
        let mut labels = Vec::new();
        if let Some(pos) = &d.pos {
            let text = &sources.file(pos.file).text;
            labels.push(
                Label::primary(
                    ids[pos.file.0 as usize],
                    range(text, &starts[pos.file.0 as usize], pos),
                )
                .with_message(d.code.title()),
            );
        }
        for (pos, note) in &d.related {
            let text = &sources.file(pos.file).text;
            labels.push(
                Label::secondary(
                    ids[pos.file.0 as usize],
                    range(text, &starts[pos.file.0 as usize], pos),
                )
                .with_message(note.clone()),
            );
        }
        report = report.with_labels(labels);
        if let Some(hint) = &d.hint {
            report = report.with_notes(vec![format!("hint: {hint}")]);
        }
        if d.pos.is_none() {
            let names: Vec<&str> = sources.iter().map(|(_, f)| f.name.as_str()).collect();
            report = report.with_notes(vec![format!("in: {}", names.join(", "))]);
        }
        term::emit_to_write_style(&mut out, &config, &files, &report).map_err(io::Error::other)?;
    }
    out.flush()
}

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    code: &'a str,
    severity: Severity,
    file: Option<&'a str>,
    line: Option<u32>,
    column: Option<u32>,
    message: &'a str,
    hint: Option<&'a str>,
    related: Vec<JsonRelated<'a>>,
}

#[derive(Serialize)]
struct JsonRelated<'a> {
    file: &'a str,
    line: u32,
    column: u32,
    note: &'a str,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    errors: usize,
    warnings: usize,
    diagnostics: Vec<JsonDiagnostic<'a>>,
}

/// Diagnostics as one JSON object: `{errors, warnings, diagnostics: [...]}`.
pub fn json(sources: &Sources, diags: &[Diagnostic]) -> serde_json::Value {
    let report = JsonReport {
        errors: diags.iter().filter(|d| d.is_error()).count(),
        warnings: diags.iter().filter(|d| !d.is_error()).count(),
        diagnostics: diags
            .iter()
            .map(|d| JsonDiagnostic {
                code: d.code.as_str(),
                severity: d.severity,
                file: d.pos.map(|p| sources.file(p.file).name.as_str()),
                line: d.pos.map(|p| p.line),
                column: d.pos.map(|p| p.column),
                message: &d.message,
                hint: d.hint.as_deref(),
                related: d
                    .related
                    .iter()
                    .map(|(p, note)| JsonRelated {
                        file: sources.file(p.file).name.as_str(),
                        line: p.line,
                        column: p.column,
                        note,
                    })
                    .collect(),
            })
            .collect(),
    };
    serde_json::to_value(report).unwrap_or_default()
}
