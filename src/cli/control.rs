//! The control socket: how `sync`, `plan`, `provision`, `status` and `logs` reach a running
//! daemon, which holds the state's exclusive lock.
//!
//! The protocol is one JSON line each way on a unix socket (mode 0600): the client sends a
//! [`Request`], the daemon runs the command with its output captured and answers a
//! [`Response`] holding the exit code and both outputs, which the client prints as they are.
//! With no daemon answering, the client opens the state and runs the same command itself.

use super::output::{self, Captured};
use super::{err, EXIT_FATAL};
use crate::config::Config;
use crate::engine::CycleOptions;
use crate::state::{StateError, Store};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

/// The socket's file name, in the runtime directory or the state directory.
pub const SOCKET_NAME: &str = "control.sock";

/// A command for the daemon (or for the local state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Request {
    Sync {
        full: bool,
        target: Option<String>,
        dry_run: bool,
        allow_deletes: bool,
    },
    Plan {
        target: Option<String>,
        #[serde(default)]
        json: bool,
    },
    Provision {
        user: String,
        target: Option<String>,
        dry_run: bool,
    },
    Status {
        json: bool,
    },
    Logs(super::logs::LogsArgs),
}

/// What a command printed and its exit code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Facts about the running daemon, for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct DaemonInfo {
    pub pid: u32,
    pub started_at: String,
    pub socket: PathBuf,
}

/// One lock per target: a scheduled cycle, a `sync` and a `provision` of the same target
/// never run at the same time.
#[derive(Default)]
pub struct TargetLocks(std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl TargetLocks {
    pub async fn lock(&self, target: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(target.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

/// What a command runs against: the configuration, the open state, and the daemon's
/// shutdown signal (never cancelled for a local command).
pub struct Ctx {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub locks: Arc<TargetLocks>,
    pub stop: CancellationToken,
    /// Set when the daemon runs the command.
    pub daemon: Option<DaemonInfo>,
}

/// Runs a command and returns its exit code; output goes through `out!`/`err!`.
pub async fn execute(ctx: &Ctx, request: Request) -> i32 {
    match request {
        Request::Sync {
            full,
            target,
            dry_run,
            allow_deletes,
        } => {
            let opts = CycleOptions {
                full,
                dry_run,
                allow_deletes,
            };
            super::sync(ctx, target.as_deref(), opts, false).await
        }
        Request::Plan { target, json } => {
            let opts = CycleOptions {
                dry_run: true,
                ..Default::default()
            };
            super::sync(ctx, target.as_deref(), opts, json).await
        }
        Request::Provision {
            user,
            target,
            dry_run,
        } => super::provision::provision(ctx, &user, target.as_deref(), dry_run).await,
        Request::Status { json } => super::status::status(ctx, json),
        Request::Logs(args) => super::logs::logs(ctx, &args).await,
    }
}

/// Runs a command for a client of the socket, capturing what it prints.
pub async fn answer(ctx: &Ctx, request: Request) -> Response {
    let (code, Captured { stdout, stderr }) = output::capture(execute(ctx, request)).await;
    Response {
        code,
        stdout,
        stderr,
    }
}

/// The first directory of `$RUNTIME_DIRECTORY` (systemd's `RuntimeDirectory=`), if set.
pub fn runtime_dir() -> Option<PathBuf> {
    let dirs = std::env::var_os("RUNTIME_DIRECTORY")?;
    let first = dirs.to_string_lossy().split(':').next()?.to_owned();
    (!first.is_empty()).then(|| PathBuf::from(first))
}

/// The socket path in the state directory: the socket itself, or a link to it when the
/// daemon put it in its runtime directory. Clients always find it there.
pub fn state_socket(config: &Config) -> PathBuf {
    config.state.path.join(SOCKET_NAME)
}

/// Where a client looks for the daemon, in order.
fn candidates(config: &Config) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = runtime_dir()
        .map(|d| d.join(SOCKET_NAME))
        .into_iter()
        .collect();
    let state = state_socket(config);
    if !out.contains(&state) {
        out.push(state);
    }
    out
}

/// Sends one request and reads the answer.
pub async fn call(path: &Path, request: &Request) -> std::io::Result<Response> {
    let stream = UnixStream::connect(path).await?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request).map_err(std::io::Error::other)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    write.flush().await?;
    let mut answer = String::new();
    BufReader::new(read).read_line(&mut answer).await?;
    if answer.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the daemon closed the connection without answering (is it stopping?)",
        ));
    }
    serde_json::from_str(&answer).map_err(std::io::Error::other)
}

/// Runs a command in the daemon if one answers on its socket, else against the local state.
pub async fn dispatch(config_path: &Path, request: Request) -> i32 {
    let config = match super::load(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let sockets = candidates(&config);
    for path in &sockets {
        match call(path, &request).await {
            Ok(response) => {
                output::print_raw(&Captured {
                    stdout: response.stdout,
                    stderr: response.stderr,
                });
                return response.code;
            }
            // No socket, or a stale one left by a daemon that is gone: try the next place.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) => {}
            Err(e) => {
                err!("control socket {}: {e}", path.display());
                return EXIT_FATAL;
            }
        }
    }
    let store = match Store::open(&config.state.path) {
        Ok(s) => s,
        Err(e @ StateError::Locked { .. }) => {
            err!(
                "{e}; no scimsync daemon answered on {}",
                sockets
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            );
            return EXIT_FATAL;
        }
        Err(e) => {
            err!("{e}");
            return EXIT_FATAL;
        }
    };
    let ctx = Ctx {
        config: Arc::new(config),
        store: Arc::new(store),
        locks: Arc::default(),
        stop: CancellationToken::new(),
        daemon: None,
    };
    execute(&ctx, request).await
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
}
