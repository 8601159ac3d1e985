//! Sealed provider keys: several per user and provider, each with its own id.
//!
//! The store never sees a plaintext key. It keeps the vault's sealed bytes
//! (bound to the key's id), the id of the master key that sealed them (so a
//! rewrap can find rows still on an old key with an indexed query), the
//! masked form for listings, the provider's non-secret settings, and the
//! key's label and place in its provider's order.
//!
//! A provider's keys are tried in `position` order; keys sharing a position
//! share traffic by `weight`. The first key in order is the provider's
//! *default* key: what the one-key-per-provider routes read and replace.
//! Ids of deleted keys are remembered (`deleted_provider_keys`), so a deleted
//! row put back by SQL is not served.

use std::collections::BTreeMap;

use byok_core::{KeyStatus, MaskedKey, ProviderKind, UserId};
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use crate::audit::{self, AuditAction, NewAuditEvent};
use crate::connection::write_transaction;
use crate::schema::{deleted_provider_keys, provider_keys};
use crate::time::{from_db, to_db};
use crate::{DbConnection, StoreError};

/// A provider's non-secret settings, such as an Azure endpoint and deployment.
pub type KeySettings = BTreeMap<String, String>;

/// The envelope binding of keys sealed before keys had ids (user and provider only).
pub const BINDING_LEGACY: i32 = 1;
/// The envelope binding of keys sealed for their own id.
pub const BINDING_KEY_ID: i32 = 2;

/// A sealed key to store.
#[derive(Debug, Clone)]
pub struct NewProviderKey<'a> {
    /// The key's id: a new UUID for a new key, or the id of the key it replaces.
    /// The sealed bytes must be bound to it.
    pub id: &'a str,
    /// Whose key it is.
    pub user_id: &'a UserId,
    /// Which provider it is for.
    pub provider: ProviderKind,
    /// The vault's sealed bytes, bound to `id`.
    pub sealed_key: &'a [u8],
    /// The id of the master key that sealed it.
    pub master_key_id: u32,
    /// The masked form, for listings.
    pub masked_key: &'a MaskedKey,
    /// Non-secret provider settings.
    pub settings: &'a KeySettings,
    /// A label; `None` keeps a replaced key's label (empty for a new key).
    pub label: Option<&'a str>,
}

/// Whether a save created a key or replaced one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// There was no key with this id.
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

/// A key's place and switches: everything about it but the secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyChanges {
    /// A new label.
    pub label: Option<String>,
    /// A new place in the provider's order (0 is first).
    pub position: Option<i32>,
    /// A new weight among keys sharing its place.
    pub weight: Option<i32>,
    /// On or off.
    pub enabled: Option<bool>,
    /// New non-secret settings (the secret stays).
    pub settings: Option<KeySettings>,
}

/// A stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The key's id (a UUID).
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
    /// When the key was first saved.
    pub created_at: DateTime<Utc>,
    /// When the key was last replaced (or rewrapped).
    pub updated_at: DateTime<Utc>,
    /// The user's label for it.
    pub label: String,
    /// Its place in its provider's order (lowest first).
    pub position: i32,
    /// Its share of traffic among keys with the same position.
    pub weight: i32,
    /// Whether routing may use it.
    pub enabled: bool,
    /// [`BINDING_LEGACY`] or [`BINDING_KEY_ID`].
    pub binding_version: i32,
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
    label: String,
    position: i32,
    weight: i32,
    enabled: bool,
    binding_version: i32,
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
            label: row.label,
            position: row.position,
            weight: row.weight,
            enabled: row.enabled,
            binding_version: row.binding_version,
        })
    }
}

/// Keys that are live: not remembered as deleted.
macro_rules! live_keys {
    () => {
        provider_keys::table.filter(diesel::dsl::not(diesel::dsl::exists(
            deleted_provider_keys::table.filter(deleted_provider_keys::id.eq(provider_keys::id)),
        )))
    };
}

