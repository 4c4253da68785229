//! Network namespaces owned by a test.
//!
//! Names combine a caller-chosen prefix with the pid, a process-wide serial
//! number and random bits, so tests in parallel threads and in parallel test
//! binaries never collide. A namespace is deleted when its owner is dropped.

use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::process::Command;

use crate::process::{command, next_serial, random_u64, run};

/// Longest prefix kept from the caller's name.
const MAX_PREFIX: usize = 12;

/// A named network namespace (`ip netns add`) with `lo` up.
#[derive(Debug)]
pub(crate) struct Netns {
    name: String,
    deleted: bool,
}

impl Netns {
    /// Creates `PREFIX-PID-SERIAL-RAND` and brings its loopback up.
    pub fn create(prefix: &str) -> io::Result<Self> {
        let mut name: String = prefix
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(MAX_PREFIX)
            .collect();
        if name.is_empty() {
            name.push_str("testbed");
        }
        let _ = write!(
            name,
            "-{}-{}-{:04x}",
            std::process::id(),
            next_serial(),
            random_u64() & 0xffff
        );
        let mut add = Command::new("ip");
        add.args(["netns", "add", &name]);
        run(add)?;
        let netns = Netns {
            name,
            deleted: false,
        };
        let mut lo = command("ip", Some(&netns.name));
        lo.args(["link", "set", "lo", "up"]);
        run(lo)?;
        Ok(netns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deletes the namespace. Processes still inside keep it alive
    /// anonymously, so callers stop their daemons first.
    pub fn delete(&mut self) {
        if self.deleted {
            return;
        }
        self.deleted = true;
        let mut del = Command::new("ip");
        del.args(["netns", "del", &self.name]);
        if run(del).is_err() && exists(&self.name) {
            // Do not panic in drop paths; leave a trace for the test log.
            eprintln!(
                "ovn-testbed: could not delete network namespace {}",
                self.name
            );
        }
    }
}

/// Whether a named network namespace exists.
pub fn exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.delete();
    }
}
