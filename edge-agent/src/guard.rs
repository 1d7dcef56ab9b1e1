//! The box's own watch while its uplink is down: a small pack of the gateway's rules, run on
//! the box, that raises a local alarm when the house loses its heat and nobody upstream can
//! see it.
//!
//! A box sits on a mobile link that drops for hours. Its readings wait in the disk queue, and
//! the gateway acts on them when they arrive: too late for a house that froze meanwhile. So the
//! box runs the rules that need nothing but its own devices' readings (no heat with the room
//! falling, frost in the circuit, lockouts and fault codes: [`DEFAULT_RULES`]) with the same
//! `rules` engine the gateway runs, and when one of them fires after the uplink has been down
//! for [`GuardConfig::after`], it raises a local alarm: a Modbus coil (a buzzer, a light, a
//! relay) on while any raised episode lasts, and a command hook run once per episode (an SMS
//! through the box's modem to the caretaker). Each raise and clear is written into the reading
//! that caused it ([`wire::EdgeAlert`]), so the gateway learns of it with the backlog, in
//! order, and reconciles it with its own alert of the same episode: the order is always the
//! gateway's, one per episode.
//!
//! What the box does not do: fleet rules (they need the village), absence rules (a silent
//! device is the box's own link problem), rules whose action is only an alert (nobody is woken
//! for those). An episode raised while the uplink was down stays raised until its rule ends:
//! the house is still cold when the link comes back, and the coil says so.
//!
//! Time: the engine runs on the box's monotonic clock (a box without a real-time clock starts
//! in 1970 and jumps when NTP answers; `for` timers must not jump with it), and the alerts
//! carry the readings' wall time. Pure: the caller does the IO (`agent::alarm`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use rules::{Action as RuleAction, DeviceInfo, Engine, RuleSet, TransitionKind};
use serde::Deserialize;
use wire::{DeviceId, DeviceKind, EdgeAlert, EdgeAlertKind, EdgeChannel, Telemetry};

use crate::config::ConfigError;

/// The rules of the gateway's pack a box runs by default: each needs only its own device's
/// readings and opens an order.
pub const DEFAULT_RULES: [&str; 12] = [
    "device_fault",
    "protection_lockout",
    "gas_fault",
    "heating_stopped",
    "heating_stopped_no_room_sensor",
    "standing_water_cold",
    "unit_unpowered",
    "no_circulation",
    "no_circulation_boiler",
    "indoor_cold",
    "freeze_risk",
    "boiler_pressure_low",
];

/// The rules [`DEFAULT_RULES`] of the gateway's built-in pack, as a box runs them by default.
pub fn default_rule_set() -> Result<RuleSet, String> {
    let derived = rules::derive::keep_rules(
        rules::DEFAULT_RULES,
        rules::DEFAULT_RULES_ORIGIN,
        &default_rules(),
    )?;
    RuleSet::parse(&derived.text, rules::DEFAULT_RULES_ORIGIN).map_err(|e| e.to_string())
}

/// 2020-01-01 in Unix ms: the engine's time is this plus the box's monotonic milliseconds, a
/// time every rule window accepts.
const ENGINE_EPOCH_MS: i64 = 1_577_836_800_000;

/// `[guard]` of the agent's config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    /// Whether the box watches at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// A rule file (relative to the config file) instead of the gateway's built-in pack.
    #[serde(default)]
    pub rules_file: Option<std::path::PathBuf>,
    /// The ids of that file's rules the box runs.
    #[serde(default = "default_rules")]
    pub rules: Vec<String>,
    /// How long the uplink must have been down before a firing rule raises the local alarm
    /// (shorter drops are the gateway's business: the backlog arrives in time).
    #[serde(default = "default_after", with = "humantime_serde")]
    pub after: Duration,
    /// The household is vulnerable: the pack's stricter overrides apply on the box too.
    #[serde(default)]
    pub vulnerable: bool,
    /// A coil switched on while an alarm is raised.
    #[serde(default)]
    pub coil: Option<CoilConfig>,
    /// A program run once per raised episode.
    #[serde(default)]
    pub hook: Option<HookConfig>,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            rules_file: None,
            rules: default_rules(),
            after: default_after(),
            vulnerable: false,
            coil: None,
            hook: None,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_rules() -> Vec<String> {
    DEFAULT_RULES.iter().map(|s| (*s).to_owned()).collect()
}
fn default_after() -> Duration {
    Duration::from_secs(20 * 60)
}

