//! The JSON export connector: `{"users": […], "groups": […]}` as DESIGN.md describes it.

use super::{
    compute_soft_deleted, AttrValue, Directory, Rejected, Source, SourceError, SourceGroup,
    SourceObject,
};
use crate::ids::SourceId;
use serde::de::{self, DeserializeSeed};
use serde_json::Value as Json;
use std::collections::HashSet;
use std::path::PathBuf;

pub struct JsonSource {
    path: PathBuf,
}

impl JsonSource {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }
}

#[async_trait::async_trait]
impl Source for JsonSource {
    async fn read(&self) -> Result<Directory, SourceError> {
        let bytes = tokio::fs::read(&self.path)
            .await
            .map_err(|source| SourceError::Read {
                path: self.path.clone(),
                source,
            })?;
        parse(&self.path, &bytes)
    }

    fn describe(&self) -> String {
        format!("json file {}", self.path.display())
    }
}

/// Parses a JSON directory. Structural problems (syntax, a missing or duplicate `objectId`)
/// fail the whole read: guessing which of two entries is right could deprovision someone.
/// An attribute value of an unusable shape rejects just that object.
///
/// The document is read as a stream: each entry is parsed into a small JSON value, turned
/// into a [`SourceObject`] and dropped before the next one is read, so that a read holds the
/// file's bytes and the directory, never a JSON tree of the whole file as well.
pub fn parse(path: &std::path::Path, bytes: &[u8]) -> Result<Directory, SourceError> {
    let invalid = |message: String| SourceError::Invalid {
        path: path.to_owned(),
        message,
    };
    let text = std::str::from_utf8(bytes)
        .map_err(|e| invalid(format!("not valid UTF-8 (at byte {})", e.valid_up_to())))?;
    let mut reader = Reader::default();
    let mut de = serde_json::Deserializer::from_str(text);
    let result = DocSeed(&mut reader)
        .deserialize(&mut de)
        .and_then(|()| de.end());
    if let Some(message) = reader.fatal.take() {
        return Err(invalid(message));
    }
    result.map_err(|e| {
        // serde_json's message ends with the position, which the message gives first.
        let text = e.to_string();
        let at = format!(" at line {} column {}", e.line(), e.column());
        let why = text.strip_suffix(&at).unwrap_or(&text);
        invalid(format!(
            "JSON syntax error at line {} column {}: {why}",
            e.line(),
            e.column(),
        ))
    })?;
    Ok(reader.dir)
}

/// What a read has gathered so far; `fatal` is set by a structural problem that stops it
/// (serde's error then only carries it out of the parser).
#[derive(Default)]
struct Reader {
    dir: Directory,
    seen: HashSet<SourceId>,
    fatal: Option<String>,
}

impl Reader {
    fn fail<E: de::Error>(&mut self, message: String) -> E {
        let e = E::custom(&message);
        self.fatal = Some(message);
        e
    }

    /// One entry of `users` or `groups`, as the whole-document reader handled it before.
    fn entry<E: de::Error>(&mut self, kind: &str, i: usize, item: Json) -> Result<(), E> {
        let at = format!("{kind}[{i}]");
        let Json::Object(entry) = item else {
            return Err(self.fail(format!("{at}: must be an object")));
        };
        let id = match entry.get("objectId") {
            Some(Json::String(s)) if !s.trim().is_empty() => SourceId(s.clone()),
            Some(_) => return Err(self.fail(format!("{at}: objectId must be a non-empty string"))),
            None => return Err(self.fail(format!("{at}: objectId is missing"))),
        };
        if self.seen.contains(&id) {
            return Err(self.fail(format!(
                "{at}: objectId {:?} is used by another entry; every user and group needs a unique objectId",
                id.0
            )));
        }
        self.seen.insert(id.clone());
        match object(&id, kind, entry) {
            Ok((mut o, members)) if kind == "users" => {
                compute_soft_deleted(&mut o);
                o.shrink_to_fit();
                debug_assert!(members.is_empty());
                self.dir.users.push(o);
            }
            Ok((mut o, members)) => {
                o.shrink_to_fit();
                self.dir.groups.push(SourceGroup { object: o, members });
            }
            Err(reason) => {
                tracing::warn!(entry = %at, object_id = %id, %reason, "Skipped a directory entry.");
                self.dir.rejected.push(Rejected {
                    id: Some(id),
                    reason: format!("{at}: {reason}"),
                });
            }
        }
        Ok(())
    }
}

