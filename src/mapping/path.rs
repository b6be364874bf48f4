//! SCIM attribute paths as mappings name them: `userName`, `name.formatted`,
//! `emails[type eq "work"].value`, and extension paths such as
//! `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`.
//!
//! A path knows how to read its value out of a SCIM resource, write it into a new one, and name
//! itself in a PATCH operation or a filter.

pub(crate) use crate::scim::filter::FilterForm;
use crate::scim::patch::{ItemEdit, PatchOp, Verb};
use serde_json::{Map, Value as Json};
use std::fmt;

pub(crate) const CORE_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub(crate) const CORE_GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// Why a mapping's `target` is not a SCIM attribute path scimsync can write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct PathError(String);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct AttrPath {
    /// The extension schema URN, or `None` for the core schema.
    pub(crate) urn: Option<String>,
    pub(crate) attr: String,
    /// A value filter of a multi-valued attribute: `[type eq "work"]` is `("type", "work")`.
    pub(crate) filter: Option<(String, String)>,
    pub(crate) sub: Option<String>,
}

/// The type a value is sent as, from the SCIM schemas of RFC 7643.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScimType {
    String,
    Boolean,
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
}

impl AttrPath {
    pub(crate) fn parse(text: &str) -> Result<AttrPath, PathError> {
        Self::parse_text(text).map_err(PathError)
    }

    fn parse_text(text: &str) -> Result<AttrPath, String> {
        let text = text.trim();
        let (urn, rest) = if text.len() > 4 && text[..4].eq_ignore_ascii_case("urn:") {
            let Some(i) = text.rfind(':') else {
                return Err(format!("{text:?}: an extension path needs URN:attribute"));
            };
            (Some(text[..i].to_owned()), &text[i + 1..])
        } else {
            (None, text)
        };
        let (head, sub) = match rest.find(['[', '.']) {
            None => (rest, None),
            Some(i) => (&rest[..i], Some(&rest[i..])),
        };
        if !is_name(head) {
            return Err(format!("{text:?}: {head:?} is not an attribute name"));
        }
        let mut path = AttrPath {
            urn,
            attr: head.to_owned(),
            filter: None,
            sub: None,
        };
        let mut rest = sub.unwrap_or("");
        if let Some(inner) = rest.strip_prefix('[') {
            let Some(end) = inner.find(']') else {
                return Err(format!("{text:?}: missing ']'"));
            };
            let filter = &inner[..end];
            rest = &inner[end + 1..];
            let parts: Vec<&str> = filter.splitn(3, ' ').collect();
            match parts.as_slice() {
                [name, op, value]
                    if is_name(name)
                        && op.eq_ignore_ascii_case("eq")
                        && value.len() >= 2
                        && value.starts_with('"')
                        && value.ends_with('"') =>
                {
                    path.filter = Some(((*name).to_owned(), value[1..value.len() - 1].to_owned()));
                }
                _ => {
                    return Err(format!(
                        "{text:?}: only a filter of the form [attribute eq \"value\"] is supported"
                    ))
                }
            }
        }
        if let Some(sub) = rest.strip_prefix('.') {
            if !is_name(sub) {
                return Err(format!("{text:?}: {sub:?} is not a sub-attribute name"));
            }
            path.sub = Some(sub.to_owned());
        } else if !rest.is_empty() {
            return Err(format!("{text:?}: unexpected {rest:?}"));
        }
        if path.filter.is_some() && path.sub.is_none() {
            return Err(format!(
                "{text:?}: a filtered path needs a sub-attribute, e.g. .value"
            ));
        }
        Ok(path)
    }

    /// The type this attribute is sent as. Everything not boolean in RFC 7643 is sent as a
    /// string (complex and multi-valued attributes are reached through their sub-attributes).
    pub(crate) fn scim_type(&self) -> ScimType {
        let leaf = self.sub.as_deref().unwrap_or(&self.attr);
        if leaf.eq_ignore_ascii_case("active") || leaf.eq_ignore_ascii_case("primary") {
            ScimType::Boolean
        } else {
            ScimType::String
        }
    }

