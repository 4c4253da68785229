//! Parsing the text this module prints, so a line from `ovs-ofctl
//! dump-flows` (or an expected flow written by hand in the same syntax)
//! can be compared with decoded flows structurally.
//!
//! The accepted syntax is what [`FlowStats::to_ofctl`] produces, with or
//! without statistics; it is not all of `ovs-ofctl`'s flow syntax.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::codec::{flow_flags, port, Field, FlowMod, FlowStats, Kind, Match, DEFAULT_PRIORITY};
use crate::error::{Error, Result};

use super::matches::{CT_STATE_NAMES, TCP_FLAG_NAMES};
use super::parse_actions::parse_instructions;

pub(super) fn bad(what: &str, text: &str) -> Error {
    Error::InvalidArgument(format!("cannot parse {what} {text:?}"))
}

/// A decimal or `0x` hexadecimal number.
pub(super) fn num(s: &str) -> Result<u128> {
    let r = match s.strip_prefix("0x") {
        Some(h) => u128::from_str_radix(h, 16),
        None => s.parse::<u128>(),
    };
    r.map_err(|_| bad("number", s))
}

pub(super) fn num_as<T: TryFrom<u128>>(s: &str) -> Result<T> {
    T::try_from(num(s)?).map_err(|_| bad("number (out of range)", s))
}

/// `V` or `V/M`.
pub(super) fn num_masked(s: &str) -> Result<(u128, Option<u128>)> {
    match s.split_once('/') {
        Some((v, m)) => Ok((num(v)?, Some(num(m)?))),
        None => Ok((num(s)?, None)),
    }
}

pub(super) fn parse_port(s: &str) -> Result<u32> {
    Ok(match s {
        "IN_PORT" => port::IN_PORT,
        "TABLE" => port::TABLE,
        "NORMAL" => port::NORMAL,
        "FLOOD" => port::FLOOD,
        "ALL" => port::ALL,
        "CONTROLLER" => port::CONTROLLER,
        "LOCAL" => port::LOCAL,
        "ANY" => port::ANY,
        n => num_as(n)?,
    })
}

fn mac(s: &str) -> Result<u128> {
    let m: crate::codec::MacAddr = s.parse()?;
    Ok(crate::codec::oxm_be_u128(&m.0))
}

fn prefix(n: &str, bits: u32) -> Result<u128> {
    let p: u32 = n.parse().map_err(|_| bad("prefix", n))?;
    if p > bits {
        return Err(bad("prefix", n));
    }
    let full = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    Ok(if p == 0 { 0 } else { full & !(full >> p) })
}

fn ip4(s: &str) -> Result<(u128, Option<u128>)> {
    let one = |a: &str| -> Result<u128> {
        Ok(u32::from(a.parse::<Ipv4Addr>().map_err(|_| bad("IPv4 address", a))?).into())
    };
    match s.split_once('/') {
        Some((a, m)) if m.contains('.') => Ok((one(a)?, Some(one(m)?))),
        Some((a, m)) => Ok((one(a)?, Some(prefix(m, 32)?))),
        None => Ok((one(s)?, None)),
    }
}

fn ip6(s: &str) -> Result<(u128, Option<u128>)> {
    let one = |a: &str| -> Result<u128> {
        Ok(u128::from(
            a.parse::<Ipv6Addr>().map_err(|_| bad("IPv6 address", a))?,
        ))
    };
    match s.split_once('/') {
        Some((a, m)) if m.contains(':') => Ok((one(a)?, Some(one(m)?))),
        Some((a, m)) => Ok((one(a)?, Some(prefix(m, 128)?))),
        None => Ok((one(s)?, None)),
    }
}

fn mac_masked(s: &str) -> Result<(u128, Option<u128>)> {
    match s.split_once('/') {
        Some((a, m)) => Ok((mac(a)?, Some(mac(m)?))),
        None => Ok((mac(s)?, None)),
    }
}

