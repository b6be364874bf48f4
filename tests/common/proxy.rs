//! A recording HTTP proxy in front of a real server: forwards every call unchanged, records
//! it, and injects the faults a test plans.

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};
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

    let send = || shared.send(&parts.method, &path, &upstream_headers, &body);
    let (answer, dropped) = match &fault {
        None | Some(Fault::Pass) => (send().await, false),
        Some(Fault::Status(status)) => (scim_error(*status, None), false),
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            (scim_error(429, Some(*retry_after_secs)), false)
        }
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(*delay).await;
            (send().await, false)
        }
        Some(Fault::DropBeforeForward) => (scim_error(502, None), true),
        Some(Fault::DropAfterForward) => (send().await, true),
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
            (answer, false)
        }
        Some(Fault::Unfiltered) => {
            let unfiltered = without_filter(&path);
            (
                shared
                    .send(&parts.method, &unfiltered, &upstream_headers, &body)
                    .await,
                false,
            )
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
