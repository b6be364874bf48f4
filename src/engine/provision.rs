//! On-demand provisioning of one user to one target, step by step as Entra ID's
//! provision-on-demand shows it: import, scope, match, action.
//!
//! The decisions are the cycle's own (the same desired state, the same plan, the same
//! [`Executor`]), restricted to one user; only the explanation is added. A dry run makes the
//! matching queries (GET) and no write.

use super::{
    desired_state, plan_options, same_value, value_text, CycleOptions, EngineError, Executor,
    Outcome,
};
use crate::config::{Config, DeprovisionMode, TargetConfig};
use crate::ids::{ScimId, SourceId, TargetName};
use crate::mapping::Desired;
use crate::plan::{self, Change, UserOp};
use crate::scim::{Client, Endpoint};
use crate::scope;
use crate::source::{AttrValue, Directory};
use crate::state::{Snapshot, UserEntry};
use serde::Serialize;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// What provisioning one user to one target found, decided and did.
#[derive(Debug, Default, Serialize)]
pub struct ProvisionReport {
    pub target: String,
    /// The source object id, when the user is known.
    pub object_id: Option<String>,
    /// Step 1: the source attributes, as `name = value`.
    pub import: Vec<String>,
    /// Step 2: each scoping rule and its verdict.
    pub scope: Vec<String>,
    pub in_scope: bool,
    /// Step 3: each matching attribute, the filter sent and the hits.
    pub matching: Vec<String>,
    /// Step 4: create, update, deprovision or skip.
    pub action: String,
    /// Why, for a skip.
    pub reason: Option<String>,
    /// Every modified attribute, `path: old -> new`.
    pub changes: Vec<String>,
    /// What the write did (or would do in a dry run).
    pub result: Option<String>,
    /// Group memberships added (or left to the next cycle).
    pub groups: Vec<String>,
    /// True when the user could not be brought in step (failed, ambiguous, bad data).
    pub failed: bool,
}

/// How a user was asked for: a source user, or a managed account known only by its userName.
pub enum Who<'a> {
    Source(&'a crate::source::SourceObject),
    Managed(SourceId),
}

/// Finds the source id of a user by the SCIM `userName` it has (or would have) on a target.
pub fn find_by_user_name(
    dir: &Directory,
    config: &Config,
    target: &TargetConfig,
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
    let want = desired_state(dir, &config.scope, target)?;
    Ok(want
        .users
        .into_iter()
        .find(|(_, d)| is(&d.attrs))
        .map(|(id, _)| id))
}

/// Provisions one user to one target now (or, with `dry_run`, only says what would be done).
/// The HTTP calls, matching queries included, go to the provisioning log's record.
pub async fn provision(
    dir: &Directory,
    who: Who<'_>,
    config: &Config,
    target: &TargetConfig,
    store: &crate::state::Store,
    dry_run: bool,
    stop: &CancellationToken,
) -> Result<ProvisionReport, EngineError> {
    crate::audit::collect(steps(dir, who, config, target, store, dry_run, stop)).await
}

