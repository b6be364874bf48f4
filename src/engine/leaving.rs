//! Users leaving a target's scope: why they left (or joined), and the ones kept as they are
//! and forgotten under `skip_out_of_scope_deletions`.

use super::desired::DesiredState;
use super::record::Recorder;
use crate::audit::{Action, Kind, Status};
use crate::ids::{ScimId, SourceId};
use crate::plan::{Forget, UserOp, UserPlan};
use crate::state::{Snapshot, StateError, UserSummary};
use std::collections::BTreeMap;

/// The users with an account who left the scope and are to be kept (forgotten), not
/// deprovisioned. A user gone from the source or disabled is never among them.
pub(crate) fn kept(want: &DesiredState, known: &BTreeMap<SourceId, UserSummary>) -> Vec<Forget> {
    want.out_of_scope
        .iter()
        .filter(|(id, out)| out.keep && !want.protected.contains(*id))
        .filter_map(|(id, out)| known.get(id).map(|e| kept_one(id, &e.scim_id, &out.why)))
        .collect()
}

/// One user kept as it is and forgotten, with why.
pub(crate) fn kept_one(id: &SourceId, scim_id: &ScimId, why: &str) -> Forget {
    Forget {
        id: id.clone(),
        scim_id: scim_id.clone(),
        why: format!(
            "left the scope ({why}); skip_out_of_scope_deletions: the account is kept as it is and no longer managed"
        ),
    }
}

/// Why each user a plan creates or deprovisions is in, or out of, the target's scope.
pub(crate) fn reasons(want: &DesiredState, users: &UserPlan) -> BTreeMap<SourceId, String> {
    let mut out = BTreeMap::new();
    for op in users.ops.iter().chain(&users.held) {
        let why = match op {
            UserOp::MatchOrCreate { id, .. } => {
                want.why_in.get(id).map(|w| format!("in scope: {w}"))
            }
            UserOp::Deprovision { id, .. } => Some(match want.out_of_scope.get(id) {
                Some(o) => format!("out of scope: {}", o.why),
                None => "not in the source".to_owned(),
            }),
            UserOp::Update { .. } => None,
        };
        if let Some(why) = why {
            out.insert(op.id().clone(), why);
        }
    }
    out
}

/// Forgets the kept users: their snapshot entries and escrow go, and a record says why. No
/// request is sent; their accounts stay as they are.
pub(crate) fn forget(
    snapshot: &Snapshot,
    rec: &Recorder,
    forget: &[Forget],
) -> Result<(), StateError> {
    for f in forget {
        snapshot.remove_user(&f.id)?;
        snapshot.escrow_clear(&f.id)?;
        rec.note(
            Kind::User,
            &f.id,
            Some(&f.scim_id),
            Action::Other,
            Status::Success,
            &f.why,
        );
    }
    Ok(())
}
