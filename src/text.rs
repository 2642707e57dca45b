//! Text hygiene for anything a script printed: terminal escape sequences and other control
//! characters are removed before output reaches a terminal or a model.

/// Remove ANSI/VT escape sequences (CSI, OSC, single-character escapes) and control
/// characters other than newline and tab; carriage returns become newlines.
pub fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                // CSI: parameters and intermediates up to a final byte in @..~
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC, DCS, SOS, PM, APC: up to BEL or ESC \
                Some(']' | 'P' | 'X' | '^' | '_') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' {
                            break;
                        }
                        if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                            chars.next();
                            break;
                        }
                    }
                }
                _ => {}
            },
            // C1 CSI and OSC introducers.
            '\u{9b}' => {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push('\n');
                }
            }
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn strips_colour_cursor_and_title_sequences() {
        assert_eq!(strip_escapes("\u{1b}[31mred\u{1b}[0m"), "red");
        assert_eq!(strip_escapes("a\u{1b}[2J\u{1b}[Hb"), "ab");
        assert_eq!(strip_escapes("\u{1b}]0;pwned\u{7}title"), "title");
        assert_eq!(strip_escapes("\u{1b}]8;;http://x\u{1b}\\link"), "link");
    }

    #[test]
    fn keeps_text_newlines_and_tabs_and_drops_other_controls() {
        assert_eq!(strip_escapes("a\tb\nc\u{7}\u{8}d"), "a\tb\ncd");
        assert_eq!(strip_escapes("progress\r50%\r\n"), "progress\n50%\n");
        assert_eq!(strip_escapes("\u{9b}1mbold"), "bold");
    }
}
