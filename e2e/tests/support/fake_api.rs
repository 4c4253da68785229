//! A fake kube-apiserver for kube-rs clients (over tower-test's mock
//! service) that records every request as the API server's authorizer
//! reads it, and the reading itself ([`Request`], [`request_info`]).
//! Used by `tests/rbac.rs`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::channel::mpsc;
use futures::StreamExt;
use http::{Request as HttpRequest, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use kube::client::Body;
use kube_memory::ApiCall;
use serde_json::{json, Value};

/// One API request's attributes as RBAC checks them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Request {
    pub verb: String,
    /// `""` for the core group.
    pub group: String,
    /// `resource` or `resource/subresource`.
    pub resource: String,
    /// `None`: a cluster-scoped object, or a collection across namespaces.
    pub namespace: Option<String>,
    /// `None` for requests on a collection (list, watch, create).
    pub name: Option<String>,
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        write!(f, "{} {group}/{}", self.verb, self.resource)?;
        match &self.namespace {
            Some(ns) => write!(f, " in {ns}")?,
            None => write!(f, " (cluster-wide)")?,
        }
        if let Some(n) = &self.name {
            write!(f, " named {n}")?;
        }
        Ok(())
    }
}

impl From<ApiCall> for Request {
    fn from(c: ApiCall) -> Request {
        Request {
            verb: c.verb.to_string(),
            group: c.group,
            resource: c.resource,
            namespace: c.namespace,
            name: c.name,
        }
    }
}

/// `%XX` and `+` decoded, as a query string is read.
pub fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_params(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (url_decode(k), url_decode(v)),
            None => (url_decode(p), String::new()),
        })
        .collect()
}

/// What kube-apiserver's request-info reading (`RequestInfoFactory`) makes
/// of a resource request: the group from `/api/v1` or `/apis/G/V`, the
/// namespace from `namespaces/NS/...`, the verb from the method, whether
/// a name follows the resource and `watch=true`; a list or watch narrowed
/// by `fieldSelector=metadata.name=X` names X.
pub fn request_info(method: &str, path: &str, query: &str) -> Result<Request, String> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", g, _version, rest @ ..] => (*g, rest),
        _ => return Err(format!("{path} is not a resource path")),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, r @ ..] if !r.is_empty() => (Some(ns.to_string()), r),
        _ => (None, rest),
    };
    let (resource, name) = match rest {
        [r] => (r.to_string(), None),
        [r, n] => (r.to_string(), Some(n.to_string())),
        [r, n, sub] => (format!("{r}/{sub}"), Some(n.to_string())),
        _ => return Err(format!("{path}: no resource")),
    };
    let params = query_params(query);
    let watch = params.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = match (method, name.is_some()) {
        ("GET", _) if watch => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", false) => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return Err(format!("{method} {path}: no verb")),
    };
    let name = match (verb, &name) {
        ("list" | "watch", None) => params.get("fieldSelector").and_then(|s| {
            s.split(',')
                .find_map(|t| t.strip_prefix("metadata.name="))
                .map(str::to_string)
        }),
        _ => name,
    };
    Ok(Request {
        verb: verb.into(),
        group: group.into(),
        resource,
        namespace,
        name,
    })
}

type ResBody = UnsyncBoxBody<Bytes, Infallible>;

fn full(bytes: Vec<u8>) -> ResBody {
    Full::new(Bytes::from(bytes)).boxed_unsync()
}

fn json_response(code: u16, v: &Value) -> Response<ResBody> {
    let mut r = Response::new(full(serde_json::to_vec(v).unwrap_or_default()));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        "content-type",
        "application/json".parse().expect("constant"),
    );
    r
}

/// The `Status` body kube-apiserver sends with a refusal.
fn status_response(code: u16, reason: &str, message: String) -> Response<ResBody> {
    json_response(
        code,
        &json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code}),
    )
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// group, resource, namespace, name.
type ObjKey = (String, String, Option<String>, String);

