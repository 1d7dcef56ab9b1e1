//! Unit tests of rule-file parsing: the forms, their checks and the errors with positions.

use crate::rule::RuleSet;

/// Parses `text` and returns the error message, failing the test if it parses.
fn error_of(text: &str) -> String {
    match RuleSet::parse(text, "rules/test.toml") {
        Ok(set) => panic!("expected an error, parsed {set:?}"),
        Err(error) => error.to_string(),
    }
}

const COLD: &str = r#"[[rule]]
id = "indoor_cold"
kind = "threshold"
value = "indoor_temp_c"
below = 14.0
for = "30m"
severity = "major"
action = "alert"
"#;

#[test]
fn integers_are_accepted_as_thresholds() {
    let set = RuleSet::parse(&COLD.replace("14.0", "14"), "t").expect("parses");
    assert_eq!(set.len(), 1);
}

#[test]
fn unknown_value_name_points_at_the_value() {
    let text = COLD.replace("\"indoor_temp_c\"", "\"room_temp\"");
    assert_eq!(
        error_of(&text),
        "rules/test.toml:4:9: rule \"indoor_cold\" field `value`: \"room_temp\" is not a \
         canonical value name"
    );
}

#[test]
fn unknown_field_is_named_with_its_position() {
    let text = format!("{COLD}colour = \"red\"\n");
    let message = error_of(&text);
    assert!(
        message.starts_with(
            "rules/test.toml:9:1: rule \"indoor_cold\" field `colour`: unknown field `colour`"
        ),
        "{message}"
    );
}

#[test]
fn wrong_type_names_the_field() {
    let text = COLD.replace("below = 14.0", "below = \"cold\"");
    let message = error_of(&text);
    assert!(
        message.starts_with("rules/test.toml:5:9: rule \"indoor_cold\" field `below`: "),
        "{message}"
    );
    assert!(message.contains("invalid type"), "{message}");
}

#[test]
fn bad_duration_names_the_field() {
    let text = COLD.replace("\"30m\"", "\"half an hour\"");
    let message = error_of(&text);
    assert!(
        message.starts_with("rules/test.toml:6:7: rule \"indoor_cold\" field `for`: "),
        "{message}"
    );
}

#[test]
fn missing_field_points_at_the_rule_header() {
    let text = COLD.replace("severity = \"major\"\n", "");
    assert_eq!(
        error_of(&text),
        "rules/test.toml:1:1: rule \"indoor_cold\" field `severity`: missing field `severity`"
    );
}

#[test]
fn nested_action_errors_give_the_dotted_path() {
    let text = COLD.replace(
        "action = \"alert\"",
        "action = { order = { category = \"repair\", priority = \"asap\" } }",
    );
    let message = error_of(&text);
    assert!(
        message.starts_with(
            "rules/test.toml:8:54: rule \"indoor_cold\" field `action.order.priority`: "
        ),
        "{message}"
    );
    assert!(message.contains("unknown variant `asap`"), "{message}");
}

#[test]
fn unknown_fault_category_points_at_the_list_entry() {
    let text = r#"[[rule]]
id = "flow"
kind = "fault"
categories = ["water_flow", "leaky_roof"]
severity = "minor"
action = "alert"
"#;
    let message = error_of(text);
    assert!(
        message.starts_with(
            "rules/test.toml:4:29: rule \"flow\" field `categories`: \"leaky_roof\" is not a \
             fault category"
        ),
        "{message}"
    );
}

#[test]
fn duplicate_ids_are_refused_naming_the_first() {
    let text = format!("{COLD}\n{COLD}");
    assert_eq!(
        error_of(&text),
        "rules/test.toml:10:1: rule \"indoor_cold\" field `id`: rule id \"indoor_cold\" is \
         already used by the rule at line 1"
    );
}

#[test]
fn a_threshold_needs_exactly_one_side() {
    let none = COLD.replace("below = 14.0\n", "");
    assert_eq!(
        error_of(&none),
        "rules/test.toml:3:8: rule \"indoor_cold\" field `below`: a threshold rule needs \
         exactly one of `below` or `above`; it has neither"
    );
    let both = COLD.replace("below = 14.0\n", "below = 14.0\nabove = 30.0\n");
    assert_eq!(
        error_of(&both),
        "rules/test.toml:6:9: rule \"indoor_cold\" field `above`: a threshold rule needs \
         exactly one of `below` or `above`; it has both"
    );
}

