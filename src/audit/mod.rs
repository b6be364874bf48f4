//! The provisioning log: one record per decision, with the HTTP calls it made.
//!
//! Each [`Entry`] is emitted as a structured tracing event (target `scimsync::audit`), so
//! journald or a log pipeline receives it with its fields, and is kept in the state's log tree
//! (`state::log`) for `scimsync logs`. Values of `Redact()` mappings never reach an entry:
//! they are replaced by [`REDACTED`] before the entry is built.
//!
//! The HTTP calls of a decision are gathered without threading a parameter through the SCIM
//! client: the engine runs each operation inside [`collect`], a task-local collector that
//! [`note_call`] (called by `scim::Client` for every request it sends) appends to, and
//! [`take_calls`] drains when the decision is recorded.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

/// What a `Redact()` mapping's value is replaced with in a record.
pub const REDACTED: &str = "[Redact]";

/// What kind of object a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    User,
    Group,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::User => "user",
            Kind::Group => "group",
        })
    }
}

/// The action taken, in Entra ID's provisioning-log vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Create,
    Update,
    Disable,
    Delete,
    Skip,
    StagedDelete,
    Other,
}

impl Action {
    pub const ALL: [Action; 7] = [
        Action::Create,
        Action::Update,
        Action::Disable,
        Action::Delete,
        Action::Skip,
        Action::StagedDelete,
        Action::Other,
    ];
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// How a decision ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Success,
    Failure,
    Skipped,
    Warning,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Success,
        Status::Failure,
        Status::Skipped,
        Status::Warning,
    ];
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A name that is no [`Action`] or [`Status`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not {what}; expected one of {}", .expected.join(", "))]
pub struct UnknownName {
    pub text: String,
    /// `"an action"`, `"a status"`.
    pub what: &'static str,
    pub expected: Vec<String>,
}

/// Parses a name of an [`Action`] or [`Status`], case-insensitively; `what` names the kind
/// with its article (`"an action"`).
pub fn parse_name<T: fmt::Display + Copy>(
    all: &[T],
    what: &'static str,
    text: &str,
) -> Result<T, UnknownName> {
    all.iter()
        .copied()
        .find(|v| v.to_string().eq_ignore_ascii_case(text))
        .ok_or_else(|| UnknownName {
            text: text.to_owned(),
            what,
            expected: all.iter().map(|v| v.to_string().to_lowercase()).collect(),
        })
}

/// One modified attribute: `old` is `null` when the attribute was not set before (a create),
/// `new` is `null` when it was removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Modified {
    pub path: String,
    pub old: Json,
    pub new: Json,
}

/// One HTTP request sent to the target for a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    pub method: String,
    /// The path below the target's base URL, with its query (filters included).
    pub path: String,
    /// The response status; `null` when no response came (connect error, timeout).
    pub status: Option<u16>,
    pub duration_ms: u64,
    /// True when the operation travelled inside a `POST /Bulk` request: `status` is then that
    /// operation's own result and `duration_ms` the time from queueing to its answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bulk: bool,
}

/// One provisioning decision, as stored and as emitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// RFC 3339, UTC, microseconds.
    pub time: String,
    pub cycle_id: String,
    pub target: String,
    pub kind: Kind,
    /// The source objectId.
    pub object_id: String,
    /// The resource id on the target, when known.
    pub scim_id: Option<String>,
    pub action: Action,
    pub status: Status,
    /// The attributes changed, with values of `Redact()` mappings replaced by [`REDACTED`].
    #[serde(default)]
    pub modified: Vec<Modified>,
    /// The HTTP requests of this decision, in the order they were sent.
    #[serde(default)]
    pub calls: Vec<Call>,
    /// Why (for a skip or warning) or what (for a success), in words.
    #[serde(default)]
    pub detail: String,
    /// The error, for a failure.
    #[serde(default)]
    pub error: Option<String>,
    /// From the start of the operation (or the previous record of the same operation) to this
    /// record.
    pub duration_ms: u64,
}

