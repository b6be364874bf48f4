//! A hostile SCIM server: an in-memory SCIM 2.0 server (`/ServiceProviderConfig`, `/Users`,
//! `/Groups`: listing with `startIndex`/`count`, `eq` filters, POST, PATCH, PUT, DELETE) that
//! a test switches into one [`Attack`] at a time, and that records every request it receives.
//!
//! Unlike a real server it never refuses a second account with the same `userName`: a
//! duplicate that scimsync creates stays visible ([`HostileServer::duplicates`]). A second
//! instance in [`Attack::None`] serves as the redirect target of the redirect attacks: it
//! records what reaches it, and the test asserts that nothing does.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Map, Value};
use tokio::sync::oneshot;

use super::random_hex;

/// Where the server's SCIM endpoints live: every request scimsync sends must be below it.
pub const BASE_PATH: &str = "/scim/v2";

/// Text with every control character a terminal acts on: clear screen, colour, CR/LF (a fake
/// log line), BEL and NUL.
pub const CONTROL_TEXT: &str =
    "boom\u{1b}[2J\u{1b}[31mred\u{1b}[0m\r\n2099-01-01 INFO forged log line\u{7}\u{0}end";

/// How the server misbehaves; [`Attack::None`] is a plain, correct server.
#[derive(Clone, Debug, PartialEq)]
pub enum Attack {
    None,
    /// Every request is answered `status` with this `Retry-After` (seconds or an HTTP date).
    Throttle {
        status: u16,
        retry_after: String,
    },
    /// Every request is answered 200 with a body of `bytes` bytes (declared in
    /// `Content-Length`), streamed.
    HugeBody {
        bytes: u64,
    },
    /// Every request is answered 200 with a chunked body that never ends, as fast as the
    /// client reads.
    EndlessBody,
    /// Every request is answered 200 with a chunked body that never ends, one byte every
    /// 100 ms: only a timeout ends it.
    TrickleBody,
    /// Every request is answered 200 with a valid JSON body of about `bytes` bytes that is
    /// nearly all values (`[0,0,0,…]`): small to read, large once parsed.
    DenseJson {
        bytes: usize,
    },
    /// A listing (a GET of a collection without a filter) ignores `startIndex`: every page is
    /// the first.
    StartIndexIgnored,
    /// A listing's items have no id (even positions) or a numeric one (odd positions).
    ListingWithoutIds,
    /// A listing's pages overlap: the page at `startIndex` s begins at s - 1.
    RepeatedIds,
    /// A POST creates the resource (with a good id) but answers with this id.
    BadIdFromCreate(String),
    /// Every request (or only every POST) is answered `status` with `Location:` this origin
    /// followed by the request's path and query.
    Redirect {
        status: u16,
        origin: String,
        only_post: bool,
    },
    /// Writes and listings fail 400 with the request's `Authorization` header in `detail`.
    EchoAuthorization,
    /// Writes and listings fail 400 with [`CONTROL_TEXT`] in `detail` and `scimType`.
    ControlChars,
}

/// One request the server received.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    /// Path and query exactly as received.
    pub path: String,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub at: std::time::Instant,
}

impl Received {
    /// The path without its query.
    pub fn route(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }
}

#[derive(Default)]
struct Store {
    users: Vec<Value>,
    groups: Vec<Value>,
    /// Every id the server gave (or was seeded with) that is a good one.
    good_ids: BTreeSet<String>,
    next: u64,
}

struct Shared {
    token: String,
    attack: Mutex<Attack>,
    page_size: Mutex<usize>,
    store: Mutex<Store>,
    records: Mutex<Vec<Received>>,
}

