//! `scimsync state export` / `state import`: a state moved to another directory carries on
//! exactly where it was (no request on the next cycle, the provisioning log kept), and the
//! commands refuse what would lose data.

mod common;

use common::env::{group, three_users, Env};

#[test]
fn an_exported_state_imported_elsewhere_carries_on_without_a_request() {
    let env = Env::start(r#"groups = ["Staff"]"#, "");
    env.directory(
        &three_users(),
        &[group("g1", "Staff", &["u-ada", "u-bob", "u-cy"])],
    );
    env.sync(&[]).assert_success();

    let out = env.scimsync(&["state", "export", "--output", "dump.jsonl"]);
    out.assert_success();
    assert!(out.stderr.contains("exported "), "{out}");
    let dump = env.ws.read("dump.jsonl");
    assert!(
        dump.starts_with(r#"{"format":"scimsync-state","format_version":1,"#),
        "{dump}"
    );
    assert!(
        dump.contains(r#""tree":"users/app","key":"u-ada""#),
        "{dump}"
    );
    assert!(
        !dump.contains(env.server.token.as_str()),
        "no secret in the export"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(env.ws.path("dump.jsonl"))
        .expect("dump")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the export holds personal data");

    // The same configuration pointed at a new, empty state directory.
    let config = env
        .ws
        .read("scimsync.toml")
        .replace("path = \"state\"", "path = \"moved\"");
    env.ws.write("scimsync.toml", config);
    let out = env.scimsync(&["state", "import", "dump.jsonl"]);
    out.assert_success();
    assert!(out.stderr.contains("imported "), "{out}");
    let out = env.sync(&[]);
    out.assert_success();
    assert_eq!(env.proxy.count(), 0, "{:?}\n{out}", env.proxy.calls());
    let logs = env.scimsync(&["logs", "--user", "u-ada"]);
    assert!(logs.stdout.contains("Create"), "{logs}");

    // A second import would mix two states: refused, nothing written.
    let out = env.scimsync(&["state", "import", "dump.jsonl"]);
    out.assert_code(64);
    assert!(
        out.stderr
            .contains("import only into an empty state directory"),
        "{out}"
    );

    // A file that is not an export: refused at its first line.
    env.ws.write("bad.jsonl", "{\"users\": []}\n");
    let config = env
        .ws
        .read("scimsync.toml")
        .replace("path = \"moved\"", "path = \"third\"");
    env.ws.write("scimsync.toml", config);
    let out = env.scimsync(&["state", "import", "bad.jsonl"]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("line 1: not a scimsync state export"),
        "{out}"
    );
}
