//! The proxy's deviations ([`Deviation`]) turn the real scim2-server into the SCIM servers met
//! in the field: each test checks what a client sees through the proxy and what the server
//! stored (read directly, not through the proxy). Independent of the scimsync binary.

mod common;

use common::{Deviation, Fault, RecordingProxy, ScimServer};
use reqwest::Method;
use serde_json::{json, Value};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// What a search that finds nothing answers.
fn empty_list() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": 0,
        "Resources": [],
        "startIndex": 1,
        "itemsPerPage": 0,
    })
}

/// A client of the proxy, with the server's token.
struct Via<'a> {
    proxy: &'a RecordingProxy,
    token: String,
}

impl<'a> Via<'a> {
    fn new(proxy: &'a RecordingProxy, server: &ScimServer) -> Via<'a> {
        Via {
            proxy,
            token: server.token.clone(),
        }
    }

    /// One call through the proxy: the status and the JSON body, if any.
    fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> (u16, Option<Value>) {
        let mut request = common::http_client()
            .request(method, format!("{}{path}", self.proxy.url))
            .bearer_auth(&self.token)
            .query(query);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/scim+json")
                .body(body.to_string());
        }
        common::block_on(async move {
            let response = request.send().await.expect("a call through the proxy");
            let status = response.status().as_u16();
            let bytes = response.bytes().await.expect("the answer's body");
            let body = (!bytes.is_empty()).then(|| {
                serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                    panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes))
                })
            });
            (status, body)
        })
    }

    fn get(&self, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let (status, body) = self.send(Method::GET, path, query, None);
        (status, body.unwrap_or(Value::Null))
    }

    fn search(&self, filter: &str) -> (u16, Value) {
        self.get("/Users", &[("filter", filter)])
    }

    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let (status, body) = self.send(Method::POST, path, &[], Some(&body));
        (status, body.unwrap_or(Value::Null))
    }

    fn patch(&self, path: &str, operations: Value) -> (u16, Option<Value>) {
        let body = ScimServer::patch_op(operations);
        self.send(Method::PATCH, path, &[], Some(&body))
    }
}

fn id(resource: &Value) -> String {
    resource["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {resource}"))
        .to_owned()
}

/// The ids of a listing's resources, in order.
fn ids(list: &Value) -> Vec<String> {
    list["Resources"]
        .as_array()
        .unwrap_or_else(|| panic!("not a ListResponse: {list}"))
        .iter()
        .map(id)
        .collect()
}

/// The member ids of a group as the server stores it, sorted.
fn members(server: &ScimServer, group_id: &str) -> Vec<String> {
    let group = server.get(&format!("/Groups/{group_id}"));
    let members = group["members"].as_array().cloned().unwrap_or_default();
    sorted(
        members
            .iter()
            .map(|m| m["value"].as_str().expect("a member id").to_owned())
            .collect(),
    )
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// The deviation recorded for each call so far.
fn deviations(proxy: &RecordingProxy) -> Vec<Option<Deviation>> {
    proxy.records().iter().map(|r| r.deviation).collect()
}

/// Asserts a SCIM error body: its schema, status (as a string) and `scimType`.
fn assert_scim_error(body: &Option<Value>, status: &str, scim_type: Option<&str>) {
    let body = body.as_ref().expect("an error body");
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"]),
        "{body}"
    );
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["scimType"].as_str(), scim_type, "{body}");
    assert!(body["detail"].is_string(), "{body}");
}

