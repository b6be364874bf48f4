//! Where a command that changes a target runs when several instances share a PostgreSQL state:
//! here, when this process owns the target (or, outside a daemon, can take its lease for the
//! command), or else in the target's owner, reached through a request row the owner answers.
//! A plan, `status` and `logs` only read, and run anywhere.

use super::{Ctx, Request, Response};
use crate::state::lease::{instance_name, Fence};
use crate::state::Store;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Where a target's command runs.
pub(crate) enum Place {
    /// In this process. A lease taken for this command alone is released after it.
    Here(Option<Borrowed>),
    /// In the owner's process.
    Owner,
}

/// A lease a command-line process took for one command, renewed while the command runs.
pub(crate) struct Borrowed {
    fence: Arc<Fence>,
    renewer: JoinHandle<()>,
}

/// Decides where `target`'s command runs.
pub(crate) async fn place(ctx: &Ctx, target: &str) -> Result<Place, String> {
    let store = &ctx.store;
    if !store.shared() || store.fence(target).is_some_and(|f| f.valid()) {
        return Ok(Place::Here(None));
    }
    if ctx.daemon.is_some() {
        // A daemon takes targets only through its lease keeper, never for one command.
        return Ok(Place::Owner);
    }
    let lease = ctx.config.state.lease();
    let me = format!("{} (command line)", instance_name());
    match store.acquire(target, &me, lease).await {
        Ok(Some(fence)) => Ok(Place::Here(Some(Borrowed {
            renewer: tokio::spawn(renew(store.clone(), fence.clone(), lease)),
            fence,
        }))),
        Ok(None) => held_by_a_daemon(store, target).await.map(|()| Place::Owner),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether the live lease on `target` is a daemon's (which answers forwarded requests) rather
/// than another command's, which would never answer.
async fn held_by_a_daemon(store: &Store, target: &str) -> Result<(), String> {
    let leases = store.leases().await.map_err(|e| e.to_string())?;
    let Some(lease) = leases.into_iter().find(|l| l.target == target && l.live) else {
        return Ok(());
    };
    let daemons = store.live_instances().await.map_err(|e| e.to_string())?;
    if daemons.contains(&lease.owner) {
        return Ok(());
    }
    Err(format!(
        "target {target} is held by {} until {}: another command that runs (or stopped less than lease_seconds ago); run this one after it",
        crate::text::escape(&lease.owner),
        lease.expires_at
    ))
}

async fn renew(store: Arc<Store>, fence: Arc<Fence>, lease: Duration) {
    loop {
        tokio::time::sleep(lease / 3).await;
        match store.renew(&fence, lease).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(target_name = %fence.target, "The lease on the target was lost; this command writes nothing more.");
                return;
            }
            Err(e) => {
                tracing::warn!(target_name = %fence.target, error = %e, "Cannot renew the lease on the target.")
            }
        }
    }
}

impl Drop for Borrowed {
    /// However the command ends, the lease is renewed no more (it expires if not released).
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Gives back a lease taken for one command.
pub(crate) async fn give_back(store: &Store, borrowed: Option<Borrowed>) {
    if let Some(b) = borrowed {
        b.renewer.abort();
        if let Err(e) = store.release(&b.fence).await {
            tracing::warn!(target_name = %b.fence.target, error = %e, "Cannot release the lease; another instance takes the target after it expires.");
        }
    }
}

/// How often a forwarded request is looked at.
const POLL: Duration = Duration::from_millis(200);

/// Runs `request` (about `target` only) in the target's owner and returns its answer and the
/// instance that gave it.
async fn forward(ctx: &Ctx, target: &str, request: &Request) -> Result<(Response, String), String> {
    let store = &ctx.store;
    let text = serde_json::to_string(request).map_err(|e| e.to_string())?;
    let id = store
        .submit(target, &text)
        .await
        .map_err(|e| e.to_string())?;
    let result = wait(ctx, target, id).await;
    if let Err(e) = store.forget_request(id).await {
        tracing::warn!(error = %e, "Cannot remove a forwarded request.");
    }
    result
}

/// Runs `request` (about `target` only) in the target's owner and returns the one run its
/// answer holds (taken out by `runs`) and the owner's name, escaped; any other answer is the
/// error.
pub(crate) async fn forward_one<T>(
    ctx: &Ctx,
    target: &str,
    request: &Request,
    runs: impl FnOnce(Response) -> Option<Vec<T>>,
) -> Result<(T, String), String> {
    let (response, by) = forward(ctx, target, request).await?;
    let by = crate::text::escape(&by);
    if let Response::Failed { errors, .. } = &response {
        return Err(format!("instance {by}: {}", errors.join("; ")));
    }
    match runs(response) {
        Some(runs) => runs
            .into_iter()
            .next()
            .map(|run| (run, by.clone()))
            .ok_or_else(|| format!("instance {by} answered without this target")),
        None => Err(format!("instance {by} answered another command")),
    }
}

async fn wait(ctx: &Ctx, target: &str, id: i64) -> Result<(Response, String), String> {
    let store = &ctx.store;
    let lease = ctx.config.state.lease();
    let asked = Instant::now();
    loop {
        tokio::select! {
            _ = ctx.stop.cancelled() => return Err("stopped while the owner ran it".into()),
            _ = tokio::time::sleep(POLL) => {}
        }
        let state = store
            .request_state(id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the request was removed before it was answered")?;
        if let Some(reply) = state.reply {
            let by = state.taken_by.unwrap_or_default();
            return serde_json::from_str(&reply)
                .map(|r| (r, by))
                .map_err(|e| format!("the owner's answer is unreadable: {e}"));
        }
        match state.taken_by {
            Some(owner)
                if !store
                    .live_instances()
                    .await
                    .map_err(|e| e.to_string())?
                    .contains(&owner) =>
            {
                return Err(format!(
                    "instance {owner} stopped while running it; the instance taking target {target} over runs a cycle at once (see scimsync status)"
                ))
            }
            Some(_) => {}
            // Given up only if it is still nobody's: an owner may take it at the last moment.
            None if asked.elapsed() > 3 * lease
                && store.forget_untaken(id).await.map_err(|e| e.to_string())? =>
            {
                let holder = store
                    .leases()
                    .await
                    .ok()
                    .and_then(|l| l.into_iter().find(|l| l.target == target && l.live))
                    .map_or("nobody".to_owned(), |l| l.owner);
                return Err(format!(
                    "no instance took the request within {} s (target {target} is held by {holder}); is a scimsync daemon running with this target configured?",
                    (3 * lease).as_secs()
                ));
            }
            None => {}
        }
    }
}
