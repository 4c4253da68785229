//! One live JSON-RPC 1.0 session with an OVSDB server.
//!
//! `jsonrpsee` and friends speak JSON-RPC 2.0, which ovsdb-server rejects by
//! dropping the connection, and cannot answer the server's own `echo`
//! requests; hence this small layer. A reader task owns the inbound half:
//! it answers `echo`, routes replies to the pending-call table, applies
//! monitor replies and notifications to their replicas in arrival order, and
//! runs the inactivity probe. A writer task owns the outbound half. When
//! either fails, every pending call fails with [`Error::Disconnected`] and
//! the client's reconnect loop takes over.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::locks::lock;
use crate::replica::{MonitorKind, ReplicaShared};
use crate::transport::BoxStream;

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// A request's parameters: a JSON tree, or text already written.
enum Params {
    Json(Json),
    Text(String),
}

struct Pending {
    method: String,
    reply: oneshot::Sender<Result<Json>>,
    /// For monitor requests: the replica the reply is applied to, before
    /// any later notification is.
    monitor: Option<(Arc<ReplicaShared>, MonitorKind)>,
}

pub(crate) struct Connection {
    pub(crate) id: u64,
    pub(crate) remote: String,
    out: mpsc::UnboundedSender<Vec<u8>>,
    pending: Mutex<HashMap<u64, Pending>>,
    next_id: AtomicU64,
    monitors: Mutex<HashMap<String, Arc<ReplicaShared>>>,
    closed: CancellationToken,
    close_reason: Mutex<Option<String>>,
    /// Set when this side closed the connection on purpose ([`Connection::close`]),
    /// as opposed to the connection failing ([`Connection::fail`]).
    closed_on_purpose: AtomicBool,
}

pub(crate) struct Options {
    pub max_message_size: usize,
    pub inactivity_probe: Option<Duration>,
}

impl Connection {
    pub(crate) fn spawn(stream: BoxStream, remote: String, opts: Options) -> Arc<Connection> {
        let (rd, wr) = tokio::io::split(stream);
        let (out, rx) = mpsc::unbounded_channel();
        let conn = Arc::new(Connection {
            id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed),
            remote,
            out,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            monitors: Mutex::new(HashMap::new()),
            closed: CancellationToken::new(),
            close_reason: Mutex::new(None),
            closed_on_purpose: AtomicBool::new(false),
        });
        tokio::spawn(writer(wr, rx, conn.clone()));
        tokio::spawn(reader(rd, conn.clone(), opts));
        conn
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    pub(crate) async fn closed(&self) {
        self.closed.cancelled().await
    }

    /// Closes the connection on purpose (the client is shutting down, or
    /// the server is not one it may use).
    pub(crate) fn close(&self, reason: &str) {
        self.close_as(reason, true);
    }

    /// Closes the connection because it failed (read or write error,
    /// protocol violation, unanswered probe).
    pub(crate) fn fail(&self, reason: &str) {
        self.close_as(reason, false);
    }

    fn close_as(&self, reason: &str, on_purpose: bool) {
        let mut r = lock(&self.close_reason);
        if r.is_none() {
            *r = Some(reason.to_string());
            self.closed_on_purpose.store(on_purpose, Ordering::Relaxed);
        }
        drop(r);
        self.closed.cancel();
    }

    /// Whether the first close was deliberate (see [`Connection::close`]).
    pub(crate) fn closed_on_purpose(&self) -> bool {
        self.closed_on_purpose.load(Ordering::Relaxed)
    }

    pub(crate) fn close_reason(&self) -> Option<String> {
        lock(&self.close_reason).clone()
    }

    /// Sends a request and waits for its reply.
    pub(crate) async fn call(&self, method: &str, params: Json) -> Result<Json> {
        self.call_inner(method, Params::Json(params), None).await
    }

    /// [`Connection::call`] with parameters already written as JSON text
    /// (a large transaction is not built as a JSON tree at all).
    pub(crate) async fn call_text(&self, method: &str, params: String) -> Result<Json> {
        self.call_inner(method, Params::Text(params), None).await
    }