#[test]
fn hysteresis_must_not_cross_the_trigger() {
    let text = COLD.replace("below = 14.0\n", "below = 14.0\nclear_above = 12.0\n");
    assert_eq!(
        error_of(&text),
        "rules/test.toml:6:15: rule \"indoor_cold\" field `clear_above`: 12 must be >= 14, \
         the trigger threshold (hysteresis)"
    );
    let text = COLD.replace("below = 14.0\n", "below = 14.0\nclear_below = 16.0\n");
    assert_eq!(
        error_of(&text),
        "rules/test.toml:6:15: rule \"indoor_cold\" field `clear_below`: this clear \
         threshold goes with `above`, not with `below`"
    );
    let above = COLD
        .replace("below = 14.0\n", "above = 30.0\nclear_below = 31.0\n")
        .replace("indoor_cold", "indoor_hot");
    assert_eq!(
        error_of(&above),
        "rules/test.toml:6:15: rule \"indoor_hot\" field `clear_below`: 31 must be <= 30, \
         the trigger threshold (hysteresis)"
    );
}

#[test]
fn non_finite_thresholds_are_refused() {
    let text = COLD.replace("14.0", "nan");
    assert_eq!(
        error_of(&text),
        "rules/test.toml:5:9: rule \"indoor_cold\" field `below`: NaN is not a finite number"
    );
}

#[test]
fn fields_of_other_kinds_are_refused() {
    let text = COLD.replace("kind = \"threshold\"", "kind = \"fault\"");
    assert_eq!(
        error_of(&text),
        "rules/test.toml:4:9: rule \"indoor_cold\" field `value`: fault rules do not use \
         this field"
    );
    let text = r#"[[rule]]
id = "offline"
kind = "absence"
for = "15m"
clear_for = "1m"
severity = "major"
action = "alert"
"#;
    assert_eq!(
        error_of(text),
        "rules/test.toml:5:13: rule \"offline\" field `clear_for`: absence rules do not \
         use this field"
    );
}

#[test]
fn absence_needs_a_positive_duration() {
    let text = r#"[[rule]]
id = "offline"
kind = "absence"
severity = "major"
action = "alert"
"#;
    assert_eq!(
        error_of(text),
        "rules/test.toml:3:8: rule \"offline\" field `for`: absence rules need this field"
    );
    let text = text.replace("kind = \"absence\"\n", "kind = \"absence\"\nfor = \"0s\"\n");
    assert_eq!(
        error_of(&text),
        "rules/test.toml:4:7: rule \"offline\" field `for`: needs a duration longer than 0s"
    );
}

#[test]
fn ids_and_order_categories_are_checked() {
    let text = COLD.replace("id = \"indoor_cold\"", "id = \"Indoor cold\"");
    assert_eq!(
        error_of(&text),
        "rules/test.toml:2:6: rule \"Indoor cold\" field `id`: \"Indoor cold\" is not a \
         valid rule id: use 1 to 64 of a-z, 0-9, '-' and '_'"
    );
    let text = COLD.replace(
        "action = \"alert\"",
        "action = { order = { category = \"\" } }",
    );
    let message = error_of(&text);
    assert!(
        message.starts_with(
            "rules/test.toml:8:10: rule \"indoor_cold\" field `action.order.category`: "
        ),
        "{message}"
    );
}

#[test]
fn empty_applies_to_is_refused_and_unknown_kinds_are_named() {
    let text = COLD.replace("for = \"30m\"", "applies_to = []");
    assert_eq!(
        error_of(&text),
        "rules/test.toml:6:14: rule \"indoor_cold\" field `applies_to`: an empty list \
         matches nothing; leave the field out to match everything"
    );
    let text = COLD.replace("for = \"30m\"", "applies_to = [\"stove\"]");
    let message = error_of(&text);
    assert!(
        message.starts_with("rules/test.toml:6:15: rule \"indoor_cold\" field `applies_to`: "),
        "{message}"
    );
    assert!(message.contains("unknown variant `stove`"), "{message}");
}

