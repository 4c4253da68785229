//! Running OVS/OVN tools and owning daemons.
//!
//! Daemons are started as child processes of the test (not `--detach`ed), so
//! the test holds the only handle that can stop them: a pid can never be
//! recycled under us, and stopping never depends on names (other tests run
//! the same programs in parallel) or on pid files (the caller may already
//! have removed the directory). Every daemon still gets `--pidfile`,
//! `--log-file` and, where supported, `--unixctl` inside its directory,
//! because the defaults point at `/var/run/openvswitch`, which need not exist.
//! Errors carry the tail of the daemon's log, which is what makes a failure on
//! CI debuggable.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fmt::Display;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crate::wait::wait_until;

/// How long a daemon may take to become ready. Generous: test machines are
/// small and run many tests at once.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Upper bound for one tool invocation (ovs-vsctl, ovsdb-tool, ip, ...).
pub(crate) const TOOL_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a daemon gets to exit after SIGTERM before it is killed.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(3);

/// Longest unix socket path the kernel accepts (`sun_path` is 108 bytes
/// including the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Lines of log included in error messages.
const LOG_TAIL_LINES: usize = 30;

/// Builds a command for `program`, run inside `netns` when given.
///
/// `ip netns exec` execs the program after switching namespaces, so the
/// child's pid is the program's own pid.
pub(crate) fn command(program: impl AsRef<OsStr>, netns: Option<&str>) -> Command {
    match netns {
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// Renders a command line for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut out = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&arg.to_string_lossy());
    }
    out
}

/// Runs `cmd` to completion, killing it if it takes longer than `timeout`.
pub(crate) fn output_within(mut cmd: Command, timeout: Duration) -> io::Result<Output> {
    let desc = describe(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run `{desc}`: {e}")))?;
    // Drain both pipes on threads so a chatty tool cannot block on a full pipe.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("`{desc}` did not finish within {timeout:?}"),
            ));
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

/// Runs `cmd` within [`TOOL_TIMEOUT`]; returns stdout, or an error carrying
/// the command line, exit status and stderr if it did not exit 0.
pub(crate) fn run(cmd: Command) -> io::Result<String> {
    let desc = describe(&cmd);
    let out = output_within(cmd, TOOL_TIMEOUT)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "`{desc}` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end(),
            if out.stdout.is_empty() {
                String::new()
            } else {
                format!(
                    "\nstdout: {}",
                    String::from_utf8_lossy(&out.stdout).trim_end()
                )
            }
        )))
    }
}

/// Runs `cmd` and reports only whether it exited 0 (for readiness probes).
pub(crate) fn succeeds(cmd: Command) -> bool {
    output_within(cmd, TOOL_TIMEOUT).is_ok_and(|out| out.status.success())
}

/// Fails with a clear message if `path` is too long to be a unix socket.
pub(crate) fn check_socket_path(path: &Path) -> io::Result<()> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "unix socket path {} is {len} bytes, the limit is {MAX_SOCKET_PATH}; \
                 use a shorter directory (tempfile::tempdir() lives in /tmp)",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Makes `dir` absolute (remotes handed to other processes must be) and
/// checks that it exists.
pub(crate) fn absolute_dir(dir: &Path) -> io::Result<PathBuf> {
    fs::canonicalize(dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("testbed directory {}: {e}", dir.display()),
        )
    })
}

/// A random number that differs between calls, threads and processes.
pub(crate) fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// A process-wide counter, for names that must be unique within this process.
pub(crate) fn next_serial() -> u64 {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

/// Picks a TCP port on 127.0.0.1 that is free right now.
///
/// Ports come from below the kernel's ephemeral range, so outgoing
/// connections (which take ephemeral local ports) never sit on a port a
/// daemon must bind again after a restart. Ports handed out are never reused
/// within this process; across processes a clash is unlikely, and callers
/// retry on `AddrInUse`.
pub(crate) fn free_port() -> io::Result<u16> {
    static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let (low, high) = port_range();
    let span = u64::from(high - low);
    for _ in 0..200 {
        // `span` fits in u16, so the remainder does too.
        let port = low + (random_u64() % span) as u16;
        let mut taken = TAKEN
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let taken = taken.get_or_insert_with(HashSet::new);
        if taken.contains(&port) {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            taken.insert(port);
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no free TCP port found in {low}..{high}"),
    ))
}

/// The port range [`free_port`] draws from: below the ephemeral range when
/// there is room, else above it.
fn port_range() -> (u16, u16) {
    let ephemeral = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        });
    match ephemeral {
        Some((low, _)) if low >= 12_000 => (10_000, low),
        Some((_, high)) if high <= 60_000 => (high + 1, 65_535),
        _ => (10_000, 30_000),
    }
}

