//! A local replica of monitored tables, kept current by `update2`/`update3`
//! notifications, with secondary indexes and a stream of changes.
//!
//! Updates are applied on the connection's reader task, in the order the
//! server sent them, before the reply that started the monitor is handed to
//! the caller; so a consumer never sees an update before the state it
//! applies to. After a reconnect the replica resumes with
//! `monitor_cond_since`; when the server cannot resume, the fresh state is
//! diffed against the old one and consumers get exactly the differences,
//! marked `resync`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::{json, Map, Value as Json};
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::locks::{lock, read, write};
use crate::schema::{ColumnType, Schema};
use crate::transaction::{where_json, Condition};
use crate::value::{Atom, Row, Value};

/// What to monitor: tables, their columns and conditions, and the
/// secondary indexes to keep.
#[derive(Clone, Debug, Default)]
pub struct MonitorSpec {
    pub(crate) db: String,
    pub(crate) tables: BTreeMap<String, TableSpec>,
    pub(crate) external_id_indexes: Vec<(String, String)>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct TableSpec {
    columns: Option<Vec<String>>,
    conditions: Option<Vec<Condition>>,
}

impl MonitorSpec {
    pub fn new(db: impl Into<String>) -> MonitorSpec {
        MonitorSpec {
            db: db.into(),
            ..Default::default()
        }
    }

    /// Monitors `table`, all columns when `columns` is `None`.
    pub fn table(mut self, table: &str, columns: Option<Vec<String>>) -> MonitorSpec {
        self.tables.entry(table.to_string()).or_default().columns = columns;
        self
    }

    /// Only rows matching `conditions` are replicated: any one of them
    /// (ovsdb-server ORs a table's `where` clauses; the node agent's
    /// policy counters rely on it).
    pub fn condition(mut self, table: &str, conditions: Vec<Condition>) -> MonitorSpec {
        self.tables.entry(table.to_string()).or_default().conditions = Some(conditions);
        self
    }

    /// Keeps an index of `table` by `external_ids:key`.
    pub fn index_external_id(mut self, table: &str, key: &str) -> MonitorSpec {
        self.external_id_indexes
            .push((table.to_string(), key.to_string()));
        self
    }

    pub fn database(&self) -> &str {
        &self.db
    }

    pub(crate) fn requests(&self, conditions: &BTreeMap<String, Vec<Condition>>) -> Json {
        let mut m = Map::new();
        for (table, spec) in &self.tables {
            let mut req = Map::new();
            if let Some(cols) = &spec.columns {
                req.insert("columns".into(), json!(cols));
            }
            if let Some(conds) = conditions.get(table) {
                req.insert("where".into(), where_json(conds));
            }
            m.insert(table.clone(), json!([Json::Object(req)]));
        }
        Json::Object(m)
    }
}

/// One row's change. `old` is absent for an insert, `new` for a delete.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub table: String,
    pub uuid: Uuid,
    pub old: Option<Row>,
    pub new: Option<Row>,
}

/// The changes of one server update (usually one transaction).
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    pub changes: Vec<Change>,
    /// The replica was rebuilt from a full copy after a reconnect.
    pub resync: bool,
}

/// The rows of one table plus its indexes.
#[derive(Clone, Debug, Default)]
pub struct TableData {
    rows: HashMap<Uuid, Row>,
    by_name: HashMap<String, UuidSet>,
    by_external_id: HashMap<String, HashMap<String, UuidSet>>,
}

/// The rows under one index key: nearly always one, so that one is kept
/// inline (a `BTreeSet` of one allocates a whole node).
#[derive(Clone, Debug)]
enum UuidSet {
    One(Uuid),
    Many(BTreeSet<Uuid>),
}

impl Default for UuidSet {
    fn default() -> Self {
        UuidSet::Many(BTreeSet::new())
    }
}

