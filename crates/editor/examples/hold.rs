//! Load for memory benchmarks of `editor-server`: opens connections or fills documents,
//! prints `ready`, and holds everything open until stdin closes.
//!
//! `hold --port P --connections N [--doc NAME]`: N idle clients joined to one document.
//! `hold --port P --documents M --size BYTES`: M documents of BYTES each, one client on each.

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut port, mut connections, mut documents, mut size) = (8080u16, 0usize, 0usize, 0usize);
    let mut doc = "idle".to_owned();
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_default();
        match a.as_str() {
            "--port" => port = v.parse()?,
            "--connections" => connections = v.parse()?,
            "--documents" => documents = v.parse()?,
            "--size" => size = v.parse()?,
            "--doc" => doc = v,
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
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
