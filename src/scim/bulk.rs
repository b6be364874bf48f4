//! SCIM Bulk (RFC 7644 §3.7): concurrent single writes coalesced into `POST /Bulk` requests.
//!
//! With `bulk = true` and a target that advertises bulk support, each write call (`POST`,
//! `PATCH`, `DELETE` on `/Users` or `/Groups`) is queued here instead of being sent alone. A
//! caller whose operation waits in the queue competes for one of `concurrency` sender permits;
//! the one that gets it lingers a moment if the queue cannot fill a request yet, takes up to
//! `maxOperations` operations under `maxPayloadSize` bytes, sends them as one request (one
//! request for the rate limiter), and hands every waiting caller exactly the answer a single
//! call would have had: status, id, `scimType` and detail from the operation's own result.
//! The client's retry loop and the engine's per-operation logic (409 → match again, 404 →
//! forget and match again, unknown outcome of a create → match before creating again) then
//! run unchanged.
//!
//! When the bulk request as a whole fails, every operation in it gets that failure: a
//! transient one (5xx, 429, a reset or timeout) is retried as a single call's would be, and a
//! `POST` whose outcome is unknown goes back to the engine, which matches before it creates
//! again. A request the target refuses as a whole (400, 413) is sent again as single calls;
//! an endpoint it lacks (404, 405, 501) turns bulk off for the rest of the cycle.

use super::error::{Cause, ScimError};
use super::http::status_number;
use reqwest::Method;
use serde_json::{json, Value as Json};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Semaphore};

const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
/// How long a sender waits for more operations when the queue cannot fill a request yet.
pub const LINGER: Duration = Duration::from_millis(2);
/// Bytes of a bulk request around its operations, with room to spare.
const ENVELOPE: usize = 128;
/// At most this many writes are kept pending by the engine, whatever the target advertises.
const MAX_PENDING: usize = 8192;

/// Why a target's bulk cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NoBulk {
    #[error("its /ServiceProviderConfig has no \"bulk\"")]
    Absent,
    #[error("its /ServiceProviderConfig says bulk is not supported")]
    Unsupported,
    #[error("its /ServiceProviderConfig announces bulk without usable limits (maxOperations {max_operations}, maxPayloadSize {max_payload_size})")]
    NoLimits {
        max_operations: String,
        max_payload_size: String,
    },
    #[error("its /ServiceProviderConfig is empty")]
    Empty,
    #[error("its /ServiceProviderConfig cannot be read ({0})")]
    Unreadable(String),
}

/// A value from a ServiceProviderConfig as a message shows it.
fn shown(v: Option<&Json>) -> String {
    crate::text::escape(&v.unwrap_or(&Json::Null).to_string())
}

/// The bulk limits a target advertises in `/ServiceProviderConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_operations: usize,
    pub max_payload_size: usize,
}

impl Limits {
    /// Reads the `bulk` object of a ServiceProviderConfig; the error says why bulk cannot be
    /// used (not supported, or limits that allow no request).
    pub fn advertised(spc: &Json) -> Result<Limits, NoBulk> {
        let Some(bulk) = spc.get("bulk") else {
            return Err(NoBulk::Absent);
        };
        if bulk.get("supported").and_then(Json::as_bool) != Some(true) {
            return Err(NoBulk::Unsupported);
        }
        let number = |key: &str| {
            bulk.get(key)
                .and_then(Json::as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n > 0)
        };
        match (number("maxOperations"), number("maxPayloadSize")) {
            (Some(max_operations), Some(max_payload_size)) if max_payload_size > ENVELOPE => {
                Ok(Limits {
                    max_operations,
                    max_payload_size,
                })
            }
            _ => Err(NoBulk::NoLimits {
                max_operations: shown(bulk.get("maxOperations")),
                max_payload_size: shown(bulk.get("maxPayloadSize")),
            }),
        }
    }
}

/// What a single call answers: the body, or the error with the server's `Retry-After`.
pub(crate) type Answer = Result<Option<Json>, (ScimError, Option<Duration>)>;

/// What a queued operation gets back.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// The answer a single call would have had, with the status of the operation's own result
    /// when the bulk response had one.
    Done(Answer, Option<u16>),
    /// Not carried by bulk: send it as a single call.
    Alone,
}

