//! Prevention before the cold (防寒, issue 21): a risk score per unit from what the gateway
//! already knows ([`risk`]), a weather forecast read from a file or an HTTP endpoint
//! ([`weather`]), and the cold-wave sweep that, ahead of a forecast cold wave, ranks the units
//! most likely to fail or leave a home cold and opens preventive visits or calls up to the
//! capacity the operator sets, once per unit and wave ([`sweep`]).
//!
//! [`Prevention`] is the component: built from its config section `[prevention]`
//! ([`PreventionConfig`]), it re-reads the forecast every `poll_every` and, with `auto_open`,
//! opens what the sweep plans ([`Prevention::run`]); the API's `/api/v1/prevention/...` routes
//! read and drive the same instance. What goes wrong is counted in [`PreventionFigures`]
//! (`gateway_prevention_*` on `/metrics`).
//!
//! # The cold-wave rule
//!
//! A forecast is a cold wave for an area when, within `horizon` (72 h: far enough to send a
//! technician, near enough to trust the forecast), a period's minimum is at or below
//! `cold_threshold_c` (-15 °C: Yanqing's ordinary winter nights are -15 to -20 °C; below it an
//! air-source heat pump delivers about half its rated heat while the house needs the most, and
//! boilers' external gas regulators and condensate drains freeze), or falls by `drop_k` (8 K)
//! within `drop_within` (48 h) whatever the level. The national cold-wave standard (GB/T
//! 21987, 寒潮) asks for a fall of 8 °C in 24 h, 10 °C in 48 h or 12 °C in 72 h down to 4 °C or
//! below; one rule of 8 K in 48 h is a little more eager than it, which costs only a few
//! early visits, bounded by the capacity.

pub mod risk;
pub mod sweep;
pub mod weather;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::orders::store::StoreError;
use crate::orders::OrderService;
use weather::{ForecastError, ForecastPoint};

pub use sweep::{Capacity, PlannedUnit, SweepOutcome, SweepPlan, UnitRisk};

/// The `[prevention]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreventionConfig {
    /// A forecast CSV file (format: `gateway/src/prevention/weather.rs`), read every
    /// `poll_every` (with `forecast_url`, only when the fetch fails); relative to the config
    /// file. Checked at start-up when it exists: a bad file stops the start with
    /// file:line:field; a missing one is awaited (a job may drop it there later).
    #[serde(default)]
    pub forecast_file: Option<PathBuf>,
    /// An `http://` or `https://` endpoint that serves the same CSV, fetched every
    /// `poll_every`; when a fetch fails, `forecast_file` is read if set, else the previous
    /// forecast is kept.
    #[serde(default)]
    pub forecast_url: Option<String>,
    /// How often the forecast is read again (and, with `auto_open`, the sweep runs).
    #[serde(default = "default_poll_every", with = "humantime_serde")]
    pub poll_every: Duration,
    /// The most a fetch of `forecast_url` may take, connection and body.
    #[serde(default = "default_fetch_timeout", with = "humantime_serde")]
    pub fetch_timeout: Duration,
    /// The largest forecast accepted, in bytes.
    #[serde(default = "default_max_forecast_bytes")]
    pub max_forecast_bytes: usize,
    /// How far ahead a cold wave is looked for.
    #[serde(default = "default_horizon", with = "humantime_serde")]
    pub horizon: Duration,
    /// A forecast minimum at or below this, °C, is a cold wave.
    #[serde(default = "default_cold_threshold_c")]
    pub cold_threshold_c: f64,
    /// A fall of at least this many kelvin within `drop_within` is a cold wave too.
    #[serde(default = "default_drop_k")]
    pub drop_k: f64,
    /// The window of `drop_k`.
    #[serde(default = "default_drop_within", with = "humantime_serde")]
    pub drop_within: Duration,
    /// Preventive visits a sweep may open per township per day (CST): the technicians' spare
    /// time before a cold wave (one technician per 500 households, a few checks a day each).
    #[serde(default = "default_visits")]
    pub visits_per_township_per_day: u32,
    /// Calls (`contact_household`) a sweep may open per township per day: the hotline desk's.
    #[serde(default = "default_calls")]
    pub calls_per_township_per_day: u32,
    /// Lowest risk score that earns a visit.
    #[serde(default = "default_visit_min_score")]
    pub visit_min_score: u32,
    /// Lowest risk score that earns a call (offline boxes are always called, never visited
    /// first: most often it is the network).
    #[serde(default = "default_call_min_score")]
    pub call_min_score: u32,
    /// Each poll that finds a cold wave opens the planned visits and calls at once. Off: an
    /// operator opens them (`POST /api/v1/prevention/sweep`, the console's 防寒 page).
    #[serde(default = "default_true")]
    pub auto_open: bool,
    /// How far back a soft-fault alert counts for the risk score.
    #[serde(default = "default_signal_lookback", with = "humantime_serde")]
    pub signal_lookback: Duration,
    /// A unit silent this long counts as offline.
    #[serde(default = "default_offline_after", with = "humantime_serde")]
    pub offline_after: Duration,
    /// The house's time constant for the time-to-cold estimate (`risk::HeatLoss`).
    #[serde(default = "default_house_time_constant", with = "humantime_serde")]
    pub house_time_constant: Duration,
    /// The room temperature at which a home counts as cold, °C.
    #[serde(default = "default_cold_room_c")]
    pub cold_room_c: f64,
    /// The room temperature assumed when a unit reports none, °C.
    #[serde(default = "default_indoor_default_c")]
    pub indoor_default_c: f64,
}

