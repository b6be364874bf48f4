//! Runs every example of `docs/expressions.md`, so the administrator's reference cannot
//! drift from what the code does.
//!
//! An example is a list item of the form
//! ``- `EXPR` with name = `value`, other = [`a`, `b`] → RESULT`` where RESULT is `` `text` ``
//! (optionally followed by `(redacted)`), a list, `null`, `empty`, `dropped from the flow`,
//! ``error `message` `` or ``a random value matching `regex` ``.

use std::collections::BTreeMap;

use regex::Regex;

use super::tests::fixed_now;
use super::{function_names, Expression, Value};

/// The path is relative to this file in `src/mapping/expr/`.
const DOC: &str = include_str!("../../../docs/expressions.md");
const ARROW: &str = " → ";

#[derive(Debug)]
enum Expected {
    Value { value: Value, redacted: bool },
    Dropped,
    Error(String),
    Matching(Regex),
}

#[derive(Debug)]
struct Example {
    line: usize,
    expr: String,
    attrs: BTreeMap<String, Value>,
    expected: Expected,
}

fn eat(rest: &mut &str, lit: &str) -> bool {
    match rest.strip_prefix(lit) {
        Some(r) => {
            *rest = r;
            true
        }
        None => false,
    }
}

fn code(rest: &mut &str) -> Result<String, String> {
    if !eat(rest, "`") {
        return Err(format!("expected '`' at {rest:?}"));
    }
    let end = rest.find('`').ok_or("unclosed '`'")?;
    let text = rest[..end].to_string();
    *rest = &rest[end + 1..];
    Ok(text)
}

fn list(rest: &mut &str) -> Result<Value, String> {
    let mut items = Vec::new();
    if eat(rest, "]") {
        return Ok(Value::Multi(items));
    }
    loop {
        items.push(code(rest)?);
        if eat(rest, "]") {
            return Ok(Value::Multi(items));
        }
        if !eat(rest, ", ") {
            return Err(format!("expected ', ' or ']' at {rest:?}"));
        }
    }
}

fn value(rest: &mut &str) -> Result<Value, String> {
    if eat(rest, "[") {
        list(rest)
    } else if eat(rest, "empty") {
        Ok(Value::Str(String::new()))
    } else {
        code(rest).map(Value::Str)
    }
}

fn expected(mut rest: &str) -> Result<Expected, String> {
    let r = &mut rest;
    let e = if eat(r, "null") {
        Expected::Value {
            value: Value::Null,
            redacted: false,
        }
    } else if eat(r, "dropped from the flow") {
        Expected::Dropped
    } else if eat(r, "error ") {
        Expected::Error(code(r)?)
    } else if eat(r, "a random value matching ") {
        let pattern = code(r)?;
        Expected::Matching(Regex::new(&pattern).map_err(|e| e.to_string())?)
    } else {
        let value = value(r)?;
        let redacted = eat(r, " (redacted)");
        Expected::Value { value, redacted }
    };
    if !r.is_empty() {
        return Err(format!("unexpected text after the result: {r:?}"));
    }
    Ok(e)
}

fn parse_example(line: usize, text: &str) -> Result<Example, String> {
    let mut rest = text.strip_prefix("- ").ok_or("expected '- '")?;
    let r = &mut rest;
    let expr = code(r)?;
    let mut attrs = BTreeMap::new();
    if eat(r, " with ") {
        loop {
            let eq = r.find(" = ").ok_or("expected 'name = value'")?;
            let name = r[..eq].to_string();
            *r = &r[eq + 3..];
            attrs.insert(name, value(r)?);
            if !eat(r, ", ") {
                break;
            }
        }
    }
    if !eat(r, ARROW) {
        return Err(format!("expected '{ARROW}' at {r:?}"));
    }
    Ok(Example {
        line,
        expr,
        attrs,
        expected: expected(r)?,
    })
}

fn examples() -> Vec<Example> {
    DOC.lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("- `") && l.contains(ARROW))
        .map(|(i, l)| {
            parse_example(i + 1, l)
                .unwrap_or_else(|e| panic!("docs/expressions.md:{}: {e}\n{l}", i + 1))
        })
        .collect()
}

fn check(ex: &Example) -> Result<(), String> {
    let expression = Expression::parse(&ex.expr).map_err(|e| format!("parse error: {e}"))?;
    let result = expression.evaluate_at(&ex.attrs, fixed_now());
    match (&ex.expected, result) {
        (Expected::Error(want), Err(e)) if e.to_string() == *want => Ok(()),
        (Expected::Dropped, Ok(r)) if r.ignore_flow => Ok(()),
        (Expected::Matching(re), Ok(r)) if re.is_match(&r.value.as_display()) && !r.ignore_flow => {
            Ok(())
        }
        (Expected::Value { value, redacted }, Ok(r)) => {
            let got = match (&r.value, value) {
                (Value::DateTime(_), Value::Str(_)) => Value::Str(r.value.as_display()),
                _ => r.value.clone(),
            };
            if got == *value && r.redacted == *redacted && !r.ignore_flow {
                Ok(())
            } else {
                Err(format!("got {r:?}"))
            }
        }
        (_, got) => Err(format!("got {got:?}")),
    }
}

#[test]
fn every_documented_example_holds() {
    let all = examples();
    assert!(all.len() > 100, "only {} examples found", all.len());
    let failures: Vec<String> = all
        .iter()
        .filter_map(|ex| {
            check(ex).err().map(|why| {
                format!(
                    "docs/expressions.md:{}: {}\n  expected {:?}\n  {why}",
                    ex.line, ex.expr, ex.expected
                )
            })
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_function_is_documented_with_an_example() {
    let all = examples();
    for name in function_names() {
        assert!(
            DOC.contains(&format!("\n### {name}\n")),
            "no section for {name}"
        );
        let call = format!("{name}(");
        assert!(
            all.iter().any(|ex| ex.expr.contains(&call)),
            "no example calls {name}"
        );
    }
}

#[test]
fn example_format_is_parsed_strictly() {
    let ex = parse_example(
        1,
        "- `Join(\",\", [a], [b])` with a = [`x`, ` y`], b = empty → `x, y` (redacted)",
    )
    .unwrap();
    assert_eq!(ex.attrs["a"], Value::Multi(vec!["x".into(), " y".into()]));
    assert_eq!(ex.attrs["b"], Value::Str(String::new()));
    assert!(matches!(
        ex.expected,
        Expected::Value { redacted: true, .. }
    ));
    assert!(parse_example(1, "- `X()` → `a` trailing").is_err());
    assert!(parse_example(1, "- `X()` with a `b` → null").is_err());
    assert!(parse_example(1, "- `X()` -> null").is_err());
}
