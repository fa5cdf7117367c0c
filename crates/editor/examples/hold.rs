//! Load for memory benchmarks of `editor-server`: opens connections or fills documents,
//! prints `ready`, and holds everything open until stdin closes.
//!
//! `hold --port P --connections N [--doc NAME]`: N idle clients joined to one document.
//! `hold --port P --documents M --size BYTES`: M documents of BYTES each, one client on each.
//! The clients speak plain TCP, so the server runs with `--no-tls`.

use clap::Parser;
use editor::client::sync::{Event, SyncClient};
use editor::protocol::{random_key, ClientMsg, ServerMsg, PROTOCOL};
use netutil::Connection;
use tokio::io::AsyncReadExt;

type Conn = Connection<ServerMsg, ClientMsg>;

async fn join(port: u16, doc: &str) -> anyhow::Result<(Conn, SyncClient)> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut conn: Conn = Connection::establish(stream, &PROTOCOL).await?;
    let mut sync = SyncClient::new(random_key());
    conn.send(&sync.join(doc, "holder")).await?;
    while !sync.is_joined() || sync.has_pending() {
        step(&mut conn, &mut sync).await?;
    }
    Ok((conn, sync))
}

async fn step(conn: &mut Conn, sync: &mut SyncClient) -> anyhow::Result<()> {
    let msg = conn
        .recv()
        .await?
        .ok_or_else(|| anyhow::anyhow!("closed"))?;
    for event in sync.receive(msg)? {
        match event {
            Event::Send(m) => conn.send(&m).await?,
            Event::Error { code, reason } => anyhow::bail!("{code:?}: {reason}"),
            _ => {}
        }
    }
    Ok(())
}

/// Load for editor-server memory measurements: opens idle clients and/or fills
/// documents, prints `ready`, and holds everything open until stdin closes.
#[derive(Parser, Debug)]
#[command(
    after_help = "The clients speak plain TCP: start the server with --no-tls.\n\n\
Examples:\n  cargo run --release -p editor --example hold -- --port 8080 --connections 1000\n  \
cargo run --release -p editor --example hold -- --port 8080 --documents 100 --size 1000000 --doc big"
)]
struct Args {
    /// The editor-server's port on 127.0.0.1.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Idle clients joined to the document --doc.
    #[arg(long, default_value_t = 0)]
    connections: usize,
    /// Documents to fill (named DOC-0, DOC-1, ...), one client on each.
    #[arg(long, default_value_t = 0)]
    documents: usize,
    /// Bytes written into each of the --documents.
    #[arg(long, default_value_t = 0)]
    size: usize,
    /// The document's name (the prefix of the names with --documents).
    #[arg(long, default_value = "idle")]
    doc: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Args {
        port,
        connections,
        documents,
        size,
        doc,
    } = Args::parse();
    let mut held = Vec::new();
    for _ in 0..connections {
        held.push(join(port, &doc).await?);
    }
    let line = format!("{}\n", "x".repeat(79));
    let text = line.repeat(size / line.len() + 1)[..size].to_owned();
    for i in 0..documents {
        let (mut conn, mut sync) = join(port, &format!("{doc}-{i}")).await?;
        if let Some(msg) = sync.insert(0, &text)? {
            conn.send(&msg).await?;
        }
        while sync.has_pending() {
            step(&mut conn, &mut sync).await?;
        }
        held.push((conn, sync));
    }
    println!("ready");
    let mut sink = Vec::new();
    tokio::io::stdin().read_to_end(&mut sink).await?;
    drop(held);
    Ok(())
}
