//! End-to-end tests of the CNI plugin and daemon against real OVN and OVS.
//! They need root (network namespaces, OVS); without it they skip.

mod common;

use std::time::Duration;

use common::*;
use ovn_testbed::wait_for;
use serde_json::json;

macro_rules! need_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_connects_pods_to_each_other_and_to_the_host() {
    need_root!();
    let node = Node::start().await;
    let a = node.pod(1, true).await;
    let b = node.pod(2, true).await;

    let result = node.add(&a);
    assert_eq!(result["cniVersion"], "1.1.0");
    let ifaces = result["interfaces"].as_array().unwrap();
    let pod_if = ifaces
        .iter()
        .position(|i| i["name"] == "eth0")
        .expect("eth0 in result");
    assert_eq!(ifaces[pod_if]["mac"], a.mac.as_str());
    assert_eq!(ifaces[pod_if]["sandbox"], a.netns_path().as_str());
    assert_eq!(result["ips"][0]["address"], format!("{}/24", a.ip));
    assert_eq!(result["ips"][0]["gateway"], GATEWAY);
    assert_eq!(result["ips"][0]["interface"], pod_if);
    node.add(&b);

    // The interface inside the pod: name, address, MAC, default route.
    let show = std::process::Command::new("ip")
        .args(["-n", &a.netns, "addr", "show", "eth0"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(text.contains(&format!("{}/24", a.ip)), "{text}");
    assert!(text.contains(&a.mac), "{text}");
    let routes = std::process::Command::new("ip")
        .args(["-n", &a.netns, "route"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&routes.stdout).contains(&format!("default via {GATEWAY}")));

    // OVS: the port carries iface-id, iface-id-ver and the sandbox, and OVN
    // installed it.
    let host = result["interfaces"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let ids = node
        .chassis
        .vsctl(&["get", "Interface", &host, "external_ids"])
        .unwrap();
    assert!(ids.contains("iface-id=default_pod1"), "{ids}");
    assert!(ids.contains(&format!("iface-id-ver={}", a.uid)), "{ids}");
    assert!(ids.contains(&a.container_id), "{ids}");
    assert!(ids.contains("ovn-installed=\"true\""), "{ids}");
    // The port's link came up before OVS had it: ovs-vswitchd saw a port
    // appear, not a port appear and then change state (each link change
    // reconfigures every bridge and port and is written back to OVS).
    let resets = node
        .chassis
        .vsctl(&["get", "Interface", &host, "link_resets"])
        .unwrap();
    assert_eq!(
        resets.trim(),
        "0",
        "link state changed after the port was added"
    );
    let link_state = node
        .chassis
        .vsctl(&["get", "Interface", &host, "link_state"])
        .unwrap();
    assert_eq!(link_state.trim(), "up");
    // No IPv6 on the host end (no link-local address, so no duplicate
    // address detection and no address or route events a second later).
    let v6 = node.on_host(&["ip", "-6", "addr", "show", "dev", &host]);
    assert!(v6.status.success());
    assert!(
        String::from_utf8_lossy(&v6.stdout).trim().is_empty(),
        "host end has IPv6 addresses: {}",
        String::from_utf8_lossy(&v6.stdout)
    );

    // TX checksum offload is off on both ends (the userspace datapath
    // forwards unfinished checksums otherwise).
    let pod_k = std::process::Command::new("ip")
        .args(["netns", "exec", &a.netns, "ethtool", "-k", "eth0"])
        .output()
        .unwrap();
    let pod_k = String::from_utf8_lossy(&pod_k.stdout).into_owned();
    assert!(pod_k.contains("tx-checksumming: off"), "{pod_k}");
    let host_k = node.on_host(&["ethtool", "-k", &host]);
    let host_k = String::from_utf8_lossy(&host_k.stdout).into_owned();
    assert!(host_k.contains("tx-checksumming: off"), "{host_k}");

    ping_until(Some(&a.netns), &b.ip, None).unwrap();
    ping_until(Some(&b.netns), &a.ip, None).unwrap();
    tcp_round_trip(&a.netns, &a.ip, &b.netns).unwrap();
    udp_round_trip(&b.netns, &b.ip, &a.netns).unwrap();

    // The host reaches both pods through the management port.
    ping_until(None, &a.ip, Some(&node)).unwrap_or_else(|e| panic!("{e}\n{}", node.daemon_log()));
    ping_until(None, &b.ip, Some(&node)).unwrap();

    // Metrics count the ADDs by command and result.
    let text = node.metrics_text();
    assert!(
        text.contains(
            "switchyard_node_cni_request_duration_seconds_count{command=\"ADD\",result=\"ok\"} 2"
        ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn del_is_idempotent_and_add_after_del_works() {
    need_root!();
    let node = Node::start().await;
    let a = node.pod(1, true).await;
    let b = node.pod(2, true).await;
    let result = node.add(&a);
    node.add(&b);
    let host = result["interfaces"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(node.ports().contains(&host));
    assert!(node.host_link_exists(&host));

    node.del(&a);
    assert!(!node.ports().contains(&host), "port still on br-int");
    assert!(!node.host_link_exists(&host), "host veth still there");
    let inside = std::process::Command::new("ip")
        .args(["-n", &a.netns, "link", "show", "eth0"])
        .output()
        .unwrap();
    assert!(!inside.status.success(), "eth0 still in the pod");

    // Again, and for a container nobody knows, and without a netns.
    node.del(&a);
    let mut env = node.env("DEL", &a);
    for (k, v) in env.iter_mut() {
        if k == "CNI_CONTAINERID" {
            *v = "unknowncontainer".into();
        }
    }
    env.retain(|(k, _)| k != "CNI_NETNS");
    let out = node.cni(&env, &node.conf("1.0.0").to_string());
    assert!(out.ok(), "{}", out.stdout);

    // ADD after DEL works and the pod talks again.
    node.add(&a);
    assert!(node.ports().contains(&host));
    ping_until(Some(&a.netns), &b.ip, None).unwrap();

    // DEL after the pod's namespace is gone still succeeds.
    std::process::Command::new("ip")
        .args(["netns", "del", &b.netns])
        .status()
        .unwrap();
    node.del(&b);
    wait_for(Duration::from_secs(10), "b's port to go", || {
        node.ports().len() == 2
    })
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_notices_a_removed_address_and_gc_removes_leaks() {
    need_root!();
    let node = Node::start().await;
    let a = node.pod(1, true).await;
    let b = node.pod(2, true).await;
    let ra = node.add(&a);
    let rb = node.add(&b);

    let mut conf = node.conf("1.1.0");
    conf["prevResult"] = ra.clone();
    let out = node.cni(&node.env("CHECK", &a), &conf.to_string());
    assert!(out.ok(), "CHECK of a healthy pod failed: {}", out.stdout);

    let st = std::process::Command::new("ip")
        .args([
            "-n",
            &a.netns,
            "addr",
            "del",
            &format!("{}/24", a.ip),
            "dev",
            "eth0",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let out = node.cni(&node.env("CHECK", &a), &conf.to_string());
    assert_eq!(out.error_code(), 105, "{}", out.stdout);
    assert!(out.stdout.contains(&a.ip), "{}", out.stdout);

    // GC: the runtime still lists only a; b's port and veth are leaked.
    let host_b = rb["interfaces"][0]["name"].as_str().unwrap().to_string();
    let host_a = ra["interfaces"][0]["name"].as_str().unwrap().to_string();
    let mut gc = node.conf("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": a.container_id, "ifname": "eth0"}]);
    let env = vec![
        ("CNI_COMMAND".to_string(), "GC".to_string()),
        ("CNI_PATH".to_string(), node.bin_dir.display().to_string()),
    ];
    let out = node.cni(&env, &gc.to_string());
    assert!(out.ok(), "GC failed: {}", out.stdout);
    let ports = node.ports();
    assert!(!ports.contains(&host_b), "GC left {host_b}: {ports:?}");
    assert!(ports.contains(&host_a), "GC removed a live port: {ports:?}");
    assert!(!node.host_link_exists(&host_b));
    assert!(node.host_link_exists(&host_a));

    // STATUS: available.
    let out = node.cni(
        &[("CNI_COMMAND".to_string(), "STATUS".to_string())],
        &node.conf("1.1.0").to_string(),
    );
    assert!(out.ok(), "STATUS: {}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_restart_leaves_pods_running() {
    need_root!();
    let mut node = Node::start().await;
    let a = node.pod(1, true).await;
    let b = node.pod(2, true).await;
    node.add(&a);
    node.add(&b);
    ping_until(Some(&a.netns), &b.ip, None).unwrap();

    node.kill_daemon();
    // While the daemon is down: traffic flows, and the shim says so clearly.
    ping_until(Some(&a.netns), &b.ip, None).unwrap();
    let c = node.pod(3, true).await;
    let out = node.cni(&node.env("ADD", &c), &node.conf("1.1.0").to_string());
    assert_eq!(out.error_code(), 11, "{}", out.stdout);
    assert!(out.stdout.contains("not running"), "{}", out.stdout);
    let out = node.cni(
        &[("CNI_COMMAND".to_string(), "STATUS".to_string())],
        &node.conf("1.1.0").to_string(),
    );
    assert_eq!(out.error_code(), 50, "{}", out.stdout);
    let ports_before = node.ports();

    node.start_daemon();
    assert_eq!(node.ports(), ports_before, "restart changed the ports");
    tcp_round_trip(&b.netns, &b.ip, &a.netns).unwrap();
    node.add(&c);
    ping_until(Some(&c.netns), &a.ip, None).unwrap();
    node.del(&b);
    ping_until(Some(&c.netns), &a.ip, None).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_spec_errors_and_leaves_nothing() {
    need_root!();
    let node = Node::start().await;
    let a = node.pod(1, true).await;
    let ports_before = node.ports();

    let out = node.cni(&node.env("ADD", &a), &node.conf("9.9.9").to_string());
    assert_eq!(out.error_code(), 1, "{}", out.stdout);
    assert!(out.json()["msg"].as_str().unwrap().contains("9.9.9"));

    let mut env = node.env("ADD", &a);
    env.retain(|(k, _)| k != "CNI_NETNS");
    let out = node.cni(&env, &node.conf("1.1.0").to_string());
    assert_eq!(out.error_code(), 4, "{}", out.stdout);
    assert!(out.stdout.contains("CNI_NETNS"), "{}", out.stdout);

    let out = node.cni(&node.env("ADD", &a), "{\"cniVersion\": ");
    assert_eq!(out.error_code(), 6, "{}", out.stdout);

    let mut env = node.env("ADD", &a);
    for (k, v) in env.iter_mut() {
        if k == "CNI_NETNS" {
            *v = "/var/run/netns/does-not-exist-switchyard".into();
        }
    }
    let out = node.cni(&env, &node.conf("1.1.0").to_string());
    assert_eq!(out.error_code(), 3, "{}", out.stdout);

    // A pod without an annotation: error 100 after the deadline.
    let b = node.pod(2, false).await;
    let started = std::time::Instant::now();
    let out = node.cni(&node.env("ADD", &b), &node.conf("0.4.0").to_string());
    assert_eq!(out.error_code(), 100, "{}", out.stdout);
    assert_eq!(out.json()["cniVersion"], "0.4.0");
    assert!(started.elapsed() >= Duration::from_millis(node.annotation_timeout_ms));

    assert_eq!(node.ports(), ports_before, "a failed ADD left a port");
    let links = std::process::Command::new("ip")
        .args(["-n", &b.netns, "-o", "link"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert_eq!(
        links.lines().count(),
        1,
        "a failed ADD left links in the pod: {links}"
    );

    // VERSION is answered by the shim.
    let out = node.cni(
        &[("CNI_COMMAND".to_string(), "VERSION".to_string())],
        "{\"cniVersion\":\"1.0.0\"}",
    );
    assert!(out.ok());
    assert!(out.json()["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v == "0.3.1"));

    // A 0.3.1 result carries IP versions.
    let r = {
        let out = node.cni(&node.env("ADD", &a), &node.conf("0.3.1").to_string());
        assert!(out.ok(), "{}", out.stdout);
        out.json()
    };
    assert_eq!(r["cniVersion"], "0.3.1");
    assert_eq!(r["ips"][0]["version"], "4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_for_a_new_sandbox_replaces_the_stale_port() {
    need_root!();
    let node = Node::start().await;
    let mut a = node.pod(1, true).await;
    let b = node.pod(2, true).await;
    let old = node.add(&a);
    node.add(&b);
    let old_host = old["interfaces"][0]["name"].as_str().unwrap().to_string();

    // The runtime lost the sandbox without a DEL and starts a new one for
    // the same pod, in a new namespace.
    a.container_id = format!("{}ff", a.container_id);
    let new_ns = unique("p");
    let st = std::process::Command::new("ip")
        .args(["netns", "add", &new_ns])
        .status()
        .unwrap();
    assert!(st.success());
    let old_ns = std::mem::replace(&mut a.netns, new_ns);
    let fresh = node.add(&a);
    let new_host = fresh["interfaces"][0]["name"].as_str().unwrap().to_string();
    assert_ne!(old_host, new_host);
    let ports = node.ports();
    assert!(!ports.contains(&old_host), "stale port kept: {ports:?}");
    assert!(ports.contains(&new_host));
    assert!(!node.host_link_exists(&old_host), "stale veth kept");
    ping_until(Some(&a.netns), &b.ip, None).unwrap();
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", &old_ns])
        .status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_stops_waiting_when_the_pod_is_deleted_or_replaced() {
    need_root!();
    // A long deadline: an ADD that ends must end because its pod went,
    // never because it timed out (which answers code 100, not 107).
    let node = Node::start_with_timeout(30_000).await;
    // Pod ports only: the management port arrives on its own schedule
    // (found under load: it was sometimes not there yet at the start).
    let pod_ports = || -> Vec<String> {
        node.ports()
            .into_iter()
            .filter(|p| p != switchyard_api::names::MGMT_INTERFACE)
            .collect()
    };
    let ports_before = pod_ports();

    // Deleted while the ADD waits for its annotation.
    let a = node.pod(1, false).await;
    node.write_pod_object(&a, &a.uid, false);
    let add = node.add_in_background(&a);
    node.wait_log(&a, "waiting for its network annotation");
    node.delete_pod_object(&a);
    let out = add.join().unwrap();
    assert_eq!(out.error_code(), 107, "{}", out.stdout);
    assert!(out.stdout.contains("deleted"), "{}", out.stdout);

    // Replaced by a pod of the same name (another UID) while waiting.
    let b = node.pod(2, false).await;
    node.write_pod_object(&b, &b.uid, false);
    let add = node.add_in_background(&b);
    node.wait_log(&b, "waiting for its network annotation");
    node.write_pod_object(&b, "uid-successor", true);
    let out = add.join().unwrap();
    assert_eq!(out.error_code(), 107, "{}", out.stdout);
    assert!(out.stdout.contains("uid-successor"), "{}", out.stdout);
    assert!(out.stdout.contains(&b.uid), "{}", out.stdout);

    // Informer lag: the pod source first holds the pod's predecessor (same
    // name, older UID), then nothing, then the pod itself. None of that
    // is the pod going away: the ADD waits and succeeds.
    let c = node.pod(3, false).await;
    node.write_pod_object(&c, "uid-predecessor", true);
    let add = node.add_in_background(&c);
    node.wait_log(&c, "holds another pod of this name");
    node.delete_pod_object(&c);
    node.wait_log(&c, "not in the pod source yet");
    node.annotate(&c);
    let out = add.join().unwrap();
    assert!(
        out.ok(),
        "{}\ndaemon log:\n{}",
        out.stdout,
        node.daemon_log()
    );

    // The failed ADDs left nothing behind; the third one's port is there.
    let ports = pod_ports();
    assert_eq!(ports.len(), ports_before.len() + 1, "{ports:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_publishes_its_chassis_on_the_node() {
    need_root!();
    let mut node = Node::start().await;
    let file = node.pods_dir.join("node-annotations.json");
    let chassis_id = || -> Option<String> {
        let text = std::fs::read_to_string(&file).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v[switchyard_api::annotations::NODE_CHASSIS]
            .as_str()
            .map(str::to_string)
    };
    // The chassis name is the Open_vSwitch row's system-id.
    let system_id = node
        .chassis
        .vsctl(&["get", "Open_vSwitch", ".", "external_ids:system-id"])
        .unwrap()
        .trim()
        .trim_matches('"')
        .to_string();
    assert_eq!(system_id, node.name);
    wait_for(
        Duration::from_secs(30),
        "chassis-id in node-annotations.json",
        || chassis_id().as_deref() == Some(system_id.as_str()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", node.daemon_log()));

    // A restarted daemon finds the value there and writes nothing.
    let ino = || std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&file).unwrap());
    let before = ino();
    node.kill_daemon();
    node.start_daemon();
    node.wait_log_line("node annotations published");
    assert_eq!(ino(), before, "an unchanged value was rewritten");
    let log = node.daemon_log();
    assert!(
        log.lines()
            .map(strip_ansi)
            .any(|l| l.contains("node annotations published") && l.contains("written=false")),
        "{log}"
    );

    // The system-id changes (an operator renamed the chassis): published.
    node.chassis
        .vsctl(&[
            "set",
            "Open_vSwitch",
            ".",
            "external_ids:system-id=renamed-chassis",
        ])
        .unwrap();
    wait_for(Duration::from_secs(30), "the new chassis-id", || {
        chassis_id().as_deref() == Some("renamed-chassis")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node.daemon_log()));
}
