//! Access tokens: minted by `editor-server token`, checked in every `Join`. Pure: no I/O,
//! no clock (the caller passes the time and the revoked ids).
//!
//! A token is `et1.` + base64url(claims) + `.` + base64url(MAC), the MAC keyed BLAKE3
//! with the server's 32-byte secret over the encoded claims: a token id, a document
//! pattern (`*`, `notes*` or an exact name), read-only or read-write, an optional expiry
//! and an optional label (the display name of whoever holds it). Nothing in it is secret;
//! changing one byte breaks the MAC. The server stores no tokens, only the secret and the
//! ids it revoked.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::protocol::ErrorCode;

/// Every token starts with this (format version 1).
const PREFIX: &str = "et1.";

/// Longest token accepted (a long label and pattern fit easily).
pub const MAX_TOKEN_LEN: usize = 1024;

/// What a token grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    ReadOnly,
    ReadWrite,
}

/// What a token says, signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Random, unique per token: what `--revoke` names and the journal records.
    pub id: String,
    /// `*` (every document), `prefix*`, or one document name.
    pub documents: String,
    pub mode: Mode,
    /// Seconds since the Unix epoch after which the token is refused.
    pub expires: Option<u64>,
    /// Shown as the display name of whoever uses the token.
    pub label: Option<String>,
}

/// Why a token was refused, in words a user understands.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("this server needs an access token for connections from other machines (ask its operator for one: editor-server token --doc NAME --read-write; then pass --token or set EDITOR_TOKEN)")]
    Missing,
    #[error("the token is damaged or was not issued by this server")]
    Forged,
    #[error("token expired {}", ago(*.0))]
    Expired(u64),
    #[error("token {0} was revoked")]
    Revoked(String),
    #[error("this token is for documents {pattern}, not {document}")]
    WrongDocument { pattern: String, document: String },
}

impl TokenError {
    /// The protocol's code for this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            TokenError::Missing => ErrorCode::TokenRequired,
            TokenError::Forged => ErrorCode::BadToken,
            TokenError::Expired(_) => ErrorCode::TokenExpired,
            TokenError::Revoked(_) => ErrorCode::TokenRevoked,
            TokenError::WrongDocument { .. } => ErrorCode::WrongDocument,
        }
    }
}

/// "2 days ago", "5 minutes ago", "just now".
fn ago(seconds: u64) -> String {
    let units = [
        (86_400, "day"),
        (3_600, "hour"),
        (60, "minute"),
        (1, "second"),
    ];
    for (size, name) in units {
        let n = seconds / size;
        if n > 0 {
            let s = if n == 1 { "" } else { "s" };
            return format!("{n} {name}{s} ago");
        }
    }
    "just now".to_owned()
}

/// The signed token for `claims`.
pub fn mint(secret: &[u8; 32], claims: &Claims) -> String {
    // Encoding a struct of strings and integers into a Vec cannot fail.
    let body = postcard::to_stdvec(claims).unwrap_or_default();
    let mac = blake3::keyed_hash(secret, &body);
    format!(
        "{PREFIX}{}.{}",
        URL_SAFE_NO_PAD.encode(&body),
        URL_SAFE_NO_PAD.encode(mac.as_bytes())
    )
}

/// The claims of a token this server signed; `Forged` for anything else.
pub fn verify(secret: &[u8; 32], token: &str) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Forged);
    }
    let rest = token
        .trim()
        .strip_prefix(PREFIX)
        .ok_or(TokenError::Forged)?;
    let (body, mac) = rest.split_once('.').ok_or(TokenError::Forged)?;
    let body = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| TokenError::Forged)?;
    let mac: [u8; 32] = URL_SAFE_NO_PAD
        .decode(mac)
        .ok()
        .and_then(|m| m.try_into().ok())
        .ok_or(TokenError::Forged)?;
    // blake3::Hash compares in constant time.
    if blake3::keyed_hash(secret, &body) != blake3::Hash::from(mac) {
        return Err(TokenError::Forged);
    }
    postcard::from_bytes(&body).map_err(|_| TokenError::Forged)
}

