//! From LDAP entries to source objects: attribute renaming, value decoding and membership.
//!
//! Everything here is pure, over a small [`Entry`] that tests build by hand, so the Active
//! Directory cases (binary GUIDs, disabled accounts, ranged members) are covered without a
//! server.

use super::ad::{self, Range};
use crate::ids::SourceId;
use crate::source::dn::normalize_dn;
use crate::source::{
    compute_soft_deleted, AttrName, AttrValue, Directory, Rejected, SourceGroup, SourceObject,
};
use base64::Engine as _;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::LazyLock;

/// One entry as the server returned it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Entry {
    pub dn: String,
    /// Values by attribute name, compared case-insensitively (a handful per entry, so a list
    /// beats a map). Parts of a ranged attribute are merged into the attribute.
    attrs: Vec<(String, Vec<Vec<u8>>)>,
    /// Ranged attributes whose last part has not been read yet.
    pub pending: Vec<Range>,
}

impl Entry {
    /// An entry from attribute descriptions and their values, in the server's spelling.
    #[cfg(test)]
    pub(crate) fn new<N, V>(dn: &str, attrs: impl IntoIterator<Item = (N, Vec<V>)>) -> Entry
    where
        N: AsRef<str>,
        V: Into<Vec<u8>>,
    {
        let mut e = Entry {
            dn: dn.to_owned(),
            ..Entry::default()
        };
        for (name, values) in attrs {
            e.add(
                name.as_ref().to_owned(),
                values.into_iter().map(Into::into).collect(),
            );
        }
        e
    }

    fn slot(&mut self, name: &str) -> &mut Vec<Vec<u8>> {
        let i = match self
            .attrs
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(i) => i,
            None => {
                self.attrs.push((name.to_owned(), Vec::new()));
                self.attrs.len() - 1
            }
        };
        &mut self.attrs[i].1
    }

    /// Converts what `ldap3` parsed (text and binary values apart) into an entry.
    #[cfg(test)]
    pub(crate) fn from_search(e: ldap3::SearchEntry) -> Entry {
        let text = e
            .attrs
            .into_iter()
            .map(|(n, v)| (n, v.into_iter().map(String::into_bytes).collect::<Vec<_>>()));
        Entry::new(&e.dn, text.chain(e.bin_attrs))
    }

    /// Decodes a search result entry straight from its BER structure, as
    /// [`ldap3::SearchEntry::construct`] does, but without its maps and its copies: the values
    /// are kept as the bytes the server sent. `None` for a structure that is not an entry.
    pub(crate) fn from_result(e: ldap3::ResultEntry) -> Option<Entry> {
        let mut parts = e.0.match_id(4)?.expect_constructed()?.into_iter();
        let dn = String::from_utf8(parts.next()?.expect_primitive()?).ok()?;
        let mut entry = Entry {
            dn,
            ..Entry::default()
        };
        let attrs = parts.next()?.expect_constructed()?;
        entry.attrs.reserve_exact(attrs.len());
        for attr in attrs {
            let mut attr = attr.expect_constructed()?.into_iter();
            let name = String::from_utf8(attr.next()?.expect_primitive()?).ok()?;
            let values = attr
                .next()?
                .expect_constructed()?
                .into_iter()
                .map(|v| v.expect_primitive())
                .collect::<Option<Vec<_>>>()?;
            entry.add(name, values);
        }
        Some(entry)
    }

    /// Adds the values of one attribute description, a ranged one included.
    fn add(&mut self, name: String, values: Vec<Vec<u8>>) {
        match Range::parse(&name) {
            Some(range) => {
                self.slot(&range.attr).extend(values);
                if range.end.is_some() {
                    self.pending.push(range);
                }
            }
            None => match self
                .attrs
                .iter_mut()
                .find(|(n, _)| n.eq_ignore_ascii_case(&name))
            {
                Some((_, slot)) => slot.extend(values),
                None => self.attrs.push((name, values)),
            },
        }
    }

    /// The values of one attribute (case-insensitive); empty when absent.
    pub(crate) fn values(&self, name: &str) -> &[Vec<u8>] {
        self.attrs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .unwrap_or_default()
    }

    /// Appends the values of a later part of a ranged attribute (read by `ranges::complete_ranges`)
    /// and records whether yet another part follows.
    pub(crate) fn absorb(&mut self, part: Entry, attr: &str) {
        let values = part.values(attr).to_vec();
        self.slot(attr).extend(values);
        self.pending.extend(
            part.pending
                .into_iter()
                .filter(|r| r.attr.eq_ignore_ascii_case(attr)),
        );
    }
}

