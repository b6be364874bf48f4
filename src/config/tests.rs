use super::*;
use std::path::Path;

const GOOD: &str = r#"
[state]
path = "state"

[source]
kind = "json"
path = "directory.json"

[scope]
groups = ["Bounty Hunters"]

[[target]]
name = "qlik"
url = "https://tenant.example/api/scim/v2"
token_env = "QLIK_SCIM_TOKEN"
schedule = "0 */40 * * * *"

[[target.user_mapping]]
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

[[target.group_mapping]]
target = "displayName"
source = "displayName"
matching_precedence = 1
"#;

fn problems(text: &str) -> Vec<String> {
    match crate::target::parse(Path::new("/etc/scimsync/test.toml"), text) {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        other => panic!("expected invalid configuration, got {other:?}"),
    }
}

#[test]
fn good_config_loads_with_paths_resolved_against_the_file() {
    let c = crate::target::parse(Path::new("/etc/scimsync/test.toml"), GOOD).expect("valid");
    assert_eq!(c.state.path, PathBuf::from("/etc/scimsync/state"));
    match &c.source {
        SourceConfig::Json(j) => {
            assert_eq!(j.path, PathBuf::from("/etc/scimsync/directory.json"))
        }
        SourceConfig::Ldap(_) => panic!("expected json"),
    }
    assert_eq!(c.targets.len(), 1);
    assert_eq!(c.targets[0].rate_limit, 25);
    assert_eq!(c.targets[0].deprovision, DeprovisionMode::Deactivate);
}

#[test]
fn oauth_client_credentials_replace_the_token_and_are_checked_whole() {
    let oauth = "token_url = \"https://idp.example/oauth2/token\"\nclient_id = \"scimsync\"\nclient_secret_file = \"client-secret\"\nscope = \"scim\"\n";
    let text = GOOD.replace("token_env = \"QLIK_SCIM_TOKEN\"\n", oauth);
    let c = crate::target::parse(Path::new("/etc/scimsync/test.toml"), &text).expect("valid");
    let t = &c.targets[0];
    assert_eq!(
        t.token_url.as_deref(),
        Some("https://idp.example/oauth2/token")
    );
    assert_eq!(
        t.client_secret_file.as_deref(),
        Some(Path::new("/etc/scimsync/client-secret"))
    );
    // `scope` as a string is the OAuth scope's former name: read, with a warning.
    assert_eq!(t.token_scope.as_deref(), Some("scim"));
    assert_eq!(
        c.warnings(),
        ["target[0].scope: a string here is the OAuth scope, now named token_scope (target \"qlik\"); rename the key, as [target.scope] is now the target's own assignments"]
    );
    assert_eq!(t.scope.groups, ["Bounty Hunters"], "the global scope");

    // Both ways at once, and an incomplete OAuth set: every problem named.
    let both = GOOD.replace(
        "token_env = \"QLIK_SCIM_TOKEN\"\n",
        "token_env = \"T\"\ntoken_url = \"ftp://idp\"\nclient_secret_env = \"S\"\nclient_secret_file = \"s\"\n",
    );
    let p = problems(&both);
    let has = |s: &str| p.iter().any(|p| p.contains(s));
    assert!(
        has("set either token_file/token_env (a static bearer token) or token_url"),
        "{p:?}"
    );
    assert!(has("target[0].token_url: scheme \"ftp\""), "{p:?}");
    assert!(has("target[0].client_id: missing"), "{p:?}");
    assert!(
        has("set only one of client_secret_file and client_secret_env"),
        "{p:?}"
    );

    // OAuth keys without token_url.
    let stray = GOOD.replace(
        "token_env = \"QLIK_SCIM_TOKEN\"\n",
        "token_env = \"T\"\nclient_id = \"x\"\n",
    );
    let p = problems(&stray);
    assert!(
        p.iter()
            .any(|p| p
                == "target[0].client_id: only used with token_url (OAuth 2.0 client credentials)"),
        "{p:?}"
    );
}

#[test]
fn metrics_listen_is_an_address_with_a_port() {
    let c = crate::target::parse(
        Path::new("/x.toml"),
        &format!("metrics_listen = \"127.0.0.1:9464\"\n{GOOD}"),
    )
    .expect("valid");
    assert_eq!(
        c.metrics_listen,
        Some("127.0.0.1:9464".parse().expect("addr"))
    );
    for bad in ["\"localhost:9464\"", "\"127.0.0.1\"", "9464"] {
        let p = problems(&format!("metrics_listen = {bad}\n{GOOD}"));
        assert!(
            p.len() == 1 && p[0].starts_with("metrics_listen: "),
            "{bad}: {p:?}"
        );
    }
}

