//! The state on PostgreSQL (`[state] backend = "postgres"`): every tree is a set of rows of one
//! table, the schema is created and migrated by scimsync itself (refusing a newer one). Several
//! processes share it: a target's trees are written only under its lease ([`super::lease`]);
//! `state import` holds a session advisory lock and needs every instance stopped.
//!
//! [`KvTree`] is synchronous (sled's calls are); each call here waits for its query on the
//! multi-threaded runtime (`block_in_place`), which every command of scimsync runs on.

use super::fence::Fence;
use super::{KvTree, StateError, Visit, Visitor};
use crate::config::StateConfig;
use std::future::Future;
use std::sync::Arc;
use tokio_postgres::{Client, NoTls};

/// The migrations, in order; the schema's version is how many have been applied.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE scimsync_kv (
        tree TEXT NOT NULL,
        key BYTEA NOT NULL,
        value BYTEA NOT NULL,
        PRIMARY KEY (tree, key)
    )",
    "CREATE TABLE scimsync_lease (
        target TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE scimsync_instance (
        name TEXT PRIMARY KEY,
        started_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE scimsync_request (
        id BIGSERIAL PRIMARY KEY,
        target TEXT NOT NULL,
        request TEXT NOT NULL,
        taken_by TEXT,
        reply TEXT,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )",
];

/// The advisory lock `state import` holds ("scimsync" in ASCII).
const LOCK_KEY: i64 = 0x7363_696d_7379_6e63;

/// The advisory lock held while the schema is migrated.
const MIGRATE_KEY: i64 = LOCK_KEY + 1;

/// Rows per query of a scan: a snapshot of a million users is read without holding it twice.
const PAGE: i64 = 5000;

/// Runs a query's future to its end from synchronous code on the runtime.
fn block<F: Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

/// A failed query, with the server's own message (tokio-postgres says only "db error").
pub(super) fn storage(e: tokio_postgres::Error) -> StateError {
    match e.as_db_error() {
        Some(db) => StateError::Storage(format!("PostgreSQL: {}: {}", db.severity(), db.message())),
        None => StateError::Storage(format!("PostgreSQL: {e}")),
    }
}

/// A connection to the state's database.
pub(crate) struct Pg {
    pub(super) client: Client,
}

