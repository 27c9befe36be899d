//! The federation document as admins write it: raw serde structs, one per YAML
//! object, named `*Spec`.
//!
//! Nothing here is validated beyond its YAML shape: unknown fields are errors
//! (`deny_unknown_fields`), and every value a diagnostic may point at is wrapped
//! in [`Spanned`] so that it keeps its line and column. Semantic checks and the
//! conversion into the typed model live in [`crate::validate`].
//!
//! A federation may be split across files (one per organisation, say); each
//! file is a [`DocumentSpec`] and [`crate::source::merge`] concatenates them.
//! Scalars that need checking with a clear diagnostic (CIDRs, addresses, dates,
//! ports) are kept as text or wide integers here, so that a bad value yields a
//! Fedgate diagnostic with a hint rather than a bare serde message.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
pub use serde_saphyr::Spanned;

/// A value with the place it was written.
pub type S<T> = Spanned<T>;

/// One YAML file of a federation. Every section is optional so that a document
/// can hold a single organisation's objects.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federation: Option<S<FederationMetaSpec>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organisations: Vec<S<OrganisationSpec>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<S<NetworkSpec>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<S<SiteSpec>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<S<EdgeSpec>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<S<ServiceSpec>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<S<GroupSpec>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agreements: Vec<S<AgreementSpec>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<S<PolicySpec>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked_certificates: Vec<S<RevocationSpec>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FederationMetaSpec {
    /// Short name, used in identities: `spiffe://<trust_domain>/...`.
    pub name: S<String>,
    /// The SPIFFE trust domain of every certificate in the federation.
    pub trust_domain: S<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OrganisationSpec {
    pub id: S<String>,
    pub name: S<String>,
    pub kind: S<OrgKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ods_code: Option<S<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<ContactSpec>,
    pub membership: MembershipSpec,
    #[serde(default)]
    pub dns: DnsSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OrgKind {
    NhsTrust,
    GpPractice,
    LocalAuthority,
    Other,
}

impl OrgKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NhsTrust => "nhs-trust",
            Self::GpPractice => "gp-practice",
            Self::LocalAuthority => "local-authority",
            Self::Other => "other",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContactSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// The member's connection agreement with the federation. A member whose terms
/// have lapsed is suspended: its flows are denied both ways until renewed.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipSpec {
    /// Reference of the signed connection agreement.
    pub agreement: S<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts: Option<S<String>>,
    pub expires: S<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSpec {
    /// DNS zones this organisation owns; its services' names must lie in them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<S<String>>,
    /// The organisation's own resolvers (`IP` or `IP:PORT`), to which its edges
    /// forward every name outside the federation's zones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<S<String>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    pub org: S<String>,
    pub label: S<String>,
    pub purpose: S<NetworkPurpose>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cidrs: Vec<S<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkPurpose {
    Corporate,
    Clinical,
    RoamingStaff,
    Guest,
    Management,
    Other,
}

impl NetworkPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Corporate => "corporate",
            Self::Clinical => "clinical",
            Self::RoamingStaff => "roaming-staff",
            Self::Guest => "guest",
            Self::Management => "management",
            Self::Other => "other",
        }
    }
}

/// A building, and which members' networks are present in it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSpec {
    pub id: S<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The organisation that runs the building.
    pub host: S<String>,
    /// `ORG/LABEL` of every network present in the building.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<S<String>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeSpec {
    pub org: S<String>,
    pub name: S<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<S<String>>,
    pub overlay: OverlaySpec,
    #[serde(default)]
    pub ingress: IngressSpec,
    /// `IP` or `IP:PORT` where this edge serves split-horizon DNS to its
    /// member's resolvers (the target of `fedctl dns-forwarders`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<S<String>>,
}

/// Where peer edges reach this edge. At least one of the two.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OverlaySpec {
    /// `IP:PORT` of the QUIC (UDP) listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quic: Option<S<String>>,
    /// `IP:PORT` of the TLS-over-TCP listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<S<String>>,
}

/// Where local clients (visiting staff) reach this edge.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IngressSpec {
    /// Addresses of the SNI, CONNECT and SOCKS listeners.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<S<String>>,
    /// A prefix from which each remote non-TLS service gets its own address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip_prefix: Option<S<String>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub org: S<String>,
    pub name: S<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Names staff use for it; each inside one of the owner's zones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<S<String>>,
    /// Internal address, known only to the owner's edges. Absent in the
    /// snapshots that other organisations' edges receive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<S<String>>,
    pub ports: Vec<S<i64>>,
    pub protocol: S<Protocol>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<S<String>>,
    /// Whether the owner's edges answer this service's names with its
    /// internal `address` to the owner's own staff (default: no, such names
    /// are forwarded to the owner's upstream resolvers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_internal: Option<S<bool>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// TLS from the client to the service; edges route by SNI and never
    /// terminate it.
    Tls,
    /// Any other TCP protocol; edges give each remote service its own VIP.
    Tcp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tls => "tls",
            Self::Tcp => "tcp",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    pub id: S<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub members: Vec<S<String>>,
}

/// An information-sharing agreement: the legal footing of a policy.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgreementSpec {
    pub id: S<String>,
    pub title: String,
    /// Organisations or groups that signed it.
    pub parties: Vec<S<String>>,
    pub purpose: String,
    pub legal_basis: String,
    pub owner: OwnerSpec,
    pub start: S<String>,
    pub expires: S<String>,
}

/// The accountable owner of an agreement (a Caldicott Guardian, say).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerSpec {
    pub name: String,
    pub role: String,
    pub org: S<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    pub id: S<String>,
    pub description: String,
    pub from: FromSpec,
    pub to: ToSpec,
    /// Ports or ranges (`443`, `"8000-8100"`); absent means every port of each
    /// destination service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<S<PortRangeSpec>>,
    pub action: S<Action>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<S<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<S<String>>,
}

/// Sources of a flow. Organisations and groups give a set of organisations;
/// networks and CIDRs narrow it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FromSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orgs: Vec<S<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<S<String>>,
    /// `ORG/LABEL`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<S<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cidrs: Vec<S<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ToSpec {
    /// `ORG/NAME`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<S<String>>,
    /// `ORG/TAG`, or `*/TAG` for that tag on any member's services.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<S<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Allow,
    Deny,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationSpec {
    /// Certificate serial number in hex (`3a:f0:...` or `3af0...`).
    pub serial: S<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<S<String>>,
}

/// A port or an inclusive range as written, not yet range-checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRangeSpec {
    pub start: i64,
    pub end: i64,
}

impl fmt::Display for PortRangeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

impl Serialize for PortRangeSpec {
    fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        if self.start == self.end {
            serializer.serialize_i64(self.start)
        } else {
            serializer.collect_str(self)
        }
    }
}

impl<'de> Deserialize<'de> for PortRangeSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;

        impl Visitor<'_> for PortVisitor {
            type Value = PortRangeSpec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number or a range such as \"8000-8100\"")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(PortRangeSpec { start: v, end: v })
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                let v = i64::try_from(v).unwrap_or(i64::MAX);
                Ok(PortRangeSpec { start: v, end: v })
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                let parse = |s: &str| s.trim().parse::<i64>().ok();
                let parsed = match v.split_once('-') {
                    Some((a, b)) => parse(a).zip(parse(b)),
                    None => parse(v).map(|p| (p, p)),
                };
                match parsed {
                    Some((start, end)) => Ok(PortRangeSpec { start, end }),
                    None => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }

        deserializer.deserialize_any(PortVisitor)
    }
}
