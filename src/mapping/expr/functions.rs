//! The function library: what each function computes (its signature is in
//! [`super::signature`]).

use base64::Engine as _;
use rand::seq::{IndexedRandom, SliceRandom};
use regex::{Captures, Regex, RegexBuilder};

use super::ast::{Expr, Func};
use super::ctx::{as_decimal, Ctx};
use super::datetime;
use super::text;
use super::{EvalError, Value};

/// Largest value (in bytes) an expression may build; stops nested Replace or Join calls from
/// growing a string without bound.
pub(crate) const MAX_VALUE_BYTES: usize = 1 << 20;
/// RandomString's documented maximum length.
const MAX_RANDOM_LENGTH: i64 = 256;
/// The special characters of the Windows password complexity rules.
const SPECIAL_CHARACTERS: &str = "~!@#$%^&*_-+=`|\\(){}[]:;\"'<>,.?/";

fn invalid(function: Func, reason: impl Into<String>) -> EvalError {
    EvalError::Invalid {
        function: function.name(),
        reason: reason.into(),
    }
}

/// A whole number argument; `7.0` is accepted as 7.
fn int(function: Func, v: &Value) -> Result<i64, EvalError> {
    let text = v.as_display();
    let t = text.trim();
    if let Ok(n) = t.parse::<i64>() {
        return Ok(n);
    }
    match as_decimal(t) {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
        _ => Err(EvalError::BadNumber {
            function: function.name(),
            input: text,
        }),
    }
}

fn date(function: Func, v: &Value) -> Result<Option<chrono::DateTime<chrono::Utc>>, EvalError> {
    match v {
        Value::Null => Ok(None),
        Value::DateTime(dt) => Ok(Some(*dt)),
        other => {
            let text = other.as_display();
            if text.trim().is_empty() {
                return Ok(None);
            }
            datetime::parse_lenient(&text)
                .map(Some)
                .ok_or_else(|| EvalError::BadDate {
                    function: function.name(),
                    input: text,
                })
        }
    }
}

/// Applies a string transformation to each value: functions that rewrite one string into
/// another treat a multi-valued input element by element and keep it multi-valued.
fn map_each(
    v: Value,
    mut f: impl FnMut(&str) -> Result<String, EvalError>,
) -> Result<Value, EvalError> {
    Ok(match v {
        Value::Null => Value::Null,
        Value::Str(s) => Value::Str(f(&s)?),
        Value::Multi(values) => {
            Value::Multi(values.iter().map(|s| f(s)).collect::<Result<Vec<_>, _>>()?)
        }
        Value::DateTime(dt) => Value::Str(f(&datetime::display(&dt))?),
    })
}

fn truth(function: Func, v: &Value) -> Result<bool, EvalError> {
    let text = v.as_display();
    let t = text.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("false") {
        return Ok(false);
    }
    if t.eq_ignore_ascii_case("true") {
        return Ok(true);
    }
    match (v, as_decimal(t)) {
        (Value::DateTime(_), _) | (_, None) => Err(EvalError::BadBoolean {
            function: function.name(),
            input: text,
        }),
        (_, Some(n)) => Ok(n != 0.0),
    }
}

fn too_large(function: Func) -> EvalError {
    EvalError::TooLarge {
        function: function.name(),
        limit: MAX_VALUE_BYTES,
    }
}

/// Appends to `out`, failing once the result would pass the size limit.
fn push_limited(function: Func, out: &mut String, s: &str) -> Result<(), EvalError> {
    if out.len() + s.len() > MAX_VALUE_BYTES {
        return Err(too_large(function));
    }
    out.push_str(s);
    Ok(())
}

