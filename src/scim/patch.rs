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
    /// The same change made to the whole multi-valued attribute, for a target that refuses
    /// a value-filtered path (`emails[type eq "work"].value`).
    #[serde(skip)]
    pub whole: Option<Box<PatchOp>>,
}

impl PatchOp {
    pub fn new(op: Verb, path: impl Into<String>, value: Option<Json>) -> PatchOp {
        PatchOp {
            op,
            path: Some(path.into()),
            value,
            attribute: None,
            whole: None,
        }
    }

    /// The same operation, with the whole-attribute form a target may take instead.
    pub fn or_whole(mut self, whole: PatchOp) -> PatchOp {
        self.whole = Some(Box::new(whole));
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
