//! Where the agent learns Services and EndpointSlices (all of them, in
//! every namespace), for the health check ports ([`crate::health`]).
//!
//! As with [`crate::pod_source`], two implementations:
//!
//! - [`KubeServiceSource`] (`--pod-source=kube`): kube-rs reflectors
//!   listing and watching `services` and `discovery.k8s.io`
//!   `endpointslices` cluster-wide (kube-proxy's view: any node may be
//!   asked about any Service);
//! - [`DirServiceSource`] (`--pod-source=dir:/path`): the files
//!   `services/<namespace>_<name>.json` and
//!   `endpointslices/<namespace>_<name>.json` under the pod directory, each
//!   the object as the API server returns it, written atomically (to
//!   another name, then renamed) and deleted when the object goes. Only
//!   `*.json` files are read. An inotify watch on both directories (the
//!   agent creates them when missing) tells the reader when to look again.
//!
//! A file that cannot be read or parsed is reported in
//! [`Snapshot::errors`] and left out; the rest is served.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// The Services and EndpointSlices at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub services: Vec<Service>,
    pub slices: Vec<EndpointSlice>,
    /// What could not be read (the rest is in the lists).
    pub errors: Vec<String>,
}

/// The boundary to the Kubernetes API for Services and EndpointSlices.
pub trait ServiceSource: Send + Sync {
    fn snapshot(&self) -> BoxFuture<'_, Snapshot>;
    /// Marked changed whenever an object may have changed; subscribe
    /// before reading.
    fn changes(&self) -> watch::Receiver<()>;
    /// How often to read again without being told of a change.
    fn recheck_interval(&self) -> Duration {
        Duration::from_secs(10)
    }
}

/// The subdirectories of the pod directory.
pub const SERVICES_DIR: &str = "services";
pub const ENDPOINT_SLICES_DIR: &str = "endpointslices";

/// Parses the `*.json` files among `files` (name, contents) as `K`; the
/// others are skipped (temporary files of a writer), the unparsable
/// reported.
pub fn parse_files<K: DeserializeOwned>(files: Vec<(String, Vec<u8>)>) -> (Vec<K>, Vec<String>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (name, bytes) in files {
        if !name.ends_with(".json") {
            continue;
        }
        match serde_json::from_slice(&bytes) {
            Ok(k) => out.push(k),
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    (out, errors)
}

/// Services and EndpointSlices as files under a directory (module doc).
pub struct DirServiceSource {
    dir: PathBuf,
    changes: watch::Receiver<()>,
    watching: bool,
}

impl DirServiceSource {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        let dir = dir.into();
        let (tx, changes) = watch::channel(());
        let watch = Inotify::init(InitFlags::IN_CLOEXEC).and_then(|ino| {
            for sub in [SERVICES_DIR, ENDPOINT_SLICES_DIR] {
                let path = dir.join(sub);
                // The writer may not have made it yet.
                let _ = std::fs::create_dir_all(&path);
                ino.add_watch(
                    &path,
                    AddWatchFlags::IN_CLOSE_WRITE
                        | AddWatchFlags::IN_MOVED_TO
                        | AddWatchFlags::IN_DELETE
                        | AddWatchFlags::IN_MOVED_FROM,
                )?;
            }
            Ok(ino)
        });
        let watching = match watch {
            Ok(ino) => std::thread::Builder::new()
                .name("service-dir-watch".into())
                .spawn(move || {
                    while let Ok(events) = ino.read_events() {
                        if !events.is_empty() && tx.send(()).is_err() {
                            break;
                        }
                    }
                })
                .is_ok(),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the service directories; polling them");
                false
            }
        };
        DirServiceSource {
            dir,
            changes,
            watching,
        }
    }
}

/// Every file in `dir` (name, contents); a missing directory is empty, a
/// file gone between listing and reading is skipped.
fn read_dir(dir: &Path) -> (Vec<(String, Vec<u8>)>, Vec<String>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (files, errors),
        Err(e) => return (files, vec![format!("{}: {e}", dir.display())]),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        match std::fs::read(entry.path()) {
            Ok(bytes) => files.push((name, bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("{}: {e}", entry.path().display())),
        }
    }
    (files, errors)
}

