//! One-shot sync from a JSON directory to a real scim2-server, through a recording proxy that
//! counts and shows every call scimsync makes.

mod common;

use common::env::{group, set, three_users, user, work_mail, Env, ENTERPRISE};
use common::{RecordingProxy, ScimServer, Workspace};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

#[test]
fn initial_sync_of_the_sample_directory_with_the_example_config() {
    common::ensure_peers();
    let server = ScimServer::start();
    let proxy = RecordingProxy::start(&server.url);
    let ws = Workspace::new();
    let sample = common::repo_root().join("config/directory.sample.json");
    let example = std::fs::read_to_string(common::repo_root().join("config/scimsync.example.toml"))
        .expect("example");
    // The example, pointed at this server: the same substitutions as scripts/demo.
    let config = example
        .replace("path = \"/var/lib/scimsync\"", "path = \"state\"")
        .replace(
            "path = \"/etc/scimsync/directory.json\"",
            &format!("path = \"{}\"", sample.display()),
        )
        .replace(
            "url = \"https://tenant.example/api/scim/v2\"",
            &format!("url = \"{}\"", proxy.url),
        );
    assert!(
        config.contains(&proxy.url),
        "the example configuration changed shape"
    );
    ws.write("scimsync.toml", config);
    // The example's token file, next to the configuration.
    ws.write("qlik.token", &server.token);

    let out = ws.run(&["--config", "scimsync.toml", "sync"]);
    out.assert_success();
    assert!(
        out.stdout.contains(
            "users created 20, updated 0, deprovisioned 0, unchanged 0, skipped 0, failed 0"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("groups created 2, updated 0"),
        "{}",
        out.stdout
    );

    let dir: Value =
        serde_json::from_slice(&std::fs::read(&sample).expect("sample")).expect("json");
    let by_name: BTreeMap<String, &Value> = dir["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| {
            (
                format!(
                    "{} {}",
                    u["givenName"].as_str().expect("g"),
                    u["surname"].as_str().expect("s")
                ),
                u,
            )
        })
        .collect();
    let users = server.list_users();
    assert_eq!(
        users.len(),
        20,
        "exactly the direct members of the two assigned groups"
    );
    let provisioned: BTreeSet<String> = users
        .iter()
        .map(|u| u["name"]["formatted"].as_str().expect("name").to_owned())
        .collect();
    // Greef Karga is only in the nested "Bounty Hunters Guild"; the Empire is not assigned.
    for absent in ["Greef Karga", "Wilhuff Tarkin", "Moff Gideon"] {
        assert!(
            !provisioned.contains(absent),
            "{absent} must not be provisioned"
        );
    }
    for u in &users {
        let name = u["name"]["formatted"].as_str().expect("name");
        let src = by_name[name];
        assert_eq!(u["userName"], src["objectId"], "{name}");
        assert_eq!(u["externalId"], src["objectId"], "{name}");
        assert_eq!(work_mail(u), src["mail"].as_str(), "{name}");
        assert_eq!(u[ENTERPRISE]["department"], src["department"], "{name}");
        assert_eq!(
            u["active"],
            json!(src["accountEnabled"] != json!(false)),
            "{name}: active"
        );
    }
    let cad = users
        .iter()
        .find(|u| u["name"]["formatted"] == "Cad Bane")
        .expect("Cad Bane");
    assert_eq!(
        cad["active"],
        json!(false),
        "a disabled user is provisioned inactive"
    );
    let bossk = users
        .iter()
        .find(|u| u["name"]["formatted"] == "Bossk Trandoshan")
        .expect("Bossk");
    assert!(
        bossk.get("emails").is_none(),
        "a user without mail gets no e-mail: {bossk}"
    );

    let groups = server.list_groups();
    assert_eq!(groups.len(), 2);
    let names: BTreeMap<&str, &str> = users
        .iter()
        .map(|u| {
            (
                u["id"].as_str().expect("id"),
                u["name"]["formatted"].as_str().expect("n"),
            )
        })
        .collect();
    let members = |g: &str| -> BTreeSet<&str> {
        let g = groups
            .iter()
            .find(|x| x["displayName"] == g)
            .expect("group");
        g["members"]
            .as_array()
            .expect("members")
            .iter()
            .map(|m| names[m["value"].as_str().expect("v")])
            .collect()
    };
    assert_eq!(
        members("Bounty Hunters"),
        [
            "Aurra Sing",
            "Boba Fett",
            "Bossk Trandoshan",
            "Cad Bane",
            "Din Djarin",
            "Embo Kyuzo",
            "Fennec Shand",
            "Jango Fett",
            "Zam Wesell"
        ]
        .into()
    );
    assert_eq!(members("Rebel Alliance").len(), 11);

    // Nothing changed: the second cycle sends no request at all.
    proxy.clear();
    let out = ws.run(&["--config", "scimsync.toml", "sync"]);
    out.assert_success();
    assert_eq!(proxy.calls(), Vec::<String>::new());
    assert!(
        out.stdout
            .contains("users created 0, updated 0, deprovisioned 0, unchanged 20"),
        "{}",
        out.stdout
    );
    // The idle cycle still counts the groups it left alone and records itself.
    assert!(
        out.stdout
            .contains("groups created 0, updated 0, deprovisioned 0, unchanged 2"),
        "{}",
        out.stdout
    );
    let status = ws.run(&["--config", "scimsync.toml", "status"]);
    status.assert_success();
    assert!(
        status.stdout.contains(", 0 requests, 0 problems")
            && status.stdout.contains("deprovisioned 0, unchanged 20"),
        "{status}"
    );
}

