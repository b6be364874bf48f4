//! Escrow: operations that failed, kept per target so that later cycles retry them with
//! growing delays, and so that `status` can show what is stuck and why.
//!
//! One sled tree per target (`escrow/<target>`), keyed by source id (unique across users and
//! groups). An entry is cleared as soon as an operation on that object succeeds.

use super::{all, decode, encode, Snapshot, StateError};
use crate::ids::SourceId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The longest wait between two attempts on one object.
pub const MAX_DELAY_SECONDS: i64 = 24 * 3600;
/// The wait after the second failure; it doubles with each further failure.
pub const BASE_DELAY_SECONDS: i64 = 60;

/// One object whose last operation failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscrowEntry {
    /// `user` or `group`.
    pub kind: String,
    /// Failed attempts in a row (one per cycle that tried it).
    pub attempts: u32,
    pub last_error: String,
    /// RFC 3339.
    pub first_failed: String,
    pub last_failed: String,
    /// Not tried before this time (RFC 3339).
    pub next_attempt: String,
}

impl EscrowEntry {
    /// Whether the next attempt is still in the future at `now`.
    pub fn deferred_at(&self, now: DateTime<Utc>) -> bool {
        DateTime::parse_from_rfc3339(&self.next_attempt).is_ok_and(|t| t > now)
    }
}

/// The wait after `attempts` failures in a row: the next cycle may retry after the first
/// failure (a passing blip costs nothing); then 1 min, 2 min, 4 min … up to a day.
pub fn delay(attempts: u32) -> chrono::Duration {
    if attempts <= 1 {
        return chrono::Duration::zero();
    }
    let exp = (attempts - 2).min(20);
    let secs = BASE_DELAY_SECONDS.saturating_mul(1i64 << exp);
    chrono::Duration::seconds(secs.min(MAX_DELAY_SECONDS))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Snapshot {
    /// Every object in escrow, by source id.
    pub fn escrow(&self) -> Result<BTreeMap<SourceId, EscrowEntry>, StateError> {
        all(self.escrow.as_ref())
    }

    pub fn escrow_entry(&self, id: &SourceId) -> Result<Option<EscrowEntry>, StateError> {
        let key = id.as_str().as_bytes();
        self.escrow
            .get(key)?
            .map(|v| decode(self.escrow.as_ref(), key, &v))
            .transpose()
    }

    /// Records one more failed attempt on an object; returns the updated entry.
    pub fn escrow_failure(
        &self,
        id: &SourceId,
        kind: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<EscrowEntry, StateError> {
        let previous = self.escrow_entry(id)?;
        let attempts = previous
            .as_ref()
            .map_or(0, |e| e.attempts)
            .saturating_add(1);
        let entry = EscrowEntry {
            kind: kind.to_owned(),
            attempts,
            last_error: error.to_owned(),
            first_failed: previous.map_or_else(|| rfc3339(now), |e| e.first_failed),
            last_failed: rfc3339(now),
            next_attempt: rfc3339(now + delay(attempts)),
        };
        self.escrow
            .insert(id.as_str().as_bytes(), encode(&entry)?)?;
        Ok(entry)
    }

    /// Forgets an object's failures after an operation on it succeeded.
    pub fn escrow_clear(&self, id: &SourceId) -> Result<(), StateError> {
        self.escrow.remove(id.as_str().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TargetName;
    use crate::state::Store;

    #[test]
    fn delays_grow_from_the_next_cycle_to_a_day() {
        assert_eq!(delay(1).num_seconds(), 0);
        assert_eq!(delay(2).num_seconds(), 60);
        assert_eq!(delay(3).num_seconds(), 120);
        assert_eq!(delay(6).num_seconds(), 960);
        assert_eq!(delay(40).num_seconds(), MAX_DELAY_SECONDS);
    }

    #[test]
    fn failures_accumulate_and_success_clears() {
        let store = Store::in_memory();
        let snap = store.snapshot(&TargetName::from("t")).expect("snapshot");
        let id = SourceId::from("u1");
        let t0 = Utc::now();
        let e = snap
            .escrow_failure(&id, "user", "500 boom", t0)
            .expect("put");
        assert_eq!(e.attempts, 1);
        assert!(!e.deferred_at(t0));
        let e = snap
            .escrow_failure(&id, "user", "503 busy", t0)
            .expect("put");
        assert_eq!((e.attempts, e.last_error.as_str()), (2, "503 busy"));
        assert!(e.deferred_at(t0));
        assert!(!e.deferred_at(t0 + chrono::Duration::seconds(61)));
        assert_eq!(snap.escrow().expect("escrow").len(), 1);
        snap.escrow_clear(&id).expect("clear");
        assert!(snap.escrow().expect("escrow").is_empty());
    }
}
