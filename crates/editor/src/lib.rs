//! Collaborative plain-text editor: server and terminal client.
//!
//! The logic lives in this library, one module per concept; the binaries under `src/bin/`
//! only parse flags, set up logging and call in here.
//!
//! * [`ot`]: text operations (retain/insert/delete by character), apply, compose, transform.
//! * [`document`]: the server's view of a document: rope, revision, bounded history.
//! * [`presence`]: cursors and selections that follow the text.
//! * [`protocol`]: the messages on the wire and document-name rules.
//! * [`auth`]: access tokens (pure): mint, verify, admit.
//! * [`tls`]: the server's certificate (given, or self-signed in the data directory).
//! * [`stream`]: the byte stream under a connection, TLS or plain TCP.
//! * [`storage`]: `<name>.txt` plus a checksummed journal with group commit.
//! * [`server`]: the `editor-server` listener, one task per document, one per session.
//! * [`client`]: the client's sync state machine (pure) and line mode.
//! * [`trace`]: loading editing traces (tests and benchmarks).
//!
//! # Design note: why server-ordered OT and not a CRDT
//!
//! The server already exists as the meeting point and must store the document anyway, so
//! letting it order changes (Jupiter / Google Docs / ot.js) costs nothing in availability
//! and keeps every replica a plain rope: no per-character metadata, no tombstones, memory
//! proportional to the text. Clients keep at most one change in flight, so the server
//! transforms an incoming change against only what was committed since its base, and a
//! client transforms remote changes against one in-flight op and one buffer. Ties between
//! concurrent inserts at one position go to the lower public client id on both sides.

pub mod auth;
pub mod client;
pub mod document;
pub mod ot;
pub mod presence;
pub mod protocol;
pub mod server;
pub mod storage;
pub mod stream;
pub mod tls;
pub mod trace;
