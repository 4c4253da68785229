//! The reachability matrix of `tests/admin_policy.rs`: a server in every
//! pod (TCP 80 and 81, UDP 80, answering its `ns/name`), one long-lived
//! probing agent per source pod that opens every connection of a round at
//! once (non-blocking sockets, one deadline), and the grid printed with
//! its differences when the observed matrix is not the expected one.
//!
//! One agent per pod for the whole run, fed over stdin, because starting a
//! Python per probe (216 probes a matrix) costs seconds of CPU on a loaded
//! two-core machine; a round costs one timeout of wall time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard_e2e::probe::python;
use switchyard_e2e::util::in_netns;

/// A server answering every TCP connection and UDP datagram on the ports
/// `proto:port` given after the name with that name; both families
/// (`::`, V6ONLY off).
pub const SERVER: &str = r#"
import socket, sys, threading
name = sys.argv[1].encode()
def tcp(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port)); s.listen(256)
    while True:
        c, _ = s.accept()
        try: c.sendall(name)
        except OSError: pass
        c.close()
def udp(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    while True:
        _, a = s.recvfrom(2048)
        s.sendto(name, a)
ts = []
for spec in sys.argv[2:]:
    proto, port = spec.split(":")
    t = threading.Thread(target=tcp if proto == "tcp" else udp, args=(int(port),), daemon=True)
    t.start(); ts.append(t)
for t in ts: t.join()
"#;

/// Reads one JSON request a line (`{"timeout": s, "targets": [[key,
/// proto, ip, port]]}`), opens every connection at once and answers one
/// JSON line: key -> `ok:<answer>` or `error:<why>` (`timeout` when
/// nothing came back before the deadline).
const AGENT: &str = r#"
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

/// A transport port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum L4 {
    Tcp(u16),
    Udp(u16),
}

pub const TCP80: L4 = L4::Tcp(80);
pub const TCP81: L4 = L4::Tcp(81);
pub const UDP80: L4 = L4::Udp(80);
/// What every pod serves.
pub const POD_PORTS: [L4; 3] = [TCP80, TCP81, UDP80];

impl std::fmt::Display for L4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            L4::Tcp(p) => write!(f, "TCP/{p}"),
            L4::Udp(p) => write!(f, "UDP/{p}"),
        }
    }
}

/// The container arguments of [`SERVER`] named `name` on `ports`.
pub fn server_command(name: &str, ports: &[L4]) -> Vec<String> {
    let mut v = vec![
        python().to_string(),
        "-c".into(),
        SERVER.into(),
        name.into(),
    ];
    v.extend(ports.iter().map(|p| match p {
        L4::Tcp(n) => format!("tcp:{n}"),
        L4::Udp(n) => format!("udp:{n}"),
    }));
    v
}

/// Where a probe goes: a column of the grid.
#[derive(Clone, Debug)]
pub struct Target {
    /// The column (`x/a`, `node-1`, `external`).
    pub label: String,
    pub ip: IpAddr,
    pub l4: L4,
    /// The first word of the answer proving the right host answered.
    pub answer: String,
}

