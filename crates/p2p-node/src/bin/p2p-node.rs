//! `p2p-node`: one node of the peer-to-peer cluster. Parses flags, sets up logging, runs
//! [`p2p_node::node::run`] until Ctrl-C, SIGTERM or `quit`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use netutil::noise::SecretKey;
use p2p_node::cluster::config::{Auth, Cluster};
use p2p_node::cluster::election::{NodeId, Timing};
use p2p_node::node::config::NodeConfig;
use p2p_node::swarm::serve::ServeOptions;

/// One node of a peer-to-peer cluster: elects the lowest live id as leader (Bully), keeps
/// a star of links to it, and shares the files of its directory in the leader's index
/// (written to Peer_files.log). `get NAME` downloads a file from every node holding it at
/// once, in verified 1 MiB pieces, resumable (NAME.part).
///
/// With keys, only nodes proving a listed key take part and every link is encrypted
/// (Noise XX): `p2p-node init-cluster DIR --nodes 3` writes the keys and cluster file and
/// prints the commands that start the nodes. Without keys the cluster must be loopback only.
#[derive(Parser, Debug)]
#[command(
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Console commands (typed on stdin; line editing and history on a terminal):
  leader      which node leads, and in which term
  peers       every node of the cluster: leader, connected, unreachable, last seen
  files       the cluster's file index (every shared file and its holders)
  get NAME    download NAME from every node holding it into this node's directory
  help        this list
  quit        stop this node (also Ctrl-C, Ctrl-D)

Examples:
  p2p-node --id 1                  node 1 of the default cluster (127.0.0.1:9001..9003),
                                   sharing ./Node1
  p2p-node --id 2 --cluster cluster.toml --dir /srv/share
  p2p-node --id 1 --peer 1=127.0.0.1:7001 --peer 2=127.0.0.1:7002 --peer 3=[::1]:7003
  p2p-node --id 3 --upload-limit 20    serve at most 20 MiB/s to downloaders
  p2p-node init-cluster demo --nodes 3 then run the three commands it prints
                                   (a cluster with keys: authenticated, encrypted)"
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// This node's id; must be one of the cluster's ids.
    #[arg(long, required = true)]
    id: Option<NodeId>,

    /// TOML file listing every node: [[node]] tables with `id = 1`,
    /// `addr = "127.0.0.1:9001"` and, in a cluster with keys, `public_key = "..."`. Without
    /// it and without --peer, the cluster is ids 1, 2, 3 at 127.0.0.1:9001, 9002, 9003.
    #[arg(long, value_name = "FILE", conflicts_with = "peer")]
    cluster: Option<PathBuf>,

    /// A node of the cluster as ID=HOST:PORT (IPv4, [IPv6] or a host name), or
    /// ID=HOST:PORT=PUBLIC_KEY in a cluster with keys (e.g.
    /// 2=10.0.0.2:9001=q83vEjRWeJq8WmMx...=); repeat once per node, this one included.
    #[arg(long, value_name = "ID=HOST:PORT[=KEY]")]
    peer: Vec<String>,

    /// This node's secret key (from `p2p-node keygen FILE` or `init-cluster`); required
    /// when the cluster lists public keys, and its public key must be this node's.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,

    /// Address to listen on (e.g. 0.0.0.0:9001 or [::]:9001); default: this node's address
    /// in the cluster.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,

    /// Directory whose files this node shares (created if missing); default ./NodeN.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,

    /// File the leader rewrites with the cluster's file index.
    #[arg(long, value_name = "FILE", default_value = "Peer_files.log")]
    index_log: PathBuf,

    /// Leader heartbeat interval, in milliseconds; must be shorter than the failure timeout.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    heartbeat_ms: u64,

    /// Silence after which a leader (or follower) is presumed dead, in milliseconds. Closed
    /// connections are noticed at once; this is for silent failures only.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    failure_timeout_ms: u64,

    /// How often the directory is rescanned for changes, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    rescan_ms: u64,

    /// Most downloaders served at once (one data connection each); more are refused.
    #[arg(long, value_name = "N", default_value_t = 16)]
    max_uploads: usize,

    /// Upload rate limit of this node for swarm downloads, in MiB/s (2^20 bytes per
    /// second, the unit of the download progress and summary; 1.5 is fine); 0 means
    /// unlimited.
    #[arg(long, value_name = "MIB_PER_S", default_value_t = 0.0, value_parser = parse_rate)]
    upload_limit: f64,

    /// TEST ONLY: corrupt every piece this node serves (acts as a faulty peer, so tests can
    /// check that downloads reject its pieces and drop it).
    #[arg(long, hide = true)]
    corrupt_pieces: bool,
}