fn default_poll_every() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_fetch_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_forecast_bytes() -> usize {
    1024 * 1024
}
fn default_horizon() -> Duration {
    Duration::from_secs(72 * 3600)
}
fn default_cold_threshold_c() -> f64 {
    -15.0
}
fn default_drop_k() -> f64 {
    8.0
}
fn default_drop_within() -> Duration {
    Duration::from_secs(48 * 3600)
}
fn default_visits() -> u32 {
    5
}
fn default_calls() -> u32 {
    10
}
fn default_visit_min_score() -> u32 {
    30
}
fn default_call_min_score() -> u32 {
    20
}
fn default_true() -> bool {
    true
}
fn default_signal_lookback() -> Duration {
    Duration::from_secs(14 * 86_400)
}
fn default_offline_after() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_house_time_constant() -> Duration {
    Duration::from_secs(30 * 3600)
}
fn default_cold_room_c() -> f64 {
    12.0
}
fn default_indoor_default_c() -> f64 {
    18.0
}

impl Default for PreventionConfig {
    fn default() -> Self {
        Self {
            forecast_file: None,
            forecast_url: None,
            poll_every: default_poll_every(),
            fetch_timeout: default_fetch_timeout(),
            max_forecast_bytes: default_max_forecast_bytes(),
            horizon: default_horizon(),
            cold_threshold_c: default_cold_threshold_c(),
            drop_k: default_drop_k(),
            drop_within: default_drop_within(),
            visits_per_township_per_day: default_visits(),
            calls_per_township_per_day: default_calls(),
            visit_min_score: default_visit_min_score(),
            call_min_score: default_call_min_score(),
            auto_open: default_true(),
            signal_lookback: default_signal_lookback(),
            offline_after: default_offline_after(),
            house_time_constant: default_house_time_constant(),
            cold_room_c: default_cold_room_c(),
            indoor_default_c: default_indoor_default_c(),
        }
    }
}

/// The most visits or calls per township a sweep may be given, in the config or a request.
pub const MAX_CAPACITY: u32 = 1_000;

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A `duration` in hours.
fn hours(duration: Duration) -> f64 {
    duration.as_secs_f64() / 3600.0
}

/// A refusal of `prevention.{field}`.
fn fail(field: &str, message: String) -> Result<(), (String, String)> {
    Err((format!("prevention.{field}"), message))
}

