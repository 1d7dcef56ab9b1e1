//! The risk score of one heating unit before the cold: a pure, deterministic function of what
//! the gateway already knows of it ([`UnitFacts`]), returning the score together with its
//! reasons, each a machine code, a weight and a sentence ([`Reason`]).
//!
//! The score is not a probability. It adds points for evidence that the unit will fail on the
//! next cold night, or that a failure would leave a home cold and someone in danger, and caps
//! the sum at 100. The weights are judgement, written down here so that an operator can argue
//! with them; none is fitted to (or copied from) the simulator.
//!
//! | code | points | why |
//! | --- | --- | --- |
//! | `active_fault` | 30 | the unit reports a fault code now: it is failing already |
//! | `protection_trips` | 25 | repeated protection trips (flow, discharge) are the field's best predictor of a lockout, and a cold night adds load |
//! | `capacity_shortfall` | 25 | the room already loses ground at today's temperatures |
//! | `boiler_pressure_falling` | 25 | a falling system pressure reaches the lockout in days; a cold wave adds the demand that finds it |
//! | `offline` | 25 | the box is silent: nothing would tell us the heater stopped, and an unwatched unit in frost risks frozen pipes |
//! | `defrost_excessive` | 20 | an iced coil or dead fan loses capacity exactly on the cold humid nights |
//! | `capacity_limit` | 20 | running flat out now; a colder night needs more than it has |
//! | `discharge_hot_vs_fleet` | 20 | refrigerant short: less capacity on the coldest night |
//! | `vulnerable_occupant` | 20 | an elderly or sick resident: the consequence of a cold house is a safety issue |
//! | `cop_degraded` | 15 | refrigerant loss or fouling: a quarter less heat for the same power |
//! | `ignition_retries` | 15 | ignition failing more often; external gas regulators freeze in cold snaps |
//! | `repeat_repairs` | 10 per repair order this season, at most 30 | a unit that failed this season fails again more often than its peers (installation faults, a marginal part) |
//! | `short_cycling` | 10 | oversized for mild days, or a control fault; wear rises with starts |
//! | `cop_below_fleet` | 10 | its latest COP is under 80 % of same-profile units at the same outdoor temperature (a snapshot, so a weak signal) |
//! | `aged` | 5 from 5 years, 10 from 8 | out of warranty and ageing: parts wear |
//! | `long_runtime` | 5 from 20,000 h, 10 from 30,000 h | compressor hours |
//! | `sensor_fault` | 5 | a sensor the rules cannot trust hides the next fault |
//!
//! A soft-fault signal counts in full while its alert is active and at half weight (rounded
//! down) when it fired within the look-back window but has cleared: soft faults come back
//! under harder conditions. Each rule counts once. The reasons are sorted by weight, then
//! code, so equal facts always give the same answer.

use serde::Serialize;
use utoipa::ToSchema;

/// The most a score can be.
pub const MAX_SCORE: u32 = 100;

/// Points per repair order this season, and their cap.
const REPAIR_POINTS: u32 = 10;
const REPAIR_POINTS_MAX: u32 = 30;

/// The soft-fault rules of the default pack that raise the risk, their points and a sentence.
/// A rule not in this table (a hard fault opens an order of its own) adds nothing.
pub const SIGNAL_WEIGHTS: &[(&str, &str, u32, &str)] = &[
    (
        "protection_trips",
        "protection_trips",
        25,
        "repeated protection trips: a lockout is likely under the load of a cold night",
    ),
    (
        "capacity_shortfall",
        "capacity_shortfall",
        25,
        "the room already loses ground at today's temperatures",
    ),
    (
        "boiler_pressure_falling",
        "boiler_pressure_falling",
        25,
        "system water pressure falling: a low-pressure lockout is days away",
    ),
    (
        "defrost_excessive",
        "defrost_excessive",
        20,
        "defrost takes over a third of the run time (iced coil, fan or sensor)",
    ),
    (
        "capacity_limit",
        "capacity_limit",
        20,
        "running at its capacity limit: a colder night needs more heat than it has",
    ),
    (
        "discharge_hot_vs_fleet",
        "discharge_hot_vs_fleet",
        20,
        "discharge hotter than its peers: refrigerant short, less capacity in the cold",
    ),
    (
        "cop_degraded",
        "cop_degraded",
        15,
        "COP a quarter below its own baseline (refrigerant loss or fouling)",
    ),
    (
        "ignition_retries",
        "ignition_retries",
        15,
        "ignition retries rising (gas supply, electrode; regulators freeze in cold snaps)",
    ),
    (
        "short_cycling",
        "short_cycling",
        10,
        "short-cycling: six or more starts an hour",
    ),
    (
        "sensor_implausible",
        "sensor_fault",
        5,
        "a sensor reads implausibly: the next fault may go unseen",
    ),
    (
        "sensor_stuck",
        "sensor_fault",
        5,
        "a sensor is stuck: the next fault may go unseen",
    ),
];