/// A rate in MiB/s: a finite number, 0 or more.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 0.0 => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a rate in MiB/s (a number, 0 or more; 0 means unlimited)"
        )),
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Writes a new secret key to FILE (mode 0600, never overwriting) and prints its public
    /// key on stdout as one line, for `public_key = "..."` or `--peer ID=HOST:PORT=KEY`.
    /// Example: p2p-node keygen node4.key
    Keygen {
        /// Where to write the secret key.
        file: PathBuf,
    },
    /// Writes DIR/cluster.toml and DIR/nodeK.key (K = 1..N) for a cluster with keys, and
    /// prints the N commands that start its nodes.
    /// Example: p2p-node init-cluster demo --nodes 3, then run the three printed commands
    InitCluster {
        /// Directory for cluster.toml and the key files (created if missing).
        dir: PathBuf,
        /// How many nodes (ids 1..N).
        #[arg(long, value_name = "N")]
        nodes: u32,
        /// Port of node 1; node K listens on BASE_PORT + K - 1.
        #[arg(long, value_name = "PORT", default_value_t = 9001)]
        base_port: u16,
        /// Host or IP address every node listens on (one host for all: a demo or a test);
        /// edit cluster.toml for nodes on different hosts.
        #[arg(long, value_name = "HOST", default_value = "127.0.0.1")]
        host: String,
    },
}

/// Runs a subcommand: key and cluster-file generation, no node.
fn run_command(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Keygen { file } => {
            let key = SecretKey::generate()?;
            key.write_new(&file)?;
            println!("{}", key.public());
        }
        Command::InitCluster {
            dir,
            nodes,
            base_port,
            host,
        } => {
            let made = p2p_node::cluster::init::init_cluster(&dir, nodes, base_port, &host)?;
            eprintln!(
                "Wrote {} and {} key files; start each node with:",
                made.cluster_file.display(),
                made.keys.len()
            );
            print!("{}", made.commands());
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut args = Args::parse();
    if let Some(command) = args.command.take() {
        return netutil::cli::exit_code("p2p-node", run_command(command));
    }
    // Log lines go above the console's prompt once it runs on a terminal.
    netutil::init_logging_to(p2p_node::console::ConsoleLog);
    netutil::cli::exit_code("p2p-node", run(args).await)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let id = args.id.context("--id is required")?;
    let cluster = match (&args.cluster, args.peer.is_empty()) {
        (Some(path), _) => Cluster::load(path)?,
        (None, false) => Cluster::from_peers(&args.peer)?,
        (None, true) => Cluster::default_cluster(),
    };
    let own = cluster.require(id)?;
    let listen = args
        .listen
        .as_deref()
        .map(|l| netutil::parse_bind_addr(l, own.port))
        .transpose()
        .context("--listen")?;
    let failure_timeout = Duration::from_millis(args.failure_timeout_ms.max(1));
    let heartbeat = Duration::from_millis(args.heartbeat_ms.max(1));
    anyhow::ensure!(
        heartbeat < failure_timeout,
        "--heartbeat-ms ({} ms) must be shorter than --failure-timeout-ms ({} ms): followers would presume a live leader dead between two heartbeats",
        heartbeat.as_millis(),
        failure_timeout.as_millis()
    );
    let timing = Timing {
        heartbeat,
        failure_timeout,
        // A live node answers within milliseconds; a quarter of the failure timeout leaves
        // room for a loaded machine while keeping silent failover near timeout + 250 ms.
        alive_timeout: failure_timeout / 4,
        coordinator_timeout: failure_timeout,
    };
    let key = match &args.key {
        Some(path) => Some((path.as_path(), SecretKey::read_file(path)?)),
        None => None,
    };
    let auth = Auth::decide(&cluster, id, listen, key)?;
    if let Auth::Open = auth {
        tracing::warn!(
            "No keys: links are neither authenticated nor encrypted, and anyone who can reach this host's loopback ports can join (allowed because every address is loopback; `p2p-node init-cluster DIR --nodes N` makes a cluster with keys)"
        );
    }
    let config = NodeConfig {
        id,
        dir: args
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("Node{id}"))),
        cluster,
        listen: listen.map(|a: SocketAddr| a),
        index_log: args.index_log,
        timing,
        rescan: Duration::from_millis(args.rescan_ms.max(10)),
        serve: ServeOptions {
            max_uploads: args.max_uploads.max(1),
            upload_limit: (args.upload_limit > 0.0)
                .then_some((args.upload_limit * (1u64 << 20) as f64) as u64),
            corrupt_pieces: args.corrupt_pieces,
        },
        auth,
    };
    if args.corrupt_pieces {
        tracing::warn!("--corrupt-pieces: this node serves corrupt pieces (test only)");
    }
    config.validate()?;
    let shutdown = netutil::Shutdown::new();
    let mut node = tokio::spawn(p2p_node::node::run(config, shutdown.clone()));
    let early = tokio::select! {
        _ = netutil::shutdown_signal() => None,
        _ = shutdown.triggered() => None,
        // A node that cannot start (its port is taken) ends on its own: say why at once.
        result = &mut node => Some(result),
    };
    shutdown.drain(Duration::from_secs(2)).await;
    let result = match early {
        Some(result) => result,
        None => node.await,
    };
    match result {
        Ok(result) => result?,
        Err(e) => anyhow::bail!("node task failed: {e}"),
    }
    Ok(())
}
