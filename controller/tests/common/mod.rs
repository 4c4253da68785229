//! Shared test harness: real OVN central, the in-memory cluster, a
//! controller on its own runtime (so a test can crash it outright), and the
//! check that NB holds exactly the rows the cluster implies.

#![allow(dead_code)]

pub mod policy;
pub mod trace;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube_memory::{MemoryClient, MemoryCluster};
use ovn_testbed::OvnCentral;
use ovsdb::{Client, ClientConfig, MonitorSpec, Replica};
use switchyard_api::{annotations, names, PodNetwork};
use switchyard_controller::k8s::Kind;
use switchyard_controller::nb::Table;
use switchyard_controller::{Config, Controller, Metrics};

pub struct Env {
    pub central: OvnCentral,
    pub cluster: Arc<MemoryCluster>,
    pub client: Client,
    pub replica: Replica,
    pub config: Config,
    _dir: tempfile::TempDir,
}

impl Env {
    pub async fn new(cluster_cidrs: &[&str]) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let central = OvnCentral::start(dir.path()).expect("OVN central");
        let client = Client::connect(ClientConfig::new(&central.nb_remote()).expect("remote"))
            .await
            .expect("connect NB");
        let mut spec = MonitorSpec::new("OVN_Northbound");
        for t in Table::ALL {
            spec = spec.table(t.name(), None);
        }
        let replica = client.monitor(spec).await.expect("monitor");
        let mut config = Config {
            nb_remote: central.nb_remote(),
            http_addr: None,
            ..Config::default()
        };
        if !cluster_cidrs.is_empty() {
            config.cluster_cidrs = cluster_cidrs
                .iter()
                .map(|c| c.parse().expect("cidr"))
                .collect();
        }
        Env {
            central,
            cluster: MemoryCluster::new(),
            client,
            replica,
            config,
            _dir: dir,
        }
    }

    /// A controller with a client of its own, named after the start.
    pub fn start(&self) -> Running {
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Running::start(
            self.config.clone(),
            self.cluster.client(&format!("controller-{n}")),
        )
    }

    /// NB as a (table, name) -> row summary list, for exact comparison.
    pub fn nb_rows(&self) -> Vec<(String, String, BTreeMap<String, String>)> {
        self.replica.with(|db| {
            let mut out = Vec::new();
            for t in Table::ALL {
                for (_, row) in db.table(t.name()).iter() {
                    let ids = row
                        .get("external_ids")
                        .and_then(|v| v.as_map())
                        .map(|m| {
                            m.iter()
                                .filter_map(|(k, v)| {
                                    Some((k.as_str()?.to_string(), v.as_str()?.to_string()))
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    out.push((
                        t.name().to_string(),
                        row.str("name").unwrap_or("").to_string(),
                        ids,
                    ));
                }
            }
            out.sort();
            out
        })
    }

    /// Ok when NB holds exactly the rows the cluster implies, with the
    /// addresses each pod's annotation names; Err says what differs.
    pub fn check(&self) -> Result<(), String> {
        let pods = self.cluster.pods();
        let nodes = self.cluster.nodes();
        let mut want: HashSet<(String, String)> = HashSet::new();
        want.insert(("Logical_Router".into(), names::CLUSTER_ROUTER.into()));
        want.extend(gateway_rows(None));
        for g in switchyard_controller::translate::service::GROUPS {
            want.insert(("Load_Balancer_Group".into(), g.into()));
        }
        for n in &nodes {
            let name = n.metadata.name.clone().unwrap_or_default();
            let ann = n.metadata.annotations.clone().unwrap_or_default();
            if ann.contains_key(annotations::NODE_GATEWAY)
                && ann.contains_key(annotations::NODE_CHASSIS)
            {
                want.extend(gateway_rows(Some(&name)));
            }
            want.insert(("Logical_Switch".into(), names::node_switch(&name)));
            want.insert(("Logical_Router_Port".into(), names::router_port(&name)));
            want.insert((
                "Logical_Switch_Port".into(),
                names::switch_router_port(&name),
            ));
            want.insert(("Logical_Switch_Port".into(), names::mgmt_port(&name)));
        }
        let node_names: HashSet<String> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        let mut expected_pods: HashMap<String, (String, PodNetwork)> = HashMap::new();
        let mut seen_ips: HashMap<IpAddr, String> = HashMap::new();
        // Each namespace's address sets hold its pods' addresses.
        let mut ns_sets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for ns in self.cluster.list(Kind::Namespace) {
            let name = ns.meta().name.clone().unwrap_or_default();
            for v6 in [false, true] {
                let set = names::namespace_address_set(&name, v6);
                want.insert(("Address_Set".into(), set.clone()));
                ns_sets.insert(set, BTreeSet::new());
            }
        }
        for p in &pods {
            if !active(p) || !node_names.contains(&node_of(p)) {
                continue;
            }
            let key = names::pod_port(
                p.metadata.namespace.as_deref().unwrap_or_default(),
                p.metadata.name.as_deref().unwrap_or_default(),
            );
            let net = annotation(p).ok_or_else(|| format!("pod {key} not annotated"))?;
            for ip in &net.ips {
                if let Some(other) = seen_ips.insert(ip.addr(), key.clone()) {
                    return Err(format!("{} given to both {other} and {key}", ip.addr()));
                }
            }
            want.insert(("Logical_Switch_Port".into(), key.clone()));
            let ns = p.metadata.namespace.as_deref().unwrap_or_default();
            for ip in &net.ips {
                let set = names::namespace_address_set(ns, ip.addr().is_ipv6());
                if let Some(s) = ns_sets.get_mut(&set) {
                    s.insert(ip.addr().to_string());
                }
            }
            expected_pods.insert(key, (p.metadata.uid.clone().unwrap_or_default(), net));
        }
        // NetworkPolicy rows are `policy::check_policies`'s to judge (their
        // ACLs are unnamed and may repeat a name); rows without names
        // (routes, NAT, policies, per-chassis template values) are checked
        // by the tests that make them.
        let have: Vec<_> = self
            .nb_rows()
            .into_iter()
            .filter(|(t, _, ids)| {
                Table::from_name(t).is_some_and(|t| t.name_column() == Some("name"))
                    && !ids.get(names::OWNER_KIND).is_some_and(|k| {
                        policy::POLICY_KINDS.contains(&k.as_str())
                            || policy::ADMIN_KINDS.contains(&k.as_str())
                    })
            })
            .collect();
        let have_set: HashSet<(String, String)> = have
            .iter()
            .map(|(t, n, _)| (t.clone(), n.clone()))
            .collect();
        if have.len() != have_set.len() {
            let mut seen = HashSet::new();
            let dups: Vec<_> = have
                .iter()
                .filter(|(t, n, _)| !seen.insert((t.clone(), n.clone())))
                .take(3)
                .collect();
            return Err(format!("duplicate rows in NB: {dups:?}"));
        }
        let missing: Vec<_> = want.difference(&have_set).take(5).collect();
        let extra: Vec<_> = have_set.difference(&want).take(5).collect();
        if !missing.is_empty() || !extra.is_empty() {
            return Err(format!("missing {missing:?}, extra {extra:?}"));
        }
        // Pod ports carry the annotation's addresses and the pod's UID.
        let bad = self.replica.with(|db| {
            let sets = db.table("Address_Set");
            for (set, want) in &ns_sets {
                let have: BTreeSet<String> = sets
                    .by_name(set)
                    .and_then(|(_, r)| r.get("addresses"))
                    .map(|v| v.strings().into_iter().map(str::to_string).collect())
                    .unwrap_or_default();
                if &have != want {
                    return Some(format!("{set}: addresses {have:?}, want {want:?}"));
                }
            }
            let t = db.table("Logical_Switch_Port");
            for (key, (uid, net)) in &expected_pods {
                let Some((_, row)) = t.by_name(key) else {
                    return Some(format!("{key} missing"));
                };
                let mut addr = net.mac.clone();
                for ip in &net.ips {
                    addr.push(' ');
                    addr.push_str(&ip.addr().to_string());
                }
                let have: Vec<&str> = row
                    .get("addresses")
                    .map(|v| v.strings())
                    .unwrap_or_default();
                if have != vec![addr.as_str()] {
                    return Some(format!("{key}: addresses {have:?}, want {addr:?}"));
                }
                if row.map_get("options", "iface-id-ver") != Some(uid.as_str()) {
                    return Some(format!("{key}: iface-id-ver is not {uid}"));
                }
                if row.map_get("external_ids", names::POD_UID) != Some(uid.as_str()) {
                    return Some(format!("{key}: pod-uid is not {uid}"));
                }
            }
            None
        });
        match bad {
            Some(b) => Err(b),
            None => Ok(()),
        }
    }
}

/// The named rows of the join switch (`None`) or of a node's gateway.
pub fn gateway_rows(node: Option<&str>) -> Vec<(String, String)> {
    let row = |t: &str, n: String| (t.to_string(), n);
    match node {
        None => vec![
            row("Logical_Switch", names::JOIN_SWITCH.into()),
            row(
                "Logical_Router_Port",
                names::router_to_join(names::CLUSTER_ROUTER),
            ),
            row(
                "Logical_Switch_Port",
                names::join_to_router(names::CLUSTER_ROUTER),
            ),
        ],
        Some(n) => {
            let gr = names::gateway_router(n);
            vec![
                row("Logical_Router", gr.clone()),
                row("Logical_Router_Port", names::router_to_join(&gr)),
                row("Logical_Switch_Port", names::join_to_router(&gr)),
                row("Logical_Switch", names::external_switch(n)),
                row("Logical_Router_Port", names::router_to_external(n)),
                row("Logical_Switch_Port", names::external_to_router(n)),
                row("Logical_Switch_Port", names::localnet_port(n)),
            ]
        }
    }
}

pub fn active(p: &Pod) -> bool {
    let spec = p.spec.as_ref();
    let scheduled = spec
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let host = spec.and_then(|s| s.host_network).unwrap_or(false);
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    scheduled && !host && !matches!(phase, Some("Succeeded") | Some("Failed"))
}

pub fn node_of(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

pub fn annotation(p: &Pod) -> Option<PodNetwork> {
    let text = p
        .metadata
        .annotations
        .as_ref()?
        .get(annotations::POD_NETWORK)?;
    PodNetwork::parse(text).ok()
}

/// A controller on a runtime of its own with an API connection of its own:
/// `crash` cuts the connection (nothing it sends afterwards arrives) and
/// drops the runtime, which ends every task it spawned mid-flight, like a
/// killed process.
pub struct Running {
    rt: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<switchyard_controller::Result<()>>>,
    pub client: Arc<MemoryClient>,
    pub metrics: Metrics,
}

impl Running {
    pub fn start(config: Config, client: Arc<MemoryClient>) -> Running {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let controller = Controller::new(config, client.clone());
        let metrics = controller.metrics();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(controller.run(async {
            let _ = stopped.await;
        }));
        Running {
            rt: Some(rt),
            stop: Some(stop),
            task: Some(task),
            client,
            metrics,
        }
    }

    /// Kills the controller at once: its connections first, then every
    /// task.
    pub fn crash(mut self) {
        self.client.kill();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }

    /// Clean shutdown; panics if the controller failed.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let r = tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("controller stops within 20 s");
            r.expect("join").expect("controller result");
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }

    pub fn synced(&self) -> bool {
        self.metrics.health.synced()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Polls `cond` until it is Ok or `timeout` passes; panics with the last
/// error.
pub async fn eventually<F>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Result<(), String>,
{
    let end = Instant::now() + timeout;
    loop {
        let r = cond();
        match r {
            Ok(()) => return,
            Err(e) if Instant::now() >= end => {
                panic!("timed out after {timeout:?} waiting for {what}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Like [`eventually`] for an async condition.
pub async fn eventually_async<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let end = Instant::now() + timeout;
    loop {
        match cond().await {
            Ok(()) => return,
            Err(e) if Instant::now() >= end => {
                panic!("timed out after {timeout:?} waiting for {what}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
