//! Reachability probes with real packets: ICMP (ping), TCP and UDP (a tiny
//! Python echo server/client that names the answering pod, so a reply
//! proves it reached the right one).
//!
//! First packets can drop while the userspace datapath resolves a tunnel
//! neighbour, so [`probe`] retries until a deadline.

use std::net::IpAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

pub use crate::pyprobe::python;
use crate::pyprobe::{server_command, Listen, CLIENT, STREAM};
use crate::util::in_netns;

/// TCP port of the echo server.
pub const TCP_PORT: u16 = 8080;
/// UDP port of the echo server.
pub const UDP_PORT: u16 = 8081;
/// TCP port on which the echo server answers `NAME PEER`: its name and the
/// address the connection came from (what NAT made of the source).
pub const WHOAMI_PORT: u16 = 8090;

/// A container command running [`crate::pyprobe::SERVER`] answering
/// `name` on [`TCP_PORT`], [`UDP_PORT`] and [`WHOAMI_PORT`]: the echo
/// server every connectivity test talks to.
pub fn echo_server_command(name: &str) -> Vec<String> {
    server_command(
        name,
        &[
            Listen::Whoami(WHOAMI_PORT),
            Listen::Udp(UDP_PORT),
            Listen::Tcp(TCP_PORT),
        ],
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Icmp,
    Tcp,
    Udp,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Icmp => "icmp",
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// One attempt from inside `netns`; with `expect`, the TCP/UDP reply must
/// be that name.
pub fn probe_once(netns: &str, proto: Proto, ip: IpAddr, expect: Option<&str>) -> Result<()> {
    let port = match proto {
        Proto::Icmp => {
            let out = in_netns(netns, &["ping", "-c1", "-W1", &ip.to_string()])
                .stdin(Stdio::null())
                .output()?;
            if !out.status.success() {
                bail!("{proto} to {ip} from {netns} failed: {}", last_line(&out));
            }
            return Ok(());
        }
        Proto::Tcp => TCP_PORT,
        Proto::Udp => UDP_PORT,
    };
    let got = ask(netns, proto, ip, port)?;
    match expect {
        Some(want) if got != want => {
            bail!("{proto} to {ip} from {netns}: answered by {got:?}, expected {want:?}")
        }
        _ => Ok(()),
    }
}

/// The last line a failed command wrote to stderr: its error.
fn last_line(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

/// One TCP connection or UDP datagram from inside `netns` to `ip:port`
/// (any port, e.g. a Service's or a NodePort, where [`probe_once`] uses
/// the echo server's own); the answer, trimmed: the answering pod's name
/// for the echo server's ports, `NAME PEER` on [`WHOAMI_PORT`]'s.
pub fn ask(netns: &str, proto: Proto, ip: IpAddr, port: u16) -> Result<String> {
    let p = match proto {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
        Proto::Icmp => bail!("ask: ICMP has no port"),
    };
    let (ip_s, port_s) = (ip.to_string(), port.to_string());
    let out = in_netns(netns, &[python(), "-c", CLIENT, p, &ip_s, &port_s])
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!(
            "{proto} to {ip} port {port} from {netns} failed: {}",
            last_line(&out)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs `once` until it succeeds or `timeout` passes (100 ms between
/// attempts); the last error when it never did.
fn retry<T>(timeout: Duration, mut once: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match once() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("still failing after {timeout:?}")))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Retries [`probe_once`] until it succeeds or `timeout` passes.
pub fn probe(
    netns: &str,
    proto: Proto,
    ip: IpAddr,
    expect: Option<&str>,
    timeout: Duration,
) -> Result<()> {
    retry(timeout, || probe_once(netns, proto, ip, expect))
}

/// Who answered on [`WHOAMI_PORT`] at `ip` from inside `netns`, and the
/// source address it saw; retried until `timeout`.
pub fn whoami(netns: &str, ip: IpAddr, timeout: Duration) -> Result<(String, IpAddr)> {
    retry(timeout, || {
        let text = ask(netns, Proto::Tcp, ip, WHOAMI_PORT)
            .map_err(|e| e.context(format!("whoami {ip} from {netns}")))?;
        let (name, peer) = text
            .split_once(' ')
            .ok_or_else(|| anyhow::anyhow!("whoami {ip}: odd answer {text:?}"))?;
        Ok((name.to_string(), peer.parse()?))
    })
}

/// An HTTP GET from inside `netns` (curl); the status code, or why not.
pub fn http_get(netns: &str, ip: IpAddr, port: u16) -> Result<u16> {
    let url = match ip {
        IpAddr::V4(v4) => format!("http://{v4}:{port}/"),
        IpAddr::V6(v6) => format!("http://[{v6}]:{port}/"),
    };
    let out = in_netns(
        netns,
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "2",
            &url,
        ],
    )
    .stdin(Stdio::null())
    .output()?;
    let code = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<u16>()
        .unwrap_or(0);
    if !out.status.success() || code == 0 {
        bail!("GET {url} failed ({})", out.status);
    }
    Ok(code)
}

/// Probes one target over and over in the background (one attempt, then
/// the next at most every 100 ms), to measure how long allowed traffic
/// stops while something fails.
pub struct Prober {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    last_ok: std::sync::Arc<std::sync::Mutex<Option<Instant>>>,
    last_fail: std::sync::Arc<std::sync::Mutex<Option<Instant>>>,
    handle: Option<std::thread::JoinHandle<ProbeReport>>,
}

/// What a [`Prober`] saw.
#[derive(Clone, Debug, Default)]
pub struct ProbeReport {
    pub attempts: usize,
    pub failures: usize,
    /// The longest stretch from the last success before a failure to the
    /// next success (or to the end, if none came).
    pub longest_outage: Duration,
}

impl std::fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} probes, {} failed, longest interruption {:.2} s",
            self.attempts,
            self.failures,
            self.longest_outage.as_secs_f64()
        )
    }
}

