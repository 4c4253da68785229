//! The install (`manifests/`), checked without an API server:
//!
//! - `kubectl kustomize` renders the base and every overlay;
//! - every rendered object is its k8s-openapi type, strictly: re-serialised
//!   it must equal the input, so a misspelt or misplaced field fails;
//! - every container's command line is accepted by the parser of the
//!   program it names: the controller's and the node agent's own clap
//!   parsers (with the container's environment, ConfigMap keys and
//!   downward-API fields resolved as the kubelet would), the controller's
//!   config loader on the mounted ConfigMap, and the image's scripts;
//! - references hold: ServiceAccounts, ConfigMaps and keys, bindings, probes
//!   and ports, selectors, the ranges the controller and the node agents and
//!   the kind cluster must agree on;
//! - the image's scripts do what the manifests rely on: the OVN central
//!   entrypoint forms a 3-member RAFT cluster on loopback addresses and
//!   members that lost their disk rejoin it; the node's Open vSwitch
//!   database starts; the CNI plugin installs;
//! - `docs/metrics.md` lists exactly the metrics both binaries expose.
//!
//! Needs `kubectl` (for `kubectl kustomize`), and for the script tests
//! `bash` and Debian's openvswitch-switch and ovn-central (as
//! `e2e/scripts/install-deps` installs). A missing tool fails the test.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

mod support;
use support::*;

// ---------------------------------------------------------------------------
// Strict typing.

/// Differences between what was written and what the typed object holds,
/// as JSON paths. Numbers compare by value (`1` and `1.0` are equal).
fn json_diff(input: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => json_diff(v, w, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}: not a field of the type")),
                }
            }
            for k in b.keys().filter(|k| !a.contains_key(*k)) {
                out.push(format!("{path}.{k}: added by the type"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                out.push(format!("{path}: {} items became {}", a.len(), b.len()));
            }
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                json_diff(v, w, &format!("{path}[{i}]"), out);
            }
        }
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{path}: {a} became {b}")),
    }
}

fn strict<K: DeserializeOwned + Serialize>(obj: &Value) -> Result<(), String> {
    let typed: K = serde_json::from_value(obj.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut diffs = Vec::new();
    json_diff(obj, &back, "", &mut diffs);
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("; "))
    }
}

/// Deserialises `obj` into the k8s-openapi type its apiVersion and kind
/// name, strictly.
fn check_typed(obj: &Value) -> Result<(), String> {
    macro_rules! dispatch {
        ($($t:ty),* $(,)?) => {{
            $(
                if obj["apiVersion"] == <$t as k8s_openapi::Resource>::API_VERSION
                    && obj["kind"] == <$t as k8s_openapi::Resource>::KIND
                {
                    return strict::<$t>(obj);
                }
            )*
            Err(format!("no k8s-openapi type checked for {} {}", obj["apiVersion"], obj["kind"]))
        }};
    }
    dispatch!(
        Namespace,
        ServiceAccount,
        ConfigMap,
        Service,
        Deployment,
        DaemonSet,
        StatefulSet,
        PodDisruptionBudget,
        ClusterRole,
        ClusterRoleBinding,
        Role,
        RoleBinding,
        CustomResourceDefinition,
    )
}

#[test]
fn every_overlay_is_tested() {
    let listed: BTreeSet<String> = RENDERINGS.iter().map(|s| s.to_string()).collect();
    for entry in std::fs::read_dir(repo().join("manifests/overlays")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let dir = format!("manifests/overlays/{name}");
        assert!(listed.contains(&dir), "{dir} is not in RENDERINGS");
    }
}

#[test]
fn every_rendered_object_is_its_type_strictly() {
    for dir in RENDERINGS {
        let r = Rendered::new(dir);
        assert!(
            r.objects.len() >= 20,
            "{dir}: only {} objects",
            r.objects.len()
        );
        let mut names = BTreeSet::new();
        for obj in &r.objects {
            let id = format!(
                "{} {}/{}",
                obj["kind"],
                obj["metadata"]["namespace"].as_str().unwrap_or("-"),
                obj["metadata"]["name"].as_str().unwrap_or("?")
            );
            if let Err(e) = check_typed(obj) {
                panic!("{dir}: {id}: {e}");
            }
            assert!(names.insert(id.clone()), "{dir}: {id} twice");
        }
    }
}

