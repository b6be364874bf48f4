//! The SCIM 2.0 client of one target: authentication, rate limit, concurrency cap, retries and
//! error parsing (RFC 7644).
//!
//! `backoff` and `governor` are used only here (and in [`retry`]), so they can be replaced in
//! one place.

pub mod auth;
pub mod bulk;
pub mod retry;

use crate::config::TargetConfig;
use crate::ids::{ScimId, TargetName};
use auth::{Auth, Bearer, TokenError};
use reqwest::{Method, StatusCode};
use retry::Pacer;
use serde_json::{json, Value as Json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Semaphore;

const SCIM_JSON: &str = "application/scim+json";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The two resource endpoints scimsync writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Users,
    Groups,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Users => "/Users",
            Endpoint::Groups => "/Groups",
        }
    }
}

/// A failed SCIM call, with what the server said.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{method} {path}: {}{}", .status.map(|s| format!("{s} ")).unwrap_or_default(), .detail)]
pub struct ScimError {
    pub method: String,
    pub path: String,
    pub status: Option<u16>,
    pub scim_type: Option<String>,
    pub detail: String,
    pub retryable: bool,
    /// True when the call was never sent because the target had already rejected the
    /// credentials in this cycle.
    pub not_sent: bool,
}

impl ScimError {
    /// The target rejected the credentials (401 or 403).
    pub fn is_auth(&self) -> bool {
        matches!(self.status, Some(401 | 403))
    }
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }
    pub fn is_conflict(&self) -> bool {
        self.status == Some(409)
    }
    /// No answer came within the request timeout (also for a bulk request carrying this
    /// operation); the target may still apply it.
    pub fn is_timeout(&self) -> bool {
        self.status.is_none() && self.detail.starts_with(TIMED_OUT)
    }
    /// A write never sent because scimsync is shutting down.
    pub fn is_interrupted(&self) -> bool {
        self.not_sent && self.status.is_none()
    }
    /// The OAuth token endpoint, not the target, failed or refused the client credentials.
    pub fn is_token_request(&self) -> bool {
        self.detail.starts_with(TOKEN_REQUEST)
    }
}

const TOKEN_REQUEST: &str = "OAuth token request";

impl From<TokenError> for ScimError {
    /// A refused token request counts as a rejection of the credentials (401), so that the
    /// cycle stops sending after the first one, as for a wrong static token.
    fn from(e: TokenError) -> Self {
        let verb = if e.retryable { "failed" } else { "rejected" };
        ScimError {
            method: "POST".to_owned(),
            path: e.token_url,
            status: if e.retryable { None } else { Some(401) },
            scim_type: None,
            detail: format!(
                "{TOKEN_REQUEST} {verb} for target {:?}: {}",
                e.target, e.detail
            ),
            retryable: e.retryable,
            not_sent: false,
        }
    }
}

/// How a request that got no answer in time is described (the start of its error's detail).
const TIMED_OUT: &str = "timed out";

pub struct Client {
    target: TargetName,
    base: String,
    http: reqwest::Client,
    auth: Auth,
    pacer: Pacer,
    slots: Semaphore,
    requests: AtomicUsize,
    retry_max: Duration,
    /// The first authentication rejection of this client's life (one cycle): later calls are
    /// not sent, so a wrong token costs one request rather than one per object.
    auth_rejected: Mutex<Option<String>>,
    /// `bulk = true` in the configuration.
    bulk_wanted: bool,
    concurrency: usize,
    /// Learnt from `/ServiceProviderConfig` before the first write: the bulk dispatcher, or
    /// `None` when the target does not advertise bulk (then every write is a single call).
    bulk: tokio::sync::OnceCell<Option<bulk::Dispatcher>>,
    /// Cancelled at shutdown: from then on no new write is sent (in-flight calls finish).
    stop: tokio_util::sync::CancellationToken,
}

