//! The control protocol: how `sync`, `plan`, `provision`, `status` and `logs` reach a running
//! daemon, which holds the state's exclusive lock (mini-redis's `Command` and `Frame`).
//!
//! A [`Request`] goes one JSON line out on a unix socket (mode 0600), a [`Response`] one line
//! back: typed values, never captured text. With no daemon answering, the client runs the
//! same request against the local state ([`client::dispatch`]); either way [`commands`] does
//! the work and `cli` only renders the response.

pub(crate) mod client;
pub(crate) mod commands;
pub(crate) mod owner;
pub(crate) mod status;

use crate::audit::Entry;
use crate::config::Config;
use crate::engine::provision::ProvisionReport;
use crate::engine::{CycleReport, PlannedCycle, Progress};
use crate::state::Store;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The socket's file name, in the runtime directory or the state directory.
pub(crate) const SOCKET_NAME: &str = "control.sock";

/// Exit code: everything applied.
pub const EXIT_OK: i32 = 0;
/// Exit code: some objects were not brought in step (failed, skipped, held).
pub const EXIT_PARTIAL: i32 = 1;
/// Exit code: a fatal error (source, state or target unusable).
pub const EXIT_FATAL: i32 = 2;
/// Exit code: invalid configuration or usage (`EX_USAGE`).
pub const EXIT_USAGE: i32 = 64;

/// A command for the daemon (or for the local state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub(crate) enum Request {
    Sync {
        full: bool,
        target: Option<String>,
        dry_run: bool,
        allow_deletes: bool,
        #[serde(default)]
        allow_clears: bool,
    },
    Plan {
        target: Option<String>,
    },
    Provision {
        user: String,
        target: Option<String>,
        dry_run: bool,
    },
    Status,
    Logs(LogsArgs),
}

/// The flags of `scimsync logs`, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LogsArgs {
    pub(crate) user: Option<String>,
    #[serde(default)]
    pub(crate) target: Option<String>,
    pub(crate) since: Option<String>,
    #[serde(default)]
    pub(crate) status: Option<String>,
    #[serde(default)]
    pub(crate) action: Option<String>,
    #[serde(default)]
    pub(crate) limit: Option<usize>,
}

/// What a command did, for the client to render.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub(crate) enum Response {
    /// `sync` and `plan`: one entry per target, in order.
    Cycles {
        targets: Vec<TargetRun>,
    },
    Provision {
        targets: Vec<ProvisionRun>,
    },
    Status(status::Status),
    Logs {
        /// Said about the query (a target no longer configured, say).
        warnings: Vec<String>,
        entries: Vec<Entry>,
    },
    /// The command could not run: `code` is [`EXIT_USAGE`] or [`EXIT_FATAL`].
    Failed {
        code: i32,
        errors: Vec<String>,
    },
}

impl Response {
    pub(crate) fn failed(code: i32, error: impl ToString) -> Response {
        Response::Failed {
            code,
            errors: vec![error.to_string()],
        }
    }
}

/// One target's cycle (or plan).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TargetRun {
    pub(crate) target: String,
    /// Said before the cycle ran (a quarantine overridden by hand, say).
    pub(crate) notes: Vec<String>,
    pub(crate) outcome: RunOutcome,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub(crate) enum RunOutcome {
    /// The cycle ran (or was planned); the plan is whole for a dry run, and after a real
    /// cycle holds what was held back.
    Done {
        report: Box<CycleReport>,
        plan: Option<Box<PlannedCycle>>,
    },
    /// The cycle could not run at all.
    Failed { error: String },
}

/// One target's on-demand provisioning.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ProvisionRun {
    pub(crate) target: String,
    pub(crate) outcome: ProvisionOutcome,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub(crate) enum ProvisionOutcome {
    Done {
        report: Box<ProvisionReport>,
    },
    /// No such user in the source, nor as a userName on this target.
    NotFound {
        error: String,
    },
    Failed {
        error: String,
    },
}

/// Facts about the running daemon, for `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DaemonInfo {
    pub(crate) pid: u32,
    pub(crate) started_at: String,
    pub(crate) socket: PathBuf,
    /// Several instances share the state: this one's name.
    #[serde(default)]
    pub(crate) instance: Option<String>,
}

/// One lock per target: a scheduled cycle, a `sync` and a `provision` of the same target
/// never run at the same time.
#[derive(Default)]
pub(crate) struct TargetLocks(std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl TargetLocks {
    pub(crate) async fn lock(&self, target: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(target.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// The target's lock, if nothing holds it now.
    pub(crate) fn try_lock(&self, target: &str) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let lock = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(target.to_owned()).or_default().clone()
        };
        lock.try_lock_owned().ok()
    }

    /// Whether a cycle (or command) of `target` runs now.
    pub(crate) fn busy(&self, target: &str) -> bool {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(target).is_some_and(|l| l.try_lock().is_err())
    }
}

/// Watches a cycle's progress (the command line draws a bar); returns a handle that ends the
/// watching when the cycle is over.
pub(crate) type Watch = fn(&str, Arc<Progress>) -> tokio::task::JoinHandle<()>;

/// What a command runs against: the configuration, the open state, and the daemon's
/// shutdown signal (never cancelled for a local command).
pub(crate) struct Ctx {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Arc<Store>,
    pub(crate) locks: Arc<TargetLocks>,
    pub(crate) stop: CancellationToken,
    /// Set when the daemon runs the command.
    pub(crate) daemon: Option<DaemonInfo>,
    /// Set when the command runs locally on a terminal.
    pub(crate) watch: Option<Watch>,
}

/// The first directory of `$RUNTIME_DIRECTORY` (systemd's `RuntimeDirectory=`), if set.
pub(crate) fn runtime_dir() -> Option<PathBuf> {
    let dirs = std::env::var_os("RUNTIME_DIRECTORY")?;
    let first = dirs.to_string_lossy().split(':').next()?.to_owned();
    (!first.is_empty()).then(|| PathBuf::from(first))
}

/// The socket path in the state directory: the socket itself, or a link to it when the
/// daemon put it in its runtime directory. Clients always find it there.
pub(crate) fn state_socket(config: &Config) -> PathBuf {
    config.state.path.join(SOCKET_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_json_object_tagged_by_command() {
        let r = Request::Provision {
            user: "ada@example.org".into(),
            target: None,
            dry_run: true,
        };
        let text = serde_json::to_string(&r).expect("json");
        assert_eq!(
            text,
            r#"{"command":"provision","user":"ada@example.org","target":null,"dry_run":true}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&text).expect("parse"), r);
    }

    #[test]
    fn a_response_reads_back_as_it_was_sent() {
        let r = Response::failed(EXIT_USAGE, "--target: no target named \"x\"");
        let text = serde_json::to_string(&r).expect("json");
        assert_eq!(
            text,
            r#"{"response":"failed","code":64,"errors":["--target: no target named \"x\""]}"#
        );
        assert!(matches!(
            serde_json::from_str::<Response>(&text).expect("parse"),
            Response::Failed { code: 64, .. }
        ));
    }
}
