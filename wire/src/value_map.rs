//! [`Values`]: a reading's values by name, kept in one contiguous, name-ordered list in which
//! canonical names are an index into [`crate::values::CANONICAL`] instead of an owned string.
//!
//! A reading carries 15–20 named values. As a `BTreeMap<String, f64>` that was one allocation
//! per name plus the tree's nodes, for every reading decoded at the gateway and every reading
//! the rule engine turned into its dense array (where each name was a cache miss). Here a
//! canonical name costs nothing to store, and the rule engine reads its index directly
//! ([`Values::canonical`]). Names outside the canonical set (a newer agent's, a test's) are
//! kept as text, so nothing that was accepted is lost. The JSON form is unchanged: an object
//! of name → number, names in byte order, as the map wrote it.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::values::{position, CANONICAL};

/// One value's name: a canonical name by its index, or any other name as text. A name that is
/// canonical is always stored by index, so equal names have equal representations.
#[derive(Clone, PartialEq, Eq)]
enum Name {
    Canonical(u8),
    Other(Box<str>),
}

impl Name {
    fn new(name: &str) -> Name {
        match position(name).and_then(|i| u8::try_from(i).ok()) {
            Some(index) => Name::Canonical(index),
            None => Name::Other(name.into()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Name::Canonical(index) => CANONICAL
                .get(usize::from(*index))
                .map_or("", |canonical| canonical.name),
            Name::Other(name) => name,
        }
    }
}

/// A reading's values by name, in name order, each name at most once (as a map).
#[derive(Default, PartialEq)]
pub struct Values {
    entries: Vec<(Name, f64)>,
}

impl Clone for Values {
    fn clone(&self) -> Values {
        Values {
            entries: self.entries.clone(),
        }
    }

    /// Reuses `self`'s list: copying a device's latest values over its previous ones allocates
    /// nothing when the names are canonical.
    fn clone_from(&mut self, source: &Values) {
        self.entries.clone_from(&source.entries);
    }
}

impl Values {
    pub fn new() -> Values {
        Values::default()
    }

