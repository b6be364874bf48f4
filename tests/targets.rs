//! Real SCIM servers (issue 13): scimsync against scim2-server made to deviate as servers in
//! the field do (the proxy's [`Deviation`]s, alone and combined), and against django-scim2.
//! Each scenario asserts the exact final state after the initial sync (adopting accounts that
//! carry the mail typed `work`, untyped, or typed `other`), an incremental sync with a new hire
//! and a user whose account already exists, membership adds and removes in one cycle, and a
//! no-change cycle that sends nothing; then that a later new hire and later membership changes
//! cost a bounded number of requests, with nothing learned again. Also: what `check` says of
//! the matching, a `501` on a PATCH, and an untyped account made after the form was learned.

mod common;

use common::env::{group, user, Env, ServerKind, ENTERPRISE};
use common::{Deviation, Fault, Recorded, RunOutput, ScimClient};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use Deviation::*;

const SCOPE: &str = r#"groups = ["Staff", "Ops"]"#;

const PEOPLE: [(&str, &str, &str); 6] = [
    ("u-ada", "Ada", "Lovelace"),
    ("u-bob", "Bob", "Babbage"),
    ("u-cy", "Cy", "Young"),
    ("u-eve", "Eve", "Online"),
    ("u-fay", "Fay", "Wray"),
    ("u-gus", "Gus", "Grissom"),
];

fn person(id: &str) -> Value {
    let (_, given, surname) = PEOPLE
        .iter()
        .find(|p| p.0 == id)
        .unwrap_or_else(|| panic!("no person {id}"));
    user(id, given, surname)
}

fn mail(id: &str) -> String {
    person(id)["mail"].as_str().expect("mail").to_owned()
}

/// One state of the directory: who is in scope, and the members of the two assigned groups.
struct Phase {
    users: &'static [&'static str],
    staff: &'static [&'static str],
    ops: &'static [&'static str],
}

/// (a) the initial sync: Ada and Bob have accounts already, Cy is new.
const INITIAL: Phase = Phase {
    users: &["u-ada", "u-bob", "u-cy"],
    staff: &["u-ada", "u-bob", "u-cy"],
    ops: &["u-ada"],
};
/// (b) Eve is a new hire; Fay's account was made on the target by someone else.
const HIRES: Phase = Phase {
    users: &["u-ada", "u-bob", "u-cy", "u-eve", "u-fay"],
    staff: &["u-ada", "u-bob", "u-cy", "u-eve"],
    ops: &["u-ada", "u-fay"],
};
/// (c) each group gains a member and loses one in the same cycle.
const MOVES: Phase = Phase {
    users: HIRES.users,
    staff: &["u-ada", "u-cy", "u-eve", "u-fay"],
    ops: &["u-bob", "u-fay"],
};
/// (e) the steady state: one more new hire.
const LATER: Phase = Phase {
    users: &["u-ada", "u-bob", "u-cy", "u-eve", "u-fay", "u-gus"],
    staff: &["u-ada", "u-cy", "u-eve", "u-fay", "u-gus"],
    ops: MOVES.ops,
};
/// (f) the steady state of members: Ops gains one and loses one, twice.
const SWAPS: [Phase; 2] = [
    Phase {
        users: LATER.users,
        staff: LATER.staff,
        ops: &["u-bob", "u-eve"],
    },
    Phase {
        users: LATER.users,
        staff: LATER.staff,
        ops: &["u-bob", "u-cy"],
    },
];

impl Phase {
    fn write(&self, env: &Env) {
        let users: Vec<Value> = self.users.iter().map(|id| person(id)).collect();
        env.directory(
            &users,
            &[
                group("g-staff", "Staff", self.staff),
                group("g-ops", "Ops", self.ops),
            ],
        );
    }

