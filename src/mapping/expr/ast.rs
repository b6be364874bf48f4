//! The expression tree: what the parser builds and the evaluator walks.

use super::lexer::CmpOp;

// Variants are spelled as the reference spells the functions (IIF, CStr, ConvertToUTF8Hex).
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Func {
    Append,
    AppRoleAssignmentsComplex,
    BitAnd,
    CBool,
    CDate,
    Coalesce,
    ConvertToBase64,
    ConvertToUTF8Hex,
    Count,
    CStr,
    DateAdd,
    DateDiff,
    DateFromNum,
    FormatDateTime,
    Guid,
    IgnoreFlowIfNullOrEmpty,
    IIF,
    InStr,
    IsNull,
    IsNullOrEmpty,
    IsPresent,
    IsString,
    Item,
    Join,
    Left,
    Mid,
    NormalizeDiacritics,
    Not,
    Now,
    NumFromDate,
    PCase,
    RandomString,
    Redact,
    RemoveDuplicates,
    Replace,
    SingleAppRoleAssignment,
    Split,
    StripSpaces,
    Switch,
    ToLower,
    ToUpper,
    Word,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    /// An omitted argument, as in `Switch([a], , "x", "y")`; evaluates to null.
    Empty,
    Str(String),
    Num(i64),
    /// `&HF7`; kept apart from `Num` so that printing gives back what was written.
    Hex(i64),
    /// A bare enum name, stored in its canonical spelling.
    Enum(&'static str),
    Attr(String),
    Call(Func, Vec<Expr>),
    /// Operands are never `Compare` or `Empty`: comparisons do not chain.
    Compare(CmpOp, Box<Expr>, Box<Expr>),
}
