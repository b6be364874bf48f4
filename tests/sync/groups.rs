//! Groups: nested members, a rename with membership changes, and a large group filled in
//! batches.

use crate::common::env::{group, set, three_users, user};
use crate::{base, id, start, ServerKind};
use serde_json::{json, Value};
use std::collections::BTreeMap;

both!(nested_group_members_are_not_provisioned);
fn nested_group_members_are_not_provisioned(kind: ServerKind) {
    let env = start(kind, r#"groups = ["Outer"]"#, "");
    env.directory(
        &three_users(),
        &[
            group("g-outer", "Outer", &["u-ada", "g-inner"]),
            group("g-inner", "Inner", &["u-bob", "u-cy"]),
        ],
    );
    env.sync(&[]).assert_success();
    assert_eq!(env.users().keys().collect::<Vec<_>>(), ["u-ada"]);
    assert_eq!(
        env.groups(),
        BTreeMap::from([("Outer".to_owned(), set(&["u-ada"]))])
    );
}

both!(a_group_rename_and_membership_changes_in_one_patch);
fn a_group_rename_and_membership_changes_in_one_patch(kind: ServerKind) {
    let django = kind == ServerKind::Django;
    let env = start(kind, r#"groups = ["g1"]"#, "");
    env.directory(
        &three_users(),
        &[
            group("g1", "Staff", &["u-ada", "u-bob"]),
            group("g2", "Other", &["u-cy"]),
        ],
    );
    env.sync(&[]).assert_success();
    assert_eq!(
        env.groups(),
        BTreeMap::from([("Staff".to_owned(), set(&["u-ada", "u-bob"]))])
    );
    let gid = id(&env.server.group_by_display_name("Staff").expect("group"));
    let bob = id(&env.users()["u-bob"]);

    // Renamed, Bob out, Cy in (directly assigned, so Cy is in scope).
    env.directory(&three_users(), &[group("g1", "Crew", &["u-ada", "u-cy"])]);
    let out = env.sync(&[]);
    out.assert_success();
    let group_patches: Vec<_> = env
        .proxy
        .records()
        .into_iter()
        .filter(|r| r.route() == format!("{}/Groups/{gid}", base(kind)))
        .collect();
    let cy = id(&env.users()["u-cy"]);
    let rename = json!({"op": "replace", "path": "displayName", "value": "Crew"});
    let add = json!({"op": "add", "path": "members", "value": [{"value": cy}]});
    let remove = json!({"op": "remove", "path": format!("members[value eq \"{bob}\"]")});
    let all_in_one = json!([rename, add, remove]);
    let sent: Vec<(Value, u16)> = group_patches
        .iter()
        .map(|r| {
            (
                r.body.as_ref().expect("body")["Operations"].clone(),
                r.status,
            )
        })
        .collect();
    if django {
        // BEHAVIOUR.md: a replace of displayName is 501 and fails the whole PATCH, as does a
        // removal by value filter. Refused whole, the PATCH goes again with additions and
        // removals apart; refused again, the rename goes alone and is learned refused; then
        // the addition is taken, and the removal is taken as a value list.
        assert_eq!(
            env.groups(),
            BTreeMap::from([("Staff".to_owned(), set(&["u-ada", "u-cy"]))])
        );
        assert_eq!(
            sent,
            [
                (all_in_one, 501),
                (json!([rename, add]), 501),
                (json!([rename]), 501),
                (json!([add]), 200),
                (json!([remove]), 501),
                (
                    json!([{"op": "remove", "path": "members", "value": [{"value": bob}]}]),
                    200
                ),
            ],
            "{:?}",
            env.proxy.calls()
        );
        // The refusal is said with the status's meaning: the server's detail is empty.
        let said =
            format!("the target refuses displayName (PATCH /Groups/{gid}: 501 Not Implemented)");
        assert!(out.stderr.contains(&said), "{out}");
        // What was refused is not sent again.
        env.sync(&[]).assert_success();
        assert_eq!(env.proxy.calls(), Vec::<String>::new());
    } else {
        assert_eq!(
            env.groups(),
            BTreeMap::from([("Crew".to_owned(), set(&["u-ada", "u-cy"]))])
        );
        assert_eq!(sent, [(all_in_one, 204)], "{:?}", env.proxy.calls());
    }
    // Bob left scope with the group change: deactivated, not deleted.
    assert_eq!(env.users()["u-bob"]["active"], json!(false));
}

both!(a_large_group_is_filled_in_batches_of_at_most_100_members);
fn a_large_group_is_filled_in_batches_of_at_most_100_members(kind: ServerKind) {
    // AWS IAM Identity Center takes at most 100 member changes per request.
    let env = start(
        kind,
        r#"groups = ["Everyone"]"#,
        "concurrency = 4\n[target.compat]\nmember_batch = 100",
    );
    let users: Vec<Value> = (0..230)
        .map(|i| user(&format!("u{i:03}"), &format!("N{i}"), "Person"))
        .collect();
    let ids: Vec<String> = (0..230).map(|i| format!("u{i:03}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    env.directory(&users, &[group("g", "Everyone", &refs)]);
    env.sync(&[]).assert_success();
    assert_eq!(env.groups()["Everyone"].len(), 230);
    let records = env.proxy.records();
    let post = records
        .iter()
        .find(|r| r.method == "POST" && r.route() == format!("{}/Groups", base(kind)))
        .expect("group POST");
    assert_eq!(
        post.body.as_ref().expect("body")["members"]
            .as_array()
            .expect("members")
            .len(),
        100
    );
    let adds: Vec<usize> = records
        .iter()
        .filter(|r| {
            r.method == "PATCH" && r.route().starts_with(&format!("{}/Groups/", base(kind)))
        })
        .map(|r| {
            r.body.as_ref().expect("body")["Operations"][0]["value"]
                .as_array()
                .expect("value")
                .len()
        })
        .collect();
    // BEHAVIOUR.md: django-scim2 ignores members on POST /Groups: all 230 go by PATCH.
    let want: &[usize] = match kind {
        ServerKind::Scim2Server => &[100, 30],
        ServerKind::Django => &[100, 100, 30],
    };
    assert_eq!(adds, want);
}
