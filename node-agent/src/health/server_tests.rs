use std::net::Ipv4Addr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn key(name: &str) -> ServiceKey {
    ServiceKey {
        namespace: "web".into(),
        name: name.into(),
    }
}

fn loopback() -> HealthServer {
    HealthServer::new(Bind::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)), Metrics::new())
}

/// Sends `request` to 127.0.0.1:`port`, returns (status, headers, body).
async fn send(port: u16, request: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("an answer within 10 s")
        .expect("read");
    let text = String::from_utf8(out).expect("utf-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    let status = head[9..12].parse().expect("a status");
    (status, head.to_string(), body.to_string())
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

#[test]
fn parses_request_heads() {
    assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
    assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    assert_eq!(
        request_method(b"GET /healthz HTTP/1.1\r\n\r\n"),
        Some("GET")
    );
    assert_eq!(request_method(b"HEAD / HTTP/1.0\r\n\r\n"), Some("HEAD"));
    for bad in [
        &b"GET /\r\n\r\n"[..],
        b"GET / HTTP/2\r\n\r\n",
        b"get / HTTP/1.1\r\n\r\n",
        b"GET  / HTTP/1.1\r\n\r\n",
        b"\xff / HTTP/1.1\r\n\r\n",
    ] {
        assert_eq!(request_method(bad), None, "{bad:?}");
    }
}

#[test]
fn answers_like_kube_proxy() {
    let ok = String::from_utf8(response(&key("front"), 2, false)).unwrap();
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    assert!(ok.contains("\r\nContent-Type: application/json\r\n"));
    assert!(ok.contains("\r\nX-Content-Type-Options: nosniff\r\n"));
    let body: Value = serde_json::from_str(ok.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"service": {"namespace": "web", "name": "front"},
                           "localEndpoints": 2, "serviceProxyHealthy": true})
    );
    let none = String::from_utf8(response(&key("front"), 0, false)).unwrap();
    assert!(
        none.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{none}"
    );
    assert!(none.contains("\"localEndpoints\":0"));
    let head = String::from_utf8(response(&key("front"), 1, true)).unwrap();
    assert!(head.ends_with("\r\n\r\n") && head.contains("Content-Length: "));
}

#[tokio::test]
async fn listeners_follow_sync_and_answer_with_current_counts() {
    let mut server = loopback();
    let mut want = BTreeMap::from([(key("front"), Desired { port: 0, local: 1 })]);
    assert!(server.sync(&want).await.is_empty());
    let port = server.bound_port(&key("front")).expect("open");
    let (status, head, body) = send(port, GET).await;
    assert_eq!(status, 200, "{head}");
    assert!(body.contains("\"localEndpoints\":1"), "{body}");
    // The count changes; the listener stays.
    want.insert(key("front"), Desired { port: 0, local: 0 });
    assert!(server.sync(&want).await.is_empty());
    assert_eq!(server.bound_port(&key("front")), Some(port));
    let (status, _, body) = send(port, GET).await;
    assert_eq!(status, 503);
    assert!(body.contains("\"localEndpoints\":0"), "{body}");
    // Gone: closed by the time sync returns.
    assert!(server.sync(&BTreeMap::new()).await.is_empty());
    assert_eq!(server.bound_port(&key("front")), None);
    let refused = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await;
    assert!(refused.is_err(), "port {port} still open");
    assert!(server
        .metrics
        .encode()
        .contains("switchyard_node_health_check_listeners 0"));
}

#[tokio::test]
async fn a_port_in_use_is_an_error_and_the_others_are_served() {
    let taken = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let taken_port = taken.local_addr().unwrap().port();
    let mut server = loopback();
    let want = BTreeMap::from([
        (
            key("blocked"),
            Desired {
                port: taken_port,
                local: 1,
            },
        ),
        (key("fine"), Desired { port: 0, local: 1 }),
    ]);
    let errors = server.sync(&want).await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    let msg = errors[0].to_string();
    assert!(
        msg.contains("web/blocked") && msg.contains(&taken_port.to_string()),
        "{msg}"
    );
    let port = server.bound_port(&key("fine")).expect("open");
    assert_eq!(send(port, GET).await.0, 200);
    // Freed: the next sync opens it.
    drop(taken);
    assert!(server.sync(&want).await.is_empty());
    assert_eq!(server.bound_port(&key("blocked")), Some(taken_port));
}

#[tokio::test]
async fn bad_and_oversized_requests_are_refused_and_bounded() {
    let mut server = loopback();
    let want = BTreeMap::from([(key("front"), Desired { port: 0, local: 1 })]);
    server.sync(&want).await;
    let port = server.bound_port(&key("front")).expect("open");
    assert_eq!(send(port, b"nonsense\r\n\r\n").await.0, 400);
    let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
    // Exactly the limit without an end: nothing is left unread, so the
    // close that follows the answer is not a reset.
    huge.resize(MAX_REQUEST_HEAD, b'a');
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .unwrap();
    s.write_all(&huge).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 431 "),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    let (status, _, body) = send(port, b"HEAD / HTTP/1.1\r\n\r\n").await;
    assert_eq!((status, body.as_str()), (200, ""));
}

/// A port free on loopback a moment ago.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_service_moving_port_closes_the_old_one() {
    let (old, new) = (free_port(), free_port());
    let mut server = loopback();
    let mut want = BTreeMap::from([(
        key("front"),
        Desired {
            port: old,
            local: 1,
        },
    )]);
    assert!(server.sync(&want).await.is_empty());
    assert_eq!(send(old, GET).await.0, 200);
    want.insert(
        key("front"),
        Desired {
            port: new,
            local: 1,
        },
    );
    assert!(server.sync(&want).await.is_empty());
    assert_eq!(server.bound_port(&key("front")), Some(new));
    assert_eq!(send(new, GET).await.0, 200);
    assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, old))
        .await
        .is_err());
    // Handed to another Service in one sync: closed before it is opened.
    let want = BTreeMap::from([(
        key("other"),
        Desired {
            port: new,
            local: 0,
        },
    )]);
    assert!(server.sync(&want).await.is_empty());
    let (status, _, body) = send(new, GET).await;
    assert_eq!(status, 503);
    assert!(body.contains("\"name\":\"other\""), "{body}");
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_unanswered() {
    let mut server = loopback();
    let want = BTreeMap::from([(key("front"), Desired { port: 0, local: 1 })]);
    server.sync(&want).await;
    let port = server.bound_port(&key("front")).expect("open");
    // Idle clients (no request yet) hold every permit; accepted in order.
    let mut idle = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        idle.push(
            TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                .await
                .unwrap(),
        );
    }
    let mut extra = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .unwrap();
    let mut out = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), extra.read_to_end(&mut out))
        .await
        .expect("closed within 10 s");
    assert!(n.is_err() || out.is_empty(), "answered: {out:?}");
    // The idle ones go; their permits come back.
    drop(idle);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap();
        let _ = s.write_all(GET).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
        if out.starts_with(b"HTTP/1.1 200 ") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no answer after the idle connections closed"
        );
        tokio::task::yield_now().await;
    }
}
