//! `scimsync logs`: the stored provisioning log, filtered, as text or JSON Lines.
//!
//! The JSON form is one object per line, each a record with `format_version` first; the
//! format is documented in docs/logs-json.md and kept stable.

use super::{err, out, EXIT_FATAL, EXIT_OK};
use crate::audit::{self, Entry};
use serde_json::{Map, Value as Json};

/// The version of the JSON Lines format; bumped only for an incompatible change.
pub const FORMAT_VERSION: u32 = 1;

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

/// Prints the records, oldest first: exits 0 (also when none match), 2 when a record
/// cannot be serialised.
pub(super) fn render(warnings: &[String], entries: &[Entry], json: bool) -> i32 {
    for w in warnings {
        err!("{}", crate::text::escape(w));
    }
    if entries.is_empty() {
        err!("no records match");
        return EXIT_OK;
    }
    for e in entries {
        if json {
            match json_line(e) {
                Ok(line) => out!("{line}"),
                Err(error) => {
                    err!("provisioning log: cannot serialise a record: {error}");
                    return EXIT_FATAL;
                }
            }
        } else {
            for line in text_block(e) {
                out!("{}", crate::text::escape(&line));
            }
        }
    }
    EXIT_OK
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Action, Call, Kind, Modified, Status};

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
