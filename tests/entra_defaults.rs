//! Entra ID's default SCIM attribute table (`config/entra-defaults.toml`), verbatim, on a real
//! scim2-server behind a recording proxy: every attribute created, changed and cleared with the
//! smallest PATCH; clearing the last sub-attribute of an address or phone removes the item.

mod common;

use common::env::{Env, ENTERPRISE};
use serde_json::{json, Value};

fn start() -> Env {
    let env = Env::start(r#"groups = ["Staff"]"#, "");
    let mappings = std::fs::read_to_string(common::repo_root().join("config/entra-defaults.toml"))
        .expect("config/entra-defaults.toml");
    env.ws.write(
        "scimsync.toml",
        format!(
            "[state]\npath = \"state\"\n[source]\nkind = \"json\"\npath = \"directory.json\"\n\
             [scope]\ngroups = [\"Staff\"]\n[[target]]\nname = \"app\"\nurl = \"{}\"\n\
             token_file = \"token\"\nrate_limit = 1000\n{mappings}\n\
             [[target.group_mapping]]\ntarget = \"displayName\"\nsource = \"displayName\"\n\
             matching_precedence = 1\n",
            env.proxy.url
        ),
    );
    env
}

fn ann() -> Value {
    json!({
        "objectId": "u-ann",
        "userPrincipalName": "ann@example.org",
        "mail": "ann@example.org",
        "displayName": "Ann Example",
        "givenName": "Ann",
        "surname": "Example",
        "jobTitle": "Engineer",
        "preferredLanguage": "fr-FR",
        "physicalDeliveryOfficeName": "Building 7",
        "streetAddress": "1 Rue de la Paix",
        "city": "Paris",
        "state": "IDF",
        "postalCode": "75002",
        "country": "FR",
        "telephoneNumber": "+33 1 23 45 67 89",
        "mobile": "+33 6 12 34 56 78",
        "facsimileTelephoneNumber": "+33 1 23 45 67 00",
        "mailNickname": "ann",
        "employeeId": "E-1001",
        "department": "R&D",
        "manager": "u-bo",
        "accountEnabled": true
    })
}

fn bo() -> Value {
    json!({
        "objectId": "u-bo",
        "userPrincipalName": "bo@example.org",
        "mail": "bo@example.org",
        "displayName": "Bo Boss",
        "givenName": "Bo",
        "surname": "Boss",
        "mailNickname": "bo",
        "accountEnabled": true
    })
}

fn write(env: &Env, users: &[Value]) {
    env.directory(
        users,
        &[json!({"objectId": "g1", "displayName": "Staff", "members": ["u-ann", "u-bo"]})],
    );
}

fn typed<'a>(list: &'a Value, kind: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|i| i["type"] == kind)
}

/// The PATCH bodies sent to /Users, as the proxy recorded them.
fn user_patches(env: &Env) -> Vec<Value> {
    env.proxy
        .records()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.route().contains("/Users/"))
        .filter_map(|r| r.body)
        .collect()
}

#[test]
fn every_default_attribute_is_created_changed_and_cleared_minimally() {
    let env = start();
    write(&env, &[ann(), bo()]);
    env.sync(&[]).assert_success();
    let users = env.users();
    let (a, b) = (&users["ann@example.org"], &users["bo@example.org"]);
    assert_eq!(a["title"], "Engineer");
    assert_eq!(a["preferredLanguage"], "fr-FR");
    assert_eq!(a["displayName"], "Ann Example");
    assert_eq!(
        (
            &a["name"]["givenName"],
            &a["name"]["familyName"],
            &a["name"]["formatted"]
        ),
        (&json!("Ann"), &json!("Example"), &json!("Ann Example"))
    );
    assert_eq!(
        typed(&a["emails"], "work").expect("work mail")["value"],
        "ann@example.org"
    );
    let work = typed(&a["addresses"], "work").expect("work address");
    for (k, v) in [
        ("formatted", "Building 7"),
        ("streetAddress", "1 Rue de la Paix"),
        ("locality", "Paris"),
        ("region", "IDF"),
        ("postalCode", "75002"),
        ("country", "FR"),
    ] {
        assert_eq!(work[k], v, "{k}");
    }
    for (kind, v) in [
        ("work", "+33 1 23 45 67 89"),
        ("mobile", "+33 6 12 34 56 78"),
        ("fax", "+33 1 23 45 67 00"),
    ] {
        assert_eq!(
            typed(&a["phoneNumbers"], kind).expect(kind)["value"],
            v,
            "{kind}"
        );
    }
    assert_eq!(a["externalId"], "ann");
    assert_eq!(a[ENTERPRISE]["employeeNumber"], "E-1001");
    assert_eq!(a[ENTERPRISE]["department"], "R&D");
    assert_eq!(a[ENTERPRISE]["manager"]["value"], b["id"]);

    // Nothing changed: nothing sent.
    env.sync(&[]).assert_success();
    assert_eq!(env.proxy.count(), 0, "{:?}", env.proxy.calls());

    // A change of title, city and mobile: one PATCH, with those three only.
    let mut changed = ann();
    changed["jobTitle"] = json!("Staff Engineer");
    changed["city"] = json!("Lyon");
    changed["mobile"] = json!("+33 6 00 00 00 00");
    write(&env, &[changed.clone(), bo()]);
    env.sync(&[]).assert_success();
    let patches = user_patches(&env);
    assert_eq!(patches.len(), 1, "{:?}", env.proxy.calls());
    assert_eq!(
        patches[0]["Operations"].as_array().map(Vec::len),
        Some(3),
        "{}",
        patches[0]
    );
    let a = &env.users()["ann@example.org"];
    assert_eq!(a["title"], "Staff Engineer");
    assert_eq!(
        typed(&a["addresses"], "work").expect("address")["locality"],
        "Lyon"
    );
    assert_eq!(
        typed(&a["phoneNumbers"], "mobile").expect("mobile")["value"],
        "+33 6 00 00 00 00"
    );
    assert_eq!(
        typed(&a["phoneNumbers"], "work").expect("work")["value"],
        "+33 1 23 45 67 89"
    );

    // The fax and every part of the address cleared, the title too: the fax item and the
    // address item are gone, the other phones stay.
    let mut cleared = changed;
    for k in [
        "facsimileTelephoneNumber",
        "physicalDeliveryOfficeName",
        "streetAddress",
        "city",
        "state",
        "postalCode",
        "country",
        "jobTitle",
    ] {
        cleared.as_object_mut().expect("object").remove(k);
    }
    write(&env, &[cleared, bo()]);
    let out = env.sync(&["--allow-clears"]);
    out.assert_success();
    assert_eq!(
        user_patches(&env).len(),
        1,
        "{:?}\n{out}",
        env.proxy.calls()
    );
    let a = &env.users()["ann@example.org"];
    assert!(a.get("title").is_none_or(Value::is_null), "{a}");
    assert!(typed(&a["phoneNumbers"], "fax").is_none(), "{a}");
    assert!(typed(&a["addresses"], "work").is_none(), "{a}");
    assert!(typed(&a["phoneNumbers"], "work").is_some(), "{a}");
    assert!(typed(&a["phoneNumbers"], "mobile").is_some(), "{a}");
    env.sync(&[]).assert_success();
    assert_eq!(env.proxy.count(), 0, "{:?}", env.proxy.calls());
}
