//! Connections, the pool's connection manager, migrations and write
//! transactions.

use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::r2d2::ManageConnection;
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use secrecy::{ExposeSecret, SecretString};

use crate::{Backend, StoreConfig, StoreError};

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!("byok-store needs at least one of the `sqlite` and `postgres` features");

/// A connection to whichever backend the store was opened on.
///
/// Queries are written once against this type; the rare backend-specific
/// statement matches on the variant.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    /// A PostgreSQL connection.
    #[cfg(feature = "postgres")]
    Postgres(diesel::PgConnection),
    /// A SQLite connection.
    // Keep last: `MultiConnection::establish` tries variants in order and
    // SQLite accepts any string as a file name. The store never relies on
    // that; it picks the variant from the URL itself (see `Manager`).
    #[cfg(feature = "sqlite")]
    Sqlite(diesel::SqliteConnection),
}

impl std::fmt::Debug for DbConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => f.write_str("DbConnection::Postgres"),
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => f.write_str("DbConnection::Sqlite"),
        }
    }
}

#[cfg(feature = "sqlite")]
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");
#[cfg(feature = "postgres")]
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// Opens connections of the one backend the URL names, with the session
/// settings every connection needs.
pub(crate) struct Manager {
    backend: Backend,
    url: SecretString,
    busy_timeout: Duration,
    /// Read only by PostgreSQL connections.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    statement_timeout: Duration,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Manager {
    pub(crate) fn new(config: &StoreConfig) -> Result<Self, StoreError> {
        let backend = config.backend()?;
        let url = match backend {
            Backend::Sqlite => SecretString::from(config.sqlite_path().to_owned()),
            Backend::Postgres => {
                // libpq's own connect timeout, unless the URL sets one.
                let url = config.url.expose_secret();
                if url.contains("connect_timeout=") {
                    config.url.clone()
                } else {
                    let separator = if url.contains('?') { '&' } else { '?' };
                    SecretString::from(format!(
                        "{url}{separator}connect_timeout={}",
                        config.connect_timeout.as_secs().max(1)
                    ))
                }
            }
        };
        Ok(Self {
            backend,
            url,
            busy_timeout: config.busy_timeout,
            statement_timeout: config.statement_timeout,
        })
    }

    pub(crate) fn establish(&self) -> Result<DbConnection, StoreError> {
        match self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite => {
                let mut conn = diesel::SqliteConnection::establish(self.url.expose_secret())
                    .map_err(StoreError::Connect)?;
                // Per connection: SQLite's default is to fail at once on a lock.
                // FULL: a saved key survives power loss, not just a crash.
                // secure_delete: a deleted key's blob is overwritten, not left in free pages.
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = {};
                     PRAGMA foreign_keys = ON;
                     PRAGMA synchronous = FULL;
                     PRAGMA secure_delete = ON;",
                    self.busy_timeout.as_millis()
                ))
                .map_err(StoreError::from)?;
                Ok(DbConnection::Sqlite(conn))
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres => {
                let mut conn = diesel::PgConnection::establish(self.url.expose_secret())
                    .map_err(StoreError::Connect)?;
                conn.batch_execute(&format!(
                    "SET statement_timeout = {}",
                    self.statement_timeout.as_millis()
                ))
                .map_err(StoreError::Database)?;
                Ok(DbConnection::Postgres(conn))
            }
            #[cfg(not(feature = "sqlite"))]
            Backend::Sqlite => Err(StoreError::BackendNotCompiled("sqlite")),
            #[cfg(not(feature = "postgres"))]
            Backend::Postgres => Err(StoreError::BackendNotCompiled("postgres")),
        }
    }
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = StoreError;

    fn connect(&self) -> Result<DbConnection, StoreError> {
        self.establish()
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), StoreError> {
        diesel::sql_query("SELECT 1")
            .execute(conn)
            .map(drop)
            .map_err(StoreError::from)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        // A connection handed back mid-transaction (a panic in a closure) must
        // not serve the next caller.
        !matches!(
            <DbConnection as Connection>::TransactionManager::transaction_manager_status_mut(conn)
                .transaction_depth(),
            Ok(None)
        )
    }
}

/// The PostgreSQL advisory lock id that serialises migrations ("byok" in ASCII).
#[cfg(feature = "postgres")]
const MIGRATION_LOCK: i64 = 0x6279_6f6b;

