//! The fault matrix (the short forms that run in CI). Each case: two
//! long-lived pods on different nodes with a client probing TCP between
//! them all along, and through a Service's ClusterIP; a guarded namespace
//! whose NetworkPolicy admits only the client, probed by the client and by
//! a denied pod all along; a churn of pods, Services and NetworkPolicies
//! (a wave of pods with its Service and policy created, the previous
//! wave's deleted, pods relabelled between them) during which one
//! component is killed and later started again. The denied probe is never
//! answered (asserted). Afterwards every pod is Running, NB holds exactly
//! the live pods' ports with distinct addresses and exactly the surviving
//! Services' load balancers and policies' ACLs and port groups, every
//! node's OVS exactly their ports and veths, every live pod reaches every
//! other; and the report prints for how long allowed traffic stopped and
//! how long convergence took (printed, never asserted on a clock).
//!
//! The long form, by hand: `SWITCHYARD_FAULT_PODS=60 cargo test -p
//! switchyard-e2e --test faults -- --nocapture` (pods per wave; 8 in CI);
//! `SWITCHYARD_FAULT_HOLD=30` keeps each fault for at least 30 s (e.g. a
//! whole DB cluster down for 30 s; in CI faults last as long as the churn
//! needs).

mod common;
#[path = "support/fault_cases.rs"]
mod fault_cases;
#[path = "support/fault_load.rs"]
mod fault_load;

use std::time::{Duration, Instant};

use switchyard_e2e::central::Db;
use switchyard_e2e::fault::{inject, resolve, Action, Component};
use switchyard_e2e::probe::{Prober, Proto, UdpStream};
use switchyard_e2e::{pod_spec, Sandbox, SandboxOptions};