/// `[guard.coil]`: a Modbus coil of one of the box's devices (its own link and unit id).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoilConfig {
    /// A configured device id (the alarm output of a heater's controller, or a relay module
    /// configured as a device on the same bus).
    pub device: String,
    /// Coil address (0-based, as on the wire).
    pub address: u16,
}

/// `[guard.hook]`: a program the box runs once per raised episode, with the alert in its
/// environment (`HEATING_ALERT_DEVICE`, `HEATING_ALERT_RULE`, `HEATING_ALERT_SUMMARY`,
/// `HEATING_ALERT_EPISODE`, `HEATING_ALERT_DOWN_MINUTES`, `HEATING_AGENT_ID`). No shell: the
/// program and its arguments as given.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// Absolute path of the program.
    pub program: std::path::PathBuf,
    /// Its arguments, as given (no shell, no expansion).
    #[serde(default)]
    pub args: Vec<String>,
    /// The program is killed after this long.
    #[serde(default = "default_hook_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_hook_timeout() -> Duration {
    Duration::from_secs(60)
}

/// One episode firing on the box.
#[derive(Debug, Clone)]
struct Episode {
    rule_id: String,
    device: DeviceId,
    /// Wall time of the reading it fired on, Unix ms.
    fired_wall_ms: i64,
    summary: String,
}

impl Episode {
    /// `{rule}:{device}:{fired_at_ms}`: the id the gateway's engine gives the same episode on
    /// the same readings (with the box's wall clock trusted).
    fn id(&self) -> String {
        format!("{}:{}:{}", self.rule_id, self.device, self.fired_wall_ms)
    }
}

/// Counters for the health report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuardStats {
    /// Episodes raised locally.
    pub raised: u64,
    /// Raised episodes that ended on the box.
    pub cleared: u64,
    /// Episodes firing on the box now (raised or not).
    pub firing: usize,
}

/// The box's watch. See the module documentation.
pub struct Guard {
    engine: Engine,
    after_ms: u64,
    coil: bool,
    hook: bool,
    /// Firing episodes by the engine's episode id.
    firing: BTreeMap<String, Episode>,
    /// Engine episode ids raised locally.
    raised: BTreeSet<String>,
    stats: GuardStats,
}

impl Guard {
    /// A guard running `rules` over `devices` (id, kind, township).
    pub fn new(
        rules: RuleSet,
        devices: &[(DeviceId, DeviceKind, String)],
        config: &GuardConfig,
    ) -> Guard {
        let mut engine = Engine::new(rules);
        for (id, kind, township) in devices {
            engine.register_device(
                id.clone(),
                DeviceInfo {
                    kind: Some(*kind),
                    township: Some(township.clone()),
                    vulnerable: config.vulnerable,
                    ..DeviceInfo::default()
                },
            );
        }
        Guard {
            engine,
            after_ms: u64::try_from(config.after.as_millis()).unwrap_or(u64::MAX),
            coil: config.coil.is_some(),
            hook: config.hook.is_some(),
            firing: BTreeMap::new(),
            raised: BTreeSet::new(),
            stats: GuardStats::default(),
        }
    }

