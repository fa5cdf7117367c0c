//! Keystroke latency through `editor-server` (issue 6's benchmark): T typists each type one
//! character every 1/RATE seconds at a random place; O observers record when each change's
//! `Remote` arrives. Latency of a keystroke = arrival of the change carrying it at the last
//! observer − the moment the key was typed (a keystroke typed while the typist's previous
//! change is still unacknowledged waits in its buffer, and that wait counts). All clients
//! run in this one process so their clocks agree. Prints one JSON line with p50/p99/max in
//! milliseconds.
//!
//! `latency --port P [--typists 20] [--observers 200] [--rate 10] [--seconds 10]
//! [--no-tls | --trust-fingerprint SHA256:...]`: TLS by default, like the real client
//! (issue 13's benchmark compares it with `--no-tls` against the same server build).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use editor::client::link::{Conn, Target};
use editor::client::sync::{Event, SyncClient};
use editor::protocol::{random_key, ClientMsg, ServerMsg};

mod common;
use common::TlsArgs;

/// (author, seq) → when each keystroke the change carries was typed / latest arrival
/// seen, and how many observers saw it.
type Sent = Arc<Mutex<HashMap<(u64, u64), Vec<Instant>>>>;
type Seen = Arc<Mutex<HashMap<(u64, u64), (Instant, usize)>>>;

/// Keystroke latency through editor-server: typists type, observers time the arrivals.
#[derive(Parser, Debug)]
#[command(after_help = "Examples:
  cargo run --release -p editor --example latency -- --port 8080 --trust-fingerprint SHA256:...
  cargo run --release -p editor --example latency -- --port 8080 --no-tls --typists 5 --seconds 3
  cargo run --release -p editor --example latency -- --port 8080 --window 0-5 --window 5-10")]
struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Clients typing one character every 1/RATE seconds each.
    #[arg(long, default_value_t = 20)]
    typists: usize,
    /// Clients following the document; a keystroke counts when all of them have it.
    #[arg(long, default_value_t = 200)]
    observers: usize,
    /// Keystrokes per second per typist.
    #[arg(long, default_value_t = 10)]
    rate: u64,
    /// How long the typists type.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Also report the keystrokes typed between FROM and TO seconds after typing began
    /// (repeatable), e.g. a quiet part and a part under load in one run.
    #[arg(long, value_name = "FROM-TO", value_parser = parse_window)]
    window: Vec<(f64, f64)>,
    #[command(flatten)]
    tls: TlsArgs,
}

fn parse_window(s: &str) -> Result<(f64, f64), String> {
    let (from, to) = s.split_once('-').ok_or("expected FROM-TO, e.g. 0-20")?;
    let parse = |v: &str| v.trim().parse::<f64>().map_err(|e| format!("{v}: {e}"));
    Ok((parse(from)?, parse(to)?))
}