    pub fn with_capacity(capacity: usize) -> Values {
        Values {
            entries: Vec::with_capacity(capacity),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Values from pairs in any order, a repeated name keeping its last value (as inserting
    /// them one by one into a map would). Sorting once keeps this O(n log n) whatever the order:
    /// inserting one by one would move the list for every name of a payload written backwards.
    fn from_unordered(mut entries: Vec<(Name, f64)>) -> Values {
        let ordered = entries
            .windows(2)
            .all(|pair| matches!(pair, [a, b] if a.0.as_str() < b.0.as_str()));
        if !ordered {
            // Stable: equal names stay in arrival order, so the run's last is the latest.
            entries.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
            entries.dedup_by(|later, kept| {
                let same = later.0 == kept.0;
                if same {
                    kept.1 = later.1;
                }
                same
            });
        }
        Values { entries }
    }

    /// Where `name` is or would go, in name order.
    fn find(&self, name: &str) -> Result<usize, usize> {
        // Values mostly arrive in name order (agents write them so): try the end first.
        match self.entries.last() {
            None => return Err(0),
            Some((last, _)) if last.as_str() < name => return Err(self.entries.len()),
            _ => {}
        }
        self.entries
            .binary_search_by(|(entry, _)| entry.as_str().cmp(name))
    }

    /// The value of `name`, if the reading has it.
    pub fn get(&self, name: &str) -> Option<f64> {
        let at = self.find(name).ok()?;
        self.entries.get(at).map(|(_, value)| *value)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut f64> {
        let at = self.find(name).ok()?;
        self.entries.get_mut(at).map(|(_, value)| value)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// Sets `name` to `value`; returns the value it replaces, as a map's `insert` does.
    pub fn insert(&mut self, name: impl AsRef<str>, value: f64) -> Option<f64> {
        let name = name.as_ref();
        match self.find(name) {
            Ok(at) => self
                .entries
                .get_mut(at)
                .map(|(_, old)| std::mem::replace(old, value)),
            Err(at) => {
                self.entries.insert(at, (Name::new(name), value));
                None
            }
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<f64> {
        let at = self.find(name).ok()?;
        Some(self.entries.remove(at).1)
    }

    /// Name and value pairs in name order.
    pub fn iter(&self) -> Iter<'_> {
        Iter(self.entries.iter())
    }

    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.entries.iter().map(|(name, _)| name.as_str())
    }

    /// The canonical values as (index in [`crate::values::CANONICAL`], value), in name order;
    /// other names are left out. What the rule engine reads, without comparing any text.
    pub fn canonical(&self) -> impl Iterator<Item = (usize, f64)> + '_ {
        self.entries.iter().filter_map(|(name, value)| match name {
            Name::Canonical(index) => Some((usize::from(*index), *value)),
            Name::Other(_) => None,
        })
    }

    /// Keeps the values for which `keep(name, value)` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, f64) -> bool) {
        self.entries
            .retain(|(name, value)| keep(name.as_str(), *value));
    }
}

impl fmt::Debug for Values {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<N: AsRef<str>> FromIterator<(N, f64)> for Values {
    fn from_iter<I: IntoIterator<Item = (N, f64)>>(iter: I) -> Values {
        Values::from_unordered(
            iter.into_iter()
                .map(|(name, value)| (Name::new(name.as_ref()), value))
                .collect(),
        )
    }
}

impl<N: AsRef<str>> Extend<(N, f64)> for Values {
    fn extend<I: IntoIterator<Item = (N, f64)>>(&mut self, iter: I) {
        let mut entries = std::mem::take(&mut self.entries);
        entries.extend(
            iter.into_iter()
                .map(|(name, value)| (Name::new(name.as_ref()), value)),
        );
        *self = Values::from_unordered(entries);
    }
}

impl<N: AsRef<str>, const K: usize> From<[(N, f64); K]> for Values {
    fn from(pairs: [(N, f64); K]) -> Values {
        pairs.into_iter().collect()
    }
}

/// Name and value pairs of [`Values`] in name order.
#[derive(Clone)]
pub struct Iter<'a>(std::slice::Iter<'a, (Name, f64)>);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, f64);

    fn next(&mut self) -> Option<(&'a str, f64)> {
        self.0.next().map(|(name, value)| (name.as_str(), *value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Values {
    type Item = (&'a str, f64);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl Serialize for Values {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (name, value) in self.iter() {
            map.serialize_entry(name, &value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Values {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Values, D::Error> {
        deserializer.deserialize_map(ValuesVisitor)
    }
}

struct ValuesVisitor;

impl<'de> Visitor<'de> for ValuesVisitor {
    type Value = Values;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of value names to numbers")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Values, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(20).min(64));
        while let Some(name) = map.next_key::<NameKey<'de>>()? {
            let value: f64 = map.next_value()?;
            entries.push((Name::new(name.as_str()), value));
        }
        Ok(Values::from_unordered(entries))
    }
}

/// A key borrowed from the input where the format allows (no escapes), copied otherwise.
enum NameKey<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl NameKey<'_> {
    fn as_str(&self) -> &str {
        match self {
            NameKey::Borrowed(name) => name,
            NameKey::Owned(name) => name,
        }
    }
}

impl<'de> Deserialize<'de> for NameKey<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<NameKey<'de>, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = NameKey<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value name")
            }

            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(NameKey::Borrowed(v))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(NameKey::Owned(v.to_owned()))
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(NameKey::Owned(v))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Names: every canonical one, some near misses, and text that needs escaping in JSON.
    fn names() -> Vec<String> {
        CANONICAL
            .iter()
            .map(|c| c.name.to_owned())
            .chain(
                [
                    "",
                    "a",
                    "indoor_temp_c\0",
                    "indoor_temp_",
                    "zzz",
                    "Ünïcode",
                    "quote\"d",
                    "runtime_h_",
                ]
                .map(str::to_owned),
            )
            .collect()
    }

    #[test]
    fn behaves_as_a_map_of_names_in_byte_order() {
        let names = names();
        for step in 1..names.len() {
            let mut map = BTreeMap::new();
            let mut values = Values::new();
            // Insert in a scrambled order, some names twice.
            for round in 0..2 {
                for (i, name) in names.iter().enumerate().rev() {
                    if (i + round) % step == 0 {
                        let value = (i * 10 + round) as f64;
                        assert_eq!(values.insert(name, value), map.insert(name.clone(), value));
                    }
                }
            }
            let expected: Vec<(&str, f64)> = map.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            assert_eq!(values.iter().collect::<Vec<_>>(), expected);
            assert_eq!(values.len(), map.len());
            for name in &names {
                assert_eq!(values.get(name), map.get(name).copied(), "{name:?}");
                assert_eq!(values.contains_key(name), map.contains_key(name));
            }
            let json = serde_json::to_string(&values).expect("serialises");
            assert_eq!(json, serde_json::to_string(&map).expect("serialises"));
            let back: Values = serde_json::from_str(&json).expect("parses");
            assert_eq!(back, values);
        }
    }

    #[test]
    fn canonical_names_are_indexes_and_others_are_kept() {
        let values = Values::from([
            ("outdoor_temp_c", -8.0),
            ("vendor_special", 3.0),
            ("indoor_temp_c", 19.5),
        ]);
        let canonical: Vec<(usize, f64)> = values.canonical().collect();
        let at = |name| position(name).expect("canonical");
        assert_eq!(
            canonical,
            vec![(at("indoor_temp_c"), 19.5), (at("outdoor_temp_c"), -8.0)]
        );
        assert_eq!(values.get("vendor_special"), Some(3.0));
        assert_eq!(
            values.keys().collect::<Vec<_>>(),
            ["indoor_temp_c", "outdoor_temp_c", "vendor_special"]
        );
    }

    #[test]
    fn json_repeated_names_keep_the_last_and_wrong_types_are_errors() {
        let values: Values =
            serde_json::from_str(r#"{"indoor_temp_c": 1, "indoor_temp_c": 2.5, "b\u0041": 3}"#)
                .expect("parses");
        assert_eq!(values.get("indoor_temp_c"), Some(2.5));
        assert_eq!(values.get("bA"), Some(3.0));
        assert!(serde_json::from_str::<Values>(r#"{"indoor_temp_c": "warm"}"#).is_err());
        assert!(serde_json::from_str::<Values>(r#"[1, 2]"#).is_err());
    }

    #[test]
    fn a_payload_of_many_names_in_any_order_is_a_map() {
        // Written backwards, every name twice: the order costs one sort, not a move per name.
        let names: Vec<String> = (0..20_000).map(|i| format!("n{i:05}")).collect();
        let mut json = String::from("{");
        for round in 0..2 {
            for (i, name) in names.iter().enumerate().rev() {
                json.push_str(&format!("\"{name}\":{},", i * 2 + round));
            }
        }
        json.pop();
        json.push('}');
        let values: Values = serde_json::from_str(&json).expect("parses");
        let map: BTreeMap<String, f64> = serde_json::from_str(&json).expect("parses");
        assert_eq!(values.len(), names.len());
        assert!(values
            .iter()
            .eq(map.iter().map(|(name, value)| (name.as_str(), *value))));
        let mut extended = Values::from([("n00003", 0.0)]);
        extended.extend([("n00001", 1.0), ("n00003", 3.0), ("n00002", 2.0)]);
        assert_eq!(
            extended.iter().collect::<Vec<_>>(),
            [("n00001", 1.0), ("n00002", 2.0), ("n00003", 3.0)]
        );
    }

    #[test]
    fn remove_and_retain() {
        let mut values = Values::from([("running", 1.0), ("x", 2.0), ("fault_code", 0.0)]);
        assert_eq!(values.remove("x"), Some(2.0));
        assert_eq!(values.remove("x"), None);
        values.retain(|name, _| name != "running");
        assert_eq!(values.keys().collect::<Vec<_>>(), ["fault_code"]);
        *values.get_mut("fault_code").expect("present") = 7.0;
        assert_eq!(values.get("fault_code"), Some(7.0));
    }
}