#[test]
fn emails_without_type_hides_and_drops_types_and_type_filters_find_nothing() {
    let server = ScimServer::start();
    let proxy = RecordingProxy::start(&server.url);
    let via = Via::new(&proxy, &server);
    let alice = id(&server.create_user(json!({
        "userName": "alice",
        "emails": [{"value": "alice@example.org", "type": "work", "primary": true}],
    })));
    let carol = id(&server.create_user(json!({
        "userName": "carol",
        "emails": [{"value": "carol@example.org", "type": "work"}],
    })));
    proxy.set_deviations([Deviation::EmailsWithoutType]);

    // Written through the proxy: neither the answer nor the store has a type.
    let (status, bob) = via.post(
        "/Users",
        json!({
            "schemas": [USER],
            "userName": "bob",
            "emails": [{"value": "bob@example.org", "type": "work"}],
        }),
    );
    assert_eq!(status, 201, "{bob}");
    assert_eq!(bob["emails"], json!([{"value": "bob@example.org"}]));
    let bob = id(&bob);
    assert_eq!(
        server.get(&format!("/Users/{bob}"))["emails"],
        json!([{"value": "bob@example.org"}])
    );
    let (status, bulk) = via.post(
        "/Bulk",
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": [{
                "method": "POST",
                "path": "/Users",
                "bulkId": "dan",
                "data": {
                    "schemas": [USER],
                    "userName": "dan",
                    "emails": [{"value": "dan@example.org", "type": "home"}],
                },
            }],
        }),
    );
    assert_eq!(status, 200, "{bulk}");
    assert_eq!(bulk["Operations"][0]["status"], "201", "{bulk}");
    let dan = server.user_by_username("dan").expect("dan is stored");
    assert_eq!(dan["emails"], json!([{"value": "dan@example.org"}]));

    // Stored with a type before: the server keeps it, the proxy hides it, in a resource and
    // in a listing.
    let (status, got) = via.get(&format!("/Users/{alice}"), &[]);
    assert_eq!(status, 200);
    assert_eq!(
        got["emails"],
        json!([{"value": "alice@example.org", "primary": true}])
    );
    assert_eq!(
        server.get(&format!("/Users/{alice}"))["emails"][0]["type"],
        "work"
    );
    let (status, list) = via.get("/Users", &[]);
    assert_eq!(status, 200);
    assert_eq!(list["totalResults"], 4, "{list}");
    for user in list["Resources"].as_array().expect("Resources") {
        for email in user["emails"].as_array().expect("emails") {
            assert!(email.get("type").is_none(), "{user}");
        }
    }

    // Filters by type find nothing, whatever their form.
    proxy.clear();
    for filter in [
        r#"emails[type eq "work"]"#,
        r#"emails[type eq "work"].value eq "alice@example.org""#,
        r#"emails[type eq "work" and value eq "alice@example.org"]"#,
        r#"EMAILS[TYPE EQ "work"]"#,
        r#"emails.type eq "work""#,
        r#"userName eq "alice" and emails[type pr]"#,
    ] {
        assert_eq!(via.search(filter), (200, empty_list()), "{filter}");
    }
    // Filters by value find the user, without type.
    for filter in [
        r#"emails.value eq "alice@example.org""#,
        r#"emails eq "alice@example.org""#,
        r#"emails[value eq "alice@example.org"]"#,
    ] {
        let (status, list) = via.search(filter);
        assert_eq!(status, 200, "{filter}: {list}");
        assert_eq!(ids(&list), [alice.as_str()], "{filter}");
        assert_eq!(
            list["Resources"][0]["emails"],
            json!([{"value": "alice@example.org", "primary": true}]),
            "{filter}"
        );
    }
    assert!(proxy
        .records()
        .iter()
        .all(|r| r.deviation == Some(Deviation::EmailsWithoutType) && r.fault.is_none()));

    // A PATCH that selects e-mails by type: add and replace find no target, as on a server
    // whose e-mails have no type; a remove does nothing.
    let alice_path = format!("/Users/{alice}");
    let (status, body) = via.patch(
        &alice_path,
        json!([
            {"op": "replace", "path": "displayName", "value": "Alice"},
            {"op": "replace", "path": r#"emails[type eq "work"].value"#, "value": "a2@example.org"},
        ]),
    );
    assert_eq!(status, 400);
    assert_scim_error(&body, "400", Some("noTarget"));
    let stored = server.get(&alice_path);
    assert!(stored.get("displayName").is_none(), "not applied: {stored}");
    assert_eq!(stored["emails"][0]["value"], "alice@example.org");
    let (status, body) = via.patch(
        &alice_path,
        json!([{"op": "remove", "path": r#"emails[type eq "work"]"#}]),
    );
    assert_eq!((status, body), (204, None));
    assert_eq!(
        server.get(&alice_path)["emails"][0]["value"],
        "alice@example.org"
    );
    // Writing whole e-mails works, and stores them without type.
    let (status, body) = via.patch(
        &alice_path,
        json!([{"op": "replace", "path": "emails", "value": [
            {"value": "a2@example.org", "type": "work", "primary": true},
        ]}]),
    );
    assert_eq!((status, body), (204, None));
    assert_eq!(
        server.get(&alice_path)["emails"],
        json!([{"value": "a2@example.org", "primary": true}])
    );

    // Faithful again: the type stored before shows, and a filter by type finds it.
    proxy.set_deviations([]);
    let (_, got) = via.get(&format!("/Users/{carol}"), &[]);
    assert_eq!(got["emails"][0]["type"], "work");
    let (status, list) = via.search(r#"emails[type eq "work"]"#);
    assert_eq!((status, ids(&list)), (200, vec![carol.clone()]));
    assert_eq!(proxy.records().last().expect("a record").deviation, None);
}

#[test]
fn compound_filter_refused_answers_invalid_filter_for_and_in_brackets_only() {
    let server = ScimServer::start();
    let proxy = RecordingProxy::start(&server.url);
    let via = Via::new(&proxy, &server);
    let alice = id(&server.create_user(json!({
        "userName": "alice",
        "emails": [{"value": "alice@example.org", "type": "work"}],
    })));
    // The real server takes the compound value filter.
    assert_eq!(
        server
            .list_all(
                "/Users",
                Some(r#"emails[type eq "work" and value eq "alice@example.org"]"#)
            )
            .len(),
        1
    );
    proxy.set_deviations([Deviation::CompoundFilterRefused]);

    for filter in [
        r#"emails[type eq "work" and value eq "alice@example.org"]"#,
        r#"userName eq "alice" or EMAILS[TYPE EQ "work" AND VALUE EQ "x"]"#,
    ] {
        let (status, body) = via.search(filter);
        assert_eq!(status, 400, "{filter}: {body}");
        assert_scim_error(&Some(body), "400", Some("invalidFilter"));
    }
    for (filter, found) in [
        (r#"emails[type eq "work"]"#, 1),
        (
            r#"userName eq "alice" and emails[value eq "alice@example.org"]"#,
            1,
        ),
        (r#"emails[value eq "x and y"]"#, 0),
    ] {
        let (status, list) = via.search(filter);
        assert_eq!(status, 200, "{filter}: {list}");
        assert_eq!(list["totalResults"], found, "{filter}: {list}");
        if found == 1 {
            assert_eq!(ids(&list), [alice.as_str()]);
        }
    }
    assert_eq!(
        proxy.calls(),
        [
            "GET /v2/Users 400",
            "GET /v2/Users 400",
            "GET /v2/Users 200",
            "GET /v2/Users 200",
            "GET /v2/Users 200",
        ]
    );
    let refused = Some(Deviation::CompoundFilterRefused);
    assert_eq!(
        deviations(&proxy),
        [refused, refused, None, None, None],
        "only the refused calls were changed"
    );
    assert!(proxy.records().iter().all(|r| r.fault.is_none()));
}

#[test]
fn filter_ignored_empty_finds_nothing_and_says_filters_are_unsupported() {
    let server = ScimServer::start();
    let proxy = RecordingProxy::start(&server.url);
    let via = Via::new(&proxy, &server);
    let alice = id(&server.create_user(json!({"userName": "alice"})));
    proxy.set_deviations([Deviation::FilterIgnoredEmpty]);

    assert_eq!(via.search(r#"userName eq "alice""#), (200, empty_list()));
    assert_eq!(
        via.get("/Groups", &[("filter", r#"displayName eq "x""#)]),
        (200, empty_list())
    );
    let (status, config) = via.get("/ServiceProviderConfig", &[]);
    assert_eq!(status, 200);
    assert_eq!(
        config["filter"],
        json!({"supported": false, "maxResults": 1000})
    );
    assert_eq!(
        config["patch"],
        json!({"supported": true}),
        "the rest is kept"
    );
    assert_eq!(
        server.get("/ServiceProviderConfig")["filter"]["supported"],
        true
    );
    let (status, list) = via.get("/Users", &[]);
    assert_eq!((status, ids(&list)), (200, vec![alice.clone()]));
    let ignored = Some(Deviation::FilterIgnoredEmpty);
    assert_eq!(deviations(&proxy), [ignored, ignored, ignored, None]);

    // A planned fault takes precedence for its call; the deviation holds for the next ones.
    proxy.clear();
    proxy.set_faults([Fault::Status(503)]);
    assert_eq!(via.search(r#"userName eq "alice""#).0, 503);
    assert_eq!(via.search(r#"userName eq "alice""#), (200, empty_list()));
    let records = proxy.records();
    assert_eq!(records[0].fault, Some(Fault::Status(503)));
    assert_eq!(records[0].deviation, None);
    assert_eq!(records[1].fault, None);
    assert_eq!(records[1].deviation, ignored);

    // An empty set makes the proxy faithful again.
    proxy.set_deviations([]);
    let (status, list) = via.search(r#"userName eq "alice""#);
    assert_eq!((status, ids(&list)), (200, vec![alice]));
    let (_, config) = via.get("/ServiceProviderConfig", &[]);
    assert_eq!(config["filter"]["supported"], true);
}

#[test]
fn members_ignored_on_create_creates_groups_empty() {
    let server = ScimServer::start();
    let proxy = RecordingProxy::start(&server.url);
    let via = Via::new(&proxy, &server);
    let a = id(&server.create_user(json!({"userName": "a"})));
    let b = id(&server.create_user(json!({"userName": "b"})));
    proxy.set_deviations([Deviation::MembersIgnoredOnCreate]);

    let (status, group) = via.post(
        "/Groups",
        json!({
            "schemas": [GROUP],
            "displayName": "staff",
            "members": [{"value": a}, {"value": b}],
        }),
    );
    assert_eq!(status, 201, "{group}");
    assert!(
        group.get("members").is_none_or(|m| m == &json!([])),
        "{group}"
    );
    let staff = id(&group);
    assert_eq!(members(&server, &staff), Vec::<String>::new());
    assert_eq!(
        proxy.records()[0].body.as_ref().expect("body")["members"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "the record keeps what the client sent"
    );

    // Members added afterwards stay.
    let (status, _) = via.patch(
        &format!("/Groups/{staff}"),
        json!([{"op": "add", "path": "members", "value": [{"value": a}, {"value": b}]}]),
    );
    assert_eq!(status, 204);
    assert_eq!(members(&server, &staff), sorted(vec![a.clone(), b.clone()]));

    // In a Bulk too.
    let (status, bulk) = via.post(
        "/Bulk",
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": [{
                "method": "POST",
                "path": "/Groups",
                "bulkId": "g",
                "data": {"schemas": [GROUP], "displayName": "bulk", "members": [{"value": a}]},
            }],
        }),
    );
    assert_eq!(status, 200, "{bulk}");
    assert_eq!(bulk["Operations"][0]["status"], "201", "{bulk}");
    let bulk_group = server.group_by_display_name("bulk").expect("created");
    assert!(bulk_group.get("members").is_none(), "{bulk_group}");

    let changed = Some(Deviation::MembersIgnoredOnCreate);
    assert_eq!(deviations(&proxy), [changed, None, changed]);
}

#[test]
fn member_path_remove_refused_takes_the_value_form_instead() {
    let server = ScimServer::start();
    let proxy = RecordingProxy::start(&server.url);
    let via = Via::new(&proxy, &server);
    let [a, b, c] = ["a", "b", "c"].map(|name| id(&server.create_user(json!({"userName": name}))));
    let group = id(&server.create_group(json!({
        "displayName": "staff",
        "members": [{"value": a}, {"value": b}, {"value": c}],
    })));
    let path = format!("/Groups/{group}");
    let value_form = json!([{"op": "remove", "path": "members", "value": [{"value": a}]}]);
    // The real server refuses the value form (PEERS.md).
    let (status, _) = server.request(
        Method::PATCH,
        &path,
        Some(&ScimServer::patch_op(value_form.clone())),
    );
    assert_eq!(status, 400);
    proxy.set_deviations([Deviation::MemberPathRemoveRefused]);

    let (status, body) = via.patch(
        &path,
        json!([{"op": "Remove", "path": format!("members[value eq \"{a}\"]")}]),
    );
    assert_eq!(status, 400);
    assert_scim_error(&body, "400", Some("invalidPath"));
    assert_eq!(
        members(&server, &group),
        sorted(vec![a.clone(), b.clone(), c.clone()])
    );

    let (status, body) = via.patch(
        &path,
        json!([{"op": "REMOVE", "path": "members", "value": [{"value": a}, {"value": b}]}]),
    );
    assert_eq!((status, body), (204, None));
    assert_eq!(members(&server, &group), [c.as_str()]);

    // With other operations: an add, a removal in the value form, a replace.
    let (status, body) = via.patch(
        &path,
        json!([
            {"op": "add", "path": "members", "value": [{"value": a}]},
            {"op": "remove", "path": "members", "value": [{"value": c}]},
            {"op": "replace", "path": "displayName", "value": "people"},
        ]),
    );
    assert_eq!((status, body), (204, None));
    assert_eq!(members(&server, &group), [a.as_str()]);
    assert_eq!(server.get(&path)["displayName"], "people");

    let changed = Some(Deviation::MemberPathRemoveRefused);
    assert_eq!(deviations(&proxy), [changed, changed, changed]);
}

#[test]
fn sub_attribute_path_501_refuses_user_patches_with_sub_attributes_or_filters() {
    let server = ScimServer::start();
    let proxy = RecordingProxy::start(&server.url);
    let via = Via::new(&proxy, &server);
    let alice = id(&server.create_user(json!({
        "userName": "alice",
        "name": {"givenName": "Alice"},
        "emails": [{"value": "alice@example.org", "type": "work"}],
    })));
    let group = id(&server.create_group(json!({
        "displayName": "staff",
        "members": [{"value": alice}],
    })));
    let path = format!("/Users/{alice}");
    proxy.set_deviations([Deviation::SubAttributePath501]);

    for refused in [
        "name.givenName",
        r#"emails[type eq "work"].value"#,
        r#"emails[value eq "alice@example.org"]"#,
        &format!("{USER}:name.familyName"),
        &format!("{ENTERPRISE}:manager.value"),
    ] {
        let (status, body) = via.patch(
            &path,
            json!([
                {"op": "replace", "path": "displayName", "value": "Refused"},
                {"op": "replace", "path": refused, "value": "x"},
            ]),
        );
        assert_eq!(status, 501, "{refused}");
        assert_scim_error(&body, "501", None);
    }
    let stored = server.get(&path);
    assert!(stored.get("displayName").is_none(), "{stored}");
    assert_eq!(stored["name"], json!({"givenName": "Alice"}));

    // Plain attributes, schema-prefixed ones and path-less values go through.
    let (status, body) = via.patch(
        &path,
        json!([
            {"op": "replace", "path": "displayName", "value": "Alice Example"},
            {"op": "add", "path": format!("{ENTERPRISE}:department"), "value": "R&D"},
            {"op": "replace", "value": {"name": {"givenName": "Al", "familyName": "Ex"}}},
        ]),
    );
    assert_eq!((status, body), (204, None));
    let stored = server.get(&path);
    assert_eq!(stored["displayName"], "Alice Example");
    assert_eq!(stored[ENTERPRISE]["department"], "R&D");
    assert_eq!(
        stored["name"],
        json!({"givenName": "Al", "familyName": "Ex"})
    );

    // Groups are not concerned.
    let (status, _) = via.patch(
        &format!("/Groups/{group}"),
        json!([{"op": "remove", "path": format!("members[value eq \"{alice}\"]")}]),
    );
    assert_eq!(status, 204);
    assert_eq!(members(&server, &group), Vec::<String>::new());

    let refused = Some(Deviation::SubAttributePath501);
    assert_eq!(
        deviations(&proxy),
        [refused, refused, refused, refused, refused, None, None]
    );
}

#[test]
fn add_remove_combined_refused_takes_one_then_the_other() {
    let server = ScimServer::start();
    let proxy = RecordingProxy::start(&server.url);
    let via = Via::new(&proxy, &server);
    let [a, b] = ["a", "b"].map(|name| id(&server.create_user(json!({"userName": name}))));
    let group = id(&server.create_group(json!({
        "displayName": "staff",
        "members": [{"value": a}],
    })));
    let path = format!("/Groups/{group}");
    proxy.set_deviations([Deviation::AddRemoveCombinedRefused]);

    for operations in [
        json!([
            {"op": "add", "path": "members", "value": [{"value": b}]},
            {"op": "remove", "path": format!("members[value eq \"{a}\"]")},
        ]),
        json!([
            {"op": "Add", "value": {"members": [{"value": b}]}},
            {"op": "Remove", "path": "members", "value": [{"value": a}]},
        ]),
    ] {
        let (status, body) = via.patch(&path, operations);
        assert_eq!(status, 400);
        assert_scim_error(&body, "400", Some("invalidValue"));
        assert_eq!(members(&server, &group), [a.as_str()]);
    }

    let (status, _) = via.patch(
        &path,
        json!([{"op": "add", "path": "members", "value": [{"value": b}]}]),
    );
    assert_eq!(status, 204);
    let (status, _) = via.patch(
        &path,
        json!([{"op": "remove", "path": format!("members[value eq \"{a}\"]")}]),
    );
    assert_eq!(status, 204);
    assert_eq!(members(&server, &group), [b.as_str()]);

    let refused = Some(Deviation::AddRemoveCombinedRefused);
    assert_eq!(deviations(&proxy), [refused, refused, None, None]);
}

#[test]
fn start_index_ignored_serves_the_first_page_for_every_page() {
    let server = ScimServer::start();
    let proxy = RecordingProxy::start(&server.url);
    let via = Via::new(&proxy, &server);
    for i in 0..5 {
        server.create_user(json!({"userName": format!("u{i}")}));
    }
    let page = |start: &str| {
        let (status, list) = server.request(
            Method::GET,
            &format!("/Users?startIndex={start}&count=2"),
            None,
        );
        assert_eq!(status, 200);
        ids(&list.expect("a listing"))
    };
    let first = page("1");
    assert_ne!(page("3"), first, "the server itself pages");
    proxy.set_deviations([Deviation::StartIndexIgnored]);

    let (status, list) = via.get("/Users", &[("startIndex", "3"), ("count", "2")]);
    assert_eq!(status, 200);
    assert_eq!(ids(&list), first);
    assert_eq!(list["startIndex"], 1);
    assert_eq!(list["totalResults"], 5);
    let (_, list) = via.get("/Users", &[("startIndex", "1"), ("count", "2")]);
    assert_eq!(ids(&list), first);
    // A filtered listing pages as before.
    let (_, list) = via.get(
        "/Users",
        &[
            ("filter", r#"userName sw "u""#),
            ("startIndex", "3"),
            ("count", "2"),
        ],
    );
    assert_eq!(list["startIndex"], 3);
    assert_eq!(ids(&list), page("3"));

    let records = proxy.records();
    assert_eq!(
        records[0].query_param("startIndex"),
        Some("3"),
        "recorded as sent"
    );
    assert_eq!(
        deviations(&proxy),
        [Some(Deviation::StartIndexIgnored), None, None]
    );
}
