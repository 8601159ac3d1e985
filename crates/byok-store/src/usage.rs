//! Usage records: one per answered gateway request. The gateway (a later
//! part of byok) writes them in batches from a background writer.

use byok_core::{CostSource, ProviderKind, UserId};
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use crate::connection::write_transaction;
use crate::schema::usage_records;
use crate::time::{from_db, to_db};
use crate::{DbConnection, StoreError};

/// One request's usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    /// Whose request it was.
    pub user_id: UserId,
    /// The provider that answered.
    pub provider: ProviderKind,
    /// The model that answered.
    pub model: String,
    /// The task the request was routed for (`general`, `code`, ...).
    pub task: String,
    /// Input tokens, including cached ones.
    pub input_tokens: i64,
    /// Input tokens served from the provider's cache.
    pub cached_input_tokens: i64,
    /// Input tokens written to the provider's cache.
    pub cache_write_tokens: i64,
    /// Of those, one-hour cache writes.
    pub cache_write_1h_tokens: i64,
    /// Output tokens, including reasoning ones.
    pub output_tokens: i64,
    /// Output tokens spent on reasoning.
    pub reasoning_tokens: i64,
    /// The cost in micro-dollars (rounded), or `None` when the model is unpriced.
    pub cost_micro_usd: Option<i64>,
    /// The exact cost in picodollars (1e-12 USD), or `None` when unpriced or
    /// recorded before this column existed. Sums use this when present.
    pub cost_picodollars: Option<i64>,
    /// How the cost was obtained.
    pub cost_source: CostSource,
    /// The door the request came through (`chat`, `messages`, `responses`, `embeddings`).
    pub door: String,
    /// The record's own key, when it may be written twice (an `incomplete`
    /// record first, the final one later): a record with the key of a stored
    /// one replaces it.
    pub record_key: Option<String>,
    /// The public id of the token the request came with (a user's scoped
    /// token, or the service token acting for the user).
    pub token_id: Option<String>,
    /// The budget reservation this record settles (its request's), if any:
    /// writing the record settles the user's budgets in the same transaction.
    pub reservation_id: Option<String>,
    /// Whether the user had budgets when the request began: only then are
    /// budgets settled with this record (not stored).
    pub budgeted: bool,
    /// Rate-limit subjects (`user:<id>`, `token:<id>`) and the minute (unix
    /// seconds) whose tokens-per-minute count this record's tokens join, in
    /// the same transaction (not stored).
    pub rate_subjects: Vec<(String, i64)>,
    /// How many providers were tried.
    pub attempts: i32,
    /// End-to-end latency.
    pub latency_ms: i64,
    /// `success`, `partial`, ...
    pub outcome: String,
    /// The request's id.
    pub request_id: Option<String>,
    /// When the request finished (UTC).
    pub created_at: DateTime<Utc>,
}

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = usage_records, treat_none_as_null = true)]
struct UsageRow {
    record_key: Option<String>,
    token_id: Option<String>,
    reservation_id: Option<String>,
    cost_source: String,
    cache_write_tokens: i64,
    cache_write_1h_tokens: i64,
    door: String,
    user_id: String,
    provider: String,
    model: String,
    task: String,
    input_tokens: i64,
    cached_input_tokens: i64,
    output_tokens: i64,
    reasoning_tokens: i64,
    cost_micro_usd: Option<i64>,
    cost_picodollars: Option<i64>,
    attempts: i32,
    latency_ms: i64,
    outcome: String,
    request_id: Option<String>,
    created_at: NaiveDateTime,
}

