//! The manager, a reference attribute: an objectId in the directory, the manager's SCIM id in
//! the target (`{"value": id}` in the enterprise extension), on a real scim2-server behind a
//! recording proxy.

mod common;

use common::env::{Env, ENTERPRISE};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const MANAGER_MAPPING: &str = r#"
[[target.user_mapping]]
target = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"
source = "manager"
"#;

fn person(id: &str, manager: Option<&str>) -> Value {
    let mut u = json!({
        "objectId": id,
        "mail": format!("{id}@example.org"),
        "givenName": id,
        "surname": "Test",
        "accountEnabled": true,
        "department": "Engineering",
    });
    if let Some(m) = manager {
        u["manager"] = json!(m);
    }
    u
}

/// Each account's manager on the target, as the userName of the account it points at.
fn managers(env: &Env) -> BTreeMap<String, Option<String>> {
    let users = env.users();
    let names: BTreeMap<String, String> = users
        .iter()
        .map(|(name, u)| (u["id"].as_str().expect("id").to_owned(), name.clone()))
        .collect();
    users
        .iter()
        .map(|(name, u)| {
            let manager = u[ENTERPRISE]["manager"]["value"]
                .as_str()
                .map(|id| names.get(id).cloned().unwrap_or_else(|| format!("?{id}")));
            (name.clone(), manager)
        })
        .collect()
}

fn want(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
    pairs
        .iter()
        .map(|(u, m)| ((*u).to_owned(), m.map(str::to_owned)))
        .collect()
}

fn staff(members: &[&str]) -> Value {
    json!({"objectId": "g-staff", "displayName": "Staff", "members": members})
}

fn patches_of_users(env: &Env) -> Vec<String> {
    env.writes()
        .into_iter()
        .filter(|c| c.starts_with("PATCH") && c.contains("/Users/"))
        .collect()
}

#[test]
fn a_three_level_chain_is_set_in_one_initial_sync_and_a_change_is_one_patch() {
    // One request at a time: the order of the creates alone decides whether a report's POST
    // can carry its manager.
    let env = Env::start(
        r#"groups = ["Staff"]"#,
        &format!("concurrency = 1\n{MANAGER_MAPPING}"),
    );
    let people = vec![
        person("dev", Some("vp")),
        person("dev2", Some("vp")),
        person("vp", Some("ceo")),
        person("ceo", None),
    ];
    let all = ["dev", "dev2", "vp", "ceo"];
    env.directory(&people, &[staff(&all)]);
    let out = env.sync(&[]);
    out.assert_success();
    assert_eq!(
        managers(&env),
        want(&[
            ("ceo", None),
            ("dev", Some("vp")),
            ("dev2", Some("vp")),
            ("vp", Some("ceo")),
        ]),
        "{out}"
    );
    // Managers were created first, so every report's own POST carried its manager: no
    // PATCH was needed (the directory lists the reports first).
    let posts: Vec<Value> = env
        .proxy
        .records()
        .into_iter()
        .filter(|r| r.method == "POST" && r.route().ends_with("/Users"))
        .filter_map(|r| r.body)
        .collect();
    let order: Vec<&str> = posts
        .iter()
        .filter_map(|b| b["userName"].as_str())
        .collect();
    assert_eq!(order, ["ceo", "vp", "dev", "dev2"]);
    for b in &posts[1..] {
        assert!(b[ENTERPRISE]["manager"]["value"].is_string(), "{b}");
    }
    assert_eq!(patches_of_users(&env), Vec::<String>::new());

    // Nothing changed: nothing is sent.
    env.proxy.clear();
    let out = env.sync(&[]);
    out.assert_success();
    assert_eq!(env.proxy.count(), 0, "{:?}\n{out}", env.proxy.calls());

    // dev now reports to the CEO: one PATCH of dev.
    let mut moved = people.clone();
    moved[0]["manager"] = json!("ceo");
    env.directory(&moved, &[staff(&all)]);
    env.proxy.clear();
    env.sync(&[]).assert_success();
    assert_eq!(env.writes().len(), 1, "{:?}", env.writes());
    assert_eq!(patches_of_users(&env).len(), 1);
    assert_eq!(managers(&env)["dev"].as_deref(), Some("ceo"));

    // The VP leaves the scope: deactivated, and dev2's manager is removed (one PATCH each,
    // and the group loses a member).
    env.directory(&moved, &[staff(&["dev", "dev2", "ceo"])]);
    env.proxy.clear();
    env.sync(&[]).assert_success();
    let m = managers(&env);
    assert_eq!(m["dev2"], None, "{m:?}");
    assert_eq!(m["dev"].as_deref(), Some("ceo"));
    assert_eq!(env.users()["vp"]["active"], json!(false));
    assert_eq!(patches_of_users(&env).len(), 2, "{:?}", env.writes());
    env.proxy.clear();
    env.sync(&[]).assert_success();
    assert_eq!(env.proxy.count(), 0, "{:?}", env.proxy.calls());
}

#[test]
fn managers_of_each_other_and_a_manager_outside_the_directory_are_harmless() {
    let env = Env::start(r#"groups = ["Staff"]"#, MANAGER_MAPPING);
    let people = vec![
        person("a", Some("b")),
        person("b", Some("a")),
        person("c", Some("nobody-here")),
    ];
    env.directory(&people, &[staff(&["a", "b", "c"])]);
    let plan = env.scimsync(&["plan"]);
    plan.assert_success();
    assert!(
        plan.stdout
            .contains("  set the manager of user a to b once that account exists"),
        "{plan}"
    );
    env.sync(&[]).assert_success();
    assert_eq!(
        managers(&env),
        want(&[("a", Some("b")), ("b", Some("a")), ("c", None)])
    );
    env.proxy.clear();
    env.sync(&[]).assert_success();
    assert_eq!(env.proxy.count(), 0, "{:?}", env.proxy.calls());
}
