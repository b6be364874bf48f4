//! The long-running service: a cron schedule per target, signals, systemd notification and
//! the control socket.
//!
//! One task per target: it sleeps until its next cron time (or runs at once when its snapshot
//! is empty: the initial sync), reads the source itself and runs one cycle. Each task reading
//! the source costs one more read when two schedules fire together, and buys independence: a
//! slow or failing target never delays another, and every cycle plans from a fresh read.
//! Cycles of one target never overlap (the task is sequential and holds the target's lock,
//! which `sync` and `provision` over the socket take too).
//!
//! Signals: `SIGTERM`/`SIGINT` cancel one shared token; cycles start no new call, the calls in
//! flight finish (for at most [`GRACE`]), the snapshot is flushed and the process exits 0.
//! `SIGHUP` reloads the configuration; an invalid one is logged and the old one kept.

mod journal;
mod leases;
pub(crate) mod notify;
mod socket;
mod supervise;

use journal::{log_cycle, summary};
use supervise::{record_failure, supervise};

use crate::config::Config;
use crate::control::status::{CycleFailure, LAST_FAILURE};
use crate::control::{Ctx, DaemonInfo, TargetLocks, EXIT_FATAL, EXIT_OK, EXIT_USAGE};
use crate::engine::{self, CycleOptions, CycleReport};
use crate::ids::TargetName;
use crate::source;
use crate::state::{self, Store};
use crate::target::Target;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long the calls in flight may take to finish after a stop signal.
pub(crate) const GRACE: Duration = Duration::from_secs(30);

/// What every task of the daemon shares.
pub(crate) struct Shared {
    config: watch::Sender<Arc<Config>>,
    store: Arc<Store>,
    locks: Arc<TargetLocks>,
    stop: CancellationToken,
    info: DaemonInfo,
    /// The last cycle's summary per target, for systemd's `STATUS=`.
    summaries: Mutex<BTreeMap<String, String>>,
    /// Each target's supervised scheduler.
    tasks: Mutex<BTreeMap<String, JoinHandle<()>>>,
    /// Set when the daemon stops because it cannot go on (the PostgreSQL state's connection
    /// closed): it exits non-zero, for the service manager to start it again.
    fatal: std::sync::atomic::AtomicBool,
    /// When (ms of [`crate::state::lease::clock`]) the lease keeper last finished a round.
    kept_at: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn current(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    /// The context a control-socket command runs in.
    fn ctx(&self) -> Ctx {
        Ctx {
            config: self.current(),
            store: self.store.clone(),
            locks: self.locks.clone(),
            stop: self.stop.clone(),
            daemon: Some(self.info.clone()),
            watch: None,
        }
    }

    /// Whether every configured target has its scheduler running: the watchdog's condition.
    /// With several instances, every target this one owns.
    fn every_target_scheduled(&self) -> bool {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if self.store.shared() {
            return tasks.values().all(|h| !h.is_finished()) && self.leases_kept();
        }
        self.current()
            .targets
            .iter()
            .all(|t| tasks.get(&t.name).is_some_and(|h| !h.is_finished()))
    }

    /// Whether the lease keeper finished a round within the last two leases.
    fn leases_kept(&self) -> bool {
        let at = self.kept_at.load(std::sync::atomic::Ordering::SeqCst);
        let lease = crate::state::lease::clock().saturating_sub(at);
        u128::from(lease) < 2 * self.current().state.lease().as_millis()
    }

    /// Stops the daemon because it cannot go on; it exits non-zero.
    fn fail(&self) {
        self.fatal.store(true, std::sync::atomic::Ordering::SeqCst);
        self.stop.cancel();
    }

    fn failed(&self) -> bool {
        self.fatal.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether any target's scheduler still runs.
    fn tasks_running(&self) -> bool {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.values().any(|h| !h.is_finished())
    }

    /// Forgets a target's scheduler that was told to stop (its lease given back or lost).
    fn untrack(&self, target: &str) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.remove(target);
    }

    fn summary(&self, target: &str, text: String) {
        let all = {
            let mut s = self.summaries.lock().unwrap_or_else(|p| p.into_inner());
            s.insert(target.to_owned(), text);
            s.iter()
                .map(|(t, v)| format!("{t}: {v}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        notify::status(&all);
    }
}

/// `scimsync run`: serves until `SIGTERM` or `SIGINT`; returns the exit code.
pub(crate) async fn run(config_path: &Path) -> i32 {
    let config = match crate::target::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_USAGE;
        }
    };
    let store = match Store::open_state(&config.state) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_FATAL;
        }
    };
    let instance = store.shared().then(crate::state::lease::instance_name);
    if let Some(name) = &instance {
        if let Err(e) = leases::unique(&store, name).await {
            eprintln!("{e}");
            return EXIT_FATAL;
        }
    }
    let signals = (|| {
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
            signal(SignalKind::hangup())?,
        ))
    })();
    let (mut term, mut int, mut hup) = match signals {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot install signal handlers: {e}");
            return EXIT_FATAL;
        }
    };
    let bound = match socket::bind(&config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "control socket in {}: {e}",
                crate::control::runtime_dir()
                    .unwrap_or_else(|| config.state.path.clone())
                    .display()
            );
            return EXIT_FATAL;
        }
    };
    if let Some(addr) = config.metrics_listen {
        // Not reloaded on SIGHUP: the recorder is installed once per process.
        if let Err(e) = crate::telemetry::serve(addr) {
            eprintln!("{e}");
            for f in &bound.files {
                let _ = std::fs::remove_file(f);
            }
            return EXIT_FATAL;
        }
        tracing::info!(address = %addr, "Serving Prometheus metrics on /metrics.");
    }
    let targets = config.targets.len();

    let shared = Arc::new(Shared {
        config: watch::Sender::new(Arc::new(config)),
        store: Arc::new(store),
        locks: Arc::default(),
        stop: CancellationToken::new(),
        info: DaemonInfo {
            pid: std::process::id(),
            started_at: state::now(),
            socket: bound.path.clone(),
            instance,
        },
        summaries: Mutex::default(),
        tasks: Mutex::default(),
        fatal: Default::default(),
        kept_at: crate::state::lease::clock().into(),
    });
    let tracker = TaskTracker::new();
    tracker.spawn(socket::serve(
        bound.listener,
        shared.clone(),
        tracker.clone(),
    ));
    let watched = shared.clone();
    tracker.spawn(notify::watchdog(
        shared.stop.clone(),
        Box::new(move || watched.every_target_scheduled()),
    ));
    if shared.store.shared() {
        tracker.spawn(leases::keep(shared.clone(), tracker.clone()));
        tracker.spawn(leases::serve_requests(shared.clone(), tracker.clone()));
    } else {
        spawn_targets(&shared, &tracker);
    }
    log_started(&shared.current(), &bound.path);
    notify::ready(&format!(
        "running: {targets} targets, waiting for the first cycle"
    ));

    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: stopping.");
                break;
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: stopping.");
                break;
            }
            _ = hup.recv() => reload(config_path, &shared, &tracker),
            _ = shared.stop.cancelled() => break,
        }
    }

    let code = shut_down(&shared, &tracker, &bound.files).await;
    if shared.failed() {
        EXIT_FATAL
    } else {
        code
    }
}

