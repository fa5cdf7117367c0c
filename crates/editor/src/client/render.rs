//! Drawing the full-screen editor with ratatui: the visible part of the text, other
//! participants' cursors as coloured cells with their names at the end of the line, the
//! local cursor as the terminal cursor, and a status line. Pure apart from the frame it
//! draws into, so it is tested with ratatui's `TestBackend`.

use ratatui::buffer::Buffer;
use ratatui::layout::{Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::Frame;
use ropey::Rope;

use super::view::{line_col, line_graphemes, scroll_markers, View};

/// Colours for other participants, in the order they are handed out.
pub const PALETTE: [Color; 6] = [
    Color::Magenta,
    Color::Cyan,
    Color::Yellow,
    Color::Green,
    Color::Blue,
    Color::Red,
];

/// Another participant as drawn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    /// Cursor position (characters), if they have reported one.
    pub head: Option<usize>,
    pub colour: Color,
}

/// Connection state shown in the status line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    Connected,
    Reconnecting,
    /// Quitting, waiting for the last acknowledgements.
    Saving,
}

/// What the status line says.
#[derive(Clone, Debug)]
pub struct Status {
    pub document: String,
    pub revision: Option<u64>,
    pub name: String,
    pub state: ConnState,
    /// Local edits not yet acknowledged.
    pub pending: bool,
    /// How many changes wait for the server (shown while reconnecting).
    pub waiting: usize,
    /// A one-off notice (a reset, a refusal).
    pub notice: Option<String>,
    /// A question that takes the whole status line until answered ("Quit anyway? y/N").
    pub prompt: Option<String>,
    /// The server accepts no edits from us (a read-only token).
    pub read_only: bool,
}

/// Draws everything; the text area is the frame minus its last row.
pub fn draw(frame: &mut Frame, text: &Rope, view: &View, peers: &[Peer], status: &Status) {
    let area = frame.area();
    if area.height == 0 || area.width == 0 {
        return;
    }
    let text_area = Rect {
        height: area.height - 1,
        ..area
    };
    let status_area = Rect {
        y: area.y + area.height - 1,
        height: 1,
        ..area
    };
    draw_text(frame.buffer_mut(), text_area, text, view, peers);
    draw_status(frame.buffer_mut(), status_area, text, view, peers, status);
    let (x, y) = view.cursor_cell(text);
    if x < usize::from(text_area.width) && y < usize::from(text_area.height) {
        frame.set_cursor_position(Position {
            x: text_area.x + x as u16,
            y: text_area.y + y as u16,
        });
    }
}

fn draw_text(buf: &mut Buffer, area: Rect, text: &Rope, view: &View, peers: &[Peer]) {
    let top = view.top_line(text);
    let left = view.left();
    let width = usize::from(area.width);
    let lines = text.len_lines();
    // (row, text hidden to the left, to the right) of each line shown.
    let mut markers = Vec::new();
    for row in 0..usize::from(area.height) {
        let line = top + row;
        if line >= lines {
            break;
        }
        let y = area.y + row as u16;
        let mut col = 0;
        let graphemes = line_graphemes(text, line);
        for g in &graphemes {
            if col >= left && col + g.width <= left + width {
                let x = area.x + (col - left) as u16;
                buf.set_stringn(x, y, g.symbol(), g.width, Style::default());
            }
            col += g.width;
        }
        markers.push((y, scroll_markers(col, left, width)));
    }
    draw_peers(buf, area, text, view, peers);
    // Last, so a peer's name never hides them.
    let marker = Style::default().add_modifier(Modifier::REVERSED);
    for (y, (before, after)) in markers {
        if before {
            buf.set_stringn(area.x, y, "<", 1, marker);
        }
        if after {
            let x = area.x + area.width - 1;
            // A wide character whose second half is the last cell would be drawn over
            // the marker: blank it.
            if x > area.x && unicode_width::UnicodeWidthStr::width(buf[(x - 1, y)].symbol()) > 1 {
                buf.set_stringn(x - 1, y, " ", 1, Style::default());
            }
            buf.set_stringn(x, y, ">", 1, marker);
        }
    }
}

