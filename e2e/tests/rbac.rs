//! RBAC least privilege, proven from the calls themselves.
//!
//! The controller and the node agent are driven through every path that
//! talks to the Kubernetes API, and every request they send is recorded as
//! kube-apiserver's authorizer sees it: verb, API group,
//! resource[/subresource], namespace and object name. The rendered
//! manifests (`kubectl kustomize` of the base and of every overlay) must
//! grant each recorded request to the ServiceAccount its workload runs as,
//! and every rule they grant must authorize some recorded request. A call
//! the code makes that RBAC would refuse fails here rather than in a
//! cluster (as a 403 in a log), and a rule the code stopped needing cannot
//! linger.
//!
//! - **Controller**: a real controller (real OVN central and northd,
//!   leader election with short timings, a LoadBalancer pool, configured as
//!   the rendered Deployment configures it) runs against the in-memory API
//!   server, which records every call of the controller's client
//!   (`kube_memory::ApiCall`). Driven: the watches of every kind, pod and
//!   node annotation patches, a LoadBalancer Service's status, an Event
//!   created and then repeated with another note (a series patch), the
//!   lease read, created and renewed.
//! - That recording is worth only its likeness to production, so the same
//!   `Cluster` calls are also sent through the production kube-rs client
//!   (`KubeCluster`) to a fake API server, whose HTTP requests are read as
//!   the API server reads them; both must name the same requests.
//! - **Node agent**: its kube-rs code (`KubeSource`: list and watch of its
//!   node's pods, GET of its Node; `KubeServiceSource`: list and watch of
//!   every Service and EndpointSlice, for the health check ports;
//!   `KubePublisher`: GET and merge patch of its Node) runs against the
//!   fake API server, recorded the same way.
//! - Every place in the two binaries that builds kube-rs requests is one of
//!   those driven here; a new one fails
//!   `every_kube_request_site_is_driven_here` until it is.
//!
//! Needs `kubectl` (for `kubectl kustomize`) and Debian's ovn-central.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube_memory::{ApiCall, MemoryCluster};
use ovn_testbed::OvnCentral;
use serde_json::{json, Value};
use switchyard_api::annotations;
use switchyard_controller::k8s::kube::KubeCluster;
use switchyard_controller::k8s::{Cluster, EventRecord, Kind, ObjectRef, WatchEvent};
use switchyard_controller::{Config, Controller};
use switchyard_node::node_publisher::{node_annotations, KubePublisher, NodePublisher, Published};
use switchyard_node::pod_source::{KubeSource, PodSource};
use switchyard_node::service_source::{KubeServiceSource, ServiceSource};

#[path = "support/fake_api.rs"]
mod fake_api;
mod support;

use fake_api::{request_info, url_decode, FakeApiServer, Request};
use support::{controller_config, repo, Rendered, NAMESPACE, RENDERINGS};

const T: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Requests as the authorizer sees them.

// ---------------------------------------------------------------------------
// What the rendered manifests grant.

/// One verb on one resource, as one rule of a role grants it through one
/// binding.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Grant {
    /// `ClusterRole/x via ClusterRoleBinding/y`, for messages.
    source: String,
    /// `None`: every namespace and the cluster scope (a ClusterRoleBinding);
    /// `Some(ns)`: requests in `ns` only (a RoleBinding).
    namespace: Option<String>,
    group: String,
    resource: String,
    verb: String,
    /// Empty: any object; else only requests naming one of these.
    names: Vec<String>,
}

impl Grant {
    /// The authorizer's rule match (`RuleAllows` in Kubernetes' RBAC).
    fn authorizes(&self, r: &Request) -> bool {
        let any = |g: &str, v: &str| g == "*" || g == v;
        let scope = match &self.namespace {
            None => true,
            Some(ns) => r.namespace.as_deref() == Some(ns.as_str()),
        };
        let names =
            self.names.is_empty() || r.name.as_ref().is_some_and(|n| self.names.contains(n));
        scope
            && any(&self.group, &r.group)
            && any(&self.resource, &r.resource)
            && any(&self.verb, &r.verb)
            && names
    }
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        write!(f, "{} {group}/{}", self.verb, self.resource)?;
        if !self.names.is_empty() {
            write!(f, " named {}", self.names.join(","))?;
        }
        match &self.namespace {
            Some(ns) => write!(f, " in {ns}")?,
            None => write!(f, " everywhere")?,
        }
        write!(f, " ({})", self.source)
    }
}

