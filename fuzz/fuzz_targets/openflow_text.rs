//! The `ovs-ofctl` text parser: flows (`parse_flow`, `FlowMod::from_ofctl`),
//! single actions and instruction lists, and field names.
//!
//! Input: UTF-8 text. Checked: no panic; a parsed flow prints a line that
//! parses back and prints the same (the printer's fixpoint, as the
//! proptests in `openflow/tests/roundtrip.rs` state it); a parsed flow-mod
//! encodes in both versions without panicking, what encodes decodes, and
//! after that one pass encoding and decoding change nothing; memory stays
//! within a fixed multiple of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use openflow::text::{field_by_name, parse_action, parse_flow, parse_instructions};
use openflow::{decode, encode, FlowMod, Message, Version};
use switchyard_fuzz::bounded;

fn check_flow_mod(fm: FlowMod) {
    for v in [Version::V1_3, Version::V1_5] {
        let m = Message::FlowMod(fm.clone());
        if let Ok(bytes) = encode(v, 7, &m) {
            let back = decode(&bytes).expect("an encoded flow-mod does not decode");
            // One pass may normalise (instruction order, an
            // `unknown_action(...)` of a type the codec knows); after it,
            // encoding and decoding change nothing.
            let bytes = encode(v, 7, &back.message).expect("re-encoding a decoded flow-mod");
            let again = decode(&bytes).expect("re-decoding");
            assert_eq!(again.message, back.message, "decode(encode(m)) != m");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    bounded("openflow text", data, 256, 256 << 10, |_| {
        if let Ok(flow) = parse_flow(text) {
            for stats in [false, true] {
                let printed = flow.to_ofctl(stats);
                match parse_flow(&printed) {
                    Ok(again) => assert_eq!(again.to_ofctl(stats), printed, "not a fixpoint"),
                    Err(e) => panic!("{text:?} printed as {printed:?}, which does not parse: {e}"),
                }
            }
        }
        if let Ok(fm) = FlowMod::from_ofctl(text) {
            let _ = fm.to_string();
            check_flow_mod(fm);
        }
        if let Ok(a) = parse_action(text) {
            let _ = a.to_string();
        }
        let _ = parse_instructions(text);
        let _ = field_by_name(text);
    });
});