use fault_load::NS;
/// Pods per wave: `SWITCHYARD_FAULT_PODS`, else 8.
fn per_wave() -> usize {
    std::env::var("SWITCHYARD_FAULT_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}
const READY: Duration = Duration::from_secs(120);

/// Wave `w`: its pods (labelled `wave=w<w>`), then its Service and
/// NetworkPolicy selecting them.
fn wave(sb: &Sandbox, w: usize) -> Vec<(String, String)> {
    let label = format!("w{w}");
    let pods = (0..per_wave())
        .map(|i| fault_load::labelled_pod(sb, NS, &format!("w{w}-p{i}"), None, &[("wave", &label)]))
        .collect();
    fault_load::wave_objects(sb, w);
    pods
}

fn delete_all(sb: &Sandbox, pods: &[(String, String)]) -> Vec<String> {
    pods.iter()
        .filter_map(|(ns, n)| sb.delete_pod_nowait(ns, n))
        .collect()
}

/// Runs the churn with `fault` killed after the second wave was created
/// and restarted once the first wave's deletion and a third wave were
/// under way.
/// With `fault` `None`, the same churn without a fault: the baseline the
/// figures compare against (a loaded machine delays answers too).
fn churn_with_fault(opts: SandboxOptions, fault: Option<Component>) {
    common::init_tracing();
    let _serial = common::serial();
    let sb = common::up(opts).expect("sandbox up");
    let fixed: Vec<(String, String)> = [
        ("client", "node-1", ("role", "allowed")),
        ("server", "node-2", ("app", "echo")),
    ]
    .into_iter()
    .map(|(p, node, label)| fault_load::labelled_pod(&sb, NS, p, Some(node), &[label]))
    .collect();
    let standing = fault_load::create_standing(&sb);
    let first = wave(&sb, 0);
    sb.wait_pods_ready(READY).unwrap();
    let client = sb.pod_netns(NS, "client").unwrap();
    let server_ip = sb.pod_ips(NS, "server")[0];
    // The control: the probe works before anything fails.
    switchyard_e2e::probe::probe(&client, Proto::Tcp, server_ip, Some("server"), READY).unwrap();
    let standing = fault_load::wait_in_effect(&sb, standing);
    let prober = Prober::start(&client, Proto::Tcp, server_ip, Some("server"));
    // Through the Service (whichever backend answers), to the guarded pod
    // (allowed), and from the intruder to it (denied: never answered).
    let slow = Duration::from_millis(250);
    let via_service = Prober::start_every(&client, Proto::Tcp, standing.cluster_ip, None, slow);
    let guarded = Prober::start_every(
        &client,
        Proto::Tcp,
        standing.guarded_ip,
        Some("guarded"),
        slow,
    );
    let intruder = sb.pod_netns(NS, "intruder").unwrap();
    let denied = Prober::start_every(&intruder, Proto::Tcp, standing.guarded_ip, None, slow);
    // And 50 datagrams a second, from one process: the denied probe that
    // covers every instant of the fault.
    let denied_stream = UdpStream::start(&intruder, standing.guarded_ip).unwrap();
    let denied_since = Instant::now();
    // ICMP too: the server's kernel answers, so a loaded machine (a slow
    // Python echo server) shows less in it than a broken path does.
    let pinger = Prober::start(&client, Proto::Icmp, server_ip, None);
    let stream = UdpStream::start(&client, server_ip).unwrap();

    let second = wave(&sb, 1);
    let fault = fault.map(|f| resolve(&sb, &f).unwrap());
    let killed = match &fault {
        Some(f) => inject(&sb, Action::Kill, f).unwrap(),
        None => "no fault".to_string(),
    };
    let fault_began = Instant::now();
    let gone = delete_all(&sb, &first);
    fault_load::delete_wave_objects(&sb, 0);
    let third = wave(&sb, 2);
    // Relabelled during the fault: one pod moves from wave 1's Service
    // and policy to wave 2's, another joins the standing Service.
    fault_load::relabel(&sb, "w1-p0", &[("wave", "w2")]);
    fault_load::relabel(&sb, "w1-p1", &[("app", "echo")]);
    // The churn goes on through the fault: every new pod has its address
    // and the deleted ones are torn down before the component returns.
    // (Only what the dead component does not take part in.)
    if !matches!(
        fault,
        Some(Component::Controller | Component::Cluster(Db::Nb))
    ) {
        common::wait(READY, "the churn to progress during the fault", || {
            sb.all_annotated()
                .then_some(())
                .ok_or_else(|| "pods without an address".to_string())
        });
    }
    if !matches!(fault, Some(Component::NodeAgent(_))) {
        sb.wait_torn_down(&gone, READY).unwrap();
    }
    let felt = match &fault {
        Some(Component::Underlay(_)) => {
            // Tunnels to the node are down: the cross-node probe must fail.
            prober.wait_failure_after(fault_began, READY).unwrap();
            "cross-node traffic failed".to_string()
        }
        Some(f) => assert_fault_felt(&sb, f, &third),
        None => "baseline".to_string(),
    };
    // The fault's length when asked for (not a synchronisation: nothing
    // waits on it).
    if let Some(hold) = std::env::var("SWITCHYARD_FAULT_HOLD")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(Duration::from_secs(hold).saturating_sub(fault_began.elapsed()));
    }
    let restarted = match &fault {
        Some(f) => inject(&sb, Action::Restart, f).unwrap(),
        None => "nothing to restart".to_string(),
    };
    let down_for = fault_began.elapsed();
    let restarted_at = Instant::now();
    sb.wait_pods_ready(READY).unwrap();
    let live: Vec<(String, String)> = fixed
        .iter()
        .chain(&standing.pods)
        .chain(&second)
        .chain(&third)
        .cloned()
        .collect();
    common::assert_converges_without_leaks(&sb, &live, Duration::from_secs(60));
    fault_load::assert_nb_objects(&sb, Duration::from_secs(60));
    let converged = restarted_at.elapsed();
    prober.wait_ok_after(restarted_at, READY).unwrap();
    pinger.wait_ok_after(restarted_at, READY).unwrap();
    stream.wait_ok_after(restarted_at, READY).unwrap();
    via_service.wait_ok_after(restarted_at, READY).unwrap();
    guarded.wait_ok_after(restarted_at, READY).unwrap();
    let report = prober.finish();
    let icmp = pinger.finish();
    let (answers, gap) = stream.finish();
    let service = via_service.finish();
    let allowed = guarded.finish();
    let denied = denied.finish();
    let denied_for = denied_since.elapsed();
    let (denied_udp, _) = denied_stream.finish();
    let name = fault.as_ref().map_or("none".to_string(), |f| f.to_string());
    // The denied probe ran all along, the fault included.
    assert!(denied.attempts > 0, "the denied probe never ran");
    assert_eq!(
        denied.attempts - denied.failures,
        0,
        "fault {name}: a probe the NetworkPolicy denies was answered ({denied})"
    );
    assert_eq!(
        denied_udp, 0,
        "fault {name}: datagrams the NetworkPolicy denies were answered"
    );
    let mesh: Vec<(String, String)> = fixed.iter().chain(&second[..2]).cloned().collect();
    common::assert_full_mesh(&sb, &mesh);
    assert!(sb.all_annotated());
    // No pod got another pod's address.
    let mut seen = std::collections::BTreeMap::new();
    for (ns, n) in &live {
        for ip in sb.pod_ips(ns, n) {
            if let Some(other) = seen.insert(ip, n.clone()) {
                panic!("{ip} given to both {other} and {n}");
            }
        }
    }
    println!(
        "fault {name}: {killed}, then {restarted} {:.1} s later ({felt}); converged {:.1} s after \
         the restart ({} pods live); allowed traffic client -> server: longest gap in a 50/s UDP \
         stream {:.2} s ({answers} answers); TCP {report}; ICMP {icmp}; through the Service: \
         {service}; to the guarded pod: {allowed}; denied probe: {} answers in {} TCP attempts, \
         {denied_udp} answers to a 50/s UDP stream over {:.1} s",
        down_for.as_secs_f64(),
        converged.as_secs_f64(),
        live.len(),
        gap.as_secs_f64(),
        denied.attempts - denied.failures,
        denied.attempts,
        denied_for.as_secs_f64(),
    );
    sb.down().unwrap();
}

/// Checks, just before the restart, that the dead component held up what
/// depends on it among `new` (pods created after the kill): the fault hit
/// the churn. Returns what was seen.
fn assert_fault_felt(sb: &Sandbox, fault: &Component, new: &[(String, String)]) -> String {
    let pods: Vec<_> = new.iter().filter_map(|(ns, n)| sb.pod(ns, n)).collect();
    let ready = pods.iter().filter(|p| p.ready).count();
    let on = |node: &str| -> Vec<_> {
        pods.iter()
            .filter(|p| p.node.as_deref() == Some(node))
            .collect()
    };
    match fault {
        Component::Controller => {
            let addressed = pods.iter().filter(|p| !p.ips.is_empty()).count();
            assert_eq!(addressed, 0, "pods got addresses without the controller");
            format!("{} new pods waited for addresses", pods.len())
        }
        Component::Northd => {
            // The controller wrote their ports; nothing reached SB.
            let bound = sb
                .ovn()
                .ctl(
                    Db::Sb,
                    &["--bare", "--columns=logical_port", "list", "Port_Binding"],
                )
                .unwrap();
            for (ns, n) in new {
                assert!(
                    !bound.lines().any(|l| l.trim() == format!("{ns}_{n}")),
                    "{ns}_{n} reached SB without ovn-northd"
                );
            }
            assert_eq!(ready, 0, "pods became Ready without ovn-northd");
            format!("{} new pods held back", pods.len())
        }
        Component::OvnController(node) | Component::Vswitchd(node) | Component::NodeAgent(node) => {
            let held = on(node);
            assert!(!held.is_empty(), "no new pod was scheduled to {node}");
            let ready_there: Vec<_> = held.iter().filter(|p| p.ready).map(|p| &p.name).collect();
            assert!(
                ready_there.is_empty(),
                "pods became Ready on {node} while its {fault} was down: {ready_there:?}"
            );
            format!(
                "{} new pods on {node} held back, {ready} of {} new pods Ready elsewhere",
                held.len(),
                pods.len()
            )
        }
        Component::ControllerReplica(i) => {
            // The standby holds the Lease now (it also gave the new pods
            // their addresses: the churn waited for that).
            let mut now = None;
            common::wait(READY, "a standby to take the Lease over", || {
                now = sb.controllers().leader().filter(|l| l != i);
                now.map(drop)
                    .ok_or_else(|| "still the killed one".to_string())
            });
            format!(
                "controller/{} took over; {ready} of {} new pods Ready meanwhile",
                now.unwrap_or_default(),
                pods.len()
            )
        }
        Component::Cluster(db) => {
            assert_eq!(
                ready, 0,
                "pods became Ready while the whole {db:?} cluster was down"
            );
            format!("{} new pods held back", pods.len())
        }
        Component::Member(..)
        | Component::Leader(_)
        | Component::Underlay(_)
        | Component::ControllerLeader => {
            format!("{ready} of {} new pods Ready meanwhile", pods.len())
        }
    }
}

#[test]
fn churn_without_a_fault_baseline() {
    let dir = tempfile::tempdir().unwrap();
    churn_with_fault(SandboxOptions::new(2, dir.path()), None);
}

#[test]
fn ovn_northd_killed_during_churn_converges() {
    let dir = tempfile::tempdir().unwrap();
    churn_with_fault(SandboxOptions::new(2, dir.path()), Some(Component::Northd));
}

#[test]
fn ovn_controller_restarted_during_churn_converges() {
    let dir = tempfile::tempdir().unwrap();
    churn_with_fault(
        SandboxOptions::new(2, dir.path()),
        Some(Component::OvnController("node-2".into())),
    );
}

#[test]
fn raft_nb_leader_killed_during_churn_converges() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = SandboxOptions::new(2, dir.path());
    opts.raft = Some(3);
    churn_with_fault(opts, Some(Component::Leader(Db::Nb)));
}

