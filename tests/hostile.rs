//! A broken or hostile target cannot hang, crash, exhaust or misdirect scimsync (issue 15).
//!
//! Each test points scimsync at a [`HostileServer`] in one attack mode and asserts, besides
//! what is particular to the attack, what every attack must leave intact ([`Case::assert_safe`]):
//! the command ends by itself within `retry_max_seconds` + 10 s, under 512 MB of peak memory,
//! without a panic; every request stays below the target's base path and names only ids the
//! server gave; nothing reaches the redirect target; no account is created twice; the token
//! is in no output, no file of the state, nor `status` or `logs`; and no raw control character
//! (ESC, BEL, NUL) reaches stdout or stderr.

mod common;

use common::{Attack, HostileServer, RunOutput, Workspace, BASE_PATH, CONTROL_TEXT};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const RETRY_MAX: u64 = 5;
/// The longest any attacked command may take: `retry_max_seconds` + 10 s.
const BOUND: Duration = Duration::from_secs(RETRY_MAX + 10);
const MAX_PEAK_MB: u64 = 512;
/// The ids the server must never see scimsync use.
const BAD_IDS: [&str; 5] = ["..", ".", "", "a/b", "x?y"];

/// A hostile target, a second server to redirect to, and a workspace configured for them.
struct Case {
    server: HostileServer,
    sink: HostileServer,
    ws: Workspace,
}

/// A finished command with its wall time and peak memory.
struct Measured {
    out: RunOutput,
    took: Duration,
    peak_kb: u64,
}

impl std::fmt::Display for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--- took {:.1} s, peak {} MB\n{}",
            self.took.as_secs_f64(),
            self.peak_kb / 1024,
            self.out
        )
    }
}

fn user(i: usize) -> Value {
    json!({
        "objectId": format!("u{i:04}"),
        "mail": format!("user{i}@example.org"),
        "givenName": format!("Given{i}"),
        "surname": format!("Surname{i}"),
        "accountEnabled": true,
    })
}

/// The account `user(i)` would have on the target.
fn account(i: usize) -> Value {
    json!({
        "userName": format!("u{i:04}"),
        "name": {"formatted": format!("Given{i} Surname{i}")},
        "active": true,
    })
}

fn target_table(name: &str, url: &str, schedule: &str, extra: &str) -> String {
    format!(
        r#"[[target]]
name = "{name}"
url = "{url}"
token_file = "token-{name}"
schedule = "{schedule}"
rate_limit = 1000
retry_max_seconds = {RETRY_MAX}
timeout_seconds = 3
connect_timeout_seconds = 2
{extra}

[[target.user_mapping]]
target = "userName"
source = "objectId"
matching_precedence = 1

[[target.user_mapping]]
target = "name.formatted"
expression = 'Join(" ", [givenName], [surname])'

[[target.user_mapping]]
target = "active"
expression = 'Switch([IsSoftDeleted], , "False", "True", "True", "False")'
"#
    )
}

const HEAD: &str = "[state]\npath = \"state\"\n\n[source]\nkind = \"json\"\npath = \"directory.json\"\n\n[scope]\nall = true\n\n";

impl Case {
    /// A correct server turned to `attack`, and a directory of `users` users.
    fn new(attack: Attack, users: usize) -> Case {
        Case::with(attack, users, "")
    }

    /// Like [`Case::new`], with `extra` lines in the target's table.
    fn with(attack: Attack, users: usize, extra: &str) -> Case {
        let case = Case {
            server: HostileServer::start(),
            sink: HostileServer::start(),
            ws: Workspace::new(),
        };
        case.server.set_attack(attack);
        let token = case
            .ws
            .write("token-app", format!("{}\n", case.server.token));
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let config = format!(
            "{HEAD}{}",
            target_table("app", &case.server.url, "0 0 0 1 1 *", extra)
        );
        case.ws.write("scimsync.toml", config);
        case.directory(&(0..users).map(user).collect::<Vec<_>>());
        case
    }

    fn directory(&self, users: &[Value]) {
        let doc = json!({"users": users, "groups": []});
        self.ws.write("directory.json", doc.to_string());
    }

