//! Actions: the standard OpenFlow 1.3/1.5 ones plus the Nicira extensions
//! Open vSwitch pipelines rely on (`resubmit`, `ct`, `nat`).
//!
//! Anything else decodes to [`Action::Unknown`] holding the raw bytes, so a
//! dump of flows written by another controller still decodes, prints
//! recognisably and re-encodes byte for byte.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::buf::{self, check_len, len16, Put, Reader};
use super::oxm::{narrow_port, put_oxm, take_oxm, widen_port, Field, MatchField, NX_EXPERIMENTER};
use crate::error::{Error, Result};

/// Reserved port numbers (OpenFlow 1.1+ 32-bit space).
pub mod port {
    /// Largest ordinary port number + 1.
    pub const MAX: u32 = 0xffff_ff00;
    pub const IN_PORT: u32 = 0xffff_fff8;
    pub const TABLE: u32 = 0xffff_fff9;
    pub const NORMAL: u32 = 0xffff_fffa;
    pub const FLOOD: u32 = 0xffff_fffb;
    pub const ALL: u32 = 0xffff_fffc;
    pub const CONTROLLER: u32 = 0xffff_fffd;
    pub const LOCAL: u32 = 0xffff_fffe;
    /// "Any port" (wildcard in requests); also "no port".
    pub const ANY: u32 = 0xffff_ffff;
}

/// Nicira action subtypes used here.
mod nxast {
    pub const RESUBMIT: u16 = 1;
    pub const RESUBMIT_TABLE: u16 = 14;
    pub const DEC_TTL: u16 = 18;
    pub const CT: u16 = 35;
    pub const NAT: u16 = 36;
}

/// Nesting limit for actions inside `ct(exec(...))`: OVS allows one level;
/// the limit keeps hostile input from recursing deeply.
const MAX_DEPTH: usize = 2;

/// One action.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// `output:PORT`; `max_len` matters only for `CONTROLLER`.
    Output { port: u32, max_len: u16 },
    /// `group:ID`.
    Group(u32),
    /// `set_field:VALUE[/MASK]->FIELD` (masks need OpenFlow 1.5).
    SetField(MatchField),
    /// `push_vlan:ETHERTYPE`.
    PushVlan(u16),
    /// `pop_vlan`.
    PopVlan,
    /// `dec_ttl` (OFPAT_DEC_NW_TTL).
    DecTtl,
    /// `resubmit([PORT],[TABLE])` (NXAST_RESUBMIT_TABLE). `None` means the
    /// current in_port / the current table (`Some(port::IN_PORT)` is the
    /// same as `None` and reads back as `None`).
    Resubmit {
        in_port: Option<u32>,
        table: Option<u8>,
    },
    /// `ct(...)` (NXAST_CT).
    Ct(Ct),
    /// `nat(...)` (NXAST_NAT); valid only as the first action inside
    /// [`Ct::actions`].
    Nat(Nat),
    /// An action this crate does not interpret: its complete encoding.
    Unknown { raw: Vec<u8> },
}

impl Action {
    /// `output:PORT`.
    pub fn output(port: u32) -> Action {
        Action::Output { port, max_len: 0 }
    }
    /// `CONTROLLER:MAX_LEN`.
    pub fn controller(max_len: u16) -> Action {
        Action::Output {
            port: port::CONTROLLER,
            max_len,
        }
    }
    /// `NORMAL`.
    pub fn normal() -> Action {
        Action::output(port::NORMAL)
    }
    /// `LOCAL`.
    pub fn local() -> Action {
        Action::output(port::LOCAL)
    }
    /// `IN_PORT`.
    pub fn in_port() -> Action {
        Action::output(port::IN_PORT)
    }
    /// `resubmit(,TABLE)`.
    pub fn resubmit(table: u8) -> Action {
        Action::Resubmit {
            in_port: None,
            table: Some(table),
        }
    }
    /// `set_field:VALUE->FIELD` from an integer of the field's width.
    pub fn set_field(field: Field, value: u128) -> Action {
        let w = field.width();
        let bytes = value.to_be_bytes();
        Action::SetField(MatchField {
            field,
            value: bytes[16 - w.min(16)..].to_vec(),
            mask: None,
        })
    }
    /// `set_field:VALUE/MASK->FIELD` (OpenFlow 1.5).
    pub fn set_field_masked(field: Field, value: u128, mask: u128) -> Action {
        let w = field.width().min(16);
        Action::SetField(MatchField {
            field,
            value: (value & mask).to_be_bytes()[16 - w..].to_vec(),
            mask: Some(mask.to_be_bytes()[16 - w..].to_vec()),
        })
    }
}

