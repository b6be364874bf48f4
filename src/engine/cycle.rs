//! One cycle of one target, orchestration only: the guards, the desired state and its plan,
//! the users' operations and then the groups' (planned again once the users' accounts exist),
//! the escrow, and the facts kept for the next cycle.

use super::desired::{desired_state, DesiredState};
use super::escrow;
use super::executor::Executor;
use super::record::Recorder;
use super::report::{CycleReport, Outcome};
use super::{guard, leaving, progress, references, CycleOptions, EngineError, Progress};
use crate::audit::{self, Kind};
use crate::config::{Config, DeprovisionMode};
use crate::ids::{SourceId, TargetName};
use crate::plan::{self, DesiredGroup, GroupOp, GroupPlan, PlanOptions, UserOp, UserPlan};
use crate::scim::profile::Learned;
use crate::scim::{Client, Endpoint, Halt, Profile};
use crate::source::Directory;
use crate::state::{self, Snapshot, StateError, Store, UserSummary};
use crate::target::Target;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Meta key of what was learned about the target (its [`Learned`] profile).
pub(crate) const PROFILE_KEY: &str = "target_profile";

/// The plans a cycle would carry out, for `plan` and `--dry-run`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct PlannedCycle {
    pub(crate) users: UserPlan,
    pub(crate) groups: GroupPlan,
    pub(crate) rejected: Vec<(SourceId, Kind, String)>,
    /// A readable name (userName) of each user a group operation adds, for the plan.
    #[serde(default)]
    pub(crate) labels: BTreeMap<SourceId, String>,
    /// Why each user created or deprovisioned is in or out of the scope.
    #[serde(default)]
    pub(crate) why: BTreeMap<SourceId, String>,
    /// Users whose manager has no account yet: set once it has, in this cycle.
    #[serde(default)]
    pub(crate) pending_managers: references::Pending,
}

pub(crate) fn plan_options(target: &Target, opts: CycleOptions) -> PlanOptions {
    PlanOptions {
        full: opts.full,
        mode: target.deprovision,
        deletion_threshold: target.deletion_threshold,
        deletion_threshold_percent: (target.deletion_threshold_percent < 100.0)
            .then_some(target.deletion_threshold_percent),
        allow_deletes: opts.allow_deletes,
        clear_threshold_percent: (!opts.allow_clears && target.attribute_clear_threshold < 100.0)
            .then_some(target.attribute_clear_threshold),
    }
}

/// The target's profile: what `[target.compat]` says and what was learned before, unless a
/// full sync learns it afresh.
pub(crate) fn load_profile(
    snapshot: &Snapshot,
    target: &Target,
    full: bool,
) -> Result<Arc<Profile>, StateError> {
    let learned: Option<Learned> = if full {
        None
    } else {
        snapshot.meta(PROFILE_KEY)?
    };
    Ok(Arc::new(Profile::new(
        target.compat.clone(),
        target.url.trim_end_matches('/'),
        learned,
    )))
}

/// Stores what the cycle learned about the target, if anything.
fn save_profile(snapshot: &Snapshot, profile: &Profile) -> Result<(), StateError> {
    match profile.take_changed() {
        Some(learned) => snapshot.set_meta(PROFILE_KEY, &learned),
        None => Ok(()),
    }
}

/// The snapshot says what one server holds: pointed at another URL, it would make scimsync
/// believe accounts exist that do not (or miss ones that do). Only a full sync, which matches
/// every object again, may move a snapshot to a new URL.
fn url_guard(target: &Target, snapshot: &Snapshot, opts: CycleOptions) -> Result<(), EngineError> {
    let url = target.url.trim_end_matches('/');
    match snapshot.meta::<String>("target_url")? {
        Some(old) if old != url && !opts.full => Err(EngineError::UrlChanged {
            old,
            new: url.to_owned(),
            target: target.name.clone(),
        }),
        _ => Ok(()),
    }
}

