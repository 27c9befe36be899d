#![forbid(unsafe_code)]

use clap::Parser;

/// The Fedgate control plane: distributes signed, versioned configuration to
/// the edges. Not yet implemented beyond `--help`.
#[derive(Parser)]
#[command(name = "fedgate-control", version, about)]
struct Args {}

fn main() -> anyhow::Result<()> {
    let _args = Args::parse();
    anyhow::bail!("fedgate-control is not implemented yet; see the open issues")
}
