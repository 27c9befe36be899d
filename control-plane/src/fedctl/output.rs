//! How `fedctl` prints: tables for people (coloured on a terminal unless
//! NO_COLOR is set), JSON and YAML for programs.

use std::io::IsTerminal as _;

use clap::ValueEnum;
use serde::Serialize;

/// Write to stdout. When the reader has gone (`fedctl get policies | head
/// -1`), end at once with status 0, as `head` asked for no more: `print!`
/// would panic there. Any other error writing stdout (a full disk behind a
/// redirect) ends with a message and status 1, since the output is not
/// whole.
pub fn stdout_write(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let Err(e) = out.write_fmt(args) else {
        return;
    };
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("fedctl: cannot write to stdout: {e}");
    std::process::exit(1);
}

/// `-o table|json|yaml` (`text` is the table's old name).
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Output {
    #[value(alias = "text")]
    Table,
    Json,
    Yaml,
}

impl Output {
    /// Print `value` as JSON or YAML; `false` for a table (the caller prints it).
    pub fn machine<T: Serialize>(self, value: &T) -> anyhow::Result<bool> {
        match self {
            Self::Table => Ok(false),
            Self::Json => {
                outln!("{}", serde_json::to_string_pretty(value)?);
                Ok(true)
            }
            Self::Yaml => {
                let v = serde_json::to_value(value)?;
                out!("{}", serde_saphyr::to_string(&v)?);
                Ok(true)
            }
        }
    }
}

/// Colours, when stdout (or stderr, for progress) is a terminal.
#[derive(Clone, Copy)]
pub struct Paint(bool);

impl Paint {
    pub fn stdout() -> Self {
        Self(std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())
    }

    pub fn stderr() -> Self {
        Self(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
    }

    fn wrap(self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    pub fn green(self, s: &str) -> String {
        self.wrap("32", s)
    }

    pub fn yellow(self, s: &str) -> String {
        self.wrap("33", s)
    }

    pub fn red(self, s: &str) -> String {
        self.wrap("31", s)
    }

    pub fn bold(self, s: &str) -> String {
        self.wrap("1", s)
    }

    pub fn on(self) -> bool {
        self.0
    }
}

/// Columns padded to their widest cell, under `headers` as given.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = String>| {
        let mut s = String::new();
        for (i, c) in cells.enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i + 1 == widths.len() {
                s.push_str(&c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(&mut headers.iter().map(|h| (*h).to_owned()));
    for row in rows {
        out.push_str(&line(&mut row.iter().cloned()));
    }
    out
}
