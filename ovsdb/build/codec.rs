// Conversions between the typed tables' field types and OVSDB values.
//
// build.rs copies this file, unchanged, into every generated module as
// `mod codec`, so the generated code is self-contained and each table's
// `from_row`/`to_row` is one helper call per column. It is ordinary Rust
// kept outside build.rs so that it reads (and diffs) as code.
//
// Decoding is lenient where OVSDB itself is ambiguous and strict where a
// value cannot be what the schema says:
// - a missing column decodes as the type's default, because a monitor may
//   select only some columns;
// - an empty set and an empty map are the same thing (`["set", []]` and
//   `["map", []]` both mean "nothing");
// - an integer is accepted where a real is expected (JSON has one number
//   type, and `1.0` may be written `1`);
// - any other mismatch is `Error::Schema` naming `Table.column`.

use crate::{Atom, Error, Row, Uuid, Value};

/// A Rust type that holds one OVSDB atom.
pub(super) trait AtomType: Sized {
    /// The RFC 7047 type name, for error messages.
    fn type_name() -> &'static str;
    fn from_atom(atom: &Atom) -> Option<Self>;
    fn to_atom(&self) -> Atom;
}

impl AtomType for String {
    fn type_name() -> &'static str {
        "string"
    }
    fn from_atom(atom: &Atom) -> Option<Self> {
        atom.as_str().map(str::to_string)
    }
    fn to_atom(&self) -> Atom {
        Atom::String(self.clone())
    }
}

impl AtomType for i64 {
    fn type_name() -> &'static str {
        "integer"
    }
    fn from_atom(atom: &Atom) -> Option<Self> {
        atom.as_i64()
    }
    fn to_atom(&self) -> Atom {
        Atom::Integer(*self)
    }
}

impl AtomType for f64 {
    fn type_name() -> &'static str {
        "real"
    }
    fn from_atom(atom: &Atom) -> Option<Self> {
        atom.as_f64()
    }
    fn to_atom(&self) -> Atom {
        Atom::Real(*self)
    }
}

impl AtomType for bool {
    fn type_name() -> &'static str {
        "boolean"
    }
    fn from_atom(atom: &Atom) -> Option<Self> {
        atom.as_bool()
    }
    fn to_atom(&self) -> Atom {
        Atom::Boolean(*self)
    }
}

impl AtomType for Uuid {
    fn type_name() -> &'static str {
        "uuid"
    }
    fn from_atom(atom: &Atom) -> Option<Self> {
        atom.as_uuid()
    }
    fn to_atom(&self) -> Atom {
        Atom::Uuid(*self)
    }
}

fn mismatch(table: &str, column: &str, expected: String, got: &Value) -> Error {
    Error::Schema(format!(
        "{table}.{column}: expected {expected}, got {}",
        got.to_json()
    ))
}

/// A column holding exactly one value.
pub(super) fn scalar<T: AtomType + Default>(row: &Row, table: &str, column: &str) -> Result<T, Error> {
    match row.get(column) {
        None => Ok(T::default()),
        Some(v) => v
            .atom()
            .and_then(T::from_atom)
            .ok_or_else(|| mismatch(table, column, T::type_name().to_string(), v)),
    }
}

/// A column holding zero or one value.
pub(super) fn optional<T: AtomType>(row: &Row, table: &str, column: &str) -> Result<Option<T>, Error> {
    match row.get(column) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => v.atom().and_then(T::from_atom).map(Some).ok_or_else(|| {
            mismatch(table, column, format!("optional {}", T::type_name()), v)
        }),
    }
}

/// A set column, collected into whatever container the field uses.
pub(super) fn set<T: AtomType, C: FromIterator<T>>(row: &Row, table: &str, column: &str) -> Result<C, Error> {
    let expected = || format!("set of {}", T::type_name());
    match row.get(column) {
        None => Ok(std::iter::empty().collect()),
        Some(v @ Value::Set(atoms)) => atoms
            .iter()
            .map(T::from_atom)
            .collect::<Option<C>>()
            .ok_or_else(|| mismatch(table, column, expected(), v)),
        Some(v) if v.is_empty() => Ok(std::iter::empty().collect()),
        Some(v) => Err(mismatch(table, column, expected(), v)),
    }
}

/// A map column, collected into whatever container the field uses.
pub(super) fn map<K: AtomType, V: AtomType, C: FromIterator<(K, V)>>(row: &Row, table: &str, column: &str) -> Result<C, Error> {
    let expected = || format!("map of {} to {}", K::type_name(), V::type_name());
    match row.get(column) {
        None => Ok(std::iter::empty().collect()),
        Some(v @ Value::Map(pairs)) => pairs
            .iter()
            .map(|(k, val)| Some((K::from_atom(k)?, V::from_atom(val)?)))
            .collect::<Option<C>>()
            .ok_or_else(|| mismatch(table, column, expected(), v)),
        Some(v) if v.is_empty() => Ok(std::iter::empty().collect()),
        Some(v) => Err(mismatch(table, column, expected(), v)),
    }
}

pub(super) fn encode_scalar<T: AtomType>(value: &T) -> Value {
    Value::Set(vec![value.to_atom()])
}

/// An optional or set column: `Option<T>`, `BTreeSet<T>` and `Vec<T>` all
/// iterate by reference.
pub(super) fn encode_set<'a, T: AtomType + 'a>(values: impl IntoIterator<Item = &'a T>) -> Value {
    Value::set(values.into_iter().map(T::to_atom))
}

pub(super) fn encode_map<'a, K: AtomType + 'a, V: AtomType + 'a>(
    pairs: impl IntoIterator<Item = (&'a K, &'a V)>,
) -> Value {
    Value::Map(
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_atom(), v.to_atom()))
            .collect(),
    )
}
