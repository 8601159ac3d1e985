//! The sealed-key envelope: its byte layout and the associated data.
//!
//! ```text
//! offset  len  field
//!      0    1  format version (FORMAT_V1 = 0x01, FORMAT_V2 = 0x02)
//!      1    1  algorithm (ALG_AES_256_GCM = 0x01)
//!      2    4  master-key id, big-endian u32
//!      6   12  nonce, fresh from the OS RNG for every seal
//!     18    n  ciphertext (n = plaintext length)
//!   18+n   16  GCM tag
//! ```
//!
//! The associated data is the 6 header bytes followed by three
//! length-prefixed fields (u32 big-endian length, then the bytes):
//! the domain label `byok-provider-key`, the user id and the provider's wire
//! name — and, in version 2, a fourth: the stored key's own id, so a blob
//! copied into another key's row does not open. Length prefixes keep
//! `("ab", "c")` and `("a", "bc")` apart. The version byte is part of the
//! associated data, so a version-2 blob cannot pass for version 1.

use std::fmt;

use byok_core::{ProviderKind, UserId};

use crate::MasterKeyId;

/// The first envelope format: bound to a user and a provider.
pub const FORMAT_V1: u8 = 0x01;
/// The envelope format bound to a user, a provider and the key's own id.
pub const FORMAT_V2: u8 = 0x02;
/// Algorithm byte for AES-256-GCM with a 96-bit nonce and a 128-bit tag.
pub const ALG_AES_256_GCM: u8 = 0x01;
/// Bytes before the nonce: version, algorithm, master-key id.
pub(crate) const PREFIX_LEN: usize = 6;
pub(crate) const NONCE_LEN: usize = 12;
pub(crate) const TAG_LEN: usize = 16;
/// Bytes before the ciphertext: version, algorithm, master-key id and nonce.
pub const HEADER_LEN: usize = PREFIX_LEN + NONCE_LEN;

/// Separates byok's provider-key blobs from anything else a master key might
/// ever seal.
const DOMAIN: &[u8] = b"byok-provider-key";

/// What a sealed key belongs to: it opens only with the same binding.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    user: &'a UserId,
    provider: ProviderKind,
    key_id: Option<&'a str>,
}

impl<'a> Binding<'a> {
    /// Binds to `user`'s key for `provider`, without a key id: the version-1
    /// binding, for keys sealed before keys had ids (and for upgrading them).
    #[must_use]
    pub fn new(user: &'a UserId, provider: ProviderKind) -> Self {
        Self {
            user,
            provider,
            key_id: None,
        }
    }

    /// Binds to `user`'s key `key_id` for `provider` (envelope version 2).
    #[must_use]
    pub fn for_key(user: &'a UserId, provider: ProviderKind, key_id: &'a str) -> Self {
        Self {
            user,
            provider,
            key_id: Some(key_id),
        }
    }

    /// The envelope version this binding seals and opens.
    pub(crate) fn format(&self) -> u8 {
        if self.key_id.is_some() {
            FORMAT_V2
        } else {
            FORMAT_V1
        }
    }

    /// The associated data for a blob with header `prefix`.
    pub(crate) fn associated_data(&self, prefix: &[u8]) -> Vec<u8> {
        let mut fields = vec![
            DOMAIN,
            self.user.as_str().as_bytes(),
            self.provider.as_str().as_bytes(),
        ];
        if let Some(id) = self.key_id {
            fields.push(id.as_bytes());
        }
        let mut aad =
            Vec::with_capacity(prefix.len() + fields.iter().map(|f| 4 + f.len()).sum::<usize>());
        aad.extend_from_slice(prefix);
        for field in fields {
            // Fields are bounded (user ids are at most 64 bytes), so this never saturates.
            let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
            aad.extend_from_slice(&len.to_be_bytes());
            aad.extend_from_slice(field);
        }
        aad
    }
}

