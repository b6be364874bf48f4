//! Each application its own scope: one daemon, two targets on two real SCIM servers
//! (scim2-server and django-scim2, each behind a recording proxy), with different assignments
//! and Entra scoping filters; a user moved across a filter boundary moves on one target only.
//! Then, from the CLI: why a user is in or out (`plan`, `plan --json`, `provision`), and
//! `skip_out_of_scope_deletions`.

mod common;

use common::env::{target_groups, target_users, Peer, ServerKind, CORE_USER_MAPPINGS};
use common::env::{DJANGO_GROUP_MAPPINGS, DJANGO_USER_MAPPINGS};
use common::{RecordingProxy, RunOutput, Workspace};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Two targets: "eng" (scim2-server) gets Engineering in France; "staff" (django-scim2) gets
/// the employees of Engineering and Sales.
struct Two {
    eng: Peer,
    eng_proxy: RecordingProxy,
    staff: Peer,
    staff_proxy: RecordingProxy,
    ws: Workspace,
}

const SCIM2_GROUPS: &str = r#"[[target.group_mapping]]
target = "displayName"
source = "displayName"
matching_precedence = 1
"#;

impl Two {
    fn start(schedule: &str, eng_scope_extra: &str) -> Two {
        common::ensure_peers();
        let eng = Peer::start(ServerKind::Scim2Server);
        let staff = Peer::start(ServerKind::Django);
        let eng_proxy = RecordingProxy::start(&eng.url);
        let staff_proxy = RecordingProxy::start(&staff.url);
        let ws = Workspace::new();
        ws.write("eng.token", format!("{}\n", eng.token));
        ws.write("staff.token", format!("{}\n", staff.token));
        ws.write(
            "scimsync.toml",
            format!(
                r#"[state]
path = "state"

[source]
kind = "json"
path = "directory.json"

[[target]]
name = "eng"
url = "{eng_url}"
token_file = "eng.token"
schedule = "{schedule}"
rate_limit = 1000

[target.scope]
groups = ["Engineering"]
{eng_scope_extra}

[[target.scope.filter]]
name = "France"
clauses = [{{ attribute = "country", operator = "EQUALS", value = "FR" }}]

{CORE_USER_MAPPINGS}
{SCIM2_GROUPS}

[[target]]
name = "staff"
url = "{staff_url}"
token_file = "staff.token"
schedule = "{schedule}"
rate_limit = 1000

[target.scope]
groups = ["Engineering", "Sales"]

[[target.scope.filter]]
name = "Employees"
clauses = [{{ attribute = "employeeType", operator = "equals", value = "Employee" }},
           {{ attribute = "employeeId", operator = "Greater_Than", value = 0 }}]

{DJANGO_USER_MAPPINGS}
{DJANGO_GROUP_MAPPINGS}
"#,
                eng_url = eng_proxy.url,
                staff_url = staff_proxy.url,
            ),
        );
        Two {
            eng,
            eng_proxy,
            staff,
            staff_proxy,
            ws,
        }
    }

    /// u1 and u2 in Engineering, u3 and u4 in Sales; countries and types as given.
    fn directory(&self, people: &[(&str, &str, &str)]) {
        let users: Vec<Value> = people
            .iter()
            .enumerate()
            .map(|(i, (id, country, kind))| {
                json!({
                    "objectId": id,
                    "mail": format!("{id}@example.org"),
                    "givenName": id,
                    "surname": "Test",
                    "accountEnabled": true,
                    "country": country,
                    "employeeType": kind,
                    "employeeId": (i + 1).to_string(),
                })
            })
            .collect();
        let groups = json!([
            {"objectId": "g-eng", "displayName": "Engineering", "members": ["u1", "u2"]},
            {"objectId": "g-sales", "displayName": "Sales", "members": ["u3", "u4"]},
        ]);
        self.ws.write(
            "directory.json",
            serde_json::to_vec_pretty(&json!({"users": users, "groups": groups})).expect("json"),
        );
    }

    fn scimsync(&self, args: &[&str]) -> RunOutput {
        let mut all = vec!["--config", "scimsync.toml"];
        all.extend_from_slice(args);
        self.ws.run(&all)
    }

    /// Each target's users: userName → active.
    fn users(&self) -> (BTreeMap<String, bool>, BTreeMap<String, bool>) {
        let active = |peer: &Peer| {
            target_users(peer)
                .into_iter()
                .map(|(name, u)| (name, u["active"] != json!(false)))
                .collect()
        };
        (active(&self.eng), active(&self.staff))
    }

