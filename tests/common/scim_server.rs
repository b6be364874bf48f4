//! A real `scim2-server` child process. The blocking helpers that talk to it directly are
//! [`ScimClient`]'s, which a [`ScimServer`] dereferences to.

use std::fs::File;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{
    block_on, ensure_peers, free_port, http_client, interrupt, random_hex, tail_of, ScimClient,
};

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const START_ATTEMPTS: usize = 5;

/// Runs the server's console script with SIGINT restored to Python's default handler: a
/// child inherits an ignored SIGINT (as in a background job of a non-interactive shell), and
/// then the server would neither stop on SIGINT nor write its dump.
const LAUNCHER: &str = "import runpy, signal, sys; \
    signal.signal(signal.SIGINT, signal.default_int_handler); \
    script = sys.argv.pop(1); sys.argv[0] = script; \
    runpy.run_path(script, run_name='__main__')";

/// A running `scim2-server` on a free loopback port, with its own bearer token. It is killed
/// when dropped. `url`, `token` and the request helpers are its [`ScimClient`]'s.
pub struct ScimServer {
    client: ScimClient,
    pub port: u16,
    child: Option<Child>,
    log_path: PathBuf,
    dump_path: PathBuf,
    dir: tempfile::TempDir,
}

impl Deref for ScimServer {
    type Target = ScimClient;

    fn deref(&self) -> &ScimClient {
        &self.client
    }
}

impl ScimServer {
    /// Starts a server with the default schemas and resource types.
    pub fn start() -> ScimServer {
        ScimServer::start_with_args(&[])
    }

    /// Starts a server with extra command-line arguments (e.g. `--service-provider-config`).
    pub fn start_with_args(extra_args: &[&str]) -> ScimServer {
        ensure_peers();
        let dir = tempfile::Builder::new()
            .prefix("scim2-server-")
            .tempdir()
            .expect("create a temporary directory");
        let log_path = dir.path().join("server.log");
        let dump_path = dir.path().join("dump.json");
        let token = random_hex(16);
        let http = http_client();

        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let url = format!("http://127.0.0.1:{port}/v2");
            let mut child = spawn(port, &token, &log_path, &dump_path, extra_args);
            match wait_ready(&mut child, &http, &url, &token) {
                Ok(()) => {
                    return ScimServer {
                        client: ScimClient::new(url, token),
                        port,
                        child: Some(child),
                        log_path,
                        dump_path,
                        dir,
                    };
                }
                Err(Exit::Early) if tail_of(&log_path, 4096).contains("Address already in use") => {
                    // Another process took the port between free_port() and the bind.
                    failures.push(format!("port {port} taken"));
                }
                Err(exit) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "scim2-server on port {port} {}. Log {}:\n{}",
                        match exit {
                            Exit::Early => "exited at start",
                            Exit::Timeout => "was not ready within 20 s",
                        },
                        log_path.display(),
                        tail_of(&log_path, 8192)
                    );
                }
            }
        }
        panic!(
            "scim2-server could not bind a port after {START_ATTEMPTS} attempts: {}. Log:\n{}",
            failures.join(", "),
            tail_of(&log_path, 8192)
        );
    }

    /// The server's output so far.
    pub fn log(&self) -> String {
        tail_of(&self.log_path, usize::MAX)
    }

    /// The file the server's output goes to.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Stops the server with SIGINT and returns every resource it held (its
    /// `--dump-resources` output): the final state as the server saw it.
    pub fn stop_and_dump(mut self) -> Vec<Value> {
        let mut child = self.child.take().expect("server is running");
        interrupt(child.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if child.try_wait().expect("wait for scim2-server").is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "scim2-server did not stop within 10 s of SIGINT. Log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = std::fs::read_to_string(&self.dump_path).unwrap_or_else(|e| {
            panic!(
                "read the dump {}: {e}. Log:\n{}",
                self.dump_path.display(),
                self.log()
            )
        });
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("the dump is not a JSON list ({e}):\n{text}"))
    }

    /// A PatchOp body from its operations ([`ScimClient::patch_op`]).
    pub fn patch_op(operations: Value) -> Value {
        ScimClient::patch_op(operations)
    }
}

impl Drop for ScimServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

enum Exit {
    Early,
    Timeout,
}

fn spawn(port: u16, token: &str, log: &Path, dump: &Path, extra_args: &[&str]) -> Child {
    let log_file = File::create(log).expect("create the server log");
    let log_err = log_file.try_clone().expect("clone the server log handle");
    let venv = super::peers_dir().join("venv");
    let port = port.to_string();
    Command::new(venv.join("bin/python"))
        .arg("-c")
        .arg(LAUNCHER)
        .arg(venv.join("bin/scim2-server"))
        .args(["--hostname", "127.0.0.1", "--port", &port])
        .args(["--bearer-token", token])
        .arg("--dump-resources")
        .arg(dump)
        .args(extra_args)
        // Unbuffered, so that the log is complete when a test fails.
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}/bin/scim2-server: {e}", venv.display()))
}

fn wait_ready(
    child: &mut Child,
    http: &reqwest::Client,
    url: &str,
    token: &str,
) -> Result<(), Exit> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let probe = format!("{url}/ServiceProviderConfig");
    loop {
        if child.try_wait().expect("wait for scim2-server").is_some() {
            return Err(Exit::Early);
        }
        let request = http
            .get(&probe)
            .bearer_auth(token)
            .timeout(Duration::from_secs(2));
        let ready = block_on(async move {
            matches!(request.send().await, Ok(response) if response.status().is_success())
        });
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Exit::Timeout);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
