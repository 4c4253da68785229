//! The Python programs the e2e tests run inside pods and hosts, in one
//! place so every test talks to the same server and probes the same way:
//!
//! - [`SERVER`]: answers on any number of TCP and UDP ports with its name
//!   (and on "whoami" ports with its name and the peer's address);
//! - [`CLIENT`]: one connection or datagram, prints the answer;
//! - [`AGENT`]: many targets at once (non-blocking sockets, one deadline),
//!   one request a line on stdin, one JSON answer a line on stdout;
//! - [`STREAM`]: a datagram every 20 ms from one socket, prints answers;
//! - [`LOOPER`]: the same targets round after round, prints answers;
//! - [`EAGER`]: a pod that serves, logs and connects from its first
//!   instant.
//!
//! The Rust that drives them ([`crate::probe`], [`crate::netpol_matrix`],
//! the admin policy matrix) lives with its tests; what every driver needs
//! ([`python`], [`server_command`], [`Agent`]) lives here.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::util::in_netns;

/// The Python the probes use: the system's, not a shim.
pub fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Python listening sockets on `::` with V6ONLY off (both families), for
/// the servers below; a macro so `concat!` can prepend it.
macro_rules! listeners {
    () => {
        r#"
import socket, sys, threading
def tcp_listener(port, backlog):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port)); s.listen(backlog)
    return s
def udp_socket(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    return s
"#
    };
}

/// A server: `argv[1]` is the name it answers with, the rest
/// `tcp/PORT`, `udp/PORT` or `whoami/PORT` to listen on (both families).
/// A TCP connection gets the name and is closed; a datagram gets the name
/// back; a `whoami` (TCP) connection gets `NAME PEER`, the address the
/// connection came from (what NAT made of the source).
pub const SERVER: &str = concat!(
    listeners!(),
    r#"
name = sys.argv[1].encode()
def peer(a):
    return (a[7:] if a.startswith("::ffff:") else a).encode()
def tcp(s, whoami):
    while True:
        c, a = s.accept()
        try: c.sendall(name + b" " + peer(a[0]) if whoami else name)
        except OSError: pass
        c.close()
def udp(s):
    while True:
        d, a = s.recvfrom(2048)
        try: s.sendto(name, a)
        except OSError: pass
# Every socket is bound before any is served: a port that cannot be had
# ends the whole server, not one thread of it.
jobs = []
for spec in sys.argv[2:]:
    proto, port = spec.split("/")
    if proto == "udp": jobs.append((udp, (udp_socket(int(port)),)))
    else: jobs.append((tcp, (tcp_listener(int(port), 256), proto == "whoami")))
ts = [threading.Thread(target=f, args=a, daemon=True) for f, a in jobs]
for t in ts: t.start()
for t in ts: t.join()
"#
);

/// A port [`SERVER`] listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listen {
    /// TCP, answering the name.
    Tcp(u16),
    /// UDP, answering the name.
    Udp(u16),
    /// TCP, answering `NAME PEER`.
    Whoami(u16),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(p) => write!(f, "tcp/{p}"),
            Listen::Udp(p) => write!(f, "udp/{p}"),
            Listen::Whoami(p) => write!(f, "whoami/{p}"),
        }
    }
}

/// A container command running [`SERVER`] answering `name` on `ports`.
pub fn server_command(name: &str, ports: &[Listen]) -> Vec<String> {
    let mut v = vec![
        python().to_string(),
        "-c".into(),
        SERVER.into(),
        name.into(),
    ];
    v.extend(ports.iter().map(Listen::to_string));
    v
}

/// One TCP connection (`argv[1]` `tcp`) or UDP datagram (`udp`) to
/// `argv[2]` port `argv[3]`, 1 s for each step; prints the answer.
pub const CLIENT: &str = r#"
import socket, sys
proto, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
if proto == "tcp":
    s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(1.0)
    s.connect((ip, port)); data = s.recv(2048)
