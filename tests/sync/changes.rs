//! Incremental cycles: an attribute changed or gone, users leaving scope (deactivated or
//! deleted), disabled users, the deprovision threshold, and what `plan` and `--dry-run` show.
//!
//! The attribute a test changes is the surname: on scim2-server it goes into
//! `name.formatted`, on django-scim2 (whose configuration maps the name parts, see
//! tests/sync.rs) into `name.familyName`.

use crate::common::env::{group, set, three_users, ENTERPRISE};
use crate::{base, id, patched, start, ServerKind};
use serde_json::json;

both!(one_attribute_change_sends_one_patch_of_that_attribute);
fn one_attribute_change_sends_one_patch_of_that_attribute(kind: ServerKind) {
    let django = kind == ServerKind::Django;
    let env = start(kind, r#"groups = ["Staff"]"#, "");
    env.directory(&three_users(), &[group("g1", "Staff", &["u-ada", "u-bob"])]);
    env.sync(&[]).assert_success();
    let bob_id = id(&env.users()["u-bob"]);

    let mut users = three_users();
    users[1]["surname"] = json!("Newname");
    env.directory(&users, &[group("g1", "Staff", &["u-ada", "u-bob"])]);
    let out = env.sync(&[]);
    out.assert_success();
    assert!(
        out.stdout
            .contains("users created 0, updated 1, deprovisioned 0, unchanged 1"),
        "{}",
        out.stdout
    );
    assert_eq!(
        env.proxy.calls(),
        [format!(
            "PATCH {}/Users/{bob_id} {}",
            base(kind),
            patched(kind)
        )]
    );
    let body = env.proxy.records()[0].body.clone().expect("body");
    let change = if django {
        json!([{"op": "replace", "path": "name.familyName", "value": "Newname"}])
    } else {
        json!([{"op": "replace", "path": "name.formatted", "value": "Bob Newname"}])
    };
    assert_eq!(body["Operations"], change);
    // On django-scim2, name.formatted is computed from the name parts (BEHAVIOUR.md).
    assert_eq!(env.users()["u-bob"]["name"]["formatted"], "Bob Newname");

    // A value that disappears from the source is removed from the target: the department on
    // scim2-server; the surname on django-scim2, which refuses every PATCH `remove` with 501
    // (BEHAVIOUR.md), so the account keeps it, the refusal is said, and nothing is sent again.
    let gone = if django { "surname" } else { "department" };
    users[1].as_object_mut().expect("object").remove(gone);
    env.directory(&users, &[group("g1", "Staff", &["u-ada", "u-bob"])]);
    let out = env.sync(&[]);
    out.assert_success();
    let body = env.proxy.records()[0].body.clone().expect("body");
    if django {
        assert_eq!(
            body["Operations"],
            json!([{"op": "remove", "path": "name.familyName"}])
        );
        assert_eq!(
            env.proxy.calls(),
            [format!("PATCH {}/Users/{bob_id} 501", base(kind))]
        );
        assert!(
            out.stdout
                .contains("users created 0, updated 0, deprovisioned 0, unchanged 2"),
            "{out}"
        );
        // The refusal is said with the status's meaning: the server's detail is empty.
        let said = format!(
            "the target refuses to clear name.familyName (PATCH /Users/{bob_id}: 501 Not Implemented)"
        );
        assert!(out.stderr.contains(&said), "{out}");
        assert_eq!(env.users()["u-bob"]["name"]["familyName"], "Newname");
        env.sync(&[]).assert_success();
        assert_eq!(env.proxy.calls(), Vec::<String>::new());
    } else {
        assert_eq!(
            body["Operations"],
            json!([{"op": "remove", "path": format!("{ENTERPRISE}:department")}])
        );
        assert!(env.users()["u-bob"]
            .get(ENTERPRISE)
            .and_then(|e| e.get("department"))
            .is_none());
    }
}

both!(a_user_leaving_scope_is_deactivated_not_deleted);
fn a_user_leaving_scope_is_deactivated_not_deleted(kind: ServerKind) {
    let env = start(kind, r#"groups = ["Staff"]"#, "");
    env.directory(&three_users(), &[group("g1", "Staff", &["u-ada", "u-bob"])]);
    env.sync(&[]).assert_success();
    let ada_id = id(&env.users()["u-ada"]);

    env.directory(&three_users(), &[group("g1", "Staff", &["u-bob"])]);
    let out = env.sync(&[]);
    out.assert_success();
    assert!(
        out.stdout
            .contains("users created 0, updated 0, deprovisioned 1, unchanged 1"),
        "{}",
        out.stdout
    );
    let users = env.users();
    assert_eq!(users.len(), 2, "nothing was deleted");
    assert_eq!(users["u-ada"]["active"], json!(false));
    assert_eq!(users["u-bob"]["active"], json!(true));
    assert_eq!(env.groups()["Staff"], set(&["u-bob"]));
    let records = env.proxy.records();
    let deactivate = records
        .iter()
        .find(|r| r.route() == format!("{}/Users/{ada_id}", base(kind)))
        .expect("a PATCH of Ada");
    assert_eq!(deactivate.method, "PATCH");
    assert_eq!(
        deactivate.body.as_ref().expect("body")["Operations"],
        json!([{"op": "replace", "path": "active", "value": false}])
    );

    // Deactivated once is enough: the next cycle sends nothing.
    env.sync(&[]).assert_success();
    assert_eq!(env.proxy.calls(), Vec::<String>::new());

    // Back in scope: reactivated, same account, back in the group.
    env.directory(&three_users(), &[group("g1", "Staff", &["u-ada", "u-bob"])]);
    env.sync(&[]).assert_success();
    let users = env.users();
    assert_eq!(users["u-ada"]["active"], json!(true));
    assert_eq!(users["u-ada"]["id"], json!(ada_id));
    assert_eq!(env.groups()["Staff"], set(&["u-ada", "u-bob"]));
}

both!(deprovision_delete_mode_deletes_the_account);
fn deprovision_delete_mode_deletes_the_account(kind: ServerKind) {
    let env = start(kind, r#"groups = ["Staff"]"#, r#"deprovision = "delete""#);
    env.directory(&three_users(), &[group("g1", "Staff", &["u-ada", "u-bob"])]);
    env.sync(&[]).assert_success();
    let ada_id = id(&env.users()["u-ada"]);
    env.directory(&three_users(), &[group("g1", "Staff", &["u-bob"])]);
    let out = env.sync(&[]);
    out.assert_success();
    assert!(
        env.writes()
            .contains(&format!("DELETE {}/Users/{ada_id} 204", base(kind))),
        "{:?}",
        env.writes()
    );
    assert_eq!(env.users().keys().collect::<Vec<_>>(), ["u-bob"]);
    assert_eq!(env.groups()["Staff"], set(&["u-bob"]));
    env.sync(&[]).assert_success();
    assert_eq!(env.proxy.calls(), Vec::<String>::new());
}

both!(a_disabled_user_is_provisioned_inactive_and_reenabled_by_patch);
fn a_disabled_user_is_provisioned_inactive_and_reenabled_by_patch(kind: ServerKind) {
    let env = start(kind, r#"groups = ["Staff"]"#, "");
    let mut users = three_users();
    users[0]["accountEnabled"] = json!(false);
    users[1]["deletedDateTime"] = json!("2026-01-01T00:00:00Z");
    env.directory(&users, &[group("g1", "Staff", &["u-ada", "u-bob", "u-cy"])]);
    env.sync(&[]).assert_success();
    let got = env.users();
    assert_eq!(got["u-ada"]["active"], json!(false));
    assert_eq!(got["u-bob"]["active"], json!(false));
    assert_eq!(got["u-cy"]["active"], json!(true));

    users[0]["accountEnabled"] = json!(true);
    env.directory(&users, &[group("g1", "Staff", &["u-ada", "u-bob", "u-cy"])]);
    env.sync(&[]).assert_success();
    assert_eq!(
        env.proxy.calls(),
        [format!(
            "PATCH {}/Users/{} {}",
            base(kind),
            id(&got["u-ada"]),
            patched(kind)
        )]
    );
    assert_eq!(
        env.proxy.records()[0].body.as_ref().expect("body")["Operations"],
        json!([{"op": "replace", "path": "active", "value": true}])
    );
    assert_eq!(env.users()["u-ada"]["active"], json!(true));
}

both!(deprovisions_over_the_threshold_are_held_until_allowed);
fn deprovisions_over_the_threshold_are_held_until_allowed(kind: ServerKind) {
    let env = start(kind, r#"groups = ["Staff"]"#, "deletion_threshold = 1");
    env.directory(
        &three_users(),
        &[group("g1", "Staff", &["u-ada", "u-bob", "u-cy"])],
    );
    env.sync(&[]).assert_success();
    env.directory(&three_users(), &[group("g1", "Staff", &["u-cy"])]);
    let out = env.sync(&[]);
    out.assert_code(1);
    assert!(
        out.stderr
            .contains("held 2 deprovisions: more than deletion_threshold = 1"),
        "{}",
        out.stderr
    );
    assert!(env.users().values().all(|u| u["active"] == json!(true)));
    env.sync(&["--allow-deletes"]).assert_success();
    let users = env.users();
    assert_eq!(users["u-ada"]["active"], json!(false));
    assert_eq!(users["u-bob"]["active"], json!(false));
    assert_eq!(env.groups()["Staff"], set(&["u-cy"]));
}

both!(plan_and_dry_run_send_no_request);
fn plan_and_dry_run_send_no_request(kind: ServerKind) {
    let django = kind == ServerKind::Django;
    let env = start(kind, r#"groups = ["Staff"]"#, "");
    env.directory(&three_users(), &[group("g1", "Staff", &["u-ada"])]);
    env.proxy.clear();
    let out = env.scimsync(&["plan"]);
    out.assert_success();
    // The plan names a user by its first matching value: the mail, or on django-scim2 the
    // userName.
    let create = if django {
        "create user u-ada <u-ada>"
    } else {
        "create user u-ada <ada.lovelace@example.org>"
    };
    assert!(out.stdout.contains(create), "{}", out.stdout);
    assert!(
        out.stdout
            .contains(r#"create group g1: displayName = "Staff""#),
        "{}",
        out.stdout
    );
    let out = env.sync(&["--dry-run"]);
    out.assert_success();
    assert_eq!(env.proxy.count(), 0);
    assert!(env.server.list_users().is_empty());

    env.sync(&[]).assert_success();
    let mut users = three_users();
    users[0]["givenName"] = json!("Augusta");
    env.directory(&users, &[group("g1", "Staff", &["u-ada"])]);
    env.proxy.clear();
    let out = env.scimsync(&["plan"]);
    let change = if django {
        r#"name.givenName: "Ada" -> "Augusta""#
    } else {
        r#"name.formatted: "Ada Lovelace" -> "Augusta Lovelace""#
    };
    assert!(out.stdout.contains(change), "{}", out.stdout);
    assert_eq!(env.proxy.count(), 0);
}

/// django-scim2 takes no PATCH `remove` at all but takes a `replace` of the name parts
/// (BEHAVIOUR.md): a removal it refused for one account must not stop the replacements of
/// that attribute for the others. Only django-scim2: scim2-server takes every removal.
#[test]
fn a_refused_removal_does_not_stop_later_replacements_django() {
    let kind = ServerKind::Django;
    let env = start(kind, r#"groups = ["Staff"]"#, "");
    let mut users = three_users();
    env.directory(&users, &[group("g1", "Staff", &["u-ada", "u-bob"])]);
    env.sync(&[]).assert_success();
    let ada_id = id(&env.users()["u-ada"]);

    users[1].as_object_mut().expect("object").remove("surname");
    env.directory(&users, &[group("g1", "Staff", &["u-ada", "u-bob"])]);
    env.sync(&[]).assert_success();
    assert_eq!(env.users()["u-bob"]["name"]["familyName"], "Babbage");

    users[0]["surname"] = json!("King");
    env.directory(&users, &[group("g1", "Staff", &["u-ada", "u-bob"])]);
    let out = env.sync(&[]);
    out.assert_success();
    assert_eq!(
        env.proxy.calls(),
        [format!(
            "PATCH {}/Users/{ada_id} {}",
            base(kind),
            patched(kind)
        )],
        "{out}"
    );
    assert_eq!(env.users()["u-ada"]["name"]["familyName"], "King");
}
