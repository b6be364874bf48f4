use super::*;

fn openldap() -> Converter {
    Converter::new(&BTreeMap::new(), &BTreeMap::new())
}

fn ad() -> Converter {
    let users = [
        ("objectId", "objectGUID"),
        ("userPrincipalName", "userPrincipalName"),
        ("mailNickname", "sAMAccountName"),
        ("onPremisesSecurityIdentifier", "objectSid"),
    ];
    let groups = [("objectId", "objectGUID")];
    let map = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect::<BTreeMap<_, _>>()
    };
    Converter::new(&map(&users), &map(&groups))
}

fn person(uid: &str, uuid: &str) -> Entry {
    Entry::new(
        &format!("uid={uid},ou=People,dc=example,dc=org"),
        [
            ("entryUUID", vec![uuid.to_owned()]),
            ("uid", vec![uid.to_owned()]),
            ("cn", vec![format!("{uid} cn")]),
            ("sn", vec![format!("{uid} sn")]),
            ("mail", vec![format!("{uid}@example.org")]),
        ],
    )
}

fn group(cn: &str, uuid: &str, attr: &str, members: &[&str]) -> Entry {
    Entry::new(
        &format!("cn={cn},ou=Groups,dc=example,dc=org"),
        [
            ("entryUUID", vec![uuid.to_owned()]),
            ("cn", vec![cn.to_owned()]),
            (attr, members.iter().map(|m| (*m).to_owned()).collect()),
        ],
    )
}

#[test]
fn default_names_rename_inetorgperson_attributes() {
    let c = openldap();
    let u = c.user(&person("ada", "u-1")).expect("user");
    assert_eq!(u.id.as_str(), "u-1");
    assert_eq!(u.get_str("mail"), Some("ada@example.org"));
    assert_eq!(u.get_str("surname"), Some("ada sn"));
    assert_eq!(u.get_str("mailNickname"), Some("ada"));
    assert_eq!(u.get_str("displayName"), Some("ada cn"));
    assert_eq!(u.get_str("dn"), Some("uid=ada,ou=People,dc=example,dc=org"));
    assert_eq!(u.get_str("IsSoftDeleted"), Some("False"));
    assert!(!u.has("sn"), "only the renamed attributes are there");
    assert!(!u.has("userPrincipalName"));
    assert_eq!(
        c.user_attrs(),
        [
            "cn",
            "givenName",
            "mail",
            "uid",
            "manager",
            "entryUUID",
            "sn",
            "userAccountControl",
            "primaryGroupID",
            "objectSid"
        ]
    );
}

