//! `down` leaves the machine as it was: the namespaces, interfaces and
//! processes before `up` and after `down` are the same, even with pods
//! running, a restarted node agent and a restarted controller.

mod common;

use std::time::Duration;

use switchyard_e2e::probe::echo_server_command;
use switchyard_e2e::{pod_spec, SandboxOptions};

#[test]
fn down_leaves_nothing_behind() {
    common::init_tracing();
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let before = common::MachineState::now();
    assert!(common::our_processes(dir.path()).is_empty());

    let sb = common::up(SandboxOptions::new(2, dir.path())).expect("sandbox up");
    let index = sb.index();
    let daemons = sb.pids();
    assert!(daemons.len() >= 8, "daemons: {daemons:?}");
    for i in 0..4 {
        let name = format!("p{i}");
        sb.create_pod(pod_spec("d", &name, None, echo_server_command(&name)))
            .unwrap();
    }
    sb.wait_pods_ready(Duration::from_secs(60)).unwrap();
    sb.restart_node_agent(0).unwrap();
    sb.restart_controller().unwrap();
    let during = common::MachineState::now();
    assert!(during.netns.len() > before.netns.len());
    assert!(!common::our_processes(dir.path()).is_empty());

    sb.down().unwrap();
    for pid in daemons {
        assert!(!ovn_testbed::pid_alive(pid), "daemon {pid} still runs");
    }
    common::assert_machine_restored(&before, index, dir.path());
}
