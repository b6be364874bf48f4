//! The daemon's end of the control socket: one JSON request line in, one response line out.
//! The protocol and the client are in [`crate::control`].

use super::Shared;
use crate::config::Config;
use crate::control::{self, commands, Request, Response, EXIT_USAGE, SOCKET_NAME};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::task::TaskTracker;

/// A bound control socket and the paths to remove at exit.
pub(crate) struct Bound {
    pub(crate) listener: UnixListener,
    /// Where the socket is.
    pub(crate) path: PathBuf,
    /// The socket and, when it lives in the runtime directory, its link in the state directory.
    pub(crate) files: Vec<PathBuf>,
}

fn remove_stale(path: &std::path::Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether a daemon answers on `path`.
fn answers(path: &std::path::Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// Binds the socket in `$RUNTIME_DIRECTORY` (systemd) or else the state directory, owner-only.
/// A socket file there that no daemon answers on is a stale one; one that answers belongs to
/// another instance sharing a PostgreSQL state (each needs its own runtime directory). The
/// link in the state directory is left to the instance that made it while it answers.
pub(crate) fn bind(config: &Config) -> std::io::Result<Bound> {
    let in_state = control::state_socket(config);
    let path = control::runtime_dir()
        .map(|d| d.join(SOCKET_NAME))
        .unwrap_or_else(|| in_state.clone());
    if answers(&path) {
        return Err(std::io::Error::other(format!(
            "another scimsync daemon answers on {}; two instances on one host each need their own RUNTIME_DIRECTORY",
            path.display()
        )));
    }
    remove_stale(&path)?;
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let mut files = vec![path.clone()];
    if path != in_state && !answers(&in_state) {
        // Clients find the daemon through the state directory, whatever their environment.
        remove_stale(&in_state)?;
        std::os::unix::fs::symlink(&path, &in_state)?;
        files.push(in_state);
    }
    Ok(Bound {
        listener,
        path,
        files,
    })
}

/// Accepts connections until shutdown; each is answered on a task of its own.
pub(crate) async fn serve(listener: UnixListener, shared: Arc<Shared>, tracker: TaskTracker) {
    loop {
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tracker.spawn(handle(stream, shared.clone()));
                }
                Err(e) => tracing::warn!(error = %e, "Control socket: accept failed."),
            },
        }
    }
}

async fn handle(stream: UnixStream, shared: Arc<Shared>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read);
    tokio::select! {
        _ = shared.stop.cancelled() => return,
        r = reader.read_line(&mut line) => if let Err(e) = r {
            tracing::warn!(error = %e, "Control socket: cannot read the request.");
            return;
        },
    }
    if line.is_empty() {
        // Connected and closed without a request: another daemon asking whether this one
        // answers (two instances on one host).
        return;
    }
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(request) => {
            tracing::info!(?request, "Control socket request.");
            commands::execute(&shared.ctx(), request).await
        }
        Err(e) => Response::failed(EXIT_USAGE, format!("control socket: bad request: {e}")),
    };
    let mut bytes = match serde_json::to_vec(&response) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "Control socket: cannot encode the response.");
            return;
        }
    };
    bytes.push(b'\n');
    if let Err(e) = write.write_all(&bytes).await {
        tracing::warn!(error = %e, "Control socket: cannot send the response.");
    }
}