/// Whether the claims admit `document` at time `now` (Unix seconds), given the revoked ids.
pub fn admit(
    claims: &Claims,
    document: &str,
    now: u64,
    is_revoked: impl Fn(&str) -> bool,
) -> Result<(), TokenError> {
    still_valid(claims, now, is_revoked)?;
    if !pattern_matches(&claims.documents, document) {
        return Err(TokenError::WrongDocument {
            pattern: claims.documents.clone(),
            document: document.to_owned(),
        });
    }
    Ok(())
}

/// Whether a token already admitted is still good (checked during a session).
pub fn still_valid(
    claims: &Claims,
    now: u64,
    is_revoked: impl Fn(&str) -> bool,
) -> Result<(), TokenError> {
    if let Some(expires) = claims.expires {
        if now >= expires {
            return Err(TokenError::Expired(now - expires));
        }
    }
    if is_revoked(&claims.id) {
        return Err(TokenError::Revoked(claims.id.clone()));
    }
    Ok(())
}

/// `*` matches everything, `notes*` every name starting with `notes`, anything else
/// exactly that name.
pub fn pattern_matches(pattern: &str, document: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => document.starts_with(prefix),
        None => pattern == document,
    }
}

/// Checks a document pattern given to `token --doc`: a document name, optionally ending
/// in `*`, or `*` alone.
pub fn validate_pattern(pattern: &str) -> Result<(), String> {
    match pattern.strip_suffix('*') {
        Some("") => Ok(()),
        Some(prefix) => crate::protocol::validate_document_name(prefix),
        None => crate::protocol::validate_document_name(pattern),
    }
}

/// Parses `30s`, `15m`, `24h`, `7d`, `2w` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected a number and a unit, like 7d"))?;
    let unit_secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "invalid duration {text:?}: the unit is one of s, m, h, d, w"
            ))
        }
    };
    n.checked_mul(unit_secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("invalid duration {text:?}: too long"))
}

/// A fresh token id: 8 random bytes, hex.
pub fn new_id(random: [u8; 8]) -> String {
    random.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; 32] = [7; 32];

    fn claims() -> Claims {
        Claims {
            id: "0123456789abcdef".into(),
            documents: "notes*".into(),
            mode: Mode::ReadWrite,
            expires: Some(1_000),
            label: Some("alice".into()),
        }
    }

    #[test]
    fn a_minted_token_verifies_and_any_changed_byte_does_not() {
        let token = mint(&SECRET, &claims());
        assert_eq!(verify(&SECRET, &token).unwrap(), claims());
        for i in PREFIX.len()..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes).unwrap();
            if changed != token {
                assert_eq!(
                    verify(&SECRET, &changed),
                    Err(TokenError::Forged),
                    "byte {i}"
                );
            }
        }
        assert_eq!(verify(&[8; 32], &token), Err(TokenError::Forged));
        assert_eq!(verify(&SECRET, "garbage"), Err(TokenError::Forged));
    }

    #[test]
    fn admission_checks_expiry_revocation_and_document() {
        let c = claims();
        assert!(admit(&c, "notes-1", 999, |_| false).is_ok());
        assert_eq!(
            admit(&c, "notes-1", 1_000 + 2 * 86_400, |_| false)
                .unwrap_err()
                .to_string(),
            "token expired 2 days ago"
        );
        assert_eq!(
            admit(&c, "notes", 0, |id| id == c.id).unwrap_err().code(),
            ErrorCode::TokenRevoked
        );
        assert_eq!(
            admit(&c, "diary", 0, |_| false).unwrap_err().to_string(),
            "this token is for documents notes*, not diary"
        );
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("a", "a") && !pattern_matches("a", "ab"));
    }

    #[test]
    fn durations_and_patterns() {
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("7y").is_err());
        assert!(parse_duration("d").is_err());
        assert!(validate_pattern("*").is_ok());
        assert!(validate_pattern("notes*").is_ok());
        assert!(validate_pattern("../x").is_err());
    }
}
