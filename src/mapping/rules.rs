//! Mapping rules compiled from the plain `[[target.user_mapping]]` tables of the configuration (a bad expression or path is located by list, index and
//! field, for the configuration's message).
//!
//! It knows paths and expressions, not source objects: `target::load` compiles every target's
//! rules while the configuration is validated, so that a bad rule is a configuration problem.

use super::expr::Expression;
use super::path::{AttrPath, ScimType};
pub use crate::config::{Apply, MappingConfig};
use std::collections::BTreeSet;

/// Where a rule's value comes from.
#[derive(Debug, Clone)]
pub enum RuleValue {
    Source(String),
    Constant(String),
    Expression(Box<Expression>),
}

/// One compiled mapping rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub target: AttrPath,
    pub value: RuleValue,
    pub default: Option<String>,
    pub apply: Apply,
    pub matching_precedence: Option<u32>,
}

/// The compiled user and group rules of one target.
#[derive(Debug, Clone, Default)]
pub struct Mappings {
    pub users: Vec<Rule>,
    pub groups: Vec<Rule>,
}

/// A problem with one mapping, located for the configuration's message.
#[derive(Debug, Clone)]
pub struct CompileError {
    pub list: &'static str,
    pub index: Option<usize>,
    pub field: Option<&'static str>,
    pub message: String,
}

impl Mappings {
    pub fn compile(
        users: &[MappingConfig],
        groups: &[MappingConfig],
    ) -> Result<Mappings, Vec<CompileError>> {
        let mut errors = Vec::new();
        let users = compile_list("user_mapping", users, &["userName"], &mut errors);
        let groups = compile_list("group_mapping", groups, &["displayName"], &mut errors);
        if errors.is_empty() {
            Ok(Mappings { users, groups })
        } else {
            Err(errors)
        }
    }

    /// The user rules used for matching, in precedence order.
    pub fn user_matching(&self) -> Vec<&Rule> {
        matching(&self.users)
    }

    pub fn group_matching(&self) -> Vec<&Rule> {
        matching(&self.groups)
    }
}

fn matching(rules: &[Rule]) -> Vec<&Rule> {
    let mut m: Vec<&Rule> = rules
        .iter()
        .filter(|r| r.matching_precedence.is_some())
        .collect();
    m.sort_by_key(|r| r.matching_precedence);
    m
}

fn compile_list(
    list: &'static str,
    configs: &[MappingConfig],
    required: &[&str],
    errors: &mut Vec<CompileError>,
) -> Vec<Rule> {
    let mut err = |index: Option<usize>, field: Option<&'static str>, message: String| {
        errors.push(CompileError {
            list,
            index,
            field,
            message,
        });
    };
    let mut rules = Vec::new();
    let mut targets = BTreeSet::new();
    let mut precedences = BTreeSet::new();
    for (i, c) in configs.iter().enumerate() {
        let target = match AttrPath::parse(&c.target) {
            Ok(p) => p,
            Err(e) => {
                err(Some(i), Some("target"), e);
                continue;
            }
        };
        if !targets.insert(target.to_string().to_lowercase()) {
            err(
                Some(i),
                Some("target"),
                format!("{target} is mapped by an earlier rule"),
            );
        }
        let value = match (&c.source, &c.constant, &c.expression) {
            (Some(s), None, None) if !s.trim().is_empty() => RuleValue::Source(s.trim().to_owned()),
            (None, Some(k), None) => RuleValue::Constant(k.clone()),
            (None, None, Some(e)) => match Expression::parse(e) {
                Ok(x) => RuleValue::Expression(Box::new(x)),
                Err(e) => {
                    err(
                        Some(i),
                        Some("expression"),
                        format!("{e} (mapping to {target})"),
                    );
                    continue;
                }
            },
            (Some(_), None, None) => {
                err(
                    Some(i),
                    Some("source"),
                    "must name a source attribute".into(),
                );
                continue;
            }
            _ => {
                err(
                    Some(i),
                    None,
                    format!(
                        "set exactly one of source, constant and expression (mapping to {target})"
                    ),
                );
                continue;
            }
        };
        if let Some(p) = c.matching_precedence {
            if p == 0 {
                err(
                    Some(i),
                    Some("matching_precedence"),
                    "must be 1 or more (1 is tried first)".into(),
                );
            } else if !precedences.insert(p) {
                err(
                    Some(i),
                    Some("matching_precedence"),
                    format!("{p} is used by an earlier rule"),
                );
            }
            if c.apply == Apply::OnCreate {
                err(
                    Some(i),
                    Some("apply"),
                    "a matching attribute must apply always".into(),
                );
            }
        }
        if target.scim_type() == ScimType::Boolean {
            if let Some(d) = &c.default {
                if parse_bool(d).is_none() {
                    err(
                        Some(i),
                        Some("default"),
                        format!("{d:?} is not a boolean for {target}"),
                    );
                }
            }
            if let RuleValue::Constant(k) = &value {
                if parse_bool(k).is_none() {
                    err(
                        Some(i),
                        Some("constant"),
                        format!("{k:?} is not a boolean for {target}"),
                    );
                }
            }
        }
        rules.push(Rule {
            target,
            value,
            default: c.default.clone(),
            apply: c.apply,
            matching_precedence: c.matching_precedence,
        });
    }
    if !configs.is_empty() && matching(&rules).is_empty() && !rules.is_empty() {
        err(
            None,
            None,
            "no rule has a matching_precedence; at least one is needed to find existing accounts"
                .into(),
        );
    }
    for req in required {
        if !rules.iter().any(|r| {
            r.target.urn.is_none()
                && r.target.attr.eq_ignore_ascii_case(req)
                && r.target.sub.is_none()
        }) {
            err(
                None,
                None,
                format!("no rule maps {req}, which SCIM requires"),
            );
        }
    }
    rules
}

pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}
