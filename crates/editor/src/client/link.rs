//! A connection to `editor-server` that comes back by itself.
//!
//! [`Link`] is what line mode and full-screen mode talk through: [`Link::next`] yields the
//! server's messages and, when the connection drops, a [`LinkEvent::Lost`] followed (after
//! a backoff of 100 ms doubling to 5 s, with jitter so a restarted server is not hit by
//! every client at once) by [`LinkEvent::Connected`] once a new connection has done the
//! handshake. The backoff starts again from 100 ms only after a connection stayed up for
//! [`STABLE_AFTER`]: a client that keeps reconnecting into the same failure (a server that
//! cannot save, a refusal) slows down to one attempt every 5 s instead of ten a second. The caller then tells its [`SyncClient`](super::sync::SyncClient) about it
//! (`disconnected()`, then sends `join()`), which catches up and resends what was not
//! acknowledged. `next` is cancel-safe, so a front end can `select!` on it beside its input.
//!
//! Sending never blocks the caller on a dead connection: a failed send marks the link down
//! and the next call to `next` reports the loss; messages "sent" while down are dropped,
//! which is safe because the sync state machine resends everything unacknowledged after
//! the next join.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use netutil::{ConnectOptions, Connection, NetError};
use tokio::time::Instant;

use super::trust::ClientTls;
use crate::protocol::{random_key, ClientMsg, ServerMsg, PROTOCOL};
use crate::stream::Stream;

/// A connection that lasted this long worked: the next loss starts the backoff afresh.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);

/// The typed connection a client holds.
pub type Conn = Connection<ServerMsg, ClientMsg, Stream>;

/// Where the server is.
#[derive(Clone, Debug)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub connect: ConnectOptions,
    /// TLS and whom to trust; `None` only with `--no-tls`.
    pub tls: Option<ClientTls>,
}

impl Target {
    /// Connects, does the TLS handshake (unless `--no-tls`), then the protocol handshake.
    pub async fn connect(&self) -> Result<Conn, NetError> {
        let (tcp, addr) = netutil::connect(&self.host, self.port, &self.connect).await?;
        tracing::debug!("connected to {addr}");
        let stream = match &self.tls {
            None => Stream::Plain(tcp),
            Some(tls) => {
                let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                let handshake = connector.connect(tls.server_name.clone(), tcp);
                let refused = |reason: String| NetError::NoHandshake {
                    peer: netutil::display_addr(addr),
                    reason,
                };
                match tokio::time::timeout(netutil::handshake::HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(Ok(stream)) => Stream::ClientTls(Box::new(stream)),
                    Ok(Err(e)) => {
                        return Err(refused(match tls.take_problem() {
                            Some(problem) => problem.to_string(),
                            None => format!(
                                "TLS handshake failed: {e} (if the server runs with --no-tls, \
                                 pass --no-tls here too)"
                            ),
                        }))
                    }
                    Err(_) => return Err(refused("no TLS handshake within 10 s".into())),
                }
            }
        };
        Connection::establish(stream, &PROTOCOL).await
    }
}

/// What happened on the link.
#[derive(Debug)]
pub enum LinkEvent {
    /// A new connection is up (after a loss): send `join` first.
    Connected,
    /// A message from the server.
    Message(ServerMsg),
    /// The connection dropped; a new one will be attempted after a backoff.
    Lost { reason: String },
}

/// Connection state as a front end shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    Up,
    Reconnecting,
}

type Connecting = Pin<Box<dyn Future<Output = Result<Conn, NetError>> + Send>>;

enum State {
    Up(Box<Conn>),
    /// Down, waiting out the backoff.
    Waiting {
        until: Instant,
    },
    Connecting(Connecting),
}

/// Exponential backoff with jitter: 100 ms, doubling, at most 5 s, each delay drawn
/// uniformly from its upper half.
#[derive(Clone, Debug)]
pub struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
    rng: u64,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            next: min,
            min,
            max,
            rng: random_key() | 1,
        }
    }

    /// The delay before the next attempt.
    pub fn delay(&mut self) -> Duration {
        let full = self.next;
        self.next = (self.next * 2).min(self.max);
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = full / 2;
        let jitter_ns = self.rng % (half.as_nanos() as u64 + 1);
        half + Duration::from_nanos(jitter_ns)
    }

    /// A connection worked: start again from the minimum.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// A reconnecting connection (see the module docs).
pub struct Link {
    target: Target,
    state: State,
    backoff: Backoff,
    /// A loss that `next()` has not reported yet.
    unreported: Option<String>,
    /// When the current connection came up.
    up_since: Option<Instant>,
}

impl Link {
    /// Connects for the first time; failing here is an error for the caller (a wrong
    /// host or port should not look like a server that is restarting).
    pub async fn connect(target: Target) -> Result<Link, NetError> {
        let conn = target.connect().await?;
        Ok(Link {
            target,
            state: State::Up(Box::new(conn)),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            unreported: None,
            up_since: Some(Instant::now()),
        })
    }

    pub fn state(&self) -> LinkState {
        match self.state {
            State::Up(_) => LinkState::Up,
            _ => LinkState::Reconnecting,
        }
    }

    /// Sends a message if the connection is up; a failure takes the link down.
    pub async fn send(&mut self, msg: &ClientMsg) {
        if let State::Up(conn) = &mut self.state {
            if let Err(e) = conn.send(msg).await {
                self.lose(e.to_string());
            }
        }
    }

    /// Drops the connection (after the server refused something it will close on) and
    /// schedules a reconnect; `next` reports the loss.
    pub fn lose(&mut self, reason: String) {
        if matches!(self.state, State::Up(_)) {
            self.unreported = Some(reason);
        }
        if self
            .up_since
            .take()
            .is_some_and(|t| t.elapsed() >= STABLE_AFTER)
        {
            self.backoff.reset();
        }
        self.state = State::Waiting {
            until: Instant::now() + self.backoff.delay(),
        };
    }

    /// The next event. Cancel-safe.
    pub async fn next(&mut self) -> LinkEvent {
        loop {
            if let Some(reason) = self.unreported.take() {
                return LinkEvent::Lost { reason };
            }
            match &mut self.state {
                State::Up(conn) => match conn.recv().await {
                    Ok(Some(msg)) => return LinkEvent::Message(msg),
                    Ok(None) => self.lose("the server closed the connection".to_owned()),
                    Err(e) => self.lose(e.to_string()),
                },
                State::Waiting { until } => {
                    tokio::time::sleep_until(*until).await;
                    let target = self.target.clone();
                    self.state = State::Connecting(Box::pin(async move { target.connect().await }));
                }
                State::Connecting(attempt) => match attempt.await {
                    Ok(conn) => {
                        self.state = State::Up(Box::new(conn));
                        self.up_since = Some(Instant::now());
                        return LinkEvent::Connected;
                    }
                    Err(e) => {
                        tracing::debug!("reconnect failed: {e}");
                        self.state = State::Waiting {
                            until: Instant::now() + self.backoff.delay(),
                        };
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut caps = Vec::new();
        for _ in 0..10 {
            let d = b.delay();
            caps.push(d);
        }
        let expected = [100u64, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000];
        for (d, cap) in caps.iter().zip(expected) {
            let cap = Duration::from_millis(cap);
            assert!(
                *d <= cap && *d >= cap / 2,
                "{d:?} not in [{:?}, {cap:?}]",
                cap / 2
            );
        }
        b.reset();
        assert!(b.delay() <= Duration::from_millis(100));
    }
}
