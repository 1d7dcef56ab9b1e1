//! The checks serde cannot make: shares within 0..1, rates >= 0, the telemetry interval, the
//! partial leak above its switch, the channel weights, scripted events; each error names the
//! file, line and field.

use std::time::Duration;

use wire::diagnostics;

use super::events::EventKind;
use super::kinds::{FaultKind, TrapKind};
use super::{Mix, MixError};

/// Where a mix came from, to place its errors.
struct Source<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Source<'_> {
    /// An error on `field` (a dotted path), placed at its line and column.
    fn invalid(&self, field: &str, message: String) -> MixError {
        MixError::Invalid {
            place: format!(
                "{} field `{field}`",
                diagnostics::place(self.origin, self.text, field)
            ),
            message,
        }
    }

    /// `value` must be a share between 0 and 1.
    fn share(&self, field: &str, value: f64) -> Result<(), MixError> {
        if (0.0..=1.0).contains(&value) {
            Ok(())
        } else {
            Err(self.invalid(field, format!("{value} is not a share between 0 and 1")))
        }
    }
}

impl Mix {
    /// Checks the parsed mix; `text` and `origin` place the first error found.
    pub(super) fn validate(&self, text: &str, origin: &str) -> Result<(), MixError> {
        let source = Source { text, origin };
        self.validate_telemetry(&source)?;
        self.validate_shares(&source)?;
        self.validate_limits(&source)?;
        self.validate_rates(&source)?;
        self.validate_events(&source)
    }

    /// The publishing interval: 10 s to 10 min, a whole multiple of the model step.
    fn validate_telemetry(&self, source: &Source) -> Result<(), MixError> {
        let interval = self.telemetry.interval;
        if interval < Duration::from_secs(10) || interval > Duration::from_secs(600) {
            return Err(source.invalid("telemetry.interval", "must be between 10s and 10m".into()));
        }
        if interval.as_millis() % 10_000 != 0 {
            return Err(source.invalid(
                "telemetry.interval",
                "must be a whole multiple of the 10 s model step".into(),
            ));
        }
        Ok(())
    }

    /// Every share between 0 and 1.
    fn validate_shares(&self, source: &Source) -> Result<(), MixError> {
        source.share("fleet.night_setback_share", self.fleet.night_setback_share)?;
        source.share("residents.never_calls", self.residents.never_calls)?;
        source.share(
            "residents.vulnerable_never_calls",
            self.residents.vulnerable_never_calls,
        )?;
        source.share(
            "residents.fast_caller_share",
            self.residents.fast_caller_share,
        )?;
        source.share(
            "residents.night_call_share",
            self.residents.night_call_share,
        )?;
        source.share("overlap_share", self.overlap_share)?;
        source.share(
            "faults.gas_pressure_drop.sinking_share",
            self.faults.gas_pressure_drop.sinking_share,
        )
    }

    /// Where a partial leak settles, the channel weights, technicians per household.
    fn validate_limits(&self, source: &Source) -> Result<(), MixError> {
        let settles = self.faults.refrigerant_loss_partial.settles_at;
        if settles.min < 0.6 || settles.max > 1.0 {
            return Err(source.invalid(
                "faults.refrigerant_loss_partial.settles_at",
                "must lie within [0.6, 1.0]: a partial loss stays above the low-pressure switch"
                    .into(),
            ));
        }
        let weights = self.residents.channels.entries();
        if weights.iter().any(|(_, w)| !(w.is_finite() && *w >= 0.0))
            || weights.iter().map(|(_, w)| w).sum::<f64>() <= 0.0
        {
            return Err(source.invalid(
                "residents.channels",
                "weights must be >= 0 and at least one above 0".into(),
            ));
        }
        if self.technicians.households_per_technician == 0 {
            return Err(source.invalid(
                "technicians.households_per_technician",
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Every fault and event-trap rate finite and >= 0.
    fn validate_rates(&self, source: &Source) -> Result<(), MixError> {
        for kind in FaultKind::ALL {
            let rate = self.faults.rate(kind);
            if !(rate.is_finite() && rate >= 0.0) {
                return Err(source.invalid(
                    &format!("faults.{}.rate", kind.as_str()),
                    format!("{rate} is not a rate >= 0"),
                ));
            }
        }
        for kind in TrapKind::EVENTS {
            let rate = self.traps.rate(kind);
            if !(rate.is_finite() && rate >= 0.0) {
                return Err(source.invalid(
                    &format!("traps.{}.rate", kind.as_str()),
                    format!("{rate} is not a rate >= 0"),
                ));
            }
        }
        Ok(())
    }

    /// Scripted events: no fleet habit as an event, a speed >= 0.
    fn validate_events(&self, source: &Source) -> Result<(), MixError> {
        for (index, event) in self.events.iter().enumerate() {
            if matches!(
                event.kind,
                EventKind::Trap(TrapKind::NightSetback | TrapKind::Defrost)
            ) {
                return Err(source.invalid(
                    &format!("event[{index}].kind"),
                    "night_setback and defrost are fleet habits, not events".into(),
                ));
            }
            if event.speed.is_some_and(|s| !(s.is_finite() && s >= 0.0)) {
                return Err(source.invalid(
                    &format!("event[{index}].speed"),
                    "must be a number >= 0".into(),
                ));
            }
        }
        Ok(())
    }
}
