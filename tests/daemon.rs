//! The daemon (`scimsync run`) as systemd runs it: the real binary on a two-second schedule,
//! a real scim2-server behind a recording proxy, signals sent with `kill`, `NOTIFY_SOCKET` on
//! a datagram socket of the test's own, and the CLI talking to it over the control socket.

mod common;

use common::{RecordingProxy, RunOutput, Running, ScimServer, Workspace};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

const EVERY_TWO_SECONDS: &str = "*/2 * * * * *";
/// A schedule that does not fire during a test: only the initial sync runs.
const NEVER_SOON: &str = "0 0 0 1 1 *";

struct Env {
    server: ScimServer,
    proxy: RecordingProxy,
    ws: Workspace,
}

impl Env {
    fn start(schedule: &str, rate_limit: u32) -> Env {
        common::ensure_peers();
        let server = ScimServer::start();
        let proxy = RecordingProxy::start(&server.url);
        let ws = Workspace::new();
        ws.write("token", format!("{}\n", server.token));
        let env = Env { server, proxy, ws };
        env.config(schedule, rate_limit, r#"groups = ["Crew"]"#, "department");
        env
    }

    /// Writes the configuration; `department_source` is what `department` is mapped from.
    fn config(&self, schedule: &str, rate_limit: u32, scope: &str, department_source: &str) {
        self.ws.write(
            "scimsync.toml",
            format!(
                r#"[state]
path = "state"

[source]
kind = "json"
path = "directory.json"

[scope]
{scope}

[[target]]
name = "app"
url = "{url}"
token_file = "token"
schedule = "{schedule}"
rate_limit = {rate_limit}
concurrency = 4

{core}

[[target.user_mapping]]
target = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"
source = "{department_source}"
"#,
                url = self.proxy.url,
                core = common::env::CORE_USER_MAPPINGS,
            ),
        );
    }

    fn directory(&self, users: &[Value], crew: &[&str]) {
        let groups = [json!({"objectId": "g-crew", "displayName": "Crew", "members": crew})];
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

    fn daemon(&self, env: &[(&str, &str)]) -> Running {
        self.ws.spawn_with_env(
            &["--config", "scimsync.toml", "--log-level", "info", "run"],
            env,
        )
    }

    /// The target's users by userName; panics on a duplicate userName.
    fn users(&self) -> BTreeMap<String, Value> {
        common::env::target_users(&self.server)
    }

    fn writes(&self) -> Vec<String> {
        self.proxy
            .calls()
            .into_iter()
            .filter(|c| !c.starts_with("GET "))
            .collect()
    }
}

fn user(id: &str, dept: &str) -> Value {
    json!({
        "objectId": id,
        "mail": format!("{id}@example.org"),
        "givenName": id,
        "surname": "Test",
        "accountEnabled": true,
        "department": dept,
        "costCenter": "CC-7"
    })
}

fn users(n: usize) -> Vec<Value> {
    (0..n).map(|i| user(&format!("u{i:03}"), "Ops")).collect()
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("u{i:03}")).collect()
}

fn kill(running: &Running, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &running.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} failed");
}

/// Polls `cond` every 100 ms until it holds; panics with `what` after `timeout`.
fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The test's end of `NOTIFY_SOCKET`.
struct Notify {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl Notify {
    fn bind(ws: &Workspace) -> (Notify, String) {
        let path = ws.path("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        (
            Notify {
                socket,
                seen: Vec::new(),
            },
            path.display().to_string(),
        )
    }

    /// Waits for a datagram line starting with `prefix`.
    fn expect(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.seen.iter().find(|l| l.starts_with(prefix)) {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {prefix} notification; seen: {:?}",
                self.seen
            );
            let mut buf = [0u8; 4096];
            if let Ok(n) = self.socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.extend(text.lines().map(str::to_owned));
            }
        }
    }
}

