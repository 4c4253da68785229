//! Generates the typed tables (`ovsdb::nb`, `ovsdb::vswitch`) from the
//! schemas checked in under `schemas/`.
//!
//! The schemas are copies, not the files Debian installs, so a build gives
//! the same code on every machine; `tests/schema_drift.rs` fails when the
//! copies and the installed OVS/OVN disagree, which is the cue to copy the
//! new files in and let this script regenerate. The generator itself is in
//! `build/`: `schema.rs` reads a schema, `codegen.rs` writes Rust, and
//! `codec.rs` is the runtime half that the output carries with it.

use std::path::PathBuf;
use std::{env, fs};

#[path = "build/codegen.rs"]
mod codegen;
#[path = "build/schema.rs"]
mod schema;

/// (schema file under `schemas/`, generated file in `OUT_DIR`, expected database name)
const SCHEMAS: &[(&str, &str, &str)] = &[
    ("ovn-nb.ovsschema", "nb.rs", "OVN_Northbound"),
    ("vswitch.ovsschema", "vswitch.rs", "Open_vSwitch"),
];

fn main() {
    for f in ["build/codegen.rs", "build/schema.rs", "build/codec.rs"] {
        println!("cargo:rerun-if-changed={f}");
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for &(schema_file, out_file, database) in SCHEMAS {
        let path = format!("schemas/{schema_file}");
        println!("cargo:rerun-if-changed={path}");
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        let schema = schema::parse(&text, &path);
        assert_eq!(schema.name, database, "{path} defines the wrong database");
        check_unique_names(&schema);
        let code = codegen::generate(&schema, schema_file);
        let out = out_dir.join(out_file);
        fs::write(&out, code).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
    }
}

/// Two tables whose names differ only in case or underscores would map to
/// one struct; better a clear build failure than a confusing compile error.
fn check_unique_names(schema: &schema::Schema) {
    let mut seen = std::collections::BTreeMap::new();
    for t in &schema.tables {
        if let Some(other) = seen.insert(codegen::struct_name(&t.name), &t.name) {
            panic!(
                "{}: tables {other} and {} both map to struct {}",
                schema.name,
                t.name,
                codegen::struct_name(&t.name)
            );
        }
    }
}
