//! The TOML configuration: what serde reads, validated with every problem reported at once.
//!
//! Each problem carries its key path (`target[0].user_mapping[2].expression: …`) so that an
//! administrator can fix a whole file in one pass. Running parts are built from these plain
//! values elsewhere (`source::build`, `target::Target::build`, `scim::Client::new`).

mod load;
mod scope;
mod take;

pub use load::RuleCheck;
pub use scope::{Clause, Operator, ScopeConfig, ScopeFilter};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Where the configuration is read from when neither `--config` nor `SCIMSYNC_CONFIG` is given.
pub const DEFAULT_PATH: &str = "/etc/scimsync/scimsync.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the configuration: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: TOML syntax error: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: invalid configuration:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// A loaded, validated configuration. Paths in it are absolute (resolved against the file).
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub state: StateConfig,
    pub source: SourceConfig,
    pub scope: ScopeConfig,
    pub targets: Vec<TargetConfig>,
    /// `source.min_source_ratio`: a read with fewer users than this share of the last good
    /// read is taken as an outage (the source-outage guard).
    pub min_source_ratio: f64,
    /// `source.max_value_bytes`: an object with a longer attribute value is rejected (kept
    /// out of the cycle with the reason, never deprovisioned for it).
    pub max_value_bytes: usize,
    /// `metrics_listen`: where `scimsync run` serves Prometheus metrics (`GET /metrics`).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// The default of `source.max_value_bytes`: 64 KiB, above any real attribute (a photo is
/// never mapped as text).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 64 << 10;

/// The default of `source.min_source_ratio`.
pub const DEFAULT_MIN_SOURCE_RATIO: f64 = 0.5;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    #[serde(default = "default_state_path")]
    pub path: PathBuf,
    /// Provisioning log records older than this many days are pruned at the end of a cycle.
    #[serde(default = "default_log_retention_days")]
    pub log_retention_days: u32,
    /// At most this many provisioning log records are kept (over every target); the oldest
    /// go first.
    #[serde(default = "default_log_max_records")]
    pub log_max_records: usize,
    /// Where the state lives: `sled` (in `path`) or `postgres` (at `url`).
    #[serde(default)]
    pub backend: StateBackend,
    /// PostgreSQL: `postgres://user@host:port/database` (no password in it).
    pub url: Option<String>,
    /// PostgreSQL: the password, from a file or an environment variable.
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    /// PostgreSQL: how long a target's lease lasts without renewal; an instance that dies
    /// loses its targets to the others after at most this long. Default 30.
    pub lease_seconds: Option<u64>,
    /// PostgreSQL: the CA certificate(s), PEM, that sign the server's certificate. With it the
    /// connection is TLS or nothing, the server's certificate and host name verified; without
    /// it the server must be on this host.
    pub ca_file: Option<PathBuf>,
}

/// `state.backend`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    #[default]
    Sled,
    Postgres,
}

/// The default of `state.log_retention_days`.
pub const DEFAULT_LOG_RETENTION_DAYS: u32 = 30;
/// The default of `state.log_max_records`.
pub const DEFAULT_LOG_MAX_RECORDS: usize = 100_000;

fn default_log_retention_days() -> u32 {
    DEFAULT_LOG_RETENTION_DAYS
}

fn default_log_max_records() -> usize {
    DEFAULT_LOG_MAX_RECORDS
}

/// The default of `state.lease_seconds`.
pub const DEFAULT_LEASE_SECONDS: u64 = 30;

impl StateConfig {
    /// How long a lease lasts without renewal.
    pub fn lease(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.lease_seconds.unwrap_or(DEFAULT_LEASE_SECONDS))
    }
}

