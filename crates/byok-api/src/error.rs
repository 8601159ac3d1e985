//! The service's error type. HTTP statuses are assigned in `http.rs` only.

use byok_store::StoreError;

/// Why a service call failed. Every variant has a stable [`ServiceError::code`]
/// and a message that never quotes client input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// No credentials, or credentials that are not a valid, active token.
    #[error("missing or invalid token")]
    Unauthenticated,
    /// The caller may not use this operation at all (a user token on an
    /// admin route).
    #[error("this operation needs an admin token")]
    Forbidden,
    /// The token's scope does not allow this (a door, provider or model it
    /// was not given; a user a service token may not act for).
    #[error("{message}")]
    Denied {
        /// A stable code such as `token_door_not_allowed`.
        code: &'static str,
        /// What is not allowed, in words.
        message: &'static str,
    },
    /// A header is malformed or not allowed with this token.
    #[error("{message}")]
    BadHeader {
        /// A stable code such as `service_token_needs_user`.
        code: &'static str,
        /// What is wrong, in words; never the value itself.
        message: &'static str,
    },
    /// The user does not exist, or is not the caller: the two are
    /// deliberately indistinguishable.
    #[error("user not found")]
    UserNotFound,
    /// A user with this id already exists.
    #[error("user already exists")]
    UserExists,
    /// The user has no key for this provider.
    #[error("no key stored for this provider")]
    KeyNotFound,
    /// No such token.
    #[error("token not found")]
    TokenNotFound,
    /// No such budget.
    #[error("budget not found")]
    BudgetNotFound,
    /// The request was understood but a value is not acceptable.
    #[error("{message}")]
    Invalid {
        /// A stable code such as `key_invalid_chars`.
        code: &'static str,
        /// What is wrong, in words; never the value itself.
        message: &'static str,
    },
    /// The key does not have its provider's shape.
    #[error("{0}")]
    InvalidKeyFormat(byok_providers::key_format::KeyFormatError),
    /// Too many key tests for this user; each calls a provider.
    #[error("too many key tests; retry later")]
    TooManyTests {
        /// Seconds until the next test is allowed.
        retry_after_secs: u64,
    },
    /// A stored key could not be opened with the configured master keys.
    #[error("stored key cannot be opened; re-enter it")]
    KeyUnusable,
    /// A stored key is sealed with a master key this server does not have
    /// (another replica's, after a rotation): the key itself is fine.
    #[error(
        "this key cannot be opened by this server right now (its master key is not configured here); the operator has been told — retry later, no need to re-enter it"
    )]
    KeyUnavailable,
    /// The database stayed busy; nothing was written.
    #[error("the database is busy; retry shortly")]
    Busy,
    /// Anything else: details go to the log, never to the client.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ServiceError {
    /// A stable, machine-readable code.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::UserNotFound => "user_not_found",
            Self::UserExists => "user_exists",
            Self::KeyNotFound => "key_not_found",
            Self::TokenNotFound => "token_not_found",
            Self::BudgetNotFound => "budget_not_found",
            Self::Invalid { code, .. }
            | Self::Denied { code, .. }
            | Self::BadHeader { code, .. } => code,
            Self::InvalidKeyFormat(_) => "invalid_key_format",
            Self::TooManyTests { .. } => "too_many_tests",
            Self::KeyUnusable => "key_unusable",
            Self::KeyUnavailable => "key_temporarily_unusable",
            Self::Busy => "store_busy",
            Self::Internal(_) => "internal",
        }
    }

    pub(crate) fn denied(code: &'static str, message: &'static str) -> Self {
        Self::Denied { code, message }
    }

    pub(crate) fn invalid(code: &'static str, message: &'static str) -> Self {
        Self::Invalid { code, message }
    }

    pub(crate) fn internal(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(error))
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Busy => Self::Busy,
            other => Self::internal(other),
        }
    }
}

impl From<byok_core::CoreError> for ServiceError {
    fn from(error: byok_core::CoreError) -> Self {
        use byok_core::CoreError;
        let message = match error {
            CoreError::InvalidUserId => "user id must be 1 to 64 characters of A-Z a-z 0-9 . _ @ -",
            CoreError::UnknownProvider => "unknown provider",
            CoreError::KeyEmpty => "api_key is empty",
            CoreError::KeyTooLong => "api_key is longer than 512 bytes",
            CoreError::KeyInvalidChars => "api_key must be printable ASCII without spaces",
            _ => "invalid value",
        };
        Self::invalid(error.code(), message)
    }
}

/// `Result` with [`ServiceError`] as the default error.
pub type Result<T, E = ServiceError> = std::result::Result<T, E>;