/// Appends `records` in one transaction: all or none.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn insert_batch(conn: &mut DbConnection, records: &[UsageRecord]) -> Result<(), StoreError> {
    write_transaction(conn, |conn| {
        let mut fresh = Vec::with_capacity(records.len());
        for record in records {
            let row = UsageRow::from(record);
            if let Some(key) = &record.record_key {
                let replaced =
                    diesel::update(usage_records::table.filter(usage_records::record_key.eq(key)))
                        .set(&row)
                        .execute(conn)?;
                if replaced > 0 {
                    continue;
                }
            }
            fresh.push(row);
        }
        // One multi-row INSERT for the batch.
        if !fresh.is_empty() {
            match conn {
                #[cfg(feature = "postgres")]
                DbConnection::Postgres(c) => diesel::insert_into(usage_records::table)
                    .values(&fresh)
                    .execute(c)?,
                #[cfg(feature = "sqlite")]
                DbConnection::Sqlite(c) => diesel::insert_into(usage_records::table)
                    .values(&fresh)
                    .execute(c)?,
            };
        }
        for record in records {
            settle_budgets(conn, record)?;
            count_tokens(conn, record)?;
        }
        Ok(())
    })
}

/// Adds `record`'s tokens to its rate-limit subjects' current minute.
fn count_tokens(conn: &mut DbConnection, record: &UsageRecord) -> Result<(), StoreError> {
    let tokens = record.input_tokens.saturating_add(record.output_tokens);
    if tokens == 0 {
        return Ok(());
    }
    for (subject, window) in &record.rate_subjects {
        crate::rates::add_tokens(conn, subject, *window, tokens)?;
    }
    Ok(())
}

/// Settles the budgets of `record`'s user with its cost (and releases its
/// reservation), in the record's own transaction.
fn settle_budgets(conn: &mut DbConnection, record: &UsageRecord) -> Result<(), StoreError> {
    let cost = record
        .cost_picodollars
        .or(record.cost_micro_usd.map(|m| m.saturating_mul(1_000_000)));
    if !record.budgeted && record.reservation_id.is_none() {
        return Ok(());
    }
    crate::budgets::settle(
        conn,
        (&record.user_id, record.token_id.as_deref()),
        record.provider,
        record.reservation_id.as_deref(),
        cost,
        record.created_at,
    )
}

/// Removes the record with `key` (an attempt that ended without an answer).
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn discard(conn: &mut DbConnection, key: &str) -> Result<(), StoreError> {
    diesel::delete(usage_records::table.filter(usage_records::record_key.eq(key))).execute(conn)?;
    Ok(())
}

impl From<&UsageRecord> for UsageRow {
    fn from(record: &UsageRecord) -> Self {
        UsageRow {
            record_key: record.record_key.clone(),
            token_id: record.token_id.clone(),
            reservation_id: record.reservation_id.clone(),
            cost_source: record.cost_source.as_str().to_owned(),
            cache_write_tokens: record.cache_write_tokens,
            cache_write_1h_tokens: record.cache_write_1h_tokens,
            door: record.door.clone(),
            user_id: record.user_id.as_str().to_owned(),
            provider: record.provider.as_str().to_owned(),
            model: record.model.clone(),
            task: record.task.clone(),
            input_tokens: record.input_tokens,
            cached_input_tokens: record.cached_input_tokens,
            output_tokens: record.output_tokens,
            reasoning_tokens: record.reasoning_tokens,
            cost_micro_usd: record.cost_micro_usd,
            cost_picodollars: record.cost_picodollars,
            attempts: record.attempts,
            latency_ms: record.latency_ms,
            outcome: record.outcome.clone(),
            request_id: record.request_id.clone(),
            created_at: to_db(record.created_at),
        }
    }
}

