//! Translators: one per kind of owner, each a pure function from the model
//! (and the allocator's decisions) to one owner's desired northbound rows.
//!
//! [`registry`] lists them all, the way `inc-proc-northd.c` lists northd's
//! engine nodes: for each, the tables it writes, the watched kinds it reads,
//! the owner kinds whose rows its rows need (parents and references, so
//! they are written first), and a mapper from each model change to the
//! owners it touches. Adding a kind of owner is a file here and one line in
//! [`registry`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::OnceLock;

use ipnet::IpNet;

use crate::config::Config;
use crate::k8s::{Kind, ObjectRef};
use crate::model::{Change, Model};
use crate::nb::{DesiredRow, Table};

pub mod anp;
pub mod cluster;
pub mod gateway;
pub mod namespace;
pub mod node;
pub mod pod;
pub mod policy;
pub mod service;

/// A pod's decided addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assigned {
    /// With the node subnet's prefix length, IPv4 first.
    pub ips: Vec<IpNet>,
    pub mac: String,
}

impl Assigned {
    pub fn addrs(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ips.iter().map(|n| n.addr())
    }
}

/// What the allocator decided: the input translators read beside the
/// model.
#[derive(Clone, Debug, Default)]
pub struct Decisions {
    /// Node name -> its pod subnets (IPv4 first), once decided.
    pub node_subnets: HashMap<String, Vec<IpNet>>,
    /// Pod key -> its addresses, for pods that should have a port.
    pub pod_addresses: HashMap<String, Assigned>,
}

/// Everything a translator reads.
pub struct View<'a> {
    pub model: &'a Model,
    pub decisions: &'a Decisions,
    pub config: &'a Config,
}

/// Something about an object that its rows cannot express: reported as a
/// Warning Event on the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub object: ObjectRef,
    pub reason: &'static str,
    pub note: String,
}

/// One kind of owner.
pub trait Translator: Send + Sync {
    /// The owner kind, written into the rows' `external_ids`.
    fn kind(&self) -> &'static str;
    /// Owner kinds whose rows this kind's rows need (a parent to hang from,
    /// a row to reference): written before this kind's.
    fn after(&self) -> &'static [&'static str] {
        &[]
    }
    /// The tables this kind writes.
    fn tables(&self) -> &'static [Table];
    /// The watched kinds this kind reads.
    fn inputs(&self) -> &'static [Kind];
    /// The owners (keys) a change touches.
    fn owners(&self, change: &Change, view: &View, out: &mut Vec<String>);
    /// Every owner that should have rows now.
    fn all(&self, view: &View) -> Vec<String>;
    /// One owner's rows; `None` when it should have none.
    fn rows(&self, key: &str, view: &View, problems: &mut Vec<Problem>) -> Option<Vec<DesiredRow>>;
}

/// Every translator. The order here does not matter: [`rank`] orders
/// kinds by their declared [`Translator::after`].
pub fn registry() -> &'static [&'static dyn Translator] {
    &[
        &pod::Pods,
        &namespace::Namespaces,
        &node::Nodes,
        &cluster::ClusterRows,
        &gateway::JoinRows,
        &gateway::Gateways,
        &service::Services,
        &service::NodeServices,
        &policy::NetworkPolicies,
        &policy::PolicyPods,
        &policy::PolicyPeers,
        &policy::PolicyHosts,
        &policy::PolicyMeter,
        &anp::AdminPolicies,
        &anp::BaselinePolicy,
    ]
}

/// The kinds the engine watches: every kind the model stores (the
/// allocator reads Nodes and Pods whatever the translators read).
pub fn watched_kinds() -> Vec<Kind> {
    Kind::ALL.to_vec()
}

/// A kind's parents-first rank and its `'static` name; `None` for a kind
/// the registry does not list.
pub fn rank(kind: &str) -> Option<(u8, &'static str)> {
    static RANKS: OnceLock<Vec<(&'static str, u8)>> = OnceLock::new();
    let ranks = RANKS.get_or_init(|| ranks(registry()));
    ranks
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(k, r)| (*r, *k))
}

/// Ranks by longest chain of `after` dependencies; panics on a cycle,
/// which is a bug in the registry.
fn ranks(reg: &[&dyn Translator]) -> Vec<(&'static str, u8)> {
    fn depth(t: &dyn Translator, reg: &[&dyn Translator], seen: &mut Vec<&'static str>) -> u8 {
        assert!(
            !seen.contains(&t.kind()),
            "translator dependency cycle through {seen:?}"
        );
        seen.push(t.kind());
        let d = t
            .after()
            .iter()
            .filter_map(|k| reg.iter().find(|r| r.kind() == *k))
            .map(|p| depth(*p, reg, seen) + 1)
            .max()
            .unwrap_or(0);
        seen.pop();
        d
    }
    reg.iter()
        .map(|t| (t.kind(), depth(*t, reg, &mut Vec::new())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_follow_declared_dependencies_not_listing_order() {
        // The registry lists pods first; they hang from node switches,
        // which hang from the cluster router.
        let (pod, _) = rank("Pod").unwrap();
        let (node, _) = rank("Node").unwrap();
        let (cluster, _) = rank("Cluster").unwrap();
        assert!(cluster < node && node < pod, "{cluster} {node} {pod}");
        assert!(rank("Nonsense").is_none());
    }

    #[test]
    fn every_translator_has_a_distinct_kind() {
        let mut kinds: Vec<_> = registry().iter().map(|t| t.kind()).collect();
        kinds.sort();
        let n = kinds.len();
        kinds.dedup();
        assert_eq!(kinds.len(), n);
    }
}
