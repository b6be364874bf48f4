//! Dates: .NET custom and standard format strings (invariant culture) for parsing and
//! printing, the lenient parser behind CDate, Active Directory ticks, DateAdd and DateDiff.
//!
//! Every date is UTC. A source string with an offset is converted to UTC, as the provisioning
//! service (whose local time zone is UTC) does; a string without one is taken as UTC.

use chrono::{
    DateTime, Datelike, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Timelike, Utc,
    Weekday,
};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// The format Entra prints dates in: `M/d/yyyy h:mm:ss tt`.
pub(crate) const DISPLAY_FORMAT: &str = "M/d/yyyy h:mm:ss tt";

pub(crate) fn display(dt: &DateTime<Utc>) -> String {
    // DISPLAY_FORMAT only uses specifiers that cannot fail.
    format(dt, DISPLAY_FORMAT).unwrap_or_else(|_| dt.to_rfc3339())
}

#[derive(Clone, Debug, PartialEq)]
enum FmtTok {
    /// A specifier letter and how many times it is repeated (`yyyy` is `('y', 4)`).
    Spec(char, usize),
    /// An unquoted character that is not a specifier.
    Bare(char),
    /// Quoted or backslash-escaped text.
    Lit(String),
}

fn standard_pattern(c: char) -> Option<&'static str> {
    Some(match c {
        'd' => "MM/dd/yyyy",
        'D' => "dddd, dd MMMM yyyy",
        'f' => "dddd, dd MMMM yyyy HH:mm",
        'F' => "dddd, dd MMMM yyyy HH:mm:ss",
        'g' => "MM/dd/yyyy HH:mm",
        'G' => "MM/dd/yyyy HH:mm:ss",
        'M' | 'm' => "MMMM dd",
        'O' | 'o' => "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK",
        'R' | 'r' => "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'",
        's' => "yyyy'-'MM'-'dd'T'HH':'mm':'ss",
        't' => "HH:mm",
        'T' => "HH:mm:ss",
        'u' => "yyyy'-'MM'-'dd HH':'mm':'ss'Z'",
        'U' => "dddd, dd MMMM yyyy HH:mm:ss",
        'Y' | 'y' => "yyyy MMMM",
        _ => return None,
    })
}

