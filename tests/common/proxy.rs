//! A recording HTTP proxy in front of a real server: forwards every call unchanged, records
//! it, and injects the faults a test plans. It can also make the real server behave like
//! other real SCIM servers do, call after call ([`Deviation`]).

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Map, Value};
use tokio::sync::oneshot;

use super::http_client;

/// One call that went through the proxy.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path and query exactly as received, e.g. `/v2/Users?filter=userName%20eq%20%22a%22`.
    pub path: String,
    /// The query's parameters, percent-decoded (`+` read as a space), in order.
    pub query: Vec<(String, String)>,
    /// The request's headers, names in lower case, in order.
    pub headers: Vec<(String, String)>,
    /// The request body: its JSON, or a JSON string holding it when it is not JSON.
    pub body: Option<Value>,
    /// The status the client got; 0 when the proxy dropped the connection instead.
    pub status: u16,
    /// The response body the client got (for a dropped connection after forwarding: what the
    /// upstream answered), as for `body`.
    pub response_body: Option<Value>,
    /// The fault injected into this call, if any.
    pub fault: Option<Fault>,
    /// The deviation that changed this call, if any: it answered the call itself (then
    /// `fault` is `None`), or rewrote the request forwarded or the response returned. When
    /// several did, the one that answered, else the first to rewrite the request, else the
    /// one that rewrote the response.
    pub deviation: Option<Deviation>,
    /// When the proxy received the call.
    pub at: std::time::Instant,
}

impl Recorded {
    /// The path without its query, e.g. `/v2/Users`.
    pub fn route(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }

    /// The first value of a query parameter, decoded.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The first value of a request header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// A fault the proxy injects into one call instead of forwarding it faithfully.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Forward faithfully (a gap in a plan).
    Pass,
    /// Answer this status with a SCIM error body, without forwarding.
    Status(u16),
    /// Answer `429 Too Many Requests` with `Retry-After: secs`, without forwarding.
    TooManyRequests { retry_after_secs: u64 },
    /// Wait, then forward.
    Delay(Duration),
    /// Close the connection without an answer, without forwarding.
    DropBeforeForward,
    /// Forward (the upstream applies the change), then close the connection without an
    /// answer: the case where a client cannot know whether its write happened.
    DropAfterForward,
    /// Answer with this canned response instead of forwarding: an HTML error page, a body
    /// that is not JSON, a wrong content type, a 200 carrying an error…
    Respond {
        status: u16,
        content_type: String,
        body: String,
    },
    /// Forward the query without its `filter` parameter, so that the upstream answers with
    /// every resource: a server that ignores filters.
    Unfiltered,
}

/// A way in which real SCIM servers differ from scim2-server, allowed by RFC 7643/7644 or
/// common in the field. While set ([`RecordingProxy::set_deviations`]) the proxy imposes it on
/// every matching call, on top of the real server, so that the pair behaves like such a
/// server. A call the proxy answers itself never reaches the upstream.
///
/// Deviations in SCIM Bulk requests: only [`Deviation::EmailsWithoutType`] (types dropped
/// from the data, and from any `response` of the answer; a PATCH selecting e-mails by type
/// is not refused there) and [`Deviation::MembersIgnoredOnCreate`] apply inside a Bulk.
///
/// When several are set, the request-side checks run in this order, the first to answer
/// winning: `GET` with a filter: `FilterIgnoredEmpty`, `CompoundFilterRefused`,
/// `EmailsWithoutType`; `PATCH …/Groups/ID`: `AddRemoveCombinedRefused`,
/// `MemberPathRemoveRefused`; `PATCH …/Users/ID`: `SubAttributePath501`, `EmailsWithoutType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Deviation {
    /// E-mails have no `type` (RFC 7643 §4.1.2 makes it optional): it is dropped from every
    /// `emails` value of every JSON response (resources, `Resources` of a ListResponse,
    /// `response` of Bulk operations) and of every request that writes users (POST and PUT
    /// `…/Users`, PATCH values, Bulk data), so the upstream stores none. A `GET` whose filter
    /// selects e-mails by type (`emails[type eq …]`, any operator, or `emails.type`, also
    /// inside `and`/`or`) is answered `200` with an empty ListResponse. A PATCH operation on
    /// `…/Users/ID` whose path selects e-mails by type is answered as scim2-server answers it
    /// for a user whose e-mails have no type: `add`/`replace` get `400 noTarget` (the whole
    /// PATCH, not forwarded), `remove` is a no-op (left out; when nothing is left, `204`
    /// without forwarding); an operation on `emails.type` is ignored likewise.
    ///
    /// `emails.value eq "x"`, `emails eq "x"` and `emails[value eq "x"]` are forwarded
    /// unchanged: scim2-server 0.8.3 finds the user with each of the three forms (and with
    /// `emails[type eq "work"].value eq "x"`, `emails.type eq "work"` and attribute names in
    /// any case), so no rewriting is needed.
    EmailsWithoutType,
    /// A `GET` whose filter holds a value filter with `and` (`emails[type eq "work" and
    /// value eq "x"]`) is answered `400` `invalidFilter` (`and` outside brackets is fine).
    CompoundFilterRefused,
    /// Filters are ignored and find nothing: every `GET` with a `filter` parameter is
    /// answered `200` with an empty ListResponse, and `GET …/ServiceProviderConfig` is
    /// forwarded but says `"filter": {"supported": false, …}`.
    FilterIgnoredEmpty,
    /// `members` is dropped from the body of `POST …/Groups` (and of Bulk `POST /Groups`
    /// operations): groups are created empty, and the answer shows no members.
    MembersIgnoredOnCreate,
    /// A `PATCH …/Groups/ID` with a `remove` (any case) whose path is a value filter on
    /// members (`members[value eq "ID"]`) is answered `400` `invalidPath`; the form
    /// `{"op": "remove", "path": "members", "value": [{"value": "ID"}, …]}` works instead (the
    /// proxy turns it into one `members[value eq "ID"]` operation per value, the only form
    /// scim2-server takes).
    MemberPathRemoveRefused,
    /// A `PATCH …/Users/ID` with any operation whose path has a sub-attribute or a value
    /// filter is answered `501 Not Implemented`. A schema URN prefix does not count: the path
    /// is read after its last `:` before any `[`, so
    /// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department` passes, while
    /// `…:enterprise:2.0:User:manager.value` and `…:core:2.0:User:name.givenName` do not.
    /// Operations without a path pass whatever keys their value has.
    SubAttributePath501,
    /// A `PATCH …/Groups/ID` that both adds members (`add` with path `members`, or without a
    /// path and a value holding `members`) and removes members (`remove` with path `members`
    /// or `members[…]`) is answered `400` `invalidValue`: one or the other per request.
    AddRemoveCombinedRefused,
    /// Paging is ignored: a `GET` with `startIndex` and no filter is forwarded with
    /// `startIndex=1`, so every page is the first page.
    StartIndexIgnored,
}

