//! The record of what a cycle did: one provisioning log entry per decision, with its changes
//! and HTTP calls, and, for `provision`, the steps written down as they happen (the same
//! executor, observed; never a second implementation of its steps).

use super::report::Outcome;
use crate::audit::{self, Action, Kind, Status};
use crate::ids::{ScimId, SourceId};
use crate::mapping::Desired;
use crate::plan::Change;
use crate::scim::ScimError;
use crate::state;
use serde_json::Value as Json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// At most this many held deprovisions are recorded one by one per target and cycle: a
/// threshold holding thousands every cycle would otherwise push the rest of the history out of
/// the log's retention. The cycle's report and `status` still give the full count.
pub(crate) const STAGED_RECORDS: usize = 100;

/// What `provision` shows of one user's way through the executor.
#[derive(Debug, Default, Clone)]
pub(crate) struct Steps {
    /// Each matching attribute: the query sent (or the listing asked) and its hits.
    pub(crate) matching: Vec<String>,
    /// The action taken (or, in a dry run, that would be taken).
    pub(crate) action: Option<String>,
    /// Every attribute change, `path: old -> new`.
    pub(crate) changes: Vec<String>,
}

/// Writes a cycle's records, and the steps when someone watches.
pub(crate) struct Recorder {
    cycle_id: String,
    target: String,
    /// Where records are stored; none in a dry run.
    log: Option<state::Log>,
    /// Held deprovisions recorded so far this cycle (see [`STAGED_RECORDS`]).
    staged: AtomicUsize,
    steps: Option<Mutex<Steps>>,
}

impl Recorder {
    pub(crate) fn new(cycle_id: &str, target: &str, log: Option<state::Log>) -> Recorder {
        Recorder {
            cycle_id: cycle_id.to_owned(),
            target: target.to_owned(),
            log,
            staged: AtomicUsize::new(0),
            steps: None,
        }
    }

    /// The same recorder, also writing down the steps (for `provision`).
    pub(crate) fn watching(mut self) -> Recorder {
        self.steps = Some(Mutex::new(Steps::default()));
        self
    }

