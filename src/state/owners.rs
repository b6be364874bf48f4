//! What the store offers several instances (PostgreSQL only): the leases this process holds,
//! the instances alive, and the requests one instance passes to the owner of a target. On sled
//! (one process holds the whole state) every target is this process's and none of this is used.

use super::lease::{Fence, Gate, LeaseRow, Queued, RequestState};
use super::{StateError, Store};
use std::sync::Arc;
use std::time::Duration;

impl Store {
    /// Whether several processes share this state, each target written only by its owner.
    pub fn shared(&self) -> bool {
        self.pg.is_some() && !self.exclusive
    }

    /// The lease this process holds on `target`, if any (lapsed or not).
    pub fn fence(&self, target: &str) -> Option<Arc<Fence>> {
        self.fences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(target)
            .cloned()
    }

    /// What a client of `target` may send: anything (one process holds the state), under
    /// this process's lease, or nothing (the state is shared and the lease is not ours).
    pub fn gate(&self, target: &str) -> Gate {
        if !self.shared() {
            return Gate::Open;
        }
        match self.fence(target) {
            Some(f) => Gate::Held(f),
            None => Gate::Refused,
        }
    }

    /// The targets this process holds a lease on.
    pub fn held(&self) -> Vec<String> {
        self.fences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Whether the connection to the PostgreSQL state closed (the server restarted, say): it is
    /// not opened again; the daemon stops for its service manager to start it afresh.
    pub fn connection_closed(&self) -> bool {
        self.pg.as_ref().is_some_and(|p| p.client.is_closed())
    }

    fn pg(&self) -> Result<&super::pg::Pg, StateError> {
        self.pg
            .as_deref()
            .ok_or_else(|| StateError::Storage("leases need the PostgreSQL state".into()))
    }

    /// Takes the lease on `target` for `owner` if nobody else holds it; from then on the
    /// target's trees are written under it.
    pub async fn acquire(
        &self,
        target: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Arc<Fence>>, StateError> {
        let Some(fence) = self.pg()?.acquire(target, owner, lease).await? else {
            return Ok(None);
        };
        let fence = Arc::new(fence);
        self.fences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(target.to_owned(), fence.clone());
        Ok(Some(fence))
    }

    /// Renews a lease; false (and the lease forgotten) when it was lost.
    pub async fn renew(&self, fence: &Arc<Fence>, lease: Duration) -> Result<bool, StateError> {
        let kept = self.pg()?.renew(fence, lease).await?;
        if !kept {
            self.forget(fence);
        }
        Ok(kept)
    }

    /// Gives a lease up.
    pub async fn release(&self, fence: &Arc<Fence>) -> Result<(), StateError> {
        self.forget(fence);
        self.pg()?.release(fence).await
    }

    /// Stops writing under a lease (lost or released).
    pub fn forget(&self, fence: &Arc<Fence>) {
        fence.lose();
        let mut fences = self.fences.lock().unwrap_or_else(|p| p.into_inner());
        if fences
            .get(&fence.target)
            .is_some_and(|f| Arc::ptr_eq(f, fence))
        {
            fences.remove(&fence.target);
        }
    }

    /// Every target's lease as the database holds it.
    pub async fn leases(&self) -> Result<Vec<LeaseRow>, StateError> {
        self.pg()?.leases().await
    }

    pub async fn heartbeat(&self, name: &str, lease: Duration) -> Result<(), StateError> {
        self.pg()?.heartbeat(name, lease).await
    }

    pub async fn live_instances(&self) -> Result<Vec<String>, StateError> {
        self.pg()?.live_instances().await
    }

    pub async fn leave(&self, name: &str) -> Result<(), StateError> {
        self.pg()?.leave(name).await
    }

    pub async fn submit(&self, target: &str, request: &str) -> Result<i64, StateError> {
        self.pg()?.submit(target, request).await
    }

    pub async fn take_requests(
        &self,
        targets: &[String],
        owner: &str,
    ) -> Result<Vec<Queued>, StateError> {
        self.pg()?.take_requests(targets, owner).await
    }

    pub async fn answer(&self, id: i64, reply: &str) -> Result<(), StateError> {
        self.pg()?.answer(id, reply).await
    }

    pub async fn request_state(&self, id: i64) -> Result<Option<RequestState>, StateError> {
        self.pg()?.request_state(id).await
    }

    pub async fn prune_requests(&self) -> Result<u64, StateError> {
        self.pg()?.prune_requests().await
    }

    pub async fn forget_untaken(&self, id: i64) -> Result<bool, StateError> {
        self.pg()?.forget_untaken(id).await
    }

    pub async fn forget_request(&self, id: i64) -> Result<(), StateError> {
        self.pg()?.forget_request(id).await
    }
}
