//! The full-screen editor's model, pure and unit-tested: the local cursor, scrolling,
//! grapheme and display-width arithmetic, and keys turned into edits.
//!
//! Positions are character (Unicode scalar value) indices into the text, as in the
//! protocol. What the user sees and moves over are grapheme clusters (an emoji with a skin
//! tone, a letter with combining accents, `\r\n`), each occupying its display width in
//! terminal cells (two for CJK and most emoji, [`TAB_WIDTH`] for a tab). Lines are never
//! wrapped; the view scrolls sideways to keep the cursor visible.
//!
//! The view keeps its own cursor; remote edits move it the way the sync state machine
//! moves a selection (text inserted exactly at the cursor stays after it), so its logical
//! position, between the same two characters, never changes under someone else's typing.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ropey::Rope;
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

use crate::ot::{transform_index, TextOperation};

/// Cells a tab takes (tabs are shown as spaces, not aligned to stops, so that a column is
/// a property of the text before it on its line alone).
pub const TAB_WIDTH: usize = 4;

/// What a key or paste asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Insert(String),
    Backspace,
    Delete,
    Left,
    Right,
    Up,
    Down,
    Home,
    End,
    PageUp,
    PageDown,
    DocStart,
    DocEnd,
    Quit,
}

/// The action for a key press, if any.
pub fn action_for_key(key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    Some(match key.code {
        KeyCode::Char('q' | 'Q' | 'c' | 'C') if ctrl => Action::Quit,
        KeyCode::Char(_) if ctrl || alt => return None,
        KeyCode::Char(c) => Action::Insert(c.to_string()),
        KeyCode::Enter => Action::Insert("\n".to_owned()),
        KeyCode::Tab => Action::Insert("\t".to_owned()),
        KeyCode::Backspace => Action::Backspace,
        KeyCode::Delete => Action::Delete,
        KeyCode::Left => Action::Left,
        KeyCode::Right => Action::Right,
        KeyCode::Up => Action::Up,
        KeyCode::Down => Action::Down,
        KeyCode::Home if ctrl => Action::DocStart,
        KeyCode::End if ctrl => Action::DocEnd,
        KeyCode::Home => Action::Home,
        KeyCode::End => Action::End,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        _ => return None,
    })
}

/// A bracketed paste: inserted as typed, line breaks normalised to `\n`.
pub fn action_for_paste(text: &str) -> Action {
    Action::Insert(text.replace("\r\n", "\n").replace('\r', "\n"))
}

/// An edit the view asks for: delete `del` characters at `pos`, then insert `ins` there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edit {
    pub pos: usize,
    pub del: usize,
    pub ins: String,
}

/// One grapheme of a line: where it starts (characters from the line start), how many
/// characters it has and how many cells it takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grapheme {
    pub start: usize,
    pub chars: usize,
    pub width: usize,
    pub text: String,
}

impl Grapheme {
    /// What to draw: tabs as spaces, control characters as `?`, zero-width clusters (a
    /// lone combining mark) as a space so every cluster owns at least one cell.
    pub fn symbol(&self) -> String {
        if self.text == "\t" {
            " ".repeat(TAB_WIDTH)
        } else if self.text.chars().any(char::is_control) {
            "?".to_owned()
        } else if self.text.width() == 0 {
            " ".to_owned()
        } else {
            self.text.clone()
        }
    }
}

/// Cells a grapheme cluster takes on screen.
pub fn grapheme_width(g: &str) -> usize {
    if g == "\t" {
        TAB_WIDTH
    } else if g.chars().any(char::is_control) {
        1
    } else {
        g.width().max(1)
    }
}

fn is_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r' | '\u{000B}' | '\u{000C}' | '\u{0085}' | '\u{2028}' | '\u{2029}'
    )
}

/// Characters of line `line` without its line break.
pub fn content_len(text: &Rope, line: usize) -> usize {
    let l = text.line(line);
    let mut n = l.len_chars();
    if n > 0 && is_break(l.char(n - 1)) {
        n -= 1;
        if n > 0 && l.char(n) == '\n' && l.char(n - 1) == '\r' {
            n -= 1;
        }
    }
    n
}

