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
//! **`Pass` is compiled into set differences, with no negation.** A
//! higher-priority ACL that allows would bypass NetworkPolicy, so a `Pass`
//! rule has no ACL of its own; instead every ANP rule below it (same
//! direction) matches only what the passes above it leave. A rule part is
//! a product subject pods × peer addresses × L4 ports, and so is a pass;
//! the controller takes each pass out of each part with exact set algebra
//! ([`algebra`]) and programs each disjoint piece left as one ACL at the
//! rule's priority with the rule's action ([`terms`]). Passed traffic thus
//! matches no ANP ACL and falls to NetworkPolicy's 12000/11000 and then to
//! the baseline. A piece names a dimension a pass did not touch as the
//! rule does (its port group, the shared peer sets, its ports) and a
//! touched one by a row of this ANP: a port group of the pods left, an
//! address set pair of the addresses left (CIDRs: network peers minus pod
//! addresses stay exact), or the port ranges left (`ip.proto` ranges for
//! "any other protocol"). A part no pass meets is compiled as if there
//! were no pass, with no extra row.
//!
//! Why not `&& !(<pass match>)`, as this did first: on OVN 23.03
//! ovn-controller expands a negated address set into per-bit OpenFlow
//! matches without bound (an ACL over a 1,000-address set excluding a pass
//! over a 20- and a 100-address set took it past 18 GB). Positive pieces
//! cost what ordinary ACLs over address sets cost: OpenFlow conjunctions,
//! linear in the set sizes.
//!
//! The costs: an ANP below a `Pass` reads the members of its own peers and
//! of the passes above it, so a pod among them re-translates it (see
//! [`mapper`]); pieces multiply when passes overlap a part in different
//! ways, so a rule needing more than [`terms::MAX_TERMS`] ACLs is not
//! programmed (its traffic goes on to NetworkPolicy, as if passed) and the
//! ANP is `Ready=False` with an `AdminNetworkPolicyNotEnforceable` event.
//! OVN ≥ 23.06 would replace all of this with tiers.
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
//! | `AdminNetworkPolicy` | name | port group `anp.<name>` of the subject's pods, its ACLs, address sets `anp.<name>.e<rule>.nodes.v4/.v6` of node peers; below a `Pass`, per piece `t<k>` of part `p<j>` of rule `<d><i>`: port group `anp.<name>.<d><i>.p<j>.t<k>` and address sets `….v4/.v6` where the pass cut that dimension |
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
use terms::Pass;

pub mod acl;
pub mod algebra;
pub mod mapper;
pub mod terms;

/// The priority of rule `i` of the baseline.
pub fn baseline_priority(i: usize) -> Option<i64> {
    let p = BASELINE_BAND.1 - i64::try_from(i).ok()?;
    (p >= BASELINE_BAND.0).then_some(p)
}

/// Where one ANP's rules go in one direction: the priority of its first
/// rule, and every `Pass` rule of the ANPs before it.
pub struct Slot<'a> {
    pub first: i64,
    pub pass_before: Vec<Pass<'a>>,
}

/// Walks the ANPs in evaluation order up to `name`, in direction `d`;
/// the passes only when `passes` asks for them.
pub fn slot<'a>(view: &View<'a>, name: &str, d: Direction, passes: bool) -> Option<Slot<'a>> {
    let mut first = ADMIN_BAND.1;
    let mut pass_before = Vec::new();
    for a in view.model.admin.ordered() {
        if a.name == name {
            return Some(Slot { first, pass_before });
        }
        for (i, r) in a.rules(d).iter().enumerate() {
            if passes && r.action == Action::Pass {
                pass_before.push(Pass::new(a, d, i, r, view));
            }
        }
        first -= a.rules(d).len() as i64;
    }
    None
}

fn object(info: &AdminInfo, kind: Kind) -> ObjectRef {
    ObjectRef::new(kind, None, &info.name, &info.uid)
}

/// The passes above each rule of `info` in direction `d`, as one list
/// and, per rule, how many of its first entries are above that rule.
fn passes_above<'a>(
    info: &'a AdminInfo,
    d: Direction,
    before: Vec<Pass<'a>>,
    view: &View,
) -> (Vec<Pass<'a>>, Vec<usize>) {
    let mut acc = before;
    let mut lens = Vec::new();
    for (i, r) in info.rules(d).iter().enumerate() {
        lens.push(acc.len());
        if r.action == Action::Pass {
            acc.push(Pass::new(info, d, i, r, view));
        }
    }
    (acc, lens)
}

/// One ANP's rows.
pub fn anp_rows(info: &AdminInfo, view: &View, problems: &mut Vec<Problem>) -> Vec<DesiredRow> {
    let mut notes = info.problems.clone();
    let mut passes = Vec::new();
    let mut firsts = Vec::new();
    for d in Direction::BOTH {
        let Some(s) = slot(view, &info.name, d, true) else {
            return Vec::new();
        };
        notes.extend(overflow(info, d, s.first));
        passes.push(passes_above(info, d, s.pass_before, view));
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
    let rows = acl::policy_rows(
        info,
        names::KIND_ADMIN_NETWORK_POLICY,
        view,
        &mut notes,
        |d, i| {
            let k = usize::from(d == Direction::Egress);
            let priority = firsts[k] - i as i64;
            let (above, lens) = &passes[k];
            (priority >= ADMIN_BAND.0).then(|| acl::Placed {
                priority,
                pass_above: &above[..lens[i]],
            })
        },
    );
    report(info, Kind::AdminNetworkPolicy, &notes, problems);
    rows
}

/// The notes for rules of `info` whose `Pass` terms exceed the cap.
fn term_notes(info: &AdminInfo, view: &View) -> Vec<String> {
    let mut out = Vec::new();
    for d in Direction::BOTH {
        let Some(s) = slot(view, &info.name, d, true) else {
            continue;
        };
        let (above, lens) = passes_above(info, d, s.pass_before, view);
        for (i, r) in info.rules(d).iter().enumerate() {
            if r.action != Action::Pass && lens[i] > 0 {
                out.extend(terms::check(info, d, i, r, view, &above[..lens[i]]));
            }
        }
    }
    out
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

/// Whether an admin policy is programmed as written: `Ok`, or what is
/// not; `None` when the model has no such policy.
pub fn readiness(kind: Kind, name: &str, view: &View) -> Option<Result<(), String>> {
    let notes = match kind {
        Kind::AdminNetworkPolicy => {
            let info = view.model.admin.anp(name)?;
            let mut notes = info.problems.clone();
            for d in Direction::BOTH {
                let first = slot(view, name, d, false).map_or(ADMIN_BAND.1, |s| s.first);
                notes.extend(overflow(info, d, first));
            }
            if view.model.admin.any_pass() {
                notes.extend(term_notes(info, view));
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
        let mut notes = Vec::new();
        Some(acl::policy_rows(
            info,
            names::KIND_BASELINE_ADMIN_NETWORK_POLICY,
            view,
            &mut notes,
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
mod algebra_tests;
#[cfg(test)]
mod tests;
