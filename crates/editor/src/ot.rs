//! Operational transformation on plain text: the one place that knows how edits combine.
//!
//! A [`TextOperation`] is the ot.js model: a list of components that walk the whole document
//! from start to end, each one retaining, inserting or deleting characters. Positions and
//! counts are Unicode scalar values (`char`s), as in the editing traces and ropey. An
//! operation knows the document length it applies to (`base_len`) and the length it
//! produces (`target_len`), so mismatched edits are refused instead of corrupting text.
//!
//! * [`TextOperation::apply`] edits a rope in O(components × log n).
//! * [`TextOperation::compose`]: `apply(compose(a, b)) == apply(b) after apply(a)`; a client
//!   folds its buffered keystrokes into one change with it.
//! * [`transform`]: given `a` and `b` made concurrently on the same text, returns `a'` and
//!   `b'` with `b' after a == a' after b` (TP1). Concurrent inserts at one position are
//!   ordered by the `a_first` flag, which callers derive from client ids, so the server and
//!   every client break the tie the same way. Two deletes of the same range both succeed
//!   and the text loses it once.
//!
//! Everything here is pure: no I/O, no clock.

use ropey::Rope;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// See [`TextOperation::apply`]: rebuild the rope when an operation has at least one
/// insert or delete per this many characters of text.
pub const REBUILD_CHARS_PER_EDIT: usize = 512;

/// One step of an operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Component {
    /// Skip this many characters, leaving them unchanged.
    Retain(usize),
    /// Insert this text at the current position.
    Insert(String),
    /// Remove this many characters at the current position.
    Delete(usize),
}

/// Why an operation could not be applied, composed or transformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OtError {
    #[error("the change expects a document of {expected} characters but it has {actual}")]
    LengthMismatch { expected: usize, actual: usize },
    #[error("the change is longer than any document can be")]
    Overflow,
    #[error("edit at {pos} deletes {len} characters past the end of a document of {doc_len}")]
    OutOfRange {
        pos: usize,
        len: usize,
        doc_len: usize,
    },
}

/// A sequence of retain/insert/delete components covering a whole document.
///
/// Always normalised: no empty components, no two neighbours of the same kind, and an
/// insert never directly follows a delete (it is moved before it). Equal edits therefore
/// compare equal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TextOperation {
    ops: Vec<Component>,
    base_len: usize,
    target_len: usize,
}

fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// Splits `s` after `n` characters (`n` must not exceed its length).
fn split_chars(s: &str, n: usize) -> (&str, &str) {
    let at = s.char_indices().nth(n).map_or(s.len(), |(i, _)| i);
    s.split_at(at)
}

impl TextOperation {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the operation `[pos, del, ins]` (the editing-traces splice) on a document of
    /// `doc_len` characters.
    pub fn splice(doc_len: usize, pos: usize, del: usize, ins: &str) -> Result<Self, OtError> {
        let end = pos.checked_add(del).ok_or(OtError::Overflow)?;
        if end > doc_len {
            return Err(OtError::OutOfRange {
                pos,
                len: del,
                doc_len,
            });
        }
        let mut op = TextOperation::new();
        op.retain(pos);
        op.insert(ins);
        op.delete(del);
        op.retain(doc_len - end);
        Ok(op)
    }

    /// The identity on a document of `len` characters.
    pub fn identity(len: usize) -> Self {
        let mut op = TextOperation::new();
        op.retain(len);
        op
    }

    pub fn components(&self) -> &[Component] {
        &self.ops
    }

    /// Length of the document this operation applies to.
    pub fn base_len(&self) -> usize {
        self.base_len
    }

    /// Length of the document after applying it.
    pub fn target_len(&self) -> usize {
        self.target_len
    }

    /// True when applying it changes nothing.
    pub fn is_noop(&self) -> bool {
        self.ops.iter().all(|c| matches!(c, Component::Retain(_)))
    }

    pub fn retain(&mut self, n: usize) -> &mut Self {
        if n == 0 {
            return self;
        }
        self.base_len = self.base_len.saturating_add(n);
        self.target_len = self.target_len.saturating_add(n);
        if let Some(Component::Retain(last)) = self.ops.last_mut() {
            *last = last.saturating_add(n);
        } else {
            self.ops.push(Component::Retain(n));
        }
        self
    }

