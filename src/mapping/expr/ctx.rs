//! What an evaluation carries along: the attributes of one object, the time `Now()` gives,
//! and whether `Redact` or `IgnoreFlowIfNullOrEmpty` were met on the way.

use chrono::{DateTime, Utc};

use super::Attributes;

pub(crate) struct Ctx<'a> {
    pub(crate) attrs: &'a dyn Attributes,
    /// What `Now()` returns; fixed for one evaluation so that every call agrees.
    pub(crate) now: DateTime<Utc>,
    pub(crate) redacted: bool,
    pub(crate) ignore_flow: bool,
}

/// A plain decimal number (`-12`, `3.5`); stricter than `f64::from_str`, which would also
/// take `inf` and `1e5`.
pub(crate) fn as_decimal(s: &str) -> Option<f64> {
    let t = s.trim();
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let ok = !int.is_empty()
        && int.chars().all(|c| c.is_ascii_digit())
        && frac.chars().all(|c| c.is_ascii_digit());
    if ok {
        t.parse().ok()
    } else {
        None
    }
}
