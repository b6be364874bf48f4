//! A real `scim2-server` child process, and blocking helpers that talk to it directly.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use super::{block_on, ensure_peers, free_port, http_client, interrupt, random_hex, tail_of};

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const START_ATTEMPTS: usize = 5;
/// The server's default and maximum page size.
const PAGE_SIZE: usize = 1000;

/// Runs the server's console script with SIGINT restored to Python's default handler: a
/// child inherits an ignored SIGINT (as in a background job of a non-interactive shell), and
/// then the server would neither stop on SIGINT nor write its dump.
const LAUNCHER: &str = "import runpy, signal, sys; \
    signal.signal(signal.SIGINT, signal.default_int_handler); \
    script = sys.argv.pop(1); sys.argv[0] = script; \
    runpy.run_path(script, run_name='__main__')";

/// A running `scim2-server` on a free loopback port, with its own bearer token. It is killed
/// when dropped.
pub struct ScimServer {
    /// The SCIM base URL, e.g. `http://127.0.0.1:PORT/v2`.
    pub url: String,
    /// The bearer token the server accepts.
    pub token: String,
    pub port: u16,
    child: Option<Child>,
    log_path: PathBuf,
    dump_path: PathBuf,
    dir: tempfile::TempDir,
    http: reqwest::Client,
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
                        url,
                        token,
                        port,
                        child: Some(child),
                        log_path,
                        dump_path,
                        dir,
                        http,
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

    /// The `Authorization` header value the server accepts.
    pub fn auth_header(&self) -> String {
        format!("Bearer {}", self.token)
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

    /// Sends one request with the token and returns the status and the JSON body, if any.
    /// `path` is relative to [`ScimServer::url`] (`/Users/ID` or `Users/ID`), or a full URL
    /// (a `Location` or `meta.location`).
    pub fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Option<Value>) {
        let url = self.resolve(path);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/scim+json")
                .body(body.to_string());
        }
        block_on(async move {
            let response = request
                .send()
                .await
                .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
            let status = response.status().as_u16();
            let bytes = response
                .bytes()
                .await
                .unwrap_or_else(|e| panic!("{method} {url}: reading the body: {e}"));
            let body = if bytes.is_empty() {
                None
            } else {
                Some(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                    panic!(
                        "{method} {url}: {status} with a body that is not JSON ({e}): {}",
                        String::from_utf8_lossy(&bytes)
                    )
                }))
            };
            (status, body)
        })
    }

    /// Like [`ScimServer::request`], but panics with the server's answer on a non-2xx status.
    pub fn request_ok(&self, method: Method, path: &str, body: Option<&Value>) -> Option<Value> {
        let (status, answer) = self.request(method.clone(), path, body);
        assert!(
            (200..300).contains(&status),
            "{method} {}: {status} {}",
            self.resolve(path),
            answer.map(|v| v.to_string()).unwrap_or_default()
        );
        answer
    }

    /// `GET path`; panics on a non-2xx status.
    pub fn get(&self, path: &str) -> Value {
        self.request_ok(Method::GET, path, None)
            .unwrap_or_else(|| panic!("GET {path}: empty body"))
    }

    /// `POST path`; returns the created resource; panics on a non-2xx status.
    pub fn post(&self, path: &str, body: Value) -> Value {
        self.request_ok(Method::POST, path, Some(&body))
            .unwrap_or_else(|| panic!("POST {path}: empty body"))
    }

    /// `PUT path`; returns the replaced resource; panics on a non-2xx status.
    pub fn put(&self, path: &str, body: Value) -> Value {
        self.request_ok(Method::PUT, path, Some(&body))
            .unwrap_or_else(|| panic!("PUT {path}: empty body"))
    }

    /// `PATCH path` with a PatchOp body; the server answers 204 without a body, so this
    /// returns `None` then. Panics on a non-2xx status.
    pub fn patch(&self, path: &str, body: Value) -> Option<Value> {
        self.request_ok(Method::PATCH, path, Some(&body))
    }

    /// A PatchOp body for [`ScimServer::patch`] from its operations.
    pub fn patch_op(operations: Value) -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": operations,
        })
    }

    /// `DELETE path`; panics on a non-2xx status.
    pub fn delete(&self, path: &str) {
        self.request_ok(Method::DELETE, path, None);
    }

    /// `POST /Users`. The core User schema is added when the body has no `schemas`.
    pub fn create_user(&self, body: Value) -> Value {
        self.post(
            "/Users",
            with_schema(body, "urn:ietf:params:scim:schemas:core:2.0:User"),
        )
    }

    /// `POST /Groups`. The core Group schema is added when the body has no `schemas`.
    pub fn create_group(&self, body: Value) -> Value {
        self.post(
            "/Groups",
            with_schema(body, "urn:ietf:params:scim:schemas:core:2.0:Group"),
        )
    }

    /// Every user, reading all pages.
    pub fn list_users(&self) -> Vec<Value> {
        self.list_all("/Users", None)
    }

    /// Every group, reading all pages.
    pub fn list_groups(&self) -> Vec<Value> {
        self.list_all("/Groups", None)
    }

    /// Every resource under `path` (`/Users`, `/Groups`) that matches the SCIM `filter`, if
    /// given, reading all pages.
    pub fn list_all(&self, path: &str, filter: Option<&str>) -> Vec<Value> {
        self.list_paged(path, filter, PAGE_SIZE)
    }

    /// Like [`ScimServer::list_all`], reading pages of `page_size` resources.
    pub fn list_paged(&self, path: &str, filter: Option<&str>, page_size: usize) -> Vec<Value> {
        let url = self.resolve(path);
        let mut resources: Vec<Value> = Vec::new();
        loop {
            let mut query = vec![
                ("startIndex", (resources.len() + 1).to_string()),
                ("count", page_size.to_string()),
            ];
            if let Some(filter) = filter {
                query.push(("filter", filter.to_string()));
            }
            let request = self.http.get(&url).bearer_auth(&self.token).query(&query);
            let url = url.clone();
            let (status, page) = block_on(async move {
                let response = request
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("GET {url}: {e}"));
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                (status, text)
            });
            assert_eq!(status, 200, "GET {path} (list): {page}");
            let page: Value = serde_json::from_str(&page)
                .unwrap_or_else(|e| panic!("GET {path} (list): not JSON ({e}): {page}"));
            let total = page["totalResults"].as_u64().unwrap_or(0) as usize;
            let batch = page["Resources"].as_array().cloned().unwrap_or_default();
            let empty = batch.is_empty();
            resources.extend(batch);
            if resources.len() >= total || empty {
                return resources;
            }
        }
    }

    /// The user whose `userName` is `name` (compared exactly, as stored).
    pub fn user_by_username(&self, name: &str) -> Option<Value> {
        self.list_users()
            .into_iter()
            .find(|user| user["userName"].as_str() == Some(name))
    }

    /// The group whose `displayName` is `name`.
    pub fn group_by_display_name(&self, name: &str) -> Option<Value> {
        self.list_groups()
            .into_iter()
            .find(|group| group["displayName"].as_str() == Some(name))
    }

    fn resolve(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}/{}", self.url, path.trim_start_matches('/'))
        }
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

fn with_schema(mut body: Value, schema: &str) -> Value {
    if let Some(object) = body.as_object_mut() {
        object.entry("schemas").or_insert_with(|| json!([schema]));
    }
    body
}
