//! The progress bar of a one-shot `sync` on a terminal: per target, operations done of those
//! planned, their rate and the time left. Nothing is drawn when standard error is not a
//! terminal, with `--log-format json`, or when the daemon runs the sync for a client.

use crate::engine::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Called once by the command line: a bar is drawn only for text logs on a terminal.
pub(super) fn enable(text_logs: bool) {
    ENABLED.store(
        text_logs && std::io::stderr().is_terminal(),
        Ordering::Relaxed,
    );
}

pub(super) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// How a local `sync` on a terminal watches its cycles: a bar per target.
pub(super) fn watch() -> Option<crate::control::Watch> {
    enabled().then_some(start as crate::control::Watch)
}

/// Draws `target`'s bar from `progress` until the cycle ends.
fn start(target: &str, progress: Arc<Progress>) -> tokio::task::JoinHandle<()> {
    let target = target.to_owned();
    tokio::spawn(async move { draw(&target, &progress).await })
}

async fn draw(target: &str, progress: &Progress) {
    // Hidden until there is a plan, so that nothing is drawn while the target is read.
    let bar = ProgressBar::hidden();
    let style = ProgressStyle::with_template(
        "{prefix} [{bar:24}] {pos} of {len} objects, {rate}, ETA {left}",
    )
    .map(|s| {
        // The mean rate since the first operation: indicatif's own estimate follows the
        // bursts of the rate limiter and promises too early an end.
        s.progress_chars("=> ")
            .with_key(
                "rate",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.1}/s", mean_rate(state));
                },
            )
            .with_key(
                "left",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let rate = mean_rate(state);
                    let left = state.len().unwrap_or(0).saturating_sub(state.pos());
                    if rate > 0.0 {
                        let _ = write!(w, "{:.0}s", left as f64 / rate);
                    } else {
                        let _ = write!(w, "-");
                    }
                },
            )
    })
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(format!("target {target:?}"));
    let mut shown = false;
    let mut update = |bar: &ProgressBar| {
        let (done, total) = progress.get();
        if total == 0 {
            // Still reading the target or planning: an empty bar would look finished.
            return;
        }
        if !shown {
            shown = true;
            // Rate and time left count from the first operation, not from the source read.
            bar.reset();
            bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while !progress.is_ended() {
        tick.tick().await;
        update(&bar);
    }
    if progress.get().1 == 0 {
        // Nothing to do: no bar at all.
        bar.finish_and_clear();
    } else {
        update(&bar);
        bar.finish();
        if !bar.is_hidden() {
            // The bar stays as the cycle's last line; the report starts below it.
            eprintln!();
        }
    }
}

fn mean_rate(state: &ProgressState) -> f64 {
    let secs = state.elapsed().as_secs_f64();
    if secs > 0.0 {
        state.pos() as f64 / secs
    } else {
        0.0
    }
}
