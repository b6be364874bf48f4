//! Operating scimsync: the Prometheus endpoint of the daemon, the progress bar of a one-shot
//! sync, and OAuth 2.0 client credentials against a token endpoint of the test harness, with
//! the recording proxy in front of the real scim2-server acting as the target's token check.

mod common;

use common::env::{group, set, three_users, user, Env};
use common::{RunOutput, TokenServer};
use std::process::Command;
use std::time::{Duration, Instant};

const NEVER_SOON: &str = r#"schedule = "0 0 0 1 1 *""#;
const CLIENT_ID: &str = "scimsync-test";
const SECRET: &str = "s3cr3t-client-credential-5f1c";

fn crew_env(extra: &str) -> Env {
    let env = Env::start(r#"groups = ["Crew"]"#, extra);
    env.directory(
        &three_users(),
        &[group("g-crew", "Crew", &["u-ada", "u-bob", "u-cy"])],
    );
    env
}

/// Edits the configuration the environment wrote.
fn edit_config(env: &Env, edit: impl FnOnce(String) -> String) {
    let text = env.ws.read("scimsync.toml");
    env.ws.write("scimsync.toml", edit(text));
}

/// Polls `cond` every 100 ms until it holds; panics with `what` after `timeout`.
fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// The value of the sample of `name` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `GET /metrics`, over a plain socket: the body of a 200, else `None`.
fn scrape(port: u16) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200")
        .then(|| body.to_owned())
        .or_else(|| head.starts_with("HTTP/1.1 200").then(|| body.to_owned()))
}

#[test]
fn the_metrics_endpoint_counts_the_cycle_its_operations_and_http_latency() {
    let env = crew_env(NEVER_SOON);
    let port = common::free_port();
    edit_config(&env, |t| {
        format!("metrics_listen = \"127.0.0.1:{port}\"\n{t}")
    });
    let before = chrono::Utc::now().timestamp() as f64;
    let daemon = env
        .ws
        .spawn(&["--config", "scimsync.toml", "--log-level", "info", "run"]);

    let mut text = String::new();
    wait_for("a cycle in the metrics", Duration::from_secs(60), || {
        text = scrape(port).unwrap_or_default();
        sample(&text, "scimsync_cycles_total", &[("target", "app")]).is_some()
    });
    let out = daemon.stop();
    out.assert_success();
    assert_eq!(env.users().len(), 3, "{out}");

    let app = ("target", "app");
    assert_eq!(
        sample(&text, "scimsync_cycles_total", &[app, ("result", "ok")]),
        Some(1.0),
        "{text}"
    );
    let op = |kind, status| {
        sample(
            &text,
            "scimsync_operations_total",
            &[
                app,
                ("kind", kind),
                ("action", "create"),
                ("status", status),
            ],
        )
    };
    assert_eq!(op("user", "ok"), Some(3.0), "{text}");
    assert_eq!(op("group", "ok"), Some(1.0), "{text}");
    assert_eq!(op("user", "failed"), None, "{text}");

    // Four POSTs (three users, one group) answered 2xx, each in the histogram.
    let posts = sample(
        &text,
        "scimsync_http_request_duration_seconds_count",
        &[app, ("method", "POST"), ("status", "2xx")],
    );
    assert_eq!(posts, Some(4.0), "{text}");
    let inf = sample(
        &text,
        "scimsync_http_request_duration_seconds_bucket",
        &[app, ("method", "POST"), ("status", "2xx"), ("le", "+Inf")],
    );
    assert_eq!(inf, Some(4.0), "{text}");
    assert!(
        text.contains("# TYPE scimsync_http_request_duration_seconds histogram"),
        "{text}"
    );
    // Every request that went out passed the rate limiter once.
    let paced = sample(&text, "scimsync_rate_limit_wait_seconds_count", &[app]);
    assert_eq!(paced, Some(env.proxy.count() as f64), "{text}");
    assert_eq!(sample(&text, "scimsync_quarantined", &[app]), Some(0.0));
    assert_eq!(sample(&text, "scimsync_escrow_objects", &[app]), Some(0.0));
    let managed = |kind| sample(&text, "scimsync_managed_objects", &[app, ("kind", kind)]);
    assert_eq!(managed("user"), Some(3.0), "{text}");
    assert_eq!(managed("group"), Some(1.0), "{text}");
    let last = sample(&text, "scimsync_last_success_timestamp_seconds", &[app]);
    assert!(last.is_some_and(|t| t >= before), "{last:?}\n{text}");
}

