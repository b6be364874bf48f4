//! The desired state of one target: the source read, scoped and mapped.

use crate::audit::Kind;
use crate::ids::SourceId;
use crate::mapping::{self, Desired, MappingError};
use crate::plan::DesiredGroup;
use crate::scope::{self, Out, ScopeError};
use crate::source::{Directory, SourceObject};
use crate::target::Target;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The desired state of one target, computed from one source read.
#[derive(Debug, Default)]
pub(crate) struct DesiredState {
    pub(crate) users: BTreeMap<SourceId, Desired>,
    pub(crate) groups: BTreeMap<SourceId, DesiredGroup>,
    /// Objects that could not be mapped, with why; they are skipped, never deprovisioned.
    pub(crate) rejected: Vec<(SourceId, Kind, String)>,
    pub(crate) protected: BTreeSet<SourceId>,
    /// Source users out of this target's scope, with why (a deprovision names it).
    pub(crate) out_of_scope: BTreeMap<SourceId, Out>,
    /// Why each desired user is in scope (a create names it).
    pub(crate) why_in: BTreeMap<SourceId, Arc<str>>,
}

/// Scopes and maps a directory read for one target. Attributes the target refuses
/// (`refused`) are only sent on create, never planned as changes.
///
/// Given the directory by value (the last or only target of a run), each source object is
/// dropped once mapped, so that a read of a million users is never held next to its whole
/// desired state; borrowed, the directory stays for the next target. The result is the same.
pub(crate) fn desired_state(
    dir: Cow<'_, Directory>,
    target: &Target,
    refused: &dyn Fn(&str) -> bool,
) -> Result<DesiredState, ScopeError> {
    let mut out = DesiredState::default();
    for r in &dir.rejected {
        if let Some(id) = &r.id {
            out.protected.insert(id.clone());
            out.rejected
                .push((id.clone(), Kind::User, r.reason.clone()));
        }
    }
    // The groups are few: map them while the scope borrows the directory, and keep each one's
    // member set, which the desired group takes over once the users are mapped.
    let (in_scope, groups) = {
        let scoped = scope::apply(&dir, &target.scope)?;
        let rejected = (scoped.rejected.iter().map(|r| (r, Kind::User)))
            .chain(scoped.rejected_groups.iter().map(|r| (r, Kind::Group)));
        for ((id, why), kind) in rejected {
            out.protected.insert(id.clone());
            out.rejected.push((id.clone(), kind, why.clone()));
        }
        out.out_of_scope = scoped.out;
        let groups: Vec<_> = scoped
            .groups
            .into_iter()
            .map(|g| {
                let mapped = map(
                    &target.mappings.groups,
                    &g.group.object,
                    "displayName",
                    refused,
                );
                (g.group.object.id.clone(), mapped, g.members)
            })
            .collect();
        let in_scope: BTreeMap<SourceId, Arc<str>> = scoped
            .users
            .into_iter()
            .map(|(id, (_, why))| (id, why))
            .collect();
        (in_scope, groups)
    };
    let users: Box<dyn Iterator<Item = Cow<'_, SourceObject>>> = match dir {
        Cow::Borrowed(d) => Box::new(d.users.iter().rev().map(Cow::Borrowed)),
        Cow::Owned(d) => Box::new(d.users.into_iter().rev().map(Cow::Owned)),
    };
    // Where an id appears twice, the scope took its last object: so does this walk backwards.
    let mut failed = BTreeMap::new();
    for user in users {
        if !in_scope.contains_key(&user.id)
            || out.users.contains_key(&user.id)
            || failed.contains_key(&user.id)
        {
            continue;
        }
        match map(&target.mappings.users, &user, "userName", refused) {
            Ok(d) => {
                out.users.insert(user.id.clone(), d);
            }
            Err(e) => {
                failed.insert(user.id.clone(), e.to_string());
            }
        }
    }
    out.why_in = in_scope;
    // Rejections in id order.
    for (id, why) in failed {
        out.why_in.remove(&id);
        out.protected.insert(id.clone());
        out.rejected.push((id, Kind::User, why));
    }
    for (id, mapped, mut members) in groups {
        match mapped {
            Ok(desired) => {
                members.retain(|m| out.users.contains_key(m));
                out.groups.insert(id, DesiredGroup { desired, members });
            }
            Err(e) => {
                out.protected.insert(id.clone());
                out.rejected.push((id, Kind::Group, e.to_string()));
            }
        }
    }
    Ok(out)
}

