//! The generated typed tables: conversions to and from untyped rows, the
//! decoding rules (missing columns default, wrong types name the column,
//! unknown enum values and columns pass), and a round trip through a real
//! `ovsdb-server`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ovsdb::nb::{Acl, LogicalSwitch, LogicalSwitchPort};
use ovsdb::vswitch::{Bridge, Interface, OpenVswitch, Port};
use ovsdb::{Client, ClientConfig, Error, MonitorSpec, OpErrorKind, Row, Transaction, Uuid, Value};

fn strings<const N: usize>(items: [&str; N]) -> BTreeSet<String> {
    items.into_iter().map(str::to_string).collect()
}

fn string_map<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn populated_lsp() -> LogicalSwitchPort {
    LogicalSwitchPort {
        uuid: None,
        addresses: strings(["0a:58:0a:f4:01:05 10.244.1.5"]),
        dhcpv4_options: Some(Uuid::new_v4()),
        dhcpv6_options: None,
        dynamic_addresses: Some("0a:58:0a:f4:01:06 10.244.1.6".into()),
        enabled: Some(true),
        external_ids: string_map([("switchyard.io/pod", "default/web-0")]),
        ha_chassis_group: Some(Uuid::new_v4()),
        mirror_rules: [Uuid::new_v4(), Uuid::new_v4()].into(),
        name: "default_web-0".into(),
        options: string_map([("requested-chassis", "node-a")]),
        parent_name: Some("parent".into()),
        port_security: strings(["0a:58:0a:f4:01:05 10.244.1.5", "0a:58:0a:f4:01:07"]),
        tag: Some(100),
        tag_request: Some(0),
        r#type: "".into(),
        up: Some(false),
    }
}

fn error_message(e: Error) -> String {
    match e {
        Error::Schema(msg) => msg,
        other => panic!("expected Error::Schema, got {other:?}"),
    }
}

#[test]
fn names_follow_the_schema() {
    assert_eq!(LogicalSwitchPort::TABLE, "Logical_Switch_Port");
    assert_eq!(LogicalSwitchPort::EXTERNAL_IDS, "external_ids");
    assert_eq!(LogicalSwitchPort::TYPE, "type");
    assert_eq!(Acl::TABLE, "ACL");
    assert_eq!(Acl::MATCH, "match");
    assert_eq!(OpenVswitch::TABLE, "Open_vSwitch");
    assert_eq!(ovsdb::nb::DATABASE, "OVN_Northbound");
    assert_eq!(ovsdb::vswitch::DATABASE, "Open_vSwitch");
    assert!(ovsdb::nb::TABLES.contains(&LogicalSwitchPort::TABLE));
}

#[test]
fn logical_switch_port_round_trips() {
    let lsp = populated_lsp();
    let row = lsp.to_row();
    assert_eq!(row.uuid(), None, "to_row must not write _uuid");
    assert_eq!(row.len(), LogicalSwitchPort::COLUMNS.len());
    assert_eq!(row.str(LogicalSwitchPort::NAME), Some("default_web-0"));
    assert_eq!(
        row.map_get(LogicalSwitchPort::OPTIONS, "requested-chassis"),
        Some("node-a")
    );
    // An unset optional column is the empty set, not a missing column.
    assert_eq!(
        row.get(LogicalSwitchPort::DHCPV6_OPTIONS),
        Some(&Value::empty_set())
    );
    assert_eq!(LogicalSwitchPort::from_row(&row).unwrap(), lsp);

    // Through the wire format too, and with the _uuid the server adds.
    let uuid = Uuid::new_v4();
    let mut wire = Row::from_json(&row.to_json()).unwrap();
    wire.set("_uuid", uuid);
    wire.set("_version", Uuid::new_v4());
    let back = LogicalSwitchPort::from_row(&wire).unwrap();
    assert_eq!(back.uuid, Some(uuid));
    assert_eq!(
        back,
        LogicalSwitchPort {
            uuid: Some(uuid),
            ..lsp
        }
    );
}