#[test]
fn an_existing_account_is_adopted_by_mail_and_an_unknown_one_is_left_alone() {
    let env = Env::start(r#"groups = ["Staff"]"#, "");
    let legacy = env.server.create_user(json!({
        "userName": "ada-legacy",
        "name": {"formatted": "Old Name"},
        "emails": [{"type": "work", "value": "ADA.Lovelace@example.org"}],
        "active": true
    }));
    let stranger = env
        .server
        .create_user(json!({"userName": "stranger", "active": true}));
    env.directory(&three_users(), &[group("g1", "Staff", &["u-ada", "u-bob"])]);

    let out = env.sync(&[]);
    out.assert_success();
    let users = env.users();
    assert_eq!(
        users.keys().collect::<Vec<_>>(),
        ["stranger", "u-ada", "u-bob"],
        "no duplicate for Ada"
    );
    let ada = &users["u-ada"];
    assert_eq!(
        ada["id"], legacy["id"],
        "Ada's existing account was adopted"
    );
    assert_eq!(ada["name"]["formatted"], "Ada Lovelace");
    assert_eq!(work_mail(ada), Some("ada.lovelace@example.org"));
    assert_eq!(
        users["stranger"],
        env.server
            .get(&format!("/Users/{}", stranger["id"].as_str().expect("id")))
    );
    assert_eq!(
        users["stranger"]["meta"]["version"], stranger["meta"]["version"],
        "the stranger was not written"
    );
    // Ada: a match query by mail, then one PATCH; Bob: two match queries, then a POST.
    let writes = env.writes();
    assert_eq!(
        writes
            .iter()
            .filter(|c| c.starts_with("POST /v2/Users"))
            .count(),
        1,
        "{writes:?}"
    );
    assert!(
        writes.contains(&format!(
            "PATCH /v2/Users/{} 204",
            legacy["id"].as_str().expect("id")
        )),
        "{writes:?}"
    );
    let filters: Vec<String> = env
        .proxy
        .records()
        .iter()
        .filter_map(|r| r.query_param("filter").map(str::to_owned))
        .collect();
    assert!(
        filters.contains(
            &r#"emails[type eq "work" and value eq "ada.lovelace@example.org"]"#.to_owned()
        ),
        "{filters:?}"
    );
    assert!(
        filters.contains(&r#"userName eq "u-bob""#.to_owned()),
        "{filters:?}"
    );

    // Ada leaves scope: her account is deactivated; the stranger is still untouched.
    env.directory(&three_users(), &[group("g1", "Staff", &["u-bob"])]);
    env.sync(&[]).assert_success();
    let users = env.users();
    assert_eq!(users["u-ada"]["active"], json!(false));
    assert_eq!(
        users["stranger"]["meta"]["version"],
        stranger["meta"]["version"]
    );
    assert_eq!(users["stranger"]["active"], json!(true));
}

#[test]
fn one_attribute_change_sends_one_patch_of_that_attribute() {
    let env = Env::start(r#"groups = ["Staff"]"#, "");
    env.directory(&three_users(), &[group("g1", "Staff", &["u-ada", "u-bob"])]);
    env.sync(&[]).assert_success();
    let bob_id = env.users()["u-bob"]["id"].as_str().expect("id").to_owned();

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
    assert_eq!(env.proxy.calls(), [format!("PATCH /v2/Users/{bob_id} 204")]);
    let body = env.proxy.records()[0].body.clone().expect("body");
    assert_eq!(
        body["Operations"],
        json!([{"op": "replace", "path": "name.formatted", "value": "Bob Newname"}])
    );
    assert_eq!(env.users()["u-bob"]["name"]["formatted"], "Bob Newname");

    // A value that disappears from the source is removed from the target.
    users[1]
        .as_object_mut()
        .expect("object")
        .remove("department");
    env.directory(&users, &[group("g1", "Staff", &["u-ada", "u-bob"])]);
    env.sync(&[]).assert_success();
    let body = env.proxy.records()[0].body.clone().expect("body");
    assert_eq!(
        body["Operations"],
        json!([{"op": "remove", "path": format!("{ENTERPRISE}:department")}])
    );
    assert!(env.users()["u-bob"]
        .get(ENTERPRISE)
        .and_then(|e| e.get("department"))
        .is_none());
}

#[test]
fn a_user_leaving_scope_is_deactivated_not_deleted() {
    let env = Env::start(r#"groups = ["Staff"]"#, "");
    env.directory(&three_users(), &[group("g1", "Staff", &["u-ada", "u-bob"])]);
    env.sync(&[]).assert_success();
    let ada_id = env.users()["u-ada"]["id"].as_str().expect("id").to_owned();

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
        .find(|r| r.route() == format!("/v2/Users/{ada_id}"))
        .expect("a PATCH of Ada");
    assert_eq!(deactivate.method, "PATCH");
    assert_eq!(
        deactivate.body.as_ref().expect("body")["Operations"],
        json!([{"op": "replace", "path": "active", "value": false}])
    );

    // Deactivated once is enough: the next cycle sends nothing.
    env.sync(&[]).assert_success();
    assert_eq!(env.proxy.calls(), Vec::<String>::new());

    // Back in scope: reactivated, same account.
    env.directory(&three_users(), &[group("g1", "Staff", &["u-ada", "u-bob"])]);
    env.sync(&[]).assert_success();
    let users = env.users();
    assert_eq!(users["u-ada"]["active"], json!(true));
    assert_eq!(users["u-ada"]["id"], json!(ada_id));
}

#[test]
fn deprovision_delete_mode_deletes_the_account() {
    let env = Env::start(r#"groups = ["Staff"]"#, r#"deprovision = "delete""#);
    env.directory(&three_users(), &[group("g1", "Staff", &["u-ada", "u-bob"])]);
    env.sync(&[]).assert_success();
    let ada_id = env.users()["u-ada"]["id"].as_str().expect("id").to_owned();
    env.directory(&three_users(), &[group("g1", "Staff", &["u-bob"])]);
    env.sync(&[]).assert_success();
    assert!(
        env.writes()
            .contains(&format!("DELETE /v2/Users/{ada_id} 204")),
        "{:?}",
        env.writes()
    );
    assert_eq!(env.users().keys().collect::<Vec<_>>(), ["u-bob"]);
}

#[test]
fn a_disabled_user_is_provisioned_inactive_and_reenabled_by_patch() {
    let env = Env::start(r#"groups = ["Staff"]"#, "");
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
    assert_eq!(env.proxy.calls().len(), 1, "{:?}", env.proxy.calls());
    assert_eq!(
        env.proxy.records()[0].body.as_ref().expect("body")["Operations"],
        json!([{"op": "replace", "path": "active", "value": true}])
    );
    assert_eq!(env.users()["u-ada"]["active"], json!(true));
}

#[test]
fn nested_group_members_are_not_provisioned() {
    let env = Env::start(r#"groups = ["Outer"]"#, "");
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

#[test]
fn a_group_rename_and_membership_changes_in_one_patch() {
    let env = Env::start(r#"groups = ["g1"]"#, "");
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
    let gid = env.server.group_by_display_name("Staff").expect("group")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let bob = env.users()["u-bob"]["id"].as_str().expect("id").to_owned();

    // Renamed, Bob out, Cy in (directly assigned, so Cy is in scope).
    env.directory(&three_users(), &[group("g1", "Crew", &["u-ada", "u-cy"])]);
    let out = env.sync(&[]);
    out.assert_success();
    assert_eq!(
        env.groups(),
        BTreeMap::from([("Crew".to_owned(), set(&["u-ada", "u-cy"]))])
    );
    let group_patches: Vec<_> = env
        .proxy
        .records()
        .into_iter()
        .filter(|r| r.route() == format!("/v2/Groups/{gid}"))
        .collect();
    assert_eq!(group_patches.len(), 1, "{:?}", env.proxy.calls());
    let cy = env.users()["u-cy"]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        group_patches[0].body.as_ref().expect("body")["Operations"],
        json!([
            {"op": "replace", "path": "displayName", "value": "Crew"},
            {"op": "add", "path": "members", "value": [{"value": cy}]},
            {"op": "remove", "path": format!("members[value eq \"{bob}\"]")}
        ])
    );
    // Bob left scope with the group change: deactivated, not deleted.
    assert_eq!(env.users()["u-bob"]["active"], json!(false));
}

#[test]
fn a_large_group_is_filled_in_batches_of_at_most_100_members() {
    // AWS IAM Identity Center takes at most 100 member changes per request.
    let env = Env::start(
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
        .find(|r| r.method == "POST" && r.route() == "/v2/Groups")
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
        .filter(|r| r.method == "PATCH" && r.route().starts_with("/v2/Groups/"))
        .map(|r| {
            r.body.as_ref().expect("body")["Operations"][0]["value"]
                .as_array()
                .expect("value")
                .len()
        })
        .collect();
    assert_eq!(adds, [100, 30]);
}

#[test]
fn an_ambiguous_match_is_skipped_and_reported() {
    let env = Env::start(r#"groups = ["Staff"]"#, "");
    for name in ["ada1", "ada2"] {
        env.server.create_user(json!({"userName": name, "emails": [{"type": "work", "value": "ada.lovelace@example.org"}]}));
    }
    env.directory(&three_users(), &[group("g1", "Staff", &["u-ada", "u-bob"])]);
    let out = env.sync(&[]);
    out.assert_code(1);
    assert!(
        out.stdout.contains(
            "users created 1, updated 0, deprovisioned 0, unchanged 0, skipped 1, failed 0"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains(r#"skipped user u-ada: ambiguous: 2 accounts match emails[type eq "work" and value eq "ada.lovelace@example.org"]"#),
        "{}",
        out.stderr
    );
    assert_eq!(
        env.users().keys().collect::<Vec<_>>(),
        ["ada1", "ada2", "u-bob"]
    );
    // The group is created with the members that have accounts.
    assert_eq!(env.groups()["Staff"], set(&["u-bob"]));
}

#[test]
fn plan_and_dry_run_send_no_request() {
    let env = Env::start(r#"groups = ["Staff"]"#, "");
    env.directory(&three_users(), &[group("g1", "Staff", &["u-ada"])]);
    env.proxy.clear();
    let out = env.scimsync(&["plan"]);
    out.assert_success();
    assert!(
        out.stdout
            .contains("create user u-ada <ada.lovelace@example.org>"),
        "{}",
        out.stdout
    );
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
    assert!(
        out.stdout
            .contains(r#"name.formatted: "Ada Lovelace" -> "Augusta Lovelace""#),
        "{}",
        out.stdout
    );
    assert_eq!(env.proxy.count(), 0);
}

#[test]
fn an_account_deleted_behind_our_back_is_created_again() {
    let env = Env::start(r#"groups = ["Staff"]"#, "");
    env.directory(&three_users(), &[group("g1", "Staff", &["u-ada"])]);
    env.sync(&[]).assert_success();
    let old = env.users()["u-ada"]["id"].as_str().expect("id").to_owned();
    env.server.delete(&format!("/Users/{old}"));
    let mut users = three_users();
    users[0]["surname"] = json!("King");
    env.directory(&users, &[group("g1", "Staff", &["u-ada"])]);
    let out = env.sync(&[]);
    out.assert_success();
    let writes = env.writes();
    assert_eq!(
        writes[0],
        format!("PATCH /v2/Users/{old} 404"),
        "{writes:?}"
    );
    assert_eq!(writes[1], "POST /v2/Users 201", "{writes:?}");
    let users = env.users();
    assert_eq!(users.len(), 1);
    assert_eq!(users["u-ada"]["name"]["formatted"], "Ada King");
}

#[test]
fn deprovisions_over_the_threshold_are_held_until_allowed() {
    let env = Env::start(r#"groups = ["Staff"]"#, "deletion_threshold = 1");
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
}

#[test]
fn a_broken_or_empty_source_writes_nothing() {
    let env = Env::start(r#"groups = ["Staff"]"#, "");
    env.directory(&three_users(), &[group("g1", "Staff", &["u-ada"])]);
    env.sync(&[]).assert_success();

    env.ws.write(
        "directory.json",
        "{\"users\": [\n  {\"objectId\": \"u-ada\",}\n]}",
    );
    let out = env.sync(&[]);
    out.assert_code(2);
    assert!(
        out.stderr
            .contains("directory.json: JSON syntax error at line 2 column"),
        "{}",
        out.stderr
    );
    assert_eq!(env.proxy.count(), 0);

    env.ws.write(
        "directory.json",
        r#"{"users": [{"mail": "x@example.org"}]}"#,
    );
    let out = env.sync(&[]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("users[0]: objectId is missing"),
        "{}",
        out.stderr
    );

    env.directory(&[], &[group("g1", "Staff", &[])]);
    let out = env.sync(&[]);
    out.assert_code(2);
    assert!(
        out.stderr
            .contains("source-outage guard: the source returned no users"),
        "{}",
        out.stderr
    );
    assert_eq!(env.proxy.count(), 0);
    assert_eq!(env.users()["u-ada"]["active"], json!(true));
}

#[test]
fn a_bad_object_is_skipped_and_the_rest_applied() {
    let env = Env::start(r#"groups = ["Staff"]"#, "");
    let mut users = three_users();
    users[0]["manager"] = json!({"id": "nested objects are not attribute values"});
    env.directory(&users, &[group("g1", "Staff", &["u-ada", "u-bob"])]);
    let out = env.sync(&[]);
    out.assert_code(1);
    assert!(
        out.stderr
            .contains("skipped user u-ada: users[0]: manager: an object is not an attribute value"),
        "{}",
        out.stderr
    );
    assert_eq!(env.users().keys().collect::<Vec<_>>(), ["u-bob"]);
}

#[test]
fn a_full_sync_with_a_lost_snapshot_adopts_instead_of_duplicating() {
    let env = Env::start(r#"groups = ["Staff"]"#, "");
    env.directory(&three_users(), &[group("g1", "Staff", &["u-ada", "u-bob"])]);
    env.sync(&[]).assert_success();
    let before = env.users();
    std::fs::remove_dir_all(env.ws.path("state")).expect("remove state");
    let out = env.sync(&["--full"]);
    out.assert_success();
    assert!(
        out.stdout
            .contains("users created 0, updated 0, deprovisioned 0, unchanged 2"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("groups created 0, updated 0, deprovisioned 0, unchanged 1"),
        "{}",
        out.stdout
    );
    assert_eq!(env.writes(), Vec::<String>::new());
    let after = env.users();
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    assert_eq!(before["u-ada"]["id"], after["u-ada"]["id"]);
}

#[test]
fn invalid_configuration_exits_64_listing_every_problem() {
    let env = Env::start(r#"groups = ["Staff"]"#, "");
    let config = env.ws.read("scimsync.toml");
    env.ws.write(
        "scimsync.toml",
        config
            .replace("[scope]", "[scope]\ncolour = \"blue\"")
            .replace("rate_limit = 1000", "rate_limit = 0")
            .replace(
                r#"'Switch([IsSoftDeleted], , "False", "True", "True", "False")'"#,
                r#"'Switch([IsSoftDeleted], "False"'"#,
            ),
    );
    let out = env.sync(&[]);
    out.assert_code(64);
    assert!(
        out.stderr.contains("scimsync.toml: invalid configuration:"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("scope.colour: unknown key"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("target[0].rate_limit: must be at least 1"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("target[0].user_mapping[2].expression: column"),
        "{}",
        out.stderr
    );
    assert_eq!(env.proxy.count(), 0);
}

#[test]
fn a_rejected_token_fails_the_objects_and_says_why() {
    let env = Env::start(r#"groups = ["Staff"]"#, "");
    env.ws.write("token", "wrong-token");
    env.directory(&three_users(), &[group("g1", "Staff", &["u-ada"])]);
    let out = env.sync(&[]);
    out.assert_code(1);
    assert!(out.stderr.contains("401"), "{}", out.stderr);
    assert!(!out.stderr.contains(&env.server.token) && !out.stdout.contains(&env.server.token));
    assert!(env.server.list_users().is_empty());
}

#[test]
fn an_expression_that_fails_for_one_user_skips_only_that_user() {
    let extra = "\n[[target.user_mapping]]\ntarget = \"title\"\nexpression = 'FormatDateTime([hired], , \"yyyyMMdd\", \"yyyy-MM-dd\")'\n";
    let env = Env::start(r#"groups = ["Staff"]"#, extra);
    let mut users = three_users();
    users[0]["hired"] = json!("20240131");
    users[1]["hired"] = json!("last tuesday");
    env.directory(&users, &[group("g1", "Staff", &["u-ada", "u-bob"])]);
    let out = env.sync(&[]);
    out.assert_code(1);
    assert!(
        out.stderr.contains("skipped user u-bob: title: "),
        "{}",
        out.stderr
    );
    let got = env.users();
    assert_eq!(got.keys().collect::<Vec<_>>(), ["u-ada"]);
    assert_eq!(got["u-ada"]["title"], "2024-01-31");
}

#[test]
fn a_snapshot_is_not_reused_against_another_url_without_full() {
    let env = Env::start(r#"groups = ["Staff"]"#, "");
    env.directory(&three_users(), &[group("g1", "Staff", &["u-ada"])]);
    env.sync(&[]).assert_success();
    // The same target name, now pointed at a new, empty server.
    let other = ScimServer::start();
    let other_proxy = RecordingProxy::start(&other.url);
    let config = env
        .ws
        .read("scimsync.toml")
        .replace(&env.proxy.url, &other_proxy.url);
    env.ws.write("scimsync.toml", config);
    env.ws.write("token", &other.token);
    let out = env.sync(&[]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("the snapshot was taken against"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("sync --full --target app"),
        "{}",
        out.stderr
    );
    assert_eq!(other_proxy.count(), 0);
    env.sync(&["--full"]).assert_success();
    assert_eq!(other.list_users().len(), 1);
    env.sync(&[]).assert_success();
}

#[test]
fn an_initial_sync_lists_the_target_once_instead_of_querying_per_user() {
    let env = Env::start(r#"groups = ["Everyone"]"#, "concurrency = 4");
    let users: Vec<Value> = (0..150)
        .map(|i| user(&format!("u{i:03}"), &format!("N{i}"), "Person"))
        .collect();
    let ids: Vec<String> = (0..150).map(|i| format!("u{i:03}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    // One existing account to adopt by mail (in another case), two that share a mail, one stranger.
    let existing = env.server.create_user(json!({"userName": "legacy-7", "emails": [{"type": "work", "value": "N7.Person@example.org"}]}));
    for name in ["twin-a", "twin-b"] {
        env.server.create_user(json!({"userName": name, "emails": [{"type": "work", "value": "n8.person@example.org"}]}));
    }
    env.server.create_user(json!({"userName": "stranger"}));
    env.directory(&users, &[group("g", "Everyone", &refs)]);
    let out = env.sync(&[]);
    out.assert_code(1);
    assert!(
        out.stdout
            .contains("users created 148, updated 1, deprovisioned 0, unchanged 0, skipped 1"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("skipped user u008: ambiguous: 2 accounts match"),
        "{}",
        out.stderr
    );
    let user_gets: Vec<String> = env
        .proxy
        .records()
        .into_iter()
        .filter(|r| r.method == "GET" && r.route() == "/v2/Users")
        .map(|r| r.path)
        .collect();
    assert_eq!(
        user_gets,
        [
            "/v2/Users?startIndex=1&count=1",
            "/v2/Users?startIndex=1&count=1000"
        ],
        "no per-user filter query"
    );
    let got = env.users();
    // 148 created, 1 adopted; the twins and the stranger are still there, untouched.
    assert_eq!(got.len(), 148 + 1 + 3);
    assert!(
        got["twin-a"].get("externalId").is_none() && got["stranger"].get("externalId").is_none()
    );
    assert_eq!(got["u007"]["id"], existing["id"]);
    assert_eq!(work_mail(&got["u007"]), Some("n7.person@example.org"));
}
