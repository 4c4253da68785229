//! Churn: 200 pods created and deleted in waves over 3 nodes, with the
//! controller killed during one wave and a node agent killed during
//! another. Both restart; the cluster converges with every live pod
//! reachable, and afterwards nothing leaked: no address, no NB row
//! without its pod, no OVS port, veth or network namespace without its
//! pod on any node. Then `down` leaves the machine as it was.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use switchyard_e2e::probe::{self, Proto};
use switchyard_e2e::{pod_spec, Sandbox, SandboxOptions};

const WAVES: usize = 5;
const PER_WAVE: usize = 40;

fn wave(sb: &Sandbox, w: usize) -> Vec<(String, String)> {
    (0..PER_WAVE)
        .map(|i| {
            let name = format!("w{w}-p{i}");
            sb.create_pod(pod_spec("churn", &name, None, vec![]))
                .unwrap();
            ("churn".to_string(), name)
        })
        .collect()
}

fn delete_all(sb: &Sandbox, pods: &[(String, String)]) -> Vec<String> {
    pods.iter()
        .filter_map(|(ns, n)| sb.delete_pod_nowait(ns, n))
        .collect()
}

/// One pod per node pings every live pod.
fn assert_reachable(sb: &Sandbox, live: &[(String, String)]) {
    let mut sources = Vec::new();
    for node in 0..sb.node_count() {
        if let Some((ns, n)) = live
            .iter()
            .find(|(ns, n)| sb.pod_node_index(ns, n) == Some(node))
        {
            sources.push(sb.pod_netns(ns, n).unwrap());
        }
    }
    assert_eq!(sources.len(), sb.node_count());
    let targets: Vec<(String, IpAddr)> = live
        .iter()
        .map(|(ns, n)| (n.clone(), sb.pod_ips(ns, n)[0]))
        .collect();
    std::thread::scope(|s| {
        for src in &sources {
            let targets = &targets;
            s.spawn(move || {
                for (name, ip) in targets {
                    probe::probe(src, Proto::Icmp, *ip, None, common::PROBE_TIMEOUT)
                        .unwrap_or_else(|e| panic!("{src} -> {name} ({ip}): {e:#}"));
                }
            });
        }
    });
}

#[test]
fn churn_with_controller_and_agent_kills_converges_without_leaks() {
    common::init_tracing();
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let before = common::MachineState::now();
    let sb = common::up(SandboxOptions::new(3, dir.path())).expect("sandbox up");
    let index = sb.index();
    let ready = Duration::from_secs(180);

    let mut live: Vec<(String, String)> = Vec::new();
    let mut created = 0;
    for w in 0..WAVES {
        let new = wave(&sb, w);
        created += new.len();
        match w {
            1 => {
                // The controller dies while pods wait for their addresses
                // and while the previous wave is deleted.
                sb.kill_controller();
                let gone = delete_all(&sb, &live);
                assert_eq!(gone.len(), live.len());
                live.clear();
                sb.restart_controller().unwrap();
            }
            3 => {
                // A node agent dies while its pods are added and deleted.
                sb.kill_node_agent(1);
                let gone = delete_all(&sb, &live);
                assert_eq!(gone.len(), live.len());
                live.clear();
                sb.restart_node_agent(1).unwrap();
            }
            _ => {
                let gone = delete_all(&sb, &live);
                assert_eq!(gone.len(), live.len());
                live.clear();
            }
        }
        live.extend(new);
        sb.wait_pods_ready(ready)
            .unwrap_or_else(|e| panic!("wave {w}: {e:#}"));
    }
    assert_eq!(created, 200);
    assert_eq!(live.len(), PER_WAVE);
    assert!(sb.all_annotated());
    common::assert_converges_without_leaks(&sb, &live, Duration::from_secs(60));
    assert_reachable(&sb, &live);

    // Everything goes: nothing may be left of any pod.
    let gone = delete_all(&sb, &live);
    sb.wait_torn_down(&gone, Duration::from_secs(120)).unwrap();
    common::assert_converges_without_leaks(&sb, &[], Duration::from_secs(60));

    sb.down().unwrap();
    common::assert_machine_restored(&before, index, dir.path());
}
