//! Property tests of the pure codec: every message this crate can build
//! survives encode → decode unchanged in both versions, and no input —
//! random or a mutated valid message — makes `decode` panic.

use std::net::{Ipv4Addr, Ipv6Addr};

use openflow::{
    decode, encode, Action, AggregateStats, Bucket, BundleControl, BundleCtrlType, Ct, CtFlush,
    CtTuple, CtZone, ErrorMsg, Features, Field, FlowMod, FlowStats, FlowStatsRequest, GroupMod,
    GroupType, Hello, Instruction, MacAddr, Match, Message, MultipartReply, MultipartRequest, Nat,
    NatAddrs, NatKind, PacketOut, PortDesc, PortReason, PortStats, PortStatus, Version,
};
use proptest::prelude::*;

fn version() -> impl Strategy<Value = Version> {
    prop_oneof![Just(Version::V1_3), Just(Version::V1_5)]
}

const FIELDS: &[Field] = &[
    Field::InPort,
    Field::Metadata,
    Field::TunnelId,
    Field::TunSrc,
    Field::TunDst,
    Field::TunIpv6Src,
    Field::PktMark,
    Field::Reg(0),
    Field::Reg(9),
    Field::Reg(15),
    Field::Xreg(3),
    Field::Xxreg(1),
    Field::CtState,
    Field::CtZone,
    Field::CtMark,
    Field::CtLabel,
    Field::EthDst,
    Field::EthSrc,
    Field::EthType,
    Field::VlanVid,
    Field::VlanPcp,
    Field::IpDscp,
    Field::IpProto,
    Field::Ipv4Src,
    Field::Ipv4Dst,
    Field::Ipv6Src,
    Field::Ipv6Dst,
    Field::Ipv6Label,
    Field::ArpOp,
    Field::ArpSpa,
    Field::ArpSha,
    Field::TcpSrc,
    Field::TcpDst,
    Field::UdpDst,
    Field::SctpSrc,
    Field::TcpFlags,
    Field::Icmpv4Type,
    Field::Icmpv6Code,
    Field::NdTarget,
    Field::NdTll,
];

fn a_match() -> impl Strategy<Value = Match> {
    prop::collection::vec(
        (
            prop::sample::select(FIELDS),
            any::<u128>(),
            any::<u128>(),
            any::<bool>(),
        ),
        0..8,
    )
    .prop_map(|fields| {
        fields
            .into_iter()
            .fold(Match::new(), |m, (f, v, mask, exact)| {
                if exact {
                    m.set(f, v)
                } else {
                    m.set_masked(f, v, mask)
                }
            })
    })
}

fn set_field() -> impl Strategy<Value = Action> {
    (
        prop::sample::select(FIELDS),
        any::<u128>(),
        prop::option::of(any::<u128>()),
    )
        .prop_map(|(f, v, mask)| match mask {
            Some(m) => Action::set_field_masked(f, v, m),
            None => Action::set_field(f, v),
        })
}

fn port_no() -> impl Strategy<Value = u32> {
    prop_oneof![
        1u32..0xff00,
        Just(openflow::port::LOCAL),
        Just(openflow::port::IN_PORT)
    ]
}

fn nat() -> impl Strategy<Value = Nat> {
    let addrs = prop_oneof![
        Just(None),
        (any::<u32>(), prop::option::of(any::<u32>())).prop_map(|(a, b)| Some(NatAddrs::V4 {
            min: Ipv4Addr::from(a),
            max: b.map(Ipv4Addr::from)
        })),
        (any::<u128>(), prop::option::of(any::<u128>())).prop_map(|(a, b)| Some(NatAddrs::V6 {
            min: Ipv6Addr::from(a),
            max: b.map(Ipv6Addr::from)
        })),
    ];
    (
        prop::option::of(prop_oneof![Just(NatKind::Src), Just(NatKind::Dst)]),
        addrs,
        prop::option::of((any::<u16>(), any::<u16>())),
        any::<[bool; 3]>(),
    )
        .prop_map(|(kind, addrs, ports, [persistent, hash, random])| Nat {
            kind,
            addrs,
            ports,
            persistent,
            hash,
            random,
        })
}

