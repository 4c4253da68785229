//! Hello, features, packet-in and packet-out.

use super::action::{decode_actions, encode_actions, port, Action};
use super::buf::{pad8, Put, Reader};
use super::matches::Match;
use super::oxm::Field;
use super::Version;
use crate::error::{Error, Result};

/// `OFPT_HELLO`, with the version bitmap element when present.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Hello {
    /// Bit `n` set = wire version `n` supported (first 32 versions).
    pub bitmap: Option<u32>,
}

impl Hello {
    /// A hello announcing exactly `versions`.
    pub fn for_versions(versions: &[Version]) -> Self {
        Hello {
            bitmap: Some(versions.iter().fold(0, |b, v| b | (1 << v.wire()))),
        }
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        if let Some(bm) = self.bitmap {
            out.put_u16(1);
            out.put_u16(8);
            out.put_u32(bm);
        }
    }

    /// Unknown elements are skipped; a malformed element list is an error.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let mut h = Hello::default();
        while r.remaining() >= 4 {
            let etype = r.u16()?;
            let len = usize::from(r.u16()?);
            if len < 4 {
                return Err(Error::BadLength {
                    what: "hello element",
                    len,
                });
            }
            let mut e = r.sub(len - 4, "hello element")?;
            r.skip((pad8(len) - len).min(r.remaining()))?;
            if etype == 1 && e.remaining() >= 4 {
                h.bitmap = Some(e.u32()?);
            }
        }
        Ok(h)
    }
}

/// `OFPT_FEATURES_REPLY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Features {
    pub datapath_id: u64,
    pub n_buffers: u32,
    pub n_tables: u8,
    pub auxiliary_id: u8,
    pub capabilities: u32,
}

impl Features {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let f = Features {
            datapath_id: r.u64()?,
            n_buffers: r.u32()?,
            n_tables: r.u8()?,
            auxiliary_id: r.u8()?,
            capabilities: {
                r.skip(2)?;
                r.u32()?
            },
        };
        Ok(f)
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u64(self.datapath_id);
        out.put_u32(self.n_buffers);
        out.put_u8(self.n_tables);
        out.put_u8(self.auxiliary_id);
        out.put_zeros(2);
        out.put_u32(self.capabilities);
        out.put_u32(0);
    }
}

/// `OFPT_PACKET_OUT`: inject `data` and run `actions` on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PacketOut {
    pub buffer_id: u32,
    /// The packet's ingress port for the pipeline (`CONTROLLER` if none).
    pub in_port: u32,
    pub actions: Vec<Action>,
    /// The Ethernet frame.
    pub data: Vec<u8>,
}

impl PacketOut {
    /// A packet-out of `data` from `CONTROLLER` with `actions`.
    pub fn new(data: Vec<u8>, actions: Vec<Action>) -> Self {
        PacketOut {
            buffer_id: super::NO_BUFFER,
            in_port: port::CONTROLLER,
            actions,
            data,
        }
    }

    pub fn in_port(mut self, p: u32) -> Self {
        self.in_port = p;
        self
    }

    pub(crate) fn encode(&self, v: Version, out: &mut Vec<u8>) -> Result<()> {
        out.put_u32(self.buffer_id);
        let alen_at;
        if v >= Version::V1_5 {
            alen_at = out.len();
            out.put_u16(0);
            out.put_zeros(2);
            Match::new().in_port(self.in_port).encode(out)?;
        } else {
            out.put_u32(self.in_port);
            alen_at = out.len();
            out.put_u16(0);
            out.put_zeros(6);
        }
        let a_start = out.len();
        encode_actions(out, &self.actions)?;
        let alen = super::buf::len16("packet-out actions", out.len() - a_start)?;
        out.set_u16(alen_at, alen);
        out.extend_from_slice(&self.data);
        Ok(())
    }

    pub(crate) fn decode(v: Version, r: &mut Reader<'_>) -> Result<Self> {
        let buffer_id = r.u32()?;
        let (in_port, alen) = if v >= Version::V1_5 {
            let alen = usize::from(r.u16()?);
            r.skip(2)?;
            let m = Match::decode(r)?;
            let in_port = m
                .value(Field::InPort)
                .map_or(port::CONTROLLER, |p| p as u32);
            (in_port, alen)
        } else {
            let in_port = r.u32()?;
            let alen = usize::from(r.u16()?);
            r.skip(6)?;
            (in_port, alen)
        };
        let mut a = r.sub(alen, "packet-out actions")?;
        Ok(PacketOut {
            buffer_id,
            in_port,
            actions: decode_actions(&mut a)?,
            data: r.rest().to_vec(),
        })
    }
}

/// `OFPT_PACKET_IN` (1.3 and 1.5 share the layout).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PacketIn {
    pub buffer_id: u32,
    pub total_len: u16,
    pub reason: u8,
    pub table_id: u8,
    pub cookie: u64,
    /// Pipeline fields (in_port, metadata, registers...).
    pub match_: Match,
    pub data: Vec<u8>,
}

impl PacketIn {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let buffer_id = r.u32()?;
        let total_len = r.u16()?;
        let reason = r.u8()?;
        let table_id = r.u8()?;
        let cookie = r.u64()?;
        let match_ = Match::decode(r)?;
        r.skip(2)?;
        Ok(PacketIn {
            buffer_id,
            total_len,
            reason,
            table_id,
            cookie,
            match_,
            data: r.rest().to_vec(),
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        out.put_u32(self.buffer_id);
        out.put_u16(self.total_len);
        out.put_u8(self.reason);
        out.put_u8(self.table_id);
        out.put_u64(self.cookie);
        self.match_.encode(out)?;
        out.put_zeros(2);
        out.extend_from_slice(&self.data);
        Ok(())
    }
}