#[test]
fn every_problem_is_reported_at_once_with_its_key_path() {
    let text = GOOD
        .replace(
            "schedule = \"0 */40 * * * *\"",
            "schedule = \"every day\"\ncolour = \"red\"\nrate_limt = 5\nconcurrency = \"four\"",
        )
        .replace(
            "expression = 'Switch([IsSoftDeleted], , \"False\", \"True\", \"True\", \"False\")'",
            "expression = 'Switch([IsSoftDeleted], \"False\"'",
        )
        .replace("[scope]", "[scope]\nbogus = 1\ngroup = []");
    let p = problems(&text);
    // One key-path style; unknown keys, type errors, values and mapping rules together.
    for want in [
        "scope.bogus: unknown key, expected one of `groups`, `users`, `all`",
        "scope.group: unknown key; did you mean `groups`?",
        "target[0].colour: unknown key, expected one of `name`, `url`",
        "target[0].rate_limt: unknown key; did you mean `rate_limit`?",
        "target[0].concurrency: invalid type: string \"four\", expected usize",
        "target[0].schedule: \"every day\" is not a cron expression",
        "target[0].user_mapping[2].expression: column ",
    ] {
        assert!(p.iter().any(|p| p.starts_with(want)), "{want}: {p:?}");
    }
    assert!(p.iter().all(|p| !p.contains('\n')), "{p:?}");
}

#[test]
fn exactly_one_value_kind_per_mapping() {
    let text = GOOD.replace(
        "target = \"userName\"\nsource = \"objectId\"",
        "target = \"userName\"\nsource = \"objectId\"\nconstant = \"x\"",
    );
    let p = problems(&text);
    assert!(
        p.iter()
            .any(|p| p.starts_with("target[0].user_mapping[1]: set exactly one of")),
        "{p:?}"
    );
}

#[test]
fn plain_http_to_another_host_is_warned() {
    let text = |url: &str| GOOD.replace("https://tenant.example/api/scim/v2", url);
    let warnings = |url: &str| {
        crate::target::parse(Path::new("x.toml"), &text(url))
            .expect("valid")
            .warnings()
    };
    let w = warnings("http://tenant.example/v2");
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("target[0].url: http://tenant.example/v2 is plain http to another host"),
        "{w:?}"
    );
    for local in [
        "http://127.0.0.1:8080/v2",
        "http://localhost/v2",
        "http://[::1]:1/v2",
        "https://tenant.example/v2",
    ] {
        assert!(warnings(local).is_empty(), "{local}");
    }
}

#[test]
fn missing_token_and_bad_url_and_duplicate_names() {
    let text = GOOD.replace("token_env = \"QLIK_SCIM_TOKEN\"\n", "")
        + "\n[[target]]\nname = \"qlik\"\nurl = \"ftp://x\"\ntoken_env = \"X\"\n";
    let p = problems(&text);
    assert!(
        p.iter().any(|p| p.contains("set token_file or token_env")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p.contains("scheme \"ftp\" is not http or https")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p.starts_with("target[1].name: \"qlik\" is used by an earlier target")),
        "{p:?}"
    );
}

#[test]
fn syntax_error_names_line_and_column() {
    match crate::target::parse(Path::new("x.toml"), "[state\npath = 1") {
        Err(ConfigError::Syntax { message, .. }) => {
            assert!(message.contains("line 1"), "{message}")
        }
        other => panic!("expected syntax error, got {other:?}"),
    }
}

#[test]
fn unknown_source_kind_and_unknown_source_key() {
    let p = problems(&GOOD.replace("kind = \"json\"", "kind = \"csv\""));
    assert!(
        p.iter()
            .any(|p| p.starts_with("source.kind: unknown kind \"csv\"")),
        "{p:?}"
    );
    let p = problems(&GOOD.replace(
        "path = \"directory.json\"",
        "path = \"d.json\"\nfile = \"x\"",
    ));
    assert!(
        p.iter()
            .any(|p| p == "source.file: unknown key, expected one of `path`"),
        "{p:?}"
    );
}

#[test]
fn missing_mappings_fall_back_to_entra_defaults() {
    let text = "[source]\nkind = \"json\"\npath = \"d.json\"\n[scope]\nall = true\n[[target]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/v2\"\ntoken_env = \"T\"\n";
    let c = crate::target::parse(Path::new("x.toml"), text).expect("valid");
    assert_eq!(c.targets[0].user_mapping.len(), 5);
    let t = crate::target::Target::build(&c.targets[0]).expect("builds");
    assert_eq!(t.mappings.user_matching().len(), 2);
}

