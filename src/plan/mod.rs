//! The plan: desired resources diffed against the snapshot, as the fewest operations.
//!
//! Pure functions over plain values, so a dry run prints exactly what a real cycle would do
//! and the planner is tested without any server.

mod clears;

use crate::config::DeprovisionMode;
use crate::ids::{ScimId, SourceId};
use crate::mapping::Desired;
use crate::state::{GroupEntry, UserEntry, UserSummary};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

/// One attribute that changes: `None` is absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Change {
    pub(crate) path: String,
    pub(crate) old: Option<Json>,
    pub(crate) new: Option<Json>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub(crate) enum UserOp {
    /// Not in the snapshot (or a full sync): find the account by the matching attributes,
    /// adopt it, or create it.
    MatchOrCreate { id: SourceId, desired: Desired },
    /// In the snapshot, changed: PATCH these attributes.
    Update {
        id: SourceId,
        scim_id: ScimId,
        changes: Vec<Change>,
        desired: Desired,
    },
    /// In the snapshot, no longer in scope.
    Deprovision {
        id: SourceId,
        scim_id: ScimId,
        mode: DeprovisionMode,
    },
}

impl UserOp {
    pub(crate) fn id(&self) -> &SourceId {
        match self {
            UserOp::MatchOrCreate { id, .. }
            | UserOp::Update { id, .. }
            | UserOp::Deprovision { id, .. } => id,
        }
    }
}

/// A group as the target should hold it: attributes and in-scope direct user members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DesiredGroup {
    pub(crate) desired: Desired,
    pub(crate) members: BTreeSet<SourceId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub(crate) enum GroupOp {
    MatchOrCreate {
        id: SourceId,
        group: DesiredGroup,
    },
    Update {
        id: SourceId,
        scim_id: ScimId,
        changes: Vec<Change>,
        add: Vec<SourceId>,
        remove: Vec<(SourceId, ScimId)>,
        group: DesiredGroup,
    },
    /// Left scope: deleted, or (deactivate mode) emptied of the members scimsync manages.
    Deprovision {
        id: SourceId,
        scim_id: ScimId,
        mode: DeprovisionMode,
        members: Vec<ScimId>,
    },
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PlanOptions {
    /// Ignore the snapshot's hashes and re-match every object.
    pub(crate) full: bool,
    pub(crate) mode: DeprovisionMode,
    pub(crate) deletion_threshold: usize,
    /// Hold the deprovisions when they are more than this percentage of the managed objects.
    pub(crate) deletion_threshold_percent: Option<f64>,
    pub(crate) allow_deletes: bool,
    /// Hold the clears of an attribute on more than this percentage of the managed users;
    /// `None` to carry them out (`--allow-clears`, or a threshold of 100).
    pub(crate) clear_threshold_percent: Option<f64>,
}

/// Why deprovisions wait for `sync --allow-deletes`: the guard, and its threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "guard", rename_all = "snake_case")]
pub(crate) enum Hold {
    /// More deprovisions in one cycle than `deletion_threshold`.
    DeletionThreshold { count: usize, threshold: usize },
    /// More than `deletion_threshold_percent` of the managed objects.
    DeletionThresholdPercent {
        count: usize,
        managed: usize,
        percent: f64,
    },
    /// One attribute cleared on more than `attribute_clear_threshold` of the managed users.
    AttributeClear {
        attribute: String,
        count: usize,
        managed: usize,
        percent: f64,
    },
}

impl std::fmt::Display for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hold::DeletionThreshold { threshold, .. } => {
                write!(f, "more than deletion_threshold = {threshold}")
            }
            Hold::DeletionThresholdPercent { percent, .. } => write!(
                f,
                "more than deletion_threshold_percent = {percent}% of the managed objects"
            ),
            Hold::AttributeClear {
                attribute,
                count,
                managed,
                percent,
            } => write!(
                f,
                "{attribute} would be cleared on {count} of the {managed} managed users, more than attribute_clear_threshold = {percent}%"
            ),
        }
    }
}

