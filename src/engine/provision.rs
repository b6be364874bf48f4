//! On-demand provisioning of one user to one target, step by step as Entra ID's
//! provision-on-demand shows it: import, scope, match, action.
//!
//! The decisions are the cycle's own: the same desired state, the same plan, and the same
//! [`Executor`], watched by a [`Recorder`] that writes its steps down. A dry run is that
//! executor writing nothing: it makes the matching queries (reads) and no write.

use super::adopt::Subject;
use super::cycle::{load_profile, open_log, plan_options};
use super::executor::Executor;
use super::record::Recorder;
use super::report::Outcome;
use super::{desired_state, CycleOptions, DesiredState, EngineError};
use crate::audit::Kind;
use crate::config::DeprovisionMode;
use crate::ids::{ScimId, SourceId, TargetName};
use crate::plan::{self, UserOp};
use crate::scim::Client;
use crate::scope;
use crate::source::{AttrValue, Directory};
use crate::state::{Snapshot, Store, UserEntry};
use crate::target::Target;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use tokio_util::sync::CancellationToken;

/// What provisioning one user to one target found, decided and did.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct ProvisionReport {
    pub(crate) target: String,
    /// The source object id, when the user is known.
    pub(crate) object_id: Option<String>,
    /// Step 1: the source attributes, as `name = value`.
    pub(crate) import: Vec<String>,
    /// Step 2: each scoping rule and its verdict.
    pub(crate) scope: Vec<String>,
    pub(crate) in_scope: bool,
    /// Step 3: each matching attribute, the filter sent and the hits.
    pub(crate) matching: Vec<String>,
    /// Step 4: create, update, deprovision or skip.
    pub(crate) action: String,
    /// Why, for a skip.
    pub(crate) reason: Option<String>,
    /// Every modified attribute, `path: old -> new`.
    pub(crate) changes: Vec<String>,
    /// What the write did (or would do in a dry run).
    pub(crate) result: Option<String>,
    /// Group memberships added (or left to the next cycle).
    pub(crate) groups: Vec<String>,
    /// True when the user could not be brought in step (failed, ambiguous, bad data).
    pub(crate) failed: bool,
}

/// How a user was asked for: a source user, or a managed account known only by its userName.
pub(crate) enum Who<'a> {
    Source(&'a crate::source::SourceObject),
    Managed(SourceId),
}

/// Finds the source id of a user by the SCIM `userName` it has (or would have) on a target.
pub(crate) fn find_by_user_name(
    dir: &Directory,
    target: &Target,
    snapshot: &Snapshot,
    key: &str,
) -> Result<Option<SourceId>, EngineError> {
    let is = |attrs: &BTreeMap<String, Json>| {
        attrs
            .get("userName")
            .and_then(Json::as_str)
            .is_some_and(|v| v.eq_ignore_ascii_case(key))
    };
    if let Some((id, _)) = snapshot.users()?.into_iter().find(|(_, e)| is(&e.attrs)) {
        return Ok(Some(id));
    }
    let want = desired_state(Cow::Borrowed(dir), target, &|_| false)?;
    Ok(want
        .users
        .into_iter()
        .find(|(_, d)| is(&d.attrs))
        .map(|(id, _)| id))
}

