//! The second real SCIM server, django-scim2, works in the harness: it starts, answers over
//! real HTTP, and shows the decisive ways it differs from scim2-server (the full catalogue is
//! tests/peers/django/BEHAVIOUR.md). Independent of the scimsync binary.

mod common;

use common::env::{target_groups, target_users, Env, ServerKind};
use common::{DjangoServer, ScimClient};
use reqwest::Method;
use serde_json::{json, Value};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn id(resource: &Value) -> String {
    resource["id"].as_str().expect("an id").to_owned()
}

fn member_ids(group: &Value) -> Vec<String> {
    let mut ids: Vec<String> = group["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["value"].as_str().expect("member value").to_owned())
        .collect();
    ids.sort();
    ids
}

#[test]
fn django_users_create_list_filter_and_patch() {
    let server = DjangoServer::start();
    assert!(server.url.ends_with("/scim/v2"), "{}", server.url);
    let spc = server.get("/ServiceProviderConfig");
    assert_eq!(spc["patch"]["supported"], true);
    assert_eq!(spc["filter"]["supported"], false);
    assert_eq!(spc["bulk"]["supported"], false);

    let ada = server.create_user(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "userName": "ada",
        "name": {"givenName": "Ada", "familyName": "Lovelace", "formatted": "Countess Ada"},
        "emails": [{"type": "work", "value": "Ada@Example.org", "primary": true}],
        "active": false,
        "externalId": "ext-ada",
        ENTERPRISE: {"department": "Engineering"},
    }));
    assert_eq!(ada["userName"], "ada");
    assert_eq!(ada["active"], false);
    assert_eq!(ada["externalId"], "ext-ada");
    // The e-mail's type is dropped; name.formatted is computed; the extension is dropped.
    assert_eq!(
        ada["emails"],
        json!([{"value": "Ada@Example.org", "primary": true}])
    );
    assert_eq!(ada["name"]["formatted"], "Ada Lovelace");
    assert!(ada.get(ENTERPRISE).is_none(), "{ada}");
    let bob = server.create_user(json!({"userName": "bob"}));

    let users = server.list_users();
    assert_eq!(users.len(), 2);
    assert_eq!(
        target_users(&server).keys().collect::<Vec<_>>(),
        ["ada", "bob"]
    );
    // userName eq matches without regard to case; filters on e-mails or externalId never match.
    let found = server.list_all("/Users", Some(r#"userName eq "ADA""#));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["id"], ada["id"]);
    for filter in [
        r#"externalId eq "ext-ada""#,
        r#"emails[type eq "work" and value eq "Ada@Example.org"]"#,
        r#"emails.value eq "Ada@Example.org""#,
    ] {
        let found = server.list_all("/Users", Some(filter));
        assert!(found.is_empty(), "{filter}: {found:?}");
    }
    // A small page size, as the listing helpers read pages.
    assert_eq!(server.list_paged("/Users", None, 1).len(), 2);

    // PATCH answers 200 with the resource.
    let ada_path = format!("/Users/{}", id(&ada));
    let patched = server
        .patch(
            &ada_path,
            ScimClient::patch_op(json!([
                {"op": "replace", "path": "active", "value": true},
                {"op": "replace", "path": "name.givenName", "value": "Augusta"},
            ])),
        )
        .expect("PATCH answers with the resource");
    assert_eq!(patched["active"], true);
    assert_eq!(patched["name"]["givenName"], "Augusta");
    assert_eq!(server.get(&ada_path), patched);

    // One unsupported operation fails the whole PATCH (501), and nothing of it is applied.
    let (status, body) = server.request(
        Method::PATCH,
        &ada_path,
        Some(&ScimClient::patch_op(json!([
            {"op": "replace", "path": "active", "value": false},
            {"op": "replace", "path": "externalId", "value": "ext-2"},
        ]))),
    );
    assert_eq!(status, 501, "{body:?}");
    assert_eq!(server.get(&ada_path)["active"], true);

    // Errors: the status is a JSON number, not the string of RFC 7644; no scimType on 409.
    let (status, body) = server.request(Method::POST, "/Users", Some(&json!({"userName": "bob"})));
    assert_eq!(status, 409);
    let body = body.expect("an error body");
    assert_eq!(body["status"], 409);
    assert!(body.get("scimType").is_none(), "{body}");
    let (status, body) = server.request(Method::GET, "/Users/999999", None);
    assert_eq!(status, 404);
    assert_eq!(
        body.expect("an error body")["detail"],
        "Resource 999999 not found"
    );

    server.delete(&format!("/Users/{}", id(&bob)));
    assert_eq!(server.list_users().len(), 1);

    // Without the token: 401.
    let url = format!("{}/Users", server.url);
    let status = common::block_on(async move {
        common::http_client()
            .get(url)
            .send()
            .await
            .expect("GET without a token")
            .status()
            .as_u16()
    });
    assert_eq!(status, 401);
}

#[test]
fn django_groups_members_and_env() {
    let env = Env::start_with(ServerKind::Django, r#"groups = ["Staff"]"#, "");
    assert_eq!(env.server.kind(), ServerKind::Django);
    let config = env.ws.read("scimsync.toml");
    assert!(
        config.contains("name.givenName") && !config.contains("emails"),
        "{config}"
    );
    let server = &env.server;
    let ada = server.create_user(json!({"userName": "ada"}));
    let bob = server.create_user(json!({"userName": "bob"}));
    let (ada_id, bob_id) = (id(&ada), id(&bob));

    // Members given on POST are ignored.
    let staff = server.create_group(json!({
        "displayName": "Staff",
        "members": [{"value": ada_id}, {"value": bob_id}],
    }));
    assert_eq!(staff["members"], json!([]));
    let path = format!("/Groups/{}", id(&staff));

    let added = server
        .patch(
            &path,
            ScimClient::patch_op(json!([
                {"op": "add", "path": "members", "value": [{"value": ada_id}, {"value": bob_id}]}
            ])),
        )
        .expect("PATCH answers with the resource");
    let mut both = vec![ada_id.clone(), bob_id.clone()];
    both.sort();
    assert_eq!(member_ids(&added), both);
    assert_eq!(
        added["members"][0]["$ref"],
        format!(
            "{}/Users/{}",
            server.url,
            added["members"][0]["value"].as_str().expect("id")
        )
    );

    // The filtered path form is 501; the value form removes.
    let (status, _) = server.request(
        Method::PATCH,
        &path,
        Some(&ScimClient::patch_op(json!([
            {"op": "remove", "path": format!("members[value eq \"{bob_id}\"]")}
        ]))),
    );
    assert_eq!(status, 501);
    let removed = server
        .patch(
            &path,
            ScimClient::patch_op(json!([
                {"op": "remove", "path": "members", "value": [{"value": bob_id}]}
            ])),
        )
        .expect("PATCH answers with the resource");
    assert_eq!(member_ids(&removed), [ada_id.as_str()]);

    let groups = target_groups(server);
    assert_eq!(groups["Staff"], ["ada"]);
    // No filter on Groups matches, not even displayName.
    assert!(server
        .list_all("/Groups", Some(r#"displayName eq "Staff""#))
        .is_empty());
    assert!(server.group_by_display_name("Staff").is_some());
    assert_eq!(env.users().len(), 2);
    assert_eq!(env.groups()["Staff"].len(), 1);
}

/// Regenerates the transcript of tests/peers/django/BEHAVIOUR.md against a fresh server:
/// `cargo test --test django_smoke -- --ignored transcript --nocapture`.
#[test]
#[ignore = "writes the behaviour transcript; run by hand"]
fn transcript() {
    let server = DjangoServer::start();
    let probe = common::repo_root().join("tests/peers/django/probe.py");
    let output = std::process::Command::new("python3")
        .arg(&probe)
        .arg(&server.url)
        .arg(&server.token)
        .output()
        .expect("run probe.py");
    assert!(
        output.status.success(),
        "probe.py failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let out = common::repo_root().join("target/django-transcript.md");
    std::fs::write(&out, &output.stdout).expect("write the transcript");
    println!("transcript written to {}", out.display());
}