fn tokenize_format(format: &str) -> Result<Vec<FmtTok>, String> {
    let mut chars: Vec<char> = format.chars().collect();
    if chars.is_empty() {
        return Err("the format is empty".into());
    }
    if chars.len() == 1 {
        // .NET reads a one-character format as a standard format.
        let pattern = standard_pattern(chars[0])
            .ok_or_else(|| format!("\"{format}\" is not a standard date format"))?;
        chars = pattern.chars().collect();
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            'd' | 'M' | 'y' | 'h' | 'H' | 'm' | 's' | 'f' | 'F' | 't' | 'z' | 'K' | 'g' => {
                let n = chars[i..].iter().take_while(|&&x| x == c).count();
                if matches!(c, 'f' | 'F') && n > 7 {
                    return Err(format!("\"{format}\" has more than 7 '{c}' specifiers"));
                }
                out.push(FmtTok::Spec(c, n));
                i += n;
            }
            '\'' | '"' => {
                let mut lit = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(format!("\"{format}\" has an unclosed quote")),
                        Some(&q) if q == c => break,
                        Some('\\') => {
                            let escaped = chars
                                .get(i + 1)
                                .ok_or_else(|| format!("\"{format}\" ends with '\\'"))?;
                            lit.push(*escaped);
                            i += 2;
                            continue;
                        }
                        Some(&x) => lit.push(x),
                    }
                    i += 1;
                }
                out.push(FmtTok::Lit(lit));
                i += 1;
            }
            '\\' => {
                let escaped = chars
                    .get(i + 1)
                    .ok_or_else(|| format!("\"{format}\" ends with '\\'"))?;
                out.push(FmtTok::Lit(escaped.to_string()));
                i += 2;
            }
            '%' => {
                if i + 1 >= chars.len() {
                    return Err(format!("\"{format}\" ends with '%'"));
                }
                i += 1;
            }
            other => {
                out.push(FmtTok::Bare(other));
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Prints `dt` with a .NET date format string, in the invariant culture.
pub(crate) fn format(dt: &DateTime<Utc>, format: &str) -> Result<String, String> {
    let mut out = String::new();
    for tok in tokenize_format(format)? {
        match tok {
            FmtTok::Spec(c, n) => format_spec(dt, c, n, &mut out),
            FmtTok::Bare(c) => out.push(c),
            FmtTok::Lit(s) => out.push_str(&s),
        }
    }
    Ok(out)
}

fn format_spec(dt: &DateTime<Utc>, c: char, n: usize, out: &mut String) {
    let hour12 = match dt.hour() % 12 {
        0 => 12,
        h => h,
    };
    let is_pm = dt.hour() >= 12;
    // Seven digits of fraction: .NET's tick resolution.
    let fraction = format!("{:07}", dt.nanosecond().min(999_999_999) / 100);
    match (c, n) {
        ('d', 1) => out.push_str(&dt.day().to_string()),
        ('d', 2) => out.push_str(&format!("{:02}", dt.day())),
        ('d', 3) => out.push_str(&day_name(dt.weekday())[..3]),
        ('d', _) => out.push_str(day_name(dt.weekday())),
        ('M', 1) => out.push_str(&dt.month().to_string()),
        ('M', 2) => out.push_str(&format!("{:02}", dt.month())),
        ('M', 3) => out.push_str(&MONTHS[dt.month0() as usize][..3]),
        ('M', _) => out.push_str(MONTHS[dt.month0() as usize]),
        ('y', 1) => out.push_str(&(dt.year() % 100).to_string()),
        ('y', 2) => out.push_str(&format!("{:02}", dt.year() % 100)),
        ('y', n) => out.push_str(&format!("{:0n$}", dt.year())),
        ('h', 1) => out.push_str(&hour12.to_string()),
        ('h', _) => out.push_str(&format!("{hour12:02}")),
        ('H', 1) => out.push_str(&dt.hour().to_string()),
        ('H', _) => out.push_str(&format!("{:02}", dt.hour())),
        ('m', 1) => out.push_str(&dt.minute().to_string()),
        ('m', _) => out.push_str(&format!("{:02}", dt.minute())),
        ('s', 1) => out.push_str(&dt.second().to_string()),
        ('s', _) => out.push_str(&format!("{:02}", dt.second())),
        ('f', n) => out.push_str(&fraction[..n]),
        ('F', n) => {
            let digits = fraction[..n].trim_end_matches('0');
            if digits.is_empty() {
                // .NET drops the separator too when an all-zero `F` fraction vanishes.
                if out.ends_with('.') {
                    out.pop();
                }
            } else {
                out.push_str(digits);
            }
        }
        ('t', 1) => out.push(if is_pm { 'P' } else { 'A' }),
        ('t', _) => out.push_str(if is_pm { "PM" } else { "AM" }),
        ('z', 1) => out.push_str("+0"),
        ('z', 2) => out.push_str("+00"),
        ('z', _) => out.push_str("+00:00"),
        ('K', n) => out.push_str(&"Z".repeat(n)),
        ('g', _) => out.push_str("A.D."),
        (other, n) => out.push_str(&other.to_string().repeat(n)),
    }
}

fn day_name(w: Weekday) -> &'static str {
    DAYS[w.num_days_from_sunday() as usize]
}

/// The .NET `DateTimeStyles` flags that change how text is read. The others (`AssumeLocal`,
/// `AdjustToUniversal`, `RoundtripKind`, …) are accepted and have no effect, because every
/// date here is UTC already.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Styles {
    pub(crate) leading_white: bool,
    pub(crate) trailing_white: bool,
    pub(crate) inner_white: bool,
    pub(crate) no_current_date_default: bool,
}

