//! Values that expressions read from attributes and produce: null, string, multi-valued, date.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// A value flowing through an expression.
///
/// Booleans are the strings `"True"` and `"False"` and numbers are decimal strings, as in the
/// Entra provisioning service, so that every result can be written to a SCIM attribute as is.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    /// An absent attribute, or an omitted argument.
    Null,
    Str(String),
    /// A multi-valued attribute, in source order.
    Multi(Vec<String>),
    /// Produced by date functions; always UTC.
    DateTime(DateTime<Utc>),
}

/// Separator used when a multi-valued value has to become one string (`CStr`, `as_display`,
/// a multi-valued argument where a single string is expected).
pub(crate) const MULTI_SEPARATOR: &str = ",";

impl Value {
    /// True for `Null`, the empty string, and a multi-valued value with no non-empty element.
    pub(crate) fn is_null_or_empty(&self) -> bool {
        match self {
            Value::Null => true,
            Value::Str(s) => s.is_empty(),
            Value::Multi(values) => values.iter().all(String::is_empty),
            Value::DateTime(_) => false,
        }
    }

    /// The value as one string: `Null` is empty, a multi-valued value has its elements joined
    /// with `,`, and a date prints as `M/d/yyyy h:mm:ss tt` in UTC (`1/2/2024 3:04:05 PM`).
    pub(crate) fn as_display(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Str(s) => s.clone(),
            Value::Multi(values) => values.join(MULTI_SEPARATOR),
            Value::DateTime(dt) => super::datetime::display(dt),
        }
    }

    /// The value as one string, or `None` for `Null`.
    pub(crate) fn text(&self) -> Option<String> {
        match self {
            Value::Null => None,
            other => Some(other.as_display()),
        }
    }

    /// Size used to stop an expression from building an unbounded value.
    pub(crate) fn byte_len(&self) -> usize {
        match self {
            Value::Null | Value::DateTime(_) => 0,
            Value::Str(s) => s.len(),
            Value::Multi(values) => values.iter().map(|v| v.len() + 1).sum(),
        }
    }

    pub(crate) fn bool(b: bool) -> Value {
        Value::Str(if b { "True" } else { "False" }.to_string())
    }
}

/// Where `[attribute]` references are looked up.
pub(crate) trait Attributes {
    /// `name` is as written in the expression; implementors look it up case-insensitively,
    /// as Entra does. `None` means the attribute is absent (null).
    fn get(&self, name: &str) -> Option<Value>;
}

impl Attributes for BTreeMap<String, Value> {
    fn get(&self, name: &str) -> Option<Value> {
        if let Some(v) = BTreeMap::get(self, name) {
            return Some(v.clone());
        }
        let wanted = name.to_lowercase();
        self.iter()
            .find(|(k, _)| k.to_lowercase() == wanted)
            .map(|(_, v)| v.clone())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn null_or_empty() {
        assert!(Value::Null.is_null_or_empty());
        assert!(Value::Str(String::new()).is_null_or_empty());
        assert!(Value::Multi(vec![]).is_null_or_empty());
        assert!(Value::Multi(vec![String::new()]).is_null_or_empty());
        assert!(!Value::Multi(vec!["a".into()]).is_null_or_empty());
        assert!(!Value::Str(" ".into()).is_null_or_empty());
        let dt = Utc.with_ymd_and_hms(2024, 1, 2, 15, 4, 5).unwrap();
        assert!(!Value::DateTime(dt).is_null_or_empty());
    }

    #[test]
    fn display() {
        let dt = Utc.with_ymd_and_hms(2024, 1, 2, 15, 4, 5).unwrap();
        assert_eq!(Value::DateTime(dt).as_display(), "1/2/2024 3:04:05 PM");
        let midnight = Utc.with_ymd_and_hms(2024, 12, 31, 0, 0, 0).unwrap();
        assert_eq!(
            Value::DateTime(midnight).as_display(),
            "12/31/2024 12:00:00 AM"
        );
        assert_eq!(
            Value::Multi(vec!["a".into(), "b".into()]).as_display(),
            "a,b"
        );
        assert_eq!(Value::Null.as_display(), "");
    }

    #[test]
    fn map_lookup_is_case_insensitive() {
        let mut m = BTreeMap::new();
        m.insert("givenName".to_string(), Value::Str("Ada".into()));
        assert_eq!(
            Attributes::get(&m, "GIVENNAME"),
            Some(Value::Str("Ada".into()))
        );
        assert_eq!(
            Attributes::get(&m, "givenName"),
            Some(Value::Str("Ada".into()))
        );
        assert_eq!(Attributes::get(&m, "surname"), None);
    }
}
