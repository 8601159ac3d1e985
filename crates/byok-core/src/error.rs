//! The one error type of `byok-core`.

/// Why a value could not be turned into one of the core types.
///
/// Messages never quote the rejected input: a user id or provider field may
/// hold a pasted API key, and error text ends up in logs and responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A user id was empty, longer than 64 characters, or used a character
    /// outside `A-Z a-z 0-9 . _ @ -`.
    #[error("user id must be 1 to 64 characters of A-Z a-z 0-9 . _ @ -")]
    InvalidUserId,
    /// A provider name is not one of the five supported providers.
    #[error("unknown provider; expected one of openai, deepseek, anthropic, gemini, azure_openai")]
    UnknownProvider,
    /// An API key was empty after trimming surrounding whitespace.
    #[error("api key is empty")]
    KeyEmpty,
    /// An API key was longer than [`crate::MAX_KEY_LEN`] bytes.
    #[error("api key is longer than 512 bytes")]
    KeyTooLong,
    /// An API key contained a space, a control character or a non-ASCII
    /// character.
    #[error("api key must be printable ASCII without spaces")]
    KeyInvalidChars,
    /// A key status name is not one of [`crate::KeyStatus::ALL`].
    #[error("unknown key status")]
    UnknownKeyStatus,
    /// A stored masked key did not have the shape [`crate::MaskedKey`] produces.
    #[error("value is not a masked key")]
    NotMasked,
}

impl CoreError {
    /// A stable, machine-readable code for this error, for API bodies and logs.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::InvalidUserId => "invalid_user_id",
            Self::UnknownProvider => "unknown_provider",
            Self::KeyEmpty => "key_empty",
            Self::KeyTooLong => "key_too_long",
            Self::KeyInvalidChars => "key_invalid_chars",
            Self::UnknownKeyStatus => "unknown_key_status",
            Self::NotMasked => "not_masked",
        }
    }
}

/// `Result` with [`CoreError`] as the default error.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
