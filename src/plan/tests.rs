use super::*;
use crate::state::{GroupEntry, MatchedBy};
use serde_json::json;

fn desired(pairs: &[(&str, Json)]) -> Desired {
    Desired {
        attrs: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        ..Default::default()
    }
}

fn entry(d: &Desired, scim: &str) -> UserEntry {
    UserEntry {
        scim_id: ScimId::from(scim),
        attrs: d.attrs.clone(),
        hash: hash(&d.attrs),
        active: true,
        deprovisioned: false,
        matched_by: MatchedBy::Created,
        changed_at: String::new(),
    }
}

fn opts() -> PlanOptions {
    PlanOptions {
        deletion_threshold: 10,
        ..Default::default()
    }
}

/// A snapshot of users b, c and gone, and the desired state: b renamed (b2), c the same.
fn changed_same_and_gone() -> (BTreeMap<SourceId, UserEntry>, Desired, Desired) {
    let b = desired(&[("userName", json!("b")), ("name.formatted", json!("B"))]);
    let b2 = desired(&[("userName", json!("b")), ("name.formatted", json!("B2"))]);
    let c = desired(&[("userName", json!("c"))]);
    let snapshot = [
        (SourceId::from("b"), entry(&b, "sb")),
        (SourceId::from("c"), entry(&c, "sc")),
        (SourceId::from("gone"), entry(&c, "sg")),
    ]
    .into();
    (snapshot, b2, c)
}

#[test]
fn an_attribute_sent_only_on_create_is_no_clear() {
    // b was created with name.formatted; the target has since refused it in a PATCH, so
    // the desired state sends it only on create.
    let (snapshot, _, c) = changed_same_and_gone();
    let mut b = desired(&[("userName", json!("b"))]);
    b.on_create.insert("name.formatted".into(), json!("B"));
    let want: BTreeMap<_, _> = [(SourceId::from("b"), b), (SourceId::from("c"), c)].into();
    let protected = BTreeSet::from([SourceId::from("gone")]);
    let plan = plan_users(&snapshot, &want, &protected, opts());
    assert_eq!(plan.ops, vec![]);
    assert_eq!(plan.unchanged, 2);
    // A value the source no longer has is still cleared.
    let mut old = snapshot[&SourceId::from("b")].attrs.clone();
    old.insert("title".into(), json!("T"));
    let mut b = desired(&[("userName", json!("b"))]);
    b.on_create.insert("name.formatted".into(), json!("B"));
    let changes = diff_desired(&old, &b);
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].path.as_str(), changes[0].new.clone()),
        ("title", None)
    );
}

#[test]
fn new_changed_same_and_gone() {
    let a = desired(&[("userName", json!("a")), ("active", json!(true))]);
    let (snapshot, b2, c) = changed_same_and_gone();
    let want: BTreeMap<_, _> = [
        (SourceId::from("a"), a.clone()),
        (SourceId::from("b"), b2.clone()),
        (SourceId::from("c"), c),
    ]
    .into();
    let plan = plan_users(&snapshot, &want, &BTreeSet::new(), opts());
    assert_eq!(plan.unchanged, 1);
    assert_eq!(
        plan.ops,
        vec![
            UserOp::MatchOrCreate {
                id: "a".into(),
                desired: a
            },
            UserOp::Update {
                id: "b".into(),
                scim_id: "sb".into(),
                changes: vec![Change {
                    path: "name.formatted".into(),
                    old: Some(json!("B")),
                    new: Some(json!("B2"))
                }],
                desired: b2,
            },
            UserOp::Deprovision {
                id: "gone".into(),
                scim_id: "sg".into(),
                mode: DeprovisionMode::Deactivate
            },
        ]
    );
}

