//! Pacing and retrying the calls to one target: the `governor` rate limit with its burst, a
//! shared "not before" instant that a 429 pushes back for every request, and the `backoff`
//! policy of one operation.

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How long a 429 without `Retry-After` holds every request to the target.
pub const DEFAULT_THROTTLE: Duration = Duration::from_secs(1);

/// Paces every request to one target.
pub struct Pacer {
    limiter: DefaultDirectRateLimiter,
    not_before: Mutex<Option<Instant>>,
}

impl Pacer {
    /// `rate` requests per second, of which `burst` may go at once after an idle spell.
    pub fn new(rate: u32, burst: u32) -> Pacer {
        let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        Pacer {
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            not_before: Mutex::new(None),
        }
    }

    /// Waits until the target may receive one more request.
    pub async fn ready(&self) {
        loop {
            let until = *self.not_before.lock().unwrap_or_else(|p| p.into_inner());
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t).await,
                _ => break,
            }
        }
        self.limiter.until_ready().await;
    }

    /// Holds every request to the target for `wait` (a 429 said the target is overwhelmed).
    /// The caller bounds `wait`; an instant beyond the clock's range holds for a day.
    pub fn throttle(&self, wait: Duration) {
        let now = Instant::now();
        let until = now
            .checked_add(wait)
            .unwrap_or_else(|| now + Duration::from_secs(86_400));
        let mut nb = self.not_before.lock().unwrap_or_else(|p| p.into_inner());
        if nb.is_none_or(|t| t < until) {
            *nb = Some(until);
        }
    }
}

/// The retry policy of one operation: exponential with jitter, giving up after `max_elapsed`.
pub fn policy(max_elapsed: Duration) -> backoff::ExponentialBackoff {
    backoff::ExponentialBackoffBuilder::new()
        .with_initial_interval(Duration::from_millis(200))
        .with_randomization_factor(0.5)
        .with_multiplier(2.0)
        .with_max_interval(Duration::from_secs(10))
        .with_max_elapsed_time(Some(max_elapsed))
        .build()
}

/// The wait a `Retry-After` header asks for: seconds, or an HTTP date (RFC 9110 §10.2.3).
/// Any number is read (the caller bounds it); a date in the past is no wait.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let wait = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn the_rate_holds_after_the_burst() {
        // 50 per second with a burst of 5: 5 at once, then 20 more take at least 0.4 s. Only
        // the lower bound is asserted (the target is never sent more than the rate); how close
        // to it a loaded machine gets is measured by scripts/bench, not by a test.
        let pacer = Pacer::new(50, 5);
        let start = std::time::Instant::now();
        for _ in 0..25 {
            pacer.ready().await;
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(370), "{took:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_throttle_holds_every_request_and_never_shortens() {
        let pacer = Pacer::new(1000, 1000);
        pacer.throttle(Duration::from_millis(300));
        pacer.throttle(Duration::from_millis(10));
        let start = Instant::now();
        pacer.ready().await;
        pacer.ready().await;
        assert!(
            start.elapsed() >= Duration::from_millis(290),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn retry_after_in_seconds_or_http_date() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().expect("header"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "18446744073709551615".parse().expect("header"),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(u64::MAX)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        h.insert(reqwest::header::RETRY_AFTER, later.parse().expect("header"));
        let d = retry_after(&h).expect("date");
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_throttle_beyond_the_clock_does_not_panic() {
        let pacer = Pacer::new(10, 10);
        pacer.throttle(Duration::from_secs(u64::MAX));
        let waited = tokio::time::timeout(Duration::from_millis(50), pacer.ready()).await;
        assert!(waited.is_err(), "held");
    }

    #[test]
    fn the_policy_gives_up_after_its_budget() {
        use backoff::backoff::Backoff;
        let mut p = policy(Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(p.next_backoff(), None);
    }
}
