//! The rows every cluster has once: the distributed router every node
//! switch hangs off, and the load balancer groups every Service's load
//! balancers hang from (see [`super::service`]), so that a Service costs
//! the same rows however many nodes hold it.

use ovsdb::nb::LogicalRouter;
use switchyard_api::names;

use crate::k8s::Kind;
use crate::model::Change;
use crate::nb::{Col, DesiredRow, Owner, Table};

use super::service::{GROUPS, ROUTER_GROUPS};
use super::{Problem, Translator, View};

pub struct ClusterRows;

impl Translator for ClusterRows {
    fn kind(&self) -> &'static str {
        names::KIND_CLUSTER
    }
    fn tables(&self) -> &'static [Table] {
        &[Table::LogicalRouter, Table::LoadBalancerGroup]
    }
    fn inputs(&self) -> &'static [Kind] {
        &[]
    }
    fn owners(&self, _: &Change, _: &View, _: &mut Vec<String>) {}
    fn all(&self, _: &View) -> Vec<String> {
        vec![names::CLUSTER_ROUTER.to_string()]
    }
    fn rows(&self, _: &str, _: &View, _: &mut Vec<Problem>) -> Option<Vec<DesiredRow>> {
        Some(cluster_rows())
    }
}

/// The cluster owner's rows: the load balancer groups, then the router
/// that holds the cluster-wide one.
pub fn cluster_rows() -> Vec<DesiredRow> {
    let owner = Owner::of(names::KIND_CLUSTER, names::CLUSTER_ROUTER);
    // Load_Balancer_Group has no external_ids: the groups are found by
    // name, and this owner's rows are never deleted.
    let mut rows: Vec<DesiredRow> = GROUPS
        .iter()
        .map(|g| DesiredRow::named(Table::LoadBalancerGroup, *g, &owner))
        .collect();
    rows.push(
        DesiredRow::named(Table::LogicalRouter, names::CLUSTER_ROUTER, &owner).col(
            LogicalRouter::LOAD_BALANCER_GROUP,
            Col::refs(Table::LoadBalancerGroup, ROUTER_GROUPS),
        ),
    );
    rows
}
