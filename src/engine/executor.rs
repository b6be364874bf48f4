//! The executor: what carrying out operations shares, for users and groups alike: the
//! target's client, the snapshot, the claims that keep two objects off one account, the
//! record, and the writes every path makes (group members, snapshot entries of what the
//! target confirmed, attribute changes as PATCH operations).

use super::matching::Matcher;
use super::record::{modified, Recorder};
use crate::audit::{Action, Kind};
use crate::ids::{ScimId, SourceId};
use crate::mapping::{AttrPath, Desired};
use crate::plan::{self, Change};
use crate::scim::patch::PatchOp;
use crate::scim::{Client, ScimError};
use crate::state::{self, GroupEntry, MatchedBy, Snapshot, UserEntry};
use crate::target::Target;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Users whose manager has no account yet, each with the manager's objectId
/// ([`super::references`]).
pub(crate) type Pending = std::collections::BTreeMap<crate::ids::SourceId, crate::ids::SourceId>;

pub(crate) struct Executor<'a> {
    pub(crate) client: &'a Client,
    pub(crate) snapshot: &'a Snapshot,
    pub(crate) target: &'a Target,
    pub(crate) matcher: Matcher<'a>,
    pub(crate) rec: Recorder,
    /// Which source object each managed SCIM id belongs to, so that two objects never share
    /// one account.
    claims: Mutex<BTreeMap<(Kind, ScimId), SourceId>>,
    /// Decides and finds (matching queries are reads) but writes nothing: `provision --dry-run`.
    pub(crate) dry_run: bool,
    /// `sync --allow-clears`: an adoption clears what the directory has empty at once, rather
    /// than leaving it to the next cycle's plan and its attribute-wipe guard.
    pub(crate) allow_clears: bool,
    /// Users whose manager had no account when the cycle was planned.
    pub(crate) pending: Pending,
}

