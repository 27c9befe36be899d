//! Policy compilation and decisions.
//!
//! [`PolicySet::compile`] turns the federation's policies into buckets keyed
//! by (destination service, source organisation), so a decision looks at the
//! few rules that can match and no others. [`PolicySet::decide`] then applies
//! the semantics of ARCHITECTURE.md: default deny, deny overrides allow, order
//! never matters, an expired policy or agreement stops allowing, and a member
//! whose terms have lapsed is denied both ways.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use jiff::Timestamp;
use serde::Serialize;

use crate::model::*;

/// One flow to decide on.
#[derive(Debug, Clone, Copy)]
pub struct Flow<'a> {
    /// The organisation the source network belongs to.
    pub src_org: &'a str,
    /// The source network's label within `src_org`, if known.
    pub src_network: Option<&'a str>,
    /// The original source address, if known.
    pub src_addr: Option<IpAddr>,
    /// `ORG/NAME` of the destination service.
    pub service: &'a str,
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Deny,
}

/// Why a decision came out as it did.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Reason {
    /// Allowed by the rules listed.
    Allowed,
    /// A deny rule matched (the rules listed).
    DeniedByRule,
    /// No allow rule matches (default deny).
    NoPolicy,
    /// Allow rules matched but are not in force: their agreement or their own
    /// validity ended (or has not begun).
    NotInForce,
    /// A member's terms have lapsed: it is suspended both ways.
    MemberSuspended {
        org: OrgId,
    },
    UnknownSourceOrg,
    /// The source network does not belong to the source organisation.
    ForeignNetwork,
    UnknownService,
    /// The service does not listen on the port.
    PortNotServed,
}

impl Reason {
    /// A stable, short label for metrics and audit records.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::DeniedByRule => "denied-by-rule",
            Self::NoPolicy => "no-policy",
            Self::NotInForce => "not-in-force",
            Self::MemberSuspended { .. } => "member-suspended",
            Self::UnknownSourceOrg => "unknown-source-org",
            Self::ForeignNetwork => "foreign-network",
            Self::UnknownService => "unknown-service",
            Self::PortNotServed => "port-not-served",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Allowed => f.write_str("allowed by policy"),
            Self::DeniedByRule => f.write_str("denied by a deny rule"),
            Self::NoPolicy => f.write_str("no policy allows this flow (default deny)"),
            Self::NotInForce => f.write_str(
                "the policies that would allow it are not in force (expired or not yet started)",
            ),
            Self::MemberSuspended { org } => write!(
                f,
                "member `{org}` is suspended: its membership terms have lapsed"
            ),
            Self::UnknownSourceOrg => f.write_str("the source organisation is not a member"),
            Self::ForeignNetwork => {
                f.write_str("the source network does not belong to the source organisation")
            }
            Self::UnknownService => f.write_str("no such service"),
            Self::PortNotServed => f.write_str("the service does not serve this port"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub verdict: Verdict,
    pub reason: Reason,
    /// The deciding rules, sorted by id.
    pub rules: Vec<PolicyId>,
    /// The agreement behind an allow (of the first deciding rule).
    pub agreement: Option<AgreementId>,
}

impl Decision {
    fn deny(reason: Reason) -> Self {
        Self {
            verdict: Verdict::Deny,
            reason,
            rules: Vec::new(),
            agreement: None,
        }
    }

