//! The command line: argument parsing and the commands, each returning an exit code.
//!
//! Exit codes: 0 everything applied; 1 some objects failed, were skipped or were held (the rest
//! applied), a target check failed, or an expression failed; 2 a fatal error (source, state or
//! target unusable); 64 invalid configuration or usage, a bad flag too (`EX_USAGE`).
//!
//! Commands that need the state (`sync`, `plan`, `provision`, `status`, `logs`) go through
//! [`crate::control`]: to the daemon over its control socket when it runs, else locally; the
//! typed response is rendered here.

mod check;
mod cycles;
mod expr;
mod logs;
pub mod output;
mod plan_json;
mod progress;
mod provision;
mod state;
mod status;

use crate::config::{self, Config};
use crate::control::{client, LogsArgs, Request, Response};
use clap::{Parser, Subcommand};
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

pub use crate::control::{EXIT_FATAL, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE};

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
        /// Carry out attribute clears held back by the attribute-wipe guard.
        #[arg(long)]
        allow_clears: bool,
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
    /// Export or import the whole state (backup, or a move to another state directory).
    State {
        #[command(subcommand)]
        action: state::StateAction,
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
    let path = cli.config.as_path();
    match cli.command {
        Command::Sync {
            full,
            target,
            dry_run,
            allow_deletes,
            allow_clears,
        } => {
            let request = Request::Sync {
                full,
                target,
                dry_run,
                allow_deletes,
                allow_clears,
            };
            let response = client::dispatch(path, request, progress::watch()).await;
            render_cycles(path, response, dry_run, false)
        }
        Command::Plan { target, json } => {
            let response = client::dispatch(path, Request::Plan { target }, None).await;
            render_cycles(path, response, true, json)
        }
        Command::Expr {
            expression,
            attrs,
            user,
            json,
        } => expr::expr(path, &expression, &attrs, user.as_deref(), json).await,
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
            match client::dispatch(path, request, None).await {
                Response::Provision { targets } => provision::render(&targets, dry_run),
                other => unexpected(other),
            }
        }
        Command::Run => crate::daemon::run(path).await,
        Command::Check => check::check(path).await,
        Command::State { action } => state::run(path, action).await,
        Command::Status { json } => match client::dispatch(path, Request::Status, None).await {
            Response::Status(s) => status::render(&s, json),
            other => unexpected(other),
        },
        Command::Logs {
            user,
            target,
            since,
            status,
            action,
            limit,
            json,
        } => {
            let args = LogsArgs {
                user,
                target,
                since,
                status,
                action,
                limit,
            };
            match client::dispatch(path, Request::Logs(args), None).await {
                Response::Logs { warnings, entries } => logs::render(&warnings, &entries, json),
                other => unexpected(other),
            }
        }
    }
}

/// `sync` and `plan` rendered; the configuration names each target's matching attributes.
fn render_cycles(path: &std::path::Path, response: Response, dry_run: bool, json: bool) -> i32 {
    match response {
        Response::Cycles { targets } => match crate::target::load(path) {
            Ok(config) => cycles::render(&config, &targets, dry_run, json),
            Err(e) => {
                err!("{e}");
                EXIT_USAGE
            }
        },
        other => unexpected(other),
    }
}

/// A failure, or an answer to another request than the one sent (a daemon of another
/// version, say).
fn unexpected(response: Response) -> i32 {
    match response {
        Response::Failed { code, errors } => {
            for e in errors {
                err!("{}", crate::text::escape(&e));
            }
            code
        }
        _ => {
            err!("the daemon answered another command than the one asked; is it another version of scimsync?");
            EXIT_FATAL
        }
    }
}

fn load(path: &std::path::Path) -> Result<Config, i32> {
    crate::target::load(path).map_err(|e| {
        err!("{e}");
        EXIT_USAGE
    })
}