    /// Starts a monitor; its reply is applied to `replica` by the reader
    /// (and not handed back: the call returns null on success).
    pub(crate) async fn call_monitor(
        &self,
        method: &str,
        params: Json,
        replica: Arc<ReplicaShared>,
        kind: MonitorKind,
    ) -> Result<Json> {
        lock(&self.monitors).insert(replica.id.clone(), replica.clone());
        let r = self
            .call_inner(method, Params::Json(params), Some((replica.clone(), kind)))
            .await;
        if r.is_err() {
            lock(&self.monitors).remove(&replica.id);
        }
        r
    }

    pub(crate) fn forget_monitor(&self, id: &str) {
        lock(&self.monitors).remove(id);
    }

    async fn call_inner(
        &self,
        method: &str,
        params: Params,
        monitor: Option<(Arc<ReplicaShared>, MonitorKind)>,
    ) -> Result<Json> {
        let (tx, rx) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = match params {
            Params::Json(params) => {
                serde_json::to_vec(&json!({"id": id, "method": method, "params": params}))
                    .map_err(|e| Error::protocol(format!("encoding {method}: {e}")))?
            }
            Params::Text(params) => {
                let method = Json::from(method).to_string();
                let mut b = Vec::with_capacity(params.len() + method.len() + 48);
                b.extend_from_slice(
                    format!("{{\"id\":{id},\"method\":{method},\"params\":").as_bytes(),
                );
                b.extend_from_slice(params.as_bytes());
                b.push(b'}');
                b
            }
        };
        {
            let mut pending = lock(&self.pending);
            if self.is_closed() {
                return Err(Error::Disconnected);
            }
            pending.insert(
                id,
                Pending {
                    method: method.to_string(),
                    reply: tx,
                    monitor,
                },
            );
        }
        if self.out.send(bytes).is_err() {
            lock(&self.pending).remove(&id);
            return Err(Error::Disconnected);
        }
        rx.await.unwrap_or(Err(Error::Disconnected))
    }

    fn send_raw(&self, msg: &Json) {
        if let Ok(bytes) = serde_json::to_vec(msg) {
            let _ = self.out.send(bytes);
        }
    }

    fn fail_all(&self) {
        let drained: Vec<Pending> = lock(&self.pending).drain().map(|(_, p)| p).collect();
        for p in drained {
            let _ = p.reply.send(Err(Error::Disconnected));
        }
        lock(&self.monitors).clear();
    }

    /// Handles one inbound message. An error closes the connection. The
    /// message is taken apart, not copied: a monitor reply or update can be
    /// the whole database.
    fn handle(&self, msg: Json) -> Result<()> {
        let Json::Object(mut obj) = msg else {
            return Err(Error::protocol("message is not a JSON object"));
        };
        if let Some(method) = obj.remove("method") {
            let Json::String(method) = method else {
                return Err(Error::protocol("method is not a string"));
            };
            let id = obj.remove("id").unwrap_or(Json::Null);
            let params = match obj.remove("params") {
                Some(Json::Array(a)) => a,
                _ => Vec::new(),
            };
            return self.handle_request(&method, id, params);
        }
        let id = obj
            .get("id")
            .ok_or_else(|| Error::protocol("message has neither method nor id"))?;
        let Some(id) = id.as_u64() else {
            // Not one of ours (we only send integer ids): a confused or
            // hostile server. Dropping it keeps the session usable.
            warn!(remote = %self.remote, %id, "reply with an id this client never sent; ignored");
            return Ok(());
        };
        let Some(p) = lock(&self.pending).remove(&id) else {
            warn!(remote = %self.remote, id, "reply to no pending request; ignored");
            return Ok(());
        };
        let error = obj.get("error").filter(|e| !e.is_null());
        let outcome = match error {
            Some(e) => Err(Error::Rpc {
                method: p.method.clone(),
                error: rpc_error_text(e),
            }),
            None => {
                let result = obj.remove("result").unwrap_or(Json::Null);
                match &p.monitor {
                    // The replica holds the state now; the caller gets null.
                    Some((replica, kind)) => match replica.apply_monitor_reply(*kind, result) {
                        Ok(()) => Ok(Json::Null),
                        Err(e) => {
                            let _ = p.reply.send(Err(Error::protocol(e.to_string())));
                            return Err(e);
                        }
                    },
                    None => Ok(result),
                }
            }
        };
        let _ = p.reply.send(outcome);
        Ok(())
    }

