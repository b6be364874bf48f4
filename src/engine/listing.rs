//! A listing of the target's accounts (or groups), verified as it is read, so that matching
//! can answer locally: at an initial sync, when that is cheaper than a query per object, and
//! always on a target whose filters cannot be trusted.
//!
//! A listing is never simply believed: a page that repeats an id already seen (a server that
//! ignores `startIndex`), an item without a usable id, or a listing that ends before its
//! `totalResults` makes it unreliable, and an unreliable listing answers nothing (the caller
//! then asks by query, or refuses to create). Only what matching and adoption need is kept
//! of each resource: its id and the top-level attributes the mappings read.

use crate::ids::ScimId;
use crate::mapping::Rule;
use crate::scim::{Client, Endpoint, ScimError};
use serde_json::{Map, Value as Json};
use std::collections::{BTreeMap, BTreeSet};

/// Resources asked for per page; servers may answer with fewer (scim2-server caps at 1,000).
pub(crate) const PAGE: usize = 1000;

/// A listing that cannot be used, and why.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ListingError {
    #[error(transparent)]
    Call(#[from] ScimError),
    #[error("the target's listing of {endpoint} is unreliable: {why}")]
    Unreliable { endpoint: &'static str, why: String },
}

pub(crate) struct Listing {
    accounts: Vec<Json>,
    /// (matching path, value as compared) → positions in `accounts`.
    by_value: BTreeMap<(String, String), Vec<usize>>,
    /// When the listing began: a look that must be fresher than this lists again.
    pub(crate) taken: tokio::time::Instant,
}

fn key(rule: &Rule, value: &str) -> (String, String) {
    let v = if rule.target.case_insensitive() {
        value.to_lowercase()
    } else {
        value.to_owned()
    };
    (rule.target.to_string(), v)
}

impl Listing {
    /// Lists every resource of the endpoint, page by page, verifying as it goes; `first` is
    /// the first page (and its `totalResults`) when it was read already.
    pub(crate) async fn read(
        client: &Client,
        endpoint: Endpoint,
        matching: &[&Rule],
        mapped: &[&Rule],
        mut first: Option<(Vec<Json>, usize)>,
    ) -> Result<Listing, ListingError> {
        let unreliable = |why: String| ListingError::Unreliable {
            endpoint: endpoint.name(),
            why,
        };
        let mut listing = Listing {
            accounts: Vec::new(),
            by_value: BTreeMap::new(),
            taken: tokio::time::Instant::now(),
        };
        let mut seen: BTreeSet<ScimId> = BTreeSet::new();
        let mut start = 1;
        loop {
            let (page, total) = match first.take() {
                Some(read) => read,
                None => client.list_page(endpoint, start, PAGE).await?,
            };
            if page.is_empty() {
                if listing.accounts.len() < total {
                    return Err(unreliable(format!(
                        "it ended after {} of its totalResults {total}",
                        listing.accounts.len()
                    )));
                }
                break;
            }
            for resource in page {
                let id = ScimId::checked(resource.get("id"))
                    .map_err(|e| unreliable(format!("an item is unusable: {e}")))?;
                if !seen.insert(id.clone()) {
                    return Err(unreliable(format!(
                        "the page at startIndex {start} repeats {}, already listed (is startIndex ignored?)",
                        crate::text::escape(id.as_str())
                    )));
                }
                listing.add(id, &resource, matching, mapped);
            }
            start = seen.len() + 1;
            // Bounded by totalResults, and by progress: every page added new ids or failed.
            if seen.len() >= total {
                break;
            }
        }
        Ok(listing)
    }

    fn add(&mut self, id: ScimId, resource: &Json, matching: &[&Rule], mapped: &[&Rule]) {
        let mut kept = Map::new();
        kept.insert("id".into(), Json::String(id.0));
        for rule in mapped.iter().chain(matching) {
            let top = rule.target.top_key();
            if let Some((k, v)) = resource
                .as_object()
                .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(&top)))
            {
                kept.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let pos = self.accounts.len();
        for rule in matching {
            for v in rule.target.match_values(resource) {
                self.by_value.entry(key(rule, &v)).or_default().push(pos);
            }
        }
        self.accounts.push(Json::Object(kept));
    }

    /// The listed resources that carry `value` by the rule's path (any type for a filtered
    /// path, as [`crate::mapping::AttrPath::carries`] compares).
    pub(crate) fn find(&self, rule: &Rule, value: &str) -> Vec<Json> {
        let mut hits: Vec<usize> = self
            .by_value
            .get(&key(rule, value))
            .cloned()
            .unwrap_or_default();
        hits.dedup();
        hits.iter()
            .filter_map(|&i| self.accounts.get(i).cloned())
            .collect()
    }

    /// What was kept of each listed resource.
    pub(crate) fn resources(&self) -> &[Json] {
        &self.accounts
    }

    pub(crate) fn len(&self) -> usize {
        self.accounts.len()
    }
}

/// A resource whose value at the rule's path can probe a filter: preferably one whose value
/// sits only in an item of another type than the rule names, or of none (the case a typed
/// filter form misses), else any. `(resource id, value, whether it is such an untyped value)`.
pub(crate) fn sample(rule: &Rule, resources: &[Json]) -> Option<(ScimId, String, bool)> {
    let id_of = |r: &Json| ScimId::checked(r.get("id")).ok();
    let untyped = resources.iter().find_map(|r| {
        let v = rule.target.untyped_values(r).into_iter().next()?;
        Some((id_of(r)?, v, true))
    });
    untyped.or_else(|| {
        resources.iter().find_map(|r| {
            let v = rule.target.match_values(r).into_iter().next()?;
            Some((id_of(r)?, v, false))
        })
    })
}
