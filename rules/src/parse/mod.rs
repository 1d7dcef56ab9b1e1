//! Reading rule files: TOML into raw, position-carrying structs, then validation into
//! [`Rule`]s with errors that point at the line, column, rule and field.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;
use wire::{DeviceKind, FaultCategory};

use crate::condition::{Condition, Direction, Threshold};
use crate::error::{Location, Problem, RuleError};
use crate::expr::Expr;
use crate::fleet::{FleetRule, GroupLevel};
use crate::rule::{Action, EscalationLevel, Override, Priority, Rule, Selector, Severity};
use crate::window::Derived;
use crate::window::SeriesTable;

/// Escalation levels a rule may have above its own severity.
pub const MAX_ESCALATIONS: usize = 3;

/// A rule file: a list of `[[rule]]` tables and a list of `[[fleet]]` tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
    #[serde(default)]
    fleet: Vec<Spanned<RawFleet>>,
}

/// One `[[fleet]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    id: Spanned<String>,
    #[serde(default)]
    description: String,
    group: GroupLevel,
    /// A rule id or a list of rule ids.
    members: Spanned<toml::Value>,
    applies_to: Option<Spanned<Vec<DeviceKind>>>,
    share: Spanned<f64>,
    clear_share: Option<Spanned<f64>>,
    #[serde(default)]
    clear_members: Vec<Spanned<String>>,
    #[serde(default)]
    min_affected: usize,
    min_devices: Spanned<usize>,
    within: Spanned<HumanDuration>,
    hold: Option<Spanned<HumanDuration>>,
    grace: HumanDuration,
    #[serde(default)]
    explains: Vec<Spanned<String>>,
    severity: Severity,
    action: Spanned<Action>,
}

/// One `[[rule.escalate]]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEscalate {
    when: Spanned<String>,
    #[serde(rename = "for")]
    hold_for: Option<HumanDuration>,
    severity: Severity,
    priority: Option<Priority>,
}

/// One `[[rule.override]]` table: a selector and the fields it replaces.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    #[serde(default)]
    townships: Vec<String>,
    #[serde(default)]
    villages: Vec<String>,
    vulnerable: Option<bool>,
    #[serde(default)]
    tags: Vec<String>,
    when: Option<Spanned<String>>,
    clear: Option<Spanned<String>>,
    #[serde(rename = "for")]
    hold_for: Option<HumanDuration>,
    clear_for: Option<HumanDuration>,
    severity: Option<Severity>,
    action: Option<Spanned<Action>>,
    escalate: Option<Vec<Spanned<RawEscalate>>>,
}

/// The kinds of rule a file may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawKind {
    Fault,
    Threshold,
    Absence,
    Expr,
}

impl RawKind {
    fn name(self) -> &'static str {
        match self {
            RawKind::Fault => "fault",
            RawKind::Threshold => "threshold",
            RawKind::Absence => "absence",
            RawKind::Expr => "expr",
        }
    }
}

/// A humantime duration (`"30m"`, `"1h 30m"`, `"0s"`).
#[derive(Deserialize)]
struct HumanDuration(#[serde(with = "humantime_serde")] Duration);

/// One `[[rule]]` table as written, every field with its position.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    #[serde(default)]
    description: String,
    kind: Spanned<RawKind>,
    categories: Option<Spanned<Vec<Spanned<String>>>>,
    applies_to: Option<Spanned<Vec<DeviceKind>>>,
    #[serde(rename = "for")]
    hold_for: Option<Spanned<HumanDuration>>,
    value: Option<Spanned<String>>,
    below: Option<Spanned<f64>>,
    above: Option<Spanned<f64>>,
    clear_above: Option<Spanned<f64>>,
    clear_below: Option<Spanned<f64>>,
    clear_for: Option<Spanned<HumanDuration>>,
    when: Option<Spanned<String>>,
    clear: Option<Spanned<String>>,
    severity: Spanned<Severity>,
    action: Spanned<Action>,
    escalate: Option<Vec<Spanned<RawEscalate>>>,
    #[serde(rename = "override")]
    overrides: Option<Vec<Spanned<RawOverride>>>,
}

/// A threshold's direction with its trigger and clear values as written (the clear optional).
type Bounds<'r> = (Direction, &'r Spanned<f64>, Option<&'r Spanned<f64>>);

/// What a parsed rule file holds.
pub(crate) type Parsed = (Vec<Rule>, Vec<FleetRule>, SeriesTable);

