//! `scimsync state export` / `state import`: the whole state as versioned JSON lines, to back
//! it up or to move it to another state directory (or, later, another backend).
//!
//! The first line is a header (`format`, `format_version`, the store's `schema_version`); then
//! one line per entry of every tree: `{"tree": "users/qlik", "key": "…", "value": {…}}`. A key
//! that is not printable UTF-8 (the provisioning log's time-ordered keys) is written as
//! `key_hex`; a value that is not JSON as `value_hex`. An import checks every line before it
//! writes one, and only into a state that holds no entry yet.

use super::{StateError, Store, SCHEMA_VERSION};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::io::{BufRead, Write};

/// The `format` of the header line.
pub const FORMAT: &str = "scimsync-state";
/// Bumped on any incompatible change of the dump's lines.
pub const FORMAT_VERSION: u32 = 1;

/// Why a dump could not be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot write the export: {0}")]
    Write(std::io::Error),
    #[error("line {line}: cannot read the import: {source}")]
    Read { line: usize, source: std::io::Error },
    #[error("line {line}: {why}")]
    Invalid { line: usize, why: String },
    #[error("the state already holds {entries} entries (in {tree}, …); import only into an empty state directory")]
    NotEmpty { entries: usize, tree: String },
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    format_version: u32,
    schema_version: u32,
    #[serde(default)]
    exported_at: String,
}

#[derive(Serialize, Deserialize)]
struct Line {
    tree: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_hex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<Json>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value_hex: Option<String>,
}

impl Line {
    fn of(tree: &str, k: &[u8], v: &[u8]) -> Line {
        let key = std::str::from_utf8(k)
            .ok()
            .filter(|s| !s.chars().any(char::is_control));
        let value = serde_json::from_slice::<Json>(v).ok();
        Line {
            tree: tree.to_owned(),
            key_hex: key.is_none().then(|| hex::encode(k)),
            key: key.map(str::to_owned),
            value_hex: value.is_none().then(|| hex::encode(v)),
            value,
        }
    }

    /// The key and value bytes, or why the line cannot give them.
    fn bytes(&self) -> Result<(Vec<u8>, Vec<u8>), String> {
        let key = match (&self.key, &self.key_hex) {
            (Some(k), None) => k.as_bytes().to_vec(),
            (None, Some(h)) => hex::decode(h).map_err(|e| format!("key_hex: {e}"))?,
            _ => return Err("needs exactly one of key and key_hex".into()),
        };
        let value = match (&self.value, &self.value_hex) {
            (Some(v), None) => serde_json::to_vec(v).map_err(|e| e.to_string())?,
            (None, Some(h)) => hex::decode(h).map_err(|e| format!("value_hex: {e}"))?,
            _ => return Err("needs exactly one of value and value_hex".into()),
        };
        if self.tree.is_empty() {
            return Err("tree is empty".into());
        }
        Ok((key, value))
    }
}

/// Writes every tree of `store` to `out`; returns the number of entries.
pub fn export(store: &Store, out: &mut dyn Write) -> Result<usize, DumpError> {
    let header = Header {
        format: FORMAT.to_owned(),
        format_version: FORMAT_VERSION,
        schema_version: SCHEMA_VERSION,
        exported_at: super::now(),
    };
    put(out, &header).map_err(DumpError::Write)?;
    let mut entries = 0;
    for name in store.tree_names()? {
        let tree = store.tree(&name)?;
        tree.for_each(&mut |k, v| {
            entries += 1;
            put(out, &Line::of(&name, k, v))
                .map_err(|e| StateError::Storage(format!("cannot write the export: {e}")))
        })?;
    }
    out.flush().map_err(DumpError::Write)?;
    Ok(entries)
}

/// Reads a dump into `store`, which must hold no entry yet: every line is checked first (so a
/// bad file writes nothing), then written. Returns the number of entries.
pub fn import(
    store: &Store,
    open: &dyn Fn() -> std::io::Result<Box<dyn BufRead>>,
) -> Result<usize, DumpError> {
    if let Some((entries, tree)) = store.entries()? {
        return Err(DumpError::NotEmpty { entries, tree });
    }
    let open = || open().map_err(|source| DumpError::Read { line: 0, source });
    let checked = read_lines(open()?, &mut |_, _| Ok(()))?;
    let written = read_lines(open()?, &mut |line, l| {
        let (k, v) = l.bytes().map_err(|why| DumpError::Invalid { line, why })?;
        store.tree(&l.tree)?.insert(&k, v)?;
        Ok(())
    })?;
    debug_assert_eq!(checked, written);
    Ok(written)
}

