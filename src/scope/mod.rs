//! Scope: which users and groups a target receives.
//!
//! Users are in scope as *direct* members of an assigned group, as directly assigned users, or
//! all of them with `all = true`; then, when the scope has scoping filters, only those who pass
//! one of them. A member that is itself a group contributes nobody, as in Entra ID. Assigned
//! groups that pass the group filters are provisioned with their in-scope direct members.

mod explain;
mod filter;

use crate::config::ScopeConfig;
use crate::ids::SourceId;
use crate::source::dn::normalize_dn;
use crate::source::{Directory, SourceGroup, SourceObject};
pub(crate) use explain::explain;
pub(crate) use filter::FilterError;
use filter::{Filter, MultiValued};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum ScopeError {
    #[error("scope.groups: {0:?} matches no group in the source; its members are not taken as gone (remove it from scope.groups if the group was deleted on purpose)")]
    GroupNotFound(String),
    #[error("scope.groups: {0:?} matches {1} groups in the source; assign it by objectId or DN")]
    GroupAmbiguous(String, usize),
}

/// A target's scope, ready to apply: the assignments and the compiled scoping filters.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    pub(crate) assigned: ScopeConfig,
    filters: Vec<Filter>,
    group_filters: Vec<Filter>,
}

impl Scope {
    pub(crate) fn compile(config: &ScopeConfig) -> Result<Scope, FilterError> {
        let compile = |list: &[crate::config::ScopeFilter]| {
            list.iter()
                .enumerate()
                .map(|(n, f)| Filter::compile(n, f))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Scope {
            filters: compile(&config.filter)?,
            group_filters: compile(&config.group_filter)?,
            assigned: config.clone(),
        })
    }

    /// Whether an object passes the filters: `Ok(Ok(Some(label)))` with the first filter it
    /// passes, `Ok(Ok(None))` when there are none, `Ok(Err(why))` with each filter's false clause.
    fn verdict(
        filters: &[Filter],
        o: &SourceObject,
    ) -> Result<Result<Option<Arc<str>>, String>, MultiValued> {
        if filters.is_empty() {
            return Ok(Ok(None));
        }
        let mut why = Vec::new();
        for f in filters {
            match f.first_false(o)? {
                None => return Ok(Ok(Some(f.label.clone()))),
                Some(clause) => why.push(format!("{}: {clause}", f.label)),
            }
        }
        Ok(Err(why.join("; ")))
    }
}

/// The in-scope part of a directory.
#[derive(Debug, Default)]
pub(crate) struct Scoped<'a> {
    /// In-scope users, with why each is in scope.
    pub(crate) users: BTreeMap<SourceId, (&'a SourceObject, Arc<str>)>,
    pub(crate) groups: Vec<ScopedGroup<'a>>,
    /// Users of the source that are out of scope, with why.
    pub(crate) out: BTreeMap<SourceId, Out>,
    /// Objects a scoping filter cannot evaluate (a compared attribute holds several values),
    /// with why: neither in nor out of scope, so never deprovisioned for it.
    pub(crate) rejected: Vec<(SourceId, String)>,
    pub(crate) rejected_groups: Vec<(SourceId, String)>,
}

/// A source user out of a target's scope.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Out {
    pub(crate) why: Arc<str>,
    /// `skip_out_of_scope_deletions`: the account is left as it is and forgotten (not for a
    /// disabled user, whose deactivation still applies).
    pub(crate) keep: bool,
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

/// Applies a target's scope to a directory read.
pub(crate) fn apply<'a>(dir: &'a Directory, scope: &Scope) -> Result<Scoped<'a>, ScopeError> {
    Ok(filter(dir, scope, assignments(dir, &scope.assigned)?))
}

/// The assignments narrowed by the scoping filters, and the rest of the source's users out.
fn filter<'a>(dir: &'a Directory, scope: &Scope, mut assigned: Scoped<'a>) -> Scoped<'a> {
    let mut out = Scoped::default();
    if scope.filters.is_empty() {
        out.users = std::mem::take(&mut assigned.users);
    }
    for (id, (user, why)) in assigned.users {
        match Scope::verdict(&scope.filters, user) {
            Ok(Ok(passed)) => {
                let why = match passed {
                    Some(filter) => Arc::from(format!("{why}, and passes {filter}")),
                    None => why,
                };
                out.users.insert(id, (user, why));
            }
            Ok(Err(failed)) => {
                let why = Arc::from(format!("{why}, but fails the scoping filters: {failed}"));
                out.out.insert(id, leaving(user, &scope.assigned, why));
            }
            Err(MultiValued(a)) => out.rejected.push((id, multi_valued(&a))),
        }
    }
    let not_assigned: Arc<str> = Arc::from("not assigned to this target");
    for u in &dir.users {
        if !out.users.contains_key(&u.id) && !out.out.contains_key(&u.id) {
            out.out.insert(
                u.id.clone(),
                leaving(u, &scope.assigned, not_assigned.clone()),
            );
        }
    }
    for r in &out.rejected {
        out.out.remove(&r.0);
    }
    for mut g in assigned.groups {
        match Scope::verdict(&scope.group_filters, &g.group.object) {
            Ok(Ok(_)) => {
                g.members.retain(|m| out.users.contains_key(m));
                out.groups.push(g);
            }
            Ok(Err(_)) => {}
            Err(MultiValued(a)) => out
                .rejected_groups
                .push((g.group.object.id.clone(), multi_valued(&a))),
        }
    }
    out
}