fn leaf_action() -> impl Strategy<Value = Action> {
    prop_oneof![
        (any::<u32>(), any::<u16>()).prop_map(|(port, max_len)| Action::Output { port, max_len }),
        any::<u32>().prop_map(Action::Group),
        set_field(),
        any::<u16>().prop_map(Action::PushVlan),
        Just(Action::PopVlan),
        Just(Action::DecTtl),
        // `None` is how IN_PORT is spelled for resubmit.
        (
            prop::option::of(prop_oneof![1u32..0xff00, Just(openflow::port::LOCAL)]),
            prop::option::of(0u8..255)
        )
            .prop_map(|(in_port, table)| Action::Resubmit { in_port, table }),
        prop::sample::select(vec![11u16, 12, 15, 16, 23]).prop_map(|t| {
            let mut raw = t.to_be_bytes().to_vec();
            raw.extend_from_slice(&[0, 8, 0, 0, 0, 0]);
            Action::Unknown { raw }
        }),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    let ct = (
        any::<[bool; 2]>(),
        prop_oneof![
            any::<u16>().prop_map(CtZone::Imm),
            (0u16..16, 1u16..=16).prop_map(|(ofs, nbits)| CtZone::Field {
                nxm_header: 0x0001_1a04,
                ofs,
                nbits
            }),
        ],
        prop::option::of(0u8..255),
        any::<u16>(),
        prop::option::of(nat()),
        prop::collection::vec(set_field(), 0..3),
    )
        .prop_map(|([commit, force], zone, table, alg, nat, mut actions)| {
            if let Some(n) = nat {
                actions.insert(0, Action::Nat(n));
            }
            Action::Ct(Ct {
                commit,
                force,
                zone,
                table,
                alg,
                actions,
            })
        });
    prop_oneof![4 => leaf_action(), 1 => ct]
}

fn flow_mod(v: Version) -> impl Strategy<Value = FlowMod> {
    (
        a_match(),
        prop::collection::vec(action(), 0..5),
        prop::option::of(prop::collection::vec(leaf_action(), 0..3)),
        prop::option::of(0u8..254),
        prop::option::of((any::<u64>(), any::<u64>())),
        any::<(u64, u64, u8, u16, u16, u16, u16, u16)>(),
        0u8..5,
        any::<bool>(),
    )
        .prop_map(
            move |(
                m,
                acts,
                write,
                goto,
                meta,
                (cookie, cmask, table, idle, hard, prio, flags, imp),
                cmd,
                clear,
            )| {
                let mut fm = match cmd {
                    0 => FlowMod::add(m),
                    1 => FlowMod::modify(m),
                    2 => FlowMod::modify_strict(m),
                    3 => FlowMod::delete(m),
                    _ => FlowMod::delete_strict(m),
                }
                .cookie_mask(cookie, cmask)
                .table(table)
                .idle_timeout(idle)
                .hard_timeout(hard)
                .priority(prio)
                .flags(flags)
                .importance(if v == Version::V1_5 { imp } else { 0 })
                .actions(acts);
                if let Some(w) = write {
                    fm = fm.instruction(Instruction::WriteActions(w));
                }
                if clear {
                    fm = fm.instruction(Instruction::ClearActions);
                }
                if let Some((value, mask)) = meta {
                    fm = fm.write_metadata(value, mask);
                }
                if let Some(t) = goto {
                    fm = fm.goto_table(t);
                }
                fm
            },
        )
}

fn group_mod(v: Version) -> impl Strategy<Value = GroupMod> {
    let bucket = (
        prop::collection::vec(leaf_action(), 0..3),
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
    );
    (
        0u8..4,
        any::<u32>(),
        prop::collection::vec(bucket, 0..4),
        0u8..3,
    )
        .prop_map(move |(t, id, buckets, cmd)| {
            let group_type = [
                GroupType::All,
                GroupType::Select,
                GroupType::Indirect,
                GroupType::FastFailover,
            ][usize::from(t)];
            let buckets = buckets
                .into_iter()
                .enumerate()
                .map(|(i, (actions, weight, watch_port, watch_group))| Bucket {
                    bucket_id: (v == Version::V1_5).then_some(i as u32),
                    weight,
                    watch_port,
                    watch_group,
                    actions,
                })
                .collect();
            let mut g = GroupMod::add(id, group_type, buckets);
            g.command = [
                openflow::GroupCommand::Add,
                openflow::GroupCommand::Modify,
                openflow::GroupCommand::Delete,
            ][usize::from(cmd)];
            g
        })
}

fn ip_addr() -> impl Strategy<Value = Option<std::net::IpAddr>> {
    prop_oneof![
        Just(None),
        (1u32..).prop_map(|a| Some(Ipv4Addr::from(a).into())),
        (1u128 << 100..).prop_map(|a| Some(Ipv6Addr::from(a).into())),
    ]
}

fn ct_flush() -> impl Strategy<Value = CtFlush> {
    let tuple = |icmp: bool| {
        (ip_addr(), ip_addr(), 1u16.., 1u16.., any::<(u16, u8, u8)>()).prop_map(
            move |(src, dst, sp, dp, (id, t, c))| CtTuple {
                src,
                dst,
                src_port: if icmp { 0 } else { sp },
                dst_port: if icmp { 0 } else { dp },
                icmp_id: if icmp { id } else { 0 },
                icmp_type: if icmp { t } else { 0 },
                icmp_code: if icmp { c } else { 0 },
            },
        )
    };
    (
        prop::option::of(any::<u16>()),
        prop_oneof![Just(6u8), Just(17), Just(1), Just(58)],
        any::<bool>(),
    )
        .prop_flat_map(move |(zone, proto, with_reply)| {
            let icmp = proto == 1 || proto == 58;
            (tuple(icmp), tuple(icmp)).prop_map(move |(orig, reply)| CtFlush {
                zone,
                ip_proto: proto,
                orig,
                reply: if with_reply {
                    reply
                } else {
                    CtTuple::default()
                },
            })
        })
}

fn port_desc(v: Version) -> impl Strategy<Value = PortDesc> {
    let _ = v;
    (
        any::<u32>(),
        any::<[u8; 6]>(),
        "[a-z0-9-]{0,15}",
        any::<[u32; 8]>(),
    )
        .prop_map(|(port_no, mac, name, x)| PortDesc {
            port_no,
            hw_addr: MacAddr(mac),
            name,
            config: x[0],
            state: x[1],
            curr: x[2],
            advertised: x[3],
            supported: x[4],
            peer: x[5],
            curr_speed: x[6],
            max_speed: x[7],
        })
}

fn flow_stats(v: Version) -> impl Strategy<Value = FlowStats> {
    (
        flow_mod(v),
        any::<(u32, u32, u64, u64)>(),
        prop::option::of(any::<u32>()),
    )
        .prop_map(move |(fm, (s, ns, p, b), age)| {
            let mut f = fm.to_flow_stats();
            f.duration_sec = s;
            f.duration_nsec = ns;
            f.packet_count = p;
            f.byte_count = b;
            f.idle_age = if v == Version::V1_5 { age } else { None };
            f
        })
}

fn port_stats() -> impl Strategy<Value = PortStats> {
    (any::<(u32, u32, u32)>(), any::<[u64; 12]>()).prop_map(|((port_no, s, ns), c)| PortStats {
        port_no,
        duration_sec: s,
        duration_nsec: ns,
        rx_packets: c[0],
        tx_packets: c[1],
        rx_bytes: c[2],
        tx_bytes: c[3],
        rx_dropped: c[4],
        tx_dropped: c[5],
        rx_errors: c[6],
        tx_errors: c[7],
        rx_frame_err: c[8],
        rx_over_err: c[9],
        rx_crc_err: c[10],
        collisions: c[11],
    })
}

fn message(v: Version) -> impl Strategy<Value = Message> {
    let bundle_type = prop::sample::select(vec![
        BundleCtrlType::OpenRequest,
        BundleCtrlType::OpenReply,
        BundleCtrlType::CommitRequest,
        BundleCtrlType::CommitReply,
        BundleCtrlType::DiscardRequest,
        BundleCtrlType::DiscardReply,
    ]);
    prop_oneof![
        prop::option::of(any::<u32>()).prop_map(|bitmap| Message::Hello(Hello { bitmap })),
        (
            0u16..18,
            any::<u16>(),
            prop::collection::vec(any::<u8>(), 0..80)
        )
            .prop_map(|(t, code, data)| Message::Error(ErrorMsg {
                err_type: t,
                code,
                experimenter: None,
                data
            })),
        (any::<u16>(), any::<u32>()).prop_map(|(code, e)| Message::Error(ErrorMsg {
            err_type: 0xffff,
            code,
            experimenter: Some(e),
            data: vec![1, 2]
        })),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Message::EchoRequest),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Message::EchoReply),
        Just(Message::FeaturesRequest),
        any::<(u64, u32, u8, u8, u32)>().prop_map(|(d, b, t, a, c)| Message::FeaturesReply(
            Features {
                datapath_id: d,
                n_buffers: b,
                n_tables: t,
                auxiliary_id: a,
                capabilities: c
            }
        )),
        flow_mod(v).prop_map(Message::FlowMod),
        group_mod(v).prop_map(Message::GroupMod),
        (
            prop::collection::vec(action(), 0..4),
            prop::collection::vec(any::<u8>(), 0..200),
            port_no()
        )
            .prop_map(|(a, d, p)| Message::PacketOut(PacketOut::new(d, a).in_port(p))),
        (port_desc(v), 0u8..3).prop_map(|(desc, r)| Message::PortStatus(PortStatus {
            reason: [PortReason::Add, PortReason::Delete, PortReason::Modify][usize::from(r)],
            desc
        })),
        Just(Message::BarrierRequest),
        Just(Message::BarrierReply),
        (any::<u32>(), bundle_type, 0u16..4)
            .prop_map(|(id, t, f)| Message::BundleControl(BundleControl::new(id, t, f))),
        (any::<u32>(), 0u16..4, flow_mod(v)).prop_map(|(bundle_id, flags, fm)| {
            Message::BundleAdd {
                bundle_id,
                flags,
                message: Box::new(Message::FlowMod(fm)),
            }
        }),
        ct_flush().prop_map(Message::CtFlush),
        (a_match(), any::<(u8, u64, u32)>()).prop_map(|(m, (t, c, o))| Message::MultipartRequest(
            MultipartRequest::Flow(FlowStatsRequest {
                table_id: t,
                out_port: o,
                out_group: o,
                cookie: c,
                cookie_mask: c,
                match_: m
            })
        )),
        a_match().prop_map(|m| Message::MultipartRequest(MultipartRequest::Aggregate(
            FlowStatsRequest {
                match_: m,
                ..FlowStatsRequest::all()
            }
        ))),
        any::<u32>()
            .prop_map(|port_no| Message::MultipartRequest(MultipartRequest::PortStats { port_no })),
        Just(Message::MultipartRequest(MultipartRequest::PortDesc)),
        (prop::collection::vec(flow_stats(v), 0..4), any::<bool>()).prop_map(|(flows, more)| {
            Message::MultipartReply(MultipartReply::Flow { flows, more })
        }),
        any::<(u64, u64, u32)>().prop_map(|(p, b, f)| Message::MultipartReply(
            MultipartReply::Aggregate(AggregateStats {
                packet_count: p,
                byte_count: b,
                flow_count: f
            })
        )),
        (prop::collection::vec(port_stats(), 0..3), any::<bool>()).prop_map(|(ports, more)| {
            Message::MultipartReply(MultipartReply::PortStats { ports, more })
        }),
        (prop::collection::vec(port_desc(v), 0..3), any::<bool>()).prop_map(|(ports, more)| {
            Message::MultipartReply(MultipartReply::PortDesc { ports, more })
        }),
        (
            any::<u32>(),
            100u32..,
            prop::collection::vec(any::<u8>(), 0..32)
        )
            .prop_map(|(experimenter, exp_type, data)| Message::Experimenter {
                experimenter,
                exp_type,
                data
            }),
        (
            prop::sample::select(vec![16u8, 17, 24, 25, 26, 27, 28, 29]),
            prop::collection::vec(any::<u8>(), 0..32)
        )
            .prop_map(|(msg_type, body)| Message::Unknown { msg_type, body }),
    ]
}

