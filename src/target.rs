//! A target as a cycle runs it: its configuration, mappings and scope compiled from it, built in
//! one step ([`Target::build`]) from the plain [`TargetConfig`].

use crate::config::{Config, ConfigError, TargetConfig};
use crate::mapping::{CompileError, Mappings};
use crate::scope::{FilterError, Scope};
use std::ops::Deref;
use std::path::Path;

/// Reads and validates a configuration file, every target's mapping rules included: the one
/// step every command takes to load its configuration.
pub(crate) fn load(path: &Path) -> Result<Config, ConfigError> {
    let config = Config::load_with(path, Some(&rule_problems))?;
    for w in config.warnings() {
        tracing::warn!(config = %path.display(), "{w}");
    }
    Ok(config)
}

/// [`load`] for configuration text.
#[cfg(test)]
pub(crate) fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    Config::parse_with(path, text, Some(&rule_problems))
}

/// Each problem of a target's mapping rules, as (key below the target, why).
fn rule_problems(target: &TargetConfig) -> Vec<(String, String)> {
    match Mappings::compile(&target.user_mapping, &target.group_mapping) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .into_iter()
            .map(|e| {
                let mut at = e.list.to_owned();
                if let Some(n) = e.index {
                    at = format!("{at}[{n}]");
                }
                if let Some(f) = e.field {
                    at = format!("{at}.{f}");
                }
                (at, e.message)
            })
            .collect(),
    }
}

/// One target, ready to run: the configuration (reached through `Deref`), its compiled
/// mappings and its compiled scope.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) config: TargetConfig,
    pub(crate) mappings: Mappings,
    pub(crate) scope: Scope,
}

impl Deref for Target {
    type Target = TargetConfig;
    fn deref(&self) -> &TargetConfig {
        &self.config
    }
}

/// A configured target whose mappings or scoping filters do not compile. `Config::load`
/// reports these as configuration problems, so a loaded configuration never gives one.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    #[error("target {target:?}: its mappings do not compile: {}", .errors.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; "))]
    Mappings {
        target: String,
        errors: Vec<CompileError>,
    },
    #[error("target {target:?}: {source}")]
    Scope { target: String, source: FilterError },
}

impl Target {
    /// Compiles a target's mappings and scope.
    pub(crate) fn build(config: &TargetConfig) -> Result<Target, BuildError> {
        let mappings =
            Mappings::compile(&config.user_mapping, &config.group_mapping).map_err(|errors| {
                BuildError::Mappings {
                    target: config.name.clone(),
                    errors,
                }
            })?;
        let scope = Scope::compile(&config.scope).map_err(|source| BuildError::Scope {
            target: config.name.clone(),
            source,
        })?;
        Ok(Target {
            config: config.clone(),
            mappings,
            scope,
        })
    }

    /// The target of this name in a configuration, built.
    pub(crate) fn named(config: &Config, name: &str) -> Option<Result<Target, BuildError>> {
        config.target(name).map(Target::build)
    }
}