pub(crate) fn call(ctx: &mut Ctx<'_>, func: Func, args: &[Expr]) -> Result<Value, EvalError> {
    // Functions that decide which arguments to evaluate, so that an unused branch can neither
    // fail nor mark the value as redacted. Everything on the recursive path stays in small
    // functions: `apply`'s frame is large and must not be repeated once per nesting level.
    let v = match func {
        Func::IIF => iif(ctx, args)?,
        Func::Switch => switch(ctx, args)?,
        Func::Coalesce => coalesce(ctx, args)?,
        Func::Join => join(ctx, args)?,
        _ => {
            let mut values = Vec::with_capacity(args.len());
            for arg in args {
                values.push(ctx.eval(arg)?);
            }
            apply(ctx, func, args, values)?
        }
    };
    if v.byte_len() > MAX_VALUE_BYTES {
        return Err(too_large(func));
    }
    Ok(v)
}

fn iif(ctx: &mut Ctx<'_>, args: &[Expr]) -> Result<Value, EvalError> {
    let cond = ctx.eval(&args[0])?;
    let branch = if truth(Func::IIF, &cond)? { 1 } else { 2 };
    ctx.eval(&args[branch])
}

fn switch(ctx: &mut Ctx<'_>, args: &[Expr]) -> Result<Value, EvalError> {
    let source = ctx.eval(&args[0])?.as_display();
    for pair in args[2..].chunks(2) {
        if ctx.eval(&pair[0])?.as_display() == source {
            return ctx.eval(&pair[1]);
        }
    }
    ctx.eval(&args[1])
}

fn coalesce(ctx: &mut Ctx<'_>, args: &[Expr]) -> Result<Value, EvalError> {
    for arg in args {
        match ctx.eval(arg)? {
            Value::Null => {}
            Value::Multi(v) if v.is_empty() => {}
            v => return Ok(v),
        }
    }
    Ok(Value::Null)
}

/// Evaluates one argument at a time so that the result is checked against the size limit
/// while it grows, not after every argument has been held in memory.
fn join(ctx: &mut Ctx<'_>, args: &[Expr]) -> Result<Value, EvalError> {
    let sep = ctx.eval(&args[0])?.as_display();
    let mut out = String::new();
    let mut first = true;
    for arg in &args[1..] {
        let parts = match ctx.eval(arg)? {
            Value::Null => vec![],
            Value::Multi(values) => values,
            other => vec![other.as_display()],
        };
        for part in parts.iter().filter(|p| !p.is_empty()) {
            if !first {
                push_limited(Func::Join, &mut out, &sep)?;
            }
            push_limited(Func::Join, &mut out, part)?;
            first = false;
        }
    }
    Ok(Value::Str(out))
}