#[test]
fn cycles_run_on_schedule_and_the_cli_reaches_the_daemon_through_its_socket() {
    let env = Env::start(EVERY_TWO_SECONDS, 1000);
    env.directory(&users(3), &["u000", "u001", "u002"]);
    let (mut notify, notify_path) = Notify::bind(&env.ws);
    let daemon = env.daemon(&[("NOTIFY_SOCKET", &notify_path)]);

    notify.expect("READY=1", Duration::from_secs(20));
    wait_for("the initial sync", Duration::from_secs(30), || {
        env.users().len() == 3
    });
    let status = notify.expect("STATUS=app: ", Duration::from_secs(20));
    assert!(status.contains("users +3"), "{status}");

    // A change written to the directory reaches the target at the next tick.
    let mut more = users(3);
    more.push(user("u100", "Ops"));
    env.directory(&more, &["u000", "u001", "u002", "u100"]);
    wait_for(
        "the new user on the target",
        Duration::from_secs(30),
        || env.users().contains_key("u100"),
    );

    // The state is locked by the daemon, yet status answers, through the socket.
    let out = env.scimsync(&["status"]);
    out.assert_success();
    assert!(out.stdout.contains("daemon: running, pid"), "{out}");
    assert!(out.stdout.contains("target \"app\":"), "{out}");
    assert!(out.stdout.contains("managed: 4 users, 1 groups"), "{out}");
    assert!(out.stdout.contains("next run 20"), "{out}");
    let json: Value =
        serde_json::from_str(&env.scimsync(&["status", "--json"]).stdout).expect("status json");
    assert_eq!(json["targets"][0]["name"], "app");
    assert!(json["daemon"]["pid"].as_u64().is_some(), "{json}");
    assert!(
        json["targets"][0]["last_cycle"]["users"].is_object(),
        "{json}"
    );

    // provision and sync work through the socket too, and print what they print locally.
    let out = env.scimsync(&["provision", "u100@example.org", "--dry-run"]);
    out.assert_success();
    assert!(out.stdout.contains("4. Action: skip (no change"), "{out}");
    let out = env.scimsync(&["sync"]);
    out.assert_success();
    assert!(
        out.stdout
            .contains("target \"app\": users created 0, updated 0, deprovisioned 0, unchanged 4"),
        "{out}"
    );
    // `logs` reads the daemon's log through the same channel: the creates of its first cycle.
    let out = env.scimsync(&["logs", "--json", "--action", "create"]);
    out.assert_success();
    let creates: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert!(
        creates.len() >= 4
            && creates
                .iter()
                .all(|r| r["format_version"] == 1 && r["action"] == "Create"),
        "{out}"
    );
    let out = env.scimsync(&["logs", "--status", "nonsense"]);
    out.assert_code(64);

    kill(&daemon, "TERM");
    let out = daemon.wait(Duration::from_secs(40));
    out.assert_success();
    assert!(out.stderr.contains("Daemon stopped."), "{out}");
    assert!(
        !env.ws.path("state/control.sock").exists(),
        "the socket is removed at exit"
    );
    // With no daemon, the CLI opens the state itself.
    let out = env.scimsync(&["status"]);
    out.assert_success();
    assert!(out.stdout.contains("daemon: not running"), "{out}");
}

#[test]
fn sigterm_in_the_middle_of_a_cycle_exits_0_and_the_next_run_creates_no_duplicate() {
    const N: usize = 300;
    let env = Env::start(NEVER_SOON, 50);
    let all = ids(N);
    let crew: Vec<&str> = all.iter().map(String::as_str).collect();
    env.directory(&users(N), &crew);
    let daemon = env.daemon(&[]);
    // 300 creates at 50 requests per second (plus a matching query each) take ~12 s.
    wait_for(
        "the initial sync to be under way",
        Duration::from_secs(30),
        || env.users().len() >= 20,
    );
    kill(&daemon, "TERM");
    let out = daemon.wait(Duration::from_secs(40));
    out.assert_success();
    let created = env.users().len();
    assert!(
        created < N,
        "the cycle was not interrupted ({created} users)"
    );

    // Every account created before the stop is in the snapshot: the next run adopts none
    // and creates only the rest, with no duplicate.
    let out = env.scimsync(&["sync"]);
    out.assert_success();
    assert!(
        out.stdout.contains(&format!(
            "users created {}, updated 0, deprovisioned 0, unchanged {created}",
            N - created
        )),
        "{created} created before the stop\n{out}"
    );
    let names: Vec<String> = env.users().into_keys().collect();
    assert_eq!(names.len(), N);
    assert_eq!(names.iter().collect::<BTreeSet<_>>().len(), N);
}

