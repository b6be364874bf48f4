//! The command line: argument parsing and the commands, each returning an exit code.
//!
//! Exit codes: 0 everything applied; 1 some objects failed, were skipped or were held (the rest
//! applied), a target check failed, or an expression failed; 2 a fatal error (source, state or
//! target unusable); 64 invalid configuration or usage, a bad flag too (`EX_USAGE`).
//!
//! Commands that need the state (`sync`, `plan`, `provision`, `status`, `logs`) go through
//! [`control::dispatch`]: to the daemon over its control socket when it runs, else locally.

mod check;
pub mod control;
pub mod logs;
pub mod output;
mod plan_json;
mod progress;
mod provision;
mod status;

use crate::config::{self, Config, TargetConfig};
use crate::engine::{self, CycleOptions, CycleReport, PlannedCycle};
use crate::mapping::expr::{Expression, Value};
use crate::plan::{Change, GroupOp, UserOp};
use crate::source::{self, Directory};
use crate::target::Target;
use clap::{Parser, Subcommand};
use control::Request;
use serde_json::Value as Json;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Prints a line to stdout (or to the client of the control socket); a closed pipe
/// (`scimsync plan | head`) is not an error worth a panic.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::out_line(format_args!($($arg)*))
    };
}

/// Prints a line to stderr (or to the client of the control socket).
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::cli::output::err_line(format_args!($($arg)*))
    };
}
pub(crate) use {err, out};

pub const EXIT_OK: i32 = 0;
pub const EXIT_PARTIAL: i32 = 1;
pub const EXIT_FATAL: i32 = 2;
pub const EXIT_USAGE: i32 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "scimsync",
    version,
    about = "Provision users and groups from a directory into SCIM 2.0 applications"
)]
pub struct Cli {
    /// The configuration file.
    #[arg(long, global = true, env = "SCIMSYNC_CONFIG", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Log level or filter (`warn`, `info`, `scimsync=debug`); RUST_LOG takes precedence.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    /// `text` for a terminal, `json` (one object per line) for journald and log pipelines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one provisioning cycle now.
    Sync {
        /// Ignore the snapshot's hashes and re-match every object (initial sync, recovery).
        #[arg(long)]
        full: bool,
        /// Only this target.
        #[arg(long)]
        target: Option<String>,
        /// Show what would be done and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Carry out deprovisions held back by the deletion threshold.
        #[arg(long)]
        allow_deletes: bool,
    },
    /// Show what the next cycle would do, without a single write.
    Plan {
        #[arg(long)]
        target: Option<String>,
        /// Print one JSON document (format in docs/plan-json.md).
        #[arg(long)]
        json: bool,
    },
    /// Provision one user now (objectId, mail, userPrincipalName, mailNickname or userName),
    /// showing each step: import, scope, match, action.
    Provision {
        user: String,
        /// Only this target.
        #[arg(long)]
        target: Option<String>,
        /// Show the same report and write nothing (matching queries are still sent).
        #[arg(long)]
        dry_run: bool,
    },
    /// Run as a daemon: each target on its schedule, systemd notification, control socket.
    Run,
    /// Evaluate one mapping expression.
    Expr {
        expression: String,
        /// NAME=VALUE; repeat a name for a multi-valued attribute.
        #[arg(long = "attr", value_name = "NAME=VALUE")]
        attrs: Vec<String>,
        /// Take the attributes of this source user (objectId, mail, userPrincipalName or mailNickname).
        #[arg(long)]
        user: Option<String>,
        /// Print exactly one JSON value.
        #[arg(long)]
        json: bool,
    },
    /// Check the configuration, the source and each target's connection, token and schema.
    Check,
    /// Show each target's last cycle and next run.
    Status {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Query the provisioning log: one record per decision, oldest first.
    Logs {
        /// Only this user or group: objectId, SCIM id, or a userName, mail or displayName
        /// the log recorded for it.
        #[arg(long)]
        user: Option<String>,
        /// Only this target.
        #[arg(long)]
        target: Option<String>,
        /// Only records this recent: a duration (30m, 2h, 7d) or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only records with this status: success, failure, skipped or warning.
        #[arg(long)]
        status: Option<String>,
        /// Only records of this action: create, update, disable, delete, skip, stageddelete
        /// or other.
        #[arg(long)]
        action: Option<String>,
        /// At most this many records, the newest.
        #[arg(long)]
        limit: Option<usize>,
        /// One JSON object per line (format in docs/logs-json.md).
        #[arg(long)]
        json: bool,
    },
}

/// Runs a parsed command line and returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    progress::enable(matches!(cli.log_format, LogFormat::Text));
    match cli.command {
        Command::Sync {
            full,
            target,
            dry_run,
            allow_deletes,
        } => {
            let request = Request::Sync {
                full,
                target,
                dry_run,
                allow_deletes,
            };
            control::dispatch(&cli.config, request).await
        }
        Command::Plan { target, json } => {
            control::dispatch(&cli.config, Request::Plan { target, json }).await
        }
        Command::Expr {
            expression,
            attrs,
            user,
            json,
        } => expr(&cli.config, &expression, &attrs, user.as_deref(), json).await,
        Command::Provision {
            user,
            target,
            dry_run,
        } => {
            let request = Request::Provision {
                user,
                target,
                dry_run,
            };
            control::dispatch(&cli.config, request).await
        }
        Command::Run => crate::daemon::run(&cli.config).await,
        Command::Check => check::check(&cli.config).await,
        Command::Status { json } => control::dispatch(&cli.config, Request::Status { json }).await,
        Command::Logs {
            user,
            target,
            since,
            status,
            action,
            limit,
            json,
        } => {
            let args = logs::LogsArgs {
                user,
                target,
                since,
                status,
                action,
                limit,
                json,
            };
            control::dispatch(&cli.config, Request::Logs(args)).await
        }
    }
}

