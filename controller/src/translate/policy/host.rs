//! What policies need beside their own sets: each node's host reaching
//! the pods on its node, and the meter that rate-limits ACL logs.
//!
//! The host ACL sits on the node's switch, so it applies only to traffic
//! to that switch's ports, and only from that node's management port
//! addresses (the source of kubelet probes): another node's host is
//! judged like any other source. It exists while any NetworkPolicy or
//! admin policy (ANP, BANP) does, so a cluster without policies has no ACL
//! at all.
//!
//! Being `allow-related`, it is also what makes every node switch
//! stateful in OVN's eyes: only then does ovn-northd let replies of
//! established connections through ahead of the ACLs. Admin policies
//! need that as NetworkPolicy does: their `Deny` is a plain `drop`, so
//! without it an ingress Deny of y into x also dropped the replies to the
//! connections x opened to y.

use std::collections::BTreeMap;

use ovsdb::nb::{LogicalSwitch, Meter, MeterBand};
use switchyard_api::{addressing, annotations, names};

use crate::k8s::{Kind, ObjectRef};
use crate::model::policy::Direction;
use crate::nb::{Col, DesiredRow, Owner, Parent, Table};
use crate::translate::{Problem, View};

use super::acl::{acl_row, AclSpec};
use super::{Logging, HOST_ALLOW, LOG_RATE, METER_KEY};

/// The match for traffic from a node's management addresses.
pub fn host_match(node_subnets: &[ipnet::IpNet]) -> Option<String> {
    let terms: Vec<String> = node_subnets
        .iter()
        .filter_map(|s| addressing::management(*s))
        .map(|ip| {
            let fam = if ip.is_ipv4() { "ip4" } else { "ip6" };
            format!("{fam}.src == {ip}")
        })
        .collect();
    match terms.len() {
        0 => None,
        1 => terms.into_iter().next(),
        _ => Some(format!("({})", terms.join(" || "))),
    }
}

/// Whether any NetworkPolicy or admin policy exists: the host ACLs exist
/// then (see the module doc).
pub fn any_policy(view: &View) -> bool {
    let m = view.model;
    !m.policy_index.is_empty()
        || !m.admin_network_policies.is_empty()
        || !m.baseline_admin_network_policies.is_empty()
}

/// Node `node`'s host ACL, while [`any_policy`].
pub fn host_rows(node: &str, view: &View) -> Option<Vec<DesiredRow>> {
    if !any_policy(view) {
        return None;
    }
    view.model.nodes.get(node)?;
    let subnets = view.decisions.node_subnets.get(node)?;
    let owner = Owner::of(names::KIND_POLICY_HOST, node);
    let Some(matches) = host_match(subnets) else {
        return Some(Vec::new());
    };
    let spec = AclSpec {
        key: "host".into(),
        direction: Direction::Ingress,
        priority: HOST_ALLOW,
        matches,
        action: "allow-related",
        name: format!("node-host:{node}"),
        ids: BTreeMap::from([(names::ACTION.to_string(), "allow".to_string())]),
        log: None,
    };
    let parent = Parent::new(
        Table::LogicalSwitch,
        names::node_switch(node),
        LogicalSwitch::ACLS,
    );
    Some(vec![acl_row(&owner, parent, spec)])
}

/// The logging meter, while some namespace asks for ACL logging; reports
/// every invalid logging annotation.
pub fn meter_rows(key: &str, view: &View, problems: &mut Vec<Problem>) -> Option<Vec<DesiredRow>> {
    let mut wanted = false;
    for (name, ns) in &view.model.namespaces {
        let Some(text) = ns.annotations.get(annotations::ACL_LOGGING) else {
            continue;
        };
        match Logging::parse(text) {
            Ok(l) => wanted |= l.any(),
            Err(e) => problems.push(Problem {
                object: ObjectRef::new(Kind::Namespace, None, name, &ns.uid),
                reason: "InvalidACLLogging",
                note: format!(
                    "annotation {}: {e}; ACL logging is off",
                    annotations::ACL_LOGGING
                ),
            }),
        }
    }
    let admin = view
        .model
        .admin_network_policies
        .values()
        .map(|p| &p.metadata)
        .chain(
            view.model
                .baseline_admin_network_policies
                .values()
                .map(|p| &p.metadata),
        );
    for m in admin {
        let text = m
            .annotations
            .as_ref()
            .and_then(|a| a.get(annotations::ACL_LOGGING));
        wanted |= text
            .and_then(|t| Logging::parse(t).ok())
            .is_some_and(|l| l.any());
    }
    if key != METER_KEY || !wanted {
        return None;
    }
    let owner = Owner::of(names::KIND_POLICY_METER, key);
    Some(vec![
        DesiredRow::named(Table::Meter, names::ACL_LOGGING_METER, &owner)
            .col(Meter::UNIT, Col::str("pktps"))
            .col(Meter::FAIR, Col::Bool(true)),
        DesiredRow::keyed(Table::MeterBand, "drop", &owner)
            .col(MeterBand::ACTION, Col::str("drop"))
            .col(MeterBand::RATE, Col::Int(LOG_RATE))
            .parent(Parent::new(
                Table::Meter,
                names::ACL_LOGGING_METER,
                Meter::BANDS,
            )),
    ])
}
