//! A real django-scim2 server (PEERS.md, "Second SCIM server"): the small Django project in
//! `tests/peers/django`, served by waitress on a free loopback port with a bearer token and a
//! fresh SQLite database. The blocking request helpers are [`ScimClient`]'s, which a
//! [`DjangoServer`] dereferences to, as a [`super::ScimServer`] does.
//!
//! django-scim2 is a library with its own reading of RFC 7644; the project around it is only
//! integration glue (models, settings, urls, an authentication middleware), so what the tests
//! see is the library's own behaviour. `tests/peers/django/BEHAVIOUR.md` catalogues it.
//!
//! The project is migrated once into a template database, cached under the peers directory
//! (`<peers>/django-project/<hash of the project files>/`), and each server starts on a copy.

use std::fs::File;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{
    block_on, free_port, http_client, peers_dir, random_hex, repo_root, tail_of, ScimClient,
};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const START_ATTEMPTS: usize = 5;
/// The files of the project, relative to `tests/peers/django`: what the cached template is
/// keyed by (with the pins in `scripts/install-peers`).
const PROJECT_FILES: &[&str] = &[
    "manage.py",
    "scimproj/__init__.py",
    "scimproj/settings.py",
    "scimproj/urls.py",
    "scimproj/wsgi.py",
    "scimproj/auth.py",
    "scimapp/__init__.py",
    "scimapp/models.py",
];
/// The Django app that holds the models (`APP` in PEERS.md).
const APP: &str = "scimapp";
const TEMPLATE_DB: &str = "template.sqlite3";

/// The Python of the django-scim2 venv that `scripts/install-peers` makes.
pub fn django_python() -> PathBuf {
    peers_dir().join("django-venv/bin/python")
}

/// A running django-scim2 server on a free loopback port, with its own bearer token and its
/// own database. It is killed when dropped. `url` (`http://127.0.0.1:PORT/scim/v2`), `token`
/// and the request helpers are its [`ScimClient`]'s.
pub struct DjangoServer {
    client: ScimClient,
    pub port: u16,
    child: Option<Child>,
    log_path: PathBuf,
    db_path: PathBuf,
    dir: tempfile::TempDir,
}

impl Deref for DjangoServer {
    type Target = ScimClient;

    fn deref(&self) -> &ScimClient {
        &self.client
    }
}

impl DjangoServer {
    /// Starts a server on an empty database.
    pub fn start() -> DjangoServer {
        super::ensure_peers();
        let project = prepared_project();
        let dir = tempfile::Builder::new()
            .prefix("django-scim-")
            .tempdir()
            .expect("create a temporary directory");
        let log_path = dir.path().join("server.log");
        let db_path = dir.path().join("db.sqlite3");
        std::fs::copy(project.join(TEMPLATE_DB), &db_path)
            .unwrap_or_else(|e| panic!("copy the template database to {}: {e}", db_path.display()));
        let token = random_hex(16);
        let http = http_client();

        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let url = format!("http://127.0.0.1:{port}/scim/v2");
            let mut child = spawn(&project, port, &token, &db_path, &log_path);
            match wait_ready(&mut child, &http, &url, &token) {
                Ok(()) => {
                    return DjangoServer {
                        client: ScimClient::new(url, token),
                        port,
                        child: Some(child),
                        log_path,
                        db_path,
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
                        "django-scim2 on port {port} {}. Log {}:\n{}",
                        match exit {
                            Exit::Early => "exited at start",
                            Exit::Timeout => "was not ready within 30 s",
                        },
                        log_path.display(),
                        tail_of(&log_path, 8192)
                    );
                }
            }
        }
        panic!(
            "django-scim2 could not bind a port after {START_ATTEMPTS} attempts: {}. Log:\n{}",
            failures.join(", "),
            tail_of(&log_path, 8192)
        );
    }

    /// The server's output so far (waitress, and the traceback of every 500).
    pub fn log(&self) -> String {
        tail_of(&self.log_path, usize::MAX)
    }

    /// The file the server's output goes to.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The server's SQLite database.
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// Every user then every group the server holds, then stops it: the counterpart of
    /// [`super::ScimServer::stop_and_dump`] (read over HTTP; django-scim2 has no dump).
    pub fn stop_and_dump(mut self) -> Vec<Value> {
        let mut all = self.list_users();
        all.extend(self.list_groups());
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        all
    }
}

