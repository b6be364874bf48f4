//! Finding the account (or group) a directory object already has on the target: one
//! implementation for the cycle, bulk answers and `provision`.
//!
//! Each matching attribute is tried in precedence order. A resource matches when it carries
//! the object's value there (for an e-mail: any of its `emails`, whatever its type); one match
//! is adopted, several are ambiguous, none means create. How the target is asked is learned
//! and kept in its [`Profile`]: the filter form that found an account the target had listed,
//! or, when no form does (or the target says it does not filter), a verified listing. A query
//! that cannot be answered is never taken as "no account": the object fails instead of being
//! created twice.

use super::listing::{self, Listing, ListingError};
use super::record::Recorder;
use crate::config::MatchingMode;
use crate::mapping::path::value_text;
use crate::mapping::{Desired, Rule};
use crate::scim::filter::FilterForm;
use crate::scim::profile::{matching_key, Verdict};
use crate::scim::{Cause, Client, Endpoint, ScimError};
use crate::target::Target;
use serde_json::Value as Json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Resources read to learn from when no listing was read.
const SAMPLE: usize = 100;

/// The result of looking for an existing resource.
#[derive(Debug)]
pub(crate) enum Found {
    One { resource: Json, by: String },
    None,
    Ambiguous(String),
}

/// How the target was asked, for messages.
enum Asked {
    Filter(Endpoint, String),
    Listing(Endpoint, usize),
}

impl Asked {
    /// As a step of `provision` shows it.
    fn call(&self) -> String {
        match self {
            Asked::Filter(e, f) => format!("GET {}?filter={f}", e.path()),
            Asked::Listing(e, n) => format!("the listing of {n} {}", e.name()),
        }
    }
}

impl Asked {
    /// As a reason names it: the filter sent, or (for the listing) the filter it stands for.
    fn reason(&self, rule: &Rule, value: &str) -> String {
        match self {
            Asked::Filter(_, filter) => filter.clone(),
            Asked::Listing(..) => format!("{} in {}", rule.target.filter_for(value), self.call()),
        }
    }
}

/// How one matching attribute is looked up.
#[derive(Debug, Clone, Copy, PartialEq)]
enum How {
    /// By filter queries of this form; `true` once it is known to work.
    Filter(FilterForm, bool),
    List,
}

/// What the matcher knows of one endpoint in this cycle; held while it reads the target.
#[derive(Default)]
struct Seen {
    /// The listing failed verification this cycle.
    unreliable: Option<String>,
    /// The first resources listed, once read: the sample to learn from.
    sample: Option<Vec<Json>>,
}

pub(crate) struct Matcher<'a> {
    client: &'a Client,
    target: &'a Target,
    /// Users, groups.
    seen: [Mutex<Seen>; 2],
    /// The listing of users, of groups, when read: looked at by every match without waiting.
    listed: [std::sync::Mutex<Option<Arc<Listing>>>; 2],
    /// Per endpoint and matching attribute, the form a refusal of the first led to, until it
    /// is proven.
    tried: [std::sync::Mutex<std::collections::BTreeMap<String, FilterForm>>; 2],
    /// Held while a profile entry of the endpoint is learned, so that it is learned once.
    learning: [Mutex<()>; 2],
    /// The first look at new objects is answered by one listing (an initial sync, where that
    /// costs fewer requests than a query per object).
    list_first_look: [AtomicBool; 2],
}

fn slot(endpoint: Endpoint) -> usize {
    match endpoint {
        Endpoint::Users => 0,
        Endpoint::Groups => 1,
    }
}

