//! Entra's scoping filters, compiled and evaluated: clauses ANDed within a filter, filters ORed.
//!
//! As Entra documents them: EQUALS, Includes and ENDS_WITH compare case-sensitively; an
//! attribute that is absent or empty makes every clause false but `IS NULL` (NOT EQUALS and NOT
//! REGEX MATCH included); the integer operators are false on a value that is not an integer;
//! `&` holds when every bit of the clause's value is set in the attribute, `!&` when not.

use crate::config::{Clause, Operator, ScopeFilter};
use crate::source::{AttrValue, SourceObject};
use regex::Regex;
use std::sync::Arc;

/// A filter, ready to evaluate.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    /// `scoping filter "Sales staff"`, or `scoping filter 2` when it has no name.
    pub(crate) label: Arc<str>,
    clauses: Vec<Compiled>,
}

#[derive(Debug, Clone)]
struct Compiled {
    clause: Clause,
    regex: Option<Regex>,
    number: i64,
    /// `department EQUALS "Sales" is false`, shared by every user it keeps out.
    is_false: Arc<str>,
}

/// A clause the configuration check let through but that cannot be compiled.
#[derive(Debug, thiserror::Error)]
#[error("scoping clause {clause}: {why}")]
pub(crate) struct FilterError {
    clause: String,
    why: String,
}

/// Why an object cannot be evaluated: an attribute a clause compares holds several values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MultiValued(pub(crate) String);