/// Source attribute names and the LDAP attributes they are read from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AttrMap {
    /// (source name, LDAP attribute), in a stable order; `objectId` is always there. The names
    /// are built once and shared by every object read.
    pairs: Vec<(AttrName, String)>,
}

impl AttrMap {
    fn new(defaults: &[(&str, &str)], configured: &BTreeMap<String, String>) -> AttrMap {
        let mut merged: BTreeMap<String, (String, String)> = defaults
            .iter()
            .map(|(n, a)| (n.to_lowercase(), ((*n).to_owned(), (*a).to_owned())))
            .collect();
        for (name, attr) in configured {
            // An empty attribute drops a default (`displayName = ""`).
            if attr.is_empty() {
                merged.remove(&name.to_lowercase());
            } else {
                merged.insert(name.to_lowercase(), (name.clone(), attr.clone()));
            }
        }
        AttrMap {
            pairs: merged
                .into_values()
                .map(|(n, a)| (AttrName::new(&n), a))
                .collect(),
        }
    }

    /// The user attributes: OpenLDAP's `inetOrgPerson` names unless configured otherwise.
    pub(crate) fn users(configured: &BTreeMap<String, String>) -> AttrMap {
        AttrMap::new(
            &[
                ("objectId", "entryUUID"),
                ("mail", "mail"),
                ("givenName", "givenName"),
                ("surname", "sn"),
                ("mailNickname", "uid"),
                ("displayName", "cn"),
            ],
            configured,
        )
    }

    /// The group attributes; `members` is not one of them (see [`Converter::member_attrs`]).
    pub(crate) fn groups(configured: &BTreeMap<String, String>) -> AttrMap {
        let mut configured = configured.clone();
        configured.retain(|k, _| !k.eq_ignore_ascii_case("members"));
        AttrMap::new(
            &[("objectId", "entryUUID"), ("displayName", "cn")],
            &configured,
        )
    }

    /// The LDAP attribute a source attribute is read from.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
            .map(|(_, a)| a.as_str())
    }

    pub(crate) fn object_id(&self) -> &str {
        self.get("objectId").unwrap_or("entryUUID")
    }

    fn ldap_attrs(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(_, a)| a.as_str())
    }
}

/// Turns entries into users and groups, as configured.
#[derive(Debug, Clone)]
pub(crate) struct Converter {
    pub users: AttrMap,
    pub groups: AttrMap,
    /// Attributes holding member DNs: `member` and `uniqueMember` unless
    /// `group_attributes.members` names another. `memberUid` (user names) is always read.
    pub member_attrs: Vec<String>,
}

/// Attributes that are read whatever the mapping says: they decide disabling and membership.
const USER_CONTROL: &str = "userAccountControl";
const USER_NAME: &str = "uid";
const MEMBER_UID: &str = "memberUid";

/// Names the converter adds to every user or group.
static DN: LazyLock<AttrName> = LazyLock::new(|| AttrName::new("dn"));
static ACCOUNT_ENABLED: LazyLock<AttrName> = LazyLock::new(|| AttrName::new("accountEnabled"));

impl Converter {
    pub(crate) fn new(
        users: &BTreeMap<String, String>,
        groups: &BTreeMap<String, String>,
    ) -> Converter {
        let member_attrs = match groups
            .iter()
            .find(|(k, v)| k.eq_ignore_ascii_case("members") && !v.is_empty())
        {
            Some((_, attr)) => vec![attr.clone()],
            None => vec!["member".to_owned(), "uniqueMember".to_owned()],
        };
        Converter {
            users: AttrMap::users(users),
            groups: AttrMap::groups(groups),
            member_attrs,
        }
    }

