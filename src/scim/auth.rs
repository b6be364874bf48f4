//! How a target's requests are authorised: a static bearer token, or an access token obtained
//! with OAuth 2.0 client credentials (RFC 6749 §4.4), cached and refreshed before it expires.

use crate::config::TargetConfig;
use crate::secret::{self, Secret};
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// A token is refreshed once less than this much of its life remains…
const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// …or less than this share of it, for short-lived tokens.
const REFRESH_SHARE: u32 = 10;
/// The lifetime assumed when the token endpoint does not say (`expires_in` is optional).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// The credentials of one target.
pub enum Auth {
    Bearer(Secret),
    OAuth(Box<OAuth>),
}

/// A bearer token to send, with the generation it belongs to (so that a 401 discards the
/// token that was rejected, not a newer one another call already fetched).
#[derive(Clone, Debug)]
pub struct Bearer {
    pub value: Secret,
    generation: u64,
}

/// Why no access token could be obtained. The message names the target and the token URL,
/// never the secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("target {target:?}: OAuth token request to {token_url}: {detail}")]
pub struct TokenError {
    pub target: String,
    pub token_url: String,
    /// The token endpoint's HTTP status, when it answered.
    pub status: Option<u16>,
    pub detail: String,
    /// True for failures worth retrying (no answer, 5xx); false when the credentials or the
    /// request were rejected.
    pub retryable: bool,
}

/// OAuth 2.0 client credentials of one target, with the access token cached.
pub struct OAuth {
    target: String,
    token_url: String,
    client_id: String,
    client_secret: Secret,
    scope: Option<String>,
    /// Held while a token is fetched, so that concurrent calls share one refresh.
    cached: Mutex<Option<Cached>>,
    generation: AtomicU64,
    /// The token endpoint refused the credentials: calls waiting for a token get the same
    /// answer rather than asking again (a client lives one cycle).
    refused: std::sync::Mutex<Option<TokenError>>,
    /// The access tokens issued to this client, so that no text from the target repeats one.
    issued: std::sync::Mutex<Vec<Secret>>,
}

struct Cached {
    bearer: Bearer,
    refresh_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TokenErrorResponse {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

impl Auth {
    /// Reads the target's secret (the error names the file or variable, never the value).
    pub fn from_config(target: &TargetConfig) -> Result<Auth, super::ClientError> {
        let failed = |what: &'static str| {
            move |e: secret::SecretError| super::ClientError::Credentials {
                what,
                message: e.to_string(),
            }
        };
        match &target.token_url {
            None => secret::read(target.token_file.as_deref(), target.token_env.as_deref())
                .map(Auth::Bearer)
                .map_err(failed("token")),
            Some(token_url) => {
                let client_secret = secret::read(
                    target.client_secret_file.as_deref(),
                    target.client_secret_env.as_deref(),
                )
                .map_err(failed("client secret"))?;
                Ok(Auth::OAuth(Box::new(OAuth {
                    target: target.name.clone(),
                    token_url: token_url.clone(),
                    client_id: target.client_id.clone().unwrap_or_default(),
                    client_secret,
                    scope: target.token_scope.clone(),
                    cached: Mutex::new(None),
                    generation: AtomicU64::new(0),
                    refused: std::sync::Mutex::new(None),
                    issued: std::sync::Mutex::new(Vec::new()),
                })))
            }
        }
    }

    /// The token to send now, fetching a new access token when the cached one is missing or
    /// close to its expiry.
    pub async fn bearer(&self, http: &reqwest::Client) -> Result<Bearer, TokenError> {
        match self {
            Auth::Bearer(token) => Ok(Bearer {
                value: token.clone(),
                generation: 0,
            }),
            Auth::OAuth(oauth) => oauth.bearer(http).await,
        }
    }

    /// The secrets this client may send (a token, a client secret and the access tokens it
    /// was issued, the HTTP Basic form of the client credentials), longest first: text from
    /// the target is scrubbed of them before it is printed or stored.
    pub fn secrets(&self) -> Vec<String> {
        let mut out = match self {
            Auth::Bearer(token) => vec![token.expose().to_owned()],
            Auth::OAuth(o) => o.secrets(),
        };
        out.retain(|s| s.len() >= 4);
        out.sort_by_key(|s| std::cmp::Reverse(s.len()));
        out
    }

    /// Whether a 401 may be cured by fetching a new token.
    pub fn refreshable(&self) -> bool {
        matches!(self, Auth::OAuth(_))
    }

    /// The target rejected `used`: forget it, unless a newer token replaced it already.
    pub async fn rejected(&self, used: &Bearer) {
        if let Auth::OAuth(oauth) = self {
            let mut cached = oauth.cached.lock().await;
            if cached
                .as_ref()
                .is_some_and(|c| c.bearer.generation == used.generation)
            {
                *cached = None;
            }
        }
    }
}

/// How long before its expiry a token is replaced.
fn refresh_margin(lifetime: Duration) -> Duration {
    REFRESH_MARGIN.min(lifetime / REFRESH_SHARE)
}

impl OAuth {
    /// The client secret, its HTTP Basic form and the access tokens issued so far.
    fn secrets(&self) -> Vec<String> {
        use base64::Engine as _;
        let basic = format!(
            "{}:{}",
            urlencoding::encode(&self.client_id),
            urlencoding::encode(self.client_secret.expose())
        );
        let mut v = vec![
            self.client_secret.expose().to_owned(),
            base64::engine::general_purpose::STANDARD.encode(basic),
        ];
        let issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        v.extend(issued.iter().map(|s| s.expose().to_owned()));
        v
    }

