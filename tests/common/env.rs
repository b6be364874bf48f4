//! A ready sync environment: a real scim2-server, a recording proxy in front of it, and a
//! workspace whose configuration sends the target's calls through the proxy.

use super::{RecordingProxy, RunOutput, ScimServer, Workspace};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

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
    pub server: ScimServer,
    pub proxy: RecordingProxy,
    pub ws: Workspace,
}

impl Env {
    /// Starts the peers and writes a configuration whose target goes through the proxy.
    /// `extra` is appended to the `[[target]]` table (before the mappings, which are the
    /// Entra defaults plus the department extension).
    pub fn start(scope: &str, extra: &str) -> Env {
        super::ensure_peers();
        let server = ScimServer::start();
        let proxy = RecordingProxy::start(&server.url);
        let ws = Workspace::new();
        ws.write("token", format!("{}\n", server.token));
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

{CORE_USER_MAPPINGS}

[[target.user_mapping]]
target = "externalId"
source = "objectId"

[[target.user_mapping]]
target = "{ENTERPRISE}:department"
source = "department"

[[target.group_mapping]]
target = "displayName"
source = "displayName"
matching_precedence = 1

[[target.group_mapping]]
target = "externalId"
source = "objectId"
"#,
                url = proxy.url
            ),
        );
        Env { server, proxy, ws }
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
pub fn target_users(server: &ScimServer) -> BTreeMap<String, Value> {
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
pub fn target_groups(server: &ScimServer) -> BTreeMap<String, Vec<String>> {
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
