//! Where the database is and how to talk to it.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::StoreError;

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file on this host.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// Picks the backend from the URL's scheme: `postgres://` or
    /// `postgresql://` is PostgreSQL, `sqlite://PATH` or a plain path is
    /// SQLite. Any other `scheme://` is refused rather than taken as a file
    /// name.
    ///
    /// # Errors
    /// [`StoreError::UnsupportedUrl`] for another scheme, and
    /// [`StoreError::BackendNotCompiled`] when the backend's feature is off.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::Postgres
        } else if url.starts_with("sqlite://") || !url.contains("://") {
            Self::Sqlite
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        if url.trim().is_empty() || url == "sqlite://" {
            return Err(StoreError::UnsupportedUrl);
        }
        match backend {
            Self::Sqlite if !cfg!(feature = "sqlite") => {
                Err(StoreError::BackendNotCompiled("sqlite"))
            }
            Self::Postgres if !cfg!(feature = "postgres") => {
                Err(StoreError::BackendNotCompiled("postgres"))
            }
            _ => Ok(backend),
        }
    }

    /// `sqlite` or `postgres`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// How to open the store.
///
/// The URL is a [`SecretString`] because a PostgreSQL URL may carry a
/// password, so deriving `Debug` here is safe.
#[derive(Debug)]
pub struct StoreConfig {
    /// A SQLite path (`./byok-data/byok.db` or `sqlite://./byok-data/byok.db`)
    /// or a PostgreSQL URL (`postgres://user@host/db`).
    pub url: SecretString,
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// How long a request waits for a pooled connection.
    pub connection_timeout: Duration,
    /// How long a SQLite writer waits for another writer's lock before the
    /// write fails with [`StoreError::Busy`].
    pub busy_timeout: Duration,
    /// PostgreSQL: how long opening a connection may take (a server that
    /// accepts and never answers fails here instead of hanging).
    pub connect_timeout: Duration,
    /// PostgreSQL: the longest one statement may run.
    pub statement_timeout: Duration,
}

impl StoreConfig {
    /// A configuration with the defaults: 8 connections, a 5 s wait for a
    /// pooled connection, a 5 s SQLite busy timeout, and on PostgreSQL a 5 s
    /// connect timeout and a 15 s statement timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: SecretString::from(url.into()),
            max_connections: 8,
            connection_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(15),
        }
    }

    /// The backend the URL names; see [`Backend::from_url`].
    ///
    /// # Errors
    /// As [`Backend::from_url`].
    pub fn backend(&self) -> Result<Backend, StoreError> {
        Backend::from_url(self.url.expose_secret())
    }

    /// The SQLite file path: the URL without its `sqlite://` prefix.
    pub(crate) fn sqlite_path(&self) -> &str {
        let url = self.url.expose_secret();
        url.strip_prefix("sqlite://").unwrap_or(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_is_chosen_by_scheme_never_by_trial() {
        assert_eq!(
            Backend::from_url("postgres://u@h/db").unwrap(),
            Backend::Postgres
        );
        assert_eq!(
            Backend::from_url("postgresql://u@h/db").unwrap(),
            Backend::Postgres
        );
        assert_eq!(
            Backend::from_url("sqlite://./data/byok.db").unwrap(),
            Backend::Sqlite
        );
        assert_eq!(
            Backend::from_url("./data/byok.db").unwrap(),
            Backend::Sqlite
        );
        assert_eq!(Backend::from_url("byok.db").unwrap(), Backend::Sqlite);
        for bad in ["mysql://u@h/db", "http://x", "", "   ", "sqlite://"] {
            assert!(
                matches!(Backend::from_url(bad), Err(StoreError::UnsupportedUrl)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn config_debug_hides_the_url() {
        let config = StoreConfig::new("postgres://byok:hunter2@db/byok");
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert_eq!(config.sqlite_path(), "postgres://byok:hunter2@db/byok");
        assert_eq!(StoreConfig::new("sqlite://x/y.db").sqlite_path(), "x/y.db");
    }
}
