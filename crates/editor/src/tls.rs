//! The server's TLS identity: a certificate given with `--tls-cert`/`--tls-key`, or a
//! self-signed one created on first start and kept in the data directory.
//!
//! rustls with the ring provider only (no OpenSSL, no second provider to build). A
//! self-signed certificate has no authority vouching for it; clients trust it the way ssh
//! trusts host keys, by its fingerprint ([`fingerprint`], printed at every start and
//! recorded by clients on first use, see [`crate::client::trust`]).
//!
//! The server offers ALPN `editor` and `http/1.1`: editor clients ask for the first, and a
//! browser doing HTTPS on the same port gets the second.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// ALPN name of the editor protocol.
pub const ALPN_EDITOR: &[u8] = b"editor";
/// ALPN name a browser asks for; served on the same port.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// File names in the data directory (hidden, so never a document's name).
pub const CERT_FILE: &str = ".tls-cert.pem";
pub const KEY_FILE: &str = ".tls-key.pem";

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("creating a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The ring provider, the only one built.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `SHA256:` and the hex SHA-256 of a certificate's DER bytes, as ssh shows host keys.
pub fn fingerprint(cert: &[u8]) -> String {
    let digest = Sha256::digest(cert);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("SHA256:{hex}")
}

/// What the server presents, and where it came from.
pub struct ServerIdentity {
    pub config: Arc<rustls::ServerConfig>,
    pub fingerprint: String,
    /// `None` for a certificate given on the command line.
    pub self_signed: Option<PathBuf>,
}

/// Loads `--tls-cert`/`--tls-key`, or the data directory's self-signed certificate,
/// creating it on first start.
pub fn server_identity(
    data_dir: &Path,
    cert_and_key: Option<(&Path, &Path)>,
) -> Result<ServerIdentity, TlsError> {
    let (cert_path, key_path, self_signed) = match cert_and_key {
        Some((cert, key)) => (cert.to_path_buf(), key.to_path_buf(), false),
        None => {
            let cert = data_dir.join(CERT_FILE);
            let key = data_dir.join(KEY_FILE);
            if !cert.exists() || !key.exists() {
                create_self_signed(&cert, &key)?;
            }
            (cert, key, true)
        }
    };
    let chain = read_certs(&cert_path)?;
    let key = read_key(&key_path)?;
    let fingerprint = chain.first().map(|c| fingerprint(c)).unwrap_or_default();
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![ALPN_EDITOR.to_vec(), ALPN_HTTP1.to_vec()];
    Ok(ServerIdentity {
        config: Arc::new(config),
        fingerprint,
        self_signed: self_signed.then_some(cert_path),
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_err = |reason: String| TlsError::Pem {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(pem_err("no certificate in the file".into()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        path: path.to_path_buf(),
        reason: format!("no private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
    })
}

/// A certificate for `localhost` and this machine's host name (clients pin it by
/// fingerprint, so the names are informative), valid for many years.
fn create_self_signed(cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let mut names = vec!["localhost".to_owned()];
    if let Ok(host) = fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() && host != "localhost" {
            names.push(host.to_owned());
        }
    }
    let mut params = rcgen::CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "editor-server (self-signed)");
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2099, 12, 31);
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    // The key first, private from the start; the certificate names it.
    write_private(key_path, key.serialize_pem().as_bytes())?;
    netutil::durable::write_atomic(cert_path, cert.pem().as_bytes()).map_err(|source| {
        TlsError::Io {
            path: cert_path.to_path_buf(),
            source,
        }
    })?;
    Ok(())
}

/// Writes a file only its owner can read (mode 0600 from creation, never wider), durably.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("secret"),
        std::process::id()
    ));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        netutil::durable::sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_identity_is_created_once_kept_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = server_identity(dir.path(), None).unwrap();
        assert!(first.fingerprint.starts_with("SHA256:"));
        assert_eq!(first.fingerprint.len(), "SHA256:".len() + 64);
        let again = server_identity(dir.path(), None).unwrap();
        assert_eq!(first.fingerprint, again.fingerprint, "kept across starts");
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
