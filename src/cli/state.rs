//! `scimsync state export` and `state import`: the whole state as JSON lines (format in
//! docs/operating.md#export-and-import). An import runs while no other scimsync process uses
//! the state; an export of a PostgreSQL state may run beside the instances.

use super::{err, EXIT_FATAL, EXIT_OK, EXIT_USAGE};
use crate::state::{dump, StateError, Store};
use std::io::{BufReader, Write};
use std::path::Path;

/// What `scimsync state` does.
#[derive(Debug, clap::Subcommand)]
pub enum StateAction {
    /// Write the whole state (snapshots, provisioning log, escrow, quarantine, what was
    /// learned about each target) as JSON lines, to a file (made owner-only) or stdout.
    Export {
        /// The file to write; stdout when not given.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
    /// Read an export into the configured state directory, which must hold nothing yet.
    Import { file: std::path::PathBuf },
}

pub(super) async fn run(path: &Path, action: StateAction) -> i32 {
    let config = match super::load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // An import writes every target's trees: nobody else may use the state meanwhile. An
    // export of a PostgreSQL state only reads, beside running instances.
    let opened = match action {
        StateAction::Import { .. } => Store::open_exclusive(&config.state),
        StateAction::Export { .. } => Store::open_state(&config.state),
    };
    let store = match opened {
        Ok(s) => s,
        Err(e @ StateError::Locked { .. }) => {
            err!("{e}; stop it first (systemctl stop scimsync, on every instance): an import must not run beside a cycle");
            return EXIT_FATAL;
        }
        Err(e) => {
            err!("{e}");
            return EXIT_FATAL;
        }
    };
    let state = config.state.path.display();
    match action {
        StateAction::Export { output } => match export(&store, output.as_deref()) {
            Ok(n) => {
                let to = output.map_or("stdout".to_owned(), |p| p.display().to_string());
                err!("exported {n} entries of {state} to {to}");
                EXIT_OK
            }
            Err(e) => {
                err!("{e}");
                EXIT_FATAL
            }
        },
        StateAction::Import { file } => {
            let open = || -> std::io::Result<Box<dyn std::io::BufRead>> {
                Ok(Box::new(BufReader::new(std::fs::File::open(&file)?)))
            };
            let imported = match dump::import(&store, &open) {
                Ok(n) => store
                    .flush()
                    .await
                    .map(|()| n)
                    .map_err(dump::DumpError::from),
                Err(e) => Err(e),
            };
            match imported {
                Ok(n) => {
                    err!("imported {n} entries from {} into {state}", file.display());
                    EXIT_OK
                }
                Err(e @ dump::DumpError::NotEmpty { .. }) => {
                    err!("{e}");
                    EXIT_USAGE
                }
                Err(e) => {
                    err!("{}: {e}", file.display());
                    EXIT_FATAL
                }
            }
        }
    }
}

/// The export, to `output` (created owner-only: it holds personal data) or stdout.
fn export(store: &Store, output: Option<&Path>) -> Result<usize, dump::DumpError> {
    match output {
        Some(p) => {
            use std::os::unix::fs::OpenOptionsExt;
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(p)
                .map_err(dump::DumpError::Write)?;
            let mut out = std::io::BufWriter::new(file);
            let n = dump::export(store, &mut out)?;
            out.flush().map_err(dump::DumpError::Write)?;
            Ok(n)
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            dump::export(store, &mut out)
        }
    }
}
