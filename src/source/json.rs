//! The JSON export connector: `{"users": […], "groups": […]}` as DESIGN.md describes it.

use super::{
    compute_soft_deleted, AttrValue, Directory, Rejected, Source, SourceError, SourceGroup,
    SourceObject,
};
use crate::ids::SourceId;
use serde_json::Value as Json;
use std::collections::BTreeSet;
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
pub fn parse(path: &std::path::Path, bytes: &[u8]) -> Result<Directory, SourceError> {
    let invalid = |message: String| SourceError::Invalid {
        path: path.to_owned(),
        message,
    };
    let text = std::str::from_utf8(bytes)
        .map_err(|e| invalid(format!("not valid UTF-8 (at byte {})", e.valid_up_to())))?;
    let doc: Json = serde_json::from_str(text).map_err(|e| {
        invalid(format!(
            "JSON syntax error at line {} column {}: {}",
            e.line(),
            e.column(),
            e
        ))
    })?;
    let Json::Object(mut doc) = doc else {
        return Err(invalid(
            "the top level must be an object with \"users\" and \"groups\"".into(),
        ));
    };
    for key in doc.keys() {
        if key != "users" && key != "groups" {
            return Err(invalid(format!(
                "unknown top-level key {key:?}, expected \"users\" and \"groups\""
            )));
        }
    }
    let mut dir = Directory::default();
    let mut seen = BTreeSet::new();
    for (kind, list) in [
        ("users", doc.remove("users")),
        ("groups", doc.remove("groups")),
    ] {
        let items = match list {
            None => Vec::new(),
            Some(Json::Array(items)) => items,
            Some(_) => return Err(invalid(format!("\"{kind}\" must be an array"))),
        };
        for (i, item) in items.into_iter().enumerate() {
            let at = format!("{kind}[{i}]");
            let Json::Object(entry) = item else {
                return Err(invalid(format!("{at}: must be an object")));
            };
            let id = match entry.get("objectId") {
                Some(Json::String(s)) if !s.trim().is_empty() => SourceId(s.clone()),
                Some(_) => {
                    return Err(invalid(format!(
                        "{at}: objectId must be a non-empty string"
                    )))
                }
                None => return Err(invalid(format!("{at}: objectId is missing"))),
            };
            if !seen.insert(id.clone()) {
                return Err(invalid(format!(
                    "{at}: objectId {:?} is used by another entry; every user and group needs a unique objectId",
                    id.0
                )));
            }
            match object(&id, kind, entry) {
                Ok((mut o, members)) if kind == "users" => {
                    compute_soft_deleted(&mut o);
                    debug_assert!(members.is_empty());
                    dir.users.push(o);
                }
                Ok((o, members)) => dir.groups.push(SourceGroup { object: o, members }),
                Err(reason) => {
                    tracing::warn!(entry = %at, object_id = %id, %reason, "Skipped a directory entry.");
                    dir.rejected.push(Rejected {
                        id: Some(id),
                        reason: format!("{at}: {reason}"),
                    });
                }
            }
        }
    }
    Ok(dir)
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
            Json::Object(_) => return Err(format!("{name}: an object is not an attribute value")),
        };
        o.set(&name, v);
    }
    Ok((o, members))
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
            r#"{"users": [{"objectId": "a", "manager": {"id": "b"}}, {"objectId": "b"}]}"#,
        )
        .expect("valid");
        assert_eq!(d.users.len(), 1);
        assert_eq!(d.rejected.len(), 1);
        assert_eq!(d.rejected[0].id, Some(SourceId::from("a")));
        assert!(d.rejected[0].reason.contains("manager"), "{:?}", d.rejected);
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