fn rule_grants(rule: &PolicyRule, source: &str, namespace: Option<&str>) -> Vec<Grant> {
    let mut out = Vec::new();
    for g in rule.api_groups.iter().flatten() {
        for res in rule.resources.iter().flatten() {
            for v in &rule.verbs {
                out.push(Grant {
                    source: source.to_string(),
                    namespace: namespace.map(str::to_string),
                    group: g.clone(),
                    resource: res.clone(),
                    verb: v.clone(),
                    names: rule.resource_names.clone().unwrap_or_default(),
                });
            }
        }
    }
    out
}

fn binds(subjects: &Option<Vec<k8s_openapi::api::rbac::v1::Subject>>, sa: (&str, &str)) -> bool {
    subjects.iter().flatten().any(|s| {
        s.kind == "ServiceAccount" && s.name == sa.1 && s.namespace.as_deref() == Some(sa.0)
    })
}

/// Everything the rendering grants the ServiceAccount `sa` (namespace,
/// name), one [`Grant`] per verb and resource of each bound rule.
fn grants_of(r: &Rendered, sa: (&str, &str)) -> Vec<Grant> {
    let cluster_roles: BTreeMap<String, ClusterRole> = r
        .all::<ClusterRole>()
        .into_iter()
        .map(|c| (c.metadata.name.clone().unwrap_or_default(), c))
        .collect();
    let roles: BTreeMap<(String, String), Role> = r
        .all::<Role>()
        .into_iter()
        .map(|c| {
            (
                (
                    c.metadata.namespace.clone().unwrap_or_default(),
                    c.metadata.name.clone().unwrap_or_default(),
                ),
                c,
            )
        })
        .collect();
    let mut out = Vec::new();
    for b in r.all::<ClusterRoleBinding>() {
        if !binds(&b.subjects, sa) {
            continue;
        }
        let name = &b.role_ref.name;
        let role = cluster_roles
            .get(name)
            .unwrap_or_else(|| panic!("{}: ClusterRole {name} is bound but missing", r.dir));
        let source = format!(
            "ClusterRole/{name} via ClusterRoleBinding/{}",
            b.metadata.name.as_deref().unwrap_or_default()
        );
        for rule in role.rules.iter().flatten() {
            out.extend(rule_grants(rule, &source, None));
        }
    }
    for b in r.all::<RoleBinding>() {
        if !binds(&b.subjects, sa) {
            continue;
        }
        let ns = b.metadata.namespace.clone().unwrap_or_default();
        let name = &b.role_ref.name;
        let rules = if b.role_ref.kind == "Role" {
            roles
                .get(&(ns.clone(), name.clone()))
                .unwrap_or_else(|| panic!("{}: Role {ns}/{name} is bound but missing", r.dir))
                .rules
                .clone()
        } else {
            cluster_roles
                .get(name)
                .unwrap_or_else(|| panic!("{}: ClusterRole {name} is bound but missing", r.dir))
                .rules
                .clone()
        };
        let source = format!(
            "{}/{name} via RoleBinding/{ns}/{}",
            b.role_ref.kind,
            b.metadata.name.as_deref().unwrap_or_default()
        );
        for rule in rules.iter().flatten() {
            out.extend(rule_grants(rule, &source, Some(&ns)));
        }
    }
    out
}

/// Grants a recorded run may leave unused, each with the reason: (group,
/// resource, verb, why). A grant here is still checked to exist (an entry
/// that no longer matches any grant fails `unused_grant_exceptions_match`).
///
/// Empty today: the optional CRDs (AdminNetworkPolicy,
/// BaselineAdminNetworkPolicy) are listed and watched by the controller
/// whether or not they are served (the watch reports them unavailable), so
/// their grants are used; every other grant is exercised by the runs above.
const UNUSED_GRANTS_ALLOWED: &[(&str, &str, &str, &str)] = &[];

fn unused_is_allowed(g: &Grant, allowed: &[(&str, &str, &str, &str)]) -> bool {
    allowed.iter().any(|(group, resource, verb, _why)| {
        g.group == *group && g.resource == *resource && g.verb == *verb
    })
}

/// What is wrong between the requests a ServiceAccount's workload made and
/// what it is granted: requests no grant authorizes, grants no request
/// used (unless `allowed` lists them with a reason).
fn audit_with(
    requests: &BTreeSet<Request>,
    grants: &[Grant],
    allowed: &[(&str, &str, &str, &str)],
) -> Vec<String> {
    let mut problems = Vec::new();
    for r in requests {
        if !grants.iter().any(|g| g.authorizes(r)) {
            problems.push(format!("not granted: {r}"));
        }
    }
    for g in grants {
        if !requests.iter().any(|r| g.authorizes(r)) && !unused_is_allowed(g, allowed) {
            problems.push(format!("granted but never used: {g}"));
        }
    }
    problems
}

