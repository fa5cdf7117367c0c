//! A link after its handshake: registration with the event loop (which may refuse it as a
//! duplicate), the acceptor's answering `Hello`, then two tasks moving messages both ways
//! until either side closes.

use std::net::SocketAddr;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::establish::refuse;
use super::{LinkId, NewLink, NodeConnection, PeerEvent, Verdict, LINK_QUEUE};
use crate::cluster::election::{NodeId, Term};
use crate::wire::Message;

/// Registers the link with the event loop, answers the handshake (acceptor side), then
/// runs the link until it closes.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run_registered(
    me: NodeId,
    mut conn: NodeConnection,
    link: LinkId,
    peer: NodeId,
    term: Term,
    addr: SocketAddr,
    outbound: bool,
    events: mpsc::Sender<PeerEvent>,
) {
    let (tx, rx) = mpsc::channel(LINK_QUEUE);
    let cancel = CancellationToken::new();
    let (reply_tx, reply_rx) = oneshot::channel();
    let register = PeerEvent::Register {
        new: NewLink {
            link,
            peer,
            addr,
            outbound,
            tx,
            cancel: cancel.clone(),
        },
        term,
        reply: reply_tx,
    };
    if events.send(register).await.is_err() {
        return;
    }
    let Ok(verdict) = reply_rx.await else { return };
    match verdict {
        Verdict::Refuse { reason, duplicate } => {
            if !duplicate {
                tracing::warn!("{addr}: refused Node {peer}: {reason}");
            }
            refuse(&mut conn, reason, duplicate).await;
            if outbound {
                let _ = events
                    .send(PeerEvent::DialFailed {
                        peer,
                        reason: "duplicate link".into(),
                        duplicate: true,
                    })
                    .await;
            }
            return;
        }
        Verdict::Accept { term } => {
            let answered = outbound || conn.send(&Message::Hello { id: me, term }).await.is_ok();
            if !answered {
                let _ = events
                    .send(PeerEvent::Closed {
                        link,
                        peer,
                        reason: "closed during the handshake".into(),
                        duplicate: false,
                    })
                    .await;
                return;
            }
        }
    }
    run_link(conn, link, peer, rx, cancel, events).await;
}

/// Moves messages both ways until either side closes or `cancel` fires.
async fn run_link(
    conn: NodeConnection,
    link: LinkId,
    peer: NodeId,
    mut rx: mpsc::Receiver<Message>,
    cancel: CancellationToken,
    events: mpsc::Sender<PeerEvent>,
) {
    let (mut reader, mut writer) = conn.split();
    let writer_cancel = cancel.clone();
    let writer_task = tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                _ = writer_cancel.cancelled() => break,
                msg = rx.recv() => match msg { Some(m) => m, None => break },
            };
            // A `Refused` is the last message of a link (one replaced by a duplicate).
            let mut last = matches!(msg, Message::Refused { .. });
            let mut result = writer.feed(&msg).await;
            while result.is_ok() && !last {
                match rx.try_recv() {
                    Ok(more) => {
                        last = matches!(more, Message::Refused { .. });
                        result = writer.feed(&more).await;
                    }
                    Err(_) => break,
                }
            }
            if let Err(e) = result.and(writer.flush().await) {
                tracing::debug!("Node {peer}: send failed: {e}");
                break;
            }
            if last {
                break;
            }
        }
        writer_cancel.cancel();
    });
    let mut duplicate = false;
    let reason = loop {
        let received = tokio::select! {
            _ = cancel.cancelled() => break "closed by this node".to_owned(),
            received = reader.recv() => received,
        };
        match received {
            Ok(Some(Message::Refused {
                reason,
                duplicate: dup,
            })) => {
                duplicate = dup;
                break format!("refused by the peer: {reason}");
            }
            Ok(Some(Message::Hello { .. })) => {
                tracing::warn!(
                    "Node {peer} ({}) sent a second Hello; closing",
                    reader.peer()
                );
                break "protocol violation: second Hello".to_owned();
            }
            Ok(Some(msg)) => {
                if events
                    .send(PeerEvent::Message { link, peer, msg })
                    .await
                    .is_err()
                {
                    break "shutting down".to_owned();
                }
            }
            Ok(None) => break "closed by the peer".to_owned(),
            Err(e) if e.is_disconnect() => break e.to_string(),
            Err(e) => {
                tracing::warn!("Node {peer}: {e}; closing the link");
                break e.to_string();
            }
        }
    };
    cancel.cancel();
    let _ = writer_task.await;
    let _ = events
        .send(PeerEvent::Closed {
            link,
            peer,
            reason,
            duplicate,
        })
        .await;
}
