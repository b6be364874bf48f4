//! The TOML configuration: what serde reads, validated with every problem reported at once.
//!
//! Each problem carries its key path (`target[0].user_mapping[2].expression: …`) so that an
//! administrator can fix a whole file in one pass. Running parts are built from these plain
//! values elsewhere (`source::build`, `target::Target::build`, `scim::Client::new`).

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

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
    /// `metrics_listen`: where `scimsync run` serves Prometheus metrics (`GET /metrics`).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

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

impl StateConfig {
    /// The provisioning log's retention.
    pub fn log_retention(&self) -> crate::state::Retention {
        crate::state::Retention {
            max_age: chrono::Duration::days(i64::from(self.log_retention_days)),
            max_records: self.log_max_records,
        }
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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeConfig {
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub all: bool,
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
    pub scope: Option<String>,
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
fn default_quarantine_failure_ratio() -> f64 {
    0.5
}
fn default_quarantine_min_operations() -> usize {
    10
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

impl Config {
    /// Reads and validates a configuration file, all but the mapping rules (which
    /// `target::load` compiles too).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with(path, None)
    }

    /// Reads and validates a configuration file, with `rules` checking each target's mappings.
    pub fn load_with(path: &Path, rules: Option<&RuleCheck>) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_with(path, &text, rules)
    }

    /// Parses and validates configuration text, all but the mapping rules; `path` names the
    /// file in messages and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Self::parse_with(path, text, None)
    }

    /// [`Config::parse`] with `rules` checking each target's mappings.
    pub fn parse_with(
        path: &Path,
        text: &str,
        rules: Option<&RuleCheck>,
    ) -> Result<Config, ConfigError> {
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.to_owned(),
                    message: e.to_string().trim_end().replace('\n', " "),
                })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut problems = Vec::new();
        let config = Loader {
            problems: &mut problems,
            rules,
        }
        .load(table, &base);
        match config {
            Some(config) if problems.is_empty() => Ok(Config {
                path: path.to_owned(),
                ..config
            }),
            _ => Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            }),
        }
    }

    pub fn target(&self, name: &str) -> Option<&TargetConfig> {
        self.targets.iter().find(|t| t.name == name)
    }
}

/// Checks a target's mapping rules, giving each problem as (key below the target, why):
/// how `target::load` has the rules compiled while the rest of the file is validated, without
/// the configuration depending on the mapping module.
pub type RuleCheck = dyn Fn(&TargetConfig) -> Vec<(String, String)>;

/// Collects problems while walking the table, so that one pass reports them all.
struct Loader<'a> {
    problems: &'a mut Vec<String>,
    rules: Option<&'a RuleCheck>,
}

