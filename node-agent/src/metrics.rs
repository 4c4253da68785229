//! Prometheus metrics, served on `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::policy_metrics::PolicyCounters;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// ADD, DEL, CHECK, STATUS, GC.
    pub command: String,
    /// `ok`, or the CNI error code.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HealthErrorLabels {
    /// `listen` (a port could not be opened), `service` (a Service asks
    /// for a port no listener can have), `source` (Services or
    /// EndpointSlices could not be read).
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// One of [`ADD_PHASES`].
    pub phase: String,
}

/// The phases of a successful ADD. In sequence: waiting for the pod's
/// annotation (`annotation`), creating the veth pair with its peer in the
/// pod's namespace (`veth`), attaching (`attach`), building the result
/// (`result`). `attach` runs two things side by side: configuring the
/// pod's end in its namespace (`pod_side`), and the OVS transaction adding
/// the port (`ovs`) followed by waiting for ovn-controller's
/// `ovn-installed` (`ovn_installed`).
pub const ADD_PHASES: [&str; 7] = [
    "annotation",
    "veth",
    "attach",
    "pod_side",
    "ovs",
    "ovn_installed",
    "result",
];

fn latency_histogram() -> Histogram {
    // 1 ms .. ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Phases are often well under a millisecond: 50 µs .. ~100 s.
fn fine_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.00005, 2.0, 21))
}

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    requests: Family<RequestLabels, Histogram, fn() -> Histogram>,
    ovn_installed_wait: Histogram,
    add_phases: Family<PhaseLabels, Histogram, fn() -> Histogram>,
    health_listeners: Gauge,
    health_errors: Family<HealthErrorLabels, Counter>,
    /// `switchyard_networkpolicy_*` and
    /// `switchyard_udp_conntrack_flushes_total`: named by the issues that
    /// asked for them, without the `switchyard_node_` prefix, so in a
    /// registry of their own.
    policy_registry: Arc<Registry>,
    policy: PolicyCounters,
    udp_flushes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchyard_node");
        let requests = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "cni_request_duration_seconds",
            "CNI request latency in the daemon, by command and result",
            requests.clone(),
        );
        let ovn_installed_wait = latency_histogram();
        registry.register(
            "ovn_installed_wait_seconds",
            "Time ADD spent waiting for ovn-controller to set ovn-installed",
            ovn_installed_wait.clone(),
        );
        let add_phases = Family::<PhaseLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            fine_histogram,
        );
        registry.register(
            "cni_add_phase_seconds",
            "Time a successful ADD spent in each phase (annotation, veth, attach = pod_side alongside ovs + ovn_installed, result)",
            add_phases.clone(),
        );
        let health_listeners = Gauge::default();
        registry.register(
            "health_check_listeners",
            "Service health check ports (healthCheckNodePort) this agent listens on",
            health_listeners.clone(),
        );
        let health_errors = Family::<HealthErrorLabels, Counter>::default();
        registry.register(
            "health_check_errors",
            "Health check failures by reason: listen (a port could not be opened; retried), service (an invalid healthCheckNodePort), source (Services or EndpointSlices unreadable)",
            health_errors.clone(),
        );
        let policy = PolicyCounters::default();
        let mut policy_registry = Registry::default();
        policy_registry.register_collector(Box::new(policy.clone()));
        let udp_flushes = Counter::default();
        policy_registry.register(
            "switchyard_udp_conntrack_flushes",
            "NXT_CT_FLUSH requests (one per conntrack zone and removed UDP/SCTP Service backend, repeated on a schedule) that br-int confirmed",
            udp_flushes.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            requests,
            ovn_installed_wait,
            add_phases,
            health_listeners,
            health_errors,
            policy_registry: Arc::new(policy_registry),
            policy,
            udp_flushes,
        }
    }

    pub fn observe_request(&self, command: &str, result: &str, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                command: command.to_string(),
                result: result.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn observe_ovn_installed_wait(&self, took: Duration) {
        self.ovn_installed_wait.observe(took.as_secs_f64());
    }

    pub fn observe_add_phase(&self, phase: &str, took: Duration) {
        self.add_phases
            .get_or_create(&PhaseLabels {
                phase: phase.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn set_health_check_listeners(&self, n: usize) {
        self.health_listeners
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn health_check_error(&self, reason: &str) {
        self.health_errors
            .get_or_create(&HealthErrorLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Conntrack flushes of removed backends ([`crate::udp_flush`]).
    pub fn count_udp_conntrack_flushes(&self, n: usize) {
        self.udp_flushes
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// The per-policy counters (see [`crate::policy_metrics`]).
    pub fn policy_counters(&self) -> &PolicyCounters {
        &self.policy
    }

    pub fn encode(&self) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry)
            .and_then(|()| encode_registry(&mut out, &self.policy_registry))
            .and_then(|()| encode_eof(&mut out));
        out
    }

    /// Serves `/metrics` until the process ends.
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<()> {
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let m = self.clone();
                async move {
                    m.policy.refresh().await;
                    (
                        [(
                            "content-type",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(addr).await?;
        axum::serve(listener, app).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_request_latency() {
        let m = Metrics::new();
        m.observe_request("ADD", "ok", Duration::from_millis(20));
        m.observe_ovn_installed_wait(Duration::from_millis(5));
        m.observe_add_phase("veth", Duration::from_millis(2));
        m.set_health_check_listeners(3);
        m.health_check_error("listen");
        m.count_udp_conntrack_flushes(4);
        let text = m.encode();
        assert!(
            text.contains("switchyard_udp_conntrack_flushes_total 4"),
            "{text}"
        );
        assert!(
            text.contains("switchyard_node_cni_add_phase_seconds_count{phase=\"veth\"} 1"),
            "{text}"
        );
        assert!(text.contains("switchyard_node_cni_request_duration_seconds_count{command=\"ADD\",result=\"ok\"} 1"), "{text}");
        assert!(
            text.contains("switchyard_node_ovn_installed_wait_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("switchyard_node_health_check_listeners 3"),
            "{text}"
        );
        assert!(
            text.contains("switchyard_node_health_check_errors_total{reason=\"listen\"} 1"),
            "{text}"
        );
    }
}
