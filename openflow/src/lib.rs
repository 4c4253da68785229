//! OpenFlow 1.3/1.5 for Open vSwitch: a pure wire codec ([`codec`]), the
//! `ovs-ofctl` text form of flows ([`text`]), and an async client
//! ([`Client`]) with the Nicira/ONF extensions OVS pipelines need
//! (registers, conntrack, `resubmit`, bundles, `NXT_CT_FLUSH`).
//!
//! Knows nothing of Kubernetes. See `API.md` for a tour.

mod client;
pub mod codec;
mod error;
pub mod text;

pub use client::{Bundle, Client, ClientConfig, Event, Events, Remote};
pub use codec::*;
pub use error::{Error, Rejection, Result};
