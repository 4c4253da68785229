//! The client: configuration, the reconnect loop, requests, and monitors
//! that survive reconnects.
//!
//! One background task keeps a connection up: it tries the remotes in turn
//! with exponential back-off, refuses a follower when `leader_only` is set
//! (and drops the connection when the server it is on loses leadership),
//! and re-establishes every live monitor before the connection is handed to
//! callers, so a request never races a replica that is still catching up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::{json, Value as Json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::connection::{Connection, Options};
use crate::error::{Error, Result};
use crate::locks::lock;
use crate::remote::Remote;
use crate::replica::{MonitorKind, MonitorSpec, Replica, ReplicaShared};
use crate::schema::Schema;
use crate::transaction::{Condition, OpResult, Transaction};
use crate::transport::{self, TlsConfig};
use crate::value::{Row, Value};

static NEXT_MONITOR: AtomicU64 = AtomicU64::new(1);

/// How to reach the server and how to behave on the connection.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub remotes: Vec<Remote>,
    pub tls: Option<TlsConfig>,
    /// Use only the leader of a clustered database (writes go there anyway;
    /// reading from the leader gives read-your-writes).
    pub leader_only: bool,
    /// The database whose leadership `leader_only` checks; by default every
    /// clustered database the server holds.
    pub database: Option<String>,
    /// Probe the server after this long without a message; drop the
    /// connection after twice as long. `None` disables the probe.
    pub inactivity_probe: Option<Duration>,
    pub max_message_size: usize,
    pub connect_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl ClientConfig {
    /// Parses a remote or comma-separated list of remotes, as OVS writes them.
    pub fn new(remotes: &str) -> Result<ClientConfig> {
        Ok(ClientConfig {
            remotes: Remote::parse_list(remotes)?,
            tls: None,
            leader_only: false,
            database: None,
            inactivity_probe: Some(Duration::from_secs(5)),
            max_message_size: 256 << 20,
            connect_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(8),
        })
    }

    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    pub fn leader_only(mut self, yes: bool) -> Self {
        self.leader_only = yes;
        self
    }

    pub fn database(mut self, db: impl Into<String>) -> Self {
        self.database = Some(db.into());
        self
    }

    pub fn inactivity_probe(mut self, probe: Duration) -> Self {
        self.inactivity_probe = Some(probe);
        self
    }

    pub fn no_inactivity_probe(mut self) -> Self {
        self.inactivity_probe = None;
        self
    }

    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max.max(min);
        self
    }
}

struct Inner {
    config: ClientConfig,
    current: watch::Sender<Option<Arc<Connection>>>,
    replicas: Mutex<Vec<Weak<ReplicaShared>>>,
    schemas: Mutex<HashMap<String, Arc<Schema>>>,
    last_error: Mutex<Option<String>>,
    shutdown: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(c) = self.current.borrow().as_ref() {
            c.close("client dropped");
        }
    }
}

