//! One user looked up by a key, for `scimsync expr --user` and on-demand provisioning: one
//! search for the user, and one for the entry its `manager` DN names, so that the user reads as
//! a full read gives it.

use super::entry::{Converter, Entry};
use super::{ad, decode_page, describe, drive, op_error, LdapSource, Session, OPERATION_TIMEOUT};
use crate::source::dn::normalize_dn;
use crate::source::{find_in, guid, AttrValue, Directory, SourceError, SourceObject};
use ldap3::Scope;

/// LDAP result codes that say the manager's DN names no entry.
const NO_SUCH_OBJECT: u32 = 32;
const INVALID_DN_SYNTAX: u32 = 34;

impl LdapSource {
    /// The user whose objectId, mail, userPrincipalName or mailNickname is `key`: one search,
    /// the key escaped for the filter; then its `manager` DN resolved to the manager's objectId.
    pub(super) async fn lookup(&self, key: &str) -> Result<Option<SourceObject>, SourceError> {
        let c = &self.config;
        let filter = format!(
            "(&{}{})",
            parenthesized(c.user_filter()),
            lookup_filter(&self.convert, key)
        );
        let (mut session, conn) = self.connect().await?;
        drive(conn, async {
            session.bind().await?;
            let mut entries = Vec::new();
            session
                .search(
                    "users",
                    "user_filter",
                    c.users_base_dn(),
                    &filter,
                    &self.convert.user_attrs(),
                    |page| {
                        entries.extend(page);
                        Ok(())
                    },
                )
                .await?;
            let mut dir = Directory::default();
            for e in &entries {
                match self.convert.user(e) {
                    Ok(u) => dir.users.push(u),
                    Err(r) => tracing::warn!(reason = %r.reason, "Skipped a directory entry."),
                }
            }
            let mut found = find_in(&dir, key).cloned();
            if let Some(user) = &mut found {
                session.resolve_manager(user).await?;
            }
            session.close().await;
            Ok(found)
        })
        .await
    }
}

impl Session<'_> {
    /// Replaces the user's `manager` DN by the objectId of the user at that DN, as a full read
    /// does: only an entry under the users' base DN that passes the user filter is a user, and
    /// a manager that is none is removed.
    async fn resolve_manager(&mut self, user: &mut SourceObject) -> Result<(), SourceError> {
        let dns = match user.get(super::links::MANAGER) {
            None => return Ok(()),
            Some(AttrValue::Single(dn)) => vec![dn.clone()],
            Some(AttrValue::Multi(dns)) => dns.clone(),
        };
        for dn in &dns {
            if let Some(id) = self.user_at(dn).await? {
                user.set(super::links::MANAGER, AttrValue::Single(id));
                return Ok(());
            }
        }
        tracing::debug!(user = %user.id, manager = ?dns, "Dropped a manager that is not a user read from the source.");
        user.remove(super::links::MANAGER);
        Ok(())
    }

    /// The objectId of the user entry at `dn`; `None` when no such entry is a user the source
    /// reads (outside the users' base DN, left out by the user filter, absent).
    async fn user_at(&mut self, dn: &str) -> Result<Option<String>, SourceError> {
        let source = self.source;
        let c = &source.config;
        if !within(&normalize_dn(dn), &normalize_dn(c.users_base_dn())) {
            return Ok(None);
        }
        let attrs = source.convert.user_attrs();
        let failed =
            |why: String| source.error(format!("reading the manager {dn:?} failed: {why}"));
        let ldap3::SearchResult(page, result) = self
            .ldap
            .with_timeout(OPERATION_TIMEOUT)
            .search(dn, Scope::Base, &parenthesized(c.user_filter()), &attrs)
            .await
            .map_err(|e| failed(op_error(e)))?;
        match result.rc {
            0 => {}
            NO_SUCH_OBJECT | INVALID_DN_SYNTAX => return Ok(None),
            _ => return Err(failed(describe(&result))),
        }
        let entries: Vec<Entry> = decode_page(source, "the manager", dn, page)?;
        Ok(entries
            .first()
            .and_then(|e| source.convert.user(e).ok())
            .map(|u| u.id.0))
    }
}

/// Whether the normalised DN `dn` is `base` or an entry under it.
fn within(dn: &str, base: &str) -> bool {
    if base.is_empty() || dn == base {
        return true;
    }
    let Some(head) = dn.strip_suffix(base).and_then(|h| h.strip_suffix(',')) else {
        return false;
    };
    // A comma escaped in the last value of `head` is part of that value, not a separator.
    let escapes = head.bytes().rev().take_while(|&b| b == b'\\').count();
    escapes % 2 == 0
}