    pub fn insert(&mut self, text: &str) -> &mut Self {
        if text.is_empty() {
            return self;
        }
        self.target_len = self.target_len.saturating_add(char_len(text));
        let len = self.ops.len();
        match self.ops.as_mut_slice() {
            [.., Component::Insert(last)] => last.push_str(text),
            [.., Component::Insert(before), Component::Delete(_)] => before.push_str(text),
            [.., Component::Delete(_)] => {
                // Keep inserts before deletes so equal edits have one representation.
                let delete =
                    std::mem::replace(&mut self.ops[len - 1], Component::Insert(text.into()));
                self.ops.push(delete);
            }
            _ => self.ops.push(Component::Insert(text.into())),
        }
        self
    }

    pub fn delete(&mut self, n: usize) -> &mut Self {
        if n == 0 {
            return self;
        }
        self.base_len = self.base_len.saturating_add(n);
        if let Some(Component::Delete(last)) = self.ops.last_mut() {
            *last = last.saturating_add(n);
        } else {
            self.ops.push(Component::Delete(n));
        }
        self
    }

    /// Builds from components received from a peer, normalising them; refuses lengths that
    /// overflow (a hostile peer cannot make later arithmetic wrap).
    pub fn from_components(components: Vec<Component>) -> Result<Self, OtError> {
        let mut op = TextOperation::new();
        let (mut base, mut target) = (0usize, 0usize);
        for c in components {
            match c {
                Component::Retain(n) => {
                    base = base.checked_add(n).ok_or(OtError::Overflow)?;
                    target = target.checked_add(n).ok_or(OtError::Overflow)?;
                    op.retain(n);
                }
                Component::Insert(s) => {
                    target = target.checked_add(char_len(&s)).ok_or(OtError::Overflow)?;
                    op.insert(&s);
                }
                Component::Delete(n) => {
                    base = base.checked_add(n).ok_or(OtError::Overflow)?;
                    op.delete(n);
                }
            }
        }
        Ok(op)
    }

    /// Applies the operation to a rope. An operation with many edits relative to the text
    /// (a composed change from a fast typist or a replay) rebuilds the rope in one pass:
    /// copying the text costs about a nanosecond per character, a rope edit about a
    /// microsecond, so past one edit per [`REBUILD_CHARS_PER_EDIT`] characters the copy wins.
    pub fn apply(&self, rope: &mut Rope) -> Result<(), OtError> {
        self.check_base(rope.len_chars())?;
        let edits = self
            .ops
            .iter()
            .filter(|c| !matches!(c, Component::Retain(_)))
            .count();
        if edits > 16 && edits.saturating_mul(REBUILD_CHARS_PER_EDIT) > rope.len_chars() {
            *rope = self.rebuild(rope);
            return Ok(());
        }
        let mut pos = 0;
        for c in &self.ops {
            match c {
                Component::Retain(n) => pos += n,
                Component::Insert(s) => {
                    rope.insert(pos, s);
                    pos += char_len(s);
                }
                Component::Delete(n) => rope.remove(pos..pos + n),
            }
        }
        Ok(())
    }

    /// The text after the operation, copied chunk by chunk into a new rope.
    fn rebuild(&self, rope: &Rope) -> Rope {
        let mut builder = ropey::RopeBuilder::new();
        let mut chunks = rope.chunks();
        let mut chunk: &str = "";
        for c in &self.ops {
            let (mut left, keep) = match c {
                Component::Insert(s) => {
                    builder.append(s);
                    continue;
                }
                Component::Retain(n) => (*n, true),
                Component::Delete(n) => (*n, false),
            };
            while left > 0 {
                if chunk.is_empty() {
                    match chunks.next() {
                        Some(next) => chunk = next,
                        None => break,
                    }
                    continue;
                }
                let (part, tail) = split_chars(chunk, left);
                if keep {
                    builder.append(part);
                }
                left -= char_len(part);
                chunk = tail;
            }
        }
        builder.finish()
    }