impl Loader<'_> {
    fn problem(&mut self, key: impl std::fmt::Display, why: impl std::fmt::Display) {
        self.problems.push(format!("{key}: {why}"));
    }

    /// Deserializes one value, recording a problem under `key` when it does not fit.
    fn take<T: serde::de::DeserializeOwned>(&mut self, key: &str, value: toml::Value) -> Option<T> {
        match value.try_into::<T>() {
            Ok(v) => Some(v),
            Err(e) => {
                let msg = e.to_string();
                self.problem(key, msg.trim_end().replace('\n', " "));
                None
            }
        }
    }

    fn load(&mut self, mut table: toml::Table, base: &Path) -> Option<Config> {
        let state = match table.remove("state") {
            Some(v) => self.take::<StateConfig>("state", v),
            None => Some(StateConfig::default()),
        };
        let mut min_source_ratio = DEFAULT_MIN_SOURCE_RATIO;
        let source = match table.remove("source") {
            Some(mut v) => {
                // A guard setting shared by every kind, so it is read before the kind's table.
                if let Some(ratio) = v.as_table_mut().and_then(|t| t.remove("min_source_ratio")) {
                    match ratio.as_float().or(ratio.as_integer().map(|i| i as f64)) {
                        Some(r) if (0.0..=1.0).contains(&r) => min_source_ratio = r,
                        _ => self.problem(
                            "source.min_source_ratio",
                            format!("{ratio} is not a number between 0 and 1"),
                        ),
                    }
                }
                self.source(v)
            }
            None => {
                self.problem(
                    "source",
                    "missing: set [source] with kind = \"json\" or \"ldap\"",
                );
                None
            }
        };
        let scope = match table.remove("scope") {
            Some(v) => self.take::<ScopeConfig>("scope", v),
            None => Some(ScopeConfig::default()),
        };
        let metrics_listen = table
            .remove("metrics_listen")
            .and_then(|v| self.metrics_listen(v));
        let targets = match table.remove("target") {
            Some(toml::Value::Array(items)) => {
                let mut targets = Vec::new();
                for (i, item) in items.into_iter().enumerate() {
                    if let Some(t) = self.target(i, item) {
                        targets.push(t);
                    }
                }
                targets
            }
            Some(_) => {
                self.problem("target", "must be an array of tables ([[target]])");
                Vec::new()
            }
            None => {
                self.problem("target", "missing: configure at least one [[target]]");
                Vec::new()
            }
        };
        for key in table.keys() {
            self.problem(
                key,
                "unknown key, expected one of `state`, `source`, `scope`, `target`, `metrics_listen`",
            );
        }

        let mut state = state?;
        let mut source = source?;
        let scope = scope?;
        state.path = base.join(&state.path);
        self.check_state(&state);
        self.check_scope(&scope);
        self.check_targets(&targets);
        if let SourceConfig::Ldap(ldap) = &source {
            self.check_ldap(ldap);
        }
        match &mut source {
            SourceConfig::Json(json) => json.path = base.join(&json.path),
            SourceConfig::Ldap(ldap) => {
                ldap.ca_file = ldap.ca_file.as_ref().map(|p| base.join(p));
                ldap.bind_password_file = ldap.bind_password_file.as_ref().map(|p| base.join(p));
            }
        }
        let targets = targets
            .into_iter()
            .map(|mut t| {
                t.token_file = t.token_file.as_ref().map(|p| base.join(p));
                t.client_secret_file = t.client_secret_file.as_ref().map(|p| base.join(p));
                t.ca_file = t.ca_file.as_ref().map(|p| base.join(p));
                t
            })
            .collect();
        Some(Config {
            path: PathBuf::new(),
            state,
            source,
            scope,
            targets,
            min_source_ratio,
            metrics_listen,
        })
    }

    fn metrics_listen(&mut self, value: toml::Value) -> Option<std::net::SocketAddr> {
        match value
            .as_str()
            .map(|s| (s, s.parse::<std::net::SocketAddr>()))
        {
            Some((_, Ok(addr))) => Some(addr),
            Some((s, Err(e))) => {
                self.problem(
                    "metrics_listen",
                    format!(
                        "{s:?} is not an IP address with a port, such as \"127.0.0.1:9464\": {e}"
                    ),
                );
                None
            }
            None => {
                self.problem(
                    "metrics_listen",
                    format!("{value} is not a string such as \"127.0.0.1:9464\""),
                );
                None
            }
        }
    }

    fn source(&mut self, value: toml::Value) -> Option<SourceConfig> {
        let kind = value
            .get("kind")
            .and_then(toml::Value::as_str)
            .map(str::to_owned);
        match kind.as_deref() {
            Some("json") | Some("ldap") => self.take::<SourceConfig>("source", value),
            Some(other) => {
                self.problem(
                    "source.kind",
                    format!("unknown kind {other:?}, expected \"json\" or \"ldap\""),
                );
                None
            }
            None => {
                self.problem("source.kind", "missing: set kind = \"json\" or \"ldap\"");
                None
            }
        }
    }

    fn target(&mut self, i: usize, value: toml::Value) -> Option<TargetConfig> {
        let key = format!("target[{i}]");
        let toml::Value::Table(mut table) = value else {
            self.problem(&key, "must be a table");
            return None;
        };
        let user_mapping = self.mappings(&key, "user_mapping", table.remove("user_mapping"));
        let group_mapping = self.mappings(&key, "group_mapping", table.remove("group_mapping"));
        let mut target = self.take::<TargetConfig>(&key, toml::Value::Table(table))?;
        let label = format!("{key} ({:?})", target.name);
        if target.name.trim().is_empty() {
            self.problem(format!("{key}.name"), "must not be empty");
        }
        match reqwest::Url::parse(&target.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            Ok(url) => self.problem(
                format!("{label}.url"),
                format!("scheme {:?} is not http or https", url.scheme()),
            ),
            Err(e) => self.problem(
                format!("{label}.url"),
                format!("{:?} is not a URL: {e}", target.url),
            ),
        }
        self.check_auth(&label, &target);
        if let Err(e) = cron::Schedule::from_str(&target.schedule) {
            self.problem(
                format!("{label}.schedule"),
                format!(
                    "{:?} is not a cron expression with six fields (sec min hour dom mon dow): {e}",
                    target.schedule
                ),
            );
        }
        if target.rate_limit == 0 {
            self.problem(
                format!("{label}.rate_limit"),
                "must be at least 1 request per second",
            );
        }
        if target.concurrency == 0 {
            self.problem(format!("{label}.concurrency"), "must be at least 1");
        }
        if target.timeout_seconds == 0 {
            self.problem(format!("{label}.timeout_seconds"), "must be at least 1");
        }
        if target.connect_timeout_seconds == 0 {
            self.problem(
                format!("{label}.connect_timeout_seconds"),
                "must be at least 1",
            );
        }
        if target.max_response_bytes < 4096 {
            self.problem(
                format!("{label}.max_response_bytes"),
                "must be at least 4096 bytes",
            );
        }
        if target.compat.member_batch == Some(0) {
            self.problem(format!("{label}.compat.member_batch"), "must be at least 1");
        }
        if target.burst == Some(0) {
            self.problem(format!("{label}.burst"), "must be at least 1");
        }
        if !(0.0..=100.0).contains(&target.deletion_threshold_percent) {
            self.problem(
                format!("{label}.deletion_threshold_percent"),
                "must be between 0 and 100",
            );
        }
        if !(target.quarantine_failure_ratio > 0.0 && target.quarantine_failure_ratio <= 1.0) {
            self.problem(
                format!("{label}.quarantine_failure_ratio"),
                "must be above 0 and at most 1",
            );
        }
        target.user_mapping = user_mapping.unwrap_or_else(default_user_mappings);
        target.group_mapping = group_mapping.unwrap_or_else(default_group_mappings);
        if let Some(check) = self.rules {
            for (at, message) in check(&target) {
                self.problem(format!("{key}.{at}"), message);
            }
        }
        Some(target)
    }

    fn mappings(
        &mut self,
        key: &str,
        list: &str,
        value: Option<toml::Value>,
    ) -> Option<Vec<MappingConfig>> {
        let items = match value? {
            toml::Value::Array(items) => items,
            _ => {
                self.problem(
                    format!("{key}.{list}"),
                    format!("must be an array of tables ([[target.{list}]])"),
                );
                return Some(Vec::new());
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            if let Some(m) = self.take::<MappingConfig>(&format!("{key}.{list}[{i}]"), item) {
                out.push(m);
            }
        }
        Some(out)
    }

    fn check_state(&mut self, state: &StateConfig) {
        // chrono's durations end in the year 292 million; a century is plenty.
        if !(1..=36_500).contains(&state.log_retention_days) {
            self.problem(
                "state.log_retention_days",
                format!(
                    "{} is not a number of days between 1 and 36500",
                    state.log_retention_days
                ),
            );
        }
        if state.log_max_records == 0 {
            self.problem(
                "state.log_max_records",
                "0 would keep no provisioning log; set at least 1",
            );
        }
    }

    fn check_scope(&mut self, scope: &ScopeConfig) {
        if !scope.all && scope.groups.is_empty() && scope.users.is_empty() {
            self.problem(
                "scope",
                "nothing is assigned: set scope.groups, scope.users or scope.all = true",
            );
        }
        let mut seen = BTreeSet::new();
        for (i, g) in scope.groups.iter().enumerate() {
            if g.trim().is_empty() {
                self.problem(format!("scope.groups[{i}]"), "must not be empty");
            } else if !seen.insert(g.to_lowercase()) {
                self.problem(
                    format!("scope.groups[{i}]"),
                    format!("{g:?} is listed twice"),
                );
            }
        }
    }

    fn check_ldap(&mut self, c: &LdapSourceConfig) {
        match reqwest::Url::parse(&c.url) {
            Ok(url) if !matches!(url.scheme(), "ldap" | "ldaps") => self.problem(
                "source.url",
                format!("scheme {:?} is not ldap or ldaps", url.scheme()),
            ),
            Ok(url) if url.host_str().is_none_or(str::is_empty) => {
                self.problem("source.url", format!("{:?} names no host", c.url))
            }
            Ok(url) => {
                if c.starttls && url.scheme() == "ldaps" {
                    self.problem(
                        "source.starttls",
                        "ldaps:// is TLS from the first byte; use starttls = true only with ldap://",
                    );
                }
            }
            Err(e) => self.problem("source.url", format!("{:?} is not a URL: {e}", c.url)),
        }
        match (&c.bind_dn, &c.bind_password_file, &c.bind_password_env) {
            (Some(_), Some(_), Some(_)) => self.problem(
                "source",
                "set only one of bind_password_file and bind_password_env",
            ),
            (Some(_), None, None) => self.problem(
                "source",
                "bind_dn is set: set bind_password_file or bind_password_env (the bind password)",
            ),
            (Some(dn), _, _) if dn.trim().is_empty() => self.problem(
                "source.bind_dn",
                "must not be empty (leave bind_dn out for an anonymous bind)",
            ),
            (None, Some(_), _) | (None, _, Some(_)) => self.problem(
                "source",
                "a bind password is set without bind_dn: set bind_dn (without it the bind is anonymous)",
            ),
            _ => {}
        }
        if c.page_size == Some(0) {
            self.problem("source.page_size", "must be at least 1");
        } else if c.page_size.is_some_and(|n| n > i32::MAX as u32) {
            self.problem("source.page_size", "is too large");
        }
        for (key, filter) in [
            ("user_filter", &c.user_filter),
            ("group_filter", &c.group_filter),
        ] {
            if let Some(f) = filter {
                if ldap3::parse_filter(f).is_err() {
                    self.problem(
                        format!("source.{key}"),
                        format!("{f:?} is not a valid LDAP filter (RFC 4515), e.g. \"(objectClass=person)\""),
                    );
                }
            }
        }
        for (table, map) in [
            ("attributes", &c.attributes),
            ("group_attributes", &c.group_attributes),
        ] {
            for (name, attr) in map {
                if name.eq_ignore_ascii_case("objectId") && attr.trim().is_empty() {
                    self.problem(
                        format!("source.{table}.{name}"),
                        "must name the attribute that holds the immutable id (entryUUID, objectGUID, …)",
                    );
                } else if !attr.is_empty() && !is_attribute_description(attr) {
                    self.problem(
                        format!("source.{table}.{name}"),
                        format!("{attr:?} is not an LDAP attribute name"),
                    );
                }
            }
        }
    }

    /// A static bearer token, or OAuth 2.0 client credentials: one of the two, complete.
    fn check_auth(&mut self, label: &str, t: &TargetConfig) {
        let Some(token_url) = &t.token_url else {
            for (key, set) in [
                ("client_id", t.client_id.is_some()),
                ("client_secret_file", t.client_secret_file.is_some()),
                ("client_secret_env", t.client_secret_env.is_some()),
                ("scope", t.scope.is_some()),
            ] {
                if set {
                    self.problem(
                        format!("{label}.{key}"),
                        "only used with token_url (OAuth 2.0 client credentials)",
                    );
                }
            }
            match (&t.token_file, &t.token_env) {
                (Some(_), Some(_)) => {
                    self.problem(label, "set only one of token_file and token_env")
                }
                (None, None) => self.problem(
                    label,
                    "set token_file or token_env (the SCIM bearer token), or token_url with client_id and client_secret_file (OAuth 2.0)",
                ),
                _ => {}
            }
            return;
        };
        if t.token_file.is_some() || t.token_env.is_some() {
            self.problem(
                label,
                "set either token_file/token_env (a static bearer token) or token_url (OAuth 2.0 client credentials), not both",
            );
        }
        match reqwest::Url::parse(token_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            Ok(url) => self.problem(
                format!("{label}.token_url"),
                format!("scheme {:?} is not http or https", url.scheme()),
            ),
            Err(e) => self.problem(
                format!("{label}.token_url"),
                format!("{token_url:?} is not a URL: {e}"),
            ),
        }
        if t.client_id.as_deref().is_none_or(|id| id.trim().is_empty()) {
            self.problem(
                format!("{label}.client_id"),
                "missing: token_url needs client_id",
            );
        }
        match (&t.client_secret_file, &t.client_secret_env) {
            (Some(_), Some(_)) => self.problem(
                label,
                "set only one of client_secret_file and client_secret_env",
            ),
            (None, None) => self.problem(
                label,
                "token_url needs client_secret_file or client_secret_env",
            ),
            _ => {}
        }
    }

    fn check_targets(&mut self, targets: &[TargetConfig]) {
        let mut names = BTreeSet::new();
        for (i, t) in targets.iter().enumerate() {
            if !names.insert(t.name.as_str()) {
                self.problem(
                    format!("target[{i}].name"),
                    format!("{:?} is used by an earlier target", t.name),
                );
            }
        }
    }
}

