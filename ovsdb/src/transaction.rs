//! Transactions: the builder, conditions, mutations, and typed results.

use std::fmt;

use serde::Serialize;
use serde_json::{json, Value as Json};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::value::{Row, Value};

/// A condition of a `where` clause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub column: String,
    pub function: &'static str,
    pub value: Value,
}

macro_rules! condition_fns {
    ($($name:ident => $op:literal),* $(,)?) => {
        $(
            pub fn $name(column: impl Into<String>, value: impl Into<Value>) -> Condition {
                Condition { column: column.into(), function: $op, value: value.into() }
            }
        )*
    };
}

impl Condition {
    condition_fns! {
        eq => "==", ne => "!=", lt => "<", le => "<=", gt => ">", ge => ">=",
        includes => "includes", excludes => "excludes",
    }

    /// Selects one row by its UUID.
    pub fn uuid(uuid: Uuid) -> Condition {
        Condition::eq("_uuid", uuid)
    }

    pub fn to_json(&self) -> Json {
        json!([self.column, self.function, self.value.to_json()])
    }
}

pub(crate) fn where_json(conds: &[Condition]) -> Json {
    Json::Array(conds.iter().map(Condition::to_json).collect())
}

/// A mutation of a `mutate` operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mutation {
    pub column: String,
    pub mutator: &'static str,
    pub value: Value,
}

macro_rules! mutation_fns {
    ($($name:ident => $op:literal),* $(,)?) => {
        $(
            pub fn $name(column: impl Into<String>, value: impl Into<Value>) -> Mutation {
                Mutation { column: column.into(), mutator: $op, value: value.into() }
            }
        )*
    };
}

impl Mutation {
    mutation_fns! {
        insert => "insert", delete => "delete", add => "+=", sub => "-=",
        mul => "*=", div => "/=", rem => "%=",
    }

    fn to_json(&self) -> Json {
        json!([self.column, self.mutator, self.value.to_json()])
    }
}

/// What a `wait` operation waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitUntil {
    Equal,
    NotEqual,
}

/// One operation; kept as its JSON text (written once, when the operation
/// is added: a large transaction is held as compact text, not as a JSON
/// tree) plus its name for error reports.
#[derive(Clone, Debug)]
struct Operation {
    name: &'static str,
    text: String,
}

/// An `insert` written straight from the row.
#[derive(Serialize)]
struct InsertOp<'a> {
    op: &'static str,
    table: &'a str,
    row: &'a Row,
    #[serde(rename = "uuid-name", skip_serializing_if = "Option::is_none")]
    uuid_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uuid: Option<String>,
}

/// An `update` written straight from the row.
#[derive(Serialize)]
struct UpdateOp<'a> {
    op: &'static str,
    table: &'a str,
    #[serde(rename = "where")]
    conditions: &'a [Condition],
    row: &'a Row,
}

impl Serialize for Condition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.column, self.function, &self.value).serialize(s)
    }
}

/// A transaction on one database, built operation by operation.
#[derive(Clone, Debug)]
pub struct Transaction {
    db: String,
    ops: Vec<Operation>,
    next_name: usize,
}

impl Transaction {
    pub fn new(db: impl Into<String>) -> Transaction {
        Transaction {
            db: db.into(),
            ops: Vec::new(),
            next_name: 0,
        }
    }

    pub fn database(&self) -> &str {
        &self.db
    }

    fn push(&mut self, name: &'static str, json: Json) -> usize {
        self.push_op(name, &json)
    }

    fn push_op(&mut self, name: &'static str, op: &impl Serialize) -> usize {
        // Serialising plain data to a string cannot fail.
        let text = serde_json::to_string(op).expect("operation serialises");
        self.ops.push(Operation { name, text });
        self.ops.len() - 1
    }

    /// Inserts a row and returns a named-uuid that later operations in the
    /// same transaction can use to refer to it.
    pub fn insert(&mut self, table: &str, row: Row) -> Value {
        self.next_name += 1;
        let name = format!("row{}", self.next_name);
        self.insert_as(table, row, &name)
    }