#[test]
fn the_owned_plan_decodes_only_the_users_whose_hash_differs() {
    let (snapshot, b2, c) = changed_same_and_gone();
    let want: BTreeMap<_, _> = [(SourceId::from("b"), b2), (SourceId::from("c"), c)].into();
    let known = snapshot
        .iter()
        .map(|(id, e)| (id.clone(), UserSummary::from(e)))
        .collect();
    let mut decoded = Vec::new();
    let plan = plan_users_owned(&known, want.clone(), &BTreeSet::new(), opts(), |id| {
        decoded.push(id.clone());
        Ok::<_, String>(snapshot[id].attrs.clone())
    })
    .expect("no decode fails");
    assert_eq!(decoded, vec![SourceId::from("b")]);
    assert_eq!(
        plan.ops,
        vec![
            UserOp::Update {
                id: "b".into(),
                scim_id: "sb".into(),
                changes: vec![Change {
                    path: "name.formatted".into(),
                    old: Some(json!("B")),
                    new: Some(json!("B2"))
                }],
                desired: want[&SourceId::from("b")].clone(),
            },
            UserOp::Deprovision {
                id: "gone".into(),
                scim_id: "sg".into(),
                mode: DeprovisionMode::Deactivate
            },
        ]
    );
    assert_eq!((plan.unchanged, plan.held.len()), (1, 0));

    // A snapshot entry that cannot be decoded stops the plan instead of planning blind.
    let failed = plan_users_owned(&known, want, &BTreeSet::new(), opts(), |id| {
        Err(format!("{id} is corrupt"))
    });
    assert_eq!(failed.err(), Some("b is corrupt".to_owned()));
}

#[test]
fn protected_and_already_deprovisioned_are_left_alone() {
    let c = desired(&[("userName", json!("c"))]);
    let mut done = entry(&c, "s2");
    done.deprovisioned = true;
    let snapshot: BTreeMap<_, _> = [
        (SourceId::from("p"), entry(&c, "s1")),
        (SourceId::from("d"), done),
    ]
    .into();
    let protected: BTreeSet<_> = [SourceId::from("p")].into();
    let plan = plan_users(&snapshot, &BTreeMap::new(), &protected, opts());
    assert!(plan.ops.is_empty(), "{:?}", plan.ops);
}

#[test]
fn deprovisions_over_the_threshold_are_held() {
    let c = desired(&[("userName", json!("c"))]);
    let snapshot: BTreeMap<_, _> = (0..3)
        .map(|i| (SourceId(format!("u{i}")), entry(&c, "s")))
        .collect();
    let o = PlanOptions {
        deletion_threshold: 2,
        ..opts()
    };
    let plan = plan_users(&snapshot, &BTreeMap::new(), &BTreeSet::new(), o);
    assert!(plan.ops.is_empty());
    assert_eq!(plan.held.len(), 3);
    let plan = plan_users(
        &snapshot,
        &BTreeMap::new(),
        &BTreeSet::new(),
        PlanOptions {
            allow_deletes: true,
            ..o
        },
    );
    assert_eq!(plan.ops.len(), 3);
}

#[test]
fn deprovisions_over_the_threshold_percent_are_held() {
    let c = desired(&[("userName", json!("c"))]);
    let snapshot: BTreeMap<_, _> = (0..10)
        .map(|i| (SourceId(format!("u{i}")), entry(&c, "s")))
        .collect();
    let keep: BTreeMap<_, _> = (0..7)
        .map(|i| (SourceId(format!("u{i}")), c.clone()))
        .collect();
    let o = PlanOptions {
        deletion_threshold: 100,
        deletion_threshold_percent: Some(20.0),
        ..opts()
    };
    // 3 of 10 is 30%: over 20%, held although under the count.
    let plan = plan_users(&snapshot, &keep, &BTreeSet::new(), o);
    assert_eq!(plan.held.len(), 3);
    // The reason is the percentage, not the count (regression: it was reported as the
    // count threshold).
    assert_eq!(
        plan.hold.as_ref().map(ToString::to_string).as_deref(),
        Some("more than deletion_threshold_percent = 20% of the managed objects")
    );
    // 2 of 10 is exactly 20%: carried out.
    let keep: BTreeMap<_, _> = (0..8)
        .map(|i| (SourceId(format!("u{i}")), c.clone()))
        .collect();
    let plan = plan_users(&snapshot, &keep, &BTreeSet::new(), o);
    assert!(plan.held.is_empty());
    assert_eq!(plan.ops.len(), 2);
    assert_eq!(o.holds(0, 0), None);
}

