//! How far a running cycle has come, for a progress display, and the operations metric.

use crate::plan::{GroupOp, UserOp};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Operations of one cycle: planned and finished so far. The CLI polls it to draw a progress
/// bar; the engine only counts.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    total: AtomicUsize,
    done: AtomicUsize,
    ended: std::sync::atomic::AtomicBool,
}

impl Progress {
    /// `(finished, planned)` operations so far.
    pub(crate) fn get(&self) -> (usize, usize) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }

    /// The cycle is over (whatever its end): a watcher stops.
    pub(crate) fn end(&self) {
        self.ended.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Relaxed)
    }

    pub(super) fn planned(&self, ops: usize) {
        self.total.store(ops, Ordering::Relaxed);
    }

    /// Groups are planned again once the users exist: `now` operations instead of `before`.
    pub(super) fn replanned(&self, before: usize, now: usize) {
        let total = self.total.load(Ordering::Relaxed);
        self.total
            .store(total.saturating_sub(before) + now, Ordering::Relaxed);
    }

    pub(super) fn finished(
        &self,
        target: &str,
        kind: &'static str,
        action: &'static str,
        status: &'static str,
    ) {
        self.done.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::operation(target, kind, action, status);
    }
}

pub(super) fn user_action(op: &UserOp) -> &'static str {
    match op {
        UserOp::MatchOrCreate { .. } => "create",
        UserOp::Update { .. } => "update",
        UserOp::Deprovision { .. } => "deprovision",
    }
}

pub(super) fn group_action(op: &GroupOp) -> &'static str {
    match op {
        GroupOp::MatchOrCreate { .. } => "create",
        GroupOp::Update { .. } => "update",
        GroupOp::Deprovision { .. } => "deprovision",
    }
}