/// The graphemes of line `line`, without its line break.
pub fn line_graphemes(text: &Rope, line: usize) -> Vec<Grapheme> {
    let l = text.line(line);
    let content: String = l.slice(..content_len(text, line)).to_string();
    let mut out = Vec::new();
    let mut start = 0;
    for g in content.graphemes(true) {
        let chars = g.chars().count();
        out.push(Grapheme {
            start,
            chars,
            width: grapheme_width(g),
            text: g.to_owned(),
        });
        start += chars;
    }
    out
}

/// Display column of character offset `offset` in a line (inside a cluster: its start).
pub fn column_of(graphemes: &[Grapheme], offset: usize) -> usize {
    graphemes
        .iter()
        .take_while(|g| g.start + g.chars <= offset)
        .map(|g| g.width)
        .sum()
}

/// The character offset in a line closest to display column `col` without passing it.
pub fn offset_at_column(graphemes: &[Grapheme], col: usize) -> usize {
    let mut x = 0;
    for g in graphemes {
        if x + g.width > col {
            return g.start;
        }
        x += g.width;
    }
    graphemes.last().map_or(0, |g| g.start + g.chars)
}

/// The cursor and what part of the text is on screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    cursor: usize,
    /// Column that up/down moves aim for (kept across short lines).
    goal: Option<usize>,
    /// Character index of the first shown line's start.
    top: usize,
    /// First shown display column.
    left: usize,
    width: usize,
    height: usize,
}

impl View {
    /// A view of `width` x `height` cells of text, cursor at the start.
    pub fn new(width: u16, height: u16) -> Self {
        View {
            cursor: 0,
            goal: None,
            top: 0,
            left: 0,
            width: usize::from(width).max(1),
            height: usize::from(height).max(1),
        }
    }

    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// First visible line.
    pub fn top_line(&self, text: &Rope) -> usize {
        text.char_to_line(self.top.min(text.len_chars()))
    }

    pub fn left(&self) -> usize {
        self.left
    }

    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// The terminal was resized (text area, without the status line).
    pub fn resize(&mut self, width: u16, height: u16, text: &Rope) {
        self.width = usize::from(width).max(1);
        self.height = usize::from(height).max(1);
        self.scroll_into_view(text);
    }

    /// Puts the cursor at `pos` (clamped) and scrolls to it.
    pub fn set_cursor(&mut self, pos: usize, text: &Rope) {
        self.cursor = pos.min(text.len_chars());
        self.goal = None;
        self.scroll_into_view(text);
    }

    /// (line, column) of the cursor.
    pub fn cursor_line_col(&self, text: &Rope) -> (usize, usize) {
        line_col(text, self.cursor)
    }

    /// Screen cell (x, y) of the cursor inside the text area.
    pub fn cursor_cell(&self, text: &Rope) -> (usize, usize) {
        let (line, col) = self.cursor_line_col(text);
        (
            col.saturating_sub(self.left),
            line.saturating_sub(self.top_line(text)),
        )
    }

