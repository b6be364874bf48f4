//! Directory sources: each connector reads users and groups into case-insensitive attribute bags.
//!
//! The same mapping rules serve every connector, so connectors rename their native attributes
//! to the Entra names (`objectId`, `mail`, `givenName`, …) before anything else sees them.

pub mod dn;
pub mod json;
pub mod ldap;

use crate::config::SourceConfig;
use crate::ids::SourceId;
use crate::mapping::expr::{Attributes, Value};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: cannot read the directory: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid {
        path: std::path::PathBuf,
        message: String,
    },
    /// An LDAP read that failed or ended early: unreachable, TLS, bind, a bad filter, a limit.
    #[error("{url}: {message}")]
    Ldap { url: String, message: String },
    #[error("{0}")]
    Unsupported(String),
}

/// One attribute value as a source delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrValue {
    Single(String),
    Multi(Vec<String>),
}

/// The name of an attribute: its key (lower-cased) and the spelling the source gave it.
///
/// Shared: a connector builds the names it renames to once and hands the same ones to every
/// object it reads, so an attribute costs an allocation for its value only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrName(Arc<Name>);

impl AttrName {
    pub fn new(name: &str) -> Self {
        Self(interned(name))
    }

    /// The name as the source spelled it.
    pub fn as_str(&self) -> &str {
        &self.0.spelled
    }
}

/// A user or group from the directory: its immutable id and its attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceObject {
    pub id: SourceId,
    /// Sorted by lower-cased name. A directory holds millions of these, so the attributes are
    /// a sorted vector rather than a map, and their names are shared between objects.
    attrs: Vec<Attr>,
}

#[derive(Debug, Clone, PartialEq)]
struct Attr {
    name: Arc<Name>,
    value: AttrValue,
}

#[derive(Debug, PartialEq, Eq)]
struct Name {
    /// The lower-cased name: the key.
    key: Box<str>,
    /// The name as the source spelled it.
    spelled: Box<str>,
}

thread_local! {
    /// Attribute names seen on this thread, source spelling → (key, name). Directories use a
    /// few dozen names for millions of values; sharing them saves two allocations per value.
    static NAMES: RefCell<HashMap<Box<str>, Arc<Name>>> = RefCell::new(HashMap::new());
}

/// The shared [`Name`] of an attribute. Names beyond the first few thousand are not
/// remembered, so that a source with unbounded attribute names cannot grow the table forever.
fn interned(name: &str) -> Arc<Name> {
    NAMES.with(|names| {
        let mut names = names.borrow_mut();
        if let Some(n) = names.get(name) {
            return n.clone();
        }
        let n = Arc::new(Name {
            key: name.to_lowercase().into(),
            spelled: name.into(),
        });
        if names.len() < 4096 {
            names.insert(name.into(), n.clone());
        }
        n
    })
}

/// Names every object carries, shared by all of them.
static OBJECT_ID: LazyLock<AttrName> = LazyLock::new(|| AttrName::new("objectId"));
static IS_SOFT_DELETED: LazyLock<AttrName> = LazyLock::new(|| AttrName::new("IsSoftDeleted"));

impl SourceObject {
    pub fn new(id: SourceId) -> Self {
        let mut o = Self {
            id: id.clone(),
            attrs: Vec::new(),
        };
        o.set_name(&OBJECT_ID, AttrValue::Single(id.0));
        o
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        self.attrs.binary_search_by(|a| (*a.name.key).cmp(key))
    }

    pub fn set(&mut self, name: &str, value: AttrValue) {
        self.set_name(&AttrName::new(name), value);
    }

    /// [`SourceObject::set`] with a name built beforehand, which allocates nothing for it.
    pub fn set_name(&mut self, name: &AttrName, value: AttrValue) {
        let attr = Attr {
            name: name.0.clone(),
            value,
        };
        match self.position(&attr.name.key) {
            Ok(i) => self.attrs[i] = attr,
            Err(i) => self.attrs.insert(i, attr),
        }
    }

    pub fn get(&self, name: &str) -> Option<&AttrValue> {
        with_key(name, |key| self.position(key).ok()).map(|i| &self.attrs[i].value)
    }

    /// A single-valued attribute as a string (the first value of a multi-valued one).
    pub fn get_str(&self, name: &str) -> Option<&str> {
        match self.get(name)? {
            AttrValue::Single(s) => Some(s),
            AttrValue::Multi(v) => v.first().map(String::as_str),
        }
    }

    pub fn has(&self, name: &str) -> bool {
        with_key(name, |key| self.position(key).is_ok())
    }

    /// Removes an attribute; nothing happens when the object does not have it.
    pub(crate) fn remove(&mut self, name: &str) {
        if let Some(i) = with_key(name, |key| self.position(key).ok()) {
            self.attrs.remove(i);
        }
    }

    /// Gives back the room kept for attributes not added: a directory of a million objects
    /// read attribute by attribute would otherwise keep a third more than it holds.
    pub fn shrink_to_fit(&mut self) {
        self.attrs.shrink_to_fit();
    }

