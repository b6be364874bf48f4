//! Distinguished names compared as LDAP compares them (RFC 4514), for the LDAP connector's
//! member lists and for groups assigned by DN.

/// Normalises a DN for comparison (RFC 4514): case, spaces around separators, the spelling of
/// escapes (`\,` or `\2C`, a quoted value) and the order of a multi-valued RDN's parts do not
/// matter, while an escaped `,` or `+` inside a value stays part of the value.
pub fn normalize_dn(dn: &str) -> String {
    normalize_plain_dn(dn).unwrap_or_else(|| normalize_any_dn(dn))
}

/// The common case, without escapes, quotes or multi-valued RDNs, in one pass; `None` for any
/// DN that needs [`normalize_any_dn`]. Both give the same result where both apply.
fn normalize_plain_dn(dn: &str) -> Option<String> {
    if dn
        .bytes()
        .any(|b| matches!(b, b'\\' | b'"' | b'+' | b';' | b'<' | b'>'))
    {
        return None;
    }
    let mut out = String::with_capacity(dn.len());
    for (i, rdn) in dn.split(',').enumerate() {
        let (attr, value) = rdn.split_once('=')?;
        if value.contains('=') {
            return None;
        }
        if i > 0 {
            out.push(',');
        }
        push_lowercase(&mut out, attr.trim());
        out.push('=');
        push_lowercase(&mut out, value.trim_matches(' '));
    }
    Some(out)
}

fn push_lowercase(out: &mut String, s: &str) {
    if s.is_ascii() {
        out.extend(s.bytes().map(|b| char::from(b.to_ascii_lowercase())));
    } else {
        out.push_str(&s.to_lowercase());
    }
}

/// Any DN: escapes, quoted values and multi-valued RDNs, parsed as RFC 4514 says.
fn normalize_any_dn(dn: &str) -> String {
    let mut rdns: Vec<Vec<(String, String)>> = Vec::new();
    let mut rdn: Vec<(String, String)> = Vec::new();
    let (mut attr, mut value) = (String::new(), Vec::<u8>::new());
    let mut in_value = false;
    let mut quoted = false;
    // Bytes of the value that are escaped or quoted, so trailing-space trimming keeps them.
    let mut kept = 0;
    let bytes = dn.as_bytes();
    let mut i = 0;
    let finish = |attr: &mut String, value: &mut Vec<u8>, kept: usize| {
        let mut end = value.len();
        while end > kept && value[end - 1] == b' ' {
            end -= 1;
        }
        let v = String::from_utf8_lossy(&value[..end]).to_lowercase();
        let pair = (attr.trim().to_lowercase(), v);
        attr.clear();
        value.clear();
        pair
    };
    while i < bytes.len() {
        let b = bytes[i];
        if !in_value {
            match b {
                b'=' => in_value = true,
                b',' | b';' | b'+' => {
                    // A part without '=': keep it whole so that two such DNs still compare.
                    rdn.push(finish(&mut attr, &mut value, 0));
                    if b != b'+' {
                        rdns.push(std::mem::take(&mut rdn));
                    }
                }
                _ => attr.push(b as char),
            }
            i += 1;
            continue;
        }
        if quoted {
            match b {
                b'"' => quoted = false,
                b'\\' if i + 1 < bytes.len() => {
                    i += 1;
                    value.push(bytes[i]);
                }
                _ => value.push(b),
            }
            kept = value.len();
            i += 1;
            continue;
        }
        match b {
            b'\\' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        value.push(byte);
                        i += 3;
                    }
                    None => {
                        if let Some(&next) = bytes.get(i + 1) {
                            value.push(next);
                        }
                        i += 2;
                    }
                }
                kept = value.len();
            }
            b'"' if value.iter().all(|&c| c == b' ') => {
                value.clear();
                quoted = true;
                i += 1;
            }
            b' ' if value.is_empty() => i += 1,
            b',' | b';' | b'+' => {
                rdn.push(finish(&mut attr, &mut value, kept));
                kept = 0;
                in_value = false;
                if b != b'+' {
                    rdns.push(std::mem::take(&mut rdn));
                }
                i += 1;
            }
            _ => {
                value.push(b);
                i += 1;
            }
        }
    }
    if in_value || !attr.trim().is_empty() {
        rdn.push(finish(&mut attr, &mut value, kept));
    }
    if !rdn.is_empty() {
        rdns.push(rdn);
    }
    rdns.into_iter()
        .map(|mut rdn| {
            rdn.sort();
            rdn.iter()
                .map(|(a, v)| format!("{a}={}", escape_dn_value(v)))
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Escapes the characters that separate DN parts, so that a normalised DN reads one way only.
fn escape_dn_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_compare_regardless_of_case_spaces_and_escape_spelling() {
        let n = normalize_dn;
        assert_eq!(
            n("CN=Ada Lovelace, OU=People,DC=Example,DC=org"),
            "cn=ada lovelace,ou=people,dc=example,dc=org"
        );
        assert_eq!(
            n("cn = Ada Lovelace ,ou=people"),
            n("CN=ada lovelace,OU=People")
        );
        // An escaped comma belongs to the value, however it is spelled.
        assert_eq!(
            n(r"CN=Smith\, John,OU=Staff"),
            n(r"cn=smith\2C john,ou=staff")
        );
        assert_eq!(
            n(r"CN=Smith\, John,OU=Staff"),
            n(r#"cn="Smith, John",ou=staff"#)
        );
        assert_ne!(
            n(r"CN=Smith\, John,OU=Staff"),
            n("CN=Smith,CN=John,OU=Staff")
        );
        // A multi-valued RDN in either order; an escaped trailing space is kept.
        assert_eq!(n("cn=a+uid=b,dc=x"), n("UID=b + CN=a,dc=x"));
        assert_ne!(n(r"cn=a\ ,dc=x"), n("cn=a,dc=x"));
        assert_eq!(n(""), "");
        // The one-pass path agrees with the full parser wherever it applies.
        for dn in [
            "CN=Ada Lovelace, OU=People,DC=Example,DC=org",
            " uid = U0621 , OU=people, DC=Example, DC=Org ",
            "cn=Ünïcode Ÿ,dc=x",
            "cn=,dc=x",
        ] {
            assert_eq!(
                normalize_plain_dn(dn).as_deref(),
                Some(normalize_any_dn(dn).as_str()),
                "{dn}"
            );
        }
        assert_eq!(normalize_plain_dn("cn=a=b,dc=x"), None);
        assert_eq!(normalize_plain_dn(""), None);
    }
}
