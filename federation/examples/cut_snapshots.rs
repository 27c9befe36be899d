//! Time cutting and signing every edge's snapshot of a federation, the simple
//! way ([`EdgeSnapshot::build`] per edge, timed on a sample) and the fast way
//! ([`Cutter`]), phase by phase, on one core. For the control plane's fan-out
//! bench (bench/README.md).
//!
//! ```text
//! cargo run --release -p federation --example cut_snapshots -- federation.yaml [SAMPLE]
//! ```

// A benchmark reads the real clock.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::process::ExitCode;
use std::time::Instant;

use federation::signed::SigningKey;
use federation::snapshot::Cutter;
use federation::{EdgeSnapshot, Sources};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: cut_snapshots FILE [SAMPLE]");
        return ExitCode::from(2);
    };
    let sample: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(50);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cut_snapshots: {path}: {e}");
            return ExitCode::from(1);
        }
    };
    let Ok(key) = SigningKey::generate_pkcs8().and_then(|d| SigningKey::from_pkcs8(&d)) else {
        eprintln!("cut_snapshots: no signing key");
        return ExitCode::from(1);
    };
    let t = Instant::now();
    let mut sources = Sources::new();
    sources.add(path.clone(), text);
    let loaded = federation::load(&sources, jiff::Timestamp::now());
    let Some(fed) = loaded.federation.as_ref() else {
        eprintln!("cut_snapshots: {path} has errors (run fedctl check)");
        return ExitCode::from(1);
    };
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    println!(
        "load (parse, validate): {:.0} ms, {} edges",
        ms(t),
        fed.edges.len()
    );

    let n = sample.min(fed.edges.len()).max(1);
    let step = fed.edges.len() / n;
    let t = Instant::now();
    let mut bytes = 0;
    for e in fed.edges.iter().step_by(step.max(1)).take(n) {
        let Ok(snap) = EdgeSnapshot::build(&loaded.spec, fed, e.id.as_str(), 2) else {
            return ExitCode::from(1);
        };
        bytes += key.sign(&snap).to_json().len();
    }
    let per = ms(t) / n as f64;
    if let Some(e) = fed.edges.first()
        && let Ok(snap) = EdgeSnapshot::build(&loaded.spec, fed, e.id.as_str(), 2)
    {
        let d = &snap.document;
        let size = |v: serde_json::Result<Vec<u8>>| v.map_or(0, |b| b.len()) as f64 / 1024.0;
        println!(
            "what {} holds (items, KiB of JSON): organisations {} {:.1}, networks {} {:.1}, edges {} {:.1}, services {} {:.1}, groups {} {:.1}, agreements {} {:.1}, policies {} {:.1}, revoked {} {:.1}",
            e.id,
            d.organisations.len(),
            size(serde_json::to_vec(&d.organisations)),
            d.networks.len(),
            size(serde_json::to_vec(&d.networks)),
            d.edges.len(),
            size(serde_json::to_vec(&d.edges)),
            d.services.len(),
            size(serde_json::to_vec(&d.services)),
            d.groups.len(),
            size(serde_json::to_vec(&d.groups)),
            d.agreements.len(),
            size(serde_json::to_vec(&d.agreements)),
            d.policies.len(),
            size(serde_json::to_vec(&d.policies)),
            d.revoked_certificates.len(),
            size(serde_json::to_vec(&d.revoked_certificates)),
        );
    }
    println!(
        "simple: build + sign + envelope {per:.2} ms per edge (sample of {n}, {:.0} KiB each): {:.1} s for every edge",
        bytes as f64 / n as f64 / 1024.0,
        per * fed.edges.len() as f64 / 1e3
    );

    let t = Instant::now();
    let cutter = Cutter::new(&loaded.spec, fed);
    let groups = cutter.groups();
    println!("fast: prepare {:.0} ms, {} groups", ms(t), groups.len());
    let (mut cut_ms, mut sign_ms, mut total, mut shared) = (0.0, 0.0, 0, 0);
    for group in &groups {
        let t = Instant::now();
        let cut = cutter.cut(group[0]);
        cut_ms += ms(t);
        shared += cut.document_len();
        for e in group {
            let t = Instant::now();
            let signed = key.sign_cut(&cut, e.id.as_str(), 2);
            sign_ms += ms(t);
            total += signed.len();
        }
    }
    println!(
        "fast: cut (and digest) {cut_ms:.0} ms, sign (header and envelope per edge) {sign_ms:.0} ms: {:.0} ms on one core; {:.0} MiB signed in all, {:.0} MiB of it documents shared by the edges of a group",
        cut_ms + sign_ms,
        total as f64 / 1048576.0,
        shared as f64 / 1048576.0
    );
    ExitCode::SUCCESS
}
