//! The typed tables (`ovsdb::nb`, `ovsdb::vswitch`) are generated from the
//! schemas checked in under `ovsdb/schemas/`. These tests fail when the
//! OVS/OVN installed here (what the e2e tests and production run) ships a
//! different schema, so an upgrade cannot silently leave the types behind.
//!
//! To fix a failure: copy the installed file over the checked-in one,
//! rebuild, and follow the compiler through the code that uses the changed
//! tables.

use std::collections::BTreeSet;

use serde_json::Value as Json;

fn load(path: &str) -> Json {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("reading {path}: {e} (the drift check needs Debian's openvswitch-common and ovn-common)")
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON: {e}"))
}

fn tables(schema: &Json) -> &serde_json::Map<String, Json> {
    schema["tables"].as_object().expect("schema has tables")
}

/// What differs, table by table, so the failure says where to look.
fn describe_drift(checked_in: &Json, installed: &Json) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["name", "version", "cksum"] {
        if checked_in[key] != installed[key] {
            out.push(format!(
                "{key}: checked in {}, installed {}",
                checked_in[key], installed[key]
            ));
        }
    }
    let (ours, theirs) = (tables(checked_in), tables(installed));
    let names: BTreeSet<&String> = ours.keys().chain(theirs.keys()).collect();
    for t in names {
        match (ours.get(t), theirs.get(t)) {
            (Some(_), None) => out.push(format!("table {t}: removed in the installed schema")),
            (None, Some(_)) => out.push(format!("table {t}: added in the installed schema")),
            (Some(a), Some(b)) if a != b => {
                let (ac, bc) = (&a["columns"], &b["columns"]);
                let cols: BTreeSet<&String> = ac
                    .as_object()
                    .into_iter()
                    .chain(bc.as_object())
                    .flat_map(|m| m.keys())
                    .collect();
                let changed: Vec<&str> = cols
                    .into_iter()
                    .filter(|c| ac.get(c.as_str()) != bc.get(c.as_str()))
                    .map(String::as_str)
                    .collect();
                if changed.is_empty() {
                    out.push(format!("table {t}: table options differ"));
                } else {
                    out.push(format!("table {t}: columns differ: {}", changed.join(", ")));
                }
            }
            _ => {}
        }
    }
    out
}

fn assert_no_drift(checked_in_path: &str, installed_path: &str) {
    let checked_in = load(checked_in_path);
    let installed = load(installed_path);
    // Parsed, not textual, comparison: formatting changes are not drift.
    if checked_in != installed {
        panic!(
            "{checked_in_path} differs from {installed_path}:\n  {}\n\
             Copy the installed schema over the checked-in one and rebuild; \
             the typed tables are regenerated from it.",
            describe_drift(&checked_in, &installed).join("\n  ")
        );
    }
}

fn checked_in(file: &str) -> String {
    format!("{}/schemas/{file}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn northbound_schema_matches_installed_ovn() {
    assert_no_drift(
        &checked_in("ovn-nb.ovsschema"),
        "/usr/share/ovn/ovn-nb.ovsschema",
    );
}

#[test]
fn vswitch_schema_matches_installed_ovs() {
    assert_no_drift(
        &checked_in("vswitch.ovsschema"),
        "/usr/share/openvswitch/vswitch.ovsschema",
    );
}

/// The generated modules describe the checked-in files (guards against a
/// stale build or a generator that skips tables).
#[test]
fn generated_modules_match_checked_in_schemas() {
    for (json, database, version, table_names) in [
        (
            ovsdb::nb::SCHEMA_JSON,
            ovsdb::nb::DATABASE,
            ovsdb::nb::SCHEMA_VERSION,
            ovsdb::nb::TABLES,
        ),
        (
            ovsdb::vswitch::SCHEMA_JSON,
            ovsdb::vswitch::DATABASE,
            ovsdb::vswitch::SCHEMA_VERSION,
            ovsdb::vswitch::TABLES,
        ),
    ] {
        let schema = ovsdb::Schema::from_json(&serde_json::from_str(json).unwrap()).unwrap();
        assert_eq!(schema.name, database);
        assert_eq!(schema.version, version);
        let names: Vec<&str> = schema.tables.keys().map(String::as_str).collect();
        assert_eq!(names, table_names, "{database}");
    }

    let nb = ovsdb::Schema::from_json(&load(&checked_in("ovn-nb.ovsschema"))).unwrap();
    let columns = |s: &ovsdb::Schema, t: &str| -> Vec<String> {
        s.table(t).unwrap().columns.keys().cloned().collect()
    };
    use ovsdb::nb::{Acl, LogicalSwitch, LogicalSwitchPort};
    assert_eq!(
        columns(&nb, LogicalSwitchPort::TABLE),
        LogicalSwitchPort::COLUMNS
    );
    assert_eq!(columns(&nb, LogicalSwitch::TABLE), LogicalSwitch::COLUMNS);
    assert_eq!(columns(&nb, Acl::TABLE), Acl::COLUMNS);

    let ovs = ovsdb::Schema::from_json(&load(&checked_in("vswitch.ovsschema"))).unwrap();
    use ovsdb::vswitch::{Bridge, Interface, OpenVswitch};
    assert_eq!(columns(&ovs, Interface::TABLE), Interface::COLUMNS);
    assert_eq!(columns(&ovs, Bridge::TABLE), Bridge::COLUMNS);
    assert_eq!(columns(&ovs, OpenVswitch::TABLE), OpenVswitch::COLUMNS);
}
