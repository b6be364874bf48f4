//! Reference attributes: a user's `manager` is a directory objectId in the source and the
//! manager's SCIM id in each target (`{"value": "<id>"}`, RFC 7643 §4.3).
//!
//! The desired state names the manager by objectId; the plan resolves it through the target's
//! snapshot, so that the snapshot records what the target holds and a no-change cycle stays
//! quiet. A manager out of the target's scope, or gone, is cleared. A manager whose account
//! does not exist yet is *pending*: its reports are created after it where the order allows
//! (and get it in their `POST`), and any still without it get one PATCH once the users are
//! done, in the same cycle.

use super::desired::DesiredState;
use super::executor::{change_ops, Executor};
use crate::audit::{Action, Kind};
use crate::ids::{ScimId, SourceId};
use crate::mapping::Desired;
use crate::plan::{self, Change, UserOp};
use crate::scim::Endpoint;
use crate::state::Snapshot;
use crate::target::Target;
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, BTreeSet};

/// The enterprise extension's `manager`, the one reference attribute scimsync maps.
pub(crate) const MANAGER: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager";

pub(crate) use super::executor::Pending;

/// What [`resolve`] asks of the target's snapshot.
pub(crate) struct Accounts<'a> {
    /// The account of a directory object, if it has one.
    pub(crate) of: &'a dyn Fn(&SourceId) -> Option<ScimId>,
    /// The manager a user's account holds now, as last pushed.
    pub(crate) manager_of: &'a dyn Fn(&SourceId) -> Option<Json>,
    /// Objects left out of this cycle without leaving the scope (a rejected entry): a
    /// report keeps such a manager while its account exists.
    pub(crate) protected: &'a BTreeSet<SourceId>,
}

/// Replaces each desired user's manager objectId by `{"value": <the manager's SCIM id>}`, or
/// removes it when the manager is neither a desired user of this target nor protected (out of
/// scope, or gone). A manager without an account yet makes the user pending: a user that has
/// an account keeps the manager it holds until then, so that no PATCH clears it in between.
pub(crate) fn resolve(users: &mut BTreeMap<SourceId, Desired>, accounts: &Accounts<'_>) -> Pending {
    let refs: Vec<(SourceId, SourceId)> = users
        .iter()
        .filter_map(|(id, d)| {
            let m = d.attrs.get(MANAGER).or_else(|| d.on_create.get(MANAGER))?;
            Some((id.clone(), SourceId::from(m.as_str()?)))
        })
        .collect();
    let mut pending = Pending::new();
    for (id, manager) in refs {
        let known = users.contains_key(&manager) || accounts.protected.contains(&manager);
        let value = match (known, (accounts.of)(&manager)) {
            (false, _) => None,
            (true, Some(scim_id)) => Some(reference(&scim_id)),
            (true, None) if users.contains_key(&manager) => {
                pending.insert(id.clone(), manager);
                (accounts.manager_of)(&id)
            }
            (true, None) => None,
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

/// [`resolve`] for a target's desired state, through its snapshot (`of` gives an object's
/// account), when the target maps the manager at all.
pub(crate) fn resolve_in(
    target: &Target,
    snapshot: &Snapshot,
    of: &dyn Fn(&SourceId) -> Option<ScimId>,
    want: &mut DesiredState,
) -> Pending {
    let maps_manager = target
        .mappings
        .users
        .iter()
        .any(|r| r.target.to_string() == MANAGER);
    if !maps_manager {
        return Pending::new();
    }
    let manager_of = |u: &SourceId| {
        let entry = snapshot.user(u).ok()??;
        entry.attrs.get(MANAGER).cloned()
    };
    let accounts = Accounts {
        of,
        manager_of: &manager_of,
        protected: &want.protected,
    };
    resolve(&mut want.users, &accounts)
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

/// Orders the creates so that a manager goes before its reports (by the length of the chain
/// of pending managers above each; managers of each other go last), which lets most reports
/// carry their manager in their own `POST`.
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
        let of = |id: &SourceId| (id.as_str() == "ceo").then(|| ScimId::from("s-ceo"));
        let none = |_: &SourceId| None;
        let accounts = Accounts {
            of: &of,
            manager_of: &none,
            protected: &BTreeSet::new(),
        };
        let pending = resolve(&mut users, &accounts);
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

    #[test]
    fn a_pending_user_keeps_its_manager_and_a_protected_manager_stays() {
        let mut users: BTreeMap<SourceId, Desired> = [
            ("new-boss", None),
            ("dev", Some("new-boss")),
            ("ops", Some("broken")),
        ]
        .into_iter()
        .map(|(id, m)| (SourceId::from(id), desired(m)))
        .collect();
        // new-boss is being created; broken is rejected this cycle but has an account.
        let of = |id: &SourceId| (id.as_str() == "broken").then(|| ScimId::from("s-broken"));
        let held = |id: &SourceId| (id.as_str() == "dev").then(|| json!({"value": "s-old"}));
        let protected = BTreeSet::from([SourceId::from("broken")]);
        let accounts = Accounts {
            of: &of,
            manager_of: &held,
            protected: &protected,
        };
        let pending = resolve(&mut users, &accounts);
        assert_eq!(
            users[&SourceId::from("dev")].attrs[MANAGER],
            json!({"value": "s-old"})
        );
        assert_eq!(
            users[&SourceId::from("ops")].attrs[MANAGER],
            json!({"value": "s-broken"})
        );
        assert_eq!(pending.len(), 1);
    }
}
