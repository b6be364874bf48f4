//! A ready sync environment: a real SCIM server (scim2-server, or django-scim2 with
//! [`Env::start_with`]), a recording proxy in front of it, and a workspace whose configuration
//! sends the target's calls through the proxy.

use super::{DjangoServer, RecordingProxy, RunOutput, ScimClient, ScimServer, Workspace};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;

pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// The Entra default user mappings that every test configuration starts from: mail matched
/// first, objectId as userName second, `active` from IsSoftDeleted, the formatted name.
pub const CORE_USER_MAPPINGS: &str = r#"[[target.user_mapping]]
target = 'emails[type eq "work"].value'
source = "mail"
matching_precedence = 1

[[target.user_mapping]]
target = "userName"
source = "objectId"
matching_precedence = 2

[[target.user_mapping]]
target = "active"
expression = 'Switch([IsSoftDeleted], , "False", "True", "True", "False")'

[[target.user_mapping]]
target = "name.formatted"
expression = 'Join(" ", [givenName], [surname])'
"#;

/// The user mappings for django-scim2, which supports far less than scim2-server (measured in
/// tests/peers/django/BEHAVIOUR.md); only what it both stores and can PATCH:
/// - `userName` (matching): stored as given; its `eq` filter compares without regard to case.
/// - `active`: PATCH with path `active` and a JSON boolean works.
/// - `name.givenName`, `name.familyName`: stored, returned, and PATCHable by path.
///
/// Left out, with the reason:
/// - `emails[type eq "work"].value`: the server keeps one address and drops `type` (it answers
///   `[{"value": …, "primary": true}]`), no filter on `emails` ever matches (200, empty), and
///   a PATCH of that path, or an `add` of `emails`, is 501.
/// - `name.formatted`: not stored; the server answers "givenName familyName" (or the
///   userName) and a PATCH of it is 501.
/// - `externalId`: stored on POST, but no filter on it matches and a PATCH of it is 501.
/// - the enterprise extension (`department`): silently dropped.
pub const DJANGO_USER_MAPPINGS: &str = r#"[[target.user_mapping]]
target = "userName"
source = "objectId"
matching_precedence = 1

[[target.user_mapping]]
target = "active"
expression = 'Switch([IsSoftDeleted], , "False", "True", "True", "False")'

[[target.user_mapping]]
target = "name.givenName"
source = "givenName"

[[target.user_mapping]]
target = "name.familyName"
source = "surname"
"#;

/// The group mappings for django-scim2: `displayName` only (matching). It is required and
/// stored, but no filter on Groups ever matches on this server (200, empty), and a PATCH of
/// `displayName` is 501; `externalId` is left out as for users.
pub const DJANGO_GROUP_MAPPINGS: &str = r#"[[target.group_mapping]]
target = "displayName"
source = "displayName"
matching_precedence = 1
"#;

/// The mappings that [`Env::start`] configures for scim2-server, after the core user
/// mappings: externalId, the enterprise department, and the group's displayName and
/// externalId.
const SCIM2_SERVER_EXTRA_MAPPINGS: &str = r#"[[target.user_mapping]]
target = "externalId"
source = "objectId"

[[target.user_mapping]]
target = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"
source = "department"

[[target.group_mapping]]
target = "displayName"
source = "displayName"
matching_precedence = 1

[[target.group_mapping]]
target = "externalId"
source = "objectId"
"#;

/// Which real SCIM server an [`Env`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// `scim2-server` ([`ScimServer`]): permissive, close to the RFC.
    Scim2Server,
    /// django-scim2 ([`DjangoServer`]): a partial implementation with its own reading.
    Django,
}

/// A running real SCIM server of either kind; it dereferences to its [`ScimClient`], so
/// `env.server.list_users()` and `env.server.token` work on both.
pub enum Peer {
    Scim2(ScimServer),
    Django(DjangoServer),
}

impl Peer {
    pub fn start(kind: ServerKind) -> Peer {
        match kind {
            ServerKind::Scim2Server => Peer::Scim2(ScimServer::start()),
            ServerKind::Django => Peer::Django(DjangoServer::start()),
        }
    }

    pub fn kind(&self) -> ServerKind {
        match self {
            Peer::Scim2(_) => ServerKind::Scim2Server,
            Peer::Django(_) => ServerKind::Django,
        }
    }

    /// The server's output so far.
    pub fn log(&self) -> String {
        match self {
            Peer::Scim2(server) => server.log(),
            Peer::Django(server) => server.log(),
        }
    }

    /// Stops the server and returns every resource it held.
    pub fn stop_and_dump(self) -> Vec<Value> {
        match self {
            Peer::Scim2(server) => server.stop_and_dump(),
            Peer::Django(server) => server.stop_and_dump(),
        }
    }
}