else:
    s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(1.0)
    s.sendto(b"ping", (ip, port)); data, _ = s.recvfrom(2048)
sys.stdout.write(data.decode())
"#;

/// Reads one JSON request a line (`{"timeout": s, "targets": [[key,
/// proto, ip, port]]}`), opens every connection at once and answers one
/// JSON line: key -> `ok:<answer>` or `error:<why>` (`timeout` when
/// nothing came back before the deadline). Exits at the end of stdin.
pub const AGENT: &str = r#"
import errno, json, selectors, socket, sys, time
def run(req):
    sel = selectors.DefaultSelector()
    res = {}
    deadline = time.monotonic() + req["timeout"]
    for key, proto, ip, port in req["targets"]:
        fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
        try:
            if proto == "tcp":
                s = socket.socket(fam, socket.SOCK_STREAM); s.setblocking(False)
                e = s.connect_ex((ip, port))
                if e not in (0, errno.EINPROGRESS):
                    res[key] = "error:" + errno.errorcode.get(e, str(e)); s.close(); continue
                sel.register(s, selectors.EVENT_WRITE, (key, "connect"))
            else:
                s = socket.socket(fam, socket.SOCK_DGRAM); s.setblocking(False)
                s.sendto(b"probe", (ip, port))
                sel.register(s, selectors.EVENT_READ, (key, "recv"))
        except OSError as e:
            res[key] = "error:" + str(e)
    while sel.get_map():
        left = deadline - time.monotonic()
        if left <= 0: break
        for k, _ in sel.select(left):
            s = k.fileobj; key, state = k.data
            if state == "connect":
                e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if e:
                    res[key] = "error:" + errno.errorcode.get(e, str(e))
                    sel.unregister(s); s.close()
                else:
                    sel.modify(s, selectors.EVENT_READ, (key, "recv"))
            else:
                try: res[key] = "ok:" + s.recv(2048).decode(errors="replace")
                except OSError as e: res[key] = "error:" + str(e)
                sel.unregister(s); s.close()
    for k in list(sel.get_map().values()):
        res[k.data[0]] = "error:timeout"
        sel.unregister(k.fileobj); k.fileobj.close()
    return res
for line in sys.stdin:
    sys.stdout.write(json.dumps(run(json.loads(line))) + "\n"); sys.stdout.flush()
"#;

