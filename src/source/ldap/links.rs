//! References between entries that the directory writes as a DN or a number, resolved once all
//! users are read: a user's `manager` (a DN) and an Active Directory user's primary group
//! (`primaryGroupID`, the RID of a group's `objectSid`).

use super::ad;
use super::entry::Entry;
use crate::source::dn::normalize_dn;
use crate::source::{AttrName, AttrValue, SourceObject};
use std::collections::HashMap;
use std::sync::LazyLock;

/// The source attribute that names a user's manager.
pub(crate) const MANAGER: &str = "manager";
/// Active Directory: the RID of the user's primary group, which that group's `member` omits.
pub(crate) const PRIMARY_GROUP_ID: &str = "primaryGroupID";
/// Active Directory: the binary security identifier of a user or group.
pub(crate) const OBJECT_SID: &str = "objectSid";

static MANAGER_NAME: LazyLock<AttrName> = LazyLock::new(|| AttrName::new(MANAGER));

/// Replaces each user's `manager` DN by the objectId of the user at that DN. `by_dn` gives the
/// index in `users` of each normalised DN (an index past the users is not a user). A manager
/// that is no user read (outside the users' base DN, left out by the filter, deleted) is
/// removed: in the source's view, the user has no manager. Of several DNs, the first that is a
/// user wins.
pub(crate) fn resolve_managers(users: &mut [SourceObject], by_dn: &HashMap<String, usize>) {
    let mut resolved = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let dns = match u.get(MANAGER) {
            None => continue,
            Some(AttrValue::Single(dn)) => std::slice::from_ref(dn),
            Some(AttrValue::Multi(dns)) => dns.as_slice(),
        };
        let manager = dns.iter().find_map(|dn| {
            by_dn
                .get(&normalize_dn(dn))
                .and_then(|&m| users.get(m))
                .map(|m| m.id.0.clone())
        });
        if manager.is_none() {
            tracing::debug!(user = %u.id, manager = ?dns, "Dropped a manager that is not a user read from the source.");
        }
        resolved.push((i, manager));
    }
    for (i, manager) in resolved {
        match manager {
            Some(id) => users[i].set_name(&MANAGER_NAME, AttrValue::Single(id)),
            None => users[i].remove(MANAGER),
        }
    }
}

/// Users by the RID of their primary group, noted while users are read, so that each group
/// read afterwards gets those whose primary group it is as direct members.
#[derive(Debug, Default)]
pub(crate) struct PrimaryGroups {
    /// RID → (index of the user, index in `domains` of the user's domain SID when known).
    by_rid: HashMap<u32, Vec<(usize, Option<u32>)>>,
    /// The domain SIDs seen (`S-1-5-21-a-b-c`): a forest has a handful.
    domains: Vec<String>,
}

impl PrimaryGroups {
    /// Notes the primary group of the user at `index`, where its entry has `primaryGroupID`.
    pub(crate) fn note(&mut self, index: usize, user: &Entry) {
        let [rid] = user.values(PRIMARY_GROUP_ID) else {
            return;
        };
        let Some(rid) = std::str::from_utf8(rid)
            .ok()
            .and_then(|r| r.trim().parse::<u32>().ok())
        else {
            tracing::debug!(user = %user.dn, "Ignored a primaryGroupID that is not a number.");
            return;
        };
        let domain = sid_of(user).map(|(domain, _)| self.domain_index(&domain));
        self.by_rid.entry(rid).or_default().push((index, domain));
    }

    fn domain_index(&mut self, domain: &str) -> u32 {
        let i = match self.domains.iter().position(|d| d == domain) {
            Some(i) => i,
            None => {
                self.domains.push(domain.to_owned());
                self.domains.len() - 1
            }
        };
        u32::try_from(i).unwrap_or(u32::MAX)
    }

    /// The indexes of the users whose primary group is `group`: those whose `primaryGroupID` is
    /// the RID of the group's `objectSid`, in the group's domain where the user's own
    /// `objectSid` says which domain that is. None for a group without `objectSid`.
    pub(crate) fn members_of(&self, group: &Entry) -> Vec<usize> {
        let Some((domain, rid)) = sid_of(group) else {
            return Vec::new();
        };
        let Some(users) = self.by_rid.get(&rid) else {
            return Vec::new();
        };
        let domain = self
            .domains
            .iter()
            .position(|d| *d == domain)
            .and_then(|i| u32::try_from(i).ok());
        users
            .iter()
            .filter(|(_, d)| d.is_none() || *d == domain)
            .map(|&(index, _)| index)
            .collect()
    }
}