/// Where `ct` takes its zone from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtZone {
    /// `zone=N` (0 means the default zone and is not printed).
    Imm(u16),
    /// `zone=NXM_NX_REGn[ofs..ofs+nbits-1]`: bits of a field (NXM header).
    Field {
        nxm_header: u32,
        ofs: u16,
        nbits: u16,
    },
}

impl Default for CtZone {
    fn default() -> Self {
        CtZone::Imm(0)
    }
}

/// `ct(...)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Ct {
    pub commit: bool,
    pub force: bool,
    pub zone: CtZone,
    /// `table=N`: recirculate to this table after conntrack.
    pub table: Option<u8>,
    /// Application layer gateway (`alg=ftp` is 21); 0 for none.
    pub alg: u16,
    /// `nat(...)` first, then `exec(...)` actions (set_field of ct_mark /
    /// ct_label).
    pub actions: Vec<Action>,
}

/// NAT direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NatKind {
    Src,
    Dst,
}

/// Address range of a NAT action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NatAddrs {
    V4 {
        min: Ipv4Addr,
        max: Option<Ipv4Addr>,
    },
    V6 {
        min: Ipv6Addr,
        max: Option<Ipv6Addr>,
    },
}

/// `nat[(src|dst[=ADDR[-ADDR][:PORT[-PORT]]][,persistent,hash,random])]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Nat {
    /// `None`: plain `nat` (apply the NAT of an existing connection).
    pub kind: Option<NatKind>,
    pub addrs: Option<NatAddrs>,
    /// Port range (min, max); max 0 means "same as min".
    pub ports: Option<(u16, u16)>,
    pub persistent: bool,
    pub hash: bool,
    pub random: bool,
}

mod nat_bits {
    pub const SRC: u16 = 1;
    pub const DST: u16 = 2;
    pub const PERSISTENT: u16 = 4;
    pub const HASH: u16 = 8;
    pub const RANDOM: u16 = 16;
    pub const V4_MIN: u16 = 1;
    pub const V4_MAX: u16 = 2;
    pub const V6_MIN: u16 = 4;
    pub const V6_MAX: u16 = 8;
    pub const PROTO_MIN: u16 = 16;
    pub const PROTO_MAX: u16 = 32;
}

/// Encodes an action list.
pub(crate) fn encode_actions(out: &mut Vec<u8>, actions: &[Action]) -> Result<()> {
    for a in actions {
        encode_action(out, a)?;
    }
    Ok(())
}

fn nx_header(out: &mut Vec<u8>, subtype: u16) -> usize {
    let start = out.len();
    out.put_u16(0xffff);
    out.put_u16(0); // length, patched by `finish`
    out.put_u32(NX_EXPERIMENTER);
    out.put_u16(subtype);
    start
}

fn finish(out: &mut Vec<u8>, start: usize) -> Result<()> {
    out.pad8_from(start);
    let len = len16("action", out.len() - start)?;
    out.set_u16(start + 2, len);
    Ok(())
}

