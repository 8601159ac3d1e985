//! The outcome of testing a provider key.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::CoreError;

/// What the last test of a key found, as stored and as shown to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum KeyStatus {
    /// The provider accepted the key.
    Valid,
    /// The provider rejected the key (revoked, mistyped, wrong provider).
    Invalid,
    /// The key works but its account is out of credit or quota.
    NoCredit,
    /// The provider is rate limiting this key.
    RateLimited,
    /// The provider answered but is overloaded or failing.
    Unavailable,
    /// The provider could not be reached (DNS, connection, timeout).
    Unreachable,
    /// The key is accepted but its settings keep it from serving (a missing
    /// workspace id, key restrictions, a project setting).
    Misconfigured,
}

impl KeyStatus {
    /// Every status, in a stable order.
    pub const ALL: [Self; 7] = [
        Self::Valid,
        Self::Invalid,
        Self::NoCredit,
        Self::RateLimited,
        Self::Unavailable,
        Self::Unreachable,
        Self::Misconfigured,
    ];

    /// The wire and storage name, such as `no_credit`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Invalid => "invalid",
            Self::NoCredit => "no_credit",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::Unreachable => "unreachable",
            Self::Misconfigured => "misconfigured",
        }
    }
}

impl fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyStatus {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or(CoreError::UnknownKeyStatus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_str_and_json() {
        for status in KeyStatus::ALL {
            assert_eq!(status.as_str().parse::<KeyStatus>().unwrap(), status);
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{status}\""));
        }
        assert!("Valid".parse::<KeyStatus>().is_err());
    }
}
