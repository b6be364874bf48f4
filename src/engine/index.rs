//! A one-time listing of the target's users, so that an initial or full sync matches locally
//! instead of sending a filter query per user and matching attribute.
//!
//! Listing costs one request per page (up to 1,000 accounts); it is used only when that is
//! fewer requests than the queries it replaces. Only what matching and adoption need is kept:
//! each account's id and the values at the mapped paths.

use crate::mapping::{AttrPath, Rule};
use crate::scim::{Client, Endpoint, ScimError};
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;

/// Accounts asked for per page; servers may answer with fewer (scim2-server caps at 1,000).
const PAGE: usize = 1000;

pub(crate) struct TargetIndex {
    accounts: Vec<Json>,
    /// (matching path, value as compared) → positions in `accounts`.
    by_value: BTreeMap<(String, String), Vec<usize>>,
}

fn key(path: &AttrPath, value: &str) -> String {
    if path.case_insensitive() {
        value.to_lowercase()
    } else {
        value.to_owned()
    }
}

impl TargetIndex {
    /// Lists the target when that costs fewer requests than `unmatched` objects would by
    /// filter queries. `None` means: match by queries (cheaper, or the listing was incomplete).
    pub(crate) async fn build(
        client: &Client,
        endpoint: Endpoint,
        matching: &[&Rule],
        mapped: &[&Rule],
        unmatched: usize,
    ) -> Result<Option<TargetIndex>, ScimError> {
        if unmatched < 2 || matching.is_empty() {
            return Ok(None);
        }
        let (_, total) = client.list_page(endpoint, 1, 1).await?;
        let pages = total.div_ceil(PAGE);
        // Each unmatched object costs at least one query; listing must beat that.
        if pages + 1 >= unmatched {
            tracing::debug!(
                total,
                unmatched,
                "Matching by queries: listing the target would cost more."
            );
            return Ok(None);
        }
        let mut index = TargetIndex {
            accounts: Vec::with_capacity(total),
            by_value: BTreeMap::new(),
        };
        let mut start = 1;
        while index.accounts.len() < total {
            let (page, _) = client.list_page(endpoint, start, PAGE).await?;
            if page.is_empty() {
                break;
            }
            start += page.len();
            for resource in page {
                index.add(resource, matching, mapped);
            }
        }
        if index.accounts.len() < total {
            tracing::warn!(
                listed = index.accounts.len(),
                total,
                "The target's listing ended early; matching by queries instead."
            );
            return Ok(None);
        }
        Ok(Some(index))
    }

    fn add(&mut self, resource: Json, matching: &[&Rule], mapped: &[&Rule]) {
        let Some(id) = resource.get("id").and_then(Json::as_str) else {
            return;
        };
        let mut kept = Map::new();
        kept.insert("id".into(), Json::String(id.to_owned()));
        for rule in mapped {
            if let Some(v) = rule.target.read(&resource) {
                rule.target.write(&mut kept, v);
            }
        }
        let pos = self.accounts.len();
        for rule in matching {
            let values: Vec<String> = match rule.target.read(&resource) {
                Some(Json::String(s)) => vec![s],
                Some(Json::Bool(b)) => vec![b.to_string()],
                _ => Vec::new(),
            };
            for v in values {
                self.by_value
                    .entry((rule.target.to_string(), key(&rule.target, &v)))
                    .or_default()
                    .push(pos);
            }
        }
        self.accounts.push(Json::Object(kept));
    }

    /// The listed accounts that carry `value` at the rule's path.
    pub(crate) fn find(&self, rule: &Rule, value: &str) -> Vec<Json> {
        self.by_value
            .get(&(rule.target.to_string(), key(&rule.target, value)))
            .map(|hits| {
                hits.iter()
                    .filter_map(|&i| self.accounts.get(i).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn len(&self) -> usize {
        self.accounts.len()
    }
}