fn encode_action(out: &mut Vec<u8>, a: &Action) -> Result<()> {
    let start = out.len();
    match a {
        Action::Output { port, max_len } => {
            out.put_u16(0);
            out.put_u16(16);
            out.put_u32(*port);
            out.put_u16(*max_len);
            out.put_zeros(6);
        }
        Action::Group(g) => {
            out.put_u16(22);
            out.put_u16(8);
            out.put_u32(*g);
        }
        Action::SetField(mf) => {
            out.put_u16(25);
            out.put_u16(0);
            put_oxm(out, mf)?;
            finish(out, start)?;
        }
        Action::PushVlan(ethertype) => {
            out.put_u16(17);
            out.put_u16(8);
            out.put_u16(*ethertype);
            out.put_zeros(2);
        }
        Action::PopVlan => {
            out.put_u16(18);
            out.put_u16(8);
            out.put_zeros(4);
        }
        Action::DecTtl => {
            out.put_u16(24);
            out.put_u16(8);
            out.put_zeros(4);
        }
        Action::Resubmit { in_port, table } => {
            let s = nx_header(out, nxast::RESUBMIT_TABLE);
            let p = match in_port {
                None => 0xfff8,
                Some(p) => narrow_port(*p).ok_or_else(|| {
                    Error::InvalidArgument(format!("resubmit port {p} does not fit 16 bits"))
                })?,
            };
            out.put_u16(p);
            out.put_u8(table.unwrap_or(0xff));
            out.put_zeros(3);
            finish(out, s)?;
        }
        Action::Ct(ct) => {
            let s = nx_header(out, nxast::CT);
            let mut flags = 0u16;
            if ct.commit {
                flags |= 1;
            }
            if ct.force {
                flags |= 2;
            }
            out.put_u16(flags);
            match ct.zone {
                CtZone::Imm(z) => {
                    out.put_u32(0);
                    out.put_u16(z);
                }
                CtZone::Field {
                    nxm_header,
                    ofs,
                    nbits,
                } => {
                    if nbits == 0 || nbits > 64 || ofs > 1023 {
                        return Err(Error::InvalidArgument("bad ct zone subfield".into()));
                    }
                    out.put_u32(nxm_header);
                    out.put_u16((ofs << 6) | (nbits - 1));
                }
            }
            out.put_u8(ct.table.unwrap_or(0xff));
            out.put_zeros(3);
            out.put_u16(ct.alg);
            encode_actions(out, &ct.actions)?;
            finish(out, s)?;
        }
        Action::Nat(nat) => {
            let s = nx_header(out, nxast::NAT);
            out.put_zeros(2);
            let mut flags = match nat.kind {
                Some(NatKind::Src) => nat_bits::SRC,
                Some(NatKind::Dst) => nat_bits::DST,
                None => 0,
            };
            if nat.persistent {
                flags |= nat_bits::PERSISTENT;
            }
            if nat.hash {
                flags |= nat_bits::HASH;
            }
            if nat.random {
                flags |= nat_bits::RANDOM;
            }
            out.put_u16(flags);
            let present_at = out.len();
            out.put_u16(0);
            let mut present = 0u16;
            match nat.addrs {
                Some(NatAddrs::V4 { min, max }) => {
                    present |= nat_bits::V4_MIN;
                    out.put_u32(min.into());
                    if let Some(max) = max {
                        present |= nat_bits::V4_MAX;
                        out.put_u32(max.into());
                    }
                }
                Some(NatAddrs::V6 { min, max }) => {
                    present |= nat_bits::V6_MIN;
                    out.extend_from_slice(&min.octets());
                    if let Some(max) = max {
                        present |= nat_bits::V6_MAX;
                        out.extend_from_slice(&max.octets());
                    }
                }
                None => {}
            }
            if let Some((min, max)) = nat.ports {
                present |= nat_bits::PROTO_MIN;
                out.put_u16(min);
                if max != 0 {
                    present |= nat_bits::PROTO_MAX;
                    out.put_u16(max);
                }
            }
            out.set_u16(present_at, present);
            finish(out, s)?;
        }
        Action::Unknown { raw } => {
            // Written as given, so its own length field must say what it
            // is, or the receiver splits the action list elsewhere.
            if raw.len() < 8 || raw.len() % 8 != 0 || buf::declared_len(raw) != Some(raw.len()) {
                return Err(Error::BadLength {
                    what: "raw action",
                    len: raw.len(),
                });
            }
            // And it must be what it says: an action this codec does not
            // interpret. Bytes of a known type would be read back as that
            // action, or refused when malformed, by us and by the switch.
            let reads_back = decode_action(&mut Reader::new(raw, "raw action"), 0);
            if !matches!(reads_back, Ok(Action::Unknown { .. })) {
                return Err(Error::InvalidArgument(format!(
                    "raw action {raw:02x?} is of a type this codec encodes itself; write that action"
                )));
            }
            out.extend_from_slice(raw);
        }
    }
    Ok(())
}

/// Decodes an action list filling all of `r`.
pub(crate) fn decode_actions(r: &mut Reader<'_>) -> Result<Vec<Action>> {
    decode_actions_at(r, 0)
}

