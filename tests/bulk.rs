//! SCIM Bulk (RFC 7644 §3.7) against a real scim2-server behind the recording proxy: writes
//! coalesced into `POST /Bulk` requests within the advertised limits, each operation's result
//! handled as a single call's, faults on the bulk requests, and the fallback to single calls.

mod common;

use common::env::{even_and_all_groups as groups, numbered_users as users};
use common::{Fault, RecordingProxy, RunOutput, ScimServer, Workspace};
use serde_json::{json, Value};
use std::collections::BTreeMap;

struct Env {
    server: ScimServer,
    proxy: RecordingProxy,
    ws: Workspace,
}

/// The ServiceProviderConfig scim2-server announces by default, with other bulk limits.
fn service_provider_config(bulk: Value) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": true},
        "bulk": bulk,
        "filter": {"supported": true, "maxResults": 1000},
        "changePassword": {"supported": true},
        "sort": {"supported": true},
        "etag": {"supported": true},
    })
}

impl Env {
    /// A real server announcing `bulk` in its ServiceProviderConfig, behind the proxy;
    /// `extra` goes into the `[[target]]` table (the mappings are Entra's defaults).
    fn start(bulk: Value, scope: &str, extra: &str) -> Env {
        common::ensure_peers();
        let ws = Workspace::new();
        let spc = ws.write(
            "spc.json",
            serde_json::to_vec_pretty(&service_provider_config(bulk)).expect("json"),
        );
        let spc = spc.to_str().expect("utf-8 path").to_owned();
        let server = ScimServer::start_with_args(&["--service-provider-config", &spc]);
        let proxy = RecordingProxy::start(&server.url);
        ws.write("token", format!("{}\n", server.token));
        ws.write(
            "scimsync.toml",
            format!(
                "[state]\npath = \"state\"\n\n[source]\nkind = \"json\"\npath = \"directory.json\"\n\n\
                 [scope]\n{scope}\n\n[[target]]\nname = \"app\"\nurl = \"{url}\"\ntoken_file = \"token\"\n\
                 rate_limit = 1000\nconcurrency = 4\nbulk = true\n{extra}\n",
                url = proxy.url
            ),
        );
        Env { server, proxy, ws }
    }

    fn directory(&self, users: &[Value], groups: &[Value]) {
        self.ws.write(
            "directory.json",
            serde_json::to_vec_pretty(&json!({"users": users, "groups": groups})).expect("json"),
        );
    }

    fn sync(&self) -> RunOutput {
        self.proxy.clear();
        self.ws.run(&["--config", "scimsync.toml", "sync"])
    }

    /// The bulk requests of the last cycle: each one's operations (method, path).
    fn bulk_requests(&self) -> Vec<Vec<(String, String)>> {
        self.proxy
            .records()
            .iter()
            .filter(|r| r.route().ends_with("/Bulk"))
            .map(|r| {
                assert_eq!(r.method, "POST", "{r:?}");
                let body = r.body.as_ref().expect("a bulk request has a body");
                body["Operations"]
                    .as_array()
                    .expect("Operations")
                    .iter()
                    .map(|op| {
                        (
                            op["method"].as_str().expect("method").to_owned(),
                            op["path"].as_str().expect("path").to_owned(),
                        )
                    })
                    .collect()
            })
            .collect()
    }
}

fn bulk(max_operations: u64) -> Value {
    json!({"supported": true, "maxOperations": max_operations, "maxPayloadSize": 1048576})
}

/// Asserts the target holds exactly the users `ids` of `user(i)` (no duplicate: the strict
/// reader panics on one) and, when `with_groups`, the groups of `groups(n)`.
fn assert_exact(env: &Env, ids: &[usize], n: usize, with_groups: bool) {
    let got = common::env::target_users(&env.server);
    let want: Vec<String> = ids.iter().map(|i| format!("u{i:04}")).collect();
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), want);
    for &i in ids {
        let u = &got[&format!("u{i:04}")];
        assert_eq!(
            u["name"]["formatted"],
            json!(format!("Given{i} Surname{i}")),
            "{u}"
        );
        assert_eq!(u["active"], json!(i % 7 != 0), "{u}");
        assert_eq!(u["externalId"], json!(format!("u{i:04}")), "{u}");
        let mail = u["emails"]
            .as_array()
            .and_then(|e| e.iter().find(|e| e["type"] == "work"))
            .map(|e| e["value"].clone());
        assert_eq!(mail, Some(json!(format!("user{i}@example.org"))), "{u}");
    }
    if with_groups {
        let groups = common::env::target_groups(&env.server);
        let all: Vec<String> = (0..n).map(|i| format!("u{i:04}")).collect();
        let even: Vec<String> = (0..n).step_by(2).map(|i| format!("u{i:04}")).collect();
        let want: BTreeMap<String, Vec<String>> =
            BTreeMap::from([("All".to_owned(), all), ("Even".to_owned(), even)]);
        assert_eq!(groups, want);
    }
}

