//! Switchyard's node agent: the CNI plugin's server.
//!
//! - [`cli`]: `switchyard-node`'s flags;
//! - [`cni`]: the CNI 1.1.0 protocol as pure data (parsing, results, errors);
//! - [`protocol`]: the shim-to-daemon socket protocol;
//! - [`daemon`]: start-up and the ADD/DEL/CHECK/GC/STATUS handlers;
//! - [`netlink`], [`ethtool`]: kernel interfaces and namespaces;
//! - [`ovs`]: the node's Open vSwitch database;
//! - [`pod_source`]: the Kubernetes boundary (kube-rs, or a directory);
//! - [`mgmt`]: the management port's addressing;
//! - [`metrics`]: Prometheus metrics.
pub mod cli;
pub mod cni;
pub mod daemon;
pub mod error;
pub mod ethtool;
pub mod metrics;
pub mod mgmt;
pub mod naming;
pub mod netlink;
pub mod ovs;
pub mod pod_source;
pub mod protocol;

pub use error::{Error, Result};