fn audit(requests: &BTreeSet<Request>, grants: &[Grant]) -> Vec<String> {
    audit_with(requests, grants, UNUSED_GRANTS_ALLOWED)
}

/// The workloads' ServiceAccounts by the program their main container runs.
fn service_account_running(r: &Rendered, program: &str) -> (String, String) {
    let mut found = Vec::new();
    let mut look = |ns: Option<String>, spec: Option<k8s_openapi::api::core::v1::PodSpec>| {
        let Some(spec) = spec else { return };
        let runs = spec.containers.iter().any(|c| {
            c.command
                .as_ref()
                .and_then(|c| c.first())
                .map(String::as_str)
                == Some(program)
        });
        if runs {
            found.push((
                ns.unwrap_or_default(),
                spec.service_account_name.clone().unwrap_or_default(),
            ));
        }
    };
    for d in r.all::<Deployment>() {
        look(d.metadata.namespace, d.spec.and_then(|s| s.template.spec));
    }
    for d in r.all::<DaemonSet>() {
        look(d.metadata.namespace, d.spec.and_then(|s| s.template.spec));
    }
    for s in r.all::<StatefulSet>() {
        look(s.metadata.namespace, s.spec.and_then(|s| s.template.spec));
    }
    assert_eq!(found.len(), 1, "{}: one workload runs {program}", r.dir);
    found.remove(0)
}

fn report(who: &str, dir: &str, requests: &BTreeSet<Request>, problems: &[String]) -> String {
    format!(
        "{who} in {dir}:\n  {}\nrecorded requests:\n  {}",
        problems.join("\n  "),
        requests
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n  ")
    )
}

// ---------------------------------------------------------------------------
// Fixtures, as JSON (the fake serves them) and typed (the in-memory server).

fn node_json(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": name, "uid": format!("uid-node-{name}")},
           "spec": {"podCIDRs": ["10.244.1.0/24"]}})
}

fn pod_json(ns: &str, name: &str, node: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"namespace": ns, "name": name, "uid": format!("uid-pod-{name}"),
                        "labels": {"app": "web"},
                        "annotations": {annotations::POD_NETWORK: "{}"}},
           "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]},
           "status": {"phase": "Running"}})
}

fn namespace_json(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": name, "uid": format!("uid-ns-{name}")}})
}

fn load_balancer_json(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"namespace": ns, "name": name, "uid": format!("uid-svc-{name}")},
           "spec": {"type": "LoadBalancer", "selector": {"app": "web"},
                    "ports": [{"name": "http", "protocol": "TCP", "port": 80,
                               "targetPort": 8080}]}})
}

/// A LoadBalancer with `externalTrafficPolicy: Local` and its allocated
/// health check port.
fn local_load_balancer_json(ns: &str, name: &str, health_port: u16) -> Value {
    let mut svc = load_balancer_json(ns, name);
    svc["spec"]["externalTrafficPolicy"] = json!("Local");
    svc["spec"]["healthCheckNodePort"] = json!(health_port);
    svc
}

/// An IPv4 EndpointSlice of Service `service` with ready endpoints (address,
/// node).
fn endpoint_slice_json(ns: &str, service: &str, endpoints: &[(&str, &str)]) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(ip, node)| json!({"addresses": [ip], "nodeName": node, "conditions": {"ready": true}}))
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"namespace": ns, "name": format!("{service}-abcde"),
                        "labels": {"kubernetes.io/service-name": service}},
           "addressType": "IPv4", "endpoints": endpoints,
           "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]})
}

fn typed<K: serde::de::DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).expect("a fixture is its type")
}

/// Polls `cond` until it holds or `timeout` passes; panics naming `what`.
async fn eventually<F, Fut>(timeout: Duration, what: &str, mut cond: F)
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

// ---------------------------------------------------------------------------
// The controller.

/// The controller's configuration as the rendered Deployment gives it,
/// with what the kubelet fills in (its namespace, a pod name) and what
/// this test needs (the testbed's NB, short leader election timings, a
/// LoadBalancer pool so that Service status is written).
fn driven_config(r: &Rendered) -> Config {
    let mut c = controller_config(r);
    let le = &mut c.leader_election;
    if le.namespace == "<fieldRef:metadata.namespace>" {
        le.namespace = NAMESPACE.into();
    }
    le.identity = "switchyard-controller-6c9f7-x2x4q".into();
    le.lease_duration = Duration::from_secs(2);
    le.renew_deadline = Duration::from_millis(1500);
    le.retry_period = Duration::from_millis(200);
    c.http_addr = None;
    if c.load_balancer_pool.is_empty() {
        c.load_balancer_pool = vec!["192.0.2.0/28".parse().expect("constant")];
    }
    c
}

