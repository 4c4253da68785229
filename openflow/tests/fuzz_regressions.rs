//! Inputs found by the fuzz targets in `fuzz/` (see `fuzz/README.md`),
//! kept as tests of the behaviour that replaced the failure.

use openflow::{decode, encode, Action, Error, FlowMod, Instruction, Message, Version};

/// `openflow_text`: a flow line with `unknown_action(...)` whose bytes
/// declare a length (22) other than their own (8) was encoded as given, so
/// the switch (and our own decoder) read a different action list than the
/// one written. The encoder now refuses such raw bytes.
#[test]
fn raw_action_with_a_wrong_length_field_is_refused_not_sent() {
    let line = "cookie=0x8a8e7b20de7c917, table=39, idle_timeout=43430, hard_timeout=30474, \
        check_overlap no_packet_counts priority=2580,ct_zone=0x442/0x45ea,reg15=0xe96f5525,\
        tun_ipv6_src=2461:614c:3de8:ef6:f186:b5c5:a81b:6b30,vlan_tci=0x0201/0x0e43 \
        actions=write_actions(unknown_action(0020001600000000),resubmit:LOCAL),goto_table:119";
    let fm = FlowMod::from_ofctl(line).expect("the line parses");
    for v in [Version::V1_3, Version::V1_5] {
        let r = encode(v, 1, &Message::FlowMod(fm.clone()));
        assert!(
            matches!(r, Err(Error::BadLength { what: "raw action", len: 8 })),
            "{v:?}: {r:?}"
        );
    }
    // The same for a raw instruction.
    let raw = Instruction::Unknown {
        raw: vec![0, 9, 0, 16, 0, 0, 0, 0],
    };
    let fm = FlowMod::add(Default::default()).instruction(raw);
    assert!(matches!(
        encode(Version::V1_5, 1, &Message::FlowMod(fm)),
        Err(Error::BadLength {
            what: "raw instruction",
            ..
        })
    ));
}

/// Raw bytes that say their own length still go out unchanged and read
/// back as written.
#[test]
fn raw_action_with_a_right_length_field_round_trips() {
    // An NX experimenter action of a subtype the codec does not interpret.
    let raw = vec![
        0xff, 0xff, 0, 16, 0, 0, 0x23, 0x20, 0, 0x99, 0, 0, 0, 0, 0, 0,
    ];
    let fm = FlowMod::add(Default::default()).actions(vec![Action::Unknown { raw: raw.clone() }]);
    for v in [Version::V1_3, Version::V1_5] {
        let m = Message::FlowMod(fm.clone());
        let back = decode(&encode(v, 1, &m).expect("encodes")).expect("decodes");
        assert_eq!(back.message, m);
    }
}
