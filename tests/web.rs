//! The web editor end to end: the real `editor-server`, Debian's headless Chromium driven
//! through chromedriver, the library's terminal-client state machine over a real socket,
//! and the real `editor-client` in line mode, all on one document.

use std::time::Duration;

use e2e::browser::{require_browser, Browser, Driver};
use e2e::editor::{start_server, Client};
use e2e::p2p::TempRoot;
use e2e::Proc;
use editor::presence::Selection;
use serde_json::json;

const T: Duration = Duration::from_secs(60);

/// Where a person can look at the screenshots: beside the build's other outputs.
fn screenshot_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|p| p.join("web-screenshots"))
        .expect("target directory");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// The server's text, as a new connection receives it.
async fn server_text(port: u16, doc: &str) -> String {
    Client::join(port, doc, "checker").await.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(e2e_chromium), ignore = "needs chromium and chromedriver")]
async fn the_start_page_offers_a_name_and_the_editor_page_loads_the_bundle() {
    require_browser();
    let root = TempRoot::new("web-page");
    let (_server, port) = start_server(&root.0, &[]);
    let driver = Driver::start();
    let browser = Browser::open(&driver).await;
    browser
        .client
        .goto(&format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap();
    let input = browser
        .client
        .find(fantoccini::Locator::Css("input[name=doc]"))
        .await
        .unwrap();
    input.send_keys("start-page\n").await.unwrap();
    assert!(
        browser
            .wait_js(
                "return location.pathname === '/d/start-page' && !!window.editor && window.editor.joined()",
                T
            )
            .await,
        "the form did not open the editor"
    );
    assert_eq!(browser.text().await, "");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(e2e_chromium), ignore = "needs chromium and chromedriver")]
