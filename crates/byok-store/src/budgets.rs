//! Budgets on a user's own spend, and the reservations that make hard
//! budgets hold under concurrency and across replicas.
//!
//! A budget covers a calendar day or month in its time zone, for all of a
//! user's providers or one. Its spend per period lives in `budget_spend`:
//! `spent` (settled, exact) and `reserved` (the worst case of requests in
//! flight). A request reserves with one conditional `UPDATE … WHERE spent +
//! reserved <= limit - amount`: atomic on PostgreSQL (the row is locked and
//! the condition re-checked) and on SQLite (one writer), so concurrent
//! requests — on any number of replicas — cannot overshoot a hard budget. The
//! usage record that ends the request settles its reservation to the exact
//! cost in the same transaction ([`settle`]); reservations of requests that
//! never end expire ([`expire`]).

use std::str::FromStr;

use byok_core::{ProviderKind, UserId};
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeZone, Utc};
use diesel::prelude::*;

use crate::audit::{self, NewAuditEvent};
use crate::connection::write_transaction;
use crate::schema::{budget_reservations, budget_spend, budgets, usage_records};
use crate::time::{from_db, to_db};
use crate::{DbConnection, StoreError};

/// A budget's period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// A calendar day.
    Day,
    /// A calendar month.
    Month,
}

impl Period {
    /// The stored name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Month => "month",
        }
    }

    /// The period containing `at` in `zone`: its start and its end (UTC).
    #[must_use]
    pub fn bounds(self, zone: chrono_tz::Tz, at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let local = at.with_timezone(&zone).date_naive();
        let (first, next) = match self {
            Self::Day => (local, local.succ_opt().unwrap_or(local)),
            Self::Month => {
                let first = local.with_day(1).unwrap_or(local);
                let next = if first.month() == 12 {
                    NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
                };
                (first, next.unwrap_or(first))
            }
        };
        (midnight(zone, first), midnight(zone, next))
    }
}

/// The first instant of `date` in `zone` (midnight, or the first moment
/// after a daylight-saving gap at midnight).
fn midnight(zone: chrono_tz::Tz, date: NaiveDate) -> DateTime<Utc> {
    let mut time = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    for _ in 0..4 {
        if let Some(at) = zone.from_local_datetime(&time).earliest() {
            return at.with_timezone(&Utc);
        }
        time += chrono::Duration::minutes(30);
    }
    Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).unwrap_or_default())
}

impl FromStr for Period {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "day" => Ok(Self::Day),
            "month" => Ok(Self::Month),
            _ => Err(StoreError::Corrupt("budget period")),
        }
    }
}

/// A stored budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// Its id (a UUID).
    pub id: String,
    /// Whose spend it caps.
    pub user_id: UserId,
    /// Per day or per month.
    pub period: Period,
    /// One provider's spend, or (`None`) all of the user's.
    pub provider: Option<ProviderKind>,
    /// One token's spend, or (`None`) all of the user's tokens'.
    pub token_id: Option<String>,
    /// The limit in picodollars.
    pub limit_picodollars: i64,
    /// Hard (refuse) or soft (flag).
    pub hard: bool,
    /// The IANA time zone its days and months follow.
    pub time_zone: chrono_tz::Tz,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
}

impl Budget {
    /// Whether it covers a request made with token `token` and answered by
    /// `provider`.
    #[must_use]
    pub fn covers(&self, provider: ProviderKind, token: Option<&str>) -> bool {
        self.provider.is_none_or(|p| p == provider)
            && self
                .token_id
                .as_deref()
                .is_none_or(|mine| Some(mine) == token)
    }

    /// Its current period at `at`.
    #[must_use]
    pub fn bounds(&self, at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        self.period.bounds(self.time_zone, at)
    }
}

