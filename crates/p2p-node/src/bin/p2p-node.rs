//! `p2p-node`: placeholder until its issue lands; it already parses `--help`.

use clap::Parser;

/// Peer-to-peer cluster: leader election, file index and swarm downloads.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {}

fn main() -> anyhow::Result<()> {
    let _args = Args::parse();
    netutil::init_logging();
    tracing::warn!("p2p-node is not implemented yet");
    Ok(())
}
