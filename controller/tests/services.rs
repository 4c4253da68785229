//! Services against real NB and ovn-northd, driven through the in-memory
//! API server (which allocates ClusterIPs and NodePorts and keeps
//! EndpointSlices as kube-apiserver and kube-controller-manager do).

mod common;
mod svc;

use std::collections::{BTreeMap, BTreeSet};

use common::{eventually, Env};
use k8s_openapi::api::core::v1::{ClientIPConfig, ServiceSpec, SessionAffinityConfig};
use svc::*;
use switchyard_controller::k8s::{Cluster, Kind, ObjectRef};
use switchyard_controller::translate::service::{GROUP_CLUSTER, GROUP_GATEWAYS, GROUP_SWITCHES};

fn dual_stack_env_config(env: &mut Env) {
    env.config.service_cidrs = vec![
        "10.96.0.0/16".parse().unwrap(),
        "fd00:96::/112".parse().unwrap(),
    ];
    env.cluster.set_service_cidrs(&env.config.service_cidrs);
}

fn names(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

async fn status_ingress(c: &kube_memory::MemoryCluster, name: &str, ips: &[&str]) {
    let s = c.service(NS, name).unwrap();
    let target = ObjectRef::new(
        Kind::Service,
        Some(NS),
        name,
        s.metadata.uid.as_deref().unwrap(),
    );
    let ingress: Vec<serde_json::Value> =
        ips.iter().map(|ip| serde_json::json!({"ip": ip})).collect();
    c.patch_status(
        target,
        None,
        serde_json::json!({"loadBalancer": {"ingress": ingress}}),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_and_policy_becomes_exact_rows_that_do_not_grow_with_nodes() {
    let mut env = Env::new(&["10.244.0.0/16/24", "fd00:10:244::/48/64"]).await;
    dual_stack_env_config(&mut env);
    let c = env.cluster.clone();
    c.apply_node(node("n1", &["192.168.0.1", "fd00:192::1"]));
    c.apply_node(node("n2", &["192.168.0.2", "fd00:192::2"]));
    let running = env.start();
    let ip1 = ready_backend(&c, backend("web-1", "n1", "web", 8080)).await;
    let ip2 = ready_backend(&c, backend("web-2", "n2", "web", 8080)).await;
    // A later rollout generation: its port named http is another number.
    let ip3 = ready_backend(&c, backend("web-3", "n2", "web", 9090)).await;

    let http = || vec![port("", "TCP", 80, "http")];
    c.apply_service(service(
        "web",
        ServiceSpec {
            ip_family_policy: Some("PreferDualStack".into()),
            selector: selector("web"),
            ports: Some(vec![
                port("http", "TCP", 80, "http"),
                port("dns", "UDP", 53, "5353"),
                port("sig", "SCTP", 9000, "9000"),
            ]),
            ..Default::default()
        },
    ));
    c.apply_service(service(
        "np",
        ServiceSpec {
            type_: Some("NodePort".into()),
            selector: selector("web"),
            ports: Some(http()),
            ..Default::default()
        },
    ));
    c.apply_service(service(
        "lb",
        ServiceSpec {
            type_: Some("LoadBalancer".into()),
            external_traffic_policy: Some("Local".into()),
            external_ips: Some(vec!["192.0.2.10".into()]),
            selector: selector("web"),
            ports: Some(http()),
            ..Default::default()
        },
    ));
    status_ingress(&c, "lb", &["198.51.100.7"]).await;
    c.apply_service(service(
        "itp",
        ServiceSpec {
            internal_traffic_policy: Some("Local".into()),
            selector: selector("web"),
            ports: Some(http()),
            ..Default::default()
        },
    ));
    c.apply_service(service(
        "sticky",
        ServiceSpec {
            type_: Some("NodePort".into()),
            session_affinity: Some("ClientIP".into()),
            session_affinity_config: Some(SessionAffinityConfig {
                client_ip: Some(ClientIPConfig {
                    timeout_seconds: Some(600),
                }),
            }),
            selector: selector("web"),
            ports: Some(http()),
            ..Default::default()
        },
    ));
    c.apply_service(service(
        "headless",
        ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: selector("web"),
            ports: Some(http()),
            ..Default::default()
        },
    ));
    c.apply_service(service(
        "ext",
        ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some("db.example.com".into()),
            ..Default::default()
        },
    ));

    let b = |ip: &[std::net::IpAddr], port: u16| {
        let mut v: Vec<std::net::SocketAddr> = ip
            .iter()
            .map(|ip| std::net::SocketAddr::new(*ip, port))
            .collect();
        v.sort();
        v
    };
    let join = |v: Vec<std::net::SocketAddr>| {
        v.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let all_http = |v6: bool| {
        let i = usize::from(v6);
        let mut v = b(&[ip1[i], ip2[i]], 8080);
        v.extend(b(&[ip3[i]], 9090));
        v.sort();
        join(v)
    };
    let all_on = |p: u16, v6: bool| {
        let i = usize::from(v6);
        join(b(&[ip1[i], ip2[i], ip3[i]], p))
    };
    let web_ips = cluster_ips(&c, "web");
    assert_eq!(web_ips.len(), 2, "PreferDualStack on a dual-stack cluster");
    let cip = |n: &str| cluster_ips(&c, n)[0].clone();
    let (np, lb_np, sticky_np) = (
        node_port(&c, "np"),
        node_port(&c, "lb"),
        node_port(&c, "sticky"),
    );
    let m = |pairs: &[(String, String)]| -> BTreeMap<String, String> {
        pairs.iter().cloned().collect()
    };
    let local_lb = "^local.ns.lb.tcp.80.v4".to_string();
    let want_vips: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::from([
        (
            "svc:ns/web:tcp".into(),
            m(&[
                (vip(&web_ips[0], 80), all_http(false)),
                (vip(&web_ips[1], 80), all_http(true)),
            ]),
        ),
        (
            "svc:ns/web:udp".into(),
            m(&[
                (vip(&web_ips[0], 53), all_on(5353, false)),
                (vip(&web_ips[1], 53), all_on(5353, true)),
            ]),
        ),
        (
            "svc:ns/web:sctp".into(),
            m(&[
                (vip(&web_ips[0], 9000), all_on(9000, false)),
                (vip(&web_ips[1], 9000), all_on(9000, true)),
            ]),
        ),
        (
            "svc:ns/np:tcp".into(),
            m(&[(vip(&cip("np"), 80), all_http(false))]),
        ),
        (
            "svc:ns/np:tcp:nodeport:v4".into(),
            m(&[(format!("^NODEIP_V4:{np}"), all_http(false))]),
        ),
        (
            "svc:ns/lb:tcp".into(),
            m(&[(vip(&cip("lb"), 80), all_http(false))]),
        ),
        (
            "svc:ns/lb:tcp:switches".into(),
            m(&[
                (vip("192.0.2.10", 80), all_http(false)),
                (vip("198.51.100.7", 80), all_http(false)),
            ]),
        ),
        (
            "svc:ns/lb:tcp:nodeport:v4".into(),
            m(&[(format!("^NODEIP_V4:{lb_np}"), all_http(false))]),
        ),
        (
            "svc:ns/lb:tcp:gateway-local:v4".into(),
            m(&[
                (format!("^NODEIP_V4:{lb_np}"), local_lb.clone()),
                (vip("192.0.2.10", 80), local_lb.clone()),
                (vip("198.51.100.7", 80), local_lb.clone()),
            ]),
        ),
        (
            "svc:ns/itp:tcp:local:v4".into(),
            m(&[(vip(&cip("itp"), 80), "^local.ns.itp.tcp.80.v4".into())]),
        ),
        (
            "svc:ns/sticky:tcp".into(),
            m(&[(vip(&cip("sticky"), 80), all_http(false))]),
        ),
        (
            "svc:ns/sticky:tcp:nodeport".into(),
            m(&[
                (vip("192.168.0.1", sticky_np), all_http(false)),
                (vip("192.168.0.2", sticky_np), all_http(false)),
            ]),
        ),
    ]);
    eventually(T, "every load balancer exact", || {
        let have: BTreeMap<String, BTreeMap<String, String>> = load_balancers(&env)
            .into_iter()
            .map(|(n, l)| (n, l.vips))
            .collect();
        (have == want_vips)
            .then_some(())
            .ok_or(format!("have {have:#?}\nwant {want_vips:#?}"))
    })
    .await;
    let lbs = load_balancers(&env);
    assert_eq!(load_balancer_rows(&env), lbs.len(), "one row per name");
    // Options: reject and affinity on explicit rows, ct_flush on UDP,
    // templates with their family, skip_snat where the client is kept.
    assert_eq!(
        lbs["svc:ns/web:tcp"].options,
        BTreeMap::from([("reject".into(), "true".into())])
    );
    assert_eq!(lbs["svc:ns/web:udp"].options["ct_flush"], "true");
    assert_eq!(lbs["svc:ns/web:sctp"].protocol, "sctp");
    assert_eq!(lbs["svc:ns/sticky:tcp"].options["affinity_timeout"], "600");
    assert_eq!(
        lbs["svc:ns/sticky:tcp:nodeport"].options["affinity_timeout"],
        "600"
    );
    assert_eq!(lbs["svc:ns/np:tcp:nodeport:v4"].options["template"], "true");
    assert_eq!(
        lbs["svc:ns/np:tcp:nodeport:v4"].options["address-family"],
        "ipv4"
    );
    assert_eq!(
        lbs["svc:ns/lb:tcp:gateway-local:v4"].options["skip_snat"],
        "true"
    );

    let groups = group_members(&env);
    assert_eq!(
        groups[GROUP_CLUSTER],
        names(&[
            "svc:ns/web:tcp",
            "svc:ns/web:udp",
            "svc:ns/web:sctp",
            "svc:ns/np:tcp",
            "svc:ns/lb:tcp",
            "svc:ns/sticky:tcp"
        ])
    );
    assert_eq!(
        groups[GROUP_SWITCHES],
        names(&[
            "svc:ns/np:tcp:nodeport:v4",
            "svc:ns/lb:tcp:switches",
            "svc:ns/lb:tcp:nodeport:v4",
            "svc:ns/itp:tcp:local:v4",
            "svc:ns/sticky:tcp:nodeport"
        ])
    );
    assert_eq!(
        groups[GROUP_GATEWAYS],
        names(&[
            "svc:ns/np:tcp:nodeport:v4",
            "svc:ns/lb:tcp:gateway-local:v4",
            "svc:ns/sticky:tcp:nodeport"
        ])
    );
    assert_eq!(
        groups_of(&env, "Logical_Switch", "node-n1"),
        names(&[GROUP_CLUSTER, GROUP_SWITCHES])
    );
    assert_eq!(
        groups_of(&env, "Logical_Router", "cluster-router"),
        names(&[GROUP_CLUSTER])
    );

    let vars = template_vars(&env);
    let local_n2 = join({
        let mut v = b(&[ip2[0]], 8080);
        v.extend(b(&[ip3[0]], 9090));
        v.sort();
        v
    });
    let want_n1 = BTreeMap::from([
        ("NODEIP_V4".to_string(), "192.168.0.1".to_string()),
        ("NODEIP_V6".to_string(), "fd00:192::1".to_string()),
        (
            "local.ns.lb.tcp.80.v4".to_string(),
            format!("{}:8080", ip1[0]),
        ),
        (
            "local.ns.itp.tcp.80.v4".to_string(),
            format!("{}:8080", ip1[0]),
        ),
    ]);
    assert_eq!(vars["n1"], want_n1);
    assert_eq!(vars["n2"]["local.ns.itp.tcp.80.v4"], local_n2);
    assert_eq!(vars.len(), 2);

    // The Warning Events: none (affinity with Cluster policies is fine).
    assert!(
        c.events().iter().all(|e| e.regarding.kind != Kind::Service),
        "{:?}",
        c.events()
    );

    // A third node: the same load balancer rows (the explicit ClientIP
    // NodePort lists one address more), one more template variable row.
    let before: BTreeSet<String> = lbs.keys().cloned().collect();
    c.apply_node(node("n3", &["192.168.0.3"]));
    eventually(T, "n3's variables and its ClientIP NodePort", || {
        let v = template_vars(&env);
        let l = load_balancers(&env);
        let sticky = l.get("svc:ns/sticky:tcp:nodeport").map(|l| l.vips.len());
        (v.len() == 3 && sticky == Some(3))
            .then_some(())
            .ok_or(format!("{} variable rows, sticky vips {sticky:?}", v.len()))
    })
    .await;
    let after = load_balancers(&env);
    assert_eq!(after.keys().cloned().collect::<BTreeSet<_>>(), before);
    for (n, l) in &after {
        if n != "svc:ns/sticky:tcp:nodeport" {
            assert_eq!(l, &lbs[n], "{n} changed with a new node");
        }
    }
    let services_with_rows = 5.0;
    println!(
        "NB rows per Service here: {:.1} Load_Balancer rows for {services_with_rows} Services, the same on 2 or 3 nodes",
        after.len() as f64 / services_with_rows
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_churn_converges_to_what_kube_proxy_would_use() {
    let env = Env::new(&[]).await;
    let c = env.cluster.clone();
    c.apply_node(node("n1", &["192.168.0.1"]));
    c.apply_node(node("n2", &["192.168.0.2"]));
    let running = env.start();
    c.apply_service(service(
        "churn",
        ServiceSpec {
            type_: Some("NodePort".into()),
            selector: selector("churn"),
            ports: Some(vec![port("", "UDP", 53, "5353")]),
            ..Default::default()
        },
    ));
    c.apply_service(service(
        "local",
        ServiceSpec {
            internal_traffic_policy: Some("Local".into()),
            selector: selector("churn"),
            ports: Some(vec![port("", "UDP", 53, "5353")]),
            ..Default::default()
        },
    ));
    for i in 0..8 {
        ready_backend(
            &c,
            backend(&format!("p{i}"), &format!("n{}", 1 + i % 2), "churn", 5353),
        )
        .await;
    }
    let cip = cluster_ips(&c, "churn")[0].clone();
    let local_ip = cluster_ips(&c, "local")[0].clone();
    let converged = |what: &'static str| {
        let env = &env;
        let c = &c;
        let (cip, local_ip) = (cip.clone(), local_ip.clone());
        async move {
            eventually(T, what, || {
                let lbs = load_balancers(env);
                let want = expected_backends(c, "churn", "", false, None);
                if want.is_empty() {
                    return Err("the slices list no backend: the test is wrong".into());
                }
                let have = lbs
                    .get("svc:ns/churn:udp")
                    .and_then(|l| l.vips.get(&vip(&cip, 53)).cloned());
                if have.as_deref() != Some(want.as_str()) {
                    return Err(format!("cluster: have {have:?}, want {want:?}"));
                }
                let np = lbs
                    .get("svc:ns/churn:udp:nodeport:v4")
                    .and_then(|l| l.vips.values().next().cloned());
                if np.as_deref() != Some(want.as_str()) {
                    return Err(format!("nodeport: have {np:?}, want {want:?}"));
                }
                if lbs
                    .get("svc:ns/local:udp:local:v4")
                    .map(|l| l.vips.contains_key(&vip(&local_ip, 53)))
                    != Some(true)
                {
                    return Err("no local template".into());
                }
                let vars = template_vars(env);
                for n in ["n1", "n2"] {
                    let want = expected_backends(c, "local", "", false, Some(n));
                    let have = vars
                        .get(n)
                        .and_then(|v| v.get("local.ns.local.udp.53.v4"))
                        .cloned();
                    if have.as_deref() != Some(want.as_str()) {
                        return Err(format!("{n}: have {have:?}, want {want:?}"));
                    }
                }
                Ok(())
            })
            .await;
        }
    };
    converged("initial backends").await;

    // Churn without waiting: pods replaced, readiness flapping, graceful
    // deletions (terminating endpoints serve only when nothing is ready).
    let mut next = 8;
    for round in 0..6 {
        for i in 0..8 {
            let name = format!("p{i}");
            if c.pod(NS, &name).is_none() {
                continue;
            }
            match (round + i) % 5 {
                0 => {
                    c.delete_pod(NS, &name);
                    let fresh = format!("p{next}");
                    next += 1;
                    c.apply_pod(backend(
                        &fresh,
                        &format!("n{}", 1 + next % 2),
                        "churn",
                        5353,
                    ));
                }
                1 => {
                    set_status(&c, &name, false);
                }
                2 => {
                    set_status(&c, &name, true);
                }
                3 => {
                    c.begin_pod_deletion(NS, &name);
                }
                _ => {}
            }
        }
    }
    // The new pods report their addresses once they have them (as a
    // kubelet does after CNI ADD).
    for p in c.pods() {
        let name = p.metadata.name.clone().unwrap();
        if p.status.as_ref().and_then(|s| s.pod_ips.as_ref()).is_none() {
            eventually(T, "new pod annotated", || {
                c.pod(NS, &name)
                    .and_then(|p| common::annotation(&p))
                    .map(|_| ())
                    .ok_or_else(|| name.clone())
            })
            .await;
            set_status(&c, &name, true);
        }
    }
    // Nothing ready on n1: its serving, terminating endpoints serve there.
    for p in c.pods() {
        let name = p.metadata.name.clone().unwrap();
        if p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("n1") {
            set_status(&c, &name, true);
            c.begin_pod_deletion(NS, &name);
        }
    }
    assert!(
        !expected_backends(&c, "local", "", false, Some("n1")).is_empty(),
        "n1 keeps serving, terminating endpoints"
    );
    converged("after churn").await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_service_leaves_no_row_and_a_restart_writes_nothing() {
    let mut env = Env::new(&[]).await;
    env.config.load_balancer_pool = vec!["198.51.100.0/29".parse().unwrap()];
    let c = env.cluster.clone();
    c.apply_node(node("n1", &["192.168.0.1"]));
    let running = env.start();
    ready_backend(&c, backend("b1", "n1", "app", 8080)).await;
    let kinds = [
        ("c", ServiceSpec::default()),
        (
            "n",
            ServiceSpec {
                type_: Some("NodePort".into()),
                ..Default::default()
            },
        ),
        (
            "l",
            ServiceSpec {
                type_: Some("LoadBalancer".into()),
                external_traffic_policy: Some("Local".into()),
                internal_traffic_policy: Some("Local".into()),
                session_affinity: Some("ClientIP".into()),
                ..Default::default()
            },
        ),
    ];
    for (name, spec) in kinds {
        c.apply_service(service(
            name,
            ServiceSpec {
                selector: selector("app"),
                ports: Some(vec![
                    port("web", "TCP", 80, "http"),
                    port("q", "UDP", 53, "53"),
                ]),
                ..spec
            },
        ));
    }
    eventually(T, "the pool's address programmed", || {
        let lbs = load_balancers(&env);
        lbs.get("svc:ns/l:tcp:switches")
            .filter(|l| l.vips.contains_key("198.51.100.1:80"))
            .map(|_| ())
            .ok_or(format!("{:?}", lbs.keys().collect::<Vec<_>>()))
    })
    .await;
    eventually(T, "synced", || {
        running.synced().then_some(()).ok_or("not synced".into())
    })
    .await;
    let rows_with_services = load_balancer_rows(&env);
    assert!(rows_with_services >= 10, "{rows_with_services}");
    running.stop().await;

    // A restart on a converged cluster: zero NB operations, no patch.
    let snapshot = || format!("{:?} {:?}", load_balancers(&env), template_vars(&env));
    let before = snapshot();
    let writes = |c: &kube_memory::MemoryCluster| {
        c.calls()
            .into_iter()
            .filter(|a| a.verb == "patch" && a.resource != "events")
            .count()
    };
    let calls = writes(&c);
    let second = env.start();
    eventually(T, "second run converged", || {
        second.synced().then_some(()).ok_or("not synced".into())
    })
    .await;
    assert_eq!(
        second.metrics.nb_operations.get(),
        0,
        "NB operations on a converged cluster"
    );
    assert_eq!(second.metrics.nb_transactions.get(), 0);
    assert_eq!(writes(&c), calls, "no status or annotation patch");
    assert_eq!(snapshot(), before);

    // Every Service goes: no load balancer, no per-Service variable.
    for name in ["c", "n", "l"] {
        c.delete(Kind::Service, Some(NS), name);
    }
    eventually(T, "no Service rows left", || {
        let rows = load_balancer_rows(&env);
        let vars = template_vars(&env);
        let leftover: Vec<&String> = vars
            .values()
            .flat_map(|v| v.keys())
            .filter(|k| !k.starts_with("NODEIP"))
            .collect();
        (rows == 0 && leftover.is_empty())
            .then_some(())
            .ok_or(format!("{rows} load balancers, variables {leftover:?}"))
    })
    .await;
    let owned = env
        .central
        .nbctl(&[
            "--bare",
            "--columns=name",
            "find",
            "Load_Balancer",
            "external_ids:switchyard.io/owner-kind=Service",
        ])
        .unwrap();
    assert!(owned.trim().is_empty(), "{owned}");
    // The groups stay, empty.
    assert!(group_members(&env).values().all(|m| m.is_empty()));
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_moves_load_balancers_between_groups() {
    let env = Env::new(&[]).await;
    let c = env.cluster.clone();
    c.apply_node(node("n1", &["192.168.0.1"]));
    let running = env.start();
    ready_backend(&c, backend("b1", "n1", "app", 8080)).await;
    let np = |policy: &str| {
        service(
            "np",
            ServiceSpec {
                type_: Some("NodePort".into()),
                external_traffic_policy: Some(policy.into()),
                selector: selector("app"),
                ports: Some(vec![port("", "TCP", 80, "http")]),
                ..Default::default()
            },
        )
    };
    let groups_are = |gateways: &[&str], what: &'static str| {
        let env = &env;
        let want = names(gateways);
        async move {
            eventually(T, what, || {
                let g = group_members(env);
                let switches = g.get(GROUP_SWITCHES).cloned().unwrap_or_default();
                let ok = g.get(GROUP_GATEWAYS) == Some(&want)
                    && switches.contains("svc:ns/np:tcp:nodeport:v4")
                    && load_balancer_rows(env) == load_balancers(env).len();
                ok.then_some(()).ok_or(format!("{g:?}"))
            })
            .await;
        }
    };
    c.apply_service(np("Cluster"));
    groups_are(
        &["svc:ns/np:tcp:nodeport:v4"],
        "the NodePort template on the gateways",
    )
    .await;
    // ETP Local: external traffic gets the node-local view instead; the
    // NodePort template leaves the gateways' group (its row is replaced,
    // since the diff adds parents but never removes one).
    c.apply_service(np("Local"));
    groups_are(
        &["svc:ns/np:tcp:gateway-local:v4"],
        "the local view on the gateways",
    )
    .await;
    c.apply_service(np("Cluster"));
    groups_are(&["svc:ns/np:tcp:nodeport:v4"], "back to Cluster").await;
    running.stop().await;
}
