//! Quarantine: a target that rejects scimsync's credentials, or fails most operations, is
//! set aside; its scheduled cycles back off until a cycle succeeds again.
//!
//! Stored in the target's meta tree under `quarantine`, so `status` can read it.

use super::{Snapshot, StateError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

const KEY: &str = "quarantine";
/// Quarantined cycles never come less often than once a day.
pub const MAX_INTERVAL_SECONDS: u64 = 24 * 3600;

/// Why and since when a target is quarantined, and when its next scheduled cycle may run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quarantine {
    pub reason: String,
    /// RFC 3339: when the quarantine began.
    pub since: String,
    /// Cycles that ended quarantined in a row.
    pub cycles: u32,
    /// The current back-off between scheduled cycles.
    pub interval_seconds: u64,
    /// RFC 3339: the daemon runs no scheduled cycle before this.
    pub next_cycle: String,
}

impl Quarantine {
    /// Whether a scheduled (not hand-run) cycle may run at `now`.
    pub fn allows_cycle_at(&self, now: DateTime<Utc>) -> bool {
        DateTime::parse_from_rfc3339(&self.next_cycle).map_or(true, |t| t <= now)
    }
}

impl Snapshot {
    /// The target's quarantine, if it is quarantined.
    pub fn quarantine(&self) -> Result<Option<Quarantine>, StateError> {
        self.meta(KEY)
    }

    /// Quarantines the target (or extends its quarantine): the back-off doubles from twice
    /// the schedule's interval, up to a day.
    pub fn set_quarantine(
        &self,
        reason: &str,
        schedule_interval_seconds: u64,
        now: DateTime<Utc>,
    ) -> Result<Quarantine, StateError> {
        let previous = self.quarantine()?;
        let base = schedule_interval_seconds.max(1);
        let interval = previous
            .as_ref()
            .map_or(base, |q| q.interval_seconds)
            .saturating_mul(2)
            .min(MAX_INTERVAL_SECONDS);
        let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let next = now + chrono::Duration::seconds(i64::try_from(interval).unwrap_or(i64::MAX));
        let q = Quarantine {
            reason: reason.to_owned(),
            since: previous
                .as_ref()
                .map_or_else(|| fmt(now), |q| q.since.clone()),
            cycles: previous.map_or(0, |q| q.cycles).saturating_add(1),
            interval_seconds: interval,
            next_cycle: fmt(next),
        };
        self.set_meta(KEY, &q)?;
        Ok(q)
    }

    /// Lifts the quarantine after a successful cycle.
    pub fn lift_quarantine(&self) -> Result<(), StateError> {
        self.meta.remove(KEY.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use crate::ids::TargetName;
    use crate::state::Store;
    use chrono::Utc;

    #[test]
    fn backoff_doubles_up_to_a_day_and_a_success_lifts_it() {
        let store = Store::in_memory();
        let snap = store.snapshot(&TargetName::from("t")).expect("snapshot");
        let now = Utc::now();
        let q = snap.set_quarantine("401", 2400, now).expect("set");
        assert_eq!((q.interval_seconds, q.cycles), (4800, 1));
        assert!(!q.allows_cycle_at(now));
        assert!(q.allows_cycle_at(now + chrono::Duration::seconds(4800)));
        let q2 = snap.set_quarantine("401", 2400, now).expect("set");
        assert_eq!((q2.interval_seconds, q2.cycles), (9600, 2));
        assert_eq!(q2.since, q.since);
        for _ in 0..10 {
            snap.set_quarantine("401", 2400, now).expect("set");
        }
        assert_eq!(
            snap.quarantine()
                .expect("get")
                .expect("some")
                .interval_seconds,
            super::MAX_INTERVAL_SECONDS
        );
        snap.lift_quarantine().expect("lift");
        assert!(snap.quarantine().expect("get").is_none());
    }
}
