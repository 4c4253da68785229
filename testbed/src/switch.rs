//! A bare Open vSwitch: its own Open_vSwitch database and `ovs-vswitchd`
//! (userspace datapath) with one `datapath_type=netdev` bridge, and no OVN.
//!
//! For OpenFlow tests: the bridge's management socket
//! `DIR/NAME/BRIDGE.mgmt` accepts OpenFlow connections the way
//! `ovs-ofctl` makes them. The daemons run in a fresh network namespace
//! by default, because the userspace datapath creates tap devices named
//! after its bridges (and `ovs-netdev`) that would collide between tests.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::chassis::{sanitize, vsctl_command};
use crate::netns::Netns;
use crate::process::{
    absolute_dir, check_socket_path, command, run, Daemon, DaemonSpec, READY_TIMEOUT, STOP_GRACE,
};
use crate::server::{appctl, serves, Schema};
use crate::wait::wait_until;

/// How an [`OvsSwitch`] is set up.
#[derive(Debug, Clone)]
pub struct SwitchOptions {
    /// Subdirectory of the test directory, and namespace prefix.
    pub name: String,
    /// The bridge to create (`datapath_type=netdev`).
    pub bridge: String,
    /// Run in a new network namespace (default true).
    pub netns: bool,
}

impl SwitchOptions {
    pub fn new(name: &str) -> Self {
        SwitchOptions {
            name: name.to_string(),
            bridge: "br0".to_string(),
            netns: true,
        }
    }
}

/// A running `ovsdb-server` + `ovs-vswitchd` pair with one bridge. Dropping
/// it stops both and deletes the namespace.
#[derive(Debug)]
pub struct OvsSwitch {
    dir: PathBuf,
    bridge: String,
    vswitchd: Daemon,
    ovsdb: Daemon,
    netns: Option<Netns>,
}