/// The (group, plural resource) of an object, from its apiVersion and kind.
fn resource_of(obj: &Value) -> (String, String) {
    let api = obj["apiVersion"].as_str().unwrap_or_default();
    let group = api.rsplit_once('/').map(|(g, _)| g).unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default().to_lowercase();
    let plural = match kind.strip_suffix('y') {
        Some(stem) => format!("{stem}ies"),
        None => format!("{kind}s"),
    };
    (group.to_string(), plural)
}

/// A field selector term (`a.b=c`, `a.b==c`, `a.b!=c`) against an object.
fn field_matches(obj: &Value, term: &str) -> bool {
    let (path, want, equal) = if let Some((p, v)) = term.split_once("!=") {
        (p, v, false)
    } else if let Some((p, v)) = term.split_once("==") {
        (p, v, true)
    } else if let Some((p, v)) = term.split_once('=') {
        (p, v, true)
    } else {
        return false;
    };
    let have = path
        .split('.')
        .fold(obj, |v, k| &v[k])
        .as_str()
        .unwrap_or_default();
    (have == want) == equal
}

#[derive(Default)]
struct FakeState {
    objects: BTreeMap<ObjKey, Value>,
    rv: u64,
    requests: Vec<Request>,
    /// Open watches: their bodies stay open while these live.
    watches: Vec<mpsc::UnboundedSender<Bytes>>,
}

impl FakeState {
    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    fn store(&mut self, mut obj: Value) -> Value {
        let (group, resource) = resource_of(&obj);
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = json!(rv);
        let meta = &obj["metadata"];
        let key = (
            group,
            resource,
            meta["namespace"].as_str().map(str::to_string),
            meta["name"].as_str().unwrap_or_default().to_string(),
        );
        self.objects.insert(key, obj.clone());
        obj
    }
}

/// An API server over tower-test's mock service: it answers kube-rs as
/// kube-apiserver does (lists with a resourceVersion, watches that stay
/// open, gets, creates, updates and merge patches with their 404, 409 and
/// resourceVersion preconditions, field selectors) and records every
/// request as [`request_info`] reads it.
pub struct FakeApiServer {
    state: Arc<Mutex<FakeState>>,
    pub client: kube::Client,
}

impl FakeApiServer {
    /// Starts serving on the current tokio runtime, holding `objects`.
    pub fn start(objects: Vec<Value>) -> FakeApiServer {
        let (svc, mut handle) = tower_test::mock::pair::<HttpRequest<Body>, Response<ResBody>>();
        let state = Arc::new(Mutex::new(FakeState::default()));
        {
            let mut st = state.lock().unwrap();
            for o in objects {
                st.store(o);
            }
        }
        let serving = state.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let resp = serve(&serving, req).await;
                send.send_response(resp);
            }
        });
        FakeApiServer {
            state,
            client: kube::Client::new(svc, "default"),
        }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn saw(&self, verb: &str, resource: &str) -> bool {
        self.requests()
            .iter()
            .any(|r| r.verb == verb && r.resource == resource)
    }
}

