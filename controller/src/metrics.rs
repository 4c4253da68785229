//! Prometheus metrics and the health state behind /healthz and /readyz.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// Every metric the controller exports; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Pod first seen by the controller → its annotation patch accepted.
    pub pod_annotation_latency: Histogram,
    pub nb_transaction_duration: Histogram,
    /// Write operations per NB transaction.
    pub nb_transaction_size: Histogram,
    pub nb_transactions: Counter,
    pub nb_operations: Counter,
    pub nb_transaction_failures: Counter,
    /// Owners waiting for an NB diff.
    pub nb_queue_depth: Gauge,
    /// Pods waiting for an address or an annotation patch.
    pub pod_queue_depth: Gauge,
    pub pod_addresses_used: Gauge,
    pub pod_addresses_capacity: Gauge,
    /// Per cluster CIDR.
    pub node_subnets_used: Family<Labels, Gauge>,
    pub node_subnets_capacity: Family<Labels, Gauge>,
    /// Events the API server accepted.
    pub events: Counter,
    /// Events the API server did not accept.
    pub event_failures: Counter,
    pub leader: Gauge,
    pub health: Health,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("switchyard_controller");
        let m = Metrics {
            registry: Arc::new(Registry::default()),
            pod_annotation_latency: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            nb_transaction_duration: Histogram::new(exponential_buckets(0.0002, 2.0, 18)),
            nb_transaction_size: Histogram::new(exponential_buckets(1.0, 2.0, 18)),
            nb_transactions: Counter::default(),
            nb_operations: Counter::default(),
            nb_transaction_failures: Counter::default(),
            nb_queue_depth: Gauge::default(),
            pod_queue_depth: Gauge::default(),
            pod_addresses_used: Gauge::default(),
            pod_addresses_capacity: Gauge::default(),
            node_subnets_used: Family::default(),
            node_subnets_capacity: Family::default(),
            events: Counter::default(),
            event_failures: Counter::default(),
            leader: Gauge::default(),
            health: Health::default(),
        };
        r.register(
            "pod_annotation_latency_seconds",
            "Pod first seen to its network annotation accepted by the API server",
            m.pod_annotation_latency.clone(),
        );
        r.register(
            "nb_transaction_duration_seconds",
            "Northbound transaction round trip",
            m.nb_transaction_duration.clone(),
        );
        r.register(
            "nb_transaction_operations",
            "Write operations per northbound transaction",
            m.nb_transaction_size.clone(),
        );
        r.register(
            "nb_transactions",
            "Northbound transactions committed",
            m.nb_transactions.clone(),
        );
        r.register(
            "nb_operations",
            "Northbound write operations committed",
            m.nb_operations.clone(),
        );
        r.register(
            "nb_transaction_failures",
            "Northbound transactions that failed",
            m.nb_transaction_failures.clone(),
        );
        r.register(
            "nb_queue_depth",
            "Owners waiting for a northbound diff",
            m.nb_queue_depth.clone(),
        );
        r.register(
            "pod_queue_depth",
            "Pods waiting for an address or annotation",
            m.pod_queue_depth.clone(),
        );
        r.register(
            "pod_addresses_used",
            "Pod addresses allocated",
            m.pod_addresses_used.clone(),
        );
        r.register(
            "pod_addresses_capacity",
            "Pod addresses available in all node subnets",
            m.pod_addresses_capacity.clone(),
        );
        r.register(
            "node_subnets_used",
            "Node subnets allocated per cluster CIDR",
            m.node_subnets_used.clone(),
        );
        r.register(
            "node_subnets_capacity",
            "Node subnets per cluster CIDR",
            m.node_subnets_capacity.clone(),
        );
        r.register(
            "events",
            "Kubernetes Events the API server accepted",
            m.events.clone(),
        );
        r.register(
            "event_failures",
            "Kubernetes Events the API server did not accept",
            m.event_failures.clone(),
        );
        r.register("leader", "1 while this replica leads", m.leader.clone());
        Metrics {
            registry: Arc::new(r),
            ..m
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut s, &self.registry);
        s
    }
}

/// Liveness and readiness flags.
#[derive(Clone, Default)]
pub struct Health {
    inner: Arc<HealthInner>,
}

#[derive(Default)]
struct HealthInner {
    /// The NB connection and watches are up (or this replica is a standby).
    alive: AtomicBool,
    /// This replica leads and NB has converged once since it took over.
    synced: AtomicBool,
    standby: AtomicBool,
}

impl Health {
    pub fn set_alive(&self, v: bool) {
        self.inner.alive.store(v, Ordering::SeqCst);
    }
    pub fn set_synced(&self, v: bool) {
        self.inner.synced.store(v, Ordering::SeqCst);
    }
    pub fn set_standby(&self, v: bool) {
        self.inner.standby.store(v, Ordering::SeqCst);
    }
    pub fn alive(&self) -> bool {
        self.inner.alive.load(Ordering::SeqCst)
    }
    /// A standby is ready (it can take over); a leader once it converged.
    pub fn ready(&self) -> bool {
        self.inner.standby.load(Ordering::SeqCst) || self.inner.synced.load(Ordering::SeqCst)
    }
    pub fn synced(&self) -> bool {
        self.inner.synced.load(Ordering::SeqCst)
    }
}
