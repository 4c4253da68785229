//! NetworkPolicy (`networking.k8s.io/v1`) as OVN port groups, address sets
//! and ACLs.
//!
//! # Owners
//!
//! | owner kind | key | rows |
//! |---|---|---|
//! | `PolicyPods` | `<ns>/<selector>` | port group `np.<ns>.<hash>` of the pods a `podSelector` picks, and one default-deny ACL per direction some policy with that selector isolates |
//! | `NetworkPolicy` | `<ns>/<name>` | the policy's allow ACLs, held by its `PolicyPods` port group |
//! | `PolicyPeers` | `ns:<ns>\|<sel>` or `nsel:<sel>\|<sel>` (+ `\|<PROTO>/<port name>`) | address sets `peer[.<ns>].<hash>[.p<port>].v4/.v6` of the pods a peer names |
//! | `PolicyHost` | node name | on the node's switch: its host (management port addresses) reaches its pods |
//! | `PolicyMeter` | `acl-logging` | the meter that rate-limits ACL logs |
//!
//! Port groups and address sets are keyed by *canonical* selectors
//! ([`crate::model::policy::Selector`]), so policies selecting the same
//! pods, or naming the same peers, share them; a shared set lives while
//! some policy uses it ([`crate::model::PolicyIndex`]). Peers that are
//! whole namespaces use the namespaces' own sets (`ns.<ns>.v4/.v6`). The
//! names hash the selector (OVN names allow `[A-Za-z0-9_.]` only); the
//! readable selector is in `external_ids:switchyard.io/selector`.
//!
//! # Semantics
//!
//! A pod some policy selects with direction D is isolated for D: the
//! `PolicyPods` port group of that policy's selector drops D's IP traffic
//! at [`DENY`], and the allow ACLs of every policy selecting it (at
//! [`ALLOW`]) let through what any rule of any of them allows (OR across
//! policies and rules; a port group per selector makes the OR hold for a
//! pod in several groups). A pod no policy selects is in no group and
//! unrestricted. Allow ACLs are `allow-related`, so replies (and related
//! ICMP) always pass, in both directions. Egress ACLs are `from-lport` with
//! `options:apply-after-lb=true` — deny and allow alike, since OVN orders
//! the after-LB stage separately — so traffic to a ClusterIP is judged on
//! the backend it was balanced to; ingress (`to-lport`) is after load
//! balancing anyway. Named ports resolve per destination pod and protocol:
//! one address set per port number the name has among the destinations,
//! each matched with its own number. Neighbour discovery is allowed by OVN
//! itself; ARP is not IP. `hostNetwork` pods have no port and are in no
//! set.
//!
//! # ACL priorities (OVN 23.03 has no tiers and no `pass`)
//!
//! | band | what |
//! |---|---|
//! | [`HOST_ALLOW`] (32000) | a node's host to the pods on its node (kubelet probes), whatever any policy says |
//! | [`ADMIN_BAND`] (20000–31999) | AdminNetworkPolicy rules ([`crate::translate::anp`]) |
//! | [`ALLOW`] (12000) | NetworkPolicy allow rules |
//! | [`DENY`] (11000) | NetworkPolicy default deny of isolated pods |
//! | [`BASELINE_BAND`] (1000–10999) | BaselineAdminNetworkPolicy rules, reached only by traffic no NetworkPolicy isolates |
//!
//! AdminNetworkPolicy's `from-lport` ACLs must also be after-LB to be
//! ordered against these.
//!
//! # Observability
//!
//! Every ACL has a `name` (`<ns>/<policy>:<Direction>:<rule>`, or
//! `...:deny` for a default deny; shown in OVN's log lines and in
//! `ovn-trace`), a `label` (a 32-bit hash of its owner and key, written
//! into conntrack by allow ACLs; `ovn-nbctl find ACL label=N` maps it back,
//! and a collision could only merge two ACLs' counters, never their
//! verdicts), and `external_ids` naming the policies, direction, rule and
//! action ([`names::POLICY`] ...) for counters. A namespace annotated
//! [`annotations::ACL_LOGGING`] logs its policies' ACLs at the given
//! severities, rate-limited by the meter [`names::ACL_LOGGING_METER`].
//!
//! # Inspecting
//!
//! `ovn-nbctl find ACL external_ids:switchyard.io/owner=<ns>/<policy>`
//! lists a policy's allows; `ovn-nbctl find Port_Group
//! external_ids:switchyard.io/owner-kind=PolicyPods` the selected pods'
//! groups with their selectors and default denies; `ovn-trace --ct=new
//! node-<node> 'inport == "<ns>_<pod>" && ...'` names the ACL that decides
//! a packet (`tests/policy_trace.rs` probes every pair this way).
//!
//! Translation is pure: [`acl`] builds matches and ACL rows, [`sets`] the
//! port groups and address sets, [`host`] the node and meter rows,
//! [`mapper`] decides which owners a change touches.

