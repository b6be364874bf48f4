//! Carrying the planned, typed operations out against one target: updates, deprovisions and
//! group member changes here; a new object's matching, adoption and creation in [`super::adopt`].
//! Every snapshot write follows a call the target confirmed.

use super::adopt::Subject;
use super::matching::Matcher;
use super::record::{modified, shown_changes, Recorder};
use super::report::Outcome;
use crate::audit::{self, Action, Kind, Status};
use crate::config::DeprovisionMode;
use crate::ids::{ScimId, SourceId};
use crate::mapping::{AttrPath, Desired};
use crate::plan::{self, Change, GroupOp, UserOp};
use crate::scim::patch::{PatchOp, Verb};
use crate::scim::{Client, Endpoint, ScimError};
use crate::state::{self, GroupEntry, MatchedBy, Snapshot, UserEntry, UserSummary};
use crate::target::Target;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::sync::Mutex;

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

    pub(crate) async fn user(&self, op: UserOp) -> Outcome {
        if let UserOp::MatchOrCreate { desired, .. } | UserOp::Update { desired, .. } = &op {
            audit::hide(desired.redacted.iter().filter_map(|p| {
                desired
                    .attrs
                    .get(p)
                    .and_then(Json::as_str)
                    .map(str::to_owned)
            }));
        }
        match op {
            UserOp::MatchOrCreate { id, desired } => {
                self.match_or_create(&id, Subject::User(&desired)).await
            }
            UserOp::Update {
                id,
                scim_id,
                changes,
                desired,
            } => self.update_user(&id, scim_id, &changes, &desired).await,
            UserOp::Deprovision { id, scim_id, mode } => {
                self.deprovision_user(&id, scim_id, mode).await
            }
        }
    }

    pub(crate) async fn group(
        &self,
        op: GroupOp,
        users: &BTreeMap<SourceId, UserSummary>,
    ) -> Outcome {
        match op {
            GroupOp::MatchOrCreate { id, group } => {
                let subject = Subject::Group {
                    group: &group,
                    users,
                };
                self.match_or_create(&id, subject).await
            }
            GroupOp::Update {
                id,
                scim_id,
                changes,
                add,
                remove,
                group,
            } => {
                let add: Vec<(SourceId, ScimId)> = add
                    .iter()
                    .filter_map(|m| users.get(m).map(|e| (m.clone(), e.scim_id.clone())))
                    .collect();
                let entry = match self.snapshot.group(&id) {
                    Ok(Some(entry)) => entry,
                    Ok(None) => return Outcome::Failed("snapshot entry vanished".into()),
                    Err(e) => return e.into(),
                };
                match self
                    .patch_members(&id, entry, &group.desired, &changes, &add, &remove)
                    .await
                {
                    Ok(()) => Outcome::Updated,
                    Err(e) if e.is_not_found() => {
                        // The group was deleted behind our back: forget it and match afresh.
                        if let Err(e) = self.snapshot.remove_group(&id) {
                            return e.into();
                        }
                        let subject = Subject::Group {
                            group: &group,
                            users,
                        };
                        self.match_or_create(&id, subject).await
                    }
                    Err(e) => self.rec.failed(
                        Kind::Group,
                        &id,
                        Some(&scim_id),
                        Action::Update,
                        e,
                        Vec::new(),
                    ),
                }
            }
            GroupOp::Deprovision {
                id,
                scim_id,
                mode,
                members,
            } => self.deprovision_group(&id, scim_id, mode, &members).await,
        }
    }

    async fn update_user(
        &self,
        id: &SourceId,
        scim_id: ScimId,
        changes: &[Change],
        desired: &Desired,
    ) -> Outcome {
        self.rec.step(|s| {
            s.action = Some("update".into());
            s.changes = shown_changes(desired, changes);
        });
        if self.dry_run {
            return Outcome::Updated;
        }
        match self
            .client
            .patch_attrs(Endpoint::Users, &scim_id, change_ops(changes))
            .await
        {
            Ok(_) => {
                let tried = modified(desired, changes);
                self.rec
                    .changed(Kind::User, id, &scim_id, Action::Update, "", tried);
                let matched_by = match self.snapshot.user(id) {
                    Ok(old) => old.map(|e| e.matched_by).unwrap_or(MatchedBy::Created),
                    Err(e) => return e.into(),
                };
                match self
                    .snapshot
                    .put_user(id, &self.user_entry(scim_id, desired, matched_by))
                {
                    Ok(()) => Outcome::Updated,
                    Err(e) => e.into(),
                }
            }
            Err(e) if e.is_not_found() => {
                // The account was deleted behind our back: forget it and match afresh.
                let why = "account gone from the target (404); matching again";
                self.rec.note(
                    Kind::User,
                    id,
                    Some(&scim_id),
                    Action::Other,
                    Status::Warning,
                    why,
                );
                if let Err(e) = self.snapshot.remove_user(id) {
                    return e.into();
                }
                self.match_or_create(id, Subject::User(desired)).await
            }
            Err(e) => {
                let tried = modified(desired, changes);
                self.rec
                    .failed(Kind::User, id, Some(&scim_id), Action::Update, e, tried)
            }
        }
    }

    pub(crate) async fn deprovision_user(
        &self,
        id: &SourceId,
        scim_id: ScimId,
        mode: DeprovisionMode,
    ) -> Outcome {
        let action = match mode {
            DeprovisionMode::Delete => Action::Delete,
            DeprovisionMode::Deactivate => Action::Disable,
        };
        self.rec.step(|s| {
            s.action = Some("deprovision".into());
            s.changes = vec![match mode {
                DeprovisionMode::Deactivate => "active: true -> false".into(),
                DeprovisionMode::Delete => format!("DELETE /Users/{scim_id}"),
            }];
        });
        if self.dry_run {
            return Outcome::Deprovisioned;
        }
        let result = match mode {
            DeprovisionMode::Delete => self.client.delete(Endpoint::Users, &scim_id).await,
            DeprovisionMode::Deactivate => {
                let op = PatchOp::new(Verb::Replace, "active", Some(Json::Bool(false)));
                self.client.patch(Endpoint::Users, &scim_id, &[op]).await
            }
        };
        let gone = match result {
            Ok(()) => false,
            Err(e) if e.is_not_found() => true,
            Err(e) => {
                return self
                    .rec
                    .failed(Kind::User, id, Some(&scim_id), action, e, Vec::new())
            }
        };
        let deactivated = (mode == DeprovisionMode::Deactivate && !gone).then(|| audit::Modified {
            path: "active".into(),
            old: Json::Bool(true),
            new: Json::Bool(false),
        });
        let detail = if gone {
            "already gone from the target"
        } else {
            "left scope"
        };
        self.rec.changed(
            Kind::User,
            id,
            &scim_id,
            action,
            detail,
            deactivated.into_iter().collect(),
        );
        let stored = match (mode, gone, self.snapshot.user(id)) {
            (DeprovisionMode::Deactivate, false, Ok(Some(mut e))) => {
                e.attrs.insert("active".into(), Json::Bool(false));
                e.hash = plan::hash(&e.attrs);
                e.active = false;
                e.deprovisioned = true;
                e.changed_at = state::now();
                self.snapshot.put_user(id, &e)
            }
            _ => self.snapshot.remove_user(id),
        };
        match stored {
            Ok(()) => Outcome::Deprovisioned,
            Err(e) => e.into(),
        }
    }

    async fn deprovision_group(
        &self,
        id: &SourceId,
        scim_id: ScimId,
        mode: DeprovisionMode,
        members: &[ScimId],
    ) -> Outcome {
        let result = match mode {
            DeprovisionMode::Delete => self.client.delete(Endpoint::Groups, &scim_id).await,
            DeprovisionMode::Deactivate => {
                self.client
                    .patch_group(&scim_id, Vec::new(), &[], members, &mut |_| {})
                    .await
            }
        };
        match result {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                return self.rec.failed(
                    Kind::Group,
                    id,
                    Some(&scim_id),
                    Action::Delete,
                    e,
                    Vec::new(),
                )
            }
        }
        let detail = match mode {
            DeprovisionMode::Delete => "group left scope: deleted",
            DeprovisionMode::Deactivate => {
                "group left scope: managed members removed, group no longer managed"
            }
        };
        self.rec.note(
            Kind::Group,
            id,
            Some(&scim_id),
            Action::Delete,
            Status::Success,
            detail,
        );
        match self.snapshot.remove_group(id) {
            Ok(()) => Outcome::Deprovisioned,
            Err(e) => e.into(),
        }
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
                entry.attrs = self.confirmed_attrs(desired);
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
                Some(v) => path.patch_set(v.clone(), c.old.is_some()),
                None => path.patch_remove(),
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

    /// `desired` without the attributes the target refused since it was planned.
    pub(crate) fn sendable(&self, desired: &Desired) -> Desired {
        let profile = self.client.profile();
        let mut d = desired.clone();
        d.attrs.retain(|path, _| !profile.refuses(path));
        d.on_create.retain(|path, _| !profile.refuses(path));
        d
    }

    /// A user's snapshot entry after the target confirmed `desired`.
    pub(crate) fn user_entry(
        &self,
        scim_id: ScimId,
        desired: &Desired,
        matched_by: MatchedBy,
    ) -> UserEntry {
        let attrs = self.confirmed_attrs(desired);
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