    /// The attributes with their source spelling, in a stable order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &AttrValue)> {
        self.attrs.iter().map(|a| (&*a.name.spelled, &a.value))
    }
}

impl Attributes for SourceObject {
    fn get(&self, name: &str) -> Option<Value> {
        SourceObject::get(self, name).map(|v| match v {
            AttrValue::Single(s) => Value::Str(s.clone()),
            AttrValue::Multi(m) => Value::Multi(m.clone()),
        })
    }
}

/// A group: its attributes and the ids of its direct members (users or groups).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceGroup {
    pub object: SourceObject,
    pub members: Vec<SourceId>,
}

/// One object the source could not use; its id (when known) is protected from deprovisioning.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub id: Option<SourceId>,
    pub reason: String,
}

/// Everything one read of the source returned.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    pub users: Vec<SourceObject>,
    pub groups: Vec<SourceGroup>,
    pub rejected: Vec<Rejected>,
}

/// A directory connector.
#[async_trait::async_trait]
pub trait Source: Send + Sync {
    /// Reads the whole directory. An error means nothing may be planned from this read.
    async fn read(&self) -> Result<Directory, SourceError>;
    /// A short description for messages (`json file /etc/…`).
    fn describe(&self) -> String;

    /// One user by objectId, mail, userPrincipalName or mailNickname (case-insensitive except
    /// the objectId), for on-demand provisioning and `scimsync expr --user`. Connectors that
    /// can query one entry override this; the default reads the whole directory.
    async fn find_user(&self, key: &str) -> Result<Option<SourceObject>, SourceError> {
        let dir = self.read().await?;
        Ok(find_in(&dir, key).cloned())
    }
}

/// Looks a user up in a directory read: by objectId first (see [`find_by_object_id`]), then by
/// mail, userPrincipalName or mailNickname.
pub fn find_in<'a>(dir: &'a Directory, key: &str) -> Option<&'a SourceObject> {
    find_by_object_id(&dir.users, key).or_else(|| {
        dir.users.iter().find(|u| {
            ["mail", "userPrincipalName", "mailNickname"]
                .iter()
                .any(|a| u.get_str(a).is_some_and(|v| v.eq_ignore_ascii_case(key)))
        })
    })
}

/// The user whose objectId is `key`: the same string, or, where `key` is a GUID, the same GUID
/// written in another case, with braces or without hyphens (`{7D1C…}` finds `7d1c…`), since
/// people copy objectGUIDs from tools that print them either way.
pub(crate) fn find_by_object_id<'a>(
    users: &'a [SourceObject],
    key: &str,
) -> Option<&'a SourceObject> {
    users
        .iter()
        .find(|u| u.id.as_str() == key)
        .or_else(|| find_by_guid(users, key))
}

/// The user whose objectId is the GUID `key` spells, however it is spelled; `None` when `key`
/// is not a GUID.
pub(crate) fn find_by_guid<'a>(users: &'a [SourceObject], key: &str) -> Option<&'a SourceObject> {
    let want = guid(key)?;
    users.iter().find(|u| guid(u.id.as_str()) == Some(want))
}

/// `s` read as a GUID: hyphenated or not, in any case, braced or as a `urn:uuid:`.
pub(crate) fn guid(s: &str) -> Option<uuid::Uuid> {
    uuid::Uuid::parse_str(s).ok()
}

/// Builds the running connector from its configuration.
pub fn build(
    config: &SourceConfig,
    max_value_bytes: usize,
) -> Result<Box<dyn Source>, SourceError> {
    let inner: Box<dyn Source> = match config {
        SourceConfig::Json(c) => Box::new(json::JsonSource::new(c.path.clone())),
        SourceConfig::Ldap(c) => Box::new(ldap::LdapSource::new((**c).clone())),
    };
    Ok(Box::new(Bounded {
        inner,
        max: max_value_bytes,
    }))
}

/// A source whose objects are rejected when an attribute value is longer than `max` bytes:
/// the object is left out with the reason (and, being rejected, never deprovisioned for it).
struct Bounded {
    inner: Box<dyn Source>,
    max: usize,
}

