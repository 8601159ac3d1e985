//! Sealed provider keys: one per user and provider.
//!
//! The store never sees a plaintext key. It keeps the vault's sealed bytes,
//! the id of the master key that sealed them (so a rewrap can find rows still
//! on an old key with an indexed query), the masked form for listings and the
//! provider's non-secret settings.

use std::collections::BTreeMap;

use byok_core::{KeyStatus, MaskedKey, ProviderKind, UserId};
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use crate::audit::{self, AuditAction, NewAuditEvent};
use crate::connection::write_transaction;
use crate::schema::provider_keys;
use crate::time::{from_db, to_db};
use crate::{DbConnection, StoreError};

/// A provider's non-secret settings, such as an Azure endpoint and deployment.
pub type KeySettings = BTreeMap<String, String>;

/// A sealed key to store.
#[derive(Debug, Clone)]
pub struct NewProviderKey<'a> {
    /// Whose key it is.
    pub user_id: &'a UserId,
    /// Which provider it is for.
    pub provider: ProviderKind,
    /// The vault's sealed bytes.
    pub sealed_key: &'a [u8],
    /// The id of the master key that sealed it.
    pub master_key_id: u32,
    /// The masked form, for listings.
    pub masked_key: &'a MaskedKey,
    /// Non-secret provider settings.
    pub settings: &'a KeySettings,
}

/// Whether a save created a key or replaced one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// There was no key for this user and provider.
    Created,
    /// An earlier key was replaced.
    Replaced,
}

/// The result of the last test of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTest {
    /// What the test found.
    pub status: KeyStatus,
    /// When it ran (UTC).
    pub at: DateTime<Utc>,
    /// How long the provider took to answer, if it answered.
    pub latency_ms: Option<u64>,
}

/// A stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The row's id (a UUID).
    pub id: String,
    /// Whose key it is.
    pub user_id: UserId,
    /// Which provider it is for.
    pub provider: ProviderKind,
    /// The vault's sealed bytes.
    pub sealed_key: Vec<u8>,
    /// The id of the master key that sealed it.
    pub master_key_id: u32,
    /// The masked form.
    pub masked_key: MaskedKey,
    /// Non-secret provider settings.
    pub settings: KeySettings,
    /// The last test, if the key has been tested since it was saved.
    pub last_test: Option<KeyTest>,
    /// When the first key for this user and provider was saved.
    pub created_at: DateTime<Utc>,
    /// When the key was last replaced (or rewrapped).
    pub updated_at: DateTime<Utc>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = provider_keys)]
