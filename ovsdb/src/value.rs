//! RFC 7047 atoms, values and rows, and their JSON forms.
//!
//! Values decode without a schema: a bare atom, `["set", …]`, `["map", …]`
//! and `["uuid", …]` are told apart by their shape. A scalar column is held
//! as a one-element set, so every column has the same representation and
//! code that reads optional columns needs no special case.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{json, Value as Json};
use uuid::Uuid;

use crate::atom_map::AtomMap;
use crate::error::{Error, Result};

/// One atomic value.
#[derive(Clone, Debug)]
pub enum Atom {
    Integer(i64),
    Real(f64),
    Boolean(bool),
    String(String),
    Uuid(Uuid),
    /// A reference, inside one transaction, to a row that transaction inserts.
    NamedUuid(String),
}

impl Atom {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Atom::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Atom::Integer(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Atom::Real(r) => Some(*r),
            Atom::Integer(i) => Some(*i as f64),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Atom::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_uuid(&self) -> Option<Uuid> {
        match self {
            Atom::Uuid(u) => Some(*u),
            _ => None,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Atom::Integer(_) => 0,
            Atom::Real(_) => 1,
            Atom::Boolean(_) => 2,
            Atom::String(_) => 3,
            Atom::Uuid(_) => 4,
            Atom::NamedUuid(_) => 5,
        }
    }

    pub fn to_json(&self) -> Json {
        match self {
            Atom::Integer(i) => json!(i),
            Atom::Real(r) => json!(r),
            Atom::Boolean(b) => json!(b),
            Atom::String(s) => json!(s),
            Atom::Uuid(u) => json!(["uuid", u.to_string()]),
            Atom::NamedUuid(n) => json!(["named-uuid", n]),
        }
    }

    pub fn from_json(j: &Json) -> Result<Atom> {
        match j {
            Json::Bool(b) => Ok(Atom::Boolean(*b)),
            Json::String(s) => Ok(Atom::String(s.clone())),
            Json::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Ok(Atom::Integer(i))
                } else if let Some(f) = n.as_f64() {
                    Ok(Atom::Real(f))
                } else {
                    Err(Error::protocol(format!("number {n} out of range")))
                }
            }
            Json::Array(a) if a.len() == 2 => match (a[0].as_str(), a[1].as_str()) {
                (Some("uuid"), Some(u)) => Uuid::parse_str(u)
                    .map(Atom::Uuid)
                    .map_err(|_| Error::protocol(format!("bad uuid {u:?}"))),
                (Some("named-uuid"), Some(n)) => Ok(Atom::NamedUuid(n.to_string())),
                _ => Err(Error::protocol(format!("not an atom: {j}"))),
            },
            _ => Err(Error::protocol(format!("not an atom: {j}"))),
        }
    }

    /// [`Atom::from_json`] taking the JSON by value, so strings move
    /// instead of being copied.
    pub(crate) fn from_json_owned(j: Json) -> Result<Atom> {
        match j {
            Json::String(s) => Ok(Atom::String(s)),
            Json::Array(mut a) if a.len() == 2 => {
                if let (Some("named-uuid"), Json::String(_)) = (a[0].as_str(), &a[1]) {
                    if let Some(Json::String(n)) = a.pop() {
                        return Ok(Atom::NamedUuid(n));
                    }
                }
                Atom::from_json(&Json::Array(a))
            }
            other => Atom::from_json(&other),
        }
    }
}

/// Writes a UUID's text form without allocating.
fn serialize_uuid<S: Serializer>(
    tag: &str,
    u: &Uuid,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    let mut buf = Uuid::encode_buffer();
    let text = u.hyphenated().encode_lower(&mut buf);
    let mut seq = s.serialize_seq(Some(2))?;
    seq.serialize_element(tag)?;
    seq.serialize_element(&*text)?;
    seq.end()
}

/// The RFC 7047 JSON form, written straight to the output (the same text
/// as [`Atom::to_json`], without building a JSON tree first).
impl Serialize for Atom {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Atom::Integer(i) => s.serialize_i64(*i),
            Atom::Real(r) => s.serialize_f64(*r),
            Atom::Boolean(b) => s.serialize_bool(*b),
            Atom::String(v) => s.serialize_str(v),
            Atom::Uuid(u) => serialize_uuid("uuid", u, s),
            Atom::NamedUuid(n) => {
                let mut seq = s.serialize_seq(Some(2))?;
                seq.serialize_element("named-uuid")?;
                seq.serialize_element(n)?;
                seq.end()
            }
        }
    }
}

