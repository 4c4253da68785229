//! Service endpoint latency: a new backend pod created → its first answer
//! through the Service's ClusterIP, on a 2-node sandbox of real OVN whose
//! Service already has N endpoints; read against the same pod's own
//! anchors measured in the same round: created → Ready (CNI ADD returned,
//! the kubelet's view) and created → its first answer on its own pod IP
//! (the data path without the Service).
//!
//! Each round a pod labelled for the Service is created (nodes alternate)
//! while a client pod on node-1 connects over and over both to the
//! ClusterIP and to the new pod's IP (once the pod has one), each
//! connection a new source port and so a new load-balancing choice. What
//! the ClusterIP adds beyond the direct answer is the EndpointSlice update,
//! the controller's load balancer write, ovn-northd and ovn-controller;
//! plus, since the new pod is one backend of N+1, the connections it takes
//! to be picked (printed as "tries": at a few hundred connections a second
//! this costs a few ms per ten backends). The pod is deleted after its
//! round, so every round starts from N endpoints.
//!
//! ```sh
//! cargo build --release -p switchyard-node -p switchyard-e2e --bins --example service_endpoint
//! target/release/examples/service_endpoint [--endpoints 10 --rounds 20]
//! ```
//! Needs root. Figures, not a test: nothing fails on a clock.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};
use switchyard_e2e::bench::{arg, pct};

use anyhow::{bail, Context, Result};
use switchyard_e2e::probe::{ask, echo_server_command, python, Proto};
use switchyard_e2e::{pod_spec, Sandbox, SandboxOptions};

const NS: &str = "bench";

/// Says `ready` once started, waits for `go` on stdin (its time is
/// zero), then for the new pod's IP
/// on the next line, connecting meanwhile to VIP:8080 until the pod named
/// NAME answers, and to the pod IP until it answers; prints
/// `vip SECONDS TRIES direct SECONDS`.
const WATCHER: &str = r#"
import socket, sys, threading, time
vip, name = sys.argv[1], sys.argv[2].encode()
print("ready", flush=True)
sys.stdin.readline()
t0 = time.monotonic()
got = {}
def ask(ip):
    fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(0.5)
    try:
        s.connect((ip, 8080)); return s.recv(100)
    finally:
        s.close()
def loop(ip, key):
    n = 0
    while time.monotonic() - t0 < 120:
        n += 1
        try:
            if ask(ip) == name:
                got[key] = (time.monotonic() - t0, n); return
        except OSError:
            pass
        time.sleep(0.002)
v = threading.Thread(target=loop, args=(vip, "vip")); v.start()
pod_ip = sys.stdin.readline().strip()
loop(pod_ip, "direct")
v.join()
print("vip %.6f %d direct %.6f" % (got["vip"][0], got["vip"][1], got["direct"][0]), flush=True)
"#;

fn labelled(name: &str, node: usize) -> k8s_openapi::api::core::v1::Pod {
    let mut p = pod_spec(
        NS,
        name,
        Some(&format!("node-{node}")),
        echo_server_command(name),
    );
    p.metadata.labels = Some([("app".to_string(), "bench".to_string())].into());
    p
}

struct Round {
    ready: f64,
    direct: f64,
    vip: f64,
    tries: u32,
}