#[test]
fn syntax_errors_have_a_position_and_top_level_fields_are_checked() {
    let message = error_of("[[rule]]\nid = = 3\n");
    assert!(message.starts_with("rules/test.toml:2:6: "), "{message}");
    assert_eq!(
        error_of("rulez = 1\n"),
        "rules/test.toml:1:1: field `rulez`: unknown field `rulez`, expected `rule` or `fleet`"
    );
}

const EXPR: &str = r#"[[rule]]
id = "cold"
kind = "expr"
when = "indoor_temp_c < 14 and setpoint_c >= 16"
clear = "indoor_temp_c > 16"
for = "30m"
severity = "major"
action = "alert"
"#;

#[test]
fn expression_rules_parse_with_escalations_and_overrides() {
    let text = format!(
        "{EXPR}\n[[rule.escalate]]\nwhen = \"indoor_temp_c < 10\"\nfor = \"10m\"\nseverity = \"critical\"\n\n[[rule.override]]\nvulnerable = true\nfor = \"15m\"\n"
    );
    let set = RuleSet::parse(&text, "t").expect("parses");
    let rule = &set.rules()[0];
    assert_eq!(rule.escalations.len(), 1);
    assert_eq!(rule.overrides.len(), 1);
    assert_eq!(rule.overrides[0].selector.vulnerable, Some(true));
}

#[test]
fn a_vendor_value_is_refused_in_a_threshold_and_an_expression() {
    let text = COLD.replace("\"indoor_temp_c\"", "\"x_cop\"");
    assert_eq!(
        error_of(&text),
        "rules/test.toml:4:9: rule \"indoor_cold\" field `value`: \"x_cop\" is a vendor \
         value: rules read canonical values only (map the brand's register onto a canonical \
         value name in its profile to use it in a rule)"
    );
    let text = EXPR.replace("setpoint_c >= 16", "x_cop >= 2.5");
    assert_eq!(
        error_of(&text),
        "rules/test.toml:4:32: rule \"cold\" field `when`: \"x_cop\" is a vendor value: \
         rules read canonical values only (map the brand's register onto a canonical value \
         name in its profile to use it in a rule)"
    );
    // Wherever an expression takes a value: a function's argument too.
    for when in [
        "present(x_pump_on)",
        "avg(x_cop, 1h) < 2",
        "fleet_diff(x_cop, 1d) < 0",
    ] {
        let text = EXPR.replace("indoor_temp_c < 14 and setpoint_c >= 16", when);
        let message = error_of(&text);
        assert!(message.contains("is a vendor value"), "{when}: {message}");
    }
}

#[test]
fn expression_errors_point_into_the_expression() {
    let text = EXPR.replace("setpoint_c >= 16", "setpoint >= 16");
    assert_eq!(
        error_of(&text),
        "rules/test.toml:4:32: rule \"cold\" field `when`: \"setpoint\" is not a canonical \
         value name (did you mean setpoint_c?)"
    );
    let text = EXPR.replace("indoor_temp_c > 16\"", "indoor_temp_c > \"");
    let message = error_of(&text);
    assert!(
        message.starts_with("rules/test.toml:5:26: rule \"cold\" field `clear`: expected "),
        "{message}"
    );
    let text = EXPR.replace("indoor_temp_c < 14 and ", "indoor_temp_c + 14 and ");
    let message = error_of(&text);
    assert!(
        message
            .starts_with("rules/test.toml:4:9: rule \"cold\" field `when`: expected true or false"),
        "{message}"
    );
}

#[test]
fn expression_positions_survive_escapes_and_multi_line_strings() {
    let text = EXPR.replace(
        "when = \"indoor_temp_c < 14 and setpoint_c >= 16\"",
        "when = \"\"\"\nindoor_temp_c < 14\nand \\u0073etpoint >= 16\"\"\"",
    );
    let message = error_of(&text);
    // The escape \u0073 is 6 characters in the file for one in the expression.
    assert!(
        message.starts_with("rules/test.toml:6:5: rule \"cold\" field `when`: \"setpoint\""),
        "{message}"
    );
    let text = EXPR.replace(
        "when = \"indoor_temp_c < 14 and setpoint_c >= 16\"",
        "when = 'indoor_temp_c < 14 and avg(flow_temp_c, 1x) > 3'",
    );
    let message = error_of(&text);
    assert!(message.starts_with("rules/test.toml:4:50: "), "{message}");
}

