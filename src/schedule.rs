//! Cron schedules: when a target's next cycle is due.
//!
//! Cron gives wall-clock times; the scheduler sleeps on tokio's clock for the distance to
//! them, so tests can pause and advance time.

use chrono::{DateTime, Utc};
use std::str::FromStr;
use std::time::Duration;

/// The first time `expression` fires strictly after `after`; none when it never fires again
/// or does not parse (the configuration was validated, so only a reload race gets here).
pub(crate) fn next_run(expression: &str, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron::Schedule::from_str(expression)
        .ok()?
        .after(&after)
        .next()
}

/// How long from `now` until `at` (zero when it is past).
pub(crate) fn delay(at: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (at - now).to_std().unwrap_or(Duration::ZERO)
}

/// The interval between two runs of a cron schedule, in seconds (40 minutes when unknown).
pub(crate) fn interval_seconds(schedule: &str) -> u64 {
    let fallback = 2400;
    let Ok(s) = cron::Schedule::from_str(schedule) else {
        return fallback;
    };
    let mut next = s.upcoming(Utc);
    match (next.next(), next.next()) {
        (Some(a), Some(b)) => u64::try_from((b - a).num_seconds())
            .unwrap_or(fallback)
            .max(1),
        _ => fallback,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn every_two_seconds_fires_on_the_next_even_second() {
        let now = t("2026-11-23T16:00:01.500Z");
        let at = next_run("*/2 * * * * *", now).expect("fires");
        assert_eq!(at, t("2026-11-23T16:00:02Z"));
        assert_eq!(delay(at, now), Duration::from_millis(500));
        // Strictly after: a tick that just fired is not due again.
        assert_eq!(
            next_run("*/2 * * * * *", at),
            Some(t("2026-11-23T16:00:04Z"))
        );
    }

    #[test]
    fn every_forty_minutes_and_past_times() {
        let now = t("2026-11-23T16:41:00Z");
        assert_eq!(
            next_run("0 */40 * * * *", now),
            Some(t("2026-11-23T17:00:00Z"))
        );
        assert_eq!(delay(t("2026-11-23T16:00:00Z"), now), Duration::ZERO);
        assert_eq!(next_run("not cron", now), None);
    }

    #[test]
    fn the_interval_between_two_runs() {
        assert_eq!(interval_seconds("0 */40 * * * *") % 1200, 0);
        assert_eq!(interval_seconds("*/5 * * * * *"), 5);
    }
}