/// The functions whose arguments are all evaluated first; `a` holds their values.
#[inline(never)]
fn apply(ctx: &mut Ctx<'_>, func: Func, args: &[Expr], a: Vec<Value>) -> Result<Value, EvalError> {
    let arg = |i: usize| a.get(i).cloned().unwrap_or(Value::Null);
    Ok(match func {
        Func::IIF | Func::Switch | Func::Coalesce | Func::Join => Value::Null,
        Func::Append => {
            let suffix = arg(1).as_display();
            map_each(arg(0), |s| Ok(format!("{s}{suffix}")))?
        }
        Func::AppRoleAssignmentsComplex => {
            let roles = app_roles(func, &a[0])?;
            if roles.is_empty() {
                Value::Null
            } else {
                Value::Multi(roles.iter().map(Role::scim_json).collect())
            }
        }
        Func::BitAnd => {
            if a.contains(&Value::Null) {
                Value::Null
            } else {
                Value::Str((int(func, &a[0])? & int(func, &a[1])?).to_string())
            }
        }
        Func::CBool => Value::bool(truth(func, &a[0])?),
        Func::CDate => date(func, &a[0])?.map_or(Value::Null, Value::DateTime),
        Func::ConvertToBase64 => match a[0].text() {
            None => Value::Null,
            Some(s) => {
                let utf16: Vec<u8> = s.encode_utf16().flat_map(u16::to_le_bytes).collect();
                Value::Str(base64::engine::general_purpose::STANDARD.encode(utf16))
            }
        },
        Func::ConvertToUTF8Hex => match a[0].text() {
            None => Value::Null,
            Some(s) => Value::Str(s.bytes().map(|b| format!("{b:02X}")).collect()),
        },
        Func::Count => Value::Str(
            match &a[0] {
                Value::Null => 0,
                Value::Multi(v) => v.len(),
                _ => 1,
            }
            .to_string(),
        ),
        Func::CStr => a[0].text().map_or(Value::Null, Value::Str),
        Func::DateAdd => {
            let interval = a[0].as_display();
            let n = int(func, &a[1])?;
            match date(func, &a[2])? {
                None => Value::Null,
                Some(dt) => {
                    Value::DateTime(datetime::add(&interval, n, dt).map_err(|r| invalid(func, r))?)
                }
            }
        }
        Func::DateDiff => {
            let interval = a[0].as_display();
            match (date(func, &a[1])?, date(func, &a[2])?) {
                (Some(d1), Some(d2)) => Value::Str(
                    datetime::diff(&interval, d1, d2)
                        .map_err(|r| invalid(func, r))?
                        .to_string(),
                ),
                _ => Value::Null,
            }
        }
        Func::DateFromNum => {
            if a[0].is_null_or_empty() {
                Value::Null
            } else {
                let ticks = int(func, &a[0])?;
                Value::DateTime(datetime::from_ad_ticks(ticks).ok_or_else(|| {
                    invalid(func, format!("{ticks} is outside the range of dates"))
                })?)
            }
        }
        Func::FormatDateTime => format_date_time(ctx, func, &a)?,
        Func::Guid => Value::Str(uuid::Uuid::new_v4().to_string()),
        Func::IgnoreFlowIfNullOrEmpty => {
            if a[0].is_null_or_empty() {
                ctx.ignore_flow = true;
                Value::Null
            } else {
                arg(0)
            }
        }
        Func::InStr => instr(func, &a)?,
        Func::IsNull => Value::bool(matches!(&a[0], Value::Null) || a[0] == Value::Multi(vec![])),
        Func::IsNullOrEmpty => Value::bool(a[0].is_null_or_empty()),
        rest @ (Func::IsPresent
        | Func::IsString
        | Func::Item
        | Func::Left
        | Func::Mid
        | Func::NormalizeDiacritics
        | Func::Not
        | Func::Now
        | Func::NumFromDate
        | Func::PCase
        | Func::RandomString
        | Func::Redact
        | Func::RemoveDuplicates
        | Func::Replace
        | Func::SingleAppRoleAssignment
        | Func::Split
        | Func::StripSpaces
        | Func::ToLower
        | Func::ToUpper
        | Func::Word) => return apply_rest(ctx, rest, args, a),
    })
}

