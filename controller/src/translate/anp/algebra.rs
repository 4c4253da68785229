//! The set algebra that compiles `Pass` without negation: a rule part as
//! a cube (subject pods × peer addresses × L4 ports), and a cube minus the
//! cubes of the `Pass` rules above it as disjoint cubes, each of which a
//! positive OVN match can say.
//!
//! Why cubes: an ANP rule matches a packet when its destination pod
//! (ingress; the source pod for egress) is in the subject, the other end's
//! address is among the peers, and its L4 destination is among the ports.
//! That is a product of three sets, and `A ∖ B` of two products is at most
//! three disjoint products: `(Aₛ∖Bₛ)×Aₚ×Aₗ`, `(Aₛ∩Bₛ)×(Aₚ∖Bₚ)×Aₗ`,
//! `(Aₛ∩Bₛ)×(Aₚ∩Bₚ)×(Aₗ∖Bₗ)`. Every set here is finite and exact: pods
//! by name, addresses and ports as ranges of integers, so each piece is a
//! port group, an address set of CIDRs and a list of port ranges.
//!
//! Pure functions; `tests` proves them against a brute-force model.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Integers as disjoint, sorted, non-adjacent inclusive ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ranges(Vec<(u128, u128)>);

impl Ranges {
    /// `a..=b` (empty when `b < a`).
    pub fn span(a: u128, b: u128) -> Ranges {
        Ranges::from_spans([(a, b)])
    }

    /// The union of `spans` (those with end below start are empty).
    pub fn from_spans(spans: impl IntoIterator<Item = (u128, u128)>) -> Ranges {
        let mut v: Vec<(u128, u128)> = spans.into_iter().filter(|(a, b)| a <= b).collect();
        v.sort_unstable();
        let mut out: Vec<(u128, u128)> = Vec::with_capacity(v.len());
        for (a, b) in v {
            match out.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        Ranges(out)
    }

    pub fn spans(&self) -> &[(u128, u128)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, x: u128) -> bool {
        let i = self.0.partition_point(|(_, b)| *b < x);
        self.0.get(i).is_some_and(|(a, _)| *a <= x)
    }

    pub fn union(&self, o: &Ranges) -> Ranges {
        Ranges::from_spans(self.0.iter().chain(&o.0).copied())
    }

    pub fn and(&self, o: &Ranges) -> Ranges {
        let (mut i, mut j, mut out) = (0, 0, Vec::new());
        while let (Some(&(a, b)), Some(&(c, d))) = (self.0.get(i), o.0.get(j)) {
            let (lo, hi) = (a.max(c), b.min(d));
            if lo <= hi {
                out.push((lo, hi));
            }
            if b < d {
                i += 1;
            } else {
                j += 1;
            }
        }
        Ranges(out)
    }

    pub fn minus(&self, o: &Ranges) -> Ranges {
        let mut out = Vec::new();
        let mut j = 0;
        for &(a, b) in &self.0 {
            while o.0.get(j).is_some_and(|(_, d)| *d < a) {
                j += 1;
            }
            let (mut cur, mut covered) = (a, false);
            for &(c, d) in &o.0[j..] {
                if c > b {
                    break;
                }
                if c > cur {
                    out.push((cur, c - 1));
                }
                if d >= b {
                    covered = true;
                    break;
                }
                // d < b, so no overflow.
                cur = d + 1;
            }
            if !covered {
                out.push((cur, b));
            }
        }
        Ranges(out)
    }
}

/// Addresses of both families, each as [`Ranges`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpSet {
    pub v4: Ranges,
    pub v6: Ranges,
}

fn net_span(n: &IpNet) -> (bool, u128, u128) {
    match n {
        IpNet::V4(n) => (
            false,
            u128::from(u32::from(n.network())),
            u128::from(u32::from(n.broadcast())),
        ),
        IpNet::V6(n) => (true, u128::from(n.network()), u128::from(n.broadcast())),
    }
}

impl IpSet {
    /// The union of `nets`.
    pub fn from_nets(nets: impl IntoIterator<Item = IpNet>) -> IpSet {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for n in nets {
            let (six, a, b) = net_span(&n);
            if six {
                v6.push((a, b));
            } else {
                v4.push((a, b));
            }
        }
        IpSet {
            v4: Ranges::from_spans(v4),
            v6: Ranges::from_spans(v6),
        }
    }