/// A budget to create.
#[derive(Debug, Clone)]
pub struct NewBudget<'a> {
    /// Whose.
    pub user_id: &'a UserId,
    /// Per day or month.
    pub period: Period,
    /// One provider, or all.
    pub provider: Option<ProviderKind>,
    /// One token, or all.
    pub token_id: Option<&'a str>,
    /// The limit in picodollars.
    pub limit_picodollars: i64,
    /// Hard or soft.
    pub hard: bool,
    /// The time zone.
    pub time_zone: chrono_tz::Tz,
}

/// A budget and where its current period stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetState {
    /// The budget.
    pub budget: Budget,
    /// When the period began and when it ends (the reset).
    pub period: (DateTime<Utc>, DateTime<Utc>),
    /// Settled spend in the period, in picodollars.
    pub spent: i64,
    /// Reserved by requests in flight, in picodollars.
    pub reserved: i64,
}

/// What [`reserve`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// Every hard budget covering the request had room; the reservation
    /// (possibly covering nothing) is held under this id.
    Held {
        /// Settle or release it with this id.
        id: String,
        /// Soft budgets the request takes over their limit (for warnings).
        over_soft: Vec<BudgetState>,
    },
    /// This hard budget has no room for the request; nothing is reserved.
    Refused(BudgetState),
}

type BudgetRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    bool,
    String,
    NaiveDateTime,
    NaiveDateTime,
);

fn from_row(row: BudgetRow) -> Result<Budget, StoreError> {
    let (id, user, period, provider, token, limit, hard, zone, created, updated) = row;
    Ok(Budget {
        id,
        user_id: UserId::parse(user).map_err(|_| StoreError::Corrupt("budget user id"))?,
        period: period.parse()?,
        provider: if provider.is_empty() {
            None
        } else {
            Some(
                provider
                    .parse()
                    .map_err(|_| StoreError::Corrupt("budget provider"))?,
            )
        },
        token_id: (!token.is_empty()).then_some(token),
        limit_picodollars: limit,
        hard,
        time_zone: zone
            .parse()
            .map_err(|_| StoreError::Corrupt("budget time zone"))?,
        created_at: from_db(created),
        updated_at: from_db(updated),
    })
}

const COLUMNS: (
    budgets::id,
    budgets::user_id,
    budgets::period,
    budgets::provider,
    budgets::token_id,
    budgets::limit_picodollars,
    budgets::hard,
    budgets::time_zone,
    budgets::created_at,
    budgets::updated_at,
) = (
    budgets::id,
    budgets::user_id,
    budgets::period,
    budgets::provider,
    budgets::token_id,
    budgets::limit_picodollars,
    budgets::hard,
    budgets::time_zone,
    budgets::created_at,
    budgets::updated_at,
);

/// `user`'s budgets, by period and provider.
///
/// # Errors
/// A [`StoreError`] from the database, or [`StoreError::Corrupt`].
pub fn list_for_user(conn: &mut DbConnection, user: &UserId) -> Result<Vec<Budget>, StoreError> {
    budgets::table
        .filter(budgets::user_id.eq(user.as_str()))
        .order((budgets::period.asc(), budgets::provider.asc()))
        .select(COLUMNS)
        .load::<BudgetRow>(conn)?
        .into_iter()
        .map(from_row)
        .collect()
}

/// Creates `budget`, recording `event` in the same transaction; returns it.
///
/// # Errors
/// [`StoreError::Conflict`] when the user has a budget for this period and
/// provider, [`StoreError::NotFound`] when the user does not exist.
pub fn create(
    conn: &mut DbConnection,
    budget: &NewBudget<'_>,
    event: &NewAuditEvent,
    at: DateTime<Utc>,
) -> Result<Budget, StoreError> {
    write_transaction(conn, |conn| {
        if !crate::users::lock(conn, budget.user_id)? {
            return Err(StoreError::NotFound);
        }
        let id = uuid::Uuid::new_v4().to_string();
        diesel::insert_into(budgets::table)
            .values((
                budgets::id.eq(&id),
                budgets::user_id.eq(budget.user_id.as_str()),
                budgets::period.eq(budget.period.as_str()),
                budgets::provider.eq(budget.provider.map_or("", ProviderKind::as_str)),
                budgets::token_id.eq(budget.token_id.unwrap_or_default()),
                budgets::limit_picodollars.eq(budget.limit_picodollars),
                budgets::hard.eq(budget.hard),
                budgets::time_zone.eq(budget.time_zone.name()),
                budgets::created_at.eq(to_db(at)),
                budgets::updated_at.eq(to_db(at)),
            ))
            .execute(conn)?;
        audit::append(conn, event, at)?;
        get(conn, budget.user_id, &id)?.ok_or(StoreError::NotFound)
    })
}

