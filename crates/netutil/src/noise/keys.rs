//! Static X25519 key pairs: the identity a node proves in the Noise handshake.
//!
//! A key is written as standard base64 of its 32 bytes (44 characters, as WireGuard writes
//! its keys), so a public key fits on one line of a config file or a command line. A
//! secret key lives in a file of its own: that line and a newline, mode 0600, never
//! overwritten (a lost identity cannot be recovered, so an existing file is an error).

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use snow::params::DHChoice;
use snow::resolvers::{CryptoResolver, DefaultResolver};

use super::params;

/// Length of an X25519 key, secret or public.
pub const KEY_LEN: usize = 32;

/// Why a key could not be parsed, read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a key: expected {KEY_LEN} bytes in base64 (44 characters, e.g. as printed by `keygen`)")]
    Malformed,
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("key file {path}: {reason}")]
    BadFile { path: PathBuf, reason: String },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no key generated: {0}")]
    Generate(String),
}

/// A node's public key: what other nodes list to recognise it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; KEY_LEN]);

impl PublicKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> PublicKey {
        PublicKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&STANDARD.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<PublicKey, KeyError> {
        decode_key(text).map(PublicKey)
    }
}

/// A node's secret key, with its public key beside it. Debug output hides the secret.
#[derive(Clone)]
pub struct SecretKey {
    secret: [u8; KEY_LEN],
    public: PublicKey,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public)
    }
}

impl SecretKey {
    /// A fresh key pair from the operating system's random number generator.
    pub fn generate() -> Result<SecretKey, KeyError> {
        let keypair = snow::Builder::new(params())
            .generate_keypair()
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        let secret: [u8; KEY_LEN] = keypair
            .private
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Generate("unexpected key length".into()))?;
        Ok(SecretKey::from_bytes(secret))
    }

    /// The key pair whose secret half is `secret` (the public half is derived from it).
    pub fn from_bytes(secret: [u8; KEY_LEN]) -> SecretKey {
        let mut public = [0u8; KEY_LEN];
        if let Some(mut dh) = DefaultResolver.resolve_dh(&DHChoice::Curve25519) {
            dh.set(&secret);
            public.copy_from_slice(dh.pubkey());
        }
        SecretKey {
            secret,
            public: PublicKey(public),
        }
    }

    pub fn public(&self) -> PublicKey {
        self.public
    }

    pub(crate) fn secret_bytes(&self) -> &[u8; KEY_LEN] {
        &self.secret
    }

    /// Reads a key file written by [`write_new`](Self::write_new).
    pub fn read_file(path: &Path) -> Result<SecretKey, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        let secret = decode_key(&text).map_err(|_| KeyError::BadFile {
            path: path.to_owned(),
            reason: "not a secret key (expected one line of base64, as `keygen` writes)".into(),
        })?;
        Ok(SecretKey::from_bytes(secret))
    }

    /// Writes the secret key to a new file, readable by its owner only (0600), and syncs it.
    /// An existing file is never replaced.
    pub fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        let write_error = |source| KeyError::Write {
            path: path.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(write_error)?;
        let line = format!("{}\n", STANDARD.encode(self.secret));
        file.write_all(line.as_bytes()).map_err(write_error)?;
        file.sync_all().map_err(write_error)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::durable::sync_dir(dir).map_err(write_error)?;
        }
        Ok(())
    }
}

fn decode_key(text: &str) -> Result<[u8; KEY_LEN], KeyError> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|_| KeyError::Malformed)?;
    bytes.try_into().map_err(|_| KeyError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_public_key_round_trips_through_its_text_form() {
        let key = SecretKey::generate().unwrap().public();
        let text = key.to_string();
        assert_eq!(text.len(), 44);
        assert_eq!(text.parse::<PublicKey>().unwrap(), key);
        assert_eq!(format!(" {text}\n").parse::<PublicKey>().unwrap(), key);
    }

    #[test]
    fn malformed_public_keys_are_refused() {
        for bad in [
            "",
            "abc",
            "not base64 at all!!",
            &"A".repeat(43),
            &STANDARD.encode([1u8; 31]),
        ] {
            assert!(bad.parse::<PublicKey>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_public_key_is_derived_from_the_secret_one() {
        let key = SecretKey::generate().unwrap();
        let again = SecretKey::from_bytes(*key.secret_bytes());
        assert_eq!(again.public(), key.public());
        assert_ne!(SecretKey::generate().unwrap().public(), key.public());
        // RFC 7748 section 6.1: Alice's key pair.
        let alice = hex(b"77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let alice_public = hex(b"8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        assert_eq!(
            SecretKey::from_bytes(alice).public().as_bytes(),
            &alice_public
        );
    }

    fn hex(text: &[u8]) -> [u8; KEY_LEN] {
        let mut out = [0u8; KEY_LEN];
        for (i, pair) in text.chunks(2).enumerate() {
            out[i] = u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap();
        }
        out
    }

    #[test]
    fn a_key_file_is_private_is_never_overwritten_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("netutil-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.key");
        let _ = std::fs::remove_file(&path);
        let key = SecretKey::generate().unwrap();
        key.write_new(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(SecretKey::read_file(&path).unwrap().public(), key.public());
        let other = SecretKey::generate().unwrap();
        assert!(matches!(
            other.write_new(&path),
            Err(KeyError::Write { .. })
        ));
        assert_eq!(SecretKey::read_file(&path).unwrap().public(), key.public());
        std::fs::write(&path, "garbage\n").unwrap();
        let err = SecretKey::read_file(&path).unwrap_err().to_string();
        assert!(err.contains("not a secret key"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
