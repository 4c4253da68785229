//! The health check listeners: one TCP listener per Service on its
//! `healthCheckNodePort`, on every node address (one `[::]` socket that
//! also takes IPv4, or `0.0.0.0` where the kernel has no IPv6), answering
//! every request as kube-proxy's service health server does: `200` when
//! the node has local endpoints, `503` when it has none, with the JSON
//! `{"service":{"namespace":..,"name":..},"localEndpoints":N,
//! "serviceProxyHealthy":true}`.
//!
//! The HTTP is written by hand rather than with axum (which serves
//! `/metrics`): each connection gets exactly one answer that depends on
//! nothing in the request (kube-proxy's handler looks at neither method
//! nor path), so all that is needed is to read a request head with a size
//! and time limit and write one response; a router per listener with its
//! own graceful-shutdown plumbing would be more code than that. Bounds: a
//! request head of at most [`MAX_REQUEST_HEAD`] bytes read within
//! [`REQUEST_TIMEOUT`], one request per connection, at most
//! [`MAX_CONNECTIONS`] connections answered at once (more are closed at
//! once), so a client cannot make the agent hold memory or tasks.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::{Desired, ServiceKey};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::service_source::ServiceSource;

/// The largest request head read; a longer one is answered 431.
pub const MAX_REQUEST_HEAD: usize = 4096;
/// How long a client has to send its request head, and then to take the
/// response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections answered at once, over all listeners.
pub const MAX_CONNECTIONS: usize = 64;

/// Where listeners bind.
#[derive(Clone, Copy, Debug)]
pub enum Bind {
    /// Every node address, IPv4 and IPv6 (production).
    All,
    /// One address (tests).
    Ip(IpAddr),
}

struct Listener {
    port: u16,
    /// The port actually bound (differs from `port` only for port 0).
    bound: u16,
    local: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

/// The open listeners, kept in line with [`HealthServer::sync`].
pub struct HealthServer {
    bind: Bind,
    metrics: Metrics,
    open: HashMap<ServiceKey, Listener>,
    connections: Arc<Semaphore>,
}

impl HealthServer {
    pub fn new(bind: Bind, metrics: Metrics) -> Self {
        HealthServer {
            bind,
            metrics,
            open: HashMap::new(),
            connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        }
    }

    /// Makes the listeners match `want`: closes those of Services gone or
    /// moved to another port (before opening any, so a port handed from
    /// one Service to another is free), opens the missing ones, and sets
    /// every local endpoint count. A port that cannot be opened is
    /// reported and skipped; the caller retries it on its next sync.
    pub async fn sync(&mut self, want: &BTreeMap<ServiceKey, Desired>) -> Vec<Error> {
        let stale: Vec<ServiceKey> = self
            .open
            .iter()
            .filter(|(k, l)| want.get(*k).is_none_or(|d| d.port != l.port))
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            if let Some(l) = self.open.remove(&key) {
                l.task.abort();
                // Returns once the task (and its socket) is dropped.
                let _ = l.task.await;
                tracing::info!(service = %key, port = l.port, "closed health check port");
            }
        }
        let mut errors = Vec::new();
        for (key, d) in want {
            if let Some(l) = self.open.get(key) {
                l.local.store(d.local, Ordering::Relaxed);
                continue;
            }
            match self.open_listener(key, d) {
                Ok(l) => {
                    tracing::info!(service = %key, port = d.port, local = d.local, "serving health check port");
                    self.open.insert(key.clone(), l);
                }
                Err(e) => errors.push(e),
            }
        }
        self.metrics.set_health_check_listeners(self.open.len());
        errors
    }

    /// The port a Service's listener is bound to, when open.
    pub fn bound_port(&self, key: &ServiceKey) -> Option<u16> {
        self.open.get(key).map(|l| l.bound)
    }

    fn open_listener(&self, key: &ServiceKey, d: &Desired) -> Result<Listener> {
        let listener = listen(self.bind, d.port)
            .map_err(|e| Error::io(format!("Service {key}: health check port {}", d.port), e))?;
        let bound = listener
            .local_addr()
            .map_err(|e| Error::io("health check listener address", e))?
            .port();
        let local = Arc::new(AtomicUsize::new(d.local));
        let task = tokio::spawn(accept_loop(
            listener,
            Arc::new(key.clone()),
            local.clone(),
            self.connections.clone(),
        ));
        Ok(Listener {
            port: d.port,
            bound,
            local,
            task,
        })
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        for l in self.open.values() {
            l.task.abort();
        }
    }
}

