//! The client's side of SCIM Bulk: routing a write through the [`bulk::Dispatcher`] and
//! waiting for its own answer, sending bulk requests while it waits.

use super::bulk;
use super::error::{Cause, ScimError};
use super::route::Route;
use super::{retry, Client};
use reqwest::Method;
use serde_json::Value as Json;

impl Client {
    /// The bulk dispatcher, when `bulk = true` and the target advertises bulk support. Read
    /// once per client (one cycle); a target without bulk is reported once.
    pub(super) async fn bulk(&self) -> Option<&bulk::Dispatcher> {
        if !self.bulk_wanted {
            return None;
        }
        let d = self
            .bulk
            .get_or_init(|| async {
                let route = Route::at("ServiceProviderConfig");
                let spc = backoff::future::retry(retry::policy(self.retry_max), || async {
                    match self.attempt(Method::GET, &route, None).await {
                        Ok(v) => Ok(v),
                        Err((e, retry_after)) if e.retryable => {
                            Err(backoff::Error::Transient { err: e, retry_after })
                        }
                        Err((e, _)) => Err(backoff::Error::Permanent(e)),
                    }
                })
                .await;
                let limits = match spc {
                    Ok(Some(spc)) => bulk::Limits::advertised(&spc),
                    Ok(None) => Err(bulk::NoBulk::Empty),
                    Err(e) => Err(bulk::NoBulk::Unreadable(e.to_string())),
                };
                match limits {
                    Ok(l) => {
                        tracing::info!(target_name = %self.target, max_operations = l.max_operations, max_payload_size = l.max_payload_size, "Writes go in SCIM bulk requests.");
                        Some(bulk::Dispatcher::new(l, self.concurrency))
                    }
                    Err(why) => {
                        tracing::warn!(target_name = %self.target, "bulk = true, but {why}; sending single calls.");
                        None
                    }
                }
            })
            .await
            .as_ref()?;
        (!d.disabled()).then_some(d)
    }

    /// Queues a write and waits for its answer, sending bulk requests while it waits in the
    /// queue; `None` when it must go as a single call.
    pub(super) async fn via_bulk(
        &self,
        d: &bulk::Dispatcher,
        method: &Method,
        route: &Route,
        body: Option<&Json>,
    ) -> Option<bulk::Answer> {
        if self.halted().is_some() {
            // The single path refuses it without sending anything.
            return None;
        }
        let path = route.bulk_path();
        let mut ticket = d.enqueue(method, &path, body)?;
        let queued = std::time::Instant::now();
        while !ticket.taken.load(std::sync::atomic::Ordering::Acquire) {
            tokio::select! {
                biased;
                answer = &mut ticket.reply => return delivered(answer, method, &path, queued),
                permit = d.senders.acquire() => {
                    let Ok(_permit) = permit else { break };
                    if self.stop.is_cancelled() {
                        if ticket.taken.load(std::sync::atomic::Ordering::Acquire) {
                            break;
                        }
                        // Queued writes are not sent after a shutdown began.
                        return Some(Err((self.interrupted(method, route), None)));
                    }
                    if d.underfull() {
                        tokio::time::sleep(bulk::LINGER).await;
                    }
                    let batch = d.take_batch();
                    if batch.is_empty() {
                        continue;
                    }
                    let request = bulk::request_body(&batch);
                    // The request serves other objects' operations too: its own HTTP call is
                    // kept out of this operation's log record, and each operation notes its
                    // own result when it is delivered.
                    let answer = crate::audit::collect(self.attempt(
                        Method::POST,
                        &Route::at("Bulk"),
                        Some(&request),
                    ))
                    .await;
                    d.settle(batch, answer, &|t| self.shown(t));
                }
            }
        }
        delivered(ticket.reply.await, method, &path, queued)
    }
}

/// What a queued write's caller gets: the answer, `None` to send it alone, or (when the
/// request carrying it was abandoned, at shutdown) an unknown outcome.
fn delivered(
    d: Result<bulk::Delivery, tokio::sync::oneshot::error::RecvError>,
    method: &Method,
    path: &str,
    queued: std::time::Instant,
) -> Option<bulk::Answer> {
    match d {
        Ok(bulk::Delivery::Done(answer, status)) => {
            let status = status.or_else(|| answer.as_ref().err().and_then(|(e, _)| e.status));
            crate::audit::note_bulk_call(method.as_str(), path, status, queued.elapsed());
            Some(answer)
        }
        Ok(bulk::Delivery::Alone) => None,
        Err(_) => {
            let detail = "outcome unknown: the bulk request carrying it was abandoned".to_owned();
            Some(Err((
                ScimError::new(method, path, Cause::Unknown, detail),
                None,
            )))
        }
    }
}
