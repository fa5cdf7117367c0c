//! `echo-server`: TCP echo (RFC 862) on a dual-stack port, plus the process around it.
//!
//! Each connection is one task with one buffer, reused for its whole life: read, then
//! `write_all` the same bytes before reading again. A client that sends without reading
//! therefore stalls only itself: once its receive window is full our write waits, we stop
//! reading, and the kernel pushes back on the client (backpressure, memory bounded by the
//! buffer). The buffer starts small and doubles up to [`MAX_BUFFER`] only for clients that
//! fill it, so ten thousand idle clients cost little.
//!
//! A semaphore bounds the number of connections, and a per-source limit (an IPv4 address
//! or an IPv6 /64) bounds each source's share of them, so one address holding thousands
//! of idle connections cannot lock everyone else out: beyond either, a new client is
//! accepted and closed at once with a log line (once per source per interval, with a
//! count), rather than left hanging in the kernel's backlog. A connection that makes no
//! progress (no byte read or written) for the idle timeout is closed; while its source
//! holds more than half its share, the shorter crowded idle timeout applies. Ctrl-C /
//! SIGTERM stops accepting and closes every connection via [`netutil::Shutdown`].
//!
//! Connect and disconnect lines are logged at info for a few clients, and at debug with a
//! summary line for many at once from one address (a bench): see [`crate::conn_log`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use netutil::{Listener, LogLimiter, Shutdown, SourceLimiter, LOG_INTERVAL};

use crate::conn_log::{ConnectionLog, Level};
use crate::udp::{self, UdpConfig};
use crate::EchoError;

/// First size of a connection's buffer.
pub const INITIAL_BUFFER: usize = 4 * 1024;
/// Largest size a connection's buffer grows to (for clients sending in bulk).
pub const MAX_BUFFER: usize = 64 * 1024;
/// How long shutdown waits for connection tasks to finish.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often the summaries of connections logged at debug are looked at.
const SUMMARY_TICK: Duration = Duration::from_millis(250);

/// Everything `echo-server` is told on its command line.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Addresses to bind; empty means dual-stack `[::]` on `port`.
    pub binds: Vec<SocketAddr>,
    pub port: u16,
    pub max_connections: usize,
    /// Most connections one source may hold.
    pub max_connections_per_source: usize,
    /// Close connections without progress for this long; `None` never does.
    pub idle_timeout: Option<Duration>,
    /// The idle timeout for connections of a source holding more than half its share.
    pub crowded_idle_timeout: Duration,
    /// UDP echo on the same port, unless `None` (`--no-udp`).
    pub udp: Option<UdpConfig>,
}

/// Binds TCP (and UDP) and serves until `shutdown` is triggered, then drains.
pub async fn run(config: ServerConfig, shutdown: Shutdown) -> Result<(), EchoError> {
    let (listener, udp_sockets) = bind(&config)?;
    for socket in udp_sockets {
        if let Some(udp_config) = config.udp {
            let token = shutdown.token();
            shutdown.spawn(udp::serve(socket, udp_config, token));
        }
    }
    warn_if_above_fd_limit(config.max_connections);
    accept_loop(listener, &config, &shutdown).await;
    shutdown.drain(DRAIN_DEADLINE).await;
    Ok(())
}

