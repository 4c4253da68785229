//! The gateway bridge's interface in the host stack: its addresses and
//! default routes (what the node annotation publishes), putting them back
//! when the interface was recreated, and kernel change notifications.
//!
//! A bridge's internal port is a device `ovs-vswitchd` makes: when it
//! goes with its datapath (`ovs-appctl exit --cleanup`, a reboot with the
//! database kept, the bridge deleted and made again), it comes back
//! without addresses or routes, and the node would lose its IP (and the
//! Geneve tunnels that start from it). The agent therefore keeps
//! the last configuration it saw on the device, with the device's ifindex,
//! and restores it onto a device that has none when it looks at it for the
//! first time since connecting to `ovs-vswitchd` (which restarted, or
//! the agent did), or when the device's ifindex changed. An address
//! removed while the agent watches is a decision someone made: it is
//! published as missing, and saved so, never put back.

use std::net::IpAddr;

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressScope,
};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteType};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use crate::error::{Error, Result};
use crate::netlink::{add_addresses, add_route, get_link};

/// What the host stack holds on the bridge's interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostConfig {
    pub ifindex: u32,
    /// Global addresses, primary ones first, IPv4 before IPv6.
    pub addresses: Vec<IpNet>,
    /// Next hops of the main table's default routes through the interface,
    /// IPv4 first.
    pub next_hops: Vec<IpAddr>,
}

/// Reads the interface's configuration; `None` when it does not exist.
pub async fn read(h: &Handle, name: &str) -> Result<Option<HostConfig>> {
    let Some(link) = get_link(h, name).await? else {
        return Ok(None);
    };
    let ifindex = link.header.index;
    let mut addresses: Vec<(bool, bool, IpNet)> = Vec::new();
    let mut stream = h.address().get().set_link_index_filter(ifindex).execute();
    while let Some(msg) = stream
        .try_next()
        .await
        .map_err(|e| Error::netlink(format!("listing addresses of {name}"), e))?
    {
        if msg.header.scope != AddressScope::Universe {
            continue;
        }
        let secondary = msg.attributes.iter().any(
            |a| matches!(a, AddressAttribute::Flags(f) if f.contains(AddressFlags::Secondary)),
        ) || msg.header.flags.contains(AddressHeaderFlags::Secondary);
        for a in &msg.attributes {
            if let AddressAttribute::Address(ip) = a {
                if let Ok(net) = IpNet::new(*ip, msg.header.prefix_len) {
                    addresses.push((ip.is_ipv6(), secondary, net));
                }
            }
        }
    }
    // Stable: the kernel's order within (family, primary first).
    addresses.sort_by_key(|(v6, secondary, _)| (*v6, *secondary));
    let mut next_hops = Vec::new();
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
            .map_err(|e| Error::netlink(format!("listing routes of {name}"), e))?
        {
            let main = r.header.table == 254
                || r.attributes
                    .iter()
                    .any(|a| matches!(a, RouteAttribute::Table(254)));
            let ours = r
                .attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Oif(i) if *i == ifindex));
            if !main
                || !ours
                || r.header.destination_prefix_length != 0
                || r.header.kind != RouteType::Unicast
            {
                continue;
            }
            let gw = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
                RouteAttribute::Gateway(RouteAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
                _ => None,
            });
            if let Some(gw) = gw {
                if !next_hops
                    .iter()
                    .any(|h: &IpAddr| h.is_ipv6() == gw.is_ipv6())
                {
                    next_hops.push(gw);
                }
            }
        }
    }
    Ok(Some(HostConfig {
        ifindex,
        addresses: addresses.into_iter().map(|(_, _, n)| n).collect(),
        next_hops,
    }))
}

/// Puts `saved`'s addresses and default routes onto the interface
/// `index` and brings it up. IPv6 addresses skip duplicate address
/// detection: the node's own address came back, it is no newcomer.
pub async fn restore(h: &Handle, name: &str, index: u32, saved: &HostConfig) -> Result<()> {
    h.link()
        .change(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("bringing {name} up"), e))?;
    add_addresses(h, index, name, &saved.addresses).await?;
    for hop in &saved.next_hops {
        let any = match hop {
            IpAddr::V4(_) => IpNet::V4(Default::default()),
            IpAddr::V6(_) => IpNet::V6(Default::default()),
        };
        add_route(h, index, any, Some(*hop)).await?;
    }
    Ok(())
}

