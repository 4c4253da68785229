//! AdminNetworkPolicy and BaselineAdminNetworkPolicy truth tables through
//! `ovn-trace`, on the NetworkPolicy suite's x/y/z cluster (namespaces x,
//! y, z; pods a, b, c; a and c on n1, b on n2). Each case applies admin
//! policies (and NetworkPolicies), waits for NB to hold exactly their ACLs
//! and SB to follow, and probes the 9x9 matrix, or pod-to-address flows
//! for node and network peers, as OVN's logical flows judge them.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::policy::*;
use common::trace::*;
use common::{eventually, Env};
use k8s_openapi::api::core::v1::{NodeAddress, NodeStatus};
use serde_json::json;
use switchyard_api::names;
use switchyard_controller::k8s::{AdminNetworkPolicy, BaselineAdminNetworkPolicy, Kind};
use tokio::sync::broadcast;

const T: Duration = Duration::from_secs(60);
const NODE_IP: &str = "198.18.0.1";
const EXTERNAL: &str = "192.0.2.10";
const ELSEWHERE: &str = "198.51.100.1";

fn anp(name: &str, spec: serde_json::Value) -> AdminNetworkPolicy {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("an ANP")
}

fn banp(spec: serde_json::Value) -> BaselineAdminNetworkPolicy {
    serde_json::from_value(json!({"metadata": {"name": "default"}, "spec": spec})).expect("a BANP")
}

fn nss(ns: &str) -> serde_json::Value {
    json!({"namespaces": {"matchLabels": {"ns": ns}}})
}

fn all_ns() -> serde_json::Value {
    json!({"namespaces": {}})
}

fn ingress(action: &str, from: serde_json::Value) -> serde_json::Value {
    json!({"action": action, "from": [from]})
}

fn is(ns_: &'static str) -> impl Fn(&str) -> bool {
    move |p| ns(p) == ns_
}

/// NB holds exactly `want`'s admin ACLs ((owner kind, name, count)), the
/// NetworkPolicy rows are exact, and the rest of NB too.
fn admin_exact(env: &Env, want: &[(&str, &str, usize)]) -> Result<(), String> {
    env.check()?;
    check_policies(env)?;
    let nb = read_nb(env);
    let mut have: Vec<(String, String, usize)> = Vec::new();
    for a in nb
        .acls
        .iter()
        .filter(|a| ADMIN_KINDS.contains(&a.owner_kind.as_str()))
    {
        match have
            .iter_mut()
            .find(|(k, o, _)| *k == a.owner_kind && *o == a.owner)
        {
            Some(e) => e.2 += 1,
            None => have.push((a.owner_kind.clone(), a.owner.clone(), 1)),
        }
    }
    have.sort();
    let mut want: Vec<(String, String, usize)> = want
        .iter()
        .map(|(k, o, n)| (k.to_string(), o.to_string(), *n))
        .collect();
    want.sort();
    if have != want {
        return Err(format!("admin ACLs {have:?}, want {want:?}"));
    }
    Ok(())
}

async fn converged(env: &Env, want: &[(&str, &str, usize)]) {
    eventually(T, "NB holds exactly the admin policies' ACLs", || {
        admin_exact(env, want)
    })
    .await;
}

const A: &str = names::KIND_ADMIN_NETWORK_POLICY;
const B: &str = names::KIND_BASELINE_ADMIN_NETWORK_POLICY;

/// x/y/z with n1 labelled `role=worker` at [`NODE_IP`].
async fn xyz() -> (Env, common::Running) {
    xyz_on(&["10.244.0.0/16/24"]).await
}

