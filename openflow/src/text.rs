//! Flows in the text form `ovs-ofctl dump-flows` prints.
//!
//! Tests and operators compare flows by eye, so a flow printed here must be
//! the same line `ovs-ofctl -O OpenFlow15 dump-flows` shows for it. The
//! field order, the protocol shorthands (`tcp`, `udp6`, ...), and the number
//! formats follow Open vSwitch's `match_format()` and `ofpacts_format()`
//! (read, not copied); the integration tests compare against the real tool.

use std::fmt::{self, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::codec::{
    flow_flags, port, Action, Ct, CtZone, Field, FlowMod, FlowStats, Instruction, Kind, Match,
    MatchField, Nat, NatAddrs, NatKind, DEFAULT_PRIORITY,
};

/// `IN_PORT`, `LOCAL`, ... or the number.
pub fn format_port(p: u32) -> String {
    match p {
        port::IN_PORT => "IN_PORT".into(),
        port::TABLE => "TABLE".into(),
        port::NORMAL => "NORMAL".into(),
        port::FLOOD => "FLOOD".into(),
        port::ALL => "ALL".into(),
        port::CONTROLLER => "CONTROLLER".into(),
        port::LOCAL => "LOCAL".into(),
        port::ANY => "ANY".into(),
        n => n.to_string(),
    }
}

fn hex(v: u128) -> String {
    if v == 0 {
        "0".into()
    } else {
        format!("{v:#x}")
    }
}

fn mac(v: u128) -> String {
    let b = v.to_be_bytes();
    crate::codec::MacAddr([b[10], b[11], b[12], b[13], b[14], b[15]]).to_string()
}

fn ip4_masked(v: u128, m: u128) -> String {
    let ip = Ipv4Addr::from(v as u32);
    let m = m as u32;
    if m == u32::MAX {
        ip.to_string()
    } else if m.leading_ones() + m.trailing_zeros() == 32 {
        format!("{ip}/{}", m.leading_ones())
    } else {
        format!("{ip}/{}", Ipv4Addr::from(m))
    }
}

fn ip6_masked(v: u128, m: u128) -> String {
    let ip = Ipv6Addr::from(v);
    if m == u128::MAX {
        ip.to_string()
    } else if m.leading_ones() + m.trailing_zeros() == 128 {
        format!("{ip}/{}", m.leading_ones())
    } else {
        format!("{ip}/{}", Ipv6Addr::from(m))
    }
}

const CT_STATE_NAMES: [&str; 8] = ["new", "est", "rel", "rpl", "inv", "trk", "snat", "dnat"];
const TCP_FLAG_NAMES: [&str; 12] = [
    "fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr", "ns", "[800]", "[400]", "[200]",
];

fn flag_name(names: &[&str], bit: u32) -> String {
    names
        .get(bit.trailing_zeros() as usize)
        .map_or_else(|| format!("{bit:#x}"), |s| (*s).to_string())
}

/// `a|b` for an exact match, `+a-b` for a masked one.
fn flags_masked(names: &[&str], value: u32, mask: u32, full: u32) -> String {
    let mut s = String::new();
    if mask == full {
        if value == 0 {
            return "0".into();
        }
        let mut v = value;
        while v != 0 {
            let bit = v & v.wrapping_neg();
            if !s.is_empty() {
                s.push('|');
            }
            s.push_str(&flag_name(names, bit));
            v &= !bit;
        }
        return s;
    }
    let mut m = mask;
    while m != 0 {
        let bit = m & m.wrapping_neg();
        s.push(if value & bit != 0 { '+' } else { '-' });
        s.push_str(&flag_name(names, bit));
        m &= !bit;
    }
    s
}

/// The value of a field as `set_field` prints it (OVS `mf_format`).
pub fn format_value(f: &MatchField) -> String {
    let v = f.value_u128();
    let full = f.mask.is_none();
    let m = f.mask_u128();
    let masked_hex = |s: String| {
        if full {
            s
        } else {
            format!("{s}/{}", hex(m))
        }
    };
    match f.field.kind() {
        Kind::Mac => {
            if full {
                mac(v)
            } else {
                format!("{}/{}", mac(v), mac(m))
            }
        }
        Kind::Ipv4 => ip4_masked(v, if full { u128::from(u32::MAX) } else { m }),
        Kind::Ipv6 => ip6_masked(v, if full { u128::MAX } else { m }),
        Kind::Port => format_port(v as u32),
        Kind::Decimal => masked_hex(v.to_string()),
        Kind::Hex => masked_hex(hex(v)),
        Kind::CtState => flags_masked(&CT_STATE_NAMES, v as u32, m as u32, u32::MAX),
        Kind::TcpFlags => flags_masked(&TCP_FLAG_NAMES, v as u32, m as u32, 0x0fff),
    }
}

/// The match as `ovs-ofctl` prints it, preceded by `priority=N` unless the
/// priority is the default (32768). No trailing comma.
pub fn format_match(m: &Match, priority: u16) -> String {
    let mut out = String::new();
    let s = &mut out;
    if priority != DEFAULT_PRIORITY {
        let _ = write!(s, "priority={priority},");
    }
    let get = |f: Field| m.get(f).map(|mf| (mf.value_u128(), mf.mask_u128(), mf.mask.is_none()));
    // name=0xVAL[/0xMASK]
    let hex_masked = |s: &mut String, name: &str, f: Field| {
        if let Some((v, mk, full)) = get(f) {
            let _ = write!(s, "{name}={}", hex(v));
            if !full {
                let _ = write!(s, "/{}", hex(mk));
            }
            s.push(',');
        }
    };
    let dec16_masked = |s: &mut String, name: &str, f: Field| {
        if let Some((v, mk, full)) = get(f) {
            if full {
                let _ = write!(s, "{name}={v},");
            } else {
                let _ = write!(s, "{name}={v:#x}/{mk:#x},");
            }
        }
    };
    let ip4 = |s: &mut String, name: &str, f: Field| {
        if let Some((v, mk, _)) = get(f) {
            let _ = write!(s, "{name}={},", ip4_masked(v, mk));
        }
    };
    let ip6 = |s: &mut String, name: &str, f: Field| {
        if let Some((v, mk, _)) = get(f) {
            let _ = write!(s, "{name}={},", ip6_masked(v, mk));
        }
    };
    let eth = |s: &mut String, name: &str, f: Field| {
        if let Some((v, mk, full)) = get(f) {
            let _ = write!(s, "{name}={}", mac(v));
            if !full {
                let _ = write!(s, "/{}", mac(mk));
            }
            s.push(',');
        }
    };

    hex_masked(s, "pkt_mark", Field::PktMark);
    if let Some((v, mk, _)) = get(Field::CtState) {
        let _ = write!(
            s,
            "ct_state={},",
            flags_masked(&CT_STATE_NAMES, v as u32, mk as u32, u32::MAX)
        );
    }
    dec16_masked(s, "ct_zone", Field::CtZone);
    hex_masked(s, "ct_mark", Field::CtMark);
    hex_masked(s, "ct_label", Field::CtLabel);

    let dl_type = m.value(Field::EthType).map(|v| v as u16);
    let nw_proto = m.value(Field::IpProto).map(|v| v as u8);
    let mut skip_type = dl_type.is_some();
    let mut skip_proto = false;
    match dl_type {
        Some(0x0800) => {
            let name = match nw_proto {
                Some(1) => "icmp",
                Some(2) => "igmp",
                Some(6) => "tcp",
                Some(17) => "udp",
                Some(132) => "sctp",
                _ => "ip",
            };
            skip_proto = name != "ip";
            s.push_str(name);
            s.push(',');
        }
        Some(0x86dd) => {
            let name = match nw_proto {
                Some(58) => "icmp6",
                Some(6) => "tcp6",
                Some(17) => "udp6",
                Some(132) => "sctp6",
                _ => "ipv6",
            };
            skip_proto = name != "ipv6";
            s.push_str(name);
            s.push(',');
        }
        Some(0x0806) => s.push_str("arp,"),
        Some(0x8035) => s.push_str("rarp,"),
        Some(0x8847) => s.push_str("mpls,"),
        Some(0x8848) => s.push_str("mplsm,"),
        _ => skip_type = false,
    }
    for i in 0..16u8 {
        hex_masked(s, &format!("reg{i}"), Field::Reg(i));
    }
    hex_masked(s, "tun_id", Field::TunnelId);
    ip4(s, "tun_src", Field::TunSrc);
    ip4(s, "tun_dst", Field::TunDst);
    ip6(s, "tun_ipv6_src", Field::TunIpv6Src);
    ip6(s, "tun_ipv6_dst", Field::TunIpv6Dst);
    hex_masked(s, "metadata", Field::Metadata);
    if let Some((v, _, _)) = get(Field::InPort) {
        let _ = write!(s, "in_port={},", format_port(v as u32));
    }
    format_vlan(s, m);
    eth(s, "dl_src", Field::EthSrc);
    eth(s, "dl_dst", Field::EthDst);
    if !skip_type {
        if let Some(t) = dl_type {
            let _ = write!(s, "dl_type={t:#06x},");
        }
    }
    let is_arp = matches!(dl_type, Some(0x0806 | 0x8035));
    if dl_type == Some(0x86dd) {
        ip6(s, "ipv6_src", Field::Ipv6Src);
        ip6(s, "ipv6_dst", Field::Ipv6Dst);
        if let Some((v, mk, full)) = get(Field::Ipv6Label) {
            let _ = write!(s, "ipv6_label={v:#07x}");
            if !full {
                let _ = write!(s, "/{mk:#07x}");
            }
            s.push(',');
        }
    } else if is_arp {
        ip4(s, "arp_spa", Field::ArpSpa);
        ip4(s, "arp_tpa", Field::ArpTpa);
    } else {
        ip4(s, "nw_src", Field::Ipv4Src);
        ip4(s, "nw_dst", Field::Ipv4Dst);
    }
    if !skip_proto {
        if is_arp {
            if let Some((v, _, _)) = get(Field::ArpOp) {
                let _ = write!(s, "arp_op={v},");
            }
        } else if let Some(p) = nw_proto {
            let _ = write!(s, "nw_proto={p},");
        }
    }
    if is_arp {
        eth(s, "arp_sha", Field::ArpSha);
        eth(s, "arp_tha", Field::ArpTha);
    }
    if let Some((v, _, _)) = get(Field::IpDscp) {
        let _ = write!(s, "nw_tos={},", v << 2);
    }
    if let Some((v, _, _)) = get(Field::IpEcn) {
        let _ = write!(s, "nw_ecn={v},");
    }
    if let Some((v, _, _)) = get(Field::IpTtl) {
        let _ = write!(s, "nw_ttl={v},");
    }
    match (dl_type, nw_proto) {
        (Some(0x0800), Some(1)) => {
            dec16_masked(s, "icmp_type", Field::Icmpv4Type);
            dec16_masked(s, "icmp_code", Field::Icmpv4Code);
        }
        (Some(0x86dd), Some(58)) => {
            dec16_masked(s, "icmp_type", Field::Icmpv6Type);
            dec16_masked(s, "icmp_code", Field::Icmpv6Code);
            ip6(s, "nd_target", Field::NdTarget);
            eth(s, "nd_sll", Field::NdSll);
            eth(s, "nd_tll", Field::NdTll);
        }
        _ => {
            for (src, dst) in [
                (Field::TcpSrc, Field::TcpDst),
                (Field::UdpSrc, Field::UdpDst),
                (Field::SctpSrc, Field::SctpDst),
            ] {
                dec16_masked(s, "tp_src", src);
                dec16_masked(s, "tp_dst", dst);
            }
        }
    }
    if let Some((v, mk, _)) = get(Field::TcpFlags) {
        let _ = write!(
            s,
            "tcp_flags={},",
            flags_masked(&TCP_FLAG_NAMES, v as u32, mk as u32, 0x0fff)
        );
    }
    for mf in m.fields() {
        if let Field::Unknown(_) = mf.field {
            let _ = write!(s, "{}={},", mf.field.name(), format_value(mf));
        }
    }
    while out.ends_with(',') {
        out.pop();
    }
    out
}

/// VLAN fields the way OVS shows its 802.1Q TCI.
fn format_vlan(s: &mut String, m: &Match) {
    let vid = m.get(Field::VlanVid).map(|f| (f.value_u128() as u16, f.mask_u128() as u16));
    let pcp = m.value(Field::VlanPcp).map(|p| p as u16);
    if vid.is_none() && pcp.is_none() {
        return;
    }
    let (mut tci, mut mask) = vid.map_or((0, 0), |(v, mk)| (v & 0x1fff, mk & 0x1fff));
    if let Some(p) = pcp {
        tci |= (p << 13) | 0x1000;
        mask |= 0xf000;
    }
    let vid_mask = mask & 0x0fff;
    let pcp_mask = mask & 0xe000;
    let cfi = mask & 0x1000;
    if cfi != 0
        && tci & 0x1000 != 0
        && (vid_mask == 0 || vid_mask == 0x0fff)
        && (pcp_mask == 0 || pcp_mask == 0xe000)
        && (vid_mask != 0 || pcp_mask != 0)
    {
        if vid_mask != 0 {
            let _ = write!(s, "dl_vlan={},", tci & 0x0fff);
        }
        if pcp_mask != 0 {
            let _ = write!(s, "dl_vlan_pcp={},", tci >> 13);
        }
    } else if mask == 0xffff {
        let _ = write!(s, "vlan_tci={tci:#06x},");
    } else {
        let _ = write!(s, "vlan_tci={tci:#06x}/{mask:#06x},");
    }
}

/// One action as `ovs-ofctl` prints it.
pub fn format_action(a: &Action) -> String {
    match a {
        Action::Output { port: p, max_len } => match *p {
            port::CONTROLLER => format!("CONTROLLER:{max_len}"),
            p if p < port::MAX => format!("output:{p}"),
            p => format_port(p),
        },
        Action::Group(g) => format!("group:{g}"),
        Action::SetField(mf) => format!("set_field:{}->{}", format_value(mf), mf.field.name()),
        Action::PushVlan(t) => format!("push_vlan:{t:#x}"),
        Action::PopVlan => "pop_vlan".into(),
        Action::DecTtl => "dec_ttl".into(),
        Action::Resubmit { in_port, table } => {
            let p = in_port.map(format_port).unwrap_or_default();
            let t = table.map(|t| t.to_string()).unwrap_or_default();
            if in_port.is_some() && table.is_none() {
                format!("resubmit:{p}")
            } else {
                format!("resubmit({p},{t})")
            }
        }
        Action::Ct(ct) => format_ct(ct),
        Action::Nat(nat) => format_nat(nat),
        Action::Unknown { raw } => {
            let hexed: String = raw.iter().map(|b| format!("{b:02x}")).collect();
            format!("unknown_action({hexed})")
        }
    }
}

/// A subfield (`NXM_NX_REG13[0..15]`) named from its NXM header.
fn format_subfield(header: u32, ofs: u16, nbits: u16) -> String {
    let class = (header >> 16) as u16;
    let field = ((header >> 9) & 0x7f) as u8;
    let width_bits = (header & 0xff) * 8;
    let name = match (class, field) {
        (1, 0..=15) => format!("NXM_NX_REG{field}"),
        (1, 106) => "NXM_NX_CT_ZONE".into(),
        (0, 0) => "NXM_OF_IN_PORT".into(),
        _ => format!("{header:#010x}"),
    };
    if ofs == 0 && u32::from(nbits) == width_bits {
        format!("{name}[]")
    } else if nbits == 1 {
        format!("{name}[{ofs}]")
    } else {
        format!("{name}[{ofs}..{}]", ofs + nbits - 1)
    }
}

fn format_ct(ct: &Ct) -> String {
    let mut s = String::from("ct(");
    if ct.commit {
        s.push_str("commit,");
    }
    if ct.force {
        s.push_str("force,");
    }
    if let Some(t) = ct.table {
        let _ = write!(s, "table={t},");
    }
    match ct.zone {
        CtZone::Imm(0) => {}
        CtZone::Imm(z) => {
            let _ = write!(s, "zone={z},");
        }
        CtZone::Field {
            nxm_header,
            ofs,
            nbits,
        } => {
            let _ = write!(s, "zone={},", format_subfield(nxm_header, ofs, nbits));
        }
    }
    let mut rest = ct.actions.as_slice();
    if let Some((Action::Nat(nat), tail)) = rest.split_first() {
        s.push_str(&format_nat(nat));
        s.push(',');
        rest = tail;
    }
    if !rest.is_empty() {
        let _ = write!(s, "exec({}),", format_action_list(rest));
    }
    match ct.alg {
        0 => {}
        21 => s.push_str("alg=ftp,"),
        69 => s.push_str("alg=tftp,"),
        n => {
            let _ = write!(s, "alg={n},");
        }
    }
    while s.ends_with(',') {
        s.pop();
    }
    s.push(')');
    s
}

fn format_nat(nat: &Nat) -> String {
    let mut s = String::from("nat");
    let Some(kind) = nat.kind else {
        return s;
    };
    s.push('(');
    s.push_str(if kind == NatKind::Src { "src" } else { "dst" });
    if let Some(addrs) = nat.addrs {
        s.push('=');
        let with_port = nat.ports.is_some_and(|(min, _)| min != 0);
        match addrs {
            NatAddrs::V4 { min, max } => {
                let _ = write!(s, "{min}");
                if let Some(max) = max.filter(|m| !m.is_unspecified() && *m != min) {
                    let _ = write!(s, "-{max}");
                }
            }
            NatAddrs::V6 { min, max } => {
                let b = |a: Ipv6Addr| {
                    if with_port {
                        format!("[{a}]")
                    } else {
                        a.to_string()
                    }
                };
                s.push_str(&b(min));
                if let Some(max) = max.filter(|m| !m.is_unspecified() && *m != min) {
                    let _ = write!(s, "-{}", b(max));
                }
            }
        }
        if let Some((min, max)) = nat.ports.filter(|(min, _)| *min != 0) {
            let _ = write!(s, ":{min}");
            if max != 0 && max != min {
                let _ = write!(s, "-{max}");
            }
        }
        s.push(',');
        if nat.persistent {
            s.push_str("persistent,");
        }
        if nat.hash {
            s.push_str("hash,");
        }
        if nat.random {
            s.push_str("random,");
        }
    }
    while s.ends_with(',') {
        s.pop();
    }
    s.push(')');
    s
}

/// A comma-separated action list; `drop` when empty.
pub fn format_action_list(actions: &[Action]) -> String {
    if actions.is_empty() {
        return "drop".into();
    }
    actions.iter().map(format_action).collect::<Vec<_>>().join(",")
}

/// Instructions as the text after `actions=`.
pub fn format_instructions(instructions: &[Instruction]) -> String {
    let mut parts = Vec::new();
    for i in instructions {
        match i {
            Instruction::Meter(m) => parts.push(format!("meter:{m}")),
            Instruction::ApplyActions(a) => parts.extend(a.iter().map(format_action)),
            Instruction::ClearActions => parts.push("clear_actions".into()),
            Instruction::WriteActions(a) => {
                parts.push(format!("write_actions({})", format_action_list(a)))
            }
            Instruction::WriteMetadata { value, mask } => {
                if *mask == u64::MAX {
                    parts.push(format!("write_metadata:{}", hex((*value).into())));
                } else {
                    parts.push(format!(
                        "write_metadata:{}/{}",
                        hex((*value).into()),
                        hex((*mask).into())
                    ));
                }
            }
            Instruction::GotoTable(t) => parts.push(format!("goto_table:{t}")),
            Instruction::Unknown { raw } => {
                let hexed: String = raw.iter().map(|b| format!("{b:02x}")).collect();
                parts.push(format!("unknown_instruction({hexed})"));
            }
        }
    }
    if parts.is_empty() {
        "drop".into()
    } else {
        parts.join(",")
    }
}

fn flag_words(flags: u16) -> String {
    let mut s = String::new();
    for (bit, name) in [
        (flow_flags::SEND_FLOW_REM, "send_flow_rem"),
        (flow_flags::CHECK_OVERLAP, "check_overlap"),
        (flow_flags::RESET_COUNTS, "reset_counts"),
        (flow_flags::NO_PKT_COUNTS, "no_packet_counts"),
        (flow_flags::NO_BYT_COUNTS, "no_byte_counts"),
    ] {
        if flags & bit != 0 {
            s.push_str(name);
            s.push(' ');
        }
    }
    s
}

fn format_duration(sec: u32, nsec: u32) -> String {
    let mut s = sec.to_string();
    if nsec > 0 {
        let msec = nsec / 1_000_000;
        if msec * 1_000_000 == nsec {
            let _ = write!(s, ".{msec:03}");
        } else {
            let frac = format!("{nsec:09}");
            s.push('.');
            s.push_str(frac.trim_end_matches('0'));
        }
    }
    s.push('s');
    s
}

impl FlowStats {
    /// The line `ovs-ofctl dump-flows` prints for this flow (without its
    /// leading space); with `show_stats == false`, what `--no-stats` prints.
    pub fn to_ofctl(&self, show_stats: bool) -> String {
        let mut s = String::new();
        if show_stats || self.cookie != 0 {
            let _ = write!(s, "cookie={:#x}, ", self.cookie);
        }
        if show_stats {
            let _ = write!(
                s,
                "duration={}, ",
                format_duration(self.duration_sec, self.duration_nsec)
            );
        }
        if show_stats || self.table_id != 0 {
            let _ = write!(s, "table={}, ", self.table_id);
        }
        if show_stats {
            let _ = write!(
                s,
                "n_packets={}, n_bytes={}, ",
                self.packet_count, self.byte_count
            );
        }
        write_common(
            &mut s,
            self.idle_timeout,
            self.hard_timeout,
            self.flags,
            self.importance,
        );
        if show_stats {
            if let Some(age) = self.idle_age {
                let _ = write!(s, "idle_age={age}, ");
            }
        }
        let m = format_match(&self.match_, self.priority);
        s.push_str(&m);
        if !m.is_empty() {
            s.push(' ');
        }
        s.push_str("actions=");
        s.push_str(&format_instructions(&self.instructions));
        s
    }
}

fn write_common(s: &mut String, idle: u16, hard: u16, flags: u16, importance: u16) {
    if idle != 0 {
        let _ = write!(s, "idle_timeout={idle}, ");
    }
    if hard != 0 {
        let _ = write!(s, "hard_timeout={hard}, ");
    }
    s.push_str(&flag_words(flags));
    if importance != 0 {
        let _ = write!(s, "importance={importance}, ");
    }
}

impl fmt::Display for FlowStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_ofctl(false))
    }
}

impl FlowMod {
    /// The flow this flow-mod installs, as it would read back (no counters).
    pub fn to_flow_stats(&self) -> FlowStats {
        FlowStats {
            table_id: self.table_id,
            priority: self.priority,
            idle_timeout: self.idle_timeout,
            hard_timeout: self.hard_timeout,
            flags: self.flags,
            importance: self.importance,
            cookie: self.cookie,
            match_: self.match_.clone(),
            instructions: self.instructions.clone(),
            ..FlowStats::default()
        }
    }
}

/// `add cookie=0x5, table=1, priority=100,ip actions=output:2`.
impl fmt::Display for FlowMod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut flow = self.to_flow_stats().to_ofctl(false);
        if self.cookie_mask != 0 {
            flow = format!("cookie_mask={:#x}, {flow}", self.cookie_mask);
        }
        write!(f, "{} {flow}", self.command.name())
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_match(self, DEFAULT_PRIORITY))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_action(self))
    }
}
