//! The sandbox's datapath fault: OVS 3.1's userspace conntrack (the
//! sandbox runs ovs-vswitchd with the userspace datapath: this machine has
//! no OVS kernel module) can abort on an assertion in
//! `conn_update_state()` (`conn->conn_type == CT_CONN_TYPE_DEFAULT`) under
//! many short stateful connections, taking the node's whole datapath with
//! it. Seen in about half of the long policy matrix runs; a real cluster's
//! kernel datapath does not have this code, and a real node's
//! ovs-vswitchd is supervised (systemd, the DaemonSet) and restarted.
//!
//! Tests that run many short connections therefore check for such a crash
//! after a failed verdict: [`Sandbox::heal_crashed_vswitchd`] restarts what
//! aborted, saying so loudly, and the test runs the case once more; a
//! second failure fails, and a failure message carries
//! [`Sandbox::vswitchd_crashes`], so a crash is never mistaken for a
//! policy verdict nor hidden.

use std::path::PathBuf;
use std::sync::Mutex;

use crate::Sandbox;

/// Per log file, the EMER lines already handled.
static SEEN: Mutex<Vec<(PathBuf, usize)>> = Mutex::new(Vec::new());

impl Sandbox {
    /// Restarts every node's `ovs-vswitchd` that aborted since the last
    /// look (a new EMER line in its log); whether any had.
    pub fn heal_crashed_vswitchd(&self) -> bool {
        let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
        let mut healed = false;
        for i in 0..self.node_count() {
            let log = self.node_dir(i).join("ovs-vswitchd.log");
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let emer: Vec<&str> = text.lines().filter(|l| l.contains("|EMER|")).collect();
            let known = seen.iter().find(|(p, _)| *p == log).map_or(0, |(_, n)| *n);
            if emer.len() > known {
                eprintln!(
                    "DATAPATH CRASH: ovs-vswitchd on node {i} aborted ({}); restarting it",
                    emer.last().copied().unwrap_or_default()
                );
                if let Err(e) = self.restart_vswitchd(i) {
                    eprintln!("restarting ovs-vswitchd on node {i}: {e:#}");
                }
                healed = true;
            }
            seen.retain(|(p, _)| *p != log);
            seen.push((log, emer.len()));
        }
        healed
    }

    /// Every `ovs-vswitchd` abort in the sandbox's logs, for a failure
    /// message; empty without one.
    pub fn vswitchd_crashes(&self) -> String {
        let mut found = String::new();
        for i in 0..self.node_count() {
            let log = self.node_dir(i).join("ovs-vswitchd.log");
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            for l in text.lines().filter(|l| l.contains("|EMER|")) {
                found.push_str(&format!("\n{}: {l}", log.display()));
            }
        }
        if found.is_empty() {
            found
        } else {
            format!("\novs-vswitchd aborted (the datapath, not a verdict):{found}")
        }
    }
}
