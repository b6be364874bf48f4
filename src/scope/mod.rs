//! Scope: which users and groups a target receives.
//!
//! Users are in scope as *direct* members of an assigned group, as directly assigned users, or
//! all of them with `all = true`. A member that is itself a group contributes nobody, as in
//! Entra ID. Assigned groups are provisioned with their in-scope direct members.

use crate::config::ScopeConfig;
use crate::ids::SourceId;
use crate::source::dn::normalize_dn;
use crate::source::{Directory, SourceGroup, SourceObject};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum ScopeError {
    #[error("scope.groups: {0:?} matches no group in the source; its members are not taken as gone (remove it from scope.groups if the group was deleted on purpose)")]
    GroupNotFound(String),
    #[error("scope.groups: {0:?} matches {1} groups in the source; assign it by objectId or DN")]
    GroupAmbiguous(String, usize),
}

/// The in-scope part of a directory.
#[derive(Debug, Default)]
pub(crate) struct Scoped<'a> {
    /// In-scope users, with why each is in scope.
    pub(crate) users: BTreeMap<SourceId, (&'a SourceObject, Arc<str>)>,
    pub(crate) groups: Vec<ScopedGroup<'a>>,
}

#[derive(Debug)]
pub(crate) struct ScopedGroup<'a> {
    pub(crate) group: &'a SourceGroup,
    /// Direct members that are in-scope users, in a stable order.
    pub(crate) members: BTreeSet<SourceId>,
}

fn find_group<'a>(dir: &'a Directory, key: &str) -> Result<&'a SourceGroup, ScopeError> {
    if let Some(g) = dir.groups.iter().find(|g| g.object.id.as_str() == key) {
        return Ok(g);
    }
    if key.contains('=') {
        let want = normalize_dn(key);
        let hits: Vec<_> = dir
            .groups
            .iter()
            .filter(|g| {
                ["dn", "distinguishedName"].iter().any(|a| {
                    g.object
                        .get_str(a)
                        .is_some_and(|dn| normalize_dn(dn) == want)
                })
            })
            .collect();
        if let [one] = hits.as_slice() {
            return Ok(one);
        }
    }
    let hits: Vec<_> = dir
        .groups
        .iter()
        .filter(|g| {
            g.object
                .get_str("displayName")
                .is_some_and(|n| n.eq_ignore_ascii_case(key))
        })
        .collect();
    match hits.as_slice() {
        [] => Err(ScopeError::GroupNotFound(key.to_owned())),
        [one] => Ok(one),
        many => Err(ScopeError::GroupAmbiguous(key.to_owned(), many.len())),
    }
}

/// Applies the scope to a directory read.
pub(crate) fn apply<'a>(dir: &'a Directory, scope: &ScopeConfig) -> Result<Scoped<'a>, ScopeError> {
    let users: BTreeMap<&SourceId, &SourceObject> = dir.users.iter().map(|u| (&u.id, u)).collect();
    let mut out = Scoped::default();
    if scope.all {
        // One reason shared by every user: a million copies of it would cost megabytes.
        let why: Arc<str> = Arc::from("all users are in scope");
        for u in &dir.users {
            out.users.insert(u.id.clone(), (u, why.clone()));
        }
    }
    for id in &scope.users {
        match users.get(&SourceId(id.clone())) {
            Some(u) => {
                out.users
                    .entry(u.id.clone())
                    .or_insert((u, Arc::from("directly assigned")));
            }
            None => {
                tracing::warn!(object_id = %id, "A directly assigned user is not in the source.")
            }
        }
    }
    for key in &scope.groups {
        let group = find_group(dir, key)?;
        let name = group
            .object
            .get_str("displayName")
            .unwrap_or(group.object.id.as_str());
        let why: Arc<str> = Arc::from(format!("direct member of assigned group {name:?}"));
        let mut members = BTreeSet::new();
        for m in &group.members {
            // A member that is not a user is a nested group (or unknown): it contributes nobody.
            if let Some(u) = users.get(m) {
                members.insert(m.clone());
                out.users.entry(m.clone()).or_insert((u, why.clone()));
            }
        }
        out.groups.push(ScopedGroup { group, members });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::json::parse;
    use std::path::Path;

    fn dir() -> Directory {
        parse(
            Path::new("d.json"),
            br#"{"users": [{"objectId": "u1"}, {"objectId": "u2"}, {"objectId": "u3"}, {"objectId": "u4"}],
                "groups": [
                  {"objectId": "g1", "displayName": "Bounty Hunters", "dn": "CN=Bounty Hunters,OU=Groups,DC=x", "members": ["u1", "g2"]},
                  {"objectId": "g2", "displayName": "Nested", "members": ["u2"]},
                  {"objectId": "g3", "displayName": "Twin", "members": []},
                  {"objectId": "g4", "displayName": "twin", "members": []}
                ]}"#,
        )
        .expect("valid")
    }

    fn ids(s: &Scoped) -> Vec<String> {
        s.users.keys().map(|k| k.0.clone()).collect()
    }

    #[test]
    fn direct_members_only_nested_groups_contribute_nobody() {
        let d = dir();
        let s = apply(
            &d,
            &ScopeConfig {
                groups: vec!["Bounty Hunters".into()],
                ..Default::default()
            },
        )
        .expect("ok");
        assert_eq!(ids(&s), ["u1"]);
        assert_eq!(s.groups.len(), 1);
        assert_eq!(
            s.groups[0]
                .members
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>(),
            ["u1"]
        );
    }

    #[test]
    fn groups_by_object_id_dn_or_display_name() {
        let d = dir();
        for key in ["g1", "cn=bounty hunters, ou=groups, dc=x", "bounty hunters"] {
            let s = apply(
                &d,
                &ScopeConfig {
                    groups: vec![key.into()],
                    ..Default::default()
                },
            )
            .expect(key);
            assert_eq!(s.groups[0].group.object.id.as_str(), "g1", "{key}");
        }
        let e = apply(
            &d,
            &ScopeConfig {
                groups: vec!["Twin".into()],
                ..Default::default()
            },
        )
        .expect_err("ambiguous");
        assert_eq!(e, ScopeError::GroupAmbiguous("Twin".into(), 2));
        let e = apply(
            &d,
            &ScopeConfig {
                groups: vec!["Gone".into()],
                ..Default::default()
            },
        )
        .expect_err("missing");
        assert_eq!(e, ScopeError::GroupNotFound("Gone".into()));
    }

    #[test]
    fn directly_assigned_and_all() {
        let d = dir();
        let s = apply(
            &d,
            &ScopeConfig {
                users: vec!["u3".into(), "nobody".into()],
                ..Default::default()
            },
        )
        .expect("ok");
        assert_eq!(ids(&s), ["u3"]);
        let s = apply(
            &d,
            &ScopeConfig {
                all: true,
                ..Default::default()
            },
        )
        .expect("ok");
        assert_eq!(ids(&s), ["u1", "u2", "u3", "u4"]);
        assert!(s.groups.is_empty());
    }
}
