//! Text helpers: diacritics folding, .NET-style title casing and culture-aware case mapping.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// Letters of the reference table that have no Unicode decomposition, with their folding.
fn fold_special(c: char) -> Option<&'static str> {
    Some(match c {
        'æ' => "ae",
        'Æ' => "AE",
        'ø' => "oe",
        'Ø' => "OE",
        'œ' => "oe",
        'Œ' => "OE",
        'ß' => "ss",
        'ı' => "i",
        'ł' => "l",
        'Ł' => "L",
        _ => return None,
    })
}

/// NormalizeDiacritics: every Latin letter loses its accents (the reference's table lists
/// letters with up to three marks, such as `ṻ` and `e̊̄`, so marks are dropped after
/// decomposition rather than looked up one precomposed character at a time), and `æ`, `ø`,
/// `œ`, `ß`, `ı`, `ł` become `ae`, `oe`, `oe`, `ss`, `i`, `l`. Marks on non-Latin letters are
/// kept, so `й` stays `й`.
pub(crate) fn normalize_diacritics(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut after_latin = false;
    for c in s.nfd() {
        if is_combining_mark(c) {
            if !after_latin {
                out.push(c);
            }
            continue;
        }
        if let Some(folded) = fold_special(c) {
            out.push_str(folded);
            after_latin = true;
        } else {
            out.push(c);
            after_latin = c.is_ascii_alphabetic();
        }
    }
    out.nfc().collect()
}

/// One-to-one case mapping, as .NET's `ToUpperInvariant`/`ToLowerInvariant` do: a character
/// whose full mapping would change the length (`ß` → `SS`) is left alone.
fn simple(c: char, mapped: impl Iterator<Item = char>) -> char {
    let mut it = mapped;
    match (it.next(), it.next()) {
        (Some(m), None) => m,
        _ => c,
    }
}

fn simple_upper(c: char) -> char {
    simple(c, c.to_uppercase())
}

fn simple_lower(c: char) -> char {
    simple(c, c.to_lowercase())
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Culture {
    Invariant,
    /// Turkish and Azerbaijani map dotted and dotless i differently.
    Turkic,
}

/// Reads an RFC 4646 culture name (`en-US`, `tr-TR`, `ja-JP`); empty means invariant.
pub(crate) fn culture(name: &str) -> Result<Culture, String> {
    let name = name.trim();
    if name.is_empty() {
        return Ok(Culture::Invariant);
    }
    let mut parts = name.split(['-', '_']);
    let language = parts.next().unwrap_or_default();
    let language_ok =
        (2..=3).contains(&language.len()) && language.chars().all(|c| c.is_ascii_alphabetic());
    let rest_ok =
        parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if !language_ok || !rest_ok {
        return Err(format!("\"{name}\" is not a culture name such as en-US"));
    }
    Ok(match language.to_ascii_lowercase().as_str() {
        "tr" | "az" => Culture::Turkic,
        _ => Culture::Invariant,
    })
}

pub(crate) fn to_upper(s: &str, culture: Culture) -> String {
    s.chars()
        .map(|c| match (culture, c) {
            (Culture::Turkic, 'i') => 'İ',
            (Culture::Turkic, 'ı') => 'I',
            _ => simple_upper(c),
        })
        .collect()
}

pub(crate) fn to_lower(s: &str, culture: Culture) -> String {
    s.chars()
        .map(|c| match (culture, c) {
            (Culture::Turkic, 'I') => 'ı',
            (Culture::Turkic, 'İ') => 'i',
            _ => simple_lower(c),
        })
        .collect()
}

/// Title case of a word's first letter; the four Unicode digraphs have a title form that is
/// neither their upper nor their lower case.
fn title(c: char) -> char {
    match c {
        'Ǆ' | 'ǅ' | 'ǆ' => 'ǅ',
        'Ǉ' | 'ǈ' | 'ǉ' => 'ǈ',
        'Ǌ' | 'ǋ' | 'ǌ' => 'ǋ',
        'Ǳ' | 'ǲ' | 'ǳ' => 'ǲ',
        _ => simple_upper(c),
    }
}

fn is_letter(c: char) -> bool {
    c.is_alphabetic() && !is_combining_mark(c)
}

fn is_private_use(c: char) -> bool {
    matches!(u32::from(c), 0xE000..=0xF8FF | 0xF0000..=0xFFFFD | 0x100000..=0x10FFFD)
}

/// .NET `TextInfo.ToTitleCase` word separators: spaces, controls, format characters,
/// punctuation and symbols. Letters, marks, digits and private-use characters continue a word.
fn is_word_separator(c: char) -> bool {
    !(c.is_alphanumeric() || is_combining_mark(c) || is_private_use(c))
}

/// PCase without separators: lower-cases everything, then applies .NET `ToTitleCase`'s word
/// rules (a word starts at a letter and runs on through letters, digits, marks and
/// apostrophes, so `o'neil` becomes `O'neil` and `1st` becomes `1St`, as in .NET).
/// Lower-casing first is what makes `PABLO` become `Pablo`: `ToTitleCase` on its own would
/// keep an all-capitals word as an acronym, and the reference shows it does not.
pub(crate) fn pcase_default(s: &str) -> String {
    let chars: Vec<char> = to_lower(s, Culture::Invariant).chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if !is_letter(c) {
            out.push(c);
            continue;
        }
        out.push(title(c));
        while i < chars.len() {
            let c = chars[i];
            if is_letter(c) || c == '\'' || !is_word_separator(c) {
                out.push(c);
                i += 1;
            } else {
                break;
            }
        }
        if let Some(&sep) = chars.get(i) {
            out.push(sep);
            i += 1;
        }
    }
    out
}