struct KeyRow {
    id: String,
    user_id: String,
    provider: String,
    sealed_key: Vec<u8>,
    master_key_id: i64,
    masked_key: String,
    settings: String,
    last_test_status: Option<String>,
    last_tested_at: Option<NaiveDateTime>,
    last_test_latency_ms: Option<i64>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl TryFrom<KeyRow> for StoredKey {
    type Error = StoreError;

    fn try_from(row: KeyRow) -> Result<Self, StoreError> {
        let corrupt = StoreError::Corrupt;
        let last_test = match (row.last_test_status, row.last_tested_at) {
            (Some(status), Some(at)) => Some(KeyTest {
                status: status.parse().map_err(|_| corrupt("key test status"))?,
                at: from_db(at),
                latency_ms: row
                    .last_test_latency_ms
                    .and_then(|ms| u64::try_from(ms).ok()),
            }),
            _ => None,
        };
        Ok(Self {
            id: row.id,
            user_id: UserId::parse(row.user_id).map_err(|_| corrupt("key user id"))?,
            provider: row.provider.parse().map_err(|_| corrupt("key provider"))?,
            sealed_key: row.sealed_key,
            master_key_id: u32::try_from(row.master_key_id)
                .map_err(|_| corrupt("master key id"))?,
            masked_key: MaskedKey::from_stored(row.masked_key)
                .map_err(|_| corrupt("masked key"))?,
            settings: serde_json::from_str(&row.settings).map_err(|_| corrupt("key settings"))?,
            last_test,
            created_at: from_db(row.created_at),
            updated_at: from_db(row.updated_at),
        })
    }
}

/// Saves `key`, replacing any earlier key of the same user and provider, and
/// appends `event` with its action set to [`AuditAction::KeyCreate`] or
/// [`AuditAction::KeyReplace`] — all in one transaction, so a failure at any
/// point leaves the earlier key (or no key) exactly as it was. A replaced key
/// loses its test result: the new key has not been tested.
///
/// # Errors
/// [`StoreError::NotFound`] when the user does not exist,
/// [`StoreError::Busy`] when SQLite stayed locked past the busy timeout.
pub fn put(
    conn: &mut DbConnection,
    key: &NewProviderKey<'_>,
    mut event: NewAuditEvent,
    at: DateTime<Utc>,
) -> Result<PutOutcome, StoreError> {
    let settings =
        serde_json::to_string(key.settings).map_err(|_| StoreError::Corrupt("key settings"))?;
    write_transaction(conn, |conn| {
        if !crate::users::lock(conn, key.user_id)? {
            return Err(StoreError::NotFound);
        }
        let existing = provider_keys::table
            .filter(provider_keys::user_id.eq(key.user_id.as_str()))
            .filter(provider_keys::provider.eq(key.provider.as_str()))
            .select(provider_keys::id)
            .first::<String>(conn)
            .optional()?;
        let outcome = if let Some(id) = existing {
            diesel::update(provider_keys::table.find(id))
                .set((
                    provider_keys::sealed_key.eq(key.sealed_key),
                    provider_keys::master_key_id.eq(i64::from(key.master_key_id)),
                    provider_keys::masked_key.eq(key.masked_key.as_str()),
                    provider_keys::settings.eq(&settings),
                    provider_keys::last_test_status.eq(None::<String>),
                    provider_keys::last_tested_at.eq(None::<NaiveDateTime>),
                    provider_keys::last_test_latency_ms.eq(None::<i64>),
                    provider_keys::updated_at.eq(to_db(at)),
                ))
                .execute(conn)?;
            PutOutcome::Replaced
        } else {
            diesel::insert_into(provider_keys::table)
                .values((
                    provider_keys::id.eq(uuid::Uuid::new_v4().to_string()),
                    provider_keys::user_id.eq(key.user_id.as_str()),
                    provider_keys::provider.eq(key.provider.as_str()),
                    provider_keys::sealed_key.eq(key.sealed_key),
                    provider_keys::master_key_id.eq(i64::from(key.master_key_id)),
                    provider_keys::masked_key.eq(key.masked_key.as_str()),
                    provider_keys::settings.eq(&settings),
                    provider_keys::created_at.eq(to_db(at)),
                    provider_keys::updated_at.eq(to_db(at)),
                ))
                .execute(conn)?;
            PutOutcome::Created
        };
        event.action = match outcome {
            PutOutcome::Created => AuditAction::KeyCreate,
            PutOutcome::Replaced => AuditAction::KeyReplace,
        };
        audit::append(conn, &event, at)?;
        Ok(outcome)
    })
}

/// `user`'s key for `provider`, if there is one.
///
/// # Errors
/// A [`StoreError`] from the database, or [`StoreError::Corrupt`].
pub fn get(
    conn: &mut DbConnection,
    user: &UserId,
    provider: ProviderKind,
) -> Result<Option<StoredKey>, StoreError> {
    provider_keys::table
        .filter(provider_keys::user_id.eq(user.as_str()))
        .filter(provider_keys::provider.eq(provider.as_str()))
        .select(KeyRow::as_select())
        .first(conn)
        .optional()?
        .map(StoredKey::try_from)
        .transpose()
}

/// All of `user`'s keys, ordered by provider name.
///
/// # Errors
/// A [`StoreError`] from the database, or [`StoreError::Corrupt`].
pub fn list_for_user(conn: &mut DbConnection, user: &UserId) -> Result<Vec<StoredKey>, StoreError> {
    provider_keys::table
        .filter(provider_keys::user_id.eq(user.as_str()))
        .order(provider_keys::provider.asc())
        .select(KeyRow::as_select())
        .load(conn)?
        .into_iter()
        .map(StoredKey::try_from)
        .collect()
}

/// Deletes `user`'s key for `provider`, appending `event` in the same
/// transaction when there was one. Returns whether a key was deleted.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn delete(
    conn: &mut DbConnection,
    user: &UserId,
    provider: ProviderKind,
    event: &NewAuditEvent,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    write_transaction(conn, |conn| {
        let deleted = diesel::delete(provider_keys::table)
            .filter(provider_keys::user_id.eq(user.as_str()))
            .filter(provider_keys::provider.eq(provider.as_str()))
            .execute(conn)?
            > 0;
        if deleted {
            audit::append(conn, event, at)?;
        }
        Ok(deleted)
    })
}