/// Parses and validates a whole rule file.
pub(crate) fn parse_rules(text: &str, origin: &str) -> Result<Parsed, RuleError> {
    let file: RawFile = toml::from_str(text).map_err(|error| toml_error(text, origin, &error))?;
    let mut first_line_of: BTreeMap<String, usize> = BTreeMap::new();
    let mut rules = Vec::with_capacity(file.rule.len());
    let mut series = SeriesTable::default();
    for raw in file.rule {
        let raw_span = raw.span();
        let raw = raw.into_inner();
        let mut checker = Checker {
            text,
            origin,
            rule: raw.id.get_ref().clone(),
            series: &mut series,
        };
        let rule = checker.rule(raw, raw_span.clone())?;
        let line = Location::at(text, origin, raw_span.start).line;
        if let Some(first_line) = first_line_of.get(&rule.id) {
            // The id's own position is not kept in `Rule`; point at the rule's header.
            return Err(checker.invalid(
                raw_span,
                "id",
                Problem::DuplicateId {
                    id: rule.id,
                    first_line: *first_line,
                },
            ));
        }
        first_line_of.insert(rule.id.clone(), line);
        rules.push(rule);
    }
    series.share_windows(&aggregates_only(&rules, series.len()));
    series.set_needed(needed_series(&rules, series.len()));
    let mut fleet: Vec<FleetRule> = Vec::with_capacity(file.fleet.len());
    for raw in file.fleet {
        let span = raw.span();
        let raw = raw.into_inner();
        let mut checker = Checker {
            text,
            origin,
            rule: raw.id.get_ref().clone(),
            series: &mut series,
        };
        let rule = checker.fleet(raw, &rules)?;
        if let Some(first_line) = first_line_of.get(&rule.id) {
            return Err(checker.invalid(
                span,
                "id",
                Problem::DuplicateId {
                    id: rule.id.clone(),
                    first_line: *first_line,
                },
            ));
        }
        first_line_of.insert(rule.id.clone(), Location::at(text, origin, span.start).line);
        fleet.push(rule);
    }
    Ok((rules, fleet, series))
}

/// Every expression of a rule: its condition, guard and escalations, in every variant.
fn expressions(rule: &Rule) -> Vec<&Expr> {
    fn add_condition<'a>(condition: &'a Condition, exprs: &mut Vec<&'a Expr>) {
        if let Condition::Expr { when, clear } = condition {
            exprs.push(when);
            exprs.extend(clear.iter());
        }
    }
    let mut exprs: Vec<&Expr> = Vec::new();
    add_condition(&rule.condition, &mut exprs);
    exprs.extend(rule.guard.iter());
    exprs.extend(rule.escalations.iter().map(|e| &e.when));
    for o in &rule.overrides {
        if let Some(condition) = &o.condition {
            add_condition(condition, &mut exprs);
        }
        exprs.extend(o.guard.iter());
        for levels in o.escalations.iter() {
            exprs.extend(levels.iter().map(|e| &e.when));
        }
    }
    exprs
}

/// For each series, whether every rule reads it only through `min`, `max`, `avg` or `count`
/// (so its window can be read from a longer series of the same value).
fn aggregates_only(rules: &[Rule], count: usize) -> Vec<bool> {
    let mut only = vec![true; count];
    for rule in rules {
        for expr in expressions(rule) {
            for (series, function) in expr.derived_used() {
                if !matches!(
                    function,
                    Derived::Min | Derived::Max | Derived::Avg | Derived::Count
                ) {
                    if let Some(flag) = only.get_mut(usize::from(series)) {
                        *flag = false;
                    }
                }
            }
        }
    }
    only
}

/// For each series, whether heat pumps and gas boilers need it: a rule applying to the kind
/// reads it in one of its expressions (any variant or level).
fn needed_series(rules: &[Rule], count: usize) -> Vec<[bool; 2]> {
    let mut needed = vec![[false; 2]; count];
    for rule in rules {
        for expr in expressions(rule) {
            for series in expr.series_used() {
                if let Some(slot) = needed.get_mut(usize::from(series)) {
                    for kind in &rule.applies_to {
                        slot[kind_slot(*kind)] = true;
                    }
                }
            }
        }
    }
    needed
}

/// The position of a device kind in per-kind tables: heat pump 0, gas boiler 1.
pub(crate) fn kind_slot(kind: DeviceKind) -> usize {
    match kind {
        DeviceKind::HeatPump => 0,
        DeviceKind::GasBoiler => 1,
    }
}