impl Default for Styles {
    /// Entra's default: RoundtripKind, AllowLeadingWhite, AllowTrailingWhite.
    fn default() -> Self {
        Styles {
            leading_white: true,
            trailing_white: true,
            inner_white: false,
            no_current_date_default: false,
        }
    }
}

/// Reads a `DateTimeStyles` value such as `"AllowWhiteSpaces, AdjustToUniversal"`.
pub(crate) fn parse_styles(text: &str) -> Result<Styles, String> {
    let mut styles = Styles {
        leading_white: false,
        trailing_white: false,
        inner_white: false,
        no_current_date_default: false,
    };
    for part in text.split([',', '|']) {
        let name = part.trim();
        let name = name.strip_prefix("DateTimeStyles.").unwrap_or(name);
        match name.to_ascii_lowercase().as_str() {
            "allowleadingwhite" => styles.leading_white = true,
            "allowtrailingwhite" => styles.trailing_white = true,
            "allowinnerwhite" => styles.inner_white = true,
            "allowwhitespaces" => {
                styles.leading_white = true;
                styles.trailing_white = true;
                styles.inner_white = true;
            }
            "nocurrentdatedefault" => styles.no_current_date_default = true,
            "none" | "adjusttouniversal" | "assumelocal" | "assumeuniversal" | "roundtripkind" => {}
            _ => return Err(format!("\"{name}\" is not a DateTimeStyles value")),
        }
    }
    Ok(styles)
}

#[derive(Default)]
struct Fields {
    year: Option<i32>,
    month: Option<u32>,
    day: Option<u32>,
    hour: Option<u32>,
    minute: u32,
    second: u32,
    nanos: u32,
    pm: Option<bool>,
    offset_secs: Option<i32>,
}

struct Cursor<'a> {
    chars: &'a [char],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn digits(&mut self, min: usize, max: usize) -> Option<u32> {
        let n = self.chars[self.pos..]
            .iter()
            .take(max)
            .take_while(|c| c.is_ascii_digit())
            .count();
        if n < min {
            return None;
        }
        let mut value: u32 = 0;
        for c in &self.chars[self.pos..self.pos + n] {
            value = value.checked_mul(10)?.checked_add(c.to_digit(10)?)?;
        }
        self.pos += n;
        Some(value)
    }

    fn skip_white(&mut self) -> usize {
        let n = self.chars[self.pos..]
            .iter()
            .take_while(|c| c.is_whitespace())
            .count();
        self.pos += n;
        n
    }

    fn eat(&mut self, text: &str, ignore_case: bool) -> bool {
        let want: Vec<char> = text.chars().collect();
        let Some(have) = self.chars.get(self.pos..self.pos + want.len()) else {
            return false;
        };
        let same = if ignore_case {
            have.iter()
                .zip(&want)
                .all(|(a, b)| a.to_lowercase().eq(b.to_lowercase()))
        } else {
            have == want.as_slice()
        };
        if same {
            self.pos += want.len();
        }
        same
    }

    /// The index of the first name that matches, longest names tried first so that "June"
    /// is not read as "Jun" followed by a stray "e".
    fn name(&mut self, names: &[&str], abbreviated: bool) -> Option<usize> {
        let mut order: Vec<usize> = (0..names.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(names[i].len()));
        order.into_iter().find(|&i| {
            let name = if abbreviated {
                &names[i][..3]
            } else {
                names[i]
            };
            self.eat(name, true)
        })
    }

    fn offset(&mut self, with_minutes: bool, optional_minutes: bool) -> Option<i32> {
        let sign = match self.peek()? {
            '+' => 1,
            '-' => -1,
            _ => return None,
        };
        self.pos += 1;
        let hours = self.digits(1, 2)?;
        let minutes = if with_minutes || optional_minutes {
            let save = self.pos;
            if self.peek() == Some(':') {
                self.pos += 1;
            }
            match self.digits(2, 2) {
                Some(m) => m,
                None if optional_minutes => {
                    self.pos = save;
                    0
                }
                None => return None,
            }
        } else {
            0
        };
        if hours > 14 || minutes > 59 {
            return None;
        }
        Some(sign * (hours as i32 * 3600 + minutes as i32 * 60))
    }
}