impl UuidSet {
    fn insert(&mut self, u: Uuid) {
        match self {
            UuidSet::One(x) if *x == u => {}
            UuidSet::One(x) => *self = UuidSet::Many(BTreeSet::from([*x, u])),
            UuidSet::Many(s) if s.is_empty() => *self = UuidSet::One(u),
            UuidSet::Many(s) => {
                s.insert(u);
            }
        }
    }

    fn remove(&mut self, u: &Uuid) {
        match self {
            UuidSet::One(x) if x == u => *self = UuidSet::default(),
            UuidSet::One(_) => {}
            UuidSet::Many(s) => {
                s.remove(u);
            }
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, UuidSet::Many(s) if s.is_empty())
    }

    /// In ascending order.
    fn iter(&self) -> impl Iterator<Item = &Uuid> {
        let (one, many) = match self {
            UuidSet::One(u) => (Some(u), None),
            UuidSet::Many(s) => (None, Some(s.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

impl TableData {
    fn with_indexes(keys: &[String]) -> TableData {
        let mut t = TableData::default();
        for k in keys {
            t.by_external_id.insert(k.clone(), HashMap::new());
        }
        t
    }

    pub fn get(&self, uuid: &Uuid) -> Option<&Row> {
        self.rows.get(uuid)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Uuid, &Row)> {
        self.rows.iter()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// A row whose `name` column is `name` (the lowest UUID when several are).
    pub fn by_name(&self, name: &str) -> Option<(Uuid, &Row)> {
        let u = *self.by_name.get(name)?.iter().next()?;
        self.rows.get(&u).map(|r| (u, r))
    }

    /// Every row whose `name` column is `name`.
    pub fn all_by_name(&self, name: &str) -> Vec<Uuid> {
        self.by_name
            .get(name)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Rows with `external_ids:key = value`; `key` must have been indexed
    /// in the [`MonitorSpec`], else this scans.
    pub fn by_external_id(&self, key: &str, value: &str) -> Vec<Uuid> {
        match self.by_external_id.get(key) {
            Some(idx) => idx
                .get(value)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default(),
            None => {
                let mut v: Vec<Uuid> = self
                    .rows
                    .iter()
                    .filter(|(_, r)| r.map_get("external_ids", key) == Some(value))
                    .map(|(u, _)| *u)
                    .collect();
                v.sort();
                v
            }
        }
    }

    /// Inserts or replaces a row; returns the row it replaced.
    fn insert(&mut self, uuid: Uuid, row: Row) -> Option<Row> {
        let old = self.remove(&uuid);
        if let Some(n) = row.str("name") {
            self.by_name.entry(n.to_string()).or_default().insert(uuid);
        }
        for (key, idx) in self.by_external_id.iter_mut() {
            if let Some(v) = row.map_get("external_ids", key) {
                idx.entry(v.to_string()).or_default().insert(uuid);
            }
        }
        self.rows.insert(uuid, row);
        old
    }

    fn remove(&mut self, uuid: &Uuid) -> Option<Row> {
        let row = self.rows.remove(uuid)?;
        if let Some(n) = row.str("name") {
            if let Some(s) = self.by_name.get_mut(n) {
                s.remove(uuid);
                if s.is_empty() {
                    self.by_name.remove(n);
                }
            }
        }
        for (key, idx) in self.by_external_id.iter_mut() {
            if let Some(v) = row.map_get("external_ids", key) {
                if let Some(s) = idx.get_mut(v) {
                    s.remove(uuid);
                    if s.is_empty() {
                        idx.remove(v);
                    }
                }
            }
        }
        Some(row)
    }
}

/// The replicated tables.
#[derive(Debug, Default)]
pub struct ReplicaDb {
    tables: BTreeMap<String, TableData>,
    empty: TableData,
}

impl ReplicaDb {
    /// A table's rows; empty when the table is not monitored.
    pub fn table(&self, name: &str) -> &TableData {
        self.tables.get(name).unwrap_or(&self.empty)
    }
}

/// How the monitor was started on the current connection, which decides
/// the shape of its reply and notifications.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MonitorKind {
    /// `monitor_cond_since`: reply `[found, last-txn-id, updates2]`, notifications `update3`.
    Since,
    /// `monitor_cond`: reply `updates2` (a full copy), notifications `update2`.
    Cond,
}

/// State shared between the replica handles and the connection that feeds it.
#[derive(Debug)]
pub(crate) struct ReplicaShared {
    pub(crate) id: String,
    pub(crate) spec: MonitorSpec,
    schema: Arc<Schema>,
    db: RwLock<ReplicaDb>,
    pub(crate) conditions: Mutex<BTreeMap<String, Vec<Condition>>>,
    last_txn_id: Mutex<Option<Uuid>>,
    updates: broadcast::Sender<Arc<Update>>,
    version: watch::Sender<u64>,
    /// Id of the connection the monitor is established on, if any.
    pub(crate) subscribed_on: Mutex<Option<u64>>,
    /// Serialises subscription attempts from the caller and the reconnect loop.
    pub(crate) subscribing: tokio::sync::Mutex<()>,
}

impl ReplicaShared {
    pub(crate) fn new(id: String, spec: MonitorSpec, schema: Arc<Schema>) -> Result<ReplicaShared> {
        let mut tables = BTreeMap::new();
        let mut conditions = BTreeMap::new();
        for (name, t) in &spec.tables {
            if schema.table(name).is_none() {
                return Err(Error::Schema(format!(
                    "database {} has no table {name}",
                    spec.db
                )));
            }
            let keys: Vec<String> = spec
                .external_id_indexes
                .iter()
                .filter(|(tab, _)| tab == name)
                .map(|(_, k)| k.clone())
                .collect();
            tables.insert(name.clone(), TableData::with_indexes(&keys));
            if let Some(c) = &t.conditions {
                conditions.insert(name.clone(), c.clone());
            }
        }
        let (updates, _) = broadcast::channel(4096);
        let (version, _) = watch::channel(0);
        Ok(ReplicaShared {
            id,
            spec,
            schema,
            db: RwLock::new(ReplicaDb {
                tables,
                empty: TableData::default(),
            }),
            conditions: Mutex::new(conditions),
            last_txn_id: Mutex::new(None),
            updates,
            version,
            subscribed_on: Mutex::new(None),
            subscribing: tokio::sync::Mutex::new(()),
        })
    }

    pub(crate) fn last_txn_id(&self) -> Option<Uuid> {
        *lock(&self.last_txn_id)
    }

    fn set_last_txn_id(&self, j: &Json) {
        if let Some(u) = j.as_str().and_then(|s| Uuid::parse_str(s).ok()) {
            if !u.is_nil() {
                *lock(&self.last_txn_id) = Some(u);
            }
        }
    }

    pub(crate) fn monitor_params(&self, kind: MonitorKind) -> Json {
        let requests = self.spec.requests(&lock(&self.conditions));
        match kind {
            MonitorKind::Since => {
                let last = self.last_txn_id().unwrap_or(Uuid::nil()).to_string();
                json!([self.spec.db, self.id, requests, last])
            }
            MonitorKind::Cond => json!([self.spec.db, self.id, requests]),
        }
    }

    /// Applies the reply to `monitor_cond_since` or `monitor_cond`. Takes
    /// the reply by value: a full copy of a large database is freed row by
    /// row as it is decoded instead of being held twice.
    pub(crate) fn apply_monitor_reply(&self, kind: MonitorKind, result: Json) -> Result<()> {
        match kind {
            MonitorKind::Since => {
                let mut arr = match result {
                    Json::Array(a) if a.len() == 3 => a,
                    _ => {
                        return Err(Error::protocol(
                            "monitor_cond_since reply is not [found, id, updates]",
                        ))
                    }
                };
                let found = arr[0]
                    .as_bool()
                    .ok_or_else(|| Error::protocol("monitor_cond_since: found is not a boolean"))?;
                let had_state = self.last_txn_id().is_some();
                self.set_last_txn_id(&arr[1]);
                let updates = arr.pop().unwrap_or(Json::Null);
                if found && had_state {
                    self.apply_updates2(updates)
                } else {
                    self.replace_all(updates)
                }
            }
            MonitorKind::Cond => self.replace_all(result),
        }
    }

    /// Applies an `update2` or `update3` notification's parameters.
    pub(crate) fn apply_notification(&self, method: &str, params: Vec<Json>) -> Result<()> {
        let mut params = params;
        match (method, params.len()) {
            ("update3", 3) => {
                let updates = params.pop().unwrap_or(Json::Null);
                self.apply_updates2(updates)?;
                self.set_last_txn_id(&params[1]);
                Ok(())
            }
            ("update2", 2) => self.apply_updates2(params.pop().unwrap_or(Json::Null)),
            _ => Err(Error::protocol(format!("malformed {method} notification"))),
        }
    }

    fn column_type(&self, table: &str, column: &str) -> Option<&ColumnType> {
        self.schema.column(table, column).map(|c| &c.kind)
    }

    /// Parses `<table-updates2>` into per-row operations without touching
    /// the replica, so a malformed update changes nothing. The JSON is
    /// consumed as it is decoded.
    fn parse_updates2(&self, j: Json) -> Result<Vec<(String, Uuid, RowOp)>> {
        let Json::Object(tables) = j else {
            return Err(Error::protocol("table-updates is not an object"));
        };
        let mut out = Vec::new();
        for (table, rows) in tables {
            let Json::Object(rows) = rows else {
                return Err(Error::protocol(format!(
                    "updates for {table} are not an object"
                )));
            };
            out.reserve(rows.len());
            for (uuid, upd) in rows {
                let uuid = Uuid::parse_str(&uuid)
                    .map_err(|_| Error::protocol(format!("bad row uuid {uuid:?}")))?;
                let mut upd = match upd {
                    Json::Object(o) if o.len() == 1 => o.into_iter(),
                    _ => return Err(Error::protocol(format!("bad row update for {uuid}"))),
                };
                let op = match upd.next() {
                    Some((k, v)) if k == "initial" || k == "insert" => {
                        RowOp::Insert(Row::from_json_owned(v)?)
                    }
                    Some((k, v)) if k == "modify" => RowOp::Modify(Row::from_json_owned(v)?),
                    Some((k, _)) if k == "delete" => RowOp::Delete,
                    _ => return Err(Error::protocol(format!("bad row update for {uuid}"))),
                };
                out.push((table.clone(), uuid, op));
            }
        }
        Ok(out)
    }

    fn apply_updates2(&self, j: Json) -> Result<()> {
        let ops = self.parse_updates2(j)?;
        // Nobody to tell: no change list (and no row kept for it).
        let report = self.updates.receiver_count() > 0;
        let mut changes = Vec::with_capacity(if report { ops.len() } else { 0 });
        {
            let mut db = write(&self.db);
            for (table, uuid, op) in ops {
                let Some(t) = db.tables.get_mut(&table) else {
                    continue;
                };
                let new = match op {
                    RowOp::Insert(mut row) => {
                        row.set("_uuid", uuid);
                        Some(row)
                    }
                    RowOp::Delete => None,
                    RowOp::Modify(diff) => {
                        let mut row = t
                            .rows
                            .get(&uuid)
                            .cloned()
                            .unwrap_or_else(|| Row::new().with("_uuid", uuid));
                        for (col, d) in diff {
                            let merged = match (row.get(&col), self.column_type(&table, &col)) {
                                (Some(cur), Some(ty)) => apply_diff(cur, d, ty),
                                _ => d,
                            };
                            row.set(col, merged);
                        }
                        Some(row)
                    }
                };
                // Rows share their columns, so keeping both costs nothing.
                let old = match &new {
                    Some(r) => t.insert(uuid, r.clone()),
                    None => t.remove(&uuid),
                };
                if report && (old.is_some() || new.is_some()) {
                    changes.push(Change {
                        table,
                        uuid,
                        old,
                        new,
                    });
                }
            }
        }
        self.publish(changes, false);
        Ok(())
    }

    /// Replaces the whole replica with a full copy and reports the difference.
    fn replace_all(&self, j: Json) -> Result<()> {
        let ops = self.parse_updates2(j)?;
        let mut fresh: BTreeMap<String, HashMap<Uuid, Row>> = BTreeMap::new();
        for (table, uuid, op) in ops {
            if let RowOp::Insert(mut row) = op {
                row.set("_uuid", uuid);
                fresh.entry(table).or_default().insert(uuid, row);
            }
        }
        let report = self.updates.receiver_count() > 0;
        let mut changes = Vec::new();
        let mut change = |c: Change| {
            if report {
                changes.push(c);
            }
        };
        {
            let mut db = write(&self.db);
            for (name, t) in db.tables.iter_mut() {
                let mut new_rows = fresh.remove(name).unwrap_or_default();
                let old_uuids: Vec<Uuid> = t.rows.keys().copied().collect();
                for u in old_uuids {
                    match new_rows.remove(&u) {
                        Some(new) => {
                            if t.rows.get(&u) != Some(&new) {
                                let old = t.insert(u, new.clone());
                                change(Change {
                                    table: name.clone(),
                                    uuid: u,
                                    old,
                                    new: Some(new),
                                });
                            }
                        }
                        None => {
                            let old = t.remove(&u);
                            change(Change {
                                table: name.clone(),
                                uuid: u,
                                old,
                                new: None,
                            });
                        }
                    }
                }
                for (u, new) in new_rows {
                    t.insert(u, new.clone());
                    change(Change {
                        table: name.clone(),
                        uuid: u,
                        old: None,
                        new: Some(new),
                    });
                }
            }
        }
        self.publish(changes, true);
        Ok(())
    }

    fn publish(&self, changes: Vec<Change>, resync: bool) {
        self.version.send_modify(|v| *v += 1);
        if !changes.is_empty() || resync {
            // No receiver is not an error: nobody subscribed yet.
            let _ = self.updates.send(Arc::new(Update { changes, resync }));
        }
    }
}

enum RowOp {
    Insert(Row),
    Modify(Row),
    Delete,
}

/// Applies one column's `modify` diff (RFC 7047 extension used by update2):
/// columns of at most one value (scalars and optional values) are
/// replaced, as ovsdb-server sends their new value rather than a
/// difference (`ovsdb_datum_diff` diffs only types with `max` above 1);
/// set elements toggle; map pairs add, change or remove.
fn apply_diff(current: &Value, diff: Value, ty: &ColumnType) -> Value {
    if ty.max == Some(1) {
        return diff;
    }
    match (current, diff) {
        (Value::Map(cur), Value::Map(d)) => {
            let mut m = cur.clone();
            for (k, v) in d {
                match m.get(&k) {
                    Some(old) if *old == v => {
                        m.remove(&k);
                    }
                    _ => {
                        m.insert(k, v);
                    }
                }
            }
            Value::Map(m)
        }
        (Value::Set(_), Value::Map(d)) if ty.is_map() => Value::Map(d),
        (cur, d) => {
            let mut set: BTreeSet<Atom> = cur.atoms().iter().cloned().collect();
            for a in d.atoms() {
                if !set.remove(a) {
                    set.insert(a.clone());
                }
            }
            if ty.is_map() {
                Value::empty_map()
            } else {
                Value::Set(set.into_iter().collect())
            }
        }
    }
}

/// A handle on a replica. Cheap to clone; the monitor is cancelled when the
/// last handle is dropped.
#[derive(Clone, Debug)]
pub struct Replica {
    pub(crate) shared: Arc<ReplicaShared>,
    pub(crate) _guard: Arc<crate::client::MonitorGuard>,
}

impl Replica {
    /// Runs `f` on a consistent view of the replica. Keep `f` short: the
    /// connection waits for it before applying the next update.
    pub fn with<R>(&self, f: impl FnOnce(&ReplicaDb) -> R) -> R {
        f(&read(&self.shared.db))
    }

    /// A stream of changes from now on. A receiver that falls more than
    /// 4096 updates behind gets `Lagged` and should re-read the replica.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Update>> {
        self.shared.updates.subscribe()
    }

    /// A counter bumped after every applied update; cheap to wait on.
    pub fn version(&self) -> watch::Receiver<u64> {
        self.shared.version.subscribe()
    }

    pub fn last_txn_id(&self) -> Option<Uuid> {
        self.shared.last_txn_id()
    }

    pub fn database(&self) -> &str {
        &self.shared.spec.db
    }

    /// Waits until `pred` holds on the replica, or `timeout` passes.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&ReplicaDb) -> bool,
    ) -> Result<()> {
        let mut version = self.version();
        let fut = async {
            loop {
                if self.with(&mut pred) {
                    return Ok(());
                }
                if version.changed().await.is_err() {
                    return Err(Error::NotConnected("replica closed".into()));
                }
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| Error::Timeout("waiting for the replica to reach a state".into()))?
    }

    /// Changes the monitor's conditions for `table` (`monitor_cond_change`);
    /// rows that stop matching are deleted from the replica, rows that start
    /// matching are inserted, both reported as changes.
    pub async fn set_condition(&self, table: &str, conditions: Vec<Condition>) -> Result<()> {
        lock(&self.shared.conditions).insert(table.to_string(), conditions.clone());
        self._guard
            .change_condition(&self.shared, table, &conditions)
            .await
    }
}

impl ReplicaShared {
    pub(crate) fn version_receiver(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    pub(crate) fn with_db<R>(&self, f: impl FnOnce(&ReplicaDb) -> R) -> R {
        f(&read(&self.db))
    }

    /// A change subscriber for the fuzz harness (`crate::fuzzing`).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn updates_for_fuzzing(&self) -> broadcast::Receiver<Arc<Update>> {
        self.updates.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::BaseType;

    fn ty(min: u64, max: Option<u64>, map: bool) -> ColumnType {
        let b = BaseType::of(crate::schema::AtomicType::String);
        ColumnType {
            key: b.clone(),
            value: map.then_some(b),
            min,
            max,
        }
    }

    #[test]
    fn uuid_sets_keep_order_and_empty_out() {
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let mut s = UuidSet::default();
        assert!(s.is_empty());
        s.insert(c);
        s.insert(c);
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), vec![c]);
        s.insert(a);
        s.insert(b);
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), vec![a, b, c]);
        for u in [b, c, a] {
            assert!(!s.is_empty());
            s.remove(&u);
        }
        assert!(s.is_empty());
        s.insert(b);
        s.remove(&a);
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), vec![b]);
        s.remove(&b);
        assert!(s.is_empty());
    }

    #[test]
    fn diffs_apply_per_column_type() {
        assert_eq!(
            apply_diff(&Value::from("a"), Value::from("b"), &ty(1, Some(1), false)),
            Value::from("b")
        );
        let set = ty(0, None, false);
        assert_eq!(
            apply_diff(&Value::set(["a", "b"]), Value::set(["b", "c"]), &set),
            Value::set(["a", "c"])
        );
        // An optional value arrives as its new value: changed, cleared, set.
        let opt = ty(0, Some(1), false);
        assert_eq!(
            apply_diff(&Value::from("x"), Value::from("y"), &opt),
            Value::from("y")
        );
        assert_eq!(
            apply_diff(&Value::from("x"), Value::empty_set(), &opt),
            Value::empty_set()
        );
        assert_eq!(
            apply_diff(&Value::empty_set(), Value::from("x"), &opt),
            Value::from("x")
        );
        let map = ty(0, None, true);
        assert_eq!(
            apply_diff(
                &Value::map([("a", "1"), ("b", "2"), ("c", "3")]),
                Value::map([("a", "1"), ("b", "9"), ("d", "4")]),
                &map
            ),
            Value::map([("b", "9"), ("c", "3"), ("d", "4")])
        );
    }
}