#[test]
fn full_sync_rematches_everything() {
    let c = desired(&[("userName", json!("c"))]);
    let snapshot: BTreeMap<_, _> = [(SourceId::from("c"), entry(&c, "s"))].into();
    let want: BTreeMap<_, _> = [(SourceId::from("c"), c)].into();
    let plan = plan_users(
        &snapshot,
        &want,
        &BTreeSet::new(),
        PlanOptions {
            full: true,
            ..opts()
        },
    );
    assert!(matches!(
        plan.ops.as_slice(),
        [UserOp::MatchOrCreate { .. }]
    ));
}

fn group_entry(attrs: &Desired, members: &[(&str, &str)]) -> GroupEntry {
    GroupEntry {
        scim_id: ScimId::from("sg"),
        attrs: attrs.attrs.clone(),
        members: members
            .iter()
            .map(|(m, s)| (SourceId::from(*m), ScimId::from(*s)))
            .collect(),
        matched_by: MatchedBy::Created,
        changed_at: String::new(),
    }
}

#[test]
fn group_rename_and_member_changes_only_for_members_with_accounts() {
    let old = desired(&[("displayName", json!("Staff"))]);
    let new = desired(&[("displayName", json!("Crew"))]);
    let snapshot: BTreeMap<_, _> = [(
        SourceId::from("g"),
        group_entry(&old, &[("a", "sa"), ("b", "sb")]),
    )]
    .into();
    let members: BTreeSet<SourceId> = ["a", "c", "no-account"]
        .iter()
        .map(|s| SourceId::from(*s))
        .collect();
    let want: BTreeMap<_, _> = [(
        SourceId::from("g"),
        DesiredGroup {
            desired: new.clone(),
            members,
        },
    )]
    .into();
    let accounts: BTreeSet<SourceId> = ["a", "b", "c"].iter().map(|s| SourceId::from(*s)).collect();
    let plan = plan_groups(&snapshot, &want, &accounts, &BTreeSet::new(), opts());
    match plan.ops.as_slice() {
        [GroupOp::Update {
            changes,
            add,
            remove,
            ..
        }] => {
            assert_eq!(
                changes,
                &vec![Change {
                    path: "displayName".into(),
                    old: Some(json!("Staff")),
                    new: Some(json!("Crew"))
                }]
            );
            assert_eq!(add, &vec![SourceId::from("c")]);
            assert_eq!(remove, &vec![(SourceId::from("b"), ScimId::from("sb"))]);
        }
        other => panic!("expected one update, got {other:?}"),
    }
    // Same attributes, and the only missing member has no account: nothing to do.
    let members: BTreeSet<SourceId> = ["a", "b", "no-account"]
        .iter()
        .map(|s| SourceId::from(*s))
        .collect();
    let want: BTreeMap<_, _> = [(
        SourceId::from("g"),
        DesiredGroup {
            desired: old,
            members,
        },
    )]
    .into();
    let plan = plan_groups(&snapshot, &want, &accounts, &BTreeSet::new(), opts());
    assert!(plan.ops.is_empty());
    assert_eq!(plan.unchanged, 1);
}

#[test]
fn a_group_leaving_scope_is_deprovisioned_with_its_managed_members() {
    let old = desired(&[("displayName", json!("Staff"))]);
    let snapshot: BTreeMap<_, _> =
        [(SourceId::from("g"), group_entry(&old, &[("a", "sa")]))].into();
    let plan = plan_groups(
        &snapshot,
        &BTreeMap::new(),
        &BTreeSet::new(),
        &BTreeSet::new(),
        opts(),
    );
    assert_eq!(
        plan.ops,
        vec![GroupOp::Deprovision {
            id: "g".into(),
            scim_id: "sg".into(),
            mode: DeprovisionMode::Deactivate,
            members: vec!["sa".into()]
        }]
    );
}
