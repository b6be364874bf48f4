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
        // The waits above (a slot, the rate, a token) may have outlasted this instance's lease
        // on the target: a write leaves only while it is surely held.
        let write = matches!(*method, Method::POST | Method::PATCH | Method::DELETE);
        if write && self.lease_lapsed() {
            return Err((self.interrupted(method, route), None));
        }
        let Some(req) = self.request(method, route, body, bearer) else {
            let why = "the token holds characters not allowed in an HTTP header";
            return Err(fail(Cause::Invalid, why.into()));
        };
        let sent = std::time::Instant::now();
        let note = |status: Option<u16>| {
            crate::telemetry::http_request(&self.target.0, method, status, sent.elapsed());
            // The provisioning log's record of this call (when an operation collects them).
            audit::note_call(method.as_str(), &shown, status, sent.elapsed());
        };
        let counted = || {
            self.requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                note(None);
                let cause = send_cause(&e);
                // A request that never connected was never sent.
                if cause != Cause::Connect {
                    counted();
                }
                return Err(fail(cause, transport_text(cause, &self.authority(), &e)));
            }
        };
        counted();
        self.reached
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let status = resp.status();
        let retry_after = super::retry::retry_after(resp.headers());
        let content_type = header_text(resp.headers(), reqwest::header::CONTENT_TYPE);
        let location = header_text(resp.headers(), reqwest::header::LOCATION);
        let mut heavy = None;
        let bytes = read_bounded(resp, self.max_body, &self.heavy, &mut heavy).await;
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
                // reqwest's own text ("error decoding response body") hides the cause: a
                // timeout while the body trickles in, a reset.
                let detail = format!("reading the body: {}", with_sources(&e.without_url()));
                let e =
                    ScimError::new(method, &shown, Cause::Transport, detail).with_status(status);
                return Err((e, None));
            }
        };
        // Parsed, a JSON value takes far more memory than its text (`[0,0,…]`: ~40 times):
        // the values are counted first, and many are parsed one answer at a time.
        let values = json_values(&bytes);
        if values > self.max_body / BYTES_PER_VALUE {
            let detail = format!(
                "the answer holds more than {} JSON values (one per {BYTES_PER_VALUE} bytes of max_response_bytes = {}); refused",
                self.max_body / BYTES_PER_VALUE,
                self.max_body
            );
            let e = ScimError::new(method, &shown, Cause::Invalid, detail).with_status(status);
            return Err((e, None));
        }
        if values > LIGHT_VALUES && heavy.is_none() {
            heavy = self.heavy.acquire().await.ok();
        }
        let answer = self.answer(method, &shown, status, &content_type, &bytes, retry_after);
        drop(heavy);
        answer
    }

    /// The request, with the bearer token marked sensitive (never printed by the HTTP
    /// stack's debug or trace output); `None` when the token cannot be a header value.
    fn request(
        &self,
        method: &Method,
        route: &Route,
        body: Option<&Json>,
        bearer: &super::auth::Bearer,
    ) -> Option<reqwest::RequestBuilder> {
        let value = format!("Bearer {}", bearer.value.expose());
        let mut auth = reqwest::header::HeaderValue::from_str(&value).ok()?;
        auth.set_sensitive(true);
        let req = self
            .http
            .request(method.clone(), route.url(&self.base))
            .header(reqwest::header::AUTHORIZATION, auth)
            .header(
                reqwest::header::ACCEPT,
                "application/scim+json, application/json",
            );
        Some(match body {
            // Serialising a serde_json::Value cannot fail.
            Some(b) => req
                .header(reqwest::header::CONTENT_TYPE, SCIM_JSON)
                .body(serde_json::to_vec(b).unwrap_or_default()),
            None => req,
        })
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
        // An empty detail (django-scim2's 501 on a PATCH) says no more than the status.
        let detail = match StatusCode::from_u16(code)
            .ok()
            .and_then(|c| c.canonical_reason())
        {
            Some(reason) if detail.trim().is_empty() => reason.to_owned(),
            _ => detail,
        };
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

/// What kind of failure a request that got no answer had.
fn send_cause(e: &reqwest::Error) -> Cause {
    if e.is_timeout() {
        Cause::Timeout
    } else if e.is_connect() {
        Cause::Connect
    } else {
        Cause::Transport
    }
}

/// An HTTP status as SCIM bodies give it: a string (`"404"`, RFC 7644) or, from some
/// servers, a number.
pub(crate) fn status_number(s: &Json) -> Option<u16> {
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
    append_sources(what, e)
}

/// An error's text followed by the chain of reasons below it.
fn with_sources(e: &reqwest::Error) -> String {
    append_sources(e.to_string(), e)
}

fn append_sources(mut text: String, e: &reqwest::Error) -> String {
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

/// An answer larger than this (or holding more than [`LIGHT_VALUES`] JSON values) is heavy:
/// a client reads and parses one heavy answer at a time, so that its memory is bounded by one
/// `max_response_bytes` answer and `concurrency` light ones, not `concurrency` heavy ones.
pub(super) const LIGHT_BYTES: usize = 1 << 20;
const LIGHT_VALUES: usize = 1 << 16;
/// An answer may hold at most one JSON value per this many bytes of `max_response_bytes`
/// (1 Mi values for the default 16 MiB, far above a page of 1,000 users or a group of 100,000
/// members): a SCIM user spends some 25 bytes on a value, `[0,0,0,…]` spends 2.
const BYTES_PER_VALUE: usize = 16;

/// About how many values a JSON text holds: its containers and separators outside strings,
/// plus one.
fn json_values(bytes: &[u8]) -> usize {
    let (mut n, mut in_string, mut escaped) = (1usize, false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b',' | b'[' | b'{' => n += 1,
                _ => {}
            }
        }
    }
    n
}

enum Read {
    TooLarge,
    Failed(reqwest::Error),
}

/// The body, read chunk by chunk up to `max` bytes: a larger (or endless) body fails the call
/// instead of filling the memory. Beyond [`LIGHT_BYTES`] the read goes on under the client's
/// `heavy` permit, kept in `permit` for the parse.
async fn read_bounded<'a>(
    mut resp: reqwest::Response,
    max: usize,
    heavy: &'a tokio::sync::Semaphore,
    permit: &mut Option<tokio::sync::SemaphorePermit<'a>>,
) -> Result<Vec<u8>, Read> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(Read::TooLarge);
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(Read::Failed)? {
        let needed = out.len() + chunk.len();
        if needed > max {
            return Err(Read::TooLarge);
        }
        if needed > LIGHT_BYTES && permit.is_none() {
            *permit = heavy.acquire().await.ok();
        }
        if needed > out.capacity() {
            // Doubling, but never beyond `max`: a body near the bound costs it, not twice it.
            let capacity = needed.max(out.capacity().saturating_mul(2)).min(max);
            out.reserve_exact(capacity - out.len());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::json_values;

    #[test]
    fn json_values_counts_containers_and_separators_outside_strings() {
        assert_eq!(json_values(b"0"), 1);
        assert_eq!(json_values(br#"{"a":[1,2],"b":"x,[{"}"#), 5);
        assert_eq!(json_values(br#"["a\",",1]"#), 3);
        let zeros = format!("[0{}]", ",0".repeat(999));
        assert_eq!(json_values(zeros.as_bytes()), 1001);
    }
}