    pub fn from_addrs(addrs: impl IntoIterator<Item = IpAddr>) -> IpSet {
        IpSet::from_nets(addrs.into_iter().map(IpNet::from))
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.v4.contains(u128::from(u32::from(a))),
            IpAddr::V6(a) => self.v6.contains(u128::from(a)),
        }
    }

    pub fn and(&self, o: &IpSet) -> IpSet {
        IpSet {
            v4: self.v4.and(&o.v4),
            v6: self.v6.and(&o.v6),
        }
    }

    pub fn minus(&self, o: &IpSet) -> IpSet {
        IpSet {
            v4: self.v4.minus(&o.v4),
            v6: self.v6.minus(&o.v6),
        }
    }

    /// The fewest CIDRs that cover exactly the addresses of one family.
    pub fn cidrs(&self, v6: bool) -> Vec<IpNet> {
        let (r, bits) = if v6 { (&self.v6, 128) } else { (&self.v4, 32) };
        let mut out = Vec::new();
        for &(a, b) in r.spans() {
            for (start, len) in prefixes(a, b, bits) {
                let net = if v6 {
                    IpNet::new(IpAddr::V6(Ipv6Addr::from(start)), len)
                } else {
                    // `start` is below 2^32: it came from an IPv4 address.
                    IpNet::new(IpAddr::V4(Ipv4Addr::from(start as u32)), len)
                };
                out.extend(net.ok());
            }
        }
        out
    }
}

/// `a..=b` as aligned blocks: (start, prefix length) in a `bits`-bit space.
pub fn prefixes(a: u128, b: u128, bits: u8) -> Vec<(u128, u8)> {
    // The last address of the block of 2^k at `a`.
    let last = |a: u128, k: u32| {
        if k >= 128 {
            u128::MAX
        } else {
            a + ((1u128 << k) - 1)
        }
    };
    let mut out = Vec::new();
    let mut a = a;
    loop {
        // The largest aligned block at `a` that ends at or before `b`.
        let mut k = a.trailing_zeros().min(u32::from(bits));
        while k > 0 && last(a, k) > b {
            k -= 1;
        }
        out.push((a, bits - k as u8));
        let end = last(a, k);
        if end >= b {
            return out;
        }
        a = end + 1;
    }
}

/// The L4 space as one line of integers: TCP, UDP and SCTP destination
/// ports `0..=65535` each, then one point for every other IP protocol
/// (ICMP and the rest, which no port clause names).
pub const PROTOCOLS: [&str; 3] = ["tcp", "udp", "sctp"];
/// IP protocol numbers of [`PROTOCOLS`].
pub const PROTOCOL_NUMBERS: [u8; 3] = [6, 17, 132];
/// The point of "any other protocol".
pub const OTHER: u128 = 3 << 16;

/// Every packet: all ports of all protocols, and the others.
pub fn l4_any() -> Ranges {
    Ranges::span(0, OTHER)
}

/// Ports `a..=b` of [`PROTOCOLS`]`[proto]`.
pub fn l4_ports(proto: usize, a: u16, b: u16) -> Ranges {
    let base = (proto as u128) << 16;
    Ranges::span(base + u128::from(a), base + u128::from(b))
}

/// A rule part: subject pods (by port name) × peer addresses × L4.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cube {
    pub subject: BTreeSet<String>,
    pub peer: IpSet,
    pub l4: Ranges,
}

impl Cube {
    pub fn is_empty(&self) -> bool {
        self.subject.is_empty() || self.peer.is_empty() || self.l4.is_empty()
    }

    /// Whether a packet from/to pod `pod`, peer `ip`, at L4 point `l4` is
    /// in the cube.
    pub fn contains(&self, pod: &str, ip: IpAddr, l4: u128) -> bool {
        self.subject.contains(pod) && self.peer.contains(ip) && self.l4.contains(l4)
    }

    /// `self ∖ p` as at most three disjoint non-empty cubes; `self`
    /// itself, unchanged, when they do not meet.
    pub fn minus(&self, p: &Cube) -> Vec<Cube> {
        let s: BTreeSet<String> = self.subject.intersection(&p.subject).cloned().collect();
        if s.is_empty() {
            return vec![self.clone()];
        }
        let peer = self.peer.and(&p.peer);
        if peer.is_empty() {
            return vec![self.clone()];
        }
        let l4 = self.l4.and(&p.l4);
        if l4.is_empty() {
            return vec![self.clone()];
        }
        let mut out = Vec::new();
        let rest: BTreeSet<String> = self.subject.difference(&p.subject).cloned().collect();
        let parts = [
            Cube {
                subject: rest,
                peer: self.peer.clone(),
                l4: self.l4.clone(),
            },
            Cube {
                subject: s.clone(),
                peer: self.peer.minus(&p.peer),
                l4: self.l4.clone(),
            },
            Cube {
                subject: s,
                peer,
                l4: self.l4.minus(&p.l4),
            },
        ];
        out.extend(parts.into_iter().filter(|c| !c.is_empty()));
        out
    }
}

/// `cube` minus every cube of `passes`, as disjoint cubes; `Err` with the
/// count reached once more than `cap` pieces would be needed.
pub fn exclude<'c>(
    cube: &Cube,
    passes: impl IntoIterator<Item = &'c Cube>,
    cap: usize,
) -> Result<Vec<Cube>, usize> {
    if cube.is_empty() {
        return Ok(Vec::new());
    }
    let mut terms = vec![cube.clone()];
    for p in passes {
        let next: Vec<Cube> = terms.iter().flat_map(|t| t.minus(p)).collect();
        if next.len() > cap {
            return Err(next.len());
        }
        terms = next;
        if terms.is_empty() {
            break;
        }
    }
    Ok(terms)
}
