//! Egress throughput: TCP from a pod to the external host (through the
//! pod's node's gateway router, SNAT, the localnet port and the gateway
//! bridge's conntrack flows) against TCP from the node's host to the same
//! external host (the gateway bridge's LOCAL port straight to the uplink),
//! on one 2-node sandbox of real OVN with the userspace datapath. What
//! counts is the ratio: both paths cross the same bridge and uplink.
//!
//! ```sh
//! cargo build --release -p switchyard-node -p switchyard-e2e --bins --example egress_throughput
//! target/release/examples/egress_throughput [--seconds 5 --rounds 3 --ip-family ipv4|ipv6|dual]
//! ```
//! Needs root. Figures, not a test: nothing fails on a clock. The sender
//! and the sink are this program itself (`--send`, `--sink`), run inside
//! the namespaces, so the figures measure the datapath and not a
//! scripting language.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use switchyard_e2e::{pod_spec, IpFamily, Sandbox, SandboxOptions};

const PORT: u16 = 5201;

/// `--sink`: accepts connections forever; counts each one's bytes and
/// answers the count when the sender has finished.
fn sink() -> Result<()> {
    let l = TcpListener::bind(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, PORT)))?;
    for c in l.incoming() {
        let mut c = c?;
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 << 10];
            let mut n: u64 = 0;
            while let Ok(k) = c.read(&mut buf) {
                if k == 0 {
                    break;
                }
                n += k as u64;
            }
            let _ = c.write_all(n.to_string().as_bytes());
        });
    }
    Ok(())
}

/// `--send IP SECONDS`: sends for that long; prints the bytes the sink
/// received and the seconds until it said so.
fn send(ip: IpAddr, secs: f64) -> Result<()> {
    let mut s = TcpStream::connect_timeout(&SocketAddr::new(ip, PORT), Duration::from_secs(10))?;
    let buf = vec![0x5au8; 128 << 10];
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        s.write_all(&buf)?;
    }
    s.shutdown(std::net::Shutdown::Write)?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    let got: u64 = answer.trim().parse().context("the sink's count")?;
    println!("{got} {:.6}", start.elapsed().as_secs_f64());
    Ok(())
}

/// One run of the sender inside `netns`: bits per second.
fn measure(netns: &str, ip: IpAddr, secs: f64) -> Result<f64> {
    let exe = std::env::current_exe()?;
    let out = Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(&exe)
        .args(["--send", &ip.to_string(), &secs.to_string()])
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!("sender failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = text.split_whitespace();
    let bytes: f64 = f.next().context("bytes")?.parse()?;
    let took: f64 = f.next().context("seconds")?.parse()?;
    Ok(bytes * 8.0 / took)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--sink") => return sink(),
        Some("--send") => {
            let ip = args.get(2).context("--send IP SECONDS")?.parse()?;
            let secs = args.get(3).context("--send IP SECONDS")?.parse()?;
            return send(ip, secs);
        }
        _ => {}
    }
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let secs: f64 = flag("--seconds")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(5.0);
    let rounds: usize = flag("--rounds")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(3);
    let family: IpFamily = flag("--ip-family")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(IpFamily::Ipv4);
    let dir = tempfile::tempdir()?;
    let mut opts = SandboxOptions::new(2, dir.path());
    opts.ip_family = family;
    let started = Instant::now();
    let sb = Sandbox::up(opts)?;
    println!(
        "sandbox: 2 nodes ({family:?}), up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    sb.create_pod(pod_spec("bench", "client", Some("node-1"), vec![]))?;
    sb.wait_pods_ready(Duration::from_secs(120))?;
    let exe = std::env::current_exe()?;
    let mut sinker = Command::new("ip")
        .args(["netns", "exec", &sb.external_netns()])
        .arg(&exe)
        .arg("--sink")
        .stdin(Stdio::null())
        .spawn()?;
    let pod = sb.pod_netns("bench", "client")?;
    let host = sb.node_netns(0).to_string();
    let v6 = family == IpFamily::Ipv6;
    // The "internet" address: reached only through the default routes.
    let dst = sb
        .external_ips()
        .into_iter()
        .skip(2)
        .find(|i| i.is_ipv6() == v6)
        .context("an external address")?;
    // Warm up both paths (neighbours, conntrack, the first packets).
    let warm = || -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let a = measure(&pod, dst, 0.2);
            let b = measure(&host, dst, 0.2);
            if a.is_ok() && b.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                a?;
                b?;
            }
        }
    };
    warm()?;
    let (mut pod_bps, mut host_bps) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        // Alternate which goes first, so neither always runs on a warmer
        // machine.
        let order: [(&str, &str); 2] = if r % 2 == 0 {
            [("pod", &pod), ("host", &host)]
        } else {
            [("host", &host), ("pod", &pod)]
        };
        for (what, ns) in order {
            let bps = measure(ns, dst, secs)?;
            println!("round {r}: {what:4} -> {dst}: {:8.1} Mbit/s", bps / 1e6);
            if what == "pod" {
                pod_bps.push(bps);
            } else {
                host_bps.push(bps);
            }
        }
    }
    let _ = sinker.kill();
    let _ = sinker.wait();
    let (p, h) = (median(pod_bps), median(host_bps));
    println!();
    println!("TCP to the external host ({dst}), {secs} s x {rounds}, medians:");
    println!(
        "  pod on node-1 (gateway router, SNAT, gateway bridge): {:8.1} Mbit/s",
        p / 1e6
    );
    println!(
        "  node-1's host (gateway bridge LOCAL -> uplink):       {:8.1} Mbit/s",
        h / 1e6
    );
    println!("  ratio pod / host: {:.2}", p / h);
    sb.down()?;
    Ok(())
}
