//! Cost of the client side alone, no network: every trace patch through `SyncClient::edit`
//! while the first change stays in flight (so the rest is buffered), then the time to
//! compose that whole buffer into one change when the first is acknowledged.
//! `cargo run --release -p editor --example sync_cost -- TRACE`

use std::time::Instant;

use clap::Parser;
use editor::client::sync::SyncClient;
use editor::protocol::ServerMsg;
use editor::trace::Trace;

/// Cost of the client side alone, no network: a whole editing trace through
/// `SyncClient::edit` while the first change stays unacknowledged, then composing the
/// buffer. Prints one JSON line of milliseconds.
#[derive(Parser, Debug)]
#[command(after_help = "Example:\n  \
cargo run --release -p editor --example sync_cost -- bench/traces/automerge-paper.json.gz")]
struct Args {
    /// An editing trace (JSON, optionally gzipped, as in bench/traces).
    trace: std::path::PathBuf,
}

fn main() -> anyhow::Result<()> {
    let Args { trace: path } = Args::parse();
    let trace = Trace::load(&path)?;
    let t = Instant::now();
    let rope = trace.apply_to_rope();
    let rope_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut sync = SyncClient::new(1);
    sync.join("bench", "bench");
    sync.receive(ServerMsg::Snapshot {
        you: sync.id(),
        epoch: 0,
        revision: 0,
        text: String::new(),
        participants: vec![],
    })?;
    let t = Instant::now();
    let mut ops_ms = 0.0;
    for p in &trace.patches {
        let op = p.to_op(sync.text().len_chars())?;
        sync.edit(op)?;
    }
    let sync_ms = t.elapsed().as_secs_f64() * 1e3;
    // Acknowledge the first change: the whole rest of the trace is composed into one.
    let t = Instant::now();
    let events = sync.receive(ServerMsg::Ack {
        revision: 1,
        seq: 1,
    })?;
    let compose_ms = t.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(events.len() == 2, "expected an ack and a send: {events:?}");
    let t = Instant::now();
    let mut len = 0usize;
    for p in &trace.patches {
        let op = p.to_op(len)?;
        len = op.target_len();
        std::hint::black_box(&op);
    }
    ops_ms += t.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(rope == trace.end.as_str() && sync.text() == trace.end.as_str());
    println!(
        "{{\"edits\":{},\"rope_apply_ms\":{rope_ms:.1},\"sync_edit_ms\":{sync_ms:.1},\"compose_buffer_ms\":{compose_ms:.1},\"build_ops_ms\":{ops_ms:.1}}}",
        trace.patches.len()
    );
    Ok(())
}
