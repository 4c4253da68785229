//! Address management: node subnets carved from the cluster CIDRs, and pod
//! addresses carved from a node's subnet, per IP family.
//!
//! Both allocators are bitmaps with a next-fit cursor: O(1) memory per
//! address, allocation that skips a released address until the range wraps
//! (so an address freed by a deleted pod is not handed straight to the next
//! one while stale state may still mention it), and `reserve` so a restarted
//! controller rebuilds exactly what was handed out before giving out anything
//! new.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Why an address or subnet could not be had.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("no free node subnet left in {cidr}")]
    SubnetsExhausted { cidr: IpNet },
    #[error("subnet {subnet} is already assigned to {owner}")]
    SubnetTaken { subnet: IpNet, owner: String },
    #[error("no free address left in {subnet}")]
    AddressesExhausted { subnet: IpNet },
    #[error("address {ip} is already assigned to {owner}")]
    AddressTaken { ip: IpAddr, owner: String },
    #[error("address {ip} is reserved in {subnet} (network, gateway, management or broadcast)")]
    AddressReserved { ip: IpAddr, subnet: IpNet },
    #[error("address {ip} is outside {what}")]
    Outside { ip: IpAddr, what: String },
    #[error("no cluster CIDR for the family of {0}")]
    NoFamily(IpNet),
}