/// One target of an [`Agent`] round: a key for its result, `tcp`/`udp`,
/// the address and port.
pub type AgentTarget = (String, &'static str, IpAddr, u16);

/// One [`AGENT`] process inside a network namespace, fed over stdin: one
/// process for many rounds, since starting a Python per probe costs
/// seconds of CPU on a loaded two-core machine.
pub struct Agent {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Agent {
    /// Starts an agent in `netns`; its stderr goes to ours.
    pub fn start(netns: &str) -> Result<Agent> {
        let mut child = in_netns(netns, &[python(), "-c", AGENT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting a probe agent in {netns}"))?;
        let stdin = child.stdin.take().context("agent stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("agent stdout")?);
        Ok(Agent {
            child,
            stdin,
            stdout,
        })
    }

    /// Sends one round: every target at once, all within `timeout`.
    pub fn send(&mut self, timeout: Duration, targets: &[AgentTarget]) -> Result<()> {
        let list: Vec<serde_json::Value> = targets
            .iter()
            .map(|(k, proto, ip, port)| serde_json::json!([k, proto, ip.to_string(), port]))
            .collect();
        let req = serde_json::json!({"timeout": timeout.as_secs_f64(), "targets": list});
        writeln!(self.stdin, "{req}")?;
        self.stdin.flush()?;
        Ok(())
    }

    /// The answer to the round sent last: key -> `ok:<answer>` or
    /// `error:<why>`.
    pub fn recv(&mut self) -> Result<BTreeMap<String, String>> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        serde_json::from_str(&line).with_context(|| format!("probe agent said {line:?}"))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A datagram to `argv[1]` port `argv[2]` every 20 ms from one socket (so
/// one source port); prints every answer on its own line as it comes.
pub const STREAM: &str = r#"
import select, socket, sys, time
ip, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
while True:
    try: s.sendto(b"stream", (ip, port))
    except OSError: pass
    end = time.monotonic() + 0.02
    while True:
        left = end - time.monotonic()
        if left <= 0 or not select.select([s], [], [], left)[0]: break
        try: d, _ = s.recvfrom(2048)
        except OSError: break
        sys.stdout.write(d.decode(errors="replace").replace("\n", " ") + "\n"); sys.stdout.flush()
"#;

/// Loops forever over targets `argv[4:]` on `argv[1]` (tcp/udp) port
/// `argv[2]`, each round waiting at most `argv[3]` seconds for answers;
/// prints `r` after every round and `ok IP NAME` for every answer, so a
/// single answer in thousands of attempts is seen.
pub const LOOPER: &str = r#"
import select, socket, sys, time
proto, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
ips = sys.argv[4:]
def fam(ip): return socket.AF_INET6 if ":" in ip else socket.AF_INET
while True:
    socks = {}
    for ip in ips:
        try:
            if proto == "udp":
                s = socket.socket(fam(ip), socket.SOCK_DGRAM); s.setblocking(False)
                s.sendto(b"loop", (ip, port))
            else:
                s = socket.socket(fam(ip), socket.SOCK_STREAM); s.setblocking(False)
                s.connect_ex((ip, port))
            socks[s] = ip
        except OSError:
            pass
    end = time.monotonic() + timeout
    pending = dict(socks)
    while pending:
        left = end - time.monotonic()
        if left <= 0: break
        if proto == "udp":
            r, _, _ = select.select(list(pending), [], [], left)
        else:
            _, r, _ = select.select([], list(pending), [], left)
        for s in r:
            ip = pending.pop(s)
            try:
                if proto == "udp":
                    d, _ = s.recvfrom(2048)
                else:
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0: continue
                    s.setblocking(True); s.settimeout(max(0.05, end - time.monotonic()))
                    d = s.recv(2048)
                sys.stdout.write("ok " + ip + " " + d.decode(errors="replace") + "\n")
            except OSError:
                pass
    for s in socks: s.close()
    sys.stdout.write("r\n"); sys.stdout.flush()
    if not socks: time.sleep(timeout)
"#;

/// A pod that misbehaves from its first instant: `argv[1]` a log file,
/// `argv[2]` its name, `argv[3]`/`argv[4]` a TCP destination it connects to
/// in a tight loop. It serves UDP and TCP on port 80 and logs every
/// inbound datagram or connection (`in udp|tcp SOURCE`), every outbound
/// attempt (`out fail`) and success (`out ok`).
pub const EAGER: &str = concat!(
    listeners!(),
    r#"
log = open(sys.argv[1], "a", buffering=1)
name, ip, port = sys.argv[2].encode(), sys.argv[3], int(sys.argv[4])
lock = threading.Lock()
def w(s):
    with lock: log.write(s + "\n")
def udp():
    s = udp_socket(80)
    while True:
        d, a = s.recvfrom(2048)
        w("in udp " + a[0]); s.sendto(name, a)
def tcp():
    s = tcp_listener(80, 64)
    while True:
        c, a = s.accept()
        w("in tcp " + a[0])
        try: c.sendall(name)
        except OSError: pass
        c.close()
threading.Thread(target=udp, daemon=True).start()
threading.Thread(target=tcp, daemon=True).start()
fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
while True:
    s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(0.2)
    try:
        s.connect((ip, port)); s.recv(64); w("out ok")
    except OSError:
        w("out fail")
        import time; time.sleep(0.02)
    s.close()
"#
);
