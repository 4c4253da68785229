//! An RFC 7047 OVSDB client, with the extensions OVS added since:
//! `monitor_cond`/`monitor_cond_since` with `update2`/`update3`, clustered
//! databases and leader-only connections.
//!
//! The crate knows nothing of Kubernetes or OVN semantics; it gives the
//! controller and node agent a typed, reconnecting, replicated view of any
//! OVSDB database. See `API.md` beside this crate for the tour.

mod atom_map;
mod client;
mod connection;
mod error;
mod framing;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod locks;
pub mod nb;
mod remote;
mod replica;
mod schema;
mod transaction;
mod transport;
mod value;
pub mod vswitch;

pub use atom_map::AtomMap;
pub use client::{Client, ClientConfig};
pub use error::{Error, Result};
pub use remote::Remote;
pub use replica::{Change, MonitorSpec, Replica, ReplicaDb, TableData, Update};
pub use schema::{AtomicType, BaseType, ColumnSchema, ColumnType, RefType, Schema, TableSchema};
pub use transaction::{
    Condition, Mutation, OpError, OpErrorKind, OpResult, Transaction, WaitUntil,
};
pub use transport::TlsConfig;
pub use uuid::Uuid;
pub use value::{Atom, Row, Value};
