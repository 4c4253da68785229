//! [`Match`]: the canonical, comparable form of an `ofp_match`.
//!
//! Open vSwitch accepts both encodings inside an OpenFlow 1.3/1.5
//! `ofp_match` and answers with whichever it prefers (e.g. registers come
//! back as 64-bit `xreg`s in 1.5 dumps, exact `ct_state` matches come back
//! masked with the 8 defined bits). A `Match` therefore keeps one canonical
//! form: each field once, sorted so prerequisites precede dependants (OVS
//! checks prerequisites in order), values ANDed with their mask, no
//! all-ones masks, and 64/128-bit register fields split into 32-bit `reg`s.
//! Two matches that OVS treats alike then compare equal.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::buf::{pad8, Put, Reader};
use super::oxm::{
    be_u128, ones, prefix_mask, put_oxm, take_oxm, to_be, Field, MacAddr, MatchField,
    OFPVID_PRESENT,
};
use crate::error::{Error, Result};

/// `ofp_match`: an ordered set of fields (see the module docs for the
/// canonical form).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Match {
    fields: Vec<MatchField>,
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
                    self.insert(
                        reg,
                        (value >> shift) & 0xffff_ffff,
                        (mask >> shift) & 0xffff_ffff,
                    );
                }
                return;
            }
            Field::Xxreg(n) => {
                for quarter in 0..4u8 {
                    let shift = 32 * u32::from(3 - quarter);
                    let reg = Field::Reg(n.saturating_mul(4).saturating_add(quarter));
                    self.insert(
                        reg,
                        (value >> shift) & 0xffff_ffff,
                        (mask >> shift) & 0xffff_ffff,
                    );
                }
                return;
            }
            _ => {}
        }
        let width = field.width();
        if width == 0 {
            return; // unknown fields go through `push`
        }
        // A mask covering every meaningful bit (all 8 conntrack state bits,
        // the 13 bits of vlan_vid, ...) is an exact match.
        let full = field.value_mask();
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
            return Err(Error::malformed(
                "match",
                format!("type {mtype} is not OXM"),
            ));
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
