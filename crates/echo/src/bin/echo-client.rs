//! `echo-client`: parses flags, picks the mode (bench, ping, interactive or pipe) and runs it.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::Parser;
use netutil::Family;
use tokio_util::sync::CancellationToken;

use echo::bench::{self, BenchConfig};
use echo::client::{self, Link};
use echo::duration::parse_duration;
use echo::ping::{self, PingConfig, Prober};
use echo::target::Target;

/// Echo client (RFC 862): interactive, pipe (stdin not a terminal: stdout gets exactly the
/// echoed bytes), ping (--count) and load benchmark (--bench), over TCP or UDP.
#[derive(Parser, Debug)]
#[command(
    version,
    after_help = "Examples:\n  echo-client localhost\n  echo-client localhost:8007     echo-client [::1]:8007\n  printf 'a\\nb\\n' | echo-client ::1\n  \
echo-client ip6-localhost --count 5 --interval 0.2s\n  echo-client 127.0.0.1 --udp --count 10 --json\n  \
echo-client localhost --bench --connections 50 --duration 10s"
)]
struct Args {
    /// Server: a name (/etc/hosts, DNS), an IPv4 or an IPv6 literal, optionally with a
    /// port: `localhost:8007`, `[::1]:8007`.
    host: String,
    /// Server port [default: 8007, or the one in HOST:PORT].
    #[arg(long, short = 'p')]
    port: Option<u16>,
    /// Use IPv4 only.
    #[arg(short = '4', conflicts_with = "ipv6")]
    ipv4: bool,
    /// Use IPv6 only.
    #[arg(short = '6')]
    ipv6: bool,
    /// Use UDP instead of TCP (one datagram per line or probe).
    #[arg(long)]
    udp: bool,
    /// Ping mode: send this many probes, then print a summary.
    #[arg(long, short = 'c', value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Ping mode: time between probes (e.g. 1s, 200ms).
    #[arg(long, short = 'i', default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
    /// Bytes per probe or bench message (ping default 56, bench default 64; at most 65507
    /// over UDP).
    #[arg(long, short = 's')]
    size: Option<usize>,
    /// How long to wait for an echo: per probe in ping mode and per message in bench mode
    /// (default 1s); for outstanding echoes in interactive and pipe mode (default 30s).
    #[arg(long, short = 'W', value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Ping and bench mode: print the summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Bench mode: many connections in send-and-wait loops for --duration.
    #[arg(long)]
    bench: bool,
    /// Bench mode: number of concurrent connections (or UDP sockets).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connections: u32,
    /// Bench mode: how long to run (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
}

/// Largest message in ping and bench mode over TCP.
const MAX_TCP_MESSAGE: usize = 16 * 1024 * 1024;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    netutil::init_logging();
    netutil::cli::exit_code("echo-client", run(args).await)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (host, port_in_host) = echo::target::split_host_port(&args.host);
    let port = match (port_in_host, args.port) {
        (Some(a), Some(b)) if a != b => {
            bail!("two ports given: {a} in {} and --port {b}", args.host)
        }
        (Some(port), _) | (None, Some(port)) => port,
        (None, None) => 8007,
    };
    let target = Target {
        host,
        port,
        family: match (args.ipv4, args.ipv6) {
            (true, _) => Family::V4,
            (_, true) => Family::V6,
            _ => Family::Any,
        },
    };
    if args.bench {
        let size = checked_size(&args, 64)?;
        let config = BenchConfig {
            connections: args.connections as usize,
            size,
            duration: args.duration,
            timeout: args.timeout.unwrap_or(Duration::from_secs(1)),
            udp: args.udp,
            json: args.json,
        };
        bench::run(&target, &config).await?;
        return Ok(());
    }
    if let Some(count) = args.count {
        let size = checked_size(&args, 56)?;
        let config = PingConfig {
            count,
            interval: args.interval,
            size,
            timeout: args.timeout.unwrap_or(Duration::from_secs(1)),
            json: args.json,
        };
        let (prober, peer) = if args.udp {
            let (socket, peer) = target.connect_udp().await?;
            (Prober::udp(socket), peer)
        } else {
            let (stream, peer) = target.connect_tcp().await?;
            (Prober::tcp(stream), peer)
        };
        let stop = CancellationToken::new();
        let on_signal = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_signal.cancel();
            }
        });
        ping::run(prober, &target.host, peer, &config, stop).await?;
        return Ok(());
    }
    let wait = args.timeout.unwrap_or(Duration::from_secs(30));
    let link = if args.udp {
        let (socket, peer) = target.connect_udp().await?;
        Link::Udp(socket, peer)
    } else {
        let (stream, peer) = target.connect_tcp().await?;
        Link::Tcp(stream, peer)
    };
    if std::io::stdin().is_terminal() {
        client::interactive(link, wait).await?;
    } else {
        match link {
            Link::Tcp(stream, peer) => {
                client::pipe_tcp(stream, peer, tokio::io::stdin(), tokio::io::stdout(), wait)
                    .await?
            }
            udp @ Link::Udp(..) => {
                client::pipe_udp(udp, tokio::io::stdin(), tokio::io::stdout(), wait).await?
            }
        }
    }
    Ok(())
}

/// The message size for ping or bench mode, checked against what the transport carries.
fn checked_size(args: &Args, default: usize) -> anyhow::Result<usize> {
    let size = args.size.unwrap_or(default);
    let max = if args.udp {
        echo::MAX_DATAGRAM
    } else {
        MAX_TCP_MESSAGE
    };
    if size == 0 || size > max {
        bail!(
            "--size must be between 1 and {max} bytes{}",
            if args.udp { " over UDP" } else { "" }
        );
    }
    Ok(size)
}
