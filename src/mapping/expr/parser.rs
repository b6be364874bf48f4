//! Parser: tokens to the expression tree, with function names and argument counts checked up
//! front so that a bad mapping is rejected when configuration loads, not once per user.

use std::fmt;

use super::ast::{Expr, Func};
use super::lexer::{tokenize, Tok, Token};
use super::signature;
use super::ParseError;

/// Longest expression accepted, in chars (the Entra portal's limit).
pub(crate) const MAX_LEN: usize = 10_000;
/// Deepest function nesting accepted; keeps the recursive parser and evaluator far from the
/// end of the stack whatever the input.
pub(crate) const MAX_DEPTH: usize = 64;

/// Bare names accepted as enum arguments: the `compareType` of `InStr`, and the members of
/// .NET `DateTimeStyles` that `FormatDateTime`'s `dateTimeStyles` argument refers to.
const ENUM_NAMES: &[&str] = &[
    "vbBinaryCompare",
    "vbTextCompare",
    "None",
    "AllowLeadingWhite",
    "AllowTrailingWhite",
    "AllowInnerWhite",
    "AllowWhiteSpaces",
    "NoCurrentDateDefault",
    "AdjustToUniversal",
    "AssumeLocal",
    "AssumeUniversal",
    "RoundtripKind",
];

fn err(column: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        column,
        message: message.into(),
    }
}