/// Two-digit years: .NET's invariant calendar puts them in 1950–2049.
fn four_digit_year(yy: u32) -> i32 {
    if yy < 50 {
        2000 + yy as i32
    } else {
        1900 + yy as i32
    }
}

/// Reads `input` with a .NET custom or standard format string, like `DateTime.ParseExact`.
pub(crate) fn parse_exact(
    input: &str,
    format: &str,
    styles: Styles,
    today: NaiveDate,
) -> Result<DateTime<Utc>, String> {
    let tokens = tokenize_format(format)?;
    let chars: Vec<char> = input.chars().collect();
    let mut cur = Cursor {
        chars: &chars,
        pos: 0,
    };
    let mismatch = || format!("\"{input}\" does not match the format \"{format}\"");
    if styles.leading_white {
        cur.skip_white();
    }
    let mut f = Fields::default();
    let mut i = 0;
    while i < tokens.len() {
        if styles.inner_white && i > 0 {
            cur.skip_white();
        }
        match &tokens[i] {
            FmtTok::Bare(c) if c.is_whitespace() => {
                if cur.skip_white() == 0 && !styles.inner_white {
                    return Err(mismatch());
                }
            }
            FmtTok::Bare('Z') => {
                if !(cur.eat("Z", true) || cur.eat("GMT", true)) {
                    return Err(mismatch());
                }
                f.offset_secs = Some(0);
            }
            FmtTok::Bare(c) => {
                let c = *c;
                if cur.peek() == Some(c) {
                    cur.pos += 1;
                } else if c == '.' && matches!(tokens.get(i + 1), Some(FmtTok::Spec('F', _))) {
                    // An optional fraction may be absent together with its separator.
                    i += 1;
                } else {
                    return Err(mismatch());
                }
            }
            FmtTok::Lit(s) => {
                if !cur.eat(s, false) {
                    return Err(mismatch());
                }
            }
            FmtTok::Spec(c, n) => parse_spec(&mut cur, &mut f, *c, *n).ok_or_else(mismatch)?,
        }
        i += 1;
    }
    if styles.trailing_white {
        cur.skip_white();
    }
    if cur.pos != chars.len() {
        return Err(mismatch());
    }
    build(f, styles, today).ok_or_else(|| format!("\"{input}\" is not a valid date"))
}

fn parse_spec(cur: &mut Cursor<'_>, f: &mut Fields, c: char, n: usize) -> Option<()> {
    let two = |cur: &mut Cursor<'_>| {
        if n == 1 {
            cur.digits(1, 2)
        } else {
            cur.digits(2, 2)
        }
    };
    match c {
        'd' if n <= 2 => f.day = Some(two(cur)?),
        'd' => {
            cur.name(&DAYS, n == 3)?;
        }
        'M' if n <= 2 => f.month = Some(two(cur)?),
        'M' => f.month = Some(cur.name(&MONTHS, n == 3)? as u32 + 1),
        'y' if n <= 2 => f.year = Some(four_digit_year(two(cur)?)),
        'y' => f.year = Some(i32::try_from(cur.digits(n, n.max(4))?).ok()?),
        'h' | 'H' => f.hour = Some(two(cur)?),
        'm' => f.minute = two(cur)?,
        's' => f.second = two(cur)?,
        'f' | 'F' => {
            let min = if c == 'f' { n } else { 0 };
            let start = cur.pos;
            let value = cur.digits(min, n).unwrap_or(0);
            let len = cur.pos - start;
            if len < min {
                return None;
            }
            f.nanos = value * 10u32.pow(9 - len as u32);
        }
        't' => {
            let pm = if n == 1 {
                if cur.eat("A", true) {
                    false
                } else if cur.eat("P", true) {
                    true
                } else {
                    return None;
                }
            } else if cur.eat("AM", true) {
                false
            } else if cur.eat("PM", true) {
                true
            } else {
                return None;
            };
            f.pm = Some(pm);
        }
        'z' => f.offset_secs = Some(cur.offset(n >= 3, false)?),
        'K' => {
            if cur.eat("Z", true) {
                f.offset_secs = Some(0);
            } else if matches!(cur.peek(), Some('+' | '-')) {
                f.offset_secs = Some(cur.offset(false, true)?);
            }
        }
        'g' => {
            if !(cur.eat("A.D.", true) || cur.eat("AD", true)) {
                return None;
            }
        }
        _ => return None,
    }
    Some(())
}

