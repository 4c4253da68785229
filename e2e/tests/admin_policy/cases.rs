//! The cases of `tests/admin_policy.rs`, each with its truth table as a
//! closure over (source pod, target). Every case removes what it applied.

use std::collections::BTreeSet;

use super::*;

/// Every case, in the order the IPv4 sandbox runs them.
pub fn all(w: &mut World) {
    no_policy(w);
    deny(w);
    allow_over_network_policy_deny(w);
    priority_between_anps(w);
    rule_order(w);
    pod_peers_and_label_changes(w);
    ports(w);
    egress_to_nodes_and_networks(w);
    pass_then_network_policy(w);
    pass_across_anps_then_network_policy_allow(w);
    baseline_only_where_no_network_policy(w);
    pass_then_baseline(w);
    egress_pass_then_network_policy(w);
    status_and_restart(w);
}

/// The IPv6 (and dual-stack) subset.
pub fn core(w: &mut World) {
    no_policy(w);
    deny(w);
    allow_over_network_policy_deny(w);
    egress_to_nodes_and_networks(w);
    pass_then_network_policy(w);
    baseline_only_where_no_network_policy(w);
}

fn no_policy(w: &mut World) {
    w.settle("no policy", &[], &[], &[]);
    w.check("no policy", true, |_, _| true);
}

fn deny(w: &mut World) {
    w.apply(anp(
        "deny-y",
        10,
        nss("x"),
        json!([from("Deny", json!([nss("y")]))]),
        json!([]),
    ));
    w.settle(
        "ANP Deny",
        &[(ANP, "deny-y", 1)],
        &[],
        &[(Kind::AdminNetworkPolicy, "deny-y")],
    );
    w.check("ANP Deny y -> x", false, |s, t| {
        !(ns(s) == "y" && ns(&t.label) == "x")
    });
    w.delete("anp", "", "deny-y");
}

fn allow_over_network_policy_deny(w: &mut World) {
    w.apply(np("x", "deny-all", json!({"podSelector": {}})));
    w.apply(anp(
        "allow-y",
        10,
        nss("x"),
        json!([from("Allow", json!([nss("y")]))]),
        json!([]),
    ));
    w.settle(
        "ANP Allow over NP",
        &[(ANP, "allow-y", 1)],
        &["x/deny-all"],
        &[],
    );
    w.check("ANP Allow y over NP deny-all in x", false, |s, t| {
        ns(&t.label) != "x" || ns(s) == "y"
    });
    w.delete("anp", "", "allow-y");
    w.delete("networkpolicy", "x", "deny-all");
}

fn priority_between_anps(w: &mut World) {
    w.apply(anp(
        "allow",
        1,
        nss("x"),
        json!([from("Allow", json!([nss("y")]))]),
        json!([]),
    ));
    w.apply(anp(
        "deny",
        2,
        nss("x"),
        json!([from("Deny", json!([all_ns()]))]),
        json!([]),
    ));
    w.settle(
        "priorities",
        &[(ANP, "allow", 1), (ANP, "deny", 1)],
        &[],
        &[],
    );
    w.check("ANP priority 1 Allow y over 2 Deny all", false, |s, t| {
        ns(&t.label) != "x" || ns(s) == "y"
    });
    // Swapped: the Deny comes first.
    w.apply(anp(
        "allow",
        3,
        nss("x"),
        json!([from("Allow", json!([nss("y")]))]),
        json!([]),
    ));
    settle(&w.sb, "swapped priorities", |nb| {
        nb.exactly(&[(ANP, "allow", 1), (ANP, "deny", 1)], &[])?;
        (nb.priority("deny") > nb.priority("allow"))
            .then_some(())
            .ok_or_else(|| "the Deny not above the Allow yet".to_string())
    });
    w.check("ANP priority 2 Deny all over 3 Allow y", false, |_, t| {
        ns(&t.label) != "x"
    });
    w.delete("anp", "", "allow");
    w.delete("anp", "", "deny");
}

fn rule_order(w: &mut World) {
    w.apply(anp(
        "ordered",
        5,
        nss("x"),
        json!([
            from("Deny", json!([pods("y", "a")])),
            from("Allow", json!([nss("y")])),
            from("Deny", json!([all_ns()])),
        ]),
        json!([]),
    ));
    w.settle("rule order", &[(ANP, "ordered", 3)], &[], &[]);
    w.check(
        "ANP rules in order: Deny y/a, Allow y, Deny all",
        false,
        |s, t| ns(&t.label) != "x" || (ns(s) == "y" && s != "y/a"),
    );
    w.delete("anp", "", "ordered");
}

