//! PLACEHOLDER until the expression language lands: attribute references and literals only.
use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Str(String),
    Multi(Vec<String>),
    DateTime(chrono::DateTime<chrono::Utc>),
}
impl Value {
    pub fn is_null_or_empty(&self) -> bool {
        match self {
            Value::Null => true,
            Value::Str(s) => s.is_empty(),
            Value::Multi(v) => v.is_empty(),
            Value::DateTime(_) => false,
        }
    }
    pub fn as_display(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Str(s) => s.clone(),
            Value::Multi(v) => v.join(", "),
            Value::DateTime(d) => d.format("%-m/%-d/%Y %-I:%M:%S %p").to_string(),
        }
    }
}
pub trait Attributes {
    fn get(&self, name: &str) -> Option<Value>;
}
impl Attributes for BTreeMap<String, Value> {
    fn get(&self, name: &str) -> Option<Value> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}
#[derive(Clone, Debug)]
pub struct Expression(String);
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    pub value: Value,
    pub redacted: bool,
    pub ignore_flow: bool,
}
#[derive(Debug, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ParseError {
    pub column: usize,
    pub message: String,
}
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{0}")]
    Other(String),
}
impl Expression {
    pub fn parse(text: &str) -> Result<Expression, ParseError> {
        let t = text.trim();
        if (t.starts_with('[') && t.ends_with(']')) || (t.starts_with('"') && t.ends_with('"')) {
            Ok(Expression(t.to_owned()))
        } else {
            Err(ParseError {
                column: 1,
                message: "placeholder parser".into(),
            })
        }
    }
    pub fn evaluate(&self, attrs: &dyn Attributes) -> Result<Evaluated, EvalError> {
        let t = &self.0;
        let value = if t.starts_with('[') {
            attrs.get(&t[1..t.len() - 1]).unwrap_or(Value::Null)
        } else {
            Value::Str(t[1..t.len() - 1].to_owned())
        };
        Ok(Evaluated {
            value,
            redacted: false,
            ignore_flow: false,
        })
    }
    pub fn referenced_attributes(&self) -> Vec<String> {
        Vec::new()
    }
}
impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
