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

mod leases;
pub(crate) mod notify;
mod socket;

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
            return tasks.values().all(|h| !h.is_finished());
        }
        self.current()
            .targets
            .iter()
            .all(|t| tasks.get(&t.name).is_some_and(|h| !h.is_finished()))
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
    let instance = store.shared().then(crate::state::lease::instance_name);
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
        }
    }

    shut_down(&shared, &tracker, &bound.files).await
}

/// The end of `run`: the tasks stopped (calls in flight given [`GRACE`]), the snapshot
/// flushed, the socket files removed; returns the exit code.
async fn shut_down(shared: &Shared, tracker: &TaskTracker, files: &[std::path::PathBuf]) -> i32 {
    notify::stopping();
    shared.stop.cancel();
    tracker.close();
    if tokio::time::timeout(GRACE, tracker.wait()).await.is_err() {
        tracing::warn!(
            grace_seconds = GRACE.as_secs(),
            "Calls still in flight after the grace period are abandoned."
        );
    }
    let mut code = EXIT_OK;
    leases::leave(shared).await;
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

/// How long a target's scheduler waits before it is started again after it failed, at most.
const RESTART_MAX: Duration = Duration::from_secs(300);

/// Runs a target's scheduler, and starts it again (after a pause that grows with each
/// failure) when it stops by failing rather than by returning: a bug in one target's cycle
/// never silently ends its schedule. Each failure is reported through `failed`.
async fn supervise<F, Fut>(
    name: String,
    stop: CancellationToken,
    mut run: F,
    failed: impl Fn(&str, String),
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut failures: u32 = 0;
    loop {
        match tokio::spawn(run()).await {
            Ok(()) => return,
            Err(e) if e.is_cancelled() || stop.is_cancelled() => return,
            Err(e) => {
                failures = failures.saturating_add(1);
                let why = match e.try_into_panic() {
                    Ok(p) => p
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into()),
                    Err(e) => e.to_string(),
                };
                let pause = Duration::from_secs(1u64 << failures.min(8)).min(RESTART_MAX);
                tracing::error!(target = %name, failures, error = %why, restart_in_seconds = pause.as_secs(), "The target's scheduler stopped by failing; restarting it.");
                failed(
                    &name,
                    format!("the scheduler stopped by failing ({why}); restarted"),
                );
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

/// Records a scheduler's failure as the target's last failure, for `status`.
fn record_failure(shared: Arc<Shared>) -> impl Fn(&str, String) {
    move |name, error| {
        let failure = CycleFailure {
            at: state::now(),
            error,
        };
        if let Err(e) = shared
            .store
            .snapshot(&TargetName(name.to_owned()))
            .and_then(|s| s.set_meta(LAST_FAILURE, &failure))
        {
            tracing::error!(target = %name, error = %e, "Could not record the failure.");
        }
    }
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

/// The journal's line for a finished cycle, and a warning for what needs the administrator:
/// held deprovisions, a quarantine begun or lifted. Each object not in step is a debug record
/// (the provisioning log and `status` keep them).
fn log_cycle(r: &CycleReport, took: Duration, schedule: &str) {
    let next = crate::schedule::next_run(schedule, chrono::Utc::now())
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "never".into());
    let next = match &r.quarantine {
        Some(q) => q.next_cycle.clone(),
        None => next,
    };
    let counts = |c: &engine::Counts| {
        format!(
            "+{} ~{} -{} ={} skipped {} failed {}",
            c.created, c.updated, c.deprovisioned, c.unchanged, c.skipped, c.failed
        )
    };
    // The counts are in the message itself: the journal shows a message, not its fields.
    tracing::info!(
        target_name = %r.target,
        "Cycle finished: users {}; groups {}; {} requests; {} not in step; {:.1} s; next run {next}.",
        counts(&r.users),
        counts(&r.groups),
        r.requests,
        r.problems.len(),
        took.as_secs_f64(),
    );
    for p in &r.problems {
        tracing::debug!(target_name = %r.target, problem = %crate::text::escape(p), "Not in step.");
    }
    for hold in &r.held_clears {
        tracing::warn!(target_name = %r.target, "Clears held: {hold}; run `scimsync sync --allow-clears --target {}` to clear it.", r.target);
    }
    if let Some(hold) = &r.hold {
        tracing::warn!(target_name = %r.target, held = r.held, "Deprovisions held: {hold}; run `scimsync sync --allow-deletes --target {}` to carry them out.", r.target);
    }
    match (&r.quarantined_before, &r.quarantine) {
        (None, Some(q)) => {
            tracing::warn!(target_name = %r.target, reason = %crate::text::escape(&q.reason), next_cycle = %q.next_cycle, "Target quarantined.")
        }
        (Some(_), None) => {
            tracing::info!(target_name = %r.target, "Quarantine lifted after a successful cycle.")
        }
        _ => {}
    }
}

/// The one-line summary of a cycle for `STATUS=`.
fn summary(r: &CycleReport) -> String {
    format!(
        "{} users +{} ~{} -{} ={}, groups +{} ~{} -{} ={}, {} requests, {} problems",
        r.started_at,
        r.users.created,
        r.users.updated,
        r.users.deprovisioned,
        r.users.unchanged,
        r.groups.created,
        r.groups.updated,
        r.groups.deprovisioned,
        r.groups.unchanged,
        r.requests,
        r.problems.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_scheduler_that_fails_is_started_again_and_reported() {
        let runs = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let (r, f) = (runs.clone(), failures.clone());
        supervise(
            "app".into(),
            CancellationToken::new(),
            move || {
                let n = r.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 2 {
                        panic!("cycle bug {n}");
                    }
                }
            },
            move |name: &str, why: String| {
                f.lock().expect("lock").push(format!("{name}: {why}"));
            },
        )
        .await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "two failures, then a normal end"
        );
        let failures = failures.lock().expect("lock").clone();
        assert_eq!(failures.len(), 2);
        assert!(
            failures[0].starts_with("app: the scheduler stopped by failing (cycle bug 0)"),
            "{failures:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_scheduler_is_not_restarted_after_shutdown() {
        let stop = CancellationToken::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let s = stop.clone();
        supervise(
            "app".into(),
            stop,
            move || {
                r.fetch_add(1, Ordering::SeqCst);
                s.cancel();
                async { panic!("fails while stopping") }
            },
            |_: &str, _: String| {},
        )
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