/// Subject and peer by pods, then a pod joining the subject and a
/// namespace joining the peer by their labels, and both leaving again.
fn pod_peers_and_label_changes(w: &mut World) {
    w.apply(anp(
        "pods-a",
        7,
        json!({"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "a"}}}}),
        json!([from("Deny", json!([pods("z", "b")]))]),
        json!([]),
    ));
    w.settle("pods", &[(ANP, "pods-a", 1)], &[], &[]);
    let zb = w.pod_ip("z", "b");
    settle(&w.sb, "the subject and the peer", |nb| {
        let (g, p) = (nb.subject_ports("pods-a"), nb.peer_addresses("pods-a"));
        let want: BTreeSet<String> = ["x_a", "y_a", "z_a"].map(String::from).into();
        (g == want && zb.iter().all(|a| p.contains(a)))
            .then_some(())
            .ok_or(format!("{g:?} {p:?}"))
    });
    w.check("subject pod=a, peer z/b", false, |s, t| {
        !(s == "z/b" && name(&t.label) == "a")
    });
    w.label(Kind::Pod, "x", "b", &[("pod", "a")], &[]);
    settle(&w.sb, "x/b in the subject", |nb| {
        let g = nb.subject_ports("pods-a");
        g.contains("x_b").then_some(()).ok_or(format!("{g:?}"))
    });
    w.check("x/b relabelled pod=a joins the subject", false, |s, t| {
        !(s == "z/b" && (name(&t.label) == "a" || t.label == "x/b"))
    });
    w.label(Kind::Namespace, "", "y", &[("ns", "z")], &[]);
    let yb = w.pod_ip("y", "b");
    settle(&w.sb, "y/b in the peers", |nb| {
        let p = nb.peer_addresses("pods-a");
        yb.iter()
            .all(|a| p.contains(a))
            .then_some(())
            .ok_or(format!("{p:?}"))
    });
    w.check(
        "namespace y relabelled ns=z: y/b joins the peer",
        false,
        |s, t| !((s == "z/b" || s == "y/b") && (name(&t.label) == "a" || t.label == "x/b")),
    );
    w.label(Kind::Pod, "x", "b", &[("pod", "b")], &[]);
    w.label(Kind::Namespace, "", "y", &[("ns", "y")], &[]);
    settle(&w.sb, "labels back", |nb| {
        let (g, p) = (nb.subject_ports("pods-a"), nb.peer_addresses("pods-a"));
        (!g.contains("x_b") && !yb.iter().any(|a| p.contains(a)))
            .then_some(())
            .ok_or(format!("{g:?} {p:?}"))
    });
    w.check("labels restored", false, |s, t| {
        !(s == "z/b" && name(&t.label) == "a")
    });
    w.delete("anp", "", "pods-a");
}

fn ports(w: &mut World) {
    w.apply(anp(
        "ports",
        8,
        nss("x"),
        json!([
            {"action": "Deny", "from": [nss("y")],
             "ports": [{"portNumber": {"protocol": "TCP", "port": 80}}]},
            {"action": "Deny", "from": [nss("z")], "ports": [{"namedPort": "serve-81-tcp"}]},
            {"action": "Deny", "from": [nss("x")],
             "ports": [{"portRange": {"protocol": "UDP", "start": 80, "end": 81}}]},
        ]),
        json!([]),
    ));
    w.settle("ports", &[(ANP, "ports", 3)], &[], &[]);
    w.check(
        "ports: y TCP 80 by number, z TCP 81 by name, x UDP 80-81 by range",
        false,
        |s, t| {
            !(ns(&t.label) == "x"
                && ((ns(s) == "y" && t.l4 == TCP80)
                    || (ns(s) == "z" && t.l4 == TCP81)
                    || (ns(s) == "x" && t.l4 == UDP80)))
        },
    );
    w.delete("anp", "", "ports");
}

fn egress_to_nodes_and_networks(w: &mut World) {
    w.label(Kind::Node, "", "node-1", &[("role", "target")], &[]);
    let nets: Vec<&str> = w.cidrs.clone();
    w.apply(anp(
        "egress-out",
        4,
        nss("x"),
        json!([]),
        json!([
            to(
                "Deny",
                json!([{"nodes": {"matchLabels": {"role": "target"}}}])
            ),
            to("Deny", json!([{"networks": nets}])),
        ]),
    ));
    w.settle("egress", &[(ANP, "egress-out", 2)], &[], &[]);
    w.check(
        "x egress Deny to node-1 and the external CIDR",
        true,
        |s, t| !(ns(s) == "x" && (t.label == "node-1" || t.label == "external")),
    );
    w.label(Kind::Node, "", "node-2", &[("role", "target")], &[]);
    let n2 = w.node_ip(1);
    settle(&w.sb, "node-2 in the node peer", |nb| {
        let p = nb.peer_addresses("egress-out");
        n2.iter()
            .all(|a| p.contains(a))
            .then_some(())
            .ok_or(format!("{p:?}"))
    });
    w.check("node-2 relabelled into the node peer", true, |s, t| {
        !(ns(s) == "x" && ["node-1", "node-2", "external"].contains(&t.label.as_str()))
    });
    w.delete("anp", "", "egress-out");
    w.label(Kind::Node, "", "node-1", &[], &["role"]);
    w.label(Kind::Node, "", "node-2", &[], &["role"]);
}

/// Pass inside one ANP: y/a passed on, everyone else denied by the next
/// rule; then a NetworkPolicy isolating x/b decides for the passed.
fn pass_then_network_policy(w: &mut World) {
    w.apply(anp(
        "gate",
        1,
        nss("x"),
        json!([
            from("Pass", json!([pods("y", "a")])),
            from("Deny", json!([all_ns()]))
        ]),
        json!([]),
    ));
    w.settle(
        "Pass",
        &[(ANP, "gate", 1)],
        &[],
        &[(Kind::AdminNetworkPolicy, "gate")],
    );
    w.check(
        "Pass y/a then Deny all; no NP: y/a allowed",
        false,
        |s, t| ns(&t.label) != "x" || s == "y/a",
    );
    w.apply(np(
        "x",
        "isolate-b",
        json!({"podSelector": {"matchLabels": {"pod": "b"}},
                                         "policyTypes": ["Ingress"]}),
    ));
    w.settle("Pass then NP", &[(ANP, "gate", 1)], &["x/isolate-b"], &[]);
    w.check("Pass y/a then NP denying x/b", false, |s, t| {
        ns(&t.label) != "x" || (s == "y/a" && t.label != "x/b")
    });
    w.delete("anp", "", "gate");
    w.delete("networkpolicy", "x", "isolate-b");
}

/// Pass in a higher ANP over a lower ANP's Deny: the NetworkPolicy of
/// x/a, allowing only y/a, decides.
fn pass_across_anps_then_network_policy_allow(w: &mut World) {
    w.apply(anp(
        "pass-ya",
        1,
        json!({"pods": {"namespaceSelector": {"matchLabels": {"ns": "x"}},
                        "podSelector": {"matchLabels": {"pod": "a"}}}}),
        json!([from("Pass", json!([pods("y", "a")]))]),
        json!([]),
    ));
    w.apply(anp(
        "deny-y",
        2,
        nss("x"),
        json!([from("Deny", json!([nss("y")]))]),
        json!([]),
    ));
    w.apply(np(
        "x",
        "from-ya",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}},
                                      "podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
    ));
    // The Deny minus the Pass above it: x's other pods from all of y, and
    // x/a from y's other pods: two pieces, two ACLs.
    w.settle(
        "Pass across ANPs",
        &[(ANP, "deny-y", 2)],
        &["x/from-ya"],
        &[
            (Kind::AdminNetworkPolicy, "pass-ya"),
            (Kind::AdminNetworkPolicy, "deny-y"),
        ],
    );
    w.check(
        "Pass y/a->x/a (prio 1) over Deny y->x (prio 2), NP allows y/a",
        false,
        |s, t| match t.label.as_str() {
            "x/a" => s == "y/a",
            d if ns(d) == "x" => ns(s) != "y",
            _ => true,
        },
    );
    w.delete("anp", "", "pass-ya");
    w.delete("anp", "", "deny-y");
    w.delete("networkpolicy", "x", "from-ya");
}

