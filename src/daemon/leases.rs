//! Several daemons on one PostgreSQL state: the lease keeper and the requests from other
//! instances.
//!
//! Every third of `lease_seconds` the keeper says this instance is alive, renews the leases it
//! holds (a lease found lost stops its target's scheduler at once), gives targets back when it
//! holds more than its share (the configured targets divided by the live instances, rounded
//! up) and takes free or expired ones up to its share. A target taken from an instance that
//! died runs a cycle at once. Requests (`sync`, `provision`) that another instance received for
//! a target this one owns are taken from `scimsync_request` twice a second and answered there.

use super::{spawn_target, Shared};
use crate::control::{commands, Request, Response, EXIT_FATAL, EXIT_USAGE};
use crate::state::lease::{Fence, LeaseRow};
use crate::state::StateError;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A target this instance owns: its lease and what stops its scheduler.
struct Owned {
    fence: Arc<Fence>,
    stop: CancellationToken,
}

impl Owned {
    /// Stops the target's scheduler here (its lease lost, lapsed or given back).
    fn stop(&self, shared: &Shared, name: &str) {
        self.stop.cancel();
        shared.untrack(name);
    }
}

fn me(shared: &Shared) -> String {
    shared.info.instance.clone().unwrap_or_default()
}

/// Keeps this instance's leases until shutdown, then until its schedulers have ended.
pub(super) async fn keep(shared: Arc<Shared>, tracker: TaskTracker) {
    let mut owned: BTreeMap<String, Owned> = BTreeMap::new();
    loop {
        let stopping = shared.stop.is_cancelled();
        let third = shared.current().state.lease() / 3;
        // A round that hangs (a connection dropped without a word) counts as failed.
        let result = tokio::time::timeout(third, round(&shared, &tracker, &mut owned, stopping))
            .await
            .unwrap_or_else(|_| {
                Err(StateError::Storage(
                    "no answer within a third of lease_seconds".into(),
                ))
            });
        let mut pause = third;
        match result {
            Ok(()) => shared.kept_at.store(
                crate::state::lease::clock(),
                std::sync::atomic::Ordering::SeqCst,
            ),
            Err(e) => {
                tracing::warn!(error = %e, "Cannot reach the PostgreSQL state to keep the leases; a lease not renewed in time stops its target here.");
                drop_lapsed(&shared, &mut owned);
                if shared.store.connection_closed() && !stopping {
                    tracing::error!("The connection to the PostgreSQL state is closed; stopping, for the service manager to start scimsync again.");
                    shared.fail();
                }
                // Again soon: two failed rounds in a row must not cost the leases.
                pause = Duration::from_secs(1).min(third);
            }
        }
        let working = shared.tasks_running() || owned.keys().any(|n| shared.locks.busy(n));
        if stopping && !working {
            return;
        }
        tokio::select! {
            _ = shared.stop.cancelled(), if !stopping => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Refuses to start a second live instance under the same name (`SCIMSYNC_INSTANCE`): the two
/// would take each other's leases.
pub(super) async fn unique(store: &crate::state::Store, name: &str) -> Result<(), String> {
    let live = store.live_instances().await.map_err(|e| e.to_string())?;
    if live.iter().any(|n| n == name) {
        return Err(format!(
            "another scimsync instance named {name:?} is alive on this state (its heartbeat is younger than lease_seconds); give each instance its own SCIMSYNC_INSTANCE, or start this one again after lease_seconds"
        ));
    }
    Ok(())
}

/// Stops the targets whose lease lapsed without renewal.
fn drop_lapsed(shared: &Shared, owned: &mut BTreeMap<String, Owned>) {
    owned.retain(|name, o| {
        let keep = o.fence.valid();
        if !keep {
            tracing::error!(target_name = %name, "The lease on the target lapsed; this instance stops its cycles there.");
            o.stop(shared, name);
            shared.store.forget(&o.fence);
        }
        keep
    });
}

/// One round of the keeper.
async fn round(
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
    owned: &mut BTreeMap<String, Owned>,
    stopping: bool,
) -> Result<(), StateError> {
    let config = shared.current();
    let lease = config.state.lease();
    let store = &shared.store;
    let me = me(shared);
    // Renewals first: they are what keeps the targets.
    for (name, o) in owned.iter() {
        if !store.renew(&o.fence, lease).await? {
            tracing::error!(target_name = %name, epoch = o.fence.epoch(), "Lost the lease on the target to another instance; stopping its cycles here.");
            o.stop(shared, name);
        }
    }
    owned.retain(|_, o| o.fence.valid());
    store.heartbeat(&me, lease).await?;
    if stopping {
        return Ok(());
    }
    let configured: Vec<String> = config.targets.iter().map(|t| t.name.clone()).collect();
    let gone: Vec<String> = owned
        .keys()
        .filter(|n| !configured.contains(n))
        .cloned()
        .collect();
    for name in gone {
        give_back(shared, owned, &name, "it left the configuration").await?;
    }
    store.prune_requests().await?;
    let live = store.live_instances().await?.len().max(1);
    let share = configured.len().div_ceil(live);
    while owned.len() > share {
        // Never a target in the middle of a cycle or command: its lock is held while it is
        // given back, so none starts meanwhile.
        let free = owned
            .keys()
            .find_map(|n| shared.locks.try_lock(n).map(|g| (n.clone(), g)));
        let Some((name, _held)) = free else {
            break;
        };
        let why = format!("{live} instances share {} targets", configured.len());
        give_back(shared, owned, &name, &why).await?;
    }
    if owned.len() >= share {
        return Ok(());
    }
    let leases: BTreeMap<String, LeaseRow> = store
        .leases()
        .await?
        .into_iter()
        .map(|l| (l.target.clone(), l))
        .collect();
    for name in rotated(&configured, &me) {
        if owned.len() >= share {
            break;
        }
        let held = leases.get(&name).filter(|l| l.live && l.owner != me);
        if owned.contains_key(&name) || held.is_some() {
            continue;
        }
        let Some(fence) = store.acquire(&name, &me, lease).await? else {
            continue;
        };
        let before = leases.get(&name).map(|l| l.owner.clone());
        let from = before.filter(|o| !o.is_empty() && o != &me);
        match &from {
            Some(o) => {
                tracing::info!(target_name = %name, epoch = fence.epoch(), from = %o, "Took the target over.")
            }
            None => tracing::info!(target_name = %name, epoch = fence.epoch(), "Owns the target."),
        }
        let stop = shared.stop.child_token();
        spawn_target(shared, tracker, &name, stop.clone(), from.is_some());
        owned.insert(name, Owned { fence, stop });
    }
    Ok(())
}

/// The configured targets, starting at a place that depends on this instance's name: instances
/// starting together try different targets first.
fn rotated(targets: &[String], me: &str) -> Vec<String> {
    if targets.is_empty() {
        return Vec::new();
    }
    let start = me.bytes().fold(0usize, |h, b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    }) % targets.len();
    targets[start..]
        .iter()
        .chain(&targets[..start])
        .cloned()
        .collect()
}

async fn give_back(
    shared: &Shared,
    owned: &mut BTreeMap<String, Owned>,
    name: &str,
    why: &str,
) -> Result<(), StateError> {
    if let Some(o) = owned.remove(name) {
        o.stop(shared, name);
        shared.store.release(&o.fence).await?;
        tracing::info!(target_name = %name, "Gave the target back: {why}.");
    }
    Ok(())
}

/// At shutdown: this instance's row removed and, once nothing runs under them (`finished`),
/// every lease released for the others to take at once. Leases of work abandoned after the
/// grace period are left to expire.
pub(super) async fn leave(shared: &Shared, finished: bool) {
    if !shared.store.shared() {
        return;
    }
    let held = if finished {
        shared.store.held()
    } else {
        tracing::warn!("Leases are left to expire: calls may still be in flight under them.");
        Vec::new()
    };
    for name in held {
        if let Some(fence) = shared.store.fence(&name) {
            if let Err(e) = shared.store.release(&fence).await {
                tracing::warn!(target_name = %name, error = %e, "Cannot release the lease; another instance takes the target after it expires.");
            }
        }
    }
    if let Err(e) = shared.store.leave(&me(shared)).await {
        tracing::warn!(error = %e, "Cannot remove this instance from the PostgreSQL state.");
    }
}

/// How often the requests of other instances are looked for.
const REQUESTS_EVERY: Duration = Duration::from_millis(500);

/// Answers the requests other instances received for the targets this one owns.
pub(super) async fn serve_requests(shared: Arc<Shared>, tracker: TaskTracker) {
    let me = me(&shared);
    loop {
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            _ = tokio::time::sleep(REQUESTS_EVERY) => {}
        }
        let held: Vec<String> = shared
            .store
            .held()
            .into_iter()
            .filter(|t| shared.store.fence(t).is_some_and(|f| f.valid()))
            .collect();
        let taken = match shared.store.take_requests(&held, &me).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot read the requests of other instances.");
                continue;
            }
        };
        for q in taken {
            let s = shared.clone();
            tracker.spawn(async move {
                let response = match serde_json::from_str::<Request>(&q.request) {
                    Ok(r) if about(&r) == Some(q.target.as_str()) => {
                        tracing::info!(request = ?r, "Request from another instance.");
                        let ctx = s.ctx();
                        // A command that fails by panicking still gets an answer.
                        tokio::spawn(async move { commands::execute(&ctx, r).await })
                            .await
                            .unwrap_or_else(|e| {
                                Response::failed(EXIT_FATAL, format!("the command stopped: {e}"))
                            })
                    }
                    _ => Response::failed(EXIT_USAGE, "not a sync or provision of one target"),
                };
                answer(&s, q.id, &response).await;
            });
        }
    }
}

