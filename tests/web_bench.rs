//! Benchmarks of the web editor, not tests: a `cargo bench` target (harness = false), so the
//! test suite neither runs nor counts it as ignored (see BENCHMARKS.md).
//!
//! 1. Time to open automerge-paper's final text (about 100 KB) in a fresh browser until it
//!    is editable, counted from the page's first response byte (`responseStart`).
//! 2. Keystroke latency with 10 browser windows open on one document, 10 keystrokes a
//!    second: browser → terminal (a CodeMirror input transaction in one window until the
//!    change reaches a terminal client's state machine in this process) and terminal →
//!    browser (an insert by a terminal client until the window's DOM changed). Both ends
//!    read the same wall clock (`performance.timeOrigin + performance.now()` in the page,
//!    `SystemTime` here).
//!
//! ```sh
//! cargo build --release -p editor --bins
//! EDITOR_SERVER=$CARGO_TARGET_DIR/release/editor-server KEYS=1000 \
//!   cargo bench -p e2e --bench web_bench
//! ```

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2e::browser::{require_browser, Browser, Driver};
use e2e::editor::Client;
use e2e::p2p::TempRoot;
use e2e::Proc;
use editor::client::sync::Event;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(120);

/// Fresh browsers the open time is measured in.
const OPENS: usize = 10;

/// The page's timings of one open, in ms after the first response byte of the page:
/// HTML received, the bundle fetched (Resource Timing), the bundle parsed and run
/// (DOMContentLoaded ends after the synchronous script at the end of the body), the
/// first snapshot editable (`readyAt`: WebSocket, join, snapshot, CodeMirror dispatch),
/// the first contentful paint and the largest one (the text rendered).
const PHASES: &str = "const n = performance.getEntriesByType('navigation')[0];
    const r = performance.getEntriesByType('resource').find(e => e.name.endsWith('/editor.js'));
    const fcp = performance.getEntriesByName('first-contentful-paint')[0];
    const t0 = n.responseStart;
    return {html_done: n.responseEnd - t0, bundle_fetched: r ? r.responseEnd - t0 : null,
            bundle_bytes: r ? r.decodedBodySize : null, bundle_encoded: r ? r.encodedBodySize : null,
            bundle_run: n.domContentLoadedEventEnd - t0, ready: window.editor.readyAt() - t0,
            lcp: window.lcp - t0, fcp: fcp ? fcp.startTime - t0 : null}";

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(name: &str, mut values: Vec<f64>) -> Value {
    values.sort_by(f64::total_cmp);
    let s = json!({
        "n": values.len(),
        "p50_ms": percentile(&values, 50.0),
        "p99_ms": percentile(&values, 99.0),
        "max_ms": values.last().copied().unwrap_or(f64::NAN),
    });
    println!("{name}: {s}");
    s
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn start_server(root: &TempRoot) -> (Proc, u16) {
    let path = std::env::var("EDITOR_SERVER")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| e2e::bin_path("editor-server"));
    let mut cmd = Command::new(path);
    // Plaintext: the browser opens http:// and the terminal clients here speak no TLS.
    cmd.args([
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
        "--no-tls",
        "--data-dir",
    ])
    .arg(&root.0)
    // Quiet per-change logs, but keep the "listening on" line the harness waits for.
    .env("RUST_LOG", "warn,editor=info,netutil::listen=info");
    let server = Proc::spawn("editor-server", cmd);
    let port = server.listening_port();
    (server, port)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(web_editor_open_time_and_keystroke_latency());
}