/// `user`'s budget `id`.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn get(conn: &mut DbConnection, user: &UserId, id: &str) -> Result<Option<Budget>, StoreError> {
    budgets::table
        .filter(budgets::id.eq(id))
        .filter(budgets::user_id.eq(user.as_str()))
        .select(COLUMNS)
        .first::<BudgetRow>(conn)
        .optional()?
        .map(from_row)
        .transpose()
}

/// Changes `user`'s budget `id`: its limit, kind and time zone. A new time
/// zone starts a new period row; the period's spend is recounted from usage.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn update(
    conn: &mut DbConnection,
    user: &UserId,
    id: &str,
    (limit, hard, zone): (i64, bool, chrono_tz::Tz),
    event: &NewAuditEvent,
    at: DateTime<Utc>,
) -> Result<Option<Budget>, StoreError> {
    write_transaction(conn, |conn| {
        let updated = diesel::update(
            budgets::table
                .filter(budgets::id.eq(id))
                .filter(budgets::user_id.eq(user.as_str())),
        )
        .set((
            budgets::limit_picodollars.eq(limit),
            budgets::hard.eq(hard),
            budgets::time_zone.eq(zone.name()),
            budgets::updated_at.eq(to_db(at)),
        ))
        .execute(conn)?;
        if updated == 0 {
            return Ok(None);
        }
        audit::append(conn, event, at)?;
        get(conn, user, id)
    })
}

/// Deletes `user`'s budget `id`. Returns whether it existed.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn delete(
    conn: &mut DbConnection,
    user: &UserId,
    id: &str,
    event: &NewAuditEvent,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    write_transaction(conn, |conn| {
        diesel::delete(budget_reservations::table.filter(budget_reservations::budget_id.eq(id)))
            .execute(conn)?;
        diesel::delete(budget_spend::table.filter(budget_spend::budget_id.eq(id))).execute(conn)?;
        let deleted = diesel::delete(
            budgets::table
                .filter(budgets::id.eq(id))
                .filter(budgets::user_id.eq(user.as_str())),
        )
        .execute(conn)?
            > 0;
        if deleted {
            audit::append(conn, event, at)?;
        }
        Ok(deleted)
    })
}

