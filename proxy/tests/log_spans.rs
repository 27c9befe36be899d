//! Each log line carries the span of its own flow: with many flows at once,
//! a flow's audit line is logged in the span of that flow (same flow id) and
//! never inside another client connection's span; so, too, in the JSON
//! log (`--log-format json`), every line of which is one object.

mod common;

use std::time::Duration;

use common::*;
use tests::World;

/// One flow through `vip` that must echo `msg`.
async fn echo(vip: std::net::SocketAddr, msg: String) -> Result<(), String> {
    let back = echo_through(vip, msg.as_bytes()).await?;
    if back == msg.as_bytes() {
        Ok(())
    } else {
        Err(format!("echoed {:?}", String::from_utf8_lossy(&back)))
    }
}

/// The value of `key=` in `text` (up to the next space or `}`).
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text.find(key)? + key.len();
    let rest = &text[at..];
    Some(&rest[..rest.find([' ', '}']).unwrap_or(rest.len())])
}

/// Lines whose spans belong to another flow or client connection.
fn misattributed(log: &str) -> Vec<String> {
    let mut bad = Vec::new();
    for line in log.lines() {
        if line.matches("ingress{").count() > 1 || line.matches("flow{").count() > 1 {
            bad.push(line.to_owned());
            continue;
        }
        let Some((spans, event)) = line.split_once("fedgate::audit: flow ") else {
            continue;
        };
        if let (Some(span_flow), Some(event_flow)) = (
            spans
                .split_once("flow{")
                .and_then(|(_, s)| field(s, "flow_id=")),
            field(event, "flow_id="),
        ) && span_flow != event_flow
        {
            bad.push(line.to_owned());
        }
    }
    bad
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_is_in_its_own_flows_span() {
    let w = World::new();
    tests::echo_origin(addr(&w, 11, 7007)).await;
    let doc = document(&w, &Options::default());
    let pair = start_pair(&w, &doc, &doc, &[]);
    // home/echo's VIP (blob, echo: the second address).
    let vip = addr(&w, 130, 7007);
    for round in 0..5 {
        let flows: Vec<_> = (0..16)
            .map(|i| tokio::spawn(echo(vip, format!("round {round} flow {i}"))))
            .collect();
        for f in flows {
            f.await
                .expect("flow task")
                .unwrap_or_else(|e| panic!("{e}\n{}", pair.away.log_text()));
        }
    }
    // Every flow audited at both edges (80 each), then the logs checked.
    for name in ["away", "home"] {
        for _ in 0..200 {
            if audit(&w, name).len() >= 80 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(audit(&w, name).len(), 80, "{name}'s audit records");
    }
    for (name, log) in [
        ("away", pair.away.log_text()),
        ("home", pair.home.log_text()),
    ] {
        let audited = log.matches("fedgate::audit: flow ").count();
        assert!(audited >= 80, "{name} logged {audited} audit lines");
        let bad = misattributed(&log);
        assert!(
            bad.is_empty(),
            "{name}: {} lines in another flow's span:\n{}",
            bad.len(),
            bad.join("\n")
        );
    }
}

/// With `--log-format json` (a SIEM's intake), every line the edges write
/// is one JSON object, and a flow's audit event carries its fields and the
/// span of its own flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_each_flow_in_its_span() {
    let w = World::new();
    tests::echo_origin(addr(&w, 11, 7007)).await;
    let doc = document(&w, &Options::default());
    let json = ["--log-format".to_string(), "json".to_string()];
    let pair = start_pair_with(&w, &doc, &doc, &json, &json);
    echo(addr(&w, 130, 7007), "one flow, logged as JSON".into())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", pair.away.log_text()));
    for name in ["away", "home"] {
        for _ in 0..200 {
            if !audit(&w, name).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(audit(&w, name).len(), 1, "{name}'s audit records");
    }
    for (name, log) in [
        ("away", pair.away.log_text()),
        ("home", pair.home.log_text()),
    ] {
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("{name}: not a JSON line ({e}): {l}"))
            })
            .collect();
        assert!(
            lines
                .iter()
                .any(|l| l["fields"]["message"] == "ready" && l["level"] == "INFO"),
            "{name}: {log}"
        );
        let flow = lines
            .iter()
            .find(|l| l["target"] == "fedgate::audit" && l["fields"]["message"] == "flow")
            .unwrap_or_else(|| panic!("{name}: no audit event: {log}"));
        let record = &audit(&w, name)[0];
        for field in ["flow_id", "service", "result", "rule"] {
            let logged = &flow["fields"][field];
            let filed = if field == "rule" {
                &record["rules"][0]
            } else {
                &record[field]
            };
            assert_eq!(logged, filed, "{name}: {field}: {flow}");
        }
        // In its own span: the home edge's flow (by id), the visited edge's
        // client connection (its ingress and the client's address).
        let spans = flow["spans"].as_array().cloned().unwrap_or_default();
        let own = if name == "home" {
            spans
                .iter()
                .any(|s| s["name"] == "flow" && s["flow_id"] == record["flow_id"])
        } else {
            spans.iter().any(|s| {
                s["name"] == "ingress"
                    && s["kind"] == "vip"
                    && s["remote"]
                        .as_str()
                        .zip(record["src_addr"].as_str())
                        .is_some_and(|(remote, src)| remote.starts_with(&format!("{src}:")))
            })
        };
        assert!(own, "{name}: the audit event in its flow's span: {flow}");
    }
}
