//! `[scope]` and `[target.scope]`: the assignments, Entra's scoping filters, and their checks.
//!
//! The filters are read clause by clause, so that each problem names its clause
//! (`target[0].scope.filter[1].clauses[2].operator: …`) and every one is reported at once.

use serde::Deserialize;
use std::collections::BTreeSet;
use std::fmt;

/// Who a target receives: assigned groups and users (or all), then the scoping filters.
#[derive(Debug, Clone, Default)]
pub struct ScopeConfig {
    pub groups: Vec<String>,
    pub users: Vec<String>,
    pub all: bool,
    /// Users leaving the scope keep their account as it is and are forgotten (Entra's
    /// `SkipOutOfScopeDeletions`); users gone from the source or disabled still are not.
    pub skip_out_of_scope_deletions: bool,
    /// `[[scope.filter]]`: a user must pass one of them (none: every assigned user passes).
    pub filter: Vec<ScopeFilter>,
    /// `[[scope.group_filter]]`: an assigned group must pass one of them to be provisioned.
    pub group_filter: Vec<ScopeFilter>,
}

/// The table as written; the filters are read clause by clause afterwards.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScope {
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    all: bool,
    #[serde(default)]
    skip_out_of_scope_deletions: bool,
    filter: Option<toml::Value>,
    group_filter: Option<toml::Value>,
}

/// One scoping filter: its clauses, all of which must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeFilter {
    pub name: Option<String>,
    pub clauses: Vec<Clause>,
}

/// `{ attribute, operator, value }`, checked: the value is there exactly when the operator
/// takes one, an integer where it compares integers, a valid pattern where it is a regex.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub attribute: String,
    pub operator: Operator,
    /// The value as written (an integer in its decimal form); empty for the `IS …` operators.
    pub value: String,
}

/// Entra's scoping filter operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    NotEquals,
    IsTrue,
    IsFalse,
    IsNull,
    IsNotNull,
    RegexMatch,
    NotRegexMatch,
    GreaterThan,
    GreaterThanOrEquals,
    Includes,
    EndsWith,
    /// `&`: every bit of the value is set in the attribute.
    BitAnd,
    /// `!&`: not every bit of the value is set in the attribute.
    NotBitAnd,
}

/// What an operator's value must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Takes {
    Nothing,
    Text,
    Integer,
    Pattern,
}

impl Operator {
    /// Every operator, in Entra's spelling.
    pub const ALL: [(Operator, &'static str); 14] = [
        (Operator::Equals, "EQUALS"),
        (Operator::NotEquals, "NOT EQUALS"),
        (Operator::IsTrue, "IS TRUE"),
        (Operator::IsFalse, "IS FALSE"),
        (Operator::IsNull, "IS NULL"),
        (Operator::IsNotNull, "IS NOT NULL"),
        (Operator::RegexMatch, "REGEX MATCH"),
        (Operator::NotRegexMatch, "NOT REGEX MATCH"),
        (Operator::GreaterThan, "Greater_Than"),
        (Operator::GreaterThanOrEquals, "Greater_Than_OR_EQUALS"),
        (Operator::Includes, "Includes"),
        (Operator::EndsWith, "ENDS_WITH"),
        (Operator::BitAnd, "&"),
        (Operator::NotBitAnd, "!&"),
    ];

    /// Reads an operator as Entra's portal spells it, in any case, with spaces or underscores.
    pub fn parse(text: &str) -> Option<Operator> {
        let key = |s: &str| {
            s.split(|c: char| c == '_' || c.is_whitespace())
                .filter(|w| !w.is_empty())
                .map(str::to_ascii_lowercase)
                .collect::<Vec<_>>()
                .join(" ")
        };
        let want = key(text);
        Operator::ALL
            .iter()
            .find(|(_, name)| key(name) == want)
            .map(|(op, _)| *op)
    }

    fn takes(self) -> Takes {
        match self {
            Operator::IsTrue | Operator::IsFalse | Operator::IsNull | Operator::IsNotNull => {
                Takes::Nothing
            }
            Operator::Equals | Operator::NotEquals | Operator::Includes | Operator::EndsWith => {
                Takes::Text
            }
            Operator::GreaterThan
            | Operator::GreaterThanOrEquals
            | Operator::BitAnd
            | Operator::NotBitAnd => Takes::Integer,
            Operator::RegexMatch | Operator::NotRegexMatch => Takes::Pattern,
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Operator::ALL
            .iter()
            .find(|(op, _)| op == self)
            .map_or("?", |(_, n)| n);
        f.write_str(name)
    }
}

impl fmt::Display for Clause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.operator.takes() {
            Takes::Nothing => write!(f, "{} {}", self.attribute, self.operator),
            Takes::Integer => write!(f, "{} {} {}", self.attribute, self.operator, self.value),
            Takes::Text | Takes::Pattern => {
                write!(f, "{} {} {:?}", self.attribute, self.operator, self.value)
            }
        }
    }
}