    /// The groups the target must hold: Ops kept the stranger that scimsync does not manage.
    fn groups(&self) -> BTreeMap<String, BTreeSet<String>> {
        let names = |ids: &[&str]| ids.iter().map(|s| (*s).to_owned()).collect();
        let mut ops: BTreeSet<String> = names(self.ops);
        ops.insert("stranger".into());
        BTreeMap::from([("Staff".into(), names(self.staff)), ("Ops".into(), ops)])
    }
}

/// What the test put on the target before scimsync ran.
struct Seeded {
    /// userName on the directory side → id of the account made beforehand.
    ids: BTreeMap<&'static str, String>,
    stranger: Value,
}

/// Runs one `sync` and returns what it sent; it must succeed. With `TARGETS_DEBUG` set in the
/// environment, each cycle's log and requests are printed (with `--nocapture`).
fn cycle(env: &Env, what: &str) -> Vec<Recorded> {
    let out = env.sync(&[]);
    assert_eq!(
        out.code,
        0,
        "{what}: {out}\ncalls: {:#?}",
        env.proxy.calls()
    );
    if std::env::var_os("TARGETS_DEBUG").is_some() {
        eprintln!(
            "=== {what}\n{}\n{:#?}",
            out.stderr,
            shown(&env.proxy.records())
        );
    }
    env.proxy.records()
}

fn is_spc(r: &Recorded) -> bool {
    r.route().ends_with("/ServiceProviderConfig")
}

/// A page of a listing (no filter), the probe of its size included.
fn is_listing(r: &Recorded) -> bool {
    r.method == "GET"
        && (r.route().ends_with("/Users") || r.route().ends_with("/Groups"))
        && r.query_param("filter").is_none()
}

fn count(calls: &[Recorded], f: impl Fn(&Recorded) -> bool) -> usize {
    calls.iter().filter(|r| f(r)).count()
}

fn shown(calls: &[Recorded]) -> Vec<String> {
    calls
        .iter()
        .map(|r| match &r.body {
            Some(b) => format!("{} {} {} {b}", r.method, r.path, r.status),
            None => format!("{} {} {}", r.method, r.path, r.status),
        })
        .collect()
}

/// The e-mail values of a user, in lower case.
fn emails(u: &Value) -> Vec<String> {
    u["emails"]
        .as_array()
        .map(|es| {
            es.iter()
                .filter_map(|e| e["value"].as_str())
                .map(str::to_lowercase)
                .collect()
        })
        .unwrap_or_default()
}

/// The exact state of a scim2-server target after `phase`: the stranger and the managed users
/// (adopted ones kept their id), one account each, no two sharing an e-mail, the groups.
fn assert_scim2_state(env: &Env, devs: &[Deviation], phase: &Phase, seeded: &Seeded, at: &str) {
    let users = env.users();
    let mut want: BTreeSet<&str> = phase.users.iter().copied().collect();
    want.insert("stranger");
    assert_eq!(
        users.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        want,
        "{at}: the target's accounts; calls: {:#?}",
        shown(&env.proxy.records())
    );
    let mut seen = BTreeSet::new();
    for (name, u) in &users {
        let own: BTreeSet<String> = emails(u).into_iter().collect();
        for e in &own {
            assert!(
                seen.insert(e.clone()),
                "{at}: two accounts hold {e}: {users:#?}\ncalls: {:#?}",
                shown(&env.proxy.records())
            );
        }
        if name == "stranger" {
            assert_eq!(u, &seeded.stranger, "{at}: the stranger was written");
            continue;
        }
        let src = person(name);
        if let Some(id) = seeded.ids.get(name.as_str()) {
            assert_eq!(u["id"], json!(id), "{at}: {name} was adopted");
        }
        // One item: an adopted account's address is retyped, not listed a second time.
        assert_eq!(emails(u), [mail(name)], "{at}: {name}: {u}");
        let types: Vec<Option<&str>> = u["emails"]
            .as_array()
            .expect("emails")
            .iter()
            .map(|e| e["type"].as_str())
            .collect();
        // Through a target without types, only those stored beforehand have one.
        if !devs.contains(&EmailsWithoutType) {
            assert!(types.contains(&Some("work")), "{at}: {name}: {u}");
        }
        assert_eq!(u["externalId"], json!(name), "{at}: {name}");
        assert_eq!(u["active"], json!(true), "{at}: {name}");
        assert_eq!(u[ENTERPRISE]["department"], "Engineering", "{at}: {name}");
        let formatted = format!("{} {}", src["givenName"], src["surname"]).replace('"', "");
        let got = u["name"]["formatted"].as_str();
        let adopted = seeded.ids.contains_key(name.as_str());
        match (devs.contains(&SubAttributePath501), name.as_str()) {
            // Refused in a PATCH (learned at Ada's or Bob's adoption): Ada keeps the name she
            // had, the other adopted accounts get none; a create still sends it (a target
            // may take on POST what it refuses in a PATCH), and this one does.
            (true, "u-ada") => assert_eq!(got, Some("Old Name"), "{at}: {u}"),
            (true, _) if adopted => assert_eq!(got, None, "{at}: {u}"),
            _ => assert_eq!(got, Some(&*formatted), "{at}: {u}"),
        }
    }
    assert_eq!(env.groups(), phase.groups(), "{at}: the groups");
}