impl<'a> Executor<'a> {
    pub(crate) fn new(
        client: &'a Client,
        snapshot: &'a Snapshot,
        target: &'a Target,
        rec: Recorder,
    ) -> Executor<'a> {
        Executor {
            client,
            snapshot,
            target,
            matcher: Matcher::new(client, target),
            rec,
            claims: Mutex::new(BTreeMap::new()),
            dry_run: false,
            allow_clears: false,
            pending: Default::default(),
        }
    }

    /// Claims a SCIM id for a source object; false when another object already holds it.
    pub(crate) fn claim(&self, kind: Kind, scim_id: &ScimId, id: &SourceId) -> bool {
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        let owner = claims
            .entry((kind, scim_id.clone()))
            .or_insert_with(|| id.clone());
        owner == id
    }

    /// Sends a group's attribute changes and member additions and removals as the target
    /// takes them, recording each confirmed request in the snapshot.
    pub(crate) async fn patch_members(
        &self,
        id: &SourceId,
        mut entry: GroupEntry,
        desired: &Desired,
        changes: &[Change],
        add: &[(SourceId, ScimId)],
        remove: &[(SourceId, ScimId)],
    ) -> Result<(), ScimError> {
        let source_of: BTreeMap<&ScimId, &SourceId> =
            add.iter().chain(remove).map(|(m, s)| (s, m)).collect();
        let add_ids: Vec<ScimId> = add.iter().map(|(_, s)| s.clone()).collect();
        let remove_ids: Vec<ScimId> = remove.iter().map(|(_, s)| s.clone()).collect();
        let scim_id = entry.scim_id.clone();
        let mut record = |done: crate::scim::members::Confirmed| {
            if done.attrs {
                // What this PATCH did not touch stays as recorded (a clear an adoption left
                // to the plan, say).
                let untouched: Vec<(String, Json)> = entry
                    .attrs
                    .iter()
                    .filter(|(k, _)| !desired.attrs.contains_key(*k))
                    .filter(|(k, _)| !changes.iter().any(|c| &c.path == *k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                entry.attrs = self.confirmed_attrs(desired);
                entry.attrs.extend(untouched);
            }
            for s in &done.added {
                if let Some(m) = source_of.get(s) {
                    entry.members.insert((*m).clone(), s.clone());
                }
            }
            for s in &done.removed {
                if let Some(m) = source_of.get(s) {
                    entry.members.remove(*m);
                }
            }
            entry.changed_at = state::now();
            if let Err(e) = self.snapshot.put_group(id, &entry) {
                tracing::error!(object_id = %id, error = %e, "Could not record a confirmed group change.");
            }
        };
        self.client
            .patch_group(
                &scim_id,
                change_ops(changes),
                &add_ids,
                &remove_ids,
                &mut record,
            )
            .await?;
        let mut detail = Vec::new();
        if !add.is_empty() {
            detail.push(format!("members added: {}", add.len()));
        }
        if !remove.is_empty() {
            detail.push(format!("members removed: {}", remove.len()));
        }
        self.rec.changed(
            Kind::Group,
            id,
            &scim_id,
            Action::Update,
            &detail.join("; "),
            modified(desired, changes),
        );
        Ok(())
    }
}

/// The PATCH operations that carry a list of attribute changes.
pub(crate) fn change_ops(changes: &[Change]) -> Vec<PatchOp> {
    changes
        .iter()
        .filter_map(|c| {
            let path = AttrPath::parse(&c.path).ok()?;
            Some(match &c.new {
                Some(v) => path.patch_set(v.clone(), c.old.as_ref()),
                None => path.patch_remove(c.old.as_ref()),
            })
        })
        .collect()
}

impl Executor<'_> {
    /// The attributes the target holds once it confirmed `desired`: all but those it refuses
    /// (learned during this very call, perhaps), so that the next cycle's plan, which leaves
    /// them out, finds nothing to send.
    pub(crate) fn confirmed_attrs(&self, desired: &Desired) -> BTreeMap<String, Json> {
        let profile = self.client.profile();
        let mut attrs = desired.attrs.clone();
        attrs.retain(|path, _| !profile.refuses(path));
        attrs
    }

    /// The changes the target took: those of attributes it refuses, and clears of those it
    /// refuses to clear (now or before), did not change anything.
    pub(crate) fn applied(&self, changes: &[Change]) -> Vec<Change> {
        let profile = self.client.profile();
        changes
            .iter()
            .filter(|c| !profile.refuses(&c.path))
            .filter(|c| c.new.is_some() || !profile.refuses_removal(&c.path))
            .cloned()
            .collect()
    }

    /// `desired` as a create sends it: every attribute, unless `refused_too` is false, when
    /// the attributes the target refused are left out (a target that refused one in a PATCH
    /// may refuse it on POST as well).
    pub(crate) fn sendable(&self, desired: &Desired, refused_too: bool) -> Desired {
        let profile = self.client.profile();
        let mut d = desired.clone();
        if !refused_too {
            d.attrs.retain(|path, _| !profile.refuses(path));
            d.on_create.retain(|path, _| !profile.refuses(path));
        }
        d
    }

    /// Whether `desired` holds an attribute the target refused.
    pub(crate) fn holds_refused(&self, desired: &Desired) -> bool {
        let profile = self.client.profile();
        desired
            .attrs
            .keys()
            .chain(desired.on_create.keys())
            .any(|path| profile.refuses(path))
    }

    /// A user's snapshot entry after the target confirmed `desired`.
    pub(crate) fn user_entry(
        &self,
        scim_id: ScimId,
        desired: &Desired,
        matched_by: MatchedBy,
    ) -> UserEntry {
        self.user_entry_keeping(scim_id, desired, matched_by, BTreeMap::new())
    }

    /// [`Executor::user_entry`] that also records values the account still holds although
    /// the directory has them empty (clears an adoption left to the plan).
    pub(crate) fn user_entry_keeping(
        &self,
        scim_id: ScimId,
        desired: &Desired,
        matched_by: MatchedBy,
        held: BTreeMap<String, Json>,
    ) -> UserEntry {
        let mut attrs = self.confirmed_attrs(desired);
        attrs.extend(held);
        UserEntry {
            scim_id,
            hash: plan::hash(&attrs),
            active: attrs.get("active") != Some(&Json::Bool(false)),
            attrs,
            deprovisioned: false,
            matched_by,
            changed_at: state::now(),
        }
    }
}