#[test]
fn a_metrics_port_in_use_stops_the_daemon_at_startup() {
    let env = crew_env(NEVER_SOON);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port();
    edit_config(&env, |t| {
        format!("metrics_listen = \"127.0.0.1:{port}\"\n{t}")
    });
    let out = env
        .ws
        .spawn(&["--config", "scimsync.toml", "run"])
        .wait(Duration::from_secs(60));
    assert_ne!(out.code, 0, "{out}");
    assert!(
        out.stderr
            .contains(&format!("metrics_listen = \"127.0.0.1:{port}\"")),
        "{out}"
    );
    assert_eq!(env.proxy.count(), 0, "no cycle ran:\n{out}");
}

#[test]
fn a_bad_metrics_listen_is_a_config_error_naming_the_key() {
    let env = crew_env("");
    edit_config(&env, |t| format!("metrics_listen = \"localhost\"\n{t}"));
    let out = env.scimsync(&["check"]);
    out.assert_code(64);
    assert!(
        out.stderr.contains("metrics_listen: \"localhost\""),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// Progress

#[test]
fn no_progress_bar_when_standard_error_is_not_a_terminal() {
    let env = crew_env("");
    let out = env.sync(&[]);
    out.assert_success();
    assert_eq!(env.users().len(), 3);
    for mark in ["objects", "ETA", "\r", "\u{1b}["] {
        assert!(!out.stderr.contains(mark), "{mark:?} in:\n{out}");
    }
}

/// Runs `scimsync ARGS` on a pseudo-terminal (util-linux `script`); returns what the terminal
/// showed.
fn on_a_terminal(env: &Env, args: &str) -> (i32, String) {
    let bin = common::scimsync_bin();
    let line = format!("'{}' --config scimsync.toml {args}", bin.display());
    let out = Command::new("timeout")
        .args(["120", "script", "-qec", &line, "/dev/null"])
        .current_dir(env.ws.dir())
        .env_remove("RUST_LOG")
        .env("TERM", "xterm")
        .env("COLUMNS", "160")
        .output()
        .expect("run script");
    let code = out.status.code().unwrap_or(-1);
    (code, String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn a_terminal_shows_a_progress_bar_per_target_but_not_with_json_logs() {
    let env = crew_env("");
    let (code, screen) = on_a_terminal(&env, "sync");
    assert_eq!(code, 0, "{screen}");
    // Three users and one group.
    assert!(screen.contains("target \"app\" ["), "{screen}");
    assert!(screen.contains("4 of 4 objects"), "{screen}");
    assert_eq!(env.users().len(), 3);

    let (code, screen) = on_a_terminal(&env, "--log-format json sync --full");
    assert_eq!(code, 0, "{screen}");
    assert!(!screen.contains("objects,"), "{screen}");
}

// ---------------------------------------------------------------------------------------------
// OAuth 2.0 client credentials

/// The environment with the target behind OAuth: a token endpoint issuing tokens that live
/// `lifetime`, and the proxy letting through only those tokens.
fn oauth_env(lifetime: Duration, secret_in_file: &str, extra: &str) -> (Env, TokenServer) {
    let env = crew_env(extra);
    let tokens = TokenServer::start(CLIENT_ID, SECRET, lifetime);
    env.proxy.gate_bearer(tokens.validator(), &env.server.token);
    env.ws.write("client-secret", format!("{secret_in_file}\n"));
    let url = tokens.url.clone();
    edit_config(&env, |t| {
        t.replace(
            "token_file = \"token\"\n",
            &format!(
                "token_url = \"{url}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret_file = \"client-secret\"\nscope = \"scim.write\"\n"
            ),
        )
    });
    (env, tokens)
}

fn assert_crew_in_step(env: &Env, out: &RunOutput) {
    let users: Vec<String> = env.users().into_keys().collect();
    assert_eq!(users, ["u-ada", "u-bob", "u-cy"], "{out}");
    let groups = env.groups();
    assert_eq!(groups.len(), 1, "{out}");
    assert_eq!(groups["Crew"], set(&["u-ada", "u-bob", "u-cy"]), "{out}");
}

#[test]
fn a_sync_with_client_credentials_shares_one_token_and_never_logs_the_secret() {
    let (env, tokens) = oauth_env(Duration::from_secs(300), SECRET, "concurrency = 4");
    let out = env.sync(&["--log-level", "trace"]);
    out.assert_success();
    assert_crew_in_step(&env, &out);

    // One token for the whole cycle, asked for as RFC 6749 §4.4 says.
    let requests = tokens.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].client_id, CLIENT_ID);
    assert_eq!(requests[0].status, 200);
    let form = &requests[0].form;
    assert!(form.contains(&("grant_type".into(), "client_credentials".into())));
    assert!(form.contains(&("scope".into(), "scim.write".into())));
    assert!(env.proxy.calls().iter().all(|c| !c.ends_with(" 401")));
    assert!(env.proxy.count() >= 4);

    // Nothing secret in a trace-level log: neither the client secret, nor its Basic
    // encoding, nor the access token.
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("TRACE"), "trace logging was on");
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{SECRET}"));
    let mut secrets = vec![SECRET.to_owned(), basic];
    secrets.extend(tokens.tokens());
    for s in &secrets {
        assert!(!all.contains(s.as_str()), "a secret leaked into the output");
    }

    // A second run in a new process asks for a new token (a full sync, so that it has calls
    // to make: a cycle without changes sends nothing and needs no token).
    let out = env.sync(&["--full"]);
    out.assert_success();
    assert_eq!(tokens.issued(), 2);
}

#[test]
fn an_expiring_token_is_refreshed_during_a_long_sync() {
    // At 4 requests per second the cycle's nine or more requests take over two seconds, so a
    // token that lives one second must be replaced during the sync.
    let (env, tokens) = oauth_env(Duration::from_secs(1), SECRET, "burst = 1");
    edit_config(&env, |t| t.replace("rate_limit = 1000", "rate_limit = 4"));
    let more: Vec<_> = three_users()
        .into_iter()
        .chain(["u-dee", "u-eve", "u-fay"].map(|id| user(id, &id[2..], "Extra")))
        .collect();
    let crew = ["u-ada", "u-bob", "u-cy", "u-dee", "u-eve", "u-fay"];
    env.directory(&more, &[group("g-crew", "Crew", &crew)]);
    let out = env.sync(&[]);
    out.assert_success();
    assert_eq!(env.users().len(), 6, "{out}");
    assert_eq!(env.groups()["Crew"], set(&crew));
    assert!(tokens.issued() >= 2, "{:?}", tokens.requests());
}

#[test]
fn a_revoked_token_is_replaced_once_after_a_401() {
    let (env, tokens) = oauth_env(Duration::from_secs(300), SECRET, "burst = 1");
    edit_config(&env, |t| t.replace("rate_limit = 1000", "rate_limit = 4"));
    env.proxy.clear();
    let running = env.ws.spawn(&["--config", "scimsync.toml", "sync"]);
    // Revoke the token once the sync has made two calls with it.
    wait_for("two calls", Duration::from_secs(60), || {
        env.proxy.count() >= 2
    });
    tokens.revoke_all();
    let out = running.wait(Duration::from_secs(120));
    out.assert_success();
    assert_crew_in_step(&env, &out);
    // The calls caught with the revoked token got a 401, each was sent again, and all of them
    // shared one new token.
    assert_eq!(tokens.issued(), 2, "{:?}", tokens.requests());
    let refused = env
        .proxy
        .calls()
        .iter()
        .filter(|c| c.ends_with(" 401"))
        .count();
    assert!(refused >= 1, "{:?}", env.proxy.calls());
}

#[test]
fn a_wrong_client_secret_fails_clearly_without_a_write() {
    let (env, tokens) = oauth_env(Duration::from_secs(300), "not-the-secret", "");
    let out = env.sync(&["--log-level", "debug"]);
    assert_ne!(out.code, 0, "{out}");
    assert_eq!(env.proxy.count(), 0, "no call reached the target:\n{out}");
    assert!(env.users().is_empty());
    assert!(out.stderr.contains("target \"app\""), "{out}");
    assert!(out.stderr.contains(&tokens.url), "{out}");
    assert!(out.stderr.contains("invalid_client"), "{out}");
    // The server echoed the secret and an escape: both scrubbed, here and in the state.
    assert!(!out.stderr.contains("not-the-secret"), "{out}");
    assert!(out.stderr.contains("[redacted]"), "{out}");
    assert!(
        !out.stderr.contains('\u{1b}') && !out.stdout.contains('\u{1b}'),
        "{out}"
    );
    let status = env.scimsync(&["status"]);
    assert!(!status.stdout.contains("not-the-secret"), "{status}");
    assert!(!status.stdout.contains('\u{1b}'), "{status}");
    // One refused token request, not one per object.
    assert_eq!(tokens.requests().len(), 1, "{:?}", tokens.requests());

    let out = env.scimsync(&["check"]);
    assert_ne!(out.code, 0, "{out}");
    assert!(
        out.stdout
            .contains("target \"app\": authentication: FAILED: POST"),
        "{out}"
    );
    assert!(out.stdout.contains("invalid_client"), "{out}");
}
