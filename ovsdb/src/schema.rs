//! Database schemas (RFC 7047 §3.2) as returned by `get_schema`.
//!
//! The replica needs column types to apply `update2` diffs (a scalar column
//! is replaced, a set column toggles elements, a map column merges), and the
//! typed tables are generated from the same structure.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::value::Atom;

#[derive(Clone, Debug, PartialEq)]
pub struct Schema {
    pub name: String,
    pub version: String,
    pub tables: BTreeMap<String, TableSchema>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TableSchema {
    pub columns: BTreeMap<String, ColumnSchema>,
    pub is_root: bool,
    pub max_rows: Option<u64>,
    pub indexes: Vec<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ColumnSchema {
    pub kind: ColumnType,
    pub ephemeral: bool,
    pub mutable: bool,
}

/// A column's type: a key type, an optional value type (a map), and how
/// many elements it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnType {
    pub key: BaseType,
    pub value: Option<BaseType>,
    pub min: u64,
    /// `None` is "unlimited".
    pub max: Option<u64>,
}

impl ColumnType {
    pub fn is_map(&self) -> bool {
        self.value.is_some()
    }

    /// Exactly one element: the value is replaced on modify.
    pub fn is_scalar(&self) -> bool {
        self.value.is_none() && self.min == 1 && self.max == Some(1)
    }

