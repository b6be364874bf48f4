//! The long-running service: cron schedules per target, signals, systemd notification.
//!
//! Not built yet: `scimsync run` reports that and exits 2.