/// Records the result of testing `user`'s key for `provider`, appending
/// `event` in the same transaction. Returns whether the key exists.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn record_test(
    conn: &mut DbConnection,
    user: &UserId,
    provider: ProviderKind,
    test: &KeyTest,
    event: &NewAuditEvent,
) -> Result<bool, StoreError> {
    let latency = test
        .latency_ms
        .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX));
    write_transaction(conn, |conn| {
        let updated = diesel::update(provider_keys::table)
            .filter(provider_keys::user_id.eq(user.as_str()))
            .filter(provider_keys::provider.eq(provider.as_str()))
            .set((
                provider_keys::last_test_status.eq(test.status.as_str()),
                provider_keys::last_tested_at.eq(to_db(test.at)),
                provider_keys::last_test_latency_ms.eq(latency),
            ))
            .execute(conn)?
            > 0;
        audit::append(conn, event, test.at)?;
        Ok(updated)
    })
}

/// Records a test result only if the key is still the one tested (its
/// sealed bytes are still `tested`): a test of an old key must not stamp its
/// result on a key that replaced it meanwhile. Appends `event` either way.
/// Returns whether the result was recorded.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn record_test_if_unchanged(
    conn: &mut DbConnection,
    user: &UserId,
    provider: ProviderKind,
    tested: &[u8],
    test: &KeyTest,
    event: &NewAuditEvent,
) -> Result<bool, StoreError> {
    let latency = test
        .latency_ms
        .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX));
    write_transaction(conn, |conn| {
        let updated = diesel::update(provider_keys::table)
            .filter(provider_keys::user_id.eq(user.as_str()))
            .filter(provider_keys::provider.eq(provider.as_str()))
            .filter(provider_keys::sealed_key.eq(tested))
            .set((
                provider_keys::last_test_status.eq(test.status.as_str()),
                provider_keys::last_tested_at.eq(to_db(test.at)),
                provider_keys::last_test_latency_ms.eq(latency),
            ))
            .execute(conn)?
            > 0;
        audit::append(conn, event, test.at)?;
        Ok(updated)
    })
}

/// Up to `limit` keys sealed by a master key other than `active`, ordered by
/// row id: the work list of a rewrap. Rows that fail to reseal stay on it, so
/// a rewrap job should page with `after` (the last id it saw).
///
/// # Errors
/// A [`StoreError`] from the database, or [`StoreError::Corrupt`].
pub fn not_sealed_with(
    conn: &mut DbConnection,
    active: u32,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<StoredKey>, StoreError> {
    let mut query = provider_keys::table
        .filter(provider_keys::master_key_id.ne(i64::from(active)))
        .order(provider_keys::id.asc())
        .limit(i64::from(limit))
        .select(KeyRow::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(provider_keys::id.gt(after.to_owned()));
    }
    query
        .load(conn)?
        .into_iter()
        .map(StoredKey::try_from)
        .collect()
}

/// Replaces the sealed bytes of row `id` only if they are still `expected`
/// (compare-and-set), so a rewrap never overwrites a key the user replaced
/// meanwhile. Appends `event` when it swapped. Returns whether it swapped.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn swap_sealed(
    conn: &mut DbConnection,
    id: &str,
    expected: &[u8],
    sealed_key: &[u8],
    master_key_id: u32,
    event: &NewAuditEvent,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    write_transaction(conn, |conn| {
        let swapped = diesel::update(provider_keys::table.find(id))
            .filter(provider_keys::sealed_key.eq(expected))
            .set((
                provider_keys::sealed_key.eq(sealed_key),
                provider_keys::master_key_id.eq(i64::from(master_key_id)),
            ))
            .execute(conn)?
            > 0;
        if swapped {
            audit::append(conn, event, at)?;
        }
        Ok(swapped)
    })
}