/// The second half of [`apply`]'s table (one function would be too long to read).
fn apply_rest(
    ctx: &mut Ctx<'_>,
    func: Func,
    args: &[Expr],
    a: Vec<Value>,
) -> Result<Value, EvalError> {
    let arg = |i: usize| a.get(i).cloned().unwrap_or(Value::Null);
    Ok(match func {
        Func::IsPresent => Value::bool(!a[0].is_null_or_empty()),
        Func::IsString => Value::bool(matches!(a[0], Value::Str(_))),
        Func::Item => {
            let index = int(func, &a[1])?;
            if index < 1 {
                return Err(invalid(func, format!("index {index} is not 1 or more")));
            }
            let i = usize::try_from(index - 1).unwrap_or(usize::MAX);
            match arg(0) {
                Value::Multi(values) => values.get(i).cloned().map_or(Value::Null, Value::Str),
                single if i == 0 => single,
                _ => Value::Null,
            }
        }
        Func::Left => {
            let n = int(func, &a[1])?;
            let source = match arg(0) {
                Value::Null => Value::Str(String::new()),
                v => v,
            };
            map_each(source, |s| {
                Ok(if n < 0 {
                    s.to_string()
                } else {
                    s.chars()
                        .take(usize::try_from(n).unwrap_or(usize::MAX))
                        .collect()
                })
            })?
        }
        Func::Mid => {
            let start = int(func, &a[1])?;
            let len = int(func, &a[2])?;
            if start < 1 {
                return Err(invalid(func, format!("start {start} is not 1 or more")));
            }
            if len < 0 {
                return Err(invalid(func, format!("length {len} is negative")));
            }
            let skip = usize::try_from(start - 1).unwrap_or(usize::MAX);
            let take = usize::try_from(len).unwrap_or(usize::MAX);
            map_each(arg(0), |s| Ok(s.chars().skip(skip).take(take).collect()))?
        }
        Func::NormalizeDiacritics => map_each(arg(0), |s| Ok(text::normalize_diacritics(s)))?,
        Func::Not => Value::bool(!a[0].as_display().trim().eq_ignore_ascii_case("true")),
        Func::Now => Value::DateTime(ctx.now),
        Func::NumFromDate => match date(func, &a[0])? {
            None => Value::Null,
            Some(dt) => Value::Str(
                datetime::to_ad_ticks(&dt)
                    .ok_or_else(|| invalid(func, "dates before 1601 have no AD form"))?
                    .to_string(),
            ),
        },
        tail @ (Func::PCase
        | Func::RandomString
        | Func::Redact
        | Func::RemoveDuplicates
        | Func::Replace
        | Func::SingleAppRoleAssignment
        | Func::Split
        | Func::StripSpaces
        | Func::ToLower
        | Func::ToUpper
        | Func::Word) => return apply_tail(ctx, tail, args, a),
        // Applied by `apply` itself, which sends only the functions above here.
        other => return Err(invalid(other, "not in this part of the function table")),
    })
}

/// The last part of [`apply`]'s table.
fn apply_tail(
    ctx: &mut Ctx<'_>,
    func: Func,
    args: &[Expr],
    a: Vec<Value>,
) -> Result<Value, EvalError> {
    let arg = |i: usize| a.get(i).cloned().unwrap_or(Value::Null);
    Ok(match func {
        Func::PCase => {
            let separators = arg(1).as_display();
            map_each(arg(0), |s| {
                Ok(if separators.is_empty() {
                    text::pcase_default(s)
                } else {
                    text::pcase_with(s, &separators)
                })
            })?
        }
        Func::RandomString => random_string(func, &a)?,
        Func::Redact => {
            ctx.redacted = true;
            arg(0)
        }
        Func::RemoveDuplicates => match arg(0) {
            Value::Multi(values) => {
                let mut unique: Vec<String> = Vec::with_capacity(values.len());
                for v in values {
                    if !unique.contains(&v) {
                        unique.push(v);
                    }
                }
                Value::Multi(unique)
            }
            other => other,
        },
        Func::Replace => replace(func, args, a)?,
        Func::SingleAppRoleAssignment => app_roles(func, &a[0])?
            .into_iter()
            .next()
            .map_or(Value::Null, |r| Value::Str(r.value)),
        Func::Split => match a[0].text() {
            None => Value::Null,
            Some(s) if s.is_empty() => Value::Multi(vec![]),
            Some(s) => {
                let delimiter = a[1].as_display();
                if delimiter.is_empty() {
                    Value::Multi(vec![s])
                } else {
                    Value::Multi(s.split(delimiter.as_str()).map(str::to_string).collect())
                }
            }
        },
        Func::StripSpaces => map_each(arg(0), |s| Ok(s.replace(' ', "")))?,
        Func::ToLower | Func::ToUpper => {
            let culture = text::culture(&arg(1).as_display()).map_err(|r| invalid(func, r))?;
            map_each(arg(0), |s| {
                Ok(if func == Func::ToLower {
                    text::to_lower(s, culture)
                } else {
                    text::to_upper(s, culture)
                })
            })?
        }
        Func::Word => {
            let n = int(func, &a[1])?;
            let delimiters = a[2].as_display();
            let source = a[0].as_display();
            let word = usize::try_from(n)
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| {
                    source
                        .split(|c| delimiters.contains(c))
                        .filter(|w| !w.is_empty())
                        .nth(i)
                });
            Value::Str(word.unwrap_or_default().to_string())
        }
        // Applied by `apply` or `apply_rest`, which send only the functions above here.
        other => return Err(invalid(other, "not in this part of the function table")),
    })
}

