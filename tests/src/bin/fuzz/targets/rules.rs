//! Target `rules`: `rules::RuleSet::parse` on rule files (TOML with winnow-parsed `when` and
//! `clear` expressions), and, for a file it accepts, the engine run over a few readings of
//! two registered devices, so that an expression the parser let through is also evaluated.
//!
//! Checks what `rules::error` documents: an error's message starts with
//! `origin:line:column:` and its location is a 1-based position inside the text.

use std::collections::BTreeMap;

use rules::{DeviceInfo, Engine, RuleSet};
use wire::values::CANONICAL;
use wire::{DeviceId, DeviceKind, Fault, FaultCategory, Telemetry, Values};

use super::{fenced_blocks, files_in, normalise, raw_strings, read, split_tables, Target};
use crate::input::Input;
use crate::mutate::Dictionary;
use crate::rng::fnv1a;

const ORIGIN: &str = "fuzz.toml";

pub struct Rules;

/// Every expression function, override and escalation in one file.
const EVERYTHING: &str = r#"
[[rule]]
id = "all_functions"
kind = "expr"
applies_to = ["heat_pump", "gas_boiler"]
when = 'min(indoor_temp_c, 1h) < 14 and max(flow_temp_c, 30m) > avg(return_temp_c, 2h) and count(setpoint_c, 1h30m) >= 3 and rate(indoor_temp_c, 2h) < -0.5 and slope_per_day(water_pressure_bar, 3d) < -0.05 and hours_to(water_pressure_bar, 0.8, 3d) < 48 and starts(running, 1h) >= 6 and increase(ignition_attempts, 1h) > 4 and share(defrost_active, 2h) > 0.25 and trips(1h, "water_flow", "high_pressure") >= 2 and cop(6h) < 2 and cop_ratio(6h) < 0.75 and fault_in("overheat", "freeze_protection") and present(outdoor_temp_c) and abs(outdoor_temp_c) > 10 and not vulnerable and fault == true and (1 + 2 * 3 / 4 - -5) != 0 and 30m < 1d'
clear = "indoor_temp_c > 16 or setpoint_c < 16"
for = "10m"
clear_for = "5m"
severity = "major"
action = { order = { category = "repair", priority = "high" } }

[[rule.escalate]]
when = "indoor_temp_c < 10"
for = "15m"
severity = "critical"
priority = "urgent"

[[rule.override]]
townships = ["yanqing"]
villages = ["dongguan"]
vulnerable = true
tags = ["pilot"]
for = "5m"
severity = "critical"
action = "alert"

[[rule.override.escalate]]
when = "indoor_temp_c < 12"
for = "5m"
severity = "critical"

[[rule]]
id = "pressure_low"
kind = "threshold"
value = "water_pressure_bar"
below = 0.8
clear_above = 1.0
applies_to = ["gas_boiler"]
severity = "minor"
action = { order = { category = "low_water_pressure" } }

[[rule]]
id = "silent"
kind = "absence"
when = "outdoor_temp_c < 0"
for = "30m"
severity = "critical"
action = "alert"

[[rule]]
id = "any_fault"
kind = "fault"
categories = ["ignition_failure", "flame_loss"]
severity = "major"
action = { order = { category = "repair", priority = "normal" } }

[[fleet]]
id = "village_outage"
group = "village"
members = ["silent", "any_fault"]
share = 0.3
min_affected = 2
min_devices = 2
within = "5m"
clear_share = 0.1
explains = ["pressure_low"]
grace = "30m"
severity = "critical"
action = { order = { category = "power_supply", priority = "urgent" } }
"#;

/// Rule-file texts in the repository: the packs, the scenarios' own rule sets, the raw
/// strings of the crate's tests and the README's examples.
fn repository_rule_files() -> Vec<String> {
    let mut texts = vec![rules::DEFAULT_RULES.to_owned()];
    texts.extend(read("rules/src/legacy_test_rules.toml"));
    for path in files_in("rules/tests/scenarios", "toml") {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        if let Ok(table) = text.parse::<toml::Table>() {
            if let Some(rules) = table.get("rules").and_then(|r| r.as_str()) {
                if rules != "default" {
                    texts.push(rules.to_owned());
                }
            }
        }
    }
    let is_rule_file = |text: &str| text.contains("[[rule]]") || text.contains("[[fleet]]");
    for folder in [
        "rules/src",
        "rules/src/expr",
        "rules/tests",
        "gateway/src/ingest",
    ] {
        for path in files_in(folder, "rs") {
            if let Ok(source) = std::fs::read_to_string(&path) {
                texts.extend(raw_strings(&source).into_iter().filter(|t| is_rule_file(t)));
            }
        }
    }
    if let Some(readme) = read("rules/README.md") {
        texts.extend(
            fenced_blocks(&readme)
                .into_iter()
                .filter(|t| is_rule_file(t)),
        );
    }
    texts
}