/// `user`'s records with `from <= created_at < to`, oldest first.
///
/// # Errors
/// A [`StoreError`] from the database, or [`StoreError::Corrupt`].
pub fn list_for_user(
    conn: &mut DbConnection,
    user: &UserId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<UsageRecord>, StoreError> {
    let from = since_creation(conn, user, from)?;
    usage_records::table
        .filter(usage_records::user_id.eq(user.as_str()))
        .filter(usage_records::created_at.ge(to_db(from)))
        .filter(usage_records::created_at.lt(to_db(to)))
        .order((usage_records::created_at.asc(), usage_records::id.asc()))
        .select(UsageRow::as_select())
        .load(conn)?
        .into_iter()
        .map(UsageRow::into_record)
        .collect()
}

/// One page of `user`'s records with `from <= created_at < to`, newest
/// first, each with its id; `before` (an id from an earlier page) continues
/// after it. At most `limit` records.
///
/// # Errors
/// As [`list_for_user`].
pub fn page_for_user(
    conn: &mut DbConnection,
    user: &UserId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<(i64, UsageRecord)>, StoreError> {
    let from = since_creation(conn, user, from)?;
    let mut query = usage_records::table
        .filter(usage_records::user_id.eq(user.as_str()))
        .filter(usage_records::created_at.ge(to_db(from)))
        .filter(usage_records::created_at.lt(to_db(to)))
        .into_boxed();
    if let Some(before) = before {
        query = query.filter(usage_records::id.lt(before));
    }
    query
        .order(usage_records::id.desc())
        .limit(limit)
        .select((usage_records::id, UsageRow::as_select()))
        .load::<(i64, UsageRow)>(conn)?
        .into_iter()
        .map(|(id, row)| Ok((id, row.into_record()?)))
        .collect()
}

/// One token's usage: requests, and their cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Requests recorded.
    pub requests: u64,
    /// The exact cost of the priced ones, in picodollars.
    pub picodollars: i128,
    /// Requests with no known cost (unpriced models).
    pub unpriced: u64,
}

/// Usage per token of `user` (records since the user's creation that name
/// a token).
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn totals_by_token(
    conn: &mut DbConnection,
    user: &UserId,
) -> Result<std::collections::BTreeMap<String, TokenUsage>, StoreError> {
    let since = since_creation(conn, user, DateTime::<Utc>::UNIX_EPOCH)?;
    let rows = usage_records::table
        .filter(usage_records::user_id.eq(user.as_str()))
        .filter(usage_records::created_at.ge(to_db(since)))
        .filter(usage_records::token_id.is_not_null())
        .select((
            usage_records::token_id,
            usage_records::cost_picodollars,
            usage_records::cost_micro_usd,
        ))
        .load::<(Option<String>, Option<i64>, Option<i64>)>(conn)?;
    let mut totals = std::collections::BTreeMap::<String, TokenUsage>::new();
    for (token, pico, micro) in rows {
        let Some(token) = token else { continue };
        let entry = totals.entry(token).or_default();
        entry.requests += 1;
        match pico
            .map(i128::from)
            .or(micro.map(|m| i128::from(m) * 1_000_000))
        {
            Some(cost) => entry.picodollars += cost,
            None => entry.unpriced += 1,
        }
    }
    Ok(totals)
}

/// `from`, or the user's creation when later: a re-created user id never
/// reads its predecessor's usage.
fn since_creation(
    conn: &mut DbConnection,
    user: &UserId,
    from: DateTime<Utc>,
) -> Result<DateTime<Utc>, StoreError> {
    Ok(match crate::users::find(conn, user)? {
        Some(found) if found.created_at > from => found.created_at,
        _ => from,
    })
}

impl UsageRow {
    fn into_record(self) -> Result<UsageRecord, StoreError> {
        let row = self;
        Ok(UsageRecord {
            user_id: UserId::parse(row.user_id)
                .map_err(|_| StoreError::Corrupt("usage user id"))?,
            provider: row
                .provider
                .parse()
                .map_err(|_| StoreError::Corrupt("usage provider"))?,
            model: row.model,
            task: row.task,
            input_tokens: row.input_tokens,
            cached_input_tokens: row.cached_input_tokens,
            cache_write_tokens: row.cache_write_tokens,
            cache_write_1h_tokens: row.cache_write_1h_tokens,
            output_tokens: row.output_tokens,
            reasoning_tokens: row.reasoning_tokens,
            cost_micro_usd: row.cost_micro_usd,
            cost_picodollars: row.cost_picodollars,
            cost_source: CostSource::parse(&row.cost_source)
                .ok_or(StoreError::Corrupt("usage cost source"))?,
            door: row.door,
            record_key: row.record_key,
            token_id: row.token_id,
            reservation_id: row.reservation_id,
            rate_subjects: Vec::new(),
            budgeted: false,
            attempts: row.attempts,
            latency_ms: row.latency_ms,
            outcome: row.outcome,
            request_id: row.request_id,
            created_at: from_db(row.created_at),
        })
    }
}
