//! `scimsync logs`: the stored provisioning log, filtered, as text or JSON Lines.
//!
//! The JSON form is one object per line, each a record with `format_version` first; the
//! format is documented in docs/logs-json.md and kept stable.

use super::control::Ctx;
use super::{err, out, EXIT_FATAL, EXIT_OK, EXIT_USAGE};
use crate::audit::{self, Action, Entry, Status};
use crate::state::LogQuery;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json};

/// The version of the JSON Lines format; bumped only for an incompatible change.
pub const FORMAT_VERSION: u32 = 1;

/// The flags of `scimsync logs`, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogsArgs {
    pub user: Option<String>,
    #[serde(default)]
    pub target: Option<String>,
    pub since: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub json: bool,
}

/// `--since`: a duration back from `now` (`30m`, `2h`, `7d`, `1h 30m`) or an RFC 3339 time.
pub fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(d) = humantime::parse_duration(text) {
        return chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .ok_or_else(|| format!("--since {text:?}: too long ago"));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            format!(
                "--since {text:?}: expected a duration such as 30m, 2h or 7d, or an RFC 3339 time such as 2026-01-31T08:00:00Z"
            )
        })
}

/// Turns the flags into a query; every problem is reported at once.
pub fn query(args: &LogsArgs, ctx: &Ctx, now: DateTime<Utc>) -> Result<LogQuery, Vec<String>> {
    let mut problems = Vec::new();
    let since = args
        .since
        .as_deref()
        .map(|s| parse_since(s, now))
        .transpose()
        .map_err(|e| problems.push(e))
        .ok()
        .flatten();
    let status = args
        .status
        .as_deref()
        .map(|s| audit::parse_name(&Status::ALL, "status", s))
        .transpose()
        .map_err(|e| problems.push(format!("--status: {e}")))
        .ok()
        .flatten();
    let action = args
        .action
        .as_deref()
        .map(|s| audit::parse_name(&Action::ALL, "action", s))
        .transpose()
        .map_err(|e| problems.push(format!("--action: {e}")))
        .ok()
        .flatten();
    if let Some(t) = &args.target {
        if ctx.config.target(t).is_none() {
            // A removed target's records may still be in the log: a warning, not an error.
            err!(
                "--target: no target named {t:?} in {}; showing its records if the log has any",
                ctx.config.path.display()
            );
        }
    }
    if problems.is_empty() {
        Ok(LogQuery {
            user: args.user.clone(),
            target: args.target.clone(),
            since,
            status,
            action,
            limit: args.limit,
        })
    } else {
        Err(problems)
    }
}

/// One record as a JSON Lines object, `format_version` first.
pub fn json_line(e: &Entry) -> Result<String, serde_json::Error> {
    let mut obj = Map::new();
    obj.insert("format_version".into(), Json::from(FORMAT_VERSION));
    if let Json::Object(fields) = serde_json::to_value(e)? {
        obj.extend(fields);
    }
    serde_json::to_string(&Json::Object(obj))
}

/// One record as text: a heading line, then one indented line per change, call and error.
pub fn text_block(e: &Entry) -> Vec<String> {
    let scim = e
        .scim_id
        .as_deref()
        .map(|s| format!(" -> {s}"))
        .unwrap_or_default();
    let detail = if e.detail.is_empty() {
        String::new()
    } else {
        format!(": {}", e.detail)
    };
    let mut lines = vec![format!(
        "{} {:?} {} {} {}{scim} {} ({} ms){detail}",
        e.time, e.target, e.action, e.kind, e.object_id, e.status, e.duration_ms
    )];
    lines.extend(e.modified_text().into_iter().map(|m| format!("    {m}")));
    lines.extend(
        e.calls
            .iter()
            .map(|c| format!("    call {}", audit::call_text(c))),
    );
    if let Some(error) = &e.error {
        lines.push(format!("    error: {error}"));
    }
    lines
}

/// Prints the records the flags ask for, oldest first; exits 0 (also when none match), 64
/// for bad flags, 2 when the log cannot be read.
pub async fn logs(ctx: &Ctx, args: &LogsArgs) -> i32 {
    let q = match query(args, ctx, Utc::now()) {
        Ok(q) => q,
        Err(problems) => {
            for p in problems {
                err!("{p}");
            }
            return EXIT_USAGE;
        }
    };
    // A query may read the whole log: off the async workers, which run the daemon's cycles.
    let store = ctx.store.clone();
    let found = match tokio::task::spawn_blocking(move || store.log()?.query(&q)).await {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            err!("provisioning log: {e}");
            return EXIT_FATAL;
        }
        Err(e) => {
            err!("provisioning log: the query stopped: {e}");
            return EXIT_FATAL;
        }
    };
    if found.is_empty() {
        err!("no records match");
        return EXIT_OK;
    }
    for e in &found {
        if args.json {
            match json_line(e) {
                Ok(line) => out!("{line}"),
                Err(error) => {
                    err!("provisioning log: cannot serialise a record: {error}");
                    return EXIT_FATAL;
                }
            }
        } else {
            for line in text_block(e) {
                out!("{line}");
            }
        }
    }
    EXIT_OK
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Call, Kind, Modified};

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T18:00:00Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn since_takes_durations_and_rfc3339_times() {
        let ago = |s: &str| now() - parse_since(s, now()).expect(s);
        assert_eq!(ago("30m"), chrono::Duration::minutes(30));
        assert_eq!(ago("2h"), chrono::Duration::hours(2));
        assert_eq!(ago("7d"), chrono::Duration::days(7));
        assert_eq!(ago("1h 30m"), chrono::Duration::minutes(90));
        assert_eq!(
            parse_since("2026-11-23T17:00:00+01:00", now()).expect("rfc3339"),
            now() - chrono::Duration::hours(2)
        );
        for bad in ["", "yesterday", "7", "-2h", "2026-11-23"] {
            let e = parse_since(bad, now()).expect_err(bad);
            assert!(e.starts_with("--since"), "{e}");
        }
    }

    fn entry() -> Entry {
        Entry {
            time: "2026-11-23T17:59:00.000001Z".into(),
            cycle_id: "c1".into(),
            target: "qlik".into(),
            kind: Kind::User,
            object_id: "u-ada".into(),
            scim_id: Some("42".into()),
            action: Action::Update,
            status: Status::Success,
            modified: vec![Modified {
                path: "name.familyName".into(),
                old: Json::from("Byron"),
                new: Json::from("Lovelace"),
            }],
            calls: vec![Call {
                method: "PATCH".into(),
                path: "/Users/42".into(),
                status: Some(204),
                duration_ms: 12,
                bulk: false,
            }],
            detail: String::new(),
            error: None,
            duration_ms: 13,
        }
    }

    #[test]
    fn a_record_reads_as_a_heading_with_its_changes_and_calls() {
        assert_eq!(
            text_block(&entry()),
            [
                "2026-11-23T17:59:00.000001Z \"qlik\" Update user u-ada -> 42 Success (13 ms)",
                "    name.familyName: \"Byron\" -> \"Lovelace\"",
                "    call PATCH /Users/42 204 12ms",
            ]
        );
    }

    #[test]
    fn a_json_line_starts_with_the_format_version_and_reads_back() {
        let line = json_line(&entry()).expect("json");
        assert!(line.starts_with(r#"{"format_version":1,"time":"#), "{line}");
        let back: Entry = serde_json::from_str(&line).expect("an entry");
        assert_eq!(back, entry());
    }
}
