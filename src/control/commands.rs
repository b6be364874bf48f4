//! The commands that need the state, run against a [`Ctx`] (in the daemon or locally): each
//! returns a typed [`Response`]; nothing here prints.

use super::owner::{self, Place};
use super::{
    status, Ctx, LogsArgs, ProvisionOutcome, ProvisionRun, Request, Response, RunOutcome,
    TargetRun, EXIT_FATAL, EXIT_USAGE,
};
use crate::audit::{self, Action, Status};
use crate::config::{Config, TargetConfig};
use crate::engine::provision::{self, Who};
use crate::engine::{self, CycleOptions, CycleReport, Progress};
use crate::ids::TargetName;
use crate::source::{self, Directory};
use crate::state::LogQuery;
use crate::target::Target;
use chrono::{DateTime, Utc};
use std::borrow::Cow;
use std::sync::Arc;

/// Runs a command.
pub(crate) async fn execute(ctx: &Ctx, request: Request) -> Response {
    match request {
        Request::Sync {
            full,
            target,
            dry_run,
            allow_deletes,
            allow_clears,
        } => {
            let opts = CycleOptions {
                full,
                dry_run,
                allow_deletes,
                allow_clears,
            };
            cycles(ctx, target.as_deref(), opts).await
        }
        Request::Plan { target } => {
            let opts = CycleOptions {
                dry_run: true,
                ..Default::default()
            };
            cycles(ctx, target.as_deref(), opts).await
        }
        Request::Provision {
            user,
            target,
            dry_run,
        } => provision(ctx, &user, target.as_deref(), dry_run).await,
        Request::Status => match status::gather_all(ctx).await {
            Ok(s) => Response::Status(s),
            Err(e) => Response::failed(EXIT_FATAL, e),
        },
        Request::Logs(args) => logs(ctx, &args).await,
    }
}

/// Every target, or the one `--target` names, built.
fn select_targets(config: &Config, only: Option<&str>) -> Result<Vec<Target>, Response> {
    let chosen: Vec<&TargetConfig> = match only {
        Some(name) => match config.target(name) {
            Some(t) => vec![t],
            None => {
                let known: Vec<_> = config.targets.iter().map(|t| t.name.as_str()).collect();
                return Err(Response::failed(
                    EXIT_USAGE,
                    format!(
                        "--target: no target named {name:?} in {} (configured: {known:?})",
                        config.path.display()
                    ),
                ));
            }
        },
        None => config.targets.iter().collect(),
    };
    chosen
        .into_iter()
        .map(|t| Target::build(t).map_err(|e| Response::failed(EXIT_USAGE, e)))
        .collect()
}

async fn read_source(config: &Config) -> Result<Directory, Response> {
    let source = source::build(&config.source, config.max_value_bytes)
        .map_err(|e| Response::failed(EXIT_FATAL, format!("source: {e}")))?;
    source
        .read()
        .await
        .map_err(|e| Response::failed(EXIT_FATAL, format!("source: {e}; no target was changed")))
}

/// `sync` and `plan`: one cycle (or plan) of every target or one.
async fn cycles(ctx: &Ctx, only: Option<&str>, opts: CycleOptions) -> Response {
    let config = &*ctx.config;
    let targets = match select_targets(config, only) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let mut dir = match read_source(config).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let last = targets.len().saturating_sub(1);
    let mut runs = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        // The last (or only) target takes the directory over, so that its plan can drop each
        // source object once mapped.
        let source = if i == last {
            Cow::Owned(std::mem::take(&mut dir))
        } else {
            Cow::Borrowed(&dir)
        };
        let mut borrowed = None;
        if !opts.dry_run {
            match owner::place(ctx, &target.name).await {
                Ok(Place::Here(b)) => borrowed = b,
                Ok(Place::Owner) => {
                    runs.push(forwarded_cycle(ctx, &target.name, opts).await);
                    continue;
                }
                Err(e) => {
                    runs.push(TargetRun {
                        target: target.name.clone(),
                        notes: Vec::new(),
                        outcome: RunOutcome::Failed {
                            error: format!("cannot find the target's owner: {e}"),
                        },
                    });
                    continue;
                }
            }
        }
        // Never at the same time as the daemon's scheduled cycle of this target.
        let _cycle = ctx.locks.lock(&target.name).await;
        let mut notes = Vec::new();
        let result = if opts.dry_run {
            engine::plan_target(source, config, target, &ctx.store, opts).map(|p| {
                let mut report = CycleReport {
                    target: target.name.clone(),
                    dry_run: true,
                    ..Default::default()
                };
                for (id, kind, why) in &p.rejected {
                    report.problems.push(format!("skipped {kind} {id}: {why}"));
                }
                (report, p)
            })
        } else {
            if let Ok(Some(q)) = ctx
                .store
                .snapshot(&TargetName(target.name.clone()))
                .and_then(|s| s.quarantine())
            {
                notes.push(format!(
                    "quarantined since {} ({}); running this cycle because sync was run by hand",
                    q.since,
                    crate::text::escape(&q.reason)
                ));
            }
            let progress = Arc::new(Progress::default());
            let watching = ctx.watch.map(|w| w(&target.name, progress.clone()));
            let cycle = engine::run_target_with(
                source, config, target, &ctx.store, opts, &ctx.stop, &progress,
            )
            .await;
            progress.end();
            if let Some(w) = watching {
                let _ = w.await;
            }
            cycle
        };
        owner::give_back(&ctx.store, borrowed).await;
        let outcome = match result {
            Ok((report, plan)) => RunOutcome::Done {
                report: Box::new(report),
                plan: Some(Box::new(plan)),
            },
            Err(e) => RunOutcome::Failed {
                error: e.to_string(),
            },
        };
        runs.push(TargetRun {
            target: target.name.clone(),
            notes,
            outcome,
        });
    }
    Response::Cycles { targets: runs }
}