impl PlanOptions {
    /// Why `count` deprovisions out of `managed` objects must wait for `--allow-deletes`, if
    /// they must.
    pub(crate) fn holds(&self, count: usize, managed: usize) -> Option<Hold> {
        if self.allow_deletes || count == 0 {
            return None;
        }
        if count > self.deletion_threshold {
            return Some(Hold::DeletionThreshold {
                count,
                threshold: self.deletion_threshold,
            });
        }
        let percent = self.deletion_threshold_percent?;
        (managed > 0 && count as f64 * 100.0 > percent * managed as f64).then_some(
            Hold::DeletionThresholdPercent {
                count,
                managed,
                percent,
            },
        )
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct UserPlan {
    pub(crate) ops: Vec<UserOp>,
    pub(crate) unchanged: usize,
    /// Deprovisions held back because they exceed the deletion threshold.
    pub(crate) held: Vec<UserOp>,
    /// Why they are held.
    #[serde(default)]
    pub(crate) hold: Option<Hold>,
    /// Attributes whose clears are held (the attribute-wipe guard), each with its reason.
    #[serde(default)]
    pub(crate) held_clears: Vec<Hold>,
    /// Per attribute whose clears are held, the users that keep it.
    #[serde(default)]
    pub(crate) spared: BTreeMap<String, Vec<SourceId>>,
    /// Users who left the scope under `skip_out_of_scope_deletions`: their accounts are left
    /// as they are and the snapshot forgets them (no request).
    #[serde(default)]
    pub(crate) forget: Vec<Forget>,
}

/// A user the snapshot forgets, with why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Forget {
    pub(crate) id: SourceId,
    pub(crate) scim_id: ScimId,
    pub(crate) why: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct GroupPlan {
    pub(crate) ops: Vec<GroupOp>,
    pub(crate) unchanged: usize,
    pub(crate) held: Vec<GroupOp>,
    #[serde(default)]
    pub(crate) hold: Option<Hold>,
}

/// The hash of the attributes kept in step; equal hashes mean nothing to send.
pub(crate) fn hash(attrs: &BTreeMap<String, Json>) -> String {
    // A BTreeMap serialises in key order, so equal maps give equal bytes.
    let bytes = serde_json::to_vec(attrs).unwrap_or_default();
    hex::encode(Sha256::digest(bytes))
}

/// The attribute changes that turn `old` into `desired` (attributes kept in step only).
pub(crate) fn diff(old: &BTreeMap<String, Json>, desired: &BTreeMap<String, Json>) -> Vec<Change> {
    let paths: BTreeSet<&String> = old.keys().chain(desired.keys()).collect();
    paths
        .into_iter()
        .filter_map(|p| {
            let (o, n) = (old.get(p), desired.get(p));
            (o != n).then(|| Change {
                path: p.clone(),
                old: o.cloned(),
                new: n.cloned(),
            })
        })
        .collect()
}

/// The changes that bring `old` to `want`. An attribute `want` sends only on create
/// (`apply = "on_create"`, or one the target refused in a PATCH) is no longer kept in step, so
/// the value the snapshot holds for it is no clear: learning a refusal changes no account.
pub(crate) fn diff_desired(old: &BTreeMap<String, Json>, want: &Desired) -> Vec<Change> {
    let mut changes = diff(old, &want.attrs);
    changes.retain(|c| c.new.is_some() || !want.on_create.contains_key(&c.path));
    changes
}

/// Plans the users of one target. `protected` ids (objects the source could not read this
/// time) are never deprovisioned.
pub(crate) fn plan_users(
    snapshot: &BTreeMap<SourceId, UserEntry>,
    desired: &BTreeMap<SourceId, Desired>,
    protected: &BTreeSet<SourceId>,
    opts: PlanOptions,
) -> UserPlan {
    let known: BTreeMap<SourceId, UserSummary> = snapshot
        .iter()
        .map(|(id, e)| (id.clone(), UserSummary::from(e)))
        .collect();
    let deprovisions = user_deprovisions(&known, |id| desired.contains_key(id), protected, opts);
    let planned = plan_known_users(
        &known,
        desired
            .iter()
            .map(|(id, d)| (Cow::Borrowed(id), Cow::Borrowed(d))),
        deprovisions,
        opts,
        |id| {
            Ok::<_, std::convert::Infallible>(
                snapshot
                    .get(id)
                    .map(|e| e.attrs.clone())
                    .unwrap_or_default(),
            )
        },
    );
    match planned {
        Ok(plan) => plan,
        Err(never) => match never {},
    }
}

/// [`plan_users`] for a cycle: the snapshot is given as its [`UserSummary`]s, and `attrs`
/// decodes the attributes last pushed for a user whose hash differs (the only ones a diff
/// needs), so that a whole snapshot is never decoded next to the desired state. The desired
/// users are taken by value: each operation takes its resource over instead of a copy, which
/// at a million users is a gigabyte less.
pub(crate) fn plan_users_owned<E>(
    known: &BTreeMap<SourceId, UserSummary>,
    desired: BTreeMap<SourceId, Desired>,
    protected: &BTreeSet<SourceId>,
    opts: PlanOptions,
    attrs: impl FnMut(&SourceId) -> Result<BTreeMap<String, Json>, E>,
) -> Result<UserPlan, E> {
    let deprovisions = user_deprovisions(known, |id| desired.contains_key(id), protected, opts);
    plan_known_users(
        known,
        desired
            .into_iter()
            .map(|(id, d)| (Cow::Owned(id), Cow::Owned(d))),
        deprovisions,
        opts,
        attrs,
    )
}

fn plan_known_users<'a, E>(
    known: &BTreeMap<SourceId, UserSummary>,
    desired: impl Iterator<Item = (Cow<'a, SourceId>, Cow<'a, Desired>)>,
    deprovisions: Vec<UserOp>,
    opts: PlanOptions,
    mut attrs: impl FnMut(&SourceId) -> Result<BTreeMap<String, Json>, E>,
) -> Result<UserPlan, E> {
    let mut plan = UserPlan::default();
    for (id, want) in desired {
        match known.get(&*id) {
            Some(entry) if !opts.full => {
                if entry.hash == hash(&want.attrs) {
                    plan.unchanged += 1;
                    continue;
                }
                let changes = diff_desired(&attrs(&id)?, &want);
                if changes.is_empty() {
                    plan.unchanged += 1;
                } else {
                    plan.ops.push(UserOp::Update {
                        id: id.into_owned(),
                        scim_id: entry.scim_id.clone(),
                        changes,
                        desired: want.into_owned(),
                    });
                }
            }
            _ => plan.ops.push(UserOp::MatchOrCreate {
                id: id.into_owned(),
                desired: want.into_owned(),
            }),
        }
    }
    if let Some(percent) = opts.clear_threshold_percent {
        let before = plan.ops.len();
        (plan.held_clears, plan.spared) = clears::hold_clears(&mut plan.ops, known.len(), percent);
        plan.unchanged += before - plan.ops.len();
    }
    plan.hold = opts.holds(deprovisions.len(), known.len());
    if plan.hold.is_some() {
        plan.held = deprovisions;
    } else {
        plan.ops.extend(deprovisions);
    }
    Ok(plan)
}

/// The snapshot's users that are no longer desired, as deprovisions (not yet held back).
fn user_deprovisions(
    known: &BTreeMap<SourceId, UserSummary>,
    desired: impl Fn(&SourceId) -> bool,
    protected: &BTreeSet<SourceId>,
    opts: PlanOptions,
) -> Vec<UserOp> {
    let mut deprovisions = Vec::new();
    for (id, entry) in known {
        if desired(id) || protected.contains(id) {
            continue;
        }
        if entry.deprovisioned && opts.mode == DeprovisionMode::Deactivate {
            continue;
        }
        deprovisions.push(UserOp::Deprovision {
            id: id.clone(),
            scim_id: entry.scim_id.clone(),
            mode: opts.mode,
        });
    }
    deprovisions
}

/// Plans the groups of one target. `accounts` are the users that have (or, in a dry run, are
/// about to get) an account on the target: only they can be added as members.
pub(crate) fn plan_groups(
    snapshot: &BTreeMap<SourceId, GroupEntry>,
    desired: &BTreeMap<SourceId, DesiredGroup>,
    accounts: &BTreeSet<SourceId>,
    protected: &BTreeSet<SourceId>,
    opts: PlanOptions,
) -> GroupPlan {
    let deprovisions = group_deprovisions(snapshot, |id| desired.contains_key(id), protected, opts);
    plan_desired_groups(
        snapshot,
        desired
            .iter()
            .map(|(id, g)| (Cow::Borrowed(id), Cow::Borrowed(g))),
        |m| accounts.contains(m),
        deprovisions,
        opts,
    )
}

/// [`plan_groups`] that takes the desired groups by value, so that the operations take each
/// group's member set over instead of copying it, and asks `has_account` whether a user has
/// (or is about to get) an account instead of needing a set of them.
pub(crate) fn plan_groups_owned(
    snapshot: &BTreeMap<SourceId, GroupEntry>,
    desired: BTreeMap<SourceId, DesiredGroup>,
    has_account: impl Fn(&SourceId) -> bool,
    protected: &BTreeSet<SourceId>,
    opts: PlanOptions,
) -> GroupPlan {
    let deprovisions = group_deprovisions(snapshot, |id| desired.contains_key(id), protected, opts);
    plan_desired_groups(
        snapshot,
        desired
            .into_iter()
            .map(|(id, g)| (Cow::Owned(id), Cow::Owned(g))),
        has_account,
        deprovisions,
        opts,
    )
}

fn plan_desired_groups<'a>(
    snapshot: &BTreeMap<SourceId, GroupEntry>,
    desired: impl Iterator<Item = (Cow<'a, SourceId>, Cow<'a, DesiredGroup>)>,
    has_account: impl Fn(&SourceId) -> bool,
    deprovisions: Vec<GroupOp>,
    opts: PlanOptions,
) -> GroupPlan {
    let mut plan = GroupPlan::default();
    for (id, want) in desired {
        match snapshot.get(&*id) {
            Some(entry) if !opts.full => {
                let changes = diff_desired(&entry.attrs, &want.desired);
                // A member whose user has no account (its mapping failed, say) cannot be added
                // yet; it is left out so that an idle cycle stays idle.
                let add: Vec<SourceId> = want
                    .members
                    .iter()
                    .filter(|m| !entry.members.contains_key(*m) && has_account(m))
                    .cloned()
                    .collect();
                let remove: Vec<(SourceId, ScimId)> = entry
                    .members
                    .iter()
                    .filter(|(m, _)| !want.members.contains(*m))
                    .map(|(m, s)| (m.clone(), s.clone()))
                    .collect();
                if changes.is_empty() && remove.is_empty() && add.is_empty() {
                    plan.unchanged += 1;
                } else {
                    plan.ops.push(GroupOp::Update {
                        id: id.into_owned(),
                        scim_id: entry.scim_id.clone(),
                        changes,
                        add,
                        remove,
                        group: want.into_owned(),
                    });
                }
            }
            _ => plan.ops.push(GroupOp::MatchOrCreate {
                id: id.into_owned(),
                group: want.into_owned(),
            }),
        }
    }
    plan.hold = opts.holds(deprovisions.len(), snapshot.len());
    if plan.hold.is_some() {
        plan.held = deprovisions;
    } else {
        plan.ops.extend(deprovisions);
    }
    plan
}

/// The snapshot's groups that are no longer desired, as deprovisions (not yet held back).
fn group_deprovisions(
    snapshot: &BTreeMap<SourceId, GroupEntry>,
    desired: impl Fn(&SourceId) -> bool,
    protected: &BTreeSet<SourceId>,
    opts: PlanOptions,
) -> Vec<GroupOp> {
    snapshot
        .iter()
        .filter(|(id, _)| !desired(id) && !protected.contains(*id))
        .map(|(id, entry)| GroupOp::Deprovision {
            id: id.clone(),
            scim_id: entry.scim_id.clone(),
            mode: opts.mode,
            members: entry.members.values().cloned().collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests;
