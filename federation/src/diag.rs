//! Diagnostics: every problem found in a federation document, with a stable
//! code, the file, line and column, a one-line message and a hint.
//!
//! Rendering is the caller's business (`fedctl check` renders them like a
//! compiler does); this module only says what is wrong and where.

use std::fmt;

use serde::Serialize;

use crate::spec::S;

/// Index of a source file in a [`crate::source::Sources`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct FileId(pub u32);

/// A place in a source file: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Pos {
    pub file: FileId,
    pub line: u32,
    pub column: u32,
    /// Byte offset of the first character, and the length of the value in
    /// bytes, where known; renderers use it to underline the value.
    pub offset: Option<(usize, usize)>,
}

impl Pos {
    /// Where a spanned value was written (for an alias: where it is used).
    pub fn of<T>(file: FileId, value: &S<T>) -> Option<Self> {
        Self::at(file, value.referenced)
    }

    /// A parser location; `None` for an unknown one (a value read from JSON,
    /// such as a snapshot, has no position).
    pub fn at(file: FileId, loc: serde_saphyr::Location) -> Option<Self> {
        if loc.line() == 0 {
            return None;
        }
        let span = loc.span();
        Some(Self {
            file,
            line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
            column: u32::try_from(loc.column()).unwrap_or(u32::MAX),
            offset: span
                .byte_offset()
                .map(|o| (o as usize, span.byte_len().unwrap_or(0) as usize)),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

macro_rules! codes {
    ($($variant:ident = $code:literal, $sev:ident, $title:literal;)*) => {
        /// Stable diagnostic codes. A code is never reused for another meaning;
        /// `docs/diagnostics.md` lists them all.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Code {
            $($variant,)*
        }

        impl Code {
            pub const ALL: &'static [Self] = &[$(Self::$variant,)*];

            /// The code as printed, e.g. `FG111`.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $code,)* }
            }

            pub fn severity(self) -> Severity {
                match self { $(Self::$variant => Severity::$sev,)* }
            }

            /// A short title for the class of problem.
            pub fn title(self) -> &'static str {
                match self { $(Self::$variant => $title,)* }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($code => Some(Self::$variant),)* _ => None }
            }
        }
    };
}

codes! {
    Syntax = "FG001", Error, "YAML syntax error";
    UnknownField = "FG002", Error, "unknown field";
    InvalidValue = "FG003", Error, "value of the wrong type or kind";
    MissingField = "FG004", Error, "required field missing";
    TooComplex = "FG005", Error, "document too large, too deep or too many aliases";
    FederationHeader = "FG010", Error, "federation header missing or given twice";
    DuplicateId = "FG101", Error, "duplicate id";
    UnknownReference = "FG102", Error, "reference to something that does not exist";
    InvalidId = "FG103", Error, "malformed identifier";
    InvalidCidr = "FG110", Error, "malformed CIDR";
    OverlapWithinMember = "FG111", Error, "overlapping CIDRs inside one member";
    OverlapBetweenMembers = "FG112", Warning, "overlapping CIDRs between members";
    OverlapAtSite = "FG113", Error, "overlapping networks present at one site";
    InvalidAddress = "FG114", Error, "malformed address";
    UnspecifiedAddress = "FG115", Error, "every-address (0.0.0.0, ::) where one to reach is needed";
    VipPrefixOverlap = "FG116", Error, "VIP prefix overlapping a network of its own organisation";
    VipPrefixTooSmall = "FG117", Warning, "VIP prefix with fewer addresses than the services given VIPs";
    OverlayEndpointShared = "FG118", Error, "overlay endpoint of two edges";
    ZoneClaimedTwice = "FG120", Error, "DNS zone claimed by two members";
    NameOutsideZones = "FG121", Error, "service name outside its owner's zones";
    InvalidDnsName = "FG122", Error, "malformed DNS name";
    DuplicateDnsName = "FG123", Error, "DNS name given to two services";
    InternalAnswerWithoutName = "FG124", Warning, "internal DNS answer for a service without a DNS name";
    PortOutOfRange = "FG130", Error, "port outside 1-65535";
    ReversedPortRange = "FG131", Error, "port range ends before it starts";
    ServiceNotOpened = "FG140", Warning, "service that no policy opens";
    PolicyOpensNothing = "FG141", Warning, "policy that opens nothing";
    AllowShadowed = "FG142", Warning, "allow rule wholly shadowed by a deny";
    AgreementMissingParty = "FG143", Error, "policy's agreement does not list both sides";
    NetworkOutsideSources = "FG144", Error, "source network of an organisation the policy does not name";
    EmptySelector = "FG145", Error, "policy without sources or destinations";
    AllowWithoutAgreement = "FG146", Warning, "cross-organisation allow without an agreement";
    SelectorMatchesNothing = "FG147", Warning, "destination tag selector that matches no service";
    AgreementExpired = "FG150", Warning, "agreement expired";
    AgreementExpiring = "FG151", Warning, "agreement expiring within 30 days";
    MembershipLapsed = "FG152", Warning, "membership terms lapsed: member suspended";
    MembershipExpiring = "FG153", Warning, "membership terms expiring within 30 days";
    PolicyExpired = "FG154", Warning, "policy expired";
    InvalidDate = "FG155", Error, "malformed date or time";
    DatesReversed = "FG156", Error, "expiry before start";
    DenyEnds = "FG157", Warning, "deny rule with an end date or an agreement: it stops denying";
    PolicyExpiring = "FG158", Warning, "allow policy expiring within 30 days";
    InvalidSerial = "FG160", Error, "malformed certificate serial";
    EdgeWithoutOverlay = "FG161", Error, "edge without an overlay endpoint";
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<Ser: serde::Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One problem: what, where, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub pos: Option<Pos>,
    pub message: String,
    pub hint: Option<String>,
    /// Other places involved (the first definition of a duplicate, say).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<(Pos, String)>,
}

impl Diagnostic {
    pub fn new(code: Code, pos: Option<Pos>, message: impl Into<String>) -> Self {
        Self {
            code,
            severity: code.severity(),
            pos,
            message: message.into(),
            hint: None,
            related: Vec::new(),
        }
    }

    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    #[must_use]
    pub fn related(mut self, pos: Option<Pos>, note: impl Into<String>) -> Self {
        if let Some(pos) = pos {
            self.related.push((pos, note.into()));
        }
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}[{}]: {}", self.code, self.message)?;
        if let Some(pos) = self.pos {
            write!(f, " (at {}:{})", pos.line, pos.column)?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "; hint: {hint}")?;
        }
        Ok(())
    }
}

/// Sort diagnostics by place, then code, so that output is stable.
pub fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| {
        (a.pos.map(|p| (p.file, p.line, p.column)), a.code)
            .cmp(&(b.pos.map(|p| (p.file, p.line, p.column)), b.code))
    });
}
