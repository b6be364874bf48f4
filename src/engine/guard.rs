//! The guards of a cycle: the source-outage guard that refuses to plan from a read that looks
//! like an outage, and the quarantine of a target that rejects the credentials or fails most
//! operations. (The deletion threshold lives in the planner: [`crate::plan::PlanOptions`].)

use super::EngineError;
use crate::config::TargetConfig;
use crate::source::Directory;
use crate::state::{Quarantine, Snapshot, StateError};
use chrono::{DateTime, Utc};

/// Why the source-outage guard refused to plan.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum OutageGuard {
    #[error("the source returned no users, while the last good read had {last} and {managed} accounts are managed; \
             an empty directory is never taken as everyone having left, so nothing was planned")]
    Empty { last: usize, managed: usize },
    #[error("the source returned {got} users, fewer than min_source_ratio = {min_ratio} of the {last} of the last good read; \
             nothing was planned. If the directory really shrank, lower [source] min_source_ratio for one run")]
    Shrank {
        got: usize,
        min_ratio: f64,
        last: usize,
    },
}

/// Refuses to plan from a read that looks like an outage rather than a directory: no users
/// while accounts are managed, or fewer than `min_ratio` of the last good read.
pub(crate) fn outage_guard(
    dir: &Directory,
    snapshot: &Snapshot,
    min_ratio: f64,
) -> Result<(), EngineError> {
    let got = dir.users.len();
    let last: usize = snapshot.meta("last_good_users")?.unwrap_or(0);
    if got == 0 {
        let managed = snapshot.counts()?.0;
        if managed > 0 || last > 0 {
            return Err(OutageGuard::Empty { last, managed }.into());
        }
        return Ok(());
    }
    if last > 0 && (got as f64) < min_ratio * last as f64 {
        return Err(OutageGuard::Shrank {
            got,
            min_ratio,
            last,
        }
        .into());
    }
    Ok(())
}

/// Whether the daemon may run a scheduled cycle of this target now; a hand-run `sync` always
/// runs.
pub(crate) fn scheduled_cycle_allowed(
    snapshot: &Snapshot,
    now: DateTime<Utc>,
) -> Result<bool, StateError> {
    Ok(snapshot
        .quarantine()?
        .is_none_or(|q| q.allows_cycle_at(now)))
}

/// Why a finished cycle puts its target in quarantine, if it does.
pub(crate) fn quarantine_reason(
    target: &TargetConfig,
    halted: Option<&crate::scim::Halt>,
    attempted: usize,
    failed: usize,
) -> Option<String> {
    if let Some(halt) = halted {
        return Some(halt.to_string());
    }
    let ratio = if attempted == 0 {
        0.0
    } else {
        failed as f64 / attempted as f64
    };
    (attempted >= target.quarantine_min_operations
        && attempted > 0
        && ratio >= target.quarantine_failure_ratio)
        .then(|| {
            format!(
                "{failed} of {attempted} operations failed, at least quarantine_failure_ratio = {}",
                target.quarantine_failure_ratio
            )
        })
}

/// Records the verdict of a finished cycle: quarantine (or extend it), or lift it.
pub(crate) fn judge(
    snapshot: &Snapshot,
    target: &TargetConfig,
    reason: Option<String>,
    now: DateTime<Utc>,
) -> Result<Option<Quarantine>, StateError> {
    match reason {
        Some(why) => {
            let interval = crate::schedule::interval_seconds(&target.schedule);
            Ok(Some(snapshot.set_quarantine(&why, interval, now)?))
        }
        None => {
            if snapshot.quarantine()?.is_some() {
                snapshot.lift_quarantine()?;
            }
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{SourceId, TargetName};
    use crate::source::SourceObject;
    use crate::state::Store;

    fn dir(n: usize) -> Directory {
        Directory {
            users: (0..n)
                .map(|i| SourceObject::new(SourceId(format!("u{i}"))))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn outage_guard_names_both_counts_and_the_key() {
        let store = Store::in_memory();
        let snap = store.snapshot(&TargetName::from("t")).expect("snapshot");
        assert!(
            outage_guard(&dir(0), &snap, 0.5).is_ok(),
            "a first run may be empty"
        );
        snap.set_meta("last_good_users", &100usize).expect("meta");
        let e = outage_guard(&dir(49), &snap, 0.5).expect_err("guard");
        let msg = e.to_string();
        assert!(msg.contains("returned 49 users"), "{msg}");
        assert!(msg.contains("of the 100 of the last good read"), "{msg}");
        assert!(msg.contains("min_source_ratio = 0.5"), "{msg}");
        assert!(outage_guard(&dir(50), &snap, 0.5).is_ok());
        assert!(outage_guard(&dir(1), &snap, 0.0).is_ok());
        assert!(
            outage_guard(&dir(0), &snap, 0.0).is_err(),
            "empty is always refused"
        );
    }

    #[test]
    fn quarantine_on_auth_or_a_high_failure_share() {
        let t: TargetConfig = crate::target::parse(
            std::path::Path::new("x.toml"),
            "[source]\nkind = \"json\"\npath = \"d.json\"\n[scope]\nall = true\n[[target]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/v2\"\ntoken_env = \"T\"\n",
        )
        .expect("valid")
        .targets
        .remove(0);
        let refused = crate::scim::Halt::Credentials("401".into());
        assert_eq!(
            quarantine_reason(&t, Some(&refused), 1, 1).as_deref(),
            Some("the target rejected the credentials (401)")
        );
        assert!(
            quarantine_reason(&t, None, 9, 9).is_none(),
            "under the minimum"
        );
        assert!(quarantine_reason(&t, None, 10, 4).is_none());
        let why = quarantine_reason(&t, None, 10, 5).expect("quarantined");
        assert!(why.starts_with("5 of 10 operations failed"), "{why}");
    }
}