    /// Performs a movement, or returns the edit for an editing action (the cursor is
    /// already where it belongs once the edit is applied). The caller applies the edit to
    /// the text and then calls [`View::scroll_into_view`].
    pub fn apply(&mut self, action: &Action, text: &Rope) -> Option<Edit> {
        let len = text.len_chars();
        self.cursor = self.cursor.min(len);
        let (line, offset) = line_offset(text, self.cursor);
        let line_start = text.line_to_char(line);
        let content = content_len(text, line);
        let vertical = matches!(
            action,
            Action::Up | Action::Down | Action::PageUp | Action::PageDown
        );
        if !vertical {
            self.goal = None;
        }
        let mut edit = None;
        match action {
            Action::Quit => {}
            Action::Insert(s) => {
                if !s.is_empty() {
                    edit = Some(Edit {
                        pos: self.cursor,
                        del: 0,
                        ins: s.clone(),
                    });
                    self.cursor += s.chars().count();
                }
            }
            Action::Backspace => {
                if self.cursor == 0 {
                } else if offset == 0 {
                    let prev = line - 1;
                    let prev_end = text.line_to_char(prev) + content_len(text, prev);
                    edit = Some(Edit {
                        pos: prev_end,
                        del: self.cursor - prev_end,
                        ins: String::new(),
                    });
                    self.cursor = prev_end;
                } else {
                    let from = grapheme_before(text, line, offset);
                    edit = Some(Edit {
                        pos: line_start + from,
                        del: offset - from,
                        ins: String::new(),
                    });
                    self.cursor = line_start + from;
                }
            }
            Action::Delete => {
                if offset >= content {
                    let next_start = if line + 1 < text.len_lines() {
                        text.line_to_char(line + 1)
                    } else {
                        len
                    };
                    if next_start > self.cursor {
                        edit = Some(Edit {
                            pos: self.cursor,
                            del: next_start - self.cursor,
                            ins: String::new(),
                        });
                    }
                } else {
                    let to = grapheme_after(text, line, offset, content);
                    edit = Some(Edit {
                        pos: self.cursor,
                        del: to - offset,
                        ins: String::new(),
                    });
                }
            }
            Action::Left => {
                if offset == 0 {
                    if line > 0 {
                        self.cursor = text.line_to_char(line - 1) + content_len(text, line - 1);
                    }
                } else {
                    self.cursor = line_start + grapheme_before(text, line, offset);
                }
            }
            Action::Right => {
                if offset >= content {
                    if line + 1 < text.len_lines() {
                        self.cursor = text.line_to_char(line + 1);
                    }
                } else {
                    self.cursor = line_start + grapheme_after(text, line, offset, content);
                }
            }
            Action::Home => self.cursor = line_start,
            Action::End => self.cursor = line_start + content,
            Action::DocStart => self.cursor = 0,
            Action::DocEnd => self.cursor = len,
            Action::Up => self.vertical(text, line, offset, -1),
            Action::Down => self.vertical(text, line, offset, 1),
            Action::PageUp | Action::PageDown => {
                let page = self.height.saturating_sub(1).max(1) as isize;
                let dir = if *action == Action::PageUp {
                    -page
                } else {
                    page
                };
                let top_line = self.top_line(text) as isize;
                let last = text.len_lines().saturating_sub(1) as isize;
                let new_top = (top_line + dir).clamp(0, last) as usize;
                self.top = text.line_to_char(new_top);
                self.vertical(text, line, offset, dir);
            }
        }
        edit
    }

    fn vertical(&mut self, text: &Rope, line: usize, offset: usize, by: isize) {
        let gs = line_graphemes(text, line);
        let goal = *self.goal.get_or_insert_with(|| column_of(&gs, offset));
        let last = text.len_lines().saturating_sub(1) as isize;
        let target = (line as isize + by).clamp(0, last) as usize;
        if target == line {
            // First or last line: go to its start or end, as most editors do.
            self.cursor = if by < 0 {
                0
            } else {
                text.line_to_char(line) + content_len(text, line)
            };
            return;
        }
        let tg = line_graphemes(text, target);
        self.cursor = text.line_to_char(target) + offset_at_column(&tg, goal);
    }

    /// A remote change (in local coordinates) was applied to the text: the cursor keeps
    /// its place between the same characters; lines inserted above the first shown line
    /// do not scroll the view, lines inserted right at it are shown.
    pub fn remote(&mut self, op: &TextOperation, text: &Rope) {
        self.cursor = transform_index(self.cursor, op, false).min(text.len_chars());
        self.top = transform_index(self.top, op, false).min(text.len_chars());
        self.scroll_into_view(text);
    }

    /// The whole text was replaced (a snapshot): keep the cursor's index if it still fits.
    pub fn reset(&mut self, text: &Rope) {
        self.cursor = self.cursor.min(text.len_chars());
        self.top = self.top.min(text.len_chars());
        self.goal = None;
        self.scroll_into_view(text);
    }

    /// Scrolls the least needed to show the cursor.
    pub fn scroll_into_view(&mut self, text: &Rope) {
        self.cursor = self.cursor.min(text.len_chars());
        let mut top_line = self.top_line(text);
        let (line, col) = line_col(text, self.cursor);
        if line < top_line {
            top_line = line;
        } else if line >= top_line + self.height {
            top_line = line + 1 - self.height;
        }
        self.top = text.line_to_char(top_line);
        let gs = line_graphemes(text, line);
        let (_, offset) = line_offset(text, self.cursor);
        let cell = gs
            .iter()
            .find(|g| g.start + g.chars > offset)
            .map_or(1, |g| g.width);
        // A view scrolled sideways shows `<` in its first cell and `>` in its last on
        // lines that go on beyond them (see [`scroll_markers`]); the cursor is kept off
        // those cells, except at the very start or end of its line where no marker is
        // drawn.
        let line_width: usize = gs.iter().map(|g| g.width).sum();
        let more_after = line_width > col + cell;
        let right = col + cell + usize::from(more_after);
        if col < self.left + usize::from(self.left > 0) {
            self.left = col.saturating_sub(1);
        } else if right > self.left + self.width {
            self.left = right.saturating_sub(self.width);
        }
    }
}

