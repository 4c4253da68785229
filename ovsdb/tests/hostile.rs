//! The client against a hostile or broken server: a fake server in the test
//! sends garbage, truncated or oversized messages, replies that do not fit,
//! requests of its own, and closes at odd moments.
//!
//! In every case the call must end with an error within a bound (never
//! hang), nothing may panic, and the client must recover by itself: the
//! fake server serves the client's reconnect attempts, and from the second
//! connection on it behaves, so each test also checks that a later call
//! succeeds.

use std::future::Future;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ovsdb::{Client, ClientConfig, Error, OpResult, Row, Transaction};
use serde_json::{json, Value as Json};
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Every call in these tests must finish within this (generous, for loaded
/// machines) bound; a call still pending after it is a hang.
const BOUND: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Log capture: the reason a connection was dropped is only visible in the
// client's log, so the tests install a subscriber that keeps everything and
// look for the line about their own socket.

static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_log() {
    let buf = LOG.get_or_init(|| Arc::new(Mutex::new(Vec::new()))).clone();
    let _ = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || Capture(buf.clone()))
        .try_init();
}

/// Log lines that mention `needle` (a socket path is unique per test).
fn log_lines(needle: &str) -> String {
    let buf = LOG.get().expect("init_log not called").lock().unwrap();
    String::from_utf8_lossy(&buf)
        .lines()
        .filter(|l| l.contains(needle))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits (bounded) until the client logged that the connection to
/// `server` was closed for a reason containing `reason`.
async fn expect_close_reason(server: &FakeServer, reason: &str) {
    let deadline = Instant::now() + BOUND;
    loop {
        let lines = log_lines(&server.remote);
        if lines
            .lines()
            .any(|l| l.contains("OVSDB connection failed") && l.contains(reason))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no close with reason {reason:?} logged for {}; log:\n{lines}",
            server.remote
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// The fake server.

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One accepted connection, seen from the server side.
struct Peer {
    stream: Box<dyn Io>,
    buf: Vec<u8>,
}

impl Peer {
    /// The next complete JSON message from the client; `None` once the
    /// client closed the connection.
    async fn next(&mut self) -> Option<Json> {
        loop {
            if !self.buf.is_empty() {
                let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Json>();
                match it.next() {
                    Some(Ok(v)) => {
                        let used = it.byte_offset();
                        self.buf.drain(..used);
                        return Some(v);
                    }
                    Some(Err(e)) if e.is_eof() => {}
                    None => self.buf.clear(),
                    Some(Err(e)) => panic!("the client sent malformed JSON: {e}"),
                }
            }
            let mut chunk = vec![0u8; 64 * 1024];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next request (a message with a method), skipping the client's
    /// replies to our own requests.
    async fn request(&mut self) -> Option<Json> {
        loop {
            let m = self.next().await?;
            if m.get("method").is_some() {
                return Some(m);
            }
        }
    }

    /// Waits for the next request, which must be `method`.
    async fn expect(&mut self, method: &str) -> Option<Json> {
        let r = self.request().await?;
        assert_eq!(r["method"], method, "unexpected request {r}");
        Some(r)
    }

    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    async fn reply(&mut self, id: &Json, result: Json) -> std::io::Result<()> {
        let msg = json!({"id": id, "result": result, "error": null});
        self.send(&serde_json::to_vec(&msg).unwrap()).await
    }

    /// Reads until the client closes the connection (bounded).
    async fn until_closed(&mut self) -> bool {
        tokio::time::timeout(BOUND, async { while self.next().await.is_some() {} })
            .await
            .is_ok()
    }

    /// Behaves like a minimal ovsdb-server for the rest of the connection.
    async fn serve_well(mut self) {
        while let Some(r) = self.request().await {
            let id = r["id"].clone();
            let result = match r["method"].as_str() {
                Some("list_dbs") => json!(["OVN_Northbound"]),
                Some("echo") => r["params"].clone(),
                _ => {
                    let msg = json!({"id": id, "result": null, "error": "unknown method"});
                    if self.send(&serde_json::to_vec(&msg).unwrap()).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            if self.reply(&id, result).await.is_err() {
                return;
            }
        }
    }
}

struct FakeServer {
    remote: String,
    accepted: Arc<AtomicUsize>,
    accept_task: tokio::task::JoinHandle<()>,
    _dir: TempDir,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        // Dropping the accept loop's JoinSet aborts every connection task.
        self.accept_task.abort();
    }
}

impl FakeServer {
    /// A unix-socket server; `handler(n, peer)` runs for the n-th (from 0)
    /// accepted connection.
    fn unix<F, Fut>(handler: F) -> FakeServer
    where
        F: Fn(usize, Peer) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fake.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let accept_task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((s, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst);
                conns.spawn(handler(
                    n,
                    Peer {
                        stream: Box::new(s),
                        buf: Vec::new(),
                    },
                ));
            }
        });
        FakeServer {
            remote: format!("unix:{}", path.display()),
            accepted,
            accept_task,
            _dir: dir,
        }
    }

    /// The same on TCP, 127.0.0.1, an ephemeral port.
    async fn tcp<F, Fut>(handler: F) -> FakeServer
    where
        F: Fn(usize, Peer) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let accept_task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((s, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst);
                conns.spawn(handler(
                    n,
                    Peer {
                        stream: Box::new(s),
                        buf: Vec::new(),
                    },
                ));
            }
        });
        FakeServer {
            remote: format!("tcp:127.0.0.1:{port}"),
            accepted,
            accept_task,
            _dir: dir,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn config(remote: &str) -> ClientConfig {
    ClientConfig::new(remote)
        .unwrap()
        .backoff(Duration::from_millis(10), Duration::from_millis(100))
        .connect_timeout(Duration::from_secs(10))
        .inactivity_probe(Duration::from_secs(2))
}

/// Runs `f`, failing the test if it does not finish within [`BOUND`].
async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(BOUND, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what} hung for more than {BOUND:?}"),
    }
}

/// After a hostile first connection the client must reconnect by itself
/// and work against the now well-behaved server.
async fn assert_recovers(client: &Client, server: &FakeServer) {
    let dbs = bounded("list_dbs after reconnect", client.list_dbs())
        .await
        .expect("the client did not recover on a new connection");
    assert_eq!(dbs, vec!["OVN_Northbound".to_string()]);
    assert!(
        server.accepted() >= 2,
        "expected a reconnect, got {} connection(s)",
        server.accepted()
    );
}

fn insert_tx() -> Transaction {
    let mut tx = Transaction::new("OVN_Northbound");
    tx.insert("Logical_Switch", Row::new().with("name", "ls0"));
    tx
}

// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_close_the_connection() {
    init_log();
    let server = FakeServer::unix(|n, mut peer| async move {
        if n > 0 {
            return peer.serve_well().await;
        }
        if peer.expect("list_dbs").await.is_some() {
            let _ = peer.send(b"\x00\xff\xfeHELLO, this is not JSON").await;
            assert!(peer.until_closed().await, "client kept the connection");
        }
    });
    let client = bounded("connect", Client::connect(config(&server.remote)))
        .await
        .unwrap();
    let r = bounded("list_dbs", client.list_dbs()).await;
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    expect_close_reason(&server, "protocol error: unexpected byte 0x00").await;
    assert_recovers(&client, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_inside_a_message_closes_the_connection() {
    init_log();
    let server = FakeServer::unix(|n, mut peer| async move {
        if n > 0 {
            return peer.serve_well().await;
        }
        if let Some(r) = peer.expect("list_dbs").await {
            let msg = format!(r#"{{"id":{},"result":[tru, "x"],"error":null}}"#, r["id"]);
            let _ = peer.send(msg.as_bytes()).await;
            peer.until_closed().await;
        }
    });
    let client = bounded("connect", Client::connect(config(&server.remote)))
        .await
        .unwrap();
    let r = bounded("list_dbs", client.list_dbs()).await;
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    expect_close_reason(&server, "malformed JSON").await;
    assert_recovers(&client, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_json_then_close() {
    init_log();
    let server = FakeServer::unix(|n, mut peer| async move {
        if n > 0 {
            return peer.serve_well().await;
        }
        if let Some(r) = peer.expect("list_dbs").await {
            let msg = format!(r#"{{"id":{},"result":["OVN_Nor"#, r["id"]);
            let _ = peer.send(msg.as_bytes()).await;
            // Dropping the peer closes the connection mid-message.
        }
    });
    let client = bounded("connect", Client::connect(config(&server.remote)))
        .await
        .unwrap();
    let r = bounded("list_dbs", client.list_dbs()).await;
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    expect_close_reason(&server, "connection closed by the server").await;
    assert_recovers(&client, &server).await;
}

/// The server streams one endless message. The client must give up once it
/// has buffered more than its limit, so the server can only write the limit
/// plus what the socket buffers hold before its writes fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_message_is_cut_off_at_the_size_limit() {
    init_log();
    const LIMIT: usize = 64 * 1024;
    let (written_tx, mut written_rx) = mpsc::unbounded_channel::<(usize, bool)>();
    let server = FakeServer::unix(move |n, mut peer| {
        let written_tx = written_tx.clone();
        async move {
            if n > 0 {
                return peer.serve_well().await;
            }
            let Some(r) = peer.expect("list_dbs").await else {
                return;
            };
            let head = format!(r#"{{"id":{},"error":null,"result":[""#, r["id"]);
            let mut written = 0;
            let mut failed = false;
            if peer.send(head.as_bytes()).await.is_ok() {
                written += head.len();
                let chunk = vec![b'A'; 16 * 1024];
                // Stops at 1 GiB at the latest; a bounded client cuts it off far earlier.
                while written < (1 << 30) {
                    if peer.send(&chunk).await.is_err() {
                        failed = true;
                        break;
                    }
                    written += chunk.len();
                }
            }
            let _ = written_tx.send((written, failed));
        }
    });
    let client = bounded(
        "connect",
        Client::connect(config(&server.remote).max_message_size(LIMIT)),
    )
    .await
    .unwrap();
    let r = bounded("list_dbs", client.list_dbs()).await;
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    expect_close_reason(&server, &format!("message of more than {LIMIT} bytes")).await;
    let (written, failed) = bounded("the server's writes to fail", written_rx.recv())
        .await
        .unwrap();
    assert!(
        failed,
        "the server wrote {written} bytes without the client closing"
    );
    // What the server could write = what the client read (at most the limit
    // plus one read) + what the kernel's socket buffers held.
    assert!(
        written < LIMIT + 4 * 1024 * 1024,
        "the server wrote {written} bytes before the client gave up"
    );
    println!("server wrote {written} bytes before the client closed (limit {LIMIT})");
    assert_recovers(&client, &server).await;
}

/// A complete message over the limit is refused even when it arrives in one
/// read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_message_over_the_limit_is_refused() {
    init_log();
    const LIMIT: usize = 1024;
    let server = FakeServer::unix(|n, mut peer| async move {
        if n > 0 {
            return peer.serve_well().await;
        }
        if let Some(r) = peer.expect("list_dbs").await {
            let names: Vec<String> = (0..400).map(|i| format!("db{i:04}")).collect();
            let msg = json!({"id": r["id"], "result": names, "error": null});
            let bytes = serde_json::to_vec(&msg).unwrap();
            assert!(bytes.len() > 2 * LIMIT && bytes.len() < 16 * 1024);
            let _ = peer.send(&bytes).await;
            peer.until_closed().await;
        }
    });
    let client = bounded(
        "connect",
        Client::connect(config(&server.remote).max_message_size(LIMIT)),
    )
    .await
    .unwrap();
    let r = bounded("list_dbs", client.list_dbs()).await;
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    expect_close_reason(&server, &format!("message of more than {LIMIT} bytes")).await;
    assert_recovers(&client, &server).await;
}

/// Replies to ids the client never used are ignored; the real reply still
/// completes the call. A server that then only sends such replies and never
/// answers is dropped by the inactivity probe, failing the pending call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_with_unknown_ids() {
    init_log();
    let server = FakeServer::unix(|n, mut peer| async move {
        if n > 0 {
            return peer.serve_well().await;
        }
        let Some(r) = peer.expect("list_dbs").await else {
            return;
        };
        let id = r["id"].as_u64().unwrap();
        for bogus in [json!(id + 1000), json!("bogus"), json!(null), json!([id])] {
            let _ = peer.reply(&bogus, json!(["wrong"])).await;
        }
        let _ = peer.reply(&json!(id), json!(["OVN_Northbound"])).await;
        // Second request: only a reply with a wrong id, then silence
        // (including towards the client's echo probes).
        let Some(r) = peer.expect("list_dbs").await else {
            return;
        };
        let id = r["id"].as_u64().unwrap();
        let _ = peer.reply(&json!(id + 1), json!(["wrong"])).await;
        peer.until_closed().await;
    });
    let probe = Duration::from_millis(300);
    let client = bounded(
        "connect",
        Client::connect(config(&server.remote).inactivity_probe(probe)),
    )
    .await
    .unwrap();
    let dbs = bounded("list_dbs", client.list_dbs()).await.unwrap();
    assert_eq!(dbs, vec!["OVN_Northbound".to_string()]);
    assert_eq!(
        server.accepted(),
        1,
        "unknown ids must not drop the session"
    );

    let start = Instant::now();
    let r = bounded("list_dbs", client.list_dbs()).await;
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    expect_close_reason(&server, "inactivity probe unanswered").await;
    assert_recovers(&client, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_transact_results_are_errors() {
    init_log();
    let uuid = "8a3e2d07-2b4f-4c1e-9d35-0b6f1c3a5e11";
    let replies = vec![
        json!({"not": "an array"}),
        json!(null),
        json!([]),
        json!([{"uuid": ["uuid", uuid]}, {"uuid": ["uuid", uuid]}]),
        json!([42]),
        json!([{"uuid": "not a uuid"}]),
        json!([{"uuid": ["uuid", "zzz"]}]),
        json!("[{\"uuid\": 1}]"),
    ];
    let n_bad = replies.len();
    let server = FakeServer::unix(move |_, mut peer| {
        let replies = replies.clone();
        async move {
            for reply in replies
                .into_iter()
                .chain([json!([{"uuid": ["uuid", uuid]}])])
            {
                let Some(r) = peer.expect("transact").await else {
                    return;
                };
                if peer.reply(&r["id"], reply).await.is_err() {
                    return;
                }
            }
            peer.serve_well().await;
        }
    });
    let client = bounded("connect", Client::connect(config(&server.remote)))
        .await
        .unwrap();
    for i in 0..n_bad {
        let r = bounded("transact", client.transact(insert_tx())).await;
        assert!(
            matches!(r, Err(Error::Protocol(_))),
            "malformed reply {i}: {r:?}"
        );
    }
    // A result that does not fit is the server's mistake about one request,
    // not a broken stream: the same connection still works.
    let r = bounded("transact", client.transact(insert_tx()))
        .await
        .unwrap();
    assert_eq!(
        r,
        vec![OpResult::Insert {
            uuid: uuid.parse().unwrap()
        }]
    );
    assert_eq!(server.accepted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_schemas_are_errors() {
    init_log();
    let junk = vec![
        json!(42),
        json!({}),
        json!({"name": 7, "tables": {}}),
        json!({"name": "OVN_Northbound", "tables": [1, 2]}),
        json!({"name": "OVN_Northbound", "tables": {"T": 3}}),
        json!({"name": "OVN_Northbound", "tables": {"T": {"columns": {"c": {}}}}}),
        json!({"name": "OVN_Northbound", "tables": {"T": {"columns": {"c": {"type": "blob"}}}}}),
        json!({"name": "OVN_Northbound", "tables": {"T": {"columns": {"c": {"type": {"key": "string", "max": -1}}}}}}),
        json!({"name": "OVN_Northbound", "tables": {"T": {"columns": {"c": {"type": {"key": {"type": []}}}}}}}),
    ];
    let n = junk.len();
    let server = FakeServer::unix(move |_, mut peer| {
        let junk = junk.clone();
        async move {
            // Every get_schema gets the next piece of junk, in turn.
            let mut i = 0;
            while let Some(r) = peer.expect("get_schema").await {
                if peer
                    .reply(&r["id"], junk[i % junk.len()].clone())
                    .await
                    .is_err()
                {
                    return;
                }
                i += 1;
            }
        }
    });
    let client = bounded("connect", Client::connect(config(&server.remote)))
        .await
        .unwrap();
    for i in 0..n {
        let r = bounded("get_schema", client.get_schema("OVN_Northbound")).await;
        assert!(
            matches!(r, Err(Error::Schema(_) | Error::Protocol(_))),
            "junk schema {i}: {r:?}"
        );
    }
    // A monitor needs the schema first: it fails the same way.
    let spec = ovsdb::MonitorSpec::new("OVN_Northbound").table("Logical_Switch", None);
    let r = bounded("monitor", client.monitor(spec)).await;
    assert!(
        matches!(r, Err(Error::Schema(_) | Error::Protocol(_))),
        "{:?}",
        r.err()
    );
    assert_eq!(server.accepted(), 1);
}

/// The server's own `echo` requests are answered with the same id and
/// params, and other requests with an error, without disturbing the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_the_servers_echo() {
    init_log();
    let (got_tx, mut got_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let server = FakeServer::unix(move |n, mut peer| {
        let got_tx = got_tx.clone();
        async move {
            if n > 0 {
                return peer.serve_well().await;
            }
            let requests: [&[u8]; 3] = [
                br#"{"id":"echo","method":"echo","params":[]}"#,
                br#"{"id":42,"method":"echo","params":["x",{"y":[1,2.5,null]},"\u00e9\"}"]}"#,
                br#"{"id":"q1","method":"steal_the_cookies","params":[1]}"#,
            ];
            for req in requests {
                if peer.send(req).await.is_err() {
                    return;
                }
                // Read exactly the bytes of the reply: the raw buffer must hold
                // one JSON value and nothing else once it parses.
                let deadline = Instant::now() + BOUND;
                loop {
                    if serde_json::from_slice::<Json>(&peer.buf).is_ok() {
                        break;
                    }
                    let mut chunk = [0u8; 4096];
                    let n = match tokio::time::timeout_at(
                        deadline.into(),
                        peer.stream.read(&mut chunk),
                    )
                    .await
                    {
                        Ok(Ok(n)) if n > 0 => n,
                        _ => return,
                    };
                    peer.buf.extend_from_slice(&chunk[..n]);
                }
                let _ = got_tx.send(std::mem::take(&mut peer.buf));
            }
            peer.serve_well().await;
        }
    });
    let client = bounded("connect", Client::connect(config(&server.remote)))
        .await
        .unwrap();

    let reply = bounded("the echo reply", got_rx.recv()).await.unwrap();
    let v: Json = serde_json::from_slice(&reply).expect("reply is one JSON value");
    assert_eq!(v, json!({"id": "echo", "result": [], "error": null}));
    assert!(
        !reply.contains(&b'\n'),
        "{}",
        String::from_utf8_lossy(&reply)
    );

    let reply = bounded("the echo reply", got_rx.recv()).await.unwrap();
    let v: Json = serde_json::from_slice(&reply).expect("reply is one JSON value");
    assert_eq!(
        v,
        json!({"id": 42, "result": ["x", {"y": [1, 2.5, null]}, "é\"}"], "error": null})
    );
    // The id keeps its JSON type: a number stays a number.
    assert!(
        String::from_utf8_lossy(&reply).contains(r#""id":42"#),
        "{}",
        String::from_utf8_lossy(&reply)
    );

    let reply = bounded("the error reply", got_rx.recv()).await.unwrap();
    let v: Json = serde_json::from_slice(&reply).expect("reply is one JSON value");
    assert_eq!(v["id"], "q1");
    assert!(v["result"].is_null());
    assert!(!v["error"].is_null(), "{v}");

    // The session is intact.
    let dbs = bounded("list_dbs", client.list_dbs()).await.unwrap();
    assert_eq!(dbs, vec!["OVN_Northbound".to_string()]);
    assert_eq!(server.accepted(), 1);
}

/// The server answers the first of two pipelined transactions, sends half
/// of the second reply and closes; then closes right after a request, with
/// nothing sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_mid_reply() {
    init_log();
    let uuid = "8a3e2d07-2b4f-4c1e-9d35-0b6f1c3a5e11";
    let server = FakeServer::unix(move |n, mut peer| async move {
        match n {
            0 => {
                let Some(a) = peer.expect("transact").await else {
                    return;
                };
                let Some(b) = peer.expect("transact").await else {
                    return;
                };
                let _ = peer
                    .reply(&a["id"], json!([{"uuid": ["uuid", uuid]}]))
                    .await;
                let half = format!(r#"{{"id":{},"result":[{{"uuid":["uuid","8a3e"#, b["id"]);
                let _ = peer.send(half.as_bytes()).await;
            }
            1 => {
                peer.expect("transact").await;
            }
            _ => peer.serve_well().await,
        }
    });
    let client = bounded("connect", Client::connect(config(&server.remote)))
        .await
        .unwrap();
    let (a, b) = bounded("two transactions", async {
        tokio::join!(client.transact(insert_tx()), client.transact(insert_tx()))
    })
    .await;
    // Which of the two the server saw first is up to the scheduler.
    let mut outcomes = [a, b];
    outcomes.sort_by_key(|r| r.is_err());
    assert!(
        matches!(outcomes[0], Ok(ref v) if v.len() == 1),
        "{:?}",
        outcomes[0]
    );
    assert!(
        matches!(outcomes[1], Err(Error::Disconnected)),
        "{:?}",
        outcomes[1]
    );

    let r = bounded("transact", client.transact(insert_tx())).await;
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    assert_recovers(&client, &server).await;
    assert!(server.accepted() >= 3);
}

/// A server that accepts and then never sends anything: the inactivity
/// probe (200 ms) sends an echo, and with no answer drops the connection
/// within about a second, failing the pending call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactivity_probe_drops_a_silent_server() {
    init_log();
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(Vec<String>, Instant)>();
    let server = FakeServer::tcp(move |_, mut peer| {
        let seen_tx = seen_tx.clone();
        async move {
            let mut methods = Vec::new();
            while let Some(m) = peer.next().await {
                methods.push(m["method"].as_str().unwrap_or("").to_string());
            }
            let _ = seen_tx.send((methods, Instant::now()));
        }
    })
    .await;
    let client = bounded(
        "connect",
        Client::connect(config(&server.remote).inactivity_probe(Duration::from_millis(200))),
    )
    .await
    .unwrap();
    let start = Instant::now();
    let r = bounded("list_dbs", client.list_dbs()).await;
    let elapsed = start.elapsed();
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    // ~0.4-0.5 s expected; generous for a loaded machine, far below a hang.
    assert!(
        elapsed < Duration::from_secs(3),
        "dropped after {elapsed:?}"
    );
    expect_close_reason(&server, "inactivity probe unanswered").await;

    let (methods, closed_at) = bounded("the server to see the close", seen_rx.recv())
        .await
        .unwrap();
    assert_eq!(methods.first().map(String::as_str), Some("list_dbs"));
    assert!(
        methods.iter().any(|m| m == "echo"),
        "no probe was sent: {methods:?}"
    );
    assert!(closed_at.duration_since(start) < Duration::from_secs(3));
    println!("silent server dropped after {elapsed:?}; requests seen: {methods:?}");
}