impl Filter {
    pub(crate) fn compile(n: usize, f: &ScopeFilter) -> Result<Filter, FilterError> {
        let label = match &f.name {
            Some(name) => format!("scoping filter {name:?}"),
            None => format!("scoping filter {}", n + 1),
        };
        let clauses = f
            .clauses
            .iter()
            .map(|c| {
                let err = |why: String| FilterError {
                    clause: c.to_string(),
                    why,
                };
                let regex = match c.operator {
                    Operator::RegexMatch | Operator::NotRegexMatch => {
                        Some(Regex::new(&c.value).map_err(|e| err(e.to_string()))?)
                    }
                    _ => None,
                };
                let number = match c.operator {
                    Operator::GreaterThan
                    | Operator::GreaterThanOrEquals
                    | Operator::BitAnd
                    | Operator::NotBitAnd => c
                        .value
                        .parse()
                        .map_err(|_| err(format!("{:?} is not an integer", c.value)))?,
                    _ => 0,
                };
                Ok(Compiled {
                    clause: c.clone(),
                    regex,
                    number,
                    is_false: Arc::from(format!("{c} is false")),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Filter {
            label: Arc::from(label),
            clauses,
        })
    }

    /// Its clauses, as written, joined by AND.
    pub(crate) fn describe(&self) -> String {
        let clauses: Vec<String> = self.clauses.iter().map(|c| c.clause.to_string()).collect();
        clauses.join(" AND ")
    }

    /// `Ok(None)` when the object passes, `Ok(Some(why))` with the first clause that is false.
    pub(crate) fn first_false(&self, o: &SourceObject) -> Result<Option<Arc<str>>, MultiValued> {
        for c in &self.clauses {
            if !c.holds(value_of(o, &c.clause.attribute)?) {
                return Ok(Some(c.is_false.clone()));
            }
        }
        Ok(None)
    }
}

/// The one value a clause compares: `None` when absent or empty.
fn value_of<'a>(o: &'a SourceObject, attribute: &str) -> Result<Option<&'a str>, MultiValued> {
    let v = match o.get(attribute) {
        None => None,
        Some(AttrValue::Single(s)) => Some(s.as_str()),
        Some(AttrValue::Multi(v)) => match v.as_slice() {
            [] => None,
            [one] => Some(one.as_str()),
            _ => return Err(MultiValued(attribute.to_owned())),
        },
    };
    Ok(v.filter(|s| !s.is_empty()))
}

impl Compiled {
    fn holds(&self, v: Option<&str>) -> bool {
        let want = self.clause.value.as_str();
        let int = |s: &str| s.trim().parse::<i64>().ok();
        match (self.clause.operator, v) {
            (Operator::IsNull, v) => v.is_none(),
            (Operator::IsNotNull, v) => v.is_some(),
            (_, None) => false,
            (Operator::Equals, Some(v)) => v == want,
            (Operator::NotEquals, Some(v)) => v != want,
            (Operator::IsTrue, Some(v)) => v.eq_ignore_ascii_case("true"),
            (Operator::IsFalse, Some(v)) => v.eq_ignore_ascii_case("false"),
            (Operator::RegexMatch, Some(v)) => self.regex.as_ref().is_some_and(|r| r.is_match(v)),
            (Operator::NotRegexMatch, Some(v)) => {
                self.regex.as_ref().is_some_and(|r| !r.is_match(v))
            }
            (Operator::GreaterThan, Some(v)) => int(v).is_some_and(|n| n > self.number),
            (Operator::GreaterThanOrEquals, Some(v)) => int(v).is_some_and(|n| n >= self.number),
            (Operator::Includes, Some(v)) => v.contains(want),
            (Operator::EndsWith, Some(v)) => v.ends_with(want),
            (Operator::BitAnd, Some(v)) => int(v).is_some_and(|n| n & self.number == self.number),
            (Operator::NotBitAnd, Some(v)) => {
                int(v).is_some_and(|n| n & self.number != self.number)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SourceId;

    fn clause(attribute: &str, operator: &str, value: &str) -> Filter {
        let f = ScopeFilter {
            name: None,
            clauses: vec![Clause {
                attribute: attribute.into(),
                operator: Operator::parse(operator).expect(operator),
                value: value.into(),
            }],
        };
        Filter::compile(0, &f).expect("compiles")
    }

    fn user(attrs: &[(&str, &str)]) -> SourceObject {
        let mut o = SourceObject::new(SourceId::from("u1"));
        for (k, v) in attrs {
            o.set(k, AttrValue::Single((*v).to_owned()));
        }
        o
    }

    /// Whether a user with `attribute = value` (or without it, for `None`) passes.
    fn passes(f: &Filter, attribute: &str, value: Option<&str>) -> bool {
        let o = match value {
            Some(v) => user(&[(attribute, v)]),
            None => user(&[]),
        };
        f.first_false(&o).expect("one value").is_none()
    }

    #[test]
    fn equals_and_not_equals_are_case_sensitive_and_false_on_null() {
        let f = clause("department", "EQUALS", "Sales");
        assert!(passes(&f, "department", Some("Sales")));
        assert!(!passes(&f, "department", Some("sales")));
        assert!(!passes(&f, "department", None));
        let f = clause("department", "NOT EQUALS", "Sales");
        assert!(passes(&f, "department", Some("Marketing")));
        assert!(passes(&f, "department", Some("sales")));
        assert!(!passes(&f, "department", Some("Sales")));
        assert!(!passes(&f, "department", None));
        assert!(!passes(&f, "department", Some("")));
    }

    #[test]
    fn is_true_is_false_is_null_is_not_null() {
        let t = clause("accountEnabled", "IS TRUE", "");
        let f = clause("accountEnabled", "IS FALSE", "");
        for (v, is_true, is_false) in [
            (Some("True"), true, false),
            (Some("true"), true, false),
            (Some("False"), false, true),
            (Some("yes"), false, false),
            (None, false, false),
        ] {
            assert_eq!(passes(&t, "accountEnabled", v), is_true, "{v:?}");
            assert_eq!(passes(&f, "accountEnabled", v), is_false, "{v:?}");
        }
        let null = clause("extensionAttribute1", "IS NULL", "");
        let not_null = clause("extensionAttribute1", "IS NOT NULL", "");
        for (v, is_null) in [(None, true), (Some(""), true), (Some("x"), false)] {
            assert_eq!(passes(&null, "extensionAttribute1", v), is_null, "{v:?}");
            assert_eq!(
                passes(&not_null, "extensionAttribute1", v),
                !is_null,
                "{v:?}"
            );
        }
    }

    #[test]
    fn regex_match_and_not_regex_match_as_entra_documents_them() {
        // Entra's example: ([1-9][0-9]) matches any number between 10 and 99.
        let f = clause("employeeId", "REGEX MATCH", "([1-9][0-9])");
        assert!(passes(&f, "employeeId", Some("42")));
        assert!(!passes(&f, "employeeId", Some("7")));
        let f = clause("jobTitle", "REGEX MATCH", "^Sales");
        assert!(!passes(&f, "jobTitle", Some("sales rep")), "case-sensitive");
        let f = clause("employeeId", "NOT REGEX MATCH", "([1-9][0-9])");
        assert!(passes(&f, "employeeId", Some("7")));
        assert!(!passes(&f, "employeeId", Some("42")));
        // "It returns false if the attribute is null / empty."
        assert!(!passes(&f, "employeeId", None));
        assert!(!passes(&f, "employeeId", Some("")));
    }

    #[test]
    fn integer_comparisons_need_an_integer_attribute() {
        let gt = clause("level", "Greater_Than", "5");
        let ge = clause("level", "Greater_Than_OR_EQUALS", "5");
        for (v, above, at_least) in [
            (Some("6"), true, true),
            (Some("5"), false, true),
            (Some("-3"), false, false),
            (Some("10"), true, true),
            (Some("six"), false, false),
            (Some("5.5"), false, false),
            (None, false, false),
        ] {
            assert_eq!(passes(&gt, "level", v), above, "{v:?}");
            assert_eq!(passes(&ge, "level", v), at_least, "{v:?}");
        }
    }

    #[test]
    fn includes_and_ends_with_are_case_sensitive() {
        let f = clause("mail", "Includes", "contoso");
        assert!(passes(&f, "mail", Some("ann@contoso.com")));
        assert!(!passes(&f, "mail", Some("ann@Contoso.com")));
        assert!(!passes(&f, "mail", None));
        let f = clause("userPrincipalName", "ENDS_WITH", "@contoso.com");
        assert!(passes(&f, "userPrincipalName", Some("ann@contoso.com")));
        assert!(!passes(
            &f,
            "userPrincipalName",
            Some("ann@contoso.com.evil")
        ));
        assert!(!passes(&f, "userPrincipalName", Some("ann@CONTOSO.COM")));
    }

    #[test]
    fn bitwise_and_on_user_account_control() {
        // userAccountControl 514 = NORMAL_ACCOUNT (512) | ACCOUNTDISABLE (2).
        let disabled = clause("userAccountControl", "&", "2");
        let enabled = clause("userAccountControl", "!&", "2");
        for (v, is_disabled) in [
            ("514", true),
            ("512", false),
            ("66050", true),
            ("66048", false),
        ] {
            assert_eq!(
                passes(&disabled, "userAccountControl", Some(v)),
                is_disabled,
                "{v}"
            );
            assert_eq!(
                passes(&enabled, "userAccountControl", Some(v)),
                !is_disabled,
                "{v}"
            );
        }
        let both = clause("userAccountControl", "&", "514");
        assert!(passes(&both, "userAccountControl", Some("514")));
        assert!(
            !passes(&both, "userAccountControl", Some("512")),
            "every bit"
        );
        assert!(!passes(&disabled, "userAccountControl", None));
        assert!(!passes(&enabled, "userAccountControl", None));
        assert!(!passes(&enabled, "userAccountControl", Some("x")));
    }

    #[test]
    fn clauses_are_anded_and_the_first_false_one_is_named() {
        let f = Filter::compile(
            1,
            &ScopeFilter {
                name: None,
                clauses: vec![
                    Clause {
                        attribute: "department".into(),
                        operator: Operator::Equals,
                        value: "Sales".into(),
                    },
                    Clause {
                        attribute: "country".into(),
                        operator: Operator::Equals,
                        value: "FR".into(),
                    },
                ],
            },
        )
        .expect("compiles");
        assert_eq!(&*f.label, "scoping filter 2");
        let both = user(&[("department", "Sales"), ("country", "FR")]);
        assert_eq!(f.first_false(&both), Ok(None));
        let one = user(&[("department", "Sales"), ("country", "DE")]);
        assert_eq!(
            f.first_false(&one).expect("single").as_deref(),
            Some("country EQUALS \"FR\" is false")
        );
        let mut multi = user(&[]);
        multi.set(
            "department",
            AttrValue::Multi(vec!["Sales".into(), "Ops".into()]),
        );
        assert_eq!(f.first_false(&multi), Err(MultiValued("department".into())));
        multi.set("department", AttrValue::Multi(vec!["Sales".into()]));
        multi.set("country", AttrValue::Single("FR".into()));
        assert_eq!(f.first_false(&multi), Ok(None), "one value of a list");
    }
}
