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
mod tests {
    use super::*;
    use crate::state::{GroupEntry, MatchedBy};
    use serde_json::json;

    fn desired(pairs: &[(&str, Json)]) -> Desired {
        Desired {
            attrs: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            ..Default::default()
        }
    }

    fn entry(d: &Desired, scim: &str) -> UserEntry {
        UserEntry {
            scim_id: ScimId::from(scim),
            attrs: d.attrs.clone(),
            hash: hash(&d.attrs),
            active: true,
            deprovisioned: false,
            matched_by: MatchedBy::Created,
            changed_at: String::new(),
        }
    }

    fn opts() -> PlanOptions {
        PlanOptions {
            deletion_threshold: 10,
            ..Default::default()
        }
    }

    /// A snapshot of users b, c and gone, and the desired state: b renamed (b2), c the same.
    fn changed_same_and_gone() -> (BTreeMap<SourceId, UserEntry>, Desired, Desired) {
        let b = desired(&[("userName", json!("b")), ("name.formatted", json!("B"))]);
        let b2 = desired(&[("userName", json!("b")), ("name.formatted", json!("B2"))]);
        let c = desired(&[("userName", json!("c"))]);
        let snapshot = [
            (SourceId::from("b"), entry(&b, "sb")),
            (SourceId::from("c"), entry(&c, "sc")),
            (SourceId::from("gone"), entry(&c, "sg")),
        ]
        .into();
        (snapshot, b2, c)
    }

    #[test]
    fn an_attribute_sent_only_on_create_is_no_clear() {
        // b was created with name.formatted; the target has since refused it in a PATCH, so
        // the desired state sends it only on create.
        let (snapshot, _, c) = changed_same_and_gone();
        let mut b = desired(&[("userName", json!("b"))]);
        b.on_create.insert("name.formatted".into(), json!("B"));
        let want: BTreeMap<_, _> = [(SourceId::from("b"), b), (SourceId::from("c"), c)].into();
        let protected = BTreeSet::from([SourceId::from("gone")]);
        let plan = plan_users(&snapshot, &want, &protected, opts());
        assert_eq!(plan.ops, vec![]);
        assert_eq!(plan.unchanged, 2);
        // A value the source no longer has is still cleared.
        let mut old = snapshot[&SourceId::from("b")].attrs.clone();
        old.insert("title".into(), json!("T"));
        let mut b = desired(&[("userName", json!("b"))]);
        b.on_create.insert("name.formatted".into(), json!("B"));
        let changes = diff_desired(&old, &b);
        assert_eq!(changes.len(), 1);
        assert_eq!(
            (changes[0].path.as_str(), changes[0].new.clone()),
            ("title", None)
        );
    }

    #[test]
    fn new_changed_same_and_gone() {
        let a = desired(&[("userName", json!("a")), ("active", json!(true))]);
        let (snapshot, b2, c) = changed_same_and_gone();
        let want: BTreeMap<_, _> = [
            (SourceId::from("a"), a.clone()),
            (SourceId::from("b"), b2.clone()),
            (SourceId::from("c"), c),
        ]
        .into();
        let plan = plan_users(&snapshot, &want, &BTreeSet::new(), opts());
        assert_eq!(plan.unchanged, 1);
        assert_eq!(
            plan.ops,
            vec![
                UserOp::MatchOrCreate {
                    id: "a".into(),
                    desired: a
                },
                UserOp::Update {
                    id: "b".into(),
                    scim_id: "sb".into(),
                    changes: vec![Change {
                        path: "name.formatted".into(),
                        old: Some(json!("B")),
                        new: Some(json!("B2"))
                    }],
                    desired: b2,
                },
                UserOp::Deprovision {
                    id: "gone".into(),
                    scim_id: "sg".into(),
                    mode: DeprovisionMode::Deactivate
                },
            ]
        );
    }

