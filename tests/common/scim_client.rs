//! Blocking helpers that talk to a SCIM server directly (not through the proxy), shared by
//! every real server of the harness: [`super::ScimServer`] and [`super::DjangoServer`] both
//! dereference to a [`ScimClient`], so a test calls `server.list_users()` on either.

use reqwest::Method;
use serde_json::{json, Value};

use super::{block_on, http_client};

/// The page size the listing helpers ask for: scim2-server's default and maximum, and well
/// within what django-scim2 accepts (it has no maximum; its default is 50).
pub const PAGE_SIZE: usize = 1000;

/// A SCIM base URL and the bearer token it accepts, with blocking helpers.
pub struct ScimClient {
    /// The SCIM base URL, e.g. `http://127.0.0.1:PORT/v2`.
    pub url: String,
    /// The bearer token the server accepts.
    pub token: String,
    http: reqwest::Client,
}

impl ScimClient {
    pub fn new(url: String, token: String) -> ScimClient {
        ScimClient {
            url,
            token,
            http: http_client(),
        }
    }

    /// The `Authorization` header value the server accepts.
    pub fn auth_header(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// Sends one request with the token and returns the status and the JSON body, if any.
    /// `path` is relative to [`ScimClient::url`] (`/Users/ID` or `Users/ID`), or a full URL
    /// (a `Location` or `meta.location`).
    pub fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Option<Value>) {
        let url = self.resolve(path);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/scim+json")
                .body(body.to_string());
        }
        block_on(async move {
            let response = request
                .send()
                .await
                .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
            let status = response.status().as_u16();
            let bytes = response
                .bytes()
                .await
                .unwrap_or_else(|e| panic!("{method} {url}: reading the body: {e}"));
            let body = if bytes.is_empty() {
                None
            } else {
                Some(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                    panic!(
                        "{method} {url}: {status} with a body that is not JSON ({e}): {}",
                        String::from_utf8_lossy(&bytes)
                    )
                }))
            };
            (status, body)
        })
    }

    /// Like [`ScimClient::request`], but panics with the server's answer on a non-2xx status.
    pub fn request_ok(&self, method: Method, path: &str, body: Option<&Value>) -> Option<Value> {
        let (status, answer) = self.request(method.clone(), path, body);
        assert!(
            (200..300).contains(&status),
            "{method} {}: {status} {}",
            self.resolve(path),
            answer.map(|v| v.to_string()).unwrap_or_default()
        );
        answer
    }

    /// `GET path`; panics on a non-2xx status.
    pub fn get(&self, path: &str) -> Value {
        self.request_ok(Method::GET, path, None)
            .unwrap_or_else(|| panic!("GET {path}: empty body"))
    }

    /// `POST path`; returns the created resource; panics on a non-2xx status.
    pub fn post(&self, path: &str, body: Value) -> Value {
        self.request_ok(Method::POST, path, Some(&body))
            .unwrap_or_else(|| panic!("POST {path}: empty body"))
    }

    /// `PUT path`; returns the replaced resource; panics on a non-2xx status.
    pub fn put(&self, path: &str, body: Value) -> Value {
        self.request_ok(Method::PUT, path, Some(&body))
            .unwrap_or_else(|| panic!("PUT {path}: empty body"))
    }

    /// `PATCH path` with a PatchOp body. scim2-server answers 204 without a body (`None`),
    /// django-scim2 200 with the resource. Panics on a non-2xx status.
    pub fn patch(&self, path: &str, body: Value) -> Option<Value> {
        self.request_ok(Method::PATCH, path, Some(&body))
    }

    /// A PatchOp body for [`ScimClient::patch`] from its operations.
    pub fn patch_op(operations: Value) -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": operations,
        })
    }

    /// `DELETE path`; panics on a non-2xx status.
    pub fn delete(&self, path: &str) {
        self.request_ok(Method::DELETE, path, None);
    }

    /// `POST /Users`. The core User schema is added when the body has no `schemas`.
    pub fn create_user(&self, body: Value) -> Value {
        self.post(
            "/Users",
            with_schema(body, "urn:ietf:params:scim:schemas:core:2.0:User"),
        )
    }

    /// `POST /Groups`. The core Group schema is added when the body has no `schemas`.
    pub fn create_group(&self, body: Value) -> Value {
        self.post(
            "/Groups",
            with_schema(body, "urn:ietf:params:scim:schemas:core:2.0:Group"),
        )
    }

    /// Every user, reading all pages.
    pub fn list_users(&self) -> Vec<Value> {
        self.list_all("/Users", None)
    }

    /// Every group, reading all pages.
    pub fn list_groups(&self) -> Vec<Value> {
        self.list_all("/Groups", None)
    }

    /// Every resource under `path` (`/Users`, `/Groups`) that matches the SCIM `filter`, if
    /// given, reading all pages.
    pub fn list_all(&self, path: &str, filter: Option<&str>) -> Vec<Value> {
        self.list_paged(path, filter, PAGE_SIZE)
    }

    /// Like [`ScimClient::list_all`], reading pages of `page_size` resources.
    pub fn list_paged(&self, path: &str, filter: Option<&str>, page_size: usize) -> Vec<Value> {
        let url = self.resolve(path);
        let mut resources: Vec<Value> = Vec::new();
        loop {
            let mut query = vec![
                ("startIndex", (resources.len() + 1).to_string()),
                ("count", page_size.to_string()),
            ];
            if let Some(filter) = filter {
                query.push(("filter", filter.to_string()));
            }
            let request = self.http.get(&url).bearer_auth(&self.token).query(&query);
            let url = url.clone();
            let (status, page) = block_on(async move {
                let response = request
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("GET {url}: {e}"));
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                (status, text)
            });
            assert_eq!(status, 200, "GET {path} (list): {page}");
            let page: Value = serde_json::from_str(&page)
                .unwrap_or_else(|e| panic!("GET {path} (list): not JSON ({e}): {page}"));
            let total = page["totalResults"].as_u64().unwrap_or(0) as usize;
            let batch = page["Resources"].as_array().cloned().unwrap_or_default();
            let empty = batch.is_empty();
            resources.extend(batch);
            if resources.len() >= total || empty {
                return resources;
            }
        }
    }

    /// The user whose `userName` is `name` (compared exactly, as stored).
    pub fn user_by_username(&self, name: &str) -> Option<Value> {
        self.list_users()
            .into_iter()
            .find(|user| user["userName"].as_str() == Some(name))
    }

    /// The group whose `displayName` is `name`.
    pub fn group_by_display_name(&self, name: &str) -> Option<Value> {
        self.list_groups()
            .into_iter()
            .find(|group| group["displayName"].as_str() == Some(name))
    }

    /// `path` as a full URL: relative paths are appended to [`ScimClient::url`].
    pub fn resolve(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}/{}", self.url, path.trim_start_matches('/'))
        }
    }
}

fn with_schema(mut body: Value, schema: &str) -> Value {
    if let Some(object) = body.as_object_mut() {
        object.entry("schemas").or_insert_with(|| json!([schema]));
    }
    body
}