fn versioned_message() -> impl Strategy<Value = (Version, Message)> {
    version().prop_flat_map(|v| message(v).prop_map(move |m| (v, m)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn encode_decode_roundtrip((v, m) in versioned_message(), xid in any::<u32>()) {
        let bytes = encode(v, xid, &m).expect("encode");
        prop_assert_eq!(usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), bytes.len());
        let frame = decode(&bytes).expect("decode");
        prop_assert_eq!(frame.xid, xid);
        prop_assert_eq!(frame.version, v.wire());
        prop_assert_eq!(frame.message, m);
    }

    #[test]
    fn mutated_messages_never_panic((v, m) in versioned_message(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
        let mut bytes = encode(v, 1, &m).expect("encode");
        for (i, b) in flips {
            let at = i.index(bytes.len());
            bytes[at] ^= b;
        }
        let _ = decode(&bytes);
        let end = cut.index(bytes.len() + 1);
        let _ = decode(&bytes[..end]);
        if let Some(len) = openflow::frame_len(&bytes).ok().flatten() {
            if len <= bytes.len() {
                let _ = decode(&bytes[..len]);
            }
        }
    }

    #[test]
    fn random_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..2048), version in prop_oneof![Just(4u8), Just(6u8), any::<u8>()], mtype in any::<u8>()) {
        if bytes.len() >= 8 {
            let len = bytes.len() as u16;
            bytes[0] = version;
            bytes[1] = mtype % 40;
            bytes[2..4].copy_from_slice(&len.to_be_bytes());
        }
        let _ = decode(&bytes);
    }
}

