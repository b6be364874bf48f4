//! The function table: each function's name, argument count and parameters, checked when an
//! expression is parsed, so that a bad mapping is rejected when configuration loads.

use super::ast::{Expr, Func};

pub(crate) struct Spec {
    pub(crate) func: Func,
    pub(crate) name: &'static str,
    pub(crate) min: usize,
    /// `None` for functions that take any number of further arguments.
    pub(crate) max: Option<usize>,
    /// Parameter names as the reference gives them, for messages.
    pub(crate) params: &'static [&'static str],
    /// How many leading arguments may not be left empty.
    pub(crate) required: usize,
}

const fn spec(
    func: Func,
    name: &'static str,
    min: usize,
    max: Option<usize>,
    params: &'static [&'static str],
    required: usize,
) -> Spec {
    Spec {
        func,
        name,
        min,
        max,
        params,
        required,
    }
}

const ONE_EXPR: &[&str] = &["expression"];

pub(crate) const SPECS: &[Spec] = &[
    spec(Func::Append, "Append", 2, Some(2), &["source", "suffix"], 2),
    spec(
        Func::AppRoleAssignmentsComplex,
        "AppRoleAssignmentsComplex",
        1,
        Some(1),
        &["appRoleAssignments"],
        1,
    ),
    spec(Func::BitAnd, "BitAnd", 2, Some(2), &["value1", "value2"], 2),
    spec(Func::CBool, "CBool", 1, Some(1), ONE_EXPR, 1),
    spec(Func::CDate, "CDate", 1, Some(1), ONE_EXPR, 1),
    spec(Func::Coalesce, "Coalesce", 1, None, &["source"], 0),
    spec(
        Func::ConvertToBase64,
        "ConvertToBase64",
        1,
        Some(1),
        &["source"],
        1,
    ),
    spec(
        Func::ConvertToUTF8Hex,
        "ConvertToUTF8Hex",
        1,
        Some(1),
        &["source"],
        1,
    ),
    spec(Func::Count, "Count", 1, Some(1), &["attribute"], 1),
    spec(Func::CStr, "CStr", 1, Some(1), &["value"], 1),
    spec(
        Func::DateAdd,
        "DateAdd",
        3,
        Some(3),
        &["interval", "value", "dateTime"],
        3,
    ),
    spec(
        Func::DateDiff,
        "DateDiff",
        3,
        Some(3),
        &["interval", "date1", "date2"],
        3,
    ),
    spec(Func::DateFromNum, "DateFromNum", 1, Some(1), &["value"], 1),
    spec(
        Func::FormatDateTime,
        "FormatDateTime",
        3,
        Some(4),
        &["source", "dateTimeStyles", "inputFormat", "outputFormat"],
        1,
    ),
    spec(Func::Guid, "Guid", 0, Some(0), &[], 0),
    spec(
        Func::IgnoreFlowIfNullOrEmpty,
        "IgnoreFlowIfNullOrEmpty",
        1,
        Some(1),
        ONE_EXPR,
        1,
    ),
    spec(
        Func::IIF,
        "IIF",
        3,
        Some(3),
        &["condition", "valueIfTrue", "valueIfFalse"],
        1,
    ),
    spec(
        Func::InStr,
        "InStr",
        2,
        Some(4),
        &["value1", "value2", "start", "compareType"],
        2,
    ),
    spec(Func::IsNull, "IsNull", 1, Some(1), ONE_EXPR, 1),
    spec(
        Func::IsNullOrEmpty,
        "IsNullOrEmpty",
        1,
        Some(1),
        ONE_EXPR,
        1,
    ),
    spec(Func::IsPresent, "IsPresent", 1, Some(1), ONE_EXPR, 1),
    spec(Func::IsString, "IsString", 1, Some(1), ONE_EXPR, 1),
    spec(Func::Item, "Item", 2, Some(2), &["attribute", "index"], 2),
    spec(Func::Join, "Join", 2, None, &["separator", "source"], 0),
    spec(Func::Left, "Left", 2, Some(2), &["string", "numChars"], 2),
    spec(
        Func::Mid,
        "Mid",
        3,
        Some(3),
        &["source", "start", "length"],
        3,
    ),
    spec(
        Func::NormalizeDiacritics,
        "NormalizeDiacritics",
        1,
        Some(1),
        &["source"],
        1,
    ),
    spec(Func::Not, "Not", 1, Some(1), &["source"], 1),
    spec(Func::Now, "Now", 0, Some(0), &[], 0),
    spec(Func::NumFromDate, "NumFromDate", 1, Some(1), &["value"], 1),
    spec(
        Func::PCase,
        "PCase",
        1,
        Some(2),
        &["source", "wordSeparators"],
        1,
    ),
    spec(
        Func::RandomString,
        "RandomString",
        5,
        Some(6),
        &[
            "length",
            "minimumNumbers",
            "minimumSpecialCharacters",
            "minimumCapital",
            "minimumLowerCase",
            "charactersToAvoid",
        ],
        5,
    ),
    spec(Func::Redact, "Redact", 1, Some(1), &["value"], 1),
    spec(
        Func::RemoveDuplicates,
        "RemoveDuplicates",
        1,
        Some(1),
        &["attribute"],
        1,
    ),
    spec(
        Func::Replace,
        "Replace",
        7,
        Some(7),
        &[
            "source",
            "oldValue",
            "regexPattern",
            "regexGroupName",
            "replacementValue",
            "replacementAttributeName",
            "template",
        ],
        1,
    ),
    spec(
        Func::SingleAppRoleAssignment,
        "SingleAppRoleAssignment",
        1,
        Some(1),
        &["appRoleAssignments"],
        1,
    ),
    spec(
        Func::Split,
        "Split",
        2,
        Some(2),
        &["source", "delimiter"],
        2,
    ),
    spec(Func::StripSpaces, "StripSpaces", 1, Some(1), &["source"], 1),
    spec(
        Func::Switch,
        "Switch",
        4,
        None,
        &["source", "defaultValue", "key", "value"],
        1,
    ),
    spec(
        Func::ToLower,
        "ToLower",
        1,
        Some(2),
        &["source", "culture"],
        1,
    ),
    spec(
        Func::ToUpper,
        "ToUpper",
        1,
        Some(2),
        &["source", "culture"],
        1,
    ),
    spec(
        Func::Word,
        "Word",
        3,
        Some(3),
        &["string", "wordNumber", "delimiters"],
        3,
    ),
];

