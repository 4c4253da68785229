//! NetworkPolicy helpers: the upstream e2e cluster (namespaces x, y, z;
//! pods a, b, c serving named TCP and UDP ports 80 and 81), NB readers, a
//! check that policy rows are consistent and exactly what the cluster's
//! policies select. Probes are in `trace`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::json;
use switchyard_api::names;
use switchyard_controller::k8s::{Kind, Object};

use super::{active, annotation, Env};

/// Owner kinds of NetworkPolicy rows.
pub const POLICY_KINDS: [&str; 5] = [
    names::KIND_NETWORK_POLICY,
    names::KIND_POLICY_PODS,
    names::KIND_POLICY_PEERS,
    names::KIND_POLICY_HOST,
    names::KIND_POLICY_METER,
];

/// Owner kinds of admin policy rows.
pub const ADMIN_KINDS: [&str; 2] = [
    names::KIND_ADMIN_NETWORK_POLICY,
    names::KIND_BASELINE_ADMIN_NETWORK_POLICY,
];

pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const PODS: [&str; 3] = ["a", "b", "c"];

/// The node each of a, b, c runs on: a and c share one, b is across the
/// router.
pub fn node_for(pod: &str) -> &'static str {
    if pod == "b" {
        "n2"
    } else {
        "n1"
    }
}

pub fn np(ns: &str, name: &str, spec: serde_json::Value) -> NetworkPolicy {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name},
        "spec": spec,
    }))
    .expect("a NetworkPolicy")
}

/// A pod serving `serve-80-tcp`, `serve-81-tcp`, `serve-80-udp`,
/// `serve-81-udp` on `node`.
pub fn serve_pod(ns: &str, name: &str, node: &str, labels: &[(&str, &str)]) -> Pod {
    let mut p = kube_memory::pod(ns, name, node);
    p.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    p.spec.as_mut().expect("spec").containers = vec![serde_json::from_value(json!({
        "name": "serve",
        "ports": [
            {"name": "serve-80-tcp", "containerPort": 80},
            {"name": "serve-81-tcp", "containerPort": 81},
            {"name": "serve-80-udp", "containerPort": 80, "protocol": "UDP"},
            {"name": "serve-81-udp", "containerPort": 81, "protocol": "UDP"},
        ],
    }))
    .expect("a container")];
    p
}

/// Nodes n1 and n2; namespaces x, y, z labelled `ns=<name>`; pods a, b, c
/// in each, labelled `pod=<name>`.
pub fn setup_xyz(env: &Env) {
    let c = &env.cluster;
    c.apply_node(kube_memory::node("n1"));
    c.apply_node(kube_memory::node("n2"));
    for ns in NAMESPACES {
        c.apply(kube_memory::namespace(ns, &[("ns", ns)]));
        for p in PODS {
            c.apply_pod(serve_pod(ns, p, node_for(p), &[("pod", p)]));
        }
    }
}

/// An ACL as NB holds it.
#[derive(Clone, Debug)]
pub struct AclRow {
    pub owner_kind: String,
    pub owner: String,
    pub ids: BTreeMap<String, String>,
    pub priority: i64,
    pub direction: String,
    pub matches: String,
    pub action: String,
    pub log: bool,
    pub severity: Option<String>,
    pub meter: Option<String>,
    pub name: Option<String>,
    pub after_lb: bool,
    /// (table, name) of the rows holding it.
    pub held_by: Vec<(String, String)>,
}

/// Policy rows in NB: port groups (name -> (external_ids, port names)),
/// address sets (name -> (external_ids, addresses)), ACLs.
#[derive(Debug, Default)]
pub struct PolicyNb {
    pub groups: BTreeMap<String, (BTreeMap<String, String>, BTreeSet<String>)>,
    pub sets: BTreeMap<String, (BTreeMap<String, String>, BTreeSet<String>)>,
    pub acls: Vec<AclRow>,
    pub meters: Vec<String>,
}

