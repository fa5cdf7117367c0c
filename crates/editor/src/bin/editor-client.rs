//! `editor-client`: joins a document on an `editor-server`. Full-screen editing when stdin
//! and stdout are terminals, line mode for scripts and pipes, and `--replay` to replay an
//! editing trace through the server as a benchmark. The logic lives in `editor::client`.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Parser;
use editor::client::lines::{self, LineOptions};
use editor::client::replay::{self, ReplayOptions};
use editor::client::trust::{default_known_servers, ClientTls, TrustOptions};
use editor::client::tui;
use netutil::{ConnectOptions, Family};

/// Collaborative plain-text editor client.
///
/// On a terminal it opens the document full-screen: type to insert, Backspace/Delete,
/// arrows, Home/End, PgUp/PgDn, Ctrl-Home/End, paste; other participants' cursors are shown
/// in colour with their names; Ctrl-Q (or Ctrl-C) quits once the server has saved every
/// edit, and otherwise asks; quitting anyway keeps the unsaved edits in a recovery file.
/// Otherwise (or with --lines) it prints the document, appends each input line to it and
/// prints each line others change once it settles: `Document updated (line 3, alice): Hi
/// there`, `Document updated: line 4 deleted (bob)`. If the connection drops it
/// reconnects with backoff and sends what the server had not acknowledged.
#[derive(Parser, Debug)]
#[command(
    version,
    after_help = "Examples:
  editor-client --doc notes                        edit full-screen (on a terminal)
  printf 'hello\\nworld\\n' | editor-client --doc notes   append two lines
  editor-client --doc notes --print                print the document and exit
  editor-client example.org --port 9000 --doc notes --name alice --lines
                                                   follow changes line by line
  editor-client --port 9000 --replay bench/traces/automerge-paper.json.gz --observers 16 --json
  editor-client --doc notes --recover ~/.local/state/editor-client/localhost_8080_notes.json
                                                   resend what an earlier session could not save
  editor-client example.org --token et1.…          from another machine (token from the server's log
                                                   or `editor-server token`)

Trust: connections use TLS. A server's certificate is accepted if it is signed by an authority
the system trusts (or --ca), or, for a self-signed one, if it is the one recorded for that
host:port in the known_servers file; the first connection to a new server records it, a changed
one is refused with a warning (like ssh's known_hosts)."
)]
struct Args {
    /// Server host name or IPv4/IPv6 address.
    #[arg(default_value = "localhost")]
    host: String,
    /// Server TCP port.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Document to edit (`[A-Za-z0-9._-]`, up to 64 characters). Default: `default`, or a
    /// fresh random name with --replay.
    #[arg(long = "doc")]
    document: Option<String>,
    /// Name shown to other participants (default: your login name: $USER, $LOGNAME, or the
    /// system's name for your user id).
    #[arg(long)]
    name: Option<String>,
    /// Print the document and exit.
    #[arg(long)]
    print: bool,
    /// Line mode even on a terminal: each input line is appended to the document.
    #[arg(long)]
    lines: bool,
    /// Line mode: print every remote change as it arrives (`Document updated: <inserted
    /// text>`, `Document updated: N characters deleted`) instead of each changed line
    /// once it settles.
    #[arg(long, conflicts_with = "print")]
    raw_updates: bool,
    /// Replay an editing trace (`.json` or `.json.gz`, editing-traces format) into a fresh
    /// document as fast as the protocol allows, check every copy equals its endContent,
    /// print a summary and exit (status 1 on any mismatch).
    #[arg(long, value_name = "TRACE", conflicts_with_all = ["print", "lines"])]
    replay: Option<PathBuf>,
    /// With --replay: extra connections that follow the document and must converge too.
    #[arg(long, default_value_t = 0, requires = "replay")]
    observers: usize,
    /// With --replay: print the summary as one JSON object.
    #[arg(long, requires = "replay")]
    json: bool,
    /// Resume from a recovery file written when an earlier session quit (or gave up) before
    /// the server saved everything: catch up, resend what the server never committed
    /// (nothing is applied twice), then delete the file. Files live in
    /// $XDG_STATE_HOME/editor-client (default ~/.local/state/editor-client).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["replay", "print"])]
    recover: Option<PathBuf>,
    /// Line mode: seconds to wait at end of input for the server to save every line; then
    /// give up, save the unsent lines to a recovery file and exit 1.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    wait: u64,
    /// Access token (from `editor-server token`, or the line the server logs at start).
    /// Needed from other machines; also read from $EDITOR_TOKEN.
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// Trust only this server certificate (as the server logs it at start:
    /// `SHA256:` and 64 hex digits), whatever known_servers says.
    #[arg(long, value_name = "SHA256:…")]
    trust_fingerprint: Option<String>,
    /// Trust only server certificates signed by the authorities in this PEM file (instead of
    /// the system's roots and known_servers).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// The file where the fingerprints of self-signed servers are recorded on first use.
    #[arg(long, value_name = "FILE", default_value_os_t = default_known_servers())]
    known_servers: PathBuf,
    /// Plaintext, no TLS (only towards a server started with --no-tls; for benchmarks and
    /// debugging).
    #[arg(long, conflicts_with_all = ["trust_fingerprint", "ca"])]
    no_tls: bool,
    /// Connect over IPv4 only.
    #[arg(short = '4', conflicts_with = "ipv6")]
    ipv4: bool,
    /// Connect over IPv6 only.
    #[arg(short = '6')]
    ipv6: bool,
}

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            netutil::cli::report("editor-client", &e);
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run());
    // Line mode reads stdin on a blocking thread that only returns at the next line or end
    // of input; dropping the runtime would wait for it, so a fatal error (a revoked token, a
    // refused document) with stdin still open would never exit. Output goes through std's
    // stdout, written synchronously, so nothing is lost by not waiting.
    runtime.shutdown_background();
    match outcome {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            netutil::cli::report("editor-client", e.as_ref());
            std::process::ExitCode::FAILURE
        }
    }
}

