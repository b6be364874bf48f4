//! The test harness itself works against the real SCIM server: the proxy forwards faithfully
//! and records what it forwarded. Independent of the scimsync binary.

mod common;

use common::{Fault, RecordingProxy, ScimServer};
use serde_json::json;

#[test]
fn proxy_forwards_to_real_server_and_records_calls() {
    let server = ScimServer::start();
    let proxy = RecordingProxy::start(&server.url);

    let created = common::block_on(async {
        let client = common::http_client();
        let response = client
            .post(format!("{}/Users", proxy.url))
            .bearer_auth(&server.token)
            .header("content-type", "application/scim+json")
            .body(
                json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": "alice",
                    "displayName": "Alice Example",
                })
                .to_string(),
            )
            .send()
            .await
            .expect("POST through the proxy");
        assert_eq!(response.status().as_u16(), 201);
        let location = response
            .headers()
            .get("location")
            .map(|v| v.to_str().expect("ASCII Location").to_string());
        let created: serde_json::Value = response.json().await.expect("created user as JSON");
        (created, location)
    });
    let (created, location) = created;
    let id = created["id"].as_str().expect("the created user has an id");

    // The user is on the real server, seen without the proxy.
    let users = server.list_users();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["id"], created["id"]);
    let alice = server.user_by_username("alice").expect("alice is listed");
    assert_eq!(alice["displayName"], "Alice Example");
    assert!(
        location.as_deref().is_some_and(|l| l.ends_with(id)),
        "the proxy passes the Location header on: {location:?}"
    );

    let records = proxy.records();
    assert_eq!(proxy.count(), 1);
    assert_eq!(records[0].method, "POST");
    assert_eq!(records[0].path, "/v2/Users");
    assert_eq!(records[0].status, 201);
    assert_eq!(records[0].body.as_ref().expect("body")["userName"], "alice");
    assert_eq!(
        records[0].header("authorization"),
        Some(server.auth_header().as_str())
    );

    // Without the token the real server refuses, and the proxy passes that on unchanged.
    proxy.clear();
    let status = common::block_on(async {
        common::http_client()
            .get(format!("{}/Users", proxy.url))
            .send()
            .await
            .expect("GET through the proxy")
            .status()
            .as_u16()
    });
    assert_eq!(status, 401);
    assert_eq!(proxy.calls(), ["GET /v2/Users 401"]);
}

#[test]
fn proxy_injects_planned_faults_then_forwards() {
    let server = ScimServer::start();
    let proxy = RecordingProxy::start(&server.url);
    proxy.set_faults([
        Fault::Status(503),
        Fault::Pass,
        Fault::TooManyRequests {
            retry_after_secs: 7,
        },
        Fault::DropBeforeForward,
        Fault::DropAfterForward,
    ]);

    let mut outcomes = Vec::new();
    for i in 0..6 {
        let url = format!("{}/Users", proxy.url);
        let token = server.token.clone();
        let body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": format!("user{i}"),
        });
        outcomes.push(common::block_on(async move {
            match common::http_client()
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/scim+json")
                .body(body.to_string())
                .send()
                .await
            {
                Ok(response) => format!(
                    "{} retry-after={:?}",
                    response.status().as_u16(),
                    response.headers().get("retry-after")
                ),
                Err(_) => "connection closed".to_string(),
            }
        }));
    }
    assert_eq!(
        outcomes,
        [
            "503 retry-after=None",
            "201 retry-after=None",
            "429 retry-after=Some(\"7\")",
            "connection closed",
            "connection closed",
            "201 retry-after=None",
        ]
    );
    // Only the calls that were forwarded reached the server, the dropped-after-forward one
    // included.
    let mut names: Vec<String> = server
        .list_users()
        .iter()
        .map(|user| user["userName"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["user1", "user4", "user5"]);
    assert_eq!(
        proxy.calls(),
        [
            "POST /v2/Users 503",
            "POST /v2/Users 201",
            "POST /v2/Users 429",
            "POST /v2/Users 0",
            "POST /v2/Users 0",
            "POST /v2/Users 201",
        ]
    );
}

#[test]
fn server_helpers_page_patch_and_dump() {
    let server = ScimServer::start();
    for i in 0..12 {
        server.create_user(json!({ "userName": format!("u{i:02}") }));
    }
    let group = server.create_group(json!({ "displayName": "staff" }));
    let path = format!("/Groups/{}", group["id"].as_str().expect("group id"));
    let answer = server.patch(
        &path,
        ScimServer::patch_op(json!([
            { "op": "replace", "path": "displayName", "value": "people" }
        ])),
    );
    assert_eq!(answer, None, "PATCH answers 204 without a body");
    assert_eq!(server.get(&path)["displayName"], "people");

    assert_eq!(server.list_paged("/Users", None, 5).len(), 12);
    assert_eq!(
        server.list_all("/Users", Some("userName sw \"u1\"")).len(),
        2
    );
    assert!(server.user_by_username("u07").is_some());
    assert!(server.group_by_display_name("people").is_some());

    let (status, body) = server.request(
        reqwest::Method::POST,
        "/Users",
        Some(&json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "u01",
        })),
    );
    assert_eq!(status, 409, "{body:?}");

    let dump = server.stop_and_dump();
    assert_eq!(dump.len(), 13);
}