#[test]
fn ovs_vswitchd_killed_during_churn_converges() {
    let dir = tempfile::tempdir().unwrap();
    churn_with_fault(
        SandboxOptions::new(2, dir.path()),
        Some(Component::Vswitchd("node-2".into())),
    );
}

#[test]
fn controller_killed_during_churn_converges() {
    let dir = tempfile::tempdir().unwrap();
    churn_with_fault(
        SandboxOptions::new(2, dir.path()),
        Some(Component::Controller),
    );
}

#[test]
fn controller_leader_killed_with_a_standby_converges() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = SandboxOptions::new(2, dir.path());
    opts.controllers = 2;
    churn_with_fault(opts, Some(Component::ControllerLeader));
}

#[test]
fn node_agent_killed_during_churn_converges() {
    let dir = tempfile::tempdir().unwrap();
    churn_with_fault(
        SandboxOptions::new(2, dir.path()),
        Some(Component::NodeAgent("node-2".into())),
    );
}

#[test]
fn raft_sb_leader_killed_during_churn_converges() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = SandboxOptions::new(2, dir.path());
    opts.raft = Some(3);
    churn_with_fault(opts, Some(Component::Leader(Db::Sb)));
}

#[test]
fn node_cut_off_the_underlay_and_back_converges() {
    let dir = tempfile::tempdir().unwrap();
    churn_with_fault(
        SandboxOptions::new(2, dir.path()),
        Some(Component::Underlay("node-2".into())),
    );
}