impl Deref for Peer {
    type Target = ScimClient;

    fn deref(&self) -> &ScimClient {
        match self {
            Peer::Scim2(server) => server,
            Peer::Django(server) => server,
        }
    }
}

/// User `i` of the numbered test directory (`u0007`, `user7@example.org`); every seventh is
/// disabled.
pub fn numbered_user(i: usize) -> Value {
    json!({
        "objectId": format!("u{i:04}"),
        "mail": format!("user{i}@example.org"),
        "givenName": format!("Given{i}"),
        "surname": format!("Surname{i}"),
        "accountEnabled": i % 7 != 0,
    })
}

pub fn numbered_users(n: usize) -> Vec<Value> {
    (0..n).map(numbered_user).collect()
}

/// Two groups of the numbered users: even users in "Even", every user in "All".
pub fn even_and_all_groups(n: usize) -> Vec<Value> {
    let all: Vec<String> = (0..n).map(|i| format!("u{i:04}")).collect();
    let even: Vec<String> = (0..n).step_by(2).map(|i| format!("u{i:04}")).collect();
    vec![
        json!({"objectId": "g-all", "displayName": "All", "members": all}),
        json!({"objectId": "g-even", "displayName": "Even", "members": even}),
    ]
}

/// A real server, a recording proxy in front of it, and a workspace holding the configuration.
pub struct Env {
    pub server: Peer,
    pub proxy: RecordingProxy,
    pub ws: Workspace,
    /// The PostgreSQL server of the state, after [`Env::use_postgres`].
    pub pg: Option<super::Postgres>,
}

impl Env {
    /// Starts a scim2-server and writes a configuration whose target goes through the proxy.
    /// `extra` is appended to the `[[target]]` table (before the mappings, which are the
    /// Entra defaults plus externalId and the department extension).
    pub fn start(scope: &str, extra: &str) -> Env {
        Env::start_with(ServerKind::Scim2Server, scope, extra)
    }

    /// Like [`Env::start`], against a server of `kind`. For django-scim2 the mappings are
    /// [`DJANGO_USER_MAPPINGS`] and [`DJANGO_GROUP_MAPPINGS`]: only what that server supports.
    pub fn start_with(kind: ServerKind, scope: &str, extra: &str) -> Env {
        super::ensure_peers();
        let server = Peer::start(kind);
        let proxy = RecordingProxy::start(&server.url);
        let ws = Workspace::new();
        ws.write("token", format!("{}\n", server.token));
        let mappings = match kind {
            ServerKind::Scim2Server => {
                format!("{CORE_USER_MAPPINGS}\n{SCIM2_SERVER_EXTRA_MAPPINGS}")
            }
            ServerKind::Django => format!("{DJANGO_USER_MAPPINGS}\n{DJANGO_GROUP_MAPPINGS}"),
        };
        ws.write(
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
rate_limit = 1000
{extra}

{mappings}"#,
                url = proxy.url
            ),
        );
        Env {
            server,
            proxy,
            ws,
            pg: None,
        }
    }

    /// Moves this environment's state to a database of a private PostgreSQL server
    /// (`[state] backend = "postgres"`, the password in a file).
    pub fn use_postgres(&mut self) {
        let pg = super::Postgres::start();
        let url = pg.database("state_1");
        self.state_in(pg, &url, "");
    }

    /// Like [`Env::use_postgres`], on a server that takes TLS only, reached as `localhost`
    /// with `ca_file = "pg-ca.pem"` (its CA, copied into the workspace).
    pub fn use_postgres_tls(&mut self) {
        let pg = super::Postgres::start_tls();
        let url = pg.database("state_1").replace("@127.0.0.1:", "@localhost:");
        self.ws.write(
            "pg-ca.pem",
            std::fs::read(pg.ca_pem_path()).expect("read the server's CA"),
        );
        self.state_in(pg, &url, "ca_file = \"pg-ca.pem\"\n");
    }

    /// Points `[state]` at `url` on `pg`, the password in a file, `extra` lines after it.
    fn state_in(&mut self, pg: super::Postgres, url: &str, extra: &str) {
        self.ws.write("pg-password", format!("{}\n", pg.password));
        let config = self.ws.read("scimsync.toml").replacen(
            "[state]\npath = \"state\"\n",
            &format!(
                "[state]\npath = \"state\"\nbackend = \"postgres\"\nurl = \"{url}\"\npassword_file = \"pg-password\"\n{extra}"
            ),
            1,
        );
        assert!(config.contains("backend = \"postgres\""), "{config}");
        self.ws.write("scimsync.toml", config);
        self.pg = Some(pg);
    }

    /// Loses the state, as a dead disk or a dropped database would.
    pub fn lose_state(&self) {
        match &self.pg {
            None => std::fs::remove_dir_all(self.ws.path("state")).expect("remove state"),
            Some(pg) => {
                let url = pg.database("state_lost");
                let config = self.ws.read("scimsync.toml");
                let at = config.find("url = \"postgres://").expect("a postgres url");
                let end = at + config[at..].find('\n').expect("end of line");
                let config = format!("{}url = \"{url}\"{}", &config[..at], &config[end..]);
                self.ws.write("scimsync.toml", config);
            }
        }
    }

    pub fn directory(&self, users: &[Value], groups: &[Value]) {
        self.ws.write(
            "directory.json",
            serde_json::to_vec_pretty(&json!({"users": users, "groups": groups})).expect("json"),
        );
    }

    pub fn scimsync(&self, args: &[&str]) -> RunOutput {
        let mut all = vec!["--config", "scimsync.toml"];
        all.extend_from_slice(args);
        self.ws.run(&all)
    }

    /// Runs `sync` and clears the proxy's record first, so `calls()` shows this cycle only.
    pub fn sync(&self, args: &[&str]) -> RunOutput {
        self.proxy.clear();
        let mut all = vec!["sync"];
        all.extend_from_slice(args);
        self.scimsync(&all)
    }

    /// The target's users by userName; panics on a duplicate userName.
    pub fn users(&self) -> BTreeMap<String, Value> {
        target_users(&self.server)
    }

    /// The target's groups by displayName, with members as userNames; panics on a duplicate
    /// group or a member listed twice.
    pub fn groups(&self) -> BTreeMap<String, BTreeSet<String>> {
        target_groups(&self.server)
            .into_iter()
            .map(|(name, members)| {
                let set: BTreeSet<String> = members.iter().cloned().collect();
                assert_eq!(
                    set.len(),
                    members.len(),
                    "group {name} lists a member twice: {members:?}"
                );
                (name, set)
            })
            .collect()
    }

    /// Calls other than the matching queries, as "METHOD /path STATUS".
    pub fn writes(&self) -> Vec<String> {
        self.proxy
            .calls()
            .into_iter()
            .filter(|c| !c.starts_with("GET "))
            .collect()
    }
}