/// The spend row of `budget`'s period starting `start`, created (from the
/// period's usage so far) if it does not exist: a budget set mid-month
/// counts what was already spent that month.
fn ensure_spend(
    conn: &mut DbConnection,
    budget: &Budget,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
) -> Result<(i64, i64), StoreError> {
    let find = |conn: &mut DbConnection| {
        budget_spend::table
            .find((&budget.id, to_db(start)))
            .select((
                budget_spend::spent_picodollars,
                budget_spend::reserved_picodollars,
            ))
            .first::<(i64, i64)>(conn)
            .optional()
    };
    if let Some(row) = find(conn)? {
        return Ok(row);
    }
    let mut query = usage_records::table
        .filter(usage_records::user_id.eq(budget.user_id.as_str()))
        .filter(usage_records::created_at.ge(to_db(start)))
        .filter(usage_records::created_at.lt(to_db(end)))
        .select((
            usage_records::cost_picodollars,
            usage_records::cost_micro_usd,
        ))
        .into_boxed();
    if let Some(provider) = budget.provider {
        query = query.filter(usage_records::provider.eq(provider.as_str()));
    }
    if let Some(token) = &budget.token_id {
        query = query.filter(usage_records::token_id.eq(token));
    }
    let spent: i64 = query
        .load::<(Option<i64>, Option<i64>)>(conn)?
        .into_iter()
        .filter_map(|(pico, micro)| pico.or(micro.map(|m| m.saturating_mul(1_000_000))))
        .fold(0i64, i64::saturating_add);
    // Another request (or replica) may create the row first: keep theirs.
    let insert = diesel::insert_into(budget_spend::table)
        .values((
            budget_spend::budget_id.eq(&budget.id),
            budget_spend::period_start.eq(to_db(start)),
            budget_spend::spent_picodollars.eq(spent),
            budget_spend::reserved_picodollars.eq(0i64),
        ))
        .on_conflict_do_nothing();
    match conn {
        #[cfg(feature = "postgres")]
        DbConnection::Postgres(c) => insert.execute(c)?,
        #[cfg(feature = "sqlite")]
        DbConnection::Sqlite(c) => insert.execute(c)?,
    };
    find(conn)?.ok_or(StoreError::Corrupt("budget spend"))
}

/// Where each of `user`'s budgets covering `provider` (all of them when
/// `None`) stands at `at`.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn states(
    conn: &mut DbConnection,
    user: &UserId,
    provider: Option<ProviderKind>,
    at: DateTime<Utc>,
) -> Result<Vec<BudgetState>, StoreError> {
    write_transaction(conn, |conn| {
        list_for_user(conn, user)?
            .into_iter()
            .filter(|b| provider.is_none_or(|p| b.provider.is_none_or(|mine| mine == p)))
            .map(|budget| {
                let period = budget.bounds(at);
                let (spent, reserved) = ensure_spend(conn, &budget, period)?;
                Ok(BudgetState {
                    budget,
                    period,
                    spent,
                    reserved,
                })
            })
            .collect()
    })
}

/// Reserves `amount` picodollars against every hard budget of `user` that
/// covers `provider` and `token`, all or nothing, until `expires_at`.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn reserve(
    conn: &mut DbConnection,
    (user, token): (&UserId, Option<&str>),
    provider: ProviderKind,
    amount: i64,
    at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<Reserved, StoreError> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    write_transaction(conn, |conn| {
        let mut held: Vec<(String, NaiveDateTime)> = Vec::new();
        let mut over_soft = Vec::new();
        for budget in list_for_user(conn, user)?
            .into_iter()
            .filter(|b| b.covers(provider, token))
        {
            let period = budget.bounds(at);
            let (spent, reserved) = ensure_spend(conn, &budget, period)?;
            let start = to_db(period.0);
            if !budget.hard {
                if spent.saturating_add(reserved).saturating_add(amount) > budget.limit_picodollars
                {
                    over_soft.push(BudgetState {
                        budget,
                        period,
                        spent,
                        reserved,
                    });
                }
                continue;
            }
            let room = budget.limit_picodollars.saturating_sub(amount);
            let reserved_rows = diesel::update(
                budget_spend::table
                    .filter(budget_spend::budget_id.eq(&budget.id))
                    .filter(budget_spend::period_start.eq(start))
                    .filter(
                        (budget_spend::spent_picodollars + budget_spend::reserved_picodollars)
                            .le(room),
                    ),
            )
            .set(budget_spend::reserved_picodollars.eq(budget_spend::reserved_picodollars + amount))
            .execute(conn)?;
            if reserved_rows == 0 {
                // Undo what this request reserved on other budgets.
                for (budget_id, start) in &held {
                    diesel::update(budget_spend::table.find((budget_id, *start)))
                        .set(
                            budget_spend::reserved_picodollars
                                .eq(budget_spend::reserved_picodollars - amount),
                        )
                        .execute(conn)?;
                }
                diesel::delete(budget_reservations::table.filter(budget_reservations::id.eq(&id)))
                    .execute(conn)?;
                let (spent, reserved) = ensure_spend(conn, &budget, period)?;
                return Ok(Reserved::Refused(BudgetState {
                    budget,
                    period,
                    spent,
                    reserved,
                }));
            }
            diesel::insert_into(budget_reservations::table)
                .values((
                    budget_reservations::id.eq(&id),
                    budget_reservations::budget_id.eq(&budget.id),
                    budget_reservations::period_start.eq(start),
                    budget_reservations::amount_picodollars.eq(amount),
                    budget_reservations::expires_at.eq(to_db(expires_at)),
                ))
                .execute(conn)?;
            held.push((budget.id, start));
        }
        Ok(Reserved::Held {
            id: id.clone(),
            over_soft,
        })
    })
}

