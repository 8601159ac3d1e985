#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod alerts;
pub mod audit;
pub mod budgets;
mod config;
mod connection;
mod error;
pub mod keys;
pub mod rates;
mod schema;
mod store;
mod time;
pub mod tokens;
pub mod usage;
pub mod users;

pub use config::{Backend, StoreConfig};
pub use connection::{DbConnection, migrate_through, write_transaction};
pub use error::{Result, StoreError};
pub use store::{CHANGES_CHANNEL, Listener, Store, notify};
pub use time::now;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    fn migration_names(backend: &str) -> BTreeSet<String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../migrations")
            .join(backend);
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect()
    }

    #[test]
    fn both_migration_trees_have_the_same_migrations() {
        let sqlite = migration_names("sqlite");
        let postgres = migration_names("postgres");
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, postgres);
        for name in &sqlite {
            for file in ["up.sql", "down.sql"] {
                for backend in ["sqlite", "postgres"] {
                    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("../../migrations")
                        .join(backend)
                        .join(name)
                        .join(file);
                    assert!(path.is_file(), "missing {}", path.display());
                }
            }
        }
    }
}
