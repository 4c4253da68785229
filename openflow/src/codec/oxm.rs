//! Match fields: OXM (OpenFlow 1.2+) and NXM (Nicira) TLVs, and [`Match`].
//!
//! Open vSwitch accepts both encodings inside an OpenFlow 1.3/1.5 `ofp_match`
//! and answers with whichever it prefers (e.g. registers come back as 64-bit
//! `xreg`s in 1.5 dumps). [`Match`] therefore keeps one canonical form: each
//! field once, sorted so prerequisites precede dependants (OVS checks
//! prerequisites in order), values already ANDed with their mask, no
//! all-ones masks, and 64/128-bit register fields split into 32-bit `reg`s.
//! Two matches that OVS treats alike then compare equal.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::buf::{pad8, Put, Reader};
use crate::error::{Error, Result};

/// OXM classes.
pub mod class {
    /// Nicira's original NXM fields (`NXM_OF_*`).
    pub const NXM_0: u16 = 0x0000;
    /// Nicira extension fields (`NXM_NX_*`).
    pub const NXM_1: u16 = 0x0001;
    /// Standard OpenFlow fields (`OXM_OF_*`).
    pub const OPENFLOW_BASIC: u16 = 0x8000;
    /// OpenFlow 1.5 packet registers (`xreg0..7`).
    pub const PACKET_REGS: u16 = 0x8001;
    /// Experimenter class: the header is followed by a 32-bit experimenter id.
    pub const EXPERIMENTER: u16 = 0xffff;
}

/// The ONF experimenter id (ONF extensions to OpenFlow 1.3).
pub const ONF_EXPERIMENTER: u32 = 0x4f4e_4600;
/// Nicira's experimenter (vendor) id.
pub const NX_EXPERIMENTER: u32 = 0x0000_2320;

/// A match (or set-field) field.
///
/// The variant order is the encoding order of [`Match`]: metadata first,
/// then L2, L3, L4, so that each field's prerequisites come before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    InPort,
    Metadata,
    TunnelId,
    TunSrc,
    TunDst,
    TunIpv6Src,
    TunIpv6Dst,
    PktMark,
    /// `reg0`..`reg15`, 32 bits.
    Reg(u8),
    /// `xreg0`..`xreg7`, 64 bits (`reg2n` is the high half). Split into
    /// `Reg`s inside a [`Match`]; kept as is in set-field actions.
    Xreg(u8),
    /// `xxreg0`..`xxreg3`, 128 bits (`reg4n` is the most significant).
    Xxreg(u8),
    CtState,
    CtZone,
    CtMark,
    CtLabel,
    EthDst,
    EthSrc,
    EthType,
    VlanVid,
    VlanPcp,
    IpDscp,
    IpEcn,
    IpTtl,
    IpProto,
    Ipv4Src,
    Ipv4Dst,
    Ipv6Src,
    Ipv6Dst,
    Ipv6Label,
    ArpOp,
    ArpSpa,
    ArpTpa,
    ArpSha,
    ArpTha,
    TcpSrc,
    TcpDst,
    UdpSrc,
    UdpDst,
    SctpSrc,
    SctpDst,
    TcpFlags,
    Icmpv4Type,
    Icmpv4Code,
    Icmpv6Type,
    Icmpv6Code,
    NdTarget,
    NdSll,
    NdTll,
    /// A field this crate does not know, kept verbatim.
    Unknown(OxmId),
}

/// The identity of an OXM TLV on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OxmId {
    pub class: u16,
    pub field: u8,
    /// Present only for `class == 0xffff`.
    pub experimenter: Option<u32>,
}

/// Whether a field's value is an address, a number, ... (drives printing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Mac,
    Ipv4,
    Ipv6,
    Decimal,
    Hex,
    Port,
    CtState,
    TcpFlags,
}

