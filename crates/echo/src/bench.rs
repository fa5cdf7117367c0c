//! Bench mode: `--connections` links, each in a send-and-wait-for-echo loop for
//! `--duration`, then messages/s, MB/s, RTT p50/p99/p99.9 and errors (or one JSON object).
//!
//! Every connection is opened before the clock starts, so connecting does not count. Each
//! loop collects its RTTs in a small local batch and folds it into one shared histogram
//! every [`FLUSH_EVERY`] messages: no lock per message, and memory does not grow with the
//! number of connections (a histogram is ~200 KiB; ten thousand of them would not be).
//! The only other shared value is a relaxed counter for the progress line. A TCP loop
//! has one timer for its whole run (the end of the run plus `--timeout`), not one per
//! message; over UDP, where loss is expected, each message waits up to `--timeout` and a
//! lost one counts as an error and the loop goes on.
//!
//! Memory stays bounded whatever `--size` and `--connections` ask for: the TCP loops share
//! one payload and check each echo in chunks of at most [`ECHO_CHUNK`] bytes, so 10,000
//! connections of 16 MiB messages cost one 16 MiB payload plus 64 KiB per connection.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};

use crate::ping::{carries_seq, probe_payload, stamp_seq};
use crate::stats::{ms, RttStats};
use crate::target::{connect_udp_addr, Target};
use crate::EchoError;

/// Bench mode settings.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub connections: usize,
    pub size: usize,
    pub duration: Duration,
    pub timeout: Duration,
    pub udp: bool,
    pub json: bool,
}

/// The result, also the `--json` output.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub transport: &'static str,
    pub address: String,
    pub connections: usize,
    pub size: usize,
    pub duration_s: f64,
    pub messages: u64,
    pub msgs_per_sec: f64,
    pub mb_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub avg_us: f64,
    pub max_us: f64,
    pub errors: u64,
}

/// Largest piece of an echo a TCP loop reads and checks at a time.
const ECHO_CHUNK: usize = 64 * 1024;

/// RTT samples a loop keeps before taking the shared histogram's lock.
const FLUSH_EVERY: usize = 256;

/// The histogram every loop feeds.
type Shared = Arc<Mutex<RttStats>>;

/// One loop's batch of samples on their way to the shared histogram.
struct Recorder {
    batch: Vec<Duration>,
    shared: Shared,
}

impl Recorder {
    fn new(shared: Shared) -> Self {
        Recorder {
            batch: Vec::with_capacity(FLUSH_EVERY),
            shared,
        }
    }

    fn record(&mut self, rtt: Duration) {
        self.batch.push(rtt);
        if self.batch.len() >= FLUSH_EVERY {
            self.flush();
        }
    }

    fn flush(&mut self) {
        // A poisoned lock only means another loop panicked mid-record; the numbers are fine.
        let mut stats = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        for rtt in self.batch.drain(..) {
            stats.record(rtt);
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush();
    }
}

enum Link {
    Tcp(TcpStream),
    Udp(UdpSocket),
}

/// Opens the connections, runs the loops, prints and returns the report.
pub async fn run(target: &Target, config: &BenchConfig) -> Result<BenchReport, EchoError> {
    let (links, peer, mut errors) = open_links(target, config).await?;
    let counter = Arc::new(AtomicU64::new(0));
    let shared: Shared = Arc::new(Mutex::new(RttStats::new()));
    let started = Instant::now();
    let deadline = started + config.duration;
    let mut loops = JoinSet::new();
    let tcp_payload: Arc<[u8]> = probe_payload(0, config.size).into();
    for link in links {
        let counter = counter.clone();
        let recorder = Recorder::new(shared.clone());
        let (size, timeout) = (config.size, config.timeout);
        let tcp_payload = tcp_payload.clone();
        loops.spawn(async move {
            match link {
                Link::Tcp(stream) => {
                    tcp_loop(stream, &tcp_payload, deadline, timeout, &counter, recorder).await
                }
                Link::Udp(socket) => {
                    udp_loop(socket, size, deadline, timeout, &counter, recorder).await
                }
            }
        });
    }
    let progress = std::io::stderr()
        .is_terminal()
        .then(|| tokio::spawn(show_progress(counter.clone(), started, config.duration)));

    while let Some(joined) = loops.join_next().await {
        match joined {
            Ok(loop_errors) => errors += loop_errors,
            Err(e) => {
                tracing::warn!("a bench loop failed: {e}");
                errors += 1;
            }
        }
    }
    let elapsed = started.elapsed().min(config.duration).as_secs_f64();
    if let Some(task) = progress {
        task.abort();
        // Clear the progress line (carriage return, erase line), so the results stand alone.
        eprint!("\r\x1b[2K");
    }
    let (summary, messages) = {
        let stats = shared.lock().unwrap_or_else(|e| e.into_inner());
        (stats.summary(), stats.count())
    };
    let report = BenchReport {
        transport: if config.udp { "udp" } else { "tcp" },
        address: netutil::display_addr(peer).to_string(),
        connections: config.connections,
        size: config.size,
        duration_s: elapsed,
        messages,
        msgs_per_sec: messages as f64 / elapsed.max(1e-9),
        mb_per_sec: (messages as f64 * config.size as f64) / elapsed.max(1e-9) / 1e6,
        p50_us: summary.p50_us,
        p99_us: summary.p99_us,
        p999_us: summary.p999_us,
        avg_us: summary.avg_us,
        max_us: summary.max_us,
        errors,
    };
    print_report(&report, config.json);
    if messages == 0 {
        return Err(EchoError::Bench(format!(
            "no message was echoed ({errors} errors)"
        )));
    }
    Ok(report)
}

/// Opens every link before the clock starts. The first goes through Happy Eyeballs and
/// announces itself; the rest reuse the address it reached. Failed ones count as errors.
async fn open_links(
    target: &Target,
    config: &BenchConfig,
) -> Result<(Vec<Link>, SocketAddr, u64), EchoError> {
    let mut links = Vec::with_capacity(config.connections);
    let mut errors = 0;
    let peer = if config.udp {
        let (socket, peer) = target.connect_udp().await?;
        links.push(Link::Udp(socket));
        for _ in 1..config.connections {
            links.push(Link::Udp(connect_udp_addr(peer).await?));
        }
        peer
    } else {
        let (stream, peer) = target.connect_tcp().await?;
        links.push(Link::Tcp(stream));
        let options = netutil::ConnectOptions::default();
        for _ in 1..config.connections {
            match netutil::connect_addrs(&[peer], &options).await {
                Ok((stream, _)) => {
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!("cannot set TCP_NODELAY: {e}");
                    }
                    links.push(Link::Tcp(stream));
                }
                Err(e) => {
                    tracing::warn!("{e}");
                    errors += 1;
                }
            }
        }
        peer
    };
    Ok((links, peer, errors))
}