impl<'a> Matcher<'a> {
    pub(crate) fn new(client: &'a Client, target: &'a Target) -> Matcher<'a> {
        Matcher {
            client,
            target,
            seen: Default::default(),
            listed: Default::default(),
            tried: Default::default(),
            learning: Default::default(),
            list_first_look: Default::default(),
        }
    }

    fn rules(&self, endpoint: Endpoint) -> Vec<&'a Rule> {
        match endpoint {
            Endpoint::Users => self.target.mappings.user_matching(),
            Endpoint::Groups => self.target.mappings.group_matching(),
        }
    }

    fn mapped(&self, endpoint: Endpoint) -> Vec<&'a Rule> {
        match endpoint {
            Endpoint::Users => self.target.mappings.users.iter().collect(),
            Endpoint::Groups => self.target.mappings.groups.iter().collect(),
        }
    }

    /// Before `unmatched` objects are matched: lists the endpoint when that costs fewer
    /// requests than a query per object (an initial or full sync).
    pub(crate) async fn prepare(&self, endpoint: Endpoint, unmatched: usize) {
        if unmatched < 2 || self.rules(endpoint).is_empty() {
            return;
        }
        let listed = async {
            let (page, total) = self.client.list_page(endpoint, 1, 1).await?;
            // Each unmatched object costs at least one query; listing must beat that.
            if total.div_ceil(listing::PAGE) + 1 >= unmatched {
                tracing::debug!(
                    total,
                    unmatched,
                    "Matching by queries: listing the target would cost more."
                );
                return Ok::<_, ListingError>(false);
            }
            // A target of at most one account was listed by the count itself.
            let first = (page.len() == total).then_some((page, total));
            let l = self.listing_from(endpoint, first).await?;
            tracing::info!(target_name = %self.target.name, listed = l.len(), unmatched, "Listed the target to match locally.");
            Ok(true)
        };
        match listed.await {
            Ok(yes) => self.list_first_look[slot(endpoint)].store(yes, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!(target_name = %self.target.name, error = %e, "Cannot list the target; matching by queries.")
            }
        }
    }

    /// Looks for the resource of a new object by each matching attribute in precedence order.
    /// `fresh`: the look must ask the target now (after a 409, or a create whose outcome is
    /// unknown), not an earlier listing.
    pub(crate) async fn find(
        &self,
        endpoint: Endpoint,
        desired: &Desired,
        fresh: bool,
        rec: &Recorder,
    ) -> Result<Found, ScimError> {
        let since = fresh.then(Instant::now);
        for rule in self.rules(endpoint) {
            let key = rule.target.to_string();
            let Some(value) = desired.attrs.get(&key).and_then(value_text) else {
                rec.step(|s| {
                    s.matching
                        .push(format!("{key}: no value for this object; not looked up"))
                });
                continue;
            };
            let (hits, asked) = self.look(endpoint, rule, &value, since).await?;
            let (real, other): (Vec<Json>, Vec<Json>) = hits
                .into_iter()
                .partition(|h| rule.target.carries(h, &value));
            rec.step(|s| s.matching.push(describe_hits(&key, &asked, &real, &other)));
            if !other.is_empty() {
                // A server that ignores filters would make every account look like a match.
                return Ok(Found::Ambiguous(format!(
                    "the target answered the filter {} with {} resources that do not carry that value; refusing to match on it",
                    asked.reason(rule, &value),
                    other.len()
                )));
            }
            let mut real = real.into_iter();
            match (real.next(), real.len()) {
                (None, _) => continue,
                (Some(resource), 0) => return Ok(Found::One { resource, by: key }),
                (Some(_), more) => {
                    return Ok(Found::Ambiguous(format!(
                        "ambiguous: {} accounts match {}",
                        more + 1,
                        asked.reason(rule, &value)
                    )))
                }
            }
        }
        rec.step(|s| {
            s.matching
                .push("no account matches: a new one is created".into())
        });
        Ok(Found::None)
    }

    /// The resources carrying `value` by one rule, and how the target was asked.
    async fn look(
        &self,
        endpoint: Endpoint,
        rule: &Rule,
        value: &str,
        since: Option<Instant>,
    ) -> Result<(Vec<Json>, Asked), ScimError> {
        let listed_first =
            since.is_none() && self.list_first_look[slot(endpoint)].load(Ordering::Relaxed);
        if listed_first {
            match self.listing(endpoint, since).await {
                Ok(l) => return Ok((l.find(rule, value), Asked::Listing(endpoint, l.len()))),
                // The first look was only cheaper by listing: queries can still answer it.
                Err(e) => {
                    tracing::warn!(target_name = %self.target.name, error = %e, "Matching by queries instead.")
                }
            }
        }
        match self.how(endpoint, rule) {
            How::List => self.listed(endpoint, rule, value, since).await,
            How::Filter(form, true) => self.query(endpoint, rule, value, form, since).await,
            How::Filter(form, false) => {
                self.query_unverified(endpoint, rule, value, form, since)
                    .await
            }
        }
    }

    /// A look by a filter form not yet known to work: an answer that holds the value proves
    /// the form; an empty one is believed only once the form found an account the target
    /// lists (learned now), else the rule is matched by listing.
    async fn query_unverified(
        &self,
        endpoint: Endpoint,
        rule: &Rule,
        value: &str,
        form: FilterForm,
        since: Option<Instant>,
    ) -> Result<(Vec<Json>, Asked), ScimError> {
        let (hits, asked) = self.query(endpoint, rule, value, form, since).await?;
        let used = match &asked {
            Asked::Filter(_, _) => self.how(endpoint, rule),
            // Every form was refused: the rule is matched by listing now.
            Asked::Listing(..) => return Ok((hits, asked)),
        };
        if let How::Filter(form, false) = used {
            if hits.iter().any(|h| proves(rule, form, h, value)) {
                self.learned(endpoint, rule, Verdict::Filter { form });
                return Ok((hits, asked));
            }
        }
        if self.client.profile().matching_mode() == MatchingMode::Filter || !hits.is_empty() {
            return Ok((hits, asked));
        }
        match self.learn(endpoint, rule).await? {
            Some(Verdict::List { .. }) => self.listed(endpoint, rule, value, since).await,
            Some(Verdict::Filter { form: learned }) if !matches!(used, How::Filter(f, _) if f == learned) => {
                self.query(endpoint, rule, value, learned, since).await
            }
            // The form is the target's, or nothing on the target could tell yet.
            _ => Ok((hits, asked)),
        }
    }

    /// A look in the endpoint's listing.
    async fn listed(
        &self,
        endpoint: Endpoint,
        rule: &Rule,
        value: &str,
        since: Option<Instant>,
    ) -> Result<(Vec<Json>, Asked), ScimError> {
        let l = self
            .listing(endpoint, since)
            .await
            .map_err(|e| listing_failed(endpoint, e))?;
        Ok((l.find(rule, value), Asked::Listing(endpoint, l.len())))
    }

    /// A filter query, in `form` or (when the target refuses it) the next forms. When every
    /// form is refused, this value is looked up in a listing at least as fresh as `since`;
    /// the rule is matched by listing from then on only if a value the target lists is
    /// refused too (one odd value proves nothing of the target).
    async fn query(
        &self,
        endpoint: Endpoint,
        rule: &Rule,
        value: &str,
        form: FilterForm,
        since: Option<Instant>,
    ) -> Result<(Vec<Json>, Asked), ScimError> {
        let forms = rule.target.filter_forms();
        let start = forms.iter().position(|f| *f == form).unwrap_or(0);
        let mut refused = Vec::new();
        for &form in &forms[start..] {
            let filter = rule.target.filter_in(form, value);
            match self.client.search(endpoint, &filter).await {
                Ok(hits) => {
                    if !refused.is_empty() {
                        // A later form answers; it is proven once it finds an account.
                        self.tried[slot(endpoint)]
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(rule.target.to_string(), form);
                    }
                    return Ok((hits, Asked::Filter(endpoint, filter)));
                }
                Err(e) if matches!(e.status, Some(400 | 501)) => refused.push(e.to_string()),
                Err(e) => return Err(e),
            }
        }
        tracing::info!(target_name = %self.target.name, refused = %refused.join("; "), "The target refused every filter form for one value; looking it up in a listing.");
        self.learn(endpoint, rule).await?;
        self.listed(endpoint, rule, value, since).await
    }

    fn learned(&self, endpoint: Endpoint, rule: &Rule, verdict: Verdict) {
        let key = matching_key(endpoint, &rule.target.to_string());
        tracing::info!(target_name = %self.target.name, attribute = %key, ?verdict, "Learned how the target finds accounts.");
        self.client.profile().set_verdict(&key, verdict);
    }

    /// How a rule is looked up: `[target.compat] matching`, else what the profile learned;
    /// a form not yet known to work (`false`) when nothing is learned.
    fn how(&self, endpoint: Endpoint, rule: &Rule) -> How {
        let profile = self.client.profile();
        let key = matching_key(endpoint, &rule.target.to_string());
        let tried = self.tried[slot(endpoint)]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&rule.target.to_string())
            .copied();
        let unproven = How::Filter(tried.unwrap_or(rule.target.filter_forms()[0]), false);
        match (profile.matching_mode(), profile.verdict(&key)) {
            (MatchingMode::List, _) => How::List,
            (_, Some(Verdict::Filter { form })) => How::Filter(form, true),
            (MatchingMode::Auto, Some(Verdict::List { .. })) => How::List,
            _ => unproven,
        }
    }

    /// Learns, afresh, how the target finds resources by each matching attribute of an
    /// endpoint (for `check`: reads only).
    pub(crate) async fn learn_all(
        &self,
        endpoint: Endpoint,
    ) -> Vec<(String, Result<Option<Verdict>, ScimError>)> {
        let mut out = Vec::new();
        for rule in self.rules(endpoint) {
            out.push((rule.target.to_string(), self.learn(endpoint, rule).await));
        }
        out
    }

    /// Learns how the target finds accounts by one rule: whether it filters at all, and which
    /// filter form finds an account it has listed. `None` when there is nothing to learn from
    /// (no listed account carries a value there): then nothing is kept.
    async fn learn(&self, endpoint: Endpoint, rule: &Rule) -> Result<Option<Verdict>, ScimError> {
        let profile = self.client.profile();
        let key = matching_key(endpoint, &rule.target.to_string());
        let _once = self.learning[slot(endpoint)].lock().await;
        if let Some(v) = profile.verdict(&key) {
            return Ok(Some(v));
        }
        let listed = self.listed[slot(endpoint)]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let sample = match &listed {
            Some(l) => listing::sample(rule, l.resources()),
            None => listing::sample(rule, &self.first_page(endpoint).await?),
        };
        let Some((id, value, untyped)) = sample else {
            return Ok(None);
        };
        if profile.filter_supported().is_none() {
            let spc = self.client.service_provider_config().await?;
            let supported = spc.pointer("/filter/supported").and_then(Json::as_bool);
            profile.set_filter_supported(supported != Some(false));
        }
        let verdict = if profile.filter_supported() == Some(false)
            && profile.matching_mode() == MatchingMode::Auto
        {
            Verdict::List {
                why: "its /ServiceProviderConfig says filter.supported = false".into(),
            }
        } else {
            match self.probe(endpoint, rule, id, value, untyped).await? {
                Some(v) => v,
                None => return Ok(None),
            }
        };
        self.learned(endpoint, rule, verdict.clone());
        Ok(Some(verdict))
    }

    /// Tries each filter form for a value a listed resource carries: the first form whose
    /// answer holds that resource is the target's. A value held only untyped is tried in the
    /// forms' order: a typed form that finds it ignores the type. A value held typed would
    /// prove a typed form that misses untyped values, so the forms without a type go first.
    /// When none finds it, the resource is read again: it may have changed since it was
    /// listed (an adoption in this very cycle renames accounts), and then its value now is
    /// probed; `None` when it is gone or carries none.
    async fn probe(
        &self,
        endpoint: Endpoint,
        rule: &Rule,
        id: crate::ids::ScimId,
        mut value: String,
        mut untyped: bool,
    ) -> Result<Option<Verdict>, ScimError> {
        let mut answers = Vec::new();
        for _ in 0..3 {
            let mut forms = rule.target.filter_forms().to_vec();
            if !untyped {
                forms.sort_by_key(|f| typed(*f));
            }
            for form in forms {
                let filter = rule.target.filter_in(form, &value);
                match self.client.search(endpoint, &filter).await {
                    Ok(hits)
                        if hits
                            .iter()
                            .any(|h| h.get("id").and_then(Json::as_str) == Some(id.as_str())) =>
                    {
                        return Ok(Some(Verdict::Filter { form }));
                    }
                    Ok(hits) => answers.push(format!(
                        "{filter} gave {} resources without the listed one",
                        hits.len()
                    )),
                    Err(e) if matches!(e.status, Some(400 | 501)) => answers.push(e.to_string()),
                    Err(e) => return Err(e),
                }
            }
            let now = match self.client.get(endpoint, &id).await {
                Ok(now) => now,
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => return Err(e),
            };
            if rule.target.carries(&now, &value) {
                return Ok(Some(Verdict::List {
                    why: format!(
                        "no filter form found a listed account: {}",
                        answers.join("; ")
                    ),
                }));
            }
            match listing::sample(rule, std::slice::from_ref(&now)) {
                Some((_, changed, changed_untyped)) => {
                    (value, untyped) = (changed, changed_untyped)
                }
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The first resources the endpoint lists, to learn from; read once per cycle.
    async fn first_page(&self, endpoint: Endpoint) -> Result<Vec<Json>, ScimError> {
        let mut seen = self.seen[slot(endpoint)].lock().await;
        if let Some(read) = &seen.sample {
            return Ok(read.clone());
        }
        let (read, _) = self.client.list_page(endpoint, 1, SAMPLE).await?;
        seen.sample = Some(read.clone());
        Ok(read)
    }

    /// The endpoint's listing, read once per cycle, or again when it must be fresher than
    /// `since` (concurrent looks share one new listing).
    async fn listing(
        &self,
        endpoint: Endpoint,
        since: Option<Instant>,
    ) -> Result<Arc<Listing>, ListingError> {
        self.listing_since(endpoint, since, None).await
    }

    /// The endpoint's listing, whose first page (and `totalResults`) was read already.
    async fn listing_from(
        &self,
        endpoint: Endpoint,
        first: Option<(Vec<Json>, usize)>,
    ) -> Result<Arc<Listing>, ListingError> {
        self.listing_since(endpoint, None, first).await
    }

    async fn listing_since(
        &self,
        endpoint: Endpoint,
        since: Option<Instant>,
        first: Option<(Vec<Json>, usize)>,
    ) -> Result<Arc<Listing>, ListingError> {
        let fresh_enough = || {
            let listed = self.listed[slot(endpoint)]
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            listed
                .as_ref()
                .filter(|l| since.is_none_or(|t| l.taken >= t))
                .cloned()
        };
        if let Some(l) = fresh_enough() {
            return Ok(l);
        }
        let mut seen = self.seen[slot(endpoint)].lock().await;
        // Another look may have read it while this one waited.
        if let Some(l) = fresh_enough() {
            return Ok(l);
        }
        if let (Some(why), None) = (&seen.unreliable, since) {
            return Err(ListingError::Unreliable {
                endpoint: endpoint.name(),
                why: why.clone(),
            });
        }
        let matching = self.rules(endpoint);
        let mapped = self.mapped(endpoint);
        match Listing::read(self.client, endpoint, &matching, &mapped, first).await {
            Ok(l) => {
                let l = Arc::new(l);
                *self.listed[slot(endpoint)]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(l.clone());
                seen.unreliable = None;
                Ok(l)
            }
            Err(e) => {
                seen.unreliable = Some(e.to_string());
                Err(e)
            }
        }
    }
}

/// A form that names the type (`emails[type eq "work" …]`): it finds values of that type.
fn typed(form: FilterForm) -> bool {
    matches!(form, FilterForm::Compound | FilterForm::ValuePath)
}

/// Whether a resource a query in `form` found proves that the form finds every resource
/// carrying the value: it carries the value, and for a typed form, only untyped (so the
/// target ignored the type); a typed form finding a typed value proves nothing of the others.
fn proves(rule: &Rule, form: FilterForm, hit: &Json, value: &str) -> bool {
    if typed(form) {
        rule.target.carries_untyped(hit, value)
    } else {
        rule.target.carries(hit, value)
    }
}

fn listing_failed(endpoint: Endpoint, e: ListingError) -> ScimError {
    match e {
        ListingError::Call(e) => e,
        other => {
            let detail = format!("{other}; no account is created while it cannot be matched");
            ScimError::new("GET", endpoint.path(), Cause::Invalid, detail)
        }
    }
}

/// One matching step as `provision` shows it.
fn describe_hits(key: &str, asked: &Asked, real: &[Json], other: &[Json]) -> String {
    let ids: Vec<String> = real
        .iter()
        .filter_map(|h| h.get("id").and_then(Json::as_str))
        .map(crate::text::escape)
        .collect();
    let n = real.len();
    let mut line = format!(
        "{key}: {} -> {n} hit{}",
        asked.call(),
        if n == 1 { "" } else { "s" }
    );
    if !ids.is_empty() {
        line.push_str(&format!(" ({})", ids.join(", ")));
    }
    if !other.is_empty() {
        line.push_str(&format!(
            ", and {} resources without that value",
            other.len()
        ));
    }
    line
}
