//! One task per connection: handshake, `Join`, then messages in both directions.
//!
//! The task selects over four things: the client's next message (forwarded to the
//! document task), its outgoing queue (written with `feed` and one `flush` per burst), a
//! kick from the document (an error to report before closing), and server shutdown.
//! Anything malformed or oversized gets an `Error` naming the problem and the connection
//! is closed; it never reaches the document.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::doc_task::{DocCmd, JoinRequest};
use super::registry::{Outgoing, Registry};
use crate::protocol::{
    validate_display_name, validate_document_name, ClientMsg, ErrorCode, ServerMsg, PROTOCOL,
};
use netutil::{Connection, NetError};

type Conn = Connection<ClientMsg, ServerMsg>;

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

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Serves one client connection to the end.
pub async fn run(
    stream: TcpStream,
    addr: SocketAddr,
    registry: Arc<Registry>,
    token: CancellationToken,
    permit: Option<OwnedSemaphorePermit>,
) {
    let conn = match Connection::<ClientMsg, ServerMsg>::establish(stream, &PROTOCOL).await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!("{addr}: handshake failed: {e}");
            return;
        }
    };
    // Not split: netutil's split halves leave bytes that arrived with the handshake
    // undecoded until more arrive, which stalls a client that sends Join and waits.
    let mut conn = conn;
    if permit.is_none() {
        let reason = format!("server full ({} clients)", registry.config.max_clients);
        tracing::warn!("{addr}: refused: {reason}");
        send_error(&mut conn, ErrorCode::Busy, reason).await;
        return;
    }

    let join = tokio::select! {
        _ = token.cancelled() => return,
        join = tokio::time::timeout(JOIN_TIMEOUT, conn.recv()) => join,
    };
    let (document, name, key, known_revision) = match join {
        Ok(Ok(Some(ClientMsg::Join {
            document,
            name,
            key,
            known_revision,
            token: _,
        }))) => (document, name, key, known_revision),
        Ok(Ok(Some(_))) => {
            return refuse(
                &mut conn,
                addr,
                ErrorCode::NotJoined,
                "the first message must be Join".into(),
            )
            .await;
        }
        Ok(Ok(None)) => return,
        Ok(Err(e)) => return refuse_malformed(&mut conn, addr, e).await,
        Err(_) => {
            return refuse(
                &mut conn,
                addr,
                ErrorCode::NotJoined,
                format!("no Join within {JOIN_TIMEOUT:?}"),
            )
            .await;
        }
    };
    if let Err(reason) = validate_document_name(&document) {
        return refuse(&mut conn, addr, ErrorCode::BadName, reason).await;
    }
    if let Err(reason) = validate_display_name(&name) {
        return refuse(&mut conn, addr, ErrorCode::BadDisplayName, reason).await;
    }

    let session = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
    let mut attempt = 0;
    let (doc, mut out_rx, mut kick_rx) = loop {
        let (out_tx, out_rx) = mpsc::channel::<Outgoing>(registry.config.client_queue);
        let (kick_tx, kick_rx) = oneshot::channel();
        let request = JoinRequest {
            session,
            addr,
            key,
            name: name.clone(),
            known_revision,
            out: out_tx,
            kick: kick_tx,
            reply: None,
        };
        match registry.join(&document, request).await {
            Ok(joined) => break (joined.doc, out_rx, kick_rx),
            Err(Some((code, reason))) => return refuse(&mut conn, addr, code, reason).await,
            // The document was unloading as we arrived: it reloads on the next try.
            Err(None) if attempt < 3 => attempt += 1,
            Err(None) => {
                let reason = format!("document {document} is unavailable; try again");
                return refuse(&mut conn, addr, ErrorCode::Unavailable, reason).await;
            }
        }
    };
    tracing::info!("client connected: {addr} {name:?} on document {document}");

    // Cursor moves are forwarded at most once per PRESENCE_INTERVAL (the latest wins), so
    // a client flooding them cannot multiply its traffic by the number of participants.
    let mut presence_pending: Option<DocCmd> = None;
    // Changes forwarded and not yet acknowledged (the protocol allows one): a client that
    // pipelines changes, each possibly transformed against a long history, is stopped.
    let me = crate::protocol::author_id(key);
    let mut unacked = 0usize;
    let mut presence_next = tokio::time::Instant::now();
    let why = loop {
        tokio::select! {
            biased;
            _ = token.cancelled() => {
                send_error(&mut conn, ErrorCode::Busy, "server shutting down".into()).await;
                break "server shutdown".to_owned();
            }
            kicked = &mut kick_rx => {
                let (code, reason) = kicked.unwrap_or((ErrorCode::Unavailable, "document closed".into()));
                let why = format!("{code:?}: {reason}");
                send_error(&mut conn, code, reason).await;
                break why;
            }
            out = out_rx.recv() => match out {
                Some(msg) => match write_burst(&mut conn, msg, &mut out_rx, me).await {
                    Ok(acks) => unacked = unacked.saturating_sub(acks),
                    Err(e) => break e,
                },
                None => break "document closed".to_owned(),
            },
            _ = tokio::time::sleep_until(presence_next), if presence_pending.is_some() => {
                presence_next = tokio::time::Instant::now() + PRESENCE_INTERVAL;
                if let Some(cmd) = presence_pending.take() {
                    if doc.send(cmd).await.is_err() {
                        break "document closed".to_owned();
                    }
                }
            }
            msg = conn.recv() => {
                let cmd = match msg {
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
                    Err(e) if e.is_disconnect() => break e.to_string(),
                    Err(e) => {
                        tracing::warn!("{e}");
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
    let _ = doc.send(DocCmd::Leave { session }).await;
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
) -> Result<usize, String> {
    let acks = |msg: &ServerMsg| match msg {
        ServerMsg::Ack { .. } => 1,
        ServerMsg::Remote(change) if change.author == me => 1,
        _ => 0,
    };
    let write = async {
        let mut count = acks(&first);
        tx.feed(&first).await?;
        for _ in 1..WRITE_BURST {
            match queue.try_recv() {
                Ok(msg) => {
                    count += acks(&msg);
                    tx.feed(&msg).await?
                }
                Err(_) => break,
            }
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

async fn refuse(tx: &mut Conn, addr: SocketAddr, code: ErrorCode, reason: String) {
    tracing::warn!("{addr}: refused: {reason}");
    send_error(tx, code, reason).await;
}

async fn refuse_malformed(tx: &mut Conn, addr: SocketAddr, e: NetError) {
    if e.is_disconnect() {
        tracing::info!("{e}");
        return;
    }
    let reason = e.to_string();
    refuse(tx, addr, ErrorCode::Malformed, reason).await;
}