impl Drop for DjangoServer {
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

fn spawn(project: &Path, port: u16, token: &str, db: &Path, log: &Path) -> Child {
    let log_file = File::create(log).expect("create the server log");
    let log_err = log_file.try_clone().expect("clone the server log handle");
    let python = django_python();
    Command::new(&python)
        .args(["-m", "waitress"])
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg("--threads=4")
        .arg("scimproj.wsgi:application")
        .current_dir(project)
        .env("SCIM_PEER_PORT", port.to_string())
        .env("SCIM_PEER_TOKEN", token)
        .env("SCIM_PEER_DB", db)
        .env("DJANGO_SETTINGS_MODULE", "scimproj.settings")
        // Unbuffered, so that the log is complete when a test fails.
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {} -m waitress: {e}", python.display()))
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
        if child.try_wait().expect("wait for waitress").is_some() {
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

/// The project directory with its migrations and migrated template database, made at most
/// once per test process and reused across processes while the project files and the pins
/// stay the same.
fn prepared_project() -> PathBuf {
    static PROJECT: OnceLock<PathBuf> = OnceLock::new();
    PROJECT
        .get_or_init(|| {
            let source = repo_root().join("tests/peers/django");
            let mut hash = Sha256::new();
            for name in PROJECT_FILES {
                let path = source.join(name);
                let bytes =
                    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
                hash.update(name.as_bytes());
                hash.update((bytes.len() as u64).to_le_bytes());
                hash.update(&bytes);
            }
            let pins = repo_root().join("scripts/install-peers");
            hash.update(
                std::fs::read(&pins).unwrap_or_else(|e| panic!("read {}: {e}", pins.display())),
            );
            let key = hex::encode(&hash.finalize()[..8]);
            let cache = peers_dir().join("django-project");
            let project = cache.join(&key);
            if project.join(TEMPLATE_DB).exists() {
                return project;
            }
            std::fs::create_dir_all(&cache)
                .unwrap_or_else(|e| panic!("create {}: {e}", cache.display()));
            // Built aside and renamed into place, so that a concurrent test process never
            // sees half a project; the loser of a race drops its copy.
            let build = tempfile::Builder::new()
                .prefix(".build-")
                .tempdir_in(&cache)
                .expect("create a build directory");
            for name in PROJECT_FILES {
                let to = build.path().join(name);
                std::fs::create_dir_all(to.parent().expect("a parent"))
                    .unwrap_or_else(|e| panic!("create the parent of {}: {e}", to.display()));
                std::fs::copy(source.join(name), &to)
                    .unwrap_or_else(|e| panic!("copy {name} to {}: {e}", to.display()));
            }
            let db = build.path().join(TEMPLATE_DB);
            manage(build.path(), &db, &["makemigrations", APP]);
            manage(build.path(), &db, &["migrate", "--verbosity", "0"]);
            let built = build.keep();
            if let Err(e) = std::fs::rename(&built, &project) {
                let _ = std::fs::remove_dir_all(&built);
                assert!(
                    project.join(TEMPLATE_DB).exists(),
                    "move {} to {}: {e}",
                    built.display(),
                    project.display()
                );
            }
            project
        })
        .clone()
}

/// Runs `manage.py ARGS` in `project` against the database `db`; panics with its output on
/// a failure.
fn manage(project: &Path, db: &Path, args: &[&str]) {
    let output = Command::new(django_python())
        .arg("manage.py")
        .args(args)
        .current_dir(project)
        .env("SCIM_PEER_DB", db)
        .env("SCIM_PEER_TOKEN", "unused")
        .env("DJANGO_SETTINGS_MODULE", "scimproj.settings")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {} manage.py: {e}", django_python().display()));
    assert!(
        output.status.success(),
        "manage.py {} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
