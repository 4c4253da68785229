//! A standalone `ovsdb-server` with one database.
//!
//! The server always listens on a unix socket in the test's directory; TCP
//! and TLS listeners are optional and use ports picked by
//! [`free_port`](crate::process::free_port), so a restarted server comes back
//! on the same port and clients can reconnect to the remote they were given.
//! The bound ports are confirmed from the server's own log ("listening on
//! port N") rather than assumed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::{
    absolute_dir, check_socket_path, command, free_port, run, Daemon, DaemonSpec, READY_TIMEOUT,
    STOP_GRACE,
};
use crate::tls::TlsFiles;

/// The database schemas the testbed knows how to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Schema {
    /// OVN northbound (`OVN_Northbound`).
    Northbound,
    /// OVN southbound (`OVN_Southbound`).
    Southbound,
    /// Open vSwitch configuration (`Open_vSwitch`).
    OpenVswitch,
}

impl Schema {
    /// Where the Debian packages install the schema file.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(match self {
            Schema::Northbound => "/usr/share/ovn/ovn-nb.ovsschema",
            Schema::Southbound => "/usr/share/ovn/ovn-sb.ovsschema",
            Schema::OpenVswitch => "/usr/share/openvswitch/vswitch.ovsschema",
        })
    }

    /// The database name the schema defines.
    pub fn db_name(&self) -> &'static str {
        match self {
            Schema::Northbound => "OVN_Northbound",
            Schema::Southbound => "OVN_Southbound",
            Schema::OpenVswitch => "Open_vSwitch",
        }
    }

    /// Short name used for file names.
    pub(crate) fn short_name(&self) -> &'static str {
        match self {
            Schema::Northbound => "nb",
            Schema::Southbound => "sb",
            Schema::OpenVswitch => "ovs",
        }
    }
}

/// Which listeners an [`OvsdbServer`] gets besides its unix socket.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Also listen on TCP, 127.0.0.1.
    pub tcp: bool,
    /// Also listen on TLS, 127.0.0.1, with these certificates; clients must
    /// present a certificate signed by the same CA.
    pub tls: Option<TlsFiles>,
    /// The address the TLS listener binds instead of 127.0.0.1 (one that
    /// clients in other network namespaces can reach).
    pub ssl_addr: Option<String>,
    /// Passed to `ovsdb-server` as they are.
    pub extra_args: Vec<String>,
}

/// How often a first start is retried when a picked port turns out to be
/// taken by another process.
const PORT_ATTEMPTS: usize = 5;

/// One `ovsdb-server` process serving one database from `DIR/NAME.db`.
///
/// Dropping it stops the process.
#[derive(Debug)]
pub struct OvsdbServer {
    db_name: String,
    db_path: PathBuf,
    socket_path: PathBuf,
    tcp_port: Option<u16>,
    ssl_port: Option<u16>,
    ssl_addr: String,
    tls: Option<TlsFiles>,
    daemon: Daemon,
}

impl OvsdbServer {
    /// Creates `DIR/NAME.db` from `schema` and serves it on
    /// `unix:DIR/NAME.sock` (plus TCP/TLS as `opts` says). Returns once the
    /// server answers on every listener.
    pub fn start(dir: &Path, name: &str, schema: Schema, opts: ServerOptions) -> io::Result<Self> {
        let dir = absolute_dir(dir)?;
        let db_path = dir.join(format!("{name}.db"));
        check_socket_path(&dir.join(format!("{name}.sock")))?;
        let mut create = Command::new("ovsdb-tool");
        create.arg("create").arg(&db_path).arg(schema.path());
        run(create)?;
        Self::serve(&dir, name, schema.db_name(), db_path, &opts)
    }