use std::collections::BTreeMap;

use serde::Deserialize;
use switchyard_api::{annotations, names};

use crate::k8s::{Kind, ObjectRef};
use crate::model::policy::Scope;
use crate::model::policy_index::{PeerSet, PodSet};
use crate::model::{Change, Model};
use crate::nb::{DesiredRow, Table};

use super::{Problem, Translator, View};

pub mod acl;
pub mod host;
pub mod mapper;
pub mod sets;

/// See the module doc.
pub const HOST_ALLOW: i64 = 32000;
pub const ADMIN_BAND: (i64, i64) = (20000, 31999);
pub const ALLOW: i64 = 12000;
pub const DENY: i64 = 11000;
pub const BASELINE_BAND: (i64, i64) = (1000, 10999);

/// Key of the one meter owner.
pub const METER_KEY: &str = "acl-logging";
/// ACL log messages per second per ACL (the meter is `fair`).
pub const LOG_RATE: i64 = 20;

/// FNV-1a, 64 bits: stable across builds and versions, unlike std's
/// hasher, since the names it makes are stored in NB.
pub fn fnv64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A namespace name as OVN names allow it (a DNS label: only `-` needs
/// mapping, and `_` does not occur in one, so nothing is lost).
fn ovn_ns(ns: &str) -> String {
    ns.replace('-', "_")
}

/// The port group of a pod set.
pub fn pod_set_name(s: &PodSet) -> String {
    format!("np.{}.{:016x}", ovn_ns(&s.namespace), fnv64(&s.key()))
}

/// The stem of a peer set's address sets; `.v4`/`.v6` (and `.p<port>`
/// before them for named ports) complete it.
pub fn peer_set_stem(s: &PeerSet) -> String {
    let h = fnv64(&s.key());
    match &s.scope {
        Scope::Namespace(ns) => format!("peer.{}.{h:016x}", ovn_ns(ns)),
        Scope::Namespaces(_) => format!("peer.{h:016x}"),
    }
}

/// An address set of a peer set: `port` is the number a named port
/// resolved to (`None` for an unfiltered set).
pub fn peer_set_name(s: &PeerSet, port: Option<u16>, v6: bool) -> String {
    let fam = if v6 { "v6" } else { "v4" };
    match port {
        Some(p) => format!("{}.p{p}.{fam}", peer_set_stem(s)),
        None => format!("{}.{fam}", peer_set_stem(s)),
    }
}

/// A syslog severity OVN accepts.
const SEVERITIES: [&str; 5] = ["alert", "warning", "notice", "info", "debug"];

/// A namespace's ACL logging: the severity per action, when logged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    pub deny: Option<String>,
    pub allow: Option<String>,
}

impl Logging {
    /// Parses the annotation's value.
    pub fn parse(text: &str) -> Result<Logging, String> {
        let l: Logging = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
        for s in [&l.deny, &l.allow].into_iter().flatten() {
            if !SEVERITIES.contains(&s.as_str()) {
                return Err(format!(
                    "severity {s:?} is not one of {}",
                    SEVERITIES.join(", ")
                ));
            }
        }
        Ok(l)
    }

