//! Newtypes for the identities that flow through a cycle, so one kind cannot stand for another.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
    };
}

id_type!(
    /// The immutable id of a directory object (`objectId`).
    SourceId
);
id_type!(
    /// The id a SCIM target gave to a resource.
    ScimId
);
id_type!(
    /// The `name` of a configured target.
    TargetName
);

/// The longest SCIM id scimsync accepts from a target.
pub const MAX_SCIM_ID: usize = 256;

/// Why an id a target sent cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadId {
    #[error("the target sent no id")]
    Missing,
    #[error("the target sent an id that is not a string: {0}")]
    NotText(String),
    #[error("the target sent an unusable id {0:?}: {1}")]
    Unusable(String, &'static str),
}

impl ScimId {
    /// An id as a target sent it, refused when it could not name exactly one resource in a
    /// URL path: empty, `.` or `..`, holding `/`, `?`, `#` or a control character, or longer
    /// than [`MAX_SCIM_ID`] bytes.
    pub fn checked(value: Option<&serde_json::Value>) -> Result<ScimId, BadId> {
        let text = match value {
            None | Some(serde_json::Value::Null) => return Err(BadId::Missing),
            Some(serde_json::Value::String(s)) => s,
            Some(other) => {
                let mut shown = other.to_string();
                shown.truncate(64);
                return Err(BadId::NotText(shown));
            }
        };
        // A server that decodes the path once more must not see another resource either.
        let decoded = urlencoding::decode(text).map(|d| d.into_owned());
        let why = unusable(text).or_else(|| match &decoded {
            Ok(d) if d != text => unusable(d),
            Ok(_) => None,
            Err(_) => Some("it holds a percent-encoding that is not UTF-8"),
        });
        match why {
            None => Ok(ScimId(text.clone())),
            Some(why) => {
                let shown: String = text.chars().take(64).flat_map(char::escape_debug).collect();
                Err(BadId::Unusable(shown, why))
            }
        }
    }
}

/// Why an id cannot name exactly one resource in a URL path, if it cannot.
fn unusable(text: &str) -> Option<&'static str> {
    if text.trim().is_empty() {
        Some("empty")
    } else if text == "." || text == ".." {
        Some("a relative path segment")
    } else if text.len() > MAX_SCIM_ID {
        Some("too long")
    } else if text.contains(['/', '?', '#', '\\']) {
        Some("it holds '/', '?', '#' or '\\'")
    } else if text.chars().any(char::is_control) {
        Some("it holds a control character")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_that_could_name_another_resource_are_refused() {
        assert_eq!(
            ScimId::checked(Some(&json!("2819c223-7f76"))),
            Ok(ScimId::from("2819c223-7f76"))
        );
        for bad in [
            json!(""),
            json!(" "),
            json!("."),
            json!(".."),
            json!("a/b"),
            json!("a?b"),
            json!("a#b"),
            json!("a\u{1b}[31m"),
            json!("x".repeat(300)),
            json!("%2e%2E"),
            json!("a%2Fb"),
            json!(7),
            json!(null),
        ] {
            assert!(ScimId::checked(Some(&bad)).is_err(), "{bad}");
        }
        assert_eq!(ScimId::checked(None), Err(BadId::Missing));
    }
}
