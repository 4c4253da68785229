//! `ssl:` remotes against a real ovsdb-server with certificates made in the
//! test.

use std::time::{Duration, Instant};

use ovn_testbed::{OvsdbServer, Schema, ServerOptions, TlsFiles};
use ovsdb::{Client, ClientConfig, Condition, Error, Row, TlsConfig, Transaction};

/// Bound on every client operation; generous for a loaded machine.
const BOUND: Duration = Duration::from_secs(30);

fn tls_config(files: &TlsFiles) -> TlsConfig {
    TlsConfig {
        ca_cert: files.ca_cert.clone(),
        client_cert: files.client_cert.clone(),
        client_key: files.client_key.clone(),
    }
}

fn client_config(remote: &str, tls: TlsConfig) -> ClientConfig {
    ClientConfig::new(remote)
        .unwrap()
        .tls(tls)
        .connect_timeout(Duration::from_secs(5))
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
}

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, f)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for more than {BOUND:?}"))
}

fn tls_server(dir: &std::path::Path, files: &TlsFiles) -> OvsdbServer {
    OvsdbServer::start(
        dir,
        "nb",
        Schema::Northbound,
        ServerOptions {
            tls: Some(files.clone()),
            ..ServerOptions::default()
        },
    )
    .expect("start ovsdb-server with TLS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_remote_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles::generate(&dir.path().join("pki")).unwrap();
    let server = tls_server(dir.path(), &files);
    let remote = server.ssl_remote().unwrap();

    let client = bounded(
        "connect",
        Client::connect(client_config(&remote, tls_config(&files))),
    )
    .await
    .expect("TLS connection");
    assert_eq!(client.connected_remote().as_deref(), Some(remote.as_str()));

    let dbs = bounded("list_dbs", client.list_dbs()).await.unwrap();
    assert!(dbs.iter().any(|d| d == "OVN_Northbound"), "{dbs:?}");

    let mut tx = Transaction::new("OVN_Northbound");
    tx.insert(
        "Logical_Switch",
        Row::new()
            .with("name", "tls-switch")
            .with("external_ids", ovsdb::Value::map([("k", "v")])),
    );
    let r = bounded("insert", client.transact(tx)).await.unwrap();
    let uuid = r[0].uuid().expect("insert result has a uuid");

    let mut tx = Transaction::new("OVN_Northbound");
    tx.select(
        "Logical_Switch",
        vec![Condition::eq("name", "tls-switch")],
        None,
    );
    let r = bounded("select", client.transact(tx)).await.unwrap();
    let rows = r[0].rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].uuid(), Some(uuid));
    assert_eq!(rows[0].map_get("external_ids", "k"), Some("v"));

    // A monitor over TLS sees the row, too.
    let replica = bounded(
        "monitor",
        client.monitor(ovsdb::MonitorSpec::new("OVN_Northbound").table("Logical_Switch", None)),
    )
    .await
    .unwrap();
    replica.with(|db| {
        let (u, _) = db
            .table("Logical_Switch")
            .by_name("tls-switch")
            .expect("row in replica");
        assert_eq!(u, uuid);
    });
}

/// The client trusts a different CA than the one that signed the server's
/// certificate (and presents a certificate the server does not trust): the
/// handshake fails and connecting ends with a clear error, not a panic or
/// a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_from_another_ca_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles::generate(&dir.path().join("pki")).unwrap();
    let other = TlsFiles::generate(&dir.path().join("other-pki")).unwrap();
    let server = tls_server(dir.path(), &files);
    let remote = server.ssl_remote().unwrap();

    let start = Instant::now();
    let r = bounded(
        "connect",
        Client::connect(client_config(&remote, tls_config(&other))),
    )
    .await;
    let err = r.expect_err("a client from another CA must not connect");
    let text = err.to_string();
    assert!(matches!(err, Error::NotConnected(_)), "{err:?}");
    assert!(
        text.contains("tls") && text.contains(&remote),
        "error should say TLS failed with which remote: {text}"
    );
    assert!(
        text.contains("UnknownIssuer") || text.contains("certificate"),
        "error should name the certificate problem: {text}"
    );
    assert!(start.elapsed() < Duration::from_secs(20));
    println!("another CA: {text}");
}

/// The client trusts the server (right CA) but presents a certificate from
/// another CA: the server refuses it. Depending on the TLS version the
/// refusal comes during the handshake or right after it; either way no call
/// succeeds and each ends with an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_from_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles::generate(&dir.path().join("pki")).unwrap();
    let other = TlsFiles::generate(&dir.path().join("other-pki")).unwrap();
    let server = tls_server(dir.path(), &files);
    let remote = server.ssl_remote().unwrap();

    let tls = TlsConfig {
        ca_cert: files.ca_cert.clone(),
        client_cert: other.client_cert.clone(),
        client_key: other.client_key.clone(),
    };
    let outcome = bounded("connect and list_dbs", async {
        let client = Client::connect(client_config(&remote, tls)).await?;
        client.list_dbs().await
    })
    .await;
    let err = outcome.expect_err("a client certificate from another CA must be refused");
    assert!(
        matches!(
            err,
            Error::NotConnected(_) | Error::Disconnected | Error::Tls(_)
        ),
        "{err:?}"
    );
    println!("foreign client certificate: {err}");
}

/// An `ssl:` remote without certificates is a configuration error, named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_remote_without_certificates_is_an_error() {
    let r = bounded(
        "connect",
        Client::connect(
            ClientConfig::new("ssl:127.0.0.1:1")
                .unwrap()
                .connect_timeout(Duration::from_secs(1)),
        ),
    )
    .await;
    let err = r.expect_err("no TLS configuration");
    assert!(
        err.to_string()
            .contains("needs a CA, certificate and private key"),
        "{err}"
    );
}
