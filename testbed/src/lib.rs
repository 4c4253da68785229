//! Real OVS/OVN daemons for tests.
//!
//! Switchyard talks to OVSDB, `ovn-northd`, `ovs-vswitchd` and
//! `ovn-controller`; mocks of those would only test our assumptions about
//! them. This crate starts the real programs (as installed by Debian's
//! `openvswitch-switch`, `ovn-central` and `ovn-host`) inside a directory the
//! test owns (normally a `tempfile::TempDir`) and stops them when the handle
//! is dropped.
//!
//! Design rules, because many tests run at once (threads of one test binary
//! and several binaries):
//! - every file, socket and control socket lives in the test's directory;
//! - TCP ports are picked per server, never fixed; network namespace names
//!   carry the pid, a counter and random bits;
//! - daemons are child processes and are stopped through their handle,
//!   never by name;
//! - readiness is an observed condition polled until a deadline
//!   ([`wait_until`]), never a fixed sleep;
//! - errors include the tail of the daemon's log.
//!
//! The API is synchronous; every call is bounded in time. From async tests,
//! calling it directly is fine (calls take milliseconds to a few seconds).
//!
//! ```no_run
//! use ovn_testbed::{Chassis, ChassisOptions, Duration, OvnCentral};
//!
//! let dir = tempfile::tempdir()?;
//! let central = OvnCentral::start(dir.path())?;
//! central.nbctl(&["ls-add", "sw0"])?;
//! central.sync_sb(Duration::from_secs(10))?;
//! let node = Chassis::start(dir.path(), &central.sb_remote(), ChassisOptions::new("node1"))?;
//! node.wait_registered(Duration::from_secs(20))?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Daemons run as children of the test process: if that process is killed
//! outright (SIGKILL, abort), nothing stops them; a normal test failure
//! (panic) unwinds and drops the handles, which does.

mod central;
mod chassis;
mod cluster;
mod netns;
mod northd;
mod process;
mod server;
mod switch;
mod tls;
mod wait;

pub use std::time::Duration;

pub use central::{CentralOptions, OvnCentral};
pub use chassis::{Chassis, ChassisOptions};
pub use cluster::ClusteredDb;
pub use northd::Northd;
pub use server::{OvsdbServer, Schema, ServerOptions};
pub use switch::{OvsSwitch, SwitchOptions};
pub use tls::TlsFiles;
pub use wait::{wait_for, wait_until};

/// Whether a named network namespace (`ip netns`) exists; for tests that
/// check cleanup.
pub fn netns_exists(name: &str) -> bool {
    netns::exists(name)
}

/// Whether a process with this pid exists and has not exited.
pub fn pid_alive(pid: u32) -> bool {
    process::pid_alive(pid)
}