/// An OVSDB client. Cheap to clone; the connection closes when the last
/// clone (and every replica from it) is dropped.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("remotes", &self.inner.config.remotes)
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl Client {
    /// Starts the client and waits for its first connection, up to the
    /// configured connect timeout.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        let timeout = config.connect_timeout;
        let (current, _) = watch::channel(None);
        let inner = Arc::new(Inner {
            config,
            current,
            replicas: Mutex::new(Vec::new()),
            schemas: Mutex::new(HashMap::new()),
            last_error: Mutex::new(None),
            shutdown: CancellationToken::new(),
        });
        tokio::spawn(supervise(Arc::downgrade(&inner), inner.shutdown.clone()));
        let client = Client { inner };
        client.connection(timeout).await?;
        Ok(client)
    }

    pub fn is_connected(&self) -> bool {
        self.inner
            .current
            .borrow()
            .as_ref()
            .is_some_and(|c| !c.is_closed())
    }

    /// The remote of the current connection.
    pub fn connected_remote(&self) -> Option<String> {
        self.inner
            .current
            .borrow()
            .as_ref()
            .map(|c| c.remote.clone())
    }

    /// Waits until the client is connected, up to `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<()> {
        self.connection(timeout).await.map(|_| ())
    }

    async fn connection(&self, timeout: Duration) -> Result<Arc<Connection>> {
        let mut rx = self.inner.current.subscribe();
        let wait = async {
            loop {
                if let Some(c) = rx.borrow_and_update().as_ref() {
                    if !c.is_closed() {
                        return Ok(c.clone());
                    }
                }
                if rx.changed().await.is_err() {
                    return Err(Error::NotConnected("client shut down".into()));
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err(Error::NotConnected(
                lock(&self.inner.last_error)
                    .clone()
                    .unwrap_or_else(|| "no connection yet".into()),
            )),
        }
    }

    /// A raw JSON-RPC call on the current connection (waiting for one).
    pub async fn call(&self, method: &str, params: Json) -> Result<Json> {
        let conn = self.connection(self.inner.config.connect_timeout).await?;
        conn.call(method, params).await
    }

    /// Runs a transaction. Fails with [`Error::Operation`] naming the first
    /// failed operation; with [`Error::Disconnected`] when the connection
    /// dropped before the reply (the transaction may have committed; it is
    /// not re-sent).
    pub async fn transact(&self, tx: Transaction) -> Result<Vec<OpResult>> {
        if tx.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.connection(self.inner.config.connect_timeout).await?;
        let result = conn.call_text("transact", tx.params_text()).await?;
        tx.parse_result(&result)
    }

    pub async fn list_dbs(&self) -> Result<Vec<String>> {
        let r = self.call("list_dbs", json!([])).await?;
        serde_json::from_value(r).map_err(|e| Error::protocol(format!("list_dbs: {e}")))
    }

    pub async fn get_schema(&self, db: &str) -> Result<Schema> {
        let r = self.call("get_schema", json!([db])).await?;
        Schema::from_json(&r)
    }

    async fn schema(&self, db: &str) -> Result<Arc<Schema>> {
        if let Some(s) = lock(&self.inner.schemas).get(db) {
            return Ok(s.clone());
        }
        let s = Arc::new(self.get_schema(db).await?);
        lock(&self.inner.schemas).insert(db.to_string(), s.clone());
        Ok(s)
    }

    pub async fn echo(&self) -> Result<()> {
        self.call("echo", json!(["ping"])).await.map(|_| ())
    }

    /// Starts a monitor and returns its replica once the initial state is in.
    pub async fn monitor(&self, spec: MonitorSpec) -> Result<Replica> {
        let schema = self.schema(&spec.db).await?;
        let id = format!("sy{}", NEXT_MONITOR.fetch_add(1, Ordering::Relaxed));
        let shared = Arc::new(ReplicaShared::new(id, spec, schema)?);
        lock(&self.inner.replicas).push(Arc::downgrade(&shared));
        let guard = Arc::new(MonitorGuard {
            shared: Arc::downgrade(&shared),
            client: self.clone(),
        });
        loop {
            let conn = self.connection(self.inner.config.connect_timeout).await?;
            match subscribe(&conn, &shared).await {
                Ok(()) => break,
                Err(Error::Disconnected) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(Replica {
            shared,
            _guard: guard,
        })
    }
}

/// Cancels the monitor on the server when the last replica handle goes,
/// and carries condition changes to the current connection.
pub(crate) struct MonitorGuard {
    shared: Weak<ReplicaShared>,
    client: Client,
}

impl std::fmt::Debug for MonitorGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MonitorGuard")
    }
}

impl MonitorGuard {
    pub(crate) async fn change_condition(
        &self,
        shared: &Arc<ReplicaShared>,
        table: &str,
        conditions: &[Condition],
    ) -> Result<()> {
        let conn = self
            .client
            .connection(self.client.inner.config.connect_timeout)
            .await?;
        if *lock(&shared.subscribed_on) != Some(conn.id) {
            // The reconnect loop re-subscribes with the new condition.
            return Ok(());
        }
        let req = json!({table: [{"where": crate::transaction::where_json(conditions)}]});
        conn.call("monitor_cond_change", json!([shared.id, shared.id, req]))
            .await
            .map(|_| ())
    }
}

impl Drop for MonitorGuard {
    fn drop(&mut self) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let conn = self.client.inner.current.borrow().clone();
        if let (Some(conn), Ok(rt)) = (conn, tokio::runtime::Handle::try_current()) {
            conn.forget_monitor(&shared.id);
            let id = shared.id.clone();
            rt.spawn(async move {
                let _ = conn.call("monitor_cancel", json!([id])).await;
            });
        }
    }
}

/// Starts (or restarts) `replica`'s monitor on `conn`, with
/// `monitor_cond_since` and, where the server lacks it, `monitor_cond`.
async fn subscribe(conn: &Arc<Connection>, replica: &Arc<ReplicaShared>) -> Result<()> {
    let _g = replica.subscribing.lock().await;
    if *lock(&replica.subscribed_on) == Some(conn.id) {
        return Ok(());
    }
    let since = conn
        .call_monitor(
            "monitor_cond_since",
            replica.monitor_params(MonitorKind::Since),
            replica.clone(),
            MonitorKind::Since,
        )
        .await;
    match since {
        Ok(_) => {}
        Err(Error::Rpc { error, .. }) if error.contains("unknown method") => {
            conn.call_monitor(
                "monitor_cond",
                replica.monitor_params(MonitorKind::Cond),
                replica.clone(),
                MonitorKind::Cond,
            )
            .await?;
        }
        Err(e) => return Err(e),
    }
    *lock(&replica.subscribed_on) = Some(conn.id);
    Ok(())
}

