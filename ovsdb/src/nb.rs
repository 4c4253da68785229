//! Typed rows for every `OVN_Northbound` table.
//!
//! Generated at build time by `build.rs` from `schemas/ovn-nb.ovsschema`, a
//! checked-in copy of the schema OVN installs, so the build never depends on
//! the machine. `tests/schema_drift.rs` fails when the installed OVN's schema
//! differs from that copy; the fix is to copy the new file in, which
//! regenerates these types, and let the compiler point at what changed.
//!
//! Each table is a struct named after it (`Logical_Switch_Port` is
//! [`LogicalSwitchPort`], `ACL` is [`Acl`]) with a field per column, its
//! names as constants (`LogicalSwitchPort::TABLE`,
//! `LogicalSwitchPort::EXTERNAL_IDS`) and `from_row`/`to_row` to convert
//! from and to the untyped [`Row`] that transactions and
//! replicas use. Enumerated string columns stay `String`, so a value a newer
//! server introduces decodes instead of failing.
//!
//! ```
//! use ovsdb::nb::LogicalSwitch;
//! use ovsdb::Transaction;
//!
//! let ls = LogicalSwitch {
//!     name: "node-a".into(),
//!     other_config: [("subnet".to_string(), "10.244.1.0/24".to_string())].into(),
//!     ..Default::default()
//! };
//! let mut tx = Transaction::new(ovsdb::nb::DATABASE);
//! tx.insert(LogicalSwitch::TABLE, ls.to_row());
//! assert_eq!(LogicalSwitch::from_row(&ls.to_row()).unwrap(), ls);
//! ```

include!(concat!(env!("OUT_DIR"), "/nb.rs"));
