//! Reading a federation from files and directories.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use federation::{Loaded, Sources};
use jiff::Timestamp;

use crate::render;

/// Every `*.yaml` / `*.yml` file named, or found (recursively, sorted) under a
/// directory named, added to one [`Sources`].
pub fn read_sources(paths: &[PathBuf]) -> anyhow::Result<Sources> {
    let mut files = Vec::new();
    for path in paths {
        collect(path, &mut files)?;
    }
    if files.is_empty() {
        bail!(
            "no YAML files found in {}; give a file or a directory holding *.yaml files",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut sources = Sources::new();
    for file in files {
        let bytes = fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        sources.add(file.display().to_string(), utf8(&file, bytes)?);
    }
    Ok(sources)
}

/// A file's text; where it is not UTF-8, the place of the first byte that
/// is not and what to do (a file saved by an editor in another encoding).
fn utf8(file: &Path, bytes: Vec<u8>) -> anyhow::Result<String> {
    let e = match String::from_utf8(bytes) {
        Ok(text) => return Ok(text),
        Err(e) => e,
    };
    let bytes = e.as_bytes();
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        bail!(
            "{}: the file is UTF-16 (what Windows Notepad saves as \"Unicode\"); save it as UTF-8",
            file.display()
        );
    }
    let at = e.utf8_error().valid_up_to();
    let before = String::from_utf8_lossy(&bytes[..at]);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    bail!(
        "{}:{line}:{column}: byte 0x{:02X} is not UTF-8: the file was saved in another encoding (Windows-1252 or Latin-1, say); save it as UTF-8",
        file.display(),
        bytes[at]
    )
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let meta = fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = fs::read_dir(path)
            .with_context(|| format!("cannot list {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            if entry.is_dir() || is_yaml(&entry) {
                collect(&entry, out)?;
            }
        }
    } else {
        out.push(path.to_owned());
    }
    Ok(())
}

/// `*.yaml` and `*.yml`, in any case (`KVH.YAML` from a Windows share).
fn is_yaml(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

/// Print the errors of `loaded` alone, with their places: they are why the
/// files cannot be used, and the warnings around them would hide them
/// (`fedctl check` shows both). The numbers of errors and of warnings.
pub fn print_errors(sources: &Sources, loaded: &Loaded) -> std::io::Result<(usize, usize)> {
    let errors: Vec<_> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .cloned()
        .collect();
    render::human(sources, &errors)?;
    Ok((errors.len(), loaded.diagnostics.len() - errors.len()))
}

/// Load files that must hold a valid federation; errors are printed and
/// turned into a failure that says how to see them all.
pub fn load_valid(paths: &[PathBuf], now: Timestamp) -> anyhow::Result<(Sources, Loaded)> {
    let sources = read_sources(paths)?;
    let loaded = federation::load(&sources, now);
    if loaded.has_errors() {
        let (errors, _) = print_errors(&sources, &loaded)?;
        bail!(
            "the federation has {errors} error(s); fix them first (`fedctl check {}` lists them)",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok((sources, loaded))
}
