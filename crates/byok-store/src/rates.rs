//! Rate-limit counters shared by replicas: requests and tokens per subject
//! (`user:<id>`, `token:<id>`) and minute. A request is counted with one
//! atomic upsert that refuses to go past the limit, so replicas never race
//! past it. (One process on SQLite counts in memory instead; these
//! functions work on both backends.)

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use crate::schema::{rate_counters, users};
use crate::{DbConnection, StoreError};

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    requests: i64,
}

/// Counts one request for `subject` in the window starting `window` (unix
/// seconds), unless it already has `limit`. Returns the count after it, or
/// `None` when the limit was reached (nothing counted).
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn hit(
    conn: &mut DbConnection,
    subject: &str,
    window: i64,
    limit: i64,
) -> Result<Option<i64>, StoreError> {
    #[cfg(feature = "postgres")]
    const SQL_PG: &str = "INSERT INTO rate_counters (subject, window_start, requests, tokens) VALUES ($1, $2, 1, 0) \
        ON CONFLICT (subject, window_start) DO UPDATE SET requests = rate_counters.requests + 1 \
        WHERE rate_counters.requests < $3 RETURNING requests";
    #[cfg(feature = "sqlite")]
    const SQL_SQLITE: &str = "INSERT INTO rate_counters (subject, window_start, requests, tokens) VALUES (?, ?, 1, 0) \
        ON CONFLICT (subject, window_start) DO UPDATE SET requests = rate_counters.requests + 1 \
        WHERE rate_counters.requests < ? RETURNING requests";
    if limit <= 0 {
        return Ok(None);
    }
    let rows: Vec<Count> = match conn {
        #[cfg(feature = "postgres")]
        DbConnection::Postgres(c) => diesel::sql_query(SQL_PG)
            .bind::<Text, _>(subject)
            .bind::<BigInt, _>(window)
            .bind::<BigInt, _>(limit)
            .load(c)?,
        #[cfg(feature = "sqlite")]
        DbConnection::Sqlite(c) => diesel::sql_query(SQL_SQLITE)
            .bind::<Text, _>(subject)
            .bind::<BigInt, _>(window)
            .bind::<BigInt, _>(limit)
            .load(c)?,
    };
    Ok(rows.first().map(|r| r.requests))
}

/// Tokens counted for `subject` in window `window`.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn tokens(conn: &mut DbConnection, subject: &str, window: i64) -> Result<i64, StoreError> {
    Ok(rate_counters::table
        .find((subject, window))
        .select(rate_counters::tokens)
        .first::<i64>(conn)
        .optional()?
        .unwrap_or(0))
}

/// Adds `tokens` to `subject`'s window `window`.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn add_tokens(
    conn: &mut DbConnection,
    subject: &str,
    window: i64,
    tokens: i64,
) -> Result<(), StoreError> {
    #[cfg(feature = "postgres")]
    const SQL_PG: &str = "INSERT INTO rate_counters (subject, window_start, requests, tokens) VALUES ($1, $2, 0, $3) \
        ON CONFLICT (subject, window_start) DO UPDATE SET tokens = rate_counters.tokens + $3";
    #[cfg(feature = "sqlite")]
    const SQL_SQLITE: &str = "INSERT INTO rate_counters (subject, window_start, requests, tokens) VALUES (?1, ?2, 0, ?3) \
        ON CONFLICT (subject, window_start) DO UPDATE SET tokens = rate_counters.tokens + ?3";
    match conn {
        #[cfg(feature = "postgres")]
        DbConnection::Postgres(c) => diesel::sql_query(SQL_PG)
            .bind::<Text, _>(subject)
            .bind::<BigInt, _>(window)
            .bind::<BigInt, _>(tokens)
            .execute(c)?,
        #[cfg(feature = "sqlite")]
        DbConnection::Sqlite(c) => diesel::sql_query(SQL_SQLITE)
            .bind::<Text, _>(subject)
            .bind::<BigInt, _>(window)
            .bind::<BigInt, _>(tokens)
            .execute(c)?,
    };
    Ok(())
}

/// Drops windows that started before `before` (unix seconds).
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn prune(conn: &mut DbConnection, before: i64) -> Result<usize, StoreError> {
    Ok(
        diesel::delete(rate_counters::table.filter(rate_counters::window_start.lt(before)))
            .execute(conn)?,
    )
}

/// An operator's rate limits for `user` (JSON, as stored), if set.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn user_limits(
    conn: &mut DbConnection,
    user: &byok_core::UserId,
) -> Result<Option<String>, StoreError> {
    Ok(users::table
        .find(user.as_str())
        .select(users::limits)
        .first::<Option<String>>(conn)
        .optional()?
        .flatten())
}

/// Sets (or with `None` clears) `user`'s rate limits, recording `event`.
/// Returns whether the user exists.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn set_user_limits(
    conn: &mut DbConnection,
    user: &byok_core::UserId,
    limits: Option<&str>,
    event: &crate::audit::NewAuditEvent,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<bool, StoreError> {
    crate::connection::write_transaction(conn, |conn| {
        let found = diesel::update(users::table.find(user.as_str()))
            .set(users::limits.eq(limits))
            .execute(conn)?
            > 0;
        if found {
            crate::audit::append(conn, event, at)?;
        }
        Ok(found)
    })
}