impl Field {
    /// The preferred wire identity and value width in bytes.
    pub fn oxm(self) -> (OxmId, usize) {
        use class::*;
        let (c, f, w) = match self {
            Field::InPort => (OPENFLOW_BASIC, 0, 4),
            Field::Metadata => (OPENFLOW_BASIC, 2, 8),
            Field::EthDst => (OPENFLOW_BASIC, 3, 6),
            Field::EthSrc => (OPENFLOW_BASIC, 4, 6),
            Field::EthType => (OPENFLOW_BASIC, 5, 2),
            Field::VlanVid => (OPENFLOW_BASIC, 6, 2),
            Field::VlanPcp => (OPENFLOW_BASIC, 7, 1),
            Field::IpDscp => (OPENFLOW_BASIC, 8, 1),
            Field::IpEcn => (OPENFLOW_BASIC, 9, 1),
            Field::IpProto => (OPENFLOW_BASIC, 10, 1),
            Field::Ipv4Src => (OPENFLOW_BASIC, 11, 4),
            Field::Ipv4Dst => (OPENFLOW_BASIC, 12, 4),
            Field::TcpSrc => (OPENFLOW_BASIC, 13, 2),
            Field::TcpDst => (OPENFLOW_BASIC, 14, 2),
            Field::UdpSrc => (OPENFLOW_BASIC, 15, 2),
            Field::UdpDst => (OPENFLOW_BASIC, 16, 2),
            Field::SctpSrc => (OPENFLOW_BASIC, 17, 2),
            Field::SctpDst => (OPENFLOW_BASIC, 18, 2),
            Field::Icmpv4Type => (OPENFLOW_BASIC, 19, 1),
            Field::Icmpv4Code => (OPENFLOW_BASIC, 20, 1),
            Field::ArpOp => (OPENFLOW_BASIC, 21, 2),
            Field::ArpSpa => (OPENFLOW_BASIC, 22, 4),
            Field::ArpTpa => (OPENFLOW_BASIC, 23, 4),
            Field::ArpSha => (OPENFLOW_BASIC, 24, 6),
            Field::ArpTha => (OPENFLOW_BASIC, 25, 6),
            Field::Ipv6Src => (OPENFLOW_BASIC, 26, 16),
            Field::Ipv6Dst => (OPENFLOW_BASIC, 27, 16),
            Field::Ipv6Label => (OPENFLOW_BASIC, 28, 4),
            Field::Icmpv6Type => (OPENFLOW_BASIC, 29, 1),
            Field::Icmpv6Code => (OPENFLOW_BASIC, 30, 1),
            Field::NdTarget => (OPENFLOW_BASIC, 31, 16),
            Field::NdSll => (OPENFLOW_BASIC, 32, 6),
            Field::NdTll => (OPENFLOW_BASIC, 33, 6),
            Field::TunnelId => (OPENFLOW_BASIC, 38, 8),
            Field::Reg(n) => (NXM_1, n, 4),
            Field::IpTtl => (NXM_1, 29, 1),
            Field::TunSrc => (NXM_1, 31, 4),
            Field::TunDst => (NXM_1, 32, 4),
            Field::PktMark => (NXM_1, 33, 4),
            Field::TcpFlags => (NXM_1, 34, 2),
            Field::CtState => (NXM_1, 105, 4),
            Field::CtZone => (NXM_1, 106, 2),
            Field::CtMark => (NXM_1, 107, 4),
            Field::CtLabel => (NXM_1, 108, 16),
            Field::TunIpv6Src => (NXM_1, 109, 16),
            Field::TunIpv6Dst => (NXM_1, 110, 16),
            Field::Xxreg(n) => (NXM_1, 111u8.saturating_add(n), 16),
            Field::Xreg(n) => (PACKET_REGS, n, 8),
            Field::Unknown(id) => return (id, 0),
        };
        (
            OxmId {
                class: c,
                field: f,
                experimenter: None,
            },
            w,
        )
    }

    /// Value width in bytes (0 for unknown fields: any width).
    pub fn width(self) -> usize {
        self.oxm().1
    }

