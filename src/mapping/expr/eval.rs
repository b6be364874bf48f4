//! Evaluator: walks the tree for one user's attributes, tracking Redact and
//! IgnoreFlowIfNullOrEmpty on the side.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};

use super::ast::Expr;
use super::ctx::{as_decimal, Ctx};
use super::datetime;
use super::functions;
use super::lexer::CmpOp;
use super::{EvalError, Value};

impl Ctx<'_> {
    pub(crate) fn eval(&mut self, expr: &Expr) -> Result<Value, EvalError> {
        Ok(match expr {
            Expr::Empty => Value::Null,
            Expr::Str(s) => Value::Str(s.clone()),
            Expr::Num(n) | Expr::Hex(n) => Value::Str(n.to_string()),
            Expr::Enum(name) => Value::Str((*name).to_string()),
            Expr::Attr(name) => self.attrs.get(name).unwrap_or(Value::Null),
            Expr::Call(func, args) => functions::call(self, *func, args)?,
            Expr::Compare(op, l, r) => {
                let l = self.eval(l)?;
                let r = self.eval(r)?;
                Value::bool(compare(*op, &l, &r))
            }
        })
    }
}

/// Comparison operators: numbers compare as numbers, dates as dates (when either side is a
/// date and the other reads as one), everything else as case-sensitive strings. Null
/// compares as the empty string.
pub(crate) fn compare(op: CmpOp, l: &Value, r: &Value) -> bool {
    let ordering = order(l, r);
    match op {
        CmpOp::Eq => ordering == Ordering::Equal,
        CmpOp::Ne => ordering != Ordering::Equal,
        CmpOp::Lt => ordering == Ordering::Less,
        CmpOp::Le => ordering != Ordering::Greater,
        CmpOp::Gt => ordering == Ordering::Greater,
        CmpOp::Ge => ordering != Ordering::Less,
    }
}

fn as_date(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::DateTime(dt) => Some(*dt),
        Value::Str(s) => datetime::parse_lenient(s),
        _ => None,
    }
}

fn order(l: &Value, r: &Value) -> Ordering {
    if matches!(l, Value::DateTime(_)) || matches!(r, Value::DateTime(_)) {
        if let (Some(a), Some(b)) = (as_date(l), as_date(r)) {
            return a.cmp(&b);
        }
    }
    let (a, b) = (l.as_display(), r.as_display());
    if let (Some(x), Some(y)) = (as_decimal(&a), as_decimal(&b)) {
        return x.partial_cmp(&y).unwrap_or(Ordering::Equal);
    }
    a.cmp(&b)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn s(x: &str) -> Value {
        Value::Str(x.into())
    }

    #[test]
    fn comparisons() {
        assert!(compare(CmpOp::Eq, &s("USA"), &s("USA")));
        assert!(!compare(CmpOp::Eq, &s("usa"), &s("USA")));
        assert!(compare(CmpOp::Gt, &s("10"), &s("9")));
        assert!(compare(CmpOp::Lt, &s("-10"), &s("5.5")));
        assert!(compare(CmpOp::Eq, &s("5"), &s("5.0")));
        assert!(compare(CmpOp::Gt, &s("b"), &s("a")));
        assert!(compare(CmpOp::Eq, &Value::Null, &s("")));
        assert!(compare(CmpOp::Ne, &Value::Null, &s("x")));
        assert!(compare(CmpOp::Ge, &s("1e5"), &s("1e4")));
        let dt = Utc.with_ymd_and_hms(2021, 8, 25, 17, 41, 18).unwrap();
        assert!(compare(
            CmpOp::Eq,
            &Value::DateTime(dt),
            &s("2021-08-25T17:41:18Z")
        ));
        assert!(compare(CmpOp::Gt, &Value::DateTime(dt), &s("2021-08-24")));
        assert!(compare(CmpOp::Le, &s("2021-08-24"), &Value::DateTime(dt)));
    }

    #[test]
    fn decimals() {
        assert_eq!(as_decimal(" 12 "), Some(12.0));
        assert_eq!(as_decimal("-3.5"), Some(-3.5));
        assert_eq!(as_decimal("inf"), None);
        assert_eq!(as_decimal("1e5"), None);
        assert_eq!(as_decimal("."), None);
        assert_eq!(as_decimal(""), None);
    }
}
