//! Policy change → enforced, in the sandbox: from the API change to the
//! first connection attempt that sees the new verdict, with real TCP
//! connections from a client pod on one node to a server pod on another,
//! read against the same flip made by writing an ACL straight into NB (no
//! controller), measured in the same run. Also the OpenFlow flows a
//! policy costs on the server's node and on a node without its pods.
//!
//! What flips, each `--rounds` times (close, then open):
//! - **anchor**: an ACL dropping the client's connections, added to and
//!   removed from the server's node switch with `ovn-nbctl` (the
//!   controller is not involved: what OVN itself takes);
//! - **NetworkPolicy**: a deny-all-ingress policy on the server's
//!   namespace, created and deleted;
//! - **label**: a policy allowing only clients labelled `role=client`;
//!   the label removed and put back (`kubectl label`);
//! - **ANP**: an AdminNetworkPolicy denying the client's namespace,
//!   created and deleted.
//!
//! The client runs one process that opens a new TCP connection every
//! 10 ms (50 ms timeout) and prints each attempt's start on the machine's
//! monotonic clock and its result; a flip is enforced at the start of the
//! first attempt after the change from which every later attempt has the
//! new verdict. The resolution is therefore about 10 ms (plus 50 ms on a
//! close, where an attempt in flight when the ACL lands times out).
//!
//! ```sh
//! cargo build --release -p switchyard-node -p switchyard-e2e --bins --example policy_enforce
//! target/release/examples/policy_enforce [--rounds 20] [--flow-policies 50]
//! ```
//! Needs root. Figures, not a test: nothing fails on a clock.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use switchyard_e2e::bench::{arg, pct};
use switchyard_e2e::probe::{echo_server_command, python, TCP_PORT};
use switchyard_e2e::util::in_netns;
use switchyard_e2e::{pod_spec, Sandbox, SandboxOptions};

/// One attempt: (start, seconds on CLOCK_MONOTONIC; answered).
type Attempt = (f64, bool);

const PROBER: &str = r#"
import socket, sys, time
ip, port = sys.argv[1], int(sys.argv[2])
fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
while True:
    t = time.monotonic()
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(0.05)
    try:
        s.connect((ip, port)); ok = 1
    except OSError:
        ok = 0
    s.close()
    sys.stdout.write("%.6f %d\n" % (t, ok)); sys.stdout.flush()
    left = 0.01 - (time.monotonic() - t)
    if left > 0: time.sleep(left)
"#;

fn now() -> f64 {
    // The clock Python's time.monotonic() reads; it cannot fail on Linux.
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
        .unwrap_or(f64::NAN)
}

struct Stream {
    child: Child,
    seen: Arc<Mutex<Vec<Attempt>>>,
}