/// An entry's `objectSid` split into its domain SID and its RID (the last sub-authority).
fn sid_of(e: &Entry) -> Option<(String, u32)> {
    let [sid] = e.values(OBJECT_SID) else {
        return None;
    };
    let sid = ad::sid_string(sid)?;
    let (domain, rid) = sid.rsplit_once('-')?;
    Some((domain.to_owned(), rid.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SourceId;

    /// The bytes of `S-1-5-21-<domain>-<rid>`, as Active Directory sends `objectSid`.
    fn sid(domain: [u32; 3], rid: u32) -> Vec<u8> {
        let mut raw = vec![1u8, 5, 0, 0, 0, 0, 0, 5];
        for sub in [21, domain[0], domain[1], domain[2], rid] {
            raw.extend_from_slice(&sub.to_le_bytes());
        }
        raw
    }

    fn user(id: &str, manager: Option<AttrValue>) -> SourceObject {
        let mut u = SourceObject::new(SourceId::from(id));
        if let Some(m) = manager {
            u.set("Manager", m);
        }
        u
    }

    #[test]
    fn manager_dns_become_object_ids_or_nothing() {
        let single = |dn: &str| Some(AttrValue::Single(dn.to_owned()));
        let mut users = vec![
            user("boss", None),
            user("ada", single("UID=Boss, OU=People,DC=example,DC=org")),
            user("bob", single("uid=gone,ou=People,dc=example,dc=org")),
            user("cy", single("cn=Staff,ou=Groups,dc=example,dc=org")),
            user(
                "dee",
                Some(AttrValue::Multi(vec![
                    "uid=gone,ou=People,dc=example,dc=org".into(),
                    "uid=boss,ou=People,dc=example,dc=org".into(),
                ])),
            ),
        ];
        let by_dn: HashMap<String, usize> = [
            ("uid=boss,ou=people,dc=example,dc=org".to_owned(), 0),
            ("uid=ada,ou=people,dc=example,dc=org".to_owned(), 1),
            // A group: its index is past the users.
            ("cn=staff,ou=groups,dc=example,dc=org".to_owned(), 7),
        ]
        .into();
        resolve_managers(&mut users, &by_dn);
        let managers: Vec<_> = users.iter().map(|u| u.get(MANAGER).cloned()).collect();
        let boss = Some(AttrValue::Single("boss".into()));
        assert_eq!(managers, [None, boss.clone(), None, None, boss]);
        assert!(!users[2].has("manager"), "an unknown DN is removed");
    }

    fn ad_user(dn: &str, primary: &str, user_sid: Option<Vec<u8>>) -> Entry {
        let mut attrs = vec![(PRIMARY_GROUP_ID, vec![primary.as_bytes().to_vec()])];
        attrs.extend(user_sid.map(|s| (OBJECT_SID, vec![s])));
        Entry::new(dn, attrs)
    }

    #[test]
    fn primary_group_members_share_the_rid_and_the_domain() {
        let corp = [1, 2, 3];
        let other = [9, 9, 9];
        let mut primary = PrimaryGroups::default();
        primary.note(0, &ad_user("CN=Ada", "513", Some(sid(corp, 1104))));
        primary.note(1, &ad_user("CN=Bob", "513", None));
        primary.note(2, &ad_user("CN=Cy", "513", Some(sid(other, 1105))));
        primary.note(3, &ad_user("CN=Dee", "1200", Some(sid(corp, 1106))));
        primary.note(4, &ad_user("CN=Eve", "users", Some(sid(corp, 1107))));
        primary.note(
            5,
            &Entry::new("CN=Fay", [(OBJECT_SID, vec![sid(corp, 1108)])]),
        );
        let group = |rid| Entry::new("CN=G", [(OBJECT_SID, vec![sid(corp, rid)])]);
        // Cy is in another domain; Bob's domain is unknown, so the RID alone decides.
        assert_eq!(primary.members_of(&group(513)), [0, 1]);
        assert_eq!(primary.members_of(&group(1200)), [3]);
        assert_eq!(primary.members_of(&group(514)), Vec::<usize>::new());
        let no_sid = Entry::new("CN=G", [("cn", vec!["G"])]);
        assert_eq!(primary.members_of(&no_sid), Vec::<usize>::new());
        let elsewhere = Entry::new("CN=G", [(OBJECT_SID, vec![sid([5, 5, 5], 513)])]);
        assert_eq!(primary.members_of(&elsewhere), [1]);
    }
}