/// Validates one rule, knowing where it is.
struct Checker<'a> {
    text: &'a str,
    origin: &'a str,
    rule: String,
    series: &'a mut SeriesTable,
}

impl Checker<'_> {
    /// A rule's `applies_to`: both kinds when absent, sorted and without repeats; an empty
    /// list is an error (it would match nothing).
    fn applies_to(
        &self,
        raw: Option<&Spanned<Vec<DeviceKind>>>,
    ) -> Result<Vec<DeviceKind>, RuleError> {
        match raw {
            None => Ok(vec![DeviceKind::HeatPump, DeviceKind::GasBoiler]),
            Some(list) if list.get_ref().is_empty() => {
                Err(self.invalid(list.span(), "applies_to", Problem::EmptyList))
            }
            Some(list) => {
                let mut kinds = list.get_ref().clone();
                kinds.sort();
                kinds.dedup();
                Ok(kinds)
            }
        }
    }

    fn invalid(&self, span: Range<usize>, field: &'static str, problem: Problem) -> RuleError {
        RuleError::Invalid {
            location: Location::at(self.text, self.origin, span.start),
            rule: Some(self.rule.clone()),
            field,
            problem,
        }
    }

    /// Compiles the expression in a TOML string; errors point into the file.
    fn expr(&mut self, raw: &Spanned<String>, field: &'static str) -> Result<Expr, RuleError> {
        Expr::compile(raw.get_ref(), self.series).map_err(|error| RuleError::Invalid {
            location: Location::at(
                self.text,
                self.origin,
                expression_offset(self.text, raw.span(), error.span.start),
            ),
            rule: Some(self.rule.clone()),
            field,
            problem: Problem::Expression {
                message: error.message,
            },
        })
    }

    /// An absence rule's `when`: judged on each reading as it arrives, so it may read only the
    /// reading's own values, not windowed functions.
    fn guard(&mut self, raw: &Spanned<String>, field: &'static str) -> Result<Expr, RuleError> {
        let expr = self.expr(raw, field)?;
        if expr.is_windowed() {
            return Err(RuleError::Invalid {
                location: Location::at(
                    self.text,
                    self.origin,
                    expression_offset(self.text, raw.span(), 0),
                ),
                rule: Some(self.rule.clone()),
                field,
                problem: Problem::Expression {
                    message: "the `when` of an absence rule may use the reading's own values \
                              only, not windowed functions"
                        .to_owned(),
                },
            });
        }
        Ok(expr)
    }

    fn escalations(
        &mut self,
        raw: Option<&Vec<Spanned<RawEscalate>>>,
        field: &'static str,
    ) -> Result<Vec<EscalationLevel>, RuleError> {
        let mut levels = Vec::new();
        for level in raw.map(Vec::as_slice).unwrap_or_default() {
            if levels.len() >= MAX_ESCALATIONS {
                return Err(self.invalid(
                    level.span(),
                    field,
                    Problem::TooManyEscalations {
                        max: MAX_ESCALATIONS,
                    },
                ));
            }
            let inner = level.get_ref();
            levels.push(EscalationLevel {
                when: self.expr(&inner.when, field)?,
                hold_for: inner.hold_for.as_ref().map_or(Duration::ZERO, |d| d.0),
                severity: inner.severity,
                priority: inner.priority,
            });
        }
        Ok(levels)
    }

    /// A rule's or fleet rule's `id`: an identifier (dashes allowed).
    fn check_id(&self, id: &Spanned<String>) -> Result<(), RuleError> {
        if is_identifier(id.get_ref(), true) {
            return Ok(());
        }
        Err(self.invalid(
            id.span(),
            "id",
            Problem::BadId {
                id: id.get_ref().clone(),
            },
        ))
    }

    /// An order's category (in `action` at `field`) is an identifier.
    fn check_order_category(
        &self,
        action: &Spanned<Action>,
        field: &'static str,
    ) -> Result<(), RuleError> {
        match action.get_ref() {
            Action::Order { category, .. } if !is_identifier(category, false) => Err(self.invalid(
                action.span(),
                field,
                Problem::BadOrderCategory {
                    category: category.clone(),
                },
            )),
            _ => Ok(()),
        }
    }

    fn fleet(&mut self, raw: RawFleet, rules: &[Rule]) -> Result<FleetRule, RuleError> {
        self.check_id(&raw.id)?;
        let members = self.fleet_members(&raw, rules)?;
        let (share, clear_share) = self.fleet_shares(&raw)?;
        self.fleet_window(&raw)?;
        self.check_order_category(&raw.action, "action.order.category")?;
        let applies_to = self.applies_to(raw.applies_to.as_ref())?;
        Ok(FleetRule {
            id: raw.id.into_inner(),
            description: raw.description,
            group: raw.group,
            members,
            applies_to,
            share,
            clear_share,
            clear_members: raw
                .clear_members
                .into_iter()
                .map(Spanned::into_inner)
                .collect(),
            min_affected: raw.min_affected,
            min_devices: raw.min_devices.into_inner(),
            within: raw.within.into_inner().0,
            hold: raw.hold.map(|h| h.into_inner().0),
            grace: raw.grace.0,
            explains: raw.explains.into_iter().map(Spanned::into_inner).collect(),
            severity: raw.severity,
            action: raw.action.into_inner(),
        })
    }

    /// A fleet rule's `members` (a rule id or a non-empty list of them), each a rule of the
    /// file; its `clear_members` are among them and its `explains` are rules of the file.
    fn fleet_members(&self, raw: &RawFleet, rules: &[Rule]) -> Result<Vec<String>, RuleError> {
        let known = |id: &str| rules.iter().any(|r| r.id == id);
        let members_span = raw.members.span();
        let members: Vec<String> = match raw.members.get_ref() {
            toml::Value::String(id) => vec![id.clone()],
            toml::Value::Array(items) => {
                let ids: Option<Vec<String>> = items
                    .iter()
                    .map(|item| item.as_str().map(str::to_owned))
                    .collect();
                match ids {
                    Some(ids) if ids.is_empty() => {
                        return Err(self.invalid(members_span, "members", Problem::EmptyList));
                    }
                    Some(ids) => ids,
                    None => {
                        return Err(self.invalid(members_span, "members", Problem::MembersType));
                    }
                }
            }
            _ => {
                return Err(self.invalid(members_span, "members", Problem::MembersType));
            }
        };
        if let Some(unknown) = members.iter().find(|id| !known(id)) {
            return Err(self.invalid(
                members_span,
                "members",
                Problem::UnknownRule {
                    id: unknown.clone(),
                },
            ));
        }
        for measuring in &raw.clear_members {
            if !members.iter().any(|m| m == measuring.get_ref()) {
                return Err(self.invalid(
                    measuring.span(),
                    "clear_members",
                    Problem::NotAMember {
                        id: measuring.get_ref().clone(),
                    },
                ));
            }
        }
        for explained in &raw.explains {
            if !known(explained.get_ref()) {
                return Err(self.invalid(
                    explained.span(),
                    "explains",
                    Problem::UnknownRule {
                        id: explained.get_ref().clone(),
                    },
                ));
            }
        }
        Ok(members)
    }

    /// A fleet rule's `share` (above 0, at most 1) and `clear_share` (above 0, at most
    /// `share`; half of it when absent).
    fn fleet_shares(&self, raw: &RawFleet) -> Result<(f64, f64), RuleError> {
        let share = *raw.share.get_ref();
        if !(share > 0.0 && share <= 1.0) {
            return Err(self.invalid(raw.share.span(), "share", Problem::Share { value: share }));
        }
        let Some(clear) = &raw.clear_share else {
            return Ok((share, share / 2.0));
        };
        let value = *clear.get_ref();
        if !(value > 0.0 && value <= share) {
            return Err(self.invalid(
                clear.span(),
                "clear_share",
                Problem::Hysteresis {
                    clear: value,
                    relation: "<=",
                    trigger: share,
                },
            ));
        }
        Ok((share, value))
    }

    /// A fleet rule's group minimum (`min_devices` at least 2) and its windows: `within` not
    /// zero, `hold` not zero and at most `within`.
    fn fleet_window(&self, raw: &RawFleet) -> Result<(), RuleError> {
        if *raw.min_devices.get_ref() < 2 {
            return Err(self.invalid(raw.min_devices.span(), "min_devices", Problem::MinDevices));
        }
        if raw.within.get_ref().0.is_zero() {
            return Err(self.invalid(raw.within.span(), "within", Problem::ZeroDuration));
        }
        if let Some(hold) = &raw.hold {
            if hold.get_ref().0.is_zero() {
                return Err(self.invalid(hold.span(), "hold", Problem::ZeroDuration));
            }
            if hold.get_ref().0 > raw.within.get_ref().0 {
                return Err(self.invalid(
                    hold.span(),
                    "hold",
                    Problem::HoldLongerThanWindow {
                        hold: hold.get_ref().0,
                        within: raw.within.get_ref().0,
                    },
                ));
            }
        }
        Ok(())
    }

    fn overrides(
        &mut self,
        raw: Option<&Vec<Spanned<RawOverride>>>,
        kind: RawKind,
        base_clear: Option<&Spanned<String>>,
    ) -> Result<Vec<Override>, RuleError> {
        let mut overrides = Vec::new();
        for item in raw.map(Vec::as_slice).unwrap_or_default() {
            overrides.push(self.override_item(item, kind, base_clear)?);
        }
        Ok(overrides)
    }

    /// One `[[rule.override]]` of a rule of `kind` (whose own `clear` is `base_clear`).
    fn override_item(
        &mut self,
        item: &Spanned<RawOverride>,
        kind: RawKind,
        base_clear: Option<&Spanned<String>>,
    ) -> Result<Override, RuleError> {
        let o = item.get_ref();
        let condition = self.override_condition(o, kind, base_clear)?;
        let guard = match (kind, &o.when) {
            (RawKind::Absence, Some(when)) => Some(self.guard(when, "override.when")?),
            _ => None,
        };
        if let Some(action) = &o.action {
            self.check_order_category(action, "override.action.order.category")?;
        }
        let escalations = match &o.escalate {
            None => None,
            Some(_) if kind == RawKind::Absence => {
                return Err(self.invalid(
                    item.span(),
                    "override.escalate",
                    Problem::NotUsed { kind: "absence" },
                ))
            }
            Some(list) => Some(self.escalations(Some(list), "override.escalate.when")?),
        };
        Ok(Override {
            selector: Selector {
                townships: o.townships.clone(),
                villages: o.villages.clone(),
                vulnerable: o.vulnerable,
                tags: o.tags.clone(),
            },
            condition,
            guard,
            hold_for: o.hold_for.as_ref().map(|d| d.0),
            clear_for: o.clear_for.as_ref().map(|d| d.0),
            severity: o.severity,
            action: o.action.as_ref().map(|a| a.get_ref().clone()),
            escalations,
        })
    }

    /// The condition an override of a rule of `kind` replaces: an expression rule's `when`
    /// (with its `clear`, or the rule's own); `when` is refused for the kinds without one, and
    /// `clear` for all but expression rules.
    fn override_condition(
        &mut self,
        o: &RawOverride,
        kind: RawKind,
        base_clear: Option<&Spanned<String>>,
    ) -> Result<Option<Condition>, RuleError> {
        if kind != RawKind::Expr && kind != RawKind::Absence {
            if let Some(when) = &o.when {
                return Err(self.invalid(
                    when.span(),
                    "override.when",
                    Problem::NotUsed { kind: kind.name() },
                ));
            }
        }
        if kind != RawKind::Expr {
            if let Some(clear) = &o.clear {
                return Err(self.invalid(
                    clear.span(),
                    "override.clear",
                    Problem::NotUsed { kind: kind.name() },
                ));
            }
        }
        match (kind, &o.when, &o.clear) {
            (RawKind::Expr, Some(when), clear) => {
                let when = self.expr(when, "override.when")?;
                let clear = match clear.as_ref().or(base_clear) {
                    Some(clear) => Some(self.expr(clear, "override.clear")?),
                    None => None,
                };
                Ok(Some(Condition::Expr { when, clear }))
            }
            (RawKind::Expr, None, Some(clear)) => Err(self.invalid(
                clear.span(),
                "override.when",
                Problem::Missing {
                    kind: "overrides that replace `clear`",
                },
            )),
            _ => Ok(None),
        }
    }

    fn rule(&mut self, raw: RawRule, raw_span: Range<usize>) -> Result<Rule, RuleError> {
        self.check_id(&raw.id)?;
        let applies_to = self.applies_to(raw.applies_to.as_ref())?;
        let hold_for = raw.hold_for.as_ref().map(|d| d.get_ref().0);
        let clear_for = raw.clear_for.as_ref().map(|d| d.get_ref().0);
        self.unused_fields(&raw, &raw_span)?;
        let kind = *raw.kind.get_ref();
        let guard = match (kind, &raw.when) {
            (RawKind::Absence, Some(when)) => Some(self.guard(when, "when")?),
            _ => None,
        };
        let escalations = self.escalations(raw.escalate.as_ref(), "escalate.when")?;
        let overrides = self.overrides(raw.overrides.as_ref(), kind, raw.clear.as_ref())?;
        if overrides.len() > 250 {
            return Err(self.invalid(raw_span, "override", Problem::TooManyOverrides));
        }
        let condition = self.condition(&raw)?;
        self.check_order_category(&raw.action, "action.order.category")?;
        Ok(Rule {
            id: raw.id.into_inner(),
            description: raw.description,
            condition,
            guard,
            applies_to,
            hold_for: hold_for.unwrap_or(Duration::ZERO),
            clear_for: clear_for.unwrap_or(Duration::ZERO),
            severity: raw.severity.into_inner(),
            action: raw.action.into_inner(),
            escalations,
            overrides,
        })
    }

    /// Refuses the fields a rule's kind does not use (pointing at the field, or at the rule's
    /// header when the field has no position).
    fn unused_fields(&self, raw: &RawRule, raw_span: &Range<usize>) -> Result<(), RuleError> {
        let kind = *raw.kind.get_ref();
        let not_used = |present: bool, field: &'static str, span: Option<Range<usize>>| {
            if present {
                Err(self.invalid(
                    span.unwrap_or_else(|| raw_span.clone()),
                    field,
                    Problem::NotUsed { kind: kind.name() },
                ))
            } else {
                Ok(())
            }
        };
        let span_of = |field: &Option<Spanned<f64>>| field.as_ref().map(Spanned::span);
        if kind != RawKind::Fault {
            not_used(
                raw.categories.is_some(),
                "categories",
                raw.categories.as_ref().map(Spanned::span),
            )?;
        }
        if kind != RawKind::Threshold {
            not_used(
                raw.value.is_some(),
                "value",
                raw.value.as_ref().map(Spanned::span),
            )?;
            for (field, name) in [
                (&raw.below, "below"),
                (&raw.above, "above"),
                (&raw.clear_above, "clear_above"),
                (&raw.clear_below, "clear_below"),
            ] {
                not_used(field.is_some(), name, span_of(field))?;
            }
        }
        if kind == RawKind::Absence {
            not_used(
                raw.clear_for.is_some(),
                "clear_for",
                raw.clear_for.as_ref().map(Spanned::span),
            )?;
            not_used(
                raw.escalate.is_some(),
                "escalate",
                raw.escalate
                    .as_ref()
                    .and_then(|l| l.first())
                    .map(Spanned::span),
            )?;
        }
        if kind != RawKind::Expr {
            not_used(
                raw.clear.is_some(),
                "clear",
                raw.clear.as_ref().map(Spanned::span),
            )?;
        }
        if kind != RawKind::Expr && kind != RawKind::Absence {
            not_used(
                raw.when.is_some(),
                "when",
                raw.when.as_ref().map(Spanned::span),
            )?;
        }
        Ok(())
    }

    /// A rule's condition, by kind: fault categories, a threshold, an absence (with a `for`
    /// that is not zero) or an expression (`when`, optionally `clear`).
    fn condition(&mut self, raw: &RawRule) -> Result<Condition, RuleError> {
        let kind = *raw.kind.get_ref();
        let missing = |field| {
            self.invalid(
                raw.kind.span(),
                field,
                Problem::Missing { kind: kind.name() },
            )
        };
        Ok(match kind {
            RawKind::Fault => Condition::Fault {
                categories: self.categories(raw.categories.as_ref())?,
            },
            RawKind::Threshold => Condition::Threshold(self.threshold(raw)?),
            RawKind::Absence => match &raw.hold_for {
                None => return Err(missing("for")),
                Some(duration) if duration.get_ref().0.is_zero() => {
                    return Err(self.invalid(duration.span(), "for", Problem::ZeroDuration))
                }
                Some(_) => Condition::Absence,
            },
            RawKind::Expr => {
                let when = raw.when.as_ref().ok_or_else(|| missing("when"))?;
                let when = self.expr(when, "when")?;
                let clear = match &raw.clear {
                    Some(clear) => Some(self.expr(clear, "clear")?),
                    None => None,
                };
                Condition::Expr { when, clear }
            }
        })
    }

    fn categories(
        &self,
        raw: Option<&Spanned<Vec<Spanned<String>>>>,
    ) -> Result<Vec<FaultCategory>, RuleError> {
        let mut categories = Vec::new();
        for name in raw
            .map(|list| list.get_ref().as_slice())
            .unwrap_or_default()
        {
            let category = FaultCategory::parse(name.get_ref()).ok_or_else(|| {
                self.invalid(
                    name.span(),
                    "categories",
                    Problem::UnknownFaultCategory {
                        name: name.get_ref().clone(),
                    },
                )
            })?;
            if !categories.contains(&category) {
                categories.push(category);
            }
        }
        categories.sort();
        Ok(categories)
    }

    fn threshold(&self, raw: &RawRule) -> Result<Threshold, RuleError> {
        let value = self.threshold_value(raw)?;
        for (field, name) in [
            (&raw.below, "below"),
            (&raw.above, "above"),
            (&raw.clear_above, "clear_above"),
            (&raw.clear_below, "clear_below"),
        ] {
            if let Some(number) = field {
                if !number.get_ref().is_finite() {
                    return Err(self.invalid(
                        number.span(),
                        name,
                        Problem::NotFinite {
                            value: *number.get_ref(),
                        },
                    ));
                }
            }
        }
        let (direction, trigger, clear) = self.threshold_direction(raw)?;
        let trigger_value = *trigger.get_ref();
        Ok(Threshold {
            value: value.get_ref().clone(),
            direction,
            trigger: trigger_value,
            clear: self.threshold_clear(direction, trigger_value, clear)?,
        })
    }

    /// A threshold rule's `value`: a canonical value name.
    fn threshold_value<'r>(&self, raw: &'r RawRule) -> Result<&'r Spanned<String>, RuleError> {
        let value = raw.value.as_ref().ok_or_else(|| {
            self.invalid(
                raw.kind.span(),
                "value",
                Problem::Missing { kind: "threshold" },
            )
        })?;
        if wire::values::lookup(value.get_ref()).is_none() {
            let name = value.get_ref().clone();
            let problem = if wire::values::is_vendor_name(&name) {
                Problem::VendorValueName { name }
            } else {
                Problem::UnknownValueName { name }
            };
            return Err(self.invalid(value.span(), "value", problem));
        }
        Ok(value)
    }

    /// A threshold's direction, trigger and clear value: `below` with `clear_above`, or
    /// `above` with `clear_below`, never both triggers nor the other direction's clear.
    fn threshold_direction<'r>(&self, raw: &'r RawRule) -> Result<Bounds<'r>, RuleError> {
        let (direction, trigger, clear, wrong_clear) = match (&raw.below, &raw.above) {
            (Some(below), None) => (
                Direction::Below,
                below,
                raw.clear_above.as_ref(),
                raw.clear_below.as_ref().map(|c| (c, "clear_below")),
            ),
            (None, Some(above)) => (
                Direction::Above,
                above,
                raw.clear_below.as_ref(),
                raw.clear_above.as_ref().map(|c| (c, "clear_above")),
            ),
            (Some(_), Some(above)) => {
                return Err(self.invalid(above.span(), "above", Problem::BothThresholds))
            }
            (None, None) => {
                return Err(self.invalid(raw.kind.span(), "below", Problem::MissingThreshold))
            }
        };
        let trigger_name = direction.as_str();
        if let Some((wrong, name)) = wrong_clear {
            return Err(self.invalid(
                wrong.span(),
                name,
                Problem::WrongClearDirection {
                    goes_with: if trigger_name == "below" {
                        "above"
                    } else {
                        "below"
                    },
                    used_with: trigger_name,
                },
            ));
        }
        Ok((direction, trigger, clear))
    }

    /// A threshold's clear value: the trigger itself when absent, else on the far side of it
    /// (at or above a `below` trigger, at or below an `above` one).
    fn threshold_clear(
        &self,
        direction: Direction,
        trigger_value: f64,
        clear: Option<&Spanned<f64>>,
    ) -> Result<f64, RuleError> {
        let Some(clear) = clear else {
            return Ok(trigger_value);
        };
        let value = *clear.get_ref();
        let (ok, relation, name) = match direction {
            Direction::Below => (value >= trigger_value, ">=", "clear_above"),
            Direction::Above => (value <= trigger_value, "<=", "clear_below"),
        };
        if !ok {
            return Err(self.invalid(
                clear.span(),
                name,
                Problem::Hysteresis {
                    clear: value,
                    relation,
                    trigger: trigger_value,
                },
            ));
        }
        Ok(value)
    }
}

