//! The pure wire codec: bytes in, typed messages out, and back. No I/O.
//!
//! [`decode`] takes exactly one framed message (use [`frame_len`] to split a
//! stream) and never panics: every length is checked against what contains
//! it, messages are limited to [`MAX_MESSAGE_LEN`] by the 16-bit length
//! field, and anything unknown (message types, actions, OXM classes)
//! decodes to an `Unknown` value or a typed [`Error`].

mod action;
mod buf;
mod errmsg;
mod flow;
mod group;
mod instruction;
mod matches;
mod multipart;
mod nicira;
mod oxm;
mod packet;
mod ports;
mod stats;

pub use action::{port, Action, Ct, CtZone, Nat, NatAddrs, NatKind};
pub use errmsg::{ErrorMsg, ErrorType};
pub use flow::{flow_flags, FlowMod, FlowModCommand, ALL_TABLES, DEFAULT_PRIORITY, NO_BUFFER};
pub use group::{Bucket, GroupCommand, GroupMod, GroupType, ALL_GROUPS, ANY_GROUP};
pub use instruction::Instruction;
pub use matches::Match;
pub use multipart::{MultipartReply, MultipartRequest};
pub use nicira::{bundle_flags, BundleControl, BundleCtrlType, CtFlush, CtTuple};
pub use oxm::{
    class, ct_state, narrow_port, widen_port, Field, MacAddr, MatchField, OxmId, NX_EXPERIMENTER,
    OFPVID_PRESENT, ONF_EXPERIMENTER,
};
pub use packet::{Features, Hello, PacketIn, PacketOut};
pub use ports::{PortDesc, PortReason, PortStats, PortStatus};
pub use stats::{AggregateStats, FlowStats, FlowStatsRequest};

pub(crate) use instruction::normalize as normalize_instructions;
pub(crate) use oxm::{be_u128 as oxm_be_u128, Kind};

use buf::{Put, Reader};

use crate::error::{Error, Result};

/// Largest OpenFlow message: the header's length field is 16 bits.
pub const MAX_MESSAGE_LEN: usize = 65_535;
/// Size of `ofp_header`.
pub const HEADER_LEN: usize = 8;

/// The OpenFlow versions this crate speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// OpenFlow 1.3 (wire version 4).
    V1_3,
    /// OpenFlow 1.5 (wire version 6).
    V1_5,
}

impl Version {
    pub fn wire(self) -> u8 {
        match self {
            Version::V1_3 => 4,
            Version::V1_5 => 6,
        }
    }
    pub fn from_wire(v: u8) -> Option<Self> {
        match v {
            4 => Some(Version::V1_3),
            6 => Some(Version::V1_5),
            _ => None,
        }
    }
    /// `OpenFlow13` / `OpenFlow15`, as `ovs-ofctl -O` spells it.
    pub fn ofctl_name(self) -> &'static str {
        match self {
            Version::V1_3 => "OpenFlow13",
            Version::V1_5 => "OpenFlow15",
        }
    }
}

/// Message type numbers (`OFPT_*`), the same in 1.3 and 1.5 for those used.
pub mod msg_type {
    pub const HELLO: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const ECHO_REQUEST: u8 = 2;
    pub const ECHO_REPLY: u8 = 3;
    pub const EXPERIMENTER: u8 = 4;
    pub const FEATURES_REQUEST: u8 = 5;
    pub const FEATURES_REPLY: u8 = 6;
    pub const GET_CONFIG_REQUEST: u8 = 7;
    pub const GET_CONFIG_REPLY: u8 = 8;
    pub const SET_CONFIG: u8 = 9;
    pub const PACKET_IN: u8 = 10;
    pub const PORT_STATUS: u8 = 12;
    pub const PACKET_OUT: u8 = 13;
    pub const FLOW_MOD: u8 = 14;
    pub const GROUP_MOD: u8 = 15;
    pub const MULTIPART_REQUEST: u8 = 18;
    pub const MULTIPART_REPLY: u8 = 19;
    pub const BARRIER_REQUEST: u8 = 20;
    pub const BARRIER_REPLY: u8 = 21;
    pub const BUNDLE_CONTROL: u8 = 33;
    pub const BUNDLE_ADD_MESSAGE: u8 = 34;
}

