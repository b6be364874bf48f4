//! Microsoft Entra ID attribute-mapping expressions (`Join(".", [givenName], [surname])`),
//! parsed once when configuration loads and evaluated for each user.
//!
//! The language and its functions follow Microsoft's "Reference for writing expressions for
//! attribute mappings in Microsoft Entra ID"; `docs/expressions.md` is the administrator's
//! reference, and its examples run as tests. Stages, in order:
//!
//! - `lexer`: text to tokens with 1-based columns;
//! - `parser`: tokens to the tree, rejecting unknown functions and wrong argument counts;
//! - `eval` and `functions`: the tree and one user's attributes to a [`Value`];
//! - `datetime` and `text`: .NET date formats and the string rules functions rely on.

mod ast;
mod ctx;
mod datetime;
mod eval;
mod functions;
mod lexer;
mod parser;
mod signature;
mod text;
mod value;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod doc_examples;
#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests;

use std::fmt;

use chrono::{DateTime, Utc};

pub(crate) use value::{Attributes, Value};

/// Names of every supported function, in the reference's (alphabetical) order.
#[cfg(test)]
pub(crate) fn function_names() -> &'static [&'static str] {
    signature::NAMES
}

/// A parsed expression: its tree and the text it was parsed from.
#[derive(Clone, Debug)]
pub(crate) struct Expression {
    #[cfg_attr(not(test), allow(dead_code))] // the tests check the text is kept as written
    text: String,
    root: ast::Expr,
}

/// Two expressions are equal when their trees are, however they were written.
impl PartialEq for Expression {
    fn eq(&self, other: &Self) -> bool {
        self.root == other.root
    }
}

/// The result of evaluating an expression for one user.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Evaluated {
    pub(crate) value: Value,
    /// A `Redact()` call was evaluated: the value still flows to the target, but logs and
    /// plans must show `[Redact]` instead of it.
    pub(crate) redacted: bool,
    /// `IgnoreFlowIfNullOrEmpty()` saw a null or empty value: the target attribute must be
    /// left out of the flow entirely.
    pub(crate) ignore_flow: bool,
}

/// Why an expression could not be parsed; `column` is 1-based and counts characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub(crate) struct ParseError {
    pub(crate) column: usize,
    pub(crate) message: String,
}

/// Why an expression could not be evaluated for one user (the caller skips that user).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EvalError {
    #[error("{function}: cannot parse \"{input}\" as a date")]
    BadDate {
        function: &'static str,
        input: String,
    },
    #[error("{function}: \"{input}\" does not match the date format \"{format}\"")]
    DateFormatMismatch {
        function: &'static str,
        input: String,
        format: String,
    },
    #[error("{function}: \"{input}\" is not a whole number")]
    BadNumber {
        function: &'static str,
        input: String,
    },
    #[error("{function}: \"{input}\" is not True, False or a number")]
    BadBoolean {
        function: &'static str,
        input: String,
    },
    #[error("{function}: invalid regular expression \"{pattern}\": {reason}")]
    BadRegex {
        function: &'static str,
        pattern: String,
        reason: String,
    },
    #[error("{function}: the result would be larger than {limit} bytes")]
    TooLarge {
        function: &'static str,
        limit: usize,
    },
    #[error("{function}: {reason}")]
    Invalid {
        function: &'static str,
        reason: String,
    },
}

impl Expression {
    /// Parses and validates `text`: syntax, function names and argument counts.
    pub(crate) fn parse(text: &str) -> Result<Expression, ParseError> {
        Ok(Expression {
            text: text.to_string(),
            root: parser::parse(text)?,
        })
    }

    /// The text the expression was parsed from.
    #[cfg(test)]
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// Evaluates the expression against one user's attributes.
    pub(crate) fn evaluate(&self, attrs: &dyn Attributes) -> Result<Evaluated, EvalError> {
        self.evaluate_at(attrs, Utc::now())
    }

    /// Evaluates with a fixed `Now()`, for tests and reproducible plans.
    pub(crate) fn evaluate_at(
        &self,
        attrs: &dyn Attributes,
        now: DateTime<Utc>,
    ) -> Result<Evaluated, EvalError> {
        let mut ctx = ctx::Ctx {
            attrs,
            now,
            redacted: false,
            ignore_flow: false,
        };
        let value = ctx.eval(&self.root)?;
        Ok(Evaluated {
            value,
            redacted: ctx.redacted,
            ignore_flow: ctx.ignore_flow,
        })
    }

    /// Names of the `[attribute]` references, in order of first use, without repeats
    /// (compared case-insensitively).
    pub(crate) fn referenced_attributes(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.root.collect_attributes(&mut out);
        out
    }
}

/// Canonical form, which parses back to the same tree.
impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root.fmt(f)
    }
}
