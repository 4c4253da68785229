//! The node's Open vSwitch database, through the `ovsdb` crate.
//!
//! The daemon keeps one connection and a monitored replica of the
//! `Open_vSwitch`, `Bridge`, `Port` and `Interface` tables. Everything it
//! knows about attached pods is read back from that replica (the
//! `external_ids` it wrote on each Interface), which is why a restarted
//! daemon needs no state file: OVS is the state.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ovsdb::{
    Client, ClientConfig, Condition, MonitorSpec, Mutation, Replica, ReplicaDb, Row, Transaction,
    Uuid, Value,
};

use crate::error::{Error, Result};
use crate::naming::ext;

const DB: &str = "Open_vSwitch";

/// A pod attachment as OVS records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OvsAttachment {
    pub iface: Uuid,
    pub port: Option<Uuid>,
    /// Interface name, which is also the host veth's name.
    pub name: String,
    pub iface_id: Option<String>,
    pub sandbox: Option<String>,
    pub ifname: Option<String>,
    pub netns: Option<String>,
    pub pod: Option<String>,
    pub installed: bool,
    pub mac: Option<String>,
}

/// What [`Ovs::attachments_where`] judges an attachment by.
#[derive(Clone, Copy, Debug)]
pub struct AttachmentKeys<'a> {
    /// Interface name (the host veth).
    pub name: &'a str,
    pub iface_id: Option<&'a str>,
    pub sandbox: Option<&'a str>,
    pub ifname: Option<&'a str>,
}

/// What to write on a new port's Interface row.
#[derive(Clone, Debug, Default)]
pub struct PortSpec {
    pub name: String,
    /// `internal` for the management port; empty for system devices (veths).
    pub iface_type: String,
    /// Interface MAC for internal ports, which OVS creates itself.
    pub mac: Option<String>,
    pub external_ids: BTreeMap<String, String>,
}

/// An interface of a bridge, as OVS records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeInterface {
    pub name: String,
    /// `""` for a system device, `internal`, `patch`, ...
    pub kind: String,
    /// The OpenFlow port number, once assigned (positive).
    pub ofport: Option<u32>,
}