    fn handle_request(&self, method: &str, id: Json, params: Vec<Json>) -> Result<()> {
        match method {
            "echo" => {
                self.send_raw(&json!({"id": id, "result": params, "error": null}));
                Ok(())
            }
            "update2" | "update3" => {
                let mon_id = params
                    .first()
                    .map(monitor_id_text)
                    .ok_or_else(|| Error::protocol(format!("{method} without a monitor id")))?;
                let replica = lock(&self.monitors).get(&mon_id).cloned();
                match replica {
                    Some(r) => r.apply_notification(method, params),
                    None => {
                        debug!(remote = %self.remote, monitor = %mon_id, "update for an unknown monitor; ignored");
                        Ok(())
                    }
                }
            }
            "locked" | "stolen" | "update" => Ok(()),
            other => {
                if !id.is_null() {
                    self.send_raw(&json!({"id": id, "result": null, "error": "unknown method"}));
                }
                debug!(remote = %self.remote, method = other, "unknown request from server");
                Ok(())
            }
        }
    }
}

fn monitor_id_text(j: &Json) -> String {
    match j {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn rpc_error_text(e: &Json) -> String {
    match e {
        Json::String(s) => s.clone(),
        Json::Object(o) => {
            let err = o.get("error").and_then(Json::as_str).unwrap_or("error");
            match o.get("details").and_then(Json::as_str) {
                Some(d) => format!("{err}: {d}"),
                None => err.to_string(),
            }
        }
        other => other.to_string(),
    }
}

async fn writer(
    mut wr: WriteHalf<BoxStream>,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    conn: Arc<Connection>,
) {
    loop {
        tokio::select! {
            _ = conn.closed.cancelled() => break,
            msg = rx.recv() => {
                let Some(msg) = msg else { break };
                if let Err(e) = wr.write_all(&msg).await {
                    conn.fail(&format!("write failed: {e}"));
                    break;
                }
            }
        }
    }
    let _ = wr.shutdown().await;
}

async fn reader(mut rd: ReadHalf<BoxStream>, conn: Arc<Connection>, opts: Options) {
    let mut framer = crate::framing::Framer::new(opts.max_message_size);
    let mut last_rx = Instant::now();
    let probe = opts.inactivity_probe;
    let tick = probe.map(|p| p / 2).unwrap_or(Duration::from_secs(3600));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probe_sent = false;
    let reason = loop {
        tokio::select! {
            // A close from this side wins over what the socket says next
            // (the server answers our own shutdown with EOF).
            biased;
            _ = conn.closed.cancelled() => break None,
            _ = ticker.tick() => {
                if let Some(p) = probe {
                    let idle = last_rx.elapsed();
                    if idle >= p * 2 {
                        break Some(format!("no message for {idle:?}: inactivity probe unanswered"));
                    }
                    if idle >= p && !probe_sent {
                        probe_sent = true;
                        let c = conn.clone();
                        tokio::spawn(async move { let _ = c.call("echo", json!([])).await; });
                    }
                }
            }
            n = rd.read_buf(framer.buffer()) => {
                match n {
                    Ok(0) => break Some("connection closed by the server".to_string()),
                    Err(e) => break Some(format!("read failed: {e}")),
                    Ok(_) => {
                        last_rx = Instant::now();
                        probe_sent = false;
                        let mut failure = None;
                        loop {
                            match framer.next_message() {
                                Ok(Some(msg)) => {
                                    if let Err(e) = conn.handle(msg) {
                                        failure = Some(e.to_string());
                                        break;
                                    }
                                }
                                Ok(None) => break,
                                Err(e) => {
                                    failure = Some(e.to_string());
                                    break;
                                }
                            }
                        }
                        if failure.is_some() {
                            break failure;
                        }
                    }
                }
            }
        }
    };
    match reason {
        // Closed by this side while the read was already done: the EOF
        // is the server's answer to our own close, not a failure.
        Some(r) if conn.is_closed() => {
            debug!(remote = %conn.remote, reason = %r, "read after close");
        }
        Some(r) => {
            warn!(remote = %conn.remote, reason = %r, "OVSDB connection failed");
            conn.fail(&r);
        }
        None => {}
    }
    conn.fail_all();
}