/// Each peer's cursor cell in its colour; their names, in their colours, after the end of
/// the line the cursor is on (never over the text).
fn draw_peers(buf: &mut Buffer, area: Rect, text: &Rope, view: &View, peers: &[Peer]) {
    let top = view.top_line(text);
    let left = view.left();
    let width = usize::from(area.width);
    let mut label_end: Vec<(usize, usize)> = Vec::new(); // (row, next free column)
    for peer in peers {
        let Some(head) = peer.head else { continue };
        let (line, col) = line_col(text, head);
        if line < top || line - top >= usize::from(area.height) {
            continue;
        }
        let row = line - top;
        let y = area.y + row as u16;
        if col >= left && col < left + width {
            let x = area.x + (col - left) as u16;
            let cell = &mut buf[(x, y)];
            if cell.symbol().is_empty() {
                cell.set_symbol(" ");
            }
            cell.set_style(Style::default().bg(peer.colour).fg(Color::Black));
        }
        let line_end = line_col(
            text,
            text.line_to_char(line) + super::view::content_len(text, line),
        )
        .1;
        let start = match label_end.iter().find(|(r, _)| *r == row) {
            Some((_, c)) => *c,
            None => line_end + 2,
        };
        let label = format!(" {} ", peer.name);
        let label_width = unicode_width::UnicodeWidthStr::width(label.as_str());
        if start >= left && start < left + width {
            let x = area.x + (start - left) as u16;
            buf.set_stringn(
                x,
                y,
                &label,
                left + width - start,
                Style::default().bg(peer.colour).fg(Color::Black),
            );
        }
        let next = start + label_width + 1;
        match label_end.iter_mut().find(|(r, _)| *r == row) {
            Some(entry) => entry.1 = next,
            None => label_end.push((row, next)),
        }
    }
}

fn draw_status(
    buf: &mut Buffer,
    area: Rect,
    text: &Rope,
    view: &View,
    peers: &[Peer],
    status: &Status,
) {
    let bar = Style::default().add_modifier(Modifier::REVERSED);
    if let Some(prompt) = &status.prompt {
        buf.set_style(area, bar);
        let line = Line::from(Span::styled(
            format!(" {prompt} "),
            bar.add_modifier(Modifier::BOLD),
        ));
        buf.set_line(area.x, area.y, &line, area.width);
        return;
    }
    let (line, col) = view.cursor_line_col(text);
    let short_state = match status.state {
        ConnState::Connected if status.pending => "connected, sending…",
        ConnState::Connected => "connected",
        ConnState::Reconnecting => "reconnecting…",
        ConnState::Saving => "saving…",
    };
    let state = match status.state {
        ConnState::Reconnecting if status.waiting > 0 => format!(
            "reconnecting… {} change{} waiting",
            status.waiting,
            if status.waiting == 1 { "" } else { "s" }
        ),
        _ => short_state.to_owned(),
    };
    let revision = status
        .revision
        .map_or_else(|| "-".to_owned(), |r| r.to_string());
    let mut names = vec![Span::styled(format!(" {} (you)", status.name), bar)];
    for peer in peers {
        names.push(Span::styled(" ", bar));
        names.push(Span::styled(
            peer.name.clone(),
            Style::default().bg(peer.colour).fg(Color::Black),
        ));
    }
    let count = format!(
        " {} participant{}",
        peers.len() + 1,
        if peers.is_empty() { "" } else { "s" }
    );
    let with_count = {
        let mut spans = vec![Span::styled(format!("{count}:"), bar)];
        spans.extend(names.iter().cloned());
        spans
    };
    let bold = bar.add_modifier(Modifier::BOLD);
    // Left to right as shown. When the line is too narrow, the step with the lowest rank
    // is taken first: a part gives way to its next, shorter form, the last to nothing.
    // The cursor position and the quit hint stay longest.
    let mut parts = vec![
        Part::new(&[(
            6,
            vec![Span::styled(format!(" {} ", status.document), bold)],
        )]),
        Part::new(&[(1, vec![Span::styled(format!(" r{revision} "), bar)])]),
        Part::new(&[
            (5, vec![Span::styled(format!(" {state} "), bar)]),
            (8, vec![Span::styled(format!(" {short_state} "), bar)]),
        ]),
        Part::new(&[(
            8,
            vec![Span::styled(
                if status.read_only { " read-only " } else { "" },
                bold,
            )],
        )]),
        Part::new(&[
            (2, with_count),
            (3, names),
            (4, vec![Span::styled(count, bar)]),
        ]),
        Part::new(&[(
            10,
            vec![Span::styled(
                format!("  Ln {}, Col {}", line + 1, col + 1),
                bar,
            )],
        )]),
    ];
    if let Some(notice) = &status.notice {
        parts.push(Part::new(&[(
            7,
            vec![Span::styled(format!("  {notice}"), bar)],
        )]));
    }
    parts.push(Part::new(&[(
        9,
        vec![Span::styled("  Ctrl-Q quits ", bar)],
    )]));
    fit(&mut parts, usize::from(area.width));
    let spans: Vec<Span> = parts
        .into_iter()
        .filter_map(|part| part.forms.into_iter().nth(part.shown))
        .flat_map(|(_, spans)| spans)
        .collect();
    buf.set_style(area, bar);
    buf.set_line(area.x, area.y, &Line::from(spans), area.width);
}

