//! The LDAP source against a real OpenLDAP `slapd`: a directory larger than the server's size
//! limit, read page by page through a limited service account, provisioned into a real
//! scim2-server by the real binary; and the reads that must stop a cycle before any write.

mod common;

use common::env::ENTERPRISE;
use common::{RecordingProxy, RunOutput, ScimServer, Slapd, Workspace};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

const PEOPLE: &str = "ou=People,dc=example,dc=org";
const GROUPS: &str = "ou=Groups,dc=example,dc=org";

fn uid(i: usize) -> String {
    format!("u{i:04}")
}

fn user_dn(i: usize) -> String {
    format!("uid={},{PEOPLE}", uid(i))
}

/// `count` inetOrgPerson users `u0001`…; `u0005` carries `description: disabled`.
fn users_ldif(count: usize) -> String {
    let mut out = String::new();
    for i in 1..=count {
        let _ = write!(
            out,
            "dn: {dn}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: First{i} Last{i}\ngivenName: First{i}\nsn: Last{i}\nmail: {uid}@example.org\n{extra}\n",
            dn = user_dn(i),
            uid = uid(i),
            extra = if i == 5 { "description: disabled\n" } else { "" },
        );
    }
    out
}

fn group_ldif(cn: &str, class: &str, attr: &str, members: &[String]) -> String {
    let mut out = format!("dn: cn={cn},{GROUPS}\nobjectClass: {class}\ncn: {cn}\n");
    if class == "posixGroup" {
        out.push_str("gidNumber: 5000\n");
    }
    for m in members {
        let _ = writeln!(out, "{attr}: {m}");
    }
    out.push('\n');
    out
}

/// 2,000 users and five groups:
/// - Engineering (groupOfNames): u0001–u0600, more than the 500-entry limit, plus the nested
///   group Contractors;
/// - Contractors (groupOfNames, not assigned): u1901–u1950, provisioned through nobody;
/// - Operations (groupOfUniqueNames): u0601–u0621, one DN spelled in another case and spacing;
/// - posix-admins (posixGroup): memberUid u0700–u0709 and a name that is nobody;
/// - Everyone (groupOfNames, not assigned): all 2,000.
fn big_directory() -> String {
    let dns = |r: std::ops::RangeInclusive<usize>| r.map(user_dn).collect::<Vec<_>>();
    let mut engineering = dns(1..=600);
    engineering.push(format!("cn=Contractors,{GROUPS}"));
    let mut operations = dns(601..=620);
    operations.push("UID=U0621, OU=people, DC=Example, DC=Org".to_owned());
    let mut posix: Vec<String> = (700..=709).map(uid).collect();
    posix.push("nobody".to_owned());
    let mut ldif = users_ldif(2000);
    ldif += &group_ldif("Engineering", "groupOfNames", "member", &engineering);
    ldif += &group_ldif("Contractors", "groupOfNames", "member", &dns(1901..=1950));
    ldif += &group_ldif(
        "Operations",
        "groupOfUniqueNames",
        "uniqueMember",
        &operations,
    );
    ldif += &group_ldif("posix-admins", "posixGroup", "memberUid", &posix);
    ldif += &group_ldif("Everyone", "groupOfNames", "member", &dns(1..=2000));
    ldif
}

/// A small directory: ten users, one group of all of them.
fn small_directory() -> String {
    users_ldif(10)
        + &group_ldif(
            "Staff",
            "groupOfNames",
            "member",
            &(1..=10).map(user_dn).collect::<Vec<_>>(),
        )
}

struct Env {
    slapd: Slapd,
    server: ScimServer,
    proxy: RecordingProxy,
    ws: Workspace,
}

