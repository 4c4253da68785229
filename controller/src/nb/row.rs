//! The northbound row model translators write: tables, column values,
//! row identities, owners, and the references between rows.
//!
//! Table and column names come from the typed tables generated from OVN's
//! schema (`ovsdb::nb`), so a schema change breaks the build rather than a
//! string at run time.

use std::collections::BTreeMap;

use ovsdb::nb;
use switchyard_api::names;

/// The northbound tables the controller writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    LogicalRouter,
    LogicalSwitch,
    LogicalRouterPort,
    LogicalSwitchPort,
    AddressSet,
    PortGroup,
    Acl,
    LoadBalancer,
    LoadBalancerGroup,
    StaticRoute,
    RouterPolicy,
    Nat,
    Meter,
    MeterBand,
    ChassisTemplateVar,
}

impl Table {
    pub const ALL: [Table; 15] = [
        Table::LogicalRouter,
        Table::LogicalSwitch,
        Table::LogicalRouterPort,
        Table::LogicalSwitchPort,
        Table::AddressSet,
        Table::PortGroup,
        Table::Acl,
        Table::LoadBalancer,
        Table::LoadBalancerGroup,
        Table::StaticRoute,
        Table::RouterPolicy,
        Table::Nat,
        Table::Meter,
        Table::MeterBand,
        Table::ChassisTemplateVar,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::LogicalRouter => nb::LogicalRouter::TABLE,
            Table::LogicalSwitch => nb::LogicalSwitch::TABLE,
            Table::LogicalRouterPort => nb::LogicalRouterPort::TABLE,
            Table::LogicalSwitchPort => nb::LogicalSwitchPort::TABLE,
            Table::AddressSet => nb::AddressSet::TABLE,
            Table::PortGroup => nb::PortGroup::TABLE,
            Table::Acl => nb::Acl::TABLE,
            Table::LoadBalancer => nb::LoadBalancer::TABLE,
            Table::LoadBalancerGroup => nb::LoadBalancerGroup::TABLE,
            Table::StaticRoute => nb::LogicalRouterStaticRoute::TABLE,
            Table::RouterPolicy => nb::LogicalRouterPolicy::TABLE,
            Table::Nat => nb::Nat::TABLE,
            Table::Meter => nb::Meter::TABLE,
            Table::MeterBand => nb::MeterBand::TABLE,
            Table::ChassisTemplateVar => nb::ChassisTemplateVar::TABLE,
        }
    }

    pub fn from_name(s: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == s)
    }

    /// The column that names a row, for tables whose rows have a unique
    /// name; rows of the others are identified by [`KEY`] in
    /// `external_ids`.
    pub fn name_column(self) -> Option<&'static str> {
        match self {
            Table::Acl
            | Table::StaticRoute
            | Table::RouterPolicy
            | Table::Nat
            | Table::MeterBand => None,
            Table::ChassisTemplateVar => Some(nb::ChassisTemplateVar::CHASSIS),
            _ => Some("name"),
        }
    }

    /// Rows that may hold a strong reference to a row of this table, as
    /// (table, column): a row must be unlinked from them before it can be
    /// deleted, and a non-root row exists only while one of them holds it.
    /// (`schema_strong_references_are_all_known` checks this against the
    /// schema.)
    pub fn strong_parents(self) -> &'static [(Table, &'static str)] {
        match self {
            Table::LogicalSwitchPort => &[(Table::LogicalSwitch, nb::LogicalSwitch::PORTS)],
            Table::LogicalRouterPort => &[(Table::LogicalRouter, nb::LogicalRouter::PORTS)],
            Table::Acl => &[
                (Table::LogicalSwitch, nb::LogicalSwitch::ACLS),
                (Table::PortGroup, nb::PortGroup::ACLS),
            ],
            Table::Nat => &[(Table::LogicalRouter, nb::LogicalRouter::NAT)],
            Table::StaticRoute => &[(Table::LogicalRouter, nb::LogicalRouter::STATIC_ROUTES)],
            Table::RouterPolicy => &[(Table::LogicalRouter, nb::LogicalRouter::POLICIES)],
            Table::MeterBand => &[(Table::Meter, nb::Meter::BANDS)],
            Table::LoadBalancerGroup => &[
                (Table::LogicalSwitch, nb::LogicalSwitch::LOAD_BALANCER_GROUP),
                (Table::LogicalRouter, nb::LogicalRouter::LOAD_BALANCER_GROUP),
            ],
            Table::AddressSet => &[
                (Table::Nat, nb::Nat::ALLOWED_EXT_IPS),
                (Table::Nat, nb::Nat::EXEMPTED_EXT_IPS),
            ],
            _ => &[],
        }
    }

    /// Whether the server deletes a row of this table once nothing holds it.
    pub fn is_root(self) -> bool {
        !matches!(
            self,
            Table::LogicalSwitchPort
                | Table::LogicalRouterPort
                | Table::Acl
                | Table::Nat
                | Table::StaticRoute
                | Table::RouterPolicy
                | Table::MeterBand
        )
    }

    /// The columns the controller reads and writes (what the NB monitor
    /// fetches): every column some translator manages, plus the columns
    /// other owners' rows are attached through.
    pub fn columns(self) -> &'static [&'static str] {
        use nb::*;
        match self {
            Table::LogicalRouter => &[
                LogicalRouter::NAME,
                LogicalRouter::EXTERNAL_IDS,
                LogicalRouter::OPTIONS,
                LogicalRouter::PORTS,
                LogicalRouter::STATIC_ROUTES,
                LogicalRouter::POLICIES,
                LogicalRouter::NAT,
                LogicalRouter::LOAD_BALANCER,
                LogicalRouter::LOAD_BALANCER_GROUP,
            ],
            Table::LogicalSwitch => &[
                LogicalSwitch::NAME,
                LogicalSwitch::EXTERNAL_IDS,
                LogicalSwitch::OTHER_CONFIG,
                LogicalSwitch::PORTS,
                LogicalSwitch::ACLS,
                LogicalSwitch::LOAD_BALANCER,
                LogicalSwitch::LOAD_BALANCER_GROUP,
            ],
            Table::LogicalRouterPort => &[
                LogicalRouterPort::NAME,
                LogicalRouterPort::EXTERNAL_IDS,
                LogicalRouterPort::MAC,
                LogicalRouterPort::NETWORKS,
                LogicalRouterPort::OPTIONS,
            ],
            Table::LogicalSwitchPort => &[
                LogicalSwitchPort::NAME,
                LogicalSwitchPort::EXTERNAL_IDS,
                LogicalSwitchPort::TYPE,
                LogicalSwitchPort::ADDRESSES,
                LogicalSwitchPort::PORT_SECURITY,
                LogicalSwitchPort::OPTIONS,
                LogicalSwitchPort::TAG_REQUEST,
            ],
            Table::AddressSet => &[
                AddressSet::NAME,
                AddressSet::EXTERNAL_IDS,
                AddressSet::ADDRESSES,
            ],
            Table::PortGroup => &[
                PortGroup::NAME,
                PortGroup::EXTERNAL_IDS,
                PortGroup::PORTS,
                PortGroup::ACLS,
            ],
            Table::Acl => &[
                Acl::EXTERNAL_IDS,
                Acl::NAME,
                Acl::PRIORITY,
                Acl::DIRECTION,
                Acl::MATCH,
                Acl::ACTION,
                Acl::LOG,
                Acl::METER,
                Acl::SEVERITY,
                Acl::LABEL,
                Acl::OPTIONS,
            ],
            Table::LoadBalancer => &[
                LoadBalancer::NAME,
                LoadBalancer::EXTERNAL_IDS,
                LoadBalancer::PROTOCOL,
                LoadBalancer::VIPS,
                LoadBalancer::OPTIONS,
                LoadBalancer::SELECTION_FIELDS,
            ],
            Table::LoadBalancerGroup => {
                &[LoadBalancerGroup::NAME, LoadBalancerGroup::LOAD_BALANCER]
            }
            Table::StaticRoute => &[
                LogicalRouterStaticRoute::EXTERNAL_IDS,
                LogicalRouterStaticRoute::IP_PREFIX,
                LogicalRouterStaticRoute::NEXTHOP,
                LogicalRouterStaticRoute::OUTPUT_PORT,
                LogicalRouterStaticRoute::POLICY,
                LogicalRouterStaticRoute::OPTIONS,
            ],
            Table::RouterPolicy => &[
                LogicalRouterPolicy::EXTERNAL_IDS,
                LogicalRouterPolicy::PRIORITY,
                LogicalRouterPolicy::MATCH,
                LogicalRouterPolicy::ACTION,
                LogicalRouterPolicy::NEXTHOPS,
                LogicalRouterPolicy::OPTIONS,
            ],
            Table::Nat => &[
                Nat::EXTERNAL_IDS,
                Nat::TYPE,
                Nat::EXTERNAL_IP,
                Nat::LOGICAL_IP,
                Nat::LOGICAL_PORT,
                Nat::EXTERNAL_MAC,
                Nat::OPTIONS,
            ],
            Table::Meter => &[
                Meter::NAME,
                Meter::EXTERNAL_IDS,
                Meter::UNIT,
                Meter::FAIR,
                Meter::BANDS,
            ],
            Table::MeterBand => &[
                MeterBand::EXTERNAL_IDS,
                MeterBand::ACTION,
                MeterBand::RATE,
                MeterBand::BURST_SIZE,
            ],
            Table::ChassisTemplateVar => &[
                ChassisTemplateVar::CHASSIS,
                ChassisTemplateVar::EXTERNAL_IDS,
                ChassisTemplateVar::VARIABLES,
            ],
        }
    }

    /// Whether rows carry `external_ids` (Load_Balancer_Group does not;
    /// its rows are named after their owner instead).
    pub fn has_external_ids(self) -> bool {
        self != Table::LoadBalancerGroup
    }
}

