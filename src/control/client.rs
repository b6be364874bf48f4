//! The client's end: a request to the daemon if one answers on its socket, else the same
//! request run against the local state.

use super::{commands, Ctx, Request, Response, Watch, EXIT_FATAL, EXIT_USAGE, SOCKET_NAME};
use crate::config::Config;
use crate::state::{StateError, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

/// Where a client looks for the daemon, in order.
fn candidates(config: &Config) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = super::runtime_dir()
        .map(|d| d.join(SOCKET_NAME))
        .into_iter()
        .collect();
    let state = super::state_socket(config);
    if !out.contains(&state) {
        out.push(state);
    }
    out
}

/// Sends one request and reads the answer.
pub(crate) async fn call(path: &Path, request: &Request) -> std::io::Result<Response> {
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

/// Runs a request in the daemon if one answers on its socket, else against the local state,
/// where `watch` (if any) shows each cycle's progress.
pub(crate) async fn dispatch(
    config_path: &Path,
    request: Request,
    watch: Option<Watch>,
) -> Response {
    let config = match crate::target::load(config_path) {
        Ok(c) => c,
        Err(e) => return Response::failed(EXIT_USAGE, e),
    };
    let sockets = candidates(&config);
    for path in &sockets {
        match call(path, &request).await {
            Ok(response) => return response,
            // No socket, or a stale one left by a daemon that is gone: try the next place.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) => {}
            Err(e) => {
                return Response::failed(
                    EXIT_FATAL,
                    format!("control socket {}: {e}", path.display()),
                )
            }
        }
    }
    let store = match Store::open_state(&config.state) {
        Ok(s) => s,
        Err(e @ StateError::Locked { .. }) => {
            let tried: Vec<String> = sockets.iter().map(|p| p.display().to_string()).collect();
            return Response::failed(
                EXIT_FATAL,
                format!("{e}; no scimsync daemon answered on {}", tried.join(" or ")),
            );
        }
        Err(e) => return Response::failed(EXIT_FATAL, e),
    };
    let ctx = Ctx {
        config: Arc::new(config),
        store: Arc::new(store),
        locks: Arc::default(),
        stop: CancellationToken::new(),
        daemon: None,
        watch,
    };
    commands::execute(&ctx, request).await
}