impl PartialEq for Atom {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Atom {}
impl PartialOrd for Atom {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Atom {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Atom::Integer(a), Atom::Integer(b)) => a.cmp(b),
            (Atom::Real(a), Atom::Real(b)) => a.total_cmp(b),
            (Atom::Boolean(a), Atom::Boolean(b)) => a.cmp(b),
            (Atom::String(a), Atom::String(b)) => a.cmp(b),
            (Atom::Uuid(a), Atom::Uuid(b)) => a.cmp(b),
            (Atom::NamedUuid(a), Atom::NamedUuid(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}
impl std::hash::Hash for Atom {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.rank().hash(state);
        match self {
            Atom::Integer(i) => i.hash(state),
            Atom::Real(r) => r.to_bits().hash(state),
            Atom::Boolean(b) => b.hash(state),
            Atom::String(s) | Atom::NamedUuid(s) => s.hash(state),
            Atom::Uuid(u) => u.hash(state),
        }
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Atom::Integer(i) => write!(f, "{i}"),
            Atom::Real(r) => write!(f, "{r}"),
            Atom::Boolean(b) => write!(f, "{b}"),
            Atom::String(s) => write!(f, "{s:?}"),
            Atom::Uuid(u) => write!(f, "{u}"),
            Atom::NamedUuid(n) => write!(f, "@{n}"),
        }
    }
}

impl From<&str> for Atom {
    fn from(s: &str) -> Self {
        Atom::String(s.to_string())
    }
}
impl From<String> for Atom {
    fn from(s: String) -> Self {
        Atom::String(s)
    }
}
impl From<&String> for Atom {
    fn from(s: &String) -> Self {
        Atom::String(s.clone())
    }
}
impl From<i64> for Atom {
    fn from(i: i64) -> Self {
        Atom::Integer(i)
    }
}
impl From<f64> for Atom {
    fn from(r: f64) -> Self {
        Atom::Real(r)
    }
}
impl From<bool> for Atom {
    fn from(b: bool) -> Self {
        Atom::Boolean(b)
    }
}
impl From<Uuid> for Atom {
    fn from(u: Uuid) -> Self {
        Atom::Uuid(u)
    }
}

/// A column's value: a set of atoms (a scalar is a set of one) or a map.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    Set(Vec<Atom>),
    Map(AtomMap),
}

impl Value {
    /// A set; sorted and deduplicated so equal sets compare equal.
    pub fn set<A: Into<Atom>>(atoms: impl IntoIterator<Item = A>) -> Value {
        let mut v: Vec<Atom> = atoms.into_iter().map(Into::into).collect();
        v.sort();
        v.dedup();
        Value::Set(v)
    }

    pub fn map<K: Into<Atom>, V: Into<Atom>>(pairs: impl IntoIterator<Item = (K, V)>) -> Value {
        Value::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    pub fn empty_set() -> Value {
        Value::Set(Vec::new())
    }

    pub fn empty_map() -> Value {
        Value::Map(AtomMap::new())
    }

    pub fn named_uuid(name: impl Into<String>) -> Value {
        Value::Set(vec![Atom::NamedUuid(name.into())])
    }

    /// The single atom of a one-element set.
    pub fn atom(&self) -> Option<&Atom> {
        match self {
            Value::Set(v) if v.len() == 1 => v.first(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        self.atom().and_then(Atom::as_str)
    }

    pub fn as_i64(&self) -> Option<i64> {
        self.atom().and_then(Atom::as_i64)
    }

    pub fn as_bool(&self) -> Option<bool> {
        self.atom().and_then(Atom::as_bool)
    }

    pub fn as_uuid(&self) -> Option<Uuid> {
        self.atom().and_then(Atom::as_uuid)
    }

    /// The elements of a set; empty for a map.
    pub fn atoms(&self) -> &[Atom] {
        match self {
            Value::Set(v) => v,
            Value::Map(_) => &[],
        }
    }

    pub fn as_map(&self) -> Option<&AtomMap> {
        match self {
            Value::Map(m) => Some(m),
            Value::Set(v) if v.is_empty() => None,
            Value::Set(_) => None,
        }
    }

    /// Looks up a string key in a string-to-string map such as `external_ids`.
    pub fn map_get(&self, key: &str) -> Option<&str> {
        match self {
            // Searched without allocating a key for the occasion.
            Value::Map(m) => m.get_str(key).and_then(Atom::as_str),
            Value::Set(_) => None,
        }
    }

    /// Every string element of a set.
    pub fn strings(&self) -> Vec<&str> {
        self.atoms().iter().filter_map(Atom::as_str).collect()
    }

    /// Every UUID element of a set.
    pub fn uuids(&self) -> Vec<Uuid> {
        self.atoms().iter().filter_map(Atom::as_uuid).collect()
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Value::Set(v) => v.is_empty(),
            Value::Map(m) => m.is_empty(),
        }
    }

    /// The RFC 7047 JSON form: a one-element set is written as its atom.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Set(v) if v.len() == 1 => v[0].to_json(),
            Value::Set(v) => json!(["set", v.iter().map(Atom::to_json).collect::<Vec<_>>()]),
            Value::Map(m) => json!([
                "map",
                m.iter()
                    .map(|(k, v)| json!([k.to_json(), v.to_json()]))
                    .collect::<Vec<_>>()
            ]),
        }
    }

