//! One provisioning cycle for one target: scope, map, plan, execute, record.
//!
//! Users go before groups so that member ids exist. Every snapshot write follows a call the
//! target confirmed. A failure on one object is counted, reported and kept in escrow; it never
//! stops the cycle.

pub mod guard;

use crate::audit::{self, Action, Kind, Status};
use crate::config::{Config, DeprovisionMode, ScopeConfig, TargetConfig};
use crate::ids::{ScimId, SourceId, TargetName};
use crate::mapping::path::{CORE_GROUP, CORE_USER};
use crate::mapping::{self, AttrPath, Desired, Rule};
use crate::plan::{self, Change, DesiredGroup, GroupOp, GroupPlan, PlanOptions, UserOp, UserPlan};
use crate::scim::{Client, Endpoint, ScimError};
use crate::scope::{self, ScopeError};
use crate::source::Directory;
use crate::state::{
    self, EscrowEntry, GroupEntry, MatchedBy, Quarantine, Snapshot, StateError, Store, UserEntry,
    UserSummary,
};
use futures::StreamExt;
use index::TargetIndex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use tokio_util::sync::CancellationToken;

pub mod provision;

mod index;
mod progress;

pub use progress::Progress;

/// At most this many member changes go in one group PATCH.
pub const MEMBER_BATCH: usize = 100;
/// How many times a create whose outcome is unknown is matched and tried again.
const CREATE_ROUNDS: u32 = 4;

/// The pause before matching again after a create whose outcome is unknown. After a timeout
/// the target may still be working on the request (a bulk request carries many creates), so
/// the pause lasts at least the request timeout: a match made sooner could miss an account
/// that is about to exist, and create it twice.
fn create_pause(round: u32, e: &ScimError, target: &TargetConfig) -> std::time::Duration {
    let pause = std::time::Duration::from_millis(250u64 << round.min(6));
    if e.is_timeout() {
        pause.max(std::time::Duration::from_secs(target.timeout_seconds))
    } else {
        pause
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Scope(#[from] ScopeError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}")]
    Target(String),
    #[error("source-outage guard: {0}")]
    Guard(String),
}

#[derive(Debug, Clone, Copy, Default)]
pub struct CycleOptions {
    pub full: bool,
    pub dry_run: bool,
    pub allow_deletes: bool,
}

/// What happened to the objects of one kind in a cycle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub created: usize,
    pub updated: usize,
    pub deprovisioned: usize,
    pub unchanged: usize,
    pub skipped: usize,
    pub failed: usize,
}

/// The summary of one cycle of one target.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CycleReport {
    pub target: String,
    pub cycle_id: String,
    pub started_at: String,
    pub dry_run: bool,
    pub users: Counts,
    pub groups: Counts,
    /// Deprovisions held back by the deletion threshold.
    pub held: usize,
    /// One line per skipped or failed object, for the operator.
    pub problems: Vec<String>,
    /// HTTP requests sent to the target.
    pub requests: usize,
    /// Objects not tried this cycle because their escrow's next attempt is later.
    #[serde(default)]
    pub deferred: usize,
    /// Objects in escrow (failed, to be retried) when the cycle ended.
    #[serde(default)]
    pub escrow: usize,
    /// The target's quarantine when the cycle began (a hand-run cycle runs anyway).
    #[serde(default)]
    pub quarantined_before: Option<Quarantine>,
    /// The target's quarantine when the cycle ended; `None` when healthy (or lifted).
    #[serde(default)]
    pub quarantine: Option<Quarantine>,
}

impl CycleReport {
    /// True when some object was not brought in step: failed, skipped (bad data, ambiguous
    /// match) or a held deprovision.
    pub fn incomplete(&self) -> bool {
        self.users.failed + self.groups.failed + self.users.skipped + self.groups.skipped > 0
            || self.held > 0
    }
}

/// The desired state of one target, computed from one source read.
#[derive(Debug, Default)]
pub struct DesiredState {
    pub users: BTreeMap<SourceId, Desired>,
    pub groups: BTreeMap<SourceId, DesiredGroup>,
    /// Objects that could not be mapped, with why; they are skipped, never deprovisioned.
    pub rejected: Vec<(SourceId, Kind, String)>,
    pub protected: BTreeSet<SourceId>,
}

/// Scopes and maps a directory read for one target.
pub fn desired_state(
    dir: &Directory,
    scope: &ScopeConfig,
    target: &TargetConfig,
) -> Result<DesiredState, ScopeError> {
    let scoped = scope::apply(dir, scope)?;
    let mut out = DesiredState::default();
    for r in &dir.rejected {
        if let Some(id) = &r.id {
            out.protected.insert(id.clone());
            out.rejected
                .push((id.clone(), Kind::User, r.reason.clone()));
        }
    }
    for (id, (user, _why)) in &scoped.users {
        match mapping::map(&target.mappings.users, user).and_then(|d| require(d, "userName")) {
            Ok(d) => {
                out.users.insert(id.clone(), d);
            }
            Err(e) => {
                out.protected.insert(id.clone());
                out.rejected.push((id.clone(), Kind::User, e.to_string()));
            }
        }
    }
    for g in &scoped.groups {
        let id = &g.group.object.id;
        match mapping::map(&target.mappings.groups, &g.group.object)
            .and_then(|d| require(d, "displayName"))
        {
            Ok(desired) => {
                let members = g
                    .members
                    .iter()
                    .filter(|m| out.users.contains_key(*m))
                    .cloned()
                    .collect();
                out.groups
                    .insert(id.clone(), DesiredGroup { desired, members });
            }
            Err(e) => {
                out.protected.insert(id.clone());
                out.rejected.push((id.clone(), Kind::Group, e.to_string()));
            }
        }
    }
    Ok(out)
}

fn require(d: Desired, attr: &str) -> Result<Desired, mapping::MappingError> {
    if d.attrs.contains_key(attr) {
        Ok(d)
    } else {
        Err(mapping::MappingError {
            target: attr.to_owned(),
            message: "is empty, and SCIM requires it".to_owned(),
        })
    }
}

/// [`desired_state`] that consumes the directory: each in-scope user is mapped and its
/// `SourceObject` dropped at once, so that a read of a million users is never held next to
/// its whole desired state. The result is the same as [`desired_state`]'s.
pub fn desired_state_owned(
    mut dir: Directory,
    scope: &ScopeConfig,
    target: &TargetConfig,
) -> Result<DesiredState, ScopeError> {
    let mut out = DesiredState::default();
    for r in std::mem::take(&mut dir.rejected) {
        if let Some(id) = r.id {
            out.protected.insert(id.clone());
            out.rejected.push((id, Kind::User, r.reason));
        }
    }
    // The groups are few: map them while the scope still borrows the directory, and keep each
    // one's member set, which the desired group takes over once the users are mapped.
    let (mut in_scope, groups) = {
        let scoped = scope::apply(&dir, scope)?;
        let groups: Vec<_> = scoped
            .groups
            .into_iter()
            .map(|g| {
                let mapped = mapping::map(&target.mappings.groups, &g.group.object)
                    .and_then(|d| require(d, "displayName"));
                (g.group.object.id.clone(), mapped, g.members)
            })
            .collect();
        let in_scope: BTreeSet<SourceId> = scoped.users.into_keys().collect();
        (in_scope, groups)
    };
    dir.groups = Vec::new();
    // Where an id appears twice, the scope took its last object: so does this walk backwards.
    let mut failed = BTreeMap::new();
    for user in std::mem::take(&mut dir.users).into_iter().rev() {
        if !in_scope.remove(&user.id) {
            continue;
        }
        match mapping::map(&target.mappings.users, &user).and_then(|d| require(d, "userName")) {
            Ok(d) => {
                out.users.insert(user.id, d);
            }
            Err(e) => {
                failed.insert(user.id, e.to_string());
            }
        }
    }
    // Rejections in id order, as [`desired_state`] gives them.
    for (id, why) in failed {
        out.protected.insert(id.clone());
        out.rejected.push((id, Kind::User, why));
    }
    for (id, mapped, mut members) in groups {
        match mapped {
            Ok(desired) => {
                members.retain(|m| out.users.contains_key(m));
                out.groups.insert(id, DesiredGroup { desired, members });
            }
            Err(e) => {
                out.protected.insert(id.clone());
                out.rejected.push((id, Kind::Group, e.to_string()));
            }
        }
    }
    Ok(out)
}