/// Last `n` lines of a file, or a note saying why there are none.
pub(crate) fn file_tail(path: &Path, n: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(n);
            lines[start..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// What to start, and where its files go.
#[derive(Debug, Clone)]
pub(crate) struct DaemonSpec {
    /// Program name, looked up in `PATH`.
    pub program: &'static str,
    /// Arguments, without the pidfile/log/unixctl ones added here.
    pub args: Vec<String>,
    /// Extra environment (`OVS_RUNDIR`, `OVN_RUNDIR`).
    pub env: Vec<(&'static str, PathBuf)>,
    /// Network namespace to run in.
    pub netns: Option<String>,
    /// Directory for pid, log, stdout/stderr and control socket files.
    pub dir: PathBuf,
    /// File stem: the files are `DIR/STEM.pid`, `.log`, `.out` and `.ctl`.
    pub stem: String,
    /// Whether the program takes `--unixctl`.
    pub unixctl: bool,
}

impl DaemonSpec {
    pub fn file(&self, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", self.stem))
    }

    pub fn log_path(&self) -> PathBuf {
        self.file("log")
    }

    pub fn ctl_path(&self) -> PathBuf {
        self.file("ctl")
    }
}

/// A running (or stopped) daemon owned by the test.
#[derive(Debug)]
pub(crate) struct Daemon {
    spec: DaemonSpec,
    child: Option<Child>,
    /// Length of the log file when the current process was started, so
    /// readiness checks only look at what the current process wrote.
    log_offset: u64,
}

impl Daemon {
    /// Starts the daemon described by `spec`.
    pub fn spawn(spec: DaemonSpec) -> io::Result<Self> {
        if spec.unixctl {
            check_socket_path(&spec.ctl_path())?;
        }
        let mut daemon = Daemon {
            spec,
            child: None,
            log_offset: 0,
        };
        daemon.start()?;
        Ok(daemon)
    }

    /// Starts the process again with the same arguments; stops the current
    /// one first if it is still running.
    pub fn respawn(&mut self) -> io::Result<()> {
        self.terminate(STOP_GRACE);
        self.start()
    }

    fn start(&mut self) -> io::Result<()> {
        let spec = &self.spec;
        self.log_offset = fs::metadata(spec.log_path()).map_or(0, |m| m.len());
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(spec.file("out"))?;
        let mut cmd = command(spec.program, spec.netns.as_deref());
        cmd.args(&spec.args)
            .arg(format!("--pidfile={}", spec.file("pid").display()))
            .arg(format!("--log-file={}", spec.log_path().display()))
            .args(["-vconsole:off", "-vsyslog:off"]);
        if spec.unixctl {
            cmd.arg(format!("--unixctl={}", spec.ctl_path().display()));
        }
        for (key, value) in &spec.env {
            cmd.env(key, value);
        }
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let desc = describe(&cmd);
        let child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start `{desc}`: {e}")))?;
        self.child = Some(child);
        Ok(())
    }

    pub fn spec(&self) -> &DaemonSpec {
        &self.spec
    }

    /// Pid of the process, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.is_running()
            .then(|| self.child.as_ref().map(Child::id))
            .flatten()
    }

    /// Whether the process exists and has not exited. An exited child stays
    /// a zombie until reaped, so its pid cannot have been reused.
    pub fn is_running(&self) -> bool {
        self.child.as_ref().is_some_and(|c| pid_alive(c.id()))
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, wait up to `grace` for the process to exit, then SIGKILL.
    pub fn terminate(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            let pid = child.id().to_string();
            let mut kill = Command::new("kill");
            kill.args(["-s", "TERM", &pid]);
            let _ = output_within(kill, Duration::from_secs(5));
            let exited = wait_until(grace, "daemon exit", || child.try_wait().ok().flatten());
            if exited.is_err() {
                let _ = child.kill();
            }
        }
        let _ = child.wait();
    }

    /// What the current process has written to its log so far.
    pub fn log_since_start(&self) -> String {
        let read = || -> io::Result<String> {
            let mut file = fs::File::open(self.spec.log_path())?;
            file.seek(SeekFrom::Start(self.log_offset))?;
            let mut text = String::new();
            file.read_to_string(&mut text)?;
            Ok(text)
        };
        read().unwrap_or_default()
    }

    /// An error about this daemon, with the tail of its log and output.
    pub fn error(&self, msg: impl Display) -> io::Error {
        self.error_kind(io::ErrorKind::Other, msg)
    }

    pub fn error_kind(&self, kind: io::ErrorKind, msg: impl Display) -> io::Error {
        let log = self.spec.log_path();
        let out = self.spec.file("out");
        io::Error::new(
            kind,
            format!(
                "{} ({}): {msg}\n--- tail of {}:\n{}\n--- tail of {}:\n{}",
                self.spec.program,
                self.child
                    .as_ref()
                    .map_or_else(|| "not running".to_string(), |c| format!("pid {}", c.id())),
                log.display(),
                file_tail(&log, LOG_TAIL_LINES),
                out.display(),
                file_tail(&out, LOG_TAIL_LINES),
            ),
        )
    }

    /// Polls `cond` until it yields a value, the daemon exits, or `timeout`
    /// passes; errors carry the daemon's log tail.
    pub fn wait_ready<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut cond: impl FnMut(&Self) -> Option<T>,
    ) -> io::Result<T> {
        let result = wait_until(timeout, what, || {
            if let Some(value) = cond(self) {
                return Some(Ok(value));
            }
            (!self.is_running()).then_some(Err(()))
        });
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(())) => {
                let status = self.reap();
                Err(self.error(format!("exited ({status}) while waiting for {what}")))
            }
            Err(msg) => Err(self.error(msg)),
        }
    }

    /// Reaps an exited child and describes its exit status.
    fn reap(&mut self) -> String {
        let status: Option<ExitStatus> = self.child.as_mut().and_then(|c| c.wait().ok());
        status.map_or_else(|| "unknown status".to_string(), |s| s.to_string())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.terminate(STOP_GRACE);
    }
}

/// Whether `pid` exists and is not a zombie.
pub(crate) fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may
        // itself contain spaces or parentheses.
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}