    /// The attributes to ask for when reading users.
    pub(crate) fn user_attrs(&self) -> Vec<String> {
        dedup(
            self.users
                .ldap_attrs()
                .chain([USER_CONTROL, USER_NAME])
                .map(str::to_owned),
        )
    }

    /// The attributes to ask for when reading groups.
    pub(crate) fn group_attrs(&self) -> Vec<String> {
        dedup(
            self.groups
                .ldap_attrs()
                .map(str::to_owned)
                .chain(self.member_attrs.iter().cloned())
                .chain([MEMBER_UID.to_owned()]),
        )
    }

    fn object(&self, map: &AttrMap, e: &Entry) -> Result<SourceObject, Rejected> {
        let reject = |id: Option<SourceId>, why: String| Rejected {
            id,
            reason: format!("{}: {why}", e.dn),
        };
        let id_attr = map.object_id();
        let id = match e.values(id_attr) {
            [one] => decode(id_attr, one).map_err(|why| reject(None, why))?,
            [] => {
                return Err(reject(
                    None,
                    format!("no {id_attr} (the objectId attribute); the entry is skipped"),
                ))
            }
            many => {
                return Err(reject(
                    None,
                    format!(
                        "{} values of {id_attr} (the objectId attribute); the entry is skipped",
                        many.len()
                    ),
                ))
            }
        };
        if id.trim().is_empty() {
            return Err(reject(None, format!("{id_attr} (the objectId) is empty")));
        }
        let id = SourceId(id);
        let mut o = SourceObject::new(id.clone());
        for (name, attr) in &map.pairs {
            if name.as_str().eq_ignore_ascii_case("objectId") {
                continue;
            }
            let value = match e.values(attr) {
                [] => continue,
                [one] => decode(attr, one).map(AttrValue::Single),
                many => many
                    .iter()
                    .map(|v| decode(attr, v))
                    .collect::<Result<Vec<_>, _>>()
                    .map(AttrValue::Multi),
            };
            o.set_name(name, value.map_err(|why| reject(Some(id.clone()), why))?);
        }
        o.set_name(&DN, AttrValue::Single(e.dn.clone()));
        Ok(o)
    }

    /// One user: its mapped attributes, `dn`, and `accountEnabled` / `IsSoftDeleted` from
    /// Active Directory's `userAccountControl` where the entry has it.
    pub(crate) fn user(&self, e: &Entry) -> Result<SourceObject, Rejected> {
        let mut o = self.object(&self.users, e)?;
        if self.users.get("accountEnabled").is_none() {
            if let [uac] = e.values(USER_CONTROL) {
                let text = String::from_utf8_lossy(uac);
                match ad::account_disabled(&text) {
                    Some(disabled) => o.set_name(
                        &ACCOUNT_ENABLED,
                        AttrValue::Single(if disabled { "False" } else { "True" }.to_owned()),
                    ),
                    None => {
                        return Err(Rejected {
                            id: Some(o.id.clone()),
                            reason: format!(
                                "{}: userAccountControl {text:?} is not a number",
                                e.dn
                            ),
                        })
                    }
                }
            }
        }
        compute_soft_deleted(&mut o);
        Ok(o)
    }

    /// Builds the directory: users, groups with their members resolved to objectIds. A read
    /// where two entries share an objectId fails as a whole, as the JSON source does.
    #[cfg(test)]
    pub(crate) fn directory(
        &self,
        users: &[Entry],
        groups: &[Entry],
    ) -> Result<Directory, DuplicateId> {
        let mut building = self.building();
        building.users(users)?;
        building.finish(groups)
    }

    /// A directory to build page by page: [`Building::users`] for each page of users, as it
    /// arrives, then [`Building::finish`] with the groups.
    pub(crate) fn building(&self) -> Building<'_> {
        Building {
            convert: self,
            dir: Directory::default(),
            seen: HashMap::new(),
            by_dn: HashMap::new(),
            by_uid: HashMap::new(),
        }
    }
}

