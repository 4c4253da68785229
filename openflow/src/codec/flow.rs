//! Flow-mods and flow statistics.

use super::action::{port, Action};
use super::buf::{Put, Reader};
use super::instruction::{decode_instructions, encode_instructions, normalize, Instruction};
use super::matches::Match;
use super::Version;
use crate::error::{Error, Result};

/// `OFPFC_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowModCommand {
    Add,
    Modify,
    ModifyStrict,
    Delete,
    DeleteStrict,
}

impl FlowModCommand {
    fn code(self) -> u8 {
        match self {
            FlowModCommand::Add => 0,
            FlowModCommand::Modify => 1,
            FlowModCommand::ModifyStrict => 2,
            FlowModCommand::Delete => 3,
            FlowModCommand::DeleteStrict => 4,
        }
    }

    fn from_code(c: u8) -> Result<Self> {
        Ok(match c {
            0 => FlowModCommand::Add,
            1 => FlowModCommand::Modify,
            2 => FlowModCommand::ModifyStrict,
            3 => FlowModCommand::Delete,
            4 => FlowModCommand::DeleteStrict,
            _ => return Err(Error::malformed("flow-mod", format!("command {c}"))),
        })
    }

    /// The `ovs-ofctl` word for the command.
    pub fn name(self) -> &'static str {
        match self {
            FlowModCommand::Add => "add",
            FlowModCommand::Modify => "modify",
            FlowModCommand::ModifyStrict => "modify_strict",
            FlowModCommand::Delete => "delete",
            FlowModCommand::DeleteStrict => "delete_strict",
        }
    }
}

/// `OFPFF_*` flow-mod flags.
pub mod flow_flags {
    pub const SEND_FLOW_REM: u16 = 1;
    pub const CHECK_OVERLAP: u16 = 2;
    pub const RESET_COUNTS: u16 = 4;
    pub const NO_PKT_COUNTS: u16 = 8;
    pub const NO_BYT_COUNTS: u16 = 16;
}

/// "All tables" in flow-mod deletes and stats requests.
pub const ALL_TABLES: u8 = 0xff;
/// "No buffer" in flow-mods and packet-outs.
pub const NO_BUFFER: u32 = 0xffff_ffff;
/// "Any group" in flow-mod deletes and stats requests.
pub const ANY_GROUP: u32 = 0xffff_ffff;

/// `OFPT_FLOW_MOD`. Build with [`FlowMod::add`], [`FlowMod::delete`], ...
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowMod {
    pub command: FlowModCommand,
    pub cookie: u64,
    /// For modify/delete: only flows whose cookie matches under this mask.
    pub cookie_mask: u64,
    pub table_id: u8,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub priority: u16,
    pub buffer_id: u32,
    /// Delete only flows that output to this port (`ANY` for all).
    pub out_port: u32,
    pub out_group: u32,
    pub flags: u16,
    /// OpenFlow 1.4+ eviction importance (nonzero fails to encode in 1.3).
    pub importance: u16,
    pub match_: Match,
    pub instructions: Vec<Instruction>,
}

/// Default flow priority (`OFP_DEFAULT_PRIORITY`).
pub const DEFAULT_PRIORITY: u16 = 0x8000;

impl FlowMod {
    fn new(command: FlowModCommand, match_: Match) -> Self {
        FlowMod {
            command,
            cookie: 0,
            cookie_mask: 0,
            table_id: 0,
            idle_timeout: 0,
            hard_timeout: 0,
            priority: DEFAULT_PRIORITY,
            buffer_id: NO_BUFFER,
            out_port: port::ANY,
            out_group: ANY_GROUP,
            flags: 0,
            importance: 0,
            match_,
            instructions: Vec::new(),
        }
    }

    /// Adds (or replaces) the flow with this match and priority.
    pub fn add(match_: Match) -> Self {
        FlowMod::new(FlowModCommand::Add, match_)
    }
    /// Changes the instructions of every flow the match covers.
    pub fn modify(match_: Match) -> Self {
        FlowMod::new(FlowModCommand::Modify, match_)
    }
    /// Changes the instructions of the flow with exactly this match and
    /// priority.
    pub fn modify_strict(match_: Match) -> Self {
        FlowMod::new(FlowModCommand::ModifyStrict, match_)
    }
    /// Deletes every flow the match covers (in `table`, default all tables).
    pub fn delete(match_: Match) -> Self {
        FlowMod::new(FlowModCommand::Delete, match_).table(ALL_TABLES)
    }
    /// Deletes the flow with exactly this match and priority.
    pub fn delete_strict(match_: Match) -> Self {
        FlowMod::new(FlowModCommand::DeleteStrict, match_)
    }
    /// Deletes every flow of every table.
    pub fn delete_all() -> Self {
        FlowMod::delete(Match::new())
    }

