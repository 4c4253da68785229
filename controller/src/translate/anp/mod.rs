//! AdminNetworkPolicy and BaselineAdminNetworkPolicy
//! (`policy.networking.k8s.io/v1alpha1`) as OVN port groups, address sets
//! and ACLs, ordered against NetworkPolicy's by priority alone.
//!
//! # Why priorities and matches
//!
//! The API evaluates each packet in layers: ANPs by `priority` and, inside
//! one, rules in order, the first match deciding (`Allow`, `Deny`), or
//! `Pass` handing the packet to NetworkPolicy; then NetworkPolicy; then,
//! for pods no NetworkPolicy isolates, the baseline's rules in order; then
//! allow. OVN 23.06 expresses this with ACL tiers and a `pass` action.
//! OVN 23.03 (Debian 12) has neither: an ACL stage is one table where the
//! highest-priority matching ACL decides. So the controller compiles the
//! layers into that one table:
//!
//! | band | what |
//! |---|---|
//! | 32000 | a node's host to its pods ([`crate::translate::policy::host`]) |
//! | 31999 down to 20000 | ANP rules, one priority per rule, in evaluation order |
//! | 12000 / 11000 | NetworkPolicy allows / default denies |
//! | 10999 down to 10900 | the baseline's rules, one priority per rule |
//!
//! Ingress ACLs (`to-lport`) and egress ACLs (`from-lport`, after load
//! balancing, like NetworkPolicy's, so that both are in one stage) are two
//! separate tables, so each direction has the whole band.
//!
//! **ANP priorities are dense, not scaled.** 1,001 API priorities times 100
//! rules would need 100,100 OVN priorities; the band has 12,000. So the
//! ANPs present are sorted by (priority, name) and each takes as many
//! consecutive priorities, from 31999 down, as it has rules in that
//! direction: rule `i` of an ANP whose first rule sits at `b` is at `b - i`.
//! The limit is therefore 12,000 rules per direction over all ANPs (100
//! ANPs of the API's maximum 100 rules fit); rules past it are reported and
//! not programmed. The cost: an ANP added, removed or resized moves the
//! priorities of the ANPs after it (one transaction rewriting a column),
//! which is why the mapper touches every ANP then.
//!
//! **`Pass` is compiled into exclusions.** A higher-priority ACL that
//! allows would bypass NetworkPolicy, so a `Pass` rule has no ACL of its
//! own; instead every ANP ACL below it (same direction) gets
//! `&& !(<pass match>)` appended. Passed traffic thus matches no ANP ACL and
//! falls to NetworkPolicy's 12000/11000 and then to the baseline. OVN
//! refuses to negate a port match (`outport` is a nominal field), so the
//! pass match names its subject by address instead: an ANP with a `Pass`
//! rule also has address sets `anp.<name>.subject.v4/.v6` of its subject's
//! pods (port security makes a pod's port and its addresses equivalent);
//! inside one ANP the lower rules name the same subject already, so the
//! subject is left out. The negation is exact, but it has costs: each
//! `Pass` lengthens every ANP match below it, and ovn-controller turns a
//! negated address set into per-bit OpenFlow matches, which can be many
//! flows for large peer sets (not measured yet; keep `Pass` peers small).
//! OVN ≥ 23.06 would replace all of this with tiers.
//!
//! Measured since: on OVN 23.03 ovn-controller does not bound that
//! expansion (an ACL over a 1,000-address set excluding a pass over a
//! 20- and a 100-address set took ovn-controller past 18 GB and was still
//! growing), so the exclusions are compiled only when
//! [`crate::config::Config::admin_pass_exclusions`] is on (tests and small
//! clusters). Off, the default, a `Pass` rule matches nothing (the rules
//! below it judge its traffic) and the policy is reported `Ready=False`.
//! The way forward is exclusions without negated sets: controller-made
//! difference sets and port groups, or tiers.
//!
//! **The baseline sits under NetworkPolicy's default deny.** A pod that
//! some NetworkPolicy isolates in a direction has a `drop` at 11000 for all
//! its IP traffic of that direction not allowed at 12000, so nothing below
//! 11000 is ever reached for it: the baseline applies exactly to the pods
//! no NetworkPolicy isolates, as the API says, with no knowledge of
//! NetworkPolicy here.
//!
//! `Allow` is `allow-related` (replies pass both ways), `Deny` is `drop`.
//!
//! # Rows
//!
//! | owner kind | key | rows |
//! |---|---|---|
//! | `AdminNetworkPolicy` | name | port group `anp.<name>` of the subject's pods, its ACLs, address sets `anp.<name>.e<rule>.nodes.v4/.v6` of node peers |
//! | `BaselineAdminNetworkPolicy` | `default` | the same under `banp.default` |
//!
//! Pod and namespace peers use NetworkPolicy's shared address sets
//! (`PolicyPeers`, registered in [`crate::model::PolicyIndex`] with the
//! admin policy as a user) and the namespaces' own sets. Named ports
//! resolve on the subject's pods (ingress) or the peer pods (egress), per
//! port number, as NetworkPolicy's do; node and network peers have no
//! named ports. Node peers are the nodes' status addresses and management
//! port addresses.
//!
//! ACLs carry `name` `anp:<name>:<Direction>:<rule name>`, a conntrack
//! `label` and `external_ids` (`switchyard.io/policy`, `direction`, `rule`,
//! `action`) for counters, as NetworkPolicy's do; the policy's own
//! `switchyard.io/acl-logging` annotation logs them. Each policy's `Ready`
//! condition is [`crate::admin_status`]'s. `tests/anp_trace.rs` proves the
//! compiled order with `ovn-trace`; `examples/anp-bench.rs` measures it.

