//! The `scimsync` binary: parses the command line, starts logging, runs the command.

use clap::Parser;
use scimsync::cli::{self, Cli, LogFormat};
use tracing_subscriber::EnvFilter;

/// mimalloc rather than glibc's malloc: reading a directory allocates and frees millions of
/// small blocks, which it does markedly faster (docs/benchmarks.md, "LDAP read").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and succeed; a usage error is EX_USAGE.
            let code = if e.use_stderr() { cli::EXIT_USAGE } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let default = cli.log_level.clone().unwrap_or_else(|| "warn".to_owned());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("scimsync: cannot start the async runtime: {e}");
            std::process::exit(cli::EXIT_FATAL);
        }
    };
    let code = runtime.block_on(cli::run(cli));
    std::process::exit(code);
}
