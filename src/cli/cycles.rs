//! Rendering `sync` and `plan`: the cycle reports, the plan operation by operation, or the
//! plan as the stable JSON document (docs/plan-json.md).

use super::{err, out, plan_json, EXIT_FATAL, EXIT_OK, EXIT_PARTIAL};
use crate::config::{self, Config};
use crate::control::{RunOutcome, TargetRun};
use crate::engine::{self, CycleReport, PlannedCycle};
use crate::ids::SourceId;
use crate::plan::{Change, GroupOp, UserOp};
use crate::target::Target;

/// Prints what `sync` (or `plan`) did for each target; returns the exit code.
pub(super) fn render(config: &Config, runs: &[TargetRun], dry_run: bool, json: bool) -> i32 {
    let mut code = EXIT_OK;
    let mut document = plan_json::PlanDocument {
        format_version: plan_json::FORMAT_VERSION,
        targets: Vec::new(),
    };
    for run in runs {
        for note in &run.notes {
            err!("target {:?}: {note}", run.target);
        }
        match &run.outcome {
            RunOutcome::Done { report, plan } if json => {
                let empty = PlannedCycle::default();
                let plan = plan.as_deref().unwrap_or(&empty);
                document
                    .targets
                    .push(plan_json::target_plan(&report.target, plan));
            }
            RunOutcome::Done { report, plan } => {
                match (dry_run, plan) {
                    (true, Some(plan)) => print_plan(config, &run.target, plan),
                    _ => print_report(report),
                }
                for note in &report.notes {
                    err!("target {:?}: {note}", report.target);
                }
                for p in &report.problems {
                    err!("  {}", crate::text::escape(p));
                }
                if !dry_run && report.incomplete() {
                    code = code.max(EXIT_PARTIAL);
                }
            }
            RunOutcome::Failed { error } => {
                err!("target {:?}: {}", run.target, crate::text::escape(error));
                code = EXIT_FATAL;
            }
        }
    }
    if json {
        match serde_json::to_string_pretty(&document) {
            Ok(text) => out!("{text}"),
            Err(e) => {
                err!("cannot serialise the plan: {e}");
                return EXIT_FATAL;
            }
        }
    }
    code
}

fn print_report(r: &CycleReport) {
    let c = |c: &engine::Counts| {
        format!(
            "created {}, updated {}, deprovisioned {}, unchanged {}, skipped {}, failed {}",
            c.created, c.updated, c.deprovisioned, c.unchanged, c.skipped, c.failed
        )
    };
    out!("target {:?}: users {}", r.target, c(&r.users));
    out!("target {:?}: groups {}", r.target, c(&r.groups));
    out!("target {:?}: {} requests sent", r.target, r.requests);
    if r.held > 0 {
        out!(
            "target {:?}: {} deprovisions held (deletion threshold)",
            r.target,
            r.held
        );
    }
    if r.escrow > 0 || r.deferred > 0 {
        out!(
            "target {:?}: escrow {} objects to retry, {} deferred this cycle",
            r.target,
            r.escrow,
            r.deferred
        );
    }
    match (&r.quarantined_before, &r.quarantine) {
        (_, Some(q)) => out!(
            "target {:?}: quarantined since {}: {}; scheduled cycles back off to every {} s (next at {})",
            r.target,
            q.since,
            crate::text::escape(&q.reason),
            q.interval_seconds,
            q.next_cycle
        ),
        (Some(_), None) => out!(
            "target {:?}: quarantine lifted after a successful cycle",
            r.target
        ),
        (None, None) => {}
    }
}

fn show_changes(changes: &[Change], desired: &crate::mapping::Desired) -> String {
    engine::shown_changes(desired, changes).join("; ")
}

