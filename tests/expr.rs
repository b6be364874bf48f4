//! `scimsync expr`: Entra's expression builder on the command line.

mod common;

use common::Workspace;

fn expr(ws: &Workspace, args: &[&str]) -> common::RunOutput {
    let mut all = vec!["expr"];
    all.extend_from_slice(args);
    ws.run(&all)
}

#[test]
fn evaluates_with_given_attributes() {
    let ws = Workspace::new();
    let out = expr(
        &ws,
        &[
            r#"Join(" ", [givenName], [surname])"#,
            "--attr",
            "givenName=Ada",
            "--attr",
            "surname=Lovelace",
        ],
    );
    out.assert_success();
    assert_eq!(out.stdout, "Ada Lovelace\n");
    // Attribute names are case-insensitive; an attribute not given is null.
    let out = expr(
        &ws,
        &[
            r#"Coalesce([MAIL], "none")"#,
            "--attr",
            "mail=a@example.org",
        ],
    );
    assert_eq!(out.stdout, "a@example.org\n");
    let out = expr(&ws, &[r#"IsNull([missing])"#]);
    assert_eq!(out.stdout, "True\n");
    // An empty value is an empty string, not null.
    let out = expr(&ws, &[r#"IsNull([e])"#, "--attr", "e="]);
    assert_eq!(out.stdout, "False\n");
    let out = expr(&ws, &[r#"IsNullOrEmpty([e])"#, "--attr", "e=", "--json"]);
    assert_eq!(out.stdout, "\"True\"\n");
}

#[test]
fn a_repeated_attribute_is_multi_valued() {
    let ws = Workspace::new();
    let out = expr(
        &ws,
        &[
            "[proxyAddresses]",
            "--attr",
            "proxyAddresses=SMTP:a@x",
            "--attr",
            "proxyAddresses=smtp:b@x",
        ],
    );
    out.assert_success();
    assert_eq!(out.stdout, "SMTP:a@x\nsmtp:b@x\n");
    let out = expr(
        &ws,
        &[
            "[proxyAddresses]",
            "--json",
            "--attr",
            "proxyAddresses=SMTP:a@x",
            "--attr",
            "proxyAddresses=smtp:b@x",
        ],
    );
    assert_eq!(out.stdout, "[\"SMTP:a@x\",\"smtp:b@x\"]\n");
    let out = expr(&ws, &["[nothing]", "--json"]);
    assert_eq!(out.stdout, "null\n");
}

#[test]
fn the_documented_soft_delete_switch() {
    let ws = Workspace::new();
    let e = r#"Switch([IsSoftDeleted], , "False", "True", "True", "False")"#;
    assert_eq!(
        expr(&ws, &[e, "--attr", "IsSoftDeleted=True"]).stdout,
        "False\n"
    );
    assert_eq!(
        expr(&ws, &[e, "--attr", "IsSoftDeleted=False"]).stdout,
        "True\n"
    );
}

#[test]
fn errors_exit_1_with_the_column_or_the_reason() {
    let ws = Workspace::new();
    let out = expr(&ws, &[r#"Join(" ", [givenName]"#]);
    out.assert_code(1);
    assert!(
        out.stderr.starts_with("expression: column "),
        "{}",
        out.stderr
    );
    let out = expr(&ws, &["Frobnicate([x])"]);
    out.assert_code(1);
    assert!(out.stderr.contains("Frobnicate"), "{}", out.stderr);
    let out = expr(&ws, &[r#"CDate([d])"#, "--attr", "d=not a date"]);
    out.assert_code(1);
    assert!(out.stderr.starts_with("expression: "), "{}", out.stderr);
    assert!(out.stdout.is_empty());
}

#[test]
fn takes_a_real_source_user_by_id_or_mail() {
    let ws = Workspace::new();
    ws.write(
        "directory.json",
        r#"{"users": [{"objectId": "u1", "mail": "ada@example.org", "givenName": "Ada", "surname": "Lovelace", "accountEnabled": false}], "groups": []}"#,
    );
    ws.write(
        "scimsync.toml",
        "[source]\nkind = \"json\"\npath = \"directory.json\"\n[scope]\nall = true\n[[target]]\nname = \"t\"\nurl = \"http://127.0.0.1:9/v2\"\ntoken_env = \"T\"\n",
    );
    let out = ws.run(&[
        "--config",
        "scimsync.toml",
        "expr",
        r#"Join(" ", [givenName], [surname], [IsSoftDeleted])"#,
        "--user",
        "u1",
    ]);
    out.assert_success();
    assert_eq!(out.stdout, "Ada Lovelace True\n");
    let out = ws.run(&[
        "--config",
        "scimsync.toml",
        "expr",
        "[objectId]",
        "--user",
        "ADA@example.org",
    ]);
    assert_eq!(out.stdout, "u1\n");
    // --attr overrides the user's attribute.
    let out = ws.run(&[
        "--config",
        "scimsync.toml",
        "expr",
        "[givenName]",
        "--user",
        "u1",
        "--attr",
        "givenName=Augusta",
    ]);
    assert_eq!(out.stdout, "Augusta\n");
    let out = ws.run(&[
        "--config",
        "scimsync.toml",
        "expr",
        "[mail]",
        "--user",
        "nobody",
    ]);
    out.assert_code(1);
    assert!(out.stderr.contains("no user \"nobody\""), "{}", out.stderr);
}