    pub fn from_json(j: &Json) -> Result<Value> {
        if let Json::Array(a) = j {
            if a.len() == 2 {
                match (a[0].as_str(), &a[1]) {
                    (Some("set"), Json::Array(items)) => {
                        let atoms = items
                            .iter()
                            .map(Atom::from_json)
                            .collect::<Result<Vec<_>>>()?;
                        return Ok(Value::set(atoms));
                    }
                    (Some("map"), Json::Array(pairs)) => {
                        let mut m = Vec::with_capacity(pairs.len());
                        for p in pairs {
                            match p {
                                Json::Array(kv) if kv.len() == 2 => {
                                    m.push((Atom::from_json(&kv[0])?, Atom::from_json(&kv[1])?));
                                }
                                _ => return Err(Error::protocol(format!("bad map pair {p}"))),
                            }
                        }
                        return Ok(Value::Map(m.into_iter().collect()));
                    }
                    _ => {}
                }
            }
        }
        Ok(Value::Set(vec![Atom::from_json(j)?]))
    }

    /// [`Value::from_json`] taking the JSON by value, so strings move
    /// instead of being copied.
    pub(crate) fn from_json_owned(j: Json) -> Result<Value> {
        let Json::Array(mut a) = j else {
            return Ok(Value::Set(vec![Atom::from_json_owned(j)?]));
        };
        if a.len() == 2 {
            match (a[0].as_str(), &a[1]) {
                (Some("set"), Json::Array(_)) => {
                    let Some(Json::Array(items)) = a.pop() else {
                        unreachable!("checked above")
                    };
                    let atoms = items
                        .into_iter()
                        .map(Atom::from_json_owned)
                        .collect::<Result<Vec<_>>>()?;
                    return Ok(Value::set(atoms));
                }
                (Some("map"), Json::Array(_)) => {
                    let Some(Json::Array(pairs)) = a.pop() else {
                        unreachable!("checked above")
                    };
                    let mut m = Vec::with_capacity(pairs.len());
                    for p in pairs {
                        match p {
                            Json::Array(kv) if kv.len() == 2 => {
                                let mut kv = kv.into_iter();
                                let (Some(k), Some(v)) = (kv.next(), kv.next()) else {
                                    unreachable!("length checked")
                                };
                                m.push((Atom::from_json_owned(k)?, Atom::from_json_owned(v)?));
                            }
                            _ => return Err(Error::protocol(format!("bad map pair {p}"))),
                        }
                    }
                    return Ok(Value::Map(m.into_iter().collect()));
                }
                _ => {}
            }
        }
        Ok(Value::Set(vec![Atom::from_json_owned(Json::Array(a))?]))
    }
}

/// The RFC 7047 JSON form (as [`Value::to_json`]), written straight to the
/// output.
impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        struct Pairs<'a>(&'a AtomMap);
        impl Serialize for Pairs<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0.len()))?;
                for (k, v) in self.0 {
                    seq.serialize_element(&(k, v))?;
                }
                seq.end()
            }
        }
        match self {
            Value::Set(v) if v.len() == 1 => v[0].serialize(s),
            Value::Set(v) => {
                let mut seq = s.serialize_seq(Some(2))?;
                seq.serialize_element("set")?;
                seq.serialize_element(v)?;
                seq.end()
            }
            Value::Map(m) => {
                let mut seq = s.serialize_seq(Some(2))?;
                seq.serialize_element("map")?;
                seq.serialize_element(&Pairs(m))?;
                seq.end()
            }
        }
    }
}

impl<T: Into<Atom>> From<T> for Value {
    fn from(a: T) -> Self {
        Value::Set(vec![a.into()])
    }
}

/// A row: column name to value. Rows from the server (replica, select)
/// carry their `_uuid`.
///
/// The columns are shared between clones (copied on the first write to a
/// shared row), so handing a replica's row to change subscribers, or
/// keeping the old row beside the new one, copies nothing. They are a
/// vector sorted by name with the names interned: a replica holds tens of
/// thousands of rows of a dozen columns each, and a tree of owned names
/// cost more than the values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row {
    columns: Arc<Vec<(Arc<str>, Value)>>,
}

