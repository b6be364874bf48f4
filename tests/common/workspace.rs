//! A temporary directory to write configuration into and run the `scimsync` binary in.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{interrupt, scimsync_bin};

/// How long one run of the binary may take before the test fails.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// What a finished run of the binary left.
#[derive(Clone, Debug)]
pub struct RunOutput {
    /// The exit code; 128 + the signal number when a signal ended the process.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl RunOutput {
    /// Panics, showing both outputs, unless the run exited with `code`.
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "scimsync exited {} where {code} was expected\n{}",
            self.code, self
        );
        self
    }

    /// Panics, showing both outputs, unless the run exited 0.
    pub fn assert_success(&self) -> &Self {
        self.assert_code(0)
    }
}

impl std::fmt::Display for RunOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--- exit code {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A temporary directory, removed when dropped, in which the binary runs.
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Default for Workspace {
    fn default() -> Self {
        Workspace::new()
    }
}

impl Workspace {
    pub fn new() -> Workspace {
        let dir = tempfile::Builder::new()
            .prefix("scimsync-test-")
            .tempdir()
            .expect("create a temporary directory");
        Workspace { dir }
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The path of `name` inside the workspace (which need not exist).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `contents` to `name` (creating parent directories) and returns its path. The
    /// file is owner-only, as an administrator keeps a configuration and its secrets.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
        }
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        path
    }

    /// The text of `name`; panics if it cannot be read.
    pub fn read(&self, name: &str) -> String {
        let path = self.path(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    /// Runs `scimsync ARGS` in the workspace and waits for it (at most [`RUN_TIMEOUT`]).
    pub fn run(&self, args: &[&str]) -> RunOutput {
        self.run_with_env(args, &[])
    }

    /// Like [`Workspace::run`], with extra environment variables (e.g. `RUST_LOG`).
    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> RunOutput {
        self.spawn_with_env(args, env).wait(RUN_TIMEOUT)
    }

    /// Starts `scimsync ARGS` in the workspace without waiting, for long-running commands
    /// (a daemon): stop it with [`Running::stop`].
    pub fn spawn(&self, args: &[&str]) -> Running {
        self.spawn_with_env(args, &[])
    }

    /// Like [`Workspace::spawn`], with extra environment variables.
    pub fn spawn_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Running {
        self.spawn_wrapped(&[], args, env)
    }

    /// Like [`Workspace::spawn_with_env`], with the binary started by `wrapper` when it is not
    /// empty: `wrapper[0] wrapper[1..] scimsync ARGS` (say `/usr/bin/time -f %M -o FILE`, or
    /// `sh -c 'umask 022; exec "$@"' sh`). [`Running::pid`] is then the wrapper's.
    pub fn spawn_wrapped(&self, wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Running {
        let bin = scimsync_bin();
        let mut command = match wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut command = Command::new(program);
                command.args(wrapper_args).arg(&bin);
                command
            }
            None => Command::new(&bin),
        };
        command
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The run depends only on what the test gives it, not on the developer's shell.
        command.env_remove("RUST_LOG");
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SCIMSYNC_") {
                command.env_remove(&name);
            }
        }
        command.envs(env.iter().copied());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        Running {
            child: Some(child),
            stdout,
            stderr,
            description: format!("scimsync {}", args.join(" ")),
        }
    }
}

/// A `scimsync` process started by [`Workspace::spawn`]; killed if dropped while running.
pub struct Running {
    child: Option<Child>,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
    description: String,
}

impl Running {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// Sends SIGINT, as Ctrl-C would.
    pub fn interrupt(&self) {
        interrupt(self.pid());
    }

    /// Whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().expect("wait for scimsync").is_some(),
            None => true,
        }
    }

    /// Sends SIGINT and waits for the process to finish (at most [`RUN_TIMEOUT`]).
    pub fn stop(self) -> RunOutput {
        self.interrupt();
        self.wait(RUN_TIMEOUT)
    }

    /// Waits for the process to finish; kills it and panics with its output after `timeout`.
    pub fn wait(mut self, timeout: Duration) -> RunOutput {
        let mut child = self.child.take().expect("a running process");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for scimsync") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let output = self.collect(None);
                panic!(
                    "{} did not finish within {} s; killed.\n{output}",
                    self.description,
                    timeout.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.collect(Some(status))
    }

    fn collect(&mut self, status: Option<ExitStatus>) -> RunOutput {
        let join = |handle: Option<JoinHandle<String>>| {
            handle
                .map(|h| h.join().unwrap_or_default())
                .unwrap_or_default()
        };
        RunOutput {
            code: status.map(exit_code).unwrap_or(-1),
            stdout: join(self.stdout.take()),
            stderr: join(self.stderr.take()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(-1)
}

/// Reads a pipe to its end on a thread of its own, so that a chatty child never blocks on a
/// full pipe.
fn drain(pipe: Option<impl Read + Send + 'static>) -> Option<JoinHandle<String>> {
    pipe.map(|mut pipe| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    })
}
