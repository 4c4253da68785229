//! Services and NetworkPolicies in the fault matrix: the standing objects
//! every case keeps (a Service the client probes through its ClusterIP, a
//! namespace whose pods only labelled clients may reach, with an allowed
//! and a denied prober), the objects each churn wave brings and takes away,
//! and the check that NB holds exactly what the surviving objects need.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use switchyard_controller::k8s::{Kind, Object};
use switchyard_e2e::probe::{echo_server_command, probe, probe_once, Proto};
use switchyard_e2e::{pod_spec, Sandbox};

/// The churn's namespace (clients, servers, waves).
pub const NS: &str = "faults";
/// The guarded namespace: its pods take ingress only from pods labelled
/// `role=allowed`, from any namespace.
pub const GUARD_NS: &str = "faults-guard";
/// The Service every case probes through its ClusterIP (selects `app=echo`).
pub const SERVICE: &str = "echo";

const TIMEOUT: Duration = Duration::from_secs(120);

/// A pod running the echo server answering its name, with `labels`.
pub fn labelled_pod(
    sb: &Sandbox,
    ns: &str,
    name: &str,
    node: Option<&str>,
    labels: &[(&str, &str)],
) -> (String, String) {
    let mut pod = pod_spec(ns, name, node, echo_server_command(name));
    pod.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    sb.create_pod(pod)
        .unwrap_or_else(|e| panic!("creating {ns}/{name}: {e:#}"));
    (ns.to_string(), name.to_string())
}

/// A ClusterIP Service `name` in [`NS`] selecting `key=value`, TCP 8080.
pub fn service(sb: &Sandbox, name: &str, key: &str, value: &str) {
    sb.apply_yaml(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {NS}}}\n\
         spec:\n  selector: {{{key}: {value}}}\n  ports:\n  - {{name: tcp, protocol: TCP, port: 8080, targetPort: 8080}}\n"
    ))
    .unwrap_or_else(|e| panic!("Service {name}: {e:#}"));
}

/// A NetworkPolicy `name` in [`NS`] isolating the pods labelled
/// `wave=<wave>` for ingress, which it allows from every pod of [`NS`].
pub fn wave_policy(sb: &Sandbox, name: &str, wave: &str) {
    sb.apply_yaml(&format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {NS}}}\n\
         spec:\n  podSelector: {{matchLabels: {{wave: {wave}}}}}\n  policyTypes: [Ingress]\n  ingress:\n  - from:\n    - podSelector: {{}}\n"
    ))
    .unwrap_or_else(|e| panic!("NetworkPolicy {name}: {e:#}"));
}

/// What a churn wave `w` brings besides its pods: Service `svc-w<w>` and
/// NetworkPolicy `np-w<w>`, both selecting `wave=w<w>`.
pub fn wave_objects(sb: &Sandbox, w: usize) {
    service(sb, &format!("svc-w{w}"), "wave", &format!("w{w}"));
    wave_policy(sb, &format!("np-w{w}"), &format!("w{w}"));
}

/// Deletes wave `w`'s Service and NetworkPolicy.
pub fn delete_wave_objects(sb: &Sandbox, w: usize) {
    for (kind, name) in [
        ("Service", format!("svc-w{w}")),
        ("NetworkPolicy", format!("np-w{w}")),
    ] {
        assert!(
            sb.delete(kind, NS, &name).expect("delete"),
            "{kind} {name} did not exist"
        );
    }
}

/// Sets labels on pod `NS/name`.
pub fn relabel(sb: &Sandbox, name: &str, labels: &[(&str, &str)]) {
    let set: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    sb.label(Kind::Pod, NS, name, &set, &[])
        .unwrap_or_else(|e| panic!("labelling {name}: {e:#}"));
}

/// The standing objects of a case and the addresses its probers use.
pub struct Standing {
    pub cluster_ip: IpAddr,
    pub guarded_ip: IpAddr,
    /// The pods it added: `faults/intruder` (node-1, no label) and
    /// `faults-guard/guarded` (node-2).
    pub pods: Vec<(String, String)>,
}

/// Creates the standing objects: Service [`SERVICE`]; in [`GUARD_NS`] the
/// policy `guard` (before its pod exists), then pod `guarded`; the denied
/// pod `intruder` in [`NS`]. The allowed client and the Service's first
/// backend are the caller's `client` (`role=allowed`) and `server`
/// (`app=echo`).
pub fn create_standing(sb: &Sandbox) -> Vec<(String, String)> {
    service(sb, SERVICE, "app", "echo");
    sb.apply_yaml(&format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: guard, namespace: {GUARD_NS}}}\n\
         spec:\n  podSelector: {{}}\n  policyTypes: [Ingress]\n  ingress:\n  - from:\n    - namespaceSelector: {{}}\n      podSelector: {{matchLabels: {{role: allowed}}}}\n"
    ))
    .expect("the guard policy");
    vec![
        labelled_pod(sb, GUARD_NS, "guarded", Some("node-2"), &[]),
        labelled_pod(sb, NS, "intruder", Some("node-1"), &[]),
    ]
}

