//! Ports: descriptions (port-desc, port-status) and port statistics.
//!
//! OpenFlow 1.4 moved the Ethernet-specific parts of `ofp_port` and
//! `ofp_port_stats` into properties; these types flatten both versions.

use super::buf::{check_len, Put, Reader};
use super::oxm::MacAddr;
use super::Version;
use crate::error::Result;

/// A port as the switch describes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PortDesc {
    pub port_no: u32,
    pub hw_addr: MacAddr,
    pub name: String,
    /// `OFPPC_*` bits (1 = port down).
    pub config: u32,
    /// `OFPPS_*` bits (1 = link down).
    pub state: u32,
    pub curr: u32,
    pub advertised: u32,
    pub supported: u32,
    pub peer: u32,
    pub curr_speed: u32,
    pub max_speed: u32,
}

/// Port names are at most 15 bytes on the wire (16 with the NUL), as in
/// OVS. Both directions cut at a character boundary, so a name decoded
/// from any 16 bytes encodes back to the bytes it decodes from.
const MAX_NAME: usize = 15;

fn clip_name(name: &str) -> &str {
    let mut end = name.len().min(MAX_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.get(..end).unwrap_or_default()
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    let mut bytes = [0u8; 16];
    for (slot, b) in bytes.iter_mut().zip(clip_name(name).bytes()) {
        *slot = b;
    }
    out.extend_from_slice(&bytes);
}

fn take_name(r: &mut Reader<'_>) -> Result<String> {
    let raw = r.bytes(16)?;
    let raw = raw.get(..MAX_NAME).unwrap_or_default();
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    let name = String::from_utf8_lossy(raw.get(..end).unwrap_or_default());
    Ok(clip_name(&name).to_string())
}

impl PortDesc {
    pub(crate) fn decode(v: Version, r: &mut Reader<'_>) -> Result<Self> {
        let mut p = PortDesc {
            port_no: r.u32()?,
            ..PortDesc::default()
        };
        if v >= Version::V1_5 {
            let len = check_len("port", usize::from(r.u16()?), 40, r.remaining() + 6)?;
            let mut body = r.sub(len - 6, "port")?;
            body.skip(2)?;
            p.hw_addr = MacAddr(body.array()?);
            body.skip(2)?;
            p.name = take_name(&mut body)?;
            p.config = body.u32()?;
            p.state = body.u32()?;
            while !body.is_empty() {
                let ptype = body.u16()?;
                let plen = check_len(
                    "port property",
                    usize::from(body.u16()?),
                    4,
                    body.remaining() + 4,
                )?;
                let mut prop = body.sub(plen - 4, "port property")?;
                if ptype == 0 {
                    prop.skip(4)?;
                    p.curr = prop.u32()?;
                    p.advertised = prop.u32()?;
                    p.supported = prop.u32()?;
                    p.peer = prop.u32()?;
                    p.curr_speed = prop.u32()?;
                    p.max_speed = prop.u32()?;
                }
                let pad = super::buf::pad8(plen) - plen;
                body.skip(pad.min(body.remaining()))?;
            }
        } else {
            r.skip(4)?;
            p.hw_addr = MacAddr(r.array()?);
            r.skip(2)?;
            p.name = take_name(r)?;
            p.config = r.u32()?;
            p.state = r.u32()?;
            p.curr = r.u32()?;
            p.advertised = r.u32()?;
            p.supported = r.u32()?;
            p.peer = r.u32()?;
            p.curr_speed = r.u32()?;
            p.max_speed = r.u32()?;
        }
        Ok(p)
    }

    pub(crate) fn encode(&self, v: Version, out: &mut Vec<u8>) {
        out.put_u32(self.port_no);
        if v >= Version::V1_5 {
            out.put_u16(72);
            out.put_zeros(2);
        } else {
            out.put_zeros(4);
        }
        out.extend_from_slice(&self.hw_addr.0);
        out.put_zeros(2);
        put_name(out, &self.name);
        out.put_u32(self.config);
        out.put_u32(self.state);
        if v >= Version::V1_5 {
            out.put_u16(0);
            out.put_u16(32);
            out.put_zeros(4);
        }
        for x in [
            self.curr,
            self.advertised,
            self.supported,
            self.peer,
            self.curr_speed,
            self.max_speed,
        ] {
            out.put_u32(x);
        }
    }
}

/// Why a port-status message was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortReason {
    Add,
    Delete,
    Modify,
    Other(u8),
}

/// `OFPT_PORT_STATUS`: a port was added, deleted or changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortStatus {
    pub reason: PortReason,
    pub desc: PortDesc,
}

