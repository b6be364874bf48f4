//! The snapshot: what each target was last confirmed to hold, per source object.
//!
//! An entry is written only after the target confirmed the call, so after a crash at any point
//! the snapshot is a true subset of the target's state. sled lives behind the [`KvTree`] trait
//! so that tests (and later a shared store) can stand in for it.

pub mod dump;
pub mod escrow;
mod fence;
mod kv;
pub mod lease;
pub mod log;
mod owners;
mod pg;
mod pg_tls;
pub mod quarantine;

pub use escrow::EscrowEntry;
use kv::storage;
pub use kv::{KvTree, MemTree, Visit, Visitor};
pub use log::{Log, LogQuery, Retention};
pub use quarantine::Quarantine;

use crate::ids::{ScimId, SourceId, TargetName};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Bumped when the stored layout changes incompatibly.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: the state is locked by another scimsync process (is the daemon running?)")]
    Locked { path: PathBuf },
    #[error("state {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("state: {0}")]
    Storage(String),
    #[error("state: {tree} is written only by the owner of its target, and this process holds no lease on it")]
    NotOwner { tree: String },
    #[error("state: the lease on target {target} (epoch {epoch}) was lost; another instance owns it now, and this one writes nothing more to it")]
    Fenced { target: String, epoch: i64 },
    #[error("state: entry {key:?} in {tree} is unreadable: {message}")]
    Corrupt {
        tree: String,
        key: String,
        message: String,
    },
}

/// How an account came under scimsync's management.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchedBy {
    Created,
    /// Adopted an existing account found by this matching attribute.
    Adopted(String),
}

/// A user as last confirmed by the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserEntry {
    pub scim_id: ScimId,
    /// The attributes last pushed (or found, when adopted), by canonical path.
    pub attrs: BTreeMap<String, Json>,
    /// Hash of `attrs` as mapped: equal hashes mean nothing to send.
    pub hash: String,
    pub active: bool,
    /// True once scimsync deactivated the account because it left scope.
    #[serde(default)]
    pub deprovisioned: bool,
    pub matched_by: MatchedBy,
    pub changed_at: String,
}

/// What a cycle reads of every snapshot user before it knows which ones changed: the account,
/// the hash of what was pushed and whether it was deprovisioned. Decoded from a [`UserEntry`]'s
/// bytes without building its attributes, so a plan holds this for the whole snapshot and
/// decodes a whole entry only where the hash differs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UserSummary {
    pub scim_id: ScimId,
    pub hash: String,
    #[serde(default)]
    pub deprovisioned: bool,
}

impl From<&UserEntry> for UserSummary {
    fn from(e: &UserEntry) -> Self {
        UserSummary {
            scim_id: e.scim_id.clone(),
            hash: e.hash.clone(),
            deprovisioned: e.deprovisioned,
        }
    }
}

/// A group as last confirmed by the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupEntry {
    pub scim_id: ScimId,
    pub attrs: BTreeMap<String, Json>,
    /// Members scimsync added (or found managed), by source id.
    pub members: BTreeMap<SourceId, ScimId>,
    pub matched_by: MatchedBy,
    pub changed_at: String,
}

/// The state directory: one sled database holding every target's snapshot.
pub struct Store {
    db: Option<sled::Db>,
    /// The PostgreSQL state, instead of sled.
    pg: Option<Arc<pg::Pg>>,
    mem: Mutex<BTreeMap<String, Arc<MemTree>>>,
    /// The state directory, for an on-disk store.
    path: Option<PathBuf>,
    /// PostgreSQL: the leases this process holds, by target.
    fences: Mutex<BTreeMap<String, Arc<fence::Fence>>>,
    /// PostgreSQL: held exclusively (`state import`), writes need no lease.
    exclusive: bool,
}

impl Store {
    /// Opens (or creates) the sled database, holding its exclusive lock until dropped. The
    /// directory holds personal data: it is made owner-only (0700, its files 0600) whatever
    /// the umask.
    pub fn open(path: &Path) -> Result<Store, StateError> {
        private_dir(path).map_err(|e| StateError::Open {
            path: path.to_owned(),
            message: format!("cannot create the state directory owner-only: {e}"),
        })?;
        let db = sled::Config::new()
            .path(path)
            .open()
            .map_err(|e| match &e {
                sled::Error::Io(io)
                    if io.kind() == std::io::ErrorKind::WouldBlock
                        || io.to_string().contains("lock") =>
                {
                    StateError::Locked {
                        path: path.to_owned(),
                    }
                }
                _ => StateError::Open {
                    path: path.to_owned(),
                    message: e.to_string(),
                },
            })?;
        let store = Store {
            db: Some(db),
            pg: None,
            mem: Mutex::default(),
            path: Some(path.to_owned()),
            fences: Mutex::default(),
            exclusive: false,
        };
        store.tighten();
        let meta = store.tree("meta")?;
        match meta.get(b"schema_version")? {
            None => meta.insert(b"schema_version", SCHEMA_VERSION.to_string().into_bytes())?,
            Some(v) if v == SCHEMA_VERSION.to_string().as_bytes() => {}
            Some(v) => {
                return Err(StateError::Open {
                    path: path.to_owned(),
                    message: format!(
                        "snapshot schema version {} is not {SCHEMA_VERSION}; this scimsync cannot read it",
                        String::from_utf8_lossy(&v)
                    ),
                })
            }
        }
        Ok(store)
    }