fn default_state_path() -> PathBuf {
    PathBuf::from("scimsync-state")
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            path: default_state_path(),
            log_retention_days: DEFAULT_LOG_RETENTION_DAYS,
            log_max_records: DEFAULT_LOG_MAX_RECORDS,
            backend: StateBackend::Sled,
            url: None,
            password_file: None,
            password_env: None,
            lease_seconds: None,
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceConfig {
    Json(JsonSourceConfig),
    Ldap(Box<LdapSourceConfig>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonSourceConfig {
    pub path: PathBuf,
}

/// An LDAP directory (OpenLDAP, Active Directory, …); `source::ldap` is the connector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapSourceConfig {
    pub url: String,
    #[serde(default)]
    pub starttls: bool,
    #[serde(default)]
    pub tls_insecure: bool,
    pub ca_file: Option<PathBuf>,
    pub bind_dn: Option<String>,
    pub bind_password_file: Option<PathBuf>,
    pub bind_password_env: Option<String>,
    pub base_dn: String,
    pub users_base_dn: Option<String>,
    pub groups_base_dn: Option<String>,
    pub user_filter: Option<String>,
    pub group_filter: Option<String>,
    pub page_size: Option<u32>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub group_attributes: BTreeMap<String, String>,
}

/// The user filter when `user_filter` is not set.
pub const DEFAULT_USER_FILTER: &str = "(objectClass=inetOrgPerson)";
/// The group filter when `group_filter` is not set.
pub const DEFAULT_GROUP_FILTER: &str =
    "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))";
/// Entries per page of the Simple Paged Results control when `page_size` is not set; 500 is
/// below the size limit most servers enforce (Active Directory's MaxPageSize is 1000).
pub const DEFAULT_PAGE_SIZE: u32 = 500;

impl LdapSourceConfig {
    pub fn users_base_dn(&self) -> &str {
        self.users_base_dn.as_deref().unwrap_or(&self.base_dn)
    }
    pub fn groups_base_dn(&self) -> &str {
        self.groups_base_dn.as_deref().unwrap_or(&self.base_dn)
    }
    pub fn user_filter(&self) -> &str {
        self.user_filter.as_deref().unwrap_or(DEFAULT_USER_FILTER)
    }
    pub fn group_filter(&self) -> &str {
        self.group_filter.as_deref().unwrap_or(DEFAULT_GROUP_FILTER)
    }
    pub fn page_size(&self) -> u32 {
        self.page_size.unwrap_or(DEFAULT_PAGE_SIZE)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeprovisionMode {
    #[default]
    Deactivate,
    Delete,
}

/// One SCIM target as written in the file; [`crate::target::Target::build`] compiles its
/// mappings into the running form.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub name: String,
    pub url: String,
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
    /// OAuth 2.0 client credentials (RFC 6749 §4.4), instead of `token_file`/`token_env`.
    pub token_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    pub client_secret_env: Option<String>,
    /// The OAuth `scope` parameter of the token request.
    pub token_scope: Option<String>,
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_schedule")]
    pub schedule: String,
    #[serde(default = "default_rate_limit")]
    pub rate_limit: u32,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default)]
    pub deprovision: DeprovisionMode,
    #[serde(default = "default_deletion_threshold")]
    pub deletion_threshold: usize,
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
    /// Requests the rate limiter lets through at once after an idle spell; default `rate_limit`.
    pub burst: Option<u32>,
    #[serde(default = "default_connect_timeout_seconds")]
    pub connect_timeout_seconds: u64,
    /// How long one operation keeps retrying transient failures before it counts as failed.
    #[serde(default = "default_retry_max_seconds")]
    pub retry_max_seconds: u64,
    /// Deprovisions beyond this share (percent) of the managed accounts in one cycle are held.
    #[serde(default = "default_deletion_threshold_percent")]
    pub deletion_threshold_percent: f64,
    /// One attribute cleared on more than this share (percent) of the managed users in one
    /// cycle is held (the attribute-wipe guard); 100 turns the guard off.
    #[serde(default = "default_attribute_clear_threshold")]
    pub attribute_clear_threshold: f64,
    /// A cycle whose failed operations reach this share is quarantined.
    #[serde(default = "default_quarantine_failure_ratio")]
    pub quarantine_failure_ratio: f64,
    /// … provided it attempted at least this many operations.
    #[serde(default = "default_quarantine_min_operations")]
    pub quarantine_min_operations: usize,
    /// Carry writes in SCIM bulk requests (RFC 7644 §3.7) when the target advertises bulk.
    #[serde(default)]
    pub bulk: bool,
    /// A response body larger than this fails its call (listing pages and bulk responses too).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// What cannot be learned safely about this target's deviations from RFC 7644.
    #[serde(default)]
    pub compat: CompatConfig,
    /// `[target.scope]`, or the global `[scope]` when the target has none (`own_scope`).
    #[serde(skip)]
    pub scope: ScopeConfig,
    #[serde(skip)]
    pub own_scope: bool,
    /// The OAuth scope was given as a string `scope`, its name before `token_scope`.
    #[serde(skip)]
    pub legacy_token_scope: bool,
    #[serde(skip)]
    pub user_mapping: Vec<MappingConfig>,
    #[serde(skip)]
    pub group_mapping: Vec<MappingConfig>,
}

/// `[target.compat]`: a target's known deviations, for what scimsync cannot learn safely from
/// its answers (docs/targets.md names the services that need each).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompatConfig {
    /// At most this many member changes per group PATCH (AWS IAM Identity Center: 100).
    /// Unset: as many as the target takes, learned by halving on a 400 or 413.
    pub member_batch: Option<usize>,
    /// How PATCH operation names are spelled: `lower` (`add`, RFC 7644) or `entra`
    /// (`Add`, `Replace`, `Remove`, as Entra ID sends them).
    #[serde(default)]
    pub patch_op_case: OpCase,
    /// How existing accounts are found: `auto` (learned), `filter` (always by filter queries)
    /// or `list` (always by listing the target).
    #[serde(default)]
    pub matching: MatchingMode,
    /// Whether `POST /Groups` keeps the members it is sent. Unset: learned from the answer.
    pub group_members_on_create: Option<bool>,
    /// How members are removed: `value_filter` (`path: members[value eq "ID"]`) or
    /// `value_list` (`path: members` with a `value` list). Unset: learned.
    pub member_remove: Option<MemberRemove>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpCase {
    #[default]
    Lower,
    Entra,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchingMode {
    #[default]
    Auto,
    Filter,
    List,
}

/// The two forms of a member removal that servers take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRemove {
    /// `{"op": "remove", "path": "members[value eq \"ID\"]"}`
    ValueFilter,
    /// `{"op": "remove", "path": "members", "value": [{"value": "ID"}]}`
    ValueList,
}

fn default_schedule() -> String {
    // Entra ID's provisioning interval is 40 minutes.
    "0 */40 * * * *".to_owned()
}
/// The default of `max_response_bytes`: 16 MiB, far above a page of 1,000 accounts.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 << 20;

fn default_max_response_bytes() -> usize {
    DEFAULT_MAX_RESPONSE_BYTES
}
fn default_rate_limit() -> u32 {
    25
}
fn default_concurrency() -> usize {
    4
}
fn default_deletion_threshold() -> usize {
    500
}
fn default_timeout_seconds() -> u64 {
    30
}
fn default_connect_timeout_seconds() -> u64 {
    10
}
fn default_retry_max_seconds() -> u64 {
    60
}
fn default_deletion_threshold_percent() -> f64 {
    // Off by default, as Entra ID's accidental-deletion prevention is a count: a share would
    // hold the ordinary departures of a small tenant. 100 can never be exceeded.
    100.0
}
fn default_attribute_clear_threshold() -> f64 {
    25.0
}
fn default_quarantine_failure_ratio() -> f64 {
    0.5
}
fn default_quarantine_min_operations() -> usize {
    10
}

impl Config {
    /// What is valid but unsafe: an `http://` target or token url that is not on this host
    /// (the token and personal data would cross the network in clear).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, t) in self.targets.iter().enumerate() {
            if t.legacy_token_scope {
                out.push(format!(
                    "target[{i}].scope: a string here is the OAuth scope, now named token_scope (target {:?}); rename the key, as [target.scope] is now the target's own assignments",
                    t.name
                ));
            }
            for (key, url) in [("url", Some(&t.url)), ("token_url", t.token_url.as_ref())] {
                if let Some(url) = url.and_then(|u| reqwest::Url::parse(u).ok()) {
                    if url.scheme() == "http" && !is_loopback(&url) {
                        out.push(format!(
                            "target[{i}].{key}: {url} is plain http to another host (target {:?}): the token and the users' data cross the network unencrypted; use https",
                            t.name
                        ));
                    }
                }
            }
        }
        out
    }
}

