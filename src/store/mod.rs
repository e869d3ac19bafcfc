//! PostgreSQL storage: the pool, migrations, and one module per table. Functions take a
//! connection or transaction so the caller decides what commits together.

pub mod calls;
pub mod cdrs;
pub mod codes;
pub mod events;
/// The voice KPIs of a time range, in SQL (`GET /v1/kpis`, the console).
pub mod kpis;
pub mod placed_calls;
pub mod raw;
/// The read side (the `/v1` API and its exports): filtered, keyset-paginated lists.
pub mod read;
/// One definition per table: its row type, read columns and written arrays.
mod table;

use std::{str::FromStr, time::Duration};

use serde_json::{Map, Value};
use sqlx::{
    ConnectOptions, Executor, PgPool,
    migrate::{MigrateDatabase, Migrator},
    postgres::{PgConnectOptions, PgPoolOptions},
};
use time::OffsetDateTime;

use crate::{config::DatabaseConfig, platform::time::parse_platform_time};

/// The migrations of `migrations/`, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// Storage failures, sorted by what the caller should do about them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database is unreachable, overloaded or shutting down: retry later (HTTP 503).
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A transient conflict with other transactions (deadlock, serialization failure, lock
    /// timeout): the same work will very likely succeed if tried again at once.
    #[error("database conflict: {0}")]
    Conflict(#[source] sqlx::Error),
    /// A value we were given that PostgreSQL cannot take (SQLSTATE class 22, "data exception",
    /// e.g. a NUL character in a string): the input's fault, not ours (HTTP 400).
    #[error("invalid value for the database: {0}")]
    InvalidValue(#[source] sqlx::Error),
    /// Anything else is a bug or a broken schema (HTTP 500).
    #[error("database error: {0}")]
    Other(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        let code = match &error {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            // A connection cut mid-handshake or mid-message reads as garbage, not as an I/O error.
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => return Self::Unavailable(error),
            sqlx::Error::Database(db) => db.code().map(|code| code.into_owned()).unwrap_or_default(),
            _ => return Self::Other(error),
        };
        let retryable = code.starts_with("08") // connection exception
            || code.starts_with("53") // insufficient resources
            || code.starts_with("57P") // operator intervention: shutdown, cannot connect now
            || code == "57014"; // statement timeout
        if matches!(code.as_str(), "40001" | "40P01" | "55P03") {
            Self::Conflict(error)
        } else if retryable {
            Self::Unavailable(error)
        } else if code.starts_with("22") {
            Self::InvalidValue(error)
        } else {
            Self::Other(error)
        }
    }
}

// The start-up steps, in order: `create_database_if_missing` (when configured), `open`,
// `migrate` (when configured), `codes::sync`. Each is safe to run again after a failure and from
// several replicas starting at once, so a caller may retry any of them until the database is up.

/// Opens the pool described by `config`, creating the database first when asked to.
pub async fn connect(config: &DatabaseConfig) -> Result<PgPool, StoreError> {
    if config.create_if_missing {
        create_database_if_missing(config).await?;
    }
    open(config).await
}

/// Opens the pool described by `config`; the database must exist.
pub async fn open(config: &DatabaseConfig) -> Result<PgPool, StoreError> {
    let options = PgConnectOptions::from_str(&config.url)
        .map_err(StoreError::Other)?
        .application_name("callhook")
        .log_statements(tracing::log::LevelFilter::Trace);
    Ok(pool_options(config).connect_with(options).await?)
}

/// The pool described by `config`, connecting only when first used: the service starts (and
/// spools what it receives) while the database is down.
pub fn connect_lazy(config: &DatabaseConfig) -> Result<PgPool, StoreError> {
    let options = PgConnectOptions::from_str(&config.url)
        .map_err(StoreError::Other)?
        .application_name("callhook")
        .log_statements(tracing::log::LevelFilter::Trace);
    Ok(pool_options(config).connect_lazy_with(options))
}

/// What must be in place before receipts can be kept and projected: the database (when
/// `create` and `database.create_if_missing`), the migrations (`database.migrate_on_start`), and
/// the code tables. Safe to repeat, and to run from several replicas at once.
pub async fn prepare(
    pool: &PgPool,
    config: &DatabaseConfig,
    create: bool,
) -> Result<(), StoreError> {
    if create && config.create_if_missing {
        create_database_if_missing(config).await?;
    }
    if config.migrate_on_start {
        migrate(pool).await?;
    }
    codes::sync(pool).await
}

/// Pool settings: a bounded wait for a connection, and a statement timeout on every connection,
/// so a stuck database turns into quick 503s instead of piling up requests.
pub fn pool_options(config: &DatabaseConfig) -> PgPoolOptions {
    let statement_timeout = config.statement_timeout_ms;
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout())
        .idle_timeout(Duration::from_secs(300))
        .after_connect(move |connection, _meta| {
            Box::pin(async move {
                // No JIT: the projector's batch statements join arrays of a thousand calls,
                // which PostgreSQL costs high enough to JIT-compile every time, spending half a
                // second compiling a statement that runs in 25 ms.
                let set = format!("set statement_timeout = {statement_timeout}; set jit = off");
                connection.execute(set.as_str()).await?;
                Ok(())
            })
        })
}

/// Creates the database of `config` unless it exists.
pub async fn create_database_if_missing(config: &DatabaseConfig) -> Result<(), StoreError> {
    let url = config.url.as_str();
    if sqlx::Postgres::database_exists(url).await? {
        return Ok(());
    }
    match sqlx::Postgres::create_database(url).await {
        // Another replica created it between our check and our attempt: 42P04 when its CREATE
        // DATABASE had committed, 23505 (on pg_database's unique name index) when both commit
        // at once.
        Err(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("42P04" | "23505")) =>
        {
            Ok(())
        }
        other => other.map_err(StoreError::from),
    }
}

/// Applies the embedded migrations. sqlx takes a session advisory lock on the database before it
/// even creates its `_sqlx_migrations` table, so concurrent runs wait for each other and the
/// later ones find nothing left to apply.
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Whether every embedded migration has been applied: what readiness means for the schema.
pub async fn is_migrated(pool: &PgPool) -> Result<bool, StoreError> {
    let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let applied: Option<i64> =
        sqlx::query_scalar("select max(version) from _sqlx_migrations where success")
            .fetch_one(pool)
            .await?;
    Ok(applied.is_some_and(|version| version >= latest))
}

/// Reads a platform time field; a value that is present but unreadable is recorded in
/// `unparsed` under its wire name rather than lost.
pub(crate) fn read_time(
    wire_name: &str,
    raw: Option<&str>,
    unparsed: &mut Map<String, Value>,
) -> Option<OffsetDateTime> {
    let raw = raw?;
    let parsed = parse_platform_time(raw);
    if parsed.is_none() && !raw.trim().is_empty() {
        unparsed.insert(wire_name.to_owned(), Value::String(raw.to_owned()));
    }
    parsed
}

/// Reads the platform time fields of one row as its columns are taken, and gathers those present
/// but unreadable for its `unparsed_times` column, which is taken after them.
#[derive(Default)]
pub(crate) struct TimeReader(std::cell::RefCell<Map<String, Value>>);

impl TimeReader {
    pub(crate) fn read(&self, wire_name: &str, raw: &Option<String>) -> Option<OffsetDateTime> {
        read_time(wire_name, raw.as_deref(), &mut self.0.borrow_mut())
    }

    /// The unreadable times read so far, as the `unparsed_times` value.
    pub(crate) fn unparsed(&self) -> Option<sqlx::types::Json<Map<String, Value>>> {
        non_empty(self.0.take())
    }
}

/// A JSON object as a nullable jsonb: nothing to say is stored as NULL.
pub(crate) fn non_empty(map: Map<String, Value>) -> Option<sqlx::types::Json<Map<String, Value>>> {
    (!map.is_empty()).then_some(sqlx::types::Json(map))
}
