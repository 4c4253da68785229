//! The OpenFlow decoder: `frame_len` splitting a stream from the switch,
//! `decode` of each message (matches, OXM/NXM fields, instructions, actions
//! with nested `ct(exec(...))`, flow/group-mods, multipart replies, bundles,
//! errors, port status, packet-in), and printing what was decoded the way
//! `ovs-ofctl` does.
//!
//! Input: a byte stream as the switch sends it; it is also decoded as one
//! message, once as given and once with its header's length set to fit.
//! Checked: no panic; a decoded message that encodes again decodes to
//! itself; a flow printed from the wire that parses is printed and parsed
//! stably from then on; memory stays within a fixed multiple of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use openflow::text::{format_action_list, format_instructions, format_match};
use openflow::{decode, encode, frame_len, FlowStats, Message, MultipartReply, Version};
use switchyard_fuzz::bounded;

/// Prints a flow from the wire; when the line parses, what the parser made
/// of it prints a line that parses back to the same line. (The first pass
/// may normalise: bits of a masked value outside its mask, which the wire
/// can carry, are dropped by the parser.)
fn print_flow(f: &FlowStats) {
    for stats in [false, true] {
        let text = f.to_ofctl(stats);
        if let Ok(parsed) = text.parse::<FlowStats>() {
            let canonical = parsed.to_ofctl(stats);
            let again = canonical
                .parse::<FlowStats>()
                .unwrap_or_else(|e| panic!("{canonical:?} does not parse: {e}"));
            assert_eq!(
                again.to_ofctl(stats),
                canonical,
                "printing is not a fixpoint"
            );
        }
    }
}

fn print(m: &Message) {
    match m {
        Message::FlowMod(fm) => {
            let _ = fm.to_string();
            print_flow(&fm.to_flow_stats());
        }
        Message::MultipartReply(MultipartReply::Flow { flows, .. }) => {
            flows.iter().for_each(print_flow);
        }
        Message::PacketOut(p) => {
            let _ = format_action_list(&p.actions);
        }
        Message::GroupMod(g) => {
            for b in &g.buckets {
                let _ = format_action_list(&b.actions);
            }
        }
        Message::PacketIn(p) => {
            let _ = format_match(&p.match_, 0);
        }
        Message::BundleAdd { message, .. } => print(message),
        Message::Error(e) => {
            let _ = (e.type_name(), e.code_name(), e.failed_header());
        }
        _ => {}
    }
}

fn one(frame: &[u8]) {
    let Ok(f) = decode(frame) else { return };
    print(&f.message);
    if let Message::FlowMod(fm) = &f.message {
        let _ = format_instructions(&fm.instructions);
    }
    let Some(v) = Version::from_wire(f.version) else {
        return;
    };
    if let Ok(bytes) = encode(v, f.xid, &f.message) {
        let again = decode(&bytes).expect("a message we encoded does not decode");
        assert_eq!(again.message, f.message, "decode(encode(m)) != m");
    }
}

fuzz_target!(|data: &[u8]| {
    bounded("openflow decode", data, 64, 512 << 10, |data| {
        let mut rest = data;
        while let Ok(Some(len)) = frame_len(rest) {
            if len > rest.len() {
                break;
            }
            let (frame, tail) = rest.split_at(len);
            one(frame);
            rest = tail;
        }
        one(data);
        if (8..=usize::from(u16::MAX)).contains(&data.len()) {
            let mut fixed = data.to_vec();
            fixed[2..4].copy_from_slice(&(data.len() as u16).to_be_bytes());
            one(&fixed);
        }
    });
});