    /// The logging namespace `ns` asks for; none when it asks for none or
    /// its annotation is invalid (the meter owner reports that).
    pub fn of(model: &Model, ns: &str) -> Logging {
        model
            .namespaces
            .get(ns)
            .and_then(|n| n.annotations.get(annotations::ACL_LOGGING))
            .and_then(|t| Logging::parse(t).ok())
            .unwrap_or_default()
    }

    pub fn any(&self) -> bool {
        self.deny.is_some() || self.allow.is_some()
    }
}

/// The policy `key`'s Kubernetes object, for its Events.
fn policy_ref(ns: &str, name: &str, uid: &str) -> ObjectRef {
    ObjectRef::new(Kind::NetworkPolicy, Some(ns), name, uid)
}

/// The allow ACLs of one policy.
pub struct NetworkPolicies;

impl Translator for NetworkPolicies {
    fn kind(&self) -> &'static str {
        names::KIND_NETWORK_POLICY
    }
    fn after(&self) -> &'static [&'static str] {
        &[
            names::KIND_POLICY_PODS,
            names::KIND_POLICY_PEERS,
            names::KIND_NAMESPACE,
            names::KIND_POLICY_METER,
        ]
    }
    fn tables(&self) -> &'static [Table] {
        &[Table::Acl]
    }
    fn inputs(&self) -> &'static [Kind] {
        &[Kind::NetworkPolicy, Kind::Pod, Kind::Namespace]
    }
    fn owners(&self, change: &Change, view: &View, out: &mut Vec<String>) {
        mapper::policies(change, view, out)
    }
    fn all(&self, view: &View) -> Vec<String> {
        view.model.network_policies.keys().cloned().collect()
    }
    fn rows(&self, key: &str, view: &View, problems: &mut Vec<Problem>) -> Option<Vec<DesiredRow>> {
        let p = view.model.policy_index.policy(key)?;
        // One Event listing every part, so none hides another.
        if !p.problems.is_empty() {
            problems.push(Problem {
                object: policy_ref(&p.namespace, &p.name, &p.uid),
                reason: "NetworkPolicyNotEnforceable",
                note: p.problems.join("; "),
            });
        }
        Some(acl::policy_rows(p, view))
    }
}

/// The port group (and default denies) of the pods one selector picks.
pub struct PolicyPods;

impl Translator for PolicyPods {
    fn kind(&self) -> &'static str {
        names::KIND_POLICY_PODS
    }
    fn after(&self) -> &'static [&'static str] {
        &[names::KIND_POD, names::KIND_POLICY_METER]
    }
    fn tables(&self) -> &'static [Table] {
        &[Table::PortGroup, Table::Acl]
    }
    fn inputs(&self) -> &'static [Kind] {
        &[Kind::NetworkPolicy, Kind::Pod, Kind::Namespace]
    }
    fn owners(&self, change: &Change, view: &View, out: &mut Vec<String>) {
        mapper::pod_sets(change, view, out)
    }
    fn all(&self, view: &View) -> Vec<String> {
        view.model
            .policy_index
            .pod_sets()
            .map(|(k, _)| k.clone())
            .collect()
    }
    fn rows(&self, key: &str, view: &View, _: &mut Vec<Problem>) -> Option<Vec<DesiredRow>> {
        let used = view.model.policy_index.pod_set(key)?;
        Some(sets::pod_set_rows(used, view))
    }
}

/// The address sets of one peer.
pub struct PolicyPeers;

impl Translator for PolicyPeers {
    fn kind(&self) -> &'static str {
        names::KIND_POLICY_PEERS
    }
    fn tables(&self) -> &'static [Table] {
        &[Table::AddressSet]
    }
    fn inputs(&self) -> &'static [Kind] {
        &[
            Kind::NetworkPolicy,
            Kind::AdminNetworkPolicy,
            Kind::BaselineAdminNetworkPolicy,
            Kind::Pod,
            Kind::Namespace,
        ]
    }
    fn owners(&self, change: &Change, view: &View, out: &mut Vec<String>) {
        mapper::peer_sets(change, view, out)
    }
    fn all(&self, view: &View) -> Vec<String> {
        view.model
            .policy_index
            .peer_sets()
            .map(|(k, _)| k.clone())
            .collect()
    }
    fn rows(&self, key: &str, view: &View, _: &mut Vec<Problem>) -> Option<Vec<DesiredRow>> {
        let used = view.model.policy_index.peer_set(key)?;
        Some(sets::peer_set_rows(key, &used.set, view))
    }
}

