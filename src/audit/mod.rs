//! The provisioning log: one record per decision and per call.
//!
//! Records are structured tracing events (target `scimsync::audit`), so journald or a log
//! pipeline receives them with their fields. Values of `Redact()` mappings never reach a record.

use crate::ids::{ScimId, SourceId};
use std::fmt;

/// What kind of object a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    User,
    Group,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::User => "user",
            Kind::Group => "group",
        })
    }
}

/// The action taken, in Entra ID's provisioning-log vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Disable,
    Delete,
    Skip,
    StagedDelete,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    Failure,
    Skipped,
    Warning,
}

pub struct Record<'a> {
    pub cycle_id: &'a str,
    pub target: &'a str,
    pub kind: Kind,
    pub source_id: &'a SourceId,
    pub scim_id: Option<&'a ScimId>,
    pub action: Action,
    pub status: Status,
    pub detail: &'a str,
}

/// Emits one record.
pub fn emit(r: &Record<'_>) {
    let scim_id = r.scim_id.map(ScimId::as_str).unwrap_or("");
    match r.status {
        Status::Success | Status::Skipped => tracing::info!(
            target: "scimsync::audit",
            cycle_id = r.cycle_id, target_name = r.target, kind = %r.kind, object_id = %r.source_id,
            scim_id, action = ?r.action, status = ?r.status, detail = r.detail,
            "Provisioning decision."
        ),
        Status::Failure | Status::Warning => tracing::warn!(
            target: "scimsync::audit",
            cycle_id = r.cycle_id, target_name = r.target, kind = %r.kind, object_id = %r.source_id,
            scim_id, action = ?r.action, status = ?r.status, detail = r.detail,
            "Provisioning decision."
        ),
    }
}