impl PreventionConfig {
    /// Checks every field once at start-up; reads and parses `forecast_file`. The error names
    /// the field (`prevention.…`) and what is wrong.
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.validate_forecast()?;
        self.validate_wave()?;
        self.validate_planning()?;
        self.validate_house()?;
        if let Some(path) = self.forecast_file.as_ref().filter(|p| p.exists()) {
            if let Err(error) = weather::load_file(path, self.max_forecast_bytes) {
                return fail("forecast_file", error.to_string());
            }
        }
        Ok(())
    }

    /// Where the forecast comes from and how it is fetched: the URL, the period, the timeout,
    /// the size and the horizon.
    fn validate_forecast(&self) -> Result<(), (String, String)> {
        if let Some(url) = &self.forecast_url {
            if let Err(message) = parse_url(url) {
                return fail("forecast_url", message);
            }
        }
        if !(10.0..=86_400.0).contains(&self.poll_every.as_secs_f64()) {
            return fail("poll_every", "must be between 10s and 24h".into());
        }
        if self.fetch_timeout < Duration::from_secs(1)
            || self.fetch_timeout > Duration::from_secs(300)
            || self.fetch_timeout > self.poll_every
        {
            return fail(
                "fetch_timeout",
                "must be between 1s and 5m, and not longer than poll_every".into(),
            );
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.max_forecast_bytes) {
            return fail(
                "max_forecast_bytes",
                "must be between 1024 and 67108864".into(),
            );
        }
        if !(1.0..=240.0).contains(&hours(self.horizon)) {
            return fail("horizon", "must be between 1h and 10 days".into());
        }
        Ok(())
    }

    /// What a cold wave is: the threshold, and the drop within a time.
    fn validate_wave(&self) -> Result<(), (String, String)> {
        if !(self.cold_threshold_c.is_finite() && (-40.0..=0.0).contains(&self.cold_threshold_c)) {
            return fail("cold_threshold_c", "must be between -40 and 0 °C".into());
        }
        if !(self.drop_k.is_finite() && self.drop_k > 0.0 && self.drop_k <= 40.0) {
            return fail("drop_k", "must be above 0 and at most 40 K".into());
        }
        if !(1.0..=240.0).contains(&hours(self.drop_within)) {
            return fail("drop_within", "must be between 1h and 10 days".into());
        }
        Ok(())
    }

    /// How a sweep plans: the capacities, the scores, the look-back and when a unit is offline.
    fn validate_planning(&self) -> Result<(), (String, String)> {
        for (field, value) in [
            (
                "visits_per_township_per_day",
                self.visits_per_township_per_day,
            ),
            (
                "calls_per_township_per_day",
                self.calls_per_township_per_day,
            ),
        ] {
            if value > MAX_CAPACITY {
                return fail(field, format!("must be at most {MAX_CAPACITY}"));
            }
        }
        for (field, value) in [
            ("visit_min_score", self.visit_min_score),
            ("call_min_score", self.call_min_score),
        ] {
            if value == 0 || value > risk::MAX_SCORE {
                return fail(field, format!("must be between 1 and {}", risk::MAX_SCORE));
            }
        }
        if !(1.0..=24.0 * 120.0).contains(&hours(self.signal_lookback)) {
            return fail("signal_lookback", "must be between 1h and 120 days".into());
        }
        if self.offline_after < Duration::from_secs(60) {
            return fail("offline_after", "must be at least 1m".into());
        }
        Ok(())
    }

    /// The house model of the time to a cold room: the time constant and the temperatures.
    fn validate_house(&self) -> Result<(), (String, String)> {
        if !(1.0..=500.0).contains(&hours(self.house_time_constant)) {
            return fail("house_time_constant", "must be between 1h and 500h".into());
        }
        if !(self.cold_room_c.is_finite() && (0.0..=20.0).contains(&self.cold_room_c)) {
            return fail("cold_room_c", "must be between 0 and 20 °C".into());
        }
        if !(self.indoor_default_c.is_finite()
            && (10.0..=30.0).contains(&self.indoor_default_c)
            && self.indoor_default_c > self.cold_room_c)
        {
            return fail(
                "indoor_default_c",
                "must be between 10 and 30 °C and above cold_room_c".into(),
            );
        }
        Ok(())
    }

    /// The cold-wave rule of this config.
    pub fn wave_rule(&self) -> weather::WaveRule {
        weather::WaveRule {
            threshold_c: self.cold_threshold_c,
            drop_k: self.drop_k,
            drop_within_ms: ms(self.drop_within),
            horizon_ms: ms(self.horizon),
        }
    }

    /// The heat-loss model of this config.
    pub fn heat_loss(&self) -> risk::HeatLoss {
        risk::HeatLoss {
            time_constant_h: self.house_time_constant.as_secs_f64() / 3600.0,
            cold_room_c: self.cold_room_c,
            indoor_default_c: self.indoor_default_c,
        }
    }

    /// The configured capacity.
    pub fn capacity(&self) -> Capacity {
        Capacity {
            visits_per_township: self.visits_per_township_per_day,
            calls_per_township: self.calls_per_township_per_day,
        }
    }
}

/// An `http`/`https` URL with a host.
fn parse_url(url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!(
            "{url:?}: must be an http:// or https:// URL with a host"
        ));
    }
    Ok(parsed)
}

/// The counters of the component, rendered on `/metrics` with the gateway's others.
#[derive(Debug, Default)]
pub struct PreventionFigures {
    inner: Mutex<FiguresInner>,
}

