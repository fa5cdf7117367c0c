//! From an accepted TCP socket to a served connection:
//!
//! TCP accept (the listener, in `server::run`) → TLS accept (unless `--no-tls`) →
//! [`Stream`] → [`dispatch`](super::dispatch), the one place that decides what the
//! connection speaks (editor protocol or HTTP).
//!
//! The server's start-up lines live here too: the certificate's fingerprint and how to
//! connect from another machine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::access::{new_claims, Access};
use super::registry::Registry;
use super::session::Admission;
use super::{dispatch, Config, ServerError, TlsChoice};
use crate::auth::Mode;
use crate::stream::Stream;

/// How long a client may take to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS acceptor for `config`, `None` with `--no-tls`. Logs the certificate's
/// fingerprint (every start, so an operator can compare it with what clients recorded).
pub fn tls_acceptor(config: &Config) -> Result<Option<TlsAcceptor>, ServerError> {
    let files = match &config.tls {
        TlsChoice::Off => {
            tracing::warn!(
                "TLS is off (--no-tls): documents and tokens cross the network in plaintext"
            );
            return Ok(None);
        }
        TlsChoice::SelfSigned => None,
        TlsChoice::Files { cert, key } => Some((cert.as_path(), key.as_path())),
    };
    let identity = crate::tls::server_identity(&config.data_dir, files)?;
    match &identity.self_signed {
        Some(path) => tracing::info!(
            "TLS certificate {} (self-signed, kept in {}); clients record it on first connection",
            identity.fingerprint,
            path.display()
        ),
        None => tracing::info!("TLS certificate {}", identity.fingerprint),
    }
    Ok(Some(TlsAcceptor::from(identity.config)))
}

/// Logs one line telling how to connect from another machine, with a fresh read-write
/// token for every document, valid 24 hours (loopback clients need none by default).
pub fn print_how_to_connect(config: &Config, access: &Access, tls: bool, port: u16) {
    let claims = match new_claims(
        "*".into(),
        Mode::ReadWrite,
        Some(Duration::from_secs(86_400)),
        None,
    ) {
        Ok(claims) => claims,
        Err(e) => {
            tracing::warn!("cannot mint a start-up token: {e}");
            return;
        }
    };
    let token = match access.mint(&config.data_dir, &claims) {
        Ok(token) => token,
        Err(e) => {
            tracing::warn!("cannot record the start-up token: {e}");
            return;
        }
    };
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "THIS-HOST".to_owned());
    let port = if port == 8080 {
        String::new()
    } else {
        format!(" --port {port}")
    };
    let plain = if tls { "" } else { " --no-tls" };
    tracing::info!(
        "from another machine: editor-client {host}{port}{plain} --token {token}   (read-write, every document, valid 24 h; mint others with: editor-server token --help)"
    );
}

/// Serves one accepted socket: TLS handshake (if on), then [`dispatch`].
pub async fn serve(
    tcp: TcpStream,
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    registry: Arc<Registry>,
    token: CancellationToken,
    admission: Admission,
) {
    let ip = addr.ip();
    let addr = netutil::display_addr(addr);
    let stream = match tls {
        None => Stream::Plain(tcp),
        Some(acceptor) => {
            let handshake = tokio::select! {
                _ = token.cancelled() => return,
                done = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => done,
            };
            match handshake {
                Ok(Ok(stream)) => Stream::ServerTls(Box::new(stream)),
                // Failed handshakes are logged once per source per interval, with a count:
                // a client that keeps reconnecting without TLS must not fill the log.
                Ok(Err(e)) => {
                    if let Some(more) = registry.shares.should_log(ip, "tls") {
                        tracing::warn!("{addr}: TLS handshake failed: {e} (a client without TLS? this server needs TLS; --no-tls on both sides turns it off){more}");
                    }
                    return;
                }
                Err(_) => {
                    if let Some(more) = registry.shares.should_log(ip, "tls") {
                        tracing::warn!(
                            "{addr}: no TLS handshake within {TLS_HANDSHAKE_TIMEOUT:?}{more}"
                        );
                    }
                    return;
                }
            }
        }
    };
    dispatch::dispatch(stream, addr, registry, token, admission).await;
}
