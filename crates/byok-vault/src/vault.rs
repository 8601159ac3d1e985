//! The key vault: a ring of master keys that seals and opens API keys.

use std::fmt;

use aes_gcm::aead::{Aead, AeadCore, OsRng, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use byok_core::ApiKey;
use zeroize::Zeroizing;

use crate::envelope::ALG_AES_256_GCM;
use crate::{Binding, MasterKey, MasterKeyId, SealedKey, VaultError};

/// One master key, kept as an initialised cipher so that opening a key does
/// not repeat the AES key expansion on every call.
struct RingKey {
    id: MasterKeyId,
    cipher: Aes256Gcm,
    /// A fingerprint that tells keys apart and reveals nothing about them.
    check: String,
}

/// Seals and opens provider API keys with a ring of master keys.
///
/// The active key seals; retired keys only open, so blobs sealed before a
/// rotation keep working until [`KeyVault::reseal`] has moved them. A vault is
/// immutable once built: share it behind an `Arc`, and build a new one to
/// change keys.
pub struct KeyVault {
    active: RingKey,
    retired: Vec<RingKey>,
}

impl KeyVault {
    /// A vault whose only key, `key`, is active under `id`.
    #[must_use]
    pub fn new(id: MasterKeyId, key: MasterKey) -> Self {
        Self {
            active: RingKey::new(id, key),
            retired: Vec::new(),
        }
    }

    /// Adds a retired key that opens blobs it sealed but never seals.
    ///
    /// # Errors
    /// [`VaultError::DuplicateKeyId`] when `id` is already in the ring.
    pub fn with_retired(mut self, id: MasterKeyId, key: MasterKey) -> Result<Self, VaultError> {
        if self.key_ids().any(|known| known == id) {
            return Err(VaultError::DuplicateKeyId(id));
        }
        self.retired.push(RingKey::new(id, key));
        Ok(self)
    }

    /// The key-check value of the ring's key `id`: the first 16 bytes of
    /// SHA-256 over a byok-specific label and the key, in hex. It shows
    /// whether two master keys are the same without revealing either (a
    /// 256-bit random key cannot be recovered from its hash), so the store
    /// can remember which key each id means and refuse a different one.
    #[must_use]
    pub fn check_value(&self, id: MasterKeyId) -> Option<&str> {
        std::iter::once(&self.active)
            .chain(&self.retired)
            .find(|k| k.id == id)
            .map(|k| k.check.as_str())
    }

    /// The id of the key that seals.
    #[must_use]
    pub fn active_key_id(&self) -> MasterKeyId {
        self.active.id
    }

    /// The ids of every key in the ring, the active one first.
    pub fn key_ids(&self) -> impl Iterator<Item = MasterKeyId> + '_ {
        std::iter::once(&self.active)
            .chain(&self.retired)
            .map(|k| k.id)
    }

    /// Seals `key` for `binding` with the active master key and a fresh
    /// random nonce.
    ///
    /// # Errors
    /// [`VaultError::Seal`] only if the cipher rejects the input size, which
    /// a validated [`ApiKey`] never triggers.
    pub fn seal(&self, key: &ApiKey, binding: &Binding<'_>) -> Result<SealedKey, VaultError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        self.active.seal_with_nonce(key, binding, &nonce)
    }

    /// Opens `sealed`, checking that it was sealed for `binding`.
    ///
    /// # Errors
    /// [`VaultError::Open`], whatever the reason: an unknown format, a master
    /// key that is not in the ring, a tampered or truncated blob, or a binding
    /// to another user or provider.
    pub fn open(&self, sealed: &SealedKey, binding: &Binding<'_>) -> Result<ApiKey, VaultError> {
        let (prefix, nonce, ciphertext) = sealed.parts().ok_or(VaultError::Open)?;
        // A blob opens only with a binding of its own version: a key bound to
        // its id never opens without that id.
        if prefix[0] != binding.format() {
            return Err(VaultError::Open);
        }
        let ring_key = sealed
            .master_key_id()
            .and_then(|id| self.find(id))
            .ok_or(VaultError::Open)?;
        let aad = binding.associated_data(prefix);
        // Allocating decrypt: on failure nothing is written anywhere, and aes-gcm
        // >= 0.10.3 checks the tag before decrypting (CVE-2023-42811).
        let plaintext = Zeroizing::new(
            ring_key
                .cipher
                .decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| VaultError::Open)?,
        );
        let text = std::str::from_utf8(&plaintext).map_err(|_| VaultError::Open)?;
        ApiKey::parse(text).map_err(|_| VaultError::Open)
    }

    /// Whether `sealed` is on an older master key than the active one, and so
    /// should be resealed during a rotation.
    #[must_use]
    pub fn needs_reseal(&self, sealed: &SealedKey) -> bool {
        sealed.master_key_id() != Some(self.active.id)
    }

    /// Opens `sealed` and seals it again with the active key and a fresh
    /// nonce. The plaintext never leaves the vault, so a rewrap job can run
    /// this without handling keys.
    ///
    /// # Errors
    /// [`VaultError::Open`] when `sealed` does not open for `binding`.
    pub fn reseal(
        &self,
        sealed: &SealedKey,
        binding: &Binding<'_>,
    ) -> Result<SealedKey, VaultError> {
        self.rebind(sealed, binding, binding)
    }

    /// Opens `sealed` for `from` and seals it for `to` with the active key:
    /// how a key sealed before keys had ids is bound to its id. The
    /// plaintext never leaves the vault.
    ///
    /// # Errors
    /// [`VaultError::Open`] when `sealed` does not open for `from`.
    pub fn rebind(
        &self,
        sealed: &SealedKey,
        from: &Binding<'_>,
        to: &Binding<'_>,
    ) -> Result<SealedKey, VaultError> {
        let key = self.open(sealed, from)?;
        self.seal(&key, to)
    }

    fn find(&self, id: MasterKeyId) -> Option<&RingKey> {
        std::iter::once(&self.active)
            .chain(&self.retired)
            .find(|k| k.id == id)
    }

    /// Seals with a caller-chosen nonce. Only the known-answer test may use a
    /// fixed nonce; everything else goes through [`KeyVault::seal`].
    #[cfg(test)]
    pub(crate) fn seal_with_fixed_nonce(
        &self,
        key: &ApiKey,
        binding: &Binding<'_>,
        nonce: [u8; 12],
    ) -> Result<SealedKey, VaultError> {
        self.active
            .seal_with_nonce(key, binding, Nonce::from_slice(&nonce))
    }
}