fn baseline_only_where_no_network_policy(w: &mut World) {
    w.apply(banp(
        all_ns(),
        json!([
            from("Allow", json!([nss("z")])),
            from("Deny", json!([all_ns()]))
        ]),
        json!([]),
    ));
    w.apply(np(
        "y",
        "a-open",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
                                      "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
    ));
    w.settle(
        "BANP",
        &[(BANP, "default", 2)],
        &["y/a-open"],
        &[(Kind::BaselineAdminNetworkPolicy, "default")],
    );
    w.check(
        "BANP Allow z, Deny all; y/a isolated by an NP allowing all",
        false,
        |s, t| ns(s) == "z" || t.label == "y/a",
    );
    w.delete("banp", "", "default");
    w.delete("networkpolicy", "y", "a-open");
}

/// Pass lands in the baseline for pods no NetworkPolicy isolates, and in
/// the NetworkPolicy for x/b.
fn pass_then_baseline(w: &mut World) {
    w.apply(banp(
        all_ns(),
        json!([from("Deny", json!([nss("y")]))]),
        json!([]),
    ));
    w.apply(anp(
        "pass-x",
        1,
        nss("x"),
        json!([
            from("Pass", json!([pods("y", "a")])),
            from("Allow", json!([all_ns()]))
        ]),
        json!([]),
    ));
    w.apply(np(
        "x",
        "b-open",
        json!({"podSelector": {"matchLabels": {"pod": "b"}},
                                      "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
    ));
    w.settle(
        "Pass then BANP",
        &[(BANP, "default", 1), (ANP, "pass-x", 1)],
        &["x/b-open"],
        &[(Kind::AdminNetworkPolicy, "pass-x")],
    );
    w.check(
        "Pass y/a then Allow all in x; BANP Deny y; x/b's NP allows all",
        false,
        |s, t| {
            let d = t.label.as_str();
            !(ns(s) == "y" && (ns(d) != "x" || (s == "y/a" && d != "x/b")))
        },
    );
    w.delete("anp", "", "pass-x");
    w.delete("banp", "", "default");
    w.delete("networkpolicy", "x", "b-open");
}

fn egress_pass_then_network_policy(w: &mut World) {
    w.apply(anp(
        "egress-gate",
        1,
        nss("x"),
        json!([]),
        json!([
            to("Pass", json!([pods("z", "a")])),
            to("Deny", json!([all_ns()]))
        ]),
    ));
    w.apply(np(
        "x",
        "to-z",
        json!({"podSelector": {}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}]}]}),
    ));
    w.settle("egress Pass", &[(ANP, "egress-gate", 1)], &["x/to-z"], &[]);
    w.check(
        "egress Pass x->z/a then Deny all; NP allows x->z",
        true,
        |s, t| ns(s) != "x" || t.label == "z/a",
    );
    w.delete("anp", "", "egress-gate");
    w.delete("networkpolicy", "x", "to-z");
}

