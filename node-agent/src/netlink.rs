//! Kernel networking through rtnetlink: veth pairs, addresses, routes, and
//! the network namespaces they live in.
//!
//! A netlink socket belongs to the network namespace of the thread that
//! created it, and `setns(2)` changes the namespace of the calling thread
//! only. So every operation here runs on a dedicated short-lived OS thread
//! with its own single-threaded tokio runtime: the thread enters the target
//! namespace (or stays in the daemon's), opens its own netlink connection,
//! does its work and exits. No tokio worker shared with other tasks ever
//! changes namespace.

use std::fs::File;
use std::future::Future;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use ipnet::IpNet;
use nix::sched::{setns, CloneFlags};
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoData, InfoVeth, LinkAttribute, LinkFlags,
    LinkMessage,
};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::error::{Error, Result};
use crate::ethtool;

/// Runs `f` with a netlink handle on a fresh thread inside `netns` (a path
/// such as `/var/run/netns/NAME` or `/proc/PID/ns/net`), or in the daemon's
/// own namespace when `netns` is `None`.
pub async fn run_in<T, F, Fut>(netns: Option<&Path>, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>>,
{
    let netns: Option<PathBuf> = netns.map(Path::to_path_buf);
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || {
            let _ = tx.send(run_on_this_thread(netns.as_deref(), f));
        })
        .map_err(|e| Error::io("spawning a netns thread", e))?;
    rx.await.map_err(|_| {
        Error::io(
            "netns thread",
            std::io::Error::other("thread ended without an answer"),
        )
    })?
}

fn run_on_this_thread<T, F, Fut>(netns: Option<&Path>, f: F) -> Result<T>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    if let Some(path) = netns {
        let file = File::open(path)
            .map_err(|e| Error::io(format!("opening netns {}", path.display()), e))?;
        setns(&file, CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::sys(format!("entering netns {}", path.display()), e))?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("building a netns runtime", e))?;
    rt.block_on(async move {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| Error::io("opening netlink", e))?;
        let task = tokio::spawn(conn);
        let out = f(handle).await;
        task.abort();
        out
    })
}

/// A link's index, or `None` when no link has that name.
pub async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>> {
    Ok(get_link(handle, name).await?.map(|m| m.header.index))
}

pub async fn get_link(handle: &Handle, name: &str) -> Result<Option<LinkMessage>> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link),
        Err(e) => {
            let err = Error::netlink(format!("looking up link {name}"), e);
            if err.is_not_found() {
                Ok(None)
            } else {
                Err(err)
            }
        }
    }
}

/// Deletes a link by name; `Ok(false)` when it did not exist.
pub async fn delete_link(handle: &Handle, name: &str) -> Result<bool> {
    let Some(index) = link_index(handle, name).await? else {
        return Ok(false);
    };
    match handle.link().del(index).execute().await {
        Ok(()) => Ok(true),
        Err(e) => {
            let err = Error::netlink(format!("deleting link {name}"), e);
            if err.is_not_found() {
                Ok(false)
            } else {
                Err(err)
            }
        }
    }
}

