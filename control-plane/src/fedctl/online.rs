//! The online commands: `apply`, `diff`, `get`, `history`, `rollback`,
//! `status` and the live document for `explain`.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use federation::spec::DocumentSpec;
use federation::{Loaded, Sources};
use jiff::Timestamp;
use serde_json::{Value, json};

use super::conn::Api;
use super::output::{Output, Paint, table};
use super::{Failure, exit, now};
use crate::store::Change;
use crate::{authz, files};

/// The head document as the control plane holds it.
pub struct Head {
    pub version: u64,
    pub sources: Sources,
    pub loaded: Loaded,
}

/// Fetch the head (or `version`) and load it.
pub async fn fetch_document(api: &Api, version: Option<u64>) -> anyhow::Result<Head> {
    let path = match version {
        Some(v) => format!("/v1/document?version={v}"),
        None => "/v1/document".to_owned(),
    };
    let body = api.get(&path).await?;
    let mut sources = Sources::new();
    if let Some(files) = body["files"].as_object() {
        for (name, text) in files {
            sources.add(name.clone(), text.as_str().unwrap_or_default());
        }
    }
    let loaded = federation::load(&sources, now());
    Ok(Head {
        version: body["version"].as_u64().unwrap_or(0),
        sources,
        loaded,
    })
}

/// Read and validate local files; on errors print them and fail (exit 3).
pub fn read_local(paths: &[PathBuf]) -> anyhow::Result<(Sources, Loaded)> {
    let sources =
        files::read_sources(paths).map_err(|e| Failure::new(exit::INPUT, format!("{e:#}")))?;
    let loaded = federation::load(&sources, now());
    if loaded.has_errors() {
        // The errors alone (17 warnings in the demo, whose loopback ranges
        // overlap, hid its one error).
        let (errors, warnings) = files::print_errors(&sources, &loaded)?;
        let paths = paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ");
        return Err(Failure::new(
            exit::INPUT,
            format!(
                "the document has {errors} error(s) (above, with file:line:column){}; nothing was sent. Fix them and run `fedctl check {paths}`",
                if warnings > 0 {
                    format!(" and {warnings} warning(s), not shown")
                } else {
                    String::new()
                },
            ),
        )
        .into());
    }
    Ok((sources, loaded))
}

/// One object's change with what changed inside it.
#[derive(serde::Serialize)]
pub struct Detailed {
    #[serde(flatten)]
    pub change: Change,
    /// Changed fields: name to [old, new].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<(String, Value, Value)>,
}

/// The object diff from `old` to `new`, with changed fields.
pub fn detailed_diff(old: &DocumentSpec, new: &DocumentSpec) -> Vec<Detailed> {
    let (ov, nv) = (authz::object_values(old), authz::object_values(new));
    authz::changes(old, new)
        .into_iter()
        .map(|change| {
            let key = (change.kind.clone(), change.id.clone());
            let fields = match (change.op.as_str(), ov.get(&key), nv.get(&key)) {
                ("changed", Some(o), Some(n)) => field_changes(o, n),
                _ => Vec::new(),
            };
            Detailed { change, fields }
        })
        .collect()
}

fn field_changes(old: &Value, new: &Value) -> Vec<(String, Value, Value)> {
    let mut out = Vec::new();
    fields_under("", old, new, &mut out);
    out
}

/// Changed fields, nested objects as dotted paths (`from.networks`).
fn fields_under(path: &str, old: &Value, new: &Value, out: &mut Vec<(String, Value, Value)>) {
    match (old.as_object(), new.as_object()) {
        (Some(o), Some(n)) => {
            let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
            for k in keys {
                let (a, b) = (
                    o.get(k).unwrap_or(&Value::Null),
                    n.get(k).unwrap_or(&Value::Null),
                );
                if a != b {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    fields_under(&p, a, b, out);
                }
            }
        }
        _ => out.push((
            if path.is_empty() {
                "value".into()
            } else {
                path.to_owned()
            },
            old.clone(),
            new.clone(),
        )),
    }
}

