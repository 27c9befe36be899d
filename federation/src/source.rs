//! Source files and the merged federation document.
//!
//! The caller reads files (this crate does no I/O) and adds their text to a
//! [`Sources`]; [`parse`] turns each into a [`DocumentSpec`] with YAML errors
//! mapped to diagnostics, and [`merge`] concatenates the documents into one
//! [`FederationSpec`] whose items remember their file.

use serde::Serialize;

use crate::diag::{Code, Diagnostic, FileId, Pos};
use crate::spec::*;

mod yaml;

/// Limits on a YAML document: large enough for a federation of 100,000
/// policies, small enough that an alias bomb or deep nesting is refused.
const MAX_NODES: usize = 40_000_000;
const MAX_EVENTS: usize = 80_000_000;
const MAX_DEPTH: usize = 32;
const MAX_ALIASES: usize = 10_000;

#[derive(Debug, Clone, Default)]
pub struct Sources {
    files: Vec<SourceFile>,
}

#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

impl Sources {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> FileId {
        let id = FileId(u32::try_from(self.files.len()).unwrap_or(u32::MAX));
        self.files.push(SourceFile {
            name: name.into(),
            text: text.into(),
        });
        id
    }

    pub fn file(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    pub fn iter(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, f)| (FileId(u32::try_from(i).unwrap_or(u32::MAX)), f))
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// An item of the merged document and the file it came from.
#[derive(Debug, Clone, Serialize)]
pub struct Sourced<T> {
    #[serde(skip)]
    pub file: FileId,
    #[serde(flatten)]
    pub item: S<T>,
}

impl<T> Sourced<T> {
    /// Where a field of this item was written.
    pub fn at<U>(&self, field: &S<U>) -> Option<Pos> {
        Pos::of(self.file, field)
    }

    /// Where the item itself starts.
    pub fn pos(&self) -> Option<Pos> {
        Pos::of(self.file, &self.item)
    }
}

impl<T> std::ops::Deref for Sourced<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.item.value
    }
}

/// The whole federation: every file's items, concatenated.
#[derive(Debug, Clone, Default)]
pub struct FederationSpec {
    pub federation: Option<Sourced<FederationMetaSpec>>,
    pub organisations: Vec<Sourced<OrganisationSpec>>,
    pub networks: Vec<Sourced<NetworkSpec>>,
    pub sites: Vec<Sourced<SiteSpec>>,
    pub edges: Vec<Sourced<EdgeSpec>>,
    pub services: Vec<Sourced<ServiceSpec>>,
    pub groups: Vec<Sourced<GroupSpec>>,
    pub agreements: Vec<Sourced<AgreementSpec>>,
    pub policies: Vec<Sourced<PolicySpec>>,
    pub revoked_certificates: Vec<Sourced<RevocationSpec>>,
}

/// Parse one file. A YAML or shape error is returned as a diagnostic at the
/// place the parser stopped.
pub fn parse(file: FileId, text: &str) -> Result<DocumentSpec, Box<Diagnostic>> {
    if text.trim().is_empty() {
        return Ok(DocumentSpec::default());
    }
    let mut options = serde_saphyr::Options::default();
    options.budget = serde_saphyr::budget! {
        max_nodes: MAX_NODES,
        max_events: MAX_EVENTS,
        max_depth: MAX_DEPTH,
        max_aliases: MAX_ALIASES,
        max_documents: 1,
    };
    serde_saphyr::from_str_with_options::<DocumentSpec>(text, options)
        .map_err(|err| Box::new(yaml::yaml_diagnostic(file, text, &err)))
}

/// Concatenate parsed documents. The federation header must be given exactly
/// once across all files.
pub fn merge(docs: Vec<(FileId, DocumentSpec)>, diags: &mut Vec<Diagnostic>) -> FederationSpec {
    fn extend<T>(into: &mut Vec<Sourced<T>>, file: FileId, items: Vec<S<T>>) {
        into.extend(items.into_iter().map(|item| Sourced { file, item }));
    }
    let mut out = FederationSpec::default();
    for (file, doc) in docs {
        if let Some(meta) = doc.federation {
            let here = Sourced { file, item: meta };
            if let Some(first) = &out.federation {
                diags.push(
                    Diagnostic::new(
                        Code::FederationHeader,
                        here.pos(),
                        "the `federation:` header is given a second time",
                    )
                    .hint("keep one `federation:` section, in one file")
                    .related(first.pos(), "first given here"),
                );
            } else {
                out.federation = Some(here);
            }
        }
        extend(&mut out.organisations, file, doc.organisations);
        extend(&mut out.networks, file, doc.networks);
        extend(&mut out.sites, file, doc.sites);
        extend(&mut out.edges, file, doc.edges);
        extend(&mut out.services, file, doc.services);
        extend(&mut out.groups, file, doc.groups);
        extend(&mut out.agreements, file, doc.agreements);
        extend(&mut out.policies, file, doc.policies);
        extend(
            &mut out.revoked_certificates,
            file,
            doc.revoked_certificates,
        );
    }
    out
}

impl FederationSpec {
    /// All items in one document, in order (files concatenated).
    pub fn to_document(&self) -> DocumentSpec {
        fn items<T: Clone>(v: &[Sourced<T>]) -> Vec<S<T>> {
            v.iter().map(|s| s.item.clone()).collect()
        }
        DocumentSpec {
            federation: self.federation.as_ref().map(|f| f.item.clone()),
            organisations: items(&self.organisations),
            networks: items(&self.networks),
            sites: items(&self.sites),
            edges: items(&self.edges),
            services: items(&self.services),
            groups: items(&self.groups),
            agreements: items(&self.agreements),
            policies: items(&self.policies),
            revoked_certificates: items(&self.revoked_certificates),
        }
    }

    /// A single document as the whole federation (a snapshot, say).
    pub fn from_document(file: FileId, doc: DocumentSpec) -> Self {
        let mut diags = Vec::new();
        merge(vec![(file, doc)], &mut diags)
    }
}