impl Prober {
    /// Probes every 100 ms (or as soon as the previous attempt ended).
    pub fn start(netns: &str, proto: Proto, ip: IpAddr, expect: Option<&str>) -> Prober {
        Prober::start_every(netns, proto, ip, expect, Duration::from_millis(100))
    }

    /// Probes every `period` (or as soon as the previous attempt ended):
    /// each attempt is a new process, so slower probers load a shared
    /// machine less.
    pub fn start_every(
        netns: &str,
        proto: Proto,
        ip: IpAddr,
        expect: Option<&str>,
        period: Duration,
    ) -> Prober {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let last_ok = std::sync::Arc::new(std::sync::Mutex::new(None));
        let last_fail = std::sync::Arc::new(std::sync::Mutex::new(None));
        let (netns, expect) = (netns.to_string(), expect.map(str::to_string));
        let (flag, shared, shared_fail) = (stop.clone(), last_ok.clone(), last_fail.clone());
        let handle = std::thread::spawn(move || {
            let mut report = ProbeReport::default();
            let mut last_ok = Instant::now();
            let mut failing = false;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let began = Instant::now();
                report.attempts += 1;
                if probe_once(&netns, proto, ip, expect.as_deref()).is_ok() {
                    if failing {
                        report.longest_outage = report.longest_outage.max(last_ok.elapsed());
                        failing = false;
                    }
                    last_ok = Instant::now();
                    *shared.lock().unwrap_or_else(|p| p.into_inner()) = Some(began);
                } else {
                    report.failures += 1;
                    failing = true;
                    *shared_fail.lock().unwrap_or_else(|p| p.into_inner()) = Some(began);
                }
                let rest = period.saturating_sub(began.elapsed());
                std::thread::sleep(rest); // pacing, not synchronisation
            }
            if failing {
                report.longest_outage = report.longest_outage.max(last_ok.elapsed());
            }
            report
        });
        Prober {
            stop,
            last_ok,
            last_fail,
            handle: Some(handle),
        }
    }

    /// Waits until a probe that began after `t` succeeded.
    pub fn wait_ok_after(&self, t: Instant, timeout: Duration) -> Result<()> {
        crate::util::wait_for(timeout, "a probe to succeed again", || {
            let last = *self.last_ok.lock().unwrap_or_else(|p| p.into_inner());
            last.filter(|l| *l > t).map(drop)
        })
    }

    /// Waits until a probe that began after `t` failed.
    pub fn wait_failure_after(&self, t: Instant, timeout: Duration) -> Result<()> {
        crate::util::wait_for(timeout, "a probe to fail", || {
            let last = *self.last_fail.lock().unwrap_or_else(|p| p.into_inner());
            last.filter(|l| *l > t).map(drop)
        })
    }

    /// Stops probing; what was seen.
    pub fn finish(mut self) -> ProbeReport {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A datagram every 20 ms from inside a pod to the echo server's UDP port,
/// one process and one socket (so one source port) for the whole run: the
/// gaps between answers measure an interruption to ~20 ms, where
/// [`Prober`]'s separate attempts cannot, and a Service's conntrack entry
/// for the flow lives as long as the stream.
pub struct UdpStream {
    child: std::process::Child,
    /// When each answer was read, and who sent it (the echo server's
    /// name).
    replies: std::sync::Arc<std::sync::Mutex<Vec<(Instant, String)>>>,
    started: Instant,
}

impl UdpStream {
    pub fn start(netns: &str, ip: IpAddr) -> Result<UdpStream> {
        use std::io::BufRead;
        let mut child = in_netns(
            netns,
            &[
                python(),
                "-c",
                STREAM,
                &ip.to_string(),
                &UDP_PORT.to_string(),
            ],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
        let out = child.stdout.take().expect("piped stdout");
        let replies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = replies.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((Instant::now(), line.trim().to_string()));
            }
        });
        Ok(UdpStream {
            child,
            replies,
            started: Instant::now(),
        })
    }

    /// Waits until an answer arrives after `t`.
    pub fn wait_ok_after(&self, t: Instant, timeout: Duration) -> Result<()> {
        crate::util::wait_for(timeout, "the UDP stream to be answered again", || {
            let r = self.replies.lock().unwrap_or_else(|p| p.into_inner());
            r.last().filter(|l| l.0 > t).map(drop)
        })
    }

    /// Waits until `name` answers (an answer read after `t`).
    pub fn wait_answer_from(&self, name: &str, t: Instant, timeout: Duration) -> Result<()> {
        crate::util::wait_for(timeout, &format!("{name} to answer the UDP stream"), || {
            let r = self.replies.lock().unwrap_or_else(|p| p.into_inner());
            r.iter()
                .any(|(at, who)| *at > t && who == name)
                .then_some(())
        })
    }

    /// Stops the stream: answers received and the longest gap between two
    /// (from the start to the first answer counts too).
    pub fn finish(mut self) -> (usize, Duration) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let r = self.replies.lock().unwrap_or_else(|p| p.into_inner());
        let mut longest = Duration::ZERO;
        let mut prev = self.started;
        for (t, _) in r.iter() {
            longest = longest.max(t.saturating_duration_since(prev));
            prev = *t;
        }
        (r.len(), longest)
    }
}

impl Drop for UdpStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
