//! Active Directory's binary and ranged attributes: `objectGUID`, `objectSid`,
//! `userAccountControl` and `member;range=…` retrieval.

/// `userAccountControl` bit 2 (`ACCOUNTDISABLE`).
const ACCOUNTDISABLE: u32 = 0x2;

/// Decodes `objectGUID`: 16 bytes, the first three fields little-endian as AD stores them, into
/// the canonical string (`7d1c…-…`, lower case, as `Get-ADUser` shows it).
pub(crate) fn guid_string(bytes: &[u8]) -> Option<String> {
    let bytes: [u8; 16] = bytes.try_into().ok()?;
    Some(uuid::Uuid::from_bytes_le(bytes).hyphenated().to_string())
}

/// The 16 bytes of `objectGUID` for a canonical GUID string: the inverse of [`guid_string`].
pub(crate) fn guid_bytes(s: &str) -> Option<[u8; 16]> {
    let u = uuid::Uuid::parse_str(s.trim_matches(|c| c == '{' || c == '}')).ok()?;
    Some(u.to_bytes_le())
}

/// Decodes `objectSid` (revision, sub-authority count, 48-bit big-endian authority, then
/// 32-bit little-endian sub-authorities) into `S-1-5-21-…`.
pub(crate) fn sid_string(bytes: &[u8]) -> Option<String> {
    let (&revision, rest) = bytes.split_first()?;
    let (&count, rest) = rest.split_first()?;
    if rest.len() != 6 + 4 * usize::from(count) {
        return None;
    }
    let authority = rest[..6]
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    let mut out = format!("S-{revision}-{authority}");
    for chunk in rest[6..].chunks_exact(4) {
        let sub = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        out.push_str(&format!("-{sub}"));
    }
    Some(out)
}

/// Whether a `userAccountControl` value marks the account disabled; `None` when it is not a
/// number.
pub(crate) fn account_disabled(user_account_control: &str) -> Option<bool> {
    // The attribute is a signed 32-bit integer; flags above bit 30 make it negative.
    let v = user_account_control.trim();
    let flags = v
        .parse::<u32>()
        .ok()
        .or_else(|| v.parse::<i32>().ok().map(|n| n as u32))?;
    Some(flags & ACCOUNTDISABLE != 0)
}

/// One part of a ranged attribute as AD returns it: `member;range=1500-2999`, or
/// `member;range=3000-*` for the last part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Range {
    /// The attribute without the range option, lower-cased (`member`).
    pub attr: String,
    pub start: u64,
    /// `None` for `*`: this part is the last.
    pub end: Option<u64>,
}

impl Range {
    /// Parses an attribute description with a `range=` option; `None` when there is none.
    pub(crate) fn parse(description: &str) -> Option<Range> {
        let mut attr = Vec::new();
        let mut range = None;
        for (i, part) in description.split(';').enumerate() {
            match part.get(..6) {
                Some(p) if i > 0 && p.eq_ignore_ascii_case("range=") => range = Some(&part[6..]),
                _ => attr.push(part),
            }
        }
        let (start, end) = range?.split_once('-')?;
        Some(Range {
            attr: attr.join(";").to_lowercase(),
            start: start.parse().ok()?,
            end: match end {
                "*" => None,
                n => Some(n.parse().ok()?),
            },
        })
    }

    /// The attribute description that asks for the part after this one.
    pub(crate) fn next_request(&self) -> Option<String> {
        self.end
            .map(|end| format!("{};range={}-*", self.attr, end + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_guid_is_mixed_endian() {
        // The bytes AD returns for {00112233-4455-6677-8899-aabbccddeeff}.
        let raw = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        assert_eq!(
            guid_string(&raw).as_deref(),
            Some("00112233-4455-6677-8899-aabbccddeeff")
        );
        assert_eq!(
            guid_bytes("{00112233-4455-6677-8899-AABBCCDDEEFF}"),
            Some(raw)
        );
        assert_eq!(guid_string(&raw[..15]), None);
    }

    #[test]
    fn object_sid_reads_as_s_1_5_21() {
        // S-1-5-21-3623811015-3361044348-30300820-1013
        let mut raw = vec![1u8, 5, 0, 0, 0, 0, 0, 5];
        for sub in [21u32, 3623811015, 3361044348, 30300820, 1013] {
            raw.extend_from_slice(&sub.to_le_bytes());
        }
        assert_eq!(
            sid_string(&raw).as_deref(),
            Some("S-1-5-21-3623811015-3361044348-30300820-1013")
        );
        assert_eq!(sid_string(&[1, 1, 0, 0, 0, 0, 0, 1]), None, "too short");
        // Well-known: Everyone is S-1-1-0.
        assert_eq!(
            sid_string(&[1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]).as_deref(),
            Some("S-1-1-0")
        );
    }

    #[test]
    fn account_disable_is_bit_two() {
        assert_eq!(account_disabled("512"), Some(false)); // NORMAL_ACCOUNT
        assert_eq!(account_disabled("514"), Some(true)); // NORMAL_ACCOUNT | ACCOUNTDISABLE
        assert_eq!(account_disabled("66050"), Some(true)); // … | DONT_EXPIRE_PASSWORD
        assert_eq!(account_disabled("66048"), Some(false));
        assert_eq!(account_disabled("-2147483646"), Some(true));
        assert_eq!(account_disabled("enabled"), None);
    }

    #[test]
    fn ranges_parse_and_ask_for_the_next_part() {
        let r = Range::parse("member;range=0-1499").expect("ranged");
        assert_eq!(
            r,
            Range {
                attr: "member".into(),
                start: 0,
                end: Some(1499)
            }
        );
        assert_eq!(r.next_request().as_deref(), Some("member;range=1500-*"));
        let last = Range::parse("Member;Range=3000-*").expect("ranged");
        assert_eq!(last.end, None);
        assert_eq!(last.attr, "member");
        assert_eq!(last.next_request(), None);
        assert_eq!(Range::parse("member"), None);
        assert_eq!(Range::parse("member;range=x-1"), None);
    }
}
