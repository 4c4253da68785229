//! The node host's own connections to NodePorts on its own addresses.
//!
//! Why: a connection from the host to one of its own addresses never
//! leaves its stack (the `local` routing table delivers it), so the node
//! port's load balancer, in OVN, never sees it; kube-proxy catches it with
//! iptables, and Switchyard programs none. Policy routing sends it to OVN
//! instead: rules ahead of the `local` table's send the node's addresses,
//! for TCP, UDP and SCTP to the NodePort range, to table [`TABLE`], which
//! routes them through the management port with the management address as
//! source. The node switch balances them as a pod's (`^NODEIP` on this
//! chassis) and un-DNATs the reply, which arrives on the management port
//! from the node's own address: IPv4 drops such a source unless the port
//! has `accept_local`.
//!
//! The `local` table's rule has preference 0, before anything one can add,
//! so it is moved to [`LOCAL_PREF`] (added there first, then removed from
//! 0: the host is never without one) and the rules go at [`RULE_PREF`].
//! Nothing else changes for the host: the rules only match the NodePort
//! range on the node's own addresses, and only what the host itself sends
//! (`iif lo`): without that, the SYN of an outside client to a port of the
//! range that a host process serves (the agent's own health check ports)
//! was routed into OVN instead of delivered. The health check ports are
//! served on the host for the host too: a rule at [`EXCEPTION_PREF`] sends
//! them to the `local` table first.
//!
//! Restart safety: the rules and routes in [`TABLE`] are compared with
//! what the node's addresses call for; missing ones are added, others
//! removed, and a converged host is left untouched.

use std::collections::BTreeSet;
use std::net::IpAddr;

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage, RulePortRange};
use rtnetlink::packet_route::IpProtocol;
use rtnetlink::{Handle, IpVersion, RouteMessageBuilder};

use crate::error::{Error, Result};

/// The routing table the rules point to ("SY" on a phone keypad, 79).
pub const TABLE: u32 = 7900;
/// Preference of the rules: before [`LOCAL_PREF`].
pub const RULE_PREF: u32 = 50;
/// Preference of the health check ports' rules, before [`RULE_PREF`].
pub const EXCEPTION_PREF: u32 = 49;
/// Where the `local` table's rule moves to.
pub const LOCAL_PREF: u32 = 100;
/// The kernel's `local` table.
const LOCAL_TABLE: u32 = 255;

const PROTOCOLS: [IpProtocol; 3] = [IpProtocol::Tcp, IpProtocol::Udp, IpProtocol::Sctp];

/// One rule: traffic to `dst`, protocol `proto`, in the NodePort range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    pub dst: IpAddr,
    pub proto: u8,
    pub ports: (u16, u16),
}

/// One route of [`TABLE`]: `dst` via the node subnet's gateway, from the
/// management address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub dst: IpAddr,
    pub via: IpAddr,
    pub src: IpAddr,
}

/// What the host needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// To [`TABLE`], at [`RULE_PREF`].
    pub rules: BTreeSet<Rule>,
    /// To the `local` table, at [`EXCEPTION_PREF`]: the health check ports.
    pub exceptions: BTreeSet<Rule>,
    pub routes: BTreeSet<Route>,
}

/// The rules and routes for `node_ips`, given the management port's
/// addresses (a family without one gets nothing) and the health check
/// ports the host serves itself.
pub fn plan(node_ips: &[IpAddr], mgmt: &[IpNet], ports: (u16, u16), served: &[u16]) -> Plan {
    let mut p = Plan::default();
    for &dst in node_ips {
        let Some(m) = mgmt.iter().find(|m| m.addr().is_ipv4() == dst.is_ipv4()) else {
            continue;
        };
        let Some(via) = switchyard_api::addressing::gateway(m.trunc()) else {
            continue;
        };
        for proto in PROTOCOLS {
            p.rules.insert(Rule {
                dst,
                proto: u8::from(proto),
                ports,
            });
        }
        p.routes.insert(Route {
            dst,
            via,
            src: m.addr(),
        });
        for &port in served.iter().filter(|&&s| (ports.0..=ports.1).contains(&s)) {
            p.exceptions.insert(Rule {
                dst,
                proto: u8::from(IpProtocol::Tcp),
                ports: (port, port),
            });
        }
    }
    p
}

fn host_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn rule_table(m: &RuleMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RuleAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table))
}

fn rule_pref(m: &RuleMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RuleAttribute::Priority(p) => Some(*p),
            _ => None,
        })
        .unwrap_or(0)
}

/// The [`Rule`] a rule of [`TABLE`] is, if it is one of this module's shape.
fn as_rule(m: &RuleMessage) -> Option<Rule> {
    let mut dst = None;
    let mut proto = None;
    let mut ports = None;
    for a in &m.attributes {
        match a {
            RuleAttribute::Destination(ip) => dst = Some(*ip),
            RuleAttribute::IpProtocol(p) => proto = Some(u8::from(*p)),
            RuleAttribute::DestinationPortRange(r) => ports = Some((r.start, r.end)),
            _ => {}
        }
    }
    let dst = dst?;
    (m.header.dst_len == host_len(dst)).then_some(Rule {
        dst,
        proto: proto?,
        ports: ports?,
    })
}