/// The top level: an object with `users` and `groups`.
struct DocSeed<'r>(&'r mut Reader);

impl<'de> de::DeserializeSeed<'de> for DocSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

const TOP_LEVEL: &str = "the top level must be an object with \"users\" and \"groups\"";

impl<'de> de::Visitor<'de> for DocSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object with \"users\" and \"groups\"")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(self.0.fail(TOP_LEVEL.to_owned()))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(self.0.fail(TOP_LEVEL.to_owned()))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(self.0.fail(TOP_LEVEL.to_owned()))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(self.0.fail(TOP_LEVEL.to_owned()))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(self.0.fail(TOP_LEVEL.to_owned()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(self.0.fail(TOP_LEVEL.to_owned()))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(self.0.fail(TOP_LEVEL.to_owned()))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut done: Vec<String> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if key != "users" && key != "groups" {
                return Err(self.0.fail(format!(
                    "unknown top-level key {key:?}, expected \"users\" and \"groups\""
                )));
            }
            if done.contains(&key) {
                return Err(self
                    .0
                    .fail(format!("{key:?} appears twice at the top level")));
            }
            map.next_value_seed(ListSeed {
                reader: &mut *self.0,
                kind: if key == "users" { "users" } else { "groups" },
            })?;
            done.push(key);
        }
        Ok(())
    }
}

/// The array of `users` or of `groups`, read one entry at a time.
struct ListSeed<'r> {
    reader: &'r mut Reader,
    kind: &'static str,
}

impl<'de> de::DeserializeSeed<'de> for ListSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(ListVisitor(self))
    }
}

struct ListVisitor<'r>(ListSeed<'r>);

impl ListVisitor<'_> {
    fn not_an_array(&self) -> String {
        format!("\"{}\" must be an array", self.0.kind)
    }
}

impl<'de> de::Visitor<'de> for ListVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "an array of {}", self.0.kind)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(self.wrong())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(self.wrong())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(self.wrong())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(self.wrong())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(self.wrong())
    }
    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(self.wrong())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(self.wrong())
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let ListSeed { reader, kind } = self.0;
        let mut i = 0;
        while let Some(item) = seq.next_element::<Json>()? {
            reader.entry(kind, i, item)?;
            i += 1;
        }
        Ok(())
    }
}

impl ListVisitor<'_> {
    fn wrong<E: de::Error>(self) -> E {
        let message = self.not_an_array();
        self.0.reader.fail(message)
    }
}

