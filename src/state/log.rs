//! The stored provisioning log: one [`Entry`] per decision, in a tree of its own.
//!
//! Keys are the record's time in nanoseconds since the Unix epoch (big-endian, so byte order
//! is time order) followed by a sequence number that keeps records of the same nanosecond
//! apart. A query by time and the pruning of old records are range scans; the newest records
//! are read from the end. Values are the entries as JSON.
//!
//! Retention is by age and by count, over every target together ([`Retention`]); the engine
//! prunes at the end of each cycle.

use super::{KvTree, StateError};
use crate::audit::{Action, Entry, Status};
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Length of a key: 8 bytes of nanoseconds, 8 bytes of sequence.
pub const KEY_LEN: usize = 16;

/// Distinguishes records written in the same nanosecond: counts from a random start (its
/// high 32 bits), so that instances sharing a PostgreSQL state never write the same key.
fn next_sequence() -> u64 {
    static SEQUENCE: std::sync::OnceLock<AtomicU64> = std::sync::OnceLock::new();
    SEQUENCE
        .get_or_init(|| AtomicU64::new(uuid::Uuid::new_v4().as_u64_pair().0 << 32))
        .fetch_add(1, Ordering::Relaxed)
}

/// The key of a record written at `at`, with sequence number `seq`.
pub fn key(at: DateTime<Utc>, seq: u64) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k[..8].copy_from_slice(&nanos(at).to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The smallest key of records written at or after `at`.
fn lower_bound(at: DateTime<Utc>) -> [u8; KEY_LEN] {
    key(at, 0)
}

/// Nanoseconds since the epoch; times before it sort first, times past 2262 sort last.
fn nanos(at: DateTime<Utc>) -> u64 {
    match at.timestamp_nanos_opt() {
        Some(n) => u64::try_from(n).unwrap_or(0),
        None if at.timestamp() < 0 => 0,
        None => u64::MAX,
    }
}

/// The time a key was written at.
pub fn key_time(key: &[u8]) -> Option<DateTime<Utc>> {
    let bytes: [u8; 8] = key.get(..8)?.try_into().ok()?;
    let n = i64::try_from(u64::from_be_bytes(bytes)).ok()?;
    Some(DateTime::from_timestamp_nanos(n))
}

/// How long records are kept, and how many at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_age: chrono::Duration,
    pub max_records: usize,
}

impl Retention {
    /// The retention `[state]` configures.
    pub fn of(state: &crate::config::StateConfig) -> Retention {
        Retention {
            max_age: chrono::Duration::days(i64::from(state.log_retention_days)),
            max_records: state.log_max_records,
        }
    }
}

/// What `scimsync logs` asks for. Every field narrows the answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// objectId, SCIM id, or a userName, mail or displayName the log recorded for it.
    pub user: Option<String>,
    pub target: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub status: Option<Status>,
    /// Records of any of these actions; empty for every action.
    pub action: Vec<Action>,
    /// At most this many records, the newest.
    pub limit: Option<usize>,
}

/// Attribute paths whose recorded values name an object, for `--user`.
fn names_object(path: &str) -> bool {
    path == "userName" || path == "displayName" || path.starts_with("emails")
}

impl LogQuery {
    fn accepts(&self, e: &Entry, objects: Option<&BTreeSet<String>>) -> bool {
        self.target.as_ref().is_none_or(|t| &e.target == t)
            && self.status.is_none_or(|s| e.status == s)
            && (self.action.is_empty() || self.action.contains(&e.action))
            && objects.is_none_or(|o| o.contains(&e.object_id))
    }
}

/// A cheap test on a record's stored bytes that rules out most records before they are
/// decoded: decoding every record of a large log is what a query by user would cost otherwise.
/// It may let through a record that does not match, never hold back one that does.
#[derive(Default)]
struct Prefilter(Option<regex::bytes::Regex>);

