//! Reading and validating the configuration file: every problem is collected with its key
//! path, so that one run reports them all.

use super::*;
use std::path::{Path, PathBuf};
use std::str::FromStr;

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
    /// A problem at `key`, on one line.
    fn problem(&mut self, key: impl std::fmt::Display, why: impl std::fmt::Display) {
        let why = why
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        self.problems.push(format!("{key}: {why}"));
    }

    /// Reads one table into its struct, recording every problem under `key`.
    fn take<T: serde::de::DeserializeOwned>(&mut self, key: &str, value: toml::Value) -> Option<T> {
        let mut found = Vec::new();
        let read = super::take::take::<T>(key, value, &mut found);
        for (at, why) in found {
            self.problem(at, why);
        }
        read
    }

    fn load(&mut self, mut table: toml::Table, base: &Path) -> Option<Config> {
        let state = match table.remove("state") {
            Some(v) => self.take::<StateConfig>("state", v),
            None => Some(StateConfig::default()),
        };
        let mut min_source_ratio = DEFAULT_MIN_SOURCE_RATIO;
        let mut max_value_bytes = DEFAULT_MAX_VALUE_BYTES;
        let source = match table.remove("source") {
            Some(mut v) => {
                // Settings shared by every kind, so they are read before the kind's table.
                if let Some(ratio) = v.as_table_mut().and_then(|t| t.remove("min_source_ratio")) {
                    match ratio.as_float().or(ratio.as_integer().map(|i| i as f64)) {
                        Some(r) if (0.0..=1.0).contains(&r) => min_source_ratio = r,
                        _ => self.problem(
                            "source.min_source_ratio",
                            format!("{ratio} is not a number between 0 and 1"),
                        ),
                    }
                }
                if let Some(max) = v.as_table_mut().and_then(|t| t.remove("max_value_bytes")) {
                    match max.as_integer().and_then(|n| usize::try_from(n).ok()) {
                        Some(n) if n >= 256 => max_value_bytes = n,
                        _ => self.problem(
                            "source.max_value_bytes",
                            format!("{max} is not a number of bytes of at least 256"),
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
        let global_scope = table.contains_key("scope");
        let scope = table.remove("scope").and_then(|v| self.scope("scope", v));
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
        let known = ["state", "source", "scope", "target", "metrics_listen"];
        for key in table.keys() {
            self.problem(key, super::take::unknown_key(key, &known));
        }

        let mut state = state?;
        let mut source = source?;
        if !global_scope {
            self.check_scope_missing(&targets);
        }
        let scope = scope.unwrap_or_default();
        state.path = base.join(&state.path);
        state.password_file = state.password_file.as_ref().map(|p| secret_path(base, p));
        state.ca_file = state.ca_file.as_ref().map(|p| secret_path(base, p));
        self.check_state(&state);
        self.check_targets(&targets);
        if let SourceConfig::Ldap(ldap) = &source {
            self.check_ldap(ldap);
        }
        match &mut source {
            SourceConfig::Json(json) => json.path = base.join(&json.path),
            SourceConfig::Ldap(ldap) => {
                ldap.ca_file = ldap.ca_file.as_ref().map(|p| base.join(p));
                ldap.bind_password_file = ldap
                    .bind_password_file
                    .as_ref()
                    .map(|p| secret_path(base, p));
            }
        }
        let targets = targets
            .into_iter()
            .map(|mut t| {
                if !t.own_scope {
                    t.scope = scope.clone();
                }
                t.token_file = t.token_file.as_ref().map(|p| secret_path(base, p));
                t.client_secret_file = t.client_secret_file.as_ref().map(|p| secret_path(base, p));
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
            max_value_bytes,
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
        let mut value = value;
        if let Some(t) = value.as_table_mut() {
            t.remove("kind");
        }
        match kind.as_deref() {
            Some("json") => self.take("source", value).map(SourceConfig::Json),
            Some("ldap") => self
                .take("source", value)
                .map(|l| SourceConfig::Ldap(Box::new(l))),
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
        let compat = table
            .remove("compat")
            .map(|c| self.take::<CompatConfig>(&format!("{key}.compat"), c));
        let (own_scope, token_scope) = self.target_scope(&key, table.remove("scope"));
        let mut target = self.take::<TargetConfig>(&key, toml::Value::Table(table))?;
        if let Some(compat) = compat {
            target.compat = compat.unwrap_or_default();
        }
        if let Some(scope) = own_scope {
            target.scope = scope;
            target.own_scope = true;
        }
        if let Some(s) = token_scope {
            if target.token_scope.is_some() {
                self.problem(
                    format!("{key}.scope"),
                    "a string here is the OAuth scope, which token_scope already sets; remove it",
                );
            }
            target.token_scope = Some(s);
            target.legacy_token_scope = true;
        }
        if target.name.trim().is_empty() {
            self.problem(format!("{key}.name"), "must not be empty");
        }
        match reqwest::Url::parse(&target.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            Ok(url) => self.problem(
                format!("{key}.url"),
                format!("scheme {:?} is not http or https", url.scheme()),
            ),
            Err(e) => self.problem(
                format!("{key}.url"),
                format!("{:?} is not a URL: {e}", target.url),
            ),
        }
        self.check_auth(&key, &target);
        if let Err(e) = cron::Schedule::from_str(&target.schedule) {
            self.problem(
                format!("{key}.schedule"),
                format!(
                    "{:?} is not a cron expression with six fields (sec min hour dom mon dow): {e}",
                    target.schedule
                ),
            );
        }
        if target.rate_limit == 0 {
            self.problem(
                format!("{key}.rate_limit"),
                "must be at least 1 request per second",
            );
        }
        if target.concurrency == 0 {
            self.problem(format!("{key}.concurrency"), "must be at least 1");
        }
        if target.timeout_seconds == 0 {
            self.problem(format!("{key}.timeout_seconds"), "must be at least 1");
        }
        if target.connect_timeout_seconds == 0 {
            self.problem(
                format!("{key}.connect_timeout_seconds"),
                "must be at least 1",
            );
        }
        if target.max_response_bytes < 4096 {
            self.problem(
                format!("{key}.max_response_bytes"),
                "must be at least 4096 bytes",
            );
        }
        if target.compat.member_batch == Some(0) {
            self.problem(format!("{key}.compat.member_batch"), "must be at least 1");
        }
        if target.burst == Some(0) {
            self.problem(format!("{key}.burst"), "must be at least 1");
        }
        if !(0.0..=100.0).contains(&target.attribute_clear_threshold) {
            self.problem(
                format!("{key}.attribute_clear_threshold"),
                "must be between 0 and 100",
            );
        }
        if !(0.0..=100.0).contains(&target.deletion_threshold_percent) {
            self.problem(
                format!("{key}.deletion_threshold_percent"),
                "must be between 0 and 100",
            );
        }
        if !(target.quarantine_failure_ratio > 0.0 && target.quarantine_failure_ratio <= 1.0) {
            self.problem(
                format!("{key}.quarantine_failure_ratio"),
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
        match (state.backend, &state.url) {
            (StateBackend::Postgres, None) => self.problem(
                "state.url",
                "missing: backend = \"postgres\" needs url = \"postgres://user@host:port/database\"",
            ),
            (StateBackend::Postgres, Some(url)) => match url.parse::<tokio_postgres::Config>() {
                Err(e) => self.problem("state.url", format!("is not a PostgreSQL URL: {e}")),
                Ok(c) => self.check_postgres_url(&c, state.ca_file.is_some()),
            },
            (StateBackend::Sled, _) => {
                for (key, set) in [
                    ("url", state.url.is_some()),
                    ("password_file", state.password_file.is_some()),
                    ("password_env", state.password_env.is_some()),
                    ("lease_seconds", state.lease_seconds.is_some()),
                    ("ca_file", state.ca_file.is_some()),
                ] {
                    if set {
                        self.problem(
                            format!("state.{key}"),
                            "only used with backend = \"postgres\"",
                        );
                    }
                }
            }
        }
        if state.password_file.is_some() && state.password_env.is_some() {
            self.problem("state", "set only one of password_file and password_env");
        }
        if let Some(n) = state.lease_seconds.filter(|n| !(3..=3600).contains(n)) {
            self.problem(
                "state.lease_seconds",
                format!("{n} is outside 3..=3600: an owner renews its leases every third of it, and another instance takes its targets over after it"),
            );
        }
    }

    /// `state.url` of the PostgreSQL state. With `ca_file` the connection is TLS and nothing
    /// else, to any host; without it the state (personal data) and the password travel in
    /// clear, so the server must be on this host.
    fn check_postgres_url(&mut self, url: &tokio_postgres::Config, tls: bool) {
        use tokio_postgres::config::{Host, SslMode};
        if url.get_password().is_some() {
            self.problem(
                "state.url",
                "holds a password: give it in password_file or password_env",
            );
        }
        if tls {
            if url.get_ssl_mode() == SslMode::Disable {
                self.problem(
                    "state.url",
                    "sslmode=disable turns TLS off, but ca_file asks for it: with ca_file the connection is always TLS; remove sslmode=disable",
                );
            }
            if let Some(Host::Unix(dir)) =
                url.get_hosts().iter().find(|h| matches!(h, Host::Unix(_)))
            {
                self.problem(
                    "state.ca_file",
                    format!(
                        "PostgreSQL speaks no TLS over a Unix socket ({}): name the server's host in url, or remove ca_file",
                        dir.display()
                    ),
                );
            }
        } else if !url.get_hosts().iter().all(is_local_host) {
            self.problem(
                "state.url",
                "names another host without ca_file: the state (personal data) and the password would cross the network in clear; set ca_file (the CA that signs the server's certificate) to connect over TLS, or use this host (127.0.0.1, ::1, localhost or a Unix socket directory)",
            );
        } else if url.get_ssl_mode() == SslMode::Require {
            self.problem(
                "state.url",
                "sslmode=require needs ca_file (the CA that signs the server's certificate), which scimsync verifies the server against",
            );
        }
    }

    /// A target's `scope`: its own scope table, or (a string) the OAuth scope under its
    /// former name.
    fn target_scope(
        &mut self,
        key: &str,
        value: Option<toml::Value>,
    ) -> (Option<ScopeConfig>, Option<String>) {
        match value {
            Some(toml::Value::String(s)) => (None, Some(s)),
            Some(v @ toml::Value::Table(_)) => (self.scope(&format!("{key}.scope"), v), None),
            Some(v) => {
                self.problem(
                    format!("{key}.scope"),
                    format!("must be a table ([target.scope]), not {}", v.type_str()),
                );
                (None, None)
            }
            None => (None, None),
        }
    }

    /// Reads a scope table (`scope` or `target[N].scope`) with its filters.
    fn scope(&mut self, key: &str, value: toml::Value) -> Option<ScopeConfig> {
        let mut found = Vec::new();
        let read = super::scope::read(key, value, &mut found);
        for (at, why) in found {
            self.problem(at, why);
        }
        read
    }

    /// A target without `[target.scope]` takes the global `[scope]`, which must then exist.
    fn check_scope_missing(&mut self, targets: &[TargetConfig]) {
        for (i, t) in targets.iter().enumerate() {
            if !t.own_scope {
                self.problem(
                    "scope",
                    format!(
                        "missing: target[{i}] ({:?}) has no [target.scope], so set [scope] (groups, users or all = true) or give it one",
                        t.name
                    ),
                );
                return;
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
                ("token_scope", t.token_scope.is_some()),
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

/// Whether a PostgreSQL host is this machine: a Unix socket, or a loopback name or address.
fn is_local_host(host: &tokio_postgres::config::Host) -> bool {
    match host {
        tokio_postgres::config::Host::Unix(_) => true,
        tokio_postgres::config::Host::Tcp(name) => {
            name.eq_ignore_ascii_case("localhost")
                || name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|a| a.is_loopback())
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

/// Where a secret file named in the configuration is: an absolute path as it is; a relative
/// one in systemd's `$CREDENTIALS_DIRECTORY` when the unit loaded a credential of that name
/// (`LoadCredential=qlik.token:/etc/scimsync/qlik.token`), else next to the configuration. So
/// `token_file = "qlik.token"` finds the token in either unit and from a shell.
fn secret_path(base: &Path, file: &Path) -> PathBuf {
    if file.is_relative() {
        if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) {
            let credential = Path::new(&dir).join(file);
            if credential.exists() {
                return credential;
            }
        }
    }
    base.join(file)
}
