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
            matches!(
                r,
                Err(Error::BadLength {
                    what: "raw action",
                    len: 8
                })
            ),
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

/// `openflow_text`: `unknown_action(0000000877970751)` is an OUTPUT action
/// (type 0) eight bytes long, which no one can read (OUTPUT is 16). Raw
/// bytes of a type the codec interprets are now refused: they would read
/// back as that action, or not at all.
#[test]
fn raw_action_of_a_known_type_is_refused() {
    let line = "cookie=0x4 actions=push_vlan:0x4ab2,ct(force,zone=15470,alg=60177),\
        unknown_action(0000000877970751),clear_actions,goto_table:149";
    let fm = FlowMod::from_ofctl(line).expect("the line parses");
    for v in [Version::V1_3, Version::V1_5] {
        let r = encode(v, 1, &Message::FlowMod(fm.clone()));
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{v:?}: {r:?}");
    }
    // Well formed but known (a 16-byte OUTPUT, an NX dec_ttl): refused too.
    for raw in [
        vec![0, 0, 0, 16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
        vec![0xff, 0xff, 0, 16, 0, 0, 0x23, 0x20, 0, 18, 0, 0, 0, 0, 0, 0],
    ] {
        let fm = FlowMod::add(Default::default()).actions(vec![Action::Unknown { raw }]);
        assert!(matches!(
            encode(Version::V1_3, 1, &Message::FlowMod(fm)),
            Err(Error::InvalidArgument(_))
        ));
    }
    // A raw GOTO_TABLE instruction likewise.
    let fm = FlowMod::add(Default::default()).instruction(Instruction::Unknown {
        raw: vec![0, 1, 0, 8, 3, 0, 0, 0],
    });
    assert!(matches!(
        encode(Version::V1_5, 1, &Message::FlowMod(fm)),
        Err(Error::InvalidArgument(_))
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

/// `openflow_decode`: a port status whose 16-byte name field had no NUL
/// decoded to a 16-character name that encodes as 15 (the wire keeps one
/// byte for the NUL), so decode(encode(m)) != m. Names are now read as OVS
/// reads them, at most 15 bytes, and cut at a character boundary both ways
/// (invalid UTF-8 becomes U+FFFD, three bytes, which must still fit).
#[test]
fn port_names_are_at_most_fifteen_bytes_both_ways() {
    let mut port_status = vec![0x04, 0x0c, 0x00, 0x50, 0, 0, 0, 0x1c];
    port_status.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]); // reason, pad
    port_status.extend_from_slice(&[0, 0, 0, 7, 0, 0, 0, 0]); // port_no, pad
    port_status.extend_from_slice(&[0x0a, 0x58, 0, 0, 0, 1, 0, 0]); // hw_addr, pad
    let name_at = port_status.len();
    port_status.extend_from_slice(b"QQQQQQQQQQQQQQQQ"); // 16 bytes, no NUL
    port_status.resize(0x50, 0);
    let check = |bytes: &[u8], want: &str| {
        let m = decode(bytes).expect("decodes").message;
        let Message::PortStatus(ps) = &m else {
            panic!("{m:?}")
        };
        assert_eq!(ps.desc.name, want);
        let again = decode(&encode(Version::V1_3, 0x1c, &m).expect("encodes")).expect("decodes");
        assert_eq!(again.message, m);
    };
    check(&port_status, "QQQQQQQQQQQQQQQ");
    // Fourteen ASCII bytes then the first byte of a two-byte character.
    port_status[name_at..name_at + 16].copy_from_slice(b"abcdefghijklmn\xc3\xa9");
    check(&port_status, "abcdefghijklmn");
    // Invalid UTF-8 throughout: five replacement characters fill 15 bytes.
    port_status[name_at..name_at + 16].copy_from_slice(&[0xff; 16]);
    check(&port_status, &"\u{fffd}".repeat(5));
}

/// `openflow_decode`: an `NXT_CT_FLUSH` for a non-ICMP protocol carrying
/// ICMP id/type/code (or one with a `::` address) decoded to fields the
/// encoder does not write, so decode(encode(m)) != m. A received flush now
/// keeps only what it means, which is what the encoder writes.
#[test]
fn ct_flush_fields_the_protocol_does_not_use_are_dropped() {
    use openflow::{CtFlush, CtTuple};
    let icmp = CtFlush {
        zone: Some(5),
        ip_proto: 1,
        orig: CtTuple {
            src: Some("10.0.0.1".parse().unwrap()),
            icmp_id: 52656,
            icmp_type: 160,
            icmp_code: 197,
            ..CtTuple::default()
        },
        reply: CtTuple::default(),
    };
    let mut bytes = encode(Version::V1_5, 3, &Message::CtFlush(icmp)).unwrap();
    assert_eq!(bytes[16], 1, "ip_proto follows the experimenter header");
    bytes[16] = 97; // the same properties under another protocol
    let m = decode(&bytes).unwrap().message;
    let want = CtFlush {
        ip_proto: 97,
        orig: CtTuple {
            src: icmp.orig.src,
            ..CtTuple::default()
        },
        ..icmp
    };
    assert_eq!(m, Message::CtFlush(want));
    let again = decode(&encode(Version::V1_5, 3, &m).unwrap()).unwrap();
    assert_eq!(again.message, m);

    // Ports under ICMP are dropped the same way, and `::` is a wildcard.
    let tcp = CtFlush {
        ip_proto: 6,
        orig: CtTuple {
            src: Some("10.0.0.1".parse().unwrap()),
            dst_port: 80,
            ..CtTuple::default()
        },
        ..CtFlush::default()
    };
    let mut bytes = encode(Version::V1_5, 3, &Message::CtFlush(tcp)).unwrap();
    bytes[16] = 58;
    let Message::CtFlush(f) = decode(&bytes).unwrap().message else {
        panic!("not a flush")
    };
    assert_eq!(f.orig.dst_port, 0);
    let v4_at = bytes
        .windows(6)
        .position(|w| w == [0, 0, 0xff, 0xff, 10, 0])
        .expect("the v4-mapped address");
    bytes[v4_at + 2..v4_at + 6].fill(0);
    bytes[v4_at + 6..v4_at + 8].fill(0);
    let Message::CtFlush(f) = decode(&bytes).unwrap().message else {
        panic!("not a flush")
    };
    assert_eq!(f.orig.src, None, "{f:?}");
}

/// `openflow_decode`: a bundle of OpenFlow 1.3 carrying an OpenFlow 1.5
/// group-mod decoded with the inner message's version (bucket ids) but
/// was encoded back with the bundle's (no bucket ids), so the message
/// changed on the way through. A bundled message of another version is
/// now refused, as Open vSwitch refuses it.
#[test]
fn a_bundled_message_of_another_version_is_refused() {
    let mut bucket = openflow::Bucket::new(vec![Action::DecTtl]);
    bucket.bucket_id = Some(0);
    bucket.weight = 2840;
    let gm = openflow::GroupMod {
        command: openflow::GroupCommand::Delete,
        ..openflow::GroupMod::add(7, openflow::GroupType::Select, vec![bucket])
    };
    let bundle = Message::BundleAdd {
        bundle_id: 3,
        flags: 0,
        message: Box::new(Message::GroupMod(gm)),
    };
    let same = encode(Version::V1_5, 1, &bundle).expect("encodes");
    let back = decode(&same).expect("decodes");
    assert_eq!(back.message, bundle, "one version throughout round-trips");
    // A barrier reads the same in every version: only the check can
    // refuse it. The inner header starts after the outer header (8) and
    // the bundle id, pad and flags (8); its first byte is its version.
    let barrier = Message::BundleAdd {
        bundle_id: 3,
        flags: 0,
        message: Box::new(Message::BarrierRequest),
    };
    let mut mixed = encode(Version::V1_5, 1, &barrier).expect("encodes");
    assert!(decode(&mixed).is_ok());
    mixed[16] = 0x04;
    let r = decode(&mixed);
    assert!(
        matches!(
            &r,
            Err(Error::Malformed {
                what: "bundle add",
                ..
            })
        ),
        "{r:?}"
    );
}