    /// Zero or one element.
    pub fn is_optional(&self) -> bool {
        self.value.is_none() && self.min == 0 && self.max == Some(1)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtomicType {
    Integer,
    Real,
    Boolean,
    String,
    Uuid,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefType {
    Strong,
    Weak,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BaseType {
    pub atomic: AtomicType,
    pub enumeration: Option<Vec<Atom>>,
    pub min_integer: Option<i64>,
    pub max_integer: Option<i64>,
    pub min_real: Option<f64>,
    pub max_real: Option<f64>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub ref_table: Option<String>,
    pub ref_type: RefType,
}

impl Schema {
    pub fn from_json(j: &Json) -> Result<Schema> {
        let obj = j
            .as_object()
            .ok_or_else(|| bad("schema is not an object"))?;
        let name = str_field(obj, "name")?.to_string();
        let version = obj
            .get("version")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string();
        let mut tables = BTreeMap::new();
        let tjson = obj
            .get("tables")
            .and_then(Json::as_object)
            .ok_or_else(|| bad("schema has no tables"))?;
        for (tname, t) in tjson {
            tables.insert(
                tname.clone(),
                TableSchema::from_json(t).map_err(|e| bad(format!("table {tname}: {e}")))?,
            );
        }
        Ok(Schema {
            name,
            version,
            tables,
        })
    }

    pub fn table(&self, name: &str) -> Option<&TableSchema> {
        self.tables.get(name)
    }

    pub fn column(&self, table: &str, column: &str) -> Option<&ColumnSchema> {
        self.tables.get(table)?.columns.get(column)
    }
}

impl TableSchema {
    fn from_json(j: &Json) -> Result<TableSchema> {
        let obj = j.as_object().ok_or_else(|| bad("not an object"))?;
        let mut columns = BTreeMap::new();
        let cjson = obj
            .get("columns")
            .and_then(Json::as_object)
            .ok_or_else(|| bad("no columns"))?;
        for (cname, c) in cjson {
            let cobj = c
                .as_object()
                .ok_or_else(|| bad(format!("column {cname}")))?;
            let kind = ColumnType::from_json(
                cobj.get("type")
                    .ok_or_else(|| bad(format!("column {cname} has no type")))?,
            )
            .map_err(|e| bad(format!("column {cname}: {e}")))?;
            columns.insert(
                cname.clone(),
                ColumnSchema {
                    kind,
                    ephemeral: cobj
                        .get("ephemeral")
                        .and_then(Json::as_bool)
                        .unwrap_or(false),
                    mutable: cobj.get("mutable").and_then(Json::as_bool).unwrap_or(true),
                },
            );
        }
        let indexes = obj
            .get("indexes")
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Json::as_array)
                    .map(|cols| {
                        cols.iter()
                            .filter_map(Json::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(TableSchema {
            columns,
            is_root: obj.get("isRoot").and_then(Json::as_bool).unwrap_or(false),
            max_rows: obj.get("maxRows").and_then(Json::as_u64),
            indexes,
        })
    }
}

impl ColumnType {
    fn from_json(j: &Json) -> Result<ColumnType> {
        match j {
            Json::String(_) => Ok(ColumnType {
                key: BaseType::from_json(j)?,
                value: None,
                min: 1,
                max: Some(1),
            }),
            Json::Object(obj) => {
                let key =
                    BaseType::from_json(obj.get("key").ok_or_else(|| bad("type has no key"))?)?;
                let value = obj.get("value").map(BaseType::from_json).transpose()?;
                let min = obj
                    .get("min")
                    .map(|m| m.as_u64().ok_or_else(|| bad("bad min")))
                    .transpose()?
                    .unwrap_or(1);
                let max = match obj.get("max") {
                    None => Some(1),
                    Some(Json::String(s)) if s == "unlimited" => None,
                    Some(m) => Some(m.as_u64().ok_or_else(|| bad("bad max"))?),
                };
                Ok(ColumnType {
                    key,
                    value,
                    min,
                    max,
                })
            }
            _ => Err(bad(format!("bad type {j}"))),
        }
    }
}

impl BaseType {
    /// A base type with no constraints: any value of `atomic`.
    pub fn of(atomic: AtomicType) -> BaseType {
        BaseType {
            atomic,
            enumeration: None,
            min_integer: None,
            max_integer: None,
            min_real: None,
            max_real: None,
            min_length: None,
            max_length: None,
            ref_table: None,
            ref_type: RefType::Strong,
        }
    }

    fn from_json(j: &Json) -> Result<BaseType> {
        let (atomic_name, obj) = match j {
            Json::String(s) => (s.as_str(), None),
            Json::Object(o) => (
                o.get("type")
                    .and_then(Json::as_str)
                    .ok_or_else(|| bad("base type has no type"))?,
                Some(o),
            ),
            _ => return Err(bad(format!("bad base type {j}"))),
        };
        let atomic = match atomic_name {
            "integer" => AtomicType::Integer,
            "real" => AtomicType::Real,
            "boolean" => AtomicType::Boolean,
            "string" => AtomicType::String,
            "uuid" => AtomicType::Uuid,
            other => return Err(bad(format!("unknown atomic type {other}"))),
        };
        let mut b = BaseType::of(atomic);
        if let Some(o) = obj {
            if let Some(e) = o.get("enum") {
                let v = crate::value::Value::from_json(e)?;
                b.enumeration = Some(v.atoms().to_vec());
            }
            b.min_integer = o.get("minInteger").and_then(Json::as_i64);
            b.max_integer = o.get("maxInteger").and_then(Json::as_i64);
            b.min_real = o.get("minReal").and_then(Json::as_f64);
            b.max_real = o.get("maxReal").and_then(Json::as_f64);
            b.min_length = o.get("minLength").and_then(Json::as_u64);
            b.max_length = o.get("maxLength").and_then(Json::as_u64);
            b.ref_table = o.get("refTable").and_then(Json::as_str).map(str::to_string);
            if o.get("refType").and_then(Json::as_str) == Some("weak") {
                b.ref_type = RefType::Weak;
            }
        }
        Ok(b)
    }
}

fn str_field<'a>(obj: &'a serde_json::Map<String, Json>, f: &str) -> Result<&'a str> {
    obj.get(f)
        .and_then(Json::as_str)
        .ok_or_else(|| bad(format!("missing {f}")))
}

fn bad(msg: impl Into<String>) -> Error {
    Error::Schema(msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_column_types() {
        let s = Schema::from_json(&json!({
            "name": "T", "version": "1.0.0",
            "tables": {"A": {"columns": {
                "name": {"type": "string"},
                "opt": {"type": {"key": "string", "min": 0, "max": 1}},
                "refs": {"type": {"key": {"type": "uuid", "refTable": "B", "refType": "weak"}, "min": 0, "max": "unlimited"}},
                "ids": {"type": {"key": "string", "value": "string", "min": 0, "max": "unlimited"}},
                "kind": {"type": {"key": {"type": "string", "enum": ["set", ["a", "b"]]}}},
                "n": {"type": {"key": {"type": "integer", "minInteger": 0, "maxInteger": 4095}}}
            }, "isRoot": true, "indexes": [["name"]]}}
        }))
        .unwrap();
        let t = s.table("A").unwrap();
        assert!(t.is_root);
        assert_eq!(t.indexes, vec![vec!["name".to_string()]]);
        assert!(t.columns["name"].kind.is_scalar());
        assert!(t.columns["opt"].kind.is_optional());
        assert_eq!(t.columns["refs"].kind.max, None);
        assert_eq!(t.columns["refs"].kind.key.ref_type, RefType::Weak);
        assert!(t.columns["ids"].kind.is_map());
        assert_eq!(
            t.columns["kind"]
                .kind
                .key
                .enumeration
                .as_ref()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(t.columns["n"].kind.key.max_integer, Some(4095));
        assert!(Schema::from_json(&json!({"name": "x"})).is_err());
    }
}