/// The byte offset in the file of byte `offset` of a TOML string's content, given the span of
/// the string token (quotes included). Handles basic and literal strings, single and
/// multi-line, and escapes, so an expression error points at the right column.
fn expression_offset(text: &str, span: Range<usize>, offset: usize) -> usize {
    let Some(raw) = text.get(span.clone()) else {
        return span.start;
    };
    let (quote_len, literal) = if raw.starts_with("\"\"\"") {
        (3, false)
    } else if raw.starts_with("'''") {
        (3, true)
    } else if raw.starts_with('\'') {
        (1, true)
    } else {
        (1, false)
    };
    let mut position = quote_len.min(raw.len());
    if quote_len == 3 {
        if raw[position..].starts_with("\r\n") {
            position += 2;
        } else if raw[position..].starts_with('\n') {
            position += 1;
        }
    }
    if literal {
        return span.start + (position + offset).min(raw.len());
    }
    let mut decoded = 0;
    let bytes = raw.as_bytes();
    while decoded < offset && position < raw.len() {
        if bytes[position] == b'\\' {
            let escape_len = match bytes.get(position + 1) {
                Some(b'u') => 6,
                Some(b'U') => 10,
                Some(b' ' | b'\t' | b'\n' | b'\r') => {
                    // Line-ending backslash: it and the whitespace after it decode to nothing.
                    position += 1;
                    while position < raw.len()
                        && matches!(bytes[position], b' ' | b'\t' | b'\n' | b'\r')
                    {
                        position += 1;
                    }
                    continue;
                }
                _ => 2,
            };
            let decoded_len = if escape_len > 2 {
                raw.get(position + 2..position + escape_len)
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .and_then(char::from_u32)
                    .map_or(1, char::len_utf8)
            } else {
                1
            };
            position += escape_len;
            decoded += decoded_len;
        } else {
            let width = raw[position..].chars().next().map_or(1, char::len_utf8);
            position += width;
            decoded += width;
        }
    }
    span.start + position.min(raw.len())
}

