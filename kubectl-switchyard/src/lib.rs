//! `kubectl switchyard`: the operator's view of Switchyard.
//!
//! - `status`: per node, whether the agent reports (its chassis annotation)
//!   and OVN knows the chassis, how many ports are bound there, the pods'
//!   gateway; the controller's leader (its Lease); the health and leader of
//!   the NB and SB database clusters (each member's `_Server` database).
//! - `trace SRC DST`: the microflow of a new connection built from the
//!   Kubernetes objects, run through OVN's own `ovn-trace` (a debugging
//!   tool, as ovnkube-trace runs it; product code never shells out), and
//!   summarised: the switches and routers it crosses, the load balancer,
//!   the ACLs it meets named by their NetworkPolicy, delivered or dropped.
//!
//! Kubernetes is read through [`cluster::ClusterView`] (kube-rs in the
//! binary, the in-memory API server in tests); OVN through the `ovsdb`
//! crate.

pub mod cluster;
pub mod error;
pub mod flow;
pub mod ovn;
pub mod status;
pub mod summary;
pub mod trace;

pub use error::{Error, Result};
