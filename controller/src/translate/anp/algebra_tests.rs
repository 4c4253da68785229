//! The set algebra against brute force: every operation, and the `Pass`
//! property itself, over small random sets, checked point by point.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use proptest::prelude::*;

use super::algebra::*;
use super::terms::l4_term;

/// Small spans in `0..64` (some adjacent, some overlapping).
fn spans() -> impl Strategy<Value = Vec<(u128, u128)>> {
    prop::collection::vec((0u128..64, 0u128..8), 0..5)
        .prop_map(|v| v.into_iter().map(|(a, l)| (a, a + l)).collect())
}

fn model(s: &[(u128, u128)]) -> BTreeSet<u128> {
    s.iter().flat_map(|(a, b)| *a..=*b).collect()
}

fn v4(n: u128) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n as u32))
}

fn v6(n: u128) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(0xfd00_u128 << 112 | n))
}

/// A cube over pods p0..p3, addresses 10.0.0.0..63 and fd00::0..63, and
/// L4 points near the edges of each protocol and "other".
fn cube() -> impl Strategy<Value = Cube> {
    let l4 = prop::collection::vec((0usize..4, 0u16..6, 0u16..3), 0..4);
    (
        prop::collection::btree_set(0u8..4, 0..4),
        spans(),
        spans(),
        l4,
        any::<bool>(),
    )
        .prop_map(|(s, a, b, l, every)| Cube {
            subject: s.into_iter().map(|p| format!("p{p}")).collect(),
            peer: IpSet {
                v4: Ranges::from_spans(a.iter().map(|(x, y)| (x + 0x0a00_0000, y + 0x0a00_0000))),
                v6: Ranges::from_spans(
                    b.iter()
                        .map(|(x, y)| (x | 0xfd00_u128 << 112, y | 0xfd00_u128 << 112)),
                ),
            },
            l4: if every {
                l4_any()
            } else {
                Ranges::from_spans(l.into_iter().map(|(p, a, n)| {
                    if p == 3 {
                        (OTHER, OTHER)
                    } else {
                        let base = (p as u128) << 16;
                        // Near 0 and near 65535: the domain's edges.
                        let a = if a >= 3 {
                            65535 - u128::from(a)
                        } else {
                            u128::from(a)
                        };
                        (base + a, base + (a + u128::from(n)).min(65535))
                    }
                }))
            },
        })
}

/// Every L4 point a packet can have in these cubes.
fn l4_points() -> Vec<u128> {
    let mut v = vec![OTHER];
    for p in 0..3u128 {
        for n in (0..10).chain(65525..65536) {
            v.push((p << 16) + n);
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn ranges_are_sets(a in spans(), b in spans()) {
        let (ra, rb) = (Ranges::from_spans(a.clone()), Ranges::from_spans(b.clone()));
        let (ma, mb) = (model(&a), model(&b));
        prop_assert_eq!(model(ra.spans()), ma.clone());
        prop_assert_eq!(model(ra.and(&rb).spans()), &ma & &mb);
        prop_assert_eq!(model(ra.minus(&rb).spans()), &ma - &mb);
        prop_assert_eq!(model(ra.union(&rb).spans()), &ma | &mb);
        // Canonical: sorted, disjoint, never adjacent.
        for w in ra.minus(&rb).spans().windows(2) {
            prop_assert!(w[0].1 + 1 < w[1].0);
        }
        for x in 0..80 {
            prop_assert_eq!(ra.contains(x), ma.contains(&x));
        }
    }

    #[test]
    fn cidrs_cover_exactly(a in spans(), shift in 0u32..24) {
        let base = 0x0a00_0000u128;
        let s = IpSet {
            v4: Ranges::from_spans(a.iter().map(|(x, y)| (base + (x << shift), base + (y << shift) + (1 << shift) - 1))),
            v6: Ranges::default(),
        };
        let back = IpSet::from_nets(s.cidrs(false));
        prop_assert_eq!(&back, &s);
    }

    /// The point of it all: a packet is in the pieces iff the rule matches
    /// it and no pass above does, and the pieces are disjoint.
    #[test]
    fn pieces_match_the_rule_minus_every_pass(r in cube(), passes in prop::collection::vec(cube(), 0..4)) {
        let Ok(pieces) = exclude(&r, &passes, 1000) else {
            return Err(TestCaseError::fail("cap"));
        };
        for t in &pieces {
            prop_assert!(!t.is_empty());
        }
        for pod in ["p0", "p1", "p2", "p3"] {
            for n in (0..72).step_by(3) {
                for ip in [v4(n), v6(n)] {
                    for l in l4_points() {
                        let want = r.contains(pod, ip, l) && !passes.iter().any(|p| p.contains(pod, ip, l));
                        let hits = pieces.iter().filter(|t| t.contains(pod, ip, l)).count();
                        prop_assert_eq!(hits, usize::from(want), "{} {} {}", pod, ip, l);
                    }
                }
            }
        }
    }

    /// The cap stops the work: an error, never a partial answer.
    #[test]
    fn the_cap_is_an_error(r in cube(), passes in prop::collection::vec(cube(), 0..4)) {
        let all = exclude(&r, &passes, 1000).map_err(|_| TestCaseError::fail("cap"))?;
        match exclude(&r, &passes, 2) {
            Ok(t) => prop_assert!(t.len() <= 2 && t == all),
            Err(n) => prop_assert!(n > 2),
        }
    }
}

#[test]
fn l4_terms_are_positive_and_exact() {
    assert_eq!(l4_term(&l4_any()), None);
    assert_eq!(
        l4_term(&l4_ports(0, 80, 80)).as_deref(),
        Some("tcp.dst == 80")
    );
    let not_tcp_80 = l4_any().minus(&l4_ports(0, 80, 80));
    let others: Vec<String> = (0..=255u8)
        .filter(|n| *n != 6)
        .map(|n| n.to_string())
        .collect();
    assert_eq!(
        l4_term(&not_tcp_80),
        Some(format!(
            "(tcp.dst <= 79 || tcp.dst >= 81 || ip.proto == {{{}}})",
            others.join(", ")
        ))
    );
    // Without "other": whole protocols by name.
    let udp_and_some_tcp = l4_ports(1, 0, 65535).union(&l4_ports(0, 5, 9));
    assert_eq!(
        l4_term(&udp_and_some_tcp).as_deref(),
        Some("((tcp.dst >= 5 && tcp.dst <= 9) || udp)")
    );
}

#[test]
fn whole_spaces_are_one_cidr() {
    let all4 = IpSet::from_nets(["0.0.0.0/0".parse::<IpNet>().unwrap()]);
    assert_eq!(
        all4.cidrs(false),
        vec!["0.0.0.0/0".parse::<IpNet>().unwrap()]
    );
    let all6 = IpSet::from_nets(["::/0".parse::<IpNet>().unwrap()]);
    assert_eq!(all6.cidrs(true), vec!["::/0".parse::<IpNet>().unwrap()]);
    let hole = all6.minus(&IpSet::from_addrs([v6(1)]));
    assert_eq!(hole.cidrs(true).len(), 128);
}