/// The outcome of a few readings through an engine with `set`: whether anything fired.
fn exercise(set: RuleSet, salt: u64) -> bool {
    const FRACTIONS: [f64; 9] = [0.0, 0.05, 0.2, 0.4, 0.45, 0.5, 0.8, 0.95, 1.0];
    const BASE_MS: i64 = 1_796_000_000_000;
    let mut engine = Engine::new(set);
    let devices = [
        (
            "fz-0001-hp",
            DeviceKind::HeatPump,
            true,
            vec!["pilot".to_owned()],
        ),
        ("fz-0002-gb", DeviceKind::GasBoiler, false, Vec::new()),
    ];
    let mut ids = Vec::new();
    for (id, kind, vulnerable, tags) in devices {
        let Ok(device) = DeviceId::parse(id) else {
            return false;
        };
        engine.register_device(
            device.clone(),
            DeviceInfo {
                kind: Some(kind),
                township: Some("yanqing".into()),
                village: Some("dongguan".into()),
                vulnerable,
                tags,
                ..Default::default()
            },
        );
        ids.push((device, kind));
    }
    let mut fired = false;
    let salt = salt as usize;
    for step in 0..12usize {
        let ts_ms = BASE_MS + step as i64 * 600_000;
        for (d, (device, kind)) in ids.iter().enumerate() {
            let mut values = Values::new();
            for (index, canonical) in CANONICAL.iter().enumerate() {
                if (step + index + salt) % 5 == 0 {
                    continue;
                }
                let fraction = FRACTIONS[(step * 7 + d * 3 + index + salt) % FRACTIONS.len()];
                values.insert(
                    canonical.name,
                    canonical.min + (canonical.max - canonical.min) * fraction,
                );
            }
            let fault = (d == 0 && (3..6).contains(&step)).then(|| Fault {
                code: 3,
                category: FaultCategory::ALL[(step + salt) % FaultCategory::ALL.len()],
                text: String::new(),
            });
            let reading = Telemetry {
                v: wire::SCHEMA_VERSION,
                device_id: device.clone(),
                ts_ms,
                seq: step as u64 + 1,
                profile: "fuzz".into(),
                kind: *kind,
                values,
                fault,
                extra: BTreeMap::new(),
            };
            fired |= !engine.process(&reading).transitions.is_empty();
        }
        fired |= !engine
            .advance_watermark(ts_ms + 300_000)
            .transitions
            .is_empty();
    }
    fired |= !engine
        .advance_watermark(BASE_MS + 40 * 86_400_000)
        .transitions
        .is_empty();
    fired
}

