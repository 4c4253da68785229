//! Shared by the end-to-end tests.
#![allow(dead_code)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use switchyard_e2e::probe::{self, Proto};
use switchyard_e2e::{Sandbox, SandboxOptions};

/// Checks that the node binaries the sandbox will execute are there and
/// newer than every source they are built from; panics naming the command
/// that builds them. `cargo test` builds only the tested package's own
/// binaries: `./e2e/scripts/test-all` (and `cargo test --workspace`) build
/// `switchyard-node` and `switchyard-cni` too, a lone `cargo test -p
/// switchyard-e2e` does not.
pub fn check_node_binaries() {
    let bins = switchyard_e2e::util::binaries(None).unwrap_or_else(|e| panic!("{e:#}"));
    if std::env::var_os(switchyard_e2e::util::BIN_DIR_ENV).is_some() {
        return; // chosen by the caller
    }
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let built = [&bins.node, &bins.cni]
        .iter()
        .filter_map(|p| mtime(p))
        .min()
        .expect("binaries have a modification time");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    // (Not Cargo.lock: a lock change need not rebuild these binaries.)
    let mut stack: Vec<PathBuf> = [
        "node-agent/Cargo.toml",
        "node-agent/src",
        "api/Cargo.toml",
        "api/src",
        "ovsdb/Cargo.toml",
        "ovsdb/build.rs",
        "ovsdb/build",
        "ovsdb/src",
        "ovsdb/schemas",
    ]
    .iter()
    .map(|p| root.join(p))
    .collect();
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if let Some(t) = mtime(&p) {
            if newest.as_ref().is_none_or(|(n, _)| t > *n) {
                newest = Some((t, p));
            }
        }
    }
    if let Some((t, path)) = newest {
        let dir = bins.node.parent().expect("binary directory");
        assert!(
            t <= built,
            "{} is older than {}: rebuild the node binaries with `{}` (cargo test -p switchyard-e2e does not build another package's binaries)",
            bins.node.display(),
            path.display(),
            switchyard_e2e::util::build_command(dir)
        );
    }
}

/// [`Sandbox::up`] after [`check_node_binaries`].
pub fn up(opts: SandboxOptions) -> anyhow::Result<Sandbox> {
    check_node_binaries();
    Sandbox::up(opts)
}

/// Sandboxes in one test binary run one at a time: each starts a dozen
/// daemons, and CI machines have two cores.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Logs to stderr (shown for failing tests) once per binary.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

pub const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Polls `cond` until it is Ok or `timeout` passes; panics with the last
/// error.
pub fn wait(timeout: Duration, what: &str, mut cond: impl FnMut() -> Result<(), String>) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match cond() {
            Ok(()) => return,
            Err(e) if std::time::Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Every pod reaches every other pod's every address over ICMP, TCP and
/// UDP, the TCP/UDP reply naming the pod (pods run the echo server and
/// answer with their name). Sources are probed in parallel.
pub fn assert_full_mesh(sb: &Sandbox, pods: &[(String, String)]) {
    let targets: Vec<(String, Vec<IpAddr>)> = pods
        .iter()
        .map(|(ns, name)| (name.clone(), sb.pod_ips(ns, name)))
        .collect();
    std::thread::scope(|s| {
        for (ns, src) in pods {
            let netns = sb.pod_netns(ns, src).expect("source pod runs");
            let targets = &targets;
            s.spawn(move || {
                for (dst, ips) in targets {
                    if dst == src {
                        continue;
                    }
                    assert!(!ips.is_empty(), "{dst} has no IPs");
                    for ip in ips {
                        for proto in [Proto::Icmp, Proto::Tcp, Proto::Udp] {
                            probe::probe(&netns, proto, *ip, Some(dst), PROBE_TIMEOUT)
                                .unwrap_or_else(|e| panic!("{src} -> {dst} ({ip}) {proto}: {e:#}"));
                        }
                    }
                }
            });
        }
    });
}

/// Every node's host reaches every pod on it (ICMP and TCP).
pub fn assert_hosts_reach_their_pods(sb: &Sandbox, pods: &[(String, String)]) {
    for (ns, name) in pods {
        let node = sb.pod_node_index(ns, name).expect("pod has a node");
        for ip in sb.pod_ips(ns, name) {
            for proto in [Proto::Icmp, Proto::Tcp] {
                probe::probe(sb.node_netns(node), proto, ip, Some(name), PROBE_TIMEOUT)
                    .unwrap_or_else(|e| {
                        panic!("host of node {node} -> {name} ({ip}) {proto}: {e:#}")
                    });
            }
        }
    }
}

/// What must be true once the cluster has converged on `live` pods
/// (namespace, name): NB holds exactly their ports with distinct
/// addresses, the controller counts exactly their addresses, every node's
/// br-int holds exactly their ports and veths, and exactly their network
/// namespaces exist.
pub fn check_no_leaks(sb: &Sandbox, live: &[(String, String)]) -> Result<(), String> {
    use std::collections::{BTreeMap, BTreeSet};
    let want: BTreeSet<String> = live.iter().map(|(ns, n)| format!("{ns}_{n}")).collect();
    // NB rows owned by pods.
    let out = sb
        .nbctl(&[
            "--format=json",
            "--columns=name,addresses,external_ids",
            "list",
            "Logical_Switch_Port",
        ])
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
    let mut nb = BTreeSet::new();
    let mut addrs: BTreeMap<String, String> = BTreeMap::new();
    for row in v["data"].as_array().cloned().unwrap_or_default() {
        let name = row[0].as_str().unwrap_or_default().to_string();
        let ext = row[2].to_string();
        if !ext.contains("\"switchyard.io/owner-kind\",\"Pod\"") {
            continue;
        }
        let addr = match &row[1] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        for ip in addr.split_whitespace().skip(1) {
            if let Some(prev) = addrs.insert(ip.to_string(), name.clone()) {
                return Err(format!("address {ip} on both {prev} and {name}"));
            }
        }
        nb.insert(name);
    }
    if nb != want {
        return Err(format!(
            "NB pod ports differ: extra {:?}, missing {:?}",
            nb.difference(&want).collect::<Vec<_>>(),
            want.difference(&nb).collect::<Vec<_>>()
        ));
    }
    if let Some(m) = sb.controller_metrics() {
        let used = m.pod_addresses_used.get();
        let per_pod = sb.options().ip_family.cluster_cidrs().len() as i64;
        if used != live.len() as i64 * per_pod && used != live.len() as i64 {
            return Err(format!(
                "controller counts {used} used addresses for {} pods",
                live.len()
            ));
        }
    }
    // Per node: OVS ports, veths.
    for i in 0..sb.node_count() {
        let node = sb.node_names()[i].clone();
        let on_node: BTreeSet<String> = live
            .iter()
            .filter(|(ns, n)| sb.pod(ns, n).and_then(|p| p.node).as_deref() == Some(node.as_str()))
            .map(|(ns, n)| format!("{ns}_{n}"))
            .collect();
        let ids = sb
            .vsctl(
                i,
                &[
                    "--bare",
                    "--columns=external_ids",
                    "find",
                    "Interface",
                    "external_ids:sandbox!=\"\"",
                ],
            )
            .map_err(|e| e.to_string())?;
        let ports: BTreeSet<String> = ids
            .lines()
            .filter_map(|l| {
                l.split_whitespace()
                    .find_map(|kv| kv.strip_prefix("iface-id="))
                    .map(|s| s.trim_matches('"').to_string())
            })
            .collect();
        let count = ids.lines().filter(|l| !l.trim().is_empty()).count();
        if ports != on_node || count != on_node.len() {
            return Err(format!(
                "{node}: OVS pod ports {ports:?} ({count}) but pods {on_node:?}"
            ));
        }
        let links = sb
            .node_host_exec(i, &["ip", "-o", "link", "show", "type", "veth"])
            .map_err(|e| e.to_string())?;
        let veths = String::from_utf8_lossy(&links.stdout)
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or_default().to_string())
            .filter(|n| n != "ul0")
            .count();
        if veths != on_node.len() {
            return Err(format!(
                "{node}: {veths} pod veths for {} pods",
                on_node.len()
            ));
        }
    }
    let prefix = format!("sy{}-pod-", sb.index());
    let spaces = switchyard_e2e::sandbox::list_netns()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .count();
    if spaces != live.len() {
        return Err(format!("{spaces} pod namespaces for {} pods", live.len()));
    }
    Ok(())
}