/// A seeded random fault plan: each call, when no planned fault is left, gets one of `mix`
/// with probability `percent`/100, at most `budget` times in all.
#[derive(Clone, Debug)]
pub struct RandomFaults {
    pub seed: u64,
    pub percent: u32,
    pub mix: Vec<Fault>,
    pub budget: usize,
}

/// A proxy on a free 127.0.0.1 port that forwards to an upstream server and records every
/// call. It runs on a thread of its own and stops when dropped.
pub struct RecordingProxy {
    /// The proxy's base URL, with the upstream's base path: `http://127.0.0.1:PORT/v2`.
    pub url: String,
    pub port: u16,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    /// `http://host:port` of the upstream, without a path.
    upstream_origin: String,
    client: reqwest::Client,
    records: Mutex<Vec<Recorded>>,
    faults: Mutex<VecDeque<Fault>>,
    /// Faults for the calls to one route only: (route suffix, plan).
    route_faults: Mutex<Option<(String, VecDeque<Fault>)>>,
    random: Mutex<Option<(RandomFaults, u64)>>,
    gate: Mutex<Option<BearerGate>>,
    deviations: Mutex<Vec<Deviation>>,
}

/// The proxy as the target's authorisation check: only bearer tokens `accept` takes get
/// through (others get 401), and the upstream sees its own token instead.
#[derive(Clone)]
struct BearerGate {
    accept: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    upstream_token: String,
}