fn format_date_time(ctx: &Ctx<'_>, func: Func, a: &[Value]) -> Result<Value, EvalError> {
    let (source, styles, input_format, output_format) = match a {
        [s, i, o] => (s, None, i, o),
        [s, st, i, o] => (s, st.text().filter(|t| !t.trim().is_empty()), i, o),
        _ => return Err(invalid(func, "expects 3 or 4 arguments")),
    };
    let styles = match styles {
        None => datetime::Styles::default(),
        Some(t) => datetime::parse_styles(&t).map_err(|r| invalid(func, r))?,
    };
    let output_format = output_format.as_display();
    let input_format = input_format.as_display();
    let today = ctx.now.date_naive();
    let convert = |s: &str| -> Result<String, EvalError> {
        if input_format.is_empty() {
            return Err(invalid(func, "inputFormat is empty"));
        }
        let dt = datetime::parse_exact(s, &input_format, styles, today).map_err(|_| {
            EvalError::DateFormatMismatch {
                function: func.name(),
                input: s.to_string(),
                format: input_format.clone(),
            }
        })?;
        datetime::format(&dt, &output_format).map_err(|r| invalid(func, r))
    };
    Ok(match source {
        Value::Null => Value::Null,
        Value::Str(s) if s.trim().is_empty() => Value::Null,
        // A date from CDate, Now or DateAdd needs no parsing.
        Value::DateTime(dt) => {
            Value::Str(datetime::format(dt, &output_format).map_err(|r| invalid(func, r))?)
        }
        other => map_each(other.clone(), convert)?,
    })
}

fn instr(func: Func, a: &[Value]) -> Result<Value, EvalError> {
    let (Some(haystack), Some(needle)) = (a[0].text(), a[1].text()) else {
        return Ok(Value::Null);
    };
    let start = match a.get(2) {
        None | Some(Value::Null) => 1,
        Some(v) => int(func, v)?,
    };
    if start < 1 {
        return Err(invalid(func, format!("start {start} is not 1 or more")));
    }
    let text_compare = match a.get(3).and_then(Value::text) {
        None => false,
        Some(t) => match t.trim().to_ascii_lowercase().as_str() {
            "" | "vbbinarycompare" | "0" => false,
            "vbtextcompare" | "1" => true,
            _ => {
                return Err(invalid(
                    func,
                    format!("compareType \"{t}\" is not vbBinaryCompare or vbTextCompare"),
                ))
            }
        },
    };
    // Text comparison folds case one character at a time so positions stay those of the
    // original string.
    let fold = |s: &str| -> Vec<char> {
        if text_compare {
            text::to_lower(s, text::Culture::Invariant)
                .chars()
                .collect()
        } else {
            s.chars().collect()
        }
    };
    let (h, n) = (fold(&haystack), fold(&needle));
    let from = usize::try_from(start - 1).unwrap_or(usize::MAX);
    if from > h.len() {
        return Ok(Value::Str("0".into()));
    }
    if n.is_empty() {
        return Ok(Value::Str(start.to_string()));
    }
    let found = h[from..]
        .windows(n.len())
        .position(|w| w == n.as_slice())
        .map_or(0, |p| from + p + 1);
    Ok(Value::Str(found.to_string()))
}