/// Polls [`check_no_leaks`] until it passes; panics with the last finding.
pub fn assert_converges_without_leaks(sb: &Sandbox, live: &[(String, String)], timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match check_no_leaks(sb, live) {
            Ok(()) => return,
            Err(e) if std::time::Instant::now() >= deadline => {
                panic!("no convergence after {timeout:?}: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// What the machine looks like from outside the sandbox.
#[derive(Debug, PartialEq, Eq)]
pub struct MachineState {
    pub netns: std::collections::BTreeSet<String>,
    pub links: std::collections::BTreeSet<String>,
}

impl MachineState {
    pub fn now() -> Self {
        let links = std::process::Command::new("ip")
            .args(["-o", "link", "show"])
            .output()
            .expect("ip link");
        MachineState {
            netns: switchyard_e2e::sandbox::list_netns().into_iter().collect(),
            links: String::from_utf8_lossy(&links.stdout)
                .lines()
                .filter_map(|l| l.split(':').nth(1))
                .map(|n| n.trim().to_string())
                .collect(),
        }
    }
}

/// Processes that are this test process' children or mention `dir` on
/// their command line.
pub fn our_processes(dir: &std::path::Path) -> Vec<String> {
    let me = std::process::id().to_string();
    let dir = dir.display().to_string();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.chars().all(|c| c.is_ascii_digit()) || pid == me {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let mut fields = after.split_whitespace();
        let state = fields.next().unwrap_or_default();
        let ppid = fields.next().unwrap_or_default();
        let cmdline = std::fs::read(e.path().join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        if state != "Z" && (ppid == me || cmdline.contains(&dir)) {
            found.push(format!("{pid} {cmdline}"));
        }
    }
    found
}

/// Asserts that after `down` the machine is as it was: the same network
/// namespaces (apart from other programs' that come and go: only names of
/// this sandbox or this process count) and root-namespace interfaces, and
/// no process of ours.
pub fn assert_machine_restored(before: &MachineState, index: u8, dir: &std::path::Path) {
    let after = MachineState::now();
    let me = format!("-{}-", std::process::id());
    let ours = |n: &&String| n.starts_with(&format!("sy{index}-")) || n.contains(&me);
    let new: Vec<&String> = after.netns.difference(&before.netns).filter(ours).collect();
    assert!(new.is_empty(), "network namespaces left behind: {new:?}");
    assert_eq!(
        after.links, before.links,
        "root namespace interfaces changed"
    );
    let procs = our_processes(dir);
    assert!(procs.is_empty(), "processes left behind: {procs:?}");
}