    /// Inserts a row under an explicit uuid-name.
    pub fn insert_as(&mut self, table: &str, row: Row, uuid_name: &str) -> Value {
        self.push_op(
            "insert",
            &InsertOp {
                op: "insert",
                table,
                row: &row,
                uuid_name: Some(uuid_name),
                uuid: None,
            },
        );
        Value::named_uuid(uuid_name)
    }

    /// Inserts a row with a UUID chosen by the client (`uuid` member, OVS 2.13+).
    pub fn insert_with_uuid(&mut self, table: &str, row: Row, uuid: Uuid) -> usize {
        self.push_op(
            "insert",
            &InsertOp {
                op: "insert",
                table,
                row: &row,
                uuid_name: None,
                uuid: Some(uuid.to_string()),
            },
        )
    }

    pub fn select(
        &mut self,
        table: &str,
        conditions: Vec<Condition>,
        columns: Option<Vec<String>>,
    ) -> usize {
        let mut op = json!({"op": "select", "table": table, "where": where_json(&conditions)});
        if let Some(cols) = columns {
            op["columns"] = json!(cols);
        }
        self.push("select", op)
    }

    pub fn update(&mut self, table: &str, conditions: Vec<Condition>, row: Row) -> usize {
        self.push_op(
            "update",
            &UpdateOp {
                op: "update",
                table,
                conditions: &conditions,
                row: &row,
            },
        )
    }

    pub fn mutate(
        &mut self,
        table: &str,
        conditions: Vec<Condition>,
        mutations: Vec<Mutation>,
    ) -> usize {
        let muts: Vec<Json> = mutations.iter().map(Mutation::to_json).collect();
        self.push(
            "mutate",
            json!({"op": "mutate", "table": table, "where": where_json(&conditions), "mutations": muts}),
        )
    }

    pub fn delete(&mut self, table: &str, conditions: Vec<Condition>) -> usize {
        self.push(
            "delete",
            json!({"op": "delete", "table": table, "where": where_json(&conditions)}),
        )
    }

    pub fn wait(
        &mut self,
        table: &str,
        conditions: Vec<Condition>,
        columns: Vec<String>,
        until: WaitUntil,
        rows: Vec<Row>,
        timeout_ms: Option<u64>,
    ) -> usize {
        let mut op = json!({
            "op": "wait", "table": table, "where": where_json(&conditions), "columns": columns,
            "until": if until == WaitUntil::Equal { "==" } else { "!=" },
            "rows": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
        });
        if let Some(t) = timeout_ms {
            op["timeout"] = json!(t);
        }
        self.push("wait", op)
    }

    pub fn commit(&mut self, durable: bool) -> usize {
        self.push("commit", json!({"op": "commit", "durable": durable}))
    }

    pub fn abort(&mut self) -> usize {
        self.push("abort", json!({"op": "abort"}))
    }

    /// A comment the server writes to its log with the transaction, which
    /// is where an operator looks to find out who changed what.
    pub fn comment(&mut self, text: &str) -> usize {
        self.push("comment", json!({"op": "comment", "comment": text}))
    }