    async fn bearer(&self, http: &reqwest::Client) -> Result<Bearer, TokenError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| Instant::now() < c.refresh_at) {
            return Ok(c.bearer.clone());
        }
        let refused = || self.refused.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = refused().clone() {
            return Err(e);
        }
        let fetched = self.fetch(http).await;
        crate::telemetry::token_request(&self.target, fetched.is_ok());
        let (value, lifetime) = match fetched {
            Ok(v) => v,
            Err(e) => {
                if !e.retryable {
                    *refused() = Some(e.clone());
                }
                return Err(e);
            }
        };
        self.issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(value.clone());
        let margin = refresh_margin(lifetime);
        let bearer = Bearer {
            value,
            generation: self.generation.fetch_add(1, Ordering::Relaxed) + 1,
        };
        *cached = Some(Cached {
            bearer: bearer.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(margin),
        });
        tracing::debug!(target_name = %self.target, expires_in = lifetime.as_secs(), "Obtained an OAuth access token.");
        Ok(bearer)
    }

    /// One token request: `grant_type=client_credentials`, the client authenticated with HTTP
    /// Basic (RFC 6749 §2.3.1).
    async fn fetch(&self, http: &reqwest::Client) -> Result<(Secret, Duration), TokenError> {
        let fail = |status: Option<u16>, detail: String, retryable: bool| TokenError {
            target: self.target.clone(),
            token_url: self.token_url.clone(),
            status,
            detail,
            retryable,
        };
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        // RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
        let id = urlencoding::encode(&self.client_id);
        let secret = urlencoding::encode(self.client_secret.expose());
        let resp = http
            .post(&self.token_url)
            .basic_auth(id, Some(secret))
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| fail(None, format!("no answer: {}", e.without_url()), true))?;
        let status = resp.status();
        let bytes = read_token_answer(resp)
            .await
            .map_err(|why| fail(Some(status.as_u16()), why, true))?;
        if !status.is_success() {
            let why = match serde_json::from_slice::<TokenErrorResponse>(&bytes) {
                Ok(e) => match e.error_description {
                    Some(d) => format!("{} ({d})", e.error),
                    None => e.error,
                },
                Err(_) => String::from_utf8_lossy(&bytes).trim().to_owned(),
            };
            // The token endpoint is a third party too: its text is escaped and scrubbed.
            let why = crate::text::untrusted(&why, &self.secrets());
            return Err(fail(
                Some(status.as_u16()),
                format!("{status}: {why}"),
                status.is_server_error() || status.as_u16() == 429,
            ));
        }
        // Never echo the body of a successful answer: it holds the token.
        let token: TokenResponse = serde_json::from_slice(&bytes).map_err(|_| {
            fail(
                Some(status.as_u16()),
                "the answer is not a JSON token response with access_token".to_owned(),
                false,
            )
        })?;
        if let Some(kind) = token.token_type.as_deref() {
            if !kind.eq_ignore_ascii_case("bearer") {
                return Err(fail(
                    Some(status.as_u16()),
                    format!("token_type {kind:?} is not Bearer"),
                    false,
                ));
            }
        }
        if token.access_token.is_empty() {
            return Err(fail(
                Some(status.as_u16()),
                "the access_token is empty".to_owned(),
                false,
            ));
        }
        let lifetime = token
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_LIFETIME);
        Ok((Secret::new(token.access_token), lifetime))
    }
}

/// The most of a token endpoint's answer that is read: a token response is a few kilobytes.
const MAX_TOKEN_ANSWER: usize = 64 << 10;

/// A token endpoint's answer, read up to [`MAX_TOKEN_ANSWER`].
async fn read_token_answer(mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading the answer: {}", e.without_url()))?
    {
        if bytes.len() + chunk.len() > MAX_TOKEN_ANSWER {
            return Err(format!(
                "the answer is larger than {MAX_TOKEN_ANSWER} bytes; refused"
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refresh_margin_is_a_minute_or_a_tenth_of_a_short_life() {
        let margin = |life: u64| refresh_margin(Duration::from_secs(life));
        assert_eq!(margin(3600), Duration::from_secs(60));
        assert_eq!(margin(300), Duration::from_secs(30));
        assert_eq!(margin(2), Duration::from_millis(200));
    }

    #[test]
    fn a_token_error_names_the_target_and_url() {
        let e = TokenError {
            target: "app".into(),
            token_url: "https://idp.example/token".into(),
            status: Some(401),
            detail: "401 Unauthorized: invalid_client".into(),
            retryable: false,
        };
        assert_eq!(
            e.to_string(),
            "target \"app\": OAuth token request to https://idp.example/token: 401 Unauthorized: invalid_client"
        );
    }
}
