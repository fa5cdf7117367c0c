//! `editor-client`: joins a document on an `editor-server`. Line mode for now: prints the
//! document, appends each input line, prints what others insert.

use std::io::IsTerminal;

use clap::Parser;
use editor::client::lines::{self, LineOptions};
use netutil::{ConnectOptions, Family};

/// Collaborative plain-text editor client.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Server host name or IPv4/IPv6 address.
    #[arg(default_value = "localhost")]
    host: String,
    /// Server TCP port.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Document to edit (`[A-Za-z0-9._-]`, up to 64 characters).
    #[arg(long = "doc", default_value = "default")]
    document: String,
    /// Name shown to other participants (default: your login name).
    #[arg(long)]
    name: Option<String>,
    /// Print the document and exit.
    #[arg(long)]
    print: bool,
    /// Line mode even on a terminal: each input line is appended to the document.
    #[arg(long)]
    lines: bool,
    /// Connect over IPv4 only.
    #[arg(short = '4', conflicts_with = "ipv6")]
    ipv4: bool,
    /// Connect over IPv6 only.
    #[arg(short = '6')]
    ipv6: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("editor-client: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    netutil::init_logging();
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if interactive && !args.lines && !args.print {
        tracing::warn!("full-screen mode is not implemented yet; using line mode");
    }
    let name = args
        .name
        .or_else(|| std::env::var("USER").ok())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "anonymous".to_owned());
    let family = match (args.ipv4, args.ipv6) {
        (true, _) => Family::V4,
        (_, true) => Family::V6,
        _ => Family::Any,
    };
    let options = LineOptions {
        host: args.host,
        port: args.port,
        document: args.document,
        name,
        connect: ConnectOptions {
            family,
            ..ConnectOptions::default()
        },
        print_only: args.print,
    };
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut stdout = std::io::stdout();
    lines::run(&options, stdin, &mut stdout).await?;
    Ok(())
}