/// The plans a cycle would carry out, for `plan` and `--dry-run`.
#[derive(Debug, Default, Serialize)]
pub struct PlannedCycle {
    pub users: UserPlan,
    pub groups: GroupPlan,
    pub rejected: Vec<(SourceId, Kind, String)>,
}

fn plan_options(target: &TargetConfig, opts: CycleOptions) -> PlanOptions {
    PlanOptions {
        full: opts.full,
        mode: target.deprovision,
        deletion_threshold: target.deletion_threshold,
        deletion_threshold_percent: (target.deletion_threshold_percent < 100.0)
            .then_some(target.deletion_threshold_percent),
        allow_deletes: opts.allow_deletes,
    }
}

/// The snapshot says what one server holds: pointed at another URL, it would make scimsync
/// believe accounts exist that do not (or miss ones that do). Only a full sync, which matches
/// every object again, may move a snapshot to a new URL.
fn url_guard(
    target: &TargetConfig,
    snapshot: &Snapshot,
    opts: CycleOptions,
) -> Result<(), EngineError> {
    let url = target.url.trim_end_matches('/');
    match snapshot.meta::<String>("target_url")? {
        Some(old) if old != url && !opts.full => Err(EngineError::Target(format!(
            "the snapshot was taken against {old}, but the target's url is now {url}; \
             run `scimsync sync --full --target {}` to match every account against the new url",
            target.name
        ))),
        _ => Ok(()),
    }
}

/// Plans one target without any call to it. Given the directory by value (the last or only
/// target of a run), the plan drops each source object once it is mapped, which halves the
/// peak at scale; borrowed, the directory stays for the next target.
pub fn plan_target(
    dir: Cow<'_, Directory>,
    config: &Config,
    target: &TargetConfig,
    store: &Store,
    opts: CycleOptions,
) -> Result<PlannedCycle, EngineError> {
    let snapshot = store.snapshot(&TargetName(target.name.clone()))?;
    let want = desired_state_checked(dir, config, target, &snapshot, opts)?;
    plan_desired(want, &snapshot.user_summaries()?, &snapshot, target, opts)
}

/// The guards that stop a cycle before anything is planned, then the desired state.
fn desired_state_checked(
    dir: Cow<'_, Directory>,
    config: &Config,
    target: &TargetConfig,
    snapshot: &Snapshot,
    opts: CycleOptions,
) -> Result<DesiredState, EngineError> {
    guard::outage_guard(&dir, snapshot, config.min_source_ratio)?;
    url_guard(target, snapshot, opts)?;
    Ok(match dir {
        Cow::Borrowed(dir) => desired_state(dir, &config.scope, target)?,
        Cow::Owned(dir) => desired_state_owned(dir, &config.scope, target)?,
    })
}

/// What a real cycle still needs of its desired state once the plan has taken it over: the
/// groups are planned again after the users' accounts exist, and the escrow is cleared of the
/// objects that left the source. Kept instead of the directory, which is about ten times the
/// size and is then free to go.
struct Replan {
    groups: BTreeMap<SourceId, DesiredGroup>,
    users: BTreeSet<SourceId>,
    protected: BTreeSet<SourceId>,
}

impl Replan {
    fn of(want: &DesiredState) -> Replan {
        Replan {
            groups: want.groups.clone(),
            users: want.users.keys().cloned().collect(),
            protected: want.protected.clone(),
        }
    }

    /// Whether the source still wants (or could not read) this object.
    fn wants(&self, id: &SourceId) -> bool {
        self.users.contains(id) || self.groups.contains_key(id) || self.protected.contains(id)
    }
}

/// Plans the desired state against the snapshot, whose users' summaries (`known`) the caller
/// has read.
fn plan_desired(
    mut want: DesiredState,
    known: &BTreeMap<SourceId, UserSummary>,
    snapshot: &Snapshot,
    target: &TargetConfig,
    opts: CycleOptions,
) -> Result<PlannedCycle, EngineError> {
    let popts = plan_options(target, opts);
    // The users with an account after this plan (those in the snapshot and still wanted, and
    // the ones about to be created or matched) are exactly the desired users: so the group
    // plan asks the desired users, and goes first, while they are still at hand.
    let groups = plan::plan_groups_owned(
        &snapshot.groups()?,
        std::mem::take(&mut want.groups),
        |m| want.users.contains_key(m),
        &want.protected,
        popts,
    );
    let wanted_users = std::mem::take(&mut want.users);
    // The snapshot's users are read as summaries; a user's attributes are decoded only where
    // its hash differs, so a cycle never holds the decoded snapshot next to the desired state.
    let users = plan::plan_users_owned(known, wanted_users, &want.protected, popts, |id| {
        // The summary was read in this plan, under the target's lock: an entry gone now
        // means the state changed underneath, and an empty diff base would re-send all.
        snapshot
            .user(id)?
            .map(|e| e.attrs)
            .ok_or_else(|| StateError::Corrupt {
                tree: format!("users/{}", target.name),
                key: id.to_string(),
                message: "the entry vanished while the cycle was planned".into(),
            })
    })?;
    Ok(PlannedCycle {
        users,
        groups,
        rejected: want.rejected,
    })
}

/// Runs one cycle of one target against a directory read. Returns its report and its plan:
/// whole for a dry run; after a real cycle, the operations were handed over to be carried out
/// and only what was held back remains in it. Starts no new operation once `stop` is
/// cancelled (shutdown); the operations already started finish and are recorded, the rest
/// wait for the next cycle. Given the directory by value, the cycle frees it once planned.
pub async fn run_target_until(
    dir: Cow<'_, Directory>,
    config: &Config,
    target: &TargetConfig,
    store: &Store,
    opts: CycleOptions,
    stop: &CancellationToken,
) -> Result<(CycleReport, PlannedCycle), EngineError> {
    let progress = Progress::default();
    run_target_with(dir, config, target, store, opts, stop, &progress).await
}

