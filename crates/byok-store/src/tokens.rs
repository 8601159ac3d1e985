//! API tokens for byok itself. Only a hash of each token's secret part is
//! stored; issuing, hashing and comparing belong to the caller (`byok-api`).

use byok_core::UserId;
use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::audit::{self, NewAuditEvent};
use crate::connection::write_transaction;
use crate::schema::api_tokens;
use crate::time::{from_db, to_db};
use crate::{DbConnection, StoreError};

/// What a token may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRole {
    /// Acts on one user's resources.
    User(UserId),
    /// Acts on any user and on admin routes.
    Admin,
}

/// A token to store.
#[derive(Debug, Clone)]
pub struct NewToken<'a> {
    /// The token's public id (the part before the secret).
    pub id: &'a str,
    /// What it may do.
    pub role: TokenRole,
    /// A hash of the secret part; never the secret.
    pub secret_hash: &'a [u8],
}

/// A stored token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    /// The token's public id.
    pub id: String,
    /// What it may do.
    pub role: TokenRole,
    /// The stored hash of the secret part.
    pub secret_hash: Vec<u8>,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Stores `token`, recording `event` in the same transaction.
///
/// # Errors
/// [`StoreError::Conflict`] when the id is taken, [`StoreError::NotFound`]
/// when a user token's user does not exist.
pub fn insert(
    conn: &mut DbConnection,
    token: &NewToken<'_>,
    event: &NewAuditEvent,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    write_transaction(conn, |conn| {
        let (role, user_id) = match &token.role {
            TokenRole::User(user) => {
                if !crate::users::lock(conn, user)? {
                    return Err(StoreError::NotFound);
                }
                ("user", Some(user.as_str()))
            }
            TokenRole::Admin => ("admin", None),
        };
        diesel::insert_into(api_tokens::table)
            .values((
                api_tokens::id.eq(token.id),
                api_tokens::user_id.eq(user_id),
                api_tokens::role.eq(role),
                api_tokens::secret_hash.eq(token.secret_hash),
                api_tokens::created_at.eq(to_db(at)),
            ))
            .execute(conn)?;
        audit::append(conn, event, at)
    })
}

type TokenRow = (
    String,
    Option<String>,
    String,
    Vec<u8>,
    chrono::NaiveDateTime,
    Option<chrono::NaiveDateTime>,
);

/// The token with public id `id`, revoked or not.
///
/// # Errors
/// A [`StoreError`] from the database, or [`StoreError::Corrupt`].
pub fn find(conn: &mut DbConnection, id: &str) -> Result<Option<StoredToken>, StoreError> {
    let row = api_tokens::table
        .find(id)
        .select((
            api_tokens::id,
            api_tokens::user_id,
            api_tokens::role,
            api_tokens::secret_hash,
            api_tokens::created_at,
            api_tokens::revoked_at,
        ))
        .first::<TokenRow>(conn)
        .optional()?;
    row.map(|(id, user_id, role, secret_hash, created_at, revoked_at)| {
        let role = match (role.as_str(), user_id) {
            ("admin", None) => TokenRole::Admin,
            ("user", Some(user)) => TokenRole::User(
                UserId::parse(user).map_err(|_| StoreError::Corrupt("token user id"))?,
            ),
            _ => return Err(StoreError::Corrupt("token role")),
        };
        Ok(StoredToken {
            id,
            role,
            secret_hash,
            created_at: from_db(created_at),
            revoked_at: revoked_at.map(from_db),
        })
    })
    .transpose()
}

/// Revokes the token `id` (idempotent), recording `event` in the same
/// transaction when it was active. Returns whether an active token was revoked.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn revoke(
    conn: &mut DbConnection,
    id: &str,
    event: &NewAuditEvent,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    write_transaction(conn, |conn| {
        let revoked = diesel::update(api_tokens::table.find(id))
            .filter(api_tokens::revoked_at.is_null())
            .set(api_tokens::revoked_at.eq(to_db(at)))
            .execute(conn)?
            > 0;
        if revoked {
            audit::append(conn, event, at)?;
        }
        Ok(revoked)
    })
}

/// Whether any admin token is stored and not revoked.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn active_admin_exists(conn: &mut DbConnection) -> Result<bool, StoreError> {
    let count: i64 = api_tokens::table
        .filter(api_tokens::role.eq("admin"))
        .filter(api_tokens::revoked_at.is_null())
        .count()
        .get_result(conn)?;
    Ok(count > 0)
}
