//! Headless Chromium for the web editor's tests: Debian's `chromium` driven through
//! `chromedriver` (package `chromium-driver`) with fantoccini (WebDriver), one
//! chromedriver per test and one browser session per [`Browser`].
//!
//! Where they are not installed the tests are ignored with the reason (`tests/build.rs`);
//! under CI a missing browser fails them.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

/// Debian's binaries, as found on the PATH.
pub const CHROMIUM: &str = "chromium";
pub const CHROMEDRIVER: &str = "chromedriver";

/// Panics with the reason unless chromium and chromedriver are installed (tests that call
/// this are marked `#[cfg_attr(not(e2e_chromium), ignore = ...)]`, see `tests/build.rs`).
#[track_caller]
pub fn require_browser() {
    crate::require_tool("chromium", "chromium");
    crate::require_tool("chromedriver", "chromium-driver");
}

/// The full path of `program` on the PATH (chromedriver wants the browser's).
fn which(program: &str) -> String {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{program} is not on the PATH"))
        .to_string_lossy()
        .into_owned()
}

/// A running chromedriver, killed on drop.
pub struct Driver {
    child: Child,
    pub url: String,
}

impl Driver {
    pub fn start() -> Driver {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        // Its own process group, which the browsers it starts join: dropping the driver
        // kills them all, even when a test failed before closing its windows.
        use std::os::unix::process::CommandExt;
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and every chromium process it started.
        if let Ok(pgid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on the process group we created; no memory is involved.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One headless browser window.
pub struct Browser {
    pub client: Client,
}

impl Browser {
    pub async fn open(driver: &Driver) -> Browser {
        Self::open_with(driver, &[]).await
    }

    /// A window with extra chromium flags (e.g. `--ignore-certificate-errors` for a
    /// server's self-signed certificate).
    pub async fn open_with(driver: &Driver, extra_args: &[&str]) -> Browser {
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=900,600",
            "--no-first-run",
            "--disable-extensions",
            // Windows not in front keep their timers and rendering (tests and benchmarks
            // drive several at once).
            "--disable-background-timer-throttling",
            "--disable-renderer-backgrounding",
            "--disable-backgrounding-occluded-windows",
        ];
        args.extend_from_slice(extra_args);
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": which(CHROMIUM), "args": args }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .expect("start a chromium session");
        Browser { client }
    }

    /// Opens `/d/DOC#name=NAME[&token=...]` and waits until the editor has joined.
    pub async fn open_document(&self, port: u16, fragment_and_doc: (&str, &str)) {
        let (doc, fragment) = fragment_and_doc;
        self.open_url(&format!("http://127.0.0.1:{port}/d/{doc}#{fragment}"))
            .await;
    }

    /// Opens an editor page's full URL (`https://...` too) and waits until it has joined.
    pub async fn open_url(&self, url: &str) {
        self.client.goto(url).await.expect("open the editor page");
        assert!(
            self.wait_js(
                "return window.editor && window.editor.joined()",
                Duration::from_secs(30)
            )
            .await,
            "the page did not join the document"
        );
    }

    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    pub async fn js_args(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls `script` (which returns a boolean) until true; false on timeout.
    pub async fn wait_js(&self, script: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Value::Bool(true)) = self.client.execute(script, vec![]).await {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn text(&self) -> String {
        self.js("return window.editor.text()")
            .await
            .as_str()
            .expect("text is a string")
            .to_owned()
    }

    /// Waits until every edit typed in this browser is acknowledged.
    pub async fn settle(&self, timeout: Duration) -> bool {
        self.wait_js(
            "return window.editor.joined() && !window.editor.pending()",
            timeout,
        )
        .await
    }

    /// Focuses the editor's text.
    pub async fn focus(&self) {
        let content = self
            .client
            .find(Locator::Css(".cm-content"))
            .await
            .expect("editor content");
        content.click().await.expect("click into the editor");
    }

    /// Types BMP text as key presses (chromedriver cannot send characters outside the
    /// BMP; see [`insert_text`](Self::insert_text) for those).
    pub async fn type_keys(&self, text: &str) {
        let active = self.client.active_element().await.expect("active element");
        active.send_keys(text).await.expect("send keys");
    }

    /// Inserts text at the cursor the way an input method does (any characters,
    /// emoji included): through the browser's editing command on the focused editor.
    pub async fn insert_text(&self, text: &str) {
        self.js_args(
            "document.execCommand('insertText', false, arguments[0]); return true",
            vec![json!(text)],
        )
        .await;
    }

    /// Pastes `text` through a real paste event on the editor, as Ctrl-V does.
    pub async fn paste(&self, text: &str) {
        self.js_args(
            "const dt = new DataTransfer(); dt.setData('text/plain', arguments[0]);
             const e = new ClipboardEvent('paste', {clipboardData: dt, bubbles: true, cancelable: true});
             document.querySelector('.cm-content').dispatchEvent(e); return true",
            vec![json!(text)],
        )
        .await;
    }

    /// Moves the cursor to UTF-16 offset `pos` (clamped to the text, moved off the middle
    /// of a surrogate pair).
    pub async fn set_cursor(&self, pos: usize) {
        self.js_args(
            "const v = window.editor.view; let p = Math.min(arguments[0], v.state.doc.length);
             const before = v.state.doc.sliceString(Math.max(p - 1, 0), p);
             if (/[\\ud800-\\udbff]/.test(before)) p += 1; // never between a surrogate pair
             v.dispatch({selection: {anchor: p}}); v.focus(); return true",
            vec![json!(pos)],
        )
        .await;
    }

    pub async fn screenshot(&self) -> Vec<u8> {
        self.client.screenshot().await.expect("screenshot")
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}