/// `a|b`, `0`, or `+a-b`, as (value, mask) with `full` for exact forms.
pub(super) fn flags(s: &str, names: &[&str], full: u128) -> Result<(u128, Option<u128>)> {
    let bit = |name: &str| -> Result<u128> {
        names
            .iter()
            .position(|n| *n == name)
            .map(|i| 1u128 << i)
            .or_else(|| num(name).ok())
            .ok_or_else(|| bad("flag", name))
    };
    if s == "0" {
        return Ok((0, None));
    }
    if s.starts_with('+') || s.starts_with('-') {
        let (mut v, mut m) = (0, 0);
        let mut rest = s;
        while let Some(sign) = rest.chars().next() {
            let body = &rest[1..];
            let end = body.find(['+', '-']).unwrap_or(body.len());
            let b = bit(&body[..end])?;
            m |= b;
            if sign == '+' {
                v |= b;
            }
            rest = &body[end..];
        }
        return Ok((v, (m != full).then_some(m)));
    }
    let mut v = 0;
    for name in s.split('|') {
        v |= bit(name)?;
    }
    Ok((v, None))
}

/// Parses the value of `field` as `set_field` and matches print it.
pub(super) fn field_value(field: Field, s: &str) -> Result<(u128, Option<u128>)> {
    match field.kind() {
        Kind::Mac => mac_masked(s),
        Kind::Ipv4 => ip4(s),
        Kind::Ipv6 => ip6(s),
        Kind::Port => Ok((parse_port(s)?.into(), None)),
        Kind::Decimal | Kind::Hex => num_masked(s),
        Kind::CtState => flags(s, &CT_STATE_NAMES, 0xff),
        Kind::TcpFlags => flags(s, &TCP_FLAG_NAMES, 0x0fff),
    }
}

/// The field OVS calls `name` in `set_field:...->NAME`.
pub fn field_by_name(name: &str) -> Option<Field> {
    let fixed = [
        Field::InPort,
        Field::Metadata,
        Field::TunnelId,
        Field::TunSrc,
        Field::TunDst,
        Field::TunIpv6Src,
        Field::TunIpv6Dst,
        Field::PktMark,
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
        Field::IpEcn,
        Field::IpTtl,
        Field::IpProto,
        Field::Ipv4Src,
        Field::Ipv4Dst,
        Field::Ipv6Src,
        Field::Ipv6Dst,
        Field::Ipv6Label,
        Field::ArpOp,
        Field::ArpSpa,
        Field::ArpTpa,
        Field::ArpSha,
        Field::ArpTha,
        Field::TcpSrc,
        Field::TcpDst,
        Field::UdpSrc,
        Field::UdpDst,
        Field::SctpSrc,
        Field::SctpDst,
        Field::TcpFlags,
        Field::Icmpv4Type,
        Field::Icmpv4Code,
        Field::Icmpv6Type,
        Field::Icmpv6Code,
        Field::NdTarget,
        Field::NdSll,
        Field::NdTll,
    ];
    let regs = (0..16)
        .map(Field::Reg)
        .chain((0..8).map(Field::Xreg))
        .chain((0..4).map(Field::Xxreg));
    fixed.into_iter().chain(regs).find(|f| f.name() == name)
}

fn duration(s: &str) -> Result<(u32, u32)> {
    let s = s.strip_suffix('s').ok_or_else(|| bad("duration", s))?;
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 9 {
        return Err(bad("duration", s));
    }
    let nsec = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}")
            .parse()
            .map_err(|_| bad("duration", s))?
    };
    Ok((num_as(sec)?, nsec))
}

