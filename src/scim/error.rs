//! A failed SCIM call, typed by what went wrong, with what the server said.

/// What kind of failure a [`ScimError`] is: callers decide on this, never on its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The server answered with an error status (or a 2xx carrying a SCIM error body).
    Status,
    /// No connection could be made (refused, unreachable, DNS, TLS): nothing reached the server.
    Connect,
    /// No answer came within the request timeout; the server may still apply the call.
    Timeout,
    /// The request was sent but failed otherwise (reset, a broken body).
    Transport,
    /// The answer cannot be used (not JSON, no id, a malformed list).
    Invalid,
    /// The OAuth token endpoint, not the target, failed or refused the client credentials.
    TokenRequest,
    /// Not sent: the target had rejected the credentials, or could not be reached, earlier
    /// in this cycle (see [`super::Halt`]).
    NotSentHalted,
    /// Not sent: scimsync is shutting down.
    NotSentShutdown,
    /// The outcome of a write is unknown (a bulk request carrying it was abandoned or lost).
    Unknown,
}

/// A failed SCIM call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{method} {path}: {}{}", .status.map(|s| format!("{s} ")).unwrap_or_default(), .detail)]
pub struct ScimError {
    pub method: String,
    pub path: String,
    pub status: Option<u16>,
    pub scim_type: Option<String>,
    pub detail: String,
    pub retryable: bool,
    pub cause: Cause,
}

impl ScimError {
    /// An error of this cause, without a status.
    pub fn new(method: impl ToString, path: &str, cause: Cause, detail: String) -> ScimError {
        ScimError {
            method: method.to_string(),
            path: path.to_owned(),
            status: None,
            scim_type: None,
            detail,
            retryable: matches!(
                cause,
                Cause::Connect | Cause::Timeout | Cause::Transport | Cause::Unknown
            ),
            cause,
        }
    }

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
        self.cause == Cause::Timeout
    }
    /// A write never sent because scimsync is shutting down.
    pub fn is_interrupted(&self) -> bool {
        self.cause == Cause::NotSentShutdown
    }
    /// The same error, as the one that halted its client: the cycle reports it once, for the
    /// target, rather than for the object whose call met it first.
    pub fn halted(mut self) -> ScimError {
        self.cause = Cause::NotSentHalted;
        self.retryable = false;
        self
    }

    /// Not sent because the target refused the credentials or could not be reached earlier.
    pub fn is_halted(&self) -> bool {
        self.cause == Cause::NotSentHalted
    }
    /// Never sent at all (credentials rejected earlier, target unreachable, or shutdown).
    pub fn not_sent(&self) -> bool {
        matches!(self.cause, Cause::NotSentHalted | Cause::NotSentShutdown)
    }
    /// The OAuth token endpoint, not the target, failed or refused the client credentials.
    pub fn is_token_request(&self) -> bool {
        self.cause == Cause::TokenRequest
    }
    /// Nothing reached the server: a write may be sent again without matching first.
    pub fn never_reached(&self) -> bool {
        self.cause == Cause::Connect || self.not_sent() || self.is_token_request()
    }
    /// The same error, saying the target asked for a longer wait than the retries had left.
    pub fn asked_to_wait(
        mut self,
        wait: std::time::Duration,
        budget: std::time::Duration,
    ) -> ScimError {
        self.detail = format!(
            "{}; the target asked to wait {} seconds (Retry-After), beyond retry_max_seconds = {}",
            self.detail,
            wait.as_secs(),
            budget.as_secs()
        );
        self.retryable = false;
        self
    }

    /// The target refuses the attribute an operation names, whatever its value: 501, or a 400
    /// saying the path cannot be used (`invalidPath`) or the attribute not written
    /// (`mutability`). Any other 400 is about the value of one object; `noTarget` about one
    /// resource (see [`ScimError::is_no_target`]).
    pub fn refuses_attribute(&self) -> bool {
        match self.status {
            Some(501) => true,
            Some(400) => matches!(
                self.scim_type.as_deref(),
                Some("invalidPath" | "mutability")
            ),
            _ => false,
        }
    }

    /// A 400 `noTarget`: the path selects nothing in this resource (RFC 7644 §3.5.2), such as
    /// an `emails[type eq "work"]` item on an account whose address has no type.
    pub fn is_no_target(&self) -> bool {
        self.status == Some(400) && self.scim_type.as_deref() == Some("noTarget")
    }
}