/// Provisions one user to one target now (or, with `dry_run`, only says what would be done).
/// The HTTP calls, matching queries included, go to the provisioning log's record.
pub(crate) async fn provision(
    dir: &Directory,
    who: Who<'_>,
    target: &Target,
    store: &Store,
    dry_run: bool,
    stop: &CancellationToken,
) -> Result<ProvisionReport, EngineError> {
    let id = match &who {
        Who::Source(u) => u.id.clone(),
        Who::Managed(id) => id.clone(),
    };
    let mut r = ProvisionReport {
        target: target.name.clone(),
        object_id: Some(id.to_string()),
        import: import(&who),
        ..Default::default()
    };
    scope_step(dir, target, &id, &mut r)?;
    let snapshot = store.snapshot(&TargetName(target.name.clone()))?;
    let profile = load_profile(&snapshot, target, false)?;
    let mut want = desired_state(Cow::Borrowed(dir), target, &|p| profile.refuses(p))?;
    let accounts: BTreeMap<SourceId, ScimId> = snapshot
        .user_summaries()?
        .into_iter()
        .map(|(sid, e)| (sid, e.scim_id))
        .collect();
    let of = |m: &SourceId| accounts.get(m).cloned();
    let pending = super::references::resolve_in(target, &snapshot, &of, &mut want);
    if let Some((_, _, why)) = want.rejected.iter().find(|(rid, _, _)| rid == &id) {
        r.action = "skip".into();
        r.reason = Some(why.clone());
        r.failed = true;
        return Ok(r);
    }
    let client = Client::new(target, profile)?
        .without_bulk()
        .holding(store.gate(&target.name));
    // A dry run stores nothing.
    let log = if dry_run {
        None
    } else {
        open_log(store, &target.name)
    };
    let cycle_id = format!("provision-{}", uuid::Uuid::new_v4());
    let rec = Recorder::new(&cycle_id, &target.name, log).watching();
    let mut exec = Executor::new(&client, &snapshot, target, rec);
    exec.dry_run = dry_run || stop.is_cancelled();
    exec.pending = pending;
    for (sid, scim_id) in &accounts {
        exec.claim(Kind::User, scim_id, sid);
    }
    let entry = snapshot.user(&id)?;
    crate::audit::collect(async {
        act(&exec, &id, &want, entry.as_ref(), &mut r).await?;
        if !r.failed {
            groups_step(&exec, &id, &want, entry.as_ref(), &mut r).await?;
        }
        Ok::<_, EngineError>(())
    })
    .await?;
    if exec.dry_run {
        r.result = Some("dry run: nothing was written".into());
    } else {
        if let Some(learned) = client.profile().take_changed() {
            snapshot.set_meta(super::cycle::PROFILE_KEY, &learned)?;
        }
        store.flush().await?;
    }
    Ok(r)
}

/// Step 1: the source attributes, as `name = value`.
fn import(who: &Who<'_>) -> Vec<String> {
    match who {
        Who::Source(u) => u
            .iter()
            .map(|(name, v)| {
                let shown = match v {
                    AttrValue::Single(s) => format!("{s:?}"),
                    AttrValue::Multi(m) => format!("{m:?}"),
                };
                format!("{name} = {shown}")
            })
            .collect(),
        Who::Managed(id) => vec![format!(
            "objectId {id} is not in the source; scimsync manages its account on this target"
        )],
    }
}

/// Step 2: each assignment and its verdict.
fn scope_step(
    dir: &Directory,
    target: &Target,
    id: &SourceId,
    r: &mut ProvisionReport,
) -> Result<(), EngineError> {
    let from = if target.own_scope {
        "this target's [target.scope]"
    } else {
        "the global [scope]"
    };
    r.scope.push(format!("scope: {from}"));
    let (lines, in_scope) = scope::explain(dir, &target.scope, id)?;
    r.scope.extend(lines);
    r.in_scope = in_scope;
    Ok(())
}

/// Steps 3 and 4: match, and the action, by the cycle's executor, watched.
async fn act(
    exec: &Executor<'_>,
    id: &SourceId,
    want: &DesiredState,
    entry: Option<&UserEntry>,
    r: &mut ProvisionReport,
) -> Result<(), EngineError> {
    let target = exec.target;
    let kept = want.out_of_scope.get(id).filter(|o| o.keep);
    let outcome = match (want.users.get(id), entry) {
        (None, Some(e)) if kept.is_some() => {
            r.matching
                .push("not needed: the user is not in scope".into());
            r.action = "keep".into();
            let forget = super::leaving::kept_one(id, &e.scim_id, kept.map_or("", |o| &*o.why));
            r.reason = Some(forget.why.clone());
            if !exec.dry_run {
                super::leaving::forget(exec.snapshot, &exec.rec, &[forget])?;
            }
            None
        }
        (None, Some(e))
            if !(e.deprovisioned && target.deprovision == DeprovisionMode::Deactivate) =>
        {
            r.matching
                .push("not needed: the user is not in scope".into());
            r.reason = Some("not in scope, and scimsync manages its account".into());
            r.groups
                .push("removal from provisioned groups is left to the next cycle".into());
            Some(
                exec.deprovision_user(id, e.scim_id.clone(), target.deprovision)
                    .await,
            )
        }
        (None, managed) => {
            r.matching
                .push("not needed: the user is not in scope".into());
            r.action = "skip".into();
            r.reason = Some(match managed {
                Some(e) => format!(
                    "not in scope; its account {} is already deactivated",
                    e.scim_id
                ),
                None => "not in scope, and scimsync manages no account for it".into(),
            });
            None
        }
        (Some(desired), Some(e)) => {
            r.matching.push(format!(
                "already managed: account {} ({}); no query needed",
                e.scim_id,
                match &e.matched_by {
                    crate::state::MatchedBy::Created => "created by scimsync".to_owned(),
                    crate::state::MatchedBy::Adopted(by) => format!("adopted by {by}"),
                }
            ));
            let popts = plan_options(target, CycleOptions::default());
            let one_snap = BTreeMap::from([(id.clone(), e.clone())]);
            let one_want = BTreeMap::from([(id.clone(), desired.clone())]);
            match plan::plan_users(&one_snap, &one_want, &BTreeSet::new(), popts)
                .ops
                .pop()
            {
                Some(op @ UserOp::Update { .. }) => Some(exec.user(op).await),
                _ => {
                    r.action = "skip".into();
                    r.reason = Some("no change: the account already holds these values".into());
                    None
                }
            }
        }
        (Some(desired), None) => Some(exec.match_or_create(id, Subject::User(desired)).await),
    };
    let steps = exec.rec.steps();
    r.matching.extend(steps.matching);
    if let Some(action) = steps.action {
        r.action = action;
    }
    r.changes = steps.changes;
    if let Some(o) = outcome {
        let account = exec
            .snapshot
            .user(id)?
            .map(|e| e.scim_id)
            .or_else(|| entry.map(|e| e.scim_id.clone()));
        finish(r, o, account.as_ref(), exec.dry_run);
    }
    Ok(())
}