    /// Runs `scimsync --config scimsync.toml ARGS` under `/usr/bin/time` (or, without it,
    /// reading `VmHWM` while it runs), colours off so that any ESC in the output is the
    /// target's.
    fn run(&self, args: &[&str]) -> Measured {
        self.run_in(&[], args)
    }

    /// [`Case::run`] with the command started by `wrapper` (after `/usr/bin/time`).
    fn run_in(&self, wrapper: &[&str], args: &[&str]) -> Measured {
        let mut all = vec!["--config", "scimsync.toml"];
        all.extend_from_slice(args);
        let rss = self.ws.path("peak-rss");
        let rss_arg = rss.display().to_string();
        let timed = Path::new("/usr/bin/time").exists();
        let mut outer: Vec<&str> = if timed {
            vec!["/usr/bin/time", "-f", "%M", "-o", &rss_arg]
        } else {
            Vec::new()
        };
        outer.extend_from_slice(wrapper);
        let env: [(&str, &str); 0] = [];
        let started = Instant::now();
        let mut running = self.ws.spawn_wrapped(&outer, &all, &env);
        let mut peak_kb = 0;
        // The command must end by itself; beyond twice the bound it is killed and fails.
        while !running.has_exited() && started.elapsed() < BOUND * 2 {
            if !timed && wrapper.is_empty() {
                peak_kb = peak_kb.max(vm_hwm_kb(running.pid()).unwrap_or(0));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !running.has_exited() && !outer.is_empty() {
            // Killing the wrapper alone would leave scimsync running, holding the pipes.
            for pid in children_of(running.pid()) {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        let out = running.wait(Duration::from_secs(5));
        let took = started.elapsed();
        if timed {
            let text = std::fs::read_to_string(&rss).unwrap_or_default();
            peak_kb = text
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .next_back()
                .unwrap_or(0);
        }
        Measured { out, took, peak_kb }
    }

    /// What every attack must leave intact, after `m` (a run against the attacked server):
    /// see the file's documentation.
    fn assert_safe(&self, what: &str, m: &Measured) {
        assert!(m.took <= BOUND, "{what}: took over {BOUND:?}\n{m}");
        assert!(
            m.peak_kb > 0 && m.peak_kb / 1024 < MAX_PEAK_MB,
            "{what}: peak memory {} kB\n{m}",
            m.peak_kb
        );
        assert_clean_output(what, &m.out, &self.server.token);
        assert!(
            [0, 1, 2].contains(&m.out.code),
            "{what}: exit code {}\n{m}",
            m.out.code
        );
        let records = self.server.records();
        for r in &records {
            assert!(
                r.path.starts_with(&format!("{BASE_PATH}/")),
                "{what}: a request outside the base path: {} {}",
                r.method,
                r.path
            );
            let parts: Vec<&str> = r.route()[BASE_PATH.len() + 1..].split('/').collect();
            if let [_, id, ..] = parts.as_slice() {
                let id = urlencoding::decode(id).map(|d| d.into_owned());
                assert!(
                    id.as_ref().is_ok_and(|id| self.server.is_good_id(id)),
                    "{what}: a request names an id the server never gave: {} {}",
                    r.method,
                    r.path
                );
            }
            assert!(
                !(r.route().ends_with('/') || r.route().contains("/.")),
                "{what}: {} {}",
                r.method,
                r.path
            );
        }
        let sunk = self.sink.records();
        assert!(
            sunk.is_empty(),
            "{what}: requests reached the redirect target: {:?}",
            sunk.iter()
                .map(|r| format!("{} {} {}", r.method, r.path, r.body))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            self.server.duplicates(),
            Vec::<String>::new(),
            "{what}: duplicate accounts\n{m}"
        );
        self.assert_state_clean(what);
        eprintln!(
            "MEASURED {what}: {:.1} s, {} MB peak, {} requests, exit {}",
            m.took.as_secs_f64(),
            m.peak_kb / 1024,
            records.len(),
            m.out.code
        );
    }

    /// Neither the state's files nor `status` and `logs` hold the token; the outputs hold no
    /// raw control character, and the files not the target's control text.
    fn assert_state_clean(&self, what: &str) {
        let token = self.server.token.as_bytes();
        for file in files_under(&self.ws.path("state")) {
            let bytes = std::fs::read(&file).unwrap_or_default();
            assert!(
                !contains(&bytes, token),
                "{what}: the token is in {}",
                file.display()
            );
            assert!(
                !contains(&bytes, b"\x1b[2J") && !contains(&bytes, b"\r\n2099-01-01"),
                "{what}: the target's control characters are stored raw in {}",
                file.display()
            );
        }
        for args in [&["status"][..], &["logs"][..], &["logs", "--json"][..]] {
            let m = self.run(args);
            assert_eq!(m.out.code, 0, "{what}: {args:?}\n{m}");
            assert_clean_output(&format!("{what}, {args:?}"), &m.out, &self.server.token);
        }
    }

    /// stdout, stderr, `status` and `logs` together, for messages the attack must produce.
    fn everything_said(&self, m: &Measured) -> String {
        let status = self.run(&["status"]).out;
        let logs = self.run(&["logs"]).out;
        format!(
            "{}\n{}\n{}\n{}",
            m.out.stdout, m.out.stderr, status.stdout, logs.stdout
        )
    }
}

fn assert_clean_output(what: &str, out: &RunOutput, token: &str) {
    for (name, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(!text.contains("panicked"), "{what}: a panic\n{out}");
        assert!(
            !text.contains(token),
            "{what}: the token is in {name}\n{out}"
        );
        for byte in [0x1b_u8, 0x07, 0x00] {
            assert!(
                !text.as_bytes().contains(&byte),
                "{what}: a raw 0x{byte:02x} in {name}: {:?}",
                text
            );
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => out.extend(files_under(&path)),
            Ok(t) if t.is_file() => out.push(path),
            _ => {}
        }
    }
    out
}

/// The processes whose parent is `pid`, from `/proc`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let child: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // `PID (COMM) STATE PPID …`; COMM may hold spaces and parentheses.
            let after = &stat[stat.rfind(')')? + 1..];
            let ppid: u32 = after.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == pid).then_some(child)
        })
        .collect()
}

