#![forbid(unsafe_code)]

use clap::Parser;

/// The Fedgate edge proxy: joins this member's network to the federation's
/// mutual-TLS overlay. Not yet implemented beyond `--help`.
#[derive(Parser)]
#[command(name = "fedgate-edge", version, about)]
struct Args {}

fn main() -> anyhow::Result<()> {
    let _args = Args::parse();
    anyhow::bail!("fedgate-edge is not implemented yet; see the open issues")
}