impl OvsSwitch {
    /// Starts the daemons and creates the bridge; returns once its
    /// management socket exists.
    pub fn start(dir: &Path, opts: SwitchOptions) -> io::Result<Self> {
        let dir = absolute_dir(dir)?;
        let sdir = dir.join(sanitize(&opts.name));
        check_socket_path(&sdir.join(format!("{}.mgmt", opts.bridge)))?;
        check_socket_path(&sdir.join("ovs-vswitchd.ctl"))?;
        fs::create_dir(&sdir)?;
        let netns = if opts.netns {
            Some(Netns::create(&opts.name)?)
        } else {
            None
        };
        let ns = netns.as_ref().map(|n| n.name().to_string());
        let spec = |program: &'static str, args: Vec<String>| DaemonSpec {
            program,
            args,
            env: vec![("OVS_RUNDIR", sdir.clone())],
            netns: ns.clone(),
            dir: sdir.clone(),
            stem: program.to_string(),
            unixctl: true,
        };
        let db = sdir.join("conf.db");
        let socket = sdir.join("db.sock");
        let remote = format!("unix:{}", socket.display());
        let mut create = Command::new("ovsdb-tool");
        create
            .arg("create")
            .arg(&db)
            .arg(Schema::OpenVswitch.path());
        run(create)?;
        let mut ovsdb = Daemon::spawn(spec(
            "ovsdb-server",
            vec![
                db.display().to_string(),
                format!("--remote=punix:{}", socket.display()),
            ],
        ))?;
        ovsdb.wait_ready(READY_TIMEOUT, "the Open_vSwitch database", |_| {
            serves(&remote, Schema::OpenVswitch.db_name()).then_some(())
        })?;
        run(vsctl_command(&sdir, &remote, &["--no-wait", "init"]))?;
        let mut vswitchd = Daemon::spawn(spec("ovs-vswitchd", vec![remote.clone()]))?;
        let ctl = vswitchd.spec().ctl_path();
        vswitchd.wait_ready(READY_TIMEOUT, "ovs-vswitchd to answer", |_| {
            appctl(&ctl, &["version"]).ok().map(drop)
        })?;
        // Without --no-wait, ovs-vsctl returns once ovs-vswitchd applied it.
        run(vsctl_command(
            &sdir,
            &remote,
            &[
                "add-br",
                &opts.bridge,
                "--",
                "set",
                "bridge",
                &opts.bridge,
                "datapath_type=netdev",
            ],
        ))
        .map_err(|e| vswitchd.error(e))?;
        let mgmt = sdir.join(format!("{}.mgmt", opts.bridge));
        vswitchd.wait_ready(READY_TIMEOUT, "the bridge's mgmt socket", |_| {
            mgmt.exists().then_some(())
        })?;
        Ok(OvsSwitch {
            dir: sdir,
            bridge: opts.bridge,
            vswitchd,
            ovsdb,
            netns,
        })
    }

    /// The switch's directory (`OVS_RUNDIR` of its daemons).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The namespace the daemons run in, if any.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_ref().map(Netns::name)
    }

    /// `DIR/NAME/BRIDGE.mgmt`.
    pub fn mgmt_path(&self) -> PathBuf {
        self.dir.join(format!("{}.mgmt", self.bridge))
    }

    /// `unix:DIR/NAME/BRIDGE.mgmt`, the OpenFlow remote for clients.
    pub fn mgmt_remote(&self) -> String {
        format!("unix:{}", self.mgmt_path().display())
    }

    /// `unix:` remote of the Open_vSwitch database.
    pub fn ovs_remote(&self) -> String {
        format!("unix:{}", self.dir.join("db.sock").display())
    }

    /// `ovs-vswitchd`'s pid while it runs.
    pub fn vswitchd_pid(&self) -> Option<u32> {
        self.vswitchd.pid()
    }

    /// Pids of both daemons that are running.
    pub fn pids(&self) -> Vec<u32> {
        [&self.vswitchd, &self.ovsdb]
            .iter()
            .filter_map(|d| d.pid())
            .collect()
    }

    /// Runs `ovs-vsctl --db=THIS --timeout=10 ARGS...`.
    pub fn vsctl(&self, args: &[&str]) -> io::Result<String> {
        run(vsctl_command(&self.dir, &self.ovs_remote(), args))
    }

    /// Runs `ovs-appctl -t ovs-vswitchd.ctl ARGS...`.
    pub fn appctl(&self, args: &[&str]) -> io::Result<String> {
        appctl(&self.vswitchd.spec().ctl_path(), args)
    }

    /// Runs `ovs-ofctl --timeout=10 ARGS... ` with the bridge's mgmt socket
    /// as the switch: `{}` in `args` is replaced by it, otherwise it is
    /// inserted after the first non-option argument (the command).
    pub fn ofctl(&self, args: &[&str]) -> io::Result<String> {
        let sw = self.mgmt_remote();
        let mut cmd = Command::new("ovs-ofctl");
        cmd.env("OVS_RUNDIR", &self.dir).arg("--timeout=10");
        if args.contains(&"{}") {
            cmd.args(
                args.iter()
                    .map(|a| if *a == "{}" { sw.as_str() } else { a }),
            );
            return run(cmd);
        }
        let mut inserted = false;
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            cmd.arg(arg);
            if *arg == "-O" {
                if let Some(v) = rest.next() {
                    cmd.arg(v);
                }
            } else if !arg.starts_with('-') {
                cmd.arg(&sw);
                inserted = true;
                break;
            }
        }
        if !inserted {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("ofctl: no ovs-ofctl command in {args:?}"),
            ));
        }
        cmd.args(rest);
        run(cmd)
    }

    /// Adds an internal port and returns its OpenFlow port number once
    /// `ovs-vswitchd` assigned one.
    pub fn add_internal_port(&self, name: &str) -> io::Result<u32> {
        self.vsctl(&[
            "add-port",
            &self.bridge,
            name,
            "--",
            "set",
            "interface",
            name,
            "type=internal",
        ])?;
        self.ofport(name)
    }

    /// The OpenFlow port number of interface `name`.
    pub fn ofport(&self, name: &str) -> io::Result<u32> {
        wait_until(READY_TIMEOUT, "an ofport number", || {
            self.vsctl(&["get", "interface", name, "ofport"])
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .filter(|n| *n > 0)
                .and_then(|n| u32::try_from(n).ok())
        })
        .map_err(|e| self.vswitchd.error(e))
    }

    /// Runs `cmd` in the switch's namespace and returns its output.
    pub fn exec(&self, cmd: &[&str]) -> io::Result<Output> {
        let Some((program, args)) = cmd.split_first() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
        };
        command(program, self.netns())
            .args(args)
            .stdin(Stdio::null())
            .output()
    }

    /// Stops both daemons (SIGTERM, then SIGKILL) and deletes the namespace.
    pub fn stop(&mut self) {
        self.vswitchd.terminate(STOP_GRACE);
        self.ovsdb.terminate(STOP_GRACE);
        if let Some(n) = self.netns.as_mut() {
            n.delete();
        }
    }
}

impl Drop for OvsSwitch {
    fn drop(&mut self) {
        self.stop();
    }
}