/// `+ policy x`, `~ service a/b` with its fields, `- network c/d`.
pub fn print_diff(diff: &[Detailed], paint: Paint) {
    for d in diff {
        let c = &d.change;
        let line = format!("{} {}", c.kind, c.id);
        match c.op.as_str() {
            "added" => outln!("{}", paint.green(&format!("+ {line}"))),
            "removed" => outln!("{}", paint.red(&format!("- {line}"))),
            _ => {
                outln!("{}", paint.yellow(&format!("~ {line}")));
                for (field, old, new) in &d.fields {
                    outln!(
                        "    {field}: {} -> {}",
                        paint.red(&compact(old)),
                        paint.green(&compact(new))
                    );
                }
            }
        }
    }
}

fn compact(v: &Value) -> String {
    match v {
        Value::Null => "(none)".into(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

fn summary(diff: &[Detailed]) -> String {
    let count = |op: &str| diff.iter().filter(|d| d.change.op == op).count();
    format!(
        "{} added, {} changed, {} removed",
        count("added"),
        count("changed"),
        count("removed")
    )
}

/// Options of `apply` and `rollback` after the change.
pub struct Rollout {
    pub no_wait: bool,
    pub timeout: Duration,
}

/// `fedctl diff -f PATHS`.
pub async fn diff(api: &Api, paths: &[PathBuf], output: Output) -> anyhow::Result<u8> {
    let (_, local) = read_local(paths)?;
    let head = fetch_document(api, None).await?;
    let d = detailed_diff(&head.loaded.spec.to_document(), &local.spec.to_document());
    if !output.machine(&json!({"head": head.version, "changes": d}))? {
        if d.is_empty() {
            outln!("no differences from version {} (the head)", head.version);
        } else {
            print_diff(&d, Paint::stdout());
            outln!(
                "{} against version {} (the head)",
                summary(&d),
                head.version
            );
        }
    }
    Ok(if d.is_empty() { 0 } else { exit::FOUND })
}

/// `fedctl apply -f PATHS`.
pub async fn apply(
    api: &Api,
    paths: &[PathBuf],
    message: Option<String>,
    dry_run: bool,
    expected: Option<u64>,
    rollout: &Rollout,
) -> anyhow::Result<u8> {
    let (sources, local) = read_local(paths)?;
    let head = fetch_document(api, None).await?;
    let d = detailed_diff(&head.loaded.spec.to_document(), &local.spec.to_document());
    let paint = Paint::stdout();
    if d.is_empty() {
        outln!(
            "no changes: version {} (the head) already holds this document",
            head.version
        );
        return Ok(0);
    }
    print_diff(&d, paint);
    outln!("{} against version {}", summary(&d), head.version);
    let files: serde_json::Map<String, Value> = sources
        .iter()
        .map(|(_, f)| (f.name.clone(), Value::String(f.text.clone())))
        .collect();
    let message = message.unwrap_or_else(|| {
        let ids: Vec<String> = d
            .iter()
            .take(3)
            .map(|d| format!("{} {} {}", d.change.op, d.change.kind, d.change.id))
            .collect();
        format!("fedctl apply: {}", ids.join(", "))
    });
    let body = json!({
        "expected_version": expected.unwrap_or(head.version),
        "message": message,
        "files": files,
        "dry_run": dry_run,
    });
    let answer = api.call("POST", "/v1/apply", Some(&body)).await?;
    changed(api, &answer, &sources, dry_run, rollout).await
}

/// After an apply or rollback: the answer, then the rollout.
async fn changed(
    api: &Api,
    answer: &super::conn::Answer,
    sources: &Sources,
    dry_run: bool,
    rollout: &Rollout,
) -> anyhow::Result<u8> {
    match answer.status {
        200 => {}
        422 => {
            print_remote_diagnostics(&answer.body["diagnostics"], sources);
            return Err(api.refused(answer).into());
        }
        403 => {
            if let Some(refusals) = answer.body["refusals"].as_array() {
                for r in refusals {
                    outln!(
                        "refused: {} {} `{}` needs {}",
                        r["op"].as_str().unwrap_or(""),
                        r["kind"].as_str().unwrap_or(""),
                        r["id"].as_str().unwrap_or(""),
                        r["right"].as_str().unwrap_or("")
                    );
                }
            }
            return Err(api.refused(answer).into());
        }
        _ => return Err(api.refused(answer).into()),
    }
    let version = answer.body["version"].as_u64().unwrap_or(0);
    if dry_run || answer.body["applied"] == json!(false) {
        outln!(
            "dry run: the control plane accepts this change (you hold the rights); nothing was applied, the head stays version {version}"
        );
        return Ok(0);
    }
    outln!(
        "{}",
        Paint::stdout().bold(&format!("applied as version {version}"))
    );
    if rollout.no_wait {
        outln!("not waiting for the edges (--no-wait); follow with `fedctl status`");
        return Ok(0);
    }
    follow_rollout(api, version, rollout.timeout).await
}

fn print_remote_diagnostics(report: &Value, _sources: &Sources) {
    if let Some(list) = report["diagnostics"].as_array() {
        for d in list {
            outln!(
                "{}[{}]: {}\n  --> {}:{}:{}{}",
                d["severity"].as_str().unwrap_or("error"),
                d["code"].as_str().unwrap_or(""),
                d["message"].as_str().unwrap_or(""),
                d["file"].as_str().unwrap_or("?"),
                d["line"],
                d["column"],
                d["hint"]
                    .as_str()
                    .map(|h| format!("\n  = hint: {h}"))
                    .unwrap_or_default()
            );
        }
    }
}

/// Each edge's running version, from `/v1/status`.
fn edge_versions(status: &Value) -> Vec<(String, Option<u64>)> {
    status["edges"]
        .as_array()
        .map(|edges| {
            edges
                .iter()
                .map(|e| {
                    (
                        e["edge"].as_str().unwrap_or("?").to_owned(),
                        e["version"].as_u64(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Follow `/v1/status` until every edge runs `version` or `timeout` passes.
pub async fn follow_rollout(api: &Api, version: u64, timeout: Duration) -> anyhow::Result<u8> {
    let started = tokio::time::Instant::now();
    let deadline = started + timeout;
    let paint = Paint::stderr();
    let mut last_line = String::new();
    let mut err = std::io::stderr();
    let polls = (timeout.as_millis() / 200).max(1) as usize + 1;
    for _ in 0..polls {
        let status = api.get("/v1/status").await?;
        let edges = edge_versions(&status);
        let total = edges.len();
        let lagging: Vec<String> = edges
            .iter()
            .filter(|(_, v)| v.is_none_or(|v| v < version))
            .map(|(e, v)| match v {
                Some(v) => format!("{e} (v{v})"),
                None => format!("{e} (no report yet)"),
            })
            .collect();
        let done = total - lagging.len();
        let width = 20usize;
        let filled = (done * width).checked_div(total).unwrap_or(width);
        let bar = format!(
            "[{}{}]",
            paint.green(&"#".repeat(filled)),
            "-".repeat(width - filled)
        );
        let mut line = format!("rollout of version {version} {bar} {done}/{total} edges");
        if !lagging.is_empty() {
            line.push_str(&format!("; lagging: {}", lagging.join(", ")));
        }
        if paint.on() {
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
        } else if line != last_line {
            let _ = writeln!(err, "{line}");
        }
        last_line = line;
        if lagging.is_empty() {
            if paint.on() {
                let _ = writeln!(err);
            }
            outln!(
                "rollout complete: {total}/{total} edges run version {version} ({:.1} s)",
                started.elapsed().as_secs_f64()
            );
            return Ok(0);
        }
        if tokio::time::Instant::now() >= deadline {
            if paint.on() {
                let _ = writeln!(err);
            }
            return Err(Failure::new(
                exit::ROLLOUT,
                format!(
                    "version {version} is applied, but after {} s only {done} of {total} edges run it; lagging: {}. Look at those edges' logs and `fedctl status`; they keep their last version until they take this one",
                    timeout.as_secs(),
                    lagging.join(", ")
                ),
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(Failure::new(
        exit::ROLLOUT,
        format!("version {version}: rollout not followed to the end"),
    )
    .into())
}

/// `fedctl rollback VERSION`.
pub async fn rollback(
    api: &Api,
    to: u64,
    message: Option<String>,
    dry_run: bool,
    expected: Option<u64>,
    rollout: &Rollout,
) -> anyhow::Result<u8> {
    let head = fetch_document(api, None).await?;
    let target = fetch_document(api, Some(to)).await?;
    let d = detailed_diff(
        &head.loaded.spec.to_document(),
        &target.loaded.spec.to_document(),
    );
    if d.is_empty() {
        outln!(
            "version {to} holds the same objects as version {} (the head); nothing to roll back",
            head.version
        );
        return Ok(0);
    }
    print_diff(&d, Paint::stdout());
    outln!(
        "{}: version {} back to the objects of version {to}",
        summary(&d),
        head.version
    );
    let body = json!({
        "to": to,
        "expected_version": expected.unwrap_or(head.version),
        "message": message.unwrap_or_default(),
        "dry_run": dry_run,
    });
    let answer = api.call("POST", "/v1/rollback", Some(&body)).await?;
    changed(api, &answer, &target.sources, dry_run, rollout).await
}

/// `fedctl history`.
pub async fn history(api: &Api, output: Output) -> anyhow::Result<u8> {
    let body = api.get("/v1/history").await?;
    let mut versions: Vec<Value> = body["versions"].as_array().cloned().unwrap_or_default();
    versions.sort_by_key(|v| std::cmp::Reverse(v["version"].as_u64()));
    if output.machine(&versions)? {
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = versions
        .iter()
        .map(|v| {
            let changes = v["changes"].as_array().map_or(0, Vec::len);
            let mut message = v["message"].as_str().unwrap_or("").to_owned();
            if let Some(r) = v["rollback_of"].as_u64() {
                message = format!("[rollback to {r}] {message}");
            }
            vec![
                v["version"].to_string(),
                // To the second, in UTC, saying so.
                v["time"]
                    .as_str()
                    .and_then(|t| t.parse::<Timestamp>().ok())
                    .map_or_else(
                        || v["time"].as_str().unwrap_or("").to_owned(),
                        |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    ),
                v["author"].as_str().unwrap_or("").to_owned(),
                changes.to_string(),
                message,
            ]
        })
        .collect();
    out!(
        "{}",
        table(&["VERSION", "TIME", "AUTHOR", "CHANGES", "MESSAGE"], &rows)
    );
    Ok(0)
}

fn age(reported: Option<&str>, now: Timestamp) -> String {
    match reported.and_then(|r| r.parse::<Timestamp>().ok()) {
        Some(t) => {
            let s = (now - t).get_seconds().max(0);
            format!("{s} s ago")
        }
        None => "never".into(),
    }
}

/// `fedctl status`.
pub async fn status(api: &Api, output: Output) -> anyhow::Result<u8> {
    let s = api.get("/v1/status").await?;
    if output.machine(&s)? {
        return Ok(0);
    }
    let paint = Paint::stdout();
    let head = s["head"].as_u64().unwrap_or(0);
    let replicas = api.each_status().await;
    if replicas.len() > 1 {
        let rows: Vec<Vec<String>> = replicas
            .iter()
            .map(|(addr, r)| match r {
                Ok(v) => vec![
                    addr.clone(),
                    v["replica"].as_str().unwrap_or("?").to_owned(),
                    paint.green("up"),
                    v["store"].as_str().unwrap_or("?").to_owned(),
                    v["head"].to_string(),
                    v["published"].to_string(),
                ],
                Err(e) => vec![
                    addr.clone(),
                    "-".into(),
                    paint.red("unreachable"),
                    e.clone(),
                    "-".into(),
                    "-".into(),
                ],
            })
            .collect();
        outln!(
            "{}",
            table(
                &["ADDRESS", "REPLICA", "STATE", "STORE", "HEAD", "PUBLISHED"],
                &rows
            )
        );
    }
    outln!(
        "control plane {} at {}: store {}, head version {head}, published {}",
        s["replica"].as_str().unwrap_or("?"),
        api.addr(),
        s["store"].as_str().unwrap_or("?"),
        s["published"]
    );
    if let Some(trouble) = s["admin_audit"].as_str() {
        outln!(
            "{}: {trouble}; changes are refused until it can be written",
            paint.red("admin audit log")
        );
    }
    let edges = s["edges"].as_array().cloned().unwrap_or_default();
    let now = now();
    let rows: Vec<Vec<String>> = edges
        .iter()
        .map(|e| {
            let v = e["version"].as_u64();
            let state = match v {
                Some(v) if v >= head => paint.green("current"),
                Some(_) => paint.yellow("lagging"),
                None => paint.red("no report"),
            };
            vec![
                e["edge"].as_str().unwrap_or("?").to_owned(),
                v.map_or("-".into(), |v| v.to_string()),
                state,
                age(e["reported_at"].as_str(), now),
            ]
        })
        .collect();
    outln!();
    out!(
        "{}",
        table(&["EDGE", "VERSION", "STATE", "LAST REPORT"], &rows)
    );
    // The link matrix: each reporting edge's view of each peer.
    let names: Vec<String> = edges
        .iter()
        .map(|e| e["edge"].as_str().unwrap_or("?").to_owned())
        .collect();
    if !names.is_empty() {
        outln!("\nlinks (row: the reporting edge; quic with RTT, tcp fallback, down):");
        let mut headers: Vec<&str> = vec!["FROM \\ TO"];
        headers.extend(names.iter().map(String::as_str));
        let rows: Vec<Vec<String>> = edges
            .iter()
            .map(|e| {
                let me = e["edge"].as_str().unwrap_or("?");
                let links = e["links"].as_array().cloned().unwrap_or_default();
                let mut row = vec![me.to_owned()];
                for peer in &names {
                    let cell = if peer == me {
                        "·".to_owned()
                    } else {
                        match links.iter().find(|l| l["peer"].as_str() == Some(peer)) {
                            Some(l) => match l["transport"].as_str() {
                                Some("quic") => {
                                    format!("quic {:.1}ms", l["rtt_ms"].as_f64().unwrap_or(0.0))
                                }
                                Some(t) => t.to_owned(),
                                None => "?".into(),
                            },
                            None => "-".into(),
                        }
                    };
                    row.push(cell);
                }
                row
            })
            .collect();
        out!("{}", table(&headers, &rows));
        outln!("(- : no flow yet between the two, so no connection)");
    }
    Ok(0)
}

/// What `fedctl get` lists.
#[derive(Clone, Copy, Debug, clap::ValueEnum, PartialEq, Eq)]
pub enum Kind {
    #[value(alias = "org", alias = "organisations")]
    Orgs,
    #[value(alias = "network")]
    Networks,
    #[value(alias = "service")]
    Services,
    #[value(alias = "policy")]
    Policies,
    #[value(alias = "agreement")]
    Agreements,
    #[value(alias = "edge")]
    Edges,
    #[value(alias = "group")]
    Groups,
    #[value(alias = "site")]
    Sites,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Orgs => "orgs",
            Self::Networks => "networks",
            Self::Services => "services",
            Self::Policies => "policies",
            Self::Agreements => "agreements",
            Self::Edges => "edges",
            Self::Groups => "groups",
            Self::Sites => "sites",
        }
    }
}

/// A list's items joined by commas.
fn strs(v: &Value) -> String {
    v.as_array()
        .map(|a| a.iter().map(s).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// `fedctl get KIND [NAME]`.
pub async fn get(api: &Api, kind: Kind, name: Option<&str>, output: Output) -> anyhow::Result<u8> {
    let head = fetch_document(api, None).await?;
    let doc = head.loaded.spec.to_document();
    let (ids, items): (Vec<String>, Vec<Value>) = match kind {
        Kind::Orgs => doc
            .organisations
            .iter()
            .map(|o| (o.value.id.value.clone(), json!(o.value)))
            .unzip(),
        Kind::Networks => doc
            .networks
            .iter()
            .map(|n| {
                (
                    format!("{}/{}", n.value.org.value, n.value.label.value),
                    json!(n.value),
                )
            })
            .unzip(),
        Kind::Services => doc
            .services
            .iter()
            .map(|n| {
                (
                    format!("{}/{}", n.value.org.value, n.value.name.value),
                    json!(n.value),
                )
            })
            .unzip(),
        Kind::Policies => doc
            .policies
            .iter()
            .map(|p| (p.value.id.value.clone(), json!(p.value)))
            .unzip(),
        Kind::Agreements => doc
            .agreements
            .iter()
            .map(|a| (a.value.id.value.clone(), json!(a.value)))
            .unzip(),
        Kind::Edges => doc
            .edges
            .iter()
            .map(|e| {
                (
                    format!("{}/{}", e.value.org.value, e.value.name.value),
                    json!(e.value),
                )
            })
            .unzip(),
        Kind::Groups => doc
            .groups
            .iter()
            .map(|g| (g.value.id.value.clone(), json!(g.value)))
            .unzip(),
        Kind::Sites => doc
            .sites
            .iter()
            .map(|g| (g.value.id.value.clone(), json!(g.value)))
            .unzip(),
    };
    let mut picked: Vec<(String, Value)> = ids.into_iter().zip(items).collect();
    if let Some(n) = name {
        picked.retain(|(id, _)| id == n);
        if picked.is_empty() {
            return Err(Failure::new(
                exit::INPUT,
                format!(
                    "no {} `{n}` in version {} (the head); `fedctl get {}` lists them",
                    kind.name(),
                    head.version,
                    kind.name()
                ),
            )
            .into());
        }
    }
    if matches!(kind, Kind::Edges) {
        // The version each edge runs, as its last report told the control
        // plane (null before any report): in the table and in JSON/YAML.
        let status = api.get("/v1/status").await.unwrap_or(Value::Null);
        let running = edge_versions(&status);
        for (id, v) in &mut picked {
            let ver = running.iter().find(|(e, _)| e == id).and_then(|(_, v)| *v);
            if let Some(o) = v.as_object_mut() {
                o.insert("running_version".into(), json!(ver));
            }
        }
    }
    let values: Vec<Value> = picked.iter().map(|(_, v)| v.clone()).collect();
    if output.machine(&values)? {
        return Ok(0);
    }
    let (headers, rows): (Vec<&str>, Vec<Vec<String>>) = match kind {
        Kind::Orgs => (
            vec!["ID", "NAME", "KIND", "MEMBERSHIP EXPIRES", "ZONES"],
            values
                .iter()
                .map(|v| {
                    vec![
                        s(&v["id"]),
                        s(&v["name"]),
                        s(&v["kind"]),
                        s(&v["membership"]["expires"]),
                        strs(&v["dns"]["zones"]),
                    ]
                })
                .collect(),
        ),
        Kind::Networks => (
            vec!["NETWORK", "PURPOSE", "CIDRS"],
            picked
                .iter()
                .map(|(id, v)| vec![id.clone(), s(&v["purpose"]), strs(&v["cidrs"])])
                .collect(),
        ),
        Kind::Services => (
            vec!["SERVICE", "PROTOCOL", "PORTS", "DNS", "TAGS"],
            picked
                .iter()
                .map(|(id, v)| {
                    vec![
                        id.clone(),
                        s(&v["protocol"]),
                        strs(&v["ports"]),
                        strs(&v["dns"]),
                        strs(&v["tags"]),
                    ]
                })
                .collect(),
        ),
        Kind::Policies => (
            vec![
                "POLICY",
                "ACTION",
                "FROM",
                "TO",
                "PORTS",
                "AGREEMENT",
                "EXPIRES",
            ],
            values
                .iter()
                .map(|v| {
                    let from: Vec<String> = ["orgs", "groups", "networks", "cidrs"]
                        .iter()
                        .filter(|k| v["from"][**k].as_array().is_some_and(|a| !a.is_empty()))
                        .map(|k| format!("{k}:{}", strs(&v["from"][*k])))
                        .collect();
                    let to: Vec<String> = ["services", "tags"]
                        .iter()
                        .filter(|k| v["to"][**k].as_array().is_some_and(|a| !a.is_empty()))
                        .map(|k| format!("{k}:{}", strs(&v["to"][*k])))
                        .collect();
                    vec![
                        s(&v["id"]),
                        s(&v["action"]),
                        from.join(" "),
                        to.join(" "),
                        if strs(&v["ports"]).is_empty() {
                            "all".into()
                        } else {
                            strs(&v["ports"])
                        },
                        s(&v["agreement"]),
                        s(&v["expires"]),
                    ]
                })
                .collect(),
        ),
        Kind::Agreements => (
            vec!["AGREEMENT", "PARTIES", "START", "EXPIRES", "TITLE"],
            values
                .iter()
                .map(|v| {
                    vec![
                        s(&v["id"]),
                        strs(&v["parties"]),
                        s(&v["start"]),
                        s(&v["expires"]),
                        s(&v["title"]),
                    ]
                })
                .collect(),
        ),
        Kind::Edges => (
            vec!["EDGE", "QUIC", "TCP", "DNS", "INGRESS", "RUNNING VERSION"],
            picked
                .iter()
                .map(|(id, v)| {
                    vec![
                        id.clone(),
                        s(&v["overlay"]["quic"]),
                        s(&v["overlay"]["tcp"]),
                        s(&v["dns"]),
                        strs(&v["ingress"]["addresses"]),
                        v["running_version"]
                            .as_u64()
                            .map_or("-".into(), |v| v.to_string()),
                    ]
                })
                .collect(),
        ),
        Kind::Groups => (
            vec!["GROUP", "MEMBERS"],
            values
                .iter()
                .map(|v| vec![s(&v["id"]), strs(&v["members"])])
                .collect(),
        ),
        Kind::Sites => (
            vec!["SITE", "HOST", "NETWORKS"],
            values
                .iter()
                .map(|v| vec![s(&v["id"]), s(&v["host"]), strs(&v["networks"])])
                .collect(),
        ),
    };
    out!("{}", table(&headers, &rows));
    outln!("(version {} of the federation)", head.version);
    Ok(0)
}

/// `fedctl audit-anchors`: the anchors of `edge`'s audit log that every
/// replica listed keeps (an edge reports to the replica it polls), merged,
/// oldest first, one JSON object per line, for `fedgate-edge audit verify
/// --anchors`.
pub async fn audit_anchors(
    api: &Api,
    edge: &str,
    out: Option<&std::path::Path>,
    since: Option<Timestamp>,
) -> anyhow::Result<u8> {
    let answers = api
        .each_get(&format!("/v1/audit-anchors?edge={edge}"))
        .await;
    let mut anchors: Vec<federation::chain::Anchor> = Vec::new();
    let mut answered = 0;
    let mut missing = Vec::new();
    for (addr, answer) in answers {
        match answer.and_then(|v| {
            serde_json::from_value::<Vec<federation::chain::Anchor>>(v["anchors"].clone())
                .map_err(|e| format!("not a list of anchors: {e}"))
        }) {
            Ok(a) => {
                answered += 1;
                anchors.extend(a);
            }
            Err(e) => missing.push((addr, e)),
        }
    }
    if answered == 0 {
        // Every replica refused this identity: say why once, as a refusal.
        if let Some(why) = missing
            .iter()
            .map(|(_, e)| e.strip_prefix("403 Forbidden: "))
            .collect::<Option<Vec<_>>>()
            .and_then(|whys| whys.first().copied())
        {
            return Err(Failure::new(
                exit::REFUSED,
                format!(
                    "refused: {why}\n  ask an admin of {} or of the federation",
                    edge.split_once('/').map_or(edge, |(org, _)| org)
                ),
            )
            .into());
        }
        return Err(Failure::new(
            exit::CONNECT,
            format!(
                "no replica gave the anchors of {edge}:\n  {}",
                missing
                    .iter()
                    .map(|(addr, e)| format!("{addr}: {e}"))
                    .collect::<Vec<_>>()
                    .join("\n  ")
            ),
        )
        .into());
    }
    if let Some(since) = since {
        anchors.retain(|a| a.time.parse::<Timestamp>().is_ok_and(|t| t >= since));
    }
    anchors.sort_by(|a, b| (&a.time, a.seq, &a.replica).cmp(&(&b.time, b.seq, &b.replica)));
    anchors.dedup();
    let mut text = String::new();
    for a in &anchors {
        text.push_str(&serde_json::to_string(a)?);
        text.push('\n');
    }
    match out {
        Some(path) => std::fs::write(path, &text)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?,
        None => out!("{text}"),
    }
    let range = match (
        anchors.iter().map(|a| a.seq).min(),
        anchors.iter().map(|a| a.seq).max(),
    ) {
        (Some(lo), Some(hi)) => format!(", records {lo} to {hi}"),
        _ => String::new(),
    };
    eprintln!(
        "{} anchor(s) of {edge} from {answered} replica(s){range}",
        anchors.len()
    );
    for (addr, e) in &missing {
        eprintln!("warning: no anchors from {addr}: {e}: those it keeps are missing");
    }
    Ok(0)
}