/// One soft-fault alert of the unit within the look-back window.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// The rule that fired, e.g. `defrost_excessive`.
    pub rule_id: String,
    /// Still firing (not resolved).
    pub active: bool,
}

/// What the gateway knows of one unit, gathered from the store, the registry and the fleet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UnitFacts {
    /// An elderly person living alone, or another reason to come first (the household's flag).
    pub vulnerable: bool,
    /// The edge box is offline, or the unit has been silent too long.
    pub offline: bool,
    /// The latest reading carries a fault code.
    pub active_fault: bool,
    /// Soft-fault alerts within the look-back window.
    pub signals: Vec<Signal>,
    /// Repair orders opened for the unit since the season began.
    pub repairs_this_season: u32,
    /// Years since installation, when the registry has the date.
    pub age_years: Option<f64>,
    /// Compressor or burner hours from telemetry (`runtime_h`), when reported.
    pub runtime_h: Option<f64>,
    /// The unit's latest COP over the median of same-profile units at the same outdoor
    /// temperature ([`fleet_cop_ratios`]), when it can be judged.
    pub cop_vs_fleet: Option<f64>,
}

/// One reason for a score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct Reason {
    /// Machine code, e.g. `protection_trips`, `vulnerable_occupant`.
    pub code: String,
    /// Points it adds to the score.
    pub weight: u32,
    /// A sentence for people.
    pub text: String,
}

/// A unit's score and its reasons, largest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Risk {
    /// 0 to [`MAX_SCORE`]: the sum of the reasons' weights, capped.
    pub score: u32,
    pub reasons: Vec<Reason>,
}

fn reason(code: &str, weight: u32, text: String) -> Reason {
    Reason {
        code: code.to_owned(),
        weight,
        text,
    }
}

/// The score of a unit and why. Pure: the same facts always give the same answer.
pub fn score(facts: &UnitFacts) -> Risk {
    let mut reasons = Vec::new();
    if facts.active_fault {
        reasons.push(reason(
            "active_fault",
            30,
            "reports a fault code now".to_owned(),
        ));
    }
    reasons.extend(signal_reasons(&facts.signals));
    if facts.offline {
        reasons.push(reason(
            "offline",
            25,
            "the box is offline: a stopped heater would go unseen".to_owned(),
        ));
    }
    if facts.vulnerable {
        reasons.push(reason(
            "vulnerable_occupant",
            20,
            "vulnerable resident: a cold house is a safety issue".to_owned(),
        ));
    }
    if facts.repairs_this_season > 0 {
        let weight = REPAIR_POINTS
            .saturating_mul(facts.repairs_this_season)
            .min(REPAIR_POINTS_MAX);
        reasons.push(reason(
            "repeat_repairs",
            weight,
            format!("{} repair order(s) this season", facts.repairs_this_season),
        ));
    }
    if let Some(ratio) = facts.cop_vs_fleet.filter(|r| r.is_finite() && *r < 0.8) {
        reasons.push(reason(
            "cop_below_fleet",
            10,
            format!(
                "COP {:.0} % of same-profile units at the same outdoor temperature",
                ratio * 100.0
            ),
        ));
    }
    reasons.extend(wear_reasons(facts));
    reasons.sort_by(|a, b| b.weight.cmp(&a.weight).then_with(|| a.code.cmp(&b.code)));
    let total: u32 = reasons.iter().map(|r| r.weight).sum();
    Risk {
        score: total.min(MAX_SCORE),
        reasons,
    }
}