pub fn user(id: &str, given: &str, surname: &str) -> Value {
    json!({
        "objectId": id,
        "mail": format!("{}.{}@example.org", given.to_lowercase(), surname.to_lowercase()),
        "givenName": given,
        "surname": surname,
        "accountEnabled": true,
        "department": "Engineering"
    })
}

pub fn group(id: &str, name: &str, members: &[&str]) -> Value {
    json!({"objectId": id, "displayName": name, "members": members})
}

pub fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

pub fn work_mail(u: &Value) -> Option<&str> {
    u["emails"]
        .as_array()?
        .iter()
        .find(|e| e["type"] == "work")?["value"]
        .as_str()
}

pub fn three_users() -> Vec<Value> {
    vec![
        user("u-ada", "Ada", "Lovelace"),
        user("u-bob", "Bob", "Babbage"),
        user("u-cy", "Cy", "Young"),
    ]
}

/// A server's users by userName; panics on a duplicate userName, so that "no duplicate
/// account" is checked wherever a test reads the target.
pub fn target_users(server: &ScimClient) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for u in server.list_users() {
        let name = u["userName"].as_str().expect("userName").to_owned();
        assert!(
            out.insert(name.clone(), u).is_none(),
            "duplicate userName {name}"
        );
    }
    out
}

/// A server's groups by displayName, members as sorted userNames (duplicates kept, unknown
/// ids as `?ID`); panics on a duplicate displayName.
pub fn target_groups(server: &ScimClient) -> BTreeMap<String, Vec<String>> {
    let names: BTreeMap<String, String> = server
        .list_users()
        .into_iter()
        .map(|u| {
            (
                u["id"].as_str().expect("id").to_owned(),
                u["userName"].as_str().expect("userName").to_owned(),
            )
        })
        .collect();
    let mut out = BTreeMap::new();
    for g in server.list_groups() {
        let mut members: Vec<String> = g["members"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .map(|m| {
                        let id = m["value"].as_str().expect("member value");
                        names.get(id).cloned().unwrap_or_else(|| format!("?{id}"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        members.sort();
        let name = g["displayName"].as_str().expect("displayName").to_owned();
        assert!(
            out.insert(name.clone(), members).is_none(),
            "duplicate group {name}"
        );
    }
    out
}
