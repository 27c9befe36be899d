//! Every diagnostic code has a broken example in `configs/examples/broken/`,
//! and `fedctl check` reports exactly what the example's first line says.
//!
//! Each example starts with `# expect: FGnnn at LINE:COLUMN` (or `at -` for a
//! diagnostic without a position). A code that can never fire alone lists its
//! companions on `# also: FGnnn at LINE:COLUMN` lines right after it (FG113
//! always comes with FG112); the output must then hold exactly those.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The instant every example is checked at; expiry examples are dated
/// relative to it.
const AT: &str = "2026-06-01T00:00:00Z";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("control-plane sits inside the workspace")
        .to_owned()
}

fn broken_dir() -> PathBuf {
    repo_root().join("configs/examples/broken")
}

/// Every code in `federation/src/diag.rs`'s `codes!` table, with whether it
/// is an error, read from the source so that a new code needs an example.
fn codes_table() -> Vec<(String, bool)> {
    let path = repo_root().join("federation/src/diag.rs");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut out = Vec::new();
    for line in text.lines() {
        // `Syntax = "FG001", Error, "YAML syntax error";`
        let Some(start) = line.find("\"FG") else {
            continue;
        };
        let rest = &line[start + 1..];
        let Some(end) = rest.find('"') else { continue };
        let code = &rest[..end];
        if code.len() != 5 || !code[2..].bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let after = rest[end + 1..].trim_start_matches([',', ' ']);
        let error = if after.starts_with("Error") {
            true
        } else if after.starts_with("Warning") {
            false
        } else {
            panic!(
                "diag.rs: cannot read the severity of {code} in `{}`",
                line.trim()
            );
        };
        out.push((code.to_owned(), error));
    }
    assert!(
        !out.is_empty(),
        "found no \"FGnnn\" codes in {}",
        path.display()
    );
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    code: String,
    /// `None` for a diagnostic without a position.
    at: Option<(u64, u64)>,
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.at {
            Some((l, c)) => write!(f, "{} at {l}:{c}", self.code),
            None => write!(f, "{} at -", self.code),
        }
    }
}

fn parse_expectation(file: &Path, line: &str, prefix: &str) -> Expected {
    let bad = || -> ! {
        panic!(
            "{}: expected `{prefix} FGnnn at LINE:COLUMN` (or `at -`), found `{line}`",
            file.display()
        )
    };
    let rest = line.strip_prefix(prefix).unwrap_or_else(|| bad()).trim();
    let Some((code, at)) = rest.split_once(" at ") else {
        bad()
    };
    let at = match at.trim() {
        "-" => None,
        lc => {
            let Some((l, c)) = lc.split_once(':') else {
                bad()
            };
            Some((
                l.parse().unwrap_or_else(|_| bad()),
                c.parse().unwrap_or_else(|_| bad()),
            ))
        }
    };
    Expected {
        code: code.trim().to_owned(),
        at,
    }
}

