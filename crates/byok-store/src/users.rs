//! Users: the owners of keys and tokens.

use byok_core::UserId;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use crate::audit::{self, NewAuditEvent};
use crate::connection::write_transaction;
use crate::schema::users;
use crate::time::{from_db, to_db};
use crate::{DbConnection, StoreError};

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user's id.
    pub id: UserId,
    /// When the user was created (UTC).
    pub created_at: DateTime<Utc>,
    /// When an operator disabled the user, if they did: a disabled user's
    /// tokens are refused (their keys and data stay).
    pub disabled_at: Option<DateTime<Utc>>,
}

/// Creates `user`, recording `event` in the same transaction.
///
/// # Errors
/// [`StoreError::Conflict`] when the id is taken.
pub fn create(
    conn: &mut DbConnection,
    user: &UserId,
    event: &NewAuditEvent,
    at: DateTime<Utc>,
) -> Result<User, StoreError> {
    write_transaction(conn, |conn| {
        diesel::insert_into(users::table)
            .values((users::id.eq(user.as_str()), users::created_at.eq(to_db(at))))
            .execute(conn)?;
        audit::append(conn, event, at)?;
        Ok(User {
            id: user.clone(),
            created_at: at,
            disabled_at: None,
        })
    })
}

/// The user with id `user`, if there is one.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn find(conn: &mut DbConnection, user: &UserId) -> Result<Option<User>, StoreError> {
    let found = users::table
        .find(user.as_str())
        .select((users::created_at, users::disabled_at))
        .first::<(NaiveDateTime, Option<NaiveDateTime>)>(conn)
        .optional()?;
    Ok(found.map(|(at, disabled)| User {
        id: user.clone(),
        created_at: from_db(at),
        disabled_at: disabled.map(from_db),
    }))
}

/// Up to `limit` users whose id starts with `prefix`, in id order, after
/// `after` (a page's last id).
///
/// # Errors
/// A [`StoreError`] from the database, or [`StoreError::Corrupt`].
pub fn list(
    conn: &mut DbConnection,
    prefix: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<User>, StoreError> {
    // `substr` rather than LIKE: case-sensitive on both backends, and no
    // wildcard to escape (`_` is one).
    let length = i32::try_from(prefix.len()).unwrap_or(i32::MAX);
    let starts_with = diesel::dsl::sql::<diesel::sql_types::Bool>("substr(id, 1, ")
        .bind::<diesel::sql_types::Integer, _>(length)
        .sql(") = ")
        .bind::<diesel::sql_types::Text, _>(prefix.to_owned());
    let mut query = users::table
        .filter(starts_with)
        .order(users::id.asc())
        .limit(limit)
        .select((users::id, users::created_at, users::disabled_at))
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(users::id.gt(after.to_owned()));
    }
    query
        .load::<(String, NaiveDateTime, Option<NaiveDateTime>)>(conn)?
        .into_iter()
        .map(|(id, at, disabled)| {
            Ok(User {
                id: UserId::parse(id).map_err(|_| StoreError::Corrupt("user id"))?,
                created_at: from_db(at),
                disabled_at: disabled.map(from_db),
            })
        })
        .collect()
}

/// Disables (`true`) or enables `user`, recording `event` in the same
/// transaction. Returns whether the user exists.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn set_disabled(
    conn: &mut DbConnection,
    user: &UserId,
    disabled: bool,
    event: &NewAuditEvent,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    write_transaction(conn, |conn| {
        let value = disabled.then(|| to_db(at));
        let found = diesel::update(users::table.find(user.as_str()))
            .set(users::disabled_at.eq(value))
            .execute(conn)?
            > 0;
        if found {
            audit::append(conn, event, at)?;
        }
        Ok(found)
    })
}

/// Deletes `user` with their keys (their ids remembered as deleted), tokens
/// and usage (the audit trail stays, with the number of keys shredded),
/// recording `event` in the same transaction. Returns whether the user existed.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn delete(
    conn: &mut DbConnection,
    user: &UserId,
    event: &NewAuditEvent,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    write_transaction(conn, |conn| {
        // Explicit deletes rather than relying on ON DELETE CASCADE alone, so a
        // SQLite connection opened without foreign_keys cannot leave orphans.
        let key_ids: Vec<String> = crate::schema::provider_keys::table
            .filter(crate::schema::provider_keys::user_id.eq(user.as_str()))
            .select(crate::schema::provider_keys::id)
            .load(conn)?;
        let shredded = crate::keys::delete_ids(conn, &key_ids, at)?;
        diesel::delete(crate::schema::api_tokens::table)
            .filter(crate::schema::api_tokens::user_id.eq(user.as_str()))
            .execute(conn)?;
        // Usage goes with the user: a later user with the same id starts at
        // zero (reports also read usage only from the user's creation on, so
        // a record still in flight at the delete never counts for them).
        diesel::delete(crate::schema::usage_records::table)
            .filter(crate::schema::usage_records::user_id.eq(user.as_str()))
            .execute(conn)?;
        let deleted = diesel::delete(users::table.find(user.as_str())).execute(conn)? > 0;
        if deleted {
            // The sealed keys are gone with their rows (crypto-shredded: no
            // copy is kept), and the trail says how many.
            let event = event
                .clone()
                .detail_count("keys_shredded", u64::try_from(shredded).unwrap_or(u64::MAX));
            audit::append(conn, &event, at)?;
        }
        Ok(deleted)
    })
}

/// Locks `user`'s row until the transaction ends, so that concurrent writes
/// to one user's keys serialise on PostgreSQL (SQLite's `BEGIN IMMEDIATE`
/// already serialises every writer). Returns whether the user exists.
pub(crate) fn lock(conn: &mut DbConnection, user: &UserId) -> Result<bool, StoreError> {
    let query = users::table.find(user.as_str()).select(users::id);
    let found = match conn {
        #[cfg(feature = "postgres")]
        DbConnection::Postgres(pg) => query.for_update().first::<String>(pg).optional()?,
        #[cfg(feature = "sqlite")]
        DbConnection::Sqlite(sqlite) => query.first::<String>(sqlite).optional()?,
    };
    Ok(found.is_some())
}
