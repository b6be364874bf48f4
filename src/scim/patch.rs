//! Typed PATCH operations (RFC 7644 §3.5.2). The plan and the engine say *what* changes; the
//! target's [`super::profile::Profile`] decides how it is spelled on the wire.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

/// The `op` of a PATCH operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    Add,
    Replace,
    Remove,
}

/// One PATCH operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchOp {
    pub op: Verb,
    /// The operation's path; `None` for a path-less operation.
    pub path: Option<String>,
    pub value: Option<Json>,
    /// The mapped attribute this operation carries (its canonical path, as mappings name it),
    /// so that a refusal can be pinned on it; `None` for group members.
    #[serde(skip)]
    pub attribute: Option<String>,
    /// What a value-filtered path (`emails[type eq "work"].value`) changes, as data: for a
    /// target that refuses the path, or has no item of that type, the whole multi-valued
    /// attribute is sent instead, computed from the resource as it is now.
    #[serde(skip)]
    pub item: Option<ItemEdit>,
}

impl PatchOp {
    pub fn new(op: Verb, path: impl Into<String>, value: Option<Json>) -> PatchOp {
        PatchOp {
            op,
            path: Some(path.into()),
            value,
            attribute: None,
            item: None,
        }
    }

    /// The same operation, with the item edit it makes (see [`PatchOp::item`]).
    pub fn editing(mut self, item: ItemEdit) -> PatchOp {
        self.item = Some(item);
        self
    }

    /// The same operation, attributed to a mapped attribute.
    pub fn for_attribute(mut self, attribute: impl Into<String>) -> PatchOp {
        self.attribute = Some(attribute.into());
        self
    }

    /// `{"op": …, "path": …, "value": …}` with the verb spelled by `verb`.
    pub fn to_json(&self, verb: impl Fn(Verb) -> &'static str) -> Json {
        let mut op = json!({"op": verb(self.op)});
        if let Some(path) = &self.path {
            op["path"] = Json::String(path.clone());
        }
        if let Some(value) = &self.value {
            op["value"] = value.clone();
        }
        op
    }
}

/// A change to the item of a multi-valued attribute that a value filter selects (`emails`
/// item of `type` `work`): set its sub-attribute, or remove the item.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemEdit {
    /// The extension schema URN the attribute belongs to, `None` for the core schema.
    pub urn: Option<String>,
    /// `emails`
    pub attr: String,
    /// The value filter: `("type", "work")`.
    pub key: (String, String),
    /// The sub-attribute set: `value`.
    pub sub: String,
    /// The value the item held when last sent: an account whose item has another type (or
    /// none) is found by it, so that its address is replaced rather than listed twice.
    pub old: Option<String>,
    /// The new value of `sub`; `None` removes the item.
    pub new: Option<Json>,
}

impl ItemEdit {
    /// The whole attribute after this edit, from `resource` as the target holds it now: the
    /// selected item changed (given the filter's type) or removed, or a new item added
    /// (primary when no other item is); every other item kept as it is.
    pub fn whole(&self, resource: &Json) -> PatchOp {
        let mut items = self.items(resource);
        let (fa, fv) = &self.key;
        let pos = items
            .iter()
            .position(|i| text(i, fa).is_some_and(|t| t.eq_ignore_ascii_case(fv)))
            .or_else(|| {
                let old = self.old.as_deref()?;
                items
                    .iter()
                    .position(|i| text(i, &self.sub).is_some_and(|v| v.eq_ignore_ascii_case(old)))
            });
        match (&self.new, pos) {
            (Some(value), Some(at)) => {
                if let Some(item) = items[at].as_object_mut() {
                    set(item, fa, Json::String(fv.clone()));
                    set(item, &self.sub, value.clone());
                }
            }
            (Some(value), None) => {
                let primary = !items
                    .iter()
                    .any(|i| i.get("primary") == Some(&Json::Bool(true)));
                let mut item = serde_json::Map::new();
                item.insert(fa.clone(), Json::String(fv.clone()));
                item.insert(self.sub.clone(), value.clone());
                if primary {
                    item.insert("primary".into(), Json::Bool(true));
                }
                items.push(Json::Object(item));
            }
            (None, Some(at)) => {
                items.remove(at);
            }
            (None, None) => {}
        }
        let path = match &self.urn {
            Some(urn) => format!("{urn}:{}", self.attr),
            None => self.attr.clone(),
        };
        if items.is_empty() {
            PatchOp::new(Verb::Remove, path, None)
        } else {
            PatchOp::new(Verb::Replace, path, Some(Json::Array(items)))
        }
    }