/// An OpenFlow message body, typed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Message {
    Hello(Hello),
    Error(ErrorMsg),
    EchoRequest(Vec<u8>),
    EchoReply(Vec<u8>),
    FeaturesRequest,
    FeaturesReply(Features),
    GetConfigRequest,
    /// Switch configuration: fragment handling flags and the number of
    /// bytes of a packet sent to the controller.
    GetConfigReply(SwitchConfig),
    /// Sets the switch configuration. A nonzero `miss_send_len` also makes
    /// Open vSwitch send asynchronous messages (port status, packet-in) to
    /// a service connection such as `BRIDGE.mgmt`.
    SetConfig(SwitchConfig),
    PacketIn(PacketIn),
    PortStatus(PortStatus),
    PacketOut(PacketOut),
    FlowMod(FlowMod),
    GroupMod(GroupMod),
    MultipartRequest(MultipartRequest),
    MultipartReply(MultipartReply),
    BarrierRequest,
    BarrierReply,
    BundleControl(BundleControl),
    /// A message added to an open bundle. The inner message is encoded with
    /// the same version and xid as the envelope.
    BundleAdd {
        bundle_id: u32,
        flags: u16,
        message: Box<Message>,
    },
    CtFlush(CtFlush),
    /// Any other experimenter message.
    Experimenter {
        experimenter: u32,
        exp_type: u32,
        data: Vec<u8>,
    },
    /// A message type this crate does not decode.
    Unknown {
        msg_type: u8,
        body: Vec<u8>,
    },
}

impl Message {
    /// The OpenFlow name of the message, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello(_) => "HELLO",
            Message::Error(_) => "ERROR",
            Message::EchoRequest(_) => "ECHO_REQUEST",
            Message::EchoReply(_) => "ECHO_REPLY",
            Message::FeaturesRequest => "FEATURES_REQUEST",
            Message::FeaturesReply(_) => "FEATURES_REPLY",
            Message::GetConfigRequest => "GET_CONFIG_REQUEST",
            Message::GetConfigReply(_) => "GET_CONFIG_REPLY",
            Message::SetConfig(_) => "SET_CONFIG",
            Message::PacketIn(_) => "PACKET_IN",
            Message::PortStatus(_) => "PORT_STATUS",
            Message::PacketOut(_) => "PACKET_OUT",
            Message::FlowMod(_) => "FLOW_MOD",
            Message::GroupMod(_) => "GROUP_MOD",
            Message::MultipartRequest(_) => "MULTIPART_REQUEST",
            Message::MultipartReply(_) => "MULTIPART_REPLY",
            Message::BarrierRequest => "BARRIER_REQUEST",
            Message::BarrierReply => "BARRIER_REPLY",
            Message::BundleControl(_) => "BUNDLE_CONTROL",
            Message::BundleAdd { .. } => "BUNDLE_ADD_MESSAGE",
            Message::CtFlush(_) => "NXT_CT_FLUSH",
            Message::Experimenter { .. } => "EXPERIMENTER",
            Message::Unknown { .. } => "UNKNOWN",
        }
    }
}

/// `ofp_switch_config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SwitchConfig {
    pub flags: u16,
    pub miss_send_len: u16,
}

/// A message with its header fields.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    /// Wire version byte as received (a Hello may carry any).
    pub version: u8,
    pub xid: u32,
    pub message: Message,
}

/// The total length of the message starting at `buf`, once its header is
/// there: `Ok(None)` if fewer than 8 bytes are buffered, an error if the
/// length field is below the header size.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>> {
    let Some(head) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let mut r = Reader::new(head, "header");
    r.skip(2)?;
    let len = usize::from(r.u16()?);
    if len < HEADER_LEN {
        return Err(Error::BadLength {
            what: "message header",
            len,
        });
    }
    Ok(Some(len))
}

fn header(out: &mut Vec<u8>, version: u8, mtype: u8, xid: u32) {
    out.put_u8(version);
    out.put_u8(mtype);
    out.put_u16(0);
    out.put_u32(xid);
}

fn experimenter_header(out: &mut Vec<u8>, version: Version, xid: u32, exp: u32, exp_type: u32) {
    header(out, version.wire(), msg_type::EXPERIMENTER, xid);
    out.put_u32(exp);
    out.put_u32(exp_type);
}

/// Encodes `message` for `version` with `xid`, appending to `out`.
pub fn encode_into(out: &mut Vec<u8>, version: Version, xid: u32, message: &Message) -> Result<()> {
    let start = out.len();
    encode_at(out, version, xid, message, 0)?;
    let len = out.len() - start;
    let len16 = u16::try_from(len).map_err(|_| Error::TooLong {
        what: "message",
        len,
        max: MAX_MESSAGE_LEN,
    })?;
    out.set_u16(start + 2, len16);
    Ok(())
}

/// Encodes `message` for `version` with `xid`.
pub fn encode(version: Version, xid: u32, message: &Message) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64);
    encode_into(&mut out, version, xid, message)?;
    Ok(out)
}

