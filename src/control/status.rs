//! `status`: per target, the last cycle, the next run and what the state knows, gathered
//! into one value that the command line renders as text or JSON.

use super::{Ctx, DaemonInfo};
use crate::engine::CycleReport;
use crate::ids::TargetName;
use crate::state::{EscrowEntry, Quarantine, StateError};
use serde::{Deserialize, Serialize};

/// Meta key of the last cycle that could not run at all.
pub(crate) const LAST_FAILURE: &str = "last_failure";

/// A cycle that failed before any plan (source unreadable, state error, guard).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CycleFailure {
    pub(crate) at: String,
    pub(crate) error: String,
}

/// Everything `status` shows.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Status {
    /// The daemon that answered, or none (the state was opened directly).
    pub(crate) daemon: Option<DaemonInfo>,
    pub(crate) targets: Vec<TargetStatus>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TargetStatus {
    pub(crate) name: String,
    pub(crate) schedule: String,
    /// When the daemon runs the next cycle (RFC 3339, UTC); none when no daemon runs.
    pub(crate) next_run: Option<String>,
    pub(crate) managed_users: usize,
    pub(crate) managed_groups: usize,
    pub(crate) last_cycle: Option<CycleReport>,
    /// The last cycle that could not run at all (source unreadable, state error), when it is
    /// more recent than the last cycle.
    pub(crate) last_failure: Option<CycleFailure>,
    /// Set while the target is quarantined: scheduled cycles back off until one succeeds.
    pub(crate) quarantine: Option<Quarantine>,
    /// Objects whose operation failed and waits for a later attempt.
    pub(crate) escrow: Vec<EscrowedObject>,
    /// Several instances: the instance holding the target's lease (or that last held it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) owner: Option<Owner>,
}

/// A target's lease, for `status`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Owner {
    pub(crate) instance: String,
    pub(crate) epoch: i64,
    /// RFC 3339: when the lease ends unless renewed.
    pub(crate) lease_until: String,
    /// False once the lease expired (its owner stopped or died) or was given back.
    pub(crate) live: bool,
}

/// Every target's status, with its owner when several instances share the state.
pub(crate) async fn gather_all(ctx: &Ctx) -> Result<Status, StateError> {
    let mut status = gather(ctx)?;
    if ctx.store.shared() {
        let leases = ctx.store.leases().await?;
        for t in &mut status.targets {
            t.owner = leases.iter().find(|l| l.target == t.name).map(|l| Owner {
                instance: l.owner.clone(),
                epoch: l.epoch,
                lease_until: l.expires_at.clone(),
                live: l.live,
            });
        }
    }
    Ok(status)
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct EscrowedObject {
    pub(crate) object_id: String,
    #[serde(flatten)]
    pub(crate) entry: EscrowEntry,
}

/// Reads every target's status from the state.
fn gather(ctx: &Ctx) -> Result<Status, StateError> {
    let mut targets = Vec::new();
    for t in &ctx.config.targets {
        let snapshot = ctx.store.snapshot(&TargetName(t.name.clone()))?;
        let last_cycle: Option<CycleReport> = snapshot.meta("last_cycle")?;
        let last_failure: Option<CycleFailure> = snapshot
            .meta::<CycleFailure>(LAST_FAILURE)?
            .filter(|f| last_cycle.as_ref().is_none_or(|c| f.at > c.started_at));
        let (managed_users, managed_groups) = snapshot.counts()?;
        let quarantine = snapshot.quarantine()?;
        // Only a running daemon has a next run; a quarantine pushes it to the back-off's end.
        let next_run = ctx.daemon.as_ref().and_then(|_| {
            let now = chrono::Utc::now();
            let mut at = crate::schedule::next_run(&t.schedule, now)?;
            if let Some(q) = &quarantine {
                while !q.allows_cycle_at(at) {
                    at = crate::schedule::next_run(&t.schedule, at)?;
                }
            }
            Some(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        });
        targets.push(TargetStatus {
            name: t.name.clone(),
            schedule: t.schedule.clone(),
            next_run,
            managed_users,
            managed_groups,
            last_cycle,
            last_failure,
            quarantine,
            escrow: snapshot
                .escrow()?
                .into_iter()
                .map(|(id, entry)| EscrowedObject {
                    object_id: id.0,
                    entry,
                })
                .collect(),
            owner: None,
        });
    }
    Ok(Status {
        daemon: ctx.daemon.clone(),
        targets,
    })
}
