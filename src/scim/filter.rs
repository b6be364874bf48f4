//! The forms a SCIM filter for one attribute can take (RFC 7644 §3.4.2.2): servers answer
//! different ones, so a target's profile learns which one works.

use serde::{Deserialize, Serialize};

/// A form of filter expression for one path: servers answer different ones (RFC 7644 §3.4.2.2
/// allows all of them; many implement a few).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterForm {
    /// `emails[type eq "work" and value eq "v"]`
    Compound,
    /// `emails[type eq "work"].value eq "v"`
    ValuePath,
    /// `emails.value eq "v"`: any e-mail, whatever its type.
    SubAttribute,
    /// `emails eq "v"`: the multi-valued attribute's primary sub-attribute.
    Attribute,
    /// `userName eq "v"`, `name.givenName eq "v"`: a path without a value filter.
    Plain,
}

impl FilterForm {
    /// How the form is named in messages and in `check`.
    pub fn describe(self) -> &'static str {
        match self {
            FilterForm::Compound => "attr[type eq \"…\" and value eq \"…\"]",
            FilterForm::ValuePath => "attr[type eq \"…\"].value eq \"…\"",
            FilterForm::SubAttribute => "attr.value eq \"…\"",
            FilterForm::Attribute => "attr eq \"…\"",
            FilterForm::Plain => "attr eq \"…\"",
        }
    }
}
