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
//! sandbox INDEX uses 198.18.INDEX.0/24, node K gets .(10+K); and, for
//! IPv6, 2001:db8:18:INDEX::/64 (documentation range), node K gets
//! ::(10+K) (hex). Claiming the underlay namespace name is atomic (`ip
//! netns add` fails when it exists), which is how two sandboxes on one
//! machine get different indexes.
//!
//! The **external host** (`sy<INDEX>-external`) sits on the same bridge,
//! outside every node: .1 and ::1 on the underlay, every node's default
//! next hop, and an "internet" address behind it ([`INTERNET_V4`],
//! [`INTERNET_V6`], on its loopback) that only the nodes' default routes
//! lead to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{bail, Context, Result};

use crate::util::{delete_netns, netns_exists, sh};

/// Most sandboxes on one machine (one /24 each).
pub const MAX_SANDBOXES: u8 = 64;

pub struct Underlay {
    pub index: u8,
    pub netns: String,
    deleted: bool,
}

/// An address behind the external host, reached only by default routes.
pub const INTERNET_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
pub const INTERNET_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 1);

/// The underlay namespace's name for sandbox `index`.
pub fn netns_name(index: u8) -> String {
    format!("sy{index}-underlay")
}

/// The external host's namespace for sandbox `index`.
pub fn external_netns_name(index: u8) -> String {
    format!("sy{index}-external")
}

/// The underlay's IPv6 address with host part `host`.
pub fn ipv6(index: u8, host: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0x18, u16::from(index), 0, 0, 0, host)
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
        self.setup_external()
    }

    /// The external host: its own namespace, a veth onto the bridge with
    /// the underlay's first addresses, the internet addresses on `lo`.
    fn setup_external(&self) -> Result<()> {
        let (ul, ext) = (self.netns.as_str(), external_netns_name(self.index));
        delete_netns(&ext);
        sh(&["ip", "netns", "add", &ext])?;
        sh(&["ip", "-n", &ext, "link", "set", "lo", "up"])?;
        sh(&[
            "ip", "-n", ul, "link", "add", "x0", "type", "veth", "peer", "name", "eth0", "netns",
            &ext,
        ])?;
        sh(&["ip", "-n", ul, "link", "set", "x0", "master", "br0", "up"])?;
        for (ns, dev) in [(ul, "x0"), (ext.as_str(), "eth0")] {
            sh(&["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off"])?;
        }
        let v4 = format!("{}/{}", self.external_ip(), Self::PREFIX);
        let v6 = format!("{}/{}", self.external_ip6(), Self::PREFIX6);
        sh(&["ip", "-n", &ext, "addr", "add", &v4, "dev", "eth0"])?;
        sh(&["ip", "-n", &ext, "addr", "add", &v6, "dev", "eth0", "nodad"])?;
        sh(&["ip", "-n", &ext, "link", "set", "eth0", "up"])?;
        sh(&[
            "ip",
            "-n",
            &ext,
            "addr",
            "add",
            &format!("{INTERNET_V4}/32"),
            "dev",
            "lo",
        ])?;
        sh(&[
            "ip",
            "-n",
            &ext,
            "addr",
            "add",
            &format!("{INTERNET_V6}/128"),
            "dev",
            "lo",
            "nodad",
        ])?;
        Ok(())
    }

    /// The node's underlay address.
    pub fn node_ip(&self, node: usize) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.index, 10 + node as u8)
    }

    /// The node's underlay IPv6 address.
    pub fn node_ip6(&self, node: usize) -> Ipv6Addr {
        ipv6(self.index, 0x10 + node as u16)
    }

    /// The external host's underlay addresses: every node's next hop.
    pub fn external_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.index, 1)
    }
    pub fn external_ip6(&self) -> Ipv6Addr {
        ipv6(self.index, 1)
    }

    /// The external host's addresses: underlay and internet, both families.
    pub fn external_ips(&self) -> [IpAddr; 4] {
        [
            self.external_ip().into(),
            self.external_ip6().into(),
            INTERNET_V4.into(),
            INTERNET_V6.into(),
        ]
    }

    pub fn external_netns(&self) -> String {
        external_netns_name(self.index)
    }

    pub const PREFIX: u8 = 24;
    pub const PREFIX6: u8 = 64;

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

    /// Cuts node `node` off the underlay (its bridge port down) or joins it
    /// back.
    pub fn set_node_link(&self, node: usize, up: bool) -> Result<()> {
        let state = if up { "up" } else { "down" };
        sh(&[
            "ip",
            "-n",
            &self.netns,
            "link",
            "set",
            &format!("n{node}"),
            state,
        ])
        .with_context(|| format!("setting node {node}'s underlay port {state}"))?;
        Ok(())
    }

    /// The sandbox process's own (root) namespace on the underlay: its
    /// address, where OVN central serves TLS to the nodes (`up --tls`).
    pub fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.index, 2)
    }

    /// The host interface [`attach_host`](Self::attach_host) creates.
    pub fn host_link(&self) -> String {
        format!("sy{}-central", self.index)
    }

    /// Connects the namespace this process runs in to the bridge with
    /// [`host_ip`](Self::host_ip), so daemons here serve the nodes over
    /// TCP. The pair dies with the underlay namespace.
    pub fn attach_host(&self) -> Result<()> {
        let ul = self.netns.as_str();
        let host = self.host_link();
        // Left behind by a sandbox of this index that was killed outright.
        let _ = sh(&["ip", "link", "del", &host]);
        sh(&[
            "ip", "link", "add", &host, "type", "veth", "peer", "name", "c0", "netns", ul,
        ])
        .context("creating the host's underlay veth")?;
        sh(&["ip", "-n", ul, "link", "set", "c0", "master", "br0", "up"])?;
        sh(&[
            "ip", "netns", "exec", ul, "ethtool", "-K", "c0", "tx", "off",
        ])?;
        sh(&["ethtool", "-K", &host, "tx", "off"])?;
        let cidr = format!("{}/{}", self.host_ip(), Self::PREFIX);
        sh(&["ip", "addr", "add", &cidr, "dev", &host])?;
        sh(&["ip", "link", "set", &host, "up"])?;
        Ok(())
    }

    pub fn delete(&mut self) {
        if !self.deleted {
            self.deleted = true;
            delete_netns(&external_netns_name(self.index));
            delete_netns(&self.netns);
        }
    }
}

impl Drop for Underlay {
    fn drop(&mut self) {
        self.delete();
    }
}
