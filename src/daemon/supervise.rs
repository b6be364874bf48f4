//! A target's scheduler kept running: started again after it fails, each failure recorded for
//! `status`.

use super::Shared;
use crate::control::status::{CycleFailure, LAST_FAILURE};
use crate::ids::TargetName;
use crate::state;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a target's scheduler waits before it is started again after it failed, at most.
const RESTART_MAX: Duration = Duration::from_secs(300);

/// Runs a target's scheduler, and starts it again (after a pause that grows with each
/// failure) when it stops by failing rather than by returning: a bug in one target's cycle
/// never silently ends its schedule. Each failure is reported through `failed`.
pub(super) async fn supervise<F, Fut>(
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
                tracing::error!(target: "scimsync::daemon", target = %name, failures, error = %why, restart_in_seconds = pause.as_secs(), "The target's scheduler stopped by failing; restarting it.");
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
pub(super) fn record_failure(shared: Arc<Shared>) -> impl Fn(&str, String) {
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
            tracing::error!(target: "scimsync::daemon", target = %name, error = %e, "Could not record the failure.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

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
