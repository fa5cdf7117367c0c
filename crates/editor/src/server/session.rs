//! One task per connection: handshake, `Join`, then messages in both directions.
//!
//! [`run`] does the binary protocol's handshake; [`serve`] is the session itself, for a
//! binary client or a browser's WebSocket alike (see [`ClientLink`]), so both go through
//! the same checks, limits and document tasks.
//!
//! The task selects over four things: the client's next message (forwarded to the
//! document task), its outgoing queue (written with `feed` and one `flush` per burst), a
//! kick from the document (an error to report before closing), and server shutdown.
//! Anything malformed or oversized gets an `Error` naming the problem and the connection
//! is closed; it never reaches the document.
//!
//! What a client costs is paid here, before the document sees it: a frame must complete
//! within `--frame-timeout` and its buffer is charged to the server's memory budget;
//! presence updates beyond the client's rate stop the reading of its socket (TCP pushes
//! back on the client) and, if that goes on, close the connection; the session yields to
//! other tasks after every message. Repeated warnings are logged once per source per
//! interval.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::access::{Grant, RECHECK_INTERVAL};
use super::client_link::{ClientLink, LinkError};
use super::doc_task::{DocCmd, JoinRequest};
use super::outgoing::{OutQueue, Outgoing, Payload};
use super::registry::Registry;
use super::shares::Load;
use crate::protocol::{
    validate_display_name, validate_document_name, ClientMsg, ErrorCode, ServerMsg, PROTOCOL,
};
use crate::stream::Stream;
use netutil::{Connection, SourceFull, SourceGuard};

type Conn = ClientLink;

/// How long a client may take to send `Join` after the handshake.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long writing to one client may block before it is given up on.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Changes a client may have unacknowledged (the protocol says one).
const MAX_IN_FLIGHT: usize = 1;

/// Shortest interval between two presence updates forwarded for one client.
const PRESENCE_INTERVAL: Duration = Duration::from_millis(20);

/// Queued messages written per flush.
const WRITE_BURST: usize = 256;

/// A client over its presence rate for this long (without pausing) is disconnected.
const OVER_RATE_LIMIT: Duration = Duration::from_secs(10);

/// What the accept loop granted a connection before its task started.
pub struct Admission {
    /// A slot under `--max-clients` (None: the server is full).
    pub permit: Option<OwnedSemaphorePermit>,
    /// A slot under `--max-connections-per-source`.
    pub source: Result<SourceGuard, SourceFull>,
    /// A slot under `--max-handshakes-per-source`, given back once `Join` arrived.
    pub handshake: SourceGuard,
}

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Serves one binary-protocol client connection to the end.
pub async fn run(
    stream: Stream,
    addr: SocketAddr,
    registry: Arc<Registry>,
    token: CancellationToken,
    admission: Admission,
) {
    let shares = &registry.shares;
    let conn = match Connection::<ClientMsg, ServerMsg, Stream>::establish(stream, &PROTOCOL).await
    {
        Ok(conn) => conn,
        Err(e) => {
            if let Some(more) = shares.should_log(addr.ip(), "handshake") {
                tracing::warn!("{addr}: handshake failed: {e}{more}");
            }
            return;
        }
    };
    // Not split: netutil's split halves leave bytes that arrived with the handshake
    // undecoded until more arrive, which stalls a client that sends Join and waits.
    let mut conn = conn;
    conn.set_frame_timeout(Some(registry.config.frame_timeout));
    conn.set_memory_budget(shares.memory.clone());
    serve(ClientLink::Binary(conn), addr, registry, token, admission).await;
}