fn check_value(key: &MasterKey) -> String {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    hash.update(b"byok master key check v1\0");
    hash.update(key.as_bytes());
    hex::encode(&hash.finalize()[..16])
}

impl RingKey {
    /// Consumes the master key: once the cipher is initialised the raw bytes
    /// are dropped, and so zeroized.
    fn new(id: MasterKeyId, key: MasterKey) -> Self {
        let cipher = Aes256Gcm::new(key.as_bytes().into());
        let check = check_value(&key);
        drop(key);
        Self { id, cipher, check }
    }

    fn seal_with_nonce(
        &self,
        key: &ApiKey,
        binding: &Binding<'_>,
        nonce: &Nonce<<Aes256Gcm as AeadCore>::NonceSize>,
    ) -> Result<SealedKey, VaultError> {
        let mut prefix = [0u8; 6];
        prefix[0] = binding.format();
        prefix[1] = ALG_AES_256_GCM;
        prefix[2..].copy_from_slice(&self.id.get().to_be_bytes());
        let aad = binding.associated_data(&prefix);
        let ciphertext = self
            .cipher
            .encrypt(
                nonce,
                Payload {
                    msg: key.expose_secret().as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Seal)?;
        Ok(SealedKey::build(prefix[0], self.id, nonce, &ciphertext))
    }
}

impl fmt::Debug for KeyVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyVault")
            .field("active", &self.active.id)
            .field(
                "retired",
                &self.retired.iter().map(|k| k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use byok_core::{ProviderKind, UserId};

    use super::*;

    /// Computed independently with Python's `cryptography` AESGCM:
    /// key = bytes 0x00..=0x1f, nonce = 0xa0..=0xab, key id 1, user "alice",
    /// provider "openai", plaintext "sk-test-known-answer-0123456789".
    const KAT_SEALED: &str = include_str!("../tests/kat_v1.hex");

    fn kat_vault() -> KeyVault {
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::try_from(i).unwrap();
        }
        KeyVault::new(MasterKeyId::new(1), MasterKey::from_bytes(bytes))
    }

    #[test]
    fn known_answer_v1_format_cannot_drift() {
        let vault = kat_vault();
        let alice = UserId::parse("alice").unwrap();
        let binding = Binding::new(&alice, ProviderKind::OpenAi);
        let key = ApiKey::parse("sk-test-known-answer-0123456789").unwrap();
        let nonce: [u8; 12] = std::array::from_fn(|i| 0xa0 + u8::try_from(i).unwrap());

        let sealed = vault.seal_with_fixed_nonce(&key, &binding, nonce).unwrap();
        assert_eq!(hex::encode(sealed.as_bytes()), KAT_SEALED.trim());

        // And the stored vector still opens: old rows stay readable.
        let stored = SealedKey::from_bytes(hex::decode(KAT_SEALED.trim()).unwrap());
        assert_eq!(
            vault.open(&stored, &binding).unwrap().expose_secret(),
            key.expose_secret()
        );
    }

    #[test]
    fn debug_lists_ids_only() {
        let vault = kat_vault()
            .with_retired(MasterKeyId::new(7), MasterKey::generate())
            .unwrap();
        assert_eq!(
            format!("{vault:?}"),
            "KeyVault { active: MasterKeyId(1), retired: [MasterKeyId(7)] }"
        );
    }
}