    /// Feeds one reading taken at `mono_ms` on the box's monotonic clock. `uplink_down_ms` is
    /// how long the uplink has been down (`None` while it is up). Writes the alerts this
    /// reading raised or cleared into it and returns the ones it raised (the caller runs the
    /// hook for each); the coil follows [`Guard::alarm_on`].
    pub fn observe(
        &mut self,
        reading: &mut Telemetry,
        mono_ms: u64,
        uplink_down_ms: Option<u64>,
    ) -> Vec<EdgeAlert> {
        let wall_ms = reading.ts_ms;
        let mut on_engine_clock = reading.clone();
        on_engine_clock.ts_ms =
            ENGINE_EPOCH_MS.saturating_add(i64::try_from(mono_ms).unwrap_or(i64::MAX));
        let outcome = self.engine.process(&on_engine_clock);
        let down_ms = uplink_down_ms.unwrap_or(0);
        let mut alerts = Vec::new();
        for transition in outcome.transitions {
            if !matches!(transition.action, RuleAction::Order { .. }) {
                continue;
            }
            match transition.kind {
                TransitionKind::Firing => {
                    self.firing.insert(
                        transition.episode_id,
                        Episode {
                            rule_id: transition.rule_id,
                            device: transition.device_id,
                            fired_wall_ms: wall_ms,
                            summary: transition.summary,
                        },
                    );
                }
                TransitionKind::Resolved => {
                    let Some(episode) = self.firing.remove(&transition.episode_id) else {
                        continue;
                    };
                    if self.raised.remove(&transition.episode_id) {
                        self.stats.cleared += 1;
                        alerts.push(self.alert(&episode, EdgeAlertKind::Cleared, wall_ms, down_ms));
                    }
                }
            }
        }
        let mut raised = Vec::new();
        if uplink_down_ms.is_some_and(|down| down >= self.after_ms) {
            let due: Vec<String> = self
                .firing
                .iter()
                .filter(|(id, e)| e.device == reading.device_id && !self.raised.contains(*id))
                .map(|(id, _)| id.clone())
                .collect();
            for id in due {
                let Some(episode) = self.firing.get(&id) else {
                    continue;
                };
                let alert = self.alert(episode, EdgeAlertKind::Raised, wall_ms, down_ms);
                raised.push(alert.clone());
                alerts.push(alert);
                self.raised.insert(id);
                self.stats.raised += 1;
            }
        }
        self.stats.firing = self.firing.len();
        reading.set_edge_alerts(&alerts);
        raised
    }

    fn alert(&self, episode: &Episode, kind: EdgeAlertKind, at_ms: i64, down_ms: u64) -> EdgeAlert {
        let mut channels = Vec::new();
        if self.coil {
            channels.push(EdgeChannel::Coil);
        }
        if self.hook && kind == EdgeAlertKind::Raised {
            channels.push(EdgeChannel::Hook);
        }
        let mut summary = episode.summary.clone();
        if summary.len() > wire::edge_alert::MAX_SUMMARY_LEN {
            let mut end = wire::edge_alert::MAX_SUMMARY_LEN;
            while !summary.is_char_boundary(end) {
                end -= 1;
            }
            summary.truncate(end);
        }
        EdgeAlert {
            episode_id: episode.id(),
            rule_id: episode.rule_id.clone(),
            kind,
            at_ms,
            uplink_down_ms: down_ms,
            channels,
            summary,
        }
    }

    /// Whether the alarm coil should be on now.
    pub fn alarm_on(&self) -> bool {
        !self.raised.is_empty()
    }

    pub fn stats(&self) -> GuardStats {
        self.stats
    }
}

/// Most rules the guard runs, and most arguments of its hook.
const MAX_GUARD_RULES: usize = 64;
const MAX_HOOK_ARGS: usize = 16;

