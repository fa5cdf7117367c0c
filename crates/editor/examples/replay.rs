//! Stopgap replay benchmark for `editor-server` until `editor-client --replay` exists:
//! one writer replays an editing trace through the server as fast as the protocol allows
//! (local edits applied at once and composed while one change is in flight), N observers
//! receive it; prints one JSON line with elapsed time (first edit sent to last observer
//! converged), edits/s and whether every replica equals the trace's `endContent`.
//!
//! `cargo run --release -p editor --example replay -- TRACE --port P [--observers N]`

use std::path::PathBuf;
use std::time::Instant;

use editor::client::sync::{Event, SyncClient};
use editor::protocol::{random_key, ClientMsg, ServerMsg, PROTOCOL};
use editor::trace::Trace;
use netutil::Connection;
use tokio::sync::watch;

type Conn = Connection<ServerMsg, ClientMsg>;

async fn join(port: u16, doc: &str, name: &str) -> anyhow::Result<(Conn, SyncClient)> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut conn: Conn = Connection::establish(stream, &PROTOCOL).await?;
    let mut sync = SyncClient::new(random_key());
    conn.send(&sync.join(doc, name)).await?;
    while !sync.is_joined() {
        let msg = conn
            .recv()
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed"))?;
        handle(&mut conn, &mut sync, msg).await?;
    }
    Ok((conn, sync))
}

async fn handle(conn: &mut Conn, sync: &mut SyncClient, msg: ServerMsg) -> anyhow::Result<()> {
    for event in sync.receive(msg)? {
        match event {
            Event::Send(m) => conn.send(&m).await?,
            Event::Error { code, reason } => anyhow::bail!("server error {code:?}: {reason}"),
            _ => {}
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut trace_path = None;
    let (mut port, mut observers) = (8080u16, 0usize);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => port = args.next().unwrap_or_default().parse()?,
            "--observers" => observers = args.next().unwrap_or_default().parse()?,
            _ => trace_path = Some(PathBuf::from(a)),
        }
    }
    let trace = Trace::load(&trace_path.ok_or_else(|| anyhow::anyhow!("no trace given"))?)?;
    let local_start = Instant::now();
    let local = trace.apply_to_rope();
    let local_ms = local_start.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(
        local == trace.end.as_str(),
        "local apply does not match endContent"
    );

    let doc = format!("replay-{}", random_key() % 1_000_000_000);
    let (mut conn, mut sync) = join(port, &doc, "writer").await?;
    let (target_tx, target_rx) = watch::channel(u64::MAX);
    let mut tasks = Vec::new();
    for i in 0..observers {
        let (mut oconn, mut osync) = join(port, &doc, &format!("observer{i}")).await?;
        let mut target = target_rx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                if osync.revision() >= Some(*target.borrow()) {
                    return Ok::<_, anyhow::Error>((osync.text().to_string(), Instant::now()));
                }
                tokio::select! {
                    msg = oconn.recv() => {
                        let msg = msg?.ok_or_else(|| anyhow::anyhow!("closed"))?;
                        handle(&mut oconn, &mut osync, msg).await?;
                    }
                    _ = target.changed() => {}
                }
            }
        }));
    }

    let start = Instant::now();
    for (i, patch) in trace.patches.iter().enumerate() {
        let op = patch.to_op(sync.text().len_chars())?;
        if let Some(msg) = sync.edit(op)? {
            conn.send(&msg).await?;
        }
        if i % 32 == 0 {
            // Take in any acknowledgement that has arrived, without waiting.
            loop {
                let msg = tokio::select! {
                    biased;
                    msg = conn.recv() => msg?.ok_or_else(|| anyhow::anyhow!("closed"))?,
                    _ = std::future::ready(()) => break,
                };
                handle(&mut conn, &mut sync, msg).await?;
            }
        }
    }
    while sync.has_pending() {
        let msg = conn
            .recv()
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed"))?;
        handle(&mut conn, &mut sync, msg).await?;
    }
    let writer_done = start.elapsed();
    let revision = sync.revision().unwrap_or(0);
    let _ = target_tx.send(revision);
    let mut converged = sync.text() == trace.end.as_str();
    let mut last = Instant::now();
    for t in tasks {
        let (text, at) = t.await??;
        converged &= text == trace.end;
        last = last.max(at);
    }
    let elapsed = if observers > 0 {
        last - start
    } else {
        writer_done
    };
    let ms = elapsed.as_secs_f64() * 1e3;
    println!(
        "{{\"edits\":{},\"elapsed_ms\":{ms:.1},\"edits_per_sec\":{:.0},\"observers\":{observers},\"converged\":{converged},\"revisions\":{revision},\"local_rope_ms\":{local_ms:.1}}}",
        trace.patches.len(),
        trace.patches.len() as f64 / elapsed.as_secs_f64(),
    );
    anyhow::ensure!(converged, "a replica differs from endContent");
    Ok(())
}
