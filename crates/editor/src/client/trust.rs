//! Which server certificates a client trusts, the way ssh trusts host keys.
//!
//! A certificate is accepted when (in this order):
//! 1. `--trust-fingerprint SHA256:…` is given: it must be that certificate, nothing else;
//! 2. it chains to a trusted authority (the system's roots, or `--ca FILE` only) and names
//!    the host: a real certificate, which may be renewed at will;
//! 3. (not with `--ca`) the `known_servers` file has this `host:port` with the same
//!    fingerprint; with another fingerprint the connection is refused with a warning
//!    naming both and the file to edit;
//! 4. (not with `--ca`) the host is new: its fingerprint is recorded (trust on first use).
//!
//! Either way the server must prove it holds the certificate's key (the handshake
//! signature is verified), so a recorded fingerprint cannot be replayed by someone else.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::tls::{fingerprint, provider, ALPN_EDITOR};

/// How a client decides to trust a server (from its flags).
#[derive(Clone, Debug, Default)]
pub struct TrustOptions {
    /// `--trust-fingerprint`: exactly this certificate.
    pub pin: Option<String>,
    /// `--ca FILE`: only certificates signed by these authorities.
    pub ca: Option<PathBuf>,
    /// The `known_servers` file.
    pub known_servers: PathBuf,
}

/// Where `known_servers` lives: `$XDG_CONFIG_HOME/editor/known_servers`, else
/// `~/.config/editor/known_servers`.
pub fn default_known_servers() -> PathBuf {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })
        .unwrap_or_else(|| PathBuf::from("."));
    config.join("editor").join("known_servers")
}

/// Why a certificate was refused, in words for the user.
#[derive(Clone, Debug)]
pub struct TrustProblem(pub String);

impl fmt::Display for TrustProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client's TLS setup for one server, and the last trust problem it met.
#[derive(Clone)]
pub struct ClientTls {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: ServerName<'static>,
    problem: Arc<Mutex<Option<TrustProblem>>>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientTls({:?})", self.server_name)
    }
}

impl ClientTls {
    /// TLS towards `host:port` under `options`.
    pub fn new(host: &str, port: u16, options: &TrustOptions) -> Result<ClientTls, String> {
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|e| format!("{host} is not a valid server name for TLS: {e}"))?;
        let provider = provider();
        let roots = match &options.ca {
            Some(path) => ca_roots(path)?,
            None => system_roots(),
        };
        let webpki = if roots.is_empty() {
            None
        } else {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .ok()
        };
        let problem = Arc::new(Mutex::new(None));
        let verifier = Verifier {
            webpki,
            ca_only: options.ca.is_some(),
            pin: options.pin.clone(),
            known_servers: options.known_servers.clone(),
            key: format!("{host}:{port}"),
            provider: provider.clone(),
            problem: problem.clone(),
        };
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        config.alpn_protocols = vec![ALPN_EDITOR.to_vec()];
        Ok(ClientTls {
            config: Arc::new(config),
            server_name,
            problem,
        })
    }

    /// The reason the last handshake's certificate was refused, if it was.
    pub fn take_problem(&self) -> Option<TrustProblem> {
        self.problem.lock().ok().and_then(|mut p| p.take())
    }
}

fn ca_roots(path: &Path) -> Result<RootCertStore, String> {
    let bytes = fs::read(path).map_err(|e| format!("--ca {}: {e}", path.display()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| format!("--ca {}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("--ca {}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "--ca {}: no certificate in the file",
            path.display()
        ));
    }
    Ok(roots)
}

fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let loaded = rustls_native_certs::load_native_certs();
    for cert in loaded.certs {
        // A system certificate rustls cannot parse is skipped; the others still count.
        let _ = roots.add(cert);
    }
    roots
}

#[derive(Debug)]
struct Verifier {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    ca_only: bool,
    pin: Option<String>,
    known_servers: PathBuf,
    /// `host:port`, the key in `known_servers`.
    key: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
    problem: Arc<Mutex<Option<TrustProblem>>>,
}

impl Verifier {
    fn refuse(&self, message: String) -> rustls::Error {
        if let Ok(mut p) = self.problem.lock() {
            *p = Some(TrustProblem(message.clone()));
        }
        rustls::Error::General(message)
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = fingerprint(end_entity);
        if let Some(pin) = &self.pin {
            if presented.eq_ignore_ascii_case(pin) {
                return Ok(ServerCertVerified::assertion());
            }
            return Err(self.refuse(format!(
                "the server {} presented certificate {presented}, not the one given with \
                 --trust-fingerprint ({pin}); refusing to connect",
                self.key
            )));
        }
        let by_authority = match &self.webpki {
            Some(webpki) => {
                webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            }
            None => Err(rustls::Error::General("no trusted authorities".into())),
        };
        match by_authority {
            Ok(ok) => return Ok(ok),
            Err(e) if self.ca_only => {
                return Err(self.refuse(format!(
                    "the server {}'s certificate ({presented}) is not valid under --ca: {e}",
                    self.key
                )))
            }
            Err(_) => {}
        }
        match known_fingerprint(&self.known_servers, &self.key) {
            Some(known) if known.eq_ignore_ascii_case(&presented) => {
                Ok(ServerCertVerified::assertion())
            }
            Some(known) => Err(self.refuse(format!(
                "WARNING: the certificate of {} has CHANGED. Someone may be intercepting the \
                 connection, or the server's certificate was replaced. Recorded: {known}; \
                 presented now: {presented}. If the change is expected, delete the line for {} \
                 in {} (or pass --trust-fingerprint {presented}).",
                self.key,
                self.key,
                self.known_servers.display()
            ))),
            None => {
                if let Err(e) = record_fingerprint(&self.known_servers, &self.key, &presented) {
                    return Err(self.refuse(format!(
                        "cannot record the certificate of {} in {}: {e}",
                        self.key,
                        self.known_servers.display()
                    )));
                }
                eprintln!(
                    "editor-client: first connection to {}: trusting its certificate {presented} \
                     from now on (recorded in {})",
                    self.key,
                    self.known_servers.display()
                );
                Ok(ServerCertVerified::assertion())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The fingerprint recorded for `key` (`host:port`), if any. Lines: `host:port SHA256:…`;
/// `#` starts a comment.
pub fn known_fingerprint(file: &Path, key: &str) -> Option<String> {
    let text = fs::read_to_string(file).ok()?;
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(char::is_whitespace))
        .find(|(k, _)| *k == key)
        .map(|(_, fp)| fp.trim().to_owned())
}

fn record_fingerprint(file: &Path, key: &str, fp: &str) -> std::io::Result<()> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let mut out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?;
    writeln!(out, "{key} {fp}")?;
    out.sync_all()
}