    /// Maps a wire identity (OXM or NXM) to a field and its width.
    pub fn from_oxm(id: OxmId) -> (Field, usize) {
        use class::*;
        let f = match (id.class, id.field, id.experimenter) {
            (OPENFLOW_BASIC, n, None) => match n {
                0 => Field::InPort,
                2 => Field::Metadata,
                3 => Field::EthDst,
                4 => Field::EthSrc,
                5 => Field::EthType,
                6 => Field::VlanVid,
                7 => Field::VlanPcp,
                8 => Field::IpDscp,
                9 => Field::IpEcn,
                10 => Field::IpProto,
                11 => Field::Ipv4Src,
                12 => Field::Ipv4Dst,
                13 => Field::TcpSrc,
                14 => Field::TcpDst,
                15 => Field::UdpSrc,
                16 => Field::UdpDst,
                17 => Field::SctpSrc,
                18 => Field::SctpDst,
                19 => Field::Icmpv4Type,
                20 => Field::Icmpv4Code,
                21 => Field::ArpOp,
                22 => Field::ArpSpa,
                23 => Field::ArpTpa,
                24 => Field::ArpSha,
                25 => Field::ArpTha,
                26 => Field::Ipv6Src,
                27 => Field::Ipv6Dst,
                28 => Field::Ipv6Label,
                29 => Field::Icmpv6Type,
                30 => Field::Icmpv6Code,
                31 => Field::NdTarget,
                32 => Field::NdSll,
                33 => Field::NdTll,
                38 => Field::TunnelId,
                42 => Field::TcpFlags,
                _ => Field::Unknown(id),
            },
            (NXM_0, n, None) => match n {
                // NXM_OF_IN_PORT is 16 bits wide; see `widen_port`.
                0 => return (Field::InPort, 2),
                1 => Field::EthDst,
                2 => Field::EthSrc,
                3 => Field::EthType,
                6 => Field::IpProto,
                7 => Field::Ipv4Src,
                8 => Field::Ipv4Dst,
                9 => Field::TcpSrc,
                10 => Field::TcpDst,
                11 => Field::UdpSrc,
                12 => Field::UdpDst,
                13 => Field::Icmpv4Type,
                14 => Field::Icmpv4Code,
                15 => Field::ArpOp,
                16 => Field::ArpSpa,
                17 => Field::ArpTpa,
                _ => Field::Unknown(id),
            },
            (NXM_1, n, None) => match n {
                0..=15 => Field::Reg(n),
                16 => Field::TunnelId,
                17 => Field::ArpSha,
                18 => Field::ArpTha,
                19 => Field::Ipv6Src,
                20 => Field::Ipv6Dst,
                21 => Field::Icmpv6Type,
                22 => Field::Icmpv6Code,
                23 => Field::NdTarget,
                24 => Field::NdSll,
                25 => Field::NdTll,
                27 => Field::Ipv6Label,
                28 => Field::IpEcn,
                29 => Field::IpTtl,
                31 => Field::TunSrc,
                32 => Field::TunDst,
                33 => Field::PktMark,
                34 => Field::TcpFlags,
                105 => Field::CtState,
                106 => Field::CtZone,
                107 => Field::CtMark,
                108 => Field::CtLabel,
                109 => Field::TunIpv6Src,
                110 => Field::TunIpv6Dst,
                111..=114 => Field::Xxreg(n - 111),
                _ => Field::Unknown(id),
            },
            (PACKET_REGS, n @ 0..=7, None) => Field::Xreg(n),
            (EXPERIMENTER, 42, Some(ONF_EXPERIMENTER)) => Field::TcpFlags,
            _ => Field::Unknown(id),
        };
        (f, f.width())
    }

    /// The name Open vSwitch gives the field in `set_field:...->NAME`.
    pub fn name(self) -> String {
        let s = match self {
            Field::InPort => "in_port",
            Field::Metadata => "metadata",
            Field::TunnelId => "tun_id",
            Field::TunSrc => "tun_src",
            Field::TunDst => "tun_dst",
            Field::TunIpv6Src => "tun_ipv6_src",
            Field::TunIpv6Dst => "tun_ipv6_dst",
            Field::PktMark => "pkt_mark",
            Field::Reg(n) => return format!("reg{n}"),
            Field::Xreg(n) => return format!("xreg{n}"),
            Field::Xxreg(n) => return format!("xxreg{n}"),
            Field::CtState => "ct_state",
            Field::CtZone => "ct_zone",
            Field::CtMark => "ct_mark",
            Field::CtLabel => "ct_label",
            Field::EthDst => "eth_dst",
            Field::EthSrc => "eth_src",
            Field::EthType => "eth_type",
            Field::VlanVid => "vlan_vid",
            Field::VlanPcp => "vlan_pcp",
            Field::IpDscp => "ip_dscp",
            Field::IpEcn => "nw_ecn",
            Field::IpTtl => "nw_ttl",
            Field::IpProto => "nw_proto",
            Field::Ipv4Src => "ip_src",
            Field::Ipv4Dst => "ip_dst",
            Field::Ipv6Src => "ipv6_src",
            Field::Ipv6Dst => "ipv6_dst",
            Field::Ipv6Label => "ipv6_label",
            Field::ArpOp => "arp_op",
            Field::ArpSpa => "arp_spa",
            Field::ArpTpa => "arp_tpa",
            Field::ArpSha => "arp_sha",
            Field::ArpTha => "arp_tha",
            Field::TcpSrc => "tcp_src",
            Field::TcpDst => "tcp_dst",
            Field::UdpSrc => "udp_src",
            Field::UdpDst => "udp_dst",
            Field::SctpSrc => "sctp_src",
            Field::SctpDst => "sctp_dst",
            Field::TcpFlags => "tcp_flags",
            Field::Icmpv4Type => "icmp_type",
            Field::Icmpv4Code => "icmp_code",
            Field::Icmpv6Type => "icmpv6_type",
            Field::Icmpv6Code => "icmpv6_code",
            Field::NdTarget => "nd_target",
            Field::NdSll => "nd_sll",
            Field::NdTll => "nd_tll",
            Field::Unknown(id) => {
                return match id.experimenter {
                    Some(e) => format!("oxm({:#06x}:{:#x}:{})", id.class, e, id.field),
                    None => format!("oxm({:#06x}:{})", id.class, id.field),
                }
            }
        };
        s.to_string()
    }

