//! A small OAuth 2.0 token endpoint (client credentials grant, RFC 6749 §4.4) for the tests:
//! it checks the client's HTTP Basic credentials, issues short-lived random tokens, counts its
//! calls, and tells the recording proxy which tokens are valid now.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use serde_json::json;
use tokio::sync::oneshot;

/// One token request as the endpoint saw it.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// The decoded `client_id` of the Basic credentials (empty when there were none).
    pub client_id: String,
    /// The form body, decoded.
    pub form: Vec<(String, String)>,
    /// The status answered.
    pub status: u16,
}

/// A token endpoint on a free 127.0.0.1 port; stops when dropped.
pub struct TokenServer {
    /// `http://127.0.0.1:PORT/oauth2/token`
    pub url: String,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    client_id: String,
    client_secret: String,
    lifetime: Duration,
    issued: Mutex<BTreeMap<String, Instant>>,
    requests: Mutex<Vec<TokenRequest>>,
}

impl TokenServer {
    /// Accepts `client_id`/`client_secret` and issues tokens that live `lifetime`
    /// (`expires_in` says the whole seconds of it, at least 1).
    pub fn start(client_id: &str, client_secret: &str, lifetime: Duration) -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the token server");
        listener.set_nonblocking(true).expect("non-blocking");
        let port = listener.local_addr().expect("address").port();
        let shared = Arc::new(Shared {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            lifetime,
            issued: Mutex::new(BTreeMap::new()),
            requests: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/oauth2/token", post(token))
            .with_state(Arc::clone(&shared));
        let (shutdown, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("token-server-{port}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("token server runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("register listener");
                    tokio::select! {
                        result = axum::serve(listener, app) => {
                            if let Err(e) = result {
                                eprintln!("token server on port {port} failed: {e}");
                            }
                        }
                        _ = stopped => {}
                    }
                });
            })
            .expect("spawn the token server");
        TokenServer {
            url: format!("http://127.0.0.1:{port}/oauth2/token"),
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// Every token request so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.shared.requests.lock().expect("requests lock").clone()
    }

    /// Token requests that were answered with a token.
    pub fn issued(&self) -> usize {
        self.requests().iter().filter(|r| r.status == 200).count()
    }

    /// Every token ever issued (to look for them in logs).
    pub fn tokens(&self) -> Vec<String> {
        self.shared
            .issued
            .lock()
            .expect("issued lock")
            .keys()
            .cloned()
            .collect()
    }

    /// Forgets every token issued so far, as an authorisation server revoking them.
    pub fn revoke_all(&self) {
        let mut issued = self.shared.issued.lock().expect("issued lock");
        for expiry in issued.values_mut() {
            *expiry = Instant::now();
        }
    }

    /// A check the recording proxy can call: is this bearer token issued and unexpired?
    pub fn validator(&self) -> Arc<dyn Fn(&str) -> bool + Send + Sync> {
        let shared = Arc::clone(&self.shared);
        Arc::new(move |token: &str| {
            shared
                .issued
                .lock()
                .expect("issued lock")
                .get(token)
                .is_some_and(|expiry| Instant::now() < *expiry)
        })
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    let form: Vec<(String, String)> = body
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                urlencoding::decode(&s.replace('+', " "))
                    .map(|c| c.into_owned())
                    .unwrap_or_default()
            };
            (decode(k), decode(v))
        })
        .collect();
    let (client_id, client_secret) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            let (id, secret) = s.split_once(':')?;
            let id = urlencoding::decode(id).ok()?.into_owned();
            let secret = urlencoding::decode(secret).ok()?.into_owned();
            Some((id, secret))
        })
        .unwrap_or_default();
    let grant = form
        .iter()
        .find(|(k, _)| k == "grant_type")
        .map(|(_, v)| v.as_str());
    let (status, answer) = if client_id != shared.client_id || client_secret != shared.client_secret
    {
        (
            StatusCode::UNAUTHORIZED,
            // Echoes what it was sent, with a terminal escape, as a careless server does:
            // scimsync must neither print nor store either.
            json!({
                "error": "invalid_client",
                "error_description": format!("client authentication failed for secret {client_secret}\u{1b}[2J"),
            }),
        )
    } else if grant != Some("client_credentials") {
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "unsupported_grant_type"}),
        )
    } else {
        let token = format!("at-{}", super::random_hex(16));
        shared
            .issued
            .lock()
            .expect("issued lock")
            .insert(token.clone(), Instant::now() + shared.lifetime);
        (
            StatusCode::OK,
            json!({
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": shared.lifetime.as_secs().max(1),
            }),
        )
    };
    shared
        .requests
        .lock()
        .expect("requests lock")
        .push(TokenRequest {
            client_id,
            form,
            status: status.as_u16(),
        });
    let mut response = (status, answer.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/json".parse().expect("header value"),
    );
    response
}
