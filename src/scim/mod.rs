//! The SCIM 2.0 client of one target: authentication, rate limit, concurrency cap, retries and
//! error parsing (RFC 7644), with every per-target difference taken from its [`Profile`].
//!
//! - [`route`]: where a call goes, built with a URL builder.
//! - [`http`]: one request and its answer, read up to a bound, never redirected.
//! - [`patch`], [`filter`]: the typed PATCH operations and filter forms.
//! - [`profile`]: what was configured and learned about the target.
//! - [`members`]: group member changes in as few PATCHes as the target takes.
//! - [`bulk`], [`auth`], [`retry`]: bulk requests, tokens, pacing and retries.
//!
//! `backoff` and `governor` are used only here (and in [`retry`]), so they can be replaced in
//! one place.

pub(crate) mod auth;
pub(crate) mod bulk;
mod bulk_send;
pub mod error;
pub(crate) mod filter;
mod http;
pub(crate) mod members;
pub(crate) mod patch;
pub mod profile;
pub(crate) mod retry;
pub mod route;

use crate::config::TargetConfig;
use crate::ids::{BadId, ScimId, TargetName};
use auth::Auth;
pub use error::{Cause, ScimError};
use patch::{PatchOp, Verb};
pub use profile::Profile;
use reqwest::Method;
use retry::Pacer;
pub use route::{Endpoint, Route};
use serde_json::Value as Json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

pub(crate) const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Why a target's client cannot be built: its credentials or its CA file.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{what}: {message}")]
    Credentials { what: &'static str, message: String },
    #[error("ca_file {path}: {message}")]
    CaFile {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("url {url:?}: {message}")]
    Url { url: String, message: String },
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

impl From<auth::TokenError> for ScimError {
    /// A refused token request counts as a rejection of the credentials (401), so that the
    /// cycle stops sending after the first one, as for a wrong static token.
    fn from(e: auth::TokenError) -> Self {
        let verb = if e.retryable { "failed" } else { "rejected" };
        ScimError {
            method: "POST".to_owned(),
            path: e.token_url,
            status: if e.retryable { None } else { Some(401) },
            scim_type: None,
            detail: format!(
                "OAuth token request {verb} for target {:?}: {}",
                e.target, e.detail
            ),
            retryable: e.retryable,
            cause: Cause::TokenRequest,
        }
    }
}

/// Why a client sends nothing more in this cycle: every later call would fail the same way,
/// so one line says it instead of one failure per object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Halt {
    /// The target (or its token endpoint) rejected the credentials.
    Credentials(String),
    /// No connection could be made before the target ever answered (refused, DNS, TLS).
    Unreachable(String),
    /// A call spent its whole `retry_max_seconds` on transient failures (429, 5xx, timeouts)
    /// or was asked to wait beyond it, and no other call succeeded meanwhile: each further
    /// call would spend as long, so a cycle ends in about `retry_max_seconds`, not one budget
    /// per object. The call itself is a failure of its object (escrowed).
    Unavailable(String),
}

impl std::fmt::Display for Halt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Halt::Credentials(why) => write!(f, "the target rejected the credentials ({why})"),
            Halt::Unreachable(why) => write!(f, "the target cannot be reached ({why})"),
            Halt::Unavailable(why) => write!(f, "the target stayed unavailable ({why})"),
        }
    }
}

/// How long calls keep trying to connect to a target that has not answered once this cycle:
/// a wrong port or host ends the cycle in seconds, not after retrying every object.
const UNREACHED_BUDGET: Duration = Duration::from_secs(3);

/// A refused attribute: the target would not take this mapped attribute, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub attribute: String,
    pub why: String,
}

