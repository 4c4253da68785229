//! A hostile or broken peer: fake switches on unix sockets and TCP that send
//! garbage, truncated or oversized frames, unknown types, close mid-request
//! or mid-bundle, or never answer. The client must return errors, never
//! panic, and keep memory bounded.

use std::time::Duration;

use openflow::{
    decode, encode, AggregateStats, BundleControl, BundleCtrlType, Client, ClientConfig, Error,
    Event, Features, FlowMod, FlowStatsRequest, Frame, Hello, Match, Message, MultipartReply,
    MultipartRequest, PortDesc, PortReason, PortStatus, Version,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};

const V: Version = Version::V1_3;

/// One accepted connection of a fake switch.
struct Peer<S> {
    s: S,
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Peer<S> {
    async fn read(&mut self) -> Option<Frame> {
        let mut head = [0u8; 8];
        self.s.read_exact(&mut head).await.ok()?;
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let mut body = vec![0u8; len.saturating_sub(8)];
        self.s.read_exact(&mut body).await.ok()?;
        let mut all = head.to_vec();
        all.extend(body);
        Some(decode(&all).expect("client sent an undecodable message"))
    }

    async fn send(&mut self, xid: u32, m: &Message) {
        let _ = self.s.write_all(&encode(V, xid, m).unwrap()).await;
    }

    async fn raw(&mut self, bytes: &[u8]) {
        let _ = self.s.write_all(bytes).await;
    }

    /// Hello, features, and the SET_CONFIG + barrier the client sends.
    async fn handshake(&mut self) {
        let hello = self.read().await.expect("hello");
        assert!(matches!(hello.message, Message::Hello(_)));
        self.send(1, &Message::Hello(Hello::for_versions(&[Version::V1_3])))
            .await;
        let f = self.read().await.expect("features request");
        assert_eq!(f.message, Message::FeaturesRequest);
        let features = Features {
            datapath_id: 0x42,
            n_tables: 254,
            ..Features::default()
        };
        self.send(f.xid, &Message::FeaturesReply(features)).await;
        let cfg = self.read().await.expect("set config");
        assert!(matches!(cfg.message, Message::SetConfig(_)), "{cfg:?}");
        let b = self.read().await.expect("barrier");
        assert_eq!(b.message, Message::BarrierRequest);
        self.send(b.xid, &Message::BarrierReply).await;
    }
}

struct Fake {
    _dir: tempfile::TempDir,
    remote: String,
    listener: UnixListener,
}

impl Fake {
    fn new() -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fake.mgmt");
        let listener = UnixListener::bind(&path).unwrap();
        Fake {
            remote: format!("unix:{}", path.display()),
            _dir: dir,
            listener,
        }
    }

    async fn accept(&self) -> Peer<tokio::net::UnixStream> {
        Peer {
            s: self.listener.accept().await.unwrap().0,
        }
    }

    fn config(&self) -> ClientConfig {
        ClientConfig::new(&self.remote)
            .unwrap()
            .versions(&[Version::V1_3])
            .connect_timeout(Duration::from_secs(2))
            .request_timeout(Duration::from_secs(2))
    }
}

/// Runs `server` against one connection while the client connects.
async fn connect_with<F, Fut>(
    fake: Fake,
    cfg: ClientConfig,
    server: F,
) -> (
    openflow::Result<(Client, openflow::Events)>,
    tokio::task::JoinHandle<()>,
)
where
    F: FnOnce(Peer<tokio::net::UnixStream>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let task = tokio::spawn(async move {
        let peer = fake.accept().await;
        server(peer).await;
        drop(fake);
    });
    (Client::connect(cfg).await, task)
}

