//! The part of an `.ovsschema` file (RFC 7047 §3.2) the generator needs.
//!
//! This is deliberately separate from `ovsdb::Schema`: a build script cannot
//! depend on the crate it builds. It is also stricter: anything it does not
//! understand stops the build, since silently skipping a column would make
//! the typed tables lie about the database.

use serde_json::{Map, Value as Json};

pub struct Schema {
    pub name: String,
    pub version: String,
    /// Sorted by name, so the generated code does not depend on file order.
    pub tables: Vec<Table>,
}

pub struct Table {
    pub name: String,
    pub is_root: bool,
    pub max_rows: Option<u64>,
    pub indexes: Vec<Vec<String>>,
    /// Sorted by name; `_uuid` and `_version` are implicit and not listed.
    pub columns: Vec<Column>,
}

pub struct Column {
    pub name: String,
    pub key: BaseType,
    /// Present for a map column.
    pub value: Option<BaseType>,
    pub min: u64,
    /// `None` is "unlimited".
    pub max: Option<u64>,
    pub mutable: bool,
    pub ephemeral: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Atomic {
    Integer,
    Real,
    Boolean,
    String,
    Uuid,
}

pub struct BaseType {
    pub atomic: Atomic,
    /// The allowed values, as JSON text, when the type is an enum.
    pub enumeration: Vec<String>,
    pub ref_table: Option<String>,
    pub weak: bool,
    /// Range constraints as `(min, max)` text, for documentation only.
    pub range: Option<(Option<String>, Option<String>)>,
}

/// How a column is represented in Rust.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Exactly one value.
    Scalar,
    /// Zero or one value.
    Optional,
    Set,
    Map,
}

impl Column {
    pub fn shape(&self) -> Shape {
        match (&self.value, self.min, self.max) {
            (Some(_), _, _) => Shape::Map,
            (None, 1, Some(1)) => Shape::Scalar,
            (None, 0, Some(1)) => Shape::Optional,
            (None, _, _) => Shape::Set,
        }
    }
}

pub fn parse(text: &str, file: &str) -> Schema {
    let json: Json = serde_json::from_str(text).unwrap_or_else(|e| panic!("{file}: not JSON: {e}"));
    let obj = object(&json, file);
    let mut tables: Vec<Table> = object(field(obj, "tables", file), file)
        .iter()
        .map(|(name, t)| parse_table(name, t, &format!("{file}: table {name}")))
        .collect();
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    Schema {
        name: string(field(obj, "name", file), file),
        version: string(field(obj, "version", file), file),
        tables,
    }
}

fn parse_table(name: &str, json: &Json, ctx: &str) -> Table {
    let obj = object(json, ctx);
    let mut columns: Vec<Column> = object(field(obj, "columns", ctx), ctx)
        .iter()
        .map(|(cname, c)| parse_column(cname, c, &format!("{ctx}: column {cname}")))
        .collect();
    columns.sort_by(|a, b| a.name.cmp(&b.name));
    let indexes = match obj.get("indexes") {
        None => Vec::new(),
        Some(j) => array(j, ctx)
            .iter()
            .map(|index| array(index, ctx).iter().map(|c| string(c, ctx)).collect())
            .collect(),
    };
    Table {
        name: name.to_string(),
        is_root: obj.get("isRoot").and_then(Json::as_bool).unwrap_or(false),
        max_rows: obj.get("maxRows").and_then(Json::as_u64),
        indexes,
        columns,
    }
}

fn parse_column(name: &str, json: &Json, ctx: &str) -> Column {
    let obj = object(json, ctx);
    let ty = field(obj, "type", ctx);
    let (key, value, min, max) = match ty {
        Json::String(_) => (parse_base(ty, ctx), None, 1, Some(1)),
        Json::Object(t) => {
            let min = t.get("min").map_or(1, |m| {
                m.as_u64().unwrap_or_else(|| panic!("{ctx}: bad min {m}"))
            });
            let max = match t.get("max") {
                None => Some(1),
                Some(Json::String(s)) if s == "unlimited" => None,
                Some(m) => Some(m.as_u64().unwrap_or_else(|| panic!("{ctx}: bad max {m}"))),
            };
            let value = t.get("value").map(|v| parse_base(v, ctx));
            (parse_base(field(t, "key", ctx), ctx), value, min, max)
        }
        _ => panic!("{ctx}: bad type {ty}"),
    };
    Column {
        name: name.to_string(),
        key,
        value,
        min,
        max,
        mutable: obj.get("mutable").and_then(Json::as_bool).unwrap_or(true),
        ephemeral: obj
            .get("ephemeral")
            .and_then(Json::as_bool)
            .unwrap_or(false),
    }
}

fn parse_base(json: &Json, ctx: &str) -> BaseType {
    let (atomic_name, obj) = match json {
        Json::String(s) => (s.as_str(), None),
        Json::Object(o) => (
            field(o, "type", ctx)
                .as_str()
                .unwrap_or_else(|| panic!("{ctx}: bad base type {json}")),
            Some(o),
        ),
        _ => panic!("{ctx}: bad base type {json}"),
    };
    let atomic = match atomic_name {
        "integer" => Atomic::Integer,
        "real" => Atomic::Real,
        "boolean" => Atomic::Boolean,
        "string" => Atomic::String,
        "uuid" => Atomic::Uuid,
        other => panic!("{ctx}: unknown atomic type {other:?}"),
    };
    let mut base = BaseType {
        atomic,
        enumeration: Vec::new(),
        ref_table: None,
        weak: false,
        range: None,
    };
    let Some(o) = obj else { return base };
    if let Some(e) = o.get("enum") {
        // A one-value enum is written as a bare atom, otherwise as ["set", [...]].
        base.enumeration = match e {
            Json::Array(a) if a.len() == 2 && a[0] == "set" => {
                array(&a[1], ctx).iter().map(Json::to_string).collect()
            }
            atom => vec![atom.to_string()],
        };
    }
    base.ref_table = o.get("refTable").and_then(Json::as_str).map(str::to_string);
    base.weak = o.get("refType").and_then(Json::as_str) == Some("weak");
    let bounds = match atomic {
        Atomic::Integer => ("minInteger", "maxInteger"),
        Atomic::Real => ("minReal", "maxReal"),
        Atomic::String => ("minLength", "maxLength"),
        Atomic::Boolean | Atomic::Uuid => return base,
    };
    let lo = o.get(bounds.0).map(Json::to_string);
    let hi = o.get(bounds.1).map(Json::to_string);
    if lo.is_some() || hi.is_some() {
        base.range = Some((lo, hi));
    }
    base
}

fn field<'a>(obj: &'a Map<String, Json>, name: &str, ctx: &str) -> &'a Json {
    obj.get(name)
        .unwrap_or_else(|| panic!("{ctx}: missing {name:?}"))
}

fn object<'a>(json: &'a Json, ctx: &str) -> &'a Map<String, Json> {
    json.as_object()
        .unwrap_or_else(|| panic!("{ctx}: expected an object, got {json}"))
}

fn array<'a>(json: &'a Json, ctx: &str) -> &'a Vec<Json> {
    json.as_array()
        .unwrap_or_else(|| panic!("{ctx}: expected an array, got {json}"))
}

fn string(json: &Json, ctx: &str) -> String {
    json.as_str()
        .unwrap_or_else(|| panic!("{ctx}: expected a string, got {json}"))
        .to_string()
}
