//! The kube-rs client against tower-test mocks that answer as
//! kube-apiserver does: every error body is built by [`super::status`],
//! whose shapes follow apimachinery's `api/errors`.

use super::*;
use crate::k8s::status::{self, FieldError};
use crate::k8s::ObjectRef;
use http::{Request, Response, StatusCode};
use kube::client::Body;
use std::time::Duration;
use tower_test::mock;

type Handle = mock::Handle<Request<Body>, Response<Body>>;

fn cluster() -> (KubeCluster, Handle) {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "default");
    (
        KubeCluster::new(client, "switchyard-controller", "replica-0"),
        handle,
    )
}

fn json_response(code: u16, v: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&v).unwrap()))
        .unwrap()
}

/// The body the server sends with a refusal: a `Status` object.
fn status_response(s: kube::core::Status) -> Response<Body> {
    let mut v = serde_json::to_value(&s).unwrap();
    v["apiVersion"] = json!("v1");
    v["kind"] = json!("Status");
    v["metadata"] = json!({});
    json_response(s.code, v)
}

fn node_json(name: &str, rv: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": name, "uid": format!("uid-{name}"), "resourceVersion": rv,
        "managedFields": [{"manager": "kubelet", "operation": "Update", "apiVersion": "v1"}]}})
}

fn query(req: &Request<Body>) -> String {
    req.uri().query().unwrap_or("").to_string()
}

async fn next(handle: &mut Handle) -> (Request<Body>, mock::SendResponse<Response<Body>>) {
    tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .expect("no request within 10 s")
        .expect("service gone")
}

async fn body_json(req: Request<Body>) -> serde_json::Value {
    let body = req.into_body().collect_bytes().await.unwrap();
    serde_json::from_slice(&body).unwrap()
}

fn names(v: &[Observed]) -> Vec<String> {
    v.iter().map(Observed::key).collect()
}

#[tokio::test]
async fn node_watch_lists_watches_and_relists_after_410_gone() {
    let (c, mut handle) = cluster();
    let mut stream = c.watch(Kind::Node);
    let server = tokio::spawn(async move {
        // 1. The initial list.
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.method(), "GET");
        assert_eq!(req.uri().path(), "/api/v1/nodes");
        assert!(!query(&req).contains("watch=true"), "{}", query(&req));
        send.send_response(json_response(
            200,
            json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {"resourceVersion": "10"},
                   "items": [node_json("a", "9")]}),
        ));
        // 2. The watch from the list's resourceVersion: one change, then 410.
        let (req, send) = next(&mut handle).await;
        let q = query(&req);
        assert_eq!(req.uri().path(), "/api/v1/nodes");
        assert!(q.contains("watch=true"), "{q}");
        assert!(q.contains("resourceVersion=10"), "{q}");
        let mut body =
            serde_json::to_vec(&json!({"type": "ADDED", "object": node_json("b", "11")})).unwrap();
        body.push(b'\n');
        let mut gone =
            serde_json::to_value(status::gone("too old resource version: 10 (50)")).unwrap();
        gone["apiVersion"] = json!("v1");
        gone["kind"] = json!("Status");
        body.extend(serde_json::to_vec(&json!({"type": "ERROR", "object": gone})).unwrap());
        body.push(b'\n');
        send.send_response(
            Response::builder()
                .status(200)
                .body(Body::from(body))
                .unwrap(),
        );
        // 3. 410 Gone: a fresh list, not a watch.
        let (req, send) = next(&mut handle).await;
        let q = query(&req);
        assert!(
            !q.contains("watch=true"),
            "after 410 the watcher must relist: {q}"
        );
        send.send_response(json_response(
            200,
            json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {"resourceVersion": "60"},
                   "items": [node_json("b", "55")]}),
        ));
        // 4. And watches again from the new list.
        let (req, _send) = next(&mut handle).await;
        let q = query(&req);
        assert!(
            q.contains("watch=true") && q.contains("resourceVersion=60"),
            "{q}"
        );
        handle
    });
    match stream.next().await {
        Some(WatchEvent::Restarted(list)) => {
            assert_eq!(names(&list), vec!["a"]);
            // Decoded slim: what the model reads, no managedFields.
            assert!(
                matches!(&list[0], Observed::Node(n) if n.uid == "uid-a" && n.resource_version.as_deref() == Some("9")),
                "{list:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    match stream.next().await {
        Some(WatchEvent::Applied(n)) => {
            assert_eq!(n.kind(), Kind::Node);
            assert_eq!(n.key(), "b");
        }
        other => panic!("{other:?}"),
    }
    match tokio::time::timeout(Duration::from_secs(15), stream.next())
        .await
        .unwrap()
    {
        Some(WatchEvent::Restarted(list)) => assert_eq!(names(&list), vec!["b"]),
        other => panic!("{other:?}"),
    }
    // Keep polling so the watcher makes its next request.
    let poller = tokio::spawn(async move { stream.next().await.is_some() });
    let _handle = server.await.unwrap();
    poller.abort();
}

#[tokio::test]
async fn pod_patch_is_one_merge_patch_guarded_by_uid_and_resource_version() {
    let (c, mut handle) = cluster();
    let ann: BTreeMap<String, Option<String>> = [
        (
            "switchyard.io/pod-network".to_string(),
            Some("{\"x\":1}".to_string()),
        ),
        ("switchyard.io/old".to_string(), None),
    ]
    .into();
    let target = ObjectRef::pod("ns", "web", "u-1");
    let fut = c.patch_annotations(target.clone(), Some("41".into()), ann.clone());
    let server = tokio::spawn(async move {
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.method(), "PATCH");
        assert_eq!(req.uri().path(), "/api/v1/namespaces/ns/pods/web");
        assert!(
            query(&req).contains("fieldManager=switchyard-controller"),
            "{}",
            query(&req)
        );
        assert_eq!(
            req.headers()["content-type"],
            "application/merge-patch+json"
        );
        let v = body_json(req).await;
        assert_eq!(v["metadata"]["uid"], "u-1");
        assert_eq!(v["metadata"]["resourceVersion"], "41");
        assert_eq!(
            v["metadata"]["annotations"]["switchyard.io/pod-network"],
            "{\"x\":1}"
        );
        assert!(v["metadata"]["annotations"]["switchyard.io/old"].is_null());
        send.send_response(json_response(
            200,
            json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "ns", "uid": "u-1", "resourceVersion": "42"}}),
        ));
        // The pod changed since the controller looked: 409.
        let (_req, send) = next(&mut handle).await;
        send.send_response(status_response(status::conflict("", "pods", "web")));
        // The pod was replaced by another of the same name: the server
        // refuses to change an immutable UID with 422, not 409.
        let (_req, send) = next(&mut handle).await;
        send.send_response(status_response(status::invalid(
            "Pod",
            "",
            "web",
            &[FieldError::invalid(
                "metadata.uid",
                "u-1",
                "field is immutable",
            )],
        )));
        // Gone.
        let (_req, send) = next(&mut handle).await;
        send.send_response(status_response(status::not_found("", "pods", "web")));
    });
    assert_eq!(fut.await.unwrap(), Some("42".to_string()));
    let err = c
        .patch_annotations(target.clone(), Some("41".into()), ann.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(err, KubeError::Conflict(ref m) if m.contains("has been modified")),
        "{err:?}"
    );
    assert!(!err.object_replaced());
    let err = c
        .patch_annotations(target.clone(), None, ann.clone())
        .await
        .unwrap_err();
    assert!(err.object_replaced(), "{err:?}");
    assert!(!err.is_transient());
    let err = c.patch_annotations(target, None, ann).await.unwrap_err();
    assert_eq!(err.code(), 404);
    server.await.unwrap();
}