/// The reasons of the soft-fault signals in [`SIGNAL_WEIGHTS`]: each code once, with the
/// strongest evidence of it (active beats cleared, which counts at half weight).
fn signal_reasons(signals: &[Signal]) -> Vec<Reason> {
    let mut strongest: Vec<(&str, u32, String)> = Vec::new();
    for signal in signals {
        let Some((_, code, weight, text)) = SIGNAL_WEIGHTS
            .iter()
            .find(|(rule, ..)| *rule == signal.rule_id)
        else {
            continue;
        };
        let (weight, text) = if signal.active {
            (*weight, (*text).to_owned())
        } else {
            (*weight / 2, format!("{text} (cleared, recent)"))
        };
        match strongest.iter_mut().find(|(c, ..)| c == code) {
            Some(existing) if existing.1 >= weight => {}
            Some(existing) => *existing = (code, weight, text),
            None => strongest.push((code, weight, text)),
        }
    }
    strongest
        .into_iter()
        .filter(|(_, weight, _)| *weight > 0)
        .map(|(code, weight, text)| reason(code, weight, text))
        .collect()
}

/// The reasons of wear: the unit's age and its running hours.
fn wear_reasons(facts: &UnitFacts) -> Vec<Reason> {
    let mut reasons = Vec::new();
    if let Some(age) = facts.age_years.filter(|a| a.is_finite()) {
        let weight = if age >= 8.0 {
            10
        } else if age >= 5.0 {
            5
        } else {
            0
        };
        if weight > 0 {
            reasons.push(reason(
                "aged",
                weight,
                format!("installed {age:.0} years ago"),
            ));
        }
    }
    if let Some(hours) = facts.runtime_h.filter(|h| h.is_finite()) {
        let weight = if hours >= 30_000.0 {
            10
        } else if hours >= 20_000.0 {
            5
        } else {
            0
        };
        if weight > 0 {
            reasons.push(reason(
                "long_runtime",
                weight,
                format!("{hours:.0} h of running"),
            ));
        }
    }
    reasons
}

/// One unit's latest efficiency, for [`fleet_cop_ratios`].
#[derive(Debug, Clone, PartialEq)]
pub struct CopSample {
    pub device_id: String,
    /// The register profile: units of one profile are one model.
    pub profile: String,
    pub outdoor_c: f64,
    pub cop: f64,
}

/// Fewest peers (the unit included) in a profile and outdoor band to judge a unit against.
pub const MIN_COP_PEERS: usize = 5;
/// Width of an outdoor band, K: COP falls by roughly 3 % a kelvin, so a 4 K band keeps the
/// spread from the weather under the 20 % the reason needs.
pub const COP_BAND_K: f64 = 4.0;

/// Each unit's COP over the median of the units of its profile in the same outdoor band, for
/// bands of at least [`MIN_COP_PEERS`]. Samples with a COP outside 0.5 to 8 or a non-finite
/// temperature are left out. Deterministic: the result does not depend on the samples' order.
pub fn fleet_cop_ratios(samples: &[CopSample]) -> std::collections::BTreeMap<String, f64> {
    use std::collections::BTreeMap;
    let mut bands: BTreeMap<(&str, i64), Vec<&CopSample>> = BTreeMap::new();
    for sample in samples {
        if !(sample.cop.is_finite()
            && (0.5..=8.0).contains(&sample.cop)
            && sample.outdoor_c.is_finite())
        {
            continue;
        }
        let band = (sample.outdoor_c / COP_BAND_K).floor() as i64;
        bands
            .entry((sample.profile.as_str(), band))
            .or_default()
            .push(sample);
    }
    let mut ratios = BTreeMap::new();
    for members in bands.values() {
        if members.len() < MIN_COP_PEERS {
            continue;
        }
        let mut cops: Vec<f64> = members.iter().map(|s| s.cop).collect();
        cops.sort_by(f64::total_cmp);
        let middle = cops.len() / 2;
        let median = if cops.len() % 2 == 0 {
            (cops[middle - 1] + cops[middle]) / 2.0
        } else {
            cops[middle]
        };
        if median <= 0.0 {
            continue;
        }
        for sample in members {
            ratios.insert(sample.device_id.clone(), sample.cop / median);
        }
    }
    ratios
}