/// Group memberships: added now to assigned groups already provisioned; the rest (a group not
/// yet created, attribute changes of a group) is left to the next cycle.
async fn groups_step(
    exec: &Executor<'_>,
    id: &SourceId,
    want: &DesiredState,
    entry: Option<&UserEntry>,
    r: &mut ProvisionReport,
) -> Result<(), EngineError> {
    let account = if exec.dry_run {
        entry.map(|e| e.scim_id.clone())
    } else {
        exec.snapshot.user(id)?.map(|e| e.scim_id)
    };
    let groups = exec.snapshot.groups()?;
    for (gid, g) in &want.groups {
        if !g.members.contains(id) {
            continue;
        }
        let name = g
            .desired
            .attrs
            .get("displayName")
            .and_then(Json::as_str)
            .unwrap_or(gid.as_str())
            .to_owned();
        let Some(gentry) = groups.get(gid) else {
            r.groups.push(format!(
                "group {name:?}: not provisioned yet; the next cycle creates it with its members"
            ));
            continue;
        };
        if gentry.members.contains_key(id) {
            r.groups.push(format!("group {name:?}: already a member"));
            continue;
        }
        let line = match (&account, exec.dry_run) {
            (_, true) => format!(
                "group {name:?}: would add the user as a member (PATCH /Groups/{})",
                gentry.scim_id
            ),
            (None, false) => {
                format!("group {name:?}: the user has no account yet; left to the next cycle")
            }
            (Some(scim), false) => {
                let member = [(id.clone(), scim.clone())];
                let added = exec
                    .patch_members(gid, gentry.clone(), &g.desired, &[], &member, &[])
                    .await;
                match added {
                    Ok(()) => format!("group {name:?}: member added"),
                    Err(e) => {
                        r.failed = true;
                        format!("group {name:?}: adding the member failed: {e}")
                    }
                }
            }
        };
        r.groups.push(line);
    }
    Ok(())
}

fn finish(r: &mut ProvisionReport, o: Outcome, scim_id: Option<&ScimId>, dry_run: bool) {
    let account = scim_id.map_or_else(|| "(none)".to_owned(), ToString::to_string);
    let (text, failed) = match o {
        Outcome::Created => (format!("created account {account}"), false),
        Outcome::Updated => (format!("updated account {account}"), false),
        Outcome::Unchanged => (format!("account {account} already in step"), false),
        Outcome::Deprovisioned => (format!("deprovisioned account {account}"), false),
        Outcome::Skipped(why) => {
            r.reason = Some(why.clone());
            (format!("skipped: {why}"), true)
        }
        Outcome::Failed(why) => (format!("failed: {why}"), true),
        Outcome::NotSent => (
            "not sent: the target refused or could not be reached earlier".to_owned(),
            true,
        ),
        Outcome::Interrupted => ("not sent: scimsync is shutting down".to_owned(), true),
    };
    if !dry_run || failed {
        r.result = Some(text);
    }
    r.failed |= failed;
}
