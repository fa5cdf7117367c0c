//! What the benchmark examples share: how their clients reach the server (TLS pinned to
//! the server's fingerprint, or `--no-tls`), the same choice the real client offers.

use editor::client::link::Target;
use editor::client::trust::{ClientTls, TrustOptions};

/// TLS flags of a benchmark example.
#[derive(clap::Args, Debug)]
pub struct TlsArgs {
    /// Plaintext (the server must run with --no-tls too).
    #[arg(long, conflicts_with = "trust_fingerprint")]
    pub no_tls: bool,
    /// The server's certificate fingerprint (its log prints it at start). Without it the
    /// first connection records the certificate in a temporary known_servers file.
    #[arg(long, value_name = "SHA256:...")]
    pub trust_fingerprint: Option<String>,
}

impl TlsArgs {
    /// Where and how to connect to `host:port`.
    pub fn target(&self, host: &str, port: u16) -> anyhow::Result<Target> {
        let tls = if self.no_tls {
            None
        } else {
            let options = TrustOptions {
                pin: self.trust_fingerprint.clone(),
                ca: None,
                // A benchmark must not write into the user's own known_servers.
                known_servers: std::env::temp_dir()
                    .join(format!("bench-known-servers-{}", std::process::id())),
            };
            Some(ClientTls::new(host, port, &options).map_err(anyhow::Error::msg)?)
        };
        Ok(Target {
            host: host.to_owned(),
            port,
            connect: netutil::ConnectOptions::default(),
            tls,
        })
    }
}