/// Runs the embedded migrations of `conn`'s backend, and switches a SQLite
/// database to write-ahead logging (a persistent setting of the file).
pub(crate) fn migrate(conn: &mut DbConnection) -> Result<(), StoreError> {
    let applied = match conn {
        #[cfg(feature = "sqlite")]
        DbConnection::Sqlite(c) => {
            c.batch_execute("PRAGMA journal_mode = WAL;")
                .map_err(StoreError::from)?;
            c.run_pending_migrations(SQLITE_MIGRATIONS)
                .map(|v| v.len())
                .map_err(StoreError::Migration)?
        }
        #[cfg(feature = "postgres")]
        DbConnection::Postgres(c) => {
            // Replicas starting together: one applies, the others wait and find nothing to do.
            c.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
                .map_err(StoreError::from)?;
            let result = c
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(|v| v.len());
            c.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
                .map_err(StoreError::from)?;
            result.map_err(StoreError::Migration)?
        }
    };
    if applied > 0 {
        tracing::info!(applied, "database migrations applied");
    }
    Ok(())
}

/// Applies the embedded migrations of `conn`'s backend up to and including
/// the one whose version starts with `last` (such as `2026-11-30-000006`),
/// and no further: how a test builds a database as an older release left it.
///
/// # Errors
/// A failing migration.
#[doc(hidden)]
pub fn migrate_through(conn: &mut DbConnection, last: &str) -> Result<usize, StoreError> {
    fn through<B: diesel::backend::Backend>(
        harness: &mut (impl MigrationHarness<B> + diesel::migration::MigrationConnection),
        source: &EmbeddedMigrations,
        last: &str,
    ) -> Result<usize, StoreError> {
        use diesel::migration::MigrationSource as _;
        harness.setup().map_err(StoreError::from)?;
        let wanted: String = last.chars().filter(char::is_ascii_digit).collect();
        let mut applied = 0;
        for migration in source.migrations().map_err(StoreError::Migration)? {
            let version = migration.name().version().to_string();
            let digits: String = version.chars().filter(char::is_ascii_digit).collect();
            if digits > wanted {
                break;
            }
            harness
                .run_migration(&*migration)
                .map_err(StoreError::Migration)?;
            applied += 1;
        }
        Ok(applied)
    }
    match conn {
        #[cfg(feature = "sqlite")]
        DbConnection::Sqlite(c) => through(c, &SQLITE_MIGRATIONS, last),
        #[cfg(feature = "postgres")]
        DbConnection::Postgres(c) => through(c, &POSTGRES_MIGRATIONS, last),
    }
}

/// Whether every embedded migration has been applied to `conn`'s database.
pub(crate) fn migrations_pending(conn: &mut DbConnection) -> Result<bool, StoreError> {
    let pending = match conn {
        #[cfg(feature = "sqlite")]
        DbConnection::Sqlite(c) => c.has_pending_migration(SQLITE_MIGRATIONS),
        #[cfg(feature = "postgres")]
        DbConnection::Postgres(c) => c.has_pending_migration(POSTGRES_MIGRATIONS),
    };
    pending.map_err(StoreError::Migration)
}

/// Runs `f` in a write transaction: `BEGIN IMMEDIATE` on SQLite, so the write
/// lock (and the busy timeout) is taken up front instead of failing when a
/// read later upgrades; an ordinary transaction on PostgreSQL. Commits when
/// `f` returns `Ok`, rolls back otherwise. Called inside another write
/// transaction it nests as a savepoint, so repository functions compose.
///
/// # Errors
/// `f`'s error, or a [`StoreError`] from beginning or committing.
pub fn write_transaction<T, E>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<StoreError>,
{
    type Tm = <DbConnection as Connection>::TransactionManager;
    let nested = !matches!(
        Tm::transaction_manager_status_mut(conn).transaction_depth(),
        Ok(None)
    );
    let begun = if nested {
        // Inside another write transaction the lock is already held: a savepoint.
        Tm::begin_transaction(conn)
    } else {
        match conn {
            #[cfg(feature = "sqlite")]
            DbConnection::Sqlite(c) => {
                AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
            }
            #[cfg(feature = "postgres")]
            DbConnection::Postgres(c) => AnsiTransactionManager::begin_transaction(c),
        }
    };
    begun.map_err(|e| E::from(StoreError::from(e)))?;
    match f(conn) {
        Ok(value) => {
            Tm::commit_transaction(conn).map_err(|e| E::from(StoreError::from(e)))?;
            Ok(value)
        }
        Err(error) => {
            if let Err(rollback) = Tm::rollback_transaction(conn) {
                tracing::warn!(error = %rollback, "rollback failed; the connection will be discarded");
            }
            Err(error)
        }
    }
}