/// A running hostile server on 127.0.0.1; stopped when dropped.
pub struct HostileServer {
    /// `http://127.0.0.1:PORT/scim/v2`: a target's `url`.
    pub url: String,
    /// `http://127.0.0.1:PORT`.
    pub origin: String,
    /// The bearer token it accepts.
    pub token: String,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HostileServer {
    /// Starts a correct server (no attack) with pages of at most 100 resources.
    pub fn start() -> HostileServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("non-blocking");
        let port = listener.local_addr().expect("address").port();
        let shared = Arc::new(Shared {
            token: format!("hostile-token-{}", random_hex(16)),
            attack: Mutex::new(Attack::None),
            page_size: Mutex::new(100),
            store: Mutex::new(Store::default()),
            records: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let (shutdown, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("hostile-scim-{port}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build the hostile server's runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("register listener");
                    // Not graceful: an endless body must not hold up the end of a test.
                    tokio::select! {
                        result = axum::serve(listener, app) => {
                            if let Err(e) = result {
                                eprintln!("hostile server on port {port} failed: {e}");
                            }
                        }
                        _ = stopped => {}
                    }
                });
            })
            .expect("spawn the hostile server");
        let origin = format!("http://127.0.0.1:{port}");
        HostileServer {
            url: format!("{origin}{BASE_PATH}"),
            origin,
            token: shared.token.clone(),
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// Switches to `attack` for every request from now on.
    pub fn set_attack(&self, attack: Attack) {
        *self.shared.attack.lock().expect("attack lock") = attack;
    }

    /// The most resources one page of a listing holds, whatever `count` asks.
    pub fn set_page_size(&self, n: usize) {
        *self.shared.page_size.lock().expect("page lock") = n.max(1);
    }

    /// Adds a user as if created earlier; `id` is its id (any text, a bad one too), else a
    /// good one is given. Returns the id.
    pub fn seed_user(&self, mut user: Value, id: Option<&str>) -> String {
        let mut store = self.shared.store.lock().expect("store lock");
        let id = match id {
            Some(id) => id.to_owned(),
            None => store.new_id(),
        };
        user["id"] = json!(id);
        user["schemas"] = json!(["urn:ietf:params:scim:schemas:core:2.0:User"]);
        store.users.push(user);
        id
    }

    /// Every request so far, in arrival order.
    pub fn records(&self) -> Vec<Received> {
        self.shared.records.lock().expect("records lock").clone()
    }

    pub fn clear(&self) {
        self.shared.records.lock().expect("records lock").clear();
    }

    /// The users as stored.
    pub fn users(&self) -> Vec<Value> {
        self.shared.store.lock().expect("store lock").users.clone()
    }

    /// Whether the server gave (or was seeded with) this good id.
    pub fn is_good_id(&self, id: &str) -> bool {
        let store = self.shared.store.lock().expect("store lock");
        store.good_ids.contains(id)
    }

    /// Each userName held by more than one user.
    pub fn duplicates(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut twice = BTreeSet::new();
        for u in self.users() {
            let name = u["userName"].as_str().unwrap_or_default().to_lowercase();
            if !seen.insert(name.clone()) {
                twice.insert(name);
            }
        }
        twice.into_iter().collect()
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Store {
    fn new_id(&mut self) -> String {
        self.next += 1;
        let id = format!("{:08x}-{}", self.next, random_hex(4));
        self.good_ids.insert(id.clone());
        id
    }

    fn collection(&mut self, name: &str) -> Option<&mut Vec<Value>> {
        match name {
            "Users" => Some(&mut self.users),
            "Groups" => Some(&mut self.groups),
            _ => None,
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 16 << 20)
        .await
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned());
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (n.as_str().to_owned(), value)
        })
        .collect();
    let authorization = headers
        .iter()
        .find(|(n, _)| n == "authorization")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    shared.records.lock().expect("records lock").push(Received {
        method: parts.method.to_string(),
        path: path.clone(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        at: std::time::Instant::now(),
    });
    let attack = shared.attack.lock().expect("attack lock").clone();
    let method = parts.method;
    let (route, query) = path.split_once('?').unwrap_or((&path, ""));
    let params = query_pairs(query);
    let filter = params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("filter"))
        .map(|(_, v)| v.clone());
    let listing = method == Method::GET
        && filter.is_none()
        && matches!(route_parts(route).as_slice(), ["Users" | "Groups"]);
    let write = method != Method::GET;

    match &attack {
        Attack::Throttle {
            status,
            retry_after,
        } => {
            let mut r = scim_error(*status, None, "slow down");
            if let Ok(v) = HeaderValue::from_str(retry_after) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
        Attack::HugeBody { bytes } => return huge_body(*bytes),
        Attack::EndlessBody => return endless_body(None),
        Attack::DenseJson { bytes } => return dense_json(*bytes),
        Attack::TrickleBody => return endless_body(Some(Duration::from_millis(100))),
        Attack::Redirect {
            status,
            origin,
            only_post,
        } if !*only_post || method == Method::POST => {
            let mut r = scim_error(*status, None, "moved");
            if let Ok(v) = HeaderValue::from_str(&format!("{origin}{path}")) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return r;
        }
        Attack::EchoAuthorization if write || listing => {
            let detail = format!("invalid request; you sent Authorization: {authorization}");
            let token = authorization.trim_start_matches("Bearer ").to_owned();
            return scim_error(400, Some(&token), &detail);
        }
        Attack::ControlChars if write || listing => {
            return scim_error(400, Some(CONTROL_TEXT), CONTROL_TEXT);
        }
        _ => {}
    }
    if authorization != format!("Bearer {}", shared.token) {
        return scim_error(401, None, "authentication required");
    }
    let body: Option<Value> = serde_json::from_slice(&body).ok();
    serve(&shared, &attack, &method, route, &params, filter, body)
}

/// The path's segments below [`BASE_PATH`]; empty when it is not below it.
fn route_parts(route: &str) -> Vec<&str> {
    match route.strip_prefix(BASE_PATH) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.split('/').skip(1).collect(),
        _ => Vec::new(),
    }
}

/// The behaviour of a correct server, with the listing attacks.
fn serve(
    shared: &Shared,
    attack: &Attack,
    method: &Method,
    route: &str,
    params: &[(String, String)],
    filter: Option<String>,
    body: Option<Value>,
) -> Response {
    let parts = route_parts(route);
    let mut store = shared.store.lock().expect("store lock");
    match (method, parts.as_slice()) {
        (&Method::GET, ["ServiceProviderConfig"]) => json_response(200, &service_provider_config()),
        (&Method::GET, [kind @ ("Users" | "Groups")]) => {
            let page_size = *shared.page_size.lock().expect("page lock");
            let all = store.collection(kind).cloned().unwrap_or_default();
            let hits: Vec<Value> = match &filter {
                None => all,
                Some(f) => match parse_filter(f) {
                    Some((attr, value)) => all
                        .into_iter()
                        .filter(|r| carries(r, &attr, &value))
                        .collect(),
                    None => return scim_error(400, Some("invalidFilter"), "unsupported filter"),
                },
            };
            let number = |name: &str| {
                params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .and_then(|(_, v)| v.parse::<usize>().ok())
            };
            let start = number("startIndex").unwrap_or(1).max(1);
            let count = number("count").unwrap_or(page_size).min(page_size);
            let from = match (attack, &filter) {
                (Attack::StartIndexIgnored, None) => 0,
                (Attack::RepeatedIds, None) => start.saturating_sub(2),
                _ => start - 1,
            };
            let mut page: Vec<Value> = hits.iter().skip(from).take(count).cloned().collect();
            if *attack == Attack::ListingWithoutIds && filter.is_none() {
                for (i, item) in page.iter_mut().enumerate() {
                    match item.as_object_mut() {
                        Some(o) if i % 2 == 0 => {
                            o.remove("id");
                        }
                        Some(o) => {
                            o.insert("id".into(), json!(i));
                        }
                        None => {}
                    }
                }
            }
            json_response(
                200,
                &json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                    "totalResults": hits.len(),
                    "startIndex": start,
                    "itemsPerPage": page.len(),
                    "Resources": page,
                }),
            )
        }
        (&Method::POST, [kind @ ("Users" | "Groups")]) => {
            let Some(Value::Object(mut resource)) = body else {
                return scim_error(400, Some("invalidSyntax"), "not a JSON object");
            };
            let id = store.new_id();
            resource.insert("id".into(), json!(id));
            resource.insert(
                "meta".into(),
                json!({"resourceType": kind.trim_end_matches('s'), "location": format!("{BASE_PATH}/{kind}/{id}")}),
            );
            let resource = Value::Object(resource);
            store
                .collection(kind)
                .expect("a collection")
                .push(resource.clone());
            let mut answer = resource;
            if let Attack::BadIdFromCreate(bad) = attack {
                answer["id"] = json!(bad);
            }
            json_response(201, &answer)
        }
        (_, [kind @ ("Users" | "Groups"), id]) => {
            let id = urlencoding::decode(id)
                .map(|d| d.into_owned())
                .unwrap_or_else(|_| (*id).to_owned());
            let items = store.collection(kind).expect("a collection");
            let Some(pos) = items.iter().position(|r| r["id"] == json!(id)) else {
                return scim_error(404, None, "no such resource");
            };
            match *method {
                Method::GET => json_response(200, &items[pos]),
                Method::DELETE => {
                    items.remove(pos);
                    empty(204)
                }
                Method::PUT => {
                    let Some(Value::Object(mut resource)) = body else {
                        return scim_error(400, Some("invalidSyntax"), "not a JSON object");
                    };
                    resource.insert("id".into(), json!(id));
                    items[pos] = Value::Object(resource);
                    json_response(200, &items[pos])
                }
                Method::PATCH => {
                    let ops = body
                        .as_ref()
                        .and_then(|b| b.get("Operations"))
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    for op in &ops {
                        apply(&mut items[pos], op);
                    }
                    json_response(200, &items[pos])
                }
                _ => scim_error(405, None, "method not allowed"),
            }
        }
        _ => scim_error(404, None, "no such endpoint"),
    }
}