/// An API key sealed by a [`crate::KeyVault`]: opaque bytes to store as a BLOB.
///
/// Building one from bytes never fails; every check happens when the vault
/// opens it, so that all failures look alike. The ciphertext is not secret,
/// but `Debug` still prints only the header fields and the length.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedKey(Vec<u8>);

impl SealedKey {
    /// Wraps bytes read back from storage.
    #[must_use]
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The envelope's bytes, to store.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The envelope's bytes, by value.
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// The format version byte, if the blob is long enough to have one.
    /// Unauthenticated until the blob opens: use it for diagnostics only.
    #[must_use]
    pub fn format_version(&self) -> Option<u8> {
        self.0.first().copied()
    }

    /// The id of the master key the header names, if the blob is long enough.
    /// Unauthenticated until the blob opens: use it to find blobs to rewrap
    /// and for operator diagnostics ("sealed with key 7, not in the ring").
    #[must_use]
    pub fn master_key_id(&self) -> Option<MasterKeyId> {
        let id: [u8; 4] = self.0.get(2..PREFIX_LEN)?.try_into().ok()?;
        Some(MasterKeyId::new(u32::from_be_bytes(id)))
    }

    pub(crate) fn build(format: u8, key_id: MasterKeyId, nonce: &[u8], ciphertext: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(HEADER_LEN + ciphertext.len());
        bytes.push(format);
        bytes.push(ALG_AES_256_GCM);
        bytes.extend_from_slice(&key_id.get().to_be_bytes());
        bytes.extend_from_slice(nonce);
        bytes.extend_from_slice(ciphertext);
        Self(bytes)
    }

    /// Splits a v1 or v2 AES-256-GCM envelope into (prefix, nonce, ciphertext+tag),
    /// or `None` for anything else. Total: never panics on short input.
    pub(crate) fn parts(&self) -> Option<(&[u8], &[u8], &[u8])> {
        let (prefix, rest) = self.0.split_at_checked(PREFIX_LEN)?;
        let (nonce, sealed) = rest.split_at_checked(NONCE_LEN)?;
        let well_formed = matches!(prefix[0], FORMAT_V1 | FORMAT_V2)
            && prefix[1] == ALG_AES_256_GCM
            // An empty key is never sealed, so a valid blob has at least one byte.
            && sealed.len() > TAG_LEN;
        well_formed.then_some((prefix, nonce, sealed))
    }
}

impl fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedKey")
            .field("version", &self.format_version())
            .field("master_key_id", &self.master_key_id())
            .field("len", &self.0.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn associated_data_is_length_prefixed() {
        let ab = UserId::parse("ab").unwrap();
        let a = UserId::parse("a").unwrap();
        let one = Binding::new(&ab, ProviderKind::OpenAi).associated_data(&[1; 6]);
        let two = Binding::new(&a, ProviderKind::OpenAi).associated_data(&[1; 6]);
        assert_ne!(one, two);
        let mut expected = vec![1; 6];
        for field in [&b"byok-provider-key"[..], b"ab", b"openai"] {
            expected.extend_from_slice(&u32::try_from(field.len()).unwrap().to_be_bytes());
            expected.extend_from_slice(field);
        }
        assert_eq!(one, expected);
    }

    #[test]
    fn header_accessors_are_total() {
        for len in 0..40 {
            let sealed = SealedKey::from_bytes(vec![1; len]);
            let _ = (
                sealed.format_version(),
                sealed.master_key_id(),
                sealed.parts(),
            );
        }
        let sealed = SealedKey::from_bytes(vec![1, 1, 0, 0, 1, 2]);
        assert_eq!(sealed.master_key_id(), Some(MasterKeyId::new(258)));
        assert!(sealed.parts().is_none());
    }

    #[test]
    fn debug_shows_header_not_bytes() {
        let sealed = SealedKey::build(
            FORMAT_V1,
            MasterKeyId::new(3),
            &[9; 12],
            b"ciphertext-bytes-and-tag",
        );
        assert_eq!(
            format!("{sealed:?}"),
            "SealedKey { version: Some(1), master_key_id: Some(MasterKeyId(3)), len: 42 }"
        );
    }
}