/// `external_ids` key identifying a row of a table without names, unique
/// among its owner's rows of that table.
pub const KEY: &str = "switchyard.io/key";

/// A column value.
#[derive(Clone, Debug, PartialEq)]
pub enum Col {
    Str(String),
    Int(i64),
    Real(f64),
    Bool(bool),
    /// Kept sorted so comparison is order-free. An optional string column
    /// is a set of zero or one.
    Set(Vec<String>),
    Map(BTreeMap<String, String>),
    /// References to the rows of a table with these names, whoever owns
    /// them; resolved to UUIDs (or to rows the same transaction inserts)
    /// when written.
    Refs(Table, Vec<String>),
}

impl Col {
    pub fn str(s: impl Into<String>) -> Col {
        Col::Str(s.into())
    }
    pub fn set<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Col {
        let mut v: Vec<String> = items.into_iter().map(Into::into).collect();
        v.sort();
        v.dedup();
        Col::Set(v)
    }
    /// An optional string column: empty when `None`.
    pub fn opt(s: Option<impl Into<String>>) -> Col {
        Col::set(s.map(Into::into))
    }
    pub fn map<I: IntoIterator<Item = (K, V)>, K: Into<String>, V: Into<String>>(items: I) -> Col {
        Col::Map(
            items
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
    pub fn refs<I: IntoIterator<Item = S>, S: Into<String>>(table: Table, names: I) -> Col {
        let Col::Set(v) = Col::set(names) else {
            unreachable!("Col::set builds a set")
        };
        Col::Refs(table, v)
    }
}

/// Who a row belongs to, as written in its `external_ids`: the kind of
/// owner (a translator's name) and its key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    /// Parents-first rank of the kind (see `translate::registry`); first so
    /// that sorted owners list parents before children.
    rank: u8,
    kind: &'static str,
    key: String,
}

impl Owner {
    /// An owner of a kind the registry lists; `None` for any other.
    pub fn new(kind: &str, key: impl Into<String>) -> Option<Owner> {
        let (rank, kind) = crate::translate::rank(kind)?;
        Some(Owner {
            rank,
            kind,
            key: key.into(),
        })
    }

