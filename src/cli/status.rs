//! `scimsync status`: per target, the last cycle, the next run and what the state knows.
//!
//! The facts are gathered into [`Status`] first, then rendered as text or JSON, so a new fact
//! (quarantine, escrow) is one field and one row.

use super::control::{Ctx, DaemonInfo};
use super::{err, out, EXIT_FATAL, EXIT_OK};
use crate::daemon::{self, CycleFailure};
use crate::engine::{Counts, CycleReport};
use crate::ids::TargetName;
use crate::state::{EscrowEntry, Quarantine, StateError};
use serde::Serialize;

/// Everything `status` shows.
#[derive(Debug, Serialize)]
pub struct Status {
    /// The daemon that answered, or none (the state was opened directly).
    pub daemon: Option<DaemonInfo>,
    pub targets: Vec<TargetStatus>,
}

#[derive(Debug, Serialize)]
pub struct TargetStatus {
    pub name: String,
    pub schedule: String,
    /// When the schedule next fires (RFC 3339, UTC).
    pub next_run: Option<String>,
    pub managed_users: usize,
    pub managed_groups: usize,
    pub last_cycle: Option<CycleReport>,
    /// The last cycle that could not run at all (source unreadable, state error), when it is
    /// more recent than the last cycle.
    pub last_failure: Option<CycleFailure>,
    /// Set while the target is quarantined: scheduled cycles back off until one succeeds.
    pub quarantine: Option<Quarantine>,
    /// Objects whose operation failed and waits for a later attempt.
    pub escrow: Vec<EscrowedObject>,
}

#[derive(Debug, Serialize)]
pub struct EscrowedObject {
    pub object_id: String,
    #[serde(flatten)]
    pub entry: EscrowEntry,
}

impl TargetStatus {
    /// The rows of the text form, label and value.
    fn rows(&self) -> Vec<(&'static str, String)> {
        let counts = |c: &Counts| {
            format!(
                "created {}, updated {}, deprovisioned {}, unchanged {}, skipped {}, failed {}",
                c.created, c.updated, c.deprovisioned, c.unchanged, c.skipped, c.failed
            )
        };
        let mut rows = vec![
            (
                "schedule",
                format!(
                    "{} (next run {})",
                    self.schedule,
                    self.next_run.as_deref().unwrap_or("never")
                ),
            ),
            (
                "managed",
                format!(
                    "{} users, {} groups",
                    self.managed_users, self.managed_groups
                ),
            ),
        ];
        match &self.last_cycle {
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
                rows.push(("  users", counts(&c.users)));
                rows.push(("  groups", counts(&c.groups)));
            }
            None => rows.push(("last cycle", "none yet".into())),
        }
        if let Some(f) = &self.last_failure {
            rows.push(("last failure", format!("{}: {}", f.at, f.error)));
        }
        rows.push((
            "quarantine",
            match &self.quarantine {
                Some(q) => format!(
                    "since {}: {} (next scheduled cycle {})",
                    q.since, q.reason, q.next_cycle
                ),
                None => "no".into(),
            },
        ));
        rows.push(("escrow", format!("{} objects to retry", self.escrow.len())));
        for e in &self.escrow {
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
}

fn gather(ctx: &Ctx) -> Result<Status, StateError> {
    let mut targets = Vec::new();
    for t in &ctx.config.targets {
        let snapshot = ctx.store.snapshot(&TargetName(t.name.clone()))?;
        let last_cycle: Option<CycleReport> = snapshot.meta("last_cycle")?;
        let last_failure: Option<CycleFailure> = snapshot
            .meta::<CycleFailure>(daemon::LAST_FAILURE)?
            .filter(|f| last_cycle.as_ref().is_none_or(|c| f.at > c.started_at));
        let (managed_users, managed_groups) = snapshot.counts()?;
        targets.push(TargetStatus {
            name: t.name.clone(),
            schedule: t.schedule.clone(),
            next_run: daemon::schedule::next_run(&t.schedule, chrono::Utc::now())
                .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            managed_users,
            managed_groups,
            last_cycle,
            last_failure,
            quarantine: snapshot.quarantine()?,
            escrow: snapshot
                .escrow()?
                .into_iter()
                .map(|(id, entry)| EscrowedObject {
                    object_id: id.0,
                    entry,
                })
                .collect(),
        });
    }
    Ok(Status {
        daemon: ctx.daemon.clone(),
        targets,
    })
}

/// Prints the status; exits 0, or 2 when the state cannot be read.
pub fn status(ctx: &Ctx, json: bool) -> i32 {
    let status = match gather(ctx) {
        Ok(s) => s,
        Err(e) => {
            err!("{e}");
            return EXIT_FATAL;
        }
    };
    if json {
        match serde_json::to_string_pretty(&status) {
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
            "daemon: running, pid {}, since {}, control socket {}",
            d.pid,
            d.started_at,
            d.socket.display()
        ),
        None => out!("daemon: not running (the state was read directly)"),
    }
    for t in &status.targets {
        out!("target {:?}:", t.name);
        for (label, value) in t.rows() {
            if label.is_empty() {
                out!("    {value}");
            } else {
                out!("  {label}: {value}");
            }
        }
    }
    EXIT_OK
}