/// The accounts and the group the target holds before the initial sync: Ada's mail typed
/// `work` in another case, Bob's untyped, a stranger (untyped mail) in the group "Ops".
fn seed_scim2(server: &ScimClient) -> Seeded {
    let ada = server.create_user(json!({
        "userName": "ada-legacy",
        "name": {"formatted": "Old Name"},
        "emails": [{"type": "work", "value": "ADA.Lovelace@example.org", "primary": true}],
        "active": true,
    }));
    let bob = server.create_user(json!({
        "userName": "bob-legacy",
        "emails": [{"value": "bob.babbage@example.org"}],
        "active": true,
    }));
    let stranger = server.create_user(json!({
        "userName": "stranger",
        "emails": [{"value": "stranger@example.org"}],
        "active": true,
    }));
    server.create_group(json!({
        "displayName": "Ops",
        "members": [{"value": stranger["id"]}],
    }));
    let id = |v: &Value| v["id"].as_str().expect("id").to_owned();
    Seeded {
        ids: BTreeMap::from([("u-ada", id(&ada)), ("u-bob", id(&bob))]),
        stranger: server.get(&format!("/Users/{}", id(&stranger))),
    }
}

/// (f) Ops gains a member and loses one, twice: one PATCH each time, or two on a target that
/// takes them apart. The first time, a target that refused both a removal form and the mix
/// (taught only the form's refusal, as the mix may have been refused for the form) learns the
/// mix again; the second time nothing is refused. Returns the requests of each.
fn swap_members(env: &Env, at: &str, assert_state: impl Fn(&Phase, &str)) -> Vec<usize> {
    let mut swaps = Vec::new();
    for (i, phase) in SWAPS.iter().enumerate() {
        phase.write(env);
        let calls = cycle(env, at);
        assert_state(phase, at);
        assert!(calls.len() <= 3 - i, "{at}: {:?}", shown(&calls));
        if i == 1 {
            assert!(
                calls.iter().all(|c| c.status < 300),
                "{at}: {:?}",
                shown(&calls)
            );
        }
        swaps.push(calls.len());
    }
    swaps
}