impl RecordingProxy {
    /// Starts a proxy in front of `upstream_base` (e.g. a [`super::ScimServer`]'s `url`).
    pub fn start(upstream_base: &str) -> RecordingProxy {
        let (origin, base_path) = split_base(upstream_base);
        // Bound here, before the thread starts, so the proxy accepts as soon as this returns.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy to 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("make the proxy listener non-blocking");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            upstream_origin: origin.to_string(),
            client: http_client(),
            records: Mutex::new(Vec::new()),
            faults: Mutex::new(VecDeque::new()),
            route_faults: Mutex::new(None),
            random: Mutex::new(None),
            gate: Mutex::new(None),
            deviations: Mutex::new(Vec::new()),
        });
        let (shutdown, stopped) = oneshot::channel::<()>();
        let app = Router::new()
            .fallback(forward)
            .with_state(Arc::clone(&shared));
        let thread = std::thread::Builder::new()
            .name(format!("recording-proxy-{port}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build the proxy's runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("register the proxy listener");
                    // Not a graceful shutdown: a delayed call or an idle keep-alive
                    // connection must not hold up a test. Dropping the runtime ends them.
                    tokio::select! {
                        result = axum::serve(listener, app) => {
                            if let Err(e) = result {
                                eprintln!("recording proxy on port {port} failed: {e}");
                            }
                        }
                        _ = stopped => {}
                    }
                });
            })
            .expect("spawn the proxy thread");
        RecordingProxy {
            url: format!("http://127.0.0.1:{port}{base_path}"),
            port,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// Every call so far, in the order their answers were sent.
    pub fn records(&self) -> Vec<Recorded> {
        self.shared.records.lock().expect("records lock").clone()
    }

    /// `METHOD route status` for every call so far, e.g. `POST /v2/Users 201`: a compact
    /// form to compare a whole exchange with.
    pub fn calls(&self) -> Vec<String> {
        self.records()
            .iter()
            .map(|r| format!("{} {} {}", r.method, r.route(), r.status))
            .collect()
    }

    /// The number of calls so far.
    pub fn count(&self) -> usize {
        self.shared.records.lock().expect("records lock").len()
    }

    /// Forgets the calls recorded so far.
    pub fn clear(&self) {
        self.shared.records.lock().expect("records lock").clear();
    }

    /// Plans faults for the next calls, one per call in arrival order; calls after the plan
    /// runs out are forwarded faithfully. Replaces any plan not yet used up.
    pub fn set_faults(&self, plan: impl IntoIterator<Item = Fault>) {
        let mut faults = self.shared.faults.lock().expect("faults lock");
        *faults = plan.into_iter().collect();
    }

    /// Plans faults for the next calls whose route (path without query) ends with `route`,
    /// e.g. `/Bulk`, one per such call in arrival order; other calls neither get them nor use
    /// them up. Takes precedence over the other plans for those calls.
    pub fn set_route_faults(&self, route: &str, plan: impl IntoIterator<Item = Fault>) {
        *self.shared.route_faults.lock().expect("route faults lock") =
            Some((route.to_owned(), plan.into_iter().collect()));
    }

    /// Injects faults at random (seeded, so a failure can be replayed) into the calls that
    /// the fixed plan of [`RecordingProxy::set_faults`] leaves alone; `None` stops it.
    pub fn set_random_faults(&self, plan: Option<RandomFaults>) {
        *self.shared.random.lock().expect("random lock") = plan.map(|p| {
            let state = p.seed.max(1);
            (p, state)
        });
    }

    /// Makes the proxy behave like a SCIM server with these deviations, for every call from
    /// now on until the next call of this method; replaces the previous set, and an empty set
    /// makes the proxy faithful again. A fault planned or drawn for a call takes precedence:
    /// a fault that answers by itself keeps the call from the deviations; one that forwards
    /// (a delay, a drop after forwarding, [`Fault::Unfiltered`]) forwards through them.
    pub fn set_deviations(&self, set: impl IntoIterator<Item = Deviation>) {
        let mut deviations = self.shared.deviations.lock().expect("deviations lock");
        *deviations = Vec::new();
        for deviation in set {
            if !deviations.contains(&deviation) {
                deviations.push(deviation);
            }
        }
    }

    /// Makes the proxy check bearer tokens with `accept` (say, against a test token server):
    /// a call whose token it refuses is answered 401 without forwarding; an accepted one is
    /// forwarded with `upstream_token` in its place.
    pub fn gate_bearer(
        &self,
        accept: Arc<dyn Fn(&str) -> bool + Send + Sync>,
        upstream_token: &str,
    ) {
        *self.shared.gate.lock().expect("gate lock") = Some(BearerGate {
            accept,
            upstream_token: upstream_token.to_owned(),
        });
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Hop-by-hop headers and those the HTTP layers recompute; everything else passes through.
const NOT_FORWARDED: [HeaderName; 8] = [
    header::CONNECTION,
    header::HOST,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let at = std::time::Instant::now();
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| parts.uri.path().to_string());
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let route = path.split('?').next().unwrap_or_default();
    let for_route = match &mut *shared.route_faults.lock().expect("route faults lock") {
        Some((suffix, plan)) if route.ends_with(suffix.as_str()) => plan.pop_front(),
        _ => None,
    };
    let planned = match for_route {
        Some(f) => Some(f),
        None => shared.faults.lock().expect("faults lock").pop_front(),
    };
    let fault = match planned {
        Some(f) => Some(f),
        None => shared.random_fault(),
    }
    .filter(|fault| *fault != Fault::Pass);
    let gate = shared.gate.lock().expect("gate lock").clone();
    let mut upstream_headers = parts.headers.clone();
    let mut refused = false;
    if let Some(gate) = gate {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        refused = !(gate.accept)(bearer);
        if let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", gate.upstream_token)) {
            upstream_headers.insert(header::AUTHORIZATION, v);
        }
    }
    let fault = if refused {
        Some(Fault::Status(401))
    } else {
        fault
    };

    let deviations = shared.deviations.lock().expect("deviations lock").clone();
    let (answer, dropped, deviation) = match &fault {
        Some(Fault::Status(status)) => (scim_error(*status, None), false, None),
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            (scim_error(429, Some(*retry_after_secs)), false, None)
        }
        Some(Fault::DropBeforeForward) => (scim_error(502, None), true, None),
        Some(Fault::Respond {
            status,
            content_type,
            body,
        }) => {
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(content_type) {
                headers.insert(header::CONTENT_TYPE, v);
            }
            let answer = Answer {
                status: StatusCode::from_u16(*status).expect("a valid HTTP status"),
                headers,
                body: Bytes::from(body.clone()),
            };
            (answer, false, None)
        }
        // The faults that forward: to the upstream as the deviations make it.
        None
        | Some(Fault::Pass)
        | Some(Fault::Delay(_))
        | Some(Fault::DropAfterForward)
        | Some(Fault::Unfiltered) => {
            if let Some(Fault::Delay(delay)) = &fault {
                tokio::time::sleep(*delay).await;
            }
            let target = match &fault {
                Some(Fault::Unfiltered) => without_filter(&path),
                _ => path.clone(),
            };
            let (answer, deviation) = shared
                .serve(
                    &parts.method,
                    &target,
                    &upstream_headers,
                    &body,
                    &deviations,
                )
                .await;
            let dropped = matches!(fault, Some(Fault::DropAfterForward));
            (answer, dropped, deviation)
        }
    };

    let record = Recorded {
        method: parts.method.to_string(),
        query: parts.uri.query().map(parse_query).unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        path,
        body: json_or_text(&body),
        status: if dropped { 0 } else { answer.status.as_u16() },
        response_body: json_or_text(&answer.body),
        fault,
        deviation,
        at,
    };
    shared.records.lock().expect("records lock").push(record);

    if dropped {
        return dropped_connection();
    }
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = answer.status;
    *response.headers_mut() = answer.headers;
    response
}