/// The peak resident memory of a running process, from `/proc`.
fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Directory users of the attacks that make every call fail slowly: enough that one retry
/// budget per object would far exceed the bound, which holds per command.
const MANY: usize = 40;

/// A sync of [`MANY`] users against a server answering every request `status` with this
/// `Retry-After`.
fn throttled(what: &str, status: u16, retry_after: &str) -> (Case, Measured) {
    let case = Case::new(
        Attack::Throttle {
            status,
            retry_after: retry_after.into(),
        },
        MANY,
    );
    let m = case.run(&["sync"]);
    case.assert_safe(what, &m);
    assert_ne!(m.out.code, 0, "{what}: nothing can succeed\n{m}");
    (case, m)
}

#[test]
fn a_retry_after_of_a_billion_seconds_fails_the_operation_at_once() {
    let (case, m) = throttled("429 Retry-After: 999999999", 429, "999999999");
    let said = case.everything_said(&m);
    assert!(
        said.contains("asked to wait 999999999 seconds"),
        "the message names the wait asked for\n{said}"
    );
    assert!(m.took < Duration::from_secs(RETRY_MAX), "{m}");
}

#[test]
fn a_retry_after_of_one_second_forever_gives_up_after_retry_max_seconds() {
    let (case, m) = throttled("503 Retry-After: 1 forever", 503, "1");
    // Retried, about once a second, within the budget; then the target is unavailable for
    // the rest of the cycle, said once, and nothing more is sent.
    let requests = case.server.records().len();
    assert!(requests > 3, "{requests} requests\n{m}");
    assert!(requests < 20, "{requests} requests\n{m}");
    assert!(
        m.out.stdout.contains("the target stayed unavailable"),
        "{m}"
    );
}

#[test]
fn a_retry_after_beyond_the_clock_does_not_panic() {
    throttled("429 Retry-After: u64::MAX", 429, "18446744073709551615");
}

#[test]
fn a_retry_after_http_date_far_in_the_future_fails_the_operation_at_once() {
    let (_, m) = throttled(
        "429 Retry-After: 31 Dec 9999",
        429,
        "Fri, 31 Dec 9999 23:59:59 GMT",
    );
    assert!(m.took < Duration::from_secs(RETRY_MAX), "{m}");
}