async fn handshake_error(server_bytes: Vec<u8>, close: bool) -> Error {
    let fake = Fake::new();
    let cfg = fake.config();
    let (res, task) = connect_with(fake, cfg, move |mut p| async move {
        let _ = p.read().await;
        p.raw(&server_bytes).await;
        if !close {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    })
    .await;
    task.abort();
    res.expect_err("handshake with a broken peer must fail")
}

#[tokio::test]
async fn garbage_instead_of_hello() {
    let err = handshake_error(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), true).await;
    assert!(
        matches!(err, Error::Handshake(_) | Error::BadLength { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn short_header_then_close() {
    let err = handshake_error(vec![4, 0, 0], true).await;
    assert!(matches!(err, Error::Handshake(_)), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[tokio::test]
async fn length_below_header_size() {
    let err = handshake_error(vec![4, 0, 0, 4, 0, 0, 0, 1], false).await;
    assert!(err.to_string().contains("bad length"), "{err}");
}

#[tokio::test]
async fn oversized_length_that_never_arrives_times_out() {
    // Claims 65535 bytes, sends 100, then stalls: bounded wait, no panic.
    let mut bytes = vec![4, 0, 0xff, 0xff, 0, 0, 0, 1];
    bytes.extend(std::iter::repeat_n(0xaa, 92));
    let err = handshake_error(bytes, false).await;
    assert!(matches!(err, Error::Timeout(_)), "{err}");
}

#[tokio::test]
async fn peer_without_common_version() {
    let fake = Fake::new();
    let cfg = fake.config();
    let (res, _t) = connect_with(fake, cfg, |mut p| async move {
        let _ = p.read().await;
        p.raw(
            &encode(
                V,
                1,
                &Message::Hello(Hello {
                    bitmap: Some(1 << 1),
                }),
            )
            .unwrap(),
        )
        .await;
        let _ = p.read().await; // the client's HELLO_FAILED
    })
    .await;
    let err = res.unwrap_err();
    assert!(err.to_string().contains("no common version"), "{err}");
}

#[tokio::test]
async fn hello_never_answered_times_out() {
    let fake = Fake::new();
    let cfg = fake.config().connect_timeout(Duration::from_millis(300));
    let (res, task) = connect_with(fake, cfg, |p| async move {
        let _keep_open = p;
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    task.abort();
    assert!(matches!(res.unwrap_err(), Error::Timeout(_)));
}

/// After the handshake: unknown types, oversized but valid frames, echo
/// requests from the switch; the client keeps working.
#[tokio::test]
async fn unknown_and_large_messages_after_handshake() {
    let fake = Fake::new();
    let cfg = fake.config();
    let (res, task) = connect_with(fake, cfg, |mut p| async move {
        p.handshake().await;
        // Unknown message type 200 and a maximum-size unknown message.
        p.raw(&[4, 200, 0, 12, 0, 0, 0, 9, 1, 2, 3, 4]).await;
        let mut big = vec![4, 201, 0xff, 0xff, 0, 0, 0, 10];
        big.resize(65_535, 0x5a);
        p.raw(&big).await;
        // An unknown experimenter, an undecodable flow-mod, an echo request.
        p.send(
            11,
            &Message::Experimenter {
                experimenter: 0xdead,
                exp_type: 1,
                data: vec![1; 8],
            },
        )
        .await;
        p.raw(&[4, 14, 0, 12, 0, 0, 0, 12, 0, 0, 0, 0]).await;
        p.send(13, &Message::EchoRequest(b"ping".to_vec())).await;
        let reply = p.read().await.expect("echo reply");
        assert_eq!(
            (reply.xid, reply.message),
            (13, Message::EchoReply(b"ping".to_vec()))
        );
        // Then serve a barrier.
        let b = p.read().await.expect("barrier");
        p.send(b.xid, &Message::BarrierReply).await;
        let _ = p.read().await;
    })
    .await;
    let (client, mut events) = res.unwrap();
    client.barrier().await.expect("client still works");
    let mut kinds = Vec::new();
    while let Some(ev) = events.try_recv() {
        kinds.push(ev);
    }
    assert!(
        kinds.iter().any(|e| matches!(
            e,
            Event::Message(Frame {
                message: Message::Unknown { msg_type: 200, .. },
                ..
            })
        )),
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|e| matches!(e, Event::Message(Frame { message: Message::Unknown { msg_type: 201, body, .. }, .. }) if body.len() == 65_527)));
    assert!(kinds.iter().any(|e| matches!(
        e,
        Event::Message(Frame {
            message: Message::Experimenter {
                experimenter: 0xdead,
                ..
            },
            ..
        })
    )));
    drop(client);
    task.abort();
}

#[tokio::test]
async fn garbage_after_handshake_closes_with_error() {
    let fake = Fake::new();
    let cfg = fake.config();
    let (res, task) = connect_with(fake, cfg, |mut p| async move {
        p.handshake().await;
        p.raw(&[0xff, 0xff, 0, 2, 0xff, 0xff, 0xff, 0xff]).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    let (client, mut events) = res.unwrap();
    let err = client.barrier().await.unwrap_err();
    assert!(matches!(err, Error::Disconnected { .. }), "{err}");
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(ev) = events.recv().await {
            if let Event::Closed { reason } = ev {
                return reason;
            }
        }
        String::new()
    })
    .await
    .unwrap();
    assert!(closed.contains("bad length"), "{closed}");
    assert!(!client.is_connected());
    task.abort();
}

#[tokio::test]
async fn server_closes_mid_request() {
    let fake = Fake::new();
    let cfg = fake.config();
    let (res, task) = connect_with(fake, cfg, |mut p| async move {
        p.handshake().await;
        let req = p.read().await.expect("multipart request");
        // Half a reply, then close.
        let reply = MultipartReply::Flow {
            flows: vec![],
            more: true,
        };
        let bytes = encode(V, req.xid, &Message::MultipartReply(reply)).unwrap();
        p.raw(&bytes).await;
        p.raw(&bytes[..10]).await;
    })
    .await;
    let (client, _ev) = res.unwrap();
    let err = client
        .dump_flows(FlowStatsRequest::all())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Disconnected { .. }), "{err}");
    // Later requests fail fast too.
    assert!(client.barrier().await.is_err());
    task.await.unwrap();
}

#[tokio::test]
async fn server_closes_mid_bundle() {
    let fake = Fake::new();
    let cfg = fake.config();
    let (res, task) = connect_with(fake, cfg, |mut p| async move {
        p.handshake().await;
        let open = p.read().await.expect("bundle open");
        let Message::BundleControl(b) = &open.message else {
            panic!("{open:?}")
        };
        p.send(
            open.xid,
            &Message::BundleControl(BundleControl::new(
                b.bundle_id,
                BundleCtrlType::OpenReply,
                0,
            )),
        )
        .await;
        // Read two of the adds, then vanish.
        let _ = p.read().await;
        let _ = p.read().await;
    })
    .await;
    let (client, _ev) = res.unwrap();
    let flows = (0..50)
        .map(|i| FlowMod::add(Match::new().in_port(i)).priority(1))
        .collect();
    let err = client.replace_flows(flows).await.unwrap_err();
    assert!(matches!(err, Error::Disconnected { .. }), "{err}");
    assert!(
        err.to_string().contains("BUNDLE_ADD_MESSAGE") || err.to_string().contains("BARRIER"),
        "{err}"
    );
    task.await.unwrap();
}

#[tokio::test]
async fn request_never_answered_times_out_and_connection_survives() {
    let fake = Fake::new();
    let cfg = fake.config().request_timeout(Duration::from_millis(300));
    let (res, task) = connect_with(fake, cfg, |mut p| async move {
        p.handshake().await;
        let _ignored = p.read().await;
        // Answer the next one.
        let b = p.read().await.expect("second barrier");
        p.send(b.xid, &Message::BarrierReply).await;
        let _ = p.read().await;
    })
    .await;
    let (client, _ev) = res.unwrap();
    let err = client.barrier().await.unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    client.barrier().await.expect("second barrier answered");
    drop(client);
    task.abort();
}

#[tokio::test]
async fn silent_switch_is_detected_by_keepalive() {
    let fake = Fake::new();
    let cfg = fake
        .config()
        .keepalive(Duration::from_millis(100), Duration::from_millis(300));
    let (res, task) = connect_with(fake, cfg, |mut p| async move {
        p.handshake().await;
        // Read the echo requests but never answer.
        while p.read().await.is_some() {}
    })
    .await;
    let (client, mut events) = res.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.recv().await {
                Some(Event::Closed { reason }) => return reason,
                Some(_) => {}
                None => return String::new(),
            }
        }
    })
    .await
    .expect("keep-alive must close a silent connection");
    assert!(reason.contains("echo"), "{reason}");
    assert!(!client.is_connected());
    task.abort();
}

#[tokio::test]
async fn event_flood_is_bounded() {
    let fake = Fake::new();
    let cfg = fake.config().event_capacity(8);
    let (res, task) = connect_with(fake, cfg, |mut p| async move {
        p.handshake().await;
        let ps = PortStatus {
            reason: PortReason::Add,
            desc: PortDesc {
                name: "flood".into(),
                ..PortDesc::default()
            },
        };
        let one = encode(V, 0, &Message::PortStatus(ps)).unwrap();
        let burst: Vec<u8> = one.iter().copied().cycle().take(one.len() * 5000).collect();
        p.raw(&burst).await;
        let b = p.read().await.expect("barrier");
        p.send(b.xid, &Message::BarrierReply).await;
        let _ = p.read().await;
    })
    .await;
    let (client, mut events) = res.unwrap();
    client.barrier().await.unwrap();
    let mut queued = 0;
    while events.try_recv().is_some() {
        queued += 1;
    }
    assert_eq!(queued, 8);
    assert_eq!(client.dropped_events(), 5000 - 8);
    task.abort();
}

#[tokio::test]
async fn multipart_reply_larger_than_limit_is_refused() {
    let fake = Fake::new();
    let cfg = fake.config().max_reply_bytes(100_000);
    let (res, task) = connect_with(fake, cfg, |mut p| async move {
        p.handshake().await;
        let req = p.read().await.expect("request");
        let part = Message::MultipartReply(MultipartReply::Unknown {
            mp_type: 99,
            more: true,
            body: vec![0; 60_000],
        });
        for _ in 0..10 {
            p.send(req.xid, &part).await;
        }
        let b = p.read().await.expect("barrier");
        p.send(b.xid, &Message::BarrierReply).await;
        let _ = p.read().await;
    })
    .await;
    let (client, _ev) = res.unwrap();
    let err = client
        .multipart(MultipartRequest::PortDesc)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TooLong { .. }), "{err}");
    // The rest of the stream is still consumed in order.
    client.barrier().await.unwrap();
    task.abort();
}