/// Checks `[guard]` (`devices`: the configured device ids) and derives its rule set from the
/// rule file (the built-in pack unless `guard.rules_file` names another, relative to `base`,
/// the config file's folder); `invalid` places an error at a config field.
pub(crate) fn rule_set(
    guard: &GuardConfig,
    devices: &[&str],
    base: &Path,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Option<RuleSet>, ConfigError> {
    if !guard.enabled {
        return Ok(None);
    }
    if guard.after < Duration::from_secs(1) {
        return Err(invalid(
            "guard.after",
            "must be at least 1s (in the field: tens of minutes; shorter drops are the gateway's business)".into(),
        ));
    }
    if guard.rules.is_empty() || guard.rules.len() > MAX_GUARD_RULES {
        return Err(invalid(
            "guard.rules",
            format!("must name 1 to {MAX_GUARD_RULES} rules (or set guard.enabled = false)"),
        ));
    }
    if let Some(coil) = &guard.coil {
        if !devices.contains(&coil.device.as_str()) {
            return Err(invalid(
                "guard.coil.device",
                format!("{:?} is not one of the configured devices", coil.device),
            ));
        }
    }
    if let Some(hook) = &guard.hook {
        if !hook.program.is_absolute() {
            return Err(invalid(
                "guard.hook.program",
                format!("{} is not an absolute path", hook.program.display()),
            ));
        }
        if !hook.program.is_file() {
            return Err(invalid(
                "guard.hook.program",
                format!("{} is not a file", hook.program.display()),
            ));
        }
        if hook.args.len() > MAX_HOOK_ARGS {
            return Err(invalid(
                "guard.hook.args",
                format!("at most {MAX_HOOK_ARGS} arguments"),
            ));
        }
        if hook.timeout < Duration::from_secs(1) || hook.timeout > Duration::from_secs(600) {
            return Err(invalid(
                "guard.hook.timeout",
                "must be between 1s and 10m".into(),
            ));
        }
    }
    let (text, origin) = match &guard.rules_file {
        Some(file) => {
            let path = base.join(file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                invalid(
                    "guard.rules_file",
                    format!("{} cannot be read: {e}", path.display()),
                )
            })?;
            (text, path.display().to_string())
        }
        None => (
            rules::DEFAULT_RULES.to_owned(),
            rules::DEFAULT_RULES_ORIGIN.to_owned(),
        ),
    };
    let derived = rules::derive::keep_rules(&text, &origin, &guard.rules)
        .map_err(|message| invalid("guard.rules", message))?;
    let set = RuleSet::parse(&derived.text, &origin)
        .map_err(|e| invalid("guard.rules", e.to_string()))?;
    Ok(Some(set))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap as Map;
    use wire::{Values, SCHEMA_VERSION};

    const MIN: u64 = 60_000;

    fn pack() -> RuleSet {
        default_rule_set().expect("the default edge rules are rules of the pack")
    }

    fn device() -> DeviceId {
        DeviceId::parse("yq-0001-hp").expect("id")
    }

    fn config(coil: bool, hook: bool) -> GuardConfig {
        GuardConfig {
            coil: coil.then(|| CoilConfig {
                device: "yq-0001-hp".into(),
                address: 12,
            }),
            hook: hook.then(|| HookConfig {
                program: "/usr/local/bin/sms".into(),
                args: Vec::new(),
                timeout: Duration::from_secs(10),
            }),
            ..GuardConfig::default()
        }
    }

    fn guard(coil: bool, hook: bool) -> Guard {
        Guard::new(
            pack(),
            &[(device(), DeviceKind::HeatPump, "yongning".into())],
            &config(coil, hook),
        )
    }

    /// A heat pump at minute `minute` (wall clock 1 January 2026 + minute), room at `room`,
    /// set point 20 °C, not running (a controller that stopped without a code).
    fn reading(minute: u64, room: f64) -> Telemetry {
        Telemetry {
            v: SCHEMA_VERSION,
            device_id: device(),
            ts_ms: 1_767_225_600_000 + (minute * MIN) as i64,
            seq: minute + 1,
            profile: "aurora-ashp".into(),
            kind: DeviceKind::HeatPump,
            values: Values::from([
                ("indoor_temp_c", room),
                ("setpoint_c", 20.0),
                ("running", 0.0),
                ("flow_temp_c", 22.0),
                ("return_temp_c", 21.0),
                ("outdoor_temp_c", -12.0),
            ]),
            fault: None,
            extra: Map::new(),
        }
    }

    /// Feeds minutes `from..to` (one reading a minute, the room cooling 2 K an hour from 17 °C)
    /// with the uplink down since minute `down_since` (`None`: up).
    fn run(
        guard: &mut Guard,
        from: u64,
        to: u64,
        down_since: Option<u64>,
    ) -> Vec<(u64, Vec<EdgeAlert>, Vec<EdgeAlert>)> {
        let mut out = Vec::new();
        for minute in from..to {
            let room = 17.0 - minute as f64 * 2.0 / 60.0;
            let mut r = reading(minute, (room * 10.0).round() / 10.0);
            let down = down_since.map(|d| minute.saturating_sub(d) * MIN);
            let actions = guard.observe(&mut r, minute * MIN, down);
            let alerts = r.edge_alerts().expect("well formed");
            if !actions.is_empty() || !alerts.is_empty() {
                out.push((minute, actions, alerts));
            }
        }
        out
    }

    #[test]
    fn a_cooling_house_raises_the_alarm_only_after_the_uplink_was_down_long_enough() {
        let mut g = guard(true, true);
        // heating_stopped fires after an hour without running plus 10 minutes; the uplink went
        // down at minute 60, so the alarm waits until minute 80 (20 minutes down).
        let events = run(&mut g, 0, 120, Some(60));
        let (minute, raised, alerts) = &events[0];
        assert_eq!(*minute, 80, "{events:?}");
        assert_eq!(raised, alerts, "what is raised is what the reading carries");
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].kind, EdgeAlertKind::Raised);
        assert_eq!(alerts[0].uplink_down_ms, 20 * MIN);
        assert_eq!(
            alerts[0].channels,
            vec![EdgeChannel::Coil, EdgeChannel::Hook]
        );
        assert!(alerts[0]
            .episode_id
            .starts_with("heating_stopped:yq-0001-hp:"));
        assert!(g.alarm_on());
        assert_eq!(g.stats().raised, 1);
        // Nothing is raised twice.
        assert!(
            events[1..]
                .iter()
                .all(|(_, _, a)| a.iter().all(|a| a.rule_id != "heating_stopped")),
            "{events:?}"
        );
    }

    #[test]
    fn with_the_uplink_up_nothing_is_raised_and_the_reading_carries_nothing() {
        let mut g = guard(true, true);
        assert!(run(&mut g, 0, 180, None).is_empty());
        assert!(!g.alarm_on());
        assert!(
            g.stats().firing > 0,
            "the rules fired on the box all the same"
        );
    }

    #[test]
    fn the_alarm_clears_when_the_heating_comes_back() {
        let mut g = guard(true, false);
        run(&mut g, 0, 100, Some(0));
        assert!(g.alarm_on());
        // The heater runs again and the room is back at its set point.
        let mut r = reading(100, 19.8);
        r.values = Values::from([
            ("indoor_temp_c", 19.8),
            ("setpoint_c", 20.0),
            ("running", 1.0),
            ("flow_temp_c", 35.0),
            ("return_temp_c", 30.0),
            ("outdoor_temp_c", -12.0),
        ]);
        assert!(g.observe(&mut r, 100 * MIN, None).is_empty());
        let alerts = r.edge_alerts().expect("ok");
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].kind, EdgeAlertKind::Cleared);
        assert_eq!(alerts[0].channels, vec![EdgeChannel::Coil]);
        assert!(!g.alarm_on());
        assert_eq!(g.stats().cleared, 1);
    }

    #[test]
    fn the_wall_clock_jumping_does_not_fire_a_timer() {
        // A box without a real-time clock: its readings say 1970 until NTP answers, then 2026.
        let mut g = guard(true, false);
        for minute in 0..20u64 {
            let mut r = reading(minute, 15.0);
            r.ts_ms = (minute * MIN) as i64;
            assert!(g
                .observe(&mut r, minute * MIN, Some(10 * 60 * MIN))
                .is_empty());
        }
        // NTP answered: on the wall clock the heater has not run for 56 years, on the box for
        // 35 minutes (heating_stopped needs an hour).
        for minute in 20..35u64 {
            let mut r = reading(minute, 15.0);
            let actions = g.observe(&mut r, minute * MIN, Some(10 * 60 * MIN));
            assert!(actions.is_empty(), "minute {minute}: {actions:?}");
        }
        assert_eq!(g.stats().firing, 0);
    }
}