/// Column names, shared by every row that has them. Bounded: names come
/// from the server, and a hostile one could send endless new ones; past
/// the bound a name is simply not shared.
fn intern(name: &str) -> Arc<str> {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    const MAX_NAMES: usize = 4096;
    static NAMES: OnceLock<Mutex<HashSet<Arc<str>>>> = OnceLock::new();
    let names = NAMES.get_or_init(Default::default);
    let Ok(mut names) = names.lock() else {
        return Arc::from(name);
    };
    if let Some(n) = names.get(name) {
        return n.clone();
    }
    let n: Arc<str> = Arc::from(name);
    if names.len() < MAX_NAMES {
        names.insert(n.clone());
    }
    n
}

impl Row {
    pub fn new() -> Row {
        Row::default()
    }

    fn find(&self, column: &str) -> Result<usize, usize> {
        self.columns.binary_search_by(|(c, _)| (**c).cmp(column))
    }

    /// Builder form of [`Row::set`].
    pub fn with(mut self, column: impl Into<String>, value: impl Into<Value>) -> Row {
        self.set(column, value);
        self
    }

    pub fn set(&mut self, column: impl Into<String>, value: impl Into<Value>) -> &mut Row {
        let column = column.into();
        let value = value.into();
        match self.find(&column) {
            Ok(i) => Arc::make_mut(&mut self.columns)[i].1 = value,
            Err(i) => Arc::make_mut(&mut self.columns).insert(i, (intern(&column), value)),
        }
        self
    }

    pub fn remove(&mut self, column: &str) -> Option<Value> {
        let i = self.find(column).ok()?;
        Some(Arc::make_mut(&mut self.columns).remove(i).1)
    }

    pub fn get(&self, column: &str) -> Option<&Value> {
        self.find(column).ok().map(|i| &self.columns[i].1)
    }

    pub fn get_mut(&mut self, column: &str) -> Option<&mut Value> {
        let i = self.find(column).ok()?;
        Some(&mut Arc::make_mut(&mut self.columns)[i].1)
    }

    pub fn str(&self, column: &str) -> Option<&str> {
        self.get(column).and_then(Value::as_str)
    }

    pub fn map_get(&self, column: &str, key: &str) -> Option<&str> {
        self.get(column).and_then(|v| v.map_get(key))
    }

    pub fn uuid(&self) -> Option<Uuid> {
        self.get("_uuid").and_then(Value::as_uuid)
    }

    /// The columns and their values, by column name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.columns.iter().map(|(c, v)| (&**c, v))
    }

    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|(c, _)| &**c)
    }

    pub fn len(&self) -> usize {
        self.columns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    pub fn to_json(&self) -> Json {
        Json::Object(
            self.columns
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_json()))
                .collect(),
        )
    }

    pub fn from_json(j: &Json) -> Result<Row> {
        let obj = j
            .as_object()
            .ok_or_else(|| Error::protocol(format!("row is not an object: {j}")))?;
        let mut columns = Vec::with_capacity(obj.len());
        for (k, v) in obj {
            columns.push((intern(k), Value::from_json(v)?));
        }
        Ok(Row::sorted(columns))
    }

    /// [`Row::from_json`] taking the JSON by value: strings move instead
    /// of being copied, and each column's JSON is freed as soon as it is
    /// decoded.
    pub(crate) fn from_json_owned(j: Json) -> Result<Row> {
        let Json::Object(obj) = j else {
            return Err(Error::protocol(format!("row is not an object: {j}")));
        };
        let mut columns = Vec::with_capacity(obj.len());
        for (k, v) in obj {
            columns.push((intern(&k), Value::from_json_owned(v)?));
        }
        Ok(Row::sorted(columns))
    }

    /// Sorted by name, the last of a repeated name kept (as inserting each
    /// into a map would).
    fn sorted(mut columns: Vec<(Arc<str>, Value)>) -> Row {
        columns.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(Arc<str>, Value)> = Vec::with_capacity(columns.len());
        for (k, v) in columns {
            match out.last_mut() {
                Some(last) if last.0 == k => last.1 = v,
                _ => out.push((k, v)),
            }
        }
        out.shrink_to_fit();
        Row {
            columns: Arc::new(out),
        }
    }
}

/// The JSON object of the row's columns (as [`Row::to_json`]), written
/// straight to the output.
impl Serialize for Row {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.columns.len()))?;
        for (k, v) in self.columns.iter() {
            m.serialize_entry(&**k, v)?;
        }
        m.end()
    }
}

