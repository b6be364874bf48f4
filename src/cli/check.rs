//! `scimsync check`: the configuration, the source, and each target's service provider
//! configuration, authentication and schema, as Entra's "Test connection" does.

use super::{load, out, EXIT_FATAL, EXIT_OK, EXIT_PARTIAL};
use crate::config::{Config, TargetConfig};
use crate::mapping::path::{CORE_GROUP, CORE_USER};
use crate::mapping::AttrPath;
use crate::scim::Client;
use crate::{scope, source};
use serde_json::Value as Json;

pub(super) async fn check(config_path: &std::path::Path) -> i32 {
    let config = match load(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    out!(
        "config: ok ({}, {} targets)",
        config.path.display(),
        config.targets.len()
    );
    let mut code = EXIT_OK;
    match source::build(&config.source) {
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
                match scope::apply(&dir, &config.scope) {
                    Ok(s) => out!(
                        "scope: ok ({} users and {} groups in scope)",
                        s.users.len(),
                        s.groups.len()
                    ),
                    Err(e) => {
                        out!("scope: FAILED: {e}");
                        code = EXIT_FATAL;
                    }
                }
            }
        },
    }
    for target in &config.targets {
        if !check_target(&config, target).await && code == EXIT_OK {
            code = EXIT_PARTIAL;
        }
    }
    code
}

/// Checks one target; false when it cannot be used as configured.
async fn check_target(_config: &Config, target: &TargetConfig) -> bool {
    let name = &target.name;
    let client = match Client::new(target) {
        Ok(c) => c,
        Err(e) => {
            out!("target {name:?}: FAILED: {e}");
            return false;
        }
    };
    let spc = match client.probe("/ServiceProviderConfig").await {
        Ok(spc) => spc,
        Err(e) if e.is_token_request() => {
            out!("target {name:?}: authentication: FAILED: {e}");
            return false;
        }
        Err(e) if matches!(e.status, Some(401 | 403)) => {
            out!("target {name:?}: authentication: FAILED: the target rejected the token ({e})");
            return false;
        }
        Err(e) => {
            out!("target {name:?}: ServiceProviderConfig: FAILED: {e}");
            return false;
        }
    };
    let supported = |key: &str| {
        spc.get(key)
            .and_then(|f| f.get("supported"))
            .and_then(Json::as_bool)
            .unwrap_or(false)
    };
    let yes = |b: bool| if b { "yes" } else { "no" };
    let bulk = match spc.get("bulk") {
        Some(b) if supported("bulk") => format!(
            "yes (max {} operations, {} bytes)",
            b.get("maxOperations").and_then(Json::as_u64).unwrap_or(0),
            b.get("maxPayloadSize").and_then(Json::as_u64).unwrap_or(0)
        ),
        _ => "no".to_owned(),
    };
    let filter_max = spc
        .get("filter")
        .and_then(|f| f.get("maxResults"))
        .and_then(Json::as_u64);
    out!(
        "target {name:?}: ServiceProviderConfig: ok (patch {}, filter {}{}, bulk {bulk})",
        yes(supported("patch")),
        yes(supported("filter")),
        filter_max
            .map(|m| format!(" (max {m} results)"))
            .unwrap_or_default(),
    );
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
    let mut ok = true;
    if !supported("patch") || !supported("filter") {
        out!("target {name:?}: FAILED: scimsync needs PATCH and filtering, which the target does not announce");
        ok = false;
    }
    // /ServiceProviderConfig may be public (RFC 7644 §4); a user search needs the token.
    match client.probe("/Users?count=1").await {
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
    match client.probe("/Schemas").await {
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
    ok
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
