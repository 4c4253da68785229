//! The annotation parsers shared by the controller and the node agent
//! (`switchyard_api::annotations`): the pod network (`PodNetwork::parse`),
//! the node's subnets (`NodeSubnets::parse`), the user's requested
//! addresses (`parse_requested_ips`); and what is derived from a parsed
//! annotation (gateway and management addresses of a subnet, the MAC of an
//! address).
//!
//! Input: the annotation's text. Checked: no panic; what parses writes
//! back to text that parses to the same value; memory stays within a fixed
//! multiple of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_api::annotations::{parse_requested_ips, NodeSubnets, PodNetwork};
use switchyard_api::{addressing, mac};
use switchyard_fuzz::bounded;

fn subnet_addresses(net: ipnet::IpNet) {
    let _ = (
        addressing::gateway(net),
        addressing::management(net),
        addressing::gateway_net(net),
        addressing::management_net(net),
    );
    let _ = mac::from_ip(net.addr());
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    bounded("annotations", data, 128, 128 << 10, |_| {
        if let Ok(net) = PodNetwork::parse(text) {
            assert_eq!(PodNetwork::parse(&net.to_json()).expect("round trip"), net);
            net.ips.iter().copied().for_each(subnet_addresses);
        }
        if let Ok(subnets) = NodeSubnets::parse(text) {
            assert_eq!(
                NodeSubnets::parse(&subnets.to_json()).expect("round trip"),
                subnets
            );
            subnets.0.iter().copied().for_each(subnet_addresses);
        }
        if let Ok(ips) = parse_requested_ips(text) {
            let joined: Vec<String> = ips.iter().map(ToString::to_string).collect();
            assert_eq!(
                parse_requested_ips(&joined.join(",")).expect("round trip"),
                ips
            );
            ips.iter().copied().for_each(|ip| drop(mac::from_ip(ip)));
        }
    });
});