    /// Writes down a step, when someone watches.
    pub(crate) fn step(&self, f: impl FnOnce(&mut Steps)) {
        if let Some(steps) = &self.steps {
            f(&mut steps.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }

    /// The steps written down so far.
    pub(crate) fn steps(&self) -> Steps {
        self.steps
            .as_ref()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .unwrap_or_default()
    }

    /// A record of a decision about `id`, with the HTTP calls made since the operation began
    /// (or since its previous record); [`Recorder::write`] stamps and keeps it.
    fn entry(
        &self,
        kind: Kind,
        id: &SourceId,
        scim_id: Option<&ScimId>,
        action: Action,
        status: Status,
    ) -> audit::Entry {
        let (calls, took) = audit::take_calls();
        audit::Entry {
            time: String::new(),
            cycle_id: self.cycle_id.clone(),
            target: self.target.clone(),
            kind,
            object_id: id.to_string(),
            scim_id: scim_id.map(|s| s.as_str().to_owned()),
            action,
            status,
            modified: Vec::new(),
            calls,
            detail: String::new(),
            error: None,
            duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Emits a record and stores it in the log; a storage error is only a warning.
    fn write(&self, mut entry: audit::Entry) {
        entry.detail = audit::scrub(&entry.detail);
        entry.error = entry.error.as_deref().map(audit::scrub);
        let at = chrono::Utc::now();
        entry.time = audit::timestamp(at);
        audit::emit(&entry);
        if let Some(log) = &self.log {
            if let Err(e) = log.append(at, &entry) {
                tracing::warn!(object_id = %entry.object_id, error = %e, "Cannot store a provisioning log record.");
            }
        }
    }

    /// A decision without attribute changes.
    pub(crate) fn note(
        &self,
        kind: Kind,
        id: &SourceId,
        scim_id: Option<&ScimId>,
        action: Action,
        status: Status,
        detail: &str,
    ) {
        let mut e = self.entry(kind, id, scim_id, action, status);
        e.detail = detail.to_owned();
        self.write(e);
    }

    /// An object skipped, with why: recorded, and its outcome.
    pub(crate) fn skipped(
        &self,
        kind: Kind,
        id: &SourceId,
        scim_id: Option<&ScimId>,
        why: String,
    ) -> Outcome {
        self.note(kind, id, scim_id, Action::Skip, Status::Skipped, &why);
        Outcome::Skipped(why)
    }

    /// A deprovision held back by the deletion threshold.
    pub(crate) fn staged(&self, kind: Kind, id: &SourceId, scim_id: &ScimId, why: &str) {
        let n = self.staged.fetch_add(1, Ordering::Relaxed);
        if n == STAGED_RECORDS {
            tracing::warn!(target_name = %self.target, "More deprovisions are held this cycle; only the first {STAGED_RECORDS} are recorded in the provisioning log.");
        }
        if n < STAGED_RECORDS {
            self.note(
                kind,
                id,
                Some(scim_id),
                Action::StagedDelete,
                Status::Skipped,
                why,
            );
        }
    }

    /// A clear held by the attribute-wipe guard, for one user (at most [`STAGED_RECORDS`]
    /// records per cycle, counted with the held deprovisions).
    pub(crate) fn held_clear(&self, id: &SourceId, why: &str) {
        let n = self.staged.fetch_add(1, Ordering::Relaxed);
        if n < STAGED_RECORDS {
            self.note(Kind::User, id, None, Action::Skip, Status::Skipped, why);
        }
    }

    /// A successful write, with the attributes it changed.
    pub(crate) fn changed(
        &self,
        kind: Kind,
        id: &SourceId,
        scim_id: &ScimId,
        action: Action,
        detail: &str,
        modified: Vec<audit::Modified>,
    ) {
        let mut e = self.entry(kind, id, Some(scim_id), action, Status::Success);
        e.detail = detail.to_owned();
        e.modified = modified;
        self.write(e);
    }

    /// A failed write, with the attribute changes it tried to make: recorded, and its outcome.
    pub(crate) fn failed(
        &self,
        kind: Kind,
        id: &SourceId,
        scim_id: Option<&ScimId>,
        action: Action,
        e: ScimError,
        tried: Vec<audit::Modified>,
    ) -> Outcome {
        if e.is_interrupted() {
            // Not sent at all: nothing to record; the next cycle plans the object again.
            return Outcome::Interrupted;
        }
        if e.is_halted() {
            // The target, not the object, is at fault: the cycle reports it once.
            return Outcome::NotSent;
        }
        let why = e.to_string();
        let mut entry = self.entry(kind, id, scim_id, action, Status::Failure);
        entry.error = Some(why.clone());
        entry.modified = tried;
        self.write(entry);
        Outcome::Failed(why)
    }
}

/// A value as the provisioning log may keep it: a `Redact()` mapping's value is replaced.
fn logged(desired: &Desired, path: &str, value: Option<&Json>) -> Json {
    match value {
        None => Json::Null,
        Some(_) if desired.redacted.contains(path) => Json::String(audit::REDACTED.to_owned()),
        Some(v) => v.clone(),
    }
}

/// Attribute changes for the provisioning log, with `Redact()` values hidden.
pub(crate) fn modified(desired: &Desired, changes: &[Change]) -> Vec<audit::Modified> {
    changes
        .iter()
        .map(|c| audit::Modified {
            path: c.path.clone(),
            old: logged(desired, &c.path, c.old.as_ref()),
            new: logged(desired, &c.path, c.new.as_ref()),
        })
        .collect()
}

/// The attributes a create sets, for the provisioning log, with `Redact()` values hidden.
pub(crate) fn created(desired: &Desired) -> Vec<audit::Modified> {
    desired
        .on_create
        .iter()
        .chain(&desired.attrs)
        .map(|(path, v)| audit::Modified {
            path: path.clone(),
            old: Json::Null,
            new: logged(desired, path, Some(v)),
        })
        .collect()
}

/// Attribute changes as a person reads them, `path: old -> new`, with `Redact()` values hidden
/// and text from outside escaped.
pub(crate) fn shown_changes(desired: &Desired, changes: &[Change]) -> Vec<String> {
    let show = |v: &Option<Json>, p: &str| match v {
        Some(v) => crate::text::escape(&desired.shown(p, v)),
        None => "(none)".to_owned(),
    };
    changes
        .iter()
        .map(|c| {
            format!(
                "{}: {} -> {}",
                c.path,
                show(&c.old, &c.path),
                show(&c.new, &c.path)
            )
        })
        .collect()
}

/// The attributes a create sets, as a person reads them.
pub(crate) fn shown_created(desired: &Desired) -> Vec<String> {
    desired
        .on_create
        .iter()
        .chain(&desired.attrs)
        .map(|(k, v)| {
            format!(
                "{k}: (none) -> {}",
                crate::text::escape(&desired.shown(k, v))
            )
        })
        .collect()
}
