//! Flows in the text form `ovs-ofctl dump-flows` prints.
//!
//! Tests and operators compare flows by eye, so a flow printed here must be
//! the same line `ovs-ofctl -O OpenFlow15 dump-flows` shows for it. The
//! field order, the protocol shorthands (`tcp`, `udp6`, ...), and the number
//! formats follow Open vSwitch's `match_format()` and `ofpacts_format()`
//! (read, not copied); the integration tests compare against the real tool.

use std::fmt::{self, Write as _};

use crate::codec::{
    flow_flags, port, Action, FlowMod, FlowStats, Instruction, Match, DEFAULT_PRIORITY,
};

mod actions;
mod matches;
mod parse;
mod parse_actions;

pub use actions::{format_action, format_action_list};
use matches::hex;
pub use matches::{format_match, format_value};
pub use parse::{field_by_name, parse_flow};
pub use parse_actions::{parse_action, parse_instructions};

/// `IN_PORT`, `LOCAL`, ... or the number.
pub fn format_port(p: u32) -> String {
    match p {
        port::IN_PORT => "IN_PORT".into(),
        port::TABLE => "TABLE".into(),
        port::NORMAL => "NORMAL".into(),
        port::FLOOD => "FLOOD".into(),
        port::ALL => "ALL".into(),
        port::CONTROLLER => "CONTROLLER".into(),
        port::LOCAL => "LOCAL".into(),
        port::ANY => "ANY".into(),
        n => n.to_string(),
    }
}

/// Instructions as the text after `actions=`.
pub fn format_instructions(instructions: &[Instruction]) -> String {
    let mut parts = Vec::new();
    for i in instructions {
        match i {
            Instruction::Meter(m) => parts.push(format!("meter:{m}")),
            Instruction::ApplyActions(a) => parts.extend(a.iter().map(format_action)),
            Instruction::ClearActions => parts.push("clear_actions".into()),
            Instruction::WriteActions(a) => {
                parts.push(format!("write_actions({})", format_action_list(a)))
            }
            Instruction::WriteMetadata { value, mask } => {
                if *mask == u64::MAX {
                    parts.push(format!("write_metadata:{}", hex((*value).into())));
                } else {
                    parts.push(format!(
                        "write_metadata:{}/{}",
                        hex((*value).into()),
                        hex((*mask).into())
                    ));
                }
            }
            Instruction::GotoTable(t) => parts.push(format!("goto_table:{t}")),
            Instruction::Unknown { raw } => {
                let hexed: String = raw.iter().map(|b| format!("{b:02x}")).collect();
                parts.push(format!("unknown_instruction({hexed})"));
            }
        }
    }
    if parts.is_empty() {
        "drop".into()
    } else {
        parts.join(",")
    }
}

fn flag_words(flags: u16) -> String {
    let mut s = String::new();
    for (bit, name) in [
        (flow_flags::SEND_FLOW_REM, "send_flow_rem"),
        (flow_flags::CHECK_OVERLAP, "check_overlap"),
        (flow_flags::RESET_COUNTS, "reset_counts"),
        (flow_flags::NO_PKT_COUNTS, "no_packet_counts"),
        (flow_flags::NO_BYT_COUNTS, "no_byte_counts"),
    ] {
        if flags & bit != 0 {
            s.push_str(name);
            s.push(' ');
        }
    }
    s
}

fn format_duration(sec: u32, nsec: u32) -> String {
    let mut s = sec.to_string();
    if nsec > 0 {
        let msec = nsec / 1_000_000;
        if msec * 1_000_000 == nsec {
            let _ = write!(s, ".{msec:03}");
        } else {
            let frac = format!("{nsec:09}");
            s.push('.');
            s.push_str(frac.trim_end_matches('0'));
        }
    }
    s.push('s');
    s
}

impl FlowStats {
    /// The line `ovs-ofctl dump-flows` prints for this flow (without its
    /// leading space); with `show_stats == false`, what `--no-stats` prints.
    pub fn to_ofctl(&self, show_stats: bool) -> String {
        let mut s = String::new();
        if show_stats || self.cookie != 0 {
            let _ = write!(s, "cookie={:#x}, ", self.cookie);
        }
        if show_stats {
            let _ = write!(
                s,
                "duration={}, ",
                format_duration(self.duration_sec, self.duration_nsec)
            );
        }
        if show_stats || self.table_id != 0 {
            let _ = write!(s, "table={}, ", self.table_id);
        }
        if show_stats {
            let _ = write!(
                s,
                "n_packets={}, n_bytes={}, ",
                self.packet_count, self.byte_count
            );
        }
        write_common(
            &mut s,
            self.idle_timeout,
            self.hard_timeout,
            self.flags,
            self.importance,
        );
        if show_stats {
            if let Some(age) = self.idle_age {
                let _ = write!(s, "idle_age={age}, ");
            }
        }
        let m = format_match(&self.match_, self.priority);
        s.push_str(&m);
        if !m.is_empty() {
            s.push(' ');
        }
        s.push_str("actions=");
        s.push_str(&format_instructions(&self.instructions));
        s
    }
}

fn write_common(s: &mut String, idle: u16, hard: u16, flags: u16, importance: u16) {
    if idle != 0 {
        let _ = write!(s, "idle_timeout={idle}, ");
    }
    if hard != 0 {
        let _ = write!(s, "hard_timeout={hard}, ");
    }
    s.push_str(&flag_words(flags));
    if importance != 0 {
        let _ = write!(s, "importance={importance}, ");
    }
}

impl fmt::Display for FlowStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_ofctl(false))
    }
}

impl FlowMod {
    /// The flow this flow-mod installs, as it would read back (no counters).
    pub fn to_flow_stats(&self) -> FlowStats {
        FlowStats {
            table_id: self.table_id,
            priority: self.priority,
            idle_timeout: self.idle_timeout,
            hard_timeout: self.hard_timeout,
            flags: self.flags,
            importance: self.importance,
            cookie: self.cookie,
            match_: self.match_.clone(),
            instructions: self.instructions.clone(),
            ..FlowStats::default()
        }
    }
}

/// `add cookie=0x5, table=1, priority=100,ip actions=output:2`.
impl fmt::Display for FlowMod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut flow = self.to_flow_stats().to_ofctl(false);
        if self.cookie_mask != 0 {
            flow = format!("cookie_mask={:#x}, {flow}", self.cookie_mask);
        }
        write!(f, "{} {flow}", self.command.name())
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_match(self, DEFAULT_PRIORITY))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_action(self))
    }
}