#[tokio::test]
async fn node_patch_goes_to_the_cluster_scoped_path() {
    let (c, mut handle) = cluster();
    let server = tokio::spawn(async move {
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.uri().path(), "/api/v1/nodes/n1");
        let v = body_json(req).await;
        assert_eq!(v["metadata"]["uid"], "nu");
        assert!(v["metadata"].get("resourceVersion").is_none());
        send.send_response(json_response(200, node_json("n1", "7")));
    });
    let ann = [("k".to_string(), Some("v".to_string()))].into();
    let rv = c
        .patch_annotations(ObjectRef::node("n1", "nu"), None, ann)
        .await
        .unwrap();
    assert_eq!(rv.as_deref(), Some("7"));
    server.await.unwrap();
}

#[tokio::test]
async fn service_status_patch_goes_to_the_status_subresource_guarded() {
    let (c, mut handle) = cluster();
    let target = ObjectRef::new(Kind::Service, Some("ns"), "lb", "su");
    let status = json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}});
    let fut = {
        let c = c.clone();
        let (t, s) = (target.clone(), status.clone());
        tokio::spawn(async move { c.patch_status(t, Some("5".into()), s).await })
    };
    let server = tokio::spawn(async move {
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.method(), "PATCH");
        assert_eq!(req.uri().path(), "/api/v1/namespaces/ns/services/lb/status");
        assert_eq!(
            req.headers()["content-type"],
            "application/merge-patch+json"
        );
        let v = body_json(req).await;
        assert_eq!(v["metadata"]["uid"], "su");
        assert_eq!(v["metadata"]["resourceVersion"], "5");
        assert_eq!(
            v["status"]["loadBalancer"]["ingress"][0]["ip"],
            "198.51.100.7"
        );
        assert!(v.get("spec").is_none(), "only the status is sent");
        send.send_response(json_response(
            200,
            json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "lb", "namespace": "ns", "uid": "su", "resourceVersion": "6"}}),
        ));
        // Changed meanwhile: 409; replaced: 422 on the UID.
        let (_req, send) = next(&mut handle).await;
        send.send_response(status_response(status::conflict("", "services", "lb")));
        let (_req, send) = next(&mut handle).await;
        send.send_response(status_response(status::invalid(
            "Service",
            "",
            "lb",
            &[FieldError::invalid(
                "metadata.uid",
                "su",
                "field is immutable",
            )],
        )));
    });
    assert_eq!(fut.await.unwrap().unwrap(), Some("6".to_string()));
    let err = c
        .patch_status(target.clone(), Some("5".into()), status.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, KubeError::Conflict(_)), "{err:?}");
    let err = c.patch_status(target, None, status).await.unwrap_err();
    assert!(err.object_replaced(), "{err:?}");
    server.await.unwrap();
}

