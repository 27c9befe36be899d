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
        let text =
            fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
        sources.add(file.display().to_string(), text);
    }
    Ok(sources)
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

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Load files that must hold a valid federation; errors are printed and
/// turned into a failure that says how to see them all.
pub fn load_valid(paths: &[PathBuf], now: Timestamp) -> anyhow::Result<(Sources, Loaded)> {
    let sources = read_sources(paths)?;
    let loaded = federation::load(&sources, now);
    if loaded.has_errors() {
        let errors: Vec<_> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .cloned()
            .collect();
        render::human(&sources, &errors)?;
        bail!(
            "the federation has {} error(s); fix them first (`fedctl check {}` lists them)",
            errors.len(),
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok((sources, loaded))
}
