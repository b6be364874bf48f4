//! The stored provisioning log and `scimsync logs`, against a real SCIM server.

mod common;

use common::env::{group, three_users, Env};
use common::RunOutput;
use serde_json::{json, Value};

/// The records of `logs ARGS --json`, one JSON object per line.
fn records(env: &Env, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["logs", "--json"];
    all.extend_from_slice(args);
    let out = env.scimsync(&all);
    out.assert_success();
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn modified<'a>(record: &'a Value, path: &str) -> Option<&'a Value> {
    record["modified"]
        .as_array()?
        .iter()
        .find(|m| m["path"] == path)
}

fn calls(record: &Value) -> Vec<(String, u64)> {
    record["calls"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c["method"].as_str().unwrap_or_default().to_owned(),
                        c["status"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn staff(users: &[&str]) -> Vec<Value> {
    vec![group("g1", "Staff", users)]
}

#[test]
fn logs_return_a_users_create_and_update_with_old_and_new_values() {
    let env = Env::start(r#"groups = ["Staff"]"#, "");
    let mut users = three_users();
    env.directory(&users, &staff(&["u-ada", "u-bob"]));
    env.sync(&[]).assert_success();

    users[0]["surname"] = json!("Byron");
    env.directory(&users, &staff(&["u-ada", "u-bob"]));
    // Neither a plan nor a dry run stores anything.
    let before = records(&env, &[]).len();
    env.scimsync(&["plan"]).assert_success();
    env.sync(&["--dry-run"]).assert_success();
    assert_eq!(
        records(&env, &[]).len(),
        before,
        "a dry run stores no record"
    );
    env.sync(&[]).assert_success();

    let ada = records(&env, &["--user", "u-ada"]);
    assert_eq!(ada.len(), 2, "exactly Ada's create and update: {ada:#?}");
    let (create, update) = (&ada[0], &ada[1]);
    for r in &ada {
        assert_eq!(r["format_version"], 1);
        assert_eq!(r["object_id"], "u-ada");
        assert_eq!(r["target"], "app");
        assert_eq!(r["kind"], "user");
        assert_eq!(r["status"], "Success");
    }
    assert_eq!(create["action"], "Create");
    assert!(
        calls(create).contains(&("POST".into(), 201)),
        "the create's POST and its 201: {create:#}"
    );
    assert_eq!(
        modified(create, "name.formatted"),
        Some(&json!({"path": "name.formatted", "old": null, "new": "Ada Lovelace"}))
    );
    assert_eq!(
        modified(create, "userName").map(|m| &m["new"]),
        Some(&json!("u-ada"))
    );
    assert_eq!(update["action"], "Update");
    assert_eq!(update["scim_id"], create["scim_id"]);
    assert_eq!(
        update["modified"],
        json!([{"path": "name.formatted", "old": "Ada Lovelace", "new": "Ada Byron"}])
    );
    let patch = calls(update);
    assert_eq!(patch.len(), 1, "{update:#}");
    assert_eq!(patch[0].0, "PATCH");
    assert!(matches!(patch[0].1, 200 | 204), "{update:#}");
    assert_ne!(create["cycle_id"], update["cycle_id"]);
    assert!(create["time"].as_str() < update["time"].as_str());

    // The same two records by SCIM id and by the mail the log recorded.
    let scim_id = create["scim_id"].as_str().expect("scim id");
    assert_eq!(records(&env, &["--user", scim_id]), ada);
    assert_eq!(records(&env, &["--user", "Ada.Lovelace@example.org"]), ada);
    // Bob has only his create; the group its own.
    assert_eq!(records(&env, &["--user", "u-bob"]).len(), 1);
    let updates = records(&env, &["--action", "update"]);
    assert_eq!(updates.len(), 1, "{updates:#?}");

    // The text form: a heading per record, the changes old -> new and the calls.
    let out = env.scimsync(&["logs", "--user", "u-ada"]);
    out.assert_success();
    assert!(
        out.stdout
            .contains(r#"name.formatted: "Ada Lovelace" -> "Ada Byron""#),
        "{out}"
    );
    assert!(
        out.stdout.contains("\"app\" Update user u-ada -> "),
        "{out}"
    );
    assert!(out.stdout.contains("    call POST /Users 201 "), "{out}");
    assert!(out.stdout.contains("    call PATCH /Users/"), "{out}");
    assert!(!out.stdout.contains(&env.server.token));
}

#[test]
fn logs_filter_by_status_and_since_and_reject_bad_flags() {
    // The server rejects attributes its schema lacks: only Bob has one, so only he fails.
    let extra =
        "\n[[target.user_mapping]]\ntarget = \"favoriteColor\"\nsource = \"favoriteColor\"\n";
    let env = Env::start(r#"groups = ["Staff"]"#, extra);
    let mut users = three_users();
    users[1]["favoriteColor"] = json!("teal");
    env.directory(&users, &staff(&["u-ada", "u-bob"]));
    env.sync(&[]).assert_code(1);

    let failures = records(&env, &["--status", "FAILURE"]);
    assert_eq!(failures.len(), 1, "{failures:#?}");
    let bob = &failures[0];
    assert_eq!(bob["object_id"], "u-bob");
    assert_eq!(bob["status"], "Failure");
    assert_eq!(bob["action"], "Create");
    let error = bob["error"].as_str().expect("error detail");
    assert!(error.contains("POST /Users: 400"), "{error}");
    assert!(calls(bob).contains(&("POST".into(), 400)), "{bob:#}");
    assert_eq!(
        modified(bob, "favoriteColor"),
        Some(&json!({"path": "favoriteColor", "old": null, "new": "teal"})),
        "a failed create keeps the changes it tried"
    );
    let all = records(&env, &[]);
    assert!(all.len() > 1, "{all:#?}");
    assert!(records(&env, &["--status", "success"])
        .iter()
        .all(|r| r["status"] == "Success"));

    // --since: a duration, or a time; records of a later cycle only.
    assert_eq!(records(&env, &["--since", "1h"]).len(), all.len());
    let last = all.last().and_then(|r| r["time"].as_str()).expect("a time");
    let after: chrono::DateTime<chrono::Utc> = last.parse().expect("RFC 3339");
    let after = (after + chrono::Duration::microseconds(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let out = env.scimsync(&["logs", "--since", &after]);
    out.assert_success();
    assert_eq!(out.stdout, "", "{out}");
    assert!(out.stderr.contains("no records match"), "{out}");
    users[0]["surname"] = json!("Byron");
    env.directory(&users, &staff(&["u-ada", "u-bob"]));
    env.sync(&[]).assert_code(1);
    let later = records(&env, &["--since", &after]);
    assert!(!later.is_empty());
    assert!(
        later.iter().all(|r| r["cycle_id"] != all[0]["cycle_id"]),
        "{later:#?}"
    );
    assert!(later
        .iter()
        .any(|r| r["object_id"] == "u-ada" && r["action"] == "Update"));
    assert_eq!(records(&env, &["--limit", "1"]).len(), 1);

    for bad in [
        vec!["logs", "--status", "broken"],
        vec!["logs", "--since", "yesterday"],
        vec!["logs", "--action", "explode"],
        vec!["logs", "--limit", "many"],
    ] {
        let out: RunOutput = env.scimsync(&bad);
        out.assert_code(64);
        assert!(!out.stderr.is_empty(), "{out}");
    }
    let out = env.scimsync(&["logs", "--status", "broken"]);
    assert!(
        out.stderr
            .contains("expected one of success, failure, skipped, warning"),
        "{out}"
    );
}

#[test]
fn a_redacted_value_never_reaches_the_stored_log() {
    let env = Env::start(
        r#"groups = ["Staff"]"#,
        "\n[[target.user_mapping]]\ntarget = \"nickName\"\nexpression = 'Redact([secretCode])'\n",
    );
    let mut users = three_users();
    users[0]["secretCode"] = json!("s3cr3t-value");
    env.directory(&users, &staff(&["u-ada"]));
    env.sync(&[]).assert_success();
    users[0]["secretCode"] = json!("another-s3cr3t");
    env.directory(&users, &staff(&["u-ada"]));
    let out = env.sync(&["--log-level", "info"]);
    out.assert_success();
    assert!(!out.stderr.contains("s3cr3t"), "{out}");

    let ada = records(&env, &["--user", "u-ada"]);
    assert_eq!(ada.len(), 2, "{ada:#?}");
    assert_eq!(
        modified(&ada[0], "nickName"),
        Some(&json!({"path": "nickName", "old": null, "new": "[Redact]"}))
    );
    assert_eq!(
        ada[1]["modified"],
        json!([{"path": "nickName", "old": "[Redact]", "new": "[Redact]"}])
    );
    for args in [vec!["logs", "--json"], vec!["logs"]] {
        let out = env.scimsync(&args);
        out.assert_success();
        assert!(!out.stdout.contains("s3cr3t"), "{out}");
    }
}

#[test]
fn retention_by_count_prunes_the_oldest_records() {
    let env = Env::start(r#"groups = ["Staff"]"#, "");
    let config = env.ws.read("scimsync.toml");
    env.ws.write(
        "scimsync.toml",
        config.replacen(
            "path = \"state\"",
            "path = \"state\"\nlog_max_records = 4",
            1,
        ),
    );
    let mut users = three_users();
    env.directory(&users, &staff(&["u-ada", "u-bob", "u-cy"]));
    env.sync(&[]).assert_success();
    let first = records(&env, &[]);
    // Three user creates and the group's.
    assert_eq!(first.len(), 4, "{first:#?}");

    users[2]["surname"] = json!("Old");
    env.directory(&users, &staff(&["u-ada", "u-bob", "u-cy"]));
    env.sync(&[]).assert_success();
    let now = records(&env, &[]);
    assert_eq!(now.len(), 4, "{now:#?}");
    assert_eq!(now[..3], first[1..], "the oldest record went first");
    assert_eq!(now[3]["object_id"], "u-cy");
    assert_eq!(now[3]["action"], "Update");
}

#[test]
fn provision_on_demand_is_logged_and_its_dry_run_is_not() {
    let env = Env::start(r#"groups = ["Staff"]"#, "");
    let mut users = three_users();
    env.directory(&users, &staff(&["u-ada", "u-bob"]));
    env.sync(&[]).assert_success();
    users[1]["department"] = json!("Research");
    env.directory(&users, &staff(&["u-ada", "u-bob"]));

    env.scimsync(&["provision", "u-bob", "--dry-run"])
        .assert_success();
    assert_eq!(
        records(&env, &["--user", "u-bob"]).len(),
        1,
        "only the create"
    );
    env.scimsync(&["provision", "u-bob"]).assert_success();
    let bob = records(&env, &["--user", "u-bob"]);
    assert_eq!(bob.len(), 2, "{bob:#?}");
    let update = &bob[1];
    assert!(
        update["cycle_id"]
            .as_str()
            .is_some_and(|c| c.starts_with("provision-")),
        "{update:#}"
    );
    assert_eq!(update["action"], "Update");
    assert_eq!(
        update["modified"],
        json!([{
            "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
            "old": "Engineering",
            "new": "Research"
        }])
    );
    assert_eq!(calls(update).first().map(|c| c.0.as_str()), Some("PATCH"));
}

#[test]
fn held_deprovisions_are_staged_deletes_then_disables_once_allowed() {
    let env = Env::start(r#"groups = ["Staff"]"#, "deletion_threshold = 1");
    env.directory(&three_users(), &staff(&["u-ada", "u-bob", "u-cy"]));
    env.sync(&[]).assert_success();
    env.directory(&three_users(), &staff(&["u-cy"]));
    env.sync(&[]).assert_code(1);
    let staged = records(&env, &["--action", "StagedDelete"]);
    let ids: Vec<&str> = staged
        .iter()
        .filter_map(|r| r["object_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 2, "{staged:#?}");
    assert!(ids.contains(&"u-ada") && ids.contains(&"u-bob"), "{ids:?}");
    for r in &staged {
        assert_eq!(r["status"], "Skipped");
        assert!(r["calls"].as_array().is_some_and(Vec::is_empty), "{r:#}");
        assert!(
            r["detail"]
                .as_str()
                .is_some_and(|d| d.contains("deletion_threshold = 1")),
            "{r:#}"
        );
    }

    env.sync(&["--allow-deletes"]).assert_success();
    let ada = records(&env, &["--user", "u-ada", "--action", "disable"]);
    assert_eq!(ada.len(), 1, "{ada:#?}");
    assert_eq!(ada[0]["status"], "Success");
    assert_eq!(
        ada[0]["modified"],
        json!([{"path": "active", "old": true, "new": false}])
    );
    assert_eq!(calls(&ada[0]).first().map(|c| c.0.as_str()), Some("PATCH"));
}

#[test]
fn a_held_group_deprovision_is_recorded_once() {
    let env = Env::start(r#"groups = ["Staff", "Ops"]"#, "deletion_threshold = 0");
    let ops = group("g2", "Ops", &["u-ada"]);
    let mut groups = staff(&["u-ada", "u-bob", "u-cy"]);
    groups.push(ops);
    env.directory(&three_users(), &groups);
    env.sync(&[]).assert_success();
    // Ops is no longer assigned; its member stays in scope through Staff.
    let config = env.ws.read("scimsync.toml");
    let unassigned = config.replace(r#"groups = ["Staff", "Ops"]"#, r#"groups = ["Staff"]"#);
    assert_ne!(config, unassigned);
    env.ws.write("scimsync.toml", unassigned);
    env.sync(&[]).assert_code(1);
    let staged = records(&env, &[]);
    let held: Vec<&Value> = staged
        .iter()
        .filter(|r| r["object_id"] == "g2" && r["status"] == "Skipped")
        .collect();
    assert_eq!(held.len(), 1, "{staged:#?}");
}

#[test]
fn at_most_a_hundred_held_deprovisions_are_recorded_per_cycle() {
    let env = Env::start(r#"groups = ["Staff"]"#, "deletion_threshold = 1");
    let users: Vec<Value> = (0..105)
        .map(|i| common::env::user(&format!("u-{i:03}"), "Test", &format!("User{i:03}")))
        .collect();
    let ids: Vec<String> = (0..105).map(|i| format!("u-{i:03}")).collect();
    let all: Vec<&str> = ids.iter().map(String::as_str).collect();
    env.directory(&users, &staff(&all));
    env.sync(&[]).assert_success();
    // 104 leave the group: every one is held, but only the first 100 are recorded one by
    // one, so a threshold holding thousands every cycle cannot flood the log's retention.
    env.directory(&users, &staff(&all[..1]));
    let out = env.sync(&[]);
    out.assert_code(1);
    let staged = records(&env, &["--action", "StagedDelete", "--limit", "1000"]);
    assert_eq!(staged.len(), 100, "{out}");
    let distinct: std::collections::BTreeSet<&str> = staged
        .iter()
        .filter_map(|r| r["object_id"].as_str())
        .collect();
    assert_eq!(distinct.len(), 100);
}