#[test]
fn expr_rules_need_when_and_simple_rules_refuse_it() {
    let text = EXPR.replace("when = \"indoor_temp_c < 14 and setpoint_c >= 16\"\n", "");
    assert_eq!(
        error_of(&text),
        "rules/test.toml:3:8: rule \"cold\" field `when`: expr rules need this field"
    );
    let text = COLD.replace(
        "below = 14.0",
        "below = 14.0\nclear = \"indoor_temp_c > 3\"",
    );
    assert_eq!(
        error_of(&text),
        "rules/test.toml:6:9: rule \"indoor_cold\" field `clear`: threshold rules do not use \
         this field"
    );
}

#[test]
fn absence_guards_refuse_windowed_functions() {
    let text = r#"[[rule]]
id = "frost_silence"
kind = "absence"
when = "avg(outdoor_temp_c, 1h) < 0"
for = "30m"
severity = "critical"
action = "alert"
"#;
    let message = error_of(text);
    assert!(
        message.starts_with(
            "rules/test.toml:4:9: rule \"frost_silence\" field `when`: the `when` of an \
             absence rule"
        ),
        "{message}"
    );
}

#[test]
fn fleet_rules_are_checked() {
    let fleet = r#"
[[fleet]]
id = "outage"
group = "village"
members = "cold"
share = 0.3
min_devices = 5
within = "5m"
grace = "30m"
explains = ["cold"]
severity = "critical"
action = { order = { category = "power_supply", priority = "urgent" } }
"#;
    let set = RuleSet::parse(&format!("{EXPR}{fleet}"), "t").expect("parses");
    assert_eq!(set.fleet()[0].clear_share, 0.15);
    let text = format!(
        "{EXPR}{}",
        fleet.replace("members = \"cold\"", "members = \"offline\"")
    );
    assert_eq!(
        error_of(&text),
        "rules/test.toml:13:11: rule \"outage\" field `members`: no rule has the id \"offline\""
    );
    // A list of member rules; each must exist, and the list must hold rule ids.
    let text = format!(
        "{EXPR}{}",
        fleet.replace("members = \"cold\"", "members = [\"cold\"]")
    );
    let set = RuleSet::parse(&text, "t").expect("a list parses");
    assert_eq!(set.fleet()[0].members, vec!["cold".to_owned()]);
    let text = format!(
        "{EXPR}{}",
        fleet.replace("members = \"cold\"", "members = [\"cold\", \"gone\"]")
    );
    assert_eq!(
        error_of(&text),
        "rules/test.toml:13:11: rule \"outage\" field `members`: no rule has the id \"gone\""
    );
    let text = format!(
        "{EXPR}{}",
        fleet.replace("members = \"cold\"", "members = [\"cold\", 3]")
    );
    assert!(
        error_of(&text).starts_with(
            "rules/test.toml:13:11: rule \"outage\" field `members`: members must be a rule id \
             or a list of rule ids"
        ),
        "{}",
        error_of(&text)
    );
    let text = format!(
        "{EXPR}{}",
        fleet.replace("members = \"cold\"", "members = []")
    );
    assert!(error_of(&text).contains("field `members`: an empty list matches nothing"));
    let text = format!("{EXPR}{}", fleet.replace("share = 0.3", "share = 1.5"));
    assert!(error_of(&text).contains("field `share`: 1.5 is not a share"));
    let text = format!(
        "{EXPR}{}",
        fleet.replace("min_devices = 5", "min_devices = 1")
    );
    assert!(
        error_of(&text).contains("field `min_devices`: a fleet rule needs groups of at least 2")
    );
    let text = format!(
        "{EXPR}{}",
        fleet.replace("id = \"outage\"", "id = \"cold\"")
    );
    assert!(error_of(&text).contains("rule id \"cold\" is already used by the rule at line 1"));
}

#[test]
fn an_empty_file_is_an_empty_rule_set() {
    assert_eq!(RuleSet::parse("", "empty.toml"), Ok(RuleSet::default()));
}
