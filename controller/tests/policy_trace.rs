//! NetworkPolicy truth tables through `ovn-trace`, in the style of the
//! upstream NetworkPolicy e2e suite: namespaces x, y, z, pods a, b, c in
//! each (a and c on node n1, b on n2, so probes cross the router too),
//! every pod serving `serve-80-tcp`, `serve-81-tcp`, `serve-80-udp`,
//! `serve-81-udp`. Each case applies policies, waits for NB to converge
//! and SB to follow, and probes the 9x9 matrix (a pod to itself is not
//! probed: it never crosses the network) with new connections as OVN's
//! logical flows judge them. SCTP and services are proven here too; real
//! packets are the sandbox's.

mod common;

use std::time::Duration;

use common::policy::*;
use common::trace::*;
use common::{eventually, Env};
use serde_json::json;
use switchyard_controller::k8s::Kind;

const T: Duration = Duration::from_secs(60);

async fn converged(env: &Env) {
    eventually(T, "NB converged with the policies", || {
        env.check()?;
        check_policies(env)
    })
    .await;
}

/// Applies `policies`, probes each `(l4, expected)`, then deletes them.
async fn case(
    env: &Env,
    name: &str,
    policies: &[(&str, &str, serde_json::Value)],
    checks: &[(L4, &Reach)],
) {
    for (ns, n, spec) in policies {
        env.cluster.apply(np(ns, n, spec.clone()));
    }
    converged(env).await;
    let tracer = Tracer::new(env);
    for (l4, want) in checks {
        let have = tracer.matrix(*l4, false);
        want.check(name, *l4, &have);
    }
    for (ns, n, _) in policies {
        env.cluster.delete(Kind::NetworkPolicy, Some(ns), n);
    }
    converged(env).await;
}

async fn xyz() -> (Env, common::Running) {
    let env = Env::new(&["10.244.0.0/16/24", "fd00:10:244::/48/64"]).await;
    setup_xyz(&env);
    let running = env.start();
    converged(&env).await;
    (env, running)
}

fn is(ns_: &'static str) -> impl Fn(&str) -> bool {
    move |p| ns(p) == ns_
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_peers() {
    let (env, running) = xyz().await;
    // Nothing isolated: everything reaches everything.
    let tracer = Tracer::new(&env);
    Reach::all(true).check("no policy", TCP80, &tracer.matrix(TCP80, false));

    case(
        &env,
        "default deny ingress in x",
        &[("x", "deny", json!({"podSelector": {}}))],
        &[(TCP80, Reach::all(true).ingress(is("x"), false))],
    )
    .await;

    case(
        &env,
        "x/a admits its namespace",
        &[(
            "x",
            "same-ns",
            json!({
                "podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"from": [{"podSelector": {}}]}],
            }),
        )],
        &[(
            TCP80,
            Reach::all(true).pairs(|s, d| (d == "x/a").then_some(ns(s) == "x")),
        )],
    )
    .await;

    case(
        &env,
        "x/a admits namespace y by label",
        &[(
            "x",
            "from-y",
            json!({
                "podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}],
            }),
        )],
        &[(
            TCP80,
            Reach::all(true).pairs(|s, d| (d == "x/a").then_some(ns(s) == "y")),
        )],
    )
    .await;

    case(
        &env,
        "x/a admits pod b of namespaces y and z (In), both selectors in one peer",
        &[("x", "b-in-yz", json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{
                "namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "In", "values": ["y", "z"]}]},
                "podSelector": {"matchLabels": {"pod": "b"}},
            }]}],
        }))],
        &[(TCP80, Reach::all(true).pairs(|s, d| {
            (d == "x/a").then_some(name(s) == "b" && ns(s) != "x")
        }))],
    )
    .await;

    case(
        &env,
        "x/* admit pods other than c (NotIn) from namespaces without label other (DoesNotExist), plus every pod with label pod (Exists) of z",
        &[("x", "exprs", json!({
            "podSelector": {},
            "ingress": [{"from": [
                {"namespaceSelector": {"matchExpressions": [{"key": "other", "operator": "DoesNotExist"}]},
                 "podSelector": {"matchExpressions": [{"key": "pod", "operator": "NotIn", "values": ["c"]}]}},
                {"namespaceSelector": {"matchLabels": {"ns": "z"}},
                 "podSelector": {"matchExpressions": [{"key": "pod", "operator": "Exists"}]}},
            ]}],
        }))],
        &[(TCP80, Reach::all(true).pairs(|s, d| {
            (ns(d) == "x").then_some(name(s) != "c" || ns(s) == "z")
        }))],
    )
    .await;

    case(
        &env,
        "OR across policies: x/a admits y (one policy) and z/c (another)",
        &[
            (
                "x",
                "or-1",
                json!({"podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
            ),
            (
                "x",
                "or-2",
                json!({"podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}},
                                        "podSelector": {"matchLabels": {"pod": "c"}}}]}]}),
            ),
        ],
        &[(
            TCP80,
            Reach::all(true).pairs(|s, d| (d == "x/a").then_some(ns(s) == "y" || s == "z/c")),
        )],
    )
    .await;

    case(
        &env,
        "an ingress rule with neither peers nor ports admits all",
        &[(
            "x",
            "allow-all",
            json!({"podSelector": {}, "ingress": [{}]}),
        )],
        &[(TCP80, &Reach::all(true))],
    )
    .await;

    case(
        &env,
        "ipBlock with except: x/a admits 10.244.0.0/16 but not node n2's subnet",
        &[("x", "block", json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": [n2_subnet(&env)]}}]}],
        }))],
        &[(TCP80, Reach::all(true).pairs(|s, d| (d == "x/a").then_some(node_for(name(s)) != "n2")))],
    )
    .await;
    running.stop().await;
}