    pub fn is_allowed(&self) -> bool {
        self.verdict == Verdict::Allow
    }
}

#[derive(Debug, Clone)]
struct Rule {
    policy: u32,
    action: Action,
    /// Labels of the source organisation's networks; `None`: any.
    networks: Option<Box<[Arc<str>]>>,
    cidrs: Option<Box<[IpNet]>>,
    ports: Option<Box<[PortRange]>>,
    /// In force from (inclusive) ...
    not_before: Option<Timestamp>,
    /// ... until (exclusive).
    not_after: Option<Timestamp>,
}

impl Rule {
    fn matches(&self, flow: &Flow<'_>) -> bool {
        if let Some(nets) = &self.networks {
            match flow.src_network {
                Some(n) if nets.iter().any(|x| &**x == n) => {}
                _ => return false,
            }
        }
        if let Some(cidrs) = &self.cidrs {
            match flow.src_addr {
                Some(a) if cidrs.iter().any(|c| c.contains(&a)) => {}
                _ => return false,
            }
        }
        self.ports
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|r| r.contains(flow.port)))
    }

    fn in_force(&self, now: Timestamp) -> bool {
        self.not_before.is_none_or(|t| t <= now) && self.not_after.is_none_or(|t| now < t)
    }
}

#[derive(Debug, Clone)]
struct OrgEntry {
    networks: Box<[Arc<str>]>,
    membership: Membership,
}

#[derive(Debug, Clone)]
struct ServiceEntry {
    owner: u32,
    ports: Box<[u16]>,
}

/// Compiled policies of a federation (or of one edge's snapshot).
#[derive(Debug, Clone)]
pub struct PolicySet {
    org_index: HashMap<OrgId, u32>,
    orgs: Vec<OrgEntry>,
    service_index: HashMap<ServiceId, u32>,
    services: Vec<ServiceEntry>,
    buckets: HashMap<(u32, u32), Box<[Rule]>>,
    policies: Vec<(PolicyId, Option<AgreementId>)>,
}

