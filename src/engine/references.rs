//! Reference attributes: a user's `manager` is a directory objectId in the source and the
//! manager's SCIM id in each target (`{"value": "<id>"}`, RFC 7643 §4.3).
//!
//! The desired state names the manager by objectId; the plan resolves it through the target's
//! snapshot, so that the snapshot records what the target holds and a no-change cycle stays
//! quiet. A manager out of the target's scope, or gone, is cleared. A manager whose account
//! does not exist yet is *pending*: its reports are created after it where the order allows
//! (and get it in their `POST`), and any still without it get one PATCH once the users are
//! done, in the same cycle.

use super::executor::{change_ops, Executor};
use crate::audit::{Action, Kind};
use crate::ids::{ScimId, SourceId};
use crate::mapping::Desired;
use crate::plan::{self, Change, UserOp, UserPlan};
use crate::scim::Endpoint;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;

/// The enterprise extension's `manager`, the one reference attribute scimsync maps.
pub(crate) const MANAGER: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager";

/// Users whose manager has no account yet, each with the manager's objectId.
pub(crate) type Pending = BTreeMap<SourceId, SourceId>;

/// Replaces each desired user's manager objectId by `{"value": <the manager's SCIM id>}`, or
/// removes it: the manager is not a desired user of this target (out of scope, or gone), or
/// has no account yet (then the user is pending).
pub(crate) fn resolve(
    users: &mut BTreeMap<SourceId, Desired>,
    account: impl Fn(&SourceId) -> Option<ScimId>,
) -> Pending {
    let refs: Vec<(SourceId, SourceId)> = users
        .iter()
        .filter_map(|(id, d)| {
            let m = d.attrs.get(MANAGER).or_else(|| d.on_create.get(MANAGER))?;
            Some((id.clone(), SourceId::from(m.as_str()?)))
        })
        .collect();
    let mut pending = Pending::new();
    for (id, manager) in refs {
        let value = if !users.contains_key(&manager) {
            None
        } else if let Some(scim_id) = account(&manager) {
            Some(reference(&scim_id))
        } else {
            pending.insert(id.clone(), manager);
            None
        };
        if let Some(d) = users.get_mut(&id) {
            for attrs in [&mut d.attrs, &mut d.on_create] {
                if attrs.contains_key(MANAGER) {
                    match &value {
                        Some(v) => attrs.insert(MANAGER.to_owned(), v.clone()),
                        None => attrs.remove(MANAGER),
                    };
                }
            }
        }
    }
    pending
}

/// The value of a reference to an account.
pub(crate) fn reference(scim_id: &ScimId) -> Json {
    json!({ "value": scim_id.as_str() })
}

/// A reference as a target returns it (`value`, `$ref`, `displayName`), reduced to what
/// scimsync sends, so that an adoption compares like with like.
pub(crate) fn as_sent(path: &str, held: Json) -> Json {
    match held.get("value").and_then(Json::as_str) {
        Some(v) if path == MANAGER => json!({ "value": v }),
        _ => held,
    }
}

/// Orders the creates so that a manager goes before its reports (depth first by chain
/// length; cycles and deep chains keep their place), which lets most reports carry their
/// manager in their own `POST`.
pub(crate) fn order(ops: &mut [UserOp], pending: &Pending) {
    if pending.is_empty() {
        return;
    }
    let depth = |id: &SourceId| {
        let mut d = 0usize;
        let mut at = id;
        while let Some(m) = pending.get(at) {
            d += 1;
            // A chain longer than any org chart is a cycle.
            if d > 64 {
                break;
            }
            at = m;
        }
        d
    };
    ops.sort_by_key(|op| match op {
        UserOp::MatchOrCreate { id, .. } => depth(id),
        _ => 0,
    });
}

/// A user whose new manager has no account yet keeps the one it has until the manager is
/// created: no PATCH clears it in between.
pub(crate) fn defer_changes(plan: &mut UserPlan, pending: &Pending) {
    if pending.is_empty() {
        return;
    }
    let before = plan.ops.len();
    for op in &mut plan.ops {
        if let UserOp::Update { id, changes, .. } = op {
            if pending.contains_key(id) {
                changes.retain(|c| c.path != MANAGER);
            }
        }
    }
    plan.ops
        .retain(|op| !matches!(op, UserOp::Update { changes, .. } if changes.is_empty()));
    plan.unchanged += before - plan.ops.len();
}