impl Stream {
    fn start(netns: &str, ip: &str) -> Result<Stream> {
        let port = TCP_PORT.to_string();
        let mut child = in_netns(netns, &[python(), "-c", PROBER, ip, &port])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the prober")?;
        let out = child.stdout.take().context("prober stdout")?;
        let seen: Arc<Mutex<Vec<Attempt>>> = Arc::default();
        let sink = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                let mut it = line.split_whitespace();
                let (Some(t), Some(ok)) = (it.next(), it.next()) else {
                    continue;
                };
                if let Ok(t) = t.parse::<f64>() {
                    let mut v = sink.lock().unwrap_or_else(|p| p.into_inner());
                    v.push((t, ok == "1"));
                }
            }
        });
        Ok(Stream { child, seen })
    }

    /// Waits until the verdict `want` has held for 300 ms of attempts
    /// after `since`; the start of the first attempt of that run.
    fn flipped(&self, since: f64, want: bool, timeout: Duration) -> Result<f64> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            {
                let v = self.seen.lock().unwrap_or_else(|p| p.into_inner());
                let after: Vec<&Attempt> = v.iter().filter(|(t, _)| *t >= since).collect();
                if let Some(last_wrong) = after.iter().rposition(|(_, ok)| *ok != want) {
                    let run = &after[last_wrong + 1..];
                    if let (Some(first), Some(last)) = (run.first(), run.last()) {
                        if last.0 - first.0 >= 0.3 {
                            return Ok(first.0);
                        }
                    }
                } else if let (Some(first), Some(last)) = (after.first(), after.last()) {
                    if last.0 - first.0 >= 0.3 {
                        return Ok(first.0);
                    }
                }
            }
            if std::time::Instant::now() > deadline {
                bail!("the verdict did not become {want} within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20)); // polling a log, not synchronising
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Flips {
    name: &'static str,
    close: Vec<f64>,
    open: Vec<f64>,
}

impl Flips {
    fn print(&mut self, anchor: Option<(f64, f64)>) {
        for v in [&mut self.close, &mut self.open] {
            v.sort_by(|a, b| a.total_cmp(b));
        }
        let ms = |x: f64| x * 1000.0;
        let (c50, c99, o50, o99) = (
            pct(&self.close, 0.5),
            pct(&self.close, 0.99),
            pct(&self.open, 0.5),
            pct(&self.open, 0.99),
        );
        print!(
            "{:<16} close p50 {:>7.1} ms p99 {:>7.1} ms | open p50 {:>7.1} ms p99 {:>7.1} ms",
            self.name,
            ms(c50),
            ms(c99),
            ms(o50),
            ms(o99)
        );
        match anchor {
            Some((ac, ao)) => println!("   ({:.2}x / {:.2}x the anchor's p50)", c50 / ac, o50 / ao),
            None => println!(),
        }
    }
}

fn flow_count(sb: &Sandbox, node: usize) -> Result<usize> {
    let text = sb.with_node(node, |n| {
        n.chassis()
            .ofctl(&["dump-flows"])
            .context("ovs-ofctl dump-flows br-int")
    })?;
    Ok(text.lines().filter(|l| l.contains("cookie=")).count())
}

fn main() -> Result<()> {
    let rounds = arg("--rounds", 20);
    let flow_policies = arg("--flow-policies", 50);
    let dir = tempfile::tempdir()?;
    println!("==> sandbox: 2 nodes (ipv4)");
    let sb = Sandbox::up(SandboxOptions::new(2, dir.path()))?;
    sb.apply_yaml(
        r#"
apiVersion: v1
kind: Namespace
metadata: {name: srv, labels: {role: server}}
---
apiVersion: v1
kind: Namespace
metadata: {name: cli, labels: {role: client}}
"#,
    )?;
    let nodes = sb.node_names();
    let mut server = pod_spec(
        "srv",
        "server",
        Some(&nodes[0]),
        echo_server_command("server"),
    );
    server.metadata.labels = Some([("app".to_string(), "server".to_string())].into());
    sb.create_pod(server)?;
    let mut client = pod_spec(
        "cli",
        "client",
        Some(&nodes[1]),
        vec!["sleep".into(), "infinity".into()],
    );
    client.metadata.labels = Some([("role".to_string(), "client".to_string())].into());
    sb.create_pod(client)?;
    sb.wait_pods_ready(Duration::from_secs(120))?;
    let server_ip = sb.pod_ips("srv", "server")[0].to_string();
    let netns = sb.pod_netns("cli", "client")?;
    let stream = Stream::start(&netns, &server_ip)?;
    stream.flipped(now(), true, Duration::from_secs(60))?;
    println!(
        "==> {rounds} rounds per kind; server {server_ip} on {}, client on {}",
        nodes[0], nodes[1]
    );

    let timeout = Duration::from_secs(30);
    let flip = |name: &'static str,
                close: &dyn Fn() -> Result<()>,
                open: &dyn Fn() -> Result<()>|
     -> Result<Flips> {
        let mut f = Flips {
            name,
            close: vec![],
            open: vec![],
        };
        for _ in 0..rounds {
            let t = now();
            close()?;
            f.close.push(stream.flipped(t, false, timeout)? - t);
            let t = now();
            open()?;
            f.open.push(stream.flipped(t, true, timeout)? - t);
        }
        Ok(f)
    };

    let switch = format!("node-{}", nodes[0]);
    let acl_match = format!("ip4.dst == {server_ip} && tcp.dst == {TCP_PORT}");
    let mut anchor = flip(
        "anchor (NB ACL)",
        &|| {
            sb.nbctl(&["acl-add", &switch, "to-lport", "32500", &acl_match, "drop"])
                .map(drop)
        },
        &|| {
            sb.nbctl(&["acl-del", &switch, "to-lport", "32500", &acl_match])
                .map(drop)
        },
    )?;
    let deny = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: srv}
spec: {podSelector: {}, policyTypes: [Ingress]}
"#;
    let mut np = flip("NetworkPolicy", &|| sb.apply_yaml(deny).map(drop), &|| {
        sb.delete("NetworkPolicy", "srv", "deny-all").map(drop)
    })?;
    sb.apply_yaml(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-clients, namespace: srv}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {role: client}}}]}]
