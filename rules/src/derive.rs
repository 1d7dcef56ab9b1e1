//! Rule files derived from another: without some device rules ([`drop_rules`]: the winter
//! bench's `--drop-rules`, so the score card shows what the other detectors catch on their own)
//! or with only some ([`keep_rules`]: the small pack an edge box runs on its own while its
//! uplink is down). Pure: text in, text out.
//!
//! Each dropped rule's `[[rule]]` table is removed, and its id is removed from every
//! `[[fleet]]` table's `members` (a string or a list), `clear_members` and `explains`; a fleet
//! rule left with no member is removed too. The result is checked with [`crate::RuleSet::parse`].

use toml::{Table, Value};

/// A derived rule file.
#[derive(Debug, Clone, PartialEq)]
pub struct DerivedRules {
    /// The TOML text (comments of the original are not kept).
    pub text: String,
    /// Device rules removed, in the order asked.
    pub dropped: Vec<String>,
    /// Fleet rules removed because none of their members was left.
    pub dropped_fleet: Vec<String>,
}

/// Removes the device rules `drop` from the rule file `text` (named `origin` in messages).
/// An id that is no `[[rule]]` of the file is an error naming it.
pub fn drop_rules(text: &str, origin: &str, drop: &[String]) -> Result<DerivedRules, String> {
    derive(text, origin, Select::Drop(drop))
}

/// Keeps only the device rules `keep` of the rule file `text` (named `origin` in messages),
/// and no fleet rule (they need the whole village). An id that is no `[[rule]]` of the file
/// is an error naming it.
pub fn keep_rules(text: &str, origin: &str, keep: &[String]) -> Result<DerivedRules, String> {
    derive(text, origin, Select::Keep(keep))
}

