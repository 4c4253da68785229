//! The host's own NodePort connections routed to OVN, on a real kernel (a
//! fresh network namespace): the `local` table's rule moves from
//! preference 0 to 100, the rules and routes appear, the kernel routes a
//! NodePort through the management port and anything else (a health check
//! port, what arrives from outside) locally, a
//! converged host is left untouched, and a changed node address leaves
//! nothing of the old one behind.

mod common;

use std::net::IpAddr;
use std::process::Command;

use ipnet::IpNet;
use switchyard_api::names::MGMT_INTERFACE;
use switchyard_node::gateway::own_node_ports::{self, TABLE};

fn ip(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .output()
        .expect("ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs one [`own_node_ports::sync`] inside `ns` (the rules, routes and
/// sysctl belong to the namespace of the thread that makes them).
fn sync_in(ns: &str, node_ips: Vec<IpAddr>) -> bool {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("netns");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let (conn, h, _) = rtnetlink::new_connection().expect("netlink");
            tokio::spawn(conn);
            let link = switchyard_node::netlink::get_link(&h, MGMT_INTERFACE)
                .await
                .expect("link")
                .expect("management interface");
            let mgmt: Vec<IpNet> = vec![
                "10.244.1.2/24".parse().expect("net"),
                "fd00:10:244:1::2/64".parse().expect("net"),
            ];
            let plan = own_node_ports::plan(&node_ips, &mgmt, (30000, 32767), &[31500]);
            own_node_ports::sync(&h, link.header.index, &plan)
                .await
                .expect("sync")
        })
    })
    .join()
    .expect("sync thread")
}

#[test]
fn node_ports_on_own_addresses_go_through_the_management_port() {
    if !common::is_root() {
        panic!("needs root: network namespaces");
    }
    let ns = common::unique("onp");
    let out = Command::new("ip")
        .args(["netns", "add", &ns])
        .output()
        .expect("ip netns add");
    assert!(out.status.success());
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _cleanup = Cleanup(ns.clone());
    ip(&ns, &["link", "set", "lo", "up"]);
    // Veth pairs: this kernel may have no dummy devices.
    for (a, b) in [(MGMT_INTERFACE, "mgmt-peer"), ("uplink", "uplink-peer")] {
        ip(&ns, &["link", "add", a, "type", "veth", "peer", "name", b]);
        ip(&ns, &["link", "set", b, "up"]);
    }
    ip(
        &ns,
        &["addr", "add", "10.244.1.2/24", "dev", MGMT_INTERFACE],
    );
    ip(
        &ns,
        &[
            "addr",
            "add",
            "fd00:10:244:1::2/64",
            "dev",
            MGMT_INTERFACE,
            "nodad",
        ],
    );
    ip(&ns, &["addr", "add", "198.18.9.11/24", "dev", "uplink"]);
    ip(&ns, &["addr", "add", "198.18.9.12/24", "dev", "uplink"]);
    ip(
        &ns,
        &["addr", "add", "2001:db8:9::11/64", "dev", "uplink", "nodad"],
    );
    for l in [MGMT_INTERFACE, "uplink"] {
        ip(&ns, &["link", "set", l, "up"]);
    }
    let v4: IpAddr = "198.18.9.11".parse().unwrap();
    let v6: IpAddr = "2001:db8:9::11".parse().unwrap();

    assert!(sync_in(&ns, vec![v4, v6]), "a bare host needs changes");
    let rules = ip(&ns, &["rule"]);
    for want in [
        "49:\tfrom all to 198.18.9.11 iif lo ipproto tcp dport 31500 lookup local",
        "50:\tfrom all to 198.18.9.11 iif lo ipproto tcp dport 30000-32767 lookup 7900",
        "50:\tfrom all to 198.18.9.11 iif lo ipproto udp dport 30000-32767 lookup 7900",
        "50:\tfrom all to 198.18.9.11 iif lo ipproto sctp dport 30000-32767 lookup 7900",
        "100:\tfrom all lookup local",
    ] {
        assert!(rules.contains(want), "{want:?} not in\n{rules}");
    }
    assert!(
        !rules.lines().any(|l| l.starts_with("0:")),
        "the local rule is still at 0:\n{rules}"
    );
    let rules6 = ip(&ns, &["-6", "rule"]);
    assert!(
        rules6.contains(
            "from all to 2001:db8:9::11 iif lo ipproto tcp dport 30000-32767 lookup 7900"
        ),
        "{rules6}"
    );
    // What the kernel now decides.
    let np = ip(
        &ns,
        &[
            "route",
            "get",
            "198.18.9.11",
            "ipproto",
            "tcp",
            "dport",
            "30080",
        ],
    );
    assert!(
        np.contains(&format!("dev {MGMT_INTERFACE}")) && np.contains("src 10.244.1.2"),
        "{np}"
    );
    let other = ip(
        &ns,
        &[
            "route",
            "get",
            "198.18.9.11",
            "ipproto",
            "tcp",
            "dport",
            "22",
        ],
    );
    assert!(other.starts_with("local "), "{other}");
    // The host's own health check port stays the host's.
    let hc = ip(
        &ns,
        &[
            "route",
            "get",
            "198.18.9.11",
            "ipproto",
            "tcp",
            "dport",
            "31500",
        ],
    );
    assert!(hc.starts_with("local "), "{hc}");
    // What arrives from outside for the range is delivered locally (a
    // host process there, such as the health check server, answers).
    let incoming = ip(
        &ns,
        &[
            "route",
            "get",
            "198.18.9.11",
            "from",
            "198.18.9.1",
            "iif",
            "uplink",
            "ipproto",
            "tcp",
            "dport",
            "30080",
        ],
    );
    assert!(incoming.starts_with("local "), "{incoming}");
    let np6 = ip(
        &ns,
        &[
            "-6",
            "route",
            "get",
            "2001:db8:9::11",
            "ipproto",
            "udp",
            "dport",
            "31000",
        ],
    );
    assert!(np6.contains("src fd00:10:244:1::2"), "{np6}");
    let accept = Command::new("ip")
        .args(["netns", "exec", &ns, "cat"])
        .arg(format!(
            "/proc/sys/net/ipv4/conf/{MGMT_INTERFACE}/accept_local"
        ))
        .output()
        .expect("cat");
    assert_eq!(String::from_utf8_lossy(&accept.stdout).trim(), "1");

    // Converged: a restarted agent changes nothing.
    assert!(!sync_in(&ns, vec![v4, v6]), "a converged host was changed");

    // The IPv4 address changes, IPv6 goes: nothing of them is left.
    let v4b: IpAddr = "198.18.9.12".parse().unwrap();
    assert!(sync_in(&ns, vec![v4b]));
    let rules = ip(&ns, &["rule"]);
    assert!(!rules.contains("198.18.9.11"), "{rules}");
    assert!(
        rules.contains("to 198.18.9.12 iif lo ipproto tcp"),
        "{rules}"
    );
    assert!(!ip(&ns, &["-6", "rule"]).contains("lookup 7900"));
    let table = TABLE.to_string();
    let routes = ip(&ns, &["route", "show", "table", &table]);
    assert!(
        routes.contains("198.18.9.12") && !routes.contains("198.18.9.11"),
        "{routes}"
    );
    assert!(ip(&ns, &["-6", "route", "show", "table", &table])
        .trim()
        .is_empty());
    assert!(!sync_in(&ns, vec![v4b]));
}
