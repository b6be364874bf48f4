//! What scimsync decides on its own side, before or apart from any request a server could
//! answer differently: a broken or empty source, an invalid configuration, an expression
//! failing for one user, and a snapshot taken against another url. No server takes part in
//! these decisions, so they run on scim2-server only (the server is there for the cycles
//! around them; the expression's `title` is an attribute django-scim2 does not store).

use crate::common::env::{group, three_users, Env};
use crate::common::{RecordingProxy, ScimServer};
use serde_json::json;

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