#[async_trait::async_trait]
impl Source for Bounded {
    async fn read(&self) -> Result<Directory, SourceError> {
        let mut dir = self.inner.read().await?;
        reject_oversized(&mut dir, self.max);
        Ok(dir)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn find_user(&self, key: &str) -> Result<Option<SourceObject>, SourceError> {
        let found = self.inner.find_user(key).await?;
        Ok(found.filter(|u| oversized(u, self.max).is_none()))
    }
}

/// The first attribute of an object with a value longer than `max` bytes, and its length.
fn oversized(o: &SourceObject, max: usize) -> Option<(String, usize)> {
    o.iter().find_map(|(name, v)| {
        let longest = match v {
            AttrValue::Single(s) => s.len(),
            AttrValue::Multi(m) => m.iter().map(String::len).max().unwrap_or(0),
        };
        (longest > max).then(|| (name.to_owned(), longest))
    })
}

/// Moves the users and groups with an oversized value to the rejected objects.
fn reject_oversized(dir: &mut Directory, max: usize) {
    let mut rejected = Vec::new();
    let mut keep = |o: &SourceObject| match oversized(o, max) {
        None => true,
        Some((name, len)) => {
            rejected.push(Rejected {
                id: Some(o.id.clone()),
                reason: format!(
                    "{}: attribute {name} holds a value of {len} bytes, more than source.max_value_bytes = {max}",
                    crate::text::escape(o.id.as_str())
                ),
            });
            false
        }
    };
    dir.users.retain(|u| keep(u));
    dir.groups.retain(|g| keep(&g.object));
    dir.rejected.extend(rejected);
}

/// Calls `f` with the lower-cased `name`, the key of an attribute: short ASCII names (all the
/// usual ones) are lower-cased on the stack, so a lookup allocates nothing.
fn with_key<T>(name: &str, f: impl FnOnce(&str) -> T) -> T {
    let mut buf = [0u8; 64];
    if name.is_ascii() && name.len() <= buf.len() {
        let key = &mut buf[..name.len()];
        key.copy_from_slice(name.as_bytes());
        key.make_ascii_lowercase();
        if let Ok(key) = std::str::from_utf8(key) {
            return f(key);
        }
    }
    f(&name.to_lowercase())
}

/// Computes `IsSoftDeleted` where the source did not give it: a disabled or deleted account.
pub(crate) fn compute_soft_deleted(o: &mut SourceObject) {
    if o.has("IsSoftDeleted") {
        return;
    }
    let disabled = o
        .get_str("accountEnabled")
        .is_some_and(|v| v.eq_ignore_ascii_case("false"));
    let deleted = o.get_str("deletedDateTime").is_some_and(|v| !v.is_empty());
    let value = if disabled || deleted { "True" } else { "False" };
    o.set_name(&IS_SOFT_DELETED, AttrValue::Single(value.to_owned()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_oversized_value_rejects_only_its_object() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("d.json");
        let big = "x".repeat(70_000);
        let text = format!(
            r#"{{"users": [{{"objectId": "u1", "mail": "a@x"}}, {{"objectId": "u2", "notes": "{big}"}}],
                "groups": [{{"objectId": "g1", "displayName": "G", "members": ["u1", "u2"]}}]}}"#
        );
        std::fs::write(&path, text).expect("write");
        let config = SourceConfig::Json(crate::config::JsonSourceConfig { path });
        let source = build(&config, crate::config::DEFAULT_MAX_VALUE_BYTES).expect("build");
        let read = source.read().await.expect("read");
        assert_eq!(read.users.len(), 1);
        assert_eq!(read.rejected.len(), 1);
        assert_eq!(read.rejected[0].id, Some(SourceId::from("u2")));
        assert_eq!(
            read.rejected[0].reason,
            "u2: attribute notes holds a value of 70000 bytes, more than source.max_value_bytes = 65536"
        );
        assert!(source.find_user("u2").await.expect("find").is_none());
        assert!(source.find_user("u1").await.expect("find").is_some());
    }

    #[test]
    fn an_object_guid_is_found_in_upper_case_braced_or_without_hyphens() {
        let dir = json::parse(
            std::path::Path::new("d.json"),
            br#"{"users": [{"objectId": "u1", "mail": "ada@x"},
                           {"objectId": "00112233-4455-6677-8899-aabbccddeeff", "mail": "bob@x"},
                           {"objectId": "{A0B1C2D3-0000-4000-8000-000000000001}"}],
                 "groups": []}"#,
        )
        .expect("valid");
        let found = |key: &str| find_in(&dir, key).map(|u| u.id.as_str().to_owned());
        let bob = Some("00112233-4455-6677-8899-aabbccddeeff".to_owned());
        assert_eq!(found("00112233-4455-6677-8899-aabbccddeeff"), bob);
        assert_eq!(found("00112233-4455-6677-8899-AABBCCDDEEFF"), bob);
        assert_eq!(found("{00112233-4455-6677-8899-AABBCCDDEEFF}"), bob);
        assert_eq!(found("00112233445566778899aabbccddeeff"), bob);
        // Either side may be the one written differently.
        assert_eq!(
            found("a0b1c2d3-0000-4000-8000-000000000001").as_deref(),
            Some("{A0B1C2D3-0000-4000-8000-000000000001}")
        );
        // An objectId that is not a GUID is compared exactly.
        assert_eq!(found("u1").as_deref(), Some("u1"));
        assert_eq!(found("U1"), None);
        assert_eq!(found("{00112233-4455-6677-8899-aabbccddeef0}"), None);
    }

    #[test]
    fn remove_drops_an_attribute_by_any_case() {
        let mut o = SourceObject::new(SourceId::from("u1"));
        o.set("manager", AttrValue::Single("b".into()));
        o.remove("MANAGER");
        assert!(!o.has("manager"));
        o.remove("manager");
        assert_eq!(o.get_str("objectId"), Some("u1"));
    }
}