/// A node's "host reaches its pods" ACL.
pub struct PolicyHosts;

impl Translator for PolicyHosts {
    fn kind(&self) -> &'static str {
        names::KIND_POLICY_HOST
    }
    fn after(&self) -> &'static [&'static str] {
        &[names::KIND_NODE]
    }
    fn tables(&self) -> &'static [Table] {
        &[Table::Acl]
    }
    fn inputs(&self) -> &'static [Kind] {
        &[
            Kind::Node,
            Kind::NetworkPolicy,
            Kind::AdminNetworkPolicy,
            Kind::BaselineAdminNetworkPolicy,
        ]
    }
    fn owners(&self, change: &Change, view: &View, out: &mut Vec<String>) {
        mapper::hosts(change, view, out)
    }
    fn all(&self, view: &View) -> Vec<String> {
        if !host::any_policy(view) {
            return Vec::new();
        }
        view.decisions.node_subnets.keys().cloned().collect()
    }
    fn rows(&self, key: &str, view: &View, _: &mut Vec<Problem>) -> Option<Vec<DesiredRow>> {
        host::host_rows(key, view)
    }
}

/// The ACL logging meter.
pub struct PolicyMeter;

impl Translator for PolicyMeter {
    fn kind(&self) -> &'static str {
        names::KIND_POLICY_METER
    }
    fn tables(&self) -> &'static [Table] {
        &[Table::Meter, Table::MeterBand]
    }
    fn inputs(&self) -> &'static [Kind] {
        &[
            Kind::Namespace,
            Kind::AdminNetworkPolicy,
            Kind::BaselineAdminNetworkPolicy,
        ]
    }
    fn owners(&self, change: &Change, _: &View, out: &mut Vec<String>) {
        fn meta_ann(
            m: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
        ) -> Option<String> {
            m?.annotations
                .as_ref()?
                .get(annotations::ACL_LOGGING)
                .cloned()
        }
        let moved = match change {
            Change::Namespace { old, new, .. } => {
                let ann = |n: &Option<std::sync::Arc<crate::model::NamespaceInfo>>| {
                    n.as_ref()
                        .and_then(|n| n.annotations.get(annotations::ACL_LOGGING).cloned())
                };
                ann(old) != ann(new)
            }
            Change::AdminNetworkPolicy { old, new, .. } => {
                meta_ann(old.as_ref().map(|p| &p.metadata))
                    != meta_ann(new.as_ref().map(|p| &p.metadata))
            }
            Change::BaselineAdminNetworkPolicy { old, new, .. } => {
                meta_ann(old.as_ref().map(|p| &p.metadata))
                    != meta_ann(new.as_ref().map(|p| &p.metadata))
            }
            _ => false,
        };
        if moved {
            out.push(METER_KEY.to_string());
        }
    }
    fn all(&self, _: &View) -> Vec<String> {
        vec![METER_KEY.to_string()]
    }
    fn rows(&self, key: &str, view: &View, problems: &mut Vec<Problem>) -> Option<Vec<DesiredRow>> {
        host::meter_rows(key, view, problems)
    }
}

/// `external_ids` every policy ACL carries beside its owner's.
pub fn acl_ids(
    policies: &str,
    d: crate::model::policy::Direction,
    rule: Option<usize>,
    action: &str,
) -> BTreeMap<String, String> {
    let mut m = BTreeMap::from([
        (names::POLICY.to_string(), policies.to_string()),
        (names::DIRECTION.to_string(), d.as_str().to_string()),
        (names::ACTION.to_string(), action.to_string()),
    ]);
    if let Some(r) = rule {
        m.insert(names::RULE.to_string(), r.to_string());
    }
    m
}

#[cfg(test)]
mod mapper_tests;
#[cfg(test)]
pub(crate) mod tests;