/// p50, p99 and max of sorted latencies.
fn percentiles(sorted: &[f64]) -> (f64, f64, f64) {
    let pct = |p: f64| {
        sorted
            .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    (pct(0.5), pct(0.99), pct(1.0))
}

async fn join(target: &Target, doc: &str, name: &str) -> anyhow::Result<(Conn, SyncClient)> {
    let mut conn = target.connect().await?;
    let mut sync = SyncClient::new(random_key());
    conn.send(&sync.join(doc, name)).await?;
    while !sync.is_joined() {
        let msg = conn
            .recv()
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed"))?;
        for e in sync.receive(msg)? {
            if let Event::Send(m) = e {
                conn.send(&m).await?;
            }
        }
    }
    Ok((conn, sync))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let target = args.tls.target(&args.host, args.port)?;
    let (typists, observers, rate, seconds) =
        (args.typists, args.observers, args.rate, args.seconds);
    let doc = format!("latency-{}", random_key() % 1_000_000_000);
    let sent: Sent = Arc::default();
    let seen: Seen = Arc::default();
    let stop = Instant::now() + Duration::from_secs(seconds + 3);
    let mut tasks = Vec::new();
    for i in 0..observers {
        let (mut conn, mut sync) = join(&target, &doc, &format!("observer{i}")).await?;
        let seen = seen.clone();
        tasks.push(tokio::spawn(async move {
            while let Ok(Ok(Some(msg))) = tokio::time::timeout_at(stop.into(), conn.recv()).await {
                if let ServerMsg::Remote(rc) = &msg {
                    let now = Instant::now();
                    let mut seen = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                    let e = seen.entry((rc.author, rc.seq)).or_insert((now, 0));
                    e.0 = e.0.max(now);
                    e.1 += 1;
                }
                for e in sync.receive(msg)? {
                    if let Event::Send(m) = e {
                        conn.send(&m).await?;
                    }
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    let typing_end = Instant::now() + Duration::from_secs(seconds);
    for t in 0..typists {
        let (mut conn, mut sync) = join(&target, &doc, &format!("typist{t}")).await?;
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            let period = Duration::from_micros(1_000_000 / rate.max(1));
            let mut tick = tokio::time::interval(period);
            let mut x = random_key() | 1;
            // Keystrokes typed but not yet carried by a sent change.
            let mut unsent: Vec<Instant> = Vec::new();
            let record =
                |msg: &ClientMsg, unsent: &mut Vec<Instant>, id: u64| -> anyhow::Result<()> {
                    if let ClientMsg::Change { seq, .. } = msg {
                        sent.lock()
                            .map_err(|_| anyhow::anyhow!("poisoned"))?
                            .insert((id, *seq), std::mem::take(unsent));
                    }
                    Ok(())
                };
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if Instant::now() >= typing_end {
                            break;
                        }
                        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                        let pos = (x as usize) % (sync.text().len_chars() + 1);
                        unsent.push(Instant::now());
                        if let Some(msg) = sync.insert(pos, "k")? {
                            record(&msg, &mut unsent, sync.id())?;
                            conn.send(&msg).await?;
                        }
                    }
                    msg = conn.recv() => {
                        let msg = msg?.ok_or_else(|| anyhow::anyhow!("closed"))?;
                        for e in sync.receive(msg)? {
                            if let Event::Send(m) = e {
                                record(&m, &mut unsent, sync.id())?;
                                conn.send(&m).await?;
                            }
                        }
                    }
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    eprintln!("typing");
    // A client the server disconnects (under attack, say) is counted, not fatal: the
    // keystrokes it did not deliver count as incomplete.
    let mut failed = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failed += 1;
                eprintln!("a client failed: {e}");
            }
            Err(e) => {
                failed += 1;
                eprintln!("a client failed: {e}");
            }
        }
    }
    let typing_start = typing_end - Duration::from_secs(seconds);
    let sent = sent.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let seen = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    // Every keystroke: when it was typed (s after typing began), its latency if every
    // observer got it.
    let mut all: Vec<(f64, Option<f64>)> = Vec::new();
    let mut composed = 0;
    for (k, typed) in sent.iter() {
        composed += usize::from(typed.len() > 1);
        let arrived = seen
            .get(k)
            .filter(|(_, n)| *n == observers)
            .map(|(t1, _)| *t1);
        for t0 in typed {
            let at = t0.saturating_duration_since(typing_start).as_secs_f64();
            all.push((at, arrived.map(|t1| (t1 - *t0).as_secs_f64() * 1e3)));
        }
    }
    let summary = |from: f64, to: f64| {
        let part = all.iter().filter(|(at, _)| *at >= from && *at < to);
        let mut lat: Vec<f64> = part.clone().filter_map(|(_, l)| *l).collect();
        let incomplete = part.filter(|(_, l)| l.is_none()).count();
        lat.sort_by(|a, b| a.total_cmp(b));
        let (p50, p99, max) = percentiles(&lat);
        format!(
            "\"keystrokes\":{},\"incomplete\":{incomplete},\"p50_ms\":{p50:.2},\"p99_ms\":{p99:.2},\"max_ms\":{max:.2}",
            lat.len()
        )
    };
    let windows: Vec<String> = args
        .window
        .iter()
        .map(|(from, to)| format!("{{\"from\":{from},\"to\":{to},{}}}", summary(*from, *to)))
        .collect();
    println!(
        "{{\"tls\":{},\"typists\":{typists},\"observers\":{observers},\"rate\":{rate},{},\"changes\":{},\"multi_key_changes\":{composed},\"failed_clients\":{failed},\"windows\":[{}]}}",
        !args.tls.no_tls,
        summary(f64::NEG_INFINITY, f64::INFINITY),
        sent.len(),
        windows.join(",")
    );
    Ok(())
}