/// The whole scenario on scim2-server with these deviations.
fn scim2_scenario(devs: &[Deviation]) {
    let env = Env::start(SCOPE, "");
    let mut seeded = seed_scim2(&env.server);
    env.proxy.set_deviations(devs.iter().copied());
    let at = |step: &str| format!("{devs:?}, {step}");

    // (a) The initial sync adopts Ada and Bob by mail, creates Cy, adopts "Ops".
    INITIAL.write(&env);
    let initial = cycle(&env, &at("initial"));
    assert_scim2_state(&env, devs, &INITIAL, &seeded, &at("initial"));

    // (b) Eve is new; Fay's account exists, made behind scimsync's back, mail typed `other`.
    let fay = env.server.create_user(json!({
        "userName": "fay-legacy",
        "emails": [{"type": "other", "value": "Fay.Wray@example.org"}],
    }));
    seeded
        .ids
        .insert("u-fay", fay["id"].as_str().expect("id").into());
    HIRES.write(&env);
    let incremental = cycle(&env, &at("incremental"));
    assert_scim2_state(&env, devs, &HIRES, &seeded, &at("incremental"));

    // (c) Adds and removes in each group: no matching, so no listing.
    MOVES.write(&env);
    let members = cycle(&env, &at("members"));
    assert_scim2_state(&env, devs, &MOVES, &seeded, &at("members"));
    assert_eq!(count(&members, is_listing), 0, "{:?}", shown(&members));

    // (d) Nothing changed: nothing is sent.
    let idle = cycle(&env, &at("no change"));
    assert_eq!(
        env.proxy.count(),
        0,
        "{}: {:?}",
        at("no change"),
        shown(&idle)
    );

    // (e) The steady state: what was learned is used, not learned again.
    LATER.write(&env);
    let steady = cycle(&env, &at("steady"));
    assert_scim2_state(&env, devs, &LATER, &seeded, &at("steady"));
    let cycles = [&initial, &incremental, &members, &steady];
    let spc: usize = cycles.iter().map(|c| count(c, is_spc)).sum();
    assert!(
        spc <= 1,
        "{}: /ServiceProviderConfig read {spc} times",
        at("steady")
    );
    // Gus: a look by mail, one by userName, a POST; Staff: a PATCH. A target matched by
    // listing reads one page instead of the two looks.
    let listed = count(&steady, is_listing);
    assert!(
        listed <= usize::from(devs.contains(&FilterIgnoredEmpty)),
        "{}: listings {:?}",
        at("steady"),
        shown(&steady)
    );
    assert!(steady.len() <= 4, "{}: {:?}", at("steady"), shown(&steady));

    let swaps = swap_members(&env, &at("swap"), |phase, at| {
        assert_scim2_state(&env, devs, phase, &seeded, at)
    });
    cycle(&env, &at("no change after"));
    assert_eq!(env.proxy.count(), 0, "{}", at("no change after"));
    eprintln!(
        "requests {devs:?}: initial {}, incremental {}, members {}, no change {}, steady {}, swaps {swaps:?}",
        initial.len(),
        incremental.len(),
        members.len(),
        idle.len(),
        steady.len()
    );
}

#[test]
fn faithful_scim2_server() {
    scim2_scenario(&[]);
}

#[test]
fn emails_without_type() {
    scim2_scenario(&[EmailsWithoutType]);
}

#[test]
fn compound_filter_refused() {
    scim2_scenario(&[CompoundFilterRefused]);
}

#[test]
fn filter_ignored_empty() {
    scim2_scenario(&[FilterIgnoredEmpty]);
}

#[test]
fn members_ignored_on_create() {
    scim2_scenario(&[MembersIgnoredOnCreate]);
}

#[test]
fn member_path_remove_refused() {
    scim2_scenario(&[MemberPathRemoveRefused]);
}

#[test]
fn sub_attribute_path_501() {
    scim2_scenario(&[SubAttributePath501]);
}

#[test]
fn add_remove_combined_refused() {
    scim2_scenario(&[AddRemoveCombinedRefused]);
}

/// Every deviation at once (filters then answer empty before any is refused).
#[test]
fn all_deviations_at_once() {
    scim2_scenario(&[
        EmailsWithoutType,
        CompoundFilterRefused,
        FilterIgnoredEmpty,
        MembersIgnoredOnCreate,
        MemberPathRemoveRefused,
        SubAttributePath501,
        AddRemoveCombinedRefused,
    ]);
}