/// Gives back what reservation `id` holds (its request got no answer).
/// Releasing twice, or after it expired, does nothing.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn release(conn: &mut DbConnection, id: &str) -> Result<(), StoreError> {
    write_transaction(conn, |conn| release_in(conn, id).map(|_| ()))
}

/// Releases reservation `id` inside a transaction; returns the budgets and
/// periods it covered.
fn release_in(
    conn: &mut DbConnection,
    id: &str,
) -> Result<Vec<(String, NaiveDateTime)>, StoreError> {
    let rows: Vec<(String, NaiveDateTime, i64)> = budget_reservations::table
        .filter(budget_reservations::id.eq(id))
        .select((
            budget_reservations::budget_id,
            budget_reservations::period_start,
            budget_reservations::amount_picodollars,
        ))
        .load(conn)?;
    let mut released = Vec::new();
    for (budget_id, start, amount) in rows {
        let removed =
            diesel::delete(budget_reservations::table.find((id, &budget_id))).execute(conn)?;
        if removed > 0 {
            diesel::update(budget_spend::table.find((&budget_id, start)))
                .set(
                    budget_spend::reserved_picodollars
                        .eq(budget_spend::reserved_picodollars - amount),
                )
                .execute(conn)?;
            released.push((budget_id, start));
        }
    }
    Ok(released)
}

/// Settles a finished request of `user` answered by `provider` at `at`:
/// releases its reservation (if any) and adds its exact `cost` to every
/// budget covering it — the period it reserved in, or for budgets it held
/// nothing on, the period containing `at`. Runs inside the caller's
/// transaction (the usage record's), so the charge and the record are
/// written together.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn settle(
    conn: &mut DbConnection,
    (user, token): (&UserId, Option<&str>),
    provider: ProviderKind,
    reservation: Option<&str>,
    cost: Option<i64>,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let released = match reservation {
        Some(id) => release_in(conn, id)?,
        None => Vec::new(),
    };
    let Some(cost) = cost.filter(|c| *c > 0) else {
        return Ok(());
    };
    for budget in list_for_user(conn, user)?
        .into_iter()
        .filter(|b| b.covers(provider, token))
    {
        let start = if let Some((_, start)) = released.iter().find(|(id, _)| *id == budget.id) {
            *start
        } else {
            let period = budget.bounds(at);
            ensure_spend(conn, &budget, period)?;
            to_db(period.0)
        };
        let before: i64 = budget_spend::table
            .find((&budget.id, start))
            .select(budget_spend::spent_picodollars)
            .first(conn)?;
        diesel::update(budget_spend::table.find((&budget.id, start)))
            .set(budget_spend::spent_picodollars.eq(budget_spend::spent_picodollars + cost))
            .execute(conn)?;
        let after = before.saturating_add(cost);
        if let Some(percent) = crossed(before, after, budget.limit_picodollars) {
            let (_, resets) = budget.bounds(from_db(start));
            let body = serde_json::json!({
                "event": "budget.crossed",
                "user_id": user.as_str(),
                "budget_id": budget.id,
                "period": budget.period.as_str(),
                "provider": budget.provider.map(ProviderKind::as_str),
                "token_id": budget.token_id,
                "hard": budget.hard,
                "percent": percent,
                "limit_usd": usd(budget.limit_picodollars),
                "spent_usd": usd(after),
                "resets_at": resets,
            });
            crate::alerts::enqueue(conn, "budget.crossed", Some(user), &body, at)?;
        }
    }
    Ok(())
}