    /// Applies the operation to a string (tests and small documents).
    pub fn apply_str(&self, text: &str) -> Result<String, OtError> {
        self.check_base(char_len(text))?;
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        for c in &self.ops {
            match c {
                Component::Retain(n) => {
                    let (kept, tail) = split_chars(rest, *n);
                    out.push_str(kept);
                    rest = tail;
                }
                Component::Insert(s) => out.push_str(s),
                Component::Delete(n) => rest = split_chars(rest, *n).1,
            }
        }
        Ok(out)
    }

    fn check_base(&self, actual: usize) -> Result<(), OtError> {
        if self.base_len == actual {
            Ok(())
        } else {
            Err(OtError::LengthMismatch {
                expected: self.base_len,
                actual,
            })
        }
    }

    /// The single operation with the effect of `self` followed by `next` (a copy of
    /// `self` run through [`compose_owned`](Self::compose_owned), the one implementation).
    pub fn compose(&self, next: &TextOperation) -> Result<TextOperation, OtError> {
        self.clone().compose_owned(next)
    }
}

impl TextOperation {
    /// [`compose`](Self::compose) that consumes `self` and moves its inserted strings
    /// instead of copying them, so folding keystrokes one by one into a growing buffer
    /// costs O(components), not O(buffered text), per keystroke.
    pub fn compose_owned(self, next: &TextOperation) -> Result<TextOperation, OtError> {
        if self.target_len != next.base_len {
            return Err(OtError::LengthMismatch {
                expected: next.base_len,
                actual: self.target_len,
            });
        }
        let mut out = TextOperation::new();
        out.ops.reserve(self.ops.len() + next.ops.len());
        let mut a_iter = self.ops.into_iter().map(|c| match c {
            Component::Insert(s) => {
                let n = char_len(&s);
                Owned::Insert(s, n)
            }
            Component::Retain(n) => Owned::Retain(n),
            Component::Delete(n) => Owned::Delete(n),
        });
        let mut b_iter = next.ops.iter().map(Head::from);
        let (mut a, mut b) = (a_iter.next(), b_iter.next());
        loop {
            match (a.take(), b) {
                (None, None) => break,
                (Some(Owned::Delete(n)), head) => {
                    out.delete(n);
                    a = a_iter.next();
                    b = head;
                }
                (head, Some(Head::Insert(s, _))) => {
                    out.insert(s);
                    a = head;
                    b = b_iter.next();
                }
                (None, _) | (_, None) => return Err(OtError::Overflow),
                (Some(Owned::Retain(x)), Some(Head::Retain(y))) => {
                    let n = x.min(y);
                    out.retain(n);
                    a = if x > n {
                        Some(Owned::Retain(x - n))
                    } else {
                        a_iter.next()
                    };
                    b = shrink(b, n, &mut b_iter);
                }
                (Some(Owned::Retain(x)), Some(Head::Delete(y))) => {
                    let n = x.min(y);
                    out.delete(n);
                    a = if x > n {
                        Some(Owned::Retain(x - n))
                    } else {
                        a_iter.next()
                    };
                    b = shrink(b, n, &mut b_iter);
                }
                (Some(Owned::Insert(mut s, len)), Some(Head::Delete(y))) => {
                    let n = len.min(y);
                    a = if len > n {
                        let at = s.char_indices().nth(n).map_or(s.len(), |(i, _)| i);
                        s.drain(..at);
                        Some(Owned::Insert(s, len - n))
                    } else {
                        a_iter.next()
                    };
                    b = shrink(b, n, &mut b_iter);
                }
                (Some(Owned::Insert(mut s, len)), Some(Head::Retain(y))) => {
                    let n = len.min(y);
                    if len > n {
                        let at = s.char_indices().nth(n).map_or(s.len(), |(i, _)| i);
                        let rest = s.split_off(at);
                        out.insert_owned(s, n);
                        a = Some(Owned::Insert(rest, len - n));
                    } else {
                        out.insert_owned(s, len);
                        a = a_iter.next();
                    }
                    b = shrink(b, n, &mut b_iter);
                }
            }
        }
        Ok(out)
    }