/// The end of `run`: the tasks stopped (calls in flight given [`GRACE`]), the snapshot
/// flushed, the socket files removed; returns the exit code.
async fn shut_down(shared: &Shared, tracker: &TaskTracker, files: &[std::path::PathBuf]) -> i32 {
    notify::stopping();
    shared.stop.cancel();
    tracker.close();
    let finished = tokio::time::timeout(GRACE, tracker.wait()).await.is_ok();
    if !finished {
        tracing::warn!(
            grace_seconds = GRACE.as_secs(),
            "Calls still in flight after the grace period are abandoned."
        );
    }
    let mut code = EXIT_OK;
    // Leases are given back only when nothing runs under them any more; otherwise they expire.
    leases::leave(shared, finished).await;
    if let Err(e) = shared.store.flush().await {
        tracing::error!(error = %e, "Could not flush the snapshot.");
        code = EXIT_FATAL;
    }
    for f in files {
        let _ = std::fs::remove_file(f);
    }
    tracing::info!("Daemon stopped.");
    code
}

/// The log line of a daemon that started: its version, targets with their schedules, socket.
fn log_started(config: &Config, socket: &Path) {
    let schedules: Vec<String> = config
        .targets
        .iter()
        .map(|t| format!("{} ({})", t.name, t.schedule))
        .collect();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        targets = %schedules.join(", "),
        socket = %socket.display(),
        "Daemon started."
    );
}

/// Starts a supervised scheduler task for each configured target that has none running (one
/// instance; with several, the lease keeper starts the tasks of the targets it owns).
fn spawn_targets(shared: &Arc<Shared>, tracker: &TaskTracker) {
    if shared.store.shared() {
        return;
    }
    let running: Vec<String> = {
        let mut tasks = shared.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|_, h| !h.is_finished());
        tasks.keys().cloned().collect()
    };
    for t in &shared.current().targets {
        if !running.contains(&t.name) {
            spawn_target(shared, tracker, &t.name, shared.stop.clone(), false);
        }
    }
}

/// Starts one target's supervised scheduler, which ends when `stop` is cancelled; with
/// `at_once` it runs a cycle at once (a target taken over from another instance).
fn spawn_target(
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
    name: &str,
    stop: CancellationToken,
    at_once: bool,
) {
    let (n, s, st) = (name.to_owned(), shared.clone(), stop.clone());
    let handle = tracker.spawn(supervise(
        name.to_owned(),
        stop,
        move || target_loop(n.clone(), s.clone(), st.clone(), at_once),
        record_failure(shared.clone()),
    ));
    shared
        .tasks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name.to_owned(), handle);
}