#[test]
fn an_initial_sync_in_bulk_reaches_the_exact_state_in_few_requests() {
    let env = Env::start(bulk(50), "groups = [\"All\", \"Even\"]", "");
    let n = 300;
    env.directory(&users(n), &groups(n));
    let out = env.sync();
    out.assert_success();
    assert!(
        out.stdout.contains(
            "users created 300, updated 0, deprovisioned 0, unchanged 0, skipped 0, failed 0"
        ),
        "{out}"
    );
    assert_exact(&env, &(0..n).collect::<Vec<_>>(), n, true);

    let requests = env.bulk_requests();
    let sizes: Vec<usize> = requests.iter().map(Vec::len).collect();
    // Every create went in a bulk request, exactly once, and none carried more than the
    // advertised maxOperations.
    assert!(sizes.iter().all(|&s| (1..=50).contains(&s)), "{sizes:?}");
    let creates = requests
        .iter()
        .flatten()
        .filter(|(m, p)| m == "POST" && p == "/Users")
        .count();
    assert_eq!(creates, n, "{sizes:?}");
    assert!(sizes.iter().filter(|&&s| s == 50).count() >= 5, "{sizes:?}");
    let calls = env.proxy.calls();
    let singles: Vec<&String> = calls
        .iter()
        .filter(|c| !c.starts_with("GET ") && !c.starts_with("POST /v2/Bulk "))
        .collect();
    assert!(singles.is_empty(), "writes sent alone: {singles:?}");
    // Listing, ServiceProviderConfig, 6 user requests, 2 group queries and the groups'
    // creates and member batches (up to 100 members each, one after another): far fewer
    // than the 300 + 2 + 4 writes of single calls.
    eprintln!("{} requests, bulk sizes {sizes:?}", calls.len());
    assert!(calls.len() <= 30, "{} requests: {calls:#?}", calls.len());
    assert!(
        out.stdout
            .contains(&format!("{} requests sent", calls.len())),
        "{out}"
    );

    // The provisioning log: each create's record holds its own result from inside the bulk
    // response (201), and no record claims a POST /Bulk that carried other users too.
    let log = env.ws.run(&[
        "--config",
        "scimsync.toml",
        "logs",
        "--json",
        "--action",
        "create",
        "--limit",
        "1000",
    ]);
    log.assert_success();
    let records: Vec<serde_json::Value> = log
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .filter(|r: &serde_json::Value| r.get("kind").and_then(|k| k.as_str()) == Some("user"))
        .collect();
    assert_eq!(records.len(), n, "{log}");
    for r in &records {
        let calls = r["calls"].as_array().expect("calls");
        assert!(
            calls.iter().any(|c| c["method"] == "POST"
                && c["path"] == "/Users"
                && c["status"] == 201
                && c["bulk"] == true),
            "{r}"
        );
        assert!(calls.iter().all(|c| c["path"] != "/Bulk"), "{r}");
    }

    let check = env.ws.run(&["--config", "scimsync.toml", "check"]);
    check.assert_success();
    assert!(
        check.stdout.contains(
            "target \"app\": bulk: on (up to 50 operations and 1048576 bytes per request)"
        ),
        "{check}"
    );

    // Nothing changed: a second cycle sends nothing, not even a ServiceProviderConfig read.
    let out = env.sync();
    out.assert_success();
    assert_eq!(env.proxy.calls(), Vec::<String>::new(), "{out}");
}

#[test]
fn a_rejected_operation_fails_only_its_user() {
    // scim2-server refuses an attribute its schema lacks: only u0007 has one.
    let extra = format!(
        r#"
{core}
[[target.user_mapping]]
target = "externalId"
source = "objectId"

[[target.user_mapping]]
target = "favoriteColor"
source = "favoriteColor"
"#,
        core = common::env::CORE_USER_MAPPINGS
    );
    let env = Env::start(bulk(1000), "all = true", &extra);
    let n = 40;
    let mut us = users(n);
    us[7]["favoriteColor"] = json!("teal");
    env.directory(&us, &[]);
    let out = env.sync();
    out.assert_code(1);
    assert!(
        out.stdout.contains(
            "users created 39, updated 0, deprovisioned 0, unchanged 0, skipped 0, failed 1"
        ),
        "{out}"
    );
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("failed user u0007"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("POST /Users: 400"), "{line}");
    let ids: Vec<usize> = (0..n).filter(|&i| i != 7).collect();
    assert_exact(&env, &ids, n, false);
    // One bulk request carried every create, the refused one included; a 400 is final, so it
    // was not sent again.
    let requests = env.bulk_requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].len(), n);
    assert!(env
        .proxy
        .calls()
        .iter()
        .all(|c| !c.starts_with("POST /v2/Users")));
}

