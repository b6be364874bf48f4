#!/usr/bin/env python3
"""Measures how a django-scim2 server behaves, request by request, and prints a Markdown
transcript: each exact request, then the status and body the server answered.

    python3 tests/peers/django/probe.py http://127.0.0.1:PORT/scim/v2 TOKEN > transcript.md

The server must be empty when the probe starts (a fresh DjangoServer). The transcript goes in
BEHAVIOUR.md beside this file; `cargo test --test django_smoke -- --ignored transcript` starts a
fresh server and runs this probe. Standard library only.
"""
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

base, token = sys.argv[1].rstrip("/"), sys.argv[2]


def out(text=""):
    print(text)


def call(method, path, body=None, query=None, auth=True, raw=None, show=True):
    """Sends one request; prints it and the answer; returns (status, parsed body or text)."""
    url = base + path
    shown = path
    if query:
        url += "?" + urllib.parse.urlencode(query)
        shown += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    data = None
    if raw is not None:
        data = raw.encode()
    elif body is not None:
        data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if auth:
        request.add_header("Authorization", "Bearer " + token)
    if data is not None:
        request.add_header("Content-Type", "application/scim+json")
    try:
        with urllib.request.urlopen(request) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        parsed = json.loads(text) if text else None
    except json.JSONDecodeError:
        parsed = text
    if show:
        out(f"`{method} {shown}`" + ("" if auth else " (no Authorization header)"))
        if raw is not None:
            out(f"\n```\n{raw}\n```")
        elif body is not None:
            out(f"\n```json\n{json.dumps(body)}\n```")
        answer = text if text else "(empty body)"
        out(f"\n→ **{status}**\n\n```json\n{answer}\n```\n")
    return status, parsed


def section(title):
    out(f"\n### {title}\n")


def patch(path, *operations, **kw):
    return call("PATCH", path, {"schemas": [PATCH], "Operations": list(operations)}, **kw)


def user_url(user):
    return f"/Users/{user['id']}"


def filter_users(expr, **kw):
    return call("GET", "/Users", query={"filter": expr}, **kw)


def summary(resource):
    """The attributes of a user that PATCH tests look at, as one line."""
    return json.dumps(
        {k: resource.get(k) for k in ("userName", "externalId", "name", "emails", "active")}
    )


def get_summary(path):
    status, body = call("GET", path, show=False)
    out(f"Then `GET {path}` → {status}: `{summary(body) if status == 200 else body}`\n")


# ------------------------------------------------------------------------------------------
section("Discovery")
call("GET", "/ServiceProviderConfig")
call("GET", "/ResourceTypes")
status, schemas = call("GET", "/Schemas", show=False)
out(f"`GET /Schemas` → {status}, ids: `{[s['id'] for s in schemas['Resources']]}`\n")
call("GET", "/Users", auth=False)
call("GET", "/Me")
call("GET", "/Bulk")
call("POST", "/Bulk", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                       "Operations": []})

# ------------------------------------------------------------------------------------------
section("POST /Users with every attribute the sync maps")
_, ada = call("POST", "/Users", {
    "schemas": [USER, ENTERPRISE],
    "userName": "ada",
    "name": {"givenName": "Ada", "familyName": "Lovelace", "formatted": "Countess Ada"},
    "emails": [{"type": "work", "value": "Ada.Lovelace@Example.org", "primary": True}],
    "active": False,
    "externalId": "ext-ada",
    ENTERPRISE: {"department": "Engineering"},
})
call("GET", user_url(ada))

section("POST /Users variants")
_, bob = call("POST", "/Users", {
    "schemas": [USER], "userName": "bob",
    "emails": [{"type": "work", "value": "bob@example.org"}],
})
_, carol = call("POST", "/Users", {
    "schemas": [USER], "userName": "carol",
    "name": {"formatted": "Carol Only Formatted"},
    "emails": [{"type": "home", "value": "carol@home.example", "primary": False},
               {"type": "work", "value": "carol@example.org", "primary": True}],
})
_, dan = call("POST", "/Users", {"schemas": [USER], "userName": "dan"})
call("POST", "/Users", {"schemas": [USER], "userName": "ada"})
call("POST", "/Users", {"schemas": [USER], "userName": "ADA"})
call("POST", "/Users", {"schemas": [USER], "userName": "erin", "active": "true"})
call("POST", "/Users", {"schemas": [USER], "userName": "erin", "emails": [{"value": "not-an-email"}]})
call("POST", "/Users", {"schemas": [USER], "userName": "erin", "emails": [{"type": "work"}]})
call("POST", "/Users", {"schemas": [USER], "userName": "erin", "unknownAttribute": 1, "nickName": "E"})
_, noname = call("POST", "/Users", {"schemas": [USER], "displayName": "No userName"})
call("POST", "/Users", {"schemas": [USER], "displayName": "No userName either"})
call("POST", "/Users", raw="{not json")
call("POST", "/Users", {})