/// Ok(false): ran, but the outcome is a failure (a replay that did not converge).
async fn run() -> anyhow::Result<bool> {
    let args = Args::parse();
    let name = args
        .name
        .or_else(|| std::env::var("USER").ok().filter(|n| !n.is_empty()))
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|n| !n.is_empty())
        // No $USER in the environment (cron, `env -i`, some containers): ask the system
        // for the name of the uid we run as.
        .or_else(|| whoami::username().ok().filter(|n| !n.is_empty()))
        .unwrap_or_else(|| "anonymous".to_owned());
    let family = match (args.ipv4, args.ipv6) {
        (true, _) => Family::V4,
        (_, true) => Family::V6,
        _ => Family::Any,
    };
    let connect = ConnectOptions {
        family,
        ..ConnectOptions::default()
    };
    let tls = if args.no_tls {
        None
    } else {
        let trust = TrustOptions {
            pin: args.trust_fingerprint,
            ca: args.ca,
            known_servers: args.known_servers,
        };
        Some(ClientTls::new(&args.host, args.port, &trust).map_err(anyhow::Error::msg)?)
    };
    let document = match &args.recover {
        Some(path) => {
            let saved = editor::client::recovery::load(path)?;
            if args.document.as_ref().is_some_and(|d| *d != saved.document) {
                anyhow::bail!(
                    "{} holds changes to document {:?}, not {:?}",
                    path.display(),
                    saved.document,
                    args.document.unwrap_or_default()
                );
            }
            saved.document
        }
        None => args
            .document
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
    };
    let options = LineOptions {
        host: args.host,
        port: args.port,
        document,
        name,
        connect,
        print_only: args.print,
        raw_updates: args.raw_updates,
        recover: args.recover,
        wait: std::time::Duration::from_secs(args.wait),
        tls,
        token: args
            .token
            .or_else(|| std::env::var("EDITOR_TOKEN").ok())
            .filter(|t| !t.is_empty()),
    };
    if let Some(trace) = args.replay {
        netutil::init_logging();
        let summary = replay::run(&ReplayOptions {
            target: options.target(),
            trace,
            observers: args.observers,
            document: args.document,
        })
        .await?;
        if args.json {
            println!("{}", serde_json::to_string(&summary)?);
        } else {
            print!("{}", summary.to_text());
        }
        if !summary.converged {
            eprintln!("editor-client: a copy of the document differs from the trace's endContent");
        }
        return Ok(summary.converged);
    }
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if interactive && !args.lines && !args.print && !args.raw_updates {
        // No logging: it would scribble over the screen. Problems show in the status line.
        tui::run(&options).await?;
        return Ok(true);
    }
    netutil::init_logging();
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut stdout = std::io::stdout();
    lines::run(&options, stdin, &mut stdout).await?;
    Ok(true)
}
