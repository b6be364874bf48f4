//! The PostgreSQL state over TLS (`[state] ca_file`), on a private PostgreSQL server that takes
//! TCP over TLS only and a real scim2-server: a sync keeps its state there, verified against
//! the CA in ca_file; a certificate from another CA, or for another host name, is refused
//! with the reason and without the password.

mod common;

use common::env::{group, three_users, Env};

fn staff() -> serde_json::Value {
    group("g1", "Staff", &["u-ada", "u-bob", "u-cy"])
}

/// Replaces the `[state]` line that starts with `key =` by `line`.
fn set_state_line(env: &Env, key: &str, line: &str) {
    let config = env.ws.read("scimsync.toml");
    let at = config
        .find(&format!("\n{key} = "))
        .unwrap_or_else(|| panic!("no {key} in {config}"))
        + 1;
    let end = at + config[at..].find('\n').expect("end of line");
    env.ws.write(
        "scimsync.toml",
        format!("{}{line}{}", &config[..at], &config[end..]),
    );
}

#[test]
fn a_sync_keeps_its_state_in_postgres_over_tls_verified_against_ca_file() {
    let mut env = Env::start(r#"groups = ["Staff"]"#, "");
    env.use_postgres_tls();
    env.directory(&three_users(), &[staff()]);
    let out = env.sync(&[]);
    out.assert_success();
    assert_eq!(env.users().len(), 3, "{out}");
    let pg = env.pg.as_ref().expect("postgres");
    assert_eq!(
        pg.query(
            "state_1",
            "SELECT COUNT(*) FROM scimsync_kv WHERE tree = 'users/app'"
        ),
        "3"
    );
    // The second cycle reads that state back: nothing to do.
    env.sync(&[]).assert_success();
    assert_eq!(env.proxy.count(), 0, "{:?}", env.proxy.calls());

    // The server takes nothing else over TCP, so the cycles above went over TLS: without
    // ca_file (in clear, to this host) the same server refuses scimsync.
    let config = env.ws.read("scimsync.toml");
    env.ws.write(
        "scimsync.toml",
        config.replace("ca_file = \"pg-ca.pem\"\n", ""),
    );
    let out = env.sync(&[]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("cannot connect") && out.stderr.contains("no encryption"),
        "{out}"
    );
}

#[test]
fn a_server_certificate_from_another_ca_or_for_another_host_is_refused() {
    let mut env = Env::start(r#"groups = ["Staff"]"#, "");
    env.use_postgres_tls();
    env.directory(&three_users(), &[staff()]);
    let pg = env.pg.as_ref().expect("postgres");
    let password = pg.password.clone();
    let port = pg.port;

    // A CA that signed nothing of the server's.
    let ours = env.ws.read("pg-ca.pem");
    env.ws.write("pg-ca.pem", common::unrelated_ca_pem());
    let out = env.sync(&[]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("invalid peer certificate")
            && out.stderr.contains("UnknownIssuer")
            && out.stderr.contains("signed by a CA in ca_file"),
        "{out}"
    );
    assert!(!out.to_string().contains(&password), "{out}");

    // The right CA, but the URL names a host the certificate is not for (the connection
    // still goes to 127.0.0.1, through hostaddr).
    env.ws.write("pg-ca.pem", ours);
    set_state_line(
        &env,
        "url",
        &format!(
            "url = \"postgres://{}@db.example.net:{port}/state_1?hostaddr=127.0.0.1\"",
            common::POSTGRES_USER
        ),
    );
    let out = env.sync(&[]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("invalid peer certificate") && out.stderr.contains("db.example.net"),
        "{out}"
    );
    assert!(!out.to_string().contains(&password), "{out}");

    // A ca_file with no certificate in it is named.
    env.ws.write("pg-ca.pem", "not a certificate\n");
    let out = env.sync(&[]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("pg-ca.pem: holds no PEM certificate"),
        "{out}"
    );
    assert_eq!(
        env.users().len(),
        0,
        "nothing was provisioned without a state"
    );
}