    /// Serves an existing database file (standalone or clustered), picking
    /// fresh ports and retrying if one of them is taken meanwhile.
    pub(crate) fn serve(
        dir: &Path,
        name: &str,
        db_name: &str,
        db_path: PathBuf,
        opts: &ServerOptions,
    ) -> io::Result<Self> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let tcp_port = opts.tcp.then(free_port).transpose()?;
            let ssl_port = opts.tls.is_some().then(free_port).transpose()?;
            match Self::serve_on(
                dir,
                name,
                db_name,
                db_path.clone(),
                tcp_port,
                ssl_port,
                opts,
            ) {
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempt < PORT_ATTEMPTS => {}
                result => return result,
            }
        }
    }

    fn serve_on(
        dir: &Path,
        name: &str,
        db_name: &str,
        db_path: PathBuf,
        tcp_port: Option<u16>,
        ssl_port: Option<u16>,
        opts: &ServerOptions,
    ) -> io::Result<Self> {
        let socket_path = dir.join(format!("{name}.sock"));
        check_socket_path(&socket_path)?;
        let mut args = vec![
            db_path.display().to_string(),
            format!("--remote=punix:{}", socket_path.display()),
        ];
        if let Some(port) = tcp_port {
            args.push(format!("--remote=ptcp:{port}:127.0.0.1"));
        }
        let ssl_addr = opts
            .ssl_addr
            .clone()
            .unwrap_or_else(|| "127.0.0.1".to_string());
        if let (Some(port), Some(tls)) = (ssl_port, &opts.tls) {
            args.push(format!("--remote=pssl:{port}:{ssl_addr}"));
            args.push(format!("--private-key={}", tls.server_key.display()));
            args.push(format!("--certificate={}", tls.server_cert.display()));
            args.push(format!("--ca-cert={}", tls.ca_cert.display()));
        }
        args.extend(opts.extra_args.iter().cloned());
        let spec = DaemonSpec {
            program: "ovsdb-server",
            args,
            env: Vec::new(),
            netns: None,
            dir: dir.to_path_buf(),
            stem: name.to_string(),
            unixctl: true,
        };
        remove_stale_socket(&socket_path);
        let mut server = OvsdbServer {
            db_name: db_name.to_string(),
            db_path,
            socket_path,
            tcp_port,
            ssl_port,
            ssl_addr,
            tls: opts.tls.clone(),
            daemon: Daemon::spawn(spec)?,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Waits until the database answers on every listener. (With an explicit
    /// port, ovsdb-server logs only failures to bind, not success.)
    fn wait_ready(&mut self) -> io::Result<()> {
        let ports: Vec<(u16, String)> = self
            .tcp_port
            .map(|p| (p, "127.0.0.1".to_string()))
            .into_iter()
            .chain(self.ssl_port.map(|p| (p, self.ssl_addr.clone())))
            .collect();
        let mut probes = vec![client_command(&self.unix_remote(), None)];
        if let Some(remote) = self.tcp_remote() {
            probes.push(client_command(&remote, None));
        }
        if let (Some(remote), Some(tls)) = (self.ssl_remote(), &self.tls) {
            probes.push(client_command(&remote, Some(tls)));
        }
        let db_name = self.db_name.clone();
        let what = format!("{db_name} to answer on {}", self.unix_remote());
        let outcome = self.daemon.wait_ready(READY_TIMEOUT, &what, |daemon| {
            let log = daemon.log_since_start();
            if let Some((port, _)) = ports
                .iter()
                .find(|(p, a)| log.contains(&format!("|{p}:{a}: bind: Address already in use")))
            {
                return Some(Err(*port));
            }
            probes
                .iter()
                .all(|probe| lists_db(probe(), &db_name))
                .then_some(Ok(()))
        })?;
        outcome.map_err(|port| {
            self.daemon.error_kind(
                io::ErrorKind::AddrInUse,
                format!("port {port} is already in use"),
            )
        })
    }

    /// `unix:/abs/DIR/NAME.sock`.
    pub fn unix_remote(&self) -> String {
        format!("unix:{}", self.socket_path.display())
    }

    /// `tcp:127.0.0.1:PORT`, if the server listens on TCP.
    pub fn tcp_remote(&self) -> Option<String> {
        self.tcp_port.map(|p| format!("tcp:127.0.0.1:{p}"))
    }

    /// `ssl:ADDR:PORT` (127.0.0.1 unless [`ServerOptions::ssl_addr`] said
    /// otherwise), if the server listens on TLS.
    pub fn ssl_remote(&self) -> Option<String> {
        self.ssl_port.map(|p| format!("ssl:{}:{p}", self.ssl_addr))
    }

    /// The database file.
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// The unix socket the server listens on.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// The server's log file (kept across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.daemon.spec().log_path()
    }

    /// The server's control socket, for `ovs-appctl -t`.
    pub fn ctl_path(&self) -> PathBuf {
        self.daemon.spec().ctl_path()
    }

    /// The database name (`OVN_Northbound`, ...).
    pub fn db_name(&self) -> &str {
        &self.db_name
    }

    /// The server's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    /// Whether the server process is alive.
    pub fn is_running(&self) -> bool {
        self.daemon.is_running()
    }

    /// Kills the server with SIGKILL (no clean shutdown) and waits until it
    /// is gone.
    pub fn kill(&mut self) {
        self.daemon.kill();
    }

    /// Stops the server with SIGTERM (SIGKILL if it lingers) and waits until
    /// it is gone.
    pub fn stop(&mut self) {
        self.daemon.terminate(STOP_GRACE);
    }

    /// Starts the server again on the same database file, socket and ports;
    /// stops it first if it is still running. Returns once it answers.
    pub fn restart(&mut self) -> io::Result<()> {
        self.daemon.terminate(STOP_GRACE);
        remove_stale_socket(&self.socket_path);
        self.daemon.respawn()?;
        self.wait_ready()
    }

    /// Runs `ovs-appctl -t CTL ARGS...` against this server.
    pub fn appctl(&self, args: &[&str]) -> io::Result<String> {
        appctl(&self.ctl_path(), args)
    }
}

/// Runs `ovs-appctl -t CTL ARGS...`.
pub(crate) fn appctl(ctl: &Path, args: &[&str]) -> io::Result<String> {
    let mut cmd = Command::new("ovs-appctl");
    cmd.arg("--timeout=5").arg("-t").arg(ctl).args(args);
    run(cmd)
}

/// Whether `db_name` is served on `remote` (a unix or tcp remote).
pub(crate) fn serves(remote: &str, db_name: &str) -> bool {
    lists_db(client_command(remote, None)(), db_name)
}

/// A factory for `ovsdb-client list-dbs REMOTE` commands, with client
/// certificates for `ssl:` remotes.
fn client_command(remote: &str, tls: Option<&TlsFiles>) -> impl Fn() -> Command {
    let remote = remote.to_string();
    let tls = tls.cloned();
    move || {
        let mut cmd = command("ovsdb-client", None);
        if let Some(tls) = &tls {
            cmd.arg(format!("--private-key={}", tls.client_key.display()))
                .arg(format!("--certificate={}", tls.client_cert.display()))
                .arg(format!("--ca-cert={}", tls.ca_cert.display()));
        }
        cmd.args(["--timeout=5", "list-dbs", &remote]);
        cmd
    }
}

/// Whether `list` (an `ovsdb-client list-dbs`) succeeds and names `db_name`.
fn lists_db(list: Command, db_name: &str) -> bool {
    run(list).is_ok_and(|out| out.lines().any(|l| l.trim() == db_name))
}

/// A killed server leaves its socket file behind; remove it so readiness
/// checks cannot be fooled and the new server can bind.
fn remove_stale_socket(path: &Path) {
    let _ = fs::remove_file(path);
}