/// A directory being built. Users are converted as their pages arrive, so that the reader can
/// do it while the server prepares the next page; groups come last, since their members are
/// resolved against every user and group.
///
/// Users and groups are known here by their index: the users' in `dir.users`, then the
/// groups' after them (see [`object_at`]).
pub(crate) struct Building<'c> {
    convert: &'c Converter,
    dir: Directory,
    /// Every objectId so far, with the index of its object.
    seen: HashMap<SourceId, usize>,
    /// Users and groups by normalised DN, users by lower-cased `uid`.
    by_dn: HashMap<String, usize>,
    by_uid: HashMap<String, usize>,
}

/// Two entries of one read share an objectId: the read fails as a whole, as the JSON
/// source's does.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{dn}: objectId {:?} is also the objectId of {other}; every user and group needs a unique objectId", .id.0)]
pub(crate) struct DuplicateId {
    pub dn: String,
    pub id: SourceId,
    pub other: String,
}

impl Building<'_> {
    /// Converts users; two entries with one objectId fail the read.
    pub(crate) fn users(&mut self, users: &[Entry]) -> Result<(), DuplicateId> {
        self.dir.users.reserve(users.len());
        for e in users {
            match self.convert.user(e) {
                Ok(u) => {
                    let index = self.dir.users.len();
                    self.check(&u.id, &e.dn, &[])?;
                    self.seen.insert(u.id.clone(), index);
                    self.by_dn.insert(normalize_dn(&e.dn), index);
                    for uid in e.values(USER_NAME) {
                        self.by_uid
                            .entry(String::from_utf8_lossy(uid).to_lowercase())
                            .or_insert(index);
                    }
                    self.dir.users.push(u);
                }
                Err(r) => reject(&mut self.dir, r),
            }
        }
        Ok(())
    }

    /// Fails where `id` was seen before, naming both entries. `groups`: the groups converted
    /// so far, which are not in the directory yet.
    fn check(
        &self,
        id: &SourceId,
        dn: &str,
        groups: &[(&Entry, SourceObject)],
    ) -> Result<(), DuplicateId> {
        let Some(&first) = self.seen.get(id) else {
            return Ok(());
        };
        let other = object_at(&self.dir.users, groups, first)
            .get_str("dn")
            .unwrap_or("another entry");
        Err(DuplicateId {
            dn: dn.to_owned(),
            id: id.clone(),
            other: other.to_owned(),
        })
    }

    /// Converts the groups, resolves their members and returns the directory.
    pub(crate) fn finish(mut self, groups: &[Entry]) -> Result<Directory, DuplicateId> {
        let convert = self.convert;
        let mut objects = Vec::new();
        for e in groups {
            match convert.object(&convert.groups, e) {
                Ok(g) => {
                    let index = self.dir.users.len() + objects.len();
                    self.check(&g.id, &e.dn, &objects)?;
                    self.seen.insert(g.id.clone(), index);
                    self.by_dn.insert(normalize_dn(&e.dn), index);
                    objects.push((e, g));
                }
                Err(r) => reject(&mut self.dir, r),
            }
        }
        let users = &self.dir.users;
        let mut members_of = Vec::with_capacity(objects.len());
        for (e, _) in &objects {
            let mut members = Vec::new();
            let mut added: BTreeSet<usize> = BTreeSet::new();
            let mut add = |index: usize| {
                if added.insert(index) {
                    members.push(object_at(users, &objects, index).id.clone());
                }
            };
            for attr in &convert.member_attrs {
                for v in e.values(attr) {
                    let value = String::from_utf8_lossy(v);
                    let dn = member_dn(&value);
                    match self.by_dn.get(&normalize_dn(dn)) {
                        Some(&index) => add(index),
                        None => {
                            tracing::debug!(group = %e.dn, member = %dn, "Ignored a member that is not a user or group read from the source.")
                        }
                    }
                }
            }
            for v in e.values(MEMBER_UID) {
                let uid = String::from_utf8_lossy(v);
                match self.by_uid.get(&uid.to_lowercase()) {
                    Some(&index) => add(index),
                    None => {
                        tracing::debug!(group = %e.dn, member_uid = %uid, "Ignored a memberUid that names no user read from the source.")
                    }
                }
            }
            members_of.push(members);
        }
        self.dir.groups = objects
            .into_iter()
            .zip(members_of)
            .map(|((_, object), members)| SourceGroup { object, members })
            .collect();
        Ok(self.dir)
    }
}

