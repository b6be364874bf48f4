//! `scimsync provision USER` rendered: one user, step by step as Entra ID's
//! provision-on-demand shows it (import, scope, match, action, group memberships).

use super::{err, out, EXIT_FATAL, EXIT_OK, EXIT_PARTIAL};
use crate::control::{ProvisionOutcome, ProvisionRun};
use crate::engine::provision::ProvisionReport;

/// Prints each target's report; returns the exit code.
pub(super) fn render(runs: &[ProvisionRun], dry_run: bool) -> i32 {
    let mut code = EXIT_OK;
    for run in runs {
        match &run.outcome {
            ProvisionOutcome::Done { report } => {
                print_report(report, dry_run);
                if report.failed {
                    code = code.max(EXIT_PARTIAL);
                }
            }
            ProvisionOutcome::NotFound { error } => {
                err!("target {:?}: {}", run.target, crate::text::escape(error));
                code = code.max(EXIT_PARTIAL);
            }
            ProvisionOutcome::Failed { error } => {
                err!("target {:?}: {}", run.target, crate::text::escape(error));
                code = EXIT_FATAL;
            }
        }
    }
    code
}

fn print_report(r: &ProvisionReport, dry_run: bool) {
    out!(
        "target {:?}: provision user {}{}",
        r.target,
        r.object_id.as_deref().unwrap_or("?"),
        if dry_run { " (dry run)" } else { "" }
    );
    out!("1. Import");
    r.import.iter().for_each(|l| out!("   {l}"));
    out!("2. Scope");
    r.scope.iter().for_each(|l| out!("   {l}"));
    out!("3. Match");
    r.matching.iter().for_each(|l| out!("   {l}"));
    match &r.reason {
        Some(why) => out!("4. Action: {} ({why})", r.action),
        None => out!("4. Action: {}", r.action),
    }
    r.changes.iter().for_each(|l| out!("   {l}"));
    if let Some(result) = &r.result {
        out!("   result: {result}");
    }
    if !r.groups.is_empty() {
        out!("5. Group memberships");
        r.groups.iter().for_each(|l| out!("   {l}"));
    }
}