async fn web_editor_open_time_and_keystroke_latency() {
    require_browser();
    let keys: usize = std::env::var("KEYS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(1000);
    let load_before = loadavg();
    let root = TempRoot::new("web-bench");
    let trace_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../bench/traces/automerge-paper.json.gz"
    );
    let trace = editor::trace::Trace::load(std::path::Path::new(trace_path)).expect("trace");
    std::fs::write(root.0.join("paper.txt"), &trace.end).unwrap();
    let (_server, port) = start_server(&root);
    let driver = Driver::start();

    // 1. Open time, each in a fresh browser (no cached bundle), and where it goes: the
    // page's own timings, all in ms after the page's first response byte.
    let mut open_ms = Vec::new();
    let mut phases: Vec<Value> = Vec::new();
    for _ in 0..OPENS {
        let b = Browser::open(&driver).await;
        b.open_document(port, ("paper", "name=opener")).await;
        // The largest contentful paint (the text, once rendered) comes from an observer.
        b.wait_js(
            "if (window.lcp === undefined) { window.lcp = null;
               new PerformanceObserver((l) => { const e = l.getEntries(); window.lcp = e[e.length - 1].startTime; })
                 .observe({type: 'largest-contentful-paint', buffered: true}); }
             return window.lcp !== null",
            T,
        )
        .await;
        let p = b.js(PHASES).await;
        let ms = p["ready"].as_f64().expect("a number");
        assert_eq!(b.text().await.len(), trace.end.len());
        open_ms.push(ms);
        phases.push(p);
        b.close().await;
    }
    println!(
        "document: {} bytes, {} characters",
        trace.end.len(),
        trace.end.chars().count()
    );
    let open = summary("open until editable (ms after first byte)", open_ms.clone());
    let phase_names = [
        "html_done",
        "bundle_fetched",
        "bundle_run",
        "ready",
        "lcp",
        "fcp",
    ];
    let mut breakdown = serde_json::Map::new();
    for name in phase_names {
        let mut v: Vec<f64> = phases.iter().filter_map(|p| p[name].as_f64()).collect();
        v.sort_by(f64::total_cmp);
        breakdown.insert(name.into(), json!(percentile(&v, 50.0)));
    }
    breakdown.insert("bundle_bytes".into(), phases[0]["bundle_bytes"].clone());
    breakdown.insert("bundle_encoded".into(), phases[0]["bundle_encoded"].clone());
    println!(
        "open phases, medians in ms after the first byte: {}",
        Value::Object(breakdown.clone())
    );

    // 2. Ten windows on one document.
    let browser = Browser::open(&driver).await;
    browser.open_document(port, ("lat", "name=w0")).await;
    // The last window opened stays the current one (in front): it is the one measured.
    for i in 1..10 {
        let w = browser.client.new_window(false).await.unwrap();
        browser.client.switch_to_window(w.handle).await.unwrap();
        browser
            .open_document(port, ("lat", &format!("name=w{i}")))
            .await;
    }

    // Browser -> terminal.
    let mut observer = Client::join(port, "lat", "observer").await;
    browser
        .js_args(
            "const n = arguments[0]; const v = window.editor.view; window.sent = [];
             let i = 0;
             const id = setInterval(() => {
               if (i++ >= n) { clearInterval(id); return; }
               window.sent.push(performance.timeOrigin + performance.now());
               v.dispatch({changes: {from: v.state.doc.length, insert: 'b'}, userEvent: 'input.type'});
             }, 100);
             return true",
            vec![json!(keys)],
        )
        .await;
    let mut arrived = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(keys as u64 / 5 + 120);
    while arrived.len() < keys && tokio::time::Instant::now() < deadline {
        let Some(conn) = observer.conn.as_mut() else {
            break;
        };
        let Ok(Ok(Some(msg))) = tokio::time::timeout(T, conn.recv()).await else {
            break;
        };
        let at = now_ms();
        for event in observer.sync.receive(msg).expect("in order") {
            if let Event::RemoteEdit { op, .. } = event {
                let added = op.target_len().saturating_sub(op.base_len());
                arrived.extend(std::iter::repeat_n(at, added));
            }
        }
    }
    let sent: Vec<f64> = serde_json::from_value(browser.js("return window.sent").await).unwrap();
    assert_eq!(arrived.len(), keys, "not every keystroke arrived");
    let span = sent.last().unwrap_or(&0.0) - sent.first().unwrap_or(&0.0);
    println!("browser sent {keys} keystrokes in {:.1} s", span / 1000.0);
    let b2t = summary(
        "browser -> terminal (ms)",
        sent.iter().zip(&arrived).map(|(s, a)| a - s).collect(),
    );
    drop(observer);

    // Terminal -> browser: the window records when its DOM changed and how long the text was.
    let base = browser.text().await.chars().count();
    browser
        .js("window.seen = []; const content = document.querySelector('.cm-content');
             new MutationObserver(() => window.seen.push([performance.timeOrigin + performance.now(),
                 window.editor.view.state.doc.length])).observe(content,
                 {childList: true, subtree: true, characterData: true});
             return true")
        .await;
    let mut writer = Client::join(port, "lat", "typist").await;
    let mut typed = Vec::new();
    let mut next = tokio::time::Instant::now();
    for _ in 0..keys {
        tokio::time::sleep_until(next).await;
        next += Duration::from_millis(100);
        let end = writer.sync.text().len_chars();
        typed.push(now_ms());
        writer.insert(end, "t").await;
        writer.pump().await;
    }
    assert!(writer.settle(T).await);
    let want = base + keys;
    assert!(
        browser
            .wait_js(
                &format!("return window.editor.view.state.doc.length >= {want}"),
                T
            )
            .await
    );
    let seen: Vec<(f64, usize)> =
        serde_json::from_value(browser.js("return window.seen").await).unwrap();
    let mut t2b = Vec::new();
    for (k, t0) in typed.iter().enumerate() {
        let len = base + k + 1;
        let t1 = seen
            .iter()
            .find(|(_, l)| *l >= len)
            .map(|(t, _)| *t)
            .expect("seen");
        t2b.push(t1 - t0);
    }
    let t2b = summary("terminal -> browser (ms)", t2b);
    let load_after = loadavg();
    println!(
        "{}",
        json!({"open": open, "open_phases": breakdown, "browser_to_terminal": b2t, "terminal_to_browser": t2b,
               "keys": keys, "windows": 10, "loadavg_before": load_before, "loadavg_after": load_after})
    );
    browser.close().await;
}