/// Whether a url names this host (`localhost`, `127.0.0.0/8`, `::1`).
fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

impl TargetConfig {
    /// The rate limiter's burst: `burst`, or one second's worth of `rate_limit`.
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or(self.rate_limit).max(1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Apply {
    #[default]
    Always,
    OnCreate,
}

/// One attribute mapping as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    pub target: String,
    pub source: Option<String>,
    pub constant: Option<String>,
    pub expression: Option<String>,
    pub default: Option<String>,
    #[serde(default)]
    pub apply: Apply,
    pub matching_precedence: Option<u32>,
}

impl MappingConfig {
    fn direct(target: &str, source: &str, precedence: Option<u32>) -> Self {
        Self {
            target: target.to_owned(),
            source: Some(source.to_owned()),
            constant: None,
            expression: None,
            default: None,
            apply: Apply::Always,
            matching_precedence: precedence,
        }
    }

    fn expression(target: &str, expression: &str) -> Self {
        Self {
            expression: Some(expression.to_owned()),
            source: None,
            ..Self::direct(target, "", None)
        }
    }
}

/// Entra ID's default user mappings, used when a target lists none.
pub fn default_user_mappings() -> Vec<MappingConfig> {
    vec![
        MappingConfig::direct(r#"emails[type eq "work"].value"#, "mail", Some(1)),
        MappingConfig::direct("userName", "objectId", Some(2)),
        MappingConfig::expression(
            "active",
            r#"Switch([IsSoftDeleted], , "False", "True", "True", "False")"#,
        ),
        MappingConfig::expression("name.formatted", r#"Join(" ", [givenName], [surname])"#),
        MappingConfig::direct("externalId", "objectId", None),
    ]
}

/// The default group mappings: match and name by `displayName`.
pub fn default_group_mappings() -> Vec<MappingConfig> {
    vec![
        MappingConfig::direct("displayName", "displayName", Some(1)),
        MappingConfig::direct("externalId", "objectId", None),
    ]
}

#[cfg(test)]
mod tests;
