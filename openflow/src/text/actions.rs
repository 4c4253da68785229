//! Actions, in Open vSwitch's `ofpacts_format()` spelling.

use std::fmt::Write as _;
use std::net::Ipv6Addr;

use super::format_port;
use super::matches::format_value;
use crate::codec::{port, Action, Ct, CtZone, Nat, NatAddrs, NatKind};

/// One action as `ovs-ofctl` prints it.
pub fn format_action(a: &Action) -> String {
    match a {
        Action::Output { port: p, max_len } => match *p {
            port::CONTROLLER => format!("CONTROLLER:{max_len}"),
            p if p < port::MAX => format!("output:{p}"),
            p => format_port(p),
        },
        Action::Group(g) => format!("group:{g}"),
        Action::SetField(mf) => format!("set_field:{}->{}", format_value(mf), mf.field.name()),
        Action::PushVlan(t) => format!("push_vlan:{t:#x}"),
        Action::PopVlan => "pop_vlan".into(),
        Action::DecTtl => "dec_ttl".into(),
        Action::Resubmit { in_port, table } => {
            let p = in_port.map(format_port).unwrap_or_default();
            let t = table.map(|t| t.to_string()).unwrap_or_default();
            if in_port.is_some() && table.is_none() {
                format!("resubmit:{p}")
            } else {
                format!("resubmit({p},{t})")
            }
        }
        Action::Ct(ct) => format_ct(ct),
        Action::Nat(nat) => format_nat(nat),
        Action::Unknown { raw } => {
            let hexed: String = raw.iter().map(|b| format!("{b:02x}")).collect();
            format!("unknown_action({hexed})")
        }
    }
}

/// A subfield (`NXM_NX_REG13[0..15]`) named from its NXM header.
fn format_subfield(header: u32, ofs: u16, nbits: u16) -> String {
    let class = (header >> 16) as u16;
    let field = ((header >> 9) & 0x7f) as u8;
    let width_bits = (header & 0xff) * 8;
    let name = match (class, field) {
        (1, 0..=15) => format!("NXM_NX_REG{field}"),
        (1, 106) => "NXM_NX_CT_ZONE".into(),
        (0, 0) => "NXM_OF_IN_PORT".into(),
        _ => format!("{header:#010x}"),
    };
    if ofs == 0 && u32::from(nbits) == width_bits {
        format!("{name}[]")
    } else if nbits == 1 {
        format!("{name}[{ofs}]")
    } else {
        format!("{name}[{ofs}..{}]", (ofs + nbits).saturating_sub(1))
    }
}

fn format_ct(ct: &Ct) -> String {
    let mut s = String::from("ct(");
    if ct.commit {
        s.push_str("commit,");
    }
    if ct.force {
        s.push_str("force,");
    }
    if let Some(t) = ct.table {
        let _ = write!(s, "table={t},");
    }
    match ct.zone {
        CtZone::Imm(0) => {}
        CtZone::Imm(z) => {
            let _ = write!(s, "zone={z},");
        }
        CtZone::Field {
            nxm_header,
            ofs,
            nbits,
        } => {
            let _ = write!(s, "zone={},", format_subfield(nxm_header, ofs, nbits));
        }
    }
    let mut rest = ct.actions.as_slice();
    if let Some((Action::Nat(nat), tail)) = rest.split_first() {
        s.push_str(&format_nat(nat));
        s.push(',');
        rest = tail;
    }
    if !rest.is_empty() {
        let _ = write!(s, "exec({}),", format_action_list(rest));
    }
    match ct.alg {
        0 => {}
        21 => s.push_str("alg=ftp,"),
        69 => s.push_str("alg=tftp,"),
        n => {
            let _ = write!(s, "alg={n},");
        }
    }
    while s.ends_with(',') {
        s.pop();
    }
    s.push(')');
    s
}

fn format_nat(nat: &Nat) -> String {
    let mut s = String::from("nat");
    let Some(kind) = nat.kind else {
        return s;
    };
    s.push('(');
    s.push_str(if kind == NatKind::Src { "src" } else { "dst" });
    if let Some(addrs) = nat.addrs {
        s.push('=');
        let with_port = nat.ports.is_some_and(|(min, _)| min != 0);
        match addrs {
            NatAddrs::V4 { min, max } => {
                let _ = write!(s, "{min}");
                if let Some(max) = max.filter(|m| !m.is_unspecified() && *m != min) {
                    let _ = write!(s, "-{max}");
                }
            }
            NatAddrs::V6 { min, max } => {
                let b = |a: Ipv6Addr| {
                    if with_port {
                        format!("[{a}]")
                    } else {
                        a.to_string()
                    }
                };
                s.push_str(&b(min));
                if let Some(max) = max.filter(|m| !m.is_unspecified() && *m != min) {
                    let _ = write!(s, "-{}", b(max));
                }
            }
        }
        if let Some((min, max)) = nat.ports.filter(|(min, _)| *min != 0) {
            let _ = write!(s, ":{min}");
            if max != 0 && max != min {
                let _ = write!(s, "-{max}");
            }
        }
        s.push(',');
        if nat.persistent {
            s.push_str("persistent,");
        }
        if nat.hash {
            s.push_str("hash,");
        }
        if nat.random {
            s.push_str("random,");
        }
    }
    while s.ends_with(',') {
        s.pop();
    }
    s.push(')');
    s
}

/// A comma-separated action list; `drop` when empty.
pub fn format_action_list(actions: &[Action]) -> String {
    if actions.is_empty() {
        return "drop".into();
    }
    actions
        .iter()
        .map(format_action)
        .collect::<Vec<_>>()
        .join(",")
}
