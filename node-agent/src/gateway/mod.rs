//! The node's gateway bridge: the OVS bridge that carries the node IP and
//! its uplink, shared by the host stack and the node's gateway router.
//!
//! The agent
//! - finds the bridge (`--gateway-bridge`, or the OVS bridge the default
//!   route leaves through), or creates it from `--gateway-interface`,
//!   moving that interface's addresses and default routes onto it;
//! - maps OVN's physical network to it (`ovn-bridge-mappings`), so
//!   ovn-controller patches the node's localnet port into it, and pins
//!   its MAC (`other_config:hwaddr`), which the gateway router shares;
//! - owns its flows ([`flows`]) through OpenFlow: replaced atomically (one
//!   bundle) when they differ from what the bridge's ports call for,
//!   untouched when they do not (a restarted agent changes nothing), and
//!   put back when `ovs-vswitchd` restarts (the OpenFlow connection drops;
//!   the agent reconnects and finds the bridge's default `NORMAL` table);
//! - keeps the bridge interface's addresses and default routes
//!   ([`host`]: put back when the device comes back empty, e.g. after
//!   `ovs-vswitchd` stopped with its datapath), and publishes them with
//!   the MAC as the node annotation
//!   `switchyard.io/gateway` the controller builds the gateway router
//!   from.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use openflow::{port, Client, ClientConfig, Event, FlowStatsRequest};
use switchyard_api::{names, NodeGateway};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::netlink::format_mac;
use crate::ovs::{BridgeInterface, Ovs};

pub mod flows;
pub mod host;
pub mod monitor;
pub mod own_node_ports;
pub mod steer;

/// How the agent finds its gateway bridge.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub node: String,
    /// The bridge's name; `None`: the OVS bridge the default route uses.
    pub bridge: Option<String>,
    /// The uplink port; with a bridge that does not exist, the interface
    /// it is created from. `None`: the bridge's one port that is neither
    /// its internal port nor a patch port.
    pub interface: Option<String>,
    /// The integration bridge ovn-controller patches localnet ports from.
    pub integration_bridge: String,
    /// Where `ovs-vswitchd` keeps `<bridge>.mgmt`.
    pub ovs_rundir: PathBuf,
    pub datapath_type: Option<String>,
    /// The API server's `--service-node-port-range`: the host's own
    /// connections to these ports on its addresses go to OVN
    /// ([`own_node_ports`]). `None`: they stay in the host.
    pub node_port_range: Option<(u16, u16)>,
}

/// The `external_ids` key marking a bridge the agent created.
pub const CREATED_ID: &str = "switchyard.io/created";

/// The name ovn-controller gives the gateway bridge's end of the patch to
/// the node's localnet port.
pub fn patch_port_name(node: &str, integration_bridge: &str) -> String {
    format!(
        "patch-{}-to-{integration_bridge}",
        names::localnet_port(node)
    )
}

/// `physnet:bridge` merged into existing `ovn-bridge-mappings`.
pub fn merge_mappings(current: Option<&str>, bridge: &str) -> String {
    let mut out: Vec<String> = current
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .filter(|m| m.split(':').next() != Some(names::PHYSICAL_NETWORK))
        .map(str::to_string)
        .collect();
    out.push(format!("{}:{bridge}", names::PHYSICAL_NETWORK));
    out.join(",")
}

