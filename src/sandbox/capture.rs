//! Byte-capped capture of a stream: keeps the head and the tail, counts everything, and
//! decodes lossily at the end, so a flood or binary garbage costs bounded memory.

/// Keeps at most `cap` bytes: the first half and the last half of what was pushed.
#[derive(Debug, Clone)]
pub struct Capture {
    cap: usize,
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    total: u64,
}

impl Capture {
    /// A capture that keeps at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Capture {
            cap,
            head: Vec::new(),
            tail: std::collections::VecDeque::new(),
            total: 0,
        }
    }

    /// Append bytes.
    pub fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let head_cap = self.cap / 2;
        if self.head.len() < head_cap {
            let take = (head_cap - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        let tail_cap = self.cap - head_cap;
        if bytes.len() >= tail_cap {
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - tail_cap..]);
        } else {
            let overflow = (self.tail.len() + bytes.len()).saturating_sub(tail_cap);
            self.tail.drain(..overflow);
            self.tail.extend(bytes);
        }
    }

    /// Bytes pushed in all.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// True when something was dropped between head and tail.
    pub fn truncated(&self) -> bool {
        self.total > (self.head.len() + self.tail.len()) as u64
    }

    /// The kept text, decoded lossily, with a marker where bytes were dropped.
    pub fn text(&self) -> String {
        let mut bytes = self.head.clone();
        if self.truncated() {
            let dropped = self.total - (self.head.len() + self.tail.len()) as u64;
            bytes.extend_from_slice(format!("\n[... {dropped} bytes omitted ...]\n").as_bytes());
        }
        bytes.extend(self.tail.iter());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn keeps_everything_under_the_cap() {
        let mut c = Capture::new(16);
        c.push(b"hello ");
        c.push(b"world");
        assert_eq!(c.text(), "hello world");
        assert!(!c.truncated());
        assert_eq!(c.total(), 11);
    }

    #[test]
    fn keeps_head_and_tail_of_a_flood() {
        let mut c = Capture::new(8);
        for chunk in [b"abcd".as_slice(), b"efgh", b"ijkl", b"mnop"] {
            c.push(chunk);
        }
        assert_eq!(c.text(), "abcd\n[... 8 bytes omitted ...]\nmnop");
        assert_eq!(c.total(), 16);
    }

    #[test]
    fn one_huge_push_keeps_its_ends() {
        let mut c = Capture::new(4);
        c.push(&[b'x'; 1000]);
        c.push(b"END");
        assert_eq!(c.text(), "xx\n[... 999 bytes omitted ...]\nND");
    }

    #[test]
    fn decodes_binary_garbage_lossily() {
        let mut c = Capture::new(64);
        c.push(&[0xff, 0xfe, b'o', b'k']);
        assert_eq!(c.text(), "\u{fffd}\u{fffd}ok");
    }
}
