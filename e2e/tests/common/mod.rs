//! Shared by the end-to-end tests.
#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use switchyard_e2e::probe::{self, Proto};
use switchyard_e2e::Sandbox;

/// Sandboxes in one test binary run one at a time: each starts a dozen
/// daemons, and CI machines have two cores.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Logs to stderr (shown for failing tests) once per binary.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

pub const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Every pod reaches every other pod's every address over ICMP, TCP and
/// UDP, the TCP/UDP reply naming the pod (pods run the echo server and
/// answer with their name). Sources are probed in parallel.
pub fn assert_full_mesh(sb: &Sandbox, pods: &[(String, String)]) {
    let targets: Vec<(String, Vec<IpAddr>)> = pods
        .iter()
        .map(|(ns, name)| (name.clone(), sb.pod_ips(ns, name)))
        .collect();
    std::thread::scope(|s| {
        for (ns, src) in pods {
            let netns = sb.pod_netns(ns, src).expect("source pod runs");
            let targets = &targets;
            s.spawn(move || {
                for (dst, ips) in targets {
                    if dst == src {
                        continue;
                    }
                    assert!(!ips.is_empty(), "{dst} has no IPs");
                    for ip in ips {
                        for proto in [Proto::Icmp, Proto::Tcp, Proto::Udp] {
                            probe::probe(&netns, proto, *ip, Some(dst), PROBE_TIMEOUT)
                                .unwrap_or_else(|e| panic!("{src} -> {dst} ({ip}) {proto}: {e:#}"));
                        }
                    }
                }
            });
        }
    });
}

/// Every node's host reaches every pod on it (ICMP and TCP).
pub fn assert_hosts_reach_their_pods(sb: &Sandbox, pods: &[(String, String)]) {
    for (ns, name) in pods {
        let node = sb.pod_node_index(ns, name).expect("pod has a node");
        for ip in sb.pod_ips(ns, name) {
            for proto in [Proto::Icmp, Proto::Tcp] {
                probe::probe(sb.node_netns(node), proto, ip, Some(name), PROBE_TIMEOUT)
                    .unwrap_or_else(|e| {
                        panic!("host of node {node} -> {name} ({ip}) {proto}: {e:#}")
                    });
            }
        }
    }
}
