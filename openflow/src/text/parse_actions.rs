//! Parsing actions and instructions in the text form `ofpacts_format()`
//! prints (`ct(...)`, `nat(...)`, `set_field:V->F`, `resubmit(,T)`, ...).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::parse::{bad, field_by_name, field_value, num_as, num_masked, parse_port};
use crate::codec::{Action, Ct, CtZone, Instruction, Nat, NatAddrs, NatKind};
use crate::error::Result;

/// Splits on `sep` outside parentheses and brackets.
fn split_top(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            c if c == sep && depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().filter(|p| !p.is_empty()).collect()
}

fn unhex(s: &str) -> Result<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return Err(bad("hex bytes", s));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
                .ok_or_else(|| bad("hex bytes", s))
        })
        .collect()
}

fn inner<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    s.strip_prefix(name)?.strip_prefix('(')?.strip_suffix(')')
}

/// Parses one action.
pub fn parse_action(s: &str) -> Result<Action> {
    if let Some(rest) = s.strip_prefix("output:") {
        return Ok(Action::output(parse_port(rest)?));
    }
    if let Some(rest) = s.strip_prefix("CONTROLLER:") {
        return Ok(Action::controller(num_as(rest)?));
    }
    if let Some(rest) = s.strip_prefix("group:") {
        return Ok(Action::Group(num_as(rest)?));
    }
    if let Some(rest) = s.strip_prefix("push_vlan:") {
        return Ok(Action::PushVlan(num_as(rest)?));
    }
    if let Some(rest) = s.strip_prefix("set_field:") {
        let (value, name) = rest.rsplit_once("->").ok_or_else(|| bad("set_field", s))?;
        let field = field_by_name(name).ok_or_else(|| bad("field name", name))?;
        let (v, m) = field_value(field, value)?;
        return Ok(match m {
            Some(m) => Action::set_field_masked(field, v, m),
            None => Action::set_field(field, v),
        });
    }
    if let Some(rest) = s.strip_prefix("resubmit:") {
        return Ok(Action::Resubmit {
            in_port: Some(parse_port(rest)?),
            table: None,
        });
    }
    if let Some(args) = inner(s, "resubmit") {
        let (p, t) = args.split_once(',').ok_or_else(|| bad("resubmit", s))?;
        return Ok(Action::Resubmit {
            in_port: (!p.is_empty()).then(|| parse_port(p)).transpose()?,
            table: (!t.is_empty()).then(|| num_as(t)).transpose()?,
        });
    }
    if let Some(args) = inner(s, "ct") {
        return parse_ct(args);
    }
    if s == "nat" || s.starts_with("nat(") {
        return parse_nat(s);
    }
    if let Some(h) = inner(s, "unknown_action") {
        return Ok(Action::Unknown { raw: unhex(h)? });
    }
    Ok(match s {
        "pop_vlan" | "strip_vlan" => Action::PopVlan,
        "dec_ttl" => Action::DecTtl,
        name => Action::output(parse_port(name).map_err(|_| bad("action", name))?),
    })
}

fn parse_ct(args: &str) -> Result<Action> {
    let mut ct = Ct::default();
    for a in split_top(args, ',') {
        if a == "commit" {
            ct.commit = true;
        } else if a == "force" {
            ct.force = true;
        } else if let Some(t) = a.strip_prefix("table=") {
            ct.table = Some(num_as(t)?);
        } else if let Some(z) = a.strip_prefix("zone=") {
            ct.zone = parse_zone(z)?;
        } else if a == "nat" || a.starts_with("nat(") {
            ct.actions.insert(0, parse_nat(a)?);
        } else if let Some(e) = inner(a, "exec") {
            for x in split_top(e, ',') {
                ct.actions.push(parse_action(x)?);
            }
        } else if let Some(alg) = a.strip_prefix("alg=") {
            ct.alg = match alg {
                "ftp" => 21,
                "tftp" => 69,
                n => num_as(n)?,
            };
        } else {
            return Err(bad("ct argument", a));
        }
    }
    Ok(Action::Ct(ct))
}

fn parse_zone(z: &str) -> Result<CtZone> {
    let Some((name, bits)) = z.split_once('[') else {
        return Ok(CtZone::Imm(num_as(z)?));
    };
    let n: u8 = name
        .strip_prefix("NXM_NX_REG")
        .and_then(|n| n.parse().ok())
        .filter(|n| *n < 16)
        .ok_or_else(|| bad("zone field", z))?;
    let bits = bits.strip_suffix(']').ok_or_else(|| bad("zone field", z))?;
    let (ofs, nbits) = match bits.split_once("..") {
        _ if bits.is_empty() => (0, 32),
        Some((a, b)) => {
            let (a, b): (u16, u16) = (num_as(a)?, num_as(b)?);
            (a, b.checked_sub(a).ok_or_else(|| bad("zone bits", z))? + 1)
        }
        None => (num_as(bits)?, 1),
    };
    Ok(CtZone::Field {
        nxm_header: 0x0001_0004 | (u32::from(n) << 9),
        ofs,
        nbits,
    })
}

