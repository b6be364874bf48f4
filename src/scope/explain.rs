//! Why one user is in or out of a target's scope, line by line, for `provision`.

use super::{assignments, filter, Scope, ScopeError};
use crate::ids::SourceId;
use crate::source::Directory;

/// Each assignment with its verdict for `id`, then the verdict with its reason (the
/// assignment, and the filter passed or the clause that failed); and whether it is in scope.
pub(crate) fn explain(
    dir: &Directory,
    scope: &Scope,
    id: &SourceId,
) -> Result<(Vec<String>, bool), ScopeError> {
    let mut lines = Vec::new();
    if scope.assigned.all {
        lines.push("all users are assigned (all = true)".to_owned());
    }
    let assigned = assignments(dir, &scope.assigned)?;
    for g in &assigned.groups {
        let name = g
            .group
            .object
            .get_str("displayName")
            .unwrap_or(g.group.object.id.as_str());
        let verdict = match (g.group.members.contains(id), g.members.contains(id)) {
            (true, true) => "direct member: yes",
            (true, false) => "listed as a member, but not a user of the source",
            (false, _) => "direct member: no",
        };
        lines.push(format!(
            "assigned group {name:?} ({}): {verdict}",
            g.group.object.id
        ));
    }
    if !scope.assigned.users.is_empty() {
        let yes = scope.assigned.users.iter().any(|u| u == id.as_str());
        lines.push(format!(
            "directly assigned users: {}",
            if yes { "yes" } else { "no" }
        ));
    }
    for f in &scope.filters {
        lines.push(format!("{}: {}", f.label, f.describe()));
    }
    let scoped = filter(dir, scope, assigned);
    let verdict = if let Some((_, why)) = scoped.users.get(id) {
        format!("verdict: in scope ({why})")
    } else if let Some(out) = scoped.out.get(id) {
        format!("verdict: not in scope ({})", out.why)
    } else if let Some((_, why)) = scoped.rejected.iter().find(|(r, _)| r == id) {
        format!("verdict: neither in nor out of scope ({why})")
    } else {
        "verdict: not in scope (not in the source)".to_owned()
    };
    lines.push(verdict);
    Ok((lines, scoped.users.contains_key(id)))
}