async fn serve(state: &Mutex<FakeState>, req: HttpRequest<Body>) -> Response<ResBody> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = req.into_body().collect_bytes().await.unwrap_or_default();
    let info = match request_info(&method, &path, &query) {
        Ok(i) => i,
        Err(e) => return status_response(404, "NotFound", e),
    };
    let mut st = state.lock().unwrap();
    st.requests.push(info.clone());
    let (resource, sub) = match info.resource.split_once('/') {
        Some((r, s)) => (r.to_string(), Some(s.to_string())),
        None => (info.resource.clone(), None),
    };
    let key = (
        info.group.clone(),
        resource.clone(),
        info.namespace.clone(),
        info.name.clone().unwrap_or_default(),
    );
    let not_found = || {
        status_response(
            404,
            "NotFound",
            format!("{resource} \"{}\" not found", key.3),
        )
    };
    let params = query_params(&query);
    match info.verb.as_str() {
        "watch" => {
            let (tx, rx) = mpsc::unbounded::<Bytes>();
            st.watches.push(tx);
            let body = StreamBody::new(rx.map(|b| Ok::<_, Infallible>(Frame::data(b))));
            let mut r = Response::new(body.boxed_unsync());
            r.headers_mut().insert(
                "content-type",
                "application/json".parse().expect("constant"),
            );
            r
        }
        "list" => {
            let selector = params.get("fieldSelector").cloned().unwrap_or_default();
            let items: Vec<Value> = st
                .objects
                .iter()
                .filter(|((g, r, ns, _), _)| {
                    g == &info.group
                        && r == &resource
                        && (info.namespace.is_none() || ns == &info.namespace)
                })
                .map(|(_, o)| o)
                .filter(|o| {
                    selector
                        .split(',')
                        .filter(|t| !t.is_empty())
                        .all(|t| field_matches(o, t))
                })
                .cloned()
                .collect();
            let rv = st.rv.to_string();
            json_response(
                200,
                &json!({"apiVersion": "v1", "kind": "List",
                        "metadata": {"resourceVersion": rv}, "items": items}),
            )
        }
        "get" => match st.objects.get(&key) {
            Some(o) => json_response(200, o),
            None => not_found(),
        },
        "create" => {
            let Ok(mut obj) = serde_json::from_slice::<Value>(&body) else {
                return status_response(400, "BadRequest", "body is not JSON".into());
            };
            if let Some(ns) = &info.namespace {
                obj["metadata"]["namespace"] = json!(ns);
            }
            let Some(name) = obj["metadata"]["name"].as_str().map(str::to_string) else {
                return status_response(422, "Invalid", "metadata.name: Required value".into());
            };
            if resource_of(&obj) != (info.group.clone(), resource.clone()) {
                return status_response(400, "BadRequest", "kind does not match the path".into());
            }
            let key = (
                info.group.clone(),
                resource.clone(),
                info.namespace.clone(),
                name,
            );
            if st.objects.contains_key(&key) {
                return status_response(
                    409,
                    "AlreadyExists",
                    format!("{resource} \"{}\" already exists", key.3),
                );
            }
            obj["metadata"]["uid"] = json!(format!("uid-{}", st.rv + 1));
            let stored = st.store(obj);
            json_response(201, &stored)
        }
        "update" => {
            let Some(old) = st.objects.get(&key).cloned() else {
                return not_found();
            };
            let Ok(obj) = serde_json::from_slice::<Value>(&body) else {
                return status_response(400, "BadRequest", "body is not JSON".into());
            };
            if obj["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"] {
                return status_response(409, "Conflict", "the object has been modified".into());
            }
            let stored = st.store(obj);
            json_response(200, &stored)
        }
        "patch" => {
            if content_type != "application/merge-patch+json" {
                return status_response(
                    415,
                    "UnsupportedMediaType",
                    format!("{content_type} is not served here"),
                );
            }
            let Some(mut obj) = st.objects.get(&key).cloned() else {
                return not_found();
            };
            let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
                return status_response(400, "BadRequest", "body is not JSON".into());
            };
            let pm = &patch["metadata"];
            if !pm["resourceVersion"].is_null()
                && pm["resourceVersion"] != obj["metadata"]["resourceVersion"]
            {
                return status_response(409, "Conflict", "the object has been modified".into());
            }
            if !pm["uid"].is_null() && pm["uid"] != obj["metadata"]["uid"] {
                return status_response(422, "Invalid", "metadata.uid: field is immutable".into());
            }
            // The main resource ignores status; the status subresource
            // takes nothing but status.
            let mut patch = patch.clone();
            match sub.as_deref() {
                Some("status") => {
                    let status = patch["status"].take();
                    merge(&mut obj["status"], &status);
                }
                Some(other) => {
                    return status_response(404, "NotFound", format!("no subresource {other}"))
                }
                None => {
                    if let Some(p) = patch.as_object_mut() {
                        p.remove("status");
                    }
                    merge(&mut obj, &patch);
                }
            }
            let stored = st.store(obj);
            json_response(200, &stored)
        }
        _ => status_response(
            405,
            "MethodNotAllowed",
            format!("{method} is not served here"),
        ),
    }
}