/// The user or group at `index`: the users first, then the groups.
fn object_at<'a>(
    users: &'a [SourceObject],
    groups: &'a [(&Entry, SourceObject)],
    index: usize,
) -> &'a SourceObject {
    match index.checked_sub(users.len()) {
        None => &users[index],
        Some(group) => &groups[group].1,
    }
}

fn reject(dir: &mut Directory, r: Rejected) {
    tracing::warn!(reason = %r.reason, "Skipped a directory entry.");
    dir.rejected.push(r);
}

fn dedup(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    items.filter(|a| seen.insert(a.to_lowercase())).collect()
}

/// A `uniqueMember` value may end with an optional UID (`cn=a,dc=x#'0101'B`, RFC 4517's
/// NameAndOptionalUID); only the DN names the member.
fn member_dn(value: &str) -> &str {
    if let Some((dn, uid)) = value.rsplit_once('#') {
        let bits = uid.strip_prefix('\'').and_then(|u| u.strip_suffix("'B"));
        if bits.is_some_and(|b| b.chars().all(|c| c == '0' || c == '1')) {
            return dn;
        }
    }
    value
}

/// One value as text: `objectGUID` and `objectSid` decoded to their canonical strings, other
/// binary values (not UTF-8) in base64, as LDIF shows them.
fn decode(attr: &str, v: &[u8]) -> Result<String, String> {
    if attr.eq_ignore_ascii_case("objectGUID") {
        return ad::guid_string(v)
            .ok_or_else(|| format!("objectGUID is {} bytes, not 16", v.len()));
    }
    if attr.eq_ignore_ascii_case("objectSid") {
        return ad::sid_string(v).ok_or_else(|| "objectSid is not a valid SID".to_owned());
    }
    Ok(match std::str::from_utf8(v) {
        Ok(s) => s.to_owned(),
        Err(_) => base64::engine::general_purpose::STANDARD.encode(v),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openldap() -> Converter {
        Converter::new(&BTreeMap::new(), &BTreeMap::new())
    }

    fn ad() -> Converter {
        let users = [
            ("objectId", "objectGUID"),
            ("userPrincipalName", "userPrincipalName"),
            ("mailNickname", "sAMAccountName"),
            ("onPremisesSecurityIdentifier", "objectSid"),
        ];
        let groups = [("objectId", "objectGUID")];
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect::<BTreeMap<_, _>>()
        };
        Converter::new(&map(&users), &map(&groups))
    }

    fn person(uid: &str, uuid: &str) -> Entry {
        Entry::new(
            &format!("uid={uid},ou=People,dc=example,dc=org"),
            [
                ("entryUUID", vec![uuid.to_owned()]),
                ("uid", vec![uid.to_owned()]),
                ("cn", vec![format!("{uid} cn")]),
                ("sn", vec![format!("{uid} sn")]),
                ("mail", vec![format!("{uid}@example.org")]),
            ],
        )
    }

    fn group(cn: &str, uuid: &str, attr: &str, members: &[&str]) -> Entry {
        Entry::new(
            &format!("cn={cn},ou=Groups,dc=example,dc=org"),
            [
                ("entryUUID", vec![uuid.to_owned()]),
                ("cn", vec![cn.to_owned()]),
                (attr, members.iter().map(|m| (*m).to_owned()).collect()),
            ],
        )
    }

    #[test]
    fn default_names_rename_inetorgperson_attributes() {
        let c = openldap();
        let u = c.user(&person("ada", "u-1")).expect("user");
        assert_eq!(u.id.as_str(), "u-1");
        assert_eq!(u.get_str("mail"), Some("ada@example.org"));
        assert_eq!(u.get_str("surname"), Some("ada sn"));
        assert_eq!(u.get_str("mailNickname"), Some("ada"));
        assert_eq!(u.get_str("displayName"), Some("ada cn"));
        assert_eq!(u.get_str("dn"), Some("uid=ada,ou=People,dc=example,dc=org"));
        assert_eq!(u.get_str("IsSoftDeleted"), Some("False"));
        assert!(!u.has("sn"), "only the renamed attributes are there");
        assert!(!u.has("userPrincipalName"));
        assert_eq!(
            c.user_attrs(),
            [
                "cn",
                "givenName",
                "mail",
                "uid",
                "entryUUID",
                "sn",
                "userAccountControl"
            ]
        );
    }

    #[test]
    fn configured_names_add_to_and_override_the_defaults() {
        let configured: BTreeMap<String, String> = [
            ("surname", "familyName"),
            ("department", "departmentNumber"),
            ("displayName", ""),
        ]
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
        let m = AttrMap::users(&configured);
        assert_eq!(m.get("SURNAME"), Some("familyName"));
        assert_eq!(m.get("department"), Some("departmentNumber"));
        assert_eq!(m.get("displayName"), None, "an empty name drops a default");
        assert_eq!(m.get("mail"), Some("mail"));
    }

    #[test]
    fn multi_valued_attributes_stay_lists() {
        let mut e = person("ada", "u-1");
        e = Entry::new(
            &e.dn,
            [
                ("entryUUID", vec!["u-1".to_owned()]),
                ("mail", vec!["a@x".to_owned(), "b@x".to_owned()]),
            ],
        );
        let u = openldap().user(&e).expect("user");
        assert_eq!(
            u.get("mail"),
            Some(&AttrValue::Multi(vec!["a@x".into(), "b@x".into()]))
        );
    }

    #[test]
    fn an_entry_without_object_id_is_rejected_not_guessed() {
        let e = Entry::new("uid=x,dc=example,dc=org", [("uid", vec!["x"])]);
        let r = openldap().user(&e).expect_err("no entryUUID");
        assert_eq!(r.id, None);
        assert_eq!(
            r.reason,
            "uid=x,dc=example,dc=org: no entryUUID (the objectId attribute); the entry is skipped"
        );
    }

    #[test]
    fn active_directory_guid_sid_and_disabled_account() {
        let guid = [
            0x33u8, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        let mut sid = vec![1u8, 5, 0, 0, 0, 0, 0, 5];
        for sub in [21u32, 1, 2, 3, 1104] {
            sid.extend_from_slice(&sub.to_le_bytes());
        }
        // As ldap3 hands them over: binary values apart from text ones.
        let search = ldap3::SearchEntry {
            dn: "CN=Cad Bane,OU=Hunters,DC=corp,DC=example".into(),
            attrs: [
                (
                    "userPrincipalName".to_owned(),
                    vec!["cad@corp.example".to_owned()],
                ),
                ("sAMAccountName".to_owned(), vec!["cbane".to_owned()]),
                ("userAccountControl".to_owned(), vec!["514".to_owned()]),
            ]
            .into(),
            bin_attrs: [
                ("objectGUID".to_owned(), vec![guid.to_vec()]),
                ("objectSid".to_owned(), vec![sid]),
            ]
            .into(),
        };
        let u = ad().user(&Entry::from_search(search)).expect("user");
        assert_eq!(u.id.as_str(), "00112233-4455-6677-8899-aabbccddeeff");
        assert_eq!(
            u.get_str("onPremisesSecurityIdentifier"),
            Some("S-1-5-21-1-2-3-1104")
        );
        assert_eq!(u.get_str("mailNickname"), Some("cbane"));
        assert_eq!(u.get_str("accountEnabled"), Some("False"));
        assert_eq!(u.get_str("IsSoftDeleted"), Some("True"));

        let enabled = Entry::new(
            "CN=Boba,DC=corp,DC=example",
            [
                ("objectGUID", vec![vec![7u8; 16]]),
                ("userAccountControl", vec![b"512".to_vec()]),
            ],
        );
        let u = ad().user(&enabled).expect("user");
        assert_eq!(u.get_str("IsSoftDeleted"), Some("False"));
        let short = Entry::new("CN=X,DC=corp", [("objectGUID", vec![vec![1u8; 3]])]);
        let r = ad().user(&short).expect_err("bad guid");
        assert!(r.reason.ends_with("objectGUID is 3 bytes, not 16"), "{r:?}");
    }

    #[test]
    fn members_resolve_by_normalised_dn_unique_member_and_member_uid() {
        let c = openldap();
        let users = [
            person("ada", "u-1"),
            person("bob", "u-2"),
            person("cy", "u-3"),
        ];
        let groups = [
            group(
                "Staff",
                "g-1",
                "member",
                &[
                    "UID=Ada, OU=people,DC=Example,DC=org",
                    "cn=Nested,ou=Groups,dc=example,dc=org",
                    "uid=gone,ou=People,dc=example,dc=org",
                ],
            ),
            group(
                "Nested",
                "g-2",
                "uniqueMember",
                &["uid=bob,ou=People,dc=example,dc=org#'0101'B"],
            ),
            group("Posix", "g-3", "memberUid", &["cy", "ADA", "nobody"]),
        ];
        let d = c.directory(&users, &groups).expect("directory");
        let members =
            |i: usize| -> Vec<&str> { d.groups[i].members.iter().map(SourceId::as_str).collect() };
        assert_eq!(
            members(0),
            ["u-1", "g-2"],
            "a nested group is listed by its id"
        );
        assert_eq!(members(1), ["u-2"]);
        assert_eq!(members(2), ["u-3", "u-1"]);
        assert_eq!(
            d.groups[1].object.get_str("dn"),
            Some("cn=Nested,ou=Groups,dc=example,dc=org")
        );
        assert_eq!(d.groups[0].object.get_str("displayName"), Some("Staff"));
    }

    #[test]
    fn a_shared_object_id_fails_the_read() {
        let c = openldap();
        let e = c
            .directory(
                &[person("ada", "same")],
                &[group("G", "same", "member", &[])],
            )
            .expect_err("duplicate");
        assert!(e.to_string().starts_with("cn=G,ou=Groups,dc=example,dc=org: objectId \"same\" is also the objectId of uid=ada"), "{e}");
    }

    #[test]
    fn users_converted_page_by_page_give_the_same_directory() {
        let c = openldap();
        let users = [
            person("ada", "u-1"),
            person("bob", "u-2"),
            person("cy", "u-3"),
        ];
        let groups = [
            group(
                "Staff",
                "g-1",
                "member",
                &[
                    "uid=cy,ou=People,dc=example,dc=org",
                    "cn=Posix,ou=Groups,dc=example,dc=org",
                ],
            ),
            group("Posix", "g-2", "memberUid", &["bob", "ada"]),
        ];
        let mut building = c.building();
        building.users(&users[..2]).expect("first page");
        building.users(&users[2..]).expect("second page");
        let paged = building.finish(&groups).expect("directory");
        let whole = c.directory(&users, &groups).expect("directory");
        assert_eq!(paged.users, whole.users);
        assert_eq!(paged.groups, whole.groups);
        let members: Vec<&str> = paged.groups[0]
            .members
            .iter()
            .map(SourceId::as_str)
            .collect();
        assert_eq!(members, ["u-3", "g-2"]);

        let mut building = c.building();
        building.users(&users[..1]).expect("first page");
        let e = building
            .users(&[person("ada2", "u-1")])
            .expect_err("the objectId of a user on an earlier page");
        assert_eq!(
            e.to_string(),
            "uid=ada2,ou=People,dc=example,dc=org: objectId \"u-1\" is also the objectId of uid=ada,ou=People,dc=example,dc=org; every user and group needs a unique objectId"
        );
    }

    #[test]
    fn ranged_parts_merge_into_the_attribute() {
        let first: Vec<String> = (0..1500).map(|i| format!("cn=u{i},dc=x")).collect();
        let mut e = Entry::new("cn=big,dc=x", [("member;range=0-1499", first)]);
        assert_eq!(e.values("member").len(), 1500);
        assert_eq!(e.pending.len(), 1);
        let r = e.pending.pop().expect("pending");
        assert_eq!(r.next_request().as_deref(), Some("member;range=1500-*"));
        let last = Entry::new(
            "cn=big,dc=x",
            [("member;range=1500-*", vec!["cn=u1500,dc=x"])],
        );
        e.absorb(last, "member");
        assert_eq!(e.values("MEMBER").len(), 1501);
        assert!(e.pending.is_empty());
    }
}