impl Shared {
    /// The next random fault, if the random plan draws one for this call.
    fn random_fault(&self) -> Option<Fault> {
        let mut random = self.random.lock().expect("random lock");
        let (plan, state) = random.as_mut()?;
        if plan.budget == 0 || plan.mix.is_empty() {
            return None;
        }
        // xorshift64: small, seeded and good enough to pick faults.
        let mut next = || {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            *state
        };
        if next() % 100 >= u64::from(plan.percent) {
            return None;
        }
        plan.budget -= 1;
        let pick = (next() % plan.mix.len() as u64) as usize;
        Some(plan.mix[pick].clone())
    }

    /// Forwards a call to the upstream as `deviations` make it: they may answer it without
    /// forwarding, or rewrite what is forwarded and what comes back. Returns the answer and
    /// the deviation that changed the call, if any.
    async fn serve(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &Bytes,
        deviations: &[Deviation],
    ) -> (Answer, Option<Deviation>) {
        if deviations.is_empty() {
            return (self.send(method, path, headers, body).await, None);
        }
        match deviate_request(method, path, body, deviations) {
            Verdict::Answer(answer, deviation) => (answer, Some(deviation)),
            Verdict::Forward {
                path,
                body,
                changed_by,
            } => {
                let mut answer = self.send(method, &path, headers, &body).await;
                let route = path.split('?').next().unwrap_or_default();
                let response_by = deviate_response(method, route, &mut answer, deviations);
                (answer, changed_by.or(response_by))
            }
        }
    }

