//! Attribute mappings: from a source object to the SCIM resource a target should hold.
//!
//! Rules are compiled once from the configuration (a bad expression is a configuration error)
//! and evaluated per object as pure functions. A rule that fails on one object rejects that
//! object with a reason; it never stops a cycle.

pub(crate) mod expr;
pub(crate) mod path;
pub(crate) mod rules;

use crate::source::SourceObject;
use expr::{Attributes, Value};
pub(crate) use path::{AttrPath, ScimType};
use rules::parse_bool;
pub(crate) use rules::{Apply, CompileError, Mappings, Rule, RuleValue};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use std::collections::{BTreeMap, BTreeSet};

/// Why one object could not be mapped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{target}: {message}")]
pub(crate) struct MappingError {
    pub(crate) target: String,
    pub(crate) message: String,
}

/// The resource a target should hold for one object, keyed by canonical attribute path.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Desired {
    /// Attributes kept in step on every cycle.
    pub(crate) attrs: BTreeMap<String, Json>,
    /// Attributes sent only when the resource is created (`apply = "on_create"`).
    pub(crate) on_create: BTreeMap<String, Json>,
    /// Paths whose value came through `Redact()`: sent, but never shown.
    pub(crate) redacted: BTreeSet<String>,
}

impl Desired {
    /// The JSON body of a POST for this resource.
    pub(crate) fn to_resource(&self, core_schema: &str) -> Json {
        let mut r = Map::new();
        r.insert(
            "schemas".into(),
            Json::Array(vec![Json::String(core_schema.into())]),
        );
        for (p, v) in self.on_create.iter().chain(&self.attrs) {
            if let Ok(path) = AttrPath::parse(p) {
                path.write(&mut r, v.clone());
            }
        }
        Json::Object(r)
    }

    /// A value as it may be shown in a plan or log.
    pub(crate) fn shown(&self, path: &str, value: &Json) -> String {
        if self.redacted.contains(path) {
            "[Redact]".to_owned()
        } else {
            value.to_string()
        }
    }
}

/// Evaluates every rule for one object.
pub(crate) fn map(rules: &[Rule], object: &SourceObject) -> Result<Desired, MappingError> {
    let mut out = Desired::default();
    for rule in rules {
        let fail = |message: String| MappingError {
            target: rule.target.to_string(),
            message,
        };
        let (value, redacted) = match &rule.value {
            RuleValue::Source(name) => {
                (Attributes::get(object, name).unwrap_or(Value::Null), false)
            }
            RuleValue::Constant(k) => (Value::Str(k.clone()), false),
            RuleValue::Expression(e) => {
                let ev = e.evaluate(object).map_err(|e| fail(e.to_string()))?;
                if ev.ignore_flow {
                    continue;
                }
                (ev.value, ev.redacted)
            }
        };
        let value = match (value.is_null_or_empty(), &rule.default) {
            (true, Some(d)) => Value::Str(d.clone()),
            (true, None) => continue,
            (false, _) => value,
        };
        let json = coerce(&rule.target, value).map_err(fail)?;
        let key = rule.target.to_string();
        if redacted {
            out.redacted.insert(key.clone());
        }
        match rule.apply {
            Apply::Always => out.attrs.insert(key, json),
            Apply::OnCreate => out.on_create.insert(key, json),
        };
    }
    Ok(out)
}