#[test]
fn configured_names_add_to_and_override_the_defaults() {
    let configured: BTreeMap<String, String> = [
        ("surname", "familyName"),
        ("department", "departmentNumber"),
        ("displayName", ""),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    let m = AttrMap::users(&configured);
    assert_eq!(m.get("SURNAME"), Some("familyName"));
    assert_eq!(m.get("department"), Some("departmentNumber"));
    assert_eq!(m.get("displayName"), None, "an empty name drops a default");
    assert_eq!(m.get("mail"), Some("mail"));
}

#[test]
fn multi_valued_attributes_stay_lists() {
    let mut e = person("ada", "u-1");
    e = Entry::new(
        &e.dn,
        [
            ("entryUUID", vec!["u-1".to_owned()]),
            ("mail", vec!["a@x".to_owned(), "b@x".to_owned()]),
        ],
    );
    let u = openldap().user(&e).expect("user");
    assert_eq!(
        u.get("mail"),
        Some(&AttrValue::Multi(vec!["a@x".into(), "b@x".into()]))
    );
}

#[test]
fn an_entry_without_object_id_is_rejected_not_guessed() {
    let e = Entry::new("uid=x,dc=example,dc=org", [("uid", vec!["x"])]);
    let r = openldap().user(&e).expect_err("no entryUUID");
    assert_eq!(r.id, None);
    assert_eq!(
        r.reason,
        "uid=x,dc=example,dc=org: no entryUUID (the objectId attribute); the entry is skipped"
    );
}

#[test]
fn active_directory_guid_sid_and_disabled_account() {
    let guid = [
        0x33u8, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        0xff,
    ];
    let mut sid = vec![1u8, 5, 0, 0, 0, 0, 0, 5];
    for sub in [21u32, 1, 2, 3, 1104] {
        sid.extend_from_slice(&sub.to_le_bytes());
    }
    // As ldap3 hands them over: binary values apart from text ones.
    let search = ldap3::SearchEntry {
        dn: "CN=Cad Bane,OU=Hunters,DC=corp,DC=example".into(),
        attrs: [
            (
                "userPrincipalName".to_owned(),
                vec!["cad@corp.example".to_owned()],
            ),
            ("sAMAccountName".to_owned(), vec!["cbane".to_owned()]),
            ("userAccountControl".to_owned(), vec!["514".to_owned()]),
        ]
        .into(),
        bin_attrs: [
            ("objectGUID".to_owned(), vec![guid.to_vec()]),
            ("objectSid".to_owned(), vec![sid]),
        ]
        .into(),
    };
    let u = ad().user(&Entry::from_search(search)).expect("user");
    assert_eq!(u.id.as_str(), "00112233-4455-6677-8899-aabbccddeeff");
    assert_eq!(
        u.get_str("onPremisesSecurityIdentifier"),
        Some("S-1-5-21-1-2-3-1104")
    );
    assert_eq!(u.get_str("mailNickname"), Some("cbane"));
    assert_eq!(u.get_str("accountEnabled"), Some("False"));
    assert_eq!(u.get_str("IsSoftDeleted"), Some("True"));

    let enabled = Entry::new(
        "CN=Boba,DC=corp,DC=example",
        [
            ("objectGUID", vec![vec![7u8; 16]]),
            ("userAccountControl", vec![b"512".to_vec()]),
        ],
    );
    let u = ad().user(&enabled).expect("user");
    assert_eq!(u.get_str("IsSoftDeleted"), Some("False"));
    let short = Entry::new("CN=X,DC=corp", [("objectGUID", vec![vec![1u8; 3]])]);
    let r = ad().user(&short).expect_err("bad guid");
    assert!(r.reason.ends_with("objectGUID is 3 bytes, not 16"), "{r:?}");
}

#[test]
fn members_resolve_by_normalised_dn_unique_member_and_member_uid() {
    let c = openldap();
    let users = [
        person("ada", "u-1"),
        person("bob", "u-2"),
        person("cy", "u-3"),
    ];
    let groups = [
        group(
            "Staff",
            "g-1",
            "member",
            &[
                "UID=Ada, OU=people,DC=Example,DC=org",
                "cn=Nested,ou=Groups,dc=example,dc=org",
                "uid=gone,ou=People,dc=example,dc=org",
            ],
        ),
        group(
            "Nested",
            "g-2",
            "uniqueMember",
            &["uid=bob,ou=People,dc=example,dc=org#'0101'B"],
        ),
        group("Posix", "g-3", "memberUid", &["cy", "ADA", "nobody"]),
    ];
    let d = c.directory(&users, &groups).expect("directory");
    let members =
        |i: usize| -> Vec<&str> { d.groups[i].members.iter().map(SourceId::as_str).collect() };
    assert_eq!(
        members(0),
        ["u-1", "g-2"],
        "a nested group is listed by its id"
    );
    assert_eq!(members(1), ["u-2"]);
    assert_eq!(members(2), ["u-3", "u-1"]);
    assert_eq!(
        d.groups[1].object.get_str("dn"),
        Some("cn=Nested,ou=Groups,dc=example,dc=org")
    );
    assert_eq!(d.groups[0].object.get_str("displayName"), Some("Staff"));
}

#[test]
fn a_shared_object_id_fails_the_read() {
    let c = openldap();
    let e = c
        .directory(
            &[person("ada", "same")],
            &[group("G", "same", "member", &[])],
        )
        .expect_err("duplicate");
    assert!(
        e.to_string().starts_with(
            "cn=G,ou=Groups,dc=example,dc=org: objectId \"same\" is also the objectId of uid=ada"
        ),
        "{e}"
    );
}

#[test]
fn users_converted_page_by_page_give_the_same_directory() {
    let c = openldap();
    let users = [
        person("ada", "u-1"),
        person("bob", "u-2"),
        person("cy", "u-3"),
    ];
    let groups = [
        group(
            "Staff",
            "g-1",
            "member",
            &[
                "uid=cy,ou=People,dc=example,dc=org",
                "cn=Posix,ou=Groups,dc=example,dc=org",
            ],
        ),
        group("Posix", "g-2", "memberUid", &["bob", "ada"]),
    ];
    let mut building = c.building();
    building.users(&users[..2]).expect("first page");
    building.users(&users[2..]).expect("second page");
    let paged = building.finish(&groups).expect("directory");
    let whole = c.directory(&users, &groups).expect("directory");
    assert_eq!(paged.users, whole.users);
    assert_eq!(paged.groups, whole.groups);
    let members: Vec<&str> = paged.groups[0]
        .members
        .iter()
        .map(SourceId::as_str)
        .collect();
    assert_eq!(members, ["u-3", "g-2"]);

    let mut building = c.building();
    building.users(&users[..1]).expect("first page");
    let e = building
        .users(&[person("ada2", "u-1")])
        .expect_err("the objectId of a user on an earlier page");
    assert_eq!(
        e.to_string(),
        "uid=ada2,ou=People,dc=example,dc=org: objectId \"u-1\" is also the objectId of uid=ada,ou=People,dc=example,dc=org; every user and group needs a unique objectId"
    );
}

#[test]
fn ranged_parts_merge_into_the_attribute() {
    let first: Vec<String> = (0..1500).map(|i| format!("cn=u{i},dc=x")).collect();
    let mut e = Entry::new("cn=big,dc=x", [("member;range=0-1499", first)]);
    assert_eq!(e.values("member").len(), 1500);
    assert_eq!(e.pending.len(), 1);
    let r = e.pending.pop().expect("pending");
    assert_eq!(r.next_request().as_deref(), Some("member;range=1500-*"));
    let last = Entry::new(
        "cn=big,dc=x",
        [("member;range=1500-*", vec!["cn=u1500,dc=x"])],
    );
    e.absorb(last, "member");
    assert_eq!(e.values("MEMBER").len(), 1501);
    assert!(e.pending.is_empty());
}

fn managed(uid: &str, uuid: &str, attr: &str, manager: &str) -> Entry {
    let mut e = person(uid, uuid);
    e.add(attr.to_owned(), vec![manager.as_bytes().to_vec()]);
    e
}

#[test]
fn manager_dns_become_the_object_ids_of_users_read() {
    let c = openldap();
    let users = [
        person("boss", "u-1"),
        managed(
            "ada",
            "u-2",
            "manager",
            "UID=Boss, OU=people,DC=Example,DC=org",
        ),
        managed(
            "bob",
            "u-3",
            "manager",
            "uid=gone,ou=People,dc=example,dc=org",
        ),
        managed(
            "cy",
            "u-4",
            "manager",
            "cn=Staff,ou=Groups,dc=example,dc=org",
        ),
        // Read in a later page than the user it manages.
        managed(
            "dee",
            "u-5",
            "manager",
            "uid=eve,ou=People,dc=example,dc=org",
        ),
        person("eve", "u-6"),
    ];
    let groups = [group("Staff", "g-1", "member", &[])];
    let d = c.directory(&users, &groups).expect("directory");
    let manager: Vec<_> = d.users.iter().map(|u| u.get_str("manager")).collect();
    assert_eq!(
        manager,
        [None, Some("u-1"), None, None, Some("u-6"), None],
        "a DN that is no user read (gone, a group) leaves no manager"
    );

    // Read from another LDAP attribute, the source attribute is still `manager`.
    let renamed: BTreeMap<String, String> = [("manager".to_owned(), "seeAlso".to_owned())].into();
    let c = Converter::new(&renamed, &BTreeMap::new());
    assert!(c.user_attrs().contains(&"seeAlso".to_owned()));
    let users = [
        person("boss", "u-1"),
        managed(
            "ada",
            "u-2",
            "seeAlso",
            "uid=boss,ou=People,dc=example,dc=org",
        ),
    ];
    let d = c.directory(&users, &[]).expect("directory");
    assert_eq!(d.users[1].get_str("manager"), Some("u-1"));
}

/// The bytes of `S-1-5-21-<domain>-<rid>`, as Active Directory sends `objectSid`.
fn sid(domain: [u32; 3], rid: u32) -> Vec<u8> {
    let mut raw = vec![1u8, 5, 0, 0, 0, 0, 0, 5];
    for sub in [21, domain[0], domain[1], domain[2], rid] {
        raw.extend_from_slice(&sub.to_le_bytes());
    }
    raw
}

const CORP: [u32; 3] = [1, 2, 3];

fn ad_person(cn: &str, n: u8, primary_group: &str) -> Entry {
    Entry::new(
        &format!("CN={cn},OU=Staff,DC=corp,DC=example"),
        [
            ("objectGUID", vec![vec![n; 16]]),
            ("objectSid", vec![sid(CORP, 1100 + u32::from(n))]),
            ("primaryGroupID", vec![primary_group.as_bytes().to_vec()]),
            ("userAccountControl", vec![b"512".to_vec()]),
            (
                "userPrincipalName",
                vec![format!("{cn}@corp.example").into_bytes()],
            ),
        ],
    )
}

fn ad_group(cn: &str, n: u8, rid: u32, members: &[&str]) -> Entry {
    Entry::new(
        &format!("CN={cn},OU=Groups,DC=corp,DC=example"),
        [
            ("objectGUID", vec![vec![n; 16]]),
            ("objectSid", vec![sid(CORP, rid)]),
            ("cn", vec![cn.as_bytes().to_vec()]),
            (
                "member",
                members.iter().map(|m| m.as_bytes().to_vec()).collect(),
            ),
        ],
    )
}

#[test]
fn an_active_directory_primary_group_has_its_users_as_direct_members() {
    let c = ad();
    assert!(c.group_attrs().contains(&"objectSid".to_owned()));
    let users = [
        ad_person("ada", 1, "513"),
        ad_person("bob", 2, "513"),
        ad_person("cy", 3, "1200"),
    ];
    let groups = [
        // Domain Users lists nobody in `member`, as AD writes it; Bob is listed anyway.
        ad_group(
            "Domain Users",
            0x51,
            513,
            &["CN=bob,OU=Staff,DC=corp,DC=example"],
        ),
        ad_group("Pilots", 0x52, 1200, &[]),
        ad_group("Crew", 0x53, 1300, &["CN=ada,OU=Staff,DC=corp,DC=example"]),
    ];
    let d = c.directory(&users, &groups).expect("directory");
    let id = |n: u8| ad::guid_string(&[n; 16]).expect("guid");
    let members = |i: usize| d.groups[i].members.clone();
    assert_eq!(
        members(0),
        [SourceId(id(2)), SourceId(id(1))],
        "no member twice"
    );
    assert_eq!(members(1), [SourceId(id(3))]);
    assert_eq!(members(2), [SourceId(id(1))]);

    // Assigned in scope, the primary group scopes its users.
    let config = crate::config::ScopeConfig {
        groups: vec!["Domain Users".into()],
        ..Default::default()
    };
    let scope = crate::scope::Scope::compile(&config).expect("scope");
    let scoped = crate::scope::apply(&d, &scope).expect("scoped");
    let mut expected = vec![SourceId(id(1)), SourceId(id(2))];
    expected.sort();
    assert_eq!(scoped.users.keys().cloned().collect::<Vec<_>>(), expected);
}
