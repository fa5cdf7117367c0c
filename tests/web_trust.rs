//! The web editor under the trust of issue 13 and the hostile input of issue 14, end to
//! end: the page over HTTPS and its WebSocket over `wss:` with TLS on (the default), a
//! read-only token in the URL fragment giving a read-only editor, and text that is not
//! Unicode (a lone UTF-16 surrogate) never making a page reconnect for ever.
//!
//! Browsers are Debian's headless Chromium through chromedriver (`e2e::browser`); each
//! test's chromedriver and the browsers it started die with its process group.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::process::Command;
use std::time::Duration;

use e2e::browser::{require_browser, Browser, Driver};
use e2e::editor::{start_server, Client};
use e2e::p2p::TempRoot;
use e2e::{bin_path, Proc};
use serde_json::json;

const T: Duration = Duration::from_secs(60);

fn mint(data: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(bin_path("editor-server"))
        .args(["token", "--data-dir", data.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The server's text as `editor-client --print` over TLS, pinned to `fingerprint`.
fn print_over_tls(port: u16, fingerprint: &str, doc: &str) -> String {
    let out = Command::new(bin_path("editor-client"))
        .args(["127.0.0.1", "--port", &port.to_string(), "--doc", doc])
        .args(["--print", "--trust-fingerprint", fingerprint])
        .env(
            "XDG_CONFIG_HOME",
            std::env::temp_dir().join("e2e-web-trust-cfg"),
        )
        .env_remove("EDITOR_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(e2e_chromium), ignore = "needs chromium and chromedriver")]
async fn with_tls_on_the_page_is_https_and_edits_travel_over_wss() {
    require_browser();
    let root = TempRoot::new("web-tls");
    std::fs::write(root.0.join("secure.txt"), "over tls\n").unwrap();
    // TLS on, as by default: the server's self-signed certificate.
    let server = Proc::start(
        "editor-server",
        &[
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--data-dir",
            root.0.to_str().unwrap(),
        ],
    );
    let port = server.listening_port();
    let line = server.wait_for("TLS certificate SHA256:", T).unwrap();
    let at = line.find("SHA256:").unwrap();
    let fingerprint = line[at..at + 7 + 64].to_owned();

    let driver = Driver::start();
    // A self-signed certificate: this browser is told to accept it, as a person would
    // click through the warning after checking the fingerprint.
    let web = Browser::open_with(&driver, &["--ignore-certificate-errors"]).await;
    web.open_url(&format!("https://127.0.0.1:{port}/d/secure#name=tls"))
        .await;
    assert_eq!(web.js("return location.protocol").await, json!("https:"));
    assert_eq!(web.text().await, "over tls\n");
    web.focus().await;
    web.set_cursor(9999).await;
    web.type_keys("typed in https").await;
    assert!(web.settle(T).await, "the edit was never acknowledged");
    // The page's WebSocket to the same origin was wss: (a ws: one would not even get a
    // handshake from a TLS port); the browser's resource timing names it.
    let scheme = web
        .js("const e = performance.getEntriesByType('resource').find(r => r.name.endsWith('/ws'));
             return e ? new URL(e.name).protocol : (location.protocol === 'https:' ? 'wss:' : 'ws:')")
        .await;
    assert_eq!(scheme, json!("wss:"));
    assert_eq!(
        print_over_tls(port, &fingerprint, "secure"),
        "over tls\ntyped in https"
    );
    // Plain http:// on the TLS port is not served.
    let plain = web
        .client
        .goto(&format!("http://127.0.0.1:{port}/d/secure"))
        .await;
    let joined = web
        .wait_js(
            "return !!window.editor && window.editor.joined()",
            Duration::from_secs(3),
        )
        .await;
    assert!(
        plain.is_err() || !joined,
        "a plaintext page joined a TLS server"
    );
    web.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(e2e_chromium), ignore = "needs chromium and chromedriver")]
async fn a_read_only_token_gives_a_read_only_editor() {
    require_browser();
    let root = TempRoot::new("web-ro");
    std::fs::write(root.0.join("ro.txt"), "read me\n").unwrap();
    let (server, port) = start_server(&root.0, &[]);
    let token = mint(
        &root.0,
        &["--doc", "ro", "--read-only", "--label", "viewer"],
    );
    let driver = Driver::start();
    let web = Browser::open(&driver).await;
    web.client
        .goto(&format!("http://127.0.0.1:{port}/d/ro#token={token}"))
        .await
        .unwrap();
    // (`window.editor` is the page's API once its script ran; before, the element with id
    // "editor" answers to that name, which has no `joined`.)
    let joined = web
        .wait_js(
            "return !!window.editor?.joined && window.editor.joined()",
            T,
        )
        .await;
    assert!(
        joined,
        "the page did not join: {}; server: {}",
        web.js("return document.body.innerText").await,
        server.stderr_text()
    );
    assert!(
        web.wait_js(
            "return window.editor.readOnly() && document.body.classList.contains('read-only')",
            T
        )
        .await,
        "the page did not become read-only"
    );
    // The token leaves the address bar at once.
    assert_eq!(web.js("return location.hash").await, json!(""));

    // Typing does nothing: the editor is not editable.
    web.focus().await;
    web.type_keys("vandalism").await;
    web.insert_text("more").await;
    assert_eq!(web.text().await, "read me\n");
    // Even a change forced past the widget is refused by the server, which keeps the
    // page connected (one stray change does not end the session).
    web.js("window.editor.view.dispatch({changes: {from: 0, insert: 'forced '}}); return true")
        .await;
    assert!(
        web.wait_js(
            "return document.getElementById('notice').textContent.includes('read-only')",
            T
        )
        .await,
        "no read-only notice"
    );
    let mut writer = Client::join(port, "ro", "writer").await;
    assert_eq!(writer.text(), "read me\n", "the server's text changed");
    // And the read-only page still sees live changes.
    writer.insert(0, "live: ").await;
    assert!(writer.settle(T).await);
    assert!(
        web.wait_js("return window.editor.text().includes('live: ')", T)
            .await,
        "a read-only page does not follow the document"
    );
    assert!(
        server
            .wait_for("\"viewer\" on document ro (read-only", T)
            .is_some(),
        "{}",
        server.stderr_text()
    );
    web.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(e2e_chromium), ignore = "needs chromium and chromedriver")]
async fn a_lone_surrogate_typed_in_the_page_never_makes_it_reconnect() {
    require_browser();
    let root = TempRoot::new("web-surrogate");
    let (server, port) = start_server(&root.0, &[]);
    let driver = Driver::start();
    let web = Browser::open(&driver).await;
    web.open_document(port, ("lone", "name=halfmoji")).await;
    web.focus().await;
    // Half an emoji (a high surrogate with no low one), and a low one on its own, as a
    // script or a broken paste can insert; plus a whole emoji, which must stay whole.
    web.js("window.editor.view.dispatch({changes: {from: 0, insert: 'a\\ud83d b \\ude00 c \\ud83d\\ude00'}}); return true")
        .await;
    assert!(web.settle(T).await, "the edit was never acknowledged");
    let expected = "a\u{fffd} b \u{fffd} c 😀";
    assert_eq!(web.text().await, expected);
    let mut checker = Client::join(port, "lone", "checker").await;
    assert_eq!(checker.text(), expected);
    // The page kept its one connection.
    assert_eq!(
        web.js("return window.editor.status()").await,
        json!("connected")
    );
    let joins = server
        .stderr_lines()
        .iter()
        .filter(|l| l.contains("\"halfmoji\" on document lone"))
        .count();
    assert_eq!(joins, 1, "the page reconnected:\n{}", server.stderr_text());
    checker.disconnect();
    web.close().await;
}

/// What a hostile or broken page could send: a change whose JSON text holds a lone
/// surrogate escape. The server cannot store it; it says so in words (the page itself
/// never sends one, see above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_surrogate_over_the_websocket_gets_a_clear_error() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let root = TempRoot::new("ws-surrogate");
    let (server, port) = start_server(&root.0, &[]);
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://127.0.0.1:{port}/ws"), stream)
        .await
        .unwrap();
    let join = json!({"join": {"document": "raw", "name": "raw", "key": "7", "known": null}});
    ws.send(Message::text(join.to_string())).await.unwrap();
    // JSON.stringify writes a lone surrogate as an escape; that is what arrives.
    let change = r#"{"change":{"base":0,"seq":1,"op":[{"Insert":"x\ud83dy"}]}}"#;
    ws.send(Message::text(change)).await.unwrap();
    let mut error = None;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(T, ws.next()).await {
        if let Message::Text(text) = msg {
            let v: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
            if v.get("error").is_some() {
                error = Some(v["error"].clone());
            }
        }
    }
    let error = error.expect("an error before the close");
    assert_eq!(error["code"], json!("Malformed"), "{error}");
    let reason = error["reason"].as_str().unwrap();
    assert!(reason.contains("surrogate"), "{reason}");
    // Nothing reached the document.
    assert_eq!(Client::join(port, "raw", "checker").await.text(), "");
    drop(server);
}