impl Prefilter {
    /// Records holding `text` anywhere, ignoring case; anything when `text` would be escaped
    /// in JSON (then its stored form differs).
    fn anywhere(text: &str) -> Prefilter {
        if text
            .chars()
            .any(|c| c == '"' || c == '\\' || c.is_control())
        {
            return Prefilter(None);
        }
        Prefilter(
            regex::bytes::RegexBuilder::new(&regex::escape(text))
                .case_insensitive(true)
                .build()
                .ok(),
        )
    }

    /// Records whose `object_id` is one of `ids`, exactly as serde_json writes it.
    fn object_ids(ids: &BTreeSet<String>) -> Prefilter {
        let alternatives: Vec<String> = ids
            .iter()
            .filter_map(|id| serde_json::to_string(id).ok())
            .map(|quoted| regex::escape(&format!("\"object_id\":{quoted}")))
            .collect();
        if alternatives.len() != ids.len() {
            return Prefilter(None);
        }
        Prefilter(regex::bytes::Regex::new(&alternatives.join("|")).ok())
    }

    fn may_match(&self, raw: &[u8]) -> bool {
        self.0.as_ref().is_none_or(|r| r.is_match(raw))
    }
}

/// The log tree.
#[derive(Clone)]
pub struct Log {
    tree: Arc<dyn KvTree>,
}

impl Log {
    pub fn new(tree: Arc<dyn KvTree>) -> Log {
        Log { tree }
    }

    /// Stores one record written at `at`.
    pub fn append(&self, at: DateTime<Utc>, entry: &Entry) -> Result<(), StateError> {
        let value = serde_json::to_vec(entry).map_err(|e| {
            StateError::Storage(format!("cannot encode a provisioning log record: {e}"))
        })?;
        let seq = next_sequence();
        self.tree.insert(&key(at, seq), value)
    }

    fn decode(&self, k: &[u8], v: &[u8]) -> Result<Entry, StateError> {
        serde_json::from_slice(v).map_err(|e| StateError::Corrupt {
            tree: self.tree.name(),
            key: hex::encode(k),
            message: e.to_string(),
        })
    }

    /// The source objectIds that `who` names: itself when some record has it as objectId,
    /// the objects whose SCIM id it is, and those recorded with it as userName, mail or
    /// displayName (case-insensitive).
    fn objects_named(&self, who: &str) -> Result<BTreeSet<String>, StateError> {
        let mut found = BTreeSet::new();
        let mut failure = None;
        let hint = Prefilter::anywhere(who);
        self.tree.visit(&[], false, &mut |k, v| {
            if !hint.may_match(v) {
                return true;
            }
            let e = match self.decode(k, v) {
                Ok(e) => e,
                Err(err) => {
                    failure = Some(err);
                    return false;
                }
            };
            let named = e.object_id == who
                || e.scim_id.as_deref() == Some(who)
                || e.modified.iter().any(|m| {
                    names_object(&m.path)
                        && [&m.old, &m.new]
                            .iter()
                            .any(|v| v.as_str().is_some_and(|s| s.eq_ignore_ascii_case(who)))
                });
            if named {
                found.insert(e.object_id);
            }
            true
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(found),
        }
    }

    /// The records the query asks for, oldest first.
    pub fn query(&self, q: &LogQuery) -> Result<Vec<Entry>, StateError> {
        let objects = match &q.user {
            Some(who) => Some(self.objects_named(who)?),
            None => None,
        };
        if objects.as_ref().is_some_and(BTreeSet::is_empty) {
            return Ok(Vec::new());
        }
        let start = q.since.map(lower_bound).unwrap_or_default();
        let limit = q.limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        let mut failure = None;
        let hint = objects
            .as_ref()
            .map(Prefilter::object_ids)
            .unwrap_or_default();
        if limit > 0 {
            self.tree.visit(&start, true, &mut |k, v| {
                if !hint.may_match(v) {
                    return true;
                }
                match self.decode(k, v) {
                    Ok(e) if q.accepts(&e, objects.as_ref()) => out.push(e),
                    Ok(_) => {}
                    Err(err) => {
                        failure = Some(err);
                        return false;
                    }
                }
                out.len() < limit
            })?;
        }
        if let Some(e) = failure {
            return Err(e);
        }
        out.reverse();
        Ok(out)
    }

    /// Removes the records older than the retention's age and, beyond its count, the oldest.
    /// Returns how many were removed.
    pub fn prune(&self, retention: &Retention, now: DateTime<Utc>) -> Result<usize, StateError> {
        let cutoff = lower_bound(now - retention.max_age);
        let mut kept = 0usize;
        let mut doomed = Vec::new();
        self.tree.visit(&[], true, &mut |k, _| {
            if kept < retention.max_records && k >= cutoff.as_slice() {
                kept += 1;
            } else {
                doomed.push(k.to_vec());
            }
            true
        })?;
        for k in &doomed {
            self.tree.remove(k)?;
        }
        Ok(doomed.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Kind, Modified};
    use crate::state::MemTree;
    use serde_json::json;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).expect("valid time")
    }

