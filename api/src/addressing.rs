//! Which addresses of a node subnet are not for pods.
//!
//! The controller writes the node switch's router port and management port
//! with these addresses and the node agent configures its management
//! interface with them; if the two sides computed them separately, a change
//! on one side would silently break host-to-pod traffic. So the rule lives
//! here once: the first host address is the router (the pods' default
//! gateway), the second the management port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Host offset of the router port address in a node subnet.
pub const GATEWAY_OFFSET: u128 = 1;
/// Host offset of the management port address in a node subnet.
pub const MANAGEMENT_OFFSET: u128 = 2;

/// The `n`th address of `subnet` counted from its network address, or
/// `None` when the subnet is too small to hold it.
pub fn nth(subnet: IpNet, n: u128) -> Option<IpAddr> {
    match subnet {
        IpNet::V4(v4) => {
            let ip = u128::from(u32::from(v4.network())).checked_add(n)?;
            let ip = Ipv4Addr::from(u32::try_from(ip).ok()?);
            v4.contains(&ip).then_some(IpAddr::V4(ip))
        }
        IpNet::V6(v6) => {
            let ip = Ipv6Addr::from(u128::from(v6.network()).checked_add(n)?);
            v6.contains(&ip).then_some(IpAddr::V6(ip))
        }
    }
}

/// The router address of a node subnet: the pods' default gateway.
pub fn gateway(subnet: IpNet) -> Option<IpAddr> {
    nth(subnet, GATEWAY_OFFSET)
}

/// The node's management port address: how the host reaches its pods.
pub fn management(subnet: IpNet) -> Option<IpAddr> {
    nth(subnet, MANAGEMENT_OFFSET)
}

/// [`gateway`] with the subnet's prefix length, as a router port's
/// `networks` entry.
pub fn gateway_net(subnet: IpNet) -> Option<IpNet> {
    IpNet::new(gateway(subnet)?, subnet.prefix_len()).ok()
}

/// [`management`] with the subnet's prefix length, as the interface
/// address.
pub fn management_net(subnet: IpNet) -> Option<IpNet> {
    IpNet::new(management(subnet)?, subnet.prefix_len()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_second_host_addresses() {
        let v4: IpNet = "10.244.1.0/24".parse().unwrap();
        assert_eq!(gateway(v4), Some("10.244.1.1".parse().unwrap()));
        assert_eq!(management(v4), Some("10.244.1.2".parse().unwrap()));
        assert_eq!(gateway_net(v4), Some("10.244.1.1/24".parse().unwrap()));
        let v6: IpNet = "fd00:1::/64".parse().unwrap();
        assert_eq!(management_net(v6), Some("fd00:1::2/64".parse().unwrap()));
        // Not the host bits of whatever address the CIDR was written with.
        let odd: IpNet = "10.244.1.77/24".parse().unwrap();
        assert_eq!(gateway(odd), Some("10.244.1.1".parse().unwrap()));
    }

    #[test]
    fn too_small_subnets_have_none() {
        assert_eq!(management("10.0.0.1/32".parse().unwrap()), None);
        assert_eq!(management("10.0.0.0/31".parse().unwrap()), None);
        assert_eq!(nth("255.255.255.255/32".parse().unwrap(), 1), None);
        assert_eq!(nth("ffff::/128".parse().unwrap(), u128::MAX), None);
    }
}