    /// Whether values compare without regard to case (RFC 7643 `caseExact: false`), which is
    /// every string attribute of the core schemas except ids.
    pub(crate) fn case_insensitive(&self) -> bool {
        self.urn.is_none()
            && !matches!(self.attr.to_ascii_lowercase().as_str(), "externalid" | "id")
    }

    /// The filter expression that finds resources carrying `value` here (RFC 7644 §3.4.2.2),
    /// in the first (most specific) form.
    pub(crate) fn filter_for(&self, value: &str) -> String {
        self.filter_in(self.filter_forms()[0], value)
    }

    /// The forms a filter for this path can take, the most specific first. A path with a
    /// value filter (`emails[type eq "work"].value`) has four, because servers differ in which
    /// they answer; any other path has one.
    pub(crate) fn filter_forms(&self) -> &'static [FilterForm] {
        match (&self.filter, &self.sub) {
            (Some(_), Some(_)) => &[
                FilterForm::Compound,
                FilterForm::ValuePath,
                FilterForm::SubAttribute,
                FilterForm::Attribute,
            ],
            _ => &[FilterForm::Plain],
        }
    }

    /// The filter that finds resources carrying `value` here, in one form.
    pub(crate) fn filter_in(&self, form: FilterForm, value: &str) -> String {
        let v = quote(value);
        let attr = self.base_path();
        match (form, &self.filter, &self.sub) {
            (FilterForm::Compound, Some((fa, fv)), Some(sub)) => {
                format!("{attr}[{fa} eq {} and {sub} eq {v}]", quote(fv))
            }
            (FilterForm::ValuePath, Some((fa, fv)), Some(sub)) => {
                format!("{attr}[{fa} eq {}].{sub} eq {v}", quote(fv))
            }
            (FilterForm::SubAttribute, _, Some(sub)) | (FilterForm::Plain, None, Some(sub)) => {
                format!("{attr}.{sub} eq {v}")
            }
            _ => format!("{attr} eq {v}"),
        }
    }

    /// The values a resource holds here, as matching compares them: for a path with a value
    /// filter, the sub-attribute of *every* item whatever its type (RFC 7643 makes `type`
    /// optional, and servers drop or change it); else the one value. Empty values never count.
    pub(crate) fn match_values(&self, resource: &Json) -> Vec<String> {
        let text = value_text;
        match (&self.filter, &self.sub) {
            (Some(_), Some(sub)) => self
                .container(resource)
                .and_then(|c| get_ci(c, &self.attr))
                .and_then(Json::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|item| get_ci(item.as_object()?, sub).and_then(text))
                        .collect()
                })
                .unwrap_or_default(),
            _ => self
                .read(resource)
                .as_ref()
                .and_then(text)
                .into_iter()
                .collect(),
        }
    }

    /// The values of a resource here that sit in items of another type than this path names,
    /// or of none, and in no item of that type: the values a typed filter would miss. (A value
    /// the resource also holds typed would be found by a typed filter through that item, and
    /// prove nothing about untyped ones.) Empty for a path without a filter.
    pub(crate) fn untyped_values(&self, resource: &Json) -> Vec<String> {
        fn value<'v>(item: &'v Map<String, Json>, sub: &str) -> Option<&'v str> {
            get_ci(item, sub)
                .and_then(Json::as_str)
                .filter(|v| !v.trim().is_empty())
        }
        let (Some((fa, fv)), Some(sub)) = (&self.filter, &self.sub) else {
            return Vec::new();
        };
        let Some(items) = self
            .container(resource)
            .and_then(|c| get_ci(c, &self.attr))
            .and_then(Json::as_array)
        else {
            return Vec::new();
        };
        let typed = |item: &Map<String, Json>| {
            get_ci(item, fa)
                .and_then(Json::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case(fv))
        };
        let objects = || items.iter().filter_map(Json::as_object);
        let held_typed: Vec<&str> = objects()
            .filter(|i| typed(i))
            .filter_map(|i| value(i, sub))
            .collect();
        objects()
            .filter(|i| !typed(i))
            .filter_map(|i| value(i, sub))
            .filter(|v| !held_typed.iter().any(|t| self.same_value(t, v)))
            .map(str::to_owned)
            .collect()
    }

    /// Whether a resource holds `value` here only untyped (see [`AttrPath::untyped_values`]):
    /// a typed filter that finds it ignores the type.
    pub(crate) fn carries_untyped(&self, resource: &Json, value: &str) -> bool {
        self.untyped_values(resource)
            .iter()
            .any(|v| self.same_value(v, value))
    }

    /// The top-level key of a resource that holds this path: the attribute, or its extension.
    pub(crate) fn top_key(&self) -> String {
        self.urn.clone().unwrap_or_else(|| self.attr.clone())
    }

    /// Whether a resource carries `value` here, as matching compares (see
    /// [`AttrPath::match_values`]; without regard to case where the attribute is not
    /// case-exact).
    pub(crate) fn carries(&self, resource: &Json, value: &str) -> bool {
        !value.trim().is_empty()
            && self
                .match_values(resource)
                .iter()
                .any(|v| self.same_value(v, value))
    }

    /// Whether two values of this attribute are the same, as the target compares them.
    pub(crate) fn same_value(&self, a: &str, b: &str) -> bool {
        if self.case_insensitive() {
            a.to_lowercase() == b.to_lowercase()
        } else {
            a == b
        }
    }

    /// The object that holds this attribute in a resource: the resource or its extension.
    fn container<'a>(&self, resource: &'a Json) -> Option<&'a Map<String, Json>> {
        let obj = resource.as_object()?;
        match &self.urn {
            None => Some(obj),
            Some(urn) => get_ci(obj, urn)?.as_object(),
        }
    }

    /// Reads this path's value from a SCIM resource.
    pub(crate) fn read(&self, resource: &Json) -> Option<Json> {
        let top = get_ci(self.container(resource)?, &self.attr)?;
        let v = match (&self.filter, &self.sub) {
            (Some((fa, fv)), Some(sub)) => {
                let item = top.as_array()?.iter().find(|item| {
                    item.as_object()
                        .and_then(|o| get_ci(o, fa))
                        .and_then(Json::as_str)
                        .is_some_and(|s| s.eq_ignore_ascii_case(fv))
                })?;
                get_ci(item.as_object()?, sub)?
            }
            (None, Some(sub)) => get_ci(top.as_object()?, sub)?,
            _ => top,
        };
        (!v.is_null()).then(|| v.clone())
    }

    /// Writes this path's value into a resource being built for a POST.
    pub(crate) fn write(&self, resource: &mut Map<String, Json>, value: Json) {
        let container = match &self.urn {
            None => resource,
            Some(urn) => {
                add_schema(resource, urn);
                let ext = resource
                    .entry(urn.clone())
                    .or_insert_with(|| Json::Object(Map::new()));
                if !ext.is_object() {
                    *ext = Json::Object(Map::new());
                }
                match ext.as_object_mut() {
                    Some(m) => m,
                    None => return,
                }
            }
        };
        match (&self.filter, &self.sub) {
            (Some((fa, fv)), Some(sub)) => {
                let list = container
                    .entry(self.attr.clone())
                    .or_insert_with(|| Json::Array(Vec::new()));
                if !list.is_array() {
                    *list = Json::Array(Vec::new());
                }
                let Some(items) = list.as_array_mut() else {
                    return;
                };
                let pos = items
                    .iter()
                    .position(|i| i.get(fa.as_str()).and_then(Json::as_str) == Some(fv.as_str()));
                let pos = pos.unwrap_or_else(|| {
                    let mut item = Map::new();
                    item.insert(fa.clone(), Json::String(fv.clone()));
                    items.push(Json::Object(item));
                    items.len() - 1
                });
                if let Some(item) = items[pos].as_object_mut() {
                    item.insert(sub.clone(), value);
                }
            }
            (None, Some(sub)) => {
                let obj = container
                    .entry(self.attr.clone())
                    .or_insert_with(|| Json::Object(Map::new()));
                if !obj.is_object() {
                    *obj = Json::Object(Map::new());
                }
                if let Some(o) = obj.as_object_mut() {
                    o.insert(sub.clone(), value);
                }
            }
            _ => {
                container.insert(self.attr.clone(), value);
            }
        }
    }

    /// The PATCH operation that sets this path to `value`, given the value last sent there
    /// (`old`). A filtered path that matches nothing cannot be replaced (servers answer
    /// `noTarget`), so without an old value the item is added instead.
    pub(crate) fn patch_set(&self, value: Json, old: Option<&Json>) -> PatchOp {
        let op = match (&self.filter, &self.sub) {
            (Some((fa, fv)), Some(sub)) => {
                let op = if old.is_some() {
                    PatchOp::new(Verb::Replace, self.to_string(), Some(value.clone()))
                } else {
                    let mut item = Map::new();
                    item.insert(fa.clone(), Json::String(fv.clone()));
                    item.insert(sub.clone(), value.clone());
                    let items = Json::Array(vec![Json::Object(item)]);
                    PatchOp::new(Verb::Add, self.base_path(), Some(items))
                };
                op.editing(self.item_edit((fa, fv), sub, old, Some(value)))
            }
            _ => PatchOp::new(Verb::Replace, self.to_string(), Some(value)),
        };
        op.for_attribute(self.to_string())
    }

    /// The PATCH operation that clears this path, given the value last sent there.
    pub(crate) fn patch_remove(&self, old: Option<&Json>) -> PatchOp {
        let op = match &self.filter {
            // Clearing the value of a typed item removes the item (an e-mail without value is
            // meaningless).
            Some((fa, fv)) => {
                let path = format!("{}[{fa} eq {}]", self.base_path(), quote(fv));
                let op = PatchOp::new(Verb::Remove, path, None);
                match &self.sub {
                    Some(sub) => op.editing(self.item_edit((fa, fv), sub, old, None)),
                    None => op,
                }
            }
            None => PatchOp::new(Verb::Remove, self.to_string(), None),
        };
        op.for_attribute(self.to_string())
    }

    /// The item edit of this value-filtered path (see [`ItemEdit`]).
    fn item_edit(
        &self,
        (fa, fv): (&String, &String),
        sub: &str,
        old: Option<&Json>,
        new: Option<Json>,
    ) -> ItemEdit {
        ItemEdit {
            urn: self.urn.clone(),
            attr: self.attr.clone(),
            key: (fa.clone(), fv.clone()),
            sub: sub.to_owned(),
            old: old.and_then(Json::as_str).map(str::to_owned),
            new,
        }
    }

    /// For an adopted account that holds `value` here only in an item of another type (or of
    /// none): the replacement of the whole multi-valued attribute with that item given this
    /// path's type, every other item kept as it is. `None` when nothing is to retype (the
    /// typed item is there, or the value is not held at all).
    pub(crate) fn retype(&self, resource: &Json, value: &str) -> Option<PatchOp> {
        let (Some((fa, fv)), Some(sub)) = (&self.filter, &self.sub) else {
            return None;
        };
        let items = get_ci(self.container(resource)?, &self.attr)?.as_array()?;
        let typed = |item: &Map<String, Json>| {
            get_ci(item, fa)
                .and_then(Json::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case(fv))
        };
        let holds = |item: &Map<String, Json>| {
            get_ci(item, sub)
                .and_then(Json::as_str)
                .is_some_and(|v| self.same_value(v, value))
        };
        let objects = || items.iter().filter_map(Json::as_object);
        if objects().any(|i| typed(i) && holds(i)) {
            return None;
        }
        let at = items
            .iter()
            .position(|i| i.as_object().is_some_and(|i| holds(i) && !typed(i)))?;
        let mut retyped = items.clone();
        if let Some(item) = retyped[at].as_object_mut() {
            item.retain(|k, _| !k.eq_ignore_ascii_case(fa));
            item.insert(fa.clone(), Json::String(fv.clone()));
        }
        Some(PatchOp::new(
            Verb::Replace,
            self.base_path(),
            Some(Json::Array(retyped)),
        ))
    }

    fn base_path(&self) -> String {
        match &self.urn {
            Some(urn) => format!("{urn}:{}", self.attr),
            None => self.attr.clone(),
        }
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base_path())?;
        if let Some((fa, fv)) = &self.filter {
            write!(f, "[{fa} eq {}]", quote(fv))?;
        }
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