/// Converts an expression value to the JSON type the SCIM schema gives the attribute; the
/// error is the message of the object's [`MappingError`].
fn coerce(target: &AttrPath, value: Value) -> Result<Json, String> {
    let text = match value {
        Value::Str(s) => s,
        Value::Multi(mut v) if v.len() == 1 => v.remove(0),
        Value::Multi(v) => {
            return Err(format!(
                "{} values for a single-valued attribute: {v:?}",
                v.len()
            ));
        }
        other @ Value::DateTime(_) => other.as_display(),
        Value::Null => return Ok(Json::Null),
    };
    match target.scim_type() {
        ScimType::String => Ok(Json::String(text)),
        ScimType::Boolean => parse_bool(&text)
            .map(Json::Bool)
            .ok_or_else(|| format!("{text:?} is not a boolean (expected \"True\" or \"False\")")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{default_group_mappings, default_user_mappings, MappingConfig};
    use crate::ids::SourceId;
    use crate::source::AttrValue;
    use serde_json::json;

    fn user(attrs: &[(&str, &str)]) -> SourceObject {
        let mut o = SourceObject::new(SourceId::from("7d1c"));
        for (k, v) in attrs {
            o.set(k, AttrValue::Single((*v).to_owned()));
        }
        o
    }

    fn cfg(target: &str) -> MappingConfig {
        MappingConfig {
            target: target.into(),
            source: None,
            constant: None,
            expression: None,
            default: None,
            apply: Apply::Always,
            matching_precedence: None,
        }
    }

    #[test]
    fn direct_constant_default_and_on_create() {
        let configs = vec![
            MappingConfig {
                source: Some("objectId".into()),
                matching_precedence: Some(1),
                ..cfg("userName")
            },
            MappingConfig {
                source: Some("department".into()),
                default: Some("None".into()),
                ..cfg("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department")
            },
            MappingConfig {
                constant: Some("True".into()),
                ..cfg("active")
            },
            MappingConfig {
                source: Some("mail".into()),
                apply: Apply::OnCreate,
                ..cfg("nickName")
            },
            MappingConfig {
                source: Some("missing".into()),
                ..cfg("title")
            },
        ];
        let m = Mappings::compile(&configs, &default_group_mappings()).expect("compiles");
        let d = map(&m.users, &user(&[("mail", "a@x")])).expect("maps");
        assert_eq!(d.attrs.get("userName"), Some(&json!("7d1c")));
        assert_eq!(d.attrs.get("active"), Some(&json!(true)));
        assert_eq!(
            d.attrs
                .get("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"),
            Some(&json!("None"))
        );
        assert_eq!(d.on_create.get("nickName"), Some(&json!("a@x")));
        assert!(!d.attrs.contains_key("title"), "a null value is not sent");
    }

    #[test]
    fn a_value_that_is_not_a_boolean_rejects_the_object() {
        let configs = vec![
            MappingConfig {
                source: Some("objectId".into()),
                matching_precedence: Some(1),
                ..cfg("userName")
            },
            MappingConfig {
                source: Some("enabled".into()),
                ..cfg("active")
            },
        ];
        let m = Mappings::compile(&configs, &default_group_mappings()).expect("compiles");
        let e = map(&m.users, &user(&[("enabled", "yes")])).expect_err("not a boolean");
        assert_eq!(
            e.to_string(),
            "active: \"yes\" is not a boolean (expected \"True\" or \"False\")"
        );
    }

    #[test]
    fn compile_errors_are_located() {
        let configs = vec![
            MappingConfig {
                source: Some("objectId".into()),
                constant: Some("x".into()),
                ..cfg("userName")
            },
            MappingConfig {
                source: Some("mail".into()),
                ..cfg("emails[type]")
            },
            MappingConfig {
                source: Some("a".into()),
                matching_precedence: Some(0),
                ..cfg("title")
            },
        ];
        let errors = Mappings::compile(&configs, &default_group_mappings()).expect_err("invalid");
        let got: Vec<_> = errors.iter().map(|e| (e.index, e.field)).collect();
        assert!(got.contains(&(Some(0), None)), "{errors:?}");
        assert!(got.contains(&(Some(1), Some("target"))), "{errors:?}");
        assert!(
            got.contains(&(Some(2), Some("matching_precedence"))),
            "{errors:?}"
        );
    }

    #[test]
    fn defaults_compile_with_two_matching_rules_in_order() {
        let m = Mappings::compile(&default_user_mappings(), &default_group_mappings())
            .expect("compiles");
        let order: Vec<_> = m
            .user_matching()
            .iter()
            .map(|r| r.target.to_string())
            .collect();
        assert_eq!(order, [r#"emails[type eq "work"].value"#, "userName"]);
    }
}
