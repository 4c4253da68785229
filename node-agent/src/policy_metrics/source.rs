//! The I/O of the counters: NB `ACL` and SB `Logical_Flow` replicas, and
//! OpenFlow flow statistics of the integration bridge. One task owns it
//! all; collections happen on its timer and on scrapes' requests.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use openflow::{FlowStats, FlowStatsRequest};
use ovsdb::{Condition, MonitorSpec, Replica, Value};
use switchyard_api::names;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::aggregate::{acl_series, uuid_prefix, Accumulator, LogicalFlow, Mapping, TableOffsets};
use super::{Config, PolicyCounters, FRESH};
use crate::bridge_conn::BridgeConn;

/// The ACL stages' names in `external_ids:stage-name` (OVN 23.03; the
/// `_eval` forms are later releases' names for the same stages).
const ACL_STAGES: [&str; 6] = [
    "ls_in_acl",
    "ls_in_acl_after_lb",
    "ls_out_acl",
    "ls_in_acl_eval",
    "ls_in_acl_after_lb_eval",
    "ls_out_acl_eval",
];

/// The owner kinds of policy ACLs.
const POLICY_KINDS: [&str; 4] = [
    names::KIND_NETWORK_POLICY,
    names::KIND_POLICY_PODS,
    names::KIND_ADMIN_NETWORK_POLICY,
    names::KIND_BASELINE_ADMIN_NETWORK_POLICY,
];

/// While some pipeline's table offset is unknown, all of br-int is dumped
/// at most this often.
const FULL_DUMP_EVERY: Duration = Duration::from_secs(30);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `monitor_cond` clauses are ORed: rows whose `external_ids` hold any of
/// these pairs.
fn any_id(key: &str, values: &[&str]) -> Vec<Condition> {
    values
        .iter()
        .map(|v| Condition::includes("external_ids", Value::map([(key, *v)])))
        .collect()
}

async fn monitor(
    remote: &str,
    tls: Option<&ovsdb::TlsConfig>,
    spec: MonitorSpec,
) -> Result<Replica, ovsdb::Error> {
    let mut cfg = ovsdb::ClientConfig::new(remote)?.connect_timeout(CONNECT_TIMEOUT);
    if let Some(tls) = tls {
        cfg = cfg.tls(tls.clone());
    }
    let client = ovsdb::Client::connect(cfg).await?;
    client.monitor(spec).await
}

struct Collector {
    cfg: Config,
    counters: PolicyCounters,
    nb: Option<Replica>,
    sb: Option<Replica>,
    switch: BridgeConn,
    acc: Accumulator,
    offsets: TableOffsets,
    last_full: Option<Instant>,
    last_collect: Option<Instant>,
    last_error: Option<String>,
}

impl Collector {
    async fn replicas(&mut self) -> Result<(Replica, Replica), String> {
        if self.nb.is_none() {
            let spec = MonitorSpec::new("OVN_Northbound")
                .table("ACL", Some(vec!["external_ids".into()]))
                .condition("ACL", any_id(names::OWNER_KIND, &POLICY_KINDS));
            let r = monitor(&self.cfg.nb_remote, self.cfg.tls.as_ref(), spec)
                .await
                .map_err(|e| format!("northbound {}: {e}", self.cfg.nb_remote))?;
            self.nb = Some(r);
        }
        if self.sb.is_none() {
            let spec = MonitorSpec::new("OVN_Southbound")
                .table(
                    "Logical_Flow",
                    Some(vec![
                        "pipeline".into(),
                        "table_id".into(),
                        "external_ids".into(),
                    ]),
                )
                .condition("Logical_Flow", any_id("stage-name", &ACL_STAGES));
            let r = monitor(&self.cfg.sb_remote, self.cfg.tls.as_ref(), spec)
                .await
                .map_err(|e| format!("southbound {}: {e}", self.cfg.sb_remote))?;
            self.sb = Some(r);
        }
        match (&self.nb, &self.sb) {
            (Some(nb), Some(sb)) => Ok((nb.clone(), sb.clone())),
            _ => Err("no replicas".into()),
        }
    }

