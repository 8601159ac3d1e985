//! Rate limits on the gateway, per user and per token: requests per minute
//! and tokens per minute (counted in the store, so every replica on
//! PostgreSQL shares them), and concurrent streams (per server).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use byok_store::Store;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Limits on one subject (a user, or a token). `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// Gateway requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// Input and output tokens per minute (a request is admitted while the
    /// minute's count is under the limit; its tokens count when it ends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    /// Streams open at once (per server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrent_streams: Option<u32>,
}

impl RateLimits {
    /// These limits, each replaced by `over`'s where it sets one.
    #[must_use]
    pub fn overridden_by(self, over: Self) -> Self {
        Self {
            requests_per_minute: over.requests_per_minute.or(self.requests_per_minute),
            tokens_per_minute: over.tokens_per_minute.or(self.tokens_per_minute),
            concurrent_streams: over.concurrent_streams.or(self.concurrent_streams),
        }
    }

    /// Whether nothing is limited.
    #[must_use]
    pub fn is_unlimited(&self) -> bool {
        *self == Self::default()
    }

    /// A token's own limits.
    #[must_use]
    pub fn of_token(scope: &byok_store::tokens::TokenScope) -> Self {
        Self {
            requests_per_minute: scope.requests_per_minute,
            tokens_per_minute: scope.tokens_per_minute,
            concurrent_streams: scope.concurrent_streams,
        }
    }

    /// Refuses a limit of 0 (which would refuse everything; leaving the
    /// limit out means none).
    ///
    /// # Errors
    /// [`crate::ServiceError::Invalid`] (`invalid_limit`).
    pub fn check(&self) -> crate::Result<()> {
        if self.requests_per_minute == Some(0)
            || self.tokens_per_minute == Some(0)
            || self.concurrent_streams == Some(0)
        {
            return Err(crate::ServiceError::invalid(
                "invalid_limit",
                "a rate limit must be at least 1 (leave it out for none)",
            ));
        }
        Ok(())
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateRefusal {
    /// `requests`, `tokens` or `streams`.
    pub limit: &'static str,
    /// `user` or `token`: whose limit.
    pub whose: &'static str,
    /// The limit's value.
    pub max: u64,
    /// How long until the request may be retried.
    pub retry_after: Duration,
}

/// A subject to check: its key in the counters, whose it is, its limits.
#[derive(Debug, Clone)]
pub(crate) struct Subject {
    pub(crate) key: String,
    pub(crate) whose: &'static str,
    pub(crate) limits: RateLimits,
}

/// Open streams per subject on this server.
#[derive(Debug, Default)]
pub(crate) struct StreamCounts(Mutex<HashMap<String, u32>>);

/// A stream's place under its subjects' concurrent-stream limits, given
/// back when dropped.
#[derive(Debug)]
pub(crate) struct StreamSlots {
    counts: Arc<StreamCounts>,
    keys: Vec<String>,
}

impl Drop for StreamSlots {
    fn drop(&mut self) {
        let mut counts = self
            .counts
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for key in &self.keys {
            if let Some(n) = counts.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(key);
                }
            }
        }
    }
}

/// The start (unix seconds) of the minute containing `at`, and the time left in it.
pub(crate) fn minute(at: DateTime<Utc>) -> (i64, Duration) {
    let start = at.timestamp().div_euclid(60) * 60;
    let left = (start + 60 - at.timestamp()).max(1);
    (
        start,
        Duration::from_secs(u64::try_from(left).unwrap_or(60)),
    )
}

/// Checks and counts a request against `subjects`' limits at `at`: tokens
/// first (read only), then requests (counted atomically in the store), then
/// a stream slot when `stream`.
///
/// # Errors
/// The first limit reached, or a database error.
pub(crate) async fn admit(
    store: &Store,
    streams: &Arc<StreamCounts>,
    subjects: &[Subject],
    at: DateTime<Utc>,
    stream: bool,
) -> Result<Result<Option<StreamSlots>, RateRefusal>, byok_store::StoreError> {
    let (window, left) = minute(at);
    for subject in subjects {
        if let Some(max) = subject.limits.tokens_per_minute {
            let key = subject.key.clone();
            let used = store
                .run(move |c| byok_store::rates::tokens(c, &key, window))
                .await?;
            if u64::try_from(used).unwrap_or(0) >= max {
                return Ok(Err(RateRefusal {
                    limit: "tokens",
                    whose: subject.whose,
                    max,
                    retry_after: left,
                }));
            }
        }
    }
    for subject in subjects {
        if let Some(max) = subject.limits.requests_per_minute {
            let key = subject.key.clone();
            let counted = store
                .run(move |c| byok_store::rates::hit(c, &key, window, i64::from(max)))
                .await?;
            if counted.is_none() {
                return Ok(Err(RateRefusal {
                    limit: "requests",
                    whose: subject.whose,
                    max: u64::from(max),
                    retry_after: left,
                }));
            }
        }
    }
    if !stream {
        return Ok(Ok(None));
    }
    let mut counts = streams
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for subject in subjects {
        if let Some(max) = subject.limits.concurrent_streams
            && counts.get(&subject.key).copied().unwrap_or(0) >= max
        {
            return Ok(Err(RateRefusal {
                limit: "streams",
                whose: subject.whose,
                max: u64::from(max),
                retry_after: Duration::from_secs(1),
            }));
        }
    }
    let mut keys = Vec::new();
    for subject in subjects
        .iter()
        .filter(|s| s.limits.concurrent_streams.is_some())
    {
        *counts.entry(subject.key.clone()).or_insert(0) += 1;
        keys.push(subject.key.clone());
    }
    Ok(Ok(Some(StreamSlots {
        counts: Arc::clone(streams),
        keys,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn minutes_and_overrides() {
        let at = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 45).unwrap();
        let (start, left) = minute(at);
        assert_eq!(start % 60, 0);
        assert_eq!(left, Duration::from_secs(15));
        let defaults = RateLimits {
            requests_per_minute: Some(60),
            tokens_per_minute: Some(100_000),
            concurrent_streams: None,
        };
        let user = RateLimits {
            requests_per_minute: Some(5),
            ..RateLimits::default()
        };
        let merged = defaults.overridden_by(user);
        assert_eq!(merged.requests_per_minute, Some(5));
        assert_eq!(merged.tokens_per_minute, Some(100_000));
        assert!(RateLimits::default().is_unlimited());
    }
}
