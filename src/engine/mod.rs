//! One provisioning cycle for one target, one room per step:
//!
//! - [`desired`]: the desired state, the source read scoped and mapped.
//! - [`cycle`]: the orchestration: guards, plan, users then groups, escrow, what is kept.
//! - [`executor`]: what carrying out operations shares; [`execute`]: the typed operations
//!   carried out; [`adopt`]: a new object matched, adopted or created, the same for users
//!   and groups.
//! - [`matching`]: finding existing accounts, one implementation for the cycle and
//!   `provision`; [`listing`]: the target's listing, verified.
//! - [`record`]: the provisioning log's records, and the steps `provision` shows.
//! - [`report`]: what a cycle reports; [`escrow`]: failed operations kept for a retry.
//! - [`guard`]: the source-outage guard and the quarantine; [`provision`]: one user on demand.
//! - [`leaving`]: why users join or leave the scope, and those kept when they leave.
//! - [`references`]: the manager, an objectId in the source and an account in each target.
//!
//! Users go before groups so that member ids exist. Every snapshot write follows a call the
//! target confirmed. A failure on one object is counted, reported and kept in escrow; it never
//! stops the cycle.

mod adopt;
mod cycle;
mod desired;
mod escrow;
mod execute;
mod executor;
pub(crate) mod guard;
mod leaving;
mod listing;
pub(crate) mod matching;
mod progress;
pub(crate) mod provision;
mod record;
mod references;
mod report;

pub(crate) use cycle::PROFILE_KEY;
pub(crate) use cycle::{plan_target, run_target_until, run_target_with, PlannedCycle};
pub(crate) use desired::{desired_state, DesiredState};
pub(crate) use progress::Progress;
pub(crate) use record::shown_changes;
pub(crate) use report::{Counts, CycleReport};

use crate::scim::ClientError;
use crate::scope::ScopeError;
use crate::state::StateError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum EngineError {
    #[error(transparent)]
    Scope(#[from] ScopeError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("source-outage guard: {0}")]
    Guard(#[from] guard::OutageGuard),
    #[error("the snapshot was taken against {old}, but the target's url is now {new}; run `scimsync sync --full --target {target}` to match every account against the new url")]
    UrlChanged {
        old: String,
        new: String,
        target: String,
    },
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CycleOptions {
    pub(crate) full: bool,
    pub(crate) dry_run: bool,
    pub(crate) allow_deletes: bool,
    /// Carry out the clears the attribute-wipe guard would hold.
    pub(crate) allow_clears: bool,
}