impl ServiceSource for DirServiceSource {
    fn snapshot(&self) -> BoxFuture<'_, Snapshot> {
        let dir = self.dir.clone();
        Box::pin(async move {
            let read = tokio::task::spawn_blocking(move || {
                let (svc_files, mut errors) = read_dir(&dir.join(SERVICES_DIR));
                let (slice_files, more) = read_dir(&dir.join(ENDPOINT_SLICES_DIR));
                errors.extend(more);
                let (services, more) = parse_files(svc_files);
                errors.extend(more);
                let (slices, more) = parse_files(slice_files);
                errors.extend(more);
                Snapshot {
                    services,
                    slices,
                    errors,
                }
            })
            .await;
            read.unwrap_or_else(|e| Snapshot {
                errors: vec![format!("reading the service directories: {e}")],
                ..Snapshot::default()
            })
        })
    }

    fn changes(&self) -> watch::Receiver<()> {
        self.changes.clone()
    }

    fn recheck_interval(&self) -> Duration {
        if self.watching {
            Duration::from_secs(10)
        } else {
            Duration::from_millis(200)
        }
    }
}

/// Every Service and EndpointSlice from kube-rs reflectors.
pub struct KubeServiceSource {
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    changes: watch::Receiver<()>,
}

/// Runs a reflector of every `K` into a store, marking `tx` on every
/// event (the store is updated before the event is yielded).
fn reflect<K>(api: Api<K>, tx: watch::Sender<()>, what: &'static str) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => {
                    let _ = tx.send(());
                }
                Err(e) => tracing::warn!(error = %e, "{what} watch error; retrying"),
            }
        }
    });
    reader
}

impl KubeServiceSource {
    /// Starts both reflectors on the current runtime. Until their first
    /// lists complete the snapshot is empty (no health check ports yet).
    pub fn start(client: kube::Client) -> Arc<Self> {
        let (tx, changes) = watch::channel(());
        let services = reflect(Api::<Service>::all(client.clone()), tx.clone(), "service");
        let slices = reflect(Api::<EndpointSlice>::all(client), tx, "endpointslice");
        Arc::new(KubeServiceSource {
            services,
            slices,
            changes,
        })
    }
}

impl ServiceSource for KubeServiceSource {
    fn snapshot(&self) -> BoxFuture<'_, Snapshot> {
        Box::pin(async move {
            Snapshot {
                services: self
                    .services
                    .state()
                    .iter()
                    .map(|s| (**s).clone())
                    .collect(),
                slices: self.slices.state().iter().map(|s| (**s).clone()).collect(),
                errors: vec![],
            }
        })
    }

    fn changes(&self) -> watch::Receiver<()> {
        self.changes.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_json_files_and_reports_bad_ones() {
        let files = vec![
            (
                "web_front.json".to_string(),
                br#"{"metadata":{"namespace":"web","name":"front"}}"#.to_vec(),
            ),
            ("web_front.json.tmp~".to_string(), b"{".to_vec()),
            ("web_bad.json".to_string(), b"{".to_vec()),
        ];
        let (services, errors) = parse_files::<Service>(files);
        assert_eq!(services.len(), 1);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("web_bad.json: "), "{errors:?}");
    }

    #[tokio::test]
    async fn dir_source_reads_and_reports_changes() {
        let dir = tempfile::tempdir().unwrap();
        let src = DirServiceSource::new(dir.path());
        assert_eq!(src.recheck_interval(), Duration::from_secs(10));
        let empty = src.snapshot().await;
        assert!(empty.services.is_empty() && empty.slices.is_empty() && empty.errors.is_empty());
        let mut rx = src.changes();
        rx.borrow_and_update();
        let slice = r#"{"metadata":{"namespace":"web","name":"front-x"},"addressType":"IPv4","endpoints":[]}"#;
        let tmp = dir
            .path()
            .join(ENDPOINT_SLICES_DIR)
            .join("web_front-x.json.tmp~");
        std::fs::write(&tmp, slice).unwrap();
        std::fs::rename(
            &tmp,
            dir.path()
                .join(ENDPOINT_SLICES_DIR)
                .join("web_front-x.json"),
        )
        .unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("a change within 5 s")
            .unwrap();
        std::fs::write(dir.path().join(SERVICES_DIR).join("web_bad.json"), "[").unwrap();
        let snap = src.snapshot().await;
        assert_eq!(snap.slices.len(), 1);
        assert!(snap.services.is_empty());
        assert_eq!(snap.errors.len(), 1, "{:?}", snap.errors);
    }
}
