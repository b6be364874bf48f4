//! Several scimsync daemons on one PostgreSQL state: a private PostgreSQL server, one real
//! scim2-server per target (each behind a recording proxy), and a workspace whose one
//! configuration every instance runs. Each instance has its own `RUNTIME_DIRECTORY` (its
//! control socket) and its name in `SCIMSYNC_INSTANCE`.

use super::env::{Peer, ServerKind, CORE_USER_MAPPINGS};
use super::{Postgres, RecordingProxy, RunOutput, Running, Workspace};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Cluster {
    /// Per target name: its server and the proxy in front of it.
    pub targets: BTreeMap<String, (Peer, RecordingProxy)>,
    pub ws: Workspace,
    pub pg: Postgres,
}

/// A lease as `scimsync_lease` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub epoch: i64,
    pub live: bool,
}

impl Cluster {
    /// Targets `names`, each on its own scim2-server, on `schedule`, at `rate_limit` requests
    /// per second, with `lease_seconds`; every user in the group "All" is in scope.
    pub fn start(names: &[&str], schedule: &str, rate_limit: u32, lease_seconds: u64) -> Cluster {
        super::ensure_peers();
        let pg = Postgres::start();
        let url = pg.database("state_1");
        let ws = Workspace::new();
        ws.write("pg-password", format!("{}\n", pg.password));
        let mut config = format!(
            r#"[state]
path = "state"
backend = "postgres"
url = "{url}"
password_file = "pg-password"
lease_seconds = {lease_seconds}

[source]
kind = "json"
path = "directory.json"

[scope]
groups = ["All"]
"#
        );
        let mut targets = BTreeMap::new();
        for name in names {
            let server = Peer::start(ServerKind::Scim2Server);
            let proxy = RecordingProxy::start(&server.url);
            ws.write(&format!("{name}.token"), format!("{}\n", server.token));
            config.push_str(&format!(
                r#"
[[target]]
name = "{name}"
url = "{proxy_url}"
token_file = "{name}.token"
schedule = "{schedule}"
rate_limit = {rate_limit}
concurrency = 2

{CORE_USER_MAPPINGS}
[[target.group_mapping]]
target = "displayName"
source = "displayName"
matching_precedence = 1
"#,
                proxy_url = proxy.url
            ));
            targets.insert((*name).to_owned(), (server, proxy));
        }
        ws.write("scimsync.toml", config);
        Cluster { targets, ws, pg }
    }

    /// The directory: `n` numbered users, all in "All".
    pub fn directory(&self, n: usize) {
        let users = super::env::numbered_users(n);
        let groups = super::env::even_and_all_groups(n);
        self.ws.write(
            "directory.json",
            serde_json::to_vec_pretty(&json!({"users": users, "groups": groups})).expect("json"),
        );
    }

    fn env_of(&self, instance: &str) -> Vec<(String, String)> {
        let run = self.ws.path(&format!("run-{instance}"));
        std::fs::create_dir_all(&run).expect("runtime directory");
        vec![
            ("RUNTIME_DIRECTORY".into(), run.display().to_string()),
            ("SCIMSYNC_INSTANCE".into(), instance.to_owned()),
        ]
    }

    /// Starts the daemon named `instance`.
    pub fn spawn(&self, instance: &str) -> Running {
        let env = self.env_of(instance);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.ws
            .spawn_with_env(&["--config", "scimsync.toml", "run"], &env)
    }

    /// Runs a command as `instance`'s command line would (its runtime directory, so through
    /// its daemon when that answers).
    pub fn run(&self, instance: &str, args: &[&str]) -> RunOutput {
        let env = self.env_of(instance);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut all = vec!["--config", "scimsync.toml"];
        all.extend_from_slice(args);
        self.ws.run_with_env(&all, &env)
    }

    /// Runs SQL against the state database.
    pub fn psql(&self, sql: &str) -> String {
        self.try_psql(sql)
            .unwrap_or_else(|e| panic!("psql {sql}: {e}"))
    }

    /// Runs SQL; the error text when it fails (a table scimsync has not created yet, say).
    pub fn try_psql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.pg.port.to_string()])
            .args(["-U", super::POSTGRES_USER, "-d", "state_1"])
            .args(["-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGPASSWORD", &self.pg.password)
            .output()
            .expect("run psql");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Every target's lease.
    pub fn leases(&self) -> BTreeMap<String, Lease> {
        // Before the first instance created the schema: no lease.
        let text = self
            .try_psql(
                "SELECT target, owner, epoch, expires_at > now() FROM scimsync_lease ORDER BY target",
            )
            .unwrap_or_default();
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                (
                    f[0].to_owned(),
                    Lease {
                        owner: f[1].to_owned(),
                        epoch: f[2].parse().expect("epoch"),
                        live: f[3] == "t",
                    },
                )
            })
            .collect()
    }

    /// Users in each target's snapshot.
    pub fn snapshot_users(&self, target: &str) -> usize {
        self.try_psql(&format!(
            "SELECT count(*) FROM scimsync_kv WHERE tree = 'users/{target}'"
        ))
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
    }

    /// A digest of every target's users and groups trees.
    pub fn snapshot_digest(&self) -> String {
        self.psql(
            "SELECT md5(coalesce(string_agg(tree || encode(key, 'hex') || encode(value, 'hex'), ',' \
             ORDER BY tree, key), '')) FROM scimsync_kv WHERE tree LIKE 'users/%' OR tree LIKE 'groups/%'",
        )
    }

    /// The proxy of `target`.
    pub fn proxy(&self, target: &str) -> &RecordingProxy {
        &self.targets[target].1
    }

    /// The writes (POST, PATCH, DELETE) the proxy of `target` recorded.
    pub fn writes(&self, target: &str) -> Vec<String> {
        self.proxy(target)
            .calls()
            .into_iter()
            .filter(|c| !c.starts_with("GET"))
            .collect()
    }
}

/// Waits until `done` holds, or panics with `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends `signal` (`-9`, `-STOP`, `-CONT`) to a process.
pub fn signal(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill {signal} {pid}");
}

/// The users of a JSON list by userName, for counting.
pub fn user_names(users: &[Value]) -> Vec<String> {
    users
        .iter()
        .filter_map(|u| u["userName"].as_str().map(str::to_owned))
        .collect()
}
