//! What line mode prints when others edit: each changed line once it has settled,
//! `Document updated (line 3, alice): Hi there`, and `Document updated: line 4 deleted
//! (alice)` for a removed line. Pure: the caller says when changes arrive and when it is
//! time; this module keeps the text as last reported and compares.
//!
//! Printing each remote change as it comes (one line per keystroke of a full-screen
//! writer, blank lines for spaces) is unreadable, so changes are collected until the
//! document has been quiet for [`SETTLE`] (or for at most [`MAX_DELAY`] while someone
//! types without a pause), then the lines that differ from the last report are printed.
//! The comparison is a line diff (the `similar` crate, a well-kept Myers implementation
//! with a time limit) of the last reported text against the current one, so keystrokes on
//! one line coalesce into that line and edits far apart are reported apart.

use std::time::{Duration, Instant};

use ropey::Rope;
use similar::{Algorithm, DiffOp};

/// Quiet time after the last remote change before its lines are reported.
pub const SETTLE: Duration = Duration::from_millis(300);
/// Longest a change waits for a report while changes keep coming.
pub const MAX_DELAY: Duration = Duration::from_secs(2);
/// Time the line diff may take before it settles for a coarser answer.
const DIFF_BUDGET: Duration = Duration::from_millis(100);

/// Remote changes not yet reported, against the text as last reported.
#[derive(Debug)]
pub struct LineUpdates {
    reported: Rope,
    authors: Vec<String>,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl LineUpdates {
    /// Starts from `text` as the user has seen it.
    pub fn new(text: &Rope) -> Self {
        LineUpdates {
            reported: text.clone(),
            authors: Vec::new(),
            first: None,
            last: None,
        }
    }

    /// A remote change by `author` (a display name) was applied at `now`.
    pub fn remote_change(&mut self, author: &str, now: Instant) {
        if !self.authors.iter().any(|a| a == author) {
            self.authors.push(author.to_owned());
        }
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// When the pending changes are due to be reported; None when nothing is pending.
    pub fn due(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        Some((last + SETTLE).min(first + MAX_DELAY))
    }

    /// The report lines for everything since the last report (empty when the changes
    /// cancelled out), and `text` becomes the new baseline.
    pub fn report(&mut self, text: &Rope) -> Vec<String> {
        if self.first.is_none() {
            self.reported = text.clone();
            return Vec::new();
        }
        let who = self.authors.join(", ");
        let old = self.reported.to_string();
        let new = text.to_string();
        let lines = describe(&old, &new, &who);
        self.reported = text.clone();
        self.authors.clear();
        self.first = None;
        self.last = None;
        lines
    }

    /// Our own edit (or a reset to the server's copy) changed the text: it becomes the
    /// baseline. Report pending remote changes first, or they are folded into it.
    pub fn rebase(&mut self, text: &Rope) {
        self.reported = text.clone();
    }
}

/// The report lines for the difference between two texts.
fn describe(old: &str, new: &str, who: &str) -> Vec<String> {
    let old_lines: Vec<&str> = old.split_inclusive('\n').collect();
    let new_lines: Vec<&str> = new.split_inclusive('\n').collect();
    let ops = similar::capture_diff_slices_deadline(
        Algorithm::Myers,
        &old_lines,
        &new_lines,
        Some(Instant::now() + DIFF_BUDGET),
    );
    let mut out = Vec::new();
    for op in ops {
        match op {
            DiffOp::Equal { .. } => {}
            DiffOp::Insert {
                new_index, new_len, ..
            } => updated(&mut out, &new_lines, new_index, new_len, who),
            DiffOp::Delete {
                old_index, old_len, ..
            } => deleted(&mut out, old_index, old_len, who),
            DiffOp::Replace {
                old_index,
                old_len,
                new_index,
                new_len,
            } => {
                updated(&mut out, &new_lines, new_index, new_len, who);
                if old_len > new_len {
                    deleted(&mut out, old_index + new_len, old_len - new_len, who);
                }
            }
        }
    }
    out
}

fn updated(out: &mut Vec<String>, lines: &[&str], start: usize, len: usize, who: &str) {
    for (i, line) in lines.iter().enumerate().skip(start).take(len) {
        let text = line.strip_suffix('\n').unwrap_or(line);
        let text = text.strip_suffix('\r').unwrap_or(text);
        out.push(format!("Document updated (line {}, {who}): {text}", i + 1));
    }
}

/// Deleted lines, numbered as they were before the change.
fn deleted(out: &mut Vec<String>, start: usize, len: usize, who: &str) {
    out.push(match len {
        1 => format!("Document updated: line {} deleted ({who})", start + 1),
        _ => format!(
            "Document updated: lines {}-{} deleted ({who})",
            start + 1,
            start + len
        ),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_after(old: &str, edits: &[(&str, &str)]) -> Vec<String> {
        let mut updates = LineUpdates::new(&Rope::from_str(old));
        let start = Instant::now();
        let mut text = String::new();
        for (i, (author, after)) in edits.iter().enumerate() {
            updates.remote_change(author, start + Duration::from_millis(i as u64));
            text = (*after).to_owned();
        }
        updates.report(&Rope::from_str(&text))
    }

    #[test]
    fn keystrokes_on_one_line_are_one_update_with_its_number() {
        let typed: Vec<(&str, &str)> = vec![
            ("alice", "a\nb\nH"),
            ("alice", "a\nb\nHi"),
            ("alice", "a\nb\nHi "),
            ("alice", "a\nb\nHi there\n"),
        ];
        assert_eq!(
            report_after("a\nb\n", &typed),
            ["Document updated (line 3, alice): Hi there"]
        );
    }

    #[test]
    fn a_paste_of_several_lines_prefixes_every_line() {
        assert_eq!(
            report_after("a\n", &[("bob", "a\none\ntwo\n")]),
            [
                "Document updated (line 2, bob): one",
                "Document updated (line 3, bob): two"
            ]
        );
    }

    #[test]
    fn deleted_lines_are_named_by_their_former_number() {
        assert_eq!(
            report_after("1\n2\n3\n4\n5\n", &[("carol", "1\n2\n3\n5\n")]),
            ["Document updated: line 4 deleted (carol)"]
        );
        assert_eq!(
            report_after("1\n2\n3\n4\n5\n", &[("carol", "1\n5\n")]),
            ["Document updated: lines 2-4 deleted (carol)"]
        );
    }

    #[test]
    fn edits_far_apart_are_reported_apart_and_authors_are_listed() {
        let old = "1\n2\n3\n4\n5\n6\n";
        assert_eq!(
            report_after(
                old,
                &[("a", "1\nx\n3\n4\n5\n6\n"), ("b", "1\nx\n3\n4\n5\ny\n")]
            ),
            [
                "Document updated (line 2, a, b): x",
                "Document updated (line 6, a, b): y"
            ]
        );
    }

    #[test]
    fn changes_that_cancel_out_print_nothing_and_nothing_is_due_after_a_report() {
        let mut updates = LineUpdates::new(&Rope::from_str("a\n"));
        assert_eq!(updates.due(), None);
        updates.remote_change("a", Instant::now());
        assert!(updates.due().is_some());
        assert!(updates.report(&Rope::from_str("a\n")).is_empty());
        assert_eq!(updates.due(), None);
    }

    #[test]
    fn a_steady_typist_is_reported_after_the_longest_delay() {
        let mut updates = LineUpdates::new(&Rope::new());
        let start = Instant::now();
        updates.remote_change("a", start);
        assert_eq!(updates.due(), Some(start + SETTLE));
        let later = start + MAX_DELAY - Duration::from_millis(10);
        updates.remote_change("a", later);
        assert_eq!(updates.due(), Some(start + MAX_DELAY));
    }
}
