//! The files a browser loads, embedded in the binary so the server needs neither Node nor
//! the network: the two pages and the bundle built from `crates/editor/web` (see its
//! `build.sh`), served gzip-compressed to browsers that accept it.

use std::sync::OnceLock;

/// The start page: offers a document name, lists nothing.
pub const INDEX_HTML: &str = include_str!("../../../web/index.html");
/// The editor page for `/d/NAME` (the script reads the name from the path).
pub const EDITOR_HTML: &str = include_str!("../../../web/editor.html");
/// CodeMirror 6 and the sync client, bundled by esbuild.
pub const EDITOR_JS: &[u8] = include_bytes!("../../../web/dist/editor.js");
/// Licences of the bundled code.
pub const LICENSES: &str = include_str!("../../../web/THIRD_PARTY_LICENSES.txt");

/// A static file with its validator and a compressed copy made on first use.
pub struct Asset {
    pub bytes: &'static [u8],
    pub content_type: &'static str,
    compressed: OnceLock<(String, Vec<u8>)>,
}

impl Asset {
    pub const fn new(bytes: &'static [u8], content_type: &'static str) -> Self {
        Asset {
            bytes,
            content_type,
            compressed: OnceLock::new(),
        }
    }

    /// The ETag (a hash of the content) and the gzip form.
    pub fn etag_and_gzip(&self) -> &(String, Vec<u8>) {
        self.compressed.get_or_init(|| {
            let etag = format!("\"{}\"", &blake3::hash(self.bytes).to_hex()[..16]);
            (etag, gzip(self.bytes))
        })
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

pub static INDEX: Asset = Asset::new(INDEX_HTML.as_bytes(), "text/html; charset=utf-8");
pub static EDITOR: Asset = Asset::new(EDITOR_HTML.as_bytes(), "text/html; charset=utf-8");
pub static BUNDLE: Asset = Asset::new(EDITOR_JS, "text/javascript; charset=utf-8");
pub static LICENSE_TEXT: Asset = Asset::new(LICENSES.as_bytes(), "text/plain; charset=utf-8");
