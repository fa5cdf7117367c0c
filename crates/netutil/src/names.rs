//! Which characters a name shown to other people may not contain.
//!
//! Display names and file names travel to other users' screens and log files. Besides the
//! control characters (a newline would forge a log line), Unicode has characters that make
//! a name read as something else: bidirectional overrides and isolates (U+202E turns
//! `rtl\u{202e}txt.exe` into "rtlexe.txt" on screen) and the line and paragraph separators
//! U+2028/U+2029, which some viewers break lines at. Every program refuses the same set.

/// True for a character no shared name may contain: a control character (C0, DEL, C1),
/// a bidirectional formatting character (U+061C, U+200E, U+200F, U+202A..U+202E,
/// U+2066..U+2069), a line or paragraph separator (U+2028, U+2029) or the byte-order mark
/// U+FEFF. Joiners (U+200D in emoji sequences) are fine.
pub fn is_forbidden_in_name(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{FEFF}'
        )
}

/// The first forbidden character of `name`, for an error message that says which.
pub fn forbidden_char(name: &str) -> Option<char> {
    name.chars().find(|&c| is_forbidden_in_name(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_separators_and_controls_are_forbidden_but_ordinary_text_is_not() {
        for bad in [
            "rtl\u{202e}txt.exe",
            "a\u{2028}b",
            "a\u{2029}b",
            "a\nb",
            "\u{2067}x",
            "x\u{7f}",
        ] {
            assert!(forbidden_char(bad).is_some(), "{bad:?}");
        }
        for good in ["alice", "Zoë", "日本語.txt", "👩\u{200d}💻 dev", "a b"] {
            assert_eq!(forbidden_char(good), None, "{good:?}");
        }
    }
}