fn parse_nat(s: &str) -> Result<Action> {
    let mut nat = Nat::default();
    let Some(args) = inner(s, "nat") else {
        return Ok(Action::Nat(nat));
    };
    for (i, a) in split_top(args, ',').into_iter().enumerate() {
        match a {
            "persistent" => nat.persistent = true,
            "hash" => nat.hash = true,
            "random" => nat.random = true,
            _ if i == 0 => {
                let (kind, range) = a.split_once('=').unwrap_or((a, ""));
                nat.kind = Some(match kind {
                    "src" => NatKind::Src,
                    "dst" => NatKind::Dst,
                    _ => return Err(bad("nat", a)),
                });
                if !range.is_empty() {
                    parse_nat_range(&mut nat, range)?;
                }
            }
            _ => return Err(bad("nat argument", a)),
        }
    }
    Ok(Action::Nat(nat))
}

/// `A[-B][:P[-Q]]`, IPv6 addresses in brackets when a port follows.
fn parse_nat_range(nat: &mut Nat, range: &str) -> Result<()> {
    let (addrs, ports) = if range.starts_with('[') {
        match range.rsplit_once("]:") {
            Some((a, p)) => (format!("{a}]"), Some(p)),
            None => (range.to_string(), None),
        }
    } else if range.matches(':').count() == 1 {
        let (a, p) = range
            .split_once(':')
            .ok_or_else(|| bad("nat range", range))?;
        (a.to_string(), Some(p))
    } else {
        (range.to_string(), None)
    };
    let addrs = addrs.replace(['[', ']'], "");
    let (min, max) = match addrs.split_once('-') {
        Some((a, b)) => (a, Some(b)),
        None => (addrs.as_str(), None),
    };
    nat.addrs = Some(if min.contains(':') {
        let p = |a: &str| a.parse::<Ipv6Addr>().map_err(|_| bad("IPv6 address", a));
        NatAddrs::V6 {
            min: p(min)?,
            max: max.map(p).transpose()?,
        }
    } else {
        let p = |a: &str| a.parse::<Ipv4Addr>().map_err(|_| bad("IPv4 address", a));
        NatAddrs::V4 {
            min: p(min)?,
            max: max.map(p).transpose()?,
        }
    });
    if let Some(p) = ports {
        nat.ports = Some(match p.split_once('-') {
            Some((a, b)) => (num_as(a)?, num_as(b)?),
            None => (num_as(p)?, 0),
        });
    }
    Ok(())
}

/// Parses the text after `actions=` into instructions.
pub fn parse_instructions(s: &str) -> Result<Vec<Instruction>> {
    let mut apply = Vec::new();
    let mut out = Vec::new();
    if s == "drop" {
        return Ok(out);
    }
    for part in split_top(s, ',') {
        if let Some(t) = part.strip_prefix("goto_table:") {
            out.push(Instruction::GotoTable(num_as(t)?));
        } else if let Some(m) = part.strip_prefix("meter:") {
            out.push(Instruction::Meter(num_as(m)?));
        } else if let Some(w) = part.strip_prefix("write_metadata:") {
            let (value, mask) = num_masked(w)?;
            let value = u64::try_from(value).map_err(|_| bad("metadata", w))?;
            let mask = u64::try_from(mask.unwrap_or(u128::from(u64::MAX)))
                .map_err(|_| bad("metadata mask", w))?;
            out.push(Instruction::WriteMetadata { value, mask });
        } else if part == "clear_actions" {
            out.push(Instruction::ClearActions);
        } else if let Some(w) = inner(part, "write_actions") {
            let acts = if w == "drop" {
                Vec::new()
            } else {
                split_top(w, ',')
                    .into_iter()
                    .map(parse_action)
                    .collect::<Result<_>>()?
            };
            out.push(Instruction::WriteActions(acts));
        } else if let Some(h) = inner(part, "unknown_instruction") {
            out.push(Instruction::Unknown { raw: unhex(h)? });
        } else {
            apply.push(parse_action(part)?);
        }
    }
    if !apply.is_empty() {
        out.push(Instruction::ApplyActions(apply));
    }
    crate::codec::normalize_instructions(&mut out);
    Ok(out)
}