    pub fn assert_lock(&mut self, lock: &str) -> usize {
        self.push("assert", json!({"op": "assert", "lock": lock}))
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Operations that change data (everything but select, wait, comment,
    /// assert); what a "writes nothing" check counts.
    pub fn write_count(&self) -> usize {
        self.ops
            .iter()
            .filter(|o| matches!(o.name, "insert" | "update" | "mutate" | "delete"))
            .count()
    }

    /// The `transact` parameters as JSON text: `[db, op, ...]`.
    pub(crate) fn params_text(&self) -> String {
        let len = self.db.len() + 4 + self.ops.iter().map(|o| o.text.len() + 1).sum::<usize>();
        let mut out = String::with_capacity(len);
        out.push('[');
        out.push_str(&Json::from(self.db.as_str()).to_string());
        for o in &self.ops {
            out.push(',');
            out.push_str(&o.text);
        }
        out.push(']');
        out
    }

    #[cfg(test)]
    pub(crate) fn params(&self) -> Json {
        serde_json::from_str(&self.params_text()).expect("valid JSON")
    }

    /// Interprets the server's `result` array for this transaction.
    pub(crate) fn parse_result(&self, result: &Json) -> Result<Vec<OpResult>> {
        let items = result
            .as_array()
            .ok_or_else(|| Error::protocol(format!("transact result is not an array: {result}")))?;
        // Per RFC 7047 the result has one element per operation, plus one
        // extra error element when the transaction as a whole failed.
        let mut out = Vec::with_capacity(self.ops.len());
        for (index, item) in items.iter().enumerate() {
            if let Some(err) = OpError::from_json(item) {
                let op = self.ops.get(index).map(|o| o.name).unwrap_or("commit");
                return Err(Error::Operation {
                    index,
                    op,
                    error: err,
                });
            }
            if index >= self.ops.len() {
                return Err(Error::protocol(format!(
                    "transact result has {} elements for {} operations",
                    items.len(),
                    self.ops.len()
                )));
            }
            out.push(OpResult::from_json(item)?);
        }
        if out.len() != self.ops.len() {
            return Err(Error::protocol(format!(
                "transact result has {} elements for {} operations",
                items.len(),
                self.ops.len()
            )));
        }
        Ok(out)
    }
}

/// The result of one successful operation.
#[derive(Clone, Debug, PartialEq)]
pub enum OpResult {
    Insert {
        uuid: Uuid,
    },
    Select {
        rows: Vec<Row>,
    },
    /// Rows touched by update, mutate or delete.
    Count {
        count: u64,
    },
    /// wait, commit, abort, comment, assert.
    Empty,
}

impl OpResult {
    fn from_json(j: &Json) -> Result<OpResult> {
        if j.is_null() {
            return Ok(OpResult::Empty);
        }
        let obj = j
            .as_object()
            .ok_or_else(|| Error::protocol(format!("operation result is not an object: {j}")))?;
        if let Some(u) = obj.get("uuid") {
            let uuid = crate::value::Atom::from_json(u)?
                .as_uuid()
                .ok_or_else(|| Error::protocol(format!("insert result uuid {u}")))?;
            return Ok(OpResult::Insert { uuid });
        }
        if let Some(rows) = obj.get("rows") {
            let rows = rows
                .as_array()
                .ok_or_else(|| Error::protocol("select rows is not an array"))?
                .iter()
                .map(Row::from_json)
                .collect::<Result<Vec<_>>>()?;
            return Ok(OpResult::Select { rows });
        }
        if let Some(c) = obj.get("count") {
            let count = c
                .as_u64()
                .ok_or_else(|| Error::protocol(format!("count {c}")))?;
            return Ok(OpResult::Count { count });
        }
        Ok(OpResult::Empty)
    }

    pub fn uuid(&self) -> Option<Uuid> {
        match self {
            OpResult::Insert { uuid } => Some(*uuid),
            _ => None,
        }
    }

    pub fn rows(&self) -> &[Row] {
        match self {
            OpResult::Select { rows } => rows,
            _ => &[],
        }
    }

    pub fn count(&self) -> u64 {
        match self {
            OpResult::Count { count } => *count,
            _ => 0,
        }
    }
}

/// An error the server reported for one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpError {
    pub error: String,
    pub details: Option<String>,
}

/// The RFC 7047 error classes, so callers can match rather than compare strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpErrorKind {
    ConstraintViolation,
    ReferentialIntegrityViolation,
    ResourcesExhausted,
    IoError,
    DuplicateUuidName,
    DomainError,
    RangeError,
    TimedOut,
    NotSupported,
    Aborted,
    NotOwner,
    /// The server could not parse the operation (a client bug, or a
    /// schema the client does not match).
    SyntaxError,
    Other,
}