/// Creates the pod's veth pair, the pod end in the pod's namespace with its
/// final name (`CNI_IFNAME`), MAC and MTU, the host end up:
///
/// 1. one request creates both ends (down: a veth end cannot be opened
///    before its pair exists), the pod end directly in the pod's namespace;
/// 2. one request brings the host end up with IPv6 address generation off:
///    it is only ever an OVS port, and a link-local address would cost
///    duplicate address detection, then address and route notifications
///    that ovs-vswitchd reacts to a second later, and stray IPv6 traffic
///    into the pod. IPv6 configures an interface only once its carrier is
///    up, which happens later (when [`configure_pod`] brings the pod end
///    up), so no address is ever made;
/// 3. TX checksum offload off on the host end (needed by the userspace
///    datapath, harmless for the kernel one; the pod end's is turned off
///    by [`configure_pod`]).
///
/// Creating the pod end in place rather than moving it there spares the
/// kernel a namespace change, which costs 10-20 ms under the RTNL lock.
///
/// A leftover host end (an interrupted ADD) is deleted first, which deletes
/// its pod end too; an unrelated interface already named `CNI_IFNAME` in
/// the pod is replaced.
pub async fn create_veth(
    host: String,
    pod_netns: PathBuf,
    ifname: String,
    mac: [u8; 6],
    mtu: u32,
) -> Result<Option<[u8; 6]>> {
    for attempt in 0..2 {
        let (host2, ns2, if2) = (host.clone(), pod_netns.clone(), ifname.clone());
        let created = run_in(None, move |h| async move {
            let ns = File::open(&ns2)
                .map_err(|e| Error::io(format!("opening netns {}", ns2.display()), e))?;
            delete_link(&h, &host2).await?;
            // Down: a veth end cannot be opened before its pair exists.
            let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
                .name(if2.clone())
                .address(mac.to_vec())
                .mtu(mtu)
                .setns_by_fd(ns.as_raw_fd())
                .build();
            let r = h
                .link()
                .add(
                    LinkVeth::new(&host2, &if2)
                        .mtu(mtu)
                        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
                        .build(),
                )
                .execute()
                .await;
            match r {
                Ok(()) => {}
                Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code().abs() == libc::EEXIST => {
                    return Ok(None);
                }
                Err(e) => return Err(Error::netlink(format!("creating veth {host2}"), e)),
            }
            let index = link_index(&h, &host2).await?.ok_or_else(|| {
                Error::OvsState(format!("veth {host2} vanished after its creation"))
            })?;
            let up = h
                .link()
                .change(
                    LinkUnspec::new_with_index(index)
                        .up()
                        .append_extra_attribute(LinkAttribute::AfSpecUnspec(vec![
                            AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(
                                In6AddrGenMode::None,
                            )]),
                        ]))
                        .build(),
                )
                .execute()
                .await;
            match up {
                Ok(()) => {}
                // A kernel without IPv6 makes no addresses anyway.
                Err(rtnetlink::Error::NetlinkError(m))
                    if m.raw_code().abs() == libc::EAFNOSUPPORT =>
                {
                    h.link()
                        .change(LinkUnspec::new_with_index(index).up().build())
                        .execute()
                        .await
                        .map_err(|e| Error::netlink(format!("bringing {host2} up"), e))?;
                }
                Err(e) => return Err(Error::netlink(format!("bringing {host2} up"), e)),
            }
            ethtool::disable_tx_checksum(&host2)
                .map_err(|e| Error::io(format!("turning off TX checksum on {host2}"), e))?;
            if let Err(e) = ignore_arp(&host2) {
                tracing::warn!(interface = %host2, error = %e, "cannot stop the host answering ARP on a pod's veth");
            }
            Ok(Some(inspect(&h, &host2).await?.and_then(|s| s.mac)))
        })
        .await?;
        match created {
            Some(mac) => return Ok(mac),
            // The pod already has an interface of that name: replace it.
            None if attempt == 0 => {
                let name = ifname.clone();
                run_in(Some(&pod_netns), move |h| async move {
                    delete_link(&h, &name).await
                })
                .await?;
            }
            None => {}
        }
    }
    Err(Error::OvsState(format!(
        "cannot create {ifname} in {}: the name stays taken",
        pod_netns.display()
    )))
}

/// Stops the host's IPv4 stack answering ARP on an interface that is only
/// an Open vSwitch port (a pod veth's host end, the gateway bridge's
/// uplink): `arp_ignore` 8, never; in the calling thread's namespace.
///
/// Why: with the userspace datapath, Open vSwitch reads the host end
/// through a packet socket, so the host stack sees every frame the pod
/// sends as well. Linux answers ARP for any of its addresses on any
/// interface, so a pod asking for the management port's address (the node
/// host talking to it) could get the veth's MAC instead of the port's, and
/// its replies then went straight into the host stack, past OVN: a node
/// host's connection to a ClusterIP whose backend was on its own node got
/// the backend's un-NATed reply and reset. IPv6 needs nothing: the host end
/// has no address, and neighbour solicitations are only answered for an
/// address of the receiving interface. With the kernel datapath the host
/// stack never sees these frames, and the setting changes nothing.
pub fn ignore_arp(name: &str) -> std::io::Result<()> {
    std::fs::write(format!("/proc/sys/net/ipv4/conf/{name}/arp_ignore"), "8")
}

/// Whether a link exists in the daemon's namespace.
pub async fn host_link_exists(name: String) -> Result<bool> {
    run_in(None, move |h| async move {
        Ok(link_index(&h, &name).await?.is_some())
    })
    .await
}

/// Deletes links in the daemon's namespace; absent ones are fine.
pub async fn delete_host_links(names: Vec<String>) -> Result<()> {
    run_in(None, move |h| async move {
        for n in &names {
            delete_link(&h, n).await?;
        }
        Ok(())
    })
    .await
}