impl Pg {
    /// Connects and brings the schema up to date.
    pub(crate) fn connect(state: &StateConfig) -> Result<Arc<Pg>, StateError> {
        let url = state.url.clone().unwrap_or_default();
        let open = |message: String| StateError::Open {
            path: url.clone().into(),
            message,
        };
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| open(format!("not a PostgreSQL URL: {e}")))?;
        if state.password_file.is_some() || state.password_env.is_some() {
            let secret = crate::secret::read(
                state.password_file.as_deref(),
                state.password_env.as_deref(),
            )
            .map_err(|e| open(e.to_string()))?;
            config.password(secret.expose());
        }
        config.connect_timeout(std::time::Duration::from_secs(10));
        config.application_name("scimsync");
        // A connection that dies without a word is noticed: the leases depend on it.
        let lease = state.lease();
        config
            .keepalives(true)
            .keepalives_idle(std::time::Duration::from_secs(5))
            .keepalives_interval(std::time::Duration::from_secs(2))
            .keepalives_retries(3)
            .tcp_user_timeout(lease / 3);
        let client = match &state.ca_file {
            None => block(super::pg_tls::connect(&config, NoTls)),
            Some(ca_file) => {
                // TLS or nothing: never the clear text that sslmode=prefer falls back to.
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                let tls = super::pg_tls::connector(ca_file).map_err(open)?;
                block(super::pg_tls::connect(&config, tls))
            }
        }
        .map_err(|e| open(format!("cannot connect: {e}")))?;
        let pg = Pg { client };
        pg.migrate().map_err(|e| open(e.to_string()))?;
        // Every process using the state holds the lock shared; `state import` needs it alone.
        let shared: bool = block(
            pg.client
                .query_one("SELECT pg_try_advisory_lock_shared($1)", &[&LOCK_KEY]),
        )
        .map_err(storage)?
        .get(0);
        if !shared {
            return Err(StateError::Locked { path: url.into() });
        }
        Ok(Arc::new(pg))
    }

    /// Makes this connection the state's only user, for `state import`: refused while another
    /// process uses the state (holds the lock shared), or any instance or lease is alive.
    pub(crate) fn exclusive(&self, url: &str) -> Result<(), StateError> {
        let locked: bool = block(async {
            self.client
                .execute("SELECT pg_advisory_unlock_shared($1)", &[&LOCK_KEY])
                .await?;
            self.client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
                .await
        })
        .map_err(storage)?
        .get(0);
        let live = block(self.live_instances())?;
        let leased = block(self.leases())?.iter().any(|l| l.live);
        if !locked || !live.is_empty() || leased {
            return Err(StateError::Locked { path: url.into() });
        }
        Ok(())
    }

    /// Applies the migrations this database lacks; refuses a schema newer than this scimsync.
    /// Instances starting together migrate one after the other (a session advisory lock).
    fn migrate(&self) -> Result<(), StateError> {
        block(
            self.client
                .execute("SELECT pg_advisory_lock($1)", &[&MIGRATE_KEY]),
        )
        .map_err(storage)?;
        let result = self.migrate_locked();
        let unlocked = block(
            self.client
                .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATE_KEY]),
        );
        result?;
        unlocked.map(|_| ()).map_err(storage)
    }

    fn migrate_locked(&self) -> Result<(), StateError> {
        block(self.client.batch_execute(
            "CREATE TABLE IF NOT EXISTS scimsync_schema (version INTEGER NOT NULL)",
        ))
        .map_err(storage)?;
        let row = block(
            self.client
                .query_one("SELECT COALESCE(MAX(version), 0) FROM scimsync_schema", &[]),
        )
        .map_err(storage)?;
        let version: i32 = row.get(0);
        let known = MIGRATIONS.len();
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version > known {
            return Err(StateError::Storage(format!(
                "the database's schema version {version} is newer than this scimsync's {known}; use a newer scimsync"
            )));
        }
        for (n, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let next = i32::try_from(n + 1).unwrap_or(i32::MAX);
            block(async {
                self.client.batch_execute("BEGIN").await?;
                self.client.batch_execute(sql).await?;
                self.client
                    .execute(
                        "INSERT INTO scimsync_schema (version) VALUES ($1)",
                        &[&next],
                    )
                    .await?;
                self.client.batch_execute("COMMIT").await
            })
            .map_err(storage)?;
            tracing::info!(version = next, "Migrated the PostgreSQL state.");
        }
        Ok(())
    }

    /// The trees that hold something.
    pub(crate) fn tree_names(&self) -> Result<Vec<String>, StateError> {
        let rows = block(
            self.client
                .query("SELECT DISTINCT tree FROM scimsync_kv ORDER BY tree", &[]),
        )
        .map_err(storage)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

/// What a scan calls with each entry; false stops it.
type Step<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool, StateError> + 'a;

/// Who may write a tree.
pub(crate) enum Guard {
    /// Anyone: the state is held exclusively (`state import`).
    Free,
    /// The holder of this lease, while it holds it.
    Fenced(Arc<Fence>),
    /// Nobody: this process owns no lease on the tree's target.
    Refused,
}

/// One tree: the rows of `scimsync_kv` with its name.
pub(crate) struct PgTree {
    pub(crate) pg: Arc<Pg>,
    pub(crate) name: String,
    pub(crate) guard: Guard,
}

/// The lease a fenced write checks, locked until the write commits: a takeover waits for it,
/// and a write after the takeover finds another epoch and writes nothing.
const LEASE_HELD: &str =
    "SELECT 1 FROM scimsync_lease WHERE target = $3::text AND owner = $4::text \
     AND epoch = $5::int8 AND expires_at > now() FOR SHARE";

impl PgTree {
    /// Calls `f` with each entry from `start` on (or down, with `rev`), a page at a time,
    /// until it returns false.
    fn scan(&self, start: &[u8], rev: bool, f: &mut Step<'_>) -> Result<(), StateError> {
        let (first, next) = if rev {
            (
                "SELECT key, value FROM scimsync_kv WHERE tree = $1 AND key >= $2 ORDER BY key DESC LIMIT $3",
                "SELECT key, value FROM scimsync_kv WHERE tree = $1 AND key >= $2 AND key < $4 ORDER BY key DESC LIMIT $3",
            )
        } else {
            (
                "SELECT key, value FROM scimsync_kv WHERE tree = $1 AND key >= $2 ORDER BY key LIMIT $3",
                "SELECT key, value FROM scimsync_kv WHERE tree = $1 AND key >= $2 AND key > $4 ORDER BY key LIMIT $3",
            )
        };
        let mut last: Option<Vec<u8>> = None;
        loop {
            let rows = match &last {
                None => block(self.pg.client.query(first, &[&self.name, &start, &PAGE])),
                Some(after) => block(
                    self.pg
                        .client
                        .query(next, &[&self.name, &start, &PAGE, after]),
                ),
            }
            .map_err(storage)?;
            for row in &rows {
                let (k, v): (&[u8], &[u8]) = (row.get(0), row.get(1));
                if !f(k, v)? {
                    return Ok(());
                }
            }
            match rows.last() {
                Some(row) if rows.len() as i64 == PAGE => last = Some(row.get::<_, Vec<u8>>(0)),
                _ => return Ok(()),
            }
        }
    }
}

impl PgTree {
    /// Runs a write (`statement`, reading the CTE `lease`) only while this process holds the
    /// tree's lease at its epoch; a lease found lost is marked so, and nothing more is written.
    fn fenced(
        &self,
        statement: &str,
        key: &[u8],
        value: Option<&Vec<u8>>,
    ) -> Result<(), StateError> {
        let fence = match &self.guard {
            Guard::Fenced(f) => f,
            _ => {
                return Err(StateError::NotOwner {
                    tree: self.name.clone(),
                })
            }
        };
        if !fence.valid() {
            return Err(StateError::Fenced {
                target: fence.target.clone(),
                epoch: fence.epoch,
            });
        }
        let sql = format!(
            "WITH lease AS ({LEASE_HELD}), write AS ({statement} RETURNING 1) \
             SELECT count(*) FROM lease"
        );
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            vec![&self.name, &key, &fence.target, &fence.owner, &fence.epoch];
        if let Some(v) = value {
            params.push(v);
        }
        let held: i64 = block(self.pg.client.query_one(&sql, &params))
            .map_err(storage)?
            .get(0);
        if held == 0 {
            fence.lose();
            return Err(StateError::Fenced {
                target: fence.target.clone(),
                epoch: fence.epoch,
            });
        }
        Ok(())
    }
}

impl KvTree for PgTree {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let row = block(self.pg.client.query_opt(
            "SELECT value FROM scimsync_kv WHERE tree = $1 AND key = $2",
            &[&self.name, &key],
        ))
        .map_err(storage)?;
        Ok(row.map(|r| r.get(0)))
    }
    fn insert(&self, key: &[u8], value: Vec<u8>) -> Result<(), StateError> {
        if let Guard::Free = self.guard {
            return block(self.pg.client.execute(
                "INSERT INTO scimsync_kv (tree, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value",
                &[&self.name, &key, &value],
            ))
            .map(|_| ())
            .map_err(storage);
        }
        let upsert = "INSERT INTO scimsync_kv (tree, key, value) \
             SELECT $1::text, $2::bytea, $6::bytea FROM lease \
             ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value";
        self.fenced(upsert, key, Some(&value))
    }
    fn remove(&self, key: &[u8]) -> Result<(), StateError> {
        if let Guard::Free = self.guard {
            return block(self.pg.client.execute(
                "DELETE FROM scimsync_kv WHERE tree = $1 AND key = $2",
                &[&self.name, &key],
            ))
            .map(|_| ())
            .map_err(storage);
        }
        let delete = "DELETE FROM scimsync_kv WHERE tree = $1::text AND key = $2::bytea \
             AND EXISTS (SELECT 1 FROM lease)";
        self.fenced(delete, key, None)
    }
    fn for_each(&self, f: &mut Visit<'_>) -> Result<(), StateError> {
        self.scan(&[], false, &mut |k, v| f(k, v).map(|()| true))
    }
    fn name(&self) -> String {
        self.name.clone()
    }
    fn visit(&self, start: &[u8], rev: bool, visit: Visitor<'_>) -> Result<(), StateError> {
        self.scan(start, rev, &mut |k, v| Ok(visit(k, v)))
    }
}
