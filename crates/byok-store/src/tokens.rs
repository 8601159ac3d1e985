//! API tokens for byok itself. Only a hash of each token's secret part is
//! stored; issuing, hashing and comparing belong to the caller (`byok-api`).
//!
//! A token has a role (a user's, an admin's, or a service token that acts
//! for users it names), an optional expiry and a scope: which doors, providers
//! and models it may use, and for a service token which users it may act for.

use byok_core::{ProviderKind, UserId};
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

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
    /// An app backend's token: acts for the users its scope allows, named
    /// per request; never on admin routes.
    Service,
}

/// The parts of byok a token may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Door {
    /// The user's keys and tokens (`/api/user/api-keys/…`, writes included).
    Keys,
    /// The gateway (`/v1/…`).
    Gateway,
    /// Read-only reports: usage, spend, health, audit, key listing.
    Reports,
}

impl Door {
    /// Every door.
    pub const ALL: [Self; 3] = [Self::Keys, Self::Gateway, Self::Reports];

    /// The wire name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Keys => "keys",
            Self::Gateway => "gateway",
            Self::Reports => "reports",
        }
    }
}

/// What a token may do beyond its role. `None` everywhere (the default)
/// means unrestricted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenScope {
    /// The doors it may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doors: Option<Vec<Door>>,
    /// The providers the gateway may route its requests to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub providers: Option<Vec<ProviderKind>>,
    /// The models the gateway may answer its requests with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// Service tokens: the users it may act for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<UserId>>,
    /// Service tokens: it may act for users whose id starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_prefix: Option<String>,
    /// Its own limit on gateway requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// Its own limit on tokens per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    /// Its own limit on streams open at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrent_streams: Option<u32>,
}

impl TokenScope {
    /// Whether nothing is restricted.
    #[must_use]
    pub fn is_unrestricted(&self) -> bool {
        *self == Self::default()
    }

    /// Whether the token may use `door`.
    #[must_use]
    pub fn allows_door(&self, door: Door) -> bool {
        self.doors.as_ref().is_none_or(|d| d.contains(&door))
    }

    /// Whether the gateway may use `provider` for the token.
    #[must_use]
    pub fn allows_provider(&self, provider: ProviderKind) -> bool {
        self.providers
            .as_ref()
            .is_none_or(|p| p.contains(&provider))
    }

    /// Whether the gateway may answer with `model` for the token.
    #[must_use]
    pub fn allows_model(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|m| m.iter().any(|allowed| allowed == model))
    }

    /// Whether a service token with this scope may act for `user`. A service
    /// token with neither a user list nor a prefix may act for anyone.
    #[must_use]
    pub fn allows_user(&self, user: &UserId) -> bool {
        let listed = self.users.as_ref().map(|u| u.contains(user));
        let prefixed = self
            .user_prefix
            .as_ref()
            .map(|p| user.as_str().starts_with(p.as_str()));
        match (listed, prefixed) {
            (None, None) => true,
            (a, b) => a.unwrap_or(false) || b.unwrap_or(false),
        }
    }
}

/// A token's label, expiry and scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenMeta {
    /// What the user calls it ("laptop IDE", "CI").
    pub label: String,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// What it may do.
    pub scope: TokenScope,
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
    /// Label, expiry and scope.
    pub meta: TokenMeta,
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
    /// When it was last used (updated at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// Label, expiry and scope.
    pub meta: TokenMeta,
}

impl StoredToken {
    /// Whether it may be used at `now`: not revoked, not expired.
    #[must_use]
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.meta.expires_at.is_none_or(|at| now < at)
    }
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
            TokenRole::Service => ("service", None),
        };
        let scope = serde_json::to_string(&token.meta.scope)
            .map_err(|_| StoreError::Corrupt("token scope"))?;
        diesel::insert_into(api_tokens::table)
            .values((
                api_tokens::id.eq(token.id),
                api_tokens::user_id.eq(user_id),
                api_tokens::role.eq(role),
                api_tokens::secret_hash.eq(token.secret_hash),
                api_tokens::created_at.eq(to_db(at)),
                api_tokens::label.eq(&token.meta.label),
                api_tokens::expires_at.eq(token.meta.expires_at.map(to_db)),
                api_tokens::scope.eq(scope),
            ))
            .execute(conn)?;
        audit::append(conn, event, at)
    })
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = api_tokens)]
struct TokenRow {
    id: String,
    user_id: Option<String>,
    role: String,
    secret_hash: Vec<u8>,
    created_at: NaiveDateTime,
    last_used_at: Option<NaiveDateTime>,
    revoked_at: Option<NaiveDateTime>,
    label: String,
    expires_at: Option<NaiveDateTime>,
    scope: String,
}

