//! Who may change what: a partnership of equals (ARCHITECTURE.md,
//! principle 2).
//!
//! A change is compared object by object ([`changes`]); each object added,
//! changed or removed has an owner, in its old and in its new form
//! ([`Owner`]), and the caller must hold the right over both:
//!
//! | object | owner |
//! |---|---|
//! | an organisation's record (name, ODS code, contacts, DNS) | that organisation |
//! | an organisation's membership, or adding/removing a member | the federation |
//! | network, edge, service | its organisation |
//! | site | the organisation hosting it |
//! | policy | the organisation owning every destination; one per owner |
//! | group, agreement, the federation header | the federation |
//! | revocation | the organisation named by its holder (`ORG/...`), and the federation |
//!
//! An organisation's admins (`spiffe://TD/org/ORG/admin/NAME`) hold the rights
//! of their organisation; federation admins (`spiffe://TD/federation/admin/NAME`)
//! hold the federation's, and may revoke any certificate. Nobody else changes
//! anything. Pure: documents in, refusals out.

use std::collections::BTreeMap;
use std::fmt;

use federation::identity::Identity;
use federation::spec::DocumentSpec;
use federation::validate::normalise_serial;
use serde::Serialize;
use serde_json::Value;

use crate::store::Change;

/// Who holds the right over an object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owner {
    /// The admins of one organisation.
    Org(String),
    /// Federation admins.
    Federation,
    /// The holder's organisation or federation admins (revocations).
    OrgOrFederation(String),
    /// No one: the object mixes several owners (a policy opening services of
    /// two organisations); split it.
    Mixed(Vec<String>),
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Org(o) => write!(f, "admin of {o}"),
            Self::Federation => f.write_str("federation admin"),
            Self::OrgOrFederation(o) => write!(f, "admin of {o} or federation admin"),
            Self::Mixed(orgs) => write!(
                f,
                "none: its destinations belong to {}; write one policy per owning organisation",
                orgs.join(", ")
            ),
        }
    }
}

impl Owner {
    fn held_by(&self, caller: &Identity) -> bool {
        match (self, caller) {
            (Self::Org(o), Identity::Admin { org, .. }) => o == org,
            (Self::Federation, Identity::FederationAdmin { .. }) => true,
            (Self::OrgOrFederation(_), Identity::FederationAdmin { .. }) => true,
            (Self::OrgOrFederation(o), Identity::Admin { org, .. }) => o == org,
            _ => false,
        }
    }
}

/// A change the caller has no right to make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub op: String,
    pub kind: String,
    pub id: String,
    /// The right that was missing, e.g. `admin of dpft`.
    pub right: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} `{}`: needs {}",
            self.op, self.kind, self.id, self.right
        )
    }
}

/// One object of a document: its kind, id, owner and content (for comparing).
struct Object {
    owner: Owner,
    value: Value,
}