    pub fn table(mut self, t: u8) -> Self {
        self.table_id = t;
        self
    }
    pub fn priority(mut self, p: u16) -> Self {
        self.priority = p;
        self
    }
    pub fn cookie(mut self, c: u64) -> Self {
        self.cookie = c;
        self
    }
    /// Restricts modify/delete to flows with `cookie & mask == c & mask`.
    pub fn cookie_mask(mut self, c: u64, mask: u64) -> Self {
        self.cookie = c;
        self.cookie_mask = mask;
        self
    }
    pub fn idle_timeout(mut self, s: u16) -> Self {
        self.idle_timeout = s;
        self
    }
    pub fn hard_timeout(mut self, s: u16) -> Self {
        self.hard_timeout = s;
        self
    }
    pub fn flags(mut self, f: u16) -> Self {
        self.flags = f;
        self
    }
    pub fn importance(mut self, i: u16) -> Self {
        self.importance = i;
        self
    }
    pub fn out_port(mut self, p: u32) -> Self {
        self.out_port = p;
        self
    }
    /// Sets the apply-actions list (an empty list means drop).
    pub fn actions(self, actions: Vec<Action>) -> Self {
        self.instruction(Instruction::ApplyActions(actions))
    }
    pub fn goto_table(self, t: u8) -> Self {
        self.instruction(Instruction::GotoTable(t))
    }
    pub fn write_metadata(self, value: u64, mask: u64) -> Self {
        self.instruction(Instruction::WriteMetadata { value, mask })
    }
    /// Adds an instruction, replacing one of the same kind.
    pub fn instruction(mut self, i: Instruction) -> Self {
        self.instructions
            .retain(|x| std::mem::discriminant(x) != std::mem::discriminant(&i));
        self.instructions.push(i);
        normalize(&mut self.instructions);
        self
    }

    /// The apply-actions list (empty if none).
    pub fn apply_actions(&self) -> &[Action] {
        apply_actions(&self.instructions)
    }

    pub(crate) fn encode_body(&self, v: Version, out: &mut Vec<u8>) -> Result<()> {
        out.reserve(48 + self.match_.encoded_len() + 64);
        out.put_u64(self.cookie);
        out.put_u64(self.cookie_mask);
        out.put_u8(self.table_id);
        out.put_u8(self.command.code());
        out.put_u16(self.idle_timeout);
        out.put_u16(self.hard_timeout);
        out.put_u16(self.priority);
        out.put_u32(self.buffer_id);
        out.put_u32(self.out_port);
        out.put_u32(self.out_group);
        out.put_u16(self.flags);
        if v < Version::V1_5 && self.importance != 0 {
            return Err(Error::Unsupported(
                "flow importance needs OpenFlow 1.4 or later".into(),
            ));
        }
        out.put_u16(self.importance);
        self.match_.encode(out)?;
        encode_instructions(out, &self.instructions)
    }

    pub(crate) fn decode_body(v: Version, r: &mut Reader<'_>) -> Result<Self> {
        let cookie = r.u64()?;
        let cookie_mask = r.u64()?;
        let table_id = r.u8()?;
        let command = FlowModCommand::from_code(r.u8()?)?;
        let idle_timeout = r.u16()?;
        let hard_timeout = r.u16()?;
        let priority = r.u16()?;
        let buffer_id = r.u32()?;
        let out_port = r.u32()?;
        let out_group = r.u32()?;
        let flags = r.u16()?;
        let importance = r.u16()?;
        let match_ = Match::decode(r)?;
        let instructions = decode_instructions(r)?;
        Ok(FlowMod {
            command,
            cookie,
            cookie_mask,
            table_id,
            idle_timeout,
            hard_timeout,
            priority,
            buffer_id,
            out_port,
            out_group,
            flags,
            importance: if v >= Version::V1_5 { importance } else { 0 },
            match_,
            instructions,
        })
    }
}

pub(crate) fn apply_actions(instructions: &[Instruction]) -> &[Action] {
    instructions
        .iter()
        .find_map(|i| match i {
            Instruction::ApplyActions(a) => Some(a.as_slice()),
            _ => None,
        })
        .unwrap_or(&[])
}
