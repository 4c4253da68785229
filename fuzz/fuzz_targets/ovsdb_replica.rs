//! What a monitor's replica does with a server's messages: the replies to
//! `monitor_cond_since`/`monitor_cond` (full copies and `found` deltas) and
//! `update2`/`update3` notifications (inserts, deletes and `modify` diffs
//! merged per column type), then the typed tables' `from_row` on every row.
//!
//! Input: a byte stream as the server sends it, framed as the client frames
//! it, applied to a replica of every `OVN_Northbound` table and one of
//! every `Open_vSwitch` table (the schemas the controller and node agent
//! monitor). A message with `method` is a notification; one with `result`
//! is a monitor reply (`monitor_cond_since`'s shape when its id is even).
//! Checked: no panic; memory stays within a fixed multiple of the input.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ovsdb::fuzzing::{Framer, ReplicaHarness};
use ovsdb::{nb, vswitch, ReplicaDb, Schema};
use serde_json::Value as Json;
use switchyard_fuzz::bounded;

fn schemas() -> &'static (Schema, Schema) {
    static S: OnceLock<(Schema, Schema)> = OnceLock::new();
    S.get_or_init(|| {
        let parse = |text: &str| {
            Schema::from_json(&serde_json::from_str(text).expect("schema JSON"))
                .expect("checked-in schema")
        };
        (parse(nb::SCHEMA_JSON), parse(vswitch::SCHEMA_JSON))
    })
}

macro_rules! decode_all {
    ($db:expr, $($t:ty),* $(,)?) => {
        $(
            for (_, row) in $db.table(<$t>::TABLE).iter() {
                let _ = <$t>::from_row(row);
            }
        )*
    };
}

fn typed_nb(db: &ReplicaDb) {
    use nb::*;
    decode_all!(
        db,
        Acl,
        AddressSet,
        LoadBalancer,
        LoadBalancerGroup,
        LogicalRouter,
        LogicalRouterPolicy,
        LogicalRouterPort,
        LogicalRouterStaticRoute,
        LogicalSwitch,
        LogicalSwitchPort,
        Nat,
        NbGlobal,
        PortGroup,
        GatewayChassis,
        DhcpOptions,
    );
}

fn typed_vswitch(db: &ReplicaDb) {
    use vswitch::*;
    decode_all!(db, OpenVswitch, Bridge, Port, Interface, Controller);
}

fn apply(replica: &mut ReplicaHarness, msg: &Json) {
    let Json::Object(obj) = msg else { return };
    let mut obj = obj.clone();
    if let Some(method) = obj.remove("method") {
        let Json::String(method) = method else { return };
        let params = match obj.remove("params") {
            Some(Json::Array(a)) => a,
            _ => Vec::new(),
        };
        let _ = replica.notification(&method, params);
    } else if let Some(result) = obj.remove("result") {
        let since = obj.get("id").and_then(Json::as_u64).unwrap_or(0) % 2 == 0;
        let _ = replica.monitor_reply(since, result);
    }
    replica.drain_changes();
}

fuzz_target!(|data: &[u8]| {
    let (nb_schema, vs_schema) = schemas();
    let mut nb_replica = ReplicaHarness::new(nb_schema.clone()).expect("NB replica");
    let mut vs_replica = ReplicaHarness::new(vs_schema.clone()).expect("vswitch replica");
    bounded("ovsdb replica", data, 512, 1 << 20, |data| {
        let mut framer = Framer::new(1 << 20);
        framer.buffer().extend_from_slice(data);
        while let Ok(Some(msg)) = framer.next_message() {
            apply(&mut nb_replica, &msg);
            apply(&mut vs_replica, &msg);
        }
        nb_replica.with(typed_nb);
        vs_replica.with(typed_vswitch);
    });
});
