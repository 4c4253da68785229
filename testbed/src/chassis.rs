//! An OVN chassis ("node"): its own Open_vSwitch database, `ovs-vswitchd`
//! with the userspace (netdev) datapath, and `ovn-controller`.
//!
//! Each chassis normally lives in its own network namespace, so several
//! nodes share one machine the way they would share a cluster. Its files go
//! into `DIR/NAME/`, which is also `OVS_RUNDIR`/`OVN_RUNDIR` for its daemons:
//! `ovs-vswitchd` puts `br-int.mgmt` there, and `ovn-controller` (which has
//! no `--unixctl` option) its control socket. Unix sockets are files, so
//! daemons inside the namespace and tools outside reach each other.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::netns::Netns;
use crate::process::{
    absolute_dir, check_socket_path, command, next_serial, run, succeeds, Daemon, DaemonSpec,
    READY_TIMEOUT, STOP_GRACE,
};
use crate::server::{appctl, serves, Schema};
use crate::wait::wait_until;

/// How a [`Chassis`] is set up.
#[derive(Debug, Clone)]
pub struct ChassisOptions {
    /// Chassis name: OVS `system-id`, SB `Chassis.name`, the name of the
    /// chassis' subdirectory, and the prefix of its network namespace.
    pub name: String,
    /// Tunnel endpoint IP (`ovn-encap-ip`). When `None` and
    /// `configure_ovn` is set, a loopback address unique within this
    /// process is used (SB requires (type, ip) of encaps to be unique).
    pub encap_ip: Option<String>,
    /// Run in a new network namespace. With `false` the daemons run in the
    /// current namespace, where the userspace datapath creates tap devices
    /// named `br-int` and `ovs-netdev`: two such chassis at once collide.
    pub netns: bool,
    /// Write `system-id`, `hostname`, `ovn-remote`, `ovn-encap-type=geneve`,
    /// `ovn-encap-ip` and `ovn-bridge-datapath-type=netdev` into
    /// `Open_vSwitch.external_ids`. `false` leaves that to the code under
    /// test (the node agent); `ovn-controller` then idles until it is done.
    pub configure_ovn: bool,
}

impl ChassisOptions {
    /// A namespaced, fully configured chassis called `name`.
    pub fn new(name: &str) -> Self {
        ChassisOptions {
            name: name.to_string(),
            encap_ip: None,
            netns: true,
            configure_ovn: true,
        }
    }
}

/// A running chassis. Dropping it stops its daemons and deletes its
/// namespace.
#[derive(Debug)]
pub struct Chassis {
    name: String,
    dir: PathBuf,
    sb_remote: String,
    encap_ip: Option<String>,
    // Stopped in this order by `stop`.
    controller: Daemon,
    vswitchd: Daemon,
    ovsdb: Daemon,
    netns: Option<Netns>,
}