#[test]
fn a_2_gib_body_is_refused_without_reading_it() {
    let case = Case::new(Attack::HugeBody { bytes: 2 << 30 }, 3);
    let m = case.run(&["sync"]);
    case.assert_safe("2 GiB body", &m);
    assert_ne!(m.out.code, 0, "{m}");
    assert!(
        case.everything_said(&m).contains("max_response_bytes"),
        "{m}"
    );
}

#[test]
fn an_endless_body_is_cut_at_max_response_bytes() {
    let case = Case::new(Attack::EndlessBody, 3);
    let m = case.run(&["sync"]);
    case.assert_safe("endless chunked body", &m);
    assert_ne!(m.out.code, 0, "{m}");
    assert!(
        case.everything_said(&m).contains("max_response_bytes"),
        "{m}"
    );
}

#[test]
fn an_endless_trickling_body_ends_at_the_request_timeout() {
    let case = Case::new(Attack::TrickleBody, MANY);
    let m = case.run(&["sync"]);
    case.assert_safe("endless trickling body", &m);
    assert_ne!(m.out.code, 0, "{m}");
}

/// Five of six directory users already have an account on a server listing two per page
/// under `attack`: the five are adopted, the sixth created, none twice.
fn bad_listing(what: &str, attack: Attack) {
    let case = Case::new(attack, 6);
    case.server.set_page_size(2);
    for i in 0..5 {
        case.server.seed_user(account(i), None);
    }
    for run in 1..=2 {
        let m = case.run(&["sync"]);
        case.assert_safe(&format!("{what}, sync {run}"), &m);
        assert_eq!(m.out.code, 0, "{what}, sync {run}\n{m}");
        assert_eq!(case.server.users().len(), 6, "{what}, sync {run}\n{m}");
    }
}

#[test]
fn a_listing_that_ignores_start_index_creates_no_duplicate() {
    bad_listing("startIndex ignored", Attack::StartIndexIgnored);
}

#[test]
fn a_listing_whose_items_lack_a_string_id_ends_and_creates_no_duplicate() {
    bad_listing("items without a string id", Attack::ListingWithoutIds);
}

#[test]
fn a_listing_whose_pages_repeat_ids_creates_no_duplicate() {
    bad_listing("ids repeated across pages", Attack::RepeatedIds);
}

#[test]
fn unusable_ids_from_a_create_are_never_used_nor_create_twice() {
    for bad in BAD_IDS {
        let what = format!("create answers id {bad:?}");
        let case = Case::new(Attack::BadIdFromCreate(bad.into()), 2);
        let m = case.run(&["sync"]);
        case.assert_safe(&what, &m);
        assert_eq!(m.out.code, 1, "{what}: the creates fail\n{m}");
        assert!(
            case.everything_said(&m).contains("unusable id"),
            "{what}: the reason is given\n{m}"
        );
        // Once the server behaves, the accounts it did create are adopted.
        case.server.set_attack(Attack::None);
        let m = case.run(&["sync"]);
        case.assert_safe(&format!("{what}, then a correct server"), &m);
        assert_eq!(case.server.users().len(), 2, "{what}\n{m}");
    }
}

#[test]
fn one_id_answered_to_every_create_links_no_two_people_to_one_account() {
    let what = "every create answered with the same id";
    let case = Case::new(Attack::BadIdFromCreate("same-id".into()), 2);
    let m = case.run(&["sync"]);
    case.assert_safe(what, &m);
    assert_eq!(m.out.code, 1, "{what}: the second create fails\n{m}");
    assert!(
        case.everything_said(&m)
            .contains("which another directory object's user already has"),
        "{what}: the reason is given\n{m}"
    );
    case.server.set_attack(Attack::None);
    let m = case.run(&["sync"]);
    case.assert_safe(&format!("{what}, then a correct server"), &m);
    assert_eq!(case.server.users().len(), 2, "{what}\n{m}");
}

