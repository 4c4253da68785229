//! OVN central: the northbound and southbound databases and `ovn-northd`.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{
    absolute_dir, describe, output_within, run, Daemon, DaemonSpec, READY_TIMEOUT, STOP_GRACE,
};
use crate::server::{OvsdbServer, Schema, ServerOptions};
use crate::tls::TlsFiles;

/// What [`OvnCentral::start_with`] starts.
#[derive(Debug, Clone)]
pub struct CentralOptions {
    /// Also serve NB and SB on TCP (127.0.0.1).
    pub tcp: bool,
    /// Run `ovn-northd`. Without it, NB changes never reach SB, which lets a
    /// test look at NB alone or play northd itself.
    pub northd: bool,
    /// Also serve NB and SB over TLS with these certificates (clients must
    /// present one signed by the same CA); see [`OvnCentral::nb_ssl_remote`].
    pub tls: Option<TlsFiles>,
    /// The address the TLS listeners bind (127.0.0.1 when `None`).
    pub ssl_addr: Option<String>,
}

impl Default for CentralOptions {
    /// TCP and northd both on.
    fn default() -> Self {
        CentralOptions {
            tcp: true,
            northd: true,
            tls: None,
            ssl_addr: None,
        }
    }
}

/// NB and SB `ovsdb-server`s (files `DIR/nb.*`, `DIR/sb.*`) and, optionally,
/// `ovn-northd` (`DIR/ovn-northd.*`). Dropping it stops all of them.
#[derive(Debug)]
pub struct OvnCentral {
    // Declared first so it is dropped first: northd goes before its databases.
    northd: Option<Daemon>,
    /// The northbound database server.
    pub nb: OvsdbServer,
    /// The southbound database server.
    pub sb: OvsdbServer,
    dir: PathBuf,
}

impl OvnCentral {
    /// NB and SB on unix sockets and TCP, plus northd.
    pub fn start(dir: &Path) -> io::Result<Self> {
        Self::start_with(dir, CentralOptions::default())
    }

    /// Starts what `opts` asks for; returns once the databases answer and
    /// northd (if any) is active.
    pub fn start_with(dir: &Path, opts: CentralOptions) -> io::Result<Self> {
        let dir = absolute_dir(dir)?;
        let server_opts = ServerOptions {
            tcp: opts.tcp,
            tls: opts.tls.clone(),
            ssl_addr: opts.ssl_addr.clone(),
            ..ServerOptions::default()
        };
        let nb = OvsdbServer::start(&dir, "nb", Schema::Northbound, server_opts.clone())?;
        let sb = OvsdbServer::start(&dir, "sb", Schema::Southbound, server_opts)?;
        let mut central = OvnCentral {
            northd: None,
            nb,
            sb,
            dir,
        };
        if opts.northd {
            central.restart_northd()?;
        }
        Ok(central)
    }

    fn northd_spec(&self) -> DaemonSpec {
        DaemonSpec {
            program: "ovn-northd",
            args: vec![
                format!("--ovnnb-db={}", self.nb.unix_remote()),
                format!("--ovnsb-db={}", self.sb.unix_remote()),
            ],
            env: vec![
                ("OVN_RUNDIR", self.dir.clone()),
                ("OVS_RUNDIR", self.dir.clone()),
            ],
            netns: None,
            dir: self.dir.clone(),
            stem: "ovn-northd".to_string(),
            unixctl: true,
        }
    }

    /// `unix:` remote of the northbound database.
    pub fn nb_remote(&self) -> String {
        self.nb.unix_remote()
    }

    /// `unix:` remote of the southbound database.
    pub fn sb_remote(&self) -> String {
        self.sb.unix_remote()
    }

    /// `ssl:` remote of the northbound database, when it serves TLS.
    pub fn nb_ssl_remote(&self) -> Option<String> {
        self.nb.ssl_remote()
    }

    /// `ssl:` remote of the southbound database, when it serves TLS.
    pub fn sb_ssl_remote(&self) -> Option<String> {
        self.sb.ssl_remote()
    }

    /// Runs `ovn-nbctl --db=NB ARGS...`; returns stdout, or an error with
    /// stderr if it fails.
    pub fn nbctl(&self, args: &[&str]) -> io::Result<String> {
        run(ctl("ovn-nbctl", &self.nb_remote(), args))
    }

    /// Runs `ovn-sbctl --db=SB ARGS...`; returns stdout, or an error with
    /// stderr if it fails.
    pub fn sbctl(&self, args: &[&str]) -> io::Result<String> {
        run(ctl("ovn-sbctl", &self.sb_remote(), args))
    }

    /// Pid of `ovn-northd` while it runs.
    pub fn northd_pid(&self) -> Option<u32> {
        self.northd.as_ref().and_then(Daemon::pid)
    }

    /// Kills `ovn-northd` with SIGKILL.
    pub fn kill_northd(&mut self) {
        if let Some(northd) = self.northd.as_mut() {
            northd.kill();
        }
    }

    /// (Re)starts `ovn-northd`; returns once it reports itself active.
    pub fn restart_northd(&mut self) -> io::Result<()> {
        match self.northd.as_mut() {
            Some(northd) => northd.respawn()?,
            None => self.northd = Some(Daemon::spawn(self.northd_spec())?),
        }
        let Some(northd) = self.northd.as_mut() else {
            return Err(io::Error::other("ovn-northd vanished while starting"));
        };
        let ctl = northd.spec().ctl_path();
        northd.wait_ready(READY_TIMEOUT, "ovn-northd to become active", |_| {
            let mut status = Command::new("ovn-appctl");
            status.arg("--timeout=5").arg("-t").arg(&ctl).arg("status");
            run(status)
                .is_ok_and(|s| s.contains("Status: active"))
                .then_some(())
        })
    }

    /// Blocks until northd has processed everything written to NB so far
    /// (`ovn-nbctl --wait=sb sync`), or `timeout` passes.
    pub fn sync_sb(&self, timeout: Duration) -> io::Result<()> {
        // ovn-nbctl takes whole seconds; round up.
        let secs = timeout.as_millis().div_ceil(1000).max(1);
        let mut sync = Command::new("ovn-nbctl");
        sync.arg(format!("--db={}", self.nb_remote()))
            .arg(format!("--timeout={secs}"))
            .args(["--wait=sb", "sync"]);
        let desc = describe(&sync);
        let out = output_within(sync, timeout + Duration::from_secs(2))?;
        if out.status.success() {
            return Ok(());
        }
        let msg = format!(
            "`{desc}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
        Err(match &self.northd {
            Some(northd) => northd.error(msg),
            None => io::Error::other(format!("{msg} (ovn-northd is not running)")),
        })
    }
}

/// `PROGRAM --db=REMOTE --timeout=10 ARGS...`.
fn ctl(program: &str, remote: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.arg(format!("--db={remote}"))
        .arg("--timeout=10")
        .args(args);
    cmd
}

impl Drop for OvnCentral {
    fn drop(&mut self) {
        if let Some(northd) = self.northd.as_mut() {
            northd.terminate(STOP_GRACE);
        }
    }
}