    fn entry(object: &str, status: Status, time: DateTime<Utc>) -> Entry {
        Entry {
            time: crate::audit::timestamp(time),
            cycle_id: "c1".into(),
            target: "qlik".into(),
            kind: Kind::User,
            object_id: object.into(),
            scim_id: Some(format!("scim-{object}")),
            action: Action::Update,
            status,
            modified: Vec::new(),
            calls: Vec::new(),
            detail: String::new(),
            error: None,
            duration_ms: 1,
        }
    }

    fn log() -> Log {
        Log::new(Arc::new(MemTree::default()))
    }

    #[test]
    fn keys_sort_by_time_then_sequence_and_give_back_their_time() {
        let early = key(at(0), u64::MAX);
        let later = key(at(0) + chrono::Duration::nanoseconds(1), 0);
        assert!(early < later);
        assert!(key(at(5), 1) < key(at(5), 2));
        assert!(key(at(-1), 0) < key(at(0), 0));
        assert_eq!(key_time(&key(at(7), 3)), Some(at(7)));
        assert_eq!(
            key(DateTime::<Utc>::MIN_UTC, 0)[..8],
            [0u8; 8],
            "times before the epoch sort first"
        );
        assert_eq!(key_time(b"short"), None);
    }

    #[test]
    fn query_filters_by_since_status_target_and_limit_oldest_first() {
        let log = log();
        for (i, (obj, status)) in [
            ("a", Status::Success),
            ("b", Status::Failure),
            ("a", Status::Failure),
            ("c", Status::Success),
        ]
        .into_iter()
        .enumerate()
        {
            let t = at(i64::try_from(i).expect("small") * 60);
            log.append(t, &entry(obj, status, t)).expect("append");
        }
        let objects = |q: &LogQuery| -> Vec<String> {
            log.query(q)
                .expect("query")
                .into_iter()
                .map(|e| e.object_id)
                .collect()
        };
        assert_eq!(objects(&LogQuery::default()), ["a", "b", "a", "c"]);
        let failures = LogQuery {
            status: Some(Status::Failure),
            ..Default::default()
        };
        assert_eq!(objects(&failures), ["b", "a"]);
        let since = LogQuery {
            since: Some(at(120)),
            ..Default::default()
        };
        assert_eq!(objects(&since), ["a", "c"]);
        let newest = LogQuery {
            limit: Some(3),
            ..Default::default()
        };
        assert_eq!(objects(&newest), ["b", "a", "c"]);
        let other_target = LogQuery {
            target: Some("slack".into()),
            ..Default::default()
        };
        assert!(objects(&other_target).is_empty());
    }