/// [`xyz`] on the given cluster CIDRs.
async fn xyz_on(cidrs: &[&str]) -> (Env, common::Running) {
    let env = Env::new(cidrs).await;
    let c = &env.cluster;
    for (n, ip) in [("n1", NODE_IP), ("n2", "198.18.0.2")] {
        let mut node = kube_memory::node(n);
        node.metadata.labels = Some([("role".to_string(), format!("r-{n}"))].into());
        node.status = Some(NodeStatus {
            addresses: Some(vec![NodeAddress {
                type_: "InternalIP".into(),
                address: ip.into(),
            }]),
            ..Default::default()
        });
        c.apply_node(node);
    }
    for ns in NAMESPACES {
        c.apply(kube_memory::namespace(ns, &[("ns", ns)]));
        for p in PODS {
            c.apply_pod(serve_pod(ns, p, node_for(p), &[("pod", p)]));
        }
    }
    let running = env.start();
    converged(&env, &[]).await;
    (env, running)
}

fn clear(env: &Env, anps: &[&str], nps: &[(&str, &str)], baseline: bool) {
    for n in anps {
        env.cluster.delete(Kind::AdminNetworkPolicy, None, n);
    }
    for (ns, n) in nps {
        env.cluster.delete(Kind::NetworkPolicy, Some(ns), n);
    }
    if baseline {
        env.cluster
            .delete(Kind::BaselineAdminNetworkPolicy, None, "default");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_priorities_and_network_policy_interplay() {
    let (env, running) = xyz().await;
    let c = &env.cluster;

    // Deny: y to x only.
    c.apply(anp(
        "deny-y",
        json!({"priority": 10, "subject": nss("x"),
        "ingress": [ingress("Deny", nss("y"))]}),
    ));
    converged(&env, &[(A, "deny-y", 1)]).await;
    let mut want = Reach::all(true);
    want.pairs(|a, b| (ns(a) == "y" && ns(b) == "x").then_some(false));
    want.check("ANP Deny", TCP80, &Tracer::new(&env).matrix(TCP80, false));
    clear(&env, &["deny-y"], &[], false);

    // Allow over a NetworkPolicy default deny: x isolated, y still in.
    c.apply(np("x", "deny-all", json!({"podSelector": {}})));
    c.apply(anp(
        "allow-y",
        json!({"priority": 10, "subject": nss("x"),
        "ingress": [ingress("Allow", nss("y"))]}),
    ));
    converged(&env, &[(A, "allow-y", 1)]).await;
    let mut want = Reach::all(true);
    want.ingress(is("x"), false)
        .pairs(|a, b| (ns(a) == "y" && ns(b) == "x").then_some(true));
    want.check(
        "ANP Allow over NP deny",
        TCP80,
        &Tracer::new(&env).matrix(TCP80, false),
    );
    clear(&env, &["allow-y"], &[("x", "deny-all")], false);

    // Priority order between two ANPs: the lower number wins...
    c.apply(anp(
        "allow",
        json!({"priority": 1, "subject": nss("x"),
        "ingress": [ingress("Allow", nss("y"))]}),
    ));
    c.apply(anp(
        "deny",
        json!({"priority": 2, "subject": nss("x"),
        "ingress": [ingress("Deny", all_ns())]}),
    ));
    converged(&env, &[(A, "allow", 1), (A, "deny", 1)]).await;
    let mut want = Reach::all(true);
    want.ingress(is("x"), false)
        .pairs(|a, b| (ns(a) == "y" && ns(b) == "x").then_some(true));
    want.check(
        "ANP priority 1 Allow over 2 Deny",
        TCP80,
        &Tracer::new(&env).matrix(TCP80, false),
    );
    // ...and swapping the priorities swaps the verdict.
    c.apply(anp(
        "allow",
        json!({"priority": 3, "subject": nss("x"),
        "ingress": [ingress("Allow", nss("y"))]}),
    ));
    eventually(T, "the Allow below the Deny", || {
        admin_exact(&env, &[(A, "allow", 1), (A, "deny", 1)])?;
        let nb = read_nb(&env);
        let p = |o: &str| nb.acls.iter().find(|a| a.owner == o).map(|a| a.priority);
        (p("deny") > p("allow"))
            .then_some(())
            .ok_or("not yet".to_string())
    })
    .await;
    let mut want = Reach::all(true);
    want.ingress(is("x"), false);
    want.check(
        "ANP priority 2 Deny over 3 Allow",
        TCP80,
        &Tracer::new(&env).matrix(TCP80, false),
    );
    clear(&env, &["allow", "deny"], &[], false);

    // Rule order inside one ANP: Deny y/a, then Allow y; then Deny all.
    c.apply(anp(
        "ordered",
        json!({"priority": 5, "subject": nss("x"),
        "ingress": [
            ingress("Deny", json!({"pods": {"namespaceSelector": {"matchLabels": {"ns": "y"}},
                                             "podSelector": {"matchLabels": {"pod": "a"}}}})),
            ingress("Allow", nss("y")),
            ingress("Deny", all_ns()),
        ]}),
    ));
    converged(&env, &[(A, "ordered", 3)]).await;
    let mut want = Reach::all(true);
    want.ingress(is("x"), false)
        .pairs(|a, b| (ns(a) == "y" && ns(b) == "x").then_some(a != "y/a"));
    want.check(
        "ANP rule order",
        TCP80,
        &Tracer::new(&env).matrix(TCP80, false),
    );
    clear(&env, &["ordered"], &[], false);
    converged(&env, &[]).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_hands_over_to_network_policy_and_baseline_to_the_unisolated() {
    let (env, running) = xyz().await;
    let c = &env.cluster;

    // Pass y, then Deny everything: y's traffic to x is NetworkPolicy's to
    // judge, which allows only y/a; everyone else is denied by the ANP.
    c.apply(anp(
        "pass",
        json!({"priority": 1, "subject": nss("x"),
        "ingress": [ingress("Pass", nss("y"))]}),
    ));
    c.apply(anp(
        "deny",
        json!({"priority": 2, "subject": nss("x"),
        "ingress": [ingress("Deny", all_ns())]}),
    ));
    converged(&env, &[(A, "deny", 1)]).await;
    let mut want = Reach::all(true);
    want.ingress(is("x"), false)
        .pairs(|a, b| (ns(a) == "y" && ns(b) == "x").then_some(true));
    want.check(
        "ANP Pass, no NP: allowed",
        TCP80,
        &Tracer::new(&env).matrix(TCP80, false),
    );
    c.apply(np(
        "x",
        "from-ya",
        json!({"podSelector": {},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}},
                               "podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
    ));
    converged(&env, &[(A, "deny", 1)]).await;
    let mut want = Reach::all(true);
    want.ingress(is("x"), false)
        .pairs(|a, b| (ns(a) == "y" && ns(b) == "x").then_some(a == "y/a"));
    want.check(
        "ANP Pass then NP",
        TCP80,
        &Tracer::new(&env).matrix(TCP80, false),
    );
    clear(&env, &["pass", "deny"], &[("x", "from-ya")], false);

    // The baseline denies everything to every pod, but a pod that a
    // NetworkPolicy isolates (y/a, allowing all) is NetworkPolicy's.
    c.apply(banp(json!({"subject": {"namespaces": {}},
        "ingress": [ingress("Allow", nss("z")), ingress("Deny", all_ns())]})));
    c.apply(np(
        "y",
        "a-open",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
    ));
    converged(&env, &[(B, "default", 2)]).await;
    let mut want = Reach::all(false);
    want.pairs(|a, b| (ns(a) == "z" || b == "y/a").then_some(true));
    want.check(
        "BANP only where no NP isolates",
        TCP80,
        &Tracer::new(&env).matrix(TCP80, false),
    );
    // An ANP Pass lands in the baseline too, for unisolated pods.
    c.apply(anp(
        "pass-x",
        json!({"priority": 1, "subject": nss("x"),
        "ingress": [ingress("Pass", nss("y")), ingress("Allow", all_ns())]}),
    ));
    converged(&env, &[(B, "default", 2), (A, "pass-x", 1)]).await;
    let mut want = Reach::all(false);
    want.pairs(|a, b| (ns(a) == "z" || b == "y/a").then_some(true))
        .pairs(|a, b| (ns(b) == "x" && ns(a) != "y").then_some(true));
    want.check(
        "ANP Pass then BANP",
        TCP80,
        &Tracer::new(&env).matrix(TCP80, false),
    );
    clear(&env, &["pass-x"], &[("y", "a-open")], true);
    converged(&env, &[]).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_to_nodes_and_networks_and_label_changes() {
    let (env, running) = xyz().await;
    let c = &env.cluster;
    let (node, ext, other): (IpAddr, IpAddr, IpAddr) = (
        NODE_IP.parse().unwrap(),
        EXTERNAL.parse().unwrap(),
        ELSEWHERE.parse().unwrap(),
    );
    c.apply(anp(
        "egress",
        json!({"priority": 4, "subject": nss("x"),
        "egress": [
            {"action": "Deny", "to": [{"nodes": {"matchLabels": {"role": "r-n1"}}}]},
            {"action": "Deny", "to": [{"networks": ["192.0.2.0/24"]}]},
        ]}),
    ));
    converged(&env, &[(A, "egress", 2)]).await;
    let t = Tracer::new(&env);
    for from in ["x/a", "x/b"] {
        assert!(!t.leaves(from, node, TCP80), "{from} to node n1");
        assert!(!t.leaves(from, ext, TCP80), "{from} to {ext}");
        assert!(t.leaves(from, other, TCP80), "{from} to {other}");
    }
    assert!(t.leaves("y/a", node, TCP80), "y/a to node n1");
    assert!(t.leaves("y/a", ext, TCP80), "y/a to {ext}");
    // Relabel n2 into the peer: its address joins the set.
    let mut n2 = c.node("n2").expect("n2");
    n2.metadata.labels = Some([("role".to_string(), "r-n1".to_string())].into());
    c.apply_node(n2);
    eventually(T, "n2 in the node set", || {
        let nb = read_nb(&env);
        let set = nb.sets.get("anp.egress.e0.nodes.v4").map(|s| s.1.clone());
        set.as_ref()
            .is_some_and(|s| s.contains("198.18.0.2"))
            .then_some(())
            .ok_or(format!("{set:?}"))
    })
    .await;
    let t = Tracer::new(&env);
    assert!(!t.leaves("x/a", "198.18.0.2".parse().unwrap(), TCP80));
    clear(&env, &["egress"], &[], false);

    // A pod relabelled into an ANP's subject is judged by it, and out again.
    c.apply(anp("pods-a", json!({"priority": 4,
        "subject": {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "a"}}}},
        "ingress": [ingress("Deny", all_ns())]})));
    converged(&env, &[(A, "pods-a", 1)]).await;
    let mut want = Reach::all(true);
    want.ingress(|p| name(p) == "a", false);
    want.check(
        "subject pod=a",
        TCP80,
        &Tracer::new(&env).matrix(TCP80, false),
    );
    let mut b = c.pod("x", "b").expect("x/b");
    b.metadata.labels = Some([("pod".to_string(), "a".to_string())].into());
    c.apply_pod(b);
    eventually(T, "x/b in the subject's group", || {
        let nb = read_nb(&env);
        let g = nb
            .groups
            .get("anp.pods_a")
            .map(|g| g.1.clone())
            .unwrap_or_default();
        g.contains("x_b").then_some(()).ok_or(format!("{g:?}"))
    })
    .await;
    let mut want = Reach::all(true);
    want.ingress(|p| name(p) == "a" || p == "x/b", false);
    want.check(
        "x/b relabelled into the subject",
        TCP80,
        &Tracer::new(&env).matrix(TCP80, false),
    );

    // A converged restart writes nothing.
    running.stop().await;
    let mut rx = env.replica.subscribe();
    let second = env.start();
    eventually(T, "second run synced", || {
        second.synced().then_some(()).ok_or("not synced".into())
    })
    .await;
    converged(&env, &[(A, "pods-a", 1)]).await;
    assert_eq!(
        second.metrics.nb_operations.get(),
        0,
        "NB operations on a converged restart"
    );
    assert!(
        matches!(rx.try_recv(), Err(broadcast::error::TryRecvError::Empty)),
        "NB changed"
    );
    second.stop().await;
}

/// The `Ready` condition of ANP `name`: (status, reason, message).
fn ready(env: &Env, name: &str) -> Option<(String, String, String)> {
    let o = env.cluster.get(Kind::AdminNetworkPolicy, None, name)?;
    let switchyard_controller::k8s::Object::AdminNetworkPolicy(p) = o else {
        return None;
    };
    let c = p
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")?;
    Some((c.status, c.reason, c.message))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_conditions_and_same_priority_events() {
    let (env, running) = xyz().await;
    let c = &env.cluster;
    c.apply(anp(
        "good",
        json!({"priority": 20, "subject": nss("x"),
        "ingress": [ingress("Deny", nss("y"))]}),
    ));
    c.apply(anp(
        "twin",
        json!({"priority": 20, "subject": nss("z"),
        "ingress": [ingress("Deny", nss("y"))]}),
    ));
    // Not a CIDR: that peer matches nothing, the rest is enforced.
    c.apply(anp(
        "bad",
        json!({"priority": 30, "subject": nss("x"),
        "egress": [{"action": "Deny", "to": [{"networks": ["not-a-cidr"]}]}]}),
    ));
    converged(&env, &[(A, "good", 1), (A, "twin", 1)]).await;
    eventually(T, "Ready conditions", || {
        let g = ready(&env, "good").ok_or("good has none")?;
        let b = ready(&env, "bad").ok_or("bad has none")?;
        if g.0 != "True" || g.1 != "SetupSucceeded" {
            return Err(format!("good: {g:?}"));
        }
        if b.0 != "False" || !b.2.contains("not-a-cidr") {
            return Err(format!("bad: {b:?}"));
        }
        Ok(())
    })
    .await;
    eventually(T, "a priority Event on both twins", || {
        let on = |n: &str| {
            c.events()
                .iter()
                .any(|e| e.regarding.name == n && e.reason == "AdminNetworkPolicyPriorityConflict")
        };
        (on("good") && on("twin"))
            .then_some(())
            .ok_or(format!("{:?}", c.events()))
    })
    .await;
    // Fixed, the condition follows.
    c.apply(anp(
        "bad",
        json!({"priority": 30, "subject": nss("x"),
        "egress": [{"action": "Deny", "to": [{"networks": ["192.0.2.0/24"]}]}]}),
    ));
    eventually(T, "bad becomes Ready", || {
        let b = ready(&env, "bad").ok_or("none")?;
        (b.0 == "True").then_some(()).ok_or(format!("{b:?}"))
    })
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_by_number_name_and_range_on_each_protocol() {
    let (env, running) = xyz().await;
    env.cluster.apply(anp("ports", json!({"priority": 8, "subject": nss("x"),
        "ingress": [
            {"action": "Deny", "from": [nss("y")], "ports": [{"portNumber": {"protocol": "SCTP", "port": 80}}]},
            {"action": "Deny", "from": [nss("z")], "ports": [{"namedPort": "serve-81-tcp"}]},
            {"action": "Deny", "from": [nss("x")], "ports": [{"portRange": {"protocol": "UDP", "start": 80, "end": 81}}]},
        ]})));
    converged(&env, &[(A, "ports", 3)]).await;
    let t = Tracer::new(&env);
    let to_x_from = |src: &'static str| {
        let mut r = Reach::all(true);
        r.pairs(move |a, b| (ns(a) == src && ns(b) == "x").then_some(false));
        r
    };
    to_x_from("y").check("SCTP 80 by number", SCTP80, &t.matrix(SCTP80, false));
    to_x_from("z").check("TCP 81 by name", TCP81, &t.matrix(TCP81, false));
    Reach::all(true).check("TCP 80 untouched", TCP80, &t.matrix(TCP80, false));
    for l4 in [UDP80, UDP81] {
        to_x_from("x").check("UDP 80-81 by range", l4, &t.matrix(l4, false));
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_pass_hands_over_to_network_policy() {
    let (env, running) = xyz().await;
    let c = &env.cluster;
    c.apply(anp(
        "pass-z",
        json!({"priority": 1, "subject": nss("x"),
        "egress": [{"action": "Pass", "to": [nss("z")]}]}),
    ));
    c.apply(anp(
        "deny-out",
        json!({"priority": 2, "subject": nss("x"),
        "egress": [{"action": "Deny", "to": [all_ns()]}]}),
    ));
    c.apply(np(
        "x",
        "to-za",
        json!({"podSelector": {}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "z"}},
                            "podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
    ));
    converged(&env, &[(A, "deny-out", 1)]).await;
    let mut want = Reach::all(true);
    want.egress(is("x"), false)
        .pairs(|a, b| (ns(a) == "x" && b == "z/a").then_some(true));
    want.check(
        "egress Pass then NP",
        TCP80,
        &Tracer::new(&env).matrix(TCP80, false),
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_passes_hand_over_exactly_on_both_families() {
    let (env, running) = xyz_on(&["10.244.0.0/16/24", "fd00:10:244::/48/64"]).await;
    let c = &env.cluster;
    // Pass y on every port; then pass y and z on TCP 80 only (overlapping
    // the first in y); then deny everything. x's NetworkPolicy lets in
    // only the pods `a`. Below both passes, "deny" keeps two pieces: from
    // x on every port, and from z on everything but TCP 80.
    c.apply(anp(
        "pass-y",
        json!({"priority": 1, "subject": nss("x"),
        "ingress": [ingress("Pass", nss("y"))]}),
    ));
    c.apply(anp(
        "pass-yz-80",
        json!({"priority": 2, "subject": nss("x"),
        "ingress": [{"action": "Pass", "from": [nss("y"), nss("z")],
                     "ports": [{"portNumber": {"protocol": "TCP", "port": 80}}]}]}),
    ));
    c.apply(anp(
        "deny",
        json!({"priority": 3, "subject": nss("x"),
        "ingress": [ingress("Deny", all_ns())]}),
    ));
    c.apply(np(
        "x",
        "from-a",
        json!({"podSelector": {},
        "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
    ));
    converged(&env, &[(A, "deny", 2)]).await;
    let t = Tracer::new(&env);
    for v6 in [false, true] {
        let fam = if v6 { "IPv6" } else { "IPv4" };
        // TCP 80: y and z passed, NetworkPolicy lets in their pods a.
        let mut want = Reach::all(true);
        want.ingress(is("x"), false)
            .pairs(|a, b| (ns(b) == "x" && ns(a) != "x").then_some(name(a) == "a"));
        want.check(
            &format!("two passes, TCP 80, {fam}"),
            TCP80,
            &t.matrix(TCP80, v6),
        );
        // TCP 81: only y passed; z is denied by the ANP.
        let mut want = Reach::all(true);
        want.ingress(is("x"), false)
            .pairs(|a, b| (ns(b) == "x" && ns(a) == "y").then_some(name(a) == "a"));
        want.check(
            &format!("two passes, TCP 81, {fam}"),
            TCP81,
            &t.matrix(TCP81, v6),
        );
        // UDP 80: the "everything but TCP 80" piece holds UDP too.
        want.check(
            &format!("two passes, UDP 80, {fam}"),
            UDP80,
            &t.matrix(UDP80, v6),
        );
    }
    // No match negates anything.
    let nb = read_nb(&env);
    for a in nb.acls.iter().filter(|a| a.owner == "deny") {
        assert!(!a.matches.contains('!'), "{}", a.matches);
    }
    // A converged restart writes nothing, pieces included.
    running.stop().await;
    let mut rx = env.replica.subscribe();
    let second = env.start();
    eventually(T, "second run synced", || {
        second.synced().then_some(()).ok_or("not synced".into())
    })
    .await;
    converged(&env, &[(A, "deny", 2)]).await;
    assert_eq!(
        second.metrics.nb_operations.get(),
        0,
        "NB operations on a converged restart"
    );
    assert!(
        matches!(rx.try_recv(), Err(broadcast::error::TryRecvError::Empty)),
        "NB changed"
    );
    clear(
        &env,
        &["pass-y", "pass-yz-80", "deny"],
        &[("x", "from-a")],
        false,
    );
    converged(&env, &[]).await;
    second.stop().await;
}