impl Target for Rules {
    fn name(&self) -> &'static str {
        "rules"
    }

    fn main_part(&self) -> &'static str {
        "rules"
    }

    fn seeds(&self) -> Vec<Input> {
        let mut texts = repository_rule_files();
        texts.push(EVERYTHING.to_owned());
        // Each rule of the packs alone, too: small inputs parse fast.
        let mut single = Vec::new();
        for text in &texts {
            let (_, chunks) = split_tables(text, &["[[rule]]"]);
            if chunks.len() > 1 {
                single.extend(chunks.into_iter().filter(|c| !c.contains("[[fleet]]")));
            }
        }
        texts.extend(single);
        texts.sort();
        texts.dedup();
        texts
            .into_iter()
            .map(|text| Input::new([("rules", text.into_bytes())]))
            .collect()
    }

    fn dictionary(&self, seeds: &[Input]) -> Dictionary {
        let mut dictionary = Dictionary::new(
            &[
                "[[rule]]\n",
                "[[fleet]]\n",
                "[[rule.escalate]]\n",
                "[[rule.override]]\n",
                "[[rule.override.escalate]]\n",
                "id = ",
                "kind = ",
                "when = ",
                "clear = ",
                "for = ",
                "clear_for = ",
                "severity = ",
                "priority = ",
                "action = ",
                "applies_to = ",
                "categories = ",
                "value = ",
                "below = ",
                "above = ",
                "clear_below = ",
                "clear_above = ",
                "members = ",
                "explains = ",
                "share = ",
                "clear_share = ",
                "min_affected = ",
                "min_devices = ",
                "within = ",
                "grace = ",
                "group = ",
                "townships = ",
                "villages = ",
                "vulnerable = ",
                "tags = ",
                "\"alert\"",
                "{ order = { category = \"repair\", priority = \"urgent\" } }",
                "fault",
                "threshold",
                "absence",
                "expr",
                "info",
                "minor",
                "major",
                "critical",
                "low",
                "normal",
                "high",
                "urgent",
                "village",
                "township",
                "heat_pump",
                "gas_boiler",
                " and ",
                " or ",
                "not ",
                " < ",
                " <= ",
                " > ",
                " >= ",
                " == ",
                " != ",
                " + ",
                " - ",
                " * ",
                " / ",
                "(",
                ")",
                ",",
                "min(",
                "max(",
                "avg(",
                "count(",
                "rate(",
                "slope_per_day(",
                "hours_to(",
                "starts(",
                "increase(",
                "share(",
                "trips(",
                "cop(",
                "cop_ratio(",
                "fault_in(",
                "present(",
                "abs(",
                "vulnerable",
                "true",
                "false",
                "0s",
                "1ms",
                "30m",
                "1h30m",
                "1h 30m",
                "31d",
                "32d",
                "999999999999d",
                "18446744073709551615s",
                "'''",
                "\"\"\"",
                "\\n",
                "\\u00e9",
                "#",
                "=",
                "[",
                "]",
                "{",
                "}",
                "\n",
            ],
            &[
                ("(", ")"),
                ("not ", ""),
                ("-", ""),
                ("abs(", ")"),
                ("[", "]"),
                ("{a=", "}"),
                ("a.", "=1"),
            ],
        );
        dictionary.extend(CANONICAL.iter().map(|c| c.name));
        dictionary.extend(FaultCategory::ALL.iter().map(|c| c.as_str()));
        // The rule ids of the seeds, for `members` and `explains`.
        for seed in seeds {
            for line in seed.text("rules").lines() {
                if let Some(id) = line.strip_prefix("id = ") {
                    dictionary.extend([id.trim().trim_matches('"')]);
                }
            }
        }
        dictionary
    }

    fn run(&self, input: &Input) -> String {
        let text = input.text("rules");
        match RuleSet::parse(&text, ORIGIN) {
            Ok(set) => {
                // What the file holds: kinds of condition, escalations, overrides, guards,
                // fleet rules; and whether the engine fired anything.
                let mut features: Vec<String> = set
                    .rules()
                    .iter()
                    .flat_map(|rule| {
                        let condition = format!("{:?}", rule.condition);
                        let variant: String = condition
                            .chars()
                            .take_while(|c| c.is_alphanumeric())
                            .collect();
                        [
                            Some(variant),
                            (!rule.escalations.is_empty()).then(|| "escalate".to_owned()),
                            (!rule.overrides.is_empty()).then(|| "override".to_owned()),
                            rule.guard.is_some().then(|| "guard".to_owned()),
                        ]
                    })
                    .flatten()
                    .collect();
                if !set.fleet().is_empty() {
                    features.push("fleet".to_owned());
                }
                features.sort();
                features.dedup();
                let fired = exercise(set, fnv1a(text.as_bytes()) % 16);
                format!("ok:{} fired={fired}", features.join(","))
            }
            Err(error) => {
                let message = error.to_string();
                let location = error.location();
                assert!(
                    message.starts_with(&format!("{ORIGIN}:{}:{}: ", location.line, location.column)),
                    "check failed: a rule error does not start with origin:line:column: {message:?}"
                );
                assert!(
                    location.line >= 1
                        && location.column >= 1
                        && location.line <= text.matches('\n').count() + 1,
                    "check failed: a rule error's location {location} is outside the text: {message:?}"
                );
                format!("err:{}", normalise(&message))
            }
        }
    }
}