#[test]
fn faults_on_bulk_requests_converge_without_a_duplicate() {
    let env = Env::start(
        bulk(40),
        "groups = [\"All\", \"Even\"]",
        "timeout_seconds = 10\nretry_max_seconds = 20",
    );
    let n = 160;
    env.directory(&users(n), &groups(n));
    // The creates applied by the server whose answer is lost (DropAfterForward), a 500 and a
    // 503 (a create's outcome is unknown: match again before creating), a 429 with
    // Retry-After and a reset before forwarding (sent again).
    let plan = [
        Fault::DropAfterForward,
        Fault::Status(500),
        Fault::TooManyRequests {
            retry_after_secs: 1,
        },
        Fault::Pass,
        Fault::DropBeforeForward,
        Fault::DropAfterForward,
        Fault::Status(503),
    ];
    let planned = plan.iter().filter(|f| **f != Fault::Pass).count();
    env.proxy.set_route_faults("/Bulk", plan);
    let mut outs = Vec::new();
    let mut injected = 0;
    for _ in 0..4 {
        let out = env.sync();
        injected += env
            .proxy
            .records()
            .iter()
            .filter(|r| r.fault.is_some())
            .inspect(|r| assert!(r.route().ends_with("/Bulk"), "{r:?}"))
            .count();
        let done = out.code == 0;
        outs.push(out);
        if done {
            break;
        }
    }
    let last = outs.last().expect("a cycle ran");
    assert_eq!(
        last.code,
        0,
        "not converged after {} cycles:\n{}",
        outs.len(),
        outs.iter()
            .map(|o| o.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(injected, planned);
    eprintln!(
        "converged in {} cycles, {injected} faults injected:\n{}",
        outs.len(),
        outs.iter().map(|o| o.stdout.as_str()).collect::<String>()
    );
    assert_exact(&env, &(0..n).collect::<Vec<_>>(), n, true);
    let out = env.sync();
    out.assert_success();
    assert_eq!(env.proxy.count(), 0, "{out}");
}

#[test]
fn a_target_without_bulk_gets_single_calls() {
    let env = Env::start(
        json!({"supported": false, "maxOperations": 0, "maxPayloadSize": 0}),
        "groups = [\"All\", \"Even\"]",
        "",
    );
    let n = 12;
    env.directory(&users(n), &groups(n));
    let out = env.sync();
    out.assert_success();
    assert_exact(&env, &(0..n).collect::<Vec<_>>(), n, true);
    assert!(
        out.stderr
            .contains("bulk = true, but its /ServiceProviderConfig says bulk is not supported"),
        "{out}"
    );
    assert_eq!(
        out.stderr.matches("bulk = true, but").count(),
        1,
        "one warning per cycle: {out}"
    );
    let calls = env.proxy.calls();
    assert!(calls.iter().all(|c| !c.contains("/Bulk")), "{calls:#?}");
    let check = env.ws.run(&["--config", "scimsync.toml", "check"]);
    check.assert_success();
    assert!(
        check.stdout.contains(
            "target \"app\": bulk: warning: bulk = true, but its /ServiceProviderConfig says bulk is not supported; writes go as single calls"
        ),
        "{check}"
    );
    let creates = calls
        .iter()
        .filter(|c| c.starts_with("POST /v2/Users "))
        .count();
    assert_eq!(creates, n, "{calls:#?}");
}

#[test]
fn updates_and_deletes_go_in_bulk_and_a_404_matches_again() {
    let env = Env::start(bulk(20), "all = true", "deprovision = \"delete\"");
    let n = 60;
    env.directory(&users(n), &[]);
    env.sync().assert_success();

    // 30 renamed, two of them deleted behind scimsync's back; the last 10 leave the source.
    let mut changed = users(50);
    for (i, u) in changed.iter_mut().enumerate().take(30) {
        u["surname"] = json!(format!("Changed{i}"));
    }
    for name in ["u0001", "u0002"] {
        let id = env.server.user_by_username(name).expect("account")["id"]
            .as_str()
            .expect("id")
            .to_owned();
        env.server.delete(&format!("/Users/{id}"));
    }
    env.directory(&changed, &[]);
    let out = env.sync();
    out.assert_success();
    assert!(
        out.stdout.contains(
            "users created 2, updated 28, deprovisioned 10, unchanged 20, skipped 0, failed 0"
        ),
        "{out}"
    );
    let got = common::env::target_users(&env.server);
    assert_eq!(got.len(), 50, "{:?}", got.keys().collect::<Vec<_>>());
    for i in 0..50 {
        let surname = if i < 30 {
            format!("Changed{i}")
        } else {
            format!("Surname{i}")
        };
        assert_eq!(
            got[&format!("u{i:04}")]["name"]["formatted"],
            json!(format!("Given{i} {surname}"))
        );
    }
    let ops: Vec<(String, String)> = env.bulk_requests().into_iter().flatten().collect();
    let count = |m: &str| ops.iter().filter(|(method, _)| method == m).count();
    // 30 PATCHes (two answered 404 inside the bulk response), 10 DELETEs, then the two
    // creates after matching again.
    assert_eq!(
        (count("PATCH"), count("DELETE"), count("POST")),
        (30, 10, 2),
        "{ops:?}"
    );
    let singles: Vec<String> = env
        .proxy
        .calls()
        .into_iter()
        .filter(|c| !c.starts_with("GET ") && !c.starts_with("POST /v2/Bulk "))
        .collect();
    assert!(singles.is_empty(), "writes sent alone: {singles:?}");
}

#[test]
fn random_faults_on_every_request_converge_without_a_duplicate() {
    let env = Env::start(
        bulk(20),
        "groups = [\"All\", \"Even\"]",
        "timeout_seconds = 3\nretry_max_seconds = 15",
    );
    let n = 80;
    env.directory(&users(n), &groups(n));
    env.proxy.set_random_faults(Some(common::RandomFaults {
        seed: 20_261_123,
        // Bulk sends few requests: a high rate so that every kind of request meets faults.
        percent: 50,
        mix: vec![
            Fault::Status(500),
            Fault::Status(503),
            Fault::TooManyRequests {
                retry_after_secs: 1,
            },
            Fault::DropBeforeForward,
            Fault::DropAfterForward,
            Fault::Delay(std::time::Duration::from_millis(3500)),
        ],
        budget: 40,
    }));
    let (cycles, injected) = common::until_converged(&env.proxy, 5, || env.sync());
    env.proxy.set_random_faults(None);
    assert!(injected >= 6, "only {injected} faults were injected");
    assert_exact(&env, &(0..n).collect::<Vec<_>>(), n, true);
    let out = env.sync();
    out.assert_success();
    assert_eq!(env.proxy.count(), 0, "{out}");
    eprintln!("converged in {cycles} cycles, {injected} faults injected");
}

#[test]
fn a_bulk_request_refused_as_a_whole_is_sent_as_single_calls() {
    let env = Env::start(bulk(1000), "all = true", "");
    let n = 10;
    env.directory(&users(n), &[]);
    // 413: the request as a whole is refused, so its operations go alone. Then 501: the
    // target has no bulk after all, so the rest of the cycle sends single calls.
    env.proxy
        .set_route_faults("/Bulk", [Fault::Status(413), Fault::Status(501)]);
    let out = env.sync();
    out.assert_success();
    assert_exact(&env, &(0..n).collect::<Vec<_>>(), n, false);
    let calls = env.proxy.calls();
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("POST /v2/Bulk "))
            .collect::<Vec<_>>(),
        ["POST /v2/Bulk 413"],
        "{calls:#?}"
    );
    let creates = calls
        .iter()
        .filter(|c| c.starts_with("POST /v2/Users "))
        .count();
    assert_eq!(creates, n, "{calls:#?}");

    // Changes in the next cycle: bulk again (a new cycle reads the target's config anew),
    // and a 501 turns it off for the rest of that cycle.
    let mut changed = users(n);
    for u in &mut changed {
        u["givenName"] = json!("Renamed");
    }
    env.directory(&changed, &[]);
    let out = env.sync();
    out.assert_success();
    let calls = env.proxy.calls();
    assert!(
        calls.contains(&"POST /v2/Bulk 501".to_owned()),
        "{calls:#?}"
    );
    let patches = calls
        .iter()
        .filter(|c| c.starts_with("PATCH /v2/Users/"))
        .count();
    assert_eq!(patches, n, "{calls:#?}");
    assert!(common::env::target_users(&env.server)
        .values()
        .all(|u| u["name"]["formatted"]
            .as_str()
            .is_some_and(|f| f.starts_with("Renamed "))));
}
