//! The HTTP side of the editor's port: the start page, the editor page for `/d/NAME`, the
//! bundled script, and the WebSocket endpoint `/ws` through which a browser joins a
//! document. The WebSocket speaks the editor protocol as JSON ([`wire`]) and is served by
//! the same session loop as binary clients ([`super::session::serve`]), so it goes through
//! the same document tasks, journal, fsync-before-Ack and limits.
//!
//! HTTP/1.1 by hyper (server only, no HTTP/2): request heads are limited to
//! [`MAX_HEAD_BYTES`] and must arrive within [`HEADER_TIMEOUT`]; bodies are never read;
//! a connection that has not become a WebSocket is closed after [`HTTP_LIFETIME`]. On the
//! WebSocket a message must complete within `--frame-timeout` and what it holds is charged
//! to `--max-memory` ([`metered`]), as on the binary protocol.

pub mod assets;
pub mod metered;
pub mod wire;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::stream::Stream;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::client_link::ClientLink;
use super::registry::Registry;
use super::session::{self, Admission};
use crate::protocol::{validate_document_name, MAX_FRAME};
use assets::Asset;
use metered::Metered;

/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// How long a request head may take to arrive (also the keep-alive idle limit).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a plain HTTP connection (one that has not become a WebSocket) is kept.
pub const HTTP_LIFETIME: Duration = Duration::from_secs(60);

/// The upgraded connection a `/ws` request hands to the connection's task.
type UpgradeSlot = Arc<Mutex<Option<OnUpgrade>>>;

/// Serves one HTTP connection; if it asks for the WebSocket, serves the editor session.
pub async fn serve(
    mut stream: Stream,
    addr: SocketAddr,
    registry: Arc<Registry>,
    token: CancellationToken,
    admission: Admission,
) {
    // A page load holds the same slots as a terminal client's connection: one under
    // --max-clients, one under the per-source limits (its handshake slot until the
    // WebSocket's Join).
    if admission.permit.is_none() || admission.source.is_err() {
        if let Some(more) = registry.shares.should_log(addr.ip(), "refused") {
            tracing::warn!(
                "{addr}: refused HTTP: server full or too many connections from this source{more}"
            );
        }
        let busy = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 12\r\nconnection: close\r\n\r\nserver full\n";
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(busy)).await;
        return;
    }
    let _ = stream.tcp().set_nodelay(true);
    let slot: UpgradeSlot = Arc::new(Mutex::new(None));
    let service = {
        let slot = slot.clone();
        hyper::service::service_fn(move |req| {
            let response = route(req, &slot, addr);
            async move { Ok::<_, Infallible>(response) }
        })
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let served = tokio::select! {
        _ = token.cancelled() => return,
        served = tokio::time::timeout(HTTP_LIFETIME, connection) => served,
    };
    match served {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::info!("{addr}: HTTP: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!("{addr}: HTTP connection closed after {HTTP_LIFETIME:?}");
            return;
        }
    }
    let upgrade = slot.lock().ok().and_then(|mut s| s.take());
    let Some(upgrade) = upgrade else { return };
    let upgraded = match upgrade.await {
        Ok(upgraded) => upgraded,
        Err(e) => {
            tracing::info!("{addr}: WebSocket upgrade failed: {e}");
            return;
        }
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME));
    // Timed and charged like a binary client's frames (see `metered`).
    let io = Metered::new(
        TokioIo::new(upgraded),
        registry.config.frame_timeout,
        &registry.shares.memory,
    );
    let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    session::serve(ClientLink::Web(socket), addr, registry, token, admission).await;
}

/// Answers one request.
fn route(
    mut req: Request<Incoming>,
    slot: &UpgradeSlot,
    addr: SocketAddr,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let path = req.uri().path().to_owned();
    let mut response = match path.as_str() {
        "/" => asset(&req, &assets::INDEX),
        "/editor.js" => asset(&req, &assets::BUNDLE),
        "/licenses.txt" => asset(&req, &assets::LICENSE_TEXT),
        "/open" => open_redirect(&req),
        "/ws" => websocket(&mut req, slot, addr),
        _ => match path.strip_prefix("/d/") {
            Some(name) if validate_document_name(name).is_ok() => asset(&req, &assets::EDITOR),
            Some(name) => plain(
                StatusCode::NOT_FOUND,
                &format!(
                    "{}\n",
                    validate_document_name(name).err().unwrap_or_default()
                ),
            ),
            None => plain(StatusCode::NOT_FOUND, "not found\n"),
        },
    };
    if req.method() == Method::HEAD {
        *response.body_mut() = Full::new(Bytes::new());
    }
    security_headers(response.headers_mut());
    response
}