fn service_provider_config() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": 100},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": false},
        "authenticationSchemes": [{"type": "oauthbearertoken", "name": "Bearer", "description": "token"}],
    })
}

/// `ATTR eq "VALUE"` (with `emails` in any form: `emails[type eq "work" and value eq "x"]`,
/// `emails.value eq "x"`…): the attribute's first word and the last string literal.
fn parse_filter(filter: &str) -> Option<(String, String)> {
    let attr: String = filter
        .trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '.' || *c == ':')
        .collect();
    if attr.is_empty() || !filter.contains(" eq ") {
        return None;
    }
    let end = filter.rfind('"')?;
    let mut start = None;
    let bytes = filter.as_bytes();
    let mut i = end;
    while i > 0 {
        i -= 1;
        if bytes[i] == b'"' && (i == 0 || bytes[i - 1] != b'\\') {
            start = Some(i);
            break;
        }
    }
    let value = filter[start? + 1..end]
        .replace("\\\"", "\"")
        .replace("\\\\", "\\");
    Some((attr, value))
}

fn carries(resource: &Value, attr: &str, value: &str) -> bool {
    let same = |v: &Value| v.as_str().is_some_and(|s| s.eq_ignore_ascii_case(value));
    let lower = attr.to_ascii_lowercase();
    if lower.starts_with("emails") {
        return resource["emails"]
            .as_array()
            .is_some_and(|es| es.iter().any(|e| same(&e["value"])));
    }
    let mut at = resource;
    for key in attr.split('.') {
        match at
            .as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)))
        {
            Some((_, v)) => at = v,
            None => return false,
        }
    }
    same(at)
}

