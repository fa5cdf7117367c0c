//! `echo-server`: parses flags, sets up logging and signals, and runs [`echo::server`].

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use echo::duration::parse_duration;
use echo::server::ServerConfig;
use echo::udp::UdpConfig;

/// Echo server (RFC 862): every TCP byte and every UDP datagram goes back to its sender,
/// over IPv4 and IPv6 on one port.
#[derive(Parser, Debug)]
#[command(
    version,
    after_help = "UDP safety: UDP echo is a known reflection and loop vector (CERT CA-1996-01: \
an echo and a chargen server answering each other forever; spoofed requests aimed at a \
victim). Datagrams from source ports below 1024 are therefore dropped, and replies are \
limited per source address by --udp-rate/--udp-burst, tracking at most --udp-sources \
addresses (when every tracked one is active, the least recently seen of a sample makes \
room), and all replies together by --udp-total-rate; replies that find the socket's send \
buffer full are dropped rather than queued. Drops are counted and logged in summary.\n\nExamples:\n  echo-server\n  echo-server --port 0 \
--bind 127.0.0.1 --bind ::1\n  socat - TCP:localhost:8007     nc -6 ::1 8007"
)]
struct Args {
    /// TCP and UDP port (0: the OS picks one, shown in the `listening on` log line).
    #[arg(long, default_value_t = 8007)]
    port: u16,
    /// Listen on this address instead of dual-stack `[::]` (repeatable; IP, or IP:PORT).
    #[arg(long, value_name = "ADDR")]
    bind: Vec<String>,
    /// Most TCP clients served at once; more are accepted, closed and logged.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// TCP clients one source may hold at once (a source is an IPv4 address or an IPv6
    /// /64; 127.0.0.1 and 127.0.0.2 are two); more are accepted, closed and logged.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections_per_source: u32,
    /// Close a TCP connection that moved no byte for this long (e.g. 300s, 5m; 0 = never).
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// The idle timeout instead, for connections of a source that holds more than half of
    /// --max-connections-per-source (e.g. 10s): idle crowds are cleared sooner.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    crowded_idle_timeout: Duration,
    /// Serve TCP only.
    #[arg(long)]
    no_udp: bool,
    /// UDP replies per second allowed per source address (0 = unlimited).
    #[arg(long, default_value_t = 1000)]
    udp_rate: u32,
    /// UDP replies a source address may get in a burst before --udp-rate applies.
    #[arg(long, default_value_t = 1000)]
    udp_burst: u32,
    /// Source addresses tracked for the UDP rate limit; new ones beyond it are dropped
    /// while every tracked one is active.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    udp_sources: u32,
    /// UDP replies per second to all sources together (a flood from many addresses is
    /// answered no more than this); --udp-rate 0 turns this limit off too.
    #[arg(long, default_value_t = 100_000)]
    udp_total_rate: u32,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    netutil::init_logging();
    netutil::cli::exit_code("echo-server", run(args).await)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let binds = args
        .bind
        .iter()
        .map(|b| netutil::parse_bind_addr(b, args.port))
        .collect::<Result<Vec<_>, _>>()?;
    let config = ServerConfig {
        binds,
        port: args.port,
        max_connections: args.max_connections as usize,
        max_connections_per_source: args.max_connections_per_source as usize,
        idle_timeout: (!args.idle_timeout.is_zero()).then_some(args.idle_timeout),
        crowded_idle_timeout: args.crowded_idle_timeout.max(Duration::from_secs(1)),
        udp: (!args.no_udp).then_some(UdpConfig {
            rate: args.udp_rate,
            burst: args.udp_burst,
            max_sources: args.udp_sources as usize,
            total_rate: args.udp_total_rate,
        }),
    };
    let shutdown = netutil::Shutdown::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        netutil::shutdown_signal().await;
        on_signal.trigger();
    });
    echo::server::run(config, shutdown).await?;
    Ok(())
}