    async fn send(
        &self,
        method: &axum::http::Method,
        path: &str,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Answer {
        let url = format!("{}{}", self.upstream_origin, path);
        let mut request = self
            .client
            .request(method.clone(), &url)
            .headers(without_hop_by_hop(headers));
        if !body.is_empty() || headers.contains_key(header::CONTENT_LENGTH) {
            request = request.body(body.clone());
        }
        let result = async {
            let response = request.send().await?;
            let status = response.status();
            let headers = without_hop_by_hop(response.headers());
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>(Answer {
                status,
                headers,
                body,
            })
        }
        .await;
        result.unwrap_or_else(|e| {
            let mut answer = scim_error(502, None);
            answer.body = Bytes::from(format!("recording proxy: {method} {url}: {e}"));
            answer.headers.remove(header::CONTENT_TYPE);
            answer
        })
    }
}

/// What the deviations make of a request.
enum Verdict {
    /// Answer this, without forwarding.
    Answer(Answer, Deviation),
    /// Forward this path and body; `changed_by` is the deviation that rewrote them, if any.
    Forward {
        path: String,
        body: Bytes,
        changed_by: Option<Deviation>,
    },
}

/// The request side of the deviations (see [`Deviation`] for each, and for their order).
fn deviate_request(method: &Method, path: &str, body: &Bytes, set: &[Deviation]) -> Verdict {
    use Deviation::*;
    let has = |deviation: Deviation| set.contains(&deviation);
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let params = parse_query(query);
    let mut json: Option<Value> = serde_json::from_slice(body).ok();
    let mut forward_path = path.to_owned();
    let mut changed_by: Option<Deviation> = None;
    let mut body_changed = false;
    let mut changed = |deviation: Deviation, body: bool| {
        changed_by = changed_by.or(Some(deviation));
        body_changed |= body;
    };

    if *method == Method::GET {
        let filter = params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case("filter"))
            .map(|(_, value)| value.as_str());
        if let Some(filter) = filter {
            if has(FilterIgnoredEmpty) {
                return Verdict::Answer(empty_list(), FilterIgnoredEmpty);
            }
            if has(CompoundFilterRefused) && has_compound_value_filter(filter) {
                return Verdict::Answer(
                    scim_refusal(
                        400,
                        Some("invalidFilter"),
                        "Value filters with \"and\" are not supported.",
                    ),
                    CompoundFilterRefused,
                );
            }
            if has(EmailsWithoutType) && selects_email_type(filter) {
                return Verdict::Answer(empty_list(), EmailsWithoutType);
            }
        } else if has(StartIndexIgnored) {
            if let Some(first) = first_page(route, query) {
                forward_path = first;
                changed(StartIndexIgnored, false);
            }
        }
    } else if *method == Method::POST && is_collection(route, "Groups") {
        if has(MembersIgnoredOnCreate) && json.as_mut().is_some_and(remove_members) {
            changed(MembersIgnoredOnCreate, true);
        }
    } else if (*method == Method::POST && is_collection(route, "Users"))
        || (*method == Method::PUT && is_resource(route, "Users"))
    {
        if has(EmailsWithoutType) && json.as_mut().is_some_and(strip_email_types) {
            changed(EmailsWithoutType, true);
        }
    } else if *method == Method::POST && is_collection(route, "Bulk") {
        let operations = json
            .as_mut()
            .and_then(|json| key_mut(json, "Operations"))
            .and_then(Value::as_array_mut);
        for operation in operations.into_iter().flatten() {
            let method = key(operation, "method")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_ascii_uppercase();
            let path = key(operation, "path")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let Some(data) = key_mut(operation, "data") else {
                continue;
            };
            if has(MembersIgnoredOnCreate)
                && method == "POST"
                && is_collection(&path, "Groups")
                && remove_members(data)
            {
                changed(MembersIgnoredOnCreate, true);
            }
            let users = is_collection(&path, "Users") || is_resource(&path, "Users");
            if has(EmailsWithoutType) && users {
                let stripped = if method == "PATCH" {
                    // An operation without a target is not refused inside a Bulk: it is
                    // forwarded as it is.
                    matches!(typeless_patch(data), Typeless::Changed)
                } else {
                    strip_email_types(data)
                };
                if stripped {
                    changed(EmailsWithoutType, true);
                }
            }
        }
    } else if *method == Method::PATCH && is_resource(route, "Groups") {
        if let Some(operations) = json.as_mut().and_then(operations_mut) {
            if has(AddRemoveCombinedRefused)
                && operations.iter().any(adds_members)
                && operations.iter().any(removes_members)
            {
                return Verdict::Answer(
                    scim_refusal(
                        400,
                        Some("invalidValue"),
                        "Members can be added or removed in one request, not both.",
                    ),
                    AddRemoveCombinedRefused,
                );
            }
            if has(MemberPathRemoveRefused) {
                let by_filter = operations.iter().any(|op| {
                    op_is(op, "remove")
                        && op_path(op).is_some_and(|p| {
                            attr_path(p).to_ascii_lowercase().starts_with("members[")
                        })
                });
                if by_filter {
                    return Verdict::Answer(
                        scim_refusal(
                            400,
                            Some("invalidPath"),
                            "The value-filter path members[…] is not supported; remove members \
                             with path \"members\" and their values.",
                        ),
                        MemberPathRemoveRefused,
                    );
                }
                if let Some(translated) = members_by_filter(operations) {
                    *operations = translated;
                    changed(MemberPathRemoveRefused, true);
                }
            }
        }
    } else if *method == Method::PATCH && is_resource(route, "Users") {
        if let Some(operations) = json.as_mut().and_then(operations_mut) {
            if has(SubAttributePath501)
                && operations
                    .iter()
                    .filter_map(op_path)
                    .any(|p| attr_path(p).contains(['.', '[']))
            {
                return Verdict::Answer(
                    scim_refusal(
                        501,
                        None,
                        "PATCH paths with a sub-attribute or a value filter are not implemented.",
                    ),
                    SubAttributePath501,
                );
            }
        }
        if has(EmailsWithoutType) {
            if let Some(json) = json.as_mut() {
                match typeless_patch(json) {
                    Typeless::NoTarget => {
                        // As scim2-server answers for a user whose e-mails have no type.
                        let answer = scim_refusal(
                            400,
                            Some("noTarget"),
                            "no value of 'emails' matches the path filter",
                        );
                        return Verdict::Answer(answer, EmailsWithoutType);
                    }
                    Typeless::Changed => {
                        if operations_mut(json).is_some_and(|ops| ops.is_empty()) {
                            // Nothing left to do; scim2-server refuses an empty PatchOp.
                            return Verdict::Answer(no_content(), EmailsWithoutType);
                        }
                        changed(EmailsWithoutType, true);
                    }
                    Typeless::Unchanged => {}
                }
            }
        }
    }

    let body = match json {
        Some(json) if body_changed => Bytes::from(json.to_string()),
        _ => body.clone(),
    };
    Verdict::Forward {
        path: forward_path,
        body,
        changed_by,
    }
}