    pub(crate) fn kind(self) -> Kind {
        match self {
            Field::EthDst | Field::EthSrc | Field::ArpSha | Field::ArpTha => Kind::Mac,
            Field::NdSll | Field::NdTll => Kind::Mac,
            Field::Ipv4Src | Field::Ipv4Dst | Field::ArpSpa | Field::ArpTpa => Kind::Ipv4,
            Field::TunSrc | Field::TunDst => Kind::Ipv4,
            Field::Ipv6Src | Field::Ipv6Dst | Field::NdTarget => Kind::Ipv6,
            Field::TunIpv6Src | Field::TunIpv6Dst => Kind::Ipv6,
            Field::InPort => Kind::Port,
            Field::CtState => Kind::CtState,
            Field::TcpFlags => Kind::TcpFlags,
            Field::VlanVid | Field::VlanPcp | Field::IpDscp | Field::IpEcn | Field::IpTtl => {
                Kind::Decimal
            }
            Field::IpProto | Field::ArpOp | Field::CtZone => Kind::Decimal,
            Field::TcpSrc | Field::TcpDst | Field::UdpSrc | Field::UdpDst => Kind::Decimal,
            Field::SctpSrc | Field::SctpDst => Kind::Decimal,
            Field::Icmpv4Type | Field::Icmpv4Code | Field::Icmpv6Type | Field::Icmpv6Code => {
                Kind::Decimal
            }
            _ => Kind::Hex,
        }
    }
}

/// One field of a match, or the target of a set-field: value and optional
/// mask, both `field.width()` bytes, big-endian.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MatchField {
    pub field: Field,
    pub value: Vec<u8>,
    pub mask: Option<Vec<u8>>,
}

impl MatchField {
    /// The value as an unsigned integer (fields up to 16 bytes).
    pub fn value_u128(&self) -> u128 {
        be_u128(&self.value)
    }

    /// The mask as an unsigned integer; all ones of the field's width when
    /// there is no mask.
    pub fn mask_u128(&self) -> u128 {
        match &self.mask {
            Some(m) => be_u128(m),
            None => ones(self.value.len()),
        }
    }
}

pub(crate) fn be_u128(bytes: &[u8]) -> u128 {
    bytes
        .iter()
        .rev()
        .take(16)
        .rev()
        .fold(0u128, |acc, b| (acc << 8) | u128::from(*b))
}

pub(crate) fn ones(width: usize) -> u128 {
    if width >= 16 {
        u128::MAX
    } else {
        (1u128 << (8 * width)) - 1
    }
}

fn to_be(v: u128, width: usize) -> Vec<u8> {
    let all = v.to_be_bytes();
    all[16 - width.min(16)..].to_vec()
}

/// Encodes one OXM TLV (value and optional mask).
pub(crate) fn put_oxm(out: &mut Vec<u8>, mf: &MatchField) -> Result<()> {
    let (id, _) = mf.field.oxm();
    let payload = mf.value.len() + mf.mask.as_ref().map_or(0, Vec::len);
    let exp_len = if id.experimenter.is_some() { 4 } else { 0 };
    let len = u8::try_from(payload + exp_len).map_err(|_| Error::TooLong {
        what: "OXM field",
        len: payload,
        max: 255,
    })?;
    out.put_u16(id.class);
    out.put_u8((id.field << 1) | u8::from(mf.mask.is_some()));
    out.put_u8(len);
    if let Some(e) = id.experimenter {
        out.put_u32(e);
    }
    out.extend_from_slice(&mf.value);
    if let Some(m) = &mf.mask {
        out.extend_from_slice(m);
    }
    Ok(())
}

