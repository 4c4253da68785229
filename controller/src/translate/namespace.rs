//! A namespace's address sets: the addresses of its pods, per family.
//!
//! NetworkPolicy peers chosen by namespace alone match these sets, and
//! they are the engine's proof of atomic commits: a new pod's port and its
//! address in its namespace's set are written in one transaction.

use ovsdb::nb::AddressSet;
use switchyard_api::names;

use crate::k8s::Kind;
use crate::model::{split_key, Change};
use crate::nb::{Col, DesiredRow, Owner, Table};

use super::{Problem, Translator, View};

pub struct Namespaces;

impl Translator for Namespaces {
    fn kind(&self) -> &'static str {
        names::KIND_NAMESPACE
    }
    fn tables(&self) -> &'static [Table] {
        &[Table::AddressSet]
    }
    fn inputs(&self) -> &'static [Kind] {
        &[Kind::Namespace, Kind::Pod]
    }
    fn owners(&self, change: &Change, _: &View, out: &mut Vec<String>) {
        match change {
            Change::Namespace { name, .. } => out.push(name.clone()),
            Change::PodAddresses { key } => out.push(split_key(key).0.to_string()),
            _ => {}
        }
    }
    fn all(&self, view: &View) -> Vec<String> {
        view.model.namespaces.keys().cloned().collect()
    }
    fn rows(&self, key: &str, view: &View, _: &mut Vec<Problem>) -> Option<Vec<DesiredRow>> {
        view.model.namespaces.get(key)?;
        let owner = Owner::of(names::KIND_NAMESPACE, key);
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for pod in view.model.pods_in(key) {
            if let Some(a) = view.decisions.pod_addresses.get(pod) {
                for ip in a.addrs() {
                    if ip.is_ipv4() {
                        v4.push(ip.to_string());
                    } else {
                        v6.push(ip.to_string());
                    }
                }
            }
        }
        let set = |v6: bool, addrs: Vec<String>| {
            DesiredRow::named(
                Table::AddressSet,
                names::namespace_address_set(key, v6),
                &owner,
            )
            .col(AddressSet::ADDRESSES, Col::set(addrs))
        };
        Some(vec![set(false, v4), set(true, v6)])
    }
}