#[test]
fn sighup_reloads_the_configuration_and_keeps_the_old_one_when_the_new_is_invalid() {
    let env = Env::start(EVERY_TWO_SECONDS, 1000);
    env.directory(&users(2), &["u000", "u001"]);
    let daemon = env.daemon(&[]);
    const DEPT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let dept = |env: &Env| -> BTreeSet<String> {
        env.users()
            .values()
            .map(|u| u[DEPT]["department"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    wait_for("the initial sync", Duration::from_secs(30), || {
        dept(&env) == BTreeSet::from(["Ops".to_owned()]) && env.users().len() == 2
    });

    // A new mapping: department now comes from costCenter.
    env.config(
        EVERY_TWO_SECONDS,
        1000,
        r#"groups = ["Crew"]"#,
        "costCenter",
    );
    kill(&daemon, "HUP");
    wait_for(
        "the new mapping on the target",
        Duration::from_secs(30),
        || dept(&env) == BTreeSet::from(["CC-7".to_owned()]),
    );

    // An invalid configuration is logged; the daemon goes on with the previous one.
    env.ws.write("scimsync.toml", "[scope]\ngrups = []\n");
    kill(&daemon, "HUP");
    std::thread::sleep(Duration::from_millis(500));
    let mut changed = users(2);
    changed[0]["costCenter"] = json!("CC-9");
    env.directory(&changed, &["u000", "u001"]);
    wait_for(
        "a cycle with the previous configuration",
        Duration::from_secs(30),
        || dept(&env) == BTreeSet::from(["CC-7".to_owned(), "CC-9".to_owned()]),
    );
    // The CLI reads the file itself: it refuses the invalid one before asking the daemon.
    env.scimsync(&["status"]).assert_code(64);
    env.config(EVERY_TWO_SECONDS, 1000, "all = true", "costCenter");
    let mut more = users(2);
    more.push(user("u200", "Ops"));
    env.directory(&more, &["u000", "u001"]);
    kill(&daemon, "HUP");
    wait_for("the new scope (all users)", Duration::from_secs(30), || {
        env.users().contains_key("u200")
    });

    let out = daemon.stop();
    out.assert_success();
    assert!(
        out.stderr
            .contains("the new configuration is invalid; keeping the previous one"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("scope.grups: unknown key; did you mean `groups`?"),
        "{out}"
    );
    assert!(out.stderr.contains("configuration reloaded"), "{out}");
}

#[test]
fn provision_reports_each_step_and_dry_run_writes_nothing() {
    let env = Env::start(NEVER_SOON, 1000);
    env.directory(&users(2), &["u000", "u001"]);
    // The initial sync, without a daemon.
    env.scimsync(&["sync"]).assert_success();

    // A user joins the group; provisioned on demand through the running daemon.
    let mut more = users(2);
    more.push(user("u300", "Ops"));
    env.directory(&more, &["u000", "u001", "u300"]);
    let daemon = env.daemon(&[]);
    wait_for("the control socket", Duration::from_secs(20), || {
        env.ws.path("state/control.sock").exists()
    });

    env.proxy.clear();
    let out = env.scimsync(&["provision", "u300@example.org", "--dry-run"]);
    out.assert_success();
    assert_eq!(env.writes(), Vec::<String>::new(), "dry run wrote\n{out}");
    let text = &out.stdout;
    for needle in [
        "target \"app\": provision user u300 (dry run)",
        "1. Import",
        "   mail = \"u300@example.org\"",
        "2. Scope",
        "   assigned group \"Crew\" (g-crew): direct member: yes",
        "   verdict: in scope (direct member of assigned group \"Crew\")",
        "3. Match",
        // Learned from the accounts the initial sync made (typed `work`): the form without
        // a type, which finds a mail whatever its type.
        "   emails[type eq \"work\"].value: GET /Users?filter=emails.value eq \"u300@example.org\" -> 0 hits",
        "   userName: GET /Users?filter=userName eq \"u300\" -> 0 hits",
        "4. Action: create",
        "   userName: (none) -> \"u300\"",
        "   result: dry run: nothing was written",
        "5. Group memberships",
        "   group \"Crew\": would add the user as a member",
    ] {
        assert!(text.contains(needle), "missing {needle:?}\n{out}");
    }

    env.proxy.clear();
    let out = env.scimsync(&["provision", "u300"]);
    out.assert_success();
    assert!(out.stdout.contains("   result: created account "), "{out}");
    assert!(
        out.stdout.contains("   group \"Crew\": member added"),
        "{out}"
    );
    let writes = env.writes();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert!(writes[0].starts_with("POST /v2/Users"), "{writes:?}");
    assert!(writes[1].starts_with("PATCH /v2/Groups/"), "{writes:?}");
    assert!(env.users().contains_key("u300"));

    // Out of scope, and managed: provisioning deactivates the account.
    env.directory(&more, &["u000", "u300"]);
    let out = env.scimsync(&["provision", "u001"]);
    out.assert_success();
    assert!(
        out.stdout
            .contains("4. Action: deprovision (not in scope, and scimsync manages its account)"),
        "{out}"
    );
    assert!(out.stdout.contains("   active: true -> false"), "{out}");
    assert_eq!(env.users()["u001"]["active"], json!(false));

    // By SCIM userName, out of scope, never managed: skipped with the reason.
    let out = env.scimsync(&["provision", "nobody"]);
    out.assert_code(1);
    assert!(out.stderr.contains("no user \"nobody\""), "{out}");

    daemon.stop().assert_success();
}

#[test]
fn a_locked_state_with_no_daemon_answering_is_reported_clearly() {
    let env = Env::start(NEVER_SOON, 1000);
    env.directory(&users(1), &["u000"]);
    let daemon = env.daemon(&[]);
    wait_for("the control socket", Duration::from_secs(20), || {
        env.ws.path("state/control.sock").exists()
    });
    // The daemon holds the lock, but its socket is gone (deleted by hand, say).
    std::fs::remove_file(env.ws.path("state/control.sock")).expect("remove the socket");
    let out = env.scimsync(&["status"]);
    out.assert_code(2);
    assert!(
        out.stderr
            .contains("state: the state is locked by another scimsync process (is the daemon running?); no scimsync daemon answered on state/control.sock"),
        "{out}"
    );
    daemon.stop().assert_success();
}

/// What an administrator reads in the journal at the default level, with standard error not a
/// terminal: the start, one summary line per target cycle with its counts in the message, the
/// reload, the stop; no colour codes, and no line per object.
#[test]
fn the_journal_at_the_default_level_says_each_cycle_once_without_colour() {
    let env = Env::start(EVERY_TWO_SECONDS, 1000);
    env.directory(&users(3), &["u000", "u001", "u002"]);
    let (mut notify, notify_path) = Notify::bind(&env.ws);
    let daemon = env.ws.spawn_with_env(
        &["--config", "scimsync.toml", "run"],
        &[("NOTIFY_SOCKET", &notify_path)],
    );
    notify.expect("READY=1", Duration::from_secs(20));
    wait_for("the initial sync", Duration::from_secs(30), || {
        env.users().len() == 3
    });
    // More cycles on the two-second schedule, a reload, and one more cycle after it.
    std::thread::sleep(Duration::from_secs(5));
    kill(&daemon, "HUP");
    std::thread::sleep(Duration::from_secs(3));
    kill(&daemon, "TERM");
    let out = daemon.wait(Duration::from_secs(40));
    out.assert_success();

    let log = &out.stderr;
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes off a terminal:\n{log}"
    );
    let lines: Vec<&str> = log.lines().collect();
    let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(count("Daemon started."), 1, "{log}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Daemon started.") && l.contains("app (*/2 * * * * *)")),
        "the start names each target and its schedule:\n{log}"
    );
    assert_eq!(count("SIGHUP: configuration reloaded."), 1, "{log}");
    assert_eq!(count("Daemon stopped."), 1, "{log}");
    let cycles: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("Cycle finished: "))
        .collect();
    assert!(cycles.len() >= 4, "{log}");
    assert!(
        cycles[0].contains("users +3 ~0 -0 =0 skipped 0 failed 0; groups +1 ~0 -0 =0"),
        "the first cycle's counts are in its message:\n{log}"
    );
    for c in &cycles[1..] {
        assert!(
            c.contains("users +0 ~0 -0 =3") && c.contains("; 0 requests;"),
            "{c}"
        );
        assert!(c.contains("next run 20"), "{c}");
    }
    // Nothing else at the default level: no record per object, no debug chatter.
    let known = [
        "Daemon started.",
        "Empty snapshot: running the initial sync now.",
        "Cycle finished: ",
        "SIGHUP: configuration reloaded.",
        "SIGTERM: stopping.",
        "Daemon stopped.",
    ];
    for l in &lines {
        assert!(
            known.iter().any(|k| l.contains(k)),
            "unexpected line: {l}\n{log}"
        );
    }
}