/// Decodes one OXM TLV. Known fields must have their exact width; unknown
/// fields are kept with whatever width they declare.
pub(crate) fn take_oxm(r: &mut Reader<'_>) -> Result<MatchField> {
    let class = r.u16()?;
    let fh = r.u8()?;
    let len = usize::from(r.u8()?);
    let mut body = r.sub(len, "OXM field")?;
    let experimenter = if class == class::EXPERIMENTER {
        Some(body.u32()?)
    } else {
        None
    };
    let id = OxmId {
        class,
        field: fh >> 1,
        experimenter,
    };
    let has_mask = fh & 1 == 1;
    let (field, width) = Field::from_oxm(id);
    let payload = body.remaining();
    let width = if width == 0 {
        if has_mask {
            if payload % 2 != 0 {
                return Err(Error::BadLength {
                    what: "masked OXM field",
                    len: payload,
                });
            }
            payload / 2
        } else {
            payload
        }
    } else {
        width
    };
    if payload != width * (1 + usize::from(has_mask)) {
        return Err(Error::malformed(
            "OXM field",
            format!("{} has {payload} bytes, expected width {width}", field.name()),
        ));
    }
    let value = body.bytes(width)?.to_vec();
    let mask = if has_mask {
        Some(body.bytes(width)?.to_vec())
    } else {
        None
    };
    // NXM_OF_IN_PORT is a 16-bit OpenFlow 1.0 port number.
    if field == Field::InPort && width == 2 {
        let port = (be_u128(&value) & 0xffff) as u16;
        return Ok(MatchField {
            field,
            value: widen_port(port).to_be_bytes().to_vec(),
            mask: None,
        });
    }
    Ok(MatchField { field, value, mask })
}

/// Maps an OpenFlow 1.0 (16-bit) port number to the 32-bit space: reserved
/// ports `0xff00..` become `0xffffff00..`.
pub fn widen_port(port: u16) -> u32 {
    if port >= 0xff00 {
        0xffff_0000 | u32::from(port)
    } else {
        u32::from(port)
    }
}

/// The 16-bit form of a 32-bit port (for Nicira actions), if it has one.
pub fn narrow_port(port: u32) -> Option<u16> {
    if port >= 0xffff_ff00 {
        Some((port & 0xffff) as u16)
    } else {
        u16::try_from(port).ok().filter(|p| *p < 0xff00)
    }
}

/// An Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl std::str::FromStr for MacAddr {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for slot in &mut out {
            let p = parts
                .next()
                .ok_or_else(|| Error::InvalidArgument(format!("bad MAC {s:?}")))?;
            *slot = u8::from_str_radix(p, 16)
                .map_err(|_| Error::InvalidArgument(format!("bad MAC {s:?}")))?;
        }
        if parts.next().is_some() {
            return Err(Error::InvalidArgument(format!("bad MAC {s:?}")));
        }
        Ok(MacAddr(out))
    }
}

/// `ofp_match`: an ordered set of fields (see the module docs for the
/// canonical form).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Match {
    fields: Vec<MatchField>,
}

/// OXM `VLAN_VID` bit meaning "a VLAN header is present".
pub const OFPVID_PRESENT: u16 = 0x1000;

/// Conntrack state bits (`ct_state`).
pub mod ct_state {
    pub const NEW: u32 = 0x01;
    pub const EST: u32 = 0x02;
    pub const REL: u32 = 0x04;
    pub const RPL: u32 = 0x08;
    pub const INV: u32 = 0x10;
    pub const TRK: u32 = 0x20;
    pub const SNAT: u32 = 0x40;
    pub const DNAT: u32 = 0x80;
}

impl Match {
    /// The empty match (matches every packet).
    pub fn new() -> Self {
        Match::default()
    }

