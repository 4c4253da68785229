//! Internals exposed to the fuzz targets in `fuzz/` (feature `fuzzing`).
//!
//! Everything a hostile or broken server's bytes reach before the caller
//! sees a result: the stream framer, the replica's handling of monitor
//! replies and `update2`/`update3` notifications, and the parsing of a
//! `transact` result. Not a stable API; nothing else should enable it.

use std::sync::Arc;

use serde_json::Value as Json;
use tokio::sync::broadcast;

pub use crate::framing::Framer;
use crate::replica::{MonitorKind, ReplicaShared};
use crate::{MonitorSpec, OpResult, ReplicaDb, Result, Schema, Transaction};

/// A replica of every table of `schema`, fed by hand instead of by a
/// connection, with a subscriber so change reports are built too.
pub struct ReplicaHarness {
    shared: ReplicaShared,
    changes: broadcast::Receiver<Arc<crate::Update>>,
}

impl ReplicaHarness {
    pub fn new(schema: Schema) -> Result<ReplicaHarness> {
        let mut spec = MonitorSpec::new(schema.name.clone());
        for table in schema.tables.keys() {
            spec = spec.table(table, None);
        }
        let shared = ReplicaShared::new("fuzz".into(), spec, Arc::new(schema))?;
        let changes = shared.updates_for_fuzzing();
        Ok(ReplicaHarness { shared, changes })
    }

    /// The reply to `monitor_cond_since` (`since`) or `monitor_cond`.
    pub fn monitor_reply(&self, since: bool, result: Json) -> Result<()> {
        let kind = if since {
            MonitorKind::Since
        } else {
            MonitorKind::Cond
        };
        self.shared.apply_monitor_reply(kind, result)
    }

    /// An `update2` or `update3` notification's method and parameters.
    pub fn notification(&self, method: &str, params: Vec<Json>) -> Result<()> {
        self.shared.apply_notification(method, params)
    }

    /// Runs `f` on the replicated tables.
    pub fn with<R>(&self, f: impl FnOnce(&ReplicaDb) -> R) -> R {
        self.shared.with_db(f)
    }

    /// Drops the queued change reports, returning how many there were.
    pub fn drain_changes(&mut self) -> usize {
        let mut n = 0;
        while self.changes.try_recv().is_ok() {
            n += 1;
        }
        n
    }
}

/// Parses a `transact` result for a transaction of `ops` operations.
pub fn parse_transact_result(ops: usize, result: &Json) -> Result<Vec<OpResult>> {
    let mut tx = Transaction::new("fuzz");
    for _ in 0..ops {
        tx.comment("fuzz");
    }
    tx.parse_result(result)
}

/// [`Value::from_json`](crate::Value::from_json) taking the JSON by value,
/// as the replica decodes.
pub fn value_from_json_owned(j: Json) -> Result<crate::Value> {
    crate::Value::from_json_owned(j)
}

/// [`Row::from_json`](crate::Row::from_json) taking the JSON by value, as
/// the replica decodes.
pub fn row_from_json_owned(j: Json) -> Result<crate::Row> {
    crate::Row::from_json_owned(j)
}