#[cfg(test)]
pub(crate) const NAMES: &[&str] = &[
    "Append",
    "AppRoleAssignmentsComplex",
    "BitAnd",
    "CBool",
    "CDate",
    "Coalesce",
    "ConvertToBase64",
    "ConvertToUTF8Hex",
    "Count",
    "CStr",
    "DateAdd",
    "DateDiff",
    "DateFromNum",
    "FormatDateTime",
    "Guid",
    "IgnoreFlowIfNullOrEmpty",
    "IIF",
    "InStr",
    "IsNull",
    "IsNullOrEmpty",
    "IsPresent",
    "IsString",
    "Item",
    "Join",
    "Left",
    "Mid",
    "NormalizeDiacritics",
    "Not",
    "Now",
    "NumFromDate",
    "PCase",
    "RandomString",
    "Redact",
    "RemoveDuplicates",
    "Replace",
    "SingleAppRoleAssignment",
    "Split",
    "StripSpaces",
    "Switch",
    "ToLower",
    "ToUpper",
    "Word",
];

impl Func {
    pub(crate) fn lookup(name: &str) -> Option<Func> {
        SPECS
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
            .map(|s| s.func)
    }

    pub(crate) fn spec(self) -> &'static Spec {
        // SPECS has one entry per variant (checked by a test), so the fallback is never used.
        SPECS.iter().find(|s| s.func == self).unwrap_or(&SPECS[0])
    }

    pub(crate) fn name(self) -> &'static str {
        self.spec().name
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Which of `n` arguments may not be left empty.
pub(crate) fn required_positions(func: Func, n: usize) -> Vec<usize> {
    match (func, n) {
        // Without dateTimeStyles the formats move one place to the left.
        (Func::FormatDateTime, 3) => vec![0, 1, 2],
        (Func::FormatDateTime, _) => vec![0, 2, 3],
        _ => (0..func.spec().required.min(n)).collect(),
    }
}

/// Parse-time checks: argument count, arguments that may not be left empty, and Replace's
/// parameter combinations (which depend only on which arguments are written).
pub(crate) fn validate(func: Func, args: &[Expr]) -> Result<(), String> {
    let spec = func.spec();
    let n = args.len();
    let name = spec.name;
    let count_ok = n >= spec.min && spec.max.is_none_or(|max| n <= max);
    if !count_ok {
        let expected = match spec.max {
            Some(0) => "no arguments".to_string(),
            Some(max) if max == spec.min => format!("{max} argument{}", plural(max)),
            Some(max) => format!("{} to {max} arguments", spec.min),
            None => format!("at least {} arguments", spec.min),
        };
        return Err(format!("{name} expects {expected}, found {n}"));
    }
    if func == Func::Switch && n % 2 != 0 {
        return Err(format!(
            "Switch expects an even number of arguments (source, defaultValue, then key/value pairs), found {n}"
        ));
    }
    let provided = |i: usize| !matches!(args.get(i), None | Some(Expr::Empty));
    for i in required_positions(func, n) {
        if !provided(i) {
            let param = match (func, n, i) {
                (Func::FormatDateTime, 3, 1) => "inputFormat",
                (Func::FormatDateTime, 3, 2) => "outputFormat",
                _ => spec.params.get(i).copied().unwrap_or("value"),
            };
            return Err(format!("{name}: {param} (argument {}) is required", i + 1));
        }
    }
    if func == Func::Replace {
        let (old, pattern, group, value, attr, template) = (
            provided(1),
            provided(2),
            provided(3),
            provided(4),
            provided(5),
            provided(6),
        );
        if pattern {
            if old || template {
                return Err(
                    "Replace: regexPattern cannot be combined with oldValue or template".into(),
                );
            }
            if !(value || (group && attr)) {
                return Err("Replace: regexPattern needs replacementValue, or regexGroupName and replacementAttributeName".into());
            }
            if value && attr {
                return Err(
                    "Replace: give replacementValue or replacementAttributeName, not both".into(),
                );
            }
        } else if old {
            if group || attr {
                return Err(
                    "Replace: regexGroupName and replacementAttributeName need regexPattern".into(),
                );
            }
            if value && template {
                return Err("Replace: give replacementValue or template, not both".into());
            }
            if !value && !template {
                return Err("Replace: oldValue needs replacementValue or template".into());
            }
        } else {
            return Err("Replace: expected oldValue or regexPattern (argument 2 or 3)".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_has_one_spec_and_a_listed_name() {
        assert_eq!(SPECS.len(), NAMES.len());
        for (spec, name) in SPECS.iter().zip(NAMES) {
            assert_eq!(spec.name, *name);
            assert_eq!(spec.func.name(), *name);
            assert_eq!(Func::lookup(&name.to_uppercase()), Some(spec.func));
            assert!(spec.params.len() >= spec.required);
        }
        let mut sorted = NAMES.to_vec();
        sorted.sort_by_key(|n| n.to_lowercase());
        assert_eq!(
            sorted, NAMES,
            "keep the list alphabetical like the reference"
        );
    }
}