    /// [`insert`](Self::insert) of an owned string of `chars` characters, without copying
    /// it when it starts a new component.
    fn insert_owned(&mut self, text: String, chars: usize) {
        if text.is_empty() {
            return;
        }
        match self.ops.last() {
            Some(Component::Insert(_)) | Some(Component::Delete(_)) => self.insert(&text),
            _ => {
                self.target_len = self.target_len.saturating_add(chars);
                self.ops.push(Component::Insert(text));
                self
            }
        };
    }
}

/// An owned component being consumed by [`TextOperation::compose_owned`].
enum Owned {
    Retain(usize),
    Insert(String, usize),
    Delete(usize),
}

/// The unconsumed rest of a component while walking two operations side by side.
#[derive(Clone, Copy)]
enum Head<'a> {
    Retain(usize),
    Insert(&'a str, usize),
    Delete(usize),
}

impl<'a> From<&'a Component> for Head<'a> {
    fn from(c: &'a Component) -> Self {
        match c {
            Component::Retain(n) => Head::Retain(*n),
            Component::Insert(s) => Head::Insert(s, char_len(s)),
            Component::Delete(n) => Head::Delete(*n),
        }
    }
}

/// Consumes `n` of a retain or delete head, moving to the next component when it is used up.
fn shrink<'a>(
    head: Option<Head<'a>>,
    n: usize,
    rest: &mut impl Iterator<Item = Head<'a>>,
) -> Option<Head<'a>> {
    match head {
        Some(Head::Retain(x)) if x > n => Some(Head::Retain(x - n)),
        Some(Head::Delete(x)) if x > n => Some(Head::Delete(x - n)),
        _ => rest.next(),
    }
}

/// Transforms two concurrent operations on the same text against each other.
///
/// Returns `(a', b')` such that applying `a` then `b'` equals applying `b` then `a'`. When
/// both insert at the same position, `a`'s text goes first if `a_first`, else `b`'s.
pub fn transform(
    a: &TextOperation,
    b: &TextOperation,
    a_first: bool,
) -> Result<(TextOperation, TextOperation), OtError> {
    if a.base_len != b.base_len {
        return Err(OtError::LengthMismatch {
            expected: a.base_len,
            actual: b.base_len,
        });
    }
    let (mut a2, mut b2) = (TextOperation::new(), TextOperation::new());
    a2.ops.reserve(a.ops.len() + 2);
    b2.ops.reserve(b.ops.len() + 2);
    let mut a_iter = a.ops.iter().map(Head::from);
    let mut b_iter = b.ops.iter().map(Head::from);
    let (mut x, mut y) = (a_iter.next(), b_iter.next());
    loop {
        match (x, y) {
            (None, None) => break,
            (Some(Head::Insert(s, len)), other)
                if a_first || !matches!(other, Some(Head::Insert(..))) =>
            {
                a2.insert(s);
                b2.retain(len);
                x = a_iter.next();
            }
            (_, Some(Head::Insert(s, len))) => {
                a2.retain(len);
                b2.insert(s);
                y = b_iter.next();
            }
            (None, _) | (_, None) | (Some(Head::Insert(..)), _) => return Err(OtError::Overflow),
            (Some(Head::Retain(m)), Some(Head::Retain(n))) => {
                let k = m.min(n);
                a2.retain(k);
                b2.retain(k);
                (x, y) = (shrink(x, k, &mut a_iter), shrink(y, k, &mut b_iter));
            }
            (Some(Head::Delete(m)), Some(Head::Delete(n))) => {
                // Both removed the same characters: nothing is left for either to do.
                let k = m.min(n);
                (x, y) = (shrink(x, k, &mut a_iter), shrink(y, k, &mut b_iter));
            }
            (Some(Head::Delete(m)), Some(Head::Retain(n))) => {
                let k = m.min(n);
                a2.delete(k);
                (x, y) = (shrink(x, k, &mut a_iter), shrink(y, k, &mut b_iter));
            }
            (Some(Head::Retain(m)), Some(Head::Delete(n))) => {
                let k = m.min(n);
                b2.delete(k);
                (x, y) = (shrink(x, k, &mut a_iter), shrink(y, k, &mut b_iter));
            }
        }
    }
    Ok((a2, b2))
}

