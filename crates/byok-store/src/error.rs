//! The one error type of `byok-store`.

/// What can go wrong in the store.
///
/// No variant carries a database URL (it may hold a password) or any key
/// material; causes are kept as sources for the operator's log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The row the operation needs does not exist.
    #[error("not found")]
    NotFound,
    /// A row with the same identity already exists.
    #[error("already exists")]
    Conflict,
    /// SQLite stayed locked by another writer for longer than the busy
    /// timeout. Nothing was written; the caller may retry.
    #[error("database is busy")]
    Busy,
    /// The database URL names no backend this build can use.
    #[error("database url must be a SQLite path, sqlite://PATH or postgres://...")]
    UnsupportedUrl,
    /// The URL names a backend whose cargo feature is not compiled in.
    #[error("this build has no {0} support; enable the `{0}` feature of byok-store")]
    BackendNotCompiled(&'static str),
    /// A row holds a value this version cannot read (an unknown provider,
    /// corrupt settings): data written by something else.
    #[error("stored row is malformed: {0}")]
    Corrupt(&'static str),
    /// Opening a connection failed.
    #[error("could not connect to the database")]
    Connect(#[source] diesel::ConnectionError),
    /// The connection pool could not hand out a connection in time.
    #[error("no database connection available")]
    Pool(#[source] diesel::r2d2::PoolError),
    /// Running the embedded migrations failed.
    #[error("database migrations failed")]
    Migration(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Any other database error.
    #[error("database error")]
    Database(#[source] diesel::result::Error),
}

impl StoreError {
    /// A stable, machine-readable code for this error.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Busy => "store_busy",
            Self::UnsupportedUrl => "unsupported_database_url",
            Self::BackendNotCompiled(_) => "backend_not_compiled",
            Self::Corrupt(_) => "corrupt_row",
            Self::Connect(_) => "database_connect",
            Self::Pool(_) => "database_pool",
            Self::Migration(_) => "database_migration",
            Self::Database(_) => "database",
        }
    }
}

impl From<diesel::result::Error> for StoreError {
    fn from(error: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match error {
            Error::NotFound => Self::NotFound,
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => Self::Conflict,
            // SQLite reports SQLITE_BUSY only through its message text.
            Error::DatabaseError(_, ref info) if info.message().contains("database is locked") => {
                Self::Busy
            }
            other => Self::Database(other),
        }
    }
}

/// `Result` with [`StoreError`] as the default error.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