impl IpamError {
    /// Exhaustion and conflicts clear when other owners go away; an address
    /// outside the subnet or reserved never becomes valid.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            IpamError::SubnetsExhausted { .. }
                | IpamError::SubnetTaken { .. }
                | IpamError::AddressesExhausted { .. }
                | IpamError::AddressTaken { .. }
        )
    }
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(v4: bool, n: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

/// The `n`th address of `subnet`.
pub fn nth(subnet: IpNet, n: u128) -> IpAddr {
    let base = to_u128(subnet.network());
    from_u128(subnet.addr().is_ipv4(), base + n)
}

/// A fixed-size bitmap with a next-fit cursor.
#[derive(Clone, Debug)]
struct Bitmap {
    words: Vec<u64>,
    len: u64,
    used: u64,
    cursor: u64,
}

impl Bitmap {
    fn new(len: u64) -> Self {
        Bitmap {
            words: vec![0; len.div_ceil(64) as usize],
            len,
            used: 0,
            cursor: 0,
        }
    }
    fn set(&mut self, i: u64) -> bool {
        let w = &mut self.words[(i / 64) as usize];
        let bit = 1 << (i % 64);
        let was = *w & bit != 0;
        *w |= bit;
        if !was {
            self.used += 1;
        }
        !was
    }
    fn clear(&mut self, i: u64) -> bool {
        let w = &mut self.words[(i / 64) as usize];
        let bit = 1 << (i % 64);
        let was = *w & bit != 0;
        *w &= !bit;
        if was {
            self.used -= 1;
        }
        was
    }
    /// The first clear bit in `from..to`.
    fn find_free(&self, from: u64, to: u64) -> Option<u64> {
        let mut i = from;
        while i < to {
            let wi = (i / 64) as usize;
            let free = !self.words[wi] & (u64::MAX << (i % 64));
            if free != 0 {
                let found = wi as u64 * 64 + free.trailing_zeros() as u64;
                return (found < to).then_some(found);
            }
            i = (wi as u64 + 1) * 64;
        }
        None
    }

    /// The first clear bit at or after the cursor, wrapping once; marks it.
    fn take_next(&mut self) -> Option<u64> {
        if self.used >= self.len {
            return None;
        }
        let i = self
            .find_free(self.cursor, self.len)
            .or_else(|| self.find_free(0, self.cursor))?;
        self.set(i);
        self.cursor = (i + 1) % self.len;
        Some(i)
    }
}

/// Node subnets of one family: `cidr` cut into `/node_prefix` slices.
#[derive(Clone, Debug)]
pub struct SubnetAllocator {
    cidr: IpNet,
    node_prefix: u8,
    map: Bitmap,
    owners: HashMap<u64, String>,
}

/// At most this many node subnets are tracked per family (an IPv6 /48 cut
/// into /64s would be 65,536; more nodes than this is not a real cluster).
const MAX_SUBNETS: u64 = 1 << 20;
/// At most this many addresses are handed out per node subnet (an IPv6 /64
/// is used from its start; a node never runs this many pods).
const MAX_ADDRESSES: u64 = 1 << 16;

impl SubnetAllocator {
    pub fn new(cidr: IpNet, node_prefix: u8) -> Self {
        let bits = (node_prefix - cidr.prefix_len()) as u32;
        let count = if bits >= 20 {
            MAX_SUBNETS
        } else {
            1u64 << bits
        };
        SubnetAllocator {
            cidr,
            node_prefix,
            map: Bitmap::new(count),
            owners: HashMap::new(),
        }
    }

    pub fn cidr(&self) -> IpNet {
        self.cidr
    }

    fn shift(&self) -> u32 {
        (self.cidr.max_prefix_len() - self.node_prefix) as u32
    }

    fn subnet(&self, idx: u64) -> IpNet {
        let base = to_u128(self.cidr.network()) + ((idx as u128) << self.shift());
        IpNet::new(
            from_u128(self.cidr.addr().is_ipv4(), base),
            self.node_prefix,
        )
        .expect("prefix length from a valid CIDR")
    }

    /// The slice indices `subnet` covers, or None if it lies outside.
    fn indices(&self, subnet: IpNet) -> Option<std::ops::Range<u64>> {
        if !self.cidr.contains(&subnet) {
            return None;
        }
        let off = to_u128(subnet.network()) - to_u128(self.cidr.network());
        let first = (off >> self.shift()) as u64;
        let count = if subnet.prefix_len() >= self.node_prefix {
            1
        } else {
            1u64 << (self.node_prefix - subnet.prefix_len())
        };
        let end = (first + count).min(self.map.len);
        (first < self.map.len).then_some(first..end)
    }

    /// Hands out a free slice to `owner`.
    pub fn allocate(&mut self, owner: &str) -> Result<IpNet, IpamError> {
        let idx = self
            .map
            .take_next()
            .ok_or(IpamError::SubnetsExhausted { cidr: self.cidr })?;
        self.owners.insert(idx, owner.to_string());
        Ok(self.subnet(idx))
    }

    /// Records that `subnet` belongs to `owner` (Kubernetes set it, or a
    /// previous run did). A subnet outside the CIDR cannot collide with
    /// anything handed out here, so it is accepted without a record.
    pub fn reserve(&mut self, subnet: IpNet, owner: &str) -> Result<(), IpamError> {
        let Some(range) = self.indices(subnet) else {
            return Ok(());
        };
        for i in range.clone() {
            if let Some(o) = self.owners.get(&i).filter(|o| *o != owner) {
                return Err(IpamError::SubnetTaken {
                    subnet: self.subnet(i),
                    owner: o.clone(),
                });
            }
        }
        for i in range {
            self.map.set(i);
            self.owners.insert(i, owner.to_string());
        }
        Ok(())
    }

    /// Frees `subnet` if `owner` holds it.
    pub fn release(&mut self, subnet: IpNet, owner: &str) {
        if let Some(range) = self.indices(subnet) {
            for i in range {
                if self.owners.get(&i).is_some_and(|o| o == owner) {
                    self.owners.remove(&i);
                    self.map.clear(i);
                }
            }
        }
    }

    /// (slices in use, slices available).
    pub fn usage(&self) -> (u64, u64) {
        (self.map.used, self.map.len)
    }
}

/// The node subnet allocators, one per configured family.
#[derive(Clone, Debug, Default)]
pub struct NodeSubnets {
    families: Vec<SubnetAllocator>,
}

impl NodeSubnets {
    pub fn new(cidrs: &[crate::config::ClusterCidr]) -> Self {
        NodeSubnets {
            families: cidrs
                .iter()
                .map(|c| SubnetAllocator::new(c.cidr, c.node_prefix))
                .collect(),
        }
    }

    /// One subnet per family for `node`, all or nothing.
    pub fn allocate(&mut self, node: &str) -> Result<Vec<IpNet>, IpamError> {
        let mut out = Vec::new();
        for i in 0..self.families.len() {
            match self.families[i].allocate(node) {
                Ok(s) => out.push(s),
                Err(e) => {
                    for (s, fam) in out.iter().zip(&mut self.families) {
                        fam.release(*s, node);
                    }
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Reserves every subnet in `subnets` for `node`, all or nothing.
    pub fn reserve(&mut self, node: &str, subnets: &[IpNet]) -> Result<(), IpamError> {
        for (n, s) in subnets.iter().enumerate() {
            let fam = self
                .families
                .iter_mut()
                .find(|f| f.cidr.addr().is_ipv4() == s.addr().is_ipv4());
            let res = match fam {
                Some(f) => f.reserve(*s, node),
                None => Ok(()),
            };
            if let Err(e) = res {
                self.release(node, &subnets[..n]);
                return Err(e);
            }
        }
        Ok(())
    }

    pub fn release(&mut self, node: &str, subnets: &[IpNet]) {
        for s in subnets {
            for f in &mut self.families {
                f.release(*s, node);
            }
        }
    }

    /// Per family: (cidr, used, capacity).
    pub fn usage(&self) -> Vec<(IpNet, u64, u64)> {
        self.families
            .iter()
            .map(|f| {
                let (u, c) = f.usage();
                (f.cidr, u, c)
            })
            .collect()
    }
}

/// Addresses of one node subnet.
#[derive(Clone, Debug)]
pub struct AddressAllocator {
    subnet: IpNet,
    map: Bitmap,
    owners: HashMap<u64, String>,
}

impl AddressAllocator {
    /// Marks network, gateway, management (and the IPv4 broadcast) as taken
    /// so they are never handed to a pod.
    pub fn new(subnet: IpNet) -> Self {
        let host_bits = (subnet.max_prefix_len() - subnet.prefix_len()) as u32;
        let size = if host_bits >= 16 {
            MAX_ADDRESSES
        } else {
            1u64 << host_bits
        };
        let mut map = Bitmap::new(size);
        // Network, then the router and management addresses of the contract.
        let reserved = (switchyard_api::addressing::MANAGEMENT_OFFSET + 1) as u64;
        for i in 0..reserved.min(size) {
            map.set(i);
        }
        if subnet.addr().is_ipv4() && host_bits < 16 {
            map.set(size - 1);
        }
        map.cursor = reserved % size;
        AddressAllocator {
            subnet,
            map,
            owners: HashMap::new(),
        }
    }

    pub fn subnet(&self) -> IpNet {
        self.subnet
    }

    fn offset(&self, ip: IpAddr) -> Result<u64, IpamError> {
        if !self.subnet.contains(&ip) {
            return Err(IpamError::Outside {
                ip,
                what: self.subnet.to_string(),
            });
        }
        let off = to_u128(ip) - to_u128(self.subnet.network());
        if off >= self.map.len as u128 {
            return Err(IpamError::Outside {
                ip,
                what: format!("the first {} addresses of {}", self.map.len, self.subnet),
            });
        }
        Ok(off as u64)
    }

    fn is_reserved(&self, off: u64) -> bool {
        off < 3
            || (self.subnet.addr().is_ipv4()
                && off == self.map.len - 1
                && self.map.len < MAX_ADDRESSES)
    }

    pub fn allocate(&mut self, owner: &str) -> Result<IpAddr, IpamError> {
        let off = self.map.take_next().ok_or(IpamError::AddressesExhausted {
            subnet: self.subnet,
        })?;
        self.owners.insert(off, owner.to_string());
        Ok(nth(self.subnet, off as u128))
    }

    /// Claims `ip` for `owner`; idempotent for the same owner.
    pub fn reserve(&mut self, ip: IpAddr, owner: &str) -> Result<(), IpamError> {
        let off = self.offset(ip)?;
        if self.is_reserved(off) {
            return Err(IpamError::AddressReserved {
                ip,
                subnet: self.subnet,
            });
        }
        if let Some(o) = self.owners.get(&off) {
            if o != owner {
                return Err(IpamError::AddressTaken {
                    ip,
                    owner: o.clone(),
                });
            }
            return Ok(());
        }
        self.map.set(off);
        self.owners.insert(off, owner.to_string());
        Ok(())
    }

    /// Frees `ip` if `owner` holds it.
    pub fn release(&mut self, ip: IpAddr, owner: &str) {
        if let Ok(off) = self.offset(ip) {
            if self.owners.get(&off).is_some_and(|o| o == owner) {
                self.owners.remove(&off);
                self.map.clear(off);
            }
        }
    }

    /// Who holds `ip`, if anyone.
    pub fn owner(&self, ip: IpAddr) -> Option<&str> {
        self.offset(ip)
            .ok()
            .and_then(|o| self.owners.get(&o))
            .map(String::as_str)
    }

    /// (pod addresses in use, addresses a pod could get).
    pub fn usage(&self) -> (u64, u64) {
        let reserved = if self.subnet.addr().is_ipv4() && self.map.len < MAX_ADDRESSES {
            4
        } else {
            3
        };
        (self.map.used - reserved, self.map.len - reserved)
    }
}

/// A node's pod addresses: one allocator per family of its subnets.
#[derive(Clone, Debug)]
pub struct NodeAddresses {
    families: Vec<AddressAllocator>,
}

impl NodeAddresses {
    pub fn new(subnets: &[IpNet]) -> Self {
        NodeAddresses {
            families: subnets.iter().map(|s| AddressAllocator::new(*s)).collect(),
        }
    }

    pub fn subnets(&self) -> Vec<IpNet> {
        self.families.iter().map(|f| f.subnet).collect()
    }

    /// One address per family for `owner`: the requested one where given
    /// (it must lie in the node's subnet of that family), the next free one
    /// elsewhere. All or nothing. Results carry the subnet's prefix length.
    pub fn allocate(&mut self, owner: &str, requested: &[IpAddr]) -> Result<Vec<IpNet>, IpamError> {
        for ip in requested {
            if !self
                .families
                .iter()
                .any(|f| f.subnet.addr().is_ipv4() == ip.is_ipv4())
            {
                return Err(IpamError::Outside {
                    ip: *ip,
                    what: format!("the node's subnets {:?}", self.subnets()),
                });
            }
        }
        let mut out: Vec<IpNet> = Vec::new();
        for i in 0..self.families.len() {
            let fam = &mut self.families[i];
            let want = requested
                .iter()
                .find(|ip| ip.is_ipv4() == fam.subnet.addr().is_ipv4());
            let res = match want {
                Some(ip) => fam.reserve(*ip, owner).map(|_| *ip),
                None => fam.allocate(owner),
            };
            match res {
                Ok(ip) => out.push(IpNet::new(ip, fam.subnet.prefix_len()).expect("valid prefix")),
                Err(e) => {
                    self.release(owner, &out);
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Claims exactly `ips` (from an existing annotation or port), all or
    /// nothing.
    pub fn reserve(&mut self, owner: &str, ips: &[IpAddr]) -> Result<(), IpamError> {
        for (n, ip) in ips.iter().enumerate() {
            let res = match self
                .families
                .iter_mut()
                .find(|f| f.subnet.addr().is_ipv4() == ip.is_ipv4())
            {
                Some(f) => f.reserve(*ip, owner),
                None => Err(IpamError::Outside {
                    ip: *ip,
                    what: "the node's subnets".into(),
                }),
            };
            if let Err(e) = res {
                for done in &ips[..n] {
                    self.release_ip(owner, *done);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn release_ip(&mut self, owner: &str, ip: IpAddr) {
        for f in &mut self.families {
            f.release(ip, owner);
        }
    }

    pub fn release(&mut self, owner: &str, ips: &[IpNet]) {
        for ip in ips {
            self.release_ip(owner, ip.addr());
        }
    }

    pub fn owner(&self, ip: IpAddr) -> Option<&str> {
        self.families.iter().find_map(|f| f.owner(ip))
    }

    /// Summed over families: (used, capacity).
    pub fn usage(&self) -> (u64, u64) {
        self.families.iter().fold((0, 0), |(u, c), f| {
            let (fu, fc) = f.usage();
            (u + fu, c + fc)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClusterCidr;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn node_subnets_ipv4_until_exhausted() {
        let mut a = SubnetAllocator::new(net("10.244.0.0/22"), 24);
        let got: Vec<_> = (0..4)
            .map(|i| a.allocate(&format!("n{i}")).unwrap())
            .collect();
        assert_eq!(got[0], net("10.244.0.0/24"));
        assert_eq!(got[3], net("10.244.3.0/24"));
        assert!(matches!(
            a.allocate("n5"),
            Err(IpamError::SubnetsExhausted { .. })
        ));
        a.release(got[1], "n1");
        assert_eq!(a.allocate("n6").unwrap(), net("10.244.1.0/24"));
        assert_eq!(a.usage(), (4, 4));
    }

    #[test]
    fn node_subnets_reserve_and_conflict() {
        let mut a = SubnetAllocator::new(net("10.244.0.0/16"), 24);
        a.reserve(net("10.244.0.0/24"), "a").unwrap();
        a.reserve(net("10.244.0.0/24"), "a").unwrap();
        let err = a.reserve(net("10.244.0.0/24"), "b").unwrap_err();
        assert!(
            matches!(err, IpamError::SubnetTaken { ref owner, .. } if owner == "a"),
            "{err}"
        );
        assert!(err.is_transient());
        // A wider podCIDR from Kubernetes covers several slices.
        a.reserve(net("10.244.2.0/23"), "c").unwrap();
        assert_eq!(a.allocate("d").unwrap(), net("10.244.1.0/24"));
        assert_eq!(a.allocate("e").unwrap(), net("10.244.4.0/24"));
        // Outside the cluster CIDR: accepted, nothing recorded.
        a.reserve(net("192.168.0.0/24"), "f").unwrap();
        assert_eq!(a.usage().0, 5);
    }

    #[test]
    fn node_subnets_dual_stack() {
        let mut s = NodeSubnets::new(&[
            "10.244.0.0/16/24".parse::<ClusterCidr>().unwrap(),
            "fd00:10:244::/48/64".parse::<ClusterCidr>().unwrap(),
        ]);
        let a = s.allocate("a").unwrap();
        assert_eq!(a, vec![net("10.244.0.0/24"), net("fd00:10:244::/64")]);
        s.reserve("b", &[net("10.244.1.0/24"), net("fd00:10:244:1::/64")])
            .unwrap();
        let c = s.allocate("c").unwrap();
        assert_eq!(c, vec![net("10.244.2.0/24"), net("fd00:10:244:2::/64")]);
        // All or nothing: the IPv6 conflict undoes the IPv4 reservation.
        assert!(s
            .reserve("d", &[net("10.244.9.0/24"), net("fd00:10:244::/64")])
            .is_err());
        assert_eq!(s.usage()[0].1, 3);
        s.release("a", &a);
        assert_eq!(s.usage()[0].1, 2);
        assert_eq!(s.usage()[1].1, 2);
    }

    #[test]
    fn exhausted_family_rolls_back_the_other() {
        let mut s = NodeSubnets::new(&[
            "10.244.0.0/24/24".parse::<ClusterCidr>().unwrap(),
            "fd00::/64/64".parse::<ClusterCidr>().unwrap(),
        ]);
        s.reserve("x", &[net("fd00::/64")]).unwrap();
        assert!(s.allocate("a").is_err());
        assert_eq!(s.usage()[0].1, 0);
    }

    #[test]
    fn pod_addresses_ipv4_skip_reserved_and_exhaust() {
        let mut a = AddressAllocator::new(net("10.244.1.0/29"));
        // .0 network, .1 gateway, .2 mgmt, .7 broadcast: four usable.
        let got: Vec<_> = (0..4)
            .map(|i| a.allocate(&format!("p{i}")).unwrap())
            .collect();
        assert_eq!(
            got,
            vec![
                ip("10.244.1.3"),
                ip("10.244.1.4"),
                ip("10.244.1.5"),
                ip("10.244.1.6")
            ]
        );
        let err = a.allocate("p5").unwrap_err();
        assert!(matches!(err, IpamError::AddressesExhausted { .. }));
        assert!(err.is_transient());
        assert_eq!(a.usage(), (4, 4));
        a.release(ip("10.244.1.4"), "someone-else");
        assert!(
            a.allocate("p6").is_err(),
            "release by a non-owner frees nothing"
        );
        a.release(ip("10.244.1.4"), "p1");
        assert_eq!(a.allocate("p7").unwrap(), ip("10.244.1.4"));
        for r in ["10.244.1.0", "10.244.1.1", "10.244.1.2", "10.244.1.7"] {
            let e = a.reserve(ip(r), "q").unwrap_err();
            assert!(matches!(e, IpamError::AddressReserved { .. }), "{r}: {e}");
            assert!(!e.is_transient());
        }
        assert!(matches!(
            a.reserve(ip("10.244.2.3"), "q"),
            Err(IpamError::Outside { .. })
        ));
    }

    #[test]
    fn next_fit_does_not_reuse_at_once() {
        let mut a = AddressAllocator::new(net("10.244.1.0/24"));
        let first = a.allocate("a").unwrap();
        a.release(first, "a");
        let second = a.allocate("b").unwrap();
        assert_ne!(first, second);
        assert_eq!(second, ip("10.244.1.4"));
    }

    #[test]
    fn pod_addresses_ipv6() {
        let mut a = AddressAllocator::new(net("fd00:10:244:1::/64"));
        assert_eq!(a.allocate("a").unwrap(), ip("fd00:10:244:1::3"));
        a.reserve(ip("fd00:10:244:1::4"), "b").unwrap();
        assert_eq!(a.allocate("c").unwrap(), ip("fd00:10:244:1::5"));
        assert_eq!(a.usage().1, (1 << 16) - 3);
        assert!(a.reserve(ip("fd00:10:244:1::1:0:0"), "d").is_err());
        assert_eq!(a.owner(ip("fd00:10:244:1::4")), Some("b"));
    }

    #[test]
    fn pod_addresses_dual_stack_with_request_and_rollback() {
        let mut n = NodeAddresses::new(&[net("10.244.1.0/24"), net("fd00:10:244:1::/64")]);
        let a = n.allocate("ns/a", &[]).unwrap();
        assert_eq!(a, vec![net("10.244.1.3/24"), net("fd00:10:244:1::3/64")]);
        let b = n.allocate("ns/b", &[ip("fd00:10:244:1::99")]).unwrap();
        assert_eq!(b, vec![net("10.244.1.4/24"), net("fd00:10:244:1::99/64")]);
        // Requested IPv6 is taken: the IPv4 address is not leaked.
        let err = n.allocate("ns/c", &[ip("fd00:10:244:1::99")]).unwrap_err();
        assert!(matches!(err, IpamError::AddressTaken { ref owner, .. } if owner == "ns/b"));
        assert_eq!(n.usage().0, 4);
        assert!(matches!(
            n.allocate("ns/d", &[ip("10.99.0.5")]),
            Err(IpamError::Outside { .. })
        ));
        n.release("ns/a", &a);
        assert_eq!(n.usage().0, 2);
    }

    #[test]
    fn rebuild_from_existing_state_never_hands_out_twice() {
        // A previous run gave out .3-.102; a new allocator learns them first.
        let mut n = NodeAddresses::new(&[net("10.244.1.0/24")]);
        for i in 3..103u8 {
            n.reserve(&format!("p{i}"), &[IpAddr::from([10, 244, 1, i])])
                .unwrap();
        }
        let mut seen = std::collections::HashSet::new();
        while let Ok(got) = n.allocate("new", &[]) {
            assert!(seen.insert(got[0].addr()));
            let last = got[0].addr();
            assert!(
                !(ip("10.244.1.3")..=ip("10.244.1.102")).contains(&last),
                "{last} given twice"
            );
        }
        assert_eq!(seen.len(), 252 - 100);
        // Reserving the same address for a second owner is a conflict.
        assert!(n.reserve("other", &[ip("10.244.1.50")]).is_err());
    }

    #[test]
    fn bitmap_wraps_and_fills() {
        let mut b = Bitmap::new(130);
        for i in 0..130 {
            assert_eq!(b.take_next(), Some(i));
        }
        assert_eq!(b.take_next(), None);
        b.clear(5);
        b.clear(129);
        assert_eq!(b.take_next(), Some(5));
        assert_eq!(b.take_next(), Some(129));
        assert_eq!(b.take_next(), None);
    }
}
