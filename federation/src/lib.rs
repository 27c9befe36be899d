//! Fedgate's pure core.
//!
//! What it does: the federation document's schema ([`spec`]), parsing with
//! file:line:column diagnostics ([`source`], [`diag`]), semantic validation
//! into a typed model ([`validate`], [`model`]), policy compilation and
//! decisions ([`policy`]), routing by name ([`routing`]), per-edge snapshots
//! ([`snapshot`]) and their signatures ([`signed`]), and the wire formats
//! the edges read from untrusted peers and clients, sans-IO: the overlay's
//! stream header ([`wire`]), SOCKS5 ([`socks5`]), hash-chained logs
//! ([`chain`]).
//!
//! What it does not do: no I/O, no async, no clock. Callers read files and
//! pass their text in, and pass `now` to everything that depends on time.
//!
//! The pipeline:
//! ```text
//! text --source::parse--> DocumentSpec --source::merge--> FederationSpec
//!      --validate::validate(scope, now)--> Federation + diagnostics
//!      --> PolicySet::compile / RoutingTable::new / EdgeSnapshot::build
//! ```
#![forbid(unsafe_code)]

pub mod chain;
pub mod diag;
pub mod hex;
pub mod identity;
pub mod model;
pub mod mtls;
pub mod policy;
pub mod routing;
pub mod signed;
pub mod snapshot;
pub mod socks5;
pub mod source;
pub mod spec;
pub mod validate;
pub mod wire;

use jiff::Timestamp;

pub use diag::{Code, Diagnostic, FileId, Pos, Severity};
pub use model::Federation;
pub use policy::{Decision, Flow, PolicySet, Reason, Verdict};
pub use routing::RoutingTable;
pub use snapshot::EdgeSnapshot;
pub use source::{FederationSpec, Sources};
pub use validate::Scope;

/// A checked set of source files.
#[derive(Debug)]
pub struct Loaded {
    pub spec: FederationSpec,
    /// Present when there is no error.
    pub federation: Option<Federation>,
    /// Sorted by file, line and column.
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Parse, merge and validate every file in `sources` as one federation.
pub fn load(sources: &Sources, now: Timestamp) -> Loaded {
    let mut diagnostics = Vec::new();
    let mut docs = Vec::new();
    for (id, file) in sources.iter() {
        match source::parse(id, &file.text) {
            Ok(doc) => docs.push((id, doc)),
            Err(d) => diagnostics.push(*d),
        }
    }
    let spec = source::merge(docs, &mut diagnostics);
    if diagnostics.iter().any(Diagnostic::is_error) {
        diag::sort(&mut diagnostics);
        return Loaded {
            spec,
            federation: None,
            diagnostics,
        };
    }
    let checked = validate::validate(&spec, &Scope::Full, now);
    diagnostics.extend(checked.diagnostics);
    diag::sort(&mut diagnostics);
    Loaded {
        spec,
        federation: checked.federation,
        diagnostics,
    }
}