#[derive(Debug, Default)]
struct FiguresInner {
    /// Forecast reads by outcome (`ok`, `invalid`, `unreadable`, `too_large`, `timeout`,
    /// `http_error`).
    loads: BTreeMap<&'static str, u64>,
    /// Orders opened by category.
    opened: BTreeMap<String, u64>,
    /// Sweeps that failed (store errors).
    sweep_failures: u64,
    /// Preventive visits whose automatic dispatch found no team.
    dispatch_failures: u64,
    /// Units planned but left for want of capacity at the last sweep.
    over_capacity: u64,
    /// Cold waves the current forecast holds.
    cold_waves: u64,
}

impl PreventionFigures {
    fn with(&self, f: impl FnOnce(&mut FiguresInner)) {
        if let Ok(mut inner) = self.inner.lock() {
            f(&mut inner);
        }
    }

    /// A forecast read ended with `outcome`.
    pub fn forecast_load(&self, outcome: &'static str) {
        self.with(|i| *i.loads.entry(outcome).or_default() += 1);
    }

    /// Forecast reads with `outcome` so far.
    pub fn forecast_loads(&self, outcome: &str) -> u64 {
        self.inner
            .lock()
            .map(|i| i.loads.get(outcome).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// A sweep opened an order of `category`.
    pub fn order_opened(&self, category: &str) {
        self.with(|i| *i.opened.entry(category.to_owned()).or_default() += 1);
    }

    /// A sweep could not run (the store failed).
    pub fn sweep_failed(&self) {
        self.with(|i| i.sweep_failures += 1);
    }

    /// A preventive visit could not be dispatched automatically.
    pub fn dispatch_failed(&self) {
        self.with(|i| i.dispatch_failures += 1);
    }

    /// What the last plan found: cold waves ahead, units beyond the capacity.
    pub fn planned(&self, cold_waves: usize, over_capacity: usize) {
        self.with(|i| {
            i.cold_waves = cold_waves as u64;
            i.over_capacity = over_capacity as u64;
        });
    }

    /// Appends the figures in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let Ok(inner) = self.inner.lock() else {
            return;
        };
        let _ = writeln!(out, "# HELP gateway_prevention_forecast_loads_total forecast reads of the cold-wave sweep, by outcome (ok, invalid, unreadable, too_large, timeout, http_error); a failed read keeps the previous forecast\n# TYPE gateway_prevention_forecast_loads_total counter");
        for (outcome, count) in &inner.loads {
            let _ = writeln!(
                out,
                "gateway_prevention_forecast_loads_total{{outcome=\"{outcome}\"}} {count}"
            );
        }
        let _ = writeln!(out, "# HELP gateway_prevention_orders_opened_total preventive visits and calls the cold-wave sweep opened, by category\n# TYPE gateway_prevention_orders_opened_total counter");
        for (category, count) in &inner.opened {
            let _ = writeln!(
                out,
                "gateway_prevention_orders_opened_total{{category=\"{category}\"}} {count}"
            );
        }
        for (name, kind, help, value) in [
            ("gateway_prevention_sweep_failures_total", "counter", "cold-wave sweeps that failed (the store); nothing was opened", inner.sweep_failures),
            ("gateway_prevention_dispatch_failures_total", "counter", "preventive visits whose automatic dispatch found no team (they wait for an operator)", inner.dispatch_failures),
            ("gateway_prevention_units_over_capacity", "gauge", "units the last sweep planned but left for want of capacity", inner.over_capacity),
            ("gateway_prevention_cold_waves", "gauge", "areas with a cold wave in the current forecast", inner.cold_waves),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
    }
}

/// The forecast the component holds and where it came from.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ForecastState {
    /// The file or URL; `None` when no source is configured.
    pub source: Option<String>,
    /// When it was last read successfully (the order service's clock), Unix ms.
    pub loaded_at_ms: Option<i64>,
    /// Why the last read failed, if it did (the previous forecast is kept).
    pub error: Option<String>,
    pub points: Vec<ForecastPoint>,
}

/// The component: the forecast, the risk ranking and the sweep.
pub struct Prevention {
    config: PreventionConfig,
    orders: OrderService,
    fleet: Arc<Fleet>,
    metrics: Arc<Metrics>,
    forecast: RwLock<ForecastState>,
    url: Option<reqwest::Url>,
    client: reqwest::Client,
    /// One sweep at a time opens orders (the API and the poller share the component).
    opening: tokio::sync::Mutex<()>,
}

