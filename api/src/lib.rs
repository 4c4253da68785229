//! The contract between Switchyard's cluster controller and its node agents.
//!
//! The two binaries never call each other: the controller writes a pod's
//! network configuration into a Pod annotation and into OVN's northbound
//! database, and the node agent reads the annotation and binds the interface
//! OVN expects. Everything both sides must agree on (annotation keys and
//! their JSON shape, northbound names, `external_ids` ownership keys, how a
//! MAC is derived, which subnet addresses are the router's and the
//! management port's) lives here so it exists once.

pub mod addressing;
pub mod annotations;
pub mod endpoints;
pub mod mac;
pub mod names;

pub use annotations::{NodeGateway, NodeSubnets, PodNetwork, Route};