async fn steps(
    dir: &Directory,
    who: Who<'_>,
    config: &Config,
    target: &TargetConfig,
    store: &crate::state::Store,
    dry_run: bool,
    stop: &CancellationToken,
) -> Result<ProvisionReport, EngineError> {
    let snapshot = store.snapshot(&TargetName(target.name.clone()))?;
    let mut r = ProvisionReport {
        target: target.name.clone(),
        ..Default::default()
    };
    let id = match &who {
        Who::Source(u) => u.id.clone(),
        Who::Managed(id) => id.clone(),
    };
    r.object_id = Some(id.to_string());

    // 1. Import.
    match &who {
        Who::Source(u) => {
            for (name, v) in u.iter() {
                let shown = match v {
                    AttrValue::Single(s) => format!("{s:?}"),
                    AttrValue::Multi(m) => format!("{m:?}"),
                };
                r.import.push(format!("{name} = {shown}"));
            }
        }
        Who::Managed(_) => r.import.push(format!(
            "objectId {id} is not in the source; scimsync manages its account on this target"
        )),
    }

    // 2. Scope.
    let scoped = scope::apply(dir, &config.scope)?;
    if config.scope.all {
        r.scope
            .push("all users are in scope (scope.all = true)".into());
    }
    for g in &scoped.groups {
        let name = g
            .group
            .object
            .get_str("displayName")
            .unwrap_or(g.group.object.id.as_str());
        let member = g.group.members.contains(&id);
        let verdict = match (member, g.members.contains(&id)) {
            (true, true) => "direct member: yes",
            (true, false) => "listed as a member, but not a user of the source",
            (false, _) => "direct member: no",
        };
        r.scope.push(format!(
            "assigned group {name:?} ({}): {verdict}",
            g.group.object.id
        ));
    }
    if !config.scope.users.is_empty() {
        let yes = config.scope.users.iter().any(|u| u == id.as_str());
        r.scope.push(format!(
            "directly assigned users: {}",
            if yes { "yes" } else { "no" }
        ));
    }
    r.in_scope = scoped.users.contains_key(&id);
    r.scope.push(match scoped.users.get(&id) {
        Some((_, why)) => format!("verdict: in scope ({why})"),
        None => "verdict: not in scope".into(),
    });
    drop(scoped);

    let want = desired_state(dir, &config.scope, target)?;
    let entry = snapshot.user(&id)?;
    let popts = plan_options(
        target,
        CycleOptions {
            dry_run,
            ..Default::default()
        },
    );
    if let Some((_, _, why)) = want.rejected.iter().find(|(rid, _, _)| rid == &id) {
        r.action = "skip".into();
        r.reason = Some(why.clone());
        r.failed = true;
        return Ok(r);
    }

    let client = Client::new(target)
        .map(Client::without_bulk)
        .map_err(EngineError::Target)?;
    let exec = Executor {
        client: &client,
        snapshot: &snapshot,
        target,
        cycle_id: &format!("provision-{}", uuid::Uuid::new_v4()),
        claimed: Mutex::new(BTreeMap::new()),
        index: None,
        // A dry run stores nothing.
        log: if dry_run {
            None
        } else {
            super::open_log(store)
        },
        staged: Default::default(),
    };
    for (sid, e) in snapshot.user_summaries()? {
        exec.claim(&e.scim_id, &sid);
    }

    let Some(desired) = want.users.get(&id) else {
        // Out of scope: deprovisioned only if scimsync manages the account.
        r.matching
            .push("not needed: the user is not in scope".into());
        match entry {
            Some(e) if !(e.deprovisioned && target.deprovision == DeprovisionMode::Deactivate) => {
                r.action = "deprovision".into();
                r.reason = Some("not in scope, and scimsync manages its account".into());
                r.changes.push(match target.deprovision {
                    DeprovisionMode::Deactivate => "active: true -> false".into(),
                    DeprovisionMode::Delete => format!("DELETE /Users/{}", e.scim_id),
                });
                if !dry_run && !stop.is_cancelled() {
                    let o = exec
                        .deprovision_user(&id, e.scim_id.clone(), target.deprovision)
                        .await;
                    finish(&mut r, o, &e.scim_id);
                }
                r.groups
                    .push("removal from provisioned groups is left to the next cycle".into());
            }
            Some(e) => {
                r.action = "skip".into();
                r.reason = Some(format!(
                    "not in scope; its account {} is already deactivated",
                    e.scim_id
                ));
            }
            None => {
                r.action = "skip".into();
                r.reason = Some("not in scope, and scimsync manages no account for it".into());
            }
        }
        return finish_dry(r, dry_run, store).await;
    };

    // 3. Match, and 4. action.
    if let Some(e) = &entry {
        r.matching.push(format!(
            "already managed: account {} ({}); no query needed",
            e.scim_id,
            match &e.matched_by {
                crate::state::MatchedBy::Created => "created by scimsync".to_owned(),
                crate::state::MatchedBy::Adopted(by) => format!("adopted by {by}"),
            }
        ));
        let one_snap = BTreeMap::from([(id.clone(), e.clone())]);
        let one_want = BTreeMap::from([(id.clone(), desired.clone())]);
        let ops = plan::plan_users(&one_snap, &one_want, &BTreeSet::new(), popts).ops;
        match ops.into_iter().next() {
            Some(UserOp::Update {
                id,
                scim_id,
                changes,
                desired,
            }) => {
                r.action = "update".into();
                r.changes = super::shown_changes(&desired, &changes);
                if !dry_run && !stop.is_cancelled() {
                    let o = exec
                        .user(UserOp::Update {
                            id,
                            scim_id: scim_id.clone(),
                            changes,
                            desired,
                        })
                        .await;
                    finish(&mut r, o, &scim_id);
                }
            }
            _ => {
                r.action = "skip".into();
                r.reason = Some("no change: the account already holds these values".into());
            }
        }
    } else {
        let found = traced_find(&exec, desired, &mut r).await;
        match found {
            Err(why) => {
                r.action = "skip".into();
                r.reason = Some(why);
                r.failed = true;
            }
            Ok(Some((resource, by))) => {
                let scim_id = resource
                    .get("id")
                    .and_then(Json::as_str)
                    .map(ScimId::from)
                    .unwrap_or_else(|| ScimId::from(""));
                let current: BTreeMap<String, Json> = target
                    .mappings
                    .users
                    .iter()
                    .filter(|rule| rule.apply == crate::config::Apply::Always)
                    .filter_map(|rule| {
                        rule.target
                            .read(&resource)
                            .map(|v| (rule.target.to_string(), v))
                    })
                    .collect();
                let changes = plan::diff(&current, &desired.attrs);
                r.action = format!("update (adopt account {scim_id} matched by {by})");
                r.changes = super::shown_changes(desired, &changes);
                if !dry_run && !stop.is_cancelled() {
                    let o = exec.adopt_user(&id, desired, &resource, by).await;
                    finish(&mut r, o, &scim_id);
                }
            }
            Ok(None) => {
                r.action = "create".into();
                r.changes = desired
                    .on_create
                    .iter()
                    .chain(&desired.attrs)
                    .map(|(k, v)| format!("{k}: (none) -> {}", desired.shown(k, v)))
                    .collect();
                if !dry_run && !stop.is_cancelled() {
                    let o = exec.match_or_create_user(&id, desired).await;
                    let scim_id = snapshot
                        .user(&id)?
                        .map(|e| e.scim_id)
                        .unwrap_or_else(|| ScimId::from(""));
                    finish(&mut r, o, &scim_id);
                }
            }
        }
    }

    // Group memberships: added now to assigned groups already provisioned; the rest (a group
    // not yet created, attribute changes of a group) is left to the next cycle.
    if !r.failed {
        let account = if dry_run {
            entry.as_ref().map(|e| e.scim_id.clone())
        } else {
            snapshot.user(&id)?.map(|e: UserEntry| e.scim_id)
        };
        let groups = snapshot.groups()?;
        for (gid, g) in &want.groups {
            if !g.members.contains(&id) {
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
            if gentry.members.contains_key(&id) {
                r.groups.push(format!("group {name:?}: already a member"));
                continue;
            }
            match (&account, dry_run) {
                (_, true) => r.groups.push(format!(
                    "group {name:?}: would add the user as a member (PATCH /Groups/{})",
                    gentry.scim_id
                )),
                (None, false) => r.groups.push(format!(
                    "group {name:?}: the user has no account yet; left to the next cycle"
                )),
                (Some(scim), false) => {
                    let added = exec
                        .patch_group(
                            gid,
                            gentry.clone(),
                            &g.desired,
                            &[] as &[Change],
                            &[(id.clone(), scim.clone())],
                            &[],
                        )
                        .await;
                    r.groups.push(match added {
                        Ok(()) => format!("group {name:?}: member added"),
                        Err(e) => {
                            r.failed = true;
                            format!("group {name:?}: adding the member failed: {e}")
                        }
                    });
                }
            }
        }
    }
    finish_dry(r, dry_run, store).await
}

async fn finish_dry(
    mut r: ProvisionReport,
    dry_run: bool,
    store: &crate::state::Store,
) -> Result<ProvisionReport, EngineError> {
    if dry_run {
        r.result = Some("dry run: nothing was written".into());
    } else {
        store.flush().await?;
    }
    Ok(r)
}

fn finish(r: &mut ProvisionReport, o: Outcome, scim_id: &ScimId) {
    let (text, failed) = match o {
        Outcome::Created => (format!("created account {scim_id}"), false),
        Outcome::Updated => (format!("updated account {scim_id}"), false),
        Outcome::Unchanged => (format!("account {scim_id} already in step"), false),
        Outcome::Deprovisioned => (format!("deprovisioned account {scim_id}"), false),
        Outcome::Skipped(why) => (format!("skipped: {why}"), true),
        Outcome::Failed(why) => (format!("failed: {why}"), true),
        Outcome::Interrupted => ("not sent: scimsync is shutting down".to_owned(), true),
    };
    r.result = Some(text);
    r.failed |= failed;
}

/// The engine's matching ([`Executor::find`]), with each query and its hits written down.
/// `Ok(None)`: no account matches; `Err`: ambiguous or the query failed.
async fn traced_find(
    exec: &Executor<'_>,
    desired: &Desired,
    r: &mut ProvisionReport,
) -> Result<Option<(Json, String)>, String> {
    for rule in exec.target.mappings.user_matching() {
        let key = rule.target.to_string();
        let Some(value) = desired.attrs.get(&key).and_then(value_text) else {
            r.matching
                .push(format!("{key}: no value for this user; not queried"));
            continue;
        };
        let filter = rule.target.filter_for(&value);
        let hits = match exec.client.search(Endpoint::Users, &filter).await {
            Ok(h) => h,
            Err(e) => {
                r.matching
                    .push(format!("{key}: GET /Users?filter={filter}: {e}"));
                return Err(e.to_string());
            }
        };
        let ids: Vec<&str> = hits
            .iter()
            .filter_map(|h| h.get("id").and_then(Json::as_str))
            .collect();
        r.matching.push(format!(
            "{key}: GET /Users?filter={filter} -> {} hit{}{}",
            hits.len(),
            if hits.len() == 1 { "" } else { "s" },
            if ids.is_empty() {
                String::new()
            } else {
                format!(" ({})", ids.join(", "))
            }
        ));
        let (real, other): (Vec<Json>, Vec<Json>) = hits
            .into_iter()
            .partition(|h| same_value(&rule.target, rule.target.read(h), &value));
        if !other.is_empty() {
            return Err(format!(
                "the target answered the filter {filter} with {} resources that do not carry that value; refusing to match on it",
                other.len()
            ));
        }
        match real.len() {
            0 => continue,
            1 => {
                let one = real.into_iter().next().unwrap_or_default();
                return Ok(Some((one, key)));
            }
            n => return Err(format!("ambiguous: {n} accounts match {filter}")),
        }
    }
    r.matching
        .push("no account matches: a new one is created".into());
    Ok(None)
}
