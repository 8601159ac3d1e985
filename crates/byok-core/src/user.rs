//! User identifiers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::CoreError;

/// The longest user id accepted, in characters (all of them ASCII).
pub const MAX_USER_ID_LEN: usize = 64;

/// The id of a byok user: 1 to 64 characters of `A-Z a-z 0-9 . _ @ -`.
///
/// The alphabet keeps ids safe in URL paths, log lines and file names without
/// escaping, and leaves no room for look-alike Unicode. Comparison is exact
/// (case-sensitive).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl UserId {
    /// Validates `raw` as a user id. Nothing is trimmed.
    ///
    /// # Errors
    /// [`CoreError::InvalidUserId`] when `raw` is empty, longer than
    /// [`MAX_USER_ID_LEN`] or uses a character outside the alphabet.
    pub fn parse(raw: impl Into<String>) -> Result<Self, CoreError> {
        let raw = raw.into();
        let valid = !raw.is_empty()
            && raw.len() <= MAX_USER_ID_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'));
        if valid {
            Ok(Self(raw))
        } else {
            Err(CoreError::InvalidUserId)
        }
    }

    /// The id as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for UserId {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for UserId {
    type Error = CoreError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<UserId> for String {
    fn from(value: UserId) -> Self {
        value.0
    }
}

impl AsRef<str> for UserId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in [
            "a",
            "alice",
            "Alice.Smith_01@example-corp.com",
            &"x".repeat(64),
        ] {
            assert_eq!(UserId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_everything_else_without_quoting_it() {
        let too_long = "x".repeat(65);
        for bad in [
            "",
            " alice",
            "alice ",
            "al ice",
            "alice/../bob",
            "a%2Fb",
            "{alice}",
            "alíce",
            "alice\n",
            "a\0",
            "a+b",
            &too_long,
        ] {
            let err = UserId::parse(bad).unwrap_err();
            assert_eq!(err, CoreError::InvalidUserId, "{bad:?}");
            assert_eq!(err.code(), "invalid_user_id");
        }
    }

    #[test]
    fn deserialising_validates() {
        assert!(serde_json::from_str::<UserId>("\"bob\"").is_ok());
        assert!(serde_json::from_str::<UserId>("\"bob smith\"").is_err());
    }

    proptest! {
        #[test]
        fn parse_accepts_exactly_the_alphabet(s in "\\PC{0,70}") {
            let expected = !s.is_empty()
                && s.len() <= MAX_USER_ID_LEN
                && s.chars().all(|c| c.is_ascii_alphanumeric() || ".@_-".contains(c));
            prop_assert_eq!(UserId::parse(s.clone()).is_ok(), expected);
        }
    }
}