/// Every deviation but the empty filters, so that the compound filter is refused and the
/// other forms find only untyped e-mails.
#[test]
fn all_deviations_with_filters() {
    scim2_scenario(&[
        EmailsWithoutType,
        CompoundFilterRefused,
        MembersIgnoredOnCreate,
        MemberPathRemoveRefused,
        SubAttributePath501,
        AddRemoveCombinedRefused,
    ]);
}

/// The accounts and the group on django-scim2 before the initial sync: Ada's account under
/// her userName in another case (the server compares userNames without regard to case), a
/// stranger in the group "Ops" (members go in by PATCH: the server ignores them on POST).
fn seed_django(server: &ScimClient) -> Seeded {
    let ada = server.create_user(json!({
        "userName": "U-ADA",
        "name": {"givenName": "Old", "familyName": "Name"},
        "active": true,
    }));
    let stranger = server.create_user(json!({"userName": "stranger", "active": true}));
    let ops = server.create_group(json!({"displayName": "Ops"}));
    server.patch(
        &format!("/Groups/{}", ops["id"].as_str().expect("id")),
        ScimClient::patch_op(json!([
            {"op": "add", "path": "members", "value": [{"value": stranger["id"]}]}
        ])),
    );
    let id = |v: &Value| v["id"].as_str().expect("id").to_owned();
    Seeded {
        ids: BTreeMap::from([("u-ada", id(&ada))]),
        stranger: server.get(&format!("/Users/{}", id(&stranger))),
    }
}

/// The exact state of a django-scim2 target after `phase`, with what it supports.
fn assert_django_state(env: &Env, phase: &Phase, seeded: &Seeded, at: &str) {
    let users = env.users();
    let mut want: BTreeSet<&str> = phase.users.iter().copied().collect();
    want.insert("stranger");
    assert_eq!(
        users.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        want,
        "{at}: the target's accounts; calls: {:#?}",
        shown(&env.proxy.records())
    );
    for (name, u) in &users {
        if name == "stranger" {
            assert_eq!(u, &seeded.stranger, "{at}: the stranger was written");
            continue;
        }
        let src = person(name);
        if let Some(id) = seeded.ids.get(name.as_str()) {
            assert_eq!(u["id"], json!(id), "{at}: {name} was adopted");
        }
        assert_eq!(u["name"]["givenName"], src["givenName"], "{at}: {u}");
        assert_eq!(u["name"]["familyName"], src["surname"], "{at}: {u}");
        assert_eq!(u["active"], json!(true), "{at}: {u}");
    }
    assert_eq!(env.groups(), phase.groups(), "{at}: the groups");
}