/// The part of a lookup filter that matches `key` against the user's objectId, mail,
/// userPrincipalName and mailNickname attributes.
fn lookup_filter(convert: &Converter, key: &str) -> String {
    let mut clauses = Vec::new();
    let id_attr = convert.users.object_id();
    if id_attr.eq_ignore_ascii_case("objectGUID") {
        // A binary attribute: the filter carries the 16 bytes, each escaped.
        if let Some(bytes) = ad::guid_bytes(key) {
            let escaped: String = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
            clauses.push(format!("(objectGUID={escaped})"));
        }
    } else if id_attr.eq_ignore_ascii_case("entryUUID") {
        // entryUUID only takes UUIDs, in the canonical spelling: another assertion value is an
        // error on some servers, and `{…}` or upper case finds nobody on others.
        if let Some(uuid) = guid(key) {
            clauses.push(format!("(entryUUID={})", uuid.hyphenated()));
        }
    } else {
        clauses.push(format!("({id_attr}={})", ldap3::ldap_escape(key)));
    }
    for name in ["mail", "userPrincipalName", "mailNickname"] {
        if let Some(attr) = convert.users.get(name) {
            let clause = format!("({attr}={})", ldap3::ldap_escape(key));
            if !clauses.contains(&clause) {
                clauses.push(clause);
            }
        }
    }
    if clauses.is_empty() {
        // Nothing can match; keep the filter valid.
        return "(!(objectClass=*))".to_owned();
    }
    format!("(|{})", clauses.concat())
}

fn parenthesized(filter: &str) -> String {
    let f = filter.trim();
    if f.starts_with('(') {
        f.to_owned()
    } else {
        format!("({f})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_filters_escape_the_key() {
        let c = Converter::new(&Default::default(), &Default::default());
        assert_eq!(
            lookup_filter(&c, "ada*)(uid=*"),
            r"(|(mail=ada\2a\29\28uid=\2a)(uid=ada\2a\29\28uid=\2a))"
        );
        assert_eq!(
            lookup_filter(&c, "7d1c9a2e-0000-4000-8000-000000000001"),
            "(|(entryUUID=7d1c9a2e-0000-4000-8000-000000000001)(mail=7d1c9a2e-0000-4000-8000-000000000001)(uid=7d1c9a2e-0000-4000-8000-000000000001))"
        );
        let ad: std::collections::BTreeMap<String, String> = [
            ("objectId", "objectGUID"),
            ("userPrincipalName", "userPrincipalName"),
        ]
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
        let c = Converter::new(&ad, &Default::default());
        let f = lookup_filter(&c, "00112233-4455-6677-8899-aabbccddeeff");
        assert!(
            f.starts_with(r"(|(objectGUID=\33\22\11\00\55\44\77\66\88\99\aa\bb\cc\dd\ee\ff)"),
            "{f}"
        );
        assert!(f.contains("(userPrincipalName=00112233-"), "{f}");
        assert!(ldap3::parse_filter(&f).is_ok(), "{f}");
    }

    #[test]
    fn an_entry_uuid_in_upper_case_or_braced_is_searched_in_its_canonical_spelling() {
        let c = Converter::new(&Default::default(), &Default::default());
        for key in [
            "7D1C9A2E-0000-4000-8000-00000000000A",
            "{7d1c9a2e-0000-4000-8000-00000000000a}",
        ] {
            let f = lookup_filter(&c, key);
            assert!(
                f.starts_with("(|(entryUUID=7d1c9a2e-0000-4000-8000-00000000000a)(mail="),
                "{f}"
            );
            assert!(ldap3::parse_filter(&f).is_ok(), "{f}");
        }
        let ad: std::collections::BTreeMap<String, String> =
            [("objectId".to_owned(), "objectGUID".to_owned())].into();
        let c = Converter::new(&ad, &Default::default());
        let f = lookup_filter(&c, "{00112233-4455-6677-8899-AABBCCDDEEFF}");
        assert!(
            f.starts_with(r"(|(objectGUID=\33\22\11\00\55\44\77\66\88\99\aa\bb\cc\dd\ee\ff)"),
            "{f}"
        );
    }

    #[test]
    fn a_manager_is_looked_up_only_under_the_users_base() {
        let base = normalize_dn("ou=People,dc=example,dc=org");
        let n = |dn: &str| normalize_dn(dn);
        assert!(within(&n("uid=ada,ou=People,dc=example,dc=org"), &base));
        assert!(within(&n("UID=Ada, OU=people,DC=Example,DC=org"), &base));
        assert!(within(
            &n("uid=ada,ou=Team,ou=People,dc=example,dc=org"),
            &base
        ));
        assert!(within(&base, &base));
        assert!(!within(&n("cn=svc,ou=services,dc=example,dc=org"), &base));
        assert!(!within(
            &n("uid=ada,ou=OtherPeople,dc=example,dc=org"),
            &base
        ));
        assert!(!within(&n(r"cn=a\,ou=People,dc=example,dc=org"), &base));
        assert!(within(&n("uid=ada,dc=x"), ""));
    }
}