/// Attributes that hold several values in Entra ID and Active Directory: a clause compares
/// one value, so a filter on one of these is refused rather than half-evaluated.
const MULTI_VALUED: [&str; 10] = [
    "proxyAddresses",
    "otherMails",
    "memberOf",
    "objectClass",
    "member",
    "members",
    "uniqueMember",
    "businessPhones",
    "servicePrincipalName",
    "otherMobile",
];

/// Reads a scope table at `at` (`scope` or `target[0].scope`), every problem into `problems`.
pub(super) fn read(
    at: &str,
    value: toml::Value,
    problems: &mut super::take::Problems,
) -> Option<ScopeConfig> {
    let raw = super::take::take::<RawScope>(at, value, problems)?;
    let mut read = |key: &str, v: Option<toml::Value>| {
        v.map(|v| filters(&format!("{at}.{key}"), v, problems))
            .unwrap_or_default()
    };
    let scope = ScopeConfig {
        filter: read("filter", raw.filter),
        group_filter: read("group_filter", raw.group_filter),
        groups: raw.groups,
        users: raw.users,
        all: raw.all,
        skip_out_of_scope_deletions: raw.skip_out_of_scope_deletions,
    };
    check(at, &scope, problems);
    Some(scope)
}

/// The assignments' own checks: something is assigned, and no group twice.
fn check(at: &str, scope: &ScopeConfig, problems: &mut super::take::Problems) {
    if !scope.all && scope.groups.is_empty() && scope.users.is_empty() {
        problems.push((
            at.to_owned(),
            format!("nothing is assigned: set {at}.groups, {at}.users or {at}.all = true"),
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, g) in scope.groups.iter().enumerate() {
        if g.trim().is_empty() {
            problems.push((format!("{at}.groups[{i}]"), "must not be empty".into()));
        } else if !seen.insert(g.to_lowercase()) {
            problems.push((
                format!("{at}.groups[{i}]"),
                format!("{g:?} is listed twice"),
            ));
        }
    }
}

fn filters(at: &str, value: toml::Value, problems: &mut super::take::Problems) -> Vec<ScopeFilter> {
    let toml::Value::Array(items) = value else {
        problems.push((
            at.to_owned(),
            format!(
                "must be an array of tables ([[{}]])",
                at.replace(['[', ']'], "")
            ),
        ));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        if let Some(f) = filter(&format!("{at}[{i}]"), item, problems) {
            out.push(f);
        }
    }
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    name: Option<String>,
    clauses: Vec<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClause {
    attribute: String,
    operator: String,
    value: Option<toml::Value>,
}

fn filter(
    at: &str,
    value: toml::Value,
    problems: &mut super::take::Problems,
) -> Option<ScopeFilter> {
    let raw = super::take::take::<RawFilter>(at, value, problems)?;
    if raw.clauses.is_empty() {
        problems.push((
            format!("{at}.clauses"),
            "is empty: a filter needs at least one clause".into(),
        ));
    }
    let mut clauses = Vec::new();
    for (i, c) in raw.clauses.into_iter().enumerate() {
        let key = format!("{at}.clauses[{i}]");
        if let Some(raw) = super::take::take::<RawClause>(&key, c, problems) {
            if let Some(clause) = clause(&key, raw, problems) {
                clauses.push(clause);
            }
        }
    }
    Some(ScopeFilter {
        name: raw.name,
        clauses,
    })
}

fn clause(at: &str, raw: RawClause, problems: &mut super::take::Problems) -> Option<Clause> {
    let mut ok = true;
    let mut problem = |key: &str, why: String| {
        problems.push((format!("{at}.{key}"), why));
        ok = false;
    };
    if raw.attribute.trim().is_empty() {
        problem("attribute", "must not be empty".into());
    } else if let Some(m) = MULTI_VALUED
        .iter()
        .find(|m| m.eq_ignore_ascii_case(raw.attribute.trim()))
    {
        problem(
            "attribute",
            format!("{m} holds several values; a scoping clause compares one value"),
        );
    }
    let Some(operator) = Operator::parse(&raw.operator) else {
        let names: Vec<_> = Operator::ALL
            .iter()
            .map(|(_, n)| format!("`{n}`"))
            .collect();
        problem(
            "operator",
            format!(
                "{:?} is not an operator; expected one of {}",
                raw.operator,
                names.join(", ")
            ),
        );
        return None;
    };
    let value = match (operator.takes(), raw.value) {
        (Takes::Nothing, None) => String::new(),
        (Takes::Nothing, Some(v)) => {
            problem(
                "value",
                format!("{operator} takes no value, but {v} is given"),
            );
            String::new()
        }
        (_, None) => {
            problem(
                "value",
                format!("missing: {operator} compares with a value"),
            );
            String::new()
        }
        (takes, Some(v)) => match checked_value(takes, &v) {
            Ok(text) => text,
            Err(why) => {
                problem("value", format!("{operator}: {why}"));
                String::new()
            }
        },
    };
    ok.then(|| Clause {
        attribute: raw.attribute.trim().to_owned(),
        operator,
        value,
    })
}

/// The value of a clause as text, checked for what its operator takes.
fn checked_value(takes: Takes, v: &toml::Value) -> Result<String, String> {
    let text = match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(n) => n.to_string(),
        other => return Err(format!("{other} is not a string or an integer")),
    };
    match takes {
        Takes::Integer => text
            .trim()
            .parse::<i64>()
            .map(|n| n.to_string())
            .map_err(|_| format!("{text:?} is not an integer")),
        Takes::Pattern => regex::Regex::new(&text).map(|_| text.clone()).map_err(|e| {
            format!(
                "{text:?} is not a valid regular expression: {}",
                one_line(&e)
            )
        }),
        Takes::Text | Takes::Nothing => Ok(text),
    }
}

fn one_line(e: &regex::Error) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &str) -> (Option<ScopeConfig>, Vec<String>) {
        let value = toml::Value::Table(text.parse::<toml::Table>().expect("toml"));
        let mut problems = Vec::new();
        let scope = read("target[0].scope", value, &mut problems);
        let problems = problems
            .into_iter()
            .map(|(k, w)| format!("{k}: {w}"))
            .collect();
        (scope, problems)
    }

    #[test]
    fn operators_are_read_as_the_portal_spells_them() {
        for (op, name) in Operator::ALL {
            assert_eq!(Operator::parse(name), Some(op), "{name}");
            assert_eq!(op.to_string(), name);
        }
        assert_eq!(Operator::parse("not_equals"), Some(Operator::NotEquals));
        assert_eq!(
            Operator::parse("greater than or equals"),
            Some(Operator::GreaterThanOrEquals)
        );
        assert_eq!(
            Operator::parse("  regex   match "),
            Some(Operator::RegexMatch)
        );
        assert_eq!(Operator::parse("ends with"), Some(Operator::EndsWith));
        assert_eq!(Operator::parse("CONTAINS"), None);
    }

    #[test]
    fn a_filter_reads_into_typed_clauses() {
        let (scope, problems) = read_text(
            r#"groups = ["Engineering"]
               skip_out_of_scope_deletions = true
               [[filter]]
               name = "Sales staff"
               clauses = [{ attribute = "department", operator = "EQUALS", value = "Sales" },
                          { attribute = "employeeNumber", operator = "greater_than", value = 100 },
                          { attribute = "extensionAttribute1", operator = "IS NOT NULL" }]
               [[group_filter]]
               clauses = [{ attribute = "displayName", operator = "REGEX MATCH", value = "^App-" }]"#,
        );
        assert_eq!(problems, Vec::<String>::new());
        let scope = scope.expect("read");
        assert!(scope.skip_out_of_scope_deletions);
        assert_eq!(scope.filter[0].name.as_deref(), Some("Sales staff"));
        let texts: Vec<String> = scope.filter[0]
            .clauses
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(
            texts,
            [
                "department EQUALS \"Sales\"",
                "employeeNumber Greater_Than 100",
                "extensionAttribute1 IS NOT NULL"
            ]
        );
        assert_eq!(
            scope.group_filter[0].clauses[0].operator,
            Operator::RegexMatch
        );
    }

    #[test]
    fn every_bad_clause_is_named_at_once() {
        let (_, problems) = read_text(
            r#"all = true
               [[filter]]
               clauses = [{ attribute = "department", operator = "CONTAINS", value = "S" },
                          { attribute = "title", operator = "REGEX MATCH", value = "(" },
                          { attribute = "level", operator = "Greater_Than", value = "high" },
                          { attribute = "title", operator = "EQUALS" },
                          { attribute = "active", operator = "IS TRUE", value = "yes" },
                          { attribute = "proxyAddresses", operator = "Includes", value = "smtp:" },
                          { attribute = "title", operatr = "EQUALS", value = "x" }]
               [[filter]]
               name = "empty"
               clauses = []"#,
        );
        let at = "target[0].scope.filter";
        assert_eq!(problems.len(), 9, "{problems:#?}");
        assert!(problems[0].starts_with(&format!(
            "{at}[0].clauses[0].operator: \"CONTAINS\" is not an operator; expected one of `EQUALS`"
        )));
        assert!(problems[1].starts_with(&format!(
            "{at}[0].clauses[1].value: REGEX MATCH: \"(\" is not a valid regular expression"
        )));
        assert_eq!(
            problems[2..],
            [
                format!("{at}[0].clauses[2].value: Greater_Than: \"high\" is not an integer"),
                format!("{at}[0].clauses[3].value: missing: EQUALS compares with a value"),
                format!("{at}[0].clauses[4].value: IS TRUE takes no value, but \"yes\" is given"),
                format!("{at}[0].clauses[5].attribute: proxyAddresses holds several values; a scoping clause compares one value"),
                format!("{at}[0].clauses[6].operatr: unknown key; did you mean `operator`?"),
                format!("{at}[0].clauses[6]: missing: set `operator`"),
                format!("{at}[1].clauses: is empty: a filter needs at least one clause"),
            ]
        );
    }

    #[test]
    fn nothing_assigned_names_the_table() {
        let (_, problems) = read_text("groups = [\"A\", \"a\"]\n");
        assert_eq!(
            problems,
            ["target[0].scope.groups[1]: \"a\" is listed twice"]
        );
        let (_, problems) = read_text("skip_out_of_scope_deletions = true\n");
        assert_eq!(
            problems,
            ["target[0].scope: nothing is assigned: set target[0].scope.groups, target[0].scope.users or target[0].scope.all = true"]
        );
    }
}