# ------------------------------------------------------------------------------------------
section("Filters on /Users (Ada: userName ada, externalId ext-ada, email Ada.Lovelace@Example.org)")
mail = "Ada.Lovelace@Example.org"
for expr in [
    'userName eq "ada"',
    'userName eq "ADA"',
    'userName eq "Ada"',
    'userName sw "ad"',
    'userName co "D"',
    'name.givenName eq "Ada"',
    'active eq false',
    'externalId eq "ext-ada"',
    'externalId eq "nobody"',
    f'emails[type eq "work" and value eq "{mail}"]',
    f'emails[type eq "work"].value eq "{mail}"',
    f'emails.value eq "{mail}"',
    f'emails eq "{mail}"',
    f'emails[value eq "{mail}"]',
    f'emails.value eq "{mail.lower()}"',
    'userName eq "ada" and externalId eq "nobody"',
    'userName eq "nobody" or externalId eq "ext-ada"',
    'userName eq "ada" or userName eq "bob"',
    'displayName eq "Ada Lovelace"',
    f'{ENTERPRISE}:department eq "Engineering"',
    'userName eq',
    'userName eq ada',
]:
    filter_users(expr)

call("POST", "/Users/.search", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                                "filter": 'userName eq "bob"'})

# ------------------------------------------------------------------------------------------
section("Paging")
for i in range(60):
    call("POST", "/Users", {"schemas": [USER], "userName": f"page{i:02}"}, show=False)
out("(60 more users `page00`..`page59` created: 67 users in all, the one with userName \"\" "
    "included.)\n")
for query in [{}, {"startIndex": "2", "count": "3"}, {"count": "0"}, {"count": "1000"},
              {"startIndex": "0"}, {"count": "-1"}, {"startIndex": "65", "count": "10"},
              {"startIndex": "100"}, {"filter": 'userName sw "page"', "startIndex": "11", "count": "5"}]:
    status, page = call("GET", "/Users", query=query, show=False)
    shown = "&".join(f"{k}={v}" for k, v in query.items())
    if status == 200:
        names = [r["userName"] for r in page["Resources"]]
        brief = (f"totalResults {page['totalResults']}, itemsPerPage {page['itemsPerPage']}, "
                 f"startIndex {page['startIndex']}, {len(names)} resources: "
                 f"{names[:3]}{'…' if len(names) > 3 else ''}")
    else:
        brief = json.dumps(page)
    out(f"- `GET /Users?{shown}` → **{status}**: {brief}")
out()

# ------------------------------------------------------------------------------------------
section("PATCH /Users/ID (on Bob; Bob's state after each, read with GET)")
bob_url = user_url(bob)
cases = [
    [{"op": "replace", "path": "active", "value": False}],
    [{"op": "replace", "path": "active", "value": "True"}],
    [{"op": "replace", "path": "name.formatted", "value": "Robert Formatted"}],
    [{"op": "replace", "path": "name.givenName", "value": "Robert"}],
    [{"op": "replace", "path": "name.familyName", "value": "Babbage"}],
    [{"op": "replace", "path": 'emails[type eq "work"].value', "value": "robert@example.org"}],
    [{"op": "replace", "path": "emails", "value": [{"type": "work", "value": "rob@example.org", "primary": True}]}],
    [{"op": "replace", "path": "externalId", "value": "ext-bob"}],
    [{"op": "replace", "path": "userName", "value": "robert"}],
    [{"op": "replace", "path": "displayName", "value": "Bobby"}],
    [{"op": "add", "path": "emails", "value": [{"type": "work", "value": "bob2@example.org", "primary": True}]}],
    [{"op": "add", "path": 'emails[type eq "work"].value', "value": "bob3@example.org"}],
    [{"op": "replace", "value": {"active": True, "name.givenName": "Bob"}}],
    [{"op": "replace", "value": {"name": {"givenName": "Bobby", "formatted": "Bobby B"}}}],
    [{"op": "replace", "value": {"emails": [{"type": "work", "value": "bob@example.org", "primary": True}]}}],
    [{"op": "replace", "value": {"externalId": "ext-bob"}}],
    [{"op": "Replace", "path": "active", "value": False}],
    [{"op": "Add", "path": "active", "value": True}],
    [{"op": "Remove", "path": "externalId"}],
    [{"op": "remove", "path": "name.formatted"}],
    [{"op": "remove"}],
    [{"op": "move", "path": "active", "value": True}],
    [{"op": "replace", "path": "active", "value": True},
     {"op": "replace", "path": "name.givenName", "value": "Multi"},
     {"op": "replace", "path": "externalId", "value": "ext-multi"}],
    [{"op": "replace", "path": "externalId", "value": "ext-multi"},
     {"op": "replace", "path": "active", "value": True}],
]
for operations in cases:
    patch(bob_url, *operations)
    get_summary(bob_url)