/// Binds TCP, then UDP on the same port. With `--port 0` the OS picks a TCP port that may
/// be taken for UDP; then we try again with another one.
fn bind(config: &ServerConfig) -> Result<(Listener, Vec<tokio::net::UdpSocket>), EchoError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let listener = netutil::bind_tcp(&config.binds, config.port)?;
        if config.udp.is_none() {
            return Ok((listener, Vec::new()));
        }
        let port = listener.port();
        let udp_binds: Vec<SocketAddr> = listener.local_addrs();
        let result = if config.binds.is_empty() {
            netutil::bind_udp(&[], port)
        } else {
            netutil::bind_udp(&udp_binds, port)
        };
        match result {
            Ok(sockets) => {
                tracing::info!("echoing TCP and UDP on port {port}");
                return Ok((listener, sockets));
            }
            Err(e) if config.port == 0 && attempts < 5 => {
                tracing::debug!("UDP port {port} unavailable ({e}); picking another port");
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Warns when `--max-connections` cannot be reached because the process may not open that
/// many files (a common soft limit is 1024): clients beyond the file limit are not refused
/// with a log line but wait in the kernel's backlog while every accept fails.
fn warn_if_above_fd_limit(max_connections: usize) {
    let Some(limit) = open_file_limit() else {
        return;
    };
    if max_connections as u64 > limit {
        tracing::warn!(
            "--max-connections {max_connections} is above this process's open-file limit \
             ({limit}): beyond about that many clients accepts fail instead of refusing \
             cleanly; raise the limit (ulimit -n) or lower --max-connections"
        );
    }
}

/// The soft limit on open files, from `/proc/self/limits` (None when unknown or unlimited).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

async fn accept_loop(mut listener: Listener, config: &ServerConfig, shutdown: &Shutdown) {
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let sources = SourceLimiter::new(config.max_connections_per_source);
    let refusals = LogLimiter::new(LOG_INTERVAL);
    let accept_errors = LogLimiter::new(LOG_INTERVAL);
    let conn_log = Arc::new(ConnectionLog::new());
    shutdown.spawn(log_summaries(conn_log.clone(), shutdown.token()));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.triggered() => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                if let Some(more) = accept_errors.check(&()) {
                    tracing::warn!("accept failed: {e}; retrying in {ACCEPT_BACKOFF:?}{more}");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let source = match sources.try_acquire(peer.ip()) {
            Ok(guard) => guard,
            Err(full) => {
                drop(stream);
                if let Some(more) = refusals.check(&Some(full.from)) {
                    tracing::warn!(
                        "Refused client {} port {}: {full} connections (--max-connections-per-source){more}",
                        peer.ip(),
                        peer.port(),
                    );
                }
                continue;
            }
        };
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let token = shutdown.token();
                let idle = IdlePolicy {
                    timeout: config.idle_timeout,
                    crowded: config.crowded_idle_timeout,
                    sources: sources.clone(),
                };
                let level = conn_log.accepted(peer.ip(), Instant::now().into_std());
                let conn_log = conn_log.clone();
                shutdown.spawn(async move {
                    let bytes = serve_connection(stream, peer, idle, level, token).await;
                    conn_log.closed(peer.ip(), level, bytes, Instant::now().into_std());
                    drop((permit, source));
                });
            }
            Err(_) => {
                drop(stream);
                if let Some(more) = refusals.check(&None) {
                    tracing::warn!(
                        "Refused client {} port {}: {} connections already open (--max-connections){more}",
                        peer.ip(),
                        peer.port(),
                        config.max_connections,
                    );
                }
            }
        }
    }
}

/// Logs the summaries of connections logged at debug level as they fall due.
async fn log_summaries(conn_log: Arc<ConnectionLog>, token: CancellationToken) {
    let mut tick = tokio::time::interval(SUMMARY_TICK);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = token.cancelled() => return,
        }
        for line in conn_log.summaries(Instant::now().into_std()) {
            tracing::info!("{line}");
        }
    }
}

/// When an idle connection is closed: after `timeout`, or after `crowded` while its source
/// holds more than half its share of connections.
#[derive(Clone)]
pub struct IdlePolicy {
    pub timeout: Option<Duration>,
    pub crowded: Duration,
    pub sources: SourceLimiter,
}

impl IdlePolicy {
    /// The timeout that applies to a connection from `ip` right now.
    fn current(&self, ip: std::net::IpAddr) -> Option<Duration> {
        let crowded = self.sources.held(ip) > self.sources.max() / 2;
        match self.timeout {
            Some(t) if crowded => Some(t.min(self.crowded)),
            Some(t) => Some(t),
            None if crowded => Some(self.crowded),
            None => None,
        }
    }
}

