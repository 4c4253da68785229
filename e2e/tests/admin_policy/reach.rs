//! The reachability matrix of `tests/admin_policy.rs`: a server in every
//! pod (TCP 80 and 81, UDP 80, answering its `ns/name`), one long-lived
//! probing agent per source pod that opens every connection of a round at
//! once (non-blocking sockets, one deadline), and the grid printed with
//! its differences when the observed matrix is not the expected one.
//!
//! One agent per pod for the whole run, fed over stdin, because starting a
//! Python per probe (216 probes a matrix) costs seconds of CPU on a loaded
//! two-core machine; a round costs one timeout of wall time.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use switchyard_e2e::pyprobe::{self, Agent, AgentTarget, Listen};

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

/// The container arguments of [`switchyard_e2e::pyprobe::SERVER`] named
/// `name` on `ports`.
pub fn server_command(name: &str, ports: &[L4]) -> Vec<String> {
    let listen: Vec<Listen> = ports
        .iter()
        .map(|p| match *p {
            L4::Tcp(n) => Listen::Tcp(n),
            L4::Udp(n) => Listen::Udp(n),
        })
        .collect();
    pyprobe::server_command(name, &listen)
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

/// The [`Agent`] of a source, started in its network namespace.
fn start_agent(netns: &str) -> Agent {
    Agent::start(netns).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Sends one round of `targets` (keyed) to `agent`.
fn send(agent: &mut Agent, timeout: Duration, targets: &[(String, &Target)]) {
    let list: Vec<AgentTarget> = targets
        .iter()
        .map(|(k, t)| {
            let (proto, port) = match t.l4 {
                L4::Tcp(p) => ("tcp", p),
                L4::Udp(p) => ("udp", p),
            };
            (k.clone(), proto, t.ip, port)
        })
        .collect();
    agent
        .send(timeout, &list)
        .unwrap_or_else(|e| panic!("writing to a probe agent: {e:#}"));
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
            agents: sources.iter().map(|(_, n)| start_agent(n)).collect(),
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
                send(a, timeout, list);
            }
        }
        let mut out: Vec<Result<(), String>> = vec![Err("no answer".into()); probes.len()];
        for (a, list) in self.agents.iter_mut().zip(&by_src) {
            if list.is_empty() {
                continue;
            }
            let res = a
                .recv()
                .unwrap_or_else(|e| panic!("reading a probe agent: {e:#}"));
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
