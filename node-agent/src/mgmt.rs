//! The management port: how the node's host reaches every pod.
//!
//! An OVS internal port `sy-mgmt0` on `br-int`, bound (iface-id) to the
//! node's management logical switch port `mgmt-<node>`, carrying the second
//! host address of each node subnet and a route to the cluster CIDRs via
//! the first (the node switch's router port). With the userspace datapath
//! the internal port is a tap device in the namespace where ovs-vswitchd
//! runs, so the daemon must run there too.

use std::net::IpAddr;

use ipnet::IpNet;
use switchyard_api::addressing;

/// The management interface's addressing, derived from the node subnets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MgmtPlan {
    /// Management addresses with the subnet's prefix (second host address).
    pub addresses: Vec<IpNet>,
    /// Per address, the gateway (first host address).
    pub gateways: Vec<IpAddr>,
    pub mac: String,
    /// (destination, gateway) routes for the cluster CIDRs.
    pub routes: Vec<(IpNet, IpAddr)>,
}

/// Gateway and management addresses by [`addressing`]'s rule, MAC derived from the
/// first management address; cluster CIDRs routed via the gateway of their
/// family. `None` without usable subnets.
pub fn plan(subnets: &[IpNet], cluster_cidrs: &[IpNet]) -> Option<MgmtPlan> {
    let mut addresses = Vec::new();
    let mut gateways = Vec::new();
    for s in subnets {
        if addresses
            .iter()
            .any(|a: &IpNet| a.addr().is_ipv4() == s.addr().is_ipv4())
        {
            continue;
        }
        let (Some(gw), Some(addr)) = (addressing::gateway(*s), addressing::management_net(*s))
        else {
            continue;
        };
        addresses.push(addr);
        gateways.push(gw);
    }
    let first = addresses.first()?;
    let mac = switchyard_api::mac::from_ip(first.addr());
    let routes = cluster_cidrs
        .iter()
        .filter_map(|c| {
            gateways
                .iter()
                .find(|g| g.is_ipv4() == c.addr().is_ipv4())
                .map(|g| (*c, *g))
        })
        .collect();
    Some(MgmtPlan {
        addresses,
        gateways,
        mac,
        routes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_addresses_and_routes() {
        let p = plan(
            &[
                "10.244.1.0/24".parse().unwrap(),
                "fd00:1::/64".parse().unwrap(),
            ],
            &[
                "10.244.0.0/16".parse().unwrap(),
                "10.96.0.0/12".parse().unwrap(),
            ],
        )
        .unwrap();
        assert_eq!(p.addresses[0], "10.244.1.2/24".parse::<IpNet>().unwrap());
        assert_eq!(p.gateways[0], "10.244.1.1".parse::<IpAddr>().unwrap());
        assert_eq!(p.addresses[1], "fd00:1::2/64".parse::<IpNet>().unwrap());
        assert_eq!(p.mac, "0a:58:0a:f4:01:02");
        assert_eq!(p.routes.len(), 2);
        assert!(p.routes.iter().all(|(_, g)| g.is_ipv4()));
        assert!(plan(&[], &[]).is_none());
        assert!(plan(&["10.0.0.1/32".parse().unwrap()], &[]).is_none());
    }
}