/// One PATCH operation, minimally: no path (merge), `members` (add, remove a list),
/// `members[value eq "ID"]` (remove), a plain or dotted path (add, replace, remove).
fn apply(resource: &mut Value, op: &Value) {
    let name = op["op"].as_str().unwrap_or_default().to_ascii_lowercase();
    let value = op.get("value").cloned().unwrap_or(Value::Null);
    let Some(path) = op["path"].as_str() else {
        if let (Some(target), Some(fields)) = (resource.as_object_mut(), value.as_object()) {
            for (k, v) in fields {
                target.insert(k.clone(), v.clone());
            }
        }
        return;
    };
    if path.to_ascii_lowercase().starts_with("members") {
        let members = resource["members"].as_array().cloned().unwrap_or_default();
        let ids: Vec<Value> = if let Some((_, id)) = parse_filter(path) {
            vec![json!(id)]
        } else {
            value
                .as_array()
                .map(|vs| vs.iter().map(|v| v["value"].clone()).collect())
                .unwrap_or_default()
        };
        let kept: Vec<Value> = if name == "remove" {
            members
                .into_iter()
                .filter(|m| !ids.contains(&m["value"]))
                .collect()
        } else {
            let mut all = members;
            for id in ids {
                if !all.iter().any(|m| m["value"] == id) {
                    all.push(json!({"value": id}));
                }
            }
            all
        };
        resource["members"] = Value::Array(kept);
        return;
    }
    if path.contains('[') {
        return;
    }
    let keys: Vec<&str> = path.split('.').collect();
    let mut at = resource;
    for key in &keys[..keys.len() - 1] {
        if !at.get(*key).is_some_and(Value::is_object) {
            at[*key] = Value::Object(Map::new());
        }
        at = &mut at[*key];
    }
    let last = keys[keys.len() - 1];
    if let Some(o) = at.as_object_mut() {
        if name == "remove" {
            o.remove(last);
        } else {
            o.insert(last.to_owned(), value);
        }
    }
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{query}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

fn json_response(status: u16, body: &Value) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).expect("status");
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/scim+json"),
    );
    r
}

