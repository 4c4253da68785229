//! The rows every cluster has once: the distributed router every node
//! switch hangs off.

use switchyard_api::names;

use crate::k8s::Kind;
use crate::model::Change;
use crate::nb::{DesiredRow, Owner, Table};

use super::{Problem, Translator, View};

pub struct ClusterRows;

impl Translator for ClusterRows {
    fn kind(&self) -> &'static str {
        names::KIND_CLUSTER
    }
    fn tables(&self) -> &'static [Table] {
        &[Table::LogicalRouter]
    }
    fn inputs(&self) -> &'static [Kind] {
        &[]
    }
    fn owners(&self, _: &Change, _: &View, _: &mut Vec<String>) {}
    fn all(&self, _: &View) -> Vec<String> {
        vec![names::CLUSTER_ROUTER.to_string()]
    }
    fn rows(&self, key: &str, _: &View, _: &mut Vec<Problem>) -> Option<Vec<DesiredRow>> {
        let owner = Owner::of(names::KIND_CLUSTER, key);
        Some(vec![DesiredRow::named(
            Table::LogicalRouter,
            names::CLUSTER_ROUTER,
            &owner,
        )])
    }
}
