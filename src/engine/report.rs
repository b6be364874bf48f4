//! What a cycle reports: the counts per kind, the problems one line each, the requests, the
//! escrow and quarantine; and what became of each operation ([`Outcome`]).

use crate::audit::Kind;
use crate::ids::SourceId;
use crate::plan::{GroupOp, Hold, UserOp};
use crate::state::Quarantine;
use serde::{Deserialize, Serialize};

/// What happened to the objects of one kind in a cycle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Counts {
    pub(crate) created: usize,
    pub(crate) updated: usize,
    pub(crate) deprovisioned: usize,
    pub(crate) unchanged: usize,
    pub(crate) skipped: usize,
    pub(crate) failed: usize,
}

/// The summary of one cycle of one target.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct CycleReport {
    pub(crate) target: String,
    pub(crate) cycle_id: String,
    pub(crate) started_at: String,
    pub(crate) dry_run: bool,
    pub(crate) users: Counts,
    pub(crate) groups: Counts,
    /// Deprovisions held back by the deletion threshold.
    pub(crate) held: usize,
    /// Why they were held (which guard and threshold), when some were.
    #[serde(default)]
    pub(crate) hold: Option<Hold>,
    /// Attributes whose clears were held (the attribute-wipe guard), each with its reason.
    #[serde(default)]
    pub(crate) held_clears: Vec<Hold>,
    /// One line per skipped or failed object, for the operator.
    pub(crate) problems: Vec<String>,
    /// Facts about the target worth a line each cycle (attributes it refuses).
    #[serde(default)]
    pub(crate) notes: Vec<String>,
    /// HTTP requests sent to the target (a request that never connected is not counted).
    pub(crate) requests: usize,
    /// Operations not sent because the target rejected the credentials or could not be
    /// reached earlier in the cycle (counted as failed, reported in one line).
    #[serde(default)]
    pub(crate) not_sent: usize,
    /// Objects not tried this cycle because their escrow's next attempt is later.
    #[serde(default)]
    pub(crate) deferred: usize,
    /// Objects in escrow (failed, to be retried) when the cycle ended.
    #[serde(default)]
    pub(crate) escrow: usize,
    /// The target's quarantine when the cycle began (a hand-run cycle runs anyway).
    #[serde(default)]
    pub(crate) quarantined_before: Option<Quarantine>,
    /// The target's quarantine when the cycle ended; `None` when healthy (or lifted).
    #[serde(default)]
    pub(crate) quarantine: Option<Quarantine>,
}

impl CycleReport {
    /// True when some object was not brought in step: failed, skipped (bad data, ambiguous
    /// match) or a held deprovision.
    pub(crate) fn incomplete(&self) -> bool {
        self.users.failed + self.groups.failed + self.users.skipped + self.groups.skipped > 0
            || self.held > 0
            || !self.held_clears.is_empty()
    }

    pub(crate) fn counts(&mut self, kind: Kind) -> &mut Counts {
        match kind {
            Kind::User => &mut self.users,
            Kind::Group => &mut self.groups,
        }
    }

    /// Counts the planned operations as if they had been carried out (a dry run).
    pub(crate) fn count_planned(&mut self, users: &[UserOp], groups: &[GroupOp]) {
        for op in users {
            match op {
                UserOp::MatchOrCreate { .. } => self.users.created += 1,
                UserOp::Update { .. } => self.users.updated += 1,
                UserOp::Deprovision { .. } => self.users.deprovisioned += 1,
            }
        }
        for op in groups {
            match op {
                GroupOp::MatchOrCreate { .. } => self.groups.created += 1,
                GroupOp::Update { .. } => self.groups.updated += 1,
                GroupOp::Deprovision { .. } => self.groups.deprovisioned += 1,
            }
        }
    }

    /// Counts what became of each operation of one kind, a problem line for each object not
    /// brought in step.
    pub(crate) fn tally(&mut self, kind: Kind, mut outcomes: Vec<(SourceId, Outcome)>) {
        outcomes.sort_by(|a, b| a.0.cmp(&b.0));
        for (id, o) in outcomes {
            let counts = self.counts(kind);
            match o {
                Outcome::Created => counts.created += 1,
                Outcome::Updated => counts.updated += 1,
                Outcome::Unchanged => counts.unchanged += 1,
                Outcome::Deprovisioned => counts.deprovisioned += 1,
                Outcome::Skipped(why) => {
                    counts.skipped += 1;
                    self.problems.push(format!("skipped {kind} {id}: {why}"));
                }
                Outcome::Failed(why) => {
                    counts.failed += 1;
                    self.problems.push(format!("failed {kind} {id}: {why}"));
                }
                Outcome::NotSent => {
                    counts.failed += 1;
                    self.not_sent += 1;
                }
                // Filtered out before; not attempted this cycle.
                Outcome::Interrupted => {}
            }
        }
    }
}

/// What became of one operation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    Created,
    Updated,
    Unchanged,
    Deprovisioned,
    Skipped(String),
    Failed(String),
    /// Not sent: the target rejected the credentials or could not be reached earlier in the
    /// cycle. The object is neither escrowed nor reported alone; the cycle says it once.
    NotSent,
    /// A write not sent because shutdown began: the object was not attempted this cycle (no
    /// escrow, no count); the next cycle plans it again.
    Interrupted,
}

impl Outcome {
    /// The `status` label of the operations metric.
    pub(crate) fn status(&self) -> &'static str {
        match self {
            Outcome::Created | Outcome::Updated | Outcome::Unchanged | Outcome::Deprovisioned => {
                "ok"
            }
            Outcome::Skipped(_) => "skipped",
            Outcome::Failed(_) | Outcome::NotSent => "failed",
            Outcome::Interrupted => "interrupted",
        }
    }

    /// Whether the object is in step now.
    pub(crate) fn succeeded(&self) -> bool {
        self.status() == "ok"
    }
}

impl From<crate::state::StateError> for Outcome {
    fn from(e: crate::state::StateError) -> Self {
        Outcome::Failed(e.to_string())
    }
}