/// The same client over TCP, with the switch sending echo requests and
/// answering ours.
#[tokio::test]
async fn tcp_remote_with_echo_both_ways() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut p = Peer {
            s: listener.accept().await.unwrap().0,
        };
        p.handshake().await;
        p.send(77, &Message::EchoRequest(vec![7])).await;
        let mut saw_reply = false;
        while let Some(f) = p.read().await {
            match f.message {
                Message::EchoReply(d) if f.xid == 77 => saw_reply = d == [7],
                Message::EchoRequest(d) => p.send(f.xid, &Message::EchoReply(d)).await,
                Message::MultipartRequest(MultipartRequest::Aggregate(_)) => {
                    let a = AggregateStats {
                        packet_count: 1,
                        byte_count: 2,
                        flow_count: 3,
                    };
                    p.send(
                        f.xid,
                        &Message::MultipartReply(MultipartReply::Aggregate(a)),
                    )
                    .await;
                }
                _ => {}
            }
        }
        saw_reply
    });
    let cfg = ClientConfig::new(&format!("tcp:{addr}"))
        .unwrap()
        .versions(&[Version::V1_3])
        .keepalive(Duration::from_millis(50), Duration::from_secs(5));
    let (client, _ev) = Client::connect(cfg).await.unwrap();
    assert_eq!(client.features().datapath_id, 0x42);
    // Idle long enough for our keep-alive echo to go out and be answered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(client.is_connected());
    client.echo().await.unwrap();
    let agg = client.aggregate(FlowStatsRequest::all()).await.unwrap();
    assert_eq!(agg.flow_count, 3);
    drop(client);
    assert!(
        task.await.unwrap(),
        "the client did not answer the switch's echo"
    );
}

#[test]
fn bad_remotes_are_rejected() {
    for r in ["", "ssl:1.2.3.4:6653", "unix:", "tcp:nohost", "br0.mgmt"] {
        assert!(
            matches!(ClientConfig::new(r), Err(Error::InvalidArgument(_))),
            "{r}"
        );
    }
}
