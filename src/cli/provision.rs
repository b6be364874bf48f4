//! `scimsync provision USER`: one user now, printed step by step as Entra ID's
//! provision-on-demand does (import, scope, match, action, group memberships).

use super::control::Ctx;
use super::{err, out, read_source, EXIT_FATAL, EXIT_OK, EXIT_PARTIAL};
use crate::engine::provision::{self, ProvisionReport, Who};
use crate::ids::TargetName;
use crate::source;

pub async fn provision(ctx: &Ctx, user: &str, only: Option<&str>, dry_run: bool) -> i32 {
    let config = &*ctx.config;
    let targets = match super::select_targets(config, only) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let dir = match read_source(config).await {
        Ok(d) => d,
        Err(code) => return code,
    };
    let mut code = EXIT_OK;
    for target in targets {
        let _cycle = ctx.locks.lock(&target.name).await;
        let by_source = source::find_in(&dir, user);
        let who = match by_source {
            Some(u) => Who::Source(u),
            None => {
                let snapshot = match ctx.store.snapshot(&TargetName(target.name.clone())) {
                    Ok(s) => s,
                    Err(e) => {
                        err!("{e}");
                        return EXIT_FATAL;
                    }
                };
                match provision::find_by_user_name(&dir, config, &target, &snapshot, user) {
                    Ok(Some(id)) => match dir.users.iter().find(|u| u.id == id) {
                        Some(u) => Who::Source(u),
                        None => Who::Managed(id),
                    },
                    Ok(None) => {
                        err!(
                            "target {:?}: no user {user:?}: not an objectId, mail, userPrincipalName or mailNickname in the source, nor a userName on this target",
                            target.name
                        );
                        code = code.max(EXIT_PARTIAL);
                        continue;
                    }
                    Err(e) => {
                        err!("target {:?}: {e}", target.name);
                        code = EXIT_FATAL;
                        continue;
                    }
                }
            }
        };
        match provision::provision(&dir, who, config, &target, &ctx.store, dry_run, &ctx.stop).await
        {
            Ok(report) => {
                print_report(&report, dry_run);
                if report.failed {
                    code = code.max(EXIT_PARTIAL);
                }
            }
            Err(e) => {
                err!("target {:?}: {e}", target.name);
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