/// PCase with `wordSeparators`: only those characters separate words.
pub(crate) fn pcase_with(s: &str, separators: &str) -> String {
    let mut start = true;
    to_lower(s, Culture::Invariant)
        .chars()
        .map(|c| {
            let out = if start { title(c) } else { c };
            start = separators.contains(c);
            out
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn diacritics_table() {
        // Every row of the reference's table, both columns.
        let rows = [
            ("ä à â ã å á ą ă ā ā́ ā̀ ā̂ ā̃ ǟ ā̈ ǡ a̱ å̄", 'a'),
            ("ç č ć c̄ c̱", 'c'),
            ("ď d̄ ḏ", 'd'),
            ("ë è é ê ę ě ė ē ḗ ḕ ē̂ ē̃ ê̄ e̱ ë̄ e̊̄", 'e'),
            ("ğ ḡ g̱", 'g'),
            ("ï î ì í ı ī ī́ ī̀ ī̂ ī̃ i̱", 'i'),
            ("ľ ł l̄ ḹ ḻ", 'l'),
            ("ñ ń ň n̄ ṉ", 'n'),
            ("ö ò ő õ ô ó ō ṓ ṑ ō̂ ō̃ ȫ ō̈ ǭ ȭ ȱ o̱", 'o'),
            ("ř r̄ ṟ ṝ", 'r'),
            ("š ś ș ş s̄ s̱", 's'),
            ("ť ț t̄ ṯ", 't'),
            ("ü ù û ú ů ű ū ū́ ū̀ ū̂ ū̃ ū̇ ǖ ṻ ṳ̄ u̱", 'u'),
            ("ÿ ý ȳ ȳ́ ȳ̀ ȳ̃ y̱", 'y'),
            ("ź ž ż z̄ ẕ", 'z'),
        ];
        for (lower, base) in rows {
            for letter in lower.split(' ') {
                assert_eq!(normalize_diacritics(letter), base.to_string(), "{letter}");
                let upper = to_upper(letter, Culture::Invariant);
                let want = if letter == "ı" {
                    'I'
                } else {
                    base.to_ascii_uppercase()
                };
                assert_eq!(normalize_diacritics(&upper), want.to_string(), "{upper}");
            }
        }
        for (from, to) in [
            ("æ", "ae"),
            ("ǣ", "ae"),
            ("Æ", "AE"),
            ("Ǣ", "AE"),
            ("ø", "oe"),
            ("ø̄", "oe"),
            ("œ̄", "oe"),
            ("Ø", "OE"),
            ("Ø̄", "OE"),
            ("Œ̄", "OE"),
            ("ß", "ss"),
            ("İ", "I"),
            ("Ł", "L"),
            ("Zoë", "Zoe"),
            ("Jéssica Smith", "Jessica Smith"),
            ("Nguyễn", "Nguyen"),
            ("Йода 日本", "Йода 日本"),
        ] {
            assert_eq!(normalize_diacritics(from), to, "{from}");
        }
    }

    #[test]
    fn case_mapping_follows_culture() {
        assert_eq!(to_upper("istanbul ß", Culture::Invariant), "ISTANBUL ß");
        assert_eq!(to_upper("istanbul", Culture::Turkic), "İSTANBUL");
        assert_eq!(to_lower("ISPARTA", Culture::Turkic), "ısparta");
        assert_eq!(to_lower("ÀÉÎ", Culture::Invariant), "àéî");
        assert_eq!(culture("tr-TR"), Ok(Culture::Turkic));
        assert_eq!(culture("en-US"), Ok(Culture::Invariant));
        assert_eq!(culture("az-Latn-AZ"), Ok(Culture::Turkic));
        assert_eq!(culture(""), Ok(Culture::Invariant));
        assert!(culture("not a culture").is_err());
        assert!(culture("e").is_err());
    }

    #[test]
    fn title_case_rules() {
        let cases = [
            ("PABLO GONSALVES (SECOND)", "Pablo Gonsalves (Second)"),
            ("o'neil mcdonald-smith", "O'neil Mcdonald-Smith"),
            ("hello_world", "Hello_World"),
            ("1st place", "1St Place"),
            ("abc1def ghi", "Abc1def Ghi"),
            ("élan vital", "Élan Vital"),
            ("  two  spaces ", "  Two  Spaces "),
            ("ǆungla", "ǅungla"),
            ("", ""),
        ];
        for (from, to) in cases {
            assert_eq!(pcase_default(from), to, "{from}");
        }
        assert_eq!(pcase_with("PINTO-DE'SILVA", " '-"), "Pinto-De'Silva");
        assert_eq!(pcase_with("ANNE MARIE", "-"), "Anne marie");
    }
}