/// A name as kube-apiserver's `NameIsDNSSubdomain` accepts it.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

#[tokio::test]
async fn events_are_named_as_kube_recorders_name_them_and_repeats_become_a_series() {
    let (c, mut handle) = cluster();
    let server = tokio::spawn(async move {
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.method(), "POST");
        assert_eq!(
            req.uri().path(),
            "/apis/events.k8s.io/v1/namespaces/ns/events"
        );
        let v = body_json(req).await;
        let name = v["metadata"]["name"].as_str().unwrap().to_string();
        assert!(
            name.starts_with("web.") && is_dns_subdomain(&name),
            "{name}"
        );
        assert!(
            v["metadata"].get("generateName").is_none(),
            "the server refuses a generateName ending in '.'"
        );
        assert_eq!(v["reason"], "AddressAllocationFailed");
        assert_eq!(v["type"], "Warning");
        assert_eq!(v["regarding"]["kind"], "Pod");
        assert_eq!(v["regarding"]["uid"], "u-1");
        assert_eq!(
            v["reportingController"],
            "switchyard.io/switchyard-controller"
        );
        assert_eq!(v["reportingInstance"], "replica-0");
        assert!(v["eventTime"].is_string());
        assert!(v["note"].as_str().unwrap().len() <= 1024, "note over 1 KiB");
        send.send_response(json_response(201, v));
        // The same Event again: a patch of the first one's series.
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.method(), "PATCH");
        assert!(
            req.uri().path().starts_with(&format!(
                "/apis/events.k8s.io/v1/namespaces/ns/events/{name}"
            )),
            "{}",
            req.uri().path()
        );
        let v = body_json(req).await;
        assert_eq!(v["series"]["count"], 2);
        send.send_response(json_response(200, v));
        // A Node's Event goes to `default`.
        let (req, send) = next(&mut handle).await;
        assert_eq!(
            req.uri().path(),
            "/apis/events.k8s.io/v1/namespaces/default/events"
        );
        let v = body_json(req).await;
        send.send_response(status_response(status::invalid(
            "Event",
            "events.k8s.io",
            v["metadata"]["name"].as_str().unwrap_or_default(),
            &[FieldError::required("reportingController")],
        )));
    });
    let ev = EventRecord {
        regarding: ObjectRef::pod("ns", "web", "u-1"),
        type_: "Warning".into(),
        reason: "AddressAllocationFailed".into(),
        action: "Allocate".into(),
        note: "x".repeat(5000),
    };
    c.emit_event(ev.clone()).await.unwrap();
    c.emit_event(ev).await.unwrap();
    let err = c
        .emit_event(EventRecord {
            regarding: ObjectRef::node("n1", "nu"),
            type_: "Warning".into(),
            reason: "SubnetAllocationFailed".into(),
            action: "Allocate".into(),
            note: "none left".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), 422, "{err:?}");
    server.await.unwrap();
}

#[tokio::test]
async fn leases_answer_as_the_server_does() {
    let (c, mut handle) = cluster();
    let server = tokio::spawn(async move {
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.method(), "GET");
        assert_eq!(
            req.uri().path(),
            "/apis/coordination.k8s.io/v1/namespaces/switchyard/leases/ctl"
        );
        send.send_response(status_response(status::not_found(
            "coordination.k8s.io",
            "leases",
            "ctl",
        )));
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.method(), "POST");
        send.send_response(status_response(status::already_exists(
            "coordination.k8s.io",
            "leases",
            "ctl",
        )));
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.method(), "PUT");
        assert_eq!(
            req.uri().path(),
            "/apis/coordination.k8s.io/v1/namespaces/switchyard/leases/ctl"
        );
        let v = body_json(req).await;
        assert_eq!(v["metadata"]["resourceVersion"], "3");
        send.send_response(status_response(status::conflict(
            "coordination.k8s.io",
            "leases",
            "ctl",
        )));
    });
    assert_eq!(
        c.get_lease("switchyard".into(), "ctl".into())
            .await
            .unwrap(),
        None
    );
    let lease = Lease {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("ctl".into()),
            namespace: Some("switchyard".into()),
            resource_version: Some("3".into()),
            ..Default::default()
        },
        spec: None,
    };
    assert!(matches!(
        c.create_lease(lease.clone()).await,
        Err(KubeError::Conflict(m)) if m.contains("already exists")
    ));
    assert!(matches!(
        c.replace_lease(lease).await,
        Err(KubeError::Conflict(_))
    ));
    server.await.unwrap();
}