/// Formats a saved configuration for the Bridge row's `external_ids`.
pub fn to_ids(c: &HostConfig) -> [(String, String); 3] {
    let join = |v: Vec<String>| v.join(",");
    [
        (IFINDEX_ID.to_string(), c.ifindex.to_string()),
        (
            ADDRESSES_ID.to_string(),
            join(c.addresses.iter().map(IpNet::to_string).collect()),
        ),
        (
            NEXT_HOPS_ID.to_string(),
            join(c.next_hops.iter().map(IpAddr::to_string).collect()),
        ),
    ]
}

/// Parses what [`to_ids`] wrote; `None` when nothing (usable) was saved.
pub fn from_ids(ids: &std::collections::BTreeMap<String, String>) -> Option<HostConfig> {
    let list = |k: &str| -> Vec<String> {
        ids.get(k)
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    Some(HostConfig {
        ifindex: ids.get(IFINDEX_ID)?.parse().ok()?,
        addresses: list(ADDRESSES_ID)
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect(),
        next_hops: list(NEXT_HOPS_ID)
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect(),
    })
}

/// Bridge `external_ids` keys of the saved host configuration.
pub const IFINDEX_ID: &str = "switchyard.io/host-ifindex";
pub const ADDRESSES_ID: &str = "switchyard.io/host-addresses";
pub const NEXT_HOPS_ID: &str = "switchyard.io/host-next-hops";

/// What to do about the interface, from what it holds now and what was
/// saved: restore onto an empty device that is new to the agent (`fresh`:
/// first look since connecting to the switch) or was recreated (another
/// ifindex); otherwise the kernel's state is the truth (and is saved when
/// it differs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Restore(HostConfig),
    Save(HostConfig),
    Keep,
}

pub fn decide(now: &HostConfig, saved: Option<&HostConfig>, fresh: bool) -> Decision {
    match saved {
        Some(s)
            if (fresh || s.ifindex != now.ifindex)
                && now.addresses.is_empty()
                && !s.addresses.is_empty() =>
        {
            Decision::Restore(s.clone())
        }
        Some(s) if s == now => Decision::Keep,
        _ => Decision::Save(now.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ifindex: u32, addrs: &[&str], hops: &[&str]) -> HostConfig {
        HostConfig {
            ifindex,
            addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            next_hops: hops.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn restores_only_onto_an_empty_device_new_to_the_agent() {
        let saved = cfg(5, &["198.18.0.11/24", "2001:db8::11/64"], &["198.18.0.1"]);
        // vswitchd restarted: an empty device, first look since then
        // (the kernel may well give it the same ifindex).
        let empty = cfg(5, &[], &[]);
        assert_eq!(
            decide(&empty, Some(&saved), true),
            Decision::Restore(saved.clone())
        );
        // Recreated under the agent's eyes: another ifindex.
        let other_index = cfg(9, &[], &[]);
        assert_eq!(
            decide(&other_index, Some(&saved), false),
            Decision::Restore(saved.clone())
        );
        // Same device, emptied while the agent watched: the new truth,
        // and once saved so, never restored.
        assert_eq!(
            decide(&empty, Some(&saved), false),
            Decision::Save(empty.clone())
        );
        assert_eq!(decide(&empty, Some(&empty), true), Decision::Keep);
        let removed = cfg(5, &["2001:db8::11/64"], &["198.18.0.1"]);
        assert_eq!(
            decide(&removed, Some(&saved), true),
            Decision::Save(removed.clone())
        );
        // Unchanged: nothing to write.
        assert_eq!(decide(&saved, Some(&saved), true), Decision::Keep);
        // Nothing saved yet.
        assert_eq!(decide(&empty, None, true), Decision::Save(empty.clone()));
        // A device someone configured already is left alone.
        let configured = cfg(9, &["198.18.0.99/24"], &[]);
        assert_eq!(
            decide(&configured, Some(&saved), true),
            Decision::Save(configured.clone())
        );
    }

    #[test]
    fn saved_configuration_round_trips_through_external_ids() {
        let c = cfg(
            5,
            &["198.18.0.11/24", "2001:db8::11/64"],
            &["198.18.0.1", "2001:db8::1"],
        );
        let ids: std::collections::BTreeMap<String, String> = to_ids(&c).into_iter().collect();
        assert_eq!(from_ids(&ids), Some(c));
        let empty = cfg(3, &[], &[]);
        let ids: std::collections::BTreeMap<String, String> = to_ids(&empty).into_iter().collect();
        assert_eq!(from_ids(&ids), Some(empty));
        assert_eq!(from_ids(&Default::default()), None);
    }
}