    #[test]
    fn the_owned_plan_decodes_only_the_users_whose_hash_differs() {
        let (snapshot, b2, c) = changed_same_and_gone();
        let want: BTreeMap<_, _> = [(SourceId::from("b"), b2), (SourceId::from("c"), c)].into();
        let known = snapshot
            .iter()
            .map(|(id, e)| (id.clone(), UserSummary::from(e)))
            .collect();
        let mut decoded = Vec::new();
        let plan = plan_users_owned(&known, want.clone(), &BTreeSet::new(), opts(), |id| {
            decoded.push(id.clone());
            Ok::<_, String>(snapshot[id].attrs.clone())
        })
        .expect("no decode fails");
        assert_eq!(decoded, vec![SourceId::from("b")]);
        assert_eq!(
            plan.ops,
            vec![
                UserOp::Update {
                    id: "b".into(),
                    scim_id: "sb".into(),
                    changes: vec![Change {
                        path: "name.formatted".into(),
                        old: Some(json!("B")),
                        new: Some(json!("B2"))
                    }],
                    desired: want[&SourceId::from("b")].clone(),
                },
                UserOp::Deprovision {
                    id: "gone".into(),
                    scim_id: "sg".into(),
                    mode: DeprovisionMode::Deactivate
                },
            ]
        );
        assert_eq!((plan.unchanged, plan.held.len()), (1, 0));

        // A snapshot entry that cannot be decoded stops the plan instead of planning blind.
        let failed = plan_users_owned(&known, want, &BTreeSet::new(), opts(), |id| {
            Err(format!("{id} is corrupt"))
        });
        assert_eq!(failed.err(), Some("b is corrupt".to_owned()));
    }

    #[test]
    fn protected_and_already_deprovisioned_are_left_alone() {
        let c = desired(&[("userName", json!("c"))]);
        let mut done = entry(&c, "s2");
        done.deprovisioned = true;
        let snapshot: BTreeMap<_, _> = [
            (SourceId::from("p"), entry(&c, "s1")),
            (SourceId::from("d"), done),
        ]
        .into();
        let protected: BTreeSet<_> = [SourceId::from("p")].into();
        let plan = plan_users(&snapshot, &BTreeMap::new(), &protected, opts());
        assert!(plan.ops.is_empty(), "{:?}", plan.ops);
    }

    #[test]
    fn deprovisions_over_the_threshold_are_held() {
        let c = desired(&[("userName", json!("c"))]);
        let snapshot: BTreeMap<_, _> = (0..3)
            .map(|i| (SourceId(format!("u{i}")), entry(&c, "s")))
            .collect();
        let o = PlanOptions {
            deletion_threshold: 2,
            ..opts()
        };
        let plan = plan_users(&snapshot, &BTreeMap::new(), &BTreeSet::new(), o);
        assert!(plan.ops.is_empty());
        assert_eq!(plan.held.len(), 3);
        let plan = plan_users(
            &snapshot,
            &BTreeMap::new(),
            &BTreeSet::new(),
            PlanOptions {
                allow_deletes: true,
                ..o
            },
        );
        assert_eq!(plan.ops.len(), 3);
    }

    #[test]
    fn deprovisions_over_the_threshold_percent_are_held() {
        let c = desired(&[("userName", json!("c"))]);
        let snapshot: BTreeMap<_, _> = (0..10)
            .map(|i| (SourceId(format!("u{i}")), entry(&c, "s")))
            .collect();
        let keep: BTreeMap<_, _> = (0..7)
            .map(|i| (SourceId(format!("u{i}")), c.clone()))
            .collect();
        let o = PlanOptions {
            deletion_threshold: 100,
            deletion_threshold_percent: Some(20.0),
            ..opts()
        };
        // 3 of 10 is 30%: over 20%, held although under the count.
        let plan = plan_users(&snapshot, &keep, &BTreeSet::new(), o);
        assert_eq!(plan.held.len(), 3);
        // The reason is the percentage, not the count (regression: it was reported as the
        // count threshold).
        assert_eq!(
            plan.hold.as_ref().map(ToString::to_string).as_deref(),
            Some("more than deletion_threshold_percent = 20% of the managed objects")
        );
        // 2 of 10 is exactly 20%: carried out.
        let keep: BTreeMap<_, _> = (0..8)
            .map(|i| (SourceId(format!("u{i}")), c.clone()))
            .collect();
        let plan = plan_users(&snapshot, &keep, &BTreeSet::new(), o);
        assert!(plan.held.is_empty());
        assert_eq!(plan.ops.len(), 2);
        assert_eq!(o.holds(0, 0), None);
    }

