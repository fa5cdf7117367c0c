//! How `echo-client` reaches a server: resolve the host, pick an address, and say on stderr
//! which one (`Connected to localhost at ::1 port 8007 (IPv6)`).
//!
//! TCP goes through netutil's Happy Eyeballs race. UDP has no handshake to race, so it uses
//! the first address in Happy Eyeballs order (IPv6 first), on a connected socket so that
//! only the server's datagrams are received and an ICMP "port unreachable" surfaces as an
//! error instead of a silent timeout.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use netutil::{display_addr, family_name, ConnectOptions, Family};
use tokio::net::{TcpStream, UdpSocket};

use crate::EchoError;

/// Splits a command-line host that may carry a port: `localhost:8007`, `[::1]:8007`,
/// `127.0.0.1:8007`. A bare IPv6 address (`::1`, two colons or more) and a plain name
/// have no port.
pub fn split_host_port(input: &str) -> (String, Option<u16>) {
    if let Some(rest) = input.strip_prefix('[') {
        if let Some((host, after)) = rest.split_once(']') {
            let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
            return (host.to_owned(), port);
        }
    }
    match input.split_once(':') {
        Some((host, port)) if !port.contains(':') => match port.parse() {
            Ok(port) => (host.to_owned(), Some(port)),
            Err(_) => (input.to_owned(), None),
        },
        _ => (input.to_owned(), None),
    }
}

/// Where the client talks to.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub family: Family,
}

impl Target {
    /// Connects over TCP and reports the address reached.
    pub async fn connect_tcp(&self) -> Result<(TcpStream, SocketAddr), EchoError> {
        let options = ConnectOptions {
            family: self.family,
            ..ConnectOptions::default()
        };
        let (stream, addr) = netutil::connect(&self.host, self.port, &options).await?;
        stream
            .set_nodelay(true)
            .map_err(|e| EchoError::io(format!("{addr}: cannot set TCP_NODELAY"), e))?;
        self.announce(addr, "");
        Ok((stream, addr))
    }

    /// Opens a UDP socket connected to the first address of the host and reports it.
    pub async fn connect_udp(&self) -> Result<(UdpSocket, SocketAddr), EchoError> {
        let addrs = netutil::resolve(&self.host, self.port, self.family).await?;
        let Some(&addr) = addrs.first() else {
            return Err(netutil::NetError::Resolve {
                host: self.host.clone(),
                reason: "no addresses".to_owned(),
            }
            .into());
        };
        let socket = connect_udp_addr(addr).await?;
        self.announce(addr, ", UDP");
        Ok((socket, addr))
    }

    /// `Connected to localhost at ::1 port 8007 (IPv6)`; the host is not repeated when it
    /// is the address itself, and UDP, which connects nothing, says `Sending to`.
    fn announce(&self, addr: SocketAddr, suffix: &str) {
        let shown = display_addr(addr);
        let verb = if suffix.is_empty() {
            "Connected to"
        } else {
            "Sending to"
        };
        let literal = self
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical() == shown.ip());
        let at = if literal {
            String::new()
        } else {
            format!("{} at ", self.host)
        };
        eprintln!(
            "{verb} {at}{} port {} ({}{suffix})",
            shown.ip(),
            shown.port(),
            family_name(addr)
        );
    }
}

/// A UDP socket on an ephemeral port, connected to `addr`.
pub async fn connect_udp_addr(addr: SocketAddr) -> Result<UdpSocket, EchoError> {
    let local = match addr.ip() {
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| EchoError::io(format!("cannot open a UDP socket on {local}"), e))?;
    socket
        .connect(addr)
        .await
        .map_err(|e| EchoError::io(format!("cannot send UDP to {}", display_addr(addr)), e))?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_may_carry_a_port() {
        let split = |s: &str| split_host_port(s);
        assert_eq!(split("localhost:8007"), ("localhost".into(), Some(8007)));
        assert_eq!(split("[::1]:9"), ("::1".into(), Some(9)));
        assert_eq!(split("[::1]"), ("::1".into(), None));
        assert_eq!(split("127.0.0.1:7"), ("127.0.0.1".into(), Some(7)));
        assert_eq!(split("::1"), ("::1".into(), None));
        assert_eq!(split("fe80::1:2"), ("fe80::1:2".into(), None));
        assert_eq!(split("example.org"), ("example.org".into(), None));
    }
}