pub(crate) fn parse(text: &str) -> Result<Expr, ParseError> {
    if text.chars().count() > MAX_LEN {
        return Err(err(
            MAX_LEN + 1,
            format!("expression is longer than {MAX_LEN} characters"),
        ));
    }
    let tokens = tokenize(text)?;
    let mut parser = Parser { tokens, pos: 0 };
    if parser.peek().tok == Tok::Eof {
        return Err(err(1, "expected an expression, found nothing"));
    }
    let expr = parser.expr(0)?;
    let next = parser.peek();
    if next.tok != Tok::Eof {
        return Err(err(
            next.column,
            format!(
                "expected the end of the expression, found {}",
                next.tok.describe()
            ),
        ));
    }
    Ok(expr)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        // The token list always ends with Eof and `pos` never moves past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if t.tok != Tok::Eof {
            self.pos += 1;
        }
        t
    }

    fn expr(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let lhs = self.operand(depth)?;
        let Tok::Op(op) = self.peek().tok else {
            return Ok(lhs);
        };
        self.next();
        let rhs = self.operand(depth)?;
        if let Tok::Op(second) = self.peek().tok {
            return Err(err(
                self.peek().column,
                format!(
                    "comparisons cannot be chained: expected ',' or ')' instead of '{}'",
                    second.symbol()
                ),
            ));
        }
        Ok(Expr::Compare(op, Box::new(lhs), Box::new(rhs)))
    }

    fn operand(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let token = self.next();
        match token.tok {
            Tok::Str(s) => Ok(Expr::Str(s)),
            Tok::Num(n) => Ok(Expr::Num(n)),
            Tok::Hex(n) => Ok(Expr::Hex(n)),
            Tok::Attr(name) => Ok(Expr::Attr(name)),
            Tok::Ident(name) => {
                if self.peek().tok == Tok::LParen {
                    return self.call(&name, token.column, depth + 1);
                }
                if let Some(canonical) = ENUM_NAMES.iter().find(|e| e.eq_ignore_ascii_case(&name)) {
                    return Ok(Expr::Enum(canonical));
                }
                if let Some(f) = Func::lookup(&name) {
                    return Err(err(
                        self.peek().column,
                        format!("expected '(' after function name {}", f.name()),
                    ));
                }
                Err(err(
                    token.column,
                    format!(
                        "unknown name '{name}': expected a function call, [attribute], \"string\" or number (attribute names go in square brackets)"
                    ),
                ))
            }
            other => Err(err(
                token.column,
                format!(
                    "expected a function call, [attribute], \"string\" or number, found {}",
                    other.describe()
                ),
            )),
        }
    }

    fn call(&mut self, name: &str, column: usize, depth: usize) -> Result<Expr, ParseError> {
        let func = match Func::lookup(name) {
            Some(f) => f,
            None if name.eq_ignore_ascii_case("SelectUniqueValue") => {
                return Err(err(
                    column,
                    "SelectUniqueValue is not supported: it needs a uniqueness check against the target directory",
                ))
            }
            None => return Err(err(column, format!("unknown function '{name}'"))),
        };
        if depth > MAX_DEPTH {
            return Err(err(
                column,
                format!("functions are nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        self.next(); // '('
        let mut args = Vec::new();
        if self.peek().tok == Tok::RParen {
            self.next();
        } else {
            loop {
                let arg = match self.peek().tok {
                    Tok::Comma | Tok::RParen => Expr::Empty,
                    _ => self.expr(depth)?,
                };
                args.push(arg);
                let t = self.next();
                match t.tok {
                    Tok::Comma => {}
                    Tok::RParen => break,
                    other => {
                        return Err(err(
                            t.column,
                            format!(
                                "expected ',' or ')' after argument {} of {}, found {}",
                                args.len(),
                                func.name(),
                                other.describe()
                            ),
                        ))
                    }
                }
            }
        }
        signature::validate(func, &args).map_err(|message| err(column, message))?;
        Ok(Expr::Call(func, args))
    }
}

impl Expr {
    pub(crate) fn collect_attributes(&self, out: &mut Vec<String>) {
        match self {
            Expr::Attr(name) => {
                if !out.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                    out.push(name.clone());
                }
            }
            Expr::Call(_, args) => args.iter().for_each(|a| a.collect_attributes(out)),
            Expr::Compare(_, l, r) => {
                l.collect_attributes(out);
                r.collect_attributes(out);
            }
            Expr::Empty | Expr::Str(_) | Expr::Num(_) | Expr::Hex(_) | Expr::Enum(_) => {}
        }
    }
}

/// Canonical form: canonical function names, `", "` between arguments, spaces around
/// comparison operators, and only `\"` and `\\` escaped in strings.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Empty => Ok(()),
            Expr::Str(s) => {
                f.write_str("\"")?;
                for c in s.chars() {
                    if c == '"' || c == '\\' {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
                f.write_str("\"")
            }
            Expr::Num(n) => write!(f, "{n}"),
            Expr::Hex(n) => write!(f, "&H{n:X}"),
            Expr::Enum(name) => f.write_str(name),
            Expr::Attr(name) => write!(f, "[{name}]"),
            Expr::Call(func, args) => {
                write!(f, "{}(", func.name())?;
                for (i, arg) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{arg}")?;
                }
                f.write_str(")")
            }
            Expr::Compare(op, l, r) => write!(f, "{l} {} {r}", op.symbol()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::mapping::expr::lexer::CmpOp;

    fn p(text: &str) -> Expr {
        parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn perr(text: &str) -> ParseError {
        match parse(text) {
            Ok(e) => panic!("{text} parsed as {e}"),
            Err(e) => e,
        }
    }

    #[test]
    fn parses_calls_attributes_literals_and_empties() {
        assert_eq!(
            p(r#"switch([IsSoftDeleted], , "False", "True")"#),
            Expr::Call(
                Func::Switch,
                vec![
                    Expr::Attr("IsSoftDeleted".into()),
                    Expr::Empty,
                    Expr::Str("False".into()),
                    Expr::Str("True".into()),
                ]
            )
        );
        assert_eq!(
            p("BitAnd(&HF, &HF7)"),
            Expr::Call(Func::BitAnd, vec![Expr::Hex(15), Expr::Hex(0xF7)])
        );
        assert_eq!(
            p(r#"InStr("repEated","e",3,VBBINARYCOMPARE)"#),
            Expr::Call(
                Func::InStr,
                vec![
                    Expr::Str("repEated".into()),
                    Expr::Str("e".into()),
                    Expr::Num(3),
                    Expr::Enum("vbBinaryCompare"),
                ]
            )
        );
        assert_eq!(p("Guid()"), Expr::Call(Func::Guid, vec![]));
        assert_eq!(p(" [mail] "), Expr::Attr("mail".into()));
        assert_eq!(
            p(r#"Replace([x], "a", , , "b", , )"#),
            Expr::Call(
                Func::Replace,
                vec![
                    Expr::Attr("x".into()),
                    Expr::Str("a".into()),
                    Expr::Empty,
                    Expr::Empty,
                    Expr::Str("b".into()),
                    Expr::Empty,
                    Expr::Empty,
                ]
            )
        );
    }

    #[test]
    fn parses_comparisons() {
        assert_eq!(
            p(r#"IIF([country]="USA",[country],[department])"#),
            Expr::Call(
                Func::IIF,
                vec![
                    Expr::Compare(
                        CmpOp::Eq,
                        Box::new(Expr::Attr("country".into())),
                        Box::new(Expr::Str("USA".into()))
                    ),
                    Expr::Attr("country".into()),
                    Expr::Attr("department".into()),
                ]
            )
        );
        assert_eq!(
            p("CBool([x] >= -5)"),
            Expr::Call(
                Func::CBool,
                vec![Expr::Compare(
                    CmpOp::Ge,
                    Box::new(Expr::Attr("x".into())),
                    Box::new(Expr::Num(-5))
                )]
            )
        );
    }

    #[test]
    fn prints_canonically() {
        let cases = [
            (
                r#"switch( [a] ,,"x\"y" , "z\\")"#,
                r#"Switch([a], , "x\"y", "z\\")"#,
            ),
            ("bitand(&hf7,-10)", "BitAnd(&HF7, -10)"),
            (
                "iif([a]<>[b],vbtextcompare,\"\")",
                r#"IIF([a] <> [b], vbTextCompare, "")"#,
            ),
            (
                r#"Replace([x],"a",,,"b",,)"#,
                r#"Replace([x], "a", , , "b", , )"#,
            ),
            ("now()", "Now()"),
        ];
        for (text, printed) in cases {
            let e = p(text);
            assert_eq!(e.to_string(), printed);
            assert_eq!(p(printed), e);
        }
    }

    #[test]
    fn parse_errors_name_the_column_and_what_was_expected() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 1, "expected an expression"),
            ("   ", 1, "expected an expression"),
            (
                r#"Join(" ", [a] [b])"#,
                15,
                "expected ',' or ')' after argument 2 of Join, found attribute [b]",
            ),
            ("Join(\" \", [a]", 14, "expected ',' or ')' after argument 2 of Join"),
            ("Frobnicate([a])", 1, "unknown function 'Frobnicate'"),
            ("Append([a], Frob([b]))", 13, "unknown function 'Frob'"),
            ("Left([a])", 1, "Left expects 2 arguments, found 1"),
            ("Join(\",\")", 1, "Join expects at least 2 arguments, found 1"),
            ("Guid(1)", 1, "Guid expects no arguments, found 1"),
            ("InStr(1,2,3,4,5)", 1, "InStr expects 2 to 4 arguments, found 5"),
            ("Switch([a], , \"k\")", 1, "Switch expects at least 4 arguments"),
            ("Switch([a], , \"k\", \"v\", \"k2\")", 1, "even number"),
            ("[a] [b]", 5, "expected the end of the expression"),
            ("[a] = [b] = [c]", 11, "comparisons cannot be chained"),
            ("IIF([a] = , 1, 2)", 11, "expected a function call"),
            ("mail", 1, "unknown name 'mail'"),
            ("Join", 5, "expected '(' after function name Join"),
            ("SelectUniqueValue([a], [b])", 1, "SelectUniqueValue is not supported"),
            ("Replace([a], , , , , , )", 1, "Replace: expected oldValue or regexPattern"),
            ("Replace([a], \"x\", , , , , )", 1, "oldValue needs replacementValue or template"),
            (
                "Replace([a], , \"x\", , , , )",
                1,
                "regexPattern needs replacementValue, or regexGroupName and replacementAttributeName",
            ),
            (
                "Replace(, \"x\", , , \"y\", , )",
                1,
                "Replace: source (argument 1) is required",
            ),
            ("Append([a], )", 1, "Append: suffix (argument 2) is required"),
        ];
        for (text, column, needle) in cases {
            let e = perr(text);
            assert_eq!(e.column, *column, "{text}: {e}");
            assert!(e.message.contains(needle), "{text}: {e}");
            assert_eq!(e.to_string(), format!("column {}: {}", e.column, e.message));
        }
    }

    #[test]
    fn length_and_depth_are_capped() {
        let long = format!("\"{}\"", "x".repeat(MAX_LEN));
        assert!(perr(&long).message.contains("longer than 10000"));
        let ok = format!(
            "{}[a]{}",
            "ToLower(".repeat(MAX_DEPTH),
            ")".repeat(MAX_DEPTH)
        );
        p(&ok);
        let deep = format!(
            "{}[a]{}",
            "ToLower(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        let e = perr(&deep);
        assert_eq!(e.column, 1 + 8 * MAX_DEPTH);
        assert!(e.message.contains("nested more than 64"));
        // Far deeper than the cap, near the length limit: must fail cleanly, not overflow.
        let very_deep = "ToLower(".repeat(1200);
        assert!(perr(&very_deep).message.contains("nested"));
        let brackets = "(".repeat(9000);
        perr(&brackets);
    }

    #[test]
    fn referenced_attributes_in_order_without_duplicates() {
        let mut out = Vec::new();
        p("Join(\" \", [givenName], IIF([sn]=\"x\", [GIVENNAME], [mail]))")
            .collect_attributes(&mut out);
        assert_eq!(out, vec!["givenName", "sn", "mail"]);
    }
}
