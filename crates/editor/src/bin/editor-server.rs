//! `editor-server`: placeholder until its issue lands; it already parses `--help`.

use clap::Parser;

/// Collaborative plain-text editor: server and terminal client.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {}

fn main() -> anyhow::Result<()> {
    let _args = Args::parse();
    netutil::init_logging();
    tracing::warn!("editor-server is not implemented yet");
    Ok(())
}
