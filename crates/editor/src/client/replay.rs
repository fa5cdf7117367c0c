//! `editor-client --replay TRACE`: replays an editing trace into a fresh document as fast
//! as the protocol allows, with N observer connections on the same document, and checks
//! that everyone ends with the trace's `endContent`.
//!
//! The writer is an ordinary [`SyncClient`]: each patch is applied locally at once; while a
//! change is in flight the following edits are buffered and go out as one composed change
//! when the ack arrives, so the number of round trips adapts to the server's speed.
//! Acknowledgements are taken in without blocking every few dozen edits. Elapsed time runs
//! from the first edit sent to the last observer holding the final revision (trace loading
//! and connecting excluded). At the end a separate connection joins and its snapshot (the
//! server's text) is compared too.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use super::link::{Conn, Target};
use super::sync::{Event, SyncClient};
use crate::protocol::{random_key, ServerMsg};
use crate::trace::Trace;

/// Why a replay could not run (a mismatch at the end is not an error: see [`Summary`]).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Trace(#[from] crate::trace::TraceError),
    #[error(transparent)]
    Net(#[from] netutil::NetError),
    #[error(transparent)]
    Sync(#[from] super::sync::SyncError),
    #[error("trace patch {index} does not fit the document: {source}")]
    Patch {
        index: usize,
        source: crate::ot::OtError,
    },
    #[error("server refused: {reason} ({code:?})")]
    Server {
        code: crate::protocol::ErrorCode,
        reason: String,
    },
    #[error("the server closed the connection")]
    Closed,
    #[error("document {0} is not empty and differs from the trace's start: replay needs a fresh document")]
    NotFresh(String),
    #[error("observer task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// What to replay where.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    pub target: Target,
    pub trace: PathBuf,
    pub observers: usize,
    /// None: a fresh random name `replay-<n>`.
    pub document: Option<String>,
}

/// The outcome, printed as text or as one JSON object.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub document: String,
    pub edits: usize,
    pub elapsed_ms: f64,
    pub edits_per_sec: f64,
    pub observers: usize,
    /// The server's text, the writer's and every observer's equal `endContent`.
    pub converged: bool,
    /// Changes the server committed (edits were composed while one was in flight).
    pub revisions: u64,
    /// The same patches applied to a local rope, no network, in this process (baseline).
    pub local_rope_ms: f64,
}

impl Summary {
    pub fn to_text(&self) -> String {
        format!(
            "document: {}\nedits: {}\nelapsed: {:.1} ms\nedits/s: {:.0}\nobservers: {}\nchanges committed: {}\nlocal rope apply: {:.1} ms\nconverged: {}\n",
            self.document,
            self.edits,
            self.elapsed_ms,
            self.edits_per_sec,
            self.observers,
            self.revisions,
            self.local_rope_ms,
            if self.converged { "yes" } else { "NO" }
        )
    }
}

async fn join(target: &Target, doc: &str, name: &str) -> Result<(Conn, SyncClient), ReplayError> {
    let mut conn = target.connect().await?;
    let mut sync = SyncClient::new(random_key());
    conn.send(&sync.join(doc, name)).await?;
    while !sync.is_joined() {
        let msg = conn.recv().await?.ok_or(ReplayError::Closed)?;
        handle(&mut conn, &mut sync, msg).await?;
    }
    Ok((conn, sync))
}

async fn handle(conn: &mut Conn, sync: &mut SyncClient, msg: ServerMsg) -> Result<(), ReplayError> {
    for event in sync.receive(msg)? {
        match event {
            Event::Send(m) => conn.send(&m).await?,
            Event::Error { code, reason } => return Err(ReplayError::Server { code, reason }),
            _ => {}
        }
    }
    Ok(())
}

/// An observer: follows the document until it reaches the revision sent on `target`.
async fn observe(
    mut conn: Conn,
    mut sync: SyncClient,
    mut target: watch::Receiver<u64>,
) -> Result<(String, Instant), ReplayError> {
    loop {
        if sync.revision() >= Some(*target.borrow()) {
            return Ok((sync.text().to_string(), Instant::now()));
        }
        tokio::select! {
            msg = conn.recv() => {
                let msg = msg?.ok_or(ReplayError::Closed)?;
                handle(&mut conn, &mut sync, msg).await?;
            }
            changed = target.changed() => {
                if changed.is_err() {
                    return Err(ReplayError::Closed);
                }
            }
        }
    }
}

/// Runs the replay.
pub async fn run(options: &ReplayOptions) -> Result<Summary, ReplayError> {
    let trace = Trace::load(&options.trace)?;
    let local_start = Instant::now();
    let local = trace.apply_to_rope();
    let local_rope_ms = local_start.elapsed().as_secs_f64() * 1e3;
    let doc = options
        .document
        .clone()
        .unwrap_or_else(|| format!("replay-{}", random_key() % 1_000_000_000));
    let target = &options.target;

    let (mut conn, mut sync) = join(target, &doc, "replay-writer").await?;
    if sync.text() != trace.start.as_str() {
        if sync.text().len_chars() != 0 {
            return Err(ReplayError::NotFresh(doc));
        }
        // Setting up the start content is not part of the measurement.
        if let Some(msg) = sync.insert(0, &trace.start)? {
            conn.send(&msg).await?;
        }
        while sync.has_pending() {
            let msg = conn.recv().await?.ok_or(ReplayError::Closed)?;
            handle(&mut conn, &mut sync, msg).await?;
        }
    }
    let (target_tx, target_rx) = watch::channel(u64::MAX);
    let mut tasks = Vec::with_capacity(options.observers);
    for i in 0..options.observers {
        let (oconn, osync) = join(target, &doc, &format!("observer{i}")).await?;
        tasks.push(tokio::spawn(observe(oconn, osync, target_rx.clone())));
    }

    let start = Instant::now();
    for (index, patch) in trace.patches.iter().enumerate() {
        let op = patch
            .to_op(sync.text().len_chars())
            .map_err(|source| ReplayError::Patch { index, source })?;
        if let Some(msg) = sync.edit(op)? {
            conn.send(&msg).await?;
        }
        if index % 32 == 0 {
            // Take in any acknowledgement that has already arrived, without waiting.
            loop {
                let msg = tokio::select! {
                    biased;
                    msg = conn.recv() => msg?.ok_or(ReplayError::Closed)?,
                    _ = std::future::ready(()) => break,
                };
                handle(&mut conn, &mut sync, msg).await?;
            }
        }
    }
    while sync.has_pending() {
        let msg = conn.recv().await?.ok_or(ReplayError::Closed)?;
        handle(&mut conn, &mut sync, msg).await?;
    }
    let writer_done = Instant::now();
    let revisions = sync.revision().unwrap_or(0);
    let _ = target_tx.send(revisions);
    let mut converged = sync.text() == trace.end.as_str() && local == trace.end.as_str();
    let mut last = writer_done;
    for task in tasks {
        let (text, at) = task.await??;
        converged &= text == trace.end;
        last = last.max(at);
    }
    let elapsed = last - start;

    // The server's own text, as a newcomer receives it.
    let (_check, checker) = join(target, &doc, "replay-check").await?;
    converged &= checker.text() == trace.end.as_str();

    let secs = elapsed
        .as_secs_f64()
        .max(Duration::from_nanos(1).as_secs_f64());
    Ok(Summary {
        document: doc,
        edits: trace.patches.len(),
        elapsed_ms: secs * 1e3,
        edits_per_sec: trace.patches.len() as f64 / secs,
        observers: options.observers,
        converged,
        revisions,
        local_rope_ms,
    })
}
