//! Switchyard's end-to-end sandbox: real OVN on one machine, nodes and pods
//! as network namespaces.
//!
//! [`Sandbox::up`] starts OVN central (NB, SB, northd), and per node a
//! network namespace with its own ovsdb-server, ovs-vswitchd (userspace
//! datapath), ovn-controller and the real `switchyard-node` daemon, joined
//! by an underlay bridge with Geneve tunnels ([`underlay`]); then the real
//! controller in-process against an in-memory Kubernetes API
//! ([`kube_memory::MemoryCluster`]). Pods are
//! started by the sandbox's [`kubelet`]: a network namespace, then the real
//! `switchyard-cni` binary executed as a runtime executes it, then the
//! container's command inside the namespace.
//!
//! The `switchyard-sandbox` command-line tool wraps the same API (see
//! [`cli`]); tests in `e2e/tests/` use it directly.
//!
//! Binaries: the sandbox executes `switchyard-node` and `switchyard-cni`,
//! found beside its own executable (or in `--bin-dir` /
//! `$SWITCHYARD_BIN_DIR`; see [`util::binaries`]). It never builds them:
//! `./e2e/scripts/demo` and `./e2e/scripts/test-all` do, up front.

pub mod bench;
pub mod central;
pub mod cli;
pub mod controller;
pub mod datapath;
pub mod fault;
pub mod kubectl;
pub mod kubelet;
pub mod load;
pub mod mirror;
pub mod netpol_matrix;
pub mod node;
pub mod objects;
pub mod probe;
pub mod pyprobe;
pub mod sandbox;
pub mod underlay;
pub mod util;

pub use sandbox::{pod_spec, IpFamily, PodSummary, Sandbox, SandboxOptions};
