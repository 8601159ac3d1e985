//! The alert outbox: alerts (budget crossed, key refused) written in the
//! same transaction as what caused them, delivered later by the API's
//! webhook sender with retries, so a restart loses none.

use byok_core::UserId;
use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::schema::alert_outbox;
use crate::time::{from_db, to_db};
use crate::{DbConnection, StoreError};

/// An alert waiting for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAlert {
    /// Its id (the delivery id the receiver sees).
    pub id: i64,
    /// `budget.crossed`, `key.refused`, ...
    pub event: String,
    /// The JSON body to send (never a key or a token).
    pub body: String,
    /// Deliveries tried so far.
    pub attempts: i32,
    /// When it was raised.
    pub created_at: DateTime<Utc>,
}

/// Adds an alert to the outbox (inside the caller's transaction).
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn enqueue(
    conn: &mut DbConnection,
    event: &str,
    user: Option<&UserId>,
    body: &serde_json::Value,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    diesel::insert_into(alert_outbox::table)
        .values((
            alert_outbox::created_at.eq(to_db(at)),
            alert_outbox::event.eq(event),
            alert_outbox::user_id.eq(user.map(UserId::as_str)),
            alert_outbox::body.eq(body.to_string()),
            alert_outbox::next_attempt_at.eq(to_db(at)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Adds an alert unless one with `dedupe_key` was ever raised (kept while
/// the outbox keeps it): a fact alerted once. Returns whether it was added.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn enqueue_once(
    conn: &mut DbConnection,
    event: &str,
    user: Option<&UserId>,
    body: &serde_json::Value,
    dedupe_key: &str,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let insert = diesel::insert_into(alert_outbox::table)
        .values((
            alert_outbox::created_at.eq(to_db(at)),
            alert_outbox::event.eq(event),
            alert_outbox::user_id.eq(user.map(UserId::as_str)),
            alert_outbox::body.eq(body.to_string()),
            alert_outbox::next_attempt_at.eq(to_db(at)),
            alert_outbox::dedupe_key.eq(dedupe_key),
        ))
        .on_conflict_do_nothing();
    let added = match conn {
        #[cfg(feature = "postgres")]
        DbConnection::Postgres(c) => insert.execute(c)?,
        #[cfg(feature = "sqlite")]
        DbConnection::Sqlite(c) => insert.execute(c)?,
    };
    Ok(added > 0)
}

/// Up to `limit` undelivered alerts due at `now`, oldest first.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn due(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<PendingAlert>, StoreError> {
    Ok(alert_outbox::table
        .filter(alert_outbox::delivered_at.is_null())
        .filter(alert_outbox::next_attempt_at.le(to_db(now)))
        .order(alert_outbox::id.asc())
        .limit(limit)
        .select((
            alert_outbox::id,
            alert_outbox::event,
            alert_outbox::body,
            alert_outbox::attempts,
            alert_outbox::created_at,
        ))
        .load::<(i64, String, String, i32, chrono::NaiveDateTime)>(conn)?
        .into_iter()
        .map(|(id, event, body, attempts, created)| PendingAlert {
            id,
            event,
            body,
            attempts,
            created_at: from_db(created),
        })
        .collect())
}

/// Marks alert `id` delivered.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn delivered(conn: &mut DbConnection, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
    diesel::update(alert_outbox::table.find(id))
        .set(alert_outbox::delivered_at.eq(to_db(at)))
        .execute(conn)?;
    Ok(())
}

/// Records a failed delivery of alert `id` and when to try again.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn failed(
    conn: &mut DbConnection,
    id: i64,
    error: &str,
    retry_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    diesel::update(alert_outbox::table.find(id))
        .set((
            alert_outbox::attempts.eq(alert_outbox::attempts + 1),
            alert_outbox::last_error.eq(error),
            alert_outbox::next_attempt_at.eq(to_db(retry_at)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Drops alerts raised before `before` (delivered or not): the outbox is
/// not an archive.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn prune(conn: &mut DbConnection, before: DateTime<Utc>) -> Result<usize, StoreError> {
    Ok(
        diesel::delete(alert_outbox::table.filter(alert_outbox::created_at.lt(to_db(before))))
            .execute(conn)?,
    )
}
