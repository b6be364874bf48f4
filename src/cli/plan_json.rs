//! The stable JSON form of a plan (`scimsync plan --json`), documented in docs/plan-json.md.
//!
//! Values of `Redact()` mappings are replaced by `"[Redact]"`: the JSON is for people and
//! pipelines, never for secrets.

use crate::config::DeprovisionMode;
use crate::engine::PlannedCycle;
use crate::mapping::Desired;
use crate::plan::{Change, GroupOp, Hold, UserOp};
use serde::Serialize;
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// Bumped only for incompatible changes; new fields may be added without a bump.
pub const FORMAT_VERSION: u32 = 2;

#[derive(Debug, Serialize)]
pub struct PlanDocument {
    pub format_version: u32,
    pub targets: Vec<TargetPlan>,
}

#[derive(Debug, Serialize)]
pub struct TargetPlan {
    pub target: String,
    pub operations: Vec<Operation>,
    /// Deprovisions held back by the deletion threshold.
    pub held: Vec<Operation>,
    pub skipped: Vec<Skipped>,
    /// Attributes whose clears the attribute-wipe guard holds.
    pub held_clears: Vec<HeldClear>,
    /// Users who left the scope under `skip_out_of_scope_deletions`: kept as they are and
    /// forgotten, with no request.
    pub kept: Vec<Kept>,
    pub totals: Totals,
}