/// Serves one client, binary or browser, from its `Join` to the end.
pub async fn serve(
    mut conn: ClientLink,
    addr: SocketAddr,
    registry: Arc<Registry>,
    token: CancellationToken,
    admission: Admission,
) {
    let shares = &registry.shares;
    let Admission {
        permit,
        source,
        handshake,
    } = admission;
    if permit.is_none() {
        let reason = format!("server full ({} clients)", registry.config.max_clients);
        return refuse(&registry, &mut conn, addr, ErrorCode::Busy, reason).await;
    }
    let _source = match source {
        Ok(guard) => guard,
        Err(full) => {
            let reason = format!("too many connections: {full} (--max-connections-per-source)");
            return refuse(&registry, &mut conn, addr, ErrorCode::Busy, reason).await;
        }
    };

    let join = tokio::select! {
        _ = token.cancelled() => return,
        join = tokio::time::timeout(JOIN_TIMEOUT, conn.recv()) => join,
    };
    let (document, name, key, known_revision, token_text) = match join {
        Ok(Ok(Some(ClientMsg::Join {
            document,
            name,
            key,
            known_revision,
            token,
        }))) => (document, name, key, known_revision, token),
        Ok(Ok(Some(_))) => {
            return refuse(
                &registry,
                &mut conn,
                addr,
                ErrorCode::NotJoined,
                "the first message must be Join".into(),
            )
            .await;
        }
        Ok(Ok(None)) => return,
        Ok(Err(e)) => return refuse_malformed(&registry, &mut conn, addr, e).await,
        Err(_) => {
            return refuse(
                &registry,
                &mut conn,
                addr,
                ErrorCode::NotJoined,
                format!("no Join within {JOIN_TIMEOUT:?}"),
            )
            .await;
        }
    };
    if let Err(reason) = validate_document_name(&document) {
        return refuse(&registry, &mut conn, addr, ErrorCode::BadName, reason).await;
    }
    // Checked before the document is loaded: a refused client costs no disk access.
    let grant = match &registry.access {
        None => Ok(Grant {
            read_only: false,
            claims: None,
        }),
        Some(access) => access.admit(addr, &document, token_text.as_deref()),
    };
    let grant = match grant {
        Ok(grant) => grant,
        Err(e) => return refuse(&registry, &mut conn, addr, e.code(), e.to_string()).await,
    };
    // A token's label is the holder's name: nobody edits under someone else's.
    let name = match grant.claims.as_ref().and_then(|c| c.label.clone()) {
        Some(label) => label,
        None => name,
    };
    if let Err(reason) = validate_display_name(&name) {
        return refuse(
            &registry,
            &mut conn,
            addr,
            ErrorCode::BadDisplayName,
            reason,
        )
        .await;
    }
    drop(handshake);
    // Near the memory budget, admitted clients keep what they have and nobody new joins.
    if shares.memory.nearly_full(8) {
        let mib = shares.memory.limit() / (1024 * 1024);
        let reason = format!(
            "the server is short of memory (--max-memory {mib} MiB nearly in use); try again later"
        );
        return refuse(&registry, &mut conn, addr, ErrorCode::Busy, reason).await;
    }

    let read_only = grant.read_only;
    let token_id: Option<Arc<str>> = grant.claims.as_ref().map(|c| c.id.as_str().into());

    let session = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
    let load_guard = shares.register(session);
    let load = load_guard.load.clone();
    let mut attempt = 0;
    let (doc, mut out_rx, mut kick_rx) = loop {
        let (out_tx, out_rx) = mpsc::channel::<Outgoing>(registry.config.client_queue);
        let out_tx = OutQueue::new(out_tx, load.clone(), registry.config.client_queue_bytes);
        let (kick_tx, kick_rx) = oneshot::channel();
        let request = JoinRequest {
            session,
            addr,
            key,
            name: name.clone(),
            token_id: token_id.clone(),
            known_revision,
            out: out_tx,
            kick: kick_tx,
            reply: None,
        };
        match registry.join(&document, request).await {
            Ok(joined) => break (joined.doc, out_rx, kick_rx),
            Err(Some((code, reason))) => {
                return refuse(&registry, &mut conn, addr, code, reason).await
            }
            // The document was unloading as we arrived: it reloads on the next try.
            Err(None) if attempt < 3 => attempt += 1,
            Err(None) => {
                let reason = format!("document {document} is unavailable; try again");
                return refuse(&registry, &mut conn, addr, ErrorCode::Unavailable, reason).await;
            }
        }
    };
    // After the join succeeded (a refusal comes alone) and before the snapshot, which
    // waits in the outgoing queue.
    let access = ServerMsg::Access {
        read_only,
        name: name.clone(),
    };
    if conn.send(&access).await.is_err() {
        let _ = doc.send(DocCmd::Leave { session }).await;
        return;
    }
    let token_id = grant.claims.as_ref().map_or("none", |c| c.id.as_str());
    let mode = if read_only { "read-only" } else { "read-write" };
    tracing::info!(
        "client connected: {addr} {name:?} on document {document} ({mode}, token {token_id})"
    );
    let mut recheck = tokio::time::interval(RECHECK_INTERVAL);

    // Cursor moves are forwarded at most once per PRESENCE_INTERVAL (the latest wins), so
    // a client flooding them cannot multiply its traffic by the number of participants.
    let mut presence_pending: Option<DocCmd> = None;
    // Changes forwarded and not yet acknowledged (the protocol allows one): a client that
    // pipelines changes, each possibly transformed against a long history, is stopped.
    let me = crate::protocol::author_id(key);
    let mut unacked = 0usize;
    let mut presence_next = tokio::time::Instant::now();
    let mut rate = PresenceRate::new(registry.config.presence_rate);
    let why = loop {
        tokio::select! {
            biased;
            _ = token.cancelled() => {
                send_error(&mut conn, ErrorCode::Busy, "server shutting down".into()).await;
                break "server shutdown".to_owned();
            }
            _ = load.shed.cancelled() => {
                let reason = "the server is short of memory and this connection held the most unread data; reconnect to catch up".to_owned();
                send_error(&mut conn, ErrorCode::TooSlow, reason.clone()).await;
                break reason;
            }
            kicked = &mut kick_rx => {
                let (code, reason) = kicked.unwrap_or((ErrorCode::Unavailable, "document closed".into()));
                let why = format!("{code:?}: {reason}");
                send_error(&mut conn, code, reason).await;
                break why;
            }
            out = out_rx.recv() => match out {
                Some(msg) => match write_burst(&mut conn, msg, &mut out_rx, me, &load).await {
                    Ok(acks) => unacked = unacked.saturating_sub(acks),
                    Err(e) => break e,
                },
                None => break "document closed".to_owned(),
            },
            // An expired or revoked token ends the session within a second or two.
            _ = recheck.tick(), if grant.claims.is_some() => {
                let still = match (&registry.access, &grant.claims) {
                    (Some(access), Some(claims)) => access.recheck(claims),
                    _ => Ok(()),
                };
                if let Err(e) = still {
                    let why = e.to_string();
                    send_error(&mut conn, e.code(), why.clone()).await;
                    break why;
                }
            }
            _ = tokio::time::sleep_until(presence_next), if presence_pending.is_some() => {
                presence_next = tokio::time::Instant::now() + PRESENCE_INTERVAL;
                if let Some(cmd) = presence_pending.take() {
                    if doc.send(cmd).await.is_err() {
                        break "document closed".to_owned();
                    }
                }
            }
            // Over its presence rate the client is not read: TCP slows it down.
            _ = tokio::time::sleep_until(rate.paused_until), if rate.is_paused() => {
                rate.resume();
            }
            msg = conn.recv(), if !rate.is_paused() => {
                // Flooding sessions must not keep other tasks (documents) waiting.
                tokio::task::consume_budget().await;
                let cmd = match msg {
                    Ok(Some(ClientMsg::Change { .. })) if read_only => {
                        // One stray change does not end the session: the client is told.
                        let reason = "read-only token: your edits are not accepted".to_owned();
                        if let Some(more) = shares.should_log(addr.ip(), "read-only") {
                            tracing::info!("{addr}: change refused: {reason}{more}");
                        }
                        send_error(&mut conn, ErrorCode::ReadOnly, reason).await;
                        continue;
                    }
                    Ok(Some(ClientMsg::Change { base_revision, seq, op })) => {
                        if unacked >= MAX_IN_FLIGHT {
                            let reason = "a change was sent before the previous one was acknowledged; keep one change in flight".to_owned();
                            tracing::warn!("{addr}: {reason}");
                            send_error(&mut conn, ErrorCode::InFlight, reason.clone()).await;
                            break reason;
                        }
                        unacked += 1;
                        DocCmd::Change { session, seq, base_revision, op }
                    }
                    Ok(Some(ClientMsg::Presence { base_revision, selection })) => {
                        if let Err(reason) = rate.take() {
                            if let Some(more) = shares.should_log(addr.ip(), "rate") {
                                tracing::warn!("{addr}: {reason}{more}");
                            }
                            send_error(&mut conn, ErrorCode::Busy, reason.clone()).await;
                            break reason;
                        }
                        let cmd = DocCmd::Presence { session, base_revision, selection };
                        if tokio::time::Instant::now() < presence_next {
                            presence_pending = Some(cmd);
                            continue;
                        }
                        presence_next = tokio::time::Instant::now() + PRESENCE_INTERVAL;
                        cmd
                    }
                    Ok(Some(ClientMsg::Join { .. })) => {
                        let reason = "already joined: one document per connection".to_owned();
                        tracing::warn!("{addr}: {reason}");
                        send_error(&mut conn, ErrorCode::NotJoined, reason.clone()).await;
                        break reason;
                    }
                    Ok(None) => break "closed by client".to_owned(),
                    Err(e) if e.disconnect => break e.to_string(),
                    Err(e) => {
                        if let Some(more) = shares.should_log(addr.ip(), "malformed") {
                            tracing::warn!("{addr}: {e}{more}");
                        }
                        send_error(&mut conn, ErrorCode::Malformed, e.to_string()).await;
                        break e.to_string();
                    }
                };
                if doc.send(cmd).await.is_err() {
                    send_error(&mut conn, ErrorCode::Unavailable, "document closed".into()).await;
                    break "document closed".to_owned();
                }
            }
        }
    };
    drop(load_guard);
    let _ = doc.send(DocCmd::Leave { session }).await;
    conn.close().await;
    tracing::info!("client disconnected: {addr} {name:?} from document {document} ({why})");
}