async fn tcp_loop(
    mut stream: TcpStream,
    payload: &[u8],
    deadline: Instant,
    timeout: Duration,
    counter: &AtomicU64,
    mut recorder: Recorder,
) -> u64 {
    let mut echo = vec![0u8; payload.len().min(ECHO_CHUNK)];
    let exchange = async {
        loop {
            let sent_at = Instant::now();
            if sent_at >= deadline {
                return Ok(());
            }
            stream.write_all(payload).await?;
            let mut same = true;
            for expected in payload.chunks(echo.len()) {
                let got = &mut echo[..expected.len()];
                stream.read_exact(got).await?;
                same &= got == expected;
            }
            recorder.record(sent_at.elapsed());
            counter.fetch_add(1, Ordering::Relaxed);
            if !same {
                return Err(std::io::Error::other("echo differs from what was sent"));
            }
        }
    };
    tokio::select! {
        result = exchange => match result {
            Ok(()) => 0,
            Err(e) => {
                tracing::warn!("connection failed: {e}");
                1
            }
        },
        _ = sleep_until(deadline + timeout) => {
            tracing::warn!("no echo within {timeout:?} at the end of the run");
            1
        }
    }
}

async fn udp_loop(
    socket: UdpSocket,
    size: usize,
    deadline: Instant,
    timeout: Duration,
    counter: &AtomicU64,
    mut recorder: Recorder,
) -> u64 {
    let mut errors = 0;
    let mut payload = probe_payload(0, size);
    let mut echo = vec![0u8; size + 1];
    let mut seq = 0u64;
    loop {
        let sent_at = Instant::now();
        if sent_at >= deadline {
            break;
        }
        seq += 1;
        stamp_seq(&mut payload, seq);
        if let Err(e) = socket.send(&payload).await {
            tracing::warn!("UDP send failed: {e}");
            errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let wait_until = sent_at + timeout;
        let answered = loop {
            match tokio::time::timeout_at(wait_until, socket.recv(&mut echo)).await {
                Ok(Ok(len)) if len == size && carries_seq(&echo[..len], seq, size) => {
                    break echo[..len] == payload[..];
                }
                // A late echo of an earlier datagram: keep waiting for ours.
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => {
                    tracing::warn!("UDP receive failed: {e}");
                    break false;
                }
                Err(_) => break false,
            }
        };
        if answered {
            recorder.record(sent_at.elapsed());
            counter.fetch_add(1, Ordering::Relaxed);
        } else {
            errors += 1;
        }
    }
    errors
}

/// Rewrites one stderr line every second while the run lasts.
async fn show_progress(counter: Arc<AtomicU64>, started: Instant, duration: Duration) {
    let mut last = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = counter.load(Ordering::Relaxed);
        eprint!(
            "\r{:>5.1} s / {:.1} s  {now} messages  {} msg/s   ",
            started.elapsed().as_secs_f64(),
            duration.as_secs_f64(),
            now - last
        );
        last = now;
    }
}

fn print_report(report: &BenchReport, json: bool) {
    if json {
        match serde_json::to_string(report) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("cannot encode the report as JSON: {e}"),
        }
        return;
    }
    println!(
        "{} connections x {} B over {} to {} for {:.1} s",
        report.connections,
        report.size,
        report.transport.to_uppercase(),
        report.address,
        report.duration_s
    );
    println!(
        "{} messages: {:.0} msg/s, {:.2} MB/s",
        report.messages, report.msgs_per_sec, report.mb_per_sec
    );
    println!(
        "rtt p50/p99/p99.9 = {}/{}/{} ms (avg {}, max {})",
        ms(report.p50_us),
        ms(report.p99_us),
        ms(report.p999_us),
        ms(report.avg_us),
        ms(report.max_us)
    );
    println!("errors: {}", report.errors);
}
