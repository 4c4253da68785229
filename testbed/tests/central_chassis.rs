//! OVN central plus a chassis in its own network namespace.

use ovn_testbed::{Chassis, ChassisOptions, Duration, OvnCentral};

#[test]
fn chassis_registers_and_everything_is_gone_after_drop() {
    let dir = tempfile::tempdir().unwrap();
    let central = OvnCentral::start(dir.path()).unwrap();
    central.nbctl(&["ls-add", "sw0"]).unwrap();
    central.sync_sb(Duration::from_secs(10)).unwrap();
    assert!(central
        .sbctl(&[
            "--bare",
            "--columns=external_ids",
            "list",
            "Datapath_Binding"
        ])
        .unwrap()
        .contains("sw0"));

    let chassis = Chassis::start(
        dir.path(),
        &central.sb_remote(),
        ChassisOptions::new("node1"),
    )
    .unwrap();
    let netns = chassis.netns().expect("namespaced").to_string();
    assert!(ovn_testbed::netns_exists(&netns));
    chassis.wait_registered(Duration::from_secs(20)).unwrap();
    let names = central
        .sbctl(&["--bare", "--columns=name", "list", "Chassis"])
        .unwrap();
    assert!(names.lines().any(|l| l.trim() == "node1"), "{names}");

    assert!(chassis.vsctl(&["list-br"]).unwrap().contains("br-int"));
    assert_eq!(
        chassis
            .vsctl(&["get", "Bridge", "br-int", "datapath_type"])
            .unwrap()
            .trim(),
        "netdev"
    );
    chassis.ofctl(&["-O", "OpenFlow15", "dump-flows"]).unwrap();
    let links = chassis.exec(&["ip", "-o", "link"]).unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(links.contains("br-int"), "{links}");
    assert!(links.contains("lo:") && links.contains("UP"), "{links}");

    let mut pids = chassis.pids();
    pids.extend(
        [central.nb.pid(), central.sb.pid(), central.northd_pid()]
            .into_iter()
            .flatten(),
    );
    assert_eq!(pids.len(), 6);

    drop(chassis);
    drop(central);
    assert!(
        !ovn_testbed::netns_exists(&netns),
        "netns {netns} left behind"
    );
    for pid in pids {
        assert!(!ovn_testbed::pid_alive(pid), "pid {pid} still alive");
    }
}

#[test]
fn northd_and_ovn_controller_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut central = OvnCentral::start(dir.path()).unwrap();
    let mut chassis = Chassis::start(
        dir.path(),
        &central.sb_remote(),
        ChassisOptions {
            netns: true,
            ..ChassisOptions::new("restart-node")
        },
    )
    .unwrap();
    chassis.wait_registered(Duration::from_secs(20)).unwrap();

    central.kill_northd();
    central.nbctl(&["ls-add", "late"]).unwrap();
    assert!(central.sync_sb(Duration::from_secs(1)).is_err());
    central.restart_northd().unwrap();
    central.sync_sb(Duration::from_secs(10)).unwrap();

    let old = chassis.ovn_controller_pid().unwrap();
    chassis.kill_ovn_controller();
    assert!(chassis.ovn_controller_pid().is_none());
    chassis.restart_ovn_controller().unwrap();
    assert_ne!(chassis.ovn_controller_pid(), Some(old));
    chassis.wait_registered(Duration::from_secs(20)).unwrap();
}

#[test]
fn unconfigured_chassis_waits_for_the_agent_to_configure_it() {
    let dir = tempfile::tempdir().unwrap();
    let central = OvnCentral::start_with(
        dir.path(),
        ovn_testbed::CentralOptions {
            tcp: false,
            northd: false,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(central.nb.tcp_remote().is_none());
    assert!(central.northd_pid().is_none());
    let chassis = Chassis::start(
        dir.path(),
        &central.sb_remote(),
        ChassisOptions {
            configure_ovn: false,
            encap_ip: Some("198.18.0.1".into()),
            ..ChassisOptions::new("agent-node")
        },
    )
    .unwrap();
    assert_eq!(chassis.encap_ip(), None);
    // Quirk: ovn-controller creates br-int straight away, with the default
    // (kernel) datapath type, before anything is configured.

    // What the node agent would write.
    let remote = format!("external_ids:ovn-remote=\"{}\"", central.sb_remote());
    chassis
        .vsctl(&[
            "set",
            "Open_vSwitch",
            ".",
            "external_ids:system-id=agent-node",
            &remote,
            "external_ids:ovn-encap-type=geneve",
            "external_ids:ovn-encap-ip=198.18.0.1",
            "external_ids:ovn-bridge-datapath-type=netdev",
        ])
        .unwrap();
    chassis.wait_registered(Duration::from_secs(20)).unwrap();
    // ...and switches it to the configured datapath type later.
    ovn_testbed::wait_for(Duration::from_secs(10), "netdev br-int", || {
        chassis
            .vsctl(&["get", "Bridge", "br-int", "datapath_type"])
            .is_ok_and(|t| t.trim() == "netdev")
            && chassis.mgmt_path().exists()
    })
    .unwrap();
    chassis.ofctl(&["dump-flows"]).unwrap();
}