impl FromIterator<(String, Value)> for Row {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        Row::sorted(iter.into_iter().map(|(k, v)| (intern(&k), v)).collect())
    }
}

impl IntoIterator for Row {
    type Item = (String, Value);
    type IntoIter = std::iter::Map<
        std::vec::IntoIter<(Arc<str>, Value)>,
        fn((Arc<str>, Value)) -> (String, Value),
    >;
    fn into_iter(self) -> Self::IntoIter {
        Arc::try_unwrap(self.columns)
            .unwrap_or_else(|shared| (*shared).clone())
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips() {
        let u = Uuid::new_v4();
        for v in [
            Value::from("x"),
            Value::from(7i64),
            Value::from(1.5f64),
            Value::from(true),
            Value::from(u),
            Value::empty_set(),
            Value::set(["a", "b"]),
            Value::map([("k", "v")]),
            Value::empty_map(),
            Value::named_uuid("row1"),
        ] {
            assert_eq!(
                Value::from_json(&v.to_json()).unwrap(),
                v,
                "{}",
                v.to_json()
            );
        }
    }

    #[test]
    fn serialize_writes_the_same_text_as_to_json() {
        let u = Uuid::new_v4();
        let row = Row::new()
            .with("s", "x\"y")
            .with("i", 7i64)
            .with("r", 1.5f64)
            .with("b", true)
            .with("u", u)
            .with("n", Value::named_uuid("row1"))
            .with("e", Value::empty_set())
            .with("set", Value::set(["a", "b"]))
            .with("m", Value::map([("k", "v"), ("k2", "v2")]))
            .with("em", Value::empty_map())
            .with("us", Value::set([Atom::Uuid(u), Atom::Uuid(Uuid::nil())]));
        assert_eq!(
            serde_json::to_string(&row).unwrap(),
            serde_json::to_string(&row.to_json()).unwrap()
        );
    }

    #[test]
    fn owned_decoding_matches_borrowed() {
        for j in [
            json!("x"),
            json!(5),
            json!(-1.25),
            json!(false),
            json!(["uuid", Uuid::new_v4().to_string()]),
            json!(["named-uuid", "r1"]),
            json!(["set", []]),
            json!(["set", ["b", "a", "a"]]),
            json!(["map", [["k", "v"], [1, ["uuid", Uuid::nil().to_string()]]]]),
        ] {
            assert_eq!(
                Value::from_json_owned(j.clone()).unwrap(),
                Value::from_json(&j).unwrap(),
                "{j}"
            );
        }
        for bad in [
            json!(null),
            json!({"a": 1}),
            json!(["uuid", "not-a-uuid"]),
            json!(["map", [["k"]]]),
            json!(["set", [null]]),
            json!(["what", "x"]),
            json!(["named-uuid", 1]),
        ] {
            assert!(Value::from_json_owned(bad.clone()).is_err(), "{bad}");
        }
        let row = json!({"name": "a", "ids": ["map", [["k", "v"]]]});
        assert_eq!(
            Row::from_json_owned(row.clone()).unwrap(),
            Row::from_json(&row).unwrap()
        );
    }

    #[test]
    fn clones_share_until_written() {
        let a = Row::new().with("name", "a");
        let mut b = a.clone();
        b.set("name", "b");
        assert_eq!(a.str("name"), Some("a"));
        assert_eq!(b.str("name"), Some("b"));
        assert!(b.clone().remove("x").is_none());
        let cols: Vec<(String, Value)> = a.clone().into_iter().collect();
        assert_eq!(cols, vec![("name".to_string(), Value::from("a"))]);
    }

    #[test]
    fn sets_are_canonical() {
        assert_eq!(Value::set(["b", "a", "b"]), Value::set(["a", "b"]));
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            json!(null),
            json!({"a": 1}),
            json!(["uuid", "not-a-uuid"]),
            json!(["map", [["k"]]]),
            json!(["set", [null]]),
            json!(["what", "x"]),
        ] {
            assert!(Value::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn row_accessors() {
        let u = Uuid::new_v4();
        let r = Row::new()
            .with("name", "ls0")
            .with("external_ids", Value::map([("owner", "x")]))
            .with("_uuid", u);
        assert_eq!(r.str("name"), Some("ls0"));
        assert_eq!(r.map_get("external_ids", "owner"), Some("x"));
        assert_eq!(r.uuid(), Some(u));
        assert_eq!(Row::from_json(&r.to_json()).unwrap(), r);
    }
}