/// The response side of the deviations: rewrites what the upstream answered; returns the
/// deviation that changed it, if any.
fn deviate_response(
    method: &Method,
    route: &str,
    answer: &mut Answer,
    set: &[Deviation],
) -> Option<Deviation> {
    let mut json: Value = serde_json::from_slice(&answer.body).ok()?;
    let mut changed_by = None;
    if set.contains(&Deviation::FilterIgnoredEmpty)
        && *method == Method::GET
        && is_collection(route, "ServiceProviderConfig")
    {
        if let Some(config) = json.as_object_mut() {
            let filter = config
                .entry("filter")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(filter) = filter.as_object_mut() {
                filter.insert("supported".to_owned(), Value::Bool(false));
                changed_by = Some(Deviation::FilterIgnoredEmpty);
            }
        }
    }
    if set.contains(&Deviation::EmailsWithoutType) && strip_email_types(&mut json) {
        changed_by = changed_by.or(Some(Deviation::EmailsWithoutType));
    }
    if changed_by.is_some() {
        answer.body = Bytes::from(json.to_string());
    }
    changed_by
}

/// Whether the last segment of `route` (a path without query) is `name` (any case):
/// `/v2/Users`.
fn is_collection(route: &str, name: &str) -> bool {
    let mut segments = route.trim_end_matches('/').rsplit('/');
    segments
        .next()
        .is_some_and(|last| last.eq_ignore_ascii_case(name))
}

/// Whether `route` is one resource of the collection `name`: `/v2/Users/ID`.
fn is_resource(route: &str, name: &str) -> bool {
    let mut segments = route.trim_end_matches('/').rsplit('/');
    let id = segments.next().unwrap_or_default();
    !id.is_empty()
        && segments
            .next()
            .is_some_and(|c| c.eq_ignore_ascii_case(name))
}

/// The listing's path with `startIndex` set to 1, when it has another value.
fn first_page(route: &str, query: &str) -> Option<String> {
    let mut changed = false;
    let pairs: Vec<String> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if form_decode(key).eq_ignore_ascii_case("startIndex") && form_decode(value) != "1" {
                changed = true;
                format!("{key}=1")
            } else {
                pair.to_owned()
            }
        })
        .collect();
    changed.then(|| format!("{route}?{}", pairs.join("&")))
}

/// The member of a JSON object named `name` in any case (SCIM names are case-insensitive).
fn key_mut<'a>(value: &'a mut Value, name: &str) -> Option<&'a mut Value> {
    value
        .as_object_mut()?
        .iter_mut()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

fn key<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    value
        .as_object()?
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

/// Drops the `members` of a group's body; whether it had some.
fn remove_members(group: &mut Value) -> bool {
    let Some(object) = group.as_object_mut() else {
        return false;
    };
    let before = object.len();
    object.retain(|key, _| !key.eq_ignore_ascii_case("members"));
    object.len() != before
}

/// Drops `type` from every value of every `emails` attribute anywhere in `value`; whether
/// there was one.
fn strip_email_types(value: &mut Value) -> bool {
    let mut changed = false;
    match value {
        Value::Object(object) => {
            for (key, item) in object.iter_mut() {
                changed |= if key.eq_ignore_ascii_case("emails") {
                    strip_type_keys(item)
                } else {
                    strip_email_types(item)
                };
            }
        }
        Value::Array(items) => {
            for item in items {
                changed |= strip_email_types(item);
            }
        }
        _ => {}
    }
    changed
}

/// Drops `type` from an e-mail value, or from each of a list of them.
fn strip_type_keys(emails: &mut Value) -> bool {
    match emails {
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, item| strip_type_keys(item) | changed),
        Value::Object(email) => {
            let before = email.len();
            email.retain(|key, _| !key.eq_ignore_ascii_case("type"));
            email.len() != before
        }
        _ => false,
    }
}

/// What [`typeless_patch`] made of a PatchOp.
enum Typeless {
    Unchanged,
    Changed,
    /// An operation adds or replaces e-mails selected by type: none can match.
    NoTarget,
}

/// Applies [`Deviation::EmailsWithoutType`] to a PatchOp body: drops e-mail types from its
/// values, and the operations that do nothing without types.
fn typeless_patch(patch: &mut Value) -> Typeless {
    let Some(operations) = operations_mut(patch) else {
        return Typeless::Unchanged;
    };
    let mut changed = false;
    let mut kept = Vec::with_capacity(operations.len());
    for op in operations.iter() {
        let mut op = op.clone();
        let path = op_path(&op).map(attr_path).map(|p| p.to_ascii_lowercase());
        match path.as_deref() {
            Some(path)
                if path == "emails"
                    || path.starts_with("emails[")
                    || path.starts_with("emails.") =>
            {
                let (filter, sub) = split_value_path(path);
                let by_type = filter.is_some_and(|f| words(&skeleton(f)).any(|w| w == "type"));
                if by_type && !op_is(&op, "remove") {
                    return Typeless::NoTarget;
                }
                if by_type || sub == Some("type") {
                    // Nothing to remove, or a sub-attribute the server does not keep.
                    changed = true;
                    continue;
                }
                if let Some(value) = key_mut(&mut op, "value") {
                    changed |= strip_type_keys(value);
                }
            }
            _ => {
                if let Some(value) = key_mut(&mut op, "value") {
                    changed |= strip_email_types(value);
                }
            }
        }
        kept.push(op);
    }
    if !changed {
        return Typeless::Unchanged;
    }
    *operations = kept;
    Typeless::Changed
}