#[test]
fn unusable_ids_in_a_listing_are_never_used_nor_create_twice() {
    // Five accounts with a bad id each, and a sixth user without an account: the listing is
    // refused, the queries find the five, whose objects fail; the sixth is created.
    let case = Case::new(Attack::None, 6);
    for (i, bad) in BAD_IDS.iter().enumerate() {
        case.server.seed_user(account(i), Some(bad));
    }
    let m = case.run(&["sync"]);
    case.assert_safe("listed bad ids", &m);
    assert_eq!(m.out.code, 1, "{m}");
    assert_eq!(case.server.users().len(), 6, "{m}");
}

#[test]
fn an_unusable_id_from_a_filter_match_is_never_used_nor_creates_twice() {
    for bad in BAD_IDS {
        let what = format!("filter match with id {bad:?}");
        // One user: matched by a query, not by a listing.
        let case = Case::new(Attack::None, 1);
        case.server.seed_user(account(0), Some(bad));
        let m = case.run(&["sync"]);
        case.assert_safe(&what, &m);
        assert_eq!(m.out.code, 1, "{what}\n{m}");
        assert_eq!(case.server.users().len(), 1, "{what}\n{m}");
    }
}

#[test]
fn a_307_redirect_is_refused_and_sends_nothing_elsewhere() {
    let case = Case::new(Attack::None, 3);
    case.server.set_attack(Attack::Redirect {
        status: 307,
        origin: case.sink.origin.clone(),
        only_post: false,
    });
    let m = case.run(&["sync"]);
    case.assert_safe("307 to another server", &m);
    assert_ne!(m.out.code, 0, "{m}");
    let said = case.everything_said(&m);
    assert!(
        said.contains("redirected to") && said.contains(&case.sink.origin),
        "the Location is named\n{said}"
    );
}

#[test]
fn a_302_on_post_is_refused_and_counts_no_account_as_created() {
    let case = Case::new(Attack::None, 3);
    case.server.set_attack(Attack::Redirect {
        status: 302,
        origin: case.sink.origin.clone(),
        only_post: true,
    });
    let m = case.run(&["sync"]);
    case.assert_safe("302 on POST", &m);
    assert_eq!(m.out.code, 1, "{m}");
    let status: Value =
        serde_json::from_str(&case.run(&["status", "--json"]).out.stdout).expect("status json");
    let target = &status["targets"][0];
    assert_eq!(target["managed_users"], 0, "{status}");
    assert_eq!(target["last_cycle"]["users"]["created"], 0, "{status}");
    assert!(case.server.users().is_empty());
}

#[test]
fn an_error_echoing_the_token_is_redacted_everywhere() {
    let case = Case::new(Attack::EchoAuthorization, 3);
    let m = case.run(&["sync"]);
    case.assert_safe("error echoing Authorization", &m);
    assert_eq!(m.out.code, 1, "{m}");
    let said = case.everything_said(&m);
    assert!(said.contains("[redacted]"), "the echo was seen\n{said}");
    let m = case.run(&["plan"]);
    case.assert_safe("error echoing Authorization, plan", &m);
}

#[test]
fn control_characters_from_the_target_are_escaped_everywhere() {
    let case = Case::new(Attack::ControlChars, 3);
    let m = case.run(&["sync"]);
    case.assert_safe("control characters in errors", &m);
    assert_eq!(m.out.code, 1, "{m}");
    let said = case.everything_said(&m);
    assert!(said.contains(r"\u{1b}[2J"), "shown escaped\n{said}");
    let m = case.run(&["plan"]);
    case.assert_safe("control characters in errors, plan", &m);
}

#[test]
fn control_characters_from_the_source_are_escaped_in_plan_and_sync() {
    let case = Case::new(Attack::None, 0);
    let mut u = user(0);
    u["givenName"] = json!(CONTROL_TEXT);
    case.directory(&[u]);
    for args in [&["plan"][..], &["sync"][..]] {
        let m = case.run(args);
        case.assert_safe(&format!("control characters in the source, {args:?}"), &m);
    }
}

#[test]
fn the_state_is_owner_only_whatever_the_umask() {
    let case = Case::new(Attack::None, 3);
    let m = case.run_in(&["sh", "-c", "umask 022; exec \"$@\"", "sh"], &["sync"]);
    m.out.assert_success();
    let state = case.ws.path("state");
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700, "{}", state.display());
    let files = files_under(&state);
    assert!(!files.is_empty());
    for f in files {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
        let parent = f.parent().expect("parent");
        assert_eq!(mode(parent), 0o700, "{}", parent.display());
    }
}