/// Ready conditions, then a restart of the converged controller: no NB
/// operation, and the same verdicts.
fn status_and_restart(w: &mut World) {
    w.apply(anp(
        "good",
        40,
        nss("z"),
        json!([
            from("Pass", json!([pods("y", "c")])),
            from("Deny", json!([nss("y")]))
        ]),
        json!([]),
    ));
    w.apply(anp(
        "bad",
        50,
        nss("z"),
        json!([]),
        json!([to("Deny", json!([{"networks": ["not-a-cidr"]}]))]),
    ));
    w.apply(banp(
        nss("x"),
        json!([from("Deny", json!([nss("z")]))]),
        json!([]),
    ));
    common::wait(Duration::from_secs(45), "Ready conditions", || {
        let g =
            condition(&w.sb, Kind::AdminNetworkPolicy, "good").ok_or("good: none".to_string())?;
        let b = condition(&w.sb, Kind::AdminNetworkPolicy, "bad").ok_or("bad: none".to_string())?;
        let d = condition(&w.sb, Kind::BaselineAdminNetworkPolicy, "default")
            .ok_or("baseline: none".to_string())?;
        if (g.0.as_str(), g.1.as_str()) != ("True", "SetupSucceeded") {
            return Err(format!("good: {g:?}"));
        }
        if b.0 != "False" || b.1 != "SetupFailed" || !b.2.contains("not-a-cidr") {
            return Err(format!("bad: {b:?}"));
        }
        if d.0 != "True" {
            return Err(format!("baseline: {d:?}"));
        }
        Ok(())
    });
    w.apply(anp(
        "bad",
        50,
        nss("z"),
        json!([]),
        json!([to("Deny", json!([{"networks": ["192.0.2.0/24"]}]))]),
    ));
    w.settle(
        "status",
        &[(ANP, "good", 1), (ANP, "bad", 1), (BANP, "default", 1)],
        &[],
        &[(Kind::AdminNetworkPolicy, "bad")],
    );
    let want = |s: &str, t: &Target| {
        let d = t.label.as_str();
        !((ns(d) == "z" && ns(s) == "y" && s != "y/c") || (ns(d) == "x" && ns(s) == "z"))
    };
    w.check(
        "good: Pass y/c, Deny y into z; BANP Deny z into x",
        false,
        want,
    );
    w.sb.restart_controller().expect("controller restarted");
    let m = w.sb.controller_metrics().expect("a controller");
    common::wait(
        Duration::from_secs(60),
        "the restarted controller in sync",
        || {
            m.health
                .synced()
                .then_some(())
                .ok_or("not synced".to_string())
        },
    );
    let ops = m.nb_operations.get();
    if ops != 0 {
        w.failures.push(format!(
            "a converged controller restart wrote {ops} NB operations"
        ));
    }
    w.lines.push(format!(
        "[{}] converged restart: {ops} NB operations",
        w.tag
    ));
    w.check("after a converged restart", false, want);
    w.delete("anp", "", "good");
    w.delete("anp", "", "bad");
    w.delete("banp", "", "default");
    w.settle("all gone", &[], &[], &[]);
}
