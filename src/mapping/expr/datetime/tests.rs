use super::*;
use chrono::TimeZone;

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2021, 8, 25).unwrap()
}

#[test]
fn formats_custom_and_standard_patterns() {
    let dt = utc(2015, 1, 23, 10, 53, 47) + TimeDelta::milliseconds(100);
    let cases = [
        ("yyyy-MM-dd", "2015-01-23"),
        ("M/d/yy h:mm:ss tt", "1/23/15 10:53:47 AM"),
        ("dddd, MMMM d", "Friday, January 23"),
        ("ddd MMM", "Fri Jan"),
        ("HH:mm:ss.fff", "10:53:47.100"),
        ("HH:mm:ss.FFF", "10:53:47.1"),
        ("ss.FFFF'x'", "47.1x"),
        ("yyyyMMddHHmmss.fZ", "20150123105347.1Z"),
        ("yyyy-MM-ddzzz", "2015-01-23+00:00"),
        ("yyyy-MM-ddTHH:mm:ssK", "2015-01-23T10:53:47Z"),
        ("'year' yyyy \\y", "year 2015 y"),
        ("%d", "23"),
        ("o", "2015-01-23T10:53:47.1000000Z"),
        ("s", "2015-01-23T10:53:47"),
        ("u", "2015-01-23 10:53:47Z"),
        ("R", "Fri, 23 Jan 2015 10:53:47 GMT"),
        ("d", "01/23/2015"),
        ("D", "Friday, 23 January 2015"),
        ("t", "10:53"),
        ("Y", "2015 January"),
        ("yyyyy", "02015"),
    ];
    for (f, want) in cases {
        assert_eq!(format(&dt, f).unwrap(), want, "{f}");
    }
    let whole = utc(2024, 1, 2, 15, 4, 5);
    assert_eq!(format(&whole, "HH:mm:ss.FFF").unwrap(), "15:04:05");
    assert_eq!(display(&whole), "1/2/2024 3:04:05 PM");
}

#[test]
fn bad_formats_are_errors() {
    for f in ["", "Q", "'abc", "yyyy\\", "%", "ffffffff"] {
        assert!(format(&utc(2020, 1, 1, 0, 0, 0), f).is_err(), "{f}");
    }
}

#[test]
fn parses_exact_formats() {
    let s = Styles::default();
    let cases = [
        (
            "20150123105347.1Z",
            "yyyyMMddHHmmss.fZ",
            utc(2015, 1, 23, 10, 53, 47) + TimeDelta::milliseconds(100),
        ),
        (
            "2020-12-31-08:00",
            "yyyy-MM-ddzzz",
            utc(2020, 12, 31, 8, 0, 0),
        ),
        (
            "12/31/2020 09:05:00 PM",
            "M/d/yyyy hh:mm:ss tt",
            utc(2020, 12, 31, 21, 5, 0),
        ),
        (
            "12/31/2020 12:05:00 AM",
            "M/d/yyyy hh:mm:ss tt",
            utc(2020, 12, 31, 0, 5, 0),
        ),
        ("  2021-06-30  ", "yyyy-MM-dd", utc(2021, 6, 30, 0, 0, 0)),
        ("30 June 2021", "d MMMM yyyy", utc(2021, 6, 30, 0, 0, 0)),
        ("30 jun 21", "d MMM yy", utc(2021, 6, 30, 0, 0, 0)),
        ("1/2/99", "M/d/yy", utc(1999, 1, 2, 0, 0, 0)),
        ("2021-06-30T10:00:00", "s", utc(2021, 6, 30, 10, 0, 0)),
        (
            "2021-06-30T10:00:00.1234567Z",
            "o",
            utc(2021, 6, 30, 10, 0, 0) + TimeDelta::nanoseconds(123_456_700),
        ),
        ("10:30", "HH:mm", utc(2021, 8, 25, 10, 30, 0)),
        (
            "2021-06-30 10:00:00",
            "yyyy-MM-dd HH:mm:ss.FFF",
            utc(2021, 6, 30, 10, 0, 0),
        ),
    ];
    for (input, f, want) in cases {
        assert_eq!(
            parse_exact(input, f, s, today()).unwrap(),
            want,
            "{input} / {f}"
        );
    }
    let no_date = Styles {
        no_current_date_default: true,
        ..s
    };
    assert_eq!(
        parse_exact("10:30", "HH:mm", no_date, today()).unwrap(),
        utc(1, 1, 1, 10, 30, 0)
    );
}