fn random_string(func: Func, a: &[Value]) -> Result<Value, EvalError> {
    let mut n = [0i64; 5];
    for (i, slot) in n.iter_mut().enumerate() {
        *slot = int(func, &a[i])?;
        if *slot < 0 {
            return Err(invalid(
                func,
                format!("{} is negative", func.spec().params[i]),
            ));
        }
    }
    let [length, numbers, specials, capitals, lowers] = n;
    // Every count is bounded by the length, so neither their sum nor the loops below can
    // overflow or allocate without bound, whatever numbers a mapping gives.
    for (i, &v) in n.iter().enumerate() {
        if v > MAX_RANDOM_LENGTH {
            return Err(invalid(
                func,
                format!(
                    "{} {v} is more than {MAX_RANDOM_LENGTH}",
                    func.spec().params[i]
                ),
            ));
        }
    }
    let minimum = numbers + specials + capitals + lowers;
    if minimum > length {
        return Err(invalid(
            func,
            format!("the minimums add up to {minimum}, more than the length {length}"),
        ));
    }
    let avoid = a.get(5).map(Value::as_display).unwrap_or_default();
    let pool = |chars: &mut dyn Iterator<Item = char>| -> Vec<char> {
        chars.filter(|c| !avoid.contains(*c)).collect()
    };
    let classes = [
        (numbers, pool(&mut ('0'..='9')), "digit"),
        (
            specials,
            pool(&mut SPECIAL_CHARACTERS.chars()),
            "special character",
        ),
        (capitals, pool(&mut ('A'..='Z')), "capital letter"),
        (lowers, pool(&mut ('a'..='z')), "lower case letter"),
    ];
    let mut rng = rand::rng();
    let mut out: Vec<char> = Vec::new();
    let mut all: Vec<char> = Vec::new();
    for (count, chars, what) in &classes {
        if *count > 0 && chars.is_empty() {
            return Err(invalid(
                func,
                format!("every {what} is in charactersToAvoid"),
            ));
        }
        for _ in 0..*count {
            out.extend(chars.choose(&mut rng));
        }
        all.extend(chars);
    }
    let rest = length - minimum;
    if rest > 0 && all.is_empty() {
        return Err(invalid(func, "every character is in charactersToAvoid"));
    }
    for _ in 0..rest {
        out.extend(all.choose(&mut rng));
    }
    out.shuffle(&mut rng);
    Ok(Value::Str(out.into_iter().collect()))
}

fn compile(func: Func, pattern: &str) -> Result<Regex, EvalError> {
    RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .nest_limit(64)
        .build()
        .map_err(|e| {
            // The regex crate's syntax errors span several lines with a caret under the
            // pattern; the last line says what is wrong, which is what fits a log line.
            let text = e.to_string();
            let reason = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or_default()
                .trim()
                .trim_start_matches("error: ")
                .to_string();
            EvalError::BadRegex {
                function: func.name(),
                pattern: pattern.to_string(),
                reason,
            }
        })
}