fn ldap(source: &str) -> String {
    GOOD.replace(
        "kind = \"json\"\npath = \"directory.json\"",
        &format!("kind = \"ldap\"\n{source}"),
    )
}

#[test]
fn ldap_source_with_defaults() {
    let text = ldap(
        "url = \"ldaps://ldap.example.org\"\nbase_dn = \"dc=example,dc=org\"\nbind_dn = \"cn=svc,dc=example,dc=org\"\nbind_password_file = \"ldap.pw\"\n[source.attributes]\nobjectId = \"objectGUID\"\nmember = \"member;range=0-*\"",
    );
    let c = crate::target::parse(Path::new("/etc/scimsync/test.toml"), &text).expect("valid");
    let SourceConfig::Ldap(l) = &c.source else {
        panic!("expected ldap")
    };
    assert_eq!(l.page_size(), 500);
    assert_eq!(l.user_filter(), "(objectClass=inetOrgPerson)");
    assert_eq!(l.groups_base_dn(), "dc=example,dc=org");
    assert_eq!(
        l.bind_password_file.as_deref(),
        Some(Path::new("/etc/scimsync/ldap.pw"))
    );
}

#[test]
fn ldap_source_problems_are_all_reported() {
    let p = problems(&ldap(
        "url = \"ldaps://h\"\nstarttls = true\nbase_dn = \"dc=x\"\nbind_dn = \"cn=svc\"\npage_size = 0\nuser_filter = \"(objectClass=person\"\n[source.attributes]\nobjectId = \"\"\nmail = \"e mail\"",
    ));
    for want in [
        "source.starttls: ldaps:// is TLS from the first byte",
        "source: bind_dn is set: set bind_password_file or bind_password_env",
        "source.page_size: must be at least 1",
        "source.user_filter: \"(objectClass=person\" is not a valid LDAP filter",
        "source.attributes.objectId: must name the attribute",
        "source.attributes.mail: \"e mail\" is not an LDAP attribute name",
    ] {
        assert!(p.iter().any(|p| p.starts_with(want)), "{want}: {p:?}");
    }
    let p = problems(&ldap(
        "url = \"https://h\"\nbase_dn = \"dc=x\"\nbind_dn = \"cn=svc\"\nbind_password_file = \"a\"\nbind_password_env = \"B\"",
    ));
    assert!(
        p.iter()
            .any(|p| p == "source.url: scheme \"https\" is not ldap or ldaps"),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p.starts_with("source: set only one of bind_password_file")),
        "{p:?}"
    );
    let p = problems(&ldap(
        "url = \"ldap://h\"\nbase_dn = \"dc=x\"\nbind_password_env = \"B\"",
    ));
    assert!(
        p.iter()
            .any(|p| p.starts_with("source: a bind password is set without bind_dn")),
        "{p:?}"
    );
}

#[test]
fn the_example_configuration_is_valid() {
    let text = include_str!("../../config/scimsync.example.toml");
    let c = crate::target::parse(Path::new("/etc/scimsync/scimsync.toml"), text)
        .expect("the example is valid");
    assert_eq!(c.targets[0].user_mapping.len(), 6);
    assert_eq!(c.scope.groups, ["Bounty Hunters", "Rebel Alliance"]);
}

#[test]
fn fault_keys_have_defaults_and_are_checked() {
    let c = crate::target::parse(Path::new("/etc/scimsync/test.toml"), GOOD).expect("valid");
    let t = &c.targets[0];
    assert_eq!(t.burst(), 25);
    assert_eq!(
        (
            t.connect_timeout_seconds,
            t.retry_max_seconds,
            t.quarantine_min_operations
        ),
        (10, 60, 10)
    );
    assert_eq!(t.quarantine_failure_ratio, 0.5);
    assert_eq!(t.deletion_threshold_percent, 100.0);
    assert_eq!(c.min_source_ratio, 0.5);
    let text = GOOD
        .replace("kind = \"json\"", "kind = \"json\"\nmin_source_ratio = 2")
        .replace(
            "schedule = \"0 */40 * * * *\"",
            "schedule = \"0 */40 * * * *\"\nburst = 0\nquarantine_failure_ratio = 0\ndeletion_threshold_percent = 150",
        );
    let p = problems(&text);
    for want in [
        "source.min_source_ratio: 2 is not a number between 0 and 1",
        "target[0].burst: must be at least 1",
        "target[0].quarantine_failure_ratio: must be above 0",
        "target[0].deletion_threshold_percent: must be between 0 and 100",
    ] {
        assert!(p.iter().any(|p| p.starts_with(want)), "{want}: {p:?}");
    }
    let c = crate::target::parse(
        Path::new("x.toml"),
        &GOOD.replace(
            "kind = \"json\"",
            "kind = \"json\"\nmin_source_ratio = 0.25",
        ),
    )
    .expect("valid");
    assert_eq!(c.min_source_ratio, 0.25);
}

