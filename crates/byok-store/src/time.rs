//! Timestamps as the store keeps them.

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};

/// The current time at the precision both backends keep (microseconds), so a
/// value reads back exactly as it was written.
#[must_use]
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

pub(crate) fn to_db(at: DateTime<Utc>) -> NaiveDateTime {
    at.naive_utc()
}

pub(crate) fn from_db(at: NaiveDateTime) -> DateTime<Utc> {
    at.and_utc()
}
