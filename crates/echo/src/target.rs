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

    fn announce(&self, addr: SocketAddr, suffix: &str) {
        let shown = display_addr(addr);
        eprintln!(
            "Connected to {} at {} port {} ({}{suffix})",
            self.host,
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