    #[test]
    fn user_is_found_by_object_id_scim_id_or_recorded_user_name() {
        let log = log();
        let mut created = entry("u-1", Status::Success, at(0));
        created.action = Action::Create;
        created.modified.push(Modified {
            path: "userName".into(),
            old: json!(null),
            new: json!("Ada@Example.org"),
        });
        log.append(at(0), &created).expect("append");
        log.append(at(1), &entry("u-2", Status::Success, at(1)))
            .expect("append");
        log.append(at(2), &entry("u-1", Status::Success, at(2)))
            .expect("append");
        for who in ["u-1", "scim-u-1", "ada@example.org"] {
            let found = log
                .query(&LogQuery {
                    user: Some(who.into()),
                    ..Default::default()
                })
                .expect("query");
            assert_eq!(found.len(), 2, "{who}");
            assert!(found.iter().all(|e| e.object_id == "u-1"), "{who}");
        }
        let none = log
            .query(&LogQuery {
                user: Some("nobody".into()),
                ..Default::default()
            })
            .expect("query");
        assert!(none.is_empty());
    }

    #[test]
    fn the_prefilter_lets_through_every_record_that_can_match() {
        let mut e = entry("u-\"quoted\"", Status::Success, at(0));
        e.modified.push(Modified {
            path: "userName".into(),
            old: json!(null),
            new: json!("Ada@Example.org"),
        });
        let raw = serde_json::to_vec(&e).expect("json");
        assert!(Prefilter::anywhere("ada@example.ORG").may_match(&raw));
        assert!(!Prefilter::anywhere("bob@example.org").may_match(&raw));
        assert!(
            Prefilter::anywhere("with \"quote").may_match(&raw),
            "not ruled out"
        );
        let ids = BTreeSet::from([e.object_id.clone(), "other".to_owned()]);
        assert!(Prefilter::object_ids(&ids).may_match(&raw));
        let other = BTreeSet::from(["u-".to_owned()]);
        assert!(!Prefilter::object_ids(&other).may_match(&raw));
        assert!(Prefilter::default().may_match(b"anything"));
    }

    #[test]
    fn prune_removes_the_oldest_beyond_the_count_and_everything_too_old() {
        let log = log();
        for i in 0..10 {
            let t = at(i * 3600);
            log.append(t, &entry(&format!("u{i}"), Status::Success, t))
                .expect("append");
        }
        let by_count = Retention {
            max_age: chrono::Duration::days(365),
            max_records: 6,
        };
        assert_eq!(log.prune(&by_count, at(10 * 3600)).expect("prune"), 4);
        let left: Vec<String> = log
            .query(&LogQuery::default())
            .expect("query")
            .into_iter()
            .map(|e| e.object_id)
            .collect();
        assert_eq!(left, ["u4", "u5", "u6", "u7", "u8", "u9"]);
        // Records older than two hours before hour 10 (u4..u7) go; u8 is exactly at the cutoff.
        let by_age = Retention {
            max_age: chrono::Duration::hours(2),
            max_records: 100,
        };
        assert_eq!(log.prune(&by_age, at(10 * 3600)).expect("prune"), 4);
        let left: Vec<String> = log
            .query(&LogQuery::default())
            .expect("query")
            .into_iter()
            .map(|e| e.object_id)
            .collect();
        assert_eq!(left, ["u8", "u9"]);
        assert_eq!(log.prune(&by_age, at(10 * 3600)).expect("prune"), 0);
    }

    #[test]
    fn sled_range_scans_agree_with_the_in_memory_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::state::Store::open(dir.path()).expect("open");
        let log = store.log().expect("log");
        for i in 0..5 {
            let t = at(i);
            log.append(t, &entry(&format!("u{i}"), Status::Success, t))
                .expect("append");
        }
        let q = LogQuery {
            since: Some(at(2)),
            limit: Some(2),
            ..Default::default()
        };
        let found: Vec<String> = log
            .query(&q)
            .expect("query")
            .into_iter()
            .map(|e| e.object_id)
            .collect();
        assert_eq!(found, ["u3", "u4"]);
        let r = Retention {
            max_age: chrono::Duration::days(1),
            max_records: 1,
        };
        assert_eq!(log.prune(&r, at(10)).expect("prune"), 4);
        assert_eq!(log.query(&LogQuery::default()).expect("q").len(), 1);
    }
}
