//! OVSDB values, rows, schemas and `transact` results from JSON
//! (`Value::from_json`, `Row::from_json`, `Schema::from_json`, the parsing
//! of a transaction's result).
//!
//! Input: JSON text, as the server would send it. Checked: no panic; the
//! borrowing and consuming decoders agree; a decoded value or row writes
//! back to JSON that decodes to itself, and its `Serialize` form is the
//! same text as `to_json`; a parsed schema builds a replica; memory stays
//! within a fixed multiple of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ovsdb::fuzzing::{self, ReplicaHarness};
use ovsdb::{Atom, Row, Schema, Value};
use serde_json::Value as Json;
use switchyard_fuzz::bounded;

fn value(j: &Json) {
    let borrowed = Value::from_json(j);
    let owned = fuzzing::value_from_json_owned(j.clone());
    match (&borrowed, &owned) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "decoders disagree on {j}"),
        (Err(_), Err(_)) => {}
        _ => panic!("decoders disagree on {j}: {borrowed:?} vs {owned:?}"),
    }
    if let Ok(v) = borrowed {
        let back = v.to_json();
        assert_eq!(
            Value::from_json(&back).expect("re-decoding our own JSON"),
            v,
            "{j} -> {back}"
        );
        assert_eq!(
            serde_json::to_string(&v).expect("serialize"),
            back.to_string(),
            "Serialize and to_json differ"
        );
        let _ = (v.as_str(), v.as_i64(), v.as_uuid(), v.strings(), v.uuids());
        let _ = v.map_get("k");
    }
    if let Ok(a) = Atom::from_json(j) {
        assert_eq!(Atom::from_json(&a.to_json()).expect("atom round trip"), a);
        let _ = a.to_string();
    }
}

fn row(j: &Json) {
    let borrowed = Row::from_json(j);
    let owned = fuzzing::row_from_json_owned(j.clone());
    match (&borrowed, &owned) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "row decoders disagree on {j}"),
        (Err(_), Err(_)) => {}
        _ => panic!("row decoders disagree on {j}"),
    }
    if let Ok(r) = borrowed {
        let back = r.to_json();
        assert_eq!(Row::from_json(&back).expect("row round trip"), r);
        assert_eq!(
            serde_json::to_string(&r).expect("serialize"),
            back.to_string()
        );
        let _ = (r.uuid(), r.str("name"), r.map_get("external_ids", "k"));
    }
}

fn exercise(j: &Json) {
    value(j);
    row(j);
    if let Json::Array(items) = j {
        for item in items.iter().take(64) {
            value(item);
        }
    }
    if let Json::Object(o) = j {
        for v in o.values().take(64) {
            value(v);
            row(v);
        }
    }
    for ops in 0..3 {
        let _ = fuzzing::parse_transact_result(ops, j);
    }
    if let Ok(schema) = Schema::from_json(j) {
        for (t, ts) in &schema.tables {
            for (c, cs) in &ts.columns {
                let _ = (cs.kind.is_map(), cs.kind.is_scalar(), cs.kind.is_optional());
                assert!(schema.column(t, c).is_some());
            }
        }
        let _ = ReplicaHarness::new(schema);
    }
}

fuzz_target!(|data: &[u8]| {
    bounded("ovsdb values", data, 256, 256 << 10, |data| {
        if let Ok(j) = serde_json::from_slice::<Json>(data) {
            exercise(&j);
        }
    });
});