impl Client {
    /// Builds the client of one target; reads its token (the error names the file or variable).
    pub fn new(target: &TargetConfig) -> Result<Client, String> {
        let auth = Auth::from_config(target)?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(target.connect_timeout_seconds))
            .timeout(Duration::from_secs(target.timeout_seconds))
            .user_agent(concat!("scimsync/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &target.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| format!("target {:?}: ca_file {}: {e}", target.name, ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("target {:?}: ca_file {}: {e}", target.name, ca.display()))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|e| {
            format!(
                "target {:?}: cannot build the HTTP client: {e}",
                target.name
            )
        })?;
        Ok(Client {
            target: TargetName(target.name.clone()),
            base: target.url.trim_end_matches('/').to_owned(),
            http,
            auth,
            pacer: Pacer::new(target.rate_limit, target.burst()),
            slots: Semaphore::new(target.concurrency.max(1)),
            requests: AtomicUsize::new(0),
            retry_max: Duration::from_secs(target.retry_max_seconds),
            auth_rejected: Mutex::new(None),
            bulk_wanted: target.bulk,
            concurrency: target.concurrency.max(1),
            bulk: tokio::sync::OnceCell::new(),
            stop: tokio_util::sync::CancellationToken::new(),
        })
    }

    /// The same client refusing new writes once `stop` is cancelled: a write not yet sent
    /// (also one waiting in a bulk queue) fails as [`ScimError::is_interrupted`], and the
    /// engine counts its object as not attempted this cycle.
    pub fn stopping_on(mut self, stop: tokio_util::sync::CancellationToken) -> Client {
        self.stop = stop;
        self
    }

    fn interrupted(&self, method: &Method, path: &str) -> ScimError {
        ScimError {
            method: method.to_string(),
            path: path.to_owned(),
            status: None,
            scim_type: None,
            detail: "not sent: scimsync is shutting down".into(),
            retryable: false,
            not_sent: true,
        }
    }

    /// The same client sending every write as a single call, whatever `bulk` says (one user
    /// provisioned on demand gains nothing from bulk).
    pub fn without_bulk(mut self) -> Client {
        self.bulk_wanted = false;
        self
    }

    /// How many writes a caller should keep pending: `concurrency`, or `concurrency ×
    /// maxOperations` when bulk is on, so that bulk requests fill up while only `concurrency`
    /// requests are in flight. With `bulk = true`, the first call reads the target's
    /// `/ServiceProviderConfig` (one request).
    pub async fn write_width(&self) -> usize {
        match self.bulk().await {
            Some(d) => d.width(),
            None => self.concurrency,
        }
    }

    /// The bulk dispatcher, when `bulk = true` and the target advertises bulk support. Read
    /// once per client (one cycle); a target without bulk is reported once.
    async fn bulk(&self) -> Option<&bulk::Dispatcher> {
        if !self.bulk_wanted {
            return None;
        }
        let d = self
            .bulk
            .get_or_init(|| async {
                let path = "/ServiceProviderConfig";
                let spc = backoff::future::retry(retry::policy(self.retry_max), || async {
                    match self.attempt(Method::GET, path, None).await {
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
                    Ok(None) => Err("its /ServiceProviderConfig is empty".to_owned()),
                    Err(e) => Err(format!("its /ServiceProviderConfig cannot be read ({e})")),
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

    /// One attempt of a call: a write goes through the bulk dispatcher when bulk is on, and is
    /// answered exactly as a single call would be.
    async fn attempt_routed(
        &self,
        method: Method,
        path: &str,
        body: Option<&Json>,
    ) -> bulk::Answer {
        let write = matches!(method, Method::POST | Method::PATCH | Method::DELETE)
            && (path.starts_with("/Users") || path.starts_with("/Groups"));
        if write && self.stop.is_cancelled() {
            return Err((self.interrupted(&method, path), None));
        }
        if write {
            if let Some(d) = self.bulk().await {
                if let Some(answer) = self.via_bulk(d, &method, path, body).await {
                    return answer;
                }
            }
        }
        self.attempt(method, path, body).await
    }

    /// Queues a write and waits for its answer, sending bulk requests while it waits in the
    /// queue; `None` when it must go as a single call.
    async fn via_bulk(
        &self,
        d: &bulk::Dispatcher,
        method: &Method,
        path: &str,
        body: Option<&Json>,
    ) -> Option<bulk::Answer> {
        if self.auth_rejected().is_some() {
            // The single path refuses it without sending anything.
            return None;
        }
        let mut ticket = d.enqueue(method, path, body)?;
        let queued = std::time::Instant::now();
        while !ticket.taken.load(std::sync::atomic::Ordering::Acquire) {
            tokio::select! {
                biased;
                answer = &mut ticket.reply => return delivered(answer, method, path, queued),
                permit = d.senders.acquire() => {
                    let Ok(_permit) = permit else { break };
                    if self.stop.is_cancelled() {
                        if ticket.taken.load(std::sync::atomic::Ordering::Acquire) {
                            break;
                        }
                        // Queued writes are not sent after a shutdown began.
                        return Some(Err((self.interrupted(method, path), None)));
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
                    let answer =
                        crate::audit::collect(self.attempt(Method::POST, "/Bulk", Some(&request)))
                            .await;
                    d.settle(batch, answer);
                }
            }
        }
        delivered(ticket.reply.await, method, path, queued)
    }

    /// Why the target rejected the credentials, if it did during this client's life.
    pub fn auth_rejected(&self) -> Option<String> {
        self.auth_rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many HTTP requests this client has sent.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    /// `GET /Users?filter=…`: every resource the server returns for the filter.
    pub async fn search(&self, endpoint: Endpoint, filter: &str) -> Result<Vec<Json>, ScimError> {
        let path = format!("{}?filter={}", endpoint.path(), urlencoding::encode(filter));
        let body = self.call(Method::GET, &path, None).await?;
        let Some(body) = body else {
            return Err(self.invalid(Method::GET, &path, "empty answer to a query"));
        };
        let total = body.get("totalResults").map(Json::as_u64);
        // A list the client cannot read must not look like "no account": that would create a
        // duplicate.
        match (body.get("Resources"), total) {
            (Some(Json::Array(items)), Some(Some(_)) | None) => Ok(items.clone()),
            (Some(Json::Array(_)), Some(None)) => {
                Err(self.invalid(Method::GET, &path, "totalResults is not a number"))
            }
            (Some(_), _) => Err(self.invalid(Method::GET, &path, "Resources is not a list")),
            (None, Some(Some(0))) => Ok(Vec::new()),
            (None, Some(Some(n))) => Err(self.invalid(
                Method::GET,
                &path,
                &format!("the ListResponse says totalResults {n} but has no Resources"),
            )),
            (None, _) => Err(self.invalid(
                Method::GET,
                &path,
                "the ListResponse has neither totalResults nor Resources",
            )),
        }
    }

    /// One page of a listing (`GET /Users?startIndex=…&count=…`): the resources and the
    /// server's `totalResults`.
    pub async fn list_page(
        &self,
        endpoint: Endpoint,
        start: usize,
        count: usize,
    ) -> Result<(Vec<Json>, usize), ScimError> {
        let path = format!("{}?startIndex={start}&count={count}", endpoint.path());
        let body = self.call(Method::GET, &path, None).await?;
        let resources = match body.as_ref().and_then(|b| b.get("Resources")) {
            None => Vec::new(),
            Some(Json::Array(items)) => items.clone(),
            Some(_) => return Err(self.invalid(Method::GET, &path, "Resources is not a list")),
        };
        let total = body
            .as_ref()
            .and_then(|b| b.get("totalResults"))
            .and_then(Json::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                self.invalid(Method::GET, &path, "a ListResponse without totalResults")
            })?;
        Ok((resources, total))
    }

    pub async fn get(&self, endpoint: Endpoint, id: &ScimId) -> Result<Json, ScimError> {
        let path = format!("{}/{}", endpoint.path(), urlencoding::encode(id.as_str()));
        self.call(Method::GET, &path, None)
            .await?
            .ok_or_else(|| self.invalid(Method::GET, &path, "empty response"))
    }

    /// `POST`: creates a resource and returns it as the server stored it.
    pub async fn create(
        &self,
        endpoint: Endpoint,
        resource: &Json,
    ) -> Result<(ScimId, Json), ScimError> {
        let path = endpoint.path();
        let body = self.call(Method::POST, path, Some(resource)).await?;
        let id = body
            .as_ref()
            .and_then(|b| b.get("id"))
            .and_then(Json::as_str)
            .filter(|s| !s.is_empty())
            .map(ScimId::from);
        match (id, body) {
            (Some(id), Some(body)) => Ok((id, body)),
            _ => Err(self.invalid(Method::POST, path, "the created resource has no id")),
        }
    }

    /// `PATCH` with RFC 7644 operations.
    pub async fn patch(
        &self,
        endpoint: Endpoint,
        id: &ScimId,
        ops: Vec<Json>,
    ) -> Result<(), ScimError> {
        let path = format!("{}/{}", endpoint.path(), urlencoding::encode(id.as_str()));
        let body = json!({"schemas": [PATCH_SCHEMA], "Operations": ops});
        self.call(Method::PATCH, &path, Some(&body))
            .await
            .map(|_| ())
    }

    pub async fn delete(&self, endpoint: Endpoint, id: &ScimId) -> Result<(), ScimError> {
        let path = format!("{}/{}", endpoint.path(), urlencoding::encode(id.as_str()));
        self.call(Method::DELETE, &path, None).await.map(|_| ())
    }

    /// One `GET` without retries, for `scimsync check`: a check reports at once.
    pub async fn probe(&self, path: &str) -> Result<Json, ScimError> {
        self.attempt(Method::GET, path, None)
            .await
            .map_err(|(e, _)| e)?
            .ok_or_else(|| self.invalid(Method::GET, path, "empty response"))
    }

    fn invalid(&self, method: Method, path: &str, why: &str) -> ScimError {
        ScimError {
            method: method.to_string(),
            path: path.to_owned(),
            status: None,
            scim_type: None,
            detail: format!("target {:?} sent an invalid response: {why}", self.target.0),
            retryable: false,
            not_sent: false,
        }
    }

    /// One call with rate limit, concurrency cap and retries on transient failures.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Json>,
    ) -> Result<Option<Json>, ScimError> {
        backoff::future::retry(retry::policy(self.retry_max), || async {
            match self.attempt_routed(method.clone(), path, body).await {
                Ok(v) => Ok(v),
                Err((e, retry_after)) if e.retryable && repeatable(&method, &e) => {
                    if e.status == Some(429) {
                        // Every request to this target waits, not only this one.
                        self.pacer
                            .throttle(retry_after.unwrap_or(retry::DEFAULT_THROTTLE));
                    }
                    tracing::debug!(target_name = %self.target, error = %e, "Retrying a SCIM call.");
                    Err(backoff::Error::Transient { err: e, retry_after })
                }
                Err((e, _)) => {
                    if e.is_auth() && !e.not_sent {
                        let mut first = self.auth_rejected.lock().unwrap_or_else(|p| p.into_inner());
                        first.get_or_insert_with(|| e.to_string());
                    }
                    Err(backoff::Error::Permanent(e))
                }
            }
        })
        .await
    }

    /// The error of a call not sent because the credentials were rejected earlier.
    fn not_sent(&self, method: &Method, path: &str) -> Option<ScimError> {
        let why = self.auth_rejected()?;
        Some(ScimError {
            method: method.to_string(),
            path: path.to_owned(),
            status: Some(401),
            scim_type: None,
            detail: format!(
                "not sent: the target rejected the credentials earlier in this cycle ({why})"
            ),
            retryable: false,
            not_sent: true,
        })
    }

    /// One request; with OAuth, a 401 discards the access token and the request is sent once
    /// more with a new one (the token may have been revoked or expired early).
    async fn attempt(
        &self,
        method: Method,
        path: &str,
        body: Option<&Json>,
    ) -> Result<Option<Json>, (ScimError, Option<Duration>)> {
        if let Some(e) = self.not_sent(&method, path) {
            // Nor is a new token asked for.
            return Err((e, None));
        }
        let mut used = None;
        match self
            .attempt_with(method.clone(), path, body, &mut used)
            .await
        {
            Err((e, _))
                if e.status == Some(401)
                    && !e.not_sent
                    && !e.is_token_request()
                    && self.auth.refreshable() =>
            {
                tracing::debug!(target_name = %self.target, "The target rejected the access token; fetching a new one.");
                if let Some(bearer) = &used {
                    self.auth.rejected(bearer).await;
                }
                self.attempt_with(method, path, body, &mut None).await
            }
            other => other,
        }
    }

    async fn attempt_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&Json>,
        used: &mut Option<Bearer>,
    ) -> Result<Option<Json>, (ScimError, Option<Duration>)> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| (self.invalid(method.clone(), path, "client closed"), None))?;
        if let Some(e) = self.not_sent(&method, path) {
            return Err((e, None));
        }
        let paced = std::time::Instant::now();
        self.pacer.ready().await;
        crate::telemetry::rate_limit_wait(&self.target.0, paced.elapsed());
        // Asked for after the wait, so that a short-lived token does not expire in the queue.
        let bearer = self
            .auth
            .bearer(&self.http)
            .await
            .map_err(|e| (ScimError::from(e), None))?;
        let bearer = used.insert(bearer);
        self.requests.fetch_add(1, Ordering::Relaxed);
        let url = format!("{}{}", self.base, path);
        let mut auth =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", bearer.value.expose()))
                .map_err(|_| {
                    (
                        self.invalid(
                            method.clone(),
                            path,
                            "the token holds characters not allowed in an HTTP header",
                        ),
                        None,
                    )
                })?;
        // Sensitive values are never printed by the HTTP stack's debug or trace output.
        auth.set_sensitive(true);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .header(reqwest::header::AUTHORIZATION, auth)
            .header(
                reqwest::header::ACCEPT,
                "application/scim+json, application/json",
            );
        if let Some(b) = body {
            // Serialising a serde_json::Value cannot fail.
            req = req
                .header(reqwest::header::CONTENT_TYPE, SCIM_JSON)
                .body(serde_json::to_vec(b).unwrap_or_default());
        }
        let err = |status: Option<u16>,
                   scim_type: Option<String>,
                   detail: String,
                   retryable: bool| ScimError {
            method: method.to_string(),
            path: path.to_owned(),
            status,
            scim_type,
            detail,
            retryable,
            not_sent: false,
        };
        let sent = std::time::Instant::now();
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                crate::telemetry::http_request(&self.target.0, &method, None, sent.elapsed());
                crate::audit::note_call(method.as_str(), path, None, sent.elapsed());
                let what = if e.is_timeout() {
                    TIMED_OUT
                } else if e.is_connect() {
                    CANNOT_CONNECT
                } else {
                    "request failed"
                };
                // Strip the URL's query from reqwest's message; the path is already named.
                return Err((
                    err(None, None, format!("{what}: {}", e.without_url()), true),
                    None,
                ));
            }
        };
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = resp.bytes().await;
        let elapsed = sent.elapsed();
        crate::telemetry::http_request(&self.target.0, &method, Some(status.as_u16()), elapsed);
        // The provisioning log's record of this call (when an operation collects them).
        crate::audit::note_call(method.as_str(), path, Some(status.as_u16()), elapsed);
        let bytes = bytes.map_err(|e| {
            (
                err(
                    Some(status.as_u16()),
                    None,
                    format!("reading the body: {}", e.without_url()),
                    true,
                ),
                None,
            )
        })?;
        let parsed: Option<Json> = if bytes.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(v) => Some(v),
                Err(_) if status.is_success() => {
                    return Err((
                        err(
                            Some(status.as_u16()),
                            None,
                            format!("target {:?} answered with a body that is not JSON ({content_type:?}): {}", self.target.0, excerpt(&bytes)),
                            false,
                        ),
                        None,
                    ))
                }
                Err(_) => None,
            }
        };
        let is_error_body = parsed
            .as_ref()
            .and_then(|b| b.get("schemas"))
            .and_then(Json::as_array)
            .is_some_and(|s| s.iter().any(|x| x.as_str() == Some(ERROR_SCHEMA)));
        if status.is_success() && !is_error_body {
            return Ok(parsed);
        }
        let (scim_type, detail) = match &parsed {
            Some(b) => (
                b.get("scimType").and_then(Json::as_str).map(str::to_owned),
                b.get("detail")
                    .and_then(Json::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| excerpt(&bytes)),
            ),
            None => (None, excerpt(&bytes)),
        };
        // A 200 carrying an error body reports its status inside.
        let code = parsed
            .as_ref()
            .and_then(|b| b.get("status"))
            .and_then(|s| {
                s.as_str()
                    .and_then(|s| s.parse().ok())
                    .or_else(|| s.as_u64().and_then(|n| u16::try_from(n).ok()))
            })
            .filter(|_| status.is_success())
            .unwrap_or(status.as_u16());
        let detail = match (&scim_type, code) {
            (Some(t), _) => format!("{t}: {detail}"),
            (None, 401 | 403) => format!("authentication rejected: {detail}"),
            _ => detail,
        };
        let retryable = code == StatusCode::TOO_MANY_REQUESTS.as_u16() || code >= 500;
        Err((err(Some(code), scim_type, detail, retryable), retry_after))
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
        Err(_) => Some(Err((
            ScimError {
                method: method.to_string(),
                path: path.to_owned(),
                status: None,
                scim_type: None,
                detail: "outcome unknown: the bulk request carrying it was abandoned".into(),
                retryable: true,
                not_sent: false,
            },
            None,
        ))),
    }
}

/// Whether a failed call may simply be sent again. A `POST` that was never sent (no access
/// token could be had) may; a `POST` that may have reached the server (a timeout, a reset, a
/// 5xx) is not: it could create a second account. The caller matches
/// again first, and only then creates (see the engine's create loop).
fn repeatable(method: &Method, e: &ScimError) -> bool {
    *method != Method::POST
        || e.is_token_request()
        || e.status == Some(429)
        || (e.status.is_none() && e.detail.starts_with(CANNOT_CONNECT))
}

const CANNOT_CONNECT: &str = "cannot connect";

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let wait = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    wait.to_std().ok()
}

fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None if text.is_empty() => "(empty body)".to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_http_date() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().expect("header"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        h.insert(reqwest::header::RETRY_AFTER, later.parse().expect("header"));
        let d = retry_after(&h).expect("date");
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
    }

    #[test]
    fn excerpts_are_bounded() {
        assert_eq!(excerpt(b"  "), "(empty body)");
        assert_eq!(excerpt("é".repeat(300).as_bytes()).chars().count(), 201);
    }
}