/// `provision USER`: one user now, on every target or one.
async fn provision(ctx: &Ctx, user: &str, only: Option<&str>, dry_run: bool) -> Response {
    let config = &*ctx.config;
    let targets = match select_targets(config, only) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let dir = match read_source(config).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let mut runs = Vec::new();
    for target in &targets {
        let borrowed = if dry_run {
            None
        } else {
            match owner::place(ctx, &target.name).await {
                Ok(Place::Here(b)) => b,
                Ok(Place::Owner) => {
                    runs.push(forwarded_provision(ctx, &target.name, user).await);
                    continue;
                }
                Err(e) => {
                    runs.push(ProvisionRun {
                        target: target.name.clone(),
                        outcome: ProvisionOutcome::Failed {
                            error: format!("cannot find the target's owner: {e}"),
                        },
                    });
                    continue;
                }
            }
        };
        let _cycle = ctx.locks.lock(&target.name).await;
        let outcome = provision_one(ctx, &dir, target, user, dry_run).await;
        owner::give_back(&ctx.store, borrowed).await;
        runs.push(ProvisionRun {
            target: target.name.clone(),
            outcome,
        });
    }
    Response::Provision { targets: runs }
}

/// One target's cycle, run by the instance that owns it.
async fn forwarded_cycle(ctx: &Ctx, target: &str, opts: CycleOptions) -> TargetRun {
    let request = Request::Sync {
        full: opts.full,
        target: Some(target.to_owned()),
        dry_run: false,
        allow_deletes: opts.allow_deletes,
        allow_clears: opts.allow_clears,
    };
    let runs = |r| match r {
        Response::Cycles { targets } => Some(targets),
        _ => None,
    };
    match owner::forward_one(ctx, target, &request, runs).await {
        Ok((mut run, by)) => {
            run.notes
                .insert(0, format!("run by instance {by}, the target's owner"));
            run
        }
        Err(e) => TargetRun {
            target: target.to_owned(),
            notes: Vec::new(),
            outcome: RunOutcome::Failed {
                error: format!("the target's owner did not run the cycle: {e}"),
            },
        },
    }
}

/// One user's provisioning on one target, run by the instance that owns it.
async fn forwarded_provision(ctx: &Ctx, target: &str, user: &str) -> ProvisionRun {
    let request = Request::Provision {
        user: user.to_owned(),
        target: Some(target.to_owned()),
        dry_run: false,
    };
    let runs = |r| match r {
        Response::Provision { targets } => Some(targets),
        _ => None,
    };
    match owner::forward_one(ctx, target, &request, runs).await {
        Ok((run, _)) => run,
        Err(e) => ProvisionRun {
            target: target.to_owned(),
            outcome: ProvisionOutcome::Failed {
                error: format!("the target's owner did not provision the user: {e}"),
            },
        },
    }
}