impl PolicySet {
    pub fn compile(fed: &Federation) -> Self {
        let org_index: HashMap<OrgId, u32> = fed
            .orgs
            .iter()
            .enumerate()
            .map(|(i, o)| (o.id.clone(), i as u32))
            .collect();
        let mut org_nets: Vec<Vec<Arc<str>>> = vec![Vec::new(); fed.orgs.len()];
        for n in &fed.networks {
            if let Some(&i) = org_index.get(&n.org) {
                org_nets[i as usize].push(Arc::from(n.label.as_str()));
            }
        }
        let orgs = fed
            .orgs
            .iter()
            .zip(org_nets)
            .map(|(o, nets)| OrgEntry {
                networks: nets.into_boxed_slice(),
                membership: o.membership.clone(),
            })
            .collect();
        let service_index: HashMap<ServiceId, u32> = fed
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i as u32))
            .collect();
        let services = fed
            .services
            .iter()
            .map(|s| ServiceEntry {
                owner: org_index.get(&s.org).copied().unwrap_or(u32::MAX),
                ports: s.ports.clone().into_boxed_slice(),
            })
            .collect();

        let mut buckets: HashMap<(u32, u32), Vec<Rule>> = HashMap::new();
        let mut policies = Vec::with_capacity(fed.policies.len());
        for (pi, p) in fed.policies.iter().enumerate() {
            policies.push((p.id.clone(), p.agreement.clone()));
            let agreement = p.agreement.as_ref().and_then(|a| fed.agreement(a.as_str()));
            // An allow is in force while its agreement is (and until its own
            // expiry). A deny is bound only by its own expiry: an agreement
            // lapsing must never open what a deny closed (fail closed).
            let agreement = agreement.filter(|_| p.action == Action::Allow);
            let not_before = agreement.map(|a| a.start);
            let not_after = match (agreement.map(|a| a.expires), p.expires) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let cidrs: Option<Box<[IpNet]>> =
                p.from.cidrs.as_ref().map(|c| c.clone().into_boxed_slice());
            let ports: Option<Box<[PortRange]>> =
                p.ports.as_ref().map(|c| c.clone().into_boxed_slice());
            for org in &p.from.orgs {
                let Some(&oi) = org_index.get(org) else {
                    continue;
                };
                let networks = p.from.networks.as_ref().map(|nets| {
                    nets.iter()
                        .filter_map(|n| fed.network(n.as_str()))
                        .filter(|n| &n.org == org)
                        .map(|n| Arc::from(n.label.as_str()))
                        .collect::<Box<[Arc<str>]>>()
                });
                // A network-narrowed rule that names none of this org's networks
                // cannot match anything from it.
                if networks.as_ref().is_some_and(|n| n.is_empty()) {
                    continue;
                }
                for svc in &p.to {
                    let Some(&si) = service_index.get(svc) else {
                        continue;
                    };
                    buckets.entry((si, oi)).or_default().push(Rule {
                        policy: pi as u32,
                        action: p.action,
                        networks: networks.clone(),
                        cidrs: cidrs.clone(),
                        ports: ports.clone(),
                        not_before,
                        not_after,
                    });
                }
            }
        }
        Self {
            org_index,
            orgs,
            service_index,
            services,
            buckets: buckets
                .into_iter()
                .map(|(k, v)| (k, v.into_boxed_slice()))
                .collect(),
            policies,
        }
    }

    /// Decide on `flow` at time `now`.
    pub fn decide(&self, flow: &Flow<'_>, now: Timestamp) -> Decision {
        let Some(&oi) = self.org_index.get(flow.src_org) else {
            return Decision::deny(Reason::UnknownSourceOrg);
        };
        let Some(&si) = self.service_index.get(flow.service) else {
            return Decision::deny(Reason::UnknownService);
        };
        let org = &self.orgs[oi as usize];
        let service = &self.services[si as usize];
        if !org.membership.in_force(now) {
            return Decision::deny(Reason::MemberSuspended {
                org: self.org_id(oi),
            });
        }
        if let Some(owner) = self.orgs.get(service.owner as usize)
            && !owner.membership.in_force(now)
        {
            return Decision::deny(Reason::MemberSuspended {
                org: self.org_id(service.owner),
            });
        }
        if let Some(net) = flow.src_network
            && !org.networks.iter().any(|n| &**n == net)
        {
            return Decision::deny(Reason::ForeignNetwork);
        }
        if !service.ports.contains(&flow.port) {
            return Decision::deny(Reason::PortNotServed);
        }
        let rules = self.buckets.get(&(si, oi)).map_or(&[][..], |b| &b[..]);
        let mut denies = Vec::new();
        let mut allows = Vec::new();
        let mut dormant = Vec::new();
        for rule in rules.iter().filter(|r| r.matches(flow)) {
            match (rule.action, rule.in_force(now)) {
                (Action::Deny, true) => denies.push(rule.policy),
                (Action::Allow, true) => allows.push(rule.policy),
                (Action::Allow, false) => dormant.push(rule.policy),
                (Action::Deny, false) => {}
            }
        }
        let (verdict, reason, mut chosen) = if !denies.is_empty() {
            (Verdict::Deny, Reason::DeniedByRule, denies)
        } else if !allows.is_empty() {
            (Verdict::Allow, Reason::Allowed, allows)
        } else if !dormant.is_empty() {
            (Verdict::Deny, Reason::NotInForce, dormant)
        } else {
            (Verdict::Deny, Reason::NoPolicy, Vec::new())
        };
        chosen.sort_unstable_by(|a, b| {
            self.policies[*a as usize]
                .0
                .cmp(&self.policies[*b as usize].0)
        });
        chosen.dedup();
        let agreement = chosen
            .first()
            .and_then(|p| self.policies[*p as usize].1.clone());
        Decision {
            verdict,
            reason,
            rules: chosen
                .iter()
                .map(|p| self.policies[*p as usize].0.clone())
                .collect(),
            agreement,
        }
    }

    fn org_id(&self, index: u32) -> OrgId {
        self.org_index
            .iter()
            .find(|(_, i)| **i == index)
            .map_or_else(|| OrgId::new("?"), |(id, _)| id.clone())
    }

    /// How many compiled rules there are (one per source org and destination).
    pub fn rule_count(&self) -> usize {
        self.buckets.values().map(|b| b.len()).sum()
    }
}
