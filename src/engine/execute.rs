//! The planned, typed operations carried out: each user and group operation dispatched,
//! updates and deprovisions here; a new object's matching, adoption and creation in
//! [`super::adopt`]. Every snapshot write follows a call the target confirmed.

use super::adopt::Subject;
use super::executor::{change_ops, Executor};
use super::record::{modified, shown_changes};
use super::report::Outcome;
use crate::audit::{self, Action, Kind, Status};
use crate::config::DeprovisionMode;
use crate::ids::{ScimId, SourceId};
use crate::mapping::Desired;
use crate::plan::{self, Change, GroupOp, UserOp};
use crate::scim::patch::{PatchOp, Verb};
use crate::scim::Endpoint;
use crate::state::{self, MatchedBy, UserSummary};
use serde_json::Value as Json;
use std::collections::BTreeMap;

impl Executor<'_> {
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
                let desired = self.with_manager(&id, &desired).unwrap_or(desired);
                self.match_or_create(&id, Subject::User(&desired)).await
            }
            UserOp::Update {
                id,
                scim_id,
                changes,
                desired,
            } => self.update_user(&id, scim_id, &changes, &desired).await,
            UserOp::Deprovision {
                id, scim_id, mode, ..
            } => self.deprovision_user(&id, scim_id, mode).await,
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
                // What the target refused (now or before) did not change: an update of only
                // refused attributes changed nothing, and says so.
                let applied = self.applied(changes);
                if applied.is_empty() {
                    let paths: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
                    // Skipped, not a warning: the cycle says the refusal once, not per user.
                    let why = format!("the target refuses {}; nothing changed", paths.join(", "));
                    self.rec.note(
                        Kind::User,
                        id,
                        Some(&scim_id),
                        Action::Update,
                        Status::Skipped,
                        &why,
                    );
                } else {
                    let tried = modified(desired, &applied);
                    self.rec
                        .changed(Kind::User, id, &scim_id, Action::Update, "", tried);
                }
                let matched_by = match self.snapshot.user(id) {
                    Ok(old) => old.map(|e| e.matched_by).unwrap_or(MatchedBy::Created),
                    Err(e) => return e.into(),
                };
                match self
                    .snapshot
                    .put_user(id, &self.user_entry(scim_id, desired, matched_by))
                {
                    Ok(()) if applied.is_empty() => Outcome::Unchanged,
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
}
