//! `scimsync status` rendered: per target, the last cycle, the next run and what the state
//! knows, as text or JSON.

use super::{err, out, EXIT_FATAL, EXIT_OK};
use crate::control::status::{Status, TargetStatus};
use crate::engine::Counts;

/// The rows of the text form, label and value.
fn rows(t: &TargetStatus) -> Vec<(&'static str, String)> {
    let counts = |c: &Counts| {
        format!(
            "created {}, updated {}, deprovisioned {}, unchanged {}, skipped {}, failed {}",
            c.created, c.updated, c.deprovisioned, c.unchanged, c.skipped, c.failed
        )
    };
    let mut rows = Vec::new();
    if let Some(o) = &t.owner {
        rows.push((
            "owner",
            if o.live {
                format!("{} (lease epoch {}, until {})", o.instance, o.epoch, o.lease_until)
            } else {
                format!(
                    "none: the lease of {} (epoch {}) ended; a live instance takes the target within a third of lease_seconds",
                    o.instance, o.epoch
                )
            },
        ));
    }
    rows.extend([
        (
            "schedule",
            match &t.next_run {
                Some(at) => format!("{} (next run {at})", t.schedule),
                None => format!("{} (no daemon runs it)", t.schedule),
            },
        ),
        (
            "managed",
            format!("{} users, {} groups", t.managed_users, t.managed_groups),
        ),
    ]);
    match &t.last_cycle {
        Some(c) => {
            rows.push((
                "last cycle",
                format!(
                    "{}, {} requests, {} problems{}",
                    c.started_at,
                    c.requests,
                    c.problems.len(),
                    if c.held > 0 {
                        format!(", {} deprovisions held", c.held)
                    } else {
                        String::new()
                    }
                ),
            ));
            for hold in &c.held_clears {
                rows.push(("  held", hold.to_string()));
            }
            rows.push(("  users", counts(&c.users)));
            rows.push(("  groups", counts(&c.groups)));
        }
        None => rows.push(("last cycle", "none yet".into())),
    }
    if let Some(f) = &t.last_failure {
        rows.push(("last failure", format!("{}: {}", f.at, f.error)));
    }
    rows.push((
        "quarantine",
        match &t.quarantine {
            Some(q) => format!(
                "since {}: {} (next scheduled cycle {})",
                q.since,
                crate::text::escape(&q.reason),
                q.next_cycle
            ),
            None => "no".into(),
        },
    ));
    rows.push(("escrow", format!("{} objects to retry", t.escrow.len())));
    for e in &t.escrow {
        rows.push((
            "",
            format!(
                "{} {}: {} failed attempts, next at {}; last error: {}",
                e.entry.kind,
                e.object_id,
                e.entry.attempts,
                e.entry.next_attempt,
                e.entry.last_error
            ),
        ));
    }
    rows
}

/// Prints the status as text or JSON.
pub(super) fn render(status: &Status, json: bool) -> i32 {
    if json {
        match serde_json::to_string_pretty(status) {
            Ok(text) => out!("{text}"),
            Err(e) => {
                err!("status: {e}");
                return EXIT_FATAL;
            }
        }
        return EXIT_OK;
    }
    match &status.daemon {
        Some(d) => out!(
            "daemon: running, pid {}, since {}, control socket {}{}",
            d.pid,
            d.started_at,
            d.socket.display(),
            d.instance
                .as_ref()
                .map(|i| format!(", instance {}", crate::text::escape(i)))
                .unwrap_or_default()
        ),
        None => out!("daemon: not running (the state was read directly)"),
    }
    for t in &status.targets {
        out!("target {:?}:", t.name);
        for (label, value) in rows(t) {
            let value = crate::text::escape(&value);
            if label.is_empty() {
                out!("    {value}");
            } else {
                out!("  {label}: {value}");
            }
        }
    }
    EXIT_OK
}
