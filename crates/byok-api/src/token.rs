//! byok's own API tokens: `byok_<id>_<secret>`.
//!
//! The id (16 hex characters, 64 random bits) is public and indexes the
//! stored row; the secret (32 random bytes, base64url) is shown once and
//! stored only as its SHA-256. Tokens are random, so a fast hash is enough:
//! there is nothing to brute-force.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The prefix every byok token starts with, so scanners can recognise one.
pub const TOKEN_PREFIX: &str = "byok_";
const ID_HEX_LEN: usize = 16;
const SECRET_LEN: usize = 32;
const SECRET_B64_LEN: usize = 43;

/// A newly issued token: shown to its owner once, then only its hash exists.
pub struct IssuedToken {
    /// The public id, for revocation and the audit trail.
    pub id: String,
    /// The whole token, `byok_<id>_<secret>`.
    pub token: SecretString,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("id", &self.id)
            .field("token", &"[REDACTED]")
            .finish()
    }
}

/// A token presented by a client, split into its id and the hash of its secret.
pub(crate) struct PresentedToken {
    pub(crate) id: String,
    pub(crate) secret_hash: [u8; 32],
}

/// Draws a new token. Returns the token and the hash to store.
pub(crate) fn issue() -> Result<(IssuedToken, [u8; 32]), getrandom::Error> {
    let mut id = [0u8; ID_HEX_LEN / 2];
    let mut secret = zeroize::Zeroizing::new([0u8; SECRET_LEN]);
    getrandom::fill(&mut id)?;
    getrandom::fill(secret.as_mut_slice())?;
    let id = hex::encode(id);
    let secret_text = zeroize::Zeroizing::new(URL_SAFE_NO_PAD.encode(secret.as_slice()));
    let hash = sha256(secret_text.as_bytes());
    let token = SecretString::from(format!("{TOKEN_PREFIX}{id}_{}", secret_text.as_str()));
    Ok((IssuedToken { id, token }, hash))
}

/// Splits a presented `byok_<id>_<secret>`; `None` when it has another shape.
pub(crate) fn parse(presented: &str) -> Option<PresentedToken> {
    let rest = presented.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let well_formed = id.len() == ID_HEX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && secret.len() == SECRET_B64_LEN
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then(|| PresentedToken {
        id: id.to_owned(),
        secret_hash: sha256(secret.as_bytes()),
    })
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Constant-time equality of two hashes.
pub(crate) fn hashes_match(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The hash of an operator-configured admin token (`BYOK_ADMIN_TOKEN`),
/// compared in constant time with the hash of whatever a client presents.
#[derive(Clone)]
pub struct AdminTokenHash([u8; 32]);

impl AdminTokenHash {
    /// Hashes `token`.
    #[must_use]
    pub fn of(token: &SecretString) -> Self {
        Self(sha256(token.expose_secret().as_bytes()))
    }

    pub(crate) fn matches(&self, presented: &str) -> bool {
        hashes_match(&self.0, &sha256(presented.as_bytes()))
    }
}

impl fmt::Debug for AdminTokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminTokenHash(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_parse_back_to_their_hash() {
        let (issued, hash) = issue().unwrap();
        let text = issued.token.expose_secret();
        assert!(text.starts_with("byok_"));
        assert_eq!(text.len(), 5 + 16 + 1 + 43);
        let parsed = parse(text).unwrap();
        assert_eq!(parsed.id, issued.id);
        assert!(hashes_match(&parsed.secret_hash, &hash));
        assert!(!format!("{issued:?}").contains(&text[22..]));
    }

    #[test]
    fn other_shapes_do_not_parse() {
        let (issued, _) = issue().unwrap();
        let good = issued.token.expose_secret().to_owned();
        for bad in [
            String::new(),
            "byok_".to_owned(),
            good.replace("byok_", "BYOK_"),
            format!("{good}x"),
            good[..good.len() - 1].to_owned(),
            good.replacen('_', "-", 2),
            format!(" {good}"),
            "' OR '1'='1".to_owned(),
        ] {
            assert!(parse(&bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn tokens_are_unique() {
        let a = issue().unwrap().0;
        let b = issue().unwrap().0;
        assert_ne!(a.id, b.id);
        assert_ne!(a.token.expose_secret(), b.token.expose_secret());
    }
}