/// `emails[type eq "work"].value` into (`Some("type eq \"work\"")`, `Some("value")`);
/// `emails.type` into (`None`, `Some("type")`).
fn split_value_path(path: &str) -> (Option<&str>, Option<&str>) {
    match path.find('[') {
        Some(open) => {
            let close = closing_bracket(path, open).unwrap_or(path.len());
            let filter = &path[open + 1..close];
            let sub = path
                .get(close + 1..)
                .and_then(|rest| rest.strip_prefix('.'));
            (Some(filter), sub)
        }
        None => (None, path.split_once('.').map(|(_, sub)| sub)),
    }
}

/// The index of the `]` that closes the `[` at `open`, skipping string literals.
fn closing_bracket(text: &str, open: usize) -> Option<usize> {
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in text.char_indices().skip_while(|(i, _)| *i <= open) {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            ']' if !in_string => return Some(i),
            _ => {}
        }
    }
    None
}

/// The PatchOp's operations.
fn operations_mut(patch: &mut Value) -> Option<&mut Vec<Value>> {
    key_mut(patch, "Operations")?.as_array_mut()
}

fn op_is(op: &Value, name: &str) -> bool {
    key(op, "op")
        .and_then(Value::as_str)
        .is_some_and(|op| op.eq_ignore_ascii_case(name))
}

fn op_path(op: &Value) -> Option<&str> {
    key(op, "path").and_then(Value::as_str)
}

/// A PATCH path without its schema URN prefix:
/// `urn:ietf:params:scim:schemas:core:2.0:User:name.givenName` is `name.givenName`. The
/// prefix ends at the last `:` before any `[` (a filter may hold colons in its strings).
fn attr_path(path: &str) -> &str {
    let path = path.trim();
    if !path
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
    {
        return path;
    }
    let head = &path[..path.find('[').unwrap_or(path.len())];
    match head.rfind(':') {
        Some(colon) => &path[colon + 1..],
        None => path,
    }
}

/// An `add` of group members: path `members`, or no path and a value with `members`.
fn adds_members(op: &Value) -> bool {
    op_is(op, "add")
        && match op_path(op) {
            Some(path) => attr_path(path).eq_ignore_ascii_case("members"),
            None => key(op, "value").and_then(|v| key(v, "members")).is_some(),
        }
}

/// A `remove` of group members: path `members` or `members[…]`.
fn removes_members(op: &Value) -> bool {
    op_is(op, "remove")
        && op_path(op).is_some_and(|path| {
            let path = attr_path(path).to_ascii_lowercase();
            path == "members" || path.starts_with("members[")
        })
}

/// The operations with each `{"op": "remove", "path": "members", "value": [{"value": ID},
/// …]}` made into one `members[value eq "ID"]` removal per value; `None` when there is none.
fn members_by_filter(operations: &[Value]) -> Option<Vec<Value>> {
    let mut changed = false;
    let mut out = Vec::with_capacity(operations.len());
    for op in operations {
        let ids = (op_is(op, "remove")
            && op_path(op).is_some_and(|p| attr_path(p).eq_ignore_ascii_case("members")))
        .then(|| key(op, "value"))
        .flatten()
        .and_then(member_ids);
        match ids {
            Some(ids) => {
                let name = key(op, "op").cloned().unwrap_or_else(|| json!("remove"));
                for id in ids {
                    out.push(json!({
                        "op": name,
                        "path": format!("members[value eq {}]", quote(id)),
                    }));
                }
                changed = true;
            }
            None => out.push(op.clone()),
        }
    }
    changed.then_some(out)
}

/// The ids of a members value, `[{"value": ID}, …]` or `{"value": ID}`, when each has one.
fn member_ids(value: &Value) -> Option<Vec<&str>> {
    let items = match value {
        Value::Array(items) => items.iter().collect::<Vec<_>>(),
        Value::Object(_) => vec![value],
        _ => return None,
    };
    items
        .into_iter()
        .map(|item| key(item, "value").and_then(Value::as_str))
        .collect::<Option<Vec<_>>>()
        .filter(|ids| !ids.is_empty())
}

