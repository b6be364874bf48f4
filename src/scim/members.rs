//! Group member changes in as few PATCHes as the target takes.
//!
//! Members go in batches of the profile's size, additions before removals, each batch in the
//! removal form and the grouping the profile knows to work. A refusal teaches the profile and
//! the same changes go again: a mixed PATCH refused → additions and removals apart; a removal
//! refused in the untried form → the other form; a batch refused (400, 413) → a smaller batch.
//! A refusal that teaches none of these, of a request carrying the group's attributes, may be
//! the attributes' own: they go alone, as a user's do, and the members again without them.
//! Each confirmed request is reported to the caller, which records it.

use super::error::ScimError;
use super::patch::PatchOp;
use super::route::Endpoint;
use super::Client;
use crate::ids::ScimId;
use std::collections::VecDeque;

/// What one confirmed request changed.
#[derive(Debug, Default)]
pub struct Confirmed {
    /// The attribute operations went with this request.
    pub attrs: bool,
    pub added: Vec<ScimId>,
    pub removed: Vec<ScimId>,
}

/// One request's share of the changes.
struct Request {
    ops: Vec<PatchOp>,
    /// The attribute operations this request carries (to send again if it must).
    attrs: Option<Vec<PatchOp>>,
    added: Vec<ScimId>,
    removed: Vec<ScimId>,
}

/// Puts the changes of requests not confirmed back in front of those still to batch.
fn requeue(
    pending: VecDeque<Request>,
    attrs: &mut Option<Vec<PatchOp>>,
    adds: &mut VecDeque<ScimId>,
    removes: &mut VecDeque<ScimId>,
) {
    for r in pending.into_iter().rev() {
        r.added.into_iter().rev().for_each(|m| adds.push_front(m));
        r.removed
            .into_iter()
            .rev()
            .for_each(|m| removes.push_front(m));
        if r.attrs.is_some() {
            *attrs = r.attrs;
        }
    }
}

impl Client {
    /// Sends attribute changes and member additions and removals of one group, calling
    /// `confirmed` after each request the target accepted. Stops at the first failure that
    /// teaching the profile cannot overcome; what was confirmed until then stays confirmed.
    pub async fn patch_group(
        &self,
        id: &ScimId,
        attrs: Vec<PatchOp>,
        add: &[ScimId],
        remove: &[ScimId],
        confirmed: &mut (dyn FnMut(Confirmed) + Send),
    ) -> Result<(), ScimError> {
        let mut attrs = (!attrs.is_empty()).then_some(attrs);
        let mut adds: VecDeque<ScimId> = add.iter().cloned().collect();
        let mut removes: VecDeque<ScimId> = remove.iter().cloned().collect();
        while attrs.is_some() || !adds.is_empty() || !removes.is_empty() {
            let batch = self.profile.member_batch();
            let take_adds = adds.len().min(batch);
            let chunk_add: Vec<ScimId> = adds.drain(..take_adds).collect();
            let chunk_remove: Vec<ScimId> = removes
                .drain(..removes.len().min(batch - take_adds))
                .collect();
            let mut pending = self.member_batch(attrs.take(), &chunk_add, &chunk_remove);
            while let Some(request) = pending.pop_front() {
                match self.patch(Endpoint::Groups, id, &request.ops).await {
                    Ok(()) => {
                        if !request.removed.is_empty() {
                            let (form, _) = self.profile.member_remove();
                            self.profile.confirm_member_remove(form);
                        }
                        confirmed(Confirmed {
                            attrs: request.attrs.is_some(),
                            added: request.added,
                            removed: request.removed,
                        });
                    }
                    Err(e) if self.learn_from(&e, &request) => {
                        // The profile changed: this request and the ones after it go again.
                        pending.push_front(request);
                        requeue(pending, &mut attrs, &mut adds, &mut removes);
                        break;
                    }
                    Err(e) if request.attrs.is_some() && e.refuses_attribute() => {
                        // The target may refuse an attribute of the group rather than its
                        // members: the attributes go on their own, as a user's do (what it
                        // refuses is learned and left out), then the members without them.
                        let sent = request.attrs.clone().unwrap_or_default();
                        self.patch_attrs(Endpoint::Groups, id, sent).await?;
                        confirmed(Confirmed {
                            attrs: true,
                            ..Confirmed::default()
                        });
                        pending.push_front(Request {
                            attrs: None,
                            ..request
                        });
                        requeue(pending, &mut attrs, &mut adds, &mut removes);
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// The requests that carry one batch, as the profile spells them.
    fn member_batch(
        &self,
        attrs: Option<Vec<PatchOp>>,
        add: &[ScimId],
        remove: &[ScimId],
    ) -> VecDeque<Request> {
        let parts = self
            .profile
            .member_requests(attrs.clone().unwrap_or_default(), add, remove);
        let apart = parts.len() > 1;
        parts
            .into_iter()
            .enumerate()
            .map(|(i, ops)| Request {
                ops,
                attrs: if i == 0 { attrs.clone() } else { None },
                added: if i == 0 { add.to_vec() } else { Vec::new() },
                removed: if !apart || i == 1 {
                    remove.to_vec()
                } else {
                    Vec::new()
                },
            })
            .collect()
    }

    /// Whether the profile now spells `r` otherwise than when it was built.
    fn stale(&self, r: &Request) -> bool {
        let attrs = r.attrs.clone().unwrap_or_default();
        !self
            .profile
            .spells_members_so(attrs, &r.added, &r.removed, &r.ops)
    }

    /// What a refused member request teaches the profile; false when it teaches nothing (the
    /// failure is the caller's).
    fn learn_from(&self, e: &ScimError, r: &Request) -> bool {
        // 400 or 501: the form is refused; 413 (or a 400): the size.
        let form = matches!(e.status, Some(400 | 501));
        if !form && e.status != Some(413) {
            return false;
        }
        if self.stale(r) {
            // Another group's request taught the profile after this one was built: this one
            // goes again as the profile now spells it, and teaches nothing by itself.
            tracing::debug!(target_name = %self.target, error = %e, "A member change spelled before the profile changed was refused; sending it again as the profile now says.");
            return true;
        }
        let mixed = !r.added.is_empty() && !r.removed.is_empty();
        let size = r.added.len() + r.removed.len();
        let learnt = if form && mixed && self.profile.set_members_apart() {
            "additions and removals go in separate PATCHes"
        } else if form
            && !r.removed.is_empty()
            && r.added.is_empty()
            && self.profile.try_other_member_remove()
        {
            // A mixed PATCH refused before may have been refused for its removal form, not
            // for the mix: the next mixed change tries one request again (and learns apart
            // again if that is refused too).
            self.profile.forget_members_apart();
            "members are removed with a value list"
        } else if e.status != Some(501)
            && size > 1
            && self.profile.shrink_member_batch(size).is_some()
        {
            "fewer member changes per PATCH"
        } else {
            return false;
        };
        tracing::info!(target_name = %self.target, error = %e, "The target refused a member change; {learnt}.");
        true
    }
}
