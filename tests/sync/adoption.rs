//! Finding the accounts a directory object already has: adoption, ambiguity, a lost snapshot,
//! an account deleted behind scimsync's back, and the one listing of an initial sync.
//!
//! scim2-server is matched by mail first (typed `work`), then by userName. django-scim2 has
//! no filter on `emails` that ever matches and drops the address's `type` (BEHAVIOUR.md), so
//! its configuration matches on userName only, which it compares without regard to case:
//! there an existing account is one whose userName differs from the objectId only in case.

use crate::common::env::{group, set, three_users, user, work_mail};
use crate::{base, id, patched, shown, start, ServerKind};
use serde_json::{json, Value};

both!(an_existing_account_is_adopted_and_an_unknown_one_is_left_alone);
fn an_existing_account_is_adopted_and_an_unknown_one_is_left_alone(kind: ServerKind) {
    let django = kind == ServerKind::Django;
    let env = start(kind, r#"groups = ["Staff"]"#, "");
    let legacy = if django {
        // BEHAVIOUR.md: `userName eq` compares without regard to case.
        env.server.create_user(json!({
            "userName": "U-ADA",
            "name": {"givenName": "Old", "familyName": "Name"},
            "active": true
        }))
    } else {
        env.server.create_user(json!({
            "userName": "ada-legacy",
            "name": {"formatted": "Old Name"},
            "emails": [{"type": "work", "value": "ADA.Lovelace@example.org"}],
            "active": true
        }))
    };
    let stranger = env
        .server
        .create_user(json!({"userName": "stranger", "active": true}));
    let stranger = env.server.get(&format!("/Users/{}", id(&stranger)));
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
    // On django-scim2, name.formatted is computed from the name parts (BEHAVIOUR.md).
    assert_eq!(ada["name"]["formatted"], "Ada Lovelace");
    if django {
        assert_eq!(ada["name"]["givenName"], "Ada");
        assert_eq!(ada["name"]["familyName"], "Lovelace");
    } else {
        assert_eq!(work_mail(ada), Some("ada.lovelace@example.org"));
    }
    assert_eq!(users["stranger"], stranger, "the stranger was not written");
    // Ada: one PATCH; Bob: a POST.
    let writes = env.writes();
    assert_eq!(
        writes
            .iter()
            .filter(|c| c.starts_with(&format!("POST {}/Users", base(kind))))
            .count(),
        1,
        "{writes:?}"
    );
    assert!(
        writes.contains(&format!(
            "PATCH {}/Users/{} {}",
            base(kind),
            id(&legacy),
            patched(kind)
        )),
        "{writes:?}"
    );
    let filters: Vec<String> = env
        .proxy
        .records()
        .iter()
        .filter_map(|r| r.query_param("filter").map(str::to_owned))
        .collect();
    if django {
        // BEHAVIOUR.md: `userName eq` works (and found Ada in another case); a filter on
        // Groups always answers empty, which the listing then confirms.
        let mut filters = filters;
        filters.sort();
        assert_eq!(
            filters,
            [
                r#"displayName eq "Staff""#,
                r#"userName eq "u-ada""#,
                r#"userName eq "u-bob""#
            ]
        );
    } else {
        // Ada: a match query by mail; Bob: two match queries.
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
    }

    // Ada leaves scope: her account is deactivated; the stranger is still untouched.
    env.directory(&three_users(), &[group("g1", "Staff", &["u-bob"])]);
    env.sync(&[]).assert_success();
    let users = env.users();
    assert_eq!(users["u-ada"]["active"], json!(false));
    assert_eq!(users["stranger"], stranger);
}

both!(an_ambiguous_match_is_skipped_and_reported);
fn an_ambiguous_match_is_skipped_and_reported(kind: ServerKind) {
    let django = kind == ServerKind::Django;
    let env = start(kind, r#"groups = ["Staff"]"#, "");
    let (twins, reason) = if django {
        // BEHAVIOUR.md: userNames are unique only as written, and compared without regard
        // to case: two accounts carry Ada's userName.
        (
            ["U-ADA", "u-Ada"],
            r#"skipped user u-ada: ambiguous: 2 accounts match userName eq "u-ada""#,
        )
    } else {
        (
            ["ada1", "ada2"],
            r#"skipped user u-ada: ambiguous: 2 accounts match emails[type eq "work" and value eq "ada.lovelace@example.org"]"#,
        )
    };
    for name in twins {
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
    assert!(out.stderr.contains(reason), "{}", out.stderr);
    let mut want = vec![twins[0], twins[1], "u-bob"];
    want.sort();
    assert_eq!(env.users().keys().collect::<Vec<_>>(), want);
    // The group is created with the members that have accounts.
    assert_eq!(env.groups()["Staff"], set(&["u-bob"]));
}

both!(a_full_sync_with_a_lost_snapshot_adopts_instead_of_duplicating);
fn a_full_sync_with_a_lost_snapshot_adopts_instead_of_duplicating(kind: ServerKind) {
    let env = start(kind, r#"groups = ["Staff"]"#, "");
    env.directory(&three_users(), &[group("g1", "Staff", &["u-ada", "u-bob"])]);
    env.sync(&[]).assert_success();
    let before = env.users();
    env.lose_state();
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
    assert_eq!(env.groups()["Staff"], set(&["u-ada", "u-bob"]));
}

both!(an_account_deleted_behind_our_back_is_created_again);
fn an_account_deleted_behind_our_back_is_created_again(kind: ServerKind) {
    let env = start(kind, r#"groups = ["Staff"]"#, "");
    env.directory(&three_users(), &[group("g1", "Staff", &["u-ada"])]);
    env.sync(&[]).assert_success();
    let old = id(&env.users()["u-ada"]);
    env.server.delete(&format!("/Users/{old}"));
    let mut users = three_users();
    users[0]["surname"] = json!("King");
    env.directory(&users, &[group("g1", "Staff", &["u-ada"])]);
    let out = env.sync(&[]);
    out.assert_success();
    let writes = env.writes();
    assert_eq!(
        writes[0],
        format!("PATCH {}/Users/{old} 404", base(kind)),
        "{writes:?}"
    );
    assert_eq!(
        writes[1],
        format!("POST {}/Users 201", base(kind)),
        "{writes:?}"
    );
    let users = env.users();
    assert_eq!(users.len(), 1);
    // On django-scim2, name.formatted is computed from the name parts (BEHAVIOUR.md).
    assert_eq!(users["u-ada"]["name"]["formatted"], "Ada King");
    // The new account takes the old one's place in its group. django-scim2 dropped the old
    // id from the group with the account (BEHAVIOUR.md: DELETE /Users); scim2-server keeps
    // an id whose account was deleted in its groups, and scimsync sends no removal of an id
    // that names no account (django-scim2 refuses one: 400).
    let want = match kind {
        ServerKind::Scim2Server => set(&["u-ada", &format!("?{old}")]),
        ServerKind::Django => set(&["u-ada"]),
    };
    assert_eq!(env.groups()["Staff"], want, "{:#?}", shown(&env));
    env.sync(&[]).assert_success();
    assert_eq!(env.proxy.calls(), Vec::<String>::new());
    assert_eq!(env.groups()["Staff"], want);
}

both!(an_initial_sync_lists_the_target_once_instead_of_querying_per_user);
fn an_initial_sync_lists_the_target_once_instead_of_querying_per_user(kind: ServerKind) {
    let django = kind == ServerKind::Django;
    let env = start(kind, r#"groups = ["Everyone"]"#, "concurrency = 4");
    let users: Vec<Value> = (0..150)
        .map(|i| user(&format!("u{i:03}"), &format!("N{i}"), "Person"))
        .collect();
    let ids: Vec<String> = (0..150).map(|i| format!("u{i:03}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    // One existing account to adopt (by mail in another case; on django-scim2 by userName in
    // another case), two that share the value, one stranger.
    let (existing, twins) = if django {
        let existing = env.server.create_user(json!({"userName": "U007"}));
        for name in ["U008", "u008"] {
            env.server.create_user(json!({"userName": name}));
        }
        (existing, ["U008", "u008"])
    } else {
        let existing = env.server.create_user(json!({"userName": "legacy-7", "emails": [{"type": "work", "value": "N7.Person@example.org"}]}));
        for name in ["twin-a", "twin-b"] {
            env.server.create_user(json!({"userName": name, "emails": [{"type": "work", "value": "n8.person@example.org"}]}));
        }
        (existing, ["twin-a", "twin-b"])
    };
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
        .filter(|r| r.method == "GET" && r.route() == format!("{}/Users", base(kind)))
        .map(|r| r.path)
        .collect();
    assert_eq!(
        user_gets,
        [
            format!("{}/Users?startIndex=1&count=1", base(kind)),
            format!("{}/Users?startIndex=1&count=1000", base(kind))
        ],
        "no per-user filter query"
    );
    let got = env.users();
    // 148 created, 1 adopted; the twins and the stranger are still there, untouched.
    assert_eq!(got.len(), 148 + 1 + 3);
    for untouched in [twins[0], twins[1], "stranger"] {
        let external_id = got[untouched].get("externalId");
        if django {
            // BEHAVIOUR.md: an account created without externalId answers `""`.
            assert_eq!(external_id, Some(&json!("")), "{untouched}");
        } else {
            assert!(external_id.is_none(), "{untouched}");
        }
    }
    assert_eq!(got["u007"]["id"], existing["id"]);
    if django {
        assert_eq!(got["u007"]["name"]["formatted"], "N7 Person");
    } else {
        assert_eq!(work_mail(&got["u007"]), Some("n7.person@example.org"));
    }
}
