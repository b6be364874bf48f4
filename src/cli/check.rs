//! `scimsync check`: the configuration, the source, and each target's service provider
//! configuration, authentication and schema, as Entra's "Test connection" does.

use super::{load, out, EXIT_FATAL, EXIT_OK, EXIT_PARTIAL};
use crate::config::{Config, MatchingMode, OpCase, TargetConfig};
use crate::engine::matching::Matcher;
use crate::engine::PROFILE_KEY;
use crate::ids::TargetName;
use crate::mapping::path::{CORE_GROUP, CORE_USER};
use crate::mapping::AttrPath;
use crate::scim::profile::{Learned, Verdict};
use crate::scim::{Client, Endpoint, Profile, Route};
use crate::state::Store;
use crate::target::Target;
use crate::{scope, source};
use serde_json::Value as Json;
use std::sync::Arc;

pub(super) async fn check(config_path: &std::path::Path) -> i32 {
    let config = match load(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    out!(
        "config: ok ({}, {} target{})",
        config.path.display(),
        config.targets.len(),
        if config.targets.len() == 1 { "" } else { "s" }
    );
    let mut code = EXIT_OK;
    let mut read = None;
    match source::build(&config.source, config.max_value_bytes) {
        Err(e) => {
            out!("source: FAILED: {e}");
            code = EXIT_FATAL;
        }
        Ok(src) => match src.read().await {
            Err(e) => {
                out!("source: FAILED: {e}");
                code = EXIT_FATAL;
            }
            Ok(dir) => {
                out!(
                    "source: ok ({}: {} users, {} groups, {} entries rejected)",
                    src.describe(),
                    dir.users.len(),
                    dir.groups.len(),
                    dir.rejected.len()
                );
                for r in &dir.rejected {
                    out!("source: warning: {}", r.reason);
                }
                // The global [scope] once, then each target's own.
                let global = config.targets.iter().find(|t| !t.own_scope);
                let own = config.targets.iter().filter(|t| t.own_scope);
                for t in global.into_iter().chain(own) {
                    let label = if t.own_scope {
                        format!("target {:?}: scope", t.name)
                    } else {
                        "scope".to_owned()
                    };
                    match check_scope(&dir, t) {
                        Ok(line) => out!("{label}: ok ({line})"),
                        Err(e) => {
                            out!("{label}: FAILED: {e}");
                            code = EXIT_FATAL;
                        }
                    }
                }
                read = Some(dir);
            }
        },
    }
    for target in &config.targets {
        if let Some(dir) = &read {
            check_sparse_attributes(dir, target);
        }
        if !check_target(&config, target).await && code == EXIT_OK {
            code = EXIT_PARTIAL;
        }
    }
    code
}

/// How many users and groups a target's scope takes; each filter clause's attribute that no
/// user of the source has is warned of (a misspelled attribute keeps everyone out).
fn check_scope(dir: &source::Directory, target: &TargetConfig) -> Result<String, String> {
    let t = Target::build(target).map_err(|e| e.to_string())?;
    let s = scope::apply(dir, &t.scope).map_err(|e| e.to_string())?;
    for (f, filter) in target.scope.filter.iter().enumerate() {
        for (c, clause) in filter.clauses.iter().enumerate() {
            let at = if target.own_scope {
                format!("target {:?}: scope.filter[{f}].clauses[{c}]", target.name)
            } else {
                format!("scope.filter[{f}].clauses[{c}]")
            };
            if !dir.users.iter().any(|u| u.has(&clause.attribute)) {
                out!(
                    "{at}: warning: no user of the source has attribute {:?}; the clause {clause} can only be {}",
                    clause.attribute,
                    if clause.operator == crate::config::Operator::IsNull { "true" } else { "false" }
                );
            }
        }
    }
    let mut line = format!(
        "{} users and {} groups in scope",
        s.users.len(),
        s.groups.len()
    );
    if !s.rejected.is_empty() {
        line.push_str(&format!(
            "; {} users neither in nor out (a filtered attribute holds several values)",
            s.rejected.len()
        ));
    }
    Ok(line)
}

/// Warns of each mapped source attribute that (almost) no in-scope user has: a misspelled
/// `source = "departmnt"` would clear the attribute on every account.
fn check_sparse_attributes(dir: &source::Directory, target: &TargetConfig) {
    let Ok(t) = Target::build(target) else {
        return;
    };
    let Ok(scoped) = scope::apply(dir, &t.scope) else {
        return;
    };
    let users: Vec<&source::SourceObject> = scoped.users.values().map(|(u, _)| *u).collect();
    if users.is_empty() {
        return;
    }
    for (i, rule) in t.mappings.users.iter().enumerate() {
        for attr in rule.source_attributes() {
            // Computed for every object by the connectors themselves.
            if ["objectId", "IsSoftDeleted"]
                .iter()
                .any(|c| c.eq_ignore_ascii_case(&attr))
            {
                continue;
            }
            let has = users
                .iter()
                .filter(|u| match u.get(&attr) {
                    Some(source::AttrValue::Single(s)) => !s.trim().is_empty(),
                    Some(source::AttrValue::Multi(m)) => !m.is_empty(),
                    None => false,
                })
                .count();
            if has == 0 || has * 100 < users.len() {
                out!(
                    "target {:?}: mapping: warning: user_mapping[{i}] ({}) reads source attribute {attr:?}, which {} of the {} in-scope users have; a cycle would clear {} on the others (held above attribute_clear_threshold = {}%)",
                    target.name,
                    rule.target,
                    if has == 0 { "none".to_owned() } else { format!("only {has}") },
                    users.len(),
                    rule.target,
                    target.attribute_clear_threshold,
                );
            }
        }
    }
}

/// Checks one target; false when it cannot be used as configured.
async fn check_target(config: &Config, target: &TargetConfig) -> bool {
    let name = &target.name;
    let target = match Target::build(target) {
        Ok(t) => t,
        Err(e) => {
            out!("target {name:?}: FAILED: {e}");
            return false;
        }
    };
    let stored = stored_profile(config, &target);
    let profile = Arc::new(Profile::new(
        target.compat.clone(),
        target.url.trim_end_matches('/'),
        stored.clone(),
    ));
    let client = match Client::new(&target, profile) {
        Ok(c) => c,
        Err(e) => {
            out!("target {name:?}: FAILED: {e}");
            return false;
        }
    };
    let Some(spc) = service_provider_config(&client, name).await else {
        return false;
    };
    let mut ok = true;
    if !supported(&spc, "patch") {
        out!("target {name:?}: FAILED: scimsync needs PATCH, which the target does not announce");
        ok = false;
    }
    if target.bulk {
        match crate::scim::bulk::Limits::advertised(&spc) {
            Ok(l) => out!(
                "target {name:?}: bulk: on (up to {} operations and {} bytes per request)",
                l.max_operations,
                l.max_payload_size
            ),
            Err(why) => out!(
                "target {name:?}: bulk: warning: bulk = true, but {why}; writes go as single calls"
            ),
        }
    }
    // /ServiceProviderConfig may be public (RFC 7644 §4); a user search needs the token.
    let users = Route::endpoint(Endpoint::Users).with("count", 1);
    match client.probe(&users).await {
        Ok(_) => out!("target {name:?}: authentication: ok"),
        Err(e) if matches!(e.status, Some(401 | 403)) => {
            out!("target {name:?}: authentication: FAILED: the target rejected the token ({e})");
            return false;
        }
        Err(e) => {
            out!("target {name:?}: authentication: FAILED: {e}");
            return false;
        }
    }
    ok &= check_matching(&client, &target).await;
    print_profile(name, &client, stored.is_some());
    check_schema(&client, &target).await;
    ok
}

/// What an earlier cycle learned about the target, when the state can be read (not while the
/// daemon holds it; a check never creates the state).
fn stored_profile(config: &Config, target: &Target) -> Option<Learned> {
    if !config.state.path.exists() {
        return None;
    }
    let store = Store::open_state(&config.state).ok()?;
    let snapshot = store.snapshot(&TargetName(target.name.clone())).ok()?;
    snapshot.meta(PROFILE_KEY).ok().flatten()
}

async fn service_provider_config(client: &Client, name: &str) -> Option<Json> {
    let spc = match client.probe(&Route::at("ServiceProviderConfig")).await {
        Ok(spc) => spc,
        Err(e) if e.is_token_request() => {
            out!("target {name:?}: authentication: FAILED: {e}");
            return None;
        }
        Err(e) if matches!(e.status, Some(401 | 403)) => {
            out!("target {name:?}: authentication: FAILED: the target rejected the token ({e})");
            return None;
        }
        Err(e) => {
            out!("target {name:?}: ServiceProviderConfig: FAILED: {e}");
            return None;
        }
    };
    let yes = |b: bool| if b { "yes" } else { "no" };
    let bulk = match spc.get("bulk") {
        Some(b) if supported(&spc, "bulk") => format!(
            "yes (max {} operations, {} bytes)",
            b.get("maxOperations").and_then(Json::as_u64).unwrap_or(0),
            b.get("maxPayloadSize").and_then(Json::as_u64).unwrap_or(0)
        ),
        _ => "no".to_owned(),
    };
    let filter_max = spc
        .pointer("/filter/maxResults")
        .and_then(Json::as_u64)
        .map(|m| format!(" (max {m} results)"))
        .unwrap_or_default();
    out!(
        "target {name:?}: ServiceProviderConfig: ok (patch {}, filter {}{filter_max}, bulk {bulk})",
        yes(supported(&spc, "patch")),
        yes(supported(&spc, "filter")),
    );
    Some(spc)
}

fn supported(spc: &Json, key: &str) -> bool {
    spc.get(key)
        .and_then(|f| f.get("supported"))
        .and_then(Json::as_bool)
        .unwrap_or(false)
}

/// Runs the real matching of each matching attribute against one account the target lists
/// (reads only), and says how accounts will be found.
async fn check_matching(client: &Client, target: &Target) -> bool {
    let name = &target.name;
    let matcher = Matcher::new(client, target);
    let mut ok = true;
    for endpoint in [Endpoint::Users, Endpoint::Groups] {
        for (attr, learned) in matcher.learn_all(endpoint).await {
            let kind = endpoint.name().to_lowercase();
            match learned {
                Ok(Some(Verdict::Filter { form })) => out!(
                    "target {name:?}: matching {kind} by {attr}: ok, by filter ({}; it found an account the target lists)",
                    form.describe()
                ),
                Ok(Some(Verdict::List { why })) => out!(
                    "target {name:?}: matching {kind} by {attr}: ok, by listing the target ({why})"
                ),
                Ok(None) => out!(
                    "target {name:?}: matching {kind} by {attr}: not verified: no {kind} on the target carry a value there yet"
                ),
                Err(e) => {
                    ok = false;
                    out!("target {name:?}: matching {kind} by {attr}: FAILED: {e}");
                }
            }
        }
    }
    ok
}

/// The target's profile: what `[target.compat]` sets and what was learned, in the spelling of
/// `[target.compat]`.
fn print_profile(name: &str, client: &Client, stored: bool) {
    let p = client.profile();
    let compat = p.compat();
    let l = p.learned();
    let by = |set: bool, learned: bool| match (set, learned) {
        (true, _) => "set in [target.compat]",
        (false, true) => "learned",
        (false, false) => "default",
    };
    let (remove, known) = p.member_remove();
    let remove_by = if known {
        by(compat.member_remove.is_some(), l.member_remove.is_some())
    } else {
        "not yet known: learned at the first removal"
    };
    let on_create = match p.members_on_create() {
        Some(kept) => kept.to_string(),
        None => "not yet known".to_owned(),
    };
    out!(
        "target {name:?}: profile: patch_op_case = {} ({}), matching = {} ({}), member_batch = {} ({}), member_remove = {} ({remove_by}), group_members_on_create = {on_create} ({}), member additions and removals {}, {} refused attributes{}",
        spelled(&compat.patch_op_case),
        by(compat.patch_op_case != OpCase::default(), false),
        spelled(&compat.matching),
        by(compat.matching != MatchingMode::default(), false),
        p.member_batch(),
        by(compat.member_batch.is_some(), l.member_batch.is_some()),
        spelled(&remove),
        by(compat.group_members_on_create.is_some(), l.members_on_create.is_some()),
        if p.members_apart() { "apart (learned)" } else { "together" },
        l.refused.len(),
        if stored { "" } else { " (nothing stored by a cycle yet)" },
    );
    for (attribute, why) in &l.refused {
        out!("target {name:?}: profile: the target refuses {attribute} ({why})");
    }
    for (attribute, why) in &l.refused_removal {
        out!("target {name:?}: profile: the target refuses to clear {attribute} ({why})");
    }
    for attribute in &l.whole {
        out!("target {name:?}: profile: {attribute} is sent as the whole attribute (learned)");
    }
}

/// A `[target.compat]` value as it is written in the file (`value_filter`, `lower`).
fn spelled(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Json::String(s)) => s,
        _ => "?".to_owned(),
    }
}