/// Where character index `index` ends up after `op`. An insert exactly at the index moves
/// it right when `after_inserts` (remote cursors, ot.js behaviour), else leaves it before.
pub fn transform_index(index: usize, op: &TextOperation, after_inserts: bool) -> usize {
    let mut old = 0usize; // position in the old text
    let mut new = 0usize; // the same position in the new text
    for c in &op.ops {
        match c {
            Component::Retain(n) => {
                if index < old + n {
                    return new + (index - old);
                }
                old += n;
                new += n;
            }
            Component::Insert(s) => {
                if index == old && !after_inserts {
                    return new;
                }
                new += char_len(s);
            }
            Component::Delete(n) => {
                if index < old + n {
                    return new;
                }
                old += n;
            }
        }
    }
    new + index.saturating_sub(old)
}

impl Serialize for TextOperation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.ops.serialize(serializer)
    }
}

/// Most components an operation may have on the wire. Decoding costs memory per
/// component (about 40 bytes, more than the byte or two each takes in a frame), so without
/// a bound one 8 MiB frame of one-character components would cost 200 MB to decode. Real
/// edits, even composed while waiting for an acknowledgement, have far fewer.
pub const MAX_COMPONENTS: usize = 250_000;

impl<'de> Deserialize<'de> for TextOperation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let components = deserializer.deserialize_seq(BoundedComponents)?;
        TextOperation::from_components(components).map_err(serde::de::Error::custom)
    }
}

/// Decodes a component list, refusing it as soon as it is longer than [`MAX_COMPONENTS`]
/// (postcard announces the length first, so before any component is decoded).
struct BoundedComponents;

impl<'de> serde::de::Visitor<'de> for BoundedComponents {
    type Value = Vec<Component>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a list of at most {MAX_COMPONENTS} components")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let too_many = |n: usize| {
            <A::Error as serde::de::Error>::custom(format!(
                "operation of {n} components exceeds the limit of {MAX_COMPONENTS}"
            ))
        };
        let announced = seq.size_hint().unwrap_or(0);
        if announced > MAX_COMPONENTS {
            return Err(too_many(announced));
        }
        let mut components = Vec::with_capacity(announced.min(4096));
        while let Some(component) = seq.next_element()? {
            if components.len() == MAX_COMPONENTS {
                return Err(too_many(MAX_COMPONENTS + 1));
            }
            components.push(component);
        }
        Ok(components)
    }
}

#[cfg(test)]
mod wire_tests {
    use super::*;