/// One queued write.
pub(crate) struct Pending {
    bulk_id: String,
    method: Method,
    path: String,
    op: Json,
    size: usize,
    taken: Arc<AtomicBool>,
    reply: oneshot::Sender<Delivery>,
}

/// The caller's side of a queued write.
pub(crate) struct Ticket {
    pub taken: Arc<AtomicBool>,
    pub reply: oneshot::Receiver<Delivery>,
}

/// The queue of one target's writes and the permits of its bulk senders.
pub(crate) struct Dispatcher {
    pub limits: Limits,
    queue: Mutex<VecDeque<Pending>>,
    /// At most `concurrency` bulk requests are in flight.
    pub senders: Semaphore,
    concurrency: usize,
    next_id: AtomicU64,
    disabled: AtomicBool,
}

impl Dispatcher {
    pub fn new(limits: Limits, concurrency: usize) -> Dispatcher {
        Dispatcher {
            limits,
            queue: Mutex::new(VecDeque::new()),
            senders: Semaphore::new(concurrency.max(1)),
            concurrency: concurrency.max(1),
            next_id: AtomicU64::new(0),
            disabled: AtomicBool::new(false),
        }
    }

    /// How many writes the engine keeps pending so that requests fill up.
    pub fn width(&self) -> usize {
        self.concurrency
            .saturating_mul(self.limits.max_operations)
            .clamp(self.concurrency, MAX_PENDING.max(self.concurrency))
    }

    pub fn disabled(&self) -> bool {
        self.disabled.load(Ordering::Relaxed)
    }

    fn disable(&self) {
        self.disabled.store(true, Ordering::Relaxed);
    }