call("PATCH", bob_url, {"schemas": [PATCH]})
call("PATCH", "/Users/999999", {"schemas": [PATCH], "Operations": [
    {"op": "replace", "path": "active", "value": True}]})

section("PUT /Users/ID")
call("PUT", user_url(dan), {"schemas": [USER], "userName": "dan", "name": {"givenName": "Dan"},
                            "emails": [{"type": "work", "value": "dan@example.org"}],
                            "externalId": "ext-dan", "active": True})
call("PUT", user_url(dan), {"schemas": [USER], "userName": "dan"})

# ------------------------------------------------------------------------------------------
section("Groups")
_, staff = call("POST", "/Groups", {"schemas": [GROUP], "displayName": "Staff",
                                    "externalId": "ext-staff",
                                    "members": [{"value": ada["id"]}, {"value": bob["id"]}]})
staff_url = f"/Groups/{staff['id']}"
call("GET", staff_url)
call("POST", "/Groups", {"schemas": [GROUP], "displayName": "Staff"})
call("POST", "/Groups", {"schemas": [GROUP], "displayName": "staff"})
call("POST", "/Groups", {"schemas": [GROUP]})
call("POST", "/Groups", {"schemas": [GROUP], "displayName": "Unknown member",
                         "members": [{"value": "999999"}]})


def members_now():
    status, group = call("GET", staff_url, show=False)
    out(f"Then `GET {staff_url}` → {status}, members: "
        f"`{[m['value'] for m in group.get('members', [])] if status == 200 else group}`\n")


ada_id, bob_id, carol_id, dan_id = ada["id"], bob["id"], carol["id"], dan["id"]
group_cases = [
    [{"op": "add", "path": "members", "value": [{"value": ada_id}, {"value": bob_id}]}],
    [{"op": "add", "path": "members", "value": [{"value": ada_id}]}],
    [{"op": "remove", "path": f'members[value eq "{bob_id}"]'}],
    [{"op": "remove", "path": "members", "value": [{"value": bob_id}]}],
    [{"op": "add", "path": "members", "value": [{"value": bob_id}, {"value": dan_id}]},
     {"op": "remove", "path": "members", "value": [{"value": ada_id}]}],
    [{"op": "add", "path": "members", "value": [{"value": "999999"}]}],
    [{"op": "add", "path": "members", "value": [{"value": "not-a-number"}]}],
    [{"op": "remove", "path": "members", "value": [{"value": "999999"}]}],
    [{"op": "Add", "path": "members", "value": [{"value": ada_id}]}],
    [{"op": "replace", "path": "members", "value": [{"value": ada_id}]}],
    [{"op": "remove", "path": "members"}],
    [{"op": "add", "value": {"members": [{"value": carol_id}]}}],
    [{"op": "replace", "path": "displayName", "value": "Staff Renamed"}],
    [{"op": "replace", "value": {"displayName": "Staff Renamed"}}],
    [{"op": "replace", "path": "externalId", "value": "ext-staff-2"}],
    [{"op": "replace", "path": "name", "value": [{"value": "Staff Renamed"}]}],
]
for operations in group_cases:
    patch(staff_url, *operations)
    members_now()
call("GET", staff_url)
call("GET", user_url(ada))
call("PUT", staff_url, {"schemas": [GROUP], "displayName": "Staff Put",
                        "members": [{"value": dan_id}]})
for expr in ['displayName eq "Staff Put"', 'displayName eq "nothing"', 'externalId eq "ext-staff"']:
    call("GET", "/Groups", query={"filter": expr})
call("GET", "/Groups")

# ------------------------------------------------------------------------------------------
section("DELETE, missing ids, ids")
call("DELETE", user_url(dan))
call("GET", user_url(dan))
call("DELETE", user_url(dan))
members_now()
call("GET", "/Users/999999")
call("GET", "/Users/not-a-number")
call("GET", "/Groups/999999")
_, last = call("POST", "/Users", {"schemas": [USER], "userName": "last"}, show=False)
call("DELETE", user_url(last), show=False)
_, after = call("POST", "/Users", {"schemas": [USER], "userName": "after-last"}, show=False)
out(f"Id reuse: `last` got id {last['id']}, was deleted; the next user created got id "
    f"{after['id']}.\n")
call("DELETE", staff_url)
call("GET", staff_url)