/// Maps one object, requires the attribute SCIM requires, and leaves out refused attributes.
fn map(
    rules: &[mapping::Rule],
    object: &SourceObject,
    required: &str,
    refused: &dyn Fn(&str) -> bool,
) -> Result<Desired, MappingError> {
    let mut d = mapping::map(rules, object)?;
    if !d.attrs.contains_key(required) {
        return Err(MappingError {
            target: required.to_owned(),
            message: "is empty, and SCIM requires it".to_owned(),
        });
    }
    // A refused attribute is no longer kept in step, but still sent when the resource is
    // created (a target may take on POST what it refuses in a PATCH).
    let refused_paths: Vec<String> = d.attrs.keys().filter(|p| refused(p)).cloned().collect();
    for path in refused_paths {
        if let Some(v) = d.attrs.remove(&path) {
            d.on_create.insert(path, v);
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owned_directory_gives_what_the_borrowed_one_gives() {
        let config = crate::target::parse(
            std::path::Path::new("x.toml"),
            "[source]\nkind = \"json\"\npath = \"d.json\"\n[scope]\ngroups = [\"g1\", \"g2\"]\n\
             [[target]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/v2\"\ntoken_env = \"T\"\n\
             [[target.user_mapping]]\ntarget = \"userName\"\nsource = \"mail\"\nmatching_precedence = 1\n\
             [[target.user_mapping]]\ntarget = \"title\"\nsource = \"title\"\n",
        )
        .expect("valid");
        // u3 has no mail (rejected), u5 is in no assigned group, g3 is not assigned, and u9 is
        // not a user.
        let dir = crate::source::json::parse(
            std::path::Path::new("d.json"),
            br#"{"users": [{"objectId": "u4", "mail": "d@x", "title": "T"}, {"objectId": "u1", "mail": "a@x"},
                           {"objectId": "u3"}, {"objectId": "u2", "mail": "b@x"},
                           {"objectId": "u5", "mail": "e@x"}],
                "groups": [
                  {"objectId": "g1", "displayName": "One", "members": ["u4", "u1", "u3", "u9"]},
                  {"objectId": "g2", "displayName": "Two", "members": ["u2", "u4"]},
                  {"objectId": "g3", "displayName": "Three", "members": ["u5"]}
                ]}"#,
        )
        .expect("valid");
        let target = Target::build(&config.targets[0]).expect("builds");
        let none = |_: &str| false;
        let borrowed = desired_state(Cow::Borrowed(&dir), &target, &none).expect("in scope");
        let owned = desired_state(Cow::Owned(dir), &target, &none).expect("in scope");
        assert_eq!(format!("{owned:?}"), format!("{borrowed:?}"));
        assert_eq!(owned.users.len(), 3);
        assert_eq!(owned.rejected.len(), 1);
        assert!(owned.protected.contains(&SourceId::from("u3")));
        assert_eq!(owned.groups[&SourceId::from("g1")].members.len(), 2);
    }

    #[test]
    fn refused_attributes_are_only_sent_on_create() {
        let config = crate::target::parse(
            std::path::Path::new("x.toml"),
            "[source]\nkind = \"json\"\npath = \"d.json\"\n[scope]\nall = true\n\
             [[target]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/v2\"\ntoken_env = \"T\"\n\
             [[target.user_mapping]]\ntarget = \"userName\"\nsource = \"mail\"\nmatching_precedence = 1\n\
             [[target.user_mapping]]\ntarget = \"title\"\nsource = \"title\"\n",
        )
        .expect("valid");
        let dir = crate::source::json::parse(
            std::path::Path::new("d.json"),
            br#"{"users": [{"objectId": "u1", "mail": "a@x", "title": "T"}], "groups": []}"#,
        )
        .expect("valid");
        let target = Target::build(&config.targets[0]).expect("builds");
        let title = |p: &str| p == "title";
        let want = desired_state(Cow::Owned(dir), &target, &title).expect("ok");
        let d = &want.users[&SourceId::from("u1")];
        assert_eq!(d.attrs.keys().collect::<Vec<_>>(), ["userName"]);
        assert_eq!(d.on_create.keys().collect::<Vec<_>>(), ["title"]);
    }
}
