//! What an administrator meets on day one: a wrong port or token ends a cycle in seconds with
//! one line, and the daemon's default output is a readable journal.

mod common;

use common::env::{numbered_users, Env, CORE_USER_MAPPINGS};
use common::{free_port, Workspace};
use std::time::{Duration, Instant};

/// A workspace whose one target is `url`, with `n` users all in scope.
fn workspace(url: &str, n: usize) -> Workspace {
    let ws = Workspace::new();
    ws.write("token", "t0ken-for-a-closed-port\n");
    ws.write(
        "directory.json",
        serde_json::to_vec(&serde_json::json!({"users": numbered_users(n), "groups": []}))
            .expect("json"),
    );
    ws.write(
        "scimsync.toml",
        format!(
            "[state]\npath = \"state\"\n[source]\nkind = \"json\"\npath = \"directory.json\"\n\
             [scope]\nall = true\n[[target]]\nname = \"app\"\nurl = \"{url}\"\ntoken_file = \"token\"\n\
             schedule = \"0 * * * * *\"\n\n{CORE_USER_MAPPINGS}"
        ),
    );
    ws
}

#[test]
fn a_wrong_port_ends_the_sync_in_seconds_with_one_line_naming_the_address() {
    let port = free_port();
    let ws = workspace(&format!("http://127.0.0.1:{port}/v2"), 21);
    let started = Instant::now();
    let out = ws.run(&["--config", "scimsync.toml", "sync"]);
    let took = started.elapsed();
    out.assert_code(1);
    assert!(took < Duration::from_secs(15), "took {took:?}\n{out}");
    let lines: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].contains(&format!("cannot connect to 127.0.0.1:{port}"))
            && lines[0].contains("Connection refused")
            && lines[0].contains("21 further operations and every group were not sent"),
        "{out}"
    );
    assert!(
        out.stdout.contains(
            "users created 0, updated 0, deprovisioned 0, unchanged 0, skipped 0, failed 21"
        ),
        "{out}"
    );
    assert!(
        out.stdout.contains("target \"app\": 0 requests sent"),
        "{out}"
    );
    // The quarantine's next attempt lies ahead.
    let q = out
        .stdout
        .lines()
        .find(|l| l.contains("quarantined since"))
        .unwrap_or_else(|| panic!("no quarantine line\n{out}"));
    let next = q
        .rsplit("next at ")
        .next()
        .and_then(|t| t.strip_suffix(')'))
        .expect("next at");
    let next = chrono::DateTime::parse_from_rfc3339(next).expect("an RFC 3339 time");
    assert!(next > chrono::Utc::now(), "{q}");
}

#[test]
fn a_wrong_token_costs_one_request_and_one_line() {
    let env = Env::start("all = true", "");
    env.directory(&numbered_users(12), &[]);
    env.ws.write("token", "not-the-token\n");
    let out = env.sync(&[]);
    out.assert_code(1);
    let lines: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].starts_with("  the target rejected the credentials (")
            && lines[0].ends_with("further operations and every group were not sent"),
        "{out}"
    );
    assert!(!out.stderr.contains("not-the-token"), "{out}");
    assert_eq!(env.proxy.count(), 1, "{:?}", env.proxy.calls());
}

#[test]
fn a_misspelled_source_attribute_is_warned_and_its_mass_clear_held() {
    let env = Env::start("all = true", "");
    let users: Vec<serde_json::Value> = numbered_users(12)
        .into_iter()
        .map(|mut u| {
            u["department"] = serde_json::json!("R&D");
            u
        })
        .collect();
    env.directory(&users, &[]);
    env.sync(&[]).assert_success();
    let config = env.ws.read("scimsync.toml");
    env.ws.write(
        "scimsync.toml",
        config.replace("source = \"department\"", "source = \"departmnt\""),
    );
    let dept = |env: &Env| {
        env.users()
            .values()
            .filter(|u| u[common::env::ENTERPRISE]["department"] == "R&D")
            .count()
    };

    let out = env.scimsync(&["check"]);
    assert!(
        out.stdout.contains(&format!(
            "target \"app\": mapping: warning: user_mapping[5] ({}:department) reads source attribute \"departmnt\", which none of the 12 in-scope users have",
            common::env::ENTERPRISE
        )),
        "{out}"
    );

    let out = env.scimsync(&["plan"]);
    let held = format!(
        "held: {}:department would be cleared on 12 of the 12 managed users, more than attribute_clear_threshold = 25%",
        common::env::ENTERPRISE
    );
    assert!(out.stdout.contains(&held), "{out}");

    let out = env.sync(&[]);
    out.assert_code(1);
    assert!(out.stderr.contains(&held), "{out}");
    assert!(out.stderr.contains("--allow-clears"), "{out}");
    assert_eq!(dept(&env), 12, "nothing was cleared");
    assert_eq!(env.writes(), Vec::<String>::new());
    let status = env.scimsync(&["status"]);
    assert!(status.stdout.contains("  held: "), "{status}");

    // A full sync re-adopts every account: the clears are still not made one by one, and
    // the next cycle holds them again.
    env.sync(&["--full"]).assert_success();
    assert_eq!(dept(&env), 12, "a full sync clears nothing");
    let out = env.sync(&[]);
    out.assert_code(1);
    assert!(out.stderr.contains(&held), "{out}");
    assert_eq!(dept(&env), 12, "still nothing cleared");

    env.sync(&["--allow-clears"]).assert_success();
    assert_eq!(dept(&env), 0, "cleared when the administrator says so");
}

#[test]
fn a_relative_secret_is_found_in_the_systemd_credentials_directory() {
    let env = Env::start("all = true", "");
    env.directory(&numbered_users(3), &[]);
    // As in either unit: the token is a credential, not next to the configuration.
    let token = env.ws.read("token");
    std::fs::remove_file(env.ws.path("token")).expect("remove");
    env.ws.write("credentials/token", token);
    let creds = env.ws.path("credentials");
    let out = env.ws.run_with_env(
        &["--config", "scimsync.toml", "sync"],
        &[("CREDENTIALS_DIRECTORY", creds.to_str().expect("utf-8"))],
    );
    out.assert_success();
    assert_eq!(env.users().len(), 3);
    // Without the credential, the error names the file next to the configuration.
    let out = env.scimsync(&["sync"]);
    out.assert_code(2);
    assert!(
        out.stderr
            .contains("token: cannot read secret file token: No such file"),
        "{out}"
    );
}

#[test]
fn logs_take_deprovision_as_an_action_and_plan_names_new_members() {
    let env = Env::start(r#"groups = ["Crew"]"#, "");
    let crew = |ids: &[&str]| serde_json::json!({"objectId": "g-crew", "displayName": "Crew", "members": ids});
    env.directory(&numbered_users(3), &[crew(&["u0000", "u0001"])]);
    env.sync(&[]).assert_success();
    env.directory(&numbered_users(3), &[crew(&["u0000", "u0002"])]);
    let out = env.scimsync(&["plan"]);
    assert!(
        out.stdout.contains("add members u0002 (u0002)"),
        "the plan names the member\n{out}"
    );
    env.sync(&[]).assert_success();
    let out = env.scimsync(&["logs", "--action", "deprovision"]);
    out.assert_success();
    assert!(out.stdout.contains("Disable user u0001"), "{out}");
    let out = env.scimsync(&["logs", "--action", "deprovisoin"]);
    out.assert_code(64);
    assert!(out.stderr.contains("is not an action"), "{out}");
}
