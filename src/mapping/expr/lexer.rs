//! Lexer: turns expression text into tokens that carry their 1-based column (in chars).

use super::ParseError;

/// A comparison operator, allowed between two operands (`IIF([a]="x", …)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "<>",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    LParen,
    RParen,
    Comma,
    Ident(String),
    Attr(String),
    Str(String),
    Num(i64),
    Hex(i64),
    Op(CmpOp),
    Eof,
}

impl Tok {
    /// How the token is named in "expected …, found …" messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::Comma => "','".into(),
            Tok::Ident(name) => format!("name '{name}'"),
            Tok::Attr(name) => format!("attribute [{name}]"),
            Tok::Str(_) => "a string".into(),
            Tok::Num(_) | Tok::Hex(_) => "a number".into(),
            Tok::Op(op) => format!("'{}'", op.symbol()),
            Tok::Eof => "the end of the expression".into(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) column: usize,
}

fn err(column: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        column,
        message: message.into(),
    }
}

pub(crate) fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        let (tok, next) = token_at(&chars, i)?;
        tokens.push(Token { tok, column: i + 1 });
        i = next;
    }
    tokens.push(Token {
        tok: Tok::Eof,
        column: chars.len() + 1,
    });
    Ok(tokens)
}

/// The token that starts at `i`, and where the next one may start.
fn token_at(chars: &[char], i: usize) -> Result<(Tok, usize), ParseError> {
    let column = i + 1;
    let next_is = |c: char| chars.get(i + 1) == Some(&c);
    Ok(match chars[i] {
        '(' => (Tok::LParen, i + 1),
        ')' => (Tok::RParen, i + 1),
        ',' => (Tok::Comma, i + 1),
        '=' => (Tok::Op(CmpOp::Eq), i + 1),
        '<' if next_is('>') => (Tok::Op(CmpOp::Ne), i + 2),
        '<' if next_is('=') => (Tok::Op(CmpOp::Le), i + 2),
        '<' => (Tok::Op(CmpOp::Lt), i + 1),
        '>' if next_is('=') => (Tok::Op(CmpOp::Ge), i + 2),
        '>' => (Tok::Op(CmpOp::Gt), i + 1),
        '"' => {
            let (s, next) = lex_string(chars, i)?;
            (Tok::Str(s), next)
        }
        '[' => {
            let start = i + 1;
            let end = chars[start..]
                .iter()
                .position(|&c| c == ']')
                .map(|p| start + p)
                .ok_or_else(|| err(column, "expected ']' to close the attribute name"))?;
            let name: String = chars[start..end].iter().collect();
            if name.trim().is_empty() {
                return Err(err(column, "expected an attribute name between '[' and ']'"));
            }
            (Tok::Attr(name), end + 1)
        }
        '&' => lex_hex(chars, i)?,
        '-' | '0'..='9' => lex_number(chars, i)?,
        c if c.is_alphabetic() || c == '_' => {
            let len = chars[i..]
                .iter()
                .take_while(|c| c.is_alphanumeric() || **c == '_')
                .count();
            (Tok::Ident(chars[i..i + len].iter().collect()), i + len)
        }
        other => {
            return Err(err(
                column,
                format!(
                    "unexpected character {other:?}; expected a function name, [attribute], \"string\" or number"
                ),
            ))
        }
    })
}

/// A hex number, `&HF7`.
fn lex_hex(chars: &[char], i: usize) -> Result<(Tok, usize), ParseError> {
    let column = i + 1;
    if !matches!(chars.get(i + 1), Some('H' | 'h')) {
        return Err(err(column, "expected 'H' after '&' in a hex number"));
    }
    let start = i + 2;
    let len = chars[start..]
        .iter()
        .take_while(|c| c.is_ascii_hexdigit())
        .count();
    if len == 0 {
        return Err(err(column, "expected hex digits after '&H'"));
    }
    let digits: String = chars[start..start + len].iter().collect();
    let value =
        i64::from_str_radix(&digits, 16).map_err(|_| err(column, "hex number is too large"))?;
    Ok((Tok::Hex(value), start + len))
}