/// The bridge's ports the flow table needs, from the interfaces OVS
/// records on it (OpenFlow's port descriptions cut names at 15 bytes,
/// shorter than ovn-controller's patch port names).
pub fn ports(
    ifaces: &[BridgeInterface],
    bridge: &str,
    interface: Option<&str>,
    patch_name: &str,
) -> Result<flows::Ports> {
    let patch = ifaces
        .iter()
        .find(|i| i.name == patch_name)
        .and_then(|i| i.ofport);
    let uplinks: Vec<&BridgeInterface> = ifaces
        .iter()
        .filter(|i| i.name != bridge)
        .filter(|i| match interface {
            Some(n) => i.name == n,
            None => i.kind.is_empty() || i.kind == "system" || i.kind == "dpdk",
        })
        .collect();
    match uplinks.as_slice() {
        [one] => Ok(flows::Ports {
            uplink: one.ofport.ok_or_else(|| {
                Error::OvsState(format!("{bridge}'s uplink {} has no OpenFlow port (yet)", one.name))
            })?,
            patch,
        }),
        [] => Err(Error::Config(format!(
            "gateway bridge {bridge} has no uplink port{}",
            interface.map(|i| format!(" {i}")).unwrap_or_default()
        ))),
        many => Err(Error::Config(format!(
            "gateway bridge {bridge} has several uplink candidates ({}): name one with --gateway-interface",
            many.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Waits for the next change of `rx`; forever without one (or once its
/// sender is gone).
async fn changed(rx: &mut Option<watch::Receiver<()>>) {
    if let Some(r) = rx {
        if r.changed().await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

/// Runs the gateway bridge until the process ends: publishes what it
/// learns into `out`, reacts to kernel changes signalled on `kicks`.
pub struct Gateway {
    pub cfg: GatewayConfig,
    pub ovs: Ovs,
    pub out: watch::Sender<Option<NodeGateway>>,
    pub kicks: watch::Receiver<u64>,
    /// The Services whose node ports and external addresses the bridge
    /// steers to the gateway router ([`steer`]); `None`: none are.
    pub services: Option<std::sync::Arc<dyn crate::service_source::ServiceSource>>,
}

impl Gateway {
    pub async fn run(mut self) {
        const BACKOFF_MIN: Duration = Duration::from_millis(100);
        const BACKOFF_MAX: Duration = Duration::from_secs(5);
        let mut backoff = BACKOFF_MIN;
        let mut last_error = String::new();
        loop {
            match self.session().await {
                Ok(()) => backoff = BACKOFF_MIN,
                Err(e) => {
                    let text = e.to_string();
                    if text != last_error {
                        warn!(error = %text, "gateway bridge not ready; retrying");
                        last_error = text;
                    } else {
                        debug!(error = %text, "gateway bridge still not ready");
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One OpenFlow connection's life: ends when the switch goes away.
    async fn session(&mut self) -> Result<()> {
        let (nl_conn, nl, _) =
            rtnetlink::new_connection().map_err(|e| Error::io("opening netlink", e))?;
        let nl_task = tokio::spawn(nl_conn);
        let r = self.session_with(&nl).await;
        nl_task.abort();
        r
    }

    async fn session_with(&mut self, nl: &rtnetlink::Handle) -> Result<()> {
        let bridge = self.ensure_bridge(nl).await?;
        let remote = format!(
            "unix:{}",
            self.cfg.ovs_rundir.join(format!("{bridge}.mgmt")).display()
        );
        let config = ClientConfig::new(&remote)
            .map_err(|e| Error::Config(format!("{remote}: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .request_timeout(Duration::from_secs(30))
            .async_messages(true);
        let (client, mut events) = Client::connect(config)
            .await
            .map_err(|e| Error::OvsState(format!("OpenFlow to {remote}: {e}")))?;
        info!(%bridge, "connected to the gateway bridge");
        let patch = patch_port_name(&self.cfg.node, &self.cfg.integration_bridge);
        // The first look at the bridge's device since connecting: after a
        // restart of the switch (or of the agent) an empty device is one
        // to restore.
        let mut fresh = true;
        // Subscribed before the first read, so no change is missed.
        let mut service_changes = self.services.as_ref().map(|s| s.changes());
        let mut quiet_uplink: Option<String> = None;
        loop {
            let descs = client
                .port_descs()
                .await
                .map_err(|e| Error::OvsState(format!("{bridge} ports: {e}")))?;
            let ifaces = self.ovs.bridge_interfaces(&bridge);
            let ports = ports(&ifaces, &bridge, self.cfg.interface.as_deref(), &patch)?;
            self.quiet_uplink(&ifaces, ports.uplink, &mut quiet_uplink);
            let steering = self.steering().await;
            self.sync_flows(&client, &bridge, ports, &steering).await?;
            let mac = descs
                .iter()
                .find(|p| p.port_no == port::LOCAL)
                .map(|p| format_mac(&p.hw_addr.0));
            self.sync_host(nl, &bridge, mac, fresh).await?;
            fresh = false;
            if let Err(e) = self.sync_own_node_ports(nl).await {
                warn!(error = %e, "cannot route the host's own NodePort connections to OVN");
            }
            // The host's addresses may have just been published.
            let now = self.steering().await;
            if now != steering {
                self.sync_flows(&client, &bridge, ports, &now).await?;
            }
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(Event::PortStatus(ps)) => {
                        debug!(port = %ps.desc.name, reason = ?ps.reason, "gateway bridge port changed");
                    }
                    Some(Event::Closed { .. }) | None => {
                        let reason = client.closed_reason().map(|r| r.to_string()).unwrap_or_default();
                        info!(%bridge, %reason, "OpenFlow connection to the gateway bridge closed");
                        return Ok(());
                    }
                    Some(_) => continue,
                },
                r = self.kicks.changed() => {
                    if r.is_err() {
                        // The kernel monitor is gone: fall back to polling.
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                    // Let a burst of changes settle into one look.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    self.kicks.borrow_and_update();
                }
                _ = changed(&mut service_changes) => {
                    // Let a burst of Service changes settle into one look.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                // A port added, removed or renumbered (the patch port
                // ovn-controller makes once the gateway router exists).
                _ = self.ovs.wait_bridge_interfaces_change(&bridge, &ifaces, Duration::from_secs(60)) => {}
            }
        }
    }

    /// What the Services ask the bridge to steer, on the addresses the
    /// node last published.
    async fn steering(&self) -> steer::Steering {
        let Some(source) = &self.services else {
            return steer::Steering::default();
        };
        let ips = self.published_ips();
        let snapshot = source.snapshot().await;
        steer::steering(&snapshot.services, &ips)
    }

    /// Makes the uplink's host end silent for ARP, once per uplink name.
    ///
    /// The uplink is the gateway router's as much as the host's: only the
    /// bridge's interface may answer ARP for the node IP (see
    /// `netlink::ignore_arp`; with the userspace datapath the host stack
    /// sees the uplink's frames too, and answered with the uplink's own
    /// MAC, which neither the bridge nor the gateway router accepts). Only
    /// for that datapath: with the kernel's the stack never sees these
    /// frames, and the setting would outlive the bridge on a NIC that
    /// needs to answer.
    fn quiet_uplink(&self, ifaces: &[BridgeInterface], uplink: u32, done: &mut Option<String>) {
        if self.cfg.datapath_type.as_deref() != Some("netdev") {
            return;
        }
        let Some(up) = ifaces.iter().find(|i| i.ofport == Some(uplink)) else {
            return;
        };
        if done.as_deref() == Some(up.name.as_str()) {
            return;
        }
        match crate::netlink::ignore_arp(&up.name) {
            Ok(()) => *done = Some(up.name.clone()),
            Err(e) => {
                debug!(interface = %up.name, error = %e, "cannot stop the host answering ARP on the uplink")
            }
        }
    }

    /// The node addresses last published.
    fn published_ips(&self) -> Vec<std::net::IpAddr> {
        self.out
            .borrow()
            .as_ref()
            .map(|g| g.ips.iter().map(|n| n.addr()).collect())
            .unwrap_or_default()
    }

    /// Routes the host's connections to NodePorts on its own addresses
    /// through the management port ([`own_node_ports`]), once it exists.
    async fn sync_own_node_ports(&self, nl: &rtnetlink::Handle) -> Result<()> {
        let Some(range) = self.cfg.node_port_range else {
            return Ok(());
        };
        let Some(mgmt) = host::read(nl, names::MGMT_INTERFACE).await? else {
            return Ok(());
        };
        let ips = self.published_ips();
        let served: Vec<u16> = match &self.services {
            Some(source) => source
                .snapshot()
                .await
                .services
                .iter()
                .filter_map(|s| crate::health::health_check(s).ok().flatten())
                .map(|(_, port)| port)
                .collect(),
            None => Vec::new(),
        };
        let plan = own_node_ports::plan(&ips, &mgmt.addresses, range, &served);
        if own_node_ports::sync(nl, mgmt.ifindex, &plan).await? {
            info!(
                rules = plan.rules.len(),
                routes = plan.routes.len(),
                "host's own NodePort connections routed through the management port"
            );
        }
        Ok(())
    }

    /// Installs the flow table `ports` and `steering` call for, unless the
    /// bridge holds it already.
    async fn sync_flows(
        &self,
        client: &Client,
        bridge: &str,
        ports: flows::Ports,
        steering: &steer::Steering,
    ) -> Result<()> {
        let want = flows::flows(ports, steering);
        let have = client
            .dump_flows(FlowStatsRequest::all())
            .await
            .map_err(|e| Error::OvsState(format!("{bridge} flows: {e}")))?;
        if flows::holds(&have, &want) {
            return Ok(());
        }
        let n = want.len();
        client
            .replace_flows(want)
            .await
            .map_err(|e| Error::OvsState(format!("replacing {bridge}'s flows: {e}")))?;
        info!(%bridge, flows = n, uplink = ports.uplink, patch = ?ports.patch,
            node_ports = steering.node_ports.len(), vips = steering.vips.len(),
            "gateway bridge flows replaced");
        Ok(())
    }

    /// Keeps the bridge interface's configuration and publishes it.
    async fn sync_host(
        &self,
        nl: &rtnetlink::Handle,
        bridge: &str,
        mac: Option<String>,
        fresh: bool,
    ) -> Result<()> {
        let Some(now) = host::read(nl, bridge).await? else {
            return Err(Error::OvsState(format!(
                "the gateway bridge's interface {bridge} does not exist (yet)"
            )));
        };
        let row = self.ovs.bridge(bridge);
        let saved = row.as_ref().and_then(|r| host::from_ids(&r.external_ids));
        let now = match host::decide(&now, saved.as_ref(), fresh) {
            host::Decision::Keep => now,
            host::Decision::Save(c) => {
                let ids: BTreeMap<String, String> = host::to_ids(&c).into_iter().collect();
                self.ovs
                    .set_bridge_keys(bridge, "external_ids", &ids)
                    .await?;
                c
            }
            host::Decision::Restore(saved) => {
                info!(%bridge, addresses = ?saved.addresses, next_hops = ?saved.next_hops, "restoring the gateway bridge's addresses on its recreated interface");
                host::restore(nl, bridge, now.ifindex, &saved).await?;
                let again = host::read(nl, bridge).await?.unwrap_or(now);
                let ids: BTreeMap<String, String> = host::to_ids(&again).into_iter().collect();
                self.ovs
                    .set_bridge_keys(bridge, "external_ids", &ids)
                    .await?;
                again
            }
        };
        let Some(mac) = mac else {
            return Err(Error::OvsState(format!("{bridge} has no LOCAL port")));
        };
        // Pin the MAC the gateway router will share, so it never moves.
        if row.as_ref().and_then(|r| r.other_config.get("hwaddr")) != Some(&mac) {
            let pin = BTreeMap::from([("hwaddr".to_string(), mac.clone())]);
            self.ovs
                .set_bridge_keys(bridge, "other_config", &pin)
                .await?;
        }
        let gw = NodeGateway {
            bridge: bridge.to_string(),
            mac,
            ips: now.addresses,
            next_hops: now.next_hops,
        };
        self.out.send_if_modified(|cur| {
            if cur.as_ref() == Some(&gw) {
                false
            } else {
                info!(gateway = %gw.to_json(), "gateway bridge state");
                *cur = Some(gw);
                true
            }
        });
        Ok(())
    }

    /// The bridge's name once it exists and is mapped.
    async fn ensure_bridge(&self, nl: &rtnetlink::Handle) -> Result<String> {
        let name = match &self.cfg.bridge {
            Some(b) => b.clone(),
            None => self.detect(nl).await?,
        };
        if self.ovs.bridge(&name).is_none() {
            let Some(uplink) = self.cfg.interface.clone() else {
                return Err(Error::Config(format!(
                    "gateway bridge {name} does not exist; --gateway-interface names the interface to make it from"
                )));
            };
            self.create(nl, &name, &uplink).await?;
        }
        let ids = self.ovs.node_ids();
        let want = merge_mappings(ids.get("ovn-bridge-mappings").map(String::as_str), &name);
        if ids.get("ovn-bridge-mappings") != Some(&want) {
            self.ovs
                .set_node_ids(&BTreeMap::from([("ovn-bridge-mappings".to_string(), want)]))
                .await?;
            info!(bridge = %name, "mapped {} to the gateway bridge", names::PHYSICAL_NETWORK);
        }
        Ok(name)
    }

    /// The OVS bridge the IPv4 (else IPv6) default route leaves through.
    async fn detect(&self, nl: &rtnetlink::Handle) -> Result<String> {
        let links = crate::netlink::default_route_links(nl).await?;
        links
            .into_iter()
            .find(|l| self.ovs.bridge(l).is_some())
            .ok_or_else(|| {
                Error::Config(
                    "no OVS bridge carries a default route: set --gateway-bridge (and --gateway-interface to create it)"
                        .into(),
                )
            })
    }

    /// Creates `name` from the interface `uplink`: the bridge takes the
    /// interface's MAC, addresses and default routes.
    async fn create(&self, nl: &rtnetlink::Handle, name: &str, uplink: &str) -> Result<()> {
        let link = crate::netlink::get_link(nl, uplink)
            .await?
            .ok_or_else(|| Error::Config(format!("gateway interface {uplink} does not exist")))?;
        let mac = crate::netlink::link_mac(&link)
            .ok_or_else(|| Error::Config(format!("gateway interface {uplink} has no MAC")))?;
        let moved = host::read(nl, uplink).await?.unwrap_or_default();
        info!(bridge = %name, interface = %uplink, addresses = ?moved.addresses, "creating the gateway bridge");
        let ids = BTreeMap::from([(CREATED_ID.to_string(), "true".to_string())]);
        self.ovs
            .create_bridge(
                name,
                self.cfg.datapath_type.as_deref(),
                uplink,
                &format_mac(&mac),
                &ids,
            )
            .await?;
        let mut index = None;
        for _ in 0..100 {
            if let Some(l) = crate::netlink::get_link(nl, name).await? {
                index = Some(l.header.index);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let index = index.ok_or_else(|| {
            Error::OvsState(format!("the interface of new bridge {name} did not appear"))
        })?;
        for net in &moved.addresses {
            crate::netlink::delete_address(nl, moved.ifindex, *net).await?;
        }
        host::restore(nl, name, index, &moved).await?;
        let _ = crate::ethtool::disable_tx_checksum(uplink);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, kind: &str, ofport: Option<u32>) -> BridgeInterface {
        BridgeInterface {
            name: name.into(),
            kind: kind.into(),
            ofport,
        }
    }

    #[test]
    fn mappings_keep_other_networks() {
        assert_eq!(merge_mappings(None, "br-phy"), "physnet:br-phy");
        assert_eq!(
            merge_mappings(Some("other:br-x, physnet:br-old"), "br-phy"),
            "other:br-x,physnet:br-phy"
        );
    }

    #[test]
    fn finds_the_uplink_and_the_patch_port() {
        let patch = patch_port_name("n1", "br-int");
        assert_eq!(patch, "patch-lnet-n1-to-br-int");
        let ifaces = [
            iface("br-phy", "internal", Some(65534)),
            iface("ul0", "", Some(1)),
            iface(&patch, "patch", Some(2)),
        ];
        assert_eq!(
            ports(&ifaces, "br-phy", None, &patch).unwrap(),
            flows::Ports {
                uplink: 1,
                patch: Some(2)
            }
        );
        assert_eq!(
            ports(&ifaces[..2], "br-phy", Some("ul0"), &patch).unwrap(),
            flows::Ports {
                uplink: 1,
                patch: None
            }
        );
        // A patch port without its number yet is no patch port yet.
        let pending = [ifaces[1].clone(), iface(&patch, "patch", None)];
        assert_eq!(ports(&pending, "br-phy", None, &patch).unwrap().patch, None);
        let two = [iface("a", "", Some(1)), iface("b", "", Some(3))];
        let e = ports(&two, "br-phy", None, &patch).unwrap_err().to_string();
        assert!(e.contains("--gateway-interface"), "{e}");
        assert!(ports(&two, "br-phy", Some("b"), &patch).is_ok());
        assert!(ports(&ifaces[..1], "br-phy", None, &patch).is_err());
    }
}
