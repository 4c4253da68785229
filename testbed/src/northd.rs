//! `ovn-northd` on its own, for databases that [`OvnCentral`] does not
//! start: clusters ([`ClusteredDb`]) or any remotes a test chooses.
//!
//! [`OvnCentral`]: crate::OvnCentral
//! [`ClusteredDb`]: crate::ClusteredDb

use std::io;
use std::path::Path;
use std::process::Command;

use crate::process::{absolute_dir, run, Daemon, DaemonSpec, READY_TIMEOUT, STOP_GRACE};

/// A running `ovn-northd` (files `DIR/ovn-northd.*`). Dropping it stops it.
#[derive(Debug)]
pub struct Northd {
    daemon: Daemon,
}

impl Northd {
    /// Starts `ovn-northd` on `nb` and `sb` (remotes as OVN takes them,
    /// comma-separated for clusters); returns once it reports itself
    /// active.
    pub fn start(dir: &Path, nb: &str, sb: &str) -> io::Result<Self> {
        let dir = absolute_dir(dir)?;
        let spec = DaemonSpec {
            program: "ovn-northd",
            args: vec![format!("--ovnnb-db={nb}"), format!("--ovnsb-db={sb}")],
            env: vec![("OVN_RUNDIR", dir.clone()), ("OVS_RUNDIR", dir.clone())],
            netns: None,
            dir,
            stem: "ovn-northd".to_string(),
            unixctl: true,
        };
        let mut northd = Northd {
            daemon: Daemon::spawn(spec)?,
        };
        northd.wait_active()?;
        Ok(northd)
    }

    fn wait_active(&mut self) -> io::Result<()> {
        let ctl = self.daemon.spec().ctl_path();
        self.daemon
            .wait_ready(READY_TIMEOUT, "ovn-northd to become active", |_| {
                let mut status = Command::new("ovn-appctl");
                status.arg("--timeout=5").arg("-t").arg(&ctl).arg("status");
                run(status)
                    .is_ok_and(|s| s.contains("Status: active"))
                    .then_some(())
            })
    }

    /// Pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    /// Whether it runs.
    pub fn is_running(&self) -> bool {
        self.daemon.is_running()
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        self.daemon.kill();
    }

    /// Starts it again (stopping it first if it runs); returns once active.
    pub fn restart(&mut self) -> io::Result<()> {
        self.daemon.respawn()?;
        self.wait_active()
    }
}

impl Drop for Northd {
    fn drop(&mut self) {
        self.daemon.terminate(STOP_GRACE);
    }
}