/// Parses a flow line as `ovs-ofctl dump-flows` prints it (leading space,
/// statistics and all optional).
pub fn parse_flow(line: &str) -> Result<FlowStats> {
    let line = line.trim();
    let (head, actions) = match line.find("actions=") {
        Some(i) => (&line[..i], &line[i + "actions=".len()..]),
        None => return Err(bad("flow (no actions=)", line)),
    };
    let mut f = FlowStats {
        priority: DEFAULT_PRIORITY,
        ..FlowStats::default()
    };
    let mut fields: Vec<(&str, &str)> = Vec::new();
    let mut m = Match::new();
    for tok in head.split([',', ' ']).filter(|t| !t.is_empty()) {
        let (k, v) = tok.split_once('=').unwrap_or((tok, ""));
        match k {
            "cookie" => f.cookie = num_as(v)?,
            "duration" => (f.duration_sec, f.duration_nsec) = duration(v)?,
            "table" => f.table_id = num_as(v)?,
            "n_packets" => f.packet_count = num_as(v)?,
            "n_bytes" => f.byte_count = num_as(v)?,
            "idle_age" => f.idle_age = Some(num_as(v)?),
            "hard_age" => {}
            "idle_timeout" => f.idle_timeout = num_as(v)?,
            "hard_timeout" => f.hard_timeout = num_as(v)?,
            "importance" => f.importance = num_as(v)?,
            "priority" => f.priority = num_as(v)?,
            "send_flow_rem" => f.flags |= flow_flags::SEND_FLOW_REM,
            "check_overlap" => f.flags |= flow_flags::CHECK_OVERLAP,
            "reset_counts" => f.flags |= flow_flags::RESET_COUNTS,
            "no_packet_counts" => f.flags |= flow_flags::NO_PKT_COUNTS,
            "no_byte_counts" => f.flags |= flow_flags::NO_BYT_COUNTS,
            "ip" => m = m.ip(),
            "ipv6" => m = m.ipv6(),
            "arp" => m = m.arp(),
            "rarp" => m = m.eth_type(0x8035),
            "mpls" => m = m.eth_type(0x8847),
            "mplsm" => m = m.eth_type(0x8848),
            "icmp" => m = m.icmp(),
            "igmp" => m = m.ip().ip_proto(2),
            "tcp" => m = m.tcp(),
            "udp" => m = m.udp(),
            "sctp" => m = m.sctp(),
            "icmp6" => m = m.icmp6(),
            "tcp6" => m = m.tcp6(),
            "udp6" => m = m.udp6(),
            "sctp6" => m = m.ipv6().ip_proto(132),
            _ => fields.push((k, v)),
        }
    }
    // Fields whose meaning depends on dl_type/nw_proto come after them.
    for (k, v) in fields
        .iter()
        .filter(|(k, _)| *k == "dl_type" || *k == "nw_proto")
    {
        let field = if *k == "dl_type" {
            Field::EthType
        } else {
            Field::IpProto
        };
        m = m.set(field, num(v)?);
    }
    let dl_type = m.value(Field::EthType);
    let nw_proto = m.value(Field::IpProto);
    for (k, v) in fields {
        m = match_field(m, k, v, dl_type, nw_proto)?;
    }
    f.match_ = m;
    f.instructions = parse_instructions(actions.trim())?;
    Ok(f)
}