/// Progress of one connection, shared between the echo loop and its idle watchdog.
struct Progress {
    started: Instant,
    bytes: AtomicU64,
    /// Nanoseconds after `started` of the last byte read or written.
    last_activity: AtomicU64,
}

impl Progress {
    fn touch(&self) {
        let nanos = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_activity.store(nanos, Ordering::Relaxed);
    }

    fn idle_since(&self) -> Instant {
        self.started + Duration::from_nanos(self.last_activity.load(Ordering::Relaxed))
    }
}

/// How a connection ended, for the disconnect log line.
enum End {
    Closed,
    Failed(std::io::Error),
    Idle(Duration),
    Shutdown,
}

/// Logs at info or debug, as [`ConnectionLog`] decided for the connection.
macro_rules! log_at {
    ($level:expr, $($arg:tt)+) => {
        match $level {
            Level::Info => tracing::info!($($arg)+),
            Level::Debug => tracing::debug!($($arg)+),
        }
    };
}

/// Serves one client until it closes, fails, idles out or the server shuts down; returns
/// the bytes echoed. Its connect and disconnect lines are logged at `level`; failures
/// other than a disconnect are warnings whatever the level.
pub async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    idle: IdlePolicy,
    level: Level,
    token: CancellationToken,
) -> u64 {
    log_at!(
        level,
        "New client connected: {} port {}",
        peer.ip(),
        peer.port()
    );
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!("{peer}: cannot set TCP_NODELAY: {e}");
    }
    let progress = Progress {
        started: Instant::now(),
        bytes: AtomicU64::new(0),
        last_activity: AtomicU64::new(0),
    };
    let end = tokio::select! {
        result = echo(&mut stream, &progress) => match result {
            Ok(()) => End::Closed,
            Err(e) => End::Failed(e),
        },
        idle = watchdog(&idle, peer.ip(), &progress) => End::Idle(idle),
        _ = token.cancelled() => End::Shutdown,
    };
    let bytes = progress.bytes.load(Ordering::Relaxed);
    let summary = format!(
        "Client {} port {} disconnected ({bytes} bytes echoed, {:.1} s)",
        peer.ip(),
        peer.port(),
        progress.started.elapsed().as_secs_f64()
    );
    match end {
        End::Closed => log_at!(level, "{summary}"),
        End::Failed(e) if crate::error::is_disconnect(&e) => log_at!(level, "{summary}: {e}"),
        End::Failed(e) => tracing::warn!("{summary}: {e}"),
        End::Idle(idle) => log_at!(level, "{summary}: idle for {idle:?}, closed"),
        End::Shutdown => log_at!(level, "{summary}: server shutting down"),
    }
    bytes
}

/// The hot path: socket -> one reused buffer -> socket.
async fn echo(stream: &mut TcpStream, progress: &Progress) -> std::io::Result<()> {
    let mut buf = vec![0u8; INITIAL_BUFFER];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        progress.touch();
        stream.write_all(&buf[..n]).await?;
        progress.bytes.fetch_add(n as u64, Ordering::Relaxed);
        progress.touch();
        if n == buf.len() && buf.len() < MAX_BUFFER {
            buf.resize(buf.len() * 2, 0);
        }
    }
}

/// Resolves once the connection has made no progress for the idle timeout that applies
/// to it (which shortens while its source is crowded).
async fn watchdog(policy: &IdlePolicy, ip: std::net::IpAddr, progress: &Progress) -> Duration {
    // One timer per idle period, not one per message: wake at the earliest possible expiry
    // and look at when the connection last moved. The crowded timeout is looked at again
    // at least that often, since a source can become crowded at any time.
    loop {
        let recheck = Instant::now() + policy.crowded;
        match policy.current(ip) {
            Some(idle) => {
                let deadline = progress.idle_since() + idle;
                if Instant::now() >= deadline {
                    return idle;
                }
                tokio::time::sleep_until(deadline.min(recheck)).await;
            }
            None => tokio::time::sleep_until(recheck).await,
        }
    }
}