fn ids_of(row: &ovsdb::Row) -> BTreeMap<String, String> {
    row.get("external_ids")
        .and_then(|v| v.as_map())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

pub fn read_nb(env: &Env) -> PolicyNb {
    env.replica.with(|db| {
        let mut out = PolicyNb::default();
        let lsp = db.table("Logical_Switch_Port");
        let mut holders: HashMap<ovsdb::Uuid, Vec<(String, String)>> = HashMap::new();
        for (_, r) in db.table("Port_Group").iter() {
            let name = r.str("name").unwrap_or_default().to_string();
            let ports = r
                .get("ports")
                .map(|v| v.uuids())
                .unwrap_or_default()
                .iter()
                .filter_map(|u| lsp.get(u).and_then(|l| l.str("name")).map(str::to_string))
                .collect();
            for u in r.get("acls").map(|v| v.uuids()).unwrap_or_default() {
                holders
                    .entry(u)
                    .or_default()
                    .push(("Port_Group".into(), name.clone()));
            }
            out.groups.insert(name, (ids_of(r), ports));
        }
        for (_, r) in db.table("Logical_Switch").iter() {
            let name = r.str("name").unwrap_or_default().to_string();
            for u in r.get("acls").map(|v| v.uuids()).unwrap_or_default() {
                holders
                    .entry(u)
                    .or_default()
                    .push(("Logical_Switch".into(), name.clone()));
            }
        }
        for (_, r) in db.table("Address_Set").iter() {
            let addrs = r
                .get("addresses")
                .map(|v| v.strings().into_iter().map(str::to_string).collect())
                .unwrap_or_default();
            out.sets.insert(
                r.str("name").unwrap_or_default().to_string(),
                (ids_of(r), addrs),
            );
        }
        for (u, r) in db.table("ACL").iter() {
            let ids = ids_of(r);
            let opt = |c: &str| {
                r.get(c)
                    .and_then(|v| v.strings().first().map(|s| s.to_string()))
            };
            out.acls.push(AclRow {
                owner_kind: ids.get(names::OWNER_KIND).cloned().unwrap_or_default(),
                owner: ids.get(names::OWNER).cloned().unwrap_or_default(),
                priority: r.get("priority").and_then(|v| v.as_i64()).unwrap_or(-1),
                direction: r.str("direction").unwrap_or_default().to_string(),
                matches: r.str("match").unwrap_or_default().to_string(),
                action: r.str("action").unwrap_or_default().to_string(),
                log: r.get("log").and_then(|v| v.as_bool()).unwrap_or(false),
                severity: opt("severity"),
                meter: opt("meter"),
                name: opt("name"),
                after_lb: r.map_get("options", "apply-after-lb") == Some("true"),
                held_by: holders.remove(u).unwrap_or_default(),
                ids,
            });
        }
        for (_, r) in db.table("Meter").iter() {
            out.meters
                .push(r.str("name").unwrap_or_default().to_string());
        }
        out
    })
}

/// Label selector matching, written here again so the check does not
/// lean on the controller's.
/// An invalid selector (an unknown operator) selects every pod, as the
/// controller fails closed.
fn selects(sel: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(sel) = sel else { return true };
    let known = ["In", "NotIn", "Exists", "DoesNotExist"];
    if sel
        .match_expressions
        .iter()
        .flatten()
        .any(|r| !known.contains(&r.operator.as_str()))
    {
        return true;
    }
    let ok_labels = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    ok_labels
        && sel.match_expressions.iter().flatten().all(|r| {
            let vals = r.values.clone().unwrap_or_default();
            let have = labels.get(&r.key);
            match r.operator.as_str() {
                "In" => have.is_some_and(|v| vals.contains(v)),
                "NotIn" => have.is_none_or(|v| !vals.contains(v)),
                "Exists" => have.is_some(),
                "DoesNotExist" => have.is_none(),
                _ => false,
            }
        })
}

/// Ok when NB's policy rows are consistent and exact: every ACL is held
/// by one port group or switch, every `$set`/`@group` it names exists,
/// every policy port group holds exactly the ports of the pods some
/// policy's `podSelector` picks (those with a port: active, not
/// hostNetwork) and carries a default deny, every peer address set is
/// used, and there is a host ACL per node exactly while a policy exists.
pub fn check_policies(env: &Env) -> Result<(), String> {
    let nb = read_nb(env);
    let policies: Vec<NetworkPolicy> = env
        .cluster
        .list(Kind::NetworkPolicy)
        .into_iter()
        .filter_map(|o| match o {
            Object::NetworkPolicy(p) => Some(*p),
            _ => None,
        })
        .collect();
    let pods = env.cluster.pods();
    for a in &nb.acls {
        if a.held_by.len() != 1 {
            return Err(format!("ACL {:?} held by {:?}", a.matches, a.held_by));
        }
        for tok in a
            .matches
            .split(|c: char| c.is_whitespace() || "{},()".contains(c))
        {
            if let Some(n) = tok.strip_prefix('$') {
                if !nb.sets.contains_key(n) {
                    return Err(format!("{:?} names a missing address set {n}", a.matches));
                }
            }
            if let Some(n) = tok.strip_prefix('@') {
                if !nb.groups.contains_key(n) {
                    return Err(format!("{:?} names a missing port group {n}", a.matches));
                }
            }
        }
    }
    // Port groups: exactly the selected pods, per policy.
    let mut want_groups = 0;
    let mut seen_groups = BTreeSet::new();
    for p in &policies {
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        let key = format!("{ns}/{name}");
        let sel = p.spec.as_ref().and_then(|s| s.pod_selector.as_ref());
        let want: BTreeSet<String> = pods
            .iter()
            .filter(|pod| pod.metadata.namespace.as_deref() == Some(ns.as_str()))
            .filter(|pod| active(pod) && annotation(pod).is_some())
            .filter(|pod| {
                selects(
                    sel,
                    pod.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()),
                )
            })
            .map(|pod| names::pod_port(&ns, pod.metadata.name.as_deref().unwrap_or_default()))
            .collect();
        // The policy's group is the one whose deny names it.
        let deny = nb.acls.iter().find(|a| {
            a.action == "drop"
                && a.ids
                    .get(names::POLICY)
                    .is_some_and(|ps| ps.split(',').any(|x| x == key))
        });
        let Some(deny) = deny else {
            return Err(format!("no default deny names {key}"));
        };
        let group = &deny.held_by[0].1;
        let have = &nb.groups[group].1;
        if *have != want {
            return Err(format!(
                "{key}: group {group} holds {have:?}, want {want:?}"
            ));
        }
        if seen_groups.insert(group.clone()) {
            want_groups += 1;
        }
        for a in nb.acls.iter().filter(|a| a.owner == key) {
            if a.held_by[0].1 != *group || a.priority != 12000 {
                return Err(format!("{key}: allow ACL {:?} misplaced", a.matches));
            }
        }
    }
    // Admin policies' own groups are checked by their own tests.
    let groups = nb
        .groups
        .values()
        .filter(|(ids, _)| {
            !ADMIN_KINDS.contains(&ids.get(names::OWNER_KIND).map(String::as_str).unwrap_or(""))
        })
        .count();
    if groups != want_groups {
        return Err(format!(
            "{groups} port groups, want {want_groups}: {:?}",
            nb.groups.keys()
        ));
    }
    // Every peer set is used by some ACL (one family of a pair may not
    // be: an IPv4 block uses only the IPv4 set of its pods).
    for (name, (ids, _)) in &nb.sets {
        let stem = name.trim_end_matches(".v4").trim_end_matches(".v6");
        if ids.get(names::OWNER_KIND).map(String::as_str) == Some(names::KIND_POLICY_PEERS)
            && !nb
                .acls
                .iter()
                .any(|a| a.matches.contains(&format!("${stem}.")))
        {
            return Err(format!("address set {name} is used by no ACL"));
        }
    }
    let hosts = nb
        .acls
        .iter()
        .filter(|a| a.owner_kind == names::KIND_POLICY_HOST)
        .count();
    // While any policy exists, NetworkPolicy or admin (whose Deny needs
    // the stateful switches the host ACLs make).
    let admin = !env.cluster.list(Kind::AdminNetworkPolicy).is_empty()
        || !env
            .cluster
            .list(Kind::BaselineAdminNetworkPolicy)
            .is_empty();
    let want_hosts = if policies.is_empty() && !admin {
        0
    } else {
        env.cluster.nodes().len()
    };
    if hosts != want_hosts {
        return Err(format!("{hosts} host ACLs, want {want_hosts}"));
    }
    Ok(())
}