/// Once every standing pod is Ready: waits until the client reaches the
/// Service and the guarded pod, and until the guard policy drops the
/// intruder's connection (the guarded pod listens, as the client's answer
/// shows: a failure from then on is the policy). Any answer the intruder
/// gets after this returned is a policy violation.
pub fn wait_in_effect(sb: &Sandbox, pods: Vec<(String, String)>) -> Standing {
    let client = sb.pod_netns(NS, "client").expect("client runs");
    let intruder = sb.pod_netns(NS, "intruder").expect("intruder runs");
    let cluster_ip = cluster_ip(sb, SERVICE);
    let guarded_ip = sb.pod_ips(GUARD_NS, "guarded")[0];
    probe(&client, Proto::Tcp, cluster_ip, Some("server"), TIMEOUT)
        .expect("the client reaches the Service");
    probe(&client, Proto::Tcp, guarded_ip, Some("guarded"), TIMEOUT)
        .expect("the client (role=allowed) reaches the guarded pod");
    switchyard_e2e::util::wait_for(TIMEOUT, "the guard policy to drop the intruder", || {
        probe_once(&intruder, Proto::Tcp, guarded_ip, None)
            .is_err()
            .then_some(())
    })
    .expect("the policy takes effect");
    Standing {
        cluster_ip,
        guarded_ip,
        pods,
    }
}

/// Service `name`'s ClusterIP in [`NS`].
pub fn cluster_ip(sb: &Sandbox, name: &str) -> IpAddr {
    match sb.cluster().get(Kind::Service, Some(NS), name) {
        Some(Object::Service(s)) => s
            .spec
            .and_then(|s| s.cluster_ip)
            .and_then(|ip| ip.parse().ok())
            .unwrap_or_else(|| panic!("Service {name} has no ClusterIP")),
        _ => panic!("no Service {name}"),
    }
}

