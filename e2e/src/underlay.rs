//! The underlay: the "physical" network between the sandbox's nodes.
//!
//! A Linux bridge `br0` lives in its own network namespace
//! (`sy<INDEX>-underlay`). Each node gets a veth pair: one end (`n<K>`) on
//! that bridge, the other (`ul0`) inside the node's namespace, where it is a
//! port of the OVS bridge `br-phy` (userspace datapath). The node's
//! underlay IP sits on `br-phy`'s internal interface and is its
//! `ovn-encap-ip`: with the userspace datapath, Geneve tunnels only work
//! when the tunnel endpoint address lives on an OVS bridge.
//!
//! Addresses come from 198.18.0.0/15 (RFC 2544 benchmarking range):
//! sandbox INDEX uses 198.18.INDEX.0/24, node K gets .(10+K). Claiming the
//! underlay namespace name is atomic (`ip netns add` fails when it exists),
//! which is how two sandboxes on one machine get different indexes.

use std::net::Ipv4Addr;

use anyhow::{bail, Context, Result};

use crate::util::{delete_netns, netns_exists, sh};

/// Most sandboxes on one machine (one /24 each).
pub const MAX_SANDBOXES: u8 = 64;

pub struct Underlay {
    pub index: u8,
    pub netns: String,
    deleted: bool,
}

/// The underlay namespace's name for sandbox `index`.
pub fn netns_name(index: u8) -> String {
    format!("sy{index}-underlay")
}

impl Underlay {
    /// Claims `index` (or the first free one) and creates the bridge.
    pub fn create(index: Option<u8>) -> Result<Underlay> {
        let candidates: Vec<u8> = match index {
            Some(i) => vec![i],
            None => (0..MAX_SANDBOXES).collect(),
        };
        for i in candidates {
            let name = netns_name(i);
            if netns_exists(&name) {
                continue;
            }
            if sh(&["ip", "netns", "add", &name]).is_err() {
                continue;
            }
            let ul = Underlay {
                index: i,
                netns: name,
                deleted: false,
            };
            ul.setup_bridge()?;
            return Ok(ul);
        }
        match index {
            Some(i) => bail!(
                "sandbox index {i} is in use (network namespace {} exists): \
                 is another sandbox running? `switchyard-sandbox down` stops it",
                netns_name(i)
            ),
            None => bail!("all {MAX_SANDBOXES} sandbox indexes are in use"),
        }
    }

    fn setup_bridge(&self) -> Result<()> {
        let ns = self.netns.as_str();
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        sh(&["ip", "-n", ns, "link", "add", "br0", "type", "bridge"])?;
        sh(&["ip", "-n", ns, "link", "set", "br0", "up"])?;
        Ok(())
    }

    /// The node's underlay address.
    pub fn node_ip(&self, node: usize) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.index, 10 + node as u8)
    }

    pub const PREFIX: u8 = 24;

    /// Connects the node namespace `node_ns` to the bridge: `ul0` there,
    /// `n<K>` here, both up with TX checksum offload off.
    pub fn attach(&self, node: usize, node_ns: &str) -> Result<()> {
        let ul = self.netns.as_str();
        let here = format!("n{node}");
        sh(&[
            "ip", "-n", ul, "link", "add", &here, "type", "veth", "peer", "name", "ul0", "netns",
            node_ns,
        ])
        .with_context(|| format!("creating the underlay veth of node {node}"))?;
        sh(&["ip", "-n", ul, "link", "set", &here, "master", "br0", "up"])?;
        sh(&["ip", "-n", node_ns, "link", "set", "ul0", "up"])?;
        sh(&[
            "ip", "netns", "exec", ul, "ethtool", "-K", &here, "tx", "off",
        ])?;
        sh(&[
            "ip", "netns", "exec", node_ns, "ethtool", "-K", "ul0", "tx", "off",
        ])?;
        Ok(())
    }

    pub fn delete(&mut self) {
        if !self.deleted {
            self.deleted = true;
            delete_netns(&self.netns);
        }
    }
}

impl Drop for Underlay {
    fn drop(&mut self) {
        self.delete();
    }
}