fn encode_at(out: &mut Vec<u8>, v: Version, xid: u32, m: &Message, depth: usize) -> Result<()> {
    use msg_type::*;
    let w = v.wire();
    match m {
        Message::Hello(h) => {
            header(out, w, HELLO, xid);
            h.encode(out);
        }
        Message::Error(e) => {
            header(out, w, ERROR, xid);
            e.encode(out);
        }
        Message::EchoRequest(d) | Message::EchoReply(d) => {
            let t = if matches!(m, Message::EchoRequest(_)) {
                ECHO_REQUEST
            } else {
                ECHO_REPLY
            };
            header(out, w, t, xid);
            out.extend_from_slice(d);
        }
        Message::FeaturesRequest => header(out, w, FEATURES_REQUEST, xid),
        Message::FeaturesReply(f) => {
            header(out, w, FEATURES_REPLY, xid);
            f.encode(out);
        }
        Message::GetConfigRequest => header(out, w, GET_CONFIG_REQUEST, xid),
        Message::GetConfigReply(c) | Message::SetConfig(c) => {
            let t = if matches!(m, Message::SetConfig(_)) {
                SET_CONFIG
            } else {
                GET_CONFIG_REPLY
            };
            header(out, w, t, xid);
            out.put_u16(c.flags);
            out.put_u16(c.miss_send_len);
        }
        Message::PacketIn(p) => {
            header(out, w, PACKET_IN, xid);
            p.encode(out)?;
        }
        Message::PortStatus(p) => {
            header(out, w, PORT_STATUS, xid);
            p.encode(v, out);
        }
        Message::PacketOut(p) => {
            header(out, w, PACKET_OUT, xid);
            p.encode(v, out)?;
        }
        Message::FlowMod(f) => {
            header(out, w, FLOW_MOD, xid);
            f.encode_body(v, out)?;
        }
        Message::GroupMod(g) => {
            header(out, w, GROUP_MOD, xid);
            g.encode_body(v, out)?;
        }
        Message::MultipartRequest(r) => {
            header(out, w, MULTIPART_REQUEST, xid);
            r.encode(v, out)?;
        }
        Message::MultipartReply(r) => {
            header(out, w, MULTIPART_REPLY, xid);
            r.encode(v, out)?;
        }
        Message::BarrierRequest => header(out, w, BARRIER_REQUEST, xid),
        Message::BarrierReply => header(out, w, BARRIER_REPLY, xid),
        Message::BundleControl(b) => {
            if v >= Version::V1_5 {
                header(out, w, BUNDLE_CONTROL, xid);
            } else {
                experimenter_header(out, v, xid, ONF_EXPERIMENTER, nicira::ONFT_BUNDLE_CONTROL);
            }
            b.encode(out);
        }
        Message::BundleAdd {
            bundle_id,
            flags,
            message,
        } => {
            if depth > 0 || matches!(**message, Message::BundleAdd { .. }) {
                return Err(Error::InvalidArgument("nested bundle add".into()));
            }
            if v >= Version::V1_5 {
                header(out, w, BUNDLE_ADD_MESSAGE, xid);
            } else {
                experimenter_header(
                    out,
                    v,
                    xid,
                    ONF_EXPERIMENTER,
                    nicira::ONFT_BUNDLE_ADD_MESSAGE,
                );
            }
            out.put_u32(*bundle_id);
            out.put_zeros(2);
            out.put_u16(*flags);
            let inner = out.len();
            encode_at(out, v, xid, message, depth + 1)?;
            let len = buf::len16("bundled message", out.len() - inner)?;
            out.set_u16(inner + 2, len);
        }
        Message::CtFlush(c) => {
            experimenter_header(out, v, xid, NX_EXPERIMENTER, nicira::NXT_CT_FLUSH);
            c.encode(out);
        }
        Message::Experimenter {
            experimenter,
            exp_type,
            data,
        } => {
            experimenter_header(out, v, xid, *experimenter, *exp_type);
            out.extend_from_slice(data);
        }
        Message::Unknown { msg_type, body } => {
            header(out, w, *msg_type, xid);
            out.extend_from_slice(body);
        }
    }
    Ok(())
}

/// Decodes exactly one message; `data` must be the whole frame (its length
/// field must equal `data.len()`).
///
/// A Hello decodes whatever its version; any other message must be
/// OpenFlow 1.3 or 1.5.
pub fn decode(data: &[u8]) -> Result<Frame> {
    decode_at(data, 0)
}

