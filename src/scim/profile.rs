//! A target's profile: everything that differs between SCIM servers, in one value that the
//! client and the matcher consult (linkerd2-proxy's `ServiceProfile`).
//!
//! It holds what `[target.compat]` says and what was learned from the target's answers: which
//! filter form finds an account, whether filters work at all, how members are removed, how
//! many member changes one PATCH takes, whether `POST /Groups` keeps members, and attributes
//! the target refuses. What is learned is kept in the state and used by later cycles; a
//! `sync --full`, or a change of the target's url, learns it afresh.

use super::filter::FilterForm;
use super::patch::{PatchOp, Verb};
use crate::config::{CompatConfig, MatchingMode, MemberRemove, OpCase};
use crate::ids::ScimId;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The sizes a member batch steps down through on a 400 or 413: a halving, with the sizes real
/// services are known to take (AWS IAM Identity Center: 100) on the way. It starts large: a
/// server that re-validates the whole group on every request (scim2-server) takes a group of
/// 3,000 in one 0.26 s POST, against 0.53 s as a POST and two PATCHes of 1,000.
const MEMBER_BATCHES: [usize; 12] = [5000, 2500, 1000, 500, 250, 100, 50, 20, 10, 5, 2, 1];

/// How existing accounts are found by one matching attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Verdict {
    /// By filter queries of this form: it found an account the target had listed.
    Filter { form: FilterForm },
    /// Only by listing the target: no filter form found a listed account (`why` says what the
    /// target answered), or the target says it does not filter.
    List { why: String },
}

/// What was learned about a target from its answers, as kept in the state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Learned {
    /// The url it was learned against: a profile of another url is not used.
    pub url: String,
    /// `filter.supported` in `/ServiceProviderConfig`, once read.
    #[serde(default)]
    pub filter_supported: Option<bool>,
    /// Per matching attribute (`users:emails[type eq "work"].value`), how accounts are found.
    #[serde(default)]
    pub matching: BTreeMap<String, Verdict>,
    /// The member-removal form that worked.
    #[serde(default)]
    pub member_remove: Option<MemberRemove>,
    /// The target refused a PATCH adding and removing members at once.
    #[serde(default)]
    pub member_add_remove_apart: bool,
    /// Whether `POST /Groups` kept the members it was sent.
    #[serde(default)]
    pub members_on_create: Option<bool>,
    /// The largest member batch that worked after a larger one was refused.
    #[serde(default)]
    pub member_batch: Option<usize>,
    /// Attributes the target refused (501, or a 400 naming the attribute's path), with its
    /// answer: not sent again until a full sync.
    #[serde(default)]
    pub refused: BTreeMap<String, String>,
    /// Attributes whose clearing (a PATCH `remove`) the target refused, with its answer:
    /// their values are still replaced, but a clear is not sent again until a full sync.
    #[serde(default)]
    pub refused_removal: BTreeMap<String, String>,
    /// Value-filtered attributes (`emails[type eq "work"].value`) the target takes only as
    /// the whole multi-valued attribute.
    #[serde(default)]
    pub whole: std::collections::BTreeSet<String>,
}

/// The profile of one target for the length of a cycle (or a command).
#[derive(Debug)]
pub struct Profile {
    compat: CompatConfig,
    learned: Mutex<Learned>,
    changed: AtomicBool,
}

impl Profile {
    /// A profile from the configuration and what was learned before (`None`, or learned
    /// against another url: learn afresh).
    pub fn new(compat: CompatConfig, url: &str, learned: Option<Learned>) -> Profile {
        let fresh = Learned {
            url: url.to_owned(),
            ..Learned::default()
        };
        let learned = learned.filter(|l| l.url == url);
        let changed = learned.is_none();
        Profile {
            compat,
            learned: Mutex::new(learned.unwrap_or(fresh)),
            changed: AtomicBool::new(changed),
        }
    }

    /// A profile with nothing learned, for a test or a check.
    pub fn fresh(compat: CompatConfig, url: &str) -> Profile {
        Profile::new(compat, url, None)
    }

    pub fn compat(&self) -> &CompatConfig {
        &self.compat
    }

