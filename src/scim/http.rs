//! One request to a target and what its answer means: the body read up to a bound, a redirect
//! refused, a SCIM error body parsed into a [`ScimError`].

use super::error::{Cause, ScimError};
use super::route::Route;
use super::Client;
use crate::audit;
use reqwest::{Method, StatusCode};
use serde_json::Value as Json;
use std::time::Duration;

const SCIM_JSON: &str = "application/scim+json";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// What one attempt gives: the body, or the error with the server's `Retry-After`.
pub(crate) type Attempt = Result<Option<Json>, (ScimError, Option<Duration>)>;

impl Client {
    /// One request: pacing, the token, the call, its answer. With OAuth, a 401 discards the
    /// access token and the request is sent once more with a new one.
    pub(super) async fn attempt(
        &self,
        method: Method,
        route: &Route,
        body: Option<&Json>,
    ) -> Attempt {
        if let Some(e) = self.not_sent(&method, route) {
            return Err((e, None));
        }
        let mut used = None;
        match self.attempt_with(&method, route, body, &mut used).await {
            Err((e, _))
                if e.status == Some(401) && e.cause == Cause::Status && self.auth.refreshable() =>
            {
                tracing::debug!(target_name = %self.target, "The target rejected the access token; fetching a new one.");
                if let Some(bearer) = &used {
                    self.auth.rejected(bearer).await;
                }
                self.attempt_with(&method, route, body, &mut None).await
            }
            other => other,
        }
    }