/// `/open?doc=NAME` (the start page's form) → `/d/NAME`.
fn open_redirect(req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let name = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("doc="))
        .unwrap_or("");
    if let Err(reason) = validate_document_name(name) {
        return plain(StatusCode::BAD_REQUEST, &format!("{reason}\n"));
    }
    let mut response = plain(StatusCode::SEE_OTHER, "");
    if let Ok(location) = HeaderValue::from_str(&format!("/d/{name}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// Answers the WebSocket handshake (RFC 6455) and leaves the upgraded stream in `slot`.
fn websocket(
    req: &mut Request<Incoming>,
    slot: &UpgradeSlot,
    addr: SocketAddr,
) -> Response<Full<Bytes>> {
    let headers = req.headers();
    let has_token = |name: header::HeaderName, wanted: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(wanted)))
        })
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return plain(
            StatusCode::UPGRADE_REQUIRED,
            "this is the editor's WebSocket endpoint\n",
        );
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return plain(StatusCode::BAD_REQUEST, "WebSocket version 13 only\n");
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return plain(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key missing\n");
    };
    // A page from another site must not drive a visitor's browser into our documents
    // (cross-site WebSocket hijacking): browsers always send Origin, so it must name
    // this very host. Programs that send no Origin are not browsers and are let in, as
    // on the binary protocol.
    if let Some(origin) = headers.get(header::ORIGIN) {
        if !same_origin(origin, headers.get(header::HOST)) {
            tracing::warn!("{addr}: WebSocket refused: Origin {origin:?} is another site");
            return plain(StatusCode::FORBIDDEN, "cross-origin WebSocket refused\n");
        }
    }
    let accept = derive_accept_key(key.as_bytes());
    let Ok(accept) = HeaderValue::from_str(&accept) else {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "\n");
    };
    match slot.lock() {
        Ok(mut slot) => *slot = Some(hyper::upgrade::on(req)),
        Err(_) => return plain(StatusCode::INTERNAL_SERVER_ERROR, "\n"),
    }
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

/// Whether `Origin` (`scheme://host[:port]`) names the host the request was sent to.
fn same_origin(origin: &HeaderValue, host: Option<&HeaderValue>) -> bool {
    let (Ok(origin), Some(Ok(host))) = (origin.to_str(), host.map(|h| h.to_str())) else {
        return false;
    };
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    let default_port = |h: &str, port: &str| -> String {
        if h.rsplit_once(':')
            .is_some_and(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
            && !h.ends_with(']')
        {
            h.to_ascii_lowercase()
        } else {
            format!("{}:{port}", h.to_ascii_lowercase())
        }
    };
    let port = if origin.starts_with("https://") {
        "443"
    } else {
        "80"
    };
    default_port(origin_host, port) == default_port(host, port)
}

/// A static file, with ETag revalidation and gzip when the browser accepts it.
fn asset(req: &Request<Incoming>, asset: &'static Asset) -> Response<Full<Bytes>> {
    let (etag, gzipped) = asset.etag_and_gzip();
    let headers = req.headers();
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else if !gzipped.is_empty()
        && headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")))
    {
        let mut r = Response::new(Full::new(Bytes::from_static(gzipped.as_slice())));
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        Response::new(Full::new(Bytes::from_static(asset.bytes)))
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(tag) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, tag);
    }
    response
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn security_headers(h: &mut hyper::HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; \
             img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert!(same_origin(
            &v("http://127.0.0.1:8080"),
            Some(&v("127.0.0.1:8080"))
        ));
        assert!(same_origin(
            &v("http://Example.org"),
            Some(&v("example.org:80"))
        ));
        assert!(same_origin(
            &v("https://[::1]:9000"),
            Some(&v("[::1]:9000"))
        ));
        assert!(!same_origin(
            &v("http://evil.example"),
            Some(&v("127.0.0.1:8080"))
        ));
        assert!(!same_origin(
            &v("http://127.0.0.1:8081"),
            Some(&v("127.0.0.1:8080"))
        ));
        assert!(!same_origin(&v("null"), Some(&v("127.0.0.1:8080"))));
        assert!(!same_origin(&v("http://127.0.0.1:8080"), None));
    }
}
