//! What benchmarks read beside their figures: the OVN/OVS daemons' own
//! counters (per node, summed), and the binding limit, which is what OVN
//! and OVS take on the same sandbox when pods' ports are written directly,
//! without Switchyard.
//!
//! Counters come from the daemons' unixctl sockets, the standard tools'
//! way (`ovs-appctl coverage/show`, `ovn-appctl inc-engine/show-stats`):
//!
//! - ovs-vswitchd: `bridge_reconfigure` (a full pass over bridges and
//!   ports, run on any change of the database it monitors or any link
//!   event in its network namespace), `txn_success` (its own Open_vSwitch
//!   transactions: ofport, status, ...), `ofproto_update_port` (a port's
//!   device changed), `nln_changed` (rtnetlink link notifications it read);
//! - ovn-controller: `txn_success` (its transactions to Open_vSwitch and
//!   the southbound DB: port claims, `ovn-installed`), engine runs (the
//!   input node `OVS_interface`'s count, bumped on every run), and the
//!   compute/recompute counts of `runtime_data`,
//!   `logical_flow_output` and `physical_flow_output`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ipnet::IpNet;
use ovsdb::{
    Client, ClientConfig, Condition, MonitorSpec, Mutation, Replica, Row, Transaction, Uuid, Value,
};
use switchyard_api::annotations::{NodeSubnets, NODE_SUBNETS};
use switchyard_api::names;

use crate::load::{pids_under, CpuSample, CpuUse};
use crate::sandbox::Sandbox;
use crate::util::{self, wait_for};

/// ovs-vswitchd coverage counters read.
pub const VSWITCHD_COUNTERS: &[&str] = &[
    "bridge_reconfigure",
    "txn_success",
    "ofproto_update_port",
    "nln_changed",
];
/// ovn-controller coverage counters read.
pub const CONTROLLER_COUNTERS: &[&str] = &["txn_success", "lflow_run", "physical_run"];
/// ovn-controller engine nodes read (compute and recompute counts).
pub const ENGINE_NODES: &[&str] = &[
    "OVS_interface",
    "runtime_data",
    "logical_flow_output",
    "physical_flow_output",
];

/// Counter name -> value, summed over nodes. Keys: `vswitchd.NAME`,
/// `ovn-controller.NAME`, `engine.NODE.compute`, `engine.NODE.recompute`.
#[derive(Clone, Debug, Default)]
pub struct Counters(pub BTreeMap<String, u64>);

/// `name ... total: N` lines of `coverage/show`.
pub fn parse_coverage(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let name = l.split_whitespace().next()?;
            let total = l.rsplit_once("total:")?.1.trim().parse().ok()?;
            Some((name.to_string(), total))
        })
        .collect()
}

/// `inc-engine/show-stats`: `Node: NAME` then `- recompute: N`,
/// `- compute: N`, `- abort: N`.
pub fn parse_engine_stats(text: &str) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    let mut node: Option<String> = None;
    let (mut recompute, mut compute) = (0, 0);
    for line in text.lines() {
        if let Some(n) = line.trim().strip_prefix("Node:") {
            if let Some(prev) = node.take() {
                out.insert(prev, (compute, recompute));
            }
            node = Some(n.trim().to_string());
            (recompute, compute) = (0, 0);
        } else if let Some((k, v)) = line.trim().trim_start_matches('-').split_once(':') {
            let v = v.trim().parse().unwrap_or(0);
            match k.trim() {
                "recompute" => recompute = v,
                "compute" => compute = v,
                _ => {}
            }
        }
    }
    if let Some(prev) = node {
        out.insert(prev, (compute, recompute));
    }
    out
}

fn appctl(program: &str, ctl: &Path, args: &[&str]) -> Result<String> {
    util::run(Command::new(program).arg("-t").arg(ctl).args(args))
}

/// ovn-controller's unixctl socket in a chassis directory
/// (`ovn-controller.PID.ctl`).
fn controller_ctl(dir: &Path) -> Result<PathBuf> {
    std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ovn-controller.") && n.ends_with(".ctl"))
        })
        .with_context(|| format!("no ovn-controller unixctl socket in {}", dir.display()))
}

