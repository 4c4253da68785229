//! What `kubectl kustomize` makes of `manifests/`, read as the kubelet and
//! the binaries would read it: shared by `tests/manifests.rs` and
//! `tests/rbac.rs`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, PodTemplateSpec, Probe};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
pub const NAMESPACE: &str = "switchyard";

/// Every kustomization users apply. A new overlay must be listed here
/// (`every_overlay_is_tested` fails otherwise).
pub const RENDERINGS: &[&str] = &[
    "manifests/base",
    "manifests/overlays/kind",
    "manifests/overlays/dual-stack",
    "manifests/overlays/host-ovs",
];

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate lives in the workspace")
        .to_path_buf()
}

pub fn find_tool(name: &str, also: &[&str]) -> PathBuf {
    let from_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    from_path
        .into_iter()
        .chain(also.iter().map(PathBuf::from))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{name}` is not installed (looked in PATH and {also:?}); these tests need it")
        })
}

pub fn kubectl() -> PathBuf {
    find_tool("kubectl", &["/usr/local/bin/kubectl", "/usr/bin/kubectl"])
}

pub fn bash() -> PathBuf {
    find_tool("bash", &["/bin/bash", "/usr/bin/bash"])
}

/// `kubectl kustomize DIR` as JSON documents, rendered once per test run.
pub fn render(dir: &str) -> Vec<Value> {
    static CACHE: std::sync::OnceLock<std::sync::Mutex<BTreeMap<String, Vec<Value>>>> =
        std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().unwrap().get(dir) {
        return v.clone();
    }
    let docs = render_uncached(dir);
    cache.lock().unwrap().insert(dir.to_string(), docs.clone());
    docs
}

pub fn render_uncached(dir: &str) -> Vec<Value> {
    let out = Command::new(kubectl())
        .arg("kustomize")
        .arg(repo().join(dir))
        .output()
        .expect("running kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize {dir} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("kustomize prints UTF-8");
    parse_yaml_docs(&text).unwrap_or_else(|e| panic!("{dir}: {e}"))
}

pub fn parse_yaml_docs(text: &str) -> Result<Vec<Value>, String> {
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let v = Value::deserialize(doc).map_err(|e| format!("YAML: {e}"))?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// A rendering with its objects indexed.
pub struct Rendered {
    pub dir: &'static str,
    pub objects: Vec<Value>,
}

impl Rendered {
    pub fn new(dir: &'static str) -> Self {
        Rendered {
            dir,
            objects: render(dir),
        }
    }

    pub fn all<K: DeserializeOwned + k8s_openapi::Resource>(&self) -> Vec<K> {
        self.objects
            .iter()
            .filter(|o| o["kind"] == K::KIND && o["apiVersion"] == K::API_VERSION)
            .map(|o| serde_json::from_value(o.clone()).expect("checked by the typed test"))
            .collect()
    }

    pub fn one<
        K: DeserializeOwned
            + k8s_openapi::Resource
            + k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
    >(
        &self,
        name: &str,
    ) -> K {
        let mut found: Vec<K> = self
            .all::<K>()
            .into_iter()
            .filter(|o| o.metadata().name.as_deref() == Some(name))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{}: expected one {} {name}",
            self.dir,
            K::KIND
        );
        found.remove(0)
    }

    pub fn config_map(&self, name: &str) -> BTreeMap<String, String> {
        self.one::<ConfigMap>(name).data.unwrap_or_default()
    }

    /// Every pod template with the name of its workload.
    pub fn pod_templates(&self) -> Vec<(String, PodTemplateSpec)> {
        let mut out = Vec::new();
        for d in self.all::<Deployment>() {
            out.push((
                format!("Deployment/{}", d.metadata.name.unwrap()),
                d.spec.unwrap().template,
            ));
        }
        for d in self.all::<DaemonSet>() {
            out.push((
                format!("DaemonSet/{}", d.metadata.name.unwrap()),
                d.spec.unwrap().template,
            ));
        }
        for s in self.all::<StatefulSet>() {
            out.push((
                format!("StatefulSet/{}", s.metadata.name.unwrap()),
                s.spec.unwrap().template,
            ));
        }
        out
    }

    pub fn pod_spec(&self, workload: &str) -> PodSpec {
        self.pod_templates()
            .into_iter()
            .find(|(n, _)| n == workload)
            .unwrap_or_else(|| panic!("{}: no {workload}", self.dir))
            .1
            .spec
            .expect("pod spec")
    }
}

pub fn container<'a>(spec: &'a PodSpec, name: &str) -> &'a Container {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

// ---------------------------------------------------------------------------
// Command lines.

/// A container's environment as the kubelet would give it: literal values,
/// ConfigMap keys (which must exist) and downward-API fields (as
/// `<fieldRef:PATH>` placeholders, so tests can see where a value came from).
pub fn container_env(r: &Rendered, c: &Container) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for e in c.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            v.clone()
        } else if let Some(from) = &e.value_from {
            if let Some(f) = &from.field_ref {
                format!("<fieldRef:{}>", f.field_path)
            } else if let Some(k) = &from.config_map_key_ref {
                let data = r.config_map(&k.name);
                data.get(&k.key)
                    .unwrap_or_else(|| {
                        panic!(
                            "{}: {} reads missing key {} of ConfigMap {}",
                            r.dir, c.name, k.key, k.name
                        )
                    })
                    .clone()
            } else {
                panic!(
                    "{}: {}: env {} has a source the test does not know",
                    r.dir, c.name, e.name
                )
            }
        } else {
            String::new()
        };
        env.insert(e.name.clone(), value);
    }
    env
}

/// Kubernetes' `$(VAR)` expansion of command and args; a reference to a
/// variable the container does not define is an error here (Kubernetes
/// would pass it on literally, which is never what a manifest means).
pub fn expand(s: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(a) = after.strip_prefix('(') {
            let end = a.find(')').ok_or_else(|| format!("unclosed $( in {s:?}"))?;
            let name = &a[..end];
            let v = env.get(name).ok_or_else(|| {
                format!("{s:?} refers to ${name}, which the container does not set")
            })?;
            out.push_str(v);
            rest = &a[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The container's argv (command + args), expanded.
pub fn argv(r: &Rendered, c: &Container) -> Vec<String> {
    let env = container_env(r, c);
    c.command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .map(|s| expand(s, &env).unwrap_or_else(|e| panic!("{}: {}: {e}", r.dir, c.name)))
        .collect()
}

/// Runs a binary's own clap parser on `args` with the container's
/// environment: options that read an environment variable get the
/// container's value (as clap would), never the test process's.
pub fn parse_like_the_binary<T: clap::Parser>(
    args: &[String],
    env: &BTreeMap<String, String>,
) -> Result<T, clap::Error> {
    let cmd = T::command();
    let mut full = args.to_vec();
    for a in cmd.get_arguments() {
        let (Some(var), Some(long)) = (a.get_env(), a.get_long()) else {
            continue;
        };
        let Some(v) = env.get(var.to_str().unwrap_or_default()) else {
            continue;
        };
        let flag = format!("--{long}");
        let given = args[1..]
            .iter()
            .any(|x| *x == flag || x.starts_with(&format!("{flag}=")));
        if !given {
            full.push(format!("{flag}={v}"));
        }
    }
    let cmd = cmd.mut_args(|a| a.env(None::<&'static str>));
    let matches = cmd.try_get_matches_from(full)?;
    T::from_arg_matches(&matches)
}

/// The text a container sees at `path` when it comes from a ConfigMap volume.
pub fn mounted_file(r: &Rendered, spec: &PodSpec, c: &Container, path: &str) -> String {
    for m in c.volume_mounts.iter().flatten() {
        let Some(rest) = path.strip_prefix(&format!("{}/", m.mount_path)) else {
            continue;
        };
        let vol = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == m.name)
            .unwrap_or_else(|| panic!("{}: mount {} has no volume", r.dir, m.name));
        let cm = vol
            .config_map
            .as_ref()
            .unwrap_or_else(|| panic!("{}: {path} is not from a ConfigMap", r.dir));
        let data = r.config_map(&cm.name);
        return data
            .get(rest)
            .unwrap_or_else(|| panic!("{}: ConfigMap {} has no {rest}", r.dir, cm.name))
            .clone();
    }
    panic!("{}: {} does not mount {path}", r.dir, c.name)
}

/// The host path mounted at or above `path` in the container, if any, with
/// the rest of the path appended.
pub fn host_path_of(spec: &PodSpec, c: &Container, path: &Path) -> Option<PathBuf> {
    for m in c.volume_mounts.iter().flatten() {
        if let Ok(rest) = path.strip_prefix(&m.mount_path) {
            let vol = spec.volumes.iter().flatten().find(|v| v.name == m.name)?;
            return vol
                .host_path
                .as_ref()
                .map(|h| Path::new(&h.path).join(rest));
        }
    }
    None
}

pub fn http_get_target(p: &Probe) -> (String, String) {
    let h = p.http_get.as_ref().expect("an HTTP probe");
    let port = match &h.port {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) => i.to_string(),
    };
    (h.path.clone().unwrap_or_default(), port)
}

pub fn container_port(c: &Container, name: &str) -> i32 {
    c.ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("{} has no port {name}", c.name))
        .container_port
}

/// The controller's configuration as the container would load it: flags,
/// its environment, and the ConfigMap mounted where `--config` points.
pub fn controller_config(r: &Rendered) -> switchyard_controller::Config {
    let spec = r.pod_spec("Deployment/switchyard-controller");
    let c = container(&spec, "controller");
    let args = argv(r, c);
    assert_eq!(args[0], "switchyard-controller");
    let env = container_env(r, c);
    let mut parsed: switchyard_controller::config::Args = parse_like_the_binary(&args, &env)
        .unwrap_or_else(|e| panic!("{}: the controller rejects {args:?}: {e}", r.dir));
    let path = parsed.config.clone().expect("--config");
    let text = mounted_file(r, &spec, c, path.to_str().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("controller.yaml");
    std::fs::write(&local, &text).unwrap();
    parsed.config = Some(local);
    parsed
        .into_config()
        .unwrap_or_else(|e| panic!("{}: the controller's configuration: {e}", r.dir))
}

pub fn node_args(r: &Rendered) -> switchyard_node::cli::Args {
    let spec = r.pod_spec("DaemonSet/switchyard-node");
    let c = container(&spec, "switchyard-node");
    let args = argv(r, c);
    assert_eq!(args[0], "switchyard-node");
    parse_like_the_binary(&args, &container_env(r, c))
        .unwrap_or_else(|e| panic!("{}: switchyard-node rejects {args:?}: {e}", r.dir))
}
