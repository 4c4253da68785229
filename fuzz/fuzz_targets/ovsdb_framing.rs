//! OVSDB's JSON-RPC stream framing (`ovsdb`'s `Framer`): splitting a byte
//! stream with no delimiters into JSON messages, with a size bound.
//!
//! Input: byte 0 picks the size bound, byte 1 the read size, the rest is
//! what the server sends. Checked: no panic; the messages and the outcome
//! do not depend on how the stream is cut into reads; what is buffered
//! between reads never exceeds the bound; a larger bound gives the same
//! messages first; memory stays within a fixed multiple of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ovsdb::fuzzing::Framer;
use ovsdb::Error;
use serde_json::Value as Json;
use switchyard_fuzz::bounded;

#[derive(Debug, PartialEq)]
enum End {
    /// Every byte read, possibly a message unfinished.
    Waiting,
    TooLarge,
    Protocol,
}

fn run(limit: usize, stream: &[u8], read_size: usize) -> (Vec<Json>, End) {
    let mut framer = Framer::new(limit);
    let mut messages = Vec::new();
    for read in stream.chunks(read_size.max(1)) {
        framer.buffer().extend_from_slice(read);
        loop {
            match framer.next_message() {
                Ok(Some(m)) => {
                    assert!(m.is_object() || m.is_array(), "framed a non-message {m}");
                    messages.push(m);
                }
                Ok(None) => {
                    let held = framer.buffer().len();
                    assert!(
                        held <= limit,
                        "{held} bytes buffered over a bound of {limit}"
                    );
                    break;
                }
                Err(Error::MessageTooLarge { limit: l }) => {
                    assert_eq!(l, limit);
                    return (messages, End::TooLarge);
                }
                Err(Error::Protocol(_)) => return (messages, End::Protocol),
                Err(e) => panic!("unexpected error kind: {e}"),
            }
        }
    }
    (messages, End::Waiting)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let limit = 1 + usize::from(data[0]) * 16;
    let read_size = 1 + usize::from(data[1] % 64);
    let stream = &data[2..];
    bounded("ovsdb framing", stream, 96, 512 << 10, |stream| {
        let whole = run(limit, stream, stream.len());
        let pieces = run(limit, stream, read_size);
        assert_eq!(whole, pieces, "framing depends on how the stream is read");
        let roomy = run(1 << 20, stream, stream.len());
        assert!(
            roomy.0.starts_with(&whole.0),
            "a larger bound changed the messages before the refused one"
        );
        if whole.1 != End::TooLarge {
            assert_eq!(whole, roomy, "a bound that was not hit changed the outcome");
        }
    });
});
