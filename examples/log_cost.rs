//! What the stored provisioning log costs a cycle: appends N records of a realistic size (a
//! user create with its attributes and POST) to a sled log already holding EXISTING records,
//! prunes it to EXISTING records, and queries one user; prints the time of each step
//! (docs/benchmarks.md, "Provisioning log").
//!
//! `cargo run --release --example log_cost -- [N] [EXISTING]` (defaults 2000 and 100000)

use scimsync::audit::{Action, Call, Entry, Kind, Modified, Status};
use scimsync::state::{LogQuery, Retention, Store};
use serde_json::json;
use std::time::Instant;

fn record(i: usize, at: chrono::DateTime<chrono::Utc>) -> Entry {
    let id = format!("{i:08x}-1efc-587e-87df-6a2ec43833fb");
    let attr = |path: &str, new: serde_json::Value| Modified {
        path: path.into(),
        old: serde_json::Value::Null,
        new,
    };
    Entry {
        time: scimsync::audit::timestamp(at),
        cycle_id: "db42beb6-284f-4830-889b-0f3a09a7220c".into(),
        target: "qlik".into(),
        kind: Kind::User,
        object_id: id.clone(),
        scim_id: Some(format!("{i:032x}")),
        action: Action::Create,
        status: Status::Success,
        modified: vec![
            attr("active", json!(true)),
            attr(
                "emails[type eq \"work\"].value",
                json!(format!("user{i}@example.org")),
            ),
            attr("externalId", json!(id)),
            attr("name.formatted", json!(format!("User Number{i}"))),
            attr(
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
                json!("Engineering"),
            ),
            attr("userName", json!(id)),
        ],
        calls: vec![Call {
            method: "POST".into(),
            path: "/Users".into(),
            status: Some(201),
            duration_ms: 19,
            bulk: false,
        }],
        detail: "created".into(),
        error: None,
        duration_ms: 20,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let existing: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(dir.path()).expect("a sled store");
    let log = store.log().expect("the log tree");
    let start = chrono::Utc::now() - chrono::Duration::days(1);
    for i in 0..existing {
        let at = start + chrono::Duration::milliseconds(i64::try_from(i).unwrap_or(0));
        log.append(at, &record(i, at)).expect("append");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(store.flush()).expect("flush");

    let t = Instant::now();
    for i in 0..n {
        let at = chrono::Utc::now();
        log.append(at, &record(existing + i, at)).expect("append");
    }
    let append = t.elapsed();
    let t = Instant::now();
    let retention = Retention {
        max_age: chrono::Duration::days(30),
        max_records: existing,
    };
    let pruned = log.prune(&retention, chrono::Utc::now()).expect("prune");
    let prune = t.elapsed();
    let t = Instant::now();
    runtime.block_on(store.flush()).expect("flush");
    let flush = t.elapsed();
    let t = Instant::now();
    let found = log
        .query(&LogQuery {
            user: Some(format!("user{}@example.org", existing / 2)),
            ..Default::default()
        })
        .expect("query");
    let query = t.elapsed();
    println!(
        "append {n} records: {:.1} ms ({:.1} µs each); prune to {existing} ({pruned} removed): {:.1} ms; flush: {:.1} ms; query --user over {existing}: {:.1} ms ({} found)",
        append.as_secs_f64() * 1e3,
        append.as_secs_f64() * 1e6 / n.max(1) as f64,
        prune.as_secs_f64() * 1e3,
        flush.as_secs_f64() * 1e3,
        query.as_secs_f64() * 1e3,
        found.len()
    );
}