    /// Fields in canonical order.
    pub fn fields(&self) -> &[MatchField] {
        &self.fields
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The entry for `field`, if matched.
    pub fn get(&self, field: Field) -> Option<&MatchField> {
        self.fields
            .binary_search_by(|f| f.field.cmp(&field))
            .ok()
            .and_then(|i| self.fields.get(i))
    }

    /// Value of `field` as an integer, if matched.
    pub fn value(&self, field: Field) -> Option<u128> {
        self.get(field).map(MatchField::value_u128)
    }

    /// Removes `field`.
    pub fn remove(&mut self, field: Field) {
        self.fields.retain(|f| f.field != field);
    }

    /// Sets `field` to `value` under `mask` (integers, big-endian of the
    /// field's width). Normalises: the value is ANDed with the mask, an
    /// all-ones mask is dropped, an all-zero mask removes the field, and
    /// `xreg`/`xxreg` are split into `reg`s.
    pub fn set_masked(mut self, field: Field, value: u128, mask: u128) -> Self {
        self.insert(field, value, mask);
        self
    }

    /// Sets `field` to exactly `value`.
    pub fn set(self, field: Field, value: u128) -> Self {
        let w = field.width();
        self.set_masked(field, value, ones(w))
    }

    fn insert(&mut self, field: Field, value: u128, mask: u128) {
        match field {
            Field::Xreg(n) => {
                for half in 0..2u8 {
                    let shift = 32 * u32::from(1 - half);
                    let reg = Field::Reg(n.saturating_mul(2).saturating_add(half));
                    self.insert(reg, (value >> shift) & 0xffff_ffff, (mask >> shift) & 0xffff_ffff);
                }
                return;
            }
            Field::Xxreg(n) => {
                for quarter in 0..4u8 {
                    let shift = 32 * u32::from(3 - quarter);
                    let reg = Field::Reg(n.saturating_mul(4).saturating_add(quarter));
                    self.insert(reg, (value >> shift) & 0xffff_ffff, (mask >> shift) & 0xffff_ffff);
                }
                return;
            }
            _ => {}
        }
        let width = field.width();
        if width == 0 {
            return; // unknown fields go through `insert_raw`
        }
        // OVS defines 8 conntrack state bits; a mask covering all of them
        // is an exact match (it reports exact ct_state matches that way).
        let full = if field == Field::CtState { 0xff } else { ones(width) };
        let mask = mask & full;
        self.remove(field);
        if mask == 0 {
            return;
        }
        let value = value & mask;
        let mf = MatchField {
            field,
            value: to_be(value, width),
            mask: (mask != full).then(|| to_be(mask, width)),
        };
        self.insert_field(mf);
    }

    fn insert_field(&mut self, mf: MatchField) {
        match self.fields.binary_search_by(|f| f.field.cmp(&mf.field)) {
            Ok(i) => {
                if let Some(slot) = self.fields.get_mut(i) {
                    *slot = mf;
                }
            }
            Err(i) => self.fields.insert(i, mf),
        }
    }

    /// Adds a decoded field, normalising it like [`Match::set_masked`].
    pub fn push(&mut self, mf: MatchField) {
        if mf.field.width() == 0 {
            self.insert_field(mf);
            return;
        }
        let value = mf.value_u128();
        let mask = mf.mask_u128();
        self.insert(mf.field, value, mask);
    }

    // Typed builders. Each replaces the field if already set.

    pub fn in_port(self, port: u32) -> Self {
        self.set(Field::InPort, port.into())
    }
    pub fn eth_type(self, t: u16) -> Self {
        self.set(Field::EthType, t.into())
    }
    pub fn eth_src(self, mac: MacAddr) -> Self {
        self.set(Field::EthSrc, be_u128(&mac.0))
    }
    pub fn eth_dst(self, mac: MacAddr) -> Self {
        self.set(Field::EthDst, be_u128(&mac.0))
    }
    pub fn eth_src_masked(self, mac: MacAddr, mask: MacAddr) -> Self {
        self.set_masked(Field::EthSrc, be_u128(&mac.0), be_u128(&mask.0))
    }
    pub fn eth_dst_masked(self, mac: MacAddr, mask: MacAddr) -> Self {
        self.set_masked(Field::EthDst, be_u128(&mac.0), be_u128(&mask.0))
    }
    /// Packets tagged with VLAN `vid` (the OFPVID_PRESENT bit is added).
    pub fn vlan_vid(self, vid: u16) -> Self {
        self.set(Field::VlanVid, u128::from(OFPVID_PRESENT | (vid & 0xfff)))
    }
    /// Packets without a VLAN header.
    pub fn no_vlan(self) -> Self {
        self.set(Field::VlanVid, 0)
    }
    pub fn vlan_pcp(self, pcp: u8) -> Self {
        self.set(Field::VlanPcp, u128::from(pcp & 7))
    }
    pub fn ip_proto(self, proto: u8) -> Self {
        self.set(Field::IpProto, proto.into())
    }
    pub fn ip_dscp(self, dscp: u8) -> Self {
        self.set(Field::IpDscp, u128::from(dscp & 0x3f))
    }
    pub fn ip_ecn(self, ecn: u8) -> Self {
        self.set(Field::IpEcn, u128::from(ecn & 3))
    }
    pub fn ip_ttl(self, ttl: u8) -> Self {
        self.set(Field::IpTtl, ttl.into())
    }
    pub fn ipv4_src(self, a: Ipv4Addr) -> Self {
        self.set(Field::Ipv4Src, u32::from(a).into())
    }
    pub fn ipv4_dst(self, a: Ipv4Addr) -> Self {
        self.set(Field::Ipv4Dst, u32::from(a).into())
    }
    pub fn ipv4_src_masked(self, a: Ipv4Addr, m: Ipv4Addr) -> Self {
        self.set_masked(Field::Ipv4Src, u32::from(a).into(), u32::from(m).into())
    }
    pub fn ipv4_dst_masked(self, a: Ipv4Addr, m: Ipv4Addr) -> Self {
        self.set_masked(Field::Ipv4Dst, u32::from(a).into(), u32::from(m).into())
    }
    /// `nw_src=A/PREFIX`.
    pub fn ipv4_src_prefix(self, a: Ipv4Addr, prefix: u8) -> Self {
        self.set_masked(Field::Ipv4Src, u32::from(a).into(), prefix_mask(prefix, 32))
    }
    /// `nw_dst=A/PREFIX`.
    pub fn ipv4_dst_prefix(self, a: Ipv4Addr, prefix: u8) -> Self {
        self.set_masked(Field::Ipv4Dst, u32::from(a).into(), prefix_mask(prefix, 32))
    }
    pub fn ipv6_src(self, a: Ipv6Addr) -> Self {
        self.set(Field::Ipv6Src, u128::from(a))
    }
    pub fn ipv6_dst(self, a: Ipv6Addr) -> Self {
        self.set(Field::Ipv6Dst, u128::from(a))
    }
    pub fn ipv6_src_masked(self, a: Ipv6Addr, m: Ipv6Addr) -> Self {
        self.set_masked(Field::Ipv6Src, u128::from(a), u128::from(m))
    }
    pub fn ipv6_dst_masked(self, a: Ipv6Addr, m: Ipv6Addr) -> Self {
        self.set_masked(Field::Ipv6Dst, u128::from(a), u128::from(m))
    }
    pub fn ipv6_src_prefix(self, a: Ipv6Addr, prefix: u8) -> Self {
        self.set_masked(Field::Ipv6Src, u128::from(a), prefix_mask(prefix, 128))
    }
    pub fn ipv6_dst_prefix(self, a: Ipv6Addr, prefix: u8) -> Self {
        self.set_masked(Field::Ipv6Dst, u128::from(a), prefix_mask(prefix, 128))
    }
    pub fn ipv6_label(self, label: u32) -> Self {
        self.set(Field::Ipv6Label, u128::from(label & 0xf_ffff))
    }
    pub fn tcp_src(self, p: u16) -> Self {
        self.set(Field::TcpSrc, p.into())
    }
    pub fn tcp_dst(self, p: u16) -> Self {
        self.set(Field::TcpDst, p.into())
    }
    pub fn tcp_dst_masked(self, p: u16, m: u16) -> Self {
        self.set_masked(Field::TcpDst, p.into(), m.into())
    }
    pub fn udp_src(self, p: u16) -> Self {
        self.set(Field::UdpSrc, p.into())
    }
    pub fn udp_dst(self, p: u16) -> Self {
        self.set(Field::UdpDst, p.into())
    }
    pub fn sctp_src(self, p: u16) -> Self {
        self.set(Field::SctpSrc, p.into())
    }
    pub fn sctp_dst(self, p: u16) -> Self {
        self.set(Field::SctpDst, p.into())
    }
    pub fn icmp_type(self, t: u8) -> Self {
        self.set(Field::Icmpv4Type, t.into())
    }
    pub fn icmp_code(self, c: u8) -> Self {
        self.set(Field::Icmpv4Code, c.into())
    }
    pub fn icmpv6_type(self, t: u8) -> Self {
        self.set(Field::Icmpv6Type, t.into())
    }
    pub fn icmpv6_code(self, c: u8) -> Self {
        self.set(Field::Icmpv6Code, c.into())
    }
    pub fn arp_op(self, op: u16) -> Self {
        self.set(Field::ArpOp, op.into())
    }
    pub fn arp_spa(self, a: Ipv4Addr) -> Self {
        self.set(Field::ArpSpa, u32::from(a).into())
    }
    pub fn arp_tpa(self, a: Ipv4Addr) -> Self {
        self.set(Field::ArpTpa, u32::from(a).into())
    }
    pub fn arp_sha(self, mac: MacAddr) -> Self {
        self.set(Field::ArpSha, be_u128(&mac.0))
    }
    pub fn arp_tha(self, mac: MacAddr) -> Self {
        self.set(Field::ArpTha, be_u128(&mac.0))
    }
    pub fn nd_target(self, a: Ipv6Addr) -> Self {
        self.set(Field::NdTarget, u128::from(a))
    }
    /// `ct_state=` with explicit bits and mask (see [`ct_state`]); e.g.
    /// `+trk-new` is `ct_state(TRK, TRK | NEW)`.
    pub fn ct_state(self, bits: u32, mask: u32) -> Self {
        self.set_masked(Field::CtState, bits.into(), mask.into())
    }
    pub fn ct_zone(self, zone: u16) -> Self {
        self.set(Field::CtZone, zone.into())
    }
    pub fn ct_mark(self, mark: u32) -> Self {
        self.set(Field::CtMark, mark.into())
    }
    pub fn ct_mark_masked(self, mark: u32, mask: u32) -> Self {
        self.set_masked(Field::CtMark, mark.into(), mask.into())
    }
    pub fn ct_label(self, label: u128) -> Self {
        self.set(Field::CtLabel, label)
    }
    pub fn ct_label_masked(self, label: u128, mask: u128) -> Self {
        self.set_masked(Field::CtLabel, label, mask)
    }
    /// `regN` (0..=15).
    pub fn reg(self, n: u8, value: u32) -> Self {
        self.set(Field::Reg(n & 15), value.into())
    }
    pub fn reg_masked(self, n: u8, value: u32, mask: u32) -> Self {
        self.set_masked(Field::Reg(n & 15), value.into(), mask.into())
    }
    /// `xxregN` (0..=3): stored as `reg4N`..`reg4N+3`.
    pub fn xxreg(self, n: u8, value: u128) -> Self {
        self.set(Field::Xxreg(n & 3), value)
    }
    pub fn metadata(self, v: u64) -> Self {
        self.set(Field::Metadata, v.into())
    }
    pub fn metadata_masked(self, v: u64, m: u64) -> Self {
        self.set_masked(Field::Metadata, v.into(), m.into())
    }
    pub fn tunnel_id(self, v: u64) -> Self {
        self.set(Field::TunnelId, v.into())
    }
    pub fn tunnel_id_masked(self, v: u64, m: u64) -> Self {
        self.set_masked(Field::TunnelId, v.into(), m.into())
    }
    pub fn tun_src(self, a: Ipv4Addr) -> Self {
        self.set(Field::TunSrc, u32::from(a).into())
    }
    pub fn tun_dst(self, a: Ipv4Addr) -> Self {
        self.set(Field::TunDst, u32::from(a).into())
    }
    pub fn tun_ipv6_src(self, a: Ipv6Addr) -> Self {
        self.set(Field::TunIpv6Src, u128::from(a))
    }
    pub fn tun_ipv6_dst(self, a: Ipv6Addr) -> Self {
        self.set(Field::TunIpv6Dst, u128::from(a))
    }
    pub fn pkt_mark(self, v: u32) -> Self {
        self.set(Field::PktMark, v.into())
    }
    pub fn pkt_mark_masked(self, v: u32, m: u32) -> Self {
        self.set_masked(Field::PktMark, v.into(), m.into())
    }

    // Protocol shorthands, as `ovs-ofctl` spells them.

    /// `ip`: eth_type 0x0800.
    pub fn ip(self) -> Self {
        self.eth_type(0x0800)
    }
    /// `ipv6`: eth_type 0x86dd.
    pub fn ipv6(self) -> Self {
        self.eth_type(0x86dd)
    }
    /// `arp`: eth_type 0x0806.
    pub fn arp(self) -> Self {
        self.eth_type(0x0806)
    }
    pub fn tcp(self) -> Self {
        self.ip().ip_proto(6)
    }
    pub fn udp(self) -> Self {
        self.ip().ip_proto(17)
    }
    pub fn sctp(self) -> Self {
        self.ip().ip_proto(132)
    }
    pub fn icmp(self) -> Self {
        self.ip().ip_proto(1)
    }
    pub fn tcp6(self) -> Self {
        self.ipv6().ip_proto(6)
    }
    pub fn udp6(self) -> Self {
        self.ipv6().ip_proto(17)
    }
    pub fn icmp6(self) -> Self {
        self.ipv6().ip_proto(58)
    }

    /// Encodes `ofp_match` (type OXM), padded to 8 bytes.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        out.put_u16(1); // OFPMT_OXM
        out.put_u16(0);
        for f in &self.fields {
            put_oxm(out, f)?;
        }
        let len = super::buf::len16("match", out.len() - start)?;
        out.set_u16(start + 2, len);
        out.pad8_from(start);
        Ok(())
    }

    /// Decodes `ofp_match` including its padding.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Match> {
        let mtype = r.u16()?;
        let len = usize::from(r.u16()?);
        if mtype != 1 {
            return Err(Error::malformed("match", format!("type {mtype} is not OXM")));
        }
        if len < 4 {
            return Err(Error::BadLength { what: "match", len });
        }
        let mut body = r.sub(len - 4, "match")?;
        r.skip(pad8(len) - len)?;
        let mut m = Match::new();
        while !body.is_empty() {
            m.push(take_oxm(&mut body)?);
        }
        Ok(m)
    }

    /// Encoded size, for callers that pre-size buffers.
    pub(crate) fn encoded_len(&self) -> usize {
        let fields: usize = self
            .fields
            .iter()
            .map(|f| 4 + f.value.len() + f.mask.as_ref().map_or(0, Vec::len))
            .sum();
        pad8(4 + fields)
    }
}

/// A mask of `prefix` leading ones in a `bits`-wide field.
pub(crate) fn prefix_mask(prefix: u8, bits: u32) -> u128 {
    let prefix = u32::from(prefix).min(bits);
    if prefix == 0 {
        return 0;
    }
    let full = if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    full & !(full >> prefix)
}