#[test]
fn the_strict_check_rejects_a_misspelt_field() {
    let r = Rendered::new("manifests/base");
    let mut dep = r
        .objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("a Deployment")
        .clone();
    assert!(check_typed(&dep).is_ok());
    dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always".into();
    let err = check_typed(&dep).expect_err("a misspelt field must fail");
    assert!(err.contains("imagePullPolcy"), "{err}");
    let mut dep2 = dep.clone();
    dep2["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("imagePullPolcy");
    dep2["spec"]["replicas"] = "two".into();
    assert!(check_typed(&dep2).is_err(), "a string where an int belongs");
    let mut weird = dep2.clone();
    weird["kind"] = "Deploymint".into();
    assert!(check_typed(&weird).is_err(), "an unknown kind");
}

#[test]
fn everything_namespaced_is_in_the_switchyard_namespace() {
    let cluster_scoped = [
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
    ];
    for dir in RENDERINGS {
        let r = Rendered::new(dir);
        let ns: Vec<Namespace> = r.all();
        assert_eq!(ns.len(), 1, "{dir}");
        assert_eq!(ns[0].metadata.name.as_deref(), Some(NAMESPACE));
        for obj in &r.objects {
            let kind = obj["kind"].as_str().unwrap();
            let got = obj["metadata"]["namespace"].as_str();
            if cluster_scoped.contains(&kind) {
                assert_eq!(got, None, "{dir}: {kind} is cluster-scoped");
            } else {
                assert_eq!(
                    got,
                    Some(NAMESPACE),
                    "{dir}: {kind} {}",
                    obj["metadata"]["name"]
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// ---------------------------------------------------------------------------
// Command lines.

/// The image's scripts and what their first argument may be.
fn script_subcommands(script: &str) -> Option<&'static [&'static str]> {
    match script {
        "switchyard-ovn-central" => Some(&["nb", "sb", "northd", "probe", "alive"]),
        "switchyard-ovs" => Some(&[
            "ovsdb-server",
            "ovs-vswitchd",
            "ovn-controller",
            "probe",
            "alive",
        ]),
        "switchyard-install-cni" => Some(&[]),
        _ => None,
    }
}

/// Checks one command line from a container or an exec probe, run with
/// the container's environment `env`.
fn check_command(r: &Rendered, what: &str, args: &[String], env: &BTreeMap<String, String>) {
    let prog = args.first().map(String::as_str).unwrap_or_default();
    match prog {
        // Parsed in detail by the tests below; here: that they parse.
        "switchyard-controller" => {
            parse_like_the_binary::<switchyard_controller::config::Args>(args, env)
                .unwrap_or_else(|e| panic!("{}: {what}: {e}", r.dir));
        }
        "switchyard-node" => {
            parse_like_the_binary::<switchyard_node::cli::Args>(args, env)
                .unwrap_or_else(|e| panic!("{}: {what}: {e}", r.dir));
        }
        "test" => {}
        script => {
            let subs = script_subcommands(script).unwrap_or_else(|| {
                panic!(
                    "{}: {what} runs {script:?}, which the image does not have",
                    r.dir
                )
            });
            let file = repo().join("e2e/image/bin").join(script);
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(&file).unwrap().permissions(),
            );
            assert!(mode & 0o111 != 0, "{} is not executable", file.display());
            if script == "switchyard-install-cni" {
                assert_eq!(args.len(), 3, "{}: {what}: SOURCE DIR", r.dir);
                return;
            }
            let sub = args.get(1).map(String::as_str).unwrap_or_default();
            assert!(subs.contains(&sub), "{}: {what}: {script} {sub:?}", r.dir);
            if sub == "probe" || sub == "alive" {
                let of = args.get(2).map(String::as_str).unwrap_or_default();
                assert!(
                    subs.contains(&of) && !["probe", "alive"].contains(&of),
                    "{}: {what}: {script} {sub} {of:?}",
                    r.dir
                );
            }
        }
    }
}

#[test]
fn every_command_line_is_accepted_by_the_program_it_names() {
    let mut seen = BTreeSet::new();
    for dir in RENDERINGS {
        let r = Rendered::new(dir);
        for (workload, tpl) in r.pod_templates() {
            let spec = tpl.spec.expect("pod spec");
            for c in spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
            {
                let args = argv(&r, c);
                let env = container_env(&r, c);
                assert!(!args.is_empty(), "{dir}: {workload}/{}: no command", c.name);
                check_command(&r, &format!("{workload}/{}", c.name), &args, &env);
                seen.insert(args[0].clone());
                for p in [&c.readiness_probe, &c.liveness_probe, &c.startup_probe]
                    .into_iter()
                    .flatten()
                {
                    if let Some(e) = &p.exec {
                        let cmd = e.command.clone().unwrap_or_default();
                        check_command(&r, &format!("{workload}/{} probe", c.name), &cmd, &env);
                    }
                }
            }
        }
    }
    for prog in [
        "switchyard-controller",
        "switchyard-node",
        "switchyard-install-cni",
        "switchyard-ovn-central",
        "switchyard-ovs",
    ] {
        assert!(seen.contains(prog), "no container runs {prog}");
    }
}

#[test]
fn the_parsers_reject_what_they_should() {
    // So that "accepted" above means something.
    let env = BTreeMap::new();
    let bad = ["switchyard-node".to_string(), "--node-nam=x".to_string()];
    assert!(parse_like_the_binary::<switchyard_node::cli::Args>(&bad, &env).is_err());
    let missing = ["switchyard-node".to_string()];
    assert!(
        parse_like_the_binary::<switchyard_node::cli::Args>(&missing, &env).is_err(),
        "--node-name is required and the test process's NODE_NAME must not count"
    );
    let mut env = BTreeMap::new();
    env.insert("NODE_NAME".to_string(), "n1".to_string());
    let a: switchyard_node::cli::Args = parse_like_the_binary(&missing, &env).unwrap();
    assert_eq!(a.node_name, "n1", "the container's NODE_NAME counts");
    let bad = [
        "switchyard-controller".to_string(),
        "--leader-elect=maybe".to_string(),
    ];
    assert!(
        parse_like_the_binary::<switchyard_controller::config::Args>(&bad, &BTreeMap::new())
            .is_err()
    );
    assert!(expand("--x=$(NOPE)", &BTreeMap::new()).is_err());
    assert_eq!(expand("a$$(B)c", &BTreeMap::new()).unwrap(), "a$(B)c");
}

#[test]
fn the_controller_runs_as_configured() {
    for dir in RENDERINGS {
        let r = Rendered::new(dir);
        let cfg = controller_config(&r);
        let central = r.config_map("ovn-central");
        assert_eq!(cfg.nb_remote, central["nb-remote"], "{dir}: NB remote");
        assert!(cfg.leader_election.enabled, "{dir}: leader election");
        assert_eq!(cfg.leader_election.identity, "<fieldRef:metadata.name>");
        assert_eq!(
            cfg.leader_election.namespace,
            "<fieldRef:metadata.namespace>"
        );
        // The Role lets it use exactly that lease.
        let role: Role = r.one("switchyard-controller-leader-election");
        let named: Vec<&PolicyRule> = role
            .rules
            .iter()
            .flatten()
            .filter(|rule| rule.resource_names.is_some())
            .collect();
        assert!(named
            .iter()
            .all(|rule| rule.resource_names.as_ref().unwrap()
                == &vec![cfg.leader_election.lease_name.clone()]));
        // Probes and ports.
        let spec = r.pod_spec("Deployment/switchyard-controller");
        let c = container(&spec, "controller");
        let http = cfg.http_addr.expect("the controller serves HTTP");
        assert_eq!(http.port() as i32, container_port(c, "http"), "{dir}");
        assert_eq!(
            http_get_target(c.liveness_probe.as_ref().unwrap()),
            ("/healthz".to_string(), "http".to_string())
        );
        assert_eq!(
            http_get_target(c.startup_probe.as_ref().unwrap()),
            ("/healthz".to_string(), "http".to_string())
        );
        assert_eq!(
            http_get_target(c.readiness_probe.as_ref().unwrap()),
            ("/readyz".to_string(), "http".to_string())
        );
        let dep: Deployment = r.one("switchyard-controller");
        let ds = dep.spec.unwrap();
        assert_eq!(ds.replicas, Some(2), "{dir}");
        assert_eq!(
            spec.priority_class_name.as_deref(),
            Some("system-cluster-critical")
        );
        assert_eq!(
            spec.host_network,
            Some(true),
            "there is no pod network before it runs"
        );
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(
            spec.security_context.as_ref().unwrap().run_as_non_root,
            Some(true)
        );
    }
}

#[test]
fn the_controller_config_file_has_no_unknown_keys() {
    fn unknown(input: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
        if let (Value::Object(a), Value::Object(b)) = (input, known) {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => unknown(v, w, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}")),
                }
            }
        }
    }
    let check = |text: &str| -> Vec<String> {
        let cfg = switchyard_controller::Config::from_yaml(text).expect("loads");
        let input: Value = serde_yaml_ng::from_str(text).unwrap();
        let known = serde_json::to_value(&cfg).unwrap();
        let mut out = Vec::new();
        unknown(&input, &known, "", &mut out);
        out
    };
    for dir in RENDERINGS {
        let r = Rendered::new(dir);
        let text = &r.config_map("switchyard-controller")["controller.yaml"];
        let bad = check(text);
        assert!(
            bad.is_empty(),
            "{dir}: controller.yaml keys the controller ignores: {bad:?}"
        );
    }
    // The check itself: the loader ignores a misspelt key, this does not.
    assert_eq!(
        check("mtu: 1400\nclusterCIDRs: [\"10.1.0.0/16\"]\n"),
        vec![".clusterCIDRs"]
    );
}

#[test]
fn the_node_agent_runs_as_configured() {
    for dir in RENDERINGS {
        let r = Rendered::new(dir);
        let a = node_args(&r);
        let cfg = controller_config(&r);
        assert_eq!(a.node_name, "<fieldRef:spec.nodeName>", "{dir}");
        assert_eq!(
            a.encap_ip.as_deref(),
            Some("<fieldRef:status.hostIP>"),
            "{dir}"
        );
        assert_eq!(
            a.sb_remote.as_deref(),
            Some(r.config_map("ovn-central")["sb-remote"].as_str())
        );
        assert_eq!(
            a.nb_remote.as_deref(),
            Some(r.config_map("ovn-central")["nb-remote"].as_str()),
            "{dir}: the per-policy counters read the controller's NB"
        );
        assert_eq!(a.pod_source, "kube");
        assert!(!a.no_install, "{dir}: the agent writes the conflist");
        assert!(
            !a.no_health_check_ports,
            "{dir}: the agent answers healthCheckNodePorts (no kube-proxy)"
        );
        let controller_cidrs: Vec<ipnet::IpNet> =
            cfg.cluster_cidrs.iter().map(|c| c.cidr).collect();
        assert_eq!(
            a.cluster_cidrs, controller_cidrs,
            "{dir}: agent and controller pod ranges"
        );
        assert_eq!(Some(a.mtu), cfg.mtu, "{dir}: MTU");
        let spec = r.pod_spec("DaemonSet/switchyard-node");
        let c = container(&spec, "switchyard-node");
        assert_eq!(
            a.metrics_address.map(|m| m.port() as i32),
            Some(container_port(c, "metrics"))
        );
        // The runtime, on the host, finds the socket, the plugin and the
        // conflist where the agent puts them.
        let host = |p: &Path| {
            host_path_of(&spec, c, p)
                .unwrap_or_else(|| panic!("{dir}: {} is not on the host", p.display()))
        };
        assert_eq!(
            host(&a.socket),
            a.socket,
            "{dir}: the CNI socket's host path"
        );
        assert_eq!(host(&a.cni_conf_dir), PathBuf::from("/etc/cni/net.d"));
        assert_eq!(host(&a.cni_bin_dir), PathBuf::from("/opt/cni/bin"));
        assert_eq!(host(Path::new("/run/netns")), PathBuf::from("/run/netns"));
        let ovs_sock = a
            .ovs_remote
            .strip_prefix("unix:")
            .expect("a unix OVS remote");
        assert_eq!(host(Path::new(ovs_sock)), PathBuf::from(ovs_sock));
        let ready = c.readiness_probe.as_ref().unwrap().exec.as_ref().unwrap();
        assert_eq!(
            ready.command.as_ref().unwrap().last().map(PathBuf::from),
            Some(a.cni_conf_dir.join("10-switchyard.conflist")),
            "{dir}: readiness is the conflist the agent writes"
        );
        // The init container installs the plugin into the same host directory.
        let init = container(&spec, "install-cni");
        let args = argv(&r, init);
        assert_eq!(
            args[1], "/usr/local/bin/switchyard-cni",
            "where the Containerfile puts it"
        );
        assert_eq!(
            host_path_of(&spec, init, Path::new(&args[2])),
            Some(PathBuf::from("/opt/cni/bin"))
        );
    }
}

#[test]
fn the_node_daemonset_covers_every_node() {
    for dir in RENDERINGS {
        let r = Rendered::new(dir);
        let ds: DaemonSet = r.one("switchyard-node");
        let s = ds.spec.unwrap();
        let ru = s.update_strategy.unwrap().rolling_update.unwrap();
        assert_eq!(
            ru.max_unavailable,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
        );
        let spec = s.template.spec.unwrap();
        assert!(
            spec.tolerations
                .iter()
                .flatten()
                .any(|t| t.operator.as_deref() == Some("Exists")
                    && t.key.is_none()
                    && t.effect.is_none()),
            "{dir}: tolerates every taint"
        );
        assert_eq!(
            spec.priority_class_name.as_deref(),
            Some("system-node-critical")
        );
        assert_eq!(spec.host_network, Some(true));
        let host_paths: BTreeSet<String> = spec
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| v.host_path.as_ref().map(|h| h.path.clone()))
            .collect();
        for p in [
            "/var/run/openvswitch",
            "/var/run/ovn",
            "/opt/cni/bin",
            "/etc/cni/net.d",
            "/run/netns",
        ] {
            assert!(host_paths.contains(p), "{dir}: no host path {p}");
        }
        let names: BTreeSet<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
        let own_ovs = names.contains("ovsdb-server") && names.contains("ovs-vswitchd");
        assert_eq!(
            own_ovs,
            *dir != "manifests/overlays/host-ovs",
            "{dir}: {names:?}"
        );
        assert!(
            names.contains("ovn-controller") && names.contains("switchyard-node"),
            "{dir}"
        );
        // Every mount has its volume.
        let vols: BTreeSet<&str> = spec
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            for m in c.volume_mounts.iter().flatten() {
                assert!(
                    vols.contains(m.name.as_str()),
                    "{dir}: {} mounts {}",
                    c.name,
                    m.name
                );
            }
        }
    }
}