/// [`run_target_until`] that counts the operations in `progress` as they finish.
pub async fn run_target_with(
    dir: Cow<'_, Directory>,
    config: &Config,
    target: &TargetConfig,
    store: &Store,
    opts: CycleOptions,
    stop: &CancellationToken,
    progress: &Progress,
) -> Result<(CycleReport, PlannedCycle), EngineError> {
    let name = TargetName(target.name.clone());
    let snapshot = store.snapshot(&name)?;
    let mut report = CycleReport {
        target: target.name.clone(),
        cycle_id: uuid::Uuid::new_v4().to_string(),
        started_at: state::now(),
        dry_run: opts.dry_run,
        quarantined_before: snapshot.quarantine()?,
        ..Default::default()
    };
    let source_users = dir.users.len();
    // The snapshot's summaries are read on a blocking thread while the directory is mapped:
    // the two are independent, and with a second core the scan no longer adds to the cycle.
    let scan = {
        let snapshot = snapshot.clone();
        tokio::task::spawn_blocking(move || snapshot.user_summaries())
    };
    let want = desired_state_checked(dir, config, target, &snapshot, opts)?;
    let replan = Replan::of(&want);
    let known = scan
        .await
        .map_err(|e| StateError::Storage(format!("the snapshot scan stopped: {e}")))??;
    let mut planned = plan_desired(want, &known, &snapshot, target, opts)?;
    for (id, kind, why) in &planned.rejected {
        let counts = match kind {
            Kind::User => &mut report.users,
            Kind::Group => &mut report.groups,
        };
        counts.skipped += 1;
        report.problems.push(format!("skipped {kind} {id}: {why}"));
    }
    report.held = planned.users.held.len() + planned.groups.held.len();
    let mut held_why = String::from(
        "held by the deletion threshold; run `scimsync sync --allow-deletes` to carry it out",
    );
    if report.held > 0 {
        let why = if report.held > target.deletion_threshold {
            format!(
                "more than deletion_threshold = {}",
                target.deletion_threshold
            )
        } else {
            format!(
                "more than deletion_threshold_percent = {}% of the managed objects",
                target.deletion_threshold_percent
            )
        };
        held_why = format!(
            "held by the deletion threshold: {why} in one cycle; run `scimsync sync --allow-deletes` to carry it out"
        );
        report.problems.push(format!(
            "held {} deprovisions: {why} in one cycle; run `scimsync sync --allow-deletes` to carry them out",
            report.held
        ));
    }
    if opts.dry_run {
        count_planned(&planned, &mut report);
        return Ok((report, planned));
    }

    let now = chrono::Utc::now();
    let escrow = snapshot.escrow()?;
    planned.users.ops = defer(
        std::mem::take(&mut planned.users.ops),
        UserOp::id,
        &escrow,
        now,
        Kind::User,
        &mut report,
    );

    // The caller names the target already.
    let client = Client::new(target)
        .map_err(|e| {
            let prefix = format!("target {:?}: ", target.name);
            EngineError::Target(e.strip_prefix(&prefix).unwrap_or(&e).to_owned())
        })?
        .stopping_on(stop.clone());
    // Nothing to send, nothing held, nothing in escrow: the snapshot will not change, so the
    // group plan made with the users stands and no claim, second plan or cleanup is needed.
    // This keeps a no-change cycle at the cost of reading the source and one snapshot scan.
    let idle = planned.users.ops.is_empty()
        && planned.groups.ops.is_empty()
        && report.held == 0
        && escrow.is_empty();
    if idle {
        progress.planned(0);
        report.users.unchanged += planned.users.unchanged;
        report.groups.unchanged += planned.groups.unchanged;
        if stop.is_cancelled() {
            report.problems.push(STOPPED_EARLY.into());
        }
        let (users, groups) = snapshot.counts()?;
        crate::telemetry::managed(&target.name, users, groups);
        let log = open_log(store);
        finish_cycle(
            source_users,
            config,
            target,
            store,
            &snapshot,
            &client,
            log.as_ref(),
            opts,
            now,
            0,
            &mut report,
        )
        .await?;
        return Ok((report, planned));
    }
    let cycle_id = report.cycle_id.clone();
    let unmatched = planned
        .users
        .ops
        .iter()
        .filter(|op| matches!(op, UserOp::MatchOrCreate { .. }))
        .count();
    let matching = target.mappings.user_matching();
    let mapped: Vec<&Rule> = target.mappings.users.iter().collect();
    let index = match TargetIndex::build(&client, Endpoint::Users, &matching, &mapped, unmatched)
        .await
    {
        Ok(index) => index,
        Err(e) => {
            tracing::warn!(target_name = %target.name, error = %e, "Cannot list the target; matching by queries.");
            None
        }
    };
    if let Some(ix) = &index {
        tracing::info!(target_name = %target.name, accounts = ix.len(), unmatched, "Listed the target's users to match locally.");
    }
    let exec = Executor {
        client: &client,
        snapshot: &snapshot,
        target,
        cycle_id: &cycle_id,
        claimed: Mutex::new(BTreeMap::new()),
        index,
        log: open_log(store),
        staged: Default::default(),
    };
    // The users' accounts are claimed from the summaries the plan read (nothing has written
    // to the snapshot since, under the target's lock), the groups' from one scan of their ids.
    for (id, user) in &known {
        exec.claim_kind(false, &user.scim_id, id);
    }
    drop(known);
    snapshot.group_scim_ids(&mut |id, scim_id| {
        exec.claim_kind(true, &scim_id, &id);
    })?;
    // Held deprovisions are staged: recorded, not carried out (Entra's StagedDelete).
    for op in &planned.users.held {
        if let UserOp::Deprovision { id, scim_id, .. } = op {
            exec.staged(Kind::User, id, scim_id, &held_why);
        }
    }
    let concurrency = target.concurrency.max(1);
    progress.planned(planned.users.ops.len() + planned.groups.ops.len());
    // The operations are handed over, not copied: at an initial sync they hold every
    // desired resource.
    let outcomes = execute(
        std::mem::take(&mut planned.users.ops),
        &client,
        concurrency,
        stop,
        |op| async {
            let id = op.id().clone();
            let action = progress::user_action(&op);
            let outcome = audit::collect(exec.user(op)).await;
            progress.finished(&target.name, "user", action, outcome.status());
            (id, outcome)
        },
    )
    .await;
    let mut attempted = outcomes.len();
    escrow_outcomes(&snapshot, &client, &escrow, Kind::User, &outcomes, now)?;
    report.users.unchanged += planned.users.unchanged;
    tally(
        &mut report.users,
        &mut report.problems,
        Kind::User,
        outcomes,
    );

    // Groups are planned again now that the users' accounts exist.
    let users_snap = snapshot.user_summaries()?;
    let accounts: BTreeSet<SourceId> = users_snap.keys().cloned().collect();
    let mut groups = plan::plan_groups(
        &snapshot.groups()?,
        &replan.groups,
        &accounts,
        &replan.protected,
        plan_options(target, opts),
    );
    for op in &groups.held {
        if let GroupOp::Deprovision { id, scim_id, .. } = op {
            exec.staged(Kind::Group, id, scim_id, &held_why);
        }
    }
    groups.ops = defer(
        std::mem::take(&mut groups.ops),
        group_op_id,
        &escrow,
        now,
        Kind::Group,
        &mut report,
    );
    if client.auth_rejected().is_some() {
        // Every group call would be refused as well.
        report.groups.skipped += groups.ops.len();
        groups.ops.clear();
    }
    progress.replanned(planned.groups.ops.len(), groups.ops.len());
    let group_outcomes = execute(
        std::mem::take(&mut groups.ops),
        &client,
        concurrency,
        stop,
        |op| async {
            let id = group_op_id(&op).clone();
            let action = progress::group_action(&op);
            let outcome = audit::collect(exec.group(op, &users_snap)).await;
            progress.finished(&target.name, "group", action, outcome.status());
            (id, outcome)
        },
    )
    .await;
    attempted += group_outcomes.len();
    escrow_outcomes(
        &snapshot,
        &client,
        &escrow,
        Kind::Group,
        &group_outcomes,
        now,
    )?;
    report.groups.unchanged += groups.unchanged;
    tally(
        &mut report.groups,
        &mut report.problems,
        Kind::Group,
        group_outcomes,
    );

    if stop.is_cancelled() {
        report.problems.push(STOPPED_EARLY.into());
    }
    drop(users_snap);
    let (users_now, groups_now) = snapshot.counts()?;
    crate::telemetry::managed(&target.name, users_now, groups_now);
    // An object that left the source and has no account needs no retry any more.
    for id in snapshot.escrow()?.keys() {
        if !replan.wants(id) && !snapshot.holds(id)? {
            snapshot.escrow_clear(id)?;
        }
    }
    drop(replan);
    finish_cycle(
        source_users,
        config,
        target,
        store,
        &snapshot,
        &client,
        exec.log.as_ref(),
        opts,
        now,
        attempted,
        &mut report,
    )
    .await?;
    let planned = PlannedCycle { groups, ..planned };
    Ok((report, planned))
}