    /// The attribute's items in `resource` (names compared without regard to case).
    fn items(&self, resource: &Json) -> Vec<Json> {
        let container = match &self.urn {
            Some(urn) => get_ci(resource, urn),
            None => Some(resource),
        };
        container
            .and_then(|c| get_ci(c, &self.attr))
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default()
    }
}

fn get_ci<'a>(v: &'a Json, key: &str) -> Option<&'a Json> {
    let obj = v.as_object()?;
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn text<'a>(item: &'a Json, key: &str) -> Option<&'a str> {
    get_ci(item, key).and_then(Json::as_str)
}

/// Sets `key` in `item`, replacing it whatever the case it was written in.
fn set(item: &mut serde_json::Map<String, Json>, key: &str, value: Json) {
    item.retain(|k, _| !k.eq_ignore_ascii_case(key));
    item.insert(key.to_owned(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(old: Option<&str>, new: Option<&str>) -> ItemEdit {
        ItemEdit {
            urn: None,
            attr: "emails".into(),
            key: ("type".into(), "work".into()),
            sub: "value".into(),
            old: old.map(str::to_owned),
            new: new.map(|n| json!(n)),
        }
    }

    fn whole(e: &ItemEdit, emails: Json) -> (Verb, Option<Json>) {
        let op = e.whole(&json!({ "Emails": emails }));
        assert_eq!(op.path.as_deref(), Some("emails"));
        (op.op, op.value)
    }

    #[test]
    fn the_whole_attribute_keeps_every_other_item() {
        let home = json!({"type": "home", "value": "h@x"});
        // The typed item changes; the others stay.
        assert_eq!(
            whole(
                &edit(Some("a@x"), Some("b@x")),
                json!([home, {"TYPE": "Work", "value": "a@x"}])
            ),
            (
                Verb::Replace,
                Some(json!([home, {"type": "work", "value": "b@x"}]))
            )
        );
        // No typed item: the one holding the old value is replaced and typed, not doubled.
        assert_eq!(
            whole(
                &edit(Some("A@x"), Some("b@x")),
                json!([home, {"value": "a@x", "primary": true}])
            ),
            (
                Verb::Replace,
                Some(json!([home, {"value": "b@x", "primary": true, "type": "work"}]))
            )
        );
        // Neither: a new item, primary only when no other is.
        assert_eq!(
            whole(
                &edit(None, Some("b@x")),
                json!([{"value": "h@x", "primary": true}])
            ),
            (
                Verb::Replace,
                Some(json!([{"value": "h@x", "primary": true}, {"type": "work", "value": "b@x"}]))
            )
        );
        assert_eq!(
            whole(&edit(None, Some("b@x")), json!(null)),
            (
                Verb::Replace,
                Some(json!([{"type": "work", "value": "b@x", "primary": true}]))
            )
        );
        // A removal drops only the selected item; the attribute goes when nothing is left.
        assert_eq!(
            whole(
                &edit(Some("a@x"), None),
                json!([home, {"type": "work", "value": "a@x"}])
            ),
            (Verb::Replace, Some(json!([home])))
        );
        assert_eq!(
            whole(&edit(Some("a@x"), None), json!([{"value": "a@x"}])),
            (Verb::Remove, None)
        );
    }

    #[test]
    fn an_extension_attribute_is_found_under_its_urn() {
        let urn = "urn:example:ext";
        let mut e = edit(None, Some("b@x"));
        e.urn = Some(urn.into());
        let op = e.whole(&json!({ urn: {"emails": [{"type": "home", "value": "h@x"}]} }));
        assert_eq!(op.path.as_deref(), Some("urn:example:ext:emails"));
        assert_eq!(
            op.value,
            Some(
                json!([{"type": "home", "value": "h@x"}, {"type": "work", "value": "b@x", "primary": true}])
            )
        );
    }
}