    /// Opens the state `[state]` configures: sled in `path`, or PostgreSQL at `url` (with
    /// `path` still the local directory of the control socket).
    pub fn open_state(state: &crate::config::StateConfig) -> Result<Store, StateError> {
        match state.backend {
            crate::config::StateBackend::Sled => Store::open(&state.path),
            crate::config::StateBackend::Postgres => {
                private_dir(&state.path).map_err(|e| StateError::Open {
                    path: state.path.clone(),
                    message: format!("cannot create the state directory owner-only: {e}"),
                })?;
                Ok(Store {
                    db: None,
                    pg: Some(pg::Pg::connect(state)?),
                    mem: Mutex::default(),
                    path: None,
                    fences: Mutex::default(),
                    exclusive: false,
                })
            }
        }
    }

    /// Opens the state for `state import`: sled as always (its lock is exclusive); PostgreSQL
    /// only while no other process uses it, and then written without leases.
    pub fn open_exclusive(state: &crate::config::StateConfig) -> Result<Store, StateError> {
        let mut store = Store::open_state(state)?;
        if let Some(pg) = &store.pg {
            pg.exclusive(state.url.as_deref().unwrap_or_default())?;
            store.exclusive = true;
        }
        Ok(store)
    }

    /// A store that lives in memory only.
    pub fn in_memory() -> Store {
        Store {
            db: None,
            pg: None,
            mem: Mutex::default(),
            path: None,
            fences: Mutex::default(),
            exclusive: false,
        }
    }

    /// Makes the files sled created so far owner-only (it creates some at flush time).
    fn tighten(&self) {
        if let Some(path) = &self.path {
            if let Err(e) = private_files(path) {
                tracing::warn!(path = %path.display(), error = %e, "Cannot make the state's files owner-only.");
            }
        }
    }

    fn tree(&self, name: &str) -> Result<Arc<dyn KvTree>, StateError> {
        self.tree_of(name, None)
    }

    /// A tree whose writes (on PostgreSQL) are fenced by the lease on `target`, if this process
    /// holds it.
    fn tree_of(&self, name: &str, target: Option<&str>) -> Result<Arc<dyn KvTree>, StateError> {
        if let Some(pg) = &self.pg {
            let guard = match target.and_then(|t| self.fence(t)) {
                _ if self.exclusive => pg::Guard::Free,
                Some(f) => pg::Guard::Fenced(f),
                None => pg::Guard::Refused,
            };
            return Ok(Arc::new(pg::PgTree {
                pg: pg.clone(),
                name: name.to_owned(),
                guard,
            }));
        }
        match &self.db {
            Some(db) => Ok(Arc::new(db.open_tree(name).map_err(storage)?)),
            None => {
                let mut mem = self.mem.lock().unwrap_or_else(|p| p.into_inner());
                let t = mem
                    .entry(name.to_owned())
                    .or_insert_with(|| Arc::new(MemTree(Mutex::default(), name.to_owned())));
                Ok(t.clone())
            }
        }
    }

    /// The names of every tree that holds something, in a stable order.
    pub fn tree_names(&self) -> Result<Vec<String>, StateError> {
        if let Some(pg) = &self.pg {
            return pg.tree_names();
        }
        let mut names: Vec<String> = match &self.db {
            Some(db) => db
                .tree_names()
                .iter()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .filter(|n| n != "__sled__default")
                .collect(),
            None => self
                .mem
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .cloned()
                .collect(),
        };
        names.sort();
        Ok(names)
    }

    /// How many entries the state holds, and the first tree holding one; `None` when it holds
    /// none but its own schema version.
    pub fn entries(&self) -> Result<Option<(usize, String)>, StateError> {
        let mut count = 0;
        let mut first = None;
        for name in self.tree_names()? {
            self.tree(&name)?.for_each(&mut |k, _| {
                if !(name == "meta" && k == b"schema_version") {
                    count += 1;
                    first.get_or_insert_with(|| name.clone());
                }
                Ok(())
            })?;
        }
        Ok(first.map(|t| (count, t)))
    }