/// `list TABLE` with these columns as JSON rows.
fn nb_rows(
    sb: &Sandbox,
    table: &str,
    columns: &str,
) -> Result<Vec<Vec<serde_json::Value>>, String> {
    let out = sb
        .nbctl(&[
            "--format=json",
            &format!("--columns={columns}"),
            "list",
            table,
        ])
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
    Ok(v["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.as_array().cloned().unwrap_or_default())
        .collect())
}

/// An OVSDB JSON map (`["map", [[k, v], ...]]`).
fn map(v: &serde_json::Value) -> BTreeMap<String, String> {
    v[1].as_array()
        .into_iter()
        .flatten()
        .filter_map(|kv| Some((kv[0].as_str()?.to_string(), kv[1].as_str()?.to_string())))
        .collect()
}

/// An OVSDB JSON set of UUIDs (one `["uuid", u]` or `["set", [...]]`).
fn uuids(v: &serde_json::Value) -> Vec<String> {
    match v[0].as_str() {
        Some("uuid") => v[1].as_str().map(str::to_string).into_iter().collect(),
        Some("set") => v[1]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u[1].as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn uuid_of(v: &serde_json::Value) -> String {
    v[1].as_str().unwrap_or_default().to_string()
}

const OWNER_KIND: &str = switchyard_api::names::OWNER_KIND;
const OWNER: &str = switchyard_api::names::OWNER;

/// NB holds exactly what the surviving Services and NetworkPolicies need:
/// load balancers `svc:<ns>/<name>:...` for every Service in the API and
/// no other, balancing to exactly its ready endpoints; allow ACLs owned by every NetworkPolicy in the API and no
/// other; one `PolicyPods` port group per policy (their selectors differ),
/// in the policies' namespaces, and each wave's group holding exactly the
/// live pods labelled with that wave.
pub fn check_nb_objects(sb: &Sandbox) -> Result<(), String> {
    let keys = |kind: Kind| -> BTreeSet<String> {
        sb.cluster()
            .list(kind)
            .iter()
            .map(|o| {
                let m = o.meta();
                format!(
                    "{}/{}",
                    m.namespace.clone().unwrap_or_default(),
                    m.name.clone().unwrap_or_default()
                )
            })
            .collect()
    };
    let services = keys(Kind::Service);
    let policies = keys(Kind::NetworkPolicy);
    // Service key -> the backends of its load balancers.
    let mut lbs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in nb_rows(sb, "Load_Balancer", "name,vips")? {
        let Some(rest) = r[0].as_str().and_then(|n| n.strip_prefix("svc:")) else {
            continue;
        };
        let key = rest.split(':').next().unwrap_or_default().to_string();
        let backends = lbs.entry(key).or_default();
        for (_, targets) in map(&r[1]) {
            for t in targets.split(',').filter(|t| !t.is_empty()) {
                let ip = t.rsplit_once(':').map_or(t, |(ip, _)| ip);
                backends.insert(ip.trim_matches(['[', ']']).to_string());
            }
        }
    }
    let lb_keys: BTreeSet<String> = lbs.keys().cloned().collect();
    if lb_keys != services {
        return Err(format!(
            "load balancers for {lb_keys:?}, but the API has Services {services:?}"
        ));
    }
    // Their backends: exactly the ready endpoints of the Service's
    // EndpointSlices (which the API keeps on the live pods).
    for (key, backends) in &lbs {
        let (ns, name) = key.split_once('/').unwrap_or_default();
        let want: BTreeSet<String> = sb
            .cluster()
            .list(Kind::EndpointSlice)
            .into_iter()
            .filter_map(|o| match o {
                Object::EndpointSlice(e) => Some(e),
                _ => None,
            })
            .filter(|e| {
                e.metadata.namespace.as_deref() == Some(ns)
                    && e.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("kubernetes.io/service-name"))
                        .map(String::as_str)
                        == Some(name)
            })
            .flat_map(|e| e.endpoints.clone())
            .filter(|ep| ep.conditions.as_ref().and_then(|c| c.ready) != Some(false))
            .flat_map(|ep| ep.addresses)
            .collect();
        if *backends != want {
            return Err(format!(
                "Service {key}: load balancer backends {backends:?}, ready endpoints {want:?}"
            ));
        }
    }
    let acl_owners: BTreeSet<String> = nb_rows(sb, "ACL", "external_ids")?
        .iter()
        .map(|r| map(&r[0]))
        .filter(|ids| ids.get(OWNER_KIND).map(String::as_str) == Some("NetworkPolicy"))
        .filter_map(|ids| ids.get(OWNER).cloned())
        .collect();
    if acl_owners != policies {
        return Err(format!(
            "allow ACLs of {acl_owners:?}, but the API has NetworkPolicies {policies:?}"
        ));
    }
    let ports: BTreeMap<String, String> = nb_rows(sb, "Logical_Switch_Port", "_uuid,name")?
        .iter()
        .map(|r| {
            (
                uuid_of(&r[0]),
                r[1].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let groups: Vec<(BTreeMap<String, String>, BTreeSet<String>)> =
        nb_rows(sb, "Port_Group", "external_ids,ports")?
            .iter()
            .map(|r| {
                let members = uuids(&r[1])
                    .iter()
                    .filter_map(|u| ports.get(u).cloned())
                    .collect();
                (map(&r[0]), members)
            })
            .filter(|(ids, _)| ids.get(OWNER_KIND).map(String::as_str) == Some("PolicyPods"))
            .collect();
    if groups.len() != policies.len() {
        return Err(format!(
            "{} PolicyPods port groups for {} NetworkPolicies ({:?})",
            groups.len(),
            policies.len(),
            groups
                .iter()
                .map(|(ids, _)| ids.get(OWNER))
                .collect::<Vec<_>>()
        ));
    }
    let live = sb.cluster().pods();
    for (ids, members) in &groups {
        let owner = ids.get(OWNER).cloned().unwrap_or_default();
        let ns = owner.split('/').next().unwrap_or_default();
        if !policies.iter().any(|p| p.starts_with(&format!("{ns}/"))) {
            return Err(format!("port group of {owner} outlived its policies"));
        }
        let selector = ids
            .get(switchyard_api::names::SELECTOR)
            .cloned()
            .unwrap_or_default();
        let Some(wave) = selector.strip_prefix("wave=") else {
            continue;
        };
        let want: BTreeSet<String> = live
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(NS))
            .filter(|p| {
                p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("wave"))
                    .map(String::as_str)
                    == Some(wave)
            })
            .filter_map(|p| p.metadata.name.as_ref().map(|n| format!("{NS}_{n}")))
            .collect();
        if *members != want {
            return Err(format!(
                "port group of wave {wave} holds {members:?}, the pods labelled so are {want:?}"
            ));
        }
    }
    Ok(())
}

/// Polls [`check_nb_objects`] until it passes; panics with the last finding.
pub fn assert_nb_objects(sb: &Sandbox, timeout: Duration) {
    let mut last = String::new();
    let ok =
        switchyard_e2e::util::wait_for(timeout, "NB to match the Services and policies", || {
            match check_nb_objects(sb) {
                Ok(()) => Some(()),
                Err(e) => {
                    last = e;
                    None
                }
            }
        });
    if ok.is_err() {
        panic!(
            "NB does not match the API's Services and NetworkPolicies after {timeout:?}: {last}"
        );
    }
}