pub struct Client {
    target: TargetName,
    base: reqwest::Url,
    http: reqwest::Client,
    auth: Auth,
    pacer: Pacer,
    slots: Semaphore,
    requests: AtomicUsize,
    retry_max: Duration,
    max_body: usize,
    /// Held while a heavy answer is read and parsed: one at a time ([`http::LIGHT_BYTES`]).
    heavy: Semaphore,
    profile: Arc<Profile>,
    /// Why this client (one cycle) sends nothing more: the first rejection of the
    /// credentials, or a target that could not be reached before it ever answered.
    halted: Mutex<Option<Halt>>,
    /// The target answered at least once (any status) during this client's life.
    reached: std::sync::atomic::AtomicBool,
    /// Calls that succeeded: a call that exhausts its retries while none did halts the client.
    succeeded: AtomicUsize,
    /// `bulk = true` in the configuration.
    bulk_wanted: bool,
    concurrency: usize,
    /// Learnt from `/ServiceProviderConfig` before the first write: the bulk dispatcher, or
    /// `None` when the target does not advertise bulk (then every write is a single call).
    bulk: tokio::sync::OnceCell<Option<bulk::Dispatcher>>,
    /// Cancelled at shutdown: from then on no new write is sent (in-flight calls finish).
    stop: tokio_util::sync::CancellationToken,
    /// Several instances: the lease on this target; once it lapses no new write is sent.
    lease: crate::state::lease::Gate,
}