impl Counters {
    /// Reads every node's daemons now.
    pub fn read(sb: &Sandbox) -> Result<Counters> {
        let mut out = BTreeMap::new();
        for i in 0..sb.node_count() {
            let dir = sb.node_dir(i);
            let cov = parse_coverage(&appctl(
                "ovs-appctl",
                &dir.join("ovs-vswitchd.ctl"),
                &["coverage/show"],
            )?);
            for c in VSWITCHD_COUNTERS {
                *out.entry(format!("vswitchd.{c}")).or_default() +=
                    cov.get(*c).copied().unwrap_or(0);
            }
            let ctl = controller_ctl(&dir)?;
            let cov = parse_coverage(&appctl("ovn-appctl", &ctl, &["coverage/show"])?);
            for c in CONTROLLER_COUNTERS {
                *out.entry(format!("ovn-controller.{c}")).or_default() +=
                    cov.get(*c).copied().unwrap_or(0);
            }
            let eng = parse_engine_stats(&appctl("ovn-appctl", &ctl, &["inc-engine/show-stats"])?);
            for n in ENGINE_NODES {
                let (c, r) = eng.get(*n).copied().unwrap_or_default();
                *out.entry(format!("engine.{n}.compute")).or_default() += c;
                *out.entry(format!("engine.{n}.recompute")).or_default() += r;
            }
        }
        Ok(Counters(out))
    }

    /// What happened between `self` (earlier) and `later`.
    pub fn until(&self, later: &Counters) -> Counters {
        Counters(
            later
                .0
                .iter()
                .map(|(k, v)| (k.clone(), v.saturating_sub(*self.0.get(k).unwrap_or(&0))))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }
}

/// The rows of a per-pod counts table: label and counter key.
pub const PER_POD_ROWS: &[(&str, &str)] = &[
    (
        "ovs-vswitchd bridge reconfigurations",
        "vswitchd.bridge_reconfigure",
    ),
    ("ovs-vswitchd DB transactions", "vswitchd.txn_success"),
    ("ovs-vswitchd port updates", "vswitchd.ofproto_update_port"),
    ("ovs-vswitchd link notifications", "vswitchd.nln_changed"),
    (
        "ovn-controller DB transactions",
        "ovn-controller.txn_success",
    ),
    (
        "ovn-controller engine runs",
        "engine.OVS_interface.recompute",
    ),
    (
        "  runtime_data computed / recomputed",
        "engine.runtime_data.compute|engine.runtime_data.recompute",
    ),
    (
        "  logical flows computed / recomputed",
        "engine.logical_flow_output.compute|engine.logical_flow_output.recompute",
    ),
    (
        "  physical flows computed / recomputed",
        "engine.physical_flow_output.compute|engine.physical_flow_output.recompute",
    ),
];

/// One row's value per pod: `a` or `a / b` for a `KEY|KEY` pair.
pub fn per_pod(c: &Counters, key: &str, pods: usize) -> String {
    let n = pods.max(1) as f64;
    match key.split_once('|') {
        Some((a, b)) => format!("{:.2} / {:.2}", c.get(a) as f64 / n, c.get(b) as f64 / n),
        None => format!("{:.2}", c.get(key) as f64 / n),
    }
}

/// The outcome of [`binding_limit`].
pub struct LimitRun {
    /// Per port: both writes sent -> `ovn-installed`, sorted.
    pub latencies: Vec<Duration>,
    pub wall: Duration,
    pub cpu: CpuUse,
    pub counters: Counters,
}

struct NodeConn {
    client: Client,
    replica: Replica,
    netns: String,
    switch: String,
    node: String,
    addrs: Vec<IpAddr>,
}

fn node_subnet(sb: &Sandbox, node: &str) -> Result<IpNet> {
    let n = sb.cluster().node(node).context("node")?;
    let text = n
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(NODE_SUBNETS))
        .with_context(|| format!("{node} has no subnets yet"))?;
    NodeSubnets::parse(text)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .0
        .first()
        .copied()
        .with_context(|| format!("{node} has no subnet"))
}