fn match_field(
    m: Match,
    k: &str,
    v: &str,
    dl_type: Option<u128>,
    proto: Option<u128>,
) -> Result<Match> {
    let set = |m: Match, f: Field, (v, mask): (u128, Option<u128>)| match mask {
        Some(mask) => m.set_masked(f, v, mask),
        None => m.set(f, v),
    };
    let l4 = |src: bool| -> Result<Field> {
        Ok(match (proto, src) {
            (Some(6), true) => Field::TcpSrc,
            (Some(6), false) => Field::TcpDst,
            (Some(17), true) => Field::UdpSrc,
            (Some(17), false) => Field::UdpDst,
            (Some(132), true) => Field::SctpSrc,
            (Some(132), false) => Field::SctpDst,
            _ => return Err(bad("tp_src/tp_dst without tcp, udp or sctp", v)),
        })
    };
    let v6 = dl_type == Some(0x86dd);
    let field = match k {
        "dl_type" | "nw_proto" => return Ok(m),
        "dl_vlan" => return Ok(m.vlan_vid(num_as(v)?)),
        "dl_vlan_pcp" => return Ok(m.vlan_pcp(num_as(v)?)),
        "vlan_tci" => {
            let (tci, mask) = num_masked(v)?;
            let mask = mask.unwrap_or(0xffff);
            let mut m = m;
            if mask & 0x1fff != 0 {
                m = m.set_masked(Field::VlanVid, tci & 0x1fff, mask & 0x1fff);
            }
            if mask & 0xe000 == 0xe000 {
                m = m.vlan_pcp((tci >> 13) as u8);
            }
            return Ok(m);
        }
        "nw_tos" => return Ok(m.ip_dscp((num_as::<u8>(v)?) >> 2)),
        "pkt_mark" => Field::PktMark,
        "ct_state" => Field::CtState,
        "ct_zone" => Field::CtZone,
        "ct_mark" => Field::CtMark,
        "ct_label" => Field::CtLabel,
        "tun_id" => Field::TunnelId,
        "tun_src" => Field::TunSrc,
        "tun_dst" => Field::TunDst,
        "tun_ipv6_src" => Field::TunIpv6Src,
        "tun_ipv6_dst" => Field::TunIpv6Dst,
        "metadata" => Field::Metadata,
        "in_port" => Field::InPort,
        "dl_src" => Field::EthSrc,
        "dl_dst" => Field::EthDst,
        "nw_src" => Field::Ipv4Src,
        "nw_dst" => Field::Ipv4Dst,
        "ipv6_src" => Field::Ipv6Src,
        "ipv6_dst" => Field::Ipv6Dst,
        "ipv6_label" => Field::Ipv6Label,
        "arp_spa" => Field::ArpSpa,
        "arp_tpa" => Field::ArpTpa,
        "arp_op" => Field::ArpOp,
        "arp_sha" => Field::ArpSha,
        "arp_tha" => Field::ArpTha,
        "nw_ecn" => Field::IpEcn,
        "nw_ttl" => Field::IpTtl,
        "icmp_type" if v6 => Field::Icmpv6Type,
        "icmp_code" if v6 => Field::Icmpv6Code,
        "icmp_type" => Field::Icmpv4Type,
        "icmp_code" => Field::Icmpv4Code,
        "nd_target" => Field::NdTarget,
        "nd_sll" => Field::NdSll,
        "nd_tll" => Field::NdTll,
        "tp_src" => l4(true)?,
        "tp_dst" => l4(false)?,
        "tcp_src" => Field::TcpSrc,
        "tcp_dst" => Field::TcpDst,
        "udp_src" => Field::UdpSrc,
        "udp_dst" => Field::UdpDst,
        "sctp_src" => Field::SctpSrc,
        "sctp_dst" => Field::SctpDst,
        "tcp_flags" => Field::TcpFlags,
        r if r.starts_with("reg") => {
            let n: u8 = r[3..].parse().map_err(|_| bad("register", r))?;
            if n > 15 {
                return Err(bad("register", r));
            }
            Field::Reg(n)
        }
        other => return Err(bad("match field", other)),
    };
    Ok(set(m, field, field_value(field, v)?))
}

impl std::str::FromStr for FlowStats {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        parse_flow(s)
    }
}

impl FlowMod {
    /// An `add` flow-mod for a flow written in `ovs-ofctl` text form (the
    /// form [`FlowStats::to_ofctl`] prints).
    pub fn from_ofctl(line: &str) -> Result<FlowMod> {
        let f = parse_flow(line)?;
        let mut fm = FlowMod::add(f.match_)
            .table(f.table_id)
            .priority(f.priority)
            .cookie(f.cookie)
            .idle_timeout(f.idle_timeout)
            .hard_timeout(f.hard_timeout)
            .flags(f.flags)
            .importance(f.importance);
        fm.instructions = f.instructions;
        Ok(fm)
    }
}