/// Configures a host-side interface that OVS created (the management
/// port): MAC, MTU, TX checksum off, addresses, up, routes. Returns `false`
/// when the interface does not exist (yet).
pub async fn configure_host_link(
    name: String,
    mac: [u8; 6],
    mtu: u32,
    addresses: Vec<IpNet>,
    routes: Vec<(IpNet, IpAddr)>,
) -> Result<bool> {
    run_in(None, move |h| async move {
        let Some(index) = link_index(&h, &name).await? else {
            return Ok(false);
        };
        h.link()
            .change(
                LinkUnspec::new_with_index(index)
                    .address(mac.to_vec())
                    .mtu(mtu)
                    .up()
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("configuring {name}"), e))?;
        // Best effort: tap devices may not implement the ioctl.
        if let Err(e) = ethtool::disable_tx_checksum(&name) {
            tracing::debug!(interface = %name, error = %e, "cannot turn off TX checksum offload");
        }
        add_addresses(&h, index, &name, &addresses).await?;
        for (dst, gw) in routes {
            add_route(&h, index, dst, Some(gw)).await?;
        }
        Ok(true)
    })
    .await
}

/// CHECK's view of the pod interface, read inside the pod's namespace.
pub async fn inspect_in(netns: PathBuf, name: String) -> Result<Option<LinkState>> {
    run_in(
        Some(&netns),
        move |h| async move { inspect(&h, &name).await },
    )
    .await
}

/// What the pod's interface must look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInterface {
    pub ifname: String,
    pub mac: [u8; 6],
    pub mtu: u32,
    pub ips: Vec<IpNet>,
    pub gateways: Vec<IpAddr>,
    /// Extra routes (destination, next hop) beyond the default routes.
    pub routes: Vec<(IpNet, IpAddr)>,
}

/// Inside the pod's namespace, on the interface [`create_veth`] made: brings
/// it up and says so on `up` (the host end's carrier comes up with it:
/// the caller adds the OVS port after that, so that ovs-vswitchd and
/// ovn-controller see a port appear, not a port appear and then change
/// state, since a link event in the node's namespace makes ovs-vswitchd
/// reconfigure every bridge and port); then turns TX checksum offload off,
/// adds the addresses and routes, and brings `lo` up.
pub async fn configure_pod(
    netns: PathBuf,
    spec: PodInterface,
    up: tokio::sync::oneshot::Sender<()>,
) -> Result<()> {
    run_in(Some(&netns), move |h| async move {
        let index = link_index(&h, &spec.ifname).await?.ok_or_else(|| {
            Error::OvsState(format!("{} is missing in the pod namespace", spec.ifname))
        })?;
        h.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("bringing {} up", spec.ifname), e))?;
        let _ = up.send(());
        ethtool::disable_tx_checksum(&spec.ifname)
            .map_err(|e| Error::io(format!("turning off TX checksum on {}", spec.ifname), e))?;
        add_addresses(&h, index, &spec.ifname, &spec.ips).await?;
        if let Some(lo) = link_index(&h, "lo").await? {
            h.link()
                .change(LinkUnspec::new_with_index(lo).up().build())
                .execute()
                .await
                .map_err(|e| Error::netlink("bringing lo up", e))?;
        }
        let mut routes: Vec<(IpNet, IpAddr)> = spec
            .gateways
            .iter()
            .map(|gw| {
                let any: IpNet = match gw {
                    IpAddr::V4(_) => IpNet::V4(Default::default()),
                    IpAddr::V6(_) => IpNet::V6(Default::default()),
                };
                (any, *gw)
            })
            .collect();
        routes.extend(spec.routes.iter().cloned());
        for (dst, gw) in routes {
            add_route(&h, index, dst, Some(gw)).await?;
        }
        Ok(())
    })
    .await
}