/// How a house cools once its heat stops, for [`hours_to_cold`]: Newton's law of cooling with
/// one time constant for the whole house.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeatLoss {
    /// The house's time constant in hours (thermal mass over heat-loss coefficient). Yanqing's
    /// brick houses cool by roughly 0.5-1.5 K an hour once heat stops at 30-35 K below the
    /// room; 30 h gives about 1.1 K an hour at 33 K, the middle of that range.
    pub time_constant_h: f64,
    /// The room temperature at which a home counts as cold.
    pub cold_room_c: f64,
    /// The room temperature assumed when the unit reports none.
    pub indoor_default_c: f64,
}

/// Hours until a room at `indoor_c` (or the default) falls to the cold-room temperature with
/// `outdoor_c` outside, once the heat stops: `τ · ln((T_in − T_out) / (T_cold − T_out))`.
/// `None` when the outdoor temperature is not below the cold-room temperature (the room never
/// gets that cold) or an input is not finite; 0 when the room is cold already.
pub fn hours_to_cold(model: &HeatLoss, indoor_c: Option<f64>, outdoor_c: f64) -> Option<f64> {
    let indoor = indoor_c
        .filter(|t| t.is_finite() && (0.0..=35.0).contains(t))
        .unwrap_or(model.indoor_default_c);
    if !outdoor_c.is_finite()
        || !model.time_constant_h.is_finite()
        || outdoor_c >= model.cold_room_c
    {
        return None;
    }
    if indoor <= model.cold_room_c {
        return Some(0.0);
    }
    let hours =
        model.time_constant_h * ((indoor - outdoor_c) / (model.cold_room_c - outdoor_c)).ln();
    hours.is_finite().then_some(hours)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(rule: &str, active: bool) -> Signal {
        Signal {
            rule_id: rule.into(),
            active,
        }
    }

    #[test]
    fn a_unit_without_evidence_scores_nothing() {
        let risk = score(&UnitFacts::default());
        assert_eq!(risk.score, 0);
        assert!(risk.reasons.is_empty());
    }

    #[test]
    fn soft_faults_add_their_weight_active_in_full_and_cleared_at_half() {
        let facts = UnitFacts {
            signals: vec![
                signal("protection_trips", true),
                signal("defrost_excessive", false),
                signal("device_fault", true),
            ],
            ..UnitFacts::default()
        };
        let risk = score(&facts);
        let codes: Vec<(&str, u32)> = risk
            .reasons
            .iter()
            .map(|r| (r.code.as_str(), r.weight))
            .collect();
        assert_eq!(
            codes,
            vec![("protection_trips", 25), ("defrost_excessive", 10)]
        );
        assert_eq!(risk.score, 35);
        assert!(risk.reasons[1].text.contains("cleared"));
    }

    #[test]
    fn a_rule_counts_once_with_its_strongest_evidence() {
        let facts = UnitFacts {
            signals: vec![
                signal("cop_degraded", false),
                signal("cop_degraded", true),
                signal("cop_degraded", false),
                signal("sensor_stuck", true),
                signal("sensor_implausible", true),
            ],
            ..UnitFacts::default()
        };
        let risk = score(&facts);
        assert_eq!(risk.score, 15 + 5);
        assert_eq!(risk.reasons.len(), 2);
    }

    #[test]
    fn occupant_history_age_runtime_and_fleet_add_up_and_cap_at_100() {
        let facts = UnitFacts {
            vulnerable: true,
            offline: true,
            active_fault: true,
            signals: vec![signal("capacity_limit", true)],
            repairs_this_season: 7,
            age_years: Some(9.0),
            runtime_h: Some(31_000.0),
            cop_vs_fleet: Some(0.6),
        };
        let risk = score(&facts);
        assert_eq!(risk.score, MAX_SCORE);
        let weight = |code: &str| {
            risk.reasons
                .iter()
                .find(|r| r.code == code)
                .map(|r| r.weight)
        };
        assert_eq!(weight("repeat_repairs"), Some(30));
        assert_eq!(weight("aged"), Some(10));
        assert_eq!(weight("long_runtime"), Some(10));
        assert_eq!(weight("cop_below_fleet"), Some(10));
        assert_eq!(weight("vulnerable_occupant"), Some(20));
        assert_eq!(weight("offline"), Some(25));
        assert_eq!(weight("active_fault"), Some(30));
        // Largest first, ties by code.
        let weights: Vec<u32> = risk.reasons.iter().map(|r| r.weight).collect();
        let mut sorted = weights.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(weights, sorted);
        assert_eq!(risk.reasons[0].code, "active_fault");
    }

    #[test]
    fn young_units_and_fleet_average_cop_add_nothing() {
        let facts = UnitFacts {
            repairs_this_season: 1,
            age_years: Some(3.0),
            runtime_h: Some(5_000.0),
            cop_vs_fleet: Some(0.95),
            ..UnitFacts::default()
        };
        let risk = score(&facts);
        assert_eq!(risk.score, 10);
        assert_eq!(risk.reasons[0].code, "repeat_repairs");
        let mid = score(&UnitFacts {
            age_years: Some(6.0),
            runtime_h: Some(f64::NAN),
            cop_vs_fleet: Some(f64::NAN),
            ..UnitFacts::default()
        });
        assert_eq!(mid.score, 5);
    }

    #[test]
    fn scoring_is_deterministic_whatever_the_order_of_signals() {
        let a = UnitFacts {
            signals: vec![
                signal("short_cycling", true),
                signal("cop_degraded", true),
                signal("ignition_retries", false),
            ],
            ..UnitFacts::default()
        };
        let mut b = a.clone();
        b.signals.reverse();
        assert_eq!(score(&a), score(&b));
    }

    fn sample(id: &str, profile: &str, outdoor: f64, cop: f64) -> CopSample {
        CopSample {
            device_id: id.into(),
            profile: profile.into(),
            outdoor_c: outdoor,
            cop,
        }
    }

    #[test]
    fn cop_is_judged_against_the_median_of_same_profile_units_in_the_same_band() {
        let mut samples: Vec<CopSample> = (0..5)
            .map(|n| sample(&format!("a{n}"), "aurora", -6.0 + n as f64 * 0.2, 2.5))
            .collect();
        samples.push(sample("weak", "aurora", -5.5, 1.5));
        samples.push(sample("lonely", "beifeng", -5.5, 1.0));
        samples.push(sample("cold-band", "aurora", -15.0, 1.0));
        samples.push(sample("broken-meter", "aurora", -5.0, 40.0));
        let ratios = fleet_cop_ratios(&samples);
        assert!((ratios["weak"] - 0.6).abs() < 1e-9, "{ratios:?}");
        assert!((ratios["a0"] - 1.0).abs() < 1e-9);
        assert!(!ratios.contains_key("lonely"));
        assert!(!ratios.contains_key("cold-band"));
        assert!(!ratios.contains_key("broken-meter"));
        let mut reversed = samples.clone();
        reversed.reverse();
        assert_eq!(fleet_cop_ratios(&reversed), ratios);
    }

    #[test]
    fn a_house_cools_to_the_cold_room_temperature_by_newtons_law() {
        let model = HeatLoss {
            time_constant_h: 30.0,
            cold_room_c: 12.0,
            indoor_default_c: 18.0,
        };
        // (18 + 18) / (12 + 18) = 1.2; 30 h · ln 1.2 = 5.47 h.
        let hours = hours_to_cold(&model, None, -18.0).expect("cools");
        assert!((hours - 5.4696).abs() < 1e-3, "{hours}");
        // A warmer room lasts longer; a colder night shorter.
        assert!(hours_to_cold(&model, Some(21.0), -18.0).expect("cools") > hours);
        assert!(hours_to_cold(&model, None, -25.0).expect("cools") < hours);
        assert_eq!(hours_to_cold(&model, Some(10.0), -18.0), Some(0.0));
        assert_eq!(hours_to_cold(&model, None, 12.0), None);
        assert_eq!(hours_to_cold(&model, None, f64::NAN), None);
        // An implausible indoor reading (sensor open) falls back to the default.
        assert_eq!(
            hours_to_cold(&model, Some(-50.0), -18.0),
            hours_to_cold(&model, None, -18.0)
        );
    }
}