    /// An owner of a registered kind; panics on an unknown kind, which is
    /// a bug in the caller (translators name their own kind).
    pub fn of(kind: &'static str, key: impl Into<String>) -> Owner {
        Owner::new(kind, key).unwrap_or_else(|| panic!("{kind} is not a registered owner kind"))
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// The owner named by a row's `external_ids`, if it is one of ours.
    pub fn from_external_ids(kind: Option<&str>, owner: Option<&str>) -> Option<Owner> {
        Owner::new(kind?, owner?)
    }

    /// The `external_ids` that mark a row as this owner's.
    pub fn external_ids(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (names::OWNER_KIND.to_string(), self.kind.to_string()),
            (names::OWNER.to_string(), self.key.clone()),
        ])
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind, self.key)
    }
}

/// How a desired row is found among existing ones.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RowId {
    /// The value of the table's name column.
    Name(String),
    /// The [`KEY`] `external_ids` value, unique within the owner.
    Key(String),
}

impl RowId {
    pub fn as_str(&self) -> &str {
        match self {
            RowId::Name(s) | RowId::Key(s) => s,
        }
    }
}

/// A row that must hold this row in one of its columns (a switch's
/// `ports`, a port group's `acls`, a load balancer group's
/// `load_balancer`): the diff adds it there, by mutation, so a row owned by
/// one owner can be attached to rows of many others.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Parent {
    pub table: Table,
    pub name: String,
    pub column: &'static str,
}

impl Parent {
    pub fn new(table: Table, name: impl Into<String>, column: &'static str) -> Parent {
        Parent {
            table,
            name: name.into(),
            column,
        }
    }
}