impl OpError {
    fn from_json(j: &Json) -> Option<OpError> {
        let obj = j.as_object()?;
        let error = obj.get("error")?.as_str()?.to_string();
        let details = obj
            .get("details")
            .and_then(Json::as_str)
            .map(str::to_string);
        Some(OpError { error, details })
    }

    pub fn kind(&self) -> OpErrorKind {
        match self.error.as_str() {
            "constraint violation" => OpErrorKind::ConstraintViolation,
            "referential integrity violation" => OpErrorKind::ReferentialIntegrityViolation,
            "resources exhausted" => OpErrorKind::ResourcesExhausted,
            "I/O error" => OpErrorKind::IoError,
            "duplicate uuid-name" => OpErrorKind::DuplicateUuidName,
            "domain error" => OpErrorKind::DomainError,
            "range error" => OpErrorKind::RangeError,
            "timed out" => OpErrorKind::TimedOut,
            "not supported" => OpErrorKind::NotSupported,
            "aborted" => OpErrorKind::Aborted,
            "not owner" => OpErrorKind::NotOwner,
            "syntax error" | "unknown table" | "unknown column" => OpErrorKind::SyntaxError,
            _ => OpErrorKind::Other,
        }
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.details {
            Some(d) => write!(f, "{}: {}", self.error, d),
            None => write!(f, "{}", self.error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_rfc7047_operations() {
        let mut tx = Transaction::new("OVN_Northbound");
        let ls = tx.insert("Logical_Switch", Row::new().with("name", "a"));
        tx.mutate(
            "Logical_Router",
            vec![Condition::eq("name", "r")],
            vec![Mutation::insert("ports", ls.clone())],
        );
        tx.comment("test");
        let p = tx.params();
        assert_eq!(p[0], "OVN_Northbound");
        assert_eq!(p[1]["op"], "insert");
        assert_eq!(p[1]["uuid-name"], "row1");
        assert_eq!(
            p[2]["mutations"][0],
            json!(["ports", "insert", ["named-uuid", "row1"]])
        );
        assert_eq!(p[2]["where"][0], json!(["name", "==", "r"]));
        assert_eq!(tx.write_count(), 2);

        let u = Uuid::new_v4();
        let mut tx = Transaction::new("db");
        tx.update(
            "T",
            vec![Condition::uuid(u)],
            Row::new().with("m", Value::map([("k", "v")])),
        );
        tx.insert_with_uuid("T", Row::new().with("n", 1i64), u);
        assert_eq!(
            tx.params(),
            json!(["db",
                {"op": "update", "table": "T", "where": [["_uuid", "==", ["uuid", u.to_string()]]],
                 "row": {"m": ["map", [["k", "v"]]]}},
                {"op": "insert", "table": "T", "row": {"n": 1}, "uuid": u.to_string()}])
        );
    }

    #[test]
    fn parses_results_and_errors() {
        let mut tx = Transaction::new("db");
        tx.insert("T", Row::new());
        tx.delete("T", vec![]);
        let u = Uuid::new_v4();
        let ok = json!([{"uuid": ["uuid", u.to_string()]}, {"count": 3}]);
        let r = tx.parse_result(&ok).unwrap();
        assert_eq!(r[0].uuid(), Some(u));
        assert_eq!(r[1].count(), 3);

        let failed = json!([{"uuid": ["uuid", u.to_string()]}, {"count": 3},
            {"error": "referential integrity violation", "details": "x"}]);
        match tx.parse_result(&failed) {
            Err(Error::Operation {
                index: 2,
                op: "commit",
                error,
            }) => {
                assert_eq!(error.kind(), OpErrorKind::ReferentialIntegrityViolation)
            }
            other => panic!("{other:?}"),
        }
        let failed_op = json!([{"error": "constraint violation", "details": "dup"}, null]);
        assert!(matches!(
            tx.parse_result(&failed_op),
            Err(Error::Operation {
                index: 0,
                op: "insert",
                ..
            })
        ));
        assert!(tx.parse_result(&json!([{"count": 1}])).is_err());
        assert!(tx.parse_result(&json!("x")).is_err());
    }
}
