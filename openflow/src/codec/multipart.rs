//! Multipart (statistics) requests and replies: flows, aggregate, ports,
//! port descriptions. Replies may span several messages (`more` flag); the
//! client concatenates them.

use super::buf::{Put, Reader};
use super::ports::{PortDesc, PortStats};
use super::stats::{
    decode_flow_stats, encode_flow_stats, AggregateStats, FlowStats, FlowStatsRequest,
};
use super::Version;
use crate::error::Result;

mod mp {
    pub const FLOW: u16 = 1;
    pub const AGGREGATE: u16 = 2;
    pub const PORT_STATS: u16 = 4;
    pub const PORT_DESC: u16 = 13;
}

/// Multipart request bodies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MultipartRequest {
    Flow(FlowStatsRequest),
    Aggregate(FlowStatsRequest),
    /// Counters of one port, or all (`port::ANY`).
    PortStats {
        port_no: u32,
    },
    PortDesc,
    Unknown {
        mp_type: u16,
        body: Vec<u8>,
    },
}

/// Multipart reply bodies (one message's worth).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MultipartReply {
    Flow {
        flows: Vec<FlowStats>,
        more: bool,
    },
    Aggregate(AggregateStats),
    PortStats {
        ports: Vec<PortStats>,
        more: bool,
    },
    PortDesc {
        ports: Vec<PortDesc>,
        more: bool,
    },
    Unknown {
        mp_type: u16,
        more: bool,
        body: Vec<u8>,
    },
}

impl MultipartReply {
    /// Whether more parts follow.
    pub fn more(&self) -> bool {
        match self {
            MultipartReply::Flow { more, .. }
            | MultipartReply::PortStats { more, .. }
            | MultipartReply::PortDesc { more, .. }
            | MultipartReply::Unknown { more, .. } => *more,
            MultipartReply::Aggregate(_) => false,
        }
    }
}

impl MultipartRequest {
    pub(crate) fn encode(&self, v: Version, out: &mut Vec<u8>) -> Result<()> {
        let mtype = match self {
            MultipartRequest::Flow(_) => mp::FLOW,
            MultipartRequest::Aggregate(_) => mp::AGGREGATE,
            MultipartRequest::PortStats { .. } => mp::PORT_STATS,
            MultipartRequest::PortDesc => mp::PORT_DESC,
            MultipartRequest::Unknown { mp_type, .. } => *mp_type,
        };
        out.put_u16(mtype);
        out.put_u16(0);
        out.put_zeros(4);
        match self {
            MultipartRequest::Flow(r) | MultipartRequest::Aggregate(r) => r.encode(out)?,
            MultipartRequest::PortStats { port_no } => {
                out.put_u32(*port_no);
                out.put_zeros(4);
            }
            MultipartRequest::PortDesc => {
                if v >= Version::V1_5 {
                    out.put_u32(super::action::port::ANY);
                    out.put_zeros(4);
                }
            }
            MultipartRequest::Unknown { body, .. } => out.extend_from_slice(body),
        }
        Ok(())
    }

    pub(crate) fn decode(_v: Version, r: &mut Reader<'_>) -> Result<Self> {
        let mtype = r.u16()?;
        r.skip(6)?;
        Ok(match mtype {
            mp::FLOW => MultipartRequest::Flow(FlowStatsRequest::decode(r)?),
            mp::AGGREGATE => MultipartRequest::Aggregate(FlowStatsRequest::decode(r)?),
            mp::PORT_STATS => MultipartRequest::PortStats { port_no: r.u32()? },
            mp::PORT_DESC => MultipartRequest::PortDesc,
            _ => MultipartRequest::Unknown {
                mp_type: mtype,
                body: r.rest().to_vec(),
            },
        })
    }
}

impl MultipartReply {
    pub(crate) fn encode(&self, v: Version, out: &mut Vec<u8>) -> Result<()> {
        let (mtype, more) = match self {
            MultipartReply::Flow { more, .. } => (mp::FLOW, *more),
            MultipartReply::Aggregate(_) => (mp::AGGREGATE, false),
            MultipartReply::PortStats { more, .. } => (mp::PORT_STATS, *more),
            MultipartReply::PortDesc { more, .. } => (mp::PORT_DESC, *more),
            MultipartReply::Unknown { mp_type, more, .. } => (*mp_type, *more),
        };
        out.put_u16(mtype);
        out.put_u16(u16::from(more));
        out.put_zeros(4);
        match self {
            MultipartReply::Flow { flows, .. } => {
                for f in flows {
                    encode_flow_stats(v, out, f)?;
                }
            }
            MultipartReply::Aggregate(a) => a.encode(v, out),
            MultipartReply::PortStats { ports, .. } => ports.iter().for_each(|p| p.encode(v, out)),
            MultipartReply::PortDesc { ports, .. } => ports.iter().for_each(|p| p.encode(v, out)),
            MultipartReply::Unknown { body, .. } => out.extend_from_slice(body),
        }
        Ok(())
    }

    pub(crate) fn decode(v: Version, r: &mut Reader<'_>) -> Result<Self> {
        let mtype = r.u16()?;
        let more = r.u16()? & 1 != 0;
        r.skip(4)?;
        Ok(match mtype {
            mp::FLOW => {
                let mut flows = Vec::new();
                while !r.is_empty() {
                    flows.push(decode_flow_stats(v, r)?);
                }
                MultipartReply::Flow { flows, more }
            }
            mp::AGGREGATE => MultipartReply::Aggregate(AggregateStats::decode(v, r)?),
            mp::PORT_STATS => {
                let mut ports = Vec::new();
                while !r.is_empty() {
                    ports.push(PortStats::decode(v, r)?);
                }
                MultipartReply::PortStats { ports, more }
            }
            mp::PORT_DESC => {
                let mut ports = Vec::new();
                while !r.is_empty() {
                    ports.push(PortDesc::decode(v, r)?);
                }
                MultipartReply::PortDesc { ports, more }
            }
            _ => MultipartReply::Unknown {
                mp_type: mtype,
                more,
                body: r.rest().to_vec(),
            },
        })
    }
}