/// Whether a line `line_width` cells wide, shown from display column `left` in `width`
/// cells, has text hidden to the left (`<` in its first cell) and to the right (`>` in
/// its last), as nano marks lines scrolled sideways.
pub fn scroll_markers(line_width: usize, left: usize, width: usize) -> (bool, bool) {
    (left > 0 && line_width > 0, line_width > left + width)
}

/// (line, character offset within the line) of `pos`, the offset capped at the content
/// (a position between `\r` and `\n` counts as the line's end).
/// Where the grapheme before `offset` on `line` starts (Backspace and Left step over
/// whole clusters).
fn grapheme_before(text: &Rope, line: usize, offset: usize) -> usize {
    line_graphemes(text, line)
        .iter()
        .rev()
        .find(|g| g.start < offset)
        .map_or(0, |g| g.start)
}

/// Where the grapheme at `offset` on `line` ends, or `content` (the line's length) past
/// the last one (Delete and Right).
fn grapheme_after(text: &Rope, line: usize, offset: usize, content: usize) -> usize {
    line_graphemes(text, line)
        .iter()
        .find(|g| g.start + g.chars > offset)
        .map_or(content, |g| g.start + g.chars)
}

fn line_offset(text: &Rope, pos: usize) -> (usize, usize) {
    let line = text.char_to_line(pos);
    let offset = (pos - text.line_to_char(line)).min(content_len(text, line));
    (line, offset)
}