/// Writes `first` and whatever else is queued (up to a burst), then flushes once.
/// Returns how many of the messages acknowledged one of the client's changes (an `Ack`, or
/// its own change coming back as `Remote` after a reconnect).
async fn write_burst(
    tx: &mut Conn,
    first: Outgoing,
    queue: &mut mpsc::Receiver<Outgoing>,
    me: u64,
    load: &Load,
) -> Result<usize, String> {
    let acks = |msg: &ServerMsg| match msg {
        ServerMsg::Ack { .. } => 1,
        ServerMsg::Remote(change) if change.author == me => 1,
        _ => 0,
    };
    let write = async {
        let mut count = 0;
        let mut next = Some(first);
        for _ in 0..WRITE_BURST {
            let Some(item) = next.take().or_else(|| queue.try_recv().ok()) else {
                break;
            };
            match &item.payload {
                Payload::Msg(msg) => {
                    count += acks(msg);
                    tx.feed(msg).await?;
                }
                Payload::Snapshot { head, text, tail } => {
                    let parts = [head.clone(), text.encoded.clone(), tail.clone()];
                    tx.send_frame_parts(&parts).await?;
                }
            }
            item.written(load);
        }
        tx.flush().await.map(|()| count)
    };
    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
        Ok(Ok(count)) => Ok(count),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("client did not read for {WRITE_TIMEOUT:?}")),
    }
}

