//! The I/O of the flushes: Services and EndpointSlices from the
//! [`ServiceSource`], br-int's conntrack zones from the local OVSDB
//! replica, `NXT_CT_FLUSH` over br-int's OpenFlow management socket. One
//! task; see the parent module for when and what.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use openflow::Message;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{ct_zones, flushes, removed, serving, Backend, SCHEDULE};
use crate::bridge_conn::BridgeConn;
use crate::metrics::Metrics;
use crate::ovs::Ovs;
use crate::service_source::ServiceSource;

/// What the flushing task needs besides the Services.
#[derive(Clone, Debug)]
pub struct Config {
    /// The integration bridge (its `external_ids` name the zones; its
    /// `<bridge>.mgmt` socket takes the flushes).
    pub bridge: String,
    /// Where `<bridge>.mgmt` is.
    pub ovs_rundir: PathBuf,
}

/// Flush messages per OpenFlow round trip (one barrier each).
const BATCH: usize = 512;

/// The OpenFlow side: one connection, made when first needed and again
/// after it broke.
pub struct Flusher {
    cfg: Config,
    ovs: Ovs,
    switch: BridgeConn,
}

impl Flusher {
    pub fn new(cfg: Config, ovs: Ovs) -> Self {
        Flusher {
            switch: BridgeConn::new(&cfg.ovs_rundir, &cfg.bridge),
            cfg,
            ovs,
        }
    }

    /// The zones OVN uses on the bridge now.
    pub fn zones(&self) -> BTreeSet<u16> {
        let ids = self
            .ovs
            .bridge(&self.cfg.bridge)
            .map(|b| b.external_ids)
            .unwrap_or_default();
        ct_zones(&ids)
    }

    /// Flushes `backends`' entries in every zone; the number of
    /// `NXT_CT_FLUSH` messages the switch confirmed.
    pub async fn flush(&mut self, backends: &[Backend]) -> Result<usize, String> {
        let zones = self.zones();
        let messages: Vec<Message> = backends
            .iter()
            .flat_map(|b| flushes(b, &zones))
            .map(Message::CtFlush)
            .collect();
        let client = self.switch.get().await?;
        let mut done = 0;
        for chunk in messages.chunks(BATCH) {
            if let Err(e) = client.transact(chunk.to_vec()).await {
                if !client.is_connected() {
                    self.switch.forget();
                }
                return Err(format!("NXT_CT_FLUSH on {}: {e}", self.cfg.bridge));
            }
            done += chunk.len();
        }
        Ok(done)
    }
}

/// Removed backends still to be flushed: when the removal was seen, and
/// which entry of [`SCHEDULE`] comes next.
#[derive(Debug, Default)]
pub struct Pending {
    due: BTreeMap<Backend, (Instant, usize)>,
}

impl Pending {
    /// Starts the schedule of newly removed backends (again, for one
    /// already pending: the new change may not be in br-int yet either).
    pub fn removed(&mut self, backends: impl IntoIterator<Item = Backend>, now: Instant) {
        for b in backends {
            self.due.insert(b, (now, 0));
        }
    }

    /// Forgets backends that serve again.
    pub fn still_serving(&mut self, serving: &BTreeSet<Backend>) {
        self.due.retain(|b, _| !serving.contains(b));
    }

    /// The backends due at `now`, advancing each one's schedule.
    pub fn take_due(&mut self, now: Instant) -> Vec<Backend> {
        let mut out = Vec::new();
        self.due.retain(|b, (start, next)| {
            if *start + SCHEDULE[*next] > now {
                return true;
            }
            out.push(*b);
            *next += 1;
            *next < SCHEDULE.len()
        });
        out
    }

    /// When the next flush is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.due
            .values()
            .map(|(start, next)| *start + SCHEDULE[*next])
            .min()
    }

    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}

/// The flushing task: until the agent ends.
pub async fn run(source: Arc<dyn ServiceSource>, mut flusher: Flusher, metrics: Metrics) {
    info!(bridge = %flusher.cfg.bridge, "flushing conntrack entries of removed UDP/SCTP Service backends");
    let mut changes = source.changes();
    changes.borrow_and_update();
    let mut before: Option<BTreeSet<Backend>> = None;
    let mut pending = Pending::default();
    let mut last_error: Option<String> = None;
    let mut look = true;
    loop {
        if look {
            let snap = source.snapshot().await;
            if snap.errors.is_empty() {
                let now_serving = serving(&snap.services, &snap.slices);
                if let Some(b) = &before {
                    let gone = removed(b, &now_serving);
                    if !gone.is_empty() {
                        info!(backends = ?gone.iter().map(ToString::to_string).collect::<Vec<_>>(),
                            "Service backends removed; flushing their conntrack entries");
                        pending.removed(gone, Instant::now());
                    }
                }
                pending.still_serving(&now_serving);
                before = Some(now_serving);
            } else {
                debug!(errors = ?snap.errors, "Services or EndpointSlices unreadable; not compared");
            }
        }
        let due = pending.take_due(Instant::now());
        if !due.is_empty() {
            match flusher.flush(&due).await {
                Ok(n) => {
                    metrics.count_udp_conntrack_flushes(n);
                    debug!(backends = due.len(), messages = n, "conntrack flushed");
                    if last_error.take().is_some() {
                        info!("conntrack flushes work again");
                    }
                }
                Err(e) => {
                    if last_error.as_ref() != Some(&e) {
                        warn!(error = %e, "cannot flush conntrack entries of removed backends");
                    }
                    last_error = Some(e);
                }
            }
        }
        let recheck = Instant::now() + source.recheck_interval();
        let wake = pending.next_due().map_or(recheck, |d| d.min(recheck));
        tokio::select! {
            r = changes.changed() => {
                if r.is_err() {
                    return;
                }
                changes.borrow_and_update();
                look = true;
            }
            _ = tokio::time::sleep_until(wake) => {
                look = wake >= recheck;
            }
        }
    }
}