fn show_attrs(desired: &crate::mapping::Desired) -> String {
    desired
        .on_create
        .iter()
        .chain(&desired.attrs)
        .map(|(k, v)| format!("{k} = {}", desired.shown(k, v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A readable name for a planned object: its first matching value.
fn label(desired: &crate::mapping::Desired) -> String {
    ["emails[type eq \"work\"].value", "userName", "displayName"]
        .iter()
        .find_map(|k| {
            let v = desired.attrs.get(*k)?.as_str()?;
            Some(if desired.redacted.contains(*k) {
                " <[Redact]>".to_owned()
            } else {
                format!(" <{}>", crate::text::escape(v))
            })
        })
        .unwrap_or_default()
}

fn print_plan(config: &Config, name: &str, p: &PlannedCycle) {
    let Some(Ok(target)) = Target::named(config, name) else {
        err!("target {name:?}: not in the configuration any more");
        return;
    };
    out!("target {:?}: plan", target.name);
    let matching: Vec<String> = target
        .mappings
        .user_matching()
        .iter()
        .map(|r| r.target.to_string())
        .collect();
    for op in &p.users.ops {
        print_user_op(op, &matching);
        if let Some(why) = p.why.get(op.id()) {
            out!("      why: {}", crate::text::escape(why));
        }
    }
    for (user, manager) in &p.pending_managers {
        out!(
            "  set the manager of user {} to {} once that account exists (this cycle)",
            crate::text::escape(user.as_str()),
            crate::text::escape(manager.as_str())
        );
    }
    for f in &p.users.forget {
        out!(
            "  keep user {} ({}) as it is and forget it: {}",
            crate::text::escape(f.id.as_str()),
            f.scim_id,
            crate::text::escape(&f.why)
        );
    }
    for op in &p.groups.ops {
        print_group_op(op, p);
    }
    let held = p.users.held.len() + p.groups.held.len();
    if let Some(hold) = p.users.hold.as_ref().or(p.groups.hold.as_ref()) {
        out!("  held: {held} deprovisions, {hold} in one cycle");
    }
    for hold in &p.users.held_clears {
        out!("  held: {hold}; `scimsync sync --allow-clears` clears it");
    }
    let count = |ops: usize, unchanged: usize| format!("{ops} to change, {unchanged} unchanged");
    out!(
        "target {:?}: users {}; groups {}; {} skipped",
        target.name,
        count(p.users.ops.len(), p.users.unchanged),
        count(p.groups.ops.len(), p.groups.unchanged),
        p.rejected.len()
    );
}

/// One user operation of a plan. Ids come from the directory: printed escaped, as every
/// outside text.
fn print_user_op(op: &UserOp, matching: &[String]) {
    let id = crate::text::escape(op.id().as_str());
    match op {
        UserOp::MatchOrCreate { desired, .. } => {
            out!(
                "  create user {id}{} (unless an account matches on {}): {}",
                label(desired),
                matching.join(", "),
                show_attrs(desired)
            );
        }
        UserOp::Update {
            scim_id,
            changes,
            desired,
            ..
        } => {
            out!(
                "  update user {id}{} ({scim_id}): {}",
                label(desired),
                show_changes(changes, desired)
            );
        }
        UserOp::Deprovision { scim_id, mode, .. } => {
            out!(
                "  deprovision user {id} ({scim_id}): {}",
                match mode {
                    config::DeprovisionMode::Deactivate => "active: true -> false",
                    config::DeprovisionMode::Delete => "DELETE",
                }
            );
        }
    }
}

/// One group operation of a plan, its members named where the plan knows them; every id
/// escaped.
fn print_group_op(op: &GroupOp, p: &PlannedCycle) {
    let escaped = |id: &SourceId| crate::text::escape(id.as_str());
    match op {
        GroupOp::MatchOrCreate { id, group } => {
            out!(
                "  create group {}: {}, {} members",
                escaped(id),
                show_attrs(&group.desired),
                group.members.len()
            );
        }
        GroupOp::Update {
            id,
            scim_id,
            changes,
            add,
            remove,
            group,
        } => {
            let mut parts = Vec::new();
            if !changes.is_empty() {
                parts.push(show_changes(changes, &group.desired));
            }
            let named = |m: &SourceId| match p.labels.get(m) {
                Some(name) => format!("{} ({name})", escaped(m)),
                None => escaped(m),
            };
            if !add.is_empty() {
                let names: Vec<String> = add.iter().map(named).collect();
                parts.push(format!("add members {}", names.join(", ")));
            }
            if !remove.is_empty() {
                let ids: Vec<String> = remove.iter().map(|(m, _)| escaped(m)).collect();
                parts.push(format!("remove members {}", ids.join(", ")));
            }
            out!(
                "  update group {} ({scim_id}): {}",
                escaped(id),
                parts.join("; ")
            );
        }
        GroupOp::Deprovision {
            id, scim_id, mode, ..
        } => {
            out!(
                "  deprovision group {} ({scim_id}): {}",
                escaped(id),
                match mode {
                    config::DeprovisionMode::Deactivate => "remove managed members",
                    config::DeprovisionMode::Delete => "DELETE",
                }
            );
        }
    }
}
