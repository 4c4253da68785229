//! Switchyard's node agent: the CNI plugin's server.
//!
//! - [`cli`]: `switchyard-node`'s flags;
//! - [`cni`]: the CNI 1.1.0 protocol as pure data (parsing, results, errors);
//! - [`protocol`]: the shim-to-daemon socket protocol;
//! - [`daemon`]: start-up and the ADD/DEL/CHECK/GC/STATUS handlers;
//! - [`netlink`], [`ethtool`]: kernel interfaces and namespaces;
//! - [`ovs`]: the node's Open vSwitch database;
//! - [`pod_source`]: the Kubernetes boundary, inbound (kube-rs, or a
//!   directory): pods on this node and the node's subnets;
//! - [`node_publisher`]: the Kubernetes boundary, outbound: annotations on
//!   this node's Node (`switchyard.io/chassis-id`, `switchyard.io/gateway`);
//! - [`gateway`]: the gateway bridge (flows, host addresses, the
//!   `switchyard.io/gateway` annotation);
//! - [`service_source`]: the Kubernetes boundary for Services and
//!   EndpointSlices (kube-rs, or a directory);
//! - [`health`]: the Services' health check ports (`healthCheckNodePort`),
//!   answered as kube-proxy answers them;
//! - [`udp_flush`]: conntrack flushes of removed UDP/SCTP Service
//!   backends, so datagram streams move to the remaining ones;
//! - [`mgmt`]: the management port's addressing;
//! - [`metrics`]: Prometheus metrics;
//! - [`policy_metrics`]: per-policy packet and byte counters from br-int's
//!   flow statistics, joined to policies through OVN's databases.
//!
//! # RBAC
//!
//! What the node agent's ServiceAccount needs (`--pod-source=kube`), for
//! the manifests; nothing else is read or written:
//!
//! | API group | resource | verbs | why |
//! |---|---|---|---|
//! | `""` | pods | list, watch | [`pod_source::KubeSource`]: the reflector over this node's pods (`fieldSelector=spec.nodeName=<node>`), where ADD finds the pod's annotation |
//! | `""` | nodes | get | [`pod_source::KubeSource`]: the node's pod subnets (management port); [`node_publisher::KubePublisher`]: the current annotations |
//! | `""` | nodes | patch | [`node_publisher::KubePublisher`]: one merge patch of `switchyard.io/chassis-id` and `switchyard.io/gateway` on its own Node, only when a value differs |
//! | `""` | services | list, watch | [`service_source::KubeServiceSource`]: every Service, for the health check ports of `externalTrafficPolicy: Local` LoadBalancers and for the UDP/SCTP ports whose removed backends [`udp_flush`] flushes (off with both `--no-health-check-ports` and `--no-udp-conntrack-flush`) |
//! | `discovery.k8s.io` | endpointslices | list, watch | [`service_source::KubeServiceSource`]: every EndpointSlice, to count each such Service's ready endpoints on this node and to see UDP/SCTP backends go |
//!
//! RBAC cannot limit a ServiceAccount to "its own" Node or to the pods of
//! one node; the agent asks only for those, but the grant is cluster-wide
//! (as for kube-proxy and every CNI agent).
pub mod bridge_conn;
pub mod cli;
pub mod cni;
pub mod daemon;
pub mod error;
pub mod ethtool;
pub mod gateway;
pub mod health;
pub mod metrics;
pub mod mgmt;
pub mod naming;
pub mod netlink;
pub mod node_publisher;
pub mod ovs;
pub mod pod_source;
pub mod policy_metrics;
pub mod protocol;
pub mod service_source;
pub mod testhook;
pub mod udp_flush;

pub use error::{Error, Result};