impl TryFrom<TokenRow> for StoredToken {
    type Error = StoreError;

    fn try_from(row: TokenRow) -> Result<Self, StoreError> {
        let role = match (row.role.as_str(), row.user_id) {
            ("admin", None) => TokenRole::Admin,
            ("service", None) => TokenRole::Service,
            ("user", Some(user)) => TokenRole::User(
                UserId::parse(user).map_err(|_| StoreError::Corrupt("token user id"))?,
            ),
            _ => return Err(StoreError::Corrupt("token role")),
        };
        Ok(StoredToken {
            id: row.id,
            role,
            secret_hash: row.secret_hash,
            created_at: from_db(row.created_at),
            revoked_at: row.revoked_at.map(from_db),
            last_used_at: row.last_used_at.map(from_db),
            meta: TokenMeta {
                label: row.label,
                expires_at: row.expires_at.map(from_db),
                scope: serde_json::from_str(&row.scope)
                    .map_err(|_| StoreError::Corrupt("token scope"))?,
            },
        })
    }
}

/// The token with public id `id`, revoked or not.
///
/// # Errors
/// A [`StoreError`] from the database, or [`StoreError::Corrupt`].
pub fn find(conn: &mut DbConnection, id: &str) -> Result<Option<StoredToken>, StoreError> {
    api_tokens::table
        .find(id)
        .select(TokenRow::as_select())
        .first::<TokenRow>(conn)
        .optional()?
        .map(StoredToken::try_from)
        .transpose()
}

/// The token with public id `id` and whether its user (if it has one) is
/// disabled: what authentication needs, in one query.
///
/// # Errors
/// A [`StoreError`] from the database, or [`StoreError::Corrupt`].
pub fn find_with_owner(
    conn: &mut DbConnection,
    id: &str,
) -> Result<Option<(StoredToken, bool)>, StoreError> {
    use crate::schema::users;
    api_tokens::table
        .left_join(users::table)
        .filter(api_tokens::id.eq(id))
        .select((TokenRow::as_select(), users::disabled_at.nullable()))
        .first::<(TokenRow, Option<NaiveDateTime>)>(conn)
        .optional()?
        .map(|(row, disabled)| Ok((StoredToken::try_from(row)?, disabled.is_some())))
        .transpose()
}

/// `user`'s tokens, revoked ones included, newest first.
///
/// # Errors
/// A [`StoreError`] from the database, or [`StoreError::Corrupt`].
pub fn list_for_user(
    conn: &mut DbConnection,
    user: &UserId,
) -> Result<Vec<StoredToken>, StoreError> {
    api_tokens::table
        .filter(api_tokens::user_id.eq(user.as_str()))
        .order((api_tokens::created_at.desc(), api_tokens::id.asc()))
        .select(TokenRow::as_select())
        .load::<TokenRow>(conn)?
        .into_iter()
        .map(StoredToken::try_from)
        .collect()
}

/// Service tokens, revoked ones included, newest first.
///
/// # Errors
/// A [`StoreError`] from the database, or [`StoreError::Corrupt`].
pub fn list_service(conn: &mut DbConnection) -> Result<Vec<StoredToken>, StoreError> {
    api_tokens::table
        .filter(api_tokens::role.eq("service"))
        .order((api_tokens::created_at.desc(), api_tokens::id.asc()))
        .select(TokenRow::as_select())
        .load::<TokenRow>(conn)?
        .into_iter()
        .map(StoredToken::try_from)
        .collect()
}

/// Records that token `id` was used at `at`.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn touch(conn: &mut DbConnection, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
    diesel::update(api_tokens::table.find(id))
        .set(api_tokens::last_used_at.eq(to_db(at)))
        .execute(conn)?;
    Ok(())
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