#[test]
fn exact_parse_rejects_mismatches() {
    let s = Styles::default();
    let cases = [
        ("2015-01-23", "yyyyMMdd"),
        ("2015-02-30", "yyyy-MM-dd"),
        ("2015-1-23", "yyyy-MM-dd"),
        ("2015-01-23x", "yyyy-MM-dd"),
        ("2015-01-23 25:00", "yyyy-MM-dd HH:mm"),
        ("abc", "yyyy"),
        ("", "yyyy"),
        ("2015-01-23-25:00", "yyyy-MM-ddzzz"),
    ];
    for (input, f) in cases {
        assert!(parse_exact(input, f, s, today()).is_err(), "{input} / {f}");
    }
    let none = parse_styles("None").unwrap();
    assert!(parse_exact(" 2015", "yyyy", none, today()).is_err());
    let white = parse_styles("AllowWhiteSpaces").unwrap();
    assert!(parse_exact(" 2015 -  01", "yyyy-MM", white, today()).is_ok());
    assert!(parse_styles("Sideways").is_err());
    assert!(
        parse_styles("DateTimeStyles.RoundtripKind, AllowLeadingWhite")
            .unwrap()
            .leading_white
    );
}

#[test]
fn lenient_parse_accepts_common_forms() {
    let cases = [
        ("2020-03-16-07:00", utc(2020, 3, 16, 7, 0, 0)),
        ("2021-06-30+08:00", utc(2021, 6, 29, 16, 0, 0)),
        ("2009-06-15T01:45:30-07:00", utc(2009, 6, 15, 8, 45, 30)),
        (
            "2009-06-15T01:45:30.5Z",
            utc(2009, 6, 15, 1, 45, 30) + TimeDelta::milliseconds(500),
        ),
        ("2009-06-15T01:45", utc(2009, 6, 15, 1, 45, 0)),
        ("2021-08-24", utc(2021, 8, 24, 0, 0, 0)),
        ("2020-12-31 23:59:59-08:00", utc(2021, 1, 1, 7, 59, 59)),
        ("2020-12-31 23:59:59+0530", utc(2020, 12, 31, 18, 29, 59)),
        ("8/25/2021 5:41:18 PM", utc(2021, 8, 25, 17, 41, 18)),
        ("8/25/2021 17:41:18", utc(2021, 8, 25, 17, 41, 18)),
        ("8/25/2021", utc(2021, 8, 25, 0, 0, 0)),
        (
            "20150123105347.1Z",
            utc(2015, 1, 23, 10, 53, 47) + TimeDelta::milliseconds(100),
        ),
        ("20150123105347Z", utc(2015, 1, 23, 10, 53, 47)),
        (
            "Fri, 23 Jan 2015 10:53:47 GMT",
            utc(2015, 1, 23, 10, 53, 47),
        ),
        ("23 January 2015", utc(2015, 1, 23, 0, 0, 0)),
        ("January 23, 2015", utc(2015, 1, 23, 0, 0, 0)),
    ];
    for (input, want) in cases {
        assert_eq!(parse_lenient(input), Some(want), "{input}");
    }
    for bad in ["abc", "", "2021-13-01", "32/1/2020", "2021-06-30+99:00"] {
        assert_eq!(parse_lenient(bad), None, "{bad}");
    }
}

#[test]
fn ad_ticks_round_trip() {
    assert_eq!(
        from_ad_ticks(129_699_324_000_000_000),
        Some(utc(2012, 1, 1, 23, 0, 0))
    );
    assert_eq!(
        to_ad_ticks(&utc(2012, 1, 1, 23, 0, 0)),
        Some(129_699_324_000_000_000)
    );
    assert_eq!(from_ad_ticks(0), Some(utc(1601, 1, 1, 0, 0, 0)));
    assert_eq!(from_ad_ticks(-1), None);
    // accountExpires "never" is past year 9999.
    assert_eq!(from_ad_ticks(i64::MAX), None);
    assert_eq!(to_ad_ticks(&utc(1600, 12, 31, 0, 0, 0)), None);
}

#[test]
fn add_and_diff() {
    let d = utc(2012, 3, 16, 7, 0, 0);
    assert_eq!(add("m", 10, d).unwrap(), utc(2013, 1, 16, 7, 0, 0));
    assert_eq!(
        add("M", -1, utc(2021, 3, 31, 0, 0, 0)).unwrap(),
        utc(2021, 2, 28, 0, 0, 0)
    );
    assert_eq!(
        add("yyyy", 1, utc(2020, 2, 29, 0, 0, 0)).unwrap(),
        utc(2021, 2, 28, 0, 0, 0)
    );
    assert_eq!(add("s", 59, d).unwrap(), utc(2012, 3, 16, 7, 0, 59));
    assert!(add("q", 1, d).is_err());
    assert!(add("yyyy", 8000, d).is_err());
    assert!(add("d", i64::MAX, d).is_err());
    assert!(add("m", i64::MIN, d).is_err());
    let a = utc(2021, 8, 25, 17, 41, 18);
    assert_eq!(diff("d", a, d).unwrap(), -3449);
    assert_eq!(diff("ww", a, d).unwrap(), -493);
    assert_eq!(diff("m", a, d).unwrap(), -113);
    assert_eq!(diff("yyyy", a, d).unwrap(), -9);
    assert_eq!(
        diff("d", utc(2021, 1, 1, 23, 0, 0), utc(2021, 1, 2, 1, 0, 0)).unwrap(),
        0
    );
    assert!(diff("x", a, d).is_err());
}