use crate::k8s::{Kind, ObjectRef};
use crate::model::admin::{Action, AdminInfo, BASELINE_NAME};
use crate::model::policy::Direction;
use crate::model::Change;
use crate::nb::{DesiredRow, Table};
use switchyard_api::names;

use super::policy::{ADMIN_BAND, BASELINE_BAND};
use super::{Problem, Translator, View};

pub mod acl;
pub mod mapper;

/// The priority of rule `i` of the baseline.
pub fn baseline_priority(i: usize) -> Option<i64> {
    let p = BASELINE_BAND.1 - i64::try_from(i).ok()?;
    (p >= BASELINE_BAND.0).then_some(p)
}

/// Where one ANP's rules go in one direction: the priority of its first
/// rule, and the matches of every `Pass` rule of the ANPs before it.
pub struct Slot {
    pub first: i64,
    pub pass_before: Vec<String>,
}

/// Walks the ANPs in evaluation order up to `name`, in direction `d`.
pub fn slot(view: &View, name: &str, d: Direction) -> Option<Slot> {
    let mut first = ADMIN_BAND.1;
    let mut pass_before = Vec::new();
    for a in view.model.admin.ordered() {
        if a.name == name {
            return Some(Slot { first, pass_before });
        }
        for (i, r) in a.rules(d).iter().enumerate() {
            if r.action == Action::Pass && view.config.admin_pass_exclusions {
                pass_before.extend(
                    acl::rule_matches(a, d, i, r, view, acl::Side::Addresses)
                        .into_iter()
                        .map(|(_, m)| m),
                );
            }
        }
        first -= a.rules(d).len() as i64;
    }
    None
}

fn object(info: &AdminInfo, kind: Kind) -> ObjectRef {
    ObjectRef::new(kind, None, &info.name, &info.uid)
}

/// One ANP's rows.
pub fn anp_rows(info: &AdminInfo, view: &View, problems: &mut Vec<Problem>) -> Vec<DesiredRow> {
    let mut notes = info.problems.clone();
    notes.extend(pass_note(info, view));
    let mut passes = Vec::new();
    let mut firsts = Vec::new();
    for d in Direction::BOTH {
        let Some(s) = slot(view, &info.name, d) else {
            return Vec::new();
        };
        // The pass matches above each rule: the earlier ANPs', then this
        // one's earlier rules'.
        let mut above = vec![s.pass_before.clone()];
        let mut acc = s.pass_before;
        for (i, r) in info.rules(d).iter().enumerate() {
            if r.action == Action::Pass && view.config.admin_pass_exclusions {
                acc.extend(
                    acl::rule_matches(info, d, i, r, view, acl::Side::Omitted)
                        .into_iter()
                        .map(|(_, m)| m),
                );
            }
            above.push(acc.clone());
        }
        notes.extend(overflow(info, d, s.first));
        passes.push(above);
        firsts.push(s.first);
    }
    let p = info.priority.unwrap_or_default();
    let same: Vec<&String> = view
        .model
        .admin
        .ordered()
        .filter(|a| a.priority == info.priority && a.name != info.name)
        .map(|a| &a.name)
        .collect();
    if !same.is_empty() {
        problems.push(Problem {
            object: object(info, Kind::AdminNetworkPolicy),
            reason: "AdminNetworkPolicyPriorityConflict",
            note: format!(
                "priority {p} is also that of {}; their relative order is by name, which the API leaves undefined",
                same.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ),
        });
    }
    report(info, Kind::AdminNetworkPolicy, &notes, problems);
    acl::policy_rows(info, names::KIND_ADMIN_NETWORK_POLICY, view, |d, i| {
        let k = usize::from(d == Direction::Egress);
        let priority = firsts[k] - i as i64;
        (priority >= ADMIN_BAND.0).then(|| acl::Placed {
            priority,
            pass_above: &passes[k][i],
        })
    })
}

/// The note for rules of `info` in direction `d` that do not fit the band
/// when its first rule is at `first`.
fn overflow(info: &AdminInfo, d: Direction, first: i64) -> Option<String> {
    let lowest = first - info.rules(d).len() as i64 + 1;
    (lowest < ADMIN_BAND.0).then(|| {
        format!(
            "{} rules past the {} ANP rules OVN's priority band holds in this direction are not enforced",
            d.as_str(),
            ADMIN_BAND.1 - ADMIN_BAND.0 + 1
        )
    })
}