async fn provision_one(
    ctx: &Ctx,
    dir: &Directory,
    target: &Target,
    user: &str,
    dry_run: bool,
) -> ProvisionOutcome {
    let failed = |e: &dyn std::fmt::Display| ProvisionOutcome::Failed {
        error: e.to_string(),
    };
    let who = match source::find_in(dir, user) {
        Some(u) => Who::Source(u),
        None => {
            let snapshot = match ctx.store.snapshot(&TargetName(target.name.clone())) {
                Ok(s) => s,
                Err(e) => return failed(&e),
            };
            match provision::find_by_user_name(dir, target, &snapshot, user) {
                Ok(Some(id)) => match dir.users.iter().find(|u| u.id == id) {
                    Some(u) => Who::Source(u),
                    None => Who::Managed(id),
                },
                Ok(None) => {
                    return ProvisionOutcome::NotFound {
                        error: format!(
                            "no user {user:?}: not an objectId, mail, userPrincipalName or mailNickname in the source, nor a userName on this target"
                        ),
                    }
                }
                Err(e) => return failed(&e),
            }
        }
    };
    match provision::provision(dir, who, target, &ctx.store, dry_run, &ctx.stop).await {
        Ok(report) => ProvisionOutcome::Done {
            report: Box::new(report),
        },
        Err(e) => failed(&e),
    }
}

/// `logs`: the records the flags ask for, oldest first.
async fn logs(ctx: &Ctx, args: &LogsArgs) -> Response {
    let q = match query(args, Utc::now()) {
        Ok(q) => q,
        Err(errors) => {
            return Response::Failed {
                code: EXIT_USAGE,
                errors,
            }
        }
    };
    let mut warnings = Vec::new();
    if let Some(t) = &args.target {
        if ctx.config.target(t).is_none() {
            // A removed target's records may still be in the log: a warning, not an error.
            warnings.push(format!(
                "--target: no target named {t:?} in {}; showing its records if the log has any",
                ctx.config.path.display()
            ));
        }
    }
    // A query may read the whole log: off the async workers, which run the daemon's cycles.
    let store = ctx.store.clone();
    match tokio::task::spawn_blocking(move || store.log()?.query(&q)).await {
        Ok(Ok(entries)) => Response::Logs { warnings, entries },
        Ok(Err(e)) => Response::failed(EXIT_FATAL, format!("provisioning log: {e}")),
        Err(e) => Response::failed(
            EXIT_FATAL,
            format!("provisioning log: the query stopped: {e}"),
        ),
    }
}

/// `--since`: a duration back from `now` (`30m`, `2h`, `7d`, `1h 30m`) or an RFC 3339 time.
pub(crate) fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(d) = humantime::parse_duration(text) {
        return chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .ok_or_else(|| format!("--since {text:?}: too long ago"));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            format!(
                "--since {text:?}: expected a duration such as 30m, 2h or 7d, or an RFC 3339 time such as 2026-01-31T08:00:00Z"
            )
        })
}

/// Turns the flags into a query; every problem is reported at once.
pub(crate) fn query(args: &LogsArgs, now: DateTime<Utc>) -> Result<LogQuery, Vec<String>> {
    let mut problems = Vec::new();
    let since = args
        .since
        .as_deref()
        .map(|s| parse_since(s, now))
        .transpose()
        .map_err(|e| problems.push(e))
        .ok()
        .flatten();
    let status = args
        .status
        .as_deref()
        .map(|s| audit::parse_name(&Status::ALL, "a status", s))
        .transpose()
        .map_err(|e| problems.push(format!("--status: {e}")))
        .ok()
        .flatten();
    // "deprovision" is what the plan and the summaries call a disable or a delete.
    let action = match args.action.as_deref() {
        None => Vec::new(),
        Some(s) if s.eq_ignore_ascii_case("deprovision") => vec![Action::Disable, Action::Delete],
        Some(s) => match audit::parse_name(&Action::ALL, "an action", s) {
            Ok(a) => vec![a],
            Err(e) => {
                problems.push(format!("--action: {e}, or deprovision"));
                Vec::new()
            }
        },
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(LogQuery {
        user: args.user.clone(),
        target: args.target.clone(),
        since,
        status,
        action,
        limit: args.limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T18:00:00Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn since_takes_durations_and_rfc3339_times() {
        let ago = |s: &str| now() - parse_since(s, now()).expect(s);
        assert_eq!(ago("30m"), chrono::Duration::minutes(30));
        assert_eq!(ago("2h"), chrono::Duration::hours(2));
        assert_eq!(ago("7d"), chrono::Duration::days(7));
        assert_eq!(ago("1h 30m"), chrono::Duration::minutes(90));
        assert_eq!(
            parse_since("2026-11-23T17:00:00+01:00", now()).expect("rfc3339"),
            now() - chrono::Duration::hours(2)
        );
        for bad in ["", "yesterday", "7", "-2h", "2026-11-23"] {
            let e = parse_since(bad, now()).expect_err(bad);
            assert!(e.starts_with("--since"), "{e}");
        }
    }
}
