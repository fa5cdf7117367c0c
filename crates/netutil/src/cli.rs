//! How every binary reports a failure to its user: one line on stderr,
//! `PROGRAM: what failed: why`, plus a hint where one helps, and exit status 1.
//!
//! Returning `anyhow::Result` from `main` prints the error's Debug form: the message, a
//! `Caused by:` list that repeats it (our errors already include their cause in their own
//! text), and with `RUST_BACKTRACE=1` a backtrace of where the error value was made. A
//! user's mistake (a taken port, a server that is not running) needs none of that, so every
//! `main` ends with [`exit_code`]. Backtraces stay for real bugs: panics.

use std::error::Error;
use std::io;
use std::process::ExitCode;

/// Prints `program: message` for an error (see [`one_line`]) and turns the result into the
/// process's exit status: 0 on success, 1 on failure.
pub fn exit_code<E>(program: &str, result: Result<(), E>) -> ExitCode
where
    E: AsRef<dyn Error + Send + Sync + 'static>,
{
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(program, e.as_ref());
            ExitCode::FAILURE
        }
    }
}

/// Prints `program: message` on stderr, the message as [`one_line`] gives it.
pub fn report(program: &str, error: &(dyn Error + 'static)) {
    eprintln!("{program}: {}", one_line(error));
}

/// The error and its causes on one line, `what failed: why`, each cause once: a cause whose
/// text its wrapper already shows (`cannot listen on [::]:80: Address already in use`, with
/// the I/O error as its source) is not repeated. The OS error number is left out, and a
/// hint follows for the failures a user can fix (a taken port, a server not running).
pub fn one_line(error: &(dyn Error + 'static)) -> String {
    let mut line = String::new();
    let mut cause: Option<&(dyn Error + 'static)> = Some(error);
    while let Some(e) = cause {
        let text = without_os_error_number(&e.to_string()).replace(['\n', '\r'], " ");
        let text = text.trim();
        if !text.is_empty() && !line.contains(text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(text);
        }
        cause = e.source();
    }
    if let Some(hint) = hint(error, &line) {
        line.push_str(" (");
        line.push_str(hint);
        line.push(')');
    }
    line
}

/// `Address already in use (os error 98)` → `Address already in use`, wherever it appears.
fn without_os_error_number(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(" (os error ") {
        let after = &rest[start + " (os error ".len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && after[digits..].starts_with(')') {
            out.push_str(&rest[..start]);
            rest = &after[digits + 1..];
        } else {
            out.push_str(&rest[..start + 1]);
            rest = &rest[start + 1..];
        }
    }
    out.push_str(rest);
    out
}

/// What the user can do about the failure, if anything obvious. Looks at I/O errors in the
/// chain and, for connection attempts (whose reasons are kept as text, possibly behind a
/// `#[error(transparent)]` wrapper that hides the typed error), at the line itself.
fn hint(error: &(dyn Error + 'static), line: &str) -> Option<&'static str> {
    let mut cause: Option<&(dyn Error + 'static)> = Some(error);
    let mut kind = None;
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            kind = Some(io.kind());
        }
        cause = e.source();
    }
    if kind == Some(io::ErrorKind::AddrInUse) {
        return Some("another program is using that port; choose another with --port");
    }
    if kind == Some(io::ErrorKind::ConnectionRefused)
        || (line.starts_with("cannot connect to ") && line.ends_with("Connection refused"))
    {
        return Some("is the server running, and on that port?");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot listen on [::]:8080: {source}")]
    struct Bind {
        #[source]
        source: io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error(transparent)]
    struct Transparent(#[from] Bind);

    #[derive(Debug, thiserror::Error)]
    #[error("loading documents")]
    struct Outer {
        #[source]
        source: io::Error,
    }

    fn in_use() -> io::Error {
        io::Error::from_raw_os_error(libc::EADDRINUSE)
    }

    #[test]
    fn a_cause_already_in_its_wrappers_text_is_not_repeated() {
        let error = Transparent(Bind { source: in_use() });
        assert_eq!(
            one_line(&error),
            "cannot listen on [::]:8080: Address already in use \
             (another program is using that port; choose another with --port)"
        );
    }

    #[test]
    fn a_cause_not_in_the_text_is_appended_once() {
        let error = Outer {
            source: io::Error::new(io::ErrorKind::NotFound, "no such directory"),
        };
        assert_eq!(one_line(&error), "loading documents: no such directory");
    }

    #[test]
    fn a_refused_connection_gets_a_hint() {
        let error = crate::NetError::Connect {
            host: "localhost".to_owned(),
            port: 1,
            attempts: vec![(
                "127.0.0.1:1".parse().expect("literal"),
                io::Error::from_raw_os_error(libc::ECONNREFUSED).to_string(),
            )],
        };
        assert_eq!(
            one_line(&error),
            "cannot connect to localhost port 1: 127.0.0.1:1: Connection refused \
             (is the server running, and on that port?)"
        );
    }

    #[test]
    fn os_error_numbers_are_left_out_but_other_parentheses_stay() {
        assert_eq!(
            without_os_error_number("a (os error 98): b (os error 111) (kept) (os error x)"),
            "a: b (kept) (os error x)"
        );
    }
}
