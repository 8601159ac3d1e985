//! Users: the owners of keys and tokens.

use byok_core::UserId;
use chrono::{DateTime, Utc};
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
        })
    })
}

/// The user with id `user`, if there is one.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn find(conn: &mut DbConnection, user: &UserId) -> Result<Option<User>, StoreError> {
    let created_at = users::table
        .find(user.as_str())
        .select(users::created_at)
        .first::<chrono::NaiveDateTime>(conn)
        .optional()?;
    Ok(created_at.map(|at| User {
        id: user.clone(),
        created_at: from_db(at),
    }))
}

/// Deletes `user` with their keys and tokens (the audit trail stays),
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
        diesel::delete(crate::schema::provider_keys::table)
            .filter(crate::schema::provider_keys::user_id.eq(user.as_str()))
            .execute(conn)?;
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
            audit::append(conn, event, at)?;
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
