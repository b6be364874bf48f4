//! What an administrator sees: `plan --json`, `check`, and JSON logs.

mod common;

use common::env::{group, three_users, Env};
use serde_json::{json, Value};

#[test]
fn plan_json_is_one_document_with_the_changes_and_no_request() {
    let env = Env::start(
        r#"groups = ["Staff"]"#,
        "\n[[target.user_mapping]]\ntarget = \"nickName\"\nexpression = 'Redact([secretCode])'\n",
    );
    let mut users = three_users();
    users[0]["secretCode"] = json!("s3cr3t-value");
    env.directory(&users, &[group("g1", "Staff", &["u-ada", "u-bob"])]);
    env.sync(&[]).assert_success();

    users[1]["surname"] = json!("Newname");
    users[0]["secretCode"] = json!("another-secret");
    env.directory(&users, &[group("g1", "Staff", &["u-ada"])]);
    env.proxy.clear();
    let out = env.scimsync(&["plan", "--json"]);
    out.assert_success();
    assert_eq!(env.proxy.count(), 0, "plan sends nothing");
    let doc: Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    assert_eq!(doc["format_version"], 2);
    let t = &doc["targets"][0];
    assert_eq!(t["target"], "app");
    let ops = t["operations"].as_array().expect("operations");
    let by = |action: &str, id: &str| {
        ops.iter()
            .find(|o| o["action"] == action && o["object_id"] == id)
            .cloned()
    };
    let bob = by("deactivate", "u-bob").expect("Bob leaves scope");
    assert_eq!(
        bob["changes"],
        json!([{"path": "active", "old": true, "new": false}])
    );
    let ada = by("update", "u-ada").expect("Ada's redacted attribute changes");
    assert_eq!(
        ada["changes"],
        json!([{"path": "nickName", "old": "[Redact]", "new": "[Redact]"}])
    );
    let g = by("update", "g1").expect("group update");
    assert_eq!(g["members_removed"], json!(["u-bob"]));
    assert_eq!(
        t["totals"]["users"],
        json!({"create": 0, "update": 1, "deprovision": 1, "unchanged": 0})
    );
    assert!(
        !out.stdout.contains("secret"),
        "redacted values never shown: {}",
        out.stdout
    );
    // The text plan hides them too.
    let out = env.scimsync(&["plan"]);
    assert!(
        out.stdout.contains("nickName: [Redact] -> [Redact]"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("secret"), "{}", out.stdout);
}

#[test]
fn check_reports_the_target_and_fails_clearly_on_a_bad_token() {
    let env = Env::start(r#"groups = ["Staff"]"#, "");
    env.directory(&three_users(), &[group("g1", "Staff", &["u-ada"])]);
    let out = env.scimsync(&["check"]);
    out.assert_success();
    for line in [
        "source: ok (json file ",
        "scope: ok (1 users and 1 groups in scope)",
        "target \"app\": ServiceProviderConfig: ok (patch yes, filter yes (max 1000 results), bulk yes",
        "target \"app\": authentication: ok",
        "target \"app\": schema: ok (8 mapped attributes found in /Schemas)",
    ] {
        assert!(out.stdout.contains(line), "missing {line:?} in\n{}", out.stdout);
    }
    env.ws.write("token", "not-the-token");
    let out = env.scimsync(&["check"]);
    out.assert_code(1);
    assert!(
        out.stdout
            .contains("target \"app\": authentication: FAILED: the target rejected the token"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("401"), "{}", out.stdout);

    // A mapping to an attribute the target's schema lacks is a warning, not a failure.
    let config = env.ws.read("scimsync.toml");
    env.ws.write("token", &env.server.token);
    env.ws.write("scimsync.toml", config.replace("target = \"externalId\"\nsource = \"objectId\"\n\n[[target.user_mapping]]", "target = \"externalId\"\nsource = \"objectId\"\n\n[[target.user_mapping]]\ntarget = \"name.nickname\"\nsource = \"mail\"\n\n[[target.user_mapping]]"));
    let out = env.scimsync(&["check"]);
    out.assert_success();
    assert!(
        out.stdout
            .contains("schema: warning: /Schemas does not list name.nickname"),
        "{}",
        out.stdout
    );
}

#[test]
fn json_logs_carry_one_record_per_decision() {
    let env = Env::start(r#"groups = ["Staff"]"#, "");
    env.directory(&three_users(), &[group("g1", "Staff", &["u-ada"])]);
    let out = env.scimsync(&["sync", "--log-format", "json", "--log-level", "info"]);
    out.assert_success();
    let records: Vec<Value> = out
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let create = records
        .iter()
        .find(|r| r["object_id"] == "u-ada" && r["action"] == "Create")
        .unwrap_or_else(|| panic!("no create record for u-ada in {records:?}"));
    assert_eq!(create["status"], "Success");
    assert_eq!(create["target_name"], "app");
    assert_eq!(create["kind"], "user");
    assert!(create["scim_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(!out.stderr.contains(&env.server.token));
}

#[test]
fn status_shows_quarantine_after_a_rejected_token_until_a_cycle_succeeds() {
    let env = Env::start(r#"groups = ["Staff"]"#, "");
    env.directory(&three_users(), &[group("g1", "Staff", &["u-ada", "u-bob"])]);
    env.ws.write("token", "not-the-token");
    env.sync(&[]).assert_code(1);
    let out = env.scimsync(&["status"]);
    out.assert_success();
    let quarantine = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("quarantine"))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(
        quarantine.contains("the target rejected the credentials"),
        "{}",
        out.stdout
    );
    let json: Value =
        serde_json::from_str(&env.scimsync(&["status", "--json"]).stdout).expect("json");
    assert!(
        json["targets"][0]["quarantine"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("rejected")),
        "{json}"
    );

    // The right token again: the next cycle succeeds and lifts the quarantine.
    env.ws.write("token", &env.server.token);
    env.sync(&[]).assert_success();
    let json: Value =
        serde_json::from_str(&env.scimsync(&["status", "--json"]).stdout).expect("json");
    assert!(json["targets"][0]["quarantine"].is_null(), "{json}");
}

#[test]
fn status_lists_an_object_in_escrow_with_its_last_error() {
    // The server rejects attributes its schema lacks: only Bob has one.
    let extra =
        "\n[[target.user_mapping]]\ntarget = \"favoriteColor\"\nsource = \"favoriteColor\"\n";
    let env = Env::start(r#"groups = ["Staff"]"#, extra);
    let mut users = three_users();
    users[1]["favoriteColor"] = json!("teal");
    env.directory(&users, &[group("g1", "Staff", &["u-ada", "u-bob"])]);
    env.sync(&[]).assert_code(1);
    let out = env.scimsync(&["status"]);
    out.assert_success();
    assert!(out.stdout.contains("1 objects to retry"), "{}", out.stdout);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("    user u-bob:"))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(
        line.contains("1 failed attempts") && line.contains("400"),
        "{line}"
    );
    let json: Value =
        serde_json::from_str(&env.scimsync(&["status", "--json"]).stdout).expect("json");
    assert_eq!(json["targets"][0]["escrow"][0]["object_id"], "u-bob");
    assert_eq!(json["targets"][0]["escrow"][0]["attempts"], 1);
}