fn object(
    id: &SourceId,
    kind: &str,
    entry: serde_json::Map<String, Json>,
) -> Result<(SourceObject, Vec<SourceId>), String> {
    let mut o = SourceObject::new(id.clone());
    let mut members = Vec::new();
    for (name, value) in entry {
        if name == "objectId" {
            continue;
        }
        if kind == "groups" && name == "members" {
            let Json::Array(list) = value else {
                return Err("members must be an array of objectIds".into());
            };
            for m in list {
                match m {
                    Json::String(s) => members.push(SourceId(s)),
                    other => return Err(format!("members: {other} is not an objectId string")),
                }
            }
            continue;
        }
        let v = match value {
            Json::Null => continue,
            Json::String(s) => AttrValue::Single(s),
            Json::Bool(b) => AttrValue::Single(if b { "True" } else { "False" }.into()),
            Json::Number(n) => AttrValue::Single(n.to_string()),
            Json::Array(items) => AttrValue::Multi(
                items
                    .into_iter()
                    .map(|item| {
                        scalar(&item).ok_or_else(|| {
                            format!("{name}: {item} is not a string, number or boolean")
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Json::Object(reference) if name.eq_ignore_ascii_case("manager") => {
                AttrValue::Single(reference_id(&name, &reference)?)
            }
            Json::Object(_) => return Err(format!("{name}: an object is not an attribute value")),
        };
        o.set(&name, v);
    }
    Ok((o, members))
}

/// The objectId in a reference written as Microsoft Graph exports it (`"manager": {"id": "b",
/// "displayName": …}`); the other keys are ignored.
fn reference_id(name: &str, reference: &serde_json::Map<String, Json>) -> Result<String, String> {
    match reference.get("id") {
        Some(Json::String(id)) if !id.trim().is_empty() => Ok(id.clone()),
        _ => Err(format!(
            "{name}: an object must carry the objectId as a non-empty string \"id\""
        )),
    }
}

fn scalar(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Bool(b) => Some(if *b { "True" } else { "False" }.into()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse_str(s: &str) -> Result<Directory, SourceError> {
        parse(Path::new("dir.json"), s.as_bytes())
    }

    #[test]
    fn users_groups_and_soft_delete() {
        let d = parse_str(
            r#"{"users": [
                {"objectId": "u1", "mail": "a@x", "accountEnabled": true, "proxyAddresses": ["SMTP:a@x", "smtp:b@x"], "employeeNumber": 7},
                {"objectId": "u2", "accountEnabled": false},
                {"objectId": "u3", "deletedDateTime": "2024-01-01T00:00:00Z"},
                {"objectId": "u4", "IsSoftDeleted": "False", "accountEnabled": false}
              ],
              "groups": [{"objectId": "g1", "displayName": "G", "members": ["u1", "g2"]}]}"#,
        )
        .expect("valid");
        assert_eq!(d.users.len(), 4);
        let u1 = &d.users[0];
        assert_eq!(u1.get_str("MAIL"), Some("a@x"));
        assert_eq!(u1.get_str("employeenumber"), Some("7"));
        assert_eq!(u1.get_str("accountEnabled"), Some("True"));
        assert_eq!(
            u1.get("proxyAddresses"),
            Some(&AttrValue::Multi(vec![
                "SMTP:a@x".into(),
                "smtp:b@x".into()
            ]))
        );
        let soft: Vec<_> = d
            .users
            .iter()
            .map(|u| u.get_str("IsSoftDeleted").unwrap_or(""))
            .collect();
        assert_eq!(soft, ["False", "True", "True", "False"]);
        assert_eq!(
            d.groups[0].members,
            vec![SourceId::from("u1"), SourceId::from("g2")]
        );
    }

    #[test]
    fn syntax_error_names_file_line_and_column() {
        let e = parse_str("{\"users\": [\n  {\"objectId\": \"u1\",}\n]}").expect_err("invalid");
        let msg = e.to_string();
        assert!(
            msg.starts_with("dir.json: JSON syntax error at line 2 column"),
            "{msg}"
        );
    }

    #[test]
    fn missing_and_duplicate_object_ids_name_the_entry() {
        let e = parse_str(r#"{"users": [{"mail": "a@x"}]}"#).expect_err("invalid");
        assert_eq!(e.to_string(), "dir.json: users[0]: objectId is missing");
        let e = parse_str(r#"{"users": [{"objectId": "a"}], "groups": [{"objectId": "a"}]}"#)
            .expect_err("invalid");
        assert!(
            e.to_string()
                .starts_with("dir.json: groups[0]: objectId \"a\" is used by another entry"),
            "{e}"
        );
    }

    #[test]
    fn an_unusable_attribute_rejects_only_that_object() {
        let d = parse_str(
            r#"{"users": [{"objectId": "a", "address": {"city": "Paris"}}, {"objectId": "b"}]}"#,
        )
        .expect("valid");
        assert_eq!(d.users.len(), 1);
        assert_eq!(d.users[0].id, SourceId::from("b"));
        assert_eq!(d.rejected.len(), 1);
        assert_eq!(d.rejected[0].id, Some(SourceId::from("a")));
        assert_eq!(
            d.rejected[0].reason,
            "users[0]: address: an object is not an attribute value"
        );
    }

    #[test]
    fn manager_is_an_object_id_or_a_graph_reference() {
        let d = parse_str(
            r##"{"users": [
                {"objectId": "a", "manager": "b"},
                {"objectId": "b", "Manager": {"id": "c", "displayName": "Cy", "@odata.type": "#microsoft.graph.user"}},
                {"objectId": "c", "manager": null}
              ]}"##,
        )
        .expect("valid");
        assert!(d.rejected.is_empty(), "{:?}", d.rejected);
        let manager: Vec<_> = d.users.iter().map(|u| u.get("manager")).collect();
        assert_eq!(
            manager,
            [
                Some(&AttrValue::Single("b".into())),
                Some(&AttrValue::Single("c".into())),
                None
            ]
        );
    }

    #[test]
    fn a_manager_reference_without_a_string_id_rejects_the_user() {
        let d = parse_str(
            r#"{"users": [
                {"objectId": "a", "manager": {"displayName": "Bob"}},
                {"objectId": "b", "manager": {"id": 7}},
                {"objectId": "c", "manager": {"id": " "}},
                {"objectId": "d"}
              ]}"#,
        )
        .expect("valid");
        assert_eq!(d.users.len(), 1);
        let rejected: Vec<_> = d.rejected.iter().map(|r| r.reason.as_str()).collect();
        let why = "manager: an object must carry the objectId as a non-empty string \"id\"";
        assert_eq!(
            rejected,
            [
                format!("users[0]: {why}"),
                format!("users[1]: {why}"),
                format!("users[2]: {why}")
            ]
        );
    }

    #[test]
    fn invalid_utf8_is_a_clear_error() {
        let e = parse(Path::new("dir.json"), b"{\"users\": [\xff]}").expect_err("invalid");
        assert!(e.to_string().contains("not valid UTF-8"), "{e}");
    }

    #[test]
    fn truncated_json_names_where_it_ends() {
        let e =
            parse_str("{\"users\": [{\"objectId\": \"u1\", \"mail\": \"a@x").expect_err("invalid");
        let msg = e.to_string();
        assert!(
            msg.starts_with("dir.json: JSON syntax error at line 1 column") && msg.contains("EOF"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_types_name_the_entry_and_the_key() {
        let e = parse_str(r#"{"users": {"objectId": "u1"}}"#).expect_err("invalid");
        assert_eq!(e.to_string(), "dir.json: \"users\" must be an array");
        let e = parse_str(r#"{"users": [{"objectId": 42}]}"#).expect_err("invalid");
        assert_eq!(
            e.to_string(),
            "dir.json: users[0]: objectId must be a non-empty string"
        );
        let e = parse_str(r#"{"users": ["u1"]}"#).expect_err("invalid");
        assert_eq!(e.to_string(), "dir.json: users[0]: must be an object");
        let e = parse_str(r#"[]"#).expect_err("invalid");
        assert!(
            e.to_string().contains("the top level must be an object"),
            "{e}"
        );
        let d = parse_str(
            r#"{"users": [{"objectId": "u1"}], "groups": [{"objectId": "g1", "members": "u1"}, {"objectId": "g2", "members": [1]}]}"#,
        )
        .expect("a bad group rejects only that group");
        assert_eq!(d.rejected.len(), 2);
        assert!(d.rejected[0]
            .reason
            .starts_with("groups[0]: members must be an array"));
        assert!(d.rejected[1]
            .reason
            .starts_with("groups[1]: members: 1 is not an objectId"));
    }

    #[test]
    fn a_one_megabyte_value_and_a_group_of_ten_thousand_members_are_read() {
        let big = "x".repeat(1 << 20);
        let members: Vec<String> = (0..10_000).map(|i| format!("u{i}")).collect();
        let mut users: Vec<Json> = (0..10_000)
            .map(|i| serde_json::json!({"objectId": format!("u{i}")}))
            .collect();
        users[0]["description"] = Json::String(big.clone());
        let doc = serde_json::json!({
            "users": users,
            "groups": [{"objectId": "g", "displayName": "All", "members": members}],
        });
        let d = parse(Path::new("dir.json"), doc.to_string().as_bytes()).expect("valid");
        assert_eq!(
            d.users[0].get_str("description").map(str::len),
            Some(1 << 20)
        );
        assert_eq!(d.groups[0].members.len(), 10_000);
    }
}