impl Client {
    /// Builds the client of one target, with its profile; reads its token (the error names
    /// the file or variable).
    pub fn new(target: &TargetConfig, profile: Arc<Profile>) -> Result<Client, ClientError> {
        // One TLS crypto provider in the whole build (ring, as the LDAP connector's): made the
        // process default once, before the first HTTP client needs one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let auth = Auth::from_config(target)?;
        let base = reqwest::Url::parse(&target.url).map_err(|e| ClientError::Url {
            url: target.url.clone(),
            message: e.to_string(),
        })?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(target.connect_timeout_seconds))
            .timeout(Duration::from_secs(target.timeout_seconds))
            // A target's redirect is refused, never followed: it could send the data elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("scimsync/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &target.ca_file {
            let ca_error = |message: String| ClientError::CaFile {
                path: ca.clone(),
                message,
            };
            let pem = std::fs::read(ca).map_err(|e| ca_error(e.to_string()))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| ca_error(e.to_string()))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Ok(Client {
            target: TargetName(target.name.clone()),
            base,
            http,
            auth,
            pacer: Pacer::new(target.rate_limit, target.burst()),
            slots: Semaphore::new(target.concurrency.max(1)),
            requests: AtomicUsize::new(0),
            retry_max: Duration::from_secs(target.retry_max_seconds),
            max_body: target.max_response_bytes,
            heavy: Semaphore::new(1),
            profile,
            halted: Mutex::new(None),
            reached: std::sync::atomic::AtomicBool::new(false),
            succeeded: AtomicUsize::new(0),
            bulk_wanted: target.bulk,
            concurrency: target.concurrency.max(1),
            bulk: tokio::sync::OnceCell::new(),
            stop: tokio_util::sync::CancellationToken::new(),
            lease: crate::state::lease::Gate::Open,
        })
    }

    /// The same client sending writes only under `lease` (this instance's on the target, when
    /// several share the state): none once it lapses, none without one, and none before a
    /// takeover's hold ends. Checked again just before each write leaves.
    pub fn holding(mut self, lease: crate::state::lease::Gate) -> Client {
        self.lease = lease;
        self
    }

    /// The same client refusing new writes once `stop` is cancelled: a write not yet sent
    /// (also one waiting in a bulk queue) fails as [`ScimError::is_interrupted`], and the
    /// engine counts its object as not attempted this cycle.
    pub fn stopping_on(mut self, stop: tokio_util::sync::CancellationToken) -> Client {
        self.stop = stop;
        self
    }

    /// The same client sending every write as a single call, whatever `bulk` says (one user
    /// provisioned on demand gains nothing from bulk).
    pub fn without_bulk(mut self) -> Client {
        self.bulk_wanted = false;
        self
    }

    /// What was configured and learned about this target.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// `host:port` of the target, for messages.
    pub fn authority(&self) -> String {
        let host = self.base.host_str().unwrap_or("?");
        match self.base.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }

    /// The secrets this client sends, so that no text from the target repeats them.
    fn secrets(&self) -> Vec<String> {
        self.auth.secrets()
    }

    fn interrupted(&self, method: &Method, route: &Route) -> ScimError {
        let detail = if self.lease_lapsed() {
            "not sent: this instance's lease on the target lapsed".to_owned()
        } else {
            "not sent: scimsync is shutting down".to_owned()
        };
        ScimError::new(method, &route.to_string(), Cause::NotSentShutdown, detail)
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

    pub(crate) fn lease_lapsed(&self) -> bool {
        self.lease.closed()
    }

    /// Why this client sends nothing more, if it does not.
    pub fn halted(&self) -> Option<Halt> {
        self.halted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops sending, for the first reason given.
    fn halt(&self, why: Halt) {
        let mut halted = self.halted.lock().unwrap_or_else(|p| p.into_inner());
        if halted.is_none() {
            tracing::warn!(target_name = %self.target, "{why}; nothing more is sent to it this cycle.");
            *halted = Some(why);
        }
    }

    /// How many HTTP requests this client has sent.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    /// `GET /ServiceProviderConfig`, with retries.
    pub async fn service_provider_config(&self) -> Result<Json, ScimError> {
        let route = Route::at("ServiceProviderConfig");
        self.call(Method::GET, &route, None)
            .await?
            .ok_or_else(|| self.invalid(Method::GET, &route, "an empty ServiceProviderConfig"))
    }

    /// `GET /Users?filter=…`: every resource the server returns for the filter.
    pub async fn search(&self, endpoint: Endpoint, filter: &str) -> Result<Vec<Json>, ScimError> {
        let route = Route::endpoint(endpoint).with("filter", filter);
        let body = self.call(Method::GET, &route, None).await?;
        let Some(body) = body else {
            return Err(self.invalid(Method::GET, &route, "empty answer to a query"));
        };
        let total = body.get("totalResults").map(Json::as_u64);
        // A list the client cannot read must not look like "no account": that would create a
        // duplicate.
        match (body.get("Resources"), total) {
            (Some(Json::Array(items)), Some(Some(_)) | None) => Ok(items.clone()),
            (Some(Json::Array(_)), Some(None)) => {
                Err(self.invalid(Method::GET, &route, "totalResults is not a number"))
            }
            (Some(_), _) => Err(self.invalid(Method::GET, &route, "Resources is not a list")),
            (None, Some(Some(0))) => Ok(Vec::new()),
            (None, Some(Some(n))) => Err(self.invalid(
                Method::GET,
                &route,
                &format!("the ListResponse says totalResults {n} but has no Resources"),
            )),
            (None, _) => Err(self.invalid(
                Method::GET,
                &route,
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
        let mut route = Route::endpoint(endpoint)
            .with("startIndex", start)
            .with("count", count);
        if endpoint == Endpoint::Groups {
            // Members are not needed to match, and a page of large groups would be huge.
            route = route.with("excludedAttributes", "members");
        }
        let body = self.call(Method::GET, &route, None).await?;
        let resources = match body.as_ref().and_then(|b| b.get("Resources")) {
            None => Vec::new(),
            Some(Json::Array(items)) => items.clone(),
            Some(_) => return Err(self.invalid(Method::GET, &route, "Resources is not a list")),
        };
        let total = body
            .as_ref()
            .and_then(|b| b.get("totalResults"))
            .and_then(Json::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                self.invalid(Method::GET, &route, "a ListResponse without totalResults")
            })?;
        Ok((resources, total))
    }

    pub async fn get(&self, endpoint: Endpoint, id: &ScimId) -> Result<Json, ScimError> {
        let route = Route::resource(endpoint, id);
        self.call(Method::GET, &route, None)
            .await?
            .ok_or_else(|| self.invalid(Method::GET, &route, "empty response"))
    }

    /// `POST`: creates a resource and returns its id and the resource as the server stored it.
    pub async fn create(
        &self,
        endpoint: Endpoint,
        resource: &Json,
    ) -> Result<(ScimId, Json), ScimError> {
        let route = Route::endpoint(endpoint);
        let body = self.call(Method::POST, &route, Some(resource)).await?;
        let Some(body) = body else {
            return Err(self.invalid(Method::POST, &route, "the created resource has no id"));
        };
        match ScimId::checked(body.get("id")) {
            Ok(id) => Ok((id, body)),
            Err(e) => Err(self.bad_id(Method::POST, &route, e)),
        }
    }

    /// `PATCH` with these operations, spelled as the target's profile says.
    pub async fn patch(
        &self,
        endpoint: Endpoint,
        id: &ScimId,
        ops: &[PatchOp],
    ) -> Result<(), ScimError> {
        let route = Route::resource(endpoint, id);
        let body = self.profile.patch_body(ops);
        self.call(Method::PATCH, &route, Some(&body))
            .await
            .map(|_| ())
    }

    /// PATCHes mapped attributes: those the target refuses are not sent, and a value-filtered
    /// path it takes only whole goes whole. When the PATCH is refused, its operations go one
    /// at a time, so that one refused attribute does not hold back the others; each refused
    /// one is returned (and kept in the profile), the first other failure is the error.
    pub async fn patch_attrs(
        &self,
        endpoint: Endpoint,
        id: &ScimId,
        ops: Vec<PatchOp>,
    ) -> Result<Vec<Refused>, ScimError> {
        let ops = self.as_taken(endpoint, id, ops).await?;
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let e = match self.patch(endpoint, id, &ops).await {
            Ok(()) => return Ok(Vec::new()),
            Err(e) if ops.len() == 1 => {
                return Ok(self
                    .settle_one(endpoint, id, &ops[0], e)
                    .await?
                    .into_iter()
                    .collect());
            }
            Err(e) if e.refuses_attribute() || e.status == Some(400) => e,
            Err(e) => return Err(e),
        };
        tracing::debug!(target_name = %self.target, error = %e, "A PATCH was refused; sending its operations one by one.");
        let (mut refused, mut failed) = (Vec::new(), None);
        for op in ops {
            let Err(e) = self.patch(endpoint, id, std::slice::from_ref(&op)).await else {
                continue;
            };
            match self.settle_one(endpoint, id, &op, e).await {
                Ok(r) => refused.extend(r),
                Err(e) if e.status == Some(400) => {
                    failed.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(refused),
        }
    }

    /// The operations as this target takes them: without the attributes it refuses, and
    /// with the whole attribute (from the resource as it is now, read once) where it takes a
    /// value-filtered path only whole.
    async fn as_taken(
        &self,
        endpoint: Endpoint,
        id: &ScimId,
        ops: Vec<PatchOp>,
    ) -> Result<Vec<PatchOp>, ScimError> {
        let refused = |op: &PatchOp| {
            op.attribute.as_deref().is_some_and(|a| {
                self.profile.refuses(a)
                    || (op.op == Verb::Remove && self.profile.refuses_removal(a))
            })
        };
        let mut ops: Vec<PatchOp> = ops.into_iter().filter(|op| !refused(op)).collect();
        let whole = |op: &PatchOp| {
            op.item.is_some()
                && op
                    .attribute
                    .as_deref()
                    .is_some_and(|a| self.profile.takes_whole(a))
        };
        if ops.iter().any(whole) {
            let resource = self.get(endpoint, id).await?;
            for op in ops.iter_mut().filter(|op| whole(op)) {
                if let (Some(item), Some(a)) = (&op.item, &op.attribute) {
                    *op = item.whole(&resource).for_attribute(a.clone());
                }
            }
        }
        Ok(ops)
    }

    /// One operation that failed alone. A removal of what is not there (`noTarget`) is done;
    /// an item the resource does not hold in that form (`noTarget`) is set in the whole
    /// attribute; a refused value-filtered path goes whole, learned for the target when that
    /// works; else a refused attribute is returned. Any other failure is the error.
    async fn settle_one(
        &self,
        endpoint: Endpoint,
        id: &ScimId,
        op: &PatchOp,
        e: ScimError,
    ) -> Result<Option<Refused>, ScimError> {
        if e.is_no_target() {
            return match (&op.op, &op.item) {
                (Verb::Remove, _) => Ok(None),
                (_, Some(item)) => self.patch_whole(endpoint, id, item).await.map(|()| None),
                _ => Err(e),
            };
        }
        if !e.refuses_attribute() {
            return Err(e);
        }
        if let (Some(item), Some(attribute)) = (&op.item, &op.attribute) {
            match self.patch_whole(endpoint, id, item).await {
                Ok(()) => {
                    tracing::info!(target_name = %self.target, attribute = %attribute, "The target takes this attribute only whole; sending it so from now on.");
                    self.profile.learn_whole(attribute);
                    return Ok(None);
                }
                Err(e) if e.refuses_attribute() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Some(self.refused(op, &e)))
    }

    /// Sends an item edit as the whole attribute, built from the resource as it is now.
    async fn patch_whole(
        &self,
        endpoint: Endpoint,
        id: &ScimId,
        item: &patch::ItemEdit,
    ) -> Result<(), ScimError> {
        let resource = self.get(endpoint, id).await?;
        self.patch(endpoint, id, &[item.whole(&resource)]).await
    }

    fn refused(&self, op: &PatchOp, e: &ScimError) -> Refused {
        let attribute = op.attribute.clone().unwrap_or_default();
        let why = e.to_string();
        if op.op == Verb::Remove {
            // A refused clear says nothing of the attribute's new values (django-scim2 takes
            // no `remove` at all, yet replaces the name parts).
            if self.profile.refuse_removal(&attribute, &why) {
                tracing::warn!(target_name = %self.target, attribute = %attribute, error = %why, "The target refuses to clear this attribute; clears are not sent again until a full sync.");
            }
            return Refused { attribute, why };
        }
        if self.profile.refuse(&attribute, &why) {
            tracing::warn!(target_name = %self.target, attribute = %attribute, error = %why, "The target refuses this attribute; it is not sent again until a full sync.");
        }
        Refused { attribute, why }
    }

    pub async fn delete(&self, endpoint: Endpoint, id: &ScimId) -> Result<(), ScimError> {
        let route = Route::resource(endpoint, id);
        self.call(Method::DELETE, &route, None).await.map(|_| ())
    }

    /// One `GET` without retries, for `scimsync check`: a check reports at once.
    pub async fn probe(&self, route: &Route) -> Result<Json, ScimError> {
        self.attempt(Method::GET, route, None)
            .await
            .map_err(|(e, _)| e)?
            .ok_or_else(|| self.invalid(Method::GET, route, "empty response"))
    }

    fn invalid(&self, method: Method, route: &Route, why: &str) -> ScimError {
        let detail = format!("target {:?} sent an invalid response: {why}", self.target.0);
        ScimError::new(method, &route.to_string(), Cause::Invalid, detail)
    }

    /// The error of an answer whose id cannot be used.
    pub(crate) fn bad_id(&self, method: Method, route: &Route, e: BadId) -> ScimError {
        self.invalid(method, route, &self.shown(&e.to_string()))
    }

    /// One call with rate limit, concurrency cap and retries on transient failures.
    async fn call(
        &self,
        method: Method,
        route: &Route,
        body: Option<&Json>,
    ) -> Result<Option<Json>, ScimError> {
        let started = tokio::time::Instant::now();
        let succeeded_before = self.succeeded.load(Ordering::Relaxed);
        let exhausted = std::sync::atomic::AtomicBool::new(false);
        let result = backoff::future::retry(retry::policy(self.retry_max), || async {
            match self.attempt_routed(method.clone(), route, body).await {
                Ok(v) => {
                    self.succeeded.fetch_add(1, Ordering::Relaxed);
                    Ok(v)
                }
                Err((e, _))
                    if e.cause == Cause::Connect
                        && !self.reached.load(Ordering::Relaxed)
                        && started.elapsed() >= UNREACHED_BUDGET =>
                {
                    self.halt(Halt::Unreachable(e.detail.clone()));
                    Err(backoff::Error::Permanent(e.halted()))
                }
                Err((e, retry_after)) if e.retryable && repeatable(&method, &e) => {
                    // backoff honours a Retry-After without looking at its time budget, so
                    // the budget is kept here: no wait, and no retry, beyond retry_max_seconds.
                    let left = self.retry_max.saturating_sub(started.elapsed());
                    if let Some(wait) = retry_after.filter(|w| *w > left) {
                        exhausted.store(true, Ordering::Relaxed);
                        return Err(backoff::Error::Permanent(e.asked_to_wait(wait, self.retry_max)));
                    }
                    if left.is_zero() {
                        exhausted.store(true, Ordering::Relaxed);
                        return Err(backoff::Error::Permanent(e));
                    }
                    if e.status == Some(429) {
                        // Every request to this target waits, not only this one.
                        self.pacer
                            .throttle(retry_after.unwrap_or(retry::DEFAULT_THROTTLE).min(left));
                    }
                    tracing::debug!(target_name = %self.target, error = %e, "Retrying a SCIM call.");
                    Err(backoff::Error::Transient { err: e, retry_after })
                }
                Err((e, _)) if e.is_auth() && !e.not_sent() => {
                    self.halt(Halt::Credentials(e.to_string()));
                    Err(backoff::Error::Permanent(e.halted()))
                }
                Err((e, _)) => Err(backoff::Error::Permanent(e)),
            }
        })
        .await;
        if let Err(e) = &result {
            // backoff itself gives up on a transient error once its budget is spent.
            let spent = e.retryable && !e.not_sent() && started.elapsed() >= self.retry_max;
            if (exhausted.load(Ordering::Relaxed) || spent)
                && self.succeeded.load(Ordering::Relaxed) == succeeded_before
            {
                self.halt(Halt::Unavailable(e.to_string()));
            }
        }
        result
    }

    /// The error of a call not sent because the client halted earlier in this cycle.
    fn not_sent(&self, method: &Method, route: &Route) -> Option<ScimError> {
        let halt = self.halted()?;
        let detail = format!("not sent: {halt} earlier in this cycle");
        let mut e = ScimError::new(method, &route.to_string(), Cause::NotSentHalted, detail);
        if matches!(halt, Halt::Credentials(_)) {
            e.status = Some(401);
        }
        Some(e)
    }

    /// One attempt of a call: a write goes through the bulk dispatcher when bulk is on, and is
    /// answered exactly as a single call would be.
    async fn attempt_routed(
        &self,
        method: Method,
        route: &Route,
        body: Option<&Json>,
    ) -> http::Attempt {
        let write =
            matches!(method, Method::POST | Method::PATCH | Method::DELETE) && route.is_resource();
        if write {
            if let Some(hold) = self.lease.hold() {
                tokio::time::sleep(hold).await;
            }
        }
        if write && (self.stop.is_cancelled() || self.lease_lapsed()) {
            return Err((self.interrupted(&method, route), None));
        }
        if write {
            if let Some(d) = self.bulk().await {
                if let Some(answer) = self.via_bulk(d, &method, route, body).await {
                    return answer;
                }
            }
        }
        self.attempt(method, route, body).await
    }
}

/// Whether a failed call may simply be sent again. A `POST` that was never sent (no access
/// token could be had, no connection made) may; a `POST` that may have reached the server (a
/// timeout, a reset, a 5xx) is not: it could create a second account. The caller matches
/// again first, and only then creates (see the engine's create loop).
fn repeatable(method: &Method, e: &ScimError) -> bool {
    *method != Method::POST || e.never_reached() || e.status == Some(429)
}