impl Env {
    fn start(ldif: &str, scope: &str) -> Env {
        common::ensure_peers();
        let slapd = Slapd::start(ldif);
        let server = ScimServer::start();
        let proxy = RecordingProxy::start(&server.url);
        let ws = Workspace::new();
        ws.write("token", &server.token);
        ws.write("ldap-password", format!("{}\n", slapd.service_password));
        ws.write(
            "scimsync.toml",
            format!(
                r#"[state]
path = "state"

[source]
kind = "ldap"
url = "{ldap}"
bind_dn = "{service}"
bind_password_file = "ldap-password"
base_dn = "dc=example,dc=org"
users_base_dn = "{PEOPLE}"

[source.attributes]
description = "description"

[scope]
{scope}

[[target]]
name = "app"
url = "{scim}"
token_file = "token"
rate_limit = 1000
concurrency = 8

[[target.user_mapping]]
target = "userName"
source = "mailNickname"
matching_precedence = 1

[[target.user_mapping]]
target = 'emails[type eq "work"].value'
source = "mail"

[[target.user_mapping]]
target = "name.formatted"
expression = 'Join(" ", [givenName], [surname])'

[[target.user_mapping]]
target = "displayName"
source = "displayName"

[[target.user_mapping]]
target = "externalId"
source = "objectId"

[[target.user_mapping]]
target = "active"
expression = 'Switch([description], "True", "disabled", "False")'
"#,
                ldap = slapd.url,
                service = common::SERVICE_DN,
                scim = proxy.url,
            ),
        );
        Env {
            slapd,
            server,
            proxy,
            ws,
        }
    }

    fn scimsync(&self, args: &[&str]) -> RunOutput {
        let mut all = vec!["--config", "scimsync.toml"];
        all.extend_from_slice(args);
        self.ws.run(&all)
    }

    /// The target's users by userName; panics on a duplicate userName.
    fn users(&self) -> BTreeMap<String, Value> {
        common::env::target_users(&self.server)
    }