impl Prevention {
    /// Builds the component from its validated config; reads nothing yet.
    pub fn new(
        config: PreventionConfig,
        orders: OrderService,
        fleet: Arc<Fleet>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Prevention>> {
        let url = match &config.forecast_url {
            Some(url) => {
                Some(parse_url(url).map_err(|m| anyhow::anyhow!("prevention.forecast_url: {m}"))?)
            }
            None => None,
        };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.fetch_timeout)
            .timeout(config.fetch_timeout)
            .build()
            .map_err(|e| anyhow::anyhow!("prevention: cannot build the HTTP client: {e}"))?;
        let source = url.as_ref().map(ToString::to_string).or_else(|| {
            config
                .forecast_file
                .as_ref()
                .map(|p| p.display().to_string())
        });
        Ok(Arc::new(Prevention {
            forecast: RwLock::new(ForecastState {
                source,
                ..ForecastState::default()
            }),
            config,
            orders,
            fleet,
            metrics,
            url,
            client,
            opening: tokio::sync::Mutex::new(()),
        }))
    }

    pub fn config(&self) -> &PreventionConfig {
        &self.config
    }

    /// The forecast held now.
    pub fn forecast(&self) -> ForecastState {
        self.forecast.read().map(|f| f.clone()).unwrap_or_default()
    }

    /// Reads the forecast again from its source. On failure the previous one is kept, the
    /// error noted, counted and returned. `Ok(None)` when no source is configured.
    pub async fn refresh_forecast(&self) -> Result<Option<usize>, ForecastError> {
        let max = self.config.max_forecast_bytes;
        let mut loaded = None;
        if let Some(url) = &self.url {
            let fetched = weather::fetch_url(&self.client, url, self.config.fetch_timeout, max)
                .await
                .map(|points| (points, url.to_string()));
            if let (Err(error), Some(_)) = (&fetched, &self.config.forecast_file) {
                self.metrics.prevention.forecast_load(error.outcome());
                tracing::warn!(error = %error, outcome = error.outcome(), "the forecast could not be fetched; reading forecast_file instead");
            } else {
                loaded = Some(fetched);
            }
        }
        if loaded.is_none() {
            if let Some(path) = self.config.forecast_file.clone() {
                let origin = path.display().to_string();
                loaded = Some(
                    tokio::task::spawn_blocking(move || weather::load_file(&path, max))
                        .await
                        .unwrap_or_else(|e| {
                            Err(ForecastError::Read {
                                origin: origin.clone(),
                                message: format!("the read task failed: {e}"),
                            })
                        })
                        .map(|points| (points, origin)),
                );
            }
        }
        let Some(loaded) = loaded else {
            return Ok(None);
        };
        let now_ms = self.orders.now_ms();
        match loaded {
            Ok((points, source)) => {
                let count = points.len();
                self.metrics.prevention.forecast_load("ok");
                if let Ok(mut state) = self.forecast.write() {
                    state.points = points;
                    state.source = Some(source);
                    state.loaded_at_ms = Some(now_ms);
                    state.error = None;
                }
                tracing::debug!(points = count, "forecast read");
                Ok(Some(count))
            }
            Err(error) => {
                self.metrics.prevention.forecast_load(error.outcome());
                tracing::warn!(error = %error, outcome = error.outcome(), "the forecast could not be read; the previous one is kept");
                if let Ok(mut state) = self.forecast.write() {
                    state.error = Some(error.to_string());
                }
                Err(error)
            }
        }
    }

    /// Every registered unit with its risk, highest first.
    pub async fn risk(&self) -> Result<Vec<UnitRisk>, StoreError> {
        let now_ms = self.orders.now_ms();
        sweep::assess(&self.orders, &self.fleet, &self.config, now_ms).await
    }

    /// What a sweep would open now with `capacity`.
    pub async fn plan(&self, capacity: Capacity) -> Result<SweepPlan, StoreError> {
        let now_ms = self.orders.now_ms();
        let forecast = self.forecast();
        let units = sweep::assess(&self.orders, &self.fleet, &self.config, now_ms).await?;
        let records = self
            .orders
            .with_store(move |store| store.sweep_records_since(now_ms - sweep::RECORDS_KEPT_MS))
            .await?;
        let plan = sweep::plan(
            &units,
            &forecast.points,
            &records,
            capacity,
            now_ms,
            &self.config,
        );
        self.metrics
            .prevention
            .planned(plan.waves.len(), plan.over_capacity());
        Ok(plan)
    }