fn flow_line() -> impl Strategy<Value = FlowStats> {
    version().prop_flat_map(flow_stats).prop_map(|mut f| {
        f.duration_nsec %= 1_000_000_000;
        f
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Printing is a fixpoint of parsing: print(parse(print(f))) == print(f),
    /// with and without statistics.
    #[test]
    fn printed_flows_parse_back(f in flow_line(), stats in any::<bool>()) {
        let text = f.to_ofctl(stats);
        match text.parse::<FlowStats>() {
            Ok(parsed) => prop_assert_eq!(parsed.to_ofctl(stats), text),
            // Random matches may carry L4 ports without their protocol,
            // which the text form cannot say.
            Err(e) => prop_assert!(e.to_string().contains("without tcp, udp or sctp"), "{}: {}", text, e),
        }
    }

    #[test]
    fn parsing_garbage_never_panics(s in "\\PC{0,80}", t in "[a-z_=,.:/()+|0-9 -]{0,80}") {
        let _ = s.parse::<FlowStats>();
        let _ = t.parse::<FlowStats>();
        let _ = format!("priority=1,{t} actions={s}").parse::<FlowStats>();
        let _ = format!("{t} actions=ct({t}),set_field:{s}->reg0").parse::<FlowStats>();
    }
}

#[test]
fn oversized_input_is_refused() {
    let mut big = vec![4, 0, 0xff, 0xff, 0, 0, 0, 1];
    big.resize(70_000, 0);
    assert!(matches!(decode(&big), Err(openflow::Error::TooLong { .. })));
    assert!(matches!(
        openflow::frame_len(&[4, 0, 0, 7, 0, 0, 0, 0]),
        Err(openflow::Error::BadLength { .. })
    ));
    assert_eq!(openflow::frame_len(&[4, 0, 0]).unwrap(), None);
}

#[test]
fn deeply_nested_ct_is_refused_not_recursed() {
    // ct(exec(ct(exec(ct(...))))) built by hand: each level 24 bytes.
    let mut inner: Vec<u8> = Vec::new();
    for _ in 0..100 {
        let len = (24 + inner.len()) as u16;
        let mut ct = vec![0xff, 0xff];
        ct.extend_from_slice(&len.to_be_bytes());
        ct.extend_from_slice(&[
            0, 0, 0x23, 0x20, 0, 35, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0, 0, 0, 0, 0,
        ]);
        ct.extend_from_slice(&inner);
        inner = ct;
    }
    // The encoder refuses raw bytes of an action type it knows, so an
    // unknown NX subtype of the same length goes in and is replaced.
    let mut placeholder = inner.clone();
    placeholder[9] = 0x99;
    let fm = FlowMod::add(Match::new()).actions(vec![Action::Unknown {
        raw: placeholder.clone(),
    }]);
    let mut bytes = encode(Version::V1_5, 1, &Message::FlowMod(fm)).unwrap();
    let at = bytes.len() - placeholder.len();
    assert_eq!(bytes[at..], placeholder[..]);
    bytes[at..].copy_from_slice(&inner);
    let err = decode(&bytes).unwrap_err();
    assert!(err.to_string().contains("nested too deeply"), "{err}");
}

/// Found by CI: a match holding TCP and SCTP ports printed both as tp_src,
/// and the parser merged them. Ports of a protocol the match is not for keep
/// their field names.
#[test]
fn ports_of_another_protocol_keep_their_names() {
    let m = Match::new()
        .set_masked(Field::IpProto, 6, 62)
        .set(Field::TcpSrc, 0)
        .set_masked(Field::SctpSrc, 0, 1);
    let f = FlowStats {
        match_: m,
        ..FlowStats::default()
    };
    let text = f.to_ofctl(false);
    assert_eq!(
        text,
        "priority=0,nw_proto=6,tp_src=0,sctp_src=0x0/0x1 actions=drop"
    );
    let parsed: FlowStats = text.parse().expect("parse");
    assert_eq!(parsed.to_ofctl(false), text);
}
