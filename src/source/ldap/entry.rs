//! From LDAP entries to source objects: attribute renaming, value decoding and membership.
//!
//! Everything here is pure, over a small [`Entry`] that tests build by hand, so the Active
//! Directory cases (binary GUIDs, disabled accounts, ranged members) are covered without a
//! server.

use super::ad::{self, Range};
use super::links::{self, PrimaryGroups, OBJECT_SID, PRIMARY_GROUP_ID};
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
                (links::MANAGER, "manager"),
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

/// Attributes that are read whatever the mapping says: they decide disabling and membership
/// (with `primaryGroupID` and `objectSid`, which only Active Directory has; a server ignores
/// an attribute it does not know).
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
                .chain([USER_CONTROL, USER_NAME, PRIMARY_GROUP_ID, OBJECT_SID])
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
                .chain([MEMBER_UID.to_owned(), OBJECT_SID.to_owned()]),
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
            primary: PrimaryGroups::default(),
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
    /// Users by the Active Directory primary group they carry.
    primary: PrimaryGroups,
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
                    self.primary.note(index, e);
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

    /// Resolves the users' managers, converts the groups, resolves their members (Active
    /// Directory's primary group members included) and returns the directory.
    pub(crate) fn finish(mut self, groups: &[Entry]) -> Result<Directory, DuplicateId> {
        // Before the groups join `by_dn`: a manager is a user.
        links::resolve_managers(&mut self.dir.users, &self.by_dn);
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
            for index in self.primary.members_of(e) {
                add(index);
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
mod tests;