/// A value as matching compares it: a non-blank string, or a boolean as text.
pub(crate) fn value_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A SCIM filter string literal (RFC 7644 §3.4.2.2 uses JSON string syntax).
pub(crate) fn quote(value: &str) -> String {
    Json::String(value.to_owned()).to_string()
}

fn get_ci<'a>(obj: &'a Map<String, Json>, key: &str) -> Option<&'a Json> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn add_schema(resource: &mut Map<String, Json>, urn: &str) {
    let schemas = resource
        .entry("schemas")
        .or_insert_with(|| Json::Array(Vec::new()));
    if let Some(list) = schemas.as_array_mut() {
        if !list.iter().any(|s| s.as_str() == Some(urn)) {
            list.push(Json::String(urn.to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEPT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department";

    #[test]
    fn parse_and_print_round_trip() {
        for p in [
            "userName",
            "name.formatted",
            r#"emails[type eq "work"].value"#,
            DEPT,
        ] {
            assert_eq!(AttrPath::parse(p).expect(p).to_string(), p);
        }
        let d = AttrPath::parse(DEPT).expect("dept");
        assert_eq!(
            d.urn.as_deref(),
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
        );
        assert_eq!(d.attr, "department");
        for bad in [
            "",
            "1x",
            "emails[type]",
            "emails[type eq \"work\"]",
            "name.",
            "a b",
        ] {
            assert!(AttrPath::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn write_then_read_back() {
        let mut r = Map::new();
        r.insert("schemas".into(), json!([CORE_USER]));
        let paths = [
            "userName",
            "name.formatted",
            r#"emails[type eq "work"].value"#,
            DEPT,
            "active",
        ];
        let values = [
            json!("ada"),
            json!("Ada L"),
            json!("ada@x"),
            json!("R&D"),
            json!(true),
        ];
        for (p, v) in paths.iter().zip(&values) {
            AttrPath::parse(p).expect(p).write(&mut r, v.clone());
        }
        let r = Json::Object(r);
        assert_eq!(
            r,
            json!({"schemas": [CORE_USER, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                   "userName": "ada", "name": {"formatted": "Ada L"},
                   "emails": [{"type": "work", "value": "ada@x"}],
                   "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"},
                   "active": true})
        );
        for (p, v) in paths.iter().zip(&values) {
            assert_eq!(
                AttrPath::parse(p).expect(p).read(&r).as_ref(),
                Some(v),
                "{p}"
            );
        }
        assert_eq!(
            AttrPath::parse(r#"emails[type eq "home"].value"#)
                .expect("p")
                .read(&r),
            None
        );
    }

    #[test]
    fn an_untyped_value_is_one_no_typed_item_holds() {
        let p = AttrPath::parse(r#"emails[type eq "work"].value"#).expect("p");
        let untyped = |emails: Json| {
            p.untyped_values(&json!({ "emails": emails }))
                .into_iter()
                .next()
        };
        assert_eq!(untyped(json!([{"value": "a@x"}])), Some("a@x".to_owned()));
        assert_eq!(
            untyped(json!([{"type": "work", "value": "a@x"}, {"type": "other", "value": "b@x"}])),
            Some("b@x".to_owned())
        );
        // Held typed as well (an adopted account that kept its old item): a typed filter
        // would find it through the typed item, so it cannot tell.
        assert_eq!(
            untyped(json!([{"value": "a@x"}, {"type": "WORK", "value": "A@x"}])),
            None
        );
        assert_eq!(untyped(json!([{"type": "work", "value": "a@x"}])), None);
        assert_eq!(untyped(json!([{"value": " "}])), None);
        assert!(AttrPath::parse("userName")
            .expect("p")
            .untyped_values(&json!({"userName": "a"}))
            .is_empty());
        let both = json!({"emails": [{"value": "a@x"}, {"type": "work", "value": "b@x"}]});
        assert!(p.carries_untyped(&both, "A@x"));
        assert!(!p.carries_untyped(&both, "b@x"));
    }

    #[test]
    fn an_address_of_another_type_is_retyped_with_the_other_items_kept() {
        let p = AttrPath::parse(r#"emails[type eq "work"].value"#).expect("p");
        let retype = |emails: Json, value: &str| {
            p.retype(&json!({ "emails": emails }), value)
                .map(|op| (op.op, op.path.expect("path"), op.value.expect("value")))
        };
        assert_eq!(
            retype(
                json!([{"value": "home@x", "type": "home"}, {"value": "A@x", "primary": true}]),
                "a@x"
            ),
            Some((
                Verb::Replace,
                "emails".to_owned(),
                json!([{"value": "home@x", "type": "home"}, {"value": "A@x", "primary": true, "type": "work"}])
            ))
        );
        assert_eq!(
            retype(json!([{"value": "a@x", "TYPE": "other"}]), "a@x").map(|r| r.2),
            Some(json!([{"value": "a@x", "type": "work"}]))
        );
        // Typed already, held in no item, or nothing there: nothing to send.
        assert_eq!(
            retype(json!([{"value": "a@x", "type": "Work"}]), "a@x"),
            None
        );
        assert_eq!(retype(json!([{"value": "b@x"}]), "a@x"), None);
        assert_eq!(p.retype(&json!({"userName": "a"}), "a@x"), None);
        assert_eq!(
            AttrPath::parse("userName")
                .expect("p")
                .retype(&json!({"userName": "a"}), "a"),
            None
        );
    }

    #[test]
    fn filters_are_rfc_7644_with_escaped_values() {
        let p = AttrPath::parse(r#"emails[type eq "work"].value"#).expect("p");
        assert_eq!(
            p.filter_for("a\"b@x"),
            r#"emails[type eq "work" and value eq "a\"b@x"]"#
        );
        assert_eq!(
            AttrPath::parse("userName").expect("p").filter_for("o'b\\"),
            r#"userName eq "o'b\\""#
        );
        assert_eq!(
            AttrPath::parse("name.givenName")
                .expect("p")
                .filter_for("A"),
            r#"name.givenName eq "A""#
        );
    }

    #[test]
    fn patch_of_a_filtered_path_adds_the_item_when_absent() {
        let lower = |v: Verb| match v {
            Verb::Add => "add",
            Verb::Replace => "replace",
            Verb::Remove => "remove",
        };
        let p = AttrPath::parse(r#"emails[type eq "work"].value"#).expect("p");
        assert_eq!(
            p.patch_set(json!("a@x"), None).to_json(lower),
            json!({"op": "add", "path": "emails", "value": [{"type": "work", "value": "a@x"}]})
        );
        assert_eq!(
            p.patch_set(json!("a@x"), Some(&json!("old@x")))
                .to_json(lower),
            json!({"op": "replace", "path": "emails[type eq \"work\"].value", "value": "a@x"})
        );
        assert_eq!(
            p.patch_remove(Some(&json!("a@x"))).to_json(lower),
            json!({"op": "remove", "path": "emails[type eq \"work\"]"})
        );
    }
}
