//! Group-mods (`all`, `select`, `indirect`, `fast failover`).
//!
//! OpenFlow 1.5 rewrote the bucket format (bucket ids, properties for weight
//! and watch port/group); 1.3 has fixed fields. [`GroupMod`] holds the union
//! and each version encodes what it can.

use super::action::{decode_actions, encode_actions, port, Action};
use super::buf::{check_len, len16, Put, Reader};
use super::Version;
use crate::error::{Error, Result};

/// `OFPGC_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupCommand {
    Add,
    Modify,
    Delete,
}

/// `OFPGT_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupType {
    All,
    Select,
    Indirect,
    FastFailover,
}

impl GroupType {
    fn code(self) -> u8 {
        match self {
            GroupType::All => 0,
            GroupType::Select => 1,
            GroupType::Indirect => 2,
            GroupType::FastFailover => 3,
        }
    }
    fn from_code(c: u8) -> Result<Self> {
        Ok(match c {
            0 => GroupType::All,
            1 => GroupType::Select,
            2 => GroupType::Indirect,
            3 => GroupType::FastFailover,
            _ => return Err(Error::malformed("group-mod", format!("group type {c}"))),
        })
    }
    /// The `ovs-ofctl` name.
    pub fn name(self) -> &'static str {
        match self {
            GroupType::All => "all",
            GroupType::Select => "select",
            GroupType::Indirect => "indirect",
            GroupType::FastFailover => "ff",
        }
    }
}

/// "All groups" for deletes.
pub const ALL_GROUPS: u32 = 0xffff_fffc;
/// "Any group" (no watch group).
pub const ANY_GROUP: u32 = 0xffff_ffff;

/// One bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Bucket {
    /// OpenFlow 1.5 bucket id; `None` lets the encoder number buckets 0, 1, ...
    pub bucket_id: Option<u32>,
    /// Relative weight for `select` groups.
    pub weight: u16,
    /// Fast failover: the bucket is live while this port is up.
    pub watch_port: u32,
    pub watch_group: u32,
    pub actions: Vec<Action>,
}

impl Bucket {
    pub fn new(actions: Vec<Action>) -> Self {
        Bucket {
            bucket_id: None,
            weight: 0,
            watch_port: port::ANY,
            watch_group: ANY_GROUP,
            actions,
        }
    }
    pub fn weight(mut self, w: u16) -> Self {
        self.weight = w;
        self
    }
    pub fn watch_port(mut self, p: u32) -> Self {
        self.watch_port = p;
        self
    }
}

/// `OFPT_GROUP_MOD`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupMod {
    pub command: GroupCommand,
    pub group_type: GroupType,
    pub group_id: u32,
    pub buckets: Vec<Bucket>,
}

impl GroupMod {
    pub fn add(group_id: u32, group_type: GroupType, buckets: Vec<Bucket>) -> Self {
        GroupMod {
            command: GroupCommand::Add,
            group_type,
            group_id,
            buckets,
        }
    }
    pub fn modify(group_id: u32, group_type: GroupType, buckets: Vec<Bucket>) -> Self {
        GroupMod {
            command: GroupCommand::Modify,
            ..GroupMod::add(group_id, group_type, buckets)
        }
    }
    pub fn delete(group_id: u32) -> Self {
        GroupMod {
            command: GroupCommand::Delete,
            ..GroupMod::add(group_id, GroupType::All, Vec::new())
        }
    }