#[test]
fn ovn_central_members_remotes_and_replicas_agree() {
    for dir in RENDERINGS {
        let r = Rendered::new(dir);
        let cm = r.config_map("ovn-central");
        let members: Vec<&str> = cm["members"].split_whitespace().collect();
        assert!(!members.is_empty());
        let remote = |port: u16| {
            members
                .iter()
                .map(|m| format!("tcp:{m}:{port}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(cm["nb-remote"], remote(6641), "{dir}");
        assert_eq!(cm["sb-remote"], remote(6642), "{dir}");
        let sts: StatefulSet = r.one("ovn-central");
        let s = sts.spec.unwrap();
        assert_eq!(
            s.replicas,
            Some(members.len() as i32),
            "{dir}: one member per replica"
        );
        assert_eq!(s.pod_management_policy.as_deref(), Some("Parallel"));
        let spec = s.template.spec.unwrap();
        assert_eq!(spec.host_network, Some(true));
        for (name, port, raft) in [("nb", 6641, 6643), ("sb", 6642, 6644)] {
            let c = container(&spec, name);
            assert_eq!(
                argv(&r, c),
                vec!["switchyard-ovn-central".to_string(), name.to_string()]
            );
            assert_eq!(container_port(c, name), port, "the script's default");
            assert_eq!(container_port(c, &format!("{name}-raft")), raft);
            let env = container_env(&r, c);
            assert_eq!(env["NODE_NAME"], "<fieldRef:spec.nodeName>");
            assert_eq!(env["OVN_CENTRAL_MEMBERS"], cm["members"]);
        }
        let northd = container(&spec, "northd");
        let env = container_env(&r, northd);
        assert_eq!(env["OVN_NB_REMOTE"], cm["nb-remote"]);
        assert_eq!(env["OVN_SB_REMOTE"], cm["sb-remote"]);
        // Services reach the central pods.
        let labels = s.template.metadata.unwrap().labels.unwrap();
        for svc in ["ovn-central", "ovn-nb", "ovn-sb"] {
            let svc: Service = r.one(svc);
            let sel = svc.spec.unwrap().selector.unwrap();
            assert!(sel.iter().all(|(k, v)| labels.get(k) == Some(v)), "{dir}");
        }
        assert_eq!(s.service_name.as_deref(), Some("ovn-central"));
    }
}

#[test]
fn disruption_budgets_select_their_pods() {
    for dir in RENDERINGS {
        let r = Rendered::new(dir);
        let templates = r.pod_templates();
        let pdbs: Vec<PodDisruptionBudget> = r.all();
        assert_eq!(pdbs.len(), 2, "{dir}");
        for pdb in pdbs {
            let sel = pdb.spec.unwrap().selector.unwrap().match_labels.unwrap();
            let hits = templates
                .iter()
                .filter(|(_, t)| {
                    let l = t
                        .metadata
                        .as_ref()
                        .unwrap()
                        .labels
                        .clone()
                        .unwrap_or_default();
                    sel.iter().all(|(k, v)| l.get(k) == Some(v))
                })
                .count();
            assert_eq!(hits, 1, "{dir}: PDB {:?}", pdb.metadata.name);
        }
    }
}

// ---------------------------------------------------------------------------
// RBAC.

#[test]
fn service_accounts_exist_and_every_role_is_bound() {
    for dir in RENDERINGS {
        let r = Rendered::new(dir);
        let sas: BTreeSet<String> = r
            .all::<ServiceAccount>()
            .into_iter()
            .map(|s| s.metadata.name.unwrap())
            .collect();
        for (workload, tpl) in r.pod_templates() {
            let sa = tpl
                .spec
                .unwrap()
                .service_account_name
                .expect("explicit ServiceAccount");
            assert!(
                sas.contains(&sa),
                "{dir}: {workload} uses missing ServiceAccount {sa}"
            );
        }
        let cluster_roles: BTreeSet<String> = r
            .all::<ClusterRole>()
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect();
        let roles: BTreeSet<String> = r
            .all::<Role>()
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect();
        let mut bound = BTreeSet::new();
        let check_subjects = |subjects: Option<Vec<k8s_openapi::api::rbac::v1::Subject>>| {
            for s in subjects.into_iter().flatten() {
                assert_eq!(s.kind, "ServiceAccount", "{dir}");
                assert_eq!(s.namespace.as_deref(), Some(NAMESPACE), "{dir}");
                assert!(
                    sas.contains(&s.name),
                    "{dir}: binding to missing ServiceAccount {}",
                    s.name
                );
            }
        };
        for b in r.all::<ClusterRoleBinding>() {
            assert_eq!(b.role_ref.kind, "ClusterRole");
            assert!(
                cluster_roles.contains(&b.role_ref.name),
                "{dir}: {}",
                b.role_ref.name
            );
            bound.insert(("ClusterRole", b.role_ref.name.clone()));
            check_subjects(b.subjects);
        }
        for b in r.all::<RoleBinding>() {
            let set = if b.role_ref.kind == "Role" {
                &roles
            } else {
                &cluster_roles
            };
            assert!(set.contains(&b.role_ref.name), "{dir}: {}", b.role_ref.name);
            bound.insert((
                if b.role_ref.kind == "Role" {
                    "Role"
                } else {
                    "ClusterRole"
                },
                b.role_ref.name.clone(),
            ));
            check_subjects(b.subjects);
        }
        for c in &cluster_roles {
            assert!(
                bound.contains(&("ClusterRole", c.clone())),
                "{dir}: ClusterRole {c} is not bound"
            );
        }
        for c in &roles {
            assert!(
                bound.contains(&("Role", c.clone())),
                "{dir}: Role {c} is not bound"
            );
        }
        // The OVN central pods have no API access at all.
        let central = r.pod_spec("StatefulSet/ovn-central");
        assert_eq!(central.automount_service_account_token, Some(false));
    }
}

// What each role grants is checked against the calls the controller and
// the node agent make, recorded while tests drive them: `tests/rbac.rs`.

// ---------------------------------------------------------------------------
// CRDs.

#[test]
fn the_policy_crds_describe_the_v1alpha1_api() {
    let r = Rendered::new("manifests/base");
    for (name, kind, actions, has_priority) in [
        (
            "adminnetworkpolicies.policy.networking.k8s.io",
            "AdminNetworkPolicy",
            vec!["Allow", "Deny", "Pass"],
            true,
        ),
        (
            "baselineadminnetworkpolicies.policy.networking.k8s.io",
            "BaselineAdminNetworkPolicy",
            vec!["Allow", "Deny"],
            false,
        ),
    ] {
        let crd: CustomResourceDefinition = r.one(name);
        let s = crd.spec;
        assert_eq!(s.group, "policy.networking.k8s.io");
        assert_eq!(s.scope, "Cluster");
        assert_eq!(s.names.kind, kind);
        assert_eq!(s.versions.len(), 1);
        let v = &s.versions[0];
        assert_eq!(
            (v.name.as_str(), v.served, v.storage),
            ("v1alpha1", true, true)
        );
        assert!(v.subresources.as_ref().unwrap().status.is_some());
        let schema = serde_json::to_value(
            v.schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        let spec = &schema["properties"]["spec"]["properties"];
        if has_priority {
            assert_eq!(spec["priority"]["minimum"].as_f64(), Some(0.0));
            assert_eq!(spec["priority"]["maximum"].as_f64(), Some(1000.0));
        } else {
            assert!(spec["priority"].is_null());
        }
        let subject = &spec["subject"]["properties"];
        assert!(
            subject["namespaces"].is_object()
                && subject["pods"]["properties"]["podSelector"].is_object()
        );
        for (dir, peers) in [("ingress", "from"), ("egress", "to")] {
            let rule = &spec[dir]["items"]["properties"];
            let got: Vec<&str> = rule["action"]["enum"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            assert_eq!(got, actions, "{kind} {dir}");
            let peer = &rule[peers]["items"]["properties"];
            let mut kinds: Vec<&str> = peer
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            kinds.sort();
            let want: &[&str] = if dir == "egress" {
                &["namespaces", "networks", "nodes", "pods"]
            } else {
                &["namespaces", "pods"]
            };
            assert_eq!(kinds, want, "{kind} {dir} peers");
            let port = &rule["ports"]["items"]["properties"];
            for f in ["portNumber", "namedPort", "portRange"] {
                assert!(port[f].is_object(), "{kind} {dir} ports.{f}");
            }
        }
        assert!(schema["properties"]["status"]["properties"]["conditions"].is_object());
    }
}

// ---------------------------------------------------------------------------
// kind.

#[test]
fn the_kind_overlay_fits_the_kind_cluster() {
    let text = std::fs::read_to_string(repo().join("e2e/kind/kind-config.yaml")).unwrap();
    let kind: Value = serde_yaml_ng::from_str(&text).unwrap();
    let net = &kind["networking"];
    assert_eq!(net["disableDefaultCNI"], true);
    assert_eq!(net["kubeProxyMode"], "none");
    let r = Rendered::new("manifests/overlays/kind");
    let cfg = controller_config(&r);
    assert_eq!(cfg.cluster_cidrs.len(), 1);
    assert_eq!(
        cfg.cluster_cidrs[0].cidr.to_string(),
        net["podSubnet"].as_str().unwrap()
    );
    assert_eq!(cfg.service_cidrs.len(), 1);
    assert_eq!(
        cfg.service_cidrs[0].to_string(),
        net["serviceSubnet"].as_str().unwrap()
    );
    // Central on the control-plane node, reached by its name; the API
    // server likewise, since without kube-proxy no Service IP answers yet.
    let control_plane = format!("{}-control-plane", kind["name"].as_str().unwrap());
    assert_eq!(r.config_map("ovn-central")["members"], control_plane);
    for (workload, name) in [
        ("Deployment/switchyard-controller", "controller"),
        ("DaemonSet/switchyard-node", "switchyard-node"),
    ] {
        let spec = r.pod_spec(workload);
        let env = container_env(&r, container(&spec, name));
        assert_eq!(
            env.get("KUBERNETES_SERVICE_HOST"),
            Some(&control_plane),
            "{workload}"
        );
        assert_eq!(
            env.get("KUBERNETES_SERVICE_PORT").map(String::as_str),
            Some("6443")
        );
    }
    // The image the kind harness loads.
    let run = std::fs::read_to_string(repo().join("e2e/kind/run")).unwrap();
    for (_, tpl) in r.pod_templates() {
        let spec = tpl.spec.unwrap();
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            let image = c.image.as_deref().unwrap();
            assert_eq!(image, "switchyard:dev");
            assert!(run.contains(&format!("kind load docker-image {image}")));
            assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
        }
    }
}

#[test]
fn the_base_names_the_image_the_build_script_tags() {
    let cargo = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("workspace version");
    let r = Rendered::new("manifests/base");
    for (_, tpl) in r.pod_templates() {
        for c in tpl.spec.unwrap().containers {
            assert_eq!(
                c.image.as_deref(),
                Some(format!("switchyard:{version}").as_str())
            );
        }
    }
    let build = std::fs::read_to_string(repo().join("e2e/image/build")).unwrap();
    assert!(build.contains("-t \"switchyard:$version\""));
}

#[test]
fn dual_stack_gives_both_families_to_controller_and_agents() {
    let r = Rendered::new("manifests/overlays/dual-stack");
    let cfg = controller_config(&r);
    let families = |v: Vec<bool>| {
        (
            v.iter().filter(|x| **x).count(),
            v.iter().filter(|x| !**x).count(),
        )
    };
    assert_eq!(
        families(
            cfg.cluster_cidrs
                .iter()
                .map(|c| c.cidr.addr().is_ipv4())
                .collect()
        ),
        (1, 1)
    );
    assert_eq!(
        families(
            cfg.service_cidrs
                .iter()
                .map(|c| c.addr().is_ipv4())
                .collect()
        ),
        (1, 1)
    );
    assert_eq!(node_args(&r).cluster_cidrs.len(), 2);
}

// ---------------------------------------------------------------------------
// Metrics documentation.

/// The metrics of an exposition by the name one queries (`# TYPE` lines;
/// counters with their `_total` suffix), with their type and label names.
fn families(text: &str) -> BTreeMap<String, (String, BTreeSet<String>)> {
    let mut out = BTreeMap::new();
    let mut family = String::new();
    for l in text.lines() {
        if let Some(t) = l.strip_prefix("# TYPE ") {
            let mut w = t.split_whitespace();
            let (name, ty) = (w.next().unwrap(), w.next().unwrap());
            assert!(!name.ends_with("_total"), "{name}: the library adds _total");
            family = if ty == "counter" {
                format!("{name}_total")
            } else {
                name.to_string()
            };
            out.insert(family.clone(), (ty.to_string(), BTreeSet::new()));
        } else if let Some((_, labels)) = l.split_once('{').filter(|_| !l.starts_with('#')) {
            let labels = labels.split_once('}').unwrap().0;
            let set = &mut out.get_mut(&family).unwrap().1;
            for pair in labels.split(',').filter(|p| !p.is_empty()) {
                let key = pair.split_once('=').unwrap().0;
                if key != "le" {
                    set.insert(key.to_string());
                }
            }
        }
    }
    out
}

/// The label names in a labels cell: backticked words outside parentheses.
fn label_names(cell: &str) -> BTreeSet<String> {
    let mut depth = 0;
    let mut outside = String::new();
    for ch in cell.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            c if depth == 0 => outside.push(c),
            _ => {}
        }
    }
    outside
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn docs_metrics_lists_every_metric_exactly() {
    // Labelled families show only once they have a child: give each one.
    let c = switchyard_controller::Metrics::new();
    let cidr = vec![("cidr".to_string(), "10.244.0.0/16".to_string())];
    c.node_subnets_used.get_or_create(&cidr).set(1);
    c.node_subnets_capacity.get_or_create(&cidr).set(256);
    let n = switchyard_node::metrics::Metrics::new();
    n.observe_request("ADD", "ok", Duration::from_millis(3));
    n.observe_add_phase("veth", Duration::from_millis(1));
    n.health_check_error("listen");
    n.policy_counters().publish(BTreeMap::from([(
        switchyard_node::policy_metrics::SeriesKey {
            kind: "NetworkPolicy".into(),
            namespace: "ns".into(),
            policy: "p".into(),
            direction: "Ingress".into(),
            rule: "0".into(),
            action: "allow".into(),
        },
        switchyard_node::policy_metrics::Totals::default(),
    )]));
    let mut exposed = families(&c.encode());
    exposed.extend(families(&n.encode()));
    assert!(exposed.len() >= 17, "{exposed:?}");
    let doc = std::fs::read_to_string(repo().join("docs/metrics.md")).unwrap();
    // Table rows: | `name` | type | labels | meaning |
    let documented: BTreeMap<String, (String, BTreeSet<String>)> = doc
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let ty = cells.get(2)?;
            let labels = label_names(cells.get(3)?);
            name.starts_with("switchyard_")
                .then(|| (name.to_string(), (ty.to_string(), labels)))
        })
        .collect();
    let missing: Vec<_> = exposed
        .keys()
        .filter(|k| !documented.contains_key(*k))
        .collect();
    let stale: Vec<_> = documented
        .keys()
        .filter(|k| !exposed.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "undocumented: {missing:?}; documented but not exposed: {stale:?}"
    );
    for (name, got) in &exposed {
        assert_eq!(
            &documented[name], got,
            "{name}: type and labels as documented"
        );
        let ty = &got.0;
        // Prometheus conventions: a unit suffix on durations, counters end in _total.
        if ty == "counter" {
            assert!(name.ends_with("_total"), "{name}");
        }
        if name.contains("duration") || name.contains("latency") || name.contains("wait") {
            assert!(name.ends_with("_seconds"), "{name}");
        }
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert!(
            doc.contains(path),
            "docs/metrics.md does not describe {path}"
        );
    }
}

// ---------------------------------------------------------------------------
// The image's scripts, run here.

fn script(name: &str) -> PathBuf {
    repo().join("e2e/image/bin").join(name)
}

/// A script run in its own process group, ended (the group) on drop.
struct Running {
    child: Child,
    stopped: bool,
}

impl Running {
    fn start(name: &str, args: &[&str], env: &[(&str, String)], log: &Path) -> Self {
        use std::os::unix::process::CommandExt;
        let out = std::fs::File::create(log).unwrap();
        let err = out.try_clone().unwrap();
        let mut cmd = Command::new(bash());
        cmd.arg(script(name))
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Running {
            child: cmd.spawn().expect("starting a script"),
            stopped: false,
        }
    }

    fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                // The script waited for its daemon; helpers end with it.
                std::thread::sleep(Duration::from_millis(200));
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run_script(name: &str, args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    let mut cmd = Command::new(bash());
    cmd.arg(script(name)).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running a script")
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("timed out waiting for {what}");
}

fn free_port() -> u16 {
    TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn require_ovs_tools() {
    for t in [
        "ovsdb-server",
        "ovsdb-tool",
        "ovsdb-client",
        "ovs-appctl",
        "ovs-vsctl",
    ] {
        find_tool(t, &[&format!("/usr/sbin/{t}"), &format!("/usr/bin/{t}")]);
    }
    assert!(
        Path::new("/usr/share/ovn/ovn-nb.ovsschema").is_file(),
        "Debian's ovn-central is not installed (e2e/scripts/install-deps)"
    );
}

#[test]
fn ovn_central_forms_a_raft_cluster_and_members_rejoin_after_losing_their_disk() {
    require_ovs_tools();
    let tmp = tempfile::tempdir().unwrap();
    let (port, raft) = (free_port(), free_port());
    let addrs = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];
    let members = addrs.join(" ");
    let dir = |i: usize| tmp.path().join(format!("m{i}"));
    // The environment the StatefulSet gives (NODE_NAME, OVN_CENTRAL_MEMBERS)
    // plus the private directories and ports this test needs.
    let env = |i: usize| -> Vec<(&'static str, String)> {
        vec![
            ("NODE_NAME", addrs[i].to_string()),
            ("OVN_CENTRAL_MEMBERS", members.clone()),
            ("OVN_CENTRAL_LISTEN", addrs[i].to_string()),
            ("OVN_DB_DIR", dir(i).display().to_string()),
            ("OVN_RUNDIR", dir(i).display().to_string()),
            ("OVN_NB_PORT", port.to_string()),
            ("OVN_NB_RAFT_PORT", raft.to_string()),
            ("OVN_CENTRAL_JOIN_WAIT", "30".to_string()),
        ]
    };
    let start = |i: usize, n: u32| {
        std::fs::create_dir_all(dir(i)).unwrap();
        Running::start(
            "switchyard-ovn-central",
            &["nb"],
            &env(i),
            &dir(i).join(format!("run{n}.log")),
        )
    };
    let ready = |i: usize| {
        run_script("switchyard-ovn-central", &["probe", "nb"], &env(i))
            .status
            .success()
    };
    let status = |i: usize| {
        let o = Command::new("ovs-appctl")
            .arg("-t")
            .arg(dir(i).join("ovnnb_db.ctl"))
            .args(["cluster/status", "OVN_Northbound"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let servers = |s: &str| {
        s.lines()
            .filter(|l| l.contains(&format!(":{raft})")))
            .count()
    };
    let cid = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("Cluster ID:"))
            .map(str::to_string)
    };
    let logs = || {
        (0..3)
            .flat_map(|i| std::fs::read_dir(dir(i)).into_iter().flatten())
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .map(|e| {
                format!(
                    "== {}\n{}",
                    e.path().display(),
                    std::fs::read_to_string(e.path()).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };

    let mut m: Vec<Running> = (0..3).map(|i| start(i, 0)).collect();
    let all_ready = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if (0..3).all(ready) && (0..3).all(|i| servers(&status(i)) == 3) {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!(
            "{what}: the cluster did not form:\n{}\n{}",
            status(0),
            logs()
        );
    };
    all_ready("first start");
    let first = cid(&status(0)).expect("a cluster ID");
    assert!(
        (0..3).all(|i| cid(&status(i)).as_ref() == Some(&first)),
        "one cluster"
    );
    let leaders = (0..3)
        .filter(|i| status(*i).contains("Role: leader"))
        .count();
    assert_eq!(leaders, 1);

    // A write through one member is read from another.
    let client = |i: usize| format!("tcp:{}:{port}", addrs[i]);
    let o = Command::new("ovsdb-client")
        .args(["transact", &client(1)])
        .arg(r#"["OVN_Northbound",{"op":"insert","table":"Logical_Switch","row":{"name":"sw0"}}]"#)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let has_sw0 = |i: usize| {
        let o = Command::new("ovsdb-client")
            .args([
                "dump",
                &client(i),
                "OVN_Northbound",
                "Logical_Switch",
                "name",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).contains("sw0")
    };
    wait_for("the write to replicate", Duration::from_secs(10), || {
        has_sw0(2)
    });

    // A joining member and then the first member lose their disk and come
    // back: they rejoin the same cluster, the stale server is removed, and
    // they catch up on the data.
    for (round, i) in [(1, 2), (2, 0)] {
        m[i].stop();
        std::fs::remove_file(dir(i).join("ovnnb_db.db")).unwrap();
        m[i] = start(i, round);
        all_ready(&format!("member {i} rejoining"));
        assert_eq!(
            cid(&status(i)).as_ref(),
            Some(&first),
            "member {i} joined the old cluster"
        );
        wait_for(
            "the rejoined member to catch up",
            Duration::from_secs(10),
            || has_sw0(i),
        );
    }
    // A member not in the list refuses to start.
    let mut stranger = env(0);
    stranger[0].1 = "127.0.0.9".to_string();
    let o = run_script("switchyard-ovn-central", &["nb"], &stranger);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not one of the OVN central members"));
    drop(m);
}

#[test]
fn the_node_open_vswitch_database_starts_and_answers_its_probe() {
    require_ovs_tools();
    let tmp = tempfile::tempdir().unwrap();
    let env = vec![
        ("OVS_DBDIR", tmp.path().display().to_string()),
        ("OVS_RUNDIR", tmp.path().display().to_string()),
    ];
    let probe = |env: &[(&str, String)]| {
        run_script("switchyard-ovs", &["probe", "ovsdb-server"], env)
            .status
            .success()
    };
    assert!(!probe(&env), "nothing runs yet");
    let _db = Running::start(
        "switchyard-ovs",
        &["ovsdb-server"],
        &env,
        &tmp.path().join("ovs.log"),
    );
    wait_for("ovsdb-server's probe", Duration::from_secs(20), || {
        probe(&env)
    });
    // `ovs-vsctl init` ran: the Open_vSwitch row exists for the agent to write.
    wait_for("the Open_vSwitch row", Duration::from_secs(10), || {
        Command::new("ovs-vsctl")
            .arg(format!("--db=unix:{}/db.sock", tmp.path().display()))
            .args(["--no-wait", "get", "Open_vSwitch", ".", "external_ids"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    });
}

#[test]
fn the_cni_plugin_installs_atomically() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("switchyard-cni");
    std::fs::write(&src, b"#!/bin/sh\necho plugin\n").unwrap();
    let run = |args: &[&str]| run_script("switchyard-install-cni", args, &[]);
    // Not executable: refused.
    assert!(!run(&[src.to_str().unwrap(), tmp.path().to_str().unwrap()])
        .status
        .success());
    std::fs::set_permissions(&src, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let dest = tmp.path().join("bin");
    assert!(
        !run(&[src.to_str().unwrap(), dest.to_str().unwrap()])
            .status
            .success(),
        "a missing host directory is an error, not a silent mkdir"
    );
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("switchyard-cni"), b"old").unwrap();
    let o = run(&[src.to_str().unwrap(), dest.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let installed = dest.join("switchyard-cni");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(&src).unwrap()
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&installed).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o755);
    let left: Vec<_> = std::fs::read_dir(&dest)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 1, "no temporary file left: {left:?}");
}

#[test]
fn ovn_northd_runs_active_against_the_central_databases() {
    require_ovs_tools();
    find_tool("ovn-northd", &["/usr/bin/ovn-northd"]);
    let tmp = tempfile::tempdir().unwrap();
    let (nb, sb, nb_raft, sb_raft) = (free_port(), free_port(), free_port(), free_port());
    let dir = tmp.path().display().to_string();
    // One member serving both databases, as the kind overlay runs them.
    let env: Vec<(&str, String)> = vec![
        ("NODE_NAME", "127.0.0.1".to_string()),
        ("OVN_CENTRAL_MEMBERS", "127.0.0.1".to_string()),
        ("OVN_CENTRAL_LISTEN", "127.0.0.1".to_string()),
        ("OVN_DB_DIR", dir.clone()),
        ("OVN_RUNDIR", dir.clone()),
        ("OVN_NB_PORT", nb.to_string()),
        ("OVN_SB_PORT", sb.to_string()),
        ("OVN_NB_RAFT_PORT", nb_raft.to_string()),
        ("OVN_SB_RAFT_PORT", sb_raft.to_string()),
        ("OVN_NB_REMOTE", format!("tcp:127.0.0.1:{nb}")),
        ("OVN_SB_REMOTE", format!("tcp:127.0.0.1:{sb}")),
    ];
    let log = |n: &str| tmp.path().join(format!("{n}.log"));
    let _nb = Running::start("switchyard-ovn-central", &["nb"], &env, &log("nb"));
    let _sb = Running::start("switchyard-ovn-central", &["sb"], &env, &log("sb"));
    let ok = |args: &[&str]| {
        run_script("switchyard-ovn-central", args, &env)
            .status
            .success()
    };
    wait_for("both databases ready", Duration::from_secs(30), || {
        ok(&["probe", "nb"]) && ok(&["probe", "sb"])
    });
    assert!(!ok(&["alive", "northd"]), "northd does not run yet");
    let _northd = Running::start("switchyard-ovn-central", &["northd"], &env, &log("northd"));
    wait_for("northd alive", Duration::from_secs(20), || {
        ok(&["alive", "northd"])
    });
    let status = Command::new("ovn-appctl")
        .arg("-t")
        .arg(tmp.path().join("ovn-northd.ctl"))
        .arg("status")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("active"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    // northd translates: a logical switch becomes a southbound datapath.
    let o = Command::new("ovsdb-client")
        .args(["transact", &format!("tcp:127.0.0.1:{nb}")])
        .arg(r#"["OVN_Northbound",{"op":"insert","table":"Logical_Switch","row":{"name":"sw0"}}]"#)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    wait_for(
        "a southbound datapath for sw0",
        Duration::from_secs(20),
        || {
            let o = Command::new("ovsdb-client")
                .args([
                    "dump",
                    &format!("tcp:127.0.0.1:{sb}"),
                    "OVN_Southbound",
                    "Datapath_Binding",
                    "external_ids",
                ])
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).contains("sw0")
        },
    );
}