#[test]
fn a_world_writable_token_file_is_warned_about() {
    let case = Case::new(Attack::None, 1);
    let token = case.ws.path("token-app");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let m = case.run(&["sync"]);
    case.assert_safe("world-writable token file", &m);
    assert!(
        m.out.stderr.contains("readable or writable by every user"),
        "{m}"
    );
}

#[test]
fn plain_http_to_another_host_is_warned_about() {
    let case = Case::new(Attack::None, 1);
    let m = case.run(&["check"]);
    assert!(
        !m.out.stderr.contains("plain http"),
        "loopback is fine\n{m}"
    );
    let config = format!(
        "{HEAD}{}",
        target_table("app", "http://scim.example/scim/v2", "0 0 0 1 1 *", "")
    );
    case.ws.write("scimsync.toml", config);
    let m = case.run(&["check"]);
    assert_clean_output("http to scim.example", &m.out, &case.server.token);
    assert!(m.took <= BOUND, "{m}");
    assert!(
        m.out
            .stderr
            .contains("http://scim.example/scim/v2 is plain http to another host"),
        "{m}"
    );
}

#[test]
fn random_string_with_huge_minimums_fails_with_a_message() {
    let case = Case::new(Attack::None, 0);
    let m = case.run(&[
        "expr",
        "RandomString(8, 9223372036854775807, 9223372036854775807, 2, 0, )",
    ]);
    assert_clean_output("RandomString", &m.out, &case.server.token);
    assert!(
        m.out.code != 0 && !m.out.stderr.trim().is_empty(),
        "a message and a failure\n{m}"
    );
    assert!(m.took <= BOUND && m.peak_kb / 1024 < MAX_PEAK_MB, "{m}");
}