#[test]
fn django_scim2() {
    let env = Env::start_with(ServerKind::Django, SCOPE, "");
    let mut seeded = seed_django(&env.server);

    INITIAL.write(&env);
    let initial = cycle(&env, "django, initial");
    assert_django_state(&env, &INITIAL, &seeded, "django, initial");

    let fay = env.server.create_user(json!({
        "userName": "u-fay",
        "name": {"givenName": "F", "familyName": "W"},
        "active": true,
    }));
    seeded
        .ids
        .insert("u-fay", fay["id"].as_str().expect("id").into());
    HIRES.write(&env);
    let incremental = cycle(&env, "django, incremental");
    assert_django_state(&env, &HIRES, &seeded, "django, incremental");

    MOVES.write(&env);
    let members = cycle(&env, "django, members");
    assert_django_state(&env, &MOVES, &seeded, "django, members");

    let idle = cycle(&env, "django, no change");
    assert_eq!(
        env.proxy.count(),
        0,
        "django, no change: {:?}",
        shown(&idle)
    );

    LATER.write(&env);
    let steady = cycle(&env, "django, steady");
    assert_django_state(&env, &LATER, &seeded, "django, steady");
    // Matched by listing (filter.supported = false, read once): a page of users, the POST,
    // the PATCH of Staff.
    let cycles = [&initial, &incremental, &members, &steady];
    let spc: usize = cycles.iter().map(|c| count(c, is_spc)).sum();
    assert!(spc <= 1, "django: /ServiceProviderConfig read {spc} times");
    assert!(steady.len() <= 3, "django, steady: {:?}", shown(&steady));
    let swaps = swap_members(&env, "django, swap", |phase, at| {
        assert_django_state(&env, phase, &seeded, at)
    });
    cycle(&env, "django, no change after");
    assert_eq!(env.proxy.count(), 0, "django, no change after");
    // What was learned, as `check` shows it in the spelling of `[target.compat]`.
    let out = env.scimsync(&["check"]);
    out.assert_success();
    for said in [
        // By listing (its /ServiceProviderConfig says filter.supported = false), or by filter
        // when a userName query found an account first: django-scim2 does filter userName.
        "matching users by userName: ok, by ",
        "group_members_on_create = false (learned)",
        "member_remove = value_list (learned)",
        "patch_op_case = lower (default)",
    ] {
        assert!(out.stdout.contains(said), "{said}: {out}");
    }
    eprintln!(
        "requests django: initial {}, incremental {}, members {}, no change {}, steady {}, swaps {swaps:?}",
        initial.len(),
        incremental.len(),
        members.len(),
        idle.len(),
        steady.len()
    );
}

