//! Hostile clients for issue 14's benchmark (bench/editor_flood.sh): each attack runs
//! until stdin closes, printing `ready` once its first round is in place and a JSON line
//! of what it did at the end. Reconnects whenever the server closes it, as a persistent
//! attacker would, so the attack lasts as long as the measurement; with `--once`, every
//! connection makes its attack once and then only holds on (issue 14's description).
//!
//! ```text
//! flood --port P presence  [--connections 50] [--mb-per-sec 25]
//! flood --port P partial   [--connections 200] [--frame-bytes 8388607]
//! flood --port P nonreader [--connections 200] [--doc-bytes 6000000] [--wave-secs 5]
//! ```
//!
//! - `presence`: each connection joins a document of its own and sends `Presence` frames,
//!   paced so that all together offer MB_PER_SEC (whole frames only, never cut).
//! - `partial`: each connection joins, announces a frame of FRAME_BYTES, sends all of it
//!   but the last byte and then nothing; when the server closes it, it starts over.
//! - `nonreader`: one writer fills a document with DOC_BYTES; then CONNECTIONS clients
//!   join it and never read. Every WAVE_SECS the whole wave is replaced by a fresh one
//!   (a dropped non-reader cannot tell without reading).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use editor::client::link::{Conn, Target};
use editor::client::sync::{Event, SyncClient};
use editor::presence::Selection;
use editor::protocol::{random_key, ClientMsg};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::TlsArgs;

/// Hostile clients against editor-server (see the module docs).
#[derive(Parser, Debug)]
#[command(after_help = "Examples (bench/editor_flood.sh runs each attack):
  cargo run --release -p editor --example flood -- --port 8080 --no-tls presence
  cargo run --release -p editor --example flood -- --port 8080 --no-tls --once partial
  cargo run --release -p editor --example flood -- --port 8080 --no-tls nonreader --help")]
struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    #[command(flatten)]
    tls: TlsArgs,
    /// Attack once: no reconnecting after the server closes a connection, no new waves.
    #[arg(long)]
    once: bool,
    #[command(subcommand)]
    attack: Attack,
}

#[derive(Subcommand, Debug)]
enum Attack {
    /// Presence frames from many connections, each on its own document.
    Presence {
        #[arg(long, default_value_t = 50)]
        connections: usize,
        /// Offered load of all connections together, in MB/s.
        #[arg(long, default_value_t = 25.0)]
        mb_per_sec: f64,
    },
    /// Large frames that never complete.
    Partial {
        #[arg(long, default_value_t = 200)]
        connections: usize,
        /// The length each connection announces (it sends one byte less).
        #[arg(long, default_value_t = 8 * 1024 * 1024 - 1)]
        frame_bytes: usize,
    },
    /// Joiners of a large document that never read.
    Nonreader {
        #[arg(long, default_value_t = 200)]
        connections: usize,
        #[arg(long, default_value_t = 6_000_000)]
        doc_bytes: usize,
        /// Seconds between replacing every non-reader with a fresh one.
        #[arg(long, default_value_t = 5)]
        wave_secs: u64,
    },
}

/// What the attack did, for the summary line.
#[derive(Default)]
struct Counters {
    bytes: AtomicU64,
    connects: AtomicU64,
    closed_by_server: AtomicU64,
}

fn join_msg(document: &str) -> ClientMsg {
    ClientMsg::Join {
        document: document.into(),
        name: "mallory".into(),
        key: random_key(),
        known_revision: None,
        token: None,
    }
}

/// The bytes of one whole frame carrying `msg`, length prefix included.
fn frame(conn: &Conn, msg: &ClientMsg) -> anyhow::Result<Vec<u8>> {
    let payload = netutil::connection::encode(msg, conn.peer())?;
    let mut frame = u32::try_from(payload.len())?.to_be_bytes().to_vec();
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Connects and sends a Join; with `read_snapshot`, waits for the document to arrive.
async fn join(
    target: &Target,
    doc: &str,
    read_snapshot: bool,
    c: &Counters,
) -> anyhow::Result<Conn> {
    let mut conn = target.connect().await?;
    c.connects.fetch_add(1, Relaxed);
    conn.send(&join_msg(doc)).await?;
    if read_snapshot {
        while let Some(msg) = conn.recv().await? {
            if matches!(msg, editor::protocol::ServerMsg::Snapshot { .. }) {
                return Ok(conn);
            }
        }
        anyhow::bail!("closed before the snapshot");
    }
    Ok(conn)
}

/// One presence flooder, reconnecting whenever the server gives up on it.
async fn presence(target: Target, doc: String, bytes_per_sec: f64, once: bool, c: Arc<Counters>) {
    loop {
        let Ok(mut conn) = join(&target, &doc, true, &c).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let msg = ClientMsg::Presence {
            base_revision: 0,
            selection: Some(Selection { anchor: 0, head: 0 }),
        };
        let Ok(one) = frame(&conn, &msg) else { return };
        // Every 10 ms, a burst of whole frames worth a hundredth of the rate.
        let per_tick = (bytes_per_sec / 100.0 / one.len() as f64).ceil().max(1.0) as usize;
        let burst = one.repeat(per_tick);
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if conn.stream_mut().write_all(&burst).await.is_err() {
                break;
            }
            c.bytes.fetch_add(burst.len() as u64, Relaxed);
        }
        c.closed_by_server.fetch_add(1, Relaxed);
        if once {
            return;
        }
    }
}

