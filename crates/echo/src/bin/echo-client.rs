//! `echo-client`: placeholder until its issue lands; it already parses `--help`.

use clap::Parser;

/// Protocol-independent echo server and client (RFC 862) over IPv4 and IPv6, TCP and UDP.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {}

fn main() -> anyhow::Result<()> {
    let _args = Args::parse();
    netutil::init_logging();
    tracing::warn!("echo-client is not implemented yet");
    Ok(())
}
