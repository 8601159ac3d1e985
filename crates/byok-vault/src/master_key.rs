//! Master keys and their ids.

use std::fmt;

use aes_gcm::aead::OsRng;
use aes_gcm::aead::rand_core::RngCore;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::VaultError;

/// Length of a master key in bytes (AES-256).
pub const MASTER_KEY_LEN: usize = 32;

/// The id of a master key, written into the header of every blob it seals.
///
/// Ids are chosen by the operator (1 for the first key, 2 after the first
/// rotation, ...); they are not secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MasterKeyId(u32);

impl MasterKeyId {
    /// Wraps a numeric id.
    #[must_use]
    pub const fn new(id: u32) -> Self {
        Self(id)
    }

    /// The numeric id.
    #[must_use]
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for MasterKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A 256-bit master key.
///
/// Zeroized on drop, not `Clone`, and `Debug` prints `MasterKey(..)`. A
/// [`crate::KeyVault`] consumes it, keeping only the initialised cipher.
pub struct MasterKey(Zeroizing<[u8; MASTER_KEY_LEN]>);

impl MasterKey {
    /// Draws a fresh key from the operating system's random number generator.
    #[must_use]
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        OsRng.fill_bytes(bytes.as_mut_slice());
        Self(bytes)
    }

    /// Takes ownership of raw key bytes. The caller should zeroize its own
    /// copies.
    #[must_use]
    pub fn from_bytes(bytes: [u8; MASTER_KEY_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Parses standard base64 (with padding) holding exactly 32 bytes.
    /// Surrounding ASCII whitespace, such as a file's final newline, is ignored.
    ///
    /// # Errors
    /// [`VaultError::MasterKeyEncoding`] for invalid base64,
    /// [`VaultError::MasterKeyLength`] for any length but 32 bytes and
    /// [`VaultError::MasterKeyWeak`] for 32 zero bytes. None quotes the input.
    pub fn from_base64(text: &str) -> Result<Self, VaultError> {
        let decoded = Zeroizing::new(
            STANDARD
                .decode(text.trim_ascii())
                .map_err(|_| VaultError::MasterKeyEncoding)?,
        );
        let bytes: [u8; MASTER_KEY_LEN] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| VaultError::MasterKeyLength)?;
        let key = Self::from_bytes(bytes);
        if key.0.iter().all(|&b| b == 0) {
            return Err(VaultError::MasterKeyWeak);
        }
        Ok(key)
    }

    /// The key as standard base64, for writing a generated key to a key file.
    #[must_use]
    pub fn to_base64(&self) -> SecretString {
        SecretString::from(STANDARD.encode(self.0.as_slice()))
    }

    pub(crate) fn as_bytes(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn debug_is_redacted() {
        let key = MasterKey::from_bytes([0x41; 32]);
        assert_eq!(format!("{key:?}"), "MasterKey(..)");
    }

    #[test]
    fn base64_round_trip() {
        let key = MasterKey::generate();
        let text = key.to_base64();
        let again = MasterKey::from_base64(&format!("{}\n", text.expose_secret())).unwrap();
        assert_eq!(again.as_bytes(), key.as_bytes());
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(
            MasterKey::generate().as_bytes(),
            MasterKey::generate().as_bytes()
        );
    }

    #[test]
    fn bad_master_keys_are_refused_without_quoting_them() {
        let short = STANDARD.encode([1u8; 31]);
        let long = STANDARD.encode([1u8; 33]);
        let zeros = STANDARD.encode([0u8; 32]);
        let cases = [
            ("", VaultError::MasterKeyLength),
            ("not base64!!", VaultError::MasterKeyEncoding),
            (short.as_str(), VaultError::MasterKeyLength),
            (long.as_str(), VaultError::MasterKeyLength),
            (zeros.as_str(), VaultError::MasterKeyWeak),
        ];
        for (text, expected) in cases {
            let err = MasterKey::from_base64(text).unwrap_err();
            assert_eq!(err, expected, "{text:?}");
            if !text.is_empty() {
                assert!(!err.to_string().contains(text));
            }
        }
    }
}