/// A decimal integer, `42` or `-7`.
fn lex_number(chars: &[char], i: usize) -> Result<(Tok, usize), ParseError> {
    let column = i + 1;
    let negative = chars[i] == '-';
    let start = if negative { i + 1 } else { i };
    let len = chars[start..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    if len == 0 {
        return Err(err(column, "expected a digit after '-'"));
    }
    let mut digits: String = chars[start..start + len].iter().collect();
    if negative {
        digits.insert(0, '-');
    }
    let value: i64 = digits
        .parse()
        .map_err(|_| err(column, "number is too large"))?;
    Ok((Tok::Num(value), start + len))
}

/// Reads a string literal starting at the opening quote. `\"` and `\\` are the documented
/// escapes; any other backslash is kept as written, because administrators paste regex
/// patterns such as `"\d+"` and the reference's own examples only double the backslash
/// where it is needed.
fn lex_string(chars: &[char], open: usize) -> Result<(String, usize), ParseError> {
    let mut out = String::new();
    let mut i = open + 1;
    loop {
        match chars.get(i) {
            None => {
                return Err(err(
                    open + 1,
                    "expected '\"' to close the string that starts here",
                ))
            }
            Some('"') => return Ok((out, i + 1)),
            Some('\\') => match chars.get(i + 1) {
                Some(&c @ ('"' | '\\')) => {
                    out.push(c);
                    i += 2;
                }
                _ => {
                    out.push('\\');
                    i += 1;
                }
            },
            Some(&c) => {
                out.push(c);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<Tok> {
        tokenize(text).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn lexes_every_token_kind() {
        assert_eq!(
            toks(r#"Join(", ", [a b], -10, &HF7, vbTextCompare) <> >= <= < > ="#),
            vec![
                Tok::Ident("Join".into()),
                Tok::LParen,
                Tok::Str(", ".into()),
                Tok::Comma,
                Tok::Attr("a b".into()),
                Tok::Comma,
                Tok::Num(-10),
                Tok::Comma,
                Tok::Hex(0xF7),
                Tok::Comma,
                Tok::Ident("vbTextCompare".into()),
                Tok::RParen,
                Tok::Op(CmpOp::Ne),
                Tok::Op(CmpOp::Ge),
                Tok::Op(CmpOp::Le),
                Tok::Op(CmpOp::Lt),
                Tok::Op(CmpOp::Gt),
                Tok::Op(CmpOp::Eq),
                Tok::Eof,
            ]
        );
    }

    #[test]
    fn string_escapes() {
        assert_eq!(
            toks(r#""Company name: \"Contoso\" \\ \d""#)[0],
            Tok::Str(r#"Company name: "Contoso" \ \d"#.into())
        );
    }

    #[test]
    fn columns_count_chars_not_bytes() {
        let t = tokenize("\"é\" ¤").unwrap_err();
        assert_eq!(t.column, 5);
    }

    #[test]
    fn lexer_errors_say_what_was_expected() {
        let cases = [
            ("\"abc", 1, "expected '\"' to close the string"),
            ("[abc", 1, "expected ']'"),
            ("[ ]", 1, "expected an attribute name"),
            ("&G", 1, "expected 'H'"),
            ("&H", 1, "expected hex digits"),
            ("a(-x)", 3, "expected a digit after '-'"),
            ("99999999999999999999", 1, "too large"),
            ("&H1FFFFFFFFFFFFFFFF", 1, "too large"),
            ("a ; b", 3, "unexpected character ';'"),
        ];
        for (text, column, needle) in cases {
            let e = tokenize(text).unwrap_err();
            assert_eq!(e.column, column, "{text}");
            assert!(e.message.contains(needle), "{text}: {}", e.message);
        }
    }
}