/// Whether the rule matches only what the host sends (`iif lo`).
fn from_host(m: &RuleMessage) -> bool {
    m.attributes
        .iter()
        .any(|a| matches!(a, RuleAttribute::Iifname(n) if n == "lo"))
}

async fn rules(h: &Handle, v6: bool) -> Result<Vec<RuleMessage>> {
    let version = if v6 { IpVersion::V6 } else { IpVersion::V4 };
    h.rule()
        .get(version)
        .execute()
        .try_collect()
        .await
        .map_err(|e| Error::netlink("listing routing rules", e))
}

/// Brings the host to `plan`; returns whether anything changed.
pub async fn sync(h: &Handle, mgmt_ifindex: u32, plan: &Plan) -> Result<bool> {
    let mut changed = false;
    for v6 in [false, true] {
        let of_family = |set: &BTreeSet<Rule>| -> BTreeSet<Rule> {
            set.iter()
                .filter(|r| r.dst.is_ipv6() == v6)
                .copied()
                .collect()
        };
        let kinds = [
            (TABLE, RULE_PREF, of_family(&plan.rules)),
            (LOCAL_TABLE, EXCEPTION_PREF, of_family(&plan.exceptions)),
        ];
        let nothing_wanted = kinds.iter().all(|(_, _, want)| want.is_empty());
        let have = match rules(h, v6).await {
            Ok(have) => have,
            // A host without IPv6 has no rules of it to keep or remove.
            Err(_) if nothing_wanted && v6 => continue,
            Err(e) => return Err(e),
        };
        if !kinds[0].2.is_empty() {
            changed |= move_local_rule(h, v6, &have).await?;
        }
        for (table, pref, want) in kinds {
            let mut present = BTreeSet::new();
            // Ours: this table at this preference (the `local` table's own
            // rule has neither a destination nor this preference).
            for m in have
                .iter()
                .filter(|m| rule_table(m) == table && (table == TABLE || rule_pref(m) == pref))
            {
                match as_rule(m) {
                    Some(r) if want.contains(&r) && rule_pref(m) == pref && from_host(m) => {
                        present.insert(r);
                    }
                    _ => {
                        h.rule()
                            .del(m.clone())
                            .execute()
                            .await
                            .map_err(|e| Error::netlink("removing a stale NodePort rule", e))?;
                        changed = true;
                    }
                }
            }
            for r in want.difference(&present) {
                add_rule(h, r, table, pref).await?;
                changed = true;
            }
        }
    }
    changed |= sync_routes(h, mgmt_ifindex, plan).await?;
    if plan.rules.iter().any(|r| r.dst.is_ipv4()) {
        let path = format!(
            "/proc/sys/net/ipv4/conf/{}/accept_local",
            switchyard_api::names::MGMT_INTERFACE
        );
        if std::fs::read_to_string(&path)
            .map(|s| s.trim() != "1")
            .unwrap_or(true)
        {
            std::fs::write(&path, "1").map_err(|e| Error::io(format!("writing {path}"), e))?;
            changed = true;
        }
    }
    Ok(changed)
}

/// Puts a `local` table rule at [`LOCAL_PREF`], then removes the one at 0.
async fn move_local_rule(h: &Handle, v6: bool, have: &[RuleMessage]) -> Result<bool> {
    let is_local =
        |m: &&RuleMessage| rule_table(m) == LOCAL_TABLE && m.header.action == RuleAction::ToTable;
    let mut changed = false;
    if !have
        .iter()
        .filter(is_local)
        .any(|m| rule_pref(m) == LOCAL_PREF)
    {
        let add = h.rule().add().table_id(LOCAL_TABLE).priority(LOCAL_PREF);
        let r = if v6 {
            add.v6().action(RuleAction::ToTable).execute().await
        } else {
            add.v4().action(RuleAction::ToTable).execute().await
        };
        r.map_err(|e| Error::netlink("adding the local table's rule at preference 100", e))?;
        changed = true;
    }
    for m in have.iter().filter(is_local).filter(|m| rule_pref(m) == 0) {
        h.rule()
            .del(m.clone())
            .execute()
            .await
            .map_err(|e| Error::netlink("removing the local table's rule at preference 0", e))?;
        changed = true;
    }
    Ok(changed)
}