async fn supervise(inner: Weak<Inner>, shutdown: CancellationToken) {
    let mut next = 0usize;
    let mut failures_in_round = 0usize;
    let mut backoff = Duration::ZERO;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let n = strong.config.remotes.len();
        let remote = strong.config.remotes[next % n].clone();
        next += 1;
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = establish(&strong, &remote) => r,
        };
        match attempt {
            Ok(conn) => {
                info!(remote = %remote, "connected to OVSDB server");
                failures_in_round = 0;
                backoff = Duration::ZERO;
                *lock(&strong.last_error) = None;
                strong.current.send_replace(Some(conn.clone()));
                drop(strong);
                tokio::select! {
                    // Dropping the client cancels `shutdown` before it
                    // closes the connection: both are ready then, and the
                    // shutdown must win.
                    biased;
                    _ = shutdown.cancelled() => {
                        conn.close("client shut down");
                        let reason = conn.close_reason().unwrap_or_default();
                        info!(remote = %remote, %reason, "OVSDB connection closed");
                        return;
                    }
                    _ = conn.closed() => {}
                }
                let reason = conn.close_reason().unwrap_or_default();
                if shutdown.is_cancelled() {
                    info!(remote = %remote, %reason, "OVSDB connection closed");
                    return;
                }
                if conn.closed_on_purpose() {
                    // E.g. the server stopped being the cluster leader.
                    info!(remote = %remote, %reason, "OVSDB connection closed; reconnecting");
                } else {
                    warn!(remote = %remote, %reason, "lost OVSDB connection; reconnecting");
                }
                if let Some(s) = inner.upgrade() {
                    s.current.send_replace(None);
                    *lock(&s.last_error) = Some(format!("{remote}: {reason}"));
                }
                // Try the next remote first: the one we lost may be the one that died.
            }
            Err(e) => {
                warn!(remote = %remote, error = %e, "cannot use OVSDB server");
                *lock(&strong.last_error) = Some(format!("{remote}: {e}"));
                failures_in_round += 1;
                if failures_in_round >= n {
                    failures_in_round = 0;
                    backoff = (backoff * 2)
                        .max(strong.config.backoff_min)
                        .min(strong.config.backoff_max);
                    drop(strong);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        }
    }
}

/// Connects to one remote, checks leadership, and re-establishes monitors.
async fn establish(inner: &Arc<Inner>, remote: &Remote) -> Result<Arc<Connection>> {
    let stream = transport::connect(
        remote,
        inner.config.tls.as_ref(),
        inner.config.connect_timeout,
    )
    .await?;
    let conn = Connection::spawn(
        stream,
        remote.to_string(),
        Options {
            max_message_size: inner.config.max_message_size,
            inactivity_probe: inner.config.inactivity_probe,
        },
    );
    let r: Result<()> = async {
        if inner.config.leader_only {
            check_leader(inner, &conn).await?;
        }
        let replicas: Vec<Arc<ReplicaShared>> = {
            let mut list = lock(&inner.replicas);
            list.retain(|w| w.strong_count() > 0);
            list.iter().filter_map(Weak::upgrade).collect()
        };
        for r in replicas {
            subscribe(&conn, &r).await?;
        }
        Ok(())
    }
    .await;
    match r {
        Ok(()) => Ok(conn),
        Err(e) => {
            conn.close(&e.to_string());
            Err(e)
        }
    }
}

/// Refuses a server that is not the leader of the database(s) in question,
/// and watches `_Server` so the connection is dropped if leadership moves.
async fn check_leader(inner: &Arc<Inner>, conn: &Arc<Connection>) -> Result<()> {
    let mut tx = Transaction::new("_Server");
    tx.select("Database", vec![], None);
    let result = conn.call_text("transact", tx.params_text()).await?;
    let rows = tx.parse_result(&result)?;
    let rows = rows.first().map(OpResult::rows).unwrap_or(&[]);
    let wanted = inner.config.database.clone();
    if !rows.iter().all(|r| is_usable(r, wanted.as_deref())) {
        return Err(Error::NotConnected(format!(
            "{} is not the cluster leader",
            conn.remote
        )));
    }
    // Watch leadership from now on. The monitor lives on this connection
    // only; a new connection checks afresh.
    let schema = Arc::new(Schema::from_json(
        &conn.call("get_schema", json!(["_Server"])).await?,
    )?);
    let spec = MonitorSpec::new("_Server").table(
        "Database",
        Some(vec![
            "name".into(),
            "model".into(),
            "connected".into(),
            "leader".into(),
        ]),
    );
    let shared = Arc::new(ReplicaShared::new("sy-server".into(), spec, schema)?);
    conn.call_monitor(
        "monitor_cond",
        shared.monitor_params(MonitorKind::Cond),
        shared.clone(),
        MonitorKind::Cond,
    )
    .await?;
    let mut version = shared.version_receiver();
    let watched = conn.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = watched.closed() => return,
                changed = version.changed() => {
                    if changed.is_err() { return; }
                    let ok = shared.with_db(|db| {
                        db.table("Database").iter().all(|(_, r)| is_usable(r, wanted.as_deref()))
                    });
                    if !ok {
                        watched.close("server is no longer the cluster leader");
                        return;
                    }
                }
            }
        }
    });
    Ok(())
}

fn is_usable(row: &Row, wanted: Option<&str>) -> bool {
    if row.str("model") != Some("clustered") {
        return true;
    }
    if let Some(w) = wanted {
        if row.str("name") != Some(w) {
            return true;
        }
    }
    row.get("leader").and_then(Value::as_bool) == Some(true)
        && row.get("connected").and_then(Value::as_bool) == Some(true)
}
