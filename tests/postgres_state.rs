//! The state on PostgreSQL (`[state] backend = "postgres"`), on a private PostgreSQL server and
//! a real scim2-server: an import alone, the schema migrated by scimsync and a newer one
//! refused, a wrong password named without the password, and a state moved between the two
//! backends by `state export` / `state import`. (The whole sync suite runs on this backend
//! too: the `postgres` variant of each test in tests/sync.rs.)

mod common;

use common::env::{group, three_users, Env};
use std::process::Command;

fn staff() -> serde_json::Value {
    group("g1", "Staff", &["u-ada", "u-bob", "u-cy"])
}

/// Runs SQL against the environment's state database as the test superuser.
fn psql(env: &Env, sql: &str) -> String {
    let pg = env.pg.as_ref().expect("postgres");
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port.to_string(),
            "-U",
            common::POSTGRES_USER,
        ])
        .args(["-d", "state_1", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGPASSWORD", &pg.password)
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn the_state_lives_in_postgres_with_its_schema_and_imports_alone() {
    let mut env = Env::start(r#"groups = ["Staff"]"#, "");
    env.use_postgres();
    env.directory(&three_users(), &[staff()]);
    env.sync(&[]).assert_success();
    assert_eq!(psql(&env, "SELECT MAX(version) FROM scimsync_schema"), "2");
    assert_eq!(
        psql(
            &env,
            "SELECT COUNT(*) FROM scimsync_kv WHERE tree = 'users/app'"
        ),
        "3"
    );
    // Nothing in the sled directory: it only keeps the control socket.
    assert!(!env.ws.path("state/db").exists());
    env.sync(&[]).assert_success();
    assert_eq!(env.proxy.count(), 0, "{:?}", env.proxy.calls());

    // Beside a running daemon, an export reads the state; an import, which writes every
    // target's trees, is refused and told why.
    let mut daemon = env.ws.spawn(&["--config", "scimsync.toml", "run"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !env.ws.path("state/control.sock").exists() {
        assert!(
            !daemon.has_exited(),
            "the daemon stopped: {}",
            daemon.stop()
        );
        assert!(std::time::Instant::now() < deadline, "no daemon socket");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    env.scimsync(&["state", "export", "--output", "x.jsonl"])
        .assert_success();
    assert!(env.ws.read("x.jsonl").contains("users/app"));
    let out = env.scimsync(&["state", "import", "x.jsonl"]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("locked by another scimsync process"),
        "{out}"
    );
    daemon.stop();

    // A schema newer than this scimsync's is refused, untouched.
    psql(&env, "INSERT INTO scimsync_schema (version) VALUES (99)");
    let out = env.sync(&[]);
    out.assert_code(2);
    assert!(
        out.stderr
            .contains("schema version 99 is newer than this scimsync's 2"),
        "{out}"
    );
    psql(&env, "DELETE FROM scimsync_schema WHERE version = 99");

    // A wrong password: named as a failed connection, the password nowhere.
    let pg = env.pg.as_ref().expect("postgres");
    env.ws.write("pg-password", "not-the-password\n");
    let out = env.sync(&[]);
    out.assert_code(2);
    assert!(out.stderr.contains("cannot connect"), "{out}");
    assert!(!out.to_string().contains("not-the-password"), "{out}");
    env.ws.write("pg-password", format!("{}\n", pg.password));
}

#[test]
fn a_state_moves_from_postgres_to_sled_and_carries_on_without_a_request() {
    let mut env = Env::start(r#"groups = ["Staff"]"#, "");
    env.use_postgres();
    env.directory(&three_users(), &[staff()]);
    env.sync(&[]).assert_success();
    env.scimsync(&["state", "export", "--output", "dump.jsonl"])
        .assert_success();

    // The same configuration on sled, in a new directory.
    let config = env.ws.read("scimsync.toml");
    let sled: String = config
        .lines()
        .filter(|l| {
            !l.starts_with("backend =")
                && !l.starts_with("url = \"postgres")
                && !l.starts_with("password_file =")
        })
        .map(|l| format!("{}\n", l.replace("path = \"state\"", "path = \"moved\"")))
        .collect();
    env.ws.write("scimsync.toml", sled);
    env.scimsync(&["state", "import", "dump.jsonl"])
        .assert_success();
    let out = env.sync(&[]);
    out.assert_success();
    assert_eq!(env.proxy.count(), 0, "{:?}\n{out}", env.proxy.calls());
    assert_eq!(env.users().len(), 3);
}