/// Expands a .NET replacement pattern: `$1`, `${name}`, `$$`, `$&`, `` $` ``, `$'`, `$+`,
/// `$_`. Anything else, including a reference to a group the pattern lacks, is literal.
fn expand(re: &Regex, caps: &Captures<'_>, input: &str, repl: &str, out: &mut String) {
    let mut rest = repl;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let whole = caps.get(0).map_or(0..0, |m| m.range());
        let mut consumed = 1;
        match after.chars().next() {
            Some('$') => {
                out.push('$');
                consumed = 2;
            }
            Some('&') => {
                out.push_str(&input[whole.clone()]);
                consumed = 2;
            }
            Some('`') => {
                out.push_str(&input[..whole.start]);
                consumed = 2;
            }
            Some('\'') => {
                out.push_str(&input[whole.end..]);
                consumed = 2;
            }
            Some('_') => {
                out.push_str(input);
                consumed = 2;
            }
            Some('+') => {
                let last = (1..caps.len()).rev().find_map(|i| caps.get(i));
                out.push_str(last.map_or("", |m| m.as_str()));
                consumed = 2;
            }
            Some('{') => {
                let group = after[1..].find('}').map(|end| &after[1..=end]);
                let found = group.and_then(|g| {
                    let m = match g.parse::<usize>() {
                        Ok(i) if i < caps.len() => Some(caps.get(i)),
                        Ok(_) => None,
                        Err(_) => re
                            .capture_names()
                            .any(|n| n == Some(g))
                            .then(|| caps.name(g)),
                    }?;
                    Some((m.map_or("", |m| m.as_str()), g.len() + 3))
                });
                match found {
                    Some((text, len)) => {
                        out.push_str(text);
                        consumed = len;
                    }
                    None => out.push('$'),
                }
            }
            Some(c) if c.is_ascii_digit() => {
                let digits = after.chars().take_while(char::is_ascii_digit).count();
                // .NET takes the longest run of digits that names an existing group.
                let hit = (1..=digits).rev().find_map(|len| {
                    let i: usize = after[..len].parse().ok()?;
                    (i < caps.len()).then_some((i, len))
                });
                match hit {
                    Some((i, len)) => {
                        out.push_str(caps.get(i).map_or("", |m| m.as_str()));
                        consumed = len + 1;
                    }
                    None => out.push('$'),
                }
            }
            _ => out.push('$'),
        }
        rest = &rest[pos + consumed..];
    }
    out.push_str(rest);
}

fn regex_replace(func: Func, re: &Regex, s: &str, repl: &str) -> Result<String, EvalError> {
    let mut out = String::new();
    let mut last = 0;
    for caps in re.captures_iter(s) {
        let Some(m) = caps.get(0) else { continue };
        push_limited(func, &mut out, &s[last..m.start()])?;
        let mut piece = String::new();
        expand(re, &caps, s, repl, &mut piece);
        push_limited(func, &mut out, &piece)?;
        last = m.end();
    }
    push_limited(func, &mut out, &s[last..])?;
    Ok(out)
}

fn group_replace(
    func: Func,
    re: &Regex,
    s: &str,
    group: &str,
    repl: &str,
) -> Result<String, EvalError> {
    if !re.capture_names().any(|n| n == Some(group)) {
        return Err(invalid(
            func,
            format!("regexPattern has no group named \"{group}\""),
        ));
    }
    let mut out = String::new();
    let mut last = 0;
    for caps in re.captures_iter(s) {
        let Some(m) = caps.name(group) else { continue };
        if m.start() < last {
            continue;
        }
        push_limited(func, &mut out, &s[last..m.start()])?;
        let mut piece = String::new();
        expand(re, &caps, s, repl, &mut piece);
        push_limited(func, &mut out, &piece)?;
        last = m.end();
    }
    push_limited(func, &mut out, &s[last..])?;
    Ok(out)
}

fn literal_replace(func: Func, s: &str, old: &str, new: &str) -> Result<String, EvalError> {
    if old.is_empty() {
        return Ok(s.to_string());
    }
    let mut out = String::new();
    let mut last = 0;
    for (pos, _) in s.match_indices(old) {
        push_limited(func, &mut out, &s[last..pos])?;
        push_limited(func, &mut out, new)?;
        last = pos + old.len();
    }
    push_limited(func, &mut out, &s[last..])?;
    Ok(out)
}

/// Replace's modes, chosen by which arguments are written (validated at parse time).
fn replace(func: Func, args: &[Expr], mut a: Vec<Value>) -> Result<Value, EvalError> {
    let provided = |i: usize| !matches!(args.get(i), None | Some(Expr::Empty));
    let text = |v: &Value| v.as_display();
    let source = std::mem::replace(&mut a[0], Value::Null);
    if provided(2) {
        let re = compile(func, &text(&a[2]))?;
        let group = text(&a[3]);
        if provided(4) {
            let repl = text(&a[4]);
            return map_each(source, |s| {
                if provided(3) {
                    group_replace(func, &re, s, &group, &repl)
                } else {
                    regex_replace(func, &re, s, &repl)
                }
            });
        }
        // regexGroupName + replacementAttributeName: keep a present source, otherwise
        // extract the group from the other attribute.
        if !source.is_null_or_empty() {
            return Ok(source);
        }
        let other = match &a[5] {
            Value::Multi(values) => values.first().cloned(),
            v => v.text(),
        };
        let extracted = other.and_then(|o| {
            re.captures(&o)
                .and_then(|c| c.name(&group).map(|m| m.as_str().to_string()))
        });
        return Ok(extracted.map_or(Value::Null, Value::Str));
    }
    let old = text(&a[1]);
    if provided(6) {
        let template = text(&a[6]);
        return map_each(source, |s| literal_replace(func, &template, &old, s));
    }
    let new = text(&a[4]);
    map_each(source, |s| literal_replace(func, s, &old, &new))
}