/// Runs planned operations, as many at once as the client takes (`concurrency`, or enough to
/// fill bulk requests), starting none once `stop` is cancelled. A write never sent because
/// shutdown began is left out: its object was not attempted this cycle.
async fn execute<Op, Fut>(
    ops: Vec<Op>,
    client: &Client,
    concurrency: usize,
    stop: &CancellationToken,
    run: impl FnMut(Op) -> Fut,
) -> Vec<(SourceId, Outcome)>
where
    Fut: std::future::Future<Output = (SourceId, Outcome)>,
{
    // With bulk, enough writes wait to fill requests; still only `concurrency` in flight.
    let width = if ops.is_empty() {
        concurrency
    } else {
        client.write_width().await
    };
    futures::stream::iter(ops)
        .take_while(|_| std::future::ready(!stop.is_cancelled()))
        .map(run)
        .buffer_unordered(width)
        .filter(|(_, o)| std::future::ready(*o != Outcome::Interrupted))
        .collect()
        .await
}

const STOPPED_EARLY: &str =
    "stopped early for shutdown: operations not started are left to the next cycle";

/// The end of every cycle that ran: the report's closing lines, the facts kept for the next
/// cycle (last good source size, target url, quarantine, last cycle) and the flush.
#[allow(clippy::too_many_arguments)]
async fn finish_cycle(
    source_users: usize,
    config: &Config,
    target: &TargetConfig,
    store: &Store,
    snapshot: &Snapshot,
    client: &Client,
    log: Option<&state::Log>,
    opts: CycleOptions,
    now: chrono::DateTime<chrono::Utc>,
    attempted: usize,
    report: &mut CycleReport,
) -> Result<(), EngineError> {
    if let Some(why) = client.auth_rejected() {
        // One line for the calls never sent, rather than one per object.
        let before = report.problems.len();
        report.problems.retain(|p| !p.contains(NOT_SENT));
        let not_sent = before - report.problems.len();
        report.problems.push(format!(
            "the target rejected the credentials ({why}); {not_sent} further operations and every group were not sent"
        ));
    }
    if source_users > 0 {
        snapshot.set_meta("last_good_users", &source_users)?;
    }
    let failed = report.users.failed + report.groups.failed;
    // A snapshot moves to a new url only once a full sync re-matched everything there.
    let moved = opts.full && failed == 0 && client.auth_rejected().is_none();
    if moved || snapshot.meta::<String>("target_url")?.is_none() {
        snapshot.set_meta("target_url", &target.url.trim_end_matches('/'))?;
    }
    let reason =
        guard::quarantine_reason(target, client.auth_rejected().as_deref(), attempted, failed);
    report.quarantine = guard::judge(snapshot, target, reason, now)?;
    report.escrow = snapshot.escrow()?.len();
    report.requests = client.requests();
    snapshot.set_meta("last_cycle", &*report)?;
    if let Some(log) = log {
        prune_log(log, config).await;
    }
    store.flush().await?;
    Ok(())
}

/// The provisioning log, or none (with a warning) when the store cannot open it: the log
/// never stops a cycle.
fn open_log(store: &Store) -> Option<state::Log> {
    store
        .log()
        .map_err(|e| {
            tracing::warn!(error = %e, "Cannot open the provisioning log; this cycle's records are not stored.");
        })
        .ok()
}

/// Applies the log's retention; a failure is a warning. Pruning scans the log's keys, so it
/// runs on a blocking thread rather than on the workers that carry the other targets' cycles.
async fn prune_log(log: &state::Log, config: &Config) {
    let (log, retention) = (log.clone(), config.state.log_retention());
    let pruned =
        tokio::task::spawn_blocking(move || log.prune(&retention, chrono::Utc::now())).await;
    match pruned {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => tracing::debug!(removed = n, "Pruned the provisioning log."),
        Ok(Err(e)) => tracing::warn!(error = %e, "Cannot prune the provisioning log."),
        Err(e) => tracing::warn!(error = %e, "Pruning the provisioning log stopped."),
    }
}

/// The words of the error of a call that was not sent after an authentication rejection.
const NOT_SENT: &str = "not sent: the target rejected the credentials earlier";

fn group_op_id(op: &GroupOp) -> &SourceId {
    match op {
        GroupOp::MatchOrCreate { id, .. }
        | GroupOp::Update { id, .. }
        | GroupOp::Deprovision { id, .. } => id,
    }
}

