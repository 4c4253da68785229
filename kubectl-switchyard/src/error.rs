//! The library's one error type.

/// What can go wrong while asking Kubernetes and OVN about a packet or the
/// cluster's health. Each variant names the object or database involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("OVSDB {remote}: {source}")]
    Ovsdb {
        remote: String,
        #[source]
        source: ovsdb::Error,
    },
    #[error("running {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed: {stderr}")]
    Tool { program: String, stderr: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(e.to_string())
    }
}
