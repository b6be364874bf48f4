//! Safe under faults: retries, escrow, quarantine, the guards, bad answers from a target and
//! crash safety, against a real scim2-server behind the recording proxy that injects faults.

mod common;

use common::env::{even_and_all_groups as groups, numbered_users as users};
use common::{Fault, RandomFaults, RecordingProxy, RunOutput, ScimServer, Workspace};
use scimsync::ids::{SourceId, TargetName};
use scimsync::state::Store;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

struct Env {
    server: ScimServer,
    proxy: RecordingProxy,
    ws: Workspace,
}

impl Env {
    /// A real server behind the proxy; `extra` goes into the `[[target]]` table.
    fn start(scope: &str, extra: &str) -> Env {
        common::ensure_peers();
        let server = ScimServer::start();
        let proxy = RecordingProxy::start(&server.url);
        let ws = Workspace::new();
        ws.write("token", format!("{}\n", server.token));
        ws.write(
            "scimsync.toml",
            format!(
                "[state]\npath = \"state\"\n\n[source]\nkind = \"json\"\npath = \"directory.json\"\n\n\
                 [scope]\n{scope}\n\n[[target]]\nname = \"app\"\nurl = \"{url}\"\ntoken_file = \"token\"\n{extra}\n",
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

    fn sync(&self, args: &[&str]) -> RunOutput {
        self.proxy.clear();
        let mut all = vec!["--config", "scimsync.toml", "sync"];
        all.extend_from_slice(args);
        self.ws.run(&all)
    }

    /// The target's users by userName; panics on a duplicate userName.
    fn users(&self) -> BTreeMap<String, Value> {
        common::env::target_users(&self.server)
    }

    /// The target's groups by displayName, members as sorted userNames (duplicates kept).
    fn groups(&self) -> BTreeMap<String, Vec<String>> {
        common::env::target_groups(&self.server)
    }

    /// Opens the state after a run (the lock is free again) and returns the escrow.
    fn clear_escrow(&self) {
        let store = Store::open(&self.ws.path("state")).expect("open state");
        let snap = store.snapshot(&TargetName::from("app")).expect("snapshot");
        for id in snap.escrow().expect("escrow").keys() {
            snap.escrow_clear(id).expect("clear");
        }
        common::block_on(store.flush()).expect("flush");
    }

    fn escrow(&self) -> BTreeMap<SourceId, scimsync::state::EscrowEntry> {
        let store = Store::open(&self.ws.path("state")).expect("open state");
        store
            .snapshot(&TargetName::from("app"))
            .expect("snapshot")
            .escrow()
            .expect("escrow")
    }
}

/// Asserts the target holds exactly the desired state of `users(n)` and `groups(n)`.
fn assert_exact(env: &Env, n: usize) {
    let got = env.users();
    assert_eq!(got.len(), n, "users: {:?}", got.keys().collect::<Vec<_>>());
    for i in 0..n {
        let u = &got[&format!("u{i:04}")];
        assert_eq!(
            u["name"]["formatted"],
            json!(format!("Given{i} Surname{i}")),
            "{u}"
        );
        assert_eq!(u["active"], json!(i % 7 != 0), "{u}");
        let mail = u["emails"]
            .as_array()
            .and_then(|e| e.iter().find(|e| e["type"] == "work"))
            .map(|e| e["value"].clone());
        assert_eq!(mail, Some(json!(format!("user{i}@example.org"))), "{u}");
    }
    let groups = env.groups();
    let all: Vec<String> = (0..n).map(|i| format!("u{i:04}")).collect();
    let even: Vec<String> = (0..n).step_by(2).map(|i| format!("u{i:04}")).collect();
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert_eq!(groups["All"], all);
    assert_eq!(groups["Even"], even);
}

#[test]
fn a_quarter_of_requests_failing_converges_within_four_cycles() {
    let env = Env::start(
        "groups = [\"All\", \"Even\"]",
        "rate_limit = 200\nconcurrency = 4\ntimeout_seconds = 2\nretry_max_seconds = 15",
    );
    let n = 40;
    env.directory(&users(n), &groups(n));
    env.proxy.set_random_faults(Some(RandomFaults {
        seed: 20261123,
        percent: 25,
        mix: vec![
            Fault::Status(500),
            Fault::Status(503),
            Fault::TooManyRequests {
                retry_after_secs: 1,
            },
            Fault::DropBeforeForward,
            Fault::DropAfterForward,
            Fault::Delay(Duration::from_millis(2500)),
        ],
        budget: 80,
    }));
    let start = Instant::now();
    let (cycles, injected) = common::until_converged(&env.proxy, 4, || env.sync(&[]));
    env.proxy.set_random_faults(None);
    assert!(injected >= 20, "only {injected} faults were injected");
    assert_exact(&env, n);
    // A further cycle has nothing to do.
    let out = env.sync(&[]);
    out.assert_success();
    assert_eq!(env.proxy.count(), 0, "{out}");
    eprintln!(
        "converged in {} cycles, {:?}, {injected} faults injected",
        cycles,
        start.elapsed()
    );
}

#[test]
fn a_rejected_token_quarantines_the_target_and_stops_its_calls() {
    let env = Env::start("all = true", "rate_limit = 1000\nconcurrency = 2");
    env.directory(&users(30), &[]);
    env.ws.write("token", "wrong-token");
    let out = env.sync(&[]);
    out.assert_code(1);
    // At most the calls already in flight; not one per user.
    assert!(env.proxy.count() <= 2, "{:?}", env.proxy.calls());
    assert!(
        out.stderr.contains("the target rejected the credentials"),
        "{out}"
    );
    assert!(
        out.stdout.contains("target \"app\": quarantined since "),
        "{out}"
    );
    assert!(!out.stderr.contains("wrong-token") && !out.stdout.contains("wrong-token"));
    assert!(
        env.escrow().is_empty(),
        "a target fault is not an object fault"
    );

    env.ws.write("token", &env.server.token);
    let out = env.sync(&[]);
    out.assert_success();
    assert!(
        out.stderr.contains("quarantined since") && out.stderr.contains("run by hand"),
        "{out}"
    );
    assert!(out.stdout.contains("quarantine lifted"), "{out}");
    assert_eq!(env.users().len(), 30);
}

#[test]
fn most_operations_failing_quarantines_the_target() {
    let env = Env::start(
        "all = true",
        "concurrency = 1\nretry_max_seconds = 1\nquarantine_min_operations = 3",
    );
    env.directory(&users(4), &[]);
    env.proxy
        .set_faults(std::iter::repeat_n(Fault::Status(400), 100));
    let out = env.sync(&[]);
    out.assert_code(1);
    assert!(
        out.stdout.contains("quarantined since") && out.stdout.contains("4 of 4 operations failed"),
        "{out}"
    );
    assert_eq!(env.escrow().len(), 4);
    // Two users leave the source before they ever got an account: their escrow goes with
    // them; the others succeed, which lifts the quarantine.
    env.proxy.set_faults([]);
    env.directory(&users(2), &[]);
    let out = env.sync(&[]);
    out.assert_success();
    assert!(out.stdout.contains("quarantine lifted"), "{out}");
    assert!(env.escrow().is_empty());
    assert_eq!(env.users().len(), 2);
}

#[test]
fn a_cycle_with_every_object_waiting_in_escrow_does_not_lift_the_quarantine() {
    let env = Env::start(
        "all = true",
        "concurrency = 1\nretry_max_seconds = 1\nquarantine_min_operations = 3",
    );
    env.directory(&users(4), &[]);
    env.proxy
        .set_faults(std::iter::repeat_n(Fault::Status(400), 100));
    // Two failed attempts each: the escrow defers the next by a minute.
    env.sync(&[]).assert_code(1);
    env.sync(&[]).assert_code(1);
    let out = env.sync(&[]);
    assert!(out.stderr.contains("deferred user"), "{out}");
    assert!(!out.stdout.contains("quarantine lifted"), "{out}");
    let status = env.ws.run(&["--config", "scimsync.toml", "status"]);
    assert!(status.stdout.contains("quarantine: since"), "{status}");
}

#[test]
fn a_failed_operation_is_kept_in_escrow_retried_and_cleared() {
    let env = Env::start("all = true", "concurrency = 1");
    env.directory(&users(2), &[]);
    env.sync(&[]).assert_success();
    let mut changed = users(2);
    changed[1]["surname"] = json!("Changed");
    env.directory(&changed, &[]);

    // The PATCH is refused: one attempt in escrow, tried again by the next cycle.
    env.proxy.set_faults([Fault::Status(400)]);
    let out = env.sync(&[]);
    out.assert_code(1);
    assert!(
        out.stderr.contains("failed user u0001: PATCH /Users/"),
        "{out}"
    );
    assert!(out.stdout.contains("escrow 1 objects to retry"), "{out}");
    let escrow = env.escrow();
    assert_eq!(escrow[&SourceId::from("u0001")].attempts, 1);
    assert!(escrow[&SourceId::from("u0001")].last_error.contains("400"));

    // The second failure in a row defers the object: the third cycle leaves it alone.
    env.proxy.set_faults([Fault::Status(400)]);
    env.sync(&[]).assert_code(1);
    assert_eq!(env.escrow()[&SourceId::from("u0001")].attempts, 2);
    let out = env.sync(&[]);
    out.assert_code(1);
    assert!(
        out.stderr
            .contains("deferred user u0001: in escrow after 2 failed attempts"),
        "{out}"
    );
    assert_eq!(env.proxy.count(), 0, "{:?}", env.proxy.calls());
    // A deferred object is not deprovisioned: it is still in scope.
    assert_eq!(env.users()["u0001"]["active"], json!(true));

    // Once the delay has passed (simulated here), a success clears the escrow.
    {
        let store = Store::open(&env.ws.path("state")).expect("open");
        let snap = store.snapshot(&TargetName::from("app")).expect("snapshot");
        snap.escrow_clear(&SourceId::from("u0001")).expect("clear");
        snap.escrow_failure(
            &SourceId::from("u0001"),
            "user",
            "400",
            chrono::Utc::now() - chrono::Duration::days(2),
        )
        .expect("escrow");
    }
    let out = env.sync(&[]);
    out.assert_success();
    assert!(env.escrow().is_empty());
    assert_eq!(env.users()["u0001"]["name"]["formatted"], "Given1 Changed");
}

#[test]
fn the_source_outage_guard_refuses_a_read_far_smaller_than_the_last() {
    let env = Env::start("all = true", "");
    env.directory(&users(10), &[]);
    env.sync(&[]).assert_success();
    env.directory(&users(4), &[]);
    let out = env.sync(&[]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("source-outage guard: the source returned 4 users, fewer than min_source_ratio = 0.5 of the 10 of the last good read"),
        "{out}"
    );
    assert_eq!(env.proxy.count(), 0);
    assert!(env.users().values().all(|u| u["active"] != json!(false)
        || u["userName"] == "u0000"
        || u["userName"] == "u0007"));
    // The operator lowers the ratio for one run when the directory really shrank.
    let config = env.ws.read("scimsync.toml");
    env.ws.write(
        "scimsync.toml",
        config.replace("kind = \"json\"", "kind = \"json\"\nmin_source_ratio = 0.3"),
    );
    env.sync(&[]).assert_success();
    assert_eq!(
        env.users()
            .values()
            .filter(|u| u["active"] == json!(true))
            .count(),
        3
    );
}

#[test]
fn deprovisions_over_the_threshold_percent_are_held() {
    let env = Env::start("all = true", "deletion_threshold_percent = 30");
    env.directory(&users(10), &[]);
    env.sync(&[]).assert_success();
    env.directory(&users(6), &[]);
    let out = env.sync(&[]);
    out.assert_code(1);
    assert!(
        out.stderr.contains(
            "held 4 deprovisions: more than deletion_threshold_percent = 30% of the managed objects"
        ),
        "{out}"
    );
    assert_eq!(env.proxy.count(), 0);
    env.sync(&["--allow-deletes"]).assert_success();
    assert_eq!(env.users()["u0009"]["active"], json!(false));
}

#[test]
fn an_account_scimsync_never_matched_is_never_touched() {
    let env = Env::start("groups = [\"Staff\"]", "deprovision = \"delete\"");
    let zed = env
        .server
        .create_user(json!({"userName": "u0002", "active": true}));
    let staff = json!({"objectId": "g1", "displayName": "Staff", "members": ["u0000", "u0001"]});
    env.directory(&users(3), std::slice::from_ref(&staff));
    env.sync(&[]).assert_success();
    // u0002 leaves the directory altogether; its namesake account is not scimsync's.
    env.directory(&users(2), &[staff]);
    let out = env.sync(&[]);
    out.assert_success();
    assert!(
        env.proxy
            .records()
            .iter()
            .all(|r| !r.path.contains(zed["id"].as_str().expect("id"))),
        "{:?}",
        env.proxy.calls()
    );
    let users = env.users();
    assert_eq!(users["u0002"]["id"], zed["id"]);
    assert_eq!(users["u0002"]["active"], json!(true));
}

#[test]
fn a_404_on_a_group_patch_drops_the_entry_and_matches_again() {
    let env = Env::start("groups = [\"Staff\", \"Other\"]", "concurrency = 1");
    let staff = |m: &[&str]| json!({"objectId": "g1", "displayName": "Staff", "members": m});
    let other = json!({"objectId": "g2", "displayName": "Other", "members": ["u0001"]});
    env.directory(&users(3), &[staff(&["u0000"]), other.clone()]);
    env.sync(&[]).assert_success();
    env.directory(&users(3), &[staff(&["u0000", "u0001"]), other]);
    // The group PATCH answers 404 (deleted behind our back, as far as scimsync can tell).
    env.proxy.set_faults([Fault::Status(404)]);
    let out = env.sync(&[]);
    out.assert_success();
    let calls = env.proxy.calls();
    assert!(
        calls[0].starts_with("PATCH /v2/Groups/") && calls[0].ends_with(" 404"),
        "{calls:?}"
    );
    assert!(calls[1].starts_with("GET /v2/Groups"), "{calls:?}");
    assert_eq!(env.groups()["Staff"], ["u0000", "u0001"]);
}

/// Bad answers from a target: each fails the object with a message naming the target and
/// why; nothing already provisioned is lost; no duplicate is created.
#[test]
fn bad_answers_from_the_target_fail_the_object_and_lose_nothing() {
    let env = Env::start("all = true", "concurrency = 1\nretry_max_seconds = 1");
    env.directory(&users(2), &[]);
    env.sync(&[]).assert_success();
    env.directory(&users(3), &[]);
    let respond = |status: u16, ct: &str, body: &str| Fault::Respond {
        status,
        content_type: ct.into(),
        body: body.into(),
    };
    let cases: Vec<(Vec<Fault>, &str)> = vec![
        (
            vec![respond(200, "text/html", "<html><body>Login</body></html>")],
            "target \"app\" answered with a body that is not JSON (\"text/html\")",
        ),
        (
            vec![respond(
                200,
                "application/scim+json",
                "{\"Resources\": [1, 2",
            )],
            "answered with a body that is not JSON",
        ),
        // A 200 carrying an error body is that error. (A 400 would now send the next filter
        // form, which tests/targets.rs covers; a 409 to a query fails the object.)
        (
            vec![respond(
                200,
                "application/scim+json",
                r#"{"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "409", "detail": "bad filter"}"#,
            )],
            "409 bad filter",
        ),
        (
            vec![respond(
                200,
                "application/scim+json",
                r#"{"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]}"#,
            )],
            "the ListResponse has neither totalResults nor Resources",
        ),
        (
            vec![respond(
                200,
                "application/scim+json",
                r#"{"totalResults": 3, "itemsPerPage": 3}"#,
            )],
            "totalResults 3 but has no Resources",
        ),
        (
            vec![respond(502, "text/html", "<html>Bad gateway</html>"); 30],
            "502 <html>Bad gateway</html>",
        ),
    ];
    for (faults, want) in cases {
        env.proxy.set_faults(faults.clone());
        let out = env.sync(&[]);
        out.assert_code(1);
        assert!(
            out.stderr.contains("failed user u0002: GET /Users?filter="),
            "{faults:?}\n{out}"
        );
        assert!(
            out.stderr.contains(want),
            "{faults:?}: want {want:?}\n{out}"
        );
        assert!(
            !env.proxy.calls().iter().any(|c| c.starts_with("POST")),
            "{faults:?}: {:?}",
            env.proxy.calls()
        );
        assert_eq!(env.users().len(), 2, "{faults:?}");
        env.proxy.set_faults([]);
        env.clear_escrow();
    }
    // A server that ignores the filter answers with every account: refuse to match.
    env.proxy.set_faults([Fault::Unfiltered]);
    let out = env.sync(&[]);
    out.assert_code(1);
    assert!(out.stderr.contains("refusing to match on it"), "{out}");
    assert_eq!(env.users().len(), 2);
    // A wrong content type on a good JSON answer is tolerated.
    let empty = r#"{"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": 0, "Resources": []}"#;
    env.proxy.set_faults([
        respond(200, "text/plain", empty),
        respond(200, "text/plain", empty),
    ]);
    env.sync(&[]).assert_success();
    assert_eq!(env.users().len(), 3);
}

#[test]
fn kill_9_at_random_moments_then_a_cycle_converges_exactly() {
    let env = Env::start(
        "groups = [\"All\", \"Even\"]",
        "rate_limit = 150\nconcurrency = 4",
    );
    let n = 300;
    env.directory(&users(n), &groups(n));
    // About 3 requests per user at 150 per second: ~6 s for a full cycle.
    let mut seed: u64 = 0x5eed_cafe;
    let mut rand = |max_ms: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        300 + seed % max_ms
    };
    let mut kills = Vec::new();
    for _ in 0..3 {
        let running = env.ws.spawn(&["--config", "scimsync.toml", "sync"]);
        let wait = rand(5000);
        std::thread::sleep(Duration::from_millis(wait));
        let status = std::process::Command::new("kill")
            .args(["-9", &running.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let out = running.wait(Duration::from_secs(10));
        kills.push((wait, out.code));
    }
    // What the killed runs left is a subset of the truth: every id they recorded exists.
    {
        let store = Store::open(&env.ws.path("state")).expect("open state");
        let snap = store.snapshot(&TargetName::from("app")).expect("snapshot");
        let ids: std::collections::BTreeSet<String> = env
            .server
            .list_users()
            .iter()
            .map(|u| u["id"].as_str().expect("id").to_owned())
            .collect();
        let recorded = snap.users().expect("users");
        assert!(
            recorded.values().all(|e| ids.contains(e.scim_id.as_str())),
            "the snapshot names an account the target does not hold"
        );
        eprintln!("after the kills: {} of {n} users recorded", recorded.len());
    }
    let out = env.sync(&[]);
    out.assert_success();
    assert_exact(&env, n);
    let out = env.sync(&[]);
    out.assert_success();
    assert_eq!(env.proxy.count(), 0, "{out}");
    eprintln!("killed at {kills:?}");
}

#[test]
fn no_command_prints_or_stores_a_secret_even_at_trace_level() {
    let env = Env::start("groups = [\"All\", \"Even\"]", "");
    env.directory(&users(3), &groups(3));
    let secret = env.server.token.clone();
    let mut outputs = Vec::new();
    let commands: Vec<Vec<&str>> = vec![
        vec!["sync"],
        vec!["sync", "--full"],
        vec!["plan"],
        vec!["expr", "[mail]", "--user", "u0001"],
        vec!["check"],
        vec!["status"],
        vec!["provision", "u0001"],
        vec!["logs"],
    ];
    for c in &commands {
        let mut args = vec!["--config", "scimsync.toml"];
        args.extend_from_slice(c);
        outputs.push((
            c.join(" "),
            env.ws.run_with_env(&args, &[("RUST_LOG", "trace")]),
        ));
    }
    // `run` briefly: stopped after a moment if it runs at all.
    let running = env.ws.spawn_with_env(
        &["--config", "scimsync.toml", "run"],
        &[("RUST_LOG", "trace")],
    );
    let mut running = running;
    std::thread::sleep(Duration::from_millis(1500));
    let out = if running.has_exited() {
        running.wait(Duration::from_secs(5))
    } else {
        running.stop()
    };
    outputs.push(("run".into(), out));
    // A rejected token too: its error path must not echo it.
    env.ws.write("token", "not-the-right-secret-4711");
    outputs.push((
        "sync (wrong token)".into(),
        env.ws.run_with_env(
            &["--config", "scimsync.toml", "sync"],
            &[("RUST_LOG", "trace")],
        ),
    ));
    for (name, out) in &outputs {
        for s in [secret.as_str(), "not-the-right-secret-4711"] {
            assert!(
                !out.stdout.contains(s) && !out.stderr.contains(s),
                "`{name}` printed a token:\n{out}"
            );
        }
    }
    assert!(
        outputs[0].1.stderr.contains("TRACE") || outputs[0].1.stderr.contains("DEBUG"),
        "trace logging was on:\n{}",
        outputs[0].1
    );
    // Neither the snapshot nor anything else in the state directory holds it.
    let mut files = vec![env.ws.path("state")];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(
                std::fs::read_dir(&p)
                    .expect("dir")
                    .map(|e| e.expect("entry").path()),
            );
        } else {
            let bytes = std::fs::read(&p).expect("read");
            for s in [secret.as_str(), "not-the-right-secret-4711"] {
                assert!(
                    !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                    "{} holds a token",
                    p.display()
                );
            }
        }
    }
}

#[test]
fn an_unreadable_token_file_is_named_and_nothing_is_sent() {
    let env = Env::start("all = true", "");
    env.directory(&users(2), &[]);
    // A directory where the file should be: unreadable even for root.
    std::fs::remove_file(env.ws.path("token")).expect("remove token");
    std::fs::create_dir(env.ws.path("token")).expect("mkdir");
    let out = env.sync(&[]);
    out.assert_code(2);
    let want = "target \"app\": token: cannot read secret file token: Is a directory";
    assert!(out.stderr.starts_with(want), "{out}");
    assert_eq!(env.proxy.count(), 0);
}

#[test]
fn a_404_on_delete_drops_the_snapshot_entry() {
    let env = Env::start("all = true", "deprovision = \"delete\"\nconcurrency = 1");
    env.directory(&users(3), &[]);
    env.sync(&[]).assert_success();
    env.directory(&users(2), &[]);
    env.proxy.set_faults([Fault::Status(404)]);
    let out = env.sync(&[]);
    out.assert_success();
    let calls = env.proxy.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].starts_with("DELETE /v2/Users/") && calls[0].ends_with(" 404"));
    // Gone from the snapshot: the next cycle has nothing to do.
    env.sync(&[]).assert_success();
    assert_eq!(env.proxy.count(), 0, "{:?}", env.proxy.calls());
}

#[test]
fn a_429_holds_every_request_to_the_target_for_its_retry_after() {
    let env = Env::start("all = true", "concurrency = 4\nrate_limit = 1000");
    env.directory(&users(12), &[]);
    env.proxy.set_faults([Fault::TooManyRequests {
        retry_after_secs: 2,
    }]);
    let out = env.sync(&[]);
    out.assert_success();
    let records = env.proxy.records();
    let first = records
        .iter()
        .find(|r| r.status == 429)
        .expect("the 429 was answered")
        .at;
    // Calls already in flight arrive at once; none is sent during the Retry-After.
    let during: Vec<_> = records
        .iter()
        .filter(|r| {
            r.at > first + Duration::from_millis(300) && r.at < first + Duration::from_millis(1900)
        })
        .map(|r| format!("{} {}", r.method, r.route()))
        .collect();
    assert!(during.is_empty(), "{during:?}");
    assert!(records.last().expect("calls").at >= first + Duration::from_millis(1900));
    assert_eq!(env.users().len(), 12);
}
