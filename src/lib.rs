//! scimsync keeps SaaS applications in step with a company directory over SCIM 2.0.
//!
//! A cycle flows one way through these modules, in pipeline order:
//!
//! - [`config`]: the TOML file, validated with every problem reported at once.
//! - [`source`]: reads the directory (JSON export or LDAP) into attribute bags.
//! - [`scope`]: keeps the assigned groups, their direct members and directly assigned users.
//! - [`mapping`]: turns a source object into the SCIM resource a target should hold.
//! - [`plan`]: diffs the desired resources against the snapshot into operations.
//! - [`scim`]: the HTTP client that carries operations to a target.
//! - [`state`]: the sled snapshot of what each target was last confirmed to hold, and the
//!   stored provisioning log.
//! - [`audit`]: one record per decision, with its changes and HTTP calls.
//! - [`engine`]: one cycle end to end for one target.
//! - [`daemon`]: the long-running service (cron schedules, signals, systemd, control socket).
//! - [`cli`]: the command line.
//!
//! Beside the pipeline, [`telemetry`] records Prometheus metrics and serves them.

#![forbid(unsafe_code)]

pub mod audit;
pub mod cli;
pub mod config;
pub(crate) mod control;
pub(crate) mod daemon;
pub(crate) mod engine;
pub mod ids;
pub(crate) mod mapping;
pub(crate) mod plan;
pub(crate) mod schedule;
pub mod scim;
pub(crate) mod scope;
pub(crate) mod secret;
pub mod source;
pub mod state;
pub(crate) mod target;
pub(crate) mod telemetry;
pub(crate) mod text;