    async fn collect(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let (nb, sb) = self.replicas().await?;
        let mapping = mapping(&nb, &sb);
        let of = self.switch.get().await?;
        let dump = |req: FlowStatsRequest| {
            let of = of.clone();
            async move {
                of.dump_flows(req)
                    .await
                    .map_err(|e| format!("flow statistics: {e}"))
            }
        };
        let flows: Vec<FlowStats> = match self.offsets.tables(&mapping) {
            Some(tables) => {
                let mut flows = Vec::new();
                for t in tables {
                    flows.extend(dump(FlowStatsRequest::table(t)).await?);
                }
                flows
            }
            None if self
                .last_full
                .is_none_or(|t| t.elapsed() >= FULL_DUMP_EVERY) =>
            {
                let all = dump(FlowStatsRequest::all()).await?;
                self.offsets.learn(&all, &mapping);
                // A switch with none of the ACL stages' flows yet (the
                // agent starts before ovn-controller programs br-int) is
                // cheap to ask again: only a dump that found some holds
                // the next one back.
                let found = all.iter().any(|f| mapping.stage_of(f.cookie).is_some());
                if let Some(tables) = self.offsets.tables(&mapping) {
                    info!(
                        ?tables,
                        flows = all.len(),
                        "found the ACL stages' OpenFlow tables; dumping only those from now on"
                    );
                }
                self.last_full = found.then(Instant::now);
                debug!(flows = all.len(), offsets = ?self.offsets, "dumped all of the integration bridge");
                all
            }
            // Offsets unknown and a full dump was done lately: wait.
            None => return Ok(()),
        };
        self.acc.ingest(&flows, &mapping);
        debug!(flows = flows.len(), took = ?started.elapsed(), "per-policy counters collected");
        self.last_collect = Some(Instant::now());
        self.publish();
        Ok(())
    }

    fn publish(&self) {
        self.counters.publish(self.acc.totals().clone());
    }
}

/// The databases' rows as lookups.
fn mapping(nb: &Replica, sb: &Replica) -> Mapping {
    let acls: Vec<(u32, Vec<_>)> = nb.with(|db| {
        db.table("ACL")
            .iter()
            .map(|(uuid, row)| {
                let ids: BTreeMap<String, String> = row
                    .get("external_ids")
                    .and_then(Value::as_map)
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| {
                                Some((k.as_str()?.to_string(), v.as_str()?.to_string()))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (uuid_prefix(uuid), acl_series(&ids))
            })
            .collect()
    });
    let flows: Vec<LogicalFlow> = sb.with(|db| {
        db.table("Logical_Flow")
            .iter()
            .filter_map(|(uuid, row)| {
                Some(LogicalFlow {
                    cookie: uuid_prefix(uuid),
                    pipeline: row.str("pipeline")?.to_string(),
                    table_id: u8::try_from(row.get("table_id")?.as_i64()?).ok()?,
                    hint: row
                        .map_get("external_ids", "stage-hint")
                        .and_then(|h| u32::from_str_radix(h, 16).ok()),
                })
            })
            .collect()
    });
    Mapping::new(flows, acls)
}

/// The collecting task: until the agent ends.
pub async fn run(
    cfg: Config,
    counters: PolicyCounters,
    mut requests: mpsc::Receiver<oneshot::Sender<()>>,
) {
    info!(nb = %cfg.nb_remote, sb = %cfg.sb_remote, bridge = %cfg.bridge, "collecting per-policy counters");
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut c = Collector {
        switch: BridgeConn::new(&cfg.ovs_rundir, &cfg.bridge),
        cfg,
        counters,
        nb: None,
        sb: None,
        acc: Accumulator::default(),
        offsets: TableOffsets::default(),
        last_full: None,
        last_collect: None,
        last_error: None,
    };
    loop {
        let waiting = tokio::select! {
            _ = tick.tick() => None,
            r = requests.recv() => match r {
                Some(done) => Some(done),
                None => return,
            },
        };
        let stale = c.last_collect.is_none_or(|t| t.elapsed() >= FRESH);
        if waiting.is_none() || stale {
            match c.collect().await {
                Ok(()) => {
                    if c.last_error.take().is_some() {
                        info!(flows = c.acc.flows(), "per-policy counters collected again");
                    }
                }
                Err(e) => {
                    if c.last_error.as_ref() != Some(&e) {
                        warn!(error = %e, "cannot collect per-policy counters; retrying");
                    }
                    c.last_error = Some(e);
                }
            }
        }
        if let Some(done) = waiting {
            let _ = done.send(());
        }
    }
}