fn build(f: Fields, styles: Styles, today: NaiveDate) -> Option<DateTime<Utc>> {
    let has_date = f.year.is_some() || f.month.is_some() || f.day.is_some();
    let (year, month, day) = if has_date {
        let default_year = if styles.no_current_date_default {
            1
        } else {
            today.year()
        };
        (
            f.year.unwrap_or(default_year),
            f.month.unwrap_or(1),
            f.day.unwrap_or(1),
        )
    } else if styles.no_current_date_default {
        (1, 1, 1)
    } else {
        (today.year(), today.month(), today.day())
    };
    let mut hour = f.hour.unwrap_or(0);
    match f.pm {
        Some(true) if hour < 12 => hour += 12,
        Some(false) if hour == 12 => hour = 0,
        _ => {}
    }
    let date = NaiveDate::from_ymd_opt(year, month, day)?;
    let time = NaiveTime::from_hms_nano_opt(hour, f.minute, f.second, f.nanos)?;
    let local = NaiveDateTime::new(date, time);
    let utc = local.checked_sub_signed(TimeDelta::seconds(f.offset_secs.unwrap_or(0).into()))?;
    in_range(utc.and_utc())
}

/// .NET dates run from year 1 to 9999; outside that range .NET throws, and so do we.
fn in_range(dt: DateTime<Utc>) -> Option<DateTime<Utc>> {
    (1..=9999).contains(&dt.year()).then_some(dt)
}

/// The forms CDate (and every function given a date as text) accepts, tried in order.
const LENIENT_FORMATS: &[&str] = &[
    "yyyy-MM-dd'T'HH:mm:ss.FFFFFFFK",
    "yyyy-MM-dd'T'HH:mmK",
    "yyyy-MM-dd HH:mm:ss.FFFFFFFK",
    "yyyy-MM-dd HH:mmK",
    "yyyy-MM-ddK",
    "M/d/yyyy h:mm:ss tt",
    "M/d/yyyy h:mm tt",
    "M/d/yyyy H:mm:ss.FFFFFFFK",
    "M/d/yyyy H:mmK",
    "M/d/yyyy",
    "yyyy/M/d H:mm:ss.FFFFFFFK",
    "yyyy/M/d",
    "yyyyMMddHHmmss.FFFFFFFK",
    "yyyyMMddHHmmK",
    "yyyyMMdd",
    "ddd, d MMM yyyy H:mm:ss 'GMT'",
    "ddd, d MMM yyyy H:mm:ss K",
    "d MMMM yyyy",
    "d MMMM yyyy H:mm:ss",
    "MMMM d, yyyy",
    "MMMM d, yyyy h:mm:ss tt",
    "d MMM yyyy",
    "MMM d, yyyy",
];

