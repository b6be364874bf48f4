//! One table of the file read into its struct with every problem reported: each unknown key
//! (with the known key it is closest to), then each value of the wrong type. A value in error
//! is left out, so that the rest is still read and checked where the struct allows it.

use serde::de::DeserializeOwned;
use std::collections::BTreeSet;

/// The problems of one table, each as (key path, why).
pub(super) type Problems = Vec<(String, String)>;

/// The fields a struct reads, as serde names them (empty for a map or an enum).
pub(super) fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    serde_aux::serde_introspection::serde_introspect::<T>()
}

/// "unknown key", with the known key it most resembles, or the keys it could be.
pub(super) fn unknown_key(key: &str, known: &[&str]) -> String {
    let best = known
        .iter()
        .map(|k| {
            (
                strsim::jaro_winkler(&key.to_lowercase(), &k.to_lowercase()),
                *k,
            )
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, k)) => format!("unknown key; did you mean `{k}`?"),
        None => format!(
            "unknown key, expected one of {}",
            known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Reads `table` (at `at`) into a `T`, collecting problems. `None` when it cannot be read at
/// all, or only by leaving out a required value.
pub(super) fn take<T: DeserializeOwned>(
    at: &str,
    value: toml::Value,
    problems: &mut Problems,
) -> Option<T> {
    let path = |k: &str| {
        if k.is_empty() {
            at.to_owned()
        } else {
            format!("{at}.{k}")
        }
    };
    let mut table = match value {
        toml::Value::Table(t) => t,
        other => {
            problems.push((
                at.to_owned(),
                format!("must be a table, not {}", other.type_str()),
            ));
            return None;
        }
    };
    let fields = fields_of::<T>();
    if !fields.is_empty() {
        let unknown: Vec<String> = table
            .keys()
            .filter(|k| !fields.contains(&k.as_str()))
            .cloned()
            .collect();
        for k in unknown {
            problems.push((path(&k), unknown_key(&k, fields)));
            table.remove(&k);
        }
    }
    let mut left_out = BTreeSet::new();
    // Each round reports one value and leaves it out; there are at most as many as keys.
    for _ in 0..=table.len() {
        let e = match toml::Value::Table(table.clone()).try_into::<T>() {
            Ok(v) => return Some(v),
            Err(e) => e.to_string(),
        };
        let (message, key) = split_key(&e);
        if let Some(missing) = message.strip_prefix("missing field `") {
            let field = missing.trim_end_matches('`');
            if !left_out.contains(field) {
                problems.push((path(&key), format!("missing: set `{field}`")));
            }
            return None;
        }
        problems.push((path(&key), message.clone()));
        let top = key.split('.').next().unwrap_or_default().to_owned();
        if top.is_empty() || table.remove(&top).is_none() {
            return None;
        }
        left_out.insert(top);
    }
    None
}

/// A toml error's message and the key it names (`invalid type: …\nin `rate_limit``).
fn split_key(text: &str) -> (String, String) {
    let text = text.trim();
    match text.rsplit_once("\nin `") {
        Some((message, key)) => (
            message.trim().replace('\n', " "),
            key.trim_end_matches('`').to_owned(),
        ),
        None => (text.replace('\n', " "), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct T {
        name: String,
        #[serde(default)]
        rate_limit: u32,
        #[serde(default)]
        bulk: bool,
    }

    #[test]
    fn every_unknown_key_and_every_bad_value_at_once() {
        let v: toml::Value =
            "name = 'x'\nrate_limt = 5\nbulk = 3\nrate_limit = 'fast'\ncolour = 'red'\n"
                .parse::<toml::Table>()
                .map(toml::Value::Table)
                .expect("toml");
        let mut problems = Vec::new();
        let t = take::<T>("target[0]", v, &mut problems).expect("read without the bad values");
        assert_eq!((t.name.as_str(), t.rate_limit, t.bulk), ("x", 0, false));
        let got: Vec<String> = problems.iter().map(|(k, w)| format!("{k}: {w}")).collect();
        assert_eq!(
            got,
            [
                "target[0].colour: unknown key, expected one of `name`, `rate_limit`, `bulk`",
                "target[0].rate_limt: unknown key; did you mean `rate_limit`?",
                "target[0].bulk: invalid type: integer `3`, expected a boolean",
                "target[0].rate_limit: invalid type: string \"fast\", expected u32",
            ]
        );
    }

    #[test]
    fn a_required_value_in_error_is_reported_once() {
        let v: toml::Value = "name = 3"
            .parse::<toml::Table>()
            .map(toml::Value::Table)
            .expect("toml");
        let mut problems = Vec::new();
        assert!(take::<T>("t", v, &mut problems).is_none());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].1.starts_with("invalid type: integer `3`"),
            "{problems:?}"
        );
        let mut problems = Vec::new();
        assert!(take::<T>("t", toml::Value::Table(toml::Table::new()), &mut problems).is_none());
        assert_eq!(
            problems,
            [("t".to_owned(), "missing: set `name`".to_owned())]
        );
    }
}