    /// Opens the planned visits and calls within `capacity`, on behalf of `actor` (an order
    /// event's actor: `prevention:auto` or the operator). Idempotent: a unit that has a visit
    /// or call for the wave gets nothing more, here or after a restart.
    pub async fn open(&self, capacity: Capacity, actor: &str) -> Result<SweepOutcome, StoreError> {
        let _one_at_a_time = self.opening.lock().await;
        let plan = match self.plan(capacity).await {
            Ok(plan) => plan,
            Err(error) => {
                self.metrics.prevention.sweep_failed();
                return Err(error);
            }
        };
        match sweep::open(&self.orders, &self.metrics, plan, actor).await {
            Ok(outcome) => Ok(outcome),
            Err(error) => {
                self.metrics.prevention.sweep_failed();
                Err(error)
            }
        }
    }

    /// Reads the forecast every `poll_every` and, with `auto_open`, opens what the sweep plans,
    /// until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(self.config.poll_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                _ = tick.tick() => {}
            }
            if self.refresh_forecast().await.ok().flatten().is_none()
                && self.forecast().loaded_at_ms.is_none()
            {
                continue;
            }
            if !self.config.auto_open {
                if let Err(error) = self.plan(self.config.capacity()).await {
                    tracing::error!(%error, "the cold-wave plan could not be made");
                }
                continue;
            }
            match self.open(self.config.capacity(), "prevention:auto").await {
                Ok(outcome) if !outcome.opened.is_empty() => {
                    tracing::info!(
                        opened = outcome.opened.len(),
                        waves = outcome.plan.waves.len(),
                        "cold-wave sweep opened preventive visits and calls"
                    );
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(%error, "the cold-wave sweep failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_bad_fields_are_named() {
        assert_eq!(PreventionConfig::default().validate(), Ok(()));
        let check = |config: PreventionConfig| config.validate().expect_err("invalid").0;
        // Both: the file is the fallback of the URL; a file not there yet is awaited.
        assert_eq!(
            PreventionConfig {
                forecast_file: Some("/nonexistent/forecast.csv".into()),
                forecast_url: Some("http://example.org/f.csv".into()),
                ..PreventionConfig::default()
            }
            .validate(),
            Ok(())
        );
        assert_eq!(
            check(PreventionConfig {
                forecast_url: Some("ftp://example.org/f.csv".into()),
                ..PreventionConfig::default()
            }),
            "prevention.forecast_url"
        );
        assert_eq!(
            check(PreventionConfig {
                cold_threshold_c: f64::NAN,
                ..PreventionConfig::default()
            }),
            "prevention.cold_threshold_c"
        );
        assert_eq!(
            check(PreventionConfig {
                visits_per_township_per_day: MAX_CAPACITY + 1,
                ..PreventionConfig::default()
            }),
            "prevention.visits_per_township_per_day"
        );
        assert_eq!(
            check(PreventionConfig {
                poll_every: Duration::from_secs(1),
                ..PreventionConfig::default()
            }),
            "prevention.poll_every"
        );
        assert_eq!(
            check(PreventionConfig {
                indoor_default_c: 11.0,
                ..PreventionConfig::default()
            }),
            "prevention.indoor_default_c"
        );
        let dir = std::env::temp_dir().join(format!("gateway-prevention-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("forecast.csv");
        std::fs::write(&path, "time,township_or_village\n").expect("write");
        let (field, message) = PreventionConfig {
            forecast_file: Some(path.clone()),
            ..PreventionConfig::default()
        }
        .validate()
        .expect_err("bad file");
        assert_eq!(field, "prevention.forecast_file");
        assert!(message.contains(&path.display().to_string()), "{message}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_figures_render_in_the_prometheus_format() {
        let figures = PreventionFigures::default();
        figures.forecast_load("ok");
        figures.forecast_load("invalid");
        figures.order_opened("preventive_visit");
        figures.planned(2, 3);
        let mut text = String::new();
        figures.render(&mut text);
        assert!(text.contains("gateway_prevention_forecast_loads_total{outcome=\"invalid\"} 1\n"));
        assert!(text
            .contains("gateway_prevention_orders_opened_total{category=\"preventive_visit\"} 1\n"));
        assert!(text.contains("gateway_prevention_units_over_capacity 3\n"));
        assert!(text.contains("gateway_prevention_cold_waves 2\n"));
        assert_eq!(figures.forecast_loads("ok"), 1);
    }
}