    fn with<T>(&self, f: impl FnOnce(&Learned) -> T) -> T {
        f(&self.learned.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Changes what was learned; `f` returns whether it changed anything.
    fn learn(&self, f: impl FnOnce(&mut Learned) -> bool) -> bool {
        let changed = f(&mut self.learned.lock().unwrap_or_else(|p| p.into_inner()));
        if changed {
            self.changed.store(true, Ordering::Relaxed);
        }
        changed
    }

    /// A copy of what was learned.
    pub fn learned(&self) -> Learned {
        self.with(Learned::clone)
    }

    /// What was learned, if it changed since the profile was loaded (to be stored).
    pub fn take_changed(&self) -> Option<Learned> {
        self.changed
            .swap(false, Ordering::Relaxed)
            .then(|| self.learned())
    }

    /// The PATCH body for these operations, with the verbs spelled as the target wants them.
    pub fn patch_body(&self, ops: &[PatchOp]) -> Json {
        let case = self.compat.patch_op_case;
        let verb = move |v: Verb| match (case, v) {
            (OpCase::Lower, Verb::Add) => "add",
            (OpCase::Lower, Verb::Replace) => "replace",
            (OpCase::Lower, Verb::Remove) => "remove",
            (OpCase::Entra, Verb::Add) => "Add",
            (OpCase::Entra, Verb::Replace) => "Replace",
            (OpCase::Entra, Verb::Remove) => "Remove",
        };
        json!({
            "schemas": [super::PATCH_SCHEMA],
            "Operations": ops.iter().map(|op| op.to_json(verb)).collect::<Vec<_>>(),
        })
    }

    // --- Matching ---------------------------------------------------------------------

    pub fn matching_mode(&self) -> MatchingMode {
        self.compat.matching
    }

    pub fn filter_supported(&self) -> Option<bool> {
        self.with(|l| l.filter_supported)
    }

    pub fn set_filter_supported(&self, supported: bool) {
        self.learn(|l| l.filter_supported.replace(supported) != Some(supported));
    }

    /// How accounts are found by one matching attribute (`key` as [`matching_key`] makes it).
    pub fn verdict(&self, key: &str) -> Option<Verdict> {
        self.with(|l| l.matching.get(key).cloned())
    }

    pub fn set_verdict(&self, key: &str, verdict: Verdict) {
        self.learn(|l| l.matching.insert(key.to_owned(), verdict.clone()) != Some(verdict));
    }

    // --- Group members ----------------------------------------------------------------

    /// At most this many member changes go in one PATCH (or one `POST /Groups`).
    pub fn member_batch(&self) -> usize {
        self.compat
            .member_batch
            .or_else(|| self.with(|l| l.member_batch))
            .unwrap_or(MEMBER_BATCHES[0])
            .max(1)
    }

    /// After a batch of `size` member changes was refused (400 or 413): the next smaller size
    /// to try, now remembered; `None` when there is none (a single change, or a size set in
    /// `[target.compat]`).
    pub fn shrink_member_batch(&self, size: usize) -> Option<usize> {
        if self.compat.member_batch.is_some() || size <= 1 {
            return None;
        }
        let next = MEMBER_BATCHES
            .iter()
            .copied()
            .find(|&n| n < size)
            .unwrap_or(1);
        self.learn(|l| l.member_batch.replace(next) != Some(next));
        Some(next)
    }

    /// The member-removal form to use, and whether it is known to work.
    pub fn member_remove(&self) -> (MemberRemove, bool) {
        match self.compat.member_remove {
            Some(form) => (form, true),
            None => self.with(|l| match l.member_remove {
                Some(form) => (form, true),
                None => (MemberRemove::ValueFilter, false),
            }),
        }
    }

    /// A removal in `form` worked: it is the target's.
    pub fn confirm_member_remove(&self, form: MemberRemove) {
        if self.compat.member_remove.is_none() {
            self.learn(|l| l.member_remove.replace(form) != Some(form));
        }
    }

    /// A removal in the untried form is to be tried next: true when there is one.
    pub fn try_other_member_remove(&self) -> bool {
        let (form, known) = self.member_remove();
        if known || form == MemberRemove::ValueList {
            return false;
        }
        self.learn(|l| {
            l.member_remove = Some(MemberRemove::ValueList);
            true
        })
    }

    /// Whether member additions and removals go in separate PATCHes.
    pub fn members_apart(&self) -> bool {
        self.with(|l| l.member_add_remove_apart)
    }

    /// The target refused additions and removals in one PATCH; false if already known.
    pub fn set_members_apart(&self) -> bool {
        self.learn(|l| !std::mem::replace(&mut l.member_add_remove_apart, true))
    }

    /// What a refused mixed PATCH taught may have been the removal form's fault: forgotten
    /// when the removal form changes.
    pub fn forget_members_apart(&self) {
        self.learn(|l| std::mem::replace(&mut l.member_add_remove_apart, false));
    }

    /// Whether `POST /Groups` is sent with members: `[target.compat]`, else what was learned;
    /// `None` while unknown (then members are sent, and the answer is checked).
    pub fn members_on_create(&self) -> Option<bool> {
        self.compat
            .group_members_on_create
            .or_else(|| self.with(|l| l.members_on_create))
    }

    pub fn learn_members_on_create(&self, kept: bool) {
        if self.compat.group_members_on_create.is_none() {
            self.learn(|l| l.members_on_create.replace(kept) != Some(kept));
        }
    }

    /// The PATCH operations that add and remove these members, as the target takes them:
    /// one request, or (when the target refuses both at once) an addition and a removal.
    pub fn member_requests(
        &self,
        attrs: Vec<PatchOp>,
        add: &[ScimId],
        remove: &[ScimId],
    ) -> Vec<Vec<PatchOp>> {
        let value = |ids: &[ScimId]| {
            Json::Array(ids.iter().map(|s| json!({"value": s.as_str()})).collect())
        };
        let mut first = attrs;
        if !add.is_empty() {
            first.push(PatchOp::new(Verb::Add, "members", Some(value(add))));
        }
        let removals: Vec<PatchOp> = match (remove.is_empty(), self.member_remove().0) {
            (true, _) => Vec::new(),
            (false, MemberRemove::ValueFilter) => remove
                .iter()
                .map(|s| {
                    let path = format!("members[value eq {}]", Json::String(s.to_string()));
                    PatchOp::new(Verb::Remove, path, None)
                })
                .collect(),
            (false, MemberRemove::ValueList) => {
                vec![PatchOp::new(Verb::Remove, "members", Some(value(remove)))]
            }
        };
        if self.members_apart() && !add.is_empty() && !removals.is_empty() {
            vec![first, removals]
        } else {
            first.extend(removals);
            vec![first]
        }
    }

    /// Whether one request of these operations is how the profile spells these changes now:
    /// false when it learned since that they take a smaller batch, additions and removals
    /// apart, or another removal form (another group's request may have taught it).
    pub fn spells_members_so(
        &self,
        attrs: Vec<PatchOp>,
        add: &[ScimId],
        remove: &[ScimId],
        ops: &[PatchOp],
    ) -> bool {
        if add.len() + remove.len() > self.member_batch() {
            return false;
        }
        matches!(&self.member_requests(attrs, add, remove)[..], [one] if one == ops)
    }

    // --- Refused attributes -------------------------------------------------------------

    /// Whether the target refused this mapped attribute (not sent until a full sync).
    pub fn refuses(&self, attribute: &str) -> bool {
        self.with(|l| l.refused.contains_key(attribute))
    }

    /// The target refused this attribute; true when that is news.
    pub fn refuse(&self, attribute: &str, why: &str) -> bool {
        self.learn(|l| {
            l.refused
                .insert(attribute.to_owned(), why.to_owned())
                .is_none()
        })
    }

    /// Whether the target refused to clear this attribute (it still takes new values).
    pub fn refuses_removal(&self, attribute: &str) -> bool {
        self.with(|l| l.refused_removal.contains_key(attribute))
    }

    /// The target refused to clear this attribute; true when that is news.
    pub fn refuse_removal(&self, attribute: &str, why: &str) -> bool {
        self.learn(|l| {
            l.refused_removal
                .insert(attribute.to_owned(), why.to_owned())
                .is_none()
        })
    }

    /// The attributes the target refused to clear, with its answers.
    pub fn refused_removals(&self) -> BTreeMap<String, String> {
        self.with(|l| l.refused_removal.clone())
    }

    /// Whether this attribute goes to the target as the whole multi-valued attribute.
    pub fn takes_whole(&self, attribute: &str) -> bool {
        self.with(|l| l.whole.contains(attribute))
    }

    /// The target took this attribute whole after refusing its value-filtered path.
    pub fn learn_whole(&self, attribute: &str) {
        self.learn(|l| l.whole.insert(attribute.to_owned()));
    }

    /// The attributes the target refused, with its answers.
    pub fn refused(&self) -> BTreeMap<String, String> {
        self.with(|l| l.refused.clone())
    }
}

/// The key of a matching attribute in [`Learned::matching`]: the endpoint and the path.
pub fn matching_key(endpoint: super::Endpoint, path: &str) -> String {
    let kind = match endpoint {
        super::Endpoint::Users => "users",
        super::Endpoint::Groups => "groups",
    };
    format!("{kind}:{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(ids: &[&str]) -> Vec<ScimId> {
        ids.iter().map(|s| ScimId::from(*s)).collect()
    }

    fn body(p: &Profile, requests: Vec<Vec<PatchOp>>) -> Vec<Json> {
        requests
            .iter()
            .map(|r| p.patch_body(r)["Operations"].clone())
            .collect()
    }

    #[test]
    fn members_are_removed_in_the_form_the_target_takes() {
        let p = Profile::fresh(CompatConfig::default(), "http://t/v2");
        let requests = p.member_requests(Vec::new(), &ids(&["a"]), &ids(&["b", "c"]));
        assert_eq!(
            body(&p, requests),
            [json!([
                {"op": "add", "path": "members", "value": [{"value": "a"}]},
                {"op": "remove", "path": "members[value eq \"b\"]"},
                {"op": "remove", "path": "members[value eq \"c\"]"},
            ])]
        );
        assert!(p.try_other_member_remove());
        assert!(!p.try_other_member_remove(), "only two forms");
        assert!(p.set_members_apart());
        p.forget_members_apart();
        assert!(!p.members_apart());
        assert!(p.set_members_apart(), "learned again");
        let requests = p.member_requests(Vec::new(), &ids(&["a"]), &ids(&["b", "c"]));
        assert_eq!(
            body(&p, requests),
            [
                json!([{"op": "add", "path": "members", "value": [{"value": "a"}]}]),
                json!([{"op": "remove", "path": "members", "value": [{"value": "b"}, {"value": "c"}]}]),
            ]
        );
    }

    #[test]
    fn a_request_spelled_before_the_profile_changed_is_known() {
        let p = Profile::fresh(CompatConfig::default(), "http://t/v2");
        let (add, remove) = (ids(&["a"]), ids(&["b", "c"]));
        let mixed = p.member_requests(Vec::new(), &add, &remove).remove(0);
        assert!(p.spells_members_so(Vec::new(), &add, &remove, &mixed));
        let removal = p.member_requests(Vec::new(), &[], &remove).remove(0);
        assert!(p.spells_members_so(Vec::new(), &[], &remove, &removal));
        // Another request taught the profile: additions and removals apart...
        p.set_members_apart();
        assert!(!p.spells_members_so(Vec::new(), &add, &remove, &mixed));
        assert!(p.spells_members_so(Vec::new(), &[], &remove, &removal));
        // ... and the other removal form.
        assert!(p.try_other_member_remove());
        assert!(!p.spells_members_so(Vec::new(), &[], &remove, &removal));
        let list = p.member_requests(Vec::new(), &[], &remove).remove(0);
        assert!(p.spells_members_so(Vec::new(), &[], &remove, &list));
        // ... and a smaller batch.
        p.shrink_member_batch(2);
        assert!(!p.spells_members_so(Vec::new(), &[], &remove, &list));
    }

    #[test]
    fn entra_spells_the_verbs_capitalised() {
        let compat = CompatConfig {
            patch_op_case: OpCase::Entra,
            ..CompatConfig::default()
        };
        let p = Profile::fresh(compat, "http://t/v2");
        let op = PatchOp::new(Verb::Replace, "active", Some(json!(false)));
        assert_eq!(
            p.patch_body(&[op])["Operations"],
            json!([{"op": "Replace", "path": "active", "value": false}])
        );
    }

    #[test]
    fn the_member_batch_steps_down_and_is_remembered() {
        let p = Profile::fresh(CompatConfig::default(), "http://t/v2");
        assert_eq!(p.member_batch(), 5000);
        assert_eq!(p.shrink_member_batch(5000), Some(2500));
        assert_eq!(p.shrink_member_batch(1000), Some(500));
        assert_eq!(p.shrink_member_batch(230), Some(100));
        assert_eq!(p.member_batch(), 100);
        assert_eq!(p.shrink_member_batch(1), None);
        let learned = p.take_changed().expect("changed");
        let again = Profile::new(
            CompatConfig::default(),
            "http://t/v2",
            Some(learned.clone()),
        );
        assert_eq!(again.member_batch(), 100);
        assert!(again.take_changed().is_none(), "nothing new");
        let moved = Profile::new(CompatConfig::default(), "http://other/v2", Some(learned));
        assert_eq!(moved.member_batch(), 5000, "learned against another url");
        let fixed = Profile::fresh(
            CompatConfig {
                member_batch: Some(100),
                ..CompatConfig::default()
            },
            "http://t/v2",
        );
        assert_eq!(fixed.shrink_member_batch(100), None, "set by hand");
    }
}
