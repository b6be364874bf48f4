//! Sends N requests through scimsync's own SCIM client (rate limit, burst and concurrency as
//! configured for the first target) and prints the rate achieved after the burst;
//! `scripts/bench-rate` runs it at several rates (docs/benchmarks.md, "Rate limiter").
//!
//! `cargo run --release --example rate_limit -- scimsync.toml REQUESTS`

use futures::StreamExt;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(n)) = (
        args.next(),
        args.next().and_then(|n| n.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: rate_limit CONFIG REQUESTS");
        std::process::exit(64);
    };
    let config = scimsync::config::Config::load(std::path::Path::new(&path)).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(64)
    });
    let Some(target) = config.targets.first() else {
        eprintln!("no target configured");
        std::process::exit(64)
    };
    let profile = std::sync::Arc::new(scimsync::scim::Profile::fresh(
        target.compat.clone(),
        &target.url,
    ));
    let client = scimsync::scim::Client::new(target, profile).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let burst = target.burst.unwrap_or(target.rate_limit) as usize;
    let spc = scimsync::scim::Route::at("ServiceProviderConfig");
    let started = Instant::now();
    let failures = runtime.block_on(async {
        futures::stream::iter(0..n)
            .map(|_| client.probe(&spc))
            .buffer_unordered(target.concurrency)
            .filter(|r| std::future::ready(r.is_err()))
            .count()
            .await
    });
    let took = started.elapsed().as_secs_f64();
    // The first `burst` requests may go at once; the rest are paced at `rate_limit`.
    let paced = n.saturating_sub(burst) as f64;
    let rate = paced / took;
    let configured = f64::from(target.rate_limit);
    println!(
        "configured {configured:.0}/s (burst {burst}, concurrency {}): {n} requests in {took:.3} s, \
         {rate:.1}/s after the burst, {:+.1}% ({failures} failed)",
        target.concurrency,
        (rate / configured - 1.0) * 100.0
    );
}