/// `SIGHUP`: loads the configuration again; the tasks pick it up at their next wake-up.
fn reload(path: &Path, shared: &Arc<Shared>, tracker: &TaskTracker) {
    notify::reloading();
    match crate::target::load(path) {
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: the new configuration is invalid; keeping the previous one.");
        }
        Ok(mut new) => {
            let old = shared.current();
            if new.state.path != old.state.path {
                tracing::warn!(
                    old = %old.state.path.display(),
                    new = %new.state.path.display(),
                    "SIGHUP: state.path changed; it takes effect at the next restart."
                );
                new.state.path = old.state.path.clone();
            }
            let (a, b) = (&old.state, &new.state);
            if a.backend != b.backend
                || a.url != b.url
                || a.password_file != b.password_file
                || a.password_env != b.password_env
                || a.ca_file != b.ca_file
            {
                tracing::warn!("SIGHUP: the state's backend, url, password or ca_file changed; the open state is kept until the next restart.");
            }
            let targets = new.targets.len();
            shared.config.send_replace(Arc::new(new));
            spawn_targets(shared, tracker);
            tracing::info!(targets, "SIGHUP: configuration reloaded.");
        }
    }
    notify::ready("running: configuration reloaded");
}

/// One target's scheduler: the initial sync when its snapshot is empty (or a cycle at once,
/// `at_once`), then a cycle at each cron time, until `stop` (shutdown, or the target's lease
/// gone) or until the target leaves the configuration.
async fn target_loop(name: String, shared: Arc<Shared>, stop: CancellationToken, at_once: bool) {
    let mut rx = shared.config.subscribe();
    let empty = shared
        .store
        .snapshot(&TargetName(name.clone()))
        .and_then(|s| s.counts())
        .map(|counts| counts == (0, 0))
        .unwrap_or(false);
    if empty {
        tracing::info!(target = %name, "Empty snapshot: running the initial sync now.");
        cycle(&shared, &name, &stop).await;
    } else if at_once {
        tracing::info!(target = %name, "Taken over from another instance: running a cycle now.");
        cycle(&shared, &name, &stop).await;
    }
    let mut last_tick: Option<chrono::DateTime<chrono::Utc>> = None;
    loop {
        let config = rx.borrow_and_update().clone();
        let Some(target) = config.target(&name) else {
            tracing::info!(target = %name, "The target left the configuration; its schedule stops.");
            return;
        };
        let now = chrono::Utc::now();
        // Never the same tick twice, even if the timer wakes a hair early.
        let after = last_tick.map_or(now, |t| t.max(now));
        let next = crate::schedule::next_run(&target.schedule, after);
        let sleep = async {
            match next {
                Some(at) => {
                    let wait = crate::schedule::delay(at, chrono::Utc::now());
                    tokio::time::sleep_until(tokio::time::Instant::now() + wait).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
            _ = sleep => {}
        }
        last_tick = next;
        cycle(&shared, &name, &stop).await;
    }
}

/// One scheduled cycle of one target: read the source, run, record.
async fn cycle(shared: &Shared, name: &str, stop: &CancellationToken) {
    let config = shared.current();
    let target = match Target::named(&config, name) {
        None => return,
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            tracing::error!(target = %name, error = %e, "Cycle failed.");
            return;
        }
    };
    let _cycle = shared.locks.lock(name).await;
    if stop.is_cancelled() {
        return;
    }
    // A quarantined target backs off; a hand-run `sync` still tries at once.
    let allowed = shared
        .store
        .snapshot(&TargetName(name.to_owned()))
        .and_then(|s| engine::guard::scheduled_cycle_allowed(&s, chrono::Utc::now()));
    if let Ok(false) = allowed {
        tracing::warn!(target = %name, "Quarantined: this scheduled cycle is skipped until the back-off ends.");
        return;
    }
    let started = std::time::Instant::now();
    let result: Result<Option<CycleReport>, String> = async {
        let source = source::build(&config.source, config.max_value_bytes)
            .map_err(|e| format!("source: {e}"))?;
        let dir = source
            .read()
            .await
            .map_err(|e| format!("source: {e}; no target was changed"))?;
        if stop.is_cancelled() {
            return Ok(None);
        }
        engine::run_target_until(
            std::borrow::Cow::Owned(dir),
            &config,
            &target,
            &shared.store,
            CycleOptions::default(),
            stop,
        )
        .await
        .map(|(report, _)| Some(report))
        .map_err(|e| e.to_string())
    }
    .await;
    match &result {
        Ok(Some(r)) => {
            crate::telemetry::cycle(name, !r.incomplete(), r.quarantine.is_some(), r.escrow)
        }
        Ok(None) => {}
        Err(_) => crate::telemetry::cycle_failed(name),
    }
    match result {
        Ok(Some(r)) => {
            log_cycle(&r, started.elapsed(), &target.schedule);
            shared.summary(name, summary(&r));
        }
        Ok(None) => {}
        Err(error) => {
            tracing::error!(target = %name, error = %error, "Cycle failed.");
            let failure = CycleFailure {
                at: state::now(),
                error: error.clone(),
            };
            if let Err(e) = shared
                .store
                .snapshot(&TargetName(name.to_owned()))
                .and_then(|s| s.set_meta(LAST_FAILURE, &failure))
            {
                tracing::error!(target = %name, error = %e, "Could not record the failed cycle.");
            }
            shared.summary(name, format!("{} cycle failed: {error}", failure.at));
        }
    }
}