/// One partial-frame holder: announce, send all but the last byte, wait to be closed.
async fn partial(target: Target, doc: String, announced: usize, once: bool, c: Arc<Counters>) {
    let chunk = vec![0u8; 64 * 1024];
    loop {
        let Ok(mut conn) = join(&target, &doc, false, &c).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let stream = conn.stream_mut();
        let Ok(len) = u32::try_from(announced) else {
            return;
        };
        let mut ok = stream.write_all(&len.to_be_bytes()).await.is_ok();
        let mut left = announced.saturating_sub(1);
        while ok && left > 0 {
            let n = left.min(chunk.len());
            ok = stream.write_all(&chunk[..n]).await.is_ok();
            if ok {
                c.bytes.fetch_add(n as u64, Relaxed);
                left -= n;
            }
        }
        // Reading is allowed here: what we wait for is the server closing us.
        let mut sink = vec![0u8; 64 * 1024];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        c.closed_by_server.fetch_add(1, Relaxed);
        if once {
            return;
        }
    }
}

/// Fills `doc` with `bytes` characters through a real client and keeps reading for it.
async fn fill(target: &Target, doc: &str, bytes: usize) -> anyhow::Result<()> {
    let mut conn = target.connect().await?;
    let mut sync = SyncClient::new(random_key());
    conn.send(&sync.join(doc, "writer")).await?;
    let mut inserted = false;
    while !inserted || sync.has_pending() {
        if sync.is_joined() && !inserted {
            inserted = true;
            if let Some(m) = sync.insert(0, &"x".repeat(bytes))? {
                conn.send(&m).await?;
            }
            continue;
        }
        let msg = conn
            .recv()
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed"))?;
        for e in sync.receive(msg)? {
            match e {
                Event::Send(m) => conn.send(&m).await?,
                Event::Error { code, reason } => anyhow::bail!("{code:?}: {reason}"),
                _ => {}
            }
        }
    }
    // The writer is a well-behaved reader from here on.
    tokio::spawn(async move { while let Ok(Some(_)) = conn.recv().await {} });
    Ok(())
}

/// Waves of joiners on `doc` that never read, each wave replacing the last.
async fn nonreaders(
    target: Target,
    doc: String,
    connections: usize,
    wave: Option<Duration>,
    c: Arc<Counters>,
    ready: tokio::sync::mpsc::Sender<()>,
) {
    loop {
        let mut held = Vec::with_capacity(connections);
        for _ in 0..connections {
            match join(&target, &doc, false, &c).await {
                Ok(conn) => held.push(conn),
                Err(_) => {
                    c.closed_by_server.fetch_add(1, Relaxed);
                }
            }
        }
        let _ = ready.try_send(());
        let Some(wave) = wave else {
            // Hold this one wave until the process ends.
            std::future::pending::<()>().await;
            return;
        };
        tokio::time::sleep(wave).await;
        drop(held);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let target = args.tls.target(&args.host, args.port)?;
    let counters = Arc::new(Counters::default());
    let run = format!("{}", random_key() % 1_000_000);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(1);
    let name = match args.attack {
        Attack::Presence {
            connections,
            mb_per_sec,
        } => {
            let each = mb_per_sec * 1e6 / connections.max(1) as f64;
            for i in 0..connections {
                let (target, c) = (target.clone(), counters.clone());
                tokio::spawn(presence(
                    target,
                    format!("flood-{run}-{i}"),
                    each,
                    args.once,
                    c,
                ));
            }
            let _ = ready_tx.try_send(());
            "presence"
        }
        Attack::Partial {
            connections,
            frame_bytes,
        } => {
            for i in 0..connections {
                let (target, c) = (target.clone(), counters.clone());
                tokio::spawn(partial(
                    target,
                    format!("partial-{run}-{}", i % 10),
                    frame_bytes,
                    args.once,
                    c,
                ));
            }
            let _ = ready_tx.try_send(());
            "partial"
        }
        Attack::Nonreader {
            connections,
            doc_bytes,
            wave_secs,
        } => {
            let doc = format!("big-{run}");
            fill(&target, &doc, doc_bytes).await?;
            let wave = (!args.once).then(|| Duration::from_secs(wave_secs));
            tokio::spawn(nonreaders(
                target.clone(),
                doc,
                connections,
                wave,
                counters.clone(),
                ready_tx,
            ));
            "nonreader"
        }
    };
    let started = std::time::Instant::now();
    let mut stdin = tokio::io::stdin();
    let mut sink = Vec::new();
    tokio::select! {
        _ = ready_rx.recv() => println!("ready"),
        _ = stdin.read_to_end(&mut sink) => anyhow::bail!("stdin closed before the attack was ready"),
    }
    stdin.read_to_end(&mut sink).await?;
    let secs = started.elapsed().as_secs_f64();
    let bytes = counters.bytes.load(Relaxed);
    println!(
        "{{\"attack\":\"{name}\",\"seconds\":{secs:.1},\"bytes_sent\":{bytes},\"mb_per_sec\":{:.1},\"connects\":{},\"closed_by_server\":{}}}",
        bytes as f64 / 1e6 / secs,
        counters.connects.load(Relaxed),
        counters.closed_by_server.load(Relaxed)
    );
    Ok(())
}