"#,
    )?;
    let mut label = flip(
        "pod label",
        &|| {
            sb.label(
                switchyard_controller::k8s::Kind::Pod,
                "cli",
                "client",
                &Default::default(),
                &["role".to_string()],
            )
            .map(drop)
        },
        &|| {
            sb.label(
                switchyard_controller::k8s::Kind::Pod,
                "cli",
                "client",
                &[("role".to_string(), "client".to_string())].into(),
                &[],
            )
            .map(drop)
        },
    )?;
    sb.delete("NetworkPolicy", "srv", "from-clients")?;
    stream.flipped(now(), true, timeout)?;
    let anp = r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: deny-clients}
spec:
  priority: 10
  subject: {namespaces: {matchLabels: {role: server}}}
  ingress:
  - {name: clients, action: Deny, from: [{namespaces: {matchLabels: {role: client}}}]}
"#;
    let mut admin = flip(
        "AdminNetworkPolicy",
        &|| sb.apply_yaml(anp).map(drop),
        &|| {
            sb.delete("AdminNetworkPolicy", "", "deny-clients")
                .map(drop)
        },
    )?;
    drop(stream);

    println!();
    println!("change -> enforced (start of the first connection attempt with the new verdict):");
    anchor.print(None);
    let a = (pct(&anchor.close, 0.5), pct(&anchor.open, 0.5));
    np.print(Some(a));
    label.print(Some(a));
    admin.print(Some(a));

    // OpenFlow flows per policy: policies each selecting the server with
    // their own rule (a port of its own), on the server's node and on the
    // other node.
    let base = [flow_count(&sb, 0)?, flow_count(&sb, 1)?];
    let mut yaml = String::new();
    for i in 0..flow_policies {
        yaml.push_str(&format!(
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p{i}, namespace: srv}}\nspec:\n  podSelector: {{matchLabels: {{app: server}}}}\n  ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{role: client}}}}}}], ports: [{{port: {}}}]}}]\n",
            10000 + i
        ));
    }
    sb.apply_yaml(&yaml)?;
    // Settled when both counts stop changing for two seconds.
    let mut last = [usize::MAX; 2];
    let mut stable_since = std::time::Instant::now();
    let settle_deadline = std::time::Instant::now() + Duration::from_secs(120);
    while stable_since.elapsed() < Duration::from_secs(2)
        && std::time::Instant::now() < settle_deadline
    {
        let c = [flow_count(&sb, 0)?, flow_count(&sb, 1)?];
        if c != last {
            last = c;
            stable_since = std::time::Instant::now();
        }
        std::thread::sleep(Duration::from_millis(200)); // sampling, not synchronisation
    }
    println!();
    println!(
        "OpenFlow flows on br-int for {flow_policies} policies selecting one pod: server's node +{} ({:.1} per policy), other node +{} ({:.1} per policy)",
        last[0] as i64 - base[0] as i64,
        (last[0] as f64 - base[0] as f64) / flow_policies as f64,
        last[1] as i64 - base[1] as i64,
        (last[1] as f64 - base[1] as f64) / flow_policies as f64,
    );
    println!("anchor: Antrea programs 10k pods x 10k policies in 10.7 s (../shared/notes/performance-anchors.md)");
    sb.down()?;
    Ok(())
}