    fn writes(proxy: &RecordingProxy) -> Vec<String> {
        proxy
            .calls()
            .into_iter()
            .filter(|c| !c.starts_with("GET "))
            .map(|c| {
                // `PATCH /v2/Users/ab12… 204` → `PATCH Users 2xx`: ids differ per run, and
                // servers answer a PATCH with 200 or 204.
                let mut parts = c.split(' ');
                let method = parts.next().unwrap_or_default();
                let route = parts.next().unwrap_or_default();
                let status = parts.next().unwrap_or_default();
                let kind = if route.contains("/Groups") {
                    "Groups"
                } else {
                    "Users"
                };
                let class = format!("{}xx", &status[..1.min(status.len())]);
                format!("{method} {kind} {class}")
            })
            .collect()
    }
}

fn active(names: &[(&str, bool)]) -> BTreeMap<String, bool> {
    names.iter().map(|(n, a)| ((*n).to_owned(), *a)).collect()
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

const PEOPLE: [(&str, &str, &str); 4] = [
    ("u1", "FR", "Employee"),
    ("u2", "DE", "Employee"),
    ("u3", "FR", "Employee"),
    ("u4", "FR", "Contractor"),
];

#[test]
fn one_daemon_two_targets_each_holds_exactly_its_users() {
    let env = Two::start("*/2 * * * * *", "");
    env.directory(&PEOPLE);
    let daemon = env
        .ws
        .spawn(&["--config", "scimsync.toml", "--log-level", "info", "run"]);
    let eng_want = active(&[("u1", true)]);
    let staff_want = active(&[("u1", true), ("u2", true), ("u3", true)]);
    wait_for("both initial syncs", Duration::from_secs(60), || {
        env.users() == (eng_want.clone(), staff_want.clone())
            && target_groups(&env.staff).len() == 2
            && target_groups(&env.eng).len() == 1
    });
    assert_eq!(
        target_groups(&env.eng),
        BTreeMap::from([("Engineering".to_owned(), vec!["u1".to_owned()])])
    );
    assert_eq!(
        target_groups(&env.staff),
        BTreeMap::from([
            (
                "Engineering".to_owned(),
                vec!["u1".to_owned(), "u2".to_owned()]
            ),
            ("Sales".to_owned(), vec!["u3".to_owned()]),
        ])
    );

    // u2 moves to France: it crosses eng's filter only. Nothing changes for staff.
    std::thread::sleep(Duration::from_secs(3));
    env.eng_proxy.clear();
    env.staff_proxy.clear();
    let mut moved = PEOPLE;
    moved[1].1 = "FR";
    env.directory(&moved);
    wait_for("u2 on eng", Duration::from_secs(30), || {
        env.users().0.contains_key("u2") && target_groups(&env.eng)["Engineering"].len() == 2
    });
    // Two more ticks: anything else would have been sent by now.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        Two::writes(&env.eng_proxy),
        ["POST Users 2xx", "PATCH Groups 2xx"],
        "exactly u2's account and membership"
    );
    assert_eq!(Two::writes(&env.staff_proxy), Vec::<String>::new());
    assert_eq!(env.users().1, staff_want);

    // u1 leaves France: deactivated on eng and removed from its group; staff untouched.
    env.eng_proxy.clear();
    env.staff_proxy.clear();
    moved[0].1 = "DE";
    env.directory(&moved);
    wait_for("u1 deactivated on eng", Duration::from_secs(30), || {
        env.users().0 == active(&[("u1", false), ("u2", true)])
            && target_groups(&env.eng)["Engineering"] == ["u2"]
    });
    std::thread::sleep(Duration::from_secs(5));
    let writes = Two::writes(&env.eng_proxy);
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert!(writes.contains(&"PATCH Users 2xx".to_owned()), "{writes:?}");
    assert!(
        writes.contains(&"PATCH Groups 2xx".to_owned()),
        "{writes:?}"
    );
    assert_eq!(Two::writes(&env.staff_proxy), Vec::<String>::new());
    assert_eq!(env.users().1, staff_want);
    let out = daemon.stop();
    assert!(!out.stderr.contains("panicked"), "{out}");
}

