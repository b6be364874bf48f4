//! A new object's way onto the target, the same for users and groups: find its resource,
//! adopt it (claimed once, its differences sent), or create it; after a `409` or a create
//! whose outcome is unknown, look again before creating again.

use super::executor::{change_ops, Executor};
use super::matching::Found;
use super::record::{created, modified, shown_changes, shown_created};
use super::report::Outcome;
use crate::audit::{Action, Kind, Status};
use crate::ids::{ScimId, SourceId};
use crate::mapping::path::{CORE_GROUP, CORE_USER};
use crate::mapping::{Apply, Desired};
use crate::plan::{self, DesiredGroup};
use crate::scim::{Endpoint, ScimError};
use crate::state::{self, GroupEntry, MatchedBy, UserSummary};
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How many times a create whose outcome is unknown is matched and tried again.
const CREATE_ROUNDS: u32 = 4;

/// What a directory object should be on the target.
#[derive(Clone, Copy)]
pub(crate) enum Subject<'s> {
    User(&'s Desired),
    Group {
        group: &'s DesiredGroup,
        /// The users' accounts, to resolve members.
        users: &'s BTreeMap<SourceId, UserSummary>,
    },
}

impl Subject<'_> {
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Subject::User(_) => Kind::User,
            Subject::Group { .. } => Kind::Group,
        }
    }

    fn endpoint(&self) -> Endpoint {
        match self {
            Subject::User(_) => Endpoint::Users,
            Subject::Group { .. } => Endpoint::Groups,
        }
    }

    fn desired(&self) -> &Desired {
        match self {
            Subject::User(d) => d,
            Subject::Group { group, .. } => &group.desired,
        }
    }

    /// A group's in-scope members that have an account, with it.
    fn members(&self) -> Vec<(SourceId, ScimId)> {
        match self {
            Subject::User(_) => Vec::new(),
            Subject::Group { group, users } => group
                .members
                .iter()
                .filter_map(|m| users.get(m).map(|e| (m.clone(), e.scim_id.clone())))
                .collect(),
        }
    }
}

/// The pause before matching again after a create whose outcome is unknown. After a timeout
/// the target may still be working on the request (a bulk request carries many creates), so
/// the pause lasts at least the request timeout: a match made sooner could miss an account
/// that is about to exist, and create it twice.
fn create_pause(round: u32, e: &ScimError, timeout: u64) -> Duration {
    let pause = Duration::from_millis(250u64 << round.min(6));
    if e.is_timeout() {
        pause.max(Duration::from_secs(timeout))
    } else {
        pause
    }
}

