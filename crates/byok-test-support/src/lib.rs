#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![expect(
    clippy::disallowed_methods,
    reason = "a test harness reads its own settings from the environment"
)]
#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "a test harness fails the test on setup errors"
)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use byok_store::{Backend, Store, StoreConfig};

mod app;
pub use app::{ADMIN_TOKEN, FakeDns, SpawnOptions, TestApp, captured_logs, test_vault};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The PostgreSQL server tests use.
#[must_use]
pub fn postgres_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether PostgreSQL is reachable; checked once per test binary. In CI an
/// unreachable server fails the test; elsewhere it is reported loudly once.
fn postgres_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| match PgConnection::establish(&postgres_url()) {
        Ok(_) => true,
        Err(error) => {
            assert!(
                !in_ci(),
                "CI=true but PostgreSQL at {} is unreachable ({error}); the PostgreSQL tests must run in CI",
                postgres_url()
            );
            // Straight to the process's stderr: libtest captures only the print macros,
            // and a skip must not be silent.
            let _ = writeln!(
                std::io::stderr(),
                "\n################################################################\n\
                 ## SKIPPING POSTGRESQL TESTS: cannot connect to {}\n\
                 ## ({error}). Only SQLite is being tested. Start PostgreSQL or set\n\
                 ## TEST_DATABASE_URL to run them; in CI (CI=true) this is a failure.\n\
                 ################################################################\n",
                postgres_url()
            );
            false
        }
    })
}

/// A database of its own for one test, removed when dropped.
#[derive(Debug)]
pub struct TestDb {
    backend: Backend,
    url: String,
    dir: Option<tempfile::TempDir>,
    pg_schema: Option<String>,
}

impl TestDb {
    /// A new SQLite file in a fresh temporary directory.
    ///
    /// # Panics
    /// When no temporary directory can be created.
    #[must_use]
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let url = dir.path().join("byok.db").display().to_string();
        Self {
            backend: Backend::Sqlite,
            url,
            dir: Some(dir),
            pg_schema: None,
        }
    }

    /// A new, empty schema in the test PostgreSQL database, or `None` (after a
    /// loud message) when PostgreSQL is unreachable outside CI.
    ///
    /// # Panics
    /// When `CI=true` and PostgreSQL is unreachable.
    #[must_use]
    pub fn postgres() -> Option<Self> {
        if !postgres_available() {
            return None;
        }
        let schema = format!("byok_t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::establish(&postgres_url()).expect("connect to PostgreSQL");
        admin
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .expect("create a test schema");
        let base = postgres_url();
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-csearch_path%3D{schema}");
        Some(Self {
            backend: Backend::Postgres,
            url,
            dir: None,
            pg_schema: Some(schema),
        })
    }

    /// Which backend this database is on.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL a store should open (a file path for SQLite).
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A store configuration for this database with default settings.
    #[must_use]
    pub fn config(&self) -> StoreConfig {
        StoreConfig::new(self.url.clone())
    }

    /// Opens (and migrates) a store on this database.
    ///
    /// # Panics
    /// When the store cannot be opened.
    pub async fn store(&self) -> Store {
        Store::connect(self.config())
            .await
            .expect("open the test store")
    }

    /// The SQLite database file, for SQLite test databases.
    #[must_use]
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.path().join("byok.db"))
    }

    /// Every byte the database holds, as an attacker with a copy of it would
    /// see them: for SQLite the database file, its WAL and shared-memory
    /// files; for PostgreSQL a `pg_dump` of the test schema.
    ///
    /// # Panics
    /// When the files cannot be read or `pg_dump` fails.
    #[must_use]
    pub fn raw_dump(&self) -> Vec<u8> {
        match (&self.dir, &self.pg_schema) {
            (Some(dir), _) => {
                let mut bytes = Vec::new();
                for entry in std::fs::read_dir(dir.path()).expect("list the database directory") {
                    let path = entry.expect("read a directory entry").path();
                    bytes.extend(std::fs::read(&path).expect("read a database file"));
                }
                bytes
            }
            (None, Some(schema)) => {
                let output = Command::new("pg_dump")
                    .args([
                        "--no-owner",
                        "--schema",
                        schema,
                        "--dbname",
                        &postgres_url(),
                    ])
                    .output()
                    .expect("run pg_dump (package postgresql-client)");
                assert!(
                    output.status.success(),
                    "pg_dump failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                output.stdout
            }
            (None, None) => panic!("a test database is either SQLite or PostgreSQL"),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(schema) = &self.pg_schema
            && let Ok(mut admin) = PgConnection::establish(&postgres_url())
        {
            let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
    }
}

/// Runs each named `async fn(TestDb)` twice, as `NAME::sqlite` and
/// `NAME::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::TestDb::sqlite()).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(db) = $crate::TestDb::postgres() {
                        super::$name(db).await;
                    }
                }
            }
        )+
    };
}