fn load(path: &std::path::Path) -> Result<Config, i32> {
    crate::target::load(path).map_err(|e| {
        err!("{e}");
        EXIT_USAGE
    })
}

async fn read_source(config: &Config) -> Result<Directory, i32> {
    let source = source::build(&config.source).map_err(|e| {
        err!("source: {e}");
        EXIT_FATAL
    })?;
    source.read().await.map_err(|e| {
        err!("source: {e}; no target was changed");
        EXIT_FATAL
    })
}

/// Every target, or the one `--target` names (exit 64 for an unknown name), built.
pub(crate) fn select_targets(config: &Config, only: Option<&str>) -> Result<Vec<Target>, i32> {
    let chosen: Vec<&TargetConfig> = match only {
        Some(name) => match config.target(name) {
            Some(t) => vec![t],
            None => {
                let known: Vec<_> = config.targets.iter().map(|t| t.name.as_str()).collect();
                err!(
                    "--target: no target named {name:?} in {} (configured: {known:?})",
                    config.path.display()
                );
                return Err(EXIT_USAGE);
            }
        },
        None => config.targets.iter().collect(),
    };
    chosen
        .into_iter()
        .map(|t| {
            Target::build(t).map_err(|e| {
                err!("{e}");
                EXIT_USAGE
            })
        })
        .collect()
}