type Objects = BTreeMap<(&'static str, String), Object>;

fn json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn org_of(id: &str) -> &str {
    id.split('/').next().unwrap_or(id)
}

/// Every object of `doc`, keyed by kind and id.
fn objects(doc: &DocumentSpec) -> Objects {
    let mut out = Objects::new();
    if let Some(f) = &doc.federation {
        out.insert(
            ("federation", "federation".to_owned()),
            Object {
                owner: Owner::Federation,
                value: json(&f.value),
            },
        );
    }
    for o in &doc.organisations {
        let org = &o.value;
        let id = org.id.value.clone();
        // Membership is the federation's; the rest of the record the member's.
        out.insert(
            ("membership", id.clone()),
            Object {
                owner: Owner::Federation,
                value: json(&(&org.membership, &org.kind)),
            },
        );
        let mut record = json(org);
        if let Value::Object(m) = &mut record {
            m.remove("membership");
            m.remove("kind");
        }
        out.insert(
            ("organisation", id.clone()),
            Object {
                owner: Owner::Org(id),
                value: record,
            },
        );
    }
    for n in &doc.networks {
        let n = &n.value;
        out.insert(
            ("network", format!("{}/{}", n.org.value, n.label.value)),
            Object {
                owner: Owner::Org(n.org.value.clone()),
                value: json(n),
            },
        );
    }
    for s in &doc.sites {
        out.insert(
            ("site", s.value.id.value.clone()),
            Object {
                owner: Owner::Org(s.value.host.value.clone()),
                value: json(&s.value),
            },
        );
    }
    for e in &doc.edges {
        let e = &e.value;
        out.insert(
            ("edge", format!("{}/{}", e.org.value, e.name.value)),
            Object {
                owner: Owner::Org(e.org.value.clone()),
                value: json(e),
            },
        );
    }
    for s in &doc.services {
        let s = &s.value;
        out.insert(
            ("service", format!("{}/{}", s.org.value, s.name.value)),
            Object {
                owner: Owner::Org(s.org.value.clone()),
                value: json(s),
            },
        );
    }
    for g in &doc.groups {
        out.insert(
            ("group", g.value.id.value.clone()),
            Object {
                owner: Owner::Federation,
                value: json(&g.value),
            },
        );
    }
    for a in &doc.agreements {
        out.insert(
            ("agreement", a.value.id.value.clone()),
            Object {
                owner: Owner::Federation,
                value: json(&a.value),
            },
        );
    }
    for p in &doc.policies {
        let p = &p.value;
        let mut orgs: Vec<String> =
            p.to.services
                .iter()
                .chain(p.to.tags.iter())
                .map(|d| org_of(&d.value).to_owned())
                .collect();
        orgs.sort();
        orgs.dedup();
        let owner = match orgs.as_slice() {
            [one] if one != "*" => Owner::Org(one.clone()),
            _ => Owner::Mixed(orgs),
        };
        out.insert(
            ("policy", p.id.value.clone()),
            Object {
                owner,
                value: json(p),
            },
        );
    }
    for r in &doc.revoked_certificates {
        let r = &r.value;
        let serial = normalise_serial(&r.serial.value).unwrap_or_else(|| r.serial.value.clone());
        let owner = match r.holder.as_deref() {
            Some(h) if h.contains('/') => Owner::OrgOrFederation(org_of(h).to_owned()),
            _ => Owner::Federation,
        };
        out.insert(
            ("revocation", serial),
            Object {
                owner,
                value: json(r),
            },
        );
    }
    out
}

/// A change with the owners it touches (old and new form).
struct Touched {
    change: Change,
    owners: Vec<Owner>,
}

fn diff(old: &DocumentSpec, new: &DocumentSpec) -> Vec<Touched> {
    let (old, new) = (objects(old), objects(new));
    let mut out = Vec::new();
    let change = |op: &str, kind: &str, id: &str| Change {
        op: op.to_owned(),
        kind: kind.to_owned(),
        id: id.to_owned(),
    };
    for ((kind, id), o) in &old {
        match new.get(&(*kind, id.clone())) {
            None => out.push(Touched {
                change: change("removed", kind, id),
                owners: vec![o.owner.clone()],
            }),
            Some(n) if n.value != o.value => out.push(Touched {
                change: change("changed", kind, id),
                owners: vec![o.owner.clone(), n.owner.clone()],
            }),
            Some(_) => {}
        }
    }
    for ((kind, id), n) in &new {
        if !old.contains_key(&(*kind, id.clone())) {
            out.push(Touched {
                change: change("added", kind, id),
                owners: vec![n.owner.clone()],
            });
        }
    }
    // Adding or removing a member is the federation's call; its record then
    // comes with it.
    let members: Vec<(String, String)> = out
        .iter()
        .filter(|t| t.change.kind == "membership" && t.change.op != "changed")
        .map(|t| (t.change.op.clone(), t.change.id.clone()))
        .collect();
    out.retain(|t| {
        !(t.change.kind == "organisation"
            && members
                .iter()
                .any(|(op, id)| *op == t.change.op && *id == t.change.id))
    });
    for t in &mut out {
        if t.change.kind == "membership" && t.change.op != "changed" {
            t.change.kind = "organisation".to_owned();
        }
    }
    out.sort_by(|a, b| a.change.cmp(&b.change));
    out
}

/// What changes from `old` to `new`, object by object, sorted.
pub fn changes(old: &DocumentSpec, new: &DocumentSpec) -> Vec<Change> {
    diff(old, new).into_iter().map(|t| t.change).collect()
}

/// Every object of `doc` as the JSON that [`changes`] compares, keyed by
/// kind and id (an organisation's membership is kind `membership`), so that
/// a tool can show what changed inside an object.
pub fn object_values(doc: &DocumentSpec) -> BTreeMap<(String, String), Value> {
    objects(doc)
        .into_iter()
        .map(|((kind, id), o)| ((kind.to_owned(), id), o.value))
        .collect()
}

/// The changes from `old` to `new` that `caller` may not make; empty when
/// the whole change is within the caller's rights.
pub fn check(caller: &Identity, old: &DocumentSpec, new: &DocumentSpec) -> Vec<Refusal> {
    let mut refusals = Vec::new();
    for t in diff(old, new) {
        let mut owners = t.owners;
        owners.dedup();
        // Name the mixed owner first: no right can make that change.
        let missing = owners
            .iter()
            .find(|o| matches!(o, Owner::Mixed(_)))
            .or_else(|| owners.iter().find(|o| !o.held_by(caller)));
        if let Some(missing) = missing {
            refusals.push(Refusal {
                op: t.change.op,
                kind: t.change.kind,
                id: t.change.id,
                right: missing.to_string(),
            });
        }
    }
    refusals
}

#[cfg(test)]
mod tests {
    use federation::{FileId, source};

    use super::*;

    fn doc(yaml: &str) -> DocumentSpec {
        source::parse(FileId(0), yaml).unwrap()
    }

    const BASE: &str = r#"
federation: {name: t, trust_domain: t.example}
organisations:
  - {id: dpft, name: D, kind: nhs-trust, membership: {agreement: A, expires: 2035-01-01}}
  - {id: wmcc, name: W, kind: local-authority, membership: {agreement: A, expires: 2035-01-01}}
services:
  - {org: dpft, name: epr, address: 10.0.0.1, ports: [443], protocol: tls}
  - {org: wmcc, name: care, address: 10.0.0.2, ports: [443], protocol: tls}
policies:
  - {id: w-to-epr, description: x, from: {orgs: [wmcc]}, to: {services: [dpft/epr]}, action: allow}
"#;

    fn alice() -> Identity {
        Identity::admin("wmcc", "alice").unwrap()
    }
    fn dora() -> Identity {
        Identity::admin("dpft", "dora").unwrap()
    }
    fn fed() -> Identity {
        Identity::federation_admin("fiona").unwrap()
    }

    #[test]
    fn the_owner_decides_who_reaches_its_services() {
        let old = doc(BASE);
        let new = doc(&BASE.replace("from: {orgs: [wmcc]}", "from: {orgs: [wmcc, dpft]}"));
        assert_eq!(
            changes(&old, &new),
            vec![Change {
                op: "changed".into(),
                kind: "policy".into(),
                id: "w-to-epr".into()
            }]
        );
        assert!(check(&dora(), &old, &new).is_empty());
        let refused = check(&alice(), &old, &new);
        assert_eq!(refused.len(), 1);
        assert_eq!(
            refused[0].to_string(),
            "changed policy `w-to-epr`: needs admin of dpft"
        );
        // Federation admins do not open members' services.
        assert_eq!(check(&fed(), &old, &new).len(), 1);
    }

    #[test]
    fn members_change_their_own_objects_only() {
        let old = doc(BASE);
        let new = doc(&BASE.replace("address: 10.0.0.2", "address: 10.0.0.3"));
        assert!(check(&alice(), &old, &new).is_empty());
        assert_eq!(check(&dora(), &old, &new)[0].right, "admin of wmcc");
        // Moving a service to another organisation needs both.
        let moved = doc(&BASE.replace("{org: wmcc, name: care", "{org: dpft, name: care"));
        let r = check(&alice(), &old, &moved);
        assert!(r.iter().any(|r| r.right == "admin of dpft"), "{r:?}");
    }

    #[test]
    fn membership_is_the_federations() {
        let old = doc(BASE);
        let renewed = doc(&BASE.replace(
            "kind: local-authority, membership: {agreement: A, expires: 2035-01-01}",
            "kind: local-authority, membership: {agreement: A, expires: 2036-01-01}",
        ));
        assert_eq!(check(&alice(), &old, &renewed)[0].kind, "membership");
        assert!(check(&fed(), &old, &renewed).is_empty());
        let renamed = doc(&BASE.replace("name: W,", "name: Westshire,"));
        assert!(check(&alice(), &old, &renamed).is_empty());
        assert_eq!(check(&fed(), &old, &renamed)[0].right, "admin of wmcc");
    }

    #[test]
    fn adding_a_member_is_one_federation_change() {
        let old = doc(BASE);
        let new = doc(&BASE.replace(
            "organisations:\n",
            "organisations:\n  - {id: kvh, name: K, kind: nhs-trust, membership: {agreement: A, expires: 2035-01-01}}\n",
        ));
        assert_eq!(
            changes(&old, &new),
            vec![Change {
                op: "added".into(),
                kind: "organisation".into(),
                id: "kvh".into()
            }]
        );
        assert!(check(&fed(), &old, &new).is_empty());
        assert_eq!(check(&alice(), &old, &new)[0].right, "federation admin");
    }

    #[test]
    fn a_policy_spanning_two_owners_is_nobodys() {
        let old = doc(BASE);
        let new = doc(&BASE.replace(
            "to: {services: [dpft/epr]}",
            "to: {services: [dpft/epr, wmcc/care]}",
        ));
        for who in [alice(), dora(), fed()] {
            let r = check(&who, &old, &new);
            assert!(r[0].right.starts_with("none"), "{r:?}");
        }
    }

    #[test]
    fn revocations_by_the_holder_or_the_federation() {
        let old = doc(BASE);
        let new = doc(&format!(
            "{BASE}revoked_certificates:\n  - {{serial: \"0a:1b\", holder: wmcc/core}}\n"
        ));
        assert!(check(&alice(), &old, &new).is_empty());
        assert!(check(&fed(), &old, &new).is_empty());
        assert_eq!(
            check(&dora(), &old, &new)[0].right,
            "admin of wmcc or federation admin"
        );
    }

    #[test]
    fn edges_and_control_planes_change_nothing() {
        let old = doc(BASE);
        let new = doc(&BASE.replace("address: 10.0.0.2", "address: 10.0.0.3"));
        assert_eq!(
            check(&Identity::edge("wmcc", "core").unwrap(), &old, &new).len(),
            1
        );
        assert_eq!(
            check(&Identity::control("c1").unwrap(), &old, &new).len(),
            1
        );
    }
}
