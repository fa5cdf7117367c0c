//! Who may join: the server's token secret, the revoked token ids, and the rule that
//! connections from loopback need no token unless `--require-token` (Redis's protected
//! mode), while every other connection does. Token logic itself is pure, in
//! [`crate::auth`]; this file holds its files in the data directory:
//!
//! * `.token-secret`: 32 random bytes, mode 0600, created on first start;
//! * `.tokens`: one line per minted token (id, mode, documents, expiry, label; never the
//!   token), for `token --list`;
//! * `.revoked-tokens`: one revoked id per line, re-read when it changes (checked at most
//!   once a second), so `token --revoke` takes effect on a running server.

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::auth::{self, Claims, Mode, TokenError};
use crate::tls::write_private;

pub const SECRET_FILE: &str = ".token-secret";
pub const ISSUED_FILE: &str = ".tokens";
pub const REVOKED_FILE: &str = ".revoked-tokens";

/// How often a session re-checks its token (expiry, revocation).
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What a joining connection may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub read_only: bool,
    /// The token's claims, if it came with one (re-checked during the session).
    pub claims: Option<Claims>,
}

pub struct Access {
    secret: [u8; 32],
    require_token: bool,
    revoked_path: PathBuf,
    revoked: Mutex<Revoked>,
}

struct Revoked {
    ids: HashSet<String>,
    modified: Option<SystemTime>,
    checked: Instant,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        write!(f, "Access {{ require_token: {} }}", self.require_token)
    }
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Access {
    /// Loads (or creates) the secret in `data_dir`, and the revoked ids.
    pub fn open(data_dir: &Path, require_token: bool) -> std::io::Result<Access> {
        let secret = load_or_create_secret(data_dir)?;
        let revoked_path = data_dir.join(REVOKED_FILE);
        let (ids, modified) = read_revoked(&revoked_path);
        Ok(Access {
            secret,
            require_token,
            revoked_path,
            revoked: Mutex::new(Revoked {
                ids,
                modified,
                checked: Instant::now(),
            }),
        })
    }

    /// Decides a `Join` from `addr` for `document` with `token`.
    pub fn admit(
        &self,
        addr: SocketAddr,
        document: &str,
        token: Option<&str>,
    ) -> Result<Grant, TokenError> {
        let Some(token) = token else {
            if addr.ip().is_loopback() && !self.require_token {
                return Ok(Grant {
                    read_only: false,
                    claims: None,
                });
            }
            return Err(TokenError::Missing);
        };
        let claims = auth::verify(&self.secret, token)?;
        auth::admit(&claims, document, now_unix(), |id| self.is_revoked(id))?;
        Ok(Grant {
            read_only: claims.mode == Mode::ReadOnly,
            claims: Some(claims),
        })
    }

    /// Whether an admitted token is still good.
    pub fn recheck(&self, claims: &Claims) -> Result<(), TokenError> {
        auth::still_valid(claims, now_unix(), |id| self.is_revoked(id))
    }

    /// Whether `id` is in the revocation file (re-read when it changed).
    fn is_revoked(&self, id: &str) -> bool {
        let Ok(mut revoked) = self.revoked.lock() else {
            return false;
        };
        if revoked.checked.elapsed() >= RECHECK_INTERVAL {
            revoked.checked = Instant::now();
            let modified = fs::metadata(&self.revoked_path)
                .and_then(|m| m.modified())
                .ok();
            if modified != revoked.modified {
                let (ids, modified) = read_revoked(&self.revoked_path);
                if ids.len() != revoked.ids.len() {
                    tracing::info!("revoked tokens: {} (re-read)", ids.len());
                }
                revoked.ids = ids;
                revoked.modified = modified;
            }
        }
        revoked.ids.contains(id)
    }

    /// Mints a token and records it in `.tokens` (not the token, its claims).
    pub fn mint(&self, data_dir: &Path, claims: &Claims) -> std::io::Result<String> {
        record_issued(data_dir, claims)?;
        Ok(auth::mint(&self.secret, claims))
    }
}

/// Fresh claims with a random id.
pub fn new_claims(
    documents: String,
    mode: Mode,
    valid_for: Option<Duration>,
    label: Option<String>,
) -> std::io::Result<Claims> {
    let mut random = [0u8; 8];
    fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
    Ok(Claims {
        id: auth::new_id(random),
        documents,
        mode,
        expires: valid_for.map(|d| now_unix().saturating_add(d.as_secs())),
        label,
    })
}

fn load_or_create_secret(dir: &Path) -> std::io::Result<[u8; 32]> {
    let path = dir.join(SECRET_FILE);
    match fs::read(&path) {
        Ok(bytes) => bytes.try_into().map_err(|_| {
            std::io::Error::other(format!(
                "{}: not a token secret (32 bytes expected); delete it to create a new one \
                 (every token issued so far stops working)",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = [0u8; 32];
            fs::File::open("/dev/urandom")?.read_exact(&mut secret)?;
            write_private(&path, &secret).map_err(std::io::Error::other)?;
            Ok(secret)
        }
        Err(e) => Err(e),
    }
}

fn read_revoked(path: &Path) -> (HashSet<String>, Option<SystemTime>) {
    let modified = fs::metadata(path).and_then(|m| m.modified()).ok();
    let ids = fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|id| !id.starts_with('#'))
        .map(str::to_owned)
        .collect();
    (ids, modified)
}

fn record_issued(dir: &Path, claims: &Claims) -> std::io::Result<()> {
    let mut out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(ISSUED_FILE))?;
    writeln!(out, "{}", issued_line(claims))?;
    out.sync_all()
}

fn issued_line(c: &Claims) -> String {
    let mode = match c.mode {
        Mode::ReadOnly => "read-only",
        Mode::ReadWrite => "read-write",
    };
    let expires = c
        .expires
        .map_or_else(|| "never".to_owned(), |e| e.to_string());
    let label = c.label.as_deref().unwrap_or("-");
    format!("{} {mode} {} {expires} {label}", c.id, c.documents)
}

/// `token --revoke ID`: appends the id to the revocation file (running servers re-read it).
pub fn revoke(dir: &Path, id: &str) -> std::io::Result<()> {
    let mut out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(REVOKED_FILE))?;
    writeln!(out, "{id}")?;
    out.sync_all()
}

/// `token --list`: every minted token's id, mode, documents, expiry and label, and whether
/// it is revoked or expired.
pub fn list(dir: &Path) -> std::io::Result<Vec<String>> {
    let (revoked, _) = read_revoked(&dir.join(REVOKED_FILE));
    let issued = match fs::read_to_string(dir.join(ISSUED_FILE)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let now = now_unix();
    Ok(issued
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let id = fields.first().copied().unwrap_or("");
            let expires = fields.get(3).and_then(|e| e.parse::<u64>().ok());
            let state = if revoked.contains(id) {
                "revoked"
            } else if expires.is_some_and(|e| now >= e) {
                "expired"
            } else {
                "valid"
            };
            let expiry = match expires {
                Some(e) if e > now => format!("expires in {}", short_duration(e - now)),
                Some(_) => "expired".to_owned(),
                None => "no expiry".to_owned(),
            };
            format!(
                "{id}  {state:<7}  {:<10}  {:<20}  {expiry:<18}  label {}",
                fields.get(1).copied().unwrap_or(""),
                fields.get(2).copied().unwrap_or(""),
                fields.get(4).copied().unwrap_or("-")
            )
        })
        .collect())
}

fn short_duration(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