async fn add_rule(h: &Handle, r: &Rule, table: u32, pref: u32) -> Result<()> {
    let base = h
        .rule()
        .add()
        .table_id(table)
        .priority(pref)
        .action(RuleAction::ToTable)
        .input_interface("lo");
    let extra = [
        RuleAttribute::IpProtocol(IpProtocol::from(r.proto)),
        RuleAttribute::DestinationPortRange(RulePortRange {
            start: r.ports.0,
            end: r.ports.1,
        }),
    ];
    let res = match r.dst {
        IpAddr::V4(a) => {
            let mut req = base.v4().destination_prefix(a, 32);
            req.message_mut().attributes.extend(extra);
            req.execute().await
        }
        IpAddr::V6(a) => {
            let mut req = base.v6().destination_prefix(a, 128);
            req.message_mut().attributes.extend(extra);
            req.execute().await
        }
    };
    res.map_err(|e| Error::netlink(format!("adding the NodePort rule for {}", r.dst), e))
}

async fn sync_routes(h: &Handle, ifindex: u32, plan: &Plan) -> Result<bool> {
    let mut changed = false;
    let mut present = BTreeSet::new();
    for v6 in [false, true] {
        let req = if v6 {
            RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .table_id(TABLE)
                .build()
        } else {
            RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .table_id(TABLE)
                .build()
        };
        let routes: Vec<_> = match h.route().get(req).execute().try_collect().await {
            Ok(routes) => routes,
            Err(_) if v6 && !plan.routes.iter().any(|r| r.dst.is_ipv6()) => continue,
            Err(e) => return Err(Error::netlink("listing routes", e)),
        };
        for m in routes {
            let table = m
                .attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Table(t) => Some(*t),
                    _ => None,
                })
                .unwrap_or(u32::from(m.header.table));
            if table != TABLE {
                continue;
            }
            let addr = |want: fn(&RouteAttribute) -> Option<&RouteAddress>| {
                m.attributes.iter().find_map(want).and_then(|a| match a {
                    RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
                    RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
                    _ => None,
                })
            };
            let dst = addr(|a| match a {
                RouteAttribute::Destination(d) => Some(d),
                _ => None,
            });
            let via = addr(|a| match a {
                RouteAttribute::Gateway(g) => Some(g),
                _ => None,
            });
            let src = addr(|a| match a {
                RouteAttribute::PrefSource(s) => Some(s),
                _ => None,
            });
            let oif = m.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            });
            let route = match (dst, via, src) {
                (Some(dst), Some(via), Some(src)) => Some(Route { dst, via, src }),
                _ => None,
            };
            match route {
                Some(r)
                    if plan.routes.contains(&r)
                        && oif == Some(ifindex)
                        && m.header.destination_prefix_length == host_len(r.dst) =>
                {
                    present.insert(r);
                }
                _ => {
                    h.route()
                        .del(m)
                        .execute()
                        .await
                        .map_err(|e| Error::netlink("removing a stale NodePort route", e))?;
                    changed = true;
                }
            }
        }
    }
    for r in plan.routes.difference(&present) {
        let msg = match (r.dst, r.via, r.src) {
            (IpAddr::V4(d), IpAddr::V4(g), IpAddr::V4(s)) => {
                RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                    .table_id(TABLE)
                    .destination_prefix(d, 32)
                    .gateway(g)
                    .pref_source(s)
                    .output_interface(ifindex)
                    .build()
            }
            (IpAddr::V6(d), IpAddr::V6(g), IpAddr::V6(s)) => {
                RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                    .table_id(TABLE)
                    .destination_prefix(d, 128)
                    .gateway(g)
                    .pref_source(s)
                    .output_interface(ifindex)
                    .build()
            }
            _ => continue,
        };
        h.route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("adding the NodePort route for {}", r.dst), e))?;
        changed = true;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_address_with_a_management_address_of_its_family() {
        let ips: Vec<IpAddr> = vec![
            "198.18.0.11".parse().unwrap(),
            "2001:db8::11".parse().unwrap(),
            "198.18.0.99".parse().unwrap(),
        ];
        let mgmt: Vec<IpNet> = vec!["10.244.1.2/24".parse().unwrap()];
        let p = plan(&ips, &mgmt, (30000, 32767), &[31000, 8080]);
        // IPv6 has no management address: nothing for it.
        assert_eq!(p.rules.len(), 6);
        // A health check port in the range is the host's; 8080 is not in it.
        assert_eq!(p.exceptions.len(), 2);
        assert!(p
            .exceptions
            .iter()
            .all(|r| r.ports == (31000, 31000) && r.proto == 6));
        assert!(p
            .rules
            .iter()
            .all(|r| r.dst.is_ipv4() && r.ports == (30000, 32767)));
        let protos: BTreeSet<u8> = p.rules.iter().map(|r| r.proto).collect();
        assert_eq!(protos, [6, 17, 132].into());
        assert_eq!(
            p.routes.iter().next(),
            Some(&Route {
                dst: "198.18.0.11".parse().unwrap(),
                via: "10.244.1.1".parse().unwrap(),
                src: "10.244.1.2".parse().unwrap(),
            })
        );
        assert_eq!(p.routes.len(), 2);
        assert_eq!(plan(&ips, &[], (30000, 32767), &[31000]), Plan::default());
    }
}