fn decode_at(data: &[u8], depth: usize) -> Result<Frame> {
    if data.len() > MAX_MESSAGE_LEN {
        return Err(Error::TooLong {
            what: "message",
            len: data.len(),
            max: MAX_MESSAGE_LEN,
        });
    }
    let mut r = Reader::new(data, "message header");
    let version = r.u8()?;
    let mtype = r.u8()?;
    let len = usize::from(r.u16()?);
    let xid = r.u32()?;
    if len != data.len() {
        return Err(Error::BadLength {
            what: "message",
            len,
        });
    }
    let mut b = Reader::new(r.rest(), "message body");
    if mtype == msg_type::HELLO {
        return Ok(Frame {
            version,
            xid,
            message: Message::Hello(Hello::decode(&mut b)?),
        });
    }
    let v = Version::from_wire(version)
        .ok_or_else(|| Error::malformed("message", format!("unsupported version {version}")))?;
    use msg_type::*;
    let message = match mtype {
        ERROR => Message::Error(ErrorMsg::decode(&mut b)?),
        ECHO_REQUEST => Message::EchoRequest(b.rest().to_vec()),
        ECHO_REPLY => Message::EchoReply(b.rest().to_vec()),
        FEATURES_REQUEST => Message::FeaturesRequest,
        FEATURES_REPLY => Message::FeaturesReply(Features::decode(&mut b)?),
        GET_CONFIG_REQUEST => Message::GetConfigRequest,
        GET_CONFIG_REPLY | SET_CONFIG => {
            let c = SwitchConfig {
                flags: b.u16()?,
                miss_send_len: b.u16()?,
            };
            if mtype == SET_CONFIG {
                Message::SetConfig(c)
            } else {
                Message::GetConfigReply(c)
            }
        }
        PACKET_IN => Message::PacketIn(PacketIn::decode(&mut b)?),
        PORT_STATUS => Message::PortStatus(PortStatus::decode(v, &mut b)?),
        PACKET_OUT => Message::PacketOut(PacketOut::decode(v, &mut b)?),
        FLOW_MOD => Message::FlowMod(FlowMod::decode_body(v, &mut b)?),
        GROUP_MOD => Message::GroupMod(GroupMod::decode_body(v, &mut b)?),
        MULTIPART_REQUEST => Message::MultipartRequest(MultipartRequest::decode(v, &mut b)?),
        MULTIPART_REPLY => Message::MultipartReply(MultipartReply::decode(v, &mut b)?),
        BARRIER_REQUEST => Message::BarrierRequest,
        BARRIER_REPLY => Message::BarrierReply,
        BUNDLE_CONTROL if v >= Version::V1_5 => {
            Message::BundleControl(BundleControl::decode(&mut b)?)
        }
        BUNDLE_ADD_MESSAGE if v >= Version::V1_5 => decode_bundle_add(&mut b, depth, version)?,
        EXPERIMENTER => {
            let experimenter = b.u32()?;
            let exp_type = b.u32()?;
            match (experimenter, exp_type) {
                (ONF_EXPERIMENTER, nicira::ONFT_BUNDLE_CONTROL) => {
                    Message::BundleControl(BundleControl::decode(&mut b)?)
                }
                (ONF_EXPERIMENTER, nicira::ONFT_BUNDLE_ADD_MESSAGE) => {
                    decode_bundle_add(&mut b, depth, version)?
                }
                (NX_EXPERIMENTER, nicira::NXT_CT_FLUSH) => {
                    Message::CtFlush(CtFlush::decode(&mut b)?)
                }
                (NX_EXPERIMENTER, nicira::NXT_CT_FLUSH_ZONE) => {
                    b.skip(6)?;
                    Message::CtFlush(CtFlush::zone(b.u16()?))
                }
                _ => Message::Experimenter {
                    experimenter,
                    exp_type,
                    data: b.rest().to_vec(),
                },
            }
        }
        _ => Message::Unknown {
            msg_type: mtype,
            body: b.rest().to_vec(),
        },
    };
    Ok(Frame {
        version,
        xid,
        message,
    })
}

/// The bundled message must speak the bundle's own version (OpenFlow 1.5
/// §7.3.9.6; Open vSwitch refuses others): it is encoded back with it.
fn decode_bundle_add(b: &mut Reader<'_>, depth: usize, version: u8) -> Result<Message> {
    if depth > 0 {
        return Err(Error::malformed("bundle add", "nested bundle add"));
    }
    let bundle_id = b.u32()?;
    b.skip(2)?;
    let flags = b.u16()?;
    let inner_len = frame_len(b.rest())?.ok_or(Error::Truncated {
        what: "bundled message",
        need: HEADER_LEN,
        have: b.remaining(),
    })?;
    let inner = b.bytes(inner_len)?;
    let frame = decode_at(inner, depth + 1)?;
    if frame.version != version {
        return Err(Error::malformed(
            "bundle add",
            format!(
                "bundled message of version {:#04x} in a bundle of {version:#04x}",
                frame.version
            ),
        ));
    }
    Ok(Message::BundleAdd {
        bundle_id,
        flags,
        message: Box::new(frame.message),
    })
}