    pub(crate) fn encode_body(&self, v: Version, out: &mut Vec<u8>) -> Result<()> {
        out.put_u16(match self.command {
            GroupCommand::Add => 0,
            GroupCommand::Modify => 1,
            GroupCommand::Delete => 2,
        });
        out.put_u8(self.group_type.code());
        out.put_u8(0);
        out.put_u32(self.group_id);
        if v >= Version::V1_5 {
            let len_at = out.len();
            out.put_u16(0);
            out.put_zeros(2);
            out.put_u32(0xffff_ffff); // command_bucket_id: all
            let start = out.len();
            for (i, b) in self.buckets.iter().enumerate() {
                let b_start = out.len();
                out.put_u16(0);
                out.put_u16(0);
                out.put_u32(b.bucket_id.unwrap_or(i as u32));
                encode_actions(out, &b.actions)?;
                let actions_len = len16("bucket actions", out.len() - b_start - 8)?;
                out.set_u16(b_start + 2, actions_len);
                if self.group_type == GroupType::Select || b.weight != 0 {
                    out.put_u16(0);
                    out.put_u16(8);
                    out.put_u16(b.weight);
                    out.put_zeros(2);
                }
                if b.watch_port != port::ANY {
                    out.put_u16(1);
                    out.put_u16(8);
                    out.put_u32(b.watch_port);
                }
                if b.watch_group != ANY_GROUP {
                    out.put_u16(2);
                    out.put_u16(8);
                    out.put_u32(b.watch_group);
                }
                let blen = len16("bucket", out.len() - b_start)?;
                out.set_u16(b_start, blen);
            }
            let total = len16("buckets", out.len() - start)?;
            out.set_u16(len_at, total);
        } else {
            for b in &self.buckets {
                let b_start = out.len();
                out.put_u16(0);
                out.put_u16(b.weight);
                out.put_u32(b.watch_port);
                out.put_u32(b.watch_group);
                out.put_zeros(4);
                encode_actions(out, &b.actions)?;
                let blen = len16("bucket", out.len() - b_start)?;
                out.set_u16(b_start, blen);
            }
        }
        Ok(())
    }

    pub(crate) fn decode_body(v: Version, r: &mut Reader<'_>) -> Result<Self> {
        let command = match r.u16()? {
            0 => GroupCommand::Add,
            1 => GroupCommand::Modify,
            2 => GroupCommand::Delete,
            c => return Err(Error::malformed("group-mod", format!("command {c}"))),
        };
        let group_type = GroupType::from_code(r.u8()?)?;
        r.skip(1)?;
        let group_id = r.u32()?;
        let mut buckets = Vec::new();
        if v >= Version::V1_5 {
            let list_len = usize::from(r.u16()?);
            r.skip(2)?;
            r.u32()?;
            let mut list = r.sub(list_len, "bucket list")?;
            while !list.is_empty() {
                let blen = check_len("bucket", usize::from(list.peek_u16()?), 8, list.remaining())?;
                let mut b = list.sub(blen, "bucket")?;
                b.skip(2)?;
                let alen = usize::from(b.u16()?);
                let bucket_id = b.u32()?;
                let mut acts = b.sub(alen, "bucket actions")?;
                let mut bucket = Bucket::new(decode_actions(&mut acts)?);
                bucket.bucket_id = Some(bucket_id);
                while !b.is_empty() {
                    let ptype = b.u16()?;
                    let plen = check_len(
                        "bucket property",
                        usize::from(b.u16()?),
                        4,
                        b.remaining() + 4,
                    )?;
                    let mut p = b.sub(plen - 4, "bucket property")?;
                    match ptype {
                        0 => bucket.weight = p.u16()?,
                        1 => bucket.watch_port = p.u32()?,
                        2 => bucket.watch_group = p.u32()?,
                        _ => {}
                    }
                    let padded = super::buf::pad8(plen) - plen;
                    b.skip(padded.min(b.remaining()))?;
                }
                buckets.push(bucket);
            }
        } else {
            while !r.is_empty() {
                let blen = check_len("bucket", usize::from(r.peek_u16()?), 16, r.remaining())?;
                let mut b = r.sub(blen, "bucket")?;
                b.skip(2)?;
                let weight = b.u16()?;
                let watch_port = b.u32()?;
                let watch_group = b.u32()?;
                b.skip(4)?;
                buckets.push(Bucket {
                    bucket_id: None,
                    weight,
                    watch_port,
                    watch_group,
                    actions: decode_actions(&mut b)?,
                });
            }
        }
        Ok(GroupMod {
            command,
            group_type,
            group_id,
            buckets,
        })
    }
}
