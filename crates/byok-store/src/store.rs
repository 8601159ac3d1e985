//! The store handle: a connection pool with migrations applied.

use std::fmt;

use diesel::r2d2::Pool;

use crate::connection::{Manager, migrate, migrations_pending};
use crate::{Backend, DbConnection, StoreConfig, StoreError};

/// A pool of connections to a migrated byok database.
///
/// Cheap to clone (the pool is shared). Repository functions are plain
/// synchronous functions over `&mut DbConnection`; [`Store::run`] runs them on
/// tokio's blocking thread pool so they never stall the async executor.
#[derive(Clone)]
pub struct Store {
    pool: Pool<Manager>,
    backend: Backend,
    /// Opens connections outside the pool (a listener's).
    manager: std::sync::Arc<Manager>,
}

impl Store {
    /// Opens the database `config` names, runs any pending migrations on a
    /// dedicated connection, then builds the pool. Blocking: call it from a
    /// synchronous context or through [`Store::connect`].
    ///
    /// # Errors
    /// [`StoreError::UnsupportedUrl`], [`StoreError::Connect`],
    /// [`StoreError::Migration`] or [`StoreError::Pool`].
    pub fn connect_blocking(config: &StoreConfig) -> Result<Self, StoreError> {
        let manager = Manager::new(config)?;
        let spare = std::sync::Arc::new(Manager::new(config)?);
        let backend = config.backend()?;
        let mut conn = manager.establish()?;
        migrate(&mut conn)?;
        drop(conn);
        let pool = Pool::builder()
            .max_size(config.max_connections)
            .connection_timeout(config.connection_timeout)
            .test_on_check_out(false)
            .build(manager)
            .map_err(StoreError::Pool)?;
        Ok(Self {
            pool,
            backend,
            manager: spare,
        })
    }

    /// [`Store::connect_blocking`] on the blocking thread pool.
    ///
    /// # Errors
    /// As [`Store::connect_blocking`].
    ///
    /// # Panics
    /// Re-raises a panic from the connecting thread.
    pub async fn connect(config: StoreConfig) -> Result<Self, StoreError> {
        join(tokio::task::spawn_blocking(move || Self::connect_blocking(&config)).await)
    }

    /// The backend this store talks to.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs `f` with a pooled connection on tokio's blocking thread pool.
    ///
    /// # Errors
    /// [`StoreError::Pool`] when no connection frees up within the
    /// configured timeout, or `f`'s error.
    ///
    /// # Panics
    /// Re-raises a panic from `f` on the caller's task.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        join(
            tokio::task::spawn_blocking(move || {
                let mut conn = pool.get().map_err(StoreError::Pool)?;
                f(&mut conn)
            })
            .await,
        )
    }

    /// Runs `f` with a pooled connection on the current thread, for programs
    /// without an async runtime (a desktop app, a CLI).
    ///
    /// # Errors
    /// As [`Store::run`].
    pub fn run_blocking<T>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.pool.get().map_err(StoreError::Pool)?;
        f(&mut conn)
    }

    /// Checks that the database answers and that every migration this build
    /// embeds has been applied.
    ///
    /// # Errors
    /// A [`StoreError`] when the database is unreachable, or
    /// [`StoreError::Corrupt`] when migrations are pending.
    pub async fn ready(&self) -> Result<(), StoreError> {
        self.run(|conn| {
            if migrations_pending(conn)? {
                return Err(StoreError::Corrupt("migrations pending"));
            }
            // Every table a request reads or writes must answer a read.
            for table in [
                "users",
                "api_tokens",
                "provider_keys",
                "audit_events",
                "usage_records",
                "master_key_checks",
            ] {
                diesel::connection::SimpleConnection::batch_execute(
                    conn,
                    &format!("SELECT 1 FROM {table} LIMIT 1"),
                )
                .map_err(|_| StoreError::Corrupt("a table requests need is unreadable"))?;
            }
            Ok(())
        })
        .await
    }
}

fn join<T>(result: Result<T, tokio::task::JoinError>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.pool.state();
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("connections", &state.connections)
            .field("idle_connections", &state.idle_connections)
            .finish_non_exhaustive()
    }
}

/// The channel on which replicas tell each other what changed.
pub const CHANGES_CHANNEL: &str = "byok_changes";

/// A dedicated connection listening to [`CHANGES_CHANNEL`] (PostgreSQL).
pub struct Listener {
    #[cfg(feature = "postgres")]
    conn: diesel::PgConnection,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Listener")
    }
}

impl Listener {
    /// The payloads that arrived since the last poll; never blocks.
    ///
    /// # Errors
    /// The connection is broken (reconnect, and assume anything changed).
    pub fn poll(&mut self) -> Result<Vec<String>, StoreError> {
        #[cfg(feature = "postgres")]
        {
            self.conn
                .notifications_iter()
                .map(|n| n.map(|n| n.payload).map_err(StoreError::from))
                .collect()
        }
        #[cfg(not(feature = "postgres"))]
        {
            Ok(Vec::new())
        }
    }
}

impl Store {
    /// On PostgreSQL, a connection of its own listening for other replicas'
    /// changes; `None` on SQLite (one process: nothing to hear).
    ///
    /// # Errors
    /// The connection cannot be opened.
    pub fn listen(&self) -> Result<Option<Listener>, StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        match self.manager.establish()? {
            #[cfg(feature = "postgres")]
            DbConnection::Postgres(mut conn) => {
                use diesel::connection::SimpleConnection as _;
                conn.batch_execute(&format!("LISTEN {CHANGES_CHANNEL}"))?;
                Ok(Some(Listener { conn }))
            }
            #[cfg(feature = "sqlite")]
            DbConnection::Sqlite(_) => Ok(None),
        }
    }
}

/// Tells every replica listening that `payload` changed (PostgreSQL; a
/// no-op on SQLite). Sent at commit when called inside a transaction.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn notify(conn: &mut DbConnection, payload: &str) -> Result<(), StoreError> {
    match conn {
        #[cfg(feature = "postgres")]
        DbConnection::Postgres(c) => {
            use diesel::RunQueryDsl as _;
            diesel::sql_query("SELECT pg_notify($1, $2)")
                .bind::<diesel::sql_types::Text, _>(CHANGES_CHANNEL)
                .bind::<diesel::sql_types::Text, _>(payload)
                .execute(c)?;
        }
        #[cfg(feature = "sqlite")]
        DbConnection::Sqlite(_) => {
            // One process: nobody else to tell.
            let _ = payload;
        }
    }
    Ok(())
}
