//! Resolving a host and connecting over whichever address family works.
//!
//! [`connect`] resolves with the system resolver (so `/etc/hosts` names, IPv4 and IPv6
//! literals and bracketed `[::1]` all work), orders the addresses as RFC 8305 (Happy Eyeballs
//! v2) asks, IPv6 first and the families interleaved, and races them: each attempt gets a
//! head start of [`ConnectOptions::attempt_delay`] before the next one begins, a failed
//! attempt starts the next one at once, and the first connection to succeed wins while the
//! others are dropped. A silent address therefore costs 250 ms, not the OS's minutes-long
//! connect timeout. On failure the error lists every address and why it failed.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, Instant};

use crate::NetError;

/// Which address families a connection may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Family {
    /// Both, IPv6 preferred.
    #[default]
    Any,
    /// IPv4 only (`-4`).
    V4,
    /// IPv6 only (`-6`).
    V6,
}

impl Family {
    fn admits(self, ip: IpAddr) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => ip.is_ipv4(),
            Family::V6 => ip.is_ipv6(),
        }
    }
}

/// How [`connect`] behaves.
#[derive(Debug, Clone, Copy)]
pub struct ConnectOptions {
    pub family: Family,
    /// Head start of each attempt before the next address is tried (RFC 8305: 250 ms).
    pub attempt_delay: Duration,
    /// Give up when no attempt has succeeded after this long.
    pub timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            family: Family::Any,
            attempt_delay: Duration::from_millis(250),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Resolves `host` (a name, an IPv4 or IPv6 literal, or a bracketed `[v6]`) to the
/// addresses of the allowed family, in Happy Eyeballs order.
pub async fn resolve(host: &str, port: u16, family: Family) -> Result<Vec<SocketAddr>, NetError> {
    let bare = host.trim().trim_start_matches('[').trim_end_matches(']');
    let resolved: Vec<SocketAddr> = if let Ok(ip) = bare.parse::<IpAddr>() {
        vec![SocketAddr::new(ip, port)]
    } else {
        tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| NetError::Resolve {
                host: host.to_owned(),
                reason: e.to_string(),
            })?
            .collect()
    };
    let mut seen = HashSet::new();
    let admitted: Vec<SocketAddr> = resolved
        .into_iter()
        .filter(|a| family.admits(a.ip()) && seen.insert(*a))
        .collect();
    if admitted.is_empty() {
        let reason = match family {
            Family::Any => "no addresses".to_owned(),
            Family::V4 => "no IPv4 address".to_owned(),
            Family::V6 => "no IPv6 address".to_owned(),
        };
        return Err(NetError::Resolve {
            host: host.to_owned(),
            reason,
        });
    }
    Ok(interleave_families(admitted))
}

/// RFC 8305 §4: keep the resolver's order within each family, start with IPv6, alternate.
pub fn interleave_families(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let (v6, v4): (Vec<_>, Vec<_>) = addrs.into_iter().partition(|a| a.is_ipv6());
    let mut ordered = Vec::with_capacity(v6.len() + v4.len());
    let (mut v6, mut v4) = (v6.into_iter(), v4.into_iter());
    loop {
        match (v6.next(), v4.next()) {
            (None, None) => return ordered,
            (a, b) => ordered.extend(a.into_iter().chain(b)),
        }
    }
}

/// Resolves `host` and connects to the first of its addresses that answers.
/// Returns the stream and the address it reached.
pub async fn connect(
    host: &str,
    port: u16,
    options: &ConnectOptions,
) -> Result<(TcpStream, SocketAddr), NetError> {
    let addrs = resolve(host, port, options.family).await?;
    race(host, port, &addrs, options).await
}

/// Races exactly `addrs`, in the order given (no resolving, no reordering).
pub async fn connect_addrs(
    addrs: &[SocketAddr],
    options: &ConnectOptions,
) -> Result<(TcpStream, SocketAddr), NetError> {
    let label = addrs
        .iter()
        .map(|a| a.ip().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let port = addrs.first().map_or(0, |a| a.port());
    race(&label, port, addrs, options).await
}

async fn race(
    host: &str,
    port: u16,
    addrs: &[SocketAddr],
    options: &ConnectOptions,
) -> Result<(TcpStream, SocketAddr), NetError> {
    let deadline = Instant::now() + options.timeout;
    let mut pending = addrs.iter().copied();
    let mut in_flight: JoinSet<(SocketAddr, std::io::Result<TcpStream>)> = JoinSet::new();
    let mut racing: Vec<SocketAddr> = Vec::new();
    let mut failures: Vec<(SocketAddr, String)> = Vec::new();

    let mut start_next = |in_flight: &mut JoinSet<_>, racing: &mut Vec<SocketAddr>| {
        if let Some(addr) = pending.next() {
            tracing::debug!("trying {addr}");
            racing.push(addr);
            in_flight.spawn(async move { (addr, TcpStream::connect(addr).await) });
        }
    };
    start_next(&mut in_flight, &mut racing);

    while !in_flight.is_empty() {
        let more_to_try = racing.len() < addrs.len();
        tokio::select! {
            joined = in_flight.join_next() => match joined {
                Some(Ok((addr, Ok(stream)))) => return Ok((stream, addr)),
                Some(Ok((addr, Err(e)))) => {
                    tracing::debug!("{addr}: {e}");
                    racing.retain(|a| *a != addr);
                    failures.push((addr, e.to_string()));
                    start_next(&mut in_flight, &mut racing);
                }
                // A connect task cannot panic; a join error only happens on runtime shutdown.
                Some(Err(_)) | None => break,
            },
            _ = sleep(options.attempt_delay), if more_to_try => {
                start_next(&mut in_flight, &mut racing);
            }
            _ = sleep_until(deadline) => {
                for addr in racing.drain(..) {
                    failures.push((addr, format!("timed out after {:?}", options.timeout)));
                }
                for addr in pending.by_ref() {
                    failures.push((addr, "not tried before the timeout".to_owned()));
                }
                break;
            }
        }
    }
    Err(NetError::Connect {
        host: host.to_owned(),
        port,
        attempts: failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn families_interleave_ipv6_first() {
        let input = addrs(&["1.1.1.1:1", "2.2.2.2:1", "[::1]:1", "[::2]:1", "[::3]:1"]);
        let expected = addrs(&["[::1]:1", "1.1.1.1:1", "[::2]:1", "2.2.2.2:1", "[::3]:1"]);
        assert_eq!(interleave_families(input), expected);
    }

    #[tokio::test]
    async fn literals_resolve_without_the_resolver() {
        assert_eq!(
            resolve("[::1]", 7, Family::Any).await.unwrap(),
            addrs(&["[::1]:7"])
        );
        assert_eq!(
            resolve("127.0.0.1", 7, Family::Any).await.unwrap(),
            addrs(&["127.0.0.1:7"])
        );
        assert!(resolve("127.0.0.1", 7, Family::V6).await.is_err());
    }
}