fn empty(status: u16) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::from_u16(status).expect("status");
    r
}

/// A SCIM error; `scim_type` may be anything, a token or control characters included.
fn scim_error(status: u16, scim_type: Option<&str>, detail: &str) -> Response {
    let mut body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": status.to_string(),
        "detail": detail,
    });
    if let Some(t) = scim_type {
        body["scimType"] = json!(t);
    }
    json_response(status, &body)
}

const CHUNK: usize = 64 << 10;

/// 200 with a body of `bytes` bytes of JSON whitespace after `{"Resources": [`, streamed.
fn huge_body(bytes: u64) -> Response {
    let chunk = Bytes::from(vec![b' '; CHUNK]);
    let stream = futures::stream::unfold(bytes, move |left| {
        let chunk = chunk.clone();
        async move {
            if left == 0 {
                return None;
            }
            let n = left.min(CHUNK as u64);
            Some((Ok::<_, std::io::Error>(chunk.slice(..n as usize)), left - n))
        }
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/scim+json"),
    );
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes));
    r
}

/// 200 with a chunked body that never ends: 64 KiB chunks as fast as the client reads, or one
/// byte per `pause`.
fn endless_body(pause: Option<Duration>) -> Response {
    let chunk = match pause {
        Some(_) => Bytes::from_static(b" "),
        None => Bytes::from(vec![b' '; CHUNK]),
    };
    let stream = futures::stream::unfold((), move |()| {
        let chunk = chunk.clone();
        async move {
            match pause {
                Some(p) => tokio::time::sleep(p).await,
                // Let the runtime's other tasks (other connections) run.
                None => tokio::task::yield_now().await,
            }
            Some((Ok::<_, std::io::Error>(chunk), ()))
        }
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/scim+json"),
    );
    r
}

/// 200 with a ListResponse of no resources and an extra member `[0,0,0,…]` of about `bytes`.
fn dense_json(bytes: usize) -> Response {
    let mut text = String::with_capacity(bytes + 200);
    text.push_str(r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":0,"Resources":[],"x":[0"#);
    while text.len() < bytes {
        text.push_str(",0");
    }
    text.push_str("]}");
    let mut r = Response::new(Body::from(text));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/scim+json"),
    );
    r
}