/// Saves `key` under its id — replacing the key with that id, or adding it
/// last in its provider's order — and appends `event` with its action set
/// to [`AuditAction::KeyCreate`] or [`AuditAction::KeyReplace`], all in one
/// transaction, so a failure at any point leaves the earlier key (or no key)
/// exactly as it was. A replaced key loses its test result: the new secret
/// has not been tested.
///
/// # Errors
/// [`StoreError::NotFound`] when the user does not exist or the id names
/// another user's or provider's key, [`StoreError::Busy`] when SQLite stayed
/// locked past the busy timeout.
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
            .find(key.id)
            .select((provider_keys::user_id, provider_keys::provider))
            .first::<(String, String)>(conn)
            .optional()?;
        let outcome = match existing {
            Some((user, provider))
                if user == key.user_id.as_str() && provider == key.provider.as_str() =>
            {
                diesel::update(provider_keys::table.find(key.id))
                    .set((
                        provider_keys::sealed_key.eq(key.sealed_key),
                        provider_keys::master_key_id.eq(i64::from(key.master_key_id)),
                        provider_keys::masked_key.eq(key.masked_key.as_str()),
                        provider_keys::settings.eq(&settings),
                        provider_keys::last_test_status.eq(None::<String>),
                        provider_keys::last_tested_at.eq(None::<NaiveDateTime>),
                        provider_keys::last_test_latency_ms.eq(None::<i64>),
                        provider_keys::updated_at.eq(to_db(at)),
                        provider_keys::binding_version.eq(BINDING_KEY_ID),
                    ))
                    .execute(conn)?;
                if let Some(label) = key.label {
                    diesel::update(provider_keys::table.find(key.id))
                        .set(provider_keys::label.eq(label))
                        .execute(conn)?;
                }
                PutOutcome::Replaced
            }
            Some(_) => return Err(StoreError::NotFound),
            None => {
                let last: Option<i32> = provider_keys::table
                    .filter(provider_keys::user_id.eq(key.user_id.as_str()))
                    .filter(provider_keys::provider.eq(key.provider.as_str()))
                    .select(diesel::dsl::max(provider_keys::position))
                    .first(conn)?;
                diesel::insert_into(provider_keys::table)
                    .values((
                        provider_keys::id.eq(key.id),
                        provider_keys::user_id.eq(key.user_id.as_str()),
                        provider_keys::provider.eq(key.provider.as_str()),
                        provider_keys::sealed_key.eq(key.sealed_key),
                        provider_keys::master_key_id.eq(i64::from(key.master_key_id)),
                        provider_keys::masked_key.eq(key.masked_key.as_str()),
                        provider_keys::settings.eq(&settings),
                        provider_keys::created_at.eq(to_db(at)),
                        provider_keys::updated_at.eq(to_db(at)),
                        provider_keys::label.eq(key.label.unwrap_or_default()),
                        provider_keys::position.eq(last.map_or(0, |p| p.saturating_add(1))),
                        provider_keys::binding_version.eq(BINDING_KEY_ID),
                    ))
                    .execute(conn)?;
                PutOutcome::Created
            }
        };
        event.action = match outcome {
            PutOutcome::Created => AuditAction::KeyCreate,
            PutOutcome::Replaced => AuditAction::KeyReplace,
        };
        audit::append(conn, &event, at)?;
        Ok(outcome)
    })
}

/// The id of `user`'s default key for `provider` (the first in order).
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn default_id(
    conn: &mut DbConnection,
    user: &UserId,
    provider: ProviderKind,
) -> Result<Option<String>, StoreError> {
    Ok(live_keys!()
        .filter(provider_keys::user_id.eq(user.as_str()))
        .filter(provider_keys::provider.eq(provider.as_str()))
        .order((
            provider_keys::position.asc(),
            provider_keys::created_at.asc(),
            provider_keys::id.asc(),
        ))
        .select(provider_keys::id)
        .first::<String>(conn)
        .optional()?)
}