impl Entry {
    /// The modified attributes as a person reads them, `path: old -> new`.
    pub fn modified_text(&self) -> Vec<String> {
        let show = |v: &Json| match v {
            Json::Null => "(none)".to_owned(),
            other => other.to_string(),
        };
        self.modified
            .iter()
            .map(|m| format!("{}: {} -> {}", m.path, show(&m.old), show(&m.new)))
            .collect()
    }
}

/// The time of a record: RFC 3339, UTC, with microseconds so that records sort as written.
pub fn timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Emits one record as a tracing event.
pub fn emit(e: &Entry) {
    let scim_id = e.scim_id.as_deref().unwrap_or("");
    let modified = e.modified_text().join("; ");
    let calls = e.calls.iter().map(call_text).collect::<Vec<_>>().join("; ");
    let error = e.error.as_deref().unwrap_or("");
    match e.status {
        Status::Success | Status::Skipped => tracing::info!(
            target: "scimsync::audit",
            cycle_id = %e.cycle_id, target_name = %e.target, kind = %e.kind, object_id = %e.object_id,
            scim_id, action = ?e.action, status = ?e.status, detail = %e.detail, modified, calls,
            error, duration_ms = e.duration_ms,
            "Provisioning decision."
        ),
        Status::Failure | Status::Warning => tracing::warn!(
            target: "scimsync::audit",
            cycle_id = %e.cycle_id, target_name = %e.target, kind = %e.kind, object_id = %e.object_id,
            scim_id, action = ?e.action, status = ?e.status, detail = %e.detail, modified, calls,
            error, duration_ms = e.duration_ms,
            "Provisioning decision."
        ),
    }
}

/// A call as one line: `PATCH /Users/42 204 12ms`.
pub fn call_text(c: &Call) -> String {
    format!(
        "{} {} {} {}ms{}",
        c.method,
        c.path,
        c.status
            .map_or_else(|| "no response".to_owned(), |s| s.to_string()),
        c.duration_ms,
        if c.bulk { " (in POST /Bulk)" } else { "" }
    )
}

/// The calls and start time of the operation being run.
struct Collector {
    started: Instant,
    calls: Vec<Call>,
    /// Values of `Redact()` mappings of the object being handled: replaced by [`REDACTED`]
    /// wherever they would reach a record (a matching filter in a call's path, a server's
    /// error message quoting the value).
    hidden: Vec<String>,
}

tokio::task_local! {
    static COLLECTOR: RefCell<Collector>;
}

/// Runs `fut` with a collector of its HTTP calls, for [`take_calls`].
pub async fn collect<F: Future>(fut: F) -> F::Output {
    let collector = RefCell::new(Collector {
        started: Instant::now(),
        calls: Vec::new(),
        hidden: Vec::new(),
    });
    COLLECTOR.scope(collector, fut).await
}

/// Hides these values (of `Redact()` mappings) from every record of the running operation,
/// also in their URL-encoded form.
pub fn hide(values: impl IntoIterator<Item = String>) {
    let _ = COLLECTOR.try_with(|c| {
        let mut c = c.borrow_mut();
        for v in values.into_iter().filter(|v| !v.is_empty()) {
            let encoded = urlencoding::encode(&v).into_owned();
            if encoded != v {
                c.hidden.push(encoded);
            }
            c.hidden.push(v);
        }
        // The longest first, so that a value inside another is not half replaced.
        c.hidden.sort_by_key(|v| std::cmp::Reverse(v.len()));
    });
}

/// `text` with the running operation's hidden values replaced by [`REDACTED`].
pub fn scrub(text: &str) -> String {
    COLLECTOR
        .try_with(|c| {
            c.borrow()
                .hidden
                .iter()
                .fold(text.to_owned(), |t, v| t.replace(v.as_str(), REDACTED))
        })
        .unwrap_or_else(|_| text.to_owned())
}