/// The guards that stop a cycle before anything is planned, then the desired state.
fn checked_desired_state(
    dir: Cow<'_, Directory>,
    config: &Config,
    target: &Target,
    snapshot: &Snapshot,
    profile: &Profile,
    opts: CycleOptions,
) -> Result<DesiredState, EngineError> {
    guard::outage_guard(&dir, snapshot, config.min_source_ratio)?;
    url_guard(target, snapshot, opts)?;
    // Read once: the mapping asks for every attribute of every user.
    let refused = profile.refused();
    Ok(desired_state(dir, target, &|p| refused.contains_key(p))?)
}

/// Plans one target without any call to it. Given the directory by value (the last or only
/// target of a run), the plan drops each source object once it is mapped.
pub(crate) fn plan_target(
    dir: Cow<'_, Directory>,
    config: &Config,
    target: &Target,
    store: &Store,
    opts: CycleOptions,
) -> Result<PlannedCycle, EngineError> {
    let snapshot = store.snapshot(&TargetName(target.name.clone()))?;
    let profile = load_profile(&snapshot, target, opts.full)?;
    let want = checked_desired_state(dir, config, target, &snapshot, &profile, opts)?;
    plan_desired(want, &snapshot.user_summaries()?, &snapshot, target, opts)
}

/// What a real cycle still needs of its desired state once the plan has taken it over: the
/// groups are planned again after the users' accounts exist, and the escrow is cleared of the
/// objects that left the source.
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
    target: &Target,
    opts: CycleOptions,
) -> Result<PlannedCycle, EngineError> {
    let popts = plan_options(target, opts);
    let of = |m: &SourceId| known.get(m).map(|e| e.scim_id.clone());
    let pending = references::resolve_in(target, snapshot, &of, &mut want);
    // The users with an account after this plan are exactly the desired users: so the group
    // plan asks the desired users, and goes first, while they are still at hand.
    let groups = plan::plan_groups_owned(
        &snapshot.groups()?,
        std::mem::take(&mut want.groups),
        |m| want.users.contains_key(m),
        &want.protected,
        popts,
    );
    let labels = member_labels(&groups, &want.users);
    let wanted_users = std::mem::take(&mut want.users);
    // Users kept when they leave the scope are no longer managed: neither deprovisioned nor
    // counted among the managed users by the deletion guards.
    let forget = leaving::kept(&want, known);
    let managed = if forget.is_empty() {
        Cow::Borrowed(known)
    } else {
        let gone: BTreeSet<&SourceId> = forget.iter().map(|f| &f.id).collect();
        Cow::Owned(
            known
                .iter()
                .filter(|(id, _)| !gone.contains(id))
                .map(|(id, e)| (id.clone(), e.clone()))
                .collect(),
        )
    };
    // A user's attributes are decoded only where its hash differs.
    let mut users = plan::plan_users_owned(&managed, wanted_users, &want.protected, popts, |id| {
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
    users.forget = forget;
    references::order(&mut users.ops, &pending);
    let why = leaving::reasons(&want, &users);
    Ok(PlannedCycle {
        users,
        groups,
        rejected: want.rejected,
        labels,
        why,
        pending_managers: pending,
    })
}

/// The userName of each user the group operations add, so that a plan names them.
fn member_labels(
    groups: &GroupPlan,
    users: &BTreeMap<SourceId, crate::mapping::Desired>,
) -> BTreeMap<SourceId, String> {
    let added = groups.ops.iter().flat_map(|op| match op {
        GroupOp::Update { add, .. } => add.as_slice(),
        _ => &[],
    });
    added
        .filter_map(|id| {
            let name = users.get(id)?.attrs.get("userName")?.as_str()?;
            Some((id.clone(), crate::text::escape(name)))
        })
        .collect()
}

/// Runs one cycle of one target; see [`run_target_with`].
pub(crate) async fn run_target_until(
    dir: Cow<'_, Directory>,
    config: &Config,
    target: &Target,
    store: &Store,
    opts: CycleOptions,
    stop: &CancellationToken,
) -> Result<(CycleReport, PlannedCycle), EngineError> {
    let progress = Progress::default();
    run_target_with(dir, config, target, store, opts, stop, &progress).await
}

/// Everything one cycle of one target works with.
struct Cycle<'a> {
    config: &'a Config,
    target: &'a Target,
    store: &'a Store,
    snapshot: Snapshot,
    profile: Arc<Profile>,
    opts: CycleOptions,
    report: CycleReport,
    now: chrono::DateTime<chrono::Utc>,
    source_users: usize,
}

/// Runs one cycle of one target against a directory read, counting finished operations in
/// `progress`. Returns its report and its plan: whole for a dry run; after a real cycle, only
/// what was held back remains in it. Starts no new operation once `stop` is cancelled
/// (shutdown); the operations already started finish and are recorded.
pub(crate) async fn run_target_with(
    dir: Cow<'_, Directory>,
    config: &Config,
    target: &Target,
    store: &Store,
    opts: CycleOptions,
    stop: &CancellationToken,
    progress: &Progress,
) -> Result<(CycleReport, PlannedCycle), EngineError> {
    let mut c = Cycle::begin(config, target, store, opts, dir.users.len())?;
    let (mut planned, known, replan) = c.plan(dir).await?;
    if opts.dry_run {
        c.report
            .count_planned(&planned.users.ops, &planned.groups.ops);
        c.report.users.unchanged += planned.users.unchanged;
        c.report.groups.unchanged += planned.groups.unchanged;
        return Ok((c.report, planned));
    }
    let escrow = c.snapshot.escrow()?;
    planned.users.ops = escrow::defer(
        std::mem::take(&mut planned.users.ops),
        UserOp::id,
        &escrow,
        c.now,
        Kind::User,
        &mut c.report,
    );
    let client = Client::new(target, c.profile.clone())?
        .stopping_on(stop.clone())
        .holding(store.gate(&target.name));
    // Nothing to send, nothing held, nothing in escrow: the snapshot will not change, so the
    // group plan made with the users stands and no claim, second plan or cleanup is needed.
    let idle = planned.users.ops.is_empty()
        && planned.groups.ops.is_empty()
        && c.report.held == 0
        && c.report.held_clears.is_empty()
        && planned.users.forget.is_empty()
        && escrow.is_empty();
    if idle {
        progress.planned(0);
        c.report.users.unchanged += planned.users.unchanged;
        c.report.groups.unchanged += planned.groups.unchanged;
        if stop.is_cancelled() {
            c.report.problems.push(STOPPED_EARLY.into());
        }
        c.finish(&client, 0).await?;
        return Ok((c.report, planned));
    }
    let rec = Recorder::new(
        &c.report.cycle_id,
        &target.name,
        open_log(store, &target.name),
    );
    let snapshot = c.snapshot.clone();
    let mut exec = Executor::new(&client, &snapshot, target, rec);
    exec.allow_clears = opts.allow_clears;
    c.claim_all(&exec, known)?;
    leaving::forget(&snapshot, &exec.rec, &planned.users.forget)?;
    if !planned.users.forget.is_empty() {
        c.report.notes.push(format!(
            "{} users left the scope and are kept as they are, no longer managed (skip_out_of_scope_deletions)",
            planned.users.forget.len()
        ));
    }
    // The groups' held deprovisions are staged from the replan, in the groups' phase.
    c.stage_held(&exec, &planned.users.held, &[]);
    c.stage_clears(&exec, &planned.users.spared);
    progress.planned(planned.users.ops.len() + planned.groups.ops.len());
    // Accounts are deleted after the groups, which remove them as members while they exist:
    // a server may keep a deleted account in its groups (scim2-server) or refuse to remove a
    // member it no longer knows (django-scim2: 400).
    let (deletes, users): (Vec<UserOp>, Vec<UserOp>) = std::mem::take(&mut planned.users.ops)
        .into_iter()
        .partition(|op| {
            matches!(
                op,
                UserOp::Deprovision {
                    mode: DeprovisionMode::Delete,
                    ..
                }
            )
        });
    exec.pending = std::mem::take(&mut planned.pending_managers);
    let mut attempted = c.users_phase(&exec, users, &escrow, stop, progress).await?;
    if !stop.is_cancelled() {
        attempted += exec.settle_managers().await;
    }
    c.report.users.unchanged += planned.users.unchanged;
    let before = planned.groups.ops.len();
    let (groups, n) = c
        .groups_phase(&exec, &replan, &escrow, before, stop, progress)
        .await?;
    attempted += n;
    attempted += c
        .users_phase(&exec, deletes, &escrow, stop, progress)
        .await?;
    if stop.is_cancelled() {
        c.report.problems.push(STOPPED_EARLY.into());
    }
    c.forget_escrow_of_departed(&replan)?;
    drop((replan, exec));
    c.finish(&client, attempted).await?;
    let planned = PlannedCycle { groups, ..planned };
    Ok((c.report, planned))
}

const STOPPED_EARLY: &str =
    "stopped early for shutdown: operations not started are left to the next cycle";

impl<'a> Cycle<'a> {
    fn begin(
        config: &'a Config,
        target: &'a Target,
        store: &'a Store,
        opts: CycleOptions,
        source_users: usize,
    ) -> Result<Cycle<'a>, EngineError> {
        let snapshot = store.snapshot(&TargetName(target.name.clone()))?;
        Ok(Cycle {
            config,
            target,
            store,
            profile: load_profile(&snapshot, target, opts.full)?,
            report: CycleReport {
                target: target.name.clone(),
                cycle_id: uuid::Uuid::new_v4().to_string(),
                started_at: state::now(),
                dry_run: opts.dry_run,
                quarantined_before: snapshot.quarantine()?,
                ..Default::default()
            },
            snapshot,
            opts,
            now: chrono::Utc::now(),
            source_users,
        })
    }

    /// The guards, the desired state and its plan, with the snapshot's user summaries (read on
    /// a blocking thread while the directory is mapped) and what the groups' second plan needs.
    async fn plan(
        &mut self,
        dir: Cow<'_, Directory>,
    ) -> Result<(PlannedCycle, BTreeMap<SourceId, UserSummary>, Replan), EngineError> {
        let scan = {
            let snapshot = self.snapshot.clone();
            tokio::task::spawn_blocking(move || snapshot.user_summaries())
        };
        let (config, target, opts) = (self.config, self.target, self.opts);
        let want = checked_desired_state(dir, config, target, &self.snapshot, &self.profile, opts)?;
        let replan = Replan::of(&want);
        let known = scan
            .await
            .map_err(|e| StateError::Storage(format!("the snapshot scan stopped: {e}")))??;
        let planned = plan_desired(want, &known, &self.snapshot, target, opts)?;
        self.report_plan(&planned);
        Ok((planned, known, replan))
    }

    /// Every managed account claimed for its object: the users' from the summaries the plan
    /// read (nothing has written to the snapshot since, under the target's lock), the groups'
    /// from one scan of their ids.
    fn claim_all(
        &self,
        exec: &Executor<'_>,
        known: BTreeMap<SourceId, UserSummary>,
    ) -> Result<(), StateError> {
        for (id, user) in &known {
            exec.claim(Kind::User, &user.scim_id, id);
        }
        drop(known);
        self.snapshot.group_scim_ids(&mut |id, scim_id| {
            exec.claim(Kind::Group, &scim_id, &id);
        })
    }

    /// The users' operations carried out; returns how many were attempted.
    async fn users_phase(
        &mut self,
        exec: &Executor<'_>,
        ops: Vec<UserOp>,
        escrow: &BTreeMap<SourceId, state::EscrowEntry>,
        stop: &CancellationToken,
        progress: &Progress,
    ) -> Result<usize, EngineError> {
        let unmatched = ops
            .iter()
            .filter(|op| matches!(op, UserOp::MatchOrCreate { .. }))
            .count();
        exec.matcher.prepare(Endpoint::Users, unmatched).await;
        let target = &self.target.name;
        let outcomes = run_ops(ops, exec.client, stop, |op| async {
            let id = op.id().clone();
            let action = progress::user_action(&op);
            let outcome = audit::collect(exec.user(op)).await;
            progress.finished(target, "user", action, outcome.status());
            (id, outcome)
        })
        .await;
        self.settle(exec.client, escrow, Kind::User, outcomes)
    }

    /// An object that left the source and has no account needs no retry any more.
    fn forget_escrow_of_departed(&self, replan: &Replan) -> Result<(), StateError> {
        for id in self.snapshot.escrow()?.keys() {
            if !replan.wants(id) && !self.snapshot.holds(id)? {
                self.snapshot.escrow_clear(id)?;
            }
        }
        Ok(())
    }

    /// The plan's rejections and holds, in the report.
    fn report_plan(&mut self, planned: &PlannedCycle) {
        for (id, kind, why) in &planned.rejected {
            self.report.counts(*kind).skipped += 1;
            self.report
                .problems
                .push(format!("skipped {kind} {id}: {why}"));
        }
        self.report.held_clears = planned.users.held_clears.clone();
        for hold in &planned.users.held_clears {
            self.report.problems.push(format!(
                "held: {hold}; run `scimsync sync --allow-clears` to clear it"
            ));
        }
        self.report.held = planned.users.held.len() + planned.groups.held.len();
        self.report.hold = planned.users.hold.clone().or(planned.groups.hold.clone());
        if let Some(hold) = &self.report.hold {
            self.report.problems.push(format!(
                "held {} deprovisions: {hold} in one cycle; run `scimsync sync --allow-deletes` to carry them out",
                self.report.held
            ));
        }
    }

    /// Clears held by the attribute-wipe guard: recorded for each user that keeps the value.
    fn stage_clears(&self, exec: &Executor<'_>, spared: &BTreeMap<String, Vec<SourceId>>) {
        for hold in &self.report.held_clears {
            let crate::plan::Hold::AttributeClear { attribute, .. } = hold else {
                continue;
            };
            let why =
                format!("not cleared: {hold}; run `scimsync sync --allow-clears` to clear it");
            for id in spared.get(attribute).into_iter().flatten() {
                exec.rec.held_clear(id, &why);
            }
        }
    }

    /// Held deprovisions are staged: recorded, not carried out (Entra's StagedDelete).
    fn stage_held(&self, exec: &Executor<'_>, users: &[UserOp], groups: &[GroupOp]) {
        let Some(hold) = &self.report.hold else {
            return;
        };
        let why = format!(
            "held by the deletion threshold: {hold} in one cycle; run `scimsync sync --allow-deletes` to carry it out"
        );
        for op in users {
            if let UserOp::Deprovision { id, scim_id, .. } = op {
                exec.rec.staged(Kind::User, id, scim_id, &why);
            }
        }
        for op in groups {
            if let GroupOp::Deprovision { id, scim_id, .. } = op {
                exec.rec.staged(Kind::Group, id, scim_id, &why);
            }
        }
    }

    /// The groups, planned again now that the users' accounts exist, and carried out. Returns
    /// the group plan (what it held back) and how many operations were attempted.
    async fn groups_phase(
        &mut self,
        exec: &Executor<'_>,
        replan: &Replan,
        escrow: &BTreeMap<SourceId, state::EscrowEntry>,
        planned_before: usize,
        stop: &CancellationToken,
        progress: &Progress,
    ) -> Result<(GroupPlan, usize), EngineError> {
        let users = self.snapshot.user_summaries()?;
        let accounts: BTreeSet<SourceId> = users.keys().cloned().collect();
        let mut entries = self.snapshot.groups()?;
        // A member recorded under an account that is no longer its user's (deleted behind our
        // back and created again) is not a member: the new account is added. The old id is
        // not removed: it names no account, and a server may refuse it (django-scim2: 400).
        for entry in entries.values_mut() {
            entry
                .members
                .retain(|m, s| users.get(m).is_none_or(|u| &u.scim_id == s));
        }
        let mut groups = plan::plan_groups(
            &entries,
            &replan.groups,
            &accounts,
            &replan.protected,
            plan_options(self.target, self.opts),
        );
        drop(accounts);
        if self.report.hold.is_none() && groups.hold.is_some() {
            self.report.hold = groups.hold.clone();
        }
        self.stage_held(exec, &[], &groups.held);
        groups.ops = escrow::defer(
            std::mem::take(&mut groups.ops),
            group_op_id,
            escrow,
            self.now,
            Kind::Group,
            &mut self.report,
        );
        if exec.client.halted().is_some() {
            // Every group call would be refused as well.
            self.report.groups.skipped += groups.ops.len();
            groups.ops.clear();
        }
        progress.replanned(planned_before, groups.ops.len());
        let unmatched = groups
            .ops
            .iter()
            .filter(|op| matches!(op, GroupOp::MatchOrCreate { .. }))
            .count();
        exec.matcher.prepare(Endpoint::Groups, unmatched).await;
        let ops = std::mem::take(&mut groups.ops);
        let target = &self.target.name;
        let outcomes = run_ops(ops, exec.client, stop, |op| async {
            let id = group_op_id(&op).clone();
            let action = progress::group_action(&op);
            let outcome = audit::collect(exec.group(op, &users)).await;
            progress.finished(target, "group", action, outcome.status());
            (id, outcome)
        })
        .await;
        self.report.groups.unchanged += groups.unchanged;
        let attempted = self.settle(exec.client, escrow, Kind::Group, outcomes)?;
        Ok((groups, attempted))
    }

    /// One kind's outcomes kept: the escrow settled (unless the target halted on credentials)
    /// and the report tallied; returns how many operations were attempted.
    fn settle(
        &mut self,
        client: &Client,
        escrow: &BTreeMap<SourceId, state::EscrowEntry>,
        kind: Kind,
        outcomes: Vec<(SourceId, super::report::Outcome)>,
    ) -> Result<usize, EngineError> {
        let attempted = outcomes.len();
        // The failures of a halted client are not its objects' own, except the call that
        // found the target unavailable.
        let auth = matches!(
            client.halted(),
            Some(Halt::Credentials(_) | Halt::Unreachable(_))
        );
        escrow::settle(&self.snapshot, auth, escrow, kind, &outcomes, self.now)?;
        self.report.tally(kind, outcomes);
        Ok(attempted)
    }

    /// The end of every cycle that ran: the report's closing lines, the facts kept for the
    /// next cycle (last good source size, target url, profile, quarantine, last cycle) and the
    /// flush.
    async fn finish(&mut self, client: &Client, attempted: usize) -> Result<(), EngineError> {
        let report = &mut self.report;
        let halted = client.halted();
        if let Some(halt) = &halted {
            // One line for the calls never sent, rather than one per object.
            report.problems.push(format!(
                "{halt}; {} further operations and every group were not sent",
                report.not_sent
            ));
        }
        for (attribute, why) in self.profile.refused() {
            report.notes.push(format!(
                "the target refuses {attribute} ({why}); it is not sent until `scimsync sync --full`"
            ));
        }
        for (attribute, why) in self.profile.refused_removals() {
            report.notes.push(format!(
                "the target refuses to clear {attribute} ({why}); its clears are not sent until `scimsync sync --full`"
            ));
        }
        if self.source_users > 0 {
            self.snapshot
                .set_meta("last_good_users", &self.source_users)?;
        }
        let failed = report.users.failed + report.groups.failed;
        // A snapshot moves to a new url only once a full sync re-matched everything there.
        let moved = self.opts.full && failed == 0 && halted.is_none();
        if moved || self.snapshot.meta::<String>("target_url")?.is_none() {
            self.snapshot
                .set_meta("target_url", &self.target.url.trim_end_matches('/'))?;
        }
        save_profile(&self.snapshot, &self.profile)?;
        let reason = guard::quarantine_reason(self.target, halted.as_ref(), attempted, failed);
        // A cycle that attempted nothing because every pending object waits in the escrow
        // proves nothing: a quarantine stays as it is.
        let proved_nothing = reason.is_none() && attempted == 0 && report.deferred > 0;
        report.quarantine = if proved_nothing {
            self.snapshot.quarantine()?
        } else {
            // From the end of the cycle, not its start: a long cycle must not leave a
            // back-off that is already over.
            guard::judge(&self.snapshot, self.target, reason, chrono::Utc::now())?
        };
        report.escrow = self.snapshot.escrow()?.len();
        report.requests = client.requests();
        let (users, groups) = self.snapshot.counts()?;
        crate::telemetry::managed(&self.target.name, users, groups);
        self.snapshot.set_meta("last_cycle", &*report)?;
        if let Some(log) = open_log(self.store, &self.target.name) {
            prune_log(&log, self.config).await;
        }
        self.store.flush().await?;
        Ok(())
    }
}

