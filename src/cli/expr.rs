//! `scimsync expr`: one mapping expression evaluated, as Entra's expression builder does.

use super::{err, load, out, EXIT_FATAL, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE};
use crate::mapping::expr::{Expression, Value};
use crate::source;
use serde_json::Value as Json;
use std::collections::BTreeMap;

pub(super) async fn expr(
    config_path: &std::path::Path,
    text: &str,
    attrs: &[String],
    user: Option<&str>,
    json: bool,
) -> i32 {
    let expression = match Expression::parse(text) {
        Ok(e) => e,
        Err(e) => {
            err!("expression: {e}");
            return EXIT_PARTIAL;
        }
    };
    let mut bag: BTreeMap<String, Value> = BTreeMap::new();
    if let Some(id) = user {
        let config = match load(config_path) {
            Ok(c) => c,
            Err(code) => return code,
        };
        let source = match source::build(&config.source, config.max_value_bytes) {
            Ok(s) => s,
            Err(e) => {
                err!("source: {e}");
                return EXIT_FATAL;
            }
        };
        let u = match source.find_user(id).await {
            Ok(Some(u)) => u,
            Ok(None) => {
                err!("--user: no user {id:?} (objectId, mail, userPrincipalName or mailNickname) in {}", source.describe());
                return EXIT_PARTIAL;
            }
            Err(e) => {
                err!("source: {e}");
                return EXIT_FATAL;
            }
        };
        for (name, v) in u.iter() {
            let value = match v {
                source::AttrValue::Single(s) => Value::Str(s.clone()),
                source::AttrValue::Multi(m) => Value::Multi(m.clone()),
            };
            bag.insert(name.to_owned(), value);
        }
    }
    let mut given: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for a in attrs {
        let Some((name, value)) = a.split_once('=') else {
            err!("--attr {a:?}: expected NAME=VALUE");
            return EXIT_USAGE;
        };
        given
            .entry(name.to_lowercase())
            .or_insert_with(|| (name.to_owned(), Vec::new()))
            .1
            .push(value.to_owned());
    }
    for (_, (name, mut values)) in given {
        bag.retain(|k, _| !k.eq_ignore_ascii_case(&name));
        let v = if values.len() == 1 {
            Value::Str(values.remove(0))
        } else {
            Value::Multi(values)
        };
        bag.insert(name, v);
    }
    match expression.evaluate(&bag) {
        Ok(ev) => {
            let shown = |s: &str| {
                if ev.redacted {
                    "[Redact]".to_owned()
                } else {
                    s.to_owned()
                }
            };
            if json {
                let j = match &ev.value {
                    _ if ev.ignore_flow => Json::Null,
                    Value::Null => Json::Null,
                    Value::Multi(v) => {
                        Json::Array(v.iter().map(|s| Json::String(shown(s))).collect())
                    }
                    other => Json::String(shown(&other.as_display())),
                };
                out!("{j}");
            } else {
                match &ev.value {
                    Value::Multi(v) => v.iter().for_each(|s| out!("{}", shown(s))),
                    Value::Null => {}
                    other => out!("{}", shown(&other.as_display())),
                }
            }
            EXIT_OK
        }
        Err(e) => {
            err!("expression: {e}");
            EXIT_PARTIAL
        }
    }
}