/// One probing process inside a source's network namespace.
struct Agent {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Agent {
    fn start(netns: &str) -> Agent {
        let mut child = in_netns(netns, &[python(), "-c", AGENT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting a probe agent in {netns}: {e}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Agent {
            child,
            stdin,
            stdout,
        }
    }

    fn send(&mut self, timeout: Duration, targets: &[(String, &Target)]) {
        let list: Vec<Value> = targets
            .iter()
            .map(|(k, t)| {
                let (proto, port) = match t.l4 {
                    L4::Tcp(p) => ("tcp", p),
                    L4::Udp(p) => ("udp", p),
                };
                json!([k, proto, t.ip.to_string(), port])
            })
            .collect();
        let req = json!({"timeout": timeout.as_secs_f64(), "targets": list});
        writeln!(self.stdin, "{req}")
            .and_then(|_| self.stdin.flush())
            .expect("writing to a probe agent");
    }

    fn recv(&mut self) -> BTreeMap<String, String> {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("reading a probe agent");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("probe agent said {line:?}: {e}"))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A denied probe costs this much wall time per round.
pub const DENY_TIMEOUT: Duration = Duration::from_millis(1200);
/// How long a probe expected to pass is retried (first packets can be
/// lost while a tunnel neighbour resolves).
pub const PASS_RETRY: Duration = Duration::from_secs(10);

/// The sources (pods, by `ns/name`) and their agents.
pub struct Matrix {
    sources: Vec<String>,
    agents: Vec<Agent>,
}

/// What one check saw.
pub struct Outcome {
    pub probes: usize,
    pub denied: usize,
    pub retried: usize,
    pub took: Duration,
}

impl Matrix {
    /// An agent in each `(label, netns)`.
    pub fn new(sources: &[(String, String)]) -> Matrix {
        Matrix {
            sources: sources.iter().map(|(l, _)| l.clone()).collect(),
            agents: sources.iter().map(|(_, n)| Agent::start(n)).collect(),
        }
    }

    /// One round over `probes` ((source index, target)), all agents at
    /// once: each probe's result (`Ok(answer)` or why not).
    fn round(&mut self, probes: &[(usize, &Target)], timeout: Duration) -> Vec<Result<(), String>> {
        let mut by_src: Vec<Vec<(String, &Target)>> = vec![Vec::new(); self.agents.len()];
        for (i, (s, t)) in probes.iter().enumerate() {
            by_src[*s].push((i.to_string(), t));
        }
        for (a, list) in self.agents.iter_mut().zip(&by_src) {
            if !list.is_empty() {
                a.send(timeout, list);
            }
        }
        let mut out: Vec<Result<(), String>> = vec![Err("no answer".into()); probes.len()];
        for (a, list) in self.agents.iter_mut().zip(&by_src) {
            if list.is_empty() {
                continue;
            }
            let res = a.recv();
            for (k, t) in list {
                let i: usize = k.parse().expect("our key");
                let r = res.get(k).cloned().unwrap_or_else(|| "error:lost".into());
                out[i] = match r.strip_prefix("ok:") {
                    Some(ans) if ans.split_whitespace().next() == Some(t.answer.as_str()) => Ok(()),
                    Some(ans) => Err(format!("answered {ans:?}, not {}", t.answer)),
                    None => Err(r.trim_start_matches("error:").to_string()),
                };
            }
        }
        out
    }

    /// Probes every source against every target (not itself), compares
    /// with `want(source, target)`, retrying only the failures expected
    /// to pass; `Err` holds the grids with the differences.
    pub fn check(
        &mut self,
        case: &str,
        targets: &[Target],
        want: impl Fn(&str, &Target) -> bool,
    ) -> Result<Outcome, String> {
        let began = Instant::now();
        let mut probes: Vec<(usize, &Target)> = Vec::new();
        for s in 0..self.sources.len() {
            for t in targets {
                if t.label != self.sources[s] {
                    probes.push((s, t));
                }
            }
        }
        let wanted: Vec<bool> = probes
            .iter()
            .map(|(s, t)| want(&self.sources[*s], t))
            .collect();
        let mut got = self.round(&probes, DENY_TIMEOUT);
        let mut retried = 0;
        let deadline = Instant::now() + PASS_RETRY;
        loop {
            let again: Vec<usize> = (0..probes.len())
                .filter(|&i| wanted[i] && got[i].is_err())
                .collect();
            if again.is_empty() || Instant::now() >= deadline {
                break;
            }
            retried += again.len();
            let sub: Vec<(usize, &Target)> = again.iter().map(|&i| probes[i]).collect();
            for (i, r) in again.iter().zip(self.round(&sub, Duration::from_secs(2))) {
                got[*i] = r;
            }
        }
        let bad: Vec<usize> = (0..probes.len())
            .filter(|&i| wanted[i] != got[i].is_ok())
            .collect();
        let outcome = Outcome {
            probes: probes.len(),
            denied: got.iter().filter(|r| r.is_err()).count(),
            retried,
            took: began.elapsed(),
        };
        if bad.is_empty() {
            return Ok(outcome);
        }
        let mut msg = format!(
            "{case}: {} of {} probes differ ('.' allowed, 'x' denied as expected; \
             'A' allowed but expected denied, 'D' denied but expected allowed)\n",
            bad.len(),
            probes.len()
        );
        msg.push_str(&self.grid(targets, &probes, &wanted, &got));
        for &i in bad.iter().take(12) {
            let (s, t) = probes[i];
            let _ = writeln!(
                msg,
                "  {} -> {} {} ({}): want {}, got {:?}",
                self.sources[s],
                t.label,
                t.l4,
                t.ip,
                if wanted[i] { "allowed" } else { "denied" },
                got[i]
            );
        }
        Err(msg)
    }

    /// One grid per port: rows sources, columns targets.
    fn grid(
        &self,
        targets: &[Target],
        probes: &[(usize, &Target)],
        wanted: &[bool],
        got: &[Result<(), String>],
    ) -> String {
        let mut ports: Vec<L4> = targets.iter().map(|t| t.l4).collect();
        ports.sort();
        ports.dedup();
        let mut out = String::new();
        for l4 in ports {
            let mut cols: Vec<&str> = Vec::new();
            for t in targets.iter().filter(|t| t.l4 == l4) {
                if !cols.contains(&t.label.as_str()) {
                    cols.push(&t.label);
                }
            }
            let w = cols.iter().map(|c| c.len()).max().unwrap_or(1).max(3);
            let _ = write!(out, "{:<8}", l4.to_string());
            for c in &cols {
                let _ = write!(out, " {c:>w$}");
            }
            out.push('\n');
            for (s, src) in self.sources.iter().enumerate() {
                let _ = write!(out, "{src:<8}");
                for c in &cols {
                    let cell = probes
                        .iter()
                        .position(|(ps, t)| *ps == s && t.l4 == l4 && t.label == *c)
                        .map_or('-', |i| match (wanted[i], got[i].is_ok()) {
                            (true, true) => '.',
                            (false, false) => 'x',
                            (false, true) => 'A',
                            (true, false) => 'D',
                        });
                    let _ = write!(out, " {cell:>w$}");
                }
                out.push('\n');
            }
        }
        out
    }
}
