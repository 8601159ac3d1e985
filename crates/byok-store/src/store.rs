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
        Ok(Self { pool, backend })
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
            .finish()
    }
}