    /// The snapshot of one target.
    /// On PostgreSQL its writes are fenced by this process's lease on the target, and refused
    /// without one.
    pub fn snapshot(&self, target: &TargetName) -> Result<Snapshot, StateError> {
        let t = Some(target.0.as_str());
        Ok(Snapshot {
            users: self.tree_of(&format!("users/{target}"), t)?,
            groups: self.tree_of(&format!("groups/{target}"), t)?,
            meta: self.tree_of(&format!("meta/{target}"), t)?,
            escrow: self.tree_of(&format!("escrow/{target}"), t)?,
        })
    }

    /// The provisioning log, shared by every target; to read (on PostgreSQL).
    pub fn log(&self) -> Result<Log, StateError> {
        Ok(Log::new(self.tree("log")?))
    }

    /// The provisioning log as a cycle of `target` writes it: fenced by its lease.
    pub fn log_for(&self, target: &str) -> Result<Log, StateError> {
        Ok(Log::new(self.tree_of("log", Some(target))?))
    }

    /// Writes everything to disk; called at the end of a cycle and at shutdown.
    pub async fn flush(&self) -> Result<(), StateError> {
        if let Some(db) = &self.db {
            db.flush_async().await.map_err(storage)?;
            self.tighten();
        }
        Ok(())
    }
}

/// Creates `path` as an owner-only directory, or makes an existing one owner-only.
fn private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700 | 0o700))?;
    }
    Ok(())
}

/// Every file below `dir` 0600 and every directory 0700 (sockets and links are left alone).
fn private_files(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let want = if kind.is_dir() {
            private_files(&entry.path())?;
            0o700
        } else if kind.is_file() {
            0o600
        } else {
            continue;
        };
        let mode = entry.metadata()?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(want))?;
        }
    }
    Ok(())
}

/// One target's snapshot: users, groups and a few facts about past cycles.
#[derive(Clone)]
pub struct Snapshot {
    users: Arc<dyn KvTree>,
    groups: Arc<dyn KvTree>,
    meta: Arc<dyn KvTree>,
    escrow: Arc<dyn KvTree>,
}

fn decode<T: DeserializeOwned>(tree: &dyn KvTree, k: &[u8], v: &[u8]) -> Result<T, StateError> {
    serde_json::from_slice(v).map_err(|e| StateError::Corrupt {
        tree: tree.name(),
        key: String::from_utf8_lossy(k).into_owned(),
        message: e.to_string(),
    })
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(value).map_err(|e| StateError::Storage(e.to_string()))
}

fn all<T: DeserializeOwned>(tree: &dyn KvTree) -> Result<BTreeMap<SourceId, T>, StateError> {
    let mut out = BTreeMap::new();
    tree.for_each(&mut |k, v| {
        let value = decode(tree, k, v)?;
        out.insert(SourceId(String::from_utf8_lossy(k).into_owned()), value);
        Ok(())
    })?;
    Ok(out)
}