    /// Queues a write; `None` when bulk cannot carry it (off, or too large for one request).
    pub fn enqueue(&self, method: &Method, path: &str, body: Option<&Json>) -> Option<Ticket> {
        if self.disabled() {
            return None;
        }
        let bulk_id = format!("w{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let mut op = json!({"method": method.as_str(), "path": path, "bulkId": bulk_id});
        if let (Some(b), Some(obj)) = (body, op.as_object_mut()) {
            obj.insert("data".into(), b.clone());
        }
        let size = serde_json::to_vec(&op).map_or(usize::MAX, |v| v.len());
        if size.saturating_add(ENVELOPE + 1) > self.limits.max_payload_size {
            return None;
        }
        let taken = Arc::new(AtomicBool::new(false));
        let (tx, rx) = oneshot::channel();
        self.lock().push_back(Pending {
            bulk_id,
            method: method.clone(),
            path: path.to_owned(),
            op,
            size,
            taken: Arc::clone(&taken),
            reply: tx,
        });
        Some(Ticket { taken, reply: rx })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when the queue holds fewer operations than one request may carry.
    pub fn underfull(&self) -> bool {
        self.lock().len() < self.limits.max_operations
    }

    /// Takes the next request's operations: up to `maxOperations`, under `maxPayloadSize`.
    pub fn take_batch(&self) -> Vec<Pending> {
        let mut queue = self.lock();
        let mut bytes = ENVELOPE;
        let mut out = Vec::new();
        while let Some(p) = queue.front() {
            if out.len() >= self.limits.max_operations
                || bytes + p.size + 1 > self.limits.max_payload_size
            {
                break;
            }
            bytes += p.size + 1;
            if let Some(p) = queue.pop_front() {
                p.taken.store(true, Ordering::Release);
                out.push(p);
            }
        }
        out
    }

    /// Answers every operation of a request that was sent and answered (or failed); `shown`
    /// makes the target's text of each result safe to store and print.
    pub fn settle(&self, batch: Vec<Pending>, answer: Answer, shown: &dyn Fn(&str) -> String) {
        let deliveries = match answer {
            Ok(Some(body)) => per_operation(&batch, &body, shown),
            Ok(None) => batch
                .iter()
                .map(|p| {
                    Delivery::Done(Err((unknown(p, "the bulk response is empty"), None)), None)
                })
                .collect(),
            Err((e, retry_after)) => {
                let alone = match e.status {
                    // The endpoint is missing: bulk is off for the rest of the cycle.
                    Some(404 | 405 | 501) => {
                        tracing::warn!(error = %e, "The target refused POST /Bulk; sending single calls from now on.");
                        self.disable();
                        true
                    }
                    // The request as a whole was refused: each operation is tried alone.
                    Some(400 | 413) => {
                        tracing::warn!(error = %e, operations = batch.len(), "The target refused a bulk request as a whole; sending its operations as single calls.");
                        true
                    }
                    _ => false,
                };
                batch
                    .iter()
                    .map(|p| {
                        if alone {
                            Delivery::Alone
                        } else {
                            Delivery::Done(
                                Err((whole_request_failure(p, &e, batch.len()), retry_after)),
                                e.status,
                            )
                        }
                    })
                    .collect()
            }
        };
        for (p, d) in batch.into_iter().zip(deliveries) {
            // The caller may have gone (shutdown); nothing waits for the answer then.
            let _ = p.reply.send(d);
        }
    }
}

/// The `POST /Bulk` body carrying a batch; `failOnErrors` is unset, so the target applies
/// every operation whatever the others do.
pub(crate) fn request_body(batch: &[Pending]) -> Json {
    json!({
        "schemas": [BULK_REQUEST],
        "Operations": batch.iter().map(|p| p.op.clone()).collect::<Vec<_>>(),
    })
}

/// The error of an operation whose result nobody can know: treated as a transient failure, so
/// that a `PATCH` or `DELETE` is sent again and a `POST` is matched before it is created again.
fn unknown(p: &Pending, why: &str) -> ScimError {
    ScimError {
        method: p.method.to_string(),
        path: p.path.clone(),
        status: None,
        scim_type: None,
        detail: format!("outcome unknown: {why} (bulkId {})", p.bulk_id),
        retryable: true,
        cause: Cause::Unknown,
    }
}

/// The error of one operation when its whole bulk request failed: the request's own error,
/// named after the operation. The detail keeps its beginning, which says whether the request
/// could not even connect (then a `POST` may be sent again).
fn whole_request_failure(p: &Pending, e: &ScimError, n: usize) -> ScimError {
    ScimError {
        method: p.method.to_string(),
        path: p.path.clone(),
        detail: format!("{} (in POST /Bulk with {n} operations)", e.detail),
        ..e.clone()
    }
}

/// Maps each operation to its result in a BulkResponse: by `bulkId`, or, for a result without
/// one, by its position when the response lists exactly one result per operation.
fn per_operation(batch: &[Pending], body: &Json, shown: &dyn Fn(&str) -> String) -> Vec<Delivery> {
    let results: &[Json] = match body.get("Operations").and_then(Json::as_array) {
        Some(r) => r,
        None => &[],
    };
    let by_id: HashMap<&str, &Json> = results
        .iter()
        .filter_map(|r| r.get("bulkId").and_then(Json::as_str).map(|id| (id, r)))
        .collect();
    let positional = results.len() == batch.len();
    batch
        .iter()
        .enumerate()
        .map(|(i, p)| {
            // By position only where the result names the very resource: a create's result
            // without its bulkId could be another create's, and taking it would give this
            // object someone else's account, so that create's outcome stays unknown (the
            // engine matches again before creating).
            let found = by_id.get(p.bulk_id.as_str()).copied().or_else(|| {
                results.get(i).filter(|r| {
                    positional
                        && p.method != Method::POST
                        && r.get("bulkId").is_none()
                        && r.get("method")
                            .and_then(Json::as_str)
                            .is_some_and(|m| m.eq_ignore_ascii_case(p.method.as_str()))
                        && r.get("location")
                            .and_then(Json::as_str)
                            .is_some_and(|l| names_resource(l, &p.path))
                })
            });
            let status = found.and_then(|r| r.get("status")).and_then(status_number);
            let answer = match found {
                None => Err((
                    unknown(p, "the bulk response has no result for this operation"),
                    None,
                )),
                Some(r) => one_result(p, r, shown),
            };
            Delivery::Done(answer, status)
        })
        .collect()
}

/// Whether a result's `location` (`https://host/v2/Users/ID`) names the resource at `path`
/// (`/Users/ID`), ignoring a query or fragment.
fn names_resource(location: &str, path: &str) -> bool {
    let location = location.split(['?', '#']).next().unwrap_or("");
    let decoded =
        urlencoding::decode(location).map_or_else(|_| location.to_owned(), |d| d.into_owned());
    !path.is_empty() && (location.ends_with(path) || decoded.ends_with(path))
}

/// The id of a created resource from its `location`: the segment after `/Users/` or
/// `/Groups/`; `None` for anything else (a trailing slash, a location of another shape).
fn created_id(location: &str) -> Option<String> {
    let location = location.split(['?', '#']).next().unwrap_or("");
    let mut segments = location.rsplit('/');
    let id = segments.next().filter(|s| !s.is_empty())?;
    let parent = segments.next()?;
    if !(parent == "Users" || parent == "Groups") {
        return None;
    }
    Some(urlencoding::decode(id).map_or_else(|_| id.to_owned(), |d| d.into_owned()))
}

/// The answer a single call would have had, from one operation's result; its `scimType` and
/// `detail` made safe by `shown`.
fn one_result(p: &Pending, r: &Json, shown: &dyn Fn(&str) -> String) -> Answer {
    let Some(status) = r.get("status").and_then(status_number) else {
        return Err((
            unknown(p, "its result in the bulk response has no status"),
            None,
        ));
    };
    let response = r.get("response").filter(|v| !v.is_null());
    if (200..300).contains(&status) {
        if p.method != Method::POST {
            return Ok(response.cloned());
        }
        // A created resource: the server may return it; otherwise its id ends the location.
        if let Some(resource) = response.filter(|v| v.get("id").is_some()) {
            return Ok(Some(resource.clone()));
        }
        let location = r.get("location").and_then(Json::as_str).unwrap_or("");
        let id = created_id(location);
        return Ok(Some(match id {
            Some(id) => json!({"id": id, "meta": {"location": location}}),
            // `create` reports a created resource without an id.
            None => json!({}),
        }));
    }
    let scim_type = response
        .and_then(|b| b.get("scimType"))
        .and_then(Json::as_str)
        .map(shown);
    let detail = response
        .and_then(|b| b.get("detail"))
        .and_then(Json::as_str)
        .map(shown)
        .unwrap_or_else(|| format!("status {status} in the bulk response"));
    let detail = match (&scim_type, status) {
        (Some(t), _) => format!("{t}: {detail}"),
        (None, 401 | 403) => format!("authentication rejected: {detail}"),
        _ => detail,
    };
    Err((
        ScimError {
            method: p.method.to_string(),
            path: p.path.clone(),
            status: Some(status),
            scim_type,
            detail,
            retryable: status == 429 || (status >= 500 && status != 501 && status != 505),
            cause: Cause::Status,
        },
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(ops: usize, bytes: usize) -> Limits {
        Limits {
            max_operations: ops,
            max_payload_size: bytes,
        }
    }

    fn user(i: usize) -> Json {
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": format!("user{i:04}")})
    }

    #[test]
    fn limits_come_from_the_service_provider_config() {
        let spc =
            json!({"bulk": {"supported": true, "maxOperations": 1000, "maxPayloadSize": 1048576}});
        assert_eq!(Limits::advertised(&spc), Ok(limits(1000, 1048576)));
        let off = json!({"bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0}});
        assert_eq!(Limits::advertised(&off), Err(NoBulk::Unsupported));
        assert!(Limits::advertised(&json!({})).is_err());
        let no_limits = json!({"bulk": {"supported": true}});
        assert!(Limits::advertised(&no_limits)
            .expect_err("no limits")
            .to_string()
            .contains("without usable limits"));
    }

    #[test]
    fn batches_hold_at_most_max_operations() {
        let d = Dispatcher::new(limits(3, 1 << 20), 2);
        let tickets: Vec<Ticket> = (0..7)
            .map(|i| {
                d.enqueue(&Method::POST, "/Users", Some(&user(i)))
                    .expect("queued")
            })
            .collect();
        let sizes: Vec<usize> = std::iter::from_fn(|| Some(d.take_batch().len()))
            .take_while(|n| *n > 0)
            .collect();
        assert_eq!(sizes, vec![3, 3, 1]);
        assert!(tickets.iter().all(|t| t.taken.load(Ordering::Acquire)));
        assert_eq!(d.width(), 6);
    }

    #[test]
    fn batches_stay_under_max_payload_size() {
        let op_size = {
            let d = Dispatcher::new(limits(100, 1 << 20), 1);
            let _t = d.enqueue(&Method::POST, "/Users", Some(&user(0)));
            d.take_batch()[0].size
        };
        // Room for exactly two operations, not three.
        let max = ENVELOPE + 2 * (op_size + 1) + op_size / 2;
        let d = Dispatcher::new(limits(100, max), 1);
        let _tickets: Vec<Ticket> = (0..5)
            .map(|i| {
                d.enqueue(&Method::POST, "/Users", Some(&user(i)))
                    .expect("queued")
            })
            .collect();
        let batch = d.take_batch();
        assert_eq!(batch.len(), 2);
        let body = serde_json::to_vec(&request_body(&batch)).expect("json");
        assert!(body.len() <= max, "{} > {max}", body.len());
        assert_eq!(d.take_batch().len(), 2);
        assert_eq!(d.take_batch().len(), 1);
        // An operation larger than a whole request is not queued: it goes alone.
        let tiny = Dispatcher::new(limits(100, ENVELOPE + 10), 1);
        assert!(tiny
            .enqueue(&Method::POST, "/Users", Some(&user(0)))
            .is_none());
    }

    fn settle(batch_ops: &[(Method, &str)], response: Answer) -> Vec<Delivery> {
        let d = Dispatcher::new(limits(100, 1 << 20), 1);
        let mut tickets: Vec<Ticket> = batch_ops
            .iter()
            .map(|(m, path)| {
                let body = (*m != Method::DELETE).then(|| json!({}));
                d.enqueue(m, path, body.as_ref()).expect("queued")
            })
            .collect();
        let batch = d.take_batch();
        d.settle(batch, response, &|t| {
            crate::text::untrusted(t, &["s3cret".to_owned()])
        });
        tickets
            .iter_mut()
            .map(|t| t.reply.try_recv().expect("answered"))
            .collect()
    }

    fn done(d: Delivery) -> Answer {
        match d {
            Delivery::Done(a, _) => a,
            Delivery::Alone => panic!("expected an answer, got Alone"),
        }
    }

    #[test]
    fn a_result_detail_is_escaped_and_its_secrets_redacted() {
        let response = json!({"Operations": [
            {"method": "POST", "bulkId": "w0", "status": "400", "response": {"scimType": "invalid\u{1b}[2J", "detail": "bad token s3cret\u{7}"}}
        ]});
        let mut got = settle(&[(Method::POST, "/Users")], Ok(Some(response)));
        let (e, _) = done(got.remove(0)).expect_err("400");
        let said = e.to_string();
        assert!(
            !said.contains("s3cret") && !said.contains('\u{1b}') && !said.contains('\u{7}'),
            "{said}"
        );
        assert!(
            said.contains("[redacted]") && said.contains("\\u{1b}"),
            "{said}"
        );
    }

    #[test]
    fn each_result_becomes_the_answer_of_a_single_call() {
        let ops = [
            (Method::POST, "/Users"),
            (Method::POST, "/Users"),
            (Method::PATCH, "/Users/abc"),
            (Method::DELETE, "/Users/gone"),
            (Method::POST, "/Users"),
            (Method::PATCH, "/Users/busy"),
        ];
        // As scim2-server answers: statuses as strings, results in any order, no resource.
        let response = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkResponse"], "Operations": [
            {"method": "POST", "bulkId": "w1", "status": "409", "response": {"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "409", "scimType": "uniqueness", "detail": "taken"}},
            {"method": "POST", "bulkId": "w0", "status": "201", "location": "http://h/v2/Users/id%20one", "version": "W/\"1\""},
            {"method": "PATCH", "bulkId": "w2", "status": 200, "location": "http://h/v2/Users/abc"},
            {"method": "DELETE", "bulkId": "w3", "status": "404", "response": {"status": "404", "detail": "User 'gone' not found"}},
            {"method": "PATCH", "bulkId": "w5", "status": "503"}
        ]});
        let mut got = settle(&ops, Ok(Some(response))).into_iter().map(done);
        let created = got.next().expect("0").expect("created");
        assert_eq!(created.expect("body")["id"], "id one");
        let (conflict, _) = got.next().expect("1").expect_err("409");
        assert!(conflict.is_conflict() && !conflict.retryable);
        assert_eq!(conflict.scim_type.as_deref(), Some("uniqueness"));
        assert_eq!(conflict.to_string(), "POST /Users: 409 uniqueness: taken");
        assert_eq!(got.next().expect("2").expect("patched"), None);
        let (gone, _) = got.next().expect("3").expect_err("404");
        assert!(gone.is_not_found());
        assert_eq!(gone.path, "/Users/gone");
        // No result for the fifth: its outcome is unknown, which a create treats as "match
        // again before creating".
        let (missing, _) = got.next().expect("4").expect_err("no result");
        assert!(missing.retryable && missing.status.is_none(), "{missing}");
        let (busy, _) = got.next().expect("5").expect_err("503");
        assert!(busy.retryable && busy.status == Some(503));
    }

    #[test]
    fn results_without_bulk_ids_are_matched_by_position_only_when_they_name_the_resource() {
        let ops = [(Method::PATCH, "/Users/a"), (Method::DELETE, "/Users/b")];
        let response = json!({"Operations": [
            {"method": "PATCH", "status": "200", "location": "http://h/v2/Users/a"},
            {"method": "DELETE", "status": "204", "location": "http://h/v2/Users/b"}
        ]});
        for d in settle(&ops, Ok(Some(response))) {
            assert_eq!(done(d).expect("applied"), None);
        }
        // Results in another order (or naming nothing) are not taken: the outcome is unknown,
        // so the PATCH and DELETE are sent again rather than marked done.
        let swapped = json!({"Operations": [
            {"method": "PATCH", "status": "200", "location": "http://h/v2/Users/b"},
            {"method": "DELETE", "status": "204"}
        ]});
        for d in settle(&ops, Ok(Some(swapped))) {
            let (e, _) = done(d).expect_err("unknown");
            assert!(e.retryable && e.status.is_none(), "{e}");
        }
    }

    #[test]
    fn a_create_without_its_bulk_id_is_never_matched_by_position() {
        let ops = [(Method::POST, "/Users"), (Method::POST, "/Users")];
        let response = json!({"Operations": [
            {"method": "POST", "status": "201", "location": "http://h/v2/Users/x"},
            {"method": "POST", "status": "201", "location": "http://h/v2/Users/y"}
        ]});
        for d in settle(&ops, Ok(Some(response))) {
            let (e, _) = done(d).expect_err("unknown");
            assert!(e.retryable && e.detail.contains("outcome unknown"), "{e}");
        }
    }

    #[test]
    fn a_created_id_comes_only_from_a_users_or_groups_location() {
        assert_eq!(
            created_id("http://h/v2/Users/ab%20c").as_deref(),
            Some("ab c")
        );
        assert_eq!(
            created_id("http://h/v2/Groups/g1?x=1").as_deref(),
            Some("g1")
        );
        assert_eq!(created_id("http://h/v2/Users/"), None);
        assert_eq!(created_id("http://h/v2/Users"), None);
        assert_eq!(created_id(""), None);
    }

    #[test]
    fn a_failed_request_fails_each_operation_as_a_single_call_would() {
        let ops = [(Method::POST, "/Users"), (Method::PATCH, "/Users/a")];
        let reset = ScimError {
            method: "POST".into(),
            path: "/Bulk".into(),
            status: None,
            scim_type: None,
            detail: "request failed: connection reset".into(),
            retryable: true,
            cause: Cause::Transport,
        };
        for d in settle(&ops, Err((reset.clone(), None))) {
            let (e, _) = done(d).expect_err("failed");
            assert!(e.retryable && e.status.is_none());
            assert!(e.detail.starts_with("request failed"), "{e}");
            assert_ne!(e.path, "/Bulk");
        }
        let throttled = ScimError {
            status: Some(429),
            ..reset.clone()
        };
        for d in settle(&ops, Err((throttled, Some(Duration::from_secs(3))))) {
            let (e, wait) = done(d).expect_err("failed");
            assert_eq!((e.status, wait), (Some(429), Some(Duration::from_secs(3))));
        }
        let refused = ScimError {
            status: Some(413),
            retryable: false,
            ..reset
        };
        for d in settle(&ops, Err((refused, None))) {
            assert!(matches!(d, Delivery::Alone));
        }
        for d in settle(&ops, Ok(None)) {
            assert!(done(d).expect_err("unknown").0.retryable);
        }
    }
}
