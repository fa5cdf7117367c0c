//! Listening sockets: one port for IPv4 and IPv6 clients alike.
//!
//! With no explicit address, [`bind_tcp`] opens a single IPv6 socket with `IPV6_V6ONLY` off,
//! which accepts IPv4 clients as IPv4-mapped addresses (`::ffff:127.0.0.1`) on the same port.
//! A host without IPv6 gets `0.0.0.0` instead, and a log line says so. Explicit addresses
//! (`--bind`, repeatable) are bound exactly as given, IPv6 ones with `IPV6_V6ONLY` on so that
//! `--bind 0.0.0.0 --bind ::` works. [`display_addr`] shows mapped peers as plain IPv4.

use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::task::Poll;

use socket2::{Domain, Protocol as SockProtocol, SockAddr, Socket, Type};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::NetError;

/// Pending connections the kernel queues for us before we accept them.
const BACKLOG: i32 = 1024;

/// Shows an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) as the IPv4 address it is.
pub fn display_addr(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// "IPv4" or "IPv6", after unmapping.
pub fn family_name(addr: SocketAddr) -> &'static str {
    match addr.ip().to_canonical() {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    }
}

/// Parses a `--bind` value: an IP address (`::1`, `127.0.0.1`) that takes `default_port`, or a
/// socket address (`[::1]:9000`, `127.0.0.1:9000`).
pub fn parse_bind_addr(input: &str, default_port: u16) -> Result<SocketAddr, NetError> {
    let trimmed = input.trim();
    if let Ok(addr) = trimmed.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = trimmed.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, default_port))
        .map_err(|_| NetError::BadAddress {
            input: input.to_owned(),
        })
}

/// A set of TCP listeners accepted from as one.
pub struct Listener {
    listeners: Vec<TcpListener>,
    next: usize,
}

impl Listener {
    /// Accepts the next connection from any of the sockets. The peer address is unmapped.
    pub async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        let count = self.listeners.len();
        poll_fn(|cx| {
            // Start at a rotating index so one busy socket cannot starve the others.
            for offset in 0..count {
                let index = (self.next + offset) % count;
                if let Poll::Ready(result) = self.listeners[index].poll_accept(cx) {
                    self.next = (index + 1) % count;
                    return Poll::Ready(result.map(|(s, a)| (s, display_addr(a))));
                }
            }
            Poll::Pending
        })
        .await
    }

    /// The addresses actually bound (ports filled in when 0 was asked for).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The port every socket listens on.
    pub fn port(&self) -> u16 {
        self.local_addrs().first().map_or(0, |a| a.port())
    }
}

/// Binds TCP listeners on `binds`, or dual-stack on `port` when `binds` is empty, and logs
/// `listening on ADDR (TCP...)` for each. With port 0 the OS picks one port, shared by all sockets.
pub fn bind_tcp(binds: &[SocketAddr], port: u16) -> Result<Listener, NetError> {
    let listeners = bind_all("TCP", binds, port, |addr, v6only| {
        let socket = new_socket(addr, Type::STREAM, SockProtocol::TCP, v6only)?;
        socket.listen(BACKLOG)?;
        let listener = TcpListener::from_std(socket.into())?;
        Ok((listener.local_addr()?, listener))
    })?;
    Ok(Listener { listeners, next: 0 })
}

/// Binds UDP sockets the same way as [`bind_tcp`].
pub fn bind_udp(binds: &[SocketAddr], port: u16) -> Result<Vec<UdpSocket>, NetError> {
    bind_all("UDP", binds, port, |addr, v6only| {
        let socket = new_socket(addr, Type::DGRAM, SockProtocol::UDP, v6only)?;
        let udp = UdpSocket::from_std(socket.into())?;
        Ok((udp.local_addr()?, udp))
    })
}

/// `transport` ("TCP" or "UDP") only labels the log lines, so a program that binds both on
/// one port says which socket each line is about.
fn bind_all<S>(
    transport: &str,
    binds: &[SocketAddr],
    port: u16,
    open: impl Fn(SocketAddr, bool) -> io::Result<(SocketAddr, S)>,
) -> Result<Vec<S>, NetError> {
    if binds.is_empty() {
        return bind_dual_stack(transport, port, open).map(|s| vec![s]);
    }
    let mut sockets = Vec::with_capacity(binds.len());
    let mut shared_port = None;
    for &requested in binds {
        let mut addr = requested;
        if addr.port() == 0 {
            if let Some(p) = shared_port {
                addr.set_port(p);
            }
        }
        let (local, socket) =
            open(addr, addr.is_ipv6()).map_err(|source| NetError::Bind { addr, source })?;
        tracing::info!("listening on {local} ({transport})");
        shared_port.get_or_insert(local.port());
        sockets.push(socket);
    }
    Ok(sockets)
}

fn bind_dual_stack<S>(
    transport: &str,
    port: u16,
    open: impl Fn(SocketAddr, bool) -> io::Result<(SocketAddr, S)>,
) -> Result<S, NetError> {
    let any6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
    match open(any6, false) {
        Ok((local, socket)) => {
            tracing::info!("listening on {local} ({transport}, IPv4 and IPv6)");
            Ok(socket)
        }
        Err(e) if ipv6_unavailable(&e) => {
            let any4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
            tracing::warn!("IPv6 is not available on this host ({e}); listening on IPv4 only");
            let (local, socket) =
                open(any4, false).map_err(|source| NetError::Bind { addr: any4, source })?;
            tracing::info!("listening on {local} ({transport}, IPv4 only)");
            Ok(socket)
        }
        Err(source) => Err(NetError::Bind { addr: any6, source }),
    }
}

fn ipv6_unavailable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc_codes::EAFNOSUPPORT) | Some(libc_codes::EADDRNOTAVAIL)
    ) || e.kind() == io::ErrorKind::AddrNotAvailable
}

/// The two errno values that mean "no IPv6 here", without a libc dependency.
mod libc_codes {
    pub const EAFNOSUPPORT: i32 = 97;
    pub const EADDRNOTAVAIL: i32 = 99;
}

fn new_socket(
    addr: SocketAddr,
    kind: Type,
    protocol: SockProtocol,
    v6only: bool,
) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    if addr.is_ipv6() {
        socket.set_only_v6(v6only)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::from(addr))?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_display_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:60508".parse().unwrap();
        assert_eq!(display_addr(mapped).to_string(), "127.0.0.1:60508");
        assert_eq!(family_name(mapped), "IPv4");
        let v6: SocketAddr = "[::1]:55100".parse().unwrap();
        assert_eq!(display_addr(v6).to_string(), "[::1]:55100");
        assert_eq!(family_name(v6), "IPv6");
    }

    #[test]
    fn bind_addresses_parse_with_and_without_port() {
        assert_eq!(
            parse_bind_addr("::1", 80).unwrap(),
            "[::1]:80".parse().unwrap()
        );
        assert_eq!(
            parse_bind_addr("[::1]", 80).unwrap(),
            "[::1]:80".parse().unwrap()
        );
        assert_eq!(
            parse_bind_addr("127.0.0.1:9", 80).unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
        assert!(parse_bind_addr("localhost", 80).is_err());
    }
}