impl Snapshot {
    pub fn users(&self) -> Result<BTreeMap<SourceId, UserEntry>, StateError> {
        all(self.users.as_ref())
    }
    /// Every user's [`UserSummary`], decoded entry by entry.
    pub fn user_summaries(&self) -> Result<BTreeMap<SourceId, UserSummary>, StateError> {
        all(self.users.as_ref())
    }
    pub fn user(&self, id: &SourceId) -> Result<Option<UserEntry>, StateError> {
        self.users
            .get(id.as_str().as_bytes())?
            .map(|v| decode(self.users.as_ref(), id.as_str().as_bytes(), &v))
            .transpose()
    }
    pub fn put_user(&self, id: &SourceId, entry: &UserEntry) -> Result<(), StateError> {
        self.users.insert(id.as_str().as_bytes(), encode(entry)?)
    }
    pub fn remove_user(&self, id: &SourceId) -> Result<(), StateError> {
        self.users.remove(id.as_str().as_bytes())
    }
    pub fn groups(&self) -> Result<BTreeMap<SourceId, GroupEntry>, StateError> {
        all(self.groups.as_ref())
    }
    pub fn group(&self, id: &SourceId) -> Result<Option<GroupEntry>, StateError> {
        self.groups
            .get(id.as_str().as_bytes())?
            .map(|v| decode(self.groups.as_ref(), id.as_str().as_bytes(), &v))
            .transpose()
    }
    /// Every group's SCIM id, entry by entry, without decoding the groups' attributes and
    /// members. (The users' ids come with their [`UserSummary`]s.)
    pub fn group_scim_ids(&self, f: &mut dyn FnMut(SourceId, ScimId)) -> Result<(), StateError> {
        #[derive(Deserialize)]
        struct Id {
            scim_id: ScimId,
        }
        let tree = self.groups.as_ref();
        tree.for_each(&mut |k, v| {
            let Id { scim_id } = decode(tree, k, v)?;
            f(SourceId(String::from_utf8_lossy(k).into_owned()), scim_id);
            Ok(())
        })
    }
    /// How many users and groups the snapshot holds, without decoding them.
    pub fn counts(&self) -> Result<(usize, usize), StateError> {
        let mut counts = (0, 0);
        self.users.for_each(&mut |_, _| {
            counts.0 += 1;
            Ok(())
        })?;
        self.groups.for_each(&mut |_, _| {
            counts.1 += 1;
            Ok(())
        })?;
        Ok(counts)
    }
    /// True when the snapshot holds a user or a group with this source id.
    pub fn holds(&self, id: &SourceId) -> Result<bool, StateError> {
        let key = id.as_str().as_bytes();
        Ok(self.users.get(key)?.is_some() || self.groups.get(key)?.is_some())
    }
    pub fn put_group(&self, id: &SourceId, entry: &GroupEntry) -> Result<(), StateError> {
        self.groups.insert(id.as_str().as_bytes(), encode(entry)?)
    }
    pub fn remove_group(&self, id: &SourceId) -> Result<(), StateError> {
        self.groups.remove(id.as_str().as_bytes())
    }
    pub fn meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StateError> {
        self.meta
            .get(key.as_bytes())?
            .map(|v| decode(self.meta.as_ref(), key.as_bytes(), &v))
            .transpose()
    }
    pub fn set_meta<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StateError> {
        self.meta.insert(key.as_bytes(), encode(value)?)
    }
}

/// The current time as RFC 3339, for `changed_at`.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_state_directory_and_its_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        let dir = tempfile::tempdir().expect("tempdir");
        // An existing directory that others may read is made owner-only too.
        let wide = dir.path().join("wide");
        std::fs::create_dir(&wide).expect("mkdir");
        std::fs::set_permissions(&wide, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for path in [dir.path().join("new/state"), wide] {
            let store = Store::open(&path).expect("open");
            let snap = store.snapshot(&TargetName::from("t")).expect("snapshot");
            snap.put_user(&SourceId::from("u"), &entry("s"))
                .expect("put");
            store.flush().await.expect("flush");
            assert_eq!(mode(&path), 0o700, "{}", path.display());
            for f in std::fs::read_dir(&path).expect("read_dir") {
                let f = f.expect("entry").path();
                let want = if f.is_dir() { 0o700 } else { 0o600 };
                assert_eq!(mode(&f), want, "{}", f.display());
            }
        }
    }

    fn entry(id: &str) -> UserEntry {
        UserEntry {
            scim_id: ScimId::from(id),
            attrs: BTreeMap::new(),
            hash: String::new(),
            active: true,
            deprovisioned: false,
            matched_by: MatchedBy::Adopted("userName".into()),
            changed_at: now(),
        }
    }

    #[test]
    fn sled_round_trip_survives_reopen_and_is_exclusive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = TargetName::from("qlik");
        {
            let store = Store::open(dir.path()).expect("open");
            let snap = store.snapshot(&t).expect("snapshot");
            snap.put_user(&SourceId::from("u1"), &entry("s1"))
                .expect("put");
            assert!(matches!(
                Store::open(dir.path()),
                Err(StateError::Locked { .. })
            ));
        }
        let store = Store::open(dir.path()).expect("reopen");
        let users = store
            .snapshot(&t)
            .expect("snapshot")
            .users()
            .expect("users");
        assert_eq!(
            users.get(&SourceId::from("u1")),
            Some(&entry("s1"))
                .map(|e| UserEntry {
                    changed_at: users[&SourceId::from("u1")].changed_at.clone(),
                    ..e.clone()
                })
                .as_ref()
        );
        assert!(store
            .snapshot(&TargetName::from("other"))
            .expect("s")
            .users()
            .expect("u")
            .is_empty());
    }

    #[test]
    fn in_memory_store_behaves_alike() {
        let store = Store::in_memory();
        let snap = store.snapshot(&TargetName::from("a")).expect("snapshot");
        snap.put_user(&SourceId::from("u1"), &entry("s1"))
            .expect("put");
        assert_eq!(
            store
                .snapshot(&TargetName::from("a"))
                .expect("s")
                .users()
                .expect("u")
                .len(),
            1
        );
        snap.remove_user(&SourceId::from("u1")).expect("remove");
        assert!(snap.users().expect("u").is_empty());
    }
}