/// The highest alert threshold (50, 80, 100 %) that spend crossed going
/// from `before` to `after`.
fn crossed(before: i64, after: i64, limit: i64) -> Option<u32> {
    let limit = i128::from(limit.max(1));
    let percent = |v: i64| i128::from(v) * 100 / limit;
    [100, 80, 50]
        .into_iter()
        .find(|&t| percent(before) < i128::from(t) && percent(after) >= i128::from(t))
}

/// Picodollars as a plain decimal string of dollars.
fn usd(pico: i64) -> String {
    let pico = pico.max(0);
    let (whole, fraction) = (pico / 1_000_000_000_000, pico % 1_000_000_000_000);
    let fraction = format!("{fraction:012}");
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        whole.to_string()
    } else {
        format!("{whole}.{fraction}")
    }
}

/// Releases every reservation that expired by `now` (its request never
/// settled: a crash, a lost record). Returns how many were released.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn expire(conn: &mut DbConnection, now: DateTime<Utc>) -> Result<usize, StoreError> {
    write_transaction(conn, |conn| {
        let ids: Vec<String> = budget_reservations::table
            .filter(budget_reservations::expires_at.le(to_db(now)))
            .select(budget_reservations::id)
            .distinct()
            .limit(1000)
            .load(conn)?;
        for id in &ids {
            release_in(conn, id)?;
        }
        Ok(ids.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_fire_once_each() {
        assert_eq!(crossed(0, 40, 100), None);
        assert_eq!(crossed(40, 55, 100), Some(50));
        assert_eq!(crossed(55, 79, 100), None);
        assert_eq!(crossed(79, 120, 100), Some(100), "the highest crossed");
        assert_eq!(crossed(100, 130, 100), None, "already over");
        assert_eq!(usd(1_500_000_000_000), "1.5");
    }

    #[test]
    fn periods_follow_the_time_zone_and_daylight_saving() {
        let at = Utc.with_ymd_and_hms(2026, 3, 31, 23, 30, 0).unwrap();
        let (start, end) = Period::Month.bounds(chrono_tz::UTC, at);
        assert_eq!(start, Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap());
        assert_eq!(end, Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 0).unwrap());
        // 23:30 UTC on 31 March is already April in Paris (UTC+2 since 29 March).
        let (start, end) = Period::Month.bounds(chrono_tz::Europe::Paris, at);
        assert_eq!(start, Utc.with_ymd_and_hms(2026, 3, 31, 22, 0, 0).unwrap());
        assert_eq!(end, Utc.with_ymd_and_hms(2026, 4, 30, 22, 0, 0).unwrap());
        let (start, end) = Period::Day.bounds(chrono_tz::America::New_York, at);
        assert_eq!(start, Utc.with_ymd_and_hms(2026, 3, 31, 4, 0, 0).unwrap());
        assert_eq!(end, Utc.with_ymd_and_hms(2026, 4, 1, 4, 0, 0).unwrap());
        // December rolls into January.
        let december = Utc.with_ymd_and_hms(2026, 12, 15, 0, 0, 0).unwrap();
        assert_eq!(
            Period::Month.bounds(chrono_tz::UTC, december).1,
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()
        );
        // A zone whose midnight is skipped by daylight saving (Havana, March).
        let havana = Utc.with_ymd_and_hms(2026, 3, 8, 12, 0, 0).unwrap();
        let (start, _) = Period::Day.bounds(chrono_tz::America::Havana, havana);
        assert!(start <= havana);
    }
}