/// A listening socket with `SO_REUSEADDR` (a restarted agent binds again
/// while old connections linger in TIME_WAIT).
fn listen(bind: Bind, port: u16) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let open = |addr: SocketAddr| -> std::io::Result<Socket> {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        if addr.is_ipv6() {
            // Both families on one socket, whatever net.ipv6.bindv6only says.
            s.set_only_v6(false)?;
        }
        Ok(s)
    };
    let (socket, addr) = match bind {
        Bind::Ip(ip) => {
            let addr = SocketAddr::new(ip, port);
            (open(addr)?, addr)
        }
        Bind::All => {
            let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
            match open(v6) {
                Ok(s) => (s, v6),
                Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
                    (open(v4)?, v4)
                }
                Err(e) => return Err(e),
            }
        }
    };
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    TcpListener::from_std(socket.into())
}

async fn accept_loop(
    listener: TcpListener,
    key: Arc<ServiceKey>,
    local: Arc<AtomicUsize>,
    permits: Arc<Semaphore>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                // Over the limit: closed unanswered.
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    continue;
                };
                let (key, local) = (key.clone(), local.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Err(e) = answer(stream, &key, &local).await {
                        tracing::debug!(service = %key, error = %e, "health check connection");
                    }
                });
            }
            Err(e) => {
                // Out of descriptors and the like: back off, then go on.
                tracing::warn!(service = %key, error = %e, "health check accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(
    mut stream: TcpStream,
    key: &ServiceKey,
    local: &AtomicUsize,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; MAX_REQUEST_HEAD];
    let mut len = 0;
    let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
        loop {
            if let Some(end) = head_end(&buf[..len]) {
                return Ok::<_, std::io::Error>(Some(end));
            }
            if len == buf.len() {
                return Ok(None);
            }
            let n = stream.read(&mut buf[len..]).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            len += n;
        }
    })
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?;
    let reply = match read? {
        None => plain(431, "Request Header Fields Too Large"),
        Some(end) => match request_method(&buf[..end]) {
            None => plain(400, "Bad Request"),
            Some(method) => response(key, local.load(Ordering::Relaxed), method == "HEAD"),
        },
    };
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        stream.write_all(&reply).await?;
        stream.shutdown().await
    })
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// Where the request head ends (after its blank line), if it is complete.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The method of a request head whose request line is well formed
/// (`METHOD SP target SP HTTP/1.x`).
pub fn request_method(head: &[u8]) -> Option<&str> {
    let line = head.split(|b| *b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let ok = parts.next().is_none()
        && !method.is_empty()
        && method.bytes().all(|b| b.is_ascii_uppercase())
        && !target.is_empty()
        && version.starts_with("HTTP/1.");
    ok.then_some(method)
}

#[derive(Serialize)]
struct Body<'a> {
    service: Name<'a>,
    #[serde(rename = "localEndpoints")]
    local_endpoints: usize,
    #[serde(rename = "serviceProxyHealthy")]
    service_proxy_healthy: bool,
}

#[derive(Serialize)]
struct Name<'a> {
    namespace: &'a str,
    name: &'a str,
}

/// The health check's answer: 200 with local endpoints, 503 without; the
/// body is left out for HEAD.
pub fn response(key: &ServiceKey, local: usize, head: bool) -> Vec<u8> {
    let body = serde_json::to_string(&Body {
        service: Name {
            namespace: &key.namespace,
            name: &key.name,
        },
        local_endpoints: local,
        service_proxy_healthy: true,
    })
    .unwrap_or_default();
    let status = if local > 0 {
        "200 OK"
    } else {
        "503 Service Unavailable"
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

fn plain(code: u16, reason: &str) -> Vec<u8> {
    format!("HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

/// How soon a port that could not be opened is tried again.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// Keeps the listeners in line with `source` for node `node` until the
/// runtime stops: reads a snapshot whenever the source reports a change
/// (and every [`ServiceSource::recheck_interval`]), then syncs. Each
/// distinct failure is logged and counted once, when first seen; ports
/// that could not be opened are retried every second.
pub async fn run(source: Arc<dyn ServiceSource>, node: String, bind: Bind, metrics: Metrics) {
    let mut server = HealthServer::new(bind, metrics.clone());
    let mut changes = source.changes();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    loop {
        changes.borrow_and_update();
        let snap = source.snapshot().await;
        let (want, invalid) = super::desired(&snap.services, &snap.slices, &node);
        let failed = server.sync(&want).await;
        let retry = !failed.is_empty();
        let now: Vec<(&str, String)> = snap
            .errors
            .into_iter()
            .map(|e| ("source", e))
            .chain(invalid.into_iter().map(|e| ("service", e)))
            .chain(failed.into_iter().map(|e| ("listen", e.to_string())))
            .collect();
        let mut still = BTreeSet::new();
        for (reason, msg) in now {
            if !seen.contains(&msg) {
                tracing::warn!(reason, error = %msg, "health check port problem");
                metrics.health_check_error(reason);
            }
            still.insert(msg);
        }
        seen = still;
        let wait = if retry {
            LISTEN_RETRY
        } else {
            source.recheck_interval()
        };
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    // No more notifications: poll.
                    tokio::time::sleep(wait).await;
                }
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