#[test]
fn log_retention_has_defaults_and_rejects_zero() {
    let c = crate::target::parse(Path::new("x.toml"), GOOD).expect("valid");
    assert_eq!(
        (c.state.log_retention_days, c.state.log_max_records),
        (30, 100_000)
    );
    assert_eq!(
        crate::state::Retention::of(&c.state).max_age,
        chrono::Duration::days(30)
    );
    let set = GOOD.replace(
        "path = \"state\"",
        "path = \"state\"\nlog_retention_days = 7\nlog_max_records = 500",
    );
    let c = crate::target::parse(Path::new("x.toml"), &set).expect("valid");
    assert_eq!(
        (c.state.log_retention_days, c.state.log_max_records),
        (7, 500)
    );
    let bad = GOOD.replace(
        "path = \"state\"",
        "path = \"state\"\nlog_retention_days = 0\nlog_max_records = 0",
    );
    let p = problems(&bad);
    for want in [
        "state.log_retention_days: 0 is not a number of days between 1 and 36500",
        "state.log_max_records: 0 would keep no provisioning log",
    ] {
        assert!(p.iter().any(|p| p.starts_with(want)), "{want}: {p:?}");
    }
    let negative = GOOD.replace("path = \"state\"", "path = \"state\"\nlog_max_records = -1");
    let p = problems(&negative);
    assert!(
        p.iter()
            .any(|p| p.starts_with("state.log_max_records: ") && p.contains("-1")),
        "{p:?}"
    );
}

#[test]
fn a_target_scope_replaces_the_global_one_for_that_target_only() {
    let two = format!(
        "{GOOD}\n[target.scope]\ngroups = [\"Engineering\"]\n\
         [[target.scope.filter]]\nclauses = [{{ attribute = \"country\", operator = \"EQUALS\", value = \"FR\" }}]\n\
         [[target]]\nname = \"github\"\nurl = \"https://github.example/scim/v2\"\ntoken_env = \"GH\"\n"
    );
    let c = crate::target::parse(Path::new("/etc/scimsync/test.toml"), &two).expect("valid");
    let (qlik, github) = (&c.targets[0], &c.targets[1]);
    assert!(qlik.own_scope && !github.own_scope);
    assert_eq!(qlik.scope.groups, ["Engineering"]);
    assert_eq!(
        qlik.scope.filter[0].clauses[0].to_string(),
        "country EQUALS \"FR\""
    );
    assert_eq!(github.scope.groups, ["Bounty Hunters"]);
    assert!(github.scope.filter.is_empty());
    assert!(c.warnings().is_empty());
}

#[test]
fn without_a_global_scope_every_target_needs_its_own() {
    let no_global = GOOD.replace("[scope]\ngroups = [\"Bounty Hunters\"]\n", "");
    assert_eq!(
        problems(&no_global),
        ["scope: missing: target[0] (\"qlik\") has no [target.scope], so set [scope] (groups, users or all = true) or give it one"]
    );
    let own = format!("{no_global}\n[target.scope]\nall = true\n");
    let c = crate::target::parse(Path::new("/etc/scimsync/test.toml"), &own).expect("valid");
    assert!(c.targets[0].scope.all);
}

#[test]
fn target_scope_problems_carry_their_key_path() {
    let good = GOOD.replace(
        "token_env = \"QLIK_SCIM_TOKEN\"\n",
        "token_env = \"QLIK_SCIM_TOKEN\"\ntoken_scope = \"scim\"\n",
    );
    let bad = format!(
        "{good}\n[target.scope]\ngroup = [\"x\"]\n\
         [[target.scope.filter]]\nclauses = [{{ attribute = \"title\", operator = \"LIKE\", value = \"x\" }}]\n"
    );
    let p = problems(&bad);
    assert_eq!(
        p,
        [
            "target[0].scope.group: unknown key; did you mean `groups`?",
            "target[0].scope.filter[0].clauses[0].operator: \"LIKE\" is not an operator; expected one of `EQUALS`, `NOT EQUALS`, `IS TRUE`, `IS FALSE`, `IS NULL`, `IS NOT NULL`, `REGEX MATCH`, `NOT REGEX MATCH`, `Greater_Than`, `Greater_Than_OR_EQUALS`, `Includes`, `ENDS_WITH`, `&`, `!&`",
            "target[0].scope: nothing is assigned: set target[0].scope.groups, target[0].scope.users or target[0].scope.all = true",
            "target[0].token_scope: only used with token_url (OAuth 2.0 client credentials)",
        ]
    );
    let twice = GOOD.replace(
        "token_env = \"QLIK_SCIM_TOKEN\"\n",
        "token_env = \"QLIK_SCIM_TOKEN\"\nscope = 3\n",
    );
    assert_eq!(
        problems(&twice),
        ["target[0].scope: must be a table ([target.scope]), not integer"]
    );
}