/// `check` says how accounts will be found, by running the real matching against an account
/// the target lists; it fails when that cannot be done.
#[test]
fn check_reports_the_matching_that_works_and_fails_when_none_does() {
    let env = Env::start(SCOPE, "");
    env.server.create_user(json!({
        "userName": "ada-legacy",
        "emails": [{"type": "work", "value": "ada.lovelace@example.org"}],
    }));
    INITIAL.write(&env);
    let line = |out: &RunOutput, by: &str| {
        let needle = format!(r#"matching users by {by}: "#);
        out.stdout
            .lines()
            .find(|l| l.contains(&needle))
            .unwrap_or_else(|| panic!("no line about {by}: {out}"))
            .to_owned()
    };
    let mail = r#"emails[type eq "work"].value"#;

    env.proxy.set_deviations([CompoundFilterRefused]);
    let out = env.scimsync(&["check"]);
    out.assert_success();
    // Without a type in it, the form finds a mail whatever its type.
    assert!(
        line(&out, mail).ends_with(
            r#"ok, by filter (attr.value eq "…"; it found an account the target lists)"#
        ),
        "{out}"
    );
    assert!(line(&out, "userName").contains("ok, by filter"), "{out}");

    env.proxy.set_deviations([FilterIgnoredEmpty]);
    let out = env.scimsync(&["check"]);
    out.assert_success();
    for by in [mail, "userName"] {
        assert!(
            line(&out, by).ends_with(
                "ok, by listing the target (its /ServiceProviderConfig says filter.supported = false)"
            ),
            "{out}"
        );
    }

    // Every filter form refused, and the listing too: check fails.
    env.proxy.set_deviations([]);
    let refused = std::iter::repeat_n(Fault::Status(400), 20);
    env.proxy
        .set_route_faults("/Users", std::iter::once(Fault::Pass).chain(refused));
    let out = env.scimsync(&["check"]);
    assert_ne!(out.code, 0, "{out}");
    assert!(line(&out, mail).contains("FAILED"), "{out}");
}

/// A `501` on a PATCH is not sent again; the attribute it refused is reported once, while the
/// other attributes of the same PATCH apply; later PATCHes leave it out.
#[test]
fn a_501_on_a_patch_is_not_retried_and_the_other_attributes_apply() {
    let env = Env::start(r#"groups = ["Staff"]"#, "concurrency = 1");
    let ids = ["u-ada", "u-bob", "u-cy"];
    let write = |surname: &str, department: &str| {
        let users: Vec<Value> = ids
            .iter()
            .map(|id| {
                let mut u = person(id);
                u["surname"] = json!(surname);
                u["department"] = json!(department);
                u
            })
            .collect();
        env.directory(&users, &[group("g-staff", "Staff", &ids)]);
    };
    write("Lovelace", "Engineering");
    cycle(&env, "initial");
    env.proxy.set_deviations([SubAttributePath501]);

    write("Newname", "Research");
    let out = env.sync(&[]);
    out.assert_success();
    let patches: Vec<(String, Value, u16)> = env
        .proxy
        .records()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| (r.path.clone(), r.body.clone().expect("body"), r.status))
        .collect();
    let ops = |p: &(String, Value, u16)| -> Vec<String> {
        p.1["Operations"]
            .as_array()
            .expect("ops")
            .iter()
            .map(|o| o["path"].as_str().expect("path").to_owned())
            .collect()
    };
    let dept = format!("{ENTERPRISE}:department");
    // The first user's PATCH is refused, then goes one operation at a time; the others'
    // leave the refused attribute out.
    let statuses: Vec<u16> = patches.iter().map(|p| p.2).collect();
    assert_eq!(statuses, [501, 501, 204, 204, 204], "{patches:#?}");
    assert_eq!(ops(&patches[0]), ["name.formatted", dept.as_str()]);
    assert_eq!(ops(&patches[1]), ["name.formatted"]);
    for p in &patches[2..] {
        assert_eq!(ops(p), [dept.as_str()], "{patches:#?}");
    }
    let distinct: BTreeSet<String> = patches.iter().map(|p| format!("{} {}", p.0, p.1)).collect();
    assert_eq!(distinct.len(), patches.len(), "a PATCH was sent twice");
    let reported = |out: &RunOutput| {
        let lines = out.stdout.lines().chain(out.stderr.lines());
        lines
            .filter(|l| l.contains("refuses name.formatted"))
            .count()
    };
    assert_eq!(reported(&out), 1, "{out}");
    assert!(out.stdout.contains("updated 3,"), "{out}");
    assert!(out.stdout.contains("failed 0"), "{out}");
    for (name, u) in env.users() {
        assert_eq!(u[ENTERPRISE]["department"], "Research", "{name}");
        let given = person(&name)["givenName"]
            .as_str()
            .expect("given")
            .to_owned();
        assert_eq!(u["name"]["formatted"], json!(format!("{given} Lovelace")));
    }

    // Nothing to send, nothing sent; the refusal is still said, once.
    let out = env.sync(&[]);
    out.assert_success();
    assert_eq!(env.proxy.count(), 0, "{:?}", env.proxy.calls());
    assert_eq!(reported(&out), 1, "{out}");
}

/// Learned from accounts that all carry their mail typed `work`, the filter form must still
/// find an account whose mail has no type, made later.
#[test]
fn an_untyped_account_made_after_learning_is_still_found() {
    let env = Env::start(SCOPE, "");
    env.server.create_user(json!({
        "userName": "ada-legacy",
        "emails": [{"type": "work", "value": "ada.lovelace@example.org"}],
    }));
    INITIAL.write(&env);
    cycle(&env, "initial");
    HIRES.write(&env);
    cycle(&env, "new hires");
    let gus = env.server.create_user(json!({
        "userName": "gus-legacy",
        "emails": [{"value": "gus.grissom@example.org"}],
    }));
    LATER.write(&env);
    let calls = cycle(&env, "gus");
    let users = env.users();
    assert!(!users.contains_key("gus-legacy"), "{:#?}", shown(&calls));
    assert_eq!(users["u-gus"]["id"], gus["id"]);
}

/// A refusal learned on one account changes no other: the attribute the target refused is no
/// longer kept in step, and the values the other accounts hold are neither cleared nor held
/// as a mass clear.
#[test]
fn a_refusal_learned_on_one_account_clears_nothing_on_the_others() {
    let env = Env::start(r#"groups = ["Staff"]"#, "");
    let ids: Vec<&str> = PEOPLE.iter().map(|p| p.0).collect();
    let write = |ada_surname: &str| {
        let users: Vec<Value> = ids
            .iter()
            .map(|id| {
                let mut u = person(id);
                if *id == "u-ada" {
                    u["surname"] = json!(ada_surname);
                }
                u
            })
            .collect();
        env.directory(&users, &[group("g-staff", "Staff", &ids)]);
    };
    write("Lovelace");
    cycle(&env, "initial");
    env.proxy.set_deviations([SubAttributePath501]);
    write("King");
    let out = env.sync(&[]);
    out.assert_success();
    assert!(out.stderr.contains("refuses this attribute"), "{out}");
    // Ada's only change was refused: nothing changed, and the report says so.
    assert!(out.stdout.contains("updated 0,"), "{out}");
    let logs = env.scimsync(&["logs", "--json"]);
    assert!(
        logs.stdout
            .contains("the target refuses name.formatted; nothing changed"),
        "{logs}"
    );

    // The next cycles: nothing to send, nothing held, every other account keeps its name.
    for at in ["after the refusal", "once more"] {
        let out = env.sync(&[]);
        out.assert_success();
        assert!(!out.stdout.contains("held"), "{at}: {out}");
        let unchanged = format!("updated 0, deprovisioned 0, unchanged {},", ids.len());
        assert!(out.stdout.contains(&unchanged), "{at}: {out}");
        assert_eq!(env.proxy.count(), 0, "{at}: {:?}", env.proxy.calls());
    }
    for (name, u) in env.users() {
        let want = match name.as_str() {
            "u-ada" => "Ada Lovelace".to_owned(),
            _ => format!(
                "{} {}",
                person(&name)["givenName"].as_str().expect("given"),
                person(&name)["surname"].as_str().expect("surname")
            ),
        };
        assert_eq!(u["name"]["formatted"], json!(want), "{name}");
    }
}

/// A target that refuses the value-filtered e-mail path gets the whole `emails` instead, built
/// from the account as it is: the addresses scimsync does not manage are kept, for the account
/// that taught it and for the next one.
#[test]
fn the_whole_emails_keep_the_addresses_scimsync_does_not_manage() {
    let env = Env::start(r#"groups = ["Staff"]"#, "");
    let ids = ["u-ada", "u-bob"];
    let home = |id: &str| json!({"type": "home", "value": format!("{id}@home.example")});
    for id in ids {
        env.server.create_user(json!({
            "userName": format!("{id}-legacy"),
            "emails": [home(id), {"value": mail(id)}],
        }));
    }
    let write = |domain: &str| {
        let users: Vec<Value> = ids
            .iter()
            .map(|id| {
                let mut u = person(id);
                u["mail"] = json!(mail(id).replace("example.org", domain));
                u
            })
            .collect();
        env.directory(&users, &[group("g-staff", "Staff", &ids)]);
    };
    let emails = |id: &str| env.users()[id]["emails"].clone();
    write("example.org");
    cycle(&env, "initial");
    for id in ids {
        // Adopted: the address given its type in place, the home address kept.
        assert_eq!(
            emails(id),
            json!([home(id), {"value": mail(id), "type": "work"}]),
            "{id}"
        );
    }

    env.proxy.set_deviations([SubAttributePath501]);
    write("example.net");
    let calls = cycle(&env, "new domain");
    for id in ids {
        let new = mail(id).replace("example.org", "example.net");
        assert_eq!(
            emails(id),
            json!([home(id), {"value": new, "type": "work"}]),
            "{id}: {:#?}",
            shown(&calls)
        );
    }
    let out = env.scimsync(&["check"]);
    assert!(
        out.stdout
            .contains(r#"emails[type eq "work"].value is sent as the whole attribute (learned)"#),
        "{out}"
    );
}