impl PortStatus {
    pub(crate) fn decode(v: Version, r: &mut Reader<'_>) -> Result<Self> {
        let reason = match r.u8()? {
            0 => PortReason::Add,
            1 => PortReason::Delete,
            2 => PortReason::Modify,
            x => PortReason::Other(x),
        };
        r.skip(7)?;
        Ok(PortStatus {
            reason,
            desc: PortDesc::decode(v, r)?,
        })
    }

    pub(crate) fn encode(&self, v: Version, out: &mut Vec<u8>) {
        out.put_u8(match self.reason {
            PortReason::Add => 0,
            PortReason::Delete => 1,
            PortReason::Modify => 2,
            PortReason::Other(x) => x,
        });
        out.put_zeros(7);
        self.desc.encode(v, out);
    }
}

/// Per-port counters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PortStats {
    pub port_no: u32,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_frame_err: u64,
    pub rx_over_err: u64,
    pub rx_crc_err: u64,
    pub collisions: u64,
}

impl PortStats {
    pub(crate) fn decode(v: Version, r: &mut Reader<'_>) -> Result<Self> {
        let mut s = PortStats::default();
        if v >= Version::V1_5 {
            let len = check_len("port stats", usize::from(r.peek_u16()?), 80, r.remaining())?;
            let mut e = r.sub(len, "port stats")?;
            e.skip(4)?;
            s.port_no = e.u32()?;
            s.duration_sec = e.u32()?;
            s.duration_nsec = e.u32()?;
            s.rx_packets = e.u64()?;
            s.tx_packets = e.u64()?;
            s.rx_bytes = e.u64()?;
            s.tx_bytes = e.u64()?;
            s.rx_dropped = e.u64()?;
            s.tx_dropped = e.u64()?;
            s.rx_errors = e.u64()?;
            s.tx_errors = e.u64()?;
            while !e.is_empty() {
                let ptype = e.u16()?;
                let plen = check_len(
                    "port stats property",
                    usize::from(e.u16()?),
                    4,
                    e.remaining() + 4,
                )?;
                let mut p = e.sub(plen - 4, "port stats property")?;
                if ptype == 0 {
                    p.skip(4)?;
                    s.rx_frame_err = p.u64()?;
                    s.rx_over_err = p.u64()?;
                    s.rx_crc_err = p.u64()?;
                    s.collisions = p.u64()?;
                }
                let pad = super::buf::pad8(plen) - plen;
                e.skip(pad.min(e.remaining()))?;
            }
        } else {
            s.port_no = r.u32()?;
            r.skip(4)?;
            s.rx_packets = r.u64()?;
            s.tx_packets = r.u64()?;
            s.rx_bytes = r.u64()?;
            s.tx_bytes = r.u64()?;
            s.rx_dropped = r.u64()?;
            s.tx_dropped = r.u64()?;
            s.rx_errors = r.u64()?;
            s.tx_errors = r.u64()?;
            s.rx_frame_err = r.u64()?;
            s.rx_over_err = r.u64()?;
            s.rx_crc_err = r.u64()?;
            s.collisions = r.u64()?;
            s.duration_sec = r.u32()?;
            s.duration_nsec = r.u32()?;
        }
        Ok(s)
    }

    pub(crate) fn encode(&self, v: Version, out: &mut Vec<u8>) {
        if v >= Version::V1_5 {
            out.put_u16(120);
            out.put_zeros(2);
            out.put_u32(self.port_no);
            out.put_u32(self.duration_sec);
            out.put_u32(self.duration_nsec);
            for x in [
                self.rx_packets,
                self.tx_packets,
                self.rx_bytes,
                self.tx_bytes,
                self.rx_dropped,
                self.tx_dropped,
                self.rx_errors,
                self.tx_errors,
            ] {
                out.put_u64(x);
            }
            out.put_u16(0);
            out.put_u16(40);
            out.put_zeros(4);
            for x in [
                self.rx_frame_err,
                self.rx_over_err,
                self.rx_crc_err,
                self.collisions,
            ] {
                out.put_u64(x);
            }
        } else {
            out.put_u32(self.port_no);
            out.put_zeros(4);
            for x in [
                self.rx_packets,
                self.tx_packets,
                self.rx_bytes,
                self.tx_bytes,
                self.rx_dropped,
                self.tx_dropped,
                self.rx_errors,
                self.tx_errors,
                self.rx_frame_err,
                self.rx_over_err,
                self.rx_crc_err,
                self.collisions,
            ] {
                out.put_u64(x);
            }
            out.put_u32(self.duration_sec);
            out.put_u32(self.duration_nsec);
        }
    }
}