#[test]
fn plan_and_provision_say_why_a_user_is_in_or_out() {
    let env = Two::start("0 0 0 1 1 *", "");
    env.directory(&PEOPLE);
    let out = env.scimsync(&["plan", "--target", "eng"]);
    out.assert_success();
    for needle in [
        "  create user u1 <u1@example.org>",
        "      why: in scope: direct member of assigned group \"Engineering\", and passes scoping filter \"France\"",
    ] {
        assert!(out.stdout.contains(needle), "{needle}\n{out}");
    }
    assert!(!out.stdout.contains("create user u2"), "{out}");
    env.scimsync(&["sync"]).assert_success();

    // u1 leaves France: the plan deprovisions it and says which clause failed.
    let mut moved = PEOPLE;
    moved[0].1 = "DE";
    env.directory(&moved);
    let out = env.scimsync(&["plan", "--target", "eng"]);
    out.assert_success();
    assert!(out.stdout.contains("  deprovision user u1 ("), "{out}");
    assert!(
        out.stdout.contains("      why: out of scope: direct member of assigned group \"Engineering\", but fails the scoping filters: scoping filter \"France\": country EQUALS \"FR\" is false"),
        "{out}"
    );
    let out = env.scimsync(&["plan", "--target", "eng", "--json"]);
    out.assert_success();
    let doc: Value = serde_json::from_str(&out.stdout).expect("plan json");
    assert_eq!(doc["format_version"], 2);
    let op = &doc["targets"][0]["operations"][0];
    assert_eq!(
        (op["action"].as_str(), op["object_id"].as_str()),
        (Some("deactivate"), Some("u1"))
    );
    assert!(
        op["scope_reason"]
            .as_str()
            .is_some_and(|r| r.ends_with("country EQUALS \"FR\" is false")),
        "{op}"
    );

    let out = env.scimsync(&[
        "provision",
        "u4@example.org",
        "--target",
        "staff",
        "--dry-run",
    ]);
    out.assert_success();
    for needle in [
        "   scope: this target's [target.scope]",
        "   assigned group \"Sales\" (g-sales): direct member: yes",
        "   scoping filter \"Employees\": employeeType EQUALS \"Employee\" AND employeeId Greater_Than 0",
        "   verdict: not in scope (direct member of assigned group \"Sales\", but fails the scoping filters: scoping filter \"Employees\": employeeType EQUALS \"Employee\" is false)",
    ] {
        assert!(out.stdout.contains(needle), "{needle}\n{out}");
    }
}

#[test]
fn skip_out_of_scope_deletions_keeps_the_account_and_forgets_it() {
    let env = Two::start("0 0 0 1 1 *", "skip_out_of_scope_deletions = true");
    env.directory(&PEOPLE);
    env.scimsync(&["sync", "--target", "eng"]).assert_success();
    assert_eq!(env.users().0, active(&[("u1", true)]));

    let mut moved = PEOPLE;
    moved[0].1 = "DE";
    env.directory(&moved);
    let out = env.scimsync(&["plan", "--target", "eng"]);
    assert!(
        out.stdout.contains("  keep user u1 (")
            && out.stdout.contains(
                "skip_out_of_scope_deletions: the account is kept as it is and no longer managed"
            ),
        "{out}"
    );
    env.eng_proxy.clear();
    let out = env.scimsync(&["sync", "--target", "eng"]);
    out.assert_success();
    assert!(
        out.stderr.contains("target \"eng\": 1 users left the scope and are kept as they are, no longer managed (skip_out_of_scope_deletions)"),
        "{out}"
    );
    // The account stays as it was (still active); the group loses the member it no longer
    // manages; and the snapshot forgot u1, so the next cycle sends nothing.
    assert_eq!(env.users().0, active(&[("u1", true)]));
    assert_eq!(Two::writes(&env.eng_proxy), ["PATCH Groups 2xx"]);
    let logs = env.scimsync(&["logs", "--target", "eng", "--user", "u1"]);
    assert!(logs.stdout.contains("no longer managed"), "{logs}");
    env.eng_proxy.clear();
    env.scimsync(&["sync", "--target", "eng"]).assert_success();
    assert_eq!(env.eng_proxy.count(), 0, "{:?}", env.eng_proxy.calls());

    // Back in France: the kept account is matched again, not created twice.
    env.directory(&PEOPLE);
    env.scimsync(&["sync", "--target", "eng"]).assert_success();
    assert_eq!(env.users().0, active(&[("u1", true)]));
    assert_eq!(target_groups(&env.eng)["Engineering"], ["u1"]);

    // A user disabled in the directory is still deactivated when it leaves the scope.
    let mut disabled: Vec<(&str, &str, &str)> = PEOPLE.to_vec();
    disabled[0].1 = "DE";
    env.directory(&disabled);
    let mut dir: Value = serde_json::from_str(&env.ws.read("directory.json")).expect("json");
    dir["users"][0]["accountEnabled"] = json!(false);
    env.ws
        .write("directory.json", serde_json::to_vec(&dir).expect("json"));
    env.scimsync(&["sync", "--target", "eng"]).assert_success();
    assert_eq!(env.users().0, active(&[("u1", false)]));
}
