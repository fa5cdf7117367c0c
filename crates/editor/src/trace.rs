//! Editing traces (the public `editing-traces` sequential format) for tests and benchmarks.
//!
//! A trace is gzip-compressed (or plain) JSON: `startContent`, `endContent` and `txns`, each
//! with `patches` of `[position, deleted, inserted]`, positions in Unicode scalar values.
//! Applying the patches in order to `startContent` gives `endContent`.

use std::io::Read;
use std::path::Path;

use ropey::Rope;
use serde::Deserialize;

use crate::ot::{OtError, TextOperation};

/// One splice: delete `del` characters at `pos`, then insert `ins` there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Patch {
    pub pos: usize,
    pub del: usize,
    pub ins: String,
}

impl Patch {
    /// The patch as an operation on a document of `doc_len` characters.
    pub fn to_op(&self, doc_len: usize) -> Result<TextOperation, OtError> {
        TextOperation::splice(doc_len, self.pos, self.del, &self.ins)
    }
}

/// A whole trace, flattened to its patches.
#[derive(Clone, Debug)]
pub struct Trace {
    pub start: String,
    pub end: String,
    pub patches: Vec<Patch>,
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not an editing trace: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTrace {
    #[serde(default)]
    start_content: String,
    end_content: String,
    txns: Vec<RawTxn>,
}

#[derive(Deserialize)]
struct RawTxn {
    patches: Vec<(usize, usize, String)>,
}

impl Trace {
    /// Loads a `.json` or `.json.gz` trace (gzip is recognised by its magic bytes).
    pub fn load(path: &Path) -> Result<Trace, TraceError> {
        let name = path.display().to_string();
        let io = |source| TraceError::Io {
            path: name.clone(),
            source,
        };
        let raw = std::fs::read(path).map_err(io)?;
        let json = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::with_capacity(raw.len() * 8);
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .map_err(io)?;
            out
        } else {
            raw
        };
        let trace: RawTrace = serde_json::from_slice(&json).map_err(|source| TraceError::Json {
            path: name.clone(),
            source,
        })?;
        let patches = trace
            .txns
            .into_iter()
            .flat_map(|t| t.patches)
            .map(|(pos, del, ins)| Patch { pos, del, ins })
            .collect();
        Ok(Trace {
            start: trace.start_content,
            end: trace.end_content,
            patches,
        })
    }

    /// Applies every patch to a rope directly (the no-network baseline).
    pub fn apply_to_rope(&self) -> Rope {
        let mut rope = Rope::from_str(&self.start);
        for p in &self.patches {
            if p.del > 0 {
                rope.remove(p.pos..p.pos + p.del);
            }
            if !p.ins.is_empty() {
                rope.insert(p.pos, &p.ins);
            }
        }
        rope
    }
}