struct Role {
    display: String,
    value: String,
}

impl Role {
    /// The SCIM `roles` element Entra sends for AppRoleAssignmentsComplex.
    fn scim_json(&self) -> String {
        serde_json::json!({
            "primary": false,
            "type": "WindowsAzureActiveDirectoryRole",
            "display": self.display,
            "value": self.value,
        })
        .to_string()
    }
}

/// Reads `[appRoleAssignments]`: each value is a role name, or a JSON object with `value`
/// and/or `displayName` (`display` is accepted too), or a JSON array of those.
fn app_roles(func: Func, v: &Value) -> Result<Vec<Role>, EvalError> {
    let items = match v {
        Value::Null => vec![],
        Value::Multi(values) => values.clone(),
        other => vec![other.as_display()],
    };
    let mut roles = Vec::new();
    for item in items {
        let t = item.trim();
        if t.is_empty() {
            continue;
        }
        if !(t.starts_with('{') || t.starts_with('[')) {
            roles.push(Role {
                display: t.to_string(),
                value: t.to_string(),
            });
            continue;
        }
        let json: serde_json::Value = serde_json::from_str(t).map_err(|e| {
            invalid(
                func,
                format!("appRoleAssignments value is not valid JSON: {e}"),
            )
        })?;
        let elements = match json {
            serde_json::Value::Array(a) => a,
            other => vec![other],
        };
        for element in elements {
            roles.push(role_from_json(func, &element)?);
        }
    }
    Ok(roles)
}

fn role_from_json(func: Func, j: &serde_json::Value) -> Result<Role, EvalError> {
    if let Some(s) = j.as_str() {
        return Ok(Role {
            display: s.to_string(),
            value: s.to_string(),
        });
    }
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| j.get(*n).and_then(serde_json::Value::as_str))
            .map(str::to_string)
    };
    let value = field(&["value", "appRoleValue"]);
    let display = field(&["displayName", "display"]);
    match (value, display) {
        (Some(value), Some(display)) => Ok(Role { display, value }),
        (Some(v), None) | (None, Some(v)) => Ok(Role {
            display: v.clone(),
            value: v,
        }),
        (None, None) => Err(invalid(
            func,
            "an appRoleAssignments object has neither \"value\" nor \"displayName\"",
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn dotnet_replacement_patterns() {
        let re = Regex::new(r"(?<first>\w+) (?<second>\w+)").unwrap();
        let input = "ada lovelace!";
        let caps = re.captures(input).unwrap();
        let cases = [
            ("${second}, ${first}", "lovelace, ada"),
            ("$2 $1", "lovelace ada"),
            ("$$1", "$1"),
            ("[$&]", "[ada lovelace]"),
            ("$`|$'", "|!"),
            ("$+", "lovelace"),
            ("$_", "ada lovelace!"),
            ("$9 ${nope} ${0}", "$9 ${nope} ada lovelace"),
            ("$10", "ada0"),
            ("cost: $", "cost: $"),
            ("${unclosed", "${unclosed"),
        ];
        for (repl, want) in cases {
            let mut out = String::new();
            expand(&re, &caps, input, repl, &mut out);
            assert_eq!(out, want, "{repl}");
        }
    }
}
