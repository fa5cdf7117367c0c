//! Presence: where each participant's cursor and selection are, kept right as text changes.
//!
//! A selection is an anchor and a head (the cursor) in character positions. Every change
//! that lands in the document moves them the way it moves the text around them, so a
//! cursor stays between the same two characters; text inserted exactly at a remote cursor
//! goes before it (ot.js behaviour), which keeps a typist's cursor after what they type.

use serde::{Deserialize, Serialize};

use crate::ot::{transform_index, TextOperation};

/// A cursor (`anchor == head`) or a selected range, in character positions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    pub anchor: usize,
    pub head: usize,
}

impl Selection {
    pub fn cursor(pos: usize) -> Self {
        Selection {
            anchor: pos,
            head: pos,
        }
    }

    /// The selection after `op` has been applied to the text it points into.
    /// `after_inserts`: whether an insert exactly at a position moves it right.
    pub fn transform(self, op: &TextOperation, after_inserts: bool) -> Self {
        Selection {
            anchor: transform_index(self.anchor, op, after_inserts),
            head: transform_index(self.head, op, after_inserts),
        }
    }

    /// Clamps both ends into a document of `len` characters (a hostile peer may send any
    /// numbers; a displayed cursor must still be inside the text).
    pub fn clamp(self, len: usize) -> Self {
        Selection {
            anchor: self.anchor.min(len),
            head: self.head.min(len),
        }
    }
}

/// One person on a document as the others see them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    /// Public id (derived from the client's secret key; stable across its reconnects).
    pub id: u64,
    pub name: String,
    /// None until the client has reported one.
    pub selection: Option<Selection>,
}

impl Participant {
    pub fn transform(&mut self, op: &TextOperation) {
        if let Some(sel) = self.selection.as_mut() {
            *sel = sel.transform(op, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_follows_text() {
        let op = TextOperation::splice(10, 2, 3, "ab").unwrap();
        let sel = Selection { anchor: 1, head: 8 };
        assert_eq!(sel.transform(&op, true), Selection { anchor: 1, head: 7 });
        let typed = TextOperation::splice(10, 4, 0, "xyz").unwrap();
        assert_eq!(
            Selection::cursor(4).transform(&typed, true),
            Selection::cursor(7)
        );
        assert_eq!(
            Selection::cursor(4).transform(&typed, false),
            Selection::cursor(4)
        );
        assert_eq!(Selection::cursor(40).clamp(10), Selection::cursor(10));
    }
}