/// An attribute type name or OID, with options (`member;range=0-*`, `userCertificate;binary`).
fn is_attribute_description(s: &str) -> bool {
    let mut parts = s.split(';');
    let base = parts.next().unwrap_or_default();
    let name_ok = base.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && base.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let oid_ok = !base.is_empty()
        && base
            .split('.')
            .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    (name_ok || oid_ok)
        && parts.all(|o| {
            !o.is_empty()
                && o.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '=' | '*'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[state]
path = "state"

[source]
kind = "json"
path = "directory.json"

[scope]
groups = ["Bounty Hunters"]

[[target]]
name = "qlik"
url = "https://tenant.example/api/scim/v2"
token_env = "QLIK_SCIM_TOKEN"
schedule = "0 */40 * * * *"

[[target.user_mapping]]
target = 'emails[type eq "work"].value'
source = "mail"
matching_precedence = 1

[[target.user_mapping]]
target = "userName"
source = "objectId"
matching_precedence = 2

[[target.user_mapping]]
target = "active"
expression = 'Switch([IsSoftDeleted], , "False", "True", "True", "False")'

[[target.group_mapping]]
target = "displayName"
source = "displayName"
matching_precedence = 1
"#;

    fn problems(text: &str) -> Vec<String> {
        match crate::target::parse(Path::new("/etc/scimsync/test.toml"), text) {
            Err(ConfigError::Invalid { problems, .. }) => problems,
            other => panic!("expected invalid configuration, got {other:?}"),
        }
    }

    #[test]
    fn good_config_loads_with_paths_resolved_against_the_file() {
        let c = crate::target::parse(Path::new("/etc/scimsync/test.toml"), GOOD).expect("valid");
        assert_eq!(c.state.path, PathBuf::from("/etc/scimsync/state"));
        match &c.source {
            SourceConfig::Json(j) => {
                assert_eq!(j.path, PathBuf::from("/etc/scimsync/directory.json"))
            }
            SourceConfig::Ldap(_) => panic!("expected json"),
        }
        assert_eq!(c.targets.len(), 1);
        assert_eq!(c.targets[0].rate_limit, 25);
        assert_eq!(c.targets[0].deprovision, DeprovisionMode::Deactivate);
    }

    #[test]
    fn oauth_client_credentials_replace_the_token_and_are_checked_whole() {
        let oauth = "token_url = \"https://idp.example/oauth2/token\"\nclient_id = \"scimsync\"\nclient_secret_file = \"client-secret\"\nscope = \"scim\"\n";
        let text = GOOD.replace("token_env = \"QLIK_SCIM_TOKEN\"\n", oauth);
        let c = crate::target::parse(Path::new("/etc/scimsync/test.toml"), &text).expect("valid");
        let t = &c.targets[0];
        assert_eq!(
            t.token_url.as_deref(),
            Some("https://idp.example/oauth2/token")
        );
        assert_eq!(
            t.client_secret_file.as_deref(),
            Some(Path::new("/etc/scimsync/client-secret"))
        );

        // Both ways at once, and an incomplete OAuth set: every problem named.
        let both = GOOD.replace(
            "token_env = \"QLIK_SCIM_TOKEN\"\n",
            "token_env = \"T\"\ntoken_url = \"ftp://idp\"\nclient_secret_env = \"S\"\nclient_secret_file = \"s\"\n",
        );
        let p = problems(&both);
        let has = |s: &str| p.iter().any(|p| p.contains(s));
        assert!(
            has("set either token_file/token_env (a static bearer token) or token_url"),
            "{p:?}"
        );
        assert!(
            has("target[0] (\"qlik\").token_url: scheme \"ftp\""),
            "{p:?}"
        );
        assert!(has("target[0] (\"qlik\").client_id: missing"), "{p:?}");
        assert!(
            has("set only one of client_secret_file and client_secret_env"),
            "{p:?}"
        );

        // OAuth keys without token_url.
        let stray = GOOD.replace(
            "token_env = \"QLIK_SCIM_TOKEN\"\n",
            "token_env = \"T\"\nclient_id = \"x\"\n",
        );
        let p = problems(&stray);
        assert!(
            p.iter().any(|p| p == "target[0] (\"qlik\").client_id: only used with token_url (OAuth 2.0 client credentials)"),
            "{p:?}"
        );
    }

    #[test]
    fn metrics_listen_is_an_address_with_a_port() {
        let c = crate::target::parse(
            Path::new("/x.toml"),
            &format!("metrics_listen = \"127.0.0.1:9464\"\n{GOOD}"),
        )
        .expect("valid");
        assert_eq!(
            c.metrics_listen,
            Some("127.0.0.1:9464".parse().expect("addr"))
        );
        for bad in ["\"localhost:9464\"", "\"127.0.0.1\"", "9464"] {
            let p = problems(&format!("metrics_listen = {bad}\n{GOOD}"));
            assert!(
                p.len() == 1 && p[0].starts_with("metrics_listen: "),
                "{bad}: {p:?}"
            );
        }
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_key_path() {
        let text = GOOD
            .replace("schedule = \"0 */40 * * * *\"", "schedule = \"every day\"\ncolour = \"red\"")
            .replace(
                "expression = 'Switch([IsSoftDeleted], , \"False\", \"True\", \"True\", \"False\")'",
                "expression = 'Switch([IsSoftDeleted], \"False\"'",
            )
            .replace("[scope]", "[scope]\nbogus = 1");
        let p = problems(&text);
        assert!(
            p.iter()
                .any(|p| p.starts_with("scope: unknown field `bogus`")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.starts_with("target[0]: unknown field `colour`")),
            "{p:?}"
        );
        // The target failed to deserialize, so its mappings are not compiled: fix one, see next.
        let text = GOOD.replace(
            "expression = 'Switch([IsSoftDeleted], , \"False\", \"True\", \"True\", \"False\")'",
            "expression = 'Switch([IsSoftDeleted], \"False\"'",
        );
        let text = text.replace("schedule = \"0 */40 * * * *\"", "schedule = \"every day\"");
        let p = problems(&text);
        assert!(
            p.iter().any(
                |p| p.starts_with("target[0] (\"qlik\").schedule: \"every day\" is not a cron")
            ),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.starts_with("target[0].user_mapping[2].expression: column ")),
            "{p:?}"
        );
    }

    #[test]
    fn exactly_one_value_kind_per_mapping() {
        let text = GOOD.replace(
            "target = \"userName\"\nsource = \"objectId\"",
            "target = \"userName\"\nsource = \"objectId\"\nconstant = \"x\"",
        );
        let p = problems(&text);
        assert!(
            p.iter()
                .any(|p| p.starts_with("target[0].user_mapping[1]: set exactly one of")),
            "{p:?}"
        );
    }

    #[test]
    fn missing_token_and_bad_url_and_duplicate_names() {
        let text = GOOD.replace("token_env = \"QLIK_SCIM_TOKEN\"\n", "")
            + "\n[[target]]\nname = \"qlik\"\nurl = \"ftp://x\"\ntoken_env = \"X\"\n";
        let p = problems(&text);
        assert!(
            p.iter().any(|p| p.contains("set token_file or token_env")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.contains("scheme \"ftp\" is not http or https")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.starts_with("target[1].name: \"qlik\" is used by an earlier target")),
            "{p:?}"
        );
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        match crate::target::parse(Path::new("x.toml"), "[state\npath = 1") {
            Err(ConfigError::Syntax { message, .. }) => {
                assert!(message.contains("line 1"), "{message}")
            }
            other => panic!("expected syntax error, got {other:?}"),
        }
    }

    #[test]
    fn unknown_source_kind_and_unknown_source_key() {
        let p = problems(&GOOD.replace("kind = \"json\"", "kind = \"csv\""));
        assert!(
            p.iter()
                .any(|p| p.starts_with("source.kind: unknown kind \"csv\"")),
            "{p:?}"
        );
        let p = problems(&GOOD.replace(
            "path = \"directory.json\"",
            "path = \"d.json\"\nfile = \"x\"",
        ));
        assert!(
            p.iter()
                .any(|p| p.starts_with("source: unknown field `file`")),
            "{p:?}"
        );
    }

    #[test]
    fn missing_mappings_fall_back_to_entra_defaults() {
        let text = "[source]\nkind = \"json\"\npath = \"d.json\"\n[scope]\nall = true\n[[target]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/v2\"\ntoken_env = \"T\"\n";
        let c = crate::target::parse(Path::new("x.toml"), text).expect("valid");
        assert_eq!(c.targets[0].user_mapping.len(), 5);
        let t = crate::target::Target::build(&c.targets[0]).expect("builds");
        assert_eq!(t.mappings.user_matching().len(), 2);
    }

    fn ldap(source: &str) -> String {
        GOOD.replace(
            "kind = \"json\"\npath = \"directory.json\"",
            &format!("kind = \"ldap\"\n{source}"),
        )
    }

    #[test]
    fn ldap_source_with_defaults() {
        let text = ldap(
            "url = \"ldaps://ldap.example.org\"\nbase_dn = \"dc=example,dc=org\"\nbind_dn = \"cn=svc,dc=example,dc=org\"\nbind_password_file = \"ldap.pw\"\n[source.attributes]\nobjectId = \"objectGUID\"\nmember = \"member;range=0-*\"",
        );
        let c = crate::target::parse(Path::new("/etc/scimsync/test.toml"), &text).expect("valid");
        let SourceConfig::Ldap(l) = &c.source else {
            panic!("expected ldap")
        };
        assert_eq!(l.page_size(), 500);
        assert_eq!(l.user_filter(), "(objectClass=inetOrgPerson)");
        assert_eq!(l.groups_base_dn(), "dc=example,dc=org");
        assert_eq!(
            l.bind_password_file.as_deref(),
            Some(Path::new("/etc/scimsync/ldap.pw"))
        );
    }

    #[test]
    fn ldap_source_problems_are_all_reported() {
        let p = problems(&ldap(
            "url = \"ldaps://h\"\nstarttls = true\nbase_dn = \"dc=x\"\nbind_dn = \"cn=svc\"\npage_size = 0\nuser_filter = \"(objectClass=person\"\n[source.attributes]\nobjectId = \"\"\nmail = \"e mail\"",
        ));
        for want in [
            "source.starttls: ldaps:// is TLS from the first byte",
            "source: bind_dn is set: set bind_password_file or bind_password_env",
            "source.page_size: must be at least 1",
            "source.user_filter: \"(objectClass=person\" is not a valid LDAP filter",
            "source.attributes.objectId: must name the attribute",
            "source.attributes.mail: \"e mail\" is not an LDAP attribute name",
        ] {
            assert!(p.iter().any(|p| p.starts_with(want)), "{want}: {p:?}");
        }
        let p = problems(&ldap(
            "url = \"https://h\"\nbase_dn = \"dc=x\"\nbind_dn = \"cn=svc\"\nbind_password_file = \"a\"\nbind_password_env = \"B\"",
        ));
        assert!(
            p.iter()
                .any(|p| p == "source.url: scheme \"https\" is not ldap or ldaps"),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.starts_with("source: set only one of bind_password_file")),
            "{p:?}"
        );
        let p = problems(&ldap(
            "url = \"ldap://h\"\nbase_dn = \"dc=x\"\nbind_password_env = \"B\"",
        ));
        assert!(
            p.iter()
                .any(|p| p.starts_with("source: a bind password is set without bind_dn")),
            "{p:?}"
        );
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let text = include_str!("../../config/scimsync.example.toml");
        let c = crate::target::parse(Path::new("/etc/scimsync/scimsync.toml"), text)
            .expect("the example is valid");
        assert_eq!(c.targets[0].user_mapping.len(), 6);
        assert_eq!(c.scope.groups, ["Bounty Hunters", "Rebel Alliance"]);
    }

    #[test]
    fn fault_keys_have_defaults_and_are_checked() {
        let c = crate::target::parse(Path::new("/etc/scimsync/test.toml"), GOOD).expect("valid");
        let t = &c.targets[0];
        assert_eq!(t.burst(), 25);
        assert_eq!(
            (
                t.connect_timeout_seconds,
                t.retry_max_seconds,
                t.quarantine_min_operations
            ),
            (10, 60, 10)
        );
        assert_eq!(t.quarantine_failure_ratio, 0.5);
        assert_eq!(t.deletion_threshold_percent, 100.0);
        assert_eq!(c.min_source_ratio, 0.5);
        let text = GOOD
            .replace("kind = \"json\"", "kind = \"json\"\nmin_source_ratio = 2")
            .replace(
                "schedule = \"0 */40 * * * *\"",
                "schedule = \"0 */40 * * * *\"\nburst = 0\nquarantine_failure_ratio = 0\ndeletion_threshold_percent = 150",
            );
        let p = problems(&text);
        for want in [
            "source.min_source_ratio: 2 is not a number between 0 and 1",
            "target[0] (\"qlik\").burst: must be at least 1",
            "target[0] (\"qlik\").quarantine_failure_ratio: must be above 0",
            "target[0] (\"qlik\").deletion_threshold_percent: must be between 0 and 100",
        ] {
            assert!(p.iter().any(|p| p.starts_with(want)), "{want}: {p:?}");
        }
        let c = crate::target::parse(
            Path::new("x.toml"),
            &GOOD.replace(
                "kind = \"json\"",
                "kind = \"json\"\nmin_source_ratio = 0.25",
            ),
        )
        .expect("valid");
        assert_eq!(c.min_source_ratio, 0.25);
    }

    #[test]
    fn log_retention_has_defaults_and_rejects_zero() {
        let c = crate::target::parse(Path::new("x.toml"), GOOD).expect("valid");
        assert_eq!(
            (c.state.log_retention_days, c.state.log_max_records),
            (30, 100_000)
        );
        assert_eq!(c.state.log_retention().max_age, chrono::Duration::days(30));
        let set = GOOD.replace(
            "path = \"state\"",
            "path = \"state\"\nlog_retention_days = 7\nlog_max_records = 500",
        );
        let c = crate::target::parse(Path::new("x.toml"), &set).expect("valid");
        assert_eq!(
            (c.state.log_retention_days, c.state.log_max_records),
            (7, 500)
        );
        let bad = GOOD.replace(
            "path = \"state\"",
            "path = \"state\"\nlog_retention_days = 0\nlog_max_records = 0",
        );
        let p = problems(&bad);
        for want in [
            "state.log_retention_days: 0 is not a number of days between 1 and 36500",
            "state.log_max_records: 0 would keep no provisioning log",
        ] {
            assert!(p.iter().any(|p| p.starts_with(want)), "{want}: {p:?}");
        }
        let negative = GOOD.replace("path = \"state\"", "path = \"state\"\nlog_max_records = -1");
        let p = problems(&negative);
        assert!(
            p.iter()
                .any(|p| p.starts_with("state: ") && p.contains("-1")),
            "{p:?}"
        );
    }
}