fn decode_actions_at(r: &mut Reader<'_>, depth: usize) -> Result<Vec<Action>> {
    let mut out = Vec::new();
    while !r.is_empty() {
        let mut head = *r;
        head.u16()?;
        let len = usize::from(head.u16()?);
        let len = check_len("action", len, 8, r.remaining())?;
        if len % 8 != 0 {
            return Err(Error::BadLength {
                what: "action",
                len,
            });
        }
        let mut a = r.sub(len, "action")?;
        out.push(decode_action(&mut a, depth)?);
    }
    Ok(out)
}

fn decode_action(a: &mut Reader<'_>, depth: usize) -> Result<Action> {
    let raw = a.rest();
    let atype = a.u16()?;
    a.u16()?;
    let unknown = || Action::Unknown { raw: raw.to_vec() };
    Ok(match atype {
        0 => {
            let port = a.u32()?;
            let max_len = a.u16()?;
            Action::Output { port, max_len }
        }
        22 => Action::Group(a.u32()?),
        25 => {
            let mf = take_oxm(a)?;
            Action::SetField(mf)
        }
        17 => Action::PushVlan(a.u16()?),
        18 => Action::PopVlan,
        24 => Action::DecTtl,
        0xffff => {
            let vendor = a.u32()?;
            if vendor != NX_EXPERIMENTER {
                return Ok(unknown());
            }
            match a.u16()? {
                st @ (nxast::RESUBMIT | nxast::RESUBMIT_TABLE) => {
                    let subtype_table = st == nxast::RESUBMIT_TABLE;
                    let p = a.u16()?;
                    let t = a.u8()?;
                    Action::Resubmit {
                        in_port: (p != 0xfff8).then(|| widen_port(p)),
                        table: (subtype_table && t != 0xff).then_some(t),
                    }
                }
                nxast::DEC_TTL => Action::DecTtl,
                nxast::CT => decode_ct(a, depth)?,
                nxast::NAT => decode_nat(a)?,
                _ => unknown(),
            }
        }
        _ => unknown(),
    })
}

fn decode_ct(a: &mut Reader<'_>, depth: usize) -> Result<Action> {
    if depth >= MAX_DEPTH {
        return Err(Error::malformed("ct action", "nested too deeply"));
    }
    let flags = a.u16()?;
    let zone_src = a.u32()?;
    let zone_word = a.u16()?;
    let table = a.u8()?;
    a.skip(3)?;
    let alg = a.u16()?;
    let zone = if zone_src == 0 {
        CtZone::Imm(zone_word)
    } else {
        CtZone::Field {
            nxm_header: zone_src,
            ofs: zone_word >> 6,
            nbits: (zone_word & 0x3f) + 1,
        }
    };
    let actions = decode_actions_at(a, depth + 1)?;
    Ok(Action::Ct(Ct {
        commit: flags & 1 != 0,
        force: flags & 2 != 0,
        zone,
        table: (table != 0xff).then_some(table),
        alg,
        actions,
    }))
}

fn decode_nat(a: &mut Reader<'_>) -> Result<Action> {
    use nat_bits::*;
    a.skip(2)?;
    let flags = a.u16()?;
    let present = a.u16()?;
    let kind = if flags & SRC != 0 {
        Some(NatKind::Src)
    } else if flags & DST != 0 {
        Some(NatKind::Dst)
    } else {
        None
    };
    let addrs = if present & V4_MIN != 0 {
        let min = Ipv4Addr::from(a.u32()?);
        let max = if present & V4_MAX != 0 {
            Some(Ipv4Addr::from(a.u32()?))
        } else {
            None
        };
        Some(NatAddrs::V4 { min, max })
    } else if present & V6_MIN != 0 {
        let min = Ipv6Addr::from(a.array::<16>()?);
        let max = if present & V6_MAX != 0 {
            Some(Ipv6Addr::from(a.array::<16>()?))
        } else {
            None
        };
        Some(NatAddrs::V6 { min, max })
    } else {
        None
    };
    let ports = if present & PROTO_MIN != 0 {
        let min = a.u16()?;
        let max = if present & PROTO_MAX != 0 {
            a.u16()?
        } else {
            0
        };
        Some((min, max))
    } else {
        None
    };
    Ok(Action::Nat(Nat {
        kind,
        addrs,
        ports,
        persistent: flags & PERSISTENT != 0,
        hash: flags & HASH != 0,
        random: flags & RANDOM != 0,
    }))
}
