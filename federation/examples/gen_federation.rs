//! Print a synthetic federation document with N policies, for benchmarks.
//!
//! ```text
//! cargo run --release -p federation --example gen_federation -- --policies 100000 [--orgs K] [--seed S] > federation.yaml
//! cargo run --release -p federation --example gen_federation -- --policies 5000 --orgs 1000 --edges-per-org 10 > federation.yaml
//! ```
//!
//! The output is deterministic for given arguments and loads with no errors
//! (`federation::load`, `fedctl check`); it may carry warnings. The generator
//! itself lives in `benches/common/gen.rs`, shared with the `decide` bench.

use std::io::Write as _;
use std::process::ExitCode;

#[path = "../benches/common/gen.rs"]
mod fedgen; // `gen` is a reserved keyword in edition 2024

const USAGE: &str = "usage: gen_federation --policies N [--orgs K] [--edges-per-org E] [--seed S]
  --policies N       number of policies (required)
  --orgs K           number of organisations (default: max(6, N/500), at most 400;
                     up to 4096 with --edges-per-org)
  --edges-per-org E  edges per organisation, 1 to 250 (default: 1)
  --seed S           PRNG seed (default: 1)";

fn main() -> ExitCode {
    let mut policies = None;
    let mut orgs = None;
    let mut edges_per_org = None;
    let mut seed = 1u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        if name == "-h" || name == "--help" {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        let Some(value) = inline.or_else(|| args.next()) else {
            eprintln!("gen_federation: `{name}` needs a value\n{USAGE}");
            return ExitCode::from(2);
        };
        let Ok(n) = value.parse::<u64>() else {
            eprintln!("gen_federation: `{name} {value}`: not a number\n{USAGE}");
            return ExitCode::from(2);
        };
        match name.as_str() {
            "--policies" => policies = Some(n as usize),
            "--orgs" => orgs = Some(n as usize),
            "--edges-per-org" => edges_per_org = Some(n as usize),
            "--seed" => seed = n,
            _ => {
                eprintln!("gen_federation: unknown argument `{name}`\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(policies) = policies else {
        eprintln!("gen_federation: `--policies N` is required\n{USAGE}");
        return ExitCode::from(2);
    };
    let max_orgs = if edges_per_org.is_some() {
        fedgen::MAX_ORGS
    } else {
        400
    };
    if orgs.is_some_and(|k| !(2..=max_orgs).contains(&k)) {
        eprintln!("gen_federation: `--orgs` must be between 2 and {max_orgs}\n{USAGE}");
        return ExitCode::from(2);
    }
    if edges_per_org.is_some_and(|e| !(1..=250).contains(&e)) {
        eprintln!("gen_federation: `--edges-per-org` must be between 1 and 250\n{USAGE}");
        return ExitCode::from(2);
    }
    let generated = match edges_per_org {
        Some(e) => fedgen::generate_shape(
            policies,
            orgs.unwrap_or_else(|| fedgen::default_orgs(policies)),
            e,
            seed,
        ),
        None => fedgen::generate(policies, orgs, seed),
    };
    let yaml = generated.to_yaml();
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(yaml.as_bytes()).and_then(|()| out.flush()) {
        eprintln!("gen_federation: cannot write: {e}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
