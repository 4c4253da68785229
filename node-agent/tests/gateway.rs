//! The gateway bridge on a real chassis (userspace datapath): created from
//! an interface that carries the node's addresses and default routes,
//! which move onto the bridge; mapped as OVN's physical network; its flows
//! installed; what it learnt published; and after an `ovs-vswitchd`
//! restart (which destroys the bridge's device and flows) the addresses,
//! routes and flows come back without anyone's help.

mod common;

use std::process::Command;
use std::time::Duration;

use ovn_testbed::{wait_until, Chassis, ChassisOptions, OvnCentral};
use switchyard_node::gateway::{monitor, Gateway, GatewayConfig};
use switchyard_node::ovs::Ovs;

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn in_ns(ns: &str, args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .expect("ip netns exec")
}

/// Runs `f` on a thread inside network namespace `ns`, with a runtime of
/// its own: the gateway task's netlink sockets belong to that namespace.
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("netns");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
}

#[test]
fn creates_the_bridge_from_an_interface_and_restores_it_after_a_vswitchd_restart() {
    if !common::is_root() {
        panic!("needs root: network namespaces and OVS daemons");
    }
    let dir = tempfile::Builder::new()
        .prefix("sygw")
        .tempdir_in("/tmp")
        .unwrap();
    let central = OvnCentral::start(dir.path()).expect("OVN central");
    let name = common::unique("g");
    let mut chassis = Chassis::start(dir.path(), &central.sb_remote(), ChassisOptions::new(&name))
        .expect("chassis");
    let ns = chassis.netns().unwrap().to_string();
    // Another host on the node's link: eth0's peer in a namespace of its own.
    let outside = common::unique("gwo");
    ip(&["netns", "add", &outside]);
    struct DelNs(String);
    impl Drop for DelNs {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _outside_guard = DelNs(outside.clone());
    ip(&[
        "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0", "netns",
        &outside,
    ]);
    for (n, dev, addrs) in [
        (&ns, "eth0", ["192.0.2.10/24", "2001:db8:99::10/64"]),
        (&outside, "peer0", ["192.0.2.1/24", "2001:db8:99::1/64"]),
    ] {
        for a in addrs {
            ip(&["-n", n, "addr", "add", a, "dev", dev, "nodad"]);
        }
        ip(&["-n", n, "link", "set", dev, "up"]);
        assert!(in_ns(n, &["ethtool", "-K", dev, "tx", "off"])
            .status
            .success());
    }
    ip(&["-n", &ns, "route", "add", "default", "via", "192.0.2.1"]);
    ip(&[
        "-n",
        &ns,
        "-6",
        "route",
        "add",
        "default",
        "via",
        "2001:db8:99::1",
    ]);
    let eth0_mac = ip(&["-n", &ns, "-o", "link", "show", "eth0"])
        .split("link/ether ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();

    let (tx, mut rx) = tokio::sync::watch::channel(None);
    let cfg = GatewayConfig {
        node: name.clone(),
        bridge: Some("br-ex".into()),
        interface: Some("eth0".into()),
        integration_bridge: "br-int".into(),
        ovs_rundir: chassis.dir().to_path_buf(),
        datapath_type: Some("netdev".into()),
        node_port_range: None,
    };
    let remote = chassis.ovs_remote();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = in_netns(&ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let ovs = Ovs::connect(&remote, Duration::from_secs(10))
                .await
                .unwrap();
            let gw = Gateway {
                cfg,
                ovs,
                out: tx,
                kicks: monitor::start().unwrap(),
                services: None,
            };
            tokio::select! {
                _ = gw.run() => {}
                _ = stop_rx => {}
            }
        });
    });

    // Published: the interface's MAC, addresses and next hops, now the
    // bridge's.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let published = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(30),
            rx.wait_for(|g| g.as_ref().is_some_and(|g| g.ips.len() == 2)),
        )
        .await
        .expect("the gateway published within 30 s")
        .unwrap()
        .clone()
        .unwrap()
    });
    assert_eq!(published.bridge, "br-ex");
    assert_eq!(published.mac, eth0_mac);
    assert_eq!(
        published.ips,
        vec![
            "192.0.2.10/24".parse().unwrap(),
            "2001:db8:99::10/64".parse().unwrap()
        ]
    );
    assert_eq!(
        published.next_hops,
        vec![
            "192.0.2.1".parse::<std::net::IpAddr>().unwrap(),
            "2001:db8:99::1".parse().unwrap()
        ]
    );
    // The addresses moved; the bridge holds eth0; physnet maps to it.
    let eth0 = ip(&["-n", &ns, "-o", "addr", "show", "dev", "eth0"]);
    assert!(!eth0.contains("192.0.2.10"), "{eth0}");
    let ports = chassis.vsctl(&["list-ports", "br-ex"]).unwrap();
    assert_eq!(ports.trim(), "eth0");
    let mappings = chassis
        .vsctl(&[
            "get",
            "Open_vSwitch",
            ".",
            "external_ids:ovn-bridge-mappings",
        ])
        .unwrap();
    assert_eq!(mappings.trim().trim_matches('"'), "physnet:br-ex");

    let flows = |c: &Chassis| -> Vec<String> {
        let out = Command::new("ovs-ofctl")
            .args(["--timeout=10", "dump-flows"])
            .arg(format!("unix:{}", c.dir().join("br-ex.mgmt").display()))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("cookie=0x53594757"))
            .map(str::to_string)
            .collect()
    };
    let reaches_outside = |what: &str| {
        for dst in ["192.0.2.1", "2001:db8:99::1"] {
            wait_until(Duration::from_secs(30), what, || {
                in_ns(&ns, &["ping", "-c1", "-W1", dst])
                    .status
                    .success()
                    .then_some(())
            })
            .unwrap_or_else(|e| panic!("{what}: {dst}: {e}"));
        }
    };
    wait_until(Duration::from_secs(30), "the gateway flows", || {
        (flows(&chassis).len() == 10).then_some(())
    })
    .unwrap();
    reaches_outside("the host reaches its link through the bridge");

    // ovs-vswitchd stops, taking its datapath down with it (`exit
    // --cleanup`: the userspace datapath's tap devices go), and starts
    // again: the device comes back empty, the flows gone.
    let exit = Command::new("ovs-appctl")
        .arg(format!(
            "--target={}",
            chassis.dir().join("ovs-vswitchd.ctl").display()
        ))
        .args(["exit", "--cleanup"])
        .output()
        .unwrap();
    assert!(
        exit.status.success(),
        "{}",
        String::from_utf8_lossy(&exit.stderr)
    );
    wait_until(Duration::from_secs(30), "br-ex's device to go", || {
        (!in_ns(&ns, &["ip", "link", "show", "br-ex"])
            .status
            .success())
        .then_some(())
    })
    .unwrap();
    chassis.restart_vswitchd().expect("ovs-vswitchd restarts");
    wait_until(
        Duration::from_secs(30),
        "addresses restored on br-ex",
        || {
            let a = ip(&["-n", &ns, "-o", "addr", "show", "dev", "br-ex"]);
            (a.contains("192.0.2.10/24") && a.contains("2001:db8:99::10/64")).then_some(())
        },
    )
    .unwrap();
    wait_until(Duration::from_secs(30), "the gateway flows back", || {
        (flows(&chassis).len() == 10).then_some(())
    })
    .unwrap();
    let routes = ip(&["-n", &ns, "route", "show", "default"]);
    assert!(routes.contains("via 192.0.2.1 dev br-ex"), "{routes}");
    reaches_outside("the host reaches its link again");
    // The same device is not "restored" again: a removed address stays
    // removed, and the annotation says so.
    ip(&[
        "-n",
        &ns,
        "addr",
        "del",
        "2001:db8:99::10/64",
        "dev",
        "br-ex",
    ]);
    rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(30),
            rx.wait_for(|g| g.as_ref().is_some_and(|g| g.ips.len() == 1)),
        )
        .await
        .expect("the removal published")
        .unwrap();
    });
    let a = ip(&["-n", &ns, "-o", "addr", "show", "dev", "br-ex"]);
    assert!(!a.contains("2001:db8:99::10"), "{a}");
    let _ = stop_tx.send(());
    task.join().unwrap();
}