fn bridge_interfaces(db: &ReplicaDb, bridge: &str) -> Vec<BridgeInterface> {
    let Some((_, b)) = db.table("Bridge").by_name(bridge) else {
        return Vec::new();
    };
    let ports = db.table("Port");
    let ifaces = db.table("Interface");
    let mut out: Vec<BridgeInterface> = b
        .get("ports")
        .map(Value::uuids)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| ports.get(p))
        .flat_map(|p| p.get("interfaces").map(Value::uuids).unwrap_or_default())
        .filter_map(|i| ifaces.get(&i))
        .map(|r| BridgeInterface {
            name: r.str("name").unwrap_or_default().to_string(),
            kind: r.str("type").unwrap_or_default().to_string(),
            ofport: r
                .get("ofport")
                .and_then(Value::as_i64)
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// What the agent reads of a Bridge row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeRow {
    pub uuid: Uuid,
    pub external_ids: BTreeMap<String, String>,
    pub other_config: BTreeMap<String, String>,
}

#[derive(Clone)]
pub struct Ovs {
    client: Client,
    replica: Replica,
}

fn str_map(row: &Row, col: &str) -> BTreeMap<String, String> {
    row.get(col)
        .and_then(Value::as_map)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

impl Ovs {
    /// Connects (retrying until `timeout`, since ovsdb-server may start
    /// after the agent) and loads the replica.
    pub async fn connect(remote: &str, timeout: Duration) -> Result<Ovs> {
        let client = Client::connect(ClientConfig::new(remote)?.connect_timeout(timeout)).await?;
        let cols = |c: &[&str]| Some(c.iter().map(|s| s.to_string()).collect());
        let replica = client
            .monitor(
                MonitorSpec::new(DB)
                    .table("Open_vSwitch", cols(&["external_ids", "bridges"]))
                    .table(
                        "Bridge",
                        cols(&[
                            "name",
                            "ports",
                            "datapath_type",
                            "external_ids",
                            "other_config",
                        ]),
                    )
                    .table("Port", cols(&["name", "interfaces"]))
                    .table(
                        "Interface",
                        cols(&["name", "type", "external_ids", "ofport", "mac", "error"]),
                    ),
            )
            .await?;
        Ok(Ovs { client, replica })
    }

    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// Writes `external_ids` keys on the Open_vSwitch row (system-id, the SB
    /// remote, encapsulation, datapath type), creating the row when the
    /// database is fresh.
    pub async fn set_node_ids(&self, ids: &BTreeMap<String, String>) -> Result<()> {
        let exists = self.replica.with(|db| !db.table("Open_vSwitch").is_empty());
        let mut tx = Transaction::new(DB);
        if exists {
            tx.mutate(
                "Open_vSwitch",
                vec![],
                vec![
                    Mutation::delete("external_ids", Value::set(ids.keys().map(String::as_str))),
                    Mutation::insert(
                        "external_ids",
                        Value::map(ids.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                    ),
                ],
            );
        } else {
            tx.insert(
                "Open_vSwitch",
                Row::new().with(
                    "external_ids",
                    Value::map(ids.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                ),
            );
        }
        self.client.transact(tx).await?;
        Ok(())
    }

    /// The `Open_vSwitch` row's `external_ids` (empty before the row exists).
    pub fn node_ids(&self) -> BTreeMap<String, String> {
        self.replica.with(|db| {
            db.table("Open_vSwitch")
                .iter()
                .next()
                .map(|(_, row)| str_map(row, "external_ids"))
                .unwrap_or_default()
        })
    }

    /// Waits (up to `timeout`) until `f` of the `Open_vSwitch` row's
    /// `external_ids` differs from `than`; returns the new value, or `None`
    /// on timeout.
    pub async fn wait_node_ids_change<T: PartialEq>(
        &self,
        timeout: Duration,
        than: &T,
        f: impl Fn(&BTreeMap<String, String>) -> T,
    ) -> Result<Option<T>> {
        let r = self
            .replica
            .wait_for(timeout, |db| {
                let ids = db
                    .table("Open_vSwitch")
                    .iter()
                    .next()
                    .map(|(_, row)| str_map(row, "external_ids"))
                    .unwrap_or_default();
                f(&ids) != *than
            })
            .await;
        match r {
            Ok(()) => Ok(Some(f(&self.node_ids()))),
            Err(ovsdb::Error::Timeout(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// A bridge's `external_ids` and `other_config`, if it exists.
    pub fn bridge(&self, name: &str) -> Option<BridgeRow> {
        self.replica.with(|db| {
            db.table("Bridge")
                .by_name(name)
                .map(|(uuid, row)| BridgeRow {
                    uuid,
                    external_ids: str_map(row, "external_ids"),
                    other_config: str_map(row, "other_config"),
                })
        })
    }

    /// The interfaces of bridge `name`: (name, type, ofport once
    /// assigned), sorted by name.
    pub fn bridge_interfaces(&self, name: &str) -> Vec<BridgeInterface> {
        self.replica.with(|db| bridge_interfaces(db, name))
    }

    /// Waits (up to `timeout`) until the interfaces of bridge `name`
    /// differ from `than`.
    pub async fn wait_bridge_interfaces_change(
        &self,
        name: &str,
        than: &[BridgeInterface],
        timeout: Duration,
    ) {
        let _ = self
            .replica
            .wait_for(timeout, |db| bridge_interfaces(db, name) != than)
            .await;
    }

    /// Sets keys of a map column of the bridge `name`, leaving its other
    /// keys alone.
    pub async fn set_bridge_keys(
        &self,
        name: &str,
        column: &str,
        keys: &BTreeMap<String, String>,
    ) -> Result<()> {
        let mut tx = Transaction::new(DB);
        tx.mutate(
            "Bridge",
            vec![Condition::eq("name", name)],
            vec![
                Mutation::delete(column, Value::set(keys.keys().map(String::as_str))),
                Mutation::insert(
                    column,
                    Value::map(keys.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                ),
            ],
        );
        self.client.transact(tx).await?;
        Ok(())
    }

    /// Creates bridge `name` holding its internal port and the port
    /// `uplink`, with its MAC pinned to `hwaddr` and `external_ids`.
    pub async fn create_bridge(
        &self,
        name: &str,
        datapath_type: Option<&str>,
        uplink: &str,
        hwaddr: &str,
        external_ids: &BTreeMap<String, String>,
    ) -> Result<()> {
        let mut tx = Transaction::new(DB);
        tx.insert_as(
            "Interface",
            Row::new().with("name", name).with("type", "internal"),
            "local_iface",
        );
        tx.insert_as(
            "Port",
            Row::new()
                .with("name", name)
                .with("interfaces", Value::named_uuid("local_iface")),
            "local_port",
        );
        tx.insert_as("Interface", Row::new().with("name", uplink), "up_iface");
        tx.insert_as(
            "Port",
            Row::new()
                .with("name", uplink)
                .with("interfaces", Value::named_uuid("up_iface")),
            "up_port",
        );
        let mut bridge = Row::new()
            .with("name", name)
            .with(
                "ports",
                Value::Set(vec![
                    ovsdb::Atom::NamedUuid("local_port".into()),
                    ovsdb::Atom::NamedUuid("up_port".into()),
                ]),
            )
            .with("other_config", Value::map([("hwaddr", hwaddr)]))
            .with(
                "external_ids",
                Value::map(external_ids.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            );
        if let Some(dp) = datapath_type {
            bridge.set("datapath_type", dp);
        }
        tx.insert_as("Bridge", bridge, "bridge");
        tx.mutate(
            "Open_vSwitch",
            vec![],
            vec![Mutation::insert("bridges", Value::named_uuid("bridge"))],
        );
        self.client.transact(tx).await?;
        Ok(())
    }

    /// Waits until the bridge exists (ovn-controller creates `br-int`).
    pub async fn wait_bridge(&self, bridge: &str, timeout: Duration) -> Result<()> {
        self.replica
            .wait_for(timeout, |db| db.table("Bridge").by_name(bridge).is_some())
            .await
            .map_err(|_| {
                Error::OvsState(format!("bridge {bridge} did not appear within {timeout:?}"))
            })
    }

    pub fn bridge_exists(&self, bridge: &str) -> bool {
        self.replica
            .with(|db| db.table("Bridge").by_name(bridge).is_some())
    }

    fn port_of(db: &ReplicaDb, iface: Uuid) -> Option<Uuid> {
        db.table("Port")
            .iter()
            .find(|(_, row)| {
                row.get("interfaces")
                    .is_some_and(|v| v.uuids().contains(&iface))
            })
            .map(|(u, _)| *u)
    }

    /// Interface -> its Port, for every port: one pass instead of one per
    /// interface.
    fn port_index(db: &ReplicaDb) -> HashMap<Uuid, Uuid> {
        let mut out = HashMap::new();
        for (port, row) in db.table("Port").iter() {
            if let Some(v) = row.get("interfaces") {
                for iface in v.uuids() {
                    out.insert(iface, *port);
                }
            }
        }
        out
    }

    fn attachment(port: Option<Uuid>, uuid: Uuid, row: &Row) -> OvsAttachment {
        let ids = str_map(row, "external_ids");
        OvsAttachment {
            iface: uuid,
            port,
            name: row.str("name").unwrap_or_default().to_string(),
            iface_id: ids.get(ext::IFACE_ID).cloned(),
            sandbox: ids.get(ext::SANDBOX).cloned(),
            ifname: ids.get(ext::IFNAME).cloned(),
            netns: ids.get(ext::NETNS).cloned(),
            pod: ids.get(ext::POD).cloned(),
            installed: ids.get(ext::OVN_INSTALLED).map(String::as_str) == Some("true"),
            mac: ids.get(ext::ATTACHED_MAC).cloned(),
        }
    }

    /// Every pod attachment this agent created (marked with its owner key).
    pub fn attachments(&self) -> Vec<OvsAttachment> {
        self.attachments_where(|_| true)
    }

    /// The pod attachments this agent created for which `pred` holds,
    /// judged on the row's name and keys before anything is copied (an ADD
    /// looks for one or two among every pod on the node).
    pub fn attachments_where(
        &self,
        pred: impl Fn(AttachmentKeys<'_>) -> bool,
    ) -> Vec<OvsAttachment> {
        self.replica.with(|db| {
            let rows: Vec<(Uuid, &Row)> = db
                .table("Interface")
                .iter()
                .filter(|(_, row)| {
                    row.map_get("external_ids", ext::OWNER) == Some(ext::OWNER_VALUE)
                        && pred(AttachmentKeys {
                            name: row.str("name").unwrap_or_default(),
                            iface_id: row.map_get("external_ids", ext::IFACE_ID),
                            sandbox: row.map_get("external_ids", ext::SANDBOX),
                            ifname: row.map_get("external_ids", ext::IFNAME),
                        })
                })
                .map(|(u, row)| (*u, row))
                .collect();
            let ports = if rows.len() > 4 {
                Some(Self::port_index(db))
            } else {
                None
            };
            rows.into_iter()
                .map(|(u, row)| {
                    let port = match &ports {
                        Some(index) => index.get(&u).copied(),
                        None => Self::port_of(db, u),
                    };
                    Self::attachment(port, u, row)
                })
                .collect()
        })
    }

    /// The interface named `name`, whoever created it.
    pub fn interface(&self, name: &str) -> Option<OvsAttachment> {
        self.replica.with(|db| {
            db.table("Interface")
                .by_name(name)
                .map(|(u, row)| Self::attachment(Self::port_of(db, u), u, row))
        })
    }

    /// Adds a port with one interface to `bridge`, removing `stale` ports in
    /// the same transaction so OVN never sees two bindings for one iface-id.
    pub async fn add_port(&self, bridge: &str, spec: &PortSpec, stale: &[Uuid]) -> Result<()> {
        let mut tx = Transaction::new(DB);
        for port in stale {
            tx.mutate(
                "Bridge",
                vec![],
                vec![Mutation::delete("ports", Value::from(*port))],
            );
        }
        let mut iface = Row::new().with("name", spec.name.as_str()).with(
            "external_ids",
            Value::map(
                spec.external_ids
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            ),
        );
        if !spec.iface_type.is_empty() {
            iface.set("type", spec.iface_type.as_str());
        }
        if let Some(mac) = &spec.mac {
            iface.set("mac", mac.as_str());
        }
        tx.insert_as("Interface", iface, "iface");
        tx.insert_as(
            "Port",
            Row::new()
                .with("name", spec.name.as_str())
                .with("interfaces", Value::named_uuid("iface")),
            "port",
        );
        tx.mutate(
            "Bridge",
            vec![Condition::eq("name", bridge)],
            vec![Mutation::insert("ports", Value::named_uuid("port"))],
        );
        // The mutate must have found the bridge; a wait makes that explicit.
        tx.wait(
            "Bridge",
            vec![Condition::eq("name", bridge)],
            vec!["name".into()],
            ovsdb::WaitUntil::Equal,
            vec![Row::new().with("name", bridge)],
            Some(0),
        );
        self.client.transact(tx).await?;
        Ok(())
    }

    /// Removes ports from every bridge; OVS garbage-collects the Port and
    /// Interface rows. Absent ports are fine (idempotent DEL).
    pub async fn remove_ports(&self, ports: &[Uuid]) -> Result<()> {
        if ports.is_empty() {
            return Ok(());
        }
        let mut tx = Transaction::new(DB);
        for port in ports {
            tx.mutate(
                "Bridge",
                vec![],
                vec![Mutation::delete("ports", Value::from(*port))],
            );
        }
        self.client.transact(tx).await?;
        Ok(())
    }

    /// Waits until ovn-controller has installed the interface's flows
    /// (`external_ids:ovn-installed="true"`).
    pub async fn wait_installed(&self, name: &str, timeout: Duration) -> Result<bool> {
        let done = self
            .replica
            .wait_for(timeout, |db| {
                let t = db.table("Interface");
                t.all_by_name(name).iter().any(|u| {
                    t.get(u)
                        .and_then(|r| r.map_get("external_ids", ext::OVN_INSTALLED))
                        == Some("true")
                })
            })
            .await;
        match done {
            Ok(()) => Ok(true),
            Err(ovsdb::Error::Timeout(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until the replica has seen a row change that our own
    /// transaction made, so reads after a write see it.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl FnMut(&ReplicaDb) -> bool,
    ) -> Result<()> {
        self.replica
            .wait_for(timeout, pred)
            .await
            .map_err(Error::from)
    }
}