impl Chassis {
    /// Starts a chassis whose `ovn-controller` talks to `sb_remote`. Returns
    /// once `ovs-vswitchd` is up and, with `configure_ovn`, `br-int` exists
    /// and its OpenFlow socket is there.
    pub fn start(dir: &Path, sb_remote: &str, opts: ChassisOptions) -> io::Result<Self> {
        let dir = absolute_dir(dir)?;
        let name = sanitize(&opts.name);
        let cdir = dir.join(&name);
        // The longest socket path in the chassis directory.
        check_socket_path(&cdir.join("ovn-controller.4194304.ctl"))?;
        fs::create_dir(&cdir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "chassis directory {}: {e} (two chassis with one name?)",
                    cdir.display()
                ),
            )
        })?;

        // Locals are dropped in reverse order if a step fails: daemons go
        // before the namespace they run in.
        let netns = if opts.netns {
            Some(Netns::create(&name)?)
        } else {
            None
        };
        let ns = netns.as_ref().map(|n| n.name().to_string());
        let spec = |program: &'static str, args: Vec<String>, unixctl: bool| DaemonSpec {
            program,
            args,
            env: vec![("OVS_RUNDIR", cdir.clone()), ("OVN_RUNDIR", cdir.clone())],
            netns: ns.clone(),
            dir: cdir.clone(),
            stem: program.to_string(),
            unixctl,
        };

        let db = cdir.join("conf.db");
        let socket = cdir.join("db.sock");
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
            true,
        ))?;
        ovsdb.wait_ready(READY_TIMEOUT, "the Open_vSwitch database", |_| {
            serves(&remote, Schema::OpenVswitch.db_name()).then_some(())
        })?;

        let encap_ip = opts.configure_ovn.then(|| {
            opts.encap_ip
                .clone()
                .unwrap_or_else(unique_loopback_address)
        });
        let mut init = vsctl_command(&cdir, &remote, &["--no-wait", "init"]);
        if let Some(ip) = &encap_ip {
            init.args(["--", "set", "Open_vSwitch", "."]);
            for (key, value) in [
                ("system-id", opts.name.as_str()),
                ("hostname", opts.name.as_str()),
                ("ovn-remote", sb_remote),
                ("ovn-encap-type", "geneve"),
                ("ovn-encap-ip", ip.as_str()),
                ("ovn-bridge-datapath-type", "netdev"),
            ] {
                init.arg(format!("external_ids:{key}={}", quote(value)));
            }
        }
        run(init)?;

        let mut vswitchd = Daemon::spawn(spec("ovs-vswitchd", vec![remote.clone()], true))?;
        let ctl = vswitchd.spec().ctl_path();
        vswitchd.wait_ready(READY_TIMEOUT, "ovs-vswitchd to answer", |_| {
            appctl(&ctl, &["version"]).ok().map(drop)
        })?;
        // A write without --no-wait returns once ovs-vswitchd has applied
        // the configuration (cur_cfg caught up with next_cfg).
        run(vsctl_command(
            &cdir,
            &remote,
            &["--", "comment", "testbed-ready"],
        ))
        .map_err(|e| vswitchd.error(e))?;

        let controller = Daemon::spawn(spec("ovn-controller", vec![remote.clone()], false))?;
        let mut chassis = Chassis {
            name: opts.name.clone(),
            dir: cdir,
            sb_remote: sb_remote.to_string(),
            encap_ip,
            controller,
            vswitchd,
            ovsdb,
            netns,
        };
        chassis.wait_controller(opts.configure_ovn)?;
        Ok(chassis)
    }

    /// Waits until `ovn-controller` answers on its control socket and, if
    /// asked, until `br-int` exists with its OpenFlow management socket.
    fn wait_controller(&mut self, with_br_int: bool) -> io::Result<()> {
        let dir = self.dir.clone();
        let remote = self.ovs_remote();
        self.controller
            .wait_ready(READY_TIMEOUT, "ovn-controller to answer", |d| {
                let pid = d.pid()?;
                let ctl = dir.join(format!("ovn-controller.{pid}.ctl"));
                appctl(&ctl, &["version"]).ok().map(drop)
            })?;
        if with_br_int {
            let mgmt = self.mgmt_path();
            self.controller
                .wait_ready(READY_TIMEOUT, "br-int to be created", |_| {
                    (mgmt.exists()
                        && succeeds(vsctl_command(&dir, &remote, &["br-exists", "br-int"])))
                    .then_some(())
                })?;
        }
        Ok(())
    }

    /// The chassis name (system-id).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The chassis' directory, `DIR/NAME`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configured `ovn-encap-ip`, if the testbed configured OVN.
    pub fn encap_ip(&self) -> Option<&str> {
        self.encap_ip.as_deref()
    }

    /// The network namespace the daemons run in, if any.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_ref().map(Netns::name)
    }

    /// `unix:` remote of this chassis' Open_vSwitch database.
    pub fn ovs_remote(&self) -> String {
        format!("unix:{}", self.dir.join("db.sock").display())
    }

    /// `br-int`'s OpenFlow management socket.
    pub fn mgmt_path(&self) -> PathBuf {
        self.dir.join("br-int.mgmt")
    }

    /// Pids of the chassis' daemons that are running.
    pub fn pids(&self) -> Vec<u32> {
        [&self.controller, &self.vswitchd, &self.ovsdb]
            .iter()
            .filter_map(|d| d.pid())
            .collect()
    }

    /// Pid of `ovn-controller` while it runs.
    pub fn ovn_controller_pid(&self) -> Option<u32> {
        self.controller.pid()
    }

    /// Pid of `ovs-vswitchd` while it runs.
    pub fn vswitchd_pid(&self) -> Option<u32> {
        self.vswitchd.pid()
    }

    /// Runs `ovs-vsctl --db=THIS --timeout=10 ARGS...`.
    pub fn vsctl(&self, args: &[&str]) -> io::Result<String> {
        run(vsctl_command(&self.dir, &self.ovs_remote(), args))
    }

    /// Runs `ovs-ofctl [OPTIONS] COMMAND unix:DIR/br-int.mgmt [ARGS...]`:
    /// the switch argument is inserted after the options and the command,
    /// so `ofctl(&["-O", "OpenFlow15", "dump-flows", "table=0"])` works.
    /// Options that take a separate value must use the `--opt=value` form,
    /// except `-O`.
    pub fn ofctl(&self, args: &[&str]) -> io::Result<String> {
        let mut cmd = Command::new("ovs-ofctl");
        cmd.env("OVS_RUNDIR", &self.dir).arg("--timeout=10");
        let mut rest = args.iter();
        let mut command = None;
        while let Some(arg) = rest.next() {
            cmd.arg(arg);
            if *arg == "-O" {
                if let Some(version) = rest.next() {
                    cmd.arg(version);
                }
            } else if !arg.starts_with('-') {
                command = Some(*arg);
                break;
            }
        }
        if command.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("ofctl: no ovs-ofctl command in {args:?}"),
            ));
        }
        cmd.arg(format!("unix:{}", self.mgmt_path().display()))
            .args(rest);
        run(cmd)
    }

    /// Runs `cmd` inside the chassis' namespace (or directly without one)
    /// and returns its output whatever the exit status. Not time-limited:
    /// the caller chooses the command.
    pub fn exec(&self, cmd: &[&str]) -> io::Result<Output> {
        let Some((program, args)) = cmd.split_first() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "exec: empty command",
            ));
        };
        command(program, self.netns())
            .args(args)
            .stdin(Stdio::null())
            .output()
    }

    /// Polls SB until a `Chassis` row named after this chassis exists.
    /// Needs `sb_remote` to be a unix or tcp remote.
    pub fn wait_registered(&self, timeout: Duration) -> io::Result<()> {
        let found = wait_until(timeout, "the chassis to register in SB", || {
            let mut list = Command::new("ovn-sbctl");
            list.arg(format!("--db={}", self.sb_remote)).args([
                "--timeout=5",
                "--bare",
                "--columns=name",
                "list",
                "Chassis",
            ]);
            run(list)
                .is_ok_and(|out| out.lines().any(|l| l.trim() == self.name))
                .then_some(())
        });
        found.map_err(|msg| self.controller.error(msg))
    }

    /// Restarts `ovs-vswitchd` (SIGTERM, then a new process on the same
    /// database). Every bridge loses its flows and, with the userspace
    /// datapath, its internal devices (recreated without addresses) and
    /// the conntrack table. Returns once the new process answers and has
    /// applied the database's configuration.
    pub fn restart_vswitchd(&mut self) -> io::Result<()> {
        self.vswitchd.respawn()?;
        let ctl = self.vswitchd.spec().ctl_path();
        self.vswitchd
            .wait_ready(READY_TIMEOUT, "ovs-vswitchd to answer", |_| {
                appctl(&ctl, &["version"]).ok().map(drop)
            })?;
        run(vsctl_command(
            &self.dir,
            &self.ovs_remote(),
            &["--", "comment", "testbed-restarted"],
        ))
        .map(drop)
        .map_err(|e| self.vswitchd.error(e))
    }

    /// Kills `ovn-controller` with SIGKILL (its flows stay in `br-int`).
    pub fn kill_ovn_controller(&mut self) {
        self.controller.kill();
    }

    /// (Re)starts `ovn-controller`; returns once it answers on its control
    /// socket.
    pub fn restart_ovn_controller(&mut self) -> io::Result<()> {
        self.controller.respawn()?;
        self.wait_controller(false)
    }

    /// Stops every daemon (SIGTERM, then SIGKILL) and deletes the namespace.
    pub fn stop(&mut self) {
        self.controller.terminate(STOP_GRACE);
        self.vswitchd.terminate(STOP_GRACE);
        self.ovsdb.terminate(STOP_GRACE);
        if let Some(netns) = self.netns.as_mut() {
            netns.delete();
        }
    }
}

impl Drop for Chassis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `ovs-vsctl --db=REMOTE --timeout=10 ARGS...` with the chassis' rundir.
pub(crate) fn vsctl_command(dir: &Path, remote: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("ovs-vsctl");
    cmd.env("OVS_RUNDIR", dir)
        .arg(format!("--db={remote}"))
        .arg("--timeout=10")
        .args(args);
    cmd
}

/// Quotes a value for the OVSDB string syntax ovs-vsctl parses.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Keeps characters that are safe in file and namespace names.
pub(crate) fn sanitize(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() || clean.starts_with('.') {
        format!("chassis{clean}")
    } else {
        clean
    }
}

/// A loopback address unique within this process: `127.1.0.0` onwards.
fn unique_loopback_address() -> String {
    let n = next_serial();
    format!(
        "127.{}.{}.{}",
        1 + (n >> 16) % 254,
        (n >> 8) & 0xff,
        n & 0xff
    )
}
