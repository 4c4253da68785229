//! Match fields on the wire: OXM (OpenFlow 1.2+) and NXM (Nicira) TLVs.
//!
//! [`Field`] names every field this crate understands; [`Field::from_oxm`]
//! accepts both the OXM and the NXM identity of a field (OVS answers with
//! either), and anything else decodes to `Field::Unknown` with its bytes.

use super::buf::{Put, Reader};
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

    /// The bits of the field that carry meaning; a mask covering all of
    /// them is an exact match (OVS reports such matches without a mask).
    pub fn value_mask(self) -> u128 {
        match self {
            Field::CtState => 0xff,
            Field::VlanVid => 0x1fff,
            Field::VlanPcp => 0x07,
            Field::IpDscp => 0x3f,
            Field::IpEcn => 0x03,
            Field::Ipv6Label => 0xf_ffff,
            Field::TcpFlags => 0x0fff,
            f => ones(f.width()),
        }
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

    /// The mask as an unsigned integer; when there is no mask, every
    /// meaningful bit of the field ([`Field::value_mask`]).
    pub fn mask_u128(&self) -> u128 {
        match &self.mask {
            Some(m) => be_u128(m),
            None if self.field.width() == 0 => ones(self.value.len()),
            None => self.field.value_mask(),
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

pub(crate) fn to_be(v: u128, width: usize) -> Vec<u8> {
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
            format!(
                "{} has {payload} bytes, expected width {width}",
                field.name()
            ),
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