/// (line, display column) of character position `pos`.
pub fn line_col(text: &Rope, pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len_chars());
    let (line, offset) = line_offset(text, pos);
    (line, column_of(&line_graphemes(text, line), offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::KeyEventState;

    fn key(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent {
            code,
            modifiers,
            kind: KeyEventKind::Press,
            state: KeyEventState::NONE,
        }
    }

    /// Applies actions to a text the way the front end does; returns the text.
    fn run(text: &str, cursor: usize, actions: &[Action]) -> (String, View) {
        let mut rope = Rope::from_str(text);
        let mut view = View::new(20, 5);
        view.set_cursor(cursor, &rope);
        for a in actions {
            if let Some(e) = view.apply(a, &rope) {
                rope.remove(e.pos..e.pos + e.del);
                rope.insert(e.pos, &e.ins);
            }
            view.scroll_into_view(&rope);
        }
        (rope.to_string(), view)
    }

    #[test]
    fn keys_map_to_actions() {
        let none = KeyModifiers::NONE;
        assert_eq!(
            action_for_key(key(KeyCode::Char('x'), none)),
            Some(Action::Insert("x".into()))
        );
        assert_eq!(
            action_for_key(key(KeyCode::Char('X'), KeyModifiers::SHIFT)),
            Some(Action::Insert("X".into()))
        );
        assert_eq!(
            action_for_key(key(KeyCode::Char('q'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(
            action_for_key(key(KeyCode::Char('w'), KeyModifiers::CONTROL)),
            None
        );
        assert_eq!(
            action_for_key(key(KeyCode::Home, KeyModifiers::CONTROL)),
            Some(Action::DocStart)
        );
        assert_eq!(
            action_for_key(key(KeyCode::End, KeyModifiers::CONTROL)),
            Some(Action::DocEnd)
        );
        assert_eq!(
            action_for_key(key(KeyCode::Enter, none)),
            Some(Action::Insert("\n".into()))
        );
        let mut release = key(KeyCode::Char('x'), none);
        release.kind = KeyEventKind::Release;
        assert_eq!(action_for_key(release), None);
        assert_eq!(
            action_for_paste("a\r\nb\rc\n"),
            Action::Insert("a\nb\nc\n".into())
        );
    }

    #[test]
    fn typing_enter_and_backspace() {
        let (t, v) = run(
            "",
            0,
            &[
                Action::Insert("h".into()),
                Action::Insert("i".into()),
                Action::Insert("\n".into()),
                Action::Insert("x".into()),
            ],
        );
        assert_eq!(t, "hi\nx");
        assert_eq!(v.cursor(), 4);
        let (t, v) = run("hi\nx", 4, &[Action::Backspace, Action::Backspace]);
        assert_eq!(t, "hi");
        assert_eq!(v.cursor(), 2);
        let (t, _) = run("ab\r\ncd", 4, &[Action::Backspace]);
        assert_eq!(
            t, "abcd",
            "backspace at a line start removes a whole \\r\\n"
        );
        let (t, _) = run("ab\ncd", 2, &[Action::Delete]);
        assert_eq!(t, "abcd");
        let (t, _) = run("ab", 2, &[Action::Delete]);
        assert_eq!(t, "ab");
        let (t, _) = run("ab", 0, &[Action::Backspace]);
        assert_eq!(t, "ab");
    }

    #[test]
    fn graphemes_move_and_delete_as_one() {
        // e + combining acute, a family emoji (ZWJ sequence), a thumbs up with skin tone.
        let text = "e\u{301}👨\u{200d}👩\u{200d}👧👍🏽z";
        let (_, v) = run(text, 0, &[Action::Right]);
        assert_eq!(v.cursor(), 2);
        let (_, v) = run(text, 0, &[Action::Right, Action::Right]);
        assert_eq!(v.cursor(), 7);
        let (_, v) = run(text, 0, &[Action::Right, Action::Right, Action::Right]);
        assert_eq!(v.cursor(), 9);
        let (t, v) = run(text, 9, &[Action::Backspace]);
        assert_eq!(t, "e\u{301}👨\u{200d}👩\u{200d}👧z");
        assert_eq!(v.cursor(), 7);
        let (t, _) = run(text, 0, &[Action::Delete]);
        assert_eq!(t, "👨\u{200d}👩\u{200d}👧👍🏽z");
        let (_, v) = run(text, 10, &[Action::Left, Action::Left]);
        assert_eq!(v.cursor(), 7);
    }

    #[test]
    fn columns_count_display_width() {
        let rope = Rope::from_str("漢字ab\te\u{301}x\n");
        let gs = line_graphemes(&rope, 0);
        let widths: Vec<usize> = gs.iter().map(|g| g.width).collect();
        assert_eq!(widths, [2, 2, 1, 1, TAB_WIDTH, 1, 1]);
        assert_eq!(line_col(&rope, 2), (0, 4));
        assert_eq!(line_col(&rope, 5), (0, 6 + TAB_WIDTH));
        // Inside a cluster the cursor is shown at its start.
        assert_eq!(line_col(&rope, 6), (0, 6 + TAB_WIDTH));
        assert_eq!(line_col(&rope, 7), (0, 7 + TAB_WIDTH));
        assert_eq!(offset_at_column(&gs, 1), 0);
        assert_eq!(offset_at_column(&gs, 3), 1);
        assert_eq!(offset_at_column(&gs, 99), 8);
    }

    #[test]
    fn up_and_down_keep_the_goal_column() {
        let text = "abcdef\n漢字漢字\nab\nabcdef";
        // From column 5 on line 0: line 1 has cells 0,2,4,6 -> the cluster covering
        // column 5 starts at 4 (char 2); line 2 is short; line 3 goes back to column 5.
        let (_, v) = run(text, 5, &[Action::Down]);
        assert_eq!(v.cursor(), 7 + 2);
        let (_, v) = run(text, 5, &[Action::Down, Action::Down]);
        assert_eq!(v.cursor(), 12 + 2);
        let (_, v) = run(text, 5, &[Action::Down, Action::Down, Action::Down]);
        assert_eq!(v.cursor(), 15 + 5);
        let (_, v) = run(text, 5, &[Action::Up]);
        assert_eq!(v.cursor(), 0);
        let (_, v) = run(text, 20, &[Action::Down]);
        assert_eq!(v.cursor(), 21);
        let (_, v) = run(text, 3, &[Action::End, Action::Home]);
        assert_eq!(v.cursor(), 0);
        let (_, v) = run(text, 3, &[Action::DocEnd]);
        assert_eq!(v.cursor(), 21);
        let (_, v) = run(text, 9, &[Action::DocStart]);
        assert_eq!(v.cursor(), 0);
    }

    #[test]
    fn scrolling_follows_the_cursor() {
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let rope = Rope::from_str(&text);
        let mut view = View::new(20, 5);
        view.set_cursor(0, &rope);
        for _ in 0..7 {
            view.apply(&Action::Down, &rope);
            view.scroll_into_view(&rope);
        }
        assert_eq!(view.top_line(&rope), 3);
        assert_eq!(view.cursor_cell(&rope), (0, 4));
        view.apply(&Action::PageDown, &rope);
        view.scroll_into_view(&rope);
        assert_eq!(view.cursor_line_col(&rope).0, 11);
        assert_eq!(view.top_line(&rope), 7);
        view.apply(&Action::PageUp, &rope);
        view.scroll_into_view(&rope);
        assert_eq!(view.cursor_line_col(&rope).0, 7);
        view.apply(&Action::DocEnd, &rope);
        view.scroll_into_view(&rope);
        assert_eq!(view.top_line(&rope), 96);
        // Sideways on a long line.
        let long = Rope::from_str(&"x".repeat(50));
        let mut view = View::new(20, 5);
        view.set_cursor(50, &long);
        assert_eq!(view.left(), 31);
        assert_eq!(view.cursor_cell(&long), (19, 0));
        view.apply(&Action::Home, &long);
        view.scroll_into_view(&long);
        assert_eq!(view.left(), 0);
        // A wide character at the right edge is shown whole.
        let wide = Rope::from_str(&format!("{}漢", "x".repeat(19)));
        let mut view = View::new(20, 5);
        view.set_cursor(19, &wide);
        assert_eq!(view.left(), 1);
        // Resizing keeps the cursor visible.
        let mut view = View::new(20, 50);
        view.set_cursor(rope.line_to_char(40), &rope);
        assert_eq!(view.top_line(&rope), 0);
        view.resize(20, 10, &rope);
        assert_eq!(view.top_line(&rope), 31);
    }

    #[test]
    fn remote_edits_do_not_move_the_cursor_logically() {
        let mut rope = Rope::from_str("hello world");
        let mut view = View::new(20, 5);
        view.set_cursor(6, &rope); // before "world"
        let before = TextOperation::splice(11, 0, 0, "say: ").unwrap();
        before.apply(&mut rope).unwrap();
        view.remote(&before, &rope);
        assert_eq!(view.cursor(), 11);
        let at = TextOperation::splice(16, 11, 0, "big ").unwrap();
        at.apply(&mut rope).unwrap();
        view.remote(&at, &rope);
        assert_eq!(
            view.cursor(),
            11,
            "text inserted at the cursor goes after it"
        );
        let delete = TextOperation::splice(20, 0, 5, "").unwrap();
        delete.apply(&mut rope).unwrap();
        view.remote(&delete, &rope);
        assert_eq!(view.cursor(), 6);
        assert_eq!(rope.to_string(), "hello big world");
        // The first shown line stays the same text when lines are inserted above it...
        let text: String = (0..20).map(|i| format!("l{i}\n")).collect();
        let mut rope = Rope::from_str(&text);
        let mut view = View::new(20, 5);
        view.set_cursor(rope.line_to_char(12), &rope);
        let top = view.top_line(&rope);
        let op = TextOperation::splice(rope.len_chars(), 0, 0, "new\nnew\n").unwrap();
        op.apply(&mut rope).unwrap();
        view.remote(&op, &rope);
        assert_eq!(view.top_line(&rope), top + 2);
        assert_eq!(view.cursor_line_col(&rope), (14, 0));
        // ...and lines inserted right at it are shown.
        let top_char = rope.line_to_char(view.top_line(&rope));
        view.set_cursor(top_char + 1, &rope);
        let op = TextOperation::splice(rope.len_chars(), top_char, 0, "here\n").unwrap();
        op.apply(&mut rope).unwrap();
        view.remote(&op, &rope);
        assert_eq!(view.top_line(&rope), top + 2);
        assert_eq!(rope.line(top + 2).to_string(), "here\n");
    }
}
