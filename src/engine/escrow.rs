//! The escrow of failed operations: objects whose next attempt is later wait, objects that
//! succeeded leave it, objects that failed enter it with their error.

use super::report::{CycleReport, Outcome};
use crate::audit::Kind;
use crate::ids::SourceId;
use crate::state::{EscrowEntry, Snapshot, StateError};
use std::collections::BTreeMap;

/// Leaves out the operations on objects whose escrow says not yet, reporting each.
pub(crate) fn defer<Op>(
    ops: Vec<Op>,
    id_of: impl Fn(&Op) -> &SourceId,
    escrow: &BTreeMap<SourceId, EscrowEntry>,
    now: chrono::DateTime<chrono::Utc>,
    kind: Kind,
    report: &mut CycleReport,
) -> Vec<Op> {
    let mut kept = Vec::with_capacity(ops.len());
    for op in ops {
        let id = id_of(&op);
        match escrow.get(id).filter(|e| e.deferred_at(now)) {
            Some(e) => {
                report.deferred += 1;
                report.counts(kind).skipped += 1;
                report.problems.push(format!(
                    "deferred {kind} {id}: in escrow after {} failed attempts (last: {}); next attempt at {}",
                    e.attempts, e.last_error, e.next_attempt
                ));
            }
            None => kept.push(op),
        }
    }
    kept
}

/// Keeps failed operations in escrow and clears the escrow of objects that succeeded. A cycle
/// whose client halted (credentials rejected, target unreachable) escrows nothing: the target,
/// not the object, is at fault.
pub(crate) fn settle(
    snapshot: &Snapshot,
    halted: bool,
    escrow: &BTreeMap<SourceId, EscrowEntry>,
    kind: Kind,
    outcomes: &[(SourceId, Outcome)],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), StateError> {
    for (id, outcome) in outcomes {
        match outcome {
            Outcome::Failed(why) if !halted => {
                snapshot.escrow_failure(id, &kind.to_string(), why, now)?;
            }
            o if o.succeeded() && escrow.contains_key(id) => snapshot.escrow_clear(id)?,
            _ => {}
        }
    }
    Ok(())
}
