//! A connection the client closes on purpose is not a lost connection.
//!
//! A controller that steps down drops its NB client; that close must be
//! logged as a close ("OVSDB connection closed", info) and never as the
//! warning operators watch for ("lost OVSDB connection; reconnecting"),
//! while a connection the server really drops still gets that warning.
//! The client's log is the only place where the difference shows, so the
//! test captures it with a subscriber of its own.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use ovsdb::{Client, Replica};

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

/// The captured log lines that mention `needle` and `what`.
fn count(needle: &str, what: &str) -> usize {
    let buf = LOG.get().expect("init_log").lock().unwrap();
    String::from_utf8_lossy(&buf)
        .lines()
        .filter(|l| l.contains(needle) && l.contains(what))
        .count()
}

/// Waits until, together, `n` lines mention `needle` and one of `what`.
async fn wait_count(needle: &str, what: &[&str], n: usize) {
    let deadline = Instant::now() + DEADLINE;
    let seen = || what.iter().map(|w| count(needle, w)).sum::<usize>();
    while seen() < n {
        assert!(
            Instant::now() < deadline,
            "expected {n} log lines with one of {what:?} for {needle}, saw {}; log:\n{}",
            seen(),
            String::from_utf8_lossy(&LOG.get().unwrap().lock().unwrap())
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const LOST: &str = "lost OVSDB connection";
const CLOSED: &str = "OVSDB connection closed";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_client_logs_a_close_not_a_lost_connection() {
    init_log();
    let nb = start_nb(false);
    let remote = nb.server.unix_remote();
    // The close and the shutdown signal race inside the client; one drop
    // could pass by luck, twenty in a row cannot.
    for i in 1..=20 {
        let client: Client = connect(&remote).await;
        // A replica holds the client too: the connection closes with the
        // last handle, as it does when a controller drops its NB state.
        let replica: Replica = client
            .monitor(ovsdb::MonitorSpec::new(NB).table("Logical_Switch", None))
            .await
            .expect("monitor");
        drop(client);
        drop(replica);
        // The client says what became of the connection either way.
        wait_count(&remote, &[CLOSED, LOST], i).await;
        assert_eq!(
            count(&remote, LOST),
            0,
            "a deliberate close was logged as a lost connection"
        );
    }
    let buf = LOG.get().unwrap().lock().unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(
        !text
            .lines()
            .any(|l| l.contains(&remote) && l.contains(" WARN ")),
        "warnings for a deliberate close:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_goes_away_is_still_a_lost_connection() {
    init_log();
    let mut nb = start_nb(false);
    let remote = nb.server.unix_remote();
    let client = connect(&remote).await;
    client.echo().await.expect("echo");
    tokio::task::spawn_blocking(move || {
        nb.server.kill();
        nb
    })
    .await
    .expect("kill");
    wait_count(&remote, &[LOST], 1).await;
    let buf = LOG.get().unwrap().lock().unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.lines()
            .any(|l| l.contains(&remote) && l.contains(" WARN ") && l.contains(LOST)),
        "a dropped server must warn:\n{text}"
    );
}
