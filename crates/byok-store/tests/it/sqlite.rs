//! SQLite specifics: session settings, lock contention and concurrent writers.

use std::time::Duration;

use byok_core::ProviderKind;
use byok_store::{DbConnection, Store, StoreError, users};
use byok_test_support::TestDb;
use diesel::connection::SimpleConnection;
use diesel::sql_types::Text;
use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection};

use crate::fixtures::{create_user, open_key, put_key, vault};

#[derive(QueryableByName)]
struct Value {
    #[diesel(sql_type = Text)]
    value: String,
}

fn pragma(conn: &mut DbConnection, name: &str) -> String {
    let DbConnection::Sqlite(conn) = conn else {
        panic!("not SQLite")
    };
    let column = if name == "busy_timeout" {
        "timeout"
    } else {
        name
    };
    diesel::sql_query(format!(
        "SELECT CAST({column} AS TEXT) AS value FROM pragma_{name}"
    ))
    .get_result::<Value>(conn)
    .unwrap()
    .value
}

#[tokio::test]
async fn every_pooled_connection_is_durable_with_wal_foreign_keys_and_a_busy_timeout() {
    let db = TestDb::sqlite();
    let mut config = db.config();
    config.busy_timeout = Duration::from_millis(4321);
    let store = Store::connect(config).await.unwrap();
    // Hold several connections at once so more than one is checked.
    let settings = store
        .run(|_| Ok(()))
        .await
        .and_then(|()| {
            store.run_blocking(|conn| {
                Ok([
                    pragma(conn, "journal_mode"),
                    pragma(conn, "foreign_keys"),
                    pragma(conn, "synchronous"),
                    pragma(conn, "busy_timeout"),
                    pragma(conn, "secure_delete"),
                ])
            })
        })
        .unwrap();
    assert_eq!(settings, ["wal", "1", "2", "4321", "1"]); // synchronous 2 = FULL
}

#[tokio::test]
async fn a_write_blocked_past_the_busy_timeout_fails_as_busy_and_writes_nothing() {
    let db = TestDb::sqlite();
    let mut config = db.config();
    config.busy_timeout = Duration::from_millis(200);
    let store = Store::connect(config).await.unwrap();
    let vault = vault();
    let alice = create_user(&store, "alice").await;

    // Another process-like writer takes the write lock and holds it.
    let mut holder = SqliteConnection::establish(db.url()).unwrap();
    holder.batch_execute("BEGIN IMMEDIATE").unwrap();

    let err = put_key(
        &store,
        &vault,
        &alice,
        ProviderKind::OpenAi,
        "sk-proj-blocked-0000000000000000",
    )
    .await
    .unwrap_err();
    assert!(matches!(err, StoreError::Busy), "{err:?}");
    assert_eq!(err.code(), "store_busy");

    holder.batch_execute("ROLLBACK").unwrap();
    assert!(
        open_key(&store, &vault, &alice, ProviderKind::OpenAi)
            .await
            .is_none()
    );
    put_key(
        &store,
        &vault,
        &alice,
        ProviderKind::OpenAi,
        "sk-proj-unblocked-000000000000000",
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn concurrent_writers_all_succeed_within_the_busy_timeout() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    let vault = std::sync::Arc::new(vault());
    let mut tasks = Vec::new();
    for i in 0..32 {
        let store = store.clone();
        let vault = vault.clone();
        tasks.push(tokio::spawn(async move {
            let user = create_user(&store, &format!("user{i}")).await;
            for provider in [ProviderKind::OpenAi, ProviderKind::Gemini] {
                put_key(
                    &store,
                    &vault,
                    &user,
                    provider,
                    &format!("sk-concurrent-{i}-{provider}-xxxx"),
                )
                .await?;
            }
            put_key(
                &store,
                &vault,
                &user,
                ProviderKind::OpenAi,
                &format!("sk-replaced-{i}-yyyyyyyyy"),
            )
            .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    for i in 0..32 {
        let user = crate::fixtures::user(&format!("user{i}"));
        assert_eq!(
            open_key(&store, &vault, &user, ProviderKind::OpenAi)
                .await
                .unwrap(),
            format!("sk-replaced-{i}-yyyyyyyyy")
        );
        let u = user.clone();
        assert!(
            store
                .run(move |c| users::find(c, &u))
                .await
                .unwrap()
                .is_some()
        );
    }
}

#[tokio::test]
async fn a_url_with_another_scheme_is_refused_not_created_as_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("mysql://{}/x", dir.path().display());
    let err = Store::connect(byok_store::StoreConfig::new(url))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn an_unreachable_postgres_url_fails_without_falling_back_to_sqlite() {
    let mut config = byok_store::StoreConfig::new("postgres://nobody:hunter2@127.0.0.1:1/none");
    config.connection_timeout = Duration::from_secs(2);
    let err = Store::connect(config).await.unwrap_err();
    assert!(matches!(err, StoreError::Connect(_)), "{err:?}");
    assert!(
        !format!("{err} {err:?}").contains("hunter2"),
        "the password leaked: {err:?}"
    );
    // SQLite would have taken the URL as a file name (`postgres:/...`).
    assert!(!std::path::Path::new("postgres:").exists());
}