#[derive(Debug, Serialize)]
pub struct Kept {
    pub object_id: String,
    pub scim_id: String,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct HeldClear {
    pub attribute: String,
    /// Users that would lose it (and keep it).
    pub users: usize,
    pub managed: usize,
    pub threshold_percent: f64,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct Operation {
    /// `user` or `group`.
    pub kind: &'static str,
    /// `create` (after matching), `update`, `deactivate`, `delete`, `remove_members`.
    pub action: &'static str,
    pub object_id: String,
    pub scim_id: Option<String>,
    /// Attribute changes; a create lists every attribute with `old: null`.
    pub changes: Vec<JsonChange>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members_added: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members_removed: Vec<String>,
    /// For a user created or deprovisioned: why it is in, or out of, the target's scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct JsonChange {
    pub path: String,
    pub old: Option<Json>,
    pub new: Option<Json>,
}

#[derive(Debug, Serialize)]
pub struct Skipped {
    pub kind: String,
    pub object_id: String,
    pub reason: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Totals {
    pub users: KindTotals,
    pub groups: KindTotals,
    pub skipped: usize,
    pub held: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct KindTotals {
    pub create: usize,
    pub update: usize,
    pub deprovision: usize,
    pub unchanged: usize,
}

fn redact(desired: &Desired, path: &str, v: &Option<Json>) -> Option<Json> {
    match v {
        Some(_) if desired.redacted.contains(path) => Some(Json::String("[Redact]".into())),
        other => other.clone(),
    }
}

fn changes(desired: &Desired, changes: &[Change]) -> Vec<JsonChange> {
    changes
        .iter()
        .map(|c| JsonChange {
            path: c.path.clone(),
            old: redact(desired, &c.path, &c.old),
            new: redact(desired, &c.path, &c.new),
        })
        .collect()
}

fn creation(desired: &Desired) -> Vec<JsonChange> {
    let all: BTreeMap<&String, &Json> = desired.on_create.iter().chain(&desired.attrs).collect();
    all.into_iter()
        .map(|(p, v)| JsonChange {
            path: p.clone(),
            old: None,
            new: redact(desired, p, &Some(v.clone())),
        })
        .collect()
}

fn deprovision_action(mode: DeprovisionMode) -> &'static str {
    match mode {
        DeprovisionMode::Deactivate => "deactivate",
        DeprovisionMode::Delete => "delete",
    }
}

fn user_op(op: &UserOp) -> Operation {
    let (action, object_id, scim_id, changes) = match op {
        UserOp::MatchOrCreate { id, desired } => ("create", id, None, creation(desired)),
        UserOp::Update {
            id,
            scim_id,
            changes: c,
            desired,
        } => ("update", id, Some(scim_id), changes(desired, c)),
        UserOp::Deprovision { id, scim_id, mode } => {
            let c = match mode {
                DeprovisionMode::Deactivate => vec![JsonChange {
                    path: "active".into(),
                    old: Some(Json::Bool(true)),
                    new: Some(Json::Bool(false)),
                }],
                DeprovisionMode::Delete => Vec::new(),
            };
            (deprovision_action(*mode), id, Some(scim_id), c)
        }
    };
    Operation {
        kind: "user",
        action,
        object_id: object_id.0.clone(),
        scim_id: scim_id.map(|s| s.0.clone()),
        changes,
        members_added: Vec::new(),
        members_removed: Vec::new(),
        scope_reason: None,
    }
}

fn group_op(op: &GroupOp) -> Operation {
    let ids = |v: &mut dyn Iterator<Item = String>| v.collect::<Vec<_>>();
    match op {
        GroupOp::MatchOrCreate { id, group } => Operation {
            kind: "group",
            action: "create",
            object_id: id.0.clone(),
            scim_id: None,
            changes: creation(&group.desired),
            members_added: ids(&mut group.members.iter().map(|m| m.0.clone())),
            members_removed: Vec::new(),
            scope_reason: None,
        },
        GroupOp::Update {
            id,
            scim_id,
            changes: c,
            add,
            remove,
            group,
        } => Operation {
            kind: "group",
            action: "update",
            object_id: id.0.clone(),
            scim_id: Some(scim_id.0.clone()),
            changes: changes(&group.desired, c),
            members_added: ids(&mut add.iter().map(|m| m.0.clone())),
            members_removed: ids(&mut remove.iter().map(|(m, _)| m.0.clone())),
            scope_reason: None,
        },
        GroupOp::Deprovision {
            id, scim_id, mode, ..
        } => Operation {
            kind: "group",
            action: match mode {
                DeprovisionMode::Deactivate => "remove_members",
                DeprovisionMode::Delete => "delete",
            },
            object_id: id.0.clone(),
            scim_id: Some(scim_id.0.clone()),
            changes: Vec::new(),
            members_added: Vec::new(),
            members_removed: Vec::new(),
            scope_reason: None,
        },
    }
}

fn totals(ops: &[Operation], kind: &str, unchanged: usize) -> KindTotals {
    let mut t = KindTotals {
        unchanged,
        ..Default::default()
    };
    for op in ops.iter().filter(|o| o.kind == kind) {
        match op.action {
            "create" => t.create += 1,
            "update" => t.update += 1,
            _ => t.deprovision += 1,
        }
    }
    t
}

/// The JSON form of one target's plan.
pub fn target_plan(target: &str, p: &PlannedCycle) -> TargetPlan {
    let user = |op: &UserOp| Operation {
        scope_reason: p.why.get(op.id()).cloned(),
        ..user_op(op)
    };
    let operations: Vec<Operation> = p
        .users
        .ops
        .iter()
        .map(user)
        .chain(p.groups.ops.iter().map(group_op))
        .collect();
    let held: Vec<Operation> = p
        .users
        .held
        .iter()
        .map(user)
        .chain(p.groups.held.iter().map(group_op))
        .collect();
    let kept = p
        .users
        .forget
        .iter()
        .map(|f| Kept {
            object_id: f.id.0.clone(),
            scim_id: f.scim_id.0.clone(),
            reason: f.why.clone(),
        })
        .collect();
    let skipped: Vec<Skipped> = p
        .rejected
        .iter()
        .map(|(id, kind, reason)| Skipped {
            kind: kind.to_string(),
            object_id: id.0.clone(),
            reason: reason.clone(),
        })
        .collect();
    let totals = Totals {
        users: totals(&operations, "user", p.users.unchanged),
        groups: totals(&operations, "group", p.groups.unchanged),
        skipped: skipped.len(),
        held: held.len(),
    };
    let held_clears = p
        .users
        .held_clears
        .iter()
        .filter_map(|h| match h {
            Hold::AttributeClear {
                attribute,
                count,
                managed,
                percent,
            } => Some(HeldClear {
                attribute: attribute.clone(),
                users: *count,
                managed: *managed,
                threshold_percent: *percent,
                reason: h.to_string(),
            }),
            _ => None,
        })
        .collect();
    TargetPlan {
        target: target.to_owned(),
        operations,
        held,
        skipped,
        held_clears,
        kept,
        totals,
    }
}
