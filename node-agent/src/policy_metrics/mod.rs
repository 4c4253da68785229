//! Per-policy packet and byte counters: `switchyard_networkpolicy_packets_total`
//! and `switchyard_networkpolicy_bytes_total`, labelled `kind`, `namespace`,
//! `policy`, `direction`, `rule`, `action`, for what this node's `br-int`
//! judged.
//!
//! # How a packet is attributed
//!
//! The controller writes each policy rule as an OVN ACL whose
//! `external_ids` name the policies, direction, rule and action
//! ([`switchyard_api::names::POLICY`] ...). ovn-northd turns an ACL into
//! logical flows in the ACL stages (`ls_in_acl`, `ls_in_acl_after_lb`,
//! `ls_out_acl`) carrying `external_ids:stage-hint`, the first 32 bits of
//! the ACL row's UUID; ovn-controller installs each logical flow as
//! OpenFlow flows whose cookie is the first 32 bits of the logical flow's
//! UUID. So the agent reads, over the protocols: NB `ACL` (`external_ids`),
//! SB `Logical_Flow` of the ACL stages only (`pipeline`, `table_id`,
//! `external_ids`; a `monitor_cond` on `stage-name`), and OpenFlow flow
//! statistics of `br-int`'s ACL tables; [`aggregate`] joins them.
//!
//! Only ACL tables are dumped: ovn-controller maps a pipeline's logical
//! table N to OpenFlow table offset+N with an offset that changed between
//! OVN releases (23.03 on Debian 12: ingress 8, egress 42, so `ls_in_acl`,
//! `ls_in_acl_after_lb` and `ls_out_acl`, logical tables 8, 17 and 4, are
//! OpenFlow tables 16, 25 and 46; a 2-node sandbox holds ~180 flows there
//! of ~380 on br-int, collected in 2-10 ms), so the offsets are learnt from one dump of all tables
//! (any flow whose cookie is a known ACL-stage logical flow, including the
//! stages' default flows, gives its pipeline's offset), then only the
//! handful of ACL tables is requested.
//!
//! # Which packets count
//!
//! - `deny` (`drop` ACLs): every packet dropped.
//! - `allow` (`allow-related` ACLs): the packets the ACL's own flows see.
//!   With OVN 23.03 those are a new connection's packets in the original
//!   direction and the established connection's later original-direction
//!   packets that the ACL re-checks; replies and related traffic pass on
//!   generic conntrack flows and never count. A UDP datagram from a fresh
//!   source port is one new connection and counts once (as Antrea counts
//!   sessions, these are not a byte-exact traffic meter).
//! - A default deny shared by several policies selecting the same pods
//!   counts into each of them (each one's isolation dropped the packet).
//! - Counters are this node's: sum over nodes for the cluster.
//!
//! # Monotonic across flow replacement
//!
//! ovn-controller may delete and re-add a flow (its counters restart from
//! zero). [`aggregate::Accumulator`] remembers each flow's last counters: a
//! flow whose counters went backwards is a new one and counts in full; a
//! flow gone from the dump is forgotten, and counts in full if it comes
//! back. An OpenFlow add over an identical flow keeps its counters (OVS
//! carries them over) and is just the same flow. Packets a flow counted
//! between the last collection and its removal are lost, which is why
//! collection is periodic rather than only at scrape time.
//!
//! # When
//!
//! Periodically ([`Config::interval`], 10 s by default), and at scrape time
//! when the last collection is older than [`FRESH`]: scrapes see live
//! counters, while the switch is asked at most once per [`FRESH`] however
//! many scrapers there are, and one dump costs a few tables' flows, not
//! the whole bridge. Series follow the ACLs: a deleted policy's series
//! disappear (the Prometheus convention for deleted objects).
//!
//! Without `--nb-remote` (or without `--sb-remote`) the counters are off
//! and the agent says so once at start-up.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;
use tokio::sync::{mpsc, oneshot};

pub mod aggregate;
pub mod source;
#[cfg(test)]
mod tests;

pub use aggregate::{SeriesKey, Totals};

/// A collection younger than this serves a scrape as is.
pub const FRESH: Duration = Duration::from_secs(1);

/// How long a scrape waits for a fresh collection before serving the
/// last one.
const SCRAPE_WAIT: Duration = Duration::from_secs(3);

/// What the counters need to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// OVN northbound database (the ACLs).
    pub nb_remote: String,
    /// OVN southbound database (the logical flows).
    pub sb_remote: String,
    /// Where `<bridge>.mgmt` is (the OpenFlow socket).
    pub ovs_rundir: PathBuf,
    /// The integration bridge.
    pub bridge: String,
    /// Time between collections.
    pub interval: Duration,
    /// For `ssl:` remotes.
    pub tls: Option<ovsdb::TlsConfig>,
}

/// The counters as last collected, shared by the collecting task and the
/// `/metrics` encoder; also the way a scrape asks for a fresh collection.
#[derive(Clone, Debug, Default)]
pub struct PolicyCounters {
    totals: Arc<Mutex<BTreeMap<SeriesKey, Totals>>>,
    refresh: Arc<Mutex<Option<mpsc::Sender<oneshot::Sender<()>>>>>,
}

impl PolicyCounters {
    /// Replaces the published totals (the collecting task, and tests).
    pub fn publish(&self, totals: BTreeMap<SeriesKey, Totals>) {
        if let Ok(mut t) = self.totals.lock() {
            *t = totals;
        }
    }

    pub fn snapshot(&self) -> BTreeMap<SeriesKey, Totals> {
        self.totals.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Asks the collecting task (if any) for a collection no older than
    /// [`FRESH`]; returns when it is published, or after [`SCRAPE_WAIT`].
    pub async fn refresh(&self) {
        let tx = self.refresh.lock().ok().and_then(|t| t.clone());
        let Some(tx) = tx else { return };
        let (done, wait) = oneshot::channel();
        // A full queue means collections are already asked for: wait
        // for none of them, serve what there is.
        if tx.try_send(done).is_ok() {
            let _ = tokio::time::timeout(SCRAPE_WAIT, wait).await;
        }
    }

    /// Starts the collecting task.
    pub fn start(&self, cfg: Config) {
        let (tx, rx) = mpsc::channel(16);
        if let Ok(mut r) = self.refresh.lock() {
            *r = Some(tx);
        }
        tokio::spawn(source::run(cfg, self.clone(), rx));
    }
}

/// An exposed counter family: name (before `_total`), help, and which of
/// the totals it shows.
type Family = (&'static str, &'static str, fn(&Totals) -> u64);

impl Collector for PolicyCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let totals = self.snapshot();
        let families: [Family; 2] = [
            (
                "switchyard_networkpolicy_packets",
                "Packets this node's br-int matched on a policy rule's ACL flows (allow: new connections' packets; deny: every dropped packet)",
                |t| t.packets,
            ),
            (
                "switchyard_networkpolicy_bytes",
                "Bytes of the packets counted by switchyard_networkpolicy_packets_total",
                |t| t.bytes,
            ),
        ];
        for (name, help, value) in families {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (key, t) in &totals {
                ConstCounter::new(value(t)).encode(family.encode_family(key)?)?;
            }
        }
        Ok(())
    }
}