/// The distinct ids of the master keys that sealed the stored keys, in
/// ascending order: what the key ring must be able to open.
///
/// # Errors
/// A [`StoreError`] from the database, or [`StoreError::Corrupt`].
pub fn master_key_ids(conn: &mut DbConnection) -> Result<Vec<u32>, StoreError> {
    provider_keys::table
        .select(provider_keys::master_key_id)
        .distinct()
        .order(provider_keys::master_key_id.asc())
        .load::<i64>(conn)?
        .into_iter()
        .map(|id| u32::try_from(id).map_err(|_| StoreError::Corrupt("master key id")))
        .collect()
}

/// The key-check value recorded for each master key id, ascending by id.
///
/// # Errors
/// A [`StoreError`] from the database, or [`StoreError::Corrupt`].
pub fn master_key_checks(conn: &mut DbConnection) -> Result<Vec<(u32, String)>, StoreError> {
    use crate::schema::master_key_checks as checks;
    checks::table
        .select((checks::key_id, checks::check_value))
        .order(checks::key_id.asc())
        .load::<(i64, String)>(conn)?
        .into_iter()
        .map(|(id, check)| {
            Ok((
                u32::try_from(id).map_err(|_| StoreError::Corrupt("master key id"))?,
                check,
            ))
        })
        .collect()
}

/// Records `check` as what master key `id` means, unless one is recorded
/// already (another replica may have just done it); returns the value the
/// store holds now.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn record_master_key_check(
    conn: &mut DbConnection,
    id: u32,
    check: &str,
) -> Result<String, StoreError> {
    use crate::schema::master_key_checks as checks;
    crate::connection::write_transaction(conn, |conn| {
        let existing = checks::table
            .filter(checks::key_id.eq(i64::from(id)))
            .select(checks::check_value)
            .first::<String>(conn)
            .optional()?;
        if let Some(existing) = existing {
            return Ok(existing);
        }
        diesel::insert_into(checks::table)
            .values((
                checks::key_id.eq(i64::from(id)),
                checks::check_value.eq(check),
                checks::created_at.eq(crate::time::to_db(crate::now())),
            ))
            .execute(conn)?;
        Ok(check.to_owned())
    })
}

/// Up to `limit` stored keys sealed with master key `master_key_id`, after
/// the row `after` (pages through all of them).
///
/// # Errors
/// A [`StoreError`] from the database, or [`StoreError::Corrupt`].
pub fn sealed_with_page(
    conn: &mut DbConnection,
    master_key_id: u32,
    after: &str,
    limit: i64,
) -> Result<Vec<(String, StoredKey)>, StoreError> {
    provider_keys::table
        .filter(provider_keys::master_key_id.eq(i64::from(master_key_id)))
        .filter(provider_keys::id.gt(after))
        .order(provider_keys::id.asc())
        .limit(limit)
        .select((provider_keys::id, KeyRow::as_select()))
        .load::<(String, KeyRow)>(conn)?
        .into_iter()
        .map(|(id, row)| Ok((id, StoredKey::try_from(row)?)))
        .collect()
}

/// One stored key sealed with master key `master_key_id`, if any: a sample
/// to check at start-up that the configured master key really opens it.
///
/// # Errors
/// A [`StoreError`] from the database, or [`StoreError::Corrupt`].
pub fn sample_sealed_with(
    conn: &mut DbConnection,
    master_key_id: u32,
) -> Result<Option<StoredKey>, StoreError> {
    provider_keys::table
        .filter(provider_keys::master_key_id.eq(i64::from(master_key_id)))
        .order(provider_keys::id.asc())
        .select(KeyRow::as_select())
        .first(conn)
        .optional()?
        .map(StoredKey::try_from)
        .transpose()
}