/// Runs a real controller on `config` (its NB replaced by a fresh OVN
/// central's) through every path that calls the API server, and returns
/// the calls its client made.
async fn record_controller(mut config: Config) -> Vec<ApiCall> {
    let dir = tempfile::tempdir().expect("tempdir");
    let central = OvnCentral::start(dir.path()).expect("OVN central");
    config.nb_remote = central.nb_remote();
    let cluster = MemoryCluster::new();
    cluster.set_service_cidrs(&config.service_cidrs);
    let client = cluster.client("switchyard-controller");
    let controller = Controller::new(config.clone(), client);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(controller.run(async {
        let _ = stopped.await;
    }));

    // Nodes without podCIDRs (the controller allocates and annotates them),
    // pods on both, a LoadBalancer Service, a NetworkPolicy, and a
    // namespace whose ACL logging annotation is invalid (an Event).
    for n in ["n1", "n2"] {
        cluster.apply_node(kube_memory::node(n));
    }
    for (p, n) in [("a", "n1"), ("b", "n2")] {
        let mut pod = kube_memory::pod("web", p, n);
        pod.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        cluster.apply_pod(pod);
    }
    let mut svc: Service = typed(load_balancer_json("web", "lb"));
    svc.metadata.uid = None;
    cluster.apply_service(svc);
    cluster.apply(typed::<NetworkPolicy>(json!({
        "metadata": {"namespace": "web", "name": "web-from-web"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                 "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"podSelector": {}}]}]}})));
    // An AdminNetworkPolicy and the BaselineAdminNetworkPolicy: the
    // controller reports each one's Ready condition in its status.
    cluster.apply(
        serde_json::from_value::<switchyard_controller::k8s::AdminNetworkPolicy>(json!({
            "metadata": {"name": "web-deny"},
            "spec": {"priority": 10,
                     "subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "web"}}},
                     "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]}}))
        .expect("an AdminNetworkPolicy"),
    );
    cluster.apply(
        serde_json::from_value::<switchyard_controller::k8s::BaselineAdminNetworkPolicy>(json!({
            "metadata": {"name": "default"},
            "spec": {"subject": {"namespaces": {}},
                     "ingress": [{"action": "Allow", "from": [{"namespaces": {}}]}]}}))
        .expect("a BaselineAdminNetworkPolicy"),
    );
    let noisy = |value: &str| -> Namespace {
        typed(json!({"metadata": {"name": "noisy",
                                  "annotations": {annotations::ACL_LOGGING: value}}}))
    };
    cluster.apply(noisy("loud"));

    let c = cluster.clone();
    eventually(T, "pods and nodes annotated", || {
        let c = c.clone();
        async move {
            for p in c.pods() {
                let annotated = p
                    .metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(annotations::POD_NETWORK));
                if !annotated {
                    return Err(format!("pod {:?}", p.metadata.name));
                }
            }
            for n in c.nodes() {
                let annotated = n
                    .metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(annotations::NODE_SUBNETS));
                if !annotated {
                    return Err(format!("node {:?}", n.metadata.name));
                }
            }
            Ok(())
        }
    })
    .await;
    eventually(T, "both admin policies' Ready conditions", || {
        let c = c.clone();
        async move {
            use switchyard_controller::k8s::Object;
            let anp = match c.get(Kind::AdminNetworkPolicy, None, "web-deny") {
                Some(Object::AdminNetworkPolicy(p)) => {
                    p.status.is_some_and(|s| !s.conditions.is_empty())
                }
                _ => false,
            };
            let banp = match c.get(Kind::BaselineAdminNetworkPolicy, None, "default") {
                Some(Object::BaselineAdminNetworkPolicy(p)) => {
                    p.status.is_some_and(|s| !s.conditions.is_empty())
                }
                _ => false,
            };
            (anp && banp)
                .then_some(())
                .ok_or(format!("ANP status {anp}, BANP status {banp}"))
        }
    })
    .await;
    eventually(T, "the LoadBalancer Service's status", || {
        let c = c.clone();
        async move {
            c.service("web", "lb")
                .and_then(|s| s.status?.load_balancer?.ingress)
                .filter(|i| !i.is_empty())
                .map(|_| ())
                .ok_or_else(|| "no ingress".to_string())
        }
    })
    .await;
    let invalid_logging = |c: &MemoryCluster| {
        c.stored_events()
            .into_iter()
            .find(|e| e.record.reason == "InvalidACLLogging")
            .map(|e| e.count)
            .unwrap_or(0)
    };
    eventually(T, "an Event on the invalid annotation", || {
        let n = invalid_logging(&c);
        async move { (n >= 1).then_some(()).ok_or(format!("{n} Events")) }
    })
    .await;
    // The same reason on the same object with another note: the recorder
    // patches the first Event's series.
    cluster.apply(noisy("{\"deny\":\"shout\"}"));
    eventually(T, "the Event repeated", || {
        let n = invalid_logging(&c);
        async move { (n >= 2).then_some(()).ok_or(format!("{n} Events")) }
    })
    .await;
    // The lease was created; wait for a renewal.
    let le = &config.leader_election;
    let renewed = |c: &MemoryCluster| {
        c.lease(&le.namespace, &le.lease_name)
            .and_then(|l| l.spec)
            .filter(|s| s.holder_identity.as_deref() == Some(le.identity.as_str()))
            .and_then(|s| s.renew_time)
    };
    let first = {
        let mut seen = None;
        eventually(T, "the lease held", || {
            seen = renewed(&c);
            let held = seen.is_some();
            async move { held.then_some(()).ok_or("no lease".to_string()) }
        })
        .await;
        seen
    };
    eventually(T, "the lease renewed", || {
        let now = renewed(&c);
        let moved = now.is_some() && now != first;
        async move { moved.then_some(()).ok_or("not renewed".to_string()) }
    })
    .await;

    // A clean stop releases the lease.
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("the controller stops within 20 s")
        .expect("join")
        .expect("the controller ran without error");
    cluster
        .calls()
        .into_iter()
        .filter(|c| c.client == "switchyard-controller")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_makes_exactly_the_calls_its_roles_grant() {
    let renderings: Vec<Rendered> = RENDERINGS.iter().map(|d| Rendered::new(d)).collect();
    let config = driven_config(&renderings[0]);
    // One run serves every rendering: what RBAC depends on (the lease's
    // namespace and name, leader election itself) is the same in each.
    for r in &renderings {
        let c = driven_config(r);
        assert_eq!(
            (
                &c.leader_election.namespace,
                &c.leader_election.lease_name,
                c.leader_election.enabled
            ),
            (
                &config.leader_election.namespace,
                &config.leader_election.lease_name,
                true
            ),
            "{}: leader election differs from the base's",
            r.dir
        );
    }
    let requests: BTreeSet<Request> = record_controller(config)
        .await
        .into_iter()
        .map(Request::from)
        .collect();
    let mut failures = Vec::new();
    for r in &renderings {
        let sa = service_account_running(r, "switchyard-controller");
        let problems = audit(&requests, &grants_of(r, (&sa.0, &sa.1)));
        if !problems.is_empty() {
            failures.push(report(&sa.1, r.dir, &requests, &problems));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---------------------------------------------------------------------------
// The in-memory server's recording against the production client's requests.

fn lease(spec: LeaseSpec) -> Lease {
    Lease {
        metadata: ObjectMeta {
            namespace: Some(NAMESPACE.into()),
            name: Some("switchyard-controller".into()),
            ..Default::default()
        },
        spec: Some(spec),
    }
}

/// Every call of the [`Cluster`] trait, each once (an Event twice: a
/// create, then a series patch), each asserted to succeed, so that both
/// servers answered them as kube-apiserver would.
async fn exercise(c: Arc<dyn Cluster>, watching: impl Fn(Kind) -> bool) {
    for kind in Kind::ALL {
        let mut stream = c.watch(kind);
        tokio::spawn(async move {
            while let Some(ev) = stream.next().await {
                if let WatchEvent::Unavailable(why) = ev {
                    panic!("{kind} unavailable: {why}");
                }
            }
        });
        eventually(T, &format!("a watch of {kind}"), || {
            let w = watching(kind);
            async move { w.then_some(()).ok_or("not watching".to_string()) }
        })
        .await;
    }
    let set = |k: &str| BTreeMap::from([(k.to_string(), Some("v".to_string()))]);
    c.patch_annotations(ObjectRef::pod("web", "a", "uid-pod-a"), None, set("x"))
        .await
        .expect("pod annotation patch");
    c.patch_annotations(ObjectRef::node("n1", "uid-node-n1"), None, set("y"))
        .await
        .expect("node annotation patch");
    c.patch_status(
        ObjectRef::new(Kind::Service, Some("web"), "lb", "uid-svc-lb"),
        None,
        json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}),
    )
    .await
    .expect("service status patch");
    for note in ["first", "second"] {
        c.emit_event(EventRecord {
            regarding: ObjectRef::pod("web", "a", "uid-pod-a"),
            type_: "Warning".into(),
            reason: "Tested".into(),
            action: "Test".into(),
            note: note.into(),
        })
        .await
        .expect("event");
    }
    let (ns, name) = (NAMESPACE.to_string(), "switchyard-controller".to_string());
    assert!(c
        .get_lease(ns.clone(), name.clone())
        .await
        .expect("get")
        .is_none());
    let spec = LeaseSpec {
        holder_identity: Some("me".into()),
        renew_time: Some(MicroTime(Timestamp::now())),
        ..Default::default()
    };
    c.create_lease(lease(spec)).await.expect("create lease");
    let mut held = c
        .get_lease(ns, name)
        .await
        .expect("get")
        .expect("the lease exists");
    if let Some(s) = held.spec.as_mut() {
        s.renew_time = Some(MicroTime(Timestamp::now()));
    }
    c.replace_lease(held).await.expect("replace lease");
}

/// Event names are the recorder's `<object>.<hex time>`: compared as such.
fn normalized(r: Request) -> Request {
    if r.resource == "events" && r.name.is_some() {
        return Request {
            name: Some("<event>".into()),
            ..r
        };
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_memory_server_records_what_the_kube_rs_client_sends() {
    let objects = vec![
        node_json("n1"),
        namespace_json("web"),
        pod_json("web", "a", "n1"),
        load_balancer_json("web", "lb"),
    ];

    let fake = Arc::new(FakeApiServer::start(objects.clone()));
    let kube = Arc::new(KubeCluster::new(
        fake.client.clone(),
        "switchyard-controller",
        "replica-0",
    ));
    let f = fake.clone();
    exercise(kube, move |k| f.saw("watch", k.resource())).await;
    let production: BTreeSet<Request> = fake.requests().into_iter().map(normalized).collect();

    let memory = MemoryCluster::new();
    memory.apply_node(typed(objects[0].clone()));
    memory.apply(typed::<Namespace>(objects[1].clone()));
    memory.apply_pod(typed(objects[2].clone()));
    memory.apply_service(typed(objects[3].clone()));
    let m = memory.clone();
    exercise(memory.client("switchyard-controller"), move |k| {
        m.calls()
            .iter()
            .any(|c| c.verb == "watch" && c.resource == k.resource())
    })
    .await;
    let recorded: BTreeSet<Request> = memory
        .calls()
        .into_iter()
        .map(Request::from)
        .map(normalized)
        .collect();

    let only = |a: &BTreeSet<Request>, b: &BTreeSet<Request>| {
        a.difference(b).map(ToString::to_string).collect::<Vec<_>>()
    };
    assert_eq!(
        production,
        recorded,
        "\nsent by kube-rs only: {:#?}\nrecorded in memory only: {:#?}",
        only(&production, &recorded),
        only(&recorded, &production)
    );
    // What the recording must show (the subresource, the series patch).
    let has = |verb: &str, resource: &str| {
        recorded
            .iter()
            .any(|r| r.verb == verb && r.resource == resource)
    };
    assert!(has("patch", "services/status"));
    assert!(has("create", "events") && has("patch", "events"));
}

// ---------------------------------------------------------------------------
// The node agent.

/// Drives the node agent's kube-rs code as the daemon does on node `node`
/// and returns the requests it sent.
async fn record_node_agent(node: &str) -> Vec<Request> {
    let fake = FakeApiServer::start(vec![
        node_json(node),
        node_json("elsewhere"),
        pod_json("web", "here", node),
        pod_json("web", "there", "elsewhere"),
        local_load_balancer_json("web", "front", 32100),
        endpoint_slice_json(
            "web",
            "front",
            &[("10.244.1.5", node), ("10.244.2.5", "elsewhere")],
        ),
    ]);
    // The reflector over this node's pods: CNI ADD reads its cache.
    let source = KubeSource::start(fake.client.clone(), node);
    eventually(T, "the pod reflector listing and watching", || {
        let (src, watching) = (&source, fake.saw("watch", "pods"));
        async move {
            let found = src.pod("web", "here").await.map_err(|e| e.to_string())?;
            (found.is_some() && watching)
                .then_some(())
                .ok_or("not yet".to_string())
        }
    })
    .await;
    assert!(
        source.pod("web", "there").await.expect("lookup").is_none(),
        "another node's pod is not listed"
    );
    // The management port's subnets.
    let subnets = source.node_subnets(node).await.expect("node subnets");
    assert_eq!(subnets.len(), 1);
    // The health check ports: every Service and EndpointSlice, counted for
    // this node.
    let services = KubeServiceSource::start(fake.client.clone());
    eventually(T, "the service and endpointslice reflectors", || {
        let src = &services;
        let watching = fake.saw("watch", "services") && fake.saw("watch", "endpointslices");
        async move {
            let snap = src.snapshot().await;
            let (want, _) = switchyard_node::health::desired(&snap.services, &snap.slices, node);
            (watching && want.values().any(|d| d.port == 32100 && d.local == 1))
                .then_some(())
                .ok_or(format!("not yet: {want:?}"))
        }
    })
    .await;
    let publisher = KubePublisher::new(fake.client.clone(), node);
    // The chassis and the gateway bridge published on the Node: written
    // once, then left alone.
    let gateway = annotations::NodeGateway {
        bridge: "br-phy".into(),
        mac: "0a:58:c6:12:00:02".into(),
        ips: vec!["198.18.0.2/24".parse().expect("net")],
        next_hops: vec!["198.18.0.1".parse().expect("ip")],
    };
    let wanted = node_annotations(
        &BTreeMap::from([("system-id".to_string(), "chassis-1".to_string())]),
        Some(&gateway),
    );
    assert_eq!(
        publisher.publish(&wanted).await.expect("publish"),
        Published::Written
    );
    assert_eq!(
        publisher.publish(&wanted).await.expect("publish"),
        Published::Unchanged
    );
    fake.requests()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_agent_makes_exactly_the_calls_its_role_grants() {
    let requests: BTreeSet<Request> = record_node_agent("worker-1").await.into_iter().collect();
    let mut failures = Vec::new();
    for dir in RENDERINGS {
        let r = Rendered::new(dir);
        let sa = service_account_running(&r, "switchyard-node");
        let problems = audit(&requests, &grants_of(&r, (&sa.0, &sa.1)));
        if !problems.is_empty() {
            failures.push(report(&sa.1, dir, &requests, &problems));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---------------------------------------------------------------------------
// What keeps the recordings complete.

#[test]
fn only_the_recorded_workloads_are_granted_anything() {
    for dir in RENDERINGS {
        let r = Rendered::new(dir);
        let recorded: BTreeSet<(String, String)> = ["switchyard-controller", "switchyard-node"]
            .iter()
            .map(|p| service_account_running(&r, p))
            .collect();
        let mut subjects = Vec::new();
        for b in r.all::<ClusterRoleBinding>() {
            subjects.extend(b.subjects.into_iter().flatten());
        }
        for b in r.all::<RoleBinding>() {
            subjects.extend(b.subjects.into_iter().flatten());
        }
        for s in subjects {
            let sa = (s.namespace.clone().unwrap_or_default(), s.name.clone());
            assert!(
                s.kind == "ServiceAccount" && recorded.contains(&sa),
                "{dir}: {s:?} is granted calls nothing here records"
            );
        }
        // No wildcard: every grant names what it grants.
        for obj in r
            .objects
            .iter()
            .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
        {
            assert!(
                !obj["rules"].to_string().contains("\"*\""),
                "{dir}: a wildcard in {}",
                obj["metadata"]["name"]
            );
        }
    }
}

/// Source files of the two binaries that build kube-rs requests (an
/// `Api`, a `Recorder`, a raw `Client::request`) are exactly those whose
/// code the tests above drive; a new one fails here until it is driven.
#[test]
fn every_kube_request_site_is_driven_here() {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).expect("source directory") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let root = repo();
    let mut files = Vec::new();
    for crate_dir in ["controller/src", "node-agent/src"] {
        walk(&root.join(crate_dir), &mut files);
    }
    let mut sites = BTreeSet::new();
    for f in files {
        let rel = f
            .strip_prefix(&root)
            .expect("under the repository")
            .to_string_lossy()
            .into_owned();
        if rel.ends_with("_tests.rs") || rel.ends_with("/tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("readable source");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        if ["Api::", "Api<", "Recorder::new", ".request("]
            .iter()
            .any(|s| code.contains(s))
        {
            sites.insert(rel);
        }
    }
    let driven: BTreeSet<String> = [
        // KubeCluster: every Cluster call, compared with the in-memory
        // recording the controller run is audited by.
        "controller/src/k8s/kube.rs",
        "node-agent/src/pod_source.rs",
        "node-agent/src/service_source.rs",
        "node-agent/src/node_publisher.rs",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(sites, driven);
}

// ---------------------------------------------------------------------------
// The checker itself.

fn req(verb: &str, group: &str, resource: &str, ns: Option<&str>, name: Option<&str>) -> Request {
    Request {
        verb: verb.into(),
        group: group.into(),
        resource: resource.into(),
        namespace: ns.map(str::to_string),
        name: name.map(str::to_string),
    }
}

#[test]
fn requests_are_read_as_the_api_server_reads_them() {
    let r = |m: &str, p: &str, q: &str| request_info(m, p, q).unwrap();
    assert_eq!(
        r(
            "GET",
            "/api/v1/pods",
            "fieldSelector=spec.nodeName%3Dn1&limit=500"
        ),
        req("list", "", "pods", None, None)
    );
    assert_eq!(
        r("GET", "/api/v1/pods", "watch=true&resourceVersion=5"),
        req("watch", "", "pods", None, None)
    );
    assert_eq!(
        r("GET", "/api/v1/nodes/n1", ""),
        req("get", "", "nodes", None, Some("n1"))
    );
    assert_eq!(
        r(
            "PATCH",
            "/api/v1/namespaces/web/services/lb/status",
            "fieldManager=x"
        ),
        req("patch", "", "services/status", Some("web"), Some("lb"))
    );
    assert_eq!(
        r("POST", "/apis/events.k8s.io/v1/namespaces/web/events", ""),
        req("create", "events.k8s.io", "events", Some("web"), None)
    );
    assert_eq!(
        r(
            "PUT",
            "/apis/coordination.k8s.io/v1/namespaces/sy/leases/l",
            ""
        ),
        req(
            "update",
            "coordination.k8s.io",
            "leases",
            Some("sy"),
            Some("l")
        )
    );
    assert_eq!(
        r("GET", "/api/v1/namespaces/web", ""),
        req("get", "", "namespaces", None, Some("web"))
    );
    assert_eq!(
        r(
            "GET",
            "/api/v1/nodes",
            "fieldSelector=metadata.name%3Dn1&watch=1"
        ),
        req("watch", "", "nodes", None, Some("n1"))
    );
    assert_eq!(url_decode("a%3Db+c%2"), "a=b c%2");
    assert!(request_info("GET", "/healthz", "").is_err());
}

fn grant(verb: &str, resource: &str, ns: Option<&str>, names: &[&str]) -> Grant {
    Grant {
        source: "test".into(),
        namespace: ns.map(str::to_string),
        group: String::new(),
        resource: resource.into(),
        verb: verb.into(),
        names: names.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn the_audit_finds_ungranted_calls_and_unused_grants() {
    let get_n1 = req("get", "", "nodes", None, Some("n1"));
    let requests: BTreeSet<Request> = [get_n1.clone()].into();
    assert!(audit(&requests, &[grant("get", "nodes", None, &[])]).is_empty());
    // Not granted: another verb, or a Role's namespace for a cluster-scoped
    // object, or another name.
    for wrong in [
        grant("list", "nodes", None, &[]),
        grant("get", "nodes", Some("switchyard"), &[]),
        grant("get", "nodes", None, &["n2"]),
        grant("get", "nodes/status", None, &[]),
    ] {
        let problems = audit(&requests, std::slice::from_ref(&wrong));
        assert_eq!(problems.len(), 2, "{wrong}: {problems:?}");
        assert!(problems[0].starts_with("not granted"));
        assert!(problems[1].starts_with("granted but never used"));
    }
    // Too much: a second, unused grant.
    let problems = audit(
        &requests,
        &[
            grant("get", "nodes", None, &["n1"]),
            grant("patch", "nodes", None, &[]),
        ],
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    // A create names no object: resourceNames cannot grant it.
    let create: BTreeSet<Request> = [req("create", "", "leases", Some("sy"), None)].into();
    assert_eq!(
        audit(&create, &[grant("create", "leases", Some("sy"), &["l"])]).len(),
        2
    );
    assert!(audit(&create, &[grant("create", "leases", Some("sy"), &[])]).is_empty());
    // An unused grant listed as an exception is not a problem; the listed
    // verb only.
    let allowed = [("", "nodes", "patch", "test")];
    let grants = [
        grant("get", "nodes", None, &[]),
        grant("patch", "nodes", None, &[]),
    ];
    assert!(audit_with(&requests, &grants, &allowed).is_empty());
    let allowed = [("", "nodes", "update", "test")];
    assert_eq!(audit_with(&requests, &grants, &allowed).len(), 1);
}

#[test]
fn unused_grant_exceptions_match() {
    for dir in RENDERINGS {
        let r = Rendered::new(dir);
        let mut grants = Vec::new();
        for program in ["switchyard-controller", "switchyard-node"] {
            let sa = service_account_running(&r, program);
            grants.extend(grants_of(&r, (&sa.0, &sa.1)));
        }
        for e in UNUSED_GRANTS_ALLOWED {
            assert!(
                grants.iter().any(|g| unused_is_allowed(g, &[*e])),
                "{dir}: the exception {e:?} matches no grant; remove it"
            );
        }
    }
}
