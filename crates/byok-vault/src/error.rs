//! The one error type of `byok-vault`.

use crate::MasterKeyId;

/// What can go wrong in the vault.
///
/// Opening has exactly one failure, [`VaultError::Open`], whatever the cause;
/// the other variants concern configuration and never quote key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// A sealed key could not be opened: wrong or missing master key, a
    /// tampered or truncated blob, an unknown format, or a binding to another
    /// user or provider. Deliberately indistinguishable.
    #[error("sealed key could not be opened")]
    Open,
    /// The cipher refused to seal (only possible for absurd input sizes).
    #[error("key could not be sealed")]
    Seal,
    /// Two master keys in one vault share an id.
    #[error("master key id {0} is used twice")]
    DuplicateKeyId(MasterKeyId),
    /// Master key material was not exactly 32 bytes.
    #[error("master key must be exactly 32 bytes")]
    MasterKeyLength,
    /// Master key text was not valid base64.
    #[error("master key is not valid base64")]
    MasterKeyEncoding,
    /// Master key material was all zero bytes, a sign of a placeholder.
    #[error("master key is all zeros")]
    MasterKeyWeak,
    /// An export file is malformed, or its passphrase too short.
    #[error("export: {0}")]
    Export(&'static str),
}

impl VaultError {
    /// A stable, machine-readable code for this error.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Open => "vault_open_failed",
            Self::Export(_) => "export_invalid",
            Self::Seal => "vault_seal_failed",
            Self::DuplicateKeyId(_) => "duplicate_master_key_id",
            Self::MasterKeyLength => "master_key_length",
            Self::MasterKeyEncoding => "master_key_encoding",
            Self::MasterKeyWeak => "master_key_weak",
        }
    }
}

/// `Result` with [`VaultError`] as the default error.
pub type Result<T, E = VaultError> = std::result::Result<T, E>;
