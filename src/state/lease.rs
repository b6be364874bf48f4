//! Several instances on one PostgreSQL state: each target has one owner at a time, through a
//! lease row that its owner renews (`scimsync_lease`); every write of a target's trees is
//! fenced by the owner's lease epoch, so an owner that was paused past its lease writes nothing
//! once another instance took the target over.
//!
//! A [`Fence`] is what an owner holds: the lease's epoch, and until when (by this process's
//! monotonic clock) the lease is surely held. The local deadline is taken before the renewal is
//! sent, so it ends no later than the database's `expires_at`: an owner resumed after a pause
//! knows its lease lapsed before it sends anything.

pub(crate) use super::fence::clock;
pub use super::fence::{Fence, Gate};
use super::pg::{storage, Pg};
use super::StateError;
use std::time::Duration;

/// One target's lease as the database holds it, for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub target: String,
    pub owner: String,
    pub epoch: i64,
    /// RFC 3339.
    pub expires_at: String,
    /// The lease has not expired.
    pub live: bool,
}

/// A request waiting for (or answered by) the owner of its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub id: i64,
    pub target: String,
    pub request: String,
}

/// What the requester sees of its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestState {
    pub taken_by: Option<String>,
    pub reply: Option<String>,
}

/// This process's name among the instances: `$SCIMSYNC_INSTANCE`, or `host:pid`.
pub fn instance_name() -> String {
    if let Some(name) = std::env::var("SCIMSYNC_INSTANCE")
        .ok()
        .filter(|n| !n.trim().is_empty())
    {
        return name.trim().to_owned();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

fn interval_ms(lease: Duration) -> f64 {
    lease.as_millis() as f64
}

impl Pg {
    /// Takes the target's lease if it is free or expired: a new epoch. Never a live lease, not
    /// even one under this owner's name. A lease that expired (its owner died or was cut off,
    /// rather than giving it back) is taken with a hold of a third of `lease` before the first
    /// write: with the owner's own margin, the calls it sent last have two thirds of the lease
    /// to land first.
    pub(crate) async fn acquire(
        &self,
        target: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Fence>, StateError> {
        let asked = clock();
        let row = self
            .client
            .query_opt(
                "WITH before AS (SELECT expires_at FROM scimsync_lease WHERE target = $1) \
                 INSERT INTO scimsync_lease (target, owner, epoch, expires_at) \
                 VALUES ($1, $2, 1, now() + $3 * interval '1 millisecond') \
                 ON CONFLICT (target) DO UPDATE SET owner = EXCLUDED.owner, \
                   epoch = scimsync_lease.epoch + 1, expires_at = EXCLUDED.expires_at \
                 WHERE scimsync_lease.expires_at <= now() \
                 RETURNING epoch, \
                   COALESCE((SELECT expires_at <> '-infinity' FROM before), false)",
                &[&target, &owner, &interval_ms(lease)],
            )
            .await
            .map_err(storage)?;
        Ok(row.map(|r| {
            let expired: bool = r.get(1);
            let hold = if expired { lease / 3 } else { Duration::ZERO };
            Fence::new(target, owner, r.get(0), asked, lease, hold)
        }))
    }

    /// Renews a held lease; false when it is no longer this fence's (taken over, released).
    pub(crate) async fn renew(&self, fence: &Fence, lease: Duration) -> Result<bool, StateError> {
        let asked = clock();
        let n = self
            .client
            .execute(
                "UPDATE scimsync_lease SET expires_at = now() + $4 * interval '1 millisecond' \
                 WHERE target = $1 AND owner = $2 AND epoch = $3 AND expires_at > now()",
                &[
                    &fence.target,
                    &fence.owner,
                    &fence.epoch,
                    &interval_ms(lease),
                ],
            )
            .await
            .map_err(storage)?;
        if n == 1 {
            fence.extend(asked, lease);
            Ok(true)
        } else {
            fence.lose();
            Ok(false)
        }
    }

    /// Gives a lease up at once, for another instance to take.
    pub(crate) async fn release(&self, fence: &Fence) -> Result<(), StateError> {
        fence.lose();
        self.client
            .execute(
                "UPDATE scimsync_lease SET expires_at = '-infinity' \
                 WHERE target = $1 AND owner = $2 AND epoch = $3",
                &[&fence.target, &fence.owner, &fence.epoch],
            )
            .await
            .map(|_| ())
            .map_err(storage)
    }

    /// Every target's lease.
    pub(crate) async fn leases(&self) -> Result<Vec<LeaseRow>, StateError> {
        let rows = self
            .client
            .query(
                "SELECT target, owner, epoch, \
                   to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                   expires_at > now() \
                 FROM scimsync_lease ORDER BY target",
                &[],
            )
            .await
            .map_err(storage)?;
        Ok(rows
            .iter()
            .map(|r| LeaseRow {
                target: r.get(0),
                owner: r.get(1),
                epoch: r.get(2),
                expires_at: r.get::<_, Option<String>>(3).unwrap_or_default(),
                live: r.get(4),
            })
            .collect())
    }

    /// Says this instance is alive for another `lease`.
    pub(crate) async fn heartbeat(&self, name: &str, lease: Duration) -> Result<(), StateError> {
        self.client
            .execute(
                "INSERT INTO scimsync_instance (name, started_at, expires_at) \
                 VALUES ($1, now(), now() + $2 * interval '1 millisecond') \
                 ON CONFLICT (name) DO UPDATE SET expires_at = EXCLUDED.expires_at",
                &[&name, &interval_ms(lease)],
            )
            .await
            .map(|_| ())
            .map_err(storage)
    }

    /// The daemons alive now (their heartbeat not expired), by name.
    pub(crate) async fn live_instances(&self) -> Result<Vec<String>, StateError> {
        let rows = self
            .client
            .query(
                "SELECT name FROM scimsync_instance WHERE expires_at > now() ORDER BY name",
                &[],
            )
            .await
            .map_err(storage)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// This instance stops: its row goes (its leases were released one by one).
    pub(crate) async fn leave(&self, name: &str) -> Result<(), StateError> {
        self.client
            .execute("DELETE FROM scimsync_instance WHERE name = $1", &[&name])
            .await
            .map(|_| ())
            .map_err(storage)
    }

    /// Queues a request for the owner of `target`; returns its id.
    pub(crate) async fn submit(&self, target: &str, request: &str) -> Result<i64, StateError> {
        let row = self
            .client
            .query_one(
                "INSERT INTO scimsync_request (target, request) VALUES ($1, $2) RETURNING id",
                &[&target, &request],
            )
            .await
            .map_err(storage)?;
        Ok(row.get(0))
    }

    /// Takes the waiting requests of the targets this instance owns, oldest first.
    pub(crate) async fn take_requests(
        &self,
        targets: &[String],
        owner: &str,
    ) -> Result<Vec<Queued>, StateError> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .client
            .query(
                "UPDATE scimsync_request SET taken_by = $2 WHERE id IN ( \
                   SELECT id FROM scimsync_request WHERE taken_by IS NULL AND target = ANY($1) \
                   ORDER BY id FOR UPDATE SKIP LOCKED) \
                 RETURNING id, target, request",
                &[&targets, &owner],
            )
            .await
            .map_err(storage)?;
        let mut out: Vec<Queued> = rows
            .iter()
            .map(|r| Queued {
                id: r.get(0),
                target: r.get(1),
                request: r.get(2),
            })
            .collect();
        out.sort_by_key(|q| q.id);
        Ok(out)
    }

    /// The owner's answer to a request.
    pub(crate) async fn answer(&self, id: i64, reply: &str) -> Result<(), StateError> {
        self.client
            .execute(
                "UPDATE scimsync_request SET reply = $2 WHERE id = $1",
                &[&id, &reply],
            )
            .await
            .map(|_| ())
            .map_err(storage)
    }

    /// Where a request is: who took it, and its answer once there is one. None when it is
    /// gone.
    pub(crate) async fn request_state(&self, id: i64) -> Result<Option<RequestState>, StateError> {
        let row = self
            .client
            .query_opt(
                "SELECT taken_by, reply FROM scimsync_request WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(storage)?;
        Ok(row.map(|r| RequestState {
            taken_by: r.get(0),
            reply: r.get(1),
        }))
    }

    /// Removes the requests left for a day (their requester stopped before it read them).
    pub(crate) async fn prune_requests(&self) -> Result<u64, StateError> {
        self.client
            .execute(
                "DELETE FROM scimsync_request WHERE created_at < now() - interval '1 day'",
                &[],
            )
            .await
            .map_err(storage)
    }

    /// Forgets a request nobody took yet; false when an owner took it meanwhile.
    pub(crate) async fn forget_untaken(&self, id: i64) -> Result<bool, StateError> {
        self.client
            .execute(
                "DELETE FROM scimsync_request WHERE id = $1 AND taken_by IS NULL",
                &[&id],
            )
            .await
            .map(|n| n == 1)
            .map_err(storage)
    }

    /// Forgets a request (answered, or given up on).
    pub(crate) async fn forget_request(&self, id: i64) -> Result<(), StateError> {
        self.client
            .execute("DELETE FROM scimsync_request WHERE id = $1", &[&id])
            .await
            .map(|_| ())
            .map_err(storage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_is_named_after_its_host_and_pid() {
        let name = instance_name();
        assert!(
            name.ends_with(&format!(":{}", std::process::id()))
                || std::env::var("SCIMSYNC_INSTANCE").is_ok(),
            "{name}"
        );
    }
}