fn multi_valued(attribute: &str) -> String {
    format!("{attribute} holds several values, and a scoping clause compares one: the object is neither in nor out of scope until it holds one")
}

/// A user leaving the scope: kept (forgotten) under `skip_out_of_scope_deletions` unless the
/// directory disabled them.
fn leaving(user: &SourceObject, scope: &ScopeConfig, why: Arc<str>) -> Out {
    let disabled = || {
        user.get_str("IsSoftDeleted")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    };
    Out {
        why,
        keep: scope.skip_out_of_scope_deletions && !disabled(),
    }
}

/// The assignments alone: assigned groups with their direct user members, and every user
/// assigned directly, through a group or by `all`, each with why.
fn assignments<'a>(dir: &'a Directory, scope: &ScopeConfig) -> Result<Scoped<'a>, ScopeError> {
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
        // An objectGUID may be written in upper case or braced: the map has the exact ids only.
        let found = users
            .get(&SourceId(id.clone()))
            .copied()
            .or_else(|| crate::source::find_by_guid(&dir.users, id));
        match found {
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

    fn scope(c: ScopeConfig) -> Scope {
        Scope::compile(&c).expect("compiles")
    }

    fn ids(s: &Scoped) -> Vec<String> {
        s.users.keys().map(|k| k.0.clone()).collect()
    }

    #[test]
    fn direct_members_only_nested_groups_contribute_nobody() {
        let d = dir();
        let s = apply(
            &d,
            &scope(ScopeConfig {
                groups: vec!["Bounty Hunters".into()],
                ..Default::default()
            }),
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
                &scope(ScopeConfig {
                    groups: vec![key.into()],
                    ..Default::default()
                }),
            )
            .expect(key);
            assert_eq!(s.groups[0].group.object.id.as_str(), "g1", "{key}");
        }
        let e = apply(
            &d,
            &scope(ScopeConfig {
                groups: vec!["Twin".into()],
                ..Default::default()
            }),
        )
        .expect_err("ambiguous");
        assert_eq!(e, ScopeError::GroupAmbiguous("Twin".into(), 2));
        let e = apply(
            &d,
            &scope(ScopeConfig {
                groups: vec!["Gone".into()],
                ..Default::default()
            }),
        )
        .expect_err("missing");
        assert_eq!(e, ScopeError::GroupNotFound("Gone".into()));
    }

    #[test]
    fn directly_assigned_and_all() {
        let d = dir();
        let s = apply(
            &d,
            &scope(ScopeConfig {
                users: vec!["u3".into(), "nobody".into()],
                ..Default::default()
            }),
        )
        .expect("ok");
        assert_eq!(ids(&s), ["u3"]);
        let s = apply(
            &d,
            &scope(ScopeConfig {
                all: true,
                ..Default::default()
            }),
        )
        .expect("ok");
        assert_eq!(ids(&s), ["u1", "u2", "u3", "u4"]);
        assert!(s.groups.is_empty());
    }

    #[test]
    fn a_directly_assigned_object_guid_in_upper_case_or_braced_is_found() {
        let d = parse(
            Path::new("d.json"),
            br#"{"users": [{"objectId": "00112233-4455-6677-8899-aabbccddeeff"}, {"objectId": "u2"}],
                 "groups": []}"#,
        )
        .expect("valid");
        for key in [
            "00112233-4455-6677-8899-AABBCCDDEEFF",
            "{00112233-4455-6677-8899-aabbccddeeff}",
            "{00112233-4455-6677-8899-AABBCCDDEEFF}",
        ] {
            let s = apply(
                &d,
                &scope(ScopeConfig {
                    users: vec![key.into(), "U2".into()],
                    ..Default::default()
                }),
            )
            .expect("ok");
            // The user is known by its own objectId; an id that is not a GUID stays exact.
            assert_eq!(ids(&s), ["00112233-4455-6677-8899-aabbccddeeff"], "{key}");
        }
    }

    fn filtered_dir() -> Directory {
        parse(
            Path::new("d.json"),
            br#"{"users": [{"objectId": "u1", "department": "Sales"},
                           {"objectId": "u2", "department": "Sales", "accountEnabled": false},
                           {"objectId": "u3", "department": "Ops"},
                           {"objectId": "u4", "department": ["Ops", "Sales"]},
                           {"objectId": "u5"}],
                "groups": [
                  {"objectId": "g1", "displayName": "Staff", "members": ["u1", "u2", "u3", "u4"]},
                  {"objectId": "g2", "displayName": "App-Sales", "members": ["u1"]}
                ]}"#,
        )
        .expect("valid")
    }

    fn sales_only(skip: bool) -> Scope {
        let config = crate::target::parse(
            Path::new("x.toml"),
            &format!(
                "[source]\nkind = \"json\"\npath = \"d.json\"\n\
                 [[target]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/v2\"\ntoken_env = \"T\"\n\
                 [target.scope]\ngroups = [\"Staff\", \"App-Sales\"]\nskip_out_of_scope_deletions = {skip}\n\
                 [[target.scope.filter]]\nname = \"Sales\"\n\
                 clauses = [{{ attribute = \"department\", operator = \"EQUALS\", value = \"Sales\" }}]\n\
                 [[target.scope.group_filter]]\n\
                 clauses = [{{ attribute = \"displayName\", operator = \"REGEX MATCH\", value = \"^App-\" }}]\n"
            ),
        )
        .expect("valid");
        Scope::compile(&config.targets[0].scope).expect("compiles")
    }

    #[test]
    fn filters_keep_assigned_users_out_and_say_why() {
        let d = filtered_dir();
        let s = apply(&d, &sales_only(false)).expect("ok");
        assert_eq!(ids(&s), ["u1", "u2"]);
        assert_eq!(
            &*s.users[&SourceId::from("u1")].1,
            "direct member of assigned group \"Staff\", and passes scoping filter \"Sales\""
        );
        let out: Vec<(&str, &str, bool)> = s
            .out
            .iter()
            .map(|(id, o)| (id.as_str(), &*o.why, o.keep))
            .collect();
        assert_eq!(
            out,
            [
                (
                    "u3",
                    "direct member of assigned group \"Staff\", but fails the scoping filters: scoping filter \"Sales\": department EQUALS \"Sales\" is false",
                    false
                ),
                ("u5", "not assigned to this target", false),
            ]
        );
        // u4's department holds two values: neither in nor out, so never deprovisioned for it.
        assert_eq!(s.rejected.len(), 1);
        assert_eq!(s.rejected[0].0.as_str(), "u4");
        // Only the group that passes the group filter is provisioned, with its in-scope members.
        let groups: Vec<&str> = s
            .groups
            .iter()
            .map(|g| g.group.object.id.as_str())
            .collect();
        assert_eq!(groups, ["g2"]);
        assert_eq!(
            ids(&apply(
                &d,
                &scope(ScopeConfig {
                    groups: vec!["Staff".into()],
                    ..Default::default()
                })
            )
            .expect("ok"))
            .len(),
            4
        );
    }

    #[test]
    fn skip_out_of_scope_deletions_keeps_all_but_the_disabled() {
        let d = filtered_dir();
        let s = apply(&d, &sales_only(true)).expect("ok");
        let keep: Vec<(&str, bool)> = s.out.iter().map(|(id, o)| (id.as_str(), o.keep)).collect();
        assert_eq!(keep, [("u3", true), ("u5", true)]);
        // A disabled user who leaves the scope is still deprovisioned.
        let mut d = filtered_dir();
        d.users[2].set(
            "IsSoftDeleted",
            crate::source::AttrValue::Single("True".into()),
        );
        let s = apply(&d, &sales_only(true)).expect("ok");
        assert!(!s.out[&SourceId::from("u3")].keep);
    }

    #[test]
    fn explain_names_the_assignment_and_the_clause() {
        let d = filtered_dir();
        let (lines, yes) = explain(&d, &sales_only(false), &SourceId::from("u3")).expect("ok");
        assert!(!yes);
        assert_eq!(
            lines,
            [
                "assigned group \"Staff\" (g1): direct member: yes",
                "assigned group \"App-Sales\" (g2): direct member: no",
                "scoping filter \"Sales\": department EQUALS \"Sales\"",
                "verdict: not in scope (direct member of assigned group \"Staff\", but fails the scoping filters: scoping filter \"Sales\": department EQUALS \"Sales\" is false)",
            ]
        );
        let (lines, yes) = explain(&d, &sales_only(false), &SourceId::from("u1")).expect("ok");
        assert!(yes);
        assert_eq!(
            lines.last().map(String::as_str),
            Some("verdict: in scope (direct member of assigned group \"Staff\", and passes scoping filter \"Sales\")")
        );
    }
}