/// One part of the status line in its forms, longest first, each with the rank at which
/// it gives way to the next (or, the last, to nothing).
struct Part<'a> {
    forms: Vec<(u8, Vec<Span<'a>>)>,
    /// The form shown; `forms.len()` when the part is gone.
    shown: usize,
}

impl<'a> Part<'a> {
    fn new(forms: &[(u8, Vec<Span<'a>>)]) -> Self {
        Part {
            forms: forms.to_vec(),
            shown: 0,
        }
    }

    fn width(&self) -> usize {
        self.forms
            .get(self.shown)
            .map_or(0, |(_, spans)| spans.iter().map(Span::width).sum())
    }

    /// The rank of this part's next step, None when it is gone.
    fn next_step(&self) -> Option<u8> {
        self.forms.get(self.shown).map(|(rank, _)| *rank)
    }
}

/// Takes the steps of lowest rank (the rightmost part first among equals) until the parts
/// fit in `width` cells; what still does not fit is cut at the right edge.
fn fit(parts: &mut [Part], width: usize) {
    while parts.iter().map(Part::width).sum::<usize>() > width {
        let Some(lowest) = parts
            .iter()
            .enumerate()
            .filter_map(|(i, part)| part.next_step().map(|rank| (rank, std::cmp::Reverse(i))))
            .min()
            .map(|(_, std::cmp::Reverse(i))| i)
        else {
            break;
        };
        // Never the last part standing: a sliver of something beats an empty bar.
        if parts.iter().filter(|p| p.next_step().is_some()).count() == 1 {
            break;
        }
        parts[lowest].shown += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn status() -> Status {
        Status {
            document: "notes".into(),
            revision: Some(7),
            name: "me".into(),
            state: ConnState::Connected,
            pending: false,
            waiting: 0,
            prompt: None,
            notice: None,
            read_only: false,
        }
    }

    fn render(
        text: &Rope,
        view: &View,
        peers: &[Peer],
        status: &Status,
        w: u16,
        h: u16,
    ) -> (Vec<String>, Buffer, Position) {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
        let frame = terminal
            .draw(|f| draw(f, text, view, peers, status))
            .unwrap();
        let buf = frame.buffer.clone();
        let rows = (0..h)
            .map(|y| {
                let mut s = String::new();
                for x in 0..w {
                    s.push_str(buf[(x, y)].symbol());
                }
                s
            })
            .collect();
        let cursor = terminal.get_cursor_position().unwrap();
        (rows, buf, cursor)
    }

    #[test]
    fn text_cursor_and_status() {
        let text = Rope::from_str("hello\nworld\n");
        let mut view = View::new(80, 4);
        view.set_cursor(8, &text);
        let (rows, _, cursor) = render(&text, &view, &[], &status(), 80, 5);
        assert_eq!(rows[0].trim_end(), "hello");
        assert_eq!(rows[1].trim_end(), "world");
        assert_eq!(cursor, Position { x: 2, y: 1 });
        assert!(rows[4].contains("notes"), "{}", rows[4]);
        assert!(rows[4].contains("r7"));
        assert!(rows[4].contains("connected"));
        assert!(rows[4].contains("1 participant: me (you)"));
        let mut st = status();
        st.state = ConnState::Reconnecting;
        let (rows, _, _) = render(&text, &view, &[], &st, 80, 5);
        assert!(rows[4].contains("reconnecting…"), "{}", rows[4]);
    }

    #[test]
    fn wide_and_combining_characters_take_their_cells() {
        let text = Rope::from_str("漢字x\ne\u{301}y\n");
        let mut view = View::new(20, 4);
        view.set_cursor(2, &text);
        let (rows, buf, cursor) = render(&text, &view, &[], &status(), 20, 5);
        assert_eq!(buf[(0, 0)].symbol(), "漢");
        assert_eq!(buf[(2, 0)].symbol(), "字");
        assert_eq!(buf[(4, 0)].symbol(), "x");
        assert_eq!(cursor, Position { x: 4, y: 0 });
        assert_eq!(buf[(0, 1)].symbol(), "e\u{301}");
        assert_eq!(buf[(1, 1)].symbol(), "y");
        assert!(rows[1].starts_with("e\u{301}y"));
        view.set_cursor(6, &text);
        let (_, _, cursor) = render(&text, &view, &[], &status(), 20, 5);
        assert_eq!(cursor, Position { x: 1, y: 1 });
    }

    #[test]
    fn peers_are_coloured_and_named() {
        let text = Rope::from_str("hello\nworld\n");
        let view = View::new(80, 4);
        let peers = vec![
            Peer {
                name: "alice".into(),
                head: Some(1),
                colour: PALETTE[0],
            },
            Peer {
                name: "bob".into(),
                head: Some(3),
                colour: PALETTE[1],
            },
            Peer {
                name: "carol".into(),
                head: Some(11),
                colour: PALETTE[2],
            },
        ];
        let (rows, buf, _) = render(&text, &view, &peers, &status(), 100, 5);
        assert_eq!(buf[(1, 0)].bg, PALETTE[0]);
        assert_eq!(buf[(3, 0)].bg, PALETTE[1]);
        assert_eq!(buf[(5, 1)].bg, PALETTE[2], "a cursor at the end of a line");
        assert_eq!(rows[0].trim_end(), "hello   alice   bob");
        assert_eq!(rows[1].trim_end(), "world   carol");
        assert!(
            rows[4].contains("4 participants: me (you) alice bob carol"),
            "{}",
            rows[4]
        );
        // At 80 columns the names stay, without the count.
        let (rows, _, _) = render(&text, &view, &peers, &status(), 80, 5);
        assert!(
            rows[4].contains(" me (you) alice bob carol "),
            "{}",
            rows[4]
        );
        assert!(!rows[4].contains("participants"), "{}", rows[4]);
    }

    #[test]
    fn scrolled_view_and_resize() {
        let text: String = (0..50).map(|i| format!("line {i}\n")).collect();
        let text = Rope::from_str(&text);
        let mut view = View::new(20, 9);
        view.set_cursor(text.line_to_char(30), &text);
        let (rows, _, cursor) = render(&text, &view, &[], &status(), 20, 10);
        assert_eq!(rows[0].trim_end(), "line 22");
        assert_eq!(rows[8].trim_end(), "line 30");
        assert_eq!(cursor, Position { x: 0, y: 8 });
        view.resize(20, 4, &text);
        let (rows, _, cursor) = render(&text, &view, &[], &status(), 20, 5);
        assert_eq!(rows[3].trim_end(), "line 30");
        assert_eq!(cursor, Position { x: 0, y: 3 });
    }
    #[test]
    fn a_narrow_status_line_keeps_the_cursor_position_and_the_quit_hint() {
        let text = Rope::from_str("hello\nworld\n");
        let mut view = View::new(60, 4);
        view.set_cursor(8, &text);
        let peers: Vec<Peer> = ["alice", "bob", "carol"]
            .iter()
            .enumerate()
            .map(|(i, name)| Peer {
                name: (*name).into(),
                head: None,
                colour: PALETTE[i],
            })
            .collect();
        let mut st = status();
        st.document = "meeting-notes".into();
        st.revision = Some(12345);
        st.state = ConnState::Reconnecting;
        st.waiting = 3;
        let (rows, _, _) = render(&text, &view, &peers, &st, 60, 5);
        let line = rows[4].trim_end();
        assert!(line.contains("Ln 2, Col 3"), "{line}");
        assert!(line.ends_with("Ctrl-Q quits"), "{line}");
        assert!(line.contains("reconnecting…"), "{line}");
        assert!(line.contains("meeting-notes"), "{line}");
        assert!(!line.contains("r12345"), "the revision goes first: {line}");
        // A little wider, the count of waiting changes is back.
        let (rows, _, _) = render(&text, &view, &peers, &st, 80, 5);
        assert!(
            rows[4].contains("reconnecting… 3 changes waiting") && rows[4].contains("Ln 2, Col 3"),
            "{}",
            rows[4]
        );
        // Wide enough, everything is there.
        let (rows, _, _) = render(&text, &view, &peers, &st, 140, 5);
        assert!(
            rows[4].contains("4 participants: me (you) alice bob carol"),
            "{}",
            rows[4]
        );
        assert!(rows[4].contains("r12345"), "{}", rows[4]);
        // Very narrow: the cursor position is the last to go.
        let (rows, _, _) = render(&text, &view, &peers, &st, 16, 5);
        assert!(rows[4].contains("Ln 2, Col 3"), "{}", rows[4]);
    }

    #[test]
    fn lines_scrolled_sideways_are_marked_like_nano() {
        let text = Rope::from_str(&format!(
            "{}\nshort\n\n{}\n",
            "a".repeat(50),
            "b".repeat(30)
        ));
        let mut view = View::new(20, 4);
        // At the start: only lines going on beyond the right edge are marked.
        view.set_cursor(0, &text);
        let (rows, buf, _) = render(&text, &view, &[], &status(), 20, 5);
        assert_eq!(rows[0], format!("{}>", "a".repeat(19)));
        assert_eq!(buf[(19, 0)].symbol(), ">");
        assert_eq!(rows[1].trim_end(), "short");
        assert_eq!(rows[3], format!("{}>", "b".repeat(19)));
        // In the middle of the long line: both sides, and the cursor on neither marker.
        view.set_cursor(25, &text);
        let (rows, _, cursor) = render(&text, &view, &[], &status(), 20, 5);
        assert_eq!(rows[0], format!("<{}>", "a".repeat(18)), "{rows:?}");
        assert!(cursor.x > 0 && cursor.x < 19, "{cursor:?}");
        assert_eq!(&rows[1][..1], "<", "text hidden on the left: {rows:?}");
        assert_eq!(rows[2].trim_end(), "", "an empty line has nothing hidden");
        // At the end of the long line: nothing hidden on the right.
        view.set_cursor(50, &text);
        let (rows, _, cursor) = render(&text, &view, &[], &status(), 20, 5);
        assert_eq!(rows[0], format!("<{} ", "a".repeat(18)), "{rows:?}");
        assert_eq!(cursor.x, 19);
        assert_eq!(rows[3].trim_end(), "<");
    }
}