/// Which device rules a derived file has.
#[derive(Clone, Copy)]
enum Select<'a> {
    Drop(&'a [String]),
    Keep(&'a [String]),
}

fn derive(text: &str, origin: &str, select: Select<'_>) -> Result<DerivedRules, String> {
    let mut file: Table =
        toml::from_str(text).map_err(|e| format!("{origin} is not valid TOML: {e}"))?;
    let rules = match file.get_mut("rule") {
        Some(Value::Array(rules)) => rules,
        None => return Err(format!("{origin} has no [[rule]] tables")),
        Some(_) => return Err(format!("{origin}: `rule` is not an array of tables")),
    };
    let known: Vec<String> = rules.iter().map(id_of).collect();
    let dropped = dropped_ids(origin, select, &known)?;
    rules.retain(|rule| !dropped.contains(&id_of(rule)));
    let dropped_fleet = match select {
        Select::Drop(_) => prune_fleet(&mut file, &dropped),
        Select::Keep(_) => {
            let mut all = Vec::new();
            if let Some(Value::Array(fleet)) = file.get("fleet") {
                all.extend(fleet.iter().map(id_of));
            }
            file.remove("fleet");
            all
        }
    };
    let body =
        toml::to_string(&file).map_err(|e| format!("cannot write the derived rules: {e}"))?;
    let mut text = match select {
        Select::Drop(_) => format!(
            "# Derived from {origin}, without the rules {}",
            dropped.join(", ")
        ),
        Select::Keep(ids) => format!(
            "# Derived from {origin}, with only the rules {}",
            ids.join(", ")
        ),
    };
    if !dropped_fleet.is_empty() {
        text.push_str(&format!(
            " (and the fleet rules {}, left without members)",
            dropped_fleet.join(", ")
        ));
    }
    text.push_str(".\n\n");
    text.push_str(&body);
    let derived_origin = match select {
        Select::Drop(_) => format!("{origin} without {}", dropped.join(", ")),
        Select::Keep(ids) => format!("{origin} with only {}", ids.join(", ")),
    };
    crate::RuleSet::parse(&text, &derived_origin)
        .map_err(|e| format!("the derived rule file is refused: {e}"))?;
    Ok(DerivedRules {
        text,
        dropped,
        dropped_fleet,
    })
}

/// The `id` of a `[[rule]]` or `[[fleet]]` table (empty when it has none).
fn id_of(table: &Value) -> String {
    table
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_default()
}

/// The device rules a derived file goes without, each once, in the order asked (or, keeping
/// some, in file order); an id named that is no rule of the file (`known`) is an error.
fn dropped_ids(origin: &str, select: Select<'_>, known: &[String]) -> Result<Vec<String>, String> {
    let named = match select {
        Select::Drop(ids) | Select::Keep(ids) => ids,
    };
    for id in named {
        if !known.contains(id) {
            return Err(format!(
                "{origin} has no rule {id:?} (its rules: {})",
                known.join(", ")
            ));
        }
    }
    let mut dropped = Vec::new();
    for id in match select {
        Select::Drop(ids) => ids.to_vec(),
        Select::Keep(ids) => known.iter().filter(|k| !ids.contains(k)).cloned().collect(),
    } {
        if !dropped.contains(&id) {
            dropped.push(id);
        }
    }
    Ok(dropped)
}

/// Removes the `dropped` rules from every `[[fleet]]` table's `members`, `clear_members` and
/// `explains`, and the fleet rules left without a member; returns the ids of those.
fn prune_fleet(file: &mut Table, dropped: &[String]) -> Vec<String> {
    let mut dropped_fleet = Vec::new();
    let Some(Value::Array(fleet)) = file.get_mut("fleet") else {
        return dropped_fleet;
    };
    let keep = |id: &Value| {
        id.as_str()
            .is_none_or(|id| !dropped.iter().any(|d| d == id))
    };
    for table in fleet.iter_mut() {
        let Some(table) = table.as_table_mut() else {
            continue;
        };
        match table.get_mut("members") {
            Some(Value::String(member)) if dropped.contains(member) => {
                table.insert("members".to_owned(), Value::Array(Vec::new()));
            }
            Some(Value::Array(members)) => members.retain(keep),
            _ => {}
        }
        for key in ["clear_members", "explains"] {
            if let Some(Value::Array(ids)) = table.get_mut(key) {
                ids.retain(keep);
            }
        }
    }
    fleet.retain(|table| {
        let empty = table
            .get("members")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty);
        if empty {
            dropped_fleet.push(id_of(table));
        }
        !empty
    });
    if fleet.is_empty() {
        file.remove("fleet");
    }
    dropped_fleet
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn dropping_the_fault_code_rules_from_the_default_pack() {
        let derived = drop_rules(
            crate::DEFAULT_RULES,
            crate::DEFAULT_RULES_ORIGIN,
            &ids(&["device_fault", "gas_fault", "protection_trips"]),
        )
        .expect("derived");
        assert_eq!(
            derived.dropped,
            ids(&["device_fault", "gas_fault", "protection_trips"])
        );
        // The village heat-pump trips rule counted only protection_trips: it goes with it.
        assert_eq!(derived.dropped_fleet, ids(&["village_heat_pump_trips"]));
        let set = crate::RuleSet::parse(&derived.text, "derived").expect("valid");
        let original =
            crate::RuleSet::parse(crate::DEFAULT_RULES, crate::DEFAULT_RULES_ORIGIN).expect("ok");
        assert_eq!(set.len() + 3, original.len());
        let file: Table = toml::from_str(&derived.text).expect("toml");
        let rule_ids: Vec<&str> = file["rule"]
            .as_array()
            .expect("rules")
            .iter()
            .filter_map(|r| r["id"].as_str())
            .collect();
        for gone in ["device_fault", "gas_fault", "protection_trips"] {
            assert!(!rule_ids.contains(&gone), "{gone} is still there");
        }
        assert!(rule_ids.contains(&"indoor_cold"));
        // Every fleet rule keeps its other members and explained rules, in order; the
        // dropped ids are gone from all of them.
        let list = |v: &Value| -> Vec<String> {
            match v {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                _ => Vec::new(),
            }
        };
        let before: Table = toml::from_str(crate::DEFAULT_RULES).expect("toml");
        let old_fleet: Vec<&Value> = before["fleet"]
            .as_array()
            .expect("fleet rules")
            .iter()
            .filter(|f| f["id"].as_str() != Some("village_heat_pump_trips"))
            .collect();
        let new_fleet = file["fleet"].as_array().expect("fleet rules");
        assert_eq!(
            old_fleet.len(),
            new_fleet.len(),
            "no other fleet rule lost all members"
        );
        let dropped = ["device_fault", "gas_fault", "protection_trips"];
        let mut touched = 0;
        for (old, new) in old_fleet.iter().zip(new_fleet) {
            assert_eq!(old["id"], new["id"]);
            for key in ["members", "explains"] {
                let kept: Vec<String> = list(&old[key])
                    .into_iter()
                    .filter(|id| !dropped.contains(&id.as_str()))
                    .collect();
                assert_eq!(list(&new[key]), kept, "{key} of {}", new["id"]);
                touched += usize::from(kept.len() < list(&old[key]).len());
            }
        }
        assert!(touched > 0, "the default pack's fleet rules name gas_fault");
        let gas = new_fleet
            .iter()
            .find(|f| f["id"].as_str() == Some("village_gas_supply"))
            .expect("the gas fleet rule stays: gas_pressure_low is still a member");
        assert!(list(&gas["members"]).contains(&"gas_pressure_low".to_owned()));
    }

    #[test]
    fn a_fleet_rule_left_without_members_goes_and_an_unknown_id_is_named() {
        let derived = drop_rules(
            crate::DEFAULT_RULES,
            crate::DEFAULT_RULES_ORIGIN,
            &ids(&["offline", "unit_unpowered"]),
        )
        .expect("derived");
        assert_eq!(derived.dropped_fleet, ids(&["village_power_outage"]));
        crate::RuleSet::parse(&derived.text, "derived").expect("valid");
        // A member that decides when a supply incident ends goes from `clear_members` too.
        let derived = drop_rules(
            crate::DEFAULT_RULES,
            crate::DEFAULT_RULES_ORIGIN,
            &ids(&["gas_pressure_low"]),
        )
        .expect("derived");
        assert!(derived.dropped_fleet.is_empty());
        let set = crate::RuleSet::parse(&derived.text, "derived").expect("valid");
        let gas = set
            .fleet()
            .iter()
            .find(|f| f.id == "village_gas_supply")
            .expect("the gas rule stays");
        assert!(gas.clear_members.is_empty());
        let error = drop_rules(
            crate::DEFAULT_RULES,
            crate::DEFAULT_RULES_ORIGIN,
            &ids(&["device_fault", "no_such_rule"]),
        )
        .expect_err("unknown id");
        assert!(error.contains("\"no_such_rule\""), "{error}");
    }

    #[test]
    fn keeping_a_few_rules_leaves_no_fleet_rule_and_names_an_unknown_id() {
        let keep = ids(&["heating_stopped", "freeze_risk"]);
        let derived =
            keep_rules(crate::DEFAULT_RULES, crate::DEFAULT_RULES_ORIGIN, &keep).expect("derived");
        let set = crate::RuleSet::parse(&derived.text, "derived").expect("valid");
        let kept: Vec<&str> = set.rules().iter().map(|r| r.id.as_str()).collect();
        assert_eq!(kept, ["heating_stopped", "freeze_risk"]);
        assert!(set.fleet().is_empty());
        assert!(derived
            .dropped_fleet
            .contains(&"village_power_outage".to_owned()));
        assert!(derived.text.starts_with("# Derived from "));
        let error = keep_rules(
            crate::DEFAULT_RULES,
            crate::DEFAULT_RULES_ORIGIN,
            &ids(&["heating_stopped", "no_such_rule"]),
        )
        .expect_err("unknown id");
        assert!(error.contains("no rule \"no_such_rule\""), "{error}");
    }
}