/// How many keys `user` has for `provider`.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn count(
    conn: &mut DbConnection,
    user: &UserId,
    provider: ProviderKind,
) -> Result<u32, StoreError> {
    let n: i64 = provider_keys::table
        .filter(provider_keys::user_id.eq(user.as_str()))
        .filter(provider_keys::provider.eq(provider.as_str()))
        .count()
        .get_result(conn)?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// `user`'s default key for `provider` (the first in order), if there is one.
///
/// # Errors
/// A [`StoreError`] from the database, or [`StoreError::Corrupt`].
pub fn get(
    conn: &mut DbConnection,
    user: &UserId,
    provider: ProviderKind,
) -> Result<Option<StoredKey>, StoreError> {
    match default_id(conn, user, provider)? {
        Some(id) => get_by_id(conn, user, &id),
        None => Ok(None),
    }
}

/// `user`'s key with id `id`, if there is one.
///
/// # Errors
/// A [`StoreError`] from the database, or [`StoreError::Corrupt`].
pub fn get_by_id(
    conn: &mut DbConnection,
    user: &UserId,
    id: &str,
) -> Result<Option<StoredKey>, StoreError> {
    live_keys!()
        .filter(provider_keys::id.eq(id))
        .filter(provider_keys::user_id.eq(user.as_str()))
        .select(KeyRow::as_select())
        .first(conn)
        .optional()?
        .map(StoredKey::try_from)
        .transpose()
}

/// All of `user`'s keys, by provider name, then in each provider's order.
///
/// # Errors
/// A [`StoreError`] from the database, or [`StoreError::Corrupt`].
pub fn list_for_user(conn: &mut DbConnection, user: &UserId) -> Result<Vec<StoredKey>, StoreError> {
    provider_keys::table
        .filter(provider_keys::user_id.eq(user.as_str()))
        .filter(diesel::dsl::not(diesel::dsl::exists(
            deleted_provider_keys::table.filter(deleted_provider_keys::id.eq(provider_keys::id)),
        )))
        .order((
            provider_keys::provider.asc(),
            provider_keys::position.asc(),
            provider_keys::created_at.asc(),
            provider_keys::id.asc(),
        ))
        .select(KeyRow::as_select())
        .load::<KeyRow>(conn)?
        .into_iter()
        .map(StoredKey::try_from)
        .collect()
}

fn remember_deleted(
    conn: &mut DbConnection,
    ids: &[String],
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    for id in ids {
        diesel::insert_into(deleted_provider_keys::table)
            .values((
                deleted_provider_keys::id.eq(id),
                deleted_provider_keys::deleted_at.eq(to_db(at)),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Deletes the keys with `ids`, remembering the ids.
pub(crate) fn delete_ids(
    conn: &mut DbConnection,
    ids: &[String],
    at: DateTime<Utc>,
) -> Result<usize, StoreError> {
    remember_deleted(conn, ids, at)?;
    Ok(diesel::delete(provider_keys::table.filter(provider_keys::id.eq_any(ids))).execute(conn)?)
}

/// Deletes every key `user` has for `provider`, appending `event` in the same
/// transaction when there was one. Returns how many keys were deleted.
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
        let ids: Vec<String> = provider_keys::table
            .filter(provider_keys::user_id.eq(user.as_str()))
            .filter(provider_keys::provider.eq(provider.as_str()))
            .select(provider_keys::id)
            .load(conn)?;
        let deleted = delete_ids(conn, &ids, at)? > 0;
        if deleted {
            audit::append(conn, event, at)?;
        }
        Ok(deleted)
    })
}

/// Deletes `user`'s key `id`, appending `event` in the same transaction when
/// there was one. Returns whether a key was deleted.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn delete_by_id(
    conn: &mut DbConnection,
    user: &UserId,
    id: &str,
    event: &NewAuditEvent,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    write_transaction(conn, |conn| {
        let ids: Vec<String> = provider_keys::table
            .filter(provider_keys::user_id.eq(user.as_str()))
            .filter(provider_keys::id.eq(id))
            .select(provider_keys::id)
            .load(conn)?;
        let deleted = delete_ids(conn, &ids, at)? > 0;
        if deleted {
            audit::append(conn, event, at)?;
        }
        Ok(deleted)
    })
}

/// Applies `changes` to `user`'s key `id`, appending `event` in the same
/// transaction. Returns the key as it is now, or `None` when there is none.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn update(
    conn: &mut DbConnection,
    user: &UserId,
    id: &str,
    changes: &KeyChanges,
    event: &NewAuditEvent,
    at: DateTime<Utc>,
) -> Result<Option<StoredKey>, StoreError> {
    write_transaction(conn, |conn| {
        let Some(_) = get_by_id(conn, user, id)? else {
            return Ok(None);
        };
        let target = provider_keys::table.find(id);
        if let Some(label) = &changes.label {
            diesel::update(target)
                .set(provider_keys::label.eq(label))
                .execute(conn)?;
        }
        if let Some(position) = changes.position {
            diesel::update(target)
                .set(provider_keys::position.eq(position))
                .execute(conn)?;
        }
        if let Some(weight) = changes.weight {
            diesel::update(target)
                .set(provider_keys::weight.eq(weight))
                .execute(conn)?;
        }
        if let Some(enabled) = changes.enabled {
            diesel::update(target)
                .set(provider_keys::enabled.eq(enabled))
                .execute(conn)?;
        }
        if let Some(settings) = &changes.settings {
            let json =
                serde_json::to_string(settings).map_err(|_| StoreError::Corrupt("key settings"))?;
            diesel::update(target)
                .set((
                    provider_keys::settings.eq(json),
                    // New settings are untested: the old result may not hold.
                    provider_keys::last_test_status.eq(None::<String>),
                    provider_keys::last_tested_at.eq(None::<NaiveDateTime>),
                    provider_keys::last_test_latency_ms.eq(None::<i64>),
                ))
                .execute(conn)?;
        }
        audit::append(conn, event, at)?;
        get_by_id(conn, user, id)
    })
}