/// Leaves out the operations on objects whose escrow says not yet, reporting each.
fn defer<Op>(
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
                match kind {
                    Kind::User => report.users.skipped += 1,
                    Kind::Group => report.groups.skipped += 1,
                }
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
/// whose credentials were rejected escrows nothing: the target, not the object, is at fault.
fn escrow_outcomes(
    snapshot: &Snapshot,
    client: &Client,
    escrow: &BTreeMap<SourceId, EscrowEntry>,
    kind: Kind,
    outcomes: &[(SourceId, Outcome)],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), StateError> {
    let auth = client.auth_rejected().is_some();
    for (id, outcome) in outcomes {
        match outcome {
            Outcome::Failed(why) if !auth => {
                snapshot.escrow_failure(id, &kind.to_string(), why, now)?;
            }
            Outcome::Created | Outcome::Updated | Outcome::Unchanged | Outcome::Deprovisioned
                if escrow.contains_key(id) =>
            {
                snapshot.escrow_clear(id)?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn count_planned(planned: &PlannedCycle, report: &mut CycleReport) {
    for op in &planned.users.ops {
        match op {
            UserOp::MatchOrCreate { .. } => report.users.created += 1,
            UserOp::Update { .. } => report.users.updated += 1,
            UserOp::Deprovision { .. } => report.users.deprovisioned += 1,
        }
    }
    report.users.unchanged += planned.users.unchanged;
    for op in &planned.groups.ops {
        match op {
            GroupOp::MatchOrCreate { .. } => report.groups.created += 1,
            GroupOp::Update { .. } => report.groups.updated += 1,
            GroupOp::Deprovision { .. } => report.groups.deprovisioned += 1,
        }
    }
    report.groups.unchanged += planned.groups.unchanged;
}

fn tally(
    counts: &mut Counts,
    problems: &mut Vec<String>,
    kind: Kind,
    outcomes: Vec<(SourceId, Outcome)>,
) {
    let mut outcomes = outcomes;
    outcomes.sort_by(|a, b| a.0.cmp(&b.0));
    for (id, o) in outcomes {
        match o {
            Outcome::Created => counts.created += 1,
            Outcome::Updated => counts.updated += 1,
            Outcome::Unchanged => counts.unchanged += 1,
            Outcome::Deprovisioned => counts.deprovisioned += 1,
            Outcome::Skipped(why) => {
                counts.skipped += 1;
                problems.push(format!("skipped {kind} {id}: {why}"));
            }
            Outcome::Failed(why) => {
                counts.failed += 1;
                problems.push(format!("failed {kind} {id}: {why}"));
            }
            // Filtered out before; not attempted this cycle.
            Outcome::Interrupted => {}
        }
    }
}

/// What became of one operation.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Created,
    Updated,
    Unchanged,
    Deprovisioned,
    Skipped(String),
    Failed(String),
    /// A write not sent because shutdown began: the object was not attempted this cycle (no
    /// escrow, no count); the next cycle plans it again.
    Interrupted,
}

impl Outcome {
    /// The `status` label of the operations metric.
    fn status(&self) -> &'static str {
        match self {
            Outcome::Created | Outcome::Updated | Outcome::Unchanged | Outcome::Deprovisioned => {
                "ok"
            }
            Outcome::Skipped(_) => "skipped",
            Outcome::Failed(_) => "failed",
            Outcome::Interrupted => "interrupted",
        }
    }
}

impl From<StateError> for Outcome {
    fn from(e: StateError) -> Self {
        Outcome::Failed(e.to_string())
    }
}

struct Executor<'a> {
    client: &'a Client,
    snapshot: &'a Snapshot,
    target: &'a TargetConfig,
    cycle_id: &'a str,
    /// Which source object each managed SCIM id belongs to, so that two objects never share
    /// one account.
    claimed: Mutex<BTreeMap<(bool, ScimId), SourceId>>,
    /// The target's users, listed once when that is cheaper than a query per new user.
    index: Option<TargetIndex>,
    /// Where records are stored; none in a dry run.
    log: Option<state::Log>,
    /// Held deprovisions recorded so far this cycle (see [`STAGED_RECORDS`]).
    staged: std::sync::atomic::AtomicUsize,
}

/// At most this many held deprovisions are recorded one by one per target and cycle: a
/// threshold holding thousands every cycle would otherwise push the rest of the history out of
/// the log's retention. The cycle's report and `status` still give the full count.
const STAGED_RECORDS: usize = 100;

/// The result of looking for an existing resource.
enum Found {
    One(Json, String),
    None,
    Ambiguous(String),
}

fn value_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn same_value(path: &AttrPath, found: Option<Json>, want: &str) -> bool {
    match found.as_ref().and_then(value_text) {
        Some(f) if path.case_insensitive() => f.eq_ignore_ascii_case(want),
        Some(f) => f == want,
        None => false,
    }
}

/// The PATCH operations that carry a list of changes.
fn change_ops(changes: &[Change]) -> Vec<Json> {
    changes
        .iter()
        .filter_map(|c| {
            let path = AttrPath::parse(&c.path).ok()?;
            Some(match &c.new {
                Some(v) => path.patch_set(v.clone(), c.old.is_some()),
                None => path.patch_remove(),
            })
        })
        .collect()
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
fn modified(desired: &Desired, changes: &[Change]) -> Vec<audit::Modified> {
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
fn created(desired: &Desired) -> Vec<audit::Modified> {
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

/// Attribute changes as a person reads them, `path: old -> new`, with `Redact()` values hidden.
pub(crate) fn shown_changes(desired: &Desired, changes: &[Change]) -> Vec<String> {
    let show = |v: &Option<Json>, p: &str| match v {
        Some(v) => desired.shown(p, v),
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

impl Executor<'_> {
    fn claim(&self, scim_id: &ScimId, id: &SourceId) -> bool {
        self.claim_kind(false, scim_id, id)
    }

    /// Claims a SCIM id for a source object; false when another object already holds it.
    fn claim_kind(&self, group: bool, scim_id: &ScimId, id: &SourceId) -> bool {
        let mut claimed = self.claimed.lock().unwrap_or_else(|p| p.into_inner());
        match claimed.get(&(group, scim_id.clone())) {
            Some(owner) => owner == id,
            None => {
                claimed.insert((group, scim_id.clone()), id.clone());
                true
            }
        }
    }

    /// A record of a decision about `id`, with the HTTP calls made since the operation began
    /// (or since its previous record); [`Executor::write`] stamps and keeps it.
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
            cycle_id: self.cycle_id.to_owned(),
            target: self.target.name.clone(),
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

    fn record(
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

    /// A deprovision held back by the deletion threshold.
    fn staged(&self, kind: Kind, id: &SourceId, scim_id: &ScimId, why: &str) {
        let n = self
            .staged
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n == STAGED_RECORDS {
            tracing::warn!(target_name = %self.target.name, "More deprovisions are held this cycle; only the first {STAGED_RECORDS} are recorded in the provisioning log.");
        }
        if n >= STAGED_RECORDS {
            return;
        }
        self.record(
            kind,
            id,
            Some(scim_id),
            Action::StagedDelete,
            Status::Skipped,
            why,
        );
    }

    /// A successful write, with the attributes it changed.
    fn record_changes(
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

    /// Looks for the account of a new object by each matching attribute in precedence order.
    /// With `listed`, the users' listing answers instead of a query (when there is one); a
    /// second look after a 409 must ask the target itself.
    async fn find(
        &self,
        endpoint: Endpoint,
        rules: &[&Rule],
        desired: &Desired,
        listed: bool,
    ) -> Result<Found, ScimError> {
        for rule in rules {
            let key = rule.target.to_string();
            let Some(value) = desired.attrs.get(&key).and_then(value_text) else {
                continue;
            };
            let filter = rule.target.filter_for(&value);
            let hits = match (&self.index, endpoint, listed) {
                (Some(ix), Endpoint::Users, true) => ix.find(rule, &value),
                _ => self.client.search(endpoint, &filter).await?,
            };
            let (real, other): (Vec<Json>, Vec<Json>) = hits
                .into_iter()
                .partition(|h| same_value(&rule.target, rule.target.read(h), &value));
            if !other.is_empty() {
                // A server that ignores filters would make every account look like a match.
                return Ok(Found::Ambiguous(format!(
                    "the target answered the filter {filter} with {} resources that do not carry that value; refusing to match on it",
                    other.len()
                )));
            }
            match real.len() {
                0 => continue,
                1 => return Ok(Found::One(real.into_iter().next().unwrap_or_default(), key)),
                n => {
                    return Ok(Found::Ambiguous(format!(
                        "ambiguous: {n} accounts match {filter}"
                    )))
                }
            }
        }
        Ok(Found::None)
    }

    async fn user(&self, op: UserOp) -> Outcome {
        if let UserOp::MatchOrCreate { desired, .. } | UserOp::Update { desired, .. } = &op {
            audit::hide(
                desired
                    .redacted
                    .iter()
                    .filter_map(|p| desired.attrs.get(p).and_then(value_text)),
            );
        }
        match op {
            UserOp::MatchOrCreate { id, desired } => self.match_or_create_user(&id, &desired).await,
            UserOp::Update {
                id,
                scim_id,
                changes,
                desired,
            } => {
                match self
                    .client
                    .patch(Endpoint::Users, &scim_id, change_ops(&changes))
                    .await
                {
                    Ok(()) => {
                        self.record_changes(
                            Kind::User,
                            &id,
                            &scim_id,
                            Action::Update,
                            "",
                            modified(&desired, &changes),
                        );
                        let old = self.snapshot.user(&id).ok().flatten();
                        let matched_by = old.map(|e| e.matched_by).unwrap_or(MatchedBy::Created);
                        match self
                            .snapshot
                            .put_user(&id, &user_entry(scim_id, &desired, matched_by))
                        {
                            Ok(()) => Outcome::Updated,
                            Err(e) => e.into(),
                        }
                    }
                    Err(e) if e.is_not_found() => {
                        // The account was deleted behind our back: forget it and match afresh.
                        self.record(
                            Kind::User,
                            &id,
                            Some(&scim_id),
                            Action::Other,
                            Status::Warning,
                            "account gone from the target (404); matching again",
                        );
                        if let Err(e) = self.snapshot.remove_user(&id) {
                            return e.into();
                        }
                        self.match_or_create_user(&id, &desired).await
                    }
                    Err(e) => self.failed_changes(
                        Kind::User,
                        &id,
                        Some(&scim_id),
                        Action::Update,
                        e,
                        modified(&desired, &changes),
                    ),
                }
            }
            UserOp::Deprovision { id, scim_id, mode } => {
                self.deprovision_user(&id, scim_id, mode).await
            }
        }
    }

    fn failed(
        &self,
        kind: Kind,
        id: &SourceId,
        scim_id: Option<&ScimId>,
        action: Action,
        e: ScimError,
    ) -> Outcome {
        self.failed_changes(kind, id, scim_id, action, e, Vec::new())
    }

    /// A failed write, with the attribute changes it tried to make.
    fn failed_changes(
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
        let why = e.to_string();
        let mut entry = self.entry(kind, id, scim_id, action, Status::Failure);
        entry.error = Some(why.clone());
        entry.modified = tried;
        self.write(entry);
        Outcome::Failed(why)
    }

    async fn match_or_create_user(&self, id: &SourceId, desired: &Desired) -> Outcome {
        let rules = self.target.mappings.user_matching();
        let mut retried = false;
        let mut rounds = 0;
        loop {
            // The listing answers only the first look: after a 409 or a create of unknown
            // outcome, only the target itself can say whether the account now exists.
            match self
                .find(Endpoint::Users, &rules, desired, !retried && rounds == 0)
                .await
            {
                Err(e) => return self.failed(Kind::User, id, None, Action::Other, e),
                Ok(Found::Ambiguous(why)) => {
                    self.record(Kind::User, id, None, Action::Skip, Status::Skipped, &why);
                    return Outcome::Skipped(why);
                }
                Ok(Found::One(resource, by)) => {
                    return self.adopt_user(id, desired, &resource, by).await
                }
                Ok(Found::None) => {}
            }
            let body = desired.to_resource(CORE_USER);
            match self.client.create(Endpoint::Users, &body).await {
                Ok((scim_id, _)) => {
                    self.claim(&scim_id, id);
                    self.record_changes(
                        Kind::User,
                        id,
                        &scim_id,
                        Action::Create,
                        "created",
                        created(desired),
                    );
                    return match self
                        .snapshot
                        .put_user(id, &user_entry(scim_id, desired, MatchedBy::Created))
                    {
                        Ok(()) => Outcome::Created,
                        Err(e) => e.into(),
                    };
                }
                // Someone created the account between our query and our POST: match again.
                Err(e) if e.is_conflict() && !retried => retried = true,
                // The POST may or may not have reached the target: match again before
                // creating, so that a lost answer never makes a second account.
                Err(e) if e.retryable && rounds < CREATE_ROUNDS => {
                    rounds += 1;
                    tracing::debug!(object_id = %id, error = %e, "A create may not have been applied; matching again.");
                    tokio::time::sleep(create_pause(rounds, &e, self.target)).await;
                }
                Err(e) => {
                    return self.failed_changes(
                        Kind::User,
                        id,
                        None,
                        Action::Create,
                        e,
                        created(desired),
                    )
                }
            }
        }
    }

    async fn adopt_user(
        &self,
        id: &SourceId,
        desired: &Desired,
        resource: &Json,
        by: String,
    ) -> Outcome {
        let Some(scim_id) = resource.get("id").and_then(Json::as_str).map(ScimId::from) else {
            return Outcome::Failed("the matched resource has no id".into());
        };
        if !self.claim(&scim_id, id) {
            let why = format!(
                "account {scim_id} matched by {by} is already managed for another directory object"
            );
            self.record(
                Kind::User,
                id,
                Some(&scim_id),
                Action::Skip,
                Status::Skipped,
                &why,
            );
            return Outcome::Skipped(why);
        }
        let current: BTreeMap<String, Json> = self
            .target
            .mappings
            .users
            .iter()
            .filter(|r| r.apply == crate::config::Apply::Always)
            .filter_map(|r| r.target.read(resource).map(|v| (r.target.to_string(), v)))
            .collect();
        let changes = plan::diff(&current, &desired.attrs);
        if !changes.is_empty() {
            if let Err(e) = self
                .client
                .patch(Endpoint::Users, &scim_id, change_ops(&changes))
                .await
            {
                return self.failed_changes(
                    Kind::User,
                    id,
                    Some(&scim_id),
                    Action::Update,
                    e,
                    modified(desired, &changes),
                );
            }
        }
        self.record_changes(
            Kind::User,
            id,
            &scim_id,
            Action::Update,
            &format!("adopted existing account matched by {by}"),
            modified(desired, &changes),
        );
        match self
            .snapshot
            .put_user(id, &user_entry(scim_id, desired, MatchedBy::Adopted(by)))
        {
            Ok(()) if changes.is_empty() => Outcome::Unchanged,
            Ok(()) => Outcome::Updated,
            Err(e) => e.into(),
        }
    }

    async fn deprovision_user(
        &self,
        id: &SourceId,
        scim_id: ScimId,
        mode: DeprovisionMode,
    ) -> Outcome {
        let result = match mode {
            DeprovisionMode::Delete => self.client.delete(Endpoint::Users, &scim_id).await,
            DeprovisionMode::Deactivate => {
                self.client
                    .patch(
                        Endpoint::Users,
                        &scim_id,
                        vec![json!({"op": "replace", "path": "active", "value": false})],
                    )
                    .await
            }
        };
        let action = match mode {
            DeprovisionMode::Delete => Action::Delete,
            DeprovisionMode::Deactivate => Action::Disable,
        };
        match result {
            Ok(())
            | Err(ScimError {
                status: Some(404), ..
            }) => {
                let gone = result.is_err();
                let deactivated =
                    (mode == DeprovisionMode::Deactivate && !gone).then(|| audit::Modified {
                        path: "active".into(),
                        old: Json::Bool(true),
                        new: Json::Bool(false),
                    });
                self.record_changes(
                    Kind::User,
                    id,
                    &scim_id,
                    action,
                    if gone {
                        "already gone from the target"
                    } else {
                        "left scope"
                    },
                    deactivated.into_iter().collect(),
                );
                let stored = match (mode, gone, self.snapshot.user(id)) {
                    (DeprovisionMode::Deactivate, false, Ok(Some(mut e))) => {
                        e.attrs.insert("active".into(), Json::Bool(false));
                        e.hash = plan::hash(&e.attrs);
                        e.active = false;
                        e.deprovisioned = true;
                        e.changed_at = state::now();
                        self.snapshot.put_user(id, &e)
                    }
                    _ => self.snapshot.remove_user(id),
                };
                match stored {
                    Ok(()) => Outcome::Deprovisioned,
                    Err(e) => e.into(),
                }
            }
            Err(e) => self.failed(Kind::User, id, Some(&scim_id), action, e),
        }
    }

    async fn group(&self, op: GroupOp, users: &BTreeMap<SourceId, UserSummary>) -> Outcome {
        let resolve = |ids: &[SourceId]| -> Vec<(SourceId, ScimId)> {
            ids.iter()
                .filter_map(|m| users.get(m).map(|e| (m.clone(), e.scim_id.clone())))
                .collect()
        };
        match op {
            GroupOp::MatchOrCreate { id, group } => {
                self.match_or_create_group(&id, &group, users).await
            }
            GroupOp::Update {
                id,
                scim_id,
                changes,
                add,
                remove,
                group,
            } => {
                let Ok(Some(entry)) = self.snapshot_group(&id) else {
                    return Outcome::Failed("snapshot entry vanished".into());
                };
                let add = resolve(&add);
                match self
                    .patch_group(&id, entry, &group.desired, &changes, &add, &remove)
                    .await
                {
                    Err(e) if e.is_not_found() => {
                        // The group was deleted behind our back: forget it and match afresh.
                        if let Err(e) = self.snapshot.remove_group(&id) {
                            return e.into();
                        }
                        self.match_or_create_group(&id, &group, users).await
                    }
                    Err(e) => self.failed(Kind::Group, &id, Some(&scim_id), Action::Update, e),
                    Ok(()) => Outcome::Updated,
                }
            }
            GroupOp::Deprovision {
                id,
                scim_id,
                mode,
                members,
            } => {
                let result = match mode {
                    DeprovisionMode::Delete => self.client.delete(Endpoint::Groups, &scim_id).await,
                    DeprovisionMode::Deactivate => {
                        let mut r = Ok(());
                        for chunk in members.chunks(MEMBER_BATCH) {
                            let ops = chunk.iter().map(member_remove).collect();
                            r = self.client.patch(Endpoint::Groups, &scim_id, ops).await;
                            if r.is_err() {
                                break;
                            }
                        }
                        r
                    }
                };
                match result {
                    Ok(())
                    | Err(ScimError {
                        status: Some(404), ..
                    }) => {
                        let detail = match mode {
                            DeprovisionMode::Delete => "group left scope: deleted",
                            DeprovisionMode::Deactivate => {
                                "group left scope: managed members removed, group no longer managed"
                            }
                        };
                        self.record(
                            Kind::Group,
                            &id,
                            Some(&scim_id),
                            Action::Delete,
                            Status::Success,
                            detail,
                        );
                        match self.snapshot.remove_group(&id) {
                            Ok(()) => Outcome::Deprovisioned,
                            Err(e) => e.into(),
                        }
                    }
                    Err(e) => self.failed(Kind::Group, &id, Some(&scim_id), Action::Delete, e),
                }
            }
        }
    }

    fn snapshot_group(&self, id: &SourceId) -> Result<Option<GroupEntry>, StateError> {
        Ok(self.snapshot.groups()?.remove(id))
    }

    /// Sends attribute changes and member additions/removals in PATCHes of at most
    /// [`MEMBER_BATCH`] member changes, recording each confirmed batch in the snapshot.
    async fn patch_group(
        &self,
        id: &SourceId,
        mut entry: GroupEntry,
        desired: &Desired,
        changes: &[Change],
        add: &[(SourceId, ScimId)],
        remove: &[(SourceId, ScimId)],
    ) -> Result<(), ScimError> {
        let mut attr_ops = change_ops(changes);
        let mut units: Vec<(bool, &(SourceId, ScimId))> = add.iter().map(|m| (true, m)).collect();
        units.extend(remove.iter().map(|m| (false, m)));
        let mut chunks: Vec<&[(bool, &(SourceId, ScimId))]> = units.chunks(MEMBER_BATCH).collect();
        if chunks.is_empty() && !attr_ops.is_empty() {
            chunks.push(&[]);
        }
        for chunk in chunks {
            let mut ops = std::mem::take(&mut attr_ops);
            let added: Vec<Json> = chunk
                .iter()
                .filter(|(a, _)| *a)
                .map(|(_, (_, s))| json!({"value": s.as_str()}))
                .collect();
            if !added.is_empty() {
                ops.push(json!({"op": "add", "path": "members", "value": added}));
            }
            ops.extend(
                chunk
                    .iter()
                    .filter(|(a, _)| !*a)
                    .map(|(_, (_, s))| member_remove(s)),
            );
            self.client
                .patch(Endpoint::Groups, &entry.scim_id, ops)
                .await?;
            if !changes.is_empty() {
                entry.attrs = desired.attrs.clone();
            }
            for (is_add, (m, s)) in chunk {
                if *is_add {
                    entry.members.insert(m.clone(), s.clone());
                } else {
                    entry.members.remove(m);
                }
            }
            entry.changed_at = state::now();
            if let Err(e) = self.snapshot.put_group(id, &entry) {
                tracing::error!(object_id = %id, error = %e, "Could not record a confirmed group change.");
            }
        }
        let mut detail = Vec::new();
        if !add.is_empty() {
            detail.push(format!("members added: {}", add.len()));
        }
        if !remove.is_empty() {
            detail.push(format!("members removed: {}", remove.len()));
        }
        self.record_changes(
            Kind::Group,
            id,
            &entry.scim_id,
            Action::Update,
            &detail.join("; "),
            modified(desired, changes),
        );
        Ok(())
    }

    async fn match_or_create_group(
        &self,
        id: &SourceId,
        group: &DesiredGroup,
        users: &BTreeMap<SourceId, UserSummary>,
    ) -> Outcome {
        let want: Vec<(SourceId, ScimId)> = group
            .members
            .iter()
            .filter_map(|m| users.get(m).map(|e| (m.clone(), e.scim_id.clone())))
            .collect();
        let rules = self.target.mappings.group_matching();
        let (first, rest) = want.split_at(want.len().min(MEMBER_BATCH));
        let mut rounds = 0;
        let scim_id = loop {
            match self
                .find(Endpoint::Groups, &rules, &group.desired, rounds == 0)
                .await
            {
                Err(e) => return self.failed(Kind::Group, id, None, Action::Other, e),
                Ok(Found::Ambiguous(why)) => {
                    self.record(Kind::Group, id, None, Action::Skip, Status::Skipped, &why);
                    return Outcome::Skipped(why);
                }
                Ok(Found::One(resource, by)) => {
                    return self
                        .adopt_group(id, group, &resource, by, &want, users)
                        .await
                }
                Ok(Found::None) => {}
            }
            match self.create_group(group, first).await {
                Ok(scim_id) => break scim_id,
                // As for users: the POST may have been applied; match before creating again.
                Err(e) if e.retryable && rounds < CREATE_ROUNDS => {
                    rounds += 1;
                    tokio::time::sleep(create_pause(rounds, &e, self.target)).await;
                }
                Err(e) => return self.failed(Kind::Group, id, None, Action::Create, e),
            }
        };
        self.claim_kind(true, &scim_id, id);
        let entry = GroupEntry {
            scim_id: scim_id.clone(),
            attrs: group.desired.attrs.clone(),
            members: first.iter().cloned().collect(),
            matched_by: MatchedBy::Created,
            changed_at: state::now(),
        };
        if let Err(e) = self.snapshot.put_group(id, &entry) {
            return e.into();
        }
        self.record_changes(
            Kind::Group,
            id,
            &scim_id,
            Action::Create,
            &format!("created with {} members", first.len()),
            created(&group.desired),
        );
        if !rest.is_empty() {
            if let Err(e) = self
                .patch_group(id, entry, &group.desired, &[], rest, &[])
                .await
            {
                return self.failed(Kind::Group, id, Some(&scim_id), Action::Update, e);
            }
        }
        Outcome::Created
    }

    /// `POST /Groups` with the first batch of members.
    async fn create_group(
        &self,
        group: &DesiredGroup,
        first: &[(SourceId, ScimId)],
    ) -> Result<ScimId, ScimError> {
        let mut body = group.desired.to_resource(CORE_GROUP);
        if !first.is_empty() {
            if let Some(obj) = body.as_object_mut() {
                obj.insert(
                    "members".into(),
                    Json::Array(
                        first
                            .iter()
                            .map(|(_, s)| json!({"value": s.as_str()}))
                            .collect(),
                    ),
                );
            }
        }
        self.client
            .create(Endpoint::Groups, &body)
            .await
            .map(|(scim_id, _)| scim_id)
    }

    async fn adopt_group(
        &self,
        id: &SourceId,
        group: &DesiredGroup,
        resource: &Json,
        by: String,
        want: &[(SourceId, ScimId)],
        users: &BTreeMap<SourceId, UserSummary>,
    ) -> Outcome {
        let Some(scim_id) = resource.get("id").and_then(Json::as_str).map(ScimId::from) else {
            return Outcome::Failed("the matched group has no id".into());
        };
        if !self.claim_kind(true, &scim_id, id) {
            let why = format!(
                "group {scim_id} matched by {by} is already managed for another directory group"
            );
            self.record(
                Kind::Group,
                id,
                Some(&scim_id),
                Action::Skip,
                Status::Skipped,
                &why,
            );
            return Outcome::Skipped(why);
        }
        let current: BTreeMap<String, Json> = self
            .target
            .mappings
            .groups
            .iter()
            .filter(|r| r.apply == crate::config::Apply::Always)
            .filter_map(|r| r.target.read(resource).map(|v| (r.target.to_string(), v)))
            .collect();
        let changes = plan::diff(&current, &group.desired.attrs);
        let present: BTreeSet<&str> = resource
            .get("members")
            .and_then(Json::as_array)
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| m.get("value").and_then(Json::as_str))
                    .collect()
            })
            .unwrap_or_default();
        let add: Vec<(SourceId, ScimId)> = want
            .iter()
            .filter(|(_, s)| !present.contains(s.as_str()))
            .cloned()
            .collect();
        // Only members scimsync manages are removed; accounts it never matched stay.
        let remove: Vec<(SourceId, ScimId)> = users
            .iter()
            .filter(|(m, e)| present.contains(e.scim_id.as_str()) && !group.members.contains(*m))
            .map(|(m, e)| (m.clone(), e.scim_id.clone()))
            .collect();
        let entry = GroupEntry {
            scim_id: scim_id.clone(),
            attrs: current,
            members: want
                .iter()
                .filter(|(_, s)| present.contains(s.as_str()))
                .cloned()
                .collect(),
            matched_by: MatchedBy::Adopted(by.clone()),
            changed_at: state::now(),
        };
        if let Err(e) = self.snapshot.put_group(id, &entry) {
            return e.into();
        }
        self.record(
            Kind::Group,
            id,
            Some(&scim_id),
            Action::Other,
            Status::Success,
            &format!("adopted existing group matched by {by}"),
        );
        if changes.is_empty() && add.is_empty() && remove.is_empty() {
            return Outcome::Unchanged;
        }
        match self
            .patch_group(id, entry, &group.desired, &changes, &add, &remove)
            .await
        {
            Ok(()) => Outcome::Updated,
            Err(e) => self.failed(Kind::Group, id, Some(&scim_id), Action::Update, e),
        }
    }
}

fn member_remove(scim_id: &ScimId) -> Json {
    json!({"op": "remove", "path": format!("members[value eq {}]", crate::mapping::path::quote(scim_id.as_str()))})
}

fn user_entry(scim_id: ScimId, desired: &Desired, matched_by: MatchedBy) -> UserEntry {
    UserEntry {
        scim_id,
        attrs: desired.attrs.clone(),
        hash: plan::hash(&desired.attrs),
        active: desired.attrs.get("active") != Some(&Json::Bool(false)),
        deprovisioned: false,
        matched_by,
        changed_at: state::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_state_owned_gives_what_the_borrowed_one_gives() {
        let config = crate::config::Config::parse(
            std::path::Path::new("x.toml"),
            "[source]\nkind = \"json\"\npath = \"d.json\"\n[scope]\ngroups = [\"g1\", \"g2\"]\n\
             [[target]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/v2\"\ntoken_env = \"T\"\n\
             [[target.user_mapping]]\ntarget = \"userName\"\nsource = \"mail\"\nmatching_precedence = 1\n",
        )
        .expect("valid");
        // u3 has no mail (rejected), u5 is in no assigned group, g3 is not assigned, and u9 is
        // not a user.
        let dir = crate::source::json::parse(
            std::path::Path::new("d.json"),
            br#"{"users": [{"objectId": "u4", "mail": "d@x"}, {"objectId": "u1", "mail": "a@x"},
                           {"objectId": "u3"}, {"objectId": "u2", "mail": "b@x"},
                           {"objectId": "u5", "mail": "e@x"}],
                "groups": [
                  {"objectId": "g1", "displayName": "One", "members": ["u4", "u1", "u3", "u9"]},
                  {"objectId": "g2", "displayName": "Two", "members": ["u2", "u4"]},
                  {"objectId": "g3", "displayName": "Three", "members": ["u5"]}
                ]}"#,
        )
        .expect("valid");
        let target = &config.targets[0];
        let borrowed = desired_state(&dir, &config.scope, target).expect("in scope");
        let owned = desired_state_owned(dir, &config.scope, target).expect("in scope");
        assert_eq!(format!("{owned:?}"), format!("{borrowed:?}"));
        assert_eq!(owned.users.len(), 3);
        assert_eq!(owned.rejected.len(), borrowed.rejected.len());
        assert!(owned.protected.contains(&SourceId::from("u3")));
    }
}
