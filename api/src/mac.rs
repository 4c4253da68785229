//! MAC addresses derived from IP addresses.
//!
//! Deriving the MAC from the pod's address means the controller needs no
//! MAC allocator and a restarted controller computes the same MAC again. The
//! `0a:58` prefix is locally administered and unicast.

use std::net::IpAddr;

/// The MAC for an interface whose first address is `ip`: `0a:58` followed by
/// the last four bytes of the address (all of an IPv4 address).
pub fn from_ip(ip: IpAddr) -> String {
    let tail: [u8; 4] = match ip {
        IpAddr::V4(v4) => v4.octets(),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            [o[12], o[13], o[14], o[15]]
        }
    };
    format!(
        "0a:58:{:02x}:{:02x}:{:02x}:{:02x}",
        tail[0], tail[1], tail[2], tail[3]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_from_ipv4_and_ipv6() {
        assert_eq!(from_ip("10.244.1.5".parse().unwrap()), "0a:58:0a:f4:01:05");
        assert_eq!(
            from_ip("fd00:10:244:1::a:5".parse().unwrap()),
            "0a:58:00:0a:00:05"
        );
    }
}
