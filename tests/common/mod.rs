//! Shared harness for the integration tests: real peers, a recording proxy and a workspace.
//!
//! Each test file does `mod common;` and uses what it needs from here, from plain `#[test]`
//! functions: every helper is blocking, and works inside an async test too.
//!
//! - [`ScimServer`]: a real `scim2-server` (PEERS.md) on a free loopback port, with a token.
//! - [`DjangoServer`]: a real django-scim2 server (PEERS.md, the second SCIM server), likewise.
//!   Both dereference to a [`ScimClient`], whose blocking helpers talk to the server directly.
//! - [`RecordingProxy`]: forwards to a server unchanged and records every call; the place
//!   where faults get injected ([`Fault`]).
//! - [`Workspace`]: a temporary directory to write configuration into and run `scimsync` in.
//! - [`Slapd`]: a private OpenLDAP server on a free loopback port, loaded from LDIF.
//! - [`TokenServer`]: an OAuth 2.0 token endpoint issuing short-lived tokens.
//! - [`HostileServer`]: an in-memory SCIM server that attacks its client ([`Attack`]).
#![allow(dead_code, unused_imports)]

pub mod cluster;
mod django_server;
pub mod env;
mod hostile;
mod postgres;
mod proxy;
mod scim_client;
mod scim_server;
mod slapd;
mod token;
mod workspace;

pub use django_server::{django_python, DjangoServer};
pub use hostile::{Attack, HostileServer, Received, BASE_PATH, CONTROL_TEXT};
pub use postgres::{unrelated_ca_pem, Postgres, USER as POSTGRES_USER};
pub use proxy::{Deviation, Fault, RandomFaults, Recorded, RecordingProxy};
pub use scim_client::ScimClient;
pub use scim_server::ScimServer;
pub use slapd::{Slapd, SERVICE_DN, SUFFIX};
pub use token::{TokenRequest, TokenServer};
pub use workspace::{RunOutput, Running, Workspace};

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The root of the repository (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `scimsync` binary that Cargo built for this test run.
pub fn scimsync_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_scimsync"))
}

/// Where `scripts/install-peers` puts the peers: `$SCIMSYNC_PEERS_DIR`, or `<repo>/.peers`.
pub fn peers_dir() -> PathBuf {
    match std::env::var_os("SCIMSYNC_PEERS_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => repo_root().join(".peers"),
    }
}

/// The `scim2-server` executable inside the peers' venv.
pub fn scim2_server_bin() -> PathBuf {
    peers_dir().join("venv/bin/scim2-server")
}

/// Makes sure the peers are installed, running `scripts/install-peers` at most once per test
/// process, and only when something is missing (`scripts/test` has usually done it already).
pub fn ensure_peers() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if scim2_server_bin().exists()
            && django_python().exists()
            && Path::new("/usr/sbin/slapd").exists()
        {
            return;
        }
        let script = repo_root().join("scripts/install-peers");
        let output = Command::new(&script)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "{} failed ({}); the integration tests need the real peers.\n\
             --- stdout\n{}\n--- stderr\n{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        for needed in [scim2_server_bin(), django_python()] {
            assert!(
                needed.exists(),
                "{} succeeded but {} is still missing",
                script.display(),
                needed.display()
            );
        }
    });
}

/// A port that was free on 127.0.0.1 a moment ago. Another process may take it before the
/// caller binds it, so callers that hand it to a child process retry on a bind failure.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// A random hex string of `bytes` bytes, good enough for a test token (not for a real secret).
pub fn random_hex(bytes: usize) -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::with_capacity(bytes * 2 + 16);
    while out.len() < bytes * 2 {
        // Each RandomState carries fresh random keys.
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_usize(out.len());
        out.push_str(&format!("{:016x}", hasher.finish()));
    }
    out.truncate(bytes * 2);
    out
}

/// Runs a future to completion from synchronous code. Inside a tokio runtime (an async
/// test), it runs on a scoped thread of its own, since a runtime cannot block on another.
pub fn block_on<F>(future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    let run = move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build a tokio runtime")
            .block_on(future)
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|scope| {
            scope
                .spawn(run)
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    } else {
        run()
    }
}

/// Makes ring the process's TLS crypto provider, as scimsync does: the build has no other.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An HTTP client for the harness's own calls. It keeps no idle connection, so it can be
/// shared between the short-lived runtimes of [`block_on`], and never goes through a proxy
/// from the environment.
pub(crate) fn http_client() -> reqwest::Client {
    install_tls_provider();
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("build an HTTP client")
}

/// The last `max` bytes of a file, for failure messages.
pub(crate) fn tail_of(path: &Path, max: usize) -> String {
    let text = std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()));
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[…]{}", &text[start..])
}

/// Sends SIGINT to a process, as Ctrl-C would.
pub(crate) fn interrupt(pid: u32) {
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -INT {pid} failed: {status}");
}

/// Runs `cycle` until one exits 0, at most `max` times, while `proxy` injects faults; returns
/// how many cycles ran and how many faults were injected meanwhile. Panics with every cycle's
/// output when none converged.
pub fn until_converged(
    proxy: &RecordingProxy,
    max: usize,
    mut cycle: impl FnMut() -> RunOutput,
) -> (usize, usize) {
    let mut outs: Vec<RunOutput> = Vec::new();
    let mut injected = 0;
    for _ in 0..max {
        let out = cycle();
        injected += proxy.records().iter().filter(|r| r.fault.is_some()).count();
        let done = out.code == 0;
        outs.push(out);
        if done {
            return (outs.len(), injected);
        }
    }
    panic!(
        "not converged after {} cycles:\n{}",
        outs.len(),
        outs.iter()
            .map(|o| o.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
