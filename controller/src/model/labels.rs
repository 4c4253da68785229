//! Label selectors: matching one object, and finding every pod a selector
//! picks without scanning them all.
//!
//! NetworkPolicy and AdminNetworkPolicy name pods by selector; with 10,000
//! pods and 1,000 policies a scan per policy per change would dominate the
//! controller. The index maps each label key and value to the pods that
//! carry it, so a selector with any `matchLabels` entry or `In` expression
//! starts from the smallest matching set and checks only those.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::objects::Labels;

/// A selector the API server should have refused (it validates them): an
/// unknown operator, or values where none belong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector: {0}")]
pub struct SelectorError(pub String);

fn requirement_matches(
    r: &LabelSelectorRequirement,
    labels: &Labels,
) -> Result<bool, SelectorError> {
    let values = r.values.as_deref().unwrap_or_default();
    let have = labels.get(&r.key);
    match r.operator.as_str() {
        "In" => {
            if values.is_empty() {
                return Err(SelectorError(format!("{}: In needs values", r.key)));
            }
            Ok(have.is_some_and(|v| values.contains(v)))
        }
        "NotIn" => {
            if values.is_empty() {
                return Err(SelectorError(format!("{}: NotIn needs values", r.key)));
            }
            Ok(have.is_none_or(|v| !values.contains(v)))
        }
        "Exists" | "DoesNotExist" if !values.is_empty() => Err(SelectorError(format!(
            "{}: {} takes no values",
            r.key, r.operator
        ))),
        "Exists" => Ok(have.is_some()),
        "DoesNotExist" => Ok(have.is_none()),
        op => Err(SelectorError(format!("{}: unknown operator {op:?}", r.key))),
    }
}

/// Whether `labels` satisfy `sel`; an empty selector selects everything.
pub fn matches(sel: &LabelSelector, labels: &Labels) -> Result<bool, SelectorError> {
    for (k, v) in sel.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            // Still validate the rest, so an invalid selector is always an
            // error and never sometimes a non-match.
            validate(sel)?;
            return Ok(false);
        }
    }
    let mut all = true;
    for r in sel.match_expressions.iter().flatten() {
        all &= requirement_matches(r, labels)?;
    }
    Ok(all)
}

/// Checks a selector's operators and values.
pub fn validate(sel: &LabelSelector) -> Result<(), SelectorError> {
    let empty = Labels::new();
    for r in sel.match_expressions.iter().flatten() {
        requirement_matches(r, &empty)?;
    }
    Ok(())
}

/// Label key → value → objects carrying it.
#[derive(Clone, Debug)]
pub struct LabelIndex<K: Ord + Clone> {
    by_key: HashMap<String, HashMap<String, BTreeSet<K>>>,
}

impl<K: Ord + Clone> Default for LabelIndex<K> {
    fn default() -> Self {
        LabelIndex {
            by_key: HashMap::new(),
        }
    }
}

impl<K: Ord + Clone> LabelIndex<K> {
    pub fn insert(&mut self, k: &K, labels: &Labels) {
        for (key, value) in labels {
            self.by_key
                .entry(key.clone())
                .or_default()
                .entry(value.clone())
                .or_default()
                .insert(k.clone());
        }
    }

    pub fn remove(&mut self, k: &K, labels: &Labels) {
        for (key, value) in labels {
            if let Some(values) = self.by_key.get_mut(key) {
                if let Some(set) = values.get_mut(value) {
                    set.remove(k);
                    if set.is_empty() {
                        values.remove(value);
                    }
                }
                if values.is_empty() {
                    self.by_key.remove(key);
                }
            }
        }
    }

    /// Objects with `key` = any of `values`.
    fn with_any(&self, key: &str, values: &[String]) -> BTreeSet<K> {
        let Some(m) = self.by_key.get(key) else {
            return BTreeSet::new();
        };
        values
            .iter()
            .filter_map(|v| m.get(v))
            .flat_map(|s| s.iter().cloned())
            .collect()
    }

    /// The candidates a selector can only pick from, when some part of it
    /// narrows the search; `None` when it needs every object.
    pub fn candidates(&self, sel: &LabelSelector) -> Option<BTreeSet<K>> {
        let mut best: Option<BTreeSet<K>> = None;
        let mut consider = |set: BTreeSet<K>| {
            if best.as_ref().is_none_or(|b| set.len() < b.len()) {
                best = Some(set);
            }
        };
        for (k, v) in sel.match_labels.iter().flatten() {
            consider(self.with_any(k, std::slice::from_ref(v)));
        }
        for r in sel.match_expressions.iter().flatten() {
            match r.operator.as_str() {
                "In" => consider(self.with_any(&r.key, r.values.as_deref().unwrap_or_default())),
                "Exists" => consider(
                    self.by_key
                        .get(&r.key)
                        .map(|m| m.values().flat_map(|s| s.iter().cloned()).collect())
                        .unwrap_or_default(),
                ),
                _ => {}
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|s| s.to_string()).collect())
                .filter(|v: &Vec<_>| !v.is_empty()),
        }
    }

    #[test]
    fn selectors_match_as_the_api_documents() {
        let l = labels(&[("app", "web"), ("tier", "fe")]);
        let empty = LabelSelector::default();
        assert!(matches(&empty, &l).unwrap());
        let sel = |ml: &[(&str, &str)], ex: Vec<LabelSelectorRequirement>| LabelSelector {
            match_labels: Some(labels(ml)).filter(|m| !m.is_empty()),
            match_expressions: Some(ex).filter(|e| !e.is_empty()),
        };
        assert!(matches(&sel(&[("app", "web")], vec![]), &l).unwrap());
        assert!(!matches(&sel(&[("app", "db")], vec![]), &l).unwrap());
        assert!(matches(&sel(&[], vec![req("tier", "In", &["fe", "be"])]), &l).unwrap());
        assert!(!matches(&sel(&[], vec![req("tier", "NotIn", &["fe"])]), &l).unwrap());
        assert!(matches(&sel(&[], vec![req("env", "NotIn", &["prod"])]), &l).unwrap());
        assert!(matches(&sel(&[], vec![req("app", "Exists", &[])]), &l).unwrap());
        assert!(matches(&sel(&[], vec![req("env", "DoesNotExist", &[])]), &l).unwrap());
        assert!(matches(&sel(&[], vec![req("app", "Bogus", &[])]), &l).is_err());
        assert!(matches(&sel(&[], vec![req("app", "In", &[])]), &l).is_err());
        assert!(
            matches(&sel(&[("app", "db")], vec![req("x", "Exists", &["v"])]), &l).is_err(),
            "invalid even when an earlier term does not match"
        );
    }

    #[test]
    fn the_index_narrows_to_the_smallest_set() {
        let mut idx: LabelIndex<String> = LabelIndex::default();
        for i in 0..10 {
            let tier = if i < 2 { "db" } else { "web" };
            idx.insert(
                &format!("p{i}"),
                &labels(&[("app", "shop"), ("tier", tier)]),
            );
        }
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "shop"), ("tier", "db")])),
            match_expressions: None,
        };
        assert_eq!(idx.candidates(&sel).unwrap().len(), 2);
        idx.remove(
            &"p0".to_string(),
            &labels(&[("app", "shop"), ("tier", "db")]),
        );
        assert_eq!(idx.candidates(&sel).unwrap().len(), 1);
        assert!(idx.candidates(&LabelSelector::default()).is_none());
    }
}