/// Reads a date written in any common form: ISO 8601 (with or without time and offset, also
/// `2020-03-16-07:00`), `M/d/yyyy h:mm:ss tt` (what date functions print), LDAP generalized
/// time, RFC 1123 and English month names.
pub(crate) fn parse_lenient(input: &str) -> Option<DateTime<Utc>> {
    let styles = Styles {
        inner_white: false,
        ..Styles::default()
    };
    // No format here leaves the date out, so "today" is never used.
    let today = NaiveDate::from_ymd_opt(2000, 1, 1)?;
    LENIENT_FORMATS
        .iter()
        .find_map(|f| parse_exact(input, f, styles, today).ok())
}

fn ad_epoch() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(1601, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .unwrap_or_default()
}

/// Active Directory time: 100-nanosecond ticks since 1601-01-01 UTC.
pub(crate) fn from_ad_ticks(ticks: i64) -> Option<DateTime<Utc>> {
    if ticks < 0 {
        return None;
    }
    let secs = ticks / 10_000_000;
    let nanos = (ticks % 10_000_000) * 100;
    let dt = ad_epoch()
        .checked_add_signed(TimeDelta::try_seconds(secs)?)?
        .checked_add_signed(TimeDelta::nanoseconds(nanos))?;
    in_range(dt)
}

pub(crate) fn to_ad_ticks(dt: &DateTime<Utc>) -> Option<i64> {
    let delta = dt.signed_duration_since(ad_epoch());
    if delta < TimeDelta::zero() {
        return None;
    }
    delta
        .num_seconds()
        .checked_mul(10_000_000)?
        .checked_add(i64::from(delta.subsec_nanos() / 100))
}

const INTERVALS: &str = "one of yyyy, m, d, ww, h, n, s";

/// DateAdd: months and years keep the day of month, clamped to the month's last day, as
/// .NET's AddMonths does.
pub(crate) fn add(interval: &str, n: i64, dt: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let overflow = || format!("adding {n} \"{interval}\" leaves the range of dates");
    let add_months = |months: i64| {
        let m = Months::new(u32::try_from(months.unsigned_abs()).ok()?);
        if months >= 0 {
            dt.checked_add_months(m)
        } else {
            dt.checked_sub_months(m)
        }
    };
    let by = |delta: Option<TimeDelta>| delta.and_then(|d| dt.checked_add_signed(d));
    let result = match interval.to_ascii_lowercase().as_str() {
        "yyyy" => n.checked_mul(12).and_then(add_months),
        "m" => add_months(n),
        "d" => by(TimeDelta::try_days(n)),
        "ww" => by(n.checked_mul(7).and_then(TimeDelta::try_days)),
        "h" => by(TimeDelta::try_hours(n)),
        "n" => by(TimeDelta::try_minutes(n)),
        "s" => by(TimeDelta::try_seconds(n)),
        _ => return Err(format!("interval \"{interval}\" is not {INTERVALS}")),
    };
    result.and_then(in_range).ok_or_else(overflow)
}

/// DateDiff with Visual Basic .NET's rules: years and months count calendar boundaries,
/// `ww` counts Sunday-started weeks, and the other intervals truncate the elapsed time.
pub(crate) fn diff(interval: &str, d1: DateTime<Utc>, d2: DateTime<Utc>) -> Result<i64, String> {
    let elapsed = d2.signed_duration_since(d1);
    Ok(match interval.to_ascii_lowercase().as_str() {
        "yyyy" => i64::from(d2.year() - d1.year()),
        "m" => {
            i64::from(d2.year() - d1.year()) * 12 + i64::from(d2.month()) - i64::from(d1.month())
        }
        "d" => elapsed.num_days(),
        "ww" => {
            let sunday = |d: DateTime<Utc>| {
                d.date_naive() - TimeDelta::days(i64::from(d.weekday().num_days_from_sunday()))
            };
            (sunday(d2) - sunday(d1)).num_days() / 7
        }
        "h" => elapsed.num_hours(),
        "n" => elapsed.num_minutes(),
        "s" => elapsed.num_seconds(),
        _ => return Err(format!("interval \"{interval}\" is not {INTERVALS}")),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests;
