//! Mapping rules compiled from the plain `[[target.user_mapping]]` tables of the configuration (a bad expression or path is located by list, index and
//! field, for the configuration's message).
//!
//! It knows paths and expressions, not source objects: `target::load` compiles every target's
//! rules while the configuration is validated, so that a bad rule is a configuration problem.

use super::expr::Expression;
use super::path::{AttrPath, ScimType};
pub(crate) use crate::config::{Apply, MappingConfig};
use std::collections::BTreeSet;

/// Where a rule's value comes from.
#[derive(Debug, Clone)]
pub(crate) enum RuleValue {
    Source(String),
    Constant(String),
    Expression(Box<Expression>),
}

/// One compiled mapping rule.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) target: AttrPath,
    pub(crate) value: RuleValue,
    pub(crate) default: Option<String>,
    pub(crate) apply: Apply,
    pub(crate) matching_precedence: Option<u32>,
}

impl Rule {
    /// The source attributes this rule reads.
    pub(crate) fn source_attributes(&self) -> Vec<String> {
        match &self.value {
            RuleValue::Source(name) => vec![name.clone()],
            RuleValue::Constant(_) => Vec::new(),
            RuleValue::Expression(e) => e.referenced_attributes(),
        }
    }
}

/// The compiled user and group rules of one target.
#[derive(Debug, Clone, Default)]
pub(crate) struct Mappings {
    pub(crate) users: Vec<Rule>,
    pub(crate) groups: Vec<Rule>,
}

/// A problem with one mapping, located for the configuration's message.
#[derive(Debug, Clone)]
pub(crate) struct CompileError {
    pub(crate) list: &'static str,
    pub(crate) index: Option<usize>,
    pub(crate) field: Option<&'static str>,
    pub(crate) message: String,
}

impl Mappings {
    pub(crate) fn compile(
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
    pub(crate) fn user_matching(&self) -> Vec<&Rule> {
        matching(&self.users)
    }

    pub(crate) fn group_matching(&self) -> Vec<&Rule> {
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

/// Compiles one list of rules (`user_mapping` or `group_mapping`), every problem located.
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
    let mut rules: Vec<Rule> = Vec::new();
    let mut targets = BTreeSet::new();
    let mut precedences = BTreeSet::new();
    for (i, c) in configs.iter().enumerate() {
        let mut at = |field, message| err(Some(i), field, message);
        let Some(rule) = compile_rule(c, &mut at) else {
            continue;
        };
        if !targets.insert(rule.target.to_string().to_lowercase()) {
            let why = format!("{} is mapped by an earlier rule", rule.target);
            at(Some("target"), why);
        }
        if let Some(p) = c.matching_precedence.filter(|p| *p > 0) {
            if !precedences.insert(p) {
                at(
                    Some("matching_precedence"),
                    format!("{p} is used by an earlier rule"),
                );
            }
        }
        rules.push(rule);
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

/// Compiles one rule; `err` takes each problem with its field. `None` when the rule cannot
/// be compiled at all.
fn compile_rule(
    c: &MappingConfig,
    err: &mut dyn FnMut(Option<&'static str>, String),
) -> Option<Rule> {
    let target = match AttrPath::parse(&c.target) {
        Ok(p) => p,
        Err(e) => {
            err(Some("target"), e.to_string());
            return None;
        }
    };
    let value = match (&c.source, &c.constant, &c.expression) {
        (Some(s), None, None) if !s.trim().is_empty() => RuleValue::Source(s.trim().to_owned()),
        (None, Some(k), None) => RuleValue::Constant(k.clone()),
        (None, None, Some(e)) => match Expression::parse(e) {
            Ok(x) => RuleValue::Expression(Box::new(x)),
            Err(e) => {
                err(Some("expression"), format!("{e} (mapping to {target})"));
                return None;
            }
        },
        (Some(_), None, None) => {
            err(Some("source"), "must name a source attribute".into());
            return None;
        }
        _ => {
            let why =
                format!("set exactly one of source, constant and expression (mapping to {target})");
            err(None, why);
            return None;
        }
    };
    if c.matching_precedence == Some(0) {
        err(
            Some("matching_precedence"),
            "must be 1 or more (1 is tried first)".into(),
        );
    }
    if c.matching_precedence.is_some() && c.apply == Apply::OnCreate {
        err(
            Some("apply"),
            "a matching attribute must apply always".into(),
        );
    }
    if target.scim_type() == ScimType::Boolean {
        let constant = match &value {
            RuleValue::Constant(k) => Some(k),
            _ => None,
        };
        for (field, v) in [("default", c.default.as_ref()), ("constant", constant)] {
            if let Some(v) = v.filter(|v| parse_bool(v).is_none()) {
                err(Some(field), format!("{v:?} is not a boolean for {target}"));
            }
        }
    }
    Some(Rule {
        target,
        value,
        default: c.default.clone(),
        apply: c.apply,
        matching_precedence: c.matching_precedence,
    })
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