#[test]
fn interface_round_trips() {
    let iface = Interface {
        name: "veth1234".into(),
        r#type: "internal".into(),
        admin_state: Some("up".into()),
        external_ids: string_map([
            ("iface-id", "default_web-0"),
            ("attached-mac", "0a:58:0a:f4:01:05"),
        ]),
        options: string_map([("remote_ip", "192.0.2.1")]),
        ofport: Some(7),
        ofport_request: Some(7),
        mtu_request: Some(1400),
        ingress_policing_rate: 1000,
        ingress_policing_burst: 100,
        statistics: [
            ("rx_packets".to_string(), 12i64),
            ("tx_bytes".to_string(), 3400),
        ]
        .into(),
        cfm_remote_mpids: [1, 2, 3].into(),
        lacp_current: Some(true),
        ..Default::default()
    };
    let row = iface.to_row();
    assert_eq!(row.len(), Interface::COLUMNS.len());
    assert_eq!(Interface::from_row(&row).unwrap(), iface);
    let wire = Row::from_json(&row.to_json()).unwrap();
    assert_eq!(Interface::from_row(&wire).unwrap(), iface);
}

#[test]
fn integer_keyed_and_uuid_valued_maps_round_trip() {
    let bridge = Bridge {
        name: "br-int".into(),
        fail_mode: Some("secure".into()),
        flow_tables: [(0i64, Uuid::new_v4()), (10, Uuid::new_v4())].into(),
        ports: [Uuid::new_v4()].into(),
        protocols: strings(["OpenFlow13", "OpenFlow15"]),
        ..Default::default()
    };
    let wire = Row::from_json(&bridge.to_row().to_json()).unwrap();
    assert_eq!(Bridge::from_row(&wire).unwrap(), bridge);
}

#[test]
fn missing_columns_take_defaults() {
    let row = Row::new()
        .with(LogicalSwitchPort::NAME, "p1")
        .with(LogicalSwitchPort::TAG, 5i64);
    let lsp = LogicalSwitchPort::from_row(&row).unwrap();
    assert_eq!(
        lsp,
        LogicalSwitchPort {
            name: "p1".into(),
            tag: Some(5),
            ..Default::default()
        }
    );
    assert_eq!(
        LogicalSwitchPort::from_row(&Row::new()).unwrap(),
        LogicalSwitchPort::default()
    );
}

#[test]
fn wrong_types_name_table_and_column() {
    let cases = [
        (
            LogicalSwitchPort::TAG,
            Value::from("five"),
            "Logical_Switch_Port.tag",
        ),
        (
            LogicalSwitchPort::NAME,
            Value::from(5i64),
            "Logical_Switch_Port.name",
        ),
        (
            LogicalSwitchPort::NAME,
            Value::set(["a", "b"]),
            "Logical_Switch_Port.name",
        ),
        (
            LogicalSwitchPort::NAME,
            Value::empty_set(),
            "Logical_Switch_Port.name",
        ),
        (
            LogicalSwitchPort::ENABLED,
            Value::from("yes"),
            "Logical_Switch_Port.enabled",
        ),
        (
            LogicalSwitchPort::ADDRESSES,
            Value::set([1i64, 2]),
            "Logical_Switch_Port.addresses",
        ),
        (
            LogicalSwitchPort::ADDRESSES,
            Value::map([("k", "v")]),
            "Logical_Switch_Port.addresses",
        ),
        (
            LogicalSwitchPort::EXTERNAL_IDS,
            Value::set(["k"]),
            "Logical_Switch_Port.external_ids",
        ),
        (
            LogicalSwitchPort::EXTERNAL_IDS,
            Value::map([("k", 1i64)]),
            "Logical_Switch_Port.external_ids",
        ),
        (
            LogicalSwitchPort::HA_CHASSIS_GROUP,
            Value::from("not-a-uuid-atom"),
            "Logical_Switch_Port.ha_chassis_group",
        ),
    ];
    for (column, value, expected) in cases {
        let row = Row::new()
            .with(LogicalSwitchPort::NAME, "p1")
            .with(column, value.clone());
        let msg = error_message(LogicalSwitchPort::from_row(&row).unwrap_err());
        assert!(msg.contains(expected), "{column} = {value:?}: {msg}");
    }
    let msg =
        error_message(Interface::from_row(&Row::new().with(Interface::OFPORT, true)).unwrap_err());
    assert!(
        msg.starts_with("Interface.ofport: expected optional integer"),
        "{msg}"
    );
}

