//! Prometheus metrics: what the pipeline records, and the `GET /metrics` endpoint that
//! `scimsync run` serves on `metrics_listen`.
//!
//! Recording goes through the `metrics` facade, which does nothing until [`serve`] installs
//! the Prometheus recorder: a one-shot `sync` pays nothing for it.

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use std::net::SocketAddr;
use std::time::Duration;

pub(crate) const CYCLES: &str = "scimsync_cycles_total";
pub(crate) const OPERATIONS: &str = "scimsync_operations_total";
pub(crate) const HTTP_DURATION: &str = "scimsync_http_request_duration_seconds";
pub(crate) const RATE_LIMIT_WAIT: &str = "scimsync_rate_limit_wait_seconds";
pub(crate) const QUARANTINED: &str = "scimsync_quarantined";
pub(crate) const ESCROW: &str = "scimsync_escrow_objects";
pub(crate) const LAST_SUCCESS: &str = "scimsync_last_success_timestamp_seconds";
pub(crate) const TOKEN_REQUESTS: &str = "scimsync_oauth_token_requests_total";
pub(crate) const MANAGED: &str = "scimsync_managed_objects";

/// Buckets of the HTTP latency histogram, in seconds: a fast SaaS API answers in tens of
/// milliseconds, a struggling one in seconds.
const HTTP_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets of the rate-limit wait, in seconds: most requests do not wait at all.
const WAIT_BUCKETS: [f64; 9] = [0.0005, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];

/// Installs the Prometheus recorder and serves `GET /metrics` on `addr` from the current
/// tokio runtime. Fails when the address cannot be bound (in use, not local).
pub(crate) fn serve(addr: SocketAddr) -> Result<(), MetricsError> {
    let serving = |e: metrics_exporter_prometheus::BuildError| MetricsError {
        addr,
        message: e.to_string(),
    };
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), &HTTP_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(RATE_LIMIT_WAIT.to_owned()), &WAIT_BUCKETS)
        })
        .map_err(serving)?
        .install()
        .map_err(serving)?;
    describe();
    Ok(())
}

/// Metrics cannot be served at the configured address.
#[derive(Debug, thiserror::Error)]
#[error("metrics_listen = \"{addr}\": cannot serve metrics: {message}")]
pub(crate) struct MetricsError {
    pub(crate) addr: SocketAddr,
    pub(crate) message: String,
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        CYCLES,
        "Cycles run, by target and result (ok, incomplete, failed)."
    );
    describe_counter!(
        OPERATIONS,
        "Operations carried out, by target, kind (user, group), action (create, update, deprovision) and status (ok, skipped, failed)."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Duration of the HTTP requests to a target, by method and status class."
    );
    describe_histogram!(
        RATE_LIMIT_WAIT,
        Unit::Seconds,
        "Time each request waited on the target's rate limit (the _sum is the total)."
    );
    describe_gauge!(QUARANTINED, "1 while the target is quarantined, else 0.");
    describe_gauge!(
        ESCROW,
        "Objects in escrow (failed, to be retried) after the last cycle."
    );
    describe_gauge!(
        LAST_SUCCESS,
        Unit::Seconds,
        "Unix time of the end of the last cycle that brought every object in step."
    );
    describe_gauge!(
        MANAGED,
        "Accounts and groups in the snapshot (managed by scimsync) after the last cycle, by kind."
    );
    describe_counter!(
        TOKEN_REQUESTS,
        "OAuth 2.0 token requests, by target and result (ok, failed)."
    );
}

/// One HTTP request to a target; `status` is `None` when no answer came.
pub(crate) fn http_request(
    target: &str,
    method: &reqwest::Method,
    status: Option<u16>,
    took: Duration,
) {
    let class = match status {
        Some(s) => format!("{}xx", s / 100),
        None => "error".to_owned(),
    };
    histogram!(HTTP_DURATION, "target" => target.to_owned(), "method" => method.to_string(), "status" => class)
        .record(took.as_secs_f64());
}

/// Time one request waited for the rate limiter.
pub(crate) fn rate_limit_wait(target: &str, waited: Duration) {
    histogram!(RATE_LIMIT_WAIT, "target" => target.to_owned()).record(waited.as_secs_f64());
}

/// One token request to an OAuth token endpoint.
pub(crate) fn token_request(target: &str, ok: bool) {
    let result = if ok { "ok" } else { "failed" };
    counter!(TOKEN_REQUESTS, "target" => target.to_owned(), "result" => result).increment(1);
}

/// One operation of a cycle: `action` is what was planned, `status` how it ended.
pub(crate) fn operation(
    target: &str,
    kind: &'static str,
    action: &'static str,
    status: &'static str,
) {
    counter!(OPERATIONS, "target" => target.to_owned(), "kind" => kind, "action" => action, "status" => status)
        .increment(1);
}

/// A finished cycle: whether it left every object in step, and the target's state after it.
pub(crate) fn cycle(target: &str, complete: bool, quarantined: bool, escrow: usize) {
    let result = if complete { "ok" } else { "incomplete" };
    counter!(CYCLES, "target" => target.to_owned(), "result" => result).increment(1);
    gauge!(QUARANTINED, "target" => target.to_owned()).set(if quarantined { 1.0 } else { 0.0 });
    gauge!(ESCROW, "target" => target.to_owned()).set(escrow as f64);
    if complete {
        gauge!(LAST_SUCCESS, "target" => target.to_owned())
            .set(chrono::Utc::now().timestamp() as f64);
    }
}

/// The objects a target's snapshot holds after a cycle.
pub(crate) fn managed(target: &str, users: usize, groups: usize) {
    gauge!(MANAGED, "target" => target.to_owned(), "kind" => "user").set(users as f64);
    gauge!(MANAGED, "target" => target.to_owned(), "kind" => "group").set(groups as f64);
}

/// A cycle that failed before it could run (source outage, state error, bad credentials file).
pub(crate) fn cycle_failed(target: &str) {
    counter!(CYCLES, "target" => target.to_owned(), "result" => "failed").increment(1);
}
