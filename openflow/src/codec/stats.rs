//! Flow statistics: requests, per-flow entries (1.3 `ofp_flow_stats`, 1.5
//! `ofp_flow_desc` with OXS counters) and aggregates.

use super::action::{port, Action};
use super::buf::{check_len, len16, pad8, Put, Reader};
use super::flow::{apply_actions, ALL_TABLES, ANY_GROUP};
use super::instruction::{decode_instructions, encode_instructions, Instruction};
use super::matches::Match;
use super::Version;
use crate::error::{Error, Result};

/// Body of flow (and aggregate) statistics requests.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowStatsRequest {
    pub table_id: u8,
    pub out_port: u32,
    pub out_group: u32,
    pub cookie: u64,
    pub cookie_mask: u64,
    pub match_: Match,
}

impl Default for FlowStatsRequest {
    fn default() -> Self {
        FlowStatsRequest {
            table_id: ALL_TABLES,
            out_port: port::ANY,
            out_group: ANY_GROUP,
            cookie: 0,
            cookie_mask: 0,
            match_: Match::new(),
        }
    }
}

impl FlowStatsRequest {
    /// Every flow of every table.
    pub fn all() -> Self {
        Self::default()
    }
    /// Every flow of one table.
    pub fn table(t: u8) -> Self {
        FlowStatsRequest {
            table_id: t,
            ..Self::default()
        }
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        out.put_u8(self.table_id);
        out.put_zeros(3);
        out.put_u32(self.out_port);
        out.put_u32(self.out_group);
        out.put_zeros(4);
        out.put_u64(self.cookie);
        out.put_u64(self.cookie_mask);
        self.match_.encode(out)
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let table_id = r.u8()?;
        r.skip(3)?;
        let out_port = r.u32()?;
        let out_group = r.u32()?;
        r.skip(4)?;
        let cookie = r.u64()?;
        let cookie_mask = r.u64()?;
        let match_ = Match::decode(r)?;
        Ok(FlowStatsRequest {
            table_id,
            out_port,
            out_group,
            cookie,
            cookie_mask,
            match_,
        })
    }
}

/// One flow as reported by a flow-stats reply.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct FlowStats {
    pub table_id: u8,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    pub priority: u16,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub flags: u16,
    pub importance: u16,
    pub cookie: u64,
    pub packet_count: u64,
    pub byte_count: u64,
    /// Seconds since the flow last matched (OpenFlow 1.5 `idle_time`).
    pub idle_age: Option<u32>,
    pub match_: Match,
    pub instructions: Vec<Instruction>,
}

impl FlowStats {
    /// The apply-actions list.
    pub fn actions(&self) -> &[Action] {
        apply_actions(&self.instructions)
    }
}

/// OXS statistics of OpenFlow 1.5 (`ofp_stats`).
#[derive(Debug, Default, Clone, Copy)]
struct Oxs {
    duration: Option<(u32, u32)>,
    idle: Option<(u32, u32)>,
    flow_count: Option<u32>,
    packet_count: Option<u64>,
    byte_count: Option<u64>,
}

fn decode_oxs(r: &mut Reader<'_>) -> Result<Oxs> {
    r.skip(2)?;
    let len = usize::from(r.u16()?);
    if len < 4 {
        return Err(Error::BadLength {
            what: "OXS stats",
            len,
        });
    }
    let mut body = r.sub(len - 4, "OXS stats")?;
    r.skip(pad8(len) - len)?;
    let mut s = Oxs::default();
    while !body.is_empty() {
        let class = body.u16()?;
        let field = body.u8()? >> 1;
        let flen = usize::from(body.u8()?);
        let mut v = body.sub(flen, "OXS field")?;
        if class != 0x8002 {
            continue;
        }
        match (field, flen) {
            (0, 8) => s.duration = Some((v.u32()?, v.u32()?)),
            (1, 8) => s.idle = Some((v.u32()?, v.u32()?)),
            (3, 4) => s.flow_count = Some(v.u32()?),
            (4, 8) => s.packet_count = Some(v.u64()?),
            (5, 8) => s.byte_count = Some(v.u64()?),
            _ => {}
        }
    }
    Ok(s)
}

fn encode_oxs(out: &mut Vec<u8>, s: &Oxs) {
    let start = out.len();
    out.put_u16(0);
    out.put_u16(0);
    let field = |out: &mut Vec<u8>, f: u8, len: u8| {
        out.put_u16(0x8002);
        out.put_u8(f << 1);
        out.put_u8(len);
    };
    if let Some((a, b)) = s.duration {
        field(out, 0, 8);
        out.put_u32(a);
        out.put_u32(b);
    }
    if let Some((a, b)) = s.idle {
        field(out, 1, 8);
        out.put_u32(a);
        out.put_u32(b);
    }
    if let Some(c) = s.flow_count {
        field(out, 3, 4);
        out.put_u32(c);
    }
    if let Some(c) = s.packet_count {
        field(out, 4, 8);
        out.put_u64(c);
    }
    if let Some(c) = s.byte_count {
        field(out, 5, 8);
        out.put_u64(c);
    }
    let len = (out.len() - start) as u16;
    out.set_u16(start + 2, len);
    out.pad8_from(start);
}

