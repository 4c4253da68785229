//! Typed rows for every `Open_vSwitch` table (the local OVS database the
//! node agent writes bridges, ports and interfaces into).
//!
//! Generated at build time by `build.rs` from `schemas/vswitch.ovsschema`, a
//! checked-in copy of the schema Open vSwitch installs, so the build never
//! depends on the machine. `tests/schema_drift.rs` fails when the installed
//! schema differs from that copy; the fix is to copy the new file in, which
//! regenerates these types, and let the compiler point at what changed.
//!
//! Naming follows [`crate::nb`]: the `Open_vSwitch` table is
//! [`OpenVswitch`], `Interface` is [`Interface`], and
//! `Interface::EXTERNAL_IDS` is the column name. Note that `name` is
//! immutable in `Bridge`, `Port` and `Interface`: update them with
//! `to_row_columns`, not `to_row`.

include!(concat!(env!("OUT_DIR"), "/vswitch.rs"));