/// Node n2's IPv4 pod subnet, from its annotation.
fn n2_subnet(env: &Env) -> String {
    let n = env.cluster.node("n2").expect("n2");
    let text = n.metadata.annotations.expect("annotated")
        [switchyard_api::annotations::NODE_SUBNETS]
        .clone();
    switchyard_api::NodeSubnets::parse(&text)
        .expect("subnets")
        .0[0]
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_and_protocols() {
    let (env, running) = xyz().await;
    let from_y = |port: serde_json::Value| {
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}], "ports": port}]})
    };
    let only_y = || {
        let mut r = Reach::all(true);
        r.pairs(|s, d| (d == "x/a").then_some(ns(s) == "y"));
        r
    };
    let closed = || {
        let mut r = Reach::all(true);
        r.ingress(|d| d == "x/a", false);
        r
    };
    case(
        &env,
        "port 81 only",
        &[("x", "p81", from_y(json!([{"port": 81}])))],
        &[(TCP81, &only_y()), (TCP80, &closed()), (UDP81, &closed())],
    )
    .await;
    case(
        &env,
        "named port serve-80-tcp: TCP 80 only",
        &[("x", "named", from_y(json!([{"port": "serve-80-tcp"}])))],
        &[(TCP80, &only_y()), (TCP81, &closed()), (UDP80, &closed())],
    )
    .await;
    case(
        &env,
        "named UDP port serve-81-udp",
        &[(
            "x",
            "named-udp",
            from_y(json!([{"protocol": "UDP", "port": "serve-81-udp"}])),
        )],
        &[(UDP81, &only_y()), (UDP80, &closed()), (TCP81, &closed())],
    )
    .await;
    case(
        &env,
        "a TCP port named like a UDP one matches nothing",
        &[(
            "x",
            "named-mismatch",
            from_y(json!([{"protocol": "TCP", "port": "serve-80-udp"}])),
        )],
        &[(TCP80, &closed()), (UDP80, &closed())],
    )
    .await;
    case(
        &env,
        "endPort range 80-81",
        &[("x", "range", from_y(json!([{"port": 80, "endPort": 81}])))],
        &[(TCP80, &only_y()), (TCP81, &only_y()), (UDP80, &closed())],
    )
    .await;
    case(
        &env,
        "a whole protocol: UDP",
        &[("x", "udp", from_y(json!([{"protocol": "UDP"}])))],
        &[(UDP80, &only_y()), (UDP81, &only_y()), (TCP80, &closed())],
    )
    .await;
    case(
        &env,
        "SCTP 80",
        &[(
            "x",
            "sctp",
            from_y(json!([{"protocol": "SCTP", "port": 80}])),
        )],
        &[(SCTP80, &only_y()), (TCP80, &closed())],
    )
    .await;
    case(
        &env,
        "a rule with ports and no peers admits everyone on those ports",
        &[(
            "x",
            "ports-only",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"ports": [{"port": 80}]}]}),
        )],
        &[(TCP80, &Reach::all(true)), (TCP81, &closed())],
    )
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress() {
    let (env, running) = xyz().await;
    case(
        &env,
        "default deny egress in x",
        &[(
            "x",
            "deny-egress",
            json!({"podSelector": {}, "policyTypes": ["Egress"]}),
        )],
        &[(TCP80, Reach::all(true).egress(is("x"), false))],
    )
    .await;
    case(
        &env,
        "x/a may reach namespace y on 80 only; ingress rules of an Egress-only policy are ignored",
        &[("x", "to-y", json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "policyTypes": ["Egress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "nobody"}}}]}],
            "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}], "ports": [{"port": 80}]}],
        }))],
        &[
            (TCP80, Reach::all(true).pairs(|s, _| (s == "x/a").then_some(false)).pairs(|s, d| {
                (s == "x/a" && ns(d) == "y").then_some(true)
            })),
            (TCP81, Reach::all(true).egress(|s| s == "x/a", false)),
        ],
    )
    .await;
    case(
        &env,
        "egress by named port to pods b anywhere",
        &[("x", "to-b-named", json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "b"}}}],
                        "ports": [{"port": "serve-81-tcp"}]}],
        }))],
        &[
            (TCP81, Reach::all(true).pairs(|s, d| (s == "x/a").then_some(name(d) == "b"))),
            (TCP80, Reach::all(true).egress(|s| s == "x/a", false)),
        ],
    )
    .await;
    case(
        &env,
        "egress ipBlock with except",
        &[("x", "to-block", json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": [n2_subnet(&env)]}}]}],
        }))],
        &[(TCP80, Reach::all(true).pairs(|s, d| (s == "x/a").then_some(node_for(name(d)) != "n2")))],
    )
    .await;
    case(
        &env,
        "both directions, rules ORed: x/a talks only with y/b (in) and z/* (out)",
        &[("x", "both", json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "b"}}}]}],
            "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}]},
                       {"to": [{"podSelector": {"matchLabels": {"pod": "nobody"}}}]}],
        }))],
        &[(TCP80, Reach::all(true)
            .pairs(|s, d| (d == "x/a").then_some(s == "y/b"))
            .pairs(|s, d| (s == "x/a").then_some(ns(d) == "z")))],
    )
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_services_replies_ipv6_labels_and_bad_input() {
    let (env, running) = xyz().await;
    env.cluster.apply(np(
        "x",
        "deny-all",
        json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
    ));
    converged(&env).await;
    let t = Tracer::new(&env);
    // A node's host reaches the pods on its node, not another node's.
    assert!(t.allowed("host:n1", "x/a", TCP80, false));
    assert!(t.allowed("host:n1", "x/a", TCP80, true), "IPv6 too");
    assert!(t.allowed("host:n2", "x/b", UDP81, false));
    assert!(!t.allowed("host:n2", "x/a", TCP80, false));
    assert!(!t.allowed("y/a", "x/a", TCP80, false));
    // Replies to a connection x/a did not start still pass both ways out
    // of and into isolated x/a... (replies from x/a to y/a's connection).
    assert!(!t.allowed("x/a", "y/a", TCP80, false));
    assert!(
        t.reply_allowed("x/a", "y/a", TCP80),
        "reply out of an egress-isolated pod"
    );
    assert!(!t.allowed("y/b", "x/c", TCP80, false));
    assert!(
        t.reply_allowed("y/b", "x/c", TCP80),
        "reply into an ingress-isolated pod"
    );
    env.cluster
        .delete(Kind::NetworkPolicy, Some("x"), "deny-all");

    // Egress judged after load balancing: x/a may reach y/b only; a
    // service VIP balanced to y/b passes, to y/c does not.
    env.cluster.apply(np("x", "to-yb", json!({
        "podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "b"}}}]}],
    })));
    converged(&env).await;
    let t = Tracer::new(&env);
    let nb = |args: &[&str]| env.central.nbctl(args).expect("nbctl");
    nb(&[
        "lb-add",
        "test-svc",
        "10.96.0.10:80",
        &format!("{}:80", t.ip("y/b", false)),
        "tcp",
    ]);
    nb(&[
        "lb-add",
        "test-svc2",
        "10.96.0.11:80",
        &format!("{}:80", t.ip("y/c", false)),
        "tcp",
    ]);
    nb(&["ls-lb-add", "node-n1", "test-svc"]);
    nb(&["ls-lb-add", "node-n1", "test-svc2"]);
    let t = Tracer::new(&env);
    assert!(t.allowed_via("x/a", "10.96.0.10".parse().unwrap(), "y/b", TCP80));
    assert!(!t.allowed_via("x/a", "10.96.0.11".parse().unwrap(), "y/c", TCP80));
    assert!(
        t.allowed_via("x/c", "10.96.0.11".parse().unwrap(), "y/c", TCP80),
        "x/c is not isolated"
    );
    nb(&["lb-del", "test-svc"]);
    nb(&["lb-del", "test-svc2"]);
    env.cluster.delete(Kind::NetworkPolicy, Some("x"), "to-yb");

    // IPv6 peers and blocks.
    env.cluster.apply(np("x", "v6", json!({
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}},
                              {"ipBlock": {"cidr": "fd00:10:244::/48", "except": [format!("{}/128", t.ip("z/c", true))]}}],
                     "ports": [{"port": 80}]}],
    })));
    converged(&env).await;
    let t = Tracer::new(&env);
    let have = t.matrix(TCP80, true);
    Reach::all(true)
        .pairs(|s, d| (d == "x/a").then_some(s != "z/c"))
        .check("IPv6 block with except", TCP80, &have);
    // Over IPv4 the block does not apply: only y.
    let have = t.matrix(TCP80, false);
    Reach::all(true)
        .pairs(|s, d| (d == "x/a").then_some(ns(s) == "y"))
        .check("IPv4 beside an IPv6 block", TCP80, &have);
    env.cluster.delete(Kind::NetworkPolicy, Some("x"), "v6");

    // Labels move pods in and out: y/b relabelled c loses its access,
    // x/c relabelled a becomes isolated.
    env.cluster.apply(np("x", "b-only", json!({
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "b"}}}]}],
    })));
    converged(&env).await;
    assert!(Tracer::new(&env).allowed("y/b", "x/a", TCP80, false));
    let relabel = |ns_: &str, p: &str, label: &str| {
        env.cluster
            .apply_pod(serve_pod(ns_, p, node_for(p), &[("pod", label)]));
    };
    relabel("y", "b", "c");
    relabel("x", "c", "a");
    converged(&env).await;
    let t = Tracer::new(&env);
    assert!(!t.allowed("y/b", "x/a", TCP80, false));
    assert!(t.allowed("z/b", "x/a", TCP80, false));
    assert!(
        !t.allowed("y/a", "x/c", TCP80, false),
        "x/c is isolated now"
    );
    assert!(t.allowed("x/b", "x/c", TCP80, false));
    relabel("y", "b", "b");
    relabel("x", "c", "c");
    env.cluster.delete(Kind::NetworkPolicy, Some("x"), "b-only");

    // Bad input fails closed: the selected pods are isolated, the rest
    // of the policy's allows still hold, nothing else changes.
    env.cluster.apply(np("x", "bad-cidr", json!({
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"ipBlock": {"cidr": "10.244.0.0/99"}}, {"namespaceSelector": {"matchLabels": {"ns": "z"}}}]}],
    })));
    env.cluster.apply(np("y", "bad-selector", json!({
        "podSelector": {"matchExpressions": [{"key": "pod", "operator": "Sideways", "values": ["a"]}]},
        "ingress": [{}],
    })));
    converged(&env).await;
    let have = Tracer::new(&env).matrix(TCP80, false);
    Reach::all(true)
        .pairs(|s, d| (d == "x/a").then_some(ns(s) == "z"))
        .ingress(is("y"), false)
        .check("bad input", TCP80, &have);
    running.stop().await;
}