#[test]
fn a_postgres_state_needs_a_local_url_without_a_password() {
    let with = |state: &str| {
        GOOD.replace(
            "[state]\npath = \"state\"\n",
            &format!("[state]\npath = \"state\"\n{state}"),
        )
    };
    let c = crate::target::parse(
        Path::new("/etc/scimsync/test.toml"),
        &with("backend = \"postgres\"\nurl = \"postgres://scimsync@127.0.0.1:5432/scimsync\"\npassword_file = \"pg.password\"\n"),
    )
    .expect("valid");
    assert_eq!(c.state.backend, StateBackend::Postgres);
    assert_eq!(
        c.state.password_file.as_deref(),
        Some(Path::new("/etc/scimsync/pg.password"))
    );
    assert_eq!(
        problems(&with("backend = \"postgres\"\n")),
        ["state.url: missing: backend = \"postgres\" needs url = \"postgres://user@host:port/database\""]
    );
    assert_eq!(
        problems(&with(
            "backend = \"postgres\"\nurl = \"postgres://u:secret@127.0.0.1/db\"\n"
        )),
        ["state.url: holds a password: give it in password_file or password_env"]
    );
    let remote = problems(&with(
        "backend = \"postgres\"\nurl = \"postgres://u@db.example.com/db\"\n",
    ));
    assert!(
        remote[0].starts_with("state.url: names another host without ca_file"),
        "{remote:?}"
    );
    assert_eq!(
        problems(&with("url = \"postgres://u@127.0.0.1/db\"\n")),
        ["state.url: only used with backend = \"postgres\""]
    );
}

#[test]
fn a_postgres_state_on_another_host_needs_ca_file_and_tls_all_the_way() {
    let with = |state: &str| {
        GOOD.replace(
            "[state]\npath = \"state\"\n",
            &format!("[state]\npath = \"state\"\n{state}"),
        )
    };
    let remote =
        "backend = \"postgres\"\nurl = \"postgres://scimsync@db.example.com:5432/scimsync\"\n";

    // With ca_file another host is fine, and the file is found next to the configuration.
    let c = crate::target::parse(
        Path::new("/etc/scimsync/test.toml"),
        &with(&format!("{remote}ca_file = \"pg-ca.pem\"\n")),
    )
    .expect("valid");
    assert_eq!(
        c.state.ca_file.as_deref(),
        Some(Path::new("/etc/scimsync/pg-ca.pem"))
    );

    // Without it the host is refused, and the message says what to set.
    let p = problems(&with(remote));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("state.url: names another host without ca_file")
            && p[0].contains("set ca_file"),
        "{p:?}"
    );

    // TLS cannot be turned off under ca_file, nor asked for without it.
    assert_eq!(
        problems(&with(
            "backend = \"postgres\"\nurl = \"postgres://u@db.example.com/db?sslmode=disable\"\nca_file = \"ca.pem\"\n"
        )),
        ["state.url: sslmode=disable turns TLS off, but ca_file asks for it: with ca_file the connection is always TLS; remove sslmode=disable"]
    );
    assert_eq!(
        problems(&with(
            "backend = \"postgres\"\nurl = \"postgres://u@127.0.0.1/db?sslmode=require\"\n"
        )),
        ["state.url: sslmode=require needs ca_file (the CA that signs the server's certificate), which scimsync verifies the server against"]
    );
    // PostgreSQL speaks no TLS over a Unix socket.
    assert_eq!(
        problems(&with(
            "backend = \"postgres\"\nurl = \"postgres://u@%2Frun%2Fpostgresql/db\"\nca_file = \"ca.pem\"\n"
        )),
        ["state.ca_file: PostgreSQL speaks no TLS over a Unix socket (/run/postgresql): name the server's host in url, or remove ca_file"]
    );

    // ca_file belongs to the PostgreSQL state only.
    assert_eq!(
        problems(&with("ca_file = \"ca.pem\"\n")),
        ["state.ca_file: only used with backend = \"postgres\""]
    );
}
