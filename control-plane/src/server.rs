//! `fedgate-control`: the API over HTTPS with mutual TLS.
//!
//! Every caller is identified by its certificate's URI SAN, chained to the
//! federation CA and not revoked in the running version:
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /v1/document[?version=N]` | admins | the files of the head (or version N) |
//! | `POST /v1/apply` | admins | validate, authorise, commit on top of `expected_version` |
//! | `POST /v1/rollback` | admins | a new version with the files of an earlier one |
//! | `GET /v1/history` | admins | every version: author, time, message, changes |
//! | `GET /v1/status` | admins | this replica, its store, why its admin audit log cannot be written (while it cannot), every edge's report |
//! | `GET /v1/snapshot?have=N&digest=D&wait=S` | edges | its own signed snapshot once newer than N (long poll); its signed header alone when the document is still D |
//! | `POST /v1/report` | edges | the version it runs, its peer links and its audit log's head |
//! | `GET /v1/audit-anchors?edge=ORG/NAME` | federation admins, the edge's organisation's admins | the heads of the edge's audit log this replica kept (`anchors`) |
//! | `GET /v1/healthz` | anyone with a certificate | `ok` |
//!
//! A version is acknowledged (200 from apply) only once the store has it
//! durably; snapshots are cut and signed only from stored versions
//! ([`App::follow_store`]), so no edge can run a version that was not acknowledged.
//! Every apply and rollback, accepted or refused, is written to the admin
//! audit log ([`crate::admin_audit`]); while that log cannot be written no
//! change is committed (503, `audit-unavailable`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Extension, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use federation::identity::{Identity, peer_cert};
use federation::mtls::Credentials;
use federation::signed::{SignedParts, SigningKey};
use federation::snapshot::Cutter;
use federation::spec::DocumentSpec;
use federation::{Loaded, Sources};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use jiff::Timestamp;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::admin_audit::AdminAudit;
use crate::credentials::Trust;
use crate::store::{Store, StoreError, Version, VersionMeta};
use crate::{authz, render};

/// The wall clock, for version times, validation and certificate checks.
pub fn now() -> Timestamp {
    #[allow(clippy::disallowed_methods)] // the server is where the clock is read
    Timestamp::now()
}

/// The version the edges are served: its document, and every edge's signed
/// snapshot, cut once per version.
pub struct Published {
    pub version: u64,
    pub files: BTreeMap<String, String>,
    pub document: DocumentSpec,
    /// Edge id (`ORG/NAME`) to its signed snapshot's JSON, whose document
    /// the edges of a group share.
    pub snapshots: HashMap<String, SignedParts>,
    /// Normalised serials revoked in this version.
    pub revoked: HashSet<String>,
}

impl Published {
    fn empty() -> Self {
        Self {
            version: 0,
            files: BTreeMap::new(),
            document: DocumentSpec::default(),
            snapshots: HashMap::new(),
            revoked: HashSet::new(),
        }
    }
}

/// An edge's last report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EdgeReport {
    pub version: u64,
    #[serde(default)]
    pub links: Vec<Value>,
    /// Its audit log's head: the last record on its disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditHead>,
    /// Set by the control plane when the report arrives.
    #[serde(default)]
    pub reported_at: String,
}

/// An audit log's head as an edge reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditHead {
    pub seq: u64,
    pub hash: String,
}

pub struct App {
    pub name: String,
    pub trust_domain: String,
    pub store: Store,
    key: Arc<SigningKey>,
    published: watch::Sender<Arc<Published>>,
    reports: Mutex<BTreeMap<String, EdgeReport>>,
    audit: AdminAudit,
    /// Applies through this replica, one at a time (the store's
    /// compare-and-swap orders replicas).
    apply: tokio::sync::Mutex<()>,
    /// Publications, one at a time: an apply publishes at once and the
    /// store's watch announces the same version; it is cut once.
    publishing: tokio::sync::Mutex<()>,
    /// The model of the version this replica committed last, validated by
    /// its apply: published without loading it again.
    validated: Mutex<Option<(u64, Arc<Loaded>)>>,
    long_poll_max: Duration,
    /// The TLS material in use (replaced without a restart).
    trust: Arc<Trust>,
    /// The edges' audit log heads, kept as anchors of their logs.
    anchors: crate::anchors::Anchors,
    /// Counters for `--metrics`.
    pub(crate) stats: crate::metrics::Stats,
}

/// Who is calling, from the certificate.
#[derive(Debug, Clone)]
pub struct Caller {
    pub identity: Identity,
    pub serial: String,
    /// When the certificate expires: a connection kept open past it is
    /// refused from its next request on ([`still_trusted`]).
    pub not_after: Timestamp,
    /// The chain presented at the handshake (end entity first), and the
    /// replacements of the CA certificates made by then
    /// ([`Trust::generation`]).
    pub chain: Arc<[CertificateDer<'static>]>,
    pub trust_generation: u64,
}

impl Caller {
    /// Why the caller's chain is not trusted under the CA certificates in
    /// use now, if they were replaced after its handshake (which checked it
    /// against those of then).
    fn distrusted_since(&self, trust: &Trust) -> Option<&'static str> {
        if trust.generation() == self.trust_generation {
            return None;
        }
        trust
            .credentials
            .distrusts(&self.chain, rustls::pki_types::UnixTime::now())
    }
}

/// Cut and sign every edge's snapshot of `version`: a document per group of
/// edges that hold the same one ([`Cutter::groups`]), a signature per edge,
/// the groups spread over the machine's cores.
fn sign_all(cutter: &Cutter<'_>, key: &SigningKey, version: u64) -> HashMap<String, SignedParts> {
    let groups = cutter.groups();
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, groups.len().max(1));
    let sign_share = |share: usize| {
        let mut out = Vec::new();
        // Every `threads`-th group: sizes vary, shares stay even.
        for group in groups.iter().skip(share).step_by(threads) {
            let Some(first) = group.first() else { continue };
            let cut = cutter.cut(first);
            for edge in group {
                let signed = key.sign_cut(&cut, edge.id.as_str(), version);
                out.push((edge.id.to_string(), signed));
            }
        }
        out
    };
    let mut snapshots = HashMap::with_capacity(groups.iter().map(Vec::len).sum());
    std::thread::scope(|scope| {
        let handles: Vec<_> = (1..threads)
            .map(|share| scope.spawn(move || sign_share(share)))
            .collect();
        snapshots.extend(sign_share(0));
        for h in handles {
            // A panic in a share is a bug; re-raise it here.
            snapshots.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
    });
    snapshots
}

/// Cut and sign every edge's snapshot of `version`; `validated` is its
/// model when this replica has just validated it (an apply), else it is
/// loaded from the version's files.
fn publish(
    version: &Version,
    key: &SigningKey,
    now: Timestamp,
    validated: Option<Arc<Loaded>>,
) -> Result<Published, String> {
    let loaded = validated.unwrap_or_else(|| {
        let mut sources = Sources::new();
        for (name, text) in &version.files {
            sources.add(name.clone(), text.clone());
        }
        Arc::new(federation::load(&sources, now))
    });
    let Some(fed) = loaded.federation.as_ref() else {
        let first = loaded
            .diagnostics
            .iter()
            .find(|d| d.is_error())
            .map(ToString::to_string)
            .unwrap_or_default();
        return Err(format!(
            "version {} does not validate now: {first}",
            version.meta.version
        ));
    };
    let cutter = Cutter::new(&loaded.spec, fed);
    let snapshots = sign_all(&cutter, key, version.meta.version);
    Ok(Published {
        version: version.meta.version,
        files: version.files.clone(),
        document: cutter.into_document(),
        snapshots,
        revoked: fed.revoked.iter().map(|r| r.serial.clone()).collect(),
    })
}

impl App {
    #[allow(clippy::too_many_arguments)] // one caller, `run`: the parts a replica is made of
    pub fn new(
        name: String,
        trust_domain: String,
        store: Store,
        key: SigningKey,
        audit: AdminAudit,
        long_poll_max: Duration,
        trust: Arc<Trust>,
        anchors: crate::anchors::Anchors,
    ) -> Arc<Self> {
        Arc::new(Self {
            name,
            trust_domain,
            store,
            key: Arc::new(key),
            published: watch::channel(Arc::new(Published::empty())).0,
            reports: Mutex::new(BTreeMap::new()),
            audit,
            apply: tokio::sync::Mutex::new(()),
            publishing: tokio::sync::Mutex::new(()),
            validated: Mutex::new(None),
            long_poll_max,
            trust,
            anchors,
            stats: crate::metrics::Stats::default(),
        })
    }

    /// Why the admin audit log cannot be written, if it cannot.
    pub fn audit_trouble(&self) -> Option<String> {
        self.audit.trouble()
    }

    /// Admin audit records kept in memory until the log takes them.
    pub fn audit_backlog(&self) -> usize {
        self.audit.backlog()
    }

    /// When the certificate this replica presents expires (Unix seconds).
    pub fn certificate_not_after(&self) -> i64 {
        self.trust.not_after()
    }

    /// Each edge's last report to this replica.
    pub fn reports(&self) -> BTreeMap<String, EdgeReport> {
        self.reports.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn published(&self) -> Arc<Published> {
        self.published.borrow().clone()
    }

    /// Publish the store's head, then every new head, whichever replica
    /// committed it. Runs until the store's watch ends.
    pub async fn follow_store(self: Arc<Self>) {
        let mut head = self.store.subscribe();
        loop {
            let target = *head.borrow_and_update();
            self.publish_up_to(target).await;
            if head.changed().await.is_err() {
                return;
            }
        }
    }

    async fn publish_up_to(&self, target: u64) {
        let _one = self.publishing.lock().await;
        if target <= self.published().version {
            return;
        }
        let version = match self.store.get(target).await {
            Ok(Some(v)) => v,
            Ok(None) => {
                tracing::error!(version = target, "head version missing from the store");
                return;
            }
            Err(e) => {
                tracing::error!(version = target, cause = %e, "cannot read version");
                return;
            }
        };
        let key = self.key.clone();
        let validated = self
            .validated
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .filter(|(v, _)| *v == target)
            .map(|(_, l)| l);
        let started = tokio::time::Instant::now();
        // Cutting and signing is CPU work (seconds for 10,000 edges): on a
        // blocking thread, so that long polls and applies go on meanwhile.
        let cut =
            tokio::task::spawn_blocking(move || publish(&version, &key, now(), validated)).await;
        let cut = cut.unwrap_or_else(|e| Err(format!("publication failed: {e}")));
        match cut {
            Ok(p) => {
                self.stats.published(started.elapsed().as_secs_f64());
                tracing::info!(
                    version = p.version,
                    edges = p.snapshots.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "version published"
                );
                crate::service::status(&format!(
                    "replica {}: version {} published ({} edge snapshots signed)",
                    self.name,
                    p.version,
                    p.snapshots.len()
                ));
                self.published.send_replace(Arc::new(p));
            }
            Err(e) => {
                self.stats.publication_failed();
                tracing::error!(version = target, cause = %e, "version not published");
            }
        }
    }

    /// Commit `files` as the next version; the heart of apply and rollback.
    async fn change(
        &self,
        caller: &Caller,
        req: ChangeRequest,
    ) -> Result<(StatusCode, Value), (StatusCode, Value)> {
        let _one = self.apply.lock().await;
        let action = if req.rollback_of.is_some() {
            "rollback"
        } else {
            "apply"
        };
        let head = self.store.head().await.map_err(store_error)?;
        if head != req.expected_version {
            let err = StoreError::Conflict {
                expected: req.expected_version,
                head,
            };
            self.audit_refusal(caller, action, &req, "conflict", json!({"head": head}));
            return Err((
                StatusCode::CONFLICT,
                json!({"error": "conflict", "head": head, "message": err.to_string()}),
            ));
        }
        // Validate the whole new document.
        let mut sources = Sources::new();
        for (name, text) in &req.files {
            sources.add(name.clone(), text.clone());
        }
        let loaded = federation::load(&sources, now());
        if loaded.has_errors() {
            let report = render::json(&sources, &loaded.diagnostics);
            self.audit_refusal(caller, action, &req, "invalid", report.clone());
            return Err((
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": "invalid", "message": "the document has errors; nothing was applied", "diagnostics": report}),
            ));
        }
        // The document it replaces: the published one when it is the head.
        let published = self.published();
        let stored;
        let old: &DocumentSpec = if published.version == head {
            &published.document
        } else {
            stored = match self.store.get(head).await.map_err(store_error)? {
                Some(v) => {
                    let mut s = Sources::new();
                    for (name, text) in &v.files {
                        s.add(name.clone(), text.clone());
                    }
                    federation::load(&s, now()).spec.to_document()
                }
                None => DocumentSpec::default(),
            };
            &stored
        };
        let new = loaded.spec.to_document();
        let refusals = authz::check(&caller.identity, old, &new);
        if !refusals.is_empty() {
            let list: Vec<String> = refusals.iter().map(ToString::to_string).collect();
            self.audit_refusal(caller, action, &req, "forbidden", json!(refusals));
            return Err((
                StatusCode::FORBIDDEN,
                json!({
                    "error": "forbidden",
                    "message": format!("{} may not make this change: {}", caller.identity, list.join("; ")),
                    "refusals": refusals,
                }),
            ));
        }
        let changes = authz::changes(old, &new);
        let warnings = render::json(&sources, &loaded.diagnostics);
        if req.dry_run || changes.is_empty() {
            return Ok((
                StatusCode::OK,
                json!({"version": head, "changes": changes, "applied": false, "dry_run": req.dry_run, "diagnostics": warnings}),
            ));
        }
        // No change is committed that the admin audit log could not tell of.
        if let Err(e) = self.audit.ready() {
            self.audit_refusal(
                caller,
                action,
                &req,
                "audit-unavailable",
                json!({"cause": e.to_string()}),
            );
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "audit-unavailable", "message": format!("{e}; nothing was applied: make room for the log (the control plane writes what it kept once it can), then apply again")}),
            ));
        }
        let version = Version {
            meta: VersionMeta {
                version: head + 1,
                author: caller.identity.to_string(),
                time: now().to_string(),
                message: req.message.clone(),
                changes: changes.clone(),
                rollback_of: req.rollback_of,
            },
            files: req.files.clone(),
        };
        match self.store.commit(head, &version).await {
            Ok(()) => {
                *self.validated.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((head + 1, Arc::new(loaded)));
            }
            Err(StoreError::Conflict { head, .. }) => {
                self.audit_refusal(caller, action, &req, "conflict", json!({"head": head}));
                return Err((
                    StatusCode::CONFLICT,
                    json!({"error": "conflict", "head": head, "message": StoreError::Conflict { expected: req.expected_version, head }.to_string()}),
                ));
            }
            Err(e) => return Err(store_error(e)),
        }
        tracing::info!(
            version = version.meta.version,
            author = %caller.identity,
            action,
            changes = changes.len(),
            comment = %req.message,
            "config change committed"
        );
        self.stats.change(action, "accepted");
        let recorded = self.audit.record(&json!({
            "time": version.meta.time,
            "caller": caller.identity.to_string(),
            "serial": caller.serial,
            "action": action,
            "result": "accepted",
            "expected_version": req.expected_version,
            "version": version.meta.version,
            "rollback_of": req.rollback_of,
            "message": req.message,
            "changes": changes,
        }));
        if let Err(e) = recorded {
            // Committed, and its record kept until the log takes it.
            tracing::error!(version = version.meta.version, cause = %e, "change committed; its admin audit record is not on file yet");
        }
        // Acknowledged once committed: the version is durable. Every replica
        // (this one too) publishes it from the store's head watch
        // (`follow_store`), cutting and signing off the request path.
        Ok((
            StatusCode::OK,
            json!({"version": version.meta.version, "changes": changes, "applied": true, "diagnostics": warnings}),
        ))
    }

    fn audit_refusal(
        &self,
        caller: &Caller,
        action: &str,
        req: &ChangeRequest,
        result: &str,
        detail: Value,
    ) {
        tracing::warn!(caller = %caller.identity, action, result, "config change refused");
        self.stats.change(action, result);
        let _kept_if_not_written = self.audit.record(&json!({
            "time": now().to_string(),
            "caller": caller.identity.to_string(),
            "serial": caller.serial,
            "action": action,
            "result": result,
            "expected_version": req.expected_version,
            "rollback_of": req.rollback_of,
            "message": req.message,
            "detail": detail,
        }));
    }
}

fn store_error(e: StoreError) -> (StatusCode, Value) {
    tracing::error!(cause = %e, "store failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"error": "store", "message": format!("{e}; the change may or may not be stored: read the history (GET /v1/history) before applying again")}),
    )
}

fn error(status: StatusCode, kind: &str, message: String) -> Response {
    (status, Json(json!({"error": kind, "message": message}))).into_response()
}

/// Admins only; the refusal's reason otherwise.
fn require_admin(caller: &Caller) -> Result<(), String> {
    match caller.identity {
        Identity::Admin { .. } | Identity::FederationAdmin { .. } => Ok(()),
        _ => Err(format!(
            "{} is not an admin: this route is for admins",
            caller.identity
        )),
    }
}

/// Edges only: the edge's id, or the refusal's reason.
fn require_edge(caller: &Caller) -> Result<String, String> {
    caller.identity.edge_id().ok_or_else(|| {
        format!(
            "{} is not an edge: this route is for edges",
            caller.identity
        )
    })
}

fn forbidden(message: String) -> Response {
    error(StatusCode::FORBIDDEN, "forbidden", message)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeRequest {
    expected_version: u64,
    #[serde(default)]
    message: String,
    files: BTreeMap<String, String>,
    #[serde(default)]
    dry_run: bool,
    #[serde(skip)]
    rollback_of: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackRequest {
    to: u64,
    expected_version: u64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    dry_run: bool,
}

fn reply(r: Result<(StatusCode, Value), (StatusCode, Value)>) -> Response {
    match r {
        Ok((s, v)) | Err((s, v)) => (s, Json(v)).into_response(),
    }
}

async fn apply(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Json(req): Json<ChangeRequest>,
) -> Response {
    if let Err(m) = require_admin(&caller) {
        return forbidden(m);
    }
    reply(app.change(&caller, req).await)
}

async fn rollback(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Json(req): Json<RollbackRequest>,
) -> Response {
    if let Err(m) = require_admin(&caller) {
        return forbidden(m);
    }
    let target = match app.store.get(req.to).await {
        Ok(Some(v)) => v,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("there is no version {}; see the history", req.to),
            );
        }
        Err(e) => return reply(Err(store_error(e))),
    };
    let message = if req.message.is_empty() {
        format!("roll back to version {}", req.to)
    } else {
        req.message
    };
    reply(
        app.change(
            &caller,
            ChangeRequest {
                expected_version: req.expected_version,
                message,
                files: target.files,
                dry_run: req.dry_run,
                rollback_of: Some(req.to),
            },
        )
        .await,
    )
}

#[derive(Debug, Deserialize)]
struct DocumentQuery {
    version: Option<u64>,
}

async fn document(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<DocumentQuery>,
) -> Response {
    if let Err(m) = require_admin(&caller) {
        return forbidden(m);
    }
    let version = match q.version {
        Some(v) => v,
        None => match app.store.head().await {
            Ok(h) => h,
            Err(e) => return reply(Err(store_error(e))),
        },
    };
    if version == 0 {
        return Json(json!({"version": 0, "files": {}})).into_response();
    }
    match app.store.get(version).await {
        Ok(Some(v)) => Json(json!(v)).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("there is no version {version}"),
        ),
        Err(e) => reply(Err(store_error(e))),
    }
}

async fn history(State(app): State<Arc<App>>, Extension(caller): Extension<Caller>) -> Response {
    if let Err(m) = require_admin(&caller) {
        return forbidden(m);
    }
    match app.store.history().await {
        Ok(h) => Json(json!({"versions": h})).into_response(),
        Err(e) => reply(Err(store_error(e))),
    }
}

async fn status(State(app): State<Arc<App>>, Extension(caller): Extension<Caller>) -> Response {
    if let Err(m) = require_admin(&caller) {
        return forbidden(m);
    }
    let head = match app.store.head().await {
        Ok(h) => h,
        Err(e) => return reply(Err(store_error(e))),
    };
    let published = app.published();
    let reports = app.reports();
    let mut edges: Vec<Value> = published
        .snapshots
        .keys()
        .map(|edge| {
            let r = reports.get(edge);
            json!({
                "edge": edge,
                "version": r.map(|r| r.version),
                "reported_at": r.map(|r| r.reported_at.clone()),
                "audit_seq": r.and_then(|r| r.audit.as_ref()).map(|a| a.seq),
                "links": r.map(|r| r.links.clone()).unwrap_or_default(),
            })
        })
        .collect();
    edges.sort_by(|a, b| a["edge"].as_str().cmp(&b["edge"].as_str()));
    Json(json!({
        "replica": app.name,
        "store": app.store.describe(),
        "head": head,
        "published": published.version,
        "admin_audit": app.audit.trouble(),
        "edges": edges,
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
struct SnapshotQuery {
    #[serde(default)]
    have: u64,
    /// Seconds to wait for a newer version; 0 answers at once.
    #[serde(default)]
    wait: u64,
    /// The digest of the document the edge holds: when the newer version's
    /// document is the same, the answer is its signed header alone.
    #[serde(default)]
    digest: Option<String>,
}

async fn snapshot(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<SnapshotQuery>,
) -> Response {
    let edge = match require_edge(&caller) {
        Ok(e) => e,
        Err(m) => return forbidden(m),
    };
    let wait = Duration::from_secs(q.wait).min(app.long_poll_max);
    let deadline = tokio::time::Instant::now() + wait;
    let mut rx = app.published.subscribe();
    loop {
        let p = rx.borrow_and_update().clone();
        if p.version > q.have {
            return match p.snapshots.get(&edge) {
                Some(parts) => {
                    let body = if q.digest.as_deref() == Some(parts.digest.as_str()) {
                        axum::body::Body::from(parts.header_only.clone())
                    } else {
                        axum::body::Body::new(Chunks::of(parts))
                    };
                    (
                        StatusCode::OK,
                        [
                            ("content-type", "application/json".to_owned()),
                            ("fedgate-version", p.version.to_string()),
                        ],
                        body,
                    )
                        .into_response()
                }
                None => error(
                    StatusCode::NOT_FOUND,
                    "not-found",
                    format!(
                        "edge {edge} is not in version {} of the federation",
                        p.version
                    ),
                ),
            };
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => continue,
            _ => return StatusCode::NO_CONTENT.into_response(),
        }
    }
}

/// A signed snapshot as a response body: its own head, then the document
/// its group shares (not copied: 10,000 edges may take it at once).
struct Chunks(std::collections::VecDeque<Bytes>);

impl Chunks {
    fn of(parts: &SignedParts) -> Self {
        Self(
            [
                Bytes::from(parts.head.clone()),
                Bytes::from_owner(parts.document.clone()),
                Bytes::from_static(SignedParts::TAIL),
            ]
            .into(),
        )
    }
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(hyper::body::Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.0.iter().map(|b| b.len() as u64).sum())
    }
}

#[derive(Debug, Deserialize)]
struct AnchorsQuery {
    edge: String,
}

/// The anchors this replica keeps of `edge`'s audit log: for federation
/// admins, and the admins of the edge's organisation.
async fn audit_anchors(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<AnchorsQuery>,
) -> Response {
    let org = q.edge.split_once('/').map_or("", |(org, _)| org);
    match &caller.identity {
        Identity::FederationAdmin { .. } => {}
        Identity::Admin { org: own, .. } if own == org => {}
        Identity::Admin { org: own, .. } => {
            return forbidden(format!(
                "{} is an admin of {own}: the audit anchors of {} are for the admins of {org} and of the federation",
                caller.identity, q.edge
            ));
        }
        _ => {
            if let Err(m) = require_admin(&caller) {
                return forbidden(m);
            }
        }
    }
    match app.anchors.of(&q.edge) {
        Ok(anchors) => Json(json!({
            "edge": q.edge,
            "replica": app.name,
            "anchors": anchors,
        }))
        .into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unavailable",
            format!("cannot read the audit anchors: {e}"),
        ),
    }
}

async fn report(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Json(mut r): Json<EdgeReport>,
) -> Response {
    let edge = match require_edge(&caller) {
        Ok(e) => e,
        Err(m) => return forbidden(m),
    };
    let now = now();
    r.reported_at = now.to_string();
    tracing::debug!(edge = %edge, version = r.version, "edge report");
    // A head that is not a hash is refused; the version and links the
    // report carries are kept all the same.
    let bad_head = r
        .audit
        .take_if(|h| h.hash.len() != 64 || !h.hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .is_some();
    if let Some(head) = &r.audit
        && let crate::anchors::Offered::WentBack { .. } = app
            .anchors
            .offer(&app.name, &edge, head.seq, &head.hash, now)
    {
        app.stats.went_back(&edge);
    }
    if let Ok(mut reports) = app.reports.lock() {
        reports.insert(edge, r);
    }
    if bad_head {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "audit.hash must be 64 hex digits (the SHA-256 of the last record); the version and links were kept".into(),
        );
    }
    // In return, this replica's admin audit log's head: each edge keeps
    // anchors of it, off this host and out of the federation operator's
    // reach.
    match app.audit.head() {
        Some((seq, hash)) => Json(json!({
            "admin_audit": {"replica": app.name, "seq": seq, "hash": hash}
        }))
        .into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/healthz", get(|| async { "ok\n" }))
        .route("/v1/document", get(document))
        .route("/v1/apply", post(apply))
        .route("/v1/rollback", post(rollback))
        .route("/v1/history", get(history))
        .route("/v1/status", get(status))
        .route("/v1/snapshot", get(snapshot))
        .route("/v1/report", post(report))
        .route("/v1/audit-anchors", get(audit_anchors))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            still_trusted,
        ))
        .with_state(app)
}

/// Every request, not only a connection's first, comes from a certificate
/// still trusted: one revoked by a newer version, expired, or not trusted
/// under CA certificates replaced since the handshake, while its holder
/// keeps an HTTP/1.1 connection open is refused at its next request (403,
/// `untrusted`) and the connection closed, as a new connection would be
/// refused at the handshake.
async fn still_trusted(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let reason = if app.published().revoked.contains(&caller.serial) {
        format!(
            "{} presented revoked certificate serial {}",
            caller.identity, caller.serial
        )
    } else if now() > caller.not_after {
        format!(
            "the certificate of {} expired at {}",
            caller.identity, caller.not_after
        )
    } else if let Some(why) = caller.distrusted_since(&app.trust) {
        format!(
            "the certificate of {} is {why} under the CA certificates in use now",
            caller.identity
        )
    } else {
        return next.run(request).await;
    };
    tracing::warn!(caller = %caller.identity, %reason, "request refused: certificate no longer trusted");
    // And the connection closed after this answer: a caller holding a
    // certificate trusted now (renewed while it kept this connection) is
    // served on its next connection, whose handshake presents it.
    let mut refused = error(StatusCode::FORBIDDEN, "untrusted", reason);
    refused.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    refused
}

/// The largest request body: a whole federation document for apply. axum's
/// default (2 MiB) refused the 3 MiB document of 10,000 edges.
const MAX_BODY: usize = 64 << 20;

/// Who a handshaken client is; `Err` with the reason to log when refused.
/// `generation`: the CA certificates' replacements counted before the
/// handshake ([`Trust::generation`]), so that one made during it is checked
/// again at the first request.
fn identify(
    app: &App,
    certs: Option<&[CertificateDer<'_>]>,
    generation: u64,
) -> Result<Caller, String> {
    let leaf = certs
        .and_then(|c| c.first())
        .ok_or("no client certificate")?;
    let cert = peer_cert(leaf.as_ref(), &app.trust_domain).map_err(|e| e.to_string())?;
    cert.check_validity(now()).map_err(|e| e.to_string())?;
    if app.published().revoked.contains(&cert.serial) {
        return Err(format!(
            "{} presented revoked certificate serial {}",
            cert.identity, cert.serial
        ));
    }
    let chain = certs
        .unwrap_or_default()
        .iter()
        .map(|c| c.clone().into_owned())
        .collect();
    Ok(Caller {
        identity: cert.identity,
        serial: cert.serial,
        not_after: cert.not_after,
        chain,
        trust_generation: generation,
    })
}

/// Serve the API on `listener` until `shutdown` turns true.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    tls: rustls::ServerConfig,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let router = router(app.clone());
    tracing::info!(kind = "api", addr = %listener.local_addr()?, "listening");
    loop {
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(cause = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return Ok(()),
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let app = app.clone();
        tokio::spawn(async move {
            serve_connection(app, acceptor, router, tcp, remote).await;
        });
    }
}

async fn serve_connection(
    app: Arc<App>,
    acceptor: TlsAcceptor,
    router: Router,
    tcp: tokio::net::TcpStream,
    remote: SocketAddr,
) {
    let generation = app.trust.generation();
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tracing::info!(%remote, cause = %e, "client refused: TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!(%remote, "client refused: TLS handshake timed out");
            return;
        }
    };
    let caller = match identify(&app, tls.get_ref().1.peer_certificates(), generation) {
        Ok(c) => c,
        Err(reason) => {
            tracing::warn!(%remote, %reason, "client refused");
            return;
        }
    };
    tracing::debug!(%remote, caller = %caller.identity, "client connected");
    let service = TowerToHyperService::new(router.layer(Extension(caller)));
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .await
    {
        tracing::debug!(%remote, cause = %e, "connection ended with an error");
    }
}

/// How to run a replica.
pub struct Options {
    /// This replica's data directory: the embedded store (unless etcd is
    /// used) and the admin audit log.
    pub data: std::path::PathBuf,
    pub listen: SocketAddr,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub ca: std::path::PathBuf,
    /// The ed25519 signing key (PKCS#8, PEM or DER).
    pub signing_key: std::path::PathBuf,
    /// Files to commit as version 1 when the store is empty.
    pub init: Option<Sources>,
    pub long_poll_max: Duration,
    /// Check `cert`, `key` and `ca` for replacements this often; `None`:
    /// never.
    pub reload_every: Option<Duration>,
    /// Keep an edge's audit log head as an anchor at most this often.
    pub anchor_every: Duration,
    /// Serve `/metrics`, `/healthz` and `/readyz` here (plain HTTP).
    pub metrics: Option<SocketAddr>,
}

pub(crate) fn read(path: &std::path::Path, what: &str) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context as _;
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

/// Read a signing key file: PEM (`-----BEGIN PRIVATE KEY-----`) or raw DER.
pub fn read_signing_key(path: &std::path::Path) -> anyhow::Result<SigningKey> {
    use anyhow::Context as _;
    use rustls::pki_types::PrivatePkcs8KeyDer;
    use rustls::pki_types::pem::PemObject as _;
    let bytes = read(path, "signing key")?;
    let der = match PrivatePkcs8KeyDer::from_pem_slice(&bytes) {
        Ok(k) => k.secret_pkcs8_der().to_vec(),
        Err(_) => bytes,
    };
    SigningKey::from_pkcs8(&der).with_context(|| {
        format!(
            "{} is not an ed25519 signing key; make one with `fedctl certs signing-key --out DIR`",
            path.display()
        )
    })
}

/// Open the store, seed it if asked, and serve until `shutdown`.
pub async fn run(
    opts: Options,
    store: Store,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let cert_pem = read(&opts.cert, "certificate")?;
    let material = federation::mtls::Material::from_pem(
        &cert_pem,
        &read(&opts.key, "private key")?,
        &read(&opts.ca, "CA")?,
    )
    .context("malformed TLS material")?;
    let leaf = {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        CertificateDer::pem_slice_iter(&cert_pem)
            .next()
            .context("no certificate in --cert")??
    };
    let trust_domain = federation::identity::trust_domain_of(leaf.as_ref())
        .with_context(|| format!("{} carries no Fedgate identity", opts.cert.display()))?;
    let me = peer_cert(leaf.as_ref(), &trust_domain)?;
    let Identity::Control { name } = me.identity.clone() else {
        anyhow::bail!(
            "{} is the certificate of {}, not of a control-plane replica (spiffe://{trust_domain}/control/NAME); issue one with `fedctl certs issue --control NAME`",
            opts.cert.display(),
            me.identity
        );
    };
    let key = read_signing_key(&opts.signing_key)?;
    std::fs::create_dir_all(&opts.data)
        .with_context(|| format!("cannot create {}", opts.data.display()))?;
    let audit = AdminAudit::open(&opts.data.join("admin-audit.jsonl"))?;
    let anchors = crate::anchors::Anchors::open(&opts.data, opts.anchor_every, now())?;
    if let Some(sources) = &opts.init
        && store.head().await? == 0
    {
        let loaded = federation::load(sources, now());
        if loaded.has_errors() {
            render::human(sources, &loaded.diagnostics)?;
            anyhow::bail!("--init: the document has errors; nothing was stored");
        }
        let doc = loaded.spec.to_document();
        let version = Version {
            meta: VersionMeta {
                version: 1,
                author: format!("control {name}"),
                time: now().to_string(),
                message: "initial version (--init)".into(),
                changes: authz::changes(&DocumentSpec::default(), &doc),
                rollback_of: None,
            },
            files: sources
                .iter()
                .map(|(_, f)| (f.name.clone(), f.text.clone()))
                .collect(),
        };
        match store.commit(0, &version).await {
            Ok(()) => tracing::info!(version = 1, "store seeded from --init"),
            // Another replica seeded it first: fine.
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    tracing::info!(replica = %name, store = %store.describe(), key = %key.public().id(), "control plane starting");
    let trust = Trust::new(
        Credentials::new(&material).context("malformed TLS material")?,
        me.not_after.as_second(),
    );
    if let Some(every) = opts.reload_every {
        tokio::spawn(crate::credentials::watch(
            trust.clone(),
            me.clone(),
            [opts.cert.clone(), opts.key.clone(), opts.ca.clone()],
            trust_domain.clone(),
            every,
        ));
    }
    let tls = federation::mtls::server_config_with(trust.credentials.clone(), b"http/1.1")?;
    let app = App::new(
        name,
        trust_domain,
        store,
        key,
        audit,
        opts.long_poll_max,
        trust,
        anchors,
    );
    tokio::spawn(app.clone().follow_store());
    let listener = TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let monitoring = match opts.metrics {
        Some(addr) => Some(crate::metrics::start(app.clone(), addr, shutdown.clone()).await?),
        None => None,
    };
    {
        // Under the publication's lock, so that a version published now
        // does not have its status line overwritten by an older one.
        let _one = app.publishing.lock().await;
        let published = match app.published().version {
            0 => "no version published yet".to_owned(),
            v => format!("version {v} published"),
        };
        crate::service::ready(&format!(
            "replica {}: API on {}; {published}",
            app.name,
            listener.local_addr()?
        ));
    }
    let heartbeat = tokio::spawn(crate::service::watchdog());
    serve(app.clone(), listener, tls, shutdown).await?;
    if let Some(m) = monitoring {
        let _ = m.await;
    }
    crate::service::stopping(&format!("replica {}: stopping", app.name));
    let lost = app.audit.close().await;
    heartbeat.abort();
    anyhow::ensure!(
        lost == 0,
        "stopped with {lost} admin audit record(s) not written to {}: each is in this log whole \
         (target fedgate::admin_audit): append them to it, in order, before starting again",
        opts.data.join("admin-audit.jsonl").display()
    );
    tracing::info!("stopped");
    Ok(())
}
