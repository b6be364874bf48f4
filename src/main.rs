//! The `scimsync` binary: parses the command line, starts logging, runs the command.

use clap::Parser;
use scimsync::cli::{self, Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

/// mimalloc rather than glibc's malloc: reading a directory allocates and frees millions of
/// small blocks, which it does markedly faster (docs/benchmarks.md, "LDAP read").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What the daemon writes at the default level: its own life (start, one line per cycle,
/// reloads) and every warning; one record per decision needs `--log-level info`.
const DAEMON_DEFAULT: &str = "warn,scimsync::daemon=info";

/// Logs to the journal under systemd (with priorities it understands), else to standard
/// error, coloured only on a terminal. `--log-format json` always writes JSON lines.
fn init_logging(cli: &Cli) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::prelude::*;
    let default = match (&cli.log_level, &cli.command) {
        (Some(level), _) => level.clone(),
        (None, Command::Run) => DAEMON_DEFAULT.to_owned(),
        (None, _) => "warn".to_owned(),
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some();
    if under_systemd && cli.log_format == LogFormat::Text {
        if let Ok(journal) = tracing_journald::layer() {
            tracing_subscriber::registry()
                .with(filter)
                .with(journal.with_syslog_identifier("scimsync".into()))
                .init();
            return;
        }
    }
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

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
    init_logging(&cli);
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