/// Runs planned operations, as many at once as the client takes (`concurrency`, or enough to
/// fill bulk requests), starting none once `stop` is cancelled. A write never sent because
/// shutdown began is left out: its object was not attempted this cycle.
async fn run_ops<Op, Fut>(
    ops: Vec<Op>,
    client: &Client,
    stop: &CancellationToken,
    run: impl FnMut(Op) -> Fut,
) -> Vec<(SourceId, Outcome)>
where
    Fut: std::future::Future<Output = (SourceId, Outcome)>,
{
    if ops.is_empty() {
        return Vec::new();
    }
    // With bulk, enough writes wait to fill requests; still only `concurrency` in flight.
    let width = client.write_width().await;
    futures::stream::iter(ops)
        .take_while(|_| std::future::ready(!stop.is_cancelled()))
        .map(run)
        .buffer_unordered(width)
        .filter(|(_, o)| std::future::ready(*o != Outcome::Interrupted))
        .collect()
        .await
}

/// The provisioning log, or none (with a warning) when the store cannot open it: the log
/// never stops a cycle.
pub(crate) fn open_log(store: &Store, target: &str) -> Option<state::Log> {
    store
        .log_for(target)
        .map_err(|e| {
            tracing::warn!(error = %e, "Cannot open the provisioning log; this cycle's records are not stored.");
        })
        .ok()
}

/// Applies the log's retention; a failure is a warning. Pruning scans the log's keys, so it
/// runs on a blocking thread rather than on the workers that carry the other targets' cycles.
async fn prune_log(log: &state::Log, config: &Config) {
    let (log, retention) = (log.clone(), state::Retention::of(&config.state));
    let pruned =
        tokio::task::spawn_blocking(move || log.prune(&retention, chrono::Utc::now())).await;
    match pruned {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => tracing::debug!(removed = n, "Pruned the provisioning log."),
        Ok(Err(e)) => tracing::warn!(error = %e, "Cannot prune the provisioning log."),
        Err(e) => tracing::warn!(error = %e, "Pruning the provisioning log stopped."),
    }
}

fn group_op_id(op: &GroupOp) -> &SourceId {
    match op {
        GroupOp::MatchOrCreate { id, .. }
        | GroupOp::Update { id, .. }
        | GroupOp::Deprovision { id, .. } => id,
    }
}