/// A SCIM string literal.
fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The filter with each string literal emptied (`"…"` into `""`) and in lower case: what is
/// left is attribute paths, operators, brackets and parentheses.
fn skeleton(filter: &str) -> String {
    let mut out = String::with_capacity(filter.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in filter.chars() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    in_string = false;
                    out.push('"');
                }
                _ => {}
            }
        } else {
            if c == '"' {
                in_string = true;
            }
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// The words of a filter skeleton: attribute paths, operators and keywords.
fn words(skeleton: &str) -> impl Iterator<Item = &str> {
    skeleton
        .split(|c: char| c.is_whitespace() || "()[]\"".contains(c))
        .filter(|word| !word.is_empty())
}

/// The value filters of a filter skeleton: (attribute before `[`, text inside the brackets).
fn value_filters(skeleton: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(open) = skeleton[from..].find('[').map(|i| from + i) {
        let close = skeleton[open..]
            .find(']')
            .map_or(skeleton.len(), |i| open + i);
        let start = skeleton[..open]
            .rfind(|c: char| c.is_whitespace() || c == '(' || c == ')')
            .map_or(0, |i| i + 1);
        out.push((&skeleton[start..open], &skeleton[open + 1..close]));
        from = (close + 1).min(skeleton.len());
    }
    out
}

/// Whether a filter holds a value filter with `and`: `emails[type eq "work" and value eq
/// "x"]`.
fn has_compound_value_filter(filter: &str) -> bool {
    let skeleton = skeleton(filter);
    value_filters(&skeleton)
        .iter()
        .any(|(_, inside)| words(inside).any(|w| w == "and"))
}

/// Whether a filter selects e-mails by their type: `emails[type eq "work"]` (any operator,
/// `type` anywhere inside the brackets) or `emails.type …`.
fn selects_email_type(filter: &str) -> bool {
    let skeleton = skeleton(filter);
    let in_brackets = value_filters(&skeleton)
        .iter()
        .any(|(attr, inside)| attr_path(attr) == "emails" && words(inside).any(|w| w == "type"));
    in_brackets || words(&skeleton).any(|w| attr_path(w) == "emails.type")
}

/// `200` with an empty ListResponse: what a search that finds nothing answers.
fn empty_list() -> Answer {
    json_answer(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": 0,
            "Resources": [],
            "startIndex": 1,
            "itemsPerPage": 0,
        }),
    )
}

/// `204 No Content`, as scim2-server answers a PATCH.
fn no_content() -> Answer {
    Answer {
        status: StatusCode::NO_CONTENT,
        headers: HeaderMap::new(),
        body: Bytes::new(),
    }
}

fn json_answer(status: StatusCode, body: &Value) -> Answer {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/scim+json"),
    );
    Answer {
        status,
        headers,
        body: Bytes::from(body.to_string()),
    }
}

/// A SCIM error answer, as [`scim_error`]'s, with a `scimType` and a detail of its own.
fn scim_refusal(status: u16, scim_type: Option<&str>, detail: &str) -> Answer {
    let status = StatusCode::from_u16(status).expect("a valid HTTP status");
    let mut body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": status.as_u16().to_string(),
        "detail": detail,
    });
    if let Some(scim_type) = scim_type {
        body["scimType"] = json!(scim_type);
    }
    json_answer(status, &body)
}

/// The path with the `filter` parameter left out of its query.
fn without_filter(path: &str) -> String {
    match path.split_once('?') {
        None => path.to_owned(),
        Some((route, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|pair| !pair.starts_with("filter="))
                .collect();
            if kept.is_empty() {
                route.to_owned()
            } else {
                format!("{route}?{}", kept.join("&"))
            }
        }
    }
}

fn without_hop_by_hop(headers: &HeaderMap) -> HeaderMap {
    let mut out = headers.clone();
    for name in &NOT_FORWARDED {
        out.remove(name);
    }
    out
}

fn scim_error(status: u16, retry_after_secs: Option<u64>) -> Answer {
    let status = StatusCode::from_u16(status).expect("a valid HTTP status");
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": status.as_u16().to_string(),
        "detail": "Fault injected by the test proxy.",
    });
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/scim+json"),
    );
    if let Some(secs) = retry_after_secs {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    Answer {
        status,
        headers,
        body: Bytes::from(body.to_string()),
    }
}

/// A response whose body fails at once: the server then closes the connection before it has
/// sent the status line, and the client sees the connection end without an answer.
fn dropped_connection() -> Response {
    let failing = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "fault injected by the test proxy",
        ))
    });
    Response::new(Body::from_stream(failing))
}

fn json_or_text(bytes: &Bytes) -> Option<Value> {
    if bytes.is_empty() {
        return None;
    }
    Some(
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned())),
    )
}

/// `http://host:port/base` into (`http://host:port`, `/base`).
fn split_base(base: &str) -> (&str, &str) {
    let base = base.trim_end_matches('/');
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    match base[after_scheme..].find('/') {
        Some(i) => base.split_at(after_scheme + i),
        None => (base, ""),
    }
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(key), form_decode(value))
        })
        .collect()
}

/// Decodes `application/x-www-form-urlencoded` text: `+` is a space, `%XX` a byte.
fn form_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}
