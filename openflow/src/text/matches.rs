//! Matches and field values, in Open vSwitch's `match_format()` order.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::format_port;
use crate::codec::{Field, Kind, Match, MatchField, DEFAULT_PRIORITY};

pub(crate) fn hex(v: u128) -> String {
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

pub(super) const CT_STATE_NAMES: [&str; 8] =
    ["new", "est", "rel", "rpl", "inv", "trk", "snat", "dnat"];
pub(super) const TCP_FLAG_NAMES: [&str; 12] = [
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
        Kind::CtState => flags_masked(&CT_STATE_NAMES, v as u32, m as u32, 0xff),
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
    let get = |f: Field| {
        m.get(f)
            .map(|mf| (mf.value_u128(), mf.mask_u128(), mf.mask.is_none()))
    };
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
            flags_masked(&CT_STATE_NAMES, v as u32, mk as u32, 0xff)
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
            // The protocol's own ports read as tp_src/tp_dst, as OVS prints
            // them; ports of another protocol (a match OVS itself would
            // refuse) keep their field names so the text still says them.
            for (proto, src, dst) in [
                (6, Field::TcpSrc, Field::TcpDst),
                (17, Field::UdpSrc, Field::UdpDst),
                (132, Field::SctpSrc, Field::SctpDst),
            ] {
                if nw_proto == Some(proto) {
                    dec16_masked(s, "tp_src", src);
                    dec16_masked(s, "tp_dst", dst);
                } else {
                    dec16_masked(s, &src.name(), src);
                    dec16_masked(s, &dst.name(), dst);
                }
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
    let vid = m
        .get(Field::VlanVid)
        .map(|f| (f.value_u128() as u16, f.mask_u128() as u16));
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
