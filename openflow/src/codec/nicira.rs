//! Vendor messages: bundles (OpenFlow 1.4+ and the ONF extension for 1.3)
//! and Nicira's `NXT_CT_FLUSH` (conntrack flush, Open vSwitch 3.1).

use std::net::{IpAddr, Ipv6Addr};

use super::buf::{check_len, pad8, Put, Reader};
use crate::error::{Error, Result};

/// ONF experimenter message types for bundles in OpenFlow 1.3.
pub(crate) const ONFT_BUNDLE_CONTROL: u32 = 2300;
pub(crate) const ONFT_BUNDLE_ADD_MESSAGE: u32 = 2301;
/// Nicira `NXT_CT_FLUSH` subtype.
pub(crate) const NXT_CT_FLUSH: u32 = 32;
/// Nicira `NXT_CT_FLUSH_ZONE` subtype (older, zone only).
pub(crate) const NXT_CT_FLUSH_ZONE: u32 = 29;

/// Bundle control message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BundleCtrlType {
    OpenRequest,
    OpenReply,
    CloseRequest,
    CloseReply,
    CommitRequest,
    CommitReply,
    DiscardRequest,
    DiscardReply,
}

impl BundleCtrlType {
    fn code(self) -> u16 {
        self as u16
    }
    fn from_code(c: u16) -> Result<Self> {
        use BundleCtrlType::*;
        Ok(match c {
            0 => OpenRequest,
            1 => OpenReply,
            2 => CloseRequest,
            3 => CloseReply,
            4 => CommitRequest,
            5 => CommitReply,
            6 => DiscardRequest,
            7 => DiscardReply,
            _ => return Err(Error::malformed("bundle control", format!("type {c}"))),
        })
    }
}

/// Bundle flags.
pub mod bundle_flags {
    /// All messages apply, or none.
    pub const ATOMIC: u16 = 1;
    /// Messages apply in order.
    pub const ORDERED: u16 = 2;
}

/// `OFPT_BUNDLE_CONTROL` (or ONF 2300 in 1.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BundleControl {
    pub bundle_id: u32,
    pub ctrl_type: BundleCtrlType,
    pub flags: u16,
    /// Properties, undecoded.
    pub properties: Vec<u8>,
}

impl BundleControl {
    pub fn new(bundle_id: u32, ctrl_type: BundleCtrlType, flags: u16) -> Self {
        BundleControl {
            bundle_id,
            ctrl_type,
            flags,
            properties: Vec::new(),
        }
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.bundle_id);
        out.put_u16(self.ctrl_type.code());
        out.put_u16(self.flags);
        out.extend_from_slice(&self.properties);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Ok(BundleControl {
            bundle_id: r.u32()?,
            ctrl_type: BundleCtrlType::from_code(r.u16()?)?,
            flags: r.u16()?,
            properties: r.rest().to_vec(),
        })
    }
}

/// Which connection a conntrack flush matches: all fields optional
/// (zero/None = wildcard). Addresses are IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CtTuple {
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub src_port: u16,
    pub dst_port: u16,
    pub icmp_id: u16,
    pub icmp_type: u8,
    pub icmp_code: u8,
}

/// `NXT_CT_FLUSH`: flush conntrack entries of a zone and/or matching a
/// 5-tuple (what `ovs-ofctl ct-flush` sends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CtFlush {
    /// `None`: the default zone (0) as OVS treats a missing zone.
    pub zone: Option<u16>,
    /// IP protocol; 0 = any. ICMP (1/58) makes the tuple use icmp fields.
    pub ip_proto: u8,
    pub orig: CtTuple,
    pub reply: CtTuple,
}

impl CtFlush {
    /// Flushes every entry of `zone`.
    pub fn zone(zone: u16) -> Self {
        CtFlush {
            zone: Some(zone),
            ..CtFlush::default()
        }
    }

    fn is_icmp(&self) -> bool {
        self.ip_proto == 1 || self.ip_proto == 58
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u8(self.ip_proto);
        out.put_zeros(7);
        self.put_tuple(out, 0, &self.orig);
        self.put_tuple(out, 1, &self.reply);
        if let Some(z) = self.zone {
            out.put_u16(2);
            out.put_u16(8);
            out.put_u16(z);
            out.put_zeros(2);
        }
    }