    async fn attempt_with(
        &self,
        method: &Method,
        route: &Route,
        body: Option<&Json>,
        used: &mut Option<super::auth::Bearer>,
    ) -> Attempt {
        let shown = route.to_string();
        let fail = |cause, detail: String| (ScimError::new(method, &shown, cause, detail), None);
        let Ok(_slot) = self.slots.acquire().await else {
            return Err(fail(Cause::Invalid, "client closed".into()));
        };
        if let Some(e) = self.not_sent(method, route) {
            return Err((e, None));
        }
        let paced = std::time::Instant::now();
        self.pacer.ready().await;
        crate::telemetry::rate_limit_wait(&self.target.0, paced.elapsed());
        // Asked for after the wait, so that a short-lived token does not expire in the queue.
        let bearer = match self.auth.bearer(&self.http).await {
            Ok(b) => used.insert(b),
            Err(e) => return Err((ScimError::from(e), None)),
        };
        let Ok(mut auth) =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", bearer.value.expose()))
        else {
            let why = "the token holds characters not allowed in an HTTP header";
            return Err(fail(Cause::Invalid, why.into()));
        };
        // Sensitive values are never printed by the HTTP stack's debug or trace output.
        auth.set_sensitive(true);
        let mut req = self
            .http
            .request(method.clone(), route.url(&self.base))
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
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sent = std::time::Instant::now();
        let note = |status: Option<u16>| {
            crate::telemetry::http_request(&self.target.0, method, status, sent.elapsed());
            // The provisioning log's record of this call (when an operation collects them).
            audit::note_call(method.as_str(), &shown, status, sent.elapsed());
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                note(None);
                let cause = if e.is_timeout() {
                    Cause::Timeout
                } else if e.is_connect() {
                    Cause::Connect
                } else {
                    Cause::Transport
                };
                return Err(fail(cause, transport_text(cause, &self.authority(), &e)));
            }
        };
        let status = resp.status();
        let retry_after = super::retry::retry_after(resp.headers());
        let content_type = header_text(resp.headers(), reqwest::header::CONTENT_TYPE);
        let location = header_text(resp.headers(), reqwest::header::LOCATION);
        let bytes = read_bounded(resp, self.max_body).await;
        note(Some(status.as_u16()));
        if status.is_redirection() {
            let detail = format!(
                "the target redirected to {}; scimsync does not follow redirects (set the target's url to where it should go)",
                self.shown(if location.is_empty() { "(no Location)" } else { &location })
            );
            let e = ScimError::new(method, &shown, Cause::Invalid, detail).with_status(status);
            return Err((e, None));
        }
        let bytes = match bytes {
            Ok(b) => b,
            Err(Read::TooLarge) => {
                let detail = format!(
                    "the answer is larger than max_response_bytes = {}; refused",
                    self.max_body
                );
                let e = ScimError::new(method, &shown, Cause::Invalid, detail).with_status(status);
                return Err((e, None));
            }
            Err(Read::Failed(e)) => {
                let detail = format!("reading the body: {}", e.without_url());
                let e =
                    ScimError::new(method, &shown, Cause::Transport, detail).with_status(status);
                return Err((e, None));
            }
        };
        self.answer(method, &shown, status, &content_type, &bytes, retry_after)
    }

    /// What an answer means: its JSON body, or the error it carries.
    fn answer(
        &self,
        method: &Method,
        shown: &str,
        status: StatusCode,
        content_type: &str,
        bytes: &[u8],
        retry_after: Option<Duration>,
    ) -> Attempt {
        let parsed: Option<Json> = if bytes.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            match serde_json::from_slice(bytes) {
                Ok(v) => Some(v),
                Err(_) if status.is_success() => {
                    let detail = format!(
                        "target {:?} answered with a body that is not JSON ({:?}): {}",
                        self.target.0,
                        self.shown(content_type),
                        self.excerpt(bytes)
                    );
                    let e =
                        ScimError::new(method, shown, Cause::Invalid, detail).with_status(status);
                    return Err((e, None));
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
        let scim_type = parsed
            .as_ref()
            .and_then(|b| b.get("scimType"))
            .and_then(Json::as_str)
            .map(|t| self.shown(t));
        let detail = match parsed
            .as_ref()
            .and_then(|b| b.get("detail"))
            .and_then(Json::as_str)
        {
            Some(d) => self.shown(d),
            None => self.excerpt(bytes),
        };
        // A 200 carrying an error body reports its status inside.
        let code = parsed
            .as_ref()
            .and_then(|b| b.get("status"))
            .and_then(status_number)
            .filter(|_| status.is_success())
            .unwrap_or(status.as_u16());
        let detail = match (&scim_type, code) {
            (Some(t), _) => format!("{t}: {detail}"),
            (None, 401 | 403) => format!("authentication rejected: {detail}"),
            _ => detail,
        };
        let e = ScimError {
            method: method.to_string(),
            path: shown.to_owned(),
            status: Some(code),
            scim_type,
            detail,
            retryable: code == StatusCode::TOO_MANY_REQUESTS.as_u16()
                || (code >= 500 && code != 501 && code != 505),
            cause: Cause::Status,
        };
        Err((e, retry_after))
    }

    /// Text from the target as it may be stored and printed: control characters escaped,
    /// secrets in use replaced, bounded.
    pub(crate) fn shown(&self, text: &str) -> String {
        crate::text::untrusted(text, &self.secrets())
    }

    /// The beginning of a body, as [`Client::shown`] makes it.
    fn excerpt(&self, bytes: &[u8]) -> String {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim();
        if text.is_empty() {
            "(empty body)".to_owned()
        } else {
            self.shown(text)
        }
    }
}

impl ScimError {
    fn with_status(mut self, status: StatusCode) -> ScimError {
        self.status = Some(status.as_u16());
        self
    }
}

fn status_number(s: &Json) -> Option<u16> {
    s.as_str()
        .and_then(|s| s.trim().parse().ok())
        .or_else(|| s.as_u64().and_then(|n| u16::try_from(n).ok()))
}

fn header_text(headers: &reqwest::header::HeaderMap, name: reqwest::header::HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// A transport failure in words: the cause, the address, and the chain of reasons below
/// reqwest's own message (`tcp connect error: Connection refused`).
fn transport_text(cause: Cause, authority: &str, e: &reqwest::Error) -> String {
    let what = match cause {
        Cause::Timeout => format!("timed out waiting for {authority}"),
        Cause::Connect => format!("cannot connect to {authority}"),
        _ => format!("request to {authority} failed"),
    };
    let mut text = what;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let m = s.to_string();
        if !text.contains(&m) {
            text.push_str(": ");
            text.push_str(&m);
        }
        source = s.source();
    }
    text
}

enum Read {
    TooLarge,
    Failed(reqwest::Error),
}

/// The body, read chunk by chunk up to `max` bytes: a larger (or endless) body fails the call
/// instead of filling the memory.
async fn read_bounded(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, Read> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(Read::TooLarge);
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(Read::Failed)? {
        if out.len() + chunk.len() > max {
            return Err(Read::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