/// The primary expectation (first line) and any companions (`# also:`).
fn expectations(file: &Path) -> (Expected, Vec<Expected>) {
    let text =
        fs::read_to_string(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let primary = parse_expectation(file, first, "# expect:");
    let also = lines
        .take_while(|l| l.starts_with("# also:"))
        .map(|l| parse_expectation(file, l, "# also:"))
        .collect();
    (primary, also)
}

fn examples() -> Vec<PathBuf> {
    let dir = broken_dir();
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.yaml files in {}", dir.display());
    files
}

fn seen(diag: &Value) -> String {
    let at = match (diag["line"].as_u64(), diag["column"].as_u64()) {
        (Some(l), Some(c)) => format!("{l}:{c}"),
        _ => "-".to_owned(),
    };
    format!(
        "{} at {at} ({}): {}",
        diag["code"].as_str().unwrap_or("?"),
        diag["severity"].as_str().unwrap_or("?"),
        diag["message"].as_str().unwrap_or("?")
    )
}

/// Check one example; `Err` says what was wrong and what was seen.
fn check_example(file: &Path, severities: &[(String, bool)]) -> Result<(), String> {
    let (primary, also) = expectations(file);
    let output = Command::new(env!("CARGO_BIN_EXE_fedctl"))
        .args(["check", "-o", "json", "--at", AT])
        .arg(file)
        .output()
        .map_err(|e| format!("cannot run fedctl: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value = serde_json::from_str(&stdout).map_err(|e| {
        format!(
            "output is not JSON ({e}); exit {:?}; stdout: {stdout}; stderr: {stderr}",
            output.status.code()
        )
    })?;
    let diags = report["diagnostics"]
        .as_array()
        .ok_or_else(|| format!("no `diagnostics` list in {stdout}"))?;
    let seen_all = diags.iter().map(seen).collect::<Vec<_>>().join("; ");

    let wanted: Vec<&Expected> = std::iter::once(&primary).chain(&also).collect();
    let is_error = |code: &str| {
        severities
            .iter()
            .find(|(c, _)| c == code)
            .map(|(_, e)| *e)
            .ok_or_else(|| format!("expects {code}, which is not in diag.rs"))
    };
    let mut any_error = false;
    for w in &wanted {
        any_error |= is_error(&w.code)?;
    }
    if diags.len() != wanted.len() {
        let what = if also.is_empty() {
            "exactly one diagnostic".to_owned()
        } else {
            format!("exactly {} diagnostics", wanted.len())
        };
        return Err(format!(
            "expected {what} ({}), saw {}: [{seen_all}]",
            wanted
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            diags.len()
        ));
    }
    for w in &wanted {
        let found = diags.iter().find(|d| {
            d["code"].as_str() == Some(w.code.as_str())
                && match w.at {
                    Some((l, c)) => {
                        d["line"].as_u64() == Some(l) && d["column"].as_u64() == Some(c)
                    }
                    None => d["line"].is_null() && d["column"].is_null(),
                }
        });
        let Some(d) = found else {
            return Err(format!("expected {w}, saw [{seen_all}]"));
        };
        let severity = if is_error(&w.code)? {
            "error"
        } else {
            "warning"
        };
        if d["severity"].as_str() != Some(severity) {
            return Err(format!(
                "{} should be an {severity}, saw {}",
                w.code,
                seen(d)
            ));
        }
        for field in ["message", "hint"] {
            if d[field].as_str().is_none_or(|s| s.trim().is_empty()) {
                return Err(format!("{} has an empty or missing {field}: {d}", w.code));
            }
        }
    }
    let want_status = i32::from(any_error);
    if output.status.code() != Some(want_status) {
        return Err(format!(
            "exit status should be {want_status} ({}), was {:?}; saw [{seen_all}]; stderr: {stderr}",
            if any_error {
                "an error"
            } else {
                "warnings only"
            },
            output.status.code()
        ));
    }
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if !name.starts_with(&format!("{}-", primary.code)) {
        return Err(format!(
            "file name should start with `{}-` (the code on its first line)",
            primary.code
        ));
    }
    Ok(())
}

#[test]
fn each_broken_example_reports_its_diagnostic() {
    let severities = codes_table();
    let failures: Vec<String> = examples()
        .iter()
        .filter_map(|f| {
            check_example(f, &severities).err().map(|e| {
                let name = f
                    .strip_prefix(repo_root())
                    .unwrap_or(f)
                    .display()
                    .to_string();
                format!("{name}: {e}")
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} broken example(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_code_has_a_broken_example() {
    let codes = codes_table();
    // The table read from the source is the one the binary uses.
    let compiled: Vec<&str> = federation::Code::ALL.iter().map(|c| c.as_str()).collect();
    let parsed: Vec<&str> = codes.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        parsed, compiled,
        "codes read from federation/src/diag.rs differ from Code::ALL"
    );

    let covered: Vec<String> = examples().iter().map(|f| expectations(f).0.code).collect();
    let missing: Vec<&str> = parsed
        .iter()
        .copied()
        .filter(|c| !covered.iter().any(|x| x == c))
        .collect();
    assert!(
        missing.is_empty(),
        "no example in configs/examples/broken/ for {}; add `FGnnn-what.yaml` starting with `# expect: FGnnn at LINE:COLUMN`",
        missing.join(", ")
    );
    let unknown: Vec<&String> = covered
        .iter()
        .filter(|c| !parsed.contains(&c.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "examples expect codes that diag.rs does not define: {unknown:?}"
    );
}