    fn put_tuple(&self, out: &mut Vec<u8>, ptype: u16, t: &CtTuple) {
        let mut nested = Vec::new();
        let addr = |nested: &mut Vec<u8>, ptype: u16, a: Option<IpAddr>| {
            if let Some(a) = a {
                let v6 = match a {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => v6,
                };
                if !v6.is_unspecified() {
                    nested.put_u16(ptype);
                    nested.put_u16(20);
                    nested.extend_from_slice(&v6.octets());
                    nested.put_zeros(4);
                }
            }
        };
        addr(&mut nested, 0, t.src);
        addr(&mut nested, 1, t.dst);
        let u16prop = |nested: &mut Vec<u8>, ptype: u16, v: u16| {
            nested.put_u16(ptype);
            nested.put_u16(8);
            nested.put_u16(v);
            nested.put_zeros(2);
        };
        if self.is_icmp() {
            u16prop(&mut nested, 4, t.icmp_id);
            for (ptype, v) in [(5u16, t.icmp_type), (6, t.icmp_code)] {
                nested.put_u16(ptype);
                nested.put_u16(8);
                nested.put_u8(v);
                nested.put_zeros(3);
            }
        } else {
            if t.src_port != 0 {
                u16prop(&mut nested, 2, t.src_port);
            }
            if t.dst_port != 0 {
                u16prop(&mut nested, 3, t.dst_port);
            }
        }
        if !nested.is_empty() {
            out.put_u16(ptype);
            out.put_u16((8 + nested.len()) as u16);
            out.put_zeros(4);
            out.extend_from_slice(&nested);
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let mut f = CtFlush {
            ip_proto: r.u8()?,
            ..CtFlush::default()
        };
        r.skip(7)?;
        while !r.is_empty() {
            let ptype = r.u16()?;
            let plen = check_len(
                "ct flush property",
                usize::from(r.u16()?),
                4,
                r.remaining() + 4,
            )?;
            let mut p = r.sub(plen - 4, "ct flush property")?;
            r.skip((pad8(plen) - plen).min(r.remaining()))?;
            match ptype {
                0 | 1 => {
                    p.skip(4.min(p.remaining()))?;
                    let t = decode_tuple(&mut p)?;
                    if ptype == 0 {
                        f.orig = t;
                    } else {
                        f.reply = t;
                    }
                }
                2 => f.zone = Some(p.u16()?),
                _ => return Err(Error::malformed("ct flush", format!("property {ptype}"))),
            }
        }
        f.orig = f.meaningful(f.orig);
        f.reply = f.meaningful(f.reply);
        Ok(f)
    }

    /// What of a received tuple the flush means, which is what
    /// [`CtFlush::encode`] writes: ports or ICMP fields as the protocol
    /// uses (OVS keeps the two in the same storage), and an address only
    /// when it is not `::` (a wildcard).
    fn meaningful(&self, mut t: CtTuple) -> CtTuple {
        if self.is_icmp() {
            t.src_port = 0;
            t.dst_port = 0;
        } else {
            t.icmp_id = 0;
            t.icmp_type = 0;
            t.icmp_code = 0;
        }
        let wildcard = |a: &IpAddr| matches!(a, IpAddr::V6(v6) if v6.is_unspecified());
        t.src = t.src.filter(|a| !wildcard(a));
        t.dst = t.dst.filter(|a| !wildcard(a));
        t
    }
}

fn decode_tuple(r: &mut Reader<'_>) -> Result<CtTuple> {
    let mut t = CtTuple::default();
    while !r.is_empty() {
        let ptype = r.u16()?;
        let plen = check_len(
            "ct tuple property",
            usize::from(r.u16()?),
            4,
            r.remaining() + 4,
        )?;
        let mut p = r.sub(plen - 4, "ct tuple property")?;
        r.skip((pad8(plen) - plen).min(r.remaining()))?;
        let addr = |p: &mut Reader<'_>| -> Result<Option<IpAddr>> {
            let v6 = Ipv6Addr::from(p.array::<16>()?);
            Ok(Some(match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }))
        };
        match ptype {
            0 => t.src = addr(&mut p)?,
            1 => t.dst = addr(&mut p)?,
            2 => t.src_port = p.u16()?,
            3 => t.dst_port = p.u16()?,
            4 => t.icmp_id = p.u16()?,
            5 => t.icmp_type = p.u8()?,
            6 => t.icmp_code = p.u8()?,
            _ => return Err(Error::malformed("ct tuple", format!("property {ptype}"))),
        }
    }
    Ok(t)
}