/// Notes one HTTP call in the running operation's collector; nothing outside [`collect`].
/// The path must not hold a secret (it never does: tokens travel in a header).
pub fn note_call(method: &str, path: &str, status: Option<u16>, took: Duration) {
    note(method, path, status, took, false);
}

/// Notes one operation answered inside a `POST /Bulk` request (in the operation's own task).
pub fn note_bulk_call(method: &str, path: &str, status: Option<u16>, took: Duration) {
    note(method, path, status, took, true);
}

fn note(method: &str, path: &str, status: Option<u16>, took: Duration, bulk: bool) {
    let path = scrub(path);
    let _ = COLLECTOR.try_with(|c| {
        c.borrow_mut().calls.push(Call {
            method: method.to_owned(),
            path,
            status,
            duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            bulk,
        });
    });
}

/// The calls noted since the operation began (or since the last take), and the time since
/// then; the next take starts afresh. Empty outside [`collect`].
pub fn take_calls() -> (Vec<Call>, Duration) {
    COLLECTOR
        .try_with(|c| {
            let mut c = c.borrow_mut();
            let took = c.started.elapsed();
            c.started = Instant::now();
            (std::mem::take(&mut c.calls), took)
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_are_collected_per_operation_and_drained_by_take() {
        note_call("GET", "/outside", Some(200), Duration::from_millis(1));
        let (a, b) = futures::join!(
            collect(async {
                note_call("POST", "/Users", Some(201), Duration::from_millis(5));
                tokio::task::yield_now().await;
                note_call("PATCH", "/Users/1", Some(204), Duration::from_millis(3));
                let first = take_calls().0;
                note_call("GET", "/Users/1", Some(200), Duration::from_millis(2));
                (first, take_calls().0)
            }),
            collect(async {
                tokio::task::yield_now().await;
                note_call("DELETE", "/Users/2", None, Duration::from_millis(7));
                take_calls().0
            })
        );
        let paths = |cs: &[Call]| cs.iter().map(|c| c.path.clone()).collect::<Vec<_>>();
        assert_eq!(paths(&a.0), ["/Users", "/Users/1"]);
        assert_eq!(paths(&a.1), ["/Users/1"]);
        assert_eq!(a.1[0].method, "GET");
        assert_eq!(paths(&b), ["/Users/2"]);
        assert_eq!(b[0].status, None);
        assert!(take_calls().0.is_empty(), "nothing is collected outside");
    }

    #[tokio::test]
    async fn hidden_values_never_reach_a_calls_path_or_a_message() {
        let (paths, message) = collect(async {
            hide(["s3cret value".to_owned(), String::new()]);
            note_call(
                "GET",
                "/Users?filter=employeeNumber%20eq%20%22s3cret%20value%22",
                Some(200),
                Duration::from_millis(1),
            );
            let paths: Vec<String> = take_calls().0.into_iter().map(|c| c.path).collect();
            (paths, scrub("400: invalid value s3cret value"))
        })
        .await;
        assert_eq!(
            paths,
            ["/Users?filter=employeeNumber%20eq%20%22[Redact]%22"]
        );
        assert_eq!(message, "400: invalid value [Redact]");
        // Another operation hides nothing of this one's (and an empty value hides nothing).
        assert_eq!(collect(async { scrub("a b") }).await, "a b");
    }

    #[test]
    fn names_parse_case_insensitively_and_errors_list_the_choices() {
        assert_eq!(
            parse_name(&Status::ALL, "a status", "FAILURE"),
            Ok(Status::Failure)
        );
        assert_eq!(
            parse_name(&Action::ALL, "an action", "stageddelete"),
            Ok(Action::StagedDelete)
        );
        let e = parse_name(&Status::ALL, "a status", "broken").expect_err("unknown");
        assert!(
            e.to_string().contains("success, failure, skipped, warning"),
            "{e}"
        );
    }
}
