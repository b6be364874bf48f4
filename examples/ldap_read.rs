//! Reads the configured source once and prints what it returned and how long the read took;
//! `scripts/bench-ldap` times it next to `ldapsearch` (docs/benchmarks.md, "LDAP read").
//!
//! `cargo run --release --example ldap_read -- scimsync.toml [ROUNDS]`

use std::time::Instant;

/// The allocator of the `scimsync` binary (src/main.rs), so that the benchmark measures what
/// ships.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: ldap_read CONFIG [ROUNDS]");
        std::process::exit(64);
    };
    // RUST_LOG=scimsync=debug shows when each search ends.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let rounds: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1);
    let config = scimsync::config::Config::load(std::path::Path::new(&path)).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(64)
    });
    let source =
        scimsync::source::build(&config.source, config.max_value_bytes).unwrap_or_else(|e| {
            eprintln!("source: {e}");
            std::process::exit(2)
        });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    for _ in 0..rounds {
        let started = Instant::now();
        let dir = runtime.block_on(source.read()).unwrap_or_else(|e| {
            eprintln!("source: {e}");
            std::process::exit(2)
        });
        let members: usize = dir.groups.iter().map(|g| g.members.len()).sum();
        println!(
            "{} users, {} groups, {} memberships in {:.3} s",
            dir.users.len(),
            dir.groups.len(),
            members,
            started.elapsed().as_secs_f64()
        );
    }
}