/// One row as the controller wants it.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredRow {
    pub table: Table,
    pub id: RowId,
    /// Managed columns besides the name column (always including
    /// `external_ids` where the table has it).
    pub cols: Vec<(&'static str, Col)>,
    /// Rows that must reference this one.
    pub parents: Vec<Parent>,
    /// An `external_ids` key whose value fixes the row's identity: a row
    /// with another value is replaced, not updated (a pod recreated under
    /// the same name gets a fresh port).
    pub identity: Option<(&'static str, String)>,
}

impl DesiredRow {
    /// A named row with `owner`'s `external_ids` plus `extra_ids`.
    pub fn named(table: Table, name: impl Into<String>, owner: &Owner) -> DesiredRow {
        let mut cols = Vec::new();
        if table.has_external_ids() {
            cols.push(("external_ids", Col::Map(owner.external_ids())));
        }
        DesiredRow {
            table,
            id: RowId::Name(name.into()),
            cols,
            parents: Vec::new(),
            identity: None,
        }
    }

    /// A row of a table without names, identified by `key` within `owner`.
    pub fn keyed(table: Table, key: impl Into<String>, owner: &Owner) -> DesiredRow {
        let key = key.into();
        let mut ids = owner.external_ids();
        ids.insert(KEY.to_string(), key.clone());
        DesiredRow {
            table,
            id: RowId::Key(key),
            cols: vec![("external_ids", Col::Map(ids))],
            parents: Vec::new(),
            identity: None,
        }
    }

    /// Adds (or replaces) a column.
    pub fn col(mut self, name: &'static str, value: Col) -> DesiredRow {
        self.set(name, value);
        self
    }

    pub fn set(&mut self, name: &'static str, value: Col) {
        match self.cols.iter_mut().find(|(c, _)| *c == name) {
            Some((_, v)) => *v = value,
            None => self.cols.push((name, value)),
        }
    }

    /// Adds `external_ids` entries beside the owner's.
    pub fn ids<I: IntoIterator<Item = (K, V)>, K: Into<String>, V: Into<String>>(
        mut self,
        extra: I,
    ) -> DesiredRow {
        if let Some((_, Col::Map(m))) = self.cols.iter_mut().find(|(c, _)| *c == "external_ids") {
            m.extend(extra.into_iter().map(|(k, v)| (k.into(), v.into())));
        }
        self
    }

    pub fn parent(mut self, p: Parent) -> DesiredRow {
        self.parents.push(p);
        self
    }

    pub fn identity(mut self, key: &'static str, value: impl Into<String>) -> DesiredRow {
        self.identity = Some((key, value.into()));
        self
    }

    pub fn get(&self, name: &str) -> Option<&Col> {
        self.cols.iter().find(|(c, _)| *c == name).map(|(_, v)| v)
    }

    /// The row's name, for named tables.
    pub fn name(&self) -> Option<&str> {
        match &self.id {
            RowId::Name(n) => Some(n),
            RowId::Key(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> ovsdb::Schema {
        let json: serde_json::Value = serde_json::from_str(nb::SCHEMA_JSON).unwrap();
        ovsdb::Schema::from_json(&json).unwrap()
    }

    #[test]
    fn schema_strong_references_are_all_known() {
        // Every strong reference the schema allows into a table the
        // controller writes must be known, or deleting such a row could
        // violate referential integrity.
        let schema = schema();
        for t in Table::ALL {
            let mut want: Vec<(Table, String)> = Vec::new();
            for (tname, st) in &schema.tables {
                for (cname, c) in &st.columns {
                    for base in [Some(&c.kind.key), c.kind.value.as_ref()]
                        .into_iter()
                        .flatten()
                    {
                        if base.ref_table.as_deref() == Some(t.name())
                            && base.ref_type == ovsdb::RefType::Strong
                        {
                            if let Some(from) = Table::from_name(tname) {
                                want.push((from, cname.clone()));
                            }
                        }
                    }
                }
            }
            want.sort();
            let mut have: Vec<(Table, String)> = t
                .strong_parents()
                .iter()
                .map(|(t, c)| (*t, c.to_string()))
                .collect();
            have.sort();
            assert_eq!(have, want, "strong parents of {}", t.name());
            assert_eq!(
                t.is_root(),
                schema.tables[t.name()].is_root,
                "{} root",
                t.name()
            );
        }
    }

    #[test]
    fn monitored_columns_exist_in_the_schema() {
        let schema = schema();
        for t in Table::ALL {
            let st = &schema.tables[t.name()];
            for c in t.columns() {
                assert!(st.columns.contains_key(*c), "{}.{c}", t.name());
            }
        }
    }
}
