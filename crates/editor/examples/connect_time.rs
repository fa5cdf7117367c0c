//! What a client connect costs (issue 13's benchmark): N connections one after another,
//! each timed in its three steps — TCP connect, TLS handshake (certificate check
//! included; zero with `--no-tls`), the protocol's hello exchange — then closed. Prints
//! one JSON line with the medians and p90s in milliseconds.
//!
//! `connect_time --port P [--connects 100] [--no-tls | --trust-fingerprint SHA256:...]`

use std::time::{Duration, Instant};

use clap::Parser;
use editor::client::link::Conn;
use editor::protocol::PROTOCOL;
use editor::stream::Stream;
use netutil::Connection;

mod common;
use common::TlsArgs;

/// Times N client connects to editor-server, step by step.
#[derive(Parser, Debug)]
#[command(after_help = "Examples:
  cargo run --release -p editor --example connect_time -- --port 8080 --trust-fingerprint SHA256:...
  cargo run --release -p editor --example connect_time -- --port 8080 --no-tls --connects 20")]
struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Connections to time, one after another.
    #[arg(long, default_value_t = 100)]
    connects: usize,
    #[command(flatten)]
    tls: TlsArgs,
}

/// One connect: (tcp, tls, hello).
async fn connect_once(target: &editor::client::link::Target) -> anyhow::Result<[Duration; 3]> {
    let t0 = Instant::now();
    let (tcp, _) = netutil::connect(&target.host, target.port, &target.connect).await?;
    let t1 = Instant::now();
    let stream = match &target.tls {
        None => Stream::Plain(tcp),
        Some(tls) => {
            let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
            let stream = connector.connect(tls.server_name.clone(), tcp).await?;
            Stream::ClientTls(Box::new(stream))
        }
    };
    let t2 = Instant::now();
    let conn: Conn = Connection::establish(stream, &PROTOCOL).await?;
    let t3 = Instant::now();
    drop(conn);
    Ok([t1 - t0, t2 - t1, t3 - t2])
}

fn ms(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len().saturating_sub(1)) as f64 * p).round() as usize;
    sorted.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let target = args.tls.target(&args.host, args.port)?;
    let mut steps: [Vec<Duration>; 4] = Default::default();
    for _ in 0..args.connects {
        let times = connect_once(&target).await?;
        for (all, t) in steps.iter_mut().zip(times) {
            all.push(t);
        }
        steps[3].push(times.iter().sum());
        // Let the server finish with the closed connection before the next one.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for s in &mut steps {
        s.sort();
    }
    let [tcp, tls, hello, total] = &steps;
    println!(
        "{{\"tls\":{},\"connects\":{},\"tcp_p50_ms\":{:.3},\"tls_p50_ms\":{:.3},\"tls_p90_ms\":{:.3},\"hello_p50_ms\":{:.3},\"total_p50_ms\":{:.3},\"total_p90_ms\":{:.3}}}",
        !args.tls.no_tls,
        args.connects,
        ms(tcp, 0.5),
        ms(tls, 0.5),
        ms(tls, 0.9),
        ms(hello, 0.5),
        ms(total, 0.5),
        ms(total, 0.9)
    );
    Ok(())
}