impl Executor<'_> {
    /// Finds the object's resource and adopts it, or creates one.
    pub(crate) async fn match_or_create(&self, id: &SourceId, subject: Subject<'_>) -> Outcome {
        let kind = subject.kind();
        let (mut fresh, mut conflicted, mut rounds) = (false, false, 0);
        loop {
            // Only the first look may be answered by an earlier listing: after a 409 or a
            // create of unknown outcome, only the target itself can say whether it exists.
            match self
                .matcher
                .find(subject.endpoint(), subject.desired(), fresh, &self.rec)
                .await
            {
                Err(e) => {
                    return self
                        .rec
                        .failed(kind, id, None, Action::Other, e, Vec::new())
                }
                Ok(Found::Ambiguous(why)) => {
                    self.rec.step(|s| s.action = Some("skip".into()));
                    return self.rec.skipped(kind, id, None, why);
                }
                Ok(Found::One { resource, by }) => {
                    return self.adopt(id, subject, resource, by).await
                }
                Ok(Found::None) => {}
            }
            if self.dry_run {
                self.rec.step(|s| {
                    s.action = Some("create".into());
                    s.changes = shown_created(subject.desired());
                });
                return Outcome::Created;
            }
            let created = match subject {
                Subject::User(desired) => self.create_user(id, desired).await,
                Subject::Group { group, .. } => {
                    self.create_group(id, group, subject.members()).await
                }
            };
            match created {
                Ok(outcome) => return outcome,
                // Someone created the account between our query and our POST: match again.
                Err(e) if e.is_conflict() && !conflicted => (conflicted, fresh) = (true, true),
                // The POST may or may not have reached the target: match again before
                // creating, so that a lost answer never makes a second account.
                Err(e) if e.retryable && rounds < CREATE_ROUNDS => {
                    rounds += 1;
                    fresh = true;
                    tracing::debug!(object_id = %id, error = %e, "A create may not have been applied; matching again.");
                    tokio::time::sleep(create_pause(rounds, &e, self.target.timeout_seconds)).await;
                }
                Err(e) => {
                    let tried = super::record::created(subject.desired());
                    return self.rec.failed(kind, id, None, Action::Create, e, tried);
                }
            }
        }
    }

    async fn create_user(&self, id: &SourceId, desired: &Desired) -> Result<Outcome, ScimError> {
        let body = self.sendable(desired, true).to_resource(CORE_USER);
        let (scim_id, _) = match self.client.create(Endpoint::Users, &body).await {
            // Refused as a whole (so not created): once more without the refused attributes.
            Err(e) if e.status == Some(400) && self.holds_refused(desired) => {
                let body = self.sendable(desired, false).to_resource(CORE_USER);
                self.client.create(Endpoint::Users, &body).await?
            }
            other => other?,
        };
        self.claim_created(Kind::User, &scim_id, id)?;
        self.rec.step(|s| {
            s.action = Some("create".into());
            s.changes = shown_created(desired);
        });
        self.rec.changed(
            Kind::User,
            id,
            &scim_id,
            Action::Create,
            "created",
            created(desired),
        );
        let entry = self.user_entry(scim_id, desired, MatchedBy::Created);
        Ok(match self.snapshot.put_user(id, &entry) {
            Ok(()) => Outcome::Created,
            Err(e) => e.into(),
        })
    }

    /// `POST /Groups` with the first batch of members (unless the target drops them), then
    /// the members it does not hold by PATCH; the snapshot records what the target holds.
    async fn create_group(
        &self,
        id: &SourceId,
        group: &DesiredGroup,
        want: Vec<(SourceId, ScimId)>,
    ) -> Result<Outcome, ScimError> {
        let profile = self.client.profile();
        let sent = match profile.members_on_create() {
            Some(false) => 0,
            _ => want.len().min(profile.member_batch()),
        };
        let (scim_id, resource) = match self.post_group(group, &want[..sent]).await {
            // A group too large (or members refused) on create: create it empty instead.
            Err(e) if sent > 0 && matches!(e.status, Some(400 | 413)) => {
                profile.learn_members_on_create(false);
                self.post_group(group, &[]).await?
            }
            other => other?,
        };
        self.claim_created(Kind::Group, &scim_id, id)?;
        let kept = self.kept_members(&scim_id, &resource, &want[..sent]).await;
        if sent > 0 {
            profile.learn_members_on_create(!kept.is_empty());
        }
        let entry = GroupEntry {
            scim_id: scim_id.clone(),
            attrs: self.confirmed_attrs(&group.desired),
            members: kept.iter().cloned().collect(),
            matched_by: MatchedBy::Created,
            changed_at: state::now(),
        };
        if let Err(e) = self.snapshot.put_group(id, &entry) {
            return Ok(e.into());
        }
        self.rec.step(|s| s.action = Some("create".into()));
        let detail = format!("created with {} members", kept.len());
        self.rec.changed(
            Kind::Group,
            id,
            &scim_id,
            Action::Create,
            &detail,
            created(&group.desired),
        );
        let rest: Vec<(SourceId, ScimId)> =
            want.into_iter().filter(|m| !kept.contains(m)).collect();
        if !rest.is_empty() {
            if let Err(e) = self
                .patch_members(id, entry, &group.desired, &[], &rest, &[])
                .await
            {
                return Ok(self.rec.failed(
                    Kind::Group,
                    id,
                    Some(&scim_id),
                    Action::Update,
                    e,
                    Vec::new(),
                ));
            }
        }
        Ok(Outcome::Created)
    }

    async fn post_group(
        &self,
        group: &DesiredGroup,
        members: &[(SourceId, ScimId)],
    ) -> Result<(ScimId, Json), ScimError> {
        let mut body = self.sendable(&group.desired, false).to_resource(CORE_GROUP);
        if !members.is_empty() {
            let list = members
                .iter()
                .map(|(_, s)| json!({"value": s.as_str()}))
                .collect();
            body["members"] = Json::Array(list);
        }
        self.client.create(Endpoint::Groups, &body).await
    }

    /// Which of the members sent with a create the target holds: its answer says, or (when
    /// the answer lists no members at all) a read of the group.
    async fn kept_members(
        &self,
        scim_id: &ScimId,
        resource: &Json,
        sent: &[(SourceId, ScimId)],
    ) -> Vec<(SourceId, ScimId)> {
        if sent.is_empty() {
            return Vec::new();
        }
        let read;
        let resource = match resource.get("members") {
            Some(_) => resource,
            None => match self.client.get(Endpoint::Groups, scim_id).await {
                Ok(r) => {
                    read = r;
                    &read
                }
                // Unknown: taken as not kept, so the members are added by PATCH (idempotent).
                Err(_) => return Vec::new(),
            },
        };
        let present = member_values(resource);
        sent.iter()
            .filter(|(_, s)| present.contains(s.as_str()))
            .cloned()
            .collect()
    }

    /// Adopts a resource the matcher found: claimed for this object (never for two), its
    /// differences sent.
    async fn adopt(
        &self,
        id: &SourceId,
        subject: Subject<'_>,
        resource: Json,
        by: String,
    ) -> Outcome {
        let kind = subject.kind();
        let scim_id = match ScimId::checked(resource.get("id")) {
            Ok(s) => s,
            Err(e) => {
                return Outcome::Failed(format!(
                    "the matched resource cannot be adopted: {}",
                    crate::text::escape(&e.to_string())
                ))
            }
        };
        if !self.claim(kind, &scim_id, id) {
            let why = format!(
                "{kind} {scim_id} matched by {by} is already managed for another directory object"
            );
            return self.rec.skipped(kind, id, Some(&scim_id), why);
        }
        let current = self.current_attrs(kind, &resource, subject.desired());
        let mut changes = plan::diff(&current, &subject.desired().attrs);
        // What the directory has empty is not cleared here, one account at a time beyond the
        // attribute-wipe guard (a mistyped source attribute, then `sync --full`): the account
        // keeps it, the snapshot says so, and the next cycle's plan clears it under the guard.
        let held: BTreeMap<String, Json> = if self.allow_clears {
            BTreeMap::new()
        } else {
            changes
                .iter()
                .filter(|c| c.new.is_none())
                .filter_map(|c| Some((c.path.clone(), c.old.clone()?)))
                .collect()
        };
        changes.retain(|c| !held.contains_key(&c.path));
        self.rec.step(|s| {
            s.action = Some(format!("update (adopt {kind} {scim_id} matched by {by})"));
            s.changes = shown_changes(subject.desired(), &changes);
        });
        if self.dry_run {
            return if changes.is_empty() {
                Outcome::Unchanged
            } else {
                Outcome::Updated
            };
        }
        match subject {
            Subject::User(desired) => {
                let found = Adoptee {
                    resource: &resource,
                    by,
                    held,
                };
                self.adopt_user(id, desired, scim_id, found, changes).await
            }
            Subject::Group { group, users } => {
                self.adopt_group(id, group, users, scim_id, resource, current, changes, by)
                    .await
            }
        }
    }

    /// The values a resource holds at the mapped attributes kept in step, leaving out those
    /// the target refuses.
    ///
    /// A value-filtered attribute (`emails[type eq "work"].value`) that the resource holds in
    /// an item of another type, or of none, counts as held: the account matched on it, and
    /// adding a typed copy would list the same address twice.
    fn current_attrs(
        &self,
        kind: Kind,
        resource: &Json,
        desired: &Desired,
    ) -> BTreeMap<String, Json> {
        let rules = match kind {
            Kind::User => &self.target.mappings.users,
            Kind::Group => &self.target.mappings.groups,
        };
        rules
            .iter()
            .filter(|r| r.apply == Apply::Always)
            .filter(|r| !self.client.profile().refuses(&r.target.to_string()))
            .filter_map(|r| {
                let key = r.target.to_string();
                let held = r.target.read(resource).or_else(|| {
                    let want = desired.attrs.get(&key)?;
                    let text = want.as_str()?;
                    (r.target.filter.is_some() && r.target.carries(resource, text))
                        .then(|| want.clone())
                });
                held.map(|v| {
                    let v = super::references::as_sent(&key, v);
                    (key, v)
                })
            })
            .collect()
    }

    async fn adopt_user(
        &self,
        id: &SourceId,
        desired: &Desired,
        scim_id: ScimId,
        found: Adoptee<'_>,
        changes: Vec<plan::Change>,
    ) -> Outcome {
        let Adoptee { resource, by, held } = found;
        if !changes.is_empty() {
            let ops = change_ops(&changes);
            if let Err(e) = self
                .client
                .patch_attrs(Endpoint::Users, &scim_id, ops)
                .await
            {
                let tried = modified(desired, &changes);
                return self
                    .rec
                    .failed(Kind::User, id, Some(&scim_id), Action::Update, e, tried);
            }
        }
        let applied = self.applied(&changes);
        let retyped = self.retype(desired, &scim_id, resource).await;
        let mut detail = format!("adopted existing account matched by {by}");
        if !retyped.is_empty() {
            detail.push_str(&format!("; {} given the mapped type", retyped.join(", ")));
        }
        self.rec.changed(
            Kind::User,
            id,
            &scim_id,
            Action::Update,
            &detail,
            modified(desired, &applied),
        );
        let entry = self.user_entry_keeping(scim_id, desired, MatchedBy::Adopted(by), held);
        match self.snapshot.put_user(id, &entry) {
            Ok(()) if applied.is_empty() && retyped.is_empty() => Outcome::Unchanged,
            Ok(()) => Outcome::Updated,
            Err(e) => e.into(),
        }
    }

    /// Claims the id a create was answered with: a target that answers with the id of an
    /// account another directory object manages fails this object rather than link two
    /// people to one account.
    fn claim_created(&self, kind: Kind, scim_id: &ScimId, id: &SourceId) -> Result<(), ScimError> {
        if self.claim(kind, scim_id, id) {
            return Ok(());
        }
        let path = match kind {
            Kind::User => "/Users",
            Kind::Group => "/Groups",
        };
        let detail = format!(
            "the target answered the create with id {scim_id}, which another directory object's {kind} already has"
        );
        Err(ScimError::new(
            "POST",
            path,
            crate::scim::Cause::Invalid,
            detail,
        ))
    }

    /// An adopted account's address held only in an item of another type (or none) is given
    /// the mapped type, the other items kept: the account then looks as one scimsync made,
    /// and no second item lists the same address. Best effort: a target that refuses keeps
    /// the address as it was, which matching already accepts. Returns the attributes retyped.
    async fn retype(&self, desired: &Desired, scim_id: &ScimId, resource: &Json) -> Vec<String> {
        let mut retyped = Vec::new();
        for rule in &self.target.mappings.users {
            let key = rule.target.to_string();
            let Some(value) = desired.attrs.get(&key).and_then(Json::as_str) else {
                continue;
            };
            if self.client.profile().refuses(&key) {
                continue;
            }
            let Some(op) = rule.target.retype(resource, value) else {
                continue;
            };
            match self.client.patch(Endpoint::Users, scim_id, &[op]).await {
                Ok(()) => retyped.push(key),
                Err(e) => tracing::info!(
                    target_name = %self.target.name,
                    account = %scim_id,
                    attribute = %key,
                    error = %e,
                    "The target did not take the mapped type on an adopted account's address; it keeps the address as it was."
                ),
            }
        }
        retyped
    }

    #[allow(clippy::too_many_arguments)]
    async fn adopt_group(
        &self,
        id: &SourceId,
        group: &DesiredGroup,
        users: &BTreeMap<SourceId, UserSummary>,
        scim_id: ScimId,
        resource: Json,
        current: BTreeMap<String, Json>,
        changes: Vec<plan::Change>,
        by: String,
    ) -> Outcome {
        // A group found in a listing came without its members: read it whole.
        let resource = match resource.get("members") {
            Some(_) => resource,
            None => match self.client.get(Endpoint::Groups, &scim_id).await {
                Ok(r) => r,
                Err(e) => {
                    return self.rec.failed(
                        Kind::Group,
                        id,
                        Some(&scim_id),
                        Action::Other,
                        e,
                        Vec::new(),
                    )
                }
            },
        };
        let present = member_values(&resource);
        let want = Subject::Group { group, users }.members();
        let add: Vec<(SourceId, ScimId)> = want
            .iter()
            .filter(|(_, s)| !present.contains(s.as_str()))
            .cloned()
            .collect();
        // Only members scimsync manages are removed; accounts it never matched stay.
        let remove: Vec<(SourceId, ScimId)> = users
            .iter()
            .filter(|(m, e)| present.contains(e.scim_id.as_str()) && !group.members.contains(*m))
            .map(|(m, e)| (m.clone(), e.scim_id.clone()))
            .collect();
        let entry = GroupEntry {
            scim_id: scim_id.clone(),
            attrs: current,
            members: want
                .iter()
                .filter(|(_, s)| present.contains(s.as_str()))
                .cloned()
                .collect(),
            matched_by: MatchedBy::Adopted(by.clone()),
            changed_at: state::now(),
        };
        if let Err(e) = self.snapshot.put_group(id, &entry) {
            return e.into();
        }
        let detail = format!("adopted existing group matched by {by}");
        self.rec.note(
            Kind::Group,
            id,
            Some(&scim_id),
            Action::Other,
            Status::Success,
            &detail,
        );
        if changes.is_empty() && add.is_empty() && remove.is_empty() {
            return Outcome::Unchanged;
        }
        match self
            .patch_members(id, entry, &group.desired, &changes, &add, &remove)
            .await
        {
            Ok(()) => Outcome::Updated,
            Err(e) => self.rec.failed(
                Kind::Group,
                id,
                Some(&scim_id),
                Action::Update,
                e,
                Vec::new(),
            ),
        }
    }
}

/// The account an adoption found: as the target holds it, how it was matched, and the values
/// it keeps although the directory has them empty.
struct Adoptee<'a> {
    resource: &'a Json,
    by: String,
    held: BTreeMap<String, Json>,
}

/// The member ids a group resource lists.
fn member_values(resource: &Json) -> BTreeSet<&str> {
    resource
        .get("members")
        .and_then(Json::as_array)
        .map(|ms| {
            ms.iter()
                .filter_map(|m| m.get("value").and_then(Json::as_str))
                .collect()
        })
        .unwrap_or_default()
}