impl Executor<'_> {
    /// `desired` with the pending manager filled in, when its account exists by now.
    pub(crate) fn with_manager(&self, id: &SourceId, desired: &Desired) -> Option<Desired> {
        let manager = self.pending.get(id)?;
        let scim_id = self.snapshot.user(manager).ok()??.scim_id;
        let mut d = desired.clone();
        d.attrs.insert(MANAGER.to_owned(), reference(&scim_id));
        Some(d)
    }

    /// Sets the manager of each pending user that still lacks it, now that the users' phase
    /// created the accounts: one PATCH each, recorded. Returns how many were attempted.
    pub(crate) async fn settle_managers(&self) -> usize {
        let mut attempted = 0;
        for (id, manager) in &self.pending {
            let (Ok(Some(mut entry)), Ok(Some(boss))) =
                (self.snapshot.user(id), self.snapshot.user(manager))
            else {
                continue;
            };
            let want = reference(&boss.scim_id);
            if entry.attrs.get(MANAGER) == Some(&want) || self.client.profile().refuses(MANAGER) {
                continue;
            }
            attempted += 1;
            let change = Change {
                path: MANAGER.to_owned(),
                old: entry.attrs.get(MANAGER).cloned(),
                new: Some(want.clone()),
            };
            let ops = change_ops(std::slice::from_ref(&change));
            let scim_id = entry.scim_id.clone();
            if let Err(e) = self
                .client
                .patch_attrs(Endpoint::Users, &scim_id, ops)
                .await
            {
                // Not escrowed: the next cycle's plan finds the manager missing and sends it.
                self.rec.failed(
                    Kind::User,
                    id,
                    Some(&scim_id),
                    Action::Update,
                    e,
                    Vec::new(),
                );
                continue;
            }
            entry.attrs.insert(MANAGER.to_owned(), want);
            entry.hash = plan::hash(&entry.attrs);
            entry.changed_at = crate::state::now();
            if let Err(e) = self.snapshot.put_user(id, &entry) {
                tracing::error!(object_id = %id, error = %e, "Could not record a confirmed manager.");
            }
            let modified = super::record::modified(&Desired::default(), &[change]);
            self.rec.changed(
                Kind::User,
                id,
                &scim_id,
                Action::Update,
                "manager set, now that the manager's account exists",
                modified,
            );
        }
        attempted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(manager: Option<&str>) -> Desired {
        let mut d = Desired::default();
        d.attrs.insert("userName".into(), json!("x"));
        if let Some(m) = manager {
            d.attrs.insert(MANAGER.into(), json!(m));
        }
        d
    }

    #[test]
    fn managers_resolve_to_accounts_or_wait_for_them_or_are_cleared() {
        let mut users: BTreeMap<SourceId, Desired> = [
            ("ceo", None),
            ("vp", Some("ceo")),
            ("dev", Some("vp")),
            ("temp", Some("gone")),
        ]
        .into_iter()
        .map(|(id, m)| (SourceId::from(id), desired(m)))
        .collect();
        // Only the CEO has an account so far.
        let pending = resolve(&mut users, |id| {
            (id.as_str() == "ceo").then(|| ScimId::from("s-ceo"))
        });
        assert_eq!(
            users[&SourceId::from("vp")].attrs[MANAGER],
            json!({"value": "s-ceo"})
        );
        assert!(!users[&SourceId::from("dev")].attrs.contains_key(MANAGER));
        assert!(
            !users[&SourceId::from("temp")].attrs.contains_key(MANAGER),
            "out of scope"
        );
        assert_eq!(
            pending,
            Pending::from([(SourceId::from("dev"), SourceId::from("vp"))])
        );
    }

    #[test]
    fn creates_are_ordered_managers_first_and_cycles_end() {
        let op = |id: &str| UserOp::MatchOrCreate {
            id: SourceId::from(id),
            desired: Desired::default(),
        };
        let mut ops = vec![op("dev"), op("a"), op("vp"), op("ceo"), op("b")];
        let pending = Pending::from([
            (SourceId::from("dev"), SourceId::from("vp")),
            (SourceId::from("vp"), SourceId::from("ceo")),
            (SourceId::from("a"), SourceId::from("b")),
            (SourceId::from("b"), SourceId::from("a")),
        ]);
        order(&mut ops, &pending);
        let ids: Vec<&str> = ops.iter().map(|o| o.id().as_str()).collect();
        assert_eq!(ids, ["ceo", "vp", "dev", "a", "b"]);
    }

    #[test]
    fn a_held_reference_is_compared_by_its_value() {
        let held = json!({"value": "s1", "$ref": "https://x/Users/s1", "displayName": "Boss"});
        assert_eq!(as_sent(MANAGER, held.clone()), json!({"value": "s1"}));
        assert_eq!(as_sent("title", held.clone()), held);
    }
}