    /// The entryUUID slapd gave a user.
    fn entry_uuid(&self, i: usize) -> String {
        let out = self
            .slapd
            .search_as_service(&["-b", &user_dn(i), "-s", "base", "entryUUID"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("entryUUID: "))
            .expect("entryUUID")
            .to_owned()
    }
}

fn lines_starting(out: &std::process::Output, prefix: &str) -> usize {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .count()
}

#[test]
fn a_directory_larger_than_the_size_limit_is_read_page_by_page_and_provisioned_exactly() {
    let env = Env::start(
        &big_directory(),
        r#"groups = ["Engineering", "Operations", "cn=posix-admins,ou=groups,dc=example,dc=org"]"#,
    );

    // The server really limits the service account: an unpaged search stops at 500 entries
    // (sizeLimitExceeded, exit 4), a paged one gets all 2,000.
    let unpaged = env
        .slapd
        .search_as_service(&["-b", PEOPLE, "(objectClass=inetOrgPerson)", "dn"]);
    assert_eq!(unpaged.status.code(), Some(4), "{unpaged:?}");
    assert_eq!(lines_starting(&unpaged, "dn: "), 500);
    let paged = env.slapd.search_as_service(&[
        "-E",
        "pr=500/noprompt",
        "-b",
        PEOPLE,
        "(objectClass=inetOrgPerson)",
        "dn",
    ]);
    assert!(paged.status.success(), "{paged:?}");
    assert_eq!(lines_starting(&paged, "dn: "), 2000);

    let out = env.scimsync(&["sync"]);
    out.assert_success();
    assert!(
        out.stdout.contains(
            "users created 631, updated 0, deprovisioned 0, unchanged 0, skipped 0, failed 0"
        ),
        "{out}"
    );
    assert!(out.stdout.contains("groups created 3,"), "{out}");

    let users = env.users();
    assert_eq!(
        users.len(),
        600 + 21 + 10,
        "direct members of the three assigned groups"
    );
    let u1 = &users["u0001"];
    assert_eq!(u1["name"]["formatted"], "First1 Last1");
    assert_eq!(u1["displayName"], "First1 Last1");
    assert_eq!(u1["emails"][0]["value"], "u0001@example.org");
    assert_eq!(
        u1["externalId"],
        env.entry_uuid(1).as_str(),
        "objectId is entryUUID"
    );
    assert_eq!(u1["active"], true);
    assert_eq!(
        users["u0005"]["active"], false,
        "the disabled user is provisioned inactive"
    );
    assert_eq!(
        users["u0621"]["emails"][0]["value"], "u0621@example.org",
        "a member DN in another spelling resolves"
    );
    assert!(users.contains_key("u0709"), "memberUid resolves");
    for absent in ["u1901", "u1950", "u0622", "u0800", "u2000"] {
        assert!(
            !users.contains_key(absent),
            "{absent} is in no assigned group (Contractors is only nested)"
        );
    }

    let groups: BTreeMap<String, Value> = env
        .server
        .list_groups()
        .into_iter()
        .map(|g| {
            (
                g["displayName"].as_str().expect("displayName").to_owned(),
                g,
            )
        })
        .collect();
    assert_eq!(
        groups.keys().collect::<Vec<_>>(),
        ["Engineering", "Operations", "posix-admins"]
    );
    let count = |g: &str| groups[g]["members"].as_array().map_or(0, Vec::len);
    assert_eq!(
        count("Engineering"),
        600,
        "all 600 members, the nested group not among them"
    );
    assert_eq!(count("Operations"), 21);
    assert_eq!(count("posix-admins"), 10);

    // A second cycle reads the same directory and sends nothing.
    env.proxy.clear();
    let out = env.scimsync(&["sync"]);
    out.assert_success();
    assert_eq!(env.proxy.calls(), Vec::<String>::new(), "{out}");
}

#[test]
fn a_wrong_bind_password_stops_the_cycle_before_any_write() {
    let env = Env::start(&small_directory(), r#"groups = ["Staff"]"#);
    let wrong = "not-the-password-7f3a";
    env.ws.write("ldap-password", format!("{wrong}\n"));
    let out = env.scimsync(&["sync"]);
    out.assert_code(2);
    assert!(
        out.stderr.contains(&format!(
            "bind as \"{}\" failed: invalidCredentials (49)",
            common::SERVICE_DN
        )),
        "{out}"
    );
    assert!(out.stderr.contains("no target was changed"), "{out}");
    assert!(
        !out.stdout.contains(wrong) && !out.stderr.contains(wrong),
        "the password leaked: {out}"
    );
    assert!(!out.stderr.contains(&env.slapd.service_password), "{out}");
    assert_eq!(env.proxy.calls(), Vec::<String>::new());
    assert!(env.server.list_users().is_empty());
}

#[test]
fn a_stopped_server_stops_the_cycle_and_deprovisions_nobody() {
    let mut env = Env::start(&small_directory(), r#"groups = ["Staff"]"#);
    env.scimsync(&["sync"]).assert_success();
    let before = env.users();
    assert_eq!(before.len(), 10);

    env.slapd.stop();
    env.proxy.clear();
    let out = env.scimsync(&["sync"]);
    out.assert_code(2);
    assert!(
        out.stderr
            .contains("the LDAP server is unreachable: cannot connect to 127.0.0.1:"),
        "{out}"
    );
    assert_eq!(env.proxy.calls(), Vec::<String>::new(), "no call at all");
    assert_eq!(env.users(), before, "nobody was deactivated or changed");
}

#[test]
fn a_member_removed_in_ldap_leaves_the_group_and_is_deactivated() {
    let env = Env::start(&small_directory(), r#"groups = ["Staff"]"#);
    env.scimsync(&["sync"]).assert_success();
    env.slapd.modify(&format!(
        "dn: cn=Staff,{GROUPS}\nchangetype: modify\ndelete: member\nmember: {}\n",
        user_dn(3)
    ));
    let out = env.scimsync(&["sync"]);
    out.assert_success();
    assert!(
        out.stdout
            .contains("users created 0, updated 0, deprovisioned 1, unchanged 9"),
        "{out}"
    );
    assert_eq!(env.users()["u0003"]["active"], false);
}

#[test]
fn expr_reads_one_user_from_slapd_by_uid_mail_or_entry_uuid() {
    let env = Env::start(&small_directory(), r#"groups = ["Staff"]"#);
    let uuid = env.entry_uuid(7);
    let upper = uuid.to_uppercase();
    let braced = format!("{{{upper}}}");
    for key in ["u0007", "U0007@example.org", &uuid, &upper, &braced] {
        let out = env.scimsync(&[
            "expr",
            r#"Join("|", [displayName], [objectId], [dn])"#,
            "--user",
            key,
        ]);
        out.assert_success();
        assert_eq!(
            out.stdout,
            format!("First7 Last7|{uuid}|{}\n", user_dn(7)),
            "--user {key}"
        );
    }
    // The key is escaped: a filter metacharacter matches nobody rather than everybody.
    let out = env.scimsync(&["expr", "[mail]", "--user", "*"]);
    out.assert_code(1);
    assert!(out.stderr.contains("--user: no user \"*\""), "{out}");
}

/// The ten users of [`small_directory`], with `manager` DNs: u0002 and u0003 (another spelling)
/// are managed by u0001; u0004 by an entry outside the users' base, u0006 by a DN that names
/// nothing, u0007 by an entry under the base that the user filter leaves out.
fn managed_directory() -> String {
    small_directory()
        + &format!(
            "dn: cn=Front Desk,{PEOPLE}\nobjectClass: organizationalRole\ncn: Front Desk\n\n"
        )
}

fn add_managers(slapd: &Slapd) {
    let managers = [
        (2, user_dn(1)),
        (3, "UID=U0001, OU=people, DC=Example, DC=Org".to_owned()),
        (4, common::SERVICE_DN.to_owned()),
        (6, format!("uid=gone,{PEOPLE}")),
        (7, format!("cn=Front Desk,{PEOPLE}")),
    ];
    let mut ldif = String::new();
    for (i, manager) in managers {
        let _ = write!(
            ldif,
            "dn: {}\nchangetype: modify\nadd: manager\nmanager: {manager}\n\n",
            user_dn(i)
        );
    }
    slapd.modify(&ldif);
}

#[test]
fn manager_dns_read_as_the_object_ids_of_users_the_source_reads() {
    let env = Env::start(&managed_directory(), r#"groups = ["Staff"]"#);
    add_managers(&env.slapd);
    let boss = env.entry_uuid(1);

    // One user looked up: its manager DN is looked up too.
    let manager_of = |i: usize| {
        let out = env.scimsync(&["expr", r#"Coalesce([manager], "none")"#, "--user", &uid(i)]);
        out.assert_success();
        out.stdout.trim_end().to_owned()
    };
    assert_eq!(manager_of(2), boss);
    assert_eq!(manager_of(3), boss, "a DN in another spelling");
    for i in [1, 4, 6, 7] {
        assert_eq!(manager_of(i), "none", "u{i:04}");
    }

    // The whole directory read by a cycle: the same managers reach the target, as the
    // objectId (nickName, a plain string) and as the SCIM reference to the boss's account
    // (the enterprise manager).
    let mut config = env.ws.read("scimsync.toml");
    config.push_str(
        "\n[[target.user_mapping]]\ntarget = \"nickName\"\nsource = \"manager\"\n\
         \n[[target.user_mapping]]\n\
         target = \"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager\"\n\
         source = \"manager\"\n",
    );
    env.ws.write("scimsync.toml", config);
    env.scimsync(&["sync"]).assert_success();
    let users = env.users();
    assert_eq!(users.len(), 10);
    let nick = |i: usize| users[&uid(i)].get("nickName").cloned();
    let reference = |i: usize| users[&uid(i)][ENTERPRISE]["manager"]["value"].clone();
    let boss_account = users[&uid(1)]["id"].clone();
    assert!(boss_account.is_string());
    assert_eq!(nick(2), Some(Value::String(boss.clone())));
    assert_eq!(nick(3), Some(Value::String(boss)));
    assert_eq!(reference(2), boss_account);
    assert_eq!(reference(3), boss_account);
    for i in [1, 4, 6, 7] {
        assert_eq!(nick(i), None, "u{i:04} has no manager");
        assert_eq!(reference(i), Value::Null, "u{i:04} has no manager");
    }
    // And nothing to send the next time.
    env.proxy.clear();
    env.scimsync(&["sync"]).assert_success();
    assert_eq!(env.proxy.count(), 0, "{:?}", env.proxy.calls());
}

/// A configuration for `scimsync expr --user` against `url`, with extra source keys.
fn expr_config(ws: &Workspace, slapd: &Slapd, url: &str, extra: &str) {
    ws.write("ldap-password", &slapd.service_password);
    ws.write(
        "scimsync.toml",
        format!(
            r#"[source]
kind = "ldap"
url = "{url}"
bind_dn = "{service}"
bind_password_file = "ldap-password"
base_dn = "dc=example,dc=org"
{extra}

[scope]
all = true

[[target]]
name = "unused"
url = "http://127.0.0.1:9/v2"
token_env = "UNUSED"
"#,
            service = common::SERVICE_DN,
        ),
    );
}

#[test]
fn tls_and_starttls_verify_the_server_certificate() {
    common::ensure_peers();
    let slapd = Slapd::start_tls(&small_directory());
    let ca = slapd.ca_file.clone().expect("a CA");
    let ldaps = slapd.ldaps_url.clone().expect("an ldaps URL");
    let ws = Workspace::new();
    let lookup = |ws: &Workspace| {
        ws.run(&[
            "--config",
            "scimsync.toml",
            "expr",
            "[mail]",
            "--user",
            "u0002",
        ])
    };
    let ca_line = format!("ca_file = \"{}\"", ca.display());

    for (url, extra) in [
        (slapd.url.as_str(), format!("starttls = true\n{ca_line}")),
        (ldaps.as_str(), ca_line.clone()),
    ] {
        expr_config(&ws, &slapd, url, &extra);
        let out = lookup(&ws);
        out.assert_success();
        assert_eq!(out.stdout, "u0002@example.org\n", "{url} {extra}");
        assert!(!out.stderr.contains("tls_insecure"), "{out}");
    }

    // Without the CA the certificate is not trusted: the read fails and says why.
    for (url, extra) in [
        (slapd.url.as_str(), "starttls = true"),
        (ldaps.as_str(), ""),
    ] {
        expr_config(&ws, &slapd, url, extra);
        let out = lookup(&ws);
        out.assert_code(2);
        assert!(
            out.stderr.contains(
                "TLS handshake with 127.0.0.1 failed: invalid peer certificate: UnknownIssuer"
            ),
            "{url}: {out}"
        );
    }

    // tls_insecure = true reads anyway, and warns.
    expr_config(&ws, &slapd, &ldaps, "tls_insecure = true");
    let out = lookup(&ws);
    out.assert_success();
    assert!(
        out.stderr
            .contains("TLS certificate verification is off (tls_insecure = true)"),
        "{out}"
    );
}

#[test]
fn a_search_the_server_refuses_stops_the_cycle_before_any_write() {
    let env = Env::start(&small_directory(), r#"groups = ["Staff"]"#);
    // Pages larger than the account's limit (size.pr=500) are refused outright.
    let config = env.ws.read("scimsync.toml").replacen(
        "base_dn = \"dc=example,dc=org\"",
        "base_dn = \"dc=example,dc=org\"\npage_size = 1000",
        1,
    );
    env.ws.write("scimsync.toml", config);
    let out = env.scimsync(&["sync"]);
    out.assert_code(2);
    assert!(
        out.stderr.contains(&format!(
            "reading users under \"{PEOPLE}\" ended early after 0 entries: adminLimitExceeded (11)"
        )),
        "{out}"
    );
    assert_eq!(env.proxy.calls(), Vec::<String>::new());
}