/// `sync` and `plan`: one cycle (or plan) of every target or one; `json` prints the plan as
/// one document.
async fn sync(ctx: &control::Ctx, only: Option<&str>, opts: CycleOptions, json: bool) -> i32 {
    let config = &*ctx.config;
    let store = &*ctx.store;
    let targets = match select_targets(config, only) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let mut dir = match read_source(config).await {
        Ok(d) => d,
        Err(code) => return code,
    };
    let last = targets.len().saturating_sub(1);
    let mut code = EXIT_OK;
    let mut document = plan_json::PlanDocument {
        format_version: plan_json::FORMAT_VERSION,
        targets: Vec::new(),
    };
    for (i, target) in targets.into_iter().enumerate() {
        // The last (or only) target takes the directory over, so that its plan can drop each
        // source object once mapped: a large directory is never held next to its whole
        // desired state.
        let source = if i == last {
            Cow::Owned(std::mem::take(&mut dir))
        } else {
            Cow::Borrowed(&dir)
        };
        // Never at the same time as the daemon's scheduled cycle of this target.
        let _cycle = ctx.locks.lock(&target.name).await;
        let result = if opts.dry_run {
            let planned = engine::plan_target(source, config, &target, store, opts);
            planned.map(|p| {
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
            if let Ok(Some(q)) = store
                .snapshot(&crate::ids::TargetName(target.name.clone()))
                .and_then(|s| s.quarantine())
            {
                err!(
                    "target {:?}: quarantined since {} ({}); running this cycle because sync was run by hand",
                    target.name, q.since, q.reason
                );
            }
            let progress = engine::Progress::default();
            let cycle =
                engine::run_target_with(source, config, &target, store, opts, &ctx.stop, &progress);
            // The daemon running a sync for a client draws nothing.
            if progress::enabled() && ctx.daemon.is_none() {
                progress::show(&target.name, &progress, cycle).await
            } else {
                cycle.await
            }
        };
        match result {
            Ok((_, planned)) if json => {
                document
                    .targets
                    .push(plan_json::target_plan(&target.name, &planned));
            }
            Ok((report, planned)) => {
                if opts.dry_run {
                    print_plan(&target, &planned);
                } else {
                    print_report(&report);
                }
                for p in &report.problems {
                    err!("  {p}");
                }
                if !opts.dry_run && report.incomplete() {
                    code = code.max(EXIT_PARTIAL);
                }
            }
            Err(e) => {
                err!("target {:?}: {e}", target.name);
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
            q.reason,
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
                format!(" <{v}>")
            })
        })
        .unwrap_or_default()
}

fn print_plan(target: &Target, p: &PlannedCycle) {
    out!("target {:?}: plan", target.name);
    let matching: Vec<String> = target
        .mappings
        .user_matching()
        .iter()
        .map(|r| r.target.to_string())
        .collect();
    for op in &p.users.ops {
        match op {
            UserOp::MatchOrCreate { id, desired } => {
                out!(
                    "  create user {id}{} (unless an account matches on {}): {}",
                    label(desired),
                    matching.join(", "),
                    show_attrs(desired)
                );
            }
            UserOp::Update {
                id,
                scim_id,
                changes,
                desired,
            } => {
                out!(
                    "  update user {id}{} ({scim_id}): {}",
                    label(desired),
                    show_changes(changes, desired)
                );
            }
            UserOp::Deprovision { id, scim_id, mode } => {
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
    for op in &p.groups.ops {
        match op {
            GroupOp::MatchOrCreate { id, group } => {
                out!(
                    "  create group {id}: {}, {} members",
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
                if !add.is_empty() {
                    parts.push(format!(
                        "add members {}",
                        add.iter()
                            .map(|m| m.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                if !remove.is_empty() {
                    parts.push(format!(
                        "remove members {}",
                        remove
                            .iter()
                            .map(|(m, _)| m.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                out!("  update group {id} ({scim_id}): {}", parts.join("; "));
            }
            GroupOp::Deprovision {
                id, scim_id, mode, ..
            } => {
                out!(
                    "  deprovision group {id} ({scim_id}): {}",
                    match mode {
                        config::DeprovisionMode::Deactivate => "remove managed members",
                        config::DeprovisionMode::Delete => "DELETE",
                    }
                );
            }
        }
    }
    let held = p.users.held.len() + p.groups.held.len();
    if held > 0 {
        out!(
            "  held: {held} deprovisions exceed deletion_threshold = {}",
            target.deletion_threshold
        );
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

async fn expr(
    config_path: &std::path::Path,
    text: &str,
    attrs: &[String],
    user: Option<&str>,
    json: bool,
) -> i32 {
    let expression = match Expression::parse(text) {
        Ok(e) => e,
        Err(e) => {
            err!("expression: {e}");
            return EXIT_PARTIAL;
        }
    };
    let mut bag: BTreeMap<String, Value> = BTreeMap::new();
    if let Some(id) = user {
        let config = match load(config_path) {
            Ok(c) => c,
            Err(code) => return code,
        };
        let source = match source::build(&config.source) {
            Ok(s) => s,
            Err(e) => {
                err!("source: {e}");
                return EXIT_FATAL;
            }
        };
        let u = match source.find_user(id).await {
            Ok(Some(u)) => u,
            Ok(None) => {
                err!("--user: no user {id:?} (objectId, mail, userPrincipalName or mailNickname) in {}", source.describe());
                return EXIT_PARTIAL;
            }
            Err(e) => {
                err!("source: {e}");
                return EXIT_FATAL;
            }
        };
        for (name, v) in u.iter() {
            let value = match v {
                source::AttrValue::Single(s) => Value::Str(s.clone()),
                source::AttrValue::Multi(m) => Value::Multi(m.clone()),
            };
            bag.insert(name.to_owned(), value);
        }
    }
    let mut given: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for a in attrs {
        let Some((name, value)) = a.split_once('=') else {
            err!("--attr {a:?}: expected NAME=VALUE");
            return EXIT_USAGE;
        };
        given
            .entry(name.to_lowercase())
            .or_insert_with(|| (name.to_owned(), Vec::new()))
            .1
            .push(value.to_owned());
    }
    for (_, (name, mut values)) in given {
        bag.retain(|k, _| !k.eq_ignore_ascii_case(&name));
        let v = if values.len() == 1 {
            Value::Str(values.remove(0))
        } else {
            Value::Multi(values)
        };
        bag.insert(name, v);
    }
    match expression.evaluate(&bag) {
        Ok(ev) => {
            let shown = |s: &str| {
                if ev.redacted {
                    "[Redact]".to_owned()
                } else {
                    s.to_owned()
                }
            };
            if json {
                let j = match &ev.value {
                    _ if ev.ignore_flow => Json::Null,
                    Value::Null => Json::Null,
                    Value::Multi(v) => {
                        Json::Array(v.iter().map(|s| Json::String(shown(s))).collect())
                    }
                    other => Json::String(shown(&other.as_display())),
                };
                out!("{j}");
            } else {
                match &ev.value {
                    Value::Multi(v) => v.iter().for_each(|s| out!("{}", shown(s))),
                    Value::Null => {}
                    other => out!("{}", shown(&other.as_display())),
                }
            }
            EXIT_OK
        }
        Err(e) => {
            err!("expression: {e}");
            EXIT_PARTIAL
        }
    }
}
