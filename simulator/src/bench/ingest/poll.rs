//! [`poll_until`]: how the ingest bench waits for anything (a listener, statuses taken in, the
//! load handled and written, a relay's last message): a condition checked at an interval until
//! it holds or the wait's patience runs out. No wait is a sleep standing in for a condition.

use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use super::options::IngestError;

/// How long [`poll_until`] waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Patience {
    /// At most this long after the wait began.
    Total(Duration),
    /// Until the check reported no progress ([`Wait::progress`]) for this long: a target that
    /// keeps moving is waited for, one that stopped is given up on.
    Stall(Duration),
}

/// What a check tells [`poll_until`] besides its result: how far the awaited thing got.
#[derive(Debug, Default)]
pub(super) struct Wait {
    figures: Vec<u64>,
    moved: bool,
    seen: String,
}

impl Wait {
    /// Counts that change while the awaited thing moves; under [`Patience::Stall`] the wait
    /// restarts its patience whenever they change.
    pub(super) fn progress(&mut self, figures: &[u64]) {
        if self.figures != figures {
            self.figures = figures.to_vec();
            self.moved = true;
        }
    }

    /// Where the awaited thing stands, in words: the error says it if the wait runs out.
    pub(super) fn seen(&mut self, text: String) {
        self.seen = text;
    }
}

/// When a wait gives up.
#[derive(Debug)]
struct Deadline {
    patience: Patience,
    since: Instant,
}

impl Deadline {
    fn new(patience: Patience, now: Instant) -> Deadline {
        Deadline {
            patience,
            since: now,
        }
    }

    /// Whether the patience ran out at `now`; `moved` restarts a stall's patience.
    fn expired(&mut self, now: Instant, moved: bool) -> bool {
        let limit = match self.patience {
            Patience::Total(limit) => limit,
            Patience::Stall(limit) => {
                if moved {
                    self.since = now;
                }
                limit
            }
        };
        now.saturating_duration_since(self.since) >= limit
    }

    fn describe(&self) -> String {
        match self.patience {
            Patience::Total(limit) => format!("within {limit:?}"),
            Patience::Stall(limit) => format!("(no progress for {limit:?})"),
        }
    }
}

/// Runs `check` every `every` (the first time at once) until it returns `Some`, and returns
/// that. An error of `check` ends the wait with it; when the patience runs out the error is
/// [`IngestError::TimedOut`], naming `what` was awaited and what the check last
/// [`Wait::seen`].
pub(super) async fn poll_until<T>(
    what: &str,
    every: Duration,
    patience: Patience,
    mut check: impl AsyncFnMut(&mut Wait) -> Result<Option<T>, IngestError>,
) -> Result<T, IngestError> {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut wait = Wait::default();
    let mut deadline = Deadline::new(patience, Instant::now());
    loop {
        tick.tick().await;
        if let Some(done) = check(&mut wait).await? {
            return Ok(done);
        }
        let moved = std::mem::take(&mut wait.moved);
        if deadline.expired(Instant::now(), moved) {
            let seen = if wait.seen.is_empty() {
                String::new()
            } else {
                format!("; last seen: {}", wait.seen)
            };
            return Err(IngestError::TimedOut(format!(
                "gave up waiting for {what} {}{seen}",
                deadline.describe()
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_total_deadline_ignores_progress_and_a_stall_restarts_on_it() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut total = Deadline::new(Patience::Total(ms(150)), t0);
        assert!(!total.expired(t0 + ms(100), true));
        assert!(
            total.expired(t0 + ms(160), true),
            "progress does not extend it"
        );

        let mut stall = Deadline::new(Patience::Stall(ms(150)), t0);
        assert!(!stall.expired(t0 + ms(100), true));
        assert!(
            !stall.expired(t0 + ms(200), false),
            "150 ms from the progress"
        );
        assert!(!stall.expired(t0 + ms(240), false));
        assert!(stall.expired(t0 + ms(250), false));
    }

    #[tokio::test]
    async fn a_wait_returns_the_checks_result_once_it_holds() {
        let mut calls = 0;
        let got = poll_until(
            "the third call",
            Duration::from_millis(1),
            Patience::Total(Duration::from_secs(60)),
            async |_| {
                calls += 1;
                Ok((calls == 3).then_some(calls))
            },
        )
        .await
        .expect("done");
        assert_eq!(got, 3);
    }

    #[tokio::test]
    async fn a_wait_that_runs_out_names_what_it_awaited_and_where_it_stood() {
        let error = poll_until(
            "the load to be handled",
            Duration::from_millis(1),
            Patience::Stall(Duration::from_millis(20)),
            async |wait| {
                wait.progress(&[7]);
                wait.seen("7 of 10 handled".to_owned());
                Ok(None::<()>)
            },
        )
        .await
        .expect_err("runs out");
        let text = error.to_string();
        assert!(matches!(error, IngestError::TimedOut(_)), "{text}");
        assert!(text.contains("the load to be handled"), "{text}");
        assert!(text.contains("no progress for 20ms"), "{text}");
        assert!(text.contains("last seen: 7 of 10 handled"), "{text}");
    }

    #[tokio::test]
    async fn an_error_of_the_check_ends_the_wait_with_it() {
        let error = poll_until(
            "a gateway that died",
            Duration::from_millis(1),
            Patience::Total(Duration::from_secs(60)),
            async |_| Err::<Option<()>, _>(IngestError::Gateway("exited".to_owned())),
        )
        .await
        .expect_err("fails");
        assert!(matches!(error, IngestError::Gateway(_)), "{error}");
    }
}