/// Records a test result on key `id` only if it is still the key tested (its
/// sealed bytes are still `tested`): a test of an old secret must not stamp
/// its result on a secret that replaced it meanwhile. Appends `event` either
/// way. Returns whether the result was recorded.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn record_test_if_unchanged(
    conn: &mut DbConnection,
    id: &str,
    tested: &[u8],
    test: &KeyTest,
    event: &NewAuditEvent,
) -> Result<bool, StoreError> {
    let latency = test
        .latency_ms
        .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX));
    write_transaction(conn, |conn| {
        let before: Option<(Option<String>, String, String, String)> = provider_keys::table
            .find(id)
            .filter(provider_keys::sealed_key.eq(tested))
            .select((
                provider_keys::last_test_status,
                provider_keys::user_id,
                provider_keys::provider,
                provider_keys::label,
            ))
            .first(conn)
            .optional()?;
        let updated = diesel::update(provider_keys::table.find(id))
            .filter(provider_keys::sealed_key.eq(tested))
            .set((
                provider_keys::last_test_status.eq(test.status.as_str()),
                provider_keys::last_tested_at.eq(to_db(test.at)),
                provider_keys::last_test_latency_ms.eq(latency),
            ))
            .execute(conn)?
            > 0;
        // A key newly refused by its provider raises an alert (once: a
        // refused key is skipped until tested again or replaced).
        if let Some((previous, user, provider, label)) = before
            && matches!(test.status, KeyStatus::Invalid | KeyStatus::NoCredit)
            && previous.as_deref() != Some(test.status.as_str())
        {
            let user = UserId::parse(user).map_err(|_| StoreError::Corrupt("key user id"))?;
            let body = serde_json::json!({
                "event": "key.refused",
                "user_id": user.as_str(),
                "provider": provider,
                "key_id": id,
                "label": label,
                "status": test.status.as_str(),
            });
            crate::alerts::enqueue(conn, "key.refused", Some(&user), &body, test.at)?;
        }
        audit::append(conn, event, test.at)?;
        Ok(updated)
    })
}

/// Every (user, provider) pair with at least one enabled key: who a
/// provider-wide notice (a model's retirement) concerns.
///
/// # Errors
/// A [`StoreError`] from the database, or [`StoreError::Corrupt`].
pub fn users_by_provider(
    conn: &mut DbConnection,
) -> Result<Vec<(UserId, ProviderKind)>, StoreError> {
    provider_keys::table
        .filter(provider_keys::enabled.eq(true))
        .select((provider_keys::user_id, provider_keys::provider))
        .distinct()
        .load::<(String, String)>(conn)?
        .into_iter()
        .map(|(user, provider)| {
            Ok((
                UserId::parse(user).map_err(|_| StoreError::Corrupt("key user id"))?,
                provider
                    .parse()
                    .map_err(|_| StoreError::Corrupt("key provider"))?,
            ))
        })
        .collect()
}

/// Up to `limit` keys still sealed with the legacy binding (no key id),
/// after row `after`: the work list of the start-up upgrade that binds each
/// sealed key to its id.
///
/// # Errors
/// A [`StoreError`] from the database, or [`StoreError::Corrupt`].
pub fn legacy_bound_page(
    conn: &mut DbConnection,
    after: &str,
    limit: i64,
) -> Result<Vec<StoredKey>, StoreError> {
    provider_keys::table
        .filter(provider_keys::binding_version.eq(BINDING_LEGACY))
        .filter(provider_keys::id.gt(after))
        .order(provider_keys::id.asc())
        .limit(limit)
        .select(KeyRow::as_select())
        .load::<KeyRow>(conn)?
        .into_iter()
        .map(StoredKey::try_from)
        .collect()
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
/// meanwhile. The new bytes must be bound to the key's id. Appends `event` when it swapped. Returns whether it swapped.
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
                provider_keys::binding_version.eq(BINDING_KEY_ID),
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