/// Adds (or replaces) addresses on a link. IPv6 addresses skip duplicate
/// address detection, which would hold them back for a second or more;
/// OVN owns the addresses, so no duplicate can exist.
pub async fn add_addresses(h: &Handle, index: u32, name: &str, addresses: &[IpNet]) -> Result<()> {
    for net in addresses {
        let mut req = h
            .address()
            .add(index, net.addr(), net.prefix_len())
            .replace();
        if net.addr().is_ipv6() {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        req.execute()
            .await
            .map_err(|e| Error::netlink(format!("adding {net} to {name}"), e))?;
    }
    Ok(())
}

/// Adds (or replaces) a route through `index`.
pub async fn add_route(h: &Handle, index: u32, dst: IpNet, gw: Option<IpAddr>) -> Result<()> {
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(dst.network(), dst.prefix_len())
        .map_err(|e| Error::Config(format!("route {dst}: {e}")))?
        .output_interface(index);
    if let Some(gw) = gw {
        b = b
            .gateway(gw)
            .map_err(|e| Error::Config(format!("route {dst} via {gw}: {e}")))?;
    }
    h.route()
        .add(b.build())
        .replace()
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("adding route {dst}"), e))
}

/// What CHECK compares: the interface as the kernel has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkState {
    pub mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    pub up: bool,
    pub ips: Vec<IpNet>,
}

/// Reads an interface's MAC, MTU, state and addresses; `None` when absent.
pub async fn inspect(h: &Handle, name: &str) -> Result<Option<LinkState>> {
    let Some(link) = get_link(h, name).await? else {
        return Ok(None);
    };
    let mut state = LinkState {
        mac: None,
        mtu: None,
        up: link.header.flags.contains(LinkFlags::Up),
        ips: vec![],
    };
    for a in &link.attributes {
        match a {
            LinkAttribute::Address(b) if b.len() == 6 => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(b);
                state.mac = Some(mac);
            }
            LinkAttribute::Mtu(m) => state.mtu = Some(*m),
            _ => {}
        }
    }
    let mut addrs = h
        .address()
        .get()
        .set_link_index_filter(link.header.index)
        .execute();
    while let Some(msg) = addrs
        .try_next()
        .await
        .map_err(|e| Error::netlink(format!("listing addresses of {name}"), e))?
    {
        for a in &msg.attributes {
            if let AddressAttribute::Address(ip) = a {
                if let Ok(net) = IpNet::new(*ip, msg.header.prefix_len) {
                    state.ips.push(net);
                }
            }
        }
    }
    Ok(Some(state))
}

/// A link's MAC address.
pub fn link_mac(link: &LinkMessage) -> Option<[u8; 6]> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(b) if b.len() == 6 => {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(b);
            Some(mac)
        }
        _ => None,
    })
}

/// Names of the links the main table's default routes leave through, the
/// IPv4 ones first.
pub async fn default_route_links(h: &Handle) -> Result<Vec<String>> {
    use rtnetlink::packet_route::route::RouteAttribute;
    let mut indexes = Vec::new();
    for v6 in [false, true] {
        let req = if v6 {
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build()
        } else {
            RouteMessageBuilder::<std::net::Ipv4Addr>::new().build()
        };
        let mut routes = h.route().get(req).execute();
        while let Some(r) = routes
            .try_next()
            .await
            .map_err(|e| Error::netlink("listing routes", e))?
        {
            if r.header.destination_prefix_length != 0 || r.header.table != 254 {
                continue;
            }
            for a in &r.attributes {
                if let RouteAttribute::Oif(i) = a {
                    if !indexes.contains(i) {
                        indexes.push(*i);
                    }
                }
            }
        }
    }
    let mut names = Vec::new();
    for i in indexes {
        let mut links = h.link().get().match_index(i).execute();
        if let Ok(Some(l)) = links.try_next().await {
            names.extend(l.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            }));
        }
    }
    Ok(names)
}

/// Removes an address from a link; an absent one is fine.
pub async fn delete_address(h: &Handle, index: u32, net: IpNet) -> Result<()> {
    let mut addrs = h
        .address()
        .get()
        .set_link_index_filter(index)
        .set_address_filter(net.addr())
        .set_prefix_length_filter(net.prefix_len())
        .execute();
    while let Some(msg) = addrs
        .try_next()
        .await
        .map_err(|e| Error::netlink(format!("finding {net}"), e))?
    {
        h.address()
            .del(msg)
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("removing {net}"), e))?;
    }
    Ok(())
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_round_trip() {
        let m = parse_mac("0a:58:0a:f4:01:05").unwrap();
        assert_eq!(m, [0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x05]);
        assert_eq!(format_mac(&m), "0a:58:0a:f4:01:05");
        assert!(parse_mac("0a:58:0a:f4:01").is_none());
        assert!(parse_mac("0a:58:0a:f4:01:05:07").is_none());
        assert!(parse_mac("zz:58:0a:f4:01:05").is_none());
    }
}