async fn send_error(tx: &mut Conn, code: ErrorCode, reason: String) {
    let msg = ServerMsg::Error { code, reason };
    let _ = tokio::time::timeout(Duration::from_secs(2), tx.send(&msg)).await;
}

async fn refuse(
    registry: &Registry,
    tx: &mut Conn,
    addr: SocketAddr,
    code: ErrorCode,
    reason: String,
) {
    if let Some(more) = registry.shares.should_log(addr.ip(), "refused") {
        tracing::warn!("{addr}: refused: {reason}{more}");
    }
    send_error(tx, code, reason).await;
}

async fn refuse_malformed(registry: &Registry, tx: &mut Conn, addr: SocketAddr, e: LinkError) {
    if e.disconnect {
        tracing::info!("{e}");
        return;
    }
    let reason = e.to_string();
    refuse(registry, tx, addr, ErrorCode::Malformed, reason).await;
}

/// A client's budget of presence updates: a token bucket of `rate` per second with bursts
/// of twice that. An empty bucket pauses reading until a token is back; a client that
/// keeps it empty for [`OVER_RATE_LIMIT`] is disconnected.
struct PresenceRate {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    paused_until: Instant,
    paused: bool,
    over_since: Option<Instant>,
}

impl PresenceRate {
    fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        let now = Instant::now();
        PresenceRate {
            rate,
            burst: rate * 2.0,
            tokens: rate * 2.0,
            last: now,
            paused_until: now,
            paused: false,
            over_since: None,
        }
    }

    fn is_paused(&self) -> bool {
        self.paused
    }

    fn resume(&mut self) {
        self.paused = false;
    }

    /// Charges one update; pauses reading when the bucket is empty, and fails when the
    /// client has been over its rate for too long.
    fn take(&mut self) -> Result<(), String> {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= self.burst / 2.0 {
            self.over_since = None;
        }
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            return Ok(());
        }
        let since = *self.over_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= OVER_RATE_LIMIT {
            return Err(format!(
                "presence updates faster than {} a second for {OVER_RATE_LIMIT:?}; closing",
                self.rate
            ));
        }
        self.paused = true;
        self.paused_until = now + Duration::from_secs_f64(-self.tokens / self.rate);
        Ok(())
    }
}