    #[test]
    fn full_sync_rematches_everything() {
        let c = desired(&[("userName", json!("c"))]);
        let snapshot: BTreeMap<_, _> = [(SourceId::from("c"), entry(&c, "s"))].into();
        let want: BTreeMap<_, _> = [(SourceId::from("c"), c)].into();
        let plan = plan_users(
            &snapshot,
            &want,
            &BTreeSet::new(),
            PlanOptions {
                full: true,
                ..opts()
            },
        );
        assert!(matches!(
            plan.ops.as_slice(),
            [UserOp::MatchOrCreate { .. }]
        ));
    }

    fn group_entry(attrs: &Desired, members: &[(&str, &str)]) -> GroupEntry {
        GroupEntry {
            scim_id: ScimId::from("sg"),
            attrs: attrs.attrs.clone(),
            members: members
                .iter()
                .map(|(m, s)| (SourceId::from(*m), ScimId::from(*s)))
                .collect(),
            matched_by: MatchedBy::Created,
            changed_at: String::new(),
        }
    }

    #[test]
    fn group_rename_and_member_changes_only_for_members_with_accounts() {
        let old = desired(&[("displayName", json!("Staff"))]);
        let new = desired(&[("displayName", json!("Crew"))]);
        let snapshot: BTreeMap<_, _> = [(
            SourceId::from("g"),
            group_entry(&old, &[("a", "sa"), ("b", "sb")]),
        )]
        .into();
        let members: BTreeSet<SourceId> = ["a", "c", "no-account"]
            .iter()
            .map(|s| SourceId::from(*s))
            .collect();
        let want: BTreeMap<_, _> = [(
            SourceId::from("g"),
            DesiredGroup {
                desired: new.clone(),
                members,
            },
        )]
        .into();
        let accounts: BTreeSet<SourceId> =
            ["a", "b", "c"].iter().map(|s| SourceId::from(*s)).collect();
        let plan = plan_groups(&snapshot, &want, &accounts, &BTreeSet::new(), opts());
        match plan.ops.as_slice() {
            [GroupOp::Update {
                changes,
                add,
                remove,
                ..
            }] => {
                assert_eq!(
                    changes,
                    &vec![Change {
                        path: "displayName".into(),
                        old: Some(json!("Staff")),
                        new: Some(json!("Crew"))
                    }]
                );
                assert_eq!(add, &vec![SourceId::from("c")]);
                assert_eq!(remove, &vec![(SourceId::from("b"), ScimId::from("sb"))]);
            }
            other => panic!("expected one update, got {other:?}"),
        }
        // Same attributes, and the only missing member has no account: nothing to do.
        let members: BTreeSet<SourceId> = ["a", "b", "no-account"]
            .iter()
            .map(|s| SourceId::from(*s))
            .collect();
        let want: BTreeMap<_, _> = [(
            SourceId::from("g"),
            DesiredGroup {
                desired: old,
                members,
            },
        )]
        .into();
        let plan = plan_groups(&snapshot, &want, &accounts, &BTreeSet::new(), opts());
        assert!(plan.ops.is_empty());
        assert_eq!(plan.unchanged, 1);
    }

    #[test]
    fn a_group_leaving_scope_is_deprovisioned_with_its_managed_members() {
        let old = desired(&[("displayName", json!("Staff"))]);
        let snapshot: BTreeMap<_, _> =
            [(SourceId::from("g"), group_entry(&old, &[("a", "sa")]))].into();
        let plan = plan_groups(
            &snapshot,
            &BTreeMap::new(),
            &BTreeSet::new(),
            &BTreeSet::new(),
            opts(),
        );
        assert_eq!(
            plan.ops,
            vec![GroupOp::Deprovision {
                id: "g".into(),
                scim_id: "sg".into(),
                mode: DeprovisionMode::Deactivate,
                members: vec!["sa".into()]
            }]
        );
    }
}