#[test]
fn raft_whole_nb_cluster_down_during_churn_converges() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = SandboxOptions::new(2, dir.path());
    opts.raft = Some(3);
    churn_with_fault(opts, Some(Component::Cluster(Db::Nb)));
}

#[test]
fn raft_whole_sb_cluster_down_during_churn_converges() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = SandboxOptions::new(2, dir.path());
    opts.raft = Some(3);
    churn_with_fault(opts, Some(Component::Cluster(Db::Sb)));
}

/// The node agent killed in the middle of ADDs, deterministically: with
/// node-2's ovn-controller down, ADDs there stop after the agent plugged
/// the port into br-int (they wait for ovn-installed); the agent is killed
/// then, half of those pods are deleted while it is down, and both come
/// back. The survivors come up, nothing of the deleted ones is left.
#[test]
fn node_agent_killed_mid_add_converges() {
    common::init_tracing();
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let sb = common::up(SandboxOptions::new(2, dir.path())).expect("sandbox up");
    let node2 = 1;
    inject(
        &sb,
        Action::Kill,
        &Component::OvnController("node-2".into()),
    )
    .unwrap();
    let pods: Vec<(String, String)> = (0..per_wave())
        .map(|i| {
            let name = format!("midadd-{i}");
            sb.create_pod(pod_spec(NS, &name, Some("node-2"), vec![]))
                .unwrap();
            (NS.to_string(), name)
        })
        .collect();
    // Every ADD has plugged its port and waits for ovn-installed.
    common::wait(READY, "every ADD to reach br-int", || {
        let ids = sb
            .vsctl(
                node2,
                &["--bare", "--columns=external_ids", "list", "Interface"],
            )
            .map_err(|e| e.to_string())?;
        let missing: Vec<&String> = pods
            .iter()
            .map(|(_, n)| n)
            .filter(|n| !ids.contains(&format!("iface-id={NS}_{n}")))
            .collect();
        missing
            .is_empty()
            .then_some(())
            .ok_or_else(|| format!("not plugged yet: {missing:?}"))
    });
    assert!(
        sb.pods().iter().all(|p| !p.ready || p.namespace != NS),
        "a pod became Ready without ovn-controller"
    );
    println!(
        "{} with {} ADDs in flight",
        inject(&sb, Action::Kill, &Component::NodeAgent("node-2".into())).unwrap(),
        pods.len()
    );
    let (gone, kept) = pods.split_at(pods.len() / 2);
    let uids = delete_all(&sb, gone);
    let started = Instant::now();
    inject(
        &sb,
        Action::Restart,
        &Component::OvnController("node-2".into()),
    )
    .unwrap();
    inject(&sb, Action::Restart, &Component::NodeAgent("node-2".into())).unwrap();
    sb.wait_torn_down(&uids, READY).unwrap();
    sb.wait_pods_ready(READY).unwrap();
    common::assert_converges_without_leaks(&sb, kept, Duration::from_secs(60));
    println!(
        "mid-ADD: {} pods deleted and {} kept converged {:.1} s after the restarts",
        gone.len(),
        kept.len(),
        started.elapsed().as_secs_f64()
    );
    sb.down().unwrap();
}