/// Writes the answer to a forwarded request, trying a few times: the requester waits for it.
async fn answer(shared: &Shared, id: i64, response: &Response) {
    let reply = serde_json::to_string(response).unwrap_or_default();
    for attempt in 1..=5u32 {
        match shared.store.answer(id, &reply).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, attempt, "Cannot answer a request of another instance.");
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
            }
        }
    }
}

/// The one target a forwarded request is about.
fn about(r: &Request) -> Option<&str> {
    match r {
        Request::Sync {
            target,
            dry_run: false,
            ..
        }
        | Request::Provision {
            target,
            dry_run: false,
            ..
        } => target.as_deref(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_start_at_different_targets_and_cover_all() {
        let targets: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let one = rotated(&targets, "host-1:100");
        let mut sorted = one.clone();
        sorted.sort();
        assert_eq!(sorted, targets);
        let starts: std::collections::BTreeSet<String> = (0..20)
            .map(|i| rotated(&targets, &format!("host:{i}"))[0].clone())
            .collect();
        assert!(starts.len() > 1, "{starts:?}");
        assert!(rotated(&[], "x").is_empty());
    }

    #[test]
    fn only_a_real_sync_or_provision_of_one_target_is_forwarded() {
        let sync = |target: Option<&str>, dry_run| Request::Sync {
            full: false,
            target: target.map(String::from),
            dry_run,
            allow_deletes: false,
            allow_clears: false,
        };
        assert_eq!(about(&sync(Some("a"), false)), Some("a"));
        assert_eq!(about(&sync(None, false)), None);
        assert_eq!(about(&sync(Some("a"), true)), None);
        assert_eq!(about(&Request::Status), None);
    }
}