fn round(sb: &Sandbox, client_ns: &str, vip: &str, name: &str, node: usize) -> Result<Round> {
    let mut child =
        switchyard_e2e::util::in_netns(client_ns, &[python(), "-c", WATCHER, vip, name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    // Python's start-up must not count: time zero is when it has started.
    stdout.read_line(&mut line)?;
    if line.trim() != "ready" {
        bail!("{name}: the watcher said {line:?}");
    }
    let t0 = Instant::now();
    stdin.write_all(b"go\n")?;
    stdin.flush()?;
    sb.create_pod(labelled(name, node))?;
    let deadline = t0 + Duration::from_secs(120);
    let mut ip_sent = false;
    let mut ready = None;
    while ready.is_none() || !ip_sent {
        if Instant::now() > deadline {
            bail!("{name}: no IP or not Ready after 120 s");
        }
        if let Some(p) = sb.pod(NS, name) {
            if !ip_sent {
                if let Some(ip) = p.ips.first() {
                    stdin.write_all(format!("{ip}\n").as_bytes())?;
                    stdin.flush()?;
                    ip_sent = true;
                }
            }
            if p.ready && ready.is_none() {
                ready = Some(t0.elapsed().as_secs_f64());
            }
        }
        std::thread::sleep(Duration::from_millis(2)); // polling an in-memory store
    }
    line.clear();
    stdout.read_line(&mut line)?;
    let _ = child.wait();
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() != 5 {
        bail!("{name}: the watcher said {line:?}");
    }
    Ok(Round {
        ready: ready.unwrap_or_default(),
        vip: f[1].parse()?,
        tries: f[2].parse()?,
        direct: f[4].parse()?,
    })
}

fn main() -> Result<()> {
    let endpoints = arg("--endpoints", 10);
    let rounds = arg("--rounds", 20);
    let dir = tempfile::tempdir()?;
    let sb = Sandbox::up(SandboxOptions::new(2, dir.path()))?;
    let mut client = pod_spec(NS, "client", Some("node-1"), echo_server_command("client"));
    client.metadata.labels = Some([("role".to_string(), "client".to_string())].into());
    sb.create_pod(client)?;
    for k in 0..endpoints {
        sb.create_pod(labelled(&format!("ep-{k}"), 1 + k % 2))?;
    }
    sb.apply_yaml(
        "apiVersion: v1\nkind: Service\nmetadata: {name: bench, namespace: bench}\n\
         spec:\n  selector: {app: bench}\n  ports: [{port: 8080, targetPort: 8080}]\n",
    )?;
    sb.wait_pods_ready(Duration::from_secs(300))?;
    let svc = sb
        .get_objects(switchyard_controller::k8s::Kind::Service, Some(NS))
        .into_iter()
        .next()
        .context("the Service")?;
    let vip = svc["spec"]["clusterIP"]
        .as_str()
        .context("a ClusterIP")?
        .to_string();
    let client_ns = sb.pod_netns(NS, "client")?;
    // Every existing endpoint answers through the VIP before timing.
    let vip_ip: std::net::IpAddr = vip.parse()?;
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.len() < endpoints {
        if Instant::now() > deadline {
            bail!("only {seen:?} answered through {vip}");
        }
        if let Ok(a) = ask(&client_ns, Proto::Tcp, vip_ip, 8080) {
            seen.insert(a);
        }
    }
    let mut all = Vec::new();
    for r in 0..rounds {
        let name = format!("new-{r}");
        let res = round(&sb, &client_ns, &vip, &name, 1 + r % 2)?;
        println!(
            "round {r:>3}: ready {:>6.1} ms  direct {:>6.1} ms  via ClusterIP {:>6.1} ms ({} tries)",
            res.ready * 1e3,
            res.direct * 1e3,
            res.vip * 1e3,
            res.tries
        );
        all.push(res);
        sb.delete("pod", NS, &name)?;
    }
    let col = |f: fn(&Round) -> f64| all.iter().map(f).collect::<Vec<f64>>();
    let (ready, direct, vip_t) = (col(|r| r.ready), col(|r| r.direct), col(|r| r.vip));
    let extra: Vec<f64> = all.iter().map(|r| r.vip - r.direct).collect();
    println!();
    println!(
        "Service with {endpoints} endpoints, {rounds} new endpoint pods, 2 nodes (ms, p50 / p99):"
    );
    for (what, v) in [
        ("created -> Ready (anchor: the pod's own start)", &ready),
        ("created -> answers on its pod IP (anchor)", &direct),
        ("created -> answers through the ClusterIP", &vip_t),
        ("ClusterIP minus direct, per pod", &extra),
    ] {
        println!(
            "  {what:<48} {:>7.1} / {:>7.1}",
            pct(v, 0.5) * 1e3,
            pct(v, 0.99) * 1e3
        );
    }
    let tries: Vec<f64> = all.iter().map(|r| f64::from(r.tries)).collect();
    println!(
        "  connections to the ClusterIP until the new pod answered: p50 {:.0}, max {:.0}",
        pct(&tries, 0.5),
        pct(&tries, 1.0)
    );
    sb.down()?;
    Ok(())
}
