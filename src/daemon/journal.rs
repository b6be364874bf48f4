//! What the daemon says of a finished cycle: the journal's line and systemd's `STATUS=`.

use crate::engine::{self, CycleReport};
use std::time::Duration;

/// The journal's line for a finished cycle, and a warning for what needs the administrator:
/// held deprovisions, a quarantine begun or lifted. Each object not in step is a debug record
/// (the provisioning log and `status` keep them).
pub(super) fn log_cycle(r: &CycleReport, took: Duration, schedule: &str) {
    let next = crate::schedule::next_run(schedule, chrono::Utc::now())
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "never".into());
    let next = match &r.quarantine {
        Some(q) => q.next_cycle.clone(),
        None => next,
    };
    let counts = |c: &engine::Counts| {
        format!(
            "+{} ~{} -{} ={} skipped {} failed {}",
            c.created, c.updated, c.deprovisioned, c.unchanged, c.skipped, c.failed
        )
    };
    // The counts are in the message itself: the journal shows a message, not its fields.
    tracing::info!(target: "scimsync::daemon", target_name = %r.target,
        "Cycle finished: users {}; groups {}; {} requests; {} not in step; {:.1} s; next run {next}.",
        counts(&r.users),
        counts(&r.groups),
        r.requests,
        r.problems.len(),
        took.as_secs_f64(),
    );
    for p in &r.problems {
        tracing::debug!(target: "scimsync::daemon", target_name = %r.target, problem = %crate::text::escape(p), "Not in step.");
    }
    for hold in &r.held_clears {
        tracing::warn!(target: "scimsync::daemon", target_name = %r.target, "Clears held: {hold}; run `scimsync sync --allow-clears --target {}` to clear it.", r.target);
    }
    if let Some(hold) = &r.hold {
        tracing::warn!(target: "scimsync::daemon", target_name = %r.target, held = r.held, "Deprovisions held: {hold}; run `scimsync sync --allow-deletes --target {}` to carry them out.", r.target);
    }
    match (&r.quarantined_before, &r.quarantine) {
        (None, Some(q)) => {
            tracing::warn!(target: "scimsync::daemon", target_name = %r.target, reason = %crate::text::escape(&q.reason), next_cycle = %q.next_cycle, "Target quarantined.")
        }
        (Some(_), None) => {
            tracing::info!(target: "scimsync::daemon", target_name = %r.target, "Quarantine lifted after a successful cycle.")
        }
        _ => {}
    }
}

/// The one-line summary of a cycle for `STATUS=`.
pub(super) fn summary(r: &CycleReport) -> String {
    format!(
        "{} users +{} ~{} -{} ={}, groups +{} ~{} -{} ={}, {} requests, {} problems",
        r.started_at,
        r.users.created,
        r.users.updated,
        r.users.deprovisioned,
        r.users.unchanged,
        r.groups.created,
        r.groups.updated,
        r.groups.deprovisioned,
        r.groups.unchanged,
        r.requests,
        r.problems.len()
    )
}