/// Decodes one flow-stats entry (1.3 `ofp_flow_stats` or 1.5
/// `ofp_flow_desc`).
pub(crate) fn decode_flow_stats(v: Version, r: &mut Reader<'_>) -> Result<FlowStats> {
    let len = check_len("flow stats", usize::from(r.peek_u16()?), 24, r.remaining())?;
    let mut e = r.sub(len, "flow stats")?;
    e.skip(2)?;
    if v >= Version::V1_5 {
        e.skip(2)?;
        let table_id = e.u8()?;
        e.skip(1)?;
        let priority = e.u16()?;
        let idle_timeout = e.u16()?;
        let hard_timeout = e.u16()?;
        let flags = e.u16()?;
        let importance = e.u16()?;
        let cookie = e.u64()?;
        let match_ = Match::decode(&mut e)?;
        let oxs = decode_oxs(&mut e)?;
        let instructions = decode_instructions(&mut e)?;
        let (duration_sec, duration_nsec) = oxs.duration.unwrap_or((0, 0));
        Ok(FlowStats {
            table_id,
            duration_sec,
            duration_nsec,
            priority,
            idle_timeout,
            hard_timeout,
            flags,
            importance,
            cookie,
            packet_count: oxs.packet_count.unwrap_or(0),
            byte_count: oxs.byte_count.unwrap_or(0),
            idle_age: oxs.idle.map(|(s, _)| s),
            match_,
            instructions,
        })
    } else {
        let table_id = e.u8()?;
        e.skip(1)?;
        let duration_sec = e.u32()?;
        let duration_nsec = e.u32()?;
        let priority = e.u16()?;
        let idle_timeout = e.u16()?;
        let hard_timeout = e.u16()?;
        let flags = e.u16()?;
        e.skip(4)?;
        let cookie = e.u64()?;
        let packet_count = e.u64()?;
        let byte_count = e.u64()?;
        let match_ = Match::decode(&mut e)?;
        let instructions = decode_instructions(&mut e)?;
        Ok(FlowStats {
            table_id,
            duration_sec,
            duration_nsec,
            priority,
            idle_timeout,
            hard_timeout,
            flags,
            importance: 0,
            cookie,
            packet_count,
            byte_count,
            idle_age: None,
            match_,
            instructions,
        })
    }
}

pub(crate) fn encode_flow_stats(v: Version, out: &mut Vec<u8>, f: &FlowStats) -> Result<()> {
    let start = out.len();
    out.put_u16(0);
    if v >= Version::V1_5 {
        out.put_zeros(2);
        out.put_u8(f.table_id);
        out.put_zeros(1);
        out.put_u16(f.priority);
        out.put_u16(f.idle_timeout);
        out.put_u16(f.hard_timeout);
        out.put_u16(f.flags);
        out.put_u16(f.importance);
        out.put_u64(f.cookie);
        f.match_.encode(out)?;
        encode_oxs(
            out,
            &Oxs {
                duration: Some((f.duration_sec, f.duration_nsec)),
                idle: f.idle_age.map(|s| (s, 0)),
                flow_count: None,
                packet_count: Some(f.packet_count),
                byte_count: Some(f.byte_count),
            },
        );
    } else {
        out.put_u8(f.table_id);
        out.put_zeros(1);
        out.put_u32(f.duration_sec);
        out.put_u32(f.duration_nsec);
        out.put_u16(f.priority);
        out.put_u16(f.idle_timeout);
        out.put_u16(f.hard_timeout);
        out.put_u16(f.flags);
        out.put_zeros(4);
        out.put_u64(f.cookie);
        out.put_u64(f.packet_count);
        out.put_u64(f.byte_count);
        f.match_.encode(out)?;
    }
    encode_instructions(out, &f.instructions)?;
    let len = len16("flow stats", out.len() - start)?;
    out.set_u16(start, len);
    Ok(())
}

/// Aggregate flow statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AggregateStats {
    pub packet_count: u64,
    pub byte_count: u64,
    pub flow_count: u32,
}

impl AggregateStats {
    pub(crate) fn decode(v: Version, r: &mut Reader<'_>) -> Result<Self> {
        if v >= Version::V1_5 {
            let s = decode_oxs(r)?;
            Ok(AggregateStats {
                packet_count: s.packet_count.unwrap_or(0),
                byte_count: s.byte_count.unwrap_or(0),
                flow_count: s.flow_count.unwrap_or(0),
            })
        } else {
            let packet_count = r.u64()?;
            let byte_count = r.u64()?;
            let flow_count = r.u32()?;
            r.skip(4)?;
            Ok(AggregateStats {
                packet_count,
                byte_count,
                flow_count,
            })
        }
    }

    pub(crate) fn encode(&self, v: Version, out: &mut Vec<u8>) {
        if v >= Version::V1_5 {
            encode_oxs(
                out,
                &Oxs {
                    flow_count: Some(self.flow_count),
                    packet_count: Some(self.packet_count),
                    byte_count: Some(self.byte_count),
                    ..Oxs::default()
                },
            );
        } else {
            out.put_u64(self.packet_count);
            out.put_u64(self.byte_count);
            out.put_u32(self.flow_count);
            out.put_zeros(4);
        }
    }
}