async fn two_browsers_and_terminal_clients_type_at_once_and_converge_byte_for_byte() {
    require_browser();
    let root = TempRoot::new("web-converge");
    // Start from text with CRLF line ends and an emoji, so offsets differ between UTF-16,
    // code points and bytes from the first character on.
    std::fs::write(root.0.join("mix.txt"), "first 😀 line\r\nsecond\r\n").unwrap();
    let (server, port) = start_server(&root.0, &[]);
    let driver = Driver::start();
    let (alice, bob) = tokio::join!(Browser::open(&driver), Browser::open(&driver));
    tokio::join!(
        alice.open_document(port, ("mix", "name=alice")),
        bob.open_document(port, ("mix", "name=bob"))
    );
    assert_eq!(alice.text().await, "first 😀 line\r\nsecond\r\n");

    // The terminal client's state machine over a real socket, and the real line-mode
    // editor-client process.
    let mut term = Client::join(port, "mix", "term").await;
    let mut lines = Proc::start(
        "editor-client",
        &[
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--doc",
            "mix",
            "--name",
            "liner",
            "--lines",
            "--no-tls",
        ],
    );

    alice.focus().await;
    bob.focus().await;
    let pasted = "pasted block\nwith two lines 🎉\n";
    let type_alice = async {
        for round in 0..6 {
            alice
                .set_cursor(if round % 2 == 0 { 0 } else { 9999 })
                .await;
            alice.type_keys("Alice types ").await;
            alice.insert_text("👍🏽").await;
            alice.type_keys(" 漢字").await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        alice.set_cursor(7).await;
        alice.paste(pasted).await;
    };
    let type_bob = async {
        for round in 0..6 {
            // Often exactly where alice types, to make concurrent inserts tie.
            bob.set_cursor(if round % 2 == 0 { 0 } else { 3 }).await;
            bob.type_keys("bob ").await;
            bob.insert_text("🚀x").await;
            bob.type_keys("\u{e007}").await; // Enter
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        bob.type_keys("\u{e003}\u{e003}").await; // Backspace twice
    };
    let type_term = async {
        for round in 0..12usize {
            term.pump().await;
            // At the start or the end: where the browsers type too, so inserts tie.
            let pos = if round % 2 == 0 {
                0
            } else {
                term.sync.text().len_chars()
            };
            term.insert(pos, "T\u{e9}rm🦀").await;
            if round % 4 == 3 {
                term.delete(pos + 1, 1).await; // its own é
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let type_lines = async {
        for i in 0..5 {
            lines.write_stdin(&format!("line-mode {i} 中文 ✓\n"));
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    };
    tokio::join!(type_alice, type_bob, type_term, type_lines);
    drop(lines.child.stdin.take()); // end of input: the line-mode client finishes

    // Everyone settles; then all copies equal the server's text.
    assert!(
        alice.settle(T).await,
        "alice still has unacknowledged edits"
    );
    assert!(bob.settle(T).await, "bob still has unacknowledged edits");
    assert!(term.settle(T).await, "term still has unacknowledged edits");
    let status = lines
        .wait_exit(T)
        .expect("line-mode client exits at end of input");
    assert!(
        status.success(),
        "line-mode client failed: {}",
        lines.stderr_text()
    );
    let expected = server_text(port, "mix").await;
    let revision = Client::join(port, "mix", "rev").await.sync.revision();
    assert!(
        term.wait_until(T, |s| s.revision() == revision).await,
        "term did not catch up"
    );
    for (who, browser) in [("alice", &alice), ("bob", &bob)] {
        let caught_up = browser
            .wait_js(
                &format!("return window.editor.revision() === {}", revision.unwrap()),
                T,
            )
            .await;
        assert!(caught_up, "{who} did not reach revision {revision:?}");
        assert_eq!(
            browser.text().await.as_bytes(),
            expected.as_bytes(),
            "{who} diverged"
        );
    }
    assert_eq!(
        term.text().as_bytes(),
        expected.as_bytes(),
        "terminal client diverged"
    );
    // Nothing typed was lost or doubled: every marker character appears exactly as
    // often as it was typed (others' inserts may land inside someone's words, so words
    // are not counted).
    let count = |c: char| expected.chars().filter(|&x| x == c).count();
    for (c, n) in [
        ('👍', 6),
        ('🏽', 6),
        ('漢', 6), // alice, key presses and input method
        ('🎉', 1), // alice's paste
        ('🚀', 6),
        ('x', 5), // bob; his two backspaces took a newline and an x
        ('🦀', 12),
        ('\u{e9}', 9), // term; it deleted three of its é
        ('中', 5),
        ('✓', 5), // the line-mode client
        ('😀', 1),
        ('\r', 2), // the text the document started with
    ] {
        assert_eq!(count(c), n, "{c:?} in {expected:?}");
    }

    // Two browsers on one document, each showing the other's named cursor.
    alice.set_cursor(0).await;
    bob.set_cursor(20).await;
    assert!(
        alice
            .wait_js(
                "return !!document.querySelector('.cm-peer-cursor[data-peer-name=\"bob\"]')",
                T
            )
            .await,
        "alice does not see bob's cursor"
    );
    let dir = screenshot_dir();
    std::fs::write(dir.join("alice.png"), alice.screenshot().await).unwrap();
    std::fs::write(dir.join("bob.png"), bob.screenshot().await).unwrap();
    eprintln!("screenshots in {}", dir.display());
    drop(server);
    alice.close().await;
    bob.close().await;
}

/// Starts editor-server on a given port (for a restart on the port browsers know).
fn start_server_on(root: &TempRoot, port: u16) -> Proc {
    let server = Proc::start(
        "editor-server",
        &[
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--data-dir",
            root.0.to_str().unwrap(),
            "--no-tls",
        ],
    );
    assert_eq!(server.listening_port(), port);
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(e2e_chromium), ignore = "needs chromium and chromedriver")]
async fn a_browser_keeps_what_it_typed_while_the_server_was_down() {
    require_browser();
    let root = TempRoot::new("web-restart");
    let (mut server, port) = start_server(&root.0, &[]);
    let driver = Driver::start();
    let ann = Browser::open(&driver).await;
    ann.open_document(port, ("restart", "name=ann")).await;
    ann.focus().await;
    ann.type_keys("before ").await;
    assert!(ann.settle(T).await);

    server.kill9();
    assert!(
        ann.wait_js(
            "return document.getElementById('status').textContent.startsWith('reconnecting…')",
            T
        )
        .await,
        "the page does not say it is reconnecting"
    );
    ann.set_cursor(9999).await;
    ann.type_keys("offline ").await;
    ann.insert_text("😀 ✓").await;
    assert_eq!(ann.js("return window.editor.pending()").await, json!(true));
    // Closing the tab now would lose edits: the page asks the browser to confirm.
    let prompts = ann
        .js("const e = new Event('beforeunload', {cancelable: true}); window.dispatchEvent(e); return e.defaultPrevented")
        .await;
    assert_eq!(
        prompts,
        json!(true),
        "no leave-site prompt with unacknowledged edits"
    );

    let _server = start_server_on(&root, port);
    assert!(
        ann.settle(T).await,
        "the edits typed offline were never acknowledged"
    );
    let text = server_text(port, "restart").await;
    assert_eq!(text, "before offline 😀 ✓");
    assert_eq!(ann.text().await, text);
    assert!(
        ann.wait_js(
            "return document.getElementById('status').textContent.startsWith('connected')",
            T
        )
        .await
    );
    let prompts = ann
        .js("const e = new Event('beforeunload', {cancelable: true}); window.dispatchEvent(e); return e.defaultPrevented")
        .await;
    assert_eq!(
        prompts,
        json!(false),
        "a prompt although everything is saved"
    );
    ann.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(e2e_chromium), ignore = "needs chromium and chromedriver")]
async fn cursors_cross_between_terminal_clients_and_browsers() {
    require_browser();
    let root = TempRoot::new("web-presence");
    std::fs::write(root.0.join("p.txt"), "😀😀 hello world\n").unwrap();
    let (_server, port) = start_server(&root.0, &[]);
    let driver = Driver::start();
    let web = Browser::open(&driver).await;
    web.open_document(port, ("p", "name=webby")).await;
    let mut term = Client::join(port, "p", "termy").await;
    // The terminal client's cursor after "😀😀 hel" (code points 6), which is UTF-16 8.
    let msg = term.sync.set_selection(Some(Selection::cursor(6)));
    if let (Some(msg), Some(conn)) = (msg, term.conn.as_mut()) {
        conn.send(&msg).await.unwrap();
    }
    assert!(
        web.wait_js(
            "const c = document.querySelector('.cm-peer-cursor[data-peer-name=\"termy\"]');
             if (!c) return false;
             const v = window.editor.view; const pos = v.posAtDOM(c);
             return pos === 8 && document.getElementById('people').textContent.includes('termy')",
            T
        )
        .await,
        "the terminal client's cursor is not drawn after \"😀😀 hel\""
    );
    // And the browser's selection reaches the terminal client, in code points.
    web.focus().await;
    web.js("const v = window.editor.view; v.dispatch({selection: {anchor: 4, head: 10}}); v.focus(); return true")
        .await;
    let seen = term
        .wait_until(T, |s| {
            s.participants()
                .any(|p| p.name == "webby" && p.selection == Some(Selection { anchor: 2, head: 8 }))
        })
        .await;
    assert!(
        seen,
        "the browser's selection did not reach the terminal client"
    );
    // A terminal client that leaves disappears from the page.
    term.disconnect();
    assert!(
        web.wait_js(
            "return !document.querySelector('.cm-peer-cursor[data-peer-name=\"termy\"]')",
            T
        )
        .await
    );
    web.close().await;
}

/// The browser's transform (ot.js in the page) and the server's (ot.rs) agree on random
/// concurrent edits, including the order of inserts at one position: otherwise copies
/// would drift apart without any error. Composition (how the page folds keystrokes into
/// one change) is checked the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(e2e_chromium), ignore = "needs chromium and chromedriver")]
async fn the_page_transforms_exactly_as_the_server() {
    use editor::ot::{transform, TextOperation};
    require_browser();
    let root = TempRoot::new("web-ot");
    let (_server, port) = start_server(&root.0, &[]);
    let driver = Driver::start();
    let page = Browser::open(&driver).await;
    page.open_document(port, ("ot", "name=ot")).await;
    let mut rng = e2e::editor::Rng(0x5eed_1234_abcd);
    let alphabet = ['a', 'b', 'é', '😀', '漢', '\n', '\r', '👍'];
    let random_op = |rng: &mut e2e::editor::Rng, len: usize| {
        let mut components = Vec::new();
        let mut left = len;
        while left > 0 || rng.below(3) == 0 {
            match rng.below(3) {
                0 if left > 0 => {
                    let n = 1 + rng.below(left);
                    components.push(json!({"Retain": n}));
                    left -= n;
                }
                1 if left > 0 => {
                    let n = 1 + rng.below(left.min(3));
                    components.push(json!({"Delete": n}));
                    left -= n;
                }
                _ => {
                    let s: String = (0..1 + rng.below(3))
                        .map(|_| alphabet[rng.below(alphabet.len())])
                        .collect();
                    components.push(json!({"Insert": s}));
                }
            }
        }
        serde_json::Value::Array(components)
    };
    let mut cases = Vec::new();
    for _ in 0..400 {
        let len = rng.below(12);
        let a = random_op(&mut rng, len);
        let b = random_op(&mut rng, len);
        let a_first = rng.below(2) == 0;
        cases.push(json!([a, b, a_first]));
    }
    let page_results = page
        .js_args(
            "const {Op, transform} = window.editor.ot;
             return arguments[0].map(([a, b, first]) => {
               const [a2, b2] = transform(Op.fromWire(a), Op.fromWire(b), first);
               return [a2.toWire(), b2.toWire(), Op.fromWire(a).compose(b2).toWire()];
             });",
            vec![serde_json::Value::Array(cases.clone())],
        )
        .await;
    let page_results = page_results.as_array().expect("results");
    for (case, page_result) in cases.iter().zip(page_results) {
        let a: TextOperation = serde_json::from_value(case[0].clone()).unwrap();
        let b: TextOperation = serde_json::from_value(case[1].clone()).unwrap();
        let (a2, b2) = transform(&a, &b, case[2].as_bool().unwrap()).unwrap();
        let composed = a.compose(&b2).unwrap();
        let server = json!([a2, b2, composed]);
        assert_eq!(&server, page_result, "case {case}");
    }
    page.close().await;
}

/// Raw HTTP on the editor's port: the answer's status line, or None if the server closed
/// without one.
async fn http_status(port: u16, request: &[u8]) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        match tokio::time::timeout(T, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    text.lines().next().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_port_serves_http_and_the_editor_protocol_and_refuses_bad_requests() {
    let root = TempRoot::new("web-http");
    let (server, port) = start_server(&root.0, &[]);
    // The binary protocol on the same port.
    let mut term = Client::join(port, "both", "term").await;
    term.insert(0, "hi").await;
    assert!(term.settle(T).await);
    let ok = |s: Option<String>| s.unwrap_or_default();
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    assert_eq!(
        ok(http_status(port, get("/").as_bytes()).await),
        "HTTP/1.1 200 OK"
    );
    assert_eq!(
        ok(http_status(port, get("/d/both").as_bytes()).await),
        "HTTP/1.1 200 OK"
    );
    assert_eq!(
        ok(http_status(port, get("/editor.js").as_bytes()).await),
        "HTTP/1.1 200 OK"
    );
    assert_eq!(
        ok(http_status(port, get("/licenses.txt").as_bytes()).await),
        "HTTP/1.1 200 OK"
    );
    assert_eq!(
        ok(http_status(port, get("/d/..%2Fetc").as_bytes()).await),
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(
        ok(http_status(port, get("/d/.hidden").as_bytes()).await),
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(
        ok(http_status(
            port,
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc"
        )
        .await),
        "HTTP/1.1 405 Method Not Allowed"
    );
    // A request head larger than the limit is refused, not buffered.
    let huge = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let status = http_status(port, huge.as_bytes()).await;
    assert!(
        status.as_deref().is_none_or(|s| s.contains("431")),
        "oversized head answered {status:?}"
    );
    // A page from another site cannot open the WebSocket in a visitor's browser.
    let cross =
        "GET /ws HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
                 sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 origin: http://evil.example\r\n\r\n";
    assert_eq!(
        ok(http_status(port, cross.as_bytes()).await),
        "HTTP/1.1 403 Forbidden"
    );
    // The WebSocket: JSON join gets a snapshot; malformed JSON gets an error and a close.
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://127.0.0.1:{port}/ws"), stream)
        .await
        .expect("websocket handshake");
    let join = json!({"join": {"document": "both", "name": "raw", "key": "42", "known": null}});
    ws.send(Message::text(join.to_string())).await.unwrap();
    // Protocol 2 announces a successful join with Access before the snapshot.
    let snapshot: serde_json::Value = loop {
        let frame = tokio::time::timeout(T, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let msg: serde_json::Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
        if msg.get("access").is_none() {
            break msg;
        }
    };
    assert_eq!(snapshot["snapshot"]["text"], json!("hi"), "{snapshot}");
    assert!(
        snapshot["snapshot"]["you"].is_string(),
        "ids travel as strings: {snapshot}"
    );
    let change = json!({"change": {"base": snapshot["snapshot"]["revision"], "seq": 1,
                                   "op": [{"Retain": 2}, {"Insert": " 😀"}]}});
    ws.send(Message::text(change.to_string())).await.unwrap();
    loop {
        let msg = tokio::time::timeout(T, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        if v.get("ack").is_some() {
            assert_eq!(v["ack"]["seq"], json!(1));
            break;
        }
    }
    assert!(term.wait_until(T, |s| *s.text() == "hi 😀").await);
    ws.send(Message::text("{\"change\": 12}")).await.unwrap();
    let mut got_error = false;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(T, ws.next()).await {
        if let Message::Text(t) = msg {
            got_error |= t.as_str().contains("\"Malformed\"");
        }
    }
    assert!(got_error, "malformed JSON did not get a Malformed error");
    assert!(server
        .stderr_text()
        .contains("web editor on the same port: http://127.0.0.1:"));
}