    #[test]
    fn an_operation_with_too_many_components_is_refused_before_decoding_them() {
        let ok = TextOperation::from_components(vec![Component::Retain(1); 1]).unwrap();
        let bytes = postcard::to_stdvec(&ok).unwrap();
        assert_eq!(postcard::from_bytes::<TextOperation>(&bytes).unwrap(), ok);
        // MAX_COMPONENTS + 1 one-character retains: refused on the count.
        let mut hostile = Vec::new();
        let mut n = MAX_COMPONENTS as u64 + 1;
        while n >= 0x80 {
            hostile.push((n as u8) | 0x80);
            n >>= 7;
        }
        hostile.push(n as u8);
        let one = postcard::to_stdvec(&Component::Retain(1)).unwrap();
        for _ in 0..=MAX_COMPONENTS {
            hostile.extend_from_slice(&one);
        }
        let err = postcard::from_bytes::<TextOperation>(&hostile).unwrap_err();
        assert!(matches!(err, postcard::Error::SerdeDeCustom), "{err:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(doc: &str, pos: usize, del: usize, ins: &str) -> TextOperation {
        TextOperation::splice(doc.chars().count(), pos, del, ins).unwrap()
    }

    #[test]
    fn splice_applies_to_rope_and_string() {
        let o = op("héllo", 1, 2, "EY");
        assert_eq!(o.apply_str("héllo").unwrap(), "hEYlo");
        let mut rope = Rope::from_str("héllo");
        o.apply(&mut rope).unwrap();
        assert_eq!(rope.to_string(), "hEYlo");
    }

    #[test]
    fn many_edits_rebuild_the_rope_with_the_same_result() {
        // Multi-byte text across several rope chunks; 200 scattered edits.
        let text: String = (0..3000).map(|i| format!("é{i}漢\n")).collect();
        let len = text.chars().count();
        let mut o = TextOperation::new();
        let mut at = 0;
        for i in 0..200 {
            o.retain(37);
            if i % 2 == 0 {
                o.delete(3);
            } else {
                o.insert("ünï");
            }
            at += 37 + if i % 2 == 0 { 3 } else { 0 };
        }
        o.retain(len - at);
        assert!(200 * REBUILD_CHARS_PER_EDIT > len);
        let mut rope = Rope::from_str(&text);
        o.apply(&mut rope).unwrap();
        assert_eq!(rope.to_string(), o.apply_str(&text).unwrap());
        let mut whole = Rope::from_str(&text);
        TextOperation::splice(len, 0, len, "")
            .unwrap()
            .apply(&mut whole)
            .unwrap();
        assert_eq!(whole.len_chars(), 0);
    }

    #[test]
    fn wrong_length_is_refused() {
        let o = op("abc", 0, 1, "");
        assert!(matches!(
            o.apply_str("abcd"),
            Err(OtError::LengthMismatch {
                expected: 3,
                actual: 4
            })
        ));
        assert!(TextOperation::splice(3, 2, 2, "").is_err());
    }

    #[test]
    fn insert_moves_before_delete() {
        let mut a = TextOperation::new();
        a.retain(1).delete(2).insert("x");
        let mut b = TextOperation::new();
        b.retain(1).insert("x").delete(2);
        assert_eq!(a, b);
    }

    #[test]
    fn tie_break_follows_the_flag() {
        let a = op("ab", 1, 0, "X");
        let b = op("ab", 1, 0, "Y");
        for a_first in [true, false] {
            let (a2, b2) = transform(&a, &b, a_first).unwrap();
            let left = b2.apply_str(&a.apply_str("ab").unwrap()).unwrap();
            let right = a2.apply_str(&b.apply_str("ab").unwrap()).unwrap();
            assert_eq!(left, right);
            assert_eq!(left, if a_first { "aXYb" } else { "aYXb" });
        }
    }

    #[test]
    fn double_delete_is_harmless() {
        let a = op("abcdef", 1, 3, "");
        let b = op("abcdef", 2, 3, "");
        let (a2, b2) = transform(&a, &b, true).unwrap();
        assert_eq!(b2.apply_str(&a.apply_str("abcdef").unwrap()).unwrap(), "af");
        assert_eq!(a2.apply_str(&b.apply_str("abcdef").unwrap()).unwrap(), "af");
    }

    #[test]
    fn hostile_lengths_overflow_cleanly() {
        let comps = vec![Component::Retain(usize::MAX), Component::Delete(5)];
        assert_eq!(
            TextOperation::from_components(comps),
            Err(OtError::Overflow)
        );
    }

    #[test]
    fn compose_is_one_then_the_other() {
        let doc = "héllo wörld";
        let a = op(doc, 2, 3, "ABCDÉ");
        let mid = a.apply_str(doc).unwrap();
        for (pos, del, ins) in [
            (0, 0, "x"),
            (3, 2, "yz"),
            (4, 5, ""),
            (7, 0, "end"),
            (2, 5, ""),
        ] {
            let b = op(&mid, pos, del, ins);
            let composed = a.compose(&b).unwrap();
            assert_eq!(
                composed.apply_str(doc).unwrap(),
                b.apply_str(&mid).unwrap(),
                "{a:?} then {b:?}"
            );
            assert_eq!(
                (composed.base_len(), composed.target_len()),
                (a.base_len(), b.target_len())
            );
        }
    }

    #[test]
    fn index_transform() {
        let o = op("abcdef", 2, 2, "XYZ"); // ab XYZ ef
        assert_eq!(transform_index(0, &o, true), 0);
        assert_eq!(transform_index(2, &o, true), 5);
        assert_eq!(transform_index(2, &o, false), 2);
        assert_eq!(transform_index(3, &o, true), 5);
        assert_eq!(transform_index(4, &o, true), 5);
        assert_eq!(transform_index(6, &o, true), 7);
    }
}