#[test]
fn the_daemon_keeps_its_other_targets_on_schedule_while_two_attack() {
    let normal = HostileServer::start();
    let throttling = HostileServer::start();
    throttling.set_attack(Attack::Throttle {
        status: 429,
        retry_after: "18446744073709551615".into(),
    });
    let endless = HostileServer::start();
    endless.set_attack(Attack::EndlessBody);
    let ws = Workspace::new();
    let every_two_seconds = "*/2 * * * * *";
    let mut config = HEAD.to_owned();
    for (name, server) in [
        ("normal", &normal),
        ("throttling", &throttling),
        ("endless", &endless),
    ] {
        let token = ws.write(&format!("token-{name}"), &server.token);
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        config.push_str(&target_table(name, &server.url, every_two_seconds, ""));
    }
    ws.write("scimsync.toml", config);
    let directory = |n: usize| {
        let users: Vec<Value> = (0..n).map(user).collect();
        ws.write(
            "directory.json",
            json!({"users": users, "groups": []}).to_string(),
        );
    };
    directory(2);
    let notify = Notifications::bind(&ws);
    let daemon = ws.spawn_with_env(
        &["--config", "scimsync.toml", "--log-level", "info", "run"],
        &[
            ("NOTIFY_SOCKET", &notify.path),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    let started = Instant::now();
    wait_for("the initial sync", Duration::from_secs(20), || {
        normal.users().len() == 2
    });

    // A new user at each of three cycles of the normal target: each reaches it within a
    // couple of ticks, whatever the other two targets do meanwhile.
    for n in 3..=5 {
        directory(n);
        let asked = Instant::now();
        wait_for(
            &format!("user {n} on the normal target"),
            Duration::from_secs(8),
            || normal.users().len() == n,
        );
        eprintln!(
            "MEASURED daemon: user {n} reached the normal target {:.1} s after it was added",
            asked.elapsed().as_secs_f64()
        );
    }
    let status = ws.run(&["--config", "scimsync.toml", "status", "--json"]);
    status.assert_success();
    let status: Value = serde_json::from_str(&status.stdout).expect("status json");
    for t in status["targets"].as_array().expect("targets") {
        let failed = t["last_cycle"]["users"]["failed"].as_u64().unwrap_or(0);
        match t["name"].as_str() {
            Some("normal") => assert_eq!(failed, 0, "{t}"),
            _ => assert!(failed > 0 || !t["last_failure"].is_null(), "{t}"),
        }
        assert!(t["next_run"].is_string(), "{t}");
    }
    // The attacking targets' schedules go on too: each was called at cycles seconds apart,
    // or is in quarantine (a target that stayed unavailable is), its next run still set.
    let quarantined = |name: &str| {
        status["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["name"] == name && t["quarantine"].is_object())
    };
    for (name, server) in [("throttling", &throttling), ("endless", &endless)] {
        let times: Vec<Instant> = server.records().iter().map(|r| r.at).collect();
        let span = match (times.first(), times.last()) {
            (Some(first), Some(last)) => *last - *first,
            _ => Duration::ZERO,
        };
        assert!(
            span >= Duration::from_secs(4) || quarantined(name),
            "{name}: calls over {span:?}, not quarantined: {status:#}"
        );
        assert!(server.users().is_empty(), "{name}");
    }
    // Every target's scheduler is alive: the watchdog is still notified.
    let pings = notify.watchdog_pings_since(Instant::now() - Duration::from_secs(2));
    assert!(pings >= 2, "{pings} watchdog pings in the last 2 s");

    let stopping = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &daemon.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let out = daemon.wait(Duration::from_secs(30));
    let stop_took = stopping.elapsed();
    eprintln!(
        "MEASURED daemon: ran {:.1} s; SIGTERM to exit {:.1} s; {} / {} / {} requests to normal / throttling / endless",
        stopping.duration_since(started).as_secs_f64(),
        stop_took.as_secs_f64(),
        normal.records().len(),
        throttling.records().len(),
        endless.records().len()
    );
    assert_eq!(out.code, 0, "{out}");
    assert!(
        stop_took < Duration::from_secs(5),
        "stopping took {stop_took:?}\n{out}"
    );
    for server in [&normal, &throttling, &endless] {
        assert_clean_output("daemon", &out, &server.token);
        assert!(server
            .records()
            .iter()
            .all(|r| r.path.starts_with(&format!("{BASE_PATH}/"))));
    }
    assert!(
        !out.stderr.contains("scheduler stopped by failing"),
        "{out}"
    );
    assert_eq!(normal.duplicates(), Vec::<String>::new());
}

/// Polls `cond` every 100 ms until it holds; panics with `what` after `timeout`.
fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The test's end of `NOTIFY_SOCKET`: every datagram, with when it came, read on a thread.
struct Notifications {
    path: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(Instant, String)>>>,
}

impl Notifications {
    fn bind(ws: &Workspace) -> Notifications {
        let path = ws.path("notify.sock");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).expect("bind notify socket");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        // Ends when the workspace (and with it the socket file) is gone and the test ends.
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let mut seen = sink.lock().expect("lock");
                seen.extend(text.lines().map(|l| (Instant::now(), l.to_owned())));
            }
        });
        Notifications {
            path: path.display().to_string(),
            seen,
        }
    }

    fn watchdog_pings_since(&self, since: Instant) -> usize {
        let seen = self.seen.lock().expect("lock");
        seen.iter()
            .filter(|(at, line)| *at >= since && line == "WATCHDOG=1")
            .count()
    }
}

#[test]
fn a_dense_json_answer_is_refused_or_parsed_one_at_a_time() {
    // 15 MiB of `[0,0,…]`: below max_response_bytes, but 8 Mi values (a gigabyte parsed).
    let case = Case::new(Attack::DenseJson { bytes: 15 << 20 }, 3);
    let m = case.run(&["sync"]);
    case.assert_safe("dense JSON, 15 MiB", &m);
    assert_ne!(m.out.code, 0, "{m}");
    assert!(case.everything_said(&m).contains("JSON values"), "{m}");
    // 2 MB of it: under the bound of values, so parsed, but never many at once.
    let case = Case::with(Attack::DenseJson { bytes: 2_000_000 }, 8, "concurrency = 8");
    let m = case.run(&["sync"]);
    case.assert_safe("dense JSON, 2 MB, 8 at once", &m);
}