/// 1 to 64 of `a-z`, `0-9`, `_` (and `-` when `allow_dash`).
fn is_identifier(value: &str, allow_dash: bool) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || (allow_dash && c == '-')
        })
}

/// Turns a TOML or serde error into a [`RuleError::Toml`] that names the rule and field.
fn toml_error(text: &str, origin: &str, error: &toml::de::Error) -> RuleError {
    let offset = error.span().map_or(0, |span| span.start);
    let (rule, path) = locate(text, offset);
    let message = error.message().to_owned();
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next())
        .map(str::to_owned);
    let field = match (named, path) {
        // An unknown field inside a nested table: keep the path to it.
        (Some(name), Some(path)) if path.ends_with(&name) => Some(path),
        (Some(name), _) => Some(name),
        (None, path) => path,
    };
    RuleError::Toml {
        location: Location::at(text, origin, offset),
        rule,
        field,
        message,
    }
}

/// Finds which rule (by id) and which key path contain byte `offset`. Best effort: the text
/// may not even be TOML, then nothing is found.
fn locate(text: &str, offset: usize) -> (Option<String>, Option<String>) {
    let Ok(document) = DeTable::parse(text) else {
        return (None, None);
    };
    let top = document.get_ref();
    let rules = top
        .iter()
        .find(|(key, _)| key.get_ref() == "rule")
        .and_then(|(_, value)| value.get_ref().as_array());
    let rule_table = rules.and_then(|rules| {
        rules
            .iter()
            .filter(|rule| rule.span().start <= offset)
            .max_by_key(|rule| rule.span().start)
            .and_then(|rule| rule.get_ref().as_table())
    });
    match rule_table {
        Some(table) => {
            let id = table
                .iter()
                .find(|(key, _)| key.get_ref() == "id")
                .and_then(|(_, value)| value.get_ref().as_str())
                .map(str::to_owned);
            (id, key_path(table, offset))
        }
        None => (None, key_path(top, offset)),
    }
}

/// The dotted path of the deepest key whose key or value contains `offset`.
fn key_path(table: &DeTable<'_>, offset: usize) -> Option<String> {
    for (key, value) in table.iter() {
        let in_key = key.span().contains(&offset);
        let in_value = value.span().contains(&offset);
        if !(in_key || in_value) {
            continue;
        }
        let name = key.get_ref().to_string();
        let deeper = match value.get_ref() {
            DeValue::Table(inner) if in_value => key_path(inner, offset),
            _ => None,
        };
        return Some(match deeper {
            Some(rest) => format!("{name}.{rest}"),
            None => name,
        });
    }
    None
}

#[cfg(test)]
mod tests;