/// The note for `Pass` rules that are not compiled (see
/// [`crate::config::Config::admin_pass_exclusions`]).
fn pass_note(info: &AdminInfo, view: &View) -> Option<String> {
    (info.has_pass() && !view.config.admin_pass_exclusions).then(|| {
        "Pass rules are not enforced: OVN 23.03 has no pass action and the negated matches \
         that emulate it are off (adminPassExclusions); they match nothing"
            .to_string()
    })
}

/// Whether an admin policy is programmed as written: `Ok`, or what is
/// not; `None` when the model has no such policy.
pub fn readiness(kind: Kind, name: &str, view: &View) -> Option<Result<(), String>> {
    let notes = match kind {
        Kind::AdminNetworkPolicy => {
            let info = view.model.admin.anp(name)?;
            let mut notes = info.problems.clone();
            notes.extend(pass_note(info, view));
            for d in Direction::BOTH {
                let first = slot(view, name, d).map_or(ADMIN_BAND.1, |s| s.first);
                notes.extend(overflow(info, d, first));
            }
            notes
        }
        Kind::BaselineAdminNetworkPolicy => {
            let p = view.model.baseline_admin_network_policies.get(name)?;
            AdminInfo::from_banp(p).problems
        }
        _ => return None,
    };
    Some(if notes.is_empty() {
        Ok(())
    } else {
        Err(notes.join("; "))
    })
}

fn report(info: &AdminInfo, kind: Kind, notes: &[String], problems: &mut Vec<Problem>) {
    if notes.is_empty() {
        return;
    }
    problems.push(Problem {
        object: object(info, kind),
        reason: "AdminNetworkPolicyNotEnforceable",
        note: notes.join("; "),
    });
}

/// AdminNetworkPolicies.
pub struct AdminPolicies;

impl Translator for AdminPolicies {
    fn kind(&self) -> &'static str {
        names::KIND_ADMIN_NETWORK_POLICY
    }
    fn after(&self) -> &'static [&'static str] {
        &[
            names::KIND_POD,
            names::KIND_NAMESPACE,
            names::KIND_POLICY_PEERS,
            names::KIND_POLICY_METER,
        ]
    }
    fn tables(&self) -> &'static [Table] {
        &[Table::PortGroup, Table::AddressSet, Table::Acl]
    }
    fn inputs(&self) -> &'static [Kind] {
        &[
            Kind::AdminNetworkPolicy,
            Kind::Pod,
            Kind::Namespace,
            Kind::Node,
        ]
    }
    fn owners(&self, change: &Change, view: &View, out: &mut Vec<String>) {
        mapper::anps(change, view, out)
    }
    fn all(&self, view: &View) -> Vec<String> {
        view.model.admin.names().cloned().collect()
    }
    fn rows(&self, key: &str, view: &View, problems: &mut Vec<Problem>) -> Option<Vec<DesiredRow>> {
        let info = view.model.admin.anp(key)?;
        Some(anp_rows(info, view, problems))
    }
}

/// The BaselineAdminNetworkPolicy.
pub struct BaselinePolicy;

impl Translator for BaselinePolicy {
    fn kind(&self) -> &'static str {
        names::KIND_BASELINE_ADMIN_NETWORK_POLICY
    }
    fn after(&self) -> &'static [&'static str] {
        &[
            names::KIND_POD,
            names::KIND_NAMESPACE,
            names::KIND_POLICY_PEERS,
            names::KIND_POLICY_METER,
        ]
    }
    fn tables(&self) -> &'static [Table] {
        &[Table::PortGroup, Table::AddressSet, Table::Acl]
    }
    fn inputs(&self) -> &'static [Kind] {
        &[
            Kind::BaselineAdminNetworkPolicy,
            Kind::Pod,
            Kind::Namespace,
            Kind::Node,
        ]
    }
    fn owners(&self, change: &Change, view: &View, out: &mut Vec<String>) {
        mapper::baseline(change, view, out)
    }
    fn all(&self, view: &View) -> Vec<String> {
        view.model
            .baseline_admin_network_policies
            .keys()
            .cloned()
            .collect()
    }
    fn rows(&self, key: &str, view: &View, problems: &mut Vec<Problem>) -> Option<Vec<DesiredRow>> {
        if key != BASELINE_NAME {
            let p = view.model.baseline_admin_network_policies.get(key)?;
            let info = AdminInfo::from_banp(p);
            report(
                &info,
                Kind::BaselineAdminNetworkPolicy,
                &info.problems,
                problems,
            );
            return None;
        }
        let info = view.model.admin.baseline()?;
        report(
            info,
            Kind::BaselineAdminNetworkPolicy,
            &info.problems,
            problems,
        );
        Some(acl::policy_rows(
            info,
            names::KIND_BASELINE_ADMIN_NETWORK_POLICY,
            view,
            |_, i| {
                baseline_priority(i).map(|priority| acl::Placed {
                    priority,
                    pass_above: &[],
                })
            },
        ))
    }
}

#[cfg(test)]
mod tests;