async fn check_schema(client: &Client, target: &Target) {
    let name = &target.name;
    match client.probe(&Route::at("Schemas")).await {
        Ok(schemas) => {
            let mut missing = Vec::new();
            let rules = target
                .mappings
                .users
                .iter()
                .map(|r| (CORE_USER, &r.target))
                .chain(target.mappings.groups.iter().map(|r| (CORE_GROUP, &r.target)));
            let mut count = 0;
            for (core, path) in rules {
                count += 1;
                if !schema_has(&schemas, core, path) {
                    missing.push(path.to_string());
                }
            }
            if missing.is_empty() {
                out!("target {name:?}: schema: ok ({count} mapped attributes found in /Schemas)");
            } else {
                out!(
                    "target {name:?}: schema: warning: /Schemas does not list {}; the target may reject them",
                    missing.join(", ")
                );
            }
        }
        Err(e) => out!("target {name:?}: schema: warning: cannot read /Schemas ({e}); mapped attributes not checked"),
    }
}

/// Whether a `/Schemas` answer lists the attribute (and sub-attribute) a path writes.
fn schema_has(schemas: &Json, core: &str, path: &AttrPath) -> bool {
    let list = schemas
        .get("Resources")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_else(|| match schemas {
            Json::Array(a) => a.clone(),
            _ => Vec::new(),
        });
    let want = path.urn.as_deref().unwrap_or(core);
    let Some(schema) = list.iter().find(|s| {
        s.get("id")
            .and_then(Json::as_str)
            .is_some_and(|id| id.eq_ignore_ascii_case(want))
    }) else {
        return false;
    };
    let find = |attrs: Option<&Json>, name: &str| -> Option<Json> {
        attrs?
            .as_array()?
            .iter()
            .find(|a| {
                a.get("name")
                    .and_then(Json::as_str)
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .cloned()
    };
    // `id`-like common attributes (RFC 7643 §3.1) are not listed in the schemas.
    if path.urn.is_none() && ["externalid", "id"].contains(&path.attr.to_ascii_lowercase().as_str())
    {
        return true;
    }
    let Some(attr) = find(schema.get("attributes"), &path.attr) else {
        return false;
    };
    match &path.sub {
        Some(sub) => find(attr.get("subAttributes"), sub).is_some(),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_lookup_follows_paths_and_extensions() {
        let schemas = json!({"Resources": [
            {"id": CORE_USER, "attributes": [
                {"name": "userName"}, {"name": "name", "subAttributes": [{"name": "formatted"}]},
                {"name": "emails", "subAttributes": [{"name": "value"}, {"name": "type"}]}]},
            {"id": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", "attributes": [{"name": "department"}]}
        ]});
        let has = |p: &str| schema_has(&schemas, CORE_USER, &AttrPath::parse(p).expect("path"));
        assert!(has("userName"));
        assert!(has("name.formatted"));
        assert!(has(r#"emails[type eq "work"].value"#));
        assert!(has(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"
        ));
        assert!(has("externalId"));
        assert!(!has("name.nickname"));
        assert!(!has("title"));
        assert!(!has(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter"
        ));
    }
}
