//! Splits the byte stream from an OVSDB server into JSON messages.
//!
//! OVSDB's JSON-RPC runs on a raw stream with no delimiter between messages,
//! so message boundaries are found by tracking JSON nesting. The scanner
//! keeps its state between reads, so a message arriving in many pieces is
//! scanned once, and it refuses a message larger than the configured bound
//! before buffering it whole, so a hostile server cannot make the client's
//! memory grow without limit.

use bytes::{Buf, BytesMut};

use crate::error::{Error, Result};

#[derive(Debug)]
pub struct Framer {
    buf: BytesMut,
    /// How far into `buf` the scanner has looked.
    pos: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
    started: bool,
    limit: usize,
}

impl Framer {
    pub fn new(limit: usize) -> Framer {
        Framer {
            buf: BytesMut::with_capacity(64 * 1024),
            pos: 0,
            depth: 0,
            in_string: false,
            escaped: false,
            started: false,
            limit,
        }
    }

    /// The buffer to read more bytes into.
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Returns the next complete message, if one is buffered.
    pub fn next_message(&mut self) -> Result<Option<serde_json::Value>> {
        while self.pos < self.buf.len() {
            let b = self.buf[self.pos];
            self.pos += 1;
            if !self.started {
                match b {
                    b' ' | b'\t' | b'\r' | b'\n' => {
                        // Whitespace between messages: drop it.
                        self.buf.advance(self.pos);
                        self.pos = 0;
                        continue;
                    }
                    b'{' | b'[' => {
                        self.started = true;
                        self.depth = 1;
                        continue;
                    }
                    other => {
                        return Err(Error::protocol(format!(
                            "unexpected byte 0x{other:02x} between messages"
                        )))
                    }
                }
            }
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        // A complete message can arrive in one read: bound it too.
                        if self.pos > self.limit {
                            return Err(Error::MessageTooLarge { limit: self.limit });
                        }
                        let msg = self.buf.split_to(self.pos);
                        self.pos = 0;
                        self.started = false;
                        let value = serde_json::from_slice(&msg)
                            .map_err(|e| Error::protocol(format!("malformed JSON: {e}")))?;
                        return Ok(Some(value));
                    }
                }
                _ => {}
            }
        }
        if self.started && self.buf.len() > self.limit {
            return Err(Error::MessageTooLarge { limit: self.limit });
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(f: &mut Framer, s: &[u8]) -> Vec<serde_json::Value> {
        f.buffer().extend_from_slice(s);
        let mut out = Vec::new();
        while let Some(m) = f.next_message().unwrap() {
            out.push(m);
        }
        out
    }

    #[test]
    fn splits_concatenated_messages() {
        let mut f = Framer::new(1 << 20);
        let msgs = feed(&mut f, br#"{"a":"}{"}[1,[2]] {"b":"\"}"}"#);
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[0]["a"], "}{");
        assert_eq!(msgs[2]["b"], "\"}");
    }

    #[test]
    fn handles_byte_by_byte_arrival() {
        let mut f = Framer::new(1 << 20);
        let text = br#"{"id":1,"result":{"x":"a\\"},"error":null}"#;
        let mut got = Vec::new();
        for b in text.iter() {
            got.extend(feed(&mut f, &[*b]));
        }
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["result"]["x"], "a\\");
    }

    #[test]
    fn rejects_garbage_and_oversize() {
        let mut f = Framer::new(1 << 20);
        f.buffer().extend_from_slice(b"hello");
        assert!(matches!(f.next_message(), Err(Error::Protocol(_))));

        let mut f = Framer::new(16);
        f.buffer()
            .extend_from_slice(b"[\"0123456789012345678901234567890\"");
        assert!(matches!(
            f.next_message(),
            Err(Error::MessageTooLarge { .. })
        ));

        let mut f = Framer::new(16);
        f.buffer()
            .extend_from_slice(b"[\"0123456789012345678901234567890\"]");
        assert!(matches!(
            f.next_message(),
            Err(Error::MessageTooLarge { .. })
        ));

        let mut f = Framer::new(1 << 20);
        f.buffer().extend_from_slice(b"{\"a\":tru}");
        assert!(matches!(f.next_message(), Err(Error::Protocol(_))));
    }
}