/// `count` addresses from the top of `subnet` (the controller's IPAM hands
/// out from the bottom).
fn top_addresses(subnet: IpNet, count: usize) -> Result<Vec<IpAddr>> {
    let hosts: Vec<IpAddr> = match subnet {
        IpNet::V4(n) => {
            let size = 1u64 << (32 - n.prefix_len());
            if (count as u64) + 16 > size {
                bail!("{subnet} is too small for {count} more ports");
            }
            let base = u32::from(n.network()) as u64;
            (0..count as u64)
                .map(|k| IpAddr::from(std::net::Ipv4Addr::from((base + size - 2 - k) as u32)))
                .collect()
        }
        IpNet::V6(n) => {
            let base = u128::from(n.network());
            let last = base | ((1u128 << (128 - n.prefix_len()).min(127)) - 1);
            (0..count as u128)
                .map(|k| IpAddr::from(std::net::Ipv6Addr::from(last - 1 - k)))
                .collect()
        }
    };
    Ok(hosts)
}

fn veth_name(i: usize) -> String {
    format!("sylim{i}")
}

fn limit_port(i: usize) -> String {
    format!("limit_p{i}")
}

/// Runs `ip -n NETNS -batch -` with `lines`.
fn ip_batch(netns: &str, lines: &[String]) -> Result<()> {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["-n", netns, "-force", "-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running ip -batch")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(lines.join("\n").as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "ip -n {netns} -batch: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The binding limit on `sb`: `pods` ports at `rate` per second, spread
/// over the nodes like the sandbox's scheduler spreads pods, each written
/// the way Switchyard's controller and agent write them but directly and
/// at once: the logical switch port (addresses, port security,
/// requested-chassis, iface-id-ver) in one NB transaction, and the OVS
/// port (Interface with `iface-id`, Port, `br-int` mutation) in one
/// Open_vSwitch transaction on its node, onto a veth created and brought
/// up beforehand. A port's latency runs from sending both to
/// `ovn-installed`. Everything is removed afterwards, and the call returns
/// once OVN has forgotten the ports.
pub fn binding_limit(sb: &Sandbox, pods: usize, rate: usize) -> Result<LimitRun> {
    let nodes = sb.node_names();
    let per_node = pods.div_ceil(nodes.len().max(1));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let nb = rt.block_on(Client::connect(ClientConfig::new(
        &sb.central().nb_remote(),
    )?))?;
    let mut conns = Vec::new();
    for (k, node) in nodes.iter().enumerate() {
        let client = rt.block_on(Client::connect(ClientConfig::new(&sb.node_ovs_remote(k))?))?;
        let replica = rt.block_on(client.monitor(MonitorSpec::new("Open_vSwitch").table(
            "Interface",
            Some(vec!["name".into(), "external_ids".into()]),
        )))?;
        conns.push(Arc::new(NodeConn {
            client,
            replica,
            netns: sb.node_netns(k).to_string(),
            switch: names::node_switch(node),
            node: node.clone(),
            addrs: top_addresses(node_subnet(sb, node)?, per_node)?,
        }));
    }
    // The veths exist before the clock starts: the limit is the binding.
    // No IPv6 link-local addresses on them (whose duplicate address
    // detection would report address and route changes to ovs-vswitchd a
    // second later, in the middle of the measurement).
    for (k, c) in conns.iter().enumerate() {
        let mut lines = Vec::new();
        for i in (k..pods).step_by(nodes.len()) {
            let v = veth_name(i);
            lines.push(format!("link add {v} type veth peer name {v}p"));
            lines.push(format!("link set {v} addrgenmode none"));
            lines.push(format!("link set {v}p addrgenmode none"));
            lines.push(format!("link set {v} up"));
            lines.push(format!("link set {v}p up"));
        }
        ip_batch(&c.netns, &lines)?;
    }
    // Each daemon answers a unixctl request from its main loop, after the
    // link events queued before it.
    let _ = Counters::read(sb)?;

    let mut watched = sb.pids();
    watched.extend(pids_under(sb.state_dir()));
    watched.sort();
    watched.dedup();
    let counters_before = Counters::read(sb)?;
    let cpu_before = CpuSample::take(&watched);
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let start = Instant::now();
    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..pods {
            let due = start + interval * i as u32;
            let c = conns[i % conns.len()].clone();
            let slot = i / conns.len();
            let nb = nb.clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep_until(due.into()).await;
                bind_one(&nb, &c, i, slot).await
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.context("limit task")?);
        }
        Ok::<_, anyhow::Error>(out)
    })?;
    let wall = start.elapsed();
    let cpu = cpu_before.until(&CpuSample::take(&watched));
    let counters = counters_before.until(&Counters::read(sb)?);

    let mut latencies = Vec::new();
    let mut created: Vec<(usize, Uuid, Uuid)> = Vec::new();
    let mut first_error = None;
    for r in results {
        match r {
            Ok((i, took, lsp, port)) => {
                latencies.push(took);
                created.push((i, lsp, port));
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    latencies.sort();
    rt.block_on(remove(&nb, &conns, &created))?;
    for (k, c) in conns.iter().enumerate() {
        let lines: Vec<String> = (k..pods)
            .step_by(nodes.len())
            .map(|i| format!("link del {}", veth_name(i)))
            .collect();
        ip_batch(&c.netns, &lines)?;
    }
    wait_for(
        Duration::from_secs(60),
        "OVN to release the limit's ports",
        || {
            let bindings = sb
                .central()
                .sbctl(&["--bare", "--columns=logical_port", "list", "Port_Binding"])
                .ok()?;
            let ifaces_gone = conns.iter().all(|c| {
                c.replica.with(|db| {
                    !db.table("Interface")
                        .iter()
                        .any(|(_, r)| r.str("name").is_some_and(|n| n.starts_with("sylim")))
                })
            });
            (ifaces_gone && !bindings.contains("limit_p")).then_some(())
        },
    )?;
    if let Some(e) = first_error {
        return Err(e.context("binding a limit port"));
    }
    Ok(LimitRun {
        latencies,
        wall,
        cpu,
        counters,
    })
}

/// Port `i`: both writes at once, then `ovn-installed`.
async fn bind_one(
    nb: &Client,
    c: &NodeConn,
    i: usize,
    slot: usize,
) -> Result<(usize, Duration, Uuid, Uuid)> {
    let name = limit_port(i);
    let veth = veth_name(i);
    let ip = *c.addrs.get(slot).context("no address left")?;
    let mac = switchyard_api::mac::from_ip(ip);
    let addrs = format!("{mac} {ip}");
    let uid = format!("limit-{i}");
    let t0 = Instant::now();

    let mut ntx = Transaction::new("OVN_Northbound");
    let lsp = ntx.insert(
        "Logical_Switch_Port",
        Row::new()
            .with("name", name.as_str())
            .with("addresses", Value::set([addrs.as_str()]))
            .with("port_security", Value::set([addrs.as_str()]))
            .with(
                "options",
                Value::map([
                    ("requested-chassis", c.node.as_str()),
                    ("iface-id-ver", uid.as_str()),
                ]),
            ),
    );
    ntx.mutate(
        "Logical_Switch",
        vec![Condition::eq("name", c.switch.as_str())],
        vec![Mutation::insert("ports", lsp)],
    );

    let mut otx = Transaction::new("Open_vSwitch");
    otx.insert_as(
        "Interface",
        Row::new().with("name", veth.as_str()).with(
            "external_ids",
            Value::map([("iface-id", name.as_str()), ("iface-id-ver", uid.as_str())]),
        ),
        "iface",
    );
    otx.insert_as(
        "Port",
        Row::new()
            .with("name", veth.as_str())
            .with("interfaces", Value::named_uuid("iface")),
        "port",
    );
    otx.mutate(
        "Bridge",
        vec![Condition::eq("name", "br-int")],
        vec![Mutation::insert("ports", Value::named_uuid("port"))],
    );
    let (nr, or) = tokio::try_join!(nb.transact(ntx), c.client.transact(otx))?;
    let lsp = nr.first().and_then(|r| r.uuid()).context("LSP uuid")?;
    let port = or.get(1).and_then(|r| r.uuid()).context("Port uuid")?;
    c.replica
        .wait_for(Duration::from_secs(60), |db| {
            db.table("Interface").iter().any(|(_, r)| {
                r.str("name") == Some(veth.as_str())
                    && r.map_get("external_ids", "ovn-installed") == Some("true")
            })
        })
        .await
        .with_context(|| format!("{veth}: no ovn-installed within 60 s"))?;
    Ok((i, t0.elapsed(), lsp, port))
}

async fn remove(
    nb: &Client,
    conns: &[Arc<NodeConn>],
    created: &[(usize, Uuid, Uuid)],
) -> Result<()> {
    let mut ntx = Transaction::new("OVN_Northbound");
    for (k, c) in conns.iter().enumerate() {
        let lsps: Vec<Uuid> = created
            .iter()
            .filter(|(i, _, _)| i % conns.len() == k)
            .map(|(_, l, _)| *l)
            .collect();
        if lsps.is_empty() {
            continue;
        }
        ntx.mutate(
            "Logical_Switch",
            vec![Condition::eq("name", c.switch.as_str())],
            vec![Mutation::delete("ports", Value::set(lsps.iter().copied()))],
        );
        let ports: Vec<Uuid> = created
            .iter()
            .filter(|(i, _, _)| i % conns.len() == k)
            .map(|(_, _, p)| *p)
            .collect();
        let mut otx = Transaction::new("Open_vSwitch");
        otx.mutate(
            "Bridge",
            vec![Condition::eq("name", "br-int")],
            vec![Mutation::delete("ports", Value::set(ports.iter().copied()))],
        );
        c.client.transact(otx).await?;
    }
    nb.transact(ntx).await?;
    Ok(())
}

/// A benchmark's `--NAME N` argument, `default` when absent or not a
/// number (benchmarks take a few numeric flags; no parser needed).
pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p` quantile (0 to 1) of `values`, in any order: the element at the
/// rank nearest `(n - 1) * p` once sorted; NaN when there are none.
pub fn pct(values: &[f64], p: f64) -> f64 {
    let mut s = values.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        return f64::NAN;
    }
    let i = ((s.len() as f64 - 1.0) * p).round() as usize;
    s[i.min(s.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pct_takes_the_nearest_rank_of_the_sorted_values() {
        let v = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(pct(&v, 0.0), 1.0);
        assert_eq!(pct(&v, 0.5), 3.0);
        assert_eq!(pct(&v, 0.99), 5.0);
        assert_eq!(pct(&v, 1.0), 5.0);
        assert!(pct(&[], 0.5).is_nan());
    }

    #[test]
    fn parses_coverage_and_engine_stats() {
        let cov = parse_coverage(
            "Event coverage, avg rate over last: 5 seconds, last minute, last hour,  hash=0ab3a47a:\n\
             bridge_reconfigure         0.0/sec     0.000/sec        0.0000/sec   total: 18\n\
             txn_success                0.2/sec     0.000/sec        0.0000/sec   total: 8\n\
             99 events never hit\n",
        );
        assert_eq!(cov.get("bridge_reconfigure"), Some(&18));
        assert_eq!(cov.get("txn_success"), Some(&8));
        assert_eq!(cov.len(), 2);
        let eng = parse_engine_stats(
            "Node: OVS_interface\n- recompute:           32\n- compute:              0\n- abort:                0\n\
             Node: runtime_data\n- recompute:            2\n- compute:             18\n- abort:                1\n",
        );
        assert_eq!(eng.get("OVS_interface"), Some(&(0, 32)));
        assert_eq!(eng.get("runtime_data"), Some(&(18, 2)));
    }

    #[test]
    fn limit_addresses_come_from_the_top() {
        let a = top_addresses("10.244.1.0/24".parse().unwrap(), 3).unwrap();
        assert_eq!(
            a,
            ["10.244.1.254", "10.244.1.253", "10.244.1.252"].map(|s| s.parse::<IpAddr>().unwrap())
        );
        assert!(top_addresses("10.244.1.0/28".parse().unwrap(), 3).is_err());
    }
}