/// Reads the header and every line, calling `each` with each entry line; returns how many.
fn read_lines(
    input: Box<dyn BufRead>,
    each: &mut dyn FnMut(usize, &Line) -> Result<(), DumpError>,
) -> Result<usize, DumpError> {
    let mut count = 0;
    for (i, text) in input.lines().enumerate() {
        let line = i + 1;
        let text = text.map_err(|source| DumpError::Read { line, source })?;
        if line == 1 {
            header(&text).map_err(|why| DumpError::Invalid { line, why })?;
            continue;
        }
        if text.trim().is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(&text).map_err(|e| DumpError::Invalid {
            line,
            why: format!("not an entry line: {e}"),
        })?;
        l.bytes().map_err(|why| DumpError::Invalid { line, why })?;
        each(line, &l)?;
        count += 1;
    }
    Ok(count)
}

/// Checks the header line: this format, a version this scimsync reads.
fn header(text: &str) -> Result<(), String> {
    let h: Header = serde_json::from_str(text)
        .map_err(|e| format!("not a scimsync state export (no header: {e})"))?;
    if h.format != FORMAT {
        return Err(format!("format {:?} is not {FORMAT:?}", h.format));
    }
    if h.format_version > FORMAT_VERSION {
        return Err(format!(
            "format_version {} is newer than this scimsync reads ({FORMAT_VERSION}); import it with a newer scimsync",
            h.format_version
        ));
    }
    if h.schema_version != SCHEMA_VERSION {
        return Err(format!(
            "schema_version {} is not this scimsync's {SCHEMA_VERSION}",
            h.schema_version
        ));
    }
    Ok(())
}

/// One JSON line.
fn put<T: Serialize>(out: &mut dyn Write, value: &T) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ScimId, SourceId, TargetName};
    use std::io::Cursor;

    fn filled() -> Store {
        let store = Store::in_memory();
        let snap = store.snapshot(&TargetName::from("qlik")).expect("snapshot");
        let entry = crate::state::UserEntry {
            scim_id: ScimId::from("s1"),
            attrs: [("userName".to_owned(), Json::from("ann"))].into(),
            hash: "h".into(),
            active: true,
            deprovisioned: false,
            matched_by: crate::state::MatchedBy::Created,
            changed_at: "2026-12-02T00:00:00Z".into(),
        };
        snap.put_user(&SourceId::from("u1"), &entry).expect("put");
        snap.set_meta("target_url", &"https://x/v2").expect("meta");
        // A binary key and a value that is not JSON, as the log's keys are.
        store
            .tree("log")
            .expect("log")
            .insert(&[0, 1, 0xff, b'\n'], b"\x00raw".to_vec())
            .expect("insert");
        store
    }

    fn dump_of(store: &Store) -> String {
        let mut out = Vec::new();
        export(store, &mut out).expect("export");
        String::from_utf8(out).expect("utf-8")
    }

    fn import_text(store: &Store, text: &str) -> Result<usize, DumpError> {
        let text = text.to_owned();
        import(store, &move || {
            Ok(Box::new(Cursor::new(text.clone().into_bytes())))
        })
    }

    #[test]
    fn an_export_imports_into_an_equal_state() {
        let store = filled();
        let text = dump_of(&store);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0]
            .starts_with(r#"{"format":"scimsync-state","format_version":1,"schema_version":1,"#));
        assert!(
            text.contains(r#"{"tree":"log","key_hex":"0001ff0a","value_hex":"00726177"}"#),
            "{text}"
        );
        assert!(
            text.contains(r#"{"tree":"users/qlik","key":"u1","value":{"#),
            "{text}"
        );
        let copy = Store::in_memory();
        assert_eq!(import_text(&copy, &text).expect("import"), lines.len() - 1);
        assert_eq!(
            dump_of(&copy).lines().skip(1).collect::<Vec<_>>(),
            lines[1..]
        );
        let users = copy
            .snapshot(&TargetName::from("qlik"))
            .expect("s")
            .users()
            .expect("u");
        assert_eq!(users[&SourceId::from("u1")].scim_id, ScimId::from("s1"));
    }

    #[test]
    fn a_bad_file_writes_nothing_and_says_which_line() {
        let text = dump_of(&filled());
        let copy = Store::in_memory();
        let broken = format!("{text}{{\"tree\":\"users/qlik\",\"key\":\"u2\"}}\n");
        let e = import_text(&copy, &broken).expect_err("no value");
        assert_eq!(
            e.to_string(),
            format!(
                "line {}: needs exactly one of value and value_hex",
                text.lines().count() + 1
            )
        );
        assert_eq!(copy.entries().expect("entries"), None, "nothing written");

        let newer = text.replacen("\"format_version\":1", "\"format_version\":2", 1);
        let e = import_text(&copy, &newer).expect_err("newer");
        assert!(
            e.to_string()
                .starts_with("line 1: format_version 2 is newer"),
            "{e}"
        );
        let e = import_text(&copy, "{\"tree\":\"x\"}\n").expect_err("no header");
        assert!(e.to_string().starts_with("line 1: "), "{e}");
    }

    #[test]
    fn an_import_needs_an_empty_state() {
        let store = filled();
        let text = dump_of(&store);
        let e = import_text(&store, &text).expect_err("not empty");
        assert!(matches!(e, DumpError::NotEmpty { entries: 3, .. }), "{e}");
    }
}
