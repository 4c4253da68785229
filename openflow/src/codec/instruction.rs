//! Instructions (OpenFlow 1.1+): what a flow does with its actions.
//!
//! Open vSwitch reports instructions in a fixed order (meter, apply, clear,
//! write-actions, write-metadata, goto) and drops empty action lists, so
//! [`normalize`] does the same to whatever a caller builds; flows read back
//! from the switch then compare equal to the ones written.

use super::action::{decode_actions, encode_actions, Action};
use super::buf::{self, check_len, len16, Put, Reader};
use crate::error::{Error, Result};

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Instruction {
    /// `meter:N` (OpenFlow 1.3 instruction).
    Meter(u32),
    /// The action list applied immediately (what `actions=` prints).
    ApplyActions(Vec<Action>),
    /// `clear_actions`.
    ClearActions,
    /// `write_actions(...)`.
    WriteActions(Vec<Action>),
    /// `write_metadata:VALUE[/MASK]`.
    WriteMetadata { value: u64, mask: u64 },
    /// `goto_table:N`.
    GotoTable(u8),
    /// Anything else, verbatim.
    Unknown { raw: Vec<u8> },
}

impl Instruction {
    fn rank(&self) -> u8 {
        match self {
            Instruction::Meter(_) => 0,
            Instruction::ApplyActions(_) => 1,
            Instruction::ClearActions => 2,
            Instruction::WriteActions(_) => 3,
            Instruction::WriteMetadata { .. } => 4,
            Instruction::GotoTable(_) => 5,
            Instruction::Unknown { .. } => 6,
        }
    }
}

/// Puts instructions in Open vSwitch's order and drops empty
/// apply-actions, which OVS does not report back.
pub fn normalize(instructions: &mut Vec<Instruction>) {
    instructions.retain(|i| !matches!(i, Instruction::ApplyActions(a) if a.is_empty()));
    instructions.sort_by_key(Instruction::rank);
}

pub(crate) fn encode_instructions(out: &mut Vec<u8>, instructions: &[Instruction]) -> Result<()> {
    for i in instructions {
        let start = out.len();
        match i {
            Instruction::GotoTable(t) => {
                out.put_u16(1);
                out.put_u16(8);
                out.put_u8(*t);
                out.put_zeros(3);
            }
            Instruction::WriteMetadata { value, mask } => {
                out.put_u16(2);
                out.put_u16(24);
                out.put_zeros(4);
                out.put_u64(*value);
                out.put_u64(*mask);
            }
            Instruction::WriteActions(a) | Instruction::ApplyActions(a) => {
                out.put_u16(if matches!(i, Instruction::WriteActions(_)) {
                    3
                } else {
                    4
                });
                out.put_u16(0);
                out.put_zeros(4);
                encode_actions(out, a)?;
                let len = len16("instruction", out.len() - start)?;
                out.set_u16(start + 2, len);
            }
            Instruction::ClearActions => {
                out.put_u16(5);
                out.put_u16(8);
                out.put_zeros(4);
            }
            Instruction::Meter(m) => {
                out.put_u16(6);
                out.put_u16(8);
                out.put_u32(*m);
            }
            Instruction::Unknown { raw } => {
                // As for raw actions: the length field must match.
                if raw.len() < 8 || raw.len() % 8 != 0 || buf::declared_len(raw) != Some(raw.len())
                {
                    return Err(Error::BadLength {
                        what: "raw instruction",
                        len: raw.len(),
                    });
                }
                // And of a type this codec does not interpret (see raw
                // actions).
                let reads_back = decode_instructions(&mut Reader::new(raw, "raw instruction"));
                if !matches!(reads_back.as_deref(), Ok([Instruction::Unknown { .. }])) {
                    return Err(Error::InvalidArgument(format!(
                        "raw instruction {raw:02x?} is of a type this codec encodes itself; write that instruction"
                    )));
                }
                out.extend_from_slice(raw);
            }
        }
    }
    Ok(())
}

/// Decodes the instructions filling `r`, normalised.
pub(crate) fn decode_instructions(r: &mut Reader<'_>) -> Result<Vec<Instruction>> {
    let mut out = Vec::new();
    while !r.is_empty() {
        let mut head = *r;
        let itype = head.u16()?;
        let len = check_len("instruction", usize::from(head.u16()?), 8, r.remaining())?;
        if len % 8 != 0 {
            return Err(Error::BadLength {
                what: "instruction",
                len,
            });
        }
        let mut body = r.sub(len, "instruction")?;
        let raw = body.rest();
        body.skip(4)?;
        out.push(match itype {
            1 => Instruction::GotoTable(body.u8()?),
            2 => {
                body.skip(4)?;
                Instruction::WriteMetadata {
                    value: body.u64()?,
                    mask: body.u64()?,
                }
            }
            3 | 4 => {
                body.skip(4)?;
                let actions = decode_actions(&mut body)?;
                if itype == 3 {
                    Instruction::WriteActions(actions)
                } else {
                    Instruction::ApplyActions(actions)
                }
            }
            5 => Instruction::ClearActions,
            6 => Instruction::Meter(body.u32()?),
            _ => Instruction::Unknown { raw: raw.to_vec() },
        });
    }
    normalize(&mut out);
    Ok(out)
}