#[test]
fn unknown_enum_values_and_columns_decode() {
    // A newer server may add an ACL action or a column; an older client must
    // still read the row.
    let row = Row::new()
        .with(Acl::ACTION, "allow-something-new")
        .with(Acl::DIRECTION, "from-lport")
        .with(Acl::PRIORITY, 1000i64)
        .with(Acl::MATCH, "ip4")
        .with("column_from_the_future", Value::map([("a", "b")]));
    let acl = Acl::from_row(&row).unwrap();
    assert_eq!(acl.action, "allow-something-new");
    assert_eq!(acl.r#match, "ip4");
    assert_eq!(acl.priority, 1000);
}

#[test]
fn empty_sets_and_maps_are_interchangeable() {
    let row = Row::new()
        .with(LogicalSwitchPort::EXTERNAL_IDS, Value::empty_set())
        .with(LogicalSwitchPort::ADDRESSES, Value::empty_map())
        .with(LogicalSwitchPort::TAG, Value::empty_map());
    let lsp = LogicalSwitchPort::from_row(&row).unwrap();
    assert!(lsp.external_ids.is_empty() && lsp.addresses.is_empty() && lsp.tag.is_none());
}

#[test]
fn to_row_columns_writes_only_the_named_columns() {
    let lsp = populated_lsp();
    let row = lsp.to_row_columns(&[
        LogicalSwitchPort::ADDRESSES,
        LogicalSwitchPort::EXTERNAL_IDS,
    ]);
    let columns: Vec<&str> = row.columns().collect();
    assert_eq!(columns, ["addresses", "external_ids"]);
    let back = LogicalSwitchPort::from_row(&row).unwrap();
    assert_eq!(back.addresses, lsp.addresses);
    assert_eq!(back.name, "");
}

#[test]
#[should_panic(expected = "Logical_Switch_Port: no column \"nmae\"")]
fn to_row_columns_rejects_unknown_columns() {
    populated_lsp().to_row_columns(&["nmae"]);
}

async fn connect(remote: &str) -> Client {
    let config = ClientConfig::new(remote).unwrap();
    tokio::time::timeout(Duration::from_secs(10), Client::connect(config))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// Typed rows written through a transaction and read back through a
/// monitor replica compare equal: the generated types agree with what the
/// real server accepts and sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn northbound_round_trip_through_ovsdb_server() {
    use ovn_testbed::{OvsdbServer, Schema, ServerOptions};
    let dir = tempfile::tempdir().unwrap();
    let server = OvsdbServer::start(
        dir.path(),
        "nb",
        Schema::Northbound,
        ServerOptions::default(),
    )
    .unwrap();
    let client = connect(&server.unix_remote()).await;

    // Client-chosen UUIDs let typed rows refer to rows inserted in the same
    // transaction (the port is not a root row: it must be referenced).
    let port_uuid = Uuid::new_v4();
    let port = LogicalSwitchPort {
        name: "default_web-0".into(),
        addresses: strings(["0a:58:0a:f4:01:05 10.244.1.5"]),
        external_ids: string_map([("switchyard.io/pod", "default/web-0")]),
        tag_request: Some(0),
        ..Default::default()
    };
    let ls = LogicalSwitch {
        name: "node-a".into(),
        other_config: string_map([("subnet", "10.244.1.0/24")]),
        ports: [port_uuid].into(),
        ..Default::default()
    };
    let mut tx = Transaction::new(ovsdb::nb::DATABASE);
    tx.insert_with_uuid(LogicalSwitchPort::TABLE, port.to_row(), port_uuid);
    tx.insert(LogicalSwitch::TABLE, ls.to_row());
    client.transact(tx).await.unwrap();

    let replica = client
        .monitor(
            MonitorSpec::new(ovsdb::nb::DATABASE)
                .table(LogicalSwitch::TABLE, None)
                .table(LogicalSwitchPort::TABLE, None),
        )
        .await
        .unwrap();
    replica
        .wait_for(Duration::from_secs(10), |db| {
            db.table(LogicalSwitch::TABLE).by_name("node-a").is_some()
        })
        .await
        .unwrap();
    let (got_ls, got_port) = replica.with(|db| {
        let (ls_uuid, ls_row) = db.table(LogicalSwitch::TABLE).by_name("node-a").unwrap();
        let got_ls = LogicalSwitch::from_row(ls_row).unwrap();
        assert_eq!(got_ls.uuid, Some(ls_uuid));
        let port_row = db.table(LogicalSwitchPort::TABLE).get(&port_uuid).unwrap();
        (got_ls, LogicalSwitchPort::from_row(port_row).unwrap())
    });
    assert_eq!(
        LogicalSwitch {
            uuid: None,
            ..got_ls
        },
        ls
    );
    assert_eq!(got_port.uuid, Some(port_uuid));
    assert_eq!(
        LogicalSwitchPort {
            uuid: None,
            ..got_port
        },
        port
    );

    // A partial update through the typed columns leaves the rest alone.
    let mut changed = ls.clone();
    changed
        .other_config
        .insert("mcast_snoop".into(), "true".into());
    changed.name = "ignored".into();
    let mut tx = Transaction::new(ovsdb::nb::DATABASE);
    tx.update(
        LogicalSwitch::TABLE,
        vec![ovsdb::Condition::eq(LogicalSwitch::NAME, "node-a")],
        changed.to_row_columns(&[LogicalSwitch::OTHER_CONFIG]),
    );
    client.transact(tx).await.unwrap();
    replica
        .wait_for(Duration::from_secs(10), |db| {
            db.table(LogicalSwitch::TABLE)
                .by_name("node-a")
                .and_then(|(_, row)| LogicalSwitch::from_row(row).ok())
                .is_some_and(|ls| ls.other_config.contains_key("mcast_snoop"))
        })
        .await
        .unwrap();
}

/// The `Open_vSwitch` side: a bridge, port and interface chain, which
/// exercises an immutable column (`name`) and non-root tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vswitch_round_trip_through_ovsdb_server() {
    use ovn_testbed::{OvsdbServer, Schema, ServerOptions};
    let dir = tempfile::tempdir().unwrap();
    let server = OvsdbServer::start(
        dir.path(),
        "ovs",
        Schema::OpenVswitch,
        ServerOptions::default(),
    )
    .unwrap();
    let client = connect(&server.unix_remote()).await;

    let (bridge_uuid, port_uuid, iface_uuid) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let iface = Interface {
        name: "veth-web0".into(),
        external_ids: string_map([("iface-id", "default_web-0")]),
        mtu_request: Some(1400),
        ..Default::default()
    };
    let port = Port {
        name: "veth-web0".into(),
        interfaces: [iface_uuid].into(),
        tag: Some(10),
        ..Default::default()
    };
    let bridge = Bridge {
        name: "br-int".into(),
        ports: [port_uuid].into(),
        fail_mode: Some("secure".into()),
        ..Default::default()
    };
    let root = OpenVswitch {
        bridges: [bridge_uuid].into(),
        ..Default::default()
    };
    let mut tx = Transaction::new(ovsdb::vswitch::DATABASE);
    tx.insert_with_uuid(Interface::TABLE, iface.to_row(), iface_uuid);
    tx.insert_with_uuid(Port::TABLE, port.to_row(), port_uuid);
    tx.insert_with_uuid(Bridge::TABLE, bridge.to_row(), bridge_uuid);
    tx.insert(OpenVswitch::TABLE, root.to_row());
    client.transact(tx).await.unwrap();

    let replica = client
        .monitor(
            MonitorSpec::new(ovsdb::vswitch::DATABASE)
                .table(Interface::TABLE, None)
                .table(
                    Bridge::TABLE,
                    Some(vec![Bridge::NAME.into(), Bridge::PORTS.into()]),
                ),
        )
        .await
        .unwrap();
    replica
        .wait_for(Duration::from_secs(10), |db| {
            db.table(Interface::TABLE).get(&iface_uuid).is_some()
        })
        .await
        .unwrap();
    replica.with(|db| {
        let got =
            Interface::from_row(db.table(Interface::TABLE).get(&iface_uuid).unwrap()).unwrap();
        assert_eq!(Interface { uuid: None, ..got }, iface);
        // Only two columns monitored: the rest decode as defaults.
        let got = Bridge::from_row(db.table(Bridge::TABLE).get(&bridge_uuid).unwrap()).unwrap();
        assert_eq!(
            got,
            Bridge {
                uuid: Some(bridge_uuid),
                name: "br-int".into(),
                ports: [port_uuid].into(),
                ..Default::default()
            }
        );
    });

    // Writing the whole row in an update names the immutable `name`, which
    // the server refuses; `to_row_columns` is the way to update.
    let mut tx = Transaction::new(ovsdb::vswitch::DATABASE);
    tx.update(
        Interface::TABLE,
        vec![ovsdb::Condition::uuid(iface_uuid)],
        iface.to_row(),
    );
    let err = client.transact(tx).await.unwrap_err();
    assert!(
        matches!(&err, Error::Operation { error, .. } if error.kind() == OpErrorKind::ConstraintViolation),
        "{err}"
    );
    let mut tx = Transaction::new(ovsdb::vswitch::DATABASE);
    tx.update(
        Interface::TABLE,
        vec![ovsdb::Condition::uuid(iface_uuid)],
        Interface {
            mtu_request: Some(1500),
            ..iface.clone()
        }
        .to_row_columns(&[Interface::MTU_REQUEST]),
    );
    client.transact(tx).await.unwrap();
}
