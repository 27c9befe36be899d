//! Policy decision and compilation benchmarks over generated federations of
//! 10, 1,000 and 100,000 policies (see bench/README.md).
//!
//! Before criterion runs, each document is generated, loaded and compiled
//! once, and the phases are timed and printed (parse, merge, validate,
//! compile) with the rule count and the verdict mix of the flows decided on.
//!
//! ```text
//! cargo bench -p federation --bench decide
//! ```
// std::time::Instant is banned in the workspace (tokio's paused time); this
// bench is plain synchronous code timing itself once, outside criterion.
#![allow(clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use federation::model::Federation;
use federation::{Flow, PolicySet, Sources, source, validate};
use jiff::Timestamp;

#[path = "common/gen.rs"]
mod fedgen; // `gen` is a reserved keyword in edition 2024

const SIZES: [usize; 3] = [10, 1_000, 100_000];
const FLOWS: usize = 1_024;
const SEED: u64 = 1;

fn now() -> Timestamp {
    "2026-06-01T00:00:00Z".parse().expect("a valid timestamp")
}

struct Fixture {
    policies: usize,
    yaml: String,
    fed: Federation,
    set: PolicySet,
    flows: Vec<fedgen::FlowSpec>,
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

impl Fixture {
    /// Generate, load and compile once, printing how long each phase took.
    fn new(policies: usize) -> Self {
        let t = Instant::now();
        let generated = fedgen::generate(policies, None, SEED);
        let yaml = generated.to_yaml();
        let t_gen = t.elapsed();

        let mut sources = Sources::new();
        let file = sources.add("generated.yaml", yaml.as_str());
        let now = now();
        let t0 = Instant::now();
        // The steps of `federation::load`, timed one by one.
        let doc = source::parse(file, &yaml)
            .unwrap_or_else(|d| panic!("the generated document does not parse: {d:?}"));
        let t1 = Instant::now();
        let mut diagnostics = Vec::new();
        let spec = source::merge(vec![(file, doc)], &mut diagnostics);
        let t2 = Instant::now();
        let checked = validate::validate(&spec, &validate::Scope::Full, now);
        let t3 = Instant::now();
        diagnostics.extend(checked.diagnostics);
        let errors: Vec<_> = diagnostics
            .iter()
            .filter(|d| d.is_error())
            .take(5)
            .collect();
        assert!(
            errors.is_empty(),
            "the generated document has errors: {errors:#?}"
        );
        let fed = checked
            .federation
            .expect("a federation when there is no error");
        let t4 = Instant::now();
        let set = PolicySet::compile(&fed);
        let t5 = Instant::now();

        let flows = generated.flows(FLOWS, SEED);
        let fixture = Self {
            policies,
            yaml,
            fed,
            set,
            flows,
        };
        let mut mix: BTreeMap<&str, usize> = BTreeMap::new();
        for f in &fixture.flows {
            *mix.entry(fixture.set.decide(&flow(f), now).reason.label())
                .or_default() += 1;
        }
        println!(
            "[{policies} policies] {} orgs, {} services, {:.1} MB YAML (generated in {}), {} warnings",
            fixture.fed.orgs.len(),
            fixture.fed.services.len(),
            fixture.yaml.len() as f64 / 1e6,
            ms(t_gen),
            diagnostics.len(),
        );
        println!(
            "[{policies} policies] one-shot: parse {} + merge {} + validate {} = loaded {}; compile {}; YAML->compiled {}; {} rules",
            ms(t1 - t0),
            ms(t2 - t1),
            ms(t3 - t2),
            ms(t3 - t0),
            ms(t5 - t4),
            ms((t3 - t0) + (t5 - t4)),
            fixture.set.rule_count(),
        );
        println!("[{policies} policies] the {FLOWS} flows decided on: {mix:?}");
        fixture
    }
}

fn flow(f: &fedgen::FlowSpec) -> Flow<'_> {
    Flow {
        src_org: &f.src_org,
        src_network: f.src_network,
        src_addr: f.src_addr,
        service: &f.service,
        port: f.port,
    }
}

/// One criterion iteration is one decision: the timed loop walks the fixed
/// list of flows, so the reported time is per decision.
fn bench_decide(c: &mut Criterion, fixtures: &[Fixture]) {
    let now = now();
    let mut group = c.benchmark_group("decide");
    group.throughput(Throughput::Elements(1));
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for fx in fixtures {
        let flows: Vec<Flow<'_>> = fx.flows.iter().map(flow).collect();
        group.bench_with_input(
            BenchmarkId::from_parameter(fx.policies),
            &flows,
            |b, flows| {
                let mut i = 0usize;
                b.iter(|| {
                    let f = &flows[i % FLOWS];
                    i = i.wrapping_add(1);
                    black_box(fx.set.decide(black_box(f), now))
                });
            },
        );
    }
    group.finish();
}

fn bench_compile(c: &mut Criterion, fixtures: &[Fixture]) {
    let mut group = c.benchmark_group("compile");
    for fx in fixtures {
        if fx.policies >= 100_000 {
            group.sample_size(10);
            group.warm_up_time(Duration::from_secs(1));
            group.measurement_time(Duration::from_secs(10));
        } else {
            group.sample_size(30);
            group.warm_up_time(Duration::from_secs(1));
            group.measurement_time(Duration::from_secs(3));
        }
        group.bench_with_input(
            BenchmarkId::from_parameter(fx.policies),
            &fx.fed,
            |b, fed| {
                b.iter(|| PolicySet::compile(black_box(fed)));
            },
        );
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let fixtures: Vec<Fixture> = SIZES.iter().map(|&n| Fixture::new(n)).collect();
    bench_decide(&mut c, &fixtures);
    bench_compile(&mut c, &fixtures);
    c.final_summary();
}
